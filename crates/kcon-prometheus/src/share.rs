//! A share consumer's metrics in a `prometheus_client` registry.

use std::fmt;

use kcon::share::ShareMetricsHandle;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::series::{Value, base_labels};

/// A [`ShareConsumer`](kcon::share::ShareConsumer)'s metrics as a `prometheus_client`
/// collector, read at every scrape from its [`ShareMetricsHandle`]. Registered by
/// [`RegisterMetrics::register_metrics`](crate::RegisterMetrics::register_metrics) on the
/// handle or the consumer.
///
/// | series | type | what |
/// |---|---|---|
/// | `kcon_share_records_acquired_total` | counter | records the brokers acquired for the member |
/// | `kcon_share_records_accepted_total` | counter | records whose acceptance the broker took |
/// | `kcon_share_records_released_total` | counter | records whose release the broker took (they come again) |
/// | `kcon_share_records_rejected_total` | counter | records whose rejection the broker took (archived) |
/// | `kcon_share_records_renewed_total` | counter | records whose lock renewal the broker took (KIP-1222) |
/// | `kcon_share_acknowledgements_failed_total` | counter | records whose acknowledgement failed (handed out again when their locks expire) |
/// | `kcon_share_lock_expirations_total` | counter | records acquired anew after their lock expired while the member held them |
/// | `kcon_share_commits_total` | counter | commits done |
/// | `kcon_share_record_delivery_count` | histogram | records acquired by delivery count (buckets 1 to 4, then the rest) |
///
/// Labels: `client_id`, `group`.
#[derive(Debug, Clone)]
pub struct ShareCollector {
    handle: ShareMetricsHandle,
}

impl ShareCollector {
    /// The collector of the share consumer `handle` reads.
    pub fn new(handle: ShareMetricsHandle) -> ShareCollector {
        ShareCollector { handle }
    }
}

impl Collector for ShareCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = self.handle.snapshot();
        let (client_id, group) = self.handle.identity();
        let base = base_labels(client_id, Some(group));
        let counters = [
            (
                "kcon_share_records_acquired",
                "Records the brokers acquired for the member.",
                m.records_acquired,
            ),
            (
                "kcon_share_records_accepted",
                "Records whose acceptance the broker took.",
                m.records_accepted,
            ),
            (
                "kcon_share_records_released",
                "Records whose release the broker took: they are handed out again.",
                m.records_released,
            ),
            (
                "kcon_share_records_rejected",
                "Records whose rejection the broker took: archived.",
                m.records_rejected,
            ),
            (
                "kcon_share_records_renewed",
                "Records whose lock renewal the broker took (KIP-1222).",
                m.records_renewed,
            ),
            (
                "kcon_share_acknowledgements_failed",
                "Records whose acknowledgement failed: handed out again once their locks expire.",
                m.acknowledgements_failed,
            ),
            (
                "kcon_share_lock_expirations",
                "Records acquired anew after their lock expired while the member held them.",
                m.lock_expirations,
            ),
            ("kcon_share_commits", "Commits done.", m.commits),
        ];
        for (name, help, n) in counters {
            let Some(metric) = Value::Counter(n).metric() else {
                continue;
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric.kind())?;
            metric.encode(family.encode_family(&base)?)?;
        }
        // Each bucket's own records (the encoder adds them up): delivery counts 1, 2, 3, 4, and
        // the rest.
        let buckets: Vec<(f64, u64)> = m
            .delivery_counts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = if i + 1 < m.delivery_counts.len() {
                    (i + 1) as f64
                } else {
                    f64::INFINITY
                };
                (bound, *n)
            })
            .collect();
        let total: u64 = m.delivery_counts.iter().sum();
        // The sum counts 5 for "5 or more": a lower bound.
        let sum: f64 = m
            .delivery_counts
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 1) as f64 * *n as f64)
            .sum();
        let mut family = encoder.encode_descriptor(
            "kcon_share_record_delivery_count",
            "Records acquired, by delivery count (the last bucket: 5 or more).",
            None,
            MetricType::Histogram,
        )?;
        family
            .encode_family(&base)?
            .encode_histogram::<NoLabelSet>(sum, total, &buckets, None)?;
        Ok(())
    }
}
