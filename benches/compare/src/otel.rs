//! `--telemetry off|R` of `produce` and `process` (kcon only): the run instrumented with
//! kcon-opentelemetry on OpenTelemetry's SDK, traces sampled at ratio R (`ParentBased` over
//! `TraceIdRatioBased`, the SDK's usual sampler), spans through the SDK's batch processor and
//! metrics through its periodic reader, each to an exporter that counts what it is handed and
//! drops it: the instrumentation's cost and the SDK's, not a network's. `off` (the default)
//! builds no `Telemetry` at all.
//!
//! `--floor true` measures the SDK's own least cost instead: the same SDK and sampler, the
//! records sent and handled as without telemetry, and around each, through OpenTelemetry's API
//! alone, what any instrumentation that makes a span per record and times it must do: a span
//! started with the conventions' attributes known before the record (kept only while it
//! records), and a duration point with the metric's attributes ([`Floor`]). No context is
//! written into the records, nothing is counted, and nothing of kcon-opentelemetry runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kcon_opentelemetry::Telemetry;
use opentelemetry::metrics::{Histogram, MeterProvider as _};
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};

use crate::BoxError;
use crate::args::Args;

/// An instrumented run's telemetry and the SDK behind it.
pub struct Instrumented {
    pub telemetry: Telemetry,
    /// The SDK's least cost per record instead of the telemetry (`--floor true`).
    pub floor: Option<Arc<Floor>>,
    tracing: SdkTracerProvider,
    meters: SdkMeterProvider,
    spans: Arc<AtomicU64>,
}

impl Instrumented {
    /// What `--telemetry` asks for: `None` when off.
    /// `topic`: the records' topic; `group`: the processor's group (none: a producer).
    pub fn from_args(
        args: &Args,
        topic: &str,
        group: Option<&str>,
    ) -> Result<Option<Instrumented>, BoxError> {
        let ratio = match args.optional("telemetry").unwrap_or("off") {
            "off" => return Ok(None),
            r => r
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("--telemetry is off or a ratio in [0, 1], not {r:?}"))?,
        };
        let spans = Arc::new(AtomicU64::new(0));
        let tracing = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_batch_exporter(CountingSpans(spans.clone()))
            .build();
        let meters = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(DroppedMetrics).build())
            .build();
        let mut builder = Telemetry::builder()
            .tracer_provider(&tracing)
            .meter_provider(&meters)
            .propagator(TraceContextPropagator::new())
            .client_id("kcon-compare");
        if let Some(group) = group {
            builder = builder.consumer_group(group);
        }
        let floor = (args.optional("floor") == Some("true"))
            .then(|| Arc::new(Floor::new(&tracing, &meters, topic, group)));
        Ok(Some(Instrumented {
            telemetry: builder.build(),
            floor,
            tracing,
            meters,
            spans,
        }))
    }

    /// Flushes and stops the SDK; the spans its exporter was handed.
    pub fn finish(self) -> u64 {
        drop(self.telemetry);
        drop(self.floor);
        let _ = self.tracing.shutdown();
        let _ = self.meters.shutdown();
        self.spans.load(Ordering::Relaxed)
    }
}

/// The least an instrumentation that makes a span per record and times it asks of the SDK, with
/// the conventions' names and attributes (as kcon-opentelemetry's `Conventions::Current` writes
/// them for a record whose partition is not yet known).
pub struct Floor {
    tracer: opentelemetry_sdk::trace::SdkTracer,
    duration: Histogram<f64>,
    name: &'static str,
    kind: SpanKind,
    span: Vec<KeyValue>,
    metric: Vec<KeyValue>,
}

impl Floor {
    fn new(
        tracing: &SdkTracerProvider,
        meters: &SdkMeterProvider,
        topic: &str,
        group: Option<&str>,
    ) -> Floor {
        let (operation, kind, histogram) = match group {
            None => (
                "send",
                SpanKind::Producer,
                "messaging.client.operation.duration",
            ),
            Some(_) => ("process", SpanKind::Consumer, "messaging.process.duration"),
        };
        let topic: Arc<str> = topic.into();
        let mut metric = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.name", operation),
            KeyValue::new("messaging.operation.type", operation),
            KeyValue::new("messaging.destination.name", topic.clone()),
        ];
        if let Some(group) = group {
            let group: Arc<str> = group.into();
            metric.push(KeyValue::new("messaging.consumer.group.name", group));
        }
        let mut span = metric.clone();
        let client: Arc<str> = "kcon-compare".into();
        span.push(KeyValue::new("messaging.client.id", client));
        Floor {
            tracer: tracing.tracer("kcon-compare-floor"),
            duration: meters
                .meter("kcon-compare-floor")
                .f64_histogram(histogram)
                .with_unit("s")
                .build(),
            name: Box::leak(format!("{operation} {topic}").into_boxed_str()),
            kind,
            span,
            metric,
        }
    }

    /// A record's span, started under the current context: the context holding it, whether
    /// it records, and when it started. A handler runs inside the context whether or not its
    /// span records (its own spans then follow the sampler's decision); a send keeps it only
    /// while it records.
    pub fn start(&self) -> Started {
        let span = self
            .tracer
            .span_builder(self.name)
            .with_kind(self.kind.clone())
            .with_attributes(self.span.clone())
            .start(&self.tracer);
        let recording = opentelemetry::trace::Span::is_recording(&span);
        Started {
            cx: Context::current_with_span(span),
            recording,
            at: Instant::now(),
        }
    }

    /// Ends a span [`start`](Self::start) began, if it records (`cx`: its context), and
    /// records a duration point from `at`.
    pub fn end(&self, cx: Option<&Context>, at: Instant) {
        self.duration
            .record(at.elapsed().as_secs_f64(), &self.metric);
        if let Some(cx) = cx {
            cx.span().end();
        }
    }
}

/// A span [`Floor::start`] began.
pub struct Started {
    pub cx: Context,
    pub recording: bool,
    pub at: Instant,
}

/// Counts the spans it is handed, and drops them.
#[derive(Debug)]
struct CountingSpans(Arc<AtomicU64>);

impl SpanExporter for CountingSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Drops the metrics it is handed.
struct DroppedMetrics;

impl PushMetricExporter for DroppedMetrics {
    async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}
