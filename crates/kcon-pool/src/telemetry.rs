//! A client's metrics pushed to the cluster (KIP-714, `enable.metrics.push`): kcon-core's
//! [`TelemetryMachine`] on the pool's driver, with what the machine leaves to its owner: the
//! client's metrics read from a [`MetricSource`], kept to those the subscription names, sums
//! turned into deltas when the broker asks for them, encoded as OTLP `MetricsData`, compressed
//! with the first codec the broker accepts.
//!
//! The first request waits until the client reached the cluster (the pool's metadata names
//! its brokers, checked every second): a client that cannot connect or log in is not made to
//! try once more for its metrics.
//!
//! Operators see a client's metrics in the broker's client-metrics plugin once a client-metrics
//! subscription matches it (`kafka-client-metrics.sh --alter --name ... --metrics ...`); without
//! one the client asks again each push interval and pushes nothing. A broker that offers no
//! KIP-714 (no plugin configured, or older than 3.7) is asked once: the task then ends, logged
//! at DEBUG.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kcon_codec::compression::{self, Compression};
use kcon_codec::otlp::{self, Kind, Point, Temporality, Value};
use kcon_core::backoff::ExponentialBackoff;
use kcon_core::telemetry::{
    ClientInstanceId, PushOutcome, Subscription, TelemetryEvent, TelemetryMachine,
    TelemetryRequest, TelemetryResponse,
};
use kcon_core::{Outgoing, RequestFailure};
use tokio::sync::{mpsc, watch};
use tokio::time::{self, Instant};
use tracing::{debug, info, warn};

use crate::driver::{Drive, drive};
use crate::metadata::Metadata;
use crate::pool::{BrokerTarget, Pool};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value read at the time.
    Gauge,
    /// A count that only grows, given as its total since the client started.
    Counter,
}

/// One metric of a client, as its [`MetricSource`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its full name, after the Java client's (`org.apache.kafka.consumer.` ...), so that
    /// subscriptions written for Java clients match kcon's.
    pub name: String,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// Its value.
    pub value: Value,
    /// Its attributes (`topic`, `partition`, `node_id`).
    pub attributes: Vec<(String, String)>,
}

impl Metric {
    /// A gauge.
    pub fn gauge(name: impl Into<String>, value: Value) -> Metric {
        Metric {
            name: name.into(),
            kind: MetricKind::Gauge,
            value,
            attributes: Vec::new(),
        }
    }

    /// A counter of `total` since the client started.
    pub fn counter(name: impl Into<String>, total: u64) -> Metric {
        Metric {
            name: name.into(),
            kind: MetricKind::Counter,
            value: Value::Int(i64::try_from(total).unwrap_or(i64::MAX)),
            attributes: Vec::new(),
        }
    }

    /// With one more attribute.
    pub fn with(mut self, key: &str, value: impl ToString) -> Metric {
        self.attributes.push((key.to_string(), value.to_string()));
        self
    }
}

/// Where the telemetry task reads a client's metrics, each time it pushes.
pub trait MetricSource: Send + Sync + 'static {
    /// The client's metrics now.
    fn collect(&self) -> Vec<Metric>;
}

impl<F: Fn() -> Vec<Metric> + Send + Sync + 'static> MetricSource for F {
    fn collect(&self) -> Vec<Metric> {
        self()
    }
}

/// A client's telemetry task: started by [`Telemetry::start`], ended by
/// [`close`](Telemetry::close) (with the terminating push) or by dropping the handle (without).
#[derive(Debug)]
pub struct Telemetry {
    commands: mpsc::UnboundedSender<()>,
    instance_id: watch::Receiver<Option<ClientInstanceId>>,
    done: watch::Receiver<bool>,
}

impl Telemetry {
    /// Starts pushing the metrics of `source` through `pool`, unless `enable.metrics.push` is
    /// false. `resource` names the client to the plugin beside its client id (the Java client's
    /// resource attributes: `group_id`, `group_instance_id`, `transactional_id`,
    /// `client_rack`).
    pub fn start(
        pool: &Pool,
        resource: Vec<(String, String)>,
        source: Arc<dyn MetricSource>,
    ) -> Option<Telemetry> {
        let config = pool.config();
        if !config.enable_metrics_push {
            return None;
        }
        let backoff = ExponentialBackoff::new(config.retry_backoff, config.retry_backoff_max);
        let machine = TelemetryMachine::new(Instant::now().into_std(), backoff, fastrand::u64(..));
        let (commands, rx) = mpsc::unbounded_channel();
        let (instance_tx, instance_id) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        let glue = TelemetryTask {
            source,
            resource,
            pool: pool.clone(),
            started_ns: now_ns(pool),
            sent: HashMap::new(),
            pushing: HashMap::new(),
            instance_id: instance_tx,
            done: done_tx,
            abandoned: false,
            reached: false,
        };
        tokio::spawn(drive(pool.clone(), machine, glue, rx));
        Some(Telemetry {
            commands,
            instance_id,
            done,
        })
    }

    /// The id the broker gave this client instance, waiting up to `timeout` for it; `None` when
    /// none came by then (no broker offers KIP-714, the client has not reached the cluster, or
    /// the broker has not answered yet).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn client_instance_id(&self, timeout: Duration) -> Option<ClientInstanceId> {
        let mut rx = self.instance_id.clone();
        let mut done = self.done.clone();
        let wait = async {
            loop {
                if let Some(id) = *rx.borrow_and_update() {
                    return Some(id);
                }
                if *done.borrow_and_update() {
                    return None;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return *rx.borrow() },
                    changed = done.changed() => if changed.is_err() { return *rx.borrow() },
                }
            }
        };
        time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Ends the task by `deadline`: with a last push marked terminating when a subscription
    /// wants metrics, at once otherwise.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the close is asked for at the first poll; dropping the future then only
    /// stops waiting for the last push, which goes on on the task.
    pub async fn close(&self, deadline: Instant) {
        let _ = self.commands.send(());
        let mut done = self.done.clone();
        let _ = time::timeout_at(deadline, done.wait_for(|d| *d)).await;
    }
}

/// A counter by name and attributes.
type CounterKey = (String, Vec<(String, String)>);

/// The task's glue: the machine's events and the handle's close.
struct TelemetryTask {
    source: Arc<dyn MetricSource>,
    resource: Vec<(String, String)>,
    pool: Pool,
    /// When the client started: the start of its counters.
    started_ns: u64,
    /// Per counter: its total and time at the last push the broker took (or may have taken),
    /// for deltas.
    sent: HashMap<CounterKey, (i64, u64)>,
    /// The same of the push in flight, kept in `sent` once its outcome says the broker took it
    /// (or may have), forgotten when the broker refused it: its counts then go in the next.
    pushing: HashMap<CounterKey, (i64, u64)>,
    instance_id: watch::Sender<Option<ClientInstanceId>>,
    done: watch::Sender<bool>,
    /// Every handle is gone: end without pushing.
    abandoned: bool,
    /// The client reached the cluster: the machine was told.
    reached: bool,
}

fn now_ns(pool: &Pool) -> u64 {
    pool.clock()
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl TelemetryTask {
    /// The payload of one push: the wanted metrics, encoded and compressed.
    fn payload(&mut self, subscription: &Subscription) -> (i8, Bytes) {
        let points = self.points(subscription, now_ns(&self.pool));
        let data = otlp::encode_metrics(&self.resource, "kcon", env!("CARGO_PKG_VERSION"), &points);
        let codec = codec(&subscription.accepted_compression);
        if codec == Compression::None {
            return (0, data);
        }
        match compression::compress(codec, &data) {
            Ok(compressed) => (codec.id() as i8, Bytes::from(compressed)),
            Err(e) => {
                debug!("client metrics pushed uncompressed: {codec} failed: {e}");
                (0, data)
            }
        }
    }

    /// The points of one push at `now` (nanoseconds since the epoch): the source's metrics
    /// that `subscription` wants, sorted by name, counters as deltas since the last push the
    /// broker took when it asks for them.
    fn points(&mut self, subscription: &Subscription, now: u64) -> Vec<Point> {
        self.pushing.clear();
        let mut points = Vec::new();
        let mut metrics = self.source.collect();
        metrics.retain(|m| subscription.wants(&m.name));
        // Points of one metric side by side, so that each metric is written once.
        metrics.sort_by(|a, b| a.name.cmp(&b.name));
        for m in metrics {
            let point = match m.kind {
                MetricKind::Gauge => Point {
                    name: m.name,
                    kind: Kind::Gauge,
                    value: m.value,
                    attributes: m.attributes,
                    start_time_unix_nano: 0,
                    time_unix_nano: now,
                },
                MetricKind::Counter => {
                    let total = match m.value {
                        Value::Int(v) => v,
                        Value::Double(v) => v as i64,
                    };
                    let key = (m.name.clone(), m.attributes.clone());
                    let (value, start, temporality) = if subscription.delta_temporality {
                        let (before, since) =
                            self.sent.get(&key).copied().unwrap_or((0, self.started_ns));
                        ((total - before).max(0), since, Temporality::Delta)
                    } else {
                        (total, self.started_ns, Temporality::Cumulative)
                    };
                    self.pushing.insert(key, (total, now));
                    Point {
                        name: m.name,
                        kind: Kind::Sum {
                            temporality,
                            monotonic: true,
                        },
                        value: Value::Int(value),
                        attributes: m.attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                    }
                }
            };
            points.push(point);
        }
        points
    }
}

/// The first codec of the broker's list that kcon knows, else none.
fn codec(accepted: &[i8]) -> Compression {
    accepted
        .iter()
        .filter_map(|&id| u8::try_from(id).ok().and_then(Compression::from_id))
        .next()
        .unwrap_or(Compression::None)
}

impl Drive for TelemetryTask {
    type Machine = TelemetryMachine;
    type Command = ();

    fn send(
        &self,
        pool: &Pool,
        out: Outgoing<TelemetryRequest>,
    ) -> impl Future<Output = Result<TelemetryResponse, RequestFailure>> + Send + 'static {
        let pool = pool.clone();
        async move {
            match out.request {
                TelemetryRequest::Subscriptions(r) => pool
                    .send(BrokerTarget::Any, &r)
                    .await
                    .map(TelemetryResponse::Subscriptions)
                    .map_err(RequestFailure::from),
                TelemetryRequest::Push(r) => pool
                    .send(BrokerTarget::Any, &r)
                    .await
                    .map(TelemetryResponse::Push)
                    .map_err(RequestFailure::from),
            }
        }
    }

    fn command(
        &mut self,
        machine: &mut TelemetryMachine,
        _pool: &Pool,
        now: std::time::Instant,
        command: Option<()>,
    ) {
        match command {
            Some(()) => machine.close(now),
            None => self.abandoned = true,
        }
    }

    fn event(
        &mut self,
        machine: &mut TelemetryMachine,
        now: std::time::Instant,
        event: TelemetryEvent,
    ) {
        match event {
            TelemetryEvent::InstanceId(id) => {
                info!("client metrics (KIP-714): the cluster knows this client as instance {id}");
                self.instance_id.send_replace(Some(id));
            }
            TelemetryEvent::Collect { subscription, .. } => {
                let (compression, metrics) = self.payload(&subscription);
                machine.payload(now, compression, metrics);
            }
            TelemetryEvent::Pushed(outcome) => {
                let pushed = std::mem::take(&mut self.pushing);
                if outcome != PushOutcome::Refused {
                    self.sent.extend(pushed);
                }
            }
            TelemetryEvent::Disabled { reason, quiet } => {
                if quiet {
                    debug!("{reason}");
                } else {
                    warn!("{reason}");
                }
            }
            TelemetryEvent::Ended => {}
        }
    }

    /// Followed until the client reached the cluster: a Metadata answer names its brokers.
    fn follows_metadata(&self) -> bool {
        !self.reached
    }

    fn metadata_changed(
        &mut self,
        machine: &mut TelemetryMachine,
        _pool: &Pool,
        now: std::time::Instant,
        metadata: &Metadata,
    ) {
        if !metadata.brokers.is_empty() {
            self.reached = true;
            machine.ready(now);
        }
    }

    fn settled(&mut self, machine: &TelemetryMachine) -> bool {
        let done = machine.is_done() || self.abandoned;
        if done {
            self.done.send_replace(true);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn subscription(requested: &[&str], delta: bool) -> Subscription {
        Subscription {
            id: 1,
            accepted_compression: vec![4],
            push_interval: Duration::from_secs(1),
            max_bytes: 1 << 20,
            delta_temporality: delta,
            requested: requested.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn task(source: Arc<dyn MetricSource>) -> TelemetryTask {
        let mut config = crate::config::PoolConfig::default();
        config.set("bootstrap.servers", "127.0.0.1:1").unwrap();
        let pool = Pool::new(config).unwrap();
        TelemetryTask {
            source,
            resource: Vec::new(),
            pool,
            started_ns: 100,
            sent: HashMap::new(),
            pushing: HashMap::new(),
            instance_id: watch::channel(None).0,
            done: watch::channel(false).0,
            abandoned: false,
            reached: false,
        }
    }

    #[tokio::test]
    async fn a_push_has_the_wanted_metrics_with_counters_as_deltas_when_asked() {
        let records = Arc::new(AtomicU64::new(10));
        let counted = records.clone();
        let mut t = task(Arc::new(move || {
            vec![
                Metric::counter("a.records.total", counted.load(Ordering::Relaxed))
                    .with("topic", "t"),
                Metric::gauge("a.lag", Value::Int(3)).with("partition", 0),
                Metric::counter("b.other.total", 1),
            ]
        }));
        let wanted = subscription(&["a."], true);
        let first = t.points(&wanted, 1_000);
        let names: Vec<_> = first.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a.lag", "a.records.total"], "sorted, b. left out");
        let gauge = &first[0];
        assert_eq!(
            (
                gauge.kind,
                gauge.value,
                gauge.start_time_unix_nano,
                gauge.time_unix_nano
            ),
            (Kind::Gauge, Value::Int(3), 0, 1_000)
        );
        let sum = &first[1];
        assert_eq!(
            sum.kind,
            Kind::Sum {
                temporality: Temporality::Delta,
                monotonic: true
            }
        );
        assert_eq!(
            (sum.value, sum.start_time_unix_nano),
            (Value::Int(10), 100),
            "the first delta counts from the client's start"
        );
        assert_eq!(sum.attributes, [("topic".to_string(), "t".to_string())]);

        told(&mut t, PushOutcome::Taken);
        records.store(25, Ordering::Relaxed);
        let second = t.points(&wanted, 2_000);
        assert_eq!(
            (second[1].value, second[1].start_time_unix_nano),
            (Value::Int(15), 1_000),
            "then what changed since the last push"
        );

        told(&mut t, PushOutcome::Taken);
        // Cumulative when the broker asks so: the total since the start.
        let cumulative = t.points(&subscription(&["*"], false), 3_000);
        assert_eq!(cumulative.len(), 3);
        let total = cumulative
            .iter()
            .find(|p| p.name == "a.records.total")
            .unwrap();
        assert_eq!(
            (total.kind, total.value, total.start_time_unix_nano),
            (
                Kind::Sum {
                    temporality: Temporality::Cumulative,
                    monotonic: true
                },
                Value::Int(25),
                100
            )
        );
        assert!(t.points(&subscription(&[], true), 4_000).is_empty());
    }

    /// Tells `t` what became of its push in flight.
    fn told(t: &mut TelemetryTask, outcome: PushOutcome) {
        let backoff = ExponentialBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut machine = TelemetryMachine::new(std::time::Instant::now(), backoff, 1);
        t.event(
            &mut machine,
            std::time::Instant::now(),
            TelemetryEvent::Pushed(outcome),
        );
    }

    /// The counts of a push the broker refused go in the next push; those of a push that got
    /// no answer do not (the broker may have taken it), nor those of one it took.
    #[tokio::test]
    async fn the_counts_of_a_refused_push_go_in_the_next() {
        let records = Arc::new(AtomicU64::new(0));
        let counted = records.clone();
        let mut t = task(Arc::new(move || {
            vec![Metric::counter(
                "a.records.total",
                counted.load(Ordering::Relaxed),
            )]
        }));
        let wanted = subscription(&["a."], true);
        let push = |t: &mut TelemetryTask, total: u64, now: u64| {
            records.store(total, Ordering::Relaxed);
            let p = t.points(&wanted, now);
            (p[0].value, p[0].start_time_unix_nano)
        };
        assert_eq!(push(&mut t, 12, 1_000), (Value::Int(12), 100));
        told(&mut t, PushOutcome::Refused);
        assert_eq!(
            push(&mut t, 12, 2_000),
            (Value::Int(12), 100),
            "the refused twelve again, from the same start"
        );
        told(&mut t, PushOutcome::Taken);
        assert_eq!(push(&mut t, 15, 3_000), (Value::Int(3), 2_000));
        told(&mut t, PushOutcome::Unanswered);
        assert_eq!(
            push(&mut t, 15, 4_000),
            (Value::Int(0), 3_000),
            "an unanswered push may have been taken: not counted twice"
        );
    }

    #[test]
    fn the_first_codec_kcon_knows_of_the_brokers_list_compresses() {
        assert_eq!(codec(&[4, 3, 1, 2]), Compression::Zstd);
        assert_eq!(codec(&[9, -1, 3]), Compression::Lz4);
        assert_eq!(codec(&[]), Compression::None);
    }
}
