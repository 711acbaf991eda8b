//! A property's value once the registry has read it: typed, and tagged with the property, so
//! that a part's configuration takes it into a field without reading any text.

use std::path::PathBuf;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;

use crate::assignor::{BuiltinAssignor, GroupProtocol};
use crate::offsets::{IsolationLevel, ResetPolicy};
use crate::record_policy::ErrorTolerance;
use crate::security::{EndpointIdentification, Password, SaslMechanism, SecurityProtocol};

/// One property's value, read by [`Property::parse`](super::Property::parse). Each variant is
/// one property of the [registry](super::registry); a part's
/// [`Configurable::apply`](super::Configurable::apply) moves it into its field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// `bootstrap.servers`: `host:port` entries, none empty.
    BootstrapServers(Vec<String>),
    /// `client.id`.
    ClientId(String),
    /// `socket.connection.setup.timeout.ms`.
    SocketConnectionSetupTimeout(Duration),
    /// `request.timeout.ms`.
    RequestTimeout(Duration),
    /// `max.in.flight.requests.per.connection`.
    MaxInFlightRequestsPerConnection(usize),
    /// `metadata.max.age.ms`.
    MetadataMaxAge(Duration),
    /// `reconnect.backoff.ms`.
    ReconnectBackoff(Duration),
    /// `reconnect.backoff.max.ms`.
    ReconnectBackoffMax(Duration),
    /// `retry.backoff.ms`.
    RetryBackoff(Duration),
    /// `retry.backoff.max.ms`.
    RetryBackoffMax(Duration),
    /// `connections.max.idle.ms`.
    ConnectionsMaxIdle(Duration),
    /// `receive.message.max.bytes`.
    ReceiveMessageMaxBytes(usize),
    /// `allow.auto.create.topics`.
    AllowAutoCreateTopics(bool),
    /// `security.protocol`.
    SecurityProtocol(SecurityProtocol),
    /// `ssl.ca.location`; `None` when set empty.
    SslCaLocation(Option<PathBuf>),
    /// `ssl.certificate.location`; `None` when set empty.
    SslCertificateLocation(Option<PathBuf>),
    /// `ssl.key.location`; `None` when set empty.
    SslKeyLocation(Option<PathBuf>),
    /// `ssl.endpoint.identification.algorithm`.
    SslEndpointIdentificationAlgorithm(EndpointIdentification),
    /// `sasl.mechanism`.
    SaslMechanism(SaslMechanism),
    /// `sasl.username`; `None` when set empty.
    SaslUsername(Option<String>),
    /// `sasl.password`.
    SaslPassword(Password),
    /// `api.version.max`: an API and the highest version to send it at, for each API named
    /// once; empty for none.
    ApiVersionMax(Vec<(ApiKey, i16)>),
    /// `group.id`, as given.
    GroupId(String),
    /// `group.instance.id`; `None` when set empty.
    GroupInstanceId(Option<String>),
    /// `group.protocol`.
    GroupProtocol(GroupProtocol),
    /// `group.remote.assignor`; `None` when set empty (the coordinator's default).
    GroupRemoteAssignor(Option<String>),
    /// `session.timeout.ms`.
    SessionTimeout(Duration),
    /// `heartbeat.interval.ms`.
    HeartbeatInterval(Duration),
    /// `max.poll.interval.ms`.
    MaxPollInterval(Duration),
    /// `partition.assignment.strategy`: distinct assignors, at least one, in order of
    /// preference.
    PartitionAssignmentStrategy(Vec<BuiltinAssignor>),
    /// `client.rack`; `None` when set empty.
    ClientRack(Option<String>),
    /// `enable.auto.commit`.
    EnableAutoCommit(bool),
    /// `auto.commit.interval.ms`.
    AutoCommitInterval(Duration),
    /// `enable.auto.offset.store`.
    EnableAutoOffsetStore(bool),
    /// `auto.offset.reset`.
    AutoOffsetReset(ResetPolicy),
    /// `isolation.level`.
    IsolationLevel(IsolationLevel),
    /// `default.api.timeout.ms`.
    DefaultApiTimeout(Duration),
    /// `fetch.min.bytes`.
    FetchMinBytes(i32),
    /// `fetch.max.wait.ms`.
    FetchMaxWait(Duration),
    /// `fetch.max.bytes`.
    FetchMaxBytes(i32),
    /// `max.partition.fetch.bytes`.
    MaxPartitionFetchBytes(i32),
    /// `fetch.buffer.max.bytes`.
    FetchBufferMaxBytes(usize),
    /// `max.poll.records`.
    MaxPollRecords(i32),
    /// `close.timeout.ms`.
    CloseTimeout(Duration),
    /// `errors.tolerance`.
    ErrorsTolerance(ErrorTolerance),
    /// `errors.retry.max.attempts`.
    ErrorsRetryMaxAttempts(usize),
    /// `errors.retry.timeout`; `None` for no limit (-1).
    ErrorsRetryTimeout(Option<Duration>),
    /// `errors.retry.backoff.ms`.
    ErrorsRetryBackoff(Duration),
    /// `errors.retry.delay.max.ms`.
    ErrorsRetryDelayMax(Duration),
    /// `errors.deadletterqueue.topic.name`; `None` when set empty.
    ErrorsDeadLetterQueueTopicName(Option<String>),
    /// `errors.breaker.window.records`.
    ErrorsBreakerWindowRecords(usize),
    /// `errors.breaker.failures`; `None` when set empty (no such rule).
    ErrorsBreakerFailures(Option<usize>),
    /// `errors.breaker.consecutive.failures`; `None` when set empty (no such rule).
    ErrorsBreakerConsecutiveFailures(Option<usize>),
}
