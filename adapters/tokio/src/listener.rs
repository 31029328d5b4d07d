//! Listeners: accept with a connection limit, drive each connection, shut
//! down gracefully.

use crate::{Clock, DriverConfig, ShutdownSignal};
use arcly_core::engine::Engine;
use arcly_core::host::{AddrLimit, LogLimit};
use arcly_core::session::{Conductor, ConnContext, Session};
use arcly_core::time::Instant;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Connections held at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections held at once from one address (`None`: no limit, so
    /// loopback benches work); more are accepted and closed at once.
    pub max_connections_per_ip: Option<usize>,
    /// A connection must publish or play within this time (`None`: no limit,
    /// for protocols such as HTTP).
    pub handshake_timeout: Option<Duration>,
    /// A connection that is not playing and sends nothing for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// How long live connections get to finish after shutdown before they are
    /// dropped.
    pub shutdown_deadline: Duration,
    /// The per-connection driver's settings.
    pub driver: DriverConfig,
    /// Where the listener counts its connections, for metrics.
    pub stats: Option<Arc<ConnStats>>,
    /// Where the listener lists its connections, for an API.
    pub sessions: Option<Arc<crate::Sessions>>,
}

/// A listener's connection figures.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections being served now.
    pub open: AtomicUsize,
    /// Connections taken and served since the start.
    pub accepted: AtomicU64,
    /// Connections closed at once because a limit was reached.
    pub turned_away: AtomicU64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: 10_000,
            max_connections_per_ip: None,
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(5),
            driver: DriverConfig::default(),
            stats: None,
            sessions: None,
        }
    }
}

/// A connection counted in [`ConnStats::open`] until it is dropped.
struct Open(Option<Arc<ConnStats>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A log sink shared by connections.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Accepts connections on `listener` and runs a session made by `make` on
/// each, until `shutdown` fires; then stops accepting, lets live connections
/// say goodbye within the deadline, drops the rest, and returns. No task
/// outlives the call.
pub async fn serve<S, F>(
    listener: TcpListener,
    engine: Engine,
    make: F,
    cfg: ListenerConfig,
    clock: Clock,
    shutdown: ShutdownSignal,
    log: Log,
) -> io::Result<()>
where
    S: Session + Send + 'static,
    F: Fn(Instant) -> S + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let per_ip = AddrLimit::new(cfg.max_connections_per_ip);
    let malformed_log = Arc::new(LogLimit::new(Duration::from_secs(1)));
    let mut conns = JoinSet::new();
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut stop => break,
            // Reap finished connections as they end: a finished task's
            // memory (its whole session) is freed only when it is joined.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of descriptors or a connection reset before accept:
                // back off briefly and go on.
                Err(e) => {
                    log(format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let turned_away = || {
            if let Some(s) = &cfg.stats {
                s.turned_away.fetch_add(1, Ordering::Relaxed);
            }
        };
        if conns.len() >= cfg.max_connections {
            drop(sock);
            turned_away();
            continue;
        }
        let Some(slot) = per_ip.acquire(peer.ip()) else {
            drop(sock);
            turned_away();
            continue;
        };
        let stats = cfg.stats.clone();
        if let Some(s) = &stats {
            s.accepted.fetch_add(1, Ordering::Relaxed);
            s.open.fetch_add(1, Ordering::Relaxed);
        }
        let now = clock.now();
        let session = make(now);
        let registered = cfg
            .sessions
            .as_ref()
            .map(|s| s.add(session.protocol(), peer.to_string()));
        let ctx = ConnContext {
            id: registered.as_ref().map(|r| r.tracked.id),
            peer: Some(peer.to_string()),
            peer_addr: Some(peer),
            malformed_log: malformed_log.clone(),
            unix_base: clock.unix_base(),
            started: now,
            handshake_timeout: cfg.handshake_timeout,
            idle_timeout: cfg.idle_timeout,
        };
        let conductor = Conductor::new(engine.clone(), session, ctx);
        let (signal, driver, log) = (shutdown.clone(), cfg.driver.clone(), log.clone());
        let tracked = registered.as_ref().map(|r| r.tracked.clone());
        // Counted out, listed out and its address's slot given back however
        // the task ends (aborted at shutdown too): they go with the future.
        let keep = (Open(stats), registered, slot);
        let drive = crate::driver::drive_tracked(
            sock, conductor, clock, signal, driver, log, tracked, keep,
        );
        conns.spawn(drive);
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(cfg.shutdown_deadline, drain)
        .await
        .is_err()
    {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    Ok(())
}
