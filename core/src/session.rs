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

use core::net::{IpAddr, SocketAddr};
use core::task::{Context, Poll};
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use core::time::Duration;

use crate::bus::{CloseReason, DeliveryRef, RecvError};
use crate::engine::{Action, Engine, EngineError, Player, Publisher, Request, StreamKey};
use crate::frame::{MediaFrame, TrackSet};
use crate::time::Instant;

/// What the host feeds a session.
#[derive(Debug)]
pub enum Input {
    /// Bytes read from a stream socket (TCP), in order.
    Stream(BytesMut),
    /// One datagram, with both its ends (str0m's `Receive { source,
    /// destination }`).
    Datagram {
        /// The sender.
        from: SocketAddr,
        /// The local socket it arrived on (a session may own several).
        local: SocketAddr,
        /// Its payload.
        data: BytesMut,
    },
    /// The peer closed its sending side (TCP FIN).
    Eof,
}

/// Bytes a session wants sent (after quinn-proto's `Transmit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination of a datagram; `None` on a stream socket.
    pub to: Option<SocketAddr>,
    /// The local socket to send a datagram from (one the session was given
    /// with [`Session::sockets_bound`], or the endpoint's); `None`: the
    /// socket the session's input comes from.
    pub from: Option<SocketAddr>,
    /// For a datagram: `data` holds several datagrams of this size (the last
    /// may be shorter), for a host that sends them in one call (GSO);
    /// `None`: one datagram.
    pub segment_size: Option<usize>,
    /// The bytes.
    pub data: Bytes,
}

impl Transmit {
    /// Bytes for a stream socket.
    pub fn stream(data: Bytes) -> Self {
        Transmit {
            to: None,
            from: None,
            segment_size: None,
            data,
        }
    }

    /// One datagram to `to`, sent from the local socket `from` (`None`: the
    /// session's own).
    pub fn datagram(from: Option<SocketAddr>, to: SocketAddr, data: Bytes) -> Self {
        Transmit {
            to: Some(to),
            from,
            segment_size: None,
            data,
        }
    }
}

/// Sockets a session asks its host for (RTSP's RTP/RTCP pair per track):
/// answered with [`Session::sockets_bound`], the way publish and play
/// requests are answered with `accept` / `reject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketRequest {
    /// To answer with.
    pub id: RequestId,
    /// What to bind.
    pub kind: SocketKind,
}

/// What a [`SocketRequest`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketKind {
    /// One UDP socket on `ip` (`None`: the interface of the session's own
    /// connection), any free port.
    Udp {
        /// The interface.
        ip: Option<IpAddr>,
    },
    /// Two UDP sockets on adjacent ports, the first even (RTP and RTCP,
    /// RFC 3550 §11), on `ip` (`None`: the interface of the session's own
    /// connection).
    UdpPair {
        /// The interface.
        ip: Option<IpAddr>,
    },
}

/// Why the host could not bind what a session asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindError {
    /// This host carries no datagrams (a stream-only adapter or listener).
    Unsupported,
    /// The sockets could not be bound; the text says why.
    Failed(String),
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
    /// A user name the client presented, with its password (RTMP
    /// `?user=&pass=`, RTSP `Authorization: Basic`).
    pub user: Option<String>,
    /// The password that came with [`user`](Self::user).
    pub password: Option<String>,
    /// An answer to a Digest challenge in place of the password (RTSP);
    /// boxed, as few requests carry one.
    pub digest: Option<Box<crate::engine::DigestAnswer>>,
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
            // Refused whatever the credentials: no point asking again.
            EngineError::Unauthorized(crate::engine::AuthError::Denied(_)) => Rejection::Forbidden,
            EngineError::Unauthorized(_) => Rejection::Unauthorized,
            EngineError::NotFound(_) | EngineError::Starting(_) => Rejection::NotFound,
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
    /// applies to, and again when it changes). Boxed: it is rare, and frames
    /// share this enum.
    Tracks(Box<TrackSet>),
    /// A frame from the publishing peer.
    Frame(MediaFrame),
    /// The session needs sockets (answer with
    /// [`Session::sockets_bound`]).
    Sockets(SocketRequest),
    /// Stream metadata from the publisher (e.g. RTMP `onMetaData`), as
    /// name/value pairs in text.
    Metadata(Vec<(String, String)>),
    /// This playing session's peer needs a key frame (it lost packets and
    /// cannot decode on): the host asks the stream's publisher.
    KeyFrameWanted,
    /// Something about the session the host should log, in a person's
    /// words: a player gets less than the stream (a codec its protocol
    /// cannot carry, frames its peer cannot decode).
    Notice(String),
    /// The peer stopped publishing (the session may go on).
    PublishStopped,
    /// The peer stopped playing (the session may go on).
    PlayStopped,
    /// The session is over; the host closes the connection after sending
    /// what is queued.
    Closed(SessionEnd),
}

/// How a session ended, by cause (after quinn's `ConnectionError` and
/// rustls's `Error`): the peer left, time ran out, the host ended it, the
/// host refused what the session asked for, or the peer broke (or could not
/// meet) the protocol.
///
/// A host decides on the variant, never on text: a relay retries a pull
/// the remote answered "not found" by matching
/// [`ProtocolErrorKind::PeerRefused`], or the protocol crate's own error
/// through [`ProtocolError::downcast_ref`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// The peer closed normally.
    Normal,
    /// The peer was silent, or too slow to send a request whole, for too
    /// long; or it took no bytes while output waited.
    Timeout,
    /// The host ended it (shutdown).
    Host,
    /// The session's publish or play request was refused by the host
    /// (answered with [`Session::reject`]) and the protocol ends the session
    /// there; with the host's reason.
    Refused(Rejection),
    /// The peer sent what the protocol does not allow, needs what this side
    /// does not implement, went past a limit, or (a client session) refused
    /// what this side asked. The cause is typed in the protocol crate's own
    /// error, reachable with [`ProtocolError::downcast_ref`].
    Protocol(ProtocolError),
}

impl SessionEnd {
    /// The protocol error, if the session ended with one.
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        match self {
            SessionEnd::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProtocolError> for SessionEnd {
    fn from(e: ProtocolError) -> Self {
        SessionEnd::Protocol(e)
    }
}

impl core::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SessionEnd::Normal => f.write_str("closed by the peer"),
            SessionEnd::Timeout => f.write_str("timed out"),
            SessionEnd::Host => f.write_str("closed by the host"),
            SessionEnd::Refused(why) => write!(f, "refused: {}", rejection_text(why)),
            SessionEnd::Protocol(e) => write!(f, "{} error: {e}", e.protocol()),
        }
    }
}

impl Rejection {
    /// A short fixed name (`unauthorized`, `not_found`, ...), for metric
    /// labels and machines.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::BadName => "bad_name",
            Rejection::Unauthorized => "unauthorized",
            Rejection::NotFound => "not_found",
            Rejection::AlreadyPublishing => "already_publishing",
            Rejection::Forbidden => "forbidden",
            Rejection::Unavailable => "unavailable",
        }
    }
}

fn rejection_text(why: &Rejection) -> &'static str {
    match why {
        Rejection::BadName => "bad stream name (the name is APP/STREAM)",
        Rejection::Unauthorized => "unauthorized",
        Rejection::NotFound => "not found",
        Rejection::AlreadyPublishing => "already being published",
        Rejection::Forbidden => "forbidden",
        Rejection::Unavailable => "unavailable",
    }
}

/// In a person's words, as a peer or a log is told it.
impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(rejection_text(self))
    }
}

/// What kind of protocol error ended a session: the split a host acts on
/// without knowing the protocol (rustls's "the peer misbehaved" / "the peer
/// is incompatible", plus limits and a remote's refusal). The protocol
/// crate's error says exactly what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// The peer sent bytes that do not parse or that break the protocol's
    /// rules (the peer misbehaved).
    Malformed,
    /// The peer speaks a version or uses a feature this side does not
    /// implement (the peer is incompatible).
    Unsupported,
    /// The peer went past a bound this side sets: a message size, a count
    /// of streams, input buffered while the host decides.
    LimitExceeded,
    /// The remote refused what this client session asked for (its code is
    /// in the protocol's error); in the engine's terms when that code maps
    /// to one, `None` when it does not.
    PeerRefused(Option<Rejection>),
}

/// A protocol error that ended a session: the protocol, the
/// [kind](ProtocolErrorKind), where in the peer's bytes, and the protocol
/// crate's own error as the source (`arcly_rtmp::RtmpError`,
/// `arcly_http::ParseError`), for [`downcast_ref`](Self::downcast_ref).
///
/// Cheap to clone (the source is shared). Two are equal when protocol, kind,
/// offset and the source's text are: the source's type is not compared.
/// Displays as the source's text and the offset, for a log line:
/// `chunk stream 3: header type 1 with no previous header (after byte 3073)`.
#[derive(Clone)]
pub struct ProtocolError {
    protocol: &'static str,
    kind: ProtocolErrorKind,
    offset: Option<u64>,
    source: std::sync::Arc<dyn core::error::Error + Send + Sync + 'static>,
}

impl ProtocolError {
    /// An error of `protocol` (as [`Session::protocol`] names it), of
    /// `kind`, caused by `source`.
    pub fn new<E>(protocol: &'static str, kind: ProtocolErrorKind, source: E) -> Self
    where
        E: core::error::Error + Send + Sync + 'static,
    {
        ProtocolError {
            protocol,
            kind,
            offset: None,
            source: std::sync::Arc::new(source),
        }
    }

    /// Where it happened: the peer's bytes consumed before it, to find the
    /// spot in a capture of the connection.
    #[must_use]
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The protocol (`"rtmp"`, `"http"`, ...).
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// What kind of error it is.
    pub fn kind(&self) -> &ProtocolErrorKind {
        &self.kind
    }

    /// The peer's bytes consumed before the error, when the protocol counts
    /// them.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The protocol crate's error.
    pub fn get_ref(&self) -> &(dyn core::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The protocol crate's error as its own type, if it is an `E`.
    pub fn downcast_ref<E: core::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}

impl core::fmt::Debug for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProtocolError")
            .field("protocol", &self.protocol)
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("source", &self.source)
            .finish()
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(n) = self.offset {
            write!(f, " (after byte {n})")?;
        }
        Ok(())
    }
}

/// Like `std::io::Error` with a custom error: the Display is the source's,
/// so `source()` goes on to the source's own source instead of repeating it.
impl core::error::Error for ProtocolError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.source.source()
    }
}

impl PartialEq for ProtocolError {
    fn eq(&self, other: &Self) -> bool {
        self.protocol == other.protocol
            && self.kind == other.kind
            && self.offset == other.offset
            && (std::sync::Arc::ptr_eq(&self.source, &other.source)
                || self.source.to_string() == other.source.to_string())
    }
}

impl Eq for ProtocolError {}

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

    /// For sessions that wait on something other than the bus or a timer
    /// (an HTTP request held open until an LL-HLS part exists): `Ready` when
    /// that something happened, after which the host drains `poll_transmit`
    /// and `poll_event`; `Pending` registers `cx`'s waker. The default waits
    /// on nothing.
    fn poll_ready(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let _ = (now, cx);
        Poll::Pending
    }

    /// Whether the session takes more input now. A session whose queued
    /// output or unparsed input is above its bound answers `false`; the
    /// host then stops reading the socket until the session's transmits have
    /// been written, so memory per connection stays bounded whatever the
    /// peer sends (a peer that pipelines requests and never reads fills its
    /// own socket buffers, not ours). The default always takes input.
    fn wants_input(&self) -> bool {
        true
    }

    /// A player of the stream this session publishes asked for a key
    /// frame: a session whose peer makes one on request (WebRTC's PLI)
    /// asks it. The default ignores it (RTMP, RTSP and SRT publishers
    /// cannot be asked; players wait for the next one).
    fn handle_key_frame_request(&mut self, now: Instant) {
        let _ = now;
    }

    /// The host's answer to a [`SocketRequest`]: the local addresses of the
    /// sockets bound (datagrams to them arrive as [`Input::Datagram`] with
    /// that `local`), or why not. The default ignores it.
    fn sockets_bound(
        &mut self,
        now: Instant,
        id: RequestId,
        bound: Result<Vec<SocketAddr>, BindError>,
    ) {
        let _ = (now, id, bound);
    }

    /// Whether a playing session takes more bus deliveries now. A datagram
    /// session paces itself (UDP writes never block): it answers `false`
    /// while it holds what it has not yet sent, and the host asks again
    /// after the session's next timeout. The default always takes them.
    fn wants_deliveries(&self) -> bool {
        true
    }

    /// The peer's address, told once before any input (for sessions that
    /// decide by it, e.g. an HTTP API served to loopback only). The default
    /// ignores it.
    fn set_peer(&mut self, peer: SocketAddr) {
        let _ = peer;
    }
}

/// How the host reached this connection, and its time limits.
#[derive(Clone, Debug)]
pub struct ConnContext {
    /// The connection's id in the host's list of sessions, if it keeps
    /// one: the conductor's log lines begin with it (`session 12: ...`).
    pub id: Option<u64>,
    /// The peer's address as text.
    pub peer: Option<String>,
    /// The peer's address (given to the session with
    /// [`Session::set_peer`]).
    pub peer_addr: Option<SocketAddr>,
    /// Shared by a listener's connections: at most one line a second about
    /// connections closed for malformed input, however many a flood opens.
    pub malformed_log: std::sync::Arc<crate::host::LogLimit>,
    /// Wall-clock Unix seconds at `Instant::ZERO`, so token expiry can be
    /// checked from `now` alone.
    pub unix_base: u64,
    /// When the connection was accepted.
    pub started: Instant,
    /// A connection that has neither published nor played by
    /// `started + handshake_timeout` is closed (`None` for protocols that
    /// never publish or play through the engine, like HTTP).
    pub handshake_timeout: Option<Duration>,
    /// A connection that is not playing and sends nothing for this long is
    /// closed.
    pub idle_timeout: Duration,
}

impl Default for ConnContext {
    fn default() -> Self {
        ConnContext {
            id: None,
            peer: None,
            peer_addr: None,
            malformed_log: std::sync::Arc::new(crate::host::LogLimit::new(Duration::from_secs(1))),
            unix_base: 0,
            started: Instant::ZERO,
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// How long a play waits for a source started on demand
/// ([`crate::engine::OnDemand`]) before it is refused as not found.
pub const ON_DEMAND_WAIT: Duration = Duration::from_secs(10);

/// How often a waiting play asks the engine again.
const ON_DEMAND_RETRY: Duration = Duration::from_millis(100);

/// A play waiting for its stream's source to start.
struct WaitingPlay {
    req: StreamRequest,
    /// Refused as not found from here.
    until: Instant,
    /// Asked again from here.
    next: Instant,
}

/// Deliveries handed to a playing session per
/// [`Conductor::poll_deliveries`] call: bounds what one call can queue.
pub const DELIVERY_BATCH: usize = 16;

/// Drives one [`Session`] against an [`Engine`]. IO-free; see the module docs.
///
/// One pointer wide: everything lives in a single allocation, so an
/// adapter's connection future (which, being an async function, keeps its
/// arguments beside its locals) stays small for thousands of connections.
pub struct Conductor<S> {
    p: Box<Parts<S>>,
}

struct Parts<S> {
    engine: Engine,
    session: S,
    ctx: ConnContext,
    // Boxed: a connection is a publisher or a player, and thousands of
    // players should not each hold room for a publisher's state.
    publisher: Option<Box<Publisher>>,
    player: Option<Player>,
    closed: Option<SessionEnd>,
    /// Whether the connection ever published or played.
    engaged: bool,
    last_input: Instant,
    /// Human-readable log lines for the adapter to print.
    log: VecDeque<String>,
    /// Socket requests for the host.
    sockets: VecDeque<SocketRequest>,
    /// The stream's key frame requests this publishing session has passed
    /// on (set when it starts publishing).
    key_requests_seen: Option<u64>,
    /// A play whose stream's source is starting.
    waiting: Option<Box<WaitingPlay>>,
}

impl<S: Session> core::fmt::Debug for Conductor<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Conductor")
            .field("protocol", &self.p.session.protocol())
            .field("peer", &self.p.ctx.peer)
            .field(
                "publishing",
                &self.p.publisher.as_ref().map(|p| p.key().clone()),
            )
            .field("playing", &self.p.player.as_ref().map(|p| p.key.clone()))
            .field("closed", &self.p.closed)
            .finish()
    }
}

impl<S: Session> Conductor<S> {
    /// A conductor for a new connection.
    pub fn new(engine: Engine, mut session: S, ctx: ConnContext) -> Self {
        let last_input = ctx.started;
        if let Some(peer) = ctx.peer_addr {
            session.set_peer(peer);
        }
        Conductor {
            p: Box::new(Parts {
                engine,
                session,
                ctx,
                publisher: None,
                player: None,
                closed: None,
                engaged: false,
                last_input,
                log: VecDeque::new(),
                sockets: VecDeque::new(),
                key_requests_seen: None,
                waiting: None,
            }),
        }
    }

    /// What the connection publishes or plays, once it does.
    pub fn stream(&self) -> Option<(&crate::engine::StreamKey, crate::engine::Action)> {
        match (&self.p.publisher, &self.p.player) {
            (Some(p), _) => Some((p.key(), crate::engine::Action::Publish)),
            (None, Some(p)) => Some((&p.key, crate::engine::Action::Play)),
            (None, None) => None,
        }
    }

    /// The session.
    pub fn session(&self) -> &S {
        &self.p.session
    }

    /// The session, mutably.
    pub fn session_mut(&mut self) -> &mut S {
        &mut self.p.session
    }

    /// Acts on what the session raised on its own, outside an input or a
    /// timer: the events of a session built from a handshake already read
    /// (a datagram endpoint's new sessions), answered at once rather than
    /// at the peer's next packet.
    pub fn handle_pending(&mut self, now: Instant) {
        self.process(now);
    }

    /// Input from the socket.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.p.last_input = now;
        self.p.session.handle_input(now, input);
        self.process(now);
    }

    /// Timer expiry: the session's own timers, then the connection's
    /// handshake and idle limits.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.p.session.poll_timeout().is_some_and(|t| t <= now) {
            self.p.session.handle_timeout(now);
            self.process(now);
        }
        if self.p.waiting.as_ref().is_some_and(|w| w.next <= now) {
            if let Some(w) = self.p.waiting.take() {
                self.answer_until(now, w.req, w.until);
                self.process(now);
            }
        }
        if self.p.closed.is_none() && self.conn_deadline().is_some_and(|t| t <= now) {
            let what = if self.p.engaged { "idle" } else { "handshake" };
            self.p.log.push_back(format!(
                "closing {} connection from {}: {what} timeout",
                self.p.session.protocol(),
                self.p.ctx.peer.as_deref().unwrap_or("?")
            ));
            self.p.publisher = None;
            self.p.player = None;
            self.p.closed = Some(SessionEnd::Timeout);
        }
    }

    /// The connection's own deadline: the handshake limit until it publishes
    /// or plays, then the idle limit while it is not playing.
    fn conn_deadline(&self) -> Option<Instant> {
        match self.p.ctx.handshake_timeout {
            // A play waiting for its source has a limit of its own.
            Some(_) if self.p.waiting.is_some() => return None,
            Some(limit) if !self.p.engaged => return Some(self.p.ctx.started + limit),
            _ => {}
        }
        if self.p.player.is_none() {
            Some(self.p.last_input + self.p.ctx.idle_timeout)
        } else {
            None
        }
    }

    /// Host shutdown: the session says goodbye; streams end.
    pub fn close(&mut self, now: Instant, why: CloseReason) {
        self.p.session.close(now, why);
        self.process(now);
        if let Some(p) = self.p.publisher.take() {
            p.end(why);
        }
        self.p.player = None;
    }

    /// The peer took no bytes for `after` while output was queued: the
    /// connection is closed at once (nothing more can be said to it), with
    /// a log line. Its publish or play ends.
    pub fn write_timed_out(&mut self, now: Instant, after: Duration) {
        let _ = now;
        self.p.log.push_back(format!(
            "closing {} connection from {}: it took no bytes for {} s",
            self.p.session.protocol(),
            self.p.ctx.peer.as_deref().unwrap_or("?"),
            after.as_secs_f64()
        ));
        self.p.publisher = None;
        self.p.player = None;
        self.p.closed = Some(SessionEnd::Timeout);
    }

    /// Evicts a playing peer that is past the bus's lag limit without
    /// reading from the bus (the host calls it while a write to the peer is
    /// pending, when deliveries are not taken). Returns whether it evicted.
    pub fn check_lag(&mut self, now: Instant) -> bool {
        let Some(player) = self.p.player.as_ref() else {
            return false;
        };
        if !player.subscription.past_lag_limit() {
            return false;
        }
        let lost = player.subscription.behind();
        let key = player.key.clone();
        self.p.player = None;
        let e = RecvError::Evicted { lost };
        self.p.log.push_back(format!(
            "play of {key} by {} ended: {e}",
            self.p.ctx.peer.as_deref().unwrap_or("?")
        ));
        self.p.session.handle_stream_end(now, e);
        self.process(now);
        true
    }

    /// Whether the session takes more input now (see
    /// [`Session::wants_input`]); a closed connection takes none.
    pub fn wants_input(&self) -> bool {
        !self.is_closed() && self.p.session.wants_input()
    }

    /// Whether this connection is playing a stream (and so wants
    /// [`poll_deliveries`](Self::poll_deliveries) called when its output is
    /// drained).
    pub fn is_playing(&self) -> bool {
        self.p.player.is_some()
    }

    /// Hands ready bus deliveries (at most [`DELIVERY_BATCH`]) to the playing
    /// session. `Ready` when something was delivered or the stream ended;
    /// `Pending` (with `cx` registered) when nothing is ready. Call it only
    /// when the previous transmits have been written: a slow reader then
    /// lags on the bus and resumes at a key frame instead of growing a buffer.
    pub fn poll_deliveries(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let Some(player) = self.p.player.as_mut() else {
            return Poll::Pending;
        };
        if !self.p.session.wants_deliveries() {
            // Paced: the session's next timeout brings the host back.
            return Poll::Pending;
        }
        let session = &mut self.p.session;
        let r = player
            .subscription
            .poll_for_each(cx, DELIVERY_BATCH, |d| session.handle_delivery(now, d));
        match r {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => {
                let key = player.key.clone();
                self.p.player = None;
                self.p.log.push_back(format!(
                    "play of {key} by {} over {} ended: {e}",
                    self.p.ctx.peer.as_deref().unwrap_or("?"),
                    self.p.session.protocol()
                ));
                self.p.session.handle_stream_end(now, e);
            }
        }
        self.process(now);
        Poll::Ready(())
    }

    /// Polls what the session itself waits on (see [`Session::poll_ready`]);
    /// the adapter calls it with every wake-up, next to
    /// [`poll_deliveries`](Self::poll_deliveries).
    pub fn poll_session(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        if self.p.session.poll_ready(now, cx).is_ready() {
            self.process(now);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// The next bytes to write.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.p.session.poll_transmit()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        [
            self.p.session.poll_timeout(),
            self.conn_deadline(),
            self.p.waiting.as_ref().map(|w| w.next),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next socket request for the host; answer it with
    /// [`sockets_bound`](Self::sockets_bound).
    #[must_use]
    pub fn poll_socket_request(&mut self) -> Option<SocketRequest> {
        self.p.sockets.pop_front()
    }

    /// The host's answer to a socket request.
    pub fn sockets_bound(
        &mut self,
        now: Instant,
        id: RequestId,
        bound: Result<Vec<SocketAddr>, BindError>,
    ) {
        self.p.session.sockets_bound(now, id, bound);
        self.process(now);
    }

    /// A line for the log, in a person's words.
    #[must_use]
    pub fn poll_log(&mut self) -> Option<String> {
        let line = self.p.log.pop_front()?;
        Some(match self.p.ctx.id {
            Some(id) => format!("session {id}: {line}"),
            None => line,
        })
    }

    /// Whether the connection is over: the session closed (after its queued
    /// transmits are written, the adapter closes the socket).
    pub fn is_closed(&self) -> bool {
        self.p.closed.is_some() || self.p.session.is_closed()
    }

    /// How the session ended, if it has.
    pub fn end(&self) -> Option<&SessionEnd> {
        self.p.closed.as_ref()
    }

    fn request(&self, r: &StreamRequest) -> Result<StreamKey, Rejection> {
        StreamKey::new(&r.app, &r.stream).map_err(|_| Rejection::BadName)
    }

    fn process(&mut self, now: Instant) {
        // Players' key frame requests since the last look, to the publisher.
        if let Some(p) = &self.p.publisher {
            let n = p.key_frame_requests();
            match self.p.key_requests_seen {
                Some(seen) if seen != n => {
                    self.p.key_requests_seen = Some(n);
                    self.p.session.handle_key_frame_request(now);
                }
                None => self.p.key_requests_seen = Some(n),
                Some(_) => {}
            }
        }
        while let Some(ev) = self.p.session.poll_event() {
            match ev {
                SessionEvent::Request(r) => self.answer(now, r),
                SessionEvent::Tracks(t) => {
                    if let Some(p) = self.p.publisher.as_mut() {
                        let codecs: Vec<&str> = t.iter().map(|t| t.codec.name()).collect();
                        self.p
                            .log
                            .push_back(format!("{} tracks: {}", p.key(), codecs.join(", ")));
                        p.set_tracks(*t);
                    }
                }
                SessionEvent::Frame(f) => {
                    if let Some(p) = self.p.publisher.as_mut() {
                        if let Err(e) = p.publish(now, f) {
                            let key = p.key().clone();
                            self.p.publisher = None;
                            self.p
                                .log
                                .push_back(format!("publish of {key} stopped: {e}"));
                            self.p.session.close(now, e.0);
                        }
                    }
                }
                SessionEvent::Metadata(_) => {}
                SessionEvent::KeyFrameWanted => {
                    if let Some(p) = &self.p.player {
                        p.request_key_frame();
                    }
                }
                SessionEvent::Notice(text) => self.p.log.push_back(format!(
                    "{} over {}: {text}",
                    self.p.ctx.peer.as_deref().unwrap_or("?"),
                    self.p.session.protocol()
                )),
                SessionEvent::Sockets(r) => self.p.sockets.push_back(r),
                SessionEvent::PublishStopped => {
                    if let Some(p) = self.p.publisher.take() {
                        self.p.log.push_back(format!("{} unpublished", p.key()));
                    }
                }
                SessionEvent::PlayStopped => {
                    if let Some(p) = self.p.player.take() {
                        self.p.log.push_back(format!(
                            "play of {} by {} over {} stopped",
                            p.key,
                            self.p.ctx.peer.as_deref().unwrap_or("?"),
                            self.p.session.protocol()
                        ));
                    }
                }
                SessionEvent::Closed(end) => {
                    if let SessionEnd::Protocol(why) = &end {
                        if let Some(held) = self.p.ctx.malformed_log.allow(now) {
                            let more = if held > 0 {
                                format!(" ({held} more such connections since the last line)")
                            } else {
                                String::new()
                            };
                            self.p.log.push_back(format!(
                                "closing {} connection from {}: {why}{more}",
                                self.p.session.protocol(),
                                self.p.ctx.peer.as_deref().unwrap_or("?")
                            ));
                        }
                    }
                    if let Some(p) = self.p.publisher.take() {
                        self.p
                            .log
                            .push_back(format!("{} ended: connection closed ({end})", p.key()));
                    }
                    self.p.player = None;
                    self.p.closed = Some(end);
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, r: StreamRequest) {
        self.answer_until(now, r, now + ON_DEMAND_WAIT);
    }

    /// Answers `r`; a play whose source is starting waits until `until`.
    fn answer_until(&mut self, now: Instant, r: StreamRequest, until: Instant) {
        let key = match self.request(&r) {
            Ok(k) => k,
            Err(why) => {
                self.p.log.push_back(format!(
                    "refused {} of {:?} over {} from {}: {}",
                    r.action.as_str(),
                    format!("{}/{}", r.app, r.stream),
                    self.p.session.protocol(),
                    self.p.ctx.peer.as_deref().unwrap_or("?"),
                    Rejection::BadName
                ));
                self.p.session.reject(now, r.id, why);
                return;
            }
        };
        let unix_time = self.p.ctx.unix_base + now.as_micros() / 1_000_000;
        let req = Request {
            key: key.clone(),
            token: r.token.as_deref(),
            user: r.user.as_deref(),
            password: r.password.as_deref(),
            digest: r.digest.as_deref(),
            protocol: self.p.session.protocol(),
            peer: self.p.ctx.peer.as_deref(),
            unix_time,
        };
        let peer = self.p.ctx.peer.as_deref().unwrap_or("?");
        let proto = self.p.session.protocol();
        let result = if r.action == Action::Publish && self.p.publisher.is_some() {
            self.p.log.push_back(format!(
                "refused publish of {key} over {proto} from {peer}: this connection already publishes"
            ));
            Err(Rejection::Forbidden)
        } else {
            match r.action {
                Action::Publish => self.p.engine.publish(&req, now).map(|p| {
                    self.p.publisher = Some(Box::new(p));
                }),
                Action::Play => match self.p.engine.play(&req) {
                    Err(EngineError::Starting(_)) if now < until => {
                        self.p.waiting = Some(Box::new(WaitingPlay {
                            req: r,
                            until,
                            next: now + ON_DEMAND_RETRY,
                        }));
                        return;
                    }
                    Err(EngineError::Starting(_)) => {
                        self.p.log.push_back(format!(
                            "refused play of {key} over {proto} from {peer}: \
                             nothing came from its source within {} s",
                            ON_DEMAND_WAIT.as_secs()
                        ));
                        Err(self.p.engine.reject(
                            &req,
                            Action::Play,
                            EngineError::NotFound(key.clone()),
                        ))
                    }
                    r => r.map(|p| {
                        self.p.player = Some(p);
                    }),
                },
            }
            // The engine tells its observer, with the protocol and peer.
            .map_err(|e| Rejection::from(&e))
        };
        match result {
            Ok(()) => {
                self.p.engaged = true;
                let verb = match r.action {
                    Action::Publish => "publishing",
                    Action::Play => "playing",
                };
                self.p
                    .log
                    .push_back(format!("{peer} is {verb} {key} over {proto}"));
                self.p.session.accept(now, r.id);
            }
            Err(why) => self.p.session.reject(now, r.id, why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CodecId, TrackId};
    use crate::time::MediaTime;

    /// A toy protocol: the peer sends lines `publish NAME`, `play NAME`,
    /// `frame`; the session answers `ok`/`no`, and writes `F<pts>` per frame
    /// it plays.
    #[derive(Default)]
    struct Lines {
        buf: Vec<u8>,
        next_id: u32,
        out: VecDeque<Transmit>,
        events: VecDeque<SessionEvent>,
        closed: bool,
        t: i64,
        /// End the session when a request is refused.
        end_on_reject: bool,
    }

    /// The toy protocol's error: a line it does not know.
    #[derive(Debug, PartialEq, thiserror::Error)]
    #[error("unknown line {0:?}")]
    struct BadLine(String);

    impl Session for Lines {
        fn protocol(&self) -> &'static str {
            "lines"
        }
        fn handle_input(&mut self, _now: Instant, input: Input) {
            let Input::Stream(b) = input else {
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Normal));
                return;
            };
            self.buf.extend_from_slice(&b);
            while let Some(i) = self.buf.iter().position(|&c| c == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line[..i]).to_string();
                let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
                let (stream, token) = match arg.split_once("?token=") {
                    Some((s, t)) => (s.to_string(), Some(t.to_string())),
                    None => (arg.to_string(), None),
                };
                let action = match verb {
                    "publish" => Action::Publish,
                    "play" => Action::Play,
                    "key" => {
                        self.events.push_back(SessionEvent::KeyFrameWanted);
                        continue;
                    }
                    "frame" => {
                        self.t += 1;
                        self.events.push_back(SessionEvent::Frame(MediaFrame::video(
                            TrackId(0),
                            CodecId::H264,
                            true,
                            MediaTime::from_millis(self.t),
                            Bytes::new(),
                        )));
                        continue;
                    }
                    _ => {
                        let e = ProtocolError::new(
                            "lines",
                            ProtocolErrorKind::Malformed,
                            BadLine(line),
                        );
                        self.events.push_back(SessionEvent::Closed(e.into()));
                        continue;
                    }
                };
                self.next_id += 1;
                self.events.push_back(SessionEvent::Request(StreamRequest {
                    id: RequestId(self.next_id),
                    action,
                    app: "live".into(),
                    stream,
                    token,
                    user: None,
                    password: None,
                    digest: None,
                }));
            }
        }
        fn handle_delivery(&mut self, _now: Instant, d: DeliveryRef<'_>) {
            if let DeliveryRef::Frame(f) = d {
                self.out
                    .push_back(Transmit::stream(Bytes::from(format!("F{}\n", f.pts.ticks))));
            }
        }
        fn handle_stream_end(&mut self, _now: Instant, _why: RecvError) {
            self.out
                .push_back(Transmit::stream(Bytes::from_static(b"end\n")));
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn handle_key_frame_request(&mut self, _now: Instant) {
            self.out
                .push_back(Transmit::stream(Bytes::from_static(b"K\n")));
        }
        fn accept(&mut self, _now: Instant, _id: RequestId) {
            self.out
                .push_back(Transmit::stream(Bytes::from_static(b"ok\n")));
        }
        fn reject(&mut self, _now: Instant, _id: RequestId, why: Rejection) {
            self.out
                .push_back(Transmit::stream(Bytes::from(format!("no {why:?}\n"))));
            if self.end_on_reject {
                self.events
                    .push_back(SessionEvent::Closed(SessionEnd::Refused(why)));
            }
        }
        fn close(&mut self, _now: Instant, _why: CloseReason) {
            self.closed = true;
        }
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }
        fn poll_event(&mut self) -> Option<SessionEvent> {
            self.events.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn is_closed(&self) -> bool {
            self.closed
        }
    }

    fn input(s: &str) -> Input {
        Input::Stream(BytesMut::from(s.as_bytes()))
    }

    fn sent(c: &mut Conductor<Lines>) -> String {
        let mut s = String::new();
        while let Some(t) = c.poll_transmit() {
            s.push_str(&String::from_utf8_lossy(&t.data));
        }
        s
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn a_merging_outbox_takes_deliveries_once_per_window() {
        use crate::host::Outbox;
        let written = |out: &mut Outbox, c: &mut Conductor<Lines>, now: Instant| {
            out.fill(c, now);
            let mut s = String::new();
            let mut slices = [std::io::IoSlice::new(&[]); crate::host::WRITE_SLICES];
            let n = out.slices(&mut slices);
            for b in &slices[..n] {
                s.push_str(&String::from_utf8_lossy(b));
            }
            out.advance(out.queued(), now);
            s
        };
        // What a driver does when woken at `now`: takes deliveries and
        // writes them for as long as there are some it may take.
        let turn = |out: &mut Outbox, c: &mut Conductor<Lines>, now: Instant| {
            let mut s = String::new();
            while out.poll_deliveries(c, &mut noop_cx(), now).is_ready() {
                s.push_str(&written(out, c, now));
            }
            s
        };
        let window = Duration::from_millis(100);
        let never = Duration::from_secs(10);
        for merge in [false, true] {
            let engine = Engine::default();
            let mut publisher =
                Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
            let mut player =
                Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
            let mut out = if merge {
                Outbox::merging(window)
            } else {
                Outbox::new()
            };
            let t0 = Instant::from_millis(1_000);
            publisher.handle_input(t0, input("publish cam\nframe\n"));
            player.handle_input(t0, input("play cam\n"));
            assert_eq!(written(&mut out, &mut player, t0), "ok\n");
            // The first deliveries (the GOP cache) are not held back.
            assert_eq!(turn(&mut out, &mut player, t0), "F1\n");
            let t1 = Instant::from_millis(1_010);
            publisher.handle_input(t1, input("frame\n"));
            if !merge {
                assert_eq!(turn(&mut out, &mut player, t1), "F2\n");
                assert_eq!(out.next_wake(&player, never), None);
                continue;
            }
            // Within the window: nothing taken, and the driver is told when
            // to come back.
            assert_eq!(turn(&mut out, &mut player, t1), "");
            assert_eq!(out.next_wake(&player, never), Some(t0 + window));
            // More than one batch comes in the window: all of it is taken
            // at its end, not one batch per window.
            let t2 = Instant::from_millis(1_050);
            let many = "frame\n".repeat(DELIVERY_BATCH + 3);
            publisher.handle_input(t2, input(&many));
            assert_eq!(turn(&mut out, &mut player, t2), "");
            let t3 = t0 + window;
            let all: String = (2..DELIVERY_BATCH as u64 + 6)
                .map(|n| format!("F{n}\n"))
                .collect();
            assert_eq!(turn(&mut out, &mut player, t3), all);
            assert_eq!(out.next_wake(&player, never), Some(t3 + window));
            // Nothing came in the next window: no more wakes for it.
            let t4 = t3 + window;
            assert_eq!(turn(&mut out, &mut player, t4), "");
            assert_eq!(out.next_wake(&player, never), None);
            // A frame after a quiet window goes out at once.
            let t5 = t4 + Duration::from_millis(30);
            publisher.handle_input(t5, input("frame\n"));
            assert_eq!(
                turn(&mut out, &mut player, t5),
                format!("F{}\n", DELIVERY_BATCH + 6)
            );
        }
    }

    #[test]
    fn publish_and_play_through_the_engine() {
        let engine = Engine::default();
        let mut publisher =
            Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        let mut player = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        publisher.handle_input(Instant::ZERO, input("publish cam\nframe\n"));
        assert_eq!(sent(&mut publisher), "ok\n");
        player.handle_input(Instant::ZERO, input("play nope\nplay cam\n"));
        assert_eq!(sent(&mut player), "no NotFound\nok\n");
        assert!(player.is_playing());
        publisher.handle_input(Instant::ZERO, input("frame\n"));
        assert!(player
            .poll_deliveries(&mut noop_cx(), Instant::ZERO)
            .is_ready());
        // GOP cache: frame 1 (a key frame) then frame 2.
        assert_eq!(sent(&mut player), "F1\nF2\n");
        publisher.handle_input(Instant::ZERO, input("publish other\n"));
        assert_eq!(sent(&mut publisher), "no Forbidden\n");
        publisher.handle_input(Instant::ZERO, Input::Eof);
        assert!(publisher.is_closed());
        assert!(player
            .poll_deliveries(&mut noop_cx(), Instant::ZERO)
            .is_ready());
        assert_eq!(sent(&mut player), "end\n");
        assert!(!player.is_playing());
        let logs: Vec<String> = std::iter::from_fn(|| publisher.poll_log()).collect();
        assert!(
            logs.iter()
                .any(|l| l.contains("publishing live/cam over lines")),
            "{logs:?}"
        );
        // The play's end says which viewer, over what, and why in words.
        let logs: Vec<String> = std::iter::from_fn(|| player.poll_log()).collect();
        assert!(
            logs.iter().any(|l| l
                == "play of live/cam by ? over lines ended: stream closed: the publisher ended it"),
            "{logs:?}"
        );
    }

    /// A play of a key nothing publishes, whose source starts on demand,
    /// waits for it: answered when it comes, not refused; one that nothing
    /// comes for is refused as not found after [`ON_DEMAND_WAIT`], and a
    /// key with no source at once.
    #[test]
    fn a_play_waits_for_a_source_started_on_demand() {
        use crate::engine::OnDemand;
        use std::sync::Mutex;
        #[derive(Default)]
        struct Cameras(Mutex<Vec<String>>);
        impl OnDemand for Cameras {
            fn start(&self, key: &StreamKey) -> bool {
                let mut asked = self.0.lock().unwrap();
                asked.push(key.to_string());
                key.stream().starts_with("cam")
            }
        }
        let cameras = std::sync::Arc::new(Cameras::default());
        let engine = Engine::builder().on_demand(cameras.clone()).build();
        let t = |ms: u64| Instant::from_millis(ms);
        let mut player = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        player.handle_input(t(0), input("play cam1\n"));
        assert_eq!(sent(&mut player), "", "waits, neither accepted nor refused");
        assert!(player.poll_timeout().is_some_and(|w| w <= t(100)));
        player.handle_timeout(t(100));
        assert_eq!(sent(&mut player), "");
        // The source comes: the next try plays it, from its first frame.
        let mut camera = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        camera.handle_input(t(150), input("publish cam1\nframe\n"));
        assert_eq!(sent(&mut camera), "ok\n");
        let next = player.poll_timeout().expect("a retry");
        player.handle_timeout(next);
        assert_eq!(sent(&mut player), "ok\n");
        assert!(player.is_playing());
        assert!(player.poll_deliveries(&mut noop_cx(), next).is_ready());
        assert_eq!(sent(&mut player), "F1\n");

        // A source that never comes: refused after the wait, with a line
        // that says so; the handshake limit does not cut the wait short.
        let mut late = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        late.handle_input(t(0), input("play cam2\n"));
        let (mut now, mut answer) = (t(0), String::new());
        while answer.is_empty() && now < t(20_000) {
            now = late.poll_timeout().expect("a deadline");
            late.handle_timeout(now);
            answer = sent(&mut late);
        }
        assert_eq!(answer, "no NotFound\n");
        assert_eq!(now, t(0) + ON_DEMAND_WAIT, "refused when the wait is over");
        let logs: Vec<String> = std::iter::from_fn(|| late.poll_log()).collect();
        assert!(
            logs.iter().any(|l| l.contains("refused play of live/cam2")
                && l.contains("nothing came from its source within 10 s")),
            "{logs:?}"
        );
        // No source for the key: refused at once.
        let mut other = Conductor::new(engine, Lines::default(), ConnContext::default());
        other.handle_input(t(0), input("play news\n"));
        assert_eq!(sent(&mut other), "no NotFound\n");
        let asked = cameras.0.lock().unwrap().clone();
        assert_eq!(asked[..2], ["live/cam1", "live/cam1"], "asked at each try");
        assert_eq!(
            asked.iter().filter(|k| *k == "live/cam2").count(),
            101,
            "every 100 ms"
        );
        assert_eq!(asked.last().map(String::as_str), Some("live/news"));

        // A player joining a stream whose source left (lingering for it)
        // starts the source again.
        let cameras = std::sync::Arc::new(Cameras::default());
        let engine = Engine::builder()
            .on_demand(cameras.clone())
            .linger(Duration::from_secs(10))
            .build();
        let mut camera = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        camera.handle_input(t(0), input("publish cam3\nframe\n"));
        camera.handle_input(t(10), Input::Eof);
        assert!(cameras.0.lock().unwrap().is_empty());
        let mut player = Conductor::new(engine, Lines::default(), ConnContext::default());
        player.handle_input(t(20), input("play cam3\n"));
        assert_eq!(sent(&mut player), "ok\n");
        assert_eq!(*cameras.0.lock().unwrap(), ["live/cam3"]);
    }

    /// A connection the host lists under an id says it on each line.
    #[test]
    fn log_lines_carry_the_hosts_session_id() {
        let engine = Engine::default();
        let ctx = ConnContext {
            id: Some(7),
            peer: Some("10.0.0.9:5000".into()),
            ..ConnContext::default()
        };
        let mut c = Conductor::new(engine, Lines::default(), ctx);
        c.handle_input(Instant::ZERO, input("publish cam\n"));
        let logs: Vec<String> = std::iter::from_fn(|| c.poll_log()).collect();
        assert_eq!(
            logs,
            ["session 7: 10.0.0.9:5000 is publishing live/cam over lines"]
        );
    }

    /// A player's peer asks for a key frame: the publishing session is
    /// asked once, at its next turn, and not again until another request.
    #[test]
    fn a_players_key_frame_request_reaches_the_publishing_session() {
        let engine = Engine::default();
        let mut publisher =
            Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        let mut player = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        publisher.handle_input(Instant::ZERO, input("publish cam\nframe\n"));
        assert_eq!(sent(&mut publisher), "ok\n");
        player.handle_input(Instant::ZERO, input("play cam\n"));
        assert_eq!(sent(&mut player), "ok\n");
        publisher.handle_input(Instant::ZERO, input("frame\n"));
        assert_eq!(sent(&mut publisher), "");
        player.handle_input(Instant::ZERO, input("key\nkey\n"));
        publisher.handle_input(Instant::ZERO, input("frame\n"));
        assert_eq!(sent(&mut publisher), "K\n");
        publisher.handle_input(Instant::ZERO, input("frame\n"));
        assert_eq!(sent(&mut publisher), "");
        // A session that does not play asks nobody.
        let mut idle = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        idle.handle_input(Instant::ZERO, input("key\n"));
        publisher.handle_input(Instant::ZERO, input("frame\n"));
        assert_eq!(sent(&mut publisher), "");
    }

    #[cfg(feature = "auth-hmac")]
    #[test]
    fn auth_applies_to_every_session() {
        use crate::engine::HmacTokenAuthenticator;
        let auth = std::sync::Arc::new(HmacTokenAuthenticator::new("k"));
        let engine = Engine::builder().authenticator(auth.clone()).build();
        let ctx = ConnContext {
            unix_base: 1_000,
            ..ConnContext::default()
        };
        let key = StreamKey::new("live", "cam").unwrap();
        let token = auth.mint(Action::Publish, &key, 1_010);
        let mut c = Conductor::new(engine, Lines::default(), ctx);
        c.handle_input(Instant::ZERO, input("publish cam\n"));
        assert_eq!(sent(&mut c), "no Unauthorized\n");
        // Valid at t = 5 s (unix 1005), expired at t = 11 s (unix 1011).
        c.handle_input(
            Instant::from_millis(11_000),
            input(&format!("publish cam?token={token}\n")),
        );
        assert_eq!(sent(&mut c), "no Unauthorized\n");
        c.handle_input(
            Instant::from_millis(5_000),
            input(&format!("publish cam?token={token}\n")),
        );
        assert_eq!(sent(&mut c), "ok\n");
    }

    #[test]
    fn handshake_and_idle_timeouts() {
        let engine = Engine::default();
        let mut silent = Conductor::new(engine.clone(), Lines::default(), ConnContext::default());
        assert_eq!(silent.poll_timeout(), Some(Instant::from_millis(10_000)));
        silent.handle_timeout(Instant::from_millis(9_999));
        assert!(!silent.is_closed());
        silent.handle_timeout(Instant::from_millis(10_000));
        assert_eq!(silent.end(), Some(&SessionEnd::Timeout));
        let mut p = Conductor::new(engine, Lines::default(), ConnContext::default());
        p.handle_input(Instant::from_millis(1_000), input("publish x\n"));
        assert_eq!(p.poll_timeout(), Some(Instant::from_millis(31_000)));
        p.handle_timeout(Instant::from_millis(31_000));
        assert!(p.is_closed());
    }

    #[test]
    fn a_malformed_line_ends_with_a_typed_protocol_error_and_one_log_line() {
        let engine = Engine::default();
        let ctx = ConnContext {
            peer: Some("192.0.2.1:5000".into()),
            ..ConnContext::default()
        };
        let mut c = Conductor::new(engine, Lines::default(), ctx);
        c.handle_input(Instant::ZERO, input("bogus\n"));
        assert!(c.is_closed());
        let Some(SessionEnd::Protocol(e)) = c.end() else {
            panic!("expected a protocol error, got {:?}", c.end());
        };
        assert_eq!(e.protocol(), "lines");
        assert_eq!(e.kind(), &ProtocolErrorKind::Malformed);
        assert_eq!(e.downcast_ref::<BadLine>(), Some(&BadLine("bogus".into())));
        assert!(e.downcast_ref::<core::fmt::Error>().is_none());
        let logs: Vec<String> = std::iter::from_fn(|| c.poll_log()).collect();
        assert_eq!(
            logs,
            ["closing lines connection from 192.0.2.1:5000: unknown line \"bogus\""]
        );
    }

    #[test]
    fn a_session_that_ends_on_a_refusal_carries_the_rejection() {
        let lines = Lines {
            end_on_reject: true,
            ..Lines::default()
        };
        let mut c = Conductor::new(Engine::default(), lines, ConnContext::default());
        c.handle_input(Instant::ZERO, input("play nothing\n"));
        assert_eq!(sent(&mut c), "no NotFound\n");
        assert_eq!(c.end(), Some(&SessionEnd::Refused(Rejection::NotFound)));
        assert_eq!(
            c.end().map(|e| e.to_string()).as_deref(),
            Some("refused: not found")
        );
    }

    #[test]
    fn protocol_errors_compare_by_kind_and_text_and_display_their_offset() {
        let a = ProtocolError::new("lines", ProtocolErrorKind::Malformed, BadLine("x".into()));
        let same = ProtocolError::new("lines", ProtocolErrorKind::Malformed, BadLine("x".into()));
        assert_eq!(a, same);
        assert_eq!(a, a.clone());
        assert_ne!(
            a,
            ProtocolError::new(
                "lines",
                ProtocolErrorKind::LimitExceeded,
                BadLine("x".into())
            )
        );
        assert_ne!(a, a.clone().at(7));
        let end = SessionEnd::from(a.at(7));
        assert_eq!(
            end.to_string(),
            "lines error: unknown line \"x\" (after byte 7)"
        );
        let e = end.protocol_error().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("unknown line \"x\" (after byte 7)"));
        // The source is reached by downcast, not repeated as `source()`.
        assert!(core::error::Error::source(end.protocol_error().unwrap()).is_none());
        let refused = ProtocolErrorKind::PeerRefused(Some(Rejection::NotFound));
        assert_ne!(refused, ProtocolErrorKind::PeerRefused(None));
        assert_eq!(SessionEnd::Timeout.to_string(), "timed out");
    }
}
