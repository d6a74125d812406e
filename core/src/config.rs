//! Feed configuration: a builder checked once, at construction.

use std::fmt;

/// Default ring capacity: 65,536 events.
///
/// ```
/// use kvfeed::{Config, Feed, DEFAULT_CAPACITY};
/// let feed: Feed<u8, u8> = Feed::with_config(Config::new()).unwrap();
/// assert_eq!(feed.capacity(), DEFAULT_CAPACITY);
/// ```
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// How a [`Feed`](crate::Feed) is built.
///
/// Built with methods rather than a struct literal because two options only
/// make sense for some key and value types (suppression needs `V: PartialEq`,
/// size limits need byte-like keys and values), and the builder lets the type
/// system say so.
///
/// ```
/// use kvfeed::{Config, Feed};
/// let feed: Feed<String, String> = Feed::with_config(
///     Config::new().capacity(1 << 10).suppress_unchanged().max_value_len(4096),
/// ).unwrap();
/// assert_eq!(feed.capacity(), 1024);
/// ```
pub struct Config<K, V> {
    pub(crate) capacity: usize,
    pub(crate) same_value: Option<fn(&V, &V) -> bool>,
    pub(crate) key_limit: Option<Limit<K>>,
    pub(crate) value_limit: Option<Limit<V>>,
}

/// A size limit on keys or values: how to measure one, and the maximum.
pub(crate) struct Limit<T> {
    pub(crate) len: fn(&T) -> usize,
    pub(crate) max: usize,
}

impl<K, V> Default for Config<K, V> {
    fn default() -> Self {
        Config {
            capacity: DEFAULT_CAPACITY,
            same_value: None,
            key_limit: None,
            value_limit: None,
        }
    }
}

impl<K, V> Config<K, V> {
    /// The defaults: capacity 65,536, no suppression, no size limits.
    ///
    /// ```
    /// use kvfeed::{Config, Feed};
    /// let feed: Feed<String, String> = Feed::with_config(Config::new()).unwrap();
    /// assert_eq!(feed.capacity(), 1 << 16);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Ring capacity in events: a power of two, at least 2. Anything else is
    /// rejected by [`Feed::with_config`](crate::Feed::with_config) (no
    /// rounding: a silently bigger ring would hide a configuration mistake).
    ///
    /// ```
    /// use kvfeed::{Config, ConfigError, Feed};
    /// let feed = Feed::<u64, u64>::with_config(Config::new().capacity(1 << 20)).unwrap();
    /// assert_eq!(feed.capacity(), 1 << 20);
    /// for bad in [0, 1, 3, 1000] {
    ///     let err = Feed::<u64, u64>::with_config(Config::new().capacity(bad)).unwrap_err();
    ///     assert_eq!(err, ConfigError::Capacity(bad));
    /// }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// An unchanged put (same value as the key's current one) emits nothing and
    /// returns the key's current version.
    ///
    /// ```
    /// use kvfeed::{Config, Feed, WatchOptions};
    /// let feed: Feed<&str, u32> = Feed::with_config(Config::new().suppress_unchanged()).unwrap();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let v = feed.put("a", 1).unwrap();
    /// assert_eq!(feed.put("a", 1).unwrap(), v); // unchanged: no event, same version
    /// assert_eq!(feed.head(), v);
    /// assert!(w.try_next().unwrap().is_some());
    /// assert!(w.try_next().unwrap().is_none());
    /// ```
    pub fn suppress_unchanged(mut self) -> Self
    where
        V: PartialEq,
    {
        self.same_value = Some(|a, b| a == b);
        self
    }

    /// Longest key accepted, in bytes; longer ones fail with `TooLarge`.
    ///
    /// ```
    /// use kvfeed::{Config, Feed, WriteError};
    /// let feed: Feed<String, u8> = Feed::with_config(Config::new().max_key_len(4)).unwrap();
    /// assert!(feed.put("abcd".into(), 1).is_ok());
    /// assert_eq!(
    ///     feed.put("abcde".into(), 1),
    ///     Err(WriteError::TooLarge { what: "key", len: 5, max: 4 })
    /// );
    /// ```
    pub fn max_key_len(mut self, max: usize) -> Self
    where
        K: AsRef<[u8]>,
    {
        self.key_limit = Some(Limit {
            len: |k| k.as_ref().len(),
            max,
        });
        self
    }

    /// Longest value accepted, in bytes; longer ones fail with `TooLarge`.
    ///
    /// ```
    /// use kvfeed::{Config, Feed, WriteError};
    /// let feed: Feed<u8, Vec<u8>> = Feed::with_config(Config::new().max_value_len(2)).unwrap();
    /// let err = feed.put(1, vec![0; 3]).unwrap_err();
    /// assert_eq!(err, WriteError::TooLarge { what: "value", len: 3, max: 2 });
    /// assert_eq!(feed.get(&1), None); // nothing changed
    /// ```
    pub fn max_value_len(mut self, max: usize) -> Self
    where
        V: AsRef<[u8]>,
    {
        self.value_limit = Some(Limit {
            len: |v| v.as_ref().len(),
            max,
        });
        self
    }

    /// Checks the configuration once, at construction.
    pub(crate) fn validate(self) -> Result<Self, ConfigError> {
        if self.capacity < 2 || !self.capacity.is_power_of_two() || self.capacity > 1 << 40 {
            return Err(ConfigError::Capacity(self.capacity));
        }
        Ok(self)
    }
}

/// A configuration the feed cannot be built with.
///
/// ```
/// use kvfeed::{Config, ConfigError, Feed};
/// let err = Feed::<u8, u8>::with_config(Config::new().capacity(100)).unwrap_err();
/// assert_eq!(err, ConfigError::Capacity(100));
/// assert_eq!(
///     err.to_string(),
///     "ring capacity 100 is invalid: it must be a power of two between 2 and 2^40"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The capacity is 0, 1, not a power of two, or above 2^40.
    Capacity(usize),
    /// The ring for this capacity could not be allocated.
    OutOfMemory {
        /// The capacity asked for.
        capacity: usize,
        /// The bytes its ring needs.
        bytes: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Capacity(n) => write!(
                f,
                "ring capacity {n} is invalid: it must be a power of two between 2 and 2^40"
            ),
            ConfigError::OutOfMemory { capacity, bytes } => write!(
                f,
                "ring capacity {capacity} needs {bytes} bytes, which could not be allocated"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
