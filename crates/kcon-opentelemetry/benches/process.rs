//! What `Telemetry::process` adds to a record's handling, in isolation: a handler that returns
//! at once, run bare and inside a process span with OpenTelemetry's SDK sampling 1 % and
//! 100 % of traces (its batch processor handing spans to an exporter that drops them, its
//! meter provider aggregating the metrics), and on the API alone (no SDK installed); then a
//! record carrying an unsampled producer's `traceparent`, and the reading of that context
//! alone, by kcon and by the SDK's propagator. `cargo bench -p kcon-opentelemetry`; the whole client's figure is benches/compare's
//! `--telemetry` (benches/RESULTS.md).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kcon::{Failure, Record};
use kcon_opentelemetry::{Conventions, Telemetry};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};

/// Drops what it is handed.
#[derive(Debug)]
struct Dropped;

impl SpanExporter for Dropped {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// Polls a future that is ready at once.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the handler returns at once"),
    }
}

fn sdk(ratio: f64) -> (Telemetry, SdkTracerProvider, SdkMeterProvider) {
    let tracing = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_batch_exporter(Dropped)
        .build();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let telemetry = Telemetry::builder()
        .tracer_provider(&tracing)
        .meter_provider(&meters)
        .propagator(TraceContextPropagator::new())
        .conventions(Conventions::V1_24)
        .consumer_group("billing")
        .client_id("kcon-bench")
        .build();
    (telemetry, tracing, meters)
}

fn process(c: &mut Criterion) {
    let mut record = Record::new(
        "orders",
        3,
        0,
        Some("k".into()),
        Some(vec![7u8; 100].into()),
    );
    let mut group = c.benchmark_group("process");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("bare", |b| {
        b.iter(|| {
            record.offset += 1;
            ready(async { Ok::<_, Failure>(black_box(record.offset)) })
        })
    });
    let api_only = Telemetry::builder().build();
    group.bench_function("api only", |b| {
        b.iter(|| {
            record.offset += 1;
            ready(api_only.process(&record, async { Ok::<_, Failure>(black_box(1)) }))
        })
    });
    // What the SDK itself costs per record at 1 %: a span started with its name alone, made
    // current while the handler runs and ended, and one histogram point (a process span
    // cannot cost less than these).
    {
        use opentelemetry::KeyValue;
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry::trace::{
            FutureExt as _, TraceContextExt as _, Tracer as _, TracerProvider as _,
        };
        let (_, tracing, meters) = sdk(0.01);
        let tracer = tracing.tracer("bench");
        let histogram = meters.meter("bench").f64_histogram("d").build();
        let attributes = [
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation", "process"),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.destination.partition.id", "3"),
            KeyValue::new("messaging.kafka.consumer.group", "billing"),
        ];
        group.bench_function("sdk floor 1%", |b| {
            b.iter(|| {
                let span = tracer.start("process orders");
                let cx = opentelemetry::Context::current_with_span(span);
                let started = std::time::Instant::now();
                ready(async { black_box(1) }.with_context(cx.clone()));
                cx.span().end();
                histogram.record(started.elapsed().as_secs_f64(), &attributes);
            })
        });
        let _ = tracing.shutdown();
        let _ = meters.shutdown();
    }
    for (name, ratio) in [("sampled 1%", 0.01), ("sampled 100%", 1.0)] {
        let (telemetry, tracing, meters) = sdk(ratio);
        group.bench_function(name, |b| {
            b.iter(|| {
                record.offset += 1;
                ready(telemetry.process(&record, async { Ok::<_, Failure>(black_box(1)) }))
            })
        });
        let _ = tracing.shutdown();
        let _ = meters.shutdown();
    }
    // A record sent by an instrumented producer whose trace was not sampled: its context is
    // read from its `traceparent` header, and the process span goes on from it (or links to
    // it), unsampled as well.
    let mut traced = record.clone();
    traced.headers.push((
        "traceparent".into(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".into()),
    ));
    let (telemetry, tracing, meters) = sdk(0.01);
    group.bench_function("sampled 1%, a producer's unsampled context", |b| {
        b.iter(|| {
            traced.offset += 1;
            ready(telemetry.process(&traced, async { Ok::<_, Failure>(black_box(1)) }))
        })
    });
    let _ = tracing.shutdown();
    let _ = meters.shutdown();
    group.finish();

    // Reading that context alone: kcon's reading of W3C Trace Context, and the SDK
    // propagator's (behind a propagator that names one more field, which kcon then calls).
    let mut group = c.benchmark_group("extract");
    group.measurement_time(Duration::from_secs(3));
    let kcon = Telemetry::builder()
        .propagator(TraceContextPropagator::new())
        .build();
    let propagator = Telemetry::builder()
        .propagator(Opaque(TraceContextPropagator::new()))
        .build();
    for (name, telemetry) in [("kcon", kcon), ("propagator", propagator)] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(telemetry.extract(&traced.headers)))
        });
    }
    group.finish();
}

/// The W3C propagator under fields of its own, so that kcon calls it.
#[derive(Debug)]
struct Opaque(TraceContextPropagator);

impl TextMapPropagator for Opaque {
    fn inject_context(&self, cx: &opentelemetry::Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector)
    }
    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        extractor: &dyn Extractor,
    ) -> opentelemetry::Context {
        self.0.extract_with_context(cx, extractor)
    }
    fn fields(&self) -> FieldIter<'_> {
        static FIELDS: [String; 0] = [];
        FieldIter::new(&FIELDS)
    }
}

criterion_group!(benches, process);
criterion_main!(benches);
