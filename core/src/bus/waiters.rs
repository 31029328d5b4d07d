//! Wakers of parked subscribers, one per subscriber, found by the publisher
//! without a lock.
//!
//! Subscribers are given a slot in a segment of 64; each segment has a bitmap
//! of used slots and a bitmap of parked ones. After publishing, the writer
//! scans the parked bitmaps (one load per 64 subscribers) and wakes only those
//! whose bit it clears, so a publish with nobody parked costs a few loads, and
//! the cost of a wake is paid once per parked subscriber, not per frame.
//!
//! The parking protocol is the classic store-fence-load pair: a subscriber
//! registers its waker, sets its parked bit, fences, then checks the ring's
//! head again; the publisher stores the head, fences, then reads the parked
//! bits. At least one of the two sees the other's store, so a wake is never
//! lost.

use atomic_waker::AtomicWaker;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::Waker;

const PER_SEGMENT: usize = 64;

struct Segment {
    used: AtomicU64,
    parked: AtomicU64,
    wakers: [AtomicWaker; PER_SEGMENT],
}

impl Segment {
    fn new() -> Self {
        Segment {
            used: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            wakers: core::array::from_fn(|_| AtomicWaker::new()),
        }
    }
}

/// A subscriber's place among the waiters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaiterSlot {
    segment: u32,
    bit: u8,
}

/// The waker table of one stream.
pub(crate) struct Waiters {
    segments: Box<[OnceLock<Box<Segment>>]>,
    /// Segments `0..live` may be initialised; the publisher scans only those.
    live: AtomicUsize,
}

impl Waiters {
    /// Room for `max` subscribers (rounded up to a multiple of 64).
    pub fn new(max: usize) -> Self {
        let n = max.div_ceil(PER_SEGMENT).max(1);
        Waiters {
            segments: (0..n).map(|_| OnceLock::new()).collect(),
            live: AtomicUsize::new(0),
        }
    }

    /// Takes a free slot; `None` when the stream has `max` subscribers.
    pub fn register(&self) -> Option<WaiterSlot> {
        for (i, cell) in self.segments.iter().enumerate() {
            let seg = cell.get_or_init(|| Box::new(Segment::new()));
            self.live.fetch_max(i + 1, Ordering::AcqRel);
            let mut used = seg.used.load(Ordering::Relaxed);
            while used != u64::MAX {
                let bit = (!used).trailing_zeros();
                match seg.used.compare_exchange_weak(
                    used,
                    used | (1 << bit),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        return Some(WaiterSlot {
                            segment: u32::try_from(i).ok()?,
                            // bit < 64
                            bit: bit as u8,
                        });
                    }
                    Err(now) => used = now,
                }
            }
        }
        None
    }

    fn segment(&self, slot: WaiterSlot) -> Option<&Segment> {
        self.segments
            .get(slot.segment as usize)
            .and_then(|c| c.get())
            .map(|b| &**b)
    }

    /// Gives a slot back.
    pub fn release(&self, slot: WaiterSlot) {
        if let Some(seg) = self.segment(slot) {
            let mask = !(1u64 << slot.bit);
            seg.parked.fetch_and(mask, Ordering::AcqRel);
            drop(seg.wakers[usize::from(slot.bit)].take());
            seg.used.fetch_and(mask, Ordering::AcqRel);
        }
    }

    /// Registers `waker` and marks the slot parked. The caller must check
    /// for new data after this returns.
    pub fn park(&self, slot: WaiterSlot, waker: &Waker) {
        if let Some(seg) = self.segment(slot) {
            seg.wakers[usize::from(slot.bit)].register(waker);
            seg.parked.fetch_or(1u64 << slot.bit, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// Wakes every parked subscriber. The caller has already stored what
    /// they are waiting for.
    pub fn wake_parked(&self) {
        fence(Ordering::SeqCst);
        let live = self.live.load(Ordering::Acquire).min(self.segments.len());
        for cell in &self.segments[..live] {
            let Some(seg) = cell.get() else { continue };
            if seg.parked.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = seg.parked.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                seg.wakers[bit].wake();
            }
        }
    }
}
