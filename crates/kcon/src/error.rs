//! The one error type of the consumer.

use std::fmt;
use std::sync::Arc;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::ConfigError;
use kcon_core::error_codes::{code, error_name};
pub use kcon_core::{Cause, KconError, Outcome};
use kcon_fetch::position::PartitionError;
use kcon_group::GroupError;
use kcon_offsets::{CommitError, CommittedError};

use crate::TopicPartition;

/// What went wrong, whose doing it was, and what the application does next.
///
/// Every error of the consumer is an [`Error`], and answers two questions:
/// - [`cause`](Error::cause): whose doing it was ([`Cause`]): the configuration, the call, a
///   broker, the network, a Processor's handler, ...;
/// - [`outcome`](Error::outcome): what the application does next ([`Outcome`]): call again,
///   fix something, seek partitions, close the consumer, ...
///
/// [`kind`](Error::kind) names the specific condition ([`ErrorKind`]), which answers both at
/// once; [`code`](Error::code) / [`api`](Error::api) are the broker's error code and the
/// request it answered, when a broker refused, and [`partitions`](Error::partitions) the
/// partitions the error is about.
///
/// | [`kind`](Error::kind) | [`cause`](Error::cause) | [`outcome`](Error::outcome) |
/// |---|---|---|
/// | `Config` | `Config` | `Fix` |
/// | `Misuse` | `Misuse` | `Fix` |
/// | `Broker` | `Broker` | `Retry` when the code is retriable, else `Fix` |
/// | `Transport` | `Transport` | `Retry` (a lost connection, a timeout), `Fix` (a certificate TLS refuses) |
/// | `Authentication` | `Authentication` | `Fix` |
/// | `Unsupported` | `Unsupported` | `Fix` |
/// | `Corrupt` | `Corrupt` | `Seek` (a partition's records), `Fix` (another answer) |
/// | `Fatal` | `Broker` (with its code), `Corrupt` (an assignment that does not decode), `Unsupported` (a request the broker cannot take) | `Close` |
/// | `NoOffset` | `Broker` | `Seek` |
/// | `LogTruncation` | `Broker` | `Seek` |
/// | `Closed` | `Closed` | `Closed` |
/// | `RecordFailed` | `Handler` | `RunAgain` |
/// | `DeadLetter` | the dead-letter write's (`Broker`, `Transport`, ...) | `Retry` |
/// | `CircuitOpen` | `Handler` | `Paused` |
///
/// [`is_retriable`](Error::is_retriable) is `outcome() == Outcome::Retry`, and
/// [`is_fatal`](Error::is_fatal) `outcome() == Outcome::Close`.
///
/// ```
/// use kcon::{Cause, Consumer, ErrorKind, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .set("session.timeout.ms", "soon")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert_eq!((err.cause(), err.outcome()), (Cause::Config, Outcome::Fix));
/// assert_eq!(err.property(), Some("session.timeout.ms"));
/// # }
/// ```
///
/// An application's loop, by outcome:
///
/// ```no_run
/// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
/// use kcon::Outcome;
///
/// loop {
///     match consumer.recv_batch().await {
///         Ok(batch) => {
///             // ... process, commit ...
/// #           let _ = batch;
///         }
///         Err(e) => match e.outcome() {
///             // A lost connection, a rebalance under way: call again.
///             Outcome::Retry => continue,
///             // No position or a truncated log under auto.offset.reset=none, corrupt records:
///             // this application skips to the end of those partitions.
///             Outcome::Seek => consumer.seek_to_end(e.partitions().to_vec()).await?,
///             // Fix, Close, Closed, ...: stop (and close the consumer).
///             _ => return Err(e),
///         },
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    cause: Cause,
    outcome: Outcome,
    code: Option<i16>,
    api_key: Option<i16>,
    property: Option<String>,
    partitions: Vec<TopicPartition>,
    offset: Option<i64>,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// The specific condition of an [`Error`]: [`Error::kind`]. Each answers both of the error's
/// questions, [`Error::cause`] and [`Error::outcome`] (see [`Error`] for which answers each
/// kind gives).
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
    /// The log was truncated under the position (KIP-320) and `auto.offset.reset` is `none`:
    /// the consumer stops at it, as the application asked. Under a reset policy it is no
    /// error: the consumer reads on and tells
    /// [`ConsumerHooks::on_truncation`](crate::ConsumerHooks::on_truncation).
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
    /// A [`Processor`](crate::Processor)'s exactly-once mode cannot go on: its transactional
    /// producer was fenced by a newer one with the same `transactional.id`, refused the id, or
    /// closed (outcome [`Close`](Outcome::Close) or [`Closed`](Outcome::Closed)); or a
    /// transaction call did not finish within its timeout (outcome [`Retry`](Outcome::Retry):
    /// the call goes on, and the next run settles the transaction first).
    Transaction,
}

impl ErrorKind {
    /// The cause and outcome of an error of this kind, unless its constructor knows better (a
    /// retriable code, a fatal error's cause, a dead-letter write's cause).
    fn defaults(self) -> (Cause, Outcome) {
        match self {
            ErrorKind::Config => (Cause::Config, Outcome::Fix),
            ErrorKind::Misuse => (Cause::Misuse, Outcome::Fix),
            ErrorKind::Broker => (Cause::Broker, Outcome::Fix),
            ErrorKind::Transport => (Cause::Transport, Outcome::Fix),
            ErrorKind::Authentication => (Cause::Authentication, Outcome::Fix),
            ErrorKind::Unsupported => (Cause::Unsupported, Outcome::Fix),
            ErrorKind::Corrupt => (Cause::Corrupt, Outcome::Fix),
            ErrorKind::Fatal => (Cause::Broker, Outcome::Close),
            ErrorKind::NoOffset | ErrorKind::LogTruncation => (Cause::Broker, Outcome::Seek),
            ErrorKind::Closed => (Cause::Closed, Outcome::Closed),
            ErrorKind::RecordFailed => (Cause::Handler, Outcome::RunAgain),
            ErrorKind::DeadLetter => (Cause::Transport, Outcome::Retry),
            ErrorKind::CircuitOpen => (Cause::Handler, Outcome::Paused),
            ErrorKind::Transaction => (Cause::Broker, Outcome::Close),
        }
    }
}

/// The kind of error a pool error's cause makes.
fn kind_of_pool(cause: Cause) -> ErrorKind {
    match cause {
        Cause::Transport => ErrorKind::Transport,
        Cause::Corrupt => ErrorKind::Corrupt,
        Cause::Unsupported => ErrorKind::Unsupported,
        Cause::Broker => ErrorKind::Broker,
        Cause::Authentication => ErrorKind::Authentication,
        Cause::Misuse => ErrorKind::Misuse,
        Cause::Config => ErrorKind::Config,
        // The runtime is shutting down: the consumer's tasks are gone with it.
        Cause::Closed => ErrorKind::Closed,
        // Causes of the layers above the pool (a handler's, a record's): never the pool's.
        _ => ErrorKind::Misuse,
    }
}

impl Error {
    /// The specific condition, answering both [`cause`](Error::cause) and
    /// [`outcome`](Error::outcome) (see [`Error`] for which answers each kind gives).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whose doing it was.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// What the application does next.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether the same call can succeed later without the application changing anything:
    /// [`outcome`](Error::outcome) is [`Outcome::Retry`].
    pub fn is_retriable(&self) -> bool {
        self.outcome == Outcome::Retry
    }

    /// Whether the consumer cannot go on and must be closed: its group member was fenced by
    /// another instance, is not authorized, or does not fit the group. Every later call
    /// returns the same error. [`outcome`](Error::outcome) is [`Outcome::Close`].
    pub fn is_fatal(&self) -> bool {
        self.outcome == Outcome::Close
    }

    /// The broker's error code, by name, when a broker refused
    /// ([`ResponseError::Unknown`] keeps a code kafka-protocol does not name).
    pub fn code(&self) -> Option<ResponseError> {
        self.code.and_then(ResponseError::try_from_code)
    }

    /// The request the broker's error answered (`ApiKey::OffsetCommit`, ...), when a broker
    /// refused.
    pub fn api(&self) -> Option<ApiKey> {
        self.api_key.and_then(|k| ApiKey::try_from(k).ok())
    }

    /// The offset a partition's error is at, when it is at one: the position out of range
    /// ([`ErrorKind::NoOffset`]), the first corrupt batch's ([`ErrorKind::Corrupt`], the
    /// offset to seek past), or the position the log was truncated under
    /// ([`ErrorKind::LogTruncation`]).
    pub fn offset(&self) -> Option<i64> {
        self.offset
    }

    /// The configuration property a [`ErrorKind::Config`] error is about.
    pub fn property(&self) -> Option<&str> {
        self.property.as_deref()
    }

    /// The partitions the error is about, if it is about some.
    pub fn partitions(&self) -> &[TopicPartition] {
        &self.partitions
    }

    /// An error of `kind`, with the kind's cause and outcome.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        let (cause, outcome) = kind.defaults();
        Error {
            kind,
            cause,
            outcome,
            code: None,
            api_key: None,
            property: None,
            partitions: Vec::new(),
            offset: None,
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

    /// The same error, retriable or not: [`Outcome::Retry`] when `retriable`, else the
    /// outcome it had unless that was `Retry`, then its kind's (`Fix` for a kind whose own is
    /// `Retry`).
    pub(crate) fn retriable(mut self, retriable: bool) -> Error {
        if retriable {
            self.outcome = Outcome::Retry;
        } else if self.outcome == Outcome::Retry {
            self.outcome = match self.kind.defaults().1 {
                Outcome::Retry => Outcome::Fix,
                other => other,
            };
        }
        self
    }

    /// A producer's error `e`, met by `who` (the processor's transactional or dead-letter
    /// producer), as the processor's error of `kind`: its cause and outcome kept.
    pub(crate) fn of_producer(kind: ErrorKind, who: &str, e: &kcon_produce::ProduceError) -> Error {
        Error::new(kind, format!("{who}: {e}"))
            .with_cause(e.cause())
            .with_outcome(e.outcome())
    }

    /// The same error, `cause`'s doing.
    pub(crate) fn with_cause(mut self, cause: Cause) -> Error {
        self.cause = cause;
        self
    }

    pub(crate) fn with_outcome(mut self, outcome: Outcome) -> Error {
        self.outcome = outcome;
        self
    }

    pub(crate) fn with_partitions(mut self, partitions: Vec<TopicPartition>) -> Error {
        self.partitions = partitions;
        self
    }

    /// A broker's error `code` answering `api_key`: retriable as the protocol classifies it.
    fn broker(api_key: i16, code: i16, message: String) -> Error {
        let retriable = ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable());
        Error {
            code: Some(code),
            api_key: Some(api_key),
            ..Error::new(ErrorKind::Broker, message)
        }
        .retriable(retriable)
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
            // The position stays at the corrupt batch: seeking past it is the way on.
            PartitionError::Corrupt { offset } => Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the records of {at} at offset {offset} are corrupt; nothing at or after it was delivered"
                ),
            )
            .with_outcome(Outcome::Seek),
            PartitionError::LogTruncation {
                offset,
                divergent,
                repositioned,
            } => Error::new(
                ErrorKind::LogTruncation,
                // Under a reset policy the consumer reads on and tells the hooks: this is
                // an error only under auto.offset.reset=none, which is how an application
                // asks to stop here (Java's LogTruncationException).
                match (divergent, repositioned) {
                    (Some((at_offset, _)), true) => format!(
                        "the log of {at} was truncated under offset {offset}; the consumer reads on from offset {at_offset}"
                    ),
                    (None, true) => format!(
                        "the log of {at} was truncated under offset {offset}; auto.offset.reset moved the position"
                    ),
                    (Some((at_offset, epoch)), false) => format!(
                        "the log of {at} was truncated under offset {offset}: the leader's log diverges from it at offset {at_offset} (end of leader epoch {epoch}); auto.offset.reset is none, so the consumer stops here: seek it (to {at_offset} to read on from where the logs part), or set auto.offset.reset to read on by itself"
                    ),
                    (None, false) => format!(
                        "the log of {at} was truncated under offset {offset} and the leader cannot say where; auto.offset.reset is none, so the consumer stops here: seek it, or set auto.offset.reset to earliest or latest to read on by itself"
                    ),
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
        let offset = match e {
            PartitionError::OffsetOutOfRange { offset }
            | PartitionError::Corrupt { offset }
            | PartitionError::LogTruncation { offset, .. } => Some(*offset),
            _ => None,
        };
        Error { offset, ..err }.with_partitions(vec![tp.clone()])
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

kcon_core::impl_kcon_error!(Error);

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
        let cause = e.cause();
        let kind = kind_of_pool(cause);
        let err = match &e {
            P::Broker {
                api_key,
                error_code,
                ..
            } => Error::broker(*api_key, *error_code, message),
            P::Config(c) => return Error::from(c.clone()),
            _ => Error::new(kind, message),
        };
        err.with_cause(cause)
            .retriable(e.is_retriable())
            .with_source(e)
    }
}

impl From<kcon_pool::ListOffsetsError> for Error {
    fn from(e: kcon_pool::ListOffsetsError) -> Error {
        use kcon_pool::ListOffsetsError as L;
        let message = e.to_string();
        let err = match &e {
            L::Pool(p) => return Error::from(p.clone()),
            L::Broker {
                api,
                error,
                partition,
            } => Error::broker(*api as i16, error.code(), message)
                .with_partitions(vec![partition.clone()]),
            L::NoLeader(tp) => Error::new(ErrorKind::Transport, message)
                .retriable(true)
                .with_partitions(vec![tp.clone()]),
            L::Unsupported { .. } => Error::new(ErrorKind::Unsupported, message),
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
        // Whatever caused it, the member cannot go on: the outcome is Close.
        let cause = match &e {
            GroupError::CorruptAssignment(_) => Cause::Corrupt,
            GroupError::Request(_) => Cause::Unsupported,
            GroupError::Authentication(_) => Cause::Authentication,
            // An error code, an answer that contradicts the request, a membership the
            // assignor cannot assign: the coordinator's answers.
            _ => Cause::Broker,
        };
        let mut err = Error::new(ErrorKind::Fatal, message).with_cause(cause);
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
    use std::collections::BTreeMap;

    use super::*;

    /// `is_retriable` and `is_fatal` say what the outcome says, and the kind's own cause holds
    /// where the kind names one.
    fn consistent(e: &Error) {
        assert_eq!(e.is_retriable(), e.outcome() == Outcome::Retry, "{e}");
        assert_eq!(e.is_fatal(), e.outcome() == Outcome::Close, "{e}");
        let named = match e.kind() {
            ErrorKind::Config => Some(Cause::Config),
            ErrorKind::Misuse => Some(Cause::Misuse),
            ErrorKind::Broker => Some(Cause::Broker),
            ErrorKind::Transport => Some(Cause::Transport),
            ErrorKind::Authentication => Some(Cause::Authentication),
            ErrorKind::Unsupported => Some(Cause::Unsupported),
            ErrorKind::Corrupt => Some(Cause::Corrupt),
            ErrorKind::Closed => Some(Cause::Closed),
            _ => None,
        };
        if let Some(cause) = named {
            assert_eq!(e.cause(), cause, "{e}");
        }
    }

    fn answers(e: &Error) -> (ErrorKind, Cause, Outcome) {
        consistent(e);
        (e.kind(), e.cause(), e.outcome())
    }

    #[test]
    fn a_fenced_member_is_fatal_with_its_code_and_request() {
        let e = Error::from(GroupError::Broker {
            api_key: ApiKey::JoinGroup as i16,
            error_code: code::FENCED_INSTANCE_ID,
            message: None,
        });
        assert!(e.is_fatal());
        assert!(!e.is_retriable());
        assert_eq!(e.code(), Some(ResponseError::FencedInstanceId));
        assert_eq!(e.api(), Some(ApiKey::JoinGroup));
        assert_eq!(
            answers(&e),
            (ErrorKind::Fatal, Cause::Broker, Outcome::Close)
        );
    }

    #[test]
    fn every_group_error_closes_the_consumer_and_says_whose_doing_it_was() {
        let cases = [
            (
                GroupError::InconsistentProtocol {
                    expected: "consumer".into(),
                    got: "connect".into(),
                },
                Cause::Broker,
            ),
            (
                GroupError::CorruptAssignment(
                    kcon_codec::consumer_protocol::Assignment::decode(&[0]).unwrap_err(),
                ),
                Cause::Corrupt,
            ),
            (
                GroupError::Request("JoinGroup v5 is needed for static membership".into()),
                Cause::Unsupported,
            ),
            (
                GroupError::Authentication("SASL PLAIN authentication failed".into()),
                Cause::Authentication,
            ),
        ];
        for (group, cause) in cases {
            let e = Error::from(group);
            assert_eq!(answers(&e), (ErrorKind::Fatal, cause, Outcome::Close));
            assert_eq!(e.code(), None);
        }
    }

    #[test]
    fn broker_errors_say_what_follows_them() {
        let rebalancing = Error::from(CommitError::RebalanceInProgress);
        assert_eq!(rebalancing.kind(), ErrorKind::Broker);
        assert!(rebalancing.is_retriable() && !rebalancing.is_fatal());
        assert_eq!(rebalancing.code(), Some(ResponseError::RebalanceInProgress));
        assert_eq!(rebalancing.api(), Some(ApiKey::OffsetCommit));
        assert_eq!(
            answers(&rebalancing),
            (ErrorKind::Broker, Cause::Broker, Outcome::Retry)
        );

        let tp = TopicPartition::new("t", 0);
        let denied = Error::partition(&tp, &PartitionError::TopicAuthorization);
        assert_eq!(denied.code(), Some(ResponseError::TopicAuthorizationFailed));
        assert_eq!(denied.api(), Some(ApiKey::Fetch));
        assert!(!denied.is_retriable() && !denied.is_fatal());
        assert_eq!(
            answers(&denied),
            (ErrorKind::Broker, Cause::Broker, Outcome::Fix)
        );

        let config = Error::config("session.timeout.ms", "soon", "milliseconds");
        assert_eq!(config.kind(), ErrorKind::Config);
        assert!(!config.is_fatal() && !config.is_retriable());
        assert_eq!(
            answers(&config),
            (ErrorKind::Config, Cause::Config, Outcome::Fix)
        );
        assert_eq!(config.property(), Some("session.timeout.ms"));
    }

    #[test]
    fn a_partition_fetch_failure_says_whether_to_seek() {
        let tp = TopicPartition::new("t", 3);
        let cases = [
            (
                PartitionError::OffsetOutOfRange { offset: 7 },
                (ErrorKind::NoOffset, Cause::Broker, Outcome::Seek),
            ),
            (
                PartitionError::Corrupt { offset: 7 },
                (ErrorKind::Corrupt, Cause::Corrupt, Outcome::Seek),
            ),
            (
                PartitionError::LogTruncation {
                    offset: 7,
                    divergent: Some((5, 2)),
                    repositioned: false,
                },
                (ErrorKind::LogTruncation, Cause::Broker, Outcome::Seek),
            ),
            (
                PartitionError::LogTruncation {
                    offset: 7,
                    divergent: None,
                    repositioned: true,
                },
                (ErrorKind::LogTruncation, Cause::Broker, Outcome::Seek),
            ),
            (
                PartitionError::TopicAuthorization,
                (ErrorKind::Broker, Cause::Broker, Outcome::Fix),
            ),
            (
                PartitionError::Broker {
                    code: code::NOT_LEADER_OR_FOLLOWER,
                },
                (ErrorKind::Broker, Cause::Broker, Outcome::Retry),
            ),
        ];
        for (partition, expected) in cases {
            let e = Error::partition(&tp, &partition);
            assert_eq!(answers(&e), expected, "{partition:?}");
            assert_eq!(e.partitions(), std::slice::from_ref(&tp));
            // The errors at an offset say it: the one to seek past, or from.
            let at = match expected.0 {
                ErrorKind::NoOffset | ErrorKind::Corrupt | ErrorKind::LogTruncation => Some(7),
                _ => None,
            };
            assert_eq!(e.offset(), at, "{partition:?}");
        }
    }

    /// Under auto.offset.reset=none a truncation is the application's to handle: the message
    /// says that setting is why the consumer stopped, where the logs part when known, and the
    /// two ways on.
    #[test]
    fn a_truncation_under_auto_offset_reset_none_says_why_the_consumer_stops_and_how_to_go_on() {
        let tp = TopicPartition::new("t", 3);
        for divergent in [Some((5, 2)), None] {
            let e = Error::partition(
                &tp,
                &PartitionError::LogTruncation {
                    offset: 7,
                    divergent,
                    repositioned: false,
                },
            );
            let m = e.to_string();
            for part in [
                "the log of t-3 was truncated under offset 7",
                "auto.offset.reset is none",
                "seek it",
                "set auto.offset.reset",
            ] {
                assert!(m.contains(part), "{part:?} not in {m:?}");
            }
            if divergent.is_some() {
                assert!(
                    m.contains("diverges from it at offset 5 (end of leader epoch 2)"),
                    "{m}"
                );
            }
        }
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

    /// kcon-pool's table says what each of its errors answers; the consumer's error carries
    /// it over as it is, with the kind of its cause.
    #[test]
    fn every_cause_of_a_pool_error_is_a_cause_and_an_outcome() {
        for pool in kcon_pool::Error::examples() {
            let shown = pool.to_string();
            let expected = (kind_of_pool(pool.cause()), pool.cause(), pool.outcome());
            assert_eq!(answers(&Error::from(pool)), expected, "{shown}");
        }
    }

    #[test]
    fn commits_and_offset_lookups_say_what_follows_them() {
        let tp = TopicPartition::new("t", 0);
        let commits = [
            (
                CommitError::Broker {
                    error_code: code::GROUP_AUTHORIZATION_FAILED,
                    partitions: BTreeMap::from([(tp.clone(), code::GROUP_AUTHORIZATION_FAILED)]),
                },
                (ErrorKind::Broker, Cause::Broker, Outcome::Fix),
            ),
            (
                CommitError::TimedOut {
                    last: "no answer".into(),
                },
                (ErrorKind::Transport, Cause::Transport, Outcome::Retry),
            ),
            (
                CommitError::Request("no coordinator".into()),
                (ErrorKind::Broker, Cause::Broker, Outcome::Fix),
            ),
        ];
        for (commit, expected) in commits {
            assert_eq!(answers(&Error::from(commit.clone())), expected, "{commit}");
        }
        let lookups = [
            (
                CommittedError::Broker {
                    error_code: code::COORDINATOR_LOAD_IN_PROGRESS,
                    partitions: BTreeMap::new(),
                },
                (ErrorKind::Broker, Cause::Broker, Outcome::Retry),
            ),
            (
                CommittedError::TimedOut {
                    last: "no answer".into(),
                },
                (ErrorKind::Transport, Cause::Transport, Outcome::Retry),
            ),
            (
                CommittedError::Request("OffsetFetch v8 is needed".into()),
                (ErrorKind::Broker, Cause::Broker, Outcome::Fix),
            ),
        ];
        for (lookup, expected) in lookups {
            assert_eq!(answers(&Error::from(lookup.clone())), expected, "{lookup}");
        }
    }

    #[test]
    fn list_offsets_errors_keep_the_pool_and_the_broker_answers() {
        use kcon_pool::ListOffsetsError as L;
        let tp = TopicPartition::new("t", 1);
        let cases = [
            (
                L::Pool(kcon_pool::Error::Stopped),
                (ErrorKind::Closed, Cause::Closed, Outcome::Closed),
            ),
            (
                L::Pool(kcon_pool::Error::Config(ConfigError::invalid(
                    "x", "y", "z",
                ))),
                (ErrorKind::Config, Cause::Config, Outcome::Fix),
            ),
            (
                L::NoLeader(tp.clone()),
                (ErrorKind::Transport, Cause::Transport, Outcome::Retry),
            ),
            (
                L::partition(ApiKey::ListOffsets, 6, &tp).expect("an error"),
                (ErrorKind::Broker, Cause::Broker, Outcome::Retry),
            ),
            (
                L::Unsupported {
                    reason: "read_committed needs ListOffsets v2".into(),
                },
                (ErrorKind::Unsupported, Cause::Unsupported, Outcome::Fix),
            ),
        ];
        for (lookup, expected) in cases {
            let shown = lookup.to_string();
            assert_eq!(answers(&Error::from(lookup)), expected, "{shown}");
        }
        let e = Error::from(L::partition(ApiKey::ListOffsets, 6, &tp).expect("an error"));
        assert_eq!(
            (e.code(), e.api(), e.partitions()),
            (
                Some(ResponseError::NotLeaderOrFollower),
                Some(ApiKey::ListOffsets),
                &[tp][..]
            )
        );
    }

    #[test]
    fn each_constructor_sets_the_kinds_cause_and_outcome() {
        let cases = [
            (
                Error::misuse("seek"),
                (ErrorKind::Misuse, Cause::Misuse, Outcome::Fix),
            ),
            (
                Error::closed(),
                (ErrorKind::Closed, Cause::Closed, Outcome::Closed),
            ),
            (
                Error::new(ErrorKind::Transport, "timed out").retriable(true),
                (ErrorKind::Transport, Cause::Transport, Outcome::Retry),
            ),
            (
                Error::new(ErrorKind::NoOffset, "no committed offset"),
                (ErrorKind::NoOffset, Cause::Broker, Outcome::Seek),
            ),
            (
                Error::new(ErrorKind::RecordFailed, "failed for good"),
                (ErrorKind::RecordFailed, Cause::Handler, Outcome::RunAgain),
            ),
            (
                Error::new(ErrorKind::CircuitOpen, "open"),
                (ErrorKind::CircuitOpen, Cause::Handler, Outcome::Paused),
            ),
            (
                Error::new(ErrorKind::DeadLetter, "not written").with_cause(Cause::Broker),
                (ErrorKind::DeadLetter, Cause::Broker, Outcome::Retry),
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(answers(&e), expected, "{e}");
        }
        // Not retriable after all: back to the kind's own outcome.
        let e = Error::broker(
            ApiKey::Fetch as i16,
            code::NOT_LEADER_OR_FOLLOWER,
            "x".into(),
        );
        assert_eq!(e.outcome(), Outcome::Retry);
        assert_eq!(e.retriable(false).outcome(), Outcome::Fix);
        let e = Error::new(ErrorKind::DeadLetter, "x").retriable(false);
        assert_eq!(e.outcome(), Outcome::Fix);
    }

    #[test]
    fn the_consumer_the_producer_and_the_pool_share_one_cause() {
        // One type: a producer's cause (a dead-letter write's) is the consumer's as it is.
        let produce: kcon_produce::Cause = kcon_produce::Cause::Record;
        let consumer: Cause = produce;
        let pool: kcon_pool::Cause = consumer;
        assert_eq!(pool, Cause::Record);
        let stopped = kcon_pool::Error::Stopped;
        assert_eq!(stopped.cause(), Cause::Closed);
        assert_eq!(Error::from(stopped).cause(), Cause::Closed);
    }
}
