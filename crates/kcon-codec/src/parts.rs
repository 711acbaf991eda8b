//! A request frame as the pieces to write one after the other: a Produce request's record
//! batches are handed on as the `Bytes` the producer built them in, not copied into the frame.
//!
//! Every other request, and a Produce request carrying fields kcon does not write (unknown
//! tagged fields), is one piece: the frame [`encode_request`] writes.

use std::any::Any;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};

use crate::error::{Error, Result};
use crate::frame::SIZE_PREFIX_LEN;
use crate::message::{check_version, encode_request, request_header};
use crate::wire::put_uvarint;

/// A batch at least this large goes as a piece of its own; a smaller one is copied in with the
/// fields around it (a request to many partitions of small batches stays a few pieces).
pub const SHARED_MIN: usize = 4096;

/// A whole request frame (size prefix, header, body), in the order its pieces are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The frame in one piece.
    Whole(Bytes),
    /// The frame in pieces: the fields, and the record batches of [`SHARED_MIN`] bytes or more
    /// as the `Bytes` the request holds them in.
    Parts(Vec<Bytes>),
}

impl Frame {
    /// Its bytes, all of them.
    pub fn len(&self) -> usize {
        match self {
            Frame::Whole(b) => b.len(),
            Frame::Parts(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// Whether it has no bytes (never so for a frame [`encode_request_frame`] made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its pieces in order.
    pub fn parts(&self) -> &[Bytes] {
        match self {
            Frame::Whole(b) => std::slice::from_ref(b),
            Frame::Parts(parts) => parts,
        }
    }
}

/// `request` at `version` as one frame ([`encode_request`]'s bytes), a Produce request's large
/// batches not copied into it: concatenated, the pieces are exactly what [`encode_request`]
/// writes.
pub fn encode_request_frame<R: Request + 'static>(
    correlation_id: i32,
    client_id: Option<&StrBytes>,
    version: i16,
    request: &R,
) -> Result<Frame> {
    let produce = (request as &dyn Any)
        .downcast_ref::<ProduceRequest>()
        .filter(|p| shares(p));
    let Some(produce) = produce else {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, correlation_id, client_id, version, request)?;
        return Ok(Frame::Whole(buf.freeze()));
    };
    check_version::<R>(version)?;
    let header = request_header::<R>(correlation_id, client_id, version);
    let encode_error = |reason: String| Error::Encode {
        api_key: R::KEY,
        version,
        reason,
    };
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h.saturating_add(produce.compute_size(version)?)))
        .map_err(|e| encode_error(e.to_string()))?;
    let prefix = i32::try_from(size).map_err(|_| encode_error(format!("{size} bytes")))?;
    let mut parts = Parts {
        head: BytesMut::with_capacity(SIZE_PREFIX_LEN + size.min(SHARED_MIN * 4)),
        done: Vec::new(),
    };
    parts.head.put_i32(prefix);
    header
        .encode(&mut parts.head, header_version)
        .map_err(|e| encode_error(e.to_string()))?;
    encode_produce(&mut parts, produce, version);
    let frame = parts.finish();
    // Invariant of the encoder above against kafka-protocol's sizes: checked, not assumed, so
    // that a frame whose prefix disagrees with its bytes is never written.
    if frame.len() != SIZE_PREFIX_LEN + size {
        return Err(encode_error(format!(
            "{} bytes written for a frame of {size}",
            frame.len() - SIZE_PREFIX_LEN
        )));
    }
    Ok(frame)
}

/// Whether `request` has a batch worth a piece of its own, and nothing the encoder here does
/// not write.
fn shares(request: &ProduceRequest) -> bool {
    let mut large = false;
    for t in &request.topic_data {
        if !t.unknown_tagged_fields.is_empty() {
            return false;
        }
        for p in &t.partition_data {
            if !p.unknown_tagged_fields.is_empty() {
                return false;
            }
            large |= p.records.as_ref().is_some_and(|r| r.len() >= SHARED_MIN);
        }
    }
    large && request.unknown_tagged_fields.is_empty()
}

/// The pieces written so far, and the one being written.
struct Parts {
    head: BytesMut,
    done: Vec<Bytes>,
}

impl Parts {
    /// `shared` as a piece of its own, after what is written so far.
    fn share(&mut self, shared: &Bytes) {
        if !self.head.is_empty() {
            self.done.push(self.head.split().freeze());
        }
        self.done.push(shared.clone());
    }

    fn finish(mut self) -> Frame {
        if !self.head.is_empty() {
            self.done.push(self.head.freeze());
        }
        Frame::Parts(self.done)
    }
}

/// A Produce request's body, field by field as its schema (ProduceRequest.json, v3-v13) lays
/// it out, without tagged fields (`shares` leaves requests with some to the whole encoder).
fn encode_produce(parts: &mut Parts, request: &ProduceRequest, version: i16) {
    let flexible = version >= 9;
    // An array's or a byte string's length: an unsigned varint of one more (0 for null) in the
    // flexible versions, an `i32` (-1 for null) before.
    let length = |head: &mut BytesMut, n: Option<usize>| match (flexible, n) {
        (true, n) => put_uvarint(head, n.map_or(0, |n| n as u64 + 1)),
        (false, n) => head.put_i32(n.map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX))),
    };
    // A string's: as above, but an `i16` before the flexible versions.
    let string = |head: &mut BytesMut, s: Option<&str>| {
        match (flexible, s) {
            (true, s) => put_uvarint(head, s.map_or(0, |s| s.len() as u64 + 1)),
            (false, s) => {
                head.put_i16(s.map_or(-1, |s| i16::try_from(s.len()).unwrap_or(i16::MAX)))
            }
        }
        if let Some(s) = s {
            head.put_slice(s.as_bytes());
        }
    };
    let head = &mut parts.head;
    string(head, request.transactional_id.as_ref().map(|t| &*t.0));
    head.put_i16(request.acks);
    head.put_i32(request.timeout_ms);
    length(head, Some(request.topic_data.len()));
    for topic in &request.topic_data {
        let head = &mut parts.head;
        if version <= 12 {
            string(head, Some(&topic.name.0));
        } else {
            head.put_slice(topic.topic_id.as_bytes());
        }
        length(head, Some(topic.partition_data.len()));
        for partition in &topic.partition_data {
            parts.head.put_i32(partition.index);
            length(&mut parts.head, partition.records.as_ref().map(Bytes::len));
            match &partition.records {
                Some(records) if records.len() >= SHARED_MIN => parts.share(records),
                Some(records) => parts.head.put_slice(records),
                None => {}
            }
            if flexible {
                // No tagged fields.
                parts.head.put_u8(0);
            }
        }
        if flexible {
            parts.head.put_u8(0);
        }
    }
    if flexible {
        parts.head.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{MetadataRequest, TopicName};

    fn batch(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    fn produce(batches: &[Option<Bytes>]) -> ProduceRequest {
        let partitions = |from: usize| {
            batches
                .iter()
                .enumerate()
                .skip(from)
                .step_by(2)
                .map(|(i, b)| {
                    PartitionProduceData::default()
                        .with_index(i as i32)
                        .with_records(b.clone())
                })
                .collect()
        };
        ProduceRequest::default()
            .with_transactional_id(Some(StrBytes::from_static_str("tx").into()))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("a")))
                    .with_topic_id(uuid::Uuid::from_u128(7))
                    .with_partition_data(partitions(0)),
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("bb")))
                    .with_topic_id(uuid::Uuid::from_u128(9))
                    .with_partition_data(partitions(1)),
            ])
    }

    fn whole<R: Request>(request: &R, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        let client = StrBytes::from_static_str("kcon");
        encode_request(&mut buf, 5, Some(&client), version, request).unwrap();
        buf.freeze()
    }

    fn concatenated(frame: &Frame) -> Vec<u8> {
        frame
            .parts()
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect()
    }

    /// At every version kcon sends, the pieces are the whole encoder's bytes; each batch of
    /// `SHARED_MIN` bytes or more is a piece of its own, the very bytes the request holds, and
    /// smaller ones, empty ones and nulls are written in place.
    #[test]
    fn a_produce_frames_pieces_are_the_whole_frame_with_its_large_batches_shared() {
        let batches = [
            Some(batch(SHARED_MIN, 1)),
            Some(batch(100, 2)),
            None,
            Some(batch(3 * SHARED_MIN + 5, 3)),
            Some(Bytes::new()),
            Some(batch(SHARED_MIN - 1, 4)),
        ];
        let request = produce(&batches);
        let client = StrBytes::from_static_str("kcon");
        for version in 3..=13 {
            let frame = encode_request_frame(5, Some(&client), version, &request).unwrap();
            assert_eq!(concatenated(&frame), whole(&request, version), "v{version}");
            let Frame::Parts(parts) = &frame else {
                panic!("v{version}: one piece");
            };
            let shared: Vec<_> = parts
                .iter()
                .filter(|p| batches.iter().flatten().any(|b| b.as_ptr() == p.as_ptr()))
                .map(Bytes::len)
                .collect();
            assert_eq!(shared, [SHARED_MIN, 3 * SHARED_MIN + 5], "v{version}");
            assert_eq!(parts.len(), 5, "fields, batch, fields, batch, fields");
        }
    }

    /// A Produce request of small batches only, one with a tagged field kcon does not write,
    /// and any other request are one piece, the whole encoder's.
    #[test]
    fn other_frames_are_one_piece() {
        let client = StrBytes::from_static_str("kcon");
        let small = produce(&[Some(batch(SHARED_MIN - 1, 1)), None]);
        let mut tagged = produce(&[Some(batch(SHARED_MIN, 1))]);
        tagged.topic_data[0].partition_data[0]
            .unknown_tagged_fields
            .insert(3, Bytes::from_static(b"x"));
        for request in [small, tagged] {
            let frame = encode_request_frame(5, Some(&client), 11, &request).unwrap();
            assert_eq!(frame, Frame::Whole(whole(&request, 11)));
        }
        let metadata = MetadataRequest::default();
        let frame = encode_request_frame(5, Some(&client), 12, &metadata).unwrap();
        assert_eq!(frame, Frame::Whole(whole(&metadata, 12)));
    }

    /// A version the codec does not speak is refused, as by the whole encoder.
    #[test]
    fn an_unsupported_version_is_refused() {
        let request = produce(&[Some(batch(SHARED_MIN, 1))]);
        let e = encode_request_frame(5, None, 2, &request).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { version: 2, .. }),
            "{e}"
        );
    }
}
