//! `process --client kcon --bootstrap B --topic T --group G --ends E0,E1,.. --keys K
//! --handler-ms M --concurrency C`: a [`kcon::Processor`] over a consumer in the new group G
//! (reading from the earliest offset) handles every record of T with `run_concurrently`: up to
//! C records in the handler at once (`processing.max.concurrency`), a key's records one after
//! another (`processing.ordering=key`), each handler waiting M ms (nothing at all for 0). Once every record below the partitions' ends `Ei` was handled, the
//! run stops, commits and closes.
//!
//! `--telemetry R` runs each handler in kcon-opentelemetry's process span, traces sampled at
//! ratio R (`src/otel.rs`); `off`, the default, without. With `--floor true` each handler runs
//! inside a span made and timed through OpenTelemetry's SDK alone: the least any
//! instrumentation of it costs.
//!
//! `--handler-timer exact` (the default) waits on [`ExactWaits`], which ends a wait within
//! 0.1 ms of its deadline as the Java peer's `Thread.sleep` does; `--handler-timer tokio` waits
//! with `tokio::time::sleep`, whose 1 ms ticks make a 10 ms wait take about 12 ms under load.
//!
//! The records' keys are the eight digits of a number below K (`fill --keys K`). Prints one
//! JSON line: the distinct records handled, the times of the first handler call and of the end
//! of the last record's, the checks (every offset handled once; per key, records started in
//! offset order and never two at once), the most records in the handler at once, and the
//! process's CPU seconds between the first record and the last.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::FutureExt as _;
use serde_json::json;
use tokio::sync::Notify;

use crate::BoxError;
use crate::args::Args;
use crate::exact_wait::ExactWaits;

/// A run that handles nothing new for this long fails, saying what it saw.
const STALL: Duration = Duration::from_secs(60);

/// What the handlers saw, shared by every record in the handler.
struct Handled {
    /// Per partition, per offset: times the record was handled to its end.
    seen: Vec<Vec<AtomicU8>>,
    /// Per key: the offset of its record started last (-1: none yet).
    last_started: Vec<AtomicI64>,
    /// Per key: a record of it is in the handler.
    busy: Vec<AtomicBool>,
    /// Records in all partitions.
    total: u64,
    /// Distinct records handled to their end.
    distinct: AtomicU64,
    /// Handler calls.
    calls: AtomicU64,
    /// Nanoseconds the handlers spent waiting, all together: what a wait of M ms took.
    waited_ns: AtomicU64,
    duplicates: AtomicU64,
    /// Records of a partition or offset not in the workload, or a key not among the K.
    unexpected: AtomicU64,
    /// A key's record started before a record of the same key at a lower offset.
    order_violations: AtomicU64,
    /// A key's record started while another of the same key was in the handler.
    key_overlaps: AtomicU64,
    running: AtomicUsize,
    most_running: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    /// The process's CPU seconds at the first record and at the last.
    cpu_at: Mutex<(Option<f64>, Option<f64>)>,
    done: Notify,
}

impl Handled {
    fn new(ends: &[i64], keys: usize) -> Handled {
        Handled {
            seen: ends
                .iter()
                .map(|&e| (0..e).map(|_| AtomicU8::new(0)).collect())
                .collect(),
            last_started: (0..keys).map(|_| AtomicI64::new(-1)).collect(),
            busy: (0..keys).map(|_| AtomicBool::new(false)).collect(),
            total: ends.iter().map(|&e| e.max(0) as u64).sum(),
            distinct: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            order_violations: AtomicU64::new(0),
            key_overlaps: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            first_ns: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            cpu_at: Mutex::new((None, None)),
            done: Notify::new(),
        }
    }

    /// The key's number, if it is one of the K.
    fn key_index(&self, key: Option<&[u8]>) -> Option<usize> {
        let key = key?;
        if key.is_empty() || !key.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = key
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        (n < self.last_started.len()).then_some(n)
    }

    /// A record enters the handler.
    fn start(&self, key: Option<usize>, offset: i64) {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_ns.store(now_ns(), Ordering::Relaxed);
            self.cpu_at.lock().expect("no panics holding it").0 = Some(crate::txn::cpu_seconds());
        }
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.most_running.fetch_max(now, Ordering::Relaxed);
        match key {
            Some(k) => {
                if self.busy[k].swap(true, Ordering::AcqRel) {
                    self.key_overlaps.fetch_add(1, Ordering::Relaxed);
                }
                if self.last_started[k].swap(offset, Ordering::AcqRel) >= offset {
                    self.order_violations.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A record leaves the handler, done with.
    fn end(&self, key: Option<usize>, partition: i32, offset: i64) {
        if let Some(k) = key {
            self.busy[k].store(false, Ordering::Release);
        }
        self.running.fetch_sub(1, Ordering::Relaxed);
        let slot = usize::try_from(partition)
            .ok()
            .and_then(|p| self.seen.get(p))
            .and_then(|s| usize::try_from(offset).ok().and_then(|o| s.get(o)));
        let Some(slot) = slot else {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if slot.fetch_add(1, Ordering::AcqRel) > 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.distinct.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.last_ns.store(now_ns(), Ordering::Relaxed);
            self.cpu_at.lock().expect("no panics holding it").1 = Some(crate::txn::cpu_seconds());
            self.done.notify_one();
        }
    }

    /// Offsets below the ends never handled.
    fn missing(&self) -> u64 {
        self.seen
            .iter()
            .flatten()
            .filter(|s| s.load(Ordering::Acquire) == 0)
            .count() as u64
    }

    fn describe(&self) -> String {
        format!(
            "{} of {} records handled ({} calls, {} in the handler), {} duplicates",
            self.distinct.load(Ordering::Relaxed),
            self.total,
            self.calls.load(Ordering::Relaxed),
            self.running.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
        )
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The `process` subcommand.
pub fn main(args: &Args, started: SystemTime) -> Result<(), BoxError> {
    let client = args.required("client")?;
    if client != "kcon" {
        return Err(format!("process runs kcon only, not {client:?}").into());
    }
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let group = args.required("group")?.to_owned();
    let ends = args.list("ends")?;
    let keys: usize = args.number("keys")?;
    let handler_ms: u64 = args.number("handler-ms")?;
    let concurrency: usize = args.number("concurrency")?;
    let timer = match args.optional("handler-timer").unwrap_or("exact") {
        // A handler that returns at once waits on nothing: no timer thread beside the run.
        _ if handler_ms == 0 => Timer::Tokio,
        "exact" => Timer::Exact(Arc::new(ExactWaits::start())),
        "tokio" => Timer::Tokio,
        other => return Err(format!("--handler-timer is exact or tokio, not {other:?}").into()),
    };
    let instrumented = crate::otel::Instrumented::from_args(args, &topic, Some(&group))?;
    let handled = Arc::new(Handled::new(&ends, keys));
    // The runtime an application gets from `#[tokio::main]`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(
        &bootstrap,
        &topic,
        &group,
        Handler {
            time: Duration::from_millis(handler_ms),
            concurrency,
            timer,
            telemetry: instrumented.as_ref().map(|i| match &i.floor {
                Some(floor) => Instrumentation::Floor(floor.clone()),
                None => Instrumentation::Telemetry(i.telemetry.clone()),
            }),
        },
        handled.clone(),
    ))?;
    let closed = now_ns();
    drop(runtime);
    let spans = instrumented.map(crate::otel::Instrumented::finish);
    let ns = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let h = &handled;
    let (cpu_first, cpu_last) = *h.cpu_at.lock().expect("no panics holding it");
    let records = h.distinct.load(Ordering::Acquire);
    let duplicates = h.duplicates.load(Ordering::Relaxed);
    let unexpected = h.unexpected.load(Ordering::Relaxed);
    let missing = h.missing();
    let complete = records == h.total;
    let first = h.first_ns.load(Ordering::Relaxed);
    let last = h.last_ns.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "records": records,
            "calls": h.calls.load(Ordering::Relaxed),
            "started_ns": ns(started),
            "first_ns": (first > 0).then_some(first),
            "last_ns": (last > 0).then_some(last),
            "closed_ns": closed,
            "complete": complete,
            "duplicates": duplicates,
            "missing": missing,
            "unexpected": unexpected,
            "order_violations": h.order_violations.load(Ordering::Relaxed),
            "key_overlaps": h.key_overlaps.load(Ordering::Relaxed),
            "most_running": h.most_running.load(Ordering::Relaxed),
            "wait_ms_mean": wait_ms_mean(h),
            "span_cpu_s": cpu_first.zip(cpu_last).map(|(a, b)| b - a),
            "exactly_once": complete && duplicates == 0 && missing == 0 && unexpected == 0,
            "spans_exported": spans,
        })
    );
    Ok(())
}

/// How long the handlers' waits took on average, in ms (none when they did not wait).
fn wait_ms_mean(h: &Handled) -> Option<f64> {
    let (waited, calls) = (
        h.waited_ns.load(Ordering::Relaxed),
        h.calls.load(Ordering::Relaxed),
    );
    (waited > 0 && calls > 0).then(|| waited as f64 / calls as f64 / 1e6)
}

/// What a handler waits on.
enum Timer {
    Exact(Arc<ExactWaits>),
    Tokio,
}

/// What each handler call does, and how many run at once.
struct Handler {
    time: Duration,
    concurrency: usize,
    timer: Timer,
    telemetry: Option<Instrumentation>,
}

/// What a handler runs inside.
enum Instrumentation {
    /// kcon-opentelemetry's process span (`--telemetry R`).
    Telemetry(kcon_opentelemetry::Telemetry),
    /// The least a span and a duration point per record cost through OpenTelemetry's SDK
    /// (`--telemetry R --floor true`).
    Floor(Arc<crate::otel::Floor>),
}

/// Handles every record of the topic with a processor, then commits and closes it.
async fn run(
    bootstrap: &str,
    topic: &str,
    group: &str,
    handler: Handler,
    handled: Arc<Handled>,
) -> Result<(), BoxError> {
    let Handler {
        time: handler_time,
        concurrency,
        timer,
        telemetry,
    } = handler;
    let mut consumer = kcon::Consumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.subscribe([topic])?;
    let mut builder = kcon::Processor::builder(consumer)
        .set("processing.ordering", "key")
        .set("processing.max.concurrency", concurrency.to_string());
    // An experiment's processor properties (never passed by `run`), as `txn` takes them.
    for (k, v) in crate::experiment_properties() {
        builder = builder.set(&k, v);
    }
    if let Some(Instrumentation::Telemetry(t)) = &telemetry {
        builder = builder.hooks(t.policy_hooks());
    }
    let mut processor = builder.build()?;
    let seen = handled.clone();
    let stop = handled.done.notified();
    let watchdog = async {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(STALL).await;
            let now = handled.calls.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
        }
    };
    // With KCON_COMPARE_STATS=1, the processor's records in the handler and buffered, sampled
    // every 50 ms, are printed to stderr at the end (their means): where a run's time went.
    let stats = std::env::var_os("KCON_COMPARE_STATS").is_some();
    let counts = processor.metrics_handle();
    let sampler = tokio::spawn(async move {
        if !stats {
            return;
        }
        let (mut n, mut running, mut buffered, mut behind) = (0u64, 0usize, 0usize, 0usize);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let m = counts.snapshot();
            if m.records_processed == 0 {
                continue;
            }
            n += 1;
            running += m.records_running;
            buffered += m.records_buffered;
            behind += m.records_waiting_for_key;
            eprintln!(
                "samples {n}: mean running {:.1}, buffered {:.1}, waiting for their key {:.1}",
                running as f64 / n as f64,
                buffered as f64 / n as f64,
                behind as f64 / n as f64
            );
        }
    });
    tokio::select! {
        outcome = processor.run_concurrently_until(stop, async move |r| {
            let handling = async {
                let key = seen.key_index(r.key.as_deref());
                seen.start(key, r.record.offset);
                if !handler_time.is_zero() {
                    let at = std::time::Instant::now();
                    match &timer {
                        Timer::Exact(waits) => waits.wait(handler_time).await,
                        Timer::Tokio => tokio::time::sleep(handler_time).await,
                    }
                    let waited = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    seen.waited_ns.fetch_add(waited, Ordering::Relaxed);
                }
                seen.end(key, r.record.partition, r.record.offset);
                Ok::<(), kcon::Failure>(())
            };
            match &telemetry {
                Some(Instrumentation::Telemetry(t)) => t.process(r, handling).await,
                Some(Instrumentation::Floor(floor)) => {
                    let started = floor.start();
                    let outcome = handling.with_context(started.cx.clone()).await;
                    floor.end(started.recording.then_some(&started.cx), started.at);
                    outcome
                }
                None => handling.await,
            }
        }) => outcome?,
        () = watchdog => {
            return Err(format!("nothing handled for {} s: {}", STALL.as_secs(), handled.describe()).into());
        }
    }
    sampler.abort();
    // The processor stores each record's offset once it is done with; commit them, then leave.
    processor.commit().await?;
    processor.close().await?;
    Ok(())
}
