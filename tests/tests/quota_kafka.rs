//! Client quotas on Apache Kafka 4.4 (`Kafka::single()`): a consumer whose `client.id` has a
//! `consumer_byte_rate` quota is throttled (KIP-219). The broker answers each Fetch at once with
//! a throttle time and reads nothing more from the connection for that long; the consumer holds
//! its next request back as long (the wait itself is shown exactly against a scripted broker,
//! kcon-pool's `an_answer_with_a_throttle_time_holds_the_next_request_back_for_that_long`),
//! counts the throttled answers in its metrics, and reads every record in order. The quota
//! names only this test's `client.id`, so no other test on the node is slowed.

use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder_at_defaults, recv_n};
use kcon_tests::kafka::{Kafka, NewTopic, create};

/// 4 MiB in 1 KiB records, on one partition, at a quota of 256 KiB a second. The broker measures
/// a rate over its quota windows, at least ten seconds (`quota.window.num` 11 of
/// `quota.window.size.seconds` 1) for a client it has just met, so the first 2.5 MiB go
/// unthrottled and the rest come only as the window moves on, after throttled answers (which
/// Kafka sends without records).
const RECORDS: usize = 4_096;
const RECORD_BYTES: usize = 1_024;
const QUOTA_BYTES_PER_SECOND: usize = 262_144;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_over_its_byte_rate_quota_is_throttled_and_reads_every_record() {
    let kafka = Kafka::single();
    let client_id = unique_name("throttled");
    // AlterClientQuotas through Kafka's own tool; the node applies it before answering.
    let out = kafka.tool(
        "org.apache.kafka.tools.ConfigCommand",
        &[
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            &client_id,
            "--add-config",
            &format!("consumer_byte_rate={QUOTA_BYTES_PER_SECOND}"),
        ],
    );
    assert!(out.contains("Completed updating config"), "{out}");

    let pool = Pool::new(kcon_tests::pool::config(kafka.bootstrap())).unwrap();
    let topic = unique_name("quota");
    create(&pool, &[NewTopic::new(&topic, 1)]).await;
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .build()
        .unwrap();
    let mut deliveries = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let mut value = format!("{i:06}-").into_bytes();
        value.resize(RECORD_BYTES, b'x');
        deliveries.push(
            producer
                .send(ProducerRecord::new(&topic, value).with_partition(0))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await.expect("the producer closes");

    let mut consumer = builder_at_defaults(kafka.bootstrap())
        .set("client.id", &client_id)
        .build()
        .unwrap();
    let tp = TopicPartition::new(&topic, 0);
    consumer.assign([tp.clone()]).unwrap();
    let started = Instant::now();
    let records = recv_n(&mut consumer, RECORDS, Duration::from_secs(120)).await;
    let took = started.elapsed();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "in order, none missing");
        assert!(
            r.value
                .as_deref()
                .unwrap()
                .starts_with(format!("{i:06}-").as_bytes())
        );
    }
    let throttled = consumer.metrics().throttled;
    eprintln!("{RECORDS} records of {RECORD_BYTES} B in {took:?}, throttled: {throttled:?}");
    assert!(
        throttled.answers > 0 && throttled.total > Duration::ZERO,
        "4 MiB at a quota of 256 KiB/s: some answers must have throttled the consumer: {throttled:?}"
    );
    assert!(throttled.max <= throttled.total);
    consumer.close().await.unwrap();
}
