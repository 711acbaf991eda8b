//! `--telemetry off|R` of `produce` and `process` (kcon only): the run instrumented with
//! kcon-opentelemetry on OpenTelemetry's SDK, traces sampled at ratio R (`ParentBased` over
//! `TraceIdRatioBased`, the SDK's usual sampler), spans through the SDK's batch processor and
//! metrics through its periodic reader, each to an exporter that counts what it is handed and
//! drops it: the instrumentation's cost and the SDK's, not a network's. `off` (the default)
//! builds no `Telemetry` at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kcon_opentelemetry::Telemetry;
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
    tracing: SdkTracerProvider,
    meters: SdkMeterProvider,
    spans: Arc<AtomicU64>,
}

impl Instrumented {
    /// What `--telemetry` asks for: `None` when off.
    pub fn from_args(args: &Args, group: Option<&str>) -> Result<Option<Instrumented>, BoxError> {
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
        Ok(Some(Instrumented {
            telemetry: builder.build(),
            tracing,
            meters,
            spans,
        }))
    }

    /// Flushes and stops the SDK; the spans its exporter was handed.
    pub fn finish(self) -> u64 {
        drop(self.telemetry);
        let _ = self.tracing.shutdown();
        let _ = self.meters.shutdown();
        self.spans.load(Ordering::Relaxed)
    }
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
