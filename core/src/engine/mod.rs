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
//!
//! Feeds whose keys and values are words (`u64 -> u64` and the other
//! primitive integer types) use the word engine instead (`word/`): the
//! same protocols over slots that hold the key, the value and the event
//! inline, with no record per key. Which one a feed uses is decided when
//! it is made; every method below dispatches on it.

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
mod slots;
mod table;
mod tag;
mod word;
mod write;

pub(crate) use node::{Node, NodeKind};
pub(crate) use reclaim::Guard;
#[cfg(test)]
pub(crate) use reclaim::SEAL_EVERY;
pub(crate) use ring::Read;
pub(crate) use word::{from_bits, WordEvent, WordRead};
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
    /// The word engine's table and ring, for a feed of word types; `map`
    /// and `ring` are then empty and never used (a 16-slot table and a
    /// 2-slot ring).
    words: Option<word::Words<K>>,
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

impl<K: 'static, V: 'static> Engine<K, V> {
    /// A feed's engine; fails on a capacity that is invalid or that the
    /// machine cannot allocate.
    pub(crate) fn new(settings: Config<K, V>) -> Result<Self, ConfigError> {
        let settings = settings.validate()?;
        let capacity = settings.capacity;
        let too_large = |e: ring::RingAllocError| ConfigError::OutOfMemory {
            capacity,
            bytes: e.bytes,
        };
        let (ring, words) = if word::is_word::<K>() && word::is_word::<V>() {
            let words = word::Words::new(capacity).map_err(too_large)?;
            (Ring::new(2).map_err(too_large)?, Some(words))
        } else {
            (Ring::new(capacity).map_err(too_large)?, None)
        };
        Ok(Engine {
            seq: Sequencer::new(),
            map: Map::new(),
            ring,
            words,
            notifier: Arc::new(Notifier::default()),
            handles: AtomicUsize::new(1),
            settings,
            collector: Collector::new(),
            _owns: std::marker::PhantomData,
        })
    }
}

impl<K, V> Engine<K, V> {
    /// Whether this is a word feed (`word/`).
    #[inline]
    pub(crate) fn is_words(&self) -> bool {
        self.words.is_some()
    }

    /// What a word write needs besides the word table and ring.
    #[inline]
    fn word_parts(&self) -> word::Parts<'_> {
        word::Parts {
            seq: &self.seq,
            notifier: &self.notifier,
            collector: &self.collector,
        }
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
        match &self.words {
            Some(w) => w.ring.capacity(),
            None => self.ring.capacity(),
        }
    }

    /// Whether `cursor`'s seq is certainly not published yet; needs no guard.
    #[inline]
    pub(crate) fn not_yet(&self, cursor: u64) -> bool {
        match &self.words {
            Some(w) => w.ring.not_yet(cursor),
            None => self.ring.not_yet(cursor),
        }
    }

    /// What the ring holds for `cursor`.
    #[inline]
    pub(crate) fn read<'g>(
        &self,
        cursor: u64,
        guard: &'g Guard<'_>,
        order: Ordering,
    ) -> Read<'g, K, V> {
        match &self.words {
            Some(w) => match w.ring.read(cursor, order) {
                word::WordRead::NotYet => Read::NotYet,
                word::WordRead::Mine(ev) => Read::Word(ev),
                word::WordRead::Lapped => Read::Lapped,
            },
            None => self.ring.read(cursor, guard, order),
        }
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

    /// What a word feed's ring holds for `cursor` (`word/ring.rs`); needs
    /// no guard. Only for word feeds.
    #[inline]
    pub(crate) fn read_word(&self, cursor: u64) -> WordRead {
        match &self.words {
            Some(w) => w.ring.read(cursor, Ordering::Acquire),
            None => unreachable!("read_word on a record feed"),
        }
    }

    /// A word feed's run of published events from `cursor` on
    /// (`word/ring.rs`); 0 for a record feed.
    #[inline]
    pub(crate) fn read_word_run(
        &self,
        cursor: u64,
        max: usize,
        f: impl FnMut(&WordEvent),
    ) -> usize {
        match &self.words {
            Some(w) => w.ring.read_run(cursor, max, f),
            None => 0,
        }
    }

    /// Where a reader lapped at `cursor` continues: the oldest seq still
    /// retained. Every seq below `head + 1 - capacity` may be overwritten;
    /// every seq from it on is not (its overwriter is not claimed yet).
    pub(crate) fn resume_at(&self, cursor: u64) -> u64 {
        (self.head() + 1)
            .saturating_sub(self.capacity())
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
