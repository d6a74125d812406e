//! The C ABI of kvfeed.
//!
//! This crate wraps [`kvfeed::Feed`] over byte strings (`Feed<Arc<[u8]>, Arc<[u8]>>`)
//! behind opaque handles and plain `#[repr(C)]` structs. `cbindgen` 0.29.4
//! turns it into `include/kvfeed.h` (see `ffi/cbindgen.toml` and
//! `ffi/check-header.sh`); the header's preamble states the ownership,
//! lifetime, thread-safety and aliasing rules, and every item's doc comment
//! below is copied into it.
//!
//! # Layout
//!
//! - [`status`]: `kvfeed_status`, `kvfeed_status_str`, and the one panic guard
//!   (`status::guard`) that every `extern "C"` function runs its body in.
//! - `handle`: how an opaque C handle maps to the Rust value behind it.
//! - [`bytes`]: borrowed (`kvfeed_bytes`) and library-owned (`kvfeed_buf`) byte strings.
//! - [`store`]: `kvfeed_config` and the store functions.
//! - [`watcher`]: `kvfeed_watch_opts`, `kvfeed_event` and the watcher functions.
//!
//! # Additions to the C ABI of the specification
//!
//! Every name, type and status of the specification's C ABI is kept.
//! Additions and clarifications, all compatible with code written against it:
//!
//! - `kvfeed_status_str` is declared with a `kvfeed_status` parameter as in the
//!   contract, but the Rust side receives the enum's underlying `int`
//!   ([`status::kvfeed_status_arg`], renamed to `kvfeed_status` by
//!   `cbindgen.toml`) so that an out-of-range value from C returns
//!   `"unknown status"` instead of being undefined behaviour.
//! - Added macros: `KVFEED_DEFAULT_CAPACITY`, `KVFEED_MAX_CAPACITY`,
//!   `KVFEED_DEFAULT_MAX_KEY_LEN`, `KVFEED_DEFAULT_MAX_VALUE_LEN`.
//! - A `kvfeed_delete_prefix` prefix longer than `max_key_len` is
//!   `KVFEED_TOO_LARGE`, like a key.
//! - `kvfeed_config.capacity` above `KVFEED_MAX_CAPACITY` (2^30) returns
//!   `KVFEED_TOO_LARGE`, and so does a capacity whose ring the machine
//!   cannot allocate (the ring is allocated fallibly: the process lives on).
//! - `kvfeed_watch_opts.kinds` with a bit outside `KVFEED_KIND_CREATE |
//!   KVFEED_KIND_UPDATE | KVFEED_KIND_DELETE | KVFEED_KIND_SNAPSHOT_DONE`, or
//!   with no change kind at all (only `KVFEED_KIND_SNAPSHOT_DONE`), returns
//!   `KVFEED_INVALID_ARG`. `from_seq` is ignored unless `start` is
//!   `KVFEED_START_FROM`. A filter key or prefix longer than the store's
//!   `max_key_len` returns `KVFEED_TOO_LARGE`.
//! - A second thread calling `kvfeed_watcher_next` or `kvfeed_watcher_cursor`
//!   while another thread is inside a call on the same watcher gets
//!   `KVFEED_INVALID_ARG` (misuse is detected instead of being a data race).
//! - `kvfeed_watcher_next` writes the whole `kvfeed_event` on `KVFEED_OK` and on
//!   `KVFEED_LAGGED` (on LAGGED every field but `missed` and `resume_at` is
//!   zero / NULL); it leaves `*out` untouched on every other status. A
//!   zero-length key, value or old value is given as a NULL pointer with length
//!   0 (the `has_value` / `has_old` flags tell "empty" from "absent").
//! - `kvfeed_get` hands out an empty value as `{ NULL, 0 }` (nothing to free,
//!   though `kvfeed_buf_free` on it is harmless).
//! - `kvfeed_watcher_interrupt` ends a blocked `kvfeed_watcher_next` with
//!   `KVFEED_TIMEOUT` without closing the watcher (a pending interrupt ends
//!   the next wait), and `kvfeed_watcher_next_batch` reads up to `cap`
//!   events in one call (a lap or close only when no event is returned).

#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The C names (`kvfeed_store`, `KVFEED_OK`, ...) are the API.
#![allow(non_camel_case_types)]

pub mod bytes;
mod handle;
pub mod status;
pub mod store;
pub mod watcher;

pub use bytes::{kvfeed_buf, kvfeed_buf_free, kvfeed_bytes};
pub use status::{kvfeed_status, kvfeed_status_str};
pub use store::{
    kvfeed_compare_and_put, kvfeed_config, kvfeed_delete, kvfeed_delete_prefix, kvfeed_get,
    kvfeed_head, kvfeed_put, kvfeed_store, kvfeed_store_close, kvfeed_store_free, kvfeed_store_new,
};
pub use watcher::{
    kvfeed_event, kvfeed_start, kvfeed_watch_new, kvfeed_watch_opts, kvfeed_watcher,
    kvfeed_watcher_close, kvfeed_watcher_cursor, kvfeed_watcher_free, kvfeed_watcher_interrupt,
    kvfeed_watcher_next, kvfeed_watcher_next_batch,
};

use std::ffi::c_char;

/// The major version of the library this header belongs to (semver).
/// Compare with `kvfeed_version()` to detect a header/library mismatch.
pub const KVFEED_VERSION_MAJOR: u32 = 0;
/// The minor version of the library this header belongs to (semver).
pub const KVFEED_VERSION_MINOR: u32 = 1;
/// The patch version of the library this header belongs to (semver).
pub const KVFEED_VERSION_PATCH: u32 = 0;

/// Parses a decimal `u32` at compile time (for the version check below).
const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: u32 = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version component is not a number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

// The version macros are literals (cbindgen copies literals, it cannot
// evaluate `env!`); these assertions make a version bump in Cargo.toml fail
// to compile until they are updated, and ffi/check-header.sh then fails until
// the header is regenerated.
const _: () = assert!(
    KVFEED_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
    "KVFEED_VERSION_MAJOR disagrees with Cargo.toml"
);
const _: () = assert!(
    KVFEED_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
    "KVFEED_VERSION_MINOR disagrees with Cargo.toml"
);
const _: () = assert!(
    KVFEED_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
    "KVFEED_VERSION_PATCH disagrees with Cargo.toml"
);

/// NUL-terminated `CARGO_PKG_VERSION`.
static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library's version as a static NUL-terminated string, e.g. `"0.1.0"`.
///
/// Ownership: the string is static; never free it. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn kvfeed_version() -> *const c_char {
    status::guard_or(VERSION.as_ptr().cast(), || VERSION.as_ptr().cast())
}

/// Test-only: panics inside the panic guard, so that the C tests can check a
/// panic becomes `KVFEED_INTERNAL` and the process lives on. Only built with
/// the `test-hooks` feature; not declared in the public header.
#[cfg(feature = "test-hooks")]
#[no_mangle]
pub extern "C" fn kvfeed_test_panic() -> kvfeed_status {
    status::guard(|| panic!("kvfeed_test_panic: deliberate panic (test hook)"))
}

/// The byte-string feed behind a C store handle.
///
/// cbindgen:ignore
pub(crate) type ByteFeed = kvfeed::Feed<Key, Val>;
/// Keys: short ones inline, long ones shared (see [`bytes::Bytes`]).
pub(crate) type Key = bytes::Bytes;
/// Values, like keys; the core stores them in the event record.
pub(crate) type Val = bytes::Bytes;
