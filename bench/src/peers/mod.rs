//! The peers: the "map + channels" designs kvfeed is meant to replace.
//!
//! 1. [`mutex_ring`]: one global `Mutex<(HashMap, VecDeque)>`; the deque is a
//!    bounded ring of events and each watcher holds a cursor into it. Tells a
//!    lapped watcher how many events it missed.
//! 2. [`dash_tokio`]: `dashmap` + `tokio::sync::broadcast`; the event is sent
//!    while the map's entry guard is held, so per-key order holds. Tells a
//!    lapped watcher (`Lagged(n)`).
//! 3. [`papaya_xbeam`]: `papaya` + one bounded `crossbeam-channel` per
//!    watcher, `try_send`; a full channel drops the event silently (counted on
//!    the writer's side only).
//! 4. [`papaya_abcast`]: `papaya` + `async-broadcast` in overflow mode. Tells
//!    a lapped watcher (`Overflowed(n)`).
//! 5. [`bus_feed`]: `papaya` + `bus` (one writer by design); a full bus drops
//!    the event for every reader, silently.
//!
//! Every peer carries the same event ([`PeerEvent`]: seq, kind, key, value,
//! old), the fields a kvfeed event has. The papaya peers publish after the
//! map insert without a lock around both, so two writers to one key may
//! publish out of order; they are the cheap baselines, not correct feeds.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod bus_feed;
pub mod dash_tokio;
pub mod mutex_ring;
pub mod papaya_abcast;
pub mod papaya_xbeam;

/// What kind of change an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The key was absent.
    Create,
    /// The key had a value (`old`).
    Update,
}

/// A change event as the peers publish it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerEvent {
    /// Sequence number (from a counter; only the mutex ring's is gap-free
    /// and totally ordered with publication).
    pub seq: u64,
    /// Create or Update.
    pub kind: Kind,
    /// The key.
    pub key: u64,
    /// The new value.
    pub value: u64,
    /// The previous value (meaningful for `Update`).
    pub old: u64,
}

impl PeerEvent {
    /// The event for a write of `value` under `key` that replaced `old`.
    pub fn new(seq: u64, key: u64, value: u64, old: Option<u64>) -> PeerEvent {
        PeerEvent {
            seq,
            kind: if old.is_some() {
                Kind::Update
            } else {
                Kind::Create
            },
            key,
            value,
            old: old.unwrap_or(0),
        }
    }
}

/// The key of the end-of-feed marker the tokio peer sends on `close` (tokio's
/// broadcast has no way to close from the sender side while it lives).
pub const CLOSE_KEY: u64 = u64::MAX;

/// A shared sequence counter for peers that have no lock to hand out seqs.
#[derive(Debug, Default)]
pub struct SeqCounter(AtomicU64);

impl SeqCounter {
    /// The next sequence number (starts at 1).
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}
