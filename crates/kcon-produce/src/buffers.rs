//! Buffers batches are encoded in, used again: a batch's buffer, once the batch is done, goes to
//! the next batch opened, with its pages already memory.
//!
//! A buffer freed to the allocator and asked for again is often not the same memory: glibc
//! maps a buffer of a megabyte on its own until its threshold grows past it, and gives the
//! top of its heap back to the system, so the next batch's pages fault in zeroed again,
//! record by record as they are written (page faults under the batch builder were about two
//! fifths of a fast producer's faults at 100-byte records). So the producer keeps the
//! buffers of the batches it finished, up to a bound, and opens batches in them.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// How much larger than asked a kept buffer handed out may be.
const LOOSE: usize = 4;

/// The buffers kept for the next batches, shared with the batches' bytes, which give theirs
/// back when the last reference to them is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Buffers {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    free: Mutex<Free>,
    /// The most bytes of capacity kept.
    keep: usize,
}

#[derive(Debug, Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    /// Their capacities added up.
    bytes: usize,
}

impl Buffers {
    /// Keeping at most `keep` bytes of buffers.
    pub(crate) fn new(keep: usize) -> Self {
        Buffers {
            shared: Arc::new(Shared {
                free: Mutex::new(Free::default()),
                keep,
            }),
        }
    }

    /// A buffer kept with room for `bytes`, and at most [`LOOSE`] times that (a batch of a
    /// few records does not take a megabyte), the one given back last of those (its pages the
    /// likeliest still cached); or a new empty one.
    pub(crate) fn take(&self, bytes: usize) -> Vec<u8> {
        let mut free = self.lock();
        let most = bytes.saturating_mul(LOOSE);
        let fits = |b: &Vec<u8>| (bytes..=most).contains(&b.capacity());
        match free.buffers.iter().rposition(fits) {
            Some(at) => {
                let buffer = free.buffers.swap_remove(at);
                free.bytes -= buffer.capacity();
                buffer
            }
            None => Vec::new(),
        }
    }

    /// Keeps `buffer` for a later batch, unless that would keep more than the bound.
    pub(crate) fn give(&self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0 {
            return;
        }
        let mut free = self.lock();
        if free.bytes.saturating_add(capacity) <= self.shared.keep {
            free.bytes += capacity;
            free.buffers.push(buffer);
        }
    }

    /// `buffer`'s bytes, which give it back when the last reference to them is dropped.
    pub(crate) fn wrap(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returning {
            buffer,
            to: self.clone(),
        })
    }

    /// The bytes of capacity kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        // The lock guards two fields updated together by code that cannot panic between them.
        self.shared
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A buffer lent out as a batch's bytes.
struct Returning {
    buffer: Vec<u8>,
    to: Buffers,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.to.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_dropped_give_their_buffer_to_the_next_taker() {
        let buffers = Buffers::new(1 << 20);
        let mut buffer = buffers.take(1000);
        assert_eq!(buffer.capacity(), 0);
        buffer.extend_from_slice(&[7; 1000]);
        let at = buffer.as_ptr();
        let capacity = buffer.capacity();
        let bytes = buffers.wrap(buffer);
        let clone = bytes.slice(10..20);
        assert_eq!(&clone[..], &[7; 10]);
        drop(bytes);
        // Still lent while any reference to the bytes lives.
        assert_eq!(buffers.kept(), 0);
        drop(clone);
        assert_eq!(buffers.kept(), capacity);
        let again = buffers.take(capacity);
        assert_eq!((again.as_ptr(), again.capacity()), (at, capacity));
        assert_eq!(buffers.kept(), 0);
    }

    #[test]
    fn a_buffer_much_larger_or_smaller_than_asked_is_not_handed_out() {
        let buffers = Buffers::new(1 << 20);
        buffers.give(Vec::with_capacity(100_000));
        buffers.give(Vec::with_capacity(1_000));
        assert_eq!(buffers.take(10_000).capacity(), 0);
        assert_eq!(buffers.take(30_000).capacity(), 100_000);
        assert_eq!(buffers.take(300).capacity(), 1_000);
        assert_eq!(buffers.kept(), 0);
    }

    #[test]
    fn no_more_than_the_bound_is_kept() {
        let buffers = Buffers::new(3000);
        buffers.give(Vec::with_capacity(2000));
        buffers.give(Vec::with_capacity(2000));
        assert_eq!(buffers.kept(), 2000);
        buffers.give(Vec::with_capacity(1000));
        assert_eq!(buffers.kept(), 3000);
        buffers.take(1000);
        buffers.take(1000);
        assert_eq!(buffers.kept(), 0);
        assert_eq!(buffers.take(1000).capacity(), 0);
    }
}
