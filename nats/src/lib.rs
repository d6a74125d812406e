//! kvfeed-nats: ships a kvfeed change feed through a NATS JetStream stream,
//! and reads it back on other machines with the local watcher's contract.
//!
//! - [`Publisher`] runs beside a `Feed<Vec<u8>, Vec<u8>>` and appends every
//!   event to the stream in seq order, exactly once (`Nats-Msg-Id` plus
//!   `Nats-Expected-Last-Sequence`, resuming from what the stream holds after
//!   a crash). When it was itself lapped in the local ring it writes a lag
//!   marker and a recovery snapshot, so no remote reader sees a silent gap.
//! - [`RemoteWatcher`] reads the stream: start now, from a seq, or
//!   snapshot-then-live; key / key set / prefix / kind filters; `try_next`,
//!   `next_timeout`, an async `Stream`; `Lagged { missed, resume_at }` in
//!   kvfeed seq units, also when the stream's limits removed what it had not
//!   read yet.
//! - [`format`] is the message format, readable by any NATS client.
//!
//! The crate README documents the format, recovery, the demo and measured
//! numbers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), async_nats::Error> {
//! use kvfeed::Feed;
//! use kvfeed_nats::{Bridge, Publisher, RemoteWatchOptions, RemoteWatcher};
//! let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
//! let bridge = Bridge::new("orders");
//! bridge.create_stream(&js, bridge.stream_config()).await?;
//! let feed: Feed<Vec<u8>, Vec<u8>> = Feed::new();
//! let publisher = Publisher::spawn(feed.clone(), js.clone(), bridge.clone());
//! let mut w = RemoteWatcher::new(js, &bridge, RemoteWatchOptions::all().prefix(b"order/")).await?;
//! feed.put(b"order/1".to_vec(), b"new".to_vec())?;
//! let ev = w.next().await?;
//! # publisher.stop().await?; Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod format;
mod publisher;
mod remote;
#[doc(hidden)]
pub mod testkit;

pub use publisher::{Publisher, PublisherStats};
pub use remote::{RecvError, RemoteWatchOptions, RemoteWatcher};

/// The feed type the bridge carries (the byte form the C ABI uses).
pub type ByteFeed = kvfeed::Feed<Vec<u8>, Vec<u8>>;
/// An owned event of a remote watcher.
pub type Event = kvfeed::Event<Vec<u8>, Vec<u8>>;
/// Errors of NATS calls.
pub type Error = async_nats::Error;

use async_nats::jetstream::{self, stream};

/// Where a feed lives in NATS: the stream's name and its subject prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    /// The JetStream stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.ev`, `<prefix>.lag`, `<prefix>.snap`, `<prefix>.done`.
    pub prefix: String,
}

impl Bridge {
    /// Stream `name`, subjects under `kvfeed.<name>`.
    pub fn new(name: &str) -> Self {
        Bridge {
            stream: name.to_string(),
            prefix: format!("kvfeed.{name}"),
        }
    }

    /// The full subject for a suffix.
    pub(crate) fn subject(&self, suffix: &str) -> String {
        format!("{}.{}", self.prefix, suffix)
    }

    /// A stream configuration that fits: file storage, the bridge's subjects,
    /// no limits. Set `max_messages`, `max_age`, `num_replicas` as needed;
    /// keep `discard` at `Old` (the publisher never wants a write refused).
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// Creates the stream (or returns the existing one with this name).
    pub async fn create_stream(
        &self,
        js: &jetstream::Context,
        config: stream::Config,
    ) -> Result<stream::Stream, Error> {
        Ok(js.get_or_create_stream(config).await?)
    }
}
