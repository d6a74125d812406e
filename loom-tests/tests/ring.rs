//! Models 1 and 2: the ring (`core/src/engine/ring.rs`: stamped slots,
//! publish, lap detection; `sequencer.rs`: the claim; `watcher.rs::step`).
#![cfg(kvfeed_loom)]

use kvfeed::{Kind, WatchOptions};
use loom::thread;
use loom_tests::{assert_increasing, drain, feed, model, recv, Drops, Rec, Val};

/// Model 1 — claim / publish / read.
///
/// Property: two writers publish concurrently (seqs 3 and 4, claimed in either
/// order, published in either order) into a ring of capacity 2 whose slots
/// still hold seqs 1 and 2, while a watcher at cursor 3 reads. The watcher
/// sees strictly increasing seqs; every event it gets is exactly the one its
/// writer published (seq, key, kind, value and old, read through loom cells,
/// so a stale or torn read of the record is a loom causality violation); a
/// slot holding an older seq, or a later seq published before an earlier
/// one, reads as "not yet" and never as a lap (no `Lagged` can be right here:
/// 4 events never lap a ring of 2 at cursor 3); and after the writers finish
/// the watcher has received both events, each once.
///
/// Bound: 3 threads (2 writers, the watcher) + main; preemption bound 3.
#[test]
fn claim_publish_read() {
    model("claim_publish_read", 3, || {
        let drops = Drops::new(4);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap(); // seq 1, slot 1
        feed.put(1, Val::new(1, &drops)).unwrap(); // seq 2, slot 0
        let mut w = feed.watch(WatchOptions::all());
        assert_eq!(w.cursor(), 3);

        let writers: Vec<_> = (0..2u8)
            .map(|k| {
                let (f, d) = (feed.clone(), drops.clone());
                thread::spawn(move || f.put(k, Val::new(2 + k as usize, &d)).unwrap())
            })
            .collect();
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                got.extend(recv(w.try_next()));
            }
            (w, got)
        });

        let seqs: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        let (mut w, mut got) = reader.join().unwrap();
        let during = got.len();
        drain(&mut w, &mut got);

        let mut claimed = seqs.clone();
        claimed.sort();
        assert_eq!(claimed, vec![3, 4], "each write claims one fresh seq");
        assert!(
            got.iter().all(|r| !matches!(r, Rec::Lagged(_))),
            "'not yet published' read as a lap: {got:?}"
        );
        assert_increasing(&got);
        let mut expect: Vec<Rec> = (0..2u8)
            .map(|k| Rec::Change {
                seq: seqs[k as usize],
                kind: Kind::Update,
                key: k,
                value: Some(2 + k as usize),
                old: Some(k as usize),
            })
            .collect();
        expect.sort_by_key(|r| r.seq());
        assert_eq!(got, expect, "({during} read while the writers ran)");
        assert_eq!(w.cursor(), 5);

        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 2 — lap detection.
///
/// Property: writers overrun a watcher on a ring of capacity 2 (writer A puts
/// key 0 once, writer B puts key 1 twice: seqs 1..=3 in any claim and publish
/// order, including A publishing seq 1 after B already published seq 3 into the
/// same slot) while the watcher, starting at seq 1, reads. Every `Lagged` is
/// exact: `missed == resume_at - cursor` and it resumes at the oldest seq the
/// ring still holds (here always `{ missed: 1, resume_at: 2 }`: only seq 1 can
/// be overwritten); no event is delivered out of place, and
/// `delivered + missed` equals the number of seqs passed (3: seqs are
/// dense). Slots only move forward: a late publisher never
/// overwrites a newer seq, so after the writers finish the watcher reaches the
/// head, and a fresh watcher from seq 1 is told exactly
/// `Lagged { missed: 1, resume_at: 2 }` and then reads seqs 2 and 3.
///
/// Bound: 3 threads (2 writers, the watcher) + main; preemption bound 3.
#[test]
fn lap_detection() {
    model("lap_detection", 3, || {
        let drops = Drops::new(3);
        let feed = feed(2);
        let mut w = feed.watch(WatchOptions::all());
        assert_eq!(w.cursor(), 1);

        let a = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || vec![(f.put(0, Val::new(0, &d)).unwrap(), 0u8, 0usize)])
        };
        let b = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                let s1 = f.put(1, Val::new(1, &d)).unwrap();
                let s2 = f.put(1, Val::new(2, &d)).unwrap();
                vec![(s1, 1u8, 1usize), (s2, 1, 2)]
            })
        };
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..2 {
                got.extend(recv(w.try_next()));
            }
            (w, got)
        });

        let mut writes = a.join().unwrap();
        writes.extend(b.join().unwrap());
        writes.sort();
        let (mut w, mut got) = reader.join().unwrap();
        drain(&mut w, &mut got);
        assert_eq!(feed.head(), 3);
        assert_eq!(
            writes.iter().map(|w| w.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );

        // Walk the watcher's stream with its cursor.
        let (mut pos, mut delivered, mut missed) = (1u64, 0u64, 0u64);
        for r in &got {
            match r {
                Rec::Lagged(l) => {
                    assert_eq!(
                        (l.missed, l.resume_at),
                        (1, 2),
                        "inexact lap at cursor {pos}: {got:?}"
                    );
                    assert_eq!(l.resume_at - l.missed, pos, "missed != resume_at - cursor");
                    pos = l.resume_at;
                    missed += l.missed;
                }
                Rec::Change {
                    seq,
                    kind,
                    key,
                    value,
                    old,
                } => {
                    assert_eq!(*seq, pos, "event out of place (silent loss?): {got:?}");
                    let (_, k, v) = writes[*seq as usize - 1];
                    let prev = (k == 1 && v == 2).then_some(1);
                    let want_kind = if prev.is_some() {
                        Kind::Update
                    } else {
                        Kind::Create
                    };
                    assert_eq!(
                        (*kind, *key, *value, *old),
                        (want_kind, k, Some(v), prev),
                        "{got:?}"
                    );
                    pos += 1;
                    delivered += 1;
                }
                Rec::SnapshotDone { .. } => unreachable!(),
            }
        }
        assert_eq!(w.cursor(), pos);
        assert_eq!(
            pos,
            feed.head() + 1,
            "watcher stuck before the head: {got:?}"
        );
        assert_eq!(delivered + missed, 3);

        // After the writers: the oldest retained seq is head - capacity + 1.
        let mut fresh = feed.watch(WatchOptions::all().from(1));
        let mut again = Vec::new();
        drain(&mut fresh, &mut again);
        assert_eq!(
            again
                .iter()
                .map(|r| r.seq().unwrap_or(0))
                .collect::<Vec<_>>(),
            vec![0, 2, 3],
            "{again:?}"
        );
        assert_eq!(
            again[0],
            Rec::Lagged(kvfeed::Lagged {
                missed: 1,
                resume_at: 2
            })
        );

        drop((w, fresh));
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 2b — the `old` of a read a lap-ahead publisher overtakes.
///
/// Property: key 0 is written at seq 1 (value 0) and seq 2 (value 1, `old`
/// 0) on a ring of 2; a watcher reads from seq 2 while a writer puts key 1
/// twice (seqs 3 and 4, the second into seq 2's slot, with its own
/// predecessor beside it). Whatever the interleaving, an event the watcher
/// gets for seq 2 carries `old` 0 (key 0's previous value), never key 1's:
/// a reader that took the slot's predecessor after the lap-ahead publisher
/// replaced it must report the lap instead (`prev_if_unchanged`). Every
/// `Lagged` is exact; every value is dropped once.
///
/// Bound: writer + watcher + main; preemption bound 3.
#[test]
fn old_of_an_overtaken_read() {
    model("old_of_an_overtaken_read", 3, || {
        let drops = Drops::new(4);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap(); // seq 1
        feed.put(0, Val::new(1, &drops)).unwrap(); // seq 2, old 0
        let mut w = feed.watch(WatchOptions::all().from(2));

        let writer = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || {
                f.put(1, Val::new(2, &d)).unwrap(); // seq 3
                f.put(1, Val::new(3, &d)).unwrap(); // seq 4, over seq 2
            })
        };
        let reader = thread::spawn(move || {
            let got = recv(w.try_next());
            (w, got)
        });
        writer.join().unwrap();
        let (w, got) = reader.join().unwrap();
        match got {
            None => {}
            Some(Rec::Change { seq, key, old, .. }) => {
                assert_eq!(
                    (seq, key, old),
                    (2, 0, Some(0)),
                    "seq 2 with someone else's old"
                );
            }
            Some(Rec::Lagged(l)) => {
                assert_eq!((l.missed, l.resume_at), (1, 3), "inexact lap");
            }
            Some(other) => panic!("unexpected {other:?}"),
        }

        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}
