//! Peer 3: `papaya` + one bounded `crossbeam-channel` per watcher. The writer
//! `try_send`s to every registered channel (under a read lock on the list);
//! a full channel drops the event without telling its watcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use super::{PeerEvent, SeqCounter};
use crate::{FeedUnderTest, Recv};

/// The papaya + crossbeam-channel-per-watcher feed.
pub struct PapayaXbeam {
    inner: Arc<Inner>,
}

struct Inner {
    map: papaya::HashMap<u64, u64>,
    seq: SeqCounter,
    /// Registered watchers: (id, channel).
    watchers: RwLock<Vec<(u64, Sender<PeerEvent>)>>,
    next_id: AtomicU64,
    channel_capacity: usize,
    dropped: AtomicU64,
}

/// A watcher of [`PapayaXbeam`]: its channel; unregisters on drop.
pub struct Watcher {
    inner: Arc<Inner>,
    id: u64,
    rx: Receiver<PeerEvent>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut ws = self
            .inner
            .watchers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        ws.retain(|(id, _)| *id != self.id);
    }
}

impl FeedUnderTest for PapayaXbeam {
    type Watcher = Watcher;
    const NAME: &'static str = "papaya+crossbeam-channel";
    const TELLS_MISSED: bool = false;

    fn new(_ring_capacity: usize, channel_capacity: usize) -> Self {
        PapayaXbeam {
            inner: Arc::new(Inner {
                map: papaya::HashMap::new(),
                seq: SeqCounter::default(),
                watchers: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(0),
                channel_capacity,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    fn put(&self, key: u64, value: u64) {
        let old = self.inner.map.pin().insert(key, value).copied();
        let ev = PeerEvent::new(self.inner.seq.next(), key, value, old);
        let ws = self
            .inner
            .watchers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        for (_, tx) in ws.iter() {
            if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
                dropped += 1;
            }
        }
        drop(ws);
        if dropped > 0 {
            self.inner.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.inner.map.pin().get(&key).copied()
    }

    fn watch(&self) -> Watcher {
        let (tx, rx) = crossbeam_channel::bounded(self.inner.channel_capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .watchers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, tx));
        Watcher {
            inner: self.inner.clone(),
            id,
            rx,
        }
    }

    fn try_recv(w: &mut Watcher) -> Recv {
        match w.rx.try_recv() {
            Ok(ev) => Recv::Event {
                key: ev.key,
                value: ev.value,
            },
            Err(TryRecvError::Empty) => Recv::Empty,
            Err(TryRecvError::Disconnected) => Recv::Closed,
        }
    }

    fn recv_blocking(w: &mut Watcher) -> Recv {
        match w.rx.recv() {
            Ok(ev) => Recv::Event {
                key: ev.key,
                value: ev.value,
            },
            Err(_) => Recv::Closed,
        }
    }

    fn close(&self) {
        // Dropping every sender disconnects the channels once they are drained.
        self.inner
            .watchers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn silently_dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}
