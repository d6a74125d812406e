//! Cache hints: ask the CPU to start fetching a line the next steps will
//! touch. A hint has no effect on the program's meaning (it never faults
//! and reads nothing the program sees), so it is a no-op under loom and
//! Miri and off x86-64.

/// Start loading `p`'s line for reading.
#[inline(always)]
pub(crate) fn prefetch_read<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(kvfeed_loom), not(miri)))]
    // SAFETY: a prefetch never faults and reads nothing the program sees.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>())
    };
    #[cfg(not(all(target_arch = "x86_64", not(kvfeed_loom), not(miri))))]
    let _ = p;
}

/// Start loading `p`'s line to write it (`PREFETCHW`: the line arrives
/// owned, so the stores that follow do not wait for it; on a CPU without
/// the instruction it is a read prefetch or nothing).
#[inline(always)]
#[cfg_attr(kvfeed_loom, allow(dead_code))] // only the node cache uses it, and loom has none
pub(crate) fn prefetch_write<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(kvfeed_loom), not(miri)))]
    // SAFETY: as above.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p.cast::<i8>())
    };
    #[cfg(not(all(target_arch = "x86_64", not(kvfeed_loom), not(miri))))]
    let _ = p;
}
