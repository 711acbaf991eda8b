//! kcon-codec on Apache Kafka 4.4 (`Kafka::single()`): records produced by librdkafka with
//! every codec are fetched back with kcon-codec alone (no pool, no consumer) and must match
//! exactly, in order, at the offsets librdkafka was told they were written at.
//!
//! Partition fetch sizes are kept small so that reading a topic takes many fetches, each
//! resuming from the last whole batch's next offset. Kafka cuts an answer at the partition's
//! size limit, in the middle of a batch: the decoder reports the cut tail and the next fetch
//! starts where the whole batches ended.

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::{
    FetchRequest, MetadataRequest, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    metadata_request::MetadataRequestTopic,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{DecodeOptions, RecordBatches};
use kcon_pool::Pool;
use kcon_tests::blocking::BlockingConnection;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::peers::{self, hex};
use kcon_tests::pool::config;
use serde_json::{Value, json};

const PARTITIONS: i32 = 2;
const RECORDS: usize = 300;
/// A partition's share of a Fetch answer: a few batches, the last one cut.
const PARTITION_MAX_BYTES: i32 = 16_000;

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
            // Created by the test, once its partitions' leader takes records: librdkafka's
            // retries of a first batch refused meanwhile would land after later batches.
            "create": false,
            // Batches of at most four records (up to 12 KB): several fit in one answer.
            "config": {"compression.type": codec, "linger.ms": 5, "batch.num.messages": 4},
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

/// What reading a topic took.
#[derive(Debug, Default)]
struct Took {
    /// Fetch requests.
    fetches: usize,
    /// Partition answers that ended in a batch cut short by the size limit.
    cut: usize,
}

/// Fetches every record of `topic` from offset 0 with kcon-codec, by partition; returns them
/// with what it took.
fn fetch_all(
    conn: &mut BlockingConnection,
    topic: &str,
    want: usize,
) -> (BTreeMap<i32, Vec<(i64, Rec)>>, Took) {
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
    let mut took = Took::default();
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
                                    // Small, so that answers end in cut batches.
                                    .with_partition_max_bytes(PARTITION_MAX_BYTES)
                            })
                            .collect(),
                    ),
            ]);
        let (_, resp) = conn.send(&req).expect("fetch");
        took.fetches += 1;
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
                if batches.truncated_tail() {
                    took.cut += 1;
                }
            }
        }
    }
    (got, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_librdkafka_with_every_codec_read_back_exactly() {
    let kafka = Kafka::single();
    let recs = records();
    let addr = kafka.bootstrap().parse().expect("one node's address");
    let mut conn = BlockingConnection::connect(addr).expect("connect to Kafka");
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_name(&format!("codec-{codec}"));
        create_topics(&pool, &[(&topic, PARTITIONS)]).await;
        let delivered = produce(kafka.bootstrap(), &topic, codec, &recs);
        let (got, took) = fetch_all(&mut conn, &topic, recs.len());
        if codec == "none" {
            // ~450 KB against a 16,000-byte partition limit: reading it must have resumed from
            // batches' next offsets, fetch after fetch, past batches cut by the limit.
            assert!(took.fetches > 1, "{took:?}");
            assert!(took.cut > 0, "no answer ended in a cut batch: {took:?}");
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
