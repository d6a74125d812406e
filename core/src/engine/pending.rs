//! Records waiting to be retired: the predecessors of records that left the
//! ring, kept until their own ring slot has moved on too (`node.rs`), and
//! checked in bulk (`ring.rs`, step 5).
//!
//! Why in bulk: whether a record's slot has moved on is a load of that
//! slot's stamp, a random line of the ring. Checked one record per put it
//! was a dependent cache miss on every put's path (perf: 11 % of a put's
//! samples; skipping it saved 9-11 ns of ~130). A thread instead collects
//! [`CHECK_EVERY`] of them and checks them together: it asks for every line
//! first, then reads them, so the misses overlap. A record whose slot has
//! not moved on yet (its publisher, a lap later, is preempted) stays for the
//! thread's next check.
//!
//! Each thread has its own list for each feed (no sharing, no lock); under
//! loom the lists are one list behind a lock, checked at every publish, so
//! a model sees a record retired as soon as the protocol allows it.

use crate::engine::node::Node;

/// Records a thread collects before it checks them (and the most a thread
/// that stops writing holds back, besides records whose slot has not moved
/// on).
#[cfg(not(kvfeed_loom))]
const CHECK_EVERY: usize = 32;

/// A waiting record and its seq.
pub(crate) type Waiting<K, V> = (*mut Node<K, V>, u64);

#[cfg(not(kvfeed_loom))]
pub(crate) use imp::Pending;

#[cfg(kvfeed_loom)]
pub(crate) use imp_loom::Pending;

#[cfg(not(kvfeed_loom))]
mod imp {
    use std::cell::{Cell, UnsafeCell};
    use std::sync::atomic::{AtomicU64, Ordering};

    use thread_local::ThreadLocal;

    use super::{Waiting, CHECK_EVERY};

    /// Ids of `Pending`s: unique in the process, never reused.
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);

    thread_local! {
        /// This thread's list of the `Pending` it pushed to last: its id and
        /// the list. A `ThreadLocal` look-up was about 30 of a put's
        /// instructions under callgrind; a thread writing to one feed finds
        /// its list here instead. An entry is used only when the id matches,
        /// and ids are never reused, so an entry of a dropped feed is never
        /// followed.
        static LAST: Cell<(u64, *const ())> = const { Cell::new((0, std::ptr::null())) };
    }

    /// One thread's list.
    struct List<K, V>(UnsafeCell<Vec<Waiting<K, V>>>);

    // SAFETY: a list is touched only by its own thread (`push`) or by the
    // owner of `&mut Pending` (`drain_all`); the records in it are retired
    // by whichever holds it, like any record.
    unsafe impl<K, V> Send for List<K, V> {}

    pub(crate) struct Pending<K, V> {
        /// This `Pending`'s id (see `LAST`).
        id: u64,
        lists: ThreadLocal<List<K, V>>,
    }

    impl<K, V> Pending<K, V> {
        pub(crate) fn new() -> Self {
            Pending {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                lists: ThreadLocal::new(),
            }
        }

        /// This thread's list.
        #[inline]
        fn list(&self) -> &List<K, V> {
            let last = LAST.try_with(|last| {
                let (id, list) = last.get();
                if id == self.id {
                    return list.cast::<List<K, V>>();
                }
                let list: *const List<K, V> = self.look_up();
                last.set((self.id, list.cast()));
                list
            });
            match last {
                // SAFETY: the id matched, so the pointer is this thread's
                // list in this very `Pending` (ids are never reused), which
                // `&self` keeps alive; a `ThreadLocal` entry never moves.
                Ok(list) => unsafe { &*list },
                // Thread-locals are being destroyed: the slow look-up.
                Err(_) => self.look_up(),
            }
        }

        /// This thread's list, from the `ThreadLocal` (created on first use).
        fn look_up(&self) -> &List<K, V> {
            self.lists
                .get_or(|| List(UnsafeCell::new(Vec::with_capacity(CHECK_EVERY))))
        }

        /// Adds a record to this thread's list; once the list holds
        /// `CHECK_EVERY`, calls `check` on it (which removes what it
        /// retires).
        #[inline]
        pub(crate) fn push(
            &self,
            waiting: Waiting<K, V>,
            check: impl FnOnce(&mut Vec<Waiting<K, V>>),
        ) {
            let list = self.list();
            // SAFETY: this thread's own list (see `List`); no reference to it
            // outlives this call, and `check` does not push.
            let list = unsafe { &mut *list.0.get() };
            list.push(waiting);
            if list.len() >= CHECK_EVERY {
                check(list);
            }
        }

        /// Checks at every publish: only under loom.
        #[inline]
        pub(crate) fn check_now(&self, _check: impl FnOnce(&mut Vec<Waiting<K, V>>)) {}

        /// Every waiting record (for the feed's drop).
        pub(crate) fn drain_all(&mut self) -> Vec<Waiting<K, V>> {
            self.lists
                .iter_mut()
                .flat_map(|list| std::mem::take(list.0.get_mut()))
                .collect()
        }
    }
}

#[cfg(kvfeed_loom)]
mod imp_loom {
    use super::Waiting;
    use crate::sync::{AtomicUsize, Mutex, Ordering};

    /// The real lists with `CHECK_EVERY` = 1 and one list for all threads;
    /// `len` lets a publish skip the lock when nothing waits (as the real
    /// code skips the check).
    pub(crate) struct Pending<K, V> {
        len: AtomicUsize,
        list: Mutex<Vec<Waiting<K, V>>>,
    }

    impl<K, V> Pending<K, V> {
        pub(crate) fn new() -> Self {
            Pending {
                len: AtomicUsize::new(0),
                list: Mutex::new(Vec::new()),
            }
        }

        pub(crate) fn push(
            &self,
            waiting: Waiting<K, V>,
            check: impl FnOnce(&mut Vec<Waiting<K, V>>),
        ) {
            let mut list = crate::sync::lock(&self.list);
            list.push(waiting);
            check(&mut list);
            self.len.store(list.len(), Ordering::Relaxed);
        }

        pub(crate) fn check_now(&self, check: impl FnOnce(&mut Vec<Waiting<K, V>>)) {
            if self.len.load(Ordering::Relaxed) == 0 {
                return;
            }
            // Whoever holds the lock is checking the same list.
            let Some(mut list) = crate::sync::try_lock(&self.list) else {
                return;
            };
            check(&mut list);
            self.len.store(list.len(), Ordering::Relaxed);
        }

        pub(crate) fn drain_all(&mut self) -> Vec<Waiting<K, V>> {
            std::mem::take(&mut *crate::sync::lock(&self.list))
        }
    }
}
