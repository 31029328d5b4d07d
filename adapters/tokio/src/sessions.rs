//! The connections the listeners serve, for an API: each one's protocol,
//! peer, stream and role, bytes each way and start; and a way to end one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// One connection, as its driver keeps it up to date.
#[derive(Debug)]
pub struct Tracked {
    pub(crate) id: u64,
    protocol: &'static str,
    peer: String,
    since_unix_ms: u64,
    stream: Mutex<Option<(String, &'static str)>>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) end: Notify,
    /// [`Sessions::end`] was asked (for drivers that look rather than
    /// wait: the datagram driver).
    pub(crate) ended: std::sync::atomic::AtomicBool,
}

impl Tracked {
    pub(crate) fn set_stream(&self, stream: Option<(String, &'static str)>) {
        *self.stream.lock().unwrap_or_else(|p| p.into_inner()) = stream;
    }
}

/// A connection as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its id (for `end`).
    pub id: u64,
    /// `"rtmp"`, `"rtsp"`, `"http"`, ...
    pub protocol: &'static str,
    /// The peer's address.
    pub peer: String,
    /// The stream it publishes or plays, once it does.
    pub stream: Option<String>,
    /// `"publish"` or `"play"`, once it does.
    pub role: Option<&'static str>,
    /// Bytes read from the peer.
    pub bytes_in: u64,
    /// Bytes written to the peer.
    pub bytes_out: u64,
    /// When it was accepted (Unix milliseconds).
    pub since_unix_ms: u64,
}

/// Every tracked connection; listeners given it (see
/// [`ListenerConfig::sessions`](crate::ListenerConfig::sessions)) add
/// theirs and remove them when they end.
#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Tracked>>>,
}

impl Sessions {
    pub(crate) fn add(self: &Arc<Self>, protocol: &'static str, peer: String) -> Registered {
        let id = self.next_id();
        self.add_as(id, protocol, peer)
    }

    /// A new id, for a session listed later ([`EndpointHost::with_ids`]:
    /// a datagram session's log lines carry its id from its first).
    ///
    /// [`EndpointHost::with_ids`]: arcly_core::endpoint::EndpointHost::with_ids
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Lists a connection under an id from [`next_id`](Self::next_id).
    pub(crate) fn add_as(
        self: &Arc<Self>,
        id: u64,
        protocol: &'static str,
        peer: String,
    ) -> Registered {
        let since_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let t = Arc::new(Tracked {
            id,
            protocol,
            peer,
            since_unix_ms,
            stream: Mutex::new(None),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            end: Notify::new(),
            ended: std::sync::atomic::AtomicBool::new(false),
        });
        self.lock().insert(id, t.clone());
        Registered {
            sessions: self.clone(),
            tracked: t,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Tracked>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every live connection, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock()
            .values()
            .map(|t| {
                let stream = t.stream.lock().unwrap_or_else(|p| p.into_inner()).clone();
                SessionInfo {
                    id: t.id,
                    protocol: t.protocol,
                    peer: t.peer.clone(),
                    role: stream.as_ref().map(|s| s.1),
                    stream: stream.map(|s| s.0),
                    bytes_in: t.bytes_in.load(Ordering::Relaxed),
                    bytes_out: t.bytes_out.load(Ordering::Relaxed),
                    since_unix_ms: t.since_unix_ms,
                }
            })
            .collect()
    }

    /// Ends connection `id` (its session says goodbye as at shutdown);
    /// `false` when there is none.
    pub fn end(&self, id: u64) -> bool {
        match self.lock().get(&id) {
            Some(t) => {
                t.ended.store(true, Ordering::Release);
                t.end.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in [`Sessions`], given up when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    sessions: Arc<Sessions>,
    pub(crate) tracked: Arc<Tracked>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.tracked.id);
    }
}
