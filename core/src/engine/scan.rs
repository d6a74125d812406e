//! Reading every live key while writers keep running (snapshot starts,
//! `delete_prefix`).
//!
//! The scan visits every `FULL` slot of the root table, then of the table a
//! migration is copying into (a key copied meanwhile may be visited twice:
//! the caller keeps the higher version). For each key it reports the value
//! and version of the key's current node.
//!
//! A word found `PENDING` is waited out (a write's few stores): its seq may
//! already be claimed and at or below the head the snapshot started from,
//! and only the writer can say which number it got. Waiting keeps the
//! snapshot exact without ever giving a number up. This is the one place a
//! reader waits for a writer.

use std::hash::Hash;

use crate::engine::backoff::Backoff;
use crate::engine::reclaim::Guard;
use crate::engine::tag::{self, DELETED, PENDING};
use crate::engine::word::from_bits;
use crate::engine::Engine;
use crate::sync::Ordering;

impl<K: Hash + Eq + 'static, V> Engine<K, V> {
    /// Calls `f(key, value, version)` for every live key.
    pub(crate) fn for_each_live(&self, guard: &Guard<'_>, mut f: impl FnMut(&K, &V, u64)) {
        if let Some(words) = &self.words {
            words.for_each_live(guard, |key, value, version| {
                // SAFETY: a word feed's bits come from `to_bits` of its key
                // and value types.
                let (key, value) = unsafe { (from_bits::<K>(key), from_bits::<V>(value)) };
                f(&key, &value, version);
            });
            return;
        }
        self.map.for_each(guard, |key, slot| {
            let mut backoff = Backoff::new();
            let cur = loop {
                let cur = guard.protect(slot.cur(), Ordering::Acquire);
                if tag::tags(cur) & PENDING == 0 || cfg!(kvfeed_mutant = "scan_no_wait") {
                    break tag::with(tag::untag(cur), tag::tags(cur) & !PENDING);
                }
                backoff.snooze();
            };
            if tag::tags(cur) & DELETED != 0 {
                return;
            }
            // SAFETY: the key's current node, loaded under the guard.
            let node = unsafe { &*tag::untag(cur) };
            if let Some(value) = node.value() {
                f(key, value, node.seq());
            }
        });
    }
}
