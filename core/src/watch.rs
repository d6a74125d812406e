//! Watch options and the filter a watcher applies.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;

use crate::event::{Kind, Kinds};
use crate::sync::Arc;

type Predicate<K> = Arc<dyn Fn(&K) -> bool + Send + Sync>;

/// Where a watcher starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// After the current head.
    Now,
    /// At this seq (at least 1).
    From(u64),
    /// Snapshot of the live keys, then live events.
    Snapshot,
}

/// What a watcher sees and where it starts.
///
/// Key filters combine: an event matches when its key is one of the
/// [`key`](Self::key)s, **or** starts with one of the
/// [`prefix`](Self::prefix)es, **or** satisfies one of the
/// [`matching`](Self::matching) predicates (no key filter at all: every key),
/// **and** its kind is in [`kinds`](Self::kinds).
///
/// ```
/// use kvfeed::{Feed, Kinds, WatchOptions};
/// let feed: Feed<String, u8> = Feed::new();
/// let mut w = feed.watch(
///     WatchOptions::all().prefix("user/").key("config".to_string()).kinds(Kinds::UPDATE | Kinds::DELETE),
/// );
/// feed.put("user/1".into(), 1).unwrap();        // a Create: filtered out by kind
/// feed.put("user/1".into(), 2).unwrap();        // an Update under the prefix
/// feed.put("other".into(), 3).unwrap();         // another key
/// {
///     let ev = w.try_next().unwrap().unwrap(); // borrowed until dropped
///     assert_eq!(ev.as_change().unwrap().value(), Some(&2));
/// }
/// assert!(w.try_next().unwrap().is_none());
/// ```
pub struct WatchOptions<K> {
    pub(crate) keys: Vec<K>,
    pub(crate) predicates: Vec<Predicate<K>>,
    pub(crate) kinds: Kinds,
    pub(crate) start: Start,
}

impl<K> fmt::Debug for WatchOptions<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchOptions")
            .field("keys", &self.keys.len())
            .field("predicates", &self.predicates.len())
            .field("kinds", &self.kinds)
            .field("start", &self.start)
            .finish()
    }
}

impl<K> Default for WatchOptions<K> {
    fn default() -> Self {
        Self::all()
    }
}

impl<K> WatchOptions<K> {
    /// Every key, every kind, starting after the current head.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// feed.put(1, 1).unwrap(); // before the watcher: not seen
    /// let mut w = feed.watch(WatchOptions::all());
    /// let s2 = feed.put(2, 2).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), s2);
    /// ```
    pub fn all() -> Self {
        WatchOptions {
            keys: Vec::new(),
            predicates: Vec::new(),
            kinds: Kinds::ALL,
            start: Start::Now,
        }
    }

    /// Also match this key.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<String, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all().key("theme".to_string()));
    /// feed.put("lang".into(), 1).unwrap();
    /// feed.put("theme".into(), 2).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().key(), "theme");
    /// assert!(w.try_next().unwrap().is_none());
    /// ```
    pub fn key(mut self, key: K) -> Self {
        self.keys.push(key);
        self
    }

    /// Also match these keys (many keys are looked up in a hash set).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all().keys((0..100).filter(|k| k % 10 == 0)));
    /// for k in 0..100 { feed.put(k, k).unwrap(); }
    /// let mut buf = Vec::new();
    /// assert_eq!(w.next_batch(&mut buf, 1000).unwrap(), 10);
    /// ```
    pub fn keys(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Also match keys starting with `prefix` (byte-like keys: `String`,
    /// `Vec<u8>`, `&str`, ...).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<Vec<u8>, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all().prefix(b"\x01"));
    /// feed.put(vec![0, 1], 1).unwrap();
    /// feed.put(vec![1, 0], 2).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().key(), &[1, 0]);
    /// assert!(w.try_next().unwrap().is_none());
    /// ```
    pub fn prefix(self, prefix: impl AsRef<[u8]>) -> Self
    where
        K: AsRef<[u8]>,
    {
        let prefix = prefix.as_ref().to_vec();
        self.matching(move |k: &K| k.as_ref().starts_with(&prefix))
    }

    /// Also match keys for which `predicate` is true (any key type). It runs
    /// on the watcher's thread, once per event it reads.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<(u32, u32), &str> = Feed::new(); // (tenant, id)
    /// let mut w = feed.watch(WatchOptions::all().matching(|&(tenant, _)| tenant == 7));
    /// feed.put((1, 1), "a").unwrap();
    /// feed.put((7, 1), "b").unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().value(), Some(&"b"));
    /// assert!(w.try_next().unwrap().is_none());
    /// ```
    pub fn matching(mut self, predicate: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push(Arc::new(predicate));
        self
    }

    /// Only these kinds (default: all).
    ///
    /// ```
    /// use kvfeed::{Feed, Kind, Kinds, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut deletes = feed.watch(WatchOptions::all().kinds(Kinds::DELETE));
    /// feed.put(1, 1).unwrap();
    /// feed.put(1, 2).unwrap();
    /// feed.delete(&1).unwrap();
    /// assert_eq!(deletes.try_next().unwrap().unwrap().as_change().unwrap().kind(), Kind::Delete);
    /// assert!(deletes.try_next().unwrap().is_none());
    /// ```
    pub fn kinds(mut self, kinds: Kinds) -> Self {
        self.kinds = kinds;
        self
    }

    /// Start at `seq` (0 is taken as 1). A seq already overwritten is
    /// reported as `Lagged` by the first read; a seq not written yet is
    /// waited for.
    ///
    /// ```
    /// use kvfeed::{Config, Feed, RecvError, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::with_config(Config::new().capacity(4)).unwrap();
    /// for i in 0..3 { feed.put(i, i).unwrap(); }
    /// // Replay from seq 2 (still in the ring):
    /// let mut w = feed.watch(WatchOptions::all().from(2));
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), 2);
    /// // Seq 1 is overwritten once the ring has moved on: `Lagged` at once.
    /// for i in 3..8 { feed.put(i, i).unwrap(); }
    /// let mut old = feed.watch(WatchOptions::all().from(1));
    /// match old.try_next() {
    ///     Err(RecvError::Lagged(l)) => assert_eq!(l.missed, l.resume_at - 1),
    ///     other => panic!("expected a lap, got {other:?}"),
    /// };
    /// ```
    pub fn from(mut self, seq: u64) -> Self {
        self.start = Start::From(seq.max(1));
        self
    }

    /// Start with a snapshot: one `Create` per live matching key (seq = its
    /// version), then `SnapshotDone`, then live events (guarantee 6).
    /// Snapshot items are subject to the key filter, and are sent only when
    /// `Create` is in the kind mask.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use kvfeed::{Event, Feed, WatchOptions};
    /// let feed: Feed<String, u32> = Feed::new();
    /// feed.put("a".into(), 1).unwrap();
    /// feed.put("b".into(), 2).unwrap();
    /// feed.delete("a").unwrap();
    /// let w = feed.watch(WatchOptions::all().snapshot());
    /// feed.put("c".into(), 3).unwrap();
    /// feed.close();
    /// let mut view = HashMap::new();
    /// for ev in w {
    ///     match ev.unwrap() {
    ///         Event::Change(c) => match c.value {
    ///             Some(v) => { view.insert(c.key, v); }
    ///             None => { view.remove(&c.key); }
    ///         },
    ///         Event::SnapshotDone { at, .. } => assert_eq!(at, 3), // live events follow from 4
    ///     }
    /// }
    /// assert_eq!(view, HashMap::from([("b".to_string(), 2), ("c".to_string(), 3)]));
    /// ```
    pub fn snapshot(mut self) -> Self {
        self.start = Start::Snapshot;
        self
    }
}

/// The part of the options a watcher keeps: its filter.
pub(crate) struct Filter<K> {
    keys: Keys<K>,
    predicates: Vec<Predicate<K>>,
    pub(crate) kinds: Kinds,
    /// No key filter at all: every key matches (the common case, checked
    /// once here instead of per event).
    every_key: bool,
}

/// Few keys are faster to scan than to hash.
enum Keys<K> {
    Few(Vec<K>),
    Many(HashSet<K>),
}

const FEW_KEYS: usize = 8;

impl<K: Hash + Eq> Filter<K> {
    pub(crate) fn new(keys: Vec<K>, predicates: Vec<Predicate<K>>, kinds: Kinds) -> Self {
        let keys = if keys.len() <= FEW_KEYS {
            Keys::Few(keys)
        } else {
            Keys::Many(keys.into_iter().collect())
        };
        let every_key = matches!(&keys, Keys::Few(v) if v.is_empty()) && predicates.is_empty();
        Filter {
            keys,
            predicates,
            kinds,
            every_key,
        }
    }

    /// Whether events for `key` pass the key filter.
    pub(crate) fn matches_key(&self, key: &K) -> bool {
        if self.every_key {
            return true;
        }
        let listed = match &self.keys {
            Keys::Few(v) => v.contains(key),
            Keys::Many(s) => s.contains(key),
        };
        listed || self.predicates.iter().any(|p| p(key))
    }

    /// Whether every event passes (no key filter, every kind).
    #[inline]
    pub(crate) fn passes_all(&self) -> bool {
        self.every_key && self.kinds == Kinds::ALL
    }

    /// Whether an event passes the whole filter.
    #[inline]
    pub(crate) fn matches(&self, key: &K, kind: Kind) -> bool {
        self.kinds.contains(kind.mask()) && (self.every_key || self.matches_key(key))
    }
}
