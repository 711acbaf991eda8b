//! kcon-opentelemetry on Apache Kafka 4.4 (`Kafka::single()`), with OpenTelemetry's SDK and its
//! in-memory exporters: a record sent under an application's span and handled by a `Processor` is
//! one trace (send span under the application's, process span under the send span) or, by default,
//! a process span linked to the send span; the spans carry the topic, partition and offset the
//! broker gave; a retried record's tries each have a span, the failed one in error and ended with a
//! `kcon.retry` event by the policy hooks; a dead-lettered record's span ends with
//! `kcon.dead_letter`; the sent and consumed counts reach the metrics; `recv_batch`'s receive spans
//! link every record's send span; a producer's hooks carry the current context in the headers of
//! records sent without a send span; a consumer's lag is reported as gauges while observed; sends
//! the sampler drops carry their context and are counted; an exactly-once handler's output carries
//! the context of a `create` span under its process span; a share consumer's batches have receive
//! spans and a redelivered record's process span its delivery count. Across clients, with the Java
//! client 4.4 under OpenTelemetry's instrumentation of it (`tests/java/OtelPeer.java`): a record
//! the Java producer sent is continued by kcon's process span (child or link), and one kcon sent by
//! the Java consumer's process span, the trace ids equal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon::{Failure, Processor, Record};
use kcon_opentelemetry::{Conventions, ProcessParent, Telemetry};
use kcon_produce::{Delivered, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::recv_n;
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::login::{consumer, producer, topic};
use kcon_tests::peers::{JavaSpan, java_traced};
use opentelemetry::trace::{
    FutureExt as _, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, Tracer,
    TracerProvider as _,
};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use tokio::sync::Notify;

/// How long a processor may take to get through a test's records, group join included.
const WITHIN: Duration = Duration::from_secs(60);

struct Sdk {
    spans: InMemorySpanExporter,
    tracing: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meters: SdkMeterProvider,
}

impl Sdk {
    fn new() -> Sdk {
        Sdk::with_temporality(Temporality::Cumulative)
    }

    /// Metrics of `temporality`: a delta collection of a gauge has only the points observed
    /// since the last one.
    fn with_temporality(temporality: Temporality) -> Sdk {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporterBuilder::new()
            .with_temporality(temporality)
            .build();
        Sdk {
            tracing: SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build(),
            spans,
            meters: SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics.clone()).build())
                .build(),
            metrics,
        }
    }

    fn telemetry(&self, parent: ProcessParent, group: &str) -> Telemetry {
        Telemetry::builder()
            .tracer_provider(&self.tracing)
            .meter_provider(&self.meters)
            .propagator(TraceContextPropagator::new())
            .conventions(Conventions::Current)
            .process_parent(parent)
            .consumer_group(group)
            .client_id("kcon-otel-test")
            .build()
    }

    fn span(&self, name: &str) -> Vec<SpanData> {
        self.spans
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// A u64 counter's points: (`error.type` or none, value), sorted.
    fn counted(&self, metric_name: &str) -> Vec<(Option<String>, u64)> {
        self.meters.force_flush().unwrap();
        let batches = self.metrics.get_finished_metrics().unwrap();
        let last = batches.last().expect("metrics exported");
        let mut out = Vec::new();
        for metric in last.scope_metrics().flat_map(|s| s.metrics()) {
            if metric.name() != metric_name {
                continue;
            }
            let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
                panic!("{metric_name}: a u64 sum, not {:?}", metric.data());
            };
            for point in sum.data_points() {
                let error = point
                    .attributes()
                    .find(|kv| kv.key.as_str() == "error.type")
                    .map(|kv| kv.value.to_string());
                out.push((error, point.value()));
            }
        }
        out.sort();
        out
    }
}

impl Sdk {
    /// The last collection's points of a gauge: (`messaging.destination.name`, value).
    fn gauge_i64(&self, name: &str) -> Vec<(String, i64)> {
        self.gauge(name, |data| match data {
            AggregatedMetrics::I64(MetricData::Gauge(g)) => g
                .data_points()
                .map(|p| (destination(p.attributes()), p.value()))
                .collect(),
            other => panic!("{name}: an i64 gauge, not {other:?}"),
        })
    }

    fn gauge_f64(&self, name: &str) -> Vec<(String, f64)> {
        self.gauge(name, |data| match data {
            AggregatedMetrics::F64(MetricData::Gauge(g)) => g
                .data_points()
                .map(|p| (destination(p.attributes()), p.value()))
                .collect(),
            other => panic!("{name}: an f64 gauge, not {other:?}"),
        })
    }

    /// A metric's points in what one collection exports (nothing when it exports nothing).
    fn gauge<T>(&self, name: &str, points: impl Fn(&AggregatedMetrics) -> Vec<T>) -> Vec<T> {
        let before = self.metrics.get_finished_metrics().unwrap().len();
        self.meters.force_flush().unwrap();
        let batches = self.metrics.get_finished_metrics().unwrap();
        batches[before..]
            .iter()
            .flat_map(|b| b.scope_metrics())
            .flat_map(|s| s.metrics())
            .filter(|m| m.name() == name)
            .flat_map(|m| points(m.data()))
            .collect()
    }
}

fn destination<'a>(mut attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    attributes
        .find(|kv| kv.key.as_str() == "messaging.destination.name")
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Sends one record of value `value` to `topic` with `telemetry`, inside an application span
/// `checkout`; that span's context and where the record went.
async fn send_under_checkout(
    sdk: &Sdk,
    telemetry: &Telemetry,
    bootstrap: &str,
    topic: &str,
) -> (SpanContext, Delivered) {
    let producer = producer(bootstrap, &[]);
    let checkout = sdk.tracing.tracer("shop").start("checkout");
    let checkout_context = checkout.span_context().clone();
    let cx = Context::current_with_span(checkout);
    let record = ProducerRecord::new(topic, "order-1").with_key("customer-7");
    let delivered = telemetry
        .send(&producer, record)
        .with_context(cx.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    cx.span().end();
    producer.close().await.unwrap();
    (checkout_context, delivered)
}

/// Runs a processor in a new group over `topic` until `handler` was called `calls` times; the
/// records it was handed.
async fn process(
    bootstrap: &str,
    topic: &str,
    group: &str,
    telemetry: &Telemetry,
    calls: usize,
    fail_first: bool,
) -> Vec<Record> {
    let mut consumer = consumer(bootstrap, &[], group);
    consumer.subscribe([topic]).unwrap();
    let mut processor = Processor::builder(consumer)
        .set("errors.retry.backoff.ms", "100")
        .hooks(telemetry.policy_hooks())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Notify::new());
    let stop = done.clone();
    let log = seen.clone();
    let run = processor.run_until(stop.notified(), async move |r| {
        telemetry
            .process(r, async {
                let mut log = log.lock().unwrap();
                log.push(r.record.clone());
                if log.len() == calls {
                    done.notify_one();
                }
                if fail_first && log.len() == 1 {
                    return Err(Failure::retriable("the ledger timed out").with_class("Timeout"));
                }
                Ok(())
            })
            .await
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the handler called in time")
        .unwrap();
    processor.close().await.unwrap();
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

#[tokio::test]
async fn a_record_sent_and_processed_is_one_trace_when_the_process_span_is_a_child() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 3).await;
    let group = unique_name("otel");
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::Parent, &group);
    let (checkout, delivered) = send_under_checkout(&sdk, &telemetry, bootstrap, &topic).await;
    let offset = delivered.offset.expect("an offset");

    let send = sdk.span(&format!("send {topic}"));
    assert_eq!(send.len(), 1, "one send span: {send:?}");
    let send = &send[0];
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(send.span_context.trace_id(), checkout.trace_id());
    assert_eq!(send.parent_span_id, checkout.span_id());
    assert_eq!(send.status, Status::Unset);
    for (key, value) in [
        ("messaging.system", Value::from("kafka")),
        ("messaging.operation.name", Value::from("send")),
        ("messaging.operation.type", Value::from("send")),
        ("messaging.destination.name", Value::from(topic.clone())),
        (
            "messaging.destination.partition.id",
            Value::from(delivered.partition.to_string()),
        ),
        ("messaging.kafka.offset", Value::from(offset)),
        ("messaging.client.id", Value::from("kcon-otel-test")),
        ("messaging.message.body.size", Value::from(7_i64)),
    ] {
        assert_eq!(attribute(send, key), Some(&value), "{key}");
    }
    // Keys only when asked for.
    assert_eq!(attribute(send, "messaging.kafka.message.key"), None);

    let records = process(bootstrap, &topic, &group, &telemetry, 1, false).await;
    assert_eq!(records.len(), 1);
    let traceparent = records[0]
        .headers
        .iter()
        .find(|(k, _)| k.as_ref() == b"traceparent")
        .and_then(|(_, v)| v.clone())
        .expect("a traceparent header");
    assert_eq!(
        std::str::from_utf8(&traceparent).unwrap(),
        format!(
            "00-{}-{}-01",
            send.span_context.trace_id(),
            send.span_context.span_id()
        )
    );
    let processed = sdk.span(&format!("process {topic}"));
    assert_eq!(processed.len(), 1);
    let processed = &processed[0];
    assert_eq!(processed.span_kind, SpanKind::Consumer);
    assert_eq!(processed.span_context.trace_id(), checkout.trace_id());
    assert_eq!(processed.parent_span_id, send.span_context.span_id());
    assert!(processed.links.links.is_empty());
    for (key, value) in [
        ("messaging.operation.type", Value::from("process")),
        ("messaging.destination.name", Value::from(topic.clone())),
        (
            "messaging.destination.partition.id",
            Value::from(delivered.partition.to_string()),
        ),
        ("messaging.kafka.offset", Value::from(offset)),
        ("messaging.consumer.group.name", Value::from(group.clone())),
    ] {
        assert_eq!(attribute(processed, key), Some(&value), "{key}");
    }
    assert_eq!(sdk.counted("messaging.client.sent.messages"), [(None, 1)]);
    assert_eq!(
        sdk.counted("messaging.client.consumed.messages"),
        [(None, 1)]
    );
}

#[tokio::test]
async fn by_default_each_try_of_a_record_has_a_process_span_linked_to_its_send_span() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let group = unique_name("otel");
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), &group);
    let (checkout, _) = send_under_checkout(&sdk, &telemetry, bootstrap, &topic).await;
    let send = sdk.span(&format!("send {topic}")).remove(0);

    // The first try fails retriably, the second succeeds.
    let records = process(bootstrap, &topic, &group, &telemetry, 2, true).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].offset, records[1].offset);
    let tries = sdk.span(&format!("process {topic}"));
    assert_eq!(tries.len(), 2, "{tries:?}");
    for t in &tries {
        // Each its own trace, linked to the send span.
        assert_ne!(t.span_context.trace_id(), checkout.trace_id());
        assert_eq!(t.parent_span_id, SpanId::INVALID);
        let links: Vec<_> = t
            .links
            .links
            .iter()
            .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
            .collect();
        assert_eq!(
            links,
            [(send.span_context.trace_id(), send.span_context.span_id())]
        );
    }
    let (failed, passed) = (&tries[0], &tries[1]);
    assert!(matches!(failed.status, Status::Error { .. }), "{failed:?}");
    assert_eq!(
        attribute(failed, "error.type"),
        Some(&Value::from("Timeout"))
    );
    let events: Vec<_> = failed
        .events
        .events
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(events, ["kcon.failure", "kcon.retry"]);
    assert_eq!(attribute(passed, "kcon.attempt"), Some(&Value::from(2_i64)));
    assert_eq!(passed.status, Status::Unset);
    assert_eq!(
        sdk.counted("messaging.client.consumed.messages"),
        [(None, 1), (Some("Timeout".to_owned()), 1)]
    );
}

#[tokio::test]
async fn a_producers_hooks_carry_the_current_context_in_the_headers() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), "none");
    let producer = kcon_produce::Producer::builder()
        .bootstrap_servers(bootstrap)
        .hooks(telemetry.producer_hooks())
        .build()
        .unwrap();
    let span = sdk.tracing.tracer("shop").start("checkout");
    let context = span.span_context().clone();
    let cx = Context::current_with_span(span);
    let delivery = producer
        .send(ProducerRecord::new(topic.as_str(), "v"))
        .with_context(cx)
        .await
        .unwrap();
    delivery.await.unwrap();
    // No context current: nothing written.
    producer
        .send(ProducerRecord::new(topic.as_str(), "w"))
        .await
        .unwrap()
        .await
        .unwrap();
    producer.close().await.unwrap();

    let mut reader = kcon_tests::login::assigned_consumer(bootstrap, &[]);
    reader
        .assign([kcon::TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let records = recv_n(&mut reader, 2, WITHIN).await;
    let carried: Vec<_> = records
        .iter()
        .map(|r| telemetry.extract(&r.headers).span().span_context().clone())
        .collect();
    assert_eq!(
        (carried[0].trace_id(), carried[0].span_id()),
        (context.trace_id(), context.span_id())
    );
    assert!(!carried[1].is_valid(), "{:?}", records[1].headers);
}

#[tokio::test]
async fn a_dead_lettered_records_process_span_ends_saying_so() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let dead_letters = topic.clone() + ".dlq";
    let pool = kcon_pool::Pool::new(kcon_tests::login::pool_config(bootstrap, &[])).unwrap();
    create(&pool, &[NewTopic::new(&dead_letters, 1)]).await;
    let group = unique_name("otel");
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), &group);
    send_under_checkout(&sdk, &telemetry, bootstrap, &topic).await;

    let mut consumer = consumer(bootstrap, &[], &group);
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer)
        .set("errors.tolerance", "all")
        .dead_letter_topic(&dead_letters)
        .hooks(telemetry.policy_hooks())
        .build()
        .unwrap();
    let name = format!("process {topic}");
    // Until the span ended: after the dead letter was acknowledged.
    let ended = async {
        while sdk.span(&name).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let run = processor.run_until(ended, async |r| {
        telemetry
            .process(r, async { Err::<(), _>(Failure::permanent("poison")) })
            .await
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the record dead-lettered in time")
        .unwrap();
    processor.close().await.unwrap();
    let span = sdk.span(&name).remove(0);
    let events: Vec<_> = span
        .events
        .events
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(events, ["kcon.failure", "kcon.dead_letter"]);
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test]
async fn each_received_batch_has_a_span_linked_to_its_records_send_spans() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), "none");
    let producer = producer(bootstrap, &[]);
    for i in 0..3 {
        // Its partition named, as the span is from its start: told once.
        let record = ProducerRecord::new(topic.as_str(), format!("v{i}")).with_partition(0);
        telemetry
            .send(&producer, record)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let sends = sdk.span(&format!("send {topic}"));
    for send in &sends {
        let partitions: Vec<_> = send
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == "messaging.destination.partition.id")
            .map(|kv| kv.value.to_string())
            .collect();
        assert_eq!(partitions, ["0"]);
    }
    let mut sent: Vec<_> = sends
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    assert_eq!(sent.len(), 3);

    let mut consumer = kcon_tests::login::assigned_consumer(bootstrap, &[]);
    consumer
        .assign([kcon::TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let mut read = 0;
    while read < 3 {
        let batch = tokio::time::timeout(WITHIN, telemetry.recv_batch(&mut consumer))
            .await
            .expect("records in time")
            .unwrap();
        read += batch.len();
    }
    assert_eq!(read, 3);
    let (counted, linked) = receive_spans(&sdk, &topic, |span| {
        assert_eq!(
            attribute(span, "messaging.operation.type"),
            Some(&Value::from("receive"))
        );
        assert_eq!(
            attribute(span, "messaging.destination.partition.id"),
            Some(&Value::from("0"))
        );
    });
    assert_eq!(counted, 3);
    sent.sort();
    assert_eq!(linked, sent);
}

/// A traced delivery asked for its outcome without waiting keeps its send span open while the
/// record is not done, and ends it, with the offset the broker gave, once it finds the outcome.
#[tokio::test]
async fn a_traced_delivery_asked_without_waiting_ends_its_span_when_it_finds_the_outcome() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), "none");
    let producer = producer(bootstrap, &[]);
    let name = format!("send {topic}");
    let mut delivery = telemetry
        .send(&producer, ProducerRecord::new(topic.as_str(), "v"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let delivered = loop {
        match delivery.try_outcome() {
            Ok(outcome) => break outcome.unwrap(),
            Err(pending) => {
                assert!(
                    sdk.span(&name).is_empty(),
                    "a send span ended while pending"
                );
                assert!(started.elapsed() < WITHIN, "no outcome within {WITHIN:?}");
                delivery = pending;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    producer.close().await.unwrap();
    let sends = sdk.span(&name);
    assert_eq!(sends.len(), 1, "one send span");
    assert_eq!(
        attribute(&sends[0], "messaging.kafka.offset"),
        Some(&Value::from(
            delivered.offset.expect("acks=all gives the offset")
        ))
    );
    assert_eq!(sends[0].status, Status::Unset);
}

/// Sends its sampler drops still carry their context (flags `00`, a trace of their own each)
/// and are counted and timed, though their spans record nothing and none is exported: the
/// context is not kept once it is in the headers, whichever way the outcome is then read.
#[tokio::test]
async fn unsampled_sends_carry_their_context_and_are_counted() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let mut sdk = Sdk::new();
    sdk.tracing = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOff)
        .with_simple_exporter(sdk.spans.clone())
        .build();
    let telemetry = sdk.telemetry(ProcessParent::default(), "none");
    let producer = producer(bootstrap, &[]);
    let mut pending = Vec::new();
    for i in 0..3 {
        let record = ProducerRecord::new(topic.as_str(), format!("v{i}"));
        pending.push(telemetry.send(&producer, record).await.unwrap());
    }
    let last = pending.pop().expect("three sends");
    for delivery in pending {
        delivery.await.unwrap();
    }
    let mut last = last;
    let started = std::time::Instant::now();
    while let Err(waiting) = last.try_outcome() {
        assert!(started.elapsed() < WITHIN, "no outcome within {WITHIN:?}");
        last = waiting;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    producer.close().await.unwrap();
    assert!(
        sdk.span(&format!("send {topic}")).is_empty(),
        "no span exported"
    );
    assert_eq!(
        sdk.counted("messaging.client.sent.messages"),
        [(None, 3)],
        "every send counted"
    );
    let timed: u64 = sdk
        .gauge("messaging.client.operation.duration", |data| match data {
            AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                h.data_points().map(|p| p.count()).collect()
            }
            other => panic!("a histogram, not {other:?}"),
        })
        .into_iter()
        .sum();
    assert_eq!(timed, 3, "every send timed");

    let mut consumer = kcon_tests::login::assigned_consumer(bootstrap, &[]);
    consumer
        .assign([kcon::TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let mut traces = Vec::new();
    for record in recv_n(&mut consumer, 3, WITHIN).await {
        let parent = record
            .headers
            .iter()
            .find(|(name, _)| &name[..] == b"traceparent")
            .and_then(|(_, value)| value.as_ref())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .unwrap_or_else(|| panic!("a traceparent on {record:?}"));
        let fields: Vec<_> = parent.split('-').collect();
        assert_eq!(fields.len(), 4, "{parent}");
        assert_eq!(
            (fields[0], fields[3]),
            ("00", "00"),
            "{parent}: not sampled"
        );
        traces.push(fields[1].to_owned());
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "a trace of its own each: {traces:?}");
}

/// The receive spans of `topic`, each a CONSUMER span checked by `check`: the records they
/// counted, and the span ids they link to (sorted, each once).
fn receive_spans(sdk: &Sdk, topic: &str, check: impl Fn(&SpanData)) -> (i64, Vec<String>) {
    let mut linked = Vec::new();
    let mut counted = 0;
    for span in sdk.span(&format!("poll {topic}")) {
        assert_eq!(span.span_kind, SpanKind::Consumer);
        check(&span);
        let Some(Value::I64(n)) = attribute(&span, "messaging.batch.message_count") else {
            panic!("a message count: {span:?}");
        };
        counted += n;
        linked.extend(
            span.links
                .links
                .iter()
                .map(|l| l.span_context.span_id().to_string()),
        );
    }
    linked.sort();
    linked.dedup();
    (counted, linked)
}

#[tokio::test]
async fn a_consumers_lag_is_reported_as_gauges_until_the_observation_is_dropped() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let producer = producer(bootstrap, &[]);
    for i in 0..10 {
        producer
            .send(ProducerRecord::new(topic.as_str(), format!("v{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let sdk = Sdk::with_temporality(Temporality::Delta);
    let telemetry = sdk.telemetry(ProcessParent::default(), "none");
    // Four records a batch: the consumer publishes a partition's lag as it hands its records
    // out.
    let mut consumer =
        kcon_tests::login::assigned_consumer(bootstrap, &[("max.poll.records", "4".into())]);
    consumer
        .assign([kcon::TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let observation = telemetry.observe_lag(consumer.metrics_handle());
    let batch = tokio::time::timeout(WITHIN, consumer.recv_batch())
        .await
        .expect("records in time")
        .unwrap();
    assert!(!batch.is_empty() && batch.len() <= 4, "{batch:?}");
    let behind = 10 - batch.len() as i64;
    assert_eq!(
        sdk.gauge_i64("kcon.consumer.lag"),
        [(topic.clone(), behind)]
    );
    let time = sdk.gauge_f64("kcon.consumer.lag.time");
    assert_eq!(time.len(), 1, "{time:?}");
    assert!(time[0].1 >= 0.0);

    drop(observation);
    assert_eq!(sdk.gauge_i64("kcon.consumer.lag"), []);
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn an_exactly_once_handlers_outputs_carry_a_create_span_under_its_process_span() {
    let bootstrap = Kafka::single().bootstrap();
    let input = topic(bootstrap, &[], 1).await;
    let output = topic(bootstrap, &[], 1).await;
    let group = unique_name("otel");
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::Parent, &group);
    let (checkout, _) = send_under_checkout(&sdk, &telemetry, bootstrap, &input).await;

    let mut consumer = kcon_tests::login::consumer(
        bootstrap,
        &[
            ("isolation.level", "read_committed".into()),
            ("enable.auto.commit", "false".into()),
        ],
        &group,
    );
    consumer.subscribe([input.as_str()]).unwrap();
    let transactional = kcon_produce::Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", unique_name("otel-txn"))
        .build()
        .unwrap();
    let mut processor = Processor::builder(consumer)
        .exactly_once(transactional)
        .hooks(telemetry.policy_hooks())
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let done = Arc::new(Notify::new());
    let stop = done.clone();
    // The run commits its transaction as it stops.
    let run = processor.run_until(stop.notified(), async |r| {
        telemetry
            .process(r, async {
                let out = ProducerRecord::new(output.as_str(), "invoice-1").with_key("customer-7");
                telemetry.sink_send(&sink, out);
                done.notify_one();
                Ok(())
            })
            .await
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the record processed in time")
        .unwrap();
    processor.close().await.unwrap();

    let processed = sdk.span(&format!("process {input}")).remove(0);
    let created = sdk.span(&format!("create {output}"));
    assert_eq!(created.len(), 1, "one create span: {created:?}");
    let created = &created[0];
    assert_eq!(created.span_kind, SpanKind::Producer);
    // Under the process span, in the trace the checkout began.
    assert_eq!(created.parent_span_id, processed.span_context.span_id());
    assert_eq!(created.span_context.trace_id(), checkout.trace_id());
    for (key, value) in [
        ("messaging.operation.name", Value::from("create")),
        ("messaging.operation.type", Value::from("create")),
        ("messaging.destination.name", Value::from(output.clone())),
        ("messaging.message.body.size", Value::from(9_i64)),
    ] {
        assert_eq!(attribute(created, key), Some(&value), "{key}");
    }

    // The output, committed, carries the create span's context.
    let mut reader = kcon_tests::login::assigned_consumer(
        bootstrap,
        &[("isolation.level", "read_committed".into())],
    );
    reader
        .assign([kcon::TopicPartition::new(output.as_str(), 0)])
        .unwrap();
    let written = recv_n(&mut reader, 1, WITHIN).await;
    let carried = telemetry.extract(&written[0].headers);
    let carried = carried.span().span_context().clone();
    assert_eq!(
        (carried.trace_id(), carried.span_id()),
        (
            created.span_context.trace_id(),
            created.span_context.span_id()
        )
    );
    reader.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_consumers_batches_and_redeliveries_have_their_spans() {
    use kcon::share::AcknowledgeType;
    use kcon_tests::share::{RECORDS_WITHIN, configure};

    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 2).await;
    let group = unique_name("otel-share");
    let pool = kcon_pool::Pool::new(kcon_tests::login::pool_config(bootstrap, &[])).unwrap();
    configure(&pool, &group, &[]).await;
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), &group);
    let producer = producer(bootstrap, &[]);
    for i in 0..4 {
        let record = ProducerRecord::new(topic.as_str(), format!("v{i}")).with_partition(i % 2);
        telemetry
            .send(&producer, record)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let mut sent: Vec<_> = sdk
        .span(&format!("send {topic}"))
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    assert_eq!(sent.len(), 4);

    let mut consumer = kcon_tests::share::consumer(
        bootstrap,
        &group,
        &[("share.acknowledgement.mode", "explicit")],
    );
    consumer.subscribe([topic.as_str()]).unwrap();
    // Every record once; the first released by its handler's failure, so that it comes again.
    let mut first = None;
    let mut again = None;
    let mut received = 0;
    tokio::time::timeout(RECORDS_WITHIN, async {
        while again.is_none() {
            let batch = telemetry.share_recv_batch(&mut consumer).await.unwrap();
            for r in &batch {
                let outcome = telemetry
                    .process(r, async {
                        if first.is_none() {
                            Err(Failure::retriable("the ledger timed out"))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                let kind = match outcome {
                    Ok(()) => AcknowledgeType::Accept,
                    Err(_) => AcknowledgeType::Release,
                };
                consumer.acknowledge(r, kind).unwrap();
                match r.delivery_count {
                    Some(1) => received += 1,
                    _ => again = Some(r.clone()),
                }
                first.get_or_insert_with(|| r.clone());
            }
        }
    })
    .await
    .expect("every record, and the released one again, in time");
    consumer.close().await.unwrap();
    assert_eq!(received, 4);
    let (first, again) = (first.unwrap(), again.unwrap());
    assert_eq!(
        (again.partition, again.offset, again.delivery_count),
        (first.partition, first.offset, Some(2))
    );

    // Receive spans: the group, the five records handed out, links to every send span.
    let (counted, linked) = receive_spans(&sdk, &topic, |span| {
        assert_eq!(
            attribute(span, "messaging.consumer.group.name"),
            Some(&Value::from(group.clone()))
        );
    });
    assert_eq!(counted, 5);
    sent.sort();
    assert_eq!(linked, sent);

    // Process spans: the redelivery carries its delivery count.
    let tries: Vec<_> = sdk
        .span(&format!("process {topic}"))
        .into_iter()
        .filter(|s| {
            attribute(s, "messaging.kafka.offset") == Some(&Value::from(first.offset))
                && attribute(s, "messaging.destination.partition.id")
                    == Some(&Value::from(first.partition.to_string()))
        })
        .collect();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(matches!(tries[0].status, Status::Error { .. }));
    assert_eq!(attribute(&tries[0], "kcon.attempt"), None);
    assert_eq!(
        attribute(&tries[1], "kcon.attempt"),
        Some(&Value::from(2_i64))
    );
}

/// The Java span of the record at `offset` of `spans`, by its offset attribute (the Java
/// instrumentation names it `messaging.kafka.message.offset`).
fn java_span_at<'a>(spans: &'a [JavaSpan], kind: &str, offset: i64) -> &'a JavaSpan {
    spans
        .iter()
        .find(|s| {
            s.kind == kind
                && s.attributes.get("messaging.kafka.message.offset") == Some(&offset.to_string())
        })
        .unwrap_or_else(|| panic!("no {kind} span of offset {offset} in {spans:#?}"))
}

#[tokio::test]
async fn records_the_instrumented_java_client_sent_are_continued_by_kcons_process_spans() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let java = java_traced(&serde_json::json!({
        "op": "produce",
        "bootstrap": bootstrap,
        "topic": topic,
        "values": ["java-0", "java-1"],
    }));
    assert_eq!(java.values, ["java-0", "java-1"]);
    let published: Vec<&JavaSpan> = java.spans.iter().filter(|s| s.kind == "PRODUCER").collect();
    assert_eq!(
        published.len(),
        2,
        "a producer span per record: {:#?}",
        java.spans
    );

    // As a child: kcon's process span is in the Java producer's trace, under its send span.
    for (record, span) in processed_by_a_new_group(bootstrap, &topic, ProcessParent::Parent).await {
        let sent = java_span_at(&java.spans, "PRODUCER", record.offset);
        let headers: Vec<(String, String)> = record
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            span.span_context.trace_id().to_string(),
            sent.trace_id,
            "the record's headers: {headers:?}"
        );
        assert_eq!(span.parent_span_id.to_string(), sent.span_id);
        assert!(span.links.links.is_empty());
    }

    // Linked, kcon's default: a trace of its own, linked to the Java send span.
    for (record, span) in processed_by_a_new_group(bootstrap, &topic, ProcessParent::Link).await {
        let sent = java_span_at(&java.spans, "PRODUCER", record.offset);
        assert_ne!(span.span_context.trace_id().to_string(), sent.trace_id);
        let links: Vec<(String, String)> = span
            .links
            .links
            .iter()
            .map(|l| {
                (
                    l.span_context.trace_id().to_string(),
                    l.span_context.span_id().to_string(),
                )
            })
            .collect();
        assert_eq!(links, [(sent.trace_id.clone(), sent.span_id.clone())]);
    }
}

/// The span of `spans` whose `messaging.kafka.offset` is `offset`.
fn span_at(spans: &[SpanData], offset: i64) -> &SpanData {
    spans
        .iter()
        .find(|s| attribute(s, "messaging.kafka.offset") == Some(&Value::from(offset)))
        .unwrap_or_else(|| panic!("no span of offset {offset} in {spans:?}"))
}

/// The two records of `topic` processed by a new group with process spans `parent`, each
/// with its process span.
async fn processed_by_a_new_group(
    bootstrap: &str,
    topic: &str,
    parent: ProcessParent,
) -> Vec<(Record, SpanData)> {
    let group = unique_name("otel-java");
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(parent, &group);
    let records = process(bootstrap, topic, &group, &telemetry, 2, false).await;
    let processed = sdk.span(&format!("process {topic}"));
    assert_eq!(processed.len(), 2, "{processed:?}");
    records
        .into_iter()
        .map(|r| {
            let span = span_at(&processed, r.offset).clone();
            (r, span)
        })
        .collect()
}

#[tokio::test]
async fn records_kcon_sent_are_continued_by_the_instrumented_java_consumers_process_spans() {
    let bootstrap = Kafka::single().bootstrap();
    let topic = topic(bootstrap, &[], 1).await;
    let sdk = Sdk::new();
    let telemetry = sdk.telemetry(ProcessParent::default(), "unused");
    let producer = producer(bootstrap, &[]);
    let mut offsets = Vec::new();
    for value in ["kcon-0", "kcon-1"] {
        let delivered = telemetry
            .send(&producer, ProducerRecord::new(&topic, value))
            .await
            .unwrap()
            .await
            .unwrap();
        offsets.push(delivered.offset.expect("an offset"));
    }
    producer.close().await.unwrap();
    let sent = sdk.span(&format!("send {topic}"));
    assert_eq!(sent.len(), 2, "{sent:?}");

    let java = java_traced(&serde_json::json!({
        "op": "consume",
        "bootstrap": bootstrap,
        "topic": topic,
        "group": unique_name("otel-java"),
        "expect": 2,
        "within_ms": 60000,
    }));
    assert_eq!(java.values, ["kcon-0", "kcon-1"]);
    for offset in offsets {
        let send = span_at(&sent, offset);
        // The Java instrumentation makes its process span a child of the context in the
        // record's headers: kcon's send span.
        let process = java_span_at(&java.spans, "CONSUMER", offset);
        assert_eq!(process.trace_id, send.span_context.trace_id().to_string());
        assert_eq!(
            process.parent_span_id.as_deref(),
            Some(send.span_context.span_id().to_string().as_str())
        );
    }
}
