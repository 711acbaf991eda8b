//! A record processor's counts in a `prometheus_client` registry.

use std::fmt;

use kcon::{PartitionCounts, PolicyMetricsHandle};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::series::{Value, base_labels};

/// A [`Processor`](kcon::Processor)'s counts as a `prometheus_client` collector, read at
/// every scrape from the [`PolicyMetricsHandle`]'s last published snapshot. Registered by
/// [`RegisterMetrics::register_metrics`](crate::RegisterMetrics::register_metrics) on the
/// handle, or on the processor with its consumer's series.
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
/// | `kcon_policy_records_waiting` | gauge | records fetched and not yet done with |
/// | `kcon_policy_records_running` | gauge | records in the handler (or being dead-lettered) now |
/// | `kcon_policy_records_buffered` | gauge | records fetched and not started |
/// | `kcon_policy_records_waiting_for_key` | gauge | of those, records waiting behind an earlier record of their key |
/// | `kcon_policy_records_done_before_total` | counter | per partition: records passed over because the commit's metadata said they were done with |
/// | `kcon_policy_metadata_cut_total` | counter | per partition: times the records done with above the committed offset did not all fit in the metadata |
/// | `kcon_policy_metadata_bytes` | gauge | per partition: the bytes of the commit metadata last written |
/// | `kcon_policy_gap_records` | gauge | per partition: how far the records received run ahead of the lowest one not done with |
///
/// Labels: `client_id`, `group` (with one), and `topic`, `partition` on per-partition
/// series.
#[derive(Debug, Clone)]
pub struct ProcessorCollector {
    handle: PolicyMetricsHandle,
}

impl ProcessorCollector {
    /// The collector of the processor `handle` reads.
    pub fn new(handle: PolicyMetricsHandle) -> ProcessorCollector {
        ProcessorCollector { handle }
    }
}

impl Collector for ProcessorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = self.handle.snapshot();
        let (client_id, group) = self.handle.identity();
        let base = base_labels(client_id, group);
        let per_partition = [
            (
                "kcon_policy_records_processed",
                "Records the handler processed.",
                (|c: &PartitionCounts| c.processed) as fn(&_) -> u64,
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
            (
                "kcon_policy_records_done_before",
                "Records passed over because the commit's metadata said they were done with.",
                |c| c.done_before,
            ),
            (
                "kcon_policy_metadata_cut",
                "Times the records done with above the committed offset did not all fit in the metadata.",
                |c| c.metadata_cut,
            ),
        ];
        let labels_of = |tp: &kcon::TopicPartition| {
            let mut labels = base.clone();
            labels.push(("topic", tp.topic.to_string()));
            labels.push(("partition", tp.partition.to_string()));
            labels
        };
        for (name, help, value) in per_partition {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tp, counts) in &m.partitions {
                ConstCounter::new(value(counts)).encode(family.encode_family(&labels_of(tp))?)?;
            }
        }
        let per_partition_gauges = [
            (
                "kcon_policy_metadata_bytes",
                "The bytes of the commit metadata last written (records done with above the committed offset).",
                (|c: &PartitionCounts| c.metadata_bytes as i64) as fn(&_) -> i64,
            ),
            (
                "kcon_policy_gap_records",
                "How far the records received run ahead of the lowest one not done with.",
                |c| c.gap,
            ),
        ];
        for (name, help, value) in per_partition_gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (tp, counts) in &m.partitions {
                ConstGauge::new(value(counts)).encode(family.encode_family(&labels_of(tp))?)?;
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
                "Records fetched and not yet done with.",
                Value::Gauge(Some(m.records_waiting as f64)),
            ),
            (
                "kcon_policy_records_running",
                "Records in the handler (or being dead-lettered) now.",
                Value::Gauge(Some(m.records_running as f64)),
            ),
            (
                "kcon_policy_records_buffered",
                "Records fetched and not started.",
                Value::Gauge(Some(m.records_buffered as f64)),
            ),
            (
                "kcon_policy_records_waiting_for_key",
                "Records fetched and waiting behind an earlier record of their key.",
                Value::Gauge(Some(m.records_waiting_for_key as f64)),
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
