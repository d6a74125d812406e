//! A per-thread cache of freed node memory, so a put's one allocation is
//! usually memory the same thread freed a moment ago (warm in its cache),
//! not a cold `malloc`/`free` pair.
//!
//! Why not the global allocator alone: records are retired in batches
//! (`reclaim.rs`) and freed together, which overflows glibc's small
//! per-thread cache and sends every free through its slow path; callgrind
//! counted about 270 of a put's 750 instructions in `malloc`/`free`.
//!
//! Blocks are keyed by layout, so feeds with the same node size share a
//! cache. A block in the cache is plain memory from the global allocator
//! with that layout: whoever takes it may free it with `Box::from_raw`
//! like any other node. Each thread keeps at most `KEEP` blocks per layout;
//! the rest go back to the allocator, and a thread's cache is emptied when
//! it exits.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;

use crate::engine::hint::prefetch_write;

/// How many allocations ahead a block is prefetched.
const ALLOC_AHEAD: usize = 12;

/// Blocks kept per layout per thread: twice the reclamation's seal batch
/// (`SEAL_EVERY`, 2048), because a thread frees a whole batch at once and
/// then draws from it one put at a time: with room for only one batch, a
/// batch that arrived before the last was used up overflowed to the
/// allocator, and the puts after it went to `malloc` (callgrind: about 60
/// of a put's instructions in malloc and free).
const KEEP: usize = 4096;

struct Cache {
    /// One free list per layout seen on this thread (there are few).
    lists: Vec<(Layout, Vec<NonNull<u8>>)>,
}

impl Drop for Cache {
    fn drop(&mut self) {
        for (layout, blocks) in self.lists.drain(..) {
            for block in blocks {
                // SAFETY: every cached block came from the global allocator
                // with `layout` and is owned by the cache alone.
                unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { lists: Vec::new() }) };
}

/// Moves `value` to the heap, in a cached block when there is one.
pub(crate) fn boxed<T>(value: T) -> *mut T {
    let layout = Layout::new::<T>();
    let block = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            c.lists
                .iter_mut()
                .find(|(l, _)| *l == layout)
                .and_then(|(_, blocks)| {
                    let block = blocks.pop();
                    // A put a few puts from now writes that block: a line
                    // freed long ago (the record it held was its key's value
                    // until its successor left the ring), so start fetching
                    // it now (a write hint; see `hint.rs` for what the
                    // default build emits). Fetching only the next block
                    // left half of `boxed`'s samples on the write below.
                    if let Some(ahead) = blocks.len().checked_sub(ALLOC_AHEAD) {
                        prefetch_write(blocks[ahead].as_ptr());
                    }
                    block
                })
        })
        .ok()
        .flatten();
    match block {
        Some(block) => {
            let ptr = block.as_ptr().cast::<T>();
            // SAFETY: a block of `T`'s layout that nobody else owns.
            unsafe { ptr.write(value) };
            ptr
        }
        None => Box::into_raw(Box::new(value)),
    }
}

/// Drops the `T` at `ptr` and keeps its memory for this thread's next
/// [`boxed`] of the same layout.
///
/// # Safety
/// `ptr` came from [`boxed`] or `Box::into_raw`, and nobody uses it again.
pub(crate) unsafe fn free<T>(ptr: *mut T) {
    // SAFETY: the caller's guarantee.
    unsafe { free_all::<T>(&[ptr.cast()]) }
}

/// [`free`] for every pointer in `ptrs` (each a `*mut T`), with one look-up
/// of this thread's cache for all of them.
///
/// # Safety
/// Each pointer came from [`boxed`] or `Box::into_raw` as a `*mut T`, and
/// nobody uses it again; none appears twice.
pub(crate) unsafe fn free_all<T>(ptrs: &[*mut ()]) {
    let layout = Layout::new::<T>();
    // Values first, outside the cache's borrow: a `T`'s drop may run user
    // code that frees nodes of another feed on this thread.
    for &ptr in ptrs {
        // SAFETY: the caller hands the values over.
        unsafe { std::ptr::drop_in_place(ptr.cast::<T>()) };
    }
    if layout.size() == 0 {
        return;
    }
    let kept = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let i = match c.lists.iter().position(|(l, _)| *l == layout) {
                Some(i) => i,
                None => {
                    c.lists.push((layout, Vec::new()));
                    c.lists.len() - 1
                }
            };
            let blocks = &mut c.lists[i].1;
            let room = KEEP.saturating_sub(blocks.len()).min(ptrs.len());
            blocks.extend(ptrs[..room].iter().map(|&p| {
                // SAFETY: not null (came from an allocation of non-zero size).
                unsafe { NonNull::new_unchecked(p.cast::<u8>()) }
            }));
            room
        })
        .unwrap_or(0);
    for &ptr in &ptrs[kept..] {
        // SAFETY: allocated by the global allocator with `layout`; the value
        // was dropped above.
        unsafe { std::alloc::dealloc(ptr.cast::<u8>(), layout) };
    }
}
