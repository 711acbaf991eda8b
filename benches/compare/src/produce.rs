//! The `produce` subcommand: one client writes N records to an existing topic, each sent as an
//! application sends it (an asynchronous send with a completion per record), then waits until
//! every record is acknowledged. Values come from a file of fixed-size values shared by every
//! client (`--values`), keys (with `--keys true`) are the eight digits of `i mod 10007`. With
//! `--copy true` each record's value is a copy of its file value made for that record, as an
//! application that serializes each record allocates it; by default records share the file's
//! values.
//!
//! Clients: `kcon` (`Producer::send` per record), `kcon-all` (`Producer::send_all` per 1,000
//! records), `rdkafka` (rust-rdkafka's `FutureProducer::send_result` per record). `kcon` with
//! `--telemetry R` sends each record with kcon-opentelemetry's `Telemetry::send`, traces
//! sampled at ratio R (`src/otel.rs`); with `--floor true` as `kcon` does, plus the least a
//! span and a duration point per record cost through OpenTelemetry's SDK.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;

use crate::BoxError;
use crate::args::Args;

/// Records per `send_all` call of `kcon-all`.
const CHUNK: usize = 1_000;

/// What one run writes.
struct Job {
    bootstrap: String,
    topic: String,
    records: usize,
    values: Vec<Bytes>,
    acks: String,
    idempotence: String,
    compression: String,
    keys: bool,
    /// Each record's value a copy made for it (`--copy true`).
    copy: bool,
    /// More properties, `name=value` (`--set`, comma-separated): experiments, not the defaults
    /// the benchmark measures.
    extra: Vec<(String, String)>,
}

impl Job {
    fn key(&self, i: usize) -> Option<Bytes> {
        self.keys.then(|| Bytes::from(format!("{:08}", i % 10_007)))
    }

    fn value(&self, i: usize) -> Bytes {
        let shared = &self.values[i % self.values.len()];
        if self.copy {
            Bytes::copy_from_slice(shared)
        } else {
            shared.clone()
        }
    }
}

/// The outcome of one run.
#[derive(Default)]
struct Outcome {
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    /// Batches the brokers acknowledged, where the client says.
    batches: Option<u64>,
}

impl Outcome {
    fn failed(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

pub fn main(args: &Args, started: SystemTime) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let size: usize = args.number("size")?;
    let file = std::fs::read(args.required("values")?)?;
    if size == 0 || file.len() < size {
        return Err(format!("--values holds no value of {size} bytes").into());
    }
    let values = file
        .chunks_exact(size)
        .map(Bytes::copy_from_slice)
        .collect();
    let job = Job {
        bootstrap: args.required("bootstrap")?.to_owned(),
        topic: args.required("topic")?.to_owned(),
        records: args.number("records")?,
        values,
        acks: args.required("acks")?.to_owned(),
        idempotence: args.required("idempotence")?.to_owned(),
        compression: args.required("compression")?.to_owned(),
        keys: args.required("keys")? == "true",
        copy: args.optional("copy") == Some("true"),
        extra: args
            .optional("set")
            .map(crate::properties)
            .unwrap_or_default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let instrumented = crate::otel::Instrumented::from_args(args, &job.topic, None)?;
    let outcome = runtime.block_on(async {
        match client.as_str() {
            "kcon" => match &instrumented {
                Some(crate::otel::Instrumented {
                    floor: Some(floor), ..
                }) => kcon(&job, Sends::Floor(floor)).await,
                Some(i) => kcon(&job, Sends::Traced(&i.telemetry)).await,
                None => kcon(&job, Sends::EachRecord).await,
            },
            "kcon-all" => kcon(&job, Sends::Together).await,
            "rdkafka" => rdkafka(&job).await,
            other => Err(format!("unknown client {other:?}: kcon, kcon-all or rdkafka").into()),
        }
    })?;
    drop(runtime);
    let spans = instrumented.map(crate::otel::Instrumented::finish);
    let closed = SystemTime::now();
    let ns = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    println!(
        "{}",
        json!({
            "client": client,
            "records": job.records,
            "bytes": outcome.bytes,
            "started_ns": ns(started),
            "first_ns": outcome.first.map(ns),
            "last_ns": outcome.last.map(ns),
            "closed_ns": ns(closed),
            "errors": outcome.errors,
            "first_error": outcome.first_error,
            "batches": outcome.batches,
            "spans_exported": spans,
        })
    );
    if outcome.errors > 0 {
        return Err(format!("{} records failed", outcome.errors).into());
    }
    Ok(())
}

/// kcon's producer, as the job asks for it.
fn kcon_producer(job: &Job) -> Result<kcon_produce::Producer, BoxError> {
    let mut builder = kcon_produce::Producer::builder()
        .bootstrap_servers(&job.bootstrap)
        .set("acks", job.acks.as_str())
        .set("enable.idempotence", job.idempotence.as_str())
        .set("compression.type", job.compression.as_str());
    for (k, v) in &job.extra {
        builder = builder.set(k, v.as_str());
    }
    Ok(builder.build()?)
}

/// How kcon's run sends its records.
enum Sends<'a> {
    /// `Producer::send` per record.
    EachRecord,
    /// `Producer::send_all` per [`CHUNK`] records.
    Together,
    /// `Telemetry::send` per record, each in its send span (`--telemetry`).
    Traced(&'a kcon_opentelemetry::Telemetry),
    /// `Producer::send` per record, each with the SDK's least a span and a duration point
    /// cost (`--telemetry R --floor true`).
    Floor(&'a crate::otel::Floor),
}

async fn kcon(job: &Job, sends: Sends<'_>) -> Result<Outcome, BoxError> {
    use kcon_opentelemetry::TracedDelivery;
    use kcon_produce::{Deliveries, Delivery, ProducerRecord};
    let producer = kcon_producer(job)?;
    // The topic made once and given to every record, as kcon_produce::IntoTopic says.
    let topic = kcon_produce::Topic::new(&job.topic);
    let record = |i: usize| {
        let r = ProducerRecord::new(topic, job.value(i));
        match job.key(i) {
            Some(key) => r.with_key(key),
            None => r,
        }
    };
    let mut out = Outcome {
        first: Some(SystemTime::now()),
        ..Outcome::default()
    };
    if let Sends::Together = sends {
        // Outcomes are read as they come in, oldest call first, so that no more than the
        // calls in flight are held.
        let mut pending = VecDeque::new();
        let mut i = 0;
        while i < job.records {
            let n = CHUNK.min(job.records - i);
            pending.push_back(producer.send_all((i..i + n).map(record)).await?);
            i += n;
            read_done(&mut pending, &mut out, Deliveries::try_outcomes);
        }
        for deliveries in pending {
            tally(&mut out, deliveries.await);
        }
    } else if let Sends::Traced(telemetry) = sends {
        let mut pending = VecDeque::new();
        for i in 0..job.records {
            pending.push_back(telemetry.send(&producer, record(i)).await?);
            read_done(&mut pending, &mut out, |d: TracedDelivery| {
                d.try_outcome().map(|o| [o])
            });
        }
        for delivery in pending {
            tally(&mut out, [delivery.await]);
        }
    } else if let Sends::Floor(floor) = sends {
        // Each send's delivery, its span's context while the span records, and its start.
        let mut pending = VecDeque::new();
        for i in 0..job.records {
            let started = floor.start();
            let delivery = producer.send(record(i)).await?;
            let cx = started.recording.then_some(started.cx);
            pending.push_back((delivery, cx, started.at));
            read_done(&mut pending, &mut out, |(d, cx, at): Floored| {
                match d.try_outcome() {
                    Ok(o) => {
                        floor.end(cx.as_ref(), at);
                        Ok([o])
                    }
                    Err(d) => Err((d, cx, at)),
                }
            });
        }
        for (delivery, cx, at) in pending {
            let outcome = delivery.await;
            floor.end(cx.as_ref(), at);
            tally(&mut out, [outcome]);
        }
    } else {
        let mut pending = VecDeque::new();
        for i in 0..job.records {
            pending.push_back(producer.send(record(i)).await?);
            read_done(&mut pending, &mut out, |d: Delivery| {
                d.try_outcome().map(|o| [o])
            });
        }
        for delivery in pending {
            tally(&mut out, [delivery.await]);
        }
    }
    out.last = Some(SystemTime::now());
    out.bytes = (0..job.records)
        .map(|i| job.values[i % job.values.len()].len() as u64)
        .sum();
    out.batches = Some(producer.metrics().batches_delivered);
    producer.close().await?;
    Ok(out)
}

/// A send of `Sends::Floor` in flight: its delivery, its span's context while the span
/// records, and when it started.
type Floored = (
    kcon_produce::Delivery,
    Option<opentelemetry::Context>,
    std::time::Instant,
);

/// Tallies the outcomes of the sends at the front of `pending` that are done, oldest first,
/// up to the first still waiting, without waiting: `try_outcome` gives a send's outcomes, or
/// the send back while it waits.
fn read_done<D, O, E>(
    pending: &mut VecDeque<D>,
    out: &mut Outcome,
    try_outcome: impl Fn(D) -> Result<O, D>,
) where
    O: IntoIterator<Item = Result<kcon_produce::Delivered, E>>,
    E: std::fmt::Display,
{
    while let Some(front) = pending.pop_front() {
        match try_outcome(front) {
            Ok(outcomes) => tally(out, outcomes),
            Err(waiting) => {
                pending.push_front(waiting);
                break;
            }
        }
    }
}

fn tally<E: std::fmt::Display>(
    out: &mut Outcome,
    outcomes: impl IntoIterator<Item = Result<kcon_produce::Delivered, E>>,
) {
    for o in outcomes {
        if let Err(e) = o {
            out.failed(e);
        }
    }
}

async fn rdkafka(job: &Job) -> Result<Outcome, BoxError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &job.bootstrap)
        .set("acks", &job.acks)
        .set("enable.idempotence", &job.idempotence)
        .set("compression.type", &job.compression);
    for (k, v) in &job.extra {
        config.set(k, v);
    }
    let producer: FutureProducer = config.create()?;
    let mut out = Outcome {
        first: Some(SystemTime::now()),
        ..Outcome::default()
    };
    let mut pending = VecDeque::new();
    for i in 0..job.records {
        let key = job.key(i);
        let value = job.value(i);
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&job.topic).payload(&value[..]);
            if let Some(key) = &key {
                record = record.key(&key[..]);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                // librdkafka's queue is full (`queue.buffering.max.messages`): wait for the
                // oldest record, as an application must, then send again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(oldest) => settle(&mut out, oldest.await),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(format!("send: {e}").into()),
            }
        }
        // Completions already in are read without waiting.
        while let Some(front) = pending.front_mut() {
            match futures::FutureExt::now_or_never(&mut *front) {
                Some(done) => {
                    settle(&mut out, done);
                    pending.pop_front();
                }
                None => break,
            }
        }
    }
    for d in pending {
        settle(&mut out, d.await);
    }
    out.last = Some(SystemTime::now());
    out.bytes = (0..job.records)
        .map(|i| job.values[i % job.values.len()].len() as u64)
        .sum();
    producer.flush(Duration::from_secs(30))?;
    Ok(out)
}

/// Counts one rust-rdkafka completion.
fn settle(
    out: &mut Outcome,
    done: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) {
    match done {
        Ok(Ok(_)) => {}
        Ok(Err((e, _))) => out.failed(e),
        Err(_) => out.failed("the producer dropped the record"),
    }
}
