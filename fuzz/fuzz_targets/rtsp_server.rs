//! Arbitrary bytes as a client's control connection to the RTSP server
//! session, through the engine (every request the engine can grant is
//! granted: a stream is published under live/src for DESCRIBE to find),
//! with UDP socket requests answered: no panic, and the session's output
//! stays bounded.

#![no_main]

use std::sync::Arc;

use arcly_core::engine::{Engine, Request, StreamKey};
use arcly_core::frame::{CodecId, TrackId, TrackInfo, TrackSet};
use arcly_core::session::{Conductor, ConnContext, Input};
use arcly_core::time::{Instant, Timescale};
use arcly_rtsp::{RtspAuth, RtspConfig, RtspSession};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::default();
    let key = StreamKey::new("live", "src").expect("key");
    let mut p = engine
        .publish(&Request::new(key, "fuzz"), Instant::ZERO)
        .expect("publish");
    let mut tracks = TrackSet::new();
    let _ = tracks.upsert(TrackInfo::new(
        TrackId(1),
        CodecId::Opus,
        Timescale::new(48_000).expect("rate"),
        arcly_core::media::codec::opus::OpusHead::new(2, 312, 48_000).to_bytes(),
    ));
    p.set_tracks(tracks);
    let ctx = ConnContext {
        peer_addr: Some("127.0.0.1:5000".parse().expect("addr")),
        ..ConnContext::default()
    };
    let mut c = Conductor::new(
        engine,
        RtspSession::new(
            Arc::new(RtspConfig {
                auth: RtspAuth {
                    basic: true,
                    digest: true,
                },
                ..RtspConfig::default()
            }),
            1,
            Instant::ZERO,
        ),
        ctx,
    );
    let mut now = Instant::ZERO;
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    let mut port = 30_000u16;
    for (i, chunk) in data.chunks(97).enumerate() {
        now = Instant::from_millis(i as u64 * 10);
        let _ = p.publish(
            now,
            arcly_core::frame::MediaFrame::audio(
                TrackId(1),
                CodecId::Opus,
                arcly_core::time::MediaTime::from_millis(i as i64 * 20),
                Bytes::from_static(&[0xfc, 1, 2, 3]),
            ),
        );
        if chunk.first() == Some(&0xff) {
            c.handle_input(
                now,
                Input::Datagram {
                    from: "127.0.0.1:6000".parse().expect("addr"),
                    local: format!("127.0.0.1:{}", port.wrapping_sub(2)).parse().expect("addr"),
                    data: BytesMut::from(&chunk[1..]),
                },
            );
        } else {
            c.handle_input(now, Input::Stream(BytesMut::from(chunk)));
        }
        while let Some(r) = c.poll_socket_request() {
            port = port.wrapping_add(2);
            let a = format!("127.0.0.1:{port}").parse().expect("addr");
            let b = format!("127.0.0.1:{}", port.wrapping_add(1)).parse().expect("addr");
            c.sockets_bound(now, r.id, Ok(vec![a, b]));
        }
        let _ = c.poll_deliveries(&mut cx, now);
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        let mut out = 0usize;
        while let Some(t) = c.poll_transmit() {
            out += t.data.len();
        }
        assert!(out < 4 << 20, "{out} bytes out for {} in", chunk.len());
        while c.poll_log().is_some() {}
        if c.is_closed() {
            break;
        }
    }
    c.handle_input(now, Input::Eof);
});
