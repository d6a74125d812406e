//! Huge pages for the key table.
//!
//! Every write probes a random slot of the table, so a table of megabytes
//! touches a random 4 KiB page per write: a TLB miss on top of the cache
//! miss once the table outgrows what the TLB covers (an 8 MB table at 100k
//! keys is 2048 pages). Where the kernel backs memory with transparent
//! huge pages only on request (`madvise` mode, this machine's and a
//! common default), the table asks for them.

/// Asks the kernel to back the 2 MiB-aligned part of `[ptr, ptr + len)`
/// with huge pages. Only a hint: it changes no contents, and failure is
/// ignored.
#[cfg(all(target_os = "linux", not(miri)))]
pub(crate) fn advise(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end <= start {
        return;
    }
    // SAFETY: the range lies inside an allocation the caller owns;
    // MADV_HUGEPAGE changes how it is backed, never what it holds.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// No huge pages to ask for.
#[cfg(not(all(target_os = "linux", not(miri))))]
pub(crate) fn advise(_ptr: *mut u8, _len: usize) {}
