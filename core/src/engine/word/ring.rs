//! The word engine's ring: each event inline in its slot.
//!
//! ## Slots
//!
//! Seq `s` lives in slot `index(s)`, striped over the two halves of the
//! array as in the record engine's ring (`engine/ring.rs`). A slot is
//! `{ stamp, key, value, old }`, 32 bytes:
//!
//! * `stamp` is `seq << 3 | kind << 1 | BUSY`: the seq whose event the
//!   slot holds, its kind (Create, Update, Delete: which of `value` and
//!   `old` mean something), and whether a publisher is rewriting the slot;
//! * `key`, `value`, `old`: the event's bits.
//!
//! ## Publishing seq `s` (only its writer does)
//!
//! 1. Load the stamp. A seq above `s`: a publisher a lap ahead went past;
//!    the event is lost to every reader (they are told). `BUSY`: the
//!    publisher a lap apart is in its few stores: wait.
//! 2. CAS the stamp to `s << 3 | BUSY`.
//! 3. Store `key`, `value`, `old`, each with `Release` (a reader that loads
//!    one of them sees the `BUSY` CAS when it re-reads the stamp).
//! 4. Store the stamp `s << 3 | kind << 1` (`Release`), then check for
//!    parked watchers (`notify.rs`), as the record engine does.
//!
//! Nothing leaves the ring: overwriting a slot frees nothing.
//!
//! ## Reading seq `c` (any watcher; writes nothing, needs no guard)
//!
//! Load the stamp (`Acquire`). Below `c`, or `c` and `BUSY`: **not yet**.
//! Above `c`: **lapped**. Exactly `c`: load the three fields, an `Acquire`
//! fence, and the stamp again: unchanged, the fields are `c`'s event
//! (**mine**); changed, a publisher a lap ahead took the slot in between
//! and the fields may be its: **lapped** (a seqlock's read side). As in
//! the record engine, every seq below the next one to be claimed is
//! published by its writer and a stamp only moves forward, so "below `c`"
//! means "not yet", never "lost".

use crate::engine::hint::prefetch_write;
use crate::engine::node::NodeKind;
use crate::engine::ring::{not_yet_at, stripe, take_stamp, RingAllocError};
use crate::engine::slots::{self, Zeroed};
use crate::sync::{fence, AtomicU64, Ordering};

const BUSY: u64 = 1;
const KIND_SHIFT: u32 = 1;
const SEQ_SHIFT: u32 = 3;

#[cfg(not(kvfeed_mutant = "publish_relaxed"))]
const FIELD_STORE: Ordering = Ordering::Release;
#[cfg(kvfeed_mutant = "publish_relaxed")]
const FIELD_STORE: Ordering = Ordering::Relaxed;
#[cfg(not(kvfeed_mutant = "publish_relaxed"))]
const STAMP_STORE: Ordering = Ordering::Release;
#[cfg(kvfeed_mutant = "publish_relaxed")]
const STAMP_STORE: Ordering = Ordering::Relaxed;

/// How many seqs ahead a publisher prefetches the slot.
const WRITE_AHEAD: u64 = 8;

/// An event as the ring holds it: bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WordEvent {
    pub(crate) seq: u64,
    pub(crate) kind: NodeKind,
    pub(crate) key: u64,
    /// Meaningful for Create and Update.
    pub(crate) value: u64,
    /// Meaningful for Update and Delete.
    pub(crate) old: u64,
}

/// What a reader found in the slot for its cursor.
pub(crate) enum WordRead {
    NotYet,
    Mine(WordEvent),
    Lapped,
}

#[repr(C, align(32))]
struct Slot {
    stamp: AtomicU64,
    key: AtomicU64,
    value: AtomicU64,
    old: AtomicU64,
}

// SAFETY: all zeroes is stamp 0 (no seq yet): an empty slot.
unsafe impl Zeroed for Slot {
    #[cfg(kvfeed_loom)]
    fn empty() -> Self {
        Slot {
            stamp: AtomicU64::new(0),
            key: AtomicU64::new(0),
            value: AtomicU64::new(0),
            old: AtomicU64::new(0),
        }
    }
}

#[inline]
fn held(stamp: u64) -> u64 {
    stamp >> SEQ_SHIFT
}

#[inline]
fn kind_of(stamp: u64) -> NodeKind {
    match (stamp >> KIND_SHIFT) & 3 {
        0 => NodeKind::Create,
        1 => NodeKind::Update,
        _ => NodeKind::Delete,
    }
}

#[inline]
fn stamp_not_yet(stamp: u64, cursor: u64) -> bool {
    not_yet_at(stamp, cursor, SEQ_SHIFT)
}

pub(crate) struct WordRing {
    slots: Box<[Slot]>,
    mask: u64,
    half_shift: u32,
}

impl WordRing {
    pub(crate) fn new(capacity: usize) -> Result<Self, RingAllocError> {
        debug_assert!(capacity.is_power_of_two() && capacity >= 2);
        let bytes = capacity.saturating_mul(std::mem::size_of::<Slot>());
        Ok(WordRing {
            slots: slots::zeroed(capacity).ok_or(RingAllocError { bytes })?,
            mask: capacity as u64 - 1,
            half_shift: capacity.trailing_zeros() - 1,
        })
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot {
        let i = stripe(seq, self.mask, self.half_shift);
        // SAFETY: `stripe` is below `mask + 1 == slots.len()`.
        unsafe { self.slots.get_unchecked(i) }
    }

    #[inline]
    pub(crate) fn not_yet(&self, cursor: u64) -> bool {
        stamp_not_yet(self.slot(cursor).stamp.load(Ordering::Acquire), cursor)
    }

    /// Publishes `ev` (steps 1-4); its writer is the one publisher of its seq.
    #[inline]
    pub(crate) fn publish(&self, ev: &WordEvent) {
        let seq = ev.seq;
        let slot = self.slot(seq);
        prefetch_write(&self.slot(seq + WRITE_AHEAD).stamp);
        if !take_stamp(&slot.stamp, seq, SEQ_SHIFT) {
            return;
        }
        slot.key.store(ev.key, FIELD_STORE);
        slot.value.store(ev.value, FIELD_STORE);
        slot.old.store(ev.old, FIELD_STORE);
        slot.stamp.store(
            seq << SEQ_SHIFT | (ev.kind as u64) << KIND_SHIFT,
            STAMP_STORE,
        );
    }

    /// What the slot for `cursor` holds. `order` is `Acquire`, or `SeqCst`
    /// for the parking re-check.
    #[inline]
    pub(crate) fn read(&self, cursor: u64, order: Ordering) -> WordRead {
        let slot = self.slot(cursor);
        let stamp = slot.stamp.load(order);
        if stamp_not_yet(stamp, cursor) {
            return WordRead::NotYet;
        }
        if held(stamp) > cursor {
            return WordRead::Lapped;
        }
        match Self::fields_if_unchanged(slot, stamp) {
            Some(ev) => WordRead::Mine(ev),
            None => WordRead::Lapped,
        }
    }

    /// The slot's event, if the slot still holds the one stamped `stamp`
    /// (published, not `BUSY`) after its fields were read.
    #[inline]
    fn fields_if_unchanged(slot: &Slot, stamp: u64) -> Option<WordEvent> {
        let key = slot.key.load(Ordering::Relaxed);
        let value = slot.value.load(Ordering::Relaxed);
        let old = slot.old.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if !cfg!(kvfeed_mutant = "word_no_recheck") && slot.stamp.load(Ordering::Relaxed) != stamp {
            return None;
        }
        Some(WordEvent {
            seq: held(stamp),
            kind: kind_of(stamp),
            key,
            value,
            old,
        })
    }

    /// The run of published events from `cursor` on (as the record ring's
    /// `read_run`): calls `f` on each, at most `max`, returns how many; stops
    /// at the first slot that is anything else and leaves it to `read`.
    #[inline]
    pub(crate) fn read_run(&self, cursor: u64, max: usize, mut f: impl FnMut(&WordEvent)) -> usize {
        let mut n = 0;
        while n < max {
            let c = cursor + n as u64;
            let slot = self.slot(c);
            let stamp = slot.stamp.load(Ordering::Acquire);
            if held(stamp) != c || stamp & BUSY != 0 {
                break;
            }
            let Some(ev) = Self::fields_if_unchanged(slot, stamp) else {
                break;
            };
            f(&ev);
            n += 1;
        }
        n
    }
}
