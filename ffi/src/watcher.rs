//! Watchers: `kvfeed_watch_opts`, `kvfeed_event` and the watcher functions.
//!
//! A `kvfeed_watcher` is a `Box<WatcherInner>`:
//!
//! - `closer`: the core's `WatchCloser`, which is `Sync`; `kvfeed_watcher_close`
//!   uses only this field, through a shared borrow, from any thread.
//! - `state`: the core `Watcher` plus the last event handed to C, in an
//!   `UnsafeCell`. Only the thread that holds `busy` touches it.
//! - `busy`: set by `kvfeed_watcher_next` / `kvfeed_watcher_cursor` for the
//!   duration of the call (Acquire on entry, Release on exit, so consecutive
//!   calls from different threads are ordered). The header says "one thread at
//!   a time"; a second thread that breaks the rule gets `KVFEED_INVALID_ARG`
//!   instead of a data race.
//!
//! `kvfeed_event` points into `state.last` (or, for a batch, into
//! `state.batch`): owned `Change`s whose keys and values are `Bytes`, short
//! ones copied inline, long ones `Arc` clones of the ring's. They are replaced
//! on the next call, which is why event pointers are valid "until the next
//! call on that watcher"; `state.batch` is reserved before a batch is filled
//! so that no `Change` moves while the caller holds pointers into it.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kvfeed::{Change, EventRef, Kind, Kinds, RecvError, WatchCloser, WatchOptions, Watcher};

use crate::bytes::{borrow_bytes, c_ptr, kvfeed_bytes};
use crate::handle::{self, Opaque};
use crate::status::*;
use crate::store::{kvfeed_store, Store};
use crate::{Key, Val};

/// Event kind / kind-mask bit: the key was absent and is now set.
pub const KVFEED_KIND_CREATE: u32 = 1;
/// Event kind / kind-mask bit: the key's value was replaced.
pub const KVFEED_KIND_UPDATE: u32 = 2;
/// Event kind / kind-mask bit: the key was removed.
pub const KVFEED_KIND_DELETE: u32 = 4;
/// Event kind only: the end of a snapshot (`at`, `consistent_at` are set).
/// Accepted in a mask but never needed there: a snapshot watcher always
/// receives it.
pub const KVFEED_KIND_SNAPSHOT_DONE: u32 = 8;

const KIND_CHANGES: u32 = KVFEED_KIND_CREATE | KVFEED_KIND_UPDATE | KVFEED_KIND_DELETE;

/// Where a new watcher starts (`kvfeed_watch_opts.start`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kvfeed_start {
    /// The first event after the current head (the default).
    KVFEED_START_NOW = 0,
    /// At `from_seq` (0 counts as 1). A seq already overwritten gives
    /// `KVFEED_LAGGED` on the first `kvfeed_watcher_next`.
    KVFEED_START_FROM = 1,
    /// One Create per live matching key (seq = the key's version, any order),
    /// then a `KVFEED_KIND_SNAPSHOT_DONE` event, then live events with no gap
    /// and no duplicate. The Create items come only when `KVFEED_KIND_CREATE`
    /// is in the watcher's `kinds` mask (a zero mask includes it); with a mask
    /// such as `KVFEED_KIND_UPDATE | KVFEED_KIND_DELETE` the snapshot delivers
    /// just the `KVFEED_KIND_SNAPSHOT_DONE` marker, then live events.
    KVFEED_START_SNAPSHOT = 2,
}

/// What a watcher receives. A zero-initialised struct (or NULL) means every
/// key, every kind, starting now. The library reads it, and the arrays and
/// bytes it points to, during `kvfeed_watch_new` only.
///
/// Keys and prefixes are OR-ed (an event matches when its key equals one of
/// `keys` or starts with one of `prefixes`; with neither, every key matches),
/// then AND-ed with `kinds`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvfeed_watch_opts {
    /// `n_keys` exact keys (may be NULL when `n_keys` is 0).
    pub keys: *const kvfeed_bytes,
    /// Number of entries in `keys`.
    pub n_keys: usize,
    /// `n_prefixes` key prefixes (may be NULL when `n_prefixes` is 0).
    pub prefixes: *const kvfeed_bytes,
    /// Number of entries in `prefixes`.
    pub n_prefixes: usize,
    /// Mask of `KVFEED_KIND_CREATE | _UPDATE | _DELETE`; 0 means all. Any
    /// other bit, or `KVFEED_KIND_SNAPSHOT_DONE` alone, is `KVFEED_INVALID_ARG`.
    /// It applies to a snapshot's items too: they are Creates, delivered only
    /// when `KVFEED_KIND_CREATE` is in the mask.
    pub kinds: u32,
    /// A `kvfeed_start` value; anything else is `KVFEED_INVALID_ARG`.
    pub start: u32,
    /// The first seq to read, for `KVFEED_START_FROM` (ignored otherwise).
    pub from_seq: u64,
}

/// One event, filled by `kvfeed_watcher_next` (or one element of the array
/// filled by `kvfeed_watcher_next_batch`).
///
/// Lifetime: `key`, `value` and `old` point into memory owned by the watcher
/// (nothing to free); they stay valid until the next `kvfeed_watcher_next` or
/// `kvfeed_watcher_next_batch` on that watcher, whatever it returns, or until
/// `kvfeed_watcher_free`, whichever comes first (for a batch: every event of
/// the batch stays valid that long). Writes to the store and freeing the store do not affect them.
/// Copy what you keep. A zero-length byte string has a NULL pointer;
/// `has_value` / `has_old` tell an empty value from an absent one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvfeed_event {
    /// The event's sequence number (for a snapshot Create: the key's version;
    /// 0 for `KVFEED_KIND_SNAPSHOT_DONE` and on `KVFEED_LAGGED`).
    pub seq: u64,
    /// One `KVFEED_KIND_*` value (0 on `KVFEED_LAGGED`).
    pub kind: u32,
    /// The key (NULL when empty).
    pub key: *const u8,
    /// Length of `key`.
    pub key_len: usize,
    /// The new value (Create, Update); NULL when absent or empty.
    pub value: *const u8,
    /// Length of `value`.
    pub value_len: usize,
    /// Whether there is a new value (true for Create and Update).
    pub has_value: bool,
    /// The previous value (Update, Delete); NULL when absent or empty.
    pub old: *const u8,
    /// Length of `old`.
    pub old_len: usize,
    /// Whether there is a previous value (true for Update and Delete).
    pub has_old: bool,
    /// On `KVFEED_LAGGED`: how many sequence numbers were overwritten before
    /// this watcher read them (`resume_at` - the cursor before).
    pub missed: u64,
    /// On `KVFEED_LAGGED`: the seq the watcher continues from.
    pub resume_at: u64,
    /// For `KVFEED_KIND_SNAPSHOT_DONE`: the head when the snapshot scan began;
    /// live events follow from `at + 1`.
    pub at: u64,
    /// For `KVFEED_KIND_SNAPSHOT_DONE`: the head when the scan ended; once the
    /// events up to it are applied, the view equals the store.
    pub consistent_at: u64,
}

impl kvfeed_event {
    const EMPTY: kvfeed_event = kvfeed_event {
        seq: 0,
        kind: 0,
        key: std::ptr::null(),
        key_len: 0,
        value: std::ptr::null(),
        value_len: 0,
        has_value: false,
        old: std::ptr::null(),
        old_len: 0,
        has_old: false,
        missed: 0,
        resume_at: 0,
        at: 0,
        consistent_at: 0,
    };

    fn of_change(c: &Change<Key, Val>) -> Self {
        let value = c.value.as_deref();
        let old = c.old.as_deref();
        kvfeed_event {
            seq: c.seq,
            kind: match c.kind {
                Kind::Create => KVFEED_KIND_CREATE,
                Kind::Update => KVFEED_KIND_UPDATE,
                Kind::Delete => KVFEED_KIND_DELETE,
            },
            key: c_ptr(&c.key),
            key_len: c.key.len(),
            value: value.map_or(std::ptr::null(), c_ptr),
            value_len: value.map_or(0, <[u8]>::len),
            has_value: value.is_some(),
            old: old.map_or(std::ptr::null(), c_ptr),
            old_len: old.map_or(0, <[u8]>::len),
            has_old: old.is_some(),
            ..Self::EMPTY
        }
    }
}

/// A watcher: a cursor into a store's feed plus a filter. Opaque; created by
/// `kvfeed_watch_new`, destroyed by `kvfeed_watcher_free`.
///
/// Thread safety: used by one thread at a time (it may move between threads),
/// except `kvfeed_watcher_close` and `kvfeed_watcher_interrupt`, which any
/// thread may call at any time before `kvfeed_watcher_free`. A watcher stays
/// valid after its store is freed.
pub struct kvfeed_watcher {
    _private: [u8; 0],
}

/// What a `kvfeed_watcher*` points to.
pub(crate) struct WatcherInner {
    /// Wakes and closes the watcher; used from any thread.
    closer: WatchCloser,
    /// Set by `kvfeed_watcher_interrupt` (before the core interrupt), taken by
    /// the read whose wait it ends: tells that read's loop of timed waits
    /// "return TIMEOUT now" from "this slice of the wait ran out".
    interrupted: AtomicBool,
    /// True while a thread is inside `next` / `cursor` on this watcher.
    busy: AtomicBool,
    /// Touched only by the thread that set `busy` (see [`WatcherInner::enter`]).
    state: UnsafeCell<State>,
}

// SAFETY: `closer` and `interrupted` are Sync; `state` is only accessed by the one thread that
// holds `busy` (acquired with Acquire, released with Release), which makes
// every access to it exclusive and ordered; `busy` is atomic. The core's
// `Watcher` and `Change` are `Send`, so handing `state` from one thread to the
// next is fine.
unsafe impl Sync for WatcherInner {}

struct State {
    watcher: Watcher<Key, Val>,
    /// The event the C caller is looking at; `kvfeed_event` points into it.
    last: Option<Change<Key, Val>>,
    /// The events of the last batch, which the caller's array points into.
    /// Short keys and values live inside these `Change`s (see `Bytes`), so
    /// the vector is reserved before a batch is filled and never grows
    /// during it: no element moves while C holds pointers into it.
    batch: Vec<Change<Key, Val>>,
    /// A lap found while a batch was being filled after its first event,
    /// reported (once) by the next read.
    lagged: Option<(u64, u64)>,
}

impl State {
    /// Drops what the previous call handed out (its pointers become invalid).
    fn reset(&mut self) {
        self.last = None;
        self.batch.clear();
    }
}

impl Opaque for kvfeed_watcher {
    type Inner = WatcherInner;
}

/// Exclusive access to a watcher's state for the duration of one call.
struct Entered<'a>(&'a WatcherInner);

impl WatcherInner {
    /// Claims the watcher for this thread, or `KVFEED_INVALID_ARG` when
    /// another thread is inside a call on it.
    fn enter(&self) -> Step<Entered<'_>> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(KVFEED_INVALID_ARG);
        }
        Ok(Entered(self))
    }
}

impl Entered<'_> {
    fn state(&mut self) -> &mut State {
        // SAFETY: `self` exists only while `busy` is held by this thread (see
        // `enter` and `Drop`), so no other reference to `state` exists; the
        // returned borrow is tied to `&mut self`, so this call cannot hand out
        // two at once.
        unsafe { &mut *self.0.state.get() }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// Converts the C options into core options, validating everything first.
///
/// # Safety
///
/// `opts`' arrays are NULL or readable for their counts, and each
/// `kvfeed_bytes` in them is NULL or readable for its length.
unsafe fn watch_options(opts: &kvfeed_watch_opts, store: &Store) -> Step<WatchOptions<Key>> {
    /// Reads one of the arrays of byte strings.
    ///
    /// # Safety
    ///
    /// As `watch_options`.
    unsafe fn list<'a>(ptr: *const kvfeed_bytes, n: usize, max: usize) -> Step<Vec<&'a [u8]>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        handle::required(ptr)?;
        if n > isize::MAX as usize / std::mem::size_of::<kvfeed_bytes>() {
            return Err(KVFEED_INVALID_ARG);
        }
        // SAFETY: non-NULL, readable for `n` entries (caller's contract), and
        // `n * size_of` fits in isize (checked).
        let entries = unsafe { std::slice::from_raw_parts(ptr, n) };
        entries
            .iter()
            // SAFETY: each entry is NULL or readable for its length (caller's contract).
            .map(|b| unsafe { borrow_bytes(b.ptr, b.len, max) })
            .collect()
    }

    if opts.kinds & !(KIND_CHANGES | KVFEED_KIND_SNAPSHOT_DONE) != 0 {
        return Err(KVFEED_INVALID_ARG);
    }
    let kinds = match opts.kinds & KIND_CHANGES {
        0 if opts.kinds != 0 => return Err(KVFEED_INVALID_ARG),
        0 => Kinds::ALL,
        // The C bits are the core's bits (asserted in the tests).
        bits => Kinds::from_bits_truncate(bits as u8),
    };
    let start = match opts.start {
        0 => kvfeed_start::KVFEED_START_NOW,
        1 => kvfeed_start::KVFEED_START_FROM,
        2 => kvfeed_start::KVFEED_START_SNAPSHOT,
        _ => return Err(KVFEED_INVALID_ARG),
    };
    // SAFETY: forwarded from the caller.
    let keys = unsafe { list(opts.keys, opts.n_keys, store.max_key) }?;
    // SAFETY: forwarded from the caller.
    let prefixes = unsafe { list(opts.prefixes, opts.n_prefixes, store.max_key) }?;

    // Everything is valid: build (nothing above allocated anything shared).
    let mut w = WatchOptions::all().kinds(kinds);
    if !keys.is_empty() {
        w = w.keys(keys.into_iter().map(Key::from));
    }
    for p in prefixes {
        w = w.prefix(p);
    }
    Ok(match start {
        kvfeed_start::KVFEED_START_NOW => w,
        kvfeed_start::KVFEED_START_FROM => w.from(opts.from_seq),
        kvfeed_start::KVFEED_START_SNAPSHOT => w.snapshot(),
    })
}

/// Creates a watcher on `store`. `opts` may be NULL (every key and kind,
/// starting now). On `KVFEED_OK`, `*out` is a new watcher owned by the caller
/// (free it with `kvfeed_watcher_free`); on any other status it is untouched.
///
/// The watcher holds its own reference to the feed: it stays valid after
/// `kvfeed_store_free` (it drains, then returns `KVFEED_CLOSED`). A watcher
/// costs O(1) memory; writers never wait for it.
///
/// Returns `KVFEED_NULL_ARG` (store, out, an array with a non-zero count, a
/// byte string with a non-zero length), `KVFEED_TOO_LARGE` (a filter key or
/// prefix over `max_key_len`), `KVFEED_INVALID_ARG` (bad `start` or `kinds`).
/// Thread safety: any thread (the store is shared).
///
/// # Safety
///
/// `store` is NULL or live; `opts` is NULL or readable, with its arrays and
/// byte strings readable for their lengths; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watch_new(
    store: *const kvfeed_store,
    opts: *const kvfeed_watch_opts,
    out: *mut *mut kvfeed_watcher,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        handle::required(out)?;
        // SAFETY: NULL or readable (caller's contract).
        let options = match unsafe { opts.as_ref() } {
            None => WatchOptions::all(),
            // SAFETY: arrays and bytes readable for their lengths (caller's contract).
            Some(o) => unsafe { watch_options(o, s) }?,
        };
        let watcher = s.feed.watch(options);
        let inner = WatcherInner {
            closer: watcher.closer(),
            interrupted: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(State {
                watcher,
                last: None,
                batch: Vec::new(),
                lagged: None,
            }),
        };
        // SAFETY: non-NULL (checked) and writable (caller's contract).
        unsafe { handle::write(out, handle::into_raw::<kvfeed_watcher>(inner)) };
        Ok(KVFEED_OK)
    })
}

/// The result of one read, owning everything (so the borrow of the watcher
/// ends before it is stored).
enum Outcome {
    Change(Change<Key, Val>),
    SnapshotDone { at: u64, consistent_at: u64 },
    Timeout,
    Lagged { missed: u64, resume_at: u64 },
    Closed,
}

impl From<Result<Option<EventRef<'_, Key, Val>>, RecvError>> for Outcome {
    fn from(r: Result<Option<EventRef<'_, Key, Val>>, RecvError>) -> Self {
        match r {
            Ok(Some(EventRef::Change(c))) => Outcome::Change(c.to_owned()),
            Ok(Some(EventRef::SnapshotDone { at, consistent_at })) => {
                Outcome::SnapshotDone { at, consistent_at }
            }
            Ok(None) => Outcome::Timeout,
            Err(RecvError::Lagged(l)) => Outcome::Lagged {
                missed: l.missed,
                resume_at: l.resume_at,
            },
            Err(RecvError::Closed) => Outcome::Closed,
        }
    }
}

/// The longest single park; longer waits are made of several (this keeps
/// `Instant + Duration` far from overflow whatever `timeout_ms` is).
const MAX_PARK: Duration = Duration::from_secs(3600);

/// One read with `kvfeed_watcher_next`'s timeout rules. `interrupted` is the
/// handle's flag: a wait that ends with it set is reported as a timeout.
fn read(w: &mut Watcher<Key, Val>, timeout_ms: i64, interrupted: &AtomicBool) -> Outcome {
    if timeout_ms == 0 {
        return w.try_next().into();
    }
    // No clock read up front: an event already there is returned at once
    // (`next_timeout` starts its clock only when it finds nothing), and a
    // wait that ran out waited at least its park.
    let mut left = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
    loop {
        let park = left.map_or(MAX_PARK, |l| l.min(MAX_PARK));
        match w.next_timeout(park).into() {
            Outcome::Timeout if !interrupted.swap(false, Ordering::SeqCst) => match left {
                Some(l) if l <= park => return Outcome::Timeout,
                Some(l) => left = Some(l - park),
                None => {}
            },
            outcome => return outcome,
        }
    }
}

/// Reads the next matching event, waiting up to `timeout_ms` milliseconds for
/// one (0: do not wait; negative: wait until an event arrives or the watcher
/// is closed). Waiting parks the thread (no busy spinning past a short spin).
///
/// Returns:
/// - `KVFEED_OK`: `*out` is the event (see `kvfeed_event` for how long its
///   pointers live). For a snapshot end marker, `kind` is
///   `KVFEED_KIND_SNAPSHOT_DONE` with `at` and `consistent_at`.
/// - `KVFEED_TIMEOUT`: nothing arrived in time, or `kvfeed_watcher_interrupt`
///   ended the wait (with a negative timeout, only an interrupt returns it);
///   `*out` is untouched and the watcher is at the same cursor.
/// - `KVFEED_LAGGED`: the watcher was lapped; `*out` is written with `missed`
///   and `resume_at` (every other field zero / NULL). The next call goes on
///   from `resume_at`.
/// - `KVFEED_CLOSED`: the store was closed and every remaining event has been
///   read, or `kvfeed_watcher_close` was called; `*out` is untouched.
/// - `KVFEED_NULL_ARG`; `KVFEED_INVALID_ARG` when another thread is inside a
///   call on this watcher.
///
/// Every call, whatever it returns, invalidates the pointers of the event
/// returned by the previous one. Thread safety: one thread at a time per
/// watcher.
///
/// # Safety
///
/// `watcher` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_next(
    watcher: *mut kvfeed_watcher,
    timeout_ms: i64,
    out: *mut kvfeed_event,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract). Borrowed shared: see handle.rs.
        let w = unsafe { handle::borrow(watcher) }?;
        handle::required(out)?;
        let mut entered = w.enter()?;
        let state = entered.state();
        state.reset();
        let outcome = match state.lagged.take() {
            Some((missed, resume_at)) => Outcome::Lagged { missed, resume_at },
            None => read(&mut state.watcher, timeout_ms, &w.interrupted),
        };
        let (status, event) = match outcome {
            Outcome::Change(change) => {
                let change = state.last.insert(change);
                (KVFEED_OK, kvfeed_event::of_change(change))
            }
            Outcome::SnapshotDone { at, consistent_at } => {
                (KVFEED_OK, kvfeed_event::snapshot_done(at, consistent_at))
            }
            Outcome::Lagged { missed, resume_at } => {
                (KVFEED_LAGGED, kvfeed_event::lagged(missed, resume_at))
            }
            Outcome::Timeout => return Ok(KVFEED_TIMEOUT),
            Outcome::Closed => return Ok(KVFEED_CLOSED),
        };
        // SAFETY: non-NULL (checked) and writable (caller's contract).
        unsafe { handle::write(out, event) };
        Ok(status)
    })
}

impl kvfeed_event {
    fn of_event(ev: &EventRef<'_, Key, Val>, batch: &mut Vec<Change<Key, Val>>) -> Self {
        match ev {
            EventRef::Change(c) => {
                batch.push(c.to_owned());
                kvfeed_event::of_change(batch.last().expect("just pushed"))
            }
            EventRef::SnapshotDone { at, consistent_at } => {
                Self::snapshot_done(*at, *consistent_at)
            }
        }
    }

    fn snapshot_done(at: u64, consistent_at: u64) -> Self {
        kvfeed_event {
            kind: KVFEED_KIND_SNAPSHOT_DONE,
            at,
            consistent_at,
            ..kvfeed_event::EMPTY
        }
    }

    fn lagged(missed: u64, resume_at: u64) -> Self {
        kvfeed_event {
            missed,
            resume_at,
            ..kvfeed_event::EMPTY
        }
    }
}

/// Appends to `events[from..cap]` what is ready, without waiting. Returns the
/// new count, or the lap / close when nothing was appended.
///
/// # Safety
///
/// `events` is writable for `cap` entries.
unsafe fn drain(
    state: &mut State,
    events: *mut kvfeed_event,
    from: usize,
    cap: usize,
) -> Result<usize, RecvError> {
    let State { watcher, batch, .. } = state;
    let mut i = from;
    watcher.drain_with(cap - from, |ev| {
        let event = kvfeed_event::of_event(&ev, batch);
        // SAFETY: `drain_with` calls this at most `cap - from` times, so
        // `i < cap`, and `events` is writable for `cap` entries (caller's
        // contract).
        unsafe { handle::write(events.add(i), event) };
        i += 1;
    })?;
    Ok(i)
}

/// The body of `kvfeed_watcher_next_batch`, after the argument checks.
///
/// # Safety
///
/// `events` is non-NULL and writable for `cap >= 1` entries.
unsafe fn fill(
    state: &mut State,
    interrupted: &AtomicBool,
    timeout_ms: i64,
    events: *mut kvfeed_event,
    cap: usize,
) -> (kvfeed_status, usize) {
    let lagged = |missed, resume_at| {
        // SAFETY: non-NULL and writable (this function's contract).
        unsafe { handle::write(events, kvfeed_event::lagged(missed, resume_at)) };
        (KVFEED_LAGGED, 0)
    };
    if let Some((missed, resume_at)) = state.lagged.take() {
        return lagged(missed, resume_at);
    }
    // SAFETY: writable for `cap` entries (this function's contract).
    match unsafe { drain(state, events, 0, cap) } {
        Ok(0) if timeout_ms == 0 => return (KVFEED_TIMEOUT, 0),
        Ok(0) => {}
        Ok(count) => return (KVFEED_OK, count),
        Err(RecvError::Lagged(l)) => return lagged(l.missed, l.resume_at),
        Err(RecvError::Closed) => return (KVFEED_CLOSED, 0),
    }
    let first = match read(&mut state.watcher, timeout_ms, interrupted) {
        Outcome::Change(change) => {
            state.batch.push(change);
            kvfeed_event::of_change(state.batch.last().expect("just pushed"))
        }
        Outcome::SnapshotDone { at, consistent_at } => {
            kvfeed_event::snapshot_done(at, consistent_at)
        }
        Outcome::Lagged { missed, resume_at } => return lagged(missed, resume_at),
        Outcome::Timeout => return (KVFEED_TIMEOUT, 0),
        Outcome::Closed => return (KVFEED_CLOSED, 0),
    };
    // SAFETY: non-NULL and writable (this function's contract).
    unsafe { handle::write(events, first) };
    // Whatever else is already published joins the batch.
    // SAFETY: writable for `cap` entries (this function's contract).
    match unsafe { drain(state, events, 1, cap) } {
        Ok(count) => (KVFEED_OK, count),
        Err(RecvError::Lagged(l)) => {
            // Reported by the next call, before anything else.
            state.lagged = Some((l.missed, l.resume_at));
            (KVFEED_OK, 1)
        }
        Err(RecvError::Closed) => (KVFEED_OK, 1),
    }
}

/// The most events one `kvfeed_watcher_next_batch` call returns.
const MAX_BATCH: usize = 1024;

/// Reads up to `cap` events (at most 1024) into `events[0..cap]` in one call: waits up to
/// `timeout_ms` for the first (0: do not wait; negative: until an event
/// arrives, the watcher is closed or interrupted), then adds, without waiting,
/// the ones already published, and writes their number to `*n`. A consumer
/// that keeps up gets everything published since its last call at once.
///
/// Returns:
/// - `KVFEED_OK`: `events[0..*n]` are events in order, `*n >= 1`.
/// - `KVFEED_TIMEOUT`: nothing arrived in time, or `kvfeed_watcher_interrupt`
///   ended the wait (as for `kvfeed_watcher_next`); `*n = 0`.
/// - `KVFEED_LAGGED`: the watcher was lapped before any event of this call;
///   `*n = 0` and `events[0]` carries `missed` and `resume_at` (every other
///   field zero / NULL). A lap or close is reported only when no event was
///   returned: a lap met after some events ends the batch there, and the
///   next call reports it.
/// - `KVFEED_CLOSED`: closed and drained (as for `kvfeed_watcher_next`);
///   `*n = 0`.
/// - `KVFEED_NULL_ARG` (`watcher`, `events` or `n` NULL), `KVFEED_INVALID_ARG`
///   (`cap` 0, or another thread inside a call on this watcher): nothing is
///   read or written.
///
/// Lifetime: the pointers of every event in the array stay valid until the
/// next `kvfeed_watcher_next` / `kvfeed_watcher_next_batch` on this watcher
/// or its free, like a single event's. Entries past `*n` are left as they
/// were. Thread safety: one thread at a time per watcher.
///
/// # Safety
///
/// `watcher` is NULL or live; `events` is NULL or writable for `cap` entries;
/// `n` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_next_batch(
    watcher: *mut kvfeed_watcher,
    timeout_ms: i64,
    events: *mut kvfeed_event,
    cap: usize,
    n: *mut usize,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract). Borrowed shared: see handle.rs.
        let w = unsafe { handle::borrow(watcher) }?;
        handle::required(events)?;
        handle::required(n)?;
        if cap == 0 || cap > isize::MAX as usize / std::mem::size_of::<kvfeed_event>() {
            return Err(KVFEED_INVALID_ARG);
        }
        let mut entered = w.enter()?;
        let state = entered.state();
        state.reset();
        let cap = cap.min(MAX_BATCH);
        state.batch.reserve(cap); // no reallocation while filling (see `State::batch`)
                                  // SAFETY: `events` is non-NULL (checked) and writable for `cap` entries.
        let (status, count) = unsafe { fill(state, &w.interrupted, timeout_ms, events, cap) };
        // SAFETY: non-NULL (checked) and writable (caller's contract).
        unsafe { handle::write(n, count) };
        Ok(status)
    })
}

/// Ends the current wait of a `kvfeed_watcher_next` / `_next_batch` blocked on
/// this watcher in another thread, without closing the watcher: that call
/// returns `KVFEED_TIMEOUT` at once (even with a negative timeout). When no
/// call is waiting, the next call that finds nothing to read returns
/// `KVFEED_TIMEOUT` instead of waiting, so an interrupt that races the start
/// of a wait is not lost; a call that finds an event returns it and leaves
/// the interrupt pending for the next wait. Nothing is read or skipped: the
/// watcher stays at the same cursor and every event is still delivered.
/// Several interrupts before one wait count as one. Use it to cancel a wait
/// (a deadline, a cancelled request) and keep the watcher; use
/// `kvfeed_watcher_close` to end it.
///
/// Thread safety: any thread, at any time, concurrently with any call on this
/// watcher except `kvfeed_watcher_free`.
///
/// # Safety
///
/// `watcher` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_interrupt(watcher: *const kvfeed_watcher) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract); only the Sync `closer` and
        // `interrupted` fields are used.
        let w = unsafe { handle::borrow(watcher) }?;
        // The handle's flag first: the read that wakes must find it set.
        w.interrupted.store(true, Ordering::SeqCst);
        w.closer.interrupt();
        Ok(KVFEED_OK)
    })
}

/// Writes to `*out` the next seq this watcher will read. Thread safety: one
/// thread at a time per watcher, like `kvfeed_watcher_next`
/// (`KVFEED_INVALID_ARG` when another thread is inside a call on it). Does not
/// invalidate the current event.
///
/// # Safety
///
/// `watcher` is NULL or live; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_cursor(
    watcher: *const kvfeed_watcher,
    out: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let w = unsafe { handle::borrow(watcher) }?;
        handle::required(out)?;
        let cursor = w.enter()?.state().watcher.cursor();
        // SAFETY: non-NULL (checked) and writable (caller's contract).
        unsafe { handle::write(out, cursor) };
        Ok(KVFEED_OK)
    })
}

/// Closes the watcher: a `kvfeed_watcher_next` blocked on another thread wakes
/// and returns `KVFEED_CLOSED`, and so does every later call. Idempotent.
/// It does not free the watcher (call `kvfeed_watcher_free` after the reading
/// thread is done with it).
///
/// Thread safety: any thread, at any time, concurrently with any call on this
/// watcher except `kvfeed_watcher_free`.
///
/// # Safety
///
/// `watcher` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_close(watcher: *const kvfeed_watcher) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract); only the Sync `closer`
        // field is used.
        let w = unsafe { handle::borrow(watcher) }?;
        w.closer.close();
        Ok(KVFEED_OK)
    })
}

/// Frees a watcher (unregistering it; writers are unaffected). NULL does
/// nothing. The last event's pointers become invalid.
///
/// # Safety
///
/// `watcher` is NULL or a live watcher that no other thread is using (not even
/// `kvfeed_watcher_close`); it must not be used after this call.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_watcher_free(watcher: *mut kvfeed_watcher) {
    guard_void(|| {
        // SAFETY: NULL or a live handle used by nobody else (caller's contract).
        unsafe { handle::free(watcher) }
    })
}
