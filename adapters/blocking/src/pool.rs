//! The acceptor and the fixed pool of worker threads.

use arcly_core::bus::CloseReason;
use arcly_core::engine::Engine;
use arcly_core::host::{AddrGuard, AddrLimit, LogLimit, Outbox, OwnedSockets, WRITE_TIMEOUT};
use arcly_core::session::{Conductor, ConnContext, Input, Session};
use arcly_core::time::Instant;
use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker as MioWaker};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

const WAKE: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);
/// Reads per connection per turn, so one flooding peer cannot starve the
/// others on its worker.
const READS_PER_TURN: usize = 16;
const READ_CHUNK: usize = 16 * 1024;
/// The largest datagram read on a session's own UDP sockets.
const MAX_DATAGRAM: usize = 65_536;
/// Sessions' own UDP sockets get tokens from here down, far above the
/// connections' keys.
const UDP_TOKENS: usize = usize::MAX / 2;

pub use arcly_host::Clock;

/// Limits of one listener.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// Worker threads (fixed for the life of the listener).
    pub workers: usize,
    /// Connections held at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections held at once from one address (`None`: no limit, so
    /// loopback benches work); more are accepted and closed at once.
    pub max_connections_per_ip: Option<usize>,
    /// A peer that takes no bytes for this long while output is queued is
    /// closed (its idle, handshake and lag limits keep running meanwhile).
    pub write_timeout: Duration,
    /// A player's bus deliveries are taken at most once per this long and
    /// written together (zero: each as it comes). Fewer, larger writes
    /// for up to this much more latency; see
    /// [`Outbox::merging`](arcly_core::host::Outbox::merging).
    pub merge_writes: Duration,
    /// A connection must publish or play within this time (`None`: no limit).
    pub handshake_timeout: Option<Duration>,
    /// A connection that is not playing and sends nothing for this long is
    /// closed.
    pub idle_timeout: Duration,
    /// How long live connections get after shutdown before they are dropped.
    pub shutdown_deadline: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            workers: 2,
            max_connections: 10_000,
            max_connections_per_ip: None,
            write_timeout: WRITE_TIMEOUT,
            merge_writes: Duration::ZERO,
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(5),
        }
    }
}

/// A log sink shared by connections.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Triggers shutdown of a [`serve`] call from any thread.
#[derive(Clone, Default)]
pub struct ShutdownHandle {
    inner: Arc<ShutdownInner>,
}

#[derive(Default)]
struct ShutdownInner {
    fired: AtomicBool,
    wakers: Mutex<Vec<Arc<MioWaker>>>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("fired", &self.is_triggered())
            .finish()
    }
}

impl ShutdownHandle {
    /// A handle that has not fired.
    pub fn new() -> Self {
        ShutdownHandle::default()
    }

    /// Fires: `serve` stops accepting, closes its connections, and returns.
    pub fn trigger(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        for w in self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = w.wake();
        }
    }

    /// Whether it has fired.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    pub(crate) fn watch(&self, w: Arc<MioWaker>) {
        self.inner
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w.clone());
        if self.is_triggered() {
            let _ = w.wake();
        }
    }
}

/// Queues a connection for its worker and wakes the worker when the bus has
/// data for it (std's channel is lock-free on the send side, so the
/// publisher's wake-ups take no lock).
struct BusWake {
    key: usize,
    flag: Arc<AtomicBool>,
    queue: mpsc::Sender<usize>,
    poller: Arc<MioWaker>,
}

impl Wake for BusWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.flag.swap(true, Ordering::AcqRel) {
            let _ = self.queue.send(self.key);
            let _ = self.poller.wake();
        }
    }
}

struct Conn<S> {
    sock: TcpStream,
    conductor: Conductor<S>,
    out: Outbox,
    /// Its slot in the per-address limit, freed with the connection.
    _slot: AddrGuard,
    woken: Arc<AtomicBool>,
    waker: Waker,
    /// The deadline its timer-heap entry was made for.
    deadline: Option<Instant>,
    /// The UDP sockets its session asked for, their addresses and tokens.
    udp: OwnedSockets<(UdpSocket, Token)>,
    eof: bool,
    writable_interest: bool,
}

struct Worker {
    inbox: Mutex<Vec<(TcpStream, std::net::SocketAddr, AddrGuard)>>,
    waker: Arc<MioWaker>,
}

/// Accepts on `listener` and serves each connection with a session made by
/// `make`, on `cfg.workers` threads, until `shutdown` fires. Blocks the
/// caller; when it returns, every worker thread has been joined.
pub fn serve<S, F>(
    listener: std::net::TcpListener,
    engine: Engine,
    make: F,
    cfg: ListenerConfig,
    clock: Clock,
    shutdown: ShutdownHandle,
    log: Log,
) -> io::Result<()>
where
    S: Session + Send + 'static,
    F: Fn(Instant) -> S + Send + Sync + 'static,
{
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let accept_waker = Arc::new(MioWaker::new(poll.registry(), WAKE)?);
    shutdown.watch(accept_waker);
    let make = Arc::new(make);
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let per_ip = AddrLimit::new(cfg.max_connections_per_ip);
    let malformed_log = Arc::new(LogLimit::new(Duration::from_secs(1)));
    let mut workers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..cfg.workers.max(1) {
        let wpoll = Poll::new()?;
        let waker = Arc::new(MioWaker::new(wpoll.registry(), WAKE)?);
        shutdown.watch(waker.clone());
        let worker = Arc::new(Worker {
            inbox: Mutex::new(Vec::new()),
            waker,
        });
        workers.push(worker.clone());
        let (engine, make, cfg, shutdown, log, live, malformed_log) = (
            engine.clone(),
            make.clone(),
            cfg.clone(),
            shutdown.clone(),
            log.clone(),
            live.clone(),
            malformed_log.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("arcly-worker-{i}"))
                .spawn(move || {
                    run_worker(
                        wpoll,
                        worker,
                        engine,
                        &*make,
                        cfg,
                        clock,
                        (shutdown, log, live, malformed_log),
                    )
                })?,
        );
    }
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    while !shutdown.is_triggered() {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() != io::ErrorKind::Interrupted {
                log(format!("poll failed: {e}"));
            }
        }
        loop {
            match listener.accept() {
                Ok((sock, peer)) => {
                    if live.load(Ordering::Acquire) >= cfg.max_connections {
                        continue;
                    }
                    let Some(slot) = per_ip.acquire(peer.ip()) else {
                        continue;
                    };
                    live.fetch_add(1, Ordering::AcqRel);
                    let w = &workers[next % workers.len()];
                    next = next.wrapping_add(1);
                    w.inbox
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((sock, peer, slot));
                    let _ = w.waker.wake();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log(format!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
    }
    drop(listener);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// What a worker shares with the acceptor and the other workers.
type Shared = (
    ShutdownHandle,
    Log,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<LogLimit>,
);

fn run_worker<S, F>(
    mut poll: Poll,
    me: Arc<Worker>,
    engine: Engine,
    make: &F,
    cfg: ListenerConfig,
    clock: Clock,
    (shutdown, log, live, malformed_log): Shared,
) where
    S: Session,
    F: Fn(Instant) -> S,
{
    let mut conns: HashMap<usize, Conn<S>> = HashMap::new();
    let mut next_key = 0usize;
    let mut events = Events::with_capacity(256);
    let mut shutdown_at: Option<std::time::Instant> = None;
    let mut rbuf = BytesMut::new();
    // Datagrams of sessions' own sockets are read here (allocated with the
    // first such socket).
    let mut dbuf: Vec<u8> = Vec::new();
    // Deadlines in a heap, O(log n) a wake-up: an entry whose connection's
    // deadline has moved since is stale and skipped.
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    // Connections with bus data or more to read, queued by their wakers.
    let (queue_tx, queue_rx) = mpsc::channel::<usize>();
    // Tokens of sessions' own UDP sockets (from the top of the token space
    // down) and the connection each belongs to.
    let mut udp_owner: HashMap<usize, usize> = HashMap::new();
    let mut next_udp = UDP_TOKENS;
    loop {
        let now = clock.now();
        while let Some(Reverse((t, key))) = timers.peek() {
            match conns.get(key) {
                Some(c) if c.deadline == Some(*t) => break,
                _ => {
                    timers.pop();
                }
            }
        }
        let deadline = timers.peek().map(|Reverse((t, _))| *t);
        let timeout = match deadline {
            Some(d) => Duration::from_micros(d.as_micros().saturating_sub(now.as_micros())),
            None => Duration::from_secs(1),
        }
        .min(Duration::from_secs(1));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                log(format!("poll failed: {e}"));
            }
        }
        let mut ready: Vec<usize> = events
            .iter()
            .filter(|e| e.token() != WAKE)
            .map(|e| udp_owner.get(&e.token().0).copied().unwrap_or(e.token().0))
            .collect();
        // New connections.
        let arrivals: Vec<_> =
            std::mem::take(&mut *me.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for (mut sock, peer, slot) in arrivals {
            let key = next_key;
            next_key = next_key.wrapping_add(1) % (usize::MAX - 2);
            if poll
                .registry()
                .register(&mut sock, Token(key), Interest::READABLE)
                .is_err()
            {
                live.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let _ = sock.set_nodelay(true);
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
            let woken = Arc::new(AtomicBool::new(false));
            let waker = Waker::from(Arc::new(BusWake {
                key,
                flag: woken.clone(),
                queue: queue_tx.clone(),
                poller: me.waker.clone(),
            }));
            conns.insert(
                key,
                Conn {
                    sock,
                    conductor: Conductor::new(engine.clone(), make(now), ctx),
                    out: Outbox::merging(cfg.merge_writes),
                    _slot: slot,
                    woken,
                    waker,
                    deadline: None,
                    udp: OwnedSockets::new(),
                    eof: false,
                    writable_interest: false,
                },
            );
            ready.push(key);
        }
        if shutdown.is_triggered() && shutdown_at.is_none() {
            shutdown_at = Some(std::time::Instant::now() + cfg.shutdown_deadline);
            let now = clock.now();
            for c in conns.values_mut() {
                c.conductor.close(now, CloseReason::Shutdown);
            }
            ready.extend(conns.keys().copied());
        }
        let now = clock.now();
        while let Some(Reverse((t, key))) = timers.peek().copied() {
            if t > now {
                break;
            }
            timers.pop();
            if let Some(c) = conns.get_mut(&key) {
                if c.deadline == Some(t) {
                    c.deadline = None;
                    ready.push(key);
                }
            }
        }
        for key in queue_rx.try_iter() {
            if let Some(c) = conns.get(&key) {
                c.woken.store(false, Ordering::Release);
                ready.push(key);
            }
        }
        ready.sort_unstable();
        ready.dedup();
        let mut gone = Vec::new();
        for key in ready {
            let Some(c) = conns.get_mut(&key) else {
                continue;
            };
            let mut done = turn(c, &clock, &mut rbuf, &mut dbuf, &log, cfg.write_timeout);
            if !done {
                let bind = |at: SocketAddr| -> io::Result<((UdpSocket, Token), SocketAddr)> {
                    let mut u = UdpSocket::bind(at)?;
                    let addr = u.local_addr()?;
                    next_udp -= 1;
                    let token = Token(next_udp);
                    poll.registry()
                        .register(&mut u, token, Interest::READABLE)?;
                    Ok(((u, token), addr))
                };
                let ip = c
                    .sock
                    .local_addr()
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
                if c.udp.answer(&mut c.conductor, ip, clock.now(), bind) {
                    for ((_, t), _) in c.udp.iter() {
                        udp_owner.insert(t.0, key);
                    }
                    done = turn(c, &clock, &mut rbuf, &mut dbuf, &log, cfg.write_timeout);
                }
            }
            if done {
                gone.push(key);
            } else {
                let next = c.out.next_wake(&c.conductor, cfg.write_timeout);
                if next != c.deadline {
                    c.deadline = next;
                    if let Some(t) = next {
                        timers.push(Reverse((t, key)));
                    }
                }
                let want_write = !c.out.is_empty();
                if want_write != c.writable_interest {
                    let interest = if want_write {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    let _ = poll
                        .registry()
                        .reregister(&mut c.sock, Token(key), interest);
                    c.writable_interest = want_write;
                }
            }
        }
        for key in gone {
            if let Some(mut c) = conns.remove(&key) {
                for ((u, t), _) in c.udp.iter_mut() {
                    let _ = poll.registry().deregister(u);
                    udp_owner.remove(&t.0);
                }
                let _ = poll.registry().deregister(&mut c.sock);
                let _ = c.sock.shutdown(std::net::Shutdown::Both);
                live.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Some(at) = shutdown_at {
            if conns.is_empty() || std::time::Instant::now() >= at {
                live.fetch_sub(conns.len(), Ordering::AcqRel);
                return;
            }
        }
    }
}

/// One turn of one connection. Returns whether it is finished.
fn turn<S: Session>(
    c: &mut Conn<S>,
    clock: &Clock,
    rbuf: &mut BytesMut,
    dbuf: &mut Vec<u8>,
    log: &Log,
    write_timeout: Duration,
) -> bool {
    if flush(c, clock).is_err() {
        return true;
    }
    // Read what is there (edge-triggered: until it would block, or a turn's
    // worth, after which the connection is revisited), while little is
    // queued for the peer and the session wants input.
    let mut paused = false;
    for i in 0..=READS_PER_TURN {
        if !c.out.may_read(&c.conductor, c.eof) {
            paused = !c.eof && !c.conductor.is_closed();
            break;
        }
        if i == READS_PER_TURN {
            c.waker.wake_by_ref();
            break;
        }
        let start = rbuf.len();
        rbuf.resize(start + READ_CHUNK, 0);
        let r = c.sock.read(&mut rbuf[start..]);
        rbuf.truncate(start + *r.as_ref().unwrap_or(&0));
        match r {
            Ok(0) => {
                c.eof = true;
                c.conductor.handle_input(clock.now(), Input::Eof);
                break;
            }
            Ok(_) => {
                let data = rbuf.split();
                c.conductor.handle_input(clock.now(), Input::Stream(data));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                c.eof = true;
                c.conductor.handle_input(clock.now(), Input::Eof);
                break;
            }
        }
        if pump(c, clock).is_err() {
            return true;
        }
    }
    if !c.udp.is_empty() {
        if dbuf.len() < MAX_DATAGRAM {
            dbuf.resize(MAX_DATAGRAM, 0);
        }
        read_datagrams(c, clock, dbuf);
        if pump(c, clock).is_err() {
            return true;
        }
    }
    let now = clock.now();
    if c.out.stalled(now, write_timeout) {
        c.conductor.write_timed_out(now, write_timeout);
        while let Some(line) = c.conductor.poll_log() {
            log(line);
        }
        return true;
    }
    if c.conductor.poll_timeout().is_some_and(|t| t <= now) {
        c.conductor.handle_timeout(now);
    }
    let waker = c.waker.clone();
    let mut cx = Context::from_waker(&waker);
    let _ = c.conductor.poll_session(&mut cx, clock.now());
    if pump(c, clock).is_err() {
        return true;
    }
    if !c.out.is_empty() && c.conductor.check_lag(clock.now()) && pump(c, clock).is_err() {
        return true;
    }
    // Deliveries only when the previous ones were written.
    while c
        .out
        .poll_deliveries(&mut c.conductor, &mut cx, clock.now())
        .is_ready()
    {
        if pump(c, clock).is_err() {
            return true;
        }
    }
    while let Some(line) = c.conductor.poll_log() {
        log(line);
    }
    // Reading was paused for queued output that has since been written:
    // the readable edge may already have passed, so come back to read.
    if paused && c.out.may_read(&c.conductor, c.eof) {
        c.waker.wake_by_ref();
    }
    c.out.finished(&c.conductor, c.eof)
}

/// Takes the conductor's transmits and writes what fits; sends its
/// datagrams from its own sockets (one that would block is dropped, as the
/// wire would).
fn pump<S: Session>(c: &mut Conn<S>, clock: &Clock) -> io::Result<()> {
    let sock = &mut c.sock;
    c.out
        .pump(&mut c.conductor, || clock.now(), |b| sock.write_vectored(b))?;
    c.udp.send(&mut c.out, |(u, _), data, to| {
        let _ = u.send_to(data, to);
    });
    Ok(())
}

/// Hands the datagrams waiting on the session's own sockets to it
/// (edge-triggered: until each would block, or a turn's worth).
fn read_datagrams<S: Session>(c: &mut Conn<S>, clock: &Clock, buf: &mut [u8]) {
    for ((u, _), local) in c.udp.iter() {
        for _ in 0..READS_PER_TURN {
            match u.recv_from(buf) {
                Ok((n, from)) => {
                    let data = BytesMut::from(&buf[..n]);
                    let local = *local;
                    c.conductor
                        .handle_input(clock.now(), Input::Datagram { from, local, data });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier send.
                Err(_) => break,
            }
        }
    }
}

/// Writes what fits without blocking. `Err` when the peer is gone.
fn flush<S: Session>(c: &mut Conn<S>, clock: &Clock) -> io::Result<()> {
    let sock = &mut c.sock;
    c.out.flush_with(|| clock.now(), |b| sock.write_vectored(b))
}
