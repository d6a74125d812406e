//! `Feed::on`: a handler run for each event on a thread of its own.

use std::fmt;
use std::hash::Hash;
use std::thread::JoinHandle;

use crate::error::Lagged;
use crate::event::Event;
use crate::watcher::{WatchCloser, Watcher};

/// A running handler started by [`Feed::on`](crate::Feed::on). Dropping it
/// closes its watcher and joins its thread (after the current handler call
/// returns).
pub struct Subscription {
    closer: WatchCloser,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish()
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
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.closer.close();
        if let Some(t) = self.thread.take() {
            // A panicking handler has already reported itself; nothing to add.
            let _ = t.join();
        }
    }
}
