//! Many peers on one socket: the [`Endpoint`] contract a datagram protocol
//! implements (SRT on one UDP port, WebRTC on another), and the
//! [`EndpointHost`] that runs its sessions, after quinn-proto's
//! `Endpoint::handle` → `DatagramEvent`.
//!
//! The protocol crate says how a datagram is routed ([`Endpoint::route`]:
//! SRT by destination socket id, WebRTC by ICE username or 5-tuple), answers
//! what needs no session itself (SRT induction with a SYN cookie, a STUN
//! binding for an unknown peer) and makes a session when a handshake
//! completes ([`Endpoint::handle_unrouted`]). The host machinery is here,
//! once for every protocol and adapter:
//!
//! * routing costs one hash look-up per datagram, whatever the number of
//!   sessions;
//! * timers sit in a heap: a wake-up costs O(log n), not a scan;
//! * a playing session's bus wake-ups queue its key on a lock-free channel,
//!   so the host visits only the sessions that have frames ready;
//! * transmits are drained from the sessions that were touched.
//!
//! The adapter owns the socket: it hands every datagram to
//! [`EndpointHost::handle_datagram`], sends what
//! [`EndpointHost::poll_transmit`] yields, calls
//! [`EndpointHost::handle_timeout`] at [`EndpointHost::poll_timeout`] and
//! [`EndpointHost::poll_deliveries`] when the waker it registered fires.

use core::hash::Hash;
use core::net::SocketAddr;
use core::task::{Context, Poll, Waker};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::Wake;

use bytes::BytesMut;

use crate::bus::CloseReason;
use crate::engine::Engine;
use crate::session::{Conductor, ConnContext, Input, Session, Transmit};
use crate::time::Instant;

/// Delivery batches one session gets per [`EndpointHost::poll_deliveries`]
/// visit, so one busy session cannot starve the others.
const DELIVERY_ROUNDS: usize = 4;

/// Where a datagram goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<K> {
    /// To the session with this key, if there is one (else to the endpoint).
    Session(K),
    /// To the endpoint itself (a handshake, a stateless request).
    Endpoint,
    /// Nowhere: not this protocol's, or malformed.
    Drop,
}

/// What the endpoint made of a datagram no session took.
#[derive(Debug)]
pub enum Unrouted<K, S> {
    /// Answered (or ignored) without a session; answers are in
    /// [`Endpoint::poll_transmit`].
    Handled,
    /// A handshake completed: a new session under `key`; `input` (if any) is
    /// handed to it at once.
    Accept {
        /// Its routing key.
        key: K,
        /// The session.
        session: S,
        /// A datagram for it.
        input: Option<BytesMut>,
    },
}

/// A datagram protocol's listening socket, sans-IO.
pub trait Endpoint {
    /// The routing key of a session.
    type Key: Clone + Eq + Hash + core::fmt::Debug + Send + Sync + 'static;
    /// The sessions it makes.
    type Session: Session;

    /// Where a datagram that arrived on `local` from `from` goes; looks at
    /// the bytes only.
    fn route(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
    ) -> Route<Self::Key>;

    /// A datagram routed to the endpoint, or to a key no session holds.
    fn handle_unrouted(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) -> Unrouted<Self::Key, Self::Session>;

    /// A session ended (its key may be reused).
    fn session_closed(&mut self, key: &Self::Key) {
        let _ = key;
    }

    /// Stateless answers to send.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// When the endpoint's own timers (e.g. cookie rotation) are due.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The endpoint's own timers.
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }
}

/// Counts of what an [`EndpointHost`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams routed to a session.
    pub routed: u64,
    /// Datagrams the endpoint itself handled.
    pub unrouted: u64,
    /// Datagrams dropped by the route.
    pub dropped: u64,
    /// Sessions made.
    pub accepted: u64,
    /// Sessions ended.
    pub closed: u64,
}

struct Entry<S> {
    conductor: Conductor<S>,
    /// Its bus waker: queues the key for `poll_deliveries`.
    waker: Waker,
    /// The deadline its heap entry was made for.
    deadline: Option<Instant>,
    /// Queued in `dirty`.
    dirty: bool,
    /// The peer it was accepted from.
    peer: SocketAddr,
    /// Its id in the host's list ([`EndpointHost::with_ids`]).
    id: Option<u64>,
    /// Datagram bytes it was handed and sent.
    bytes_in: u64,
    bytes_out: u64,
}

/// One of an [`EndpointHost`]'s sessions, as an API shows it
/// ([`EndpointHost::sessions`]).
#[derive(Debug)]
pub struct EndpointSession<'a, K> {
    /// The endpoint's key for it.
    pub key: &'a K,
    /// The peer it was accepted from.
    pub peer: SocketAddr,
    /// Its id in the host's list ([`EndpointHost::with_ids`]).
    pub id: Option<u64>,
    /// The stream it publishes or plays, once it does.
    pub stream: Option<(&'a crate::engine::StreamKey, crate::engine::Action)>,
    /// Datagram bytes received from its peer.
    pub bytes_in: u64,
    /// Datagram bytes sent to its peer.
    pub bytes_out: u64,
}

/// Queues a session's key when the bus has frames for it, and wakes the
/// adapter.
struct ReadyWake<K> {
    key: K,
    queued: AtomicBool,
    tx: mpsc::Sender<K>,
    host: Arc<HostSignal>,
}

/// Tells the adapter that some session has deliveries ready.
#[derive(Default)]
struct HostSignal {
    ready: AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl<K: Clone + Send + Sync + 'static> Wake for ReadyWake<K> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(self.key.clone());
            self.host.ready.store(true, Ordering::Release);
            self.host.waker.wake();
        }
    }
}

/// A session's deadline in the timer heap, ordered by time then by when it
/// was set.
struct Timer<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Timer<K> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<K> Eq for Timer<K> {}
impl<K> PartialOrd for Timer<K> {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<K> Ord for Timer<K> {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Runs an [`Endpoint`]'s sessions; see the module documentation.
pub struct EndpointHost<E: Endpoint> {
    endpoint: E,
    engine: Engine,
    ctx: ConnContext,
    sessions: HashMap<E::Key, Entry<E::Session>>,
    flags: HashMap<E::Key, Arc<ReadyWake<E::Key>>>,
    timers: BinaryHeap<Reverse<Timer<E::Key>>>,
    timer_seq: u64,
    dirty: VecDeque<E::Key>,
    ready_tx: mpsc::Sender<E::Key>,
    ready_rx: mpsc::Receiver<E::Key>,
    host_waker: Arc<HostSignal>,
    log: VecDeque<String>,
    stats: EndpointStats,
    /// Gives each new session its id in the host's list, if set.
    ids: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl<E: Endpoint> core::fmt::Debug for EndpointHost<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EndpointHost")
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<E: Endpoint> EndpointHost<E> {
    /// A host for `endpoint`'s sessions against `engine`; `ctx` is the
    /// template of each session's context (its peer is filled in).
    pub fn new(endpoint: E, engine: Engine, ctx: ConnContext) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel();
        EndpointHost {
            endpoint,
            engine,
            ctx,
            sessions: HashMap::new(),
            flags: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            dirty: VecDeque::new(),
            ready_tx,
            ready_rx,
            host_waker: Arc::default(),
            log: VecDeque::new(),
            stats: EndpointStats::default(),
            ids: None,
        }
    }

    /// Each new session takes its id from `ids` (the host's list of
    /// sessions): its log lines begin with it, and
    /// [`sessions`](Self::sessions) shows it.
    pub fn with_ids(mut self, ids: Arc<dyn Fn() -> u64 + Send + Sync>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &E {
        &self.endpoint
    }

    /// Sessions running.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session runs.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// What it did so far.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// The session under `key`.
    pub fn session(&self, key: &E::Key) -> Option<&Conductor<E::Session>> {
        self.sessions.get(key).map(|e| &e.conductor)
    }

    /// A datagram that arrived on `local` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) {
        let key = match self.endpoint.route(now, local, from, &data) {
            Route::Drop => {
                self.stats.dropped += 1;
                return;
            }
            Route::Session(k) if self.sessions.contains_key(&k) => k,
            Route::Session(_) | Route::Endpoint => {
                self.stats.unrouted += 1;
                match self.endpoint.handle_unrouted(now, local, from, data) {
                    Unrouted::Handled => {}
                    Unrouted::Accept {
                        key,
                        session,
                        input,
                    } => {
                        self.accept(now, from, key.clone(), session);
                        if let Some(data) = input {
                            self.input(now, &key, local, from, data);
                        }
                    }
                }
                return;
            }
        };
        self.stats.routed += 1;
        self.input(now, &key, local, from, data);
    }

    fn input(
        &mut self,
        now: Instant,
        key: &E::Key,
        local: SocketAddr,
        from: SocketAddr,
        data: BytesMut,
    ) {
        if let Some(e) = self.sessions.get_mut(key) {
            e.bytes_in += data.len() as u64;
            e.conductor
                .handle_input(now, Input::Datagram { from, local, data });
            self.touch(key.clone(), true);
        }
    }

    fn accept(&mut self, now: Instant, from: SocketAddr, key: E::Key, session: E::Session) {
        if let Some(old) = self.sessions.remove(&key) {
            // A key reused before its session ended: the old one goes.
            drop(old);
        }
        let id = self.ids.as_ref().map(|f| f());
        let ctx = ConnContext {
            id,
            peer: Some(from.to_string()),
            peer_addr: Some(from),
            started: now,
            ..self.ctx.clone()
        };
        let flag = Arc::new(ReadyWake {
            key: key.clone(),
            queued: AtomicBool::new(false),
            tx: self.ready_tx.clone(),
            host: self.host_waker.clone(),
        });
        let waker = Waker::from(flag.clone());
        self.flags.insert(key.clone(), flag);
        let mut conductor = Conductor::new(self.engine.clone(), session, ctx);
        conductor.handle_pending(now);
        self.sessions.insert(
            key.clone(),
            Entry {
                conductor,
                waker,
                deadline: None,
                dirty: false,
                peer: from,
                id,
                bytes_in: 0,
                bytes_out: 0,
            },
        );
        self.stats.accepted += 1;
        self.touch(key, true);
    }

    /// Marks a session for draining and reschedules its timer.
    fn touch(&mut self, key: E::Key, poll_bus: bool) {
        let Some(e) = self.sessions.get_mut(&key) else {
            return;
        };
        let next = e.conductor.poll_timeout();
        if next != e.deadline {
            e.deadline = next;
            if let Some(t) = next {
                self.timer_seq += 1;
                self.timers.push(Reverse(Timer {
                    at: t,
                    seq: self.timer_seq,
                    key: key.clone(),
                }));
            }
        }
        if poll_bus && e.conductor.is_playing() {
            // A session that (still) plays polls the bus once more: that
            // registers its waker, and a paced one resumes after its timer.
            e.waker.wake_by_ref();
        }
        if !e.dirty {
            e.dirty = true;
            self.dirty.push_back(key);
        }
    }

    /// Due timers, the endpoint's and the sessions'.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        while let Some(Reverse(top)) = self.timers.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(Timer { at: t, key, .. })) = self.timers.pop() else {
                break;
            };
            let Some(e) = self.sessions.get_mut(&key) else {
                continue;
            };
            // A stale heap entry (the session's deadline moved): skip it.
            if e.deadline != Some(t) {
                continue;
            }
            e.deadline = None;
            e.conductor.handle_timeout(now);
            self.touch(key, true);
        }
    }

    /// The earliest timer.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop stale entries so the top is a live deadline.
        while let Some(Reverse(top)) = self.timers.peek() {
            match self.sessions.get(&top.key) {
                Some(e) if e.deadline == Some(top.at) => break,
                _ => {
                    self.timers.pop();
                }
            }
        }
        let s = self.timers.peek().map(|Reverse(top)| top.at);
        match (s, self.endpoint.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Registers the adapter's waker, woken when a playing session has bus
    /// deliveries ready; returns whether some are ready now (then call
    /// [`poll_deliveries`](Self::poll_deliveries)). It takes `&mut self` so
    /// that a driver future holding the host can be sent between threads.
    pub fn register_ready(&mut self, cx: &Context<'_>) -> bool {
        self.host_waker.waker.register(cx.waker());
        self.host_waker.ready.swap(false, Ordering::AcqRel)
    }

    /// Hands ready bus deliveries to the sessions whose wakers fired (and,
    /// the first time, subscribes every playing session's waker). Visits only
    /// those sessions. Returns whether anything was delivered.
    pub fn poll_deliveries(&mut self, now: Instant) -> bool {
        let mut any = false;
        let keys: Vec<E::Key> = self.ready_rx.try_iter().collect();
        for key in keys {
            if let Some(f) = self.flags.get(&key) {
                f.queued.store(false, Ordering::Release);
            }
            let Some(e) = self.sessions.get_mut(&key) else {
                continue;
            };
            let waker = e.waker.clone();
            let mut cx = Context::from_waker(&waker);
            let mut n = 0;
            while n < DELIVERY_ROUNDS
                && e.conductor.poll_deliveries(&mut cx, now) == Poll::Ready(())
            {
                n += 1;
                any = true;
            }
            if n == DELIVERY_ROUNDS {
                // More may be ready: come back after the others had a turn.
                waker.wake_by_ref();
            }
            self.touch(key, false);
        }
        any
    }

    /// The next datagram to send: the endpoint's answers, then what the
    /// touched sessions have. Ended sessions are removed here.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.endpoint.poll_transmit() {
            return Some(t);
        }
        while let Some(key) = self.dirty.front().cloned() {
            let Some(e) = self.sessions.get_mut(&key) else {
                self.dirty.pop_front();
                continue;
            };
            if let Some(t) = e.conductor.poll_transmit() {
                e.bytes_out += t.data.len() as u64;
                return Some(t);
            }
            while let Some(line) = e.conductor.poll_log() {
                self.log.push_back(line);
            }
            e.dirty = false;
            self.dirty.pop_front();
            if e.conductor.is_closed() {
                self.sessions.remove(&key);
                self.flags.remove(&key);
                self.endpoint.session_closed(&key);
                self.stats.closed += 1;
            }
        }
        None
    }

    /// The live sessions, for an API (in no particular order).
    pub fn sessions(&self) -> impl Iterator<Item = EndpointSession<'_, E::Key>> {
        self.sessions.iter().map(|(key, e)| EndpointSession {
            key,
            peer: e.peer,
            id: e.id,
            stream: e.conductor.stream(),
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
        })
    }

    /// Ends session `key` as a shutdown would, for `why`: it says goodbye
    /// to its peer and its stream ends; it is removed once that is sent.
    /// `false` when there is no such session.
    pub fn end_session(&mut self, now: Instant, key: &E::Key, why: CloseReason) -> bool {
        let Some(e) = self.sessions.get_mut(key) else {
            return false;
        };
        e.conductor.close(now, why);
        self.touch(key.clone(), false);
        true
    }

    /// A line for the log.
    #[must_use]
    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }
}

#[cfg(test)]
mod tests;
