//! The one session contract every protocol implements, and the
//! [`Conductor`] that connects a session to the [`Engine`].
//!
//! A protocol session (an RTMP connection, an HTTP connection, an SRT socket,
//! a WHIP peer) is a state machine after quinn-proto and str0m:
//!
//! * inputs: [`Session::handle_input`] (bytes from a stream socket or a
//!   datagram), [`Session::handle_delivery`] (a frame from the bus for a
//!   playing session), [`Session::handle_timeout`], and the host's answers
//!   [`Session::accept`] / [`Session::reject`] to the requests it raised;
//! * outputs: [`Session::poll_transmit`] (bytes to send),
//!   [`Session::poll_event`] (publish and play requests, frames, tracks,
//!   close), [`Session::poll_timeout`] (when to call `handle_timeout`).
//!
//! After any `handle_*` the host drains `poll_transmit` and `poll_event` until
//! both are empty. A session never reads a clock, opens a socket or spawns.
//!
//! The [`Conductor`] is that host, minus the IO: it owns a session, answers
//! its requests through the engine (so authorization is enforced in one place
//! for every protocol), feeds published frames to the bus and bus deliveries
//! to playing sessions. An executor adapter only moves bytes between a socket
//! and a conductor and sleeps until `poll_timeout`; it holds no protocol
//! logic, so every adapter drives every protocol the same way.

use core::net::SocketAddr;
use core::task::{Context, Poll};
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::bus::{CloseReason, DeliveryRef, RecvError};
use crate::engine::{Action, Engine, EngineError, Player, Publisher, Request, StreamKey};
use crate::frame::{MediaFrame, TrackSet};
use crate::time::Instant;

/// What the host feeds a session.
#[derive(Debug)]
pub enum Input {
    /// Bytes read from a stream socket (TCP), in order.
    Stream(BytesMut),
    /// One datagram and where it came from.
    Datagram {
        /// The sender.
        from: SocketAddr,
        /// Its payload.
        data: BytesMut,
    },
    /// The peer closed its sending side (TCP FIN).
    Eof,
}

/// Bytes a session wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination of a datagram; `None` on a stream socket.
    pub to: Option<SocketAddr>,
    /// The bytes.
    pub data: Bytes,
}

impl Transmit {
    /// Bytes for a stream socket.
    pub fn stream(data: Bytes) -> Self {
        Transmit { to: None, data }
    }
}

/// Identifies a request a session raised, so the host's answer finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u32);

/// A publish or play request raised by a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// To answer with.
    pub id: RequestId,
    /// Publish or play.
    pub action: Action,
    /// The application, as the client named it.
    pub app: String,
    /// The stream name, without its query string.
    pub stream: String,
    /// The `token` parameter of the query string, if any.
    pub token: Option<String>,
}

/// Why the host refused a request; the session tells its peer in its
/// protocol's terms (an RTMP `onStatus` code, an HTTP status).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The name is not a valid stream key.
    BadName,
    /// Credentials missing or wrong.
    Unauthorized,
    /// Nothing is published under this key.
    NotFound,
    /// Someone is already publishing this key.
    AlreadyPublishing,
    /// Not allowed by the application, or no room.
    Forbidden,
    /// The server is shutting down or out of capacity.
    Unavailable,
}

impl From<&EngineError> for Rejection {
    fn from(e: &EngineError) -> Self {
        match e {
            EngineError::Unauthorized(_) => Rejection::Unauthorized,
            EngineError::NotFound(_) => Rejection::NotFound,
            EngineError::AlreadyPublishing(_) => Rejection::AlreadyPublishing,
            EngineError::AppNotAllowed { .. } => Rejection::Forbidden,
            EngineError::TooManyPlayers(_) | EngineError::ShuttingDown => Rejection::Unavailable,
        }
    }
}

/// What a session reports to its host.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The peer asks to publish or play; answer with `accept` or `reject`.
    Request(StreamRequest),
    /// The publishing peer's track configuration (sent before the frames it
    /// applies to, and again when it changes).
    Tracks(TrackSet),
    /// A frame from the publishing peer.
    Frame(MediaFrame),
    /// Stream metadata from the publisher (e.g. RTMP `onMetaData`), as
    /// name/value pairs in text.
    Metadata(Vec<(String, String)>),
    /// The peer stopped publishing (the session may go on).
    PublishStopped,
    /// The peer stopped playing (the session may go on).
    PlayStopped,
    /// The session is over; the host closes the connection after sending
    /// what is queued.
    Closed(SessionEnd),
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The peer closed normally.
    Normal,
    /// The peer sent something invalid; the text says what and where.
    ProtocolError(String),
    /// The peer was silent too long.
    Timeout,
    /// The host ended it (shutdown).
    Host,
}

/// The sans-IO session contract. See the module documentation for the
/// calling order.
pub trait Session {
    /// The protocol's name (`"rtmp"`, `"http"`, ...), for logs and auth.
    fn protocol(&self) -> &'static str;

    /// Input from the peer.
    fn handle_input(&mut self, now: Instant, input: Input);

    /// A delivery from the bus, for a playing session.
    fn handle_delivery(&mut self, now: Instant, delivery: DeliveryRef<'_>);

    /// The played stream ended (publisher gone, evicted for lag, shutdown).
    fn handle_stream_end(&mut self, now: Instant, why: RecvError);

    /// Time passed; called at or after [`poll_timeout`](Self::poll_timeout).
    fn handle_timeout(&mut self, now: Instant);

    /// The host accepted request `id`.
    fn accept(&mut self, now: Instant, id: RequestId);

    /// The host refused request `id`.
    fn reject(&mut self, now: Instant, id: RequestId, why: Rejection);

    /// The host is shutting down: say goodbye in the protocol's terms.
    fn close(&mut self, now: Instant, why: CloseReason);

    /// The next bytes to send.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event for the host.
    #[must_use]
    fn poll_event(&mut self) -> Option<SessionEvent>;

    /// When `handle_timeout` should be called next.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether the session is over (after its last transmit is sent).
    fn is_closed(&self) -> bool;
}

/// How the host reached this connection.
#[derive(Clone, Debug, Default)]
pub struct ConnContext {
    /// The peer's address as text.
    pub peer: Option<String>,
    /// Wall-clock Unix seconds at `Instant::ZERO`, so token expiry can be
    /// checked from `now` alone.
    pub unix_base: u64,
}

/// Deliveries handed to a playing session per
/// [`Conductor::poll_deliveries`] call: bounds what one call can queue.
pub const DELIVERY_BATCH: usize = 64;

/// Drives one [`Session`] against an [`Engine`]. IO-free; see the module docs.
pub struct Conductor<S> {
    engine: Engine,
    session: S,
    ctx: ConnContext,
    publisher: Option<Publisher>,
    player: Option<Player>,
    closed: Option<SessionEnd>,
    /// Human-readable log lines for the adapter to print.
    log: VecDeque<String>,
}

impl<S: Session> core::fmt::Debug for Conductor<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Conductor")
            .field("protocol", &self.session.protocol())
            .field("peer", &self.ctx.peer)
            .field(
                "publishing",
                &self.publisher.as_ref().map(|p| p.key().clone()),
            )
            .field("playing", &self.player.as_ref().map(|p| p.key.clone()))
            .field("closed", &self.closed)
            .finish()
    }
}

impl<S: Session> Conductor<S> {
    /// A conductor for a new connection.
    pub fn new(engine: Engine, session: S, ctx: ConnContext) -> Self {
        Conductor {
            engine,
            session,
            ctx,
            publisher: None,
            player: None,
            closed: None,
            log: VecDeque::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> &S {
        &self.session
    }

    /// The session, mutably.
    pub fn session_mut(&mut self) -> &mut S {
        &mut self.session
    }

    /// Input from the socket.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.session.handle_input(now, input);
        self.process(now);
    }

    /// Timer expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.process(now);
    }

    /// Host shutdown: the session says goodbye; streams end.
    pub fn close(&mut self, now: Instant, why: CloseReason) {
        self.session.close(now, why);
        self.process(now);
        if let Some(p) = self.publisher.take() {
            p.end(why);
        }
        self.player = None;
    }

    /// Whether this connection is playing a stream (and so wants
    /// [`poll_deliveries`](Self::poll_deliveries) called when its output is
    /// drained).
    pub fn is_playing(&self) -> bool {
        self.player.is_some()
    }

    /// Hands ready bus deliveries (at most [`DELIVERY_BATCH`]) to the playing
    /// session. `Ready` when something was delivered or the stream ended;
    /// `Pending` (with `cx` registered) when nothing is ready. Call it only
    /// when the previous transmits have been written: a slow reader then
    /// lags on the bus and resumes at a key frame instead of growing a buffer.
    pub fn poll_deliveries(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let Some(player) = self.player.as_mut() else {
            return Poll::Pending;
        };
        let session = &mut self.session;
        let r = player
            .subscription
            .poll_for_each(cx, DELIVERY_BATCH, |d| session.handle_delivery(now, d));
        match r {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => {
                let key = player.key.clone();
                self.player = None;
                self.log.push_back(format!("play of {key} ended: {e}"));
                self.session.handle_stream_end(now, e);
            }
        }
        self.process(now);
        Poll::Ready(())
    }

    /// The next bytes to write.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.session.poll_transmit()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    /// A line for the log, in a person's words.
    #[must_use]
    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// Whether the connection is over: the session closed (after its queued
    /// transmits are written, the adapter closes the socket).
    pub fn is_closed(&self) -> bool {
        self.closed.is_some() || self.session.is_closed()
    }

    /// How the session ended, if it has.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.closed.as_ref()
    }

    fn request(&self, r: &StreamRequest) -> Result<StreamKey, Rejection> {
        StreamKey::new(&r.app, &r.stream).map_err(|_| Rejection::BadName)
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                SessionEvent::Request(r) => self.answer(now, r),
                SessionEvent::Tracks(t) => {
                    if let Some(p) = self.publisher.as_mut() {
                        let codecs: Vec<&str> = t.iter().map(|t| t.codec.name()).collect();
                        self.log
                            .push_back(format!("{} tracks: {}", p.key(), codecs.join(", ")));
                        p.set_tracks(t);
                    }
                }
                SessionEvent::Frame(f) => {
                    if let Some(p) = self.publisher.as_mut() {
                        if let Err(e) = p.publish(now, f) {
                            let key = p.key().clone();
                            self.publisher = None;
                            self.log.push_back(format!("publish of {key} stopped: {e}"));
                            self.session.close(now, e.0);
                        }
                    }
                }
                SessionEvent::Metadata(_) => {}
                SessionEvent::PublishStopped => {
                    if let Some(p) = self.publisher.take() {
                        self.log.push_back(format!("{} unpublished", p.key()));
                    }
                }
                SessionEvent::PlayStopped => {
                    if let Some(p) = self.player.take() {
                        self.log.push_back(format!("play of {} stopped", p.key));
                    }
                }
                SessionEvent::Closed(end) => {
                    if let Some(p) = self.publisher.take() {
                        self.log
                            .push_back(format!("{} ended: connection closed ({end:?})", p.key()));
                    }
                    self.player = None;
                    self.closed = Some(end);
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, r: StreamRequest) {
        let key = match self.request(&r) {
            Ok(k) => k,
            Err(why) => {
                self.log.push_back(format!(
                    "refused {} of {:?}/{:?}: bad name",
                    r.action.as_str(),
                    r.app,
                    r.stream
                ));
                self.session.reject(now, r.id, why);
                return;
            }
        };
        let unix_time = self.ctx.unix_base + now.as_micros() / 1_000_000;
        let req = Request {
            key: key.clone(),
            token: r.token.as_deref(),
            protocol: self.session.protocol(),
            peer: self.ctx.peer.as_deref(),
            unix_time,
        };
        let peer = self.ctx.peer.as_deref().unwrap_or("?");
        let proto = self.session.protocol();
        let result = if r.action == Action::Publish && self.publisher.is_some() {
            Err(Rejection::Forbidden)
        } else {
            match r.action {
                Action::Publish => self.engine.publish(&req, now).map(|p| {
                    self.publisher = Some(p);
                }),
                Action::Play => self.engine.play(&req).map(|p| {
                    self.player = Some(p);
                }),
            }
            .map_err(|e| {
                self.log.push_back(format!(
                    "refused {} of {key} over {proto} from {peer}: {e}",
                    r.action.as_str()
                ));
                Rejection::from(&e)
            })
        };
        match result {
            Ok(()) => {
                let verb = match r.action {
                    Action::Publish => "publishing",
                    Action::Play => "playing",
                };
                self.log
                    .push_back(format!("{peer} is {verb} {key} over {proto}"));
                self.session.accept(now, r.id);
            }
            Err(why) => self.session.reject(now, r.id, why),
        }
    }
}
