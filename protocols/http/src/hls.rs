//! The HLS / LL-HLS origin: packagers that turn a stream's bus deliveries
//! into segments, parts and playlists, and the HTTP answers that serve them
//! (RFC 8216bis §6.2: blocking playlist reloads, preload hints, delta
//! updates).
//!
//! One [`Packager`] per published stream feeds the kernel's
//! [`HlsSegmenter`]; every object it produces is kept in memory for the
//! playlist window. HTTP requests read them through [`HlsOrigin`]; a request
//! for a playlist update or a hinted part that does not exist yet is held
//! (its waker registered) and answered when the packager produces it: no
//! polling and no thread per request. A publisher that reconnects within the
//! linger time continues the same playlist after an `EXT-X-DISCONTINUITY`;
//! after it, the playlist is ended with `EXT-X-ENDLIST`.
//!
//! # Names and caching
//!
//! An object's name is never given to other bytes, so caches may keep it:
//!
//! * Within one stream, numbering never restarts. A publisher that comes
//!   back within the linger time continues the media sequence and part
//!   numbers after an `EXT-X-DISCONTINUITY`; if its tracks differ (another
//!   codec, resolution or parameter sets, also mid-stream), the open segment
//!   is completed and a new init segment with a new name (`init-E-<n>.mp4`)
//!   is named by `EXT-X-MAP` from then on.
//! * A new stream under the same URL (published after the previous one's
//!   linger ended, or after a restart of the server) gets a new epoch `E`,
//!   which every name carries (`init-E.mp4`, `seg-E-<msn>.m4s`,
//!   `seg-E-<msn>.<part>.m4s`). The epoch is the wall-clock time the stream
//!   started in milliseconds, as the host tells
//!   [`HlsOrigin::packager_at`] (the kernel reads no clock), raised past the
//!   last one this origin gave so it always grows; written in base 36.
//!
//! So init segments, segments and parts are sent with
//! `Cache-Control: max-age=31536000, immutable` and an `ETag` made from
//! their bytes (64-bit FNV-1a). Playlists change in place and are sent with
//! `no-cache`, except blocking reloads (RFC 8216bis §6.2.5.2), whose URL
//! names the update they wait for, sent with `max-age=60`; refusals and
//! "not found" answers are not cached.
//!
//! A playlist requested with `?token=T` names everything with the same
//! token, spelled as the client sent it (only characters a URI may not
//! hold are percent-encoded): the media playlist, the init segment,
//! segments, parts, the preload hint and rendition reports, so a player
//! with play protection on fetches each with the credential it started
//! with. A player adds its LL-HLS directives (`_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`) to those URIs after the token.

use crate::message::{query_value_for_uri, Request, Response};
use crate::router::path_segment;
use arcly_core::bus::{DeliveryRef, RecvError};
use arcly_core::engine::{Consumer, ConsumerFactory, StreamKey};
use arcly_core::media::hls::{
    BlockingCheck, HlsConfig, HlsEvent, HlsSegmenter, MultivariantPlaylist, RenditionReport,
    Variant,
};
use arcly_core::time::Instant;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How long an ended playlist and its segments stay available, so players
/// can finish what they started.
const ENDED_KEPT: Duration = Duration::from_secs(60);

/// An HLS viewer is a client (address and `User-Agent`) that asked for one
/// of the stream's playlists within this time.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(10);

/// Viewers remembered per stream at most (a flood of addresses cannot grow
/// the table without bound; past it new ones are not counted).
const MAX_VIEWERS: usize = 10_000;

/// The media playlist's name next to `index.m3u8` (the multivariant one).
pub const MEDIA_PLAYLIST: &str = "media.m3u8";

/// An object and its entity tag.
struct Object {
    data: Bytes,
    etag: String,
}

impl Object {
    fn new(data: Bytes) -> Self {
        let etag = format!("\"{:016x}\"", fnv1a(&data));
        Object { data, etag }
    }
}

/// 64-bit FNV-1a: a cheap hash of an object's bytes for its `ETag` (names
/// never repeat, so the tag only has to tell versions of one name apart,
/// and there are none; it is content-derived so caches can revalidate).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Each stream's packaging, chosen as it starts (see
/// [`HlsOrigin::consumer_factory_with`]).
pub type ConfigFor = Arc<dyn Fn(&StreamKey) -> HlsConfig + Send + Sync>;

/// Cache lifetime of init segments, segments and parts: their names are
/// never reused.
const IMMUTABLE: &str = "max-age=31536000, immutable";

#[derive(Default)]
struct State {
    segmenter: Option<HlsSegmenter>,
    /// The epoch of the stream's names (see the module docs).
    epoch: u64,
    objects: HashMap<String, Object>,
    /// Nothing is publishing; set when the packager ended.
    idle_since: Option<Instant>,
    /// The playlist was ended (`EXT-X-ENDLIST`) after the linger time.
    finished_at: Option<Instant>,
    /// Bumped on every change; a held request rechecks when it moves.
    version: u64,
    /// Held requests' wakers, one per connection (keyed by the waker's
    /// identity, so registering is a lookup, not a scan of them all).
    waiters: HashMap<(usize, usize), Waker>,
    /// The media playlist as rendered for this version, by `_HLS_skip` and
    /// the query carried to URIs: rendered once per update, shared by every
    /// client that asks (its blocking directives only decide when).
    rendered: HashMap<(bool, Option<String>), Bytes>,
    /// Frames the segmenter refused (for logs and stats).
    errors: u64,
    /// Clients that asked for a playlist lately, by address and a hash of
    /// their `User-Agent`: when they last did.
    viewers: HashMap<(std::net::IpAddr, u64), Instant>,
}

struct HlsStream {
    state: Mutex<State>,
}

impl HlsStream {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is complete before the lock is released, so a
        // poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The set of packaged streams, shared by packagers and HTTP sessions.
/// Cloning is a reference count.
#[derive(Clone)]
pub struct HlsOrigin {
    inner: Arc<Origin>,
}

struct Origin {
    cfg: HlsConfig,
    linger: Duration,
    streams: Mutex<HashMap<StreamKey, Arc<HlsStream>>>,
    /// Streams whose multivariant playlist also lists others (an
    /// adaptive-bitrate ladder's renditions).
    renditions: Mutex<HashMap<StreamKey, Vec<StreamKey>>>,
    /// The last epoch given to a stream.
    last_epoch: Mutex<u64>,
}

impl std::fmt::Debug for HlsOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsOrigin")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl HlsOrigin {
    /// An origin that segments with `cfg` and keeps a stream's playlist for
    /// `linger` after its publisher leaves (a reconnect within it continues
    /// the playlist).
    pub fn new(cfg: HlsConfig, linger: Duration) -> Self {
        HlsOrigin {
            inner: Arc::new(Origin {
                cfg,
                linger,
                streams: Mutex::new(HashMap::new()),
                renditions: Mutex::new(HashMap::new()),
                last_epoch: Mutex::new(0),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<StreamKey, Arc<HlsStream>>> {
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stream(&self, key: &StreamKey) -> Option<Arc<HlsStream>> {
        self.table().get(key).cloned()
    }

    /// A packager for a newly published stream (continuing the stream's
    /// playlist if it is still lingering), with no wall clock: a new
    /// stream's epoch is one past the last this origin gave, so names are
    /// unique while the process runs but may repeat those of an earlier run.
    /// Hosts with a clock call [`packager_at`](Self::packager_at).
    pub fn packager(&self, key: StreamKey) -> Packager {
        self.packager_at(key, 0)
    }

    /// A consumer factory for [`EngineBuilder::consumer`]: every stream the
    /// engine starts gets a packager into this origin, subscribed to that
    /// stream's bus by the engine. `unix_base` is the wall clock (Unix
    /// seconds) at the host's `Instant::ZERO`, for the names' epochs.
    ///
    /// [`EngineBuilder::consumer`]: arcly_core::engine::EngineBuilder::consumer
    pub fn consumer_factory(&self, unix_base: u64) -> ConsumerFactory {
        self.consumer_factory_with(unix_base, None)
    }

    /// [`consumer_factory`](Self::consumer_factory) where `config_for`
    /// gives each stream's packaging (segment and part durations, window,
    /// format) as the stream starts, in place of the origin's.
    pub fn consumer_factory_with(
        &self,
        unix_base: u64,
        config_for: Option<ConfigFor>,
    ) -> ConsumerFactory {
        let origin = self.clone();
        Arc::new(move |key: &StreamKey, now: Instant| {
            let unix_ms = unix_base * 1000 + now.as_micros() / 1000;
            let mut p = origin.packager_at(key.clone(), unix_ms);
            p.unix_base_ms = Some(unix_base * 1000);
            if let Some(f) = &config_for {
                p.cfg = f(key);
            }
            Some(Box::new(p) as Box<dyn Consumer>)
        })
    }

    /// A packager for a stream published at `unix_ms` (wall-clock
    /// milliseconds since the Unix epoch): a new stream's names carry an
    /// epoch from that time (see the module docs); a stream still lingering
    /// is continued.
    pub fn packager_at(&self, key: StreamKey, unix_ms: u64) -> Packager {
        let stream = self
            .table()
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(HlsStream {
                    state: Mutex::new(State::default()),
                })
            })
            .clone();
        let restarted = {
            let mut st = stream.lock();
            st.idle_since = None;
            if st.finished_at.take().is_some() {
                // Too late to continue the ended playlist: start afresh.
                st.segmenter = None;
            }
            if st.segmenter.is_none() {
                st.epoch = self.next_epoch(unix_ms);
            }
            st.segmenter.is_some()
        };
        Packager {
            key,
            stream,
            cfg: self.inner.cfg,
            restarted,
            unix_base_ms: None,
            anchored: false,
            key_wanted: false,
        }
    }

    /// An epoch after every one given so far, `unix_ms` if it is.
    fn next_epoch(&self, unix_ms: u64) -> u64 {
        let mut last = self
            .inner
            .last_epoch
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *last = unix_ms.max(last.saturating_add(1));
        *last
    }

    /// Ends the playlists of streams whose publisher left more than the
    /// linger time ago (the open segment is cut and `EXT-X-ENDLIST`
    /// written), and forgets them a minute later.
    pub fn reap(&self, now: Instant) {
        let linger = self.inner.linger;
        self.table().retain(|_, s| {
            let mut st = s.lock();
            let Some(idle) = st.idle_since else {
                return true;
            };
            match st.finished_at {
                None if now - idle >= linger => {
                    if let Some(seg) = st.segmenter.as_mut() {
                        seg.finish();
                    }
                    st.finished_at = Some(now);
                    drain(&mut st);
                    true
                }
                Some(t) if now - t >= ENDED_KEPT.max(linger) => {
                    for (_, w) in st.waiters.drain() {
                        w.wake();
                    }
                    false
                }
                _ => true,
            }
        });
    }

    /// Lists `renditions` (streams in the same application, an
    /// adaptive-bitrate ladder's) after `key` itself in `key`'s
    /// multivariant playlist, each once it has a segment; none again with
    /// an empty list.
    pub fn set_renditions(&self, key: &StreamKey, renditions: Vec<StreamKey>) {
        let mut table = self
            .inner
            .renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if renditions.is_empty() {
            table.remove(key);
        } else {
            table.insert(key.clone(), renditions);
        }
    }

    fn renditions(&self, key: &StreamKey) -> Vec<StreamKey> {
        self.inner
            .renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Answers `GET /{app}/{stream}/{name}` (the path already split). `Pending`
    /// registers `cx` to be woken when the stream changes.
    pub fn poll_get(
        &self,
        key: &StreamKey,
        name: &str,
        req: &Request,
        cx: &mut Context<'_>,
    ) -> Poll<Response> {
        let Some(stream) = self.stream(key) else {
            return Poll::Ready(uncached(404, &format!("no HLS stream {key}")));
        };
        if name == "index.m3u8" {
            if let Some(r) = self.ladder_playlist(&stream, key, req) {
                return Poll::Ready(r);
            }
        }
        let reports = (name == MEDIA_PLAYLIST).then(|| self.rendition_reports(key));
        let mut st = stream.lock();
        // Where a ladder's other streams stand changes between this
        // stream's updates: such a playlist is rendered fresh each time.
        let shared = reports.as_ref().is_none_or(Vec::is_empty);
        if let Some(reports) = reports {
            if let Some(seg) = st.segmenter.as_mut() {
                seg.set_rendition_reports(reports);
            }
        }
        let answer = answer(&mut st, name, req, shared);
        match answer {
            Answer::Ready(r) => Poll::Ready(r),
            Answer::Wait => {
                if st.finished_at.is_some() {
                    return Poll::Ready(uncached(404, "the stream has ended"));
                }
                // One entry per waiting connection, however often it polls.
                let w = cx.waker();
                st.waiters
                    .entry((w.data() as usize, w.vtable() as *const _ as usize))
                    .or_insert_with(|| w.clone());
                Poll::Pending
            }
        }
    }

    /// Where the other streams of `key`'s ladder stand (its source and
    /// renditions, those with a segment), for its media playlist's
    /// `EXT-X-RENDITION-REPORT`s; none when `key` is in no ladder.
    fn rendition_reports(&self, key: &StreamKey) -> Vec<RenditionReport> {
        let members: Vec<StreamKey> = {
            let table = self
                .inner
                .renditions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Some((source, renditions)) =
                table.iter().find(|(s, r)| *s == key || r.contains(key))
            else {
                return Vec::new();
            };
            std::iter::once(source.clone())
                .chain(renditions.iter().cloned())
                .filter(|k| k != key)
                .collect()
        };
        members
            .iter()
            .filter_map(|k| {
                let s = self.stream(k)?;
                let st = s.lock();
                let uri = format!("../{}/{MEDIA_PLAYLIST}", path_segment(k.stream()));
                st.segmenter
                    .as_ref()
                    .filter(|seg| seg.playlist().segments().next().is_some())
                    .map(|seg| seg.rendition_report(uri))
            })
            .collect()
    }

    /// The multivariant playlist of a stream with renditions: the source
    /// first, then each rendition that has a segment, by a URI relative to
    /// the source's (`../cam_720p/media.m3u8`). `None` while the source has
    /// no segment (the request waits as any other) or has no renditions.
    fn ladder_playlist(
        &self,
        stream: &HlsStream,
        key: &StreamKey,
        req: &Request,
    ) -> Option<Response> {
        let renditions = self.renditions(key);
        if renditions.is_empty() {
            return None;
        }
        let token = token_query(req);
        let uri = |prefix: &str| {
            let mut uri = format!("{prefix}{MEDIA_PLAYLIST}");
            if let Some(q) = &token {
                uri.push('?');
                uri.push_str(q);
            }
            uri
        };
        let mut variants = vec![variant(&stream.lock(), uri(""))?];
        for r in renditions {
            if let Some(rs) = self.stream(&r) {
                let prefix = format!("../{}/", path_segment(r.stream()));
                if let Some(v) = variant(&rs.lock(), uri(&prefix)) {
                    variants.push(v);
                }
            }
        }
        Some(playlist_response(
            MultivariantPlaylist { variants }.render().into(),
            false,
        ))
    }

    /// Notes that `req` (a playlist request for `key`) came at `now`, for
    /// [`viewers`](Self::viewers).
    pub fn seen(&self, key: &StreamKey, req: &Request, now: Instant) {
        use std::hash::{Hash, Hasher};
        let Some(peer) = req.peer else {
            return;
        };
        let Some(stream) = self.stream(key) else {
            return;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        req.header("user-agent").unwrap_or("").hash(&mut h);
        let mut st = stream.lock();
        let id = (peer.ip(), h.finish());
        if st.viewers.len() >= MAX_VIEWERS && !st.viewers.contains_key(&id) {
            st.viewers
                .retain(|_, at| now.saturating_duration_since(*at) < VIEWER_WINDOW);
            if st.viewers.len() >= MAX_VIEWERS {
                return;
            }
        }
        st.viewers.insert(id, now);
    }

    /// The distinct clients (address and `User-Agent`) that asked for one
    /// of `key`'s playlists within [`VIEWER_WINDOW`] of `now`.
    pub fn viewers(&self, key: &StreamKey, now: Instant) -> usize {
        self.stream(key).map_or(0, |s| {
            s.lock()
                .viewers
                .values()
                .filter(|at| now.saturating_duration_since(**at) < VIEWER_WINDOW)
                .count()
        })
    }

    /// Whether `key` is packaged.
    pub fn has(&self, key: &StreamKey) -> bool {
        self.table().contains_key(key)
    }
}

enum Answer {
    Ready(Response),
    Wait,
}

fn parse_num(v: Option<&str>) -> Result<Option<u64>, ()> {
    match v {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ()),
    }
}

fn playlist_response(body: Bytes, blocking: bool) -> Response {
    // RFC 8216bis §6.2.5: a blocking response may be cached for a while
    // (its URL names the update); a plain reload must not be.
    let cache = if blocking { "max-age=60" } else { "no-cache" };
    Response::new(200, "application/vnd.apple.mpegurl", body).with_header("Cache-Control", cache)
}

/// A refusal or a "not found": not to be cached (the object may appear).
fn uncached(status: u16, text: &str) -> Response {
    Response::text(status, text).with_header("Cache-Control", "no-cache")
}

/// The client's token as a query (`token=T`), carried to every URI a
/// playlist names.
fn token_query(req: &Request) -> Option<String> {
    req.query_param("token")
        .map(|t| format!("token={}", query_value_for_uri(t)))
}

/// The variant a stream's media playlist at `uri` makes, once it has a
/// segment (bandwidth and codecs come from real segments).
fn variant(st: &State, uri: String) -> Option<Variant> {
    let seg = st.segmenter.as_ref()?;
    seg.playlist().segments().next()?;
    let bw = seg.peak_bandwidth().max(1);
    let avg = Some(seg.average_bandwidth()).filter(|b| *b > 0);
    Some(Variant::for_tracks(uri, seg.tracks(), bw, avg))
}

/// The most renderings of one playlist version kept (each token a client
/// sends is one; beyond this they are rendered and not kept).
const MAX_RENDERED: usize = 64;

/// The answer to `GET name`; `shared`: a rendered media playlist may be
/// taken from (and kept in) the version's renderings.
fn answer(st: &mut State, name: &str, req: &Request, shared: bool) -> Answer {
    let Some(seg) = st.segmenter.as_ref() else {
        // Published but no configuration yet: wait for the first segment.
        return Answer::Wait;
    };
    let token = token_query(req);
    match name {
        "index.m3u8" => {
            let mut uri = String::from(MEDIA_PLAYLIST);
            if let Some(q) = &token {
                uri.push('?');
                uri.push_str(q);
            }
            match variant(st, uri) {
                Some(v) => Answer::Ready(playlist_response(
                    MultivariantPlaylist { variants: vec![v] }.render().into(),
                    false,
                )),
                None => Answer::Wait,
            }
        }
        MEDIA_PLAYLIST => {
            let (Ok(msn), Ok(part)) = (
                parse_num(req.query_param("_HLS_msn")),
                parse_num(req.query_param("_HLS_part")),
            ) else {
                return Answer::Ready(Response::text(400, "bad _HLS_msn or _HLS_part"));
            };
            let skip = matches!(req.query_param("_HLS_skip"), Some("YES") | Some("v2"));
            if msn.is_none() && part.is_none() && seg.playlist().segments().next().is_none() {
                return Answer::Wait;
            }
            match seg.playlist().blocking_check(msn, part) {
                BlockingCheck::Ready => {
                    let key = (skip, token);
                    let body = match st.rendered.get(&key).filter(|_| shared) {
                        Some(body) => body.clone(),
                        None => {
                            let body =
                                Bytes::from(seg.playlist().render_with(skip, key.1.as_deref()));
                            if shared && st.rendered.len() < MAX_RENDERED {
                                st.rendered.insert(key, body.clone());
                            }
                            body
                        }
                    };
                    Answer::Ready(playlist_response(body, msn.is_some()))
                }
                BlockingCheck::Wait => Answer::Wait,
                BlockingCheck::BadRequest => Answer::Ready(Response::text(
                    400,
                    "_HLS_msn/_HLS_part ask for more than two segments ahead",
                )),
            }
        }
        _ => match st.objects.get(name) {
            Some(obj) => {
                let ctype = if name.ends_with(".ts") {
                    "video/mp2t"
                } else {
                    "video/mp4"
                };
                Answer::Ready(
                    Response::new(200, ctype, obj.data.clone())
                        .with_header("Cache-Control", IMMUTABLE)
                        .with_header("ETag", obj.etag.clone()),
                )
            }
            // A hinted part (or the next segment) that is not cut yet is
            // held until it is (§6.2.6); anything else is unknown.
            None if seg.is_upcoming(name) => Answer::Wait,
            None => Answer::Ready(uncached(404, &format!("no such HLS object {name}"))),
        },
    }
}

/// Feeds one stream's deliveries to its segmenter. Dropping it (or
/// [`end`](Packager::end)) marks the stream idle; it lingers for a
/// reconnect.
pub struct Packager {
    key: StreamKey,
    stream: Arc<HlsStream>,
    cfg: HlsConfig,
    /// A reconnect continues a lingering playlist: mark the first frame.
    restarted: bool,
    /// The wall clock at the host's `Instant::ZERO` (Unix milliseconds),
    /// when the host gave one: segments then carry
    /// `EXT-X-PROGRAM-DATE-TIME`.
    unix_base_ms: Option<u64>,
    /// The segmenter's media time is anchored to the wall clock (again
    /// after each discontinuity).
    anchored: bool,
    /// The segmenter waits for a key frame (see
    /// [`HlsSegmenter::take_key_frame_wanted`]).
    key_wanted: bool,
}

impl std::fmt::Debug for Packager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packager").field("key", &self.key).finish()
    }
}

impl Packager {
    /// The stream.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// One delivery from the stream's bus.
    pub fn handle(&mut self, d: DeliveryRef<'_>) {
        self.handle_at(None, d);
    }

    /// One delivery from the stream's bus at host time `now` (which, with
    /// the host's wall clock, dates the segments).
    pub fn handle_at(&mut self, now: Option<Instant>, d: DeliveryRef<'_>) {
        let mut st = self.stream.lock();
        let st = &mut *st;
        match d {
            DeliveryRef::Tracks(t) => match st.segmenter.as_mut() {
                None => match HlsSegmenter::with_epoch(t, self.cfg, st.epoch) {
                    Ok(seg) => {
                        st.objects.clear();
                        st.segmenter = Some(seg);
                        self.restarted = false;
                        self.anchored = false;
                    }
                    Err(_) => st.errors += 1,
                },
                // The same configuration (after a reconnect, the next frame
                // starts a segment after a discontinuity): nothing to do.
                Some(seg) if seg.tracks() == &**t => {}
                // Another configuration, mid-stream or after a reconnect:
                // the numbering continues after a discontinuity, with a
                // new init segment.
                Some(seg) => match seg.update_tracks(t) {
                    Ok(()) => {
                        self.restarted = false;
                        self.anchored = false;
                    }
                    Err(_) => st.errors += 1,
                },
            },
            DeliveryRef::Frame(f) => {
                if let Some(seg) = st.segmenter.as_mut() {
                    if self.restarted || f.discontinuity {
                        self.anchored = false;
                    }
                    if let (false, Some(base), Some(now)) = (self.anchored, self.unix_base_ms, now)
                    {
                        let unix_ms = base + now.as_micros() / 1000;
                        seg.set_wall_clock(f.dts, i64::try_from(unix_ms).unwrap_or(i64::MAX));
                        self.anchored = true;
                    }
                    let r = if std::mem::take(&mut self.restarted) {
                        let mut f = f.clone();
                        f.discontinuity = true;
                        seg.push(&f)
                    } else {
                        seg.push(f)
                    };
                    if r.is_err() {
                        st.errors += 1;
                    }
                    self.key_wanted |= seg.take_key_frame_wanted();
                }
            }
            DeliveryRef::Lagged { .. } => {}
        }
        drain(st);
    }

    /// The publisher left. The open segment stays open for the linger time:
    /// a publisher that returns continues it after a discontinuity;
    /// otherwise [`HlsOrigin::reap`] ends the playlist.
    pub fn end(self, now: Instant) {
        let mut st = self.stream.lock();
        st.idle_since = Some(now);
    }
}

impl Consumer for Packager {
    fn handle(&mut self, now: Instant, delivery: DeliveryRef<'_>) {
        Packager::handle_at(self, Some(now), delivery);
    }

    fn wants_key_frame(&mut self) -> bool {
        std::mem::take(&mut self.key_wanted)
    }

    fn end(&mut self, now: Instant, _why: RecvError) {
        self.stream.lock().idle_since = Some(now);
    }
}

fn drain(st: &mut State) {
    let Some(seg) = st.segmenter.as_mut() else {
        return;
    };
    let mut changed = false;
    while let Some(ev) = seg.poll_event() {
        match ev {
            HlsEvent::Init { uri, data }
            | HlsEvent::Part { uri, data }
            | HlsEvent::Segment { uri, data } => {
                st.objects.insert(uri, Object::new(data));
                changed = true;
            }
            HlsEvent::Removed { uri, parts } => {
                st.objects.remove(&uri);
                if let Some(base) = uri.rsplit_once('.').map(|(b, _)| b) {
                    let ext = uri.rsplit('.').next().unwrap_or("m4s");
                    for p in 0..parts {
                        st.objects.remove(&format!("{base}.{p}.{ext}"));
                    }
                }
            }
            HlsEvent::PlaylistUpdated => changed = true,
        }
    }
    if changed {
        st.version += 1;
        st.rendered.clear();
        for (_, w) in st.waiters.drain() {
            w.wake();
        }
    }
}
