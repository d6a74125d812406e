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
    use std::cell::UnsafeCell;

    use thread_local::ThreadLocal;

    use super::{Waiting, CHECK_EVERY};

    /// One thread's list.
    struct List<K, V>(UnsafeCell<Vec<Waiting<K, V>>>);

    // SAFETY: a list is touched only by its own thread (`push`) or by the
    // owner of `&mut Pending` (`drain_all`); the records in it are retired
    // by whichever holds it, like any record.
    unsafe impl<K, V> Send for List<K, V> {}

    pub(crate) struct Pending<K, V> {
        lists: ThreadLocal<List<K, V>>,
    }

    impl<K, V> Pending<K, V> {
        pub(crate) fn new() -> Self {
            Pending {
                lists: ThreadLocal::new(),
            }
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
            let list = self
                .lists
                .get_or(|| List(UnsafeCell::new(Vec::with_capacity(CHECK_EVERY))));
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
