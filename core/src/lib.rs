//! # kvfeed
//!
//! An embeddable, in-process key-value store whose every mutation is a
//! sequence-numbered event in a fixed-size ring. Any number of watchers read
//! the ring by cursor; a watcher that falls a whole ring behind is told
//! exactly how many events it missed, and nothing is ever dropped silently.
//!
//! ```
//! use kvfeed::{Feed, Kind, RecvError, WatchOptions};
//!
//! let feed: Feed<String, String> = Feed::new();
//! let mut users = feed.watch(WatchOptions::all().prefix("user/"));
//!
//! let s1 = feed.put("user/ada".into(), "online".into()).unwrap();
//! feed.put("config/theme".into(), "dark".into()).unwrap();
//! let s3 = feed.put("user/ada".into(), "away".into()).unwrap();
//! feed.delete("user/ada").unwrap();
//!
//! let ev = users.try_next().unwrap().unwrap();
//! let c = ev.as_change().unwrap();
//! assert_eq!((c.seq(), c.kind()), (s1, Kind::Create));
//! drop(ev);
//! let ev = users.next_timeout(std::time::Duration::from_secs(1)).unwrap().unwrap();
//! let c = ev.as_change().unwrap();
//! assert_eq!((c.seq(), c.kind(), c.old().map(String::as_str)), (s3, Kind::Update, Some("online")));
//! drop(ev);
//! let ev = users.try_next().unwrap().unwrap();
//! assert_eq!(ev.as_change().unwrap().kind(), Kind::Delete);
//! drop(ev);
//! assert_eq!(feed.get("user/ada"), None);
//!
//! feed.close();
//! assert_eq!(users.try_next().unwrap_err(), RecvError::Closed);
//! ```
//!
//! ## Reading
//!
//! A [`Watcher`] reads without blocking (`try_next`, `drain_with`,
//! `next_batch`), with a timeout (`next_timeout`), or as a blocking
//! `Iterator`. For async code, `watcher.into_stream()` (feature `async`)
//! gives a `WatchStream`: a runtime-agnostic, `Send` stream of owned events.
//! [`Feed::on`] runs a handler on a thread of its own; its [`Subscription`]
//! reports a handler that panicked. The guide (`docs/guide.md` in the
//! repository) has the whole API in one table and the decisions behind it.
//!
//! ## Guarantees
//!
//! 1. **Total order**: a watcher receives its events in strictly increasing seq.
//! 2. **Per-key consistency**: for one key, seq order is the order the map
//!    applied the writes; each event's `old` is the previous event's `value`.
//! 3. **No silent loss**: a watcher receives every matching event or is told
//!    [`Lagged`] with the exact count and where it continues.
//! 4. **Writers never wait for watchers**: a watcher is a cursor and a
//!    filter; writers do not know it exists.
//! 5. **Resume** from any seq still in the ring ([`WatchOptions::from`]).
//! 6. **Snapshot + live**, gapless ([`WatchOptions::snapshot`]).
//! 7. **Bounded memory**: the ring's capacity is fixed; overwritten events
//!    and deleted keys are reclaimed (epoch-based reclamation).
//! 8. **Progress**: `get` and watcher reads never wait for anyone; writes
//!    to different keys never wait for each other (a write may wait out
//!    another write to the *same* key, a few stores).
//!
//! ## Limits
//!
//! * A writer preempted between claiming a seq and publishing it holds every
//!   watcher at that seq until it runs again (they see "nothing yet", not a
//!   gap). Sequence numbers are dense: every seq up to the head is an event.
//! * A write waits while another write to the same key is between its CAS
//!   and its final store, or while a table migration copies that key's slot;
//!   a snapshot scan waits the same way for a key being written.
//! * A slow reader holding an event (a [`ChangeRef`]) delays reclamation of
//!   everything retired meanwhile: keep borrowed events short-lived.
//! * `delete_prefix` is one delete per key, not an atomic batch.
#![deny(unsafe_op_in_unsafe_fn, missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod config;
mod engine;
mod equivalent;
mod error;
mod event;
mod feed;
mod notify;
mod snapshot;
#[cfg(feature = "async")]
mod stream;
mod subscribe;
mod sync;
mod watch;
mod watcher;

#[cfg(test)]
mod tests;

/// The reclamation protocol's parts, for its loom model
/// (`loom-tests/tests/epoch.rs`) only.
#[cfg(kvfeed_loom)]
#[doc(hidden)]
pub mod loom_epoch {
    pub use crate::engine::epoch::{Domain, Participant};
}

pub use config::{Config, ConfigError, DEFAULT_CAPACITY};
pub use equivalent::Equivalent;
pub use error::{CasError, Lagged, RecvError, WriteError};
pub use event::{Change, ChangeRef, Event, EventRef, Kind, Kinds};
pub use feed::Feed;
#[cfg(feature = "async")]
pub use stream::WatchStream;
pub use subscribe::{HandlerPanicked, Subscription};
pub use watch::WatchOptions;
pub use watcher::{WatchCloser, Watcher, SPINS, YIELDS};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The guide's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;
