//! Where a sequence number is claimed, and where the feed closes.
//!
//! ## Protocol
//!
//! `next` holds the next number to hand out, and bit 63 (`CLOSED`) once the
//! feed is closed. A writer claims a number with one `fetch_add(1)` while it
//! holds its key's `PENDING` mark (`write.rs`): if the value it got has
//! `CLOSED` set, the claim is refused and the writer undoes its install, so
//! a refused write is never numbered. Every number a claim returns is
//! published by its writer, as an event: numbers are **dense**, none is
//! given up.
//!
//! `close` sets `CLOSED` with one `fetch_or`. Read-modify-writes on one
//! location are totally ordered, so every claim is either before the
//! `fetch_or` (numbered, and below the final head it returns) or after it
//! (refused). `final_head` then records the last number that will ever be
//! published: a watcher that has read every seq up to it has received or
//! been told about every event that will ever exist (guarantee 3 at close).
//! A watcher that sees `CLOSED` before `final_head` is written waits for the
//! closer's wake-up, which comes after the store.
//!
//! Orderings: the claim is `AcqRel`. Its release half is what lets a snapshot
//! that reads `head` (`Acquire`) and then scans the table find every write
//! numbered at or below that head installed in its key's slot (`scan.rs`).

use crate::sync::{AtomicU64, Ordering};

const CLOSED: u64 = 1 << 63;
const OPEN: u64 = u64::MAX;

/// A value on cache lines of its own (128 bytes: the prefetcher on x86
/// pulls lines in pairs).
#[repr(align(128))]
struct Line<T>(T);

/// The feed's sequence counter and its close.
pub(crate) struct Sequencer {
    /// The next seq to hand out, with `CLOSED` once closed. Every writer
    /// writes this line; nothing else shares it.
    next: Line<AtomicU64>,
    /// The last seq ever published once closed; `OPEN` before. Written
    /// once, read by every watcher that finds nothing new and by every
    /// write's early closed check: on a line of its own, so those reads do
    /// not pull the writers' counter line away from them.
    final_head: Line<AtomicU64>,
}

impl Sequencer {
    pub(crate) fn new() -> Self {
        Sequencer {
            next: Line(AtomicU64::new(1)),
            final_head: Line(AtomicU64::new(OPEN)),
        }
    }

    /// Claims the next seq, or None when the feed is closed.
    #[inline]
    pub(crate) fn claim(&self) -> Option<u64> {
        let raw = self.next.0.fetch_add(1, Ordering::AcqRel);
        if cfg!(kvfeed_mutant = "close_ignored") {
            return Some(raw & !CLOSED);
        }
        (raw & CLOSED == 0).then_some(raw)
    }

    /// Whether the feed is closed (a cheap early check for writers: a claim
    /// racing `close` is refused by the claim itself).
    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        self.final_head().is_some()
    }

    /// The highest seq handed out (0 before the first write); after close,
    /// the final head.
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        let raw = self.next.0.load(Ordering::Acquire);
        if raw & CLOSED == 0 {
            return raw - 1;
        }
        // Refused claims keep counting after the `fetch_or`, so only the
        // closer knows the final head; it stores it right after closing.
        let mut backoff = crate::engine::backoff::Backoff::new();
        loop {
            if let Some(last) = self.final_head() {
                return last;
            }
            backoff.snooze();
        }
    }

    /// Closes; true for the call that closed. Refuses every later claim.
    pub(crate) fn close(&self) -> bool {
        let raw = self.next.0.fetch_or(CLOSED, Ordering::AcqRel);
        if raw & CLOSED != 0 {
            return false;
        }
        self.final_head.0.store(raw - 1, Ordering::Release);
        true
    }

    /// The last seq that will ever be published, once closed.
    #[inline]
    pub(crate) fn final_head(&self) -> Option<u64> {
        match self.final_head.0.load(Ordering::Acquire) {
            OPEN => None,
            last => Some(last),
        }
    }
}
