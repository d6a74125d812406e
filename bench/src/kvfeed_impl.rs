//! kvfeed behind the workload trait: `Feed<u64, u64>`, watchers that read by
//! cursor with `try_next` (borrowing under the reclamation guard) and park
//! with `next_timeout`; a drain reads with `drain_with` (one guard per batch),
//! kvfeed's cheapest way to read many events, as the mutex peer's drain takes
//! its lock once. [`KvFeedPerEvent`] drains with one `try_next` per event.

use std::time::Duration;

use kvfeed::{Config, EventRef, Feed, RecvError, WatchOptions, Watcher};

use crate::{Drained, FeedUnderTest, Recv};

/// kvfeed's `Feed<u64, u64>`.
pub struct KvFeed {
    feed: Feed<u64, u64>,
}

fn map_next(r: Result<Option<EventRef<'_, u64, u64>>, RecvError>) -> Option<Recv> {
    match r {
        Ok(Some(EventRef::Change(c))) => Some(Recv::Event {
            key: *c.key(),
            value: c.value().copied().unwrap_or(0),
        }),
        // Only a snapshot start produces this; the workloads never ask for one.
        Ok(Some(EventRef::SnapshotDone { .. })) => None,
        Ok(None) => Some(Recv::Empty),
        Err(RecvError::Lagged(l)) => Some(Recv::Lagged(l.missed)),
        Err(RecvError::Closed) => Some(Recv::Closed),
    }
}

impl FeedUnderTest for KvFeed {
    type Watcher = Watcher<u64, u64>;
    const NAME: &'static str = "kvfeed";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        let cfg = Config::new().capacity(ring_capacity);
        KvFeed {
            feed: Feed::with_config(cfg).expect("ring capacity is a power of two"),
        }
    }

    fn put(&self, key: u64, value: u64) {
        self.feed.put(key, value).expect("feed is open");
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.feed.get_with(&key, |v, _version| *v)
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
                    checksum = checksum.wrapping_add(*c.key() ^ c.value().copied().unwrap_or(0));
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
