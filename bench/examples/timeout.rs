//! How long a 1 ms `next_timeout` really takes on a busy feed, for a watcher
//! whose filter matches nothing (issue 9: "timeouts that hold").
//!
//! `cargo run --release -p kvfeed-bench --example timeout [WAITS]`
//!
//! For 2 and 4 writer threads putting without pause, one watcher with a key
//! filter that no write matches calls `next_timeout(1 ms)` WAITS times
//! (default 500) and prints the p50, p99 and max of how long each call took.
//! A call must return within about a scheduler tick of its deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvfeed::{Feed, WatchOptions};

fn main() {
    let waits: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    println!("next_timeout(1 ms), filter matching nothing, {waits} calls per row");
    println!("writers  p50        p99        max");
    for writers in [2usize, 4] {
        let feed: Feed<u64, u64> = Feed::new();
        let stop = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..writers as u64)
            .map(|t| {
                let (f, stop) = (feed.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        f.put(t * 1_000_000 + i % 10_000, i).unwrap();
                        i += 1;
                    }
                })
            })
            .collect();
        let mut w = feed.watch(WatchOptions::all().key(u64::MAX));
        let mut took: Vec<Duration> = (0..waits)
            .map(|_| {
                let start = Instant::now();
                // `Lagged` (the writers lapped the scan) returns at once too.
                if let Ok(got) = w.next_timeout(Duration::from_millis(1)) {
                    assert!(got.is_none(), "the filter matches nothing");
                }
                start.elapsed()
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
        println!(
            "{writers}        {:<10.2?} {:<10.2?} {:.2?}",
            at(0.5),
            at(0.99),
            took[took.len() - 1]
        );
    }
}
