//! Peer 1: a global `Mutex<(HashMap, VecDeque)>`: the map and a bounded ring
//! of events under one lock; each watcher holds a cursor (a seq) into the
//! ring. A watcher parks on a condvar, which writers notify only when some
//! watcher is parked.
//!
//! Two ways to read: [`MutexRing`] drains by copying every available event
//! into the watcher's own buffer under one lock and handling them after the
//! unlock (what a batch reader of this design does: it does not run the
//! caller's code under the global lock); [`MutexRingPerEvent`] takes the lock
//! once per event read.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::PeerEvent;
use crate::{Drained, FeedUnderTest, Recv};

/// The global-mutex feed.
pub struct MutexRing {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    cv: Condvar,
}

struct Inner {
    map: HashMap<u64, u64>,
    /// Events `first_seq()..next_seq`, oldest first; at most `cap` of them.
    ring: VecDeque<PeerEvent>,
    cap: usize,
    /// The seq the next write gets (starts at 1).
    next_seq: u64,
    /// Watchers waiting on `cv`.
    parked: usize,
    closed: bool,
}

impl Inner {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.ring.len() as u64
    }

    fn read(&self, cursor: &mut u64) -> Recv {
        let first = self.first_seq();
        if *cursor < first {
            let missed = first - *cursor;
            *cursor = first;
            return Recv::Lagged(missed);
        }
        if *cursor < self.next_seq {
            let ev = self.ring[(*cursor - first) as usize];
            *cursor += 1;
            return Recv::Event {
                key: ev.key,
                value: ev.value,
            };
        }
        if self.closed {
            Recv::Closed
        } else {
            Recv::Empty
        }
    }
}

/// A watcher of [`MutexRing`]: a cursor, and the buffer a batch drain
/// copies into (reused, so a drain does not allocate once it has grown).
pub struct Watcher {
    shared: Arc<Shared>,
    cursor: u64,
    buf: Vec<PeerEvent>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FeedUnderTest for MutexRing {
    type Watcher = Watcher;
    const NAME: &'static str = "mutex+vecdeque";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, _channel_capacity: usize) -> Self {
        MutexRing {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    map: HashMap::new(),
                    ring: VecDeque::with_capacity(ring_capacity),
                    cap: ring_capacity,
                    next_seq: 1,
                    parked: 0,
                    closed: false,
                }),
                cv: Condvar::new(),
            }),
        }
    }

    fn put(&self, key: u64, value: u64) {
        let mut g = self.shared.lock();
        let old = g.map.insert(key, value);
        let seq = g.next_seq;
        g.next_seq += 1;
        if g.ring.len() == g.cap {
            g.ring.pop_front();
        }
        g.ring.push_back(PeerEvent::new(seq, key, value, old));
        let wake = g.parked > 0;
        drop(g);
        if wake {
            self.shared.cv.notify_all();
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.shared.lock().map.get(&key).copied()
    }

    fn watch(&self) -> Watcher {
        let cursor = self.shared.lock().next_seq;
        Watcher {
            shared: self.shared.clone(),
            cursor,
            buf: Vec::new(),
        }
    }

    fn try_recv(w: &mut Watcher) -> Recv {
        let g = w.shared.lock();
        g.read(&mut w.cursor)
    }

    fn recv_blocking(w: &mut Watcher) -> Recv {
        let mut g = w.shared.lock();
        loop {
            match g.read(&mut w.cursor) {
                Recv::Empty => {
                    g.parked += 1;
                    g = w.shared.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                    g.parked -= 1;
                }
                r => return r,
            }
        }
    }

    /// One lock for the whole drain: copy every available event into the
    /// watcher's buffer under the lock, then handle them after the unlock.
    fn drain(w: &mut Watcher) -> Drained {
        let mut d = Drained::default();
        w.buf.clear();
        {
            let g = w.shared.lock();
            let first = g.first_seq();
            if w.cursor < first {
                d.missed = first - w.cursor;
                w.cursor = first;
            }
            let start = (w.cursor - first) as usize;
            w.buf.extend(g.ring.range(start..));
            w.cursor = g.next_seq;
        }
        for ev in &w.buf {
            d.received += 1;
            d.checksum = d.checksum.wrapping_add(ev.key ^ ev.value);
        }
        d
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.cv.notify_all();
    }
}

/// The same global-mutex feed, drained one event per lock acquisition (the
/// trait's default `drain` over `try_recv`) instead of one lock per drain.
/// Only W1 and W4 run it (nothing else drains): it shows what the batch
/// drain is worth, and matches how the planning numbers were taken.
pub struct MutexRingPerEvent(MutexRing);

impl FeedUnderTest for MutexRingPerEvent {
    type Watcher = Watcher;
    const NAME: &'static str = "mutex+vecdeque(lock-per-event)";
    const TELLS_MISSED: bool = true;

    fn new(ring_capacity: usize, channel_capacity: usize) -> Self {
        MutexRingPerEvent(MutexRing::new(ring_capacity, channel_capacity))
    }

    fn put(&self, key: u64, value: u64) {
        self.0.put(key, value)
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(key)
    }

    fn watch(&self) -> Watcher {
        self.0.watch()
    }

    fn try_recv(w: &mut Watcher) -> Recv {
        MutexRing::try_recv(w)
    }

    fn recv_blocking(w: &mut Watcher) -> Recv {
        MutexRing::recv_blocking(w)
    }

    fn close(&self) {
        self.0.close()
    }
}
