//! Prometheus metrics for kcon, in a `prometheus_client` registry the application owns.
//!
//! - [`ConsumerCollector`]: a [`Consumer`]'s metrics (records, bytes, rebalances, commits,
//!   fetch latency, each partition's position and lag), read from its
//!   [`MetricsHandle`] at every scrape.
//! - [`ProcessorCollector`]: a [`Processor`]'s counts (processed, retried, skipped,
//!   dead-lettered, the circuit breaker, the dead-letter rate), read from its
//!   [`PolicyMetricsHandle`].
//! - [`ProducerCollector`]: a [`Producer`](kcon_produce::Producer)'s metrics (records and
//!   batches delivered, records failed, retries), read from its
//!   [`ProducerMetricsHandle`](kcon_produce::ProducerMetricsHandle).
//! - [`ShareCollector`]: a share consumer's metrics (records acquired, accepted, released,
//!   rejected, failed acknowledgements, expired locks, delivery counts), read from its
//!   [`ShareMetricsHandle`](kcon::share::ShareMetricsHandle).
//! - [`GroupLagCollector`]: what a group-lag exporter measured (kcon-admin's lag and
//!   Burrow-style status of every group), as `kcon exporter` serves it.
//!
//! [`RegisterMetrics`] registers them in one call: on a handle, a consumer, a producer, or a
//! processor (its own series and its consumer's).
//!
//! ```no_run
//! use kcon_prometheus::RegisterMetrics;
//! use kcon_prometheus::prometheus_client::registry::Registry;
//!
//! # fn f(processor: &kcon::Processor) {
//! let mut registry = Registry::default();
//! processor.register_metrics(&mut registry);
//! # }
//! ```
//!
//! The crate is built against prometheus-client 0.25 and re-exports it as
//! `kcon_prometheus::`[`prometheus_client`]: a registry of another version is
//! a different type, so take the re-export (or the same version).

mod consumer;
mod group_lag;
mod processor;
mod producer;
mod series;
mod share;

use kcon::deserialize::Deserializer;
use kcon::{Consumer, MetricsHandle, PolicyMetricsHandle, Processor};
/// The `prometheus-client` crate the collectors are built for (prometheus-client 0.25). A
/// registry must come from this very version to take them: use this re-export, or depend on
/// the same version.
pub use prometheus_client;
use prometheus_client::registry::Registry;

pub use consumer::ConsumerCollector;
pub use group_lag::{GroupLagCollector, LagExport, MeasuredGroup};
pub use processor::ProcessorCollector;
pub use producer::ProducerCollector;
pub use share::ShareCollector;

/// Registers what a kcon type measures into a `prometheus_client` registry, read at every
/// scrape from any task while it runs (and frozen at the last values once it is closed).
pub trait RegisterMetrics {
    /// Adds the collector of `self`'s series to `registry`.
    fn register_metrics(&self, registry: &mut Registry);
}

/// The consumer's series ([`ConsumerCollector`]).
impl RegisterMetrics for MetricsHandle {
    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ConsumerCollector::new(self.clone())));
    }
}

/// The consumer's series ([`ConsumerCollector`]), through its metrics handle.
impl RegisterMetrics for Consumer {
    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics_handle().register_metrics(registry);
    }
}

/// A processor's own counts ([`ProcessorCollector`]).
impl RegisterMetrics for PolicyMetricsHandle {
    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ProcessorCollector::new(self.clone())));
    }
}

/// Everything a processor runs on, in one call: its own counts ([`ProcessorCollector`]) and
/// its consumer's metrics ([`ConsumerCollector`]).
///
/// ```no_run
/// use kcon_prometheus::RegisterMetrics;
///
/// # fn f(processor: &kcon::Processor) {
/// let mut registry = kcon_prometheus::prometheus_client::registry::Registry::default();
/// processor.register_metrics(&mut registry);
/// # }
/// ```
impl<K: Deserializer, V: Deserializer> RegisterMetrics for Processor<K, V> {
    fn register_metrics(&self, registry: &mut Registry) {
        self.consumer().register_metrics(registry);
        self.metrics_handle().register_metrics(registry);
    }
}

/// A producer's series ([`ProducerCollector`]).
impl RegisterMetrics for kcon_produce::ProducerMetricsHandle {
    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ProducerCollector::new(self.clone())));
    }
}

/// A producer's series ([`ProducerCollector`]), through its metrics handle.
impl RegisterMetrics for kcon_produce::Producer {
    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics_handle().register_metrics(registry);
    }
}

/// A share consumer's series ([`ShareCollector`]).
impl RegisterMetrics for kcon::share::ShareMetricsHandle {
    fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(ShareCollector::new(self.clone())));
    }
}

/// A share consumer's series ([`ShareCollector`]), through its metrics handle.
impl RegisterMetrics for kcon::share::ShareConsumer {
    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics_handle().register_metrics(registry);
    }
}
