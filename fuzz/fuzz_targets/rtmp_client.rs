//! Arbitrary server bytes into publishing and playing RTMP client sessions.

#![no_main]

use arcly_core::session::{Input, Session};
use arcly_core::time::Instant;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // With a plain S0+S1+S2 first, so the chunk layer sees the input.
    let mut shaken = vec![3u8];
    shaken.resize(1 + 2 * 1536, 0);
    shaken.extend_from_slice(data);
    for (mode, data) in [
        (ClientMode::Publish, &shaken[..]),
        (ClientMode::Play, &shaken[..]),
        (ClientMode::Play, data),
    ] {
        let cfg = RtmpConfig {
            max_message_size: 1 << 20,
            digest_handshake: data.len() % 2 == 0,
            ..RtmpConfig::default()
        };
        let target = ClientTarget {
            app: "live".into(),
            stream: "s".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
        };
        let mut c = ClientSession::new(cfg, mode, target, Instant::ZERO);
        for (i, piece) in data.chunks(997).enumerate() {
            c.handle_input(
                Instant::from_millis(i as u64),
                Input::Stream(BytesMut::from(piece)),
            );
            while c.poll_transmit().is_some() {}
            while c.poll_event().is_some() {}
        }
    }
});
