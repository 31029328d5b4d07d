//! The HTTP/1.1 server session: one connection, requests answered in order.
//!
//! Requests are read incrementally and answered one at a time, so pipelined
//! requests get their answers in order. A [`Handler`] answers each request at
//! once or holds it (LL-HLS blocking playlist reloads): a held request is
//! polled again when the handler wakes the connection, with no polling loop
//! and no thread per request. Limits: header bytes, body bytes, the time a
//! request may take to arrive (a slowloris peer gets 408 and a close), and
//! how long a request may be held.
//!
//! # Bounded memory per connection
//!
//! Answers wait in the session until the host takes them with
//! `poll_transmit`. While the answers queued (heads and bodies) add up to
//! [`HttpConfig::max_queued`] bytes or more (8 KiB by default), the session
//! answers no further request: pipelined requests stay unparsed in the input
//! buffer, and [`Session::wants_input`] is `false` so the host stops reading
//! the socket. One answer may be larger than the bound (a segment is one
//! answer), so at most `max_queued` bytes plus one answer are queued. As the
//! host drains `poll_transmit` and the queue falls below the bound, the
//! session answers the buffered requests again, in order, from inside
//! `poll_transmit`: a host that writes each transmit before it asks for the
//! next one gets every answer with no other call. A request held while the
//! session is paused, and a malformed request found then, are dealt with as
//! at any other time; the event such a request raises (a close) is signalled
//! through [`Session::poll_ready`], and the session does not report itself
//! closed until that event has been taken.
//!
//! The unparsed input is bounded too: while the session waits for the rest
//! of one request it takes up to that request's size (`max_header` plus
//! `max_body`, checked by the parser); while it cannot answer what it holds
//! (output above the bound, or a request held), `wants_input` is `false`
//! once `max_header` bytes are buffered. The read timer (`request_timeout`)
//! runs only while the session waits for the peer's bytes: paused on its own
//! output it stops, and it starts again with the next bytes that arrive.

use crate::flv::{flv_path, FlvPlay, LAST_CHUNK};
use crate::message::{parse_request, Method, ParseError, Request, Response};
use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::Action;
use arcly_core::session::{
    Input, ProtocolError, Rejection, RequestId, Session, SessionEnd, SessionEvent, StreamRequest,
    Transmit,
};
use arcly_core::time::Instant;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Answers requests. Implemented by the host (the gateway's router).
pub trait Handler: Send + Sync {
    /// The answer to `req`, or `Pending` after arranging for `cx`'s waker to
    /// be woken when it may be ready (the session polls again then).
    fn poll_response(&self, now: Instant, req: &Request, cx: &mut Context<'_>) -> Poll<Response>;

    /// Whether any web origin may read the answers to `req` (the session
    /// then adds `Access-Control-Allow-Origin: *`, to the CORS preflight
    /// too). The default says yes; a handler answers `false` for what is
    /// not public (an API, metrics).
    fn any_origin(&self, req: &Request) -> bool {
        let _ = req;
        true
    }

    /// Told the status of every answer the session sends, the session's
    /// own (a request it could not read, a time-out) among them, for
    /// counting. The default does nothing.
    fn answered(&self, status: u16) {
        let _ = status;
    }
}

/// Limits of an HTTP session.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Most bytes in a request's header section.
    pub max_header: usize,
    /// Most bytes in a request body.
    pub max_body: usize,
    /// A request must arrive whole within this time of its first byte.
    pub request_timeout: Duration,
    /// A held request is answered 503 after this long.
    pub hold_timeout: Duration,
    /// Most bytes of answers queued before the session stops answering
    /// pipelined requests (and asks the host to stop reading) until the host
    /// has taken them with `poll_transmit`. One answer may exceed it.
    pub max_queued: usize,
    /// Whether `GET /APP/STREAM.flv` plays the stream as HTTP-FLV (through
    /// the host, like any player); when `false` the handler answers it.
    pub flv: bool,
}

/// The default [`HttpConfig::max_queued`]: 8 KiB.
pub const DEFAULT_MAX_QUEUED: usize = 8 * 1024;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header: 16 * 1024,
            max_body: 1 << 20,
            request_timeout: Duration::from_secs(10),
            hold_timeout: Duration::from_secs(10),
            max_queued: DEFAULT_MAX_QUEUED,
            flv: true,
        }
    }
}

/// One HTTP connection as a sans-IO [`Session`].
pub struct HttpSession<H> {
    cfg: HttpConfig,
    handler: Arc<H>,
    buf: BytesMut,
    /// When the first byte of the request being read arrived.
    request_started: Option<Instant>,
    /// A request the handler is holding, and since when.
    held: Option<(Request, Instant)>,
    /// An HTTP-FLV play: asked of the host, or streaming. No further
    /// request is answered until it ends.
    flv: Option<FlvPlay>,
    /// The id of the next play request.
    next_id: u32,
    out: VecDeque<Transmit>,
    /// Bytes in `out`.
    queued: usize,
    /// The latest time the host gave (answers made inside `poll_transmit`
    /// use it).
    now: Instant,
    events: VecDeque<SessionEvent>,
    /// `events` holds one raised inside `poll_transmit`, which a host
    /// drains only after `poll_ready` says so.
    late_events: bool,
    /// The peer, from `set_peer`, given to every request.
    peer: Option<SocketAddr>,
    /// No more requests: answer what is queued, then close.
    closing: bool,
    closed: bool,
}

/// Answer pieces a drained output queue keeps room for.
pub(crate) const OUT_KEPT: usize = 4;

impl<H: Handler> HttpSession<H> {
    /// A session for a new connection.
    pub fn new(cfg: HttpConfig, handler: Arc<H>) -> Self {
        HttpSession {
            cfg,
            handler,
            buf: BytesMut::new(),
            request_started: None,
            held: None,
            flv: None,
            next_id: 0,
            out: VecDeque::new(),
            queued: 0,
            now: Instant::ZERO,
            events: VecDeque::new(),
            late_events: false,
            peer: None,
            closing: false,
            closed: false,
        }
    }

    /// Room in the queue of answers, in pieces.
    #[cfg(test)]
    pub(crate) fn out_room(&self) -> usize {
        self.out.capacity()
    }

    /// Bytes of answers queued for `poll_transmit`.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Bytes received and not yet parsed (pipelined requests waiting for
    /// their turn, or the start of the next request).
    pub fn buffered_input(&self) -> usize {
        self.buf.len()
    }

    fn send(&mut self, req: Option<&Request>, mut resp: Response, keep_alive: bool) {
        if req.is_none_or(|r| self.handler.any_origin(r)) {
            resp.headers
                .push(("Access-Control-Allow-Origin", "*".into()));
        }
        if let Some(req) = req {
            let etag = resp
                .headers
                .iter()
                .find(|(n, _)| *n == "ETag")
                .map(|(_, v)| v.clone());
            if let (Some(tag), Some(inm)) = (etag, req.header("if-none-match")) {
                if resp.status == 200 && inm.split(',').any(|t| t.trim() == tag) {
                    resp.status = 304;
                    resp.body = bytes::Bytes::new();
                }
            }
        }
        self.handler.answered(resp.status);
        let head_only = req.is_some_and(|r| r.method == Method::Head);
        self.queue(resp.encode_head(keep_alive));
        if !head_only && !resp.body.is_empty() {
            // The body goes out as its own buffer: a segment is never copied.
            self.queue(resp.body);
        }
        if !keep_alive {
            self.closing = true;
        }
    }

    fn queue(&mut self, data: bytes::Bytes) {
        self.queued += data.len();
        self.out.push_back(Transmit::stream(data));
    }

    /// The queued answers are at or above the bound: answer nothing more
    /// until the host takes some.
    fn output_full(&self) -> bool {
        self.queued >= self.cfg.max_queued
    }

    fn pop(&mut self) -> Option<Transmit> {
        let t = self.out.pop_front()?;
        self.queued -= t.data.len();
        // An HTTP-FLV play's start (the GOP cache, a piece or two a frame)
        // grows the queue to dozens of pieces: thousands of players should
        // not each keep that room once it is written. An answer's head and
        // body fit in the room kept.
        if self.out.is_empty() && self.out.capacity() > OUT_KEPT {
            self.out.shrink_to(OUT_KEPT);
        }
        Some(t)
    }

    /// Answers `resp` with a close, and ends the session with `end`.
    fn end_with(&mut self, resp: Response, end: SessionEnd) {
        self.send(None, resp, false);
        self.buf.clear();
        self.events.push_back(SessionEvent::Closed(end));
    }

    /// A request that cannot be read: answered with its status and a close;
    /// the session ends with the typed cause.
    fn fail(&mut self, e: ParseError) {
        let resp = Response::text(e.status(), &e.to_string());
        let end = ProtocolError::new("http", e.kind(), e);
        self.end_with(resp, SessionEnd::Protocol(end));
    }

    /// Answers complete requests until one is held, the queued answers
    /// reach the bound, or the bytes run out. `fresh`: `now` was just given
    /// by the host (not remembered from an earlier call), so the read timer
    /// may start from it.
    fn advance(&mut self, now: Instant, fresh: bool) {
        while self.held.is_none() && self.flv.is_none() && !self.closing {
            if self.output_full() {
                // Paused on our own output: the peer is not late.
                self.request_started = None;
                return;
            }
            match parse_request(&mut self.buf, self.cfg.max_header, self.cfg.max_body) {
                Ok(Some(mut req)) => {
                    req.peer = self.peer;
                    self.request_started = None;
                    self.answer(now, req);
                }
                Ok(None) => {
                    if self.buf.is_empty() {
                        self.request_started = None;
                    } else if self.request_started.is_none() && fresh {
                        self.request_started = Some(now);
                    }
                    return;
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, req: Request) {
        match req.method {
            Method::Options => {
                let resp = Response::new(204, "text/plain", bytes::Bytes::new())
                    .with_header(
                        "Access-Control-Allow-Methods",
                        "GET, HEAD, POST, PATCH, DELETE, OPTIONS",
                    )
                    .with_header("Access-Control-Allow-Headers", "*")
                    .with_header("Access-Control-Max-Age", "86400");
                let keep = req.keep_alive;
                self.send(Some(&req), resp, keep);
                return;
            }
            Method::Other => {
                let keep = req.keep_alive;
                let resp = Response::text(405, "method not allowed")
                    .with_header("Allow", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
                self.send(Some(&req), resp, keep);
                return;
            }
            Method::Get | Method::Head if self.cfg.flv => {
                if let Some((app, stream)) = flv_path(&req.path) {
                    let (app, stream) = (app.to_string(), stream.to_string());
                    self.play_flv(req, app, stream);
                    return;
                }
            }
            _ => {}
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.handler.poll_response(now, &req, &mut cx) {
            Poll::Ready(resp) => {
                let keep = req.keep_alive;
                self.send(Some(&req), resp, keep);
            }
            Poll::Pending => self.held = Some((req, now)),
        }
    }
}

impl<H: Handler> HttpSession<H> {
    /// Asks the host to play `app`/`stream` for an HTTP-FLV request.
    fn play_flv(&mut self, req: Request, app: String, stream: String) {
        self.next_id = self.next_id.wrapping_add(1);
        let id = RequestId(self.next_id);
        let basic = crate::router::basic_credentials(&req);
        let token = req.query_param("token").map(str::to_string);
        self.events.push_back(SessionEvent::Request(StreamRequest {
            id,
            action: Action::Play,
            app,
            stream,
            token,
            user: basic.as_ref().map(|(u, _)| u.clone()),
            password: basic.map(|(_, p)| p),
            digest: None,
        }));
        self.flv = Some(FlvPlay::new(req, id));
    }

    /// The HTTP-FLV play is over: the body ends, and the connection goes
    /// on to the next request (or closes, as the request asked).
    fn end_flv(&mut self, now: Instant) {
        let Some(play) = self.flv.take() else {
            return;
        };
        if play.playing {
            if !play.head_only() {
                self.queue(bytes::Bytes::from_static(LAST_CHUNK));
            }
            self.events.push_back(SessionEvent::PlayStopped);
        }
        if !play.req.keep_alive {
            self.closing = true;
        }
        self.advance(now, true);
    }

    /// Frames sent to the HTTP-FLV player, if one is playing.
    pub fn flv_frames(&self) -> Option<u64> {
        self.flv.as_ref().filter(|p| p.playing).map(FlvPlay::frames)
    }
}

impl<H: Handler> Session for HttpSession<H> {
    fn protocol(&self) -> &'static str {
        if self.flv.is_some() {
            "http-flv"
        } else {
            "http"
        }
    }

    fn handle_input(&mut self, now: Instant, input: Input) {
        self.now = now;
        match input {
            Input::Stream(data) => {
                if self.closing || self.closed {
                    return;
                }
                if self.buf.len() + data.len() > self.cfg.max_header + self.cfg.max_body {
                    self.fail(ParseError::RequestTooLarge);
                    return;
                }
                if self.buf.is_empty() {
                    self.buf = data;
                } else {
                    self.buf.extend_from_slice(&data);
                }
                self.advance(now, true);
                if self.output_full() && self.buf.capacity() > 2 * self.buf.len() + 4096 {
                    // Paused with a read's worth of requests left: keep
                    // them in a buffer of their size, not the read's.
                    self.buf = BytesMut::from(&self.buf[..]);
                }
            }
            Input::Eof | Input::Datagram { .. } => {
                self.closed = true;
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Normal));
            }
        }
    }

    fn handle_delivery(&mut self, _now: Instant, delivery: DeliveryRef<'_>) {
        let Some(play) = self.flv.as_mut().filter(|p| p.playing && !p.head_only()) else {
            return;
        };
        // `queue`, on the fields `play` does not borrow.
        let (out, queued) = (&mut self.out, &mut self.queued);
        let mut push = |b: bytes::Bytes| {
            *queued += b.len();
            out.push_back(Transmit::stream(b));
        };
        match delivery {
            DeliveryRef::Tracks(t) => play.tracks(t, &mut push),
            DeliveryRef::Frame(f) => play.frame(f, &mut push),
            // The bus sends the tracks again and resumes at a key frame.
            DeliveryRef::Lagged { .. } => {}
        }
    }

    fn handle_stream_end(&mut self, now: Instant, _why: RecvError) {
        self.end_flv(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(started) = self.request_started {
            if now - started >= self.cfg.request_timeout && self.held.is_none() {
                // A slow peer is a timeout, not a malformed request.
                let resp = Response::text(408, "request not received in time");
                self.end_with(resp, SessionEnd::Timeout);
                return;
            }
        }
        if let Some((req, since)) = self.held.take() {
            if now - since >= self.cfg.hold_timeout {
                let keep = req.keep_alive;
                self.send(Some(&req), Response::text(503, "not available yet"), keep);
                self.advance(now, true);
            } else {
                self.held = Some((req, since));
            }
        }
    }

    fn accept(&mut self, now: Instant, id: RequestId) {
        let Some(play) = self.flv.as_mut().filter(|p| p.id == id && !p.playing) else {
            return;
        };
        play.playing = true;
        let head_only = play.head_only();
        let keep = play.req.keep_alive;
        let mut resp = FlvPlay::response();
        if self.handler.any_origin(&play.req) {
            resp.headers
                .push(("Access-Control-Allow-Origin", "*".into()));
        }
        self.handler.answered(200);
        self.queue(resp.encode_chunked_head(keep));
        if head_only {
            self.end_flv(now);
        }
    }

    fn reject(&mut self, now: Instant, id: RequestId, why: Rejection) {
        if self.flv.as_ref().is_none_or(|p| p.id != id || p.playing) {
            return;
        }
        if let Some(play) = self.flv.take() {
            let keep = play.req.keep_alive;
            self.send(Some(&play.req), FlvPlay::refusal(&why), keep);
            self.advance(now, true);
        }
    }

    fn close(&mut self, now: Instant, _why: CloseReason) {
        self.now = now;
        if let Some((req, _)) = self.held.take() {
            self.send(
                Some(&req),
                Response::text(503, "server shutting down"),
                false,
            );
        }
        if let Some(play) = self.flv.take() {
            if play.playing && !play.head_only() {
                self.queue(bytes::Bytes::from_static(LAST_CHUNK));
            } else if !play.playing {
                self.send(
                    Some(&play.req),
                    Response::text(503, "server shutting down"),
                    false,
                );
            }
        }
        self.closing = true;
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let mut t = self.pop();
        if !self.output_full()
            && !self.buf.is_empty()
            && self.held.is_none()
            && self.flv.is_none()
            && !self.closing
        {
            // Below the bound again: answer what was left buffered.
            let events = self.events.len();
            self.advance(self.now, false);
            self.late_events |= self.events.len() > events;
            if t.is_none() {
                t = self.pop();
            }
        }
        if t.is_none() && self.closing && !self.closed {
            self.closed = true;
        }
        t
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        let ev = self.events.pop_front();
        if self.events.is_empty() {
            self.late_events = false;
            arcly_core::host::shrink_drained(&mut self.events);
        }
        ev
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let read = self.request_started.map(|t| t + self.cfg.request_timeout);
        let held = self.held.as_ref().map(|(_, t)| *t + self.cfg.hold_timeout);
        match (read, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_closed(&self) -> bool {
        // Events raised inside `poll_transmit` (a malformed request found
        // when answering resumed) are taken before the session is over.
        self.closed && self.out.is_empty() && !self.late_events
    }

    fn poll_ready(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        self.now = now;
        if self.late_events {
            // Raised inside `poll_transmit`: the host drains them now.
            return Poll::Ready(());
        }
        let Some((req, since)) = self.held.take() else {
            return Poll::Pending;
        };
        match self.handler.poll_response(now, &req, cx) {
            Poll::Ready(resp) => {
                let keep = req.keep_alive;
                self.send(Some(&req), resp, keep);
                self.advance(now, true);
                Poll::Ready(())
            }
            Poll::Pending => {
                self.held = Some((req, since));
                Poll::Pending
            }
        }
    }

    fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = Some(peer);
    }

    fn wants_input(&self) -> bool {
        if self.output_full() {
            return false;
        }
        // Waiting for the rest of one request, the parser bounds it; with a
        // request held, a header section's worth of the next is enough.
        (self.held.is_none() && self.flv.is_none()) || self.buf.len() < self.cfg.max_header
    }
}
