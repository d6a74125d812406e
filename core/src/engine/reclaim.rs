//! Memory reclamation: seize, for the table and the ring.
//!
//! Every record reached through a table slot or a ring slot is loaded under
//! a [`Guard`]; a record (or a whole table after a migration) is retired
//! once it is unreachable for readers that start later, and seize frees it
//! after every guard that could still hold it has ended. Nothing else in the
//! crate names seize.
//!
//! Under `kvfeed_loom`, seize (which loom cannot see) is replaced by the
//! checked stand-in in `reclaim_loom.rs`, with the same shape.

#[cfg(kvfeed_loom)]
pub(crate) use super::reclaim_loom::{Collector, Guard};

#[cfg(not(kvfeed_loom))]
pub(crate) use imp::{Collector, Guard};

#[cfg(not(kvfeed_loom))]
mod imp {
    use crate::engine::node::Node;
    use crate::sync::{AtomicPtr, Ordering};
    use seize::Guard as _;

    /// How many retired records a thread collects before handing them to
    /// seize as one batch. Each hand-off costs a process-wide memory barrier
    /// (a `membarrier` system call, microseconds), so small batches dominate
    /// the write path; memory held in batches is this many records per
    /// thread.
    const RETIRE_BATCH: usize = 512;

    /// The feed's reclamation domain.
    pub(crate) struct Collector(seize::Collector);

    impl Collector {
        pub(crate) fn new() -> Self {
            Collector(seize::Collector::new().batch_size(RETIRE_BATCH))
        }

        /// Enters the domain: while the guard lives, nothing loaded through
        /// it is freed.
        #[inline]
        pub(crate) fn enter(&self) -> Guard<'_> {
            Guard(self.0.enter())
        }
    }

    /// A reclamation guard: while it lives, nothing loaded through
    /// [`Guard::protect`] is freed.
    pub(crate) struct Guard<'c>(seize::LocalGuard<'c>);

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
            // SAFETY: the caller guarantees `ptr` is an unreachable Box retired
            // once; `seize::reclaim::boxed` frees it as a Box after every guard
            // that could see it.
            unsafe { self.0.defer_retire(ptr, seize::reclaim::boxed) }
        }

        /// Frees a table (`Box<T>`) once no guard can still see it, handing
        /// this thread's batch of retired records to seize now: a table is
        /// large, and in a feed that only creates keys no other retirement
        /// would fill the batch and let the old table go.
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box).
        pub(crate) unsafe fn retire_large<T>(&self, ptr: *mut T) {
            // SAFETY: the caller's guarantee.
            unsafe { self.retire_box(ptr) };
            self.0.flush();
        }

        /// Frees a node (`node::free`: back to a thread's cache) once no
        /// guard can still see it.
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box), for a node from `node::alloc`.
        #[inline]
        pub(crate) unsafe fn retire_node<K, V>(&self, ptr: *mut Node<K, V>) {
            unsafe fn reclaim<K, V>(ptr: *mut Node<K, V>, _: &seize::Collector) {
                // SAFETY: seize calls this once, after every guard that could
                // see the node; it came from `node::alloc` (caller of `retire_node`).
                unsafe { crate::engine::node::free(ptr) }
            }
            // SAFETY: the caller's guarantee; `reclaim` runs once, after the
            // grace period.
            unsafe { self.0.defer_retire(ptr, reclaim::<K, V>) }
        }
    }
}
