//! Arbitrary bytes into the HTTP server session (split at an arbitrary
//! point, then time passes): never a panic, never an unbounded buffer.
#![no_main]

use arcly_core::session::{Input, Session};
use arcly_core::time::Instant;
use arcly_http::{Handler, HttpConfig, HttpSession, Request, Response};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::task::{Context, Poll};

struct Echo;

impl Handler for Echo {
    fn poll_response(&self, _now: Instant, req: &Request, _cx: &mut Context<'_>) -> Poll<Response> {
        if req.path.len() % 3 == 0 {
            // Held: exercises the hold timeout.
            return Poll::Pending;
        }
        Poll::Ready(Response::new(200, "text/plain", req.path.clone()))
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig {
        max_header: 2048,
        max_body: 4096,
        ..HttpConfig::default()
    };
    let mut s = HttpSession::new(cfg, Arc::new(Echo));
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut t = 0;
    for piece in [&data[..cut], &data[cut..]] {
        t += 1;
        s.handle_input(Instant::from_millis(t), Input::Stream(BytesMut::from(piece)));
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
    s.handle_timeout(Instant::from_millis(60_000));
    while s.poll_transmit().is_some() {}
});
