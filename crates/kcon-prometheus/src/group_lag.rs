//! A group-lag exporter's measurement as Prometheus series: every matching group's lag per
//! partition and its Burrow-style status (kcon-admin's `GroupLag` and `Judged`), and the
//! exporter's own health. The exporter (`kcon exporter`) measures and serves; this is what a
//! scrape writes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcon::TopicPartition;
use kcon_admin::{GroupLag, Judged};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What a scrape reads: the last measurement of every matching group, and the exporter's own
/// health. The exporter changes it in place ([`GroupLagCollector::lock`]); a measurement
/// replaces `groups` whole, so a group deleted or no longer matching disappears from the next
/// scrape.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LagExport {
    /// Every group as last measured, by group id.
    pub groups: BTreeMap<String, MeasuredGroup>,
    /// Measurements made (`kcon_exporter_polls_total`).
    pub polls: u64,
    /// Measurements that failed, the previous one staying published
    /// (`kcon_exporter_poll_errors_total`).
    pub poll_errors: u64,
    /// How long the last measurement took (`kcon_exporter_poll_duration_seconds`).
    pub last_poll: Option<Duration>,
    /// When the last measurement that succeeded was made
    /// (`kcon_exporter_last_success_timestamp_seconds`).
    pub last_success: Option<SystemTime>,
}

/// One group as last measured: its lag per partition and the status judged over its window of
/// commits.
#[derive(Debug)]
pub struct MeasuredGroup {
    /// The lag, per partition.
    pub lag: GroupLag,
    /// The status, per partition and of the group.
    pub judged: Judged,
}

/// The group-lag exporter's collector: the published [`LagExport`], written at every scrape.
/// Cheap to clone: clones share it (one in the registry, one with the measuring task).
///
/// | series | labels | what |
/// |---|---|---|
/// | `kcon_group_partition_committed_offset` | group, topic, partition | the group's committed offset: the next offset it reads |
/// | `kcon_group_partition_log_end_offset` | group, topic, partition | the end of the partition's log (the high watermark) |
/// | `kcon_group_partition_lag_records` | group, topic, partition | records between the committed offset and the end of the log; negative for a committed offset past the end |
/// | `kcon_group_partition_lag_seconds` | group, topic, partition | how old the record at the committed offset is; 0 when caught up |
/// | `kcon_group_partition_status` | group, topic, partition | Burrow-style status: 0 OK, 1 WARN, 2 STOP, 3 STALL, 4 REWIND, 5 ERR, 6 PAST_END |
/// | `kcon_group_status` | group | the group's status, its worst partition's |
/// | `kcon_group_lag_records` | group | the group's lag in records, summed over its partitions behind |
/// | `kcon_group_max_lag_seconds` | group | the largest lag in seconds of the group's partitions |
/// | `kcon_exporter_polls_total`, `kcon_exporter_poll_errors_total` | | measurements made, and those that failed |
/// | `kcon_exporter_poll_duration_seconds`, `kcon_exporter_last_success_timestamp_seconds` | | how long the last one took, and when the last one that succeeded was made |
///
/// ```
/// use kcon_prometheus::GroupLagCollector;
/// use kcon_prometheus::prometheus_client::registry::Registry;
///
/// let published = GroupLagCollector::new();
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(published.clone()));
/// published.lock().polls += 1;
/// let mut text = String::new();
/// kcon_prometheus::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("kcon_exporter_polls_total 1"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct GroupLagCollector {
    published: Arc<Mutex<LagExport>>,
}

impl GroupLagCollector {
    /// A collector with nothing measured yet.
    pub fn new() -> GroupLagCollector {
        GroupLagCollector::default()
    }

    /// The published measurement, to change in place; scrapes wait while it is held, so hold it
    /// only to write (never across a measurement).
    pub fn lock(&self) -> MutexGuard<'_, LagExport> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for GroupLagCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let p = self.lock();
        // Per partition.
        type Get = fn(&MeasuredGroup, &TopicPartition) -> Option<f64>;
        let per_partition: [(&str, &str, Get); 5] = [
            (
                "kcon_group_partition_committed_offset",
                "The group's committed offset: the next offset it reads.",
                |m, tp| m.lag.partitions[tp].committed.map(|o| o as f64),
            ),
            (
                "kcon_group_partition_log_end_offset",
                "The end of the partition's log (the high watermark).",
                |m, tp| m.lag.partitions[tp].log_end.map(|o| o as f64),
            ),
            (
                "kcon_group_partition_lag_records",
                "Records between the committed offset and the end of the log; negative for a committed offset past the end.",
                |m, tp| m.lag.partitions[tp].lag.records.map(|r| r as f64),
            ),
            (
                "kcon_group_partition_lag_seconds",
                "How old the record at the committed offset is; 0 when caught up.",
                |m, tp| m.lag.partitions[tp].lag.time.map(|t| t.as_secs_f64()),
            ),
            (
                "kcon_group_partition_status",
                "Burrow-style status: 0 OK, 1 WARN, 2 STOP, 3 STALL, 4 REWIND, 5 ERR, 6 PAST_END.",
                |m, tp| m.judged.partitions.get(tp).map(|s| f64::from(s.code())),
            ),
        ];
        for (name, help, get) in per_partition {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (group, m) in &p.groups {
                for tp in m.lag.partitions.keys() {
                    let Some(v) = get(m, tp) else {
                        continue;
                    };
                    let labels = [
                        ("group", group.clone()),
                        ("topic", tp.topic.clone()),
                        ("partition", tp.partition.to_string()),
                    ];
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        // Per group.
        type GroupGet = fn(&MeasuredGroup) -> Option<f64>;
        let per_group: [(&str, &str, GroupGet); 3] = [
            (
                "kcon_group_status",
                "The group's status, its worst partition's: 0 OK, 1 WARN, 5 ERR.",
                |m| Some(f64::from(m.judged.group.code())),
            ),
            (
                "kcon_group_lag_records",
                "The group's lag in records, summed over its partitions behind.",
                |m| Some(m.lag.total_records() as f64),
            ),
            (
                "kcon_group_max_lag_seconds",
                "The largest lag in seconds of the group's partitions.",
                |m| m.lag.max_time().map(|t| t.as_secs_f64()),
            ),
        ];
        for (name, help, get) in per_group {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (group, m) in &p.groups {
                if let Some(v) = get(m) {
                    ConstGauge::new(v)
                        .encode(family.encode_family(&[("group", group.clone())])?)?;
                }
            }
        }
        // The exporter's own health.
        let polls = ConstCounter::new(p.polls);
        polls.encode(encoder.encode_descriptor(
            "kcon_exporter_polls",
            "Measurements of the groups made.",
            None,
            polls.metric_type(),
        )?)?;
        let errors = ConstCounter::new(p.poll_errors);
        errors.encode(encoder.encode_descriptor(
            "kcon_exporter_poll_errors",
            "Measurements that failed (the previous one stayed published).",
            None,
            errors.metric_type(),
        )?)?;
        if let Some(d) = p.last_poll {
            let g = ConstGauge::new(d.as_secs_f64());
            g.encode(encoder.encode_descriptor(
                "kcon_exporter_poll_duration_seconds",
                "How long the last measurement took.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(t) = p.last_success {
            let g = ConstGauge::new(
                t.duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            );
            g.encode(encoder.encode_descriptor(
                "kcon_exporter_last_success_timestamp_seconds",
                "When the last measurement that succeeded was made (Unix time).",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kcon_admin::status::Status;
    use kcon_admin::{GroupWatch, Lag, PartitionLag};
    use prometheus_client::registry::Registry;

    use super::*;

    /// A committed offset 200 past the log end is a lag of -200 (not a wrapped-around huge
    /// number) with status 6 (PAST_END), and adds nothing to the group's total.
    #[test]
    fn a_commit_past_the_log_end_is_a_negative_lag() {
        let partition = |committed: i64, records: i64| PartitionLag {
            committed: Some(committed),
            log_start: Some(0),
            log_end: Some(100),
            lag: Lag {
                records: Some(records),
                time: Some(Duration::ZERO),
            },
            error: None,
        };
        let lag = GroupLag {
            group_id: "billing".to_owned(),
            measured_at_ms: 1_000,
            partitions: BTreeMap::from([
                (TopicPartition::new("orders", 0), partition(300, -200)),
                (TopicPartition::new("orders", 1), partition(70, 30)),
            ]),
        };
        let judged = GroupWatch::new(10).observe(&lag);
        assert_eq!(
            judged.partitions[&TopicPartition::new("orders", 0)],
            Status::PastEnd
        );
        let published = GroupLagCollector::new();
        published
            .lock()
            .groups
            .insert("billing".to_owned(), MeasuredGroup { lag, judged });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(published.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let labels = r#"{group="billing",topic="orders",partition="0"}"#;
        for line in [
            format!("kcon_group_partition_lag_records{labels} -200.0"),
            format!("kcon_group_partition_status{labels} 6.0"),
            r#"kcon_group_lag_records{group="billing"} 30.0"#.to_owned(),
            r#"kcon_group_status{group="billing"} 5.0"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
