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

#[test]
fn a_create_only_feed_frees_the_tables_it_outgrew() {
    const KEYS: u64 = 180_000;
    let before = LIVE.load(Ordering::Relaxed);
    let feed: Feed<u64, u64> = Feed::new();
    for k in 0..KEYS {
        feed.put(k, k).unwrap();
    }
    let per_key = (LIVE.load(Ordering::Relaxed) - before) as f64 / KEYS as f64;
    // Kept: the table (2^18 slots of 32 bytes at 180k keys, its migration
    // long finished: 47 B/key), one 40-byte record per key, the ring (2 MB:
    // 12 B/key), 98 B/key in all. The tables it outgrew would add 47 B/key.
    assert!(
        per_key < 120.0,
        "{per_key:.1} bytes per key are allocated: are retired tables kept?"
    );
    drop(feed);
}
