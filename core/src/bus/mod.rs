//! The fan-out bus: one bounded ring per stream, one writer, any number of
//! subscribers, no lock anywhere on the media path.
//!
//! * The [`Sender`] writes each frame into the next slot of a power-of-two
//!   ring and advances the head; it never waits for a subscriber. Entries are
//!   reclaimed by crossbeam-epoch (see `slot`).
//! * A [`Subscription`] is a cursor into the ring. Reading costs one atomic
//!   load of the head and one of the slot, and delivering a frame costs a
//!   reference count on its payload.
//! * **GOP cache.** The ring is the cache: a new subscriber's cursor is set to
//!   the newest sync point (a video key frame, or any audio frame when the
//!   stream has no video) while that point is still in the ring and the GOP
//!   since it is within the configured frame and byte bounds. Joining is a
//!   single cursor assignment, so the switch from cached frames to live ones
//!   cannot miss or repeat a frame. Otherwise the subscriber waits for the
//!   next sync point.
//! * **Configuration first.** Every entry carries the [`TrackSet`] in force;
//!   a subscriber receives [`Delivery::Tracks`] before its first frame and
//!   whenever the configuration changes.
//! * **Lag.** A subscriber whose cursor has been overwritten receives
//!   [`Delivery::Lagged`] with the number of frames it lost, then the tracks,
//!   then frames from the newest sync point, never mid-GOP. One that falls
//!   more than `lag_limit` frames behind is evicted with
//!   [`RecvError::Evicted`].
//! * **Close.** [`Sender::close`] (or dropping the sender) ends every
//!   subscription after it has read what was published before the close.

mod slot;
mod waiters;

use core::task::{Context, Poll};
use crossbeam_epoch::{self as epoch, Guard};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::frame::{FrameKind, MediaFrame, TrackSet};
use slot::{Entry, Slots};
use waiters::{WaiterSlot, Waiters};

/// Sizes and limits of one stream's bus.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Frames the ring holds; rounded up to a power of two, at least 2.
    pub capacity: usize,
    /// Whether new subscribers start from the last sync point.
    pub gop_cache: bool,
    /// The GOP cache serves at most this many frames.
    pub gop_cache_frames: usize,
    /// The GOP cache serves at most this many payload bytes.
    pub gop_cache_bytes: u64,
    /// A subscriber that falls this many frames behind is evicted.
    pub lag_limit: u64,
    /// At most this many subscribers at once.
    pub max_subscribers: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            capacity: 1024,
            gop_cache: true,
            gop_cache_frames: 1024,
            gop_cache_bytes: 32 << 20,
            lag_limit: 4096,
            max_subscribers: 16_384,
        }
    }
}

/// Why a bus was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The publisher ended the stream (or its session went away).
    PublisherEnded,
    /// The stream was idle for longer than its application allows.
    Idle,
    /// A newer publisher took the stream over.
    Replaced,
    /// The host is shutting down.
    Shutdown,
    /// The host's rules no longer allow the stream (a configuration
    /// reload took its name away).
    Revoked,
    /// The host's operator ended the connection (the sessions API).
    Ended,
}

/// In a person's words.
impl core::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CloseReason::PublisherEnded => "the publisher ended it",
            CloseReason::Idle => "idle too long",
            CloseReason::Replaced => "a new publisher took it over",
            CloseReason::Shutdown => "the server is shutting down",
            CloseReason::Revoked => "the server's rules no longer allow it",
            CloseReason::Ended => "ended by the server's operator",
        })
    }
}

impl CloseReason {
    fn to_u8(self) -> u8 {
        match self {
            CloseReason::PublisherEnded => 1,
            CloseReason::Idle => 2,
            CloseReason::Replaced => 3,
            CloseReason::Shutdown => 4,
            CloseReason::Revoked => 5,
            CloseReason::Ended => 6,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => CloseReason::PublisherEnded,
            2 => CloseReason::Idle,
            3 => CloseReason::Replaced,
            4 => CloseReason::Shutdown,
            5 => CloseReason::Revoked,
            6 => CloseReason::Ended,
            _ => return None,
        })
    }
}

/// A subscription has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The stream closed and everything published before was delivered.
    #[error("stream closed: {0}")]
    Closed(CloseReason),
    /// This subscriber fell more than the lag limit behind.
    #[error("subscriber evicted after falling {lost} frames behind")]
    Evicted {
        /// How far behind it was.
        lost: u64,
    },
}

/// Nothing to deliver right now, or the subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing new yet.
    #[error("no frame ready")]
    Empty,
    /// The subscription ended.
    #[error(transparent)]
    Ended(#[from] RecvError),
}

/// The stream already has its maximum number of subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the stream has reached its subscriber limit")]
pub struct SubscriberLimit;

/// What a subscription yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The track configuration: before the first frame, after a lag, and
    /// whenever the publisher changes it.
    Tracks(Arc<TrackSet>),
    /// A frame.
    Frame(MediaFrame),
    /// The subscriber fell behind and `lost` frames were skipped; the next
    /// deliveries are the tracks and a sync point.
    Lagged {
        /// Frames skipped.
        lost: u64,
    },
}

/// A delivery borrowed from the ring, for consumers that do not need to own
/// the frame (they serialize it straight into an output buffer).
#[derive(Clone, Copy, Debug)]
pub enum DeliveryRef<'a> {
    /// See [`Delivery::Tracks`].
    Tracks(&'a Arc<TrackSet>),
    /// See [`Delivery::Frame`].
    Frame(&'a MediaFrame),
    /// See [`Delivery::Lagged`].
    Lagged {
        /// Frames skipped.
        lost: u64,
    },
}

impl DeliveryRef<'_> {
    /// An owned copy (a reference count on the payload).
    pub fn to_owned(self) -> Delivery {
        match self {
            DeliveryRef::Tracks(t) => Delivery::Tracks(t.clone()),
            DeliveryRef::Frame(f) => Delivery::Frame(f.clone()),
            DeliveryRef::Lagged { lost } => Delivery::Lagged { lost },
        }
    }
}

/// Counters of one bus, readable at any time.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Subscribers now attached.
    pub subscribers: AtomicUsize,
    /// Times any subscriber lagged.
    pub lag_events: AtomicU64,
    /// Subscribers evicted for lagging past the limit.
    pub evictions: AtomicU64,
}

struct Shared {
    slots: Slots,
    mask: u64,
    cfg: BusConfig,
    /// The sequence number the next frame will get.
    head: AtomicU64,
    /// 1 + the sequence number of the newest sync point; 0 for none.
    last_sync: AtomicU64,
    closed: AtomicU8,
    sender_alive: AtomicBool,
    waiters: Waiters,
    stats: BusStats,
}

impl Shared {
    fn close(&self, reason: CloseReason) {
        if self
            .closed
            .compare_exchange(0, reason.to_u8(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waiters.wake_parked();
        }
    }

    fn closed(&self) -> Option<CloseReason> {
        CloseReason::from_u8(self.closed.load(Ordering::Acquire))
    }
}

/// A handle to a stream's bus that can subscribe and close, shared by the
/// engine's stream table. Cloning is a reference count.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Bus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bus")
            .field("head", &self.shared.head.load(Ordering::Relaxed))
            .field("capacity", &self.shared.slots_len())
            .field("closed", &self.shared.closed())
            .finish()
    }
}

impl Shared {
    fn slots_len(&self) -> u64 {
        self.mask + 1
    }
}

/// Creates a bus and its one sender.
pub fn channel(cfg: BusConfig) -> (Sender, Bus) {
    let cap = cfg.capacity.max(2).next_power_of_two();
    let shared = Arc::new(Shared {
        slots: Slots::new(cap),
        mask: (cap - 1) as u64,
        waiters: Waiters::new(cfg.max_subscribers),
        cfg,
        head: AtomicU64::new(0),
        last_sync: AtomicU64::new(0),
        closed: AtomicU8::new(0),
        sender_alive: AtomicBool::new(true),
        stats: BusStats::default(),
    });
    (
        Sender {
            shared: shared.clone(),
            seq: 0,
            bytes: 0,
            tracks: Arc::new(TrackSet::new()),
            has_video: false,
        },
        Bus { shared },
    )
}

impl Bus {
    /// A new subscription, starting from the GOP cache when it can.
    pub fn subscribe(&self) -> Result<Subscription, SubscriberLimit> {
        let slot = self.shared.waiters.register().ok_or(SubscriberLimit)?;
        let sub = Subscription {
            shared: self.shared.clone(),
            slot,
            st: Cursor {
                cursor: self.join_cursor(),
                waiting_sync: true,
                lagging: false,
                started: false,
                pending_lost: 0,
                tracks: None,
                ended: None,
            },
        };
        self.shared
            .stats
            .subscribers
            .fetch_add(1, Ordering::Relaxed);
        Ok(sub)
    }

    fn join_cursor(&self) -> u64 {
        let s = &self.shared;
        let guard = epoch::pin();
        let head = s.head.load(Ordering::Acquire);
        let ls = s.last_sync.load(Ordering::Acquire);
        if s.cfg.gop_cache && ls > 0 {
            let start = ls - 1;
            let frames = head.saturating_sub(start);
            if frames <= s.slots_len() && frames as usize <= s.cfg.gop_cache_frames {
                let first = s.slots.get((start & s.mask) as usize, &guard);
                let last = head
                    .checked_sub(1)
                    .and_then(|h| s.slots.get((h & s.mask) as usize, &guard));
                if let (Some(first), Some(last)) = (first, last) {
                    let end = last.bytes_before + last.frame.payload.len() as u64;
                    if first.seq == start && end - first.bytes_before <= s.cfg.gop_cache_bytes {
                        return start;
                    }
                }
            }
        }
        // Wait for the next sync point: the cursor skips until it finds one.
        head
    }

    /// Closes the bus; subscribers end after reading what was published.
    pub fn close(&self, reason: CloseReason) {
        self.shared.close(reason);
    }

    /// Why the bus was closed, if it was.
    pub fn closed(&self) -> Option<CloseReason> {
        self.shared.closed()
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.shared.head.load(Ordering::Acquire)
    }

    /// Counters.
    pub fn stats(&self) -> &BusStats {
        &self.shared.stats
    }

    /// Whether the sender still exists.
    pub fn has_sender(&self) -> bool {
        self.shared.sender_alive.load(Ordering::Acquire)
    }
}

/// The write side of a bus. There is exactly one; publishing takes `&mut`.
pub struct Sender {
    shared: Arc<Shared>,
    seq: u64,
    bytes: u64,
    tracks: Arc<TrackSet>,
    has_video: bool,
}

impl core::fmt::Debug for Sender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sender").field("seq", &self.seq).finish()
    }
}

/// The bus was closed under the sender (idle reaping, shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the stream was closed: {0}")]
pub struct Closed(pub CloseReason);

impl Sender {
    /// Sets the track configuration for the frames that follow.
    pub fn set_tracks(&mut self, tracks: TrackSet) {
        self.has_video = tracks.has_video();
        self.tracks = Arc::new(tracks);
    }

    /// The track configuration in force.
    pub fn tracks(&self) -> &Arc<TrackSet> {
        &self.tracks
    }

    /// Publishes a frame to every subscriber. Never waits.
    pub fn publish(&mut self, frame: MediaFrame) -> Result<u64, Closed> {
        let s = &*self.shared;
        if let Some(reason) = s.closed() {
            return Err(Closed(reason));
        }
        let seq = self.seq;
        let sync = match frame.kind {
            FrameKind::Key => true,
            FrameKind::Audio => !self.has_video,
            FrameKind::Delta => false,
        };
        let len = frame.payload.len() as u64;
        let entry = Entry {
            seq,
            frame,
            tracks: self.tracks.clone(),
            sync,
            bytes_before: self.bytes,
        };
        {
            let guard = epoch::pin();
            s.slots.store((seq & s.mask) as usize, entry, &guard);
        }
        if sync {
            s.last_sync.store(seq + 1, Ordering::Release);
        }
        self.seq = seq + 1;
        self.bytes += len;
        s.head.store(seq + 1, Ordering::Release);
        s.waiters.wake_parked();
        Ok(seq)
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.seq
    }

    /// Why the bus was closed under this sender, if it was.
    pub fn closed(&self) -> Option<CloseReason> {
        self.shared.closed()
    }

    /// Forgets the GOP cache: a subscriber joining from now on waits for the
    /// next sync point instead of starting at the last one. For a stream
    /// whose publisher left and whose next frames come from another one
    /// (see the engine's linger): nobody should start on the old GOP.
    /// Subscribers already attached are not affected.
    pub fn clear_gop_cache(&mut self) {
        self.shared.last_sync.store(0, Ordering::Release);
    }

    /// A handle for subscribing to this sender's bus.
    pub fn bus(&self) -> Bus {
        Bus {
            shared: self.shared.clone(),
        }
    }

    /// Ends the stream for every subscriber.
    pub fn close(self, reason: CloseReason) {
        self.shared.close(reason);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.sender_alive.store(false, Ordering::Release);
        self.shared.close(CloseReason::PublisherEnded);
    }
}

/// A subscriber's cursor into a stream's ring.
///
/// Receive with [`try_recv`](Self::try_recv), [`poll_recv`](Self::poll_recv)
/// (every adapter wraps this in its runtime's terms), or in batches with
/// [`poll_recv_batch`](Self::poll_recv_batch) and
/// [`poll_for_each`](Self::poll_for_each), which drain everything ready in one
/// call and one epoch pin.
pub struct Subscription {
    shared: Arc<Shared>,
    slot: WaiterSlot,
    st: Cursor,
}

/// A subscriber's position and what it owes its consumer.
struct Cursor {
    cursor: u64,
    waiting_sync: bool,
    lagging: bool,
    /// A frame has been delivered; before that, an overwrite is not a loss
    /// (the subscriber just starts at a newer sync point).
    started: bool,
    pending_lost: u64,
    tracks: Option<Arc<TrackSet>>,
    ended: Option<RecvError>,
}

impl Cursor {
    fn step<'g>(&mut self, s: &Shared, guard: &'g Guard) -> Step<'g> {
        if let Some(e) = self.ended {
            return Step::Ended(e);
        }
        loop {
            // `closed` before `head`: a close is stored after the last head,
            // so seeing it guarantees the head read next is final.
            let closed = s.closed();
            let head = s.head.load(Ordering::Acquire);
            if self.cursor >= head {
                return match closed {
                    // Frames skipped while waiting for a sync point that never
                    // came are reported before the end.
                    Some(_) if self.pending_lost > 0 => Step::Item(DeliveryRef::Lagged {
                        lost: core::mem::take(&mut self.pending_lost),
                    }),
                    Some(reason) => self.end(RecvError::Closed(reason)),
                    None => Step::Empty,
                };
            }
            let entry = if head - self.cursor > s.slots_len() {
                None
            } else {
                s.slots
                    .get((self.cursor & s.mask) as usize, guard)
                    .filter(|e| e.seq == self.cursor)
            };
            let Some(entry) = entry else {
                // Overwritten: this subscriber lagged.
                if let Some(end) = self.lag(s, head) {
                    return end;
                }
                continue;
            };
            if self.waiting_sync {
                if !entry.sync {
                    self.cursor += 1;
                    if self.lagging {
                        self.pending_lost += 1;
                        if self.pending_lost > s.cfg.lag_limit {
                            return self.evict(s);
                        }
                    }
                    continue;
                }
                if self.pending_lost > 0 {
                    let lost = core::mem::take(&mut self.pending_lost);
                    return Step::Item(DeliveryRef::Lagged { lost });
                }
                self.waiting_sync = false;
                self.lagging = false;
            }
            let same = matches!(&self.tracks, Some(t) if Arc::ptr_eq(t, &entry.tracks));
            if !same {
                self.tracks = Some(entry.tracks.clone());
                return Step::Item(DeliveryRef::Tracks(&entry.tracks));
            }
            self.cursor += 1;
            self.started = true;
            return Step::Item(DeliveryRef::Frame(&entry.frame));
        }
    }

    /// Moves the cursor past an overwrite: to the newest sync point if it is
    /// still in the ring, else to the head to wait for the next one.
    fn lag<'g>(&mut self, s: &Shared, head: u64) -> Option<Step<'g>> {
        s.stats.lag_events.fetch_add(1, Ordering::Relaxed);
        if !self.started {
            // Nothing delivered yet, so nothing is lost: keep looking for a
            // sync point from the oldest frame still in the ring.
            self.cursor = self.cursor.max(head.saturating_sub(s.slots_len()));
            self.waiting_sync = true;
            return None;
        }
        let ls = s.last_sync.load(Ordering::Acquire);
        let target = match ls.checked_sub(1) {
            Some(sync) if sync >= self.cursor && head.saturating_sub(sync) <= s.slots_len() => sync,
            _ => head.max(self.cursor),
        };
        self.waiting_sync = true;
        self.tracks = None;
        self.pending_lost += target - self.cursor;
        self.lagging = true;
        self.cursor = target;
        if self.pending_lost > s.cfg.lag_limit {
            return Some(self.evict(s));
        }
        None
    }

    fn evict<'g>(&mut self, s: &Shared) -> Step<'g> {
        s.stats.evictions.fetch_add(1, Ordering::Relaxed);
        let lost = self.pending_lost;
        self.end(RecvError::Evicted { lost })
    }

    fn end<'g>(&mut self, e: RecvError) -> Step<'g> {
        self.ended = Some(e);
        Step::Ended(e)
    }
}

impl core::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Subscription")
            .field("cursor", &self.st.cursor)
            .field("waiting_sync", &self.st.waiting_sync)
            .field("ended", &self.st.ended)
            .finish()
    }
}

enum Step<'g> {
    Item(DeliveryRef<'g>),
    Empty,
    Ended(RecvError),
}

impl Subscription {
    /// Frames this subscriber is behind the publisher.
    pub fn behind(&self) -> u64 {
        self.shared
            .head
            .load(Ordering::Acquire)
            .saturating_sub(self.st.cursor)
    }

    /// Whether this subscriber is further behind than the bus's lag limit
    /// allows, so its host can evict it without reading (a peer that takes
    /// no bytes is evicted even while a write to it is pending).
    pub fn past_lag_limit(&self) -> bool {
        self.behind() > self.shared.cfg.lag_limit
    }

    fn step<'g>(&mut self, guard: &'g Guard) -> Step<'g> {
        self.st.step(&self.shared, guard)
    }

    /// The next delivery if one is ready.
    pub fn try_recv(&mut self) -> Result<Delivery, TryRecvError> {
        let guard = epoch::pin();
        match self.step(&guard) {
            Step::Item(d) => Ok(d.to_owned()),
            Step::Empty => Err(TryRecvError::Empty),
            Step::Ended(e) => Err(TryRecvError::Ended(e)),
        }
    }

    /// The next delivery, or `Pending` after arranging for `cx`'s waker to be
    /// woken when there is one.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery, RecvError>> {
        let mut out = None;
        match self.poll_for_each(cx, 1, |d| out = Some(d.to_owned())) {
            Poll::Ready(Ok(_)) => match out {
                Some(d) => Poll::Ready(Ok(d)),
                None => Poll::Pending,
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Appends up to `max` ready deliveries to `out`. `Ready(Ok(n))` with
    /// `n >= 1`, `Ready(Err)` once the subscription ended and everything
    /// before the end was delivered, or `Pending`.
    ///
    /// Each delivery is a clone (a reference count on the payload). With
    /// thousands of subscribers keep `max` small (16 to 64): every
    /// subscriber's `out` should stay in cache (the `fanout` bench ran a
    /// third slower at 4096 subscribers with batches of 256).
    pub fn poll_recv_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Delivery>,
        max: usize,
    ) -> Poll<Result<usize, RecvError>> {
        self.poll_for_each(cx, max, |d| out.push(d.to_owned()))
    }

    /// Calls `f` with up to `max` ready deliveries, borrowed from the ring
    /// under one epoch pin. Returns like [`poll_recv_batch`](Self::poll_recv_batch).
    pub fn poll_for_each(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        mut f: impl FnMut(DeliveryRef<'_>),
    ) -> Poll<Result<usize, RecvError>> {
        let mut parked = false;
        loop {
            let (n, end) = self.drain(max, &mut f);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if let Some(e) = end {
                return Poll::Ready(Err(e));
            }
            if parked {
                return Poll::Pending;
            }
            // Park, then look once more: the publisher may have written
            // between our last look and the parking.
            self.shared.waiters.park(self.slot, cx.waker());
            parked = true;
        }
    }

    /// Calls `f` with up to `max` ready deliveries without waiting. Returns
    /// how many were delivered and, if the subscription has ended (and
    /// nothing more is left to deliver), why.
    pub fn drain(
        &mut self,
        max: usize,
        mut f: impl FnMut(DeliveryRef<'_>),
    ) -> (usize, Option<RecvError>) {
        let guard = epoch::pin();
        let mut n = 0;
        while n < max {
            match self.step(&guard) {
                Step::Item(d) => {
                    f(d);
                    n += 1;
                }
                Step::Empty => return (n, None),
                Step::Ended(e) => return (n, Some(e)),
            }
        }
        (n, None)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.waiters.release(self.slot);
        self.shared
            .stats
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
