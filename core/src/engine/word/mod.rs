//! The word engine: feeds whose keys and values each fit in a machine word
//! (`u64 -> u64` and the other primitive integer types) keep no record per
//! key and allocate nothing per write.
//!
//! The record engine (`table.rs`, `node.rs`, `ring.rs`, ...) keeps, for
//! every key, a heap record that is both the key's current value and an
//! event in the ring. For a `u64 -> u64` feed that record is most of a
//! key's memory (32 of 101.5 bytes at 1M keys, with the allocator's
//! header), one allocation per write, and a pointer a reader must follow
//! under a reclamation guard. When the key and the value are plain bits,
//! none of that is needed:
//!
//! * the key table's slot holds the key, the value and the version inline,
//!   in 24 bytes (`table.rs`): `{ ctrl, key, value }`;
//! * the ring's slot holds the whole event inline, in 32 bytes
//!   (`ring.rs`): `{ stamp, key, value, old }`, read under the stamp like a
//!   seqlock, so a watcher follows no pointer and needs no guard;
//! * a write copies bits; the old value is read from the slot while the
//!   writer holds the key (`write.rs`).
//!
//! Which feeds take this path is decided once, when the feed is made, by
//! the key and value types ([`is_word`]): a fixed list of primitive types
//! whose clone is a bit copy. Other types (strings, user types, even
//! `Copy` ones, which the library cannot recognise without specialization)
//! take the record engine. Everything above the engine (the public API,
//! filters, snapshots, laps, parking, the C ABI) is the same for both.
//!
//! Protocols, each stated at the top of its file:
//!
//! 1. `table.rs`: the slot's `ctrl` word (state, tags and version in one),
//!    probing by key, migration;
//! 2. `write.rs`: a key's writes (the `PENDING` mark as in the record
//!    engine) and how `get` reads a value that a writer is replacing
//!    without waiting for it (`intent.rs`);
//! 3. `ring.rs`: events inline in the ring, published and read under the
//!    stamp.

mod intent;
mod ring;
mod table;
mod write;

use std::any::TypeId;
use std::mem::size_of;

pub(crate) use ring::{WordEvent, WordRead, WordRing};
pub(crate) use table::WordMap;
pub(crate) use write::Parts;

use crate::engine::ring::RingAllocError;

/// Whether `T` is one of the types the word engine stores as bits: a
/// primitive whose clone is a copy of its bytes and that fits in a `u64`.
/// A user type that is `Copy` would qualify too, but without
/// specialization the library can only recognise types by name; those
/// take the record engine.
pub(crate) fn is_word<T: 'static>() -> bool {
    let t = TypeId::of::<T>();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<isize>(),
        TypeId::of::<bool>(),
        TypeId::of::<char>(),
        TypeId::of::<f32>(),
        TypeId::of::<f64>(),
    ]
    .contains(&t)
}

/// `x`'s bytes in the low bytes of a word (the rest zero).
///
/// Only called for types [`is_word`] accepts (the word engine exists only
/// for those); the assertion is resolved at compile time.
#[inline]
pub(crate) fn to_bits<T>(x: &T) -> u64 {
    assert!(size_of::<T>() <= size_of::<u64>());
    let mut w = 0u64;
    // SAFETY: `T` fits in the word (asserted); copying its bytes reads
    // `size_of::<T>()` initialized bytes of `x` (a primitive: no padding).
    unsafe {
        std::ptr::copy_nonoverlapping(
            (x as *const T).cast::<u8>(),
            (&mut w as *mut u64).cast::<u8>(),
            size_of::<T>(),
        )
    };
    w
}

/// The value whose bytes [`to_bits`] stored in `w`.
///
/// # Safety
/// `w` came from `to_bits::<T>` of a valid `T`, and `T` is a type
/// [`is_word`] accepts (a copy of its bytes is a valid, independent value).
#[inline]
pub(crate) unsafe fn from_bits<T>(w: u64) -> T {
    assert!(size_of::<T>() <= size_of::<u64>());
    // SAFETY: the caller's guarantee: the low bytes are a valid `T`'s.
    unsafe { std::ptr::read_unaligned((&w as *const u64).cast::<T>()) }
}

/// A word feed's key table and ring.
pub(crate) struct Words<K> {
    pub(crate) map: WordMap<K>,
    pub(crate) ring: WordRing,
    intents: intent::Intents,
}

impl<K> Words<K> {
    pub(crate) fn new(capacity: usize) -> Result<Self, RingAllocError> {
        Ok(Words {
            map: WordMap::new(),
            ring: WordRing::new(capacity)?,
            intents: intent::Intents::new(),
        })
    }
}
