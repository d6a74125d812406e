//! The write protocol: how a key's writes get their order and their numbers.
//!
//! ## Protocol
//!
//! Every key lives in a [`Cell`], stored inline in its index entry, whose
//! `current` points to the key's latest [`Node`]. A node is installed
//! *pending* (seq 0) and gets its number after. For one key:
//!
//! 1. A writer loads `current` (`Acquire`). If that node is still pending, it
//!    first gives it a number ([`Shared::assign_seq`]: `fetch_add` on
//!    `next_seq`, then a CAS of the node's seq from 0; a lost CAS turns the
//!    claimed number into a skip marker).
//! 2. It decides against that node (suppression, expected version, absent
//!    key), points its own node's `prev` at it (the event's `old` is
//!    `prev`'s value), and CASes `current` from that node to its own
//!    (`AcqRel`). The cell's reference on the replaced node becomes the new
//!    node's `prev` link (see `node.rs`). A failed CAS retries from 1 with
//!    the same node: a put allocates once, however often it retries.
//! 3. It claims a number for its own node the same way (unless a helper got
//!    there first) and publishes it in the ring.
//!
//! Because a node is installed only after its predecessor has a number, and
//! gets its own number only after it is installed, **seq order equals the
//! order of the successful CASes on `current`**, which is the order the map
//! applied the writes, and each event's `old` is the previous event's
//! `value` (guarantee 2). No writer ever waits for another: a writer that
//! finds a pending node helps it instead.
//!
//! ## Deletes and key lifetimes
//!
//! A delete installs a `Delete` node, which *seals* the cell: no CAS ever
//! replaces it (writers that find it help finish the delete instead). Once the
//! tombstone has its number, the cell is removed from the index (whoever's
//! `remove_if` wins drops the cell's reference on the tombstone), and a later
//! put creates a fresh cell. Sealing is what makes removal from the index safe
//! without a lock: a writer holding the old cell can never install into it.
//! The index entry (and the cell in it) is freed by papaya once no guard can
//! see it; the tombstone once the ring has moved past the delete (guarantee
//! 7: a churn of unique keys runs in flat memory).
//!
//! ## Progress
//!
//! `put`, `delete`, `compare_and_put` are lock-free: a CAS fails only because
//! another write to the same key succeeded, and pending nodes are helped, not
//! waited for. Writes to different keys touch different cells and different
//! ring slots; they share only the `next_seq` counter (one `fetch_add`).
//! Creating a key inserts into papaya, which is lock-free except while it
//! resizes, when an insert may help copy (incremental resize, 1024 entries a
//! step).

use std::hash::Hash;

use papaya::Equivalent;

use crate::config::Limit;
use crate::error::{CasError, WriteError};
use crate::node::{release, Cell, Node, NodeKind};
use crate::reclaim::Guard;
use crate::shared::Shared;
use crate::sync::{AtomicPtr, Ordering};

/// What a put-like write should do when the key is present.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    /// Always write.
    Any,
    /// Only if the key's version is this (0: only if absent).
    Version(u64),
}

fn check_limit<T>(what: &'static str, limit: &Option<Limit<T>>, x: &T) -> Result<(), WriteError> {
    match limit {
        Some(limit) if (limit.len)(x) > limit.max => Err(WriteError::TooLarge {
            what,
            len: (limit.len)(x),
            max: limit.max,
        }),
        _ => Ok(()),
    }
}

/// A key's live cell and its current node, already numbered.
pub(crate) struct Live<'g, K, V> {
    cell: &'g Cell<K, V>,
    node: &'g Node<K, V>,
    /// `node` as loaded (keeps the allocation's provenance for `prev`, which
    /// may later free it as a `Box`).
    ptr: *mut Node<K, V>,
    version: u64,
}

impl<K: Hash + Eq + Clone + 'static, V: 'static> Shared<K, V> {
    fn check_open(&self) -> Result<(), WriteError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(WriteError::Closed);
        }
        Ok(())
    }

    fn check_sizes(&self, key: &K, value: &V) -> Result<(), WriteError> {
        check_limit("key", &self.settings.key_limit, key)?;
        check_limit("value", &self.settings.value_limit, value)
    }

    /// The key's live cell and its current (numbered) node, finishing any
    /// delete found on the way; None when the key is absent.
    pub(crate) fn live_cell<'g, Q>(&self, key: &Q, guard: &'g Guard<'_>) -> Option<Live<'g, K, V>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        loop {
            let cell = self.index.get(key, guard)?;
            let current = guard.protect(&cell.current, Ordering::Acquire);
            // SAFETY: `current` is never null and was loaded through the guard.
            // `assign_seq`: it is installed in its cell.
            let seq = unsafe { self.assign_seq(current, guard) };
            // SAFETY: as above, live for 'g.
            let node = unsafe { &*current };
            if node.kind != NodeKind::Delete {
                return Some(Live {
                    cell,
                    node,
                    ptr: current,
                    version: seq,
                });
            }
            self.unlink(key, cell, current, guard);
        }
    }

    /// Removes a sealed cell from the index; the winner drops the cell's
    /// reference on its tombstone.
    fn unlink<Q>(&self, key: &Q, cell: &Cell<K, V>, tombstone: *mut Node<K, V>, guard: &Guard<'_>)
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        if self.index.remove_if_same(key, cell, guard) {
            // SAFETY: removing the sealed cell from the index is what ends the
            // cell's ownership of its tombstone, and only one remove succeeds.
            unsafe { release(tombstone, guard) };
        }
    }

    /// Installs `node` in place of `current` (numbered, live) in `cell`. On
    /// success the cell's reference on `current` becomes `node`'s `prev`
    /// link, and `node` is numbered and published: its seq is returned. On
    /// failure the node is handed back, unshared.
    fn replace(
        &self,
        cell: &Cell<K, V>,
        current: *mut Node<K, V>,
        mut node: Box<Node<K, V>>,
        guard: &Guard<'_>,
    ) -> Result<u64, Box<Node<K, V>>> {
        node.prev = current;
        let node = Box::into_raw(node);
        match cell
            .current
            .compare_exchange(current, node, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `node` is installed; we entered `guard` before sharing it,
            // so it cannot be freed under us while we number it.
            Ok(_) => Ok(unsafe { self.assign_seq(node, guard) }),
            Err(_) => {
                // SAFETY: the CAS failed, so `node` was never shared: the box is ours.
                let mut node = unsafe { Box::from_raw(node) };
                node.prev = std::ptr::null_mut();
                Err(node)
            }
        }
    }

    /// Put (`Expect::Any`) or compare-and-put. Returns the event's seq, or
    /// the key's current version when suppression made the put a no-op.
    pub(crate) fn put(&self, key: K, value: V, expect: Expect) -> Result<u64, CasError> {
        self.check_open()?;
        self.check_sizes(&key, &value)?;
        let guard = self.index.guard();
        // The one allocation of a put: key and value move into the record.
        let mut node = Box::new(Node::change(NodeKind::Update, key, Some(value)));
        loop {
            match self.live_cell(node.key(), &guard) {
                Some(Live {
                    cell,
                    node: current,
                    ptr,
                    version,
                }) => {
                    if let Expect::Version(v) = expect {
                        if v != version {
                            return Err(CasError::Conflict {
                                current_version: version,
                            });
                        }
                    }
                    if let (Some(same), Some(now), Some(new)) =
                        (self.settings.same_value, &current.value, &node.value)
                    {
                        if same(now, new) {
                            return Ok(version);
                        }
                    }
                    node.kind = NodeKind::Update;
                    match self.replace(cell, ptr, node, &guard) {
                        Ok(seq) => return Ok(seq),
                        Err(lost) => node = lost,
                    }
                }
                None => {
                    if let Expect::Version(v) = expect {
                        if v != 0 {
                            return Err(CasError::Conflict { current_version: 0 });
                        }
                    }
                    node.kind = NodeKind::Create;
                    let index_key = node.key().clone();
                    let raw = Box::into_raw(node);
                    // The index insert publishes the cell, and the node through it.
                    let cell = Cell {
                        current: AtomicPtr::new(raw),
                    };
                    let (_, inserted) = self.index.insert_if_absent(index_key, cell, &guard);
                    if inserted {
                        // SAFETY: installed (its cell is in the index); we entered
                        // `guard` before sharing it, so it cannot be freed under us.
                        return Ok(unsafe { self.assign_seq(raw, &guard) });
                    }
                    // SAFETY: our cell lost the race and was dropped unshared, so
                    // nobody else ever saw the node: the box is ours again.
                    node = unsafe { Box::from_raw(raw) };
                }
            }
        }
    }

    /// Deletes `key`; None when it was absent (nothing emitted). Returns the
    /// Delete's seq and the old value.
    pub(crate) fn delete<Q>(&self, key: &Q) -> Result<Option<(u64, V)>, WriteError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        self.check_open()?;
        let guard = self.index.guard();
        let mut tombstone: Option<Box<Node<K, V>>> = None;
        loop {
            let Some(Live {
                cell,
                node: current,
                ptr,
                ..
            }) = self.live_cell(key, &guard)
            else {
                return Ok(None);
            };
            let node = match tombstone.take() {
                Some(node) => node,
                None => Box::new(Node::change(NodeKind::Delete, current.key().clone(), None)),
            };
            let old = current.value.clone().expect("a live node carries a value");
            match self.replace(cell, ptr, node, &guard) {
                Ok(seq) => {
                    let sealed = guard.protect(&cell.current, Ordering::Acquire);
                    self.unlink(key, cell, sealed, &guard);
                    return Ok(Some((seq, old)));
                }
                Err(lost) => tombstone = Some(lost),
            }
        }
    }

    /// The key's value and version, if present.
    pub(crate) fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, u64) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let guard = self.index.guard();
        let cell = self.index.get(key, &guard)?;
        let current = guard.protect(&cell.current, Ordering::Acquire);
        // SAFETY: never null; protected by the guard.
        let node = unsafe { &*current };
        if node.kind == NodeKind::Delete {
            return None;
        }
        // SAFETY: installed and protected. A pending node is helped to its number
        // so `get` always reports the version of an event watchers will see.
        let version = unsafe { self.assign_seq(current, &guard) };
        Some(f(node.value.as_ref()?, version))
    }
}
