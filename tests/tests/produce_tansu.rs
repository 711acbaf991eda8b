//! What only Tansu shows of `kcon_produce::Producer` (everything else runs on Apache Kafka,
//! `produce_kafka.rs`): an idempotent batch retried after its answer was lost is answered
//! DUPLICATE_SEQUENCE_NUMBER, and the producer takes that as delivered, written once, its
//! offsets unknown. Apache Kafka answers such a retry with the offsets of the first write
//! instead, and no longer answers DUPLICATE_SEQUENCE_NUMBER at all.

use std::time::Duration;

use kcon::{Consumer, Record, TopicPartition};
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{Delivered, Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder, expect_no_record, recv_n};
use kcon_tests::group::create_topics;
use kcon_tests::pool::config;
use kcon_tests::produce::tansu_losing_answers;
use tokio::time::timeout;

/// How long the test waits for all its deliveries.
const DELIVERED_WITHIN: Duration = Duration::from_secs(60);

/// Which send a record read back was: its value's number.
fn index(r: &Record) -> usize {
    let v = std::str::from_utf8(r.value.as_deref().expect("a value")).unwrap();
    v["value-".len()..].parse().unwrap()
}

/// 30 records to partition 0 of a fresh topic, in batches of ten, through a proxy that loses
/// the answer to the first Produce request: the broker recognised the retried batch by its
/// producer id and sequence and answered DUPLICATE_SEQUENCE_NUMBER: delivered, its offsets not
/// repeated, and every record written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idempotence_a_batch_answered_duplicate_sequence_number_is_delivered_once() {
    let (tansu, proxy) = tansu_losing_answers(ApiKey::Produce, 1).await;
    let topic = unique_name("produce-lost");
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 1)]).await;
    let producer = Producer::builder()
        .bootstrap_servers(&proxy.bootstrap())
        .set("enable.idempotence", "true")
        .set("batch.num.messages", "10")
        .build()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..30 {
        let record = ProducerRecord::new(topic.clone(), format!("value-{i}")).with_partition(0);
        pending.push(producer.send(record).await.unwrap());
    }
    let mut deliveries: Vec<Delivered> = Vec::new();
    for (i, d) in pending.into_iter().enumerate() {
        match timeout(DELIVERED_WITHIN, d).await {
            Ok(Ok(d)) => deliveries.push(d),
            Ok(Err(e)) => panic!("record {i} failed: {e} ({e:?})"),
            Err(_) => panic!("record {i} not delivered within {DELIVERED_WITHIN:?}"),
        }
    }
    assert_eq!(proxy.dropped(), 1, "the proxy lost one answer");
    let retries = producer.metrics().retries;
    producer.close().await.expect("the producer closes");
    assert!(retries >= 1, "{retries}");

    // The first batch: delivered as a duplicate, its offsets unknown.
    let k = deliveries.iter().take_while(|d| d.offset.is_none()).count();
    assert!((1..=10).contains(&k), "{deliveries:?}");
    for (i, d) in deliveries.iter().enumerate().skip(k) {
        assert_eq!(d.offset, Some(i as i64), "{d:?}");
    }
    // Read straight from the broker: every record once.
    let mut consumer: Consumer = builder(&tansu.bootstrap()).build().unwrap();
    consumer.assign([TopicPartition::new(&topic, 0)]).unwrap();
    let records = recv_n(&mut consumer, 30, Duration::from_secs(30)).await;
    expect_no_record(&mut consumer, Duration::from_millis(500)).await;
    consumer.close().await.unwrap();
    let order: Vec<usize> = records.iter().map(index).collect();
    assert_eq!(order, (0..30).collect::<Vec<_>>());
}
