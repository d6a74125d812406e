//! Event records, and who frees them.
//!
//! One [`Node`] is both an event in the ring and, while it is its key's
//! newest write, the key's current value: a write allocates one node and
//! nothing else. An event's `old` is the value of the node it replaced,
//! reached through `prev`: nothing is copied on the write path.
//!
//! ## Lifetime (no reference counts)
//!
//! Because writes to one key are numbered in the order they are applied
//! (`write.rs`), a key's nodes form a chain `N1 <- N2 <- ...` (each `prev`
//! is the one before) with increasing seqs. A node `N` with seq `s` is
//! needed
//!
//! * (a) in the ring, until slot `s` moves past `s`;
//! * (b) as its key's current node, until a later write replaces it;
//! * (c) as its successor `M`'s `old`, until `M` leaves the ring.
//!
//! `M` is installed after `N` was numbered, so (b) ends before `M` is even
//! numbered, and `M`'s seq is above `s`. The node is therefore retired by
//! whoever ends (c), **when `M` leaves the ring** (`ring.rs`, `leave`),
//! once (a) has ended too, which it almost always has (slot `s` moved on
//! before slot `seq(M)` did; the rare exception is a publisher of an
//! earlier seq preempted for a whole lap). Checking (a) reads slot `s`'s
//! stamp, so the node waits on that thread's list of waiting records
//! (`pending.rs`), checked in bulk, and is retired at the first check that
//! finds its slot moved on. A key's last node has no successor: a delete tombstone is retired by
//! the migration that drops it from the table once it left the ring
//! (`table.rs`), a live current node when the feed is dropped.
//!
//! Every node is retired exactly once, through the reclamation guard, after
//! it became unreachable for readers that start later: a ring reader checks
//! the slot's seq before it follows the slot's pointer, and nothing else
//! reaches a node that is neither current nor in the ring. Readers never
//! write to a node.

use std::mem::MaybeUninit;

use crate::sync::AtomicU64;

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Create,
    Update,
    Delete,
}

/// One event record. See the module doc for who frees it.
#[repr(align(8))]
pub(crate) struct Node<K, V> {
    /// 0 until the writer holding the key's `PENDING` mark claims a number;
    /// written once, before the node becomes current and before it is
    /// published. The key's version and the event's seq.
    pub(crate) seq: AtomicU64,
    pub(crate) kind: NodeKind,
    pub(crate) key: K,
    /// The new value: written for Create and Update, not for Delete (an
    /// `Option` would cost a word per record for most `V`).
    value: MaybeUninit<V>,
    /// The key's previous node, or null (the key's first write). For an
    /// Update or Delete, its value is this event's `old`. Kept alive until
    /// this node leaves the ring (module doc).
    pub(crate) prev: *mut Node<K, V>,
}

// SAFETY: a node is shared between threads only through atomics and the
// reclamation guard; `prev` points to another node of the same key, so
// sending or sharing a node amounts to sending or sharing K and V.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Node<K, V> {}
// SAFETY: as above; shared access only reads `kind`, `key`, `value` and `prev`.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Node<K, V> {}

impl<K, V> Node<K, V> {
    /// A put not yet installed (seq 0, no predecessor yet); its kind
    /// (Create or Update) is set when it is installed.
    pub(crate) fn put(key: K, value: V) -> Self {
        Node {
            seq: AtomicU64::new(0),
            kind: NodeKind::Update,
            key,
            value: MaybeUninit::new(value),
            prev: std::ptr::null_mut(),
        }
    }

    /// A delete not yet installed.
    pub(crate) fn delete(key: K) -> Self {
        Node {
            seq: AtomicU64::new(0),
            kind: NodeKind::Delete,
            key,
            value: MaybeUninit::uninit(),
            prev: std::ptr::null_mut(),
        }
    }

    /// The new value (Create, Update).
    #[inline]
    pub(crate) fn value(&self) -> Option<&V> {
        if self.kind == NodeKind::Delete {
            return None;
        }
        // SAFETY: written at construction for every kind but Delete, and a
        // put's kind only moves between Create and Update.
        Some(unsafe { self.value.assume_init_ref() })
    }

    /// The value this event replaced (Update, Delete); None for a Create.
    ///
    /// # Safety
    /// The caller found `self` in a ring slot (or installed it) under a guard
    /// it still holds: `prev` is retired only after this node left the ring,
    /// and freed only after every guard that could have found it there.
    #[inline]
    pub(crate) unsafe fn old(&self) -> Option<&V> {
        if self.kind == NodeKind::Create || self.prev.is_null() {
            return None;
        }
        // SAFETY: the caller's guarantee above.
        unsafe { (*self.prev).value() }
    }
}

impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        if self.kind != NodeKind::Delete {
            // SAFETY: written for every kind but Delete (see `value`), and
            // dropped once, here.
            unsafe { self.value.assume_init_drop() }
        }
    }
}

/// Moves a node to the heap (a warm block from this thread's cache when
/// there is one, `pool.rs`).
#[inline]
pub(crate) fn alloc<K, V>(node: Node<K, V>) -> *mut Node<K, V> {
    #[cfg(not(kvfeed_loom))]
    {
        crate::engine::pool::boxed(node)
    }
    #[cfg(kvfeed_loom)]
    {
        Box::into_raw(Box::new(node))
    }
}

/// Drops a node and gives its memory back (to this thread's cache).
///
/// # Safety
/// `node` came from [`alloc`] and nobody uses it again.
#[inline]
pub(crate) unsafe fn free<K, V>(node: *mut Node<K, V>) {
    #[cfg(not(kvfeed_loom))]
    {
        // SAFETY: the caller's guarantee.
        unsafe { crate::engine::pool::free(node) }
    }
    #[cfg(kvfeed_loom)]
    {
        // SAFETY: the caller's guarantee; under loom nodes are plain boxes.
        drop(unsafe { Box::from_raw(node) })
    }
}

/// Drops every node in `nodes` (each a `*mut Node<K, V>`) and gives their
/// memory back, in one pass (to this thread's cache).
///
/// # Safety
/// Each node came from [`alloc`], appears once, and nobody uses it again.
// Under loom, retired nodes are freed one by one by the stand-in collector.
#[cfg_attr(kvfeed_loom, allow(dead_code))]
pub(crate) unsafe fn free_all<K, V>(nodes: &[*mut ()]) {
    #[cfg(not(kvfeed_loom))]
    {
        // SAFETY: the caller's guarantee.
        unsafe { crate::engine::pool::free_all::<Node<K, V>>(nodes) }
    }
    #[cfg(kvfeed_loom)]
    for &node in nodes {
        // SAFETY: the caller's guarantee.
        unsafe { free(node.cast::<Node<K, V>>()) }
    }
}
