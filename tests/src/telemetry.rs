//! KIP-714's client metrics as the broker receives them: the CLIENT_METRICS subscriptions that
//! tell clients what to push, and every push the `single` cluster's node took, read back.
//!
//! The node runs with `tests/java/KconTelemetrySink.java` as a metrics reporter (a broker plugin,
//! see `scripts/kafka`), so it offers GetTelemetrySubscriptions and PushTelemetry; the sink
//! decodes each push it is handed (OTLP `MetricsData`, decompressed by the broker) and appends
//! it as a JSON line to the node's `telemetry.jsonl`, which [`Kafka::telemetry_pushes`] reads.
//!
//! A client pushes only what a subscription whose `match` selects it names, so a test first
//! subscribes its own client id ([`subscribe_client_metrics`], under a name of its own: the
//! subscriptions are the cluster's, shared by every test) and unsubscribes at its end
//! ([`unsubscribe_client_metrics`]).
//!
//! What the broker hands the sink (Kafka 4.4.0, as measured): a push whose metrics are empty
//! is answered without error and not handed on; a push that comes before the subscription's
//! interval has passed since the last one is answered THROTTLING_QUOTA_EXCEEDED and not handed
//! on, unless it is the first since a GetTelemetrySubscriptions or a terminating one; a push
//! after a terminating one is answered INVALID_REQUEST. A push the sink cannot decode is a line
//! with [`TelemetryPush::error`], and the broker answers it INVALID_RECORD.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kcon_codec::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kcon_codec::kafka_protocol::messages::{
    DescribeConfigsRequest, IncrementalAlterConfigsRequest,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, Pool};
use serde::{Deserialize, Deserializer};

use crate::kafka::Kafka;

/// The file of a node's directory the sink writes, as `scripts/kafka` configures it (its
/// `telemetry` in `status`).
pub const TELEMETRY_FILE: &str = "telemetry.jsonl";

/// The CLIENT_METRICS config resource type (KIP-714) of DescribeConfigs and
/// IncrementalAlterConfigs.
pub const CLIENT_METRICS_RESOURCE: i8 = 16;

/// A subscription's configs: the metric name prefixes (`*`: all), the push interval, and the
/// client selectors.
const SUBSCRIPTION_CONFIGS: [&str; 3] = ["metrics", "interval.ms", "match"];

/// How long a subscription, once changed, may take to read back from the broker.
pub const SUBSCRIPTION_WITHIN: Duration = Duration::from_secs(10);

/// One push the broker handed the sink: a line of `telemetry.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelemetryPush {
    /// The client instance id the broker gave the client, as `java.util.UUID` writes it
    /// (8-4-4-4-12 lower-case hex).
    pub client_instance_id: String,
    /// Whether the client said this is its last push (it is closing).
    pub terminating: bool,
    /// The `client.id` of the request's header.
    pub client_id: String,
    /// The push interval of the client's subscription, in milliseconds, as the broker has it.
    pub push_interval_ms: i64,
    /// The payload's content type, as the broker names it (`OTLP`).
    #[serde(default)]
    pub content_type: String,
    /// The attributes of the payload's resource (of every `ResourceMetrics`, merged), their
    /// values in string form.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Every data point of the payload, in its order.
    #[serde(default)]
    pub points: Vec<TelemetryPoint>,
    /// Why the payload could not be decoded as OTLP `MetricsData` (the broker then answered
    /// the push INVALID_RECORD); `None` for a push decoded.
    #[serde(default)]
    pub error: Option<String>,
    /// The payload's size, decompressed, for a push that could not be decoded.
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// One data point of a push: a number of a sum or a gauge, or the count of a histogram or a
/// summary.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelemetryPoint {
    /// Its instrumentation scope's name (empty when the client names none).
    pub scope: String,
    /// The metric's name (`org.apache.kafka.producer.record.send.total`, ...).
    pub metric: String,
    /// `sum`, `gauge`, `histogram`, `exponential_histogram` or `summary`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the sum is monotonic (false for every other kind).
    pub monotonic: bool,
    /// `delta`, `cumulative` (a sum or a histogram), or `unspecified` (a gauge, a summary).
    pub temporality: String,
    /// The point's value (its integer or double), a histogram's or a summary's count; NaN or
    /// infinite as the client sent it.
    #[serde(deserialize_with = "number")]
    pub value: f64,
    /// The point's attributes, their values in string form.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The start of the point's time window, in nanoseconds since the epoch (0: none given).
    pub start_time_unix_nano: u64,
    /// When the point was taken, in nanoseconds since the epoch.
    pub time_unix_nano: u64,
}

/// A JSON number, or a string the sink writes for a double that is none (`NaN`, `Infinity`,
/// `-Infinity`).
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
    }
    match Value::deserialize(d)? {
        Value::Number(n) => Ok(n),
        Value::Text(t) => match t.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(serde::de::Error::custom(format!("{t:?} is no number"))),
        },
    }
}

impl TelemetryPush {
    /// The points of metric `name`.
    pub fn points_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TelemetryPoint> {
        self.points.iter().filter(move |p| p.metric == name)
    }
}

impl Kafka {
    /// Every push the cluster's nodes handed their telemetry sink so far, node by node, each
    /// node's in the order they came (none for a node that has had none: its file is made at
    /// the first). Only the `single` cluster's nodes have a sink.
    pub fn telemetry_pushes(&self) -> Vec<TelemetryPush> {
        let mut pushes = Vec::new();
        for node in self.nodes() {
            let file = node.dir.join(TELEMETRY_FILE);
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            // A line being appended while this reads has no newline yet: it is the next
            // read's.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            for line in complete.lines() {
                pushes.push(serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("{}: a line that is no push ({e}): {line}", file.display())
                }));
            }
        }
        pushes
    }
}

/// The pushes of client instance `client_instance_id` (as [`TelemetryPush::client_instance_id`]
/// writes it) once `until` holds for them, read every 100 ms; panics, with those read last,
/// when it does not within `within`. Async, so that the client under test, on the same
/// runtime, goes on pushing while this waits.
pub async fn wait_for_pushes(
    kafka: &Kafka,
    client_instance_id: &str,
    until: impl Fn(&[TelemetryPush]) -> bool,
    within: Duration,
) -> Vec<TelemetryPush> {
    let id = client_instance_id.to_ascii_lowercase();
    wait_until(
        kafka,
        &format!("client instance {id}"),
        |p| p.client_instance_id == id,
        until,
        within,
    )
    .await
}

/// As [`wait_for_pushes`], for the pushes of every instance of client id `client_id` (a peer
/// whose instance id the test does not learn).
pub async fn wait_for_client_pushes(
    kafka: &Kafka,
    client_id: &str,
    until: impl Fn(&[TelemetryPush]) -> bool,
    within: Duration,
) -> Vec<TelemetryPush> {
    wait_until(
        kafka,
        &format!("client id {client_id}"),
        |p| p.client_id == client_id,
        until,
        within,
    )
    .await
}

async fn wait_until(
    kafka: &Kafka,
    whose: &str,
    of: impl Fn(&TelemetryPush) -> bool,
    until: impl Fn(&[TelemetryPush]) -> bool,
    within: Duration,
) -> Vec<TelemetryPush> {
    let deadline = Instant::now() + within;
    loop {
        let pushes: Vec<TelemetryPush> = kafka.telemetry_pushes().into_iter().filter(&of).collect();
        if until(&pushes) {
            return pushes;
        }
        if Instant::now() >= deadline {
            panic!(
                "the pushes of {whose} were not as awaited within {within:?}; {} came:\n{}",
                pushes.len(),
                describe(&pushes)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the last push of a client, marked terminating, is among `pushes`: the `until` of a
/// wait for a client that closed.
pub fn terminated(pushes: &[TelemetryPush]) -> bool {
    pushes.iter().any(|p| p.terminating)
}

/// A line per push (instance, terminating, error, its points as `name=value`, a metric's
/// points side by side under one name), for a failure's message.
pub fn describe(pushes: &[TelemetryPush]) -> String {
    pushes
        .iter()
        .map(|p| {
            let mut names: Vec<String> = Vec::new();
            let mut last: Option<&str> = None;
            for x in &p.points {
                if last == Some(x.metric.as_str()) {
                    if let Some(n) = names.last_mut() {
                        n.push_str(&format!(",{}", x.value));
                    }
                } else {
                    names.push(format!("{}={}", x.metric, x.value));
                    last = Some(&x.metric);
                }
            }
            format!(
                "  {} client_id={} terminating={} interval={} resource={:?} error={:?} \
                 {} points: {}",
                p.client_instance_id,
                p.client_id,
                p.terminating,
                p.push_interval_ms,
                p.resource,
                p.error,
                p.points.len(),
                names.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Subscribes the clients that `matching` selects to `metrics`, pushed every `interval_ms`:
/// the CLIENT_METRICS resource `name` set with IncrementalAlterConfigs (`metrics`: metric name
/// prefixes, `*` for all; `matching`: selectors such as `client_id=<regex>` or
/// `client_software_name=<regex>`, each a Java regular expression the whole value must match,
/// all of them together). Returns once the broker's DescribeConfigs reads the subscription as
/// set: Kafka answers IncrementalAlterConfigs once its controller has the change, and the
/// broker, which answers the clients' GetTelemetrySubscriptions, takes it a moment later.
/// Panics on any error.
pub async fn subscribe_client_metrics(
    pool: &Pool,
    name: &str,
    metrics: &[&str],
    interval_ms: u32,
    matching: &[&str],
) {
    let values = [
        metrics.join(","),
        interval_ms.to_string(),
        matching.join(","),
    ];
    let set: Vec<(&str, Option<&str>)> = SUBSCRIPTION_CONFIGS
        .iter()
        .zip(&values)
        .map(|(k, v)| (*k, Some(v.as_str())))
        .collect();
    alter(pool, name, &set).await;
    subscription_read(pool, name, &set).await;
}

/// Ends the subscription `name`: its three configs deleted with IncrementalAlterConfigs.
/// Returns once the broker's DescribeConfigs reads none of them as the subscription's own.
/// Panics on any error.
pub async fn unsubscribe_client_metrics(pool: &Pool, name: &str) {
    let delete: Vec<(&str, Option<&str>)> =
        SUBSCRIPTION_CONFIGS.iter().map(|k| (*k, None)).collect();
    alter(pool, name, &delete).await;
    subscription_read(pool, name, &delete).await;
}

/// IncrementalAlterConfigs of CLIENT_METRICS resource `name`: a SET of each config with a
/// value, a DELETE of each without.
async fn alter(pool: &Pool, name: &str, changes: &[(&str, Option<&str>)]) {
    let configs = changes
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string((*key).to_owned()))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(CLIENT_METRICS_RESOURCE)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configs(configs),
        ])
        .with_validate_only(false);
    let answer = pool
        .send(BrokerTarget::Any, &request)
        .await
        .unwrap_or_else(|e| panic!("IncrementalAlterConfigs of client metrics {name}: {e}"));
    for r in &answer.responses {
        assert_eq!(
            r.error_code, 0,
            "IncrementalAlterConfigs of client metrics {name} {changes:?}: {:?}",
            r.error_message
        );
    }
}

/// Waits until DescribeConfigs of CLIENT_METRICS resource `name` reads each of `want`: a name
/// with the value given, or with `None` no value of the subscription's own (source
/// CLIENT_METRICS_CONFIG, 7). Panics, with the configs read last, after
/// [`SUBSCRIPTION_WITHIN`].
async fn subscription_read(pool: &Pool, name: &str, want: &[(&str, Option<&str>)]) {
    const CLIENT_METRICS_CONFIG: i8 = 7;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(CLIENT_METRICS_RESOURCE)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None),
    ]);
    let deadline = Instant::now() + SUBSCRIPTION_WITHIN;
    loop {
        let answer = pool
            .send(BrokerTarget::Any, &request)
            .await
            .unwrap_or_else(|e| panic!("DescribeConfigs of client metrics {name}: {e}"));
        let mut read: Vec<(String, Option<String>, i8)> = Vec::new();
        for r in &answer.results {
            assert_eq!(
                r.error_code, 0,
                "DescribeConfigs of client metrics {name}: {:?}",
                r.error_message
            );
            read.extend(r.configs.iter().map(|c| {
                (
                    c.name.to_string(),
                    c.value.as_ref().map(|v| v.to_string()),
                    c.config_source,
                )
            }));
        }
        let own = |key: &str| {
            read.iter()
                .find(|(k, _, source)| k == key && *source == CLIENT_METRICS_CONFIG)
                .map(|(_, v, _)| v.as_deref())
        };
        let done = want.iter().all(|(key, value)| match value {
            Some(v) => own(key) == Some(Some(*v)),
            None => own(key).is_none(),
        });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "client metrics {name} not read as {want:?} within {SUBSCRIPTION_WITHIN:?}: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
