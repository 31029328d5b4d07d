//! The gateway's RTSP: the listener (publish with ANNOUNCE/RECORD, play
//! with DESCRIBE/PLAY, over TCP or UDP) and pulls from cameras or other
//! servers into a key (`--pull APP/STREAM=rtsp://...`), reconnecting with
//! backoff; or on demand (`--pull-on-demand`, a path's `source_on_demand`):
//! started when a player asks for the key, stopped when none has played it
//! for `--edge-idle` (10 s).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly_core::bus::{CloseReason, DeliveryRef, RecvError};
use arcly_core::engine::{Engine, StreamKey};
use arcly_core::session::{
    BindError, Conductor, ConnContext, Input, Rejection, RequestId, Session, SessionEnd,
    SessionEvent, Transmit,
};
use arcly_core::time::Instant;
use arcly_rtsp::client::{ClientConfig, PullTransport};
use arcly_rtsp::{RtspClient, RtspConfig, RtspError, RtspSession, RtspStats};
use arcly_tokio::{drive_stream, serve, Clock, ListenerConfig, Log, Shutdown, ShutdownSignal};

/// One `--pull`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    /// Our key's application.
    pub app: String,
    /// Our key's stream.
    pub stream: String,
    /// The remote URL (credentials in its user information).
    pub url: String,
    /// Start over UDP (falling back to TCP when nothing arrives).
    pub udp: bool,
    /// Pulled only while played ([`crate::demand`]), not always.
    pub on_demand: bool,
}

impl Pull {
    /// `APP/STREAM=rtsp://...`, with an optional `udp:` before the URL.
    pub fn parse(v: &str) -> Result<Pull, String> {
        let (key, url) = v
            .split_once('=')
            .ok_or_else(|| format!("--pull takes APP/STREAM=rtsp://HOST/PATH, not {v:?}"))?;
        let (app, stream) = key
            .split_once('/')
            .filter(|(a, s)| !a.is_empty() && !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| format!("--pull: the key is APP/STREAM, not {key:?}"))?;
        let (udp, url) = match url.strip_prefix("udp:") {
            Some(u) => (true, u),
            None => (false, url),
        };
        if arcly_rtsp::url::RtspUrl::parse(url).is_none() {
            return Err(format!("--pull: not an rtsp:// URL: {url:?}"));
        }
        Ok(Pull {
            app: app.into(),
            stream: stream.into(),
            url: url.into(),
            udp,
            on_demand: false,
        })
    }
}

/// Ids of pull calls in the stats API; the top bit keeps them apart from
/// server sessions' ids.
static PULL_IDS: AtomicU64 = AtomicU64::new(1 << 63);

/// `--rtsp-auth`'s and `rtsp.auth`'s schemes: `basic`, `digest`, or both
/// (`basic,digest`).
pub fn auth_schemes(v: &str) -> Result<arcly_rtsp::RtspAuth, String> {
    let mut a = arcly_rtsp::RtspAuth {
        basic: false,
        digest: false,
    };
    for s in v.split(',') {
        match s.trim() {
            "basic" => a.basic = true,
            "digest" => a.digest = true,
            _ => {
                return Err(format!(
                    "takes basic, digest or both (basic,digest), not {v:?}"
                ))
            }
        }
    }
    Ok(a)
}

/// Serves RTSP on `listener`; the sessions' link figures (transport,
/// packets, loss) go to `stats`, for the stats API.
#[allow(clippy::too_many_arguments)]
pub fn spawn_listener(
    set: &mut tokio::task::JoinSet<std::io::Result<()>>,
    listener: tokio::net::TcpListener,
    engine: Engine,
    cfg: ListenerConfig,
    clock: Clock,
    stop: ShutdownSignal,
    log: Log,
    stats: RtspStats,
    auth: arcly_rtsp::RtspAuth,
) {
    let report = stats;
    let rcfg = Arc::new(RtspConfig {
        unix_base_us: clock.unix_base() * 1_000_000,
        auth,
        ..RtspConfig::default()
    });
    let seq = AtomicU64::new(u64::from_be_bytes(
        crate::srt::seed()[..8].try_into().unwrap_or([7; 8]),
    ));
    set.spawn(serve(
        listener,
        engine,
        move |now| {
            let n = seq.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
            RtspSession::new(rcfg.clone(), n ^ now.as_micros(), now).with_stats(report.clone())
        },
        cfg,
        clock,
        stop,
        log,
    ));
}

/// A client session whose end the pull loop reads after the driver is
/// done with it.
struct Watched {
    inner: RtspClient,
    end: Arc<Mutex<Option<SessionEnd>>>,
    playing: Arc<std::sync::atomic::AtomicBool>,
}

impl Session for Watched {
    fn protocol(&self) -> &'static str {
        self.inner.protocol()
    }
    fn handle_input(&mut self, now: Instant, input: Input) {
        self.inner.handle_input(now, input);
        if self.inner.is_playing() {
            self.playing.store(true, Ordering::Relaxed);
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
    fn accept(&mut self, now: Instant, id: RequestId) {
        self.inner.accept(now, id);
    }
    fn reject(&mut self, now: Instant, id: RequestId, why: Rejection) {
        self.inner.reject(now, id, why);
    }
    fn close(&mut self, now: Instant, why: CloseReason) {
        self.inner.close(now, why);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.inner.poll_transmit()
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        let ev = self.inner.poll_event();
        if let Some(SessionEvent::Closed(end)) = &ev {
            if let Ok(mut e) = self.end.lock() {
                *e = Some(end.clone());
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

/// What every pull runs with.
#[derive(Clone)]
pub struct PullContext {
    /// The engine pulls publish into.
    pub engine: Engine,
    /// The host clock.
    pub clock: Clock,
    /// The gateway's shutdown: every pull stops with it.
    pub stop: ShutdownSignal,
    /// Limits and the driver's settings.
    pub cfg: ListenerConfig,
    /// Log lines.
    pub log: Log,
    /// Link figures, for the API.
    pub stats: RtspStats,
    /// How long an on-demand pull runs with no player.
    pub idle: Duration,
}

/// One running pull: what it pulls, its own stop, its task.
struct Running {
    pull: Pull,
    stop: Arc<Shutdown>,
    task: tokio::task::JoinHandle<()>,
}

/// The pulls running, by key. A configuration reload hands it the pulls
/// wanted ([`Pulls::set`]): those no longer wanted stop (their streams
/// end), new and changed ones start.
pub struct Pulls {
    ctx: PullContext,
    running: Mutex<std::collections::BTreeMap<String, Running>>,
    stopped: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Pulls started by players, by key: run while played.
    demand: Mutex<std::collections::BTreeMap<String, Pull>>,
    /// The runtime to start them on (a player may ask from any task).
    rt: tokio::runtime::Handle,
}

impl Pulls {
    /// No pulls yet.
    pub fn new(ctx: PullContext) -> Arc<Pulls> {
        Arc::new(Pulls {
            ctx,
            running: Mutex::new(std::collections::BTreeMap::new()),
            stopped: Mutex::new(Vec::new()),
            demand: Mutex::new(std::collections::BTreeMap::new()),
            rt: tokio::runtime::Handle::current(),
        })
    }

    /// Runs exactly `wanted` (on the tokio runtime): returns the keys
    /// started and stopped. A key whose source changed is restarted. The
    /// on-demand ones wait for a player ([`start_demand`](Self::start_demand)).
    pub fn set(&self, wanted: &[Pull]) -> (Vec<String>, Vec<String>) {
        *self.demand.lock().unwrap_or_else(|p| p.into_inner()) = wanted
            .iter()
            .filter(|p| p.on_demand)
            .map(|p| (format!("{}/{}", p.app, p.stream), p.clone()))
            .collect();
        let always: Vec<Pull> = wanted.iter().filter(|p| !p.on_demand).cloned().collect();
        let wanted = &always[..];
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // A pull that ended by itself (a source it cannot call) runs
        // again if still wanted.
        running.retain(|_, r| !r.task.is_finished());
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| !t.is_finished());
        let key = |p: &Pull| format!("{}/{}", p.app, p.stream);
        let (mut started, mut stopped) = (Vec::new(), Vec::new());
        // An on-demand pull running goes on while its source stays.
        let demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = running
            .iter()
            .filter(|(k, r)| {
                !wanted.iter().any(|w| key(w) == **k && *w == r.pull)
                    && demand.get(*k) != Some(&r.pull)
            })
            .map(|(k, _)| k.clone())
            .collect();
        drop(demand);
        for k in gone {
            if let Some(r) = running.remove(&k) {
                r.stop.trigger();
                self.stopped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(r.task);
                stopped.push(k);
            }
        }
        for w in wanted {
            if running.contains_key(&key(w)) {
                continue;
            }
            running.insert(key(w), self.start(w.clone()));
            started.push(key(w));
        }
        (started, stopped)
    }

    /// A player asks for `key`, which nothing publishes: whether an
    /// on-demand pull of it runs (started now, or already).
    pub fn start_demand(&self, key: &str) -> bool {
        let Some(pull) = self
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
        else {
            return false;
        };
        if self.ctx.stop.is_triggered() {
            return false;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(key).is_some_and(|r| !r.task.is_finished()) {
            return true;
        }
        (self.ctx.log)(format!("{key} asked for: pulling it on demand"));
        let _guard = self.rt.enter();
        running.insert(key.to_string(), self.start(pull));
        true
    }

    fn start(&self, pull: Pull) -> Running {
        let own = Arc::new(Shutdown::new());
        let stop = own.signal();
        // The gateway's shutdown stops it too.
        let (global, mine, trigger) = (self.ctx.stop.clone(), own.signal(), own.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = global.wait() => trigger.trigger(),
                _ = mine.wait() => {}
            }
        });
        let c = self.ctx.clone();
        let task = tokio::spawn(run_pull(pull.clone(), c, stop));
        Running {
            pull,
            stop: own,
            task,
        }
    }

    /// Waits for every pull to end (after the gateway's shutdown).
    pub async fn finish(&self) {
        let mut tasks: Vec<_> =
            std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.extend(
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .map(|r| r.task),
        );
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Runs one pull until `stop` (an on-demand one, until the context's idle
/// time with no player): connect, play, publish under the key;
/// on any end, wait (1 s, doubling up to 30 s; back to 1 s after a run
/// that played) and call again. Over UDP, a call that got no packet goes
/// over TCP from then on. Each call's link figures go to `stats`.
pub async fn run_pull(pull: Pull, ctx: PullContext, stop: ShutdownSignal) {
    let PullContext {
        engine,
        clock,
        cfg,
        log,
        stats,
        idle,
        ..
    } = ctx;
    let mut backoff = Duration::from_secs(1);
    let mut udp = pull.udp;
    let mut n: u64 = 0;
    let url = arcly_rtsp::url::RtspUrl::parse(&pull.url);
    let Some(url) = url else { return };
    let shown = url.without_credentials();
    // On demand: stopped when no player has played the key for a while.
    let stop = match (pull.on_demand, StreamKey::new(&pull.app, &pull.stream)) {
        (true, Ok(key)) => crate::demand::idle_stop(key, &engine, stop, &log, idle),
        _ => stop,
    };
    let mut calls_left = if pull.on_demand { 2 } else { u32::MAX };
    loop {
        if stop.is_triggered() {
            return;
        }
        // On demand, a source that does not play is not called for ever:
        // a new player starts it again.
        if calls_left == 0 {
            log(format!(
                "on-demand pull of {}/{} gave up: nothing played from {shown}",
                pull.app, pull.stream
            ));
            return;
        }
        calls_left -= 1;
        n += 1;
        let target = format!("{}:{}", url.host, url.port);
        let connected = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&target)) => r,
            _ = stop.clone().wait() => return,
        };
        let mut played = false;
        match connected {
            Ok(Ok(sock)) => {
                let now = clock.now();
                let mut ccfg = ClientConfig::new(&pull.url, &pull.app, &pull.stream);
                ccfg.transport = if udp {
                    PullTransport::Udp
                } else {
                    PullTransport::Tcp
                };
                ccfg.seed = clock.unix_base() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                // Distinct across pulls (each counts its calls from 1).
                let id = PULL_IDS.fetch_add(1, Ordering::Relaxed);
                match RtspClient::new(ccfg, now).map(|c| c.with_stats(stats.clone(), id)) {
                    Ok(client) => {
                        let end = Arc::new(Mutex::new(None));
                        let playing = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let session = Watched {
                            inner: client,
                            end: end.clone(),
                            playing: playing.clone(),
                        };
                        let peer = sock.peer_addr().ok();
                        let ctx = ConnContext {
                            peer: Some(shown.clone()),
                            peer_addr: peer,
                            unix_base: clock.unix_base(),
                            started: now,
                            handshake_timeout: Some(Duration::from_secs(15)),
                            idle_timeout: cfg.idle_timeout,
                            ..ConnContext::default()
                        };
                        let conductor = Conductor::new(engine.clone(), session, ctx);
                        log(format!(
                            "pulling {}/{} from {shown} over {}",
                            pull.app,
                            pull.stream,
                            if udp { "UDP" } else { "TCP" }
                        ));
                        let l = log.clone();
                        let _ = drive_stream(
                            sock,
                            conductor,
                            clock,
                            stop.clone(),
                            cfg.driver.clone(),
                            &move |line| l(line),
                        )
                        .await;
                        played = playing.load(Ordering::Relaxed);
                        if stop.is_triggered() {
                            log(format!("pull of {}/{} stopped", pull.app, pull.stream));
                            return;
                        }
                        let end = end.lock().ok().and_then(|e| e.clone());
                        let blocked = end
                            .as_ref()
                            .and_then(|e| e.protocol_error())
                            .and_then(|e| e.downcast_ref::<RtspError>())
                            == Some(&RtspError::UdpBlocked);
                        if blocked && udp {
                            log(format!(
                                "pull of {}/{}: no packet over UDP from {shown}; going over TCP",
                                pull.app, pull.stream
                            ));
                            udp = false;
                            continue;
                        }
                        let why =
                            end.map_or_else(|| "connection closed".to_string(), |e| e.to_string());
                        log(format!(
                            "pull of {}/{} from {shown} ended: {why}; calling again in {} s",
                            pull.app,
                            pull.stream,
                            if played { 1 } else { backoff.as_secs() }
                        ));
                    }
                    Err(e) => {
                        log(format!("pull of {}/{}: {e}", pull.app, pull.stream));
                        return;
                    }
                }
            }
            Ok(Err(e)) => log(format!(
                "pull of {}/{}: cannot reach {target}: {e}; calling again in {} s",
                pull.app,
                pull.stream,
                backoff.as_secs()
            )),
            Err(_) => log(format!(
                "pull of {}/{}: no answer from {target} in 5 s; calling again in {} s",
                pull.app,
                pull.stream,
                backoff.as_secs()
            )),
        }
        if played {
            backoff = Duration::from_secs(1);
            calls_left = calls_left.max(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.clone().wait() => return,
        }
        if !played {
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_flags() {
        let p = Pull::parse("live/cam=rtsp://u:p@10.0.0.1:554/stream1").unwrap();
        assert_eq!((p.app.as_str(), p.stream.as_str()), ("live", "cam"));
        assert!(!p.udp);
        assert!(Pull::parse("live/cam=udp:rtsp://h/x").unwrap().udp);
        assert!(Pull::parse("cam=rtsp://h/x").is_err());
        assert!(Pull::parse("live/cam=http://h/x").is_err());
        assert!(Pull::parse("live/cam").is_err());
    }
}
