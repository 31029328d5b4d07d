//! The stream directory on a Redis server: under `PREFIX + APP/STREAM`,
//! the RTMP address of the gateway publishing the key (`rtmp://HOST:PORT`).
//!
//! An origin records each key it publishes with `SET ... EX ttl`, and
//! again every `refresh`, so the entry of an origin that crashed runs out
//! within the TTL; when a stream ends it deletes the entry if the entry is
//! still its own (a compare-and-delete script, so an origin the publisher
//! moved to keeps it). An edge asks with `GET` where a key is.
//!
//! Sans-IO: the host writes [`Directory::poll_transmit`]'s bytes to one
//! connection, hands each reply to [`Directory::handle_reply`] (replies
//! come in the order of the commands), and calls
//! [`Directory::handle_timeout`] at [`Directory::poll_timeout`]. After a
//! reconnection, [`Directory::reconnected`] fails the lookups in flight
//! and records every key again.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use arcly_core::time::Instant;

use crate::{command, Reply};

/// Deletes KEYS[1] if it holds ARGV[1].
const DELETE_IF_OURS: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// The directory's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// Put before each key (`arcly:stream:`).
    pub prefix: String,
    /// How long an entry lives unless refreshed.
    pub ttl: Duration,
    /// How often an origin refreshes its entries (well under `ttl`).
    pub refresh: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            prefix: "arcly:stream:".into(),
            ttl: Duration::from_secs(15),
            refresh: Duration::from_secs(5),
        }
    }
}

/// An answer for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryEvent {
    /// Where `key` is published (`None`: nowhere the directory knows).
    Found {
        /// The lookup's id ([`Directory::lookup`]).
        id: u64,
        /// The key asked about.
        key: String,
        /// The publishing gateway's RTMP address.
        origin: Option<String>,
    },
    /// A lookup with no answer: the server failed it or the connection
    /// was lost.
    Failed {
        /// The lookup's id.
        id: u64,
        /// The key asked about.
        key: String,
        /// Why, in words.
        why: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    Set,
    Del,
    Get { id: u64, key: String },
}

/// One gateway's side of the directory (see the module docs).
#[derive(Debug)]
pub struct Directory {
    cfg: DirectoryConfig,
    /// This gateway's RTMP address, as edges are to reach it.
    advertise: String,
    /// The keys published here, and when each is refreshed next.
    published: BTreeMap<String, Instant>,
    out: VecDeque<Vec<u8>>,
    in_flight: VecDeque<Pending>,
    next_id: u64,
    /// Errors the server answered to writes, for the host's log.
    errors: VecDeque<String>,
    /// Whether the connection is up ([`Directory::lost`]): while it is not,
    /// keys are noted and nothing is queued.
    up: bool,
}

impl Directory {
    /// A directory client advertising `advertise` (`rtmp://HOST:PORT`).
    pub fn new(advertise: impl Into<String>, cfg: DirectoryConfig) -> Self {
        Directory {
            cfg,
            advertise: advertise.into(),
            published: BTreeMap::new(),
            out: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_id: 0,
            errors: VecDeque::new(),
            up: true,
        }
    }

    fn send(&mut self, bytes: Vec<u8>, p: Pending) {
        if self.up {
            self.out.push_back(bytes);
            self.in_flight.push_back(p);
        }
    }

    fn set(&mut self, key: &str) {
        let k = format!("{}{key}", self.cfg.prefix);
        let ttl = self.cfg.ttl.as_secs().max(1).to_string();
        let c = command(&[
            b"SET",
            k.as_bytes(),
            self.advertise.as_bytes(),
            b"EX",
            ttl.as_bytes(),
        ]);
        self.send(c, Pending::Set);
    }

    /// `key` is published here from `now`: recorded at once, and
    /// refreshed while it lasts.
    pub fn published(&mut self, key: &str, now: Instant) {
        self.set(key);
        self.published
            .insert(key.to_string(), now + self.cfg.refresh);
    }

    /// `key` is no longer published here: its entry goes if it is still
    /// ours.
    pub fn unpublished(&mut self, key: &str) {
        if self.published.remove(key).is_none() {
            return;
        }
        let k = format!("{}{key}", self.cfg.prefix);
        let c = command(&[
            b"EVAL",
            DELETE_IF_OURS.as_bytes(),
            b"1",
            k.as_bytes(),
            self.advertise.as_bytes(),
        ]);
        self.send(c, Pending::Del);
    }

    /// Asks where `key` is published; the answer comes as a
    /// [`DirectoryEvent`] with the id returned (none while the connection
    /// is down: see [`is_up`](Self::is_up)).
    pub fn lookup(&mut self, key: &str) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let k = format!("{}{key}", self.cfg.prefix);
        self.send(
            command(&[b"GET", k.as_bytes()]),
            Pending::Get {
                id,
                key: key.to_string(),
            },
        );
        id
    }

    /// The next command to write.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next reply from the server.
    pub fn handle_reply(&mut self, reply: Reply) -> Option<DirectoryEvent> {
        let p = self.in_flight.pop_front()?;
        match (p, reply) {
            (Pending::Get { id, key }, Reply::Bulk(v)) => Some(DirectoryEvent::Found {
                id,
                key,
                origin: v.and_then(|b| String::from_utf8(b).ok()),
            }),
            (Pending::Get { id, key }, other) => Some(DirectoryEvent::Failed {
                id,
                key,
                why: format!("the server answered {other:?}"),
            }),
            (_, Reply::Error(e)) => {
                self.errors.push_back(e);
                None
            }
            _ => None,
        }
    }

    /// An error the server answered to a write, for the log.
    pub fn poll_error(&mut self) -> Option<String> {
        self.errors.pop_front()
    }

    /// Refreshes the entries due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .published
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.set(&k);
            self.published.insert(k, now + self.cfg.refresh);
        }
    }

    /// When the next refresh is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.published.values().min().copied()
    }

    /// The connection was lost: what was in flight gets no answer (its
    /// lookups fail), and until [`reconnected`](Self::reconnected) keys
    /// are only noted and lookups not sent.
    pub fn lost(&mut self) -> Vec<DirectoryEvent> {
        self.up = false;
        self.fail_in_flight()
    }

    /// Whether commands are being sent (the connection is up).
    pub fn is_up(&self) -> bool {
        self.up
    }

    fn fail_in_flight(&mut self) -> Vec<DirectoryEvent> {
        self.out.clear();
        self.in_flight
            .drain(..)
            .filter_map(|p| match p {
                Pending::Get { id, key } => Some(DirectoryEvent::Failed {
                    id,
                    key,
                    why: "the directory's connection was lost".into(),
                }),
                _ => None,
            })
            .collect()
    }

    /// The connection was lost and made again: what was in flight gets no
    /// answer (its lookups fail), and every key is recorded again.
    pub fn reconnected(&mut self, now: Instant) -> Vec<DirectoryEvent> {
        let failed = self.fail_in_flight();
        self.up = true;
        let keys: Vec<String> = self.published.keys().cloned().collect();
        for k in keys {
            self.set(&k);
            self.published.insert(k, now + self.cfg.refresh);
        }
        failed
    }

    /// Commands written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, Limits};
    use std::collections::HashMap;

    /// A Redis of our own for the tests: SET with EX, GET, and the
    /// compare-and-delete script, on the virtual clock.
    #[derive(Default)]
    struct FakeRedis {
        data: HashMap<String, (String, Instant)>,
    }

    impl FakeRedis {
        fn get(&self, k: &str, now: Instant) -> Option<String> {
            self.data
                .get(k)
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| v.clone())
        }

        fn run(&mut self, bytes: &[u8], now: Instant) -> Reply {
            let (Reply::Array(Some(args)), n) = parse(bytes, &Limits::default()).unwrap().unwrap()
            else {
                panic!("not a command")
            };
            assert_eq!(n, bytes.len());
            let args: Vec<String> = args
                .into_iter()
                .map(|a| match a {
                    Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
                    _ => panic!("not a bulk string"),
                })
                .collect();
            match args[0].as_str() {
                "SET" => {
                    assert_eq!(args[3], "EX");
                    let ttl: u64 = args[4].parse().unwrap();
                    self.data.insert(
                        args[1].clone(),
                        (args[2].clone(), now + Duration::from_secs(ttl)),
                    );
                    Reply::Simple("OK".into())
                }
                "GET" => Reply::Bulk(self.get(&args[1], now).map(String::into_bytes)),
                "EVAL" => {
                    assert_eq!(args[1], DELETE_IF_OURS);
                    if self.get(&args[3], now).as_deref() == Some(args[4].as_str()) {
                        self.data.remove(&args[3]);
                        Reply::Integer(1)
                    } else {
                        Reply::Integer(0)
                    }
                }
                other => Reply::Error(format!("ERR unknown command {other}")),
            }
        }

        /// Runs what `d` sends, and hands it the replies.
        fn serve(&mut self, d: &mut Directory, now: Instant) -> Vec<DirectoryEvent> {
            let mut events = Vec::new();
            while let Some(c) = d.poll_transmit() {
                let r = self.run(&c, now);
                events.extend(d.handle_reply(r));
            }
            events
        }
    }

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn found(events: &[DirectoryEvent]) -> Option<Option<String>> {
        events.iter().find_map(|e| match e {
            DirectoryEvent::Found { origin, .. } => Some(origin.clone()),
            _ => None,
        })
    }

    /// Two origins and an edge on the virtual clock: the edge finds the
    /// origin that publishes; an origin that stops refreshing (crashed)
    /// drops out within the TTL; the publisher moving to the other origin
    /// moves the entry, and the first origin's late delete does not undo
    /// that.
    #[test]
    fn entries_follow_the_publisher_and_expire_with_a_crashed_origin() {
        let cfg = DirectoryConfig::default();
        let mut redis = FakeRedis::default();
        let mut a = Directory::new("rtmp://10.0.0.1:1935", cfg.clone());
        let mut b = Directory::new("rtmp://10.0.0.2:1935", cfg.clone());
        let mut edge = Directory::new("rtmp://10.0.0.9:1935", cfg);
        a.published("live/cam", at(0));
        redis.serve(&mut a, at(0));
        let ask = |edge: &mut Directory, redis: &mut FakeRedis, t| {
            edge.lookup("live/cam");
            found(&redis.serve(edge, t)).expect("an answer")
        };
        assert_eq!(
            ask(&mut edge, &mut redis, at(1)).as_deref(),
            Some("rtmp://10.0.0.1:1935")
        );
        // Refreshed while it lives: still there long after the TTL.
        let mut t = at(0);
        while t < at(60) {
            t = a.poll_timeout().expect("a refresh");
            a.handle_timeout(t);
            redis.serve(&mut a, t);
        }
        assert_eq!(
            ask(&mut edge, &mut redis, at(60)).as_deref(),
            Some("rtmp://10.0.0.1:1935")
        );
        // A crashes (no more refreshes): gone within the TTL of its last.
        assert_eq!(
            ask(&mut edge, &mut redis, t + Duration::from_secs(16)),
            None
        );
        // The publisher moves to B; A comes back and deletes late: B keeps it.
        b.published("live/cam", at(80));
        redis.serve(&mut b, at(80));
        a.unpublished("live/cam");
        redis.serve(&mut a, at(81));
        assert_eq!(
            ask(&mut edge, &mut redis, at(82)).as_deref(),
            Some("rtmp://10.0.0.2:1935")
        );
        // B's own delete takes it.
        b.unpublished("live/cam");
        redis.serve(&mut b, at(83));
        assert_eq!(ask(&mut edge, &mut redis, at(84)), None);
        assert_eq!(b.poll_timeout(), None, "nothing to refresh");
    }

    /// A lost connection fails the lookups in flight and records every
    /// key again; an error answered to a write is kept for the log.
    #[test]
    fn a_reconnection_fails_lookups_and_records_again() {
        let mut d = Directory::new("rtmp://o:1935", DirectoryConfig::default());
        d.published("live/a", at(0));
        d.published("live/b", at(0));
        let id = d.lookup("live/x");
        assert_eq!(d.in_flight(), 3);
        let failed = d.reconnected(at(3));
        assert_eq!(
            failed,
            [DirectoryEvent::Failed {
                id,
                key: "live/x".into(),
                why: "the directory's connection was lost".into()
            }]
        );
        let mut redis = FakeRedis::default();
        redis.serve(&mut d, at(3));
        assert!(redis.get("arcly:stream:live/a", at(4)).is_some());
        assert!(redis.get("arcly:stream:live/b", at(4)).is_some());
        // Down: keys noted, nothing queued however many come and go.
        let _ = d.lost();
        for i in 0..1000 {
            d.published(&format!("live/churn{i}"), at(4));
            d.unpublished(&format!("live/churn{i}"));
        }
        d.handle_timeout(at(10));
        assert_eq!((d.poll_transmit(), d.in_flight()), (None, 0));
        let _ = d.reconnected(at(11));
        let mut redis2 = FakeRedis::default();
        redis2.serve(&mut d, at(11));
        assert!(redis2.get("arcly:stream:live/a", at(12)).is_some());
        assert!(redis2.get("arcly:stream:live/churn1", at(12)).is_none());
        d.published("live/c", at(5));
        let _ = d.poll_transmit();
        assert_eq!(d.handle_reply(Reply::Error("READONLY".into())), None);
        assert_eq!(d.poll_error().as_deref(), Some("READONLY"));
    }
}
