//! Refusals, logged once per kind: a client that retries a refused request
//! (srt-live-transmit and GStreamer reconnect about a hundred times a
//! second) gives one line, then one count per [`WINDOW`] while it goes on.
//! A kind is the action, the stream, the protocol, the peer's address
//! without its port, and the reason.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long repeats of one refusal are counted before they are told.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Kinds remembered at most; past it a refusal is logged every time.
const MAX_KINDS: usize = 4096;

#[derive(Debug)]
struct Kind {
    line: String,
    since: Instant,
    repeats: u64,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashMap<String, Kind>>);

/// Refusals counted by protocol, action and reason, for `/metrics`.
#[derive(Debug, Default)]
pub struct RefusalCounts(
    Mutex<std::collections::BTreeMap<(String, &'static str, &'static str), u64>>,
);

impl RefusalCounts {
    /// One refusal.
    pub fn count(&self, protocol: &str, action: &'static str, reason: &'static str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((protocol.to_string(), action, reason)).or_insert(0) += 1;
    }

    /// The series `arcly_refusals_total`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP arcly_refusals_total Publish and play requests refused, by protocol, action and reason.");
        let _ = writeln!(out, "# TYPE arcly_refusals_total counter");
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for ((protocol, action, reason), n) in m.iter() {
            let _ = writeln!(
                out,
                "arcly_refusals_total{{protocol=\"{protocol}\",action=\"{action}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
}

/// The peer's address without its port (callers retry from new ports).
fn host_of(peer: &str) -> &str {
    match peer.parse::<SocketAddr>() {
        Ok(_) => peer.rsplit_once(':').map(|(h, _)| h).unwrap_or(peer),
        Err(_) => peer,
    }
}

impl Refusals {
    /// A refusal; the line to log now, if it is the first of its kind in
    /// this window.
    pub fn record(
        &self,
        now: Instant,
        action: &str,
        key: &str,
        protocol: &str,
        peer: Option<&str>,
        reason: &str,
    ) -> Option<String> {
        let peer = peer.unwrap_or("?");
        let line = format!("refused {action} of {key} over {protocol} from {peer}: {reason}");
        let kind = format!("{action}\0{key}\0{protocol}\0{}\0{reason}", host_of(peer));
        let Ok(mut kinds) = self.0.lock() else {
            return Some(line);
        };
        if let Some(k) = kinds.get_mut(&kind) {
            k.repeats += 1;
            return None;
        }
        if kinds.len() < MAX_KINDS {
            kinds.insert(
                kind,
                Kind {
                    line: line.clone(),
                    since: now,
                    repeats: 0,
                },
            );
        }
        Some(line)
    }

    /// The counts of the kinds whose window ended; a kind that did not
    /// repeat is forgotten.
    pub fn flush(&self, now: Instant) -> Vec<String> {
        let Ok(mut kinds) = self.0.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        kinds.retain(|_, k| {
            let age = now.saturating_duration_since(k.since);
            if age < WINDOW {
                return true;
            }
            if k.repeats == 0 {
                return false;
            }
            out.push(format!(
                "{} ({} more times in {} s)",
                k.line,
                k.repeats,
                age.as_secs()
            ));
            k.repeats = 0;
            k.since = now;
            true
        });
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_then_told_once_per_window() {
        let r = Refusals::default();
        let t = Instant::now();
        let first = r.record(
            t,
            "play",
            "live/x",
            "srt",
            Some("127.0.0.1:5000"),
            "not found",
        );
        assert_eq!(
            first.as_deref(),
            Some("refused play of live/x over srt from 127.0.0.1:5000: not found")
        );
        for port in 5001..5100 {
            let peer = format!("127.0.0.1:{port}");
            assert!(r
                .record(t, "play", "live/x", "srt", Some(&peer), "not found")
                .is_none());
        }
        // Another peer, stream or reason is another kind.
        assert!(r
            .record(
                t,
                "play",
                "live/x",
                "srt",
                Some("10.0.0.1:5000"),
                "not found"
            )
            .is_some());
        assert!(r
            .record(
                t,
                "play",
                "live/y",
                "srt",
                Some("127.0.0.1:5000"),
                "not found"
            )
            .is_some());
        assert!(r.flush(t + Duration::from_secs(1)).is_empty());
        let told = r.flush(t + WINDOW);
        assert_eq!(
            told,
            vec!["refused play of live/x over srt from 127.0.0.1:5000: not found (99 more times in 10 s)"]
        );
        // The quiet kinds were forgotten, the busy one counts on.
        assert!(r
            .record(
                t + WINDOW,
                "play",
                "live/y",
                "srt",
                Some("127.0.0.1:1"),
                "not found"
            )
            .is_some());
        assert!(r
            .record(
                t + WINDOW,
                "play",
                "live/x",
                "srt",
                Some("127.0.0.1:1"),
                "not found"
            )
            .is_none());
        // Quiet for a whole window: forgotten, and logged afresh.
        assert_eq!(r.flush(t + WINDOW * 2).len(), 1);
        assert!(r.flush(t + WINDOW * 3).is_empty());
        assert!(r
            .record(
                t + WINDOW * 3,
                "play",
                "live/x",
                "srt",
                Some("127.0.0.1:1"),
                "not found"
            )
            .is_some());
    }

    #[test]
    fn ipv6_peers_lose_only_their_port() {
        assert_eq!(host_of("[::1]:8890"), "[::1]");
        assert_eq!(host_of("127.0.0.1:8890"), "127.0.0.1");
        assert_eq!(host_of("unix"), "unix");
    }
}
