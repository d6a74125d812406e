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

/// Blocks kept per layout per thread (a retire batch is 512).
const KEEP: usize = 2048;

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
                .and_then(|(_, blocks)| blocks.pop())
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
    let layout = Layout::new::<T>();
    // SAFETY: the caller hands the value over.
    unsafe { std::ptr::drop_in_place(ptr) };
    if layout.size() == 0 {
        return;
    }
    // SAFETY: not null (came from an allocation of non-zero size).
    let block = unsafe { NonNull::new_unchecked(ptr.cast::<u8>()) };
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
            if blocks.len() < KEEP {
                blocks.push(block);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: allocated by the global allocator with `layout`; the value
        // was dropped above.
        unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
    }
}
