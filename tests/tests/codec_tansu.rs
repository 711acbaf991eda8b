//! kcon-codec against a live Tansu broker: records produced by librdkafka with every codec are
//! fetched back with kcon-codec alone (no pool, no consumer) and must match exactly, in order,
//! at the offsets librdkafka was told they were written at.
//!
//! Partition fetch sizes are kept small so that reading a topic takes many fetches, each
//! resuming from the last batch's next offset. (Tansu 0.6 answers with whole batches rather
//! than cutting the last one at the size limit, so cut batches are covered by the decoder's
//! unit tests instead.)

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::{
    FetchRequest, MetadataRequest, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    metadata_request::MetadataRequestTopic,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{DecodeOptions, RecordBatches};
use kcon_tests::blocking::BlockingConnection;
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::peers::{self, hex};
use serde_json::{Value, json};

const PARTITIONS: i32 = 2;
const RECORDS: usize = 300;

/// What one record should read back as.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Deterministic records of varied shapes: null and empty keys and values, values from 0 to
/// ~3 KiB, zero to three headers with a repeated key.
fn records() -> Vec<Rec> {
    (0..RECORDS)
        .map(|i| Rec {
            key: (i % 7 != 3).then(|| format!("key-{i}").into_bytes()),
            value: match i % 11 {
                5 => None,
                6 => Some(Vec::new()),
                _ => Some(
                    (0..(i * 37) % 3000)
                        .map(|j| b"kcon-codec "[(i + j) % 11])
                        .collect(),
                ),
            },
            headers: (0..i % 4)
                .map(|h| {
                    let key = if h == 2 {
                        "h0".to_owned()
                    } else {
                        format!("h{h}")
                    };
                    (key.into_bytes(), (h != 1).then(|| vec![h as u8; h]))
                })
                .collect(),
        })
        .collect()
}

fn produce(bootstrap: &str, topic: &str, codec: &str, recs: &[Rec]) -> Vec<(i32, i64)> {
    let opt = |b: &Option<Vec<u8>>| b.as_deref().map_or(Value::Null, |b| json!(hex(b)));
    let records: Vec<Value> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "partition": i as i32 % PARTITIONS,
                "key": opt(&r.key),
                "value": opt(&r.value),
                "headers": r.headers.iter()
                    .map(|(k, v)| json!([String::from_utf8_lossy(k), opt(v)]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let answer = peers::run(
        "produce.py",
        &json!({
            "bootstrap": bootstrap,
            "topic": topic,
            "partitions": PARTITIONS,
            "config": {"compression.type": codec, "linger.ms": 5, "batch.num.messages": 40},
            "records": records,
        }),
    );
    answer["delivered"]
        .as_array()
        .expect("delivered")
        .iter()
        .map(|d| {
            (
                d["partition"].as_i64().unwrap() as i32,
                d["offset"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Fetches every record of `topic` from offset 0 with kcon-codec, by partition; returns them
/// with the number of fetches it took.
fn fetch_all(
    conn: &mut BlockingConnection,
    topic: &str,
    want: usize,
) -> (BTreeMap<i32, Vec<(i64, Rec)>>, usize) {
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    let (_, meta) = conn
        .send(&MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name.clone())),
        ])))
        .expect("metadata");
    let topic_meta = &meta.topics[0];
    assert_eq!(topic_meta.error_code, 0, "metadata error for {topic}");
    let topic_id = topic_meta.topic_id;

    let mut got: BTreeMap<i32, Vec<(i64, Rec)>> = BTreeMap::new();
    let mut next = [0i64; PARTITIONS as usize];
    let mut rounds = 0;
    for _round in 0..1000 {
        if got.values().map(Vec::len).sum::<usize>() >= want {
            break;
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(50)
            .with_min_bytes(1)
            .with_max_bytes(64 * 1024)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name.clone())
                    .with_topic_id(topic_id)
                    .with_partitions(
                        (0..PARTITIONS)
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(next[p as usize])
                                    // Small, so responses end in cut batches.
                                    .with_partition_max_bytes(6000)
                            })
                            .collect(),
                    ),
            ]);
        let (_, resp) = conn.send(&req).expect("fetch");
        rounds += 1;
        assert_eq!(resp.error_code, 0);
        for t in &resp.responses {
            for part in &t.partitions {
                assert_eq!(part.error_code, 0, "partition {}", part.partition_index);
                let Some(bytes) = part.records.clone() else {
                    continue;
                };
                let mut batches = RecordBatches::new(bytes, DecodeOptions::default());
                for batch in &mut batches {
                    let batch = batch.unwrap_or_else(|e| panic!("{topic}: {e}"));
                    for r in batch.records() {
                        let r = r.unwrap_or_else(|e| panic!("{topic}: {e}"));
                        if r.offset() < next[part.partition_index as usize] {
                            continue; // a batch starting before the fetch offset
                        }
                        got.entry(part.partition_index).or_default().push((
                            r.offset(),
                            Rec {
                                key: r.key().map(<[u8]>::to_vec),
                                value: r.value().map(<[u8]>::to_vec),
                                headers: r
                                    .headers()
                                    .map(|h| (h.key().to_vec(), h.value().map(<[u8]>::to_vec)))
                                    .collect(),
                            },
                        ));
                    }
                    next[part.partition_index as usize] = batch.next_offset();
                }
            }
        }
    }
    (got, rounds)
}

#[test]
fn records_from_librdkafka_with_every_codec_read_back_exactly() {
    let tansu = Tansu::start();
    let recs = records();
    let mut conn = BlockingConnection::connect(tansu.addr()).expect("connect to Tansu");
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_name(&format!("codec-{codec}"));
        let delivered = produce(&tansu.bootstrap(), &topic, codec, &recs);
        let (got, fetches) = fetch_all(&mut conn, &topic, recs.len());
        if codec == "none" {
            // ~450 KB against a 6,000-byte partition limit: reading it must have resumed from
            // batches' next offsets, fetch after fetch.
            assert!(fetches > 1, "{fetches} fetches");
        }

        let mut want: BTreeMap<i32, Vec<(i64, Rec)>> = BTreeMap::new();
        for (rec, &(p, offset)) in recs.iter().zip(&delivered) {
            want.entry(p).or_default().push((offset, rec.clone()));
        }
        for p in 0..PARTITIONS {
            let (g, w) = (&got[&p], &want[&p]);
            assert_eq!(g.len(), w.len(), "{codec}: partition {p} record count");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_eq!(g, w, "{codec}: partition {p}, record {i}");
            }
        }
    }
}
