//! OpenTelemetry for kcon: a span for each record sent and each record processed, the
//! producer's span context carried to the processor in the record's headers, and the messaging
//! metrics of OpenTelemetry's semantic conventions.
//!
//! kcon itself depends on no OpenTelemetry crate: this crate is built on its public parts (the
//! [`Producer`], the [`Processor`](kcon::Processor)'s handler, record headers) and on
//! OpenTelemetry's API alone. The application chooses the SDK and its exporter; without one,
//! OpenTelemetry's API does nothing and costs next to nothing.
//!
//! - [`Telemetry::send`] sends a record inside a `send` span (kind PRODUCER), whose context it
//!   writes into the record's headers through the propagator (W3C `traceparent` and
//!   `tracestate` with the SDK's `TraceContextPropagator`, `baggage` with its
//!   `BaggagePropagator`). A header the record already has is kept. The span ends when the record is acknowledged, with its partition
//!   and offset, or with the error.
//! - [`Telemetry::producer_hooks`] only writes the current context into the headers of every
//!   record a producer sends, for records sent without [`Telemetry::send`].
//! - [`Telemetry::process`] runs a handler inside a `process` span (kind CONSUMER), linked
//!   to the context the record's headers carry, or its child ([`ProcessParent`]). The handler
//!   runs with the span's context current, so what it sends with [`Telemetry::send`] and the
//!   spans it starts are the process span's children. A failure sets the span's status and
//!   `error.type`, and a retry's try carries its number.
//! - [`Telemetry::sink_send`] hands a record to an exactly-once processor's
//!   [`Sink`] inside a `create` span, the process span's child, whose
//!   context goes into the record's headers: the transaction's outputs continue the trace.
//! - [`Telemetry::recv_batch`] and [`Telemetry::share_recv_batch`] receive a batch (of a
//!   consumer, of a share consumer) with a `receive` span linked to the contexts its records
//!   carry; a share consumer's record handed out again carries its delivery count on its
//!   process span.
//! - [`Telemetry::policy_hooks`], given to the [`Processor`](kcon::Processor), ends a failed
//!   try's process span with what became of its record: an event `kcon.retry`, `kcon.skip`,
//!   `kcon.dead_letter` or `kcon.breaker_open`.
//! - [`Telemetry::observe_lag`] reports a consumer's lag per partition, in records and
//!   seconds, as gauges read from its metrics handle.
//! - Metrics, through OpenTelemetry's metrics API: `messaging.client.sent.messages`,
//!   `messaging.client.operation.duration` (a send, from the call to the acknowledgement),
//!   `messaging.client.consumed.messages` and `messaging.process.duration` (per record
//!   processed).
//!
//! Attribute names follow the semantic conventions' v1.24.0 by default, as other Kafka
//! instrumentations do, and v1.44.0's with `OTEL_SEMCONV_STABILITY_OPT_IN=messaging` (both with
//! `messaging/dup`): see [`Conventions`].
//!
//! ```no_run
//! use kcon::Failure;
//! use kcon_opentelemetry::Telemetry;
//! use kcon_produce::{Producer, ProducerRecord};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The global tracer and meter providers and propagator, set up by the application.
//! let telemetry = Telemetry::builder().consumer_group("billing").build();
//! let producer = Producer::builder().set("bootstrap.servers", "localhost:9092").build()?;
//!
//! let mut consumer = kcon::Consumer::builder()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "billing")
//!     .build()?;
//! consumer.subscribe(["orders"])?;
//! // Retries, skips and dead letters as events on the failed try's span.
//! let mut processor = kcon::Processor::builder(consumer)
//!     .hooks(telemetry.policy_hooks())
//!     .build()?;
//! processor
//!     .run(async |r| {
//!         telemetry
//!             .process(r, async {
//!                 // Sent under the process span: its send span is the process span's child.
//!                 let invoice = ProducerRecord::new("invoices", r.record.value.clone().unwrap_or_default());
//!                 let delivery = telemetry.send(&producer, invoice).await;
//!                 delivery.map_err(Failure::retriable)?.await.map_err(Failure::retriable)?;
//!                 Ok(())
//!             })
//!             .await
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kcon::deserialize::Decoded;
use kcon::policy::Sink;
use kcon::share::ShareConsumer;
use kcon::{
    Consumer, Failure, FailureInfo, MetricsHandle, PartitionLag, PolicyHooks, Record, Topic,
};
use kcon_produce::{Delivered, Delivery, ProduceError, Producer, ProducerHooks, ProducerRecord};
use opentelemetry::global::{self, BoxedSpan, BoxedTracer, ObjectSafeTracerProvider};
use opentelemetry::metrics::{Histogram, Meter, MeterProvider};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    FutureExt as _, Link, Span as _, SpanContext, SpanKind, SpanRef, Status, TraceContextExt as _,
    Tracer as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};

mod conventions;
mod headers;
mod shapes;

pub use conventions::Conventions;
use conventions::Operation;
use headers::{
    HeaderExtractor, HeaderInjector, extract_trace_context, inject_trace_context,
    writes_trace_context,
};
use shapes::{Shape, Shapes};

/// The instrumentation scope of the spans and metrics: this crate, at its version.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url("https://opentelemetry.io/schemas/1.24.0")
        .build()
}

/// How a process span relates to the context its record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessParent {
    /// Linked to it, its parent being the context current where [`Telemetry::process`] is
    /// called (none, in a processor's loop): each record's processing its own trace, as the
    /// conventions recommend where a consumer handles records in batches.
    #[default]
    Link,
    /// Its child: the producer's trace goes on through the processing.
    Parent,
}

/// The instrumentation: cheap to clone, shared by every task that sends or processes.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    tracer: BoxedTracer,
    /// For the gauges [`Telemetry::observe_lag`] registers.
    meter: Meter,
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    /// Whether `propagator` writes W3C Trace Context alone ([`writes_trace_context`]).
    trace_context: bool,
    conventions: Conventions,
    parent: ProcessParent,
    record_keys: bool,
    client_id: Option<Arc<str>>,
    consumer_group: Option<Arc<str>>,
    /// Each partition's span names and attributes, and the sent and consumed counts.
    shapes: Arc<Shapes>,
    operation_duration: Histogram<f64>,
    process_duration: Histogram<f64>,
    /// Whether [`Telemetry::policy_hooks`] was asked for: only then is a failed try's span
    /// kept open for what the policy makes of its record.
    policy_hooked: AtomicBool,
    parked: Mutex<Parked>,
}

/// The spans of failed tries, open until the processor's policy says what became of their
/// records (a retry, a skip, a dead letter, the breaker), by topic, partition and offset.
/// At most [`PARKED_AT_MOST`]: past that the oldest ends without its outcome, as does a span
/// whose record never gets one (its processor stopped on it, or its partition was revoked
/// before the retry).
#[derive(Default)]
struct Parked {
    next: u64,
    spans: HashMap<(Topic, i32, i64), (u64, Context)>,
}

/// How many failed tries' spans wait for their outcome at most.
const PARKED_AT_MOST: usize = 1024;

/// The bucket boundaries (seconds) of the two duration histograms, as the semantic conventions
/// say to give them (`ExplicitBucketBoundaries` of `messaging.client.operation.duration` and
/// `messaging.process.duration`): the SDK's default boundaries are for milliseconds, and would
/// put every duration under 5 s in one bucket.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("conventions", &self.inner.conventions)
            .field("parent", &self.inner.parent)
            .field("record_keys", &self.inner.record_keys)
            .field("client_id", &self.inner.client_id)
            .field("consumer_group", &self.inner.consumer_group)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Telemetry`]: by default on OpenTelemetry's global tracer provider, meter
/// provider and propagator, the conventions `OTEL_SEMCONV_STABILITY_OPT_IN` asks for, process
/// spans linked, no record keys.
#[must_use]
pub struct TelemetryBuilder {
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    conventions: Conventions,
    parent: ProcessParent,
    record_keys: bool,
    client_id: Option<Arc<str>>,
    consumer_group: Option<Arc<str>>,
}

impl TelemetryBuilder {
    /// Spans from this provider instead of the global one.
    pub fn tracer_provider(mut self, provider: &impl ObjectSafeTracerProvider) -> Self {
        self.tracer = Some(BoxedTracer::new(provider.boxed_tracer(scope())));
        self
    }

    /// Metrics to this provider instead of the global one.
    pub fn meter_provider(mut self, provider: &impl MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Contexts written and read with this propagator instead of the global one.
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Arc::new(propagator));
        self
    }

    /// Attribute and span names of these conventions, whatever `OTEL_SEMCONV_STABILITY_OPT_IN`
    /// says.
    pub fn conventions(mut self, conventions: Conventions) -> Self {
        self.conventions = conventions;
        self
    }

    /// How a process span relates to its record's context ([`ProcessParent::Link`] by
    /// default).
    pub fn process_parent(mut self, parent: ProcessParent) -> Self {
        self.parent = parent;
        self
    }

    /// Whether spans carry the record's key (`messaging.kafka.message.key`, when the key is
    /// UTF-8). Off by default: keys may be personal data, and many distinct values.
    pub fn record_keys(mut self, on: bool) -> Self {
        self.record_keys = on;
        self
    }

    /// The `client.id` spans name (`messaging.client_id` or `messaging.client.id`).
    pub fn client_id(mut self, id: &str) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// The `group.id` process spans and consumer metrics name.
    pub fn consumer_group(mut self, group: &str) -> Self {
        self.consumer_group = Some(group.into());
        self
    }

    /// The instrumentation, its instruments made. Build one per client and clone it where it
    /// is needed: the sent and consumed counts are observed from each `Telemetry`, so two
    /// built on one meter provider with the same client id and group report the same series,
    /// and each collection keeps one of their counts, not their sum. For the same reason a
    /// collection made once every clone is dropped has none of them: shut the meter provider
    /// down (its last export) before the last clone goes, as `examples/otlp.rs` does.
    pub fn build(self) -> Telemetry {
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_with_scope(scope()));
        Telemetry {
            inner: Arc::new(Inner {
                meter: meter.clone(),
                tracer: self
                    .tracer
                    .unwrap_or_else(|| global::tracer_with_scope(scope())),
                trace_context: self
                    .propagator
                    .as_deref()
                    .is_some_and(|p| writes_trace_context(p)),
                propagator: self.propagator,
                conventions: self.conventions,
                parent: self.parent,
                record_keys: self.record_keys,
                shapes: Shapes::new(
                    self.conventions,
                    self.client_id.clone(),
                    self.consumer_group.clone(),
                    &meter,
                ),
                client_id: self.client_id,
                consumer_group: self.consumer_group,
                operation_duration: meter
                    .f64_histogram("messaging.client.operation.duration")
                    .with_unit("s")
                    .with_description("From a send call to its record's acknowledgement.")
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build(),
                process_duration: meter
                    .f64_histogram("messaging.process.duration")
                    .with_unit("s")
                    .with_description("Time the handler took with a record.")
                    .with_boundaries(DURATION_BUCKETS.to_vec())
                    .build(),
                policy_hooked: AtomicBool::new(false),
                parked: Mutex::new(Parked::default()),
            }),
        }
    }
}

/// A record as a process span sees it: a consumed [`Record`] (a first try), or the
/// [`Decoded`] record a [`Processor`](kcon::Processor) hands its handler (with the try's
/// number).
pub trait ProcessedRecord {
    /// The record.
    fn record(&self) -> &Record;

    /// Which try this is, from 1.
    fn attempt(&self) -> u32 {
        1
    }
}

impl ProcessedRecord for Record {
    fn record(&self) -> &Record {
        self
    }

    /// A share consumer's record: its delivery count (a consumer's: 1).
    fn attempt(&self) -> u32 {
        self.delivery_count.map_or(1, u32::from)
    }
}

impl<K, V> ProcessedRecord for Decoded<K, V> {
    fn record(&self) -> &Record {
        &self.record
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Telemetry {
    /// A builder, at the defaults [`TelemetryBuilder`] names.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            tracer: None,
            meter: None,
            propagator: None,
            conventions: Conventions::from_env(),
            parent: ProcessParent::default(),
            record_keys: false,
            client_id: None,
            consumer_group: None,
        }
    }

    /// Writes `cx` into `headers` with the propagator, keeping any header already there.
    ///
    /// A propagator whose fields are W3C Trace Context's (`traceparent`, `tracestate`: the
    /// SDK's `TraceContextPropagator`) is not called: kcon writes the same headers itself, at a
    /// fraction of the cost.
    pub fn inject(&self, cx: &Context, headers: &mut Vec<(Bytes, Option<Bytes>)>) {
        self.with_propagator(|p, w3c| {
            if w3c {
                inject_trace_context(cx, headers)
            } else {
                p.inject_context(cx, &mut HeaderInjector(headers))
            }
        })
    }

    /// `f` of the propagator (the builder's, else the global one) and whether it writes W3C
    /// Trace Context alone ([`writes_trace_context`]: told once for the builder's, asked each
    /// time of the global one, which the application may replace).
    fn with_propagator<R>(&self, mut f: impl FnMut(&dyn TextMapPropagator, bool) -> R) -> R {
        match &self.inner.propagator {
            Some(p) => f(p.as_ref(), self.inner.trace_context),
            None => global::get_text_map_propagator(|p| f(p, writes_trace_context(p))),
        }
    }

    /// The context `headers` carry, read with the propagator (an empty one when they carry
    /// none).
    pub fn extract(&self, headers: &[(Bytes, Option<Bytes>)]) -> Context {
        self.extract_onto(&Context::current(), headers)
    }

    /// `cx` with what `headers` carry read into it with the propagator.
    ///
    /// A W3C Trace Context propagator (as [`inject`](Self::inject) tells them) is not called
    /// for a record whose `traceparent` has the usual shape: kcon reads it itself.
    fn extract_onto(&self, cx: &Context, headers: &[(Bytes, Option<Bytes>)]) -> Context {
        self.with_propagator(|p, w3c| {
            w3c.then(|| extract_trace_context(cx, headers))
                .flatten()
                .unwrap_or_else(|| p.extract_with_context(cx, &HeaderExtractor::new(headers)))
        })
    }

    /// Hooks for a [`ProducerBuilder`](kcon_produce::ProducerBuilder) that write the context
    /// current at each send into the record's headers (keeping any already there). No span:
    /// [`send`](Self::send) makes one.
    pub fn producer_hooks(&self) -> impl ProducerHooks + use<> {
        ContextHooks(self.clone())
    }

    /// Sends `record` with `producer` inside a `send` span, a child of the context current
    /// when the returned future is first polled (attach one with OpenTelemetry's
    /// [`FutureExt::with_context`](opentelemetry::trace::FutureExt::with_context)), whose
    /// context goes into the record's headers. Returns once the record is queued, as
    /// [`Producer::send`] does, with the [`TracedDelivery`] to await its outcome: the span
    /// ends with it.
    ///
    /// # Cancel safety
    ///
    /// As [`Producer::send`]'s: dropped before it returns, nothing is queued (the span ends,
    /// saying so). A [`TracedDelivery`] dropped does not stop the record; its span ends then,
    /// without the outcome.
    pub async fn send(
        &self,
        producer: &Producer,
        mut record: ProducerRecord,
    ) -> Result<TracedDelivery, ProduceError> {
        let (cx, shape, recording) = self.producer_span(Operation::Send, &mut record);
        let started = Instant::now();
        // A span that does not record (most, when traces are sampled) is done with once its
        // context is in the headers: its end does nothing, so it is not kept until the record
        // is delivered, and is freed here, on the thread that made it.
        let cx = recording.then_some(cx);
        let mut queued = Queued {
            telemetry: self.clone(),
            cx,
            topic: record.topic,
            shape,
            partition_named: record.partition.is_some(),
            started,
        };
        let delivery = producer.send(record).await;
        let cx = queued.cx.take();
        match delivery {
            Ok(delivery) => Ok(TracedDelivery {
                delivery,
                cx,
                queued,
            }),
            Err(e) => {
                self.delivered(cx.as_ref(), &queued, &Err(e.clone()));
                Err(e)
            }
        }
    }

    /// Hands `record` to an exactly-once processor's [`Sink`] inside a `create` span (kind
    /// PRODUCER), a child of the current context (in a handler run by
    /// [`process`](Self::process), the process span), whose context goes into the record's
    /// headers as [`send`](Self::send)'s does (a header the record already has is kept). The
    /// processor sends the record later, in its transaction; the span ends here, as the
    /// conventions' `create` spans do, and describes the record's creation, not its delivery.
    pub fn sink_send(&self, sink: &Sink, mut record: ProducerRecord) {
        end(&self.producer_span(Operation::Create, &mut record).0.span());
        sink.send(record);
    }

    /// A `send` or `create` span for `record` (kind PRODUCER), a child of the current context,
    /// started and written into the record's headers: the context holding it, the shape it was
    /// made from, and whether it records.
    fn producer_span(
        &self,
        operation: Operation,
        record: &mut ProducerRecord,
    ) -> (Context, Arc<Shape>, bool) {
        let inner = &self.inner;
        let shape = inner.shapes.get(operation, &record.topic, record.partition);
        let current = Context::current();
        let mut span = inner
            .tracer
            .span_builder(shape.name)
            .with_kind(SpanKind::Producer)
            .with_attributes(shape.span.clone())
            .start_with_context(&inner.tracer, &current);
        let recording = span.is_recording();
        if recording {
            let mut attributes = Vec::with_capacity(2);
            self.describe(record.key.as_ref(), record.value.as_ref(), &mut attributes);
            span.set_attributes(attributes);
        }
        let cx = current.with_span(span);
        self.inject(&cx, &mut record.headers);
        (cx, shape, recording)
    }

    /// A record's own attributes on its send or process span (beside its shape's, which the
    /// span starts with): the key when asked for, the value's size or the tombstone flag.
    fn describe(&self, key: Option<&Bytes>, value: Option<&Bytes>, into: &mut Vec<KeyValue>) {
        let inner = &self.inner;
        let c = inner.conventions;
        if inner.record_keys
            && let Some(key) = key
        {
            c.key(key, into);
        }
        c.body(value.map(Bytes::len), into);
    }

    /// Ends a send's span with its outcome, if it records (`cx`: the context holding it), and
    /// counts the send.
    fn delivered(
        &self,
        cx: Option<&Context>,
        sent: &Queued,
        outcome: &Result<Delivered, ProduceError>,
    ) {
        let inner = &self.inner;
        let c = inner.conventions;
        let took = sent.started.elapsed().as_secs_f64();
        match outcome {
            Ok(delivered) => {
                if let Some(cx) = cx {
                    let span = cx.span();
                    let mut kv = Vec::with_capacity(3);
                    // Named at the start when the record named its partition.
                    if !sent.partition_named {
                        kv.push(KeyValue::new(
                            "messaging.destination.partition.id",
                            delivered.partition.to_string(),
                        ));
                    }
                    if let Some(offset) = delivered.offset {
                        c.offset(offset, &mut kv);
                    }
                    span.set_attributes(kv);
                    span.end();
                }
                // The send span's shape is the partition's when the record named it.
                let looked_up;
                let shape = if sent.partition_named {
                    &sent.shape
                } else {
                    looked_up =
                        inner
                            .shapes
                            .get(Operation::Send, &sent.topic, Some(delivered.partition));
                    &looked_up
                };
                shape.count(None);
                inner.operation_duration.record(took, &shape.metric);
            }
            Err(e) => {
                let kind = error_type(e);
                if let Some(cx) = cx {
                    let span = cx.span();
                    span.set_attribute(KeyValue::new("error.type", kind.clone()));
                    span.set_status(Status::error(e.to_string()));
                    span.end();
                }
                // A failure is counted without a partition: the send span's own shape, unless
                // the record named its partition.
                let looked_up;
                let shape = if sent.partition_named {
                    looked_up = inner.shapes.get(Operation::Send, &sent.topic, None);
                    &looked_up
                } else {
                    &sent.shape
                };
                shape.count(Some(&kind));
                let mut metric = shape.metric.clone();
                metric.push(KeyValue::new("error.type", kind));
                inner.operation_duration.record(took, &metric);
            }
        }
    }

    /// Runs `handler` for `record` inside a `process` span (kind CONSUMER), with the span's
    /// context current while it runs, and returns what it returns. The span carries the
    /// record's topic, partition, offset and size, the consumer group and client id given to
    /// the builder, the key when asked for, and (after the first try) `kcon.attempt`. A
    /// [`Failure`] sets the span's status to an error with the failure's text, `error.type` to
    /// its class, and an event `kcon.failure` saying whether it is retriable.
    ///
    /// # Cancel safety
    ///
    /// As cancel-safe as `handler`: dropped, it drops `handler` and ends the span, unfinished.
    pub async fn process<R, F, T>(&self, record: &R, handler: F) -> Result<T, Failure>
    where
        R: ProcessedRecord + ?Sized,
        F: Future<Output = Result<T, Failure>>,
    {
        let inner = &self.inner;
        let c = inner.conventions;
        let r = record.record();
        let shape = inner
            .shapes
            .get(Operation::Process, &r.topic, Some(r.partition));
        let current = Context::current();
        // A record without headers carries no context: nothing to read.
        let carried = (!r.headers.is_empty()).then(|| self.extract_onto(&current, &r.headers));
        let builder = inner
            .tracer
            .span_builder(shape.name)
            .with_kind(SpanKind::Consumer)
            .with_attributes(shape.span.clone());
        let mut span: BoxedSpan = match inner.parent {
            ProcessParent::Parent => {
                builder.start_with_context(&inner.tracer, carried.as_ref().unwrap_or(&current))
            }
            ProcessParent::Link => {
                let links = carried
                    .map(|cx| cx.span().span_context().clone())
                    .filter(SpanContext::is_valid)
                    .map(Link::with_context)
                    .into_iter()
                    .collect();
                builder
                    .with_links(links)
                    .start_with_context(&inner.tracer, &current)
            }
        };
        if span.is_recording() {
            let mut attributes = Vec::with_capacity(5);
            c.offset(r.offset, &mut attributes);
            self.describe(r.key.as_ref(), r.value.as_ref(), &mut attributes);
            let attempt = record.attempt();
            if attempt > 1 {
                attributes.push(KeyValue::new("kcon.attempt", i64::from(attempt)));
            }
            span.set_attributes(attributes);
        }
        let cx = current.with_span(span);
        let started = Instant::now();
        let outcome = handler.with_context(cx.clone()).await;
        let took = started.elapsed().as_secs_f64();
        let span = cx.span();
        match &outcome {
            Err(failure) => {
                span.set_attribute(KeyValue::new("error.type", failure.class().to_owned()));
                span.add_event(
                    "kcon.failure",
                    vec![KeyValue::new("kcon.retriable", failure.is_retriable())],
                );
                span.set_status(Status::error(failure.to_string()));
                if inner.policy_hooked.load(Ordering::Relaxed) {
                    self.park(r, cx.clone());
                } else {
                    end(&span);
                }
                shape.count(Some(failure.class()));
                let mut metric = shape.metric.clone();
                metric.push(KeyValue::new("error.type", failure.class().to_owned()));
                inner.process_duration.record(took, &metric);
            }
            Ok(_) => {
                end(&span);
                shape.count(None);
                inner.process_duration.record(took, &shape.metric);
            }
        }
        outcome
    }
}

impl Telemetry {
    /// Receives a batch with [`Consumer::recv_batch`] and describes it with a `receive` span
    /// (kind CONSUMER; `poll {topic}`, or `{topic} receive` under v1.24.0's names) from the
    /// call to its return, a child of the current context, linked to the context each record
    /// carries (the first 128). Its attributes: the topic and partition, the records in the
    /// batch (`messaging.batch.message_count`), the consumer group and client id given to the
    /// builder. A failed call's span carries `error.type` (the error's kind) and its text.
    ///
    /// # Cancel safety
    ///
    /// As [`Consumer::recv_batch`]'s: cancel-safe; dropped while it waits, no span is made.
    pub async fn recv_batch(&self, consumer: &mut Consumer) -> Result<Vec<Record>, kcon::Error> {
        let started = SystemTime::now();
        let outcome = consumer.recv_batch().await;
        self.received(started, &outcome);
        outcome
    }

    /// [`recv_batch`](Self::recv_batch) for a share consumer
    /// ([`ShareConsumer::recv_batch`]): the same span, whose batch may hold several partitions'
    /// records (then it names the topic only when they share one, and no partition). Process
    /// each record with [`process`](Self::process): a record handed out again carries its
    /// delivery count as `kcon.attempt`.
    ///
    /// # Cancel safety
    ///
    /// As [`ShareConsumer::recv_batch`]'s: cancel-safe; dropped while it waits, no span is
    /// made.
    pub async fn share_recv_batch(
        &self,
        consumer: &mut ShareConsumer,
    ) -> Result<Vec<Record>, kcon::Error> {
        let started = SystemTime::now();
        let outcome = consumer.recv_batch().await;
        self.received(started, &outcome);
        outcome
    }

    /// The receive span of a call started at `started` that returned `outcome` (none for an
    /// empty batch).
    fn received(&self, started: SystemTime, outcome: &Result<Vec<Record>, kcon::Error>) {
        /// Links a receive span carries at most (the SDK's default limit).
        const LINKS_AT_MOST: usize = 128;
        let inner = &self.inner;
        let c = inner.conventions;
        let mut attributes = Vec::with_capacity(10);
        c.operation(Operation::Receive, &mut attributes);
        let (name, links, error) = match outcome {
            Ok(records) => {
                let Some(first) = records.first() else {
                    return;
                };
                let one_topic = records.iter().all(|r| r.topic == first.topic);
                let one_partition =
                    one_topic && records.iter().all(|r| r.partition == first.partition);
                let name = if one_partition {
                    c.destination(first.topic.as_str(), Some(first.partition), &mut attributes);
                    c.span_name(Operation::Receive, &first.topic)
                } else if one_topic {
                    c.destination(first.topic.as_str(), None, &mut attributes);
                    c.span_name(Operation::Receive, &first.topic)
                } else {
                    c.span_name_alone(Operation::Receive)
                };
                attributes.push(KeyValue::new(
                    "messaging.batch.message_count",
                    i64::try_from(records.len()).unwrap_or(i64::MAX),
                ));
                let links = records
                    .iter()
                    .map(|r| self.extract(&r.headers).span().span_context().clone())
                    .filter(|sc| sc.is_valid())
                    .take(LINKS_AT_MOST)
                    .map(Link::with_context)
                    .collect();
                (name, links, None)
            }
            Err(e) => {
                attributes.push(KeyValue::new("error.type", format!("{:?}", e.kind())));
                (c.span_name_alone(Operation::Receive), Vec::new(), Some(e))
            }
        };
        if let Some(group) = &inner.consumer_group {
            c.consumer_group(group, &mut attributes);
        }
        if let Some(id) = &inner.client_id {
            c.client_id(id, &mut attributes);
        }
        let mut span = inner
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Consumer)
            .with_start_time(started)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&inner.tracer, &Context::current());
        if let Some(e) = error {
            span.set_status(Status::error(e.to_string()));
        }
        span.end();
    }

    /// Hooks for a [`ProcessorBuilder`](kcon::ProcessorBuilder) that finish the span of a
    /// failed try (of [`process`](Self::process)) with what the policy made of its record, as
    /// an event: `kcon.retry` (with the failed try's `kcon.attempt` and
    /// `kcon.retry.delay_ms`), `kcon.skip`, `kcon.dead_letter` or `kcon.breaker_open`. Until
    /// then the span stays open (at most 1,024 of them; past that the oldest ends without its
    /// outcome, as does one whose processor stopped on its record).
    pub fn policy_hooks(&self) -> impl PolicyHooks + use<> {
        self.inner.policy_hooked.store(true, Ordering::Relaxed);
        PolicySpans(self.clone())
    }

    /// Keeps a failed try's span open for its outcome.
    fn park(&self, record: &Record, cx: Context) {
        let mut parked = self.inner.parked.lock().expect("no panics holding it");
        let parked = &mut *parked;
        if parked.spans.len() >= PARKED_AT_MOST
            && let Some(oldest) = parked
                .spans
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| *k)
            && let Some((_, cx)) = parked.spans.remove(&oldest)
        {
            cx.span().end();
        }
        parked.next += 1;
        let key = (record.topic, record.partition, record.offset);
        if let Some((_, earlier)) = parked.spans.insert(key, (parked.next, cx)) {
            earlier.span().end();
        }
    }

    /// Ends a failed try's span, if it is kept, with the event `name`.
    fn settle(&self, record: &Record, name: &'static str, attributes: Vec<KeyValue>) {
        let key = (record.topic, record.partition, record.offset);
        let parked = self
            .inner
            .parked
            .lock()
            .expect("no panics holding it")
            .spans
            .remove(&key);
        if let Some((_, cx)) = parked {
            let span = cx.span();
            span.add_event(name, attributes);
            span.end();
        }
    }
}

impl Telemetry {
    /// Reports the lag of the consumer whose metrics handle this is
    /// ([`Consumer::metrics_handle`]), read from the handle at each collection, per partition:
    /// `kcon.consumer.lag` (`{message}`: records between its position and the end of the log)
    /// and `kcon.consumer.lag.time` (`s`: how old its next record is; zero when caught up), with
    /// the partition's topic and id and the consumer's group and client id. A partition whose
    /// lag is not known yet is left out rather than reported as zero. Reported until the
    /// returned [`LagObservation`] is dropped.
    pub fn observe_lag(&self, handle: MetricsHandle) -> LagObservation {
        let source = Arc::new(LagSource {
            handle,
            conventions: self.inner.conventions,
            stopped: AtomicBool::new(false),
        });
        let records = source.clone();
        self.inner
            .meter
            .i64_observable_gauge("kcon.consumer.lag")
            .with_unit("{message}")
            .with_description("Records between a consumer's position and the end of the log.")
            .with_callback(move |observer| {
                for (lag, attributes) in records.points() {
                    if let Some(n) = lag.records {
                        observer.observe(n, &attributes);
                    }
                }
            })
            .build();
        let time = source.clone();
        self.inner
            .meter
            .f64_observable_gauge("kcon.consumer.lag.time")
            .with_unit("s")
            .with_description("How old a consumer's next record is.")
            .with_callback(move |observer| {
                for (lag, attributes) in time.points() {
                    if let Some(t) = lag.time {
                        observer.observe(t.as_secs_f64(), &attributes);
                    }
                }
            })
            .build();
        LagObservation { source }
    }
}

/// What the lag gauges' callbacks read.
struct LagSource {
    handle: MetricsHandle,
    conventions: Conventions,
    /// Set when the [`LagObservation`] is dropped: the callbacks report nothing more.
    stopped: AtomicBool,
}

impl LagSource {
    /// Each partition's lag as the handle has it, with its attributes (none once stopped).
    fn points(&self) -> Vec<(PartitionLag, Vec<KeyValue>)> {
        if self.stopped.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let c = self.conventions;
        let (client_id, group) = self.handle.identity();
        self.handle
            .snapshot()
            .partitions
            .into_iter()
            .map(|(tp, lag)| {
                let mut attributes = Vec::with_capacity(7);
                attributes.push(KeyValue::new("messaging.system", "kafka"));
                c.destination(tp.topic, Some(tp.partition), &mut attributes);
                if let Some(group) = group {
                    c.consumer_group(&group.into(), &mut attributes);
                }
                c.client_id(&client_id.into(), &mut attributes);
                (lag, attributes)
            })
            .collect()
    }
}

/// A consumer's lag reported as gauges ([`Telemetry::observe_lag`]): dropped, nothing more is
/// reported.
#[must_use = "the lag is reported only while this is kept"]
pub struct LagObservation {
    source: Arc<LagSource>,
}

impl std::fmt::Debug for LagObservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagObservation").finish_non_exhaustive()
    }
}

impl Drop for LagObservation {
    fn drop(&mut self) {
        self.source.stopped.store(true, Ordering::Relaxed);
    }
}

/// [`Telemetry::policy_hooks`].
struct PolicySpans(Telemetry);

impl PolicyHooks for PolicySpans {
    fn on_retry(&self, record: &Record, _: &FailureInfo, attempt: u32, delay: Duration) {
        self.0.settle(
            record,
            "kcon.retry",
            vec![
                KeyValue::new("kcon.attempt", i64::from(attempt)),
                KeyValue::new(
                    "kcon.retry.delay_ms",
                    i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                ),
            ],
        );
    }

    fn on_skip(&self, record: &Record, _: &FailureInfo) {
        self.0.settle(record, "kcon.skip", Vec::new());
    }

    fn on_dead_letter(&self, record: &Record, _: &FailureInfo) {
        self.0.settle(record, "kcon.dead_letter", Vec::new());
    }

    fn on_breaker_open(&self, record: &Record, _: &FailureInfo) {
        self.0.settle(record, "kcon.breaker_open", Vec::new());
    }
}

/// A send's span while its record is handed to the producer: ended, saying the record was
/// not queued, when the send is dropped before it returns.
struct Queued {
    telemetry: Telemetry,
    cx: Option<Context>,
    topic: Topic,
    /// The send span's shape.
    shape: Arc<Shape>,
    /// The record named its partition: the span has it from its start.
    partition_named: bool,
    started: Instant,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(cx) = self.cx.take() {
            let span = cx.span();
            span.set_status(Status::error(
                "the send was dropped before its record was queued",
            ));
            span.end();
        }
    }
}

/// The outcome of a record sent with [`Telemetry::send`]; awaiting it (or
/// [`try_outcome`](Self::try_outcome) finding it) ends the record's span. `Send`.
///
/// # Cancel safety
///
/// Cancel-safe, as [`Delivery`] is: dropping it does not withdraw the record, and its span ends
/// then without the outcome.
#[must_use = "the record's span ends when its outcome is awaited"]
pub struct TracedDelivery {
    delivery: Delivery,
    /// The context holding the send span, while the span records.
    cx: Option<Context>,
    /// What the span's end needs; its own context already taken, so that its drop says nothing.
    queued: Queued,
}

impl TracedDelivery {
    /// The outcome if the record is done, its span ended, without waiting; the delivery
    /// itself, to await or ask again, while it is not. As [`Delivery::try_outcome`]: for
    /// checking many deliveries in turn without a task woken for each.
    pub fn try_outcome(self) -> Result<Result<Delivered, ProduceError>, TracedDelivery> {
        let TracedDelivery {
            delivery,
            cx,
            queued,
        } = self;
        match delivery.try_outcome() {
            Ok(outcome) => {
                queued.telemetry.delivered(cx.as_ref(), &queued, &outcome);
                Ok(outcome)
            }
            Err(delivery) => Err(TracedDelivery {
                delivery,
                cx,
                queued,
            }),
        }
    }
}

impl std::fmt::Debug for TracedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedDelivery").finish_non_exhaustive()
    }
}

impl Future for TracedDelivery {
    type Output = Result<Delivered, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let outcome = std::task::ready!(Pin::new(&mut this.delivery).poll(cx));
        this.queued
            .telemetry
            .delivered(this.cx.as_ref(), &this.queued, &outcome);
        Poll::Ready(outcome)
    }
}

/// Ends `span` if it records. Ending one that does not is a no-op that reads the clock
/// (OpenTelemetry's `SpanRef::end` reads it before asking the span): at 1 % sampling that read
/// would be most of what an unsampled span's end costs.
fn end(span: &SpanRef<'_>) {
    if span.is_recording() {
        span.end();
    }
}

/// `error.type` of a failed send: the broker's error code when a broker refused, else what
/// kind of failure it was.
fn error_type(e: &ProduceError) -> String {
    match e.code() {
        Some(code) => format!("{code:?}"),
        None => format!("{:?}", e.kind()),
    }
}

/// [`Telemetry::producer_hooks`].
struct ContextHooks(Telemetry);

impl ProducerHooks for ContextHooks {
    fn on_send(&self, record: &mut ProducerRecord) {
        Context::map_current(|cx| self.0.inject(cx, &mut record.headers));
    }
}

#[cfg(test)]
mod tests;
