//! Snapshot-then-live starts (guarantee 6).
//!
//! ## Why it is gapless and duplicate-free
//!
//! `at` is read (`head`, `Acquire`) before the scan. Every seq `<= at` was
//! claimed before the scan began, and a write claims its seq only after its
//! node is installed (`PENDING`) in the key's slot, so when the scan reaches
//! a key the slot already holds that node or a later one. The scan waits
//! out a `PENDING` word (the engine's `scan.rs`), so the version it reports
//! is the key's latest numbered event. Hence every event with seq `<= at`
//! is reflected in the snapshot, and the watcher can start live at `at + 1`.
//!
//! Events after `at` that the scan already reflected (the key changed while
//! the scan ran, and the scan saw the change) carry seq `<=` the delivered
//! version; the watcher skips exactly those. It remembers only the keys whose
//! delivered version is `> at` (versions `<= at` can never hide a live event),
//! and forgets them once its cursor passes `consistent_at`, the head after the
//! scan: no event after it can have been seen by the scan.
//!
//! A migration running during the scan may show a key twice (old table, new
//! table); the scan keeps the higher version. A key present throughout is
//! visited.

use std::collections::HashMap;
use std::hash::Hash;

use crate::engine::Engine;
use crate::event::{Change, Kind, Kinds};
use crate::watch::Filter;

/// A snapshot being delivered, and what it needs to filter live events.
pub(crate) struct Snapshot<K, V> {
    /// Items not delivered yet (delivered from the back).
    pub(crate) items: Vec<Change<K, V>>,
    /// Whether `SnapshotDone` is still to be delivered.
    pub(crate) marker_pending: bool,
    pub(crate) at: u64,
    pub(crate) consistent_at: u64,
    /// Keys delivered with a version `> at`, and that version.
    pub(crate) seen_after_at: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone + 'static, V: Clone + 'static> Snapshot<K, V> {
    /// Scans the live keys matching `filter` while writers keep running.
    pub(crate) fn take(shared: &Engine<K, V>, filter: &Filter<K>) -> Self {
        let at = shared.head();
        let mut latest: HashMap<K, Change<K, V>> = HashMap::new();
        {
            let guard = shared.guard();
            shared.for_each_live(&guard, |key, value, version| {
                if !filter.matches_key(key) {
                    return;
                }
                if latest.get(key).is_some_and(|c| c.seq >= version) {
                    return;
                }
                latest.insert(
                    key.clone(),
                    Change {
                        seq: version,
                        kind: Kind::Create,
                        key: key.clone(),
                        value: Some(value.clone()),
                        old: None,
                    },
                );
            });
        }
        let consistent_at = shared.head();
        // Live events are skipped only for what was delivered: without
        // `Create` in the mask no item is, and nothing may be skipped.
        let delivers = filter.kinds.contains(Kinds::CREATE);
        let seen_after_at = latest
            .values()
            .filter(|c| delivers && c.seq > at)
            .map(|c| (c.key.clone(), c.seq))
            .collect();
        let items = if delivers {
            latest.into_values().collect()
        } else {
            Vec::new()
        };
        Snapshot {
            items,
            marker_pending: true,
            at,
            consistent_at,
            seen_after_at,
        }
    }

    /// Whether a live event was already reflected by the snapshot.
    pub(crate) fn already_seen(&self, key: &K, seq: u64) -> bool {
        seq <= self.consistent_at && self.seen_after_at.get(key).is_some_and(|&v| seq <= v)
    }

    /// Whether the snapshot has nothing left to deliver or filter.
    pub(crate) fn finished(&self, cursor: u64) -> bool {
        self.items.is_empty() && !self.marker_pending && cursor > self.consistent_at
    }
}
