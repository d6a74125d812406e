//! Parking for watchers: writers pay nothing while no watcher is parked.
//!
//! ## Protocol (no lost wake-up, at most one wake-up per park)
//!
//! `parked` counts watchers that registered since the last wake-up; `gen`
//! (changed only under the lock) counts wake-ups.
//!
//! A watcher about to park:
//! 1. reads `gen` (`SeqCst`), then increments `parked` (`SeqCst`), then
//!    runs a heavy fence (`engine/barrier.rs`: a `membarrier` system call,
//!    microseconds, paid once per park);
//! 2. re-checks its slot with a `SeqCst` load (and the closed flags): if
//!    there is something to read it does not wait;
//! 3. under the lock, waits on the condvar while `gen` is unchanged, then
//!    starts over from 1 (a wake-up consumed its registration).
//!
//! A writer, after its publishing store (`Release`), runs a light fence (a
//! compiler fence) and loads `parked` (`SeqCst`). If it is zero it is done:
//! that is the whole cost of parking support on the write path, a plain
//! load. Otherwise it `swap`s `parked` to zero and, if it took a non-zero
//! count, bumps `gen` and notifies under the lock. So a burst of writes
//! wakes the parked watchers once, not once per write. (The publishing store
//! was `SeqCst` until issue 9's third pass: an `XCHG` on every put, a third
//! of `publish`'s perf samples.)
//!
//! Why no wake-up is lost: the writer stores then loads with a light fence
//! between, the watcher stores (increments) then loads with a heavy fence
//! between, and a light and a heavy fence are ordered like two `SeqCst`
//! fences: one of the two loads sees the other side's store. Take a watcher
//! W and the writer P of the event it waits for. If P's load of `parked`
//! misses W's increment, then W's re-check sees P's publish. Otherwise P finds W's
//! registration in `parked`, unless another writer's swap took it first; in
//! both cases some swap took W's registration after W read `gen`, and the
//! `gen` bump that follows it (under the lock) either happens before W checks
//! `gen` under the lock (W starts over and re-checks) or wakes W from the
//! condvar.
//!
//! Async watchers register a `Waker` (under the lock, then increment
//! `parked`) instead of waiting; a wake-up takes and wakes every registered
//! waker.

use std::time::{Duration, Instant};

use crate::engine::barrier;
use crate::sync::{self, AtomicUsize, Condvar, Mutex, Ordering};

#[derive(Default)]
pub(crate) struct Notifier {
    /// Registrations (parking watchers, wakers) since the last wake-up.
    parked: AtomicUsize,
    /// Wake-ups so far; changed only under `state`'s lock.
    gen: AtomicUsize,
    state: Mutex<Wakers>,
    condvar: Condvar,
}

#[derive(Default)]
struct Wakers {
    #[cfg(feature = "async")]
    wakers: Vec<std::task::Waker>,
}

impl Notifier {
    /// Called by a writer after its publishing store: wakes parked
    /// watchers, if any.
    #[inline]
    pub(crate) fn published(&self) {
        if cfg!(kvfeed_mutant = "no_wake") {
            return;
        }
        // Orders the publishing store before the load of `parked`, against
        // the parking watcher's heavy fence.
        barrier::light();
        if self.parked.load(Ordering::SeqCst) != 0 && self.parked.swap(0, Ordering::SeqCst) != 0 {
            self.wake();
        }
    }

    /// Wakes every parked watcher unconditionally (close, watcher close).
    pub(crate) fn wake_all(&self) {
        self.parked.swap(0, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        #[allow(unused_mut)]
        let mut state = sync::lock(&self.state);
        self.gen.fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "async")]
        let wakers = std::mem::take(&mut state.wakers);
        self.condvar.notify_all();
        drop(state);
        #[cfg(feature = "async")]
        for w in wakers {
            w.wake();
        }
    }

    /// Parks until `ready()` holds or `deadline` passes (None: no deadline).
    /// `ready` must load the watched slot with `SeqCst`. Returns `ready()`'s
    /// last answer.
    pub(crate) fn park_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        loop {
            let gen = self.gen.load(Ordering::SeqCst);
            self.parked.fetch_add(1, Ordering::SeqCst);
            // The mutant re-checks without ordering it after the increment.
            #[cfg(not(kvfeed_mutant = "park_no_fence"))]
            barrier::heavy();
            if ready() {
                return true;
            }
            let mut state = sync::lock(&self.state);
            while self.gen.load(Ordering::SeqCst) == gen {
                let wait = match deadline {
                    None => Duration::from_secs(3600),
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => left,
                        _ => {
                            drop(state);
                            return ready();
                        }
                    },
                };
                state = sync::wait_timeout(&self.condvar, state, wait);
            }
        }
    }

    /// How many registrations wait for the next wake-up (tests use it to
    /// know that a watcher has parked, instead of sleeping).
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Registers `waker` for the next wake-up. The caller must re-check its
    /// slot (with `SeqCst`) after this returns and before returning `Pending`.
    #[cfg(feature = "async")]
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        let mut state = sync::lock(&self.state);
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
        drop(state);
        self.parked.fetch_add(1, Ordering::SeqCst);
        // As in `park_until`: the caller's re-check comes after this.
        barrier::heavy();
    }
}
