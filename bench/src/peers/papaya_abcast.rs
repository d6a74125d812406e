//! Peer 4: `papaya` + `async-broadcast` in overflow mode: a full channel
//! drops its oldest message and a lapped receiver gets `Overflowed(n)`.

use std::sync::Arc;

use async_broadcast::{InactiveReceiver, Receiver, RecvError, Sender, TryRecvError};

use super::{PeerEvent, SeqCounter};
use crate::{FeedUnderTest, Recv};

/// The papaya + async-broadcast feed.
pub struct PapayaAbcast {
    inner: Arc<Inner>,
}

struct Inner {
    map: papaya::HashMap<u64, u64>,
    seq: SeqCounter,
    tx: Sender<PeerEvent>,
    /// Keeps the channel open while no watcher exists.
    keep: InactiveReceiver<PeerEvent>,
}

fn map_ok(ev: PeerEvent) -> Recv {
    Recv::Event {
        key: ev.key,
        value: ev.value,
    }
}

impl FeedUnderTest for PapayaAbcast {
    type Watcher = Receiver<PeerEvent>;
    const NAME: &'static str = "papaya+async-broadcast";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        let (mut tx, rx) = async_broadcast::broadcast(ring_capacity);
        tx.set_overflow(true);
        tx.set_await_active(false);
        PapayaAbcast {
            inner: Arc::new(Inner {
                map: papaya::HashMap::new(),
                seq: SeqCounter::default(),
                tx,
                keep: rx.deactivate(),
            }),
        }
    }

    fn put(&self, key: u64, value: u64) {
        let old = self.inner.map.pin().insert(key, value).copied();
        let ev = PeerEvent::new(self.inner.seq.next(), key, value, old);
        // Overflow mode never fails for a full channel; `Inactive` (nobody
        // watching) is not an error for a feed.
        let _ = self.inner.tx.try_broadcast(ev);
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.inner.map.pin().get(&key).copied()
    }

    fn watch(&self) -> Self::Watcher {
        self.inner.keep.activate_cloned()
    }

    fn try_recv(w: &mut Self::Watcher) -> Recv {
        match w.try_recv() {
            Ok(ev) => map_ok(ev),
            Err(TryRecvError::Overflowed(n)) => Recv::Lagged(n),
            Err(TryRecvError::Empty) => Recv::Empty,
            Err(TryRecvError::Closed) => Recv::Closed,
        }
    }

    fn recv_blocking(w: &mut Self::Watcher) -> Recv {
        match w.recv_blocking() {
            Ok(ev) => map_ok(ev),
            Err(RecvError::Overflowed(n)) => Recv::Lagged(n),
            Err(RecvError::Closed) => Recv::Closed,
        }
    }

    fn close(&self) {
        self.inner.tx.close();
    }
}
