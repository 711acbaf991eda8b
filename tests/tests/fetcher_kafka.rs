//! The `Fetcher` on Apache Kafka 4.4 (`Kafka::single()`): 100,000 records over 6 partitions,
//! in order per partition, none missing, half of them from a committed offset and half reset
//! by `auto.offset.reset`, through small answers and a small buffer (many rounds of fetches,
//! backpressure on the way). Everything else is at the defaults.

use std::time::{Duration, Instant};

use kcon_core::TopicPartition;
use kcon_fetch::{FetchConfig, FetchEvent, Fetcher, StartPosition};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::produce_spread;
use kcon_tests::pool::config;

const PARTITIONS: i32 = 6;
const RECORDS: i64 = 100_000;
const BATCH: i64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetcher_reads_every_record_in_order_per_partition() {
    let pool = Pool::new(config(Kafka::single().bootstrap())).unwrap();
    let topic = unique_name("fetcher");
    create_topics(&pool, &[(&topic, PARTITIONS)]).await;
    let per_partition = produce_spread(&pool, &topic, PARTITIONS, RECORDS, BATCH).await;

    let mut c = FetchConfig::default();
    // Small answers and a small budget: many rounds, and backpressure on the way.
    c.set("max.partition.fetch.bytes", "65536").unwrap();
    c.set("fetch.max.bytes", "262144").unwrap();
    c.set("fetch.buffer.max.bytes", "524288").unwrap();
    c.set("auto.offset.reset", "earliest").unwrap();
    let mut fetcher = Fetcher::start(pool.clone(), c).unwrap();
    // Half start from a committed offset, half reset under the policy.
    fetcher.assign((0..PARTITIONS).map(|p| {
        let start = if p % 2 == 0 {
            StartPosition::Committed {
                offset: 0,
                leader_epoch: None,
            }
        } else {
            StartPosition::Reset
        };
        (TopicPartition::new(topic.as_str(), p), start)
    }));
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut received = 0;
    let mut batches = 0;
    let started = Instant::now();
    while received < RECORDS {
        let event = tokio::time::timeout(Duration::from_secs(30), fetcher.next())
            .await
            .unwrap_or_else(|_| panic!("stalled after {received} records"))
            .expect("the fetcher ended");
        match event {
            FetchEvent::Records(r) => {
                batches += 1;
                let expected = &mut next[r.partition.partition as usize];
                for rec in &r.records {
                    assert_eq!(
                        rec.offset, *expected,
                        "{}: out of order or missing",
                        r.partition
                    );
                    assert_eq!(&*rec.topic, topic.as_str());
                    let value = format!("value-{}", rec.offset % BATCH);
                    assert_eq!(rec.value.as_deref(), Some(value.as_bytes()));
                    *expected += 1;
                    received += 1;
                }
                assert_eq!(r.next_offset, *expected);
            }
            FetchEvent::Reset { offset, .. } => assert_eq!(offset, 0),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next, per_partition);
    assert!(batches > PARTITIONS, "too few rounds to prove pipelining");
    eprintln!(
        "{RECORDS} records in {batches} batches, {:?}",
        started.elapsed()
    );
    let left = fetcher.close(Duration::from_secs(5)).await;
    assert!(
        left.iter()
            .all(|e| !matches!(e, FetchEvent::Records(r) if !r.records.is_empty())),
        "{left:?}"
    );
}
