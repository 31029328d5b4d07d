//! A lossy UDP relay on loopback for datagram protocols (SRT) against real
//! peers: this kernel has no `netem` qdisc, so drop, duplication,
//! reordering, delay and jitter between a peer and our server come from
//! here, seeded and counted per direction.
//!
//! Each client address gets its own upstream socket, as behind a NAT, so
//! several clients can share one relay. Threads, std only:
//!
//! - `relay-front` reads the clients' socket and opens a `relay-client`
//!   reader per new client address for the upstream's answers;
//! - `relay-to-upstream` and `relay-to-client` each own one direction's
//!   [`Profile`], its random stream and a heap of datagrams ordered by
//!   release time, and send each when it is due.
//!
//! A capture (see [`Builder::capture`]) records what each side *sent*,
//! before any loss, as records of
//! `[dir: u8][micros since the first record: u32 BE][len: u16 BE][bytes]`
//! with `dir` 0 for client → upstream and 1 for upstream → client.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a reader blocks before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(20);

/// The most datagrams a reordered one is held behind.
const REORDER_DEPTH: u64 = 3;

/// The longest a reordered datagram waits for later ones to overtake it.
const REORDER_HOLD: Duration = Duration::from_millis(30);

/// The capture's direction byte for client → upstream.
pub const DIR_TO_UPSTREAM: u8 = 0;

/// The capture's direction byte for upstream → client.
pub const DIR_TO_CLIENT: u8 = 1;

/// How one direction treats datagrams. The chances are independent per
/// datagram, drawn in the order: drop, duplicate, reorder, jitter.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Chance (0..=1) a datagram is dropped.
    pub drop: f64,
    /// Chance (0..=1) a datagram that is not dropped is sent twice.
    pub dup: f64,
    /// Chance (0..=1) a datagram is held back until the next one to three
    /// datagrams have been sent (or at most 30 ms), so they overtake it.
    pub reorder: f64,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Up to this much more delay per datagram, uniformly drawn. The order
    /// is kept (a datagram never leaves before the one received before
    /// it), as through a queue whose depth varies; each datagram still
    /// leaves within `delay + jitter` of its arrival.
    pub jitter: Duration,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::clean()
    }
}

impl Profile {
    /// Passes everything at once, unchanged.
    pub fn clean() -> Self {
        Profile {
            drop: 0.0,
            dup: 0.0,
            reorder: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
        }
    }

    /// Drops `p` of the datagrams.
    pub fn loss(p: f64) -> Self {
        Profile {
            drop: p,
            ..Profile::clean()
        }
    }

    /// Drops `p` of the datagrams and delays each by up to `jitter`.
    pub fn loss_jitter(p: f64, jitter: Duration) -> Self {
        Profile {
            drop: p,
            jitter,
            ..Profile::clean()
        }
    }

    /// Delays every datagram by `delay` plus up to `jitter`.
    pub fn delayed(delay: Duration, jitter: Duration) -> Self {
        Profile {
            delay,
            jitter,
            ..Profile::clean()
        }
    }
}

/// What one direction did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams received from the sending side.
    pub received: u64,
    /// Datagrams sent on, duplicates included.
    pub forwarded: u64,
    /// Datagrams dropped.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back to be overtaken.
    pub reordered: u64,
}

/// One direction's counters, shared with the threads.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl Counters {
    fn get(&self) -> Counts {
        Counts {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// splitmix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`; draws even when `p` is 0, so one profile
    /// field does not shift the others' random stream.
    fn chance(&mut self, p: f64) -> bool {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        u < p
    }

    /// Uniform in `0..=d`, to the nanosecond.
    fn upto(&mut self, d: Duration) -> Duration {
        let r = self.next();
        let span = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if span == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(r % span.saturating_add(1))
    }
}

/// Where a datagram goes and from which socket.
#[derive(Clone)]
enum Route {
    /// From the client's own upstream socket (connected to the upstream).
    Upstream(Arc<UdpSocket>),
    /// From the front socket to this client.
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Route {
    fn send(&self, data: &[u8]) {
        // A datagram the kernel refuses is as lost as a dropped one; the
        // peers see it the same way, so the error is not reported.
        let _ = match self {
            Route::Upstream(s) => s.send(data),
            Route::Client(s, to) => s.send_to(data, to),
        };
    }
}

/// A datagram as a reader received it.
struct Arrival {
    at: Instant,
    data: Vec<u8>,
    route: Route,
}

/// A datagram waiting in the heap for its release time.
struct Held {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
    route: Route,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A datagram held back until `behind` later ones have been scheduled.
struct Overtaken {
    held: Held,
    behind: u64,
}

/// One direction's shaping: a profile, its random stream and its queue.
struct Shaper {
    profile: Profile,
    rng: Rng,
    queue: BinaryHeap<Reverse<Held>>,
    overtaken: Vec<Overtaken>,
    seq: u64,
    /// The release time of the last datagram scheduled in order.
    last: Option<Instant>,
    counts: Arc<Counters>,
}

impl Shaper {
    fn new(profile: Profile, seed: u64, counts: Arc<Counters>) -> Self {
        Shaper {
            profile,
            rng: Rng(seed),
            queue: BinaryHeap::new(),
            overtaken: Vec::new(),
            seq: 0,
            last: None,
            counts,
        }
    }

    fn push(&mut self, at: Instant, data: Vec<u8>, route: Route) {
        self.seq += 1;
        self.queue.push(Reverse(Held {
            at,
            seq: self.seq,
            data,
            route,
        }));
    }

    /// Decides one arrival's fate and schedules what is left of it.
    fn take(&mut self, a: Arrival) {
        Counters::add(&self.counts.received);
        // Every draw is made for every datagram, so that the fate of one
        // does not depend on the fields that did not apply to it.
        let drop = self.rng.chance(self.profile.drop);
        let dup = self.rng.chance(self.profile.dup);
        let reorder = self.rng.chance(self.profile.reorder);
        let depth = 1 + self.rng.next() % REORDER_DEPTH;
        let jitter = self.rng.upto(self.profile.jitter);
        if drop {
            Counters::add(&self.counts.dropped);
            return;
        }
        let copies = if dup {
            Counters::add(&self.counts.duplicated);
            2
        } else {
            1
        };
        let mut at = a.at + self.profile.delay + jitter;
        if let Some(last) = self.last {
            at = at.max(last);
        }
        if reorder {
            // Held until `depth` later datagrams are scheduled, or until
            // the hold runs out (see `expire`).
            Counters::add(&self.counts.reordered);
            for _ in 0..copies {
                self.overtaken.push(Overtaken {
                    held: Held {
                        at: at + REORDER_HOLD,
                        seq: 0,
                        data: a.data.clone(),
                        route: a.route.clone(),
                    },
                    behind: depth,
                });
            }
            return;
        }
        self.last = Some(at);
        for _ in 1..copies {
            self.push(at, a.data.clone(), a.route.clone());
        }
        self.push(at, a.data, a.route);
        // One more datagram has passed those held back; the ones passed by
        // enough leave right after it (a later `seq` at the same time).
        let mut i = 0;
        while i < self.overtaken.len() {
            self.overtaken[i].behind -= 1;
            if self.overtaken[i].behind == 0 {
                let o = self.overtaken.swap_remove(i);
                self.push(at, o.held.data, o.held.route);
            } else {
                i += 1;
            }
        }
    }

    /// Moves held-back datagrams whose wait ran out into the heap.
    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.overtaken.len() {
            if self.overtaken[i].held.at <= now {
                let o = self.overtaken.swap_remove(i);
                self.push(o.held.at, o.held.data, o.held.route);
            } else {
                i += 1;
            }
        }
    }

    /// Sends what is due; returns when the next datagram is.
    fn release(&mut self, now: Instant) -> Option<Instant> {
        self.expire(now);
        while let Some(Reverse(h)) = self.queue.peek() {
            if h.at > now {
                break;
            }
            if let Some(Reverse(h)) = self.queue.pop() {
                h.route.send(&h.data);
                Counters::add(&self.counts.forwarded);
            }
        }
        let heap = self.queue.peek().map(|Reverse(h)| h.at);
        let held = self.overtaken.iter().map(|o| o.held.at).min();
        match (heap, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs one direction until `stop` is set or every sender is gone.
    fn run(mut self, rx: Receiver<Arrival>, stop: Arc<AtomicBool>) {
        let mut next: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let wait = next
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(POLL)
                .min(POLL);
            match rx.recv_timeout(wait) {
                Ok(a) => {
                    self.take(a);
                    // Take everything already waiting before sending.
                    while let Ok(a) = rx.try_recv() {
                        self.take(a);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Deliver what is queued, then end.
                    while let Some(t) = self.release(Instant::now()) {
                        std::thread::sleep(t.saturating_duration_since(Instant::now()));
                    }
                    return;
                }
            }
            next = self.release(Instant::now());
        }
    }
}

/// The capture file, shared by the readers of both directions.
struct Capture {
    out: BufWriter<File>,
    first: Option<Instant>,
    /// The first write error; later records are not written.
    error: Option<io::Error>,
}

impl Capture {
    fn record(&mut self, dir: u8, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let now = Instant::now();
        let first = *self.first.get_or_insert(now);
        // u32 microseconds cover 71 minutes, far beyond any capture here.
        let micros = u32::try_from(now.duration_since(first).as_micros()).unwrap_or(u32::MAX);
        // A UDP datagram over IPv4 carries at most 65,507 bytes.
        let Ok(len) = u16::try_from(data.len()) else {
            self.error = Some(io::Error::new(
                io::ErrorKind::InvalidData,
                "a datagram longer than 65535 bytes",
            ));
            return;
        };
        let mut head = [0u8; 7];
        head[0] = dir;
        head[1..5].copy_from_slice(&micros.to_be_bytes());
        head[5..7].copy_from_slice(&len.to_be_bytes());
        if let Err(e) = self
            .out
            .write_all(&head)
            .and_then(|()| self.out.write_all(data))
        {
            self.error = Some(e);
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

type SharedCapture = Option<Arc<Mutex<Capture>>>;

fn lock(c: &Mutex<Capture>) -> MutexGuard<'_, Capture> {
    // A reader that panicked leaves the file as it was; keep writing.
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Relay::builder`] starts: the two profiles, the seed, where the
/// clients' socket binds and an optional capture file.
#[derive(Clone, Debug)]
pub struct Builder {
    upstream: SocketAddr,
    listen: SocketAddr,
    to_upstream: Profile,
    to_client: Profile,
    seed: u64,
    capture: Option<PathBuf>,
}

impl Builder {
    /// How datagrams from clients to the upstream are treated (clean by
    /// default).
    pub fn upstream_profile(mut self, p: Profile) -> Self {
        self.to_upstream = p;
        self
    }

    /// How the upstream's answers to clients are treated (clean by
    /// default).
    pub fn client_profile(mut self, p: Profile) -> Self {
        self.to_client = p;
        self
    }

    /// The seed of both directions' random streams (0 by default).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where the clients' socket binds (`127.0.0.1:0` by default).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Records every datagram each side sent to `path` (truncated first).
    pub fn capture(mut self, path: impl AsRef<Path>) -> Self {
        self.capture = Some(path.as_ref().to_path_buf());
        self
    }

    /// Binds, opens the capture and starts the threads.
    pub fn start(self) -> io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind(self.listen)?);
        front.set_read_timeout(Some(POLL))?;
        let capture: SharedCapture = match &self.capture {
            Some(p) => Some(Arc::new(Mutex::new(Capture {
                out: BufWriter::new(File::create(p)?),
                first: None,
                error: None,
            }))),
            None => None,
        };
        let mut relay = Relay {
            addr: front.local_addr()?,
            stop: Arc::new(AtomicBool::new(false)),
            front: None,
            clients: Arc::default(),
            shapers: Vec::new(),
            counts: [Arc::default(), Arc::default()],
            capture: capture.clone(),
        };
        // A failed spawn below drops `relay`, which stops what started.
        let (up_tx, up_rx) = mpsc::channel();
        let (down_tx, down_rx) = mpsc::channel();
        let seeds = [self.seed, self.seed ^ 0xD1B5_4A32_D192_ED03];
        for (dir, (profile, rx)) in [(self.to_upstream, up_rx), (self.to_client, down_rx)]
            .into_iter()
            .enumerate()
        {
            let shaper = Shaper::new(profile, seeds[dir], relay.counts[dir].clone());
            let stop = relay.stop.clone();
            let name = ["relay-to-upstream", "relay-to-client"][dir];
            relay.shapers.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || shaper.run(rx, stop))?,
            );
        }
        let front_reader = Front {
            socket: front,
            upstream: self.upstream,
            stop: relay.stop.clone(),
            to_upstream: up_tx,
            to_client: down_tx,
            capture,
            clients: relay.clients.clone(),
        };
        relay.front = Some(
            std::thread::Builder::new()
                .name("relay-front".into())
                .spawn(move || front_reader.run())?,
        );
        Ok(relay)
    }
}

/// The clients' side: reads the front socket, opens an upstream socket
/// and its reader per new client.
struct Front {
    socket: Arc<UdpSocket>,
    upstream: SocketAddr,
    stop: Arc<AtomicBool>,
    to_upstream: Sender<Arrival>,
    to_client: Sender<Arrival>,
    capture: SharedCapture,
    clients: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Whether a receive error only means "nothing yet" or "try again".
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            // An ICMP port unreachable from an earlier send (the upstream
            // not listening yet, or gone): the socket stays usable.
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

impl Front {
    fn run(self) {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        let mut routes: Vec<(SocketAddr, Route)> = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if transient(&e) => continue,
                Err(_) => {
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            let at = Instant::now();
            if let Some(c) = &self.capture {
                lock(c).record(DIR_TO_UPSTREAM, &buf[..n]);
            }
            if known.insert(from) {
                match self.open(from) {
                    Ok(route) => routes.push((from, route)),
                    // No socket for this client: its datagrams are lost.
                    Err(_) => continue,
                }
            }
            let Some((_, route)) = routes.iter().find(|(a, _)| *a == from) else {
                continue;
            };
            let a = Arrival {
                at,
                data: buf[..n].to_vec(),
                route: route.clone(),
            };
            if self.to_upstream.send(a).is_err() {
                return;
            }
        }
    }

    /// The upstream socket of a new client and the reader of its answers.
    fn open(&self, client: SocketAddr) -> io::Result<Route> {
        let bind: SocketAddr = if self.upstream.is_ipv4() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(self.upstream)?;
        sock.set_read_timeout(Some(POLL))?;
        let sock = Arc::new(sock);
        let back = Route::Client(self.socket.clone(), client);
        let (s, stop, tx, capture) = (
            sock.clone(),
            self.stop.clone(),
            self.to_client.clone(),
            self.capture.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("relay-client".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let n = match s.recv(&mut buf) {
                        Ok(n) => n,
                        Err(e) if transient(&e) => continue,
                        Err(_) => {
                            std::thread::sleep(POLL);
                            continue;
                        }
                    };
                    let at = Instant::now();
                    if let Some(c) = &capture {
                        lock(c).record(DIR_TO_CLIENT, &buf[..n]);
                    }
                    let a = Arrival {
                        at,
                        data: buf[..n].to_vec(),
                        route: back.clone(),
                    };
                    if tx.send(a).is_err() {
                        return;
                    }
                }
            })?;
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        Ok(Route::Upstream(sock))
    }
}

/// A running relay; stops and joins its threads on drop (or
/// [`Relay::finish`], which also reports capture errors).
pub struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    front: Option<JoinHandle<()>>,
    clients: Arc<Mutex<Vec<JoinHandle<()>>>>,
    shapers: Vec<JoinHandle<()>>,
    counts: [Arc<Counters>; 2],
    capture: SharedCapture,
}

impl Relay {
    /// A relay on `127.0.0.1:0` to `upstream`: datagrams from clients go
    /// through `to_upstream`, the upstream's answers through `to_client`;
    /// `seed` makes both directions' choices reproducible.
    pub fn start(
        upstream: SocketAddr,
        to_upstream: Profile,
        to_client: Profile,
        seed: u64,
    ) -> io::Result<Relay> {
        Relay::builder(upstream)
            .upstream_profile(to_upstream)
            .client_profile(to_client)
            .seed(seed)
            .start()
    }

    /// A relay to `upstream`, clean both ways until configured.
    pub fn builder(upstream: SocketAddr) -> Builder {
        Builder {
            upstream,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            to_upstream: Profile::clean(),
            to_client: Profile::clean(),
            seed: 0,
            capture: None,
        }
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each direction did so far: `[client → upstream, upstream →
    /// client]`.
    pub fn counts(&self) -> [Counts; 2] {
        [self.counts[0].get(), self.counts[1].get()]
    }

    /// Stops the threads, flushes the capture and reports the first error
    /// writing it.
    pub fn finish(mut self) -> io::Result<()> {
        self.stop_threads();
        match self.capture.take() {
            Some(c) => lock(&c).finish(),
            None => Ok(()),
        }
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The front first, so that no client reader starts after the rest
        // are joined.
        if let Some(t) = self.front.take() {
            let _ = t.join();
        }
        let readers = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|e| e.into_inner()));
        for t in readers {
            let _ = t.join();
        }
        for t in self.shapers.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop_threads();
        if let Some(c) = self.capture.take() {
            // Drop cannot report; `finish` does.
            let _ = lock(&c).finish();
        }
    }
}
