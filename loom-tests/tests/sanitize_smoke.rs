//! A small concurrent workload for Miri and ThreadSanitizer
//! (`scripts/sanitize.sh`), on the real epoch reclamation that the engine's
//! loom models replace with a stand-in: writers overwrite events while
//! watchers read them in place, so events are retired and freed while
//! readers hold guards, and a churn of put/delete of new keys grows and compacts the
//! table (migrations racing writers).
//!
//! The writer of key 0 does 6,500 writes, more than three of kvfeed's seal
//! batches (`SEAL_EVERY` in `core/src/engine/reclaim.rs`, 2048), so that
//! batches are sealed and freed while the feed lives, not only when it
//! drops (a batch is freed two epoch advances after its seal).
//! Without the sanitizers it is an ordinary (fast) test.
#![cfg(not(kvfeed_loom))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use kvfeed::{Config, Feed, RecvError, WatchOptions};

/// Writes by the writer of key 0: several seal batches.
const WRITES: u64 = 6_500;

/// A value that counts drops of the originals it was put as (copies, which
/// `delete` returns, carry no counter).
struct Counted(u64, Option<Arc<AtomicUsize>>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted(self.0, None)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(d) = &self.1 {
            d.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn overwrite_and_churn_while_watchers_read() {
    let drops = Arc::new(AtomicUsize::new(0));
    let feed: Feed<u64, Counted> = Feed::with_config(Config::new().capacity(4)).unwrap();

    // A watcher that reads every event in place (borrowed under its guard)
    // until the feed closes; lapped all the time on a ring of 4.
    let mut w = feed.watch(WatchOptions::all());
    let reader = thread::spawn(move || {
        let (mut events, mut missed) = (0u64, 0u64);
        loop {
            match w.next_timeout(Duration::from_millis(50)) {
                Ok(Some(ev)) => {
                    let c = ev.as_change().unwrap();
                    if let Some(v) = c.value() {
                        assert_eq!(v.0 % 1_000_000, *c.key());
                    }
                    events += 1;
                }
                Ok(None) => {}
                Err(RecvError::Lagged(l)) => missed += l.missed,
                Err(RecvError::Closed) => break,
            }
        }
        (events, missed, w.cursor())
    });

    let overwriter = {
        let (f, d) = (feed.clone(), drops.clone());
        thread::spawn(move || {
            for i in 0..WRITES {
                f.put(0, Counted(i * 1_000_000, Some(d.clone()))).unwrap();
            }
        })
    };
    let churner = {
        let (f, d) = (feed.clone(), drops.clone());
        thread::spawn(move || {
            for k in 1..=64u64 {
                f.put(k, Counted(k, Some(d.clone()))).unwrap();
                f.delete(&k).unwrap().expect("just put");
            }
        })
    };
    overwriter.join().unwrap();
    churner.join().unwrap();
    let head = feed.head();
    feed.close();
    let (events, missed, cursor) = reader.join().unwrap();
    assert_eq!(cursor, head + 1);
    // Seqs are dense: every seq up to the head is an event.
    assert_eq!(
        events + missed,
        head,
        "every seq delivered or reported missed"
    );
    drop(feed);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        (WRITES + 64) as usize,
        "every value is dropped exactly once"
    );
}
