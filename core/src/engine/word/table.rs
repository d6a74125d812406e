//! The word engine's key table: a key's whole state (key, value, version)
//! in one 24-byte slot.
//!
//! ## Slots
//!
//! A slot is `{ ctrl, key, value }`:
//!
//! * `ctrl`: the slot's state in the low 3 bits, as in the record engine's
//!   table (`EMPTY` (the whole word 0), `RESERVED`, `FULL`, `MOVED`,
//!   `DROPPED`, `SEALED`); the key's tags in the next 4 (`PENDING` while a
//!   write is in flight, `DELETED` when the key is absent, `FROZEN` once a
//!   migration took the slot, `DIRTY` while a writer replaces the value,
//!   `write.rs`); and above them the key's version, the seq of its last
//!   write (0 for none), except while `DIRTY`, when they hold the address
//!   of the writer's intent record (`intent.rs`);
//! * `key`: the key's bits, written once while `RESERVED` and published by
//!   the `FULL` store (`Release`);
//! * `value`: the current value's bits (meaningless while `DELETED`),
//!   written only by the writer holding `PENDING`, after it set `DIRTY`.
//!
//! There is no hash fragment: the key itself is a word, and comparing it
//! is what comparing a fragment would cost. That is what makes a slot 24
//! bytes, not 32 (`docs/design.md`, memory).
//!
//! ## Probing, migration, progress
//!
//! As in the record engine's table (`engine/table.rs`), of which this is
//! the same algorithm over a different slot: linear probing from the hash,
//! a slot belongs to its key for the table's life, a table past 3/4 taken
//! migrates into one sized from the live keys, every write copies a chunk
//! first, and a copied slot is frozen (`FROZEN`, after waiting out a
//! `PENDING` write), copied with its value and version, then marked
//! `MOVED`. One difference: a deleted key is dropped by the migration at
//! once (`DROPPED`), since no ring event refers to the slot. Lookups never
//! wait; a write waits only for a write to the same key, or for the
//! migration copying its slot.

use std::hash::{BuildHasher, Hash};

use crate::engine::backoff::Backoff;
use crate::engine::hint::prefetch_write;
use crate::engine::reclaim::Guard;
use crate::engine::slots::{self, Zeroed};
// The slot states, the migration's sizes and the hasher are the record
// engine's table's (the same algorithm over another slot).
use crate::engine::table::{
    Hasher, CHUNK, DROPPED, EMPTY, MIN_SLOTS, MOVED, RESERVED, SEALED, SLACK,
};
pub(crate) use crate::engine::table::{FULL, STATE};
use crate::engine::word::{from_bits, to_bits};
use crate::equivalent::Equivalent;
use crate::sync::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// A write to the key is in flight.
pub(crate) const PENDING: u64 = 1 << 3;
/// The key is absent.
pub(crate) const DELETED: u64 = 1 << 4;
/// A migration is copying the slot.
pub(crate) const FROZEN: u64 = 1 << 5;
/// The writer holding `PENDING` is replacing `value`; the bits above the
/// tags are its intent record's address.
pub(crate) const DIRTY: u64 = 1 << 6;
/// Where the version (or the intent's address) starts. A version has 57
/// bits: 45 years of seqs at 10^8 writes a second.
pub(crate) const SHIFT: u32 = 7;

/// The version in a `ctrl` word that is not `DIRTY`.
#[inline]
pub(crate) fn version(ctrl: u64) -> u64 {
    debug_assert!(ctrl & DIRTY == 0);
    ctrl >> SHIFT
}

/// One key's state; see the module doc.
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) ctrl: AtomicU64,
    key: AtomicU64,
    pub(crate) value: AtomicU64,
}

// SAFETY: all zeroes is `ctrl` EMPTY: an empty slot.
unsafe impl Zeroed for Slot {
    #[cfg(kvfeed_loom)]
    fn empty() -> Self {
        Slot {
            ctrl: AtomicU64::new(EMPTY),
            key: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }
}

impl Slot {
    /// The key's bits. Meaningful once `ctrl` was loaded (`Acquire`) past
    /// `RESERVED`.
    #[inline]
    pub(crate) fn key_bits(&self) -> u64 {
        self.key.load(Ordering::Relaxed)
    }

    /// Waits until a migration that froze this slot has copied (or
    /// dropped) it.
    pub(crate) fn wait_moved(&self) {
        let mut backoff = Backoff::new();
        while self.ctrl.load(Ordering::Acquire) & STATE == FULL {
            backoff.snooze();
        }
    }
}

struct Table {
    slots: Box<[Slot]>,
    mask: usize,
    used: AtomicUsize,
    next: AtomicPtr<Table>,
    claimed: AtomicUsize,
    copied: AtomicUsize,
}

enum Probe<'t> {
    Found(&'t Slot),
    Absent(usize),
    Elsewhere,
}

impl Table {
    fn new(slots: usize) -> Box<Self> {
        debug_assert!(slots.is_power_of_two());
        Box::new(Table {
            slots: slots::table(slots),
            mask: slots - 1,
            used: AtomicUsize::new(0),
            next: AtomicPtr::new(std::ptr::null_mut()),
            claimed: AtomicUsize::new(0),
            copied: AtomicUsize::new(0),
        })
    }

    fn len(&self) -> usize {
        self.mask + 1
    }

    #[inline]
    fn start(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Probes for the key `eq` recognises. `writer`: wait out a `RESERVED`
    /// slot (it may be this key) instead of passing it.
    #[inline]
    fn probe(&self, hash: u64, writer: bool, eq: impl Fn(u64) -> bool) -> Probe<'_> {
        let mut i = self.start(hash);
        let mut backoff = Backoff::new();
        for _ in 0..self.len() {
            let slot = &self.slots[i];
            let mut ctrl = slot.ctrl.load(Ordering::Acquire);
            loop {
                let state = ctrl & STATE;
                if ctrl == EMPTY {
                    return Probe::Absent(i);
                }
                if state == SEALED {
                    return Probe::Elsewhere;
                }
                if state == RESERVED {
                    if !writer {
                        break;
                    }
                    backoff.snooze();
                    ctrl = slot.ctrl.load(Ordering::Acquire);
                    continue;
                }
                if eq(slot.key_bits()) {
                    return if state == FULL {
                        Probe::Found(slot)
                    } else {
                        Probe::Elsewhere
                    };
                }
                break;
            }
            i = (i + 1) & self.mask;
        }
        Probe::Elsewhere
    }

    /// Takes the `EMPTY` slot `i` for the key `bits`, absent.
    fn take(&self, i: usize, bits: u64) -> Option<&Slot> {
        let slot = &self.slots[i];
        slot.ctrl
            .compare_exchange(EMPTY, RESERVED, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        slot.key.store(bits, Ordering::Relaxed);
        slot.ctrl.store(DELETED | FULL, Ordering::Release);
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(slot)
    }

    #[inline]
    fn next<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g Table> {
        let next = guard.protect(&self.next, Ordering::Acquire);
        // SAFETY: a next table is retired only after this one (it becomes
        // the root first), and this one is alive under the guard.
        unsafe { next.as_ref() }
    }

    /// Inserts a copied slot (the key cannot be here already, as in the
    /// record engine's table).
    fn insert_copy(&self, hash: u64, bits: u64, value: u64, ctrl: u64) {
        let mut i = self.start(hash);
        for _ in 0..self.len() {
            let slot = &self.slots[i];
            if slot
                .ctrl
                .compare_exchange(EMPTY, RESERVED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.key.store(bits, Ordering::Relaxed);
                slot.value.store(value, Ordering::Relaxed);
                slot.ctrl.store(ctrl, Ordering::Release);
                self.used.fetch_add(1, Ordering::Relaxed);
                return;
            }
            i = (i + 1) & self.mask;
        }
        panic!("kvfeed: the next table is full during a migration");
    }
}

/// The key -> slot map of a word feed.
pub(crate) struct WordMap<K> {
    root: AtomicPtr<Table>,
    hasher: Hasher,
    live: AtomicIsize,
    _keys: std::marker::PhantomData<fn(K)>,
}

impl<K> WordMap<K> {
    pub(crate) fn new() -> Self {
        WordMap {
            root: AtomicPtr::new(Box::into_raw(Table::new(MIN_SLOTS))),
            hasher: Hasher::default(),
            live: AtomicIsize::new(0),
            _keys: std::marker::PhantomData,
        }
    }

    #[inline]
    pub(crate) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn root<'g>(&self, guard: &'g Guard<'_>) -> &'g Table {
        let root = guard.protect(&self.root, Ordering::Acquire);
        // SAFETY: the root is never null, and a table is retired only after
        // it stopped being the root.
        unsafe { &*root }
    }

    /// Starts fetching the line where `hash`'s probe begins (a hint).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard<'_>) {
        let table = self.root(guard);
        prefetch_write(&table.slots[table.start(hash)]);
    }

    #[inline]
    pub(crate) fn add_live(&self, delta: isize) {
        self.live.fetch_add(delta, Ordering::Relaxed);
    }

    /// Calls `f` on every `FULL` slot, table after table (a key copied
    /// while the scan runs may be visited twice).
    pub(crate) fn for_each(&self, guard: &Guard<'_>, mut f: impl FnMut(&Slot)) {
        let mut table = Some(self.root(guard));
        while let Some(t) = table {
            for slot in t.slots.iter() {
                if slot.ctrl.load(Ordering::Acquire) & STATE == FULL {
                    f(slot);
                }
            }
            table = t.next(guard);
        }
    }
}

impl<K: 'static> WordMap<K> {
    /// The key's slot (`FULL`, possibly `FROZEN`) in the table that holds
    /// it, if any. Never waits.
    pub(crate) fn find<'g, Q>(&self, key: &Q, hash: u64, guard: &'g Guard<'_>) -> Option<&'g Slot>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let eq = |bits| {
            // SAFETY: a `FULL` slot's key bits came from `to_bits::<K>`
            // (`slot_for_write`), and word feeds exist only for word types.
            key.equivalent(&unsafe { from_bits::<K>(bits) })
        };
        let mut table = self.root(guard);
        loop {
            match table.probe(hash, false, eq) {
                Probe::Found(slot) => return Some(slot),
                Probe::Absent(_) | Probe::Elsewhere => table = table.next(guard)?,
            }
        }
    }
}

impl<K: Hash + Eq + 'static> WordMap<K> {
    /// The key's slot for a write, creating it (absent) when the key has
    /// none. Helps a running migration first.
    pub(crate) fn slot_for_write<'g>(&self, key: &K, hash: u64, guard: &'g Guard<'_>) -> &'g Slot {
        let bits = to_bits(key);
        let eq = |b| b == bits;
        let mut backoff = Backoff::new();
        let mut table = self.root(guard);
        if table.next(guard).is_some() {
            self.help(table, guard);
            table = self.root(guard);
        }
        loop {
            match table.probe(hash, true, eq) {
                Probe::Found(slot) => return slot,
                Probe::Elsewhere => match table.next(guard) {
                    Some(next) => table = next,
                    None => {
                        self.grow(table, guard);
                        let root = self.root(guard);
                        self.help(root, guard);
                        table = self.root(guard);
                    }
                },
                Probe::Absent(i) => {
                    if let Some(next) = table.next(guard) {
                        table = next;
                        continue;
                    }
                    let root = self.root(guard);
                    if !std::ptr::eq(root, table)
                        && table.used.load(Ordering::Relaxed) * 8 > table.len() * 3
                    {
                        // As in the record engine: a migration's target keeps
                        // room for every slot still to be copied.
                        self.help(root, guard);
                        backoff.snooze();
                        table = self.root(guard);
                        continue;
                    }
                    if let Some(slot) = table.take(i, bits) {
                        if table.used.load(Ordering::Relaxed) * 4 > table.len() * 3 {
                            self.grow(table, guard);
                        }
                        return slot;
                    }
                }
            }
        }
    }

    #[cold]
    fn grow(&self, table: &Table, guard: &Guard<'_>) {
        if !std::ptr::eq(self.root(guard), table) || table.next(guard).is_some() {
            return;
        }
        // Sized for the live keys (deleted ones are dropped by the copy),
        // the keys inserted while the copy runs, at most half full.
        let used = table.used.load(Ordering::Relaxed);
        let live = (self.live.load(Ordering::Relaxed).max(0) as usize).min(used);
        let keep = live + table.len() / CHUNK + SLACK;
        let slots = (keep * 2).next_power_of_two().max(MIN_SLOTS);
        let next = Box::into_raw(Table::new(slots));
        if table
            .next
            .compare_exchange(
                std::ptr::null_mut(),
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: never shared: our CAS failed.
            drop(unsafe { Box::from_raw(next) });
        }
    }

    #[cold]
    fn help(&self, table: &Table, guard: &Guard<'_>) {
        let Some(next) = table.next(guard) else {
            return;
        };
        let start = table.claimed.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= table.len() {
            return;
        }
        let end = (start + CHUNK).min(table.len());
        for i in start..end {
            self.copy_slot(&table.slots[i], next);
        }
        let done = table.copied.fetch_add(end - start, Ordering::AcqRel) + (end - start);
        if done == table.len() {
            let old = self.root.load(Ordering::Acquire);
            debug_assert!(std::ptr::eq(old, table), "only the root migrates");
            let new = table.next.load(Ordering::Acquire);
            let swung = self
                .root
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire);
            debug_assert!(swung.is_ok(), "only the last copier swings the root");
            // SAFETY: no longer the root, every slot is copied, and only the
            // last copier gets here.
            unsafe { guard.retire_large(old) };
        }
    }

    /// Seals an empty slot, or freezes a full one (waiting out a write in
    /// flight), then drops it (deleted) or copies it.
    fn copy_slot(&self, slot: &Slot, next: &Table) {
        let mut backoff = Backoff::new();
        let ctrl = loop {
            let ctrl = slot.ctrl.load(Ordering::Acquire);
            match ctrl & STATE {
                _ if ctrl == EMPTY => {
                    if slot
                        .ctrl
                        .compare_exchange(EMPTY, SEALED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                RESERVED => backoff.snooze(),
                FULL if ctrl & PENDING != 0 => backoff.snooze(),
                // The mutant copies without freezing: a write may land in
                // this slot after the copy.
                FULL if cfg!(kvfeed_mutant = "word_no_freeze") => break ctrl,
                FULL => {
                    if slot
                        .ctrl
                        .compare_exchange(ctrl, ctrl | FROZEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break ctrl;
                    }
                }
                _ => return,
            }
        };
        let frozen = ctrl | FROZEN;
        if ctrl & DELETED != 0 {
            slot.ctrl
                .store((frozen & !STATE) | DROPPED, Ordering::Release);
            return;
        }
        let bits = slot.key_bits();
        // SAFETY: a `FULL` slot's key bits came from `to_bits::<K>`.
        let hash = self.hash(&unsafe { from_bits::<K>(bits) });
        let value = slot.value.load(Ordering::Relaxed);
        next.insert_copy(hash, bits, value, ctrl);
        slot.ctrl
            .store((frozen & !STATE) | MOVED, Ordering::Release);
    }
}

impl<K> Drop for WordMap<K> {
    fn drop(&mut self) {
        let mut table = self.root.load(Ordering::Relaxed);
        while !table.is_null() {
            // SAFETY: exclusive access; each table in the chain is owned here.
            let t = unsafe { Box::from_raw(table) };
            table = t.next.load(Ordering::Relaxed);
        }
    }
}
