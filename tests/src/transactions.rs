//! What the transactional producer's suites share (`tests/transactions_kafka.rs`,
//! `tests/transactions_tansu.rs`, `tests/exactly_once_kafka.rs`): numbered values, sending
//! them to partition 0 with every delivery awaited, a committed, an aborted and a committed
//! transaction in a row, and a partition's log read raw, batch by batch.

use std::ops::Range;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::{FetchRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{Batch, DecodeOptions, RecordBatches};
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{Producer, ProducerRecord};

/// How long a transaction call may take.
pub const CALL: Duration = Duration::from_secs(30);

/// `prefix-i` for each `i` of `range`.
pub fn values(prefix: &str, range: Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Sends `values` to `topic`-0 and waits for every delivery.
pub async fn send_all(producer: &Producer, topic: &str, values: &[String]) {
    let mut deliveries = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_partition(0);
        deliveries.push(producer.send(record).await.expect("a record taken"));
    }
    for d in deliveries {
        d.await.expect("a record delivered");
    }
}

/// Writes `c-0..4` committed, `a-0..4` aborted and `d-0..4` committed to `topic`-0 through
/// `producer` (initialized here) and closes it. Returns every value in the order written and
/// the committed ones.
pub async fn commit_abort_commit(producer: Producer, topic: &str) -> (Vec<String>, Vec<String>) {
    producer.init_transactions(CALL).await.expect("an id");
    for (prefix, commit) in [("c", true), ("a", false), ("d", true)] {
        producer
            .begin_transaction(CALL)
            .await
            .expect("a transaction");
        send_all(&producer, topic, &values(prefix, 0..4)).await;
        if commit {
            producer.commit_transaction(CALL).await.expect("a commit");
        } else {
            producer.abort_transaction(CALL).await.expect("an abort");
        }
    }
    producer.close().await.expect("the producer closes");
    let all = ["c", "a", "d"]
        .iter()
        .flat_map(|p| values(p, 0..4))
        .collect();
    let committed = ["c", "d"].iter().flat_map(|p| values(p, 0..4)).collect();
    (all, committed)
}

/// Every batch of `topic`-0 up to its high watermark, in log order, as its leader keeps them:
/// read raw (read_uncommitted), transaction markers included, each batch with its producer id
/// and epoch.
pub async fn log_batches(pool: &Pool, topic: &str) -> Vec<Batch> {
    let end = crate::offsets::fetch_high_watermark(pool, topic, 0).await;
    let meta = pool
        .send(BrokerTarget::Any, &crate::pool::metadata_request(&[topic]))
        .await
        .expect("metadata");
    let topic_id = meta.topics[0].topic_id;
    let leader = meta.topics[0].partitions[0].leader_id.0;
    let mut batches = Vec::new();
    let mut offset = 0;
    while offset < end {
        let request = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_max_bytes(4 << 20)
            .with_isolation_level(0)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(4 << 20),
                    ]),
            ]);
        let answer = pool
            .send(BrokerTarget::Broker(leader), &request)
            .await
            .expect("fetch");
        let p = &answer.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        let bytes = p.records.clone().unwrap_or_default();
        let before = batches.len();
        for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
            let batch = batch.expect("a batch that decodes");
            offset = batch.next_offset();
            batches.push(batch);
        }
        assert!(
            batches.len() > before,
            "no batch at offset {offset} of {topic} (end {end})"
        );
    }
    batches
}
