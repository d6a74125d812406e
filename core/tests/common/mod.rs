//! Shared checker code for the kvfeed integration tests (`model.rs`, `stress.rs`,
//! `checkers.rs`).
//!
//! A [`Recording`] is what one watcher actually received (owned copies of the
//! events, the snapshot marker and every `Lagged`), together with the filter and
//! start it was created with. The `check_*` functions compare a recording with
//! what SPEC.md ("Data model" and "Guarantees") promises and return the first
//! violation as a human-readable `Err(String)`:
//!
//! * [`check_order`]      — guarantee 1 (strictly increasing seqs, lag ranges move forward);
//! * [`check_chain`]      — guarantee 2 (per key: `old` == previous `value`, kind vs presence);
//! * [`check_accounting`] — guarantee 3 (+5): against the authoritative [`Log`], every seq in the
//!   watcher's range is delivered (when it matches), passed over (when it does not match / is a
//!   skip marker) or inside exactly one `Lagged` range `[resume_at - missed, resume_at)`;
//! * [`check_snapshot`]   — guarantee 6 (one `Create` per live key with `seq == version`, no stale
//!   value, materialized view == the store's state at `consistent_at` and at every later point).
//!
//! `checkers.rs` proves that each checker fails on a deliberately broken recording.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use kvfeed::{Event, Kinds, Lagged, RecvError, WatchOptions, Watcher};

/// Kind bits, as in `kvfeed::Kinds`.
pub const K_CREATE: u8 = 1;
pub const K_UPDATE: u8 = 2;
pub const K_DELETE: u8 = 4;
pub const K_ALL: u8 = 7;

/// Key types the checkers work with (`String`, `Vec<u8>`, ...).
pub trait Key: Clone + Ord + Hash + fmt::Debug + AsRef<[u8]> + Send + Sync + 'static {}
impl<T: Clone + Ord + Hash + fmt::Debug + AsRef<[u8]> + Send + Sync + 'static> Key for T {}

/// Value types the checkers work with.
pub trait Val: Clone + PartialEq + fmt::Debug + Send + Sync + 'static {}
impl<T: Clone + PartialEq + fmt::Debug + Send + Sync + 'static> Val for T {}

// ---------------------------------------------------------------------------
// Owned events
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvKind {
    Create,
    Update,
    Delete,
}

impl EvKind {
    pub fn mask(self) -> u8 {
        match self {
            EvKind::Create => K_CREATE,
            EvKind::Update => K_UPDATE,
            EvKind::Delete => K_DELETE,
        }
    }

    pub fn from_kind(k: kvfeed::Kind) -> Self {
        match k {
            kvfeed::Kind::Create => EvKind::Create,
            kvfeed::Kind::Update => EvKind::Update,
            kvfeed::Kind::Delete => EvKind::Delete,
        }
    }
}

/// One change event, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Ev<K, V> {
    pub seq: u64,
    pub kind: EvKind,
    pub key: K,
    pub value: Option<V>,
    pub old: Option<V>,
}

impl<K: Clone, V: Clone> Ev<K, V> {
    pub fn from_change(c: &kvfeed::Change<K, V>) -> Self {
        Ev {
            seq: c.seq,
            kind: EvKind::from_kind(c.kind),
            key: c.key.clone(),
            value: c.value.clone(),
            old: c.old.clone(),
        }
    }
}

/// One thing a watcher handed out.
#[derive(Clone, Debug, PartialEq)]
pub enum Item<K, V> {
    Change(Ev<K, V>),
    SnapshotDone { at: u64, consistent_at: u64 },
    Lagged { missed: u64, resume_at: u64 },
}

impl<K: Clone, V: Clone> Item<K, V> {
    pub fn from_event(e: &Event<K, V>) -> Self {
        match e {
            Event::Change(c) => Item::Change(Ev::from_change(c)),
            Event::SnapshotDone { at, consistent_at } => Item::SnapshotDone {
                at: *at,
                consistent_at: *consistent_at,
            },
        }
    }

    pub fn from_lagged(l: &Lagged) -> Self {
        Item::Lagged {
            missed: l.missed,
            resume_at: l.resume_at,
        }
    }
}

// ---------------------------------------------------------------------------
// Filters and starts
// ---------------------------------------------------------------------------

/// A named key predicate (for `WatchOptions::matching`).
#[derive(Clone)]
pub struct Pred<K> {
    pub name: String,
    pub f: Arc<dyn Fn(&K) -> bool + Send + Sync>,
}

impl<K> Pred<K> {
    pub fn new(name: &str, f: impl Fn(&K) -> bool + Send + Sync + 'static) -> Self {
        Pred {
            name: name.to_string(),
            f: Arc::new(f),
        }
    }
}

impl<K> fmt::Debug for Pred<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pred:{}", self.name)
    }
}

/// The filter a watcher was created with: keys, prefixes and predicates are OR-ed
/// (none of them = every key), the kind mask is AND-ed.
#[derive(Clone, Debug)]
pub struct Filter<K> {
    pub keys: Vec<K>,
    pub prefixes: Vec<Vec<u8>>,
    pub preds: Vec<Pred<K>>,
    pub kinds: u8,
}

impl<K: Key> Filter<K> {
    pub fn all() -> Self {
        Filter {
            keys: Vec::new(),
            prefixes: Vec::new(),
            preds: Vec::new(),
            kinds: K_ALL,
        }
    }
    pub fn key(mut self, k: K) -> Self {
        self.keys.push(k);
        self
    }
    pub fn prefix(mut self, p: impl AsRef<[u8]>) -> Self {
        self.prefixes.push(p.as_ref().to_vec());
        self
    }
    pub fn pred(mut self, p: Pred<K>) -> Self {
        self.preds.push(p);
        self
    }
    pub fn kinds(mut self, kinds: u8) -> Self {
        self.kinds = kinds;
        self
    }

    pub fn has_key_filter(&self) -> bool {
        !(self.keys.is_empty() && self.prefixes.is_empty() && self.preds.is_empty())
    }

    pub fn key_matches(&self, k: &K) -> bool {
        if !self.has_key_filter() {
            return true;
        }
        self.keys.iter().any(|x| x == k)
            || self
                .prefixes
                .iter()
                .any(|p| k.as_ref().starts_with(p.as_slice()))
            || self.preds.iter().any(|p| (p.f)(k))
    }

    pub fn matches(&self, k: &K, kind: EvKind) -> bool {
        self.kinds & kind.mask() != 0 && self.key_matches(k)
    }

    /// The same filter as `WatchOptions` (start: now).
    pub fn options(&self) -> WatchOptions<K> {
        let mut o = WatchOptions::all();
        match self.keys.len() {
            0 => {}
            1 => o = o.key(self.keys[0].clone()),
            _ => o = o.keys(self.keys.clone()),
        }
        for p in &self.prefixes {
            o = o.prefix(p.clone());
        }
        for p in &self.preds {
            let f = p.f.clone();
            o = o.matching(move |k: &K| f(k));
        }
        if self.kinds != K_ALL {
            o = o.kinds(kinds_of(self.kinds));
        }
        o
    }
}

/// `Kinds` from our bit mask (must be non-empty).
pub fn kinds_of(bits: u8) -> Kinds {
    assert!(bits != 0 && bits & !K_ALL == 0, "bad kind mask {bits}");
    let k = Kinds::from_bits_truncate(bits);
    assert_eq!(k.bits(), bits);
    k
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// `WatchOptions::all()` default: cursor = head + 1 at creation.
    Now,
    /// `.from(seq)`.
    From(u64),
    /// `.snapshot()`.
    Snapshot,
}

impl Start {
    pub fn apply<K: Key>(self, o: WatchOptions<K>) -> WatchOptions<K> {
        match self {
            Start::Now => o,
            Start::From(s) => o.from(s),
            Start::Snapshot => o.snapshot(),
        }
    }
}

// ---------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------

/// What one watcher received.
#[derive(Clone, Debug)]
pub struct Recording<K, V> {
    pub name: String,
    pub filter: Filter<K>,
    pub start: Start,
    /// The watcher's cursor right after creation (`Now`: head + 1 at creation,
    /// `From(s)`: max(s, 1)). Not used for `Snapshot`.
    pub start_cursor: u64,
    pub items: Vec<Item<K, V>>,
    /// `Watcher::cursor()` when the recording ended.
    pub end_cursor: u64,
    /// `Some(h)`: the watcher read until it was told there was nothing more
    /// (`Ok(None)` / `Closed`) after the last write; `h` is the final head, so
    /// every seq up to `h` must be accounted for.
    pub drained_to: Option<u64>,
}

/// What a read returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Item,
    Lagged,
    Empty,
    Closed,
}

impl<K: Key, V: Val> Recording<K, V> {
    pub fn new(
        name: impl Into<String>,
        filter: Filter<K>,
        start: Start,
        start_cursor: u64,
    ) -> Self {
        Recording {
            name: name.into(),
            filter,
            start,
            start_cursor,
            items: Vec::new(),
            end_cursor: start_cursor,
            drained_to: None,
        }
    }

    /// Create the watcher for `filter`/`start` on `feed` and an empty recording for it.
    pub fn watch(
        name: impl Into<String>,
        feed: &kvfeed::Feed<K, V>,
        filter: Filter<K>,
        start: Start,
    ) -> (Watcher<K, V>, Self) {
        let w = feed.watch(start.apply(filter.options()));
        let c = w.cursor();
        (w, Recording::new(name, filter, start, c))
    }

    pub fn push_event(&mut self, e: &Event<K, V>) {
        self.items.push(Item::from_event(e));
    }

    pub fn push_lagged(&mut self, l: &Lagged) {
        self.items.push(Item::from_lagged(l));
    }

    /// Record one result of the blocking iterator.
    pub fn push_result(&mut self, r: &Result<Event<K, V>, Lagged>) {
        match r {
            Ok(e) => self.push_event(e),
            Err(l) => self.push_lagged(l),
        }
    }

    /// One `try_next`, recorded.
    pub fn try_read(&mut self, w: &mut Watcher<K, V>) -> Step {
        let step = match w.try_next() {
            Ok(Some(e)) => {
                let owned = e.to_owned();
                self.push_event(&owned);
                Step::Item
            }
            Ok(None) => Step::Empty,
            Err(RecvError::Lagged(l)) => {
                self.push_lagged(&l);
                Step::Lagged
            }
            Err(RecvError::Closed) => Step::Closed,
        };
        self.end_cursor = w.cursor();
        step
    }

    /// `try_next` until `Ok(None)` or `Closed`; returns the final step.
    pub fn try_drain(&mut self, w: &mut Watcher<K, V>) -> Step {
        loop {
            match self.try_read(w) {
                Step::Item | Step::Lagged => continue,
                s => return s,
            }
        }
    }

    /// Blocking iteration until the feed (or the watcher) is closed.
    pub fn read_until_closed(&mut self, w: &mut Watcher<K, V>) {
        for r in w.by_ref() {
            self.push_result(&r);
        }
        self.end_cursor = w.cursor();
    }

    pub fn changes(&self) -> impl Iterator<Item = &Ev<K, V>> {
        self.items.iter().filter_map(|i| match i {
            Item::Change(e) => Some(e),
            _ => None,
        })
    }

    pub fn lag_count(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Lagged { .. }))
            .count()
    }

    pub fn missed_total(&self) -> u64 {
        self.items
            .iter()
            .map(|i| match i {
                Item::Lagged { missed, .. } => *missed,
                _ => 0,
            })
            .sum()
    }

    pub fn marker(&self) -> Option<(usize, u64, u64)> {
        self.items.iter().enumerate().find_map(|(i, it)| match it {
            Item::SnapshotDone { at, consistent_at } => Some((i, *at, *consistent_at)),
            _ => None,
        })
    }

    /// Short description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "watcher {:?} (filter {:?}, start {:?}, start_cursor {}, end_cursor {}, drained_to {:?}, {} items, {} lags)",
            self.name,
            self.filter,
            self.start,
            self.start_cursor,
            self.end_cursor,
            self.drained_to,
            self.items.len(),
            self.lag_count()
        )
    }
}

// ---------------------------------------------------------------------------
// The authoritative log
// ---------------------------------------------------------------------------

/// Every event of a run by seq, plus the final head. A seq in `1..=head` that is
/// not in `events` is a skip marker.
#[derive(Clone, Debug)]
pub struct Log<K, V> {
    pub events: BTreeMap<u64, Ev<K, V>>,
    pub head: u64,
}

impl<K: Key, V: Val> Log<K, V> {
    pub fn from_events(
        events: impl IntoIterator<Item = Ev<K, V>>,
        head: u64,
    ) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for e in events {
            if e.seq == 0 || e.seq > head {
                return Err(format!("log event {e:?} outside 1..={head}"));
            }
            let s = e.seq;
            if map.insert(s, e).is_some() {
                return Err(format!("log has seq {s} twice"));
            }
        }
        let log = Log { events: map, head };
        log.check_consistent()?;
        Ok(log)
    }

    /// The log as seen by an unfiltered watcher that started at seq 1, never
    /// lagged and read everything up to `head`.
    pub fn from_unfiltered(rec: &Recording<K, V>, head: u64) -> Result<Self, String> {
        if rec.filter.has_key_filter() || rec.filter.kinds != K_ALL {
            return Err(format!("log watcher is filtered: {}", rec.describe()));
        }
        if rec.start == Start::Snapshot || rec.start_cursor > 1 {
            return Err(format!(
                "log watcher did not start at seq 1: {}",
                rec.describe()
            ));
        }
        let mut evs = Vec::new();
        let mut last = 0;
        for it in &rec.items {
            match it {
                Item::Change(e) => {
                    if e.seq <= last {
                        return Err(format!("log watcher out of order at {e:?} (after {last})"));
                    }
                    last = e.seq;
                    evs.push(e.clone());
                }
                other => {
                    return Err(format!(
                        "log watcher received {other:?}; it must never lag: {}",
                        rec.describe()
                    ))
                }
            }
        }
        Self::from_events(evs, head)
    }

    /// The log itself obeys the data model: Create only when absent, Update and
    /// Delete only when present, `old` == the previous value.
    pub fn check_consistent(&self) -> Result<(), String> {
        let mut state: BTreeMap<K, V> = BTreeMap::new();
        for e in self.events.values() {
            check_shape(e)?;
            let cur = state.get(&e.key);
            match e.kind {
                EvKind::Create if cur.is_some() => {
                    return Err(format!(
                        "log: Create of present key: {e:?} (current {cur:?})"
                    ))
                }
                EvKind::Update | EvKind::Delete if cur != e.old.as_ref() => {
                    return Err(format!("log: {e:?} but current value is {cur:?}"))
                }
                _ => {}
            }
            match &e.value {
                Some(v) => state.insert(e.key.clone(), v.clone()),
                None => state.remove(&e.key),
            };
        }
        Ok(())
    }

    /// State (value, version) after applying every event with seq <= `seq`.
    pub fn state_at(&self, seq: u64) -> BTreeMap<K, (V, u64)> {
        let mut c = StateCursor::new(self);
        c.advance_to(seq);
        c.state
    }

    /// The number of skip markers in `1..=head`.
    pub fn skip_markers(&self) -> u64 {
        self.head - self.events.len() as u64
    }

    /// Per-key list of seqs.
    pub fn seqs_by_key(&self) -> BTreeMap<K, Vec<u64>> {
        let mut m: BTreeMap<K, Vec<u64>> = BTreeMap::new();
        for e in self.events.values() {
            m.entry(e.key.clone()).or_default().push(e.seq);
        }
        m
    }
}

/// Replays a log incrementally.
pub struct StateCursor<'a, K, V> {
    log: &'a Log<K, V>,
    pub pos: u64,
    pub state: BTreeMap<K, (V, u64)>,
}

impl<'a, K: Key, V: Val> StateCursor<'a, K, V> {
    pub fn new(log: &'a Log<K, V>) -> Self {
        StateCursor {
            log,
            pos: 0,
            state: BTreeMap::new(),
        }
    }

    /// Apply every event with seq in (pos, seq].
    pub fn advance_to(&mut self, seq: u64) {
        if seq <= self.pos {
            return;
        }
        for e in self.log.events.range(self.pos + 1..=seq).map(|(_, e)| e) {
            match &e.value {
                Some(v) => {
                    self.state.insert(e.key.clone(), (v.clone(), e.seq));
                }
                None => {
                    self.state.remove(&e.key);
                }
            }
        }
        self.pos = seq;
    }
}

// ---------------------------------------------------------------------------
// Checkers
// ---------------------------------------------------------------------------

/// Run every checker that applies (`log` = None: only the log-free ones).
pub fn check_all<K: Key, V: Val>(
    rec: &Recording<K, V>,
    log: Option<&Log<K, V>>,
) -> Result<(), String> {
    let ctx = |r: Result<(), String>, what: &str| {
        r.map_err(|e| format!("[{what}] {e}\n  {}", rec.describe()))
    };
    ctx(check_order(rec), "order")?;
    ctx(check_chain(rec), "chain")?;
    if let Some(log) = log {
        ctx(check_accounting(rec, log), "accounting")?;
        ctx(check_snapshot(rec, log), "snapshot")?;
    }
    Ok(())
}

/// Event shape: Create has a value and no old, Update both, Delete only old.
pub fn check_shape<K: fmt::Debug, V: fmt::Debug>(e: &Ev<K, V>) -> Result<(), String> {
    let ok = match e.kind {
        EvKind::Create => e.value.is_some() && e.old.is_none(),
        EvKind::Update => e.value.is_some() && e.old.is_some(),
        EvKind::Delete => e.value.is_none() && e.old.is_some(),
    };
    if ok && e.seq > 0 {
        Ok(())
    } else {
        Err(format!("malformed event {e:?}"))
    }
}

/// Split a snapshot recording into (snapshot creates, marker index, at, consistent_at).
/// `Ok(None)` when the marker never came.
#[allow(clippy::type_complexity)]
fn snapshot_parts<K: Key, V: Val>(
    rec: &Recording<K, V>,
) -> Result<Option<(Vec<&Ev<K, V>>, usize, u64, u64)>, String> {
    let mut creates = Vec::new();
    for (i, it) in rec.items.iter().enumerate() {
        match it {
            Item::Change(e) => creates.push(e),
            Item::SnapshotDone { at, consistent_at } => {
                if at > consistent_at {
                    return Err(format!(
                        "SnapshotDone at {at} > consistent_at {consistent_at}"
                    ));
                }
                return Ok(Some((creates, i, *at, *consistent_at)));
            }
            Item::Lagged { .. } => {
                return Err(format!("{it:?} before the snapshot marker (item {i})"))
            }
        }
    }
    Ok(None)
}

/// Guarantee 1: strictly increasing seqs (from the marker on for snapshot
/// watchers, all > `at`); a `Lagged` range starts no earlier than the position
/// after the last delivered event and moves the position forward (`missed` >= 1).
pub fn check_order<K: Key, V: Val>(rec: &Recording<K, V>) -> Result<(), String> {
    let (first, mut floor) = if rec.start == Start::Snapshot {
        match snapshot_parts(rec)? {
            Some((_, i, at, _)) => (i + 1, at + 1),
            None => return Ok(()),
        }
    } else {
        (0, rec.start_cursor.max(1))
    };
    let mut last: Option<u64> = None;
    for (i, it) in rec.items.iter().enumerate().skip(first) {
        let pos = floor.max(last.map_or(0, |l| l + 1));
        match it {
            Item::Change(e) => {
                if let Some(l) = last {
                    if e.seq <= l {
                        return Err(format!("item {i}: seq {} after seq {l}: {e:?}", e.seq));
                    }
                }
                if e.seq < floor {
                    return Err(format!(
                        "item {i}: seq {} below the watcher's position {floor}: {e:?}",
                        e.seq
                    ));
                }
                last = Some(e.seq);
            }
            Item::Lagged { missed, resume_at } => {
                if *missed == 0 {
                    return Err(format!("item {i}: Lagged with missed == 0 ({it:?})"));
                }
                let from = resume_at
                    .checked_sub(*missed)
                    .ok_or_else(|| format!("item {i}: {it:?}: missed > resume_at"))?;
                if from < pos {
                    return Err(format!(
                        "item {i}: {it:?} covers [{from}, {resume_at}) but the watcher was already at {pos}"
                    ));
                }
                floor = *resume_at;
            }
            Item::SnapshotDone { .. } => return Err(format!("item {i}: unexpected {it:?}")),
        }
    }
    let pos = floor.max(last.map_or(0, |l| l + 1));
    if rec.end_cursor < pos {
        return Err(format!(
            "end cursor {} is behind the position {pos}",
            rec.end_cursor
        ));
    }
    Ok(())
}

/// Guarantee 2 as seen by one watcher: every event is well-formed; for every key
/// (when the kind mask is ALL, i.e. the watcher sees all of a key's events) each
/// event's `old` equals the previous event's `value`, Create only when absent,
/// Update/Delete only when present. Knowledge about a key starts at its snapshot
/// `Create` or its first event and is forgotten at every `Lagged`.
pub fn check_chain<K: Key, V: Val>(rec: &Recording<K, V>) -> Result<(), String> {
    let chain = rec.filter.kinds == K_ALL;
    let mut known: BTreeMap<K, Option<V>> = BTreeMap::new();
    let mut first = 0;
    if rec.start == Start::Snapshot {
        let (creates, i) = match snapshot_parts(rec)? {
            Some((c, i, _, _)) => (c, i + 1),
            None => (rec.changes().collect(), rec.items.len()),
        };
        for e in creates {
            if e.kind != EvKind::Create {
                return Err(format!("snapshot item is not a Create: {e:?}"));
            }
            check_shape(e)?;
            if known.insert(e.key.clone(), e.value.clone()).is_some() {
                return Err(format!("snapshot delivered key {:?} twice", e.key));
            }
        }
        first = i;
    }
    for (i, it) in rec.items.iter().enumerate().skip(first) {
        match it {
            Item::Change(e) => {
                check_shape(e).map_err(|m| format!("item {i}: {m}"))?;
                if !chain {
                    continue;
                }
                if let Some(cur) = known.get(&e.key) {
                    match (e.kind, cur) {
                        (EvKind::Create, Some(v)) => {
                            return Err(format!(
                                "item {i}: Create of key {:?} which holds {v:?}: {e:?}",
                                e.key
                            ))
                        }
                        (EvKind::Update | EvKind::Delete, None) => {
                            return Err(format!("item {i}: {:?} of absent key: {e:?}", e.kind))
                        }
                        (EvKind::Update | EvKind::Delete, Some(v)) if e.old.as_ref() != Some(v) => {
                            return Err(format!(
                                "item {i}: old {:?} but the key's previous value was {v:?}: {e:?}",
                                e.old
                            ))
                        }
                        _ => {}
                    }
                }
                known.insert(e.key.clone(), e.value.clone());
            }
            Item::Lagged { .. } => known.clear(),
            Item::SnapshotDone { .. } => return Err(format!("item {i}: unexpected {it:?}")),
        }
    }
    Ok(())
}

/// Guarantee 3 (no silent loss) against the authoritative log: walking the
/// watcher's range, every seq is delivered (exactly the log's event, when it
/// matches the filter and — for snapshot watchers — is newer than the version
/// the snapshot delivered for its key), passed over (it does not match, or it is
/// a skip marker), or inside exactly one `Lagged` range `[resume_at - missed,
/// resume_at)`. The range ends at `end_cursor`, or at the final head + 1 when
/// the watcher was drained.
pub fn check_accounting<K: Key, V: Val>(
    rec: &Recording<K, V>,
    log: &Log<K, V>,
) -> Result<(), String> {
    let mut snap_versions: BTreeMap<K, u64> = BTreeMap::new();
    let (first, mut pos) = if rec.start == Start::Snapshot {
        match snapshot_parts(rec)? {
            Some((creates, i, at, _)) => {
                for e in creates {
                    snap_versions.insert(e.key.clone(), e.seq);
                }
                (i + 1, at + 1)
            }
            None if rec.drained_to.is_some() => {
                return Err("snapshot watcher was drained but never got SnapshotDone".into())
            }
            None => return Ok(()),
        }
    } else {
        (0, rec.start_cursor.max(1))
    };
    let expected = |e: &Ev<K, V>| {
        rec.filter.matches(&e.key, e.kind)
            && !matches!(snap_versions.get(&e.key), Some(v) if e.seq <= *v)
    };
    let passed_over = |lo: u64, hi: u64| -> Result<(), String> {
        if lo >= hi {
            return Ok(());
        }
        if let Some((_, e)) = log.events.range(lo..hi).find(|(_, e)| expected(e)) {
            return Err(format!(
                "silent loss: seq {} {e:?} matches but was neither delivered nor inside a Lagged range (passed over [{lo}, {hi}))",
                e.seq
            ));
        }
        Ok(())
    };
    for (i, it) in rec.items.iter().enumerate().skip(first) {
        match it {
            Item::Change(ev) => {
                if ev.seq < pos {
                    return Err(format!(
                        "item {i}: {ev:?} is behind the position {pos} (duplicate or reordered)"
                    ));
                }
                passed_over(pos, ev.seq).map_err(|m| format!("item {i}: {m}"))?;
                match log.events.get(&ev.seq) {
                    None => return Err(format!("item {i}: delivered {ev:?} but seq {} is a skip marker or beyond head {}", ev.seq, log.head)),
                    Some(e) if e != ev => return Err(format!("item {i}: delivered {ev:?} but the log has {e:?}")),
                    Some(e) if !expected(e) => {
                        return Err(format!(
                            "item {i}: delivered {ev:?} which does not match the filter or was already reflected by the snapshot (version {:?})",
                            snap_versions.get(&e.key)
                        ))
                    }
                    Some(_) => {}
                }
                pos = ev.seq + 1;
            }
            Item::Lagged { missed, resume_at } => {
                let from = resume_at
                    .checked_sub(*missed)
                    .ok_or_else(|| format!("item {i}: {it:?}: missed > resume_at"))?;
                if from < pos || *missed == 0 {
                    return Err(format!("item {i}: {it:?} covers [{from}, {resume_at}) but the watcher was at {pos}"));
                }
                if *resume_at > log.head + 1 {
                    return Err(format!("item {i}: {it:?} resumes beyond head {}", log.head));
                }
                passed_over(pos, from).map_err(|m| format!("item {i} (before the lag): {m}"))?;
                pos = *resume_at;
            }
            Item::SnapshotDone { .. } => return Err(format!("item {i}: unexpected {it:?}")),
        }
    }
    if rec.end_cursor > log.head + 1 {
        // Started at a seq not written yet (`from(head + n)`): nothing to account.
        if rec.end_cursor == pos && rec.items.len() == first {
            return Ok(());
        }
        return Err(format!(
            "end cursor {} beyond head {} + 1",
            rec.end_cursor, log.head
        ));
    }
    let end = match rec.drained_to {
        Some(h) if h != log.head => {
            return Err(format!("drained to {h} but the log's head is {}", log.head))
        }
        Some(h) => h + 1,
        None => rec.end_cursor,
    };
    if end < pos {
        return Err(format!("recording ends at {end} behind the position {pos}"));
    }
    passed_over(pos, end).map_err(|m| format!("at the end: {m}"))?;
    Ok(())
}

/// Guarantee 6: snapshot items are one `Create` per key, each `seq == version`
/// of a value the key held at some point after `at` (not stale), with version
/// <= `consistent_at`; once everything up to `consistent_at` is applied, the
/// materialized view equals the log's state at `consistent_at` (restricted to
/// the filter), and after every later event the event's key agrees with the
/// log's state at that seq, and at the end the whole view agrees. View checks
/// stop at the first `Lagged` (an announced gap).
pub fn check_snapshot<K: Key, V: Val>(
    rec: &Recording<K, V>,
    log: &Log<K, V>,
) -> Result<(), String> {
    if rec.start != Start::Snapshot {
        return Ok(());
    }
    let Some((creates, marker, at, consistent_at)) = snapshot_parts(rec)? else {
        if rec.drained_to.is_some() {
            return Err("snapshot watcher was drained but never got SnapshotDone".into());
        }
        return Ok(());
    };
    if consistent_at > log.head {
        return Err(format!(
            "consistent_at {consistent_at} beyond head {}",
            log.head
        ));
    }
    let by_key = log.seqs_by_key();
    let mut view: BTreeMap<K, (V, u64)> = BTreeMap::new();
    for e in creates {
        if e.kind != EvKind::Create || e.old.is_some() {
            return Err(format!("snapshot item is not a plain Create: {e:?}"));
        }
        let Some(v) = e.value.clone() else {
            return Err(format!("snapshot Create without value: {e:?}"));
        };
        if !rec.filter.key_matches(&e.key) {
            return Err(format!("snapshot delivered non-matching key: {e:?}"));
        }
        if e.seq > consistent_at {
            return Err(format!(
                "snapshot {e:?}: version beyond consistent_at {consistent_at}"
            ));
        }
        match log.events.get(&e.seq) {
            Some(l)
                if l.key == e.key && l.kind != EvKind::Delete && l.value.as_ref() == Some(&v) => {}
            other => {
                return Err(format!(
                    "snapshot {e:?}: seq must be the key's version, log has {other:?} there"
                ))
            }
        }
        let seqs = &by_key[&e.key];
        let idx = seqs.binary_search(&e.seq).expect("seq is in the log");
        if let Some(next) = seqs.get(idx + 1) {
            if *next <= at {
                return Err(format!(
                    "snapshot {e:?} is stale: the key was written again at seq {next} <= at {at}"
                ));
            }
        }
        if view.insert(e.key.clone(), (v, e.seq)).is_some() {
            return Err(format!("snapshot delivered key {:?} twice", e.key));
        }
    }
    if rec.filter.kinds != K_ALL {
        return Ok(()); // a kind-masked view is not a materialized view
    }
    let restricted = |s: &BTreeMap<K, (V, u64)>| -> BTreeMap<K, (V, u64)> {
        s.iter()
            .filter(|(k, _)| rec.filter.key_matches(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let compare = |view: &BTreeMap<K, (V, u64)>,
                   truth: &BTreeMap<K, (V, u64)>,
                   at_seq: u64|
     -> Result<(), String> {
        let truth = restricted(truth);
        if *view != truth {
            let keys: BTreeSet<&K> = view.keys().chain(truth.keys()).collect();
            let diff: Vec<String> = keys
                .into_iter()
                .filter(|k| view.get(*k) != truth.get(*k))
                .map(|k| format!("{k:?}: view {:?} store {:?}", view.get(k), truth.get(k)))
                .collect();
            return Err(format!(
                "view differs from the store at seq {at_seq}: {}",
                diff.join("; ")
            ));
        }
        Ok(())
    };
    let mut auth = StateCursor::new(log);
    let mut consistent_checked = false;
    let mut pos = at + 1;
    for it in &rec.items[marker + 1..] {
        match it {
            Item::Change(e) => {
                if e.seq > consistent_at && !consistent_checked {
                    auth.advance_to(consistent_at);
                    compare(&view, &auth.state, consistent_at)?;
                    consistent_checked = true;
                }
                match &e.value {
                    Some(v) => view.insert(e.key.clone(), (v.clone(), e.seq)),
                    None => view.remove(&e.key),
                };
                if consistent_checked {
                    auth.advance_to(e.seq);
                    let truth = auth.state.get(&e.key);
                    if view.get(&e.key) != truth {
                        return Err(format!(
                            "after {e:?} the view has {:?} for the key, the store {truth:?}",
                            view.get(&e.key)
                        ));
                    }
                }
                pos = e.seq + 1;
            }
            Item::Lagged { .. } => return Ok(()),
            Item::SnapshotDone { .. } => return Err(format!("unexpected second {it:?}")),
        }
    }
    let end = rec.drained_to.map_or(rec.end_cursor, |h| h + 1).max(pos);
    if end > consistent_at + 1 {
        if !consistent_checked {
            auth.advance_to(consistent_at);
            compare(&view, &auth.state, consistent_at)?;
        }
        if end - 1 <= log.head {
            auth.advance_to(end - 1);
            compare(&view, &auth.state, end - 1)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Small deterministic RNG (no extra dependency)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
