//! Proof that the checkers in `common/` can fail: each one accepts a correct
//! recording and rejects the same recording with one deliberately injected bug
//! (a dropped, swapped, duplicated or corrupted event, a `missed` off by one,
//! a duplicated or stale snapshot key, ...).
//!
//! The correct recordings are built from a simulated log (`Sim`, independent of
//! the library) and, in the last test, from a real single-threaded `Feed` run.

mod common;

use common::*;
use kvfeed::{Config, Feed};

type S = String;

/// A sequential reference store producing a log (with optional skip markers).
struct Sim {
    state: std::collections::BTreeMap<S, S>,
    events: Vec<Ev<S, S>>,
    head: u64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            state: Default::default(),
            events: Vec::new(),
            head: 0,
        }
    }
    fn put(&mut self, k: &str, v: &str) {
        self.head += 1;
        let old = self.state.insert(k.to_string(), v.to_string());
        self.events.push(Ev {
            seq: self.head,
            kind: if old.is_some() {
                EvKind::Update
            } else {
                EvKind::Create
            },
            key: k.to_string(),
            value: Some(v.to_string()),
            old,
        });
    }
    fn delete(&mut self, k: &str) {
        if let Some(old) = self.state.remove(k) {
            self.head += 1;
            self.events.push(Ev {
                seq: self.head,
                kind: EvKind::Delete,
                key: k.to_string(),
                value: None,
                old: Some(old),
            });
        }
    }
    fn skip(&mut self) {
        self.head += 1;
    }
    fn log(&self) -> Log<S, S> {
        Log::from_events(self.events.clone(), self.head).expect("simulated log is consistent")
    }
}

const KEYS: [&str; 5] = ["a0", "a1", "b0", "b1", "c"];

/// 120 random writes over 5 keys with unique values and a few skip markers.
fn sim_log(seed: u64) -> Log<S, S> {
    let mut rng = Rng::new(seed);
    let mut sim = Sim::new();
    for i in 0..120 {
        let k = KEYS[rng.below(KEYS.len() as u64) as usize];
        match rng.below(10) {
            0..=5 => sim.put(k, &format!("v{i}")),
            6..=8 => sim.delete(k),
            _ => sim.skip(),
        }
    }
    let log = sim.log();
    assert!(log.skip_markers() > 0 && log.events.len() > 60);
    log
}

/// What a correct watcher with `filter` starting at `start` receives, with the
/// lap ranges `[from, resume_at)` replaced by `Lagged`.
fn recording(
    log: &Log<S, S>,
    filter: Filter<S>,
    start: u64,
    laps: &[(u64, u64)],
) -> Recording<S, S> {
    let mut rec = Recording::new("sim", filter, Start::From(start), start);
    let mut seq = start;
    while seq <= log.head {
        if let Some(&(from, resume)) = laps.iter().find(|(f, _)| *f == seq) {
            rec.items.push(Item::Lagged {
                missed: resume - from,
                resume_at: resume,
            });
            seq = resume;
            continue;
        }
        if let Some(e) = log.events.get(&seq) {
            if rec.filter.matches(&e.key, e.kind) {
                rec.items.push(Item::Change(e.clone()));
            }
        }
        seq += 1;
    }
    rec.end_cursor = log.head + 1;
    rec.drained_to = Some(log.head);
    rec
}

/// A correct snapshot recording: keys listed in `late` are read at
/// `consistent_at`, the others at `at`; creates in reverse key order.
fn snapshot(
    log: &Log<S, S>,
    filter: Filter<S>,
    at: u64,
    consistent_at: u64,
    late: &[&str],
) -> Recording<S, S> {
    let early_state = log.state_at(at);
    let late_state = log.state_at(consistent_at);
    let mut rec = Recording::new("snap", filter, Start::Snapshot, 0);
    let mut versions = std::collections::BTreeMap::new();
    for k in KEYS.iter().rev() {
        if !rec.filter.key_matches(&k.to_string()) {
            continue;
        }
        let st = if late.contains(k) {
            &late_state
        } else {
            &early_state
        };
        if let Some((v, ver)) = st.get(*k) {
            versions.insert(k.to_string(), *ver);
            rec.items.push(Item::Change(Ev {
                seq: *ver,
                kind: EvKind::Create,
                key: k.to_string(),
                value: Some(v.clone()),
                old: None,
            }));
        }
    }
    rec.items.push(Item::SnapshotDone { at, consistent_at });
    for e in log.events.range(at + 1..).map(|(_, e)| e) {
        if rec.filter.matches(&e.key, e.kind)
            && !matches!(versions.get(&e.key), Some(v) if e.seq <= *v)
        {
            rec.items.push(Item::Change(e.clone()));
        }
    }
    rec.end_cursor = log.head + 1;
    rec.drained_to = Some(log.head);
    rec
}

fn change_positions(rec: &Recording<S, S>) -> Vec<usize> {
    rec.items
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i, Item::Change(_)))
        .map(|(i, _)| i)
        .collect()
}

fn ev_mut(rec: &mut Recording<S, S>, i: usize) -> &mut Ev<S, S> {
    match &mut rec.items[i] {
        Item::Change(e) => e,
        other => panic!("item {i} is {other:?}"),
    }
}

fn ev(rec: &Recording<S, S>, i: usize) -> &Ev<S, S> {
    match &rec.items[i] {
        Item::Change(e) => e,
        other => panic!("item {i} is {other:?}"),
    }
}

fn lag_index(rec: &Recording<S, S>) -> usize {
    rec.items
        .iter()
        .position(|i| matches!(i, Item::Lagged { .. }))
        .expect("has a lag")
}

fn set_missed(rec: &mut Recording<S, S>, i: usize, delta: i64) {
    match &mut rec.items[i] {
        Item::Lagged { missed, .. } => *missed = (*missed as i64 + delta) as u64,
        other => panic!("item {i} is {other:?}"),
    }
}

/// Assert `check` accepts `good` and rejects `bad`; print the rejection.
fn assert_catches(
    what: &str,
    check: impl Fn(&Recording<S, S>) -> Result<(), String>,
    good: &Recording<S, S>,
    bad: &Recording<S, S>,
) {
    if let Err(e) = check(good) {
        panic!("{what}: the correct recording was rejected: {e}");
    }
    match check(bad) {
        Ok(()) => panic!("{what}: the injected bug was NOT caught"),
        Err(e) => println!("{what}: caught: {e}"),
    }
}

fn filters() -> Vec<Filter<S>> {
    vec![
        Filter::all(),
        Filter::all().key("a1".to_string()),
        Filter::all().prefix("b"),
        Filter::all().kinds(K_DELETE),
        Filter::all()
            .key("c".to_string())
            .pred(Pred::new("ends0", |k: &S| k.ends_with('0')))
            .kinds(K_CREATE | K_UPDATE),
    ]
}

#[test]
fn correct_recordings_pass_every_checker() {
    for seed in 1..20 {
        let log = sim_log(seed);
        let h = log.head;
        for f in filters() {
            let plain = recording(&log, f.clone(), 1, &[]);
            check_all(&plain, Some(&log)).unwrap();
            let mid = recording(
                &log,
                f.clone(),
                h / 3,
                &[(h / 2, h / 2 + 7), (h - 10, h - 4)],
            );
            check_all(&mid, Some(&log)).unwrap();
            if f.kinds == K_ALL {
                let snap = snapshot(&log, f.clone(), h / 2, h / 2 + 9, &["a1", "b0"]);
                check_all(&snap, Some(&log)).unwrap();
                let snap = snapshot(&log, f.clone(), h / 2, h / 2, &[]);
                check_all(&snap, Some(&log)).unwrap();
            }
        }
    }
}

// --- check_order -----------------------------------------------------------

#[test]
fn order_catches_swapped_events() {
    let log = sim_log(1);
    let good = recording(&log, Filter::all(), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    bad.items.swap(p[10], p[11]);
    assert_catches("order/swap", check_order, &good, &bad);
}

#[test]
fn order_catches_duplicated_event() {
    let log = sim_log(2);
    let good = recording(&log, Filter::all().prefix("a"), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    let dup = bad.items[p[5]].clone();
    bad.items.insert(p[5] + 1, dup);
    assert_catches("order/duplicate", check_order, &good, &bad);
}

#[test]
fn order_catches_missed_plus_one_and_zero() {
    let log = sim_log(3);
    let h = log.head;
    // A lap starting right after a delivered event: it must start exactly there.
    let from = (h / 2..h)
        .find(|s| log.events.contains_key(&(s - 1)))
        .unwrap();
    let good = recording(&log, Filter::all(), 1, &[(from, from + 5)]);
    let l = lag_index(&good);
    assert_eq!(ev(&good, l - 1).seq + 1, from);
    let mut bad = good.clone();
    set_missed(&mut bad, l, 1);
    assert_catches("order/missed+1", check_order, &good, &bad);
    let mut bad = good.clone();
    bad.items[l] = Item::Lagged {
        missed: 0,
        resume_at: from,
    };
    assert_catches("order/missed=0", check_order, &good, &bad);
}

#[test]
fn order_catches_snapshot_live_event_not_after_at() {
    let log = sim_log(4);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2, &[]);
    let (m, at, _) = good.marker().unwrap();
    let mut bad = good.clone();
    // Re-deliver the event at `at` right after the marker.
    let e = log.events.range(..=at).next_back().unwrap().1.clone();
    bad.items.insert(m + 1, Item::Change(e));
    assert_catches("order/snapshot<=at", check_order, &good, &bad);
}

// --- check_chain -----------------------------------------------------------

#[test]
fn chain_catches_corrupted_old() {
    let log = sim_log(5);
    let good = recording(&log, Filter::all(), 1, &[]);
    let mut bad = good.clone();
    let i = change_positions(&bad)
        .into_iter()
        .rev()
        .find(|i| ev(&bad, *i).kind == EvKind::Update)
        .unwrap();
    ev_mut(&mut bad, i).old = Some("corrupted".into());
    assert_catches("chain/old", check_chain, &good, &bad);
}

#[test]
fn chain_catches_dropped_event() {
    let log = sim_log(6);
    let good = recording(&log, Filter::all().key("b1".into()), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    assert!(p.len() > 4);
    bad.items.remove(p[2]);
    assert_catches("chain/drop", check_chain, &good, &bad);
}

#[test]
fn chain_catches_create_of_present_key() {
    let log = sim_log(7);
    let good = recording(&log, Filter::all(), 1, &[]);
    // Drop a Delete that is followed by a Create of the same key.
    let p = change_positions(&good);
    let i = p
        .iter()
        .copied()
        .find(|i| {
            let e = ev(&good, *i);
            e.kind == EvKind::Delete
                && good.items[*i + 1..].iter().find_map(|it| match it {
                    Item::Change(n) if n.key == e.key => Some(n.kind),
                    _ => None,
                }) == Some(EvKind::Create)
        })
        .unwrap();
    let mut bad = good.clone();
    bad.items.remove(i);
    assert_catches("chain/create-present", check_chain, &good, &bad);
}

#[test]
fn chain_catches_malformed_event_even_with_kind_mask() {
    let log = sim_log(8);
    let good = recording(&log, Filter::all().kinds(K_DELETE), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    ev_mut(&mut bad, p[0]).value = Some("x".into());
    assert_catches("chain/shape", check_chain, &good, &bad);
}

#[test]
fn chain_catches_duplicate_snapshot_key() {
    let log = sim_log(9);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2, &[]);
    let mut bad = good.clone();
    let dup = bad.items[0].clone();
    bad.items.insert(1, dup);
    assert_catches("chain/snapshot-dup", check_chain, &good, &bad);
}

// --- check_accounting ------------------------------------------------------

#[test]
fn accounting_catches_dropped_event() {
    let log = sim_log(10);
    for f in filters() {
        let good = recording(&log, f.clone(), 1, &[]);
        let mut bad = good.clone();
        let p = change_positions(&bad);
        bad.items.remove(p[p.len() / 2]);
        assert_catches(
            "accounting/drop",
            |r| check_accounting(r, &log),
            &good,
            &bad,
        );
    }
}

#[test]
fn accounting_catches_dropped_last_event_of_drained_watcher() {
    let log = sim_log(11);
    let good = recording(&log, Filter::all().prefix("a"), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    bad.items.remove(*p.last().unwrap());
    assert_catches(
        "accounting/drop-last",
        |r| check_accounting(r, &log),
        &good,
        &bad,
    );
}

#[test]
fn accounting_catches_missed_off_by_one() {
    let log = sim_log(12);
    let h = log.head;
    // A lap start where the seq and the one before are events: missed - 1
    // leaves `from` unaccounted, missed + 1 re-covers the delivered `from - 1`.
    let from = (h / 2..h)
        .find(|s| log.events.contains_key(s) && log.events.contains_key(&(s - 1)))
        .unwrap();
    let good = recording(&log, Filter::all(), 1, &[(from, from + 6)]);
    let l = lag_index(&good);
    for delta in [-1, 1] {
        let mut bad = good.clone();
        set_missed(&mut bad, l, delta);
        assert_catches(
            &format!("accounting/missed{delta:+}"),
            |r| check_accounting(r, &log),
            &good,
            &bad,
        );
    }
}

#[test]
fn accounting_catches_non_matching_event() {
    let log = sim_log(13);
    let good = recording(&log, Filter::all().key("a0".into()), 1, &[]);
    let mut bad = good.clone();
    let other = log.events.values().find(|e| e.key == "c").unwrap().clone();
    let at = bad
        .items
        .iter()
        .position(|i| matches!(i, Item::Change(e) if e.seq > other.seq))
        .unwrap_or(bad.items.len());
    bad.items.insert(at, Item::Change(other));
    assert_catches(
        "accounting/non-matching",
        |r| check_accounting(r, &log),
        &good,
        &bad,
    );
}

#[test]
fn accounting_catches_corrupted_value() {
    let log = sim_log(14);
    let good = recording(&log, Filter::all().kinds(K_CREATE), 1, &[]);
    let mut bad = good.clone();
    let p = change_positions(&bad);
    ev_mut(&mut bad, p[3]).value = Some("corrupted".into());
    assert_catches(
        "accounting/value",
        |r| check_accounting(r, &log),
        &good,
        &bad,
    );
}

#[test]
fn accounting_catches_event_at_a_skip_marker() {
    let log = sim_log(15);
    let good = recording(&log, Filter::all(), 1, &[]);
    let skip = (1..=log.head)
        .rev()
        .find(|s| !log.events.contains_key(s))
        .unwrap();
    let mut bad = good.clone();
    let at = bad
        .items
        .iter()
        .position(|i| matches!(i, Item::Change(e) if e.seq > skip))
        .unwrap_or(bad.items.len());
    bad.items.insert(
        at,
        Item::Change(Ev {
            seq: skip,
            kind: EvKind::Create,
            key: "zz".into(),
            value: Some("ghost".into()),
            old: None,
        }),
    );
    assert_catches(
        "accounting/skip",
        |r| check_accounting(r, &log),
        &good,
        &bad,
    );
}

#[test]
fn accounting_catches_snapshot_duplicate_live_event() {
    let log = sim_log(16);
    let h = log.head;
    let good = snapshot(
        &log,
        Filter::all(),
        h / 2,
        h / 2 + 12,
        &["a0", "a1", "b0", "b1", "c"],
    );
    // A key read late (version in (at, consistent_at]) whose event is re-delivered live.
    let (m, at, _) = good.marker().unwrap();
    let dup = good.items[..m]
        .iter()
        .find_map(|i| match i {
            Item::Change(e) if e.seq > at => Some(e.clone()),
            _ => None,
        })
        .expect("some key written in the window");
    let mut bad = good.clone();
    let pos = bad.items[m + 1..]
        .iter()
        .position(|i| matches!(i, Item::Change(e) if e.seq > dup.seq))
        .map_or(bad.items.len(), |p| p + m + 1);
    bad.items
        .insert(pos, Item::Change(log.events[&dup.seq].clone()));
    assert_catches(
        "accounting/snapshot-dup",
        |r| check_accounting(r, &log),
        &good,
        &bad,
    );
}

// --- check_snapshot --------------------------------------------------------

#[test]
fn snapshot_catches_duplicate_key() {
    let log = sim_log(17);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2 + 5, &["c"]);
    let mut bad = good.clone();
    let dup = bad.items[1].clone();
    bad.items.insert(0, dup);
    assert_catches("snapshot/dup", |r| check_snapshot(r, &log), &good, &bad);
}

#[test]
fn snapshot_catches_missing_key() {
    let log = sim_log(18);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2, &[]);
    let (m, _, _) = good.marker().unwrap();
    assert!(m >= 1);
    let mut bad = good.clone();
    bad.items.remove(0);
    assert_catches("snapshot/missing", |r| check_snapshot(r, &log), &good, &bad);
}

#[test]
fn snapshot_catches_wrong_version() {
    let log = sim_log(19);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2, &[]);
    let mut bad = good.clone();
    ev_mut(&mut bad, 0).seq -= 1;
    assert_catches("snapshot/version", |r| check_snapshot(r, &log), &good, &bad);
}

#[test]
fn snapshot_catches_stale_value() {
    let log = sim_log(20);
    let h = log.head;
    let at = h / 2;
    let good = snapshot(&log, Filter::all(), at, at, &[]);
    // Replace a key's snapshot Create by an older (overwritten before `at`) value.
    let mut bad = good.clone();
    let (m, _, _) = good.marker().unwrap();
    let (i, older) = (0..m)
        .find_map(|i| {
            let e = ev(&good, i);
            log.events
                .range(..e.seq)
                .rev()
                .find(|(_, o)| o.key == e.key && o.value.is_some())
                .map(|(_, o)| (i, o.clone()))
        })
        .expect("a key with an older value");
    let e = ev_mut(&mut bad, i);
    e.seq = older.seq;
    e.value = older.value.clone();
    assert_catches("snapshot/stale", |r| check_snapshot(r, &log), &good, &bad);
}

#[test]
fn snapshot_catches_dropped_window_event() {
    let log = sim_log(21);
    let h = log.head;
    let good = snapshot(&log, Filter::all(), h / 2, h / 2 + 15, &[]);
    let (m, _, c) = good.marker().unwrap();
    let mut bad = good.clone();
    // The last event of the window: nothing later in the window repairs its key.
    let i = (m + 1..bad.items.len())
        .rev()
        .find(|i| ev(&bad, *i).seq <= c)
        .unwrap();
    bad.items.remove(i);
    assert_catches(
        "snapshot/window-drop",
        |r| check_snapshot(r, &log),
        &good,
        &bad,
    );
}

#[test]
fn snapshot_catches_corrupted_live_value_and_missing_marker() {
    let log = sim_log(22);
    let h = log.head;
    let good = snapshot(&log, Filter::all().prefix("a"), h / 2, h / 2, &[]);
    let mut bad = good.clone();
    let last = *change_positions(&bad).last().unwrap();
    let e = ev_mut(&mut bad, last);
    assert!(e.seq > h / 2);
    if e.value.is_some() {
        e.value = Some("corrupted".into());
    } else {
        e.kind = EvKind::Update;
        e.value = Some("resurrected".into());
    }
    assert_catches(
        "snapshot/live-value",
        |r| check_snapshot(r, &log),
        &good,
        &bad,
    );
    let mut bad = good.clone();
    bad.items
        .retain(|i| !matches!(i, Item::SnapshotDone { .. }));
    assert_catches(
        "snapshot/no-marker",
        |r| check_snapshot(r, &log),
        &good,
        &bad,
    );
}

// --- the log itself ----------------------------------------------------------

#[test]
fn log_rejects_inconsistent_history() {
    let log = sim_log(23);
    let mut evs: Vec<_> = log.events.values().cloned().collect();
    let i = evs.iter().position(|e| e.kind == EvKind::Update).unwrap();
    evs[i].old = Some("nope".into());
    assert!(Log::from_events(evs, log.head).is_err());
    let mut rec = recording(&log, Filter::all(), 1, &[]);
    assert!(Log::from_unfiltered(&rec, log.head).is_ok());
    rec.items.insert(
        3,
        Item::Lagged {
            missed: 1,
            resume_at: 5,
        },
    );
    assert!(Log::from_unfiltered(&rec, log.head).is_err());
}

// --- a real run -------------------------------------------------------------

/// Record a real single-threaded run (ring of 8, so the slow watcher laps),
/// check it, then inject bugs into the real recordings.
#[test]
fn real_feed_recordings_pass_and_injected_bugs_fail() {
    let feed: Feed<S, S> = Feed::with_config(Config::new().capacity(8)).unwrap();
    let (mut log_w, mut log_rec) = Recording::watch("log", &feed, Filter::all(), Start::Now);
    let (mut fast, mut fast_rec) =
        Recording::watch("fast-a", &feed, Filter::all().prefix("a"), Start::Now);
    let (mut slow, mut slow_rec) = Recording::watch("slow", &feed, Filter::all(), Start::Now);
    let mut rng = Rng::new(99);
    let mut snap = None;
    for i in 0..200u32 {
        let k = KEYS[rng.below(KEYS.len() as u64) as usize];
        if rng.chance(70) {
            feed.put(k.to_string(), format!("v{i}")).unwrap();
        } else {
            feed.delete(k).unwrap();
        }
        log_rec.try_drain(&mut log_w);
        fast_rec.try_drain(&mut fast);
        if i % 37 == 0 {
            slow_rec.try_read(&mut slow);
        }
        if i == 100 {
            snap = Some(Recording::watch(
                "snap",
                &feed,
                Filter::all(),
                Start::Snapshot,
            ));
        }
        if let Some((w, r)) = snap.as_mut() {
            r.try_drain(w);
        }
    }
    let head = feed.head();
    let (mut snap_w, mut snap_rec) = snap.unwrap();
    for (w, r) in [
        (&mut log_w, &mut log_rec),
        (&mut fast, &mut fast_rec),
        (&mut slow, &mut slow_rec),
        (&mut snap_w, &mut snap_rec),
    ] {
        assert_eq!(r.try_drain(w), Step::Empty);
        r.drained_to = Some(head);
    }
    let log = Log::from_unfiltered(&log_rec, head).unwrap();
    assert_eq!(
        log.events.len() as u64,
        head,
        "single-threaded: no skip markers"
    );
    for r in [&fast_rec, &slow_rec, &snap_rec] {
        check_all(r, Some(&log)).unwrap();
    }
    assert!(slow_rec.lag_count() > 0, "the slow watcher was lapped");

    // Injected bugs.
    let mut bad = fast_rec.clone();
    let p = change_positions(&bad);
    bad.items.remove(p[p.len() / 2]);
    assert!(check_accounting(&bad, &log).is_err(), "dropped event");
    let mut bad = slow_rec.clone();
    let l = lag_index(&bad);
    set_missed(&mut bad, l, 1);
    assert!(check_accounting(&bad, &log).is_err(), "missed + 1");
    let mut bad = snap_rec.clone();
    let dup = bad.items[0].clone();
    bad.items.insert(0, dup);
    assert!(
        check_snapshot(&bad, &log).is_err(),
        "duplicated snapshot key"
    );
    let mut bad = snap_rec.clone();
    bad.items.remove(0);
    assert!(check_snapshot(&bad, &log).is_err(), "missing snapshot key");
}
