//! The store: `kvfeed_config` and the map operations.
//!
//! A `kvfeed_store` is a `Box<Store>`: the feed handle plus the length limits
//! it was configured with (checked here, before anything is copied, so that an
//! oversize argument allocates nothing and changes nothing). Every operation
//! borrows the store shared; `Feed` is `Sync`, so any number of threads may
//! call them at once.

use kvfeed::{CasError, Config, ConfigError, WriteError};

use crate::bytes::{borrow_bytes, kvfeed_buf};
use crate::handle::{self, Opaque};
use crate::status::*;
use crate::{ByteFeed, Key, Val};

/// Default ring capacity (`kvfeed_config.capacity == 0`).
pub const KVFEED_DEFAULT_CAPACITY: u64 = 65536;
/// Largest accepted ring capacity; above it `kvfeed_store_new` returns
/// `KVFEED_TOO_LARGE`.
pub const KVFEED_MAX_CAPACITY: u64 = 1 << 30;
/// Default maximum key length in bytes (`kvfeed_config.max_key_len == 0`).
pub const KVFEED_DEFAULT_MAX_KEY_LEN: u64 = 65536;
/// Default maximum value length in bytes (`kvfeed_config.max_value_len == 0`).
pub const KVFEED_DEFAULT_MAX_VALUE_LEN: u64 = 16 << 20;

/// Store configuration. A zero-initialised struct means "all defaults", and
/// so does passing NULL to `kvfeed_store_new`. The library reads it during
/// `kvfeed_store_new` only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct kvfeed_config {
    /// Ring capacity in events: 0 for `KVFEED_DEFAULT_CAPACITY`, otherwise a
    /// power of two >= 2 (else `KVFEED_INVALID_ARG`) and at most
    /// `KVFEED_MAX_CAPACITY` (else `KVFEED_TOO_LARGE`). A watcher that falls
    /// more than this many sequence numbers behind is told `KVFEED_LAGGED`.
    pub capacity: u64,
    /// Nonzero: a put whose value equals the current one emits no event and
    /// returns the key's current version as its seq.
    pub suppress_unchanged: u32,
    /// Longest key in bytes (0: `KVFEED_DEFAULT_MAX_KEY_LEN`); longer keys,
    /// filter keys and prefixes are `KVFEED_TOO_LARGE`.
    pub max_key_len: u64,
    /// Longest value in bytes (0: `KVFEED_DEFAULT_MAX_VALUE_LEN`); longer
    /// values are `KVFEED_TOO_LARGE`.
    pub max_value_len: u64,
}

/// A store: a concurrent byte-string map whose every mutation is sequenced
/// into a ring that watchers read. Opaque; created by `kvfeed_store_new`,
/// destroyed by `kvfeed_store_free`.
///
/// Thread safety: every function taking a `const kvfeed_store*` may be called
/// from any number of threads at once. `kvfeed_store_free` must not run
/// concurrently with any other call on the same store.
pub struct kvfeed_store {
    _private: [u8; 0],
}

/// What a `kvfeed_store*` points to.
pub(crate) struct Store {
    /// The feed. Watchers hold clones of it, so it outlives this handle.
    pub(crate) feed: ByteFeed,
    /// Longest accepted key (and filter key, and prefix); <= isize::MAX.
    pub(crate) max_key: usize,
    /// Longest accepted value; <= isize::MAX.
    pub(crate) max_value: usize,
}

impl Opaque for kvfeed_store {
    type Inner = Store;
}

impl Store {
    /// Borrows a key argument.
    ///
    /// # Safety
    ///
    /// As [`borrow_bytes`].
    pub(crate) unsafe fn key<'a>(&self, ptr: *const u8, len: usize) -> Step<&'a [u8]> {
        // SAFETY: forwarded from the caller.
        unsafe { borrow_bytes(ptr, len, self.max_key) }
    }

    /// Borrows a value argument.
    ///
    /// # Safety
    ///
    /// As [`borrow_bytes`].
    unsafe fn value<'a>(&self, ptr: *const u8, len: usize) -> Step<&'a [u8]> {
        // SAFETY: forwarded from the caller.
        unsafe { borrow_bytes(ptr, len, self.max_value) }
    }
}

fn limit(configured: u64, default: u64) -> usize {
    let n = if configured == 0 { default } else { configured };
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .min(isize::MAX as usize)
}

impl From<WriteError> for kvfeed_status {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Closed => KVFEED_CLOSED,
            WriteError::TooLarge { .. } => KVFEED_TOO_LARGE,
        }
    }
}

fn build(cfg: &kvfeed_config) -> Step<Store> {
    let capacity = match cfg.capacity {
        0 => KVFEED_DEFAULT_CAPACITY,
        n if n > KVFEED_MAX_CAPACITY => return Err(KVFEED_TOO_LARGE),
        n if n < 2 || !n.is_power_of_two() => return Err(KVFEED_INVALID_ARG),
        n => n,
    };
    let max_key = limit(cfg.max_key_len, KVFEED_DEFAULT_MAX_KEY_LEN);
    let max_value = limit(cfg.max_value_len, KVFEED_DEFAULT_MAX_VALUE_LEN);
    let mut config: Config<Key, Val> = Config::new()
        .capacity(capacity as usize)
        .max_key_len(max_key)
        .max_value_len(max_value);
    if cfg.suppress_unchanged != 0 {
        config = config.suppress_unchanged();
    }
    let feed = ByteFeed::with_config(config).map_err(|e| match e {
        ConfigError::Capacity(_) => KVFEED_INVALID_ARG,
        // The ring could not be allocated: the capacity is too large for
        // this machine (the process lives on, nothing was created).
        ConfigError::OutOfMemory { .. } => KVFEED_TOO_LARGE,
    })?;
    Ok(Store {
        feed,
        max_key,
        max_value,
    })
}

/// Creates a store. `cfg` may be NULL (all defaults); it is read during the
/// call only. On `KVFEED_OK`, `*out` is a new store that the caller owns and
/// must pass to `kvfeed_store_free`; on any other status `*out` is untouched.
///
/// Returns `KVFEED_NULL_ARG` (out is NULL), `KVFEED_INVALID_ARG` (capacity not
/// a power of two >= 2), `KVFEED_TOO_LARGE` (capacity over
/// `KVFEED_MAX_CAPACITY`).
///
/// # Safety
///
/// `cfg` is NULL or points to a readable `kvfeed_config`; `out` is NULL or
/// valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_store_new(
    cfg: *const kvfeed_config,
    out: *mut *mut kvfeed_store,
) -> kvfeed_status {
    guard(|| {
        handle::required(out)?;
        // SAFETY: NULL or a readable config (caller's contract); copied out.
        let cfg = unsafe { cfg.as_ref() }.copied().unwrap_or_default();
        let store = build(&cfg)?;
        // SAFETY: `out` is non-NULL and writable (checked; caller's contract).
        unsafe { handle::write(out, handle::into_raw::<kvfeed_store>(store)) };
        Ok(KVFEED_OK)
    })
}

/// Closes the store's feed and frees the handle. NULL does nothing.
///
/// Watchers created from this store stay valid (they keep the feed alive):
/// they return the events still readable, then `KVFEED_CLOSED`; free them with
/// `kvfeed_watcher_free` as usual. Buffers from `kvfeed_get` stay valid.
///
/// # Safety
///
/// `store` is NULL or a live store handle that no other thread is using; it
/// must not be used after this call.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_store_free(store: *mut kvfeed_store) {
    guard_void(|| {
        // SAFETY: NULL or live (caller's contract); borrowed only until the
        // `free` below.
        if let Ok(s) = unsafe { handle::borrow(store) } {
            s.feed.close();
        }
        // SAFETY: NULL or a live handle used by nobody else (caller's contract).
        unsafe { handle::free(store) }
    })
}

/// Closes the store's feed without freeing the handle: later writes return
/// `KVFEED_CLOSED`; watchers drain what is left, then return `KVFEED_CLOSED`
/// (a blocked `kvfeed_watcher_next` wakes). Reads (`kvfeed_get`,
/// `kvfeed_head`) keep working. Idempotent. Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or a live store handle.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_store_close(store: *const kvfeed_store) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        s.feed.close();
        Ok(KVFEED_OK)
    })
}

/// Sets `key` to `value` (a Create or Update event). Key and value are copied.
/// On `KVFEED_OK`, `*out_seq` (nullable) is the event's seq (or, when the
/// store suppresses unchanged puts and the value is unchanged, the key's
/// current version: no event).
///
/// Returns `KVFEED_NULL_ARG`, `KVFEED_TOO_LARGE`, `KVFEED_CLOSED`.
/// Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `key`/`value` are NULL or readable for
/// `key_len`/`value_len` bytes; `out_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_put(
    store: *const kvfeed_store,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    out_seq: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        // SAFETY: readable for the given lengths (caller's contract).
        let (k, v) = unsafe { (s.key(key, key_len)?, s.value(value, value_len)?) };
        let seq = s.feed.put(Key::from(k), Val::from(v))?;
        // SAFETY: NULL or writable (caller's contract).
        unsafe { handle::write_opt(out_seq, seq) };
        Ok(KVFEED_OK)
    })
}

/// Reads the value of `key`. On `KVFEED_OK`, `*out_value` is a copy owned by
/// the caller (free it with `kvfeed_buf_free`; an empty value is `{ NULL, 0 }`)
/// and `*out_version` (nullable) is the key's version, the seq of the event
/// that last wrote it. Whatever `*out_value` held before is overwritten, not
/// freed.
///
/// Returns `KVFEED_NOT_FOUND`, `KVFEED_NULL_ARG`, `KVFEED_TOO_LARGE` (a key
/// longer than the maximum cannot be present). Never blocks on a lock.
/// Works after `kvfeed_store_close`. Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `key` is NULL or readable for `key_len` bytes;
/// `out_value` is NULL or writable; `out_version` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_get(
    store: *const kvfeed_store,
    key: *const u8,
    key_len: usize,
    out_value: *mut kvfeed_buf,
    out_version: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        handle::required(out_value)?;
        // SAFETY: readable for `key_len` bytes (caller's contract).
        let k = unsafe { s.key(key, key_len) }?;
        let Some((buf, version)) = s
            .feed
            .get_with(k, |v: &Val, version| (kvfeed_buf::copy_of(v), version))
        else {
            return Ok(KVFEED_NOT_FOUND);
        };
        // SAFETY: `out_value` non-NULL and writable, `out_version` NULL or
        // writable (checked; caller's contract).
        unsafe {
            handle::write(out_value, buf);
            handle::write_opt(out_version, version);
        }
        Ok(KVFEED_OK)
    })
}

/// Deletes `key` (a Delete event). On `KVFEED_OK`, `*out_seq` (nullable) is
/// the Delete event's seq. An absent key changes nothing, emits nothing and
/// returns `KVFEED_NOT_FOUND`.
///
/// Returns `KVFEED_NOT_FOUND`, `KVFEED_NULL_ARG`, `KVFEED_TOO_LARGE`,
/// `KVFEED_CLOSED`. Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `key` is NULL or readable for `key_len` bytes;
/// `out_seq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_delete(
    store: *const kvfeed_store,
    key: *const u8,
    key_len: usize,
    out_seq: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        // SAFETY: readable for `key_len` bytes (caller's contract).
        let k = unsafe { s.key(key, key_len) }?;
        match s.feed.delete_seq(k)? {
            None => Ok(KVFEED_NOT_FOUND),
            Some((seq, _old)) => {
                // SAFETY: NULL or writable (caller's contract).
                unsafe { handle::write_opt(out_seq, seq) };
                Ok(KVFEED_OK)
            }
        }
    })
}

/// Deletes every key that starts with `prefix` (one Delete event per key; an
/// empty prefix matches every key). On `KVFEED_OK`, `*out_count` (nullable) is
/// the number of keys removed (possibly 0).
///
/// Returns `KVFEED_NULL_ARG`, `KVFEED_TOO_LARGE`, `KVFEED_CLOSED`.
/// Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `prefix` is NULL or readable for `prefix_len`
/// bytes; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_delete_prefix(
    store: *const kvfeed_store,
    prefix: *const u8,
    prefix_len: usize,
    out_count: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        // SAFETY: readable for `prefix_len` bytes (caller's contract).
        let p = unsafe { s.key(prefix, prefix_len) }?;
        let n = s.feed.delete_prefix(p)?;
        // SAFETY: NULL or writable (caller's contract).
        unsafe { handle::write_opt(out_count, n as u64) };
        Ok(KVFEED_OK)
    })
}

/// Sets `key` to `value` only if the key's version is `expected_version`
/// (0: only if the key is absent). On `KVFEED_OK`, `*out_seq` is the event's
/// seq. On `KVFEED_CONFLICT`, nothing changed and `*out_current_version` is
/// the key's current version (0: absent); `*out_seq` is untouched.
///
/// Returns `KVFEED_CONFLICT`, `KVFEED_NULL_ARG` (any pointer, both outs
/// included), `KVFEED_TOO_LARGE`, `KVFEED_CLOSED`. Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `key`/`value` are NULL or readable for their
/// lengths; `out_seq` and `out_current_version` are NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kvfeed_compare_and_put(
    store: *const kvfeed_store,
    key: *const u8,
    key_len: usize,
    expected_version: u64,
    value: *const u8,
    value_len: usize,
    out_seq: *mut u64,
    out_current_version: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        handle::required(out_seq)?;
        handle::required(out_current_version)?;
        // SAFETY: readable for the given lengths (caller's contract).
        let (k, v) = unsafe { (s.key(key, key_len)?, s.value(value, value_len)?) };
        match s
            .feed
            .compare_and_put(Key::from(k), expected_version, Val::from(v))
        {
            Ok(seq) => {
                // SAFETY: non-NULL (checked) and writable (caller's contract).
                unsafe { handle::write(out_seq, seq) };
                Ok(KVFEED_OK)
            }
            Err(CasError::Conflict { current_version }) => {
                // SAFETY: non-NULL (checked) and writable (caller's contract).
                unsafe { handle::write(out_current_version, current_version) };
                Ok(KVFEED_CONFLICT)
            }
            Err(CasError::Write(e)) => Err(e.into()),
        }
    })
}

/// Writes the store's head to `*out_head`: the highest seq handed out so far
/// (0: none yet). Thread safety: any thread.
///
/// # Safety
///
/// `store` is NULL or live; `out_head` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_head(
    store: *const kvfeed_store,
    out_head: *mut u64,
) -> kvfeed_status {
    guard(|| {
        // SAFETY: NULL or live (caller's contract).
        let s = unsafe { handle::borrow(store) }?;
        handle::required(out_head)?;
        // SAFETY: non-NULL (checked) and writable (caller's contract).
        unsafe { handle::write(out_head, s.feed.head()) };
        Ok(KVFEED_OK)
    })
}
