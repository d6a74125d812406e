//! What watchers receive: owned events and borrowed views.

use std::fmt;

use crate::engine::{from_bits, Guard, Node, NodeKind, WordEvent};

/// The kind of a change.
///
/// ```
/// use kvfeed::{Feed, Kind, WatchOptions};
/// let feed: Feed<u8, u8> = Feed::new();
/// let w = feed.watch(WatchOptions::all());
/// feed.put(1, 1).unwrap();
/// feed.put(1, 2).unwrap();
/// feed.delete(&1).unwrap();
/// feed.close();
/// let kinds: Vec<Kind> = w.map(|ev| ev.unwrap().as_change().unwrap().kind).collect();
/// assert_eq!(kinds, [Kind::Create, Kind::Update, Kind::Delete]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The key was absent.
    Create,
    /// The key was present.
    Update,
    /// The key was removed.
    Delete,
}

impl Kind {
    /// This kind as a one-bit mask.
    ///
    /// ```
    /// use kvfeed::{Kind, Kinds};
    /// assert_eq!(Kind::Update.mask(), Kinds::UPDATE);
    /// assert!((Kinds::CREATE | Kinds::DELETE).contains(Kind::Delete.mask()));
    /// ```
    pub fn mask(self) -> Kinds {
        match self {
            Kind::Create => Kinds::CREATE,
            Kind::Update => Kinds::UPDATE,
            Kind::Delete => Kinds::DELETE,
        }
    }

    pub(crate) fn of(kind: NodeKind) -> Kind {
        match kind {
            NodeKind::Create => Kind::Create,
            NodeKind::Update => Kind::Update,
            NodeKind::Delete => Kind::Delete,
        }
    }
}

/// A set of [`Kind`]s, for watch filters.
///
/// ```
/// use kvfeed::Kinds;
/// let m = Kinds::CREATE | Kinds::DELETE;
/// assert!(m.contains(Kinds::DELETE) && !m.contains(Kinds::UPDATE));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

impl Kinds {
    /// Creates.
    ///
    /// ```
    /// assert_eq!(kvfeed::Kind::Create.mask(), kvfeed::Kinds::CREATE);
    /// ```
    pub const CREATE: Kinds = Kinds(1);
    /// Updates.
    ///
    /// ```
    /// assert_eq!(kvfeed::Kinds::UPDATE.bits(), 2);
    /// ```
    pub const UPDATE: Kinds = Kinds(2);
    /// Deletes.
    ///
    /// ```
    /// assert!(!kvfeed::Kinds::DELETE.contains(kvfeed::Kinds::CREATE));
    /// ```
    pub const DELETE: Kinds = Kinds(4);
    /// Every kind (the default of a watch).
    ///
    /// ```
    /// use kvfeed::Kinds;
    /// assert_eq!(Kinds::ALL, Kinds::CREATE | Kinds::UPDATE | Kinds::DELETE);
    /// ```
    pub const ALL: Kinds = Kinds(7);
    /// No kind: a watcher with this mask receives only snapshot markers.
    ///
    /// ```
    /// use kvfeed::Kinds;
    /// assert!(Kinds::ALL.contains(Kinds::NONE) && !Kinds::NONE.contains(Kinds::CREATE));
    /// ```
    pub const NONE: Kinds = Kinds(0);

    /// True when every kind of `other` is in `self`.
    ///
    /// ```
    /// use kvfeed::Kinds;
    /// let m = Kinds::CREATE | Kinds::UPDATE;
    /// assert!(m.contains(Kinds::UPDATE) && m.contains(m) && !m.contains(Kinds::ALL));
    /// ```
    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits (CREATE = 1, UPDATE = 2, DELETE = 4), as the C ABI
    /// takes them.
    ///
    /// ```
    /// use kvfeed::Kinds;
    /// assert_eq!((Kinds::CREATE | Kinds::DELETE).bits(), 5);
    /// ```
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From raw bits; unknown bits are dropped.
    ///
    /// ```
    /// use kvfeed::Kinds;
    /// assert_eq!(Kinds::from_bits_truncate(0xFC), Kinds::DELETE);
    /// ```
    pub fn from_bits_truncate(bits: u8) -> Kinds {
        Kinds(bits & 7)
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;
    fn bitor(self, rhs: Kinds) -> Kinds {
        Kinds(self.0 | rhs.0)
    }
}

/// An owned change: the caller keeps it as long as it likes.
///
/// ```
/// use kvfeed::{Change, Event, Feed, Kind, WatchOptions};
/// let feed: Feed<&str, u32> = Feed::new();
/// let mut w = feed.watch(WatchOptions::all());
/// feed.put("a", 1).unwrap();
/// let s2 = feed.put("a", 2).unwrap();
/// let mut buf = Vec::new();
/// w.next_batch(&mut buf, 10).unwrap();
/// let Event::Change(c) = &buf[1] else { unreachable!() };
/// assert_eq!(
///     c,
///     &Change { seq: s2, kind: Kind::Update, key: "a", value: Some(2), old: Some(1) }
/// );
/// ```
#[derive(PartialEq, Eq)]
pub struct Change<K, V> {
    /// Its sequence number (for snapshot items: the key's version).
    pub seq: u64,
    /// Create, Update or Delete.
    pub kind: Kind,
    /// The key.
    pub key: K,
    /// The new value (Create, Update).
    pub value: Option<V>,
    /// The previous value (Update, Delete).
    pub old: Option<V>,
}

impl<K: Clone, V: Clone> Clone for Change<K, V> {
    fn clone(&self) -> Self {
        Change {
            seq: self.seq,
            kind: self.kind,
            key: self.key.clone(),
            value: self.value.clone(),
            old: self.old.clone(),
        }
    }
}

impl<K: Clone, V: Clone> Change<K, V> {
    /// Copies a change record out.
    ///
    /// # Safety
    /// As [`Node::old`]: `n` and `prev` were read from a ring slot under a
    /// guard still held.
    pub(crate) unsafe fn of_node(n: &Node<K, V>, prev: *const Node<K, V>) -> Self {
        Change {
            seq: n.seq(),
            kind: Kind::of(n.kind()),
            key: n.key.clone(),
            value: n.value().cloned(),
            // SAFETY: the caller's guarantee.
            old: unsafe { n.old(prev) }.cloned(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Change<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change")
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("value", &self.value)
            .field("old", &self.old)
            .finish()
    }
}

/// An owned item of a watcher's stream: what [`Watcher::next_batch`](crate::Watcher::next_batch),
/// the blocking iterator and the async stream hand out.
///
/// ```
/// use kvfeed::{Event, Feed, WatchOptions};
/// let feed: Feed<&str, u32> = Feed::new();
/// feed.put("a", 1).unwrap();
/// let w = feed.watch(WatchOptions::all().snapshot());
/// feed.close();
/// for ev in w {
///     match ev.unwrap() {
///         Event::Change(c) => assert_eq!((c.key, c.value), ("a", Some(1))),
///         Event::SnapshotDone { at, consistent_at } => assert_eq!((at, consistent_at), (1, 1)),
///     }
/// }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum Event<K, V> {
    /// A change.
    Change(Change<K, V>),
    /// The end of a snapshot: `at` was the head when the scan began,
    /// `consistent_at` the head when it ended.
    SnapshotDone {
        /// Head when the scan began; live events follow from `at + 1`.
        at: u64,
        /// Head when the scan ended; from here on the view equals the store.
        consistent_at: u64,
    },
}

impl<K: Clone, V: Clone> Clone for Event<K, V> {
    fn clone(&self) -> Self {
        match self {
            Event::Change(c) => Event::Change(c.clone()),
            Event::SnapshotDone { at, consistent_at } => Event::SnapshotDone {
                at: *at,
                consistent_at: *consistent_at,
            },
        }
    }
}

impl<K, V> Event<K, V> {
    /// The change, if this is one.
    ///
    /// ```
    /// use kvfeed::Event;
    /// let marker: Event<u8, u8> = Event::SnapshotDone { at: 3, consistent_at: 4 };
    /// assert!(marker.as_change().is_none());
    /// ```
    pub fn as_change(&self) -> Option<&Change<K, V>> {
        match self {
            Event::Change(c) => Some(c),
            Event::SnapshotDone { .. } => None,
        }
    }
}

/// A borrowed item of a watcher's stream, valid until the watcher's next read.
///
/// ```
/// use kvfeed::{EventRef, Feed, WatchOptions};
/// let feed: Feed<String, String> = Feed::new();
/// feed.put("k".into(), "v".into()).unwrap();
/// let mut w = feed.watch(WatchOptions::all().snapshot());
/// while let Some(ev) = w.try_next().unwrap() {
///     match ev {
///         EventRef::Change(c) => assert_eq!(c.value().map(String::as_str), Some("v")),
///         EventRef::SnapshotDone { at, .. } => assert_eq!(at, 1),
///     }
/// }
/// ```
pub enum EventRef<'w, K, V> {
    /// A change, borrowed.
    Change(ChangeRef<'w, K, V>),
    /// The end of a snapshot (see [`Event::SnapshotDone`]).
    SnapshotDone {
        /// Head when the scan began.
        at: u64,
        /// Head when the scan ended.
        consistent_at: u64,
    },
}

impl<K: Clone, V: Clone> EventRef<'_, K, V> {
    /// Copies the event out (clones the key and the values).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, String> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, "one".into()).unwrap();
    /// let kept = w.try_next().unwrap().unwrap().to_owned(); // no borrow of `w` left
    /// assert!(w.try_next().unwrap().is_none());
    /// assert_eq!(kept.as_change().unwrap().value.as_deref(), Some("one"));
    /// ```
    pub fn to_owned(&self) -> Event<K, V> {
        match self {
            EventRef::Change(c) => Event::Change(c.to_owned()),
            EventRef::SnapshotDone { at, consistent_at } => Event::SnapshotDone {
                at: *at,
                consistent_at: *consistent_at,
            },
        }
    }
}

impl<'w, K, V> EventRef<'w, K, V> {
    /// The change, if this is one.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all().snapshot()); // empty store: only the marker
    /// assert!(w.try_next().unwrap().unwrap().as_change().is_none());
    /// ```
    pub fn as_change(&self) -> Option<&ChangeRef<'w, K, V>> {
        match self {
            EventRef::Change(c) => Some(c),
            EventRef::SnapshotDone { .. } => None,
        }
    }
}

/// A change read in place: reading it wrote nothing shared with other
/// watchers. Keep it briefly (it holds a reclamation guard); call
/// [`to_owned`](ChangeRef::to_owned) to keep the event.
///
/// ```
/// use kvfeed::{Feed, Kind, WatchOptions};
/// let feed: Feed<String, String> = Feed::new();
/// let mut w = feed.watch(WatchOptions::all());
/// feed.put("k".into(), "a".into()).unwrap();
/// let seq = feed.put("k".into(), "b".into()).unwrap();
/// w.try_next().unwrap();
/// let ev = w.try_next().unwrap().unwrap();
/// let c = ev.as_change().unwrap(); // a ChangeRef: borrowed from the ring
/// assert_eq!(c.seq(), seq);
/// assert_eq!(c.kind(), Kind::Update);
/// assert_eq!(c.key(), "k");
/// assert_eq!(c.value().map(String::as_str), Some("b"));
/// assert_eq!(c.old().map(String::as_str), Some("a"));
/// ```
pub struct ChangeRef<'w, K, V> {
    inner: RefInner<'w, K, V>,
}

/// A record read from the ring and its predecessor (the event's `old`).
type NodeAndPrev<'a, K, V> = (&'a Node<K, V>, *const Node<K, V>);

enum RefInner<'w, K, V> {
    /// A record protected by the guard stored beside it.
    Live {
        node: *const Node<K, V>,
        prev: *const Node<K, V>,
        _guard: Guard<'w>,
    },
    /// A record protected by a guard that outlives `'w` (batched reads).
    Guarded(&'w Node<K, V>, *const Node<K, V>),
    /// A snapshot item owned by the watcher.
    Owned(&'w Change<K, V>),
    /// A word feed's event, copied out of the ring (`engine/word/`).
    Word(WordChange<K, V>),
}

/// A word feed's event as a `ChangeRef` holds it: typed, and smaller than a
/// `Change` (no `Option`s; `kind` says which of `value` and `old` mean
/// something; the others hold a valid value of no meaning).
struct WordChange<K, V> {
    seq: u64,
    kind: Kind,
    key: K,
    value: V,
    old: V,
}

impl<'w, K, V> ChangeRef<'w, K, V> {
    /// # Safety
    /// `node` and its predecessor `prev` were read from a ring slot under
    /// `guard` (`Ring::read`).
    pub(crate) unsafe fn live(
        node: *const Node<K, V>,
        prev: *const Node<K, V>,
        guard: Guard<'w>,
    ) -> Self {
        ChangeRef {
            inner: RefInner::Live {
                node,
                prev,
                _guard: guard,
            },
        }
    }

    /// A change record found in a ring slot under a guard the caller holds
    /// for `'w`.
    ///
    /// # Safety
    /// As stated: `node` and its predecessor `prev` were read from a ring
    /// slot, under a guard that outlives `'w`.
    pub(crate) unsafe fn guarded(node: &'w Node<K, V>, prev: *const Node<K, V>) -> Self {
        ChangeRef {
            inner: RefInner::Guarded(node, prev),
        }
    }

    /// A word feed's event.
    ///
    /// # Safety
    /// `ev` was read from a word feed's ring: its key and value bits come
    /// from `to_bits` of `K` and `V`, types the word engine accepts.
    pub(crate) unsafe fn word(ev: &WordEvent) -> Self {
        // SAFETY: the caller's guarantee. Every bit pattern a word ring
        // holds is a valid `K` or `V` (written by `to_bits`) or zero (a
        // Delete's value; a valid value of every type the word engine
        // takes), whatever the kind.
        let (key, value, old) = unsafe {
            (
                from_bits::<K>(ev.key),
                from_bits::<V>(ev.value),
                from_bits::<V>(ev.old),
            )
        };
        ChangeRef {
            inner: RefInner::Word(WordChange {
                seq: ev.seq,
                kind: Kind::of(ev.kind),
                key,
                value,
                old,
            }),
        }
    }

    pub(crate) fn owned(change: &'w Change<K, V>) -> Self {
        ChangeRef {
            inner: RefInner::Owned(change),
        }
    }

    fn node(&self) -> Result<&Node<K, V>, &Change<K, V>> {
        self.node_and_prev().map(|(n, _)| n)
    }

    fn node_and_prev(&self) -> Result<NodeAndPrev<'_, K, V>, &Change<K, V>> {
        match &self.inner {
            // SAFETY: the guard stored beside `node` protects it for as long as
            // `self` (and so the returned borrow) lives.
            RefInner::Live { node, prev, .. } => Ok((unsafe { &**node }, *prev)),
            RefInner::Guarded(node, prev) => Ok((node, *prev)),
            RefInner::Owned(c) => Err(c),
            RefInner::Word(_) => unreachable!("callers match word events first"),
        }
    }

    /// The sequence number (for a snapshot item: the key's version).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let seq = feed.put(1, 1).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().seq(), seq);
    /// ```
    pub fn seq(&self) -> u64 {
        if let RefInner::Word(w) = &self.inner {
            return w.seq;
        }
        match self.node() {
            Ok(n) => n.seq(),
            Err(c) => c.seq,
        }
    }

    /// Create, Update or Delete.
    ///
    /// ```
    /// use kvfeed::{Feed, Kind, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// feed.put(1, 1).unwrap();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.delete(&1).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().kind(), Kind::Delete);
    /// ```
    pub fn kind(&self) -> Kind {
        if let RefInner::Word(w) = &self.inner {
            return w.kind;
        }
        match self.node() {
            Ok(n) => Kind::of(n.kind()),
            Err(c) => c.kind,
        }
    }

    /// The key.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<String, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put("k".into(), 1).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().key(), "k");
    /// ```
    pub fn key(&self) -> &K {
        if let RefInner::Word(w) = &self.inner {
            return &w.key;
        }
        match self.node() {
            Ok(n) => &n.key,
            Err(c) => &c.key,
        }
    }

    /// The new value (Create, Update); `None` for a Delete.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, 10).unwrap();
    /// feed.delete(&1).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().value(), Some(&10));
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().value(), None);
    /// ```
    pub fn value(&self) -> Option<&V> {
        if let RefInner::Word(w) = &self.inner {
            return (w.kind != Kind::Delete).then_some(&w.value);
        }
        match self.node() {
            Ok(n) => n.value(),
            Err(c) => c.value.as_ref(),
        }
    }

    /// The previous value (Update, Delete); `None` for a Create.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// feed.put(1, 10).unwrap();
    /// feed.delete(&1).unwrap();
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().old(), None);
    /// assert_eq!(w.try_next().unwrap().unwrap().as_change().unwrap().old(), Some(&10));
    /// ```
    pub fn old(&self) -> Option<&V> {
        if let RefInner::Word(w) = &self.inner {
            return (w.kind != Kind::Create).then_some(&w.old);
        }
        match self.node_and_prev() {
            // SAFETY: a ChangeRef over a node is only made (`live`, `guarded`) for
            // a node and predecessor read from a ring slot, under a guard that
            // outlives `self`.
            Ok((n, prev)) => unsafe { n.old(prev) },
            Err(c) => c.old.as_ref(),
        }
    }

    /// Copies the change out (clones the key and the values).
    ///
    /// ```
    /// use kvfeed::{Change, Feed, Kind, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all());
    /// let seq = feed.put(1, 10).unwrap();
    /// let c: Change<u8, u8> = w.try_next().unwrap().unwrap().as_change().unwrap().to_owned();
    /// assert_eq!(c, Change { seq, kind: Kind::Create, key: 1, value: Some(10), old: None });
    /// ```
    pub fn to_owned(&self) -> Change<K, V>
    where
        K: Clone,
        V: Clone,
    {
        if let RefInner::Word(w) = &self.inner {
            return Change {
                seq: w.seq,
                kind: w.kind,
                key: w.key.clone(),
                value: self.value().cloned(),
                old: self.old().cloned(),
            };
        }
        match self.node_and_prev() {
            // SAFETY: as in `old`.
            Ok((n, prev)) => unsafe { Change::of_node(n, prev) },
            Err(c) => (*c).clone(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for ChangeRef<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeRef")
            .field("seq", &self.seq())
            .field("kind", &self.kind())
            .field("key", self.key())
            .field("value", &self.value())
            .field("old", &self.old())
            .finish()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for EventRef<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventRef::Change(c) => c.fmt(f),
            EventRef::SnapshotDone { at, consistent_at } => f
                .debug_struct("SnapshotDone")
                .field("at", at)
                .field("consistent_at", consistent_at)
                .finish(),
        }
    }
}
