//! The consumer's metrics in a `prometheus_client` registry the application owns (cargo
//! feature `prometheus`).
//!
//! Every scrape reads the [`MetricsHandle`]'s latest snapshot, so nothing is counted twice
//! and the lag in seconds is as of the scrape. Names follow Prometheus' conventions: base
//! units (seconds, bytes), `_total` on counters (added by the encoder), labels `client_id`,
//! `group` (when the consumer has one), and `topic`, `partition` on per-partition series.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::{MetricsHandle, PolicyMetricsHandle};

impl MetricsHandle {
    /// Registers the consumer's metrics into `registry`: read at every scrape, from any task,
    /// while the consumer runs (and frozen at their last values once it is closed).
    ///
    /// | series | type | what |
    /// |---|---|---|
    /// | `kcon_consumer_records_consumed_total` | counter | records fetched and handed to the consumer |
    /// | `kcon_consumer_consumed_bytes_total` | counter | bytes of the Fetch answers they came in, counted with the records |
    /// | `kcon_consumer_rebalances_total` | counter | rebalances completed (assignments received) |
    /// | `kcon_consumer_last_rebalance_seconds` | gauge | how long the last rebalance took |
    /// | `kcon_consumer_commits_total` | counter | commits, acknowledged or failed, whoever asked (auto-commits included) |
    /// | `kcon_consumer_commit_failures_total` | counter | those that failed |
    /// | `kcon_consumer_last_commit_seconds` | gauge | the last commit's latency |
    /// | `kcon_consumer_max_commit_seconds` | gauge | the longest commit latency seen |
    /// | `kcon_consumer_persistent_failures_total` | counter | reports of requests that keep failing (see [`ConsumerHooks::on_persistent_failure`](crate::ConsumerHooks::on_persistent_failure)) |
    /// | `kcon_consumer_fetch_latency_seconds` | histogram | Fetch requests from sending to the answer, the broker's wait for data included |
    /// | `kcon_consumer_partition_position` | gauge | per partition: the next offset handed out |
    /// | `kcon_consumer_partition_lag_records` | gauge | per partition: records between the position and the log end |
    /// | `kcon_consumer_partition_lag_seconds` | gauge | per partition: the age of the next record not consumed, 0 when caught up; while the next is not fetched yet, the age of the last one fetched (an upper bound) |
    ///
    /// A per-partition series is absent while its value is unknown: the lags before the
    /// partition's first Fetch answer reaches the consumer, and the lag in seconds after a
    /// seek until records come again.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// consumer.metrics_handle().register(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    /// # }
    /// ```
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(Scrape {
            handle: self.clone(),
        }));
    }
}

/// What the registry calls at every scrape.
#[derive(Debug)]
struct Scrape {
    handle: MetricsHandle,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = self.handle.snapshot();
        let (client_id, group) = self.handle.identity();
        let base = base_labels(client_id, group);
        let seconds = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());

        let mut one = |name: &str, help: &str, value: Value| -> fmt::Result {
            let Some(metric) = value.metric() else {
                return Ok(());
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric.kind())?;
            metric.encode(family.encode_family(&base)?)
        };
        one(
            "kcon_consumer_records_consumed",
            "Records fetched and handed to the consumer.",
            Value::Counter(m.records_consumed),
        )?;
        one(
            "kcon_consumer_consumed_bytes",
            "Bytes of the Fetch answers the consumed records came in.",
            Value::Counter(m.bytes_consumed),
        )?;
        one(
            "kcon_consumer_rebalances",
            "Rebalances completed (assignments received).",
            Value::Counter(m.rebalances),
        )?;
        one(
            "kcon_consumer_last_rebalance_seconds",
            "How long the last rebalance took, from its first sign to the assignment.",
            Value::Gauge(seconds(m.last_rebalance)),
        )?;
        one(
            "kcon_consumer_commits",
            "Commits made, acknowledged or failed, auto-commits included.",
            Value::Counter(m.commits),
        )?;
        one(
            "kcon_consumer_commit_failures",
            "Commits that failed, auto-commits included.",
            Value::Counter(m.commit_failures),
        )?;
        one(
            "kcon_consumer_last_commit_seconds",
            "The latency of the last synchronous commit.",
            Value::Gauge(seconds(m.last_commit_latency)),
        )?;
        one(
            "kcon_consumer_max_commit_seconds",
            "The longest synchronous commit latency seen.",
            Value::Gauge(seconds(m.max_commit_latency)),
        )?;
        one(
            "kcon_consumer_persistent_failures",
            "Reports of requests that keep failing (joining, heartbeats, commits, fetches...), at most one a minute per request.",
            Value::Counter(m.persistent_failures),
        )?;

        let h = &m.fetch_latency;
        let bounds = crate::LATENCY_BUCKETS
            .iter()
            .map(|b| b.as_secs_f64())
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(h.buckets.iter().copied()).collect();
        let mut family = encoder.encode_descriptor(
            "kcon_consumer_fetch_latency_seconds",
            "How long Fetch requests took, from sending to the answer (the broker's wait for data included).",
            None,
            MetricType::Histogram,
        )?;
        family
            .encode_family(&base)?
            .encode_histogram::<NoLabelSet>(h.sum.as_secs_f64(), h.count, &buckets, None)?;

        let per_partition = [
            (
                "kcon_consumer_partition_position",
                "The next offset the consumer hands out.",
                (|l: &crate::PartitionLag| l.position.map(|p| p as f64)) as fn(&_) -> _,
            ),
            (
                "kcon_consumer_partition_lag_records",
                "Records between the position and the end of the log.",
                |l| l.records.map(|r| r as f64),
            ),
            (
                "kcon_consumer_partition_lag_seconds",
                "How old the next record not consumed is (while it is not fetched yet, the last \
                 one fetched); 0 when caught up.",
                |l| l.time.map(|t| t.as_secs_f64()),
            ),
        ];
        for (name, help, value) in per_partition {
            if m.partitions.values().all(|l| value(l).is_none()) {
                continue;
            }
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (tp, lag) in &m.partitions {
                let Some(v) = value(lag) else {
                    continue;
                };
                let mut labels = base.clone();
                labels.push(("topic", tp.topic.to_string()));
                labels.push(("partition", tp.partition.to_string()));
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

impl<K: crate::deserialize::Deserializer, V: crate::deserialize::Deserializer>
    crate::Processor<K, V>
{
    /// Registers everything the processor runs on into `registry` in one call: its own counts
    /// (see [`PolicyMetricsHandle::register`]) and its consumer's metrics (see
    /// [`MetricsHandle::register`]).
    ///
    /// ```no_run
    /// # fn f(processor: &kcon::Processor) {
    /// let mut registry = kcon::prometheus_client::registry::Registry::default();
    /// processor.register_metrics(&mut registry);
    /// # }
    /// ```
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.consumer().metrics_handle().register(registry);
        self.metrics_handle().register(registry);
    }
}

impl PolicyMetricsHandle {
    /// Registers a [`Processor`](crate::Processor)'s counts into `registry`, read at every
    /// scrape from the handle's last published snapshot.
    ///
    /// | series | type | what |
    /// |---|---|---|
    /// | `kcon_policy_records_processed_total` | counter | per partition: records the handler processed |
    /// | `kcon_policy_retries_total` | counter | per partition: tries that failed retriably and were scheduled again |
    /// | `kcon_policy_records_skipped_total` | counter | per partition: records that failed for good and were skipped |
    /// | `kcon_policy_records_dead_lettered_total` | counter | per partition: records the dead-letter topic acknowledged |
    /// | `kcon_policy_dead_letter_failures_total` | counter | dead-letter writes that failed |
    /// | `kcon_policy_breaker_trips_total` | counter | times the circuit breaker opened |
    /// | `kcon_policy_breaker_open` | gauge | 1 while the breaker is open |
    /// | `kcon_policy_dead_letter_rate` | gauge | records dead-lettered per second over the last minute: alert on it |
    /// | `kcon_policy_records_waiting` | gauge | records fetched and waiting (a retry, or behind one) |
    ///
    /// Labels: `client_id`, `group` (with one), and `topic`, `partition` on per-partition
    /// series.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(PolicyScrape {
            handle: self.clone(),
        }));
    }
}

/// What the registry calls at every scrape of a processor's counts.
#[derive(Debug)]
struct PolicyScrape {
    handle: PolicyMetricsHandle,
}

impl Collector for PolicyScrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = self.handle.snapshot();
        let (client_id, group) = self.handle.identity();
        let base = base_labels(client_id, group);
        let per_partition = [
            (
                "kcon_policy_records_processed",
                "Records the handler processed.",
                (|c: &crate::PartitionCounts| c.processed) as fn(&_) -> u64,
            ),
            (
                "kcon_policy_retries",
                "Tries that failed retriably and were scheduled again.",
                |c| c.retried,
            ),
            (
                "kcon_policy_records_skipped",
                "Records that failed for good and were skipped.",
                |c| c.skipped,
            ),
            (
                "kcon_policy_records_dead_lettered",
                "Records that failed for good and were acknowledged by the dead-letter topic.",
                |c| c.dead_lettered,
            ),
        ];
        for (name, help, value) in per_partition {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tp, counts) in &m.partitions {
                let mut labels = base.clone();
                labels.push(("topic", tp.topic.to_string()));
                labels.push(("partition", tp.partition.to_string()));
                ConstCounter::new(value(counts)).encode(family.encode_family(&labels)?)?;
            }
        }
        let whole = [
            (
                "kcon_policy_dead_letter_failures",
                "Dead-letter writes that failed.",
                Value::Counter(m.dead_letter_failures),
            ),
            (
                "kcon_policy_breaker_trips",
                "Times the circuit breaker opened.",
                Value::Counter(m.breaker_trips),
            ),
            (
                "kcon_policy_breaker_open",
                "1 while the circuit breaker is open.",
                Value::Gauge(Some(f64::from(u8::from(m.breaker_open)))),
            ),
            (
                "kcon_policy_dead_letter_rate",
                "Records dead-lettered per second over the last minute.",
                Value::Gauge(Some(m.dead_letter_rate)),
            ),
            (
                "kcon_policy_records_waiting",
                "Records fetched and waiting to be processed (a retry, or behind one).",
                Value::Gauge(Some(m.records_waiting as f64)),
            ),
        ];
        for (name, help, value) in whole {
            let Some(metric) = value.metric() else {
                continue;
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric.kind())?;
            metric.encode(family.encode_family(&base)?)?;
        }
        Ok(())
    }
}

/// The labels of every series: `client_id`, and `group` when there is one.
fn base_labels(client_id: &str, group: Option<&str>) -> Vec<(&'static str, String)> {
    let mut base = vec![("client_id", client_id.to_owned())];
    if let Some(g) = group {
        base.push(("group", g.to_owned()));
    }
    base
}

/// One value of a series without per-partition labels.
enum Value {
    Counter(u64),
    Gauge(Option<f64>),
}

enum Metric {
    Counter(ConstCounter<u64>),
    Gauge(ConstGauge<f64>),
}

impl Value {
    fn metric(self) -> Option<Metric> {
        match self {
            Value::Counter(n) => Some(Metric::Counter(ConstCounter::new(n))),
            Value::Gauge(v) => v.map(|v| Metric::Gauge(ConstGauge::new(v))),
        }
    }
}

impl Metric {
    fn kind(&self) -> MetricType {
        match self {
            Metric::Counter(c) => c.metric_type(),
            Metric::Gauge(g) => g.metric_type(),
        }
    }

    fn encode(&self, encoder: prometheus_client::encoding::MetricEncoder<'_>) -> fmt::Result {
        match self {
            Metric::Counter(c) => c.encode(encoder),
            Metric::Gauge(g) => g.encode(encoder),
        }
    }
}
