//! Model 5: parking and waking (`core/src/notify.rs`, `watcher.rs`).
//!
//! Under loom a timed wait is an untimed one (`sync::wait_timeout`), so a
//! watcher that parks and is never woken blocks forever, and loom reports the
//! execution as a deadlock: a lost wake-up fails the model.
#![cfg(kvfeed_loom)]

use std::time::Duration;

use kvfeed::{Kind, RecvError, WatchOptions};
use loom::thread;
use loom_tests::{feed, model_with, recv, Drops, Rec, TestFeed, Val};

const LONG: Duration = Duration::from_secs(3600);

/// Makes `parked` hold a value written by a `SeqCst` RMW that the main thread
/// has seen: closing a watcher (any watcher) runs `Notifier::wake_all`,
/// whose first step is `parked.swap(0, SeqCst)`. See `park_wake_next_timeout`
/// for why. (No thread is needed, so it adds nothing to explore.)
fn warm_up_parked(feed: &TestFeed) {
    let w = feed.watch(WatchOptions::all());
    w.closer().close();
}

/// Model 5a — `next_timeout` parks, a put wakes it.
///
/// Property: a watcher calls `next_timeout(1 hour)` (spins, then parks on the
/// notifier) while the main thread puts one event: the watcher returns that
/// event (no lost wake-up: the publisher sees `parked`, or the watcher's
/// re-check under the lock sees the slot).
///
/// Loom's `SeqCst` is weaker than C11's: a `SeqCst` load may return a value
/// written by a non-`SeqCst` store, such as an atomic's initial value, even
/// when a newer `SeqCst` store exists. The handshake (publishing CAS then
/// load of `parked`, against `parked += 1` then re-load of the slot) is a
/// store-load pair on each side, so on fresh atomics loom reports a lost
/// wake-up that C11 forbids. The model therefore first puts two events (the
/// slots now hold `SeqCst`-CASed nodes) and closes a watcher (`parked` now
/// holds the value of a `SeqCst` swap); from there loom's rule "a `SeqCst`
/// load never reads a `SeqCst` store older than the newest" is the C11 rule
/// the handshake needs, and a missing or weakened step shows as a deadlock.
///
/// Bound: 1 watcher thread + main (the writer); preemption bound 3.
#[test]
fn park_wake_next_timeout() {
    model_with("park_wake_next_timeout", 3, Some(20_000), || {
        let drops = Drops::new(3);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap();
        feed.put(1, Val::new(1, &drops)).unwrap();
        warm_up_parked(&feed);
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            let got = recv(w.next_timeout(LONG));
            (w, got)
        });
        // A new key: its publish overwrites seq 1's slot without retiring
        // anything, which keeps the writer's side of the model small.
        let seq = feed.put(2, Val::new(2, &drops)).unwrap();
        let (w, got) = watcher.join().unwrap();
        assert_eq!(
            got,
            Some(Rec::Change {
                seq,
                kind: Kind::Create,
                key: 2,
                value: Some(2),
                old: None
            })
        );
        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 5b — the blocking `Iterator` parks, a put wakes it.
///
/// Property: as 5a, through `Iterator::next` (no deadline: the park has no
/// timeout at all): the watcher returns the event, owned.
///
/// Bound: 1 watcher thread + main (the writer), after the same warm-up as 5a;
/// preemption bound 3.
#[test]
fn park_wake_iterator() {
    model_with("park_wake_iterator", 3, Some(20_000), || {
        let drops = Drops::new(3);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap();
        feed.put(1, Val::new(1, &drops)).unwrap();
        warm_up_parked(&feed);
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            let ev = w.next().expect("not closed").expect("not lapped");
            let c = ev.as_change().expect("a change");
            let got = (c.seq, c.kind, c.key, c.value.as_ref().map(Val::read));
            drop(ev);
            (w, got)
        });
        let seq = feed.put(2, Val::new(2, &drops)).unwrap();
        let (w, got) = watcher.join().unwrap();
        assert_eq!(got, (seq, Kind::Create, 2, Some(2)));
        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 5c — `Feed::close` wakes a parked watcher.
///
/// Property: a watcher blocks in the `Iterator` (parked, no deadline) on an
/// empty feed while the main thread closes the feed: the iterator ends
/// (`None`). Closing is lock-based (flag, then `wake_all` under the
/// notifier's lock), so no warm-up is needed: this runs on fresh atomics.
///
/// Bound: 1 watcher thread + main; preemption bound 3.
#[test]
fn close_wakes_parked() {
    model_with("close_wakes_parked", 3, Some(20_000), || {
        let feed = feed(2);
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            assert!(w.next().is_none(), "a closed, empty feed ends the iterator");
            w
        });
        feed.close();
        let w = watcher.join().unwrap();
        drop(w);
        drop(feed);
    });
}

/// Model 5d — `WatchCloser::close` wakes a parked watcher.
///
/// Property: a watcher parks in `next_timeout(1 hour)` while another thread
/// (main) closes it through its `WatchCloser`: it returns `Err(Closed)`, and
/// the feed is unaffected (a later put succeeds). Runs on fresh atomics, like
/// 5c.
///
/// Bound: 1 watcher thread + main; preemption bound 3.
#[test]
fn closer_wakes_parked() {
    model_with("closer_wakes_parked", 3, Some(20_000), || {
        let drops = Drops::new(1);
        let feed = feed(2);
        let mut w = feed.watch(WatchOptions::all());
        let closer = w.closer();
        let watcher = thread::spawn(move || {
            assert_eq!(w.next_timeout(LONG).err(), Some(RecvError::Closed));
            w
        });
        closer.close();
        let w = watcher.join().unwrap();
        feed.put(0, Val::new(0, &drops)).unwrap();
        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}

/// Model 5e — two writers, one parked watcher: a wake-up is not lost when
/// another writer's `swap` takes the watcher's registration.
///
/// Property: a watcher at seq 3 parks (`next_timeout(1 hour)`) while writer
/// T publishes seq 3 or 4 and the main thread the other. A writer that finds
/// `parked` non-zero swaps it to zero and wakes everyone once; the writer of
/// seq 4 may take the registration and wake the watcher before seq 3 is
/// published, after which the writer of seq 3 finds `parked` zero. The watcher
/// must still return seq 3 (it starts over and re-registers, or its re-check
/// sees the slot).
///
/// Bound: 2 threads (watcher, writer) + main (the other writer), after the
/// warm-up of 5a; preemption bound 3.
#[test]
fn park_wake_two_writers() {
    model_with("park_wake_two_writers", 3, Some(20_000), || {
        let drops = Drops::new(4);
        let feed = feed(2);
        feed.put(0, Val::new(0, &drops)).unwrap();
        feed.put(1, Val::new(1, &drops)).unwrap();
        warm_up_parked(&feed);
        let mut w = feed.watch(WatchOptions::all());
        let watcher = thread::spawn(move || {
            let got = recv(w.next_timeout(LONG));
            (w, got)
        });
        let writer = {
            let (f, d) = (feed.clone(), drops.clone());
            thread::spawn(move || f.put(3, Val::new(3, &d)).unwrap())
        };
        let mine = feed.put(2, Val::new(2, &drops)).unwrap();
        let theirs = writer.join().unwrap();
        let (w, got) = watcher.join().unwrap();
        let want = if mine == 3 {
            2
        } else {
            assert_eq!(theirs, 3);
            3
        };
        assert_eq!(
            got,
            Some(Rec::Change {
                seq: 3,
                kind: Kind::Create,
                key: want,
                value: Some(want as usize),
                old: None
            })
        );
        drop(w);
        drop(feed);
        drops.assert_all_dropped();
    });
}
