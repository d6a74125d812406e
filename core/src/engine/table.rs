//! The key table: an open-addressing hash table built for one job, finding
//! a key's one word of state in one cache line.
//!
//! ## Slots
//!
//! A slot is `{ ctrl, cur, ver, key }`, laid out together so that a write to
//! an existing key touches one line of per-key memory:
//!
//! * `ctrl`: the key's hash (high 61 bits) and the slot's state (low 3
//!   bits): `EMPTY` (the whole word 0), `RESERVED` (a writer is filling in
//!   the key), `FULL`, `MOVED` (copied into the next table), `DROPPED` (a
//!   deleted key a migration left behind) or `SEALED` (was empty when a
//!   migration passed: nothing may be inserted here any more);
//! * `cur`: the key's current node, tagged (`tag.rs`): `PENDING` while a
//!   write is in flight, `DELETED` when the key is absent, `FROZEN` once a
//!   migration took the slot;
//! * `ver`: the current node's seq (0 for none), written only by the writer
//!   holding `PENDING`, so a writer learns its predecessor's seq without
//!   reading the predecessor;
//! * `key`: inline, written once while `RESERVED`, published by the `FULL`
//!   store (`Release`), read after an `Acquire` load of `ctrl`; it never
//!   changes and is dropped only with the table's memory, after every guard
//!   that could compare it.
//!
//! A slot, once taken, belongs to its key for the table's life: a delete
//! leaves the key's slot with a `DELETED` tombstone (a later put reuses it),
//! so lookups never meet a hole and keys never move inside a table.
//!
//! ## Probing
//!
//! Linear probing from the hash. A lookup stops at an `EMPTY` slot (the key
//! is not in this table, since inserts take the first empty slot on the
//! probe path and slots never become empty again), or at the key. A slot
//! `RESERVED` with the same hash may be the same key being inserted: a
//! writer waits the few stores until it is `FULL`, so a key never gets two
//! slots; a reader passes it (the insert has not happened yet).
//!
//! ## Migration (growing, and dropping tombstones)
//!
//! When a table's taken slots pass 3/4, a writer allocates the next table
//! (sized from the live keys, so a churn of unique keys compacts rather
//! than grows) and CASes it into `next`. From then on, every write first
//! copies a chunk of slots (`CHUNK`), and new keys go to the next table.
//! Copying a slot:
//!
//! 1. `EMPTY` -> `SEALED` (CAS): nobody can insert there any more, so a
//!    lookup that meets it knows the key is not in this table.
//! 2. A `FULL` slot's `cur` is frozen (CAS adding `FROZEN`, waiting out a
//!    `PENDING` write); from then on writers of that key wait for step 3.
//! 3. A tombstone whose Delete has left the ring is dropped (`DROPPED`; the
//!    tombstone is retired); anything else is inserted into the next table
//!    (key moved bit for bit, `cur`, `ver`), then marked `MOVED` (`Release`,
//!    after the copy, so whoever sees `MOVED` finds the key there).
//!
//! A key is therefore in exactly one place that lookups accept: the oldest
//! table where its slot is `FULL`. The migrator that copies the last chunk
//! swings the map's root to the next table and retires the old one; only
//! the root table starts a migration, so at most two tables are live.
//!
//! ## Progress
//!
//! Lookups never wait. A write waits only for another write to the same key
//! (`PENDING`, or the same key's `RESERVED`), or for the migration copying
//! its key's slot (`FROZEN`); a migrator waits for a write or insert in
//! flight on the slot it copies. Each of those windows is a few stores. One
//! longer wait: while a migration runs, a write that *creates* a key in the
//! next table once that table is 3/8 full helps the copy and waits for it to
//! finish (a migrator preempted mid-chunk holds it), because the next table
//! must keep room for every slot still to be copied.

use std::cell::UnsafeCell;
use std::hash::{BuildHasher, Hash};
use std::mem::MaybeUninit;

use crate::engine::backoff::Backoff;
use crate::engine::hint::prefetch_write;
use crate::engine::node::Node;
use crate::engine::reclaim::Guard;
use crate::engine::ring::Ring;
use crate::engine::slots::{self, Zeroed};
use crate::engine::tag::{self, DELETED, FROZEN, PENDING};
use crate::equivalent::Equivalent;
use crate::sync::{AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

pub(crate) const EMPTY: u64 = 0;
pub(crate) const RESERVED: u64 = 1;
pub(crate) const FULL: u64 = 2;
pub(crate) const MOVED: u64 = 3;
pub(crate) const DROPPED: u64 = 4;
pub(crate) const SEALED: u64 = 5;
pub(crate) const STATE: u64 = 7;

/// Slots copied per helping step of a migration.
#[cfg(not(kvfeed_loom))]
pub(crate) const CHUNK: usize = 64;
/// The smallest table.
#[cfg(not(kvfeed_loom))]
pub(crate) const MIN_SLOTS: usize = 16;
/// Room for keys created by writers that have not counted them yet.
#[cfg(not(kvfeed_loom))]
pub(crate) const SLACK: usize = 256;
// Under loom the table is tiny, so a model with a handful of keys runs a
// whole migration.
#[cfg(kvfeed_loom)]
pub(crate) const CHUNK: usize = 2;
#[cfg(kvfeed_loom)]
pub(crate) const MIN_SLOTS: usize = 4;
#[cfg(kvfeed_loom)]
pub(crate) const SLACK: usize = 1;

/// The table's hasher: foldhash, seeded per process. SipHash (std's
/// default) was a tenth of a put's instructions under callgrind; foldhash
/// keeps a random seed, so keys chosen by an outsider still cannot be aimed
/// at one probe run without knowing it.
#[cfg(not(kvfeed_loom))]
pub(crate) type Hasher = foldhash::fast::RandomState;
/// Under loom every execution of a model must take the same probe paths:
/// a fixed seed.
#[cfg(kvfeed_loom)]
pub(crate) type Hasher = foldhash::fast::FixedState;

/// One key's state; see the module doc.
#[repr(C)]
pub(crate) struct Slot<K, V> {
    ctrl: AtomicU64,
    cur: AtomicPtr<Node<K, V>>,
    ver: AtomicU64,
    key: UnsafeCell<MaybeUninit<K>>,
}

// SAFETY: all zeroes is `ctrl` EMPTY, a null `cur`, `ver` 0 and an
// uninitialized key: an empty slot.
unsafe impl<K, V> Zeroed for Slot<K, V> {
    #[cfg(kvfeed_loom)]
    fn empty() -> Self {
        Slot {
            ctrl: AtomicU64::new(EMPTY),
            cur: AtomicPtr::new(std::ptr::null_mut()),
            ver: AtomicU64::new(0),
            key: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl<K, V> Slot<K, V> {
    /// The key's current-node word (tagged, see `tag.rs`).
    #[inline]
    pub(crate) fn cur(&self) -> &AtomicPtr<Node<K, V>> {
        &self.cur
    }

    /// The current node's seq. Exact for the writer holding `PENDING`.
    #[inline]
    pub(crate) fn ver(&self) -> &AtomicU64 {
        &self.ver
    }

    /// The slot's key.
    ///
    /// # Safety
    /// The caller loaded `ctrl` with `Acquire` and saw a state past
    /// `RESERVED` (the key is written and will not change), under a guard
    /// that keeps the table alive.
    #[inline]
    pub(crate) unsafe fn key(&self) -> &K {
        // SAFETY: the caller's guarantee: written once, then only read.
        unsafe { (*self.key.get()).assume_init_ref() }
    }

    /// Waits until a migration that froze this slot has copied (or dropped)
    /// it.
    pub(crate) fn wait_moved(&self) {
        let mut backoff = Backoff::new();
        while self.ctrl.load(Ordering::Acquire) & STATE == FULL {
            backoff.snooze();
        }
    }
}

pub(crate) struct Table<K, V> {
    slots: Box<[Slot<K, V>]>,
    mask: usize,
    /// Slots taken (reserved or later), for the migration trigger.
    used: AtomicUsize,
    /// The table this one is migrating into, or null.
    next: AtomicPtr<Table<K, V>>,
    /// Migration: first slot index not yet claimed by a copier.
    claimed: AtomicUsize,
    /// Migration: slots copied so far.
    copied: AtomicUsize,
}

/// Where a probe ended.
enum Probe<'t, K, V> {
    /// The key's slot, `FULL`.
    Found(&'t Slot<K, V>),
    /// Not in this table; `EMPTY` slot at this index.
    Absent(usize),
    /// Not here: moved, dropped, sealed, or the table is full. Look in
    /// `next`.
    Elsewhere,
}

impl<K, V> Table<K, V> {
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
    fn start(&self, tag: u64) -> usize {
        (tag >> 3) as usize & self.mask
    }

    /// Probes for `key`. `writer`: wait out a same-hash `RESERVED` slot (it
    /// may be this key) instead of passing it.
    #[inline]
    fn probe<Q>(&self, key: &Q, tag: u64, writer: bool) -> Probe<'_, K, V>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let mut i = self.start(tag);
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
                if ctrl & !STATE != tag {
                    break;
                }
                if state == RESERVED {
                    if !writer {
                        break;
                    }
                    backoff.snooze();
                    ctrl = slot.ctrl.load(Ordering::Acquire);
                    continue;
                }
                // SAFETY: `ctrl` was loaded with `Acquire` and is past
                // `RESERVED`; the caller's guard keeps the table alive.
                if key.equivalent(unsafe { slot.key() }) {
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

    /// Takes the `EMPTY` slot `i` for `key`: the key is stored, absent
    /// (`DELETED`, no node). None when someone else took or sealed it first.
    fn take(&self, i: usize, key: K, tag: u64) -> Result<&Slot<K, V>, K> {
        let slot = &self.slots[i];
        if slot
            .ctrl
            .compare_exchange(EMPTY, tag | RESERVED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(key);
        }
        // SAFETY: `RESERVED` makes us the slot's only writer; nobody reads
        // the key before the `FULL` store below.
        unsafe { (*slot.key.get()).write(key) };
        slot.cur
            .store(tag::with(std::ptr::null_mut(), DELETED), Ordering::Relaxed);
        slot.ver.store(0, Ordering::Relaxed);
        slot.ctrl.store(tag | FULL, Ordering::Release);
        self.used.fetch_add(1, Ordering::Relaxed);
        Ok(slot)
    }

    /// The next table, if a migration started.
    #[inline]
    fn next<'g>(&self, guard: &'g Guard<'_>) -> Option<&'g Table<K, V>> {
        let next = guard.protect(&self.next, Ordering::Acquire);
        // SAFETY: a next table is retired only after this one (it becomes
        // the root first), and this one is alive under the guard.
        unsafe { next.as_ref() }
    }
}

impl<K, V> Drop for Table<K, V> {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            let state = slot.ctrl.load(Ordering::Relaxed) & STATE;
            // A moved key belongs to the next table now.
            if state == FULL || state == DROPPED {
                // SAFETY: written (state past RESERVED), owned by this table,
                // dropped once: the table is being freed.
                unsafe { (*slot.key.get()).assume_init_drop() };
            }
        }
    }
}

/// The key -> slot map.
pub(crate) struct Map<K, V> {
    root: AtomicPtr<Table<K, V>>,
    hasher: Hasher,
    /// Live keys (creates minus deletes), to size the next table.
    live: AtomicIsize,
}

impl<K, V> Map<K, V> {
    pub(crate) fn new() -> Self {
        Map {
            root: AtomicPtr::new(Box::into_raw(Table::new(MIN_SLOTS))),
            hasher: Hasher::default(),
            live: AtomicIsize::new(0),
        }
    }

    /// The hash as a slot's `ctrl` holds it (state bits clear).
    #[inline]
    pub(crate) fn tag<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key) & !STATE
    }

    #[inline]
    fn root<'g>(&self, guard: &'g Guard<'_>) -> &'g Table<K, V> {
        let root = guard.protect(&self.root, Ordering::Acquire);
        // SAFETY: the root is never null, and a table is retired only after
        // it stopped being the root.
        unsafe { &*root }
    }

    /// Starts fetching the line where `tag`'s probe begins in the root
    /// table, so the miss on it overlaps the work a write does before it
    /// probes (allocating its record). Only a hint.
    #[inline]
    pub(crate) fn prefetch(&self, tag: u64, guard: &Guard<'_>) {
        let table = self.root(guard);
        prefetch_write(&table.slots[table.start(tag)]);
    }

    /// A key became live (+1) or was deleted (-1).
    #[inline]
    pub(crate) fn add_live(&self, delta: isize) {
        self.live.fetch_add(delta, Ordering::Relaxed);
    }

    /// The key's slot (`FULL`, possibly `FROZEN`) in the table that holds
    /// it, if any. Never waits.
    pub(crate) fn find<'g, Q>(
        &self,
        key: &Q,
        tag: u64,
        guard: &'g Guard<'_>,
    ) -> Option<&'g Slot<K, V>>
    where
        Q: ?Sized + Equivalent<K>,
    {
        let mut table = self.root(guard);
        loop {
            match table.probe(key, tag, false) {
                Probe::Found(slot) => return Some(slot),
                Probe::Absent(_) | Probe::Elsewhere => table = table.next(guard)?,
            }
        }
    }

    /// Calls `f` on every `FULL` slot, table after table (a key copied
    /// while the scan runs may be visited twice, once per table).
    pub(crate) fn for_each(&self, guard: &Guard<'_>, mut f: impl FnMut(&K, &Slot<K, V>)) {
        let mut table = Some(self.root(guard));
        while let Some(t) = table {
            for slot in t.slots.iter() {
                if slot.ctrl.load(Ordering::Acquire) & STATE == FULL {
                    // SAFETY: `FULL` loaded with `Acquire`; table alive under the guard.
                    f(unsafe { slot.key() }, slot);
                }
            }
            table = t.next(guard);
        }
    }
}

impl<K: Hash + Eq + Clone, V> Map<K, V> {
    /// The key's slot for a write, creating it (absent) when the key has
    /// none. Helps a running migration first.
    pub(crate) fn slot_for_write<'g>(
        &self,
        key: &K,
        tag: u64,
        ring: &Ring<K, V>,
        guard: &'g Guard<'_>,
    ) -> &'g Slot<K, V> {
        let ring_slots = ring.capacity() as usize;
        let mut backoff = Backoff::new();
        let mut table = self.root(guard);
        if table.next(guard).is_some() {
            self.help(table, ring, guard);
            table = self.root(guard);
        }
        loop {
            match table.probe(key, tag, true) {
                Probe::Found(slot) => return slot,
                Probe::Elsewhere => match table.next(guard) {
                    Some(next) => table = next,
                    None => {
                        // Full with no migration: start one, help it along
                        // (a table that is not the root cannot start its
                        // own), and go on from the root.
                        self.grow(table, ring_slots, guard);
                        let root = self.root(guard);
                        self.help(root, ring, guard);
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
                        // A migration's target cannot grow until it is the
                        // root, and it must keep room for every slot still to
                        // be copied (at most half of it, `grow`): past 3/8,
                        // new keys wait for the copy to finish (helping it).
                        self.help(root, ring, guard);
                        backoff.snooze();
                        table = self.root(guard);
                        continue;
                    }
                    if let Ok(slot) = table.take(i, key.clone(), tag) {
                        if table.used.load(Ordering::Relaxed) * 4 > table.len() * 3 {
                            self.grow(table, ring_slots, guard);
                        }
                        return slot;
                    }
                    // Lost slot `i` to another insert or a migration: look again.
                }
            }
        }
    }

    /// Starts migrating `table` (the root) into a new table.
    #[cold]
    fn grow(&self, table: &Table<K, V>, ring_slots: usize, guard: &Guard<'_>) {
        if !std::ptr::eq(self.root(guard), table) || table.next(guard).is_some() {
            return;
        }
        // Sized for what it will hold, at most half full: the live keys,
        // the tombstones still in the ring (at most `ring_slots`), and the
        // keys inserted while the copy runs (each insert first copies a
        // chunk, so fewer than one per chunk, plus one per thread). Sizing
        // by live keys is what keeps a churn of unique keys in flat memory.
        let used = table.used.load(Ordering::Relaxed);
        let live = (self.live.load(Ordering::Relaxed).max(0) as usize).min(used);
        let tombstones = (used - live).min(ring_slots);
        let keep = live + tombstones + table.len() / CHUNK + SLACK;
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

    /// Copies one chunk of `table` into its next table; the copier of the
    /// last chunk makes the next table the root and retires `table`.
    #[cold]
    fn help(&self, table: &Table<K, V>, ring: &Ring<K, V>, guard: &Guard<'_>) {
        let Some(next) = table.next(guard) else {
            return;
        };
        let start = table.claimed.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= table.len() {
            return;
        }
        let end = (start + CHUNK).min(table.len());
        for i in start..end {
            self.copy_slot(table, next, i, ring, guard);
        }
        let done = table.copied.fetch_add(end - start, Ordering::AcqRel) + (end - start);
        if done == table.len() {
            // The raw pointers as they were stored (`Box::into_raw`), not
            // ones made from our references: whoever frees them needs the
            // allocation's own provenance.
            let old = self.root.load(Ordering::Acquire);
            debug_assert!(std::ptr::eq(old, table), "only the root migrates");
            let new = table.next.load(Ordering::Acquire);
            let swung = self
                .root
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire);
            debug_assert!(swung.is_ok(), "only the last copier swings the root");
            // SAFETY: no longer the root, every slot is copied (lookups that
            // start now never reach it), and only the last copier gets here.
            unsafe { guard.retire_large(old) };
        }
    }

    /// Step 1-3 of the module doc for slot `i`.
    fn copy_slot(
        &self,
        table: &Table<K, V>,
        next: &Table<K, V>,
        i: usize,
        ring: &Ring<K, V>,
        guard: &Guard<'_>,
    ) {
        let slot = &table.slots[i];
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
                FULL => break ctrl,
                _ => return,
            }
        };
        let tag = ctrl & !STATE;
        let cur = loop {
            let cur = slot.cur.load(Ordering::Acquire);
            if tag::tags(cur) & PENDING != 0 {
                backoff.snooze();
                continue;
            }
            if cfg!(kvfeed_mutant = "no_freeze") {
                break cur;
            }
            if slot
                .cur
                .compare_exchange(
                    cur,
                    tag::with(tag::untag(cur), tag::tags(cur) | FROZEN),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                break cur;
            }
        };
        let ver = slot.ver.load(Ordering::Relaxed);
        if tag::tags(cur) & DELETED != 0 {
            let tombstone = tag::untag(cur);
            if tombstone.is_null() || ring.has_left(ver) {
                if !tombstone.is_null() {
                    // SAFETY: the key's last node (it is absent), no longer in
                    // the ring (checked) and now out of the table (frozen,
                    // then `DROPPED`): unreachable for readers that start
                    // later. Only this copier froze the slot: retired once.
                    unsafe { guard.retire_node(tombstone) };
                }
                slot.ctrl.store(tag | DROPPED, Ordering::Release);
                return;
            }
        }
        // SAFETY: `FULL` seen with `Acquire`. The key's bits move to `next`,
        // which owns them from the `MOVED` store on (this table's drop skips
        // `MOVED` slots); readers of this table may still compare them until
        // it is freed, after the next table (module doc).
        let key = unsafe { std::ptr::read(slot.key()) };
        next.insert_copy(key, cur, ver, tag);
        slot.ctrl.store(tag | MOVED, Ordering::Release);
    }
}

impl<K, V> Table<K, V> {
    /// Inserts a copied slot. The key cannot be here already: a writer
    /// inserts a key into a migration's next table only after finding it
    /// absent from the old one.
    fn insert_copy(&self, key: K, cur: *mut Node<K, V>, ver: u64, tag: u64) {
        let mut i = self.start(tag);
        for _ in 0..self.len() {
            let slot = &self.slots[i];
            if slot
                .ctrl
                .compare_exchange(EMPTY, tag | RESERVED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: `RESERVED` makes us the only writer of the slot.
                unsafe { (*slot.key.get()).write(key) };
                slot.cur.store(cur, Ordering::Relaxed);
                slot.ver.store(ver, Ordering::Relaxed);
                slot.ctrl.store(tag | FULL, Ordering::Release);
                self.used.fetch_add(1, Ordering::Relaxed);
                return;
            }
            i = (i + 1) & self.mask;
        }
        // Sized at two slots per key it can receive (`grow`): a full next
        // table is a bug.
        panic!("kvfeed: the next table is full during a migration");
    }
}

impl<K, V> Map<K, V> {
    /// Every node a slot still points to (current nodes and tombstones), for
    /// the feed's drop; duplicates possible.
    pub(crate) fn records(&mut self) -> Vec<*mut Node<K, V>> {
        let mut out = Vec::new();
        let mut table = self.root.load(Ordering::Relaxed);
        while !table.is_null() {
            // SAFETY: exclusive access (drop); tables in the chain are alive.
            let t = unsafe { &*table };
            for slot in t.slots.iter() {
                if slot.ctrl.load(Ordering::Relaxed) & STATE == FULL {
                    let node = tag::untag(slot.cur.load(Ordering::Relaxed));
                    if !node.is_null() {
                        out.push(node);
                    }
                }
            }
            table = t.next.load(Ordering::Relaxed);
        }
        out
    }
}

impl<K, V> Drop for Map<K, V> {
    fn drop(&mut self) {
        let mut table = self.root.load(Ordering::Relaxed);
        while !table.is_null() {
            // SAFETY: exclusive access; each table in the chain is owned here
            // (retired tables left the chain when they stopped being root).
            let t = unsafe { Box::from_raw(table) };
            table = t.next.load(Ordering::Relaxed);
        }
    }
}
