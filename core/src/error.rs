//! Errors of writes and reads.

use std::fmt;

/// Why a write changed nothing.
///
/// ```
/// use kvfeed::{Config, Feed, WriteError};
/// let feed: Feed<String, String> = Feed::with_config(Config::new().max_value_len(8)).unwrap();
/// let err = feed.put("k".into(), "far too long".into()).unwrap_err();
/// assert_eq!(err.to_string(), "value of 12 bytes exceeds the maximum of 8");
/// feed.close();
/// assert_eq!(feed.put("k".into(), "v".into()), Err(WriteError::Closed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The feed was closed.
    Closed,
    /// The key or value is longer than the configured maximum.
    TooLarge {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Closed => f.write_str("the feed is closed"),
            WriteError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for WriteError {}

/// Why a [`compare_and_put`](crate::Feed::compare_and_put) changed nothing.
///
/// ```
/// use kvfeed::{CasError, Feed, WriteError};
/// let feed: Feed<&str, u32> = Feed::new();
/// // Expected version 0: only if absent; the key is absent, so it is written.
/// let v1 = feed.compare_and_put("n", 0, 1).unwrap();
/// // A stale version is refused with the version found.
/// match feed.compare_and_put("n", v1 + 100, 2) {
///     Err(CasError::Conflict { current_version }) => assert_eq!(current_version, v1),
///     other => panic!("{other:?}"),
/// }
/// feed.close();
/// assert_eq!(feed.compare_and_put("n", v1, 2), Err(CasError::Write(WriteError::Closed)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasError {
    /// The key's version was not the expected one; 0 means the key is absent.
    Conflict {
        /// The version found.
        current_version: u64,
    },
    /// The write itself was refused.
    Write(WriteError),
}

impl fmt::Display for CasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CasError::Conflict { current_version: 0 } => f.write_str("conflict: the key is absent"),
            CasError::Conflict { current_version } => {
                write!(f, "conflict: the key is at version {current_version}")
            }
            CasError::Write(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CasError {}

impl From<WriteError> for CasError {
    fn from(e: WriteError) -> Self {
        CasError::Write(e)
    }
}

/// The watcher was lapped: `missed` sequence numbers (events of any key:
/// every seq is an event) were overwritten before it read them. It continues at
/// `resume_at`; `missed == resume_at - cursor_before`.
///
/// ```
/// use kvfeed::{Config, Feed, Lagged, RecvError, WatchOptions};
/// let feed: Feed<u32, u32> = Feed::with_config(Config::new().capacity(4)).unwrap();
/// let mut w = feed.watch(WatchOptions::all());
/// let before = w.cursor();
/// for i in 0..10 { feed.put(i, i).unwrap(); }
/// let Err(RecvError::Lagged(l)) = w.try_next() else { panic!("not lapped") };
/// assert_eq!(l.missed, l.resume_at - before);
/// assert_eq!(w.cursor(), l.resume_at);
/// assert_eq!(l, Lagged { missed: 6, resume_at: 7 }); // seqs 1..=6 were overwritten
/// // It continues with the oldest seq still in the ring.
/// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged {
    /// How many sequence numbers were lost.
    pub missed: u64,
    /// Where the watcher continues (its cursor now).
    pub resume_at: u64,
}

impl fmt::Display for Lagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "watcher lapped: {} events missed, resuming at seq {}",
            self.missed, self.resume_at
        )
    }
}

impl std::error::Error for Lagged {}

/// Why a read returned no event.
///
/// ```
/// use kvfeed::{Config, Feed, RecvError, WatchOptions};
/// let feed: Feed<u8, u8> = Feed::with_config(Config::new().capacity(2)).unwrap();
/// let mut w = feed.watch(WatchOptions::all());
/// for i in 0..5 { feed.put(i, i).unwrap(); }
/// feed.close();
/// let mut got = 0;
/// loop {
///     match w.try_next() {
///         Ok(Some(_)) => got += 1,
///         Ok(None) => unreachable!("the feed is closed: every read ends in an event or an error"),
///         Err(RecvError::Lagged(l)) => println!("{l}"), // "watcher lapped: 3 events missed, ..."
///         Err(RecvError::Closed) => break,
///     }
/// }
/// assert_eq!(got, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// The watcher was lapped; see [`Lagged`].
    Lagged(Lagged),
    /// The feed (or this watcher) was closed and everything readable was read.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Lagged(l) => l.fmt(f),
            RecvError::Closed => f.write_str("closed"),
        }
    }
}

impl std::error::Error for RecvError {}

impl From<Lagged> for RecvError {
    fn from(l: Lagged) -> Self {
        RecvError::Lagged(l)
    }
}
