//! `kcon::Consumer`'s fetching on Apache Kafka 4.4 (`Kafka::single()`): 100,000 records over 6
//! partitions assigned by the application, in order per partition, none missing and nothing
//! more, half of them from a sought offset and half reset by `auto.offset.reset`, through small
//! answers and a small buffer (many rounds of fetches, backpressure on the way). Everything
//! else is at the defaults.

use std::time::{Duration, Instant};

use kcon::{Consumer, TopicPartition};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::produce_spread;
use kcon_tests::pool::config;

const PARTITIONS: i32 = 6;
const RECORDS: i64 = 100_000;
const BATCH: i64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_reads_every_record_in_order_per_partition() {
    let bootstrap = Kafka::single().bootstrap();
    let pool = Pool::new(config(bootstrap)).unwrap();
    let topic = unique_name("consumer-fetch");
    create_topics(&pool, &[(&topic, PARTITIONS)]).await;
    let per_partition = produce_spread(&pool, &topic, PARTITIONS, RECORDS, BATCH).await;

    let mut consumer = Consumer::builder()
        .bootstrap_servers(bootstrap)
        // Small answers and a small budget: many rounds, and backpressure on the way.
        .set("max.partition.fetch.bytes", "65536")
        .set("fetch.max.bytes", "262144")
        .set("fetch.buffer.max.bytes", "524288")
        .set("auto.offset.reset", "earliest")
        .build()
        .unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    consumer.assign(partitions.iter().cloned()).unwrap();
    // Half start from an offset sought before the first receiving call, half reset under the
    // policy (no group, so no committed offset).
    for tp in partitions.iter().filter(|tp| tp.partition % 2 == 0) {
        consumer.seek(tp.clone(), 0).unwrap();
    }
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut received = 0;
    let mut batches = 0;
    let started = Instant::now();
    while received < RECORDS {
        let records = tokio::time::timeout(Duration::from_secs(30), consumer.recv_batch())
            .await
            .unwrap_or_else(|_| panic!("stalled after {received} records"))
            .unwrap_or_else(|e| panic!("unexpected {e} ({:?})", e.kind()));
        batches += 1;
        let tp = TopicPartition::new(&*records[0].topic, records[0].partition);
        let expected = &mut next[tp.partition as usize];
        // A partition reset by the policy starts at 0, the log's start: its first record is 0.
        for rec in &records {
            assert_eq!((&*rec.topic, rec.partition), (topic.as_str(), tp.partition));
            assert_eq!(rec.offset, *expected, "{tp}: out of order or missing");
            let value = format!("value-{}", rec.offset % BATCH);
            assert_eq!(rec.value.as_deref(), Some(value.as_bytes()));
            *expected += 1;
            received += 1;
        }
        assert_eq!(consumer.position(&tp), Some(*expected), "{tp}");
    }
    assert_eq!(next, per_partition);
    assert!(batches > PARTITIONS, "too few rounds to prove pipelining");
    eprintln!(
        "{RECORDS} records in {batches} batches, {:?}",
        started.elapsed()
    );
    // Nothing more comes: no record twice, none past the end (the default fetch.max.wait.ms,
    // 500 ms, lets the Fetches in flight answer meanwhile).
    if let Ok(more) = tokio::time::timeout(Duration::from_secs(1), consumer.recv_batch()).await {
        panic!("nothing more expected, got {more:?}");
    }
    consumer
        .close_within(Duration::from_secs(5))
        .await
        .expect("closed");
}
