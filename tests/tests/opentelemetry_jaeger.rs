//! kcon-opentelemetry against a real tracing backend: Jaeger v2 (`kcon_tests::jaeger`), which
//! receives the spans over OTLP/HTTP from OpenTelemetry's SDK with its OTLP exporter, as a
//! service would send them, and answers its query API as a tracing UI reads it. On Apache
//! Kafka 4.4 (`Kafka::single()`): two records sent under an application's span and handled by
//! a `Processor` whose process spans are the send spans' children are one trace in Jaeger,
//! with the semantic conventions' attributes, the retried record's failed try ending with a
//! `kcon.retry` event and the poison record's with `kcon.dead_letter`. And the messaging
//! metrics, exported over OTLP by the SDK's periodic reader, reach the Collector in Jaeger and
//! are served by its Prometheus exporter with the counts of a known run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon::{Failure, Processor};
use kcon_opentelemetry::{Conventions, ProcessParent, Telemetry};
use kcon_produce::ProducerRecord;
use kcon_tests::brokers::unique_name;
use kcon_tests::jaeger::Jaeger;
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::login::{consumer, pool_config, producer, topic};
use opentelemetry::Context;
use opentelemetry::trace::{
    FutureExt as _, Span as _, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::Value;

/// How long the processor may take over the records, group join included.
const WITHIN: Duration = Duration::from_secs(60);

/// A tag's value on a span of Jaeger's query API, as text.
fn tag(span: &Value, key: &str) -> Option<String> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| match &t["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

/// The names of a span's events (Jaeger's logs, each with an `event` field), in order.
fn events(span: &Value) -> Vec<String> {
    span["logs"]
        .as_array()
        .map(|logs| {
            logs.iter()
                .filter_map(|l| {
                    l["fields"]
                        .as_array()?
                        .iter()
                        .find(|f| f["key"] == "event")
                        .and_then(|f| f["value"].as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The span id a span is the child of (its CHILD_OF reference), if any.
fn parent(span: &Value) -> Option<String> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .and_then(|r| r["spanID"].as_str())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn records_sent_and_processed_are_one_trace_in_jaeger_with_a_retry_and_a_dead_letter() {
    let jaeger = Jaeger::start();
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let dead_letters = topic.clone() + ".dlq";
    let pool = kcon_pool::Pool::new(pool_config(bootstrap, &[])).unwrap();
    create(&pool, &[NewTopic::new(&dead_letters, 1)]).await;
    let group = unique_name("otel-jaeger");

    // The SDK as a service sets it up: a batch processor exporting over OTLP/HTTP, on its own
    // thread (built and shut down off the runtime: the exporter's blocking HTTP client must
    // not be made or dropped on it). Beside it, an in-memory exporter tells the test when a
    // span has ended.
    let endpoint = jaeger.otlp_traces_endpoint();
    let ended = InMemorySpanExporter::default();
    let memory = ended.clone();
    let provider = tokio::task::spawn_blocking(move || {
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .expect("an OTLP/HTTP span exporter");
        SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("kcon-orders").build())
            .with_batch_exporter(otlp)
            .with_simple_exporter(memory)
            .build()
    })
    .await
    .unwrap();
    let telemetry = Telemetry::builder()
        .tracer_provider(&provider)
        .propagator(TraceContextPropagator::new())
        .conventions(Conventions::Current)
        .process_parent(ProcessParent::Parent)
        .consumer_group(&group)
        .client_id("kcon-jaeger-test")
        .build();

    // Two orders sent under the application's `checkout` span.
    let producer = producer(bootstrap, &[]);
    let checkout = provider.tracer("shop").start("checkout");
    let trace_id = checkout.span_context().trace_id().to_string();
    let checkout_id = checkout.span_context().span_id().to_string();
    let cx = Context::current_with_span(checkout);
    let mut offsets = BTreeMap::new();
    for value in ["order-1", "poison"] {
        let delivered = telemetry
            .send(&producer, ProducerRecord::new(&topic, value))
            .with_context(cx.clone())
            .await
            .unwrap()
            .await
            .unwrap();
        offsets.insert(value, delivered.offset.expect("an offset"));
    }
    cx.span().end();
    producer.close().await.unwrap();

    // order-1 fails once retriably and then succeeds; the poison record fails for good and is
    // dead-lettered.
    let mut consumer = consumer(bootstrap, &[], &group);
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer)
        .set("errors.tolerance", "all")
        .set("errors.retry.backoff.ms", "100")
        .dead_letter_topic(&dead_letters)
        .hooks(telemetry.policy_hooks())
        .build()
        .unwrap();
    let tries = Arc::new(Mutex::new(Vec::new()));
    let name = format!("process {topic}");
    // Until the three tries' spans ended: the dead-lettered one's once its dead letter is
    // acknowledged.
    let all_ended = async {
        loop {
            let spans = ended.get_finished_spans().unwrap();
            if spans.iter().filter(|s| s.name == name).count() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let log = tries.clone();
    let run = processor.run_until(all_ended, async |r| {
        let value =
            String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned();
        let attempt = {
            let mut log = log.lock().unwrap();
            log.push(value.clone());
            log.iter().filter(|v| **v == value).count()
        };
        telemetry
            .process(r, async move {
                match (value.as_str(), attempt) {
                    ("order-1", 1) => Err(Failure::retriable("the ledger timed out")),
                    ("poison", _) => Err(Failure::permanent("not an order")),
                    _ => Ok(()),
                }
            })
            .await
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the records processed in time")
        .unwrap();
    processor.close().await.unwrap();
    drop(telemetry);
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .expect("the batch exported and the provider shut down");

    // checkout, two sends, three tries.
    let trace = jaeger.trace(&trace_id, 6, Duration::from_secs(30));
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 6, "{trace:#}");
    let process = spans[0]["processID"].as_str().unwrap();
    assert_eq!(trace["processes"][process]["serviceName"], "kcon-orders");
    let named =
        |n: &str| -> Vec<&Value> { spans.iter().filter(|s| s["operationName"] == n).collect() };
    assert_eq!(named("checkout").len(), 1);
    let sends = named(&format!("send {topic}"));
    assert_eq!(sends.len(), 2, "{trace:#}");
    let mut send_of_offset = BTreeMap::new();
    for send in &sends {
        assert_eq!(parent(send).as_deref(), Some(checkout_id.as_str()));
        assert_eq!(tag(send, "span.kind").as_deref(), Some("producer"));
        for (key, value) in [
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", topic.as_str()),
            ("messaging.destination.partition.id", "0"),
            ("messaging.client.id", "kcon-jaeger-test"),
        ] {
            assert_eq!(tag(send, key).as_deref(), Some(value), "{key}: {send:#}");
        }
        let offset = tag(send, "messaging.kafka.offset").expect("the send span's offset");
        send_of_offset.insert(offset, send["spanID"].as_str().unwrap().to_owned());
    }

    let processed = named(&name);
    assert_eq!(processed.len(), 3, "{trace:#}");
    let mut by_record: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for span in &processed {
        assert_eq!(tag(span, "span.kind").as_deref(), Some("consumer"));
        assert_eq!(
            tag(span, "messaging.consumer.group.name").as_deref(),
            Some(group.as_str())
        );
        assert_eq!(
            tag(span, "messaging.operation.type").as_deref(),
            Some("process")
        );
        let offset = tag(span, "messaging.kafka.offset").expect("the process span's offset");
        // Each try is a child of its record's send span.
        assert_eq!(
            parent(span),
            send_of_offset.get(&offset).cloned(),
            "{span:#}"
        );
        by_record
            .entry(offset.parse().unwrap())
            .or_default()
            .push(span);
    }

    let mut order = by_record.remove(&offsets["order-1"]).unwrap();
    order.sort_by_key(|s| s["startTime"].as_i64());
    assert_eq!(order.len(), 2);
    assert_eq!(events(order[0]), ["kcon.failure", "kcon.retry"]);
    assert_eq!(tag(order[0], "otel.status_code").as_deref(), Some("ERROR"));
    assert_eq!(events(order[1]), Vec::<String>::new());
    assert_eq!(tag(order[1], "otel.status_code"), None);
    assert_eq!(tag(order[1], "kcon.attempt").as_deref(), Some("2"));

    let poison = by_record.remove(&offsets["poison"]).unwrap();
    assert_eq!(poison.len(), 1);
    assert_eq!(events(poison[0]), ["kcon.failure", "kcon.dead_letter"]);
    assert_eq!(tag(poison[0], "otel.status_code").as_deref(), Some("ERROR"));
}

/// The value of the Prometheus series `name` whose labels include every one of `labels`
/// (`key="value"`), if one is in `text`.
fn series(text: &str, name: &str, labels: &[String]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (metric, value) = l.rsplit_once(' ')?;
            let (n, rest) = metric.split_once('{').unwrap_or((metric, ""));
            (n == name && labels.iter().all(|label| rest.contains(label.as_str())))
                .then(|| value.parse().ok())
                .flatten()
        })
        .next()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_messaging_metrics_reach_a_collector_over_otlp_with_the_counts_of_a_run() {
    const RECORDS: usize = 3;
    let jaeger = Jaeger::start();
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let group = unique_name("otel-metrics");

    // The SDK as a service sets it up: a periodic reader exporting over OTLP/HTTP (cumulative,
    // the SDK's default), on its own thread.
    let endpoint = jaeger.otlp_metrics_endpoint();
    let provider = tokio::task::spawn_blocking(move || {
        let otlp = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .expect("an OTLP/HTTP metric exporter");
        SdkMeterProvider::builder()
            .with_resource(Resource::builder().with_service_name("kcon-orders").build())
            .with_reader(
                PeriodicReader::builder(otlp)
                    .with_interval(Duration::from_millis(500))
                    .build(),
            )
            .build()
    })
    .await
    .unwrap();
    let telemetry = Telemetry::builder()
        .meter_provider(&provider)
        .conventions(Conventions::Current)
        .consumer_group(&group)
        .client_id("kcon-metrics-test")
        .build();

    let producer = producer(bootstrap, &[]);
    for i in 0..RECORDS {
        telemetry
            .send(&producer, ProducerRecord::new(&topic, format!("order-{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();

    let mut consumer = consumer(bootstrap, &[], &group);
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer).build().unwrap();
    let handled = Arc::new(Mutex::new(0));
    let count = handled.clone();
    let all_handled = async {
        while *handled.lock().unwrap() < RECORDS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let run = processor.run_until(all_handled, async |r| {
        telemetry
            .process(r, async {
                *count.lock().unwrap() += 1;
                Ok(())
            })
            .await
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the records processed in time")
        .unwrap();
    processor.close().await.unwrap();
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .expect("the last collection exported and the provider shut down");

    let on_topic = vec![
        format!("messaging_destination_name=\"{topic}\""),
        "messaging_system=\"kafka\"".to_string(),
        "job=\"kcon-orders\"".to_string(),
    ];
    let mut consumed = on_topic.clone();
    consumed.push(format!("messaging_consumer_group_name=\"{group}\""));
    let n = RECORDS as f64;
    let text = jaeger.scrape(
        |text| {
            series(text, "messaging_client_sent_messages_total", &on_topic) == Some(n)
                && series(text, "messaging_client_consumed_messages_total", &consumed) == Some(n)
        },
        Duration::from_secs(30),
    );
    // The two histograms' counts, and the conventions' bucket boundaries, in seconds: every
    // send and every try took less than 10 s, and the SDK's default boundaries (0, 5, 10, ...)
    // would have no bound under 5.
    let with = |labels: &[String], le: &str| {
        let mut labels = labels.to_vec();
        labels.push(format!("le=\"{le}\""));
        labels
    };
    for (name, labels) in [
        ("messaging_process_duration_seconds_count", consumed.clone()),
        (
            "messaging_client_operation_duration_seconds_count",
            on_topic.clone(),
        ),
        (
            "messaging_client_operation_duration_seconds_bucket",
            with(&on_topic, "10"),
        ),
    ] {
        assert_eq!(series(&text, name, &labels), Some(n), "{name}:\n{text}");
    }
    assert!(
        series(
            &text,
            "messaging_process_duration_seconds_bucket",
            &with(&consumed, "0.01")
        )
        .is_some(),
        "a bucket of 10 ms:\n{text}"
    );
}
