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
use crate::sync::Arc;

#[cfg(not(kvfeed_loom))]
pub(crate) struct Index<K, C> {
    map: papaya::HashMap<K, Arc<C>>,
}

#[cfg(not(kvfeed_loom))]
impl<K: Hash + Eq + 'static, C: 'static> Index<K, C> {
    pub(crate) fn new() -> Self {
        Self {
            map: papaya::HashMap::builder()
                .resize_mode(papaya::ResizeMode::Incremental(1024))
                .build(),
        }
    }

    /// Enters the reclamation domain shared by the index and the ring.
    #[inline]
    pub(crate) fn guard(&self) -> Guard<'_> {
        Guard(self.map.guard())
    }

    #[inline]
    pub(crate) fn get<'g, Q>(&self, key: &Q, guard: &'g Guard<'_>) -> Option<&'g Arc<C>>
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
        cell: Arc<C>,
        guard: &'g Guard<'_>,
    ) -> (&'g Arc<C>, bool) {
        match self.map.try_insert(key, cell, &guard.0) {
            Ok(c) => (c, true),
            Err(e) => (e.current, false),
        }
    }

    /// Removes `key` only while it still maps to `cell`; true when this call removed it.
    pub(crate) fn remove_if_same<Q>(&self, key: &Q, cell: &Arc<C>, guard: &Guard<'_>) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        matches!(
            self.map
                .remove_if(key, |_, c| Arc::ptr_eq(c, cell), &guard.0),
            Ok(Some(_))
        )
    }

    /// Calls `f` for every entry present throughout the call (entries inserted
    /// or removed meanwhile may or may not be visited; see papaya's
    /// "Consistency"). Waits for an in-progress resize to finish.
    pub(crate) fn for_each<'g>(&self, guard: &'g Guard<'_>, mut f: impl FnMut(&'g K, &'g Arc<C>)) {
        for (k, c) in self.map.iter(&guard.0) {
            f(k, c)
        }
    }
}

#[cfg(kvfeed_loom)]
pub(crate) struct Index<K, C> {
    collector: crate::reclaim::Collector,
    entries: crate::sync::Mutex<Vec<(K, Arc<C>)>>,
}

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

    /// Cells are never freed while the index lives under loom (removed ones
    /// are parked in the collector), so handing out a reference tied to the
    /// guard is sound.
    fn leak<'g>(&self, cell: &Arc<C>, guard: &'g Guard<'_>) -> &'g Arc<C> {
        let keep = Box::into_raw(Box::new(cell.clone()));
        // SAFETY: `keep` is a fresh Box, reachable from nowhere else, retired once;
        // it is freed only when the collector drops, after every guard is gone.
        unsafe { guard.retire_box(keep) };
        // SAFETY: the box lives until the collector drops, which outlives `'g`.
        unsafe { &*keep }
    }

    pub(crate) fn get<'g, Q>(&self, key: &Q, guard: &'g Guard<'_>) -> Option<&'g Arc<C>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entries = crate::sync::lock(&self.entries);
        let found = entries.iter().find(|(k, _)| key.equivalent(k))?.1.clone();
        drop(entries);
        Some(self.leak(&found, guard))
    }

    pub(crate) fn insert_if_absent<'g>(
        &self,
        key: K,
        cell: Arc<C>,
        guard: &'g Guard<'_>,
    ) -> (&'g Arc<C>, bool) {
        let mut entries = crate::sync::lock(&self.entries);
        if let Some((_, c)) = entries.iter().find(|(k, _)| *k == key) {
            let c = c.clone();
            drop(entries);
            return (self.leak(&c, guard), false);
        }
        entries.push((key, cell.clone()));
        drop(entries);
        (self.leak(&cell, guard), true)
    }

    pub(crate) fn remove_if_same<Q>(&self, key: &Q, cell: &Arc<C>, _guard: &Guard<'_>) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let mut entries = crate::sync::lock(&self.entries);
        match entries
            .iter()
            .position(|(k, c)| key.equivalent(k) && Arc::ptr_eq(c, cell))
        {
            Some(i) => {
                entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn for_each<'g>(&self, guard: &'g Guard<'_>, mut f: impl FnMut(&'g K, &'g Arc<C>))
    where
        K: Clone,
    {
        let all: Vec<(K, Arc<C>)> = crate::sync::lock(&self.entries).clone();
        for (k, c) in all {
            let k: &'g K = {
                let keep = Box::into_raw(Box::new(k));
                // SAFETY: fresh unreachable Box, retired once, freed at collector drop.
                unsafe { guard.retire_box(keep) };
                // SAFETY: lives until the collector drops, which outlives `'g`.
                unsafe { &*keep }
            };
            f(k, self.leak(&c, guard))
        }
    }
}
