//! `kcon-schema-registry` against records written by Confluent's own serializers
//! (confluent-kafka 2.16.1's Avro, Protobuf and JSON Schema serializers, in Python) through a
//! test registry that serves the REST API from memory and records what kcon asks: the values
//! kcon decodes are the ones the serializers were given; schema evolution; hostile framings and
//! a registry that answers garbage, fails or hangs; a cache under many concurrent ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon::Record;
use kcon::deserialize::BytesDeserializer;
use kcon::deserialize::{Field, Nullable, decode};
use kcon_schema_registry::prost_reflect::ReflectMessage;
use kcon_schema_registry::{
    AvroDeserializer, AvroJsonDeserializer, JsonSchemaDeserializer, ProtobufDeserializer,
    ProtobufDynamicDeserializer, ProtobufJsonDeserializer, SchemaRegistry, SubjectLookup,
};
use kcon_tests::schema_registry::{Behaviour, Serialized, TestRegistry, serialize_async};
use serde_json::{Value, json};

const PAYMENT_V1: &str = r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
    {"name":"id","type":"string"},
    {"name":"amount","type":"double"},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"counts","type":{"type":"map","values":"long"}},
    {"name":"payer","type":{"type":"record","name":"Payer","fields":[
        {"name":"name","type":"string"},{"name":"age","type":"int"}]}}]}"#;

/// Version 2: a field added with a default.
const PAYMENT_V2: &str = r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
    {"name":"id","type":"string"},
    {"name":"amount","type":"double"},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"counts","type":{"type":"map","values":"long"}},
    {"name":"payer","type":{"type":"record","name":"Payer","fields":[
        {"name":"name","type":"string"},{"name":"age","type":"int"}]}},
    {"name":"currency","type":"string","default":"EUR"}]}"#;

const ORDER_KEY: &str = r#"{"$schema":"http://json-schema.org/draft-07/schema#","title":"OrderKey",
    "type":"object","properties":{"region":{"type":"string"},"n":{"type":"integer"}},
    "required":["region","n"]}"#;

fn payment(id: &str, amount: f64, note: Option<&str>) -> Value {
    json!({"id": id, "amount": amount, "note": note, "status": "PAID", "tags": ["a", "b"],
           "counts": {"x": 1, "y": 20000000000i64}, "payer": {"name": "Ada", "age": 36}})
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Payment {
    id: String,
    amount: f64,
    note: Option<String>,
    status: String,
    tags: Vec<String>,
    payer: Payer,
    currency: Option<String>,
}

/// The fields of version 2 an application reading with it wants.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct PaymentV2 {
    id: String,
    currency: String,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct Payer {
    name: String,
    age: i32,
}

/// A record of `topic` with `key` and `value` as serialized, the serializers' headers on it.
fn record(topic: &str, offset: i64, key: Option<&Serialized>, value: &Serialized) -> Record {
    let mut headers: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    for s in key.into_iter().chain([value]) {
        for (k, v) in &s.headers {
            headers.push((Bytes::from(k.clone()), v.clone().map(Bytes::from)));
        }
    }
    Record::new(
        topic,
        0,
        offset,
        key.map(|k| Bytes::from(k.bytes.clone())),
        Some(Bytes::from(value.bytes.clone())),
    )
    .with_headers(headers)
}

fn raw(topic: &str, value: Vec<u8>) -> Record {
    Record::new(topic, 0, 0, None, Some(Bytes::from(value)))
}

fn registry_client(registry: &TestRegistry, extra: &[(&str, &str)]) -> SchemaRegistry {
    let mut b = SchemaRegistry::builder().set("schema.registry.url", registry.url());
    for (n, v) in extra {
        b = b.set(*n, *v);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_and_json_schema_written_by_confluents_serializers_decode_to_the_same_values() {
    let registry = TestRegistry::start();
    // Both sides must authenticate: the registry refuses requests without these credentials.
    registry.require_authorization("Basic YWxpY2U6czNjcjN0");
    let topic = "payments";
    let values = [
        payment("p1", 12.5, None),
        payment("p2", -0.25, Some("refund")),
        payment("p3", 1e9, Some("ünïcödé")),
    ];
    let keys = [
        json!({"region": "eu", "n": 1}),
        json!({"region": "us", "n": 2}),
        json!({"region": "ap", "n": 3}),
    ];
    let mut specs = Vec::new();
    for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
        // The third record carries both schema ids in headers, GUID form.
        let headers = i == 2;
        specs.push(json!({"format": "json", "field": "key", "schema": ORDER_KEY, "value": k, "headers": headers}));
        specs.push(json!({"format": "avro", "field": "value", "schema": PAYMENT_V1, "value": v, "headers": headers}));
    }
    let written = serialize_async(
        registry.url(),
        json!({"basic.auth.user.info": "alice:s3cr3t"}),
        topic,
        json!(specs),
    )
    .await;
    assert_eq!(written.len(), 6);
    // The header form really is the header form: a GUID header, and the value without prefix.
    let third = &written[5];
    assert_eq!(third.headers.len(), 1);
    assert_eq!(third.headers[0].0, "__value_schema_id");
    assert_eq!(
        third.headers[0].1.as_ref().unwrap()[0],
        1,
        "magic 1: a GUID"
    );
    assert_ne!(
        third.bytes[0], 0,
        "no prefix in front of a header-framed value"
    );
    registry.clear_requests();

    let sr = registry_client(&registry, &[("basic.auth.user.info", "alice:s3cr3t")]);
    let key = JsonSchemaDeserializer::<Value>::new(sr.clone());
    let json_value = AvroJsonDeserializer::new(sr.clone());
    let typed = AvroDeserializer::<Payment>::new(sr.clone());
    for (i, pair) in written.chunks(2).enumerate() {
        let r = record(topic, i as i64, Some(&pair[0]), &pair[1]);
        let d = decode(r.clone(), &key, &json_value).await.unwrap();
        assert_eq!(d.key, pair[0].expected, "key {i}");
        assert_eq!(d.value, pair[1].expected, "value {i}");
        let t = decode(r, &key, &typed).await.unwrap();
        let expected = &values[i];
        assert_eq!(t.value.id, expected["id"].as_str().unwrap());
        assert_eq!(t.value.amount, expected["amount"].as_f64().unwrap());
        assert_eq!(t.value.note.as_deref(), expected["note"].as_str());
        assert_eq!(t.value.status, "PAID");
        assert_eq!(t.value.tags, ["a", "b"]);
        assert_eq!(
            t.value.payer,
            Payer {
                name: "Ada".into(),
                age: 36
            }
        );
        assert_eq!(
            t.value.currency, None,
            "no such field in the writer's schema"
        );
    }

    // What kcon asked: each schema once per deserializer cache miss, by id or by GUID, with
    // the credentials.
    let gets = registry.gets();
    assert!(
        gets.iter()
            .all(|g| g.authorization.as_deref() == Some("Basic YWxpY2U6czNjcjN0")),
        "{gets:?}"
    );
    let paths: Vec<&str> = gets.iter().map(|g| g.path.as_str()).collect();
    let ids = registry.ids();
    assert_eq!(ids.len(), 2, "one JSON schema, one Avro schema");
    let by_id = |id: u32| {
        paths
            .iter()
            .filter(|p| **p == format!("/schemas/ids/{id}"))
            .count()
    };
    let by_guid = |id: u32| {
        paths
            .iter()
            .filter(|p| **p == format!("/schemas/guids/{}", registry.guid(id)))
            .count()
    };
    for id in ids {
        // The client's cache serves the second deserializer of the same schema.
        assert_eq!(by_id(id), 1, "schema {id}: {paths:?}");
        assert_eq!(by_guid(id), 1, "schema {id}: {paths:?}");
    }
    assert_eq!(gets.len(), 4, "{paths:?}");
    assert!(gets.iter().all(|g| g.query.is_empty()), "{gets:?}");
}

async fn serialized(registry: &TestRegistry, topic: &str, specs: Value) -> Vec<Serialized> {
    serialize_async(registry.url(), json!({}), topic, specs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_record_reads_with_a_v2_reader_schema_its_added_field_defaulted() {
    let registry = TestRegistry::start();
    let topic = "evolving";
    let v1 = payment("old", 1.0, None);
    let mut v2 = payment("new", 2.0, Some("x"));
    v2["currency"] = json!("USD");
    let written = serialized(
        &registry,
        topic,
        json!([
            {"format": "avro", "field": "value", "schema": PAYMENT_V1, "value": v1},
            {"format": "avro", "field": "value", "schema": PAYMENT_V2, "value": v2},
        ]),
    )
    .await;
    registry.clear_requests();
    let sr = registry_client(&registry, &[]);
    let reader = AvroDeserializer::<PaymentV2>::new(sr.clone())
        .reader_schema(PAYMENT_V2)
        .unwrap();
    let as_json = AvroJsonDeserializer::new(sr)
        .reader_schema(PAYMENT_V2)
        .unwrap();
    let old = decode(
        record(topic, 0, None, &written[0]),
        &Nullable(BytesDeserializer),
        &reader,
    )
    .await
    .unwrap();
    assert_eq!(old.value.id, "old");
    assert_eq!(old.value.currency, "EUR", "the reader's default");
    let new = decode(
        record(topic, 1, None, &written[1]),
        &BytesDeserializer,
        &reader,
    )
    .await
    .unwrap();
    assert_eq!(new.value.currency, "USD");
    let old_json = decode(
        record(topic, 0, None, &written[0]),
        &BytesDeserializer,
        &as_json,
    )
    .await
    .unwrap();
    let mut expected = v1.clone();
    expected["currency"] = json!("EUR");
    assert_eq!(old_json.value, expected);
    // Two writer schemas, each looked up by its own id.
    assert_eq!(registry.gets().len(), 2);

    // A reader schema the writer's cannot resolve to (a required field without a default)
    // makes the record fail for good.
    let strict = AvroJsonDeserializer::new(registry_client(&registry, &[]))
        .reader_schema(
            r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
                {"name":"id","type":"string"},{"name":"vat","type":"double"}]}"#,
        )
        .unwrap();
    let f = decode(
        record(topic, 0, None, &written[0]),
        &BytesDeserializer,
        &strict,
    )
    .await
    .unwrap_err();
    assert_eq!((f.field, f.error.kind()), (Field::Value, "avro"));
    assert!(!f.error.is_retriable());

    // Configured after a clone: the clone keeps the writer's schema, the configured one reads
    // with its own.
    let plain = AvroJsonDeserializer::new(registry_client(&registry, &[]));
    let copy = plain.clone();
    let strict = plain
        .reader_schema(
            r#"{"type":"record","name":"Payment","namespace":"kcon.test","fields":[
                {"name":"id","type":"string"},{"name":"vat","type":"double"}]}"#,
        )
        .unwrap();
    let raw = || record(topic, 0, None, &written[0]);
    assert!(decode(raw(), &BytesDeserializer, &copy).await.is_ok());
    assert!(decode(raw(), &BytesDeserializer, &strict).await.is_err());
}

/// Decimals of every shape: bytes with a scale, scale 0, fixed, beyond i128, in a union.
const PRICED: &str = r#"{"type":"record","name":"Priced","namespace":"kcon.test","fields":[
    {"name":"id","type":"string"},
    {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
    {"name":"units","type":{"type":"bytes","logicalType":"decimal","precision":6,"scale":0}},
    {"name":"total","type":{"type":"fixed","name":"Total","size":16,
        "logicalType":"decimal","precision":38,"scale":4}},
    {"name":"huge","type":{"type":"bytes","logicalType":"decimal","precision":60,"scale":10}},
    {"name":"discount","type":["null",
        {"type":"bytes","logicalType":"decimal","precision":4,"scale":3}],"default":null}]}"#;

/// Decimals written by Confluent's AvroSerializer come out as JSON strings with their scale:
/// 12.34 as "12.34" (it came out as "1234", which a reader takes for 1234), negative values,
/// leading zeros, scale 0, a fixed, more digits than i128 holds, a decimal in a union; with
/// the writer's schema and resolved to a reader schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_decimals_written_by_confluents_serializer_come_out_with_their_scale() {
    let registry = TestRegistry::start();
    let topic = "priced";
    let values = [
        json!({"id": "a", "price": "12.34", "units": "1234", "total": "-0.0005",
               "huge": "12345678901234567890123456789012345678901234567890.1234567890",
               "discount": "0.050"}),
        json!({"id": "b", "price": "-0.05", "units": "-7",
               "total": "1234567890123456789012345678901234.5678",
               "huge": "-0.0000000001", "discount": null}),
        json!({"id": "c", "price": "0.00", "units": "0", "total": "-9999999999999999999999999999999999.9999",
               "huge": "-99999999999999999999999999999999999999999999999999.9999999999",
               "discount": "-9.999"}),
    ];
    let specs: Vec<Value> = values
        .iter()
        .map(|v| {
            json!({"format": "avro", "field": "value", "schema": PRICED, "value": v,
                   "decimals": ["price", "units", "total", "huge", "discount"]})
        })
        .collect();
    let written = serialized(&registry, topic, json!(specs)).await;
    let sr = registry_client(&registry, &[]);
    let as_json = AvroJsonDeserializer::new(sr.clone());
    for (i, w) in written.iter().enumerate() {
        let d = decode(
            record(topic, i as i64, None, w),
            &BytesDeserializer,
            &as_json,
        )
        .await
        .unwrap();
        assert_eq!(d.value, values[i], "record {i}");
    }
    // Resolved to a reader schema (the writer's own): apache-avro alone refused these, a bytes
    // decimal being shorter than its precision can need (12.34 is written in two bytes).
    let resolved = AvroJsonDeserializer::new(sr.clone())
        .reader_schema(PRICED)
        .unwrap();
    for (i, w) in written.iter().enumerate() {
        let d = decode(
            record(topic, i as i64, None, w),
            &BytesDeserializer,
            &resolved,
        )
        .await
        .unwrap();
        assert_eq!(d.value, values[i], "record {i} resolved");
    }
    // Into a serde type through a reader schema too: the fields the application wants.
    #[derive(Debug, serde::Deserialize)]
    struct Id {
        id: String,
    }
    let typed = AvroDeserializer::<Id>::new(sr)
        .reader_schema(PRICED)
        .unwrap();
    let d = decode(
        record(topic, 0, None, &written[0]),
        &BytesDeserializer,
        &typed,
    )
    .await
    .unwrap();
    assert_eq!(d.value.id, "a");
}

#[derive(Clone, PartialEq, prost::Message)]
struct Line {
    #[prost(string, tag = "1")]
    sku: String,
    #[prost(int32, tag = "2")]
    qty: i32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_with_references_nested_messages_and_header_ids_decodes_as_googles_json() {
    let registry = TestRegistry::start();
    let topic = "orders";
    let order = json!({"id": "o-1", "total": {"currency": "EUR", "units": "1250"},
                       "items": ["tea", "cake"], "status": "SHIPPED",
                       "placedAt": "2026-11-22T10:00:00Z", "weight": 0.5});
    let line = json!({"sku": "tea", "qty": 3});
    let written = serialized(
        &registry,
        topic,
        json!([
            {"format": "protobuf", "field": "value", "message": "Order", "value": order},
            {"format": "protobuf", "field": "value", "message": "Envelope.Line", "value": line},
            {"format": "protobuf", "field": "value", "message": "Envelope.Line", "value": line, "headers": true},
            {"format": "protobuf", "field": "key", "message": "Order", "value": {"id": "k"}, "headers": true},
        ]),
    )
    .await;
    // Message indexes as Confluent writes them: [0] as the single zero, [1, 0] in full.
    let id = u32::from_be_bytes(written[0].bytes[1..5].try_into().unwrap());
    assert_eq!(written[0].bytes[5], 0, "the single-zero shortcut");
    assert_eq!(
        &written[1].bytes[5..8],
        &[4, 2, 0],
        "count 2, indexes 1 and 0"
    );
    registry.clear_requests();

    let sr = registry_client(&registry, &[]);
    let json_of = ProtobufJsonDeserializer::new(sr.clone());
    for (i, w) in written[..3].iter().enumerate() {
        let d = decode(
            record(topic, i as i64, None, w),
            &BytesDeserializer,
            &json_of,
        )
        .await
        .unwrap();
        assert_eq!(d.value, w.expected, "record {i}");
    }
    assert_eq!(
        written[0].expected["total"]["units"], "1250",
        "int64 as a string"
    );
    let key_and_value = record(topic, 9, Some(&written[3]), &written[2]);
    let d = decode(key_and_value, &json_of, &json_of).await.unwrap();
    assert_eq!(d.key, json!({"id": "k"}));
    assert_eq!(d.value, line);

    let dynamic = ProtobufDynamicDeserializer::new(sr.clone());
    let d = decode(
        record(topic, 1, None, &written[1]),
        &BytesDeserializer,
        &dynamic,
    )
    .await
    .unwrap();
    assert_eq!(d.value.descriptor().full_name(), "kcon.test.Envelope.Line");
    let typed = ProtobufDeserializer::<Line>::new(sr);
    let d = decode(
        record(topic, 2, None, &written[2]),
        &BytesDeserializer,
        &typed,
    )
    .await
    .unwrap();
    assert_eq!(
        d.value,
        Line {
            sku: "tea".into(),
            qty: 3
        }
    );

    // kcon asked for the serialized form of the schema and of its reference (deleted
    // versions included); the well-known Timestamp came from kcon's own pool.
    let gets = registry.gets();
    let schema_gets: Vec<_> = gets
        .iter()
        .filter(|g| g.path == format!("/schemas/ids/{id}"))
        .collect();
    assert!(!schema_gets.is_empty(), "{gets:?}");
    assert!(
        schema_gets
            .iter()
            .all(|g| g.query.get("format").map(String::as_str) == Some("serialized"))
    );
    let reference = gets
        .iter()
        .find(|g| g.path == "/subjects/kcon/test/common.proto/versions/1")
        .unwrap_or_else(|| panic!("no reference lookup in {gets:?}"));
    assert_eq!(
        reference.query.get("deleted").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        reference.query.get("format").map(String::as_str),
        Some("serialized")
    );
    assert!(
        gets.iter().all(|g| !g.path.contains("timestamp")),
        "{gets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_framings_are_permanent_failures_naming_what_is_wrong() {
    let registry = TestRegistry::start();
    let id = registry.register("t-value", r#""long""#, None);
    let sr = registry_client(&registry, &[]);
    let avro = AvroJsonDeserializer::new(sr.clone());
    let proto = ProtobufJsonDeserializer::new(sr.clone());
    let idb = id.to_be_bytes();
    let cases: Vec<(Vec<u8>, bool, &str, &str)> = vec![
        (
            b"{\"plain\":\"json\"}".to_vec(),
            false,
            "schema-framing",
            "unknown magic byte 123",
        ),
        (vec![0, 0, 1], false, "schema-framing", "schema id"),
        (vec![], false, "schema-framing", "empty"),
        // A count of 2^30 indexes with two bytes left.
        (
            [&[0][..], &idb, &[0x80, 0x80, 0x80, 0x80, 0x08, 2, 2]].concat(),
            true,
            "schema-framing",
            "message index count",
        ),
        (
            [&[0][..], &idb, &[3]].concat(),
            true,
            "schema-framing",
            "message index count of -2",
        ),
        // A long claiming more bytes than there are is fine for a long: it is cut short.
        (
            [&[0][..], &idb, &[0xff]].concat(),
            false,
            "avro",
            "does not read",
        ),
        // An id the registry does not know.
        (
            [&[0][..], &777u32.to_be_bytes(), &[2]].concat(),
            false,
            "schema-registry",
            "40403",
        ),
    ];
    for (bytes, protobuf, kind, says) in cases {
        let r = raw("t", bytes.clone());
        let f = if protobuf {
            decode(r, &BytesDeserializer, &proto).await.unwrap_err()
        } else {
            decode(r, &BytesDeserializer, &avro).await.unwrap_err()
        };
        assert_eq!(f.error.kind(), kind, "{bytes:?}: {}", f.error);
        assert!(!f.error.is_retriable(), "{bytes:?}");
        assert!(f.error.to_string().contains(says), "{bytes:?}: {}", f.error);
    }
    // The schema is Avro: read as Protobuf it fails for good, naming the type.
    let r = raw("t", [&[0][..], &idb, &[0, 2]].concat());
    let f = decode(r, &BytesDeserializer, &proto).await.unwrap_err();
    assert_eq!(f.error.kind(), "protobuf");
    assert!(f.error.to_string().contains("not Protobuf"), "{}", f.error);
    // A null value: permanent, unless the deserializer is Nullable.
    let tombstone = Record::new("t", 0, 0, None, None);
    let f = decode(tombstone.clone(), &BytesDeserializer, &avro)
        .await
        .unwrap_err();
    assert_eq!(f.error.kind(), "null");
    let d = decode(tombstone, &BytesDeserializer, &Nullable(avro.clone()))
        .await
        .unwrap();
    assert_eq!(d.value, None);
    // Good bytes still read: 21 as a zigzag long.
    let r = raw("t", [&[0][..], &idb, &[42]].concat());
    let d = decode(r, &BytesDeserializer, &avro).await.unwrap();
    assert_eq!(d.value, json!(21));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answering_garbage_failing_or_hanging_makes_retriable_failures_in_bounded_time()
{
    let registry = TestRegistry::start();
    let id = registry.register("t-value", r#""string""#, None);
    let good = [&[0][..], &id.to_be_bytes(), &[4, b'o', b'k']].concat();
    let timeout = Duration::from_millis(500);
    let sr = registry_client(&registry, &[("schema.registry.request.timeout.ms", "500")]);
    for behaviour in [Behaviour::Garbage, Behaviour::ServerError, Behaviour::Hang] {
        registry.set_behaviour(behaviour.clone());
        // A fresh deserializer and client each time: nothing cached from the last round.
        let sr = registry_client(&registry, &[("schema.registry.request.timeout.ms", "500")]);
        let avro = AvroJsonDeserializer::new(sr);
        let started = Instant::now();
        let f = decode(raw("t", good.clone()), &BytesDeserializer, &avro)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            f.error.kind(),
            "schema-registry",
            "{behaviour:?}: {}",
            f.error
        );
        assert!(f.error.is_retriable(), "{behaviour:?}: {}", f.error);
        if behaviour == Behaviour::Hang {
            assert!(took >= timeout, "{took:?}");
            assert!(
                f.error.to_string().contains("no answer within"),
                "{}",
                f.error
            );
        }
        // Bounded: a hanging registry costs the timeout, not forever (generous for a
        // loaded machine; the bound itself is the 500 ms above).
        assert!(took < Duration::from_secs(20), "{behaviour:?}: {took:?}");
    }
    // The registry comes back: the same client reads the record (a failure is not kept).
    registry.set_behaviour(Behaviour::Normal);
    let avro = AvroJsonDeserializer::new(sr);
    let d = decode(raw("t", good), &BytesDeserializer, &avro)
        .await
        .unwrap();
    assert_eq!(d.value, json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_ids_stay_within_the_cache_and_one_id_is_one_request() {
    let registry = TestRegistry::start();
    let ids: Vec<u32> = (0..300)
        .map(|i| {
            registry.register(
                &format!("s{i}-value"),
                &format!(
                    r#"{{"type":"record","name":"R{i}","fields":[{{"name":"n","type":"int"}}]}}"#
                ),
                None,
            )
        })
        .collect();
    let sr = registry_client(&registry, &[("max.schemas.per.subject", "16")]);
    let avro = Arc::new(AvroJsonDeserializer::new(sr.clone()));
    // Every id read by three tasks at once, all 900 reads in flight together: the registry
    // holds its answers until every task's read has begun, i.e. has found its schema being
    // looked up or has looked it up itself (a read does both before it first waits). Then no
    // lookup can have ended, so the cache keeps no schema yet, and the promise is exact: the
    // concurrent lookups of one id are one request, 300 in all; evicting (16 kept of 300)
    // cannot cost a second request, since no read of an id begins after its schema came.
    registry.hold();
    let begun = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, id) in ids.iter().enumerate() {
        for _ in 0..3 {
            let avro = avro.clone();
            let begun = begun.clone();
            let bytes = [&[0][..], &id.to_be_bytes(), &[(n as u8 % 60) * 2]].concat();
            tasks.spawn(async move {
                let mut read = std::pin::pin!(decode(raw("t", bytes), &BytesDeserializer, &*avro));
                let mut first = true;
                std::future::poll_fn(|cx| {
                    let polled = read.as_mut().poll(cx);
                    if std::mem::take(&mut first) {
                        begun.fetch_add(1, Ordering::SeqCst);
                    }
                    polled
                })
                .await
                .map(|d| d.value)
            });
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while begun.load(Ordering::SeqCst) < 900 {
        assert!(
            Instant::now() < deadline,
            "{} of 900 reads begun in 30 s",
            begun.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sr.cached(), 0, "a schema came while the registry held it");
    registry.release();
    let mut read = 0;
    while let Some(done) = tasks.join_next().await {
        let v = done.unwrap().unwrap();
        assert!(v["n"].is_i64(), "{v}");
        read += 1;
    }
    assert_eq!(read, 900);
    // 300 schemas came, and the cache keeps its capacity's worth of them.
    assert_eq!(sr.cached(), 16);
    assert_eq!(sr.capacity(), 16);
    let gets = registry.gets().len();
    assert_eq!(gets, 300, "lookups for 300 ids read 3 times at once");

    // One id read by 50 tasks at once while the registry is slow: one request.
    registry.clear_requests();
    registry.set_delay(Duration::from_millis(300));
    let fresh = registry.register("late-value", r#""int""#, None);
    let bytes = [&[0][..], &fresh.to_be_bytes(), &[2]].concat();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let avro = avro.clone();
        let bytes = bytes.clone();
        tasks.spawn(async move {
            decode(raw("t", bytes), &BytesDeserializer, &*avro)
                .await
                .map(|d| d.value)
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert_eq!(done.unwrap().unwrap(), json!(1));
    }
    assert_eq!(registry.gets().len(), 1, "{:?}", registry.gets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_as_configured_and_a_subject_is_named_when_asked() {
    let registry = TestRegistry::start();
    let id = registry.register("t-value", r#""int""#, None);
    let bytes = [&[0][..], &id.to_be_bytes(), &[4]].concat();
    registry.require_authorization("Bearer t0k3n");
    let bearer = registry_client(
        &registry,
        &[
            ("bearer.auth.credentials.source", "STATIC_TOKEN"),
            ("bearer.auth.token", "t0k3n"),
        ],
    );
    let avro = AvroJsonDeserializer::new(bearer).subject_lookup(SubjectLookup::TopicName);
    let d = decode(raw("t", bytes.clone()), &BytesDeserializer, &avro)
        .await
        .unwrap();
    assert_eq!(d.value, json!(2));
    let last = registry.gets().pop().unwrap();
    assert_eq!(
        last.query.get("subject").map(String::as_str),
        Some("t-value")
    );

    // Wrong credentials: the registry refuses the client, which is not the record's fault.
    let anonymous = AvroJsonDeserializer::new(registry_client(&registry, &[]));
    let f = decode(raw("t", bytes.clone()), &BytesDeserializer, &anonymous)
        .await
        .unwrap_err();
    assert!(f.error.is_retriable(), "{}", f.error);
    assert!(f.error.to_string().contains("401"), "{}", f.error);

    // Credentials in the URL (basic.auth.credentials.source=URL, the default).
    registry.require_authorization("Basic Ym9iOnB3");
    let url = registry.url().replace("http://", "http://bob:pw@");
    let sr = SchemaRegistry::builder()
        .set("schema.registry.url", url)
        .build()
        .unwrap();
    let d = decode(
        raw("t", bytes),
        &BytesDeserializer,
        &AvroJsonDeserializer::new(sr),
    )
    .await
    .unwrap();
    assert_eq!(d.value, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_registrys_ca_and_a_client_certificate() {
    use kcon_tests::tls::{ClientAuth, Pki, free_addr, socat};

    let registry = TestRegistry::start();
    let id = registry.register("t-value", r#""int""#, None);
    let bytes = [&[0][..], &id.to_be_bytes(), &[6]].concat();
    let pki = Pki::new();
    let listen = free_addr();
    let _tls = socat(
        listen,
        registry.addr(),
        &pki.server(),
        &pki,
        ClientAuth::Required,
    )
    .unwrap();
    let client = pki.client();
    let ca = pki.ca().display().to_string();
    let cert = client.cert.display().to_string();
    let key = client.key.display().to_string();
    let url = format!("https://localhost:{}", listen.port());
    let with = |ca: &str, url: &str, extra: &[(&str, &str)]| {
        let mut b = SchemaRegistry::builder()
            .set("schema.registry.url", url)
            .set("schema.registry.ssl.ca.location", ca)
            .set("schema.registry.ssl.certificate.location", cert.as_str())
            .set("schema.registry.ssl.key.location", key.as_str())
            .set("schema.registry.request.timeout.ms", "5000");
        for (n, v) in extra {
            b = b.set(*n, *v);
        }
        AvroJsonDeserializer::new(b.build().unwrap())
    };
    let d = decode(
        raw("t", bytes.clone()),
        &BytesDeserializer,
        &with(&ca, &url, &[]),
    )
    .await
    .unwrap();
    assert_eq!(d.value, json!(3));
    assert_eq!(registry.gets().len(), 1);

    // A registry whose certificate the client does not trust: retriable, saying TLS.
    let other = pki.other_ca().display().to_string();
    let f = decode(
        raw("t", bytes.clone()),
        &BytesDeserializer,
        &with(&other, &url, &[]),
    )
    .await
    .unwrap_err();
    assert!(f.error.is_retriable());
    assert!(f.error.to_string().contains("TLS"), "{}", f.error);
    // A certificate for another host name: refused, unless host names are not checked.
    let elsewhere = free_addr();
    let _tls2 = socat(
        elsewhere,
        registry.addr(),
        &pki.elsewhere(),
        &pki,
        ClientAuth::None,
    )
    .unwrap();
    let url2 = format!("https://localhost:{}", elsewhere.port());
    let f = decode(
        raw("t", bytes.clone()),
        &BytesDeserializer,
        &with(&ca, &url2, &[]),
    )
    .await
    .unwrap_err();
    assert!(f.error.is_retriable());
    assert!(f.error.to_string().contains("TLS"), "{}", f.error);
    let no_check = with(
        &ca,
        &url2,
        &[(
            "schema.registry.ssl.endpoint.identification.algorithm",
            "none",
        )],
    );
    let d = decode(raw("t", bytes.clone()), &BytesDeserializer, &no_check)
        .await
        .unwrap();
    assert_eq!(d.value, json!(3));
    // A bad CA file is a configuration error naming the property.
    let e = SchemaRegistry::builder()
        .set("schema.registry.url", url.as_str())
        .set("schema.registry.ssl.ca.location", "/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert_eq!(e.property(), "schema.registry.ssl.ca.location");
}
