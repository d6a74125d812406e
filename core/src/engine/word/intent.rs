//! Intent records: where a writer leaves the value it is about to store,
//! so that `get` never waits for it (`write.rs`).
//!
//! Each thread has one record per word feed, `{ ver, slot, value }`,
//! written only by its thread, as a seqlock:
//!
//! 1. `ver = seq << 1 | 1` (odd: being written), then a `Release` fence;
//! 2. `slot` (the address of the table slot being written) and `value`;
//! 3. `ver = seq << 1` (`Release`).
//!
//! A reader that found the record through a slot's `DIRTY` word loads
//! `ver` (`Acquire`; odd: retry), `slot` and `value`, then an `Acquire`
//! fence and `ver` again: equal and even, the three belong to one write
//! (a newer step 1 seen through a step-2 store would show in the second
//! load, by the fences). `write.rs` says why that write is the key's.
//!
//! Records live as long as the feed (a reader may hold a pointer to a
//! record whose thread has exited, or moved on to other writes; the
//! checks above reject what it finds then). Production keeps them in a
//! `ThreadLocal` (a look-up per write, no lock); under loom, where threads
//! are not OS threads, in a list behind a lock, one per loom thread.

use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering};

/// One thread's intent. Aligned to 128 bytes so that its address leaves
/// the 7 low bits of a `ctrl` word free for the state and tags
/// (`table.rs`).
#[repr(align(128))]
pub(crate) struct Intent {
    ver: AtomicU64,
    slot: AtomicUsize,
    value: AtomicU64,
}

impl Intent {
    fn new() -> Self {
        Intent {
            ver: AtomicU64::new(0),
            slot: AtomicUsize::new(0),
            value: AtomicU64::new(0),
        }
    }

    /// Announces that the write numbered `seq` is storing `value` into
    /// the slot at `slot` (steps 1-3). Only the record's own thread calls it.
    #[inline]
    pub(crate) fn announce(&self, seq: u64, slot: usize, value: u64) {
        self.ver.store(seq << 1 | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.slot.store(slot, Ordering::Relaxed);
        self.value.store(value, Ordering::Relaxed);
        self.ver.store(seq << 1, Ordering::Release);
    }

    /// The seq and value of the write this record announces for `slot`,
    /// if it is one and was read whole.
    #[inline]
    pub(crate) fn read(&self, slot: usize) -> Option<(u64, u64)> {
        let before = self.ver.load(Ordering::Acquire);
        if before & 1 != 0 {
            return None;
        }
        let at = self.slot.load(Ordering::Relaxed);
        let value = self.value.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = self.ver.load(Ordering::Relaxed);
        if cfg!(kvfeed_mutant = "intent_no_recheck") || (after == before && at == slot) {
            Some((before >> 1, value))
        } else {
            None
        }
    }
}

#[cfg(not(kvfeed_loom))]
pub(crate) struct Intents(thread_local::ThreadLocal<Intent>);

#[cfg(not(kvfeed_loom))]
impl Intents {
    pub(crate) fn new() -> Self {
        Intents(thread_local::ThreadLocal::new())
    }

    /// This thread's record.
    #[inline]
    pub(crate) fn mine(&self) -> &Intent {
        self.0.get_or(Intent::new)
    }
}

#[cfg(kvfeed_loom)]
pub(crate) struct Intents(crate::sync::Mutex<Vec<(loom::thread::ThreadId, Box<Intent>)>>);

#[cfg(kvfeed_loom)]
impl Intents {
    pub(crate) fn new() -> Self {
        Intents(crate::sync::Mutex::new(Vec::new()))
    }

    /// This loom thread's record.
    pub(crate) fn mine(&self) -> &Intent {
        let me = loom::thread::current().id();
        let mut list = crate::sync::lock(&self.0);
        let at = match list.iter().position(|(id, _)| *id == me) {
            Some(at) => at,
            None => {
                list.push((me, Box::new(Intent::new())));
                list.len() - 1
            }
        };
        let intent: *const Intent = &*list[at].1;
        // SAFETY: boxed, so its address does not move when the list grows,
        // and never removed while the feed lives (`&self`).
        unsafe { &*intent }
    }
}
