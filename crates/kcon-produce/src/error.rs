//! The one error type of the producer: what caused it, and what the application does next.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
pub use kcon_core::{Cause, KconError, Outcome};
use kcon_core::{ConfigError, TopicPartition};

/// The specific condition of a [`ProduceError`]: [`ProduceError::kind`]. Each answers both of
/// the error's questions, [`ProduceError::cause`] and [`ProduceError::outcome`] (see
/// [`ProduceError`] for which answers each kind gives).
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
    /// A transaction call the producer's transaction state does not allow: a send or a commit
    /// with no transaction begun, a second `init_transactions`, a producer without a
    /// `transactional.id`.
    TransactionState,
}

impl ErrorKind {
    /// The cause and the outcome of an error of this kind that is not retriable, unless its
    /// constructor knows better (a timeout's cause is its last failure's).
    fn defaults(self) -> (Cause, Outcome) {
        match self {
            ErrorKind::Config => (Cause::Config, Outcome::Fix),
            ErrorKind::Broker => (Cause::Broker, Outcome::Fix),
            ErrorKind::Transport => (Cause::Transport, Outcome::Fix),
            ErrorKind::Authentication => (Cause::Authentication, Outcome::Fix),
            ErrorKind::Corrupt => (Cause::Corrupt, Outcome::Fix),
            ErrorKind::Unsupported => (Cause::Unsupported, Outcome::Fix),
            ErrorKind::TimedOut => (Cause::Transport, Outcome::Retry),
            ErrorKind::InvalidRecord => (Cause::Record, Outcome::Fix),
            ErrorKind::Closed => (Cause::Closed, Outcome::Closed),
            ErrorKind::Misuse => (Cause::Misuse, Outcome::Fix),
            ErrorKind::TransactionState => (Cause::Misuse, Outcome::Fix),
        }
    }
}

/// Why a record was not delivered (or the producer could not be built).
///
/// Every error answers two questions: [`cause`](ProduceError::cause), whose doing it was
/// ([`Cause`]), and [`outcome`](ProduceError::outcome), what the application does next
/// ([`Outcome`]), both kcon-core's, which every client's errors share.
/// [`kind`](ProduceError::kind) names the specific condition ([`ErrorKind`]), which answers
/// both at once; [`code`](ProduceError::code) / [`api`](ProduceError::api) are the broker's
/// error by name and the request it answered.
///
/// | [`kind`](ProduceError::kind) | [`cause`](ProduceError::cause) | [`outcome`](ProduceError::outcome) |
/// |---|---|---|
/// | `Config` | `Config` | `Fix` |
/// | `Broker` | `Broker` | `Retry` when the code is retriable, else `Fix` |
/// | `Transport` | `Transport` | `Retry` (a lost connection), `Fix` (a certificate TLS refuses) |
/// | `Authentication` | `Authentication` | `Fix` |
/// | `Corrupt` | `Corrupt` | `Fix` |
/// | `Unsupported` | `Unsupported` | `Fix` |
/// | `TimedOut` | the last failure's: `Broker` when it had a code, else `Transport` | `Retry` |
/// | `InvalidRecord` | `Record` | `Fix` |
/// | `Closed` | `Closed` | `Closed` |
/// | `Misuse` | `Misuse` | `Fix` |
/// | `TransactionState` | `Misuse` | `Fix` |
///
/// A transactional producer changes two outcomes: an error that fails a record or the
/// offsets inside a transaction is [`Outcome::Abort`] (abort, then go on), and one that fences
/// the producer (PRODUCER_FENCED: another producer with the same `transactional.id` took over;
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED) is [`Outcome::Close`]. A partition leader's
/// INVALID_PRODUCER_EPOCH (KIP-588) is [`Outcome::Abort`]: the transaction coordinator aborted
/// the transaction, most often because it stayed open longer than `transaction.timeout.ms`;
/// the abort then gets the producer a new epoch, or fails with PRODUCER_FENCED
/// ([`Outcome::Close`]) if another producer took over. From a coordinator it is fatal.
///
/// [`is_retriable`](ProduceError::is_retriable) is `outcome() == Outcome::Retry`.
#[derive(Clone)]
pub struct ProduceError(Box<Parts>);

/// What a [`ProduceError`] says, behind one pointer: a `Result` of the producer's is no larger
/// than its `Ok` side, and a record's outcome waiting to be read takes little room.
#[derive(Debug, Clone)]
struct Parts {
    kind: ErrorKind,
    cause: Cause,
    outcome: Outcome,
    code: Option<i16>,
    api: Option<ApiKey>,
    property: Option<String>,
    partition: Option<TopicPartition>,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ProduceError {
    /// The specific condition, answering both [`cause`](ProduceError::cause) and
    /// [`outcome`](ProduceError::outcome).
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Whose doing it was.
    pub fn cause(&self) -> Cause {
        self.0.cause
    }

    /// What the application does next.
    pub fn outcome(&self) -> Outcome {
        self.0.outcome
    }

    /// Whether sending the same record again later could succeed without changing anything:
    /// [`outcome`](ProduceError::outcome) is [`Outcome::Retry`].
    pub fn is_retriable(&self) -> bool {
        self.0.outcome == Outcome::Retry
    }

    /// The broker's error code, by name, when a broker refused (for [`ErrorKind::TimedOut`],
    /// the last one before time ran out, if any; [`ResponseError::Unknown`] keeps a code
    /// kafka-protocol does not name).
    pub fn code(&self) -> Option<ResponseError> {
        self.0.code.and_then(ResponseError::try_from_code)
    }

    /// The request the broker's error answered (`ApiKey::Produce`, `ApiKey::EndTxn`, ...), or
    /// that could not be sent, when known.
    pub fn api(&self) -> Option<ApiKey> {
        self.0.api
    }

    /// The property a [`ErrorKind::Config`] error is about.
    pub fn property(&self) -> Option<&str> {
        self.0.property.as_deref()
    }

    /// The partition the record was for, when it had one.
    pub fn partition(&self) -> Option<&TopicPartition> {
        self.0.partition.as_ref()
    }

    /// An error of `kind` with the kind's cause; its outcome [`Outcome::Retry`] when
    /// `retriable`, else the kind's.
    pub(crate) fn new(kind: ErrorKind, retriable: bool, message: impl Into<String>) -> Self {
        let (cause, outcome) = kind.defaults();
        ProduceError(Box::new(Parts {
            kind,
            cause,
            outcome: if retriable { Outcome::Retry } else { outcome },
            code: None,
            api: None,
            property: None,
            partition: None,
            message: message.into(),
            source: None,
        }))
    }

    pub(crate) fn config(e: ConfigError) -> Self {
        ProduceError(Box::new(Parts {
            property: Some(e.property().to_owned()),
            message: format!("bad configuration: {e}"),
            source: Some(Arc::new(e)),
            ..*ProduceError::new(ErrorKind::Config, false, "").0
        }))
    }

    pub(crate) fn closed() -> Self {
        ProduceError::new(ErrorKind::Closed, false, "the producer is closed")
    }

    /// A broker's error code answering `api`, for a partition's batch (or for the producer id,
    /// `partition` `None`).
    pub(crate) fn broker(
        api: ApiKey,
        code: i16,
        partition: Option<TopicPartition>,
        what: &str,
        retriable: bool,
    ) -> Self {
        ProduceError(Box::new(Parts {
            code: Some(code),
            api: Some(api),
            message: format!("{what}: the broker answered {}", error_name(code)),
            partition,
            ..*ProduceError::new(ErrorKind::Broker, retriable, "").0
        }))
    }

    /// A request the pool could not get answered.
    pub(crate) fn pool(e: kcon_pool::Error, what: &str) -> Self {
        use kcon_pool::Error as E;
        // The pool's cause is the producer's as it is; the kind follows from it.
        let cause = e.cause();
        let kind = match cause {
            Cause::Transport => ErrorKind::Transport,
            Cause::Corrupt => ErrorKind::Corrupt,
            Cause::Unsupported => ErrorKind::Unsupported,
            Cause::Broker => ErrorKind::Broker,
            Cause::Authentication => ErrorKind::Authentication,
            Cause::Misuse => ErrorKind::Misuse,
            Cause::Config => ErrorKind::Config,
            // The runtime is shutting down: the producer's task is gone with it.
            Cause::Closed => ErrorKind::Closed,
            // Causes of the layers above the pool (a handler's, a record's): never the pool's.
            _ => ErrorKind::Misuse,
        };
        let code = match &e {
            E::Broker { error_code, .. } => Some(*error_code),
            _ => None,
        };
        let api = e.api();
        let property = match &e {
            E::Config(c) => Some(c.property().to_owned()),
            _ => None,
        };
        let base = ProduceError::new(kind, e.is_retriable(), format!("{what}: {e}"));
        ProduceError(Box::new(Parts {
            cause,
            code,
            api,
            property,
            source: Some(Arc::new(e)),
            ..*base.0
        }))
    }

    /// `last`, the failure that was being retried, after `delivery.timeout.ms` ran out: the
    /// last failure's cause (a broker's when it had a code, else the transport's), to be sent
    /// again.
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
        let code = last.and_then(|l| l.0.code);
        let api = last.and_then(|l| l.0.api);
        ProduceError(Box::new(Parts {
            cause: if code.is_some() {
                Cause::Broker
            } else {
                Cause::Transport
            },
            code,
            api,
            source: last.map(|l| Arc::new(l.clone()) as Arc<dyn std::error::Error + Send + Sync>),
            ..*ProduceError::new(ErrorKind::TimedOut, true, message).0
        }))
    }

    /// `count` records queued before the producer began closing failed while the close waited
    /// for them; `first` is the first of those failures, whose kind, cause and code this
    /// error keeps.
    pub(crate) fn failed_in_close(count: usize, first: ProduceError) -> Self {
        let message = match count {
            1 => format!("a record queued before the close failed: {first}"),
            n => format!("{n} records queued before the close failed; the first: {first}"),
        };
        ProduceError(Box::new(Parts {
            message,
            source: Some(Arc::new(first.clone())),
            ..*first.0
        }))
    }

    /// The close did not end within `timeout`: it goes on without anyone waiting.
    pub(crate) fn close_timed_out(timeout: Duration) -> Self {
        ProduceError::new(
            ErrorKind::TimedOut,
            true,
            format!(
                "the producer did not finish closing within {} ms: it goes on closing, each \
                 record queued still sent or failed within delivery.timeout.ms",
                timeout.as_millis()
            ),
        )
    }

    /// A transaction call the state does not allow.
    pub(crate) fn transaction_state(message: impl Into<String>) -> Self {
        ProduceError::new(ErrorKind::TransactionState, false, message)
    }

    /// The same error, fatal to the producer: it can only be closed.
    pub(crate) fn fatal(mut self) -> Self {
        self.0.outcome = Outcome::Close;
        self
    }

    /// The same error, failing the transaction it happened in: abort it, then go on.
    pub(crate) fn abortable(mut self) -> Self {
        self.0.outcome = Outcome::Abort;
        self
    }

    /// The same error with `advice` after what happened: what likely caused it, and what to
    /// do.
    pub(crate) fn advising(mut self, advice: &str) -> Self {
        self.0.message.push_str(": ");
        self.0.message.push_str(advice);
        self
    }

    /// The same error about `partition`.
    pub(crate) fn for_partition(mut self, partition: &TopicPartition) -> Self {
        self.0.partition = Some(partition.clone());
        self
    }
}

impl fmt::Debug for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        f.debug_struct("ProduceError")
            .field("kind", &p.kind)
            .field("cause", &p.cause)
            .field("outcome", &p.outcome)
            .field("code", &p.code)
            .field("api", &p.api)
            .field("property", &p.property)
            .field("partition", &p.partition)
            .field("message", &p.message)
            .field("source", &p.source)
            .finish()
    }
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for ProduceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

kcon_core::impl_kcon_error!(ProduceError);

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
            ApiKey::Produce,
            ResponseError::NotEnoughReplicas.code(),
            Some(tp.clone()),
            "producing to t-2",
            true,
        );
        assert_eq!(e.kind(), ErrorKind::Broker);
        assert_eq!(e.code(), Some(ResponseError::NotEnoughReplicas));
        assert_eq!(e.api(), Some(ApiKey::Produce));
        assert_eq!(e.partition(), Some(&tp));
        assert!(e.to_string().contains("NOT_ENOUGH_REPLICAS (19)"), "{e}");
        let t = ProduceError::timed_out(Duration::from_millis(1500), "t-2", Some(&e));
        assert_eq!(t.kind(), ErrorKind::TimedOut);
        assert_eq!(t.code(), Some(ResponseError::NotEnoughReplicas));
        assert_eq!(t.api(), Some(ApiKey::Produce));
        assert!(t.is_retriable());
        assert!(t.to_string().contains("1500 ms"), "{t}");
        assert!(t.to_string().contains("NOT_ENOUGH_REPLICAS"), "{t}");
    }

    /// `is_retriable` says what the outcome says.
    fn answers(e: &ProduceError) -> (ErrorKind, Cause, Outcome) {
        assert_eq!(e.is_retriable(), e.outcome() == Outcome::Retry, "{e}");
        (e.kind(), e.cause(), e.outcome())
    }

    #[test]
    fn each_constructor_sets_a_cause_and_an_outcome() {
        let tp = TopicPartition::new("t", 0);
        let refused = ProduceError::broker(
            ApiKey::Produce,
            ResponseError::MessageTooLarge.code(),
            Some(tp.clone()),
            "producing to t-0",
            false,
        );
        let moved = ProduceError::broker(
            ApiKey::Produce,
            ResponseError::NotLeaderOrFollower.code(),
            Some(tp.clone()),
            "producing to t-0",
            true,
        );
        let cases = [
            (
                ProduceError::config(ConfigError::invalid("acks", "some", "all, 0, 1 or -1")),
                (ErrorKind::Config, Cause::Config, Outcome::Fix),
            ),
            (
                ProduceError::closed(),
                (ErrorKind::Closed, Cause::Closed, Outcome::Closed),
            ),
            (
                refused.clone(),
                (ErrorKind::Broker, Cause::Broker, Outcome::Fix),
            ),
            (
                moved.clone(),
                (ErrorKind::Broker, Cause::Broker, Outcome::Retry),
            ),
            (
                ProduceError::new(ErrorKind::InvalidRecord, false, "too large"),
                (ErrorKind::InvalidRecord, Cause::Record, Outcome::Fix),
            ),
            (
                ProduceError::new(ErrorKind::Corrupt, false, "a partition left out"),
                (ErrorKind::Corrupt, Cause::Corrupt, Outcome::Fix),
            ),
            // A request's task that ended without a result: asked again.
            (
                ProduceError::new(ErrorKind::Closed, true, "the task failed"),
                (ErrorKind::Closed, Cause::Closed, Outcome::Retry),
            ),
            (
                ProduceError::timed_out(Duration::from_secs(1), "t-0", Some(&moved)),
                (ErrorKind::TimedOut, Cause::Broker, Outcome::Retry),
            ),
            (
                ProduceError::timed_out(Duration::from_secs(1), "t-0", None),
                (ErrorKind::TimedOut, Cause::Transport, Outcome::Retry),
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(answers(&e), expected, "{e}");
        }
        let lost = ProduceError::pool(kcon_pool::Error::UnknownBroker { id: 2 }, "producing");
        let timed_out = ProduceError::timed_out(Duration::from_secs(1), "t-0", Some(&lost));
        assert_eq!(
            answers(&timed_out),
            (ErrorKind::TimedOut, Cause::Transport, Outcome::Retry)
        );
    }

    /// kcon-pool's table says what each of its errors answers; the producer's error carries
    /// it over as it is, with the kind of its cause.
    #[test]
    fn every_cause_of_a_pool_error_is_a_cause_of_its_own() {
        use ErrorKind::{Broker, Closed, Config, Misuse, Transport, Unsupported};
        let kinds = [
            Transport,
            Unsupported,
            Misuse,
            Config,
            Closed,
            Broker,
            Broker,
            Broker,
        ];
        let examples = kcon_pool::Error::examples();
        assert_eq!(examples.len(), kinds.len());
        for (pool, kind) in examples.into_iter().zip(kinds) {
            let shown = pool.to_string();
            let expected = (kind, pool.cause(), pool.outcome());
            let e = ProduceError::pool(pool, "producing");
            assert_eq!(answers(&e), expected, "{shown}");
        }
        let bad = ProduceError::pool(
            kcon_pool::Error::Config(ConfigError::invalid("sasl.mechanism", "MD5", "PLAIN")),
            "the pool",
        );
        assert_eq!(bad.property(), Some("sasl.mechanism"));
    }
}
