//! Byte strings across the boundary.
//!
//! Inputs are borrowed `(pointer, length)` pairs that the library reads during
//! the call only (it copies what it keeps). Outputs are either borrowed from a
//! handle (a watcher's event) or library-owned (`kvfeed_buf`, freed with
//! `kvfeed_buf_free`).

use crate::status::{guard_void, Step, KVFEED_NULL_ARG, KVFEED_TOO_LARGE};

/// A borrowed byte string: `len` bytes at `ptr`. `{ NULL, 0 }` is the empty
/// string; NULL with a non-zero length is `KVFEED_NULL_ARG`. The library reads
/// it during the call only and copies what it keeps.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kvfeed_bytes {
    /// The first byte (may be NULL when `len` is 0).
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

/// A byte string owned by the library, handed to the caller (`kvfeed_get`).
/// The caller owns it until it passes it to `kvfeed_buf_free`, exactly once,
/// without changing `ptr` or `len`. An empty string is `{ NULL, 0 }`. It is
/// not tied to any handle: it stays valid after the store is freed, and may be
/// freed from any thread.
#[repr(C)]
#[derive(Debug)]
pub struct kvfeed_buf {
    /// The first byte, or NULL when `len` is 0.
    pub ptr: *mut u8,
    /// The number of bytes.
    pub len: usize,
}

impl kvfeed_buf {
    /// Copies `bytes` into a new library-owned buffer.
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return kvfeed_buf {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed: Box<[u8]> = bytes.into();
        let len = boxed.len();
        kvfeed_buf {
            ptr: Box::into_raw(boxed).cast(),
            len,
        }
    }
}

/// Frees a buffer returned by the library and sets it to `{ NULL, 0 }`, so a
/// second call is harmless. NULL, or a buffer that is already `{ NULL, 0 }`,
/// does nothing. Thread safety: any thread; the buffer itself must not be in
/// use by another thread.
///
/// # Safety
///
/// `buf` is NULL or points to a `kvfeed_buf` that is `{ NULL, 0 }` or was
/// filled by this library and not modified since.
#[no_mangle]
pub unsafe extern "C" fn kvfeed_buf_free(buf: *mut kvfeed_buf) {
    guard_void(|| {
        // SAFETY: `buf` is NULL or valid for reads and writes (caller's contract).
        let Some(buf) = (unsafe { buf.as_mut() }) else {
            return;
        };
        if !buf.ptr.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(buf.ptr, buf.len);
            // SAFETY: a non-NULL `ptr` with its `len` is exactly the
            // `Box<[u8]>` that `copy_of` leaked (caller's contract: unmodified,
            // not yet freed); we take it back once and then clear the buffer.
            drop(unsafe { Box::from_raw(slice) });
        }
        buf.ptr = std::ptr::null_mut();
        buf.len = 0;
    })
}

/// Borrows `len` bytes at `ptr` for the duration of a call, checking NULL and
/// the length limit first.
///
/// # Safety
///
/// When `ptr` is not NULL and `len <= max`, `ptr` is valid for reads of `len`
/// bytes, which nobody writes during the call.
pub(crate) unsafe fn borrow_bytes<'a>(ptr: *const u8, len: usize, max: usize) -> Step<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(KVFEED_NULL_ARG);
    }
    // `max` never exceeds isize::MAX (see store.rs), so from_raw_parts' size
    // limit holds after this check.
    if len > max {
        return Err(KVFEED_TOO_LARGE);
    }
    // SAFETY: non-NULL, `len` bytes readable and not mutated during the call
    // (caller's contract); `len <= max <= isize::MAX`; u8 has alignment 1.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The C pointer for a borrowed slice: NULL when it is empty.
pub(crate) fn c_ptr(bytes: &[u8]) -> *const u8 {
    if bytes.is_empty() {
        std::ptr::null()
    } else {
        bytes.as_ptr()
    }
}

/// How many bytes a [`Bytes`] holds inline (without a heap allocation).
const INLINE: usize = 22;

/// The store's byte strings (keys and values): up to [`INLINE`] bytes are
/// held inline, longer ones in a shared heap allocation.
///
/// Why not just `Arc<[u8]>`: a put of a short key and value then costs no
/// allocation besides the core's event record (two fewer `malloc`/`free`
/// pairs per write), and copying an event out for C copies a few bytes
/// instead of bumping reference counts that other watchers share. The price:
/// an event handed to C points into the watcher's copy of the `Change`, so
/// that copy must not move while C holds the pointers (see `watcher.rs`).
#[derive(Clone)]
pub(crate) enum Bytes {
    /// `len <= INLINE` bytes in `data[..len]`.
    Inline { len: u8, data: [u8; INLINE] },
    /// Longer byte strings.
    Heap(std::sync::Arc<[u8]>),
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut data = [0; INLINE];
            data[..b.len()].copy_from_slice(b);
            Bytes::Inline {
                len: b.len() as u8,
                data,
            }
        } else {
            Bytes::Heap(b.into())
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, data } => &data[..*len as usize],
            Bytes::Heap(b) => b,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

// Lookups by `&[u8]` need `Borrow<[u8]>`, whose contract is that `Hash` and
// `Eq` agree with `[u8]`'s: both below go through the slice.
impl std::borrow::Borrow<[u8]> for Bytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl std::hash::Hash for Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Bytes {}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::Bytes;
    use std::hash::{BuildHasher, Hash, Hasher};

    #[test]
    fn inline_and_heap_agree_with_slices() {
        let s = std::collections::hash_map::RandomState::new();
        for n in [0, 1, 21, 22, 23, 100] {
            let v: Vec<u8> = (0..n as u8).collect();
            let b = Bytes::from(&v[..]);
            assert_eq!(&*b, &v[..]);
            assert_eq!(matches!(b, Bytes::Inline { .. }), n <= 22);
            let (mut h1, mut h2) = (s.build_hasher(), s.build_hasher());
            b.hash(&mut h1);
            v[..].hash(&mut h2);
            assert_eq!(h1.finish(), h2.finish(), "Borrow<[u8]> needs equal hashes");
            assert_eq!(b.clone(), b);
        }
        assert_ne!(Bytes::from(&b"ab"[..]), Bytes::from(&b"abc"[..]));
    }
}
