//! Model tests: random operation sequences run against a `Feed` and against a
//! plain sequential model (a `BTreeMap` of key -> (value, version) and a `Vec`
//! of events indexed by seq). Every returned seq, version and error, every
//! event's seq/kind/key/value/old and every watcher's exact output (including
//! `Lagged { missed, resume_at }` on small rings) is compared with the model.
//!
//! Single-threaded facts the model relies on (SPEC "Data model", guarantees
//! 1-6, and the watcher docs): seqs are consecutive from 1 (no skip markers
//! without concurrency); a watcher at `cursor` is lapped when
//! `cursor + capacity <= head` and resumes at the oldest retained seq,
//! `head + 1 - capacity`, with `missed = resume_at - cursor`; a snapshot is
//! taken when the watcher is created, so `at == consistent_at == head`.
//!
//! Besides the exact comparison, every watcher's recording is also run through
//! the checkers of `common/` against the model's log.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use kvfeed::{
    CasError, Config, ConfigError, Event, Feed, Lagged, RecvError, WatchOptions, Watcher,
    WriteError,
};
use proptest::prelude::*;

type S = String;

const KEYS: [&str; 6] = ["a", "ab", "b", "ba", "bb", "c"];
const VALS: [&str; 4] = ["0", "1", "2", "33"];
const PREFIXES: [&str; 5] = ["", "a", "b", "bb", "x"];
const MAX_KEY: usize = 2;
const MAX_VAL: usize = 3;
const LONG_KEY: &str = "abc";
const LONG_VAL: &str = "4444";

fn pred(i: u8) -> Pred<S> {
    match i % 3 {
        0 => Pred::new("len1", |k: &S| k.len() == 1),
        1 => Pred::new("ends_a", |k: &S| k.ends_with('a')),
        _ => Pred::new("lt_b", |k: &S| k.as_str() < "b"),
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Cfg {
    cap: usize,
    suppress: bool,
    limits: bool,
}

#[derive(Clone, Copy, Debug)]
enum StartSpec {
    Now,
    /// from(head - n) (saturating; 0 is taken as 1)
    Back(u8),
    /// from(head + 1 + n)
    Ahead(u8),
    Snapshot,
}

#[derive(Clone, Debug)]
struct WSpec {
    keys: Vec<u8>,
    prefixes: Vec<u8>,
    preds: Vec<u8>,
    kinds: u8,
    start: StartSpec,
}

#[derive(Clone, Copy, Debug)]
enum CasVer {
    Right,
    Wrong(u8),
    Zero,
}

#[derive(Clone, Copy, Debug)]
enum ReadHow {
    Try,
    Timeout0,
    Batch(u8),
    Iter,
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Cas(u8, CasVer, u8),
    Delete(u8, bool),
    DeletePrefix(u8),
    Get(u8),
    TooLarge { long_key: bool, cas: bool },
    Watch(WSpec),
    Read(u8, ReadHow, u8),
    Drop(u8),
    Resnapshot(u8),
    CloseWatcher(u8),
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    (
        prop::sample::select(vec![2usize, 4, 8, 16, 64]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(cap, suppress, limits)| Cfg {
            cap,
            suppress,
            limits,
        })
}

fn wspec_strategy() -> impl Strategy<Value = WSpec> {
    let start = prop_oneof![
        3 => Just(StartSpec::Now),
        2 => (0u8..24).prop_map(StartSpec::Back),
        1 => (0u8..4).prop_map(StartSpec::Ahead),
        3 => Just(StartSpec::Snapshot),
    ];
    let k = KEYS.len() as u8;
    let p = PREFIXES.len() as u8;
    (
        prop::collection::vec(0..k, 0..3),
        prop::collection::vec(0..p, 0..2),
        prop::collection::vec(0u8..3, 0..2),
        prop_oneof![3 => Just(K_ALL), 2 => 1u8..=7],
        start,
    )
        .prop_map(|(keys, prefixes, preds, kinds, start)| WSpec {
            keys,
            prefixes,
            preds,
            kinds,
            start,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let k = KEYS.len() as u8;
    let v = VALS.len() as u8;
    let cas_ver = prop_oneof![
        3 => Just(CasVer::Right),
        1 => (0u8..3).prop_map(CasVer::Wrong),
        2 => Just(CasVer::Zero),
    ];
    let read = prop_oneof![
        3 => Just(ReadHow::Try),
        1 => Just(ReadHow::Timeout0),
        2 => (1u8..6).prop_map(ReadHow::Batch),
        1 => Just(ReadHow::Iter),
    ];
    prop_oneof![
        10 => (0..k, 0..v).prop_map(|(k, v)| Op::Put(k, v)),
        5 => (0..k, cas_ver, 0..v).prop_map(|(k, c, v)| Op::Cas(k, c, v)),
        4 => (0..k, any::<bool>()).prop_map(|(k, s)| Op::Delete(k, s)),
        1 => (0..PREFIXES.len() as u8).prop_map(Op::DeletePrefix),
        2 => (0..k).prop_map(Op::Get),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(long_key, cas)| Op::TooLarge { long_key, cas }),
        3 => wspec_strategy().prop_map(Op::Watch),
        10 => (any::<u8>(), read, 1u8..6).prop_map(|(w, r, n)| Op::Read(w, r, n)),
        1 => any::<u8>().prop_map(Op::Drop),
        1 => any::<u8>().prop_map(Op::Resnapshot),
        1 => any::<u8>().prop_map(Op::CloseWatcher),
    ]
}

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/// What the model says a watcher's next read returns.
#[derive(Debug)]
enum Exp {
    /// One of the snapshot's pending Creates (any order).
    Create,
    Marker(u64, u64),
    Event(Ev<S, S>),
    Lagged(u64, u64),
    Empty,
    Closed,
}

#[derive(Clone, Debug)]
struct MState {
    cursor: u64,
    pending: BTreeMap<S, (S, u64)>,
    marker: Option<(u64, u64)>,
    closed_self: bool,
}

struct MW {
    name: String,
    w: Watcher<S, S>,
    st: MState,
    filter: Filter<S>,
    rec: Recording<S, S>,
}

/// The result of one real read, owned.
#[derive(Debug)]
enum Got {
    Event(Event<S, S>),
    Empty,
    Lagged(Lagged),
    Closed,
}

impl Got {
    fn of(r: Result<Option<kvfeed::EventRef<'_, S, S>>, RecvError>) -> Got {
        match r {
            Ok(Some(e)) => Got::Event(e.to_owned()),
            Ok(None) => Got::Empty,
            Err(RecvError::Lagged(l)) => Got::Lagged(l),
            Err(RecvError::Closed) => Got::Closed,
        }
    }
}

struct World<'a> {
    log: &'a [Option<Ev<S, S>>],
    head: u64,
    cap: u64,
    closed: bool,
}

impl World<'_> {
    /// Advance `st` by one read and say what it returns.
    fn expect(&self, st: &mut MState, filter: &Filter<S>) -> Exp {
        if st.closed_self {
            return Exp::Closed;
        }
        if !st.pending.is_empty() {
            return Exp::Create;
        }
        if let Some((a, c)) = st.marker.take() {
            return Exp::Marker(a, c);
        }
        let h = self.head;
        if st.cursor + self.cap <= h {
            let resume = h + 1 - self.cap;
            let missed = resume - st.cursor;
            st.cursor = resume;
            return Exp::Lagged(missed, resume);
        }
        while st.cursor <= h {
            let s = st.cursor;
            st.cursor += 1;
            let e = self.log[s as usize - 1]
                .as_ref()
                .unwrap_or_else(|| panic!("model bug: seq {s} is readable but unknown"));
            if filter.matches(&e.key, e.kind) {
                return Exp::Event(e.clone());
            }
        }
        if self.closed {
            Exp::Closed
        } else {
            Exp::Empty
        }
    }
}

struct Model {
    feed: Feed<S, S>,
    cfg: Cfg,
    state: BTreeMap<S, (S, u64)>,
    /// Event for seq `i + 1`; None: a delete_prefix event overwritten before
    /// anyone could read it (its key is only known as one of `lost`).
    log: Vec<Option<Ev<S, S>>>,
    lost: Vec<(Vec<u64>, BTreeMap<S, S>)>,
    head: u64,
    closed: bool,
    watchers: Vec<MW>,
    finished: Vec<Recording<S, S>>,
    next_name: usize,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        let mut c = Config::new().capacity(cfg.cap);
        if cfg.suppress {
            c = c.suppress_unchanged();
        }
        if cfg.limits {
            c = c.max_key_len(MAX_KEY).max_value_len(MAX_VAL);
        }
        let feed = Feed::with_config(c).expect("valid config");
        assert_eq!(feed.capacity(), cfg.cap);
        Model {
            feed,
            cfg,
            state: BTreeMap::new(),
            log: Vec::new(),
            lost: Vec::new(),
            head: 0,
            closed: false,
            watchers: Vec::new(),
            finished: Vec::new(),
            next_name: 0,
        }
    }

    fn emit(&mut self, kind: EvKind, key: &str, value: Option<S>, old: Option<S>) -> u64 {
        self.head += 1;
        let seq = self.head;
        match &value {
            Some(v) => {
                self.state.insert(key.to_string(), (v.clone(), seq));
            }
            None => {
                self.state.remove(key);
            }
        }
        self.log.push(Some(Ev {
            seq,
            kind,
            key: key.to_string(),
            value,
            old,
        }));
        seq
    }

    fn put(&mut self, key: &str, val: &str) {
        let r = self.feed.put(key.to_string(), val.to_string());
        if self.closed {
            assert_eq!(r, Err(WriteError::Closed), "put after close");
            return;
        }
        let cur = self.state.get(key).cloned();
        match cur {
            Some((v, ver)) if self.cfg.suppress && v == val => {
                assert_eq!(
                    r,
                    Ok(ver),
                    "unchanged put with suppression returns the current version"
                );
            }
            Some((v, _)) => {
                let seq = self.emit(EvKind::Update, key, Some(val.into()), Some(v));
                assert_eq!(r, Ok(seq), "put (update) {key}={val}");
            }
            None => {
                let seq = self.emit(EvKind::Create, key, Some(val.into()), None);
                assert_eq!(r, Ok(seq), "put (create) {key}={val}");
            }
        }
    }

    fn cas(&mut self, key: &str, ver: CasVer, val: &str) {
        let cur = self.state.get(key).cloned();
        let cur_ver = cur.as_ref().map_or(0, |c| c.1);
        let expected = match ver {
            CasVer::Right => cur_ver,
            CasVer::Wrong(d) => cur_ver + 1 + d as u64,
            CasVer::Zero => 0,
        };
        let r = self
            .feed
            .compare_and_put(key.to_string(), expected, val.to_string());
        if self.closed {
            assert_eq!(
                r,
                Err(CasError::Write(WriteError::Closed)),
                "cas after close"
            );
            return;
        }
        if expected != cur_ver {
            assert_eq!(
                r,
                Err(CasError::Conflict {
                    current_version: cur_ver
                }),
                "cas {key} expected {expected}"
            );
            return;
        }
        match cur {
            Some((v, ver)) if self.cfg.suppress && v == val => {
                assert_eq!(r, Ok(ver), "unchanged cas with suppression");
            }
            Some((v, _)) => {
                let seq = self.emit(EvKind::Update, key, Some(val.into()), Some(v));
                assert_eq!(r, Ok(seq), "cas (update) {key}={val}");
            }
            None => {
                let seq = self.emit(EvKind::Create, key, Some(val.into()), None);
                assert_eq!(r, Ok(seq), "cas (create) {key}={val}");
            }
        }
    }

    fn delete(&mut self, key: &str, with_seq: bool) {
        let r: Result<Option<(Option<u64>, S)>, WriteError> = if with_seq {
            self.feed
                .delete_seq(key)
                .map(|o| o.map(|(s, v)| (Some(s), v)))
        } else {
            self.feed.delete(key).map(|o| o.map(|v| (None, v)))
        };
        if self.closed {
            assert_eq!(r, Err(WriteError::Closed), "delete after close");
            return;
        }
        match self.state.get(key).cloned() {
            None => assert_eq!(r, Ok(None), "delete of absent key {key}"),
            Some((v, _)) => {
                let seq = self.emit(EvKind::Delete, key, None, Some(v.clone()));
                let want_seq = with_seq.then_some(seq);
                assert_eq!(r, Ok(Some((want_seq, v))), "delete {key}");
            }
        }
    }

    fn delete_prefix(&mut self, prefix: &str) {
        let h0 = self.head;
        let r = self.feed.delete_prefix(prefix);
        if self.closed {
            assert_eq!(r, Err(WriteError::Closed), "delete_prefix after close");
            return;
        }
        let mut removed: BTreeMap<S, S> = self
            .state
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        let n = removed.len() as u64;
        assert_eq!(r, Ok(n as usize), "delete_prefix {prefix:?}");
        assert_eq!(self.feed.head(), h0 + n, "one Delete event per removed key");
        if n == 0 {
            return;
        }
        for k in removed.keys() {
            self.state.remove(k);
        }
        self.head = h0 + n;
        // Which key got which seq is the implementation's choice: learn it from
        // a fresh unfiltered watcher (what is overwritten already can never be read).
        let cap = self.cfg.cap as u64;
        let mut oracle = self.feed.watch(WatchOptions::all().from(h0 + 1));
        let mut first = h0 + 1;
        if n > cap {
            let resume = h0 + n + 1 - cap;
            assert_eq!(
                oracle.try_next().err(),
                Some(RecvError::Lagged(Lagged {
                    missed: resume - (h0 + 1),
                    resume_at: resume
                })),
                "from(seq) older than the ring: Lagged at once with the exact count"
            );
            first = resume;
        }
        let lost_seqs: Vec<u64> = (h0 + 1..first).collect();
        self.log.extend(lost_seqs.iter().map(|_| None));
        for seq in first..=h0 + n {
            let got = Got::of(oracle.try_next());
            let Got::Event(Event::Change(c)) = got else {
                panic!("delete_prefix oracle: expected the Delete at {seq}, got {got:?}")
            };
            let e = Ev::from_change(&c);
            let old = removed.remove(&e.key);
            assert!(
                e.seq == seq
                    && e.kind == EvKind::Delete
                    && e.value.is_none()
                    && old.is_some()
                    && e.old == old,
                "delete_prefix {prefix:?}: unexpected event {e:?} at {seq} (old {old:?})"
            );
            self.log.push(Some(e));
        }
        assert!(matches!(Got::of(oracle.try_next()), Got::Empty));
        if !lost_seqs.is_empty() {
            self.lost.push((lost_seqs, removed));
        }
    }

    fn too_large(&mut self, long_key: bool, cas: bool) {
        let (key, val) = if long_key {
            (LONG_KEY, VALS[0])
        } else {
            (KEYS[0], LONG_VAL)
        };
        if !self.cfg.limits {
            // No limits configured: an ordinary write.
            if cas {
                self.cas(key, CasVer::Right, val)
            } else {
                self.put(key, val)
            }
            return;
        }
        let before_head = self.feed.head();
        let before = (self.feed.get(KEYS[0]), self.feed.get(LONG_KEY));
        let err = if cas {
            let ver = self.state.get(key).map_or(0, |c| c.1);
            match self
                .feed
                .compare_and_put(key.to_string(), ver, val.to_string())
            {
                Err(CasError::Write(e)) => e,
                other => panic!("oversize cas returned {other:?}"),
            }
        } else {
            self.feed
                .put(key.to_string(), val.to_string())
                .expect_err("oversize put must fail")
        };
        let want = if self.closed {
            WriteError::Closed
        } else if long_key {
            WriteError::TooLarge {
                what: "key",
                len: LONG_KEY.len(),
                max: MAX_KEY,
            }
        } else {
            WriteError::TooLarge {
                what: "value",
                len: LONG_VAL.len(),
                max: MAX_VAL,
            }
        };
        assert_eq!(err, want);
        assert_eq!(
            self.feed.head(),
            before_head,
            "a refused write changes nothing"
        );
        assert_eq!((self.feed.get(KEYS[0]), self.feed.get(LONG_KEY)), before);
    }

    fn get(&self, key: &str) {
        let want = self.state.get(key).cloned();
        assert_eq!(self.feed.get(key), want, "get {key}");
        assert_eq!(
            self.feed.get_with(key, |v, ver| (v.clone(), ver)),
            want,
            "get_with {key}"
        );
    }

    fn filter_of(spec: &WSpec) -> Filter<S> {
        let mut f = Filter::all().kinds(spec.kinds);
        for k in &spec.keys {
            f = f.key(KEYS[*k as usize].to_string());
        }
        for p in &spec.prefixes {
            f = f.prefix(PREFIXES[*p as usize]);
        }
        for p in &spec.preds {
            f = f.pred(pred(*p));
        }
        f
    }

    fn snapshot_state(&self, filter: &Filter<S>) -> MState {
        let pending = if filter.kinds & K_CREATE != 0 {
            self.state
                .iter()
                .filter(|(k, _)| filter.key_matches(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        MState {
            cursor: self.head + 1,
            pending,
            marker: Some((self.head, self.head)),
            closed_self: false,
        }
    }

    fn watch(&mut self, spec: &WSpec) {
        if self.watchers.len() >= 8 {
            return;
        }
        let filter = Self::filter_of(spec);
        let (start, st) = match spec.start {
            StartSpec::Now => (
                Start::Now,
                MState {
                    cursor: self.head + 1,
                    pending: BTreeMap::new(),
                    marker: None,
                    closed_self: false,
                },
            ),
            StartSpec::Back(n) | StartSpec::Ahead(n) => {
                let seq = match spec.start {
                    StartSpec::Back(_) => self.head.saturating_sub(n as u64),
                    _ => self.head + 1 + n as u64,
                };
                (
                    Start::From(seq),
                    MState {
                        cursor: seq.max(1),
                        pending: BTreeMap::new(),
                        marker: None,
                        closed_self: false,
                    },
                )
            }
            StartSpec::Snapshot => (Start::Snapshot, self.snapshot_state(&filter)),
        };
        self.next_name += 1;
        let name = format!("w{}:{:?}", self.next_name, spec);
        let (w, rec) = Recording::watch(name.clone(), &self.feed, filter.clone(), start);
        if start != Start::Snapshot {
            assert_eq!(w.cursor(), st.cursor, "{name}: cursor at creation");
        }
        self.watchers.push(MW {
            name,
            w,
            st,
            filter,
            rec,
        });
    }

    fn world(&self) -> World<'_> {
        World {
            log: &self.log,
            head: self.head,
            cap: self.cfg.cap as u64,
            closed: self.closed,
        }
    }

    /// Compare one real read of watcher `wi` with the model and record it.
    fn check(&mut self, wi: usize, got: Got, how: &str) {
        let world = World {
            log: &self.log,
            head: self.head,
            cap: self.cfg.cap as u64,
            closed: self.closed,
        };
        let mw = &mut self.watchers[wi];
        let exp = world.expect(&mut mw.st, &mw.filter);
        let ctx = || format!("{} ({how}): expected {exp:?}, got {got:?}", mw.name);
        match (&exp, &got) {
            (Exp::Create, Got::Event(Event::Change(c))) => {
                let e = Ev::from_change(c);
                let want = mw.st.pending.remove(&e.key);
                assert!(
                    e.kind == EvKind::Create
                        && e.old.is_none()
                        && want.is_some()
                        && want == e.value.clone().map(|v| (v, e.seq)),
                    "{}: snapshot item {e:?} not one of the live keys (wanted {want:?})",
                    ctx()
                );
            }
            (Exp::Marker(a, c), Got::Event(Event::SnapshotDone { at, consistent_at })) => {
                assert_eq!((a, c), (at, consistent_at), "{}", ctx());
            }
            (Exp::Event(e), Got::Event(Event::Change(c))) => {
                assert_eq!(&Ev::from_change(c), e, "{}", ctx());
            }
            (Exp::Lagged(m, r), Got::Lagged(l)) => {
                assert_eq!(
                    (l.missed, l.resume_at),
                    (*m, *r),
                    "{}: Lagged must be exact (missed = resume_at - cursor)",
                    ctx()
                );
            }
            (Exp::Empty, Got::Empty) | (Exp::Closed, Got::Closed) => {}
            _ => panic!("{}", ctx()),
        }
        match &got {
            Got::Event(e) => mw.rec.push_event(e),
            Got::Lagged(l) => mw.rec.push_lagged(l),
            _ => {}
        }
        mw.rec.end_cursor = mw.w.cursor();
    }

    fn check_cursor(&self, wi: usize) {
        let mw = &self.watchers[wi];
        assert_eq!(mw.w.cursor(), mw.st.cursor, "{}: cursor", mw.name);
        assert_eq!(
            mw.w.lag(),
            (self.head + 1).saturating_sub(mw.st.cursor),
            "{}: lag()",
            mw.name
        );
    }

    fn peek(&self, wi: usize) -> Exp {
        let mw = &self.watchers[wi];
        let mut st = mw.st.clone();
        self.world().expect(&mut st, &mw.filter)
    }

    fn read(&mut self, wi: usize, how: ReadHow, count: u8) {
        for _ in 0..count {
            match how {
                ReadHow::Try => {
                    let got = Got::of(self.watchers[wi].w.try_next());
                    self.check(wi, got, "try_next");
                }
                ReadHow::Timeout0 => {
                    let got = Got::of(self.watchers[wi].w.next_timeout(Duration::ZERO));
                    self.check(wi, got, "next_timeout(0)");
                }
                ReadHow::Iter => {
                    // Blocking: only when the model says something is there.
                    if matches!(self.peek(wi), Exp::Empty) {
                        return;
                    }
                    let got = match self.watchers[wi].w.next() {
                        Some(Ok(e)) => Got::Event(e),
                        Some(Err(l)) => Got::Lagged(l),
                        None => Got::Closed,
                    };
                    self.check(wi, got, "Iterator::next");
                }
                ReadHow::Batch(max) => {
                    let max = max as usize;
                    let mut buf = vec![];
                    let r = self.watchers[wi].w.next_batch(&mut buf, max);
                    match r {
                        Ok(n) => {
                            assert_eq!(n, buf.len(), "next_batch returns how many it appended");
                            assert!(n <= max);
                            for e in buf {
                                self.check(wi, Got::Event(e), "next_batch");
                            }
                            if n < max {
                                // It stopped because nothing more was there (or closed).
                                match self.peek(wi) {
                                    // A lap after appended items is left for the next call
                                    // (the watcher's cursor stays before the lap).
                                    Exp::Lagged(..) if n > 0 => {}
                                    Exp::Empty | Exp::Closed => {
                                        let exp = self.peek(wi);
                                        let got = if matches!(exp, Exp::Empty) { Got::Empty } else { Got::Closed };
                                        self.check(wi, got, "next_batch end");
                                    }
                                    other => panic!(
                                        "{}: next_batch returned {n} < {max} but the model has {other:?}",
                                        self.watchers[wi].name
                                    ),
                                }
                            }
                        }
                        Err(e) => {
                            assert!(buf.is_empty(), "an error only when nothing was appended");
                            let got = match e {
                                RecvError::Lagged(l) => Got::Lagged(l),
                                RecvError::Closed => Got::Closed,
                            };
                            self.check(wi, got, "next_batch");
                        }
                    }
                }
            }
            self.check_cursor(wi);
        }
    }

    fn finish(&mut self, wi: usize) -> MW {
        let mut mw = self.watchers.remove(wi);
        mw.rec.end_cursor = mw.w.cursor();
        self.finished.push(mw.rec.clone());
        mw
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put(k, v) => self.put(KEYS[*k as usize], VALS[*v as usize]),
            Op::Cas(k, c, v) => self.cas(KEYS[*k as usize], *c, VALS[*v as usize]),
            Op::Delete(k, s) => self.delete(KEYS[*k as usize], *s),
            Op::DeletePrefix(p) => self.delete_prefix(PREFIXES[*p as usize]),
            Op::Get(k) => self.get(KEYS[*k as usize]),
            Op::TooLarge { long_key, cas } => self.too_large(*long_key, *cas),
            Op::Watch(spec) => self.watch(spec),
            Op::Read(w, how, n) if !self.watchers.is_empty() => {
                let wi = *w as usize % self.watchers.len();
                self.read(wi, *how, *n)
            }
            Op::Drop(w) if !self.watchers.is_empty() => {
                let wi = *w as usize % self.watchers.len();
                drop(self.finish(wi));
            }
            Op::Resnapshot(w) if !self.watchers.is_empty() => {
                let wi = *w as usize % self.watchers.len();
                let mut mw = self.finish(wi);
                mw.w.resnapshot();
                let closed_self = mw.st.closed_self;
                mw.st = self.snapshot_state(&mw.filter);
                mw.st.closed_self = closed_self;
                mw.rec = Recording::new(
                    format!("{}+resnapshot", mw.name),
                    mw.filter.clone(),
                    Start::Snapshot,
                    0,
                );
                self.watchers.insert(wi, mw);
            }
            Op::CloseWatcher(w) if !self.watchers.is_empty() => {
                let wi = *w as usize % self.watchers.len();
                let mw = &mut self.watchers[wi];
                mw.w.closer().close();
                mw.st.closed_self = true;
            }
            Op::Read(..) | Op::Drop(_) | Op::Resnapshot(_) | Op::CloseWatcher(_) => {}
        }
        assert_eq!(self.feed.head(), self.head, "head after {op:?}");
        assert_eq!(self.feed.is_closed(), self.closed);
    }

    fn close(&mut self) {
        self.feed.close();
        self.closed = true;
    }

    /// Drain every watcher, compare the whole store, and run the checkers.
    fn finish_all(mut self) {
        for wi in 0..self.watchers.len() {
            for _ in 0..10_000 {
                let got = Got::of(self.watchers[wi].w.try_next());
                let stop = matches!(got, Got::Empty | Got::Closed);
                self.check(wi, got, "final drain");
                self.check_cursor(wi);
                if stop {
                    break;
                }
            }
            let mw = &mut self.watchers[wi];
            if !mw.st.closed_self {
                mw.rec.drained_to = Some(self.head);
            }
        }
        while !self.watchers.is_empty() {
            self.finish(0);
        }
        for k in KEYS.iter().chain([&LONG_KEY]) {
            self.get(k);
        }
        // The model's log, with the never-readable delete_prefix events filled in.
        let mut log = self.log.clone();
        for (seqs, keys) in &self.lost {
            assert_eq!(seqs.len(), keys.len());
            for (s, (k, old)) in seqs.iter().zip(keys) {
                log[*s as usize - 1] = Some(Ev {
                    seq: *s,
                    kind: EvKind::Delete,
                    key: k.clone(),
                    value: None,
                    old: Some(old.clone()),
                });
            }
        }
        let log = Log::from_events(log.into_iter().map(|e| e.expect("filled")), self.head)
            .expect("model log is consistent");
        assert_eq!(log.state_at(self.head), self.state);
        for rec in &self.finished {
            check_all(rec, Some(&log))
                .unwrap_or_else(|e| panic!("checker disagrees with a model-verified run: {e}"));
        }
    }
}

fn run(cfg: Cfg, ops: &[Op], close_at: Option<usize>) {
    let mut m = Model::new(cfg);
    for (i, op) in ops.iter().enumerate() {
        if close_at == Some(i) {
            m.close();
        }
        m.apply(op);
    }
    m.finish_all();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        .. ProptestConfig::default()
    })]

    /// Random operation sequences: the feed's results and every watcher's
    /// exact output equal the sequential model's.
    #[test]
    fn feed_matches_sequential_model(
        cfg in cfg_strategy(),
        ops in prop::collection::vec(op_strategy(), 1..120),
        close_at in prop::option::weighted(0.3, 0usize..150),
    ) {
        run(cfg, &ops, close_at);
    }

    /// Many writes, few reads, tiny rings: laps all the time.
    #[test]
    fn lapping_watchers_match_model(
        cap in prop::sample::select(vec![2usize, 4, 8]),
        ops in prop::collection::vec(
            prop_oneof![
                6 => (0..6u8, 0..4u8).prop_map(|(k, v)| Op::Put(k, v)),
                2 => (0..6u8, any::<bool>()).prop_map(|(k, s)| Op::Delete(k, s)),
                1 => (0..5u8).prop_map(Op::DeletePrefix),
                2 => wspec_strategy().prop_map(Op::Watch),
                2 => (any::<u8>(), (1u8..4).prop_map(ReadHow::Batch), 1u8..3).prop_map(|(w, r, n)| Op::Read(w, r, n)),
                2 => (any::<u8>(), 1u8..3).prop_map(|(w, n)| Op::Read(w, ReadHow::Try, n)),
            ],
            1..150,
        ),
    ) {
        run(Cfg { cap, suppress: false, limits: false }, &ops, None);
    }
}

// ---------------------------------------------------------------------------
// Targeted tests
// ---------------------------------------------------------------------------

fn feed(cap: usize) -> Feed<S, S> {
    Feed::with_config(Config::new().capacity(cap)).unwrap()
}

fn change(r: Result<Option<kvfeed::EventRef<'_, S, S>>, RecvError>) -> Ev<S, S> {
    match Got::of(r) {
        Got::Event(Event::Change(c)) => Ev::from_change(&c),
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn capacity_must_be_a_power_of_two_at_least_two() {
    for bad in [0usize, 1, 3, 6, 12, 100, 65535] {
        let r = Feed::<S, S>::with_config(Config::new().capacity(bad));
        assert_eq!(r.err(), Some(ConfigError::Capacity(bad)), "capacity {bad}");
    }
    for good in [2usize, 4, 8, 1024, 1 << 20] {
        assert_eq!(feed(good).capacity(), good);
    }
    assert_eq!(Feed::<S, S>::new().capacity(), 65536);
}

#[test]
fn too_large_key_or_value_changes_nothing() {
    let f: Feed<S, S> =
        Feed::with_config(Config::new().capacity(8).max_key_len(3).max_value_len(5)).unwrap();
    let mut w = f.watch(WatchOptions::all());
    let s1 = f.put("abc".into(), "12345".into()).unwrap(); // exactly at both limits
    assert_eq!(s1, 1);
    let too_key = WriteError::TooLarge {
        what: "key",
        len: 4,
        max: 3,
    };
    let too_val = WriteError::TooLarge {
        what: "value",
        len: 6,
        max: 5,
    };
    assert_eq!(f.put("abcd".into(), "1".into()), Err(too_key.clone()));
    assert_eq!(f.put("abc".into(), "123456".into()), Err(too_val.clone()));
    assert_eq!(
        f.put("abcd".into(), "123456".into()),
        Err(too_key.clone()),
        "key checked first"
    );
    assert_eq!(
        f.compare_and_put("abcd".into(), 0, "1".into()),
        Err(CasError::Write(too_key))
    );
    assert_eq!(
        f.compare_and_put("abc".into(), s1, "123456".into()),
        Err(CasError::Write(too_val))
    );
    assert_eq!(f.head(), 1);
    assert_eq!(f.get("abc"), Some(("12345".into(), 1)));
    assert_eq!(f.get("abcd"), None);
    assert_eq!(change(w.try_next()).seq, 1);
    assert!(
        w.try_next().unwrap().is_none(),
        "refused writes emit nothing"
    );
}

#[test]
fn watch_from_overwritten_seq_lags_at_once_with_exact_count() {
    let f = feed(8);
    for i in 0..20 {
        f.put(format!("k{}", i % 3), format!("v{i}")).unwrap();
    }
    assert_eq!(f.head(), 20);
    // Retained: 13..=20.
    for (from, missed) in [(0u64, 12u64), (1, 12), (5, 8), (12, 1)] {
        let mut w = f.watch(WatchOptions::all().from(from));
        assert_eq!(
            w.try_next().err(),
            Some(RecvError::Lagged(Lagged {
                missed,
                resume_at: 13
            })),
            "from({from})"
        );
        assert_eq!(w.cursor(), 13);
        for s in 13..=20 {
            assert_eq!(change(w.try_next()).seq, s);
        }
        assert!(w.try_next().unwrap().is_none());
    }
    let mut w = f.watch(WatchOptions::all().from(13));
    for s in 13..=20 {
        let e = change(w.try_next());
        assert_eq!((e.seq, e.value), (s, Some(format!("v{}", s - 1))));
    }
    // A filtered watcher gets the same Lagged (it counts every overwritten seq).
    let mut w = f.watch(WatchOptions::all().key("k0".to_string()).from(3));
    assert_eq!(
        w.try_next().err(),
        Some(RecvError::Lagged(Lagged {
            missed: 10,
            resume_at: 13
        }))
    );
    // k0 is written at seqs 1, 4, 7, ..., 19.
    assert_eq!(change(w.try_next()).seq, 13);
    assert_eq!(change(w.try_next()).seq, 16);
    assert_eq!(change(w.try_next()).seq, 19);
    assert!(w.try_next().unwrap().is_none());
    // From a future seq: nothing until it is written.
    let mut w = f.watch(WatchOptions::all().from(23));
    for i in 0..4 {
        f.put("z".into(), format!("{i}")).unwrap();
    }
    assert_eq!(change(w.try_next()).seq, 23);
    assert_eq!(change(w.try_next()).seq, 24);
    assert!(w.try_next().unwrap().is_none());
}

#[test]
fn lapped_watcher_is_told_exactly_and_continues() {
    let f = feed(4);
    let mut w = f.watch(WatchOptions::all());
    let mut only_b = f.watch(WatchOptions::all().key("b".to_string()));
    f.put("a".into(), "1".into()).unwrap(); // 1
    assert_eq!(change(w.try_next()).seq, 1);
    assert!(only_b.try_next().unwrap().is_none(), "passes over seq 1");
    assert_eq!(only_b.cursor(), 2);
    for i in 0..9 {
        f.put("a".into(), format!("{i}")).unwrap(); // 2..=10
    }
    // Retained 7..=10; w is at 2.
    assert_eq!(w.lag(), 9);
    assert_eq!(
        w.try_next().err(),
        Some(RecvError::Lagged(Lagged {
            missed: 5,
            resume_at: 7
        }))
    );
    assert_eq!(
        only_b.try_next().err(),
        Some(RecvError::Lagged(Lagged {
            missed: 5,
            resume_at: 7
        }))
    );
    for s in 7..=10 {
        let e = change(w.try_next());
        assert_eq!((e.seq, e.kind), (s, EvKind::Update));
    }
    assert!(only_b.try_next().unwrap().is_none());
    // next_batch reports a lap as an error when it has appended nothing.
    for i in 0..6 {
        f.put("b".into(), format!("{i}")).unwrap(); // 11..=16
    }
    let mut buf = Vec::new();
    assert_eq!(
        w.next_batch(&mut buf, 10),
        Err(RecvError::Lagged(Lagged {
            missed: 2,
            resume_at: 13
        }))
    );
    assert!(buf.is_empty());
    assert_eq!(w.next_batch(&mut buf, 10), Ok(4));
    let seqs: Vec<u64> = buf.iter().map(|e| e.as_change().unwrap().seq).collect();
    assert_eq!(seqs, vec![13, 14, 15, 16]);
}

#[test]
fn close_drains_then_closed() {
    let f = feed(8);
    let mut w = f.watch(WatchOptions::all());
    let mut wb = f.watch(WatchOptions::all());
    let mut lapped = f.watch(WatchOptions::all());
    let mut it = f.watch(WatchOptions::all().prefix("k"));
    for i in 0..3 {
        f.put(format!("k{i}"), "v".into()).unwrap();
    }
    assert_eq!(change(w.try_next()).seq, 1);
    for i in 0..8 {
        f.put("x".into(), format!("{i}")).unwrap(); // 4..=11; lapped's 1..=3 are gone
    }
    f.close();
    assert!(f.is_closed());
    assert_eq!(f.put("k0".into(), "w".into()), Err(WriteError::Closed));
    assert_eq!(
        f.compare_and_put("k0".into(), 1, "w".into()),
        Err(CasError::Write(WriteError::Closed))
    );
    assert_eq!(f.delete("k0"), Err(WriteError::Closed));
    assert_eq!(f.delete("absent"), Err(WriteError::Closed));
    assert_eq!(f.delete_prefix("k"), Err(WriteError::Closed));
    assert_eq!(f.head(), 11);
    assert_eq!(
        f.get("k0"),
        Some(("v".into(), 1)),
        "reads still work after close"
    );
    // w drains 2..=11 (only 4..=11 retained: 2, 3 were overwritten), then Closed, and stays Closed.
    assert_eq!(
        w.try_next().err(),
        Some(RecvError::Lagged(Lagged {
            missed: 2,
            resume_at: 4
        }))
    );
    for s in 4..=11 {
        assert_eq!(change(w.try_next()).seq, s);
    }
    assert_eq!(w.try_next().err(), Some(RecvError::Closed));
    assert_eq!(w.try_next().err(), Some(RecvError::Closed));
    assert_eq!(
        w.next_timeout(Duration::from_secs(30)).err(),
        Some(RecvError::Closed),
        "does not block"
    );
    let mut buf = Vec::new();
    assert_eq!(
        wb.next_batch(&mut buf, 3),
        Err(RecvError::Lagged(Lagged {
            missed: 3,
            resume_at: 4
        }))
    );
    assert_eq!(wb.next_batch(&mut buf, 5), Ok(5));
    assert_eq!(wb.next_batch(&mut buf, 5), Ok(3), "the rest, then the end");
    assert_eq!(wb.next_batch(&mut buf, 5), Err(RecvError::Closed));
    assert_eq!(buf.len(), 8);
    assert!(matches!(
        lapped.next(),
        Some(Err(Lagged {
            missed: 3,
            resume_at: 4
        }))
    ));
    assert_eq!(
        lapped.by_ref().count(),
        8,
        "blocking iterator drains then ends"
    );
    assert!(lapped.next().is_none());
    // The prefix watcher: its three events were overwritten.
    assert!(matches!(
        it.next(),
        Some(Err(Lagged {
            missed: 3,
            resume_at: 4
        }))
    ));
    assert!(it.next().is_none());
    // New watchers on a closed feed.
    let mut now = f.watch(WatchOptions::all());
    assert_eq!(now.try_next().err(), Some(RecvError::Closed));
    let mut old = f.watch(WatchOptions::all().from(10));
    assert_eq!(change(old.try_next()).seq, 10);
    assert_eq!(change(old.try_next()).seq, 11);
    assert_eq!(old.try_next().err(), Some(RecvError::Closed));
    let mut snap = f.watch(WatchOptions::all().snapshot());
    let mut n = 0;
    loop {
        match Got::of(snap.try_next()) {
            Got::Event(Event::Change(c)) => {
                assert_eq!(c.kind, kvfeed::Kind::Create);
                n += 1;
            }
            Got::Event(Event::SnapshotDone { at, consistent_at }) => {
                assert_eq!((at, consistent_at), (11, 11));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(n, 4, "k0, k1, k2, x");
    assert_eq!(snap.try_next().err(), Some(RecvError::Closed));
}

#[test]
fn watch_closer_closes_one_watcher() {
    let f = feed(8);
    let mut a = f.watch(WatchOptions::all());
    let mut b = f.watch(WatchOptions::all());
    f.put("k".into(), "v".into()).unwrap();
    a.closer().close();
    assert_eq!(
        a.try_next().err(),
        Some(RecvError::Closed),
        "closed at once, even with events left"
    );
    assert_eq!(change(b.try_next()).seq, 1, "other watchers are unaffected");
    assert_eq!(f.put("k".into(), "w".into()), Ok(2), "so is the feed");
}

#[test]
fn suppress_unchanged_put_emits_nothing() {
    for suppress in [false, true] {
        let mut c = Config::new().capacity(8);
        if suppress {
            c = c.suppress_unchanged();
        }
        let f: Feed<S, S> = Feed::with_config(c).unwrap();
        let mut w = f.watch(WatchOptions::all());
        assert_eq!(f.put("k".into(), "v".into()), Ok(1));
        let r = f.put("k".into(), "v".into());
        if suppress {
            assert_eq!(r, Ok(1), "unchanged: returns the current version");
            assert_eq!(f.head(), 1);
        } else {
            assert_eq!(r, Ok(2));
        }
        let next = f.head() + 1;
        assert_eq!(
            f.put("k".into(), "w".into()),
            Ok(next),
            "a changed value is written"
        );
        f.delete("k").unwrap();
        assert_eq!(
            f.put("k".into(), "w".into()),
            Ok(next + 2),
            "same value after a delete is a Create"
        );
        let kinds: Vec<EvKind> = std::iter::from_fn(|| {
            w.try_next()
                .unwrap()
                .map(|e| EvKind::from_kind(e.as_change().unwrap().kind()))
        })
        .collect();
        let mut want = vec![EvKind::Create];
        if !suppress {
            want.push(EvKind::Update);
        }
        want.extend([EvKind::Update, EvKind::Delete, EvKind::Create]);
        assert_eq!(kinds, want);
    }
}

#[test]
fn compare_and_put_versions() {
    let f = feed(16);
    assert_eq!(
        f.compare_and_put("k".into(), 5, "x".into()),
        Err(CasError::Conflict { current_version: 0 })
    );
    let v1 = f.compare_and_put("k".into(), 0, "a".into()).unwrap();
    assert_eq!(v1, 1);
    assert_eq!(
        f.compare_and_put("k".into(), 0, "b".into()),
        Err(CasError::Conflict { current_version: 1 })
    );
    assert_eq!(
        f.compare_and_put("k".into(), 2, "b".into()),
        Err(CasError::Conflict { current_version: 1 })
    );
    assert_eq!(f.head(), 1, "a conflict uses no seq");
    let v2 = f.compare_and_put("k".into(), v1, "b".into()).unwrap();
    assert_eq!((v2, f.get("k")), (2, Some(("b".into(), 2))));
    f.delete("k").unwrap();
    assert_eq!(
        f.compare_and_put("k".into(), v2, "c".into()),
        Err(CasError::Conflict { current_version: 0 })
    );
    assert_eq!(f.compare_and_put("k".into(), 0, "c".into()), Ok(4));
}

#[test]
fn snapshot_then_live() {
    let f = feed(8);
    f.put("a".into(), "1".into()).unwrap(); // 1
    f.put("b".into(), "1".into()).unwrap(); // 2
    f.put("a".into(), "2".into()).unwrap(); // 3
    f.put("c".into(), "1".into()).unwrap(); // 4
    f.delete("c").unwrap(); // 5
    let mut w = f.watch(WatchOptions::all().snapshot());
    let mut only_a = f.watch(WatchOptions::all().key("a".to_string()).snapshot());
    let mut no_create = f.watch(WatchOptions::all().kinds(kvfeed::Kinds::UPDATE).snapshot());
    f.put("b".into(), "2".into()).unwrap(); // 6
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let e = change(w.try_next());
        assert!(e.kind == EvKind::Create && e.old.is_none());
        got.insert(e.key, (e.value.unwrap(), e.seq));
    }
    let want: BTreeMap<S, (S, u64)> =
        [("a".into(), ("2".into(), 3)), ("b".into(), ("1".into(), 2))].into();
    assert_eq!(got, want);
    assert!(matches!(
        Got::of(w.try_next()),
        Got::Event(Event::SnapshotDone {
            at: 5,
            consistent_at: 5
        })
    ));
    assert_eq!(change(w.try_next()).seq, 6);
    assert!(w.try_next().unwrap().is_none());
    let e = change(only_a.try_next());
    assert_eq!((e.key.as_str(), e.seq), ("a", 3));
    assert!(matches!(
        Got::of(only_a.try_next()),
        Got::Event(Event::SnapshotDone {
            at: 5,
            consistent_at: 5
        })
    ));
    assert!(only_a.try_next().unwrap().is_none());
    // Without Create in the mask: no snapshot items, but the marker and live updates.
    assert!(matches!(
        Got::of(no_create.try_next()),
        Got::Event(Event::SnapshotDone {
            at: 5,
            consistent_at: 5
        })
    ));
    assert_eq!(change(no_create.try_next()).seq, 6);
}
