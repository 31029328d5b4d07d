//! Sources started by players: the engine's
//! [`OnDemand`](arcly_core::engine::OnDemand) hook. A key nothing publishes
//! is pulled, while someone plays it, from its on-demand RTSP source
//! ([`crate::rtsp::Pulls`]) or, on an edge (`--origin`, `--directory`),
//! from the origin that has it: the directory's answer first, then the
//! origins in the order given. One upstream per key however many players
//! ask; it stops when no player has played the key for the idle time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arcly_core::engine::{Action, Engine, StreamKey};
use arcly_rtmp::{ClientMode, ClientTarget};
use arcly_tokio::{Clock, ListenerConfig, Log, Shutdown, ShutdownSignal};

use crate::directory::DirectoryHandle;
use crate::relay;

/// The protocol name an edge publishes its pulls under (the gateway's
/// authenticator lets it through; the directory does not record them).
pub const EDGE: &str = "edge";

/// Pulls an edge runs at once at most: a player asking for more keys is
/// refused as for a key no origin has.
const MAX_PULLS: usize = 1000;

/// How long a key no origin had is refused at once, rather than looked
/// for again.
const NOT_FOUND_MEMORY: Duration = Duration::from_secs(2);

/// The hook: the on-demand pulls, then the edge's origins.
pub struct Demand {
    /// The RTSP pulls, once they exist.
    pub pulls: Arc<OnceLock<Arc<crate::rtsp::Pulls>>>,
    /// The edge, if this gateway is one, once it exists.
    pub edge: Arc<OnceLock<Arc<Edge>>>,
}

impl arcly_core::engine::OnDemand for Demand {
    fn start(&self, key: &StreamKey) -> bool {
        self.pulls
            .get()
            .is_some_and(|p| p.start_demand(&key.to_string()))
            || self.edge.get().is_some_and(|e| e.start(key))
    }
}

/// What an edge runs with.
#[derive(Clone)]
pub struct EdgeContext {
    /// The engine its pulls publish into.
    pub engine: Engine,
    /// The host clock.
    pub clock: Clock,
    /// The gateway's shutdown.
    pub stop: ShutdownSignal,
    /// Limits and the driver's settings.
    pub cfg: ListenerConfig,
    /// Log lines.
    pub log: Log,
    /// The origins' RTMP addresses (`rtmp://HOST:PORT`), in order.
    pub origins: Vec<String>,
    /// The directory, if one is used.
    pub directory: Option<DirectoryHandle>,
    /// How long a pull runs with no player.
    pub idle: Duration,
}

/// The edge: its pulls, by key.
pub struct Edge {
    ctx: EdgeContext,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Keys no origin had, and when.
    missing: Mutex<HashMap<String, std::time::Instant>>,
    rt: tokio::runtime::Handle,
}

impl Edge {
    /// An edge (on the current runtime).
    pub fn new(ctx: EdgeContext) -> Arc<Edge> {
        Arc::new(Edge {
            ctx,
            running: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
            rt: tokio::runtime::Handle::current(),
        })
    }

    /// A player asks for `key`: whether a pull of it runs (started now, or
    /// already). A key no origin had a moment ago is refused at once.
    fn start(self: &Arc<Self>, key: &StreamKey) -> bool {
        if self.ctx.stop.is_triggered() {
            return false;
        }
        let k = key.to_string();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Pulls that ended are let go of: players asking for many keys
        // leave nothing behind.
        running.retain(|_, t| !t.is_finished());
        if running.contains_key(&k) {
            return true;
        }
        if running.len() >= MAX_PULLS {
            return false;
        }
        {
            let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
            missing.retain(|_, at| at.elapsed() < NOT_FOUND_MEMORY);
            if missing.contains_key(&k) {
                return false;
            }
        }
        let _guard = self.rt.enter();
        let task = tokio::spawn(run_edge(self.clone(), key.clone()));
        running.insert(k, task);
        true
    }
}

/// Pulls `key` from an origin while it is played.
async fn run_edge(edge: Arc<Edge>, key: StreamKey) {
    let c = &edge.ctx;
    let log = &c.log;
    let stop = idle_stop(key.clone(), &c.engine, c.stop.clone(), log, c.idle);
    // Rounds in a row in which no origin played it.
    let mut dry = 0u32;
    loop {
        if stop.is_triggered() {
            return;
        }
        let mut origins = Vec::new();
        if let Some(d) = &c.directory {
            origins.extend(d.lookup(&key).await);
        }
        for o in &c.origins {
            if !origins.contains(o) {
                origins.push(o.clone());
            }
        }
        let mut played = false;
        for base in origins {
            let url = format!(
                "{}/{}/{}",
                base.trim_end_matches('/'),
                key.app(),
                key.stream()
            );
            let Some(target) = ClientTarget::parse(&url) else {
                continue;
            };
            let addr = format!("{}:{}", target.host, target.port);
            let connected = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)) => r,
                _ = stop.clone().wait() => return,
            };
            let sock = match connected {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    log(format!("edge pull of {key}: cannot reach {addr}: {e}"));
                    continue;
                }
                Err(_) => {
                    log(format!("edge pull of {key}: no answer from {addr} in 3 s"));
                    continue;
                }
            };
            let r = relay::run(
                relay::Call {
                    sock,
                    mode: ClientMode::Play,
                    target: target.target,
                    key: key.clone(),
                    action: Action::Publish,
                    protocol: EDGE,
                    shown: url.clone(),
                },
                &c.engine,
                c.clock,
                stop.clone(),
                &c.cfg,
                log,
            )
            .await;
            if r.streamed {
                played = true;
                if !stop.is_triggered() {
                    log(format!("edge pull of {key} from {url} ended: {}", r.why()));
                }
                break;
            }
            if !r.not_found() {
                log(format!("edge pull of {key} from {url}: {}", r.why()));
            }
        }
        if stop.is_triggered() {
            log(format!("edge pull of {key} stopped"));
            return;
        }
        dry = if played { 0 } else { dry + 1 };
        // Players waiting on the stream (its publisher, this pull, gone):
        // look again for a while; otherwise no origin has it.
        let waiting = c.engine.stream(&key).is_some_and(|s| s.subscribers > 0);
        if !(played || waiting && dry < 20) {
            log(format!("edge pull of {key}: no origin has it"));
            edge.missing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.to_string(), std::time::Instant::now());
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.clone().wait() => return,
        }
    }
}

/// A stop for a source started on demand: `stop`, or `idle` in a row with
/// no player of `key`.
pub fn idle_stop(
    key: StreamKey,
    engine: &Engine,
    stop: ShutdownSignal,
    log: &Log,
    idle: Duration,
) -> ShutdownSignal {
    let own = Arc::new(Shutdown::new());
    let signal = own.signal();
    let (engine, log) = (engine.clone(), log.clone());
    tokio::spawn(async move {
        let mut quiet = Duration::ZERO;
        let tick = Duration::from_secs(1);
        // Until a player has played it, its first players may still be
        // waiting for it to start (they are no players of it yet).
        let mut played = false;
        loop {
            tokio::select! {
                _ = stop.clone().wait() => break,
                _ = tokio::time::sleep(tick) => {}
            }
            let players = engine.stream(&key).map_or(0, |s| s.subscribers);
            played |= players > 0;
            quiet = if players == 0 {
                quiet + tick
            } else {
                Duration::ZERO
            };
            let limit = if played {
                idle
            } else {
                idle.max(arcly_core::session::ON_DEMAND_WAIT)
            };
            if quiet >= limit {
                log(format!(
                    "no player of {key} for {} s: its on-demand source stops",
                    limit.as_secs()
                ));
                break;
            }
        }
        own.trigger();
    });
    signal
}
