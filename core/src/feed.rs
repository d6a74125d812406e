//! The public store handle.

use std::fmt;
use std::hash::Hash;

use crate::config::{Config, ConfigError};
use crate::engine::{Engine, Expect};
use crate::equivalent::Equivalent;
use crate::error::{CasError, WriteError};
use crate::event::Event;
use crate::subscribe::Subscription;
use crate::sync::Arc;
use crate::watch::WatchOptions;
use crate::watcher::Watcher;
use crate::Lagged;

/// A concurrent key-value store whose every mutation is a numbered event in a
/// ring that [`Watcher`]s read by cursor.
///
/// Cloning a `Feed` is cheap (an `Arc`); the store lives until the last handle
/// and the last watcher are gone.
///
/// ```
/// use kvfeed::{Feed, WatchOptions, Kind};
/// let feed: Feed<String, u32> = Feed::new();
/// let mut w = feed.watch(WatchOptions::all());
/// let seq = feed.put("a".into(), 1).unwrap();
/// assert_eq!(feed.get("a"), Some((1, seq)));
/// let ev = w.try_next().unwrap().unwrap();
/// let ch = ev.as_change().unwrap();
/// assert_eq!((ch.seq(), ch.kind(), ch.key().as_str(), ch.value()), (seq, Kind::Create, "a", Some(&1)));
/// ```
pub struct Feed<K, V> {
    pub(crate) shared: Arc<Engine<K, V>>,
}

impl<K, V> Clone for Feed<K, V> {
    fn clone(&self) -> Self {
        self.shared.add_handle();
        Feed {
            shared: self.shared.clone(),
        }
    }
}

/// Dropping the last handle closes the feed (watchers may outlive it: they
/// drain what is left, then get `Closed`).
impl<K, V> Drop for Feed<K, V> {
    fn drop(&mut self) {
        self.shared.drop_handle();
    }
}

impl<K, V> fmt::Debug for Feed<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("head", &self.shared.head())
            .field("capacity", &self.shared.capacity())
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

impl<K, V> Default for Feed<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Feed<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A feed with the default configuration (a ring of 65,536 events).
    ///
    /// ```
    /// use kvfeed::{Feed, DEFAULT_CAPACITY};
    /// let feed: Feed<String, String> = Feed::new();
    /// assert_eq!((feed.capacity(), feed.head()), (DEFAULT_CAPACITY, 0));
    /// ```
    pub fn new() -> Self {
        Self::with_config(Config::new()).expect("the default configuration is valid")
    }

    /// A feed built from `config`; fails on an invalid capacity.
    ///
    /// ```
    /// use kvfeed::{Config, ConfigError, Feed};
    /// let bad = Feed::<u64, u64>::with_config(Config::new().capacity(1000));
    /// assert_eq!(bad.unwrap_err(), ConfigError::Capacity(1000));
    /// ```
    pub fn with_config(config: Config<K, V>) -> Result<Self, ConfigError> {
        Ok(Feed {
            shared: Arc::new(Engine::new(config)?),
        })
    }

    /// Sets `key` to `value`: a `Create` or `Update` event. Returns its seq
    /// (with suppression on, an unchanged value emits nothing and returns the
    /// key's current version).
    ///
    /// Fails, changing nothing, when the feed is closed or the key or value
    /// is over a configured size limit.
    ///
    /// ```
    /// use kvfeed::{Feed, Kind, WatchOptions, WriteError};
    /// let feed: Feed<String, u32> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let s1 = feed.put("a".into(), 1).unwrap(); // Create
    /// let s2 = feed.put("a".into(), 2).unwrap(); // Update
    /// assert!(s2 > s1);
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().kind(), Kind::Create);
    /// let ev = w.try_next().unwrap().unwrap();
    /// let c = ev.as_change().unwrap();
    /// assert_eq!((c.kind(), c.old(), c.value()), (Kind::Update, Some(&1), Some(&2)));
    /// drop(ev);
    ///
    /// feed.close();
    /// assert_eq!(feed.put("a".into(), 3), Err(WriteError::Closed));
    /// assert_eq!(feed.get("a"), Some((2, s2))); // nothing changed
    /// ```
    pub fn put(&self, key: K, value: V) -> Result<u64, WriteError> {
        self.shared
            .put(key, value, Expect::Any)
            .map_err(|e| match e {
                CasError::Write(w) => w,
                CasError::Conflict { .. } => unreachable!("an unconditional put has no conflict"),
            })
    }

    /// Sets `key` to `value` only if its version is `expected_version` (0:
    /// only if absent).
    ///
    /// ```
    /// use kvfeed::{CasError, Feed};
    /// let feed: Feed<&str, u8> = Feed::new();
    /// let v1 = feed.compare_and_put("k", 0, 1).unwrap();
    /// assert_eq!(feed.compare_and_put("k", 0, 2), Err(CasError::Conflict { current_version: v1 }));
    /// assert!(feed.compare_and_put("k", v1, 2).is_ok());
    /// ```
    pub fn compare_and_put(
        &self,
        key: K,
        expected_version: u64,
        value: V,
    ) -> Result<u64, CasError> {
        self.shared
            .put(key, value, Expect::Version(expected_version))
    }

    /// The key's value (cloned) and version: the seq of the event that last
    /// wrote it. Never takes a lock.
    ///
    /// ```
    /// use kvfeed::Feed;
    /// let feed: Feed<String, String> = Feed::new();
    /// assert_eq!(feed.get("k"), None);
    /// let v = feed.put("k".into(), "x".into()).unwrap();
    /// assert_eq!(feed.get("k"), Some(("x".to_string(), v))); // `&str` looks up a `String` key
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<(V, u64)>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        self.shared.get_with(key, |v, version| (v.clone(), version))
    }

    /// Calls `f` with the key's value (borrowed, no copy) and version;
    /// `None` (and `f` not called) when the key is absent.
    ///
    /// ```
    /// use kvfeed::Feed;
    /// let feed: Feed<&str, Vec<u8>> = Feed::new();
    /// feed.put("blob", vec![0; 1 << 20]).unwrap();
    /// assert_eq!(feed.get_with("blob", |v, _version| v.len()), Some(1 << 20));
    /// assert_eq!(feed.get_with("none", |v, _| v.len()), None);
    /// ```
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, u64) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared.get_with(key, f)
    }

    /// Removes `key`, emitting a `Delete` event, and returns the old value;
    /// `Ok(None)` (and no event) when the key was absent.
    ///
    /// ```
    /// use kvfeed::{Feed, Kind, WatchOptions};
    /// let feed: Feed<String, u32> = Feed::new();
    /// feed.put("a".into(), 1).unwrap();
    /// let mut w = feed.watch(WatchOptions::all());
    /// assert_eq!(feed.delete("a").unwrap(), Some(1));
    /// assert_eq!(feed.delete("a").unwrap(), None); // absent: no event
    /// let ev = w.try_next().unwrap().unwrap();
    /// let c = ev.as_change().unwrap();
    /// assert_eq!((c.kind(), c.old(), c.value()), (Kind::Delete, Some(&1), None));
    /// drop(ev);
    /// assert!(w.try_next().unwrap().is_none());
    /// ```
    pub fn delete<Q>(&self, key: &Q) -> Result<Option<V>, WriteError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.shared.delete(key)?.map(|(_, old)| old))
    }

    /// Like [`delete`](Feed::delete), also returning the `Delete` event's seq.
    ///
    /// ```
    /// use kvfeed::Feed;
    /// let feed: Feed<u32, &str> = Feed::new();
    /// feed.put(7, "seven").unwrap();
    /// let (seq, old) = feed.delete_seq(&7).unwrap().unwrap();
    /// assert_eq!((seq, old), (feed.head(), "seven"));
    /// assert_eq!(feed.delete_seq(&7).unwrap(), None);
    /// ```
    pub fn delete_seq<Q>(&self, key: &Q) -> Result<Option<(u64, V)>, WriteError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared.delete(key)
    }

    /// Removes every key starting with `prefix`, one `Delete` event per key,
    /// and returns how many it removed. Not atomic: keys created under the
    /// prefix while it runs may survive.
    ///
    /// ```
    /// use kvfeed::{Feed, Kinds, WatchOptions};
    /// let feed: Feed<String, u8> = Feed::new();
    /// for k in ["user/1", "user/2", "order/1"] {
    ///     feed.put(k.into(), 0).unwrap();
    /// }
    /// let mut deletes = feed.watch(WatchOptions::all().kinds(Kinds::DELETE));
    /// assert_eq!(feed.delete_prefix("user/").unwrap(), 2);
    /// let mut buf = Vec::new();
    /// assert_eq!(deletes.next_batch(&mut buf, 10).unwrap(), 2);
    /// assert!(feed.get("order/1").is_some());
    /// ```
    pub fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<usize, WriteError>
    where
        K: AsRef<[u8]>,
    {
        if self.shared.is_closed() {
            return Err(WriteError::Closed);
        }
        let prefix = prefix.as_ref();
        let mut keys = Vec::new();
        {
            let guard = self.shared.guard();
            self.shared.for_each_live(&guard, |k, _, _| {
                if k.as_ref().starts_with(prefix) {
                    keys.push(k.clone());
                }
            });
        }
        let mut removed = 0;
        for k in keys {
            if self.shared.delete(&k)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The highest seq handed out so far (0 before the first write). Every
    /// seq up to it is published, or is being published by a writer right now.
    ///
    /// ```
    /// use kvfeed::Feed;
    /// let feed: Feed<u8, u8> = Feed::new();
    /// assert_eq!(feed.head(), 0);
    /// let seq = feed.put(1, 1).unwrap();
    /// assert_eq!(feed.head(), seq);
    /// ```
    pub fn head(&self) -> u64 {
        self.shared.head()
    }

    /// The ring's capacity in events: how far a watcher may fall behind
    /// before it is lapped.
    ///
    /// ```
    /// use kvfeed::{Config, Feed};
    /// let feed: Feed<u8, u8> = Feed::with_config(Config::new().capacity(256)).unwrap();
    /// assert_eq!(feed.capacity(), 256);
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.capacity() as usize
    }

    /// Closes the feed: later writes fail with `Closed`; watchers read what
    /// is left, then get `Closed`. A write racing `close` either fails with
    /// `Closed` (and changed nothing) or was numbered before the close, and
    /// every watcher receives it (or is told it missed it) before `Closed`.
    ///
    /// ```
    /// use kvfeed::{Feed, RecvError, WatchOptions, WriteError};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, 1).unwrap();
    /// feed.close();
    /// assert_eq!(feed.put(2, 2), Err(WriteError::Closed));
    /// assert!(w.try_next().unwrap().is_some()); // drains what is left
    /// assert_eq!(w.try_next().unwrap_err(), RecvError::Closed);
    /// assert_eq!(feed.get(&1), Some((1, 1))); // reads still work
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the feed is closed (explicitly, or because every `Feed`
    /// handle was dropped).
    ///
    /// ```
    /// use kvfeed::Feed;
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let other = feed.clone();
    /// assert!(!other.is_closed());
    /// feed.close(); // closes the store for every handle
    /// assert!(other.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// A new watcher: a cursor and a filter, starting where `options` says
    /// (by default after the current head). See [`WatchOptions`] and
    /// [`Watcher`].
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<String, u32> = Feed::new();
    /// feed.put("before".into(), 0).unwrap();
    /// let mut w = feed.watch(WatchOptions::all().prefix("a/"));
    /// feed.put("b/1".into(), 1).unwrap();
    /// feed.put("a/1".into(), 2).unwrap();
    /// let ev = w.try_next().unwrap().unwrap();
    /// assert_eq!(ev.as_change().unwrap().key(), "a/1");
    /// ```
    pub fn watch(&self, options: WatchOptions<K>) -> Watcher<K, V> {
        Watcher::new(self.shared.clone(), options)
    }

    /// Runs `handler` for each matching event on a thread of its own (never
    /// a writer's thread), until the returned [`Subscription`] is stopped or
    /// dropped, or the feed is closed. A lap reaches the handler as
    /// `Err(Lagged)`. A panic in the handler ends the subscription; its owner
    /// learns of it from [`Subscription::stop`] or [`Subscription::join`]
    /// ([`HandlerPanicked`](crate::HandlerPanicked)).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<String, i32> = Feed::new();
    /// let (tx, rx) = mpsc::channel();
    /// let sub = feed.on(WatchOptions::all(), move |ev| { tx.send(ev).unwrap(); });
    /// feed.put("x".into(), 7).unwrap();
    /// let got = rx.recv().unwrap().unwrap();
    /// assert_eq!(got.as_change().unwrap().value, Some(7));
    /// sub.stop().unwrap(); // stops and joins the thread; Err if the handler panicked
    /// ```
    pub fn on<F>(&self, options: WatchOptions<K>, handler: F) -> Subscription
    where
        F: FnMut(Result<Event<K, V>, Lagged>) + Send + 'static,
    {
        Subscription::spawn(self.watch(options), handler)
    }
}
