//! Peer 2: `dashmap` + `tokio::sync::broadcast`. The event is sent while the
//! dashmap entry guard is held, so writes to one key publish in map order.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::{PeerEvent, SeqCounter, CLOSE_KEY};
use crate::{FeedUnderTest, Recv};

/// The dashmap + tokio broadcast feed.
pub struct DashTokio {
    inner: Arc<Inner>,
}

struct Inner {
    map: DashMap<u64, u64>,
    tx: broadcast::Sender<PeerEvent>,
    seq: SeqCounter,
}

impl DashTokio {
    fn publish(&self, seq_key_value_old: (u64, u64, Option<u64>)) {
        let (key, value, old) = seq_key_value_old;
        let seq = self.inner.seq.next();
        // No receivers is an error for tokio; it is not one for a feed.
        let _ = self.inner.tx.send(PeerEvent::new(seq, key, value, old));
    }
}

fn map_event(ev: PeerEvent) -> Recv {
    if ev.key == CLOSE_KEY {
        Recv::Closed
    } else {
        Recv::Event {
            key: ev.key,
            value: ev.value,
        }
    }
}

impl FeedUnderTest for DashTokio {
    type Watcher = broadcast::Receiver<PeerEvent>;
    const NAME: &'static str = "dashmap+tokio-broadcast";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(ring_capacity);
        DashTokio {
            inner: Arc::new(Inner {
                map: DashMap::new(),
                tx,
                seq: SeqCounter::default(),
            }),
        }
    }

    fn put(&self, key: u64, value: u64) {
        match self.inner.map.entry(key) {
            Entry::Occupied(mut o) => {
                let old = o.insert(value);
                self.publish((key, value, Some(old)));
                drop(o); // the guard is released only after the send
            }
            Entry::Vacant(v) => {
                let guard = v.insert(value);
                self.publish((key, value, None));
                drop(guard);
            }
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.inner.map.get(&key).map(|r| *r)
    }

    fn watch(&self) -> Self::Watcher {
        self.inner.tx.subscribe()
    }

    fn try_recv(w: &mut Self::Watcher) -> Recv {
        match w.try_recv() {
            Ok(ev) => map_event(ev),
            Err(TryRecvError::Empty) => Recv::Empty,
            Err(TryRecvError::Lagged(n)) => Recv::Lagged(n),
            Err(TryRecvError::Closed) => Recv::Closed,
        }
    }

    fn recv_blocking(w: &mut Self::Watcher) -> Recv {
        match w.blocking_recv() {
            Ok(ev) => map_event(ev),
            Err(RecvError::Lagged(n)) => Recv::Lagged(n),
            Err(RecvError::Closed) => Recv::Closed,
        }
    }

    fn close(&self) {
        // The end marker is the last message, so it is never overwritten.
        let _ = self.inner.tx.send(PeerEvent::new(0, CLOSE_KEY, 0, None));
    }
}
