//! Schema Registry decoding under `kcon::Processor` on Apache Kafka 4.4 (`Kafka::single()`):
//! Avro records written by Confluent's serializer mixed with records that do not decode (not
//! framed, a cut schema id, an id the registry does not know, a payload that does not read
//! with its schema). Good ones reach the handler decoded, broken ones go to the dead-letter
//! topic byte for byte with the reason, every offset is committed, nothing is lost. And a
//! registry outage is retried, not dead-lettered: the records wait and are processed once it
//! is back.
//!
//! Consumers and producers run at the client's defaults but for the policy a test is about
//! (`kcon_tests::policy`); every topic and group is `unique_name`'s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kcon::deserialize::{Nullable, StringDeserializer};
use kcon::policy::headers;
use kcon::{Processor, TopicPartition};
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_schema_registry::{AvroDeserializer, SchemaRegistry};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::policy::{committed, consumer, header, producer, read_exactly, until};
use kcon_tests::pool::config;
use kcon_tests::schema_registry::{Behaviour, Serialized, TestRegistry, serialize_async};
use serde_json::json;
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(60);

const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
    {"name":"id","type":"string"},{"name":"amount","type":"double"}]}"#;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Payment {
    id: String,
    amount: f64,
}

/// What a record of the test holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A payment as Confluent's serializer wrote it.
    Good,
    /// JSON with no framing: unknown magic byte.
    Unframed,
    /// Magic 0 and two bytes of a schema id.
    CutId,
    /// A schema id the registry does not know.
    UnknownId,
    /// A registered schema id, then bytes that do not read as a payment.
    BadPayload,
}

impl Kind {
    fn error_class(self) -> &'static str {
        match self {
            Kind::Good => "",
            Kind::Unframed | Kind::CutId => "schema-framing",
            Kind::UnknownId => "schema-registry",
            Kind::BadPayload => "avro",
        }
    }
}

async fn payments(registry: &TestRegistry, topic: &str, n: usize) -> Vec<Serialized> {
    let specs: Vec<_> = (0..n)
        .map(|i| {
            json!({"format": "avro", "field": "value", "schema": PAYMENT,
                   "value": {"id": format!("pay-{i}"), "amount": i as f64 * 1.5},
                   "headers": i % 4 == 3})
        })
        .collect();
    serialize_async(registry.url(), json!({}), topic, json!(specs)).await
}

/// Produces `records` to `topic`-`partition` in order; returns them by offset.
async fn produce(
    producer: &Producer,
    records: Vec<ProducerRecord>,
) -> BTreeMap<(i32, i64), ProducerRecord> {
    let mut sent = BTreeMap::new();
    for record in records {
        let delivered = producer
            .send(record.clone())
            .await
            .expect("queued")
            .await
            .expect("delivered");
        sent.insert(
            (delivered.partition, delivered.offset.expect("an offset")),
            record,
        );
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_are_decoded_and_broken_ones_dead_lettered_with_nothing_lost() {
    let topic = unique_name("payments");
    let dlq = format!("{topic}.dlq");
    let b = Kafka::single().bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    create_topics(&pool, &[(&topic, 2), (&dlq, 1)]).await;
    let registry = TestRegistry::start();
    let written = payments(&registry, &topic, 12).await;
    let schema_id = registry.ids()[0];

    // Per partition: good ones with the broken kinds among them.
    let layout = [
        Kind::Good,
        Kind::Unframed,
        Kind::Good,
        Kind::CutId,
        Kind::Good,
        Kind::UnknownId,
        Kind::Good,
        Kind::BadPayload,
        Kind::Good,
        Kind::Good,
    ];
    let mut good = written.iter();
    let mut records = Vec::new();
    let mut kinds = BTreeMap::new();
    let mut expected_payments = BTreeMap::new();
    for partition in 0..2 {
        for (i, kind) in layout.iter().enumerate() {
            let mut r = ProducerRecord::new(&topic, Bytes::new())
                .with_key(format!("k{partition}-{i}"))
                .with_partition(partition);
            let value: Vec<u8> = match kind {
                Kind::Good => {
                    let w = good.next().expect("enough payments");
                    for (k, v) in &w.headers {
                        r = r.with_header(k.clone(), v.clone());
                    }
                    expected_payments.insert((partition, i as i64), w.expected.clone());
                    w.bytes.clone()
                }
                Kind::Unframed => br#"{"id":"plain json"}"#.to_vec(),
                Kind::CutId => vec![0, 0, 0],
                Kind::UnknownId => [&[0u8][..], &9999u32.to_be_bytes(), &[2, b'x']].concat(),
                // The id's string field claims 50 bytes; 2 follow.
                Kind::BadPayload => {
                    [&[0u8][..], &schema_id.to_be_bytes(), &[100, b'a', b'b']].concat()
                }
            };
            r.value = Some(Bytes::from(value));
            kinds.insert((partition, i as i64), *kind);
            records.push(r);
        }
    }
    let sent = produce(&producer(b), records).await;
    assert_eq!(sent.len(), 20);

    let group = unique_name("g");
    let c = consumer(b, &group, &topic, &[]);
    let sr = SchemaRegistry::new(&registry.url()).unwrap();
    let mut processor = Processor::builder(c)
        .key(Nullable(StringDeserializer))
        .value(AvroDeserializer::<Payment>::new(sr.clone()))
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", &dlq)
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<(i32, i64, Payment)>>> = Arc::default();
    let log = seen.clone();
    let stop = until(processor.metrics_handle(), |m| {
        m.records_processed + m.records_dead_lettered == 20
    });
    timeout(
        WITHIN,
        processor.run_until(stop, async move |r| {
            log.lock()
                .unwrap()
                .push((r.record.partition, r.record.offset, r.value.clone()));
            Ok(())
        }),
    )
    .await
    .expect("every record done within the time")
    .unwrap();
    processor.commit().await.unwrap();
    let m = processor.metrics();
    processor.close().await.unwrap();

    // Good ones: each once, in partition order, the values Confluent's serializer was given.
    assert_eq!((m.records_processed, m.records_dead_lettered), (12, 8));
    assert_eq!(m.records_retried, 0, "nothing here is worth a retry");
    let seen = seen.lock().unwrap().clone();
    for partition in 0..2 {
        let offsets: Vec<i64> = seen
            .iter()
            .filter(|(p, ..)| *p == partition)
            .map(|(_, o, _)| *o)
            .collect();
        let expected: Vec<i64> = (0..10)
            .filter(|o| kinds[&(partition, *o)] == Kind::Good)
            .collect();
        assert_eq!(offsets, expected, "partition {partition}");
    }
    for (p, o, payment) in &seen {
        let want = &expected_payments[&(*p, *o)];
        assert_eq!(payment.id, want["id"].as_str().unwrap());
        assert_eq!(payment.amount, want["amount"].as_f64().unwrap());
    }
    let all_committed = committed(b, &group, &topic, 2).await;
    assert!(
        all_committed.values().all(|c| *c == Some(10)),
        "{all_committed:?}"
    );

    // Broken ones: dead-lettered once each, byte for byte, with why.
    let letters = read_exactly(b, &dlq, 1, 8).await;
    let mut found = Vec::new();
    for letter in &letters {
        let partition: i32 = header(letter, headers::PARTITION).unwrap().parse().unwrap();
        let offset: i64 = header(letter, headers::OFFSET).unwrap().parse().unwrap();
        let original = &sent[&(partition, offset)];
        assert_eq!(letter.value, original.value, "byte-identical value");
        assert_eq!(letter.key, original.key, "byte-identical key");
        assert_eq!(
            header(letter, headers::STAGE).as_deref(),
            Some("deserialize.value")
        );
        let kind = kinds[&(partition, offset)];
        assert_eq!(
            header(letter, headers::ERROR_CLASS).as_deref(),
            Some(kind.error_class()),
            "{kind:?}: {:?}",
            header(letter, headers::ERROR_MESSAGE)
        );
        found.push((partition, offset));
    }
    found.sort();
    let expected: Vec<(i32, i64)> = kinds
        .iter()
        .filter(|(_, k)| **k != Kind::Good)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(
        found, expected,
        "each broken record dead-lettered exactly once"
    );
    // The one schema looked up once, the unknown id once per try of its records.
    let gets = registry.gets();
    let schema_gets = gets
        .iter()
        .filter(|g| g.path == format!("/schemas/ids/{schema_id}"))
        .count();
    assert_eq!(schema_gets, 1, "{gets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_is_retried_and_the_records_are_processed_once_it_is_back() {
    let topic = unique_name("payments");
    let b = Kafka::single().bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    create_topics(&pool, &[(&topic, 1)]).await;
    let registry = TestRegistry::start();
    let written = payments(&registry, &topic, 4).await;
    let records = written
        .iter()
        .map(|w| {
            let mut r = ProducerRecord::new(&topic, Bytes::from(w.bytes.clone())).with_partition(0);
            for (k, v) in &w.headers {
                r = r.with_header(k.clone(), v.clone());
            }
            r
        })
        .collect();
    produce(&producer(b), records).await;
    // Down before the consumer asks anything.
    registry.set_behaviour(Behaviour::ServerError);

    let group = unique_name("g");
    let c = consumer(b, &group, &topic, &[]);
    let sr = SchemaRegistry::new(&registry.url()).unwrap();
    let mut processor = Processor::builder(c)
        .value(AvroDeserializer::<Payment>::new(sr))
        .set("errors.tolerance", "all")
        .set("errors.retry.backoff.ms", "200")
        .set("errors.retry.delay.max.ms", "200")
        .set("errors.retry.max.attempts", "1000")
        .build()
        .unwrap();
    let handle = processor.metrics_handle();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let stop = until(handle.clone(), |m| m.records_processed == 4);
    let recover = async {
        until(handle.clone(), |m| m.records_retried >= 2).await;
        registry.set_behaviour(Behaviour::Normal);
    };
    let run = processor.run_until(stop, async move |r| {
        log.lock().unwrap().push(r.value.id.clone());
        Ok(())
    });
    let (ran, ()) = timeout(WITHIN, async { tokio::join!(run, recover) })
        .await
        .expect("done within the time");
    ran.unwrap();
    let m = processor.metrics();
    processor.close().await.unwrap();
    assert!(m.records_retried >= 2, "{m:?}");
    assert_eq!((m.records_skipped, m.records_dead_lettered), (0, 0));
    assert_eq!(*seen.lock().unwrap(), ["pay-0", "pay-1", "pay-2", "pay-3"]);
    let tp = TopicPartition::new(&topic, 0);
    assert_eq!(m.partitions[&tp].processed, 4);
}
