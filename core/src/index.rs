//! The key index: key -> the key's cell, a lock-free papaya map.
//!
//! The index only says *which* cell holds a key; everything about values,
//! versions and order happens in the cell (see `write.rs`). A cell is inserted
//! once when a key is created and removed once after a delete sealed it, so
//! the index sees one insert and one remove per key lifetime, never one per
//! update. papaya's collector is the crate's one reclamation domain: its guard
//! is the [`Guard`] every reader holds.
//!
//! Under `kvfeed_loom` the index is a mutex-protected list: loom cannot see
//! inside papaya, and the models check the cell and ring protocols, not the
//! map's.

use std::hash::Hash;

use papaya::Equivalent;

use crate::reclaim::Guard;
#[cfg(kvfeed_loom)]
use crate::sync::Arc;

/// How many retired records a thread collects before handing them to seize
/// as one batch. Each hand-off costs a process-wide memory barrier (a
/// `membarrier` system call, microseconds), so small batches dominate the
/// write path; memory held in batches is this many records per thread.
#[cfg(not(kvfeed_loom))]
const RETIRE_BATCH: usize = 512;

/// The index's hasher: foldhash, seeded per process. SipHash (std's
/// default) was a tenth of a put's instructions under callgrind; foldhash keeps
/// a random seed, so keys chosen by an outsider still cannot be aimed at one
/// bucket chain without knowing it.
#[cfg(not(kvfeed_loom))]
type Hasher = foldhash::fast::RandomState;

#[cfg(not(kvfeed_loom))]
pub(crate) struct Index<K, C> {
    map: papaya::HashMap<K, C, Hasher>,
}

#[cfg(not(kvfeed_loom))]
impl<K: Hash + Eq + 'static, C: 'static> Index<K, C> {
    pub(crate) fn new() -> Self {
        Self {
            map: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .resize_mode(papaya::ResizeMode::Incremental(1024))
                .collector(seize::Collector::new().batch_size(RETIRE_BATCH))
                .build(),
        }
    }

    /// Enters the reclamation domain shared by the index and the ring.
    #[inline]
    pub(crate) fn guard(&self) -> Guard<'_> {
        Guard(self.map.guard())
    }

    #[inline]
    pub(crate) fn get<'g, Q>(&self, key: &Q, guard: &'g Guard<'_>) -> Option<&'g C>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map.get(key, &guard.0)
    }

    /// Inserts `cell` under `key` unless the key is present; returns the cell
    /// now in the index and whether it is ours.
    pub(crate) fn insert_if_absent<'g>(
        &self,
        key: K,
        cell: C,
        guard: &'g Guard<'_>,
    ) -> (&'g C, bool) {
        match self.map.try_insert(key, cell, &guard.0) {
            Ok(c) => (c, true),
            Err(e) => (e.current, false),
        }
    }

    /// Removes `key` only while it still maps to `cell`; true when this call removed it.
    pub(crate) fn remove_if_same<Q>(&self, key: &Q, cell: &C, guard: &Guard<'_>) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        matches!(
            self.map
                .remove_if(key, |_, c| std::ptr::eq(c, cell), &guard.0),
            Ok(Some(_))
        )
    }

    /// Calls `f` for every entry present throughout the call (entries inserted
    /// or removed meanwhile may or may not be visited; see papaya's
    /// "Consistency"). Waits for an in-progress resize to finish.
    pub(crate) fn for_each<'g>(&self, guard: &'g Guard<'_>, mut f: impl FnMut(&'g K, &'g C)) {
        for (k, c) in self.map.iter(&guard.0) {
            f(k, c)
        }
    }
}

#[cfg(kvfeed_loom)]
pub(crate) struct Index<K, C> {
    collector: crate::reclaim::Collector,
    /// Keys behind an `Arc` so `for_each` can lend them out for the guard's
    /// lifetime without `K: Clone`.
    entries: crate::sync::Mutex<Vec<(Arc<K>, Arc<C>)>>,
}

/// The loom stand-in: a linearizable map (every operation holds one loom
/// mutex, so it is also a release/acquire edge between them, stronger than
/// papaya's per-bucket orderings). It models papaya's contract as the cell
/// protocol relies on it: an inserted cell (and the node stored in it before
/// the insert) is visible to every later `get`; a removed cell is not found
/// by later `get`s; `for_each` visits every entry present throughout.
#[cfg(kvfeed_loom)]
impl<K: Hash + Eq + 'static, C: 'static> Index<K, C> {
    pub(crate) fn new() -> Self {
        Self {
            collector: crate::reclaim::Collector::new(),
            entries: crate::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn guard(&self) -> Guard<'_> {
        self.collector.enter()
    }

    /// Lends `value` for the guard's lifetime: a clone is boxed and handed to
    /// the collector, which frees it only after every guard alive now has
    /// ended (the same promise papaya's guard makes for removed entries).
    fn lend<'g, T: 'static>(&self, value: &Arc<T>, guard: &'g Guard<'_>) -> &'g Arc<T> {
        let keep = Box::into_raw(Box::new(value.clone()));
        // SAFETY: `keep` is a fresh Box, handed over once and used only through
        // the reference returned below, which cannot outlive `guard`.
        unsafe { guard.defer_free(keep) };
        // SAFETY: the box lives until every guard alive now has ended, `guard`
        // included, and `'g` borrows `guard`.
        unsafe { &*keep }
    }

    pub(crate) fn get<'g, Q>(&self, key: &Q, guard: &'g Guard<'_>) -> Option<&'g C>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entries = crate::sync::lock(&self.entries);
        let found = entries
            .iter()
            .find(|(k, _)| key.equivalent(&**k))?
            .1
            .clone();
        drop(entries);
        Some(self.lend(&found, guard))
    }

    pub(crate) fn insert_if_absent<'g>(
        &self,
        key: K,
        cell: C,
        guard: &'g Guard<'_>,
    ) -> (&'g C, bool) {
        let cell = Arc::new(cell);
        let mut entries = crate::sync::lock(&self.entries);
        if let Some((_, c)) = entries.iter().find(|(k, _)| **k == key) {
            let c = c.clone();
            drop(entries);
            return (self.lend(&c, guard), false);
        }
        entries.push((Arc::new(key), cell.clone()));
        drop(entries);
        (self.lend(&cell, guard), true)
    }

    pub(crate) fn remove_if_same<Q>(&self, key: &Q, cell: &C, _guard: &Guard<'_>) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let mut entries = crate::sync::lock(&self.entries);
        match entries
            .iter()
            .position(|(k, c)| key.equivalent(&**k) && std::ptr::eq(&**c, cell))
        {
            Some(i) => {
                entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn for_each<'g>(&self, guard: &'g Guard<'_>, mut f: impl FnMut(&'g K, &'g C)) {
        let all: Vec<(Arc<K>, Arc<C>)> = crate::sync::lock(&self.entries).clone();
        for (k, c) in all {
            let k: &'g K = self.lend(&k, guard);
            f(k, self.lend(&c, guard))
        }
    }
}
