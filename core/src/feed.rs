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

    /// The key's value (cloned) and version.
    pub fn get<Q>(&self, key: &Q) -> Option<(V, u64)>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        V: Clone,
    {
        self.shared.get_with(key, |v, version| (v.clone(), version))
    }

    /// Calls `f` with the key's value (borrowed, no copy) and version.
    pub fn get_with<Q, R>(&self, key: &Q, f: impl FnOnce(&V, u64) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared.get_with(key, f)
    }

    /// Removes `key`, emitting a `Delete` event, and returns the old value;
    /// `Ok(None)` (and no event) when the key was absent.
    pub fn delete<Q>(&self, key: &Q) -> Result<Option<V>, WriteError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.shared.delete(key)?.map(|(_, old)| old))
    }

    /// Like [`delete`](Feed::delete), also returning the `Delete` event's seq.
    pub fn delete_seq<Q>(&self, key: &Q) -> Result<Option<(u64, V)>, WriteError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.shared.delete(key)
    }

    /// Removes every key starting with `prefix`, one `Delete` event per key,
    /// and returns how many it removed. Not atomic: keys created under the
    /// prefix while it runs may survive.
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
    pub fn head(&self) -> u64 {
        self.shared.head()
    }

    /// The ring's capacity in events.
    pub fn capacity(&self) -> usize {
        self.shared.capacity() as usize
    }

    /// Closes the feed: later writes fail with `Closed`; watchers read what
    /// is left, then get `Closed`. A write racing `close` either fails with
    /// `Closed` (and changed nothing) or was numbered before the close, and
    /// every watcher receives it (or is told it missed it) before `Closed`.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the feed is closed (explicitly, or because every `Feed`
    /// handle was dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// A new watcher; see [`WatchOptions`].
    pub fn watch(&self, options: WatchOptions<K>) -> Watcher<K, V> {
        Watcher::new(self.shared.clone(), options)
    }

    /// Runs `handler` for each matching event on a thread of its own (never
    /// a writer's thread), until the returned [`Subscription`] is dropped or
    /// the feed is closed. A lap reaches the handler as `Err(Lagged)`.
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
    /// drop(sub); // stops and joins the thread
    /// ```
    pub fn on<F>(&self, options: WatchOptions<K>, handler: F) -> Subscription
    where
        F: FnMut(Result<Event<K, V>, Lagged>) + Send + 'static,
    {
        Subscription::spawn(self.watch(options), handler)
    }
}
