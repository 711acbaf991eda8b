//! A service instrumented with kcon-opentelemetry, exporting its traces and metrics over
//! OTLP/HTTP as a deployed service would (to an OpenTelemetry Collector, Jaeger v2, Grafana
//! Alloy, ...): an order is sent under the service's own `checkout` span, and a `Processor`
//! handles the orders of the topic, each try in a process span that goes on from the send
//! span's context, carried in the record's `traceparent` header. The counts of records sent and
//! handled and the send and handling durations go out as metrics every 5 s and at the end.
//!
//! ```text
//! cargo run -p kcon-opentelemetry --example otlp -- [BOOTSTRAP] [TOPIC] [GROUP] [OTLP]
//! ```
//!
//! Each argument falls back to `KCON_BOOTSTRAP`, `KCON_TOPIC`, `KCON_GROUP`, then to
//! `localhost:9092`, `orders`, `fulfilment`; OTLP is the collector's OTLP/HTTP address
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4318`). It sends three orders, handles
//! them (the second fails once, retriably), and exits once they are handled.

#![allow(clippy::print_stdout, reason = "an example shows what it did")]

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kcon::{Consumer, Failure, Processor};
use kcon_opentelemetry::{ProcessParent, Telemetry};
use kcon_produce::{Producer, ProducerRecord};
use opentelemetry::Context;
use opentelemetry::trace::{
    FutureExt as _, Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

const ORDERS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let bootstrap = setting(1, "KCON_BOOTSTRAP", "localhost:9092");
    let topic = setting(2, "KCON_TOPIC", "orders");
    let group = setting(3, "KCON_GROUP", "fulfilment");
    let otlp = setting(4, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318");

    // OpenTelemetry's SDK, as the service's own setup has it: a batch span processor and a
    // periodic metric reader, each exporting over OTLP/HTTP from a thread of its own. Their
    // HTTP client blocks, so they are built (and later shut down) off the async runtime.
    let endpoint = otlp.trim_end_matches('/').to_owned();
    let (tracing, metrics) = tokio::task::spawn_blocking(move || {
        let resource = Resource::builder().with_service_name("fulfilment").build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()?;
        let measures = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/metrics"))
            .build()?;
        let tracing = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(spans)
            .build();
        let metrics = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(
                PeriodicReader::builder(measures)
                    .with_interval(Duration::from_secs(5))
                    .build(),
            )
            .build();
        Ok::<_, opentelemetry_otlp::ExporterBuildError>((tracing, metrics))
    })
    .await??;

    // One Telemetry for the service, cloned wherever it sends or processes.
    let telemetry = Telemetry::builder()
        .tracer_provider(&tracing)
        .meter_provider(&metrics)
        .propagator(TraceContextPropagator::new())
        .consumer_group(&group)
        .client_id("fulfilment")
        // Each try a child of its record's send span: one trace from checkout to handling.
        .process_parent(ProcessParent::Parent)
        .build();

    let producer = Producer::builder().bootstrap_servers(&bootstrap).build()?;
    let checkout = tracing.tracer("fulfilment").start("checkout");
    println!("trace {}", checkout.span_context().trace_id());
    let cx = Context::current_with_span(checkout);
    for i in 1..=ORDERS {
        let delivered = telemetry
            .send(&producer, ProducerRecord::new(&topic, format!("order-{i}")))
            .with_context(cx.clone())
            .await?
            .await?;
        println!(
            "sent order-{i} at {}-{}",
            delivered.partition,
            delivered.offset.unwrap_or(-1)
        );
    }
    cx.span().end();
    producer.close().await?;

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&bootstrap)
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.subscribe([topic.as_str()])?;
    let mut processor = Processor::builder(consumer)
        .set("errors.retry.backoff.ms", "100")
        // Retries and dead letters become events on the failed try's span.
        .hooks(telemetry.policy_hooks())
        .build()?;
    let handled = Arc::new(AtomicUsize::new(0));
    let done = handled.clone();
    let all_handled = async move {
        while done.load(Ordering::Relaxed) < ORDERS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let tries = Arc::new(AtomicUsize::new(0));
    processor
        .run_until(all_handled, async |r| {
            let value =
                String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default()).into_owned();
            let (handled, tries) = (handled.clone(), tries.clone());
            telemetry
                .process(r, async move {
                    // The second order's first try fails: its span ends in error, with a
                    // `kcon.retry` event, and the next try has a span of its own.
                    if value == "order-2" && tries.fetch_add(1, Ordering::Relaxed) == 0 {
                        return Err(Failure::retriable("the warehouse did not answer"));
                    }
                    println!("handled {value}");
                    handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .await
        })
        .await?;
    processor.close().await?;

    // Export what is left before the process ends, while `telemetry` still lives: the counts
    // of records sent and handled are read from it at each collection.
    tokio::task::spawn_blocking(move || {
        let traced = tracing.shutdown();
        let measured = metrics.shutdown();
        traced.and(measured)
    })
    .await??;
    Ok(())
}

/// Positional argument `n`, else the environment variable `var`, else `default`.
fn setting(n: usize, var: &str, default: &str) -> String {
    std::env::args()
        .nth(n)
        .or_else(|| std::env::var(var).ok())
        .unwrap_or_else(|| default.to_owned())
}
