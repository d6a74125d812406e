//! Status codes and the panic guard.
//!
//! Every `extern "C"` function of this crate runs its whole body inside
//! `guard` (or `guard_or` / `guard_void` for the few that do not return a
//! status), so a panic anywhere below the boundary becomes `KVFEED_INTERNAL`
//! (or the documented fallback) instead of unwinding into C, which would
//! abort the process. `tests/abi.rs` checks mechanically that no entry point
//! skips the guard.

use std::ffi::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a kvfeed function did. Every fallible function returns one and writes
/// its results through out-parameters only when it returns `KVFEED_OK`
/// (exceptions are named in the function's doc).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum kvfeed_status {
    /// Success; the out-parameters are written.
    KVFEED_OK = 0,
    /// The key is absent (`kvfeed_get`, `kvfeed_delete`).
    KVFEED_NOT_FOUND = 1,
    /// `kvfeed_watcher_next(_batch)` found no event before its timeout, or
    /// `kvfeed_watcher_interrupt` ended its wait.
    KVFEED_TIMEOUT = 2,
    /// The watcher was lapped: `missed` sequence numbers were overwritten
    /// before it read them; it continues at `resume_at`.
    KVFEED_LAGGED = 3,
    /// The store (or this watcher) is closed. A watcher returns it after it has
    /// drained every event still readable.
    KVFEED_CLOSED = 4,
    /// `kvfeed_compare_and_put`: the key's version is not the expected one.
    KVFEED_CONFLICT = 5,
    /// A required pointer was NULL (or a NULL byte pointer came with a
    /// non-zero length). Nothing was changed.
    KVFEED_NULL_ARG = 6,
    /// A key or value is longer than the store's configured maximum, or a
    /// capacity is over `KVFEED_MAX_CAPACITY`. Nothing was changed.
    KVFEED_TOO_LARGE = 7,
    /// A malformed argument (bad capacity, `start`, `kinds`, or concurrent use
    /// of one watcher from two threads). Nothing was changed.
    KVFEED_INVALID_ARG = 8,
    /// A bug inside the library (a caught panic). The process lives on; the
    /// handle involved should be freed.
    KVFEED_INTERNAL = 9,
}

pub use kvfeed_status::*;

/// Shorthand for a step of an entry point that either goes on or returns a
/// status to C.
pub(crate) type Step<T> = Result<T, kvfeed_status>;

/// Runs the body of an entry point, turning a panic into `KVFEED_INTERNAL`.
///
/// The body may return early with `Err(status)`; `Ok(status)` is returned as
/// is. `AssertUnwindSafe` is sound here in the sense that matters for C: after
/// a panic the caller only learns `KVFEED_INTERNAL`; a handle whose operation
/// panicked is documented as "free it".
pub(crate) fn guard(body: impl FnOnce() -> Step<kvfeed_status>) -> kvfeed_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(s)) | Ok(Err(s)) => s,
        Err(payload) => {
            // Dropping the payload runs arbitrary Drop code, which may itself
            // panic: keep that inside the boundary too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            KVFEED_INTERNAL
        }
    }
}

/// [`guard`] for entry points that return a value: `fallback` on panic.
pub(crate) fn guard_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            fallback
        }
    }
}

/// [`guard`] for entry points that return nothing (the `*_free` functions).
pub(crate) fn guard_void(body: impl FnOnce()) {
    guard_or((), body)
}

impl kvfeed_status {
    /// The static, NUL-terminated description of a status code.
    pub fn as_cstr(self) -> &'static std::ffi::CStr {
        match self {
            KVFEED_OK => c"ok",
            KVFEED_NOT_FOUND => c"not found",
            KVFEED_TIMEOUT => c"timed out",
            KVFEED_LAGGED => c"lagged: events were overwritten before they were read",
            KVFEED_CLOSED => c"closed",
            KVFEED_CONFLICT => c"conflict: version mismatch",
            KVFEED_NULL_ARG => c"null argument",
            KVFEED_TOO_LARGE => c"too large",
            KVFEED_INVALID_ARG => c"invalid argument",
            KVFEED_INTERNAL => c"internal error (a bug in kvfeed)",
        }
    }

    /// The status with this numeric value, if there is one.
    pub fn from_int(code: c_int) -> Option<Self> {
        Some(match code {
            0 => KVFEED_OK,
            1 => KVFEED_NOT_FOUND,
            2 => KVFEED_TIMEOUT,
            3 => KVFEED_LAGGED,
            4 => KVFEED_CLOSED,
            5 => KVFEED_CONFLICT,
            6 => KVFEED_NULL_ARG,
            7 => KVFEED_TOO_LARGE,
            8 => KVFEED_INVALID_ARG,
            9 => KVFEED_INTERNAL,
            _ => return None,
        })
    }
}

/// What `kvfeed_status_str` returns for a value that is no status.
const UNKNOWN: &std::ffi::CStr = c"unknown status";

/// A `kvfeed_status` as C passes it: the enum's underlying integer, which may
/// hold any value (reading a Rust enum with an out-of-range discriminant would
/// be undefined behaviour). `cbindgen.toml` renames it to `kvfeed_status` in
/// the header, so C sees the contract's signature.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub struct kvfeed_status_arg(pub c_int);

/// Describes a status: a static NUL-terminated string (e.g. "not found"),
/// never NULL, never to be freed. Any value is accepted: one that is not a
/// `kvfeed_status` gives "unknown status". Thread safety: any thread.
#[no_mangle]
pub extern "C" fn kvfeed_status_str(status: kvfeed_status_arg) -> *const c_char {
    guard_or(UNKNOWN.as_ptr(), || {
        match kvfeed_status::from_int(status.0) {
            Some(s) => s.as_cstr().as_ptr(),
            None => UNKNOWN.as_ptr(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_has_a_description() {
        for code in 0..10 {
            let s = kvfeed_status::from_int(code).unwrap();
            assert_eq!(s as c_int, code);
            assert!(!s.as_cstr().to_bytes().is_empty());
        }
        assert_eq!(kvfeed_status::from_int(10), None);
        assert_eq!(kvfeed_status::from_int(-1), None);
    }

    #[test]
    fn guard_turns_a_panic_into_internal() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let s = guard(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(s, KVFEED_INTERNAL);
        assert_eq!(guard(|| Err(KVFEED_NULL_ARG)), KVFEED_NULL_ARG);
        assert_eq!(guard(|| Ok(KVFEED_OK)), KVFEED_OK);
    }
}
