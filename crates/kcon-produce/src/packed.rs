//! A record's headers, and its small key and value, packed on the thread that sends it, so that
//! the producer's task frees none of their memory.
//!
//! The producer's task drops a record once its batch holds it: on another thread than the one
//! that made it. Under glibc's allocator each allocation freed there takes a lock of the
//! sending thread's arena, which the sending thread's own allocations then wait on. A record's
//! headers are a list and, for each, a name and a value: three allocations a header, all made
//! by the sender (OpenTelemetry's context, a schema id, an origin). [`PackedHeaders::take`]
//! copies them into one slice of a chunk this thread keeps, and frees the list on the sending
//! thread; the producer's task then frees a slice (a reference count) instead. A small key or
//! value made for its record alone is moved into the chunk the same way ([`rehome`]).

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

use crate::record::ProducerRecord;

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
            chunked(len, write)
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

/// Moves what `record` alone holds onto this thread's chunk, freeing the originals here: its
/// headers, packed and returned (its own list left empty; `None` when it has none), and a
/// small key and value made for it alone ([`rehome`]). What `send` and `send_all` do to each
/// record before it is queued.
pub(crate) fn pack(record: &mut ProducerRecord) -> Option<PackedHeaders> {
    rehome(&mut record.key);
    rehome(&mut record.value);
    PackedHeaders::take(&mut record.headers)
}

/// Keys and values up to this size that only their record holds are copied into the chunk.
const KEPT_AT_MOST: usize = 512;

/// Replaces a key or value of at most [`KEPT_AT_MOST`] bytes that nothing but the record holds
/// (its buffer allocated for it) with a copy cut from this thread's chunk, its own buffer freed
/// here. One shared with other records (a slice of a larger buffer the caller keeps, a static
/// one) is left as it is: the producer's task only drops a reference to it.
fn rehome(field: &mut Option<Bytes>) {
    if let Some(bytes) = field
        && !bytes.is_empty()
        && bytes.len() <= KEPT_AT_MOST
        && bytes.is_unique()
    {
        *bytes = chunked(bytes.len(), |chunk| chunk.put_slice(bytes));
    }
}

/// `len` bytes written by `write`, as a slice of this thread's chunk (a new chunk when what is
/// left of it is shorter).
fn chunked(len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    CHUNKS.with_borrow_mut(|chunk| {
        if chunk.capacity() < len {
            *chunk = BytesMut::with_capacity(CHUNK);
        }
        write(chunk);
        chunk.split().freeze()
    })
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
    fn only_small_values_the_record_alone_holds_are_copied() {
        let shared = Bytes::from(vec![1u8; 64]);
        let big = Bytes::from(vec![2u8; KEPT_AT_MOST + 1]);
        let mut fields = [
            Some(Bytes::from(vec![3u8; 64])),
            Some(shared.clone()),
            Some(Bytes::from_static(b"static")),
            Some(big.clone()),
            None,
        ];
        let before: Vec<Option<Vec<u8>>> = fields
            .iter()
            .map(|f| f.as_ref().map(|b| b.to_vec()))
            .collect();
        drop(big);
        for field in &mut fields {
            rehome(field);
        }
        let after: Vec<Option<Vec<u8>>> = fields
            .iter()
            .map(|f| f.as_ref().map(|b| b.to_vec()))
            .collect();
        assert_eq!(after, before, "the same bytes, wherever they are");
        // The unique one now lives in the chunk: it shares its buffer with the next copy's.
        let moved = fields[0].as_ref().unwrap();
        assert!(!moved.is_unique());
        assert!(!shared.is_unique(), "a shared value is left shared");
        assert!(
            fields[3].as_ref().unwrap().is_unique(),
            "a large one keeps its own"
        );
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
