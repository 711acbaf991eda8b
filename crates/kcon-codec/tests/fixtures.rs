//! kcon-codec against bytes captured from real broker traffic: Tansu 0.6.0's responses, and the
//! record batches librdkafka 2.16 and kafka-python 3.0 wrote (see `tests/fixtures/README.md`
//! for how they were made; `manifest.json` says what each file is and what each producer was
//! asked to send).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use kcon_codec::compression::Compression;
use kcon_codec::kafka_protocol::messages as m;
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_codec::message::{decode_request, decode_request_header, decode_response};
use kcon_codec::records::{Batch, ControlRecordType, DecodeOptions, RecordBatches, TimestampType};
use kcon_codec::versions::is_supported;
use kcon_codec::{Error, Result};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn read(file: &str) -> Bytes {
    Bytes::from(std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}")))
}

fn files<'a>(man: &'a Value, api_key: i64, direction: &str) -> Vec<&'a Value> {
    man["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["api_key"] == api_key && f["direction"] == direction)
        .collect()
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| {
        B64.decode(s)
            .unwrap_or_else(|e| panic!("base64 {s:?}: {e}"))
    })
}

/// One record as the manifest says the producer sent it.
#[derive(Debug, PartialEq)]
struct Expected {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

fn expected(records: &Value) -> Vec<Expected> {
    records
        .as_array()
        .expect("expected_records")
        .iter()
        .map(|r| Expected {
            key: b64(&r["key"]),
            value: b64(&r["value"]),
            headers: r["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| (b64(&h["key"]).expect("header key"), b64(&h["value"])))
                .collect(),
            timestamp: r["timestamp"].as_i64(),
        })
        .collect()
}

/// The records of every batch as the decoder gives them, with the batches themselves.
fn decode_all(records: Bytes) -> (Vec<Batch>, Vec<(i64, Expected)>) {
    let mut batches = RecordBatches::new(records, DecodeOptions::default());
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for batch in &mut batches {
        let batch = batch.unwrap_or_else(|e| panic!("batch: {e}"));
        for record in batch.records() {
            let r = record.unwrap_or_else(|e| panic!("record: {e}"));
            out.push((
                r.offset(),
                Expected {
                    key: r.key().map(<[u8]>::to_vec),
                    value: r.value().map(<[u8]>::to_vec),
                    headers: r
                        .headers()
                        .map(|h| (h.key().to_vec(), h.value().map(<[u8]>::to_vec)))
                        .collect(),
                    timestamp: (r.timestamp_type() != TimestampType::NoTimestamp)
                        .then_some(r.timestamp()),
                },
            ));
        }
        seen.push(batch);
    }
    assert!(!batches.truncated_tail(), "a captured batch was cut short");
    (seen, out)
}

fn codec(name: &str) -> Compression {
    match name {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => panic!("unknown codec {other}"),
    }
}

/// The records field of the one partition in a Produce request: through kafka-protocol from
/// v3 on; v1 and v2 (the magic 0 and 1 producers) by hand, since kafka-protocol starts at v3.
fn produce_records(frame: Bytes) -> Bytes {
    let (header, body) = decode_request_header(frame).expect("request header");
    let version = header.request_api_version;
    if version >= 3 {
        let req = decode_request::<m::ProduceRequest>(body, version).expect("produce request");
        let [topic] = &req.topic_data[..] else {
            panic!("one topic per captured Produce request")
        };
        let [part] = &topic.partition_data[..] else {
            panic!("one partition per captured Produce request")
        };
        return part.records.clone().expect("records");
    }
    // v0-v2: acks i16, timeout i32, [topic string, [partition i32, records bytes]].
    let mut at = 6;
    let be32 = |b: &Bytes, at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(be32(&body, at), 1, "one topic");
    at += 4;
    let name_len = i16::from_be_bytes([body[at], body[at + 1]]) as usize;
    at += 2 + name_len;
    assert_eq!(be32(&body, at), 1, "one partition");
    at += 8;
    let len = be32(&body, at) as usize;
    at += 4;
    assert_eq!(at + len, body.len(), "the records field ends the request");
    body.slice(at..at + len)
}

#[test]
fn every_produce_request_decodes_to_the_records_the_producer_sent() {
    let man = manifest();
    let produces = files(&man, 0, "request");
    assert!(produces.len() >= 15, "{} Produce requests", produces.len());
    let mut magics_codecs = std::collections::BTreeSet::new();
    for f in produces {
        let name = f["file"].as_str().unwrap();
        let p = &f["produce"];
        let (batches, records) = decode_all(produce_records(read(name)));
        let want = expected(&p["expected_records"]);
        let magic = p["magic"].as_i64().unwrap() as i8;
        let codec = codec(p["codec"].as_str().unwrap());
        for b in &batches {
            assert_eq!(b.magic(), magic, "{name}");
            assert_eq!(b.compression(), codec, "{name}");
        }
        magics_codecs.insert((magic, codec.name()));
        let got: Vec<_> = records.iter().map(|(_, r)| r).collect();
        assert_eq!(got.len(), want.len(), "{name}: record count");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(*g, w, "{name}: record {i}");
        }
        // A producer numbers its records from 0. Magic-1 compressed wrappers hold relative
        // offsets and a wrapper offset of 0 as the producers wrote them, and a wrapper offset
        // of 0 means the inner offsets are taken as they are (the Java client's
        // `DeepRecordsIterator` does the same for librdkafka's produce data).
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..want.len() as i64).collect::<Vec<_>>(),
            "{name}"
        );
        if p["transactional_id"].is_string() {
            assert!(
                batches
                    .iter()
                    .all(|b| b.is_transactional() && b.producer_id() >= 0)
            );
        }
    }
    // The fixtures cover every codec for magic 2 and the legacy formats both clients wrote.
    for (magic, c) in [
        (2, "none"),
        (2, "gzip"),
        (2, "snappy"),
        (2, "lz4"),
        (2, "zstd"),
        (1, "none"),
        (1, "gzip"),
        (1, "lz4"),
        (0, "none"),
        (0, "gzip"),
        (0, "snappy"),
    ] {
        assert!(
            magics_codecs.contains(&(magic, c)),
            "no magic {magic} {c} fixture"
        );
    }
}

/// Decodes a response frame of the API named by its manifest entry.
fn decode_any(api_key: i16, version: i16, frame: Bytes) -> Result<i32> {
    fn one<R: Request>(frame: Bytes, version: i16) -> Result<i32> {
        decode_response::<R>(frame, version).map(|(h, _)| h.correlation_id)
    }
    match m::ApiKey::try_from(api_key).expect("a known api key") {
        m::ApiKey::Produce => one::<m::ProduceRequest>(frame, version),
        m::ApiKey::Fetch => one::<m::FetchRequest>(frame, version),
        m::ApiKey::ListOffsets => one::<m::ListOffsetsRequest>(frame, version),
        m::ApiKey::Metadata => one::<m::MetadataRequest>(frame, version),
        m::ApiKey::OffsetCommit => one::<m::OffsetCommitRequest>(frame, version),
        m::ApiKey::OffsetFetch => one::<m::OffsetFetchRequest>(frame, version),
        m::ApiKey::FindCoordinator => one::<m::FindCoordinatorRequest>(frame, version),
        m::ApiKey::JoinGroup => one::<m::JoinGroupRequest>(frame, version),
        m::ApiKey::Heartbeat => one::<m::HeartbeatRequest>(frame, version),
        m::ApiKey::LeaveGroup => one::<m::LeaveGroupRequest>(frame, version),
        m::ApiKey::SyncGroup => one::<m::SyncGroupRequest>(frame, version),
        m::ApiKey::ApiVersions => one::<m::ApiVersionsRequest>(frame, version),
        m::ApiKey::CreateTopics => one::<m::CreateTopicsRequest>(frame, version),
        m::ApiKey::InitProducerId => one::<m::InitProducerIdRequest>(frame, version),
        m::ApiKey::AddPartitionsToTxn => one::<m::AddPartitionsToTxnRequest>(frame, version),
        m::ApiKey::EndTxn => one::<m::EndTxnRequest>(frame, version),
        other => panic!("the fixtures hold {other:?}: add it here"),
    }
}

#[test]
fn every_captured_response_kcon_speaks_decodes_through_the_guard() {
    let man = manifest();
    let mut decoded = HashMap::<(i16, i16), usize>::new();
    let mut refused = 0;
    for f in man["files"].as_array().unwrap() {
        if f["direction"] != "response" {
            continue;
        }
        let name = f["file"].as_str().unwrap();
        let api_key = f["api_key"].as_i64().unwrap() as i16;
        let version = f["api_version"].as_i64().unwrap() as i16;
        let result = decode_any(api_key, version, read(name));
        if is_supported(api_key, version) {
            let correlation_id = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                i64::from(correlation_id),
                f["correlation_id"].as_i64().unwrap()
            );
            *decoded.entry((api_key, version)).or_default() += 1;
        } else {
            // A version kcon does not speak has no guard schema: it is refused, not decoded
            // unchecked.
            assert!(
                matches!(result, Err(Error::UnsupportedVersion { .. })),
                "{name}: {result:?}"
            );
            refused += 1;
        }
    }
    for key in [
        (18, 3),
        (3, 12),
        (1, 16),
        (1, 12),
        (0, 10),
        (0, 9),
        (19, 4),
        (2, 9),
    ] {
        assert!(
            decoded.contains_key(&key),
            "no decoded fixture for {key:?}: {decoded:?}"
        );
    }
    assert!(decoded.values().sum::<usize>() > 50, "{decoded:?}");
    assert!(
        refused > 0,
        "the fixtures include versions kcon does not speak"
    );
}

/// Topic name by topic id, from the manifest (Fetch v13+ names topics by id).
fn topic_names(man: &Value) -> HashMap<[u8; 16], String> {
    man["topic_ids"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, id)| {
            let hex = id.as_str().unwrap();
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            (bytes, name.clone())
        })
        .collect()
}

#[test]
fn fetched_batches_hold_what_was_produced_and_the_transaction_markers() {
    let man = manifest();
    let by_id = topic_names(&man);
    // What each topic's producer sent, from its Produce requests.
    let mut sent: HashMap<String, Vec<Expected>> = HashMap::new();
    for f in files(&man, 0, "request") {
        let p = &f["produce"];
        sent.entry(p["topic"].as_str().unwrap().to_owned())
            .or_default()
            .extend(expected(&p["expected_records"]));
    }
    let mut checked_topics = std::collections::BTreeSet::new();
    let mut markers = 0;
    for f in files(&man, 1, "response") {
        let version = f["api_version"].as_i64().unwrap() as i16;
        if !is_supported(1, version) {
            continue;
        }
        let name = f["file"].as_str().unwrap();
        let (_, resp) = decode_response::<m::FetchRequest>(read(name), version)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for topic in &resp.responses {
            let topic_name = if version >= 13 {
                by_id[topic.topic_id.as_bytes()].clone()
            } else {
                topic.topic.to_string()
            };
            for part in &topic.partitions {
                let Some(records) = part.records.clone().filter(|r| !r.is_empty()) else {
                    continue;
                };
                let (batches, got) = decode_all(records);
                assert_eq!(
                    batches.last().unwrap().next_offset(),
                    part.high_watermark,
                    "{name} {topic_name}: the batches end at the high watermark"
                );
                if topic_name == "rdk-txn" {
                    markers += check_transaction(name, &batches, &got, &sent[&topic_name]);
                } else {
                    let want = &sent[&topic_name];
                    let got: Vec<_> = got.into_iter().map(|(_, r)| r).collect();
                    assert_eq!(&got, want, "{name} {topic_name}");
                }
                checked_topics.insert(topic_name.clone());
            }
        }
    }
    for t in [
        "rdk-none",
        "rdk-gzip",
        "rdk-snappy",
        "rdk-lz4",
        "rdk-zstd",
        "rdk-txn",
        "kpy-gzip",
    ] {
        assert!(
            checked_topics.contains(t),
            "no fetched records of {t}: {checked_topics:?}"
        );
    }
    assert!(markers >= 2, "transaction markers seen: {markers}");
}

/// The transactional topic: three committed records (0-2), a commit marker (3), two aborted
/// records (4-5), an abort marker (6). Tansu returns the aborted records too (it keeps no
/// aborted-transactions list), so read_uncommitted sees all five data records.
fn check_transaction(
    name: &str,
    batches: &[Batch],
    got: &[(i64, Expected)],
    sent: &[Expected],
) -> usize {
    let mut markers = 0;
    let mut data = Vec::new();
    for b in batches {
        assert!(
            b.is_transactional(),
            "{name}: every batch of a transaction is transactional"
        );
        for r in b.records() {
            let r = r.unwrap();
            if b.is_control() {
                let control = r.control().unwrap().expect("a control record");
                let want = if r.offset() == 3 {
                    ControlRecordType::Commit
                } else {
                    ControlRecordType::Abort
                };
                assert_eq!(control.kind, want, "{name}: marker at {}", r.offset());
                assert!(
                    matches!(r.offset(), 3 | 6),
                    "{name}: marker at {}",
                    r.offset()
                );
                markers += 1;
            } else {
                data.push(r.offset());
            }
        }
    }
    assert_eq!(data, [0, 1, 2, 4, 5], "{name}: data offsets");
    let values: Vec<_> = got
        .iter()
        .filter(|(o, _)| data.contains(o))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(values.len(), sent.len());
    for (g, w) in values.iter().zip(sent) {
        assert_eq!(*g, w, "{name}");
    }
    markers
}
