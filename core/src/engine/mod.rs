//! The engine: applications, streams, one publisher per stream, players, auth,
//! idle reaping and statistics.
//!
//! Every protocol session asks the engine, with a [`Request`], to publish or to
//! play; the engine consults the [`StreamAuthenticator`] and answers with a
//! [`Publisher`] or a [`Player`], or refuses with an [`EngineError`]. Because
//! this is the only way onto a bus, authorization holds for every protocol.
//!
//! Each publish gets a fresh [`SessionId`]; ending a stream names the session,
//! so a stale session (one that was replaced or reaped) can never end a newer
//! one. The engine keeps no globals: make as many as you like.
//!
//! The stream table sits behind a mutex, taken on publish, play, unpublish and
//! reaping only; frames never touch it.
//!
//! # Linger and handover
//!
//! With a linger time set ([`EngineBuilder::linger`]), a stream whose
//! publisher goes away ([`CloseReason::PublisherEnded`]: its session closed
//! or it unpublished) is not closed at once: the engine keeps its bus open
//! and its players attached, waiting. A publisher that comes back on the same
//! key within the linger time gets a [`Publisher`] on that same bus, and the
//! players continue: they receive the new track configuration, then frames
//! from the new session's first key frame, with time stamps moved to come
//! just after the last ones of the session that left (see `handover`). A
//! player joining meanwhile waits for that first key frame. If nobody comes
//! back, [`Engine::reap_idle`] ends the stream when the linger time has
//! passed since the publisher's last frame, and the players end with
//! [`CloseReason::PublisherEnded`] as they would have without a linger.
//! Idle reaping, shutdown and a publisher ended with any other reason close
//! the stream at once.

mod auth;
mod handover;
mod links;
mod observer;
mod qos;
mod tap;

#[cfg(feature = "auth-hmac")]
pub use auth::HmacTokenAuthenticator;
pub use auth::{same_secret, AllowAll, AuthError, AuthRequest, DigestAnswer, StreamAuthenticator};
pub use links::{LinkFigures, LinkRegistry, LinkReport, LinkSource};
pub use observer::{EngineEvent, NoopObserver, Observer};
pub use qos::StreamStats;
pub use tap::{Consumer, ConsumerFactory, Tap, Taps};

use crate::bus::{self, Bus, BusConfig, CloseReason, Sender, Subscription};
use crate::frame::{MediaFrame, TrackSet};
use crate::time::Instant;
use core::fmt;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The longest app or stream name accepted.
pub const MAX_NAME_LEN: usize = 256;

/// Publish or play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send media into a stream.
    Publish,
    /// Receive media from a stream.
    Play,
}

impl Action {
    /// `"publish"` or `"play"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// A stream's name: the application and the stream id within it
/// (`rtmp://host/APP/STREAM`, `http://host/APP/STREAM/index.m3u8`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    app: Arc<str>,
    stream: Arc<str>,
}

/// A stream key was not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid stream name {0:?}: names are 1 to 256 bytes of visible text, without '/', '\\', control or invisible formatting characters, leading or trailing spaces, and are not '.' or '..'"
)]
pub struct InvalidKey(pub String);

/// Characters refused anywhere in a name although they are not control
/// characters: they are invisible, or reorder or hide the text around them,
/// so a name holding one can pass for another in a log line, a page or a
/// URL (Unicode TR 36, TR 39; CVE-2021-42574, "Trojan Source").
///
/// The zero-width joiner and non-joiner (U+200C, U+200D) are allowed: Persian
/// and Indic scripts, and emoji, need them.
fn invisible_or_reordering(c: char) -> bool {
    matches!(
        c,
        // Bidirectional marks, embeddings, overrides and isolates.
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        // Zero-width space, word joiner, invisible operators, deprecated
        // format controls, and the byte-order mark / zero-width no-break space.
        | '\u{200B}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
        // Soft hyphen, combining grapheme joiner, Mongolian vowel separator,
        // Hangul fillers: invisible on their own.
        | '\u{00AD}' | '\u{034F}' | '\u{180E}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'
        // Line and paragraph separators (they break a log line without
        // being control characters).
        | '\u{2028}' | '\u{2029}'
        // Interlinear annotation controls, noncharacters, the replacement
        // character (what a broken decoding leaves).
        | '\u{FFF9}'..='\u{FFFB}' | '\u{FFFD}' | '\u{FDD0}'..='\u{FDEF}'
        // Tag characters: invisible ASCII look-alikes.
        | '\u{E0000}'..='\u{E007F}'
    ) || u32::from(c) & 0xFFFE == 0xFFFE // U+nFFFE, U+nFFFF: noncharacters
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s != "."
        && s != ".."
        // Not blank, and no leading or trailing space: " cam" and "cam"
        // must not be two streams that look the same.
        && s.trim() == s
        && s.chars().all(|c| {
            !c.is_control() && !invisible_or_reordering(c) && c != '/' && c != '\\'
        })
}

/// Decodes the `%XX` escapes of a name as it comes in a URI (RTMP's
/// `rtmp://host/APP/STREAM`, an HTTP path, RTSP's URL): the one rule every
/// protocol applies to names carried as URI text, so a stream published as
/// `a%20b` over RTMP is the one `GET /live/a%20b/index.m3u8` finds. `None`
/// for an escape that is not two hex digits, or a result that is not UTF-8.
/// (SRT's stream id is not URI text: callers send it decoded.)
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = core::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl StreamKey {
    /// A key. Refused: names that could escape a path or a URL segment
    /// (`/`, `\`, `.`, `..`), blank names and names with leading or
    /// trailing whitespace, and names holding control characters or
    /// invisible or text-reordering characters (Unicode bidirectional
    /// controls, zero-width spaces, tag characters...). Letters of any
    /// script, digits, spaces inside a name and punctuation such as `-`,
    /// `_`, `.`, `@` are fine.
    pub fn new(app: &str, stream: &str) -> Result<Self, InvalidKey> {
        if !valid_name(app) {
            return Err(InvalidKey(app.into()));
        }
        if !valid_name(stream) {
            return Err(InvalidKey(stream.into()));
        }
        Ok(StreamKey {
            app: app.into(),
            stream: stream.into(),
        })
    }

    /// The application.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The stream id within the application.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.stream)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({self})")
    }
}

/// The identity of one publish or play session, unique within an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// The settings of one application.
#[derive(Clone, Debug)]
pub struct AppSpec {
    /// The application's name (the first path segment).
    pub name: String,
    /// Ring, GOP cache and lag settings of its streams.
    pub bus: BusConfig,
    /// A stream whose publisher sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Whether publishing is allowed at all.
    pub allow_publish: bool,
    /// Whether playing is allowed at all.
    pub allow_play: bool,
}

impl AppSpec {
    /// An application with the default settings.
    pub fn new(name: impl Into<String>) -> Self {
        AppSpec {
            name: name.into(),
            bus: BusConfig::default(),
            idle_timeout: Duration::from_secs(30),
            allow_publish: true,
            allow_play: true,
        }
    }

    /// Turns the GOP cache on or off.
    pub fn gop_cache(mut self, on: bool) -> Self {
        self.bus.gop_cache = on;
        self
    }

    /// Frames held by each stream's ring.
    pub fn ring_capacity(mut self, frames: usize) -> Self {
        self.bus.capacity = frames;
        self
    }

    /// Frames a subscriber may fall behind before it is evicted.
    pub fn lag_limit(mut self, frames: u64) -> Self {
        self.bus.lag_limit = frames;
        self
    }

    /// Idle time after which a silent publisher's stream is closed.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
}

/// A publish or play request, as a protocol session makes it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The stream.
    pub key: StreamKey,
    /// Credentials (`?token=` on RTMP and HLS URLs).
    pub token: Option<&'a str>,
    /// A user name, with its password (see [`AuthRequest::user`]).
    pub user: Option<&'a str>,
    /// The password that came with [`user`](Self::user).
    pub password: Option<&'a str>,
    /// A Digest answer in place of the password (see [`AuthRequest::digest`]).
    pub digest: Option<&'a DigestAnswer>,
    /// The protocol asking.
    pub protocol: &'a str,
    /// The peer, for logs.
    pub peer: Option<&'a str>,
    /// Wall-clock Unix seconds, for token expiry.
    pub unix_time: u64,
}

impl<'a> Request<'a> {
    /// A request with no credentials and no peer.
    pub fn new(key: StreamKey, protocol: &'a str) -> Self {
        Request {
            key,
            token: None,
            user: None,
            password: None,
            digest: None,
            protocol,
            peer: None,
            unix_time: 0,
        }
    }
}

/// Why the engine refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No such application, or it does not allow the action.
    #[error("application {app:?} does not allow {action:?}")]
    AppNotAllowed {
        /// The application.
        app: String,
        /// What was asked.
        action: Action,
    },
    /// The authenticator refused.
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    /// Someone is already publishing this stream.
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamKey),
    /// Nothing is published under this key.
    #[error("stream {0} not found")]
    NotFound(StreamKey),
    /// Nothing is published under this key yet, but a source for it is
    /// starting ([`OnDemand`]): ask again shortly. A [`Conductor`] does.
    ///
    /// [`Conductor`]: crate::session::Conductor
    #[error("stream {0} is starting")]
    Starting(StreamKey),
    /// The stream has its maximum number of players.
    #[error("stream {0} has reached its player limit")]
    TooManyPlayers(StreamKey),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

struct StreamEntry {
    /// The publishing session, or while lingering the one that left.
    session: SessionId,
    bus: Bus,
    stats: Arc<StreamStats>,
    tracks: Arc<Mutex<Arc<TrackSet>>>,
    idle_timeout: Duration,
    protocol: String,
    peer: Option<String>,
    /// Set while the stream waits for its publisher to come back.
    lingering: Option<Lingering>,
    /// Consumers (taps) subscribed to the bus: not players.
    taps: Arc<AtomicUsize>,
}

/// What a publisher that left hands over to the one that comes back.
struct Lingering {
    sender: Sender,
    timeline: handover::Timeline,
}

struct Inner {
    apps: HashMap<String, AppSpec>,
    default_app: Option<AppSpec>,
    auth: Arc<dyn StreamAuthenticator>,
    observer: Arc<dyn Observer>,
    streams: Mutex<HashMap<StreamKey, StreamEntry>>,
    next_session: AtomicU64,
    shutting_down: std::sync::atomic::AtomicBool,
    linger: Duration,
    consumers: Vec<ConsumerFactory>,
    taps: Taps,
    on_demand: Option<Arc<dyn OnDemand>>,
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, HashMap<StreamKey, StreamEntry>> {
        // A panic while holding the table cannot leave it inconsistent (every
        // update is a single insert or remove), so a poisoned lock is usable.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Closes the stream of `session` (publishing or lingering), if it still
    /// holds `key`.
    fn unpublish(&self, key: &StreamKey, session: SessionId, reason: CloseReason) {
        let removed = {
            let mut t = self.table();
            match t.get(key) {
                Some(e) if e.session == session => t.remove(key),
                _ => None,
            }
        };
        if let Some(e) = removed {
            e.bus.close(reason);
            // The lingering sender (if any) goes after the close, which
            // keeps the reason.
            drop(e);
            self.observer.on_event(&EngineEvent::Unpublished {
                key: key.clone(),
                session,
                reason,
            });
        }
    }

    /// A publisher went away: its stream lingers when the engine has a
    /// linger time and the reason allows it, and is closed otherwise.
    fn leave(
        &self,
        key: &StreamKey,
        session: SessionId,
        reason: CloseReason,
        mut sender: Sender,
        timeline: handover::Timeline,
    ) {
        let lingers = reason == CloseReason::PublisherEnded
            && !self.linger.is_zero()
            && !self.shutting_down.load(Ordering::Acquire)
            && sender.closed().is_none();
        if lingers {
            let mut t = self.table();
            if let Some(e) = t
                .get_mut(key)
                .filter(|e| e.session == session && e.lingering.is_none())
            {
                sender.clear_gop_cache();
                e.lingering = Some(Lingering { sender, timeline });
                drop(t);
                self.observer.on_event(&EngineEvent::Lingering {
                    key: key.clone(),
                    session,
                    linger: self.linger,
                });
                return;
            }
        }
        self.unpublish(key, session, reason);
        sender.close(reason);
    }
}

/// Starts sources of streams nothing publishes yet, when a player asks
/// for one: a camera pulled on demand, the origin an edge pulls from.
pub trait OnDemand: Send + Sync {
    /// A player asks for `key`, which nothing publishes. `true` if a source
    /// for it is starting (now, or already was): the play is answered with
    /// [`EngineError::Starting`] and asked again shortly, rather than
    /// refused. Called on the player's task: start the source elsewhere and
    /// return at once.
    fn start(&self, key: &StreamKey) -> bool;
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    apps: HashMap<String, AppSpec>,
    default_app: Option<AppSpec>,
    auth: Arc<dyn StreamAuthenticator>,
    observer: Arc<dyn Observer>,
    linger: Duration,
    consumers: Vec<ConsumerFactory>,
    on_demand: Option<Arc<dyn OnDemand>>,
}

impl EngineBuilder {
    /// Attaches a consumer (the HLS packager, a recorder) to every stream
    /// that starts, made by `factory`; the engine subscribes it to that
    /// stream's bus and queues it in [`Engine::taps`] for the host to drive.
    pub fn consumer(mut self, factory: ConsumerFactory) -> Self {
        self.consumers.push(factory);
        self
    }

    /// Adds an application.
    pub fn app(mut self, spec: AppSpec) -> Self {
        self.apps.insert(spec.name.clone(), spec);
        self
    }

    /// The settings used for application names that were not added with
    /// [`app`](Self::app); `None` refuses unknown applications. The default
    /// is `AppSpec::new("*")`, so any application name works.
    pub fn default_app(mut self, spec: Option<AppSpec>) -> Self {
        self.default_app = spec;
        self
    }

    /// The authenticator consulted on every request.
    pub fn authenticator(mut self, auth: Arc<dyn StreamAuthenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// The observer told about every lifecycle event.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// How long a stream whose publisher went away keeps its players,
    /// waiting for a publisher to come back on the same key (see the module
    /// docs, "Linger and handover"). The default, zero, ends the players at
    /// once. A host that sets it must call [`Engine::reap_idle`]
    /// periodically: that is what ends a stream nobody came back to.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// What starts sources on demand (none by default: a play of a key
    /// nothing publishes is refused at once).
    pub fn on_demand(mut self, sources: Arc<dyn OnDemand>) -> Self {
        self.on_demand = Some(sources);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                apps: self.apps,
                default_app: self.default_app,
                auth: self.auth,
                observer: self.observer,
                streams: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(0),
                shutting_down: std::sync::atomic::AtomicBool::new(false),
                linger: self.linger,
                consumers: self.consumers,
                taps: Taps::default(),
                on_demand: self.on_demand,
            }),
        }
    }
}

/// A snapshot of one stream, for the stats API.
#[derive(Clone, Debug)]
pub struct StreamSnapshot {
    /// The stream.
    pub key: StreamKey,
    /// The publishing session.
    pub session: SessionId,
    /// The publisher's protocol.
    pub protocol: String,
    /// The publisher's address.
    pub peer: Option<String>,
    /// Its tracks.
    pub tracks: Arc<TrackSet>,
    /// Its counters.
    pub stats: Arc<StreamStats>,
    /// Players attached (consumers such as the HLS packager are not
    /// counted).
    pub subscribers: usize,
    /// The publisher went away and the stream waits for one to come back
    /// (`session` is the one that left); see [`EngineBuilder::linger`].
    pub lingering: bool,
}

/// Apps, streams, sessions. Cloning is a reference count.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("streams", &self.inner.table().len())
            .finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::builder().build()
    }
}

impl Engine {
    /// A builder with the defaults: any application name, allow-all auth.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            apps: HashMap::new(),
            default_app: Some(AppSpec::new("*")),
            auth: Arc::new(AllowAll),
            observer: Arc::new(NoopObserver),
            linger: Duration::ZERO,
            consumers: Vec::new(),
            on_demand: None,
        }
    }

    /// Consumers made for started streams, for the host to drive (see
    /// [`EngineBuilder::consumer`]).
    pub fn taps(&self) -> &Taps {
        &self.inner.taps
    }

    /// The linger time (see [`EngineBuilder::linger`]).
    pub fn linger(&self) -> Duration {
        self.inner.linger
    }

    fn app(&self, name: &str) -> Option<&AppSpec> {
        self.inner
            .apps
            .get(name)
            .or(self.inner.default_app.as_ref())
    }

    pub(crate) fn reject(
        &self,
        req: &Request<'_>,
        action: Action,
        err: EngineError,
    ) -> EngineError {
        self.inner.observer.on_event(&EngineEvent::Rejected {
            key: req.key.clone(),
            action,
            reason: err.to_string(),
            rejection: crate::session::Rejection::from(&err),
            protocol: req.protocol.to_string(),
            peer: req.peer.map(String::from),
        });
        err
    }

    /// Checks a request against the application and the authenticator
    /// without creating anything.
    pub fn authorize(&self, req: &Request<'_>, action: Action) -> Result<&AppSpec, EngineError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(EngineError::ShuttingDown);
        }
        let app = self
            .app(req.key.app())
            .filter(|a| match action {
                Action::Publish => a.allow_publish,
                Action::Play => a.allow_play,
            })
            .ok_or_else(|| {
                self.reject(
                    req,
                    action,
                    EngineError::AppNotAllowed {
                        app: req.key.app().into(),
                        action,
                    },
                )
            })?;
        let auth = AuthRequest {
            action,
            key: &req.key,
            token: req.token,
            user: req.user,
            password: req.password,
            digest: req.digest,
            protocol: req.protocol,
            peer: req.peer,
            unix_time: req.unix_time,
        };
        self.inner
            .auth
            .authorize(&auth)
            .map_err(|e| self.reject(req, action, e.into()))?;
        Ok(app)
    }

    /// Starts publishing `req.key`: authorizes, then claims the key. A
    /// stream lingering under the key (its publisher went away less than the
    /// linger time ago) is taken over: its players continue with this
    /// publisher's frames ([`EngineEvent::Resumed`] instead of
    /// [`EngineEvent::Published`]).
    pub fn publish(&self, req: &Request<'_>, now: Instant) -> Result<Publisher, EngineError> {
        let app = self.authorize(req, Action::Publish)?;
        let (idle_timeout, cfg) = (app.idle_timeout, app.bus.clone());
        let session = self.inner.session();
        let mut expired = None;
        {
            let mut t = self.inner.table();
            match t.get_mut(&req.key) {
                Some(e) if e.lingering.is_some() => {
                    let last = Instant::from_micros(e.stats.last_frame_at.load(Ordering::Relaxed));
                    if now - last <= self.inner.linger {
                        let (p, previous) = self.resume(e, req, now, session, idle_timeout);
                        drop(t);
                        self.inner.observer.on_event(&EngineEvent::Resumed {
                            key: req.key.clone(),
                            session,
                            previous,
                            protocol: req.protocol.into(),
                            peer: req.peer.map(Into::into),
                        });
                        return Ok(p);
                    }
                    // Past its linger but not reaped yet: it ends now.
                    expired = t.remove(&req.key);
                }
                Some(_) => {
                    drop(t);
                    return Err(self.reject(
                        req,
                        Action::Publish,
                        EngineError::AlreadyPublishing(req.key.clone()),
                    ));
                }
                None => {}
            }
        }
        if let Some(old) = expired {
            let old_session = old.session;
            old.bus.close(CloseReason::PublisherEnded);
            drop(old);
            self.inner.observer.on_event(&EngineEvent::Unpublished {
                key: req.key.clone(),
                session: old_session,
                reason: CloseReason::PublisherEnded,
            });
        }
        let (sender, bus) = bus::channel(cfg);
        let stats = Arc::new(StreamStats::default());
        stats.started_at.store(now.as_micros(), Ordering::Relaxed);
        stats
            .last_frame_at
            .store(now.as_micros(), Ordering::Relaxed);
        let tracks = Arc::new(Mutex::new(Arc::new(TrackSet::new())));
        // Consumers subscribe before the first frame, to this stream's bus.
        let live_taps = Arc::new(AtomicUsize::new(0));
        let taps: Vec<Tap> = self
            .inner
            .consumers
            .iter()
            .filter_map(|f| {
                let c = f(&req.key, now)?;
                let sub = bus.subscribe().ok()?;
                Some(Tap::new(
                    req.key.clone(),
                    c,
                    sub,
                    live_taps.clone(),
                    stats.clone(),
                ))
            })
            .collect();
        {
            let mut t = self.inner.table();
            if t.contains_key(&req.key) {
                drop(t);
                return Err(self.reject(
                    req,
                    Action::Publish,
                    EngineError::AlreadyPublishing(req.key.clone()),
                ));
            }
            t.insert(
                req.key.clone(),
                StreamEntry {
                    session,
                    bus,
                    stats: stats.clone(),
                    tracks: tracks.clone(),
                    idle_timeout,
                    protocol: req.protocol.into(),
                    peer: req.peer.map(Into::into),
                    lingering: None,
                    taps: live_taps,
                },
            );
        }
        for tap in taps {
            self.inner.taps.push(tap);
        }
        self.inner.observer.on_event(&EngineEvent::Published {
            key: req.key.clone(),
            session,
            protocol: req.protocol.into(),
            peer: req.peer.map(Into::into),
        });
        Ok(Publisher {
            engine: Arc::downgrade(&self.inner),
            key: req.key.clone(),
            session,
            sender: Some(sender),
            stats,
            tracks,
            meter: qos::QosMeter::default(),
            timeline: handover::Timeline::default(),
            resume: None,
        })
    }

    /// Hands a lingering stream to a returning publisher (the table is
    /// held); also returns the session that left.
    fn resume(
        &self,
        e: &mut StreamEntry,
        req: &Request<'_>,
        now: Instant,
        session: SessionId,
        idle_timeout: Duration,
    ) -> (Publisher, SessionId) {
        let previous = e.session;
        let (mut sender, end) = match e.lingering.take() {
            Some(l) => (Some(l.sender), l.timeline.end_us()),
            None => (None, None),
        };
        // The previous configuration does not apply to the new session.
        if let Some(s) = sender.as_mut() {
            s.set_tracks(TrackSet::new());
        }
        if let Ok(mut t) = e.tracks.lock() {
            *t = Arc::new(TrackSet::new());
        }
        e.stats
            .last_frame_at
            .store(now.as_micros(), Ordering::Relaxed);
        e.session = session;
        e.idle_timeout = idle_timeout;
        e.protocol = req.protocol.into();
        e.peer = req.peer.map(Into::into);
        let p = Publisher {
            engine: Arc::downgrade(&self.inner),
            key: req.key.clone(),
            session,
            sender,
            stats: e.stats.clone(),
            tracks: e.tracks.clone(),
            meter: qos::QosMeter::default(),
            timeline: handover::Timeline::after(end),
            resume: Some(handover::Resume::after(end)),
        };
        (p, previous)
    }

    /// Starts playing `req.key`: authorizes, then subscribes, starting from
    /// the GOP cache. A lingering stream plays too: the player waits for the
    /// first key frame of the publisher that comes back.
    pub fn play(&self, req: &Request<'_>) -> Result<Player, EngineError> {
        self.authorize(req, Action::Play)?;
        let found = {
            let t = self.inner.table();
            t.get(&req.key)
                .map(|e| (e.bus.clone(), e.stats.clone(), e.lingering.is_some()))
        };
        let Some((bus, stats, lingering)) = found else {
            // Not a refusal while its source starts: the player asks again.
            if let Some(o) = &self.inner.on_demand {
                if o.start(&req.key) {
                    return Err(EngineError::Starting(req.key.clone()));
                }
            }
            return Err(self.reject(req, Action::Play, EngineError::NotFound(req.key.clone())));
        };
        // A player joining a stream whose publisher left: its source, if
        // one starts on demand, is started to take the publisher's place.
        if lingering {
            if let Some(o) = &self.inner.on_demand {
                o.start(&req.key);
            }
        }
        let subscription = bus.subscribe().map_err(|_| {
            self.reject(
                req,
                Action::Play,
                EngineError::TooManyPlayers(req.key.clone()),
            )
        })?;
        let session = self.inner.session();
        self.inner.observer.on_event(&EngineEvent::Played {
            key: req.key.clone(),
            session,
            protocol: req.protocol.into(),
        });
        Ok(Player {
            key: req.key.clone(),
            session,
            subscription,
            stats,
        })
    }

    /// Closes streams whose publisher has been silent for longer than its
    /// application's idle timeout ([`CloseReason::Idle`]), and lingering
    /// streams nobody came back to within the linger time of their
    /// publisher's last frame ([`CloseReason::PublisherEnded`]). Returns how
    /// many were closed. Hosts call it periodically (every second is
    /// plenty) with their clock's `now`.
    pub fn reap_idle(&self, now: Instant) -> usize {
        let linger = self.inner.linger;
        let ended: Vec<(StreamKey, SessionId, CloseReason)> = self
            .inner
            .table()
            .iter()
            .filter_map(|(k, e)| {
                let last = Instant::from_micros(e.stats.last_frame_at.load(Ordering::Relaxed));
                let reason = match e.lingering {
                    Some(_) if now - last > linger => CloseReason::PublisherEnded,
                    Some(_) => return None,
                    None if now - last > e.idle_timeout => CloseReason::Idle,
                    None => return None,
                };
                Some((k.clone(), e.session, reason))
            })
            .collect();
        for (key, session, reason) in &ended {
            self.inner.unpublish(key, *session, *reason);
        }
        ended.len()
    }

    /// The bus of the stream published under `key`, for consumers the host
    /// runs itself (packagers, recorders): no auth, no player session.
    pub fn bus(&self, key: &StreamKey) -> Option<Bus> {
        self.inner.table().get(key).map(|e| e.bus.clone())
    }

    /// The stream published under `key`, if any.
    pub fn stream(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        let t = self.inner.table();
        t.get(key).map(|e| snapshot(key, e))
    }

    /// Every published stream.
    pub fn streams(&self) -> Vec<StreamSnapshot> {
        let t = self.inner.table();
        let mut v: Vec<_> = t.iter().map(|(k, e)| snapshot(k, e)).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Ends the stream published under `key` (its publisher's session
    /// and its players end, told `reason`); `false` when none is.
    pub fn end_stream(&self, key: &StreamKey, reason: CloseReason) -> bool {
        let session = self.inner.table().get(key).map(|e| e.session);
        match session {
            Some(session) => {
                self.inner.unpublish(key, session, reason);
                true
            }
            None => false,
        }
    }

    /// Refuses new requests and closes every stream.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let all: Vec<(StreamKey, SessionId)> = self
            .inner
            .table()
            .iter()
            .map(|(k, e)| (k.clone(), e.session))
            .collect();
        for (key, session) in all {
            self.inner.unpublish(&key, session, CloseReason::Shutdown);
        }
    }
}

fn snapshot(key: &StreamKey, e: &StreamEntry) -> StreamSnapshot {
    StreamSnapshot {
        key: key.clone(),
        session: e.session,
        protocol: e.protocol.clone(),
        peer: e.peer.clone(),
        tracks: e.tracks.lock().map(|t| t.clone()).unwrap_or_default(),
        stats: e.stats.clone(),
        subscribers: e
            .bus
            .stats()
            .subscribers
            .load(Ordering::Relaxed)
            .saturating_sub(e.taps.load(Ordering::Relaxed)),
        lingering: e.lingering.is_some(),
    }
}

/// The right to publish one stream, held by one session. Dropping it ends the
/// stream (or, with a linger time, leaves it waiting for a publisher to come
/// back), unless a newer session has taken the key since.
pub struct Publisher {
    engine: Weak<Inner>,
    key: StreamKey,
    session: SessionId,
    sender: Option<Sender>,
    stats: Arc<StreamStats>,
    tracks: Arc<Mutex<Arc<TrackSet>>>,
    meter: qos::QosMeter,
    /// What this session sent, for a publisher that takes over after it.
    timeline: handover::Timeline,
    /// Set when this session took over a lingering stream.
    resume: Option<handover::Resume>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.key)
            .field("session", &self.session)
            .finish()
    }
}

impl Publisher {
    /// The stream.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// This publish session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// How many key frames the stream's players (and consumers) have asked
    /// for so far.
    pub fn key_frame_requests(&self) -> u64 {
        self.stats.key_frame_requests.load(Ordering::Relaxed)
    }

    /// The stream's counters.
    pub fn stats(&self) -> &Arc<StreamStats> {
        &self.stats
    }

    /// Sets the track configuration every player receives before the frames
    /// that follow.
    pub fn set_tracks(&mut self, tracks: TrackSet) {
        if let Some(s) = self.sender.as_mut() {
            s.set_tracks(tracks);
            if let Ok(mut t) = self.tracks.lock() {
                *t = s.tracks().clone();
            }
        }
    }

    /// The track configuration in force.
    pub fn tracks(&self) -> Option<&Arc<TrackSet>> {
        self.sender.as_ref().map(|s| s.tracks())
    }

    /// Publishes a frame; `Err` once the stream was closed under this
    /// publisher (idle reaping, shutdown).
    ///
    /// A publisher that took over a lingering stream drops its frames before
    /// its first sync point and moves the time stamps of the rest to follow
    /// the previous session's (see the module docs).
    pub fn publish(&mut self, now: Instant, frame: MediaFrame) -> Result<(), bus::Closed> {
        let sender = self
            .sender
            .as_mut()
            .ok_or(bus::Closed(CloseReason::PublisherEnded))?;
        let frame = match self.resume.as_mut() {
            None => frame,
            Some(r) => match r.apply(frame, sender.tracks().has_video()) {
                Some(f) => f,
                None => return sender.closed().map_or(Ok(()), |why| Err(bus::Closed(why))),
            },
        };
        self.meter.record(&self.stats, now, &frame);
        self.timeline.record(&frame);
        sender.publish(frame).map(|_| ())
    }

    /// A bus handle, to subscribe without going through auth (for packagers
    /// and recorders the host runs itself).
    pub fn bus(&self) -> Option<Bus> {
        self.sender.as_ref().map(Sender::bus)
    }

    /// Ends the stream now, with a reason.
    pub fn end(mut self, reason: CloseReason) {
        self.finish(reason);
    }

    fn finish(&mut self, reason: CloseReason) {
        if let Some(sender) = self.sender.take() {
            match self.engine.upgrade() {
                Some(engine) => {
                    let timeline = core::mem::take(&mut self.timeline);
                    engine.leave(&self.key, self.session, reason, sender, timeline);
                }
                None => sender.close(reason),
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.finish(CloseReason::PublisherEnded);
    }
}

/// One player's subscription to a stream.
#[derive(Debug)]
pub struct Player {
    /// The stream.
    pub key: StreamKey,
    /// This play session.
    pub session: SessionId,
    /// The subscription; receive from it.
    pub subscription: Subscription,
    /// The stream's counters (for key frame requests).
    stats: Arc<StreamStats>,
}

impl Player {
    /// Asks the stream's publisher for a key frame (counted in the
    /// stream's [`StreamStats::key_frame_requests`]).
    pub fn request_key_frame(&self) {
        self.stats
            .key_frame_requests
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
