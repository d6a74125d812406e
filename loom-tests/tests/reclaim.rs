//! Model 6: reclamation (`core/src/engine/node.rs`: a record is retired when
//! its successor leaves the ring and its own slot has moved on; `ring.rs`
//! `leave`; `table.rs` drops a tombstone in a migration; and the loom
//! stand-in for the feed's collector in `core/src/engine/reclaim_loom.rs`).
//!
//! The stand-in drops a retired record once no guard is alive, and panics if
//! a guard loads a record retired before the guard was entered (a record
//! retired while still reachable from a ring or table slot) or if a record is
//! retired twice. Values count their drops ([`Drops`]), and a value read after
//! it was dropped panics ([`Val::read`]).
#![cfg(kvfeed_loom)]

use kvfeed::{Kind, WatchOptions};
use loom::thread;
use loom_tests::{feed, model, quiesce, recv, Drops, Rec, Val};

/// Model 6a — an event overwritten while a watcher reads it.
///
/// Property: a watcher borrows the event for seq 1 (key 0, value 0) and holds
/// it across scheduling points while a writer puts key 0 three more times on
/// a ring of capacity 2. Seq 1's record holds value 0; seq 2 replaces it in
/// the cell (the cell's reference becomes seq 2's `prev` link, through which
/// seq 2's `old` reads value 0); seq 3 overwrites seq 1's slot and seq 4 seq
/// 2's, so seq 2 lets go of its `prev` link (deferred past current guards)
/// and seq 1's record loses its last owner and is retired, possibly while
/// the watcher still reads it. The watcher's event stays intact (its value
/// is not dropped under it and reads as written); no record is retired twice
/// or reached after retirement; once no guard is alive value 0 is reclaimed
/// (before the feed drops); and after the feed and the watcher are dropped
/// every instance of every value has been dropped exactly once.
///
/// Bound: 2 threads (watcher, writer) + main; preemption bound 3.
#[test]
fn overwritten_while_read() {
    model("overwritten_while_read", 3, || {
        let drops = Drops::new(4);
        let feed = feed(2);
        let mut w = feed.watch(WatchOptions::all());
        feed.put(0, Val::new(0, &drops)).unwrap();

        let reader = thread::spawn(move || {
            let got = match w.try_next() {
                Ok(Some(ev)) => {
                    // Hold the borrowed event while the writer runs.
                    thread::yield_now();
                    let first = loom_tests::rec(&ev);
                    thread::yield_now();
                    assert_eq!(
                        first,
                        loom_tests::rec(&ev),
                        "the event changed under the reader"
                    );
                    Some(first)
                }
                other => recv(other),
            };
            (w, got)
        });
        let writer = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                for v in 1..=3 {
                    f.put(0, Val::new(v, &d)).unwrap();
                }
            })
        };
        writer.join().unwrap();
        let (w, got) = reader.join().unwrap();
        match got {
            Some(Rec::Change { .. }) => assert_eq!(
                got,
                Some(Rec::Change {
                    seq: 1,
                    kind: Kind::Create,
                    key: 0,
                    value: Some(0),
                    old: None
                })
            ),
            // Lapped before the first read: seq 1 is gone; seq 2 is too once
            // seq 4 is claimed.
            Some(Rec::Lagged(l)) => {
                assert!(matches!((l.missed, l.resume_at), (1, 2) | (2, 3)), "{l:?}")
            }
            other => panic!("{other:?}"),
        }
        // Seq 1's record (value 0) has left the ring and the cell, and seq 2
        // (whose `prev` link held it) has left the ring too: once no guard is
        // alive it is reclaimed, before the feed drops.
        quiesce(&feed);
        assert_eq!(
            drops.live(0),
            0,
            "value 0 not reclaimed while the feed lives"
        );
        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 6b — a deleted key leaves nothing behind.
///
/// Property (guarantee 7): writer A creates and deletes key 0 (value 0)
/// while writer B puts key 1 twice, on a ring of capacity 2. Deleting leaves
/// a tombstone in key 0's slot; the Create (value 0) is retired when the
/// Delete leaves the ring. Once every writer is done and the
/// ring has moved past the delete (delete seq <= head - 2) and no guard is
/// alive, value 0 has been dropped while the feed still lives (the records
/// that held it, the Create and the tombstone's `prev` link, are gone, not
/// parked until the feed drops). No record is retired twice or reached after
/// retirement; after the feed drops, every value instance was dropped once.
/// Not seen: the tombstone itself and the key (plain `u8` keys, and the
/// tombstone holds no value; a migration drops it), see loom-tests/README.md.
///
/// Bound: 2 writers + main; preemption bound 3.
#[test]
fn deleted_key_reclaimed() {
    model("deleted_key_reclaimed", 3, || {
        let drops = Drops::new(3);
        let feed = feed(2);
        let a = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                f.put(0, Val::new(0, &d)).unwrap();
                f.delete_seq(&0).unwrap().expect("present").0
            })
        };
        let b = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                f.put(1, Val::new(1, &d)).unwrap();
                f.put(1, Val::new(2, &d)).unwrap();
            })
        };
        let deleted_at = a.join().unwrap();
        b.join().unwrap();
        assert_eq!(feed.get_with(&0, |_, v| v), None);
        if deleted_at <= feed.head() - 2 {
            quiesce(&feed);
            assert_eq!(
                drops.live(0),
                0,
                "delete at seq {deleted_at}, head {}: the deleted key's value is still held",
                feed.head()
            );
        }
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 6c — a record whose successor left the ring before it did.
///
/// Property: key 0 is written at seq 1 (record N) and seq 2 (record M, N's
/// successor) on a ring of 2. Then writer X puts key 1 (seq 3, N's slot)
/// and writer Y puts key 2 (seq 4, M's slot) while a watcher reads from the
/// first seq. When Y publishes before X, M leaves the ring while N still
/// sits in its slot with its stamp: N must not be retired then (it waits
/// on the list of waiting records, `pending.rs`, checked at every publish
/// under loom) but only once X's publish moves its slot on. The stand-in
/// collector reports a record loaded after it was retired; values are read
/// through loom cells; every `Lagged` is exact; every value is dropped once.
///
/// Bound: 2 writers + watcher + main; preemption bound 2.
#[test]
fn late_record_retired_after_its_slot_moves_on() {
    model("late_record_retired_after_its_slot_moves_on", 2, || {
        let drops = Drops::new(4);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap();
        feed.put(0, Val::new(1, &drops)).unwrap();
        let mut w = feed.watch(WatchOptions::all().from(1));
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..3 {
                if let Some(r) = recv(w.try_next()) {
                    got.push(r);
                }
            }
            (w, got)
        });
        let writers: Vec<_> = [(1u8, 2usize), (2, 3)]
            .into_iter()
            .map(|(k, v)| {
                let (f, d) = (feed.clone(), drops.clone());
                thread::spawn(move || f.put(k, Val::new(v, &d)).unwrap())
            })
            .collect();
        for h in writers {
            h.join().unwrap();
        }
        let (w, got) = reader.join().unwrap();
        let mut cursor = 1;
        for r in &got {
            match r {
                Rec::Change { seq, .. } => {
                    assert!(*seq >= cursor, "out of order: {got:?}");
                    cursor = seq + 1;
                }
                Rec::Lagged(l) => {
                    assert_eq!(l.missed, l.resume_at - cursor, "inexact lap: {got:?}");
                    cursor = l.resume_at;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(w);
        quiesce(&feed);
        drop(feed);
        drops.assert_all_dropped();
    });
}
