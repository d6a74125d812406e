//! The write protocol: how a key's writes get their order and their numbers.
//!
//! ## Protocol (one key)
//!
//! A key's state is one word in its table slot, `cur` (`table.rs`). A
//! writer with a new node `n`:
//!
//! 1. loads `cur` (`Acquire`). `PENDING`: another write to this key is in
//!    its few stores; wait. `FROZEN`: a migration is copying the slot; wait
//!    for it and find the key again. Otherwise it decides against the
//!    current state (absent when `DELETED`; a conditional put reads the
//!    current node's seq, a suppressing put its value);
//! 2. CASes `cur` from what it loaded to the same word with `PENDING` added
//!    (`AcqRel`). That CAS is where the write is ordered against every
//!    other write to the key. The word still names the current node, so
//!    nobody ever sees `n` before step 4. A lost CAS retries from 1 with the
//!    same node: a write allocates once, however often it retries;
//! 3. claims a seq (`sequencer.rs`). A refused claim (the feed closed) puts
//!    back the word it replaced and frees `n`, which nobody saw: nothing
//!    happened;
//! 4. stores the seq into `n` and into the slot's `ver`, then stores
//!    `cur = n` (`Release`; with `DELETED` for a delete), which ends
//!    `PENDING`;
//! 5. publishes `n` in the ring with its predecessor (the node the word
//!    named) and the predecessor's seq (read from `ver` while holding
//!    `PENDING`, so the predecessor itself is never read).
//!
//! Because a key's seq is claimed only while its writer holds `PENDING`,
//! **seq order equals the order of the successful CASes on `cur`**, which
//! is the order the table applied the writes, and each event's `old` is
//! the previous event's `value` (guarantee 2). No seq is ever given up
//! (dense numbers): a claimed seq is always published.
//!
//! Readers never wait for step 2-4: `get` on a `PENDING` word reads the
//! state the word names, the one before the write, which is where the write
//! has not happened yet.
//!
//! Atomic read-modify-writes per put to an existing key: the CAS on `cur`,
//! the claim, the ring slot's CAS. A put that creates a key adds the slot's
//! CAS, the table's count and the live count.

use std::hash::Hash;

use crate::config::Limit;
use crate::engine::backoff::Backoff;
use crate::engine::node::{self, Node, NodeKind};
use crate::engine::reclaim::Guard;
use crate::engine::table::Slot;
use crate::engine::tag::{self, DELETED, FROZEN, PENDING};
use crate::engine::word::from_bits;
use crate::engine::Engine;
use crate::equivalent::Equivalent;
use crate::error::{CasError, WriteError};
use crate::sync::Ordering;

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

/// The key's word once no write to it is in flight (step 1's wait).
#[inline]
fn settled<K, V>(slot: &Slot<K, V>, backoff: &mut Backoff) -> *mut Node<K, V> {
    loop {
        let cur = slot.cur().load(Ordering::Acquire);
        if tag::tags(cur) & PENDING == 0 {
            return cur;
        }
        // The mutant installs over the write in flight (its CAS expects the
        // pending word) instead of waiting for it.
        #[cfg(kvfeed_mutant = "no_pending_wait")]
        return cur;
        backoff.snooze();
    }
}

/// A node the writer owns until it is installed: freed on an early return.
struct Owned<K, V>(*mut Node<K, V>);

impl<K, V> Drop for Owned<K, V> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: never installed, so never shared: the node is ours.
            unsafe { node::free(self.0) };
        }
    }
}

impl<K: Hash + Eq + Clone + 'static, V: 'static> Engine<K, V> {
    fn check_open(&self) -> Result<(), WriteError> {
        if self.seq.is_closing() {
            return Err(WriteError::Closed);
        }
        Ok(())
    }

    /// Put (`Expect::Any`) or compare-and-put. Returns the event's seq, or
    /// the key's current version when suppression made the put a no-op.
    pub(crate) fn put(&self, key: K, value: V, expect: Expect) -> Result<u64, CasError> {
        self.check_open()?;
        check_limit("key", &self.settings.key_limit, &key)?;
        check_limit("value", &self.settings.value_limit, &value)?;
        if let Some(words) = &self.words {
            let guard = self.collector.enter();
            let parts = self.word_parts();
            let same = self.settings.same_value;
            return words.put(&parts, &key, &value, expect, same, &guard);
        }
        let tag = self.map.tag(&key);
        let guard = self.collector.enter();
        // The key's slot is a cache miss on a large table: start it now, so
        // it overlaps the allocation below.
        self.map.prefetch(tag, &guard);
        // The one allocation of a put: key and value move into the record.
        let mut node = Owned(node::alloc(Node::put(key, value)));
        let mut backoff = Backoff::new();
        loop {
            // SAFETY: we own the node until it is installed.
            let key = unsafe { &(*node.0).key };
            let slot = self.map.slot_for_write(key, tag, &self.ring, &guard);
            let cur = settled(slot, &mut backoff);
            if tag::tags(cur) & FROZEN != 0 {
                slot.wait_moved();
                continue;
            }
            let present = tag::untag(cur);
            let absent = tag::tags(cur) & DELETED != 0;
            let kind = if absent {
                if let Expect::Version(v) = expect {
                    if v != 0 {
                        return Err(CasError::Conflict { current_version: 0 });
                    }
                }
                NodeKind::Create
            } else if matches!(expect, Expect::Version(_)) || self.settings.same_value.is_some() {
                // Only a conditional or suppressing put reads the current
                // node (a cache miss on memory last written long ago); a
                // plain put decides from the slot's word alone.
                // SAFETY: the current node, loaded under the guard.
                let now = unsafe { &*present };
                let version = now.seq();
                if let Expect::Version(v) = expect {
                    if v != version {
                        return Err(CasError::Conflict {
                            current_version: version,
                        });
                    }
                }
                if let (Some(same), Some(old), Some(new)) = (
                    self.settings.same_value,
                    now.value(),
                    // SAFETY: still ours.
                    unsafe { (*node.0).value() },
                ) {
                    if same(old, new) {
                        return Ok(version);
                    }
                }
                NodeKind::Update
            } else {
                NodeKind::Update
            };
            // SAFETY: still ours (not installed).
            unsafe { (*node.0).set_kind(kind) };
            if let Some(seq) = self.commit(slot, cur, &mut node, &guard)? {
                if absent {
                    self.map.add_live(1);
                }
                return Ok(seq);
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
        if let Some(words) = &self.words {
            let guard = self.collector.enter();
            let deleted = words.delete(&self.word_parts(), key, &guard)?;
            // SAFETY: a word feed's value bits come from `to_bits::<V>`.
            return Ok(deleted.map(|(seq, old)| (seq, unsafe { from_bits::<V>(old) })));
        }
        let tag = self.map.tag(key);
        let guard = self.collector.enter();
        let mut node = Owned(std::ptr::null_mut());
        let mut backoff = Backoff::new();
        loop {
            let Some(slot) = self.map.find(key, tag, &guard) else {
                return Ok(None);
            };
            let cur = settled(slot, &mut backoff);
            if tag::tags(cur) & FROZEN != 0 {
                slot.wait_moved();
                continue;
            }
            if tag::tags(cur) & DELETED != 0 {
                return Ok(None);
            }
            let present = tag::untag(cur);
            if node.0.is_null() {
                // SAFETY: the slot is `FULL` (found), its table alive under the guard.
                let k = unsafe { slot.key() }.clone();
                node.0 = node::alloc(Node::delete(k));
            }
            if let Some(seq) = self.commit(slot, cur, &mut node, &guard)? {
                self.map.add_live(-1);
                // SAFETY: `present` was current and is now the Delete's
                // predecessor: alive until the Delete leaves the ring, and
                // protected by our guard either way.
                let old = unsafe { (*present).value().cloned() };
                return Ok(Some((seq, old.expect("a live node carries a value"))));
            }
        }
    }

    /// Steps 2-5 of the protocol: install `node` in place of `cur` (not
    /// `PENDING`), number it, publish it. `Ok(None)`: the CAS lost, try
    /// again (the node is still the caller's). On success the node belongs
    /// to the feed; on a refused claim it is still the caller's (it frees
    /// it).
    fn commit(
        &self,
        slot: &Slot<K, V>,
        cur: *mut Node<K, V>,
        node: &mut Owned<K, V>,
        guard: &Guard<'_>,
    ) -> Result<Option<u64>, WriteError> {
        let n = node.0;
        let pending = tag::with(tag::untag(cur), tag::tags(cur) | PENDING);
        if slot
            .cur()
            .compare_exchange(cur, pending, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(None);
        }
        // Holding the key: `ver` is the version of the node we replace.
        let prev_seq = slot.ver().load(Ordering::Relaxed);
        let Some(seq) = self.seq.claim() else {
            slot.cur().store(cur, Ordering::Release);
            return Err(WriteError::Closed);
        };
        // SAFETY: `n` is ours, not yet visible; only we write its seq.
        let node_ref = unsafe { &*n };
        node_ref.number(seq);
        slot.ver().store(seq, Ordering::Relaxed);
        let word = if node_ref.kind() == NodeKind::Delete {
            tag::with(n, DELETED)
        } else {
            n
        };
        slot.cur().store(word, Ordering::Release);
        // The node belongs to the feed from here on.
        node.0 = std::ptr::null_mut();
        // SAFETY: `n` is installed with seq `seq`, we are its one publisher,
        // and its predecessor (or null) is the node it replaced, with seq
        // `prev_seq`.
        unsafe { self.ring.publish(seq, n, tag::untag(cur), prev_seq, guard) };
        self.notifier.published();
        self.collector.tick(seq);
        Ok(Some(seq))
    }

    /// The key's value and version, if present. Never waits.
    pub(crate) fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, u64) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        if let Some(words) = &self.words {
            let guard = self.collector.enter();
            let (bits, version) = words.get(key, &guard)?;
            // SAFETY: a word feed's value bits come from `to_bits::<V>`.
            let value = unsafe { from_bits::<V>(bits) };
            return Some(f(&value, version));
        }
        let tag = self.map.tag(key);
        let guard = self.collector.enter();
        let slot = self.map.find(key, tag, &guard)?;
        // A write in flight (`PENDING`) has not happened yet: the word still
        // names the state before it, which is what this reads.
        let cur = guard.protect(slot.cur(), Ordering::Acquire);
        if tag::tags(cur) & DELETED != 0 {
            return None;
        }
        // SAFETY: the key's current node (not deleted, so not null), loaded
        // under the guard: retired only after a later write replaced it and
        // left the ring.
        let node = unsafe { &*tag::untag(cur) };
        Some(f(node.value()?, node.seq()))
    }
}
