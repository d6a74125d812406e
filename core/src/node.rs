//! Event records and key cells: what a slot and a cell point to.
//!
//! One [`Node`] is both the key's current value (while its cell points to it)
//! and the event the ring publishes: a put allocates one node and nothing
//! else (key and value live inline). An event's `old` is the value of the
//! node it replaced, reached through `prev`: nothing is copied, and no
//! reference count of the old value is touched on the write path.
//!
//! ## Ownership
//!
//! A node has up to three owners, counted in `refs`:
//!
//! * the **cell**, while the node is the cell's `current` (for a tombstone,
//!   until the sealed cell has been removed from the index). When a write
//!   replaces the node, this reference passes to the new node's `prev` link,
//!   so replacing costs no count update;
//! * the **ring**, from creation until its slot is overwritten (or its
//!   publisher finds the slot already lapped);
//! * its **successor's `prev` link**, until the successor leaves the ring.
//!
//! The last one keeps history bounded: a node needs its predecessor only
//! while readers can still find it in the ring, so when it leaves the ring it
//! lets go of `prev`, once the guards that could still be reading it are gone.
//! A key updated a million times keeps at most the nodes still in the ring,
//! its current node and that node's predecessor.
//!
//! The owner that drops the count to zero retires the node through the
//! reclamation guard; readers never touch `refs` (reading an event writes
//! nothing shared) and rely on the guard instead.

use crate::reclaim::{self, Collector, Guard};
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Create,
    Update,
    Delete,
    /// A sequence number a writer claimed and had to give up: readers pass
    /// over it silently.
    Skip,
}

/// A key's home, stored inline in the index entry: it orders every write to
/// the key.
pub(crate) struct Cell<K, V> {
    /// The key's latest node. Never null. Once it points to a `Delete` node the
    /// cell is *sealed*: it never changes again, and the key lives on (if it is
    /// written again) in a new cell.
    pub(crate) current: AtomicPtr<Node<K, V>>,
}

/// One event record. See the module doc for who owns it.
pub(crate) struct Node<K, V> {
    /// 0 while pending; set exactly once (a CAS from 0) by whoever claimed a
    /// number for it, before the node is published in the ring's slot for
    /// that number. Once non-zero it is the key's version and the event's seq.
    pub(crate) seq: AtomicU64,
    /// Owners still holding the node (cell, ring, successor); see the module doc.
    refs: AtomicUsize,
    pub(crate) kind: NodeKind,
    /// The key (None for skip markers).
    pub(crate) key: Option<K>,
    /// New value: Some for Create/Update.
    pub(crate) value: Option<V>,
    /// The node this one replaced (null for Create and skips); its value is
    /// this event's `old`. A counted reference, given up (deferred) when this
    /// node leaves the ring; only readers that found this node in the ring
    /// follow it.
    pub(crate) prev: *mut Node<K, V>,
}

// SAFETY: a node is shared between threads only through atomics and the
// reclamation guard; `prev` is a counted reference to another node of the same
// type, so sending or sharing a node amounts to sending or sharing K and V.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Node<K, V> {}
// SAFETY: as above; shared access only reads `key`, `value` and `prev`.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Node<K, V> {}

impl<K, V> Node<K, V> {
    /// A pending change, owned by its cell and the ring once installed.
    pub(crate) fn change(kind: NodeKind, key: K, value: Option<V>) -> Self {
        Node {
            seq: AtomicU64::new(0),
            refs: AtomicUsize::new(2),
            kind,
            key: Some(key),
            value,
            prev: std::ptr::null_mut(),
        }
    }

    /// A skip marker for `seq`, owned by the ring alone.
    pub(crate) fn skip(seq: u64) -> Self {
        Node {
            seq: AtomicU64::new(seq),
            refs: AtomicUsize::new(1),
            kind: NodeKind::Skip,
            key: None,
            value: None,
            prev: std::ptr::null_mut(),
        }
    }

    /// The node's key. Only for changes (skip markers have none).
    #[inline]
    pub(crate) fn key(&self) -> &K {
        self.key
            .as_ref()
            .expect("only change records are read for their key")
    }

    /// The value this event replaced (Update, Delete).
    ///
    /// # Safety
    /// The caller found `self` in a ring slot under a guard it still holds:
    /// `prev` is released only after this node leaves the ring, and then only
    /// once every guard that could have found it there is gone.
    #[inline]
    pub(crate) unsafe fn old(&self) -> Option<&V> {
        if self.prev.is_null() {
            return None;
        }
        // SAFETY: the caller's guarantee above: `prev` is still owned by `self`.
        unsafe { (*self.prev).value.as_ref() }
    }
}

/// Drops one owner's reference to `node`, retiring it when it was the last.
///
/// # Safety
/// `node` is a live node (`Box::into_raw`) and the caller owns one of its
/// references, which it gives up here and never uses again.
pub(crate) unsafe fn release<K, V>(node: *mut Node<K, V>, guard: &Guard<'_>) {
    // SAFETY: the caller owns a reference, so the node is alive.
    if unsafe { drop_ref(node) } {
        // SAFETY: no owner is left, so nobody can hand the node out again;
        // readers that loaded it earlier are covered by the guard's grace
        // period. The count reaches zero once, so it is retired once.
        unsafe { guard.retire_box(node) }
    }
}

/// The ring lets go of `node`: drops the ring's reference and, once every
/// reader that might still follow it is gone, the node's `prev` link.
///
/// # Safety
/// The caller owns the ring's reference on `node` and gives it up.
pub(crate) unsafe fn leave_ring<K: 'static, V: 'static>(node: *mut Node<K, V>, guard: &Guard<'_>) {
    // SAFETY: we still own the ring's reference, so the node is alive.
    let prev = unsafe { (*node).prev };
    if !prev.is_null() {
        // SAFETY: `prev` is the node's counted link, given up exactly once (a
        // node leaves the ring once); deferred past every current guard,
        // since readers that found `node` in the ring may still read `old`.
        unsafe { guard.defer(prev, release_deferred::<K, V>) };
    }
    // SAFETY: the ring's reference, given up once.
    unsafe { release(node, guard) };
}

/// The deferred half of [`leave_ring`]: drops a `prev` link.
///
/// # Safety
/// Called by the collector, once, for a link scheduled by `leave_ring`.
unsafe fn release_deferred<K, V>(node: *mut Node<K, V>, collector: &Collector) {
    // SAFETY: the link being dropped kept the node alive until now.
    if unsafe { drop_ref(node) } {
        // SAFETY: the last owner is gone; retired once, freed after every guard
        // that could still have found it (through a slot or a cell).
        unsafe { reclaim::retire_box_in(collector, node) }
    }
}

/// Decrements the count; true when it reached zero.
///
/// # Safety
/// `node` is alive and the caller owns one of its references.
#[inline]
unsafe fn drop_ref<K, V>(node: *mut Node<K, V>) -> bool {
    // SAFETY: alive (caller).
    unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) == 1 }
}
