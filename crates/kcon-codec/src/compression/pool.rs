//! Output buffers of batch decompression, reused once the records in them are dropped.
//!
//! A compressed batch's records are slices of one buffer, the batch's decompressed records
//! section. A fresh buffer for every batch costs more than decompressing into it: the memory is
//! zero-filled before the decoder writes it, and the allocator gives large blocks back to the
//! kernel on free, so every batch also takes page faults on its first touch. Instead, a buffer
//! goes back to a small process-wide free list when the last `Bytes` pointing into it is
//! dropped (`Bytes::from_owner`), and the next batch decompresses into it, reusing its length
//! as room without clearing it.
//!
//! The free list keeps at most [`MAX_POOLED_BYTES`] of capacity; a buffer that does not fit is
//! freed.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// The most capacity the free list keeps: enough for a few dozen of the ~100 KiB batches of a
/// busy topic, or several of the largest batches a broker accepts by default (1 MiB), while
/// bounding what an idle consumer keeps.
pub(crate) const MAX_POOLED_BYTES: usize = 32 << 20;

struct Free {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

/// A free list of buffers.
pub(crate) struct Pool {
    free: Mutex<Free>,
    max_bytes: usize,
}

/// The process-wide free list every batch decode uses.
pub(crate) static POOL: Pool = Pool::new(MAX_POOLED_BYTES);

impl Pool {
    const fn new(max_bytes: usize) -> Pool {
        Pool {
            free: Mutex::new(Free {
                buffers: Vec::new(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    fn free_list(&self) -> std::sync::MutexGuard<'_, Free> {
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
        if free.bytes + capacity <= self.max_bytes {
            free.bytes += capacity;
            free.buffers.push(buf);
        }
    }

    /// The first `len` bytes of `buf`, shared; `buf` returns to this free list once every
    /// `Bytes` made from the result is dropped.
    pub(crate) fn share(&'static self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Returning { buf, pool: self }).slice(..len)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_bytes: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(max_bytes)))
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
}
