//! Output buffers of batch decompression, reused once the records in them are dropped.
//!
//! A compressed batch's records are slices of one buffer, the batch's decompressed records
//! section. A fresh buffer for every batch costs more than decompressing into it: the memory is
//! zero-filled before the decoder writes it, and the allocator gives large blocks back to the
//! kernel on free, so every batch also takes page faults on its first touch. Instead, a buffer
//! goes back to a process-wide free list when the last `Bytes` pointing into it is dropped
//! (`Bytes::from_owner`), and the next batch decompresses into it, reusing its length as room
//! without clearing it.
//!
//! How much the list keeps is not fixed: it is the sum of the [`FreeListShare`]s alive. Idle
//! buffers are memory kept for records that have not come yet, so whoever decompresses says how
//! much of that it can afford (a consumer: what its prefetch budget has not used), and a process
//! holding no share keeps no idle buffer. A buffer that does not fit is freed; when the shares
//! shrink below what the list holds, the list gives buffers back at once.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

struct Free {
    buffers: Vec<Vec<u8>>,
    /// Capacity of `buffers`.
    bytes: usize,
    /// The most capacity `buffers` may hold: the sum of the shares.
    limit: usize,
}

/// A free list of buffers.
pub(crate) struct Pool {
    free: Mutex<Free>,
}

/// The process-wide free list every batch decode uses.
pub(crate) static POOL: Pool = Pool::new(0);

impl Pool {
    const fn new(limit: usize) -> Pool {
        Pool {
            free: Mutex::new(Free {
                buffers: Vec::new(),
                bytes: 0,
                limit,
            }),
        }
    }

    fn free_list(&self) -> MutexGuard<'_, Free> {
        // Nothing panics while the lock is held; a poisoned list is still a valid list.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer to decompress into: the one most recently given back (likely still in
    /// cache), or a new empty one. Buffers larger than `limit` are freed rather than used, so
    /// a decode never holds more than its cap because another decode had a larger one.
    pub(crate) fn take(&self, limit: usize) -> Vec<u8> {
        let mut free = self.free_list();
        while let Some(buf) = free.buffers.pop() {
            free.bytes -= buf.capacity();
            if buf.capacity() <= limit {
                return buf;
            }
        }
        Vec::new()
    }

    /// Gives `buf` back to the free list, or frees it when the list is full.
    pub(crate) fn give_back(&self, buf: Vec<u8>) {
        let capacity = buf.capacity();
        if capacity == 0 {
            return;
        }
        let mut free = self.free_list();
        if free.bytes + capacity <= free.limit {
            free.bytes += capacity;
            free.buffers.push(buf);
        }
    }

    /// The first `len` bytes of `buf`, shared; `buf` returns to this free list once every
    /// `Bytes` made from the result is dropped.
    pub(crate) fn share(&'static self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Returning { buf, pool: self }).slice(..len)
    }

    /// The limit moves from `old` to `new` bytes of one share: when it falls below what the
    /// list holds, the oldest buffers (the least likely to be in cache) are freed, after the
    /// lock is released.
    fn reshare(&self, old: usize, new: usize) {
        let freed = {
            let mut free = self.free_list();
            free.limit = free.limit - old + new;
            let mut cut = 0;
            let mut left = free.bytes;
            while left > free.limit {
                left -= free.buffers[cut].capacity();
                cut += 1;
            }
            free.bytes = left;
            free.buffers.drain(..cut).collect::<Vec<_>>()
        };
        drop(freed);
    }

    /// (bytes held, limit).
    fn usage(&self) -> (usize, usize) {
        let free = self.free_list();
        (free.bytes, free.limit)
    }
}

/// The owner of a buffer shared as `Bytes`: gives it back when the last `Bytes` is dropped.
struct Returning {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// A claim on the process-wide free list of decompression buffers: while it lives, the list
/// may keep [`bytes`](Self::bytes) more of idle buffers for reuse.
///
/// The list keeps the sum of the shares alive, and nothing when there are none. A consumer's
/// fetcher holds one that follows its prefetch budget (`fetch.buffer.max.bytes` less what is
/// buffered), so idle buffers never make it keep more than it was allowed. A clone is a share
/// of its own, of the same size.
///
/// ```
/// use kcon_codec::compression::{FreeListShare, free_list_usage};
///
/// let before = free_list_usage().1;
/// let mut share = FreeListShare::new(8 << 20);
/// assert_eq!(free_list_usage().1, before + (8 << 20));
/// share.set(1 << 20);
/// assert_eq!(free_list_usage().1, before + (1 << 20));
/// drop(share);
/// assert_eq!(free_list_usage().1, before);
/// ```
pub struct FreeListShare {
    bytes: usize,
    pool: &'static Pool,
}

impl FreeListShare {
    /// A share of `bytes`.
    pub fn new(bytes: usize) -> FreeListShare {
        FreeListShare::in_pool(&POOL, bytes)
    }

    fn in_pool(pool: &'static Pool, bytes: usize) -> FreeListShare {
        pool.reshare(0, bytes);
        FreeListShare { bytes, pool }
    }

    /// The share's size.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Resizes the share; buffers past the new total are freed at once.
    pub fn set(&mut self, bytes: usize) {
        if bytes != self.bytes {
            self.pool.reshare(self.bytes, bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for FreeListShare {
    fn drop(&mut self) {
        self.set(0);
    }
}

impl Clone for FreeListShare {
    fn clone(&self) -> Self {
        FreeListShare::in_pool(self.pool, self.bytes)
    }
}

impl PartialEq for FreeListShare {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for FreeListShare {}

impl fmt::Debug for FreeListShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FreeListShare").field(&self.bytes).finish()
    }
}

/// The process-wide free list of decompression buffers: the bytes of idle buffers it holds, and
/// the most it may hold (the sum of the [`FreeListShare`]s alive).
pub fn free_list_usage() -> (usize, usize) {
    POOL.usage()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limit: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(limit)))
    }

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = pool(8 << 20);
        let buf = vec![7u8; 3 << 20];
        let ptr = buf.as_ptr();
        let shared = pool.share(buf, 10);
        assert_eq!(shared.len(), 10);
        let part = shared.slice(2..4);
        drop(shared);
        // Still referenced by `part`: not back yet.
        assert_eq!(pool.take(usize::MAX).capacity(), 0);
        drop(part);
        // Now it is back, its bytes left as they were (the next decode overwrites them).
        let again = pool.take(usize::MAX);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again.len(), 3 << 20);
        assert!(again.iter().all(|&b| b == 7));
        assert_eq!(pool.take(usize::MAX).capacity(), 0, "taken once only");
        // A limit below its capacity frees it instead of handing it out.
        pool.give_back(again);
        assert_eq!(pool.take(1 << 20).capacity(), 0);
        assert_eq!(pool.free_list().bytes, 0);
    }

    #[test]
    fn the_list_keeps_no_more_than_its_bytes() {
        let pool = pool(1 << 20);
        for _ in 0..5 {
            pool.give_back(Vec::with_capacity(300 << 10));
        }
        let free = pool.free_list();
        assert_eq!(free.buffers.len(), 3);
        assert_eq!(free.bytes, 900 << 10);
        drop(free);
        // The most recently given back is taken first.
        let last = Vec::<u8>::with_capacity(100 << 10);
        let ptr = last.as_ptr();
        pool.give_back(last);
        let taken = pool.take(usize::MAX);
        assert_eq!(taken.as_ptr(), ptr);
    }

    #[test]
    fn the_list_keeps_what_the_shares_allow_and_gives_back_when_they_shrink() {
        let pool = pool(0);
        // No share: nothing is kept.
        pool.give_back(Vec::with_capacity(100 << 10));
        assert_eq!(pool.usage(), (0, 0));

        let mut a = FreeListShare::in_pool(pool, 300 << 10);
        let b = FreeListShare::in_pool(pool, 200 << 10);
        assert_eq!(pool.usage(), (0, 500 << 10));
        for _ in 0..6 {
            pool.give_back(Vec::with_capacity(100 << 10));
        }
        assert_eq!(pool.usage(), (500 << 10, 500 << 10));
        let newest = Vec::<u8>::with_capacity(50 << 10);
        let newest_ptr = newest.as_ptr();
        let _ = pool.take(usize::MAX);
        pool.give_back(newest);

        // A share shrinking frees buffers at once, the oldest first.
        a.set(100 << 10);
        let (held, limit) = pool.usage();
        assert_eq!(limit, 300 << 10);
        assert!(held <= limit, "{held} > {limit}");
        let newest = pool.take(usize::MAX);
        assert_eq!(newest.as_ptr(), newest_ptr, "the newest is kept");

        // A clone is a share of its own.
        let c = b.clone();
        assert_eq!(pool.usage().1, 500 << 10);
        drop((a, b, c));
        assert_eq!(pool.usage(), (0, 0), "no share, no idle buffer");
    }
}
