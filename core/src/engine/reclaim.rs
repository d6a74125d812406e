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
    use std::cell::UnsafeCell;

    use thread_local::ThreadLocal;

    use crate::engine::node::Node;
    use crate::sync::{AtomicPtr, Ordering};
    use seize::Guard as _;

    /// How many retired records a thread collects before handing them to
    /// seize, as one object. Each hand-off costs a process-wide memory
    /// barrier (a `membarrier` system call, microseconds), so small batches
    /// would dominate the write path; the memory held back is this many
    /// records per thread per feed.
    const RECORD_BATCH: usize = 512;

    /// Why records are batched here rather than retired one by one into
    /// seize: seize keeps a 32-byte entry per retired object and frees them
    /// one indirect call at a time, which callgrind counted at about 130 of
    /// a put's 560 instructions (entry, traversal, per-record free through
    /// the thread's node cache). A batch of one feed's records is one seize
    /// object, and is freed in one pass (`pool::free_all`).
    struct Records {
        nodes: Vec<*mut ()>,
        /// Frees every node of the batch: the one node type of this feed
        /// (`Collector` belongs to one `Engine<K, V>`).
        free_all: Option<unsafe fn(Vec<*mut ()>)>,
    }

    // SAFETY: the pointers are retired records, owned by the batch; they are
    // freed by whichever thread reclaims it, like any seize object.
    unsafe impl Send for Records {}

    /// The feed's reclamation domain.
    pub(crate) struct Collector {
        seize: seize::Collector,
        /// Each thread's batch of retired records not yet handed to seize.
        records: ThreadLocal<UnsafeCell<Records>>,
    }

    impl Collector {
        pub(crate) fn new() -> Self {
            Collector {
                // A seize batch of one: what is retired to seize directly
                // is already a batch of records, or a whole table.
                seize: seize::Collector::new().batch_size(1),
                records: ThreadLocal::new(),
            }
        }

        /// Enters the domain: while the guard lives, nothing loaded through
        /// it is freed.
        #[inline]
        pub(crate) fn enter(&self) -> Guard<'_> {
            Guard {
                seize: self.seize.enter(),
                records: &self.records,
            }
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            // Batches still being filled: retired records nobody can reach
            // (no guard outlives the collector).
            for cell in self.records.iter_mut() {
                let batch = cell.get_mut();
                if let Some(free_all) = batch.free_all {
                    // SAFETY: retired, unreachable, owned by the batch.
                    unsafe { free_all(std::mem::take(&mut batch.nodes)) };
                }
            }
            // `seize` drops next and frees the batches handed to it.
        }
    }

    /// A reclamation guard: while it lives, nothing loaded through
    /// [`Guard::protect`] is freed.
    pub(crate) struct Guard<'c> {
        seize: seize::LocalGuard<'c>,
        records: &'c ThreadLocal<UnsafeCell<Records>>,
    }

    impl Guard<'_> {
        /// Loads `ptr` so that the object it points to stays valid while `self` lives.
        #[inline]
        pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
            self.seize.protect(ptr, order)
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
            unsafe { self.seize.defer_retire(ptr, seize::reclaim::boxed) }
        }

        /// Frees a table (`Box<T>`) once no guard can still see it. Seize
        /// takes it at once (batches of one), so a feed that only creates
        /// keys, where no record is ever retired, still lets old tables go.
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box).
        pub(crate) unsafe fn retire_large<T>(&self, ptr: *mut T) {
            // SAFETY: the caller's guarantee.
            unsafe { self.retire_box(ptr) };
        }

        /// Frees a node (back to a thread's cache, `pool.rs`) once no guard
        /// can still see it: it joins this thread's batch, which goes to
        /// seize when full.
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box), for a node from `node::alloc`
        /// of the feed that owns this guard's collector.
        #[inline]
        pub(crate) unsafe fn retire_node<K, V>(&self, ptr: *mut Node<K, V>) {
            unsafe fn free_all<K, V>(nodes: Vec<*mut ()>) {
                // SAFETY: every pointer is a retired `Node<K, V>` of this
                // feed, past its grace period (or the feed is being dropped),
                // freed once: the batch is consumed.
                unsafe { crate::engine::node::free_all::<K, V>(&nodes) }
            }
            unsafe fn reclaim(batch: *mut Records, _: &seize::Collector) {
                // SAFETY: seize calls this once, after every guard that could
                // see a record of the batch; the batch was `Box::into_raw`ed.
                let batch = unsafe { Box::from_raw(batch) };
                if let Some(free_all) = batch.free_all {
                    // SAFETY: as above.
                    unsafe { free_all(batch.nodes) };
                }
            }
            let cell = self.records.get_or(|| {
                UnsafeCell::new(Records {
                    nodes: Vec::with_capacity(RECORD_BATCH),
                    free_all: None,
                })
            });
            // SAFETY: a thread's entry is only touched by that thread (here),
            // and by the collector's drop, which has `&mut`; no reference to
            // it outlives this call.
            let batch = unsafe { &mut *cell.get() };
            // One feed, one node type: every batch of this collector is
            // freed by the same function.
            batch.free_all = Some(free_all::<K, V>);
            batch.nodes.push(ptr.cast());
            if batch.nodes.len() >= RECORD_BATCH {
                let full = Records {
                    nodes: std::mem::replace(&mut batch.nodes, Vec::with_capacity(RECORD_BATCH)),
                    free_all: batch.free_all,
                };
                // SAFETY: every record in `full` was unreachable for guards
                // entered after its own retirement, so after the hand-off
                // too; `reclaim` frees the batch once, after the grace period.
                unsafe {
                    self.seize
                        .defer_retire(Box::into_raw(Box::new(full)), reclaim)
                };
            }
        }
    }
}
