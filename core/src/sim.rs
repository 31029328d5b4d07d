//! A deterministic network simulator for sans-IO tests (feature `sim`):
//! datagram links with seeded loss, reordering, duplication, delay, jitter
//! and a bandwidth cap, and in-order byte pipes with delay, a bandwidth cap
//! and arbitrary segmentation, all on a virtual clock. A protocol's recovery
//! is proven here before a socket is opened, and a failing seed replays
//! exactly: the same seed and the same inputs give the same deliveries, byte
//! for byte ([`Network::digest`]).
//!
//! After str0m's `netem` crate and quinn-proto's test `Pair`, in our terms:
//! [`Network::send`] takes a datagram at `now`, [`Network::poll_timeout`]
//! says when the next one lands and [`Network::poll_deliver`] hands it over.

use core::net::SocketAddr;
use core::time::Duration;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::time::Instant;

pub mod toy;

/// A small, fast, seeded generator (SplitMix64): the simulator's only
/// source of chance.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (0 to 1).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// How one direction of a link treats datagrams.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkConfig {
    /// Chance that a datagram is lost.
    pub loss: f64,
    /// Chance that a datagram is held back by `reorder_delay`, so later ones
    /// overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Chance that a datagram arrives twice.
    pub duplicate: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Up to this much more delay, uniformly (which also reorders).
    pub jitter: Duration,
    /// Bytes per second the link carries; datagrams queue behind each other
    /// (`None`: unlimited).
    pub rate: Option<u64>,
    /// Datagrams queued behind the rate at most; more are lost (tail drop).
    pub queue_limit: usize,
}

impl LinkConfig {
    /// A perfect link with one-way `delay`.
    pub fn delay(delay: Duration) -> Self {
        LinkConfig {
            delay,
            queue_limit: 1024,
            ..LinkConfig::default()
        }
    }
}

/// A datagram in flight or delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The sender.
    pub from: SocketAddr,
    /// The receiver.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Bytes,
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams lost (chance or tail drop).
    pub lost: u64,
    /// Datagrams held back to reorder.
    pub reordered: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams delivered.
    pub delivered: u64,
}

struct InFlight {
    at: Instant,
    seq: u64,
    packet: Packet,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Datagram links between addresses, on a virtual clock.
pub struct Network {
    rng: Rng,
    default: LinkConfig,
    links: HashMap<(SocketAddr, SocketAddr), LinkConfig>,
    /// When each direction's bandwidth is free again, and its queue length.
    busy: HashMap<(SocketAddr, SocketAddr), (Instant, usize)>,
    flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    stats: NetStats,
    digest: u64,
}

impl core::fmt::Debug for Network {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Network")
            .field("in_flight", &self.flight.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Network {
    /// A network where every link behaves as `default`, its chance drawn
    /// from `seed`.
    pub fn new(seed: u64, default: LinkConfig) -> Self {
        Network {
            rng: Rng::new(seed),
            default,
            links: HashMap::new(),
            busy: HashMap::new(),
            flight: BinaryHeap::new(),
            seq: 0,
            stats: NetStats::default(),
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Sets the direction `from` → `to` apart from the default.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, cfg: LinkConfig) {
        self.links.insert((from, to), cfg);
    }

    /// What happened so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// A hash of every delivery so far (time, ends, bytes): two runs with the
    /// same seed and inputs give the same digest.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// A datagram leaves `from` for `to` at `now`.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Bytes) {
        self.stats.sent += 1;
        let cfg = self.links.get(&(from, to)).unwrap_or(&self.default).clone();
        if self.rng.chance(cfg.loss) {
            self.stats.lost += 1;
            return;
        }
        // Serialisation behind the bandwidth cap.
        let mut depart = now;
        if let Some(rate) = cfg.rate.filter(|r| *r > 0) {
            let (free, queued) = self.busy.get(&(from, to)).copied().unwrap_or((now, 0));
            let queued = if free <= now { 0 } else { queued };
            if queued >= cfg.queue_limit.max(1) {
                self.stats.lost += 1;
                return;
            }
            let start = free.max(now);
            let us = (data.len() as u64).saturating_mul(1_000_000) / rate;
            depart = start + Duration::from_micros(us);
            self.busy.insert((from, to), (depart, queued + 1));
        }
        let mut at = depart + cfg.delay;
        if !cfg.jitter.is_zero() {
            at = at + Duration::from_micros(self.rng.below(cfg.jitter.as_micros() as u64 + 1));
        }
        if self.rng.chance(cfg.reorder) {
            self.stats.reordered += 1;
            at = at + cfg.reorder_delay;
        }
        let copies = if self.rng.chance(cfg.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.flight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                packet: Packet {
                    from,
                    to,
                    data: data.clone(),
                },
            }));
        }
    }

    /// When the next datagram lands.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flight.peek().map(|Reverse(f)| f.at)
    }

    /// The next datagram that has landed by `now`.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<Packet> {
        if self.flight.peek().is_none_or(|Reverse(f)| f.at > now) {
            return None;
        }
        let Reverse(f) = self.flight.pop()?;
        self.stats.delivered += 1;
        let mut h = self.digest;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h ^= u64::from(x);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&f.at.as_micros().to_le_bytes());
        eat(f.packet.from.to_string().as_bytes());
        eat(f.packet.to.to_string().as_bytes());
        eat(&f.packet.data);
        self.digest = h;
        Some(f.packet)
    }
}

/// One direction of a byte stream (a TCP connection's), in order and
/// lossless, with delay, a bandwidth cap and segments of random size, so a
/// parser sees every split a real socket could give it.
#[derive(Debug)]
pub struct Pipe {
    rng: Rng,
    delay: Duration,
    rate: Option<u64>,
    max_segment: usize,
    free: Instant,
    queue: VecDeque<(Instant, Bytes)>,
}

impl Pipe {
    /// A pipe with one-way `delay`, `rate` bytes per second (`None`:
    /// unlimited) and segments of 1 to `max_segment` bytes.
    pub fn new(seed: u64, delay: Duration, rate: Option<u64>, max_segment: usize) -> Self {
        Pipe {
            rng: Rng::new(seed),
            delay,
            rate,
            max_segment: max_segment.max(1),
            free: Instant::ZERO,
            queue: VecDeque::new(),
        }
    }

    /// Bytes written at `now`.
    pub fn write(&mut self, now: Instant, mut data: Bytes) {
        while !data.is_empty() {
            let n = 1 + self.rng.below(self.max_segment as u64) as usize;
            let seg = data.split_to(n.min(data.len()));
            let start = self.free.max(now);
            let done = match self.rate.filter(|r| *r > 0) {
                Some(rate) => start + Duration::from_micros(seg.len() as u64 * 1_000_000 / rate),
                None => start,
            };
            self.free = done;
            self.queue.push_back((done + self.delay, seg));
        }
    }

    /// When the next segment arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// Every segment arrived by `now`, joined.
    pub fn read(&mut self, now: Instant) -> Option<BytesMut> {
        let mut out = BytesMut::new();
        while self.queue.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, seg)) = self.queue.pop_front() {
                out.extend_from_slice(&seg);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn run(seed: u64) -> (NetStats, u64, Vec<u32>) {
        let cfg = LinkConfig {
            loss: 0.10,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            ..LinkConfig::delay(Duration::from_millis(20))
        };
        let mut net = Network::new(seed, cfg);
        let mut got = Vec::new();
        let mut now = Instant::ZERO;
        for i in 0..2_000u32 {
            net.send(now, addr(1), addr(2), Bytes::from(i.to_be_bytes().to_vec()));
            now = now + Duration::from_millis(1);
            while let Some(p) = net.poll_deliver(now) {
                got.push(u32::from_be_bytes([
                    p.data[0], p.data[1], p.data[2], p.data[3],
                ]));
            }
        }
        while let Some(t) = net.poll_timeout() {
            while let Some(p) = net.poll_deliver(t) {
                got.push(u32::from_be_bytes([
                    p.data[0], p.data[1], p.data[2], p.data[3],
                ]));
            }
        }
        (net.stats(), net.digest(), got)
    }

    #[test]
    fn a_seeded_lossy_run_replays_byte_identically() {
        let (a, da, ga) = run(7);
        let (b, db, gb) = run(7);
        assert_eq!(a, b);
        assert_eq!(da, db);
        assert_eq!(ga, gb);
        // About 10 % lost, some reordered, and reordering visible.
        assert!((150..=250).contains(&a.lost), "{a:?}");
        assert!(a.reordered > 50, "{a:?}");
        assert!(ga.windows(2).any(|w| w[1] < w[0]));
        assert_eq!(a.delivered, a.sent - a.lost + a.duplicated);
        let (_, dc, _) = run(8);
        assert_ne!(da, dc, "another seed gives another run");
    }

    #[test]
    fn the_rate_cap_spaces_datagrams_and_drops_the_tail() {
        let cfg = LinkConfig {
            rate: Some(1_000_000),
            queue_limit: 10,
            ..LinkConfig::delay(Duration::ZERO)
        };
        let mut net = Network::new(1, cfg);
        for _ in 0..20 {
            net.send(
                Instant::ZERO,
                addr(1),
                addr(2),
                Bytes::from(vec![0u8; 1000]),
            );
        }
        assert_eq!(net.stats().lost, 10);
        // 1,000 bytes at 1 MB/s: one every millisecond.
        assert_eq!(net.poll_timeout(), Some(Instant::from_millis(1)));
        let mut last = Instant::ZERO;
        while let Some(t) = net.poll_timeout() {
            assert!(t > last);
            last = t;
            assert!(net.poll_deliver(t).is_some());
        }
        assert_eq!(last, Instant::from_millis(10));
    }

    #[test]
    fn a_pipe_keeps_order_and_splits_anywhere() {
        let mut p = Pipe::new(3, Duration::from_millis(10), Some(100_000), 7);
        let data: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
        p.write(Instant::ZERO, Bytes::from(data.clone()));
        let mut got = Vec::new();
        let mut reads = 0;
        while let Some(t) = p.poll_timeout() {
            let b = p.read(t).expect("a segment is due");
            reads += 1;
            got.extend_from_slice(&b);
        }
        assert_eq!(got, data);
        assert!(reads > 100);
        // 5,000 bytes at 100 kB/s plus 10 ms.
        assert!(p.is_empty());
    }
}
