//! Watchers: a cursor and a filter, reading the ring.
//!
//! A watcher owns no buffer and registers nowhere: writers do not know it
//! exists (guarantee 4). Reading writes only the watcher's own fields; the
//! event is borrowed from the ring under a reclamation guard.
//!
//! ## Blocking
//!
//! `next_timeout` spins briefly ([`SPINS`] checks, then [`YIELDS`] yields), then parks on the feed's
//! notifier (see `notify.rs` for the no-lost-wake-up handshake). While no
//! watcher is parked, a write pays one load for all of this.

use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::error::{Lagged, RecvError};
use crate::event::{Change, ChangeRef, Event, EventRef, Kind};
use crate::node::NodeKind;
use crate::notify::Notifier;
use crate::reclaim::Guard;
use crate::ring::Slot;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::watch::{Filter, Start, WatchOptions};

/// How many times `next_timeout` re-checks (with a CPU spin hint) before
/// it starts yielding.
pub const SPINS: u32 = 64;

/// How many times `next_timeout` then yields its thread and re-checks before
/// parking. On a machine with few cores a writer is often waiting for the
/// core the watcher holds; yielding lets it publish without a futex round
/// trip, and parking still follows quickly when the feed is idle.
pub const YIELDS: u32 = 16;

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
pub struct Watcher<K, V> {
    shared: Arc<Shared<K, V>>,
    /// The next seq this watcher reads.
    cursor: u64,
    filter: Filter<K>,
    snapshot: Option<Box<Snapshot<K, V>>>,
    /// The snapshot item most recently handed out (borrowed by the caller).
    lent: Option<Change<K, V>>,
    closed: Arc<AtomicBool>,
    /// Set by [`WatchCloser::interrupt`]; consumed by the wait it ends.
    interrupted: Arc<AtomicBool>,
}

impl<K, V> fmt::Debug for Watcher<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("cursor", &self.cursor)
            .finish()
    }
}

// A watcher is never pinned in place: nothing points into it.
impl<K, V> Unpin for Watcher<K, V> {}

/// What one step of reading produced; holds no borrow of the watcher.
enum Step<K, V> {
    Live(*const crate::node::Node<K, V>),
    SnapshotItem,
    SnapshotDone { at: u64, consistent_at: u64 },
}

impl<K, V> Watcher<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    pub(crate) fn new(shared: Arc<Shared<K, V>>, options: WatchOptions<K>) -> Self {
        let filter = Filter::new(options.keys, options.predicates, options.kinds);
        let mut w = Watcher {
            cursor: shared.head() + 1,
            shared,
            filter,
            snapshot: None,
            lent: None,
            closed: Arc::new(AtomicBool::new(false)),
            interrupted: Arc::new(AtomicBool::new(false)),
        };
        match options.start {
            Start::Now => {}
            Start::From(seq) => w.cursor = seq,
            Start::Snapshot => w.resnapshot(),
        }
        w
    }

    /// The next seq this watcher will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How far behind the head this watcher is (for metrics).
    pub fn lag(&self) -> u64 {
        (self.shared.head() + 1).saturating_sub(self.cursor)
    }

    /// Restarts from a fresh snapshot, in place (to recover from a lap
    /// without dropping the watcher): the next reads return one `Create` per
    /// live matching key, `SnapshotDone`, then live events.
    pub fn resnapshot(&mut self) {
        let snapshot = Snapshot::take(&self.shared, &self.filter);
        self.cursor = snapshot.at + 1;
        self.snapshot = Some(Box::new(snapshot));
        self.lent = None;
    }

    /// A handle that closes this watcher from any thread.
    pub fn closer(&self) -> WatchCloser {
        WatchCloser {
            closed: self.closed.clone(),
            interrupted: self.interrupted.clone(),
            notifier: self.shared.notifier.clone(),
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
        let shared = self.shared_ref();
        let guard = shared.index.guard();
        match self.step(shared, &guard)? {
            None => Ok(None),
            Some(step) => Ok(Some(self.wrap(step, guard))),
        }
    }

    /// The next matching event, waiting up to `timeout`: a short spin, then
    /// parked. `Ok(None)` when the time ran out, or when
    /// [`WatchCloser::interrupt`] ended the wait early.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<EventRef<'_, K, V>>, RecvError> {
        let deadline = Instant::now().checked_add(timeout);
        self.next_until(deadline)
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<EventRef<'_, K, V>>, RecvError> {
        let shared = self.shared_ref();
        let mut spins = 0;
        loop {
            let guard = shared.index.guard();
            if let Some(step) = self.step(shared, &guard)? {
                return Ok(Some(self.wrap(step, guard)));
            }
            drop(guard);
            if self.interrupted.load(Ordering::Relaxed)
                && self.interrupted.swap(false, Ordering::SeqCst)
            {
                return Ok(None);
            }
            if spins < SPINS + YIELDS {
                if spins < SPINS {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                spins += 1;
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            if !shared.notifier.park_until(deadline, || self.ready(shared)) {
                return Ok(None);
            }
        }
    }

    /// Appends up to `max` matching events (owned) to `buf` without
    /// blocking; returns how many. A lap or close is reported only when no
    /// event was appended (the events before it are returned first).
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
        let shared = self.shared_ref();
        let guard = shared.index.guard();
        let mut n = 0;
        while n < max {
            let step = match self.step(shared, &guard) {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) if n == 0 => return Err(e),
                Err(RecvError::Lagged(l)) => {
                    // Deliver what we have; the next call finds the lap again.
                    self.cursor -= l.missed;
                    break;
                }
                Err(RecvError::Closed) => break,
            };
            match step {
                // SAFETY: `step` found this change record under `guard`, which
                // lives until the end of this function, past `f`'s borrow.
                Step::Live(node) => f(EventRef::Change(unsafe { ChangeRef::guarded(&*node) })),
                Step::SnapshotItem => {
                    let item = self.lent.take().expect("just lent");
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

    /// The shared state, borrowed for as long as the caller's borrow of `self`.
    fn shared_ref<'a>(&self) -> &'a Shared<K, V> {
        let ptr: *const Shared<K, V> = &*self.shared;
        // SAFETY: `self.shared` is an Arc that is never replaced, and every
        // caller uses the reference only while it holds `&mut self`, so the
        // Shared outlives every use.
        unsafe { &*ptr }
    }

    fn wrap<'a>(&'a self, step: Step<K, V>, guard: Guard<'a>) -> EventRef<'a, K, V> {
        match step {
            // SAFETY: `step` found this change record under `guard`, which moves
            // into the ChangeRef and keeps protecting it.
            Step::Live(node) => EventRef::Change(unsafe { ChangeRef::live(node, guard) }),
            Step::SnapshotItem => {
                EventRef::Change(ChangeRef::owned(self.lent.as_ref().expect("just lent")))
            }
            Step::SnapshotDone { at, consistent_at } => {
                EventRef::SnapshotDone { at, consistent_at }
            }
        }
    }

    /// Whether a read would find something (or an end); `SeqCst` for the
    /// parking handshake.
    fn ready(&self, shared: &Shared<K, V>) -> bool {
        if self.closed.load(Ordering::SeqCst)
            || shared.closed.load(Ordering::SeqCst)
            || self.interrupted.load(Ordering::SeqCst)
        {
            return true;
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| !s.items.is_empty() || s.marker_pending)
        {
            return true;
        }
        let guard = shared.index.guard();
        !matches!(
            shared.ring.read(self.cursor, &guard, Ordering::SeqCst),
            Slot::NotYet
        )
    }

    /// Advances to the next matching event.
    fn step(
        &mut self,
        shared: &Shared<K, V>,
        guard: &Guard<'_>,
    ) -> Result<Option<Step<K, V>>, RecvError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RecvError::Closed);
        }
        if self.snapshot.is_some() {
            return self.step_snapshot(shared, guard);
        }
        self.step_live(shared, guard)
    }

    /// `step` while a snapshot is being delivered or still filters live events.
    #[cold]
    fn step_snapshot(
        &mut self,
        shared: &Shared<K, V>,
        guard: &Guard<'_>,
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
                return self.step_live(shared, guard);
            };
            if snap.finished(self.cursor) {
                self.snapshot = None;
                continue;
            }
            match self.step_live(shared, guard)? {
                Some(Step::Live(node)) => {
                    // SAFETY: `step_live` found it under `guard`, still held.
                    let n = unsafe { &*node };
                    let seen = self
                        .snapshot
                        .as_deref()
                        .is_some_and(|s| s.already_seen(n.key(), n.seq.load(Ordering::Relaxed)));
                    if seen {
                        continue;
                    }
                    return Ok(Some(Step::Live(node)));
                }
                other => return Ok(other),
            }
        }
    }

    /// The next matching live event from the ring: where a watcher detects a lap.
    #[inline]
    fn step_live(
        &mut self,
        shared: &Shared<K, V>,
        guard: &Guard<'_>,
    ) -> Result<Option<Step<K, V>>, RecvError> {
        loop {
            match shared.ring.read(self.cursor, guard, Ordering::Acquire) {
                Slot::Mine(node) => {
                    self.cursor += 1;
                    if node.kind != NodeKind::Skip
                        && self.filter.matches(node.key(), Kind::of(node.kind))
                    {
                        return Ok(Some(Step::Live(node)));
                    }
                }
                Slot::NotYet => {
                    if shared.closed.load(Ordering::Acquire) && self.cursor > shared.head() {
                        return Err(RecvError::Closed);
                    }
                    return Ok(None);
                }
                Slot::Lapped => {
                    // Every seq below `next - capacity` may be overwritten; every
                    // seq from it on is not (its overwriter is not claimed yet).
                    let next = shared.next_seq.load(Ordering::SeqCst);
                    let resume_at = (next - shared.ring.capacity()).max(self.cursor + 1);
                    let missed = resume_at - self.cursor;
                    self.cursor = resume_at;
                    return Err(RecvError::Lagged(Lagged { missed, resume_at }));
                }
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

    /// Blocks for the next event; `None` once the watcher or feed is closed.
    /// An [interrupt](WatchCloser::interrupt) does not end it (an iterator
    /// has no way to say "nothing yet"): it is consumed and the wait goes on.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            return match self.next_until(None) {
                Ok(Some(ev)) => Some(Ok(ev.to_owned())),
                Ok(None) => continue, // interrupted
                Err(RecvError::Lagged(l)) => Some(Err(l)),
                Err(RecvError::Closed) => None,
            };
        }
    }
}

/// Closes or interrupts one watcher from any thread, waking it if it is
/// blocked.
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
    /// Makes the watcher's reads return `Closed` from now on.
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

#[cfg(feature = "async")]
impl<K, V> futures_core::Stream for Watcher<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    type Item = Result<Event<K, V>, Lagged>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            match this.try_next() {
                Ok(Some(ev)) => return Poll::Ready(Some(Ok(ev.to_owned()))),
                Err(RecvError::Lagged(l)) => return Poll::Ready(Some(Err(l))),
                Err(RecvError::Closed) => return Poll::Ready(None),
                Ok(None) => {}
            }
            this.shared.notifier.register(cx.waker());
            if !this.ready(this.shared_ref()) {
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
        let notifier = feed.shared.notifier.clone();
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
            !w.interrupted.load(crate::sync::Ordering::SeqCst),
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
        let notifier = feed.shared.notifier.clone();
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
