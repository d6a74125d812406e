//! `WatchStream`: a watcher for async code (feature `async`).
//!
//! ## Why a type of its own
//!
//! A [`Watcher`] is a blocking [`Iterator`]. If it were also a
//! [`Stream`](futures_core::Stream), `w.next()` would name two methods at
//! once (`Iterator::next` and `StreamExt::next`) and fail to compile wherever
//! `StreamExt` is in scope, and wherever it is not, `w.next()` inside an
//! `async fn` would silently be the blocking `Iterator::next`, parking an
//! executor thread. So a watcher becomes a stream by a visible conversion,
//! [`Watcher::into_stream`], the way tokio-stream's `BroadcastStream` wraps a
//! broadcast receiver: the type says whether a read blocks or awaits.
//!
//! ## Waking
//!
//! A poll that finds nothing registers the task's `Waker` with the feed's
//! notifier, then looks once more before returning `Pending` (the same
//! no-lost-wake-up handshake as a parked thread, `notify.rs`). A write wakes
//! the registered tasks once per burst, not once per event; while no task or
//! thread waits, a write pays one load for all of this. Nothing here depends
//! on an executor: it runs under tokio, async-std, smol or
//! `futures::executor` alike.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Lagged;
use crate::event::Event;
use crate::watcher::Watcher;

/// A [`Watcher`] as an async [`Stream`](futures_core::Stream) of owned
/// events: `Ok(event)`, `Err(Lagged)` when it was lapped (it then continues
/// at `resume_at`, as a watcher does), and the end of the stream (`None`)
/// once the watcher or the feed is closed and everything readable was read.
///
/// Made by [`Watcher::into_stream`]. It is `Send` (a task holding it can be
/// spawned on a multi-threaded runtime), `Unpin`, and runtime-agnostic.
/// Read it with [`recv`](Self::recv) (no extra crate needed), or with
/// `StreamExt::next` from `futures-util` or `tokio-stream`. The watcher's
/// other methods ([`cursor`](Watcher::cursor), [`lag`](Watcher::lag),
/// [`resnapshot`](Watcher::resnapshot), [`closer`](Watcher::closer)) are
/// reached through [`get_ref`](Self::get_ref) and [`get_mut`](Self::get_mut).
///
/// Events are owned (the key and the values are cloned out of the ring), so
/// nothing borrowed is held across an `.await`.
///
/// # Examples
///
/// A tokio task consumes a prefix of the feed while the main task writes:
///
/// ```
/// use kvfeed::{Event, Feed, WatchOptions};
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() {
///     let feed: Feed<String, u64> = Feed::new();
///     let mut jobs = feed.watch(WatchOptions::all().prefix("job/")).into_stream();
///
///     let consumer = tokio::spawn(async move {
///         let mut total = 0;
///         while let Some(item) = jobs.recv().await {
///             match item {
///                 Ok(Event::Change(c)) => total += c.value.unwrap_or(0),
///                 Ok(Event::SnapshotDone { .. }) => {}
///                 Err(lagged) => panic!("missed {} events", lagged.missed),
///             }
///         }
///         total // the stream ended: the feed was closed and drained
///     });
///
///     for i in 1..=100 {
///         feed.put(format!("job/{}", i % 7), i).unwrap();
///         feed.put("other".to_string(), i).unwrap(); // filtered out
///     }
///     feed.close();
///     assert_eq!(consumer.await.unwrap(), 5050);
/// }
/// ```
///
/// The same with `StreamExt` combinators (here from `futures-util`):
///
/// ```
/// use futures_util::StreamExt;
/// use kvfeed::{Feed, WatchOptions};
///
/// # futures_executor::block_on(async {
/// let feed: Feed<u32, u32> = Feed::new();
/// let stream = feed.watch(WatchOptions::all()).into_stream();
/// for i in 0..5 {
///     feed.put(i, i * i).unwrap();
/// }
/// feed.close();
/// let squares: Vec<u32> = stream
///     .map(|item| item.unwrap().as_change().unwrap().value.unwrap())
///     .collect()
///     .await;
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// # });
/// ```
pub struct WatchStream<K, V> {
    watcher: Watcher<K, V>,
}

impl<K, V> From<Watcher<K, V>> for WatchStream<K, V> {
    fn from(watcher: Watcher<K, V>) -> Self {
        WatchStream { watcher }
    }
}

impl<K, V> fmt::Debug for WatchStream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("watcher", &self.watcher)
            .finish()
    }
}

impl<K, V> WatchStream<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    /// The next item: `Some(Ok(event))`, `Some(Err(Lagged))`, or `None` once
    /// the stream has ended. The same as `StreamExt::next`, without needing
    /// that trait in scope. Cancel-safe: dropping the future loses nothing.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// # futures_executor::block_on(async {
    /// let feed: Feed<&str, u8> = Feed::new();
    /// let mut s = feed.watch(WatchOptions::all()).into_stream();
    /// feed.put("a", 1).unwrap();
    /// feed.close();
    /// assert_eq!(s.recv().await.unwrap().unwrap().as_change().unwrap().key, "a");
    /// assert!(s.recv().await.is_none()); // closed and drained
    /// # });
    /// ```
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Event<K, V>, Lagged>>> + '_ {
        std::future::poll_fn(move |cx| self.watcher.poll_event(cx))
    }

    /// The watcher inside (for [`cursor`](Watcher::cursor),
    /// [`lag`](Watcher::lag), [`closer`](Watcher::closer)).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// feed.put(1, 1).unwrap();
    /// let s = feed.watch(WatchOptions::all()).into_stream();
    /// assert_eq!(s.get_ref().cursor(), 2);
    /// ```
    pub fn get_ref(&self) -> &Watcher<K, V> {
        &self.watcher
    }

    /// The watcher inside, mutably: for instance to
    /// [`resnapshot`](Watcher::resnapshot) after a lap.
    ///
    /// ```
    /// use kvfeed::{Config, Event, Feed, WatchOptions};
    /// # futures_executor::block_on(async {
    /// let feed: Feed<u8, u32> = Feed::with_config(Config::new().capacity(4)).unwrap();
    /// let mut s = feed.watch(WatchOptions::all()).into_stream();
    /// for i in 0..10 {
    ///     feed.put((i % 2) as u8, i).unwrap();
    /// }
    /// let lagged = s.recv().await.unwrap().unwrap_err();
    /// assert_eq!(lagged.missed, lagged.resume_at - 1);
    /// s.get_mut().resnapshot(); // the two live keys, then the marker
    /// let mut items = 0;
    /// while let Some(Ok(ev)) = s.recv().await {
    ///     match ev {
    ///         Event::Change(_) => items += 1,
    ///         Event::SnapshotDone { .. } => break,
    ///     }
    /// }
    /// assert_eq!(items, 2);
    /// # });
    /// ```
    pub fn get_mut(&mut self) -> &mut Watcher<K, V> {
        &mut self.watcher
    }

    /// The watcher back, for blocking reads.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let mut w = feed.watch(WatchOptions::all()).into_stream().into_inner();
    /// feed.put(1, 1).unwrap();
    /// assert!(w.try_next().unwrap().is_some());
    /// ```
    pub fn into_inner(self) -> Watcher<K, V> {
        self.watcher
    }
}

impl<K, V> futures_core::Stream for WatchStream<K, V>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
{
    type Item = Result<Event<K, V>, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().watcher.poll_event(cx)
    }
}

// A task holding a stream can be spawned on a multi-threaded runtime.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<WatchStream<String, Vec<u8>>>();
};
