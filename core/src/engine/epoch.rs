//! Epoch-based reclamation, written for the feed's two hot paths: every put
//! and every `try_next` enters and leaves a guard.
//!
//! ## Why our own (it replaced seize)
//!
//! A seize guard cost a put or a read 11-20 ns on the 2-core VM (an extra
//! enter and leave per put, A/B: 84.5 -> 95.6 ns min, 94.7 -> 115.9 median
//! at 1 000 keys): two thread-local look-ups on entry, and on exit a locked
//! swap (seize's leave collects the batches retired while the guard was
//! active). Here entering is a load, a store and a compiler fence, and
//! leaving one store: no read-modify-write on either side. The price is
//! paid where it is rare: retiring objects in bulk ("sealing") costs a
//! process-wide memory barrier (a `membarrier` system call, about 5 us with
//! another thread running), so the feed seals thousands of records at a
//! time (`reclaim.rs`).
//!
//! ## Protocol
//!
//! Shared: the global epoch `E`, which only grows, by one, with a CAS; and a
//! registry of [`Participant`]s, one per thread that ever entered a guard
//! (a list that only grows; a participant whose thread exited is reused by
//! the next thread). A participant's `state` is 0 outside a guard and
//! `e << 1 | 1` inside one entered at epoch `e`.
//!
//! * **Enter** (a thread's outermost guard): `e = E.load(SeqCst)`;
//!   `state.store(e << 1 | 1, Release)`; light fence; then the guarded
//!   loads. Inner guards only count.
//! * **Leave** (the outermost guard): `state.store(0, Release)`.
//! * **Seal** (after objects became unreachable: the unlinking stores were
//!   made, or observed, by the sealing thread): `g = E.load(SeqCst)`; heavy
//!   fence; `t = E.load(SeqCst)`: the objects are tagged `t`. Then, if every
//!   participant's state (loaded `Acquire`) is 0 or `g << 1 | 1`, CAS `E`
//!   from `g` to `g + 1` (`SeqCst`).
//! * **Free** an object tagged `t` once `E.load(Acquire) >= t + 2`.
//!
//! Why an object tagged `t` is never freed while a guard that reached it is
//! alive. Let R be such a guard (F_R its light fence), S the seal that
//! tagged the object (F_S its heavy fence, after the unlinking U), and A the
//! advance from `t + 1` to `t + 2` (F_A its heavy fence, after A's load of
//! `t + 1`). The fences are totally ordered (a heavy fence orders against
//! every light one, like two `SeqCst` fences):
//!
//! * F_S before F_R: R's loads after F_R see U, so R cannot reach the object.
//! * F_R before F_S: F_S precedes S's load of `t`, which precedes the CAS
//!   `t -> t + 1`, which precedes A's load of `t + 1`, which precedes F_A;
//!   so F_R precedes F_A, and A's scan sees R's state store (or a later
//!   one of that participant, which means R left). R's epoch was loaded
//!   before F_R, so it is at most `t`: A does not advance while R is
//!   inside.
//!
//! So `E` reaches `t + 2` only after R left, and the thread that frees
//! synchronizes with R's leave (A's `Acquire` scan, A's CAS, the freeing
//! thread's `Acquire` load of `E`). An object may be freed by any thread.
//!
//! Fences: `barrier.rs` (on Linux a compiler fence and a `membarrier`
//! system call; elsewhere, under Miri and under loom, `fence(SeqCst)` both).
//!
//! Progress: a guard held for long (a preempted reader) delays frees and
//! never blocks a writer; a thread outside guards delays nothing, however
//! long it idles.

use std::cell::Cell;

use crate::engine::barrier::{heavy as heavy_fence, light as light_fence};
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Inside a guard (the state's low bit).
const ACTIVE: u64 = 1;

/// One thread's announcement. Aligned to its own cache line: a reader's
/// enter and leave write it on every call.
#[repr(align(64))]
pub struct Participant {
    /// 0 outside a guard, `epoch << 1 | ACTIVE` inside.
    state: AtomicU64,
    /// Guards open on this participant. Touched only by the thread that
    /// holds the participant (`in_use`).
    depth: Cell<usize>,
    /// Held by a thread.
    in_use: AtomicBool,
    /// The next participant in the registry; set before publication, never
    /// changed.
    next: *const Participant,
}

// SAFETY: `depth` (the one field that is not an atomic) is only accessed by
// the thread that acquired the participant (`in_use`, an `Acquire` CAS
// paired with the `Release` store that gave it up); `next` is immutable
// after publication.
unsafe impl Sync for Participant {}
// SAFETY: as above.
unsafe impl Send for Participant {}

/// The global epoch and the registry of participants.
pub struct Domain {
    epoch: AtomicU64,
    head: AtomicPtr<Participant>,
}

impl Domain {
    /// A domain of its own (the feed uses the process-wide one, [`global`];
    /// the loom model builds one per execution).
    #[cfg(any(kvfeed_loom, test))]
    pub fn new() -> Self {
        Domain {
            epoch: AtomicU64::new(1),
            head: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// A participant for the calling thread: a released one when there is
    /// one, else a new one (never freed while the domain lives).
    pub fn acquire(&self) -> &Participant {
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: registry entries are never freed while the domain
            // lives, and `&self` keeps it alive.
            let part = unsafe { &*p };
            if !part.in_use.load(Ordering::Relaxed)
                && part
                    .in_use
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return part;
            }
            p = part.next.cast_mut();
        }
        let new = Box::into_raw(Box::new(Participant {
            state: AtomicU64::new(0),
            depth: Cell::new(0),
            in_use: AtomicBool::new(true),
            next: std::ptr::null(),
        }));
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `new` is ours until the CAS publishes it.
            unsafe { (*new).next = head };
            match self
                .head
                .compare_exchange(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // SAFETY: published, never freed while the domain lives.
        unsafe { &*new }
    }

    /// Gives a participant back for another thread.
    ///
    /// # Safety
    /// The calling thread acquired `p` and has no guard open on it.
    pub unsafe fn release(&self, p: &Participant) {
        debug_assert_eq!(p.depth.get(), 0);
        p.in_use.store(false, Ordering::Release);
    }

    /// Enters a guard on `p`.
    ///
    /// # Safety
    /// The calling thread holds `p` (acquired it, or it is its thread-local
    /// one) and pairs this with one [`leave`](Self::leave).
    #[inline]
    pub unsafe fn enter(&self, p: &Participant) {
        let depth = p.depth.get();
        p.depth.set(depth + 1);
        if depth == 0 {
            let e = self.epoch.load(Ordering::SeqCst);
            p.state.store(e << 1 | ACTIVE, Ordering::Release);
            light_fence();
        }
    }

    /// Leaves a guard on `p`.
    ///
    /// # Safety
    /// The calling thread entered a guard on `p` and leaves it once.
    #[inline]
    pub unsafe fn leave(&self, p: &Participant) {
        let depth = p.depth.get() - 1;
        p.depth.set(depth);
        if depth == 0 {
            p.state.store(0, Ordering::Release);
        }
    }

    /// Seals what the caller made unreachable: returns the tag for it (free
    /// it once [`freeable`](Self::freeable) says so) and tries to advance
    /// the epoch.
    pub fn seal(&self) -> u64 {
        let g = self.epoch.load(Ordering::SeqCst);
        heavy_fence();
        let t = self.epoch.load(Ordering::SeqCst);
        if t == g && self.all_at(g) {
            #[cfg(not(kvfeed_mutant = "epoch_skip"))]
            let next = g + 1;
            // The mutant advances two epochs at once: a guard entered at
            // `g` no longer holds back what was sealed at `g`.
            #[cfg(kvfeed_mutant = "epoch_skip")]
            let next = g + 2;
            let _ = self
                .epoch
                .compare_exchange(g, next, Ordering::SeqCst, Ordering::SeqCst);
        }
        t
    }

    /// Whether an object sealed with `tag` may be freed now. `true`
    /// synchronizes with the leave of every guard that could have reached it.
    #[inline]
    pub fn freeable(&self, tag: u64) -> bool {
        self.epoch.load(Ordering::Acquire) >= tag + 2
    }

    /// Every participant is outside a guard or inside one entered at `g`.
    fn all_at(&self, g: u64) -> bool {
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: registry entries live as long as the domain.
            let part = unsafe { &*p };
            let s = part.state.load(Ordering::Acquire);
            if s & ACTIVE != 0 && s >> 1 != g {
                return false;
            }
            p = part.next.cast_mut();
        }
        true
    }
}

#[cfg(any(kvfeed_loom, test))]
impl Default for Domain {
    fn default() -> Self {
        Domain::new()
    }
}

#[cfg(any(kvfeed_loom, test))]
impl Drop for Domain {
    fn drop(&mut self) {
        // `&mut self`: no other thread holds the domain.
        let mut p = self.head.load(Ordering::Relaxed);
        while !p.is_null() {
            // SAFETY: exclusive access; each entry was `Box::into_raw`ed once.
            let part = unsafe { Box::from_raw(p) };
            p = part.next.cast_mut();
        }
    }
}

/// The process-wide domain every feed uses.
#[cfg(not(kvfeed_loom))]
pub(crate) fn global() -> &'static Domain {
    static GLOBAL: Domain = Domain {
        epoch: AtomicU64::new(1),
        head: AtomicPtr::new(std::ptr::null_mut()),
    };
    &GLOBAL
}

/// A guard on the global domain: while it lives, nothing sealed after it
/// was entered is freed.
#[cfg(not(kvfeed_loom))]
pub(crate) struct Pin {
    participant: *const Participant,
    /// The participant was acquired for this guard alone (the thread's own
    /// was gone: a guard entered from a thread-local destructor).
    owned: bool,
}

#[cfg(not(kvfeed_loom))]
mod local {
    use std::cell::Cell;

    use super::{global, Participant};

    /// The thread's participant, acquired on its first guard and released
    /// when the thread exits.
    pub(super) struct Local(pub(super) Cell<*const Participant>);

    impl Drop for Local {
        fn drop(&mut self) {
            let p = self.0.get();
            if p.is_null() {
                return;
            }
            // SAFETY: registry entries live for the process.
            let p = unsafe { &*p };
            // A guard still open (held across this destructor by another
            // thread-local's) keeps the participant: it is never reused.
            if p.depth.get() == 0 {
                // SAFETY: this thread's participant, no guard open.
                unsafe { global().release(p) };
            }
        }
    }

    thread_local! {
        pub(super) static LOCAL: Local = const { Local(Cell::new(std::ptr::null())) };
    }
}

#[cfg(not(kvfeed_loom))]
impl Pin {
    /// Enters a guard on this thread's participant.
    #[inline]
    pub(crate) fn enter() -> Pin {
        let domain = global();
        let mine = local::LOCAL.try_with(|l| {
            let mut p = l.0.get();
            if p.is_null() {
                p = domain.acquire();
                l.0.set(p);
            }
            p
        });
        let (participant, owned) = match mine {
            Ok(p) => (p, false),
            // The thread's participant is gone (thread-local destructors
            // are running): one for this guard alone.
            Err(_) => (domain.acquire() as *const Participant, true),
        };
        // SAFETY: the participant is this thread's (or this guard's), and
        // the guard's drop leaves once.
        unsafe { domain.enter(&*participant) };
        Pin { participant, owned }
    }
}

#[cfg(not(kvfeed_loom))]
impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        let domain = global();
        // SAFETY: entered by `enter` on this thread (a `Pin` is not `Send`:
        // it holds a raw pointer) and left once, here.
        let p = unsafe { &*self.participant };
        // SAFETY: as above.
        unsafe { domain.leave(p) };
        if self.owned {
            // SAFETY: acquired for this guard alone, no guard open on it.
            unsafe { domain.release(p) };
        }
    }
}

#[cfg(all(test, not(kvfeed_loom)))]
mod tests {
    use super::*;

    // Each test uses its participants from its one thread, entering and
    // leaving in pairs: the contract of `enter` and `leave`.
    fn enter(d: &Domain, p: &Participant) {
        // SAFETY: see above.
        unsafe { d.enter(p) }
    }

    fn leave(d: &Domain, p: &Participant) {
        // SAFETY: see above.
        unsafe { d.leave(p) }
    }

    #[test]
    fn a_guard_entered_before_a_seal_holds_back_its_free() {
        let d = Domain::new();
        let reader = d.acquire();
        let writer = d.acquire();
        enter(&d, reader);
        let tag = d.seal();
        for _ in 0..4 {
            enter(&d, writer);
            d.seal();
            leave(&d, writer);
        }
        assert!(
            !d.freeable(tag),
            "freed under a guard entered before the seal"
        );
        leave(&d, reader);
        d.seal();
        d.seal();
        assert!(d.freeable(tag), "two advances after every guard left");
    }

    #[test]
    fn nested_guards_announce_once_and_leave_with_the_outermost() {
        let d = Domain::new();
        let p = d.acquire();
        enter(&d, p);
        let tag = d.seal();
        enter(&d, p);
        leave(&d, p);
        d.seal();
        d.seal();
        assert!(!d.freeable(tag), "the inner leave ended the outer guard");
        leave(&d, p);
        d.seal();
        d.seal();
        assert!(d.freeable(tag));
    }

    #[test]
    fn a_released_participant_is_reused_and_idle_ones_never_block() {
        let d = Domain::new();
        let a = d.acquire() as *const Participant;
        let _idle: Vec<&Participant> = (0..100).map(|_| d.acquire()).collect();
        // SAFETY: `a` is ours with no guard open.
        unsafe { d.release(&*a) };
        assert_eq!(d.acquire() as *const Participant, a);
        let tag = d.seal();
        d.seal();
        d.seal();
        assert!(d.freeable(tag), "idle participants held the epoch back");
    }
}
