//! Event records, and who frees them.
//!
//! One [`Node`] is both an event in the ring and, while it is its key's
//! newest write, the key's current value: a write allocates one node and
//! nothing else. An event's `old` is the value of the node it replaced,
//! its predecessor, which the ring slot keeps beside it (`ring.rs`):
//! nothing is copied on the write path, and a node is three words for
//! `u64 -> u64` (its seq and kind in one, key, value).
//!
//! ## Lifetime (no reference counts)
//!
//! Because writes to one key are numbered in the order they are applied
//! (`write.rs`), a key's nodes form a chain `N1 <- N2 <- ...` (each one's
//! predecessor is the one before) with increasing seqs. A node `N` with seq `s` is
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
//! finds its slot moved on. A key's last node has no successor: a delete
//! tombstone is retired by
//! the migration that drops it from the table once it left the ring
//! (`table.rs`), a live current node when the feed is dropped.
//!
//! Every node is retired exactly once, through the reclamation guard, after
//! it became unreachable for readers that start later: a ring reader checks
//! the slot's seq before it follows the slot's pointer, and nothing else
//! reaches a node that is neither current nor in the ring. Readers never
//! write to a node.

use std::mem::MaybeUninit;

use crate::sync::{AtomicU64, Ordering};

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum NodeKind {
    Create = 0,
    Update = 1,
    Delete = 2,
}

impl NodeKind {
    /// The kind in `meta`'s low bits (read on every event: a plain
    /// conversion, not a match).
    #[inline]
    fn of_bits(bits: u64) -> NodeKind {
        let b = (bits & KIND) as u8;
        debug_assert!(b <= NodeKind::Delete as u8);
        // SAFETY: `meta`'s low bits are only ever written from a `NodeKind`
        // (`put`, `delete`, `set_kind`, `number`), so they hold 0, 1 or 2,
        // the discriminants of this `repr(u8)` enum.
        unsafe { std::mem::transmute::<u8, NodeKind>(b) }
    }
}

/// The kind's bits in `meta`.
const KIND: u64 = 3;

/// One event record. See the module doc for who frees it.
#[repr(align(8))]
pub(crate) struct Node<K, V> {
    /// `seq << 2 | kind`. The seq is 0 until the writer holding the key's
    /// `PENDING` mark claims a number and is written once, before the node
    /// becomes current and before it is published: the key's version and
    /// the event's seq. The kind is set by that writer before it installs
    /// the node and never changes after.
    meta: AtomicU64,
    pub(crate) key: K,
    /// The new value: written for Create and Update, not for Delete (an
    /// `Option` would cost a word per record for most `V`).
    value: MaybeUninit<V>,
}

// SAFETY: a node is shared between threads only through atomics and the
// reclamation guard, so sending or sharing a node amounts to sending or
// sharing K and V.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Node<K, V> {}
// SAFETY: as above; shared access only reads `meta`, `key` and `value`.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Node<K, V> {}

impl<K, V> Node<K, V> {
    /// A put not yet installed (seq 0); its kind (Create or Update) is set
    /// when it is installed.
    pub(crate) fn put(key: K, value: V) -> Self {
        Node {
            meta: AtomicU64::new(NodeKind::Update as u64),
            key,
            value: MaybeUninit::new(value),
        }
    }

    /// A delete not yet installed.
    pub(crate) fn delete(key: K) -> Self {
        Node {
            meta: AtomicU64::new(NodeKind::Delete as u64),
            key,
            value: MaybeUninit::uninit(),
        }
    }

    /// The event's seq and the key's version (0 before it is numbered).
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.meta.load(Ordering::Relaxed) >> 2
    }

    #[inline]
    pub(crate) fn kind(&self) -> NodeKind {
        NodeKind::of_bits(self.meta.load(Ordering::Relaxed))
    }

    /// Sets a put's kind (Create or Update) before it is installed: only
    /// its writer, while nobody else can see it.
    #[inline]
    pub(crate) fn set_kind(&self, kind: NodeKind) {
        debug_assert!(self.kind() != NodeKind::Delete && kind != NodeKind::Delete);
        self.meta.store(kind as u64, Ordering::Relaxed);
    }

    /// Numbers the node: only its writer, holding the key's `PENDING` mark,
    /// before the node becomes current or is published (both `Release`).
    #[inline]
    pub(crate) fn number(&self, seq: u64) {
        let kind = self.meta.load(Ordering::Relaxed) & KIND;
        self.meta.store(seq << 2 | kind, Ordering::Relaxed);
    }

    /// The new value (Create, Update).
    #[inline]
    pub(crate) fn value(&self) -> Option<&V> {
        if self.kind() == NodeKind::Delete {
            return None;
        }
        // SAFETY: written at construction for every kind but Delete, and a
        // put's kind only moves between Create and Update.
        Some(unsafe { self.value.assume_init_ref() })
    }

    /// The value this event replaced (Update, Delete): `prev`'s, the
    /// predecessor the ring slot kept beside this node; None for a Create.
    ///
    /// # Safety
    /// `prev` was read with `self` from a ring slot (`Ring::read`) under a
    /// guard the caller still holds: a predecessor is retired only after
    /// its successor left the ring, and freed only after every guard that
    /// could have found it there.
    #[inline]
    pub(crate) unsafe fn old(&self, prev: *const Node<K, V>) -> Option<&V> {
        if self.kind() == NodeKind::Create || prev.is_null() {
            return None;
        }
        // SAFETY: the caller's guarantee above.
        unsafe { (*prev).value() }
    }
}

impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        if self.kind() != NodeKind::Delete {
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
