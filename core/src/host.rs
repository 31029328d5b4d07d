//! What every executor adapter's stream driver shares, written once: the
//! output queue with its write deadline, when to read, when to take bus
//! deliveries, when a connection is over, and per-address connection limits.
//!
//! Sans-IO like the rest of the crate: an adapter keeps only its runtime's
//! system calls (read, vectored write, readiness, a timer) and asks these
//! types what to do. The rules:
//!
//! * **Output.** Transmits are taken from the [`Conductor`] into an
//!   [`Outbox`] and written as they fit (vectored). A peer that takes no
//!   bytes for the write timeout is closed ([`Outbox::stalled`],
//!   [`Conductor::write_timed_out`]): a peer that stops reading costs a
//!   bounded amount and is dropped in bounded time, and its timers (idle,
//!   handshake, held requests) keep running while a write is pending.
//! * **Input.** The socket is read only while the outbox holds less than
//!   [`READ_PAUSE`] bytes and the session [wants input](Conductor::wants_input):
//!   a peer that pipelines requests and never reads fills its own socket
//!   buffers, not ours.
//! * **Deliveries** from the bus are taken only when the outbox is empty, so
//!   a slow reader lags on the bus and resumes at a key frame; one past the
//!   lag limit is evicted even while a write to it is pending
//!   ([`Conductor::check_lag`]). An outbox built with a merge window
//!   ([`Outbox::merging`]) takes them at most once per window, so the frames
//!   that came meanwhile go out in one vectored write: fewer, larger writes
//!   for a player in return for up to that much more latency.
//! * **End.** A connection is over when its session closed, or its peer
//!   half-closed and it is not playing, and everything queued was written.
//!
//! Memory per connection is bounded by a constant whatever the peer sends:
//! the read chunk, the session's own input and output bounds, and
//! [`READ_PAUSE`] plus one transmit in the outbox.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use core::time::Duration;

use crate::session::{BindError, Conductor, Session, SocketKind, Transmit};
use crate::time::Instant;

/// Bytes queued for a peer above which the driver stops reading from it.
pub const READ_PAUSE: usize = 16 * 1024;

/// Buffers one vectored write takes at most.
pub const WRITE_SLICES: usize = 16;

/// Datagrams an [`Outbox`] holds between two sends at most.
pub const MAX_DATAGRAMS_QUEUED: usize = 4096;

/// UDP sockets one stream session may own at most (RTSP: an RTP/RTCP pair
/// for each of four tracks).
pub const MAX_SESSION_SOCKETS: usize = 8;

/// Binds what a [`SocketRequest`](crate::session::SocketRequest) asks for:
/// one UDP socket, or an even/odd pair (RFC 3550 §11) found by trying
/// ports the system offers. `bind` binds one socket at an address and
/// returns it with its local address; `ip` is the interface to use when the
/// request names none (the session's own connection's). `held` is how many
/// the session owns already.
pub fn bind_sockets<T>(
    kind: SocketKind,
    ip: IpAddr,
    held: usize,
    mut bind: impl FnMut(SocketAddr) -> io::Result<(T, SocketAddr)>,
) -> Result<Vec<(T, SocketAddr)>, BindError> {
    let (ip, n) = match kind {
        SocketKind::Udp { ip: i } => (i.unwrap_or(ip), 1),
        SocketKind::UdpPair { ip: i } => (i.unwrap_or(ip), 2),
    };
    if held + n > MAX_SESSION_SOCKETS {
        return Err(BindError::Failed(format!(
            "a connection owns at most {MAX_SESSION_SOCKETS} sockets"
        )));
    }
    let fail = |e: io::Error| BindError::Failed(format!("cannot bind UDP on {ip}: {e}"));
    if n == 1 {
        let one = bind(SocketAddr::new(ip, 0)).map_err(fail)?;
        return Ok(vec![one]);
    }
    // An even port from the system, then the odd one above it; a few tries
    // when the neighbour is taken.
    for _ in 0..32 {
        let (a, addr) = bind(SocketAddr::new(ip, 0)).map_err(fail)?;
        let port = addr.port();
        if port % 2 == 1 || port == u16::MAX {
            drop(a);
            continue;
        }
        if let Ok(b) = bind(SocketAddr::new(ip, port + 1)) {
            return Ok(vec![(a, addr), b]);
        }
    }
    Err(BindError::Failed(format!(
        "no free even/odd UDP port pair on {ip}"
    )))
}

/// The UDP sockets a stream session asked for (of the adapter's socket type
/// `T`), with their local addresses: the answering of its socket requests
/// and the sending of its datagrams, once for every driver.
#[derive(Debug)]
pub struct OwnedSockets<T> {
    socks: Vec<(T, SocketAddr)>,
}

impl<T> Default for OwnedSockets<T> {
    fn default() -> Self {
        OwnedSockets { socks: Vec::new() }
    }
}

impl<T> OwnedSockets<T> {
    /// None yet.
    pub fn new() -> Self {
        OwnedSockets::default()
    }

    /// Whether the session owns none.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The sockets and their local addresses.
    pub fn iter(&self) -> impl Iterator<Item = &(T, SocketAddr)> {
        self.socks.iter()
    }

    /// The sockets and their local addresses, mutably (to deregister them).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (T, SocketAddr)> {
        self.socks.iter_mut()
    }

    /// How many the session owns.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Answers the conductor's socket requests with sockets made by `bind`
    /// (see [`bind_sockets`]) on `ip`, the interface of the session's own
    /// connection; returns whether there were any.
    pub fn answer<S: Session>(
        &mut self,
        conductor: &mut Conductor<S>,
        ip: IpAddr,
        now: Instant,
        mut bind: impl FnMut(SocketAddr) -> io::Result<(T, SocketAddr)>,
    ) -> bool {
        let mut any = false;
        while let Some(r) = conductor.poll_socket_request() {
            any = true;
            let answer = bind_sockets(r.kind, ip, self.socks.len(), &mut bind).map(|socks| {
                let addrs = socks.iter().map(|(_, a)| *a).collect();
                self.socks.extend(socks);
                addrs
            });
            conductor.sockets_bound(now, r.id, answer);
        }
        any
    }

    /// Sends the outbox's datagrams with `send`, each from the socket its
    /// transmit names (the first when it names none); the adapter's `send`
    /// drops one that would block, as the wire would.
    pub fn send(&self, out: &mut Outbox, mut send: impl FnMut(&T, &[u8], SocketAddr)) {
        while let Some(t) = out.pop_datagram() {
            let sock = self
                .socks
                .iter()
                .find(|(_, a)| Some(*a) == t.from)
                .or_else(|| self.socks.first());
            if let (Some((sock, _)), Some(to)) = (sock, t.to) {
                send(sock, &t.data, to);
            }
        }
    }
}

/// The default write timeout: a peer that takes no bytes for this long is
/// closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Room a drained queue of buffers keeps for the next writes: none. A
/// player's queue fills and drains once per merge window, and between
/// windows thousands of players should hold nothing for it (about 500 bytes
/// a player with room for 8 pieces in each of its two queues).
pub const QUEUE_KEPT: usize = 0;

/// Gives back what an empty queue grew to past [`QUEUE_KEPT`] (a player's
/// join at the GOP cache is one burst of pieces): thousands of idle
/// connections should not each keep room for their largest burst.
pub fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > QUEUE_KEPT {
        queue.shrink_to(QUEUE_KEPT);
    }
}

/// A connection's queued output, written as it fits, with the time it last
/// made progress.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Datagrams for the session's own UDP sockets, sent as soon as they
    /// are taken (a send that would block drops them, as the wire would).
    datagrams: VecDeque<Transmit>,
    /// Datagrams dropped because the queue was full.
    dropped: u64,
    /// When bytes were last taken by the peer, or the queue last filled from
    /// empty.
    progress: Option<Instant>,
    /// Deliveries are taken at most once per this many milliseconds (0:
    /// whenever they come).
    merge_ms: u32,
    /// Until when deliveries wait, after the last ones were taken.
    held: Option<Instant>,
    /// The last poll took deliveries: more may be taken at once (a window
    /// may bring more than one batch).
    draining: bool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// An empty outbox that takes bus deliveries at most once per `window`
    /// (whole milliseconds; zero is [`new`](Self::new)): what came during
    /// the window is written together, in one vectored write where it
    /// fits, instead of one write per frame.
    pub fn merging(window: Duration) -> Self {
        Outbox {
            merge_ms: u32::try_from(window.as_millis()).unwrap_or(u32::MAX),
            ..Outbox::default()
        }
    }

    /// Takes the conductor's transmits until [`READ_PAUSE`] bytes are
    /// queued: a session that makes its answers as they are taken (HTTP
    /// answers pipelined requests one by one) then waits until the peer has
    /// taken some, so the bound holds whatever the peer asked for. The
    /// driver calls it again after each write. Returns whether it stopped
    /// at the bound (the conductor may have more).
    pub fn fill<S: Session>(&mut self, conductor: &mut Conductor<S>, now: Instant) -> bool {
        while self.queued < READ_PAUSE {
            let Some(t) = conductor.poll_transmit() else {
                return false;
            };
            if t.to.is_some() {
                if self.datagrams.len() >= MAX_DATAGRAMS_QUEUED {
                    self.dropped += 1;
                } else {
                    self.datagrams.push_back(t);
                }
            } else {
                self.push(t.data, now);
            }
        }
        true
    }

    /// The next datagram the session wants sent from one of its own UDP
    /// sockets (`from` names which; `None`: the first).
    pub fn pop_datagram(&mut self) -> Option<Transmit> {
        self.datagrams.pop_front()
    }

    /// Datagrams dropped because the session made more than
    /// [`MAX_DATAGRAMS_QUEUED`] between two sends.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped
    }

    /// Queues bytes.
    pub fn push(&mut self, data: Bytes, now: Instant) {
        if data.is_empty() {
            return;
        }
        if self.queue.is_empty() {
            self.progress = Some(now);
        }
        self.queued += data.len();
        self.queue.push_back(data);
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// The queued buffers, in order, for one vectored write; returns how
    /// many of `dst` were filled.
    pub fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    /// Writes what fits: calls `write` (a vectored, non-blocking write) with
    /// the queued buffers until everything is written or it would block.
    /// `Err` when the peer is gone.
    pub fn flush_with(
        &mut self,
        now: impl Fn() -> Instant,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<()> {
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = self.slices(&mut slices);
            match write(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n, now()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes the conductor's transmits and writes what fits with `write`
    /// (as [`flush_with`](Self::flush_with)), until the socket would block
    /// or the conductor has nothing more.
    pub fn pump<S: Session>(
        &mut self,
        conductor: &mut Conductor<S>,
        now: impl Fn() -> Instant,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<()> {
        loop {
            let more = self.fill(conductor, now());
            self.flush_with(&now, &mut write)?;
            if !more || !self.is_empty() {
                return Ok(());
            }
        }
    }

    /// The peer took `n` bytes.
    pub fn advance(&mut self, mut n: usize, now: Instant) {
        if n > 0 {
            self.progress = Some(now);
        }
        self.queued -= n.min(self.queued);
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let k = n.min(front.len());
            front.advance(k);
            n -= k;
            if front.is_empty() {
                self.queue.pop_front();
            }
        }
        shrink_drained(&mut self.queue);
    }

    /// When the write timeout runs out if the peer takes nothing more.
    pub fn write_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        self.progress.map(|t| t + timeout)
    }

    /// Whether the peer has taken nothing for `timeout` with bytes queued.
    pub fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        self.write_deadline(timeout).is_some_and(|t| t <= now)
    }

    /// Whether the driver should read from the peer now.
    pub fn may_read<S: Session>(&self, conductor: &Conductor<S>, eof: bool) -> bool {
        !eof && self.queued < READ_PAUSE && conductor.wants_input()
    }

    /// Whether the driver should take bus deliveries now (the merge window
    /// aside: [`poll_deliveries`](Self::poll_deliveries) keeps that).
    pub fn may_deliver<S: Session>(&self, conductor: &Conductor<S>) -> bool {
        self.queue.is_empty() && conductor.is_playing()
    }

    /// Hands the conductor's ready deliveries to its session
    /// ([`Conductor::poll_deliveries`]) when [`may_deliver`](Self::may_deliver)
    /// says so and the merge window since the last ones has passed.
    /// `Pending` otherwise. Within the window nothing is registered with
    /// `cx` (a player is not woken for each frame only to wait), and
    /// [`next_wake`](Self::next_wake) names the window's end.
    pub fn poll_deliveries<S: Session>(
        &mut self,
        conductor: &mut Conductor<S>,
        cx: &mut std::task::Context<'_>,
        now: Instant,
    ) -> std::task::Poll<()> {
        let holding = self.held.is_some_and(|t| now < t);
        if !self.may_deliver(conductor) || (holding && !self.draining) {
            return std::task::Poll::Pending;
        }
        let r = if holding {
            // Taking the rest of this window's frames: what comes after
            // waits for the window's end, which `next_wake` names, so
            // nothing is registered to wake the driver before it.
            let mut quiet = std::task::Context::from_waker(std::task::Waker::noop());
            conductor.poll_deliveries(&mut quiet, now)
        } else {
            conductor.poll_deliveries(cx, now)
        };
        if r.is_ready() {
            if !holding && self.merge_ms > 0 {
                self.held = Some(now + Duration::from_millis(u64::from(self.merge_ms)));
            }
            self.draining = true;
        } else {
            self.draining = false;
            if !holding {
                self.held = None;
            }
        }
        r
    }

    /// Whether the connection is over: its session closed (or its peer
    /// half-closed and it is not playing) and everything queued was written.
    pub fn finished<S: Session>(&self, conductor: &Conductor<S>, eof: bool) -> bool {
        self.queue.is_empty() && (conductor.is_closed() || (eof && !conductor.is_playing()))
    }

    /// When the driver must wake next: the conductor's timers, the write
    /// deadline, or the end of the merge window once everything before it
    /// was written, whichever is first.
    pub fn next_wake<S: Session>(
        &self,
        conductor: &Conductor<S>,
        write_timeout: Duration,
    ) -> Option<Instant> {
        let merge = self.held.filter(|_| self.may_deliver(conductor));
        [
            conductor.poll_timeout(),
            self.write_deadline(write_timeout),
            merge,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Connections held at once per peer address (the accept path only; no
/// media path takes its lock). Off when built with `None`.
#[derive(Clone, Debug, Default)]
pub struct AddrLimit {
    max: Option<usize>,
    held: Held,
}

/// Connections held per address.
type Held = Arc<Mutex<HashMap<IpAddr, usize>>>;

impl AddrLimit {
    /// At most `max` connections per address; `None` for no limit.
    pub fn new(max: Option<usize>) -> Self {
        AddrLimit {
            max,
            held: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, held until the guard is dropped;
    /// `None` when the address already holds its limit.
    pub fn acquire(&self, ip: IpAddr) -> Option<AddrGuard> {
        let Some(max) = self.max else {
            return Some(AddrGuard { slot: None });
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddrGuard {
            slot: Some((self.held.clone(), ip)),
        })
    }

    /// Connections held from `ip` now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&ip).copied().unwrap_or(0)
    }
}

/// A connection's slot in an [`AddrLimit`]; dropping it frees the slot.
#[derive(Debug)]
pub struct AddrGuard {
    slot: Option<(Held, IpAddr)>,
}

impl Drop for AddrGuard {
    fn drop(&mut self) {
        if let Some((held, ip)) = self.slot.take() {
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = held.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&ip);
                }
            }
        }
    }
}

/// Rate-limits a repeated log line: at most one per `every`, with a count
/// of the ones held back.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    last: Mutex<Option<(Instant, u64)>>,
}

impl LogLimit {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        LogLimit {
            every,
            last: Mutex::new(None),
        }
    }

    /// `Some(held_back)` when a line may be logged now (`held_back` lines
    /// were suppressed since the last one), `None` to stay quiet.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((t, n)) if now < t + self.every => {
                *last = Some((t, n + 1));
                None
            }
            Some((_, n)) => {
                *last = Some((now, 0));
                Some(n)
            }
            None => {
                *last = Some((now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_advances_across_buffers_and_times_out() {
        let mut o = Outbox::new();
        let t0 = Instant::from_millis(1_000);
        let timeout = Duration::from_secs(10);
        assert_eq!(o.write_deadline(timeout), None);
        o.push(Bytes::from_static(b"abc"), t0);
        o.push(Bytes::from_static(b"defg"), Instant::from_millis(2_000));
        assert_eq!(o.queued(), 7);
        assert_eq!(o.write_deadline(timeout), Some(t0 + timeout));
        let mut s = [IoSlice::new(&[]); WRITE_SLICES];
        assert_eq!(o.slices(&mut s), 2);
        o.advance(4, Instant::from_millis(5_000));
        assert_eq!(o.queued(), 3);
        let mut s = [IoSlice::new(&[]); WRITE_SLICES];
        assert_eq!(o.slices(&mut s), 1);
        assert_eq!(&*s[0], b"efg");
        assert!(!o.stalled(Instant::from_millis(14_999), timeout));
        assert!(o.stalled(Instant::from_millis(15_000), timeout));
        o.advance(3, Instant::from_millis(16_000));
        assert!(o.is_empty());
        assert!(!o.stalled(Instant::from_millis(99_000), timeout));
    }

    #[test]
    fn a_drained_outbox_gives_back_its_burst() {
        let mut o = Outbox::new();
        let t = Instant::from_millis(1_000);
        for _ in 0..40 {
            o.push(Bytes::from_static(b"piece"), t);
        }
        assert!(o.queue.capacity() >= 40);
        o.advance(5 * 39, t);
        assert!(o.queue.capacity() >= 40, "kept while a piece is queued");
        o.advance(5, t);
        assert!(o.is_empty());
        assert_eq!(o.queue.capacity(), QUEUE_KEPT, "nothing kept once drained");
    }

    #[test]
    fn addr_limit_counts_per_address() {
        let l = AddrLimit::new(Some(2));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let g1 = l.acquire(a).expect("first");
        let _g2 = l.acquire(a).expect("second");
        assert!(l.acquire(a).is_none());
        assert!(l.acquire(b).is_some());
        drop(g1);
        assert_eq!(l.held(a), 1);
        assert!(l.acquire(a).is_some());
        let off = AddrLimit::new(None);
        let all: Vec<_> = (0..100).map(|_| off.acquire(a)).collect();
        assert!(all.iter().all(Option::is_some));
    }

    #[test]
    fn log_limit_holds_back_and_counts() {
        let l = LogLimit::new(Duration::from_secs(1));
        assert_eq!(l.allow(Instant::from_millis(0)), Some(0));
        assert_eq!(l.allow(Instant::from_millis(10)), None);
        assert_eq!(l.allow(Instant::from_millis(20)), None);
        assert_eq!(l.allow(Instant::from_millis(1_000)), Some(2));
    }
}
