//! Memory reclamation: one scheme (seize) for the key index and the ring.
//!
//! papaya, the key index, is built on seize; the ring's event records are
//! retired through the *same* collector, so one guard protects a lookup in the
//! index and every event pointer read from a cell or a ring slot. Nothing
//! else in the crate names seize.
//!
//! Under `kvfeed_loom`, seize (which loom cannot see) is replaced by a
//! checked, quiescence-based stand-in with the same shape: a retired record
//! is dropped once no guard is alive, deferred functions run then too, and it
//! panics when a guard loads a record retired before the guard was entered or
//! when a record is retired twice (see the loom module's doc below). seize's
//! real grace periods are covered by Miri and the stress tests.

#[cfg(not(kvfeed_loom))]
mod imp {
    use crate::sync::{AtomicPtr, Ordering};
    use seize::Guard as _;

    /// A reclamation guard: while it lives, nothing loaded through
    /// [`Guard::protect`] is freed.
    pub(crate) struct Guard<'c>(pub(crate) seize::LocalGuard<'c>);

    impl Guard<'_> {
        /// Loads `ptr` so that the object it points to stays valid while `self` lives.
        #[inline]
        pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
            self.0.protect(ptr, order)
        }

        /// Frees `ptr` (a `Box<T>`) once no guard can still see it.
        ///
        /// # Safety
        /// `ptr` came from `Box::into_raw`, is no longer reachable by any
        /// thread that enters a guard from now on, and is retired only once.
        #[inline]
        pub(crate) unsafe fn retire_box<T>(&self, ptr: *mut T) {
            // SAFETY: the caller guarantees `ptr` is an unreachable Box retired once;
            // `seize::reclaim::boxed` frees it as a Box after every guard that could see it.
            unsafe { self.0.defer_retire(ptr, seize::reclaim::boxed) }
        }

        /// Runs `f(ptr)` once no guard alive now can still see what `ptr`
        /// refers to (a deferred reference-count release).
        ///
        /// # Safety
        /// `f` is sound to call once with `ptr` at that point.
        #[inline]
        pub(crate) unsafe fn defer<T>(&self, ptr: *mut T, f: unsafe fn(*mut T, &Collector)) {
            // SAFETY: seize calls `f` once, after every guard active now has ended.
            unsafe { self.0.defer_retire(ptr, f) }
        }
    }

    pub(crate) use seize::Collector;

    /// Frees `ptr` (a `Box<T>`) through `collector`, from inside a deferred
    /// function (which has the collector but no guard).
    ///
    /// # Safety
    /// As [`Guard::retire_box`].
    #[inline]
    pub(crate) unsafe fn retire_box_in<T>(collector: &Collector, ptr: *mut T) {
        // SAFETY: the caller's guarantee; seize allows retiring from a reclaimer.
        unsafe { collector.retire(ptr, seize::reclaim::boxed) }
    }
}

#[cfg(kvfeed_loom)]
mod imp {
    //! Loom stand-in for seize: a checked, quiescence-based collector.
    //!
    //! What it models: a retired record is dropped (`drop_in_place`) once no
    //! guard is alive, that is, after every guard that could still hold it has
    //! ended: reclamation does happen while the models run, on whichever
    //! thread ends the last guard. Each retirement is a loom `fetch_add`
    //! (`Release`) on `retired` and each guard entry a loom `fetch_add(0)`
    //! (`Acquire`), which reads the newest count (skipped when the thread
    //! already synchronized with every retirement so far): so a guard entered
    //! after a retirement happens-after it, as seize's fences ensure, and a
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
    //! What it does not model: seize's own algorithm (its batches, fences and
    //! reservation lists), or a real free racing with a reader; that is left
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

    /// A deferred function (`Guard::defer`).
    type Action = Box<dyn FnOnce(&Collector)>;

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
        /// Deferred functions (`Guard::defer`), run once no guard is alive.
        actions: Vec<Action>,
        /// Retirements so far (the value of `Collector::retired`).
        total: u64,
        /// Per loom thread: the count its last guard entry synchronized with.
        synced: HashMap<loom::thread::ThreadId, u64>,
    }

    /// Loom stand-in for seize's collector.
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

        /// Records `ptr` as retired; `stamp` is its retirement number, or 0
        /// for the index's own boxes (never loaded through `protect`).
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
            let actions = std::mem::take(&mut books.actions);
            drop(books);
            for r in &batch {
                // SAFETY: retired once (checked in `push`), unreachable for
                // guards entered since, and every older guard has ended.
                unsafe { (r.drop_value)(r.ptr) }
            }
            self.books().dropped.extend(batch);
            // Deferred functions may retire more records: those wait for the
            // next time no guard is alive (or for the collector's drop).
            for action in actions {
                action(self);
            }
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
            // Run deferred functions and drop retired values until neither
            // produces more (a deferred release may retire a record).
            loop {
                let mut books = self.books();
                let batch = std::mem::take(&mut books.pending);
                let actions = std::mem::take(&mut books.actions);
                drop(books);
                if batch.is_empty() && actions.is_empty() {
                    break;
                }
                for r in &batch {
                    // SAFETY: retired once, never dropped; no guard is left.
                    unsafe { (r.drop_value)(r.ptr) }
                }
                self.books().dropped.extend(batch);
                for action in actions {
                    action(self);
                }
            }
            let books = std::mem::take(&mut *self.books());
            for r in &books.dropped {
                // SAFETY: each value was dropped exactly once above or in `exit`.
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
                let stamp = self.collector.books().stamps.get(&(p as usize)).copied();
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
        pub(crate) unsafe fn retire_box<T>(&self, ptr: *mut T) {
            self.collector.retire_stamped(ptr);
        }

        /// Runs `f(ptr)` once no guard is alive.
        ///
        /// # Safety
        /// As the non-loom version.
        pub(crate) unsafe fn defer<T: 'static>(
            &self,
            ptr: *mut T,
            f: unsafe fn(*mut T, &Collector),
        ) {
            self.collector
                .books()
                .actions
                .push(Box::new(move |c: &Collector| {
                    // SAFETY: the caller's guarantee: sound once no guard is alive.
                    unsafe { f(ptr, c) }
                }));
        }

        /// Frees a box of the index stand-in's own (never loaded through
        /// `protect`) once no guard can hold it; no loom operation.
        ///
        /// # Safety
        /// `ptr` came from `Box::into_raw`, is handed over once, and is used
        /// by nobody after the guards alive now have ended.
        pub(crate) unsafe fn defer_free<T>(&self, ptr: *mut T) {
            self.collector.push(ptr, 0);
        }
    }

    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.collector.exit();
        }
    }
}

pub(crate) use imp::{Collector, Guard};

/// Retires a `Box<T>` from inside a deferred function (loom stand-in).
///
/// # Safety
/// As `Guard::retire_box`.
#[cfg(kvfeed_loom)]
pub(crate) unsafe fn retire_box_in<T>(collector: &Collector, ptr: *mut T) {
    collector.retire_stamped(ptr);
}

#[cfg(not(kvfeed_loom))]
pub(crate) use imp::retire_box_in;
