//! Harness shared by kcon's fuzz targets: a global allocator that records the largest single
//! allocation, so every target can assert that decoding never allocates more than a small
//! multiple of its input (plus the decompression cap).
//!
//! libFuzzer's `-malloc_limit_mb` only catches allocations above a fixed size; this bound
//! scales with the input, which is the promise kcon-codec makes.

pub mod commit_machine;
pub mod consumer;
pub mod fetch_machine;
pub mod group_member;
pub mod group_sim;
pub mod offset_metadata;
pub mod ordering;
pub mod processor;
pub mod processor_concurrent;
pub mod producer_machine;
pub mod share_consumer;
pub mod share_machine;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How many input bytes one byte of input may cost in a single allocation.
pub const BYTES_PER_INPUT_BYTE: usize = 64;
/// Allocations up to this size are always allowed (buffers of fixed size, small collections).
pub const FIXED_ALLOWANCE: usize = 64 * 1024;

struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Set while a target makes its own inputs (see [`untracked`]): those allocations are not the
/// code under test's.
static PAUSED: AtomicBool = AtomicBool::new(false);

fn record(size: usize) {
    if !PAUSED.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// relaxed atomic maximum over the requested sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
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

/// Runs `f` without recording its allocations against the bound: for a target that builds its
/// own inputs as it goes (`fetch_machine` compresses the record batches it answers with, and a
/// compressor's state is far larger than a few input bytes).
pub fn untracked<T>(f: impl FnOnce() -> T) -> T {
    PAUSED.store(true, Ordering::Relaxed);
    let out = f();
    PAUSED.store(false, Ordering::Relaxed);
    out
}

/// A generator of pseudo-random numbers from `seed` (xorshift64*), for the targets' unit tests
/// that run a few hundred inputs of their own besides the corpus.
pub fn seeded(seed: u64) -> impl FnMut() -> u32 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
}

/// What a machine on a [`Harness`](kcon_core::harness::Harness) has for its owner now.
enum Output<M: kcon_core::Machine> {
    Request(kcon_core::Outgoing<M::Request, M::Target>),
    Event(M::Event),
}

/// The machine's next request, else its next event, firing the timers due until one of them
/// comes; `None` when it has nothing more to do now. `n` counts what it gave and fired within
/// one op: past `cap` it is a loop without progress, and the target fails.
fn next_output<M: kcon_core::Machine>(
    h: &mut kcon_core::harness::Harness<M>,
    n: &mut usize,
    cap: usize,
) -> Option<Output<M>> {
    loop {
        *n += 1;
        assert!(
            *n <= cap,
            "more than {cap} requests, events and timers in one op"
        );
        if let Some(o) = h.request() {
            return Some(Output::Request(o));
        }
        if let Some(e) = h.machine.poll_event() {
            return Some(Output::Event(e));
        }
        match h.machine.poll_timeout() {
            Some(t) if t <= h.now => {
                let now = h.now;
                h.machine.handle_timeout(now);
            }
            _ => return None,
        }
    }
}

/// A reader of the fuzz bytes; reads past the end give 0.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn next(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn u8(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.u8()) % from.len()]
    }

    /// A small offset change, -8 to +7.
    fn delta(&mut self) -> i64 {
        i64::from(self.u8() % 16) - 8
    }

    /// The next `n` bytes, or fewer at the end.
    fn slice(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }
}

/// A target's committed corpus, for the targets' unit tests.
#[cfg(test)]
mod corpus {
    /// The directory of `target`'s corpus.
    fn dir(target: &str) -> String {
        format!("{}/corpus/{target}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Writes `seeds` into `target`'s corpus, each under its name.
    pub(crate) fn write_seeds(target: &str, seeds: Vec<(&str, Vec<u8>)>) {
        let dir = dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            std::fs::write(format!("{dir}/{name}"), data).unwrap();
        }
    }

    /// The inputs of `target`'s corpus that once failed (`regression-*`), with their names.
    pub(crate) fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir(target)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("regression-") {
                found.push((name, std::fs::read(&path).unwrap()));
            }
        }
        found
    }
}
