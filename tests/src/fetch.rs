//! What kcon-fetch's real-broker suites share (`tests/fetch_kafka.rs`, `tests/fetch_tansu.rs`):
//! a topic with records spread over its partitions and the plan to read it from the start, and
//! the check of one partition's part of a Fetch answer.

use std::collections::BTreeMap;

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::records::{Batch, DecodeOptions, RecordBatches};
use kcon_core::TopicPartition;
use kcon_fetch::PartitionFetch;
use kcon_fetch::transactions::committed_records;
use kcon_pool::{BrokerTarget, Connection, Pool, TopicScope};

use crate::offsets::produce_spread;

/// Partitions of the topic read.
pub const PARTITIONS: i32 = 6;
/// Records written to it, spread over the partitions.
pub const RECORDS: i64 = 100_000;
/// Records per produced batch: record `k` of a partition has value `value-{k % BATCH}`.
pub const BATCH: i64 = 1_000;

/// A topic written for a fetch test, and how to read it.
pub struct SpreadTopic {
    /// Its name.
    pub topic: String,
    /// Records written per partition.
    pub per_partition: Vec<i64>,
    /// A connection to the leader of partition 0 (every partition's, on one node).
    pub conn: Connection,
    /// The Fetch version spoken on it (13 or later: topics by id).
    pub version: i16,
    /// Every partition from offset 0, 64 KiB at a time: many rounds of fetches, each resuming
    /// where the last stopped.
    pub wanted: BTreeMap<TopicPartition, PartitionFetch>,
}

/// Writes [`RECORDS`] in batches of [`BATCH`] to `topic`, created with [`PARTITIONS`]
/// partitions, and plans reading it; `broker` names the broker in a failure.
pub async fn spread_topic(pool: &Pool, topic: String, broker: &str) -> SpreadTopic {
    let per_partition = produce_spread(pool, &topic, PARTITIONS, RECORDS, BATCH).await;
    let metadata = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .expect("the topic's metadata");
    let topic_id = metadata.topic(&topic).expect("the topic").id;
    let leader = metadata.leader(&topic, 0).expect("a leader").id;
    let conn = pool
        .connection(BrokerTarget::Broker(leader))
        .await
        .expect("a connection to the leader");
    let version = conn.version(ApiKey::Fetch).expect("Fetch spoken");
    assert!(
        version >= 13,
        "{broker} speaks Fetch v{version}: expected topic ids"
    );
    let wanted = (0..PARTITIONS)
        .map(|p| {
            (
                TopicPartition::new(topic.as_str(), p),
                PartitionFetch::new(topic_id, 0, 64 << 10),
            )
        })
        .collect();
    SpreadTopic {
        topic,
        per_partition,
        conn,
        version,
        wanted,
    }
}

/// Reads `tp`'s records of a Fetch answer (`bytes`, with its high watermark) from `entry`'s
/// position: each must be the next, `expected`, with its value; moves `expected` and the
/// position past them. Returns how many were read.
pub fn read_partition(
    tp: &TopicPartition,
    bytes: Bytes,
    high_watermark: i64,
    entry: &mut PartitionFetch,
    expected: &mut i64,
) -> i64 {
    let batches: Vec<Batch> = RecordBatches::new(bytes, DecodeOptions::default())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{tp}: {e}"));
    let committed = committed_records(&batches, entry.fetch_offset, None, high_watermark)
        .unwrap_or_else(|e| panic!("{tp}: {e}"));
    let mut read = 0;
    for r in &committed.records {
        assert_eq!(r.offset(), *expected, "{tp}: out of order or missing");
        let value = format!("value-{}", r.offset() % BATCH);
        assert_eq!(r.value(), Some(value.as_bytes()), "{tp} at {}", r.offset());
        *expected += 1;
        read += 1;
    }
    assert_eq!(committed.position, *expected, "{tp}");
    entry.fetch_offset = committed.position;
    read
}
