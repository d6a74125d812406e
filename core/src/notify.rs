//! Parking for watchers: writers pay nothing while no watcher is parked.
//!
//! ## Protocol (no lost wake-up)
//!
//! A watcher about to park:
//! 1. increments `parked` (`SeqCst`);
//! 2. takes the lock and re-checks its slot with a `SeqCst` load (and the
//!    closed flags); only if there is still nothing to read does it wait on
//!    the condvar, re-checking after every wake-up;
//! 3. decrements `parked` when it leaves.
//!
//! A writer, after its `SeqCst` publishing CAS, loads `parked` (`SeqCst`). If
//! it is zero it is done: that is the whole cost of parking support on the
//! write path (on x86 a plain load, since the CAS is already a full barrier).
//! Otherwise it takes the lock and notifies everyone.
//!
//! Why it works: the CAS and the `parked` increment, and the two loads that
//! follow them, are all `SeqCst`, so they are totally ordered. Either the
//! writer's load sees the increment (and notifies, under the lock, so a watcher
//! that re-checked before the writer took the lock is already waiting and is
//! woken), or the increment comes after the CAS, and then the watcher's
//! re-check sees the published slot and does not wait.
//!
//! Async watchers register a `Waker` instead of waiting on the condvar; they
//! count in `parked` while registered and are woken (and unregistered) by the
//! next notification.

use std::time::{Duration, Instant};

use crate::sync::{self, AtomicUsize, Condvar, Mutex, Ordering};

#[derive(Default)]
pub(crate) struct Notifier {
    /// Watchers parked or registered with a waker.
    parked: AtomicUsize,
    state: Mutex<Wakers>,
    condvar: Condvar,
}

#[derive(Default)]
struct Wakers {
    #[cfg(feature = "async")]
    wakers: Vec<std::task::Waker>,
}

impl Notifier {
    /// Called by a writer after publishing: wakes parked watchers, if any.
    #[inline]
    pub(crate) fn published(&self) {
        if self.parked.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    /// Wakes every parked watcher unconditionally (close, watcher close).
    pub(crate) fn wake_all(&self) {
        #[allow(unused_mut)]
        let mut state = sync::lock(&self.state);
        #[cfg(feature = "async")]
        let wakers = std::mem::take(&mut state.wakers);
        self.condvar.notify_all();
        drop(state);
        #[cfg(feature = "async")]
        {
            self.parked.fetch_sub(wakers.len(), Ordering::SeqCst);
            for w in wakers {
                w.wake();
            }
        }
    }

    /// Parks until `ready()` holds or `deadline` passes (None: no deadline).
    /// `ready` must load the watched slot with `SeqCst`. Returns `ready()`'s
    /// last answer.
    pub(crate) fn park_until(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        self.parked.fetch_add(1, Ordering::SeqCst);
        let mut state = sync::lock(&self.state);
        let result = loop {
            if ready() {
                break true;
            }
            let wait = match deadline {
                None => Duration::from_secs(3600),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break false,
                },
            };
            state = sync::wait_timeout(&self.condvar, state, wait);
        };
        drop(state);
        self.parked.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Registers `waker` for the next notification. The caller must re-check
    /// its slot (with `SeqCst`) after this returns and before returning
    /// `Pending`.
    #[cfg(feature = "async")]
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        let mut state = sync::lock(&self.state);
        if state.wakers.iter().any(|w| w.will_wake(waker)) {
            return;
        }
        state.wakers.push(waker.clone());
        self.parked.fetch_add(1, Ordering::SeqCst);
    }
}
