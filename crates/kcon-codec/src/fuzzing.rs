//! Entry points of the fuzz targets in the workspace's `fuzz/` folder: each target is one call
//! into this module, so the same code also runs in the unit tests that replay the committed
//! corpora.
//!
//! Input layouts (the seed corpora follow them):
//! - [`frames`]: `[api key: i16][version: i16]` then a raw byte stream of size-prefixed frames.
//! - [`response`]: `[api key: i16][version: i16]` then one response frame without its size prefix.
//! - [`record_batches`]: the bytes of a fetch response's `records` field (any magic, any codec),
//!   decoded with CRC checks on and off under a [`DECOMPRESSION_CAP`] cap.
//! - [`batch_round_trip`]: any bytes, read as a description of a batch to encode, decode and
//!   compare.
//! - [`consumer_protocol`]: a first byte choosing subscription (even) or assignment (odd), then
//!   the message's bytes as a group member sends them.
//! - [`schema_framing`]: a first byte whose low bit says whether Protobuf message indexes follow
//!   the identity and whose second bit whether a schema id header is there; with a header, the
//!   next byte is its length (cut to what is left); then the field's bytes.
//!
//! Each function panics only when the code under test breaks a promise (a decoder that
//! disagrees with itself, a round trip that is not the identity); errors are expected.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages as m;

use crate::frame::FrameDecoder;
use crate::header::{decode_response_header, peek_correlation_id};
use crate::message::decode_response;
use crate::versions::SUPPORTED;

/// The decompression cap of the record-batch target: its allocation bound adds this to the
/// per-input-byte allowance.
pub const DECOMPRESSION_CAP: usize = 1 << 20;

/// Decodes every batch and touches every record and header; see [`crate::records`].
pub fn record_batches(data: &[u8]) {
    crate::records::fuzz_decode_all(data, DECOMPRESSION_CAP);
}

/// Encodes the batch `data` describes, decodes it and checks the result is what was encoded.
pub fn batch_round_trip(data: &[u8]) {
    crate::records::fuzz_round_trip(data);
}

/// Decodes a consumer-protocol subscription or assignment from bytes another group member
/// sent; one that decodes must encode at its version and decode back to itself, but for the
/// order of its partitions: the encoder groups them per topic, in first-seen order, as the
/// Java client does, so a topic that comes twice apart comes back as one group.
pub fn consumer_protocol(data: &[u8]) {
    use crate::consumer_protocol::{Assignment, HIGHEST_VERSION, Subscription};
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    let version = rest
        .first_chunk::<2>()
        .map_or(0, |v| i16::from_be_bytes(*v).clamp(0, HIGHEST_VERSION));
    if kind % 2 == 0 {
        if let Ok(mut s) = Subscription::decode(rest)
            && let Some(again) = redecoded(
                Subscription::decode(&s.encode(version)),
                &s.owned_partitions,
            )
        {
            s.owned_partitions = grouped(s.owned_partitions);
            assert_eq!(again, s, "a subscription changed through encode and decode");
        }
    } else if let Ok(mut a) = Assignment::decode(rest)
        && let Some(again) = redecoded(Assignment::decode(&a.encode(version)), &a.partitions)
    {
        a.partitions = grouped(a.partitions);
        assert_eq!(again, a, "an assignment changed through encode and decode");
    }
}

/// Kafka's longest topic name (`Topic.MAX_NAME_LENGTH` in its source).
const MAX_TOPIC_NAME: usize = 249;

/// The decoding of kcon's own encoding of `partitions`, which must succeed, but for one case:
/// grouping a topic's partitions makes the encoding shorter while the topic names it flattens
/// into stay as long, so names longer than Kafka allows can pass the bound on copied names
/// (`EXPANSION_FACTOR`) as sent and fail it as encoded again. Names Kafka allows never reach
/// it; that case is `None`.
fn redecoded<T>(
    result: Result<T, crate::consumer_protocol::ProtocolError>,
    partitions: &[crate::consumer_protocol::TopicPartition],
) -> Option<T> {
    match result {
        Ok(t) => Some(t),
        Err(crate::consumer_protocol::ProtocolError::TooLarge { .. })
            if partitions.iter().any(|tp| tp.topic.len() > MAX_TOPIC_NAME) =>
        {
            None
        }
        Err(e) => panic!("an encoding decodes: {e:?}"),
    }
}

/// `partitions` grouped per topic in first-seen order, each topic's in the order given.
fn grouped(
    partitions: Vec<crate::consumer_protocol::TopicPartition>,
) -> Vec<crate::consumer_protocol::TopicPartition> {
    let mut order: Vec<&str> = Vec::new();
    for tp in &partitions {
        if !order.contains(&tp.topic.as_str()) {
            order.push(&tp.topic);
        }
    }
    let rank: Vec<usize> = partitions
        .iter()
        .map(|tp| order.iter().position(|t| *t == tp.topic).unwrap_or(0))
        .collect();
    let mut ranked: Vec<(usize, crate::consumer_protocol::TopicPartition)> =
        rank.into_iter().zip(partitions.iter().cloned()).collect();
    ranked.sort_by_key(|(r, _)| *r);
    ranked.into_iter().map(|(_, tp)| tp).collect()
}

/// Largest frame the frame target accepts: small, so that the fuzzer explores the size check
/// rather than waiting for megabytes.
const FUZZ_MAX_FRAME: usize = 64 * 1024;

fn split_key_version(data: &[u8]) -> Option<(i16, i16, &[u8])> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    let api_key = i16::from_be_bytes([head[0], head[1]]);
    let version = i16::from_be_bytes([head[2], head[3]]);
    Some((api_key, version, rest))
}

/// Maps any `(api key, version)` onto one kcon speaks, so that every input reaches a decoder:
/// a pair kcon speaks is kept as it is (the seeds captured from brokers carry real keys and
/// versions); any other key picks an API by its index in [`SUPPORTED`], and any other version
/// wraps into that API's range.
fn supported_key_version(api_key: i16, version: i16) -> (m::ApiKey, i16) {
    if let Ok(api) = m::ApiKey::try_from(api_key)
        && crate::versions::is_supported(api_key, version)
    {
        return (api, version);
    }
    let (api, min, max) = SUPPORTED
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .copied()
        .unwrap_or(SUPPORTED[usize::from(api_key.unsigned_abs()) % SUPPORTED.len()]);
    let span = (max - min + 1) as u16;
    (api, min + (version.unsigned_abs() % span) as i16)
}

/// Splits the stream into frames twice, all at once and in two pieces fed one after the other,
/// and checks both ways give the same frames; reads each frame's response header.
pub fn frames(data: &[u8]) {
    let Some((api_key, version, stream)) = split_key_version(data) else {
        return;
    };
    let decoder = FrameDecoder::new(FUZZ_MAX_FRAME);
    let whole = split_all(&decoder, BytesMut::from(stream));

    let cut = usize::from(api_key.unsigned_abs()) % (stream.len() + 1);
    let mut buf = BytesMut::from(&stream[..cut]);
    let mut pieces = Vec::new();
    while let Ok(Some(f)) = decoder.decode(&mut buf) {
        pieces.push(f);
    }
    buf.extend_from_slice(&stream[cut..]);
    let rest = split_all(&decoder, buf);
    pieces.extend(rest.0);
    assert_eq!(whole.0, pieces, "frames depend on how the bytes arrived");

    let (api, version) = supported_key_version(api_key, version);
    for frame in &whole.0 {
        let peeked = peek_correlation_id(frame);
        if let Ok((header, used)) = decode_response_header(api as i16, version, frame) {
            assert_eq!(peeked, Ok(header.correlation_id));
            assert!(used <= frame.len());
        }
    }
}

fn split_all(decoder: &FrameDecoder, mut buf: BytesMut) -> (Vec<Bytes>, bool) {
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, false),
            Err(_) => return (frames, true),
        }
    }
}

/// Decodes one response frame at the API and version named by the first four bytes (mapped
/// onto the versions kcon speaks).
pub fn response(data: &[u8]) {
    let Some((api_key, version, frame)) = split_key_version(data) else {
        return;
    };
    let (api, version) = supported_key_version(api_key, version);
    decode_as(api, version, Bytes::copy_from_slice(frame));
}

macro_rules! decode_as {
    ($api:expr, $version:expr, $frame:expr, $($key:ident => $req:ty),* $(,)?) => {
        match $api {
            $(m::ApiKey::$key => {
                let _ = decode_response::<$req>($frame, $version);
            })*
            // `supported_key_version` only yields APIs from SUPPORTED, each listed above; the
            // test `every_supported_api_is_fuzzed` checks that.
            other => panic!("{other:?} is in SUPPORTED but has no fuzz dispatch"),
        }
    };
}

fn decode_as(api: m::ApiKey, version: i16, frame: Bytes) {
    decode_as!(api, version, frame,
        Produce => m::ProduceRequest,
        Fetch => m::FetchRequest,
        ListOffsets => m::ListOffsetsRequest,
        Metadata => m::MetadataRequest,
        OffsetCommit => m::OffsetCommitRequest,
        OffsetFetch => m::OffsetFetchRequest,
        FindCoordinator => m::FindCoordinatorRequest,
        JoinGroup => m::JoinGroupRequest,
        Heartbeat => m::HeartbeatRequest,
        LeaveGroup => m::LeaveGroupRequest,
        SyncGroup => m::SyncGroupRequest,
        DescribeGroups => m::DescribeGroupsRequest,
        ListGroups => m::ListGroupsRequest,
        SaslHandshake => m::SaslHandshakeRequest,
        ApiVersions => m::ApiVersionsRequest,
        CreateTopics => m::CreateTopicsRequest,
        DeleteGroups => m::DeleteGroupsRequest,
        SaslAuthenticate => m::SaslAuthenticateRequest,
        OffsetForLeaderEpoch => m::OffsetForLeaderEpochRequest,
        OffsetDelete => m::OffsetDeleteRequest,
        ConsumerGroupHeartbeat => m::ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => m::ConsumerGroupDescribeRequest,
        InitProducerId => m::InitProducerIdRequest,
        AddPartitionsToTxn => m::AddPartitionsToTxnRequest,
        AddOffsetsToTxn => m::AddOffsetsToTxnRequest,
        EndTxn => m::EndTxnRequest,
        TxnOffsetCommit => m::TxnOffsetCommitRequest,
        ShareGroupHeartbeat => m::ShareGroupHeartbeatRequest,
        ShareFetch => crate::share_v2::ShareFetchRequestV2,
        ShareAcknowledge => crate::share_v2::ShareAcknowledgeRequestV2,
        ShareGroupDescribe => m::ShareGroupDescribeRequest,
        DescribeShareGroupOffsets => crate::share_offsets_v1::DescribeShareGroupOffsetsRequestV1,
        DescribeConfigs => m::DescribeConfigsRequest,
        IncrementalAlterConfigs => m::IncrementalAlterConfigsRequest,
        GetTelemetrySubscriptions => m::GetTelemetrySubscriptionsRequest,
        PushTelemetry => m::PushTelemetryRequest,
        DescribeTransactions => m::DescribeTransactionsRequest,
    )
}

/// Takes a key or value apart as Confluent's framings say ([`crate::schema_id`]); what parses
/// must encode and parse back to itself, and the payload must be the tail of the field.
pub fn schema_framing(data: &[u8]) {
    use crate::schema_id::{IdSource, encode, parse};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let protobuf = flags & 1 == 1;
    let (header, field) = if flags & 2 == 2 {
        let Some((&len, rest)) = rest.split_first() else {
            return;
        };
        let len = usize::from(len).min(rest.len());
        (Some(&rest[..len]), &rest[len..])
    } else {
        (None, rest)
    };
    let Ok(framed) = parse(header, field, protobuf) else {
        return;
    };
    assert!(
        field.ends_with(framed.payload),
        "the payload is not the field's tail"
    );
    if framed.source == IdSource::Header {
        assert_eq!(
            framed.payload, field,
            "a header identity leaves the field whole"
        );
    }
    let mut again = encode_prefix(&framed, protobuf);
    again.extend_from_slice(framed.payload);
    let reparsed = parse(None, &again, protobuf).expect("an encoding parses");
    assert_eq!(reparsed.schema, framed.schema);
    assert_eq!(reparsed.message_indexes, framed.message_indexes);
    assert_eq!(reparsed.payload, framed.payload);

    fn encode_prefix(framed: &crate::schema_id::Framed<'_>, protobuf: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let indexes = framed.message_indexes.as_deref();
        assert_eq!(indexes.is_some(), protobuf);
        encode(framed.schema, indexes, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An assignment naming topic `a` twice, apart: it comes back with `a`'s partitions
    /// together, and the target takes that as the same assignment.
    #[test]
    fn a_topic_twice_apart_is_grouped() {
        use crate::consumer_protocol::{Assignment, put_string};
        use bytes::BufMut;
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(3);
        for (topic, partition) in [("a", 0), ("b", 1), ("a", 2)] {
            put_string(&mut b, topic);
            b.put_i32(1);
            b.put_i32(partition);
        }
        b.put_i32(-1);
        let a = Assignment::decode(&b).unwrap();
        let again = Assignment::decode(&a.encode(0)).unwrap();
        let order = |a: &Assignment| -> Vec<(String, i32)> {
            a.partitions
                .iter()
                .map(|tp| (tp.topic.clone(), tp.partition))
                .collect()
        };
        assert_eq!(
            order(&again),
            [("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]
        );
        let mut input = vec![1];
        input.extend_from_slice(&b);
        consumer_protocol(&input);
    }

    /// One topic named in 2000 entries of one partition each: the input passes the bound on
    /// copied names, the grouped encoding (one entry) does not. With a name Kafka allows the
    /// grouped encoding decodes; with a longer one the target accepts the refusal.
    #[test]
    fn grouping_long_names_may_pass_the_expansion_bound() {
        use crate::consumer_protocol::{Assignment, ProtocolError, put_string};
        use bytes::BufMut;
        for (len, refused) in [(MAX_TOPIC_NAME, false), (300, true)] {
            let name = "n".repeat(len);
            let mut b = BytesMut::new();
            b.put_i16(0);
            b.put_i32(2000);
            for partition in 0..2000 {
                put_string(&mut b, &name);
                b.put_i32(1);
                b.put_i32(partition);
            }
            b.put_i32(-1);
            let a = Assignment::decode(&b).unwrap();
            let again = Assignment::decode(&a.encode(0));
            assert_eq!(
                matches!(again, Err(ProtocolError::TooLarge { .. })),
                refused,
                "{len}"
            );
            let mut input = vec![1];
            input.extend_from_slice(&b);
            consumer_protocol(&input);
        }
    }

    #[test]
    fn every_supported_api_is_fuzzed() {
        for &(api, min, max) in SUPPORTED {
            for v in min..=max {
                assert_eq!(supported_key_version(api as i16, v), (api, v));
                // Out of range: wraps back to `v`.
                let span = max - min + 1;
                assert_eq!(
                    supported_key_version(api as i16, v - min + 100 * span),
                    (api, v)
                );
                // An empty frame is an error for every API, never a panic or a missing arm.
                decode_as(api, v, Bytes::new());
            }
        }
    }

    #[test]
    fn frames_agree_however_they_arrive() {
        let mut data = vec![0, 7, 0, 3];
        for body in [&b"abcd"[..], b"", b"0123456789"] {
            data.extend((body.len() as i32).to_be_bytes());
            data.extend(body);
        }
        data.extend([0, 0, 0, 9, 1]);
        frames(&data);
        frames(&data[..3]);
        frames(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    }
}
