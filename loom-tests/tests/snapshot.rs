//! Model 4: snapshot + live (`core/src/snapshot.rs`, `watcher.rs`).
#![cfg(kvfeed_loom)]

use kvfeed::{Kind, WatchOptions};
use loom::thread;
use loom_tests::{drain, feed, full_log, model, recv, replay, Drops, Rec, State, Val};

/// Model 4 — a watcher starts with a snapshot while a writer runs.
///
/// Property (guarantee 6): keys 0 and 1 exist (seqs 1, 2); a writer puts key
/// 0, deletes key 1 and creates key 2 while a watcher takes its snapshot (the
/// scan runs concurrently with the writes) and starts reading. Then:
/// * the snapshot has at most one `Create` per key, each carrying a version
///   that is the seq of a Create/Update of that key with that value;
/// * `SnapshotDone { at, consistent_at }` with `2 <= at <= consistent_at`;
/// * live events are exactly the log's events after `at`, minus those the
///   snapshot reflected (seq <= the version delivered for the key): no gap,
///   no duplicate, strictly increasing;
/// * from `consistent_at` on, at every seq up to the head, the watcher's view
///   (snapshot + live events applied) equals the store's state at that seq
///   (replayed from the full log).
///
/// Bound: 2 threads (writer, watcher) + main; preemption bound 3; ring
/// of 8 (the full log fits).
#[test]
fn snapshot_then_live() {
    model("snapshot_then_live", 3, || {
        let drops = Drops::new(4);
        let feed = feed(8);
        feed.put(0, Val::new(0, &drops)).unwrap();
        feed.put(1, Val::new(1, &drops)).unwrap();

        let writer = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                f.put(0, Val::new(2, &d)).unwrap();
                f.delete(&1).unwrap().expect("key 1 is present");
                f.put(2, Val::new(3, &d)).unwrap();
            })
        };
        let watcher = {
            let f = feed.clone();
            thread::spawn(move || {
                let mut w = f.watch(WatchOptions::all().snapshot());
                let mut got = Vec::new();
                // The snapshot's items and marker, then one live read.
                for _ in 0..4 {
                    got.extend(recv(w.try_next()));
                }
                (w, got)
            })
        };
        writer.join().unwrap();
        let (mut w, mut got) = watcher.join().unwrap();
        drain(&mut w, &mut got);
        let log = full_log(&feed);
        let head = feed.head();

        // Split the stream: snapshot items, marker, live events.
        let marker = got
            .iter()
            .position(|r| matches!(r, Rec::SnapshotDone { .. }))
            .unwrap_or_else(|| panic!("no SnapshotDone: {got:?}"));
        let Rec::SnapshotDone { at, consistent_at } = got[marker] else {
            unreachable!()
        };
        let (items, live) = (&got[..marker], &got[marker + 1..]);
        assert!(
            2 <= at && at <= consistent_at && consistent_at <= head,
            "{got:?}"
        );

        let mut snap = State::new();
        for it in items {
            let Rec::Change {
                seq,
                kind: Kind::Create,
                key,
                value: Some(v),
                old: None,
            } = *it
            else {
                panic!("snapshot item is not a Create with a value: {it:?}");
            };
            assert!(
                snap.insert(key, (v, seq)).is_none(),
                "key {key} twice: {got:?}"
            );
            assert!(
                log.iter().any(|e| matches!(*e,
                    Rec::Change { seq: s, key: k, kind: Kind::Create | Kind::Update, value: Some(x), .. }
                        if s == seq && k == key && x == v)),
                "snapshot item {it:?} is no event of the log {log:?}"
            );
        }

        let reflected = |key: u8, seq: u64| snap.get(&key).is_some_and(|&(_, ver)| seq <= ver);
        let expected: Vec<&Rec> = log
            .iter()
            .filter(|e| match **e {
                Rec::Change { seq, key, .. } => seq > at && !reflected(key, seq),
                _ => false,
            })
            .collect();
        assert_eq!(
            live.iter().collect::<Vec<_>>(),
            expected,
            "live events: gap or duplicate (at {at}, consistent_at {consistent_at}, snapshot {snap:?}, log {log:?})"
        );

        // The view equals the store from consistent_at on.
        let mut view = snap.clone();
        for s in at..=head {
            if let Some(e) = live.iter().find(|e| e.seq() == Some(s)) {
                view = replay_lenient(view, e);
            }
            if s >= consistent_at {
                let upto: Vec<Rec> = log.iter().filter(|e| e.seq() <= Some(s)).cloned().collect();
                let store = replay(State::new(), &upto);
                assert_eq!(
                    view, store,
                    "view != store at seq {s} (at {at}, consistent_at {consistent_at}, snapshot {snap:?}, live {live:?}, log {log:?})"
                );
            }
        }

        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Applies one live event to a watcher's view (a delete of a key the view
/// does not have is allowed: the scan may have missed a key deleted while it
/// ran).
fn replay_lenient(mut view: State, e: &Rec) -> State {
    match *e {
        Rec::Change {
            seq,
            kind: Kind::Create | Kind::Update,
            key,
            value: Some(v),
            ..
        } => {
            view.insert(key, (v, seq));
        }
        Rec::Change {
            kind: Kind::Delete,
            key,
            ..
        } => {
            view.remove(&key);
        }
        _ => panic!("not a change: {e:?}"),
    }
    view
}
