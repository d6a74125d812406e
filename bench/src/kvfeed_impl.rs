//! kvfeed behind the workload trait: `Feed<u64, u64>`, watchers that read by
//! cursor with `try_next` (borrowing under the reclamation guard) and park
//! with `next_timeout`; a drain reads with `drain_with` (one guard per batch),
//! kvfeed's cheapest way to read many events, as the mutex peer's drain takes
//! its lock once. [`KvFeedPerEvent`] drains with one `try_next` per event.
//!
//! `Feed<u64, u64>` runs on kvfeed's word engine (key, value and event
//! inline, no record per key). [`KvFeedRecords`] is the same feed with a
//! value type the word engine does not take (a one-field struct), so it
//! runs on the record engine that strings and user types use: shown beside
//! kvfeed in W2 and the memory table, never as a peer.

use std::time::Duration;

use kvfeed::{Config, EventRef, Feed, RecvError, WatchOptions, Watcher};

use crate::{Drained, FeedUnderTest, Recv};

/// A value type kvfeed is measured with.
pub trait BenchValue: Clone + Send + Sync + 'static {
    /// The implementation's name in reports.
    const FEED_NAME: &'static str;
    /// The value the workloads' `u64` stands for.
    fn of(v: u64) -> Self;
    /// Back to the workloads' `u64`.
    fn bits(&self) -> u64;
}

impl BenchValue for u64 {
    const FEED_NAME: &'static str = "kvfeed";
    fn of(v: u64) -> Self {
        v
    }
    fn bits(&self) -> u64 {
        *self
    }
}

/// A `u64` the word engine does not recognise (it takes primitive types
/// only), so a feed of it runs on the record engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Opaque(pub u64);

impl BenchValue for Opaque {
    const FEED_NAME: &'static str = "kvfeed(record-engine)";
    fn of(v: u64) -> Self {
        Opaque(v)
    }
    fn bits(&self) -> u64 {
        self.0
    }
}

/// kvfeed's `Feed<u64, V>`.
pub struct KvFeedOf<V> {
    feed: Feed<u64, V>,
}

/// kvfeed's `Feed<u64, u64>` (the word engine).
pub type KvFeed = KvFeedOf<u64>;

/// kvfeed's record engine, measured with the same keys and values.
pub type KvFeedRecords = KvFeedOf<Opaque>;

fn map_next<V: BenchValue>(r: Result<Option<EventRef<'_, u64, V>>, RecvError>) -> Option<Recv> {
    match r {
        Ok(Some(EventRef::Change(c))) => Some(Recv::Event {
            key: *c.key(),
            value: c.value().map_or(0, V::bits),
        }),
        // Only a snapshot start produces this; the workloads never ask for one.
        Ok(Some(EventRef::SnapshotDone { .. })) => None,
        Ok(None) => Some(Recv::Empty),
        Err(RecvError::Lagged(l)) => Some(Recv::Lagged(l.missed)),
        Err(RecvError::Closed) => Some(Recv::Closed),
    }
}

impl<V: BenchValue> FeedUnderTest for KvFeedOf<V> {
    type Watcher = Watcher<u64, V>;
    const NAME: &'static str = V::FEED_NAME;
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        let cfg = Config::new().capacity(ring_capacity);
        KvFeedOf {
            feed: Feed::with_config(cfg).expect("ring capacity is a power of two"),
        }
    }

    fn put(&self, key: u64, value: u64) {
        self.feed.put(key, V::of(value)).expect("feed is open");
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.feed.get_with(&key, |v, _version| v.bits())
    }

    fn watch(&self) -> Self::Watcher {
        self.feed.watch(WatchOptions::all())
    }

    fn try_recv(w: &mut Self::Watcher) -> Recv {
        loop {
            if let Some(r) = map_next(w.try_next()) {
                return r;
            }
        }
    }

    fn recv_blocking(w: &mut Self::Watcher) -> Recv {
        loop {
            match map_next(w.next_timeout(Duration::from_secs(1))) {
                Some(Recv::Empty) | None => continue,
                Some(r) => return r,
            }
        }
    }

    fn drain(w: &mut Self::Watcher) -> Drained {
        let mut d = Drained::default();
        loop {
            let (mut received, mut checksum) = (0u64, d.checksum);
            let r = w.drain_with(usize::MAX, |ev| {
                if let EventRef::Change(c) = ev {
                    received += 1;
                    checksum = checksum.wrapping_add(*c.key() ^ c.value().map_or(0, V::bits));
                }
            });
            d.received += received;
            d.checksum = checksum;
            match r {
                // Empty (or stopped before a lap, which the next call reports).
                Ok(0) => return d,
                Ok(_) => {}
                Err(RecvError::Lagged(l)) => d.missed += l.missed,
                Err(RecvError::Closed) => return d,
            }
        }
    }

    fn close(&self) {
        self.feed.close();
    }
}

/// kvfeed drained with one `try_next` per event (a guard per event), the
/// trait's default drain. Only W1 and W4 run it; it is not a peer.
pub struct KvFeedPerEvent(KvFeed);

impl FeedUnderTest for KvFeedPerEvent {
    type Watcher = Watcher<u64, u64>;
    const NAME: &'static str = "kvfeed(try_next-per-event)";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, channel_capacity: usize) -> Self {
        KvFeedPerEvent(KvFeed::new(ring_capacity, channel_capacity))
    }

    fn put(&self, key: u64, value: u64) {
        self.0.put(key, value)
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(key)
    }

    fn watch(&self) -> Self::Watcher {
        self.0.watch()
    }

    fn try_recv(w: &mut Self::Watcher) -> Recv {
        KvFeed::try_recv(w)
    }

    fn recv_blocking(w: &mut Self::Watcher) -> Recv {
        KvFeed::recv_blocking(w)
    }

    fn close(&self) {
        self.0.close()
    }
}
