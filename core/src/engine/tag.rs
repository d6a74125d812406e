//! Tag bits in the low bits of a key's current-node pointer.
//!
//! Nodes are 8-byte aligned, so a pointer to one has three free low bits.
//! The table keeps a key's whole per-key state in one word (see `table.rs`):
//! which node is current, and whether a write or a migration holds the key.

/// A write to this key is in flight: the rest of the word is still the state
/// before the write (the new node is not visible yet). Set by the writer's
/// CAS, cleared by its final store; nobody else changes the word meanwhile.
pub(crate) const PENDING: usize = 1;
/// The key is absent: the pointer is its Delete tombstone, or null when the
/// slot was created for a write that has not happened yet.
pub(crate) const DELETED: usize = 2;
/// A migration froze the word to copy it into the next table; it never
/// changes again in this table.
pub(crate) const FROZEN: usize = 4;
const TAGS: usize = PENDING | DELETED | FROZEN;

/// The tags of `p`.
#[inline]
pub(crate) fn tags<T>(p: *mut T) -> usize {
    p as usize & TAGS
}

/// `p` without its tags (provenance kept: only the address moves).
#[inline]
pub(crate) fn untag<T>(p: *mut T) -> *mut T {
    p.wrapping_byte_sub(tags(p))
}

/// `p` (untagged) with `t` added.
#[inline]
pub(crate) fn with<T>(p: *mut T, t: usize) -> *mut T {
    debug_assert_eq!(tags(p), 0);
    p.wrapping_byte_add(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = Box::into_raw(Box::new(7u64));
        let t = with(b, PENDING | DELETED);
        assert_eq!(tags(t), PENDING | DELETED);
        assert_eq!(untag(t), b);
        // SAFETY: `untag` keeps provenance; the box is ours.
        unsafe { drop(Box::from_raw(untag(t))) };
        let null: *mut u64 = std::ptr::null_mut();
        assert!(untag(with(null, DELETED)).is_null());
    }
}
