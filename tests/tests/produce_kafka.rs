//! `kcon_produce::Producer` on Apache Kafka 4.4 (`Kafka::single()`, and `Kafka::noauto()` for a
//! broker that creates no topic): keyed and unkeyed records with every codec arrive once, in
//! per-partition send order, at the offsets their deliveries reported; flush sends what
//! lingers; a topic that does not exist fails with the broker's error by name at
//! `delivery.timeout.ms`; and a batch whose answer is lost (a proxy in front of the broker
//! closes the connection instead of passing it on) is retried, written twice without
//! idempotence and once with it, its delivery then reporting the offsets of the first write.
//! Hooks are told every record sent (and may add a header to it) and every outcome, written or
//! refused.
//!
//! Producers run at the client's defaults but for the setting a test is about. Every topic is
//! `unique_name`'s: the broker is shared by the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon::{Consumer, Record};
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::Pool;
use kcon_produce::{
    Delivered, Delivery, ErrorKind, ProduceError, Producer, ProducerBuilder, ProducerHooks,
    ProducerRecord, partition_for_key,
};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder_at_defaults, expect_no_record, partitions, recv_n};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::config;
use kcon_tests::produce::AnswerDropper;
use tokio::time::timeout;

const PARTITIONS: i32 = 3;

/// How long a test waits for all its deliveries.
const DELIVERED_WITHIN: Duration = Duration::from_secs(60);

/// A producer for `bootstrap` at the client's defaults.
fn producer(bootstrap: &str) -> ProducerBuilder {
    Producer::builder().bootstrap_servers(bootstrap)
}

async fn create(topic: &str, partitions: i32) {
    let pool = Pool::new(config(Kafka::single().bootstrap())).unwrap();
    create_topics(&pool, &[(topic, partitions)]).await;
}

/// Awaits every delivery, in send order.
async fn delivered(deliveries: Vec<Delivery>) -> Vec<Delivered> {
    let mut out = Vec::with_capacity(deliveries.len());
    for (i, d) in deliveries.into_iter().enumerate() {
        match timeout(DELIVERED_WITHIN, d).await {
            Ok(Ok(d)) => out.push(d),
            Ok(Err(e)) => panic!("record {i} failed: {e} ({e:?})"),
            Err(_) => panic!("record {i} not delivered within {DELIVERED_WITHIN:?}"),
        }
    }
    out
}

/// Every record of `topic`'s `n` partitions, read from the start: `count` of them, and then
/// nothing more for half a second.
async fn read_back(topic: &str, n: i32, count: usize) -> Vec<Record> {
    let mut consumer: Consumer = builder_at_defaults(Kafka::single().bootstrap())
        .build()
        .unwrap();
    consumer.assign(partitions(topic, n)).unwrap();
    let records = recv_n(&mut consumer, count, Duration::from_secs(30)).await;
    expect_no_record(&mut consumer, Duration::from_millis(500)).await;
    consumer.close().await.unwrap();
    records
}

/// The value of record `i`.
fn value(i: usize) -> String {
    format!("value-{i}")
}

/// Which send a record read back was: its value's number.
fn index(r: &Record) -> usize {
    let v = std::str::from_utf8(r.value.as_deref().expect("a value")).unwrap();
    v["value-".len()..].parse().unwrap()
}

/// Checks that `records` (read back) hold each sent record exactly once, in each partition in
/// send order, at the offset its delivery reported, with its key, value and headers.
fn assert_arrived_once_in_order(
    sent: &[ProducerRecord],
    deliveries: &[Delivered],
    records: &[Record],
) {
    assert_eq!(records.len(), sent.len());
    let mut seen = BTreeSet::new();
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in records {
        let i = index(r);
        assert!(seen.insert(i), "record {i} arrived twice");
        let d = &deliveries[i];
        assert_eq!(
            (r.partition, Some(r.offset)),
            (d.partition, d.offset),
            "record {i}: read back where its delivery said"
        );
        assert_eq!(r.key, sent[i].key, "record {i}");
        assert_eq!(r.headers, sent[i].headers, "record {i}");
        assert_eq!(r.timestamp, d.timestamp, "record {i}");
        by_partition.entry(r.partition).or_default().push(i);
    }
    for (p, order) in by_partition {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of send order: {order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_and_unkeyed_records_arrive_once_in_order_with_every_codec() {
    let b = Kafka::single().bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_name(&format!("produce-{codec}"));
        create(&topic, PARTITIONS).await;
        // Small batches, so that each partition gets several and waits for one to be
        // acknowledged before sending the next.
        let producer = producer(b)
            .set("compression.type", codec)
            .set("batch.size", "4000")
            .set("batch.num.messages", "25")
            .build()
            .unwrap();
        let mut sent = Vec::new();
        let mut deliveries = Vec::new();
        for i in 0..400 {
            let mut record = ProducerRecord::new(topic.clone(), value(i))
                .with_header("n", Some(i.to_string()))
                .with_null_header("empty");
            if i % 2 == 0 {
                record = record.with_key(format!("key-{}", i % 37));
            }
            sent.push(record.clone());
            deliveries.push(producer.send(record).await.unwrap());
        }
        let deliveries = delivered(deliveries).await;
        let mut unkeyed = 0;
        for (i, d) in deliveries.iter().enumerate() {
            assert_eq!(*d.topic, *topic);
            let wanted = match &sent[i].key {
                // Where the Java client puts the key.
                Some(k) => partition_for_key(k, PARTITIONS),
                // Null keys take the partitions in turn.
                None => {
                    unkeyed += 1;
                    (unkeyed - 1) % PARTITIONS
                }
            };
            assert_eq!(d.partition, wanted, "{codec}: record {i}");
            assert!(d.offset.is_some(), "{codec}: record {i}: {d:?}");
        }
        let stats = producer.metrics();
        assert_eq!(stats.records_delivered, 400, "{codec}: {stats:?}");
        assert!(stats.batches_delivered >= 16, "{codec}: {stats:?}");
        producer.close().await.expect("the producer closes");

        let records = read_back(&topic, PARTITIONS, sent.len()).await;
        assert_arrived_once_in_order(&sent, &deliveries, &records);
        // Offsets per partition are dense from 0: nothing else was written.
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for r in &records {
            per_partition.entry(r.partition).or_default().push(r.offset);
        }
        for (p, offsets) in per_partition {
            assert_eq!(
                offsets,
                (0..offsets.len() as i64).collect::<Vec<_>>(),
                "{codec}-{p}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_sends_what_lingers_and_explicit_partitions_are_kept() {
    let b = Kafka::single().bootstrap();
    let topic = unique_name("produce-flush");
    create(&topic, PARTITIONS).await;
    // A linger far longer than the test: only flush can send these.
    let producer = producer(b)
        .set("linger.ms", "600000")
        .set("delivery.timeout.ms", "700000")
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new(topic.clone(), value(i)).with_partition(2);
        deliveries.push(producer.send(record).await.unwrap());
    }
    timeout(Duration::from_secs(30), producer.flush())
        .await
        .expect("flush returns once the records are acknowledged");
    let deliveries = delivered(deliveries).await;
    let offsets: Vec<(i32, Option<i64>)> =
        deliveries.iter().map(|d| (d.partition, d.offset)).collect();
    assert_eq!(offsets, (0..10).map(|o| (2, Some(o))).collect::<Vec<_>>());
    // One batch: the ten lingered together.
    assert_eq!(producer.metrics().batches_delivered, 1);

    // A partition the topic does not have fails that record only.
    let bad = producer
        .send(ProducerRecord::new(topic.clone(), "x").with_partition(PARTITIONS))
        .await
        .unwrap();
    producer.flush().await;
    let e = bad.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRecord, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");

    // A clone closes them all: the producer is read from again below.
    producer.clone().close().await.expect("the producer closes");
    let e = producer
        .send(ProducerRecord::new(topic.clone(), "late"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
    let records = read_back(&topic, PARTITIONS, 10).await;
    assert!(records.iter().all(|r| r.partition == 2), "{records:?}");
}

/// `queue.buffering.max.messages` bounds the records sent and not yet acknowledged by count,
/// whatever `buffer.memory` holds: with three queued (held back by a long `linger.ms`), a
/// fourth `send` waits until they are written, and a `send_all` of more than the count is
/// refused at once, naming both properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_waits_while_queue_buffering_max_messages_records_are_unacknowledged() {
    let b = Kafka::single().bootstrap();
    let topic = unique_name("produce-count");
    create(&topic, PARTITIONS).await;
    let producer = producer(b)
        .set("queue.buffering.max.messages", "3")
        .set("linger.ms", "60000")
        .build()
        .unwrap();
    // Each record takes a third of buffer.memory's room, however small.
    let record = |i: usize| ProducerRecord::new(topic.clone(), value(i));
    assert_eq!(producer.room(&record(0)), 33_554_432 / 3);
    let mut deliveries = Vec::new();
    for i in 0..3 {
        deliveries.push(
            timeout(Duration::from_secs(5), producer.send(record(i)))
                .await
                .expect("room for three")
                .unwrap(),
        );
    }
    let fourth = producer.send(record(3));
    tokio::pin!(fourth);
    assert!(
        timeout(Duration::from_millis(500), &mut fourth)
            .await
            .is_err(),
        "a fourth record must wait while three are unacknowledged"
    );
    let refused = producer
        .send_all((10..14).map(record))
        .await
        .expect_err("four records cannot be queued at once");
    assert_eq!(refused.kind(), ErrorKind::InvalidRecord, "{refused}");
    for name in ["buffer.memory", "queue.buffering.max.messages"] {
        assert!(refused.to_string().contains(name), "{refused}");
    }
    // The three written (flush sends without waiting for linger.ms), the fourth goes in.
    let flushing = producer.flush();
    let (fourth, ()) = timeout(DELIVERED_WITHIN, async { tokio::join!(fourth, flushing) })
        .await
        .expect("the flush and the fourth send");
    deliveries.push(fourth.unwrap());
    producer.flush().await;
    for d in deliveries {
        timeout(DELIVERED_WITHIN, d)
            .await
            .expect("delivered")
            .unwrap();
    }
    assert_eq!(read_back(&topic, PARTITIONS, 4).await.len(), 4);
}

/// One `send_all` call of 10,000 records, at the defaults: the producer's task hands them to
/// its machine a few thousand at a time, and every one arrives once, in each partition in the
/// order given, at the offset its delivery reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_all_of_ten_thousand_records_arrives_once_in_order() {
    let b = Kafka::single().bootstrap();
    let topic = unique_name("produce-all");
    create(&topic, PARTITIONS).await;
    let producer = producer(b).build().unwrap();
    let sent: Vec<ProducerRecord> = (0..10_000)
        .map(|i| ProducerRecord::new(topic.clone(), value(i)))
        .collect();
    let deliveries = producer.send_all(sent.clone()).await.unwrap();
    let deliveries: Vec<Delivered> = timeout(DELIVERED_WITHIN, deliveries)
        .await
        .expect("the records done")
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.unwrap_or_else(|e| panic!("record {i} failed: {e} ({e:?})")))
        .collect();
    let records = read_back(&topic, PARTITIONS, sent.len()).await;
    assert_arrived_once_in_order(&sent, &deliveries, &records);
    producer.close().await.unwrap();
}

/// Records sent together with `send_all` arrive once, in per-partition order, at the offsets
/// their results report, in the order given; a record `send` would refuse fails in its place
/// while the others are written; records that `buffer.memory` cannot hold at once are refused
/// as a call, naming it; a closed producer refuses the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_sent_together_arrive_once_in_order_and_a_refused_one_fails_in_its_place() {
    let b = Kafka::single().bootstrap();
    let topic = unique_name("produce-all");
    create(&topic, PARTITIONS).await;
    let producer = producer(b)
        .set("batch.size", "4000")
        .set("max.request.size", "20000")
        .set("buffer.memory", "100000")
        .build()
        .unwrap();
    let record = |i: usize| {
        let mut r =
            ProducerRecord::new(topic.clone(), value(i)).with_header("n", Some(i.to_string()));
        if i.is_multiple_of(3) {
            r = r.with_key(format!("key-{}", i % 11));
        }
        r
    };
    // Three calls of 100 records, the second with a record too large for max.request.size
    // at its place 50.
    let mut sent = Vec::new();
    let mut results = Vec::new();
    for call in 0..3 {
        let mut records: Vec<ProducerRecord> = (0..100).map(|j| record(call * 100 + j)).collect();
        if call == 1 {
            records[50] = ProducerRecord::new(topic.clone(), vec![b'x'; 30_000]);
        }
        sent.extend(records.iter().cloned());
        let deliveries = producer.send_all(records).await.unwrap();
        assert_eq!(deliveries.len(), 100);
        results.extend(
            timeout(DELIVERED_WITHIN, deliveries)
                .await
                .expect("the records done"),
        );
    }
    let mut written = BTreeMap::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(d) => {
                assert_eq!(*d.topic, *topic);
                if let Some(k) = &sent[i].key {
                    assert_eq!(d.partition, partition_for_key(k, PARTITIONS), "record {i}");
                }
                written.insert(i, d);
            }
            Err(e) => {
                assert_eq!(i, 150, "only the large record fails: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidRecord, "{e}");
                assert!(e.to_string().contains("max.request.size"), "{e}");
            }
        }
    }
    assert_eq!(written.len(), 299);
    // Read back: each written record once, where its result said, in per-partition order.
    let records = read_back(&topic, PARTITIONS, written.len()).await;
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &records {
        let i = index(r);
        assert!(seen.insert(i), "record {i} arrived twice");
        let d = &written[&i];
        assert_eq!(
            (r.partition, Some(r.offset)),
            (d.partition, d.offset),
            "record {i}"
        );
        assert_eq!(
            (&r.key, &r.headers),
            (&sent[i].key, &sent[i].headers),
            "record {i}"
        );
        by_partition.entry(r.partition).or_default().push(i);
    }
    for (p, order) in by_partition {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of the order given: {order:?}"
        );
    }

    // More than buffer.memory holds at once: refused as a call, nothing queued.
    let before = producer.metrics();
    let e = producer
        .send_all((0..10).map(|i| ProducerRecord::new(topic.clone(), vec![i as u8; 15_000])))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRecord, "{e}");
    assert!(e.to_string().contains("buffer.memory"), "{e}");
    producer.flush().await;
    assert_eq!(
        producer.metrics(),
        before,
        "nothing of the refused call was sent"
    );

    // A clone closes them all: the producer is read from again below.
    producer.clone().close().await.expect("the producer closes");
    let e = producer
        .send_all([ProducerRecord::new(topic.clone(), "late")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
}

/// Whether Kafka's own tool lists `topic` on `kafka`.
fn listed(kafka: &Kafka, topic: &str) -> bool {
    kafka
        .tool("org.apache.kafka.tools.TopicCommand", &["--list"])
        .lines()
        .any(|l| l.trim() == topic)
}

/// A record for a topic nobody creates waits for it until `delivery.timeout.ms` (3 s here, the
/// setting this test is about) and fails with UNKNOWN_TOPIC_OR_PARTITION by name, retriable:
/// on a broker that creates no topic (`auto.create.topics.enable=false`), and on one that
/// would, asked by a producer whose `allow.auto.create.topics` is false; neither topic exists
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_does_not_exist_fails_with_the_brokers_error() {
    for (kafka, allow) in [(Kafka::noauto(), None), (Kafka::single(), Some("false"))] {
        let mut builder = producer(kafka.bootstrap())
            .set("request.timeout.ms", "1000")
            .set("delivery.timeout.ms", "3000");
        if let Some(allow) = allow {
            builder = builder.set("allow.auto.create.topics", allow);
        }
        let producer = builder.build().unwrap();
        let started = std::time::Instant::now();
        let topic = unique_name("nowhere");
        let delivery = producer
            .send(ProducerRecord::new(topic.clone(), "lost"))
            .await
            .unwrap();
        let e = timeout(Duration::from_secs(30), delivery)
            .await
            .expect("the delivery fails by delivery.timeout.ms")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert_eq!(
            e.code(),
            Some(ResponseError::UnknownTopicOrPartition),
            "{e}"
        );
        assert!(e.to_string().contains("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");
        assert!(e.is_retriable(), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(2900));
        // A record still waiting when the close begins: its failure is the close's too.
        let waiting = producer
            .send(ProducerRecord::new(topic.clone(), "waiting"))
            .await
            .unwrap();
        let e = producer.close().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert_eq!(
            e.code(),
            Some(ResponseError::UnknownTopicOrPartition),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("a record queued before the close failed: delivery to"),
            "{e}"
        );
        let e = waiting.await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(!listed(kafka, &topic), "{topic} was created");
    }
}

/// Sends `n` records to partition 0 of a fresh topic through a proxy in front of the broker
/// that loses the answer to the first Produce request, and returns the deliveries, the records
/// the broker holds (read straight from it, duplicates included) and the retries the producer
/// made. `written` says how many records the broker holds, given the deliveries.
async fn produce_losing_the_first_answer(
    idempotence: bool,
    n: usize,
    written: impl Fn(&[Delivered]) -> usize,
) -> (Vec<Delivered>, Vec<Record>, u64) {
    let kafka = Kafka::single();
    let upstream: SocketAddr = kafka.bootstrap().parse().expect("one node's address");
    let proxy = AnswerDropper::in_front_of(upstream, ApiKey::Produce, 1).await;
    let topic = unique_name("produce-lost");
    create(&topic, 1).await;
    let producer = producer(&proxy.bootstrap())
        .set("enable.idempotence", idempotence.to_string())
        .set("batch.num.messages", "10")
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..n {
        let record = ProducerRecord::new(topic.clone(), value(i)).with_partition(0);
        deliveries.push(producer.send(record).await.unwrap());
    }
    let deliveries = delivered(deliveries).await;
    assert_eq!(proxy.dropped(), 1, "the proxy lost one answer");
    let retries = producer.metrics().retries;
    producer.close().await.expect("the producer closes");
    let records = read_back(&topic, 1, written(&deliveries)).await;
    (deliveries, records, retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_a_batch_whose_answer_was_lost_is_written_twice() {
    // The retry of the first batch (its first `k` records) wrote them again after the first
    // write: its delivery reports the second copy, at offset `k`.
    let first_batch = |d: &[Delivered]| d[0].offset.expect("an offset") as usize;
    let (deliveries, records, retries) =
        produce_losing_the_first_answer(false, 30, |d| 30 + first_batch(d)).await;
    assert!(retries >= 1, "{retries}");
    let k = first_batch(&deliveries);
    assert!((1..=10).contains(&k), "a first batch of {k} records");
    // The first batch twice, then the rest: at-least-once.
    let order: Vec<usize> = records.iter().map(index).collect();
    let mut want: Vec<usize> = (0..k).collect();
    want.extend(0..30);
    assert_eq!(order, want);
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(d.offset, Some((i + k) as i64), "{d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idempotence_a_batch_whose_answer_was_lost_is_written_once() {
    let (deliveries, records, retries) = produce_losing_the_first_answer(true, 30, |_| 30).await;
    assert!(retries >= 1, "{retries}");
    // Kafka recognised the retried batch by its producer id and sequence and answered it with
    // the offsets of its first write: every record once, where its delivery said.
    let order: Vec<usize> = records.iter().map(index).collect();
    assert_eq!(order, (0..30).collect::<Vec<_>>());
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(d.offset, Some(i as i64), "{d:?}");
    }
    for r in &records {
        assert_eq!(Some(r.offset), deliveries[index(r)].offset);
    }
}

/// What a hook saw: the values sent, and each outcome (partition and offset, or the error's
/// kind).
#[derive(Default)]
struct Seen {
    sent: Vec<String>,
    outcomes: Vec<Result<(i32, Option<i64>), ErrorKind>>,
}

/// A hook that adds a `hooked` header (unless the record has one) and notes what it sees.
struct Tracing(Arc<Mutex<Seen>>);

impl ProducerHooks for Tracing {
    fn on_send(&self, record: &mut ProducerRecord) {
        let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
        self.0.lock().unwrap().sent.push(value.into_owned());
        if !record.headers.iter().any(|(name, _)| name == "hooked") {
            record.headers.push(("hooked".into(), Some("yes".into())));
        }
    }

    fn on_acknowledgement(&self, outcome: Result<&Delivered, &ProduceError>) {
        let seen = outcome
            .map(|d| (d.partition, d.offset))
            .map_err(|e| e.kind());
        self.0.lock().unwrap().outcomes.push(seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_told_every_record_sent_and_its_outcome_and_what_they_add_is_written() {
    let topic = unique_name("produce-hooks");
    create(&topic, 1).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let p = producer(Kafka::single().bootstrap())
        .hooks(Tracing(seen.clone()))
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let mut record = ProducerRecord::new(topic.as_str(), value(i)).with_partition(0);
        if i == 4 {
            // A header already there is kept.
            record.headers.push(("hooked".into(), Some("mine".into())));
        }
        deliveries.push(p.send(record).await.unwrap());
    }
    // Sent together, one refused in its place (larger than max.request.size, 1 MiB).
    let together = p
        .send_all([
            ProducerRecord::new(topic.as_str(), value(5)).with_partition(0),
            ProducerRecord::new(topic.as_str(), "x".repeat(2 << 20)).with_partition(0),
        ])
        .await
        .unwrap();
    // Refused at send: told to the hooks as well.
    let e = p
        .send(ProducerRecord::new(topic.as_str(), "x".repeat(2 << 20)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRecord);
    let written = delivered(deliveries).await;
    let together = timeout(DELIVERED_WITHIN, together).await.unwrap();
    assert!(together[0].is_ok() && together[1].is_err(), "{together:?}");
    p.close().await.expect("the producer closes");

    {
        let seen = seen.lock().unwrap();
        let large = "x".repeat(2 << 20);
        let mut expected_sent: Vec<String> = (0..6).map(value).collect();
        expected_sent.extend([large.clone(), large]);
        assert_eq!(seen.sent, expected_sent);
        // Every outcome once: the six written at the offsets their deliveries reported, and the
        // two refused.
        let mut offsets: Vec<_> = written.iter().map(|d| (d.partition, d.offset)).collect();
        offsets.push((0, together[0].as_ref().unwrap().offset));
        let mut ok: Vec<_> = seen.outcomes.iter().filter_map(|o| o.ok()).collect();
        ok.sort();
        offsets.sort();
        assert_eq!(ok, offsets);
        let refused: Vec<_> = seen.outcomes.iter().filter_map(|o| o.err()).collect();
        assert_eq!(
            refused,
            [ErrorKind::InvalidRecord, ErrorKind::InvalidRecord]
        );
    }

    let records = read_back(&topic, 1, 6).await;
    let hooked: Vec<Option<String>> = records
        .iter()
        .map(|r| kcon_tests::policy::header(r, "hooked"))
        .collect();
    let mut expected = vec![Some("yes".to_owned()); 6];
    expected[4] = Some("mine".to_owned());
    assert_eq!(hooked, expected);
}
