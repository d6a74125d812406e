//! The engine: a key table whose every write is numbered into a ring.
//!
//! The public face (`Feed`, `Watcher`, snapshots) talks to [`Engine`]
//! only; each protocol lives in the file named for it:
//!
//! 1. `table.rs`: the key table, one word of state per key, and its
//!    migrations;
//! 2. `write.rs`: where a key's writes get their order (put, delete, get);
//! 3. `sequencer.rs`: where a seq is claimed, and where the feed closes;
//! 4. `ring.rs`: where an event is published, where a watcher detects a
//!    lap, and where a record leaves the ring;
//! 5. `node.rs`: event records, and who frees them;
//! 6. `scan.rs`: reading every live key while writers run (snapshots);
//! 7. `epoch.rs`: epoch-based reclamation (guards, seals, frees), on the
//!    asymmetric fences of `barrier.rs`;
//!    `reclaim.rs` (`reclaim_loom.rs` under loom): a feed's side of it;
//! 8. `pool.rs`: a per-thread cache of node memory;
//! 9. `tag.rs`, `backoff.rs`: small primitives.

mod backoff;
pub(crate) mod barrier;
pub(crate) mod epoch;
mod hint;
#[cfg(not(kvfeed_loom))]
mod huge;
mod node;
mod pending;
#[cfg(not(kvfeed_loom))]
mod pool;
mod reclaim;
#[cfg(kvfeed_loom)]
mod reclaim_loom;
mod ring;
mod scan;
mod sequencer;
mod table;
mod tag;
mod write;

pub(crate) use node::{Node, NodeKind};
pub(crate) use reclaim::Guard;
#[cfg(test)]
pub(crate) use reclaim::SEAL_EVERY;
pub(crate) use ring::Read;
pub(crate) use write::Expect;

use crate::config::{Config, ConfigError};
use crate::notify::Notifier;
use crate::sync::{Arc, AtomicUsize, Ordering};
use reclaim::Collector;
use ring::Ring;
use sequencer::Sequencer;
use table::Map;

/// The state every handle of one feed shares.
pub(crate) struct Engine<K, V> {
    seq: Sequencer,
    map: Map<K, V>,
    ring: Ring<K, V>,
    notifier: Arc<Notifier>,
    /// Live `Feed` handles; when the last one goes the feed closes, so
    /// watchers blocked on a feed nobody can write to any more wake up.
    handles: AtomicUsize,
    settings: Config<K, V>,
    /// Dropped last: frees what was retired.
    collector: Collector,
    /// Values live behind raw pointers; this tells the compiler the feed
    /// owns them, so `Send`/`Sync` follow `K`'s and `V`'s.
    _owns: std::marker::PhantomData<Box<Node<K, V>>>,
}

// SAFETY: the engine shares nodes (K, V) between threads only through its
// protocols; with `K, V: Send + Sync` that is sound. The raw pointers in the
// table and ring are what stop the auto traits.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Engine<K, V> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Engine<K, V> {}

impl<K, V> Engine<K, V> {
    /// A feed's engine; fails on a capacity that is invalid or that the
    /// machine cannot allocate.
    pub(crate) fn new(settings: Config<K, V>) -> Result<Self, ConfigError> {
        let settings = settings.validate()?;
        let ring = Ring::new(settings.capacity).map_err(|e| ConfigError::OutOfMemory {
            capacity: settings.capacity,
            bytes: e.bytes,
        })?;
        Ok(Engine {
            seq: Sequencer::new(),
            map: Map::new(),
            ring,
            notifier: Arc::new(Notifier::default()),
            handles: AtomicUsize::new(1),
            settings,
            collector: Collector::new(),
            _owns: std::marker::PhantomData,
        })
    }

    /// Enters the reclamation domain: records read under the guard stay
    /// valid while it lives.
    #[inline]
    pub(crate) fn guard(&self) -> Guard<'_> {
        self.collector.enter()
    }

    /// The highest seq handed out so far (0 before the first write); once
    /// closed, the last seq that will ever be published.
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        self.seq.head()
    }

    /// The last seq ever published, once the feed is closed.
    #[inline]
    pub(crate) fn final_head(&self) -> Option<u64> {
        self.seq.final_head()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.ring.capacity()
    }

    /// Whether `cursor`'s seq is certainly not published yet; needs no guard.
    #[inline]
    pub(crate) fn not_yet(&self, cursor: u64) -> bool {
        self.ring.not_yet(cursor)
    }

    /// What the ring holds for `cursor`.
    #[inline]
    pub(crate) fn read<'g>(
        &self,
        cursor: u64,
        guard: &'g Guard<'_>,
        order: Ordering,
    ) -> Read<'g, K, V> {
        self.ring.read(cursor, guard, order)
    }

    /// The run of plainly published records from `cursor` on (`ring.rs`).
    #[inline]
    pub(crate) fn read_run(
        &self,
        cursor: u64,
        max: usize,
        guard: &Guard<'_>,
        f: impl FnMut(&Node<K, V>, *mut Node<K, V>),
    ) -> usize {
        self.ring.read_run(cursor, max, guard, f)
    }

    /// Where a reader lapped at `cursor` continues: the oldest seq still
    /// retained. Every seq below `head + 1 - capacity` may be overwritten;
    /// every seq from it on is not (its overwriter is not claimed yet).
    pub(crate) fn resume_at(&self, cursor: u64) -> u64 {
        (self.head() + 1)
            .saturating_sub(self.ring.capacity())
            .max(cursor + 1)
    }

    pub(crate) fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Closes the feed: later claims are refused; wakes every parked watcher.
    pub(crate) fn close(&self) {
        self.seq.close();
        self.notifier.wake_all();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.seq.is_closing()
    }

    /// A new `Feed` handle.
    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// A `Feed` handle went away; the last one closes the feed.
    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }
}

impl<K, V> Drop for Engine<K, V> {
    fn drop(&mut self) {
        // Every record not yet retired is reachable from a table slot, a
        // ring slot or a list of records waiting to be retired (`node.rs`);
        // some from two of them.
        let mut records = self.map.records();
        records.extend(self.ring.records());
        records.extend(self.ring.drain_pending());
        // Sorted, not hashed: the same order every run (loom replays runs).
        records.sort_unstable();
        records.dedup();
        for node in records {
            // SAFETY: exclusive access; each record is freed once (deduplicated),
            // and none of them was retired (module doc of `node.rs`).
            unsafe { node::free(node) };
        }
    }
}
