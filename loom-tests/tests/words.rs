//! Models 10-12: the word engine (`core/src/engine/word/`), which `u8 ->
//! u64` feeds use: values inline in the key table, read by `get` through
//! the writer's intent record while a write replaces them (`write.rs`,
//! `intent.rs`), and events inline in the ring, read under the stamp
//! (`ring.rs`).
#![cfg(kvfeed_loom)]

use std::mem::ManuallyDrop;

use kvfeed::{Config, Feed, RecvError, WatchOptions};
use loom::thread;
use loom_tests::model;

/// A word feed, leaked instead of dropped when a model fails (as
/// `loom_tests::TestFeed`, whose reasons apply here too).
struct WordFeed(ManuallyDrop<Feed<u8, u64>>);

impl WordFeed {
    fn new(capacity: usize) -> Self {
        WordFeed(ManuallyDrop::new(
            Feed::with_config(Config::new().capacity(capacity)).unwrap(),
        ))
    }

    fn share(&self) -> Self {
        WordFeed(ManuallyDrop::new((*self.0).clone()))
    }

    /// Drops the handle (only on a model's success path).
    fn close(mut self) {
        // SAFETY: taken once; `self` is forgotten by being consumed.
        unsafe { ManuallyDrop::drop(&mut self.0) }
    }
}

impl std::ops::Deref for WordFeed {
    type Target = Feed<u8, u64>;
    fn deref(&self) -> &Feed<u8, u64> {
        &self.0
    }
}

/// Model 10 — `get` while the same thread writes one key twice.
///
/// Property: a writer puts 10 then 20 into key 0 (seqs 1 and 2; the
/// second rewrites the thread's intent record while the first's `DIRTY`
/// word may still be what a reader saw, the same bits as the second's),
/// while a reader gets key 0. The get returns nothing, `(10, 1)` or
/// `(20, 2)`: never a value with another write's version.
///
/// Catches `word_no_intent` (the value stored while the word still names
/// the old version) and `intent_no_recheck` (an intent record read
/// without its seqlock checks).
///
/// Bound: 2 threads + main; preemption bound 3.
#[test]
fn get_during_rewrites_of_one_key() {
    model("get_during_rewrites_of_one_key", 3, || {
        let feed = WordFeed::new(4);
        let writer = {
            let feed = feed.share();
            thread::spawn(move || {
                let a = feed.put(0, 10).unwrap();
                let b = feed.put(0, 20).unwrap();
                feed.close();
                (a, b)
            })
        };
        let got = feed.get(&0);
        assert_eq!(writer.join().unwrap(), (1, 2));
        assert!(
            matches!(got, None | Some((10, 1)) | Some((20, 2))),
            "get returned {got:?}, which no write made"
        );
        feed.close();
    });
}

/// Model 11 — a watcher reading a ring that is lapped under it.
///
/// Property: with a ring of 2, a writer puts key k = 1, 2, 3 with values
/// 11, 12, 13 (seqs 1-3; seq 3 overwrites seq 1's slot), while a watcher
/// that started at seq 1 reads three times. Whatever it receives is
/// exactly what was written at that seq (key, value, no `old`), in order;
/// a lap is reported with the count that makes the cursor arithmetic
/// exact; draining afterwards ends at seq 4.
///
/// Catches `word_no_recheck` (the fields read without re-reading the
/// stamp: seq 1's stamp with seq 3's fields).
///
/// Bound: 2 threads + main; preemption bound 3.
#[test]
fn word_watcher_lapped_while_reading() {
    model("word_watcher_lapped_while_reading", 3, || {
        let feed = WordFeed::new(2);
        let mut w = feed.watch(WatchOptions::all().from(1));
        let writer = {
            let feed = feed.share();
            thread::spawn(move || {
                for k in 1..=3u8 {
                    feed.put(k, 10 + k as u64).unwrap();
                }
                feed.close();
            })
        };
        let mut next = 1;
        let check = |r: Result<Option<kvfeed::EventRef<'_, u8, u64>>, RecvError>,
                     next: &mut u64| match r {
            Ok(Some(ev)) => {
                let c = ev.as_change().unwrap();
                assert_eq!(c.seq(), *next, "out of order");
                assert_eq!(
                    (*c.key() as u64, c.value().copied(), c.old()),
                    (*next, Some(10 + *next), None),
                    "seq {next} carries another write's fields"
                );
                *next += 1;
            }
            Ok(None) => {}
            Err(RecvError::Lagged(l)) => {
                assert_eq!(
                    l.resume_at - l.missed,
                    *next,
                    "a lap that does not start at the cursor"
                );
                *next = l.resume_at;
            }
            Err(RecvError::Closed) => panic!("closed"),
        };
        for _ in 0..3 {
            // Without a yield between reads, loom never schedules the
            // writer in the middle of this loop (it explored one execution).
            thread::yield_now();
            check(w.try_next(), &mut next);
        }
        writer.join().unwrap();
        while next < 4 {
            check(w.try_next(), &mut next);
        }
        assert_eq!(w.cursor(), 4);
        drop(w);
        feed.close();
    });
}

/// Model 12 — a migration copying a key that is being written and read.
///
/// Property: a 4-slot table (under loom) holds keys 0-2; a writer creates
/// key 3 (which starts a migration and copies the first chunk) and then
/// updates key 0, while another writer updates key 0 and a reader gets key
/// 0. Afterwards every key is found with its last value and version, key
/// 0's two updates are numbered in the order they were applied (its final
/// value is the one with the higher seq), and the reader's get returned a
/// value and version that some write made.
///
/// Bound: 3 threads + main; preemption bound 2.
#[test]
fn word_migration_racing_writes() {
    model("word_migration_racing_writes", 2, || {
        let feed = WordFeed::new(8);
        for k in 0..3u8 {
            feed.put(k, k as u64).unwrap(); // seqs 1-3
        }
        let a = {
            let feed = feed.share();
            thread::spawn(move || {
                let created = feed.put(3, 3).unwrap();
                let updated = feed.put(0, 100).unwrap();
                feed.close();
                (created, updated)
            })
        };
        let b = {
            let feed = feed.share();
            thread::spawn(move || {
                let updated = feed.put(0, 200).unwrap();
                feed.close();
                updated
            })
        };
        let got = feed.get(&0);
        let (created, a0) = a.join().unwrap();
        let b0 = b.join().unwrap();
        let mut seqs = vec![created, a0, b0];
        seqs.sort();
        assert_eq!(seqs, vec![4, 5, 6]);
        let last = if a0 > b0 { (100, a0) } else { (200, b0) };
        assert_eq!(feed.get(&0), Some(last));
        assert_eq!(feed.get(&1), Some((1, 2)));
        assert_eq!(feed.get(&2), Some((2, 3)));
        assert_eq!(feed.get(&3), Some((3, created)));
        assert!(
            [Some((0, 1)), Some((100, a0)), Some((200, b0))].contains(&got),
            "get returned {got:?}"
        );
        feed.close();
    });
}

/// Model 13 — a word feed's watcher parks in `next_timeout`, a put wakes it.
///
/// Property: as model 5a on a word feed (the word ring's publish is the
/// other half of the parking handshake): the watcher returns the event,
/// never deadlocks. The model first puts two events and closes a watcher,
/// for the reason model 5a states (loom's `SeqCst` on fresh atomics).
///
/// Bound: 1 watcher thread + main (the writer); preemption bound 3.
#[test]
fn word_park_wake_next_timeout() {
    loom_tests::model_with("word_park_wake_next_timeout", 3, Some(20_000), || {
        let feed = WordFeed::new(2);
        feed.put(0, 10).unwrap();
        feed.put(1, 11).unwrap();
        feed.watch(WatchOptions::all()).closer().close();
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            let got = w
                .next_timeout(std::time::Duration::from_secs(3600))
                .map(|e| e.map(|e| e.to_owned()));
            (w, got)
        });
        let seq = feed.put(2, 12).unwrap();
        let (w, got) = watcher.join().unwrap();
        match got {
            Ok(Some(kvfeed::Event::Change(c))) => {
                assert_eq!((c.seq, c.key, c.value), (seq, 2, Some(12)))
            }
            other => panic!("expected the put, got {other:?}"),
        }
        drop(w);
        feed.close();
    });
}
