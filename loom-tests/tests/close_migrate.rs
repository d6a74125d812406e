//! Model 9: a write racing `close` (`core/src/engine/sequencer.rs`), and a
//! table migration racing writes (`core/src/engine/table.rs`).
#![cfg(kvfeed_loom)]

use kvfeed::{RecvError, WatchOptions, WriteError};
use loom::thread;
use loom_tests::{feed, full_log, map_state, model, recv, replay, Drops, Rec, State, Val};

/// Model 9a — a put racing `close`, with a watcher reading until `Closed`.
///
/// Property (guarantee 3 at close): `Closed` is final. The put either
/// fails with `Closed` and nothing is published, or it returns a seq and
/// the watcher, which reads concurrently until `Closed`, received that
/// event first. Under the old protocol a put that passed the closed check
/// before `close` could be numbered after the watcher had returned
/// `Closed`: delivered to nobody, reported to nobody.
///
/// Bound: writer + watcher + main (closing); preemption bound 2.
#[test]
fn put_racing_close() {
    model("put_racing_close", 2, || {
        let drops = Drops::new(1);
        let feed = feed(4);
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match w.try_next() {
                    Err(RecvError::Closed) => return got,
                    r => match recv(r) {
                        Some(rec) => got.push(rec),
                        None => thread::yield_now(),
                    },
                }
            }
        });
        let f = feed.clone();
        let d = drops.clone();
        let writer = thread::spawn(move || f.put(0, Val::new(0, &d)));
        feed.close();
        let put = writer.join().unwrap();
        let got = watcher.join().unwrap();
        match put {
            Ok(seq) => {
                assert_eq!(seq, 1);
                assert!(
                    matches!(got.as_slice(), [Rec::Change { seq: 1, .. }]),
                    "the put was numbered, so the watcher gets it before Closed: {got:?}"
                );
            }
            Err(WriteError::Closed) => {
                assert!(got.is_empty(), "a refused put publishes nothing: {got:?}");
                assert_eq!(feed.head(), 0, "a refused put is not numbered");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
}

/// Model 9b — a migration racing an update.
///
/// Property: keys 0, 1 and 2 fill three of the loom table's four slots.
/// Writer A creates key 3, which fills the table and starts a migration
/// that A copies; writer B updates key 0 meanwhile, in the old table
/// before its slot is frozen, or waiting for the copy and then in the new
/// one. Nothing is lost or reordered: the log has no gap, chains per key,
/// and `get` returns every key's last value and version.
///
/// Bound: 2 writers + main; preemption bound 2; ring of 8.
#[test]
fn migration_racing_update() {
    model("migration_racing_update", 2, || {
        let drops = Drops::new(5);
        let feed = feed(8);
        for k in 0..3u8 {
            feed.put(k, Val::new(k as usize, &drops)).unwrap();
        }
        let (fa, da) = (feed.clone(), drops.clone());
        let a = thread::spawn(move || fa.put(3, Val::new(3, &da)).unwrap());
        let (fb, db) = (feed.clone(), drops.clone());
        let b = thread::spawn(move || fb.put(0, Val::new(4, &db)).unwrap());
        let sa = a.join().unwrap();
        let sb = b.join().unwrap();
        assert_ne!(sa, sb);

        let log = full_log(&feed);
        assert_eq!(log.len(), 5, "five events, no gap: {log:?}");
        let end = replay(State::new(), &log);
        assert_eq!(end, map_state(&feed, 4), "get agrees with the log");
        assert_eq!(
            feed.get(&0).map(|(v, ver)| (v.read(), ver)),
            Some((4, sb)),
            "B's update is the key's value"
        );
        assert_eq!(feed.get(&3).map(|(v, ver)| (v.read(), ver)), Some((3, sa)));
        drop(feed);
        drops.assert_all_dropped();
    });
}
