//! The one place that names atomics, `Arc`, locks and thread parking.
//!
//! Under `--cfg kvfeed_loom` (with the `loom` feature) every primitive is
//! loom's, so the loom models in `loom-tests/` explore the real protocol code
//! rather than a copy of it. Everything else in the crate imports from here.

#[cfg(not(kvfeed_loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};

#[cfg(kvfeed_loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

// Under loom, `Arc` stays std's. loom's `Arc` implements neither `PartialEq`
// (which `Change`'s derive needs) nor unsized coercion (`Arc<dyn Fn>` in
// `watch.rs`), so the crate does not build with it. What is lost: loom does
// not see `Arc` reference counts (std's, not part of kvfeed's protocol) nor
// the synchronization of a last `Arc` drop, so the models drop the last
// handle of a feed on the main thread after joining every other thread. Value
// leaks and double drops are checked by the models' drop counters instead.
#[cfg(kvfeed_loom)]
pub(crate) use std::sync::Arc;

/// Waits on `cv` for at most `timeout`, returning the re-acquired guard.
///
/// Loom has no timed wait; under loom a timed wait is an untimed one, which is
/// what a model wants anyway (time does not pass in a model).
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    #[cfg(not(kvfeed_loom))]
    {
        cv.wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
    #[cfg(kvfeed_loom)]
    {
        let _ = timeout;
        cv.wait(guard).unwrap()
    }
}

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves
/// the protected data consistent (they only count and notify).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(kvfeed_loom))]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    #[cfg(kvfeed_loom)]
    {
        m.lock().unwrap()
    }
}

/// Locks `m` if nobody holds it (never waits); ignores poisoning as `lock`.
/// Only the loom stand-in of the pending records uses it.
#[cfg(kvfeed_loom)]
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    m.try_lock().ok()
}
