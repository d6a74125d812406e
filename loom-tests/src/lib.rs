//! Helpers for kvfeed's loom models (`tests/*.rs`).
//!
//! The models themselves are compiled only with `--cfg kvfeed_loom` (see
//! `run.sh`): under that cfg kvfeed's `sync` facade is loom's, so a model runs
//! the crate's real protocol code (write, ring, notify, snapshot) through its
//! public API, and loom explores the interleavings and weak-memory outcomes of
//! every atomic it touches.
//!
//! What these helpers add:
//!
//! * [`Val`], a value whose contents live in a loom `UnsafeCell` written on the
//!   writer's thread: reading it on another thread without happens-before is a
//!   loom *causality violation*. That is how a torn or stale event becomes
//!   visible to loom (plain memory, such as a node's fields, is invisible to it).
//!   It also counts its drops in a [`Drops`] table, so a model can assert that
//!   every value was dropped exactly once, and that a value a reader still holds
//!   was not dropped under it.
//! * [`model`] / [`model_with`], which run a model under a preemption bound
//!   (the environment's `LOOM_MAX_PREEMPTIONS`, or the model's own default
//!   when unset) and print how many executions it explored and how long it
//!   took.
//! * [`TestFeed`] (from [`feed`]), a feed handle that is leaked rather than
//!   dropped while a failed execution unwinds, so loom's report is not lost to
//!   an abort.
//! * [`Rec`], an owned record of what a watcher received, and [`recv`] /
//!   [`rec`], which take it from a borrowed event on the reading thread;
//!   [`drain`], [`full_log`] and [`replay`] to read and check a whole log.
//!
//! The helpers build without the cfg (so `cargo clippy` sees them), but loom's
//! types only work inside a model. One test here is not a loom model:
//! `tests/sanitize_smoke.rs` (compiled only *without* the cfg) is a small
//! concurrent workload on the real reclamation and table for Miri and
//! ThreadSanitizer (`scripts/sanitize.sh`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvfeed::{Config, EventRef, Feed, Kind, Lagged, RecvError, WatchOptions, Watcher};

/// Drop accounting for the values of one model execution: every instance of
/// every value (the original and each clone) is registered when created and
/// marked when dropped. Plain std types: bookkeeping that loom should not
/// explore (loom runs every thread on one OS thread, so the mutex is never
/// contended).
#[derive(Clone)]
pub struct Drops(Arc<Mutex<DropBooks>>);

struct DropBooks {
    /// Value ids `0..ids` are expected to have been created.
    ids: usize,
    /// Per instance: its value id and whether it was dropped.
    instances: Vec<(usize, bool)>,
}

impl Drops {
    /// Accounting for value ids `0..ids`.
    pub fn new(ids: usize) -> Self {
        Drops(Arc::new(Mutex::new(DropBooks {
            ids,
            instances: Vec::new(),
        })))
    }

    fn books(&self) -> std::sync::MutexGuard<'_, DropBooks> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, id: usize) -> usize {
        let mut b = self.books();
        b.instances.push((id, false));
        b.instances.len() - 1
    }

    fn dropped(&self, instance: usize) -> bool {
        self.books().instances[instance].1
    }

    fn drop_instance(&self, instance: usize) {
        let mut b = self.books();
        let (id, dropped) = &mut b.instances[instance];
        assert!(!*dropped, "an instance of value {id} was dropped twice");
        *dropped = true;
    }

    /// How many instances of value `id` are still alive.
    pub fn live(&self, id: usize) -> usize {
        self.books()
            .instances
            .iter()
            .filter(|&&(i, d)| i == id && !d)
            .count()
    }

    /// Panics unless every value `0..ids` was created and every instance of
    /// every value was dropped (exactly once: a second drop panics at once).
    pub fn assert_all_dropped(&self) {
        let b = self.books();
        let mut live = vec![0usize; b.ids];
        let mut seen = vec![false; b.ids];
        for &(id, dropped) in &b.instances {
            seen[id] = true;
            if !dropped {
                live[id] += 1;
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "a value was never created: {seen:?}"
        );
        assert!(
            live.iter().all(|&l| l == 0),
            "values leaked (instances still alive per value id): {live:?}"
        );
    }
}

/// A model's value: an id, a body in a loom `UnsafeCell` (see the crate doc),
/// and its own entry in a [`Drops`] table. Cloning reads the body (so a clone
/// of a torn value is caught too) and makes a new instance.
pub struct Val {
    id: usize,
    instance: usize,
    body: loom::cell::UnsafeCell<usize>,
    drops: Drops,
}

// SAFETY: `body` is written only by `Val::new` (creation) and only read after
// that, so shared references never race; loom checks that every read
// happens-after the creation.
unsafe impl Sync for Val {}

impl Val {
    /// Value `id`, created (and its body written) on the calling thread.
    pub fn new(id: usize, drops: &Drops) -> Self {
        Val {
            id,
            instance: drops.register(id),
            body: loom::cell::UnsafeCell::new(id),
            drops: drops.clone(),
        }
    }

    /// Reads the value on the calling thread and returns its id. Panics if
    /// this instance was already dropped (freed under a reader), and loom
    /// panics if this read does not happen-after the value's creation (a
    /// torn or stale read).
    pub fn read(&self) -> usize {
        assert!(
            !self.drops.dropped(self.instance),
            "value {} read after it was dropped (freed under a reader)",
            self.id
        );
        // SAFETY: `body` is never written after creation (see `Sync` above).
        let body = self.body.with(|p| unsafe { *p });
        assert_eq!(body, self.id, "value {}: torn body {body}", self.id);
        self.id
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        Val::new(self.read(), &self.drops)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.drops.drop_instance(self.instance);
    }
}

/// Runs a few empty guard cycles (a lookup of a key the models never use), so
/// that the loom reclamation stand-in, which frees retired records and runs
/// deferred releases only when no guard is alive, catches up: a deferred
/// release may retire a record that the next quiescent point frees.
pub fn quiesce(feed: &TestFeed) {
    for _ in 0..3 {
        feed.get_with(&u8::MAX, |_, _| ());
    }
}

/// What a watcher received, copied out on the reading thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rec {
    /// A change: value ids stand for the values.
    Change {
        /// Its seq.
        seq: u64,
        /// Create, Update or Delete.
        kind: Kind,
        /// The key.
        key: u8,
        /// The new value's id.
        value: Option<usize>,
        /// The previous value's id.
        old: Option<usize>,
    },
    /// The end of a snapshot.
    SnapshotDone {
        /// Head when the scan began.
        at: u64,
        /// Head when the scan ended.
        consistent_at: u64,
    },
    /// A lap.
    Lagged(Lagged),
}

impl Rec {
    /// The change's seq, if this is a change.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Rec::Change { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// Copies a borrowed event, reading its values on this thread (see [`Val::read`]).
pub fn rec(ev: &EventRef<'_, u8, Val>) -> Rec {
    match ev {
        EventRef::Change(c) => Rec::Change {
            seq: c.seq(),
            kind: c.kind(),
            key: *c.key(),
            value: c.value().map(Val::read),
            old: c.old().map(Val::read),
        },
        EventRef::SnapshotDone { at, consistent_at } => Rec::SnapshotDone {
            at: *at,
            consistent_at: *consistent_at,
        },
    }
}

/// Turns one read's result into a record: `Some(rec)` for an event or a lap,
/// `None` when nothing is published yet. Panics on `Closed`.
pub fn recv(r: Result<Option<EventRef<'_, u8, Val>>, RecvError>) -> Option<Rec> {
    match r {
        Ok(Some(ev)) => Some(rec(&ev)),
        Ok(None) => None,
        Err(RecvError::Lagged(l)) => Some(Rec::Lagged(l)),
        Err(RecvError::Closed) => panic!("unexpected Closed"),
    }
}

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`
/// (or `default_preemptions` when it is unset), printing the number of
/// executions explored and the time taken.
pub fn model<F>(name: &str, default_preemptions: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    model_with(name, default_preemptions, None, f)
}

/// [`model`], also raising loom's branch limit per execution (its default
/// is 1,000; a watcher's spin before parking, `kvfeed::SPINS` reads, needs
/// more).
pub fn model_with<F>(name: &str, default_preemptions: usize, max_branches: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(default_preemptions);
    }
    if let Some(max) = max_branches {
        builder.max_branches = builder.max_branches.max(max);
    }
    let bound = builder.preemption_bound;
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f()
    });
    eprintln!(
        "loom model {name}: {} executions, preemption bound {bound:?}, {:.1?}",
        executions.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// The feed every model uses (`u8` keys, [`Val`] values), behind a handle
/// that is leaked instead of dropped while a model panics. Dropping a feed
/// runs loom operations (the handle count, closing, releasing the ring), and
/// loom cannot run them while it unwinds a failed execution: a panic inside
/// that unwinding aborts the whole test binary and hides loom's report.
pub struct TestFeed(std::mem::ManuallyDrop<Feed<u8, Val>>);

impl Clone for TestFeed {
    fn clone(&self) -> Self {
        TestFeed(std::mem::ManuallyDrop::new((*self.0).clone()))
    }
}

impl std::ops::Deref for TestFeed {
    type Target = Feed<u8, Val>;
    fn deref(&self) -> &Feed<u8, Val> {
        &self.0
    }
}

impl Drop for TestFeed {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: dropped once, here; `self.0` is not used afterwards.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.0) }
        }
    }
}

/// A feed with a ring of `capacity` events.
pub fn feed(capacity: usize) -> TestFeed {
    TestFeed(std::mem::ManuallyDrop::new(
        Feed::with_config(Config::new().capacity(capacity)).expect("a valid capacity"),
    ))
}

/// Reads with `try_next` until nothing is published, appending to `out`.
/// Panics when that takes more than 32 reads: the models write a handful of
/// events, so a watcher that keeps returning something (say, `Lagged` after
/// `Lagged`) is broken, and the panic names it instead of loom's "maximum
/// number of branches".
pub fn drain(w: &mut Watcher<u8, Val>, out: &mut Vec<Rec>) {
    for _ in 0..32 {
        match recv(w.try_next()) {
            Some(r) => out.push(r),
            None => return,
        }
    }
    panic!(
        "the watcher never runs dry (cursor {}): {out:?}",
        w.cursor()
    );
}

/// The whole log, read (after every writer has been joined) by a fresh
/// watcher from seq 1. Asserts that it is complete: no lap, and the cursor
/// ends at `head + 1`, so every seq up to the head was delivered or was a
/// skip marker passed over silently (no gap). Returns the changes, in seq order.
pub fn full_log(feed: &TestFeed) -> Vec<Rec> {
    let mut w = feed.watch(WatchOptions::all().from(1));
    let mut out = Vec::new();
    drain(&mut w, &mut out);
    assert!(
        out.iter().all(|r| matches!(r, Rec::Change { .. })),
        "the full log must fit in the ring (no lap, no marker): {out:?}"
    );
    assert_eq!(
        w.cursor(),
        feed.head() + 1,
        "gap: the log stops before the head (a claimed seq never published?): {out:?}"
    );
    assert_increasing(&out);
    out
}

/// Panics unless the changes in `recs` have strictly increasing seqs.
pub fn assert_increasing(recs: &[Rec]) {
    let seqs: Vec<u64> = recs.iter().filter_map(Rec::seq).collect();
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "seqs not strictly increasing: {recs:?}"
    );
}

/// A key's state: its value's id and its version.
pub type State = BTreeMap<u8, (usize, u64)>;

/// Replays changes (in seq order) per key, checking guarantee 2: a `Create`
/// finds the key absent, an `Update` or `Delete` finds it present, and each
/// event's `old` is the previous event's `value`. Returns the final state.
pub fn replay(start: State, changes: &[Rec]) -> State {
    let mut state = start;
    for r in changes {
        let Rec::Change {
            seq,
            kind,
            key,
            value,
            old,
        } = r.clone()
        else {
            panic!("replay: not a change: {r:?}");
        };
        let before = state.get(&key).map(|&(v, _)| v);
        match kind {
            Kind::Create => assert!(
                before.is_none() && old.is_none(),
                "Create of a present key, or with an old value: {r:?} in {changes:?}"
            ),
            Kind::Update | Kind::Delete => assert!(
                before.is_some() && old == before,
                "old does not chain to the previous value ({before:?}): {r:?} in {changes:?}"
            ),
        }
        match (kind, value) {
            (Kind::Delete, None) => {
                state.remove(&key);
            }
            (Kind::Create | Kind::Update, Some(v)) => {
                state.insert(key, (v, seq));
            }
            _ => panic!("value does not match the kind: {r:?}"),
        }
    }
    state
}

/// The store's state as `get` reports it, for keys `0..keys`.
pub fn map_state(feed: &TestFeed, keys: u8) -> State {
    (0..keys)
        .filter_map(|k| feed.get_with(&k, |v, version| (k, (v.read(), version))))
        .collect()
}
