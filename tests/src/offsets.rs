//! Support for kcon-offsets' tests against real brokers (`tests/offsets_kafka.rs`,
//! `tests/offsets_mock.rs`): records produced with kcon's own batch builder, the high
//! watermark as a Fetch answer reports it, and offset configurations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::TopicPartition;
use kcon_core::error_codes::{code, error_name};
use kcon_offsets::{OffsetAndMetadata, OffsetsConfig};
use kcon_pool::{BrokerTarget, Pool, TopicScope};

/// An offsets configuration for `group` with auto-commit off (tests commit explicitly unless
/// they say otherwise), a 10 s `default.api.timeout.ms` so that a stuck commit fails the test
/// quickly, and `extra` properties.
pub fn offsets_config(group: &str, extra: &[(&str, &str)]) -> OffsetsConfig {
    let mut c = OffsetsConfig::new(group);
    for (k, v) in [
        ("enable.auto.commit", "false"),
        ("default.api.timeout.ms", "10000"),
    ]
    .iter()
    .chain(extra)
    {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// The milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The leader of `topic`-`partition`, refreshing the metadata until it has one (at most 10 s).
/// A refresh that fails on a connection a test has just bounced is tried again meanwhile.
pub async fn leader(pool: &Pool, topic: &str, partition: i32) -> i32 {
    let mut last_error = None;
    for _ in 0..100 {
        match pool
            .refresh_metadata(TopicScope::topics([topic.to_owned()]))
            .await
        {
            Ok(m) => {
                if let Some(id) = m.partition(topic, partition).and_then(|p| p.leader) {
                    return id;
                }
            }
            Err(e) if e.is_retriable() => last_error = Some(e),
            Err(e) => panic!("metadata: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{topic}-{partition} has no leader (last error: {last_error:?})");
}

/// Produces one batch of `n` records (timestamps `timestamp`, `timestamp + 1`, ...) to
/// `topic`-`partition` with acks=all; returns the batch's base offset.
pub async fn produce(pool: &Pool, topic: &str, partition: i32, n: usize, timestamp: i64) -> i64 {
    let timestamps: Vec<i64> = (0..n as i64).map(|i| timestamp + i).collect();
    produce_at(pool, topic, partition, &timestamps).await
}

/// Produces one batch of a record per timestamp of `timestamps` (`value-0`, `value-1`, ...) to
/// `topic`-`partition` with acks=all; returns the batch's base offset. On Apache Kafka, give
/// timestamps of the last few days at most: it deletes a segment whose records are all older
/// than `retention.ms` (7 days) at its next retention check, even the active one.
pub async fn produce_at(pool: &Pool, topic: &str, partition: i32, timestamps: &[i64]) -> i64 {
    let mut b = RecordBatchBuilder::new(0);
    for (i, &timestamp) in timestamps.iter().enumerate() {
        let v = format!("value-{i}");
        b.record(timestamp, None, Some(v.as_bytes()));
    }
    produce_batch(pool, topic, partition, b.build().expect("a batch")).await
}

/// Sends the encoded record batch `records` to the leader of `topic`-`partition` with
/// acks=all; returns the batch's base offset. A new topic's leader on Apache Kafka names
/// itself leader in its metadata a moment before it takes records as one: until then
/// NOT_LEADER_OR_FOLLOWER and LEADER_NOT_AVAILABLE, which append nothing, are asked again (for
/// at most 10 s). Panics on any other error.
pub async fn produce_batch(pool: &Pool, topic: &str, partition: i32, records: Bytes) -> i64 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let id = leader(pool, topic, partition).await;
        let answer = pool
            .send(BrokerTarget::Broker(id), &request)
            .await
            .expect("produce");
        let p = &answer.responses[0].partition_responses[0];
        if p.error_code == 0 {
            return p.base_offset;
        }
        let not_yet = [code::NOT_LEADER_OR_FOLLOWER, code::LEADER_NOT_AVAILABLE];
        assert!(
            not_yet.contains(&p.error_code) && tokio::time::Instant::now() < deadline,
            "produce to {topic}-{partition}: {} ({p:?})",
            error_name(p.error_code)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces `records` records spread evenly over `topic`'s partitions `0..partitions`, in
/// batches of `batch`: record `k` of a partition has the value `value-{k % batch}`, and a
/// timestamp of now (Apache Kafka deletes records older than `retention.ms` at its next
/// retention check). Returns how many records each partition got.
pub async fn produce_spread(
    pool: &Pool,
    topic: &str,
    partitions: i32,
    records: i64,
    batch: i64,
) -> Vec<i64> {
    let n = i64::from(partitions);
    let per_partition: Vec<i64> = (0..n)
        .map(|p| records / n + i64::from(p < records % n))
        .collect();
    for (p, &count) in per_partition.iter().enumerate() {
        let mut produced = 0;
        while produced < count {
            let size = batch.min(count - produced);
            let base = produce(pool, topic, p as i32, size as usize, now_ms()).await;
            assert_eq!(
                base, produced,
                "{topic}-{p}: batches must start at multiples of {batch}"
            );
            produced += size;
        }
    }
    per_partition
}

/// The high watermark of `topic`-`partition` as a Fetch answer reports it (ground truth on
/// Tansu, whose ListOffsets latest is the last batch's base offset + 1; see DESIGN.md, "The
/// brokers").
pub async fn fetch_high_watermark(pool: &Pool, topic: &str, partition: i32) -> i64 {
    let id = leader(pool, topic, partition).await;
    // The topic id from a Metadata answer of our own: Fetch v13+ names topics by id.
    let meta = pool
        .send(
            BrokerTarget::Broker(id),
            &crate::pool::metadata_request(&[topic]),
        )
        .await
        .expect("metadata");
    let topic_id = meta.topics[0].topic_id;
    let conn = pool
        .connection(BrokerTarget::Broker(id))
        .await
        .expect("a connection");
    let t = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_topic_id(topic_id)
        .with_partitions(vec![
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1024),
        ]);
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1024)
        .with_topics(vec![t]);
    let answer = conn.send(&req).await.expect("fetch");
    assert_eq!(
        answer.error_code, 0,
        "fetch {topic}-{partition}: {answer:?}"
    );
    let p = answer
        .responses
        .first()
        .and_then(|r| r.partitions.first())
        .unwrap_or_else(|| panic!("fetch {topic}-{partition}: no partition in {answer:?}"));
    assert_eq!(p.error_code, 0, "fetch {topic}-{partition}: {p:?}");
    p.high_watermark
}

/// `offsets` as a commit map: `(topic, partition, next offset, leader epoch, metadata)`.
pub fn commit_map(
    offsets: &[(&str, i32, i64, Option<i32>, &str)],
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    offsets
        .iter()
        .map(|&(t, p, offset, leader_epoch, metadata)| {
            (
                TopicPartition::new(t, p),
                OffsetAndMetadata {
                    offset,
                    leader_epoch,
                    metadata: metadata.to_owned(),
                },
            )
        })
        .collect()
}

/// The partitions of `offsets`.
pub fn keys<V>(offsets: &BTreeMap<TopicPartition, V>) -> BTreeSet<TopicPartition> {
    offsets.keys().cloned().collect()
}
