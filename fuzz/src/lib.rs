//! Harness shared by kcon's fuzz targets: a global allocator that records the largest single
//! allocation, so every target can assert that decoding never allocates more than a small
//! multiple of its input (plus the decompression cap).
//!
//! libFuzzer's `-malloc_limit_mb` only catches allocations above a fixed size; this bound
//! scales with the input, which is the promise kcon-codec makes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many input bytes one byte of input may cost in a single allocation.
pub const BYTES_PER_INPUT_BYTE: usize = 64;
/// Allocations up to this size are always allowed (buffers of fixed size, small collections).
pub const FIXED_ALLOWANCE: usize = 64 * 1024;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// relaxed atomic maximum over the requested sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `target` on `data` and panics if any single allocation it made was larger than
/// `BYTES_PER_INPUT_BYTE × data.len() + FIXED_ALLOWANCE + extra`.
pub fn bounded(data: &[u8], extra: usize, target: impl FnOnce(&[u8])) {
    LARGEST.store(0, Ordering::Relaxed);
    target(data);
    let largest = LARGEST.load(Ordering::Relaxed);
    let bound = BYTES_PER_INPUT_BYTE * data.len() + FIXED_ALLOWANCE + extra;
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes for {} input bytes (bound {bound})",
        data.len()
    );
}
