//! The first engine's reclamation choice (seize; the engine now runs its own
//! epoch reclamation, `core/src/engine/epoch.rs`): the same minimal ring (a fixed array of
//! `AtomicPtr` slots holding boxed events; a write swaps in a new box and
//! retires the old one) on seize and on crossbeam-epoch.
//!
//! Readers load a slot under a guard and read through the pointer; the
//! retired box is freed only once no guard that could have loaded it is
//! alive. This is the core of a ring of boxed events, without the seq
//! claiming, lap detection or map around it.

use std::sync::atomic::{AtomicPtr, Ordering};

/// A boxed event in a slot.
#[derive(Debug)]
pub struct Node {
    /// The sequence number written.
    pub seq: u64,
    /// The value written.
    pub value: u64,
}

/// One reclamation scheme behind the minimal ring.
pub trait ReclaimRing: Send + Sync + Sized + 'static {
    /// The name in the report.
    const NAME: &'static str;
    /// A ring of `capacity` slots (a power of two).
    fn new(capacity: usize) -> Self;
    /// Writes slot `seq & mask` and retires the box it replaced.
    fn put(&self, seq: u64, value: u64);
    /// Reads slot `seq & mask` under a fresh guard.
    fn read(&self, seq: u64) -> u64;
    /// Reads `n` slots from `from` under one guard (what a watcher's drain does).
    fn read_batch(&self, from: u64, n: usize) -> u64;
}

/// The ring on seize (the collector papaya and kvfeed use).
pub struct SeizeRing {
    collector: seize::Collector,
    slots: Box<[AtomicPtr<Node>]>,
    mask: u64,
}

impl ReclaimRing for SeizeRing {
    const NAME: &'static str = "seize";

    fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        SeizeRing {
            collector: seize::Collector::new(),
            slots: (0..capacity)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            mask: capacity as u64 - 1,
        }
    }

    fn put(&self, seq: u64, value: u64) {
        let new = Box::into_raw(Box::new(Node { seq, value }));
        let old = self.slots[(seq & self.mask) as usize].swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` came from `Box::into_raw` and was just unlinked
            // from its slot, so no new reader can load it; readers that did
            // load it hold a guard, which seize waits for.
            unsafe { self.collector.retire(old, seize::reclaim::boxed) };
        }
    }

    fn read(&self, seq: u64) -> u64 {
        use seize::Guard;
        let guard = self.collector.enter();
        let p = guard.protect(&self.slots[(seq & self.mask) as usize], Ordering::Acquire);
        // SAFETY: `p` is null or a live box protected by `guard`.
        unsafe { p.as_ref() }.map_or(0, |n| n.value ^ n.seq)
    }

    fn read_batch(&self, from: u64, n: usize) -> u64 {
        use seize::Guard;
        let guard = self.collector.enter();
        let mut acc = 0u64;
        for i in 0..n as u64 {
            let slot = &self.slots[((from + i) & self.mask) as usize];
            let p = guard.protect(slot, Ordering::Acquire);
            // SAFETY: as in `read`.
            acc = acc.wrapping_add(unsafe { p.as_ref() }.map_or(0, |n| n.value ^ n.seq));
        }
        acc
    }
}

impl Drop for SeizeRing {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let p = *slot.get_mut();
            if !p.is_null() {
                // SAFETY: `&mut self`: no reader is left; the box is ours.
                drop(unsafe { Box::from_raw(p) });
            }
        }
        // Retired boxes are freed by the collector's own drop.
    }
}

/// The ring on crossbeam-epoch (its global collector).
pub struct EpochRing {
    slots: Box<[crossbeam_epoch::Atomic<Node>]>,
    mask: u64,
}

impl ReclaimRing for EpochRing {
    const NAME: &'static str = "crossbeam-epoch";

    fn new(capacity: usize) -> Self {
        assert!(capacity.is_power_of_two());
        EpochRing {
            slots: (0..capacity)
                .map(|_| crossbeam_epoch::Atomic::null())
                .collect(),
            mask: capacity as u64 - 1,
        }
    }

    fn put(&self, seq: u64, value: u64) {
        let guard = crossbeam_epoch::pin();
        let new = crossbeam_epoch::Owned::new(Node { seq, value });
        let old = self.slots[(seq & self.mask) as usize].swap(new, Ordering::AcqRel, &guard);
        if !old.is_null() {
            // SAFETY: `old` was just unlinked; only readers pinned before now
            // can hold it, and the deferred destroy waits for them.
            unsafe { guard.defer_destroy(old) };
        }
    }

    fn read(&self, seq: u64) -> u64 {
        let guard = crossbeam_epoch::pin();
        let p = self.slots[(seq & self.mask) as usize].load(Ordering::Acquire, &guard);
        // SAFETY: `p` is null or live while `guard` is pinned.
        unsafe { p.as_ref() }.map_or(0, |n| n.value ^ n.seq)
    }

    fn read_batch(&self, from: u64, n: usize) -> u64 {
        let guard = crossbeam_epoch::pin();
        let mut acc = 0u64;
        for i in 0..n as u64 {
            let p = self.slots[((from + i) & self.mask) as usize].load(Ordering::Acquire, &guard);
            // SAFETY: as in `read`.
            acc = acc.wrapping_add(unsafe { p.as_ref() }.map_or(0, |n| n.value ^ n.seq));
        }
        acc
    }
}

impl Drop for EpochRing {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader is left, so no guard is needed.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for slot in self.slots.iter() {
            let p = slot.swap(crossbeam_epoch::Shared::null(), Ordering::Relaxed, guard);
            if !p.is_null() {
                // SAFETY: the box is ours alone (see above).
                drop(unsafe { p.into_owned() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise<R: ReclaimRing>() {
        let r = R::new(8);
        for s in 0..100 {
            r.put(s, s * 2);
        }
        assert_eq!(r.read(99), (99 * 2) ^ 99);
        assert_ne!(r.read_batch(92, 8), 0);
    }

    #[test]
    fn both_rings_work() {
        exercise::<SeizeRing>();
        exercise::<EpochRing>();
    }
}
