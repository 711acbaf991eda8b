//! A record's headers packed on the thread that sends it, so that the producer's task frees
//! none of their memory.
//!
//! The producer's task drops a record once its batch holds it: on another thread than the one
//! that made it. Under glibc's allocator each allocation freed there takes a lock of the
//! sending thread's arena, which the sending thread's own allocations then wait on. A record's
//! headers are a list and, for each, a name and a value: three allocations a header, all made
//! by the sender (OpenTelemetry's context, a schema id, an origin). [`PackedHeaders::take`]
//! copies them into one slice of a chunk this thread keeps, and frees the list on the sending
//! thread; the producer's task then frees a slice (a reference count) instead.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

/// The size of a thread's chunk.
const CHUNK: usize = 16 * 1024;

/// Headers packed into more than this get a buffer of their own rather than a slice of the
/// chunk (a chunk is kept whole while any slice of it lives).
const CHUNKED_AT_MOST: usize = 2 * 1024;

/// A null value's length.
const NULL: u32 = u32::MAX;

thread_local! {
    /// What is left of this thread's chunk.
    static CHUNKS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A record's headers, in order, each as a name's length (`u32`, little-endian) and bytes, then
/// a value's length ([`NULL`] for none) and bytes.
pub(crate) struct PackedHeaders {
    bytes: Bytes,
}

impl PackedHeaders {
    /// Packs `headers` and leaves them empty (their list freed here); `None` when there are
    /// none.
    pub(crate) fn take(headers: &mut Vec<(Bytes, Option<Bytes>)>) -> Option<PackedHeaders> {
        if headers.is_empty() {
            return None;
        }
        let headers = std::mem::take(headers);
        let len: usize = headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.as_ref().map_or(0, Bytes::len))
            .sum();
        let write = |into: &mut BytesMut| {
            for (k, v) in &headers {
                put(into, Some(k));
                put(into, v.as_ref());
            }
        };
        let bytes = if len > CHUNKED_AT_MOST {
            let mut own = BytesMut::with_capacity(len);
            write(&mut own);
            own.freeze()
        } else {
            CHUNKS.with_borrow_mut(|chunk| {
                if chunk.capacity() < len {
                    *chunk = BytesMut::with_capacity(CHUNK);
                }
                write(chunk);
                chunk.split().freeze()
            })
        };
        Some(PackedHeaders { bytes })
    }

    /// The headers, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let name = next(&mut rest)?;
            let value = next(&mut rest);
            Some((name, value))
        })
    }
}

fn put(into: &mut BytesMut, field: Option<&Bytes>) {
    match field {
        Some(b) => {
            // Invariant: a header is shorter than 4 GiB, as `max.request.size` (an i32) allows.
            into.put_u32_le(b.len() as u32);
            into.put_slice(b);
        }
        None => into.put_u32_le(NULL),
    }
}

/// The next field of `rest` (`None` for a null one), taken off it. Read only from what
/// [`PackedHeaders::take`] wrote.
fn next<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, after) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    if len == NULL {
        *rest = after;
        return None;
    }
    let (field, after) = after.split_at(len as usize);
    *rest = after;
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_as_they_were_given() {
        let given: Vec<(Bytes, Option<Bytes>)> = vec![
            ("traceparent".into(), Some("00-ab-cd-01".into())),
            ("empty".into(), Some(Bytes::new())),
            ("null".into(), None),
            ("traceparent".into(), Some("again".into())),
            ("".into(), Some("nameless".into())),
        ];
        let mut headers = given.clone();
        let packed = PackedHeaders::take(&mut headers).expect("there are headers");
        assert!(headers.is_empty());
        let read: Vec<(Bytes, Option<Bytes>)> = packed
            .iter()
            .map(|(k, v)| (Bytes::copy_from_slice(k), v.map(Bytes::copy_from_slice)))
            .collect();
        assert_eq!(read, given);
        assert!(PackedHeaders::take(&mut Vec::new()).is_none());
    }

    #[test]
    fn headers_past_a_chunk_and_too_large_for_one_read_back_whole() {
        // More records' headers than one chunk holds, and one record's too large for a chunk:
        // each reads back as given, whichever chunk or buffer it was packed into.
        let mut given: Vec<Vec<(Bytes, Option<Bytes>)>> = (0..2 * CHUNK / 60)
            .map(|i| vec![("k".into(), Some(format!("{i:0>50}").into()))])
            .collect();
        given.push(vec![(
            "big".into(),
            Some(vec![7u8; CHUNKED_AT_MOST].into()),
        )]);
        let packed: Vec<PackedHeaders> = given
            .iter()
            .map(|h| PackedHeaders::take(&mut h.clone()).expect("there are headers"))
            .collect();
        for (headers, packed) in given.iter().zip(&packed) {
            let read: Vec<(&[u8], Option<&[u8]>)> = packed.iter().collect();
            let want: Vec<(&[u8], Option<&[u8]>)> = headers
                .iter()
                .map(|(k, v)| (&k[..], v.as_deref()))
                .collect();
            assert_eq!(read, want);
        }
    }
}
