//! Listeners on async-io: accept with a limit, shut down gracefully.

use crate::{Clock, DriverConfig, ShutdownSignal};
use arcly_core::engine::Engine;
use arcly_core::host::{AddrLimit, LogLimit};
use arcly_core::session::{Conductor, ConnContext, Session};
use arcly_core::time::Instant;
use async_io::{Async, Timer};
use std::io;
use std::net::TcpListener;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Connections held at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections held at once from one address (`None`: no limit, so
    /// loopback benches work); more are accepted and closed at once.
    pub max_connections_per_ip: Option<usize>,
    /// A connection must publish or play within this time (`None`: no limit).
    pub handshake_timeout: Option<Duration>,
    /// A connection that is not playing and sends nothing for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// How long live connections get after shutdown before they are dropped.
    pub shutdown_deadline: Duration,
    /// The per-connection driver's settings.
    pub driver: DriverConfig,
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
        }
    }
}

/// A log sink shared by connections.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Accepts on `listener` and runs a session made by `make` on each
/// connection (spawned on smol's global executor) until `shutdown` fires;
/// then stops accepting, gives live connections the deadline to finish, and
/// cancels the rest. No task outlives the call.
pub async fn serve<S, F>(
    listener: Async<TcpListener>,
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
    let per_ip = AddrLimit::new(cfg.max_connections_per_ip);
    let malformed_log = Arc::new(LogLimit::new(Duration::from_secs(1)));
    let mut conns: Vec<smol::Task<io::Result<()>>> = Vec::new();
    let mut stop = pin!(shutdown.clone().wait());
    loop {
        conns.retain(|t| !t.is_finished());
        let accept = pin!(listener.accept());
        let accepted = match futures::future::select(stop.as_mut(), accept).await {
            futures::future::Either::Left(_) => None,
            futures::future::Either::Right((r, _)) => Some(r),
        };
        let (sock, peer) = match accepted {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                log(format!("accept failed: {e}"));
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        if conns.len() >= cfg.max_connections {
            drop(sock);
            continue;
        }
        let Some(slot) = per_ip.acquire(peer.ip()) else {
            drop(sock);
            continue;
        };
        let now = clock.now();
        let ctx = ConnContext {
            id: None,
            peer: Some(peer.to_string()),
            peer_addr: Some(peer),
            malformed_log: malformed_log.clone(),
            unix_base: clock.unix_base(),
            started: now,
            handshake_timeout: cfg.handshake_timeout,
            idle_timeout: cfg.idle_timeout,
        };
        let conductor = Conductor::new(engine.clone(), make(now), ctx);
        let (signal, driver, log) = (shutdown.clone(), cfg.driver.clone(), log.clone());
        // Made here and spawned whole, with the address's slot in it: a
        // task wrapping it would keep room for its arguments beside it.
        conns.push(smol::spawn(crate::driver::drive(
            sock, conductor, clock, signal, driver, log, slot,
        )));
    }
    drop(listener);
    let deadline = std::time::Instant::now() + cfg.shutdown_deadline;
    for t in conns {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // Dropping a smol task cancels it.
        let _ = futures::future::select(t, pin!(Timer::after(left))).await;
    }
    Ok(())
}
