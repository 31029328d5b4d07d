//! The gateway's SRT listener: one UDP socket, the SRT endpoint's sessions
//! on the tokio datagram driver.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arcly_core::endpoint::EndpointHost;
use arcly_core::engine::Engine;
use arcly_core::session::ConnContext;
use arcly_srt::{SessionStats, SrtConfig, SrtEndpoint};
use arcly_tokio::{Clock, ShutdownSignal};

/// SRT settings from the flags.
#[derive(Clone, Debug)]
pub struct SrtOptions {
    /// The listen address.
    pub addr: SocketAddr,
    /// Our latency, ms.
    pub latency_ms: u64,
    /// The passphrase of every stream.
    pub passphrase: Option<String>,
    /// Passphrases per stream or prefix (`live/*`), first match first.
    pub key_passphrases: Vec<(String, String)>,
    /// Where its sessions are listed for `/api/sessions`.
    pub sessions: Option<std::sync::Arc<arcly_tokio::Sessions>>,
}

/// 32 bytes from the operating system's random source.
pub fn seed() -> [u8; 32] {
    let mut b = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        // No /dev/urandom: the standard library's per-process random keys.
        use std::hash::{BuildHasher, Hasher};
        for chunk in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_be_bytes());
        }
    }
    b
}

/// `(pattern, passphrase)` pairs as the listener takes them.
pub fn key_passphrases(pairs: &[(String, String)]) -> Vec<arcly_srt::KeyPassphrase> {
    pairs
        .iter()
        .map(|(pattern, passphrase)| arcly_srt::KeyPassphrase {
            pattern: pattern.clone(),
            passphrase: passphrase.clone(),
        })
        .collect()
}

/// Binds the SRT socket; returns its address, the sessions' live figures,
/// the handle that replaces its passphrases per stream (on reload) and
/// the task that serves it.
pub async fn bind(
    o: &SrtOptions,
    engine: Engine,
    clock: Clock,
    ctx: ConnContext,
    stop: ShutdownSignal,
    log: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<
    (
        SocketAddr,
        SessionStats,
        arcly_srt::PassphraseUpdates,
        impl std::future::Future<Output = std::io::Result<()>>,
    ),
    String,
> {
    let all = o.passphrase.iter().map(|p| ("--srt-passphrase", p));
    let per = o
        .key_passphrases
        .iter()
        .map(|(_, p)| ("--srt-key-passphrase", p));
    for (flag, p) in all.chain(per) {
        if !(10..=80).contains(&p.len()) {
            return Err(format!(
                "{flag}: a passphrase is 10 to 80 bytes long, not {}",
                p.len()
            ));
        }
    }
    let sock = tokio::net::UdpSocket::bind(o.addr)
        .await
        .map_err(|e| format!("cannot listen for SRT on {}: {e}", o.addr))?;
    let local = sock.local_addr().unwrap_or(o.addr);
    let cfg = SrtConfig {
        latency: Duration::from_millis(o.latency_ms),
        passphrase: o.passphrase.clone(),
        passphrases: key_passphrases(&o.key_passphrases),
        ..SrtConfig::default()
    };
    let endpoint = SrtEndpoint::new(cfg, seed());
    let stats = endpoint.session_stats();
    let updates = endpoint.passphrase_updates();
    let mut host = EndpointHost::new(endpoint, engine, ctx);
    if let Some(list) = o.sessions.clone() {
        host = host.with_ids(Arc::new(move || list.next_id()));
    }
    let report = stats.clone();
    let sessions = o.sessions.clone();
    let task = async move {
        // Each ended session's figures go to the log once.
        let ended = {
            let log = log.clone();
            let stop = stop.clone();
            async move {
                crate::each_second(stop, || {
                    for (id, info) in report.take_ended() {
                        log(format!("srt session {id:08x} ended: {info}"));
                    }
                })
                .await;
            }
        };
        let (r, ()) = tokio::join!(
            arcly_tokio::drive_endpoint_tracked(
                sock,
                host,
                clock,
                stop,
                &*log,
                sessions.map(|s| (s, "srt"))
            ),
            ended
        );
        r
    };
    Ok((local, stats, updates, task))
}
