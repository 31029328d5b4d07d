//! Arbitrary bytes into the HTTP server session (split at an arbitrary
//! point, answers taken a few at a time so the output bound pauses and
//! resumes answering, then time passes): never a panic, never an unbounded
//! buffer, and a refused request always ends the connection. HTTP-FLV
//! plays (`GET /APP/STREAM.flv`) are accepted and ended, or refused.
#![no_main]

use arcly_core::bus::{CloseReason, RecvError};
use arcly_core::session::{Input, Rejection, Session, SessionEvent};
use arcly_core::time::Instant;
use arcly_http::{Handler, HttpConfig, HttpSession, Request, Response};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

struct Echo;

impl Handler for Echo {
    fn poll_response(&self, _now: Instant, req: &Request, _cx: &mut Context<'_>) -> Poll<Response> {
        if req.path.len() % 3 == 0 {
            // Held: exercises the hold timeout.
            return Poll::Pending;
        }
        // A routed path never holds what the parser refuses.
        assert!(!req.path.contains('\\') && !req.path.split('/').any(|s| s == ".."));
        Poll::Ready(Response::new(200, "text/plain", req.path.clone()))
    }
}

const MAX_HEADER: usize = 2048;
const MAX_QUEUED: usize = 512;

/// Takes up to `n` transmits (all when `None`); whether the session closed
/// on a refused request.
fn take(s: &mut HttpSession<Echo>, n: Option<usize>) -> bool {
    let mut left = n.unwrap_or(usize::MAX);
    while left > 0 {
        // At most the bound plus one answer (whose body is at most a path).
        assert!(s.queued_bytes() <= MAX_QUEUED + MAX_HEADER + 1024);
        if s.poll_transmit().is_none() {
            break;
        }
        left -= 1;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let _ = s.poll_ready(Instant::from_millis(3), &mut cx);
    let mut refused = false;
    while let Some(ev) = s.poll_event() {
        refused |= matches!(ev, SessionEvent::Closed(_));
        // An HTTP-FLV play: accepted or refused in turn, as a host would.
        if let SessionEvent::Request(r) = ev {
            let now = Instant::from_millis(3);
            if r.id.0 % 2 == 0 {
                s.accept(now, r.id);
                s.handle_stream_end(now, RecvError::Closed(CloseReason::PublisherEnded));
            } else {
                s.reject(now, r.id, Rejection::NotFound);
            }
        }
    }
    refused
}

fuzz_target!(|data: &[u8]| {
    let cfg = HttpConfig {
        max_header: MAX_HEADER,
        max_body: 4096,
        max_queued: MAX_QUEUED,
        ..HttpConfig::default()
    };
    let mut s = HttpSession::new(cfg, Arc::new(Echo));
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let batch = data.get(1).map(|b| usize::from(*b % 4) + 1);
    let mut t = 0;
    for piece in [&data[..cut], &data[cut..]] {
        t += 1;
        s.handle_input(
            Instant::from_millis(t),
            Input::Stream(BytesMut::from(piece)),
        );
        assert!(s.buffered_input() <= MAX_HEADER + 4096);
        if take(&mut s, batch) {
            // Refused: the rest of the answers, then the end.
            take(&mut s, None);
            assert!(s.is_closed());
            return;
        }
    }
    take(&mut s, None);
    s.handle_timeout(Instant::from_millis(60_000));
    take(&mut s, None);
});
