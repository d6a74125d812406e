//! Unit tests of behaviour that needs the crate's insides or is not covered
//! by the property and stress suites in `tests/`.

use std::sync::atomic::{AtomicUsize, Ordering as O};
use std::sync::Arc;
use std::time::Duration;

use crate::*;

/// A value that counts how many of its kind are alive.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, O::SeqCst);
        Counted(live.clone())
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new(&self.0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, O::SeqCst);
    }
}

#[test]
fn churn_of_unique_keys_runs_in_flat_memory() {
    // Guarantee 7: put then delete of ever-new keys. Once the ring has moved
    // past a delete, nothing of the key (value, cell, event) remains.
    let live = Arc::new(AtomicUsize::new(0));
    let feed: Feed<u64, Counted> = Feed::with_config(Config::new().capacity(256)).unwrap();
    let mut peak = 0;
    for k in 0..200_000u64 {
        feed.put(k, Counted::new(&live)).unwrap();
        feed.delete(&k).unwrap();
        if k % 1000 == 0 {
            peak = peak.max(live.load(O::SeqCst));
        }
    }
    // Values reachable from the ring (<= capacity), plus what waits for its
    // grace period: two to three seal batches of this one writing thread,
    // more while other tests' threads sit in guards when it seals (the
    // epoch is process-wide); independent of the 200,000 keys written.
    assert!(
        peak < 256 + 8 * crate::engine::SEAL_EVERY,
        "live values grew with the number of keys: peak {peak}"
    );
    drop(feed);
    assert_eq!(
        live.load(O::SeqCst),
        0,
        "dropping the feed frees every value"
    );
}

#[test]
fn updates_of_one_key_keep_no_history_alive() {
    let live = Arc::new(AtomicUsize::new(0));
    let feed: Feed<u8, Counted> = Feed::with_config(Config::new().capacity(64)).unwrap();
    let mut peak = 0;
    for _ in 0..100_000 {
        feed.put(1, Counted::new(&live)).unwrap();
        peak = peak.max(live.load(O::SeqCst));
    }
    // The ring (64) and what waits for its grace period (see above).
    assert!(
        peak < 64 + 8 * crate::engine::SEAL_EVERY,
        "an update chain kept history alive: peak {peak}"
    );
    drop(feed);
    assert_eq!(live.load(O::SeqCst), 0);
}

#[test]
fn capacity_must_be_a_power_of_two_of_at_least_two() {
    for bad in [0usize, 1, 3, 6, 1000] {
        let e = Feed::<u8, u8>::with_config(Config::new().capacity(bad)).unwrap_err();
        assert_eq!(e, ConfigError::Capacity(bad));
        assert!(e.to_string().contains("power of two"));
    }
    assert_eq!(
        Feed::<u8, u8>::with_config(Config::new().capacity(2))
            .unwrap()
            .capacity(),
        2
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri aborts on an allocation this size instead of failing it"
)]
fn a_ring_the_machine_cannot_hold_is_an_error_not_an_abort() {
    // 2^40 slots of 32 bytes: 32 TiB, more than any machine here has. Both
    // engines: the word engine's ring (`u64 -> u64`) and the record
    // engine's (`String -> String`).
    let capacity = 1usize << 40;
    let words = Feed::<u64, u64>::with_config(Config::new().capacity(capacity)).map(|_| ());
    let records = Feed::<String, String>::with_config(Config::new().capacity(capacity)).map(|_| ());
    for result in [words, records] {
        match result {
            Err(ConfigError::OutOfMemory { capacity: c, bytes }) => {
                assert_eq!(c, capacity);
                assert!(bytes >= capacity);
            }
            Err(e) => panic!("expected OutOfMemory, got {e}"),
            Ok(()) => panic!("a 32 TiB ring was allocated"),
        }
    }
    // And the process is still fine: a normal feed works.
    let feed: Feed<u64, u64> = Feed::new();
    assert_eq!(feed.put(1, 1), Ok(1));
}

#[test]
fn oversize_writes_change_nothing() {
    let feed: Feed<Vec<u8>, Vec<u8>> =
        Feed::with_config(Config::new().max_key_len(4).max_value_len(8)).unwrap();
    feed.put(b"k".to_vec(), b"v".to_vec()).unwrap();
    let head = feed.head();
    assert_eq!(
        feed.put(b"toolong".to_vec(), b"v".to_vec()),
        Err(WriteError::TooLarge {
            what: "key",
            len: 7,
            max: 4
        })
    );
    assert_eq!(
        feed.compare_and_put(b"k".to_vec(), head, vec![0; 9]),
        Err(CasError::Write(WriteError::TooLarge {
            what: "value",
            len: 9,
            max: 8
        }))
    );
    assert_eq!(feed.head(), head);
    assert_eq!(feed.get(b"k".as_slice()), Some((b"v".to_vec(), head)));
    assert_eq!(feed.get(b"toolong".as_slice()), None);
}

#[test]
fn watching_from_an_overwritten_seq_lags_at_once_with_the_count() {
    let feed: Feed<u32, u32> = Feed::with_config(Config::new().capacity(8)).unwrap();
    for i in 0..20 {
        feed.put(i, i).unwrap();
    }
    let mut w = feed.watch(WatchOptions::all().from(3));
    // Seqs 13..=20 are retained (the last 8); 3..=12 are gone.
    assert_eq!(
        w.try_next().unwrap_err(),
        RecvError::Lagged(Lagged {
            missed: 10,
            resume_at: 13
        })
    );
    let got: Vec<u64> =
        std::iter::from_fn(|| w.try_next().unwrap().map(|e| e.as_change().unwrap().seq()))
            .collect();
    assert_eq!(got, (13..=20).collect::<Vec<_>>());
}

#[test]
fn closing_the_feed_lets_watchers_drain_then_says_closed() {
    let feed: Feed<u32, u32> = Feed::new();
    let mut w = feed.watch(WatchOptions::all());
    feed.put(1, 1).unwrap();
    feed.put(2, 2).unwrap();
    feed.close();
    assert_eq!(feed.put(3, 3), Err(WriteError::Closed));
    assert_eq!(feed.delete(&1), Err(WriteError::Closed));
    assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), 1);
    assert_eq!(
        w.next_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap()
            .as_change()
            .unwrap()
            .seq(),
        2
    );
    assert_eq!(w.try_next().unwrap_err(), RecvError::Closed);
    assert_eq!(
        w.next_timeout(Duration::from_secs(5)).unwrap_err(),
        RecvError::Closed
    );
}

#[test]
fn close_wakes_a_blocked_watcher() {
    let feed: Feed<u32, u32> = Feed::new();
    let mut w = feed.watch(WatchOptions::all());
    let reader = std::thread::spawn(move || w.next().is_none());
    // Whether the reader is parked yet or not, close must end its wait.
    feed.close();
    assert!(reader.join().unwrap());
}

#[test]
fn watch_closer_wakes_a_blocked_watcher_from_another_thread() {
    let feed: Feed<u32, u32> = Feed::new();
    let mut w = feed.watch(WatchOptions::all());
    let closer = w.closer();
    let reader = std::thread::spawn(move || {
        w.next_timeout(Duration::from_secs(3600))
            .map(|e| e.is_some())
    });
    closer.close();
    assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
    // The feed itself is unaffected.
    assert!(feed.put(1, 1).is_ok());
}

#[test]
fn a_parked_watcher_is_woken_by_a_write() {
    let feed: Feed<u32, u32> = Feed::new();
    let mut w = feed.watch(WatchOptions::all());
    let reader = std::thread::spawn(move || {
        w.next_timeout(Duration::from_secs(60))
            .unwrap()
            .map(|e| e.as_change().unwrap().seq())
    });
    let seq = feed.put(7, 7).unwrap();
    assert_eq!(reader.join().unwrap(), Some(seq));
}

#[test]
fn subscription_runs_the_handler_off_the_writer_thread_and_stops_on_drop() {
    let feed: Feed<u32, u32> = Feed::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let sub = feed.on(WatchOptions::all().key(2), move |ev| {
        tx.send((
            std::thread::current().id(),
            ev.unwrap().as_change().map(|c| c.seq),
        ))
        .unwrap();
    });
    feed.put(1, 1).unwrap();
    let s2 = feed.put(2, 2).unwrap();
    let (thread, seq) = rx.recv().unwrap();
    assert_ne!(thread, std::thread::current().id());
    assert_eq!(seq, Some(s2));
    drop(sub);
    // The handler's thread is gone: the channel's sender was dropped with it.
    feed.put(2, 3).unwrap();
    assert!(rx.recv().is_err());
}

/// `resnapshot` after a lap, on a feed of `K -> V` (both engines: see the
/// test below).
fn resnapshot_recovers_in_place_with<K, V>(key: impl Fn(u32) -> K, value: impl Fn(u32) -> V)
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + PartialEq + Send + Sync + std::fmt::Debug + 'static,
{
    let feed: Feed<K, V> = Feed::with_config(Config::new().capacity(4)).unwrap();
    let mut w = feed.watch(WatchOptions::all());
    for i in 0..10 {
        feed.put(key(i % 3), value(i)).unwrap();
    }
    assert!(matches!(w.try_next(), Err(RecvError::Lagged(_))));
    w.resnapshot();
    let mut view = std::collections::HashMap::new();
    let mut buf = Vec::new();
    w.next_batch(&mut buf, 100).unwrap();
    for ev in buf {
        match ev {
            Event::Change(c) => {
                view.insert(c.key, c.value.unwrap());
            }
            Event::SnapshotDone { at, consistent_at } => {
                assert_eq!((at, consistent_at), (10, 10));
            }
        }
    }
    let expected: std::collections::HashMap<K, V> = (0..3)
        .map(|k| (key(k), feed.get(&key(k)).unwrap().0))
        .collect();
    assert_eq!(view, expected);
}

#[test]
fn resnapshot_recovers_in_place() {
    // The word engine, then the record engine.
    resnapshot_recovers_in_place_with(|k| k, |v| v);
    resnapshot_recovers_in_place_with(|k| k.to_string(), |v| v.to_string());
}

#[test]
fn suppressed_unchanged_put_emits_nothing_and_returns_the_version() {
    let feed: Feed<&str, u32> = Feed::with_config(Config::new().suppress_unchanged()).unwrap();
    let mut w = feed.watch(WatchOptions::all());
    let v = feed.put("a", 1).unwrap();
    assert_eq!(feed.put("a", 1).unwrap(), v);
    assert_eq!(feed.head(), v);
    assert!(w.try_next().unwrap().is_some());
    assert!(w.try_next().unwrap().is_none());
}

#[cfg(feature = "async")]
#[test]
fn stream_yields_events_and_ends_on_close() {
    use futures_util::StreamExt;
    let feed: Feed<u32, u32> = Feed::new();
    let w = feed.watch(WatchOptions::all());
    let writer = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            for i in 0..1000 {
                feed.put(i % 10, i).unwrap();
            }
            feed.close();
        })
    };
    let seqs: Vec<u64> = futures_executor::block_on(
        StreamExt::map(w.into_stream(), |e| e.unwrap().as_change().unwrap().seq)
            .collect::<Vec<_>>(),
    );
    writer.join().unwrap();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
}

#[test]
fn dropping_the_last_feed_handle_closes_it_and_watchers_drain() {
    let feed: Feed<u32, u32> = Feed::new();
    let other = feed.clone();
    let mut w = feed.watch(WatchOptions::all());
    feed.put(1, 1).unwrap();
    drop(feed);
    assert!(!other.is_closed(), "a clone still holds the feed open");
    drop(other);
    assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), 1);
    assert_eq!(
        w.next_timeout(Duration::from_secs(60)).unwrap_err(),
        RecvError::Closed
    );
}

#[test]
fn handles_are_send_and_sync_where_they_should_be() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Feed<String, Vec<u8>>>();
    send::<Watcher<String, Vec<u8>>>();
    send_sync::<WatchCloser>();
    send::<Subscription>();
}

/// The word engine under Miri and TSan (`scripts/sanitize.sh`): writers of
/// shared and fresh keys (migrations: the table starts at 16 slots), a
/// getter, a watcher reading one by one and in batches over a small ring
/// (laps), then the state checked. Small enough for Miri.
#[test]
fn word_feed_smoke() {
    let feed: Feed<u32, u64> = Feed::with_config(Config::new().capacity(32)).unwrap();
    let mut w = feed.watch(WatchOptions::all());
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let key = if i % 2 == 0 {
                        (i % 4) as u32
                    } else {
                        (100 + t * 1000 + i) as u32
                    };
                    feed.put(key, t << 32 | i).unwrap();
                    if i % 10 == 9 {
                        feed.delete(&key).unwrap();
                    }
                }
            })
        })
        .collect();
    let getter = {
        let feed = feed.clone();
        std::thread::spawn(move || {
            let mut found = 0;
            for i in 0..200u32 {
                if let Some((v, version)) = feed.get(&(i % 4)) {
                    assert!(version >= 1 && v >> 32 < 2, "({v:#x}, {version})");
                    found += 1;
                }
            }
            found
        })
    };
    let (mut events, mut missed, mut cursor) = (0u64, 0u64, 1u64);
    while writers.iter().any(|t| !t.is_finished()) || w.cursor() <= feed.head() {
        let batch = w.drain_with(8, |ev| {
            assert_eq!(ev.as_change().unwrap().seq(), cursor);
            cursor += 1;
            events += 1;
        });
        match batch.and_then(|_| {
            w.try_next()
                .map(|e| e.map(|e| e.as_change().unwrap().seq()))
        }) {
            Ok(Some(seq)) => {
                assert_eq!(seq, cursor);
                cursor += 1;
                events += 1;
            }
            Ok(None) => std::thread::yield_now(),
            Err(RecvError::Lagged(l)) => {
                assert_eq!(l.resume_at - l.missed, cursor);
                missed += l.missed;
                cursor = l.resume_at;
            }
            Err(RecvError::Closed) => unreachable!(),
        }
    }
    for t in writers {
        t.join().unwrap();
    }
    getter.join().unwrap();
    assert_eq!(
        events + missed,
        feed.head(),
        "every seq delivered or reported"
    );
    for i in 0..4u32 {
        if let Some((_, version)) = feed.get(&i) {
            assert!(version <= feed.head());
        }
    }
}
