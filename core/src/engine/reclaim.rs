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

    /// Retired records per seize object (a "part"): a thread fills one
    /// part at a time and hands it to seize when full.
    const PART: usize = 32;

    /// Parts per seize batch: seize frees a batch once it holds at least one
    /// object per thread that is inside a guard, and each batch costs a
    /// process-wide memory barrier (a `membarrier` system call,
    /// microseconds). So a batch is 512 records, freed at once with up to
    /// 16 threads inside guards; with more, seize waits for more parts. The
    /// memory held back is about 512 records per writing thread.
    const PARTS: usize = 16;

    /// Why records are batched here rather than retired one by one into
    /// seize: seize keeps a 32-byte entry per retired object and frees them
    /// one indirect call at a time, which callgrind counted at about 130 of
    /// a put's 560 instructions (entry, traversal, per-record free through
    /// the thread's node cache). A part is one seize object and one
    /// allocation, freed in one pass (`pool::free_all`).
    struct Part {
        len: usize,
        /// Frees the records of a part: the one node type of this feed
        /// (`Collector` belongs to one `Engine<K, V>`).
        free_all: unsafe fn(&[*mut ()]),
        nodes: [*mut (); PART],
    }

    // SAFETY: the pointers are retired records, owned by the part; they are
    // freed by whichever thread reclaims it, like any seize object.
    unsafe impl Send for Part {}

    /// A thread's part being filled (null: none yet).
    struct Filling(*mut Part);

    // SAFETY: only the owning thread touches its entry (and the collector's
    // drop, with `&mut`); the part is plain memory.
    unsafe impl Send for Filling {}

    /// The feed's reclamation domain.
    pub(crate) struct Collector {
        seize: seize::Collector,
        /// Each thread's part of retired records not yet handed to seize.
        records: ThreadLocal<UnsafeCell<Filling>>,
    }

    impl Collector {
        pub(crate) fn new() -> Self {
            Collector {
                // What is retired to seize directly is a part of records,
                // or a whole table.
                seize: seize::Collector::new().batch_size(PARTS),
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
            // Parts still being filled: retired records nobody can reach (no
            // guard outlives the collector).
            for cell in self.records.iter_mut() {
                let part = cell.get_mut().0;
                if !part.is_null() {
                    // SAFETY: the thread's own part, never handed to seize;
                    // its records are retired and unreachable.
                    unsafe { free_part(part) };
                }
            }
            // `seize` drops next and frees the parts handed to it.
        }
    }

    /// Frees a part and its records.
    ///
    /// # Safety
    /// `part` came from `Box::into_raw`, its first `len` records are retired
    /// and past their grace period, and nobody uses any of it again.
    unsafe fn free_part(part: *mut Part) {
        // SAFETY: the caller's guarantee.
        let part = unsafe { Box::from_raw(part) };
        // SAFETY: as above.
        unsafe { (part.free_all)(&part.nodes[..part.len]) };
    }

    /// A reclamation guard: while it lives, nothing loaded through
    /// [`Guard::protect`] is freed.
    pub(crate) struct Guard<'c> {
        seize: seize::LocalGuard<'c>,
        records: &'c ThreadLocal<UnsafeCell<Filling>>,
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

        /// Frees a table (`Box<T>`) once no guard can still see it, handing
        /// this thread's seize batch over now: a table is large, and in a
        /// feed that only creates keys no retired record would ever fill the
        /// batch and let the old table go (`tests/memory.rs`).
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box).
        pub(crate) unsafe fn retire_large<T>(&self, ptr: *mut T) {
            // SAFETY: the caller's guarantee.
            unsafe { self.retire_box(ptr) };
            self.seize.flush();
        }

        /// Frees a node (back to a thread's cache, `pool.rs`) once no guard
        /// can still see it: it joins this thread's part, which goes to
        /// seize when full.
        ///
        /// # Safety
        /// As [`retire_box`](Self::retire_box), for a node from `node::alloc`
        /// of the feed that owns this guard's collector.
        #[inline]
        pub(crate) unsafe fn retire_node<K, V>(&self, ptr: *mut Node<K, V>) {
            // SAFETY: the caller's guarantee.
            unsafe { self.retirer::<K, V>().retire(ptr) }
        }

        /// This thread's part, looked up once for several retirements.
        #[inline]
        pub(crate) fn retirer<K, V>(&self) -> Retirer<'_, K, V> {
            let cell = self
                .records
                .get_or(|| UnsafeCell::new(Filling(std::ptr::null_mut())));
            Retirer {
                filling: cell,
                seize: &self.seize,
                _node: std::marker::PhantomData,
            }
        }
    }

    /// Retires nodes into this thread's part (`Guard::retirer`).
    pub(crate) struct Retirer<'g, K, V> {
        filling: &'g UnsafeCell<Filling>,
        seize: &'g seize::LocalGuard<'g>,
        _node: std::marker::PhantomData<*mut Node<K, V>>,
    }

    impl<K, V> Retirer<'_, K, V> {
        /// As [`Guard::retire_node`].
        ///
        /// # Safety
        /// As [`Guard::retire_node`].
        #[inline]
        pub(crate) unsafe fn retire(&mut self, ptr: *mut Node<K, V>) {
            unsafe fn free_all<K, V>(nodes: &[*mut ()]) {
                // SAFETY: every pointer is a retired `Node<K, V>` of this
                // feed, past its grace period (or the feed is being dropped),
                // freed once: the part is consumed.
                unsafe { crate::engine::node::free_all::<K, V>(nodes) }
            }
            unsafe fn reclaim(part: *mut Part, _: &seize::Collector) {
                // SAFETY: seize calls this once, after every guard that could
                // see a record of the part; the part was `Box::into_raw`ed
                // and is full.
                unsafe { free_part(part) }
            }
            // SAFETY: a thread's entry is only touched by that thread (a
            // `Retirer` is not `Send`, and a thread uses one at a time), and
            // by the collector's drop, which has `&mut`; no reference to it
            // outlives this call.
            let filling = unsafe { &mut *self.filling.get() };
            if filling.0.is_null() {
                filling.0 = Box::into_raw(Box::new(Part {
                    len: 0,
                    free_all: free_all::<K, V>,
                    nodes: [std::ptr::null_mut(); PART],
                }));
            }
            // SAFETY: this thread's part, not yet handed over.
            let part = unsafe { &mut *filling.0 };
            part.nodes[part.len] = ptr.cast();
            part.len += 1;
            if part.len == PART {
                let full = std::mem::replace(&mut filling.0, std::ptr::null_mut());
                // SAFETY: every record in the part was unreachable for guards
                // entered after its own retirement, so after the hand-off
                // too; `reclaim` frees the part once, after the grace period.
                unsafe { self.seize.defer_retire(full, reclaim) };
            }
        }
    }
}
