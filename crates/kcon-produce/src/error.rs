//! The one error type of the producer: who caused it, and whether trying again could help.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_core::{ConfigError, TopicPartition};

/// Who caused a [`ProduceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A property is unknown, has a bad value, or conflicts with another; the error names it
    /// ([`ProduceError::property`]).
    Config,
    /// A broker refused the batch (or the producer id) with an error code
    /// ([`ProduceError::code`]).
    Broker,
    /// The network, a connection, TLS, or a request timeout, and no retry was left.
    Transport,
    /// SASL authentication failed: not retried.
    Authentication,
    /// A broker sent an answer that is not a valid one (it does not decode, or leaves out a
    /// partition that was sent): whether the batch was written is unknown, so it is not retried.
    Corrupt,
    /// The broker does not offer an API or version the producer needs (Produce v3+ for record
    /// batches, InitProducerId for idempotence), or a request does not fit the version.
    Unsupported,
    /// `delivery.timeout.ms` passed before the record was acknowledged; the error carries the
    /// last failure's code, if a broker's.
    TimedOut,
    /// The record cannot be sent as it is: larger than `max.request.size` or `buffer.memory`, a
    /// partition the topic does not have, or a batch that does not encode.
    InvalidRecord,
    /// The producer was closed, or its task is gone.
    Closed,
    /// The producer asked the connection pool for something it cannot do: a defect of the
    /// producer's, never of the application's records.
    Misuse,
}

/// Why a record was not delivered (or the producer could not be built).
///
/// [`kind`](ProduceError::kind) says who caused it, [`is_retriable`](ProduceError::is_retriable)
/// whether sending the same record again later could succeed, and
/// [`code`](ProduceError::code) / [`error`](ProduceError::error) the broker's error by name.
#[derive(Debug, Clone)]
pub struct ProduceError {
    kind: ErrorKind,
    retriable: bool,
    code: Option<i16>,
    property: Option<String>,
    partition: Option<TopicPartition>,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ProduceError {
    /// Who caused it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether sending the same record again later could succeed without changing anything.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The broker's error code, when a broker refused (for [`ErrorKind::TimedOut`], the last
    /// one before time ran out, if any).
    pub fn code(&self) -> Option<i16> {
        self.code
    }

    /// The broker's error by name, when a broker refused with a code kafka-protocol knows.
    pub fn error(&self) -> Option<ResponseError> {
        self.code.and_then(ResponseError::try_from_code)
    }

    /// The property a [`ErrorKind::Config`] error is about.
    pub fn property(&self) -> Option<&str> {
        self.property.as_deref()
    }

    /// The partition the record was for, when it had one.
    pub fn partition(&self) -> Option<&TopicPartition> {
        self.partition.as_ref()
    }

    pub(crate) fn new(kind: ErrorKind, retriable: bool, message: impl Into<String>) -> Self {
        ProduceError {
            kind,
            retriable,
            code: None,
            property: None,
            partition: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn config(e: ConfigError) -> Self {
        ProduceError {
            property: Some(e.property().to_owned()),
            message: format!("bad configuration: {e}"),
            source: Some(Arc::new(e)),
            ..ProduceError::new(ErrorKind::Config, false, "")
        }
    }

    pub(crate) fn closed() -> Self {
        ProduceError::new(ErrorKind::Closed, false, "the producer is closed")
    }

    /// A broker's error code for a partition's batch (or for the producer id, `partition`
    /// `None`).
    pub(crate) fn broker(
        code: i16,
        partition: Option<TopicPartition>,
        what: &str,
        retriable: bool,
    ) -> Self {
        ProduceError {
            code: Some(code),
            message: format!("{what}: the broker answered {}", error_name(code)),
            partition,
            ..ProduceError::new(ErrorKind::Broker, retriable, "")
        }
    }

    /// A request the pool could not get answered.
    pub(crate) fn pool(e: kcon_pool::Error, what: &str) -> Self {
        use kcon_pool::{Cause, Error as P};
        let kind = match e.cause() {
            Cause::Transport => ErrorKind::Transport,
            Cause::Corrupt => ErrorKind::Corrupt,
            Cause::Unsupported => ErrorKind::Unsupported,
            Cause::Broker => ErrorKind::Broker,
            Cause::Authentication => ErrorKind::Authentication,
            Cause::Misuse => ErrorKind::Misuse,
            Cause::Config => ErrorKind::Config,
            // The runtime is shutting down: the producer's task is gone with it.
            Cause::Stopped => ErrorKind::Closed,
        };
        let code = match &e {
            P::Broker { error_code, .. } => Some(*error_code),
            _ => None,
        };
        let property = match &e {
            P::Config(c) => Some(c.property().to_owned()),
            _ => None,
        };
        ProduceError {
            kind,
            retriable: e.is_retriable(),
            code,
            property,
            partition: None,
            message: format!("{what}: {e}"),
            source: Some(Arc::new(e)),
        }
    }

    /// `last`, the failure that was being retried, after `delivery.timeout.ms` ran out.
    pub(crate) fn timed_out(
        timeout: Duration,
        partition: &str,
        last: Option<&ProduceError>,
    ) -> Self {
        let mut message = format!(
            "delivery to {partition} timed out after {} ms",
            timeout.as_millis()
        );
        if let Some(last) = last {
            message.push_str(&format!("; the last failure: {last}"));
        }
        ProduceError {
            code: last.and_then(|l| l.code),
            source: last.map(|l| Arc::new(l.clone()) as Arc<dyn std::error::Error + Send + Sync>),
            ..ProduceError::new(ErrorKind::TimedOut, true, message)
        }
    }

    /// The same error about `partition`.
    pub(crate) fn for_partition(mut self, partition: &TopicPartition) -> Self {
        self.partition = Some(partition.clone());
        self
    }
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ConfigError> for ProduceError {
    fn from(e: ConfigError) -> Self {
        ProduceError::config(e)
    }
}

pub use kcon_core::error_codes::error_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_and_kept() {
        assert_eq!(
            error_name(ResponseError::UnknownTopicOrPartition.code()),
            "UNKNOWN_TOPIC_OR_PARTITION (3)"
        );
        assert_eq!(error_name(-32000), "error -32000");
        let tp = TopicPartition::new("t", 2);
        let e = ProduceError::broker(
            ResponseError::NotEnoughReplicas.code(),
            Some(tp.clone()),
            "producing to t-2",
            true,
        );
        assert_eq!(e.kind(), ErrorKind::Broker);
        assert_eq!(e.error(), Some(ResponseError::NotEnoughReplicas));
        assert_eq!(e.partition(), Some(&tp));
        assert!(e.to_string().contains("NOT_ENOUGH_REPLICAS (19)"), "{e}");
        let t = ProduceError::timed_out(Duration::from_millis(1500), "t-2", Some(&e));
        assert_eq!(t.kind(), ErrorKind::TimedOut);
        assert_eq!(t.error(), Some(ResponseError::NotEnoughReplicas));
        assert!(t.is_retriable());
        assert!(t.to_string().contains("1500 ms"), "{t}");
        assert!(t.to_string().contains("NOT_ENOUGH_REPLICAS"), "{t}");
    }
}
