//! `kcon consume --value-format avro|protobuf|json-schema --schema-registry URL` on Apache
//! Kafka 4.4 (`Kafka::single()`) and a test registry: values written by Confluent's own
//! serializers come out as JSON, a key in another format beside them, records that do not
//! decode are reported on stderr with their coordinates and dead-lettered, decimals come out
//! with their scale; registry properties go with -X; a Schema Registry format without a
//! registry is a usage error.

mod common;

use std::collections::BTreeMap;

use common::{Broker, TestRecord, by_position, kcon};
use kcon_tests::brokers::unique_name;
use kcon_tests::schema_registry::{TestRegistry, serialize_async};
use serde_json::{Value, json};

const PAYMENT: &str = r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
    {"name":"id","type":"string"},{"name":"amount","type":"double"},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}"#;

const KEY: &str = r#"{"type":"object","properties":{"region":{"type":"string"}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn avro_values_and_json_schema_keys_come_out_as_json_and_broken_ones_are_reported() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("payments");
    let dlq = format!("{topic}.dlq");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&dlq, 1).await;
    let registry = TestRegistry::start();
    registry.require_authorization("Basic YWxpY2U6cHc=");
    let values = [
        json!({"id": "p0", "amount": 1.5, "note": null, "price": "12.34"}),
        json!({"id": "p1", "amount": -2.0, "note": "refund", "price": "-0.05"}),
        json!({"id": "p2", "amount": 3.25, "note": "header-framed", "price": "0.00"}),
    ];
    let mut specs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        specs.push(json!({"format": "json", "field": "key", "schema": KEY, "value": {"region": format!("r{i}")}}));
        specs.push(
            json!({"format": "avro", "field": "value", "schema": PAYMENT, "value": v,
                          "decimals": ["price"], "headers": i == 2}),
        );
    }
    let written = serialize_async(
        registry.url(),
        json!({"basic.auth.user.info": "alice:pw"}),
        &topic,
        json!(specs),
    )
    .await;
    let good = |i: usize| {
        let (k, v) = (&written[2 * i], &written[2 * i + 1]);
        TestRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(k.bytes.clone()),
            value: Some(v.bytes.clone()),
            headers: v
                .headers
                .iter()
                .map(|(n, h)| (n.as_bytes().to_vec(), h.clone()))
                .collect(),
        }
    };
    let key0 = written[0].bytes.clone();
    let broken = TestRecord {
        timestamp: 1_700_000_000_100,
        key: Some(key0),
        value: Some(br#"{"id":"not framed"}"#.to_vec()),
        headers: vec![],
    };
    // Offsets: 0 good, 1 broken, 2 good, 3 good.
    broker
        .produce_batch(&topic, 0, &[good(0), broken, good(1), good(2)])
        .await;

    let url = registry.url();
    let run = kcon(&[
        "consume",
        "-b",
        &b,
        "-e",
        "--format",
        "json",
        "--key-format",
        "json-schema",
        "--value-format",
        "avro",
        "--schema-registry",
        &url,
        "-X",
        "basic.auth.user.info=alice:pw",
        "-X",
        "schema.registry.request.timeout.ms=5000",
        "--dlq-topic",
        &dlq,
        &topic,
    ])
    .await
    .ok();
    let out: BTreeMap<i64, Value> = by_position(&run.json_lines())
        .into_iter()
        .map(|((_, o), r)| (o, r))
        .collect();
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [0, 2, 3]);
    assert_eq!(out[&0]["value"], values[0]);
    assert_eq!(out[&2]["value"], values[1]);
    assert_eq!(out[&3]["value"], values[2]);
    assert_eq!(out[&3]["key"], json!({"region": "r2"}));
    let reports: Vec<Value> = run
        .json_events()
        .into_iter()
        .filter(|e| e["error"] == "deserialize")
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["offset"], 1);
    assert_eq!(reports[0]["field"], "value");
    assert_eq!(reports[0]["kind"], "schema-framing");
    assert_eq!(reports[0]["dead_letter_topic"], dlq.as_str());
    // The registry heard from kcon with the credentials: the two schemas, the Avro one by id
    // and by GUID.
    let gets = registry.gets();
    assert!(!gets.is_empty());
    assert!(
        gets.iter()
            .all(|g| g.authorization.as_deref() == Some("Basic YWxpY2U6cHc="))
    );
    // The dead letter is the broken record, byte for byte.
    let letters = kcon(&["consume", "-b", &b, "-e", "--format", "json", &dlq])
        .await
        .ok();
    let letters = letters.json_lines();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["value"], r#"{"id":"not framed"}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_registry_format_without_a_registry_or_with_a_bad_property_exits_2() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("t");
    broker.create_topic(&topic, 1).await;
    let run = kcon(&[
        "consume",
        "-b",
        &b,
        "-e",
        "--value-format",
        "protobuf",
        &topic,
    ])
    .await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(run.stderr.contains("--schema-registry"), "{}", run.stderr);
    let run = kcon(&[
        "consume",
        "-b",
        &b,
        "-e",
        "--value-format",
        "avro",
        "--schema-registry",
        "http://127.0.0.1:1",
        "-X",
        "schema.registry.request.timeout.ms=soon",
        &topic,
    ])
    .await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr.contains("schema.registry.request.timeout.ms"),
        "{}",
        run.stderr
    );
}

/// With `--dlq-topic` the records go through kcon's Processor: a Schema Registry that is down
/// is a failure that may pass, tried again with backoff (each retry told on stderr) before the
/// record is dead-lettered, as the library does; before, the tool stopped at it.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_dead_letter_topic_a_registry_that_is_down_is_retried_then_dead_lettered() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("payments");
    let dlq = format!("{topic}.dlq");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&dlq, 1).await;
    // Framed for schema id 1: reading it asks the registry.
    let framed = TestRecord {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(b"\x00\x00\x00\x00\x01x".to_vec()),
        headers: vec![],
    };
    broker.produce_batch(&topic, 0, &[framed]).await;
    let run = kcon(&[
        "consume",
        "-b",
        &b,
        "-e",
        "--format",
        "json",
        "--value-format",
        "avro",
        "--schema-registry",
        "http://127.0.0.1:1",
        "-X",
        "errors.retry.max.attempts=3",
        "--dlq-topic",
        &dlq,
        &topic,
    ])
    .await
    .ok();
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for attempt in ["try 2 in", "try 3 in"] {
        assert!(run.stderr.contains(attempt), "{}", run.stderr);
    }
    let reports = run.json_events();
    assert_eq!(reports.len(), 1, "{}", run.stderr);
    assert_eq!(reports[0]["kind"], "schema-registry");
    assert_eq!(reports[0]["dead_letter_topic"], dlq.as_str());
    let letters = kcon(&["consume", "-b", &b, "-e", "--format", "json", &dlq])
        .await
        .ok()
        .json_lines();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let attempts = letters[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "kcon.dlq.attempts")
        .map(|h| h[1].clone());
    assert_eq!(attempts, Some(json!("3")));
}
