//! `Feed::on`: a handler run for each event on a thread of its own.
//!
//! The thread runs the watcher's blocking iterator and calls the handler for
//! each item. It ends when the watcher is closed (by [`Subscription::stop`] or
//! by dropping the handle), when the feed is closed and drained, or when the
//! handler panics. The panic is not caught per call (a handler that panicked
//! may have left its own state half-updated): it ends the thread, and the
//! owner learns of it from [`Subscription::stop`] or [`Subscription::join`].

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::thread::JoinHandle;

use crate::error::Lagged;
use crate::event::Event;
use crate::watcher::{WatchCloser, Watcher};

/// A running handler started by [`Feed::on`](crate::Feed::on).
///
/// * [`stop`](Self::stop) closes its watcher, waits for the thread (after the
///   current handler call returns), and says whether the handler panicked.
/// * [`join`](Self::join) waits for the thread to end by itself (the feed
///   closed and every event handled, or a panic), and says the same.
/// * [`is_finished`](Self::is_finished) tells, without waiting, whether the
///   thread has ended.
/// * Dropping it does what `stop` does and discards the answer.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use kvfeed::{Feed, WatchOptions};
///
/// let feed: Feed<String, u32> = Feed::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sub = {
///     let seen = seen.clone();
///     feed.on(WatchOptions::all(), move |ev| {
///         seen.lock().unwrap().push(ev.unwrap().as_change().unwrap().seq);
///     })
/// };
/// let s1 = feed.put("a".into(), 1).unwrap();
/// let s2 = feed.put("b".into(), 2).unwrap();
/// feed.close();
/// sub.join().unwrap(); // every event handled: the feed is closed and drained
/// assert_eq!(*seen.lock().unwrap(), [s1, s2]);
/// ```
///
/// A handler that panics ends its subscription, and the owner is told:
///
/// ```
/// use kvfeed::{Feed, WatchOptions};
///
/// let feed: Feed<&str, i32> = Feed::new();
/// let sub = feed.on(WatchOptions::all(), |ev| {
///     let change = ev.unwrap();
///     let value = change.as_change().unwrap().value.unwrap();
///     assert!(value >= 0, "negative value {value}");
/// });
/// feed.put("a", 1).unwrap();
/// feed.put("b", -1).unwrap(); // the handler panics here
/// feed.put("c", 2).unwrap(); // never handled
/// feed.close();
/// let err = sub.join().unwrap_err();
/// assert_eq!(err.message(), "negative value -1");
/// ```
pub struct Subscription {
    closer: WatchCloser,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn spawn<K, V, F>(watcher: Watcher<K, V>, mut handler: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: FnMut(Result<Event<K, V>, Lagged>) + Send + 'static,
    {
        let closer = watcher.closer();
        let thread = std::thread::Builder::new()
            .name("kvfeed-subscription".into())
            .spawn(move || {
                for item in watcher {
                    handler(item);
                }
            })
            .expect("spawning a subscription thread");
        Subscription {
            closer,
            thread: Some(thread),
        }
    }

    /// Whether the handler's thread has ended: the subscription was closed,
    /// the feed was closed and drained, or the handler panicked. Never waits.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let sub = feed.on(WatchOptions::all(), |_| {});
    /// assert!(!sub.is_finished()); // waiting for events
    /// feed.close();
    /// while !sub.is_finished() {
    ///     std::thread::yield_now(); // it drains, sees `Closed`, and ends
    /// }
    /// assert!(sub.join().is_ok());
    /// ```
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, JoinHandle::is_finished)
    }

    /// Stops the handler: closes its watcher (events not yet handled are
    /// dropped), waits until the current handler call returns and the thread
    /// has ended, and returns `Err` if the handler panicked at any point.
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let sub = feed.on(WatchOptions::all(), |_| {});
    /// feed.put(1, 1).unwrap();
    /// assert!(sub.stop().is_ok());
    /// assert!(!feed.is_closed()); // only the subscription stopped
    /// ```
    pub fn stop(mut self) -> Result<(), HandlerPanicked> {
        self.closer.close();
        self.wait()
    }

    /// Waits for the handler's thread to end by itself, which happens when
    /// the feed is closed and every matching event was handled, or when the
    /// handler panics; returns `Err` in the second case. Blocks for as long
    /// as the feed stays open: use [`stop`](Self::stop) to end it sooner.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u32, u32> = Feed::new();
    /// let (tx, rx) = mpsc::channel();
    /// let sub = feed.on(WatchOptions::all(), move |ev| tx.send(ev.unwrap()).unwrap());
    /// for i in 0..100 { feed.put(i, i).unwrap(); }
    /// feed.close();
    /// sub.join().unwrap(); // returns once all 100 events were handled
    /// assert_eq!(rx.try_iter().count(), 100);
    /// ```
    pub fn join(mut self) -> Result<(), HandlerPanicked> {
        self.wait()
    }

    fn wait(&mut self) -> Result<(), HandlerPanicked> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(payload)) => Err(HandlerPanicked::from_payload(payload)),
            _ => Ok(()),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.closer.close();
        // Dropped unasked: a panic of the handler was already printed by the
        // panic hook, and the owner chose not to hear of it (`stop` tells).
        let _ = self.wait();
    }
}

/// The handler of a [`Subscription`] panicked; its thread ended there.
///
/// ```
/// use kvfeed::{Feed, WatchOptions};
/// let feed: Feed<u8, u8> = Feed::new();
/// let sub = feed.on(WatchOptions::all(), |_| panic!("boom"));
/// feed.put(1, 1).unwrap();
/// feed.close();
/// let err = sub.join().unwrap_err();
/// assert_eq!(err.message(), "boom");
/// assert_eq!(err.to_string(), "the subscription's handler panicked: boom");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerPanicked {
    message: String,
}

impl HandlerPanicked {
    fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        let message = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(s) => (*s).to_string(),
                Err(_) => "(a panic payload that is not a string)".to_string(),
            },
        };
        HandlerPanicked { message }
    }

    /// The panic's message (what `panic!` or a failed `assert!` formatted).
    ///
    /// ```
    /// use kvfeed::{Feed, WatchOptions};
    /// let feed: Feed<u8, u8> = Feed::new();
    /// let sub = feed.on(WatchOptions::all(), |ev| assert_eq!(ev.unwrap().as_change().unwrap().key, 0));
    /// feed.put(1, 1).unwrap();
    /// feed.close();
    /// assert!(sub.join().unwrap_err().message().contains("assertion `left == right` failed"));
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the subscription's handler panicked: {}", self.message)
    }
}

impl std::error::Error for HandlerPanicked {}
