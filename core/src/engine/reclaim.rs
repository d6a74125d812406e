//! Memory reclamation for the table and the ring.
//!
//! Every record reached through a table slot or a ring slot is loaded under
//! a [`Guard`]; a record (or a whole table after a migration) is retired
//! once it is unreachable for readers that start later, and freed after
//! every guard that could still hold it has ended. The protocol is
//! epoch-based reclamation (`epoch.rs`, which says why it is ours); this
//! file is a feed's side of it: where retired records wait, and when they
//! are sealed and freed.
//!
//! Under `kvfeed_loom` the feed's collector is replaced by the checked
//! stand-in in `reclaim_loom.rs`, with the same shape; `epoch.rs` has a
//! loom model of its own (`loom-tests/tests/epoch.rs`).

#[cfg(kvfeed_loom)]
pub(crate) use super::reclaim_loom::{Collector, Guard};

/// Records a thread retires before it seals them. A seal costs a
/// process-wide barrier (`epoch.rs`: about 5 us with another thread
/// running), so it is paid once per this many records (2.5 ns a put); a
/// sealed batch is freed two epoch advances later, so a writing thread
/// holds back two to three batches (about 150 KB for `u64 -> u64`).
#[cfg_attr(kvfeed_loom, allow(dead_code))]
pub(crate) const SEAL_EVERY: usize = 2048;

#[cfg(not(kvfeed_loom))]
pub(crate) use imp::{Collector, Guard};

#[cfg(not(kvfeed_loom))]
mod imp {
    use std::cell::UnsafeCell;
    use std::collections::VecDeque;

    use thread_local::ThreadLocal;

    use crate::engine::epoch::{self, Pin};
    use crate::engine::node::Node;
    use crate::sync::{lock, AtomicBool, AtomicPtr, Mutex, Ordering};

    use super::SEAL_EVERY;

    /// A put whose seq is a multiple of this, while sealed garbage waits,
    /// tries to advance the epoch and frees what became freeable: a feed
    /// that only creates keys retires no records, so nothing else would free
    /// the tables its migrations left behind. Rare, because it is a seal
    /// (a process-wide barrier), and garbage waits nearly always: the
    /// writers' own seals are what normally advance the epoch.
    const COLLECT_EVERY: u64 = 1 << 14;

    /// What waits for its grace period.
    enum Garbage {
        /// Retired records of the feed, freed in one pass (`pool::free_all`).
        Records {
            nodes: Vec<*mut ()>,
            free_all: unsafe fn(&[*mut ()]),
        },
        /// A retired `Box<T>` (a table).
        Boxed {
            ptr: *mut (),
            drop: unsafe fn(*mut ()),
        },
    }

    // SAFETY: the pointers are retired objects owned by the garbage; they
    // are freed by whichever thread finds them freeable (`K`, `V` are
    // `Send`, as the feed requires).
    unsafe impl Send for Garbage {}

    impl Garbage {
        /// Frees what it holds.
        ///
        /// # Safety
        /// Past its grace period (or the feed is being dropped), freed once.
        unsafe fn free(self) {
            match self {
                // SAFETY: the caller's guarantee; `free_all` is the node
                // type's own.
                Garbage::Records { nodes, free_all } => unsafe { free_all(&nodes) },
                // SAFETY: as above; `drop` is the box's own.
                Garbage::Boxed { ptr, drop } => unsafe { drop(ptr) },
            }
        }
    }

    /// A thread's retired records, not sealed yet.
    struct Local {
        nodes: Vec<*mut ()>,
        /// Frees them: the one node type of this feed (`Collector` belongs
        /// to one `Engine<K, V>`).
        free_all: unsafe fn(&[*mut ()]),
    }

    // SAFETY: only the owning thread touches its entry (and the collector's
    // drop, with `&mut`); the pointers are retired records.
    unsafe impl Send for Local {}

    /// The feed's side of reclamation.
    pub(crate) struct Collector {
        /// Each thread's retired records not sealed yet.
        local: ThreadLocal<UnsafeCell<Local>>,
        /// Sealed garbage and its tag, oldest first. Tags never decrease
        /// along the queue (a tag lower than the last one's is raised to it:
        /// waiting longer is always safe), so the freeable ones are a prefix.
        sealed: Mutex<VecDeque<(u64, Garbage)>>,
        /// `sealed` is not empty.
        waiting: AtomicBool,
    }

    impl Collector {
        pub(crate) fn new() -> Self {
            Collector {
                local: ThreadLocal::new(),
                sealed: Mutex::new(VecDeque::new()),
                waiting: AtomicBool::new(false),
            }
        }

        /// Enters a guard: while it lives, nothing loaded through it is freed.
        #[inline]
        pub(crate) fn enter(&self) -> Guard<'_> {
            Guard {
                _pin: Pin::enter(),
                collector: self,
            }
        }

        /// Called by the put that got `seq`: every [`COLLECT_EVERY`] seqs,
        /// frees what became freeable.
        #[inline]
        pub(crate) fn tick(&self, seq: u64) {
            if seq % COLLECT_EVERY == 0 && self.waiting.load(Ordering::Relaxed) {
                self.collect(None);
            }
        }

        /// Seals `garbage` (if any) and frees every sealed garbage whose
        /// grace period has passed.
        fn collect(&self, garbage: Option<Garbage>) {
            let domain = epoch::global();
            // The seal also tries to advance the epoch, which is what lets
            // older garbage go.
            let tag = domain.seal();
            let mut ready = Vec::new();
            {
                let mut sealed = lock(&self.sealed);
                if let Some(g) = garbage {
                    let tag = sealed.back().map_or(tag, |&(t, _)| t.max(tag));
                    sealed.push_back((tag, g));
                }
                while let Some(&(t, _)) = sealed.front() {
                    if !domain.freeable(t) {
                        break;
                    }
                    ready.extend(sealed.pop_front().map(|(_, g)| g));
                }
                self.waiting.store(!sealed.is_empty(), Ordering::Relaxed);
            }
            // Freed outside the lock: a value's drop may run user code that
            // writes to this feed.
            for g in ready {
                // SAFETY: freeable: every guard that could reach it has left.
                unsafe { g.free() };
            }
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            // No guard on this feed outlives it: everything retired is
            // unreachable and may go now.
            for cell in self.local.iter_mut() {
                let local = cell.get_mut();
                // SAFETY: retired records, unreachable, each freed once
                // (taken out of the list).
                unsafe { (local.free_all)(&std::mem::take(&mut local.nodes)) };
            }
            let sealed = std::mem::take(self.sealed.get_mut().unwrap_or_else(|e| e.into_inner()));
            for (_, g) in sealed {
                // SAFETY: as above; each garbage is freed once (moved out).
                unsafe { g.free() };
            }
        }
    }

    /// A reclamation guard: while it lives, nothing loaded through
    /// [`Guard::protect`] is freed.
    pub(crate) struct Guard<'c> {
        _pin: Pin,
        collector: &'c Collector,
    }

    impl Guard<'_> {
        /// Loads `ptr` so that the object it points to stays valid while `self` lives.
        #[inline]
        pub(crate) fn protect<T>(&self, ptr: &AtomicPtr<T>, order: Ordering) -> *mut T {
            // Entering the guard announced this thread: a plain load is
            // protected.
            ptr.load(order)
        }

        /// Frees `ptr` (a `Box<T>`: a table) once no guard can still see
        /// it. Sealed at once, so a feed that only creates keys frees the
        /// tables it outgrew (`tests/memory.rs`).
        ///
        /// # Safety
        /// `ptr` came from `Box::into_raw`, is no longer reachable by any
        /// thread that enters a guard from now on, and is retired only once.
        pub(crate) unsafe fn retire_large<T>(&self, ptr: *mut T) {
            unsafe fn drop_box<T>(ptr: *mut ()) {
                // SAFETY: `retire_large`'s caller: a `Box<T>`, freed once.
                drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
            }
            self.collector.collect(Some(Garbage::Boxed {
                ptr: ptr.cast(),
                drop: drop_box::<T>,
            }));
        }

        /// Frees a node (back to a thread's cache, `pool.rs`) once no guard
        /// can still see it.
        ///
        /// # Safety
        /// As [`retire_large`](Self::retire_large), for a node from `node::alloc`
        /// of the feed that owns this guard's collector.
        #[inline]
        pub(crate) unsafe fn retire_node<K, V>(&self, ptr: *mut Node<K, V>) {
            // SAFETY: the caller's guarantee.
            unsafe { self.retirer::<K, V>().retire(ptr) }
        }

        /// This thread's retired records, looked up once for several
        /// retirements.
        #[inline]
        pub(crate) fn retirer<K, V>(&self) -> Retirer<'_, K, V> {
            let cell = self.collector.local.get_or(|| {
                UnsafeCell::new(Local {
                    nodes: Vec::with_capacity(SEAL_EVERY),
                    free_all: crate::engine::node::free_all::<K, V>,
                })
            });
            Retirer {
                local: cell,
                collector: self.collector,
                _node: std::marker::PhantomData,
            }
        }
    }

    /// Retires nodes into this thread's list (`Guard::retirer`).
    pub(crate) struct Retirer<'g, K, V> {
        local: &'g UnsafeCell<Local>,
        collector: &'g Collector,
        _node: std::marker::PhantomData<*mut Node<K, V>>,
    }

    impl<K, V> Retirer<'_, K, V> {
        /// As [`Guard::retire_node`].
        ///
        /// # Safety
        /// As [`Guard::retire_node`].
        #[inline]
        pub(crate) unsafe fn retire(&mut self, ptr: *mut Node<K, V>) {
            // SAFETY: a thread's entry is only touched by that thread (a
            // `Retirer` is not `Send`, and a thread uses one at a time), and
            // by the collector's drop, which has `&mut`; no reference to it
            // outlives this block.
            let full = unsafe {
                let local = &mut *self.local.get();
                local.nodes.push(ptr.cast());
                if local.nodes.len() < SEAL_EVERY {
                    return;
                }
                std::mem::replace(&mut local.nodes, Vec::with_capacity(SEAL_EVERY))
            };
            self.collector.collect(Some(Garbage::Records {
                nodes: full,
                free_all: crate::engine::node::free_all::<K, V>,
            }));
        }
    }
}
