//! Watchers: a cursor and a filter, reading the ring.
//!
//! A watcher owns no buffer and registers nowhere: writers do not know it
//! exists (guarantee 4). Reading writes only the watcher's own fields; the
//! event is borrowed from the ring under a reclamation guard, or, on a word
//! feed (`engine/word/`), copied out of its ring slot (a few words; no
//! guard).
//!
//! ## Blocking
//!
//! `next_timeout` spins briefly ([`SPINS`] checks, then [`YIELDS`] yields), then parks on the feed's
//! notifier (see `notify.rs` for the no-lost-wake-up handshake). While no
//! watcher is parked, a write pays one load for all of this. The deadline
//! is checked before every yield and after every [`SCAN_BUDGET`] events the
//! filter passed over, so a watcher whose filter matches nothing on a busy
//! feed still returns on time.

use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::engine::{from_bits, Engine, Guard, Node, Read, WordEvent, WordRead};
use crate::error::{Lagged, RecvError};
use crate::event::{Change, ChangeRef, Event, EventRef, Kind};
use crate::notify::Notifier;
use crate::snapshot::Snapshot;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::watch::{Filter, Start, WatchOptions};

/// How many times `next_timeout` re-checks (with a CPU spin hint) before
/// it starts yielding.
///
/// ```
/// // A blocking read spins, then yields, then parks: this many checks
/// // happen before the thread sleeps.
/// assert_eq!(kvfeed::SPINS + kvfeed::YIELDS, 80);
/// ```
pub const SPINS: u32 = 64;

/// How many times `next_timeout` then yields its thread and re-checks before
/// parking. On a machine with few cores a writer is often waiting for the
/// core the watcher holds; yielding lets it publish without a futex round
/// trip, and parking still follows quickly when the feed is idle.
///
/// ```
/// assert!(kvfeed::YIELDS < kvfeed::SPINS);
/// ```
pub const YIELDS: u32 = 16;

/// How many published events a blocking read passes over (filtered out)
/// before it looks at its deadline again.
pub const SCAN_BUDGET: usize = 1024;

/// A reader of the feed: a cursor and a filter.
///
/// Use it from one thread at a time (it is `Send`); [`closer`](Self::closer)
/// gives a handle that other threads can use to stop it. Dropping it is all
/// it takes to unregister.
///
/// ## Lagging
///
/// The ring holds the last `capacity` events. A watcher that falls further
/// behind is told so: its next read returns
/// `Err(RecvError::Lagged(Lagged { missed, resume_at }))`, where `missed` is
/// exactly how many sequence numbers it lost (`resume_at - cursor`), and it
/// continues at `resume_at`, the oldest seq still retained. Recover in place
/// with [`resnapshot`](Self::resnapshot).
///
/// ## Closing
///
/// After [`Feed::close`](crate::Feed::close), reads return what is still in
/// the ring, then `Err(RecvError::Closed)`. After [`WatchCloser::close`],
/// reads return `Closed` at once.
///
/// ## Reading
///
/// | method | blocks | event |
/// |---|---|---|
/// | [`try_next`](Self::try_next) | never | borrowed ([`EventRef`]) |
/// | [`next_timeout`](Self::next_timeout) | up to a timeout | borrowed |
/// | [`drain_with`](Self::drain_with) | never | borrowed, a batch under one guard (the cheapest) |
/// | [`next_batch`](Self::next_batch) | never | owned ([`Event`]), a batch |
/// | `Iterator::next` (`for ev in w`) | until an event or the end | owned |
/// | `into_stream()` (feature `async`: a `WatchStream`) | awaits | owned |
///
/// A borrowed event holds a reclamation guard until it is dropped: act on it
/// (or copy it with `to_owned`) and let it go before the next read. (A feed
/// of primitive key and value types hands out copies in the same
/// `EventRef` and holds no guard.)
///
/// # Examples
///
/// A consumer that handles laps by recovering in place:
///
/// ```
/// use std::collections::HashMap;
/// use kvfeed::{Config, Feed, RecvError, WatchOptions};
///
/// let feed: Feed<u32, u32> = Feed::with_config(Config::new().capacity(8)).unwrap();
/// let mut w = feed.watch(WatchOptions::all());
/// for i in 0..20 {
///     feed.put(i % 5, i).unwrap(); // 20 writes into a ring of 8: `w` is lapped
/// }
/// let mut view = HashMap::new();
/// loop {
///     let lapped = match w.try_next() {
///         Ok(Some(ev)) => {
///             if let Some(c) = ev.as_change() {
///                 view.insert(*c.key(), *c.value().unwrap()); // no deletes here
///             } // else: the end of the snapshot
///             None
///         }
///         Ok(None) | Err(RecvError::Closed) => break,
///         Err(RecvError::Lagged(l)) => Some(l),
///     };
///     if let Some(l) = lapped {
///         assert_eq!(l.missed, l.resume_at - 1);
///         view.clear();
///         w.resnapshot(); // every live key, then live events
///     }
/// }
/// let store: HashMap<u32, u32> = (0..5).map(|k| (k, feed.get(&k).unwrap().0)).collect();
/// assert_eq!(view, store);
/// ```
pub struct Watcher<K, V> {
    shared: Arc<Engine<K, V>>,
    reader: Reader<K, V>,
}

/// A watcher's own state, apart from the feed it reads, so that a read can
/// borrow the feed and change the state at once.
struct Reader<K, V> {
    /// The next seq this watcher reads.
    cursor: u64,
    filter: Filter<K>,
    snapshot: Option<Box<Snapshot<K, V>>>,
    /// The snapshot item most recently handed out (borrowed by the caller).
    lent: Option<Change<K, V>>,
    closed: Arc<AtomicBool>,
    /// Set by [`WatchCloser::interrupt`]; consumed by the wait it ends.
    interrupted: Arc<AtomicBool>,
    /// The last step stopped at its budget of non-matching events.
    exhausted: bool,
}

impl<K, V> fmt::Debug for Watcher<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("cursor", &self.reader.cursor)
            .finish()
    }
}

// A watcher is never pinned in place: nothing points into it.
impl<K, V> Unpin for Watcher<K, V> {}

/// When a wait gives up. A timeout's clock starts at the first look that
/// finds nothing, so a read that finds an event at once never reads the
/// clock (`Instant::now` is 34 ns on the 2-core VM, as much as the rest of
/// a per-event read).
#[derive(Clone, Copy)]
enum Deadline {
    Never,
    /// Not started yet.
    In(Duration),
    At(Instant),
}

impl Deadline {
    /// Starts the clock of an `In`; no-op otherwise.
    fn start(&mut self) {
        if let Deadline::In(timeout) = *self {
            // Too far to represent: no deadline.
            *self = Instant::now()
                .checked_add(timeout)
                .map_or(Deadline::Never, Deadline::At);
        }
    }

    fn passed(&mut self) -> bool {
        self.start();
        matches!(*self, Deadline::At(at) if Instant::now() >= at)
    }

    fn at(&mut self) -> Option<Instant> {
        self.start();
        match *self {
            Deadline::At(at) => Some(at),
            _ => None,
        }
    }
}

/// What one step of reading produced; holds no borrow of the watcher.
enum Step<K, V> {
    /// A record and its predecessor, read from the ring.
    Live(*const Node<K, V>, *const Node<K, V>),
    /// A word feed's event, copied out of the ring.
    Word(WordEvent),
    SnapshotItem,
    SnapshotDone {
        at: u64,
        consistent_at: u64,
    },
}

impl<K, V> Watcher<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    pub(crate) fn new(shared: Arc<Engine<K, V>>, options: WatchOptions<K>) -> Self {
        let filter = Filter::new(options.keys, options.predicates, options.kinds);
        let mut w = Watcher {
            reader: Reader {
                cursor: shared.head() + 1,
                filter,
                snapshot: None,
                lent: None,
                closed: Arc::new(AtomicBool::new(false)),
                interrupted: Arc::new(AtomicBool::new(false)),
                exhausted: false,
            },
            shared,
        };
        match options.start {
            Start::Now => {}
            Start::From(seq) => w.reader.cursor = seq,
            Start::Snapshot => w.resnapshot(),
        }
        w
    }

    /// The next seq this watcher will read. Save it to resume later with
    /// [`WatchOptions::from`] (while that seq is still in the ring).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// assert_eq!(w.cursor(), 1);
    /// feed.put(1, 1).unwrap();
    /// w.try_next().unwrap();
    /// let saved = w.cursor();
    /// drop(w);
    /// let s2 = feed.put(2, 2).unwrap();
    /// let mut resumed = feed.watch(WatchOptions::all().from(saved));
    /// assert_eq!(resumed.try_next().unwrap().unwrap().as_change().unwrap().seq(), s2);
    /// ```
    pub fn cursor(&self) -> u64 {
        self.reader.cursor
    }

    /// How far behind the head this watcher is, in seqs (for metrics).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, 1).unwrap();
    /// feed.put(2, 2).unwrap();
    /// assert_eq!(w.lag(), 2);
    /// w.try_next().unwrap();
    /// assert_eq!(w.lag(), 1);
    /// ```
    pub fn lag(&self) -> u64 {
        (self.shared.head() + 1).saturating_sub(self.reader.cursor)
    }

    /// Restarts from a fresh snapshot, in place (to recover from a lap
    /// without dropping the watcher): the next reads return one `Create` per
    /// live matching key, `SnapshotDone`, then live events.
    ///
    /// ```
    /// use kvfeed::{Config, Event, Feed, RecvError, WatchOptions};
    /// let feed: Feed<u8, u32> = Feed::with_config(Config::new().capacity(4)).unwrap();
    /// let mut w = feed.watch(WatchOptions::all());
    /// for i in 0..10 {
    ///     feed.put((i % 3) as u8, i).unwrap();
    /// }
    /// assert!(matches!(w.try_next(), Err(RecvError::Lagged(_))));
    /// w.resnapshot();
    /// let mut buf = Vec::new();
    /// w.next_batch(&mut buf, 100).unwrap();
    /// assert_eq!(buf.len(), 4); // three live keys, then the marker
    /// assert!(matches!(buf[3], Event::SnapshotDone { at: 10, .. }));
    /// ```
    pub fn resnapshot(&mut self) {
        let snapshot = Snapshot::take(&self.shared, &self.reader.filter);
        self.reader.cursor = snapshot.at + 1;
        self.reader.snapshot = Some(Box::new(snapshot));
        self.reader.lent = None;
    }

    /// A handle that closes this watcher from any thread (waking it if it
    /// is blocked); see [`WatchCloser`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvfeed::{Feed, RecvError, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let closer = w.closer();
    /// let reader = std::thread::spawn(move || w.next_timeout(Duration::from_secs(3600)).map(|_| ()));
    /// closer.close(); // the blocked reader returns at once
    /// assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
    /// ```
    pub fn closer(&self) -> WatchCloser {
        WatchCloser {
            closed: self.reader.closed.clone(),
            interrupted: self.reader.interrupted.clone(),
            notifier: self.shared.notifier().clone(),
        }
    }

    /// The next matching event, if one is published; never blocks.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// assert!(w.try_next().unwrap().is_none());
    /// feed.put(1, 10).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().value(), Some(&10));
    /// ```
    pub fn try_next(&mut self) -> Result<Option<EventRef<'_, K, V>>, RecvError> {
        let Watcher { shared, reader } = self;
        let shared: &Engine<K, V> = shared;
        // A word feed's live events are copied out of the ring: no guard,
        // no record, and a small event to hand back (`engine/word/`).
        if shared.is_words() && reader.snapshot.is_none() {
            // SAFETY: read from a word feed's ring.
            return Ok(reader
                .next_word(shared, usize::MAX)?
                .map(|ev| EventRef::Change(unsafe { ChangeRef::word(&ev) })));
        }
        // Caught up (the common answer of a polling watcher): the slot's
        // stamp says so without following a record, so without entering a
        // reclamation guard (whose exit is a locked instruction).
        if reader.snapshot.is_none() && shared.not_yet(reader.cursor) {
            if reader.closed.load(Ordering::Acquire) || reader.read_everything(shared) {
                return Err(RecvError::Closed);
            }
            return Ok(None);
        }
        let guard = shared.guard();
        match reader.step(shared, &guard, usize::MAX)? {
            None => Ok(None),
            Some(step) => {
                let reader: &Reader<K, V> = reader;
                Ok(Some(reader.wrap(step, guard)))
            }
        }
    }

    /// The next matching event, waiting up to `timeout`: a short spin, then
    /// parked. `Ok(None)` when the time ran out, or when
    /// [`WatchCloser::interrupt`] ended the wait early. The clock starts
    /// when the first look finds nothing: an event that is already there is
    /// returned without reading the clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// assert!(w.next_timeout(Duration::from_millis(1)).unwrap().is_none());
    /// let writer = {
    ///     let feed = feed.clone();
    ///     std::thread::spawn(move || feed.put(1, 1).unwrap())
    /// };
    /// let ev = w.next_timeout(Duration::from_secs(60)).unwrap().unwrap(); // parks until the write
    /// assert_eq!(ev.as_change().unwrap().seq(), writer.join().unwrap());
    /// ```
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<EventRef<'_, K, V>>, RecvError> {
        self.next_until(Deadline::In(timeout))
    }

    fn next_until(
        &mut self,
        mut deadline: Deadline,
    ) -> Result<Option<EventRef<'_, K, V>>, RecvError> {
        let Watcher { shared, reader } = self;
        let shared: &Engine<K, V> = shared;
        let mut waits = 0;
        loop {
            if shared.is_words() && reader.snapshot.is_none() {
                if let Some(ev) = reader.next_word(shared, SCAN_BUDGET)? {
                    // SAFETY: read from a word feed's ring.
                    return Ok(Some(EventRef::Change(unsafe { ChangeRef::word(&ev) })));
                }
            } else {
                let guard = shared.guard();
                if let Some(step) = reader.step(shared, &guard, SCAN_BUDGET)? {
                    let reader: &Reader<K, V> = reader;
                    return Ok(Some(reader.wrap(step, guard)));
                }
            }
            deadline.start();
            let mut passed = || deadline.passed();
            if reader.interrupted.load(Ordering::Relaxed)
                && reader.interrupted.swap(false, Ordering::SeqCst)
            {
                return Ok(None);
            }
            if std::mem::take(&mut reader.exhausted) {
                // Passed over a budget of events that did not match: more
                // are published; look at the clock, then go on reading.
                if passed() {
                    return Ok(None);
                }
                continue;
            }
            // Under loom the spin adds nothing to check (the handshake is
            // in the parking) and multiplies the interleavings: park at once.
            let (spins, yields) = if cfg!(kvfeed_loom) {
                (0, 0)
            } else {
                (SPINS, YIELDS)
            };
            if waits < spins {
                std::hint::spin_loop();
                waits += 1;
                continue;
            }
            if passed() {
                return Ok(None);
            }
            if waits < spins + yields {
                std::thread::yield_now();
                waits += 1;
                continue;
            }
            if !shared
                .notifier()
                .park_until(deadline.at(), || reader.ready(shared))
            {
                return Ok(None);
            }
        }
    }

    /// Appends up to `max` matching events (owned) to `buf` without
    /// blocking; returns how many. A lap or close is reported only when no
    /// event was appended (the events before it are returned first).
    ///
    /// ```
    /// use kvfeed::{Feed, Event, WatchOptions};
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// for i in 0..5 { feed.put(i, i).unwrap(); }
    /// let mut buf = Vec::new();
    /// assert_eq!(w.next_batch(&mut buf, 3).unwrap(), 3);
    /// assert_eq!(w.next_batch(&mut buf, 3).unwrap(), 2);
    /// assert_eq!(w.next_batch(&mut buf, 3).unwrap(), 0); // nothing more yet
    /// let seqs: Vec<u64> = buf.iter().filter_map(Event::as_change).map(|c| c.seq).collect();
    /// assert_eq!(seqs, [1, 2, 3, 4, 5]);
    /// ```
    pub fn next_batch(
        &mut self,
        buf: &mut Vec<Event<K, V>>,
        max: usize,
    ) -> Result<usize, RecvError> {
        self.drain_with(max, |ev| buf.push(ev.to_owned()))
    }

    /// Calls `f` on up to `max` matching events, borrowed in place (no copy,
    /// no write to anything shared), without blocking; returns how many.
    /// The cheapest way to read many events: one reclamation guard for the
    /// whole batch. A lap or close is reported only when `f` was not called
    /// (the events before it are delivered first).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u32, u64> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// for i in 0..10 { feed.put(i, i as u64 * 10).unwrap(); }
    /// let mut sum = 0;
    /// let n = w.drain_with(usize::MAX, |ev| sum += ev.as_change().unwrap().value().unwrap()).unwrap();
    /// assert_eq!((n, sum), (10, 450));
    /// ```
    pub fn drain_with(
        &mut self,
        max: usize,
        mut f: impl FnMut(EventRef<'_, K, V>),
    ) -> Result<usize, RecvError> {
        let Watcher { shared, reader } = self;
        let shared: &Engine<K, V> = shared;
        let guard = shared.guard();
        if reader.closed.load(Ordering::Acquire) {
            return Err(RecvError::Closed);
        }
        // Live events, every one wanted (the common case): read runs of
        // plainly published records with no per-event bookkeeping; the
        // general step below takes whatever ends a run.
        let runs = reader.snapshot.is_none() && reader.filter.passes_all();
        let mut n = 0;
        while n < max {
            if runs {
                let ran = if shared.is_words() {
                    shared.read_word_run(reader.cursor, max - n, |ev| {
                        // SAFETY: read from a word feed's ring.
                        f(EventRef::Change(unsafe { ChangeRef::word(ev) }))
                    })
                } else {
                    shared.read_run(reader.cursor, max - n, &guard, |node, prev| {
                        // SAFETY: read from the ring under `guard`, which lives
                        // until the end of this function, past `f`'s borrow.
                        f(EventRef::Change(unsafe { ChangeRef::guarded(node, prev) }))
                    })
                };
                reader.cursor += ran as u64;
                n += ran;
                if n == max {
                    break;
                }
            }
            // Live events only (the common case): no per-event check of the
            // snapshot state or the closer, which the batch checked once.
            let step = if reader.snapshot.is_none() {
                reader.step_live(shared, &guard, usize::MAX)
            } else {
                reader.step(shared, &guard, usize::MAX)
            };
            let step = match step {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) if n == 0 => return Err(e),
                Err(RecvError::Lagged(l)) => {
                    // Deliver what we have; the next call finds the lap again.
                    reader.cursor -= l.missed;
                    break;
                }
                Err(RecvError::Closed) => break,
            };
            match step {
                // SAFETY: `step` read this record and its predecessor from the
                // ring under `guard`, which lives until the end of this
                // function, past `f`'s borrow.
                Step::Live(node, prev) => f(EventRef::Change(unsafe {
                    ChangeRef::guarded(&*node, prev)
                })),
                // SAFETY: read from a word feed's ring.
                Step::Word(ev) => f(EventRef::Change(unsafe { ChangeRef::word(&ev) })),
                Step::SnapshotItem => {
                    let item = reader.lent.take().expect("just lent");
                    f(EventRef::Change(ChangeRef::owned(&item)));
                }
                Step::SnapshotDone { at, consistent_at } => {
                    f(EventRef::SnapshotDone { at, consistent_at })
                }
            }
            n += 1;
        }
        Ok(n)
    }
}

impl<K, V> Reader<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    fn wrap<'a>(&'a self, step: Step<K, V>, guard: Guard<'a>) -> EventRef<'a, K, V> {
        match step {
            Step::Live(node, prev) => {
                // SAFETY: `step` read this record and its predecessor from
                // the ring under `guard`, which moves into the ChangeRef and
                // keeps protecting them.
                EventRef::Change(unsafe { ChangeRef::live(node, prev, guard) })
            }
            // SAFETY: read from a word feed's ring; nothing to protect.
            Step::Word(ev) => EventRef::Change(unsafe { ChangeRef::word(&ev) }),
            Step::SnapshotItem => {
                EventRef::Change(ChangeRef::owned(self.lent.as_ref().expect("just lent")))
            }
            Step::SnapshotDone { at, consistent_at } => {
                EventRef::SnapshotDone { at, consistent_at }
            }
        }
    }

    /// Whether the feed is closed and this watcher has passed its last seq:
    /// every event that will ever exist was read (or reported).
    #[inline]
    fn read_everything(&self, shared: &Engine<K, V>) -> bool {
        shared.final_head().is_some_and(|last| self.cursor > last)
    }

    /// Whether a read would find something (or an end); `SeqCst` for the
    /// parking handshake.
    fn ready(&self, shared: &Engine<K, V>) -> bool {
        if self.closed.load(Ordering::SeqCst) || self.interrupted.load(Ordering::SeqCst) {
            return true;
        }
        if self.read_everything(shared) {
            return true;
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| !s.items.is_empty() || s.marker_pending)
        {
            return true;
        }
        let guard = shared.guard();
        !matches!(
            shared.read(self.cursor, &guard, Ordering::SeqCst),
            Read::NotYet
        )
    }

    /// Advances to the next matching event, passing over at most `budget`
    /// events that do not match (then `Ok(None)` with `exhausted` set).
    #[inline(always)]
    fn step(
        &mut self,
        shared: &Engine<K, V>,
        guard: &Guard<'_>,
        budget: usize,
    ) -> Result<Option<Step<K, V>>, RecvError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RecvError::Closed);
        }
        if self.snapshot.is_some() {
            return self.step_snapshot(shared, guard, budget);
        }
        self.step_live(shared, guard, budget)
    }

    /// `step` while a snapshot is being delivered or still filters live events.
    #[cold]
    fn step_snapshot(
        &mut self,
        shared: &Engine<K, V>,
        guard: &Guard<'_>,
        budget: usize,
    ) -> Result<Option<Step<K, V>>, RecvError> {
        let snap = self.snapshot.as_deref_mut().expect("checked by the caller");
        if let Some(item) = snap.items.pop() {
            self.lent = Some(item);
            return Ok(Some(Step::SnapshotItem));
        }
        if snap.marker_pending {
            snap.marker_pending = false;
            return Ok(Some(Step::SnapshotDone {
                at: snap.at,
                consistent_at: snap.consistent_at,
            }));
        }
        loop {
            let Some(snap) = self.snapshot.as_deref() else {
                return self.step_live(shared, guard, budget);
            };
            if snap.finished(self.cursor) {
                self.snapshot = None;
                continue;
            }
            match self.step_live(shared, guard, budget)? {
                Some(Step::Live(node, prev)) => {
                    // SAFETY: `step_live` found it under `guard`, still held.
                    let n = unsafe { &*node };
                    let seen = self
                        .snapshot
                        .as_deref()
                        .is_some_and(|s| s.already_seen(&n.key, n.seq()));
                    if seen {
                        continue;
                    }
                    return Ok(Some(Step::Live(node, prev)));
                }
                Some(Step::Word(ev)) => {
                    // SAFETY: a word feed's key bits come from `to_bits::<K>`.
                    let key = unsafe { from_bits::<K>(ev.key) };
                    let seen = self
                        .snapshot
                        .as_deref()
                        .is_some_and(|s| s.already_seen(&key, ev.seq));
                    if seen {
                        continue;
                    }
                    return Ok(Some(Step::Word(ev)));
                }
                other => return Ok(other),
            }
        }
    }

    /// What a read answers when the cursor's seq is not published yet:
    /// nothing, or `Closed` once the feed closed and everything was read.
    #[inline]
    fn nothing_yet<T>(&self, shared: &Engine<K, V>) -> Result<Option<T>, RecvError> {
        if self.read_everything(shared) {
            return Err(RecvError::Closed);
        }
        Ok(None)
    }

    /// The cursor's seq was overwritten: where a watcher detects a lap. It
    /// continues at the oldest seq still retained and is told how many it
    /// missed.
    #[inline]
    fn lapped(&mut self, shared: &Engine<K, V>) -> RecvError {
        let resume_at = shared.resume_at(self.cursor);
        let missed = resume_at - self.cursor;
        self.cursor = resume_at;
        RecvError::Lagged(Lagged { missed, resume_at })
    }

    /// Whether a word feed's event passes the filter.
    #[inline]
    fn word_matches(&self, ev: &WordEvent) -> bool {
        if self.filter.passes_all() {
            return true;
        }
        // SAFETY: a word feed's key bits come from `to_bits::<K>`.
        let key = unsafe { from_bits::<K>(ev.key) };
        self.filter.matches(&key, Kind::of(ev.kind))
    }

    /// Counts an event the filter passed over; true when the budget is
    /// spent (then `exhausted` says so to the caller's deadline check).
    #[inline]
    fn passed_over(&mut self, budget: &mut usize) -> bool {
        *budget -= 1;
        if *budget == 0 {
            self.exhausted = true;
            return true;
        }
        false
    }

    /// `step` for a word feed without a snapshot: the next matching event,
    /// copied out of the ring, with the same answers as `step_live`
    /// (including the budget of events passed over).
    #[inline(always)]
    fn next_word(
        &mut self,
        shared: &Engine<K, V>,
        mut budget: usize,
    ) -> Result<Option<WordEvent>, RecvError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RecvError::Closed);
        }
        loop {
            match shared.read_word(self.cursor) {
                WordRead::Mine(ev) => {
                    self.cursor += 1;
                    if self.word_matches(&ev) {
                        return Ok(Some(ev));
                    }
                    if self.passed_over(&mut budget) {
                        return Ok(None);
                    }
                }
                WordRead::NotYet => return self.nothing_yet(shared),
                WordRead::Lapped => return Err(self.lapped(shared)),
            }
        }
    }

    /// The next matching live event from the ring: where a watcher detects a lap.
    #[inline(always)]
    fn step_live(
        &mut self,
        shared: &Engine<K, V>,
        guard: &Guard<'_>,
        mut budget: usize,
    ) -> Result<Option<Step<K, V>>, RecvError> {
        loop {
            match shared.read(self.cursor, guard, Ordering::Acquire) {
                Read::Mine(node, prev) => {
                    self.cursor += 1;
                    if self.filter.matches(&node.key, Kind::of(node.kind())) {
                        return Ok(Some(Step::Live(node, prev)));
                    }
                    if self.passed_over(&mut budget) {
                        return Ok(None);
                    }
                }
                Read::Word(ev) => {
                    self.cursor += 1;
                    if self.word_matches(&ev) {
                        return Ok(Some(Step::Word(ev)));
                    }
                    if self.passed_over(&mut budget) {
                        return Ok(None);
                    }
                }
                Read::NotYet => return self.nothing_yet(shared),
                Read::Lapped => return Err(self.lapped(shared)),
            }
        }
    }
}

impl<K, V> Iterator for Watcher<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    type Item = Result<Event<K, V>, Lagged>;

    /// Blocks for the next event (owned); `None` once the watcher or feed is
    /// closed and everything readable was read.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let w = feed.watch(WatchOptions::all());
    /// for i in 0..3 { feed.put(i, i).unwrap(); }
    /// feed.close();
    /// let keys: Vec<u8> = w.map(|ev| ev.unwrap().as_change().unwrap().key).collect();
    /// assert_eq!(keys, [0, 1, 2]);
    /// ```
    /// An [interrupt](WatchCloser::interrupt) does not end it (an iterator
    /// has no way to say "nothing yet"): it is consumed and the wait goes on.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            return match self.next_until(Deadline::Never) {
                Ok(Some(ev)) => Some(Ok(ev.to_owned())),
                Ok(None) => continue, // interrupted
                Err(RecvError::Lagged(l)) => Some(Err(l)),
                Err(RecvError::Closed) => None,
            };
        }
    }
}

/// Closes or interrupts one watcher from any thread, waking it if it is
/// blocked. Made by
/// [`Watcher::closer`]; cheap to clone.
///
/// ```
/// use kvfeed::{Feed, WatchOptions};
/// let feed: Feed<u8, u8> = Feed::new();
/// let w = feed.watch(WatchOptions::all());
/// let closer = w.closer();
/// let reader = std::thread::spawn(move || w.count()); // blocks until closed
/// feed.put(1, 1).unwrap();
/// closer.clone().close();
/// assert!(reader.join().unwrap() <= 1);
/// ```
#[derive(Clone)]
pub struct WatchCloser {
    closed: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    notifier: Arc<Notifier>,
}

impl fmt::Debug for WatchCloser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchCloser").finish()
    }
}

impl WatchCloser {
    /// Makes the watcher's reads return `Closed` from now on (what it has not
    /// read is dropped; the feed and other watchers are unaffected).
    ///
    /// ```
    /// use kvfeed::{Feed, RecvError, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, 1).unwrap();
    /// w.closer().close();
    /// assert_eq!(w.try_next().unwrap_err(), RecvError::Closed);
    /// assert!(!feed.is_closed());
    /// ```
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notifier.wake_all();
    }

    /// Ends the watcher's current wait early without closing it: a
    /// [`next_timeout`](Watcher::next_timeout) blocked on another thread
    /// returns `Ok(None)` at once, as on a timeout. When no call is waiting,
    /// the next one that finds nothing to read returns `Ok(None)` instead of
    /// waiting (so an interrupt racing the start of a wait is not lost). The
    /// interrupt is consumed by the wait it ends; a read that finds an event
    /// returns the event and leaves the interrupt pending. Nothing is read or
    /// skipped: the watcher stays at the same cursor. `try_next`,
    /// `next_batch` and `drain_with` never wait and ignore interrupts; the
    /// blocking `Iterator::next` consumes them and keeps waiting.
    ///
    /// Use it to cancel one wait (a request's deadline, a context) while
    /// keeping the watcher; [`close`](Self::close) ends it for good.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use kvfeed::{Feed, WatchOptions};
    ///
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let closer = w.closer();
    /// let waiter = std::thread::spawn(move || {
    ///     let start = Instant::now();
    ///     let got = w.next_timeout(Duration::from_secs(60)).unwrap().is_none();
    ///     (got, start.elapsed(), w)
    /// });
    /// closer.interrupt(); // before or during the wait: either way it ends it
    /// let (interrupted, waited, mut w) = waiter.join().unwrap();
    /// assert!(interrupted && waited < Duration::from_secs(60));
    /// // Still open, at the same cursor: the next event is delivered.
    /// feed.put(1, 10).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().value(), Some(&10));
    /// ```
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.notifier.wake_all();
    }
}

// No `Stream` impl here on purpose: see `WatchStream` (stream.rs) for why.
#[cfg(feature = "async")]
impl<K, V> Watcher<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    /// Turns this watcher into an async [`Stream`](futures_core::Stream) of
    /// owned events (feature `async`); see [`WatchStream`](crate::WatchStream).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let mut stream = feed.watch(WatchOptions::all()).into_stream();
    /// let seq = feed.put(1, 10).unwrap();
    /// let ev = futures_executor::block_on(stream.recv()).unwrap().unwrap();
    /// assert_eq!(ev.as_change().unwrap().seq, seq);
    /// ```
    pub fn into_stream(self) -> crate::WatchStream<K, V> {
        crate::WatchStream::from(self)
    }

    /// One poll of a [`WatchStream`](crate::WatchStream): an owned event, or
    /// `Pending` with `cx`'s waker registered on the feed's notifier.
    pub(crate) fn poll_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Event<K, V>, Lagged>>> {
        use std::task::Poll;
        loop {
            match self.try_next() {
                Ok(Some(ev)) => return Poll::Ready(Some(Ok(ev.to_owned()))),
                Err(RecvError::Lagged(l)) => return Poll::Ready(Some(Err(l))),
                Err(RecvError::Closed) => return Poll::Ready(None),
                Ok(None) => {}
            }
            self.shared.notifier().register(cx.waker());
            if !self.reader.ready(&self.shared) {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod interrupt_tests {
    use std::time::{Duration, Instant};

    use crate::{Feed, WatchOptions};

    /// Long enough that a wait the interrupt failed to end is a test failure,
    /// not a slow pass.
    const LONG: Duration = Duration::from_secs(60);

    fn value(w: &mut super::Watcher<u32, u32>) -> Option<u32> {
        w.try_next()
            .unwrap()
            .map(|ev| *ev.as_change().unwrap().value().unwrap())
    }

    #[test]
    fn interrupt_wakes_a_parked_wait_and_keeps_the_watcher() {
        let feed: Feed<u32, u32> = Feed::new();
        feed.put(1, 1).unwrap();
        let mut w = feed.watch(WatchOptions::all());
        let cursor = w.cursor();
        let closer = w.closer();
        let notifier = feed.shared.notifier().clone();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let none = w.next_timeout(LONG).unwrap().is_none();
            (none, start.elapsed(), w)
        });
        // Interrupt only once the waiter is parked (no sleep).
        while notifier.parked() == 0 {
            std::thread::yield_now();
        }
        closer.interrupt();
        let (none, waited, mut w) = waiter.join().unwrap();
        assert!(none, "an interrupted wait returns Ok(None)");
        assert!(
            waited < LONG,
            "the wait ended by the interrupt, not the timeout"
        );
        assert_eq!(w.cursor(), cursor, "nothing read or skipped");
        assert!(
            !w.reader.interrupted.load(crate::sync::Ordering::SeqCst),
            "consumed"
        );
        feed.put(2, 20).unwrap();
        assert_eq!(value(&mut w), Some(20));
    }

    #[test]
    fn interrupt_before_the_wait_ends_the_next_wait_once() {
        let feed: Feed<u32, u32> = Feed::new();
        let mut w = feed.watch(WatchOptions::all());
        w.closer().interrupt();
        let start = Instant::now();
        assert!(w.next_timeout(LONG).unwrap().is_none());
        assert!(start.elapsed() < LONG);
        // Consumed: the following wait is a plain one and gets the event.
        feed.put(1, 10).unwrap();
        let got = w.next_timeout(LONG).unwrap().map(|e| e.to_owned());
        assert_eq!(got.unwrap().as_change().unwrap().value, Some(10));
    }

    #[test]
    fn a_read_that_finds_an_event_leaves_the_interrupt_pending() {
        let feed: Feed<u32, u32> = Feed::new();
        let mut w = feed.watch(WatchOptions::all());
        feed.put(1, 10).unwrap();
        w.closer().interrupt();
        let got = w.next_timeout(LONG).unwrap().map(|e| e.to_owned());
        assert_eq!(got.unwrap().as_change().unwrap().value, Some(10));
        // No event left: the pending interrupt ends this wait at once.
        let start = Instant::now();
        assert!(w.next_timeout(LONG).unwrap().is_none());
        assert!(start.elapsed() < LONG);
        // try_next ignores interrupts and the watcher is not closed.
        w.closer().interrupt();
        assert_eq!(value(&mut w), None);
        feed.put(2, 20).unwrap();
        assert_eq!(value(&mut w), Some(20));
    }

    #[test]
    fn the_blocking_iterator_consumes_an_interrupt_and_keeps_waiting() {
        let feed: Feed<u32, u32> = Feed::new();
        let mut w = feed.watch(WatchOptions::all());
        w.closer().interrupt();
        let notifier = feed.shared.notifier().clone();
        let reader = std::thread::spawn(move || w.next());
        // Parked means it is past the interrupt (which it meets first).
        while notifier.parked() == 0 {
            std::thread::yield_now();
        }
        feed.put(7, 70).unwrap();
        let ev = reader.join().unwrap().unwrap().unwrap();
        assert_eq!(ev.as_change().unwrap().value, Some(70));
    }

    #[test]
    fn close_after_interrupt_still_closes() {
        let feed: Feed<u32, u32> = Feed::new();
        let mut w = feed.watch(WatchOptions::all());
        let closer = w.closer();
        closer.interrupt();
        closer.close();
        assert!(matches!(
            w.next_timeout(LONG),
            Err(crate::RecvError::Closed)
        ));
    }
}
