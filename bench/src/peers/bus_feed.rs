//! Peer 5: `papaya` + `bus`, a lock-free single-producer broadcast. `bus`
//! needs `&mut` to broadcast, so the one writer takes an (uncontended) mutex;
//! a full bus (any reader behind by the capacity) drops the event for every
//! reader without telling them. One writer only: left out of W5 and W7.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bus::{Bus, BusReader};

use super::{PeerEvent, SeqCounter};
use crate::{FeedUnderTest, Recv};

/// The papaya + bus feed.
pub struct BusFeed {
    inner: Arc<Inner>,
}

struct Inner {
    map: papaya::HashMap<u64, u64>,
    seq: SeqCounter,
    /// `None` once closed (dropping the bus is how it closes).
    bus: Mutex<Option<Bus<PeerEvent>>>,
    dropped: AtomicU64,
}

impl Inner {
    fn bus(&self) -> MutexGuard<'_, Option<Bus<PeerEvent>>> {
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn map_ok(ev: PeerEvent) -> Recv {
    Recv::Event {
        key: ev.key,
        value: ev.value,
    }
}

impl FeedUnderTest for BusFeed {
    type Watcher = BusReader<PeerEvent>;
    const NAME: &'static str = "papaya+bus";
    const MULTI_WRITER: bool = false;
    const TELLS_MISSED: bool = false;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        BusFeed {
            inner: Arc::new(Inner {
                map: papaya::HashMap::new(),
                seq: SeqCounter::default(),
                bus: Mutex::new(Some(Bus::new(ring_capacity))),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn put(&self, key: u64, value: u64) {
        let old = self.inner.map.pin().insert(key, value).copied();
        let ev = PeerEvent::new(self.inner.seq.next(), key, value, old);
        let mut g = self.inner.bus();
        if let Some(bus) = g.as_mut() {
            if bus.try_broadcast(ev).is_err() {
                let readers = bus.rx_count() as u64;
                self.inner.dropped.fetch_add(readers, Ordering::Relaxed);
            }
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.inner.map.pin().get(&key).copied()
    }

    fn watch(&self) -> Self::Watcher {
        self.inner
            .bus()
            .as_mut()
            .expect("watch after close")
            .add_rx()
    }

    fn try_recv(w: &mut Self::Watcher) -> Recv {
        match w.try_recv() {
            Ok(ev) => map_ok(ev),
            Err(std::sync::mpsc::TryRecvError::Empty) => Recv::Empty,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Recv::Closed,
        }
    }

    fn recv_blocking(w: &mut Self::Watcher) -> Recv {
        match w.recv() {
            Ok(ev) => map_ok(ev),
            Err(_) => Recv::Closed,
        }
    }

    fn close(&self) {
        self.inner.bus().take();
    }

    fn silently_dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}
