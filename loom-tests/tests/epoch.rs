//! Model 7: epoch-based reclamation (`core/src/engine/epoch.rs`), the
//! protocol every guard of the feed runs on. The engine's other models use
//! the checked stand-in (`reclaim_loom.rs`) in its place; this one runs the
//! real `Domain` (enter, leave, seal, freeable) with loom's atomics, and
//! `fence(SeqCst)` for both the light and the heavy fence.
//!
//! The object's contents live in a loom cell: the reader reads it, the
//! freeing thread writes it before dropping it, so a free that does not
//! happen after the reader's read is a loom causality violation.
#![cfg(kvfeed_loom)]

use kvfeed::loom_epoch::Domain;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicPtr, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::model;

struct Obj(UnsafeCell<u64>);

/// Frees `o`, writing its cell first (the write loom checks).
///
/// # Safety
/// `o` came from `Box::into_raw` and nobody uses it again.
unsafe fn free(o: *mut Obj) {
    // SAFETY: the caller's guarantee.
    unsafe {
        (*o).0.with_mut(|v| *v = 0);
        drop(Box::from_raw(o));
    }
}

/// Model 7 — a reader inside a guard while the object it may hold is
/// unlinked, sealed and freed.
///
/// Property: a reader enters a guard, loads the shared pointer and reads the
/// object through it; meanwhile a writer unlinks the object, seals it, and
/// seals up to three more times (each seal tries to advance the epoch),
/// freeing it as soon as `freeable` says so (else after joining the
/// reader). The reader never reads a freed object (a causality violation on
/// the cell otherwise) and always reads the value written before it was
/// published. A second reader enters after the unlink with whatever epoch it
/// reads, so a stale epoch is explored too.
///
/// Bound: 2 readers + the writer (main); preemption bound 3.
#[test]
fn freed_only_after_every_guard_that_reached_it() {
    model("freed_only_after_every_guard_that_reached_it", 3, || {
        let d = Arc::new(Domain::new());
        let first = Box::into_raw(Box::new(Obj(UnsafeCell::new(7))));
        let shared = Arc::new(AtomicPtr::new(first));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (d, shared) = (d.clone(), shared.clone());
                thread::spawn(move || {
                    let p = d.acquire();
                    // SAFETY: `p` is this thread's; one enter, one leave.
                    unsafe { d.enter(p) };
                    let o = shared.load(Ordering::Acquire);
                    if !o.is_null() {
                        // SAFETY: loaded inside the guard (what the model checks).
                        let v = unsafe { (*o).0.with(|v| *v) };
                        assert_eq!(v, 7, "read a freed or unpublished object");
                    }
                    // SAFETY: as above.
                    unsafe { d.leave(p) };
                    // SAFETY: acquired by this thread, no guard open.
                    unsafe { d.release(p) };
                })
            })
            .collect();
        let old = shared.swap(std::ptr::null_mut(), Ordering::AcqRel);
        let tag = d.seal();
        let mut freed = false;
        for _ in 0..3 {
            if d.freeable(tag) {
                // SAFETY: unlinked, and every guard that could reach it left.
                unsafe { free(old) };
                freed = true;
                break;
            }
            d.seal();
        }
        for r in readers {
            r.join().unwrap();
        }
        if !freed {
            // SAFETY: every reader is joined.
            unsafe { free(old) };
        }
    });
}
