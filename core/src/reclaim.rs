//! Memory reclamation: one scheme (seize) for the key index and the ring.
//!
//! papaya, the key index, is built on seize; the ring's event records are
//! retired through the *same* collector, so one guard protects a lookup in the
//! index and every event pointer read from a cell or a ring slot. Nothing
//! else in the crate names seize.
//!
//! Under `kvfeed_loom`, seize (which loom cannot see) is replaced by a
//! stand-in with the same shape that defers every retirement until the
//! collector is dropped. It keeps the models honest about *when* a record is
//! retired (each exactly once, after its last owner let go) but does not model
//! seize's grace periods; that part is covered by Miri and the stress tests.

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
    }
}

#[cfg(kvfeed_loom)]
mod imp {
    use crate::sync::{AtomicPtr, Mutex, Ordering};

    type Retired = (*mut (), unsafe fn(*mut ()));

    /// Loom stand-in for seize's collector: retirements are kept until drop.
    #[derive(Default)]
    pub(crate) struct Collector {
        retired: Mutex<Vec<Retired>>,
    }

    // SAFETY: the raw pointers in `retired` are owned, unreachable boxes of
    // `Send + Sync` records; they are only freed in `drop`, with `&mut self`.
    unsafe impl Send for Collector {}
    // SAFETY: as above; access to the list goes through the mutex.
    unsafe impl Sync for Collector {}

    impl Collector {
        pub(crate) fn new() -> Self {
            Self::default()
        }
        pub(crate) fn enter(&self) -> Guard<'_> {
            Guard(self)
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            let retired: Vec<Retired> = crate::sync::lock(&self.retired).drain(..).collect();
            for (ptr, free) in retired {
                // SAFETY: each entry was pushed once by `retire_box` with its matching free fn.
                unsafe { free(ptr) }
            }
        }
    }

    /// Loom stand-in guard.
    pub(crate) struct Guard<'c>(&'c Collector);

    impl Guard<'_> {
        pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
            ptr.load(order)
        }

        /// # Safety
        /// As the non-loom version: an unreachable Box, retired once.
        pub(crate) unsafe fn retire_box<T>(&self, ptr: *mut T) {
            unsafe fn free<T>(p: *mut ()) {
                // SAFETY: `p` is the `Box<T>` pointer pushed below.
                drop(unsafe { Box::from_raw(p.cast::<T>()) })
            }
            crate::sync::lock(&self.0.retired).push((ptr.cast(), free::<T>));
        }
    }
}

pub(crate) use imp::Guard;
#[cfg(kvfeed_loom)]
pub(crate) use imp::Collector;
