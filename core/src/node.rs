//! Event records and key cells: what a slot and a cell point to.
//!
//! One [`Node`] is both the key's current value (while its cell points to it)
//! and the event the ring publishes: a put allocates one node, and no copy is
//! made for the feed. Values are behind `Arc` so a node's `old` shares the
//! previous node's value instead of pointing at the previous node, which would
//! chain every version of a key together.
//!
//! ## Ownership
//!
//! A node has at most two owners, counted in `refs`:
//!
//! * the **cell**, while the node is the cell's `current` (for a tombstone,
//!   until the sealed cell has been removed from the index);
//! * the **ring**, from creation until its slot is overwritten (or its
//!   publisher finds the slot already lapped).
//!
//! The owner that drops the count to zero retires the node through the
//! reclamation guard; readers never touch `refs` (reading an event writes
//! nothing shared) and rely on the guard instead.

use crate::reclaim::Guard;
use crate::sync::{Arc, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

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

/// A key's home: found through the index, it orders every write to the key.
pub(crate) struct Cell<K, V> {
    pub(crate) key: K,
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
    /// Owners still holding the node (cell, ring); see the module doc.
    refs: AtomicUsize,
    pub(crate) kind: NodeKind,
    /// The key's cell (None for skip markers); gives readers the key.
    pub(crate) cell: Option<Arc<Cell<K, V>>>,
    /// New value: Some for Create/Update.
    pub(crate) value: Option<Arc<V>>,
    /// Previous value: Some for Update/Delete.
    pub(crate) old: Option<Arc<V>>,
}

impl<K, V> Node<K, V> {
    /// A pending change owned by its cell and the ring.
    pub(crate) fn change(
        kind: NodeKind,
        cell: Arc<Cell<K, V>>,
        value: Option<Arc<V>>,
        old: Option<Arc<V>>,
    ) -> Self {
        Node {
            seq: AtomicU64::new(0),
            refs: AtomicUsize::new(2),
            kind,
            cell: Some(cell),
            value,
            old,
        }
    }

    /// A skip marker for `seq`, owned by the ring alone.
    pub(crate) fn skip(seq: u64) -> Self {
        Node {
            seq: AtomicU64::new(seq),
            refs: AtomicUsize::new(1),
            kind: NodeKind::Skip,
            cell: None,
            value: None,
            old: None,
        }
    }

    /// The node's key. Only for changes (skip markers have none).
    pub(crate) fn key(&self) -> &K {
        &self
            .cell
            .as_ref()
            .expect("only change records are read for their key")
            .key
    }
}

/// Drops one owner's reference to `node`, retiring it when it was the last.
///
/// # Safety
/// `node` is a live node (`Box::into_raw`) and the caller owns one of its
/// references, which it gives up here and never uses again.
pub(crate) unsafe fn release<K, V>(node: *mut Node<K, V>, guard: &Guard<'_>) {
    // SAFETY: the caller owns a reference, so the node is alive.
    let last = unsafe { (*node).refs.fetch_sub(1, Ordering::AcqRel) } == 1;
    if last {
        // SAFETY: no owner is left, so neither the cell nor the ring can hand the
        // node out again; readers that loaded it earlier are covered by the guard's
        // grace period. The count reaches zero once, so it is retired once.
        unsafe { guard.retire_box(node) }
    }
}
