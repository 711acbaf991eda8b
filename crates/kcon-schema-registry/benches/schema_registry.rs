//! What Schema Registry decoding costs per record once the schema is cached, against plain
//! JSON of the same record: a payment (a string, a double, a nullable string, an enum) as
//! Avro written by Confluent's framing, read into a serde type (`AvroDeserializer`) and into
//! JSON (`AvroJsonDeserializer`), and as JSON text read by `JsonDeserializer`.
//!
//! The registry is a loopback server answering every lookup with the schema; each benchmark
//! warms the cache first, so no request is made while measuring. Throughput is in records,
//! 1000 per iteration. Run: `cargo bench -p kcon-schema-registry --bench schema_registry`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kcon::Record;
use kcon::deserialize::{BytesDeserializer, Deserializer, JsonDeserializer, decode};
use kcon_schema_registry::apache_avro::{self, Schema, types::Value};
use kcon_schema_registry::{AvroDeserializer, AvroJsonDeserializer, SchemaRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCHEMA: &str = r#"{"type":"record","name":"Payment","fields":[
    {"name":"id","type":"string"},{"name":"amount","type":"double"},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}}]}"#;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Payment {
    id: String,
    amount: f64,
    note: Option<String>,
    status: String,
}

const RECORDS: usize = 1000;

/// A registry that answers every request with the schema, on a thread of its own.
fn registry() -> String {
    let answer = serde_json::json!({ "schema": SCHEMA }).to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                answer.len()
                            );
                            if s.write_all(head.as_bytes()).await.is_err()
                                || s.write_all(answer.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

fn records() -> (Vec<Record>, Vec<Record>) {
    let schema = Schema::parse_str(SCHEMA).unwrap();
    let mut avro = Vec::new();
    let mut json = Vec::new();
    for i in 0..RECORDS {
        let note = (i % 2 == 0).then(|| format!("note {i}"));
        let value = Value::Record(vec![
            ("id".into(), Value::String(format!("payment-{i}"))),
            ("amount".into(), Value::Double(i as f64 * 1.25)),
            (
                "note".into(),
                match &note {
                    Some(n) => Value::Union(1, Box::new(Value::String(n.clone()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("status".into(), Value::Enum(1, "PAID".into())),
        ]);
        let mut framed = vec![0, 0, 0, 0, 1];
        framed.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
        avro.push(Record::new(
            "t",
            0,
            i as i64,
            None,
            Some(Bytes::from(framed)),
        ));
        let text = serde_json::json!({"id": format!("payment-{i}"), "amount": i as f64 * 1.25,
                                      "note": note, "status": "PAID"});
        json.push(Record::new(
            "t",
            0,
            i as i64,
            None,
            Some(Bytes::from(text.to_string())),
        ));
    }
    (avro, json)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = registry();
    let sr = rt.block_on(async { SchemaRegistry::new(&url).unwrap() });
    let typed = AvroDeserializer::<Payment>::new(sr.clone());
    let as_json = AvroJsonDeserializer::new(sr);
    let plain = JsonDeserializer::<Payment>::new();
    let (avro, json) = records();
    let mut group = c.benchmark_group("schema_registry");
    group.throughput(Throughput::Elements(RECORDS as u64));

    fn run<D: Deserializer>(rt: &tokio::runtime::Runtime, records: &[Record], d: &D) -> usize {
        rt.block_on(async {
            let mut n = 0;
            for r in records {
                let decoded = decode(r.clone(), &BytesDeserializer, d).await;
                n += usize::from(black_box(decoded).is_ok());
            }
            n
        })
    }
    assert_eq!(run(&rt, &avro, &typed), RECORDS, "warm and reading");
    assert_eq!(run(&rt, &avro, &as_json), RECORDS);
    assert_eq!(run(&rt, &json, &plain), RECORDS);
    group.bench_function("avro_to_serde_type", |b| b.iter(|| run(&rt, &avro, &typed)));
    group.bench_function("avro_to_json", |b| b.iter(|| run(&rt, &avro, &as_json)));
    group.bench_function("plain_json_to_serde_type", |b| {
        b.iter(|| run(&rt, &json, &plain))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
