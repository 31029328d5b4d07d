//! Arbitrary bytes as a server's answers to the HLS client (the playlist
//! parser, the response-head parser, Content-Length and chunked bodies, and
//! in low-latency mode the parts and blocking reloads),
//! split at arbitrary points with time passing: never a panic, never an
//! unbounded buffer. The same bytes as a body in each framing
//! (`response_body`, which the gateway's callback and JWKS calls read).
//! The same bytes as the answer to an HTTP-FLV player (its dechunking and
//! FLV tag reading).
#![no_main]

use arcly_core::time::Instant;
use arcly_http::client::{
    parse_playlist, parse_response_head, response_body, ClientConfig, Framing, HlsClient,
};
use arcly_http::flv_client::FlvClient;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_playlist(text);
    }
    let _ = parse_response_head(data, false);
    for framing in [
        Framing::Chunked,
        Framing::Close,
        Framing::Length(data.len() as u64 / 2),
    ] {
        if let Ok(Some(body)) = response_body(data, framing, 4096, data.len() % 3 == 0) {
            assert!(body.len() <= 4096);
        }
    }
    let cfg = ClientConfig {
        max_segment: 1 << 16,
        low_latency: data.len() % 2 == 0,
        ..ClientConfig::default()
    };
    let mut c = HlsClient::new(cfg, "/live/cam/index.m3u8", Instant::ZERO);
    let step = data.first().map_or(1, |b| usize::from(*b % 61) + 1);
    for (i, piece) in data.chunks(step).enumerate() {
        let now = Instant::from_millis(i as u64 * 250);
        while c.poll_transmit().is_some() {}
        c.handle_input(now, piece);
        while c.poll_event().is_some() {}
        c.handle_timeout(now);
        if c.wants_new_connection() {
            c.connected(now);
        }
    }
    c.handle_eof(Instant::from_millis(1 << 30));
    while c.poll_event().is_some() {}

    let mut f = FlvClient::new("x", "/live/cam.flv", Duration::from_secs(5), Instant::ZERO);
    while f.poll_transmit().is_some() {}
    for piece in data.chunks(step) {
        f.handle_input(piece);
        while f.poll_event().is_some() {}
    }
    f.handle_eof();
    while f.poll_event().is_some() {}
});
