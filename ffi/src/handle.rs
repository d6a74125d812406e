//! Opaque handles.
//!
//! A C handle type (`kvfeed_store`, `kvfeed_watcher`) is a zero-sized marker
//! struct that C only ever sees behind a pointer; `Opaque::Inner` names the
//! Rust value such a pointer really points to. A handle is created by
//! `into_raw` (a `Box<Inner>` turned into `*mut Marker`) and destroyed by
//! `free`; in between it is only ever borrowed *shared* (`&Inner`), even
//! through a `T*` parameter, so that a `const T*` call on one thread (for
//! example `kvfeed_watcher_close`) and a `T*` call on another never create a
//! `&mut` that aliases a `&`. State that a `T*` call mutates lives in an
//! `UnsafeCell` guarded by the handle itself (see `watcher.rs`).

use crate::status::{Step, KVFEED_NULL_ARG};

/// A C-visible marker type and the Rust value its pointers point to.
pub(crate) trait Opaque {
    /// The value a `*const Self` from C points to.
    type Inner;
}

/// Boxes `inner` and returns it as a C handle.
pub(crate) fn into_raw<T: Opaque>(inner: T::Inner) -> *mut T {
    Box::into_raw(Box::new(inner)).cast()
}

/// Borrows the value behind a handle; `KVFEED_NULL_ARG` for NULL.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`into_raw::<T>`] and not yet passed to
/// [`free`]; it stays valid for `'a` (the C caller does not free the handle
/// while a call that uses it is running: a rule of the header).
pub(crate) unsafe fn borrow<'a, T: Opaque>(ptr: *const T) -> Step<&'a T::Inner> {
    let inner = ptr.cast::<T::Inner>();
    // SAFETY: by the caller's contract a non-NULL `ptr` came from `into_raw`,
    // i.e. from `Box<T::Inner>`, so it is aligned, initialised and live for 'a;
    // handles are only ever borrowed shared (see the module doc).
    unsafe { inner.as_ref() }.ok_or(KVFEED_NULL_ARG)
}

/// Takes back and drops the value behind a handle; NULL does nothing.
///
/// # Safety
///
/// `ptr` is NULL or was returned by [`into_raw::<T>`] and not yet freed, and
/// no other call is using it (the C caller owns the handle exclusively).
pub(crate) unsafe fn free<T: Opaque>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: by the caller's contract `ptr` is the pointer of a live
        // `Box<T::Inner>` that nobody else uses; we take its ownership back once.
        drop(unsafe { Box::from_raw(ptr.cast::<T::Inner>()) });
    }
}

/// Writes `value` through a required out-pointer.
///
/// # Safety
///
/// `out` is valid for writes of a `T` (checked non-NULL by the caller).
pub(crate) unsafe fn write<T>(out: *mut T, value: T) {
    // SAFETY: `out` is valid for writes per the caller's contract; `write`
    // does not read or drop the old (possibly uninitialised) value.
    unsafe { out.write(value) }
}

/// Writes `value` through a nullable out-pointer, if it is not NULL.
///
/// # Safety
///
/// `out` is NULL or valid for writes of a `T`.
pub(crate) unsafe fn write_opt<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL, so valid for writes per the caller's contract.
        unsafe { write(out, value) }
    }
}

/// `KVFEED_NULL_ARG` when a required pointer is NULL.
pub(crate) fn required<T>(ptr: *const T) -> Step<()> {
    if ptr.is_null() {
        Err(KVFEED_NULL_ARG)
    } else {
        Ok(())
    }
}
