//! A word feed's writes, and how `get` reads a key a writer is changing.
//!
//! ## Protocol (one key)
//!
//! A key's state is its slot's `ctrl` word (`table.rs`). A writer:
//!
//! 1. loads `ctrl` (`Acquire`). `PENDING`: another write to this key is in
//!    its few stores; wait. `FROZEN`: a migration is copying the slot;
//!    wait for it and find the key again. Otherwise it decides against the
//!    version in the word (absent when `DELETED`);
//! 2. CASes `ctrl` from what it loaded to the same word with `PENDING`
//!    (`AcqRel`): where the write is ordered against every other write to
//!    the key, as in the record engine. Holding `PENDING`, it reads the
//!    old value from `value` (nobody else writes it) and, for a
//!    suppressing put, compares (equal: it stores the word back, nothing
//!    happened);
//! 3. claims a seq; refused (closed): stores the word back;
//! 4. a put writes its intent (`intent.rs`: seq, slot, new value), stores
//!    `ctrl = intent | DIRTY | PENDING | FULL` (`Release`), stores `value`
//!    (`Release`), then stores `ctrl = seq | FULL` (`Release`), which ends
//!    `PENDING`. A delete stores `ctrl = seq | DELETED | FULL` and leaves
//!    `value` alone;
//! 5. publishes `{ seq, kind, key, value, old }` in the ring.
//!
//! Seq order is the order of the successful CASes on `ctrl`, and `old` is
//! the value the previous write stored: guarantee 2, as in the record
//! engine.
//!
//! ## Reading a key (`get`, never waits)
//!
//! Load `ctrl` (`Acquire`) as `c`.
//!
//! * Not `DIRTY`: `value` has not been touched since the write that `c`'s
//!   version names (a writer holding `PENDING` without `DIRTY` has not
//!   stored it yet). Load `value`, an `Acquire` fence, `ctrl` again: equal
//!   to `c`, the value is that write's (a `value` store seen by the load is
//!   `Release` and comes after its writer's `DIRTY` store, which the second
//!   load would then see).
//! * `DIRTY`: the value is being replaced; the intent record `c` names
//!   holds the new one. Read it (`intent.rs`); it must be whole and name
//!   this slot; then `ctrl` again, equal to `c`. That write is then the
//!   key's latest at some point of the read: its intent was written
//!   before its `DIRTY` store, and the record is rewritten only for a
//!   later write of its thread, which begins after this write's last
//!   store to `ctrl`.
//!
//! A failed check retries from the top; each retry means that a write
//! made a step, so a reader is never held up by a writer that stopped
//! (lock-free). A `FROZEN` or `MOVED` slot's word and value no longer
//! change, and held the key's state when the probe found the slot `FULL`.
//!
//! Snapshots (`for_each_live`) wait out a `PENDING` word instead, as in
//! the record engine (its seq may be at or below the head the snapshot
//! started from: only the writer knows).
//!
//! Atomic read-modify-writes per put to an existing key: the CAS on
//! `ctrl`, the claim, the ring slot's CAS (as in the record engine);
//! no allocation.

use std::hash::Hash;

use crate::engine::backoff::Backoff;
use crate::engine::node::NodeKind;
use crate::engine::reclaim::Guard;
use crate::engine::word::table::{self, Slot, DELETED, DIRTY, FROZEN, FULL, PENDING, SHIFT, STATE};
use crate::engine::word::{from_bits, to_bits, WordEvent, Words};
use crate::engine::write::Expect;
use crate::error::{CasError, WriteError};
use crate::sync::{fence, Ordering};

/// What a word write needs from the rest of the engine.
pub(crate) struct Parts<'a> {
    pub(crate) seq: &'a crate::engine::sequencer::Sequencer,
    pub(crate) notifier: &'a crate::notify::Notifier,
    /// Frees the tables a migration retired (`reclaim.rs`); a word feed
    /// retires nothing else.
    pub(crate) collector: &'a crate::engine::reclaim::Collector,
}

/// The key's word once no write to it is in flight.
#[inline]
fn settled(slot: &Slot, backoff: &mut Backoff) -> u64 {
    loop {
        let ctrl = slot.ctrl.load(Ordering::Acquire);
        if ctrl & PENDING == 0 {
            return ctrl;
        }
        backoff.snooze();
    }
}

/// Step 2: takes the key (`ctrl` from the word loaded, not `PENDING`, to
/// the same with `PENDING`) and reads its value, which nobody else writes
/// while we hold it. None: the word changed, look again.
#[inline]
fn hold(slot: &Slot, ctrl: u64) -> Option<u64> {
    slot.ctrl
        .compare_exchange(ctrl, ctrl | PENDING, Ordering::AcqRel, Ordering::Acquire)
        .ok()?;
    Some(slot.value.load(Ordering::Relaxed))
}

/// Step 3: a seq for the write holding the key; when the feed is closed,
/// gives the key back (`ctrl` as it was) and nothing happened.
#[inline]
fn claim(parts: &Parts<'_>, slot: &Slot, ctrl: u64) -> Result<u64, WriteError> {
    parts.seq.claim().ok_or_else(|| {
        slot.ctrl.store(ctrl, Ordering::Release);
        WriteError::Closed
    })
}

/// A `ctrl` word read by `get`: the key's state, or None to retry.
#[inline]
fn read_slot(slot: &Slot, ctrl: u64) -> Option<Option<(u64, u64)>> {
    let found = if ctrl & DIRTY != 0 {
        let intent = (ctrl & !((1 << SHIFT) - 1)) as *const super::intent::Intent;
        // SAFETY: a `DIRTY` word holds the address of an intent record of
        // this feed (`write`), and records live as long as the feed.
        let (seq, value) = unsafe { &*intent }.read(slot as *const Slot as usize)?;
        Some((value, seq))
    } else if ctrl & DELETED != 0 {
        None
    } else {
        let value = slot.value.load(Ordering::Relaxed);
        Some((value, table::version(ctrl)))
    };
    fence(Ordering::Acquire);
    if slot.ctrl.load(Ordering::Relaxed) != ctrl {
        return None;
    }
    Some(found)
}

impl<K: Hash + Eq + 'static> Words<K> {
    /// Put (`Expect::Any`) or compare-and-put; `same` is the suppression
    /// check, if configured. Returns the seq, or the key's version when
    /// suppression made the put a no-op.
    pub(crate) fn put<V: 'static>(
        &self,
        parts: &Parts<'_>,
        key: &K,
        value: &V,
        expect: Expect,
        same: Option<fn(&V, &V) -> bool>,
        guard: &Guard<'_>,
    ) -> Result<u64, CasError> {
        let hash = self.map.hash(key);
        self.map.prefetch(hash, guard);
        let key_bits = to_bits(key);
        let bits = to_bits(value);
        let mut backoff = Backoff::new();
        loop {
            let slot = self.map.slot_for_write(key, hash, guard);
            let ctrl = settled(slot, &mut backoff);
            if ctrl & FROZEN != 0 {
                slot.wait_moved();
                continue;
            }
            debug_assert_eq!(ctrl & STATE, FULL);
            let absent = ctrl & DELETED != 0;
            let version = if absent { 0 } else { table::version(ctrl) };
            if let Expect::Version(v) = expect {
                if v != version {
                    return Err(CasError::Conflict {
                        current_version: version,
                    });
                }
            }
            let Some(old) = hold(slot, ctrl) else {
                continue;
            };
            if let (Some(same), false) = (same, absent) {
                // SAFETY: the slot's value bits came from `to_bits::<V>` (a
                // present key's value), word feeds exist only for word types.
                if same(&unsafe { from_bits::<V>(old) }, value) {
                    slot.ctrl.store(ctrl, Ordering::Release);
                    return Ok(version);
                }
            }
            let seq = claim(parts, slot, ctrl)?;
            // The mutant stores the value with no intent: a `get` then can
            // pair the new value with the old version.
            if !cfg!(kvfeed_mutant = "word_no_intent") {
                let intent = self.intents.mine();
                intent.announce(seq, slot as *const Slot as usize, bits);
                let named = intent as *const super::intent::Intent as u64;
                slot.ctrl
                    .store(named | DIRTY | PENDING | FULL, Ordering::Release);
            }
            slot.value.store(bits, Ordering::Release);
            slot.ctrl.store(seq << SHIFT | FULL, Ordering::Release);
            let kind = if absent {
                NodeKind::Create
            } else {
                NodeKind::Update
            };
            self.ring.publish(&WordEvent {
                seq,
                kind,
                key: key_bits,
                value: bits,
                old,
            });
            parts.notifier.published();
            parts.collector.tick(seq);
            if absent {
                self.map.add_live(1);
            }
            return Ok(seq);
        }
    }

    /// Deletes `key`; the Delete's seq and the old value's bits, or None
    /// when it was absent.
    pub(crate) fn delete<Q>(
        &self,
        parts: &Parts<'_>,
        key: &Q,
        guard: &Guard<'_>,
    ) -> Result<Option<(u64, u64)>, WriteError>
    where
        Q: ?Sized + Hash + crate::equivalent::Equivalent<K>,
    {
        let hash = self.map.hash(key);
        let mut backoff = Backoff::new();
        loop {
            let Some(slot) = self.map.find(key, hash, guard) else {
                return Ok(None);
            };
            let ctrl = settled(slot, &mut backoff);
            if ctrl & FROZEN != 0 {
                slot.wait_moved();
                continue;
            }
            if ctrl & DELETED != 0 {
                return Ok(None);
            }
            let Some(old) = hold(slot, ctrl) else {
                continue;
            };
            let seq = claim(parts, slot, ctrl)?;
            slot.ctrl
                .store(seq << SHIFT | DELETED | FULL, Ordering::Release);
            self.ring.publish(&WordEvent {
                seq,
                kind: NodeKind::Delete,
                key: slot.key_bits(),
                value: 0,
                old,
            });
            parts.notifier.published();
            parts.collector.tick(seq);
            self.map.add_live(-1);
            return Ok(Some((seq, old)));
        }
    }

    /// The key's value bits and version, if present. Never waits.
    pub(crate) fn get<Q>(&self, key: &Q, guard: &Guard<'_>) -> Option<(u64, u64)>
    where
        Q: ?Sized + Hash + crate::equivalent::Equivalent<K>,
    {
        let hash = self.map.hash(key);
        let slot = self.map.find(key, hash, guard)?;
        loop {
            let ctrl = slot.ctrl.load(Ordering::Acquire);
            if let Some(found) = read_slot(slot, ctrl) {
                return found;
            }
        }
    }

    /// Calls `f(key, value, version)` (bits) for every live key; waits out
    /// writes in flight (module doc).
    pub(crate) fn for_each_live(&self, guard: &Guard<'_>, mut f: impl FnMut(u64, u64, u64)) {
        self.map.for_each(guard, |slot| {
            let mut backoff = Backoff::new();
            loop {
                let ctrl = slot.ctrl.load(Ordering::Acquire);
                if ctrl & PENDING != 0 && !cfg!(kvfeed_mutant = "scan_no_wait") {
                    backoff.snooze();
                    continue;
                }
                if let Some(found) = read_slot(slot, ctrl) {
                    if let Some((value, version)) = found {
                        f(slot.key_bits(), value, version);
                    }
                    return;
                }
            }
        });
    }
}
