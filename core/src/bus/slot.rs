//! The ring's slots: the one module of the kernel that uses `unsafe`.
//!
//! Each slot holds a pointer to an immutable [`Entry`], managed by
//! crossbeam-epoch. The single writer swaps a new entry in and hands the old
//! one to the epoch collector; readers pin the epoch, load the pointer and
//! borrow the entry for as long as they stay pinned. An entry is never mutated
//! after it is published, so a reader that checks `entry.seq` sees either the
//! frame it wants or proof that it was overwritten: no torn reads, no lock.
//!
//! The three `unsafe` blocks and why each is sound:
//!
//! 1. [`Slots::get`] dereferences a loaded [`Shared`] pointer. The pointer was
//!    loaded under `guard`, and entries are only ever freed through
//!    `Guard::defer_destroy` (or in `Drop`, when no reader can exist), so the
//!    entry outlives the guard borrow the returned reference is tied to.
//! 2. [`Slots::store`] defers the destruction of the entry it swapped out. After
//!    the swap no new reader can load that pointer, and readers that loaded it
//!    earlier are pinned, so the collector frees it only after they unpin.
//! 3. `Drop` takes ownership of every remaining entry. `&mut self` proves no
//!    reader or writer is left (readers hold an `Arc` of the ring), so the
//!    unprotected guard is sufficient.
//!
//! The tests in `bus::tests` and `core/tests/fanout_stress.rs` run this module
//! with many concurrent readers against one writer.

#![allow(unsafe_code)]

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::frame::{MediaFrame, TrackSet};

/// One published frame, immutable once it is in a slot.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The frame's sequence number in its stream.
    pub seq: u64,
    /// The frame.
    pub frame: MediaFrame,
    /// The track configuration in force for this frame.
    pub tracks: Arc<TrackSet>,
    /// A subscriber may start here (a video key frame, or any audio frame of
    /// a stream without video).
    pub sync: bool,
    /// Payload bytes published before this frame, for the GOP cache's byte
    /// bound.
    pub bytes_before: u64,
}

/// A fixed array of epoch-managed entry pointers.
pub(crate) struct Slots {
    slots: Box<[Atomic<Entry>]>,
}

impl Slots {
    /// `n` empty slots.
    pub fn new(n: usize) -> Self {
        Slots {
            slots: (0..n).map(|_| Atomic::null()).collect(),
        }
    }

    /// Borrows the entry in slot `idx`, if it has ever been written.
    pub fn get<'g>(&self, idx: usize, guard: &'g Guard) -> Option<&'g Entry> {
        let p = self.slots.get(idx)?.load(Ordering::Acquire, guard);
        // SAFETY: see point 1 of the module documentation.
        unsafe { p.as_ref() }
    }

    /// Puts `entry` into slot `idx`, retiring what was there.
    pub fn store(&self, idx: usize, entry: Entry, guard: &Guard) {
        let Some(slot) = self.slots.get(idx) else {
            return;
        };
        let old = slot.swap(Owned::new(entry), Ordering::AcqRel, guard);
        if !old.is_null() {
            // SAFETY: see point 2 of the module documentation.
            unsafe { guard.defer_destroy(old) };
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: see point 3 of the module documentation.
        unsafe {
            let guard = epoch::unprotected();
            for slot in self.slots.iter() {
                let p = slot.swap(epoch::Shared::null(), Ordering::Relaxed, guard);
                if !p.is_null() {
                    drop(p.into_owned());
                }
            }
        }
    }
}
