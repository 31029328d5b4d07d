//! Arbitrary bytes into an RTMP server session: after a valid handshake (so
//! the chunk layer and everything above it see the input) and without one.

#![no_main]

use arcly_core::session::{Input, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_rtmp::{RtmpConfig, ServerSession};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], split: usize) {
    let cfg = RtmpConfig {
        max_message_size: 1 << 20,
        max_backlog: 1 << 20,
        ..RtmpConfig::default()
    };
    let mut s = ServerSession::new(cfg, Instant::ZERO);
    for (i, piece) in input.chunks(split.max(1)).enumerate() {
        let now = Instant::from_millis(i as u64);
        s.handle_input(now, Input::Stream(BytesMut::from(piece)));
        while s.poll_transmit().is_some() {}
        while let Some(e) = s.poll_event() {
            if let SessionEvent::Request(r) = e {
                if i % 2 == 0 {
                    s.accept(now, r.id);
                } else {
                    s.reject(now, r.id, arcly_core::session::Rejection::NotFound);
                }
            }
        }
    }
    s.handle_input(Instant::from_millis(1 << 20), Input::Eof);
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |&b| usize::from(b) * 16 + 1);
    let mut with_handshake = vec![3u8];
    with_handshake.resize(1 + 2 * 1536, 0);
    with_handshake.extend_from_slice(data);
    run(&with_handshake, split);
    run(data, split);
});
