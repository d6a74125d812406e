//! Loom stand-in for the feed's collector (`reclaim.rs` on `epoch.rs`): a
//! checked, quiescence-based collector.
//!
//! What it models: a retired record is dropped (`drop_in_place`) once no
//! guard is alive, that is, after every guard that could still hold it has
//! ended: reclamation does happen while the models run, on whichever
//! thread ends the last guard. Each retirement is a loom `fetch_add`
//! (`Release`) on `retired` and each guard entry a loom `fetch_add(0)`
//! (`Acquire`), which reads the newest count (skipped when the thread
//! already synchronized with every retirement so far): so a guard entered
//! after a retirement happens-after it, as the epoch protocol's fences ensure, and a
//! load through that guard cannot legitimately return the retired pointer.
//!
//! What it checks (panicking, so loom reports the interleaving):
//! * `protect` never returns a record retired before the guard was
//!   entered (a record retired while still reachable: a reference count
//!   released too early, or released twice);
//! * a record is never retired twice (a double free).
//!
//! A dropped record's memory is kept until the collector drops, so an
//! address is never reused while the checks look it up.
//!
//! What it does not model: the epoch protocol (its seals, fences and
//! participants; `loom-tests/tests/epoch.rs` models it), or a real free racing with a reader; that is left
//! to Miri and the stress tests. The bookkeeping behind the checks uses
//! std's mutex, which loom does not see (loom runs every thread on one OS
//! thread, so it is never contended).
use std::collections::HashMap;

use crate::sync::{AtomicPtr, AtomicU64, Ordering};

/// A retired `Box<T>`: its address, how to drop its `T` in place, and how
/// to free its memory without dropping the `T`.
struct Retired {
    ptr: *mut (),
    drop_value: unsafe fn(*mut ()),
    free_memory: unsafe fn(*mut ()),
}

#[derive(Default)]
struct Books {
    /// Guards alive.
    active: usize,
    /// Retired, not dropped yet.
    pending: Vec<Retired>,
    /// Dropped in place; memory kept until the collector drops.
    dropped: Vec<Retired>,
    /// Address of every retired record (pending or dropped) -> its
    /// retirement number (1-based).
    stamps: HashMap<usize, u64>,
    /// Retirements so far (the value of `Collector::retired`).
    total: u64,
    /// Per loom thread: the count its last guard entry synchronized with.
    synced: HashMap<loom::thread::ThreadId, u64>,
}

/// Loom stand-in for the feed's collector.
pub(crate) struct Collector {
    /// Retirements so far; see the module doc for why it is loom's.
    retired: AtomicU64,
    books: std::sync::Mutex<Books>,
}

// SAFETY: the raw pointers in `books` are owned, unreachable boxes of
// `Send + Sync` records, dropped and freed once, under the mutex's
// bookkeeping.
unsafe impl Send for Collector {}
// SAFETY: as above; all access to `books` goes through the mutex.
unsafe impl Sync for Collector {}

impl Collector {
    pub(crate) fn new() -> Self {
        Collector {
            retired: AtomicU64::new(0),
            books: std::sync::Mutex::new(Books::default()),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The real collector looks for freeable garbage every so many seqs;
    /// the stand-in frees as soon as the last guard ends.
    #[inline]
    pub(crate) fn tick(&self, _seq: u64) {}

    pub(crate) fn enter(&self) -> Guard<'_> {
        let me = loom::thread::current().id();
        let (total, synced) = {
            let mut books = self.books();
            books.active += 1;
            (books.total, books.synced.get(&me).copied())
        };
        // An RMW reads the newest value: this guard happens-after every
        // retirement so far, and knows how many there were. When nothing
        // was retired since this thread's last such RMW, that RMW already
        // ordered every retirement before this guard: skipping a new one
        // keeps a watcher's re-check loop from being a chain of loom
        // operations that conflict with every retirement (which made the
        // parking models explore millions of equivalent executions).
        let entered_at = if synced == Some(total) {
            total
        } else {
            let seen = self.retired.fetch_add(0, Ordering::Acquire);
            self.books().synced.insert(me, seen);
            seen
        };
        Guard {
            collector: self,
            entered_at,
        }
    }

    /// Records `ptr` as retired; `stamp` is its retirement number.
    fn push<T>(&self, ptr: *mut T, stamp: u64) {
        unsafe fn drop_value<T>(p: *mut ()) {
            // SAFETY: `p` is the live `Box<T>` pushed below, dropped once.
            unsafe { std::ptr::drop_in_place(p.cast::<T>()) }
        }
        unsafe fn free_memory<T>(p: *mut ()) {
            // SAFETY: `p` came from `Box::<T>::into_raw` and its `T` was
            // dropped in place; `ManuallyDrop` frees the memory only.
            drop(unsafe { Box::from_raw(p.cast::<std::mem::ManuallyDrop<T>>()) })
        }
        let mut books = self.books();
        // Boxes of a zero-sized type share one dangling address.
        if std::mem::size_of::<T>() != 0 {
            let previous = books.stamps.insert(ptr as usize, stamp);
            assert!(
                previous.is_none(),
                "kvfeed loom collector: {ptr:p} retired twice (double free)"
            );
        }
        books.pending.push(Retired {
            ptr: ptr.cast(),
            drop_value: drop_value::<T>,
            free_memory: free_memory::<T>,
        });
    }

    fn exit(&self) {
        let mut books = self.books();
        books.active -= 1;
        if books.active != 0 {
            return;
        }
        // No guard is alive: nothing retired can still be held.
        let batch = std::mem::take(&mut books.pending);
        drop(books);
        for r in &batch {
            // SAFETY: retired once (checked in `push`), unreachable for
            // guards entered since, and every older guard has ended.
            unsafe { (r.drop_value)(r.ptr) }
        }
        self.books().dropped.extend(batch);
    }

    /// Retires `ptr` with a fresh retirement number.
    pub(crate) fn retire_stamped<T>(&self, ptr: *mut T) {
        let stamp = self.retired.fetch_add(1, Ordering::Release) + 1;
        {
            let mut books = self.books();
            books.total = books.total.max(stamp);
        }
        self.push(ptr, stamp);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Dropping a record may retire nothing (records own no records), so
        // one pass drops every retired value; then the memory is freed.
        let mut books = std::mem::take(&mut *self.books());
        for r in &books.pending {
            // SAFETY: retired once, never dropped; no guard is left.
            unsafe { (r.drop_value)(r.ptr) }
        }
        books.dropped.append(&mut books.pending);
        for r in &books.dropped {
            // SAFETY: each value was dropped exactly once, here or in `exit`.
            unsafe { (r.free_memory)(r.ptr) }
        }
    }
}

/// Loom stand-in guard: while it lives, nothing it loaded is dropped.
pub(crate) struct Guard<'c> {
    collector: &'c Collector,
    /// Retirements that happened before this guard was entered.
    entered_at: u64,
}

impl Guard<'_> {
    /// Loads `ptr`, checking that the record was not retired before this
    /// guard was entered.
    pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
        let p = ptr.load(order);
        if !p.is_null() {
            let addr = p as usize & !7; // without the table's tag bits
            let stamp = self.collector.books().stamps.get(&addr).copied();
            if let Some(stamp) = stamp.filter(|&s| s != 0) {
                assert!(
                    stamp > self.entered_at,
                    "kvfeed loom collector: loaded {p:p}, which was retirement #{stamp}, \
                     through a guard entered after {} retirements: a record was retired \
                     while still reachable",
                    self.entered_at
                );
            }
        }
        p
    }

    /// # Safety
    /// As the non-loom version: an unreachable Box, retired once.
    pub(crate) unsafe fn retire_large<T>(&self, ptr: *mut T) {
        self.collector.retire_stamped(ptr);
    }

    /// # Safety
    /// As `retire_large` (under loom, nodes are plain boxes).
    pub(crate) unsafe fn retire_node<T>(&self, ptr: *mut T) {
        self.collector.retire_stamped(ptr);
    }

    /// The non-loom version's batch retirer; here each node is retired at
    /// once.
    pub(crate) fn retirer<K, V>(&self) -> Retirer<'_, K, V> {
        Retirer {
            guard: self,
            _node: std::marker::PhantomData,
        }
    }
}

/// See [`Guard::retirer`].
pub(crate) struct Retirer<'g, K, V> {
    guard: &'g Guard<'g>,
    _node: std::marker::PhantomData<*mut crate::engine::node::Node<K, V>>,
}

impl<K, V> Retirer<'_, K, V> {
    /// # Safety
    /// As [`Guard::retire_node`].
    pub(crate) unsafe fn retire(&mut self, ptr: *mut crate::engine::node::Node<K, V>) {
        // SAFETY: the caller's guarantee.
        unsafe { self.guard.retire_node(ptr) }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.collector.exit();
    }
}
