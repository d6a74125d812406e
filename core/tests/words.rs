//! Feeds of word types (`u64 -> u64`, `u8 -> u64`, ...) run on the word
//! engine (`engine/word/`): keys, values and events inline, no record per
//! key. The model and stress suites (`model.rs`, `stress.rs`) use `String`
//! keys, which take the record engine; this file checks the same
//! guarantees on the word engine:
//!
//! * a property test against a sequential model: every result of every
//!   call (put, compare-and-put, delete, get, with suppression on or off)
//!   and every watcher's exact output (events with `old`, laps with their
//!   counts, snapshots, resumes), over tiny rings;
//! * a stress test with writers, getters and watchers on two cores: the
//!   log is dense and per-key consistent, every `get` returns a value and
//!   version pair that some write made (read while writers replace the
//!   value, the case the intent records exist for), a lapped watcher
//!   receives exactly the log's events and is told exactly what it
//!   missed, and many keys force migrations while all of this runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kvfeed::{
    CasError, Change, Config, Event, Feed, Kind, Kinds, RecvError, WatchOptions, Watcher,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u64),
    /// Compare-and-put expecting the current version (true) or a stale one.
    Cas(u8, bool, u64),
    Delete(u8),
    Get(u8),
    /// A watcher from `from` (None: the head), or with a snapshot; with a
    /// key filter (Some: that key only) and a kind mask (bits of `Kinds`).
    Watch(Option<u64>, bool, Option<u8>, u8),
    /// Read up to n events from watcher w: one by one (false) or by batch.
    Read(u8, u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..5u8, 0..3u64).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..5u8, any::<bool>(), 0..3u64).prop_map(|(k, c, v)| Op::Cas(k, c, v)),
        2 => (0..5u8).prop_map(Op::Delete),
        2 => (0..5u8).prop_map(Op::Get),
        2 => (prop::option::of(1..12u64), any::<bool>(), prop::option::weighted(0.3, 0..5u8), prop_oneof![3 => Just(7u8), 1 => 1..7u8])
            .prop_map(|(f, s, k, m)| Op::Watch(f, s, k, m)),
        4 => (any::<u8>(), 1..5u8, any::<bool>()).prop_map(|(w, n, b)| Op::Read(w, n, b)),
    ]
}

/// What a watcher handed out, in a comparable form.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Change(Change<u8, u64>),
    Done(u64, u64),
    Lagged(u64, u64),
    /// (Model only) one of the snapshot items still pending, in any order.
    Item,
}

/// The sequential model: the store, the whole log, and each watcher's cursor
/// and pending snapshot.
struct Model {
    cap: u64,
    suppress: bool,
    map: BTreeMap<u8, (u64, u64)>,
    log: Vec<Change<u8, u64>>,
    watchers: Vec<ModelWatcher>,
}

struct ModelWatcher {
    cursor: u64,
    key: Option<u8>,
    kinds: u8,
    /// Snapshot items not yet delivered (any order: the harness removes
    /// the ones the feed handed out) and the marker; live events after it
    /// skip what the snapshot reflected.
    snapshot: Option<(Vec<Change<u8, u64>>, u64)>,
    /// Items the model has promised (as `Got::Item`) but not yet matched.
    promised: usize,
    /// The marker was handed out (the harness then drops the snapshot).
    marker_sent: bool,
    seen: BTreeMap<u8, u64>,
}

impl ModelWatcher {
    /// The pending snapshot items and the marker's `at`, while the marker
    /// has not been delivered; the model only promises items while this
    /// is so.
    fn snapshot_items(&mut self) -> (&mut Vec<Change<u8, u64>>, u64) {
        let (items, at) = self.snapshot.as_mut().expect("items promised");
        (items, *at)
    }
}

impl Model {
    fn head(&self) -> u64 {
        self.log.len() as u64
    }

    fn emit(&mut self, kind: Kind, key: u8, value: Option<u64>, old: Option<u64>) -> u64 {
        let seq = self.head() + 1;
        self.log.push(Change {
            seq,
            kind,
            key,
            value,
            old,
        });
        match value {
            Some(v) => self.map.insert(key, (v, seq)),
            None => self.map.remove(&key),
        };
        seq
    }

    fn put(&mut self, key: u8, value: u64, expect: Option<u64>) -> Result<u64, CasError> {
        let cur = self.map.get(&key).copied();
        if let Some(e) = expect {
            let version = cur.map_or(0, |(_, v)| v);
            if e != version {
                return Err(CasError::Conflict {
                    current_version: version,
                });
            }
        }
        match cur {
            Some((old, version)) if self.suppress && old == value => Ok(version),
            Some((old, _)) => Ok(self.emit(Kind::Update, key, Some(value), Some(old))),
            None => Ok(self.emit(Kind::Create, key, Some(value), None)),
        }
    }

    /// What watcher `w` hands out for up to `n` reads (a batch read stops
    /// before a lap it would report after events; one-by-one reads report it).
    fn read(&mut self, w: usize, n: usize, batch: bool) -> Vec<Got> {
        let head = self.head();
        let cap = self.cap;
        let mut out = Vec::new();
        let mw = &mut self.watchers[w];
        while out.len() < n {
            if let Some((items, at)) = mw.snapshot.as_ref().filter(|_| !mw.marker_sent) {
                if mw.promised < items.len() {
                    mw.promised += 1;
                    out.push(Got::Item);
                    continue;
                }
                out.push(Got::Done(*at, *at));
                mw.marker_sent = true;
                continue;
            }
            if mw.cursor > head {
                break;
            }
            if head >= mw.cursor + cap {
                let resume_at = (head + 1).saturating_sub(cap).max(mw.cursor + 1);
                if batch && !out.is_empty() {
                    break;
                }
                out.push(Got::Lagged(resume_at - mw.cursor, resume_at));
                mw.cursor = resume_at;
                if batch {
                    break;
                }
                continue;
            }
            let ev = self.log[mw.cursor as usize - 1].clone();
            mw.cursor += 1;
            if mw.seen.get(&ev.key).is_some_and(|&v| ev.seq <= v) {
                continue;
            }
            let kind_bit = match ev.kind {
                Kind::Create => 1,
                Kind::Update => 2,
                Kind::Delete => 4,
            };
            if mw.key.is_some_and(|k| k != ev.key) || mw.kinds & kind_bit == 0 {
                continue;
            }
            out.push(Got::Change(ev));
        }
        out
    }
}

fn got(ev: Result<Option<Event<u8, u64>>, RecvError>) -> Option<Got> {
    match ev {
        Ok(Some(Event::Change(c))) => Some(Got::Change(c)),
        Ok(Some(Event::SnapshotDone { at, consistent_at })) => Some(Got::Done(at, consistent_at)),
        Ok(None) => None,
        Err(RecvError::Lagged(l)) => Some(Got::Lagged(l.missed, l.resume_at)),
        Err(RecvError::Closed) => panic!("closed"),
    }
}

fn run(cap: usize, suppress: bool, ops: &[Op]) {
    let mut config = Config::new().capacity(cap);
    if suppress {
        config = config.suppress_unchanged();
    }
    let feed: Feed<u8, u64> = Feed::with_config(config).unwrap();
    let mut model = Model {
        cap: cap as u64,
        suppress,
        map: BTreeMap::new(),
        log: Vec::new(),
        watchers: Vec::new(),
    };
    let mut watchers: Vec<Watcher<u8, u64>> = Vec::new();
    for op in ops {
        match *op {
            Op::Put(k, v) => assert_eq!(feed.put(k, v), Ok(model.put(k, v, None).unwrap())),
            Op::Cas(k, current, v) => {
                let version = model.map.get(&k).map_or(0, |&(_, s)| s);
                let expect = if current { version } else { version + 1 };
                assert_eq!(
                    feed.compare_and_put(k, expect, v),
                    model.put(k, v, Some(expect)),
                    "{op:?}"
                );
            }
            Op::Delete(k) => {
                let want = model.map.get(&k).copied().map(|(old, _)| {
                    model.emit(Kind::Delete, k, None, Some(old));
                    old
                });
                assert_eq!(feed.delete(&k).unwrap(), want, "{op:?}");
            }
            Op::Get(k) => {
                assert_eq!(feed.get(&k), model.map.get(&k).copied(), "{op:?}");
            }
            Op::Watch(from, snapshot, key, kinds) => {
                let head = model.head();
                let filtered = |mut o: WatchOptions<u8>| {
                    if let Some(k) = key {
                        o = o.key(k);
                    }
                    o.kinds(Kinds::from_bits_truncate(kinds))
                };
                let (options, cursor, snap) = if snapshot {
                    let items = model
                        .map
                        .iter()
                        .filter(|(&k, _)| key.map_or(true, |want| want == k) && kinds & 1 != 0)
                        .map(|(&key, &(v, seq))| Change {
                            seq,
                            kind: Kind::Create,
                            key,
                            value: Some(v),
                            old: None,
                        })
                        .collect();
                    (
                        filtered(WatchOptions::all().snapshot()),
                        head + 1,
                        Some((items, head)),
                    )
                } else if let Some(f) = from {
                    (filtered(WatchOptions::all().from(f)), f, None)
                } else {
                    (filtered(WatchOptions::all()), head + 1, None)
                };
                let seen = snap
                    .as_ref()
                    .map(|(items, _): &(Vec<Change<u8, u64>>, u64)| {
                        items.iter().map(|c| (c.key, c.seq)).collect()
                    })
                    .unwrap_or_default();
                watchers.push(feed.watch(options));
                model.watchers.push(ModelWatcher {
                    cursor,
                    key,
                    kinds,
                    snapshot: snap,
                    promised: 0,
                    marker_sent: false,
                    seen,
                });
            }
            Op::Read(w, n, batch) => {
                if watchers.is_empty() {
                    continue;
                }
                let w = w as usize % watchers.len();
                let mut out = Vec::new();
                if batch {
                    let mut buf = Vec::new();
                    match watchers[w].next_batch(&mut buf, n as usize) {
                        Ok(_) => out.extend(buf.into_iter().map(|e| got(Ok(Some(e))).unwrap())),
                        Err(e) => out.push(got(Err(e)).unwrap()),
                    }
                } else {
                    for _ in 0..n {
                        match got(watchers[w].try_next().map(|e| e.map(|e| e.to_owned()))) {
                            Some(g) => out.push(g),
                            None => break,
                        }
                    }
                }
                let mut want = model.read(w, n as usize, batch);
                // Snapshot items come in no particular order: each one the
                // feed handed out must be one the model still has pending.
                let mw = &mut model.watchers[w];
                for (got, want) in out.iter().zip(want.iter_mut()) {
                    if let (Got::Change(c), Got::Item) = (got, &*want) {
                        let (items, _) = mw.snapshot_items();
                        let at = items.iter().position(|i| i == c);
                        let at = at.unwrap_or_else(|| panic!("{c:?} is no pending snapshot item"));
                        items.remove(at);
                        *want = got.clone();
                    }
                }
                mw.promised = 0;
                if mw.marker_sent {
                    mw.snapshot = None;
                }
                assert_eq!(out, want, "{op:?}");
            }
        }
    }
    assert_eq!(feed.head(), model.head());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Every call's result and every watcher's exact output equal the
    /// sequential model's.
    #[test]
    fn word_feed_matches_sequential_model(
        cap in prop::sample::select(vec![2usize, 4, 8, 64]),
        suppress in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(cap, suppress, &ops);
    }
}

/// A value that names its write: the writer and its count.
fn value(writer: u64, i: u64) -> u64 {
    writer << 32 | i
}

/// What a watcher received: events, laps, and where it stopped.
type Received = (Vec<Change<u64, u64>>, Vec<kvfeed::Lagged>, u64);

/// Reads `w` until `done` and nothing is left: one by one, or in batches.
fn read_all(mut w: Watcher<u64, u64>, done: Arc<AtomicBool>, batch: bool) -> Received {
    let mut got = Vec::new();
    let mut laps = Vec::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        let r = if batch {
            w.drain_with(64, |ev| got.push(ev.as_change().unwrap().to_owned()))
        } else {
            w.try_next().map(|ev| {
                ev.map(|ev| got.push(ev.as_change().unwrap().to_owned()))
                    .is_some() as usize
            })
        };
        match r {
            Ok(0) if finished => break,
            Ok(0) => std::thread::yield_now(),
            Ok(_) => {}
            Err(RecvError::Lagged(l)) => laps.push(l),
            Err(RecvError::Closed) => break,
        }
    }
    let end = w.cursor();
    (got, laps, end)
}

/// Every event a watcher got is the log's, and every seq it passed was
/// either delivered or counted in exactly one lap.
fn check_received((got, laps, end): &Received, log: &[Change<u64, u64>]) {
    let mut next = 1;
    let mut delivered = got.iter();
    let mut laps = laps.iter().peekable();
    while next < *end {
        if let Some(l) = laps.peek().filter(|l| l.resume_at - l.missed == next) {
            assert!(l.missed > 0);
            next = l.resume_at;
            laps.next();
            continue;
        }
        let ev = delivered
            .next()
            .unwrap_or_else(|| panic!("seq {next} neither delivered nor reported"));
        assert_eq!(ev, &log[next as usize - 1]);
        next += 1;
    }
    assert!(delivered.next().is_none() && laps.next().is_none());
    assert_eq!(*end, log.len() as u64 + 1);
}

#[test]
fn word_writers_getters_and_watchers_agree() {
    const WRITERS: u64 = 3;
    const WRITES: u64 = 60_000;
    // Hot keys (several writers, so gets meet writes in flight) and a wide
    // range (so the table migrates several times while everything runs).
    const HOT: u64 = 4;
    const WIDE: u64 = 20_000;
    let feed: Feed<u64, u64> = Feed::with_config(Config::new().capacity(256)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let slow = feed.watch(WatchOptions::all());
    let fast = feed.watch(WatchOptions::all());

    // Each writer records what its calls returned: together, the whole log.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let feed = feed.clone();
            std::thread::spawn(move || {
                let mut wrote = Vec::new();
                let mut x = w * 7919 + 1;
                for i in 0..WRITES {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = x >> 33;
                    let key = if r % 2 == 0 { r % HOT } else { HOT + r % WIDE };
                    if r % 11 == 0 {
                        if let Some((seq, old)) = feed.delete_seq(&key).unwrap() {
                            wrote.push((seq, key, None, Some(old)));
                        }
                    } else {
                        let v = value(w + 1, i);
                        wrote.push((feed.put(key, v).unwrap(), key, Some(v), None));
                    }
                }
                wrote
            })
        })
        .collect();
    let getters: Vec<_> = (0..2)
        .map(|g| {
            let feed = feed.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = g;
                while !done.load(Ordering::Relaxed) {
                    let key = if i % 4 != 0 { i % HOT } else { HOT + i % WIDE };
                    seen.push((key, feed.get(&key)));
                    i += 1;
                }
                seen
            })
        })
        .collect();
    let slow = {
        let done = done.clone();
        std::thread::spawn(move || read_all(slow, done, false))
    };
    let fast = {
        let done = done.clone();
        std::thread::spawn(move || read_all(fast, done, true))
    };
    let mut wrote: Vec<_> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    done.store(true, Ordering::Release);
    let gets: Vec<_> = getters
        .into_iter()
        .flat_map(|g| g.join().unwrap())
        .collect();
    let slow = slow.join().unwrap();
    let fast = fast.join().unwrap();

    // Dense: the writers' seqs are exactly 1..=head.
    let head = feed.head();
    wrote.sort_by_key(|w| w.0);
    assert_eq!(wrote.len() as u64, head);
    // The log, replayed in seq order: kinds and `old` follow, and a delete
    // returned the value the replay says the key had.
    let mut state: BTreeMap<u64, u64> = BTreeMap::new();
    let mut log = Vec::new();
    for (i, &(seq, key, value, deleted)) in wrote.iter().enumerate() {
        assert_eq!(seq, i as u64 + 1, "seq {} was never handed out", i + 1);
        let old = state.get(&key).copied();
        if value.is_none() {
            assert_eq!(deleted, old, "delete_seq returned another old value");
        }
        let kind = match (old, value) {
            (None, Some(_)) => Kind::Create,
            (Some(_), Some(_)) => Kind::Update,
            (Some(_), None) => Kind::Delete,
            (None, None) => panic!("a delete of an absent key was numbered: seq {seq}"),
        };
        match value {
            Some(v) => state.insert(key, v),
            None => state.remove(&key),
        };
        log.push(Change {
            seq,
            kind,
            key,
            value,
            old,
        });
    }
    for (key, v) in &state {
        assert_eq!(feed.get(key).map(|(v, _)| v), Some(*v));
    }

    // Every get returned a pair some write made: the value the event with
    // that seq stored, for that key.
    let mut checked = 0;
    for (key, got) in &gets {
        if let Some((v, version)) = got {
            let ev = &log[*version as usize - 1];
            assert_eq!(
                (ev.key, ev.value),
                (*key, Some(*v)),
                "get({key}) returned ({v:#x}, {version}), which no write made"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} gets found their key");

    check_received(&slow, &log);
    check_received(&fast, &log);
    assert!(!slow.1.is_empty(), "the slow watcher was never lapped");
}

/// Blocking reads on a word feed: a watcher in the iterator receives every
/// event in order and ends when the feed closes; a watcher whose filter
/// matches nothing keeps returning from `next_timeout` while writers
/// publish (its deadline is checked between events it passes over), and
/// gets `Closed` once the feed is closed and it has passed everything.
#[test]
fn word_blocking_readers_and_timeouts() {
    const WRITES: u64 = 20_000;
    let feed: Feed<u64, u64> = Feed::with_config(Config::new().capacity(1 << 16)).unwrap();
    let all = feed.watch(WatchOptions::all());
    let mut none = feed.watch(WatchOptions::all().key(u64::MAX));
    let iterating = std::thread::spawn(move || all.map(|e| e.unwrap()).collect::<Vec<_>>());
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let feed = feed.clone();
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    feed.put(i % 100, value(w + 1, i)).unwrap();
                }
            })
        })
        .collect();
    let mut returned = 0;
    let mut slowest = std::time::Duration::ZERO;
    while writers.iter().any(|w| !w.is_finished()) {
        let start = std::time::Instant::now();
        assert!(none
            .next_timeout(std::time::Duration::from_millis(1))
            .unwrap()
            .is_none());
        slowest = slowest.max(start.elapsed());
        returned += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    feed.close();
    assert!(returned > 0);
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "a 1 ms next_timeout took {slowest:?}"
    );
    let got = iterating.join().unwrap();
    assert_eq!(got.len() as u64, 2 * WRITES);
    let mut state = BTreeMap::new();
    for (i, ev) in got.iter().enumerate() {
        let Event::Change(c) = ev else {
            panic!("no snapshot was asked for")
        };
        assert_eq!(c.seq, i as u64 + 1);
        assert_eq!(c.old, state.insert(c.key, c.value.unwrap()));
    }
    assert_eq!(
        none.next_timeout(std::time::Duration::from_secs(5))
            .map(|e| e.is_some()),
        Err(RecvError::Closed)
    );
}
