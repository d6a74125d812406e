//! What a feed keeps allocated, counted by the allocator itself (exact and
//! deterministic, unlike RSS): in a feed that only creates keys, the tables
//! a migration left behind are freed, not kept until some later
//! retirement fills a reclamation batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use kvfeed::Feed;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting bytes on the way.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A value type the word engine does not take: its feed runs on the record
/// engine.
#[derive(Clone)]
struct Boxed(#[allow(dead_code)] u64);

/// Bytes per key still allocated after creating `KEYS` keys in a fresh feed.
fn kept_per_key(create: impl FnOnce(u64) -> Box<dyn std::any::Any>) -> f64 {
    const KEYS: u64 = 180_000;
    let before = LIVE.load(Ordering::Relaxed);
    let feed = create(KEYS);
    let per_key = (LIVE.load(Ordering::Relaxed) - before) as f64 / KEYS as f64;
    drop(feed);
    per_key
}

// One test, so the two feeds are measured one after the other (the
// allocation counter is the process's).
#[test]
fn a_create_only_feed_frees_the_tables_it_outgrew() {
    // The word engine (`u64 -> u64`). Kept: the table (2^18 slots of 24
    // bytes at 180k keys, its migration long finished: 35 B/key) and the
    // ring (65536 slots of 32 bytes: 12 B/key), 47 B/key in all. The
    // tables it outgrew would add 35 B/key, the last one alone 17.5 (a
    // word feed that never collected: 64 B/key, tried).
    let words = kept_per_key(|n| {
        let feed: Feed<u64, u64> = Feed::new();
        for k in 0..n {
            feed.put(k, k).unwrap();
        }
        Box::new(feed)
    });
    assert!(
        words < 56.0,
        "word engine: {words:.1} bytes per key are allocated: are retired tables kept?"
    );
    // The record engine. Kept: the table (2^18 slots of 32 bytes: 47
    // B/key), one 24-byte record per key, the ring (2 MB: 12 B/key), 83
    // B/key in all. The tables it outgrew would add 47 B/key.
    let records = kept_per_key(|n| {
        let feed: Feed<u64, Boxed> = Feed::new();
        for k in 0..n {
            feed.put(k, Boxed(k)).unwrap();
        }
        Box::new(feed)
    });
    assert!(
        records < 110.0,
        "record engine: {records:.1} bytes per key are allocated: are retired tables kept?"
    );
}
