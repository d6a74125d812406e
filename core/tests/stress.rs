//! Multi-threaded stress tests.
//!
//! Several writer threads put / delete / compare-and-put / delete-prefix on an
//! overlapping key space while watcher threads with different filters record
//! what they receive (some slow, so that they are lapped; one never reads
//! until the writers are done; snapshot watchers and a `from(seq)` watcher
//! start mid-run; some drop their watcher mid-run). Afterwards every recording
//! is checked with `common/`'s checkers against the authoritative log:
//!
//! * the log comes from an unfiltered watcher that starts at seq 1 and must
//!   never lag. In the small-ring test the writers are paced by it (they wait
//!   on a condvar while `head` is within `PACE_MARGIN` of a lap of *that*
//!   watcher), so it never laps, while every other watcher can;
//! * the log is cross-checked with what the writers were told (seqs of puts,
//!   CASes and deletes, CAS conflicts, delete_prefix counts), and `get` of
//!   every key with the last event of that key.
//!
//! Synchronisation is only Barrier, join, channels, a condvar and the feed's
//! own blocking reads and `close()`; no sleeps. Seeds: `KVFEED_STRESS_SEED`
//! (printed on every run).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kvfeed::{CasError, Config, Event, Feed, RecvError, WatchOptions, Watcher};

type S = String;
type W = Watcher<S, S>;
type Rec = Recording<S, S>;

const KEYS: [&str; 8] = ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"];
const PREFIXES: [&str; 4] = ["a", "b", "a1", "b2"];
/// Head may get no closer than this to lapping the log watcher. One write
/// claims one seq for itself plus one per pending node it helps (or a skip
/// marker when it loses that race); at most 4 writers with delete_prefix of
/// at most 4 keys: 16 claims in flight, more than doubled for helping and
/// retries.
const PACE_MARGIN: u64 = 40;

fn seed() -> u64 {
    let s = std::env::var("KVFEED_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("KVFEED_STRESS_SEED={s}");
    s
}

/// Deterministic busy work standing in for a slow consumer.
fn busy(n: u32) {
    let mut x = 0u64;
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(std::hint::black_box(i as u64));
    }
    std::hint::black_box(x);
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Done {
    Put {
        key: S,
        value: S,
        seq: u64,
    },
    CasOk {
        key: S,
        expected: u64,
        value: S,
        seq: u64,
    },
    CasConflict {
        key: S,
        expected: u64,
        current: u64,
    },
    Del {
        key: S,
        seq: u64,
        old: S,
    },
    DelAbsent,
    Prefix {
        prefix: S,
        n: usize,
    },
}

/// Writers wait while the log watcher is within `margin` of being lapped.
struct Pacer {
    progress: Mutex<u64>,
    cv: Condvar,
    cap: u64,
    margin: u64,
}

impl Pacer {
    fn wait_room(&self, feed: &Feed<S, S>) {
        let mut p = self.progress.lock().unwrap();
        while feed.head() + self.margin >= *p + self.cap {
            p = self.cv.wait(p).unwrap();
        }
    }
    fn advance(&self, read_up_to: u64) {
        *self.progress.lock().unwrap() = read_up_to;
        self.cv.notify_all();
    }
}

#[allow(clippy::too_many_arguments)]
fn writer(
    id: usize,
    feed: Feed<S, S>,
    ops: usize,
    hot: bool,
    seed: u64,
    pacer: Option<Arc<Pacer>>,
    mid: Option<(usize, Arc<Barrier>)>,
    start: Arc<Barrier>,
) -> Vec<Done> {
    let mut rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let mut done = Vec::with_capacity(ops);
    start.wait();
    for i in 0..ops {
        if let Some(p) = &pacer {
            p.wait_room(&feed);
        }
        if let Some((at, b)) = &mid {
            if i == *at {
                b.wait();
            }
        }
        let key = if hot && rng.chance(75) {
            KEYS[4 * rng.below(2) as usize].to_string()
        } else {
            KEYS[rng.below(KEYS.len() as u64) as usize].to_string()
        };
        let value = format!("w{id}-{i}");
        let d = match rng.below(100) {
            0..=44 => {
                let seq = feed.put(key.clone(), value.clone()).expect("put");
                Done::Put { key, value, seq }
            }
            45..=64 => match feed.delete_seq(&key).expect("delete") {
                Some((seq, old)) => Done::Del { key, seq, old },
                None => Done::DelAbsent,
            },
            65..=92 => {
                let cur = feed.get(&key).map_or(0, |(_, v)| v);
                let expected = match rng.below(10) {
                    0..=5 => cur,
                    6..=7 => 0,
                    _ => cur + 1 + rng.below(3),
                };
                match feed.compare_and_put(key.clone(), expected, value.clone()) {
                    Ok(seq) => Done::CasOk {
                        key,
                        expected,
                        value,
                        seq,
                    },
                    Err(CasError::Conflict { current_version }) => Done::CasConflict {
                        key,
                        expected,
                        current: current_version,
                    },
                    Err(e) => panic!("cas failed: {e:?}"),
                }
            }
            _ => {
                let prefix = PREFIXES[rng.below(PREFIXES.len() as u64) as usize].to_string();
                let n = feed.delete_prefix(&prefix).expect("delete_prefix");
                Done::Prefix { prefix, n }
            }
        };
        done.push(d);
    }
    done
}

// ---------------------------------------------------------------------------
// Watcher threads
// ---------------------------------------------------------------------------

/// Read with the blocking iterator until the feed is closed.
fn read_fast(mut w: W, mut rec: Rec) -> Rec {
    rec.read_until_closed(&mut w);
    rec
}

/// A slow consumer: `work` units of busy work per event, reading one event
/// blocking and then small non-blocking bursts.
fn read_slow(mut w: W, mut rec: Rec, work: u32, burst: usize) -> Rec {
    let mut buf = Vec::new();
    'outer: loop {
        match w.next() {
            None => break,
            Some(r) => rec.push_result(&r),
        }
        busy(work);
        loop {
            match w.next_batch(&mut buf, burst) {
                Ok(0) => break,
                Ok(_) => {
                    for e in buf.drain(..) {
                        rec.push_event(&e);
                        busy(work);
                    }
                }
                Err(RecvError::Lagged(l)) => rec.push_lagged(&l),
                Err(RecvError::Closed) => break 'outer,
            }
        }
    }
    rec.end_cursor = w.cursor();
    rec
}

/// Read `n` items, then drop the watcher (while the writers run).
fn read_then_drop(mut w: W, mut rec: Rec, n: usize) -> Rec {
    for _ in 0..n {
        match w.next() {
            Some(r) => rec.push_result(&r),
            None => break,
        }
    }
    rec.end_cursor = w.cursor();
    drop(w);
    rec
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct StressCfg {
    cap: usize,
    writers: usize,
    ops: usize,
    pace: bool,
    slow_work: u32,
    /// Most writes go to two hot keys (more same-key races: writers waiting out
    /// each other's `PENDING` word).
    hot: bool,
}

struct Outcome {
    log: Log<S, S>,
    /// Recordings that ran until the feed was closed (drained).
    drained: Vec<Rec>,
    /// Recordings that stopped early (dropped watchers).
    partial: Vec<Rec>,
    writes: Vec<Vec<Done>>,
    head: u64,
    cap: u64,
}

fn run_stress(cfg: &StressCfg, seed: u64) -> Outcome {
    let t0 = Instant::now();
    let feed: Feed<S, S> = Feed::with_config(Config::new().capacity(cfg.cap)).unwrap();
    let cap = cfg.cap as u64;
    let pacer = cfg.pace.then(|| {
        Arc::new(Pacer {
            progress: Mutex::new(0),
            cv: Condvar::new(),
            cap,
            margin: PACE_MARGIN,
        })
    });
    let n_mid = 3; // snapshot(all), snapshot(prefix a), from(retained seq)
    let start = Arc::new(Barrier::new(cfg.writers + 1 + 9 + n_mid));
    let mid = Arc::new(Barrier::new(1 + n_mid));

    // Watchers that start at seq 1 are created before any write.
    let (log_w, log_rec) = Recording::watch("log", &feed, Filter::all(), Start::Now);
    assert_eq!(log_rec.start_cursor, 1);
    let (sleeper, sleeper_rec) = Recording::watch(
        "sleeper(all, reads after the run)",
        &feed,
        Filter::all(),
        Start::Now,
    );

    let mut handles: Vec<thread::JoinHandle<Rec>> = Vec::new();
    let mut drop_handles: Vec<thread::JoinHandle<Rec>> = Vec::new();
    {
        let pacer = pacer.clone();
        let start = start.clone();
        let (mut w, mut rec) = (log_w, log_rec);
        handles.push(thread::spawn(move || {
            start.wait();
            while let Some(r) = w.next() {
                rec.push_result(&r);
                if let Some(p) = &pacer {
                    p.advance(w.cursor() - 1);
                }
            }
            rec.end_cursor = w.cursor();
            rec
        }));
    }
    let fast: Vec<(&str, Filter<S>)> = vec![
        ("key a1", Filter::all().key("a1".to_string())),
        ("prefix b", Filter::all().prefix("b")),
        ("deletes", Filter::all().kinds(K_DELETE)),
    ];
    for (name, f) in fast {
        let (w, rec) = Recording::watch(name, &feed, f, Start::Now);
        let start = start.clone();
        handles.push(thread::spawn(move || {
            start.wait();
            read_fast(w, rec)
        }));
    }
    let slow: Vec<(&str, Filter<S>, usize)> = vec![
        ("slow all", Filter::all(), 4),
        (
            "slow mixed (a0 | b1* | *3, create+update)",
            Filter::all()
                .key("a0".to_string())
                .prefix("b1")
                .pred(Pred::new("ends3", |k: &S| k.ends_with('3')))
                .kinds(K_CREATE | K_UPDATE),
            2,
        ),
        ("slow prefix a", Filter::all().prefix("a"), 8),
    ];
    let work = cfg.slow_work;
    for (name, f, burst) in slow {
        let (w, rec) = Recording::watch(name, &feed, f, Start::Now);
        let start = start.clone();
        handles.push(thread::spawn(move || {
            start.wait();
            read_slow(w, rec, work, burst)
        }));
    }
    for (i, n) in [(0usize, 50usize), (1, 400)] {
        let f = if i == 0 {
            Filter::all()
        } else {
            Filter::all().prefix("a")
        };
        let (w, rec) = Recording::watch(format!("dropped after {n}"), &feed, f, Start::Now);
        let start = start.clone();
        drop_handles.push(thread::spawn(move || {
            start.wait();
            read_then_drop(w, rec, n)
        }));
    }
    // Mid-run starts: released by writer 0 half-way through.
    for (name, filter, start_kind) in [
        ("snapshot all (mid-run)", Filter::all(), Start::Snapshot),
        (
            "snapshot prefix a (mid-run)",
            Filter::all().prefix("a"),
            Start::Snapshot,
        ),
        (
            "from(head - cap/2) (mid-run)",
            Filter::all().prefix("b"),
            Start::From(0),
        ),
    ] {
        let feed = feed.clone();
        let (start, mid) = (start.clone(), mid.clone());
        handles.push(thread::spawn(move || {
            start.wait();
            mid.wait();
            let start_kind = match start_kind {
                Start::From(_) => Start::From(feed.head().saturating_sub(cap / 2).max(1)),
                s => s,
            };
            let (w, rec) = Recording::watch(name, &feed, filter, start_kind);
            read_fast(w, rec)
        }));
    }
    let mut writers = Vec::new();
    for id in 0..cfg.writers {
        let feed = feed.clone();
        let pacer = pacer.clone();
        let mid = (id == 0).then(|| (cfg.ops / 2, mid.clone()));
        let start = start.clone();
        let (ops, hot) = (cfg.ops, cfg.hot);
        writers.push(thread::spawn(move || {
            writer(id, feed, ops, hot, seed, pacer, mid, start)
        }));
    }
    start.wait();
    let writes: Vec<Vec<Done>> = writers
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|p| {
                feed.close();
                std::panic::resume_unwind(p)
            })
        })
        .collect();
    let head = feed.head();
    let t_writes = t0.elapsed();

    // Quiescent checks of `from(seq)` (guarantee 5), before closing.
    let mut drained = Vec::new();
    let mut sleeper = sleeper;
    let mut sleeper_rec = sleeper_rec;
    assert_eq!(sleeper_rec.try_drain(&mut sleeper), Step::Empty);
    drained.push(sleeper_rec);
    for (name, filter, from) in [
        (
            "from(old)",
            Filter::all(),
            head.saturating_sub(cap + 10).max(1),
        ),
        (
            "from(old) prefix b",
            Filter::all().prefix("b"),
            head.saturating_sub(cap + 3).max(1),
        ),
        (
            "from(retained)",
            Filter::all(),
            head.saturating_sub(cap / 2).max(1),
        ),
        (
            "from(oldest retained)",
            Filter::all(),
            head.saturating_sub(cap - 1).max(1),
        ),
    ] {
        let (mut w, mut rec) = Recording::watch(name, &feed, filter, Start::From(from));
        assert_eq!(rec.try_drain(&mut w), Step::Empty);
        let oldest = if head >= cap { head + 1 - cap } else { 1 };
        let first = rec.items.first().cloned();
        if from < oldest {
            assert_eq!(
                first,
                Some(Item::Lagged {
                    missed: oldest - from,
                    resume_at: oldest
                }),
                "{name}: watching from an overwritten seq must report Lagged at once with the exact count (head {head}, cap {cap})"
            );
        } else {
            assert!(
                !matches!(first, Some(Item::Lagged { .. })),
                "{name}: from a retained seq {from} (head {head}, cap {cap}) must not lag: {first:?}"
            );
        }
        drained.push(rec);
    }

    feed.close();
    for h in handles {
        drained.push(h.join().expect("watcher thread"));
    }
    let partial: Vec<Rec> = drop_handles
        .into_iter()
        .map(|h| h.join().expect("dropper"))
        .collect();
    for r in &mut drained {
        r.drained_to = Some(head);
    }
    let log_rec = drained.iter().position(|r| r.name == "log").unwrap();
    let log_rec = drained.remove(log_rec);
    let log = Log::from_unfiltered(&log_rec, head)
        .unwrap_or_else(|e| panic!("the authoritative watcher must see everything (pacing): {e}"));
    println!(
        "cap {cap}: {} writers x {} ops -> head {head}, {} events, {} skip markers; writes took {:?}, total {:?}",
        cfg.writers,
        cfg.ops,
        log.events.len(),
        log.skip_markers(),
        t_writes,
        t0.elapsed()
    );
    assert_eq!(
        log.skip_markers(),
        0,
        "seqs are dense: every seq up to the head is an event"
    );
    // Keep the feed alive until here so `get` can be checked.
    check_gets(&feed, &log);
    Outcome {
        log,
        drained,
        partial,
        writes,
        head,
        cap,
    }
}

/// Guarantee 2's last part: `get` returns the value and version of the key's
/// latest event.
fn check_gets(feed: &Feed<S, S>, log: &Log<S, S>) {
    let state = log.state_at(log.head);
    for k in KEYS {
        assert_eq!(
            feed.get(k),
            state.get(k).cloned(),
            "get({k}) after the run vs the log"
        );
    }
}

/// What the writers were told agrees with the log.
fn check_writes(out: &Outcome) {
    let log = &out.log;
    let by_key = log.seqs_by_key();
    let prev_of = |key: &S, seq: u64| -> Option<&Ev<S, S>> {
        let seqs = by_key.get(key)?;
        let i = seqs.binary_search(&seq).ok()?;
        i.checked_sub(1).map(|j| &log.events[&seqs[j]])
    };
    let mut attributed = std::collections::BTreeSet::new();
    let mut prefix_deletes = 0usize;
    for (id, ws) in out.writes.iter().enumerate() {
        let mut last_seq = 0;
        for d in ws {
            let seq = match d {
                Done::Put { key, value, seq }
                | Done::CasOk {
                    key, value, seq, ..
                } => {
                    let e = log.events.get(seq);
                    assert!(
                        matches!(e, Some(e) if &e.key == key && e.value.as_ref() == Some(value) && e.kind != EvKind::Delete),
                        "writer {id}: {d:?} but the log has {e:?}"
                    );
                    if let Done::CasOk { expected, .. } = d {
                        let prev = prev_of(key, *seq);
                        let ok = match prev {
                            None => *expected == 0,
                            Some(p) if p.kind == EvKind::Delete => *expected == 0,
                            Some(p) => p.seq == *expected,
                        };
                        assert!(ok, "writer {id}: {d:?} succeeded but the key's previous event was {prev:?}");
                    }
                    Some(*seq)
                }
                Done::Del { key, seq, old } => {
                    let e = log.events.get(seq);
                    assert!(
                        matches!(e, Some(e) if &e.key == key && e.kind == EvKind::Delete && e.old.as_ref() == Some(old)),
                        "writer {id}: {d:?} but the log has {e:?}"
                    );
                    Some(*seq)
                }
                Done::CasConflict {
                    key,
                    expected,
                    current,
                } => {
                    assert_ne!(expected, current, "writer {id}: {d:?}");
                    if *current != 0 {
                        let e = log.events.get(current);
                        assert!(
                            matches!(e, Some(e) if &e.key == key && e.kind != EvKind::Delete),
                            "writer {id}: {d:?} reports a version that is not a write of the key: {e:?}"
                        );
                    }
                    None
                }
                Done::Prefix { prefix, n } => {
                    assert!(
                        *n <= KEYS
                            .iter()
                            .filter(|k| k.starts_with(prefix.as_str()))
                            .count()
                    );
                    prefix_deletes += n;
                    None
                }
                Done::DelAbsent => None,
            };
            if let Some(s) = seq {
                assert!(
                    s > last_seq,
                    "writer {id}: seq {s} after its own earlier write {last_seq}"
                );
                last_seq = s;
                assert!(attributed.insert(s), "seq {s} returned to two writes");
            }
        }
    }
    let rest: Vec<&Ev<S, S>> = log
        .events
        .values()
        .filter(|e| !attributed.contains(&e.seq))
        .collect();
    assert!(
        rest.iter().all(|e| e.kind == EvKind::Delete),
        "events no writer was told about: {:?}",
        rest.iter().find(|e| e.kind != EvKind::Delete)
    );
    assert_eq!(
        rest.len(),
        prefix_deletes,
        "delete_prefix counts vs unattributed Delete events"
    );
}

fn check_outcome(out: &Outcome, seed: u64) {
    check_writes(out);
    let mut failures = Vec::new();
    for r in out.drained.iter().chain(&out.partial) {
        let delivered = r.changes().count();
        println!(
            "  {:<45} delivered {delivered:>6}, lags {:>4}, missed {:>6}",
            r.name,
            r.lag_count(),
            r.missed_total()
        );
        if let Err(e) = check_all(r, Some(&out.log)) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} recordings failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The sleeper never read during the run: its first read after it is a lap
    // when the run wrapped the ring, with the exact count from its cursor 1.
    let sleeper = &out.drained[0];
    assert!(sleeper.name.starts_with("sleeper"));
    if out.head > out.cap {
        assert_eq!(
            sleeper.items.first(),
            Some(&Item::Lagged {
                missed: out.head + 1 - out.cap - 1,
                resume_at: out.head + 1 - out.cap
            }),
            "seed {seed}: sleeper"
        );
    } else {
        assert_eq!(sleeper.lag_count(), 0);
        assert_eq!(sleeper.changes().count(), out.log.events.len());
    }
    // Every snapshot watcher got its marker.
    for r in out.drained.iter().filter(|r| r.start == Start::Snapshot) {
        let Some((i, at, consistent_at)) = r.marker() else {
            panic!("seed {seed}: {} never got SnapshotDone", r.name)
        };
        let newer = r.items[..i]
            .iter()
            .filter(|it| matches!(it, Item::Change(e) if e.seq > at))
            .count();
        println!(
            "  {}: {i} keys, at {at}, consistent_at {consistent_at}, {newer} keys newer than at",
            r.name
        );
    }
}

fn small_ring(writers: usize, ops: usize, hot: bool) -> StressCfg {
    StressCfg {
        cap: 64,
        writers,
        ops,
        pace: true,
        slow_work: 3000,
        hot,
    }
}

fn large_ring(writers: usize, ops: usize, hot: bool) -> StressCfg {
    StressCfg {
        cap: 1 << 16,
        writers,
        ops,
        pace: false,
        slow_work: 300,
        hot,
    }
}

fn run_small_ring(cfg: StressCfg, rounds: u64) {
    let seed = seed();
    for round in 0..rounds {
        let seed = seed.wrapping_add(round);
        let out = run_stress(&cfg, seed);
        check_outcome(&out, seed);
        let lapped = out.drained.iter().filter(|r| r.lag_count() > 0).count();
        println!("  {lapped} recordings were lapped");
        assert!(
            lapped >= 2,
            "the sleeper and from(old) must have been lapped"
        );
    }
}

fn run_large_ring(cfg: StressCfg, rounds: u64) {
    let seed = seed();
    for round in 0..rounds {
        let seed = seed.wrapping_add(round);
        let out = run_stress(&cfg, seed);
        assert!(out.head < out.cap, "the run must fit in the ring");
        check_outcome(&out, seed);
        for r in out.drained.iter().chain(&out.partial) {
            assert_eq!(
                r.lag_count(),
                0,
                "seed {seed}: {} lagged on a ring that never wraps",
                r.name
            );
        }
    }
}

/// Small ring (64), writers paced only by the log watcher: slow watchers, the
/// sleeper and the `from(old)` watchers are lapped; everything is accounted.
#[test]
fn stress_small_ring_lapping_watchers() {
    run_small_ring(small_ring(3, 8000, false), 6);
}

/// Same, most writes on two hot keys: same-key races (CAS retries, helping a
/// pending node to its seq, skip markers).
#[test]
fn stress_small_ring_hot_keys() {
    run_small_ring(small_ring(4, 6000, true), 6);
}

/// Ring larger than the whole run: nobody may lag, and the snapshot
/// watchers' views are checked end to end (guarantee 6).
#[test]
fn stress_large_ring_no_laps() {
    run_large_ring(large_ring(4, 6000, true), 3);
    run_large_ring(large_ring(3, 6000, false), 3);
}

/// Longer runs (about two minutes in debug on 2 cores).
#[test]
#[ignore = "long (~2 min in debug on 2 cores); run with --ignored"]
fn stress_long() {
    run_small_ring(small_ring(4, 40_000, false), 10);
    run_small_ring(small_ring(4, 40_000, true), 10);
    run_large_ring(large_ring(4, 14_000, true), 20);
}

/// Guarantee 6 under load: a wide key space (1024 keys, so a scan takes a
/// while) and many snapshots taken while two writers run. Every snapshot
/// watcher is kept, drained after the run, and checked against the full log:
/// one Create per live key with seq == version, nothing stale, no duplicate
/// live event, and the materialized view equals the store at `consistent_at`
/// and after every later event.
#[test]
fn snapshots_taken_while_writers_run() {
    let seed = seed();
    for round in 0..5 {
        snapshots_while_writing(seed.wrapping_add(round));
    }
}

fn snapshots_while_writing(seed: u64) {
    let keys: Arc<Vec<S>> = Arc::new((0..1024).map(|i| format!("k{i:04}")).collect());
    let feed: Feed<S, S> = Feed::with_config(Config::new().capacity(1 << 16)).unwrap();
    let (mut log_w, mut log_rec) = Recording::watch("log", &feed, Filter::all(), Start::Now);
    for k in keys.iter().step_by(2) {
        feed.put(k.clone(), "initial".into()).unwrap();
    }
    let start = Arc::new(Barrier::new(2 + 2));
    // The writers keep going until the snapshots are taken (at most 25,000
    // writes each, so the 65,536-event ring never wraps).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<thread::JoinHandle<()>> = (0..2u64)
        .map(|id| {
            let (feed, keys, start) = (feed.clone(), keys.clone(), start.clone());
            let stop = stop.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (id + 7));
                start.wait();
                for i in 0..25_000 {
                    if i >= 2000 && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let k = &keys[rng.below(keys.len() as u64) as usize];
                    match rng.below(10) {
                        0..=5 => {
                            feed.put(k.clone(), format!("w{id}-{i}")).unwrap();
                        }
                        6..=7 => {
                            feed.delete(k).unwrap();
                        }
                        _ => {
                            let v = feed.get(k).map_or(0, |(_, v)| v);
                            let _ = feed.compare_and_put(k.clone(), v, format!("c{id}-{i}"));
                        }
                    }
                }
            })
        })
        .collect();
    let snapper = {
        let (feed, start, stop) = (feed.clone(), start.clone(), stop.clone());
        thread::spawn(move || {
            start.wait();
            let mut taken = Vec::new();
            for i in 0..8 {
                let filter = match i % 3 {
                    0 => Filter::all(),
                    1 => Filter::all().prefix("k01"),
                    _ => Filter::all().pred(Pred::new("odd", |k: &S| {
                        k.ends_with(['1', '3', '5', '7', '9'])
                    })),
                };
                let (mut w, mut rec) =
                    Recording::watch(format!("snapshot {i}"), &feed, filter, Start::Snapshot);
                // Read the snapshot part now, the live part after the run.
                while rec.marker().is_none() {
                    assert_eq!(rec.try_read(&mut w), Step::Item);
                }
                taken.push((w, rec));
            }
            stop.store(true, Ordering::Relaxed);
            taken
        })
    };
    start.wait();
    for w in writers {
        w.join().unwrap();
    }
    let mut taken = snapper.join().unwrap();
    let head = feed.head();
    assert_eq!(log_rec.try_drain(&mut log_w), Step::Empty);
    log_rec.drained_to = Some(head);
    let log = Log::from_unfiltered(&log_rec, head).unwrap();
    let state = log.state_at(head);
    for k in keys.iter() {
        assert_eq!(feed.get(k), state.get(k).cloned(), "get({k})");
    }
    let mut windows = 0;
    for (w, rec) in &mut taken {
        assert_eq!(rec.try_drain(w), Step::Empty);
        rec.drained_to = Some(head);
        let (_, at, consistent_at) = rec.marker().unwrap();
        if consistent_at > at {
            windows += 1;
        }
        check_all(rec, Some(&log)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(rec.lag_count(), 0);
    }
    println!(
        "head {head}, {} skip markers; {windows} of {} snapshots overlapped writes (at < consistent_at)",
        log.skip_markers(),
        taken.len()
    );
    assert_eq!(
        log.skip_markers(),
        0,
        "seqs are dense: every seq up to the head is an event"
    );
}

/// Watchers created and dropped all the time, from several threads, while
/// writers run: the writers finish, the feed stays consistent, and a watcher
/// that outlives every `Feed` handle still reads what was retained.
#[test]
fn watchers_dropped_mid_run_do_not_disturb_writers() {
    let seed = seed();
    // A ring larger than the run: the log watcher cannot lap.
    let feed: Feed<S, S> = Feed::with_config(Config::new().capacity(1 << 14)).unwrap();
    let (log_w, log_rec) = Recording::watch("log", &feed, Filter::all(), Start::Now);
    let start = Arc::new(Barrier::new(2 + 2 + 1));
    let mut churners = Vec::new();
    for t in 0..2u64 {
        let feed = feed.clone();
        let start = start.clone();
        churners.push(thread::spawn(move || {
            let mut rng = Rng::new(seed + t);
            start.wait();
            let mut recs = Vec::new();
            for i in 0..150 {
                let start = match rng.below(3) {
                    0 => Start::Now,
                    1 => Start::From(feed.head().saturating_sub(rng.below(300))),
                    _ => Start::Snapshot,
                };
                let f = if i % 2 == 0 {
                    Filter::all()
                } else {
                    Filter::all().prefix("b")
                };
                let (mut w, mut rec) = Recording::watch(format!("churn{t}-{i}"), &feed, f, start);
                for _ in 0..rng.below(20) {
                    rec.try_read(&mut w);
                }
                rec.end_cursor = w.cursor();
                drop(w);
                recs.push(rec);
            }
            recs
        }));
    }
    let writers: Vec<_> = (0..2)
        .map(|id| {
            let (feed, start) = (feed.clone(), start.clone());
            thread::spawn(move || writer(id, feed, 1500, true, seed, None, None, start))
        })
        .collect();
    let log_t = thread::spawn(move || read_fast(log_w, log_rec));
    start.wait();
    let writes: Vec<Vec<Done>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let recs: Vec<Rec> = churners
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let head = feed.head();
    let mut survivor = feed.watch(WatchOptions::all().from(head.saturating_sub(10).max(1)));
    feed.close();
    let mut log_rec = log_t.join().unwrap();
    log_rec.drained_to = Some(head);
    let log = Log::from_unfiltered(&log_rec, head).expect("log watcher");
    check_gets(&feed, &log);
    let out = Outcome {
        log,
        drained: vec![],
        partial: recs,
        writes,
        head,
        cap: 1 << 14,
    };
    check_writes(&out);
    for r in &out.partial {
        check_all(r, Some(&out.log)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    // The feed outlives its last handle.
    drop(feed);
    let mut n = 0;
    for r in survivor.by_ref() {
        let e = r.expect("no lap on a quiescent ring");
        assert!(e.as_change().unwrap().seq > head.saturating_sub(11));
        n += 1;
    }
    assert_eq!(
        n,
        out.log
            .events
            .range(head.saturating_sub(10).max(1)..)
            .count()
    );
}

/// Watchers blocked in the iterator / `next_timeout` when the feed is closed
/// first drain what is left, then end with `Closed`; a `WatchCloser` wakes a
/// blocked `next_timeout` of its own watcher only.
#[test]
fn close_while_watchers_block_drains_then_closed() {
    let feed: Feed<S, S> = Feed::with_config(Config::new().capacity(1024)).unwrap();
    let n_first = 100u64;
    let n_last = 50u64;
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for t in 0..4 {
        let mut w = feed.watch(if t % 2 == 0 {
            WatchOptions::all()
        } else {
            WatchOptions::all().prefix("k")
        });
        let ready = ready_tx.clone();
        threads.push(thread::spawn(move || {
            let mut seqs = Vec::new();
            // Read the first batch, say so, then block for the rest.
            while (seqs.len() as u64) < n_first {
                let e = if t < 2 {
                    w.next().expect("not closed yet").expect("no lap")
                } else {
                    w.next_timeout(Duration::from_secs(3600))
                        .expect("no lap")
                        .expect("no timeout")
                        .to_owned()
                };
                seqs.push(e.as_change().unwrap().seq);
            }
            ready.send(()).unwrap();
            let end = if t < 2 {
                for r in w.by_ref() {
                    seqs.push(r.expect("no lap").as_change().unwrap().seq);
                }
                RecvError::Closed
            } else {
                loop {
                    match w.next_timeout(Duration::from_secs(3600)) {
                        Ok(Some(e)) => seqs.push(e.as_change().unwrap().seq()),
                        Ok(None) => panic!("a one-hour timeout elapsed"),
                        Err(e) => break e,
                    }
                }
            };
            (seqs, end)
        }));
    }
    for i in 0..n_first {
        feed.put(format!("k{}", i % 7), format!("{i}")).unwrap();
    }
    for _ in 0..4 {
        ready_rx.recv().unwrap();
    }
    // All four have read everything so far and are (about to be) blocked.
    for i in 0..n_last {
        feed.put(format!("k{}", i % 5), format!("late{i}")).unwrap();
    }
    feed.close();
    for t in threads {
        let (seqs, end) = t.join().unwrap();
        assert_eq!(end, RecvError::Closed);
        assert_eq!(
            seqs,
            (1..=n_first + n_last).collect::<Vec<_>>(),
            "drained everything, in order, then Closed"
        );
    }

    // WatchCloser wakes its own blocked watcher; the other keeps waiting for events.
    let feed: Feed<S, S> = Feed::new();
    let w1 = feed.watch(WatchOptions::all());
    let w2 = feed.watch(WatchOptions::all());
    let closer = w1.closer();
    let (tx, rx) = mpsc::channel();
    let blocked: Vec<_> = [w1, w2]
        .into_iter()
        .enumerate()
        .map(|(i, mut w)| {
            let tx = tx.clone();
            thread::spawn(move || {
                tx.send(i).unwrap();
                let r = w
                    .next_timeout(Duration::from_secs(3600))
                    .map(|o| o.map(|e| e.to_owned()));
                (i, r)
            })
        })
        .collect();
    rx.recv().unwrap();
    rx.recv().unwrap();
    closer.close();
    let mut results = blocked.into_iter();
    let (_, r1) = results.next().unwrap().join().unwrap();
    assert_eq!(
        r1.err(),
        Some(RecvError::Closed),
        "closer wakes its watcher with Closed"
    );
    feed.put("x".into(), "1".into()).unwrap();
    let (_, r2) = results.next().unwrap().join().unwrap();
    match r2 {
        Ok(Some(Event::Change(c))) => assert_eq!(c.seq, 1),
        other => panic!("the other watcher should get the event: {other:?}"),
    }
}
