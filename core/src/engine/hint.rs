//! Cache hints: ask the CPU to start fetching a line the next steps will
//! touch. A hint has no effect on the program's meaning (it never faults
//! and reads nothing the program sees), so it is a no-op under loom and
//! Miri and off x86-64.

/// Start loading `p`'s line for reading.
#[inline(always)]
pub(crate) fn prefetch_read<T>(p: *const T) {
    prefetch::<T, { HINT_READ }>(p);
}

/// Start loading `p`'s line to write it. Built for the baseline x86-64
/// target (no `prfchw` feature), the compiler emits a read prefetch
/// (`PREFETCHT0`) for this hint, not `PREFETCHW`: the line arrives shared,
/// and the stores that follow still upgrade it. Kept as the write hint so a
/// build with `-C target-feature=+prfchw` gets the owned fetch.
#[inline(always)]
pub(crate) fn prefetch_write<T>(p: *const T) {
    prefetch::<T, { HINT_WRITE }>(p);
}

#[cfg(all(target_arch = "x86_64", not(kvfeed_loom), not(miri)))]
const HINT_READ: i32 = core::arch::x86_64::_MM_HINT_T0;
#[cfg(all(target_arch = "x86_64", not(kvfeed_loom), not(miri)))]
const HINT_WRITE: i32 = core::arch::x86_64::_MM_HINT_ET0;
// Unused off x86-64 (and under loom and Miri): any value.
#[cfg(not(all(target_arch = "x86_64", not(kvfeed_loom), not(miri))))]
const HINT_READ: i32 = 0;
#[cfg(not(all(target_arch = "x86_64", not(kvfeed_loom), not(miri))))]
const HINT_WRITE: i32 = 0;

#[inline(always)]
fn prefetch<T, const HINT: i32>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(kvfeed_loom), not(miri)))]
    // SAFETY: a prefetch never faults and reads nothing the program sees.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<HINT>(p.cast::<i8>())
    };
    #[cfg(not(all(target_arch = "x86_64", not(kvfeed_loom), not(miri))))]
    let _ = p;
}
