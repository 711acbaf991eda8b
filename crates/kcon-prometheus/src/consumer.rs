//! The consumer's metrics in a `prometheus_client` registry the application owns.
//!
//! Every scrape reads the [`MetricsHandle`]'s latest snapshot, so nothing is counted twice
//! and the lag in seconds is as of the scrape. Names follow Prometheus' conventions: base
//! units (seconds, bytes), `_total` on counters (added by the encoder), labels `client_id`,
//! `group` (when the consumer has one), and `topic`, `partition` on per-partition series.

use std::fmt;

use kcon::{LATENCY_BUCKETS, MetricsHandle, PartitionLag, RebootstrapCause};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::series::{Value, base_labels};

/// A consumer's metrics as a `prometheus_client` collector: every scrape reads the
/// [`MetricsHandle`]'s latest snapshot, from any task, while the consumer runs (and frozen at
/// their last values once it is closed). Registered by
/// [`RegisterMetrics::register_metrics`](crate::RegisterMetrics::register_metrics) on the
/// handle or the consumer.
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
/// | `kcon_consumer_persistent_failures_total` | counter | reports of requests that keep failing (see `kcon::ConsumerHooks::on_persistent_failure`) |
/// | `kcon_consumer_truncations_total` | counter | logs truncated under the consumer's position that it read on from (see `kcon::ConsumerHooks::on_truncation`) |
/// | `kcon_consumer_rebootstraps_total` | counter | per `cause` (`unreachable`, `no_metadata`, `required`): times the connections went back to `bootstrap.servers` |
/// | `kcon_consumer_throttled_total` | counter | answers in which a broker throttled the consumer for a client quota (KIP-219) |
/// | `kcon_consumer_throttle_seconds_total` | counter | their throttle times added up: how long quotas held the consumer's requests back |
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
/// use kcon_prometheus::RegisterMetrics;
/// use kcon_prometheus::prometheus_client::registry::Registry;
///
/// # fn f(consumer: &kcon::Consumer) {
/// let mut registry = Registry::default();
/// consumer.metrics_handle().register_metrics(&mut registry);
/// let mut text = String::new();
/// kcon_prometheus::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerCollector {
    handle: MetricsHandle,
}

impl ConsumerCollector {
    /// The collector of the consumer `handle` reads.
    pub fn new(handle: MetricsHandle) -> ConsumerCollector {
        ConsumerCollector { handle }
    }
}

impl Collector for ConsumerCollector {
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
        one(
            "kcon_consumer_truncations",
            "Logs truncated under the consumer's position (an unclean leader election) that it read on from.",
            Value::Counter(m.truncations),
        )?;
        one(
            "kcon_consumer_throttled",
            "Answers in which a broker throttled the consumer for a client quota (KIP-219).",
            Value::Counter(m.throttled.answers),
        )?;
        one(
            "kcon_consumer_throttle_seconds",
            "The throttle times of those answers added up: how long quotas held requests back.",
            Value::CounterSeconds(m.throttled.total),
        )?;

        let mut family = encoder.encode_descriptor(
            "kcon_consumer_rebootstraps",
            "Times the consumer's connections went back to bootstrap.servers, by cause: every \
             known broker unreachable, no metadata for the trigger time, REBOOTSTRAP_REQUIRED.",
            None,
            MetricType::Counter,
        )?;
        for cause in RebootstrapCause::ALL {
            let mut labels = base.clone();
            labels.push(("cause", cause.name().to_owned()));
            ConstCounter::new(m.rebootstraps.of(cause)).encode(family.encode_family(&labels)?)?;
        }

        let h = &m.fetch_latency;
        let bounds = LATENCY_BUCKETS
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
                (|l: &PartitionLag| l.position.map(|p| p as f64)) as fn(&_) -> _,
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
