//! The sequenced ring: where an event is published and where a watcher
//! detects a lap.
//!
//! ## Protocol
//!
//! Slot `seq & mask` holds the node for `seq` once published. The node's `seq`
//! is set before publication and never changes afterwards, so one load of the
//! slot tells a reader at cursor `c` everything:
//!
//! * null, or a node with seq `< c`: `c` is **not yet published**;
//! * a node with seq `== c`: **mine**;
//! * a node with seq `> c` (necessarily `c + k * capacity`): the reader was
//!   **lapped**.
//!
//! A publisher of `seq` CASes the slot from whatever it holds to its node,
//! unless the slot already holds a newer seq (the publisher was preempted for a
//! whole lap): then its event is already overwritten and it only drops the
//! ring's reference. Slots therefore only ever move forward, which is what
//! makes "older than `c`" mean "not yet published" rather than "lost".
//!
//! Orderings: the publishing CAS is `SeqCst` (a `Release` of the node's fields,
//! and half of the parking handshake in `notify.rs`); readers load with
//! `Acquire`, which makes the node's fields visible. The overwritten node's
//! ring reference is dropped by the publisher that replaced it, and with it
//! (deferred past current readers) the node's link to its predecessor, which
//! ring readers follow for `old`.
//!
//! Progress: publishing is lock-free (a CAS loop that fails only when another
//! publisher of the same slot succeeded); reading is wait-free.

use crate::node::{leave_ring, Node};
use crate::reclaim::Guard;
use crate::sync::{AtomicPtr, Ordering};

/// What a reader found in a slot.
pub(crate) enum Slot<'g, K, V> {
    /// The cursor's seq is not published yet.
    NotYet,
    /// The record for the cursor's seq.
    Mine(&'g Node<K, V>),
    /// The cursor's seq was overwritten.
    Lapped,
}

pub(crate) struct Ring<K, V> {
    /// `slots[seq & mask]` points to the newest node published for a seq with
    /// that remainder, or is null before the first one.
    slots: Box<[AtomicPtr<Node<K, V>>]>,
    mask: u64,
}

impl<K, V> Ring<K, V> {
    pub(crate) fn capacity(&self) -> u64 {
        self.mask + 1
    }
}

impl<K: 'static, V: 'static> Ring<K, V> {
    /// A ring of `capacity` slots; `capacity` is a power of two (checked by `Config`).
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!(capacity.is_power_of_two());
        Ring {
            slots: (0..capacity)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            mask: capacity as u64 - 1,
        }
    }

    #[inline]
    fn slot(&self, seq: u64) -> &AtomicPtr<Node<K, V>> {
        &self.slots[(seq & self.mask) as usize]
    }

    /// Publishes `node`, whose seq is already `seq`, handing the ring's
    /// reference on it to the slot.
    ///
    /// # Safety
    /// `node` is live, its `seq` field is `seq`, and the caller owns the ring's
    /// reference on it (it is published at most once).
    pub(crate) unsafe fn publish(&self, node: *mut Node<K, V>, seq: u64, guard: &Guard<'_>) {
        let slot = self.slot(seq);
        let mut current = guard.protect(slot, Ordering::Acquire);
        loop {
            if !current.is_null() {
                // SAFETY: `current` was loaded through the guard, so it is not freed yet.
                let held = unsafe { (*current).seq.load(Ordering::Relaxed) };
                if held > seq {
                    // Lapped before we published: the event is already overwritten.
                    // SAFETY: we own the ring's reference and give it up.
                    unsafe { leave_ring(node, guard) };
                    return;
                }
            }
            match slot.compare_exchange_weak(current, node, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => {
                    if !current.is_null() {
                        // SAFETY: the slot held the ring's reference on `current`;
                        // our CAS removed it from the slot, so that reference is ours.
                        unsafe { leave_ring(current, guard) };
                    }
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// What the slot for `cursor` holds, read under `guard`.
    #[inline]
    pub(crate) fn read<'g>(
        &self,
        cursor: u64,
        guard: &'g Guard<'_>,
        order: Ordering,
    ) -> Slot<'g, K, V> {
        let ptr = guard.protect(self.slot(cursor), order);
        if ptr.is_null() {
            return Slot::NotYet;
        }
        // SAFETY: loaded through the guard, so the node lives at least as long as 'g.
        let node = unsafe { &*ptr };
        let seq = node.seq.load(Ordering::Relaxed);
        match seq.cmp(&cursor) {
            std::cmp::Ordering::Less => Slot::NotYet,
            std::cmp::Ordering::Equal => Slot::Mine(node),
            std::cmp::Ordering::Greater => Slot::Lapped,
        }
    }

    /// Drops the ring's reference on every node still in a slot.
    ///
    /// # Safety
    /// No other thread uses the ring any more (called from the feed's drop).
    pub(crate) unsafe fn clear(&mut self, guard: &Guard<'_>) {
        for slot in self.slots.iter() {
            let node = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            if !node.is_null() {
                // SAFETY: the slot held the ring's reference; we took it out.
                unsafe { leave_ring(node, guard) };
            }
        }
    }
}
