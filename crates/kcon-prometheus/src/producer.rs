//! A producer's metrics in a `prometheus_client` registry.

use std::fmt;

use kcon_produce::ProducerMetricsHandle;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::series::{Value, base_labels};

/// A [`Producer`](kcon_produce::Producer)'s metrics as a `prometheus_client` collector, read at
/// every scrape from its [`ProducerMetricsHandle`]. Registered by
/// [`RegisterMetrics::register_metrics`](crate::RegisterMetrics::register_metrics) on the
/// producer or the handle.
///
/// | series | type | what |
/// |---|---|---|
/// | `kcon_producer_records_delivered_total` | counter | records the brokers acknowledged |
/// | `kcon_producer_batches_delivered_total` | counter | batches the brokers acknowledged |
/// | `kcon_producer_records_failed_total` | counter | records that failed |
/// | `kcon_producer_retries_total` | counter | batches sent again after a retriable failure |
/// | `kcon_producer_marker_checks_total` | counter | answers of the transaction coordinator on whether the last transaction's markers were written, asked before the next one added anything |
/// | `kcon_producer_marker_waits_total` | counter | transactions whose first partition or offsets waited for the last one's markers |
///
/// Label: `client_id`.
#[derive(Debug, Clone)]
pub struct ProducerCollector {
    handle: ProducerMetricsHandle,
}

impl ProducerCollector {
    /// The collector of the producer `handle` reads.
    pub fn new(handle: ProducerMetricsHandle) -> ProducerCollector {
        ProducerCollector { handle }
    }
}

impl Collector for ProducerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let m = self.handle.snapshot();
        let base = base_labels(self.handle.client_id(), None);
        let series = [
            (
                "kcon_producer_records_delivered",
                "Records the brokers acknowledged.",
                m.records_delivered,
            ),
            (
                "kcon_producer_batches_delivered",
                "Batches the brokers acknowledged.",
                m.batches_delivered,
            ),
            (
                "kcon_producer_records_failed",
                "Records that failed.",
                m.records_failed,
            ),
            (
                "kcon_producer_retries",
                "Batches sent again after a retriable failure.",
                m.retries,
            ),
            (
                "kcon_producer_marker_checks",
                "Answers on whether the last transaction's markers were written, asked before \
                 the next transaction added anything.",
                m.marker_checks,
            ),
            (
                "kcon_producer_marker_waits",
                "Transactions whose first partition or offsets waited for the last \
                 transaction's markers.",
                m.marker_waits,
            ),
        ];
        for (name, help, value) in series {
            let Some(metric) = Value::Counter(value).metric() else {
                continue;
            };
            let mut family = encoder.encode_descriptor(name, help, None, metric.kind())?;
            metric.encode(family.encode_family(&base)?)?;
        }
        Ok(())
    }
}
