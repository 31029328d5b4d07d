//! The stream directory on a Redis server (`--directory redis://HOST:PORT`):
//! arcly-resp's sans-IO client on one connection, made again (backoff 1 s
//! doubling to 10 s) whenever it is lost. This gateway's streams are
//! recorded there under its `--advertise` address while it publishes them;
//! an edge asks where a key is before it pulls it.

use std::collections::HashMap;
use std::time::Duration;

use arcly_core::engine::StreamKey;
use arcly_resp::directory::{Directory, DirectoryConfig, DirectoryEvent};
use arcly_resp::{Limits, Replies};
use arcly_tokio::{Clock, Log, ShutdownSignal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How long a lookup may take before the edge goes without it.
const LOOKUP_WAIT: Duration = Duration::from_secs(1);

/// A server that takes no bytes, or answers nothing, this long is
/// dropped and called again (what was in flight fails).
const SERVER_WAIT: Duration = Duration::from_secs(5);

/// Commands in flight at most: lookups past it go without an answer.
const MAX_IN_FLIGHT: usize = 1024;

enum Msg {
    Published(String),
    Unpublished(String),
    Lookup(String, oneshot::Sender<Option<String>>),
}

/// The directory's task, as the rest of the gateway reaches it.
#[derive(Clone, Debug)]
pub struct DirectoryHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl DirectoryHandle {
    /// `key` is published here: recorded, and kept while it lasts.
    pub fn published(&self, key: &StreamKey) {
        let _ = self.tx.send(Msg::Published(key.to_string()));
    }

    /// `key` is no longer published here.
    pub fn unpublished(&self, key: &StreamKey) {
        let _ = self.tx.send(Msg::Unpublished(key.to_string()));
    }

    /// Where `key` is published (an `rtmp://HOST:PORT`), if the directory
    /// says within [`LOOKUP_WAIT`].
    pub async fn lookup(&self, key: &StreamKey) -> Option<String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Lookup(key.to_string(), tx)).ok()?;
        tokio::time::timeout(LOOKUP_WAIT, rx).await.ok()?.ok()?
    }
}

/// `redis://HOST:PORT` (port 6379 when left out).
pub fn parse_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("takes redis://HOST[:PORT], not {url:?}"))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(format!("takes redis://HOST[:PORT], not {url:?}"));
    }
    Ok(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:6379")
        },
    )
}

/// Starts the directory's task for the server at `addr` (`HOST:PORT`).
pub fn spawn(
    addr: String,
    advertise: String,
    clock: Clock,
    stop: ShutdownSignal,
    log: Log,
) -> DirectoryHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(addr, advertise, clock, stop, log, rx));
    DirectoryHandle { tx }
}

async fn run(
    addr: String,
    advertise: String,
    clock: Clock,
    stop: ShutdownSignal,
    log: Log,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut dir = Directory::new(advertise, DirectoryConfig::default());
    let mut waiting: HashMap<u64, oneshot::Sender<Option<String>>> = HashMap::new();
    let mut backoff = Duration::from_secs(1);
    let mut was_up = true;
    loop {
        let connected = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)) => r,
            _ = stop.clone().wait() => return,
        };
        let mut sock = match connected {
            Ok(Ok(s)) => s,
            failed => {
                if was_up {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer in 3 s".into(),
                    };
                    log(format!(
                        "directory at {addr}: cannot connect ({why}); trying again, lookups go without it meanwhile"
                    ));
                }
                was_up = false;
                for e in dir.lost() {
                    answer(&mut waiting, e);
                }
                // Meanwhile: keys are noted for later, lookups get no answer.
                let until = tokio::time::sleep(backoff);
                tokio::pin!(until);
                loop {
                    tokio::select! {
                        _ = &mut until => break,
                        _ = stop.clone().wait() => return,
                        m = rx.recv() => match m {
                            Some(m) => apply(&mut dir, &mut waiting, m, &clock, false),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        backoff = Duration::from_secs(1);
        for e in dir.reconnected(clock.now()) {
            answer(&mut waiting, e);
        }
        log(format!("directory at {addr}: connected"));
        was_up = true;
        let mut replies = Replies::new(Limits::default());
        let mut buf = vec![0u8; 16 << 10];
        // When the server is to have answered what is in flight.
        let mut answer_by: Option<tokio::time::Instant> = None;
        let why = loop {
            let mut failed = None;
            while let Some(c) = dir.poll_transmit() {
                match tokio::time::timeout(SERVER_WAIT, sock.write_all(&c)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failed = Some(e.to_string()),
                    Err(_) => failed = Some("it took no bytes for 5 s".into()),
                }
                if failed.is_some() {
                    break;
                }
            }
            if let Some(why) = failed {
                break why;
            }
            if dir.in_flight() == 0 {
                answer_by = None;
            } else if answer_by.is_none() {
                answer_by = Some(tokio::time::Instant::now() + SERVER_WAIT);
            }
            let late = answer_by.unwrap_or_else(|| tokio::time::Instant::now() + SERVER_WAIT);
            while let Some(e) = dir.poll_error() {
                log(format!("directory at {addr}: the server answered {e}"));
            }
            let wake = dir.poll_timeout().map_or(
                tokio::time::Instant::now() + Duration::from_secs(3600),
                |t| clock.to_tokio(t),
            );
            tokio::select! {
                _ = stop.clone().wait() => return,
                m = rx.recv() => match m {
                    Some(m) => apply(&mut dir, &mut waiting, m, &clock, true),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => dir.handle_timeout(clock.now()),
                _ = tokio::time::sleep_until(late), if answer_by.is_some() => {
                    break "no answer in 5 s".to_string();
                }
                r = sock.read(&mut buf) => match r {
                    Ok(0) => break "the server closed the connection".to_string(),
                    Err(e) => break e.to_string(),
                    Ok(n) => {
                        if let Err(e) = replies.push(&buf[..n]) {
                            break e.to_string();
                        }
                        // A reply that is not one ends the connection.
                        let bad = loop {
                            match replies.next_reply() {
                                Ok(Some(r)) => {
                                    // An answer: the server is alive.
                                    answer_by = None;
                                    if let Some(e) = dir.handle_reply(r) {
                                        answer(&mut waiting, e);
                                    }
                                }
                                Ok(None) => break None,
                                Err(e) => break Some(e.to_string()),
                            }
                        };
                        if let Some(why) = bad {
                            break why;
                        }
                    }
                },
            }
        };
        for e in dir.lost() {
            answer(&mut waiting, e);
        }
        log(format!(
            "directory at {addr}: connection lost ({why}); connecting again"
        ));
    }
}

fn apply(
    dir: &mut Directory,
    waiting: &mut HashMap<u64, oneshot::Sender<Option<String>>>,
    m: Msg,
    clock: &Clock,
    up: bool,
) {
    match m {
        Msg::Published(k) => dir.published(&k, clock.now()),
        Msg::Unpublished(k) => dir.unpublished(&k),
        Msg::Lookup(k, tx) if up && dir.is_up() && dir.in_flight() < MAX_IN_FLIGHT => {
            let id = dir.lookup(&k);
            waiting.insert(id, tx);
        }
        Msg::Lookup(_, tx) => {
            let _ = tx.send(None);
        }
    }
}

fn answer(waiting: &mut HashMap<u64, oneshot::Sender<Option<String>>>, e: DirectoryEvent) {
    let (id, origin) = match e {
        DirectoryEvent::Found { id, origin, .. } => (id, origin),
        DirectoryEvent::Failed { id, .. } => (id, None),
    };
    if let Some(tx) = waiting.remove(&id) {
        let _ = tx.send(origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6380").as_deref(),
            Ok("127.0.0.1:6380")
        );
        assert_eq!(parse_url("redis://cache").as_deref(), Ok("cache:6379"));
        for bad in ["http://h:1", "redis://", "redis://u:p@h:1", "redis://h:1/0"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
