//! Push relays: every stream published under a key that a push rule
//! matches (`--push PATTERN=URL`, a path's `push = [...]`) is published
//! again to the rule's RTMP URL by our RTMP client, playing the local
//! stream as any player does (from the GOP cache's key frame, never
//! holding the publisher back: a target that cannot keep up is evicted
//! for lag like a slow player, and called again). A push that ends
//! (the target gone, refused, evicted) calls again with backoff (1 s,
//! doubling to 30 s) for as long as the local stream lives.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::{Action, Engine, StreamKey};
use arcly_core::session::{
    BindError, Conductor, ConnContext, Input, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, StreamRequest, Transmit,
};
use arcly_core::time::Instant;
use arcly_rtmp::{ClientMode, ClientSession, ClientTarget, RtmpConfig};
use arcly_tokio::{drive_stream, Clock, ListenerConfig, Log, ShutdownSignal};

/// The protocol name a push plays its local stream under: the gateway's
/// authenticator lets it through (an operator configured it), and the
/// logs name it.
pub const PROTOCOL: &str = "push";

/// One push rule: keys matching `pattern` go to `url`, with `{app}` and
/// `{stream}` replaced by the key's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRule {
    /// A key, or a pattern with `*` (`live/*`).
    pub pattern: String,
    /// `rtmp://HOST[:PORT]/APP/STREAM`, with `{app}` and `{stream}`.
    pub url: String,
}

impl PushRule {
    /// `PATTERN=URL` (`--push`).
    pub fn parse(v: &str) -> Result<PushRule, String> {
        let (pattern, url) = v
            .split_once('=')
            .ok_or("PATTERN=rtmp://HOST/APP/{stream} is needed")?;
        PushRule::new(pattern, url)
    }

    /// A rule for keys matching `pattern`, checked: an RTMP URL, and one
    /// that names `{stream}` when the pattern matches more than one key.
    pub fn new(pattern: &str, url: &str) -> Result<PushRule, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        let sample = url.replace("{app}", "app").replace("{stream}", "stream");
        if ClientTarget::parse(&sample).is_none() {
            return Err(format!(
                "not an RTMP URL with an application and a stream: {url:?}"
            ));
        }
        if pattern.contains('*') && !url.contains("{stream}") {
            return Err(format!(
                "{url:?} would take every stream of {pattern:?} under one name: put {{stream}} in it"
            ));
        }
        Ok(PushRule {
            pattern: pattern.into(),
            url: url.into(),
        })
    }

    /// The URL for `key`, if the rule takes it.
    pub fn target(&self, key: &StreamKey) -> Option<String> {
        crate::config::glob(self.pattern.as_bytes(), key.to_string().as_bytes()).then(|| {
            self.url
                .replace("{app}", key.app())
                .replace("{stream}", key.stream())
        })
    }
}

/// The URL as logged: without its query (which may hold a token).
fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Our RTMP client, publishing to the target, as a session that plays
/// the local key: it asks for it at once, and ends if refused.
struct Relay {
    inner: ClientSession,
    ask: Option<StreamRequest>,
    end: Arc<Mutex<Option<SessionEnd>>>,
    streamed: Arc<AtomicBool>,
}

impl Session for Relay {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }
    fn handle_input(&mut self, now: Instant, input: Input) {
        self.inner.handle_input(now, input);
        if self.inner.is_streaming() {
            self.streamed.store(true, Ordering::Relaxed);
        }
    }
    fn handle_delivery(&mut self, now: Instant, d: DeliveryRef<'_>) {
        self.inner.handle_delivery(now, d);
    }
    fn handle_stream_end(&mut self, now: Instant, why: RecvError) {
        self.inner.handle_stream_end(now, why);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }
    fn accept(&mut self, _now: Instant, _id: RequestId) {}
    fn reject(&mut self, now: Instant, _id: RequestId, why: Rejection) {
        if let Ok(mut e) = self.end.lock() {
            *e = Some(SessionEnd::Refused(why));
        }
        self.inner.close(now, CloseReason::Shutdown);
    }
    fn close(&mut self, now: Instant, why: CloseReason) {
        self.inner.close(now, why);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.inner.poll_transmit()
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        if let Some(r) = self.ask.take() {
            return Some(SessionEvent::Request(r));
        }
        let ev = self.inner.poll_event();
        if let Some(SessionEvent::Closed(end)) = &ev {
            if let Ok(mut e) = self.end.lock() {
                e.get_or_insert_with(|| end.clone());
            }
        }
        ev
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn sockets_bound(
        &mut self,
        now: Instant,
        id: RequestId,
        b: Result<Vec<SocketAddr>, BindError>,
    ) {
        self.inner.sockets_bound(now, id, b);
    }
    fn set_peer(&mut self, peer: SocketAddr) {
        self.inner.set_peer(peer);
    }
}

/// What every push runs with.
#[derive(Clone)]
pub struct PushContext {
    /// The engine whose streams are pushed.
    pub engine: Engine,
    /// The host clock.
    pub clock: Clock,
    /// The gateway's shutdown.
    pub stop: ShutdownSignal,
    /// Limits and the driver's settings.
    pub cfg: ListenerConfig,
    /// Log lines.
    pub log: Log,
}

/// The pushes running, by key and URL: a stream published again (a
/// publisher back within the linger time) does not start a second push.
#[derive(Default)]
pub struct Running(Mutex<BTreeSet<(String, String)>>);

/// Starts a push of `key` to each of `urls` not already running.
pub fn start(ctx: &PushContext, running: &Arc<Running>, key: &StreamKey, urls: Vec<String>) {
    for url in urls {
        let id = (key.to_string(), url.clone());
        if !running
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            continue;
        }
        let (ctx, running, key) = (ctx.clone(), running.clone(), key.clone());
        tokio::spawn(async move {
            run_push(&ctx, &key, &url).await;
            running
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}

/// Pushes `key` to `url` until the local stream ends or the gateway
/// stops, calling again with backoff whenever the push ends.
async fn run_push(ctx: &PushContext, key: &StreamKey, url: &str) {
    let log = &ctx.log;
    let Some(target) = ClientTarget::parse(url) else {
        return;
    };
    let addr = format!("{}:{}", target.host, target.port);
    let mut backoff = Duration::from_secs(1);
    let mut n = 0u64;
    loop {
        if ctx.stop.is_triggered() {
            return;
        }
        if ctx.engine.stream(key).is_none() {
            log(format!("push of {key} to {}: the stream ended", shown(url)));
            return;
        }
        n += 1;
        let connected = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)) => r,
            _ = ctx.stop.clone().wait() => return,
        };
        let mut streamed = false;
        let why = match connected {
            Ok(Ok(sock)) => {
                let now = ctx.clock.now();
                let end = Arc::new(Mutex::new(None));
                let streamed_flag = Arc::new(AtomicBool::new(false));
                let relay = Relay {
                    inner: ClientSession::new(
                        RtmpConfig::default(),
                        ClientMode::Publish,
                        target.target.clone(),
                        now,
                    ),
                    ask: Some(StreamRequest {
                        id: RequestId(1),
                        action: Action::Play,
                        app: key.app().into(),
                        stream: key.stream().into(),
                        token: None,
                        user: None,
                        password: None,
                        digest: None,
                    }),
                    end: end.clone(),
                    streamed: streamed_flag.clone(),
                };
                let conn = ConnContext {
                    peer: Some(shown(url).to_string()),
                    peer_addr: sock.peer_addr().ok(),
                    unix_base: ctx.clock.unix_base(),
                    started: now,
                    handshake_timeout: Some(Duration::from_secs(15)),
                    idle_timeout: ctx.cfg.idle_timeout,
                    ..ConnContext::default()
                };
                if n == 1 || backoff > Duration::from_secs(1) {
                    log(format!("pushing {key} to {}", shown(url)));
                }
                let l = log.clone();
                let _ = drive_stream(
                    sock,
                    Conductor::new(ctx.engine.clone(), relay, conn),
                    ctx.clock,
                    ctx.stop.clone(),
                    ctx.cfg.driver.clone(),
                    &move |line| l(line),
                )
                .await;
                streamed = streamed_flag.load(Ordering::Relaxed);
                let end = end.lock().ok().and_then(|e| e.clone());
                end.map_or_else(|| "connection closed".to_string(), |e| e.to_string())
            }
            Ok(Err(e)) => format!("cannot reach {addr}: {e}"),
            Err(_) => format!("no answer from {addr} in 5 s"),
        };
        if ctx.stop.is_triggered() {
            return;
        }
        if ctx.engine.stream(key).is_none() {
            log(format!("push of {key} to {}: the stream ended", shown(url)));
            return;
        }
        if streamed {
            backoff = Duration::from_secs(1);
        }
        log(format!(
            "push of {key} to {} ended: {why}; calling again in {} s",
            shown(url),
            backoff.as_secs()
        ));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.stop.clone().wait() => return,
        }
        if !streamed {
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_take_their_keys_and_name_the_target() {
        let r = PushRule::parse("live/*=rtmp://backup:1936/copy/{stream}?token=t").unwrap();
        let key = StreamKey::new("live", "cam").unwrap();
        assert_eq!(
            r.target(&key).as_deref(),
            Some("rtmp://backup:1936/copy/cam?token=t")
        );
        assert_eq!(r.target(&StreamKey::new("other", "cam").unwrap()), None);
        let one = PushRule::parse("live/cam=rtmp://h/{app}/main").unwrap();
        assert_eq!(one.target(&key).as_deref(), Some("rtmp://h/live/main"));
        for bad in [
            "live/*",
            "=rtmp://h/a/b",
            "live/*=rtmp://h/a/b",
            "live/cam=http://h/a/b",
            "live/cam=rtmp://h/onlyapp",
        ] {
            assert!(PushRule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(shown("rtmp://h/a/b?token=secret"), "rtmp://h/a/b");
    }
}
