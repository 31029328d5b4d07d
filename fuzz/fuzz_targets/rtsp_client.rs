//! Arbitrary bytes as a server's answers to our RTSP client (a pull), with
//! its requests granted: no panic, and what it publishes stays bounded.

#![no_main]

use arcly_core::engine::Engine;
use arcly_core::session::{Conductor, ConnContext, Input};
use arcly_core::time::Instant;
use arcly_rtsp::client::{ClientConfig, PullTransport};
use arcly_rtsp::RtspClient;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut cfg = ClientConfig::new("rtsp://u:p@127.0.0.1:554/cam", "live", "out");
    if mode & 1 == 1 {
        cfg.transport = PullTransport::Udp;
    }
    let Ok(client) = RtspClient::new(cfg, Instant::ZERO) else {
        return;
    };
    let ctx = ConnContext {
        peer_addr: Some("127.0.0.1:554".parse().expect("addr")),
        ..ConnContext::default()
    };
    let mut c = Conductor::new(Engine::default(), client, ctx);
    let mut port = 40_000u16;
    let mut now = Instant::ZERO;
    for (i, chunk) in data.chunks(211).enumerate() {
        now = Instant::from_millis(i as u64 * 50);
        while c.poll_transmit().is_some() {}
        c.handle_input(now, Input::Stream(BytesMut::from(chunk)));
        while let Some(r) = c.poll_socket_request() {
            port = port.wrapping_add(2);
            let a = format!("127.0.0.1:{port}").parse().expect("addr");
            let b = format!("127.0.0.1:{}", port.wrapping_add(1)).parse().expect("addr");
            c.sockets_bound(now, r.id, Ok(vec![a, b]));
        }
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while c.poll_log().is_some() {}
        if c.is_closed() {
            break;
        }
    }
    c.handle_input(now, Input::Eof);
});
