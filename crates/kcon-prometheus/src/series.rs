//! What the consumer's and the processor's collectors share: the labels of every series, and
//! one value of a series without per-partition labels.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The labels of every series: `client_id`, and `group` when there is one.
pub(crate) fn base_labels(client_id: &str, group: Option<&str>) -> Vec<(&'static str, String)> {
    let mut base = vec![("client_id", client_id.to_owned())];
    if let Some(g) = group {
        base.push(("group", g.to_owned()));
    }
    base
}

/// One value of a series without per-partition labels.
pub(crate) enum Value {
    Counter(u64),
    /// A counter of seconds, from a total duration.
    CounterSeconds(Duration),
    Gauge(Option<f64>),
}

pub(crate) enum Metric {
    Counter(ConstCounter<u64>),
    CounterSeconds(ConstCounter<f64>),
    Gauge(ConstGauge<f64>),
}

impl Value {
    pub(crate) fn metric(self) -> Option<Metric> {
        match self {
            Value::Counter(n) => Some(Metric::Counter(ConstCounter::new(n))),
            Value::CounterSeconds(d) => {
                Some(Metric::CounterSeconds(ConstCounter::new(d.as_secs_f64())))
            }
            Value::Gauge(v) => v.map(|v| Metric::Gauge(ConstGauge::new(v))),
        }
    }
}

impl Metric {
    pub(crate) fn kind(&self) -> MetricType {
        match self {
            Metric::Counter(c) => c.metric_type(),
            Metric::CounterSeconds(c) => c.metric_type(),
            Metric::Gauge(g) => g.metric_type(),
        }
    }

    pub(crate) fn encode(&self, encoder: MetricEncoder<'_>) -> fmt::Result {
        match self {
            Metric::Counter(c) => c.encode(encoder),
            Metric::CounterSeconds(c) => c.encode(encoder),
            Metric::Gauge(g) => g.encode(encoder),
        }
    }
}
