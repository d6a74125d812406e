//! The state every handle shares: index, ring, sequence counter, parking.
//!
//! This is also where a sequence number is claimed (`assign_seq`): the only
//! `fetch_add` on `next_seq` in the crate.

use std::hash::Hash;

use crate::config::Config;
use crate::index::Index;
use crate::node::{release, Cell, Node};
use crate::notify::Notifier;
use crate::reclaim::Guard;
use crate::ring::Ring;
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub(crate) struct Shared<K, V> {
    pub(crate) index: Index<K, Cell<K, V>>,
    pub(crate) ring: Ring<K, V>,
    /// The next sequence number to hand out; every number below it has been
    /// claimed (and is published, or about to be, as an event or a skip).
    pub(crate) next_seq: AtomicU64,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) closed: AtomicBool,
    /// Live `Feed` handles; when the last one goes the feed closes, so
    /// watchers blocked on a feed nobody can write to any more wake up.
    pub(crate) handles: AtomicUsize,
    pub(crate) settings: Config<K, V>,
    /// `Drop` cannot require `K: Hash + Eq`, so the release of the remaining
    /// nodes is captured here, where the bounds are known.
    release_all: fn(&mut Shared<K, V>),
    /// Values live behind raw pointers (ring slots, cells); this tells the
    /// compiler the feed owns them, so `Send`/`Sync` follow `V`'s.
    _values: std::marker::PhantomData<Arc<V>>,
}

impl<K: Hash + Eq + 'static, V: 'static> Shared<K, V> {
    pub(crate) fn new(settings: Config<K, V>) -> Self {
        Shared {
            index: Index::new(),
            ring: Ring::new(settings.capacity),
            next_seq: AtomicU64::new(1),
            notifier: Arc::new(Notifier::default()),
            closed: AtomicBool::new(false),
            handles: AtomicUsize::new(1),
            settings,
            release_all: Self::release_all,
            _values: std::marker::PhantomData,
        }
    }

    /// Gives back every reference the index and the ring still own, so each
    /// node is retired exactly once; the collector (dropped with the index)
    /// then frees everything retired. Only from `drop`: nothing else runs.
    fn release_all(&mut self) {
        let guard = self.index.guard();
        let mut currents = Vec::new();
        self.index.for_each(&guard, |_, cell| {
            currents.push(cell.current.load(Ordering::Relaxed));
        });
        for node in currents {
            // SAFETY: each cell in the index owns a reference on its current
            // node (a tombstone's is dropped when its cell leaves the index);
            // given up once here.
            unsafe { release(node, &guard) };
        }
        // SAFETY: exclusive access (we are in drop).
        unsafe { self.ring.clear(&guard) };
    }

    /// The highest seq handed out so far (0 before the first write).
    pub(crate) fn head(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst) - 1
    }

    /// Makes sure `node` has a seq, claiming one for it if it is pending, and
    /// returns it.
    ///
    /// The claimer that wins the CAS from 0 publishes the node; a claimer that
    /// loses publishes its number as a skip marker, so no number is ever left
    /// unpublished. Both the writer that installed `node` and any writer (or
    /// snapshot) that finds it pending call this, so a pending node never
    /// blocks anyone: lock-free.
    ///
    /// # Safety
    /// `node` is live under `guard` and has been installed in its cell (so
    /// the ring's reference on it is still unclaimed until a seq is set).
    pub(crate) unsafe fn assign_seq(&self, node: *mut Node<K, V>, guard: &Guard<'_>) -> u64 {
        // SAFETY: live under the guard (caller).
        let n = unsafe { &*node };
        let seq = n.seq.load(Ordering::Acquire);
        if seq != 0 {
            return seq;
        }
        let claimed = self.next_seq.fetch_add(1, Ordering::SeqCst);
        match n
            .seq
            .compare_exchange(0, claimed, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                // SAFETY: winning the CAS made us the one publisher of `node`: the
                // ring's reference is ours to hand to the slot.
                unsafe { self.ring.publish(node, claimed, guard) };
                self.notifier.published();
                claimed
            }
            Err(theirs) => {
                self.publish_skip(claimed, guard);
                theirs
            }
        }
    }

    /// Publishes `seq` as a number nobody will use.
    fn publish_skip(&self, seq: u64, guard: &Guard<'_>) {
        let skip = Box::into_raw(Box::new(Node::skip(seq)));
        // SAFETY: a fresh node whose seq is `seq`; its single reference is the ring's.
        unsafe { self.ring.publish(skip, seq, guard) };
        self.notifier.published();
    }
}

impl<K, V> Drop for Shared<K, V> {
    fn drop(&mut self) {
        (self.release_all)(self)
    }
}
