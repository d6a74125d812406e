//! Asymmetric fences: a cheap side for the hot paths and a costly one for
//! the rare paths that pair with them.
//!
//! Two protocols need a store-then-load order on both sides (each side
//! stores, then loads what the other stored: a Dekker pattern), with one
//! side hot and the other rare:
//!
//! * reclamation (`epoch.rs`): a guard's entry (every put, every read)
//!   against a seal (once per thousands of retired records);
//! * parking (`notify.rs`): a publish (every put) against a watcher about
//!   to sleep.
//!
//! With `fence(SeqCst)` on both sides, each hot path would pay a full
//! barrier (an `MFENCE` or a locked instruction, 20+ cycles). On Linux the
//! `membarrier` system call (private expedited) makes every running thread
//! of the process execute a full barrier, so the hot side needs only a
//! compiler fence ([`light`]) and the rare side pays the system call
//! ([`heavy`], about 5 us on the 2-core VM with another thread running,
//! 0.2 us alone). Where `membarrier` is missing (other systems, old
//! kernels, valgrind), under Miri and under loom, both are
//! `fence(SeqCst)`.

use crate::sync::{fence, Ordering};

/// The light side: orders the caller's earlier stores before its later
/// loads against every [`heavy`] fence.
#[inline]
pub(crate) fn light() {
    // The mutant's guards announce themselves without ordering the
    // announcement before their loads (`epoch.rs`).
    #[cfg(kvfeed_mutant = "epoch_no_fence")]
    return;
    #[allow(unreachable_code)]
    if fences::membarrier() {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The heavy side: a full fence that orders against every [`light`] fence
/// of every thread, as two `SeqCst` fences do. Microseconds: for rare
/// paths only.
pub(crate) fn heavy() {
    if !fences::membarrier() {
        fence(Ordering::SeqCst);
    } else if !fences::barrier() {
        // Registered, so the call cannot fail (EINVAL and EPERM come only
        // without registration). If it did, nothing here would pair with
        // the light side's compiler fences (a record could be freed under a
        // reader, a wake-up lost): stop rather than go on unordered.
        std::process::abort();
    }
}

#[cfg(all(target_os = "linux", not(kvfeed_loom), not(miri)))]
mod fences {
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    /// Whether membarrier is registered for this process (decided once).
    static STRATEGY: AtomicU8 = AtomicU8::new(UNKNOWN);

    // From linux/membarrier.h.
    const CMD_QUERY: libc::c_int = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn sys_membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes two ints and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_int) }
    }

    /// Whether the light side may be a compiler fence (the heavy side is
    /// the system call). Decided on first use: the registration happens before
    /// any thread sees `YES`, so no light fence relies on an unregistered
    /// barrier.
    #[inline]
    pub(super) fn membarrier() -> bool {
        match STRATEGY.load(Ordering::Acquire) {
            YES => true,
            NO => false,
            _ => decide(),
        }
    }

    #[cold]
    fn decide() -> bool {
        let q = sys_membarrier(CMD_QUERY);
        let ok = q >= 0
            && q & libc::c_long::from(CMD_PRIVATE_EXPEDITED) != 0
            && q & libc::c_long::from(CMD_REGISTER_PRIVATE_EXPEDITED) != 0
            && sys_membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
        STRATEGY.store(if ok { YES } else { NO }, Ordering::Release);
        ok
    }

    /// Runs the barrier; false if the call failed.
    pub(super) fn barrier() -> bool {
        sys_membarrier(CMD_PRIVATE_EXPEDITED) == 0
    }
}

#[cfg(not(all(target_os = "linux", not(kvfeed_loom), not(miri))))]
mod fences {
    /// No asymmetric barrier: both sides fence.
    #[inline]
    pub(super) fn membarrier() -> bool {
        false
    }

    pub(super) fn barrier() -> bool {
        false
    }
}
