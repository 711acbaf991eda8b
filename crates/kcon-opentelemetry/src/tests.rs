//! Process spans on OpenTelemetry's SDK with its in-memory exporters (sends need a broker:
//! tests/tests/opentelemetry_kafka.rs).

use opentelemetry::trace::{
    Span as _, SpanId, Status, TraceContextExt, Tracer, TracerProvider as _,
};
use std::time::Duration;

use opentelemetry::{Key, Value};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

use super::*;

struct Sdk {
    spans: InMemorySpanExporter,
    tracing: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meters: SdkMeterProvider,
}

fn sdk() -> Sdk {
    let spans = InMemorySpanExporter::default();
    let tracing = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let metrics = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    Sdk {
        spans,
        tracing,
        metrics,
        meters,
    }
}

fn telemetry(sdk: &Sdk, parent: ProcessParent) -> Telemetry {
    Telemetry::builder()
        .tracer_provider(&sdk.tracing)
        .meter_provider(&sdk.meters)
        .propagator(TraceContextPropagator::new())
        .conventions(Conventions::Both)
        .process_parent(parent)
        .consumer_group("billing")
        .record_keys(true)
        .build()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

/// A record carrying the context of a span a "producer" started on `sdk`'s tracer; that
/// span's context.
fn carried(sdk: &Sdk, t: &Telemetry) -> (Record, opentelemetry::trace::SpanContext) {
    let tracer = sdk.tracing.tracer("producer");
    let span = tracer.start("orders publish");
    let context = span.span_context().clone();
    let cx = Context::current_with_span(span);
    let mut record = Record::new("orders", 2, 41, Some("k1".into()), Some("v".into()));
    t.inject(&cx, &mut record.headers);
    (record, context)
}

#[tokio::test]
async fn a_process_span_is_linked_to_the_records_context_by_default() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let (record, sent) = carried(&sdk, &t);
    let inside = t
        .process(&record, async {
            Ok::<_, Failure>(Context::current().span().span_context().clone())
        })
        .await
        .unwrap();
    let spans = sdk.spans.get_finished_spans().unwrap();
    let span = spans.iter().find(|s| s.name == "process orders").unwrap();
    assert_eq!(span.span_kind, SpanKind::Consumer);
    // Its own trace, linked to the producer's span.
    assert_ne!(span.span_context.trace_id(), sent.trace_id());
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(span.links.links.len(), 1);
    // The context as the headers carried it: the same span, from another process.
    let link = &span.links.links[0].span_context;
    assert_eq!(
        (link.trace_id(), link.span_id()),
        (sent.trace_id(), sent.span_id())
    );
    assert!(link.is_remote());
    // The handler ran with the process span current.
    assert_eq!(&inside, &span.span_context);
    for (key, value) in [
        ("messaging.system", Value::from("kafka")),
        ("messaging.operation", Value::from("process")),
        ("messaging.operation.name", Value::from("process")),
        ("messaging.destination.name", Value::from("orders")),
        ("messaging.destination.partition.id", Value::from("2")),
        ("messaging.kafka.message.offset", Value::from(41_i64)),
        ("messaging.kafka.offset", Value::from(41_i64)),
        ("messaging.kafka.consumer.group", Value::from("billing")),
        ("messaging.consumer.group.name", Value::from("billing")),
        ("messaging.kafka.message.key", Value::from("k1")),
        ("messaging.message.body.size", Value::from(1_i64)),
    ] {
        assert_eq!(attribute(span, key), Some(&value), "{key}");
    }
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn as_a_child_the_process_span_continues_the_producers_trace() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Parent);
    let (record, sent) = carried(&sdk, &t);
    t.process(&record, async { Ok::<_, Failure>(()) })
        .await
        .unwrap();
    let spans = sdk.spans.get_finished_spans().unwrap();
    let span = spans.iter().find(|s| s.name == "process orders").unwrap();
    assert_eq!(span.span_context.trace_id(), sent.trace_id());
    assert_eq!(span.parent_span_id, sent.span_id());
    assert!(span.links.links.is_empty());
}

#[tokio::test]
async fn a_failure_and_a_retry_show_on_their_spans_and_in_the_metrics() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let (record, _) = carried(&sdk, &t);
    let failed = t
        .process(&record, async {
            Err::<(), _>(Failure::retriable("the ledger timed out").with_class("Timeout"))
        })
        .await;
    assert!(failed.is_err());
    let plain = kcon::deserialize::StringDeserializer;
    let mut again = kcon::deserialize::decode(record, &plain, &plain)
        .await
        .unwrap();
    again.attempt = 2;
    t.process(&again, async { Ok::<_, Failure>(()) })
        .await
        .unwrap();

    let spans = sdk.spans.get_finished_spans().unwrap();
    let tries: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process orders")
        .collect();
    assert_eq!(tries.len(), 2);
    assert_eq!(
        tries[0].status,
        Status::error("retriable failure (Timeout): the ledger timed out")
    );
    assert_eq!(
        attribute(tries[0], "error.type"),
        Some(&Value::from("Timeout"))
    );
    let event = &tries[0].events.events[0];
    assert_eq!(event.name, "kcon.failure");
    assert_eq!(event.attributes[0].value, Value::from(true));
    assert_eq!(attribute(tries[0], "kcon.attempt"), None);
    assert_eq!(
        attribute(tries[1], "kcon.attempt"),
        Some(&Value::from(2_i64))
    );
    assert_eq!(tries[1].status, Status::Unset);

    sdk.meters.force_flush().unwrap();
    let consumed = consumed_by_error(&sdk.metrics);
    assert_eq!(consumed, [(None, 1), (Some("Timeout".to_owned()), 1)]);
}

/// `messaging.client.consumed.messages` by `error.type` (none for a success), sorted.
fn consumed_by_error(exporter: &InMemoryMetricExporter) -> Vec<(Option<String>, u64)> {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    let batches = exporter.get_finished_metrics().unwrap();
    let last = batches.last().expect("metrics exported");
    let mut out = Vec::new();
    for scope in last.scope_metrics() {
        for metric in scope.metrics() {
            if metric.name() != "messaging.client.consumed.messages" {
                continue;
            }
            let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
                panic!("a u64 sum: {:?}", metric.data());
            };
            for point in sum.data_points() {
                let error = point
                    .attributes()
                    .find(|kv| kv.key.as_str() == "error.type")
                    .map(|kv| kv.value.to_string());
                out.push((error, point.value()));
            }
        }
    }
    out.sort();
    out
}

/// A `FailureInfo` as the processor hands its hooks one.
async fn info() -> FailureInfo {
    let bad = Record::new("orders", 0, 1, None, Some(vec![0xff].into()));
    let plain = kcon::deserialize::StringDeserializer;
    let failure = kcon::deserialize::decode(bad, &plain, &plain)
        .await
        .unwrap_err();
    FailureInfo::from(&failure)
}

fn processed(sdk: &Sdk) -> Vec<SpanData> {
    sdk.spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "process orders")
        .collect()
}

fn events(span: &SpanData) -> Vec<String> {
    span.events
        .events
        .iter()
        .map(|e| e.name.to_string())
        .collect()
}

#[tokio::test]
async fn with_policy_hooks_a_failed_try_ends_with_what_became_of_its_record() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let hooks = t.policy_hooks();
    let (retried, _) = carried(&sdk, &t);
    let mut dead = retried.clone();
    dead.offset = 42;
    for r in [&retried, &dead] {
        let failed = t
            .process(r, async { Err::<(), _>(Failure::permanent("poison")) })
            .await;
        assert!(failed.is_err());
    }
    // Open until the policy says what became of the records.
    assert!(processed(&sdk).is_empty());

    hooks.on_retry(&retried, &info().await, 1, Duration::from_millis(250));
    hooks.on_dead_letter(&dead, &info().await);
    let spans = processed(&sdk);
    assert_eq!(spans.len(), 2);
    let offset = |s: &SpanData| attribute(s, "messaging.kafka.offset").cloned();
    let first = spans
        .iter()
        .find(|s| offset(s) == Some(Value::from(41_i64)))
        .unwrap();
    assert_eq!(events(first), ["kcon.failure", "kcon.retry"]);
    let retry = &first.events.events[1];
    assert_eq!(
        retry
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.clone()))
            .collect::<Vec<_>>(),
        [
            ("kcon.attempt".to_owned(), Value::from(1_i64)),
            ("kcon.retry.delay_ms".to_owned(), Value::from(250_i64)),
        ]
    );
    let second = spans
        .iter()
        .find(|s| offset(s) == Some(Value::from(42_i64)))
        .unwrap();
    assert_eq!(events(second), ["kcon.failure", "kcon.dead_letter"]);

    // A record told of twice (or never failed) changes nothing.
    hooks.on_skip(&dead, &info().await);
    assert_eq!(processed(&sdk).len(), 2);
}

#[tokio::test]
async fn failed_tries_waiting_for_their_outcome_are_bounded() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let _hooks = t.policy_hooks();
    let (mut record, _) = carried(&sdk, &t);
    for offset in 0..=PARKED_AT_MOST as i64 {
        record.offset = offset;
        let failed = t
            .process(&record, async {
                Err::<(), _>(Failure::permanent("poison"))
            })
            .await;
        assert!(failed.is_err());
    }
    // One past the bound: the oldest ended, without an outcome.
    let spans = processed(&sdk);
    assert_eq!(spans.len(), 1);
    assert_eq!(
        attribute(&spans[0], "messaging.kafka.offset"),
        Some(&Value::from(0_i64))
    );
    assert_eq!(events(&spans[0]), ["kcon.failure"]);
}

#[tokio::test]
async fn without_policy_hooks_a_failed_try_ends_at_once() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let (record, _) = carried(&sdk, &t);
    let failed = t
        .process(&record, async {
            Err::<(), _>(Failure::permanent("poison"))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(processed(&sdk).len(), 1);
}

#[tokio::test]
async fn a_share_consumers_redelivered_record_carries_its_delivery_count() {
    let sdk = sdk();
    let t = telemetry(&sdk, ProcessParent::Link);
    let (mut record, _) = carried(&sdk, &t);
    record.delivery_count = Some(1);
    t.process(&record, async { Ok::<_, Failure>(()) })
        .await
        .unwrap();
    record.delivery_count = Some(3);
    t.process(&record, async { Ok::<_, Failure>(()) })
        .await
        .unwrap();
    let spans = sdk.spans.get_finished_spans().unwrap();
    let tries: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "process orders")
        .map(|s| attribute(s, "kcon.attempt").cloned())
        .collect();
    assert_eq!(tries, [None, Some(Value::from(3_i64))]);
}
