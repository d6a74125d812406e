//! Errors of writes and reads.

use std::fmt;

/// Why a write changed nothing.
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

/// The watcher was lapped: `missed` sequence numbers (events of any key, and
/// skip markers) were overwritten before it read them. It continues at
/// `resume_at`; `missed == resume_at - cursor_before`.
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
