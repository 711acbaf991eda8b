//! The consumer's metrics: a snapshot on demand, counted as records pass (no extra request),
//! and a handle that reads them from any task.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon_fetch::{FetchLatency, LatencyHistogram};
use kcon_pool::{Clock, RebootstrapCounter, Rebootstraps, ThrottleCounter, Throttled};

use crate::TopicPartition;

/// One partition's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    /// The next offset the consumer hands out, when known.
    pub position: Option<i64>,
    /// The end of the log it reads up to (high watermark, or last stable offset under
    /// read_committed), when known.
    pub end: Option<i64>,
    /// Records between the position and the end.
    pub records: Option<i64>,
    /// How old the next unconsumed record is: zero when caught up. When behind and the
    /// consumer does not hold the next record yet, the age of the last record it fetched of
    /// the partition (the next is no older: an upper bound, off by the time between the two);
    /// `None` when it has fetched none since it owns the partition or moved it by a seek.
    pub time: Option<Duration>,
}

/// What a partition's lag is computed from, at any time: the lag in seconds grows while the
/// application holds on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagInputs {
    pub(crate) position: Option<i64>,
    pub(crate) end: Option<i64>,
    /// The timestamp of the next record, when the consumer holds it.
    pub(crate) next_timestamp: Option<i64>,
    /// The timestamp of the last record fetched, when the next is not held: the next is no
    /// older, so its age is at most this one's.
    pub(crate) last_timestamp: Option<i64>,
}

impl LagInputs {
    /// The lag at `now_ms` (wall clock), by kcon-core's one rule.
    pub(crate) fn lag(&self, log_start: Option<i64>, now_ms: i64) -> PartitionLag {
        let lag = match (self.position, self.end) {
            (Some(p), Some(e)) => {
                let timestamp = self.next_timestamp.or(self.last_timestamp);
                kcon_core::offsets::lag(p, log_start, e, timestamp, now_ms)
            }
            _ => kcon_core::offsets::Lag::default(),
        };
        PartitionLag {
            position: self.position,
            end: self.end,
            records: lag.records,
            time: lag.time,
        }
    }
}

/// A snapshot of a consumer's metrics ([`Consumer::metrics`](crate::Consumer::metrics)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// Per owned partition: position and lag against the high watermark of the last Fetch
    /// answer.
    pub partitions: BTreeMap<TopicPartition, PartitionLag>,
    /// Records fetched and handed to the consumer since it started.
    pub records_consumed: u64,
    /// Bytes of the Fetch answers those records came in (record batches as fetched,
    /// compressed or not), counted with the records: an answer handed out in parts counts its
    /// bytes part by part, in proportion to the records.
    pub bytes_consumed: u64,
    /// Records per second since the first record.
    pub records_per_second: f64,
    /// Bytes per second since the first record.
    pub bytes_per_second: f64,
    /// Rebalances completed (assignments received).
    pub rebalances: u64,
    /// How long the last rebalance took, from the first sign of it (revocation, loss, a new
    /// subscription, a join) to the assignment.
    pub last_rebalance: Option<Duration>,
    /// Commits made, acknowledged or failed, whoever asked: `commit`, `commit_offsets`,
    /// `commit_async`, a commit handle, the commit before partitions are given up, `close`,
    /// and the auto-commit timer (counted as they finish; one with nothing to commit sends
    /// nothing and is not counted).
    pub commits: u64,
    /// Of those, the commits that failed.
    pub commit_failures: u64,
    /// The latency of the last of those commits.
    pub last_commit_latency: Option<Duration>,
    /// The longest commit latency seen.
    pub max_commit_latency: Option<Duration>,
    /// How long Fetch requests took, from sending to the answer (the broker's wait for data,
    /// up to `fetch.max.wait.ms`, included): count, sum, maximum and a histogram over
    /// [`LATENCY_BUCKETS`](crate::LATENCY_BUCKETS).
    pub fetch_latency: LatencyHistogram,
    /// Reports of requests that keep failing (each one
    /// [`ConsumerHooks::on_persistent_failure`](crate::ConsumerHooks::on_persistent_failure)
    /// is told, recoveries not counted): at most one a minute per request while it fails, so
    /// a rate above zero means the consumer is stuck somewhere.
    pub persistent_failures: u64,
    /// Logs truncated under the consumer's position that it read on from (an unclean leader
    /// election, KIP-320; each one logged at WARN and told to
    /// [`ConsumerHooks::on_truncation`](crate::ConsumerHooks::on_truncation)). Records it
    /// handed out past a truncation point were on the lost part of the log only: a rate above
    /// zero means records were lost to the cluster, not to the consumer.
    pub truncations: u64,
    /// How many times the consumer's connections went back to `bootstrap.servers`, by cause
    /// (`metadata.recovery.strategy`): each one logged a WARN line naming its cause.
    pub rebootstraps: Rebootstraps,
    /// Answers in which a broker throttled the consumer for a quota (KIP-219), with the
    /// throttle times added up and the longest: each held the next request on its connection
    /// back for that long (DEBUG lines name the broker and API). Above zero, a client quota on
    /// the cluster (`consumer_byte_rate`, `request_percentage`) slows the consumer.
    pub throttled: Throttled,
}

/// The counters behind [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsState {
    first_record: Option<Instant>,
    records: u64,
    bytes: u64,
    rebalances: u64,
    rebalance_since: Option<Instant>,
    last_rebalance: Option<Duration>,
    commits: CommitCounts,
    persistent_failures: u64,
    truncations: u64,
}

/// Commits made, failed, and their latencies.
#[derive(Debug, Clone, Default)]
struct CommitCounts {
    commits: u64,
    failures: u64,
    last: Option<Duration>,
    max: Option<Duration>,
}

impl CommitCounts {
    fn commit_done(&mut self, latency: Duration, ok: bool) {
        self.commits += 1;
        if !ok {
            self.failures += 1;
        }
        self.last = Some(latency);
        self.max = Some(self.max.map_or(latency, |m| m.max(latency)));
    }
}

impl MetricsState {
    pub(crate) fn new() -> MetricsState {
        MetricsState {
            first_record: None,
            records: 0,
            bytes: 0,
            rebalances: 0,
            rebalance_since: None,
            last_rebalance: None,
            commits: CommitCounts::default(),
            persistent_failures: 0,
            truncations: 0,
        }
    }

    /// A request that keeps failing was reported (not its recovery).
    pub(crate) fn persistent_failure(&mut self) {
        self.persistent_failures += 1;
    }

    /// A truncated log was read on from.
    pub(crate) fn truncation(&mut self) {
        self.truncations += 1;
    }

    pub(crate) fn fetched(&mut self, now: Instant, records: usize, bytes: usize) {
        if records > 0 && self.first_record.is_none() {
            self.first_record = Some(now);
        }
        self.records += records as u64;
        self.bytes += bytes as u64;
    }

    /// A rebalance may be starting; the first sign counts.
    pub(crate) fn rebalance_started(&mut self, at: Instant) {
        self.rebalance_since.get_or_insert(at);
    }

    pub(crate) fn rebalance_done(&mut self, at: Instant) {
        self.rebalances += 1;
        if let Some(since) = self.rebalance_since.take() {
            self.last_rebalance = Some(at.duration_since(since));
        }
    }

    pub(crate) fn commit_done(&mut self, latency: Duration, ok: bool) {
        self.commits.commit_done(latency, ok);
    }

    /// Adds commits counted elsewhere, the latest last.
    fn add_commits(&mut self, other: &CommitCounts) {
        let c = &mut self.commits;
        c.commits += other.commits;
        c.failures += other.failures;
        c.last = other.last.or(c.last);
        c.max = c.max.max(other.max);
    }

    pub(crate) fn snapshot(
        &self,
        now: Instant,
        partitions: BTreeMap<TopicPartition, PartitionLag>,
        fetch_latency: LatencyHistogram,
        rebootstraps: Rebootstraps,
        throttled: Throttled,
    ) -> Metrics {
        let elapsed = self
            .first_record
            .map(|t| now.saturating_duration_since(t).as_secs_f64())
            .filter(|&s| s > 0.0);
        let rate = |n: u64| elapsed.map_or(0.0, |s| n as f64 / s);
        Metrics {
            partitions,
            records_consumed: self.records,
            bytes_consumed: self.bytes,
            records_per_second: rate(self.records),
            bytes_per_second: rate(self.bytes),
            rebalances: self.rebalances,
            last_rebalance: self.last_rebalance,
            commits: self.commits.commits,
            commit_failures: self.commits.failures,
            last_commit_latency: self.commits.last,
            max_commit_latency: self.commits.max,
            fetch_latency,
            persistent_failures: self.persistent_failures,
            truncations: self.truncations,
            rebootstraps,
            throttled,
        }
    }
}

/// Reads a consumer's metrics from any task or thread, while the consumer runs
/// ([`Consumer::metrics_handle`](crate::Consumer::metrics_handle)).
///
/// The consumer publishes its figures as it works: at most every
/// [`PUBLISH_EVERY`](MetricsHandle::PUBLISH_EVERY) while records flow (a publish put off
/// as too soon is made when due, while a receiving call waits), and at once after a rebalance
/// or a commit; so a partition's position may be that far behind
/// [`Consumer::metrics`](crate::Consumer::metrics)'. The lag in seconds is computed when
/// read: it keeps growing while the application holds on to a record.
///
/// ```no_run
/// # fn f(consumer: &kcon::Consumer) {
/// let metrics = consumer.metrics_handle();
/// std::thread::spawn(move || loop {
///     let m = metrics.snapshot();
///     println!("{} records, {} rebalances", m.records_consumed, m.rebalances);
///     std::thread::sleep(std::time::Duration::from_secs(10));
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    shared: Arc<Mutex<Published>>,
    /// The consumer's `client.id` and `group.id`.
    identity: Arc<(String, Option<String>)>,
    /// Counted by the fetch task's requests: read live, not published.
    fetch_latency: Arc<FetchLatency>,
    /// Counted by the consumer's pool: read live.
    rebootstraps: Arc<RebootstrapCounter>,
    /// Counted by the consumer's pool: read live.
    throttles: Arc<ThrottleCounter>,
    /// The consumer's wall clock (its pool's), for lag in seconds as of a snapshot.
    clock: Arc<dyn Clock>,
}

/// What the consumer last published, and commits counted by commit handles since.
#[derive(Debug)]
pub(crate) struct Published {
    state: MetricsState,
    partitions: BTreeMap<crate::TopicPartition, LagInputs>,
    /// Commits made through a commit handle since, for the consumer to count too.
    handle_commits: CommitCounts,
}

impl MetricsHandle {
    /// How often, at most, a consumer handing out records publishes its figures.
    pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

    pub(crate) fn new(
        client_id: &str,
        group_id: Option<&str>,
        fetch_latency: Arc<FetchLatency>,
        rebootstraps: Arc<RebootstrapCounter>,
        throttles: Arc<ThrottleCounter>,
        clock: Arc<dyn Clock>,
    ) -> MetricsHandle {
        MetricsHandle {
            fetch_latency,
            rebootstraps,
            throttles,
            clock,
            identity: Arc::new((client_id.to_owned(), group_id.map(str::to_owned))),
            shared: Arc::new(Mutex::new(Published {
                state: MetricsState::new(),
                partitions: BTreeMap::new(),
                handle_commits: CommitCounts::default(),
            })),
        }
    }

    /// The consumer's metrics as last published, lag in seconds as of now.
    pub fn snapshot(&self) -> Metrics {
        let now = tokio::time::Instant::now().into_std();
        let now_ms = self.clock.now_ms();
        let p = self.lock();
        let lags = p
            .partitions
            .iter()
            .map(|(tp, i)| (tp.clone(), i.lag(None, now_ms)))
            .collect();
        p.state.snapshot(
            now,
            lags,
            self.fetch_latency.snapshot(),
            self.rebootstraps.snapshot(),
            self.throttles.snapshot(),
        )
    }

    /// The consumer's `client.id` and `group.id`.
    pub fn identity(&self) -> (&str, Option<&str>) {
        (&self.identity.0, self.identity.1.as_deref())
    }

    /// The consumer publishes: commits counted by handles meanwhile go into `state` first.
    pub(crate) fn publish(
        &self,
        state: &mut MetricsState,
        partitions: BTreeMap<crate::TopicPartition, LagInputs>,
    ) {
        let mut p = self.lock();
        let counted = std::mem::take(&mut p.handle_commits);
        state.add_commits(&counted);
        p.state = state.clone();
        p.partitions = partitions;
    }

    /// The consumer publishes its counters and one partition's lag inputs, the others'
    /// staying as last published.
    pub(crate) fn publish_partition(
        &self,
        state: &mut MetricsState,
        tp: &crate::TopicPartition,
        inputs: LagInputs,
    ) {
        let mut p = self.lock();
        let counted = std::mem::take(&mut p.handle_commits);
        state.add_commits(&counted);
        p.state = state.clone();
        match p.partitions.get_mut(tp) {
            Some(i) => *i = inputs,
            None => {
                p.partitions.insert(tp.clone(), inputs);
            }
        }
    }

    /// A commit handle's commit finished: counted at once, and by the consumer when it
    /// next publishes.
    pub(crate) fn handle_commit(&self, latency: Duration, ok: bool) {
        let mut p = self.lock();
        p.state.commit_done(latency, ok);
        p.handle_commits.commit_done(latency, ok);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The consumer's metrics as it pushes them to the cluster (KIP-714), named after the Java
/// consumer's where they mean the same (`org.apache.kafka.consumer.` and the Java metric's group
/// and name, dashes as dots), so that a client-metrics subscription written for Java consumers
/// takes kcon's too. Latency maxima are over the consumer's life, where Java's are over its
/// last two 30-second windows; the rest means what Java's do.
pub(crate) fn telemetry(m: &Metrics) -> Vec<kcon_pool::telemetry::Metric> {
    use kcon_codec::otlp::Value;
    use kcon_pool::telemetry::Metric;
    const FETCH: &str = "org.apache.kafka.consumer.fetch.manager.";
    const COORDINATOR: &str = "org.apache.kafka.consumer.coordinator.";
    let ms = |d: Duration| Value::Double(d.as_secs_f64() * 1000.0);
    let mut out = vec![
        Metric::counter(format!("{FETCH}records.consumed.total"), m.records_consumed),
        Metric::counter(format!("{FETCH}bytes.consumed.total"), m.bytes_consumed),
        Metric::counter(format!("{FETCH}fetch.total"), m.fetch_latency.count),
        Metric::counter(format!("{COORDINATOR}rebalance.total"), m.rebalances),
        Metric::counter(format!("{COORDINATOR}commit.total"), m.commits),
        Metric::gauge(
            format!("{COORDINATOR}assigned.partitions"),
            Value::Int(m.partitions.len() as i64),
        ),
    ];
    if let Some(mean) = m.fetch_latency.mean() {
        out.push(Metric::gauge(format!("{FETCH}fetch.latency.avg"), ms(mean)));
        out.push(Metric::gauge(
            format!("{FETCH}fetch.latency.max"),
            ms(m.fetch_latency.max),
        ));
    }
    if let Some(max) = m.max_commit_latency {
        out.push(Metric::gauge(
            format!("{COORDINATOR}commit.latency.max"),
            ms(max),
        ));
    }
    let lags: Vec<_> = m
        .partitions
        .iter()
        .filter_map(|(tp, lag)| Some((tp, lag.records?)))
        .collect();
    if let Some(max) = lags.iter().map(|(_, records)| *records).max() {
        out.push(Metric::gauge(
            format!("{FETCH}records.lag.max"),
            Value::Int(max),
        ));
    }
    for (tp, records) in lags {
        out.push(
            Metric::gauge(format!("{FETCH}records.lag"), Value::Int(records))
                .with("topic", &tp.topic)
                .with("partition", tp.partition),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    /// A wall clock that stands still, this many milliseconds past the epoch.
    #[derive(Debug)]
    struct Stopped(u64);

    impl Clock for Stopped {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(self.0)
        }
    }

    #[test]
    fn lag_in_seconds_is_read_on_the_consumers_clock() {
        let tp = TopicPartition::new("t", 0);
        let handle = MetricsHandle::new(
            "c",
            None,
            Arc::new(FetchLatency::default()),
            Arc::new(RebootstrapCounter::default()),
            Arc::new(ThrottleCounter::default()),
            Arc::new(Stopped(10_000)),
        );
        let inputs = LagInputs {
            position: Some(5),
            end: Some(8),
            next_timestamp: Some(7_500),
            last_timestamp: None,
        };
        handle.publish(&mut MetricsState::new(), [(tp.clone(), inputs)].into());
        let lag = handle.snapshot().partitions[&tp];
        assert_eq!(lag.records, Some(3));
        assert_eq!(lag.time, Some(Duration::from_millis(2_500)));
    }
}
