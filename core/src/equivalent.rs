//! Looking a key up by a borrowed form (`&str` for a `String` key).

use std::borrow::Borrow;

/// Key equivalence for lookups: `Q` can find a `K` when they compare equal
/// and hash the same. Implemented for every `Q` that `K` borrows as (so a
/// `Feed<String, _>` is looked up with `&str`); implement it for your own
/// borrowed key types.
///
/// ```
/// use kvfeed::Feed;
/// let feed: Feed<String, u8> = Feed::new();
/// feed.put("a".to_string(), 1).unwrap();
/// assert_eq!(feed.get("a").map(|(v, _)| v), Some(1)); // &str finds a String key
/// ```
pub trait Equivalent<K: ?Sized> {
    /// Whether `self` and `key` are the same key.
    fn equivalent(&self, key: &K) -> bool;
}

impl<Q: ?Sized + Eq, K: ?Sized + Borrow<Q>> Equivalent<K> for Q {
    #[inline]
    fn equivalent(&self, key: &K) -> bool {
        self == key.borrow()
    }
}
