//! The gateway's routes: HLS under `/{app}/{stream}/`, `/api/streams`,
//! `/metrics`; everything else is a clear 404 or 405.
//!
//! # Who may read the API and the metrics
//!
//! `/api/...` and `/metrics` name every stream, its publisher's address and
//! session, so they are not public. They are answered to:
//!
//! * a local peer: one whose address is `127.0.0.1` or `::1` (or
//!   `::ffff:127.0.0.1`, the same host seen through a dual-stack socket).
//!   The rest of `127.0.0.0/8` is loopback too, but it is what containers,
//!   proxies and tests use to stand in for other hosts, and a local
//!   operator's tools reach `127.0.0.1`; counting only these two refuses
//!   nothing a local operator needs. A request whose peer the host did not
//!   give is not local;
//! * anyone presenting the configured secret
//!   ([`Router::with_api_secret`]), as `Authorization: Bearer SECRET` or as
//!   the query parameter `?secret=SECRET` (percent-encoded). The secret is
//!   compared in constant time.
//!
//! Anyone else gets 401 (with `WWW-Authenticate: Bearer`) when a secret is
//! configured, or 403 when none is, and nothing of the API. Answers on these
//! paths carry no `Access-Control-Allow-Origin` (a web page on another
//! origin cannot read them through a local browser) and are not cached
//! (`Cache-Control: no-store`). Media answers stay readable by any origin.

use crate::hls::HlsOrigin;
use crate::message::{percent_decode, Method, Request, Response};
use crate::{stats, Handler};
use arcly_core::engine::same_secret;
use arcly_core::engine::{
    Action, Engine, LinkReport, LinkSource, Request as EngineRequest, StreamKey,
};
use arcly_core::session::Rejection;
use arcly_core::signal::{Offer, OfferError, SharedSignalling};
use arcly_core::time::Instant;
use arcly_core::transcode::TranscodeSource;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Adds the host's own series to `/metrics` (Prometheus text format).
pub type MetricsHook = Arc<dyn Fn(&mut String) + Send + Sync>;

/// Answers by status code, for `/metrics`.
struct StatusCounts([std::sync::atomic::AtomicU64; 500]);

impl StatusCounts {
    fn new() -> Self {
        StatusCounts(std::array::from_fn(|_| {
            std::sync::atomic::AtomicU64::new(0)
        }))
    }

    fn count(&self, status: u16) {
        if let Some(c) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.0.get(i))
        {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        use core::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP arcly_http_requests_total HTTP requests answered, by status."
        );
        let _ = writeln!(out, "# TYPE arcly_http_requests_total counter");
        for (i, c) in self.0.iter().enumerate() {
            let n = c.load(std::sync::atomic::Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "arcly_http_requests_total{{status=\"{}\"}} {n}",
                    i + 100
                );
            }
        }
    }
}

/// The host's connections for `/api/sessions`: `list` renders them as
/// JSON, `end` ends one by id (`false`: no such connection).
#[derive(Clone)]
pub struct SessionsApi {
    /// The JSON of `GET /api/sessions`.
    pub list: Arc<dyn Fn() -> String + Send + Sync>,
    /// `DELETE /api/sessions/ID`.
    pub end: Arc<dyn Fn(u64) -> bool + Send + Sync>,
}

/// Reads the host's configuration again (`POST /api/config/reload`): what
/// changed, or why nothing did.
pub type ReloadHook = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Routes requests to the HLS origin and the stats endpoints, checking
/// `?token=` (as sent) through the engine's authenticator for media, and the API
/// policy (see the module docs) for `/api/...` and `/metrics`.
#[derive(Clone)]
pub struct Router {
    engine: Engine,
    hls: HlsOrigin,
    unix_base: u64,
    api_secret: Option<String>,
    links: Vec<Arc<dyn LinkSource>>,
    transcodes: Option<Arc<dyn TranscodeSource>>,
    signalling: Option<SharedSignalling>,
    reload: Option<ReloadHook>,
    metrics_hook: Option<MetricsHook>,
    statuses: Arc<StatusCounts>,
    sessions: Option<SessionsApi>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("hls", &self.hls)
            .field("unix_base", &self.unix_base)
            .field("api_secret", &self.api_secret.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

/// The player page (`/APP/STREAM/`: WebRTC through WHEP, LL-HLS where the
/// browser plays it itself) and the publish page (`/APP/STREAM/publish`:
/// the camera through WHIP), plain HTML and JavaScript.
fn page(name: &str) -> Option<&'static str> {
    match name {
        "" | "index.html" => Some(include_str!("pages/play.html")),
        "publish" => Some(include_str!("pages/publish.html")),
        _ => None,
    }
}

/// The front page: the live streams, each with its player page and its
/// LL-HLS playlist, and how to publish one.
fn index_page(engine: &Engine) -> String {
    use core::fmt::Write as _;
    let mut streams = engine.streams();
    streams.sort_by_key(|s| s.key.to_string());
    let mut items = String::new();
    for s in &streams {
        let path = format!(
            "/{}/{}/",
            path_segment(s.key.app()),
            path_segment(s.key.stream())
        );
        let codecs: Vec<&str> = s.tracks.iter().map(|t| t.codec.name()).collect();
        let _ = writeln!(
            items,
            "<li><a href=\"{path}\">{}/{}</a> <span>{} from {}{}</span> <a class=\"more\" href=\"{path}index.m3u8\">HLS</a></li>",
            html(s.key.app()),
            html(s.key.stream()),
            html(&codecs.join(", ")),
            html(&s.protocol),
            if s.lingering { ", waiting for its publisher" } else { "" },
        );
    }
    if items.is_empty() {
        items.push_str("<li class=\"none\">nothing is live: publish to rtmp://HOST:1935/APP/STREAM, or from a browser at /APP/STREAM/publish</li>\n");
    }
    include_str!("pages/index.html").replace("<!-- streams -->", &items)
}

/// Text for HTML.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A name as one URL path segment (RFC 3986 unreserved bytes as they
/// are, the rest percent-encoded).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The user and password of an `Authorization: Basic` header (RFC 7617).
pub(crate) fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, b64) = req.header("authorization")?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let (user, pass) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The answer to a play the engine refused (an HLS request, an HTTP-FLV
/// play), saying `text`.
pub(crate) fn refusal(why: &Rejection, text: &str) -> Response {
    let status = match why {
        Rejection::BadName => 400,
        Rejection::Unauthorized => 401,
        Rejection::Forbidden => 403,
        Rejection::NotFound => 404,
        _ => 503,
    };
    let resp = Response::text(status, text);
    if status == 401 {
        // Players that hold a user and password (ffmpeg with
        // http://USER:PASS@..., browsers) send them when asked.
        resp.with_header("WWW-Authenticate", "Basic realm=\"arcly\"")
    } else {
        resp
    }
}

/// Whether `path` is the API's or the metrics'.
fn is_api(path: &str) -> bool {
    path == "/metrics" || path == "/api" || path.starts_with("/api/")
}

/// The two addresses counted as local (see the module docs).
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == std::net::Ipv6Addr::LOCALHOST
                || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

impl Router {
    /// Routes for `engine`'s streams, served from `hls`. `unix_base` is the
    /// wall clock at the host's `Instant::ZERO`, for token expiry. The API
    /// and metrics are served to local peers only until
    /// [`with_api_secret`](Self::with_api_secret) sets a secret.
    pub fn new(engine: Engine, hls: HlsOrigin, unix_base: u64) -> Self {
        Router {
            engine,
            hls,
            unix_base,
            api_secret: None,
            links: Vec::new(),
            transcodes: None,
            signalling: None,
            reload: None,
            metrics_hook: None,
            statuses: Arc::new(StatusCounts::new()),
            sessions: None,
        }
    }

    /// Also serves `GET /api/sessions` and `DELETE /api/sessions/ID`
    /// (under the API's policy).
    pub fn with_sessions(mut self, api: SessionsApi) -> Self {
        self.sessions = Some(api);
        self
    }

    fn sessions_api(&self, req: &Request) -> Response {
        if let Err(refused) = self.api_allowed(req) {
            return refused.with_header("Cache-Control", "no-store");
        }
        let Some(api) = &self.sessions else {
            return Response::text(404, "not found: this server lists no sessions");
        };
        let id = req.path.strip_prefix("/api/sessions/");
        let resp = match (&req.method, id) {
            (Method::Get | Method::Head, None) => {
                Response::new(200, "application/json", (api.list)())
            }
            (Method::Delete, Some(id)) => match id.parse::<u64>() {
                Ok(id) if (api.end)(id) => Response::new(204, "text/plain", String::new()),
                Ok(_) => Response::text(404, "no such session"),
                Err(_) => Response::text(400, "a session id is a number"),
            },
            (_, None) => Response::text(405, "GET lists the sessions").with_header("Allow", "GET"),
            (_, Some(_)) => {
                Response::text(405, "DELETE ends a session").with_header("Allow", "DELETE")
            }
        };
        resp.with_header("Cache-Control", "no-store")
    }

    /// Also renders the host's series (`hook` appends them) in `/metrics`.
    pub fn with_metrics(mut self, hook: MetricsHook) -> Self {
        self.metrics_hook = Some(hook);
        self
    }

    /// Also serves `POST /api/config/reload` (under the API's policy),
    /// calling `hook`: 200 with what changed, or 422 with why nothing did.
    /// Without a hook the path answers 404.
    pub fn with_reload(mut self, hook: Option<ReloadHook>) -> Self {
        self.reload = hook;
        self
    }

    fn config_reload(&self, req: &Request) -> Response {
        if let Err(refused) = self.api_allowed(req) {
            return refused.with_header("Cache-Control", "no-store");
        }
        let resp = match (&req.method, &self.reload) {
            (_, None) => Response::text(
                404,
                "no configuration file to reload: the server was started without --config",
            ),
            (Method::Post, Some(hook)) => match hook() {
                Ok(done) => Response::text(200, &done),
                Err(why) => Response::text(422, &format!("nothing changed: {why}")),
            },
            _ => Response::text(405, "POST reloads the configuration").with_header("Allow", "POST"),
        };
        resp.with_header("Cache-Control", "no-store")
    }

    /// Also serves WHIP (`POST /APP/STREAM/whip`) and WHEP
    /// (`POST /APP/STREAM/whep`): offers go to `signalling`, and a
    /// session's resource (`/APP/STREAM/whip/ID`) is ended by `DELETE`.
    pub fn with_signalling(mut self, signalling: SharedSignalling) -> Self {
        self.signalling = Some(signalling);
        self
    }

    /// A WHIP or WHEP request (RFC 9725), if `req` is one.
    fn webrtc(&self, now: Instant, req: &Request) -> Option<Response> {
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let (app, stream, kind, id) = match parts[..] {
            [app, stream, kind] => (app, stream, kind, None),
            [app, stream, kind, id] => (app, stream, kind, Some(id)),
            _ => return None,
        };
        let action = match kind {
            "whip" => Action::Publish,
            "whep" => Action::Play,
            _ => return None,
        };
        let Some(signalling) = &self.signalling else {
            return Some(Response::text(404, "WebRTC is off on this server"));
        };
        let allow = if id.is_some() {
            "DELETE, OPTIONS"
        } else {
            "POST, OPTIONS"
        };
        match (&req.method, id) {
            (Method::Delete, Some(id)) => Some(if signalling.end(id) {
                Response::new(200, "text/plain", bytes::Bytes::new())
            } else {
                Response::text(404, "no such WebRTC session")
            }),
            (Method::Post, None) => Some(self.offer(now, req, signalling, action, app, stream)),
            _ => Some(
                Response::text(405, "method not allowed for a WebRTC resource")
                    .with_header("Allow", allow),
            ),
        }
    }

    fn offer(
        &self,
        now: Instant,
        req: &Request,
        signalling: &SharedSignalling,
        action: Action,
        app: &str,
        stream: &str,
    ) -> Response {
        let sdp_type = req
            .header("content-type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"));
        if !sdp_type {
            return Response::text(415, "the offer is sent as application/sdp");
        }
        let Ok(key) = StreamKey::new(app, stream) else {
            return Response::text(400, "bad stream name");
        };
        let bearer = req.header("authorization").and_then(|v| {
            let (scheme, cred) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| cred.trim().to_string())
        });
        let token = bearer.or_else(|| req.query_param("token").map(str::to_string));
        let basic = basic_credentials(req);
        let peer = req.peer.map(|p| p.to_string());
        let ereq = EngineRequest {
            key: key.clone(),
            token: token.as_deref(),
            user: basic.as_ref().map(|(u, _)| u.as_str()),
            password: basic.as_ref().map(|(_, p)| p.as_str()),
            digest: None,
            protocol: "webrtc",
            peer: peer.as_deref(),
            unix_time: self.unix_base + now.as_micros() / 1_000_000,
        };
        // Refused here with the status the RFC asks for; the session asks
        // again (through the host) when its peer connects.
        if let Err(e) = self.engine.authorize(&ereq, action) {
            let status = match Rejection::from(&e) {
                Rejection::Unauthorized => 401,
                Rejection::Forbidden => 403,
                Rejection::BadName => 400,
                _ => 409,
            };
            return Response::text(status, &e.to_string());
        }
        let Ok(sdp) = std::str::from_utf8(&req.body) else {
            return Response::text(400, "the offer is not UTF-8");
        };
        let offer = Offer {
            action,
            app: app.to_string(),
            stream: stream.to_string(),
            token,
            user: basic.as_ref().map(|(u, _)| u.clone()),
            password: basic.map(|(_, p)| p),
            sdp: sdp.to_string(),
        };
        match signalling.offer(now, offer) {
            Ok(answer) => {
                let kind = if action == Action::Publish {
                    "whip"
                } else {
                    "whep"
                };
                Response::new(201, "application/sdp", bytes::Bytes::from(answer.sdp))
                    .with_header("Location", format!("/{key}/{kind}/{}", answer.id))
                    .with_header("ETag", format!("\"{}\"", answer.id))
                    .with_header("Access-Control-Expose-Headers", "Location, ETag")
            }
            Err(OfferError::Bad(why)) => Response::text(400, &why),
            Err(OfferError::Busy) => Response::text(503, "too many WebRTC sessions"),
            Err(OfferError::Unsupported) => {
                Response::text(501, "this kind of WebRTC session is not served yet")
            }
        }
    }

    /// Also shows `source`'s connections (e.g. SRT's) with their link
    /// figures in the API and metrics.
    pub fn with_links(mut self, source: Arc<dyn LinkSource>) -> Self {
        self.links.push(source);
        self
    }

    /// Also lists each stream's transcoders (their command, speed and
    /// counts) in `/api/streams`.
    pub fn with_transcodes(mut self, source: Arc<dyn TranscodeSource>) -> Self {
        self.transcodes = Some(source);
        self
    }

    fn link_reports(&self) -> Vec<LinkReport> {
        self.links.iter().flat_map(|s| s.links()).collect()
    }

    /// Also serves the API and metrics to callers that present `secret`
    /// (`Authorization: Bearer SECRET` or `?secret=SECRET`). `None`, or an
    /// empty secret, leaves them to local peers only.
    pub fn with_api_secret(mut self, secret: Option<String>) -> Self {
        self.api_secret = secret.filter(|s| !s.is_empty());
        self
    }

    /// Whether `req` may read the API: a local peer, or the secret.
    fn api_allowed(&self, req: &Request) -> Result<(), Response> {
        if req.peer.is_some_and(|p| is_local(p.ip())) {
            return Ok(());
        }
        let Some(secret) = self.api_secret.as_deref() else {
            return Err(Response::text(
                403,
                "the API and metrics are served to local clients only",
            ));
        };
        let bearer = req.header("authorization").and_then(|v| {
            let (scheme, cred) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| cred.trim().to_string())
        });
        let query = req.query_param("secret").and_then(percent_decode);
        let presented = [bearer, query]
            .into_iter()
            .flatten()
            .any(|given| same_secret(given.as_bytes(), secret.as_bytes()));
        if presented {
            Ok(())
        } else {
            Err(
                Response::text(401, "the API and metrics need the API secret")
                    .with_header("WWW-Authenticate", "Bearer realm=\"arcly\""),
            )
        }
    }

    fn api(&self, now: Instant, req: &Request) -> Response {
        if let Err(refused) = self.api_allowed(req) {
            return refused.with_header("Cache-Control", "no-store");
        }
        let resp = match req.path.as_str() {
            "/api/streams" => Response::new(
                200,
                "application/json",
                stats::streams_json(
                    &self.engine,
                    &self.link_reports(),
                    &self
                        .transcodes
                        .as_ref()
                        .map(|t| t.transcodes())
                        .unwrap_or_default(),
                    now,
                    &|k| self.hls.viewers(k, now),
                ),
            ),
            "/metrics" => {
                let mut text = stats::metrics(&self.engine, &self.link_reports(), &|k| {
                    self.hls.viewers(k, now)
                });
                self.statuses.render(&mut text);
                if let Some(hook) = &self.metrics_hook {
                    hook(&mut text);
                }
                Response::new(200, "text/plain; version=0.0.4", text)
            }
            _ => Response::text(404, "not found: the API has /api/streams"),
        };
        resp.with_header("Cache-Control", "no-store")
    }
}

impl Handler for Router {
    fn any_origin(&self, req: &Request) -> bool {
        !is_api(&req.path)
    }

    fn poll_response(&self, now: Instant, req: &Request, cx: &mut Context<'_>) -> Poll<Response> {
        self.route(now, req, cx)
    }

    fn answered(&self, status: u16) {
        self.statuses.count(status);
    }
}

impl Router {
    /// Answers `req`.
    fn route(&self, now: Instant, req: &Request, cx: &mut Context<'_>) -> Poll<Response> {
        if let Some(resp) = self.webrtc(now, req) {
            return Poll::Ready(resp);
        }
        if req.path == "/api/config/reload" {
            return Poll::Ready(self.config_reload(req));
        }
        if req.path == "/api/sessions" || req.path.starts_with("/api/sessions/") {
            return Poll::Ready(self.sessions_api(req));
        }
        if !matches!(req.method, Method::Get | Method::Head) {
            return Poll::Ready(
                Response::text(405, "only GET and HEAD are served here")
                    .with_header("Allow", "GET, HEAD, OPTIONS"),
            );
        }
        if is_api(&req.path) {
            return Poll::Ready(self.api(now, req));
        }
        if req.path == "/" {
            return Poll::Ready(Response::new(
                200,
                "text/html; charset=utf-8",
                index_page(&self.engine),
            ));
        }
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let [app, stream, name] = parts[..] else {
            return Poll::Ready(Response::text(
                404,
                "not found: media paths are /APP/STREAM/FILE",
            ));
        };
        if let Some(page) = page(name) {
            // The pages carry no media: the streams they open are checked
            // when the page asks for them.
            if StreamKey::new(app, stream).is_err() {
                return Poll::Ready(Response::text(400, "bad stream name"));
            }
            return Poll::Ready(
                Response::new(200, "text/html; charset=utf-8", page)
                    .with_header("Cache-Control", "no-cache"),
            );
        }
        if name.is_empty() || name.starts_with('.') {
            return Poll::Ready(Response::text(400, "bad file name"));
        }
        let Ok(key) = StreamKey::new(app, stream) else {
            return Poll::Ready(Response::text(400, "bad stream name"));
        };
        // The token as sent: one spelling per token (the authenticator
        // sees the client's bytes, and playlists name them unchanged).
        let token = req.query_param("token");
        let basic = basic_credentials(req);
        let peer = req.peer.map(|p| p.to_string());
        let ereq = EngineRequest {
            key: key.clone(),
            token,
            user: basic.as_ref().map(|(u, _)| u.as_str()),
            password: basic.as_ref().map(|(_, p)| p.as_str()),
            digest: None,
            protocol: "hls",
            peer: peer.as_deref(),
            unix_time: self.unix_base + now.as_micros() / 1_000_000,
        };
        if let Err(e) = self.engine.authorize(&ereq, Action::Play) {
            return Poll::Ready(refusal(&Rejection::from(&e), &e.to_string()));
        }
        if !self.hls.has(&key) {
            return Poll::Ready(Response::text(
                404,
                &format!("stream {key} is not being published"),
            ));
        }
        if name.ends_with(".m3u8") {
            self.hls.seen(&key, req, now);
        }
        self.hls.poll_get(&key, name, req, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpConfig, HttpSession};
    use arcly_core::engine::{Publisher, Request as EReq};
    use arcly_core::session::{Input, Session};
    use bytes::BytesMut;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    /// A router with one stream published (while the publisher is kept).
    fn router(secret: Option<&str>) -> (Router, Publisher) {
        let engine = Engine::default();
        let p = engine
            .publish(
                &EReq::new(StreamKey::new("live", "a").unwrap(), "rtmp"),
                Instant::ZERO,
            )
            .unwrap();
        let hls = HlsOrigin::new(Default::default(), Duration::from_secs(10));
        let r = Router::new(engine, hls, 0).with_api_secret(secret.map(String::from));
        (r, p)
    }

    /// The whole answer to `request` from `peer`.
    fn get(r: &Router, peer: Option<&str>, request: &str) -> String {
        let mut s = HttpSession::new(HttpConfig::default(), Arc::new(r.clone()));
        if let Some(p) = peer {
            s.set_peer(p.parse::<SocketAddr>().unwrap());
        }
        s.handle_input(
            Instant::from_millis(1),
            Input::Stream(BytesMut::from(request.as_bytes())),
        );
        let mut o = String::new();
        while let Some(t) = s.poll_transmit() {
            o.push_str(&String::from_utf8_lossy(&t.data));
        }
        o
    }

    fn status(o: &str) -> &str {
        o.get(9..12).unwrap_or("")
    }

    #[test]
    fn metrics_count_answers_by_status_and_take_the_hosts_series() {
        let (r, _publisher) = router(None);
        let r = r.with_metrics(Arc::new(|out: &mut String| out.push_str("host_series 7\n")));
        let local = Some("127.0.0.1:5000");
        for _ in 0..2 {
            assert_eq!(
                status(&get(&r, local, "GET /nope/x/index.m3u8 HTTP/1.1\r\n\r\n")),
                "404"
            );
        }
        assert_eq!(
            status(&get(&r, local, "PUT /live/cam/index.m3u8 HTTP/1.1\r\n\r\n")),
            "405"
        );
        let m = get(&r, local, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            m.contains("arcly_http_requests_total{status=\"404\"} 2"),
            "{m}"
        );
        assert!(
            m.contains("arcly_http_requests_total{status=\"405\"} 1"),
            "{m}"
        );
        assert!(m.contains("host_series 7"), "{m}");
        // The metrics request itself is counted once answered.
        let m = get(&r, local, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(
            m.contains("arcly_http_requests_total{status=\"200\"} 1"),
            "{m}"
        );
    }

    #[test]
    fn the_front_page_lists_the_live_streams_with_their_pages() {
        let (r, p) = router(None);
        let o = get(&r, Some("192.0.2.7:5000"), "GET / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&o), "200", "{o}");
        assert!(o.contains("Content-Type: text/html"), "{o}");
        assert!(o.contains("<a href=\"/live/a/\">live/a</a>"), "{o}");
        assert!(o.contains("href=\"/live/a/index.m3u8\""), "{o}");
        drop(p);
        let o = get(&r, Some("192.0.2.7:5000"), "GET / HTTP/1.1\r\n\r\n");
        assert!(!o.contains("live/a"), "{o}");
        assert!(o.contains("nothing is live"), "{o}");
        assert_eq!(html("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
        assert_eq!(path_segment("cam 1/é"), "cam%201%2F%C3%A9");
    }

    /// Signalling that answers every offer with a fixed SDP and id, and
    /// ends the one session it made.
    struct FakeSignalling;

    impl arcly_core::signal::Signalling for FakeSignalling {
        fn offer(
            &self,
            _now: Instant,
            offer: Offer,
        ) -> Result<arcly_core::signal::Answer, OfferError> {
            if offer.sdp.contains("nothing-usable") {
                return Err(OfferError::Bad("no codec taken here".into()));
            }
            if offer.action == Action::Play {
                return Err(OfferError::Unsupported);
            }
            Ok(arcly_core::signal::Answer {
                id: format!("abc{}", offer.token.unwrap_or_default()),
                sdp: "v=0\r\nanswer\r\n".into(),
            })
        }

        fn end(&self, id: &str) -> bool {
            id == "abc"
        }
    }

    fn post(path: &str, ctype: &str, extra: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn whip_offers_are_answered_201_with_location_and_etag() {
        let (r, _p) = router(None);
        // No signalling: WebRTC is off.
        let o = get(
            &r,
            None,
            &post("/live/b/whip", "application/sdp", "", "v=0\r\n"),
        );
        assert_eq!(status(&o), "404", "{o}");
        let r = r.with_signalling(Arc::new(FakeSignalling));
        let o = get(
            &r,
            None,
            &post("/live/b/whip", "application/sdp", "", "v=0\r\n"),
        );
        assert_eq!(status(&o), "201", "{o}");
        assert!(o.contains("Location: /live/b/whip/abc\r\n"), "{o}");
        assert!(o.contains("ETag: \"abc\"\r\n"), "{o}");
        assert!(o.contains("Content-Type: application/sdp"), "{o}");
        assert!(o.ends_with("v=0\r\nanswer\r\n"), "{o}");
        // The bearer token reaches the signalling (and the engine).
        let o = get(
            &r,
            None,
            &post(
                "/live/b/whip",
                "application/sdp",
                "Authorization: Bearer xyz\r\n",
                "v=0",
            ),
        );
        assert!(o.contains("Location: /live/b/whip/abcxyz\r\n"), "{o}");
        // Not SDP, nothing usable, WHEP not yet, bad names, wrong methods.
        assert_eq!(
            status(&get(&r, None, &post("/live/b/whip", "text/plain", "", "x"))),
            "415"
        );
        let o = get(
            &r,
            None,
            &post("/live/b/whip", "application/sdp", "", "nothing-usable"),
        );
        assert_eq!(status(&o), "400", "{o}");
        assert!(o.contains("no codec taken here"), "{o}");
        assert_eq!(
            status(&get(
                &r,
                None,
                &post("/live/b/whep", "application/sdp", "", "v=0")
            )),
            "501"
        );
        assert_eq!(
            status(&get(
                &r,
                None,
                &post("/live/b%00/whip", "application/sdp", "", "v=0")
            )),
            "400"
        );
        assert_eq!(
            status(&get(&r, None, "GET /live/b/whip HTTP/1.1\r\n\r\n")),
            "405"
        );
        // DELETE ends a session by its resource.
        assert_eq!(
            status(&get(&r, None, "DELETE /live/b/whip/abc HTTP/1.1\r\n\r\n")),
            "200"
        );
        assert_eq!(
            status(&get(&r, None, "DELETE /live/b/whip/zzz HTTP/1.1\r\n\r\n")),
            "404"
        );
    }

    #[test]
    fn a_whip_offer_the_engine_refuses_gets_401() {
        struct TokenNeeded;
        impl arcly_core::engine::StreamAuthenticator for TokenNeeded {
            fn authorize(
                &self,
                req: &arcly_core::engine::AuthRequest<'_>,
            ) -> Result<(), arcly_core::engine::AuthError> {
                match req.token {
                    Some("good") => Ok(()),
                    _ => Err(arcly_core::engine::AuthError::Missing),
                }
            }
        }
        let engine = Engine::builder()
            .authenticator(Arc::new(TokenNeeded))
            .build();
        let hls = HlsOrigin::new(Default::default(), Duration::from_secs(10));
        let r = Router::new(engine, hls, 0).with_signalling(Arc::new(FakeSignalling));
        let o = get(
            &r,
            None,
            &post("/live/b/whip", "application/sdp", "", "v=0"),
        );
        assert_eq!(status(&o), "401", "{o}");
        let o = get(
            &r,
            None,
            &post("/live/b/whip?token=good", "application/sdp", "", "v=0"),
        );
        assert_eq!(status(&o), "201", "{o}");
    }

    const STREAMS: &str = "GET /api/streams HTTP/1.1\r\n\r\n";
    const METRICS: &str = "GET /metrics HTTP/1.1\r\n\r\n";

    #[test]
    fn local_peers_read_the_api_with_no_cors() {
        let (r, _p) = router(None);
        for peer in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            let o = get(&r, Some(peer), STREAMS);
            assert_eq!(status(&o), "200", "{peer}: {o}");
            assert!(o.contains("\"stream\":\"a\""), "{o}");
            assert!(o.contains("Cache-Control: no-store"));
            assert!(!o.contains("Access-Control-Allow-Origin"), "{o}");
            let o = get(&r, Some(peer), METRICS);
            assert_eq!(status(&o), "200", "{peer}");
            assert!(o.contains("arcly_streams 1"));
            assert!(!o.contains("Access-Control-Allow-Origin"));
        }
    }

    #[test]
    fn other_peers_get_403_and_nothing_without_a_secret() {
        let (r, _p) = router(None);
        for peer in [
            Some("127.0.0.2:5000"),
            Some("10.0.0.1:80"),
            Some("[2001:db8::1]:80"),
            None,
        ] {
            for req in [
                STREAMS,
                METRICS,
                "GET /api/streams?secret= HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n",
                "GET /api/other HTTP/1.1\r\n\r\n",
                "OPTIONS /api/streams HTTP/1.1\r\n\r\n",
            ] {
                let o = get(&r, peer, req);
                if req.starts_with("OPTIONS") {
                    assert!(!o.contains("Access-Control-Allow-Origin"), "{o}");
                    continue;
                }
                assert_eq!(status(&o), "403", "{peer:?} {req:?}: {o}");
                assert!(!o.contains("\"stream\"") && !o.contains("arcly_stream"));
                assert!(!o.contains("Access-Control-Allow-Origin"));
            }
        }
    }

    #[test]
    fn the_secret_opens_the_api_to_others() {
        let (r, _p) = router(Some("s3cr/t"));
        let remote = Some("127.0.0.2:5000");
        let o = get(&r, remote, STREAMS);
        assert_eq!(status(&o), "401", "{o}");
        assert!(o.contains("WWW-Authenticate: Bearer"));
        assert!(!o.contains("\"stream\""));
        for wrong in [
            "GET /api/streams HTTP/1.1\r\nAuthorization: Bearer s3cr/T\r\n\r\n",
            "GET /api/streams HTTP/1.1\r\nAuthorization: Bearer s3cr/t2\r\n\r\n",
            "GET /api/streams HTTP/1.1\r\nAuthorization: Basic s3cr/t\r\n\r\n",
            "GET /metrics?secret=s3cr HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(&get(&r, remote, wrong)), "401", "{wrong:?}");
        }
        for right in [
            "GET /api/streams HTTP/1.1\r\nAuthorization: Bearer s3cr/t\r\n\r\n",
            "GET /api/streams HTTP/1.1\r\nauthorization: bearer s3cr/t\r\n\r\n",
            "GET /api/streams?secret=s3cr%2Ft HTTP/1.1\r\n\r\n",
            "GET /metrics?x=1&secret=s3cr/t HTTP/1.1\r\n\r\n",
        ] {
            let o = get(&r, remote, right);
            assert_eq!(status(&o), "200", "{right:?}: {o}");
            assert!(!o.contains("Access-Control-Allow-Origin"));
        }
        // Local peers need no secret.
        assert_eq!(status(&get(&r, Some("127.0.0.1:1"), STREAMS)), "200");
    }

    #[test]
    fn media_stays_open_to_any_origin() {
        let (r, _p) = router(None);
        let o = get(
            &r,
            Some("127.0.0.2:5000"),
            "GET /live/nope/index.m3u8 HTTP/1.1\r\n\r\n",
        );
        assert_eq!(status(&o), "404", "{o}");
        assert!(o.contains("Access-Control-Allow-Origin: *"));
        let o = get(
            &r,
            Some("127.0.0.2:5000"),
            "OPTIONS /live/a/index.m3u8 HTTP/1.1\r\n\r\n",
        );
        assert!(o.contains("Access-Control-Allow-Origin: *"), "{o}");
    }

    #[test]
    fn secrets_compare_by_every_byte() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abc\0", b"abc"));
        assert!(!same_secret(b"", b"abc"));
        assert!(same_secret(b"", b""));
        assert!(Router::new(
            Engine::default(),
            HlsOrigin::new(Default::default(), Duration::ZERO),
            0
        )
        .with_api_secret(Some(String::new()))
        .api_secret
        .is_none());
    }
}
