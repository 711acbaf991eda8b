//! The one error type of the consumer.

use std::fmt;
use std::sync::Arc;

use kcon_codec::error::api_name;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::ConfigError;
use kcon_core::error_codes::{code, error_name};
use kcon_fetch::position::PartitionError;
use kcon_group::GroupError;
use kcon_offsets::{CommitError, CommittedError};
use kcon_pool::Cause;

use crate::TopicPartition;

/// What went wrong, and whose doing it was.
///
/// Every error of the consumer is an [`Error`]; its [`kind`](Error::kind) says who caused it,
/// [`is_retriable`](Error::is_retriable) whether the same call can succeed later without the
/// application changing anything, and [`code`](Error::code) / [`api`](Error::api) the broker's
/// error code and the request it answered, when a broker refused.
///
/// ```
/// use kcon::{Consumer, ErrorKind};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .set("session.timeout.ms", "soon")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert_eq!(err.property(), Some("session.timeout.ms"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    retriable: bool,
    code: Option<i16>,
    api_key: Option<i16>,
    property: Option<String>,
    partitions: Vec<TopicPartition>,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Who caused an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration property is unknown, has a bad value, or conflicts with another; the
    /// error names the property ([`Error::property`]) and what is allowed.
    Config,
    /// The application asked for something the consumer cannot do in its state (subscribing
    /// without `group.id`, seeking a partition it does not own, using a closed consumer).
    Misuse,
    /// A broker answered with an error code ([`Error::code`]) for a request
    /// ([`Error::api`]).
    Broker,
    /// The network, a connection, TLS, or a timeout.
    Transport,
    /// Authentication failed (SASL): not retried.
    Authentication,
    /// The broker does not offer an API, or no version of it that kcon speaks, that the call
    /// needs (ListOffsets for a timestamp lookup, OffsetForLeaderEpoch, a group protocol).
    Unsupported,
    /// A broker sent bytes that are not a valid answer, or a record batch that does not
    /// decode: nothing after them was delivered.
    Corrupt,
    /// The group member cannot go on (fenced by another instance, not authorized, an
    /// inconsistent protocol): the consumer must be closed.
    Fatal,
    /// Partitions have no position and `auto.offset.reset` is `none`, or their offset is out
    /// of range under it ([`Error::partitions`]): seek them.
    NoOffset,
    /// The log was truncated under the position (KIP-320) and `auto.offset.reset` is `none`.
    LogTruncation,
    /// The consumer was closed.
    Closed,
    /// A [`Processor`](crate::Processor)'s record failed for good under
    /// `errors.tolerance=none` ([`Error::partitions`] names its partition): nothing past it
    /// was stored, and running again starts at it.
    RecordFailed,
    /// A [`Processor`](crate::Processor)'s dead-letter write failed: the record's offset was
    /// not stored, and running again writes it again.
    DeadLetter,
    /// A [`Processor`](crate::Processor)'s circuit breaker opened: too many records failed for
    /// good; every partition is paused until the breaker is closed.
    CircuitOpen,
}

impl Error {
    /// Who caused it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same call can succeed later without the application changing anything.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// Whether the consumer cannot go on and must be closed: its group member was fenced by
    /// another instance, is not authorized, or does not fit the group. Every later call
    /// returns the same error.
    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Fatal
    }

    /// The broker's error code, when a broker refused.
    pub fn code(&self) -> Option<i16> {
        self.code
    }

    /// The name of the request the broker's error answered (`"OffsetCommit"`, ...).
    pub fn api(&self) -> Option<String> {
        self.api_key.map(api_name)
    }

    /// The configuration property a [`ErrorKind::Config`] error is about.
    pub fn property(&self) -> Option<&str> {
        self.property.as_deref()
    }

    /// The partitions the error is about, if it is about some.
    pub fn partitions(&self) -> &[TopicPartition] {
        &self.partitions
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            retriable: false,
            code: None,
            api_key: None,
            property: None,
            partitions: Vec::new(),
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn misuse(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Misuse, message)
    }

    pub(crate) fn closed() -> Error {
        Error::new(ErrorKind::Closed, "the consumer is closed")
    }

    pub(crate) fn config(property: &str, value: &str, expected: &'static str) -> Error {
        Error::from(ConfigError::invalid(property, value, expected))
    }

    pub(crate) fn retriable(mut self, retriable: bool) -> Error {
        self.retriable = retriable;
        self
    }

    pub(crate) fn with_partitions(mut self, partitions: Vec<TopicPartition>) -> Error {
        self.partitions = partitions;
        self
    }

    fn broker(api_key: i16, code: i16, message: String) -> Error {
        let retriable = ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable());
        Error {
            code: Some(code),
            api_key: Some(api_key),
            retriable,
            ..Error::new(ErrorKind::Broker, message)
        }
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// The error for one partition's fetch failure.
    pub(crate) fn partition(tp: &TopicPartition, e: &PartitionError) -> Error {
        let at = format!("{}-{}", tp.topic, tp.partition);
        let err = match e {
            PartitionError::OffsetOutOfRange { offset } => Error::new(
                ErrorKind::NoOffset,
                format!(
                    "offset {offset} of {at} is out of range and auto.offset.reset is none: seek it"
                ),
            ),
            PartitionError::Corrupt { offset } => Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the records of {at} at offset {offset} are corrupt; nothing at or after it was delivered"
                ),
            ),
            PartitionError::LogTruncation {
                offset,
                divergent,
                repositioned,
            } => Error::new(
                ErrorKind::LogTruncation,
                match (divergent, repositioned) {
                    (_, true) => format!(
                        "the log of {at} was truncated under offset {offset}; auto.offset.reset moved the position"
                    ),
                    (Some((at_offset, epoch)), false) => format!(
                        "the log of {at} was truncated under offset {offset} (diverges from offset {at_offset}, epoch {epoch}): seek it"
                    ),
                    (None, false) => {
                        format!("the log of {at} was truncated under offset {offset}: seek it")
                    }
                },
            ),
            PartitionError::TopicAuthorization => Error {
                code: Some(code::TOPIC_AUTHORIZATION_FAILED),
                api_key: Some(ApiKey::Fetch as i16),
                ..Error::new(
                    ErrorKind::Broker,
                    format!(
                        "not authorized to read {} (TOPIC_AUTHORIZATION_FAILED)",
                        tp.topic
                    ),
                )
            },
            PartitionError::Broker { code } => Error::broker(
                ApiKey::Fetch as i16,
                *code,
                format!("Fetch of {at} answered {}", error_name(*code)),
            )
            .retriable(e.is_retriable()),
            other => Error::new(
                ErrorKind::Broker,
                format!("fetching {at} failed: {other:?}"),
            )
            .retriable(other.is_retriable()),
        };
        err.with_partitions(vec![tp.clone()])
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error {
            property: Some(e.property().to_owned()),
            ..Error::new(ErrorKind::Config, e.to_string())
        }
        .with_source(e)
    }
}

impl From<kcon_pool::Error> for Error {
    fn from(e: kcon_pool::Error) -> Error {
        use kcon_pool::Error as P;
        let message = e.to_string();
        let kind = match e.cause() {
            Cause::Transport => ErrorKind::Transport,
            Cause::Corrupt => ErrorKind::Corrupt,
            Cause::Unsupported => ErrorKind::Unsupported,
            Cause::Broker => ErrorKind::Broker,
            Cause::Authentication => ErrorKind::Authentication,
            Cause::Misuse => ErrorKind::Misuse,
            Cause::Config => ErrorKind::Config,
            // The runtime is shutting down: the consumer's tasks are gone with it.
            Cause::Stopped => ErrorKind::Closed,
        };
        let err = match &e {
            P::Broker {
                api_key,
                error_code,
                ..
            } => Error::broker(*api_key, *error_code, message),
            P::Config(c) => return Error::from(c.clone()),
            _ => Error::new(kind, message),
        };
        err.retriable(e.is_retriable()).with_source(e)
    }
}

impl From<kcon_admin::Error> for Error {
    fn from(e: kcon_admin::Error) -> Error {
        use kcon_admin::Error as A;
        let message = e.to_string();
        let err = match &e {
            A::Connection(p) => return Error::from(p.clone()),
            A::Config(c) => return Error::from(c.clone()),
            A::Broker {
                api,
                error,
                partition,
                ..
            } => Error::broker(*api as i16, error.code(), message)
                .with_partitions(partition.iter().cloned().collect()),
            A::NoLeader(tp) => Error::new(ErrorKind::Transport, message)
                .retriable(true)
                .with_partitions(vec![tp.clone()]),
            _ => Error::new(ErrorKind::Broker, message).retriable(e.is_retriable()),
        };
        err.with_source(e)
    }
}

impl From<CommitError> for Error {
    fn from(e: CommitError) -> Error {
        let message = e.to_string();
        match &e {
            CommitError::RebalanceInProgress => Error::broker(
                ApiKey::OffsetCommit as i16,
                code::REBALANCE_IN_PROGRESS,
                message,
            )
            .retriable(true)
            .with_source(e),
            CommitError::Broker {
                error_code,
                partitions,
            } => {
                let parts = partitions.keys().cloned().collect();
                Error::broker(ApiKey::OffsetCommit as i16, *error_code, message)
                    .with_partitions(parts)
                    .with_source(e)
            }
            CommitError::TimedOut { .. } => Error::new(ErrorKind::Transport, message)
                .retriable(true)
                .with_source(e),
            _ => Error::new(ErrorKind::Broker, message).with_source(e),
        }
    }
}

impl From<CommittedError> for Error {
    fn from(e: CommittedError) -> Error {
        let message = e.to_string();
        match &e {
            CommittedError::Broker {
                error_code,
                partitions,
            } => {
                let parts = partitions.keys().cloned().collect();
                Error::broker(ApiKey::OffsetFetch as i16, *error_code, message)
                    .with_partitions(parts)
                    .with_source(e)
            }
            CommittedError::TimedOut { .. } => Error::new(ErrorKind::Transport, message)
                .retriable(true)
                .with_source(e),
            _ => Error::new(ErrorKind::Broker, message).with_source(e),
        }
    }
}

impl From<GroupError> for Error {
    fn from(e: GroupError) -> Error {
        let message = e.to_string();
        let mut err = Error::new(ErrorKind::Fatal, message);
        if let GroupError::Broker {
            api_key,
            error_code,
            ..
        } = &e
        {
            err.code = Some(*error_code);
            err.api_key = Some(*api_key);
        }
        err.with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_member_is_fatal_with_its_code_and_request() {
        let e = Error::from(GroupError::Broker {
            api_key: ApiKey::JoinGroup as i16,
            error_code: code::FENCED_INSTANCE_ID,
            message: None,
        });
        assert!(e.is_fatal());
        assert!(!e.is_retriable());
        assert_eq!(e.code(), Some(82));
        assert_eq!(e.api().as_deref(), Some("JoinGroup"));
    }

    #[test]
    fn broker_errors_say_what_follows_them() {
        let rebalancing = Error::from(CommitError::RebalanceInProgress);
        assert_eq!(rebalancing.kind(), ErrorKind::Broker);
        assert!(rebalancing.is_retriable() && !rebalancing.is_fatal());
        assert_eq!(rebalancing.code(), Some(27));
        assert_eq!(rebalancing.api().as_deref(), Some("OffsetCommit"));

        let tp = TopicPartition::new("t", 0);
        let denied = Error::partition(&tp, &PartitionError::TopicAuthorization);
        assert_eq!(denied.code(), Some(29));
        assert_eq!(denied.api().as_deref(), Some("Fetch"));
        assert!(!denied.is_retriable() && !denied.is_fatal());

        let config = Error::config("session.timeout.ms", "soon", "milliseconds");
        assert_eq!(config.kind(), ErrorKind::Config);
        assert!(!config.is_fatal() && !config.is_retriable());
    }

    #[test]
    fn every_cause_of_a_pool_error_has_a_kind_of_its_own() {
        let peer = kcon_pool::Peer::broker(1, "kafka-1:9092");
        let cases = [
            (
                kcon_pool::Error::UnknownBroker { id: 3 },
                ErrorKind::Transport,
                true,
            ),
            (
                kcon_pool::Error::Unsupported {
                    peer: peer.clone(),
                    api_key: ApiKey::OffsetForLeaderEpoch as i16,
                    ours: (2, 4),
                    theirs: None,
                },
                ErrorKind::Unsupported,
                false,
            ),
            (
                kcon_pool::Error::Misuse(kcon_pool::Misuse::UnsupportedApi { api_key: 9999 }),
                ErrorKind::Misuse,
                false,
            ),
            (kcon_pool::Error::Stopped, ErrorKind::Closed, false),
            (
                kcon_pool::Error::Broker {
                    peer,
                    api_key: ApiKey::ApiVersions as i16,
                    error_code: code::NOT_COORDINATOR,
                },
                ErrorKind::Broker,
                true,
            ),
        ];
        for (pool, kind, retriable) in cases {
            let shown = pool.to_string();
            let e = Error::from(pool);
            assert_eq!((e.kind(), e.is_retriable()), (kind, retriable), "{shown}");
            assert_eq!(e.to_string(), shown);
        }
    }
}
