//! Arrays of slots that start all zero: the rings' and the tables' slots.
//!
//! They are allocated zeroed, so the kernel maps their pages only when a
//! slot is first written (a huge ring costs what is used), and fallibly (a
//! ring the machine cannot hold is an error, `Config`). Under loom, whose
//! atomics are not plain memory, they are built one by one.

/// A slot whose all-zero bytes are a valid empty slot.
///
/// # Safety
/// Every field must be valid when all its bytes are zero (atomics at 0,
/// null pointers, `MaybeUninit`), and that value must mean "empty".
pub(crate) unsafe trait Zeroed: Sized {
    /// The empty slot, built field by field.
    #[cfg(kvfeed_loom)]
    fn empty() -> Self;
}

/// `n` empty slots, or None when the memory cannot be had.
#[cfg(not(kvfeed_loom))]
pub(crate) fn zeroed<T: Zeroed>(n: usize) -> Option<Box<[T]>> {
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    if layout.size() == 0 {
        return None;
    }
    // SAFETY: the layout is not zero-sized (checked).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(ptr.cast::<T>(), n);
    // SAFETY: allocated by the global allocator with the layout of `[T; n]`,
    // which `Box<[T]>` frees with; all zeroes is a valid `T` (`Zeroed`).
    Some(unsafe { Box::from_raw(slice) })
}

/// `n` empty slots, or None when the memory cannot be had.
#[cfg(kvfeed_loom)]
pub(crate) fn zeroed<T: Zeroed>(n: usize) -> Option<Box<[T]>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend((0..n).map(|_| T::empty()));
    Some(v.into_boxed_slice())
}

/// `n` empty slots for a key table: huge pages asked for (`huge.rs`), and
/// the process aborts when the memory is not there, as for any collection
/// that grows (a table grows while writes run; there is no caller to hand
/// an error to).
pub(crate) fn table<T: Zeroed>(n: usize) -> Box<[T]> {
    let Some(slots) = zeroed::<T>(n) else {
        let layout = std::alloc::Layout::array::<T>(n).expect("table size fits in memory");
        std::alloc::handle_alloc_error(layout);
    };
    #[cfg(not(kvfeed_loom))]
    crate::engine::huge::advise(
        slots.as_ptr() as *mut u8,
        std::mem::size_of_val::<[T]>(&slots),
    );
    slots
}
