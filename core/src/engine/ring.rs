//! The sequenced ring: where an event is published, where a watcher detects
//! a lap, and where a record leaves the ring.
//!
//! ## Slots
//!
//! Seq `s` lives in slot `index(s)`. The index stripes consecutive seqs over
//! the two halves of the array, so two writers publishing `s` and `s + 1`
//! on different cores write different cache lines. A slot is
//! `{ stamp, node, prev, prev_seq }`:
//!
//! * `stamp` is `seq << 1 | BUSY`: the seq whose record the slot holds, and
//!   whether a publisher is rewriting the other fields right now;
//! * `node` is the record for that seq;
//! * `prev` and `prev_seq` are the record's predecessor for its key and that
//!   predecessor's seq: what has to be let go when the record leaves the
//!   ring (`node.rs`), kept here so that overwriting a slot never reads the
//!   record it overwrites.
//!
//! ## Publishing seq `s` (only its writer does)
//!
//! 1. Load the stamp. If it holds a seq above `s`, a publisher a lap ahead
//!    already went past: the event is lost to every reader (they are told),
//!    and the record leaves the ring at once. If it is `BUSY`, the publisher
//!    of `s - capacity` or `s + capacity` is in its few stores: wait.
//! 2. CAS the stamp to `s << 1 | BUSY` (acquiring: the fields the previous
//!    publisher stored are now ours to read).
//! 3. Read the old `node`, `prev`, `prev_seq`; store the new ones (`node`
//!    with `Release`).
//! 4. Store the stamp `s << 1` (`Release`: a release of the fields). The
//!    writer then checks for parked watchers behind a light fence
//!    (`notify.rs`): the store is half of the parking handshake.
//! 5. The old record leaves the ring: its `prev` is no longer anyone's
//!    `old` and joins this thread's list of waiting records
//!    (`pending.rs`). It is retired once that record has itself left the
//!    ring (its slot's stamp is above `prev_seq`); the list is checked 32
//!    records at a time, the stamps fetched together.
//!
//! ## Reading seq `c` (any watcher; wait-free, writes nothing)
//!
//! Load the stamp (`Acquire`). Below `c`, or `c` and `BUSY`: **not yet**.
//! Above `c`: **lapped**. Exactly `c`: load `node` and `prev` (the event's
//! `old`, both `Acquire`), then an `Acquire` fence and the stamp again: if
//! it changed, a publisher a lap ahead took the slot in between and `node`
//! or `prev` may be its own: **lapped**; else both are `c`'s: **mine**. (The
//! publisher stores both with `Release` after its `BUSY` CAS, so a reader
//! that loaded either new value sees the new stamp. This second read of the
//! stamp replaced an earlier check of the record's own seq, which it made
//! redundant: loom-tests/README.md, mutant `no_seq_check`.) Because every seq
//! below the next one to be claimed is published by its writer, and a
//! slot's stamp only moves forward, "below `c`" always means "not yet",
//! never "lost".
//!
//! The stamp is checked before the node is followed, so once a stamp has
//! moved past `s` no reader that starts later reaches the record for `s`
//! through this slot: that is what makes retiring it safe (`node.rs`).

use crate::engine::backoff::Backoff;
use crate::engine::hint::{prefetch_read, prefetch_write};
use crate::engine::node::Node;
use crate::engine::pending::{Pending, Waiting};
use crate::engine::reclaim::Guard;
use crate::engine::slots::{self, Zeroed};
use crate::sync::{fence, AtomicPtr, AtomicU64, Ordering};

const BUSY: u64 = 1;

// The orderings of the publishing stores (step 3-4). `kvfeed_mutant`s are
// deliberate bugs that the loom models must catch (`loom-tests/mutants.sh`).
#[cfg(not(kvfeed_mutant = "publish_relaxed"))]
const NODE_STORE: Ordering = Ordering::Release;
// `Release`, not `SeqCst`: on x86 a `SeqCst` store is an `XCHG`, a locked
// instruction (a third of `publish`'s samples under perf); the parking
// handshake orders it with a light fence instead (`notify.rs`).
#[cfg(not(kvfeed_mutant = "publish_relaxed"))]
const STAMP_STORE: Ordering = Ordering::Release;
#[cfg(kvfeed_mutant = "publish_relaxed")]
const NODE_STORE: Ordering = Ordering::Relaxed;
#[cfg(kvfeed_mutant = "publish_relaxed")]
const STAMP_STORE: Ordering = Ordering::Relaxed;

/// How many seqs ahead a publisher prefetches the slot (`Ring::publish`).
const WRITE_AHEAD: u64 = 8;

/// How many events ahead a reader prefetches the record it will follow
/// (`Ring::prefetch_ahead`).
#[cfg(not(kvfeed_loom))]
const READ_AHEAD: u64 = 3;

/// Whether a slot stamped `stamp` does not hold `cursor`'s record yet: it
/// holds an older seq, or `cursor`'s while its publisher is still storing.
#[inline]
fn stamp_not_yet(stamp: u64, cursor: u64) -> bool {
    not_yet_at(stamp, cursor, 1)
}

/// `stamp_not_yet` for a stamp whose seq starts at bit `shift` (the word
/// ring keeps its event's kind below it) and whose bit 0 is `BUSY`.
#[inline]
pub(crate) fn not_yet_at(stamp: u64, cursor: u64, shift: u32) -> bool {
    let held = stamp >> shift;
    held < cursor || (held == cursor && stamp & BUSY != 0)
}

/// Steps 1-2 of publishing `seq` into the slot whose stamp is `stamp`
/// (seq from bit `shift`, bit 0 `BUSY`): waits out the publisher a lap
/// apart while it is in its stores, then CASes the stamp to
/// `seq << shift | BUSY`, which hands the slot's fields to the caller
/// (acquiring what the previous publisher stored). False: a publisher a
/// lap ahead went past, and `seq` is lost to every reader (they are told).
/// Both rings publish through it.
#[inline]
pub(crate) fn take_stamp(stamp: &AtomicU64, seq: u64, shift: u32) -> bool {
    let mut now = stamp.load(Ordering::Acquire);
    let mut backoff = Backoff::new();
    loop {
        if now >> shift > seq {
            return false;
        }
        if now & BUSY != 0 {
            backoff.snooze();
            now = stamp.load(Ordering::Acquire);
            continue;
        }
        // `SeqCst` costs nothing more on x86 (a locked CMPXCHG either
        // way) and keeps loom's weaker-than-C11 `SeqCst` from letting the
        // parking re-check read this `BUSY` after the final store.
        match stamp.compare_exchange_weak(
            now,
            seq << shift | BUSY,
            Ordering::SeqCst,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(actual) => now = actual,
        }
    }
}

/// The index of seq `seq`'s slot in a ring of `mask + 1` slots (a power of
/// two, at least 2; `half_shift` is log2 of half of it): consecutive seqs
/// alternate between the two halves of the array (module doc). Always
/// below `mask + 1`: the high part is at most half of it, the low part
/// below half.
#[inline]
pub(crate) fn stripe(seq: u64, mask: u64, half_shift: u32) -> usize {
    let i = ((seq & 1) << half_shift) | ((seq & mask) >> 1);
    debug_assert!(i <= mask);
    i as usize
}

/// What a reader found in the slot for its cursor.
pub(crate) enum Read<'g, K, V> {
    /// The cursor's seq is not published yet.
    NotYet,
    /// The record for the cursor's seq, and its predecessor (the event's
    /// `old`; null for a key's first record).
    Mine(&'g Node<K, V>, *mut Node<K, V>),
    /// The cursor's seq was overwritten.
    Lapped,
    /// A word feed's event (`word/ring.rs`), copied out of its slot.
    Word(crate::engine::word::WordEvent),
}

#[repr(C, align(32))]
struct Slot<K, V> {
    /// `seq << 1 | BUSY`; 0 before the first publication.
    stamp: AtomicU64,
    /// The record for `stamp >> 1` (once not `BUSY`).
    node: AtomicPtr<Node<K, V>>,
    /// `node`'s predecessor for its key, or null; only read and written by
    /// the publisher holding `BUSY`.
    prev: AtomicPtr<Node<K, V>>,
    /// `prev`'s seq.
    prev_seq: AtomicU64,
}

// SAFETY: all zeroes is stamp 0 (no seq yet) and null pointers: empty.
unsafe impl<K, V> Zeroed for Slot<K, V> {
    #[cfg(kvfeed_loom)]
    fn empty() -> Self {
        Slot {
            stamp: AtomicU64::new(0),
            node: AtomicPtr::new(std::ptr::null_mut()),
            prev: AtomicPtr::new(std::ptr::null_mut()),
            prev_seq: AtomicU64::new(0),
        }
    }
}

pub(crate) struct Ring<K, V> {
    slots: Box<[Slot<K, V>]>,
    mask: u64,
    /// log2 of half the capacity: the stripe's shift.
    half_shift: u32,
    /// Predecessors of records that left the ring, until their own slot
    /// has moved on (step 5).
    pending: Pending<K, V>,
}

/// The ring's memory could not be allocated.
#[derive(Debug)]
pub(crate) struct RingAllocError {
    pub(crate) bytes: usize,
}

impl<K, V> Ring<K, V> {
    /// A ring of `capacity` slots (a power of two, at least 2, checked by
    /// `Config`); fails instead of aborting when the memory is not there.
    pub(crate) fn new(capacity: usize) -> Result<Self, RingAllocError> {
        debug_assert!(capacity.is_power_of_two() && capacity >= 2);
        let bytes = capacity.saturating_mul(std::mem::size_of::<Slot<K, V>>());
        Ok(Ring {
            slots: slots::zeroed(capacity).ok_or(RingAllocError { bytes })?,
            mask: capacity as u64 - 1,
            half_shift: capacity.trailing_zeros() - 1,
            pending: Pending::new(),
        })
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot<K, V> {
        let i = stripe(seq, self.mask, self.half_shift);
        // SAFETY: `stripe` is below `mask + 1 == slots.len()`.
        unsafe { self.slots.get_unchecked(i) }
    }

    /// Whether `cursor`'s seq is certainly not published yet (the stamp
    /// alone says so; no record is followed, so no guard is needed).
    #[inline]
    pub(crate) fn not_yet(&self, cursor: u64) -> bool {
        stamp_not_yet(self.slot(cursor).stamp.load(Ordering::Acquire), cursor)
    }

    /// Whether the record for `seq` has left the ring: its slot's stamp moved
    /// past it, so no reader that starts now follows the slot to it.
    #[inline]
    pub(crate) fn has_left(&self, seq: u64) -> bool {
        self.slot(seq).stamp.load(Ordering::Acquire) >> 1 > seq
    }

    /// Publishes `node` as seq `seq`.
    ///
    /// # Safety
    /// `node` is installed (its seq field is `seq`), `prev` is its
    /// predecessor with seq `prev_seq` (or null), the caller is the one
    /// publisher of `seq`, and `guard` is alive.
    pub(crate) unsafe fn publish(
        &self,
        seq: u64,
        node: *mut Node<K, V>,
        prev: *mut Node<K, V>,
        prev_seq: u64,
        guard: &Guard<'_>,
    ) {
        let slot = self.slot(seq);
        // The slots are written in seq order, but striped (two halves), and
        // each was last touched a lap ago: perf put two fifths of publish's
        // samples on the miss at the first load below. Start fetching the
        // slot of a seq a little ahead, which this writer or another is
        // about to take (consecutive seqs alternate halves, so both halves
        // are covered).
        prefetch_write(&self.slot(seq + WRITE_AHEAD).stamp);
        if !take_stamp(&slot.stamp, seq, 1) {
            // A publisher a lap ahead went past: readers are told they
            // missed `seq`, and the record leaves the ring unpublished.
            // SAFETY: `prev` is the predecessor of a record that just left
            // the ring (the caller's guarantee).
            unsafe { self.leave(prev, prev_seq, guard) };
            return;
        }
        let had = slot.node.load(Ordering::Relaxed);
        let old_prev = slot.prev.load(Ordering::Relaxed);
        let old_prev_seq = slot.prev_seq.load(Ordering::Relaxed);
        slot.node.store(node, NODE_STORE);
        // `Release`: a reader that loads this value sees the `BUSY` stamp
        // when it re-reads the stamp (`prev_if_unchanged`).
        slot.prev.store(prev, Ordering::Release);
        slot.prev_seq.store(prev_seq, Ordering::Relaxed);
        slot.stamp.store(seq << 1, STAMP_STORE);
        if !had.is_null() {
            // SAFETY: `had` just left the ring; `old_prev` is its predecessor,
            // stored by its publisher, and handed over by our `BUSY` CAS.
            unsafe { self.leave(old_prev, old_prev_seq, guard) };
        }
        self.pending.check_now(|list| self.retire_left(list, guard));
    }

    /// A record left the ring: its predecessor `prev` (seq `prev_seq`) is no
    /// longer anyone's `old`; it waits (`pending.rs`) until it has left the
    /// ring itself.
    ///
    /// # Safety
    /// `prev` (or null) is the predecessor of a record that left the ring
    /// just now, and this is the one call made for that record.
    unsafe fn leave(&self, prev: *mut Node<K, V>, prev_seq: u64, guard: &Guard<'_>) {
        if prev.is_null() {
            return;
        }
        self.pending
            .push((prev, prev_seq), |list| self.retire_left(list, guard));
    }

    /// Retires the waiting records whose slots have moved on and keeps the
    /// others. The stamps are fetched together first, so their misses
    /// overlap (`pending.rs`).
    fn retire_left(&self, list: &mut Vec<Waiting<K, V>>, guard: &Guard<'_>) {
        for &(_, seq) in list.iter() {
            prefetch_read(&self.slot(seq).stamp);
        }
        let mut retirer = guard.retirer::<K, V>();
        list.retain(|&(node, seq)| {
            if !(cfg!(kvfeed_mutant = "retire_early") || self.has_left(seq)) {
                return true;
            }
            // SAFETY: replaced as its key's current node (its successor was
            // installed), its successor, the only record that referred to
            // it, left the ring (it was put on the list then), and now its
            // own slot moved on: unreachable for readers that start now.
            // Retired once: removed from the list, which alone held it.
            unsafe { retirer.retire(node) };
            false
        });
    }

    /// Every record waiting to be retired (for the feed's drop).
    pub(crate) fn drain_pending(&mut self) -> Vec<*mut Node<K, V>> {
        self.pending
            .drain_all()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// What the slot for `cursor` holds. `order` is `Acquire`, or `SeqCst`
    /// for the parking re-check.
    #[inline]
    pub(crate) fn read<'g>(
        &self,
        cursor: u64,
        guard: &'g Guard<'_>,
        order: Ordering,
    ) -> Read<'g, K, V> {
        let slot = self.slot(cursor);
        let stamp = slot.stamp.load(order);
        if stamp_not_yet(stamp, cursor) {
            return Read::NotYet;
        }
        if stamp >> 1 > cursor {
            return Read::Lapped;
        }
        let node = guard.protect(&slot.node, Ordering::Acquire);
        self.prefetch_ahead(cursor);
        // SAFETY: the stamp said the slot holds `cursor`'s record, checked
        // before following the pointer, under `guard` (module doc): the
        // record, or a newer one stored since, is alive for 'g.
        let node = unsafe { &*node };
        // A publisher a lap ahead may have replaced the record since the
        // stamp was read; the stamp's second read below tells (module doc).
        match self.prev_if_unchanged(slot, stamp & !BUSY, guard) {
            Some(prev) => Read::Mine(node, prev),
            None => Read::Lapped,
        }
    }

    /// Starts fetching the record a reader at `cursor` will follow a few
    /// reads from now. Records come from a per-thread cache of freed
    /// memory, so consecutive events' records are scattered: without this,
    /// the first watcher to read an event missed on its record every time
    /// (the slots themselves are read in order, which the hardware
    /// prefetcher follows). The pointer is loaded without checking the
    /// stamp: it may be stale or already freed, which a prefetch (it never
    /// faults, and its line is never read by the program) does not mind.
    /// Not under loom, where it would only add a load to explore.
    #[inline]
    fn prefetch_ahead(&self, cursor: u64) {
        #[cfg(not(kvfeed_loom))]
        prefetch_read(self.slot(cursor + READ_AHEAD).node.load(Ordering::Relaxed));
        #[cfg(kvfeed_loom)]
        let _ = cursor;
    }

    /// The slot's predecessor field, if the slot still holds the record it
    /// held at `stamp`: a publisher a lap ahead may have taken the slot
    /// since the stamp was read, and the record the caller loaded, or this
    /// predecessor, may be its. Both fields are stored with `Release` after
    /// the publisher's `BUSY` CAS; loaded before an `Acquire` fence, a
    /// newer value of either makes the re-read stamp show that CAS (a
    /// seqlock's read side).
    #[inline]
    fn prev_if_unchanged(
        &self,
        slot: &Slot<K, V>,
        stamp: u64,
        guard: &Guard<'_>,
    ) -> Option<*mut Node<K, V>> {
        let prev = guard.protect(&slot.prev, Ordering::Acquire);
        fence(Ordering::Acquire);
        if !cfg!(kvfeed_mutant = "no_prev_recheck") && slot.stamp.load(Ordering::Relaxed) != stamp {
            return None;
        }
        Some(prev)
    }

    /// Reads the run of records from `cursor` on while each slot plainly
    /// holds its seq's record: calls `f` on each, at most `max`, and returns
    /// how many. It stops at the first slot that is anything else (not yet
    /// published, being rewritten, lapped) and leaves that one to [`read`],
    /// which tells them apart. The loads and their orders are `read`'s; what
    /// a run saves is the per-event classification and the caller's
    /// per-event bookkeeping (a batch read costs a third of one-by-one
    /// reads under callgrind).
    ///
    /// [`read`]: Ring::read
    #[inline]
    pub(crate) fn read_run(
        &self,
        cursor: u64,
        max: usize,
        guard: &Guard<'_>,
        mut f: impl FnMut(&Node<K, V>, *mut Node<K, V>),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let c = cursor + n as u64;
            let slot = self.slot(c);
            // Exactly `c`, not `BUSY`: the only stamp a run accepts.
            if slot.stamp.load(Ordering::Acquire) != c << 1 {
                break;
            }
            let node = guard.protect(&slot.node, Ordering::Acquire);
            self.prefetch_ahead(c);
            // SAFETY: as in `read`: the stamp said the slot holds `c`'s
            // record, checked before following the pointer, under `guard`.
            let node = unsafe { &*node };
            let Some(prev) = self.prev_if_unchanged(slot, c << 1, guard) else {
                break;
            };
            f(node, prev);
            n += 1;
        }
        n
    }

    /// Every record still referenced by a slot (as a record or as one's
    /// predecessor), for the feed's drop; duplicates possible.
    pub(crate) fn records(&mut self) -> Vec<*mut Node<K, V>> {
        let mut out = Vec::new();
        for slot in self.slots.iter() {
            out.push(slot.node.load(Ordering::Relaxed));
            out.push(slot.prev.load(Ordering::Relaxed));
        }
        out.retain(|p| !p.is_null());
        out
    }
}
