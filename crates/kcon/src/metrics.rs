//! The consumer's metrics: a snapshot on demand, counted as records pass (no extra request).

use std::collections::BTreeMap;
use std::time::Duration;

use std::time::Instant;

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
    /// How old the next unconsumed record is: zero when caught up, `None` when behind but
    /// the consumer does not hold the next record yet.
    pub time: Option<Duration>,
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
    /// Bytes of Fetch answers those records came in.
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
    /// Synchronous commits made (by `commit`, `commit_offsets`, and before partitions are
    /// given up), acknowledged or failed; auto-commits and `commit_async` are not counted.
    pub commits: u64,
    /// Of those, the commits that failed.
    pub commit_failures: u64,
    /// The latency of the last of those commits.
    pub last_commit_latency: Option<Duration>,
    /// The longest commit latency seen.
    pub max_commit_latency: Option<Duration>,
}

/// The counters behind [`Metrics`].
#[derive(Debug)]
pub(crate) struct MetricsState {
    first_record: Option<Instant>,
    records: u64,
    bytes: u64,
    rebalances: u64,
    rebalance_since: Option<Instant>,
    last_rebalance: Option<Duration>,
    commits: u64,
    commit_failures: u64,
    last_commit: Option<Duration>,
    max_commit: Option<Duration>,
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
            commits: 0,
            commit_failures: 0,
            last_commit: None,
            max_commit: None,
        }
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
        self.commits += 1;
        if !ok {
            self.commit_failures += 1;
        }
        self.last_commit = Some(latency);
        self.max_commit = Some(self.max_commit.map_or(latency, |m| m.max(latency)));
    }

    pub(crate) fn snapshot(
        &self,
        now: Instant,
        partitions: BTreeMap<TopicPartition, PartitionLag>,
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
            commits: self.commits,
            commit_failures: self.commit_failures,
            last_commit_latency: self.last_commit,
            max_commit_latency: self.max_commit,
        }
    }
}
