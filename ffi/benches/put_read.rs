//! put + one watcher reading, through the core Rust API: the twin of
//! `ffi/bench/put_read.c` (same feed type, keys, values, batches), so that
//! `ffi/bench/run-bench.sh` can report the C ABI's cost per event as a ratio.
//!
//! `cargo bench -p kvfeed-ffi --bench put_read -- [events] [runs] [interleaved|threaded]`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use kvfeed::{Config, EventRef, Feed, RecvError, WatchOptions, Watcher};

type ByteFeed = Feed<Arc<[u8]>, Box<[u8]>>;
type ByteWatcher = Watcher<Arc<[u8]>, Box<[u8]>>;

const KEYS: usize = 1024;
const BATCH: usize = 256;

fn setup() -> (ByteFeed, ByteWatcher) {
    let feed = ByteFeed::with_config(Config::new().capacity(65536)).unwrap();
    let w = feed.watch(WatchOptions::all());
    (feed, w)
}

fn keys() -> Vec<[u8; 8]> {
    (0..KEYS)
        .map(|i| {
            let mut k = [0u8; 8];
            let s = format!("k{i:06}");
            k[..7].copy_from_slice(s.as_bytes());
            k
        })
        .collect()
}

/// Reads one event the way a C caller's loop would use it.
fn consume(ev: &EventRef<'_, Arc<[u8]>, Box<[u8]>>) -> u64 {
    match ev {
        EventRef::Change(c) => c.value().map_or(0, |v| v.len() as u64) + c.key()[0] as u64,
        EventRef::SnapshotDone { .. } => 0,
    }
}

fn interleaved(events: usize, keys: &[[u8; 8]]) -> f64 {
    let (feed, mut w) = setup();
    let mut value = [0u8; 16];
    let mut sink = 0u64;
    let mut got = 0usize;
    let t0 = Instant::now();
    let mut i = 0;
    while i < events {
        for j in i..i + BATCH {
            value[0] = j as u8;
            // The same copies as kvfeed_put: the key into an Arc<[u8]>, the value into a Box.
            feed.put(Arc::from(&keys[j % KEYS][..]), Box::from(&value[..]))
                .unwrap();
        }
        while let Some(ev) = w.try_next().unwrap() {
            sink += consume(&ev);
            got += 1;
        }
        i += BATCH;
    }
    let dt = t0.elapsed();
    assert_eq!(got, events.div_ceil(BATCH) * BATCH);
    black_box(sink);
    dt.as_nanos() as f64 / got as f64
}

fn threaded(events: usize, keys: &[[u8; 8]]) -> (f64, u64) {
    let (feed, mut w) = setup();
    let mut sink = 0u64;
    let (mut got, mut missed) = (0u64, 0u64);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let writer = feed.clone();
        s.spawn(move || {
            let mut value = [0u8; 16];
            for j in 0..events {
                value[0] = j as u8;
                writer
                    .put(Arc::from(&keys[j % KEYS][..]), Box::from(&value[..]))
                    .unwrap();
            }
        });
        while ((got + missed) as usize) < events {
            match w.next_timeout(std::time::Duration::from_secs(3600)) {
                Ok(Some(ev)) => {
                    sink += consume(&ev);
                    got += 1;
                }
                Ok(None) => {}
                Err(RecvError::Lagged(l)) => missed += l.missed,
                Err(RecvError::Closed) => panic!("closed"),
            }
        }
    });
    let dt = t0.elapsed();
    black_box(sink);
    (dt.as_nanos() as f64 / events as f64, missed)
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`)
    // this is only a smoke run. The numbers among the arguments override.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let events = nums
        .first()
        .copied()
        .unwrap_or(if bench { 2_000_000 } else { 10_000 });
    let runs = nums.get(1).copied().unwrap_or(if bench { 5 } else { 1 });
    let only = args
        .iter()
        .find(|a| *a == "interleaved" || *a == "threaded")
        .map_or("", |a| a.as_str());
    let keys = keys();
    let (mut best_i, mut best_t, mut missed) = (f64::MAX, f64::MAX, 0);
    for _ in 0..runs {
        if only != "threaded" {
            best_i = best_i.min(interleaved(events, &keys));
        }
        if only != "interleaved" {
            let (t, m) = threaded(events, &keys);
            if t < best_t {
                best_t = t;
                missed = m;
            }
        }
    }
    if only != "threaded" {
        println!("rust interleaved {best_i:8.1} ns/event");
    }
    if only != "interleaved" {
        println!("rust threaded    {best_t:8.1} ns/event (missed {missed})");
    }
}
