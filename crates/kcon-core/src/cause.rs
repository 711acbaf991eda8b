//! The error model of every part of kcon: whose doing an error was ([`Cause`]), what the
//! application does next ([`Outcome`]), and the broker's error code and request ([`KconError`]).
//!
//! The connection pool says the cause of each request that failed, and every public error above
//! it (the consumer's, the producer's, the admin calls', the Schema Registry's) answers the same
//! four questions with the same types, so the same failure reads the same whichever part met it,
//! an application that handles a consumer's and a producer's errors (a dead-letter write, a
//! consume-transform-produce loop) matches one pair of types, and code that only reports errors
//! (the tool's exit status and words) takes any of them as a `&dyn KconError`.
//!
//! Each error type keeps its own `kind()` for the specific condition: detail, which the cause
//! and the outcome summarise.

/// What [`KconError::code`] answers with: kafka-protocol's error codes by name.
pub use kcon_codec::kafka_protocol::ResponseError;
/// What [`KconError::api`] answers with: kafka-protocol's request types.
pub use kcon_codec::kafka_protocol::messages::ApiKey;

/// Whose doing an error was. Each error pairs it with what the application does next
/// ([`Outcome`]): the cause says where to look, the outcome what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The configuration: a property is unknown, has a bad value, or conflicts with another
    /// (the error names it).
    Config,
    /// The caller asked for something the client cannot do in its state (seeking a partition
    /// the consumer does not own, subscribing without `group.id`).
    Misuse,
    /// A broker answered with an error code, or said something of the log (an offset out of
    /// range, no committed offset, a log truncated under the position).
    Broker,
    /// The network, a connection, TLS, a timeout, or a broker missing from the metadata.
    Transport,
    /// SASL authentication.
    Authentication,
    /// A broker that does not offer an API, or no version of it that kcon speaks, that the
    /// call needs.
    Unsupported,
    /// A broker sent bytes that are not a valid answer, or a record batch that does not decode.
    Corrupt,
    /// A consumer's record handler (a `Processor`'s): a record failed for good, or so many did
    /// that the circuit breaker opened.
    Handler,
    /// A record the producer cannot send as it is: larger than `max.request.size` or
    /// `buffer.memory`, for a partition its topic does not have, or one that does not encode.
    Record,
    /// The client was closed, or the runtime its tasks ran on is shutting down.
    Closed,
}

/// What the application does next about an error: one set for every client, each error using
/// the outcomes that fit it (a producer's error is never [`Outcome::Seek`], a consumer's never
/// [`Outcome::Abort`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Call again: the same call can succeed later without the application changing anything
    /// (a lost connection, a rebalance or a leader election under way, a retriable broker code,
    /// `delivery.timeout.ms` passing while the brokers were away; for a record processor, a
    /// failed dead-letter write, written again when it runs again).
    Retry,
    /// Change something first: the configuration, the call, the record, the credentials or
    /// ACLs, or the broker. As things are, the same call fails again.
    Fix,
    /// Seek the partitions the error names: they have no position to read from (no committed
    /// offset, an offset out of range or a log truncated under the position, each under
    /// `auto.offset.reset=none`), or a corrupt batch at it that the consumer does not skip by
    /// itself: seeking past it is the way on. The other partitions go on.
    Seek,
    /// Close the client: it cannot go on (a group member fenced by another instance, a producer
    /// fenced by another with its `transactional.id`, not authorized, a member that does not
    /// fit the group), and every later call returns the same error.
    Close,
    /// Nothing: the client is closed.
    Closed,
    /// Run the record processor again: it stopped at a record (the error names its partition)
    /// and stored nothing past it; the next run starts at that record.
    RunAgain,
    /// Close the record processor's circuit breaker before running it again: every partition
    /// is paused until then.
    Paused,
    /// Abort the transaction, then go on: a record or the offsets of the transaction failed,
    /// so it cannot commit, but the producer can begin the next one. The consumer goes back to
    /// the offsets last committed for what the transaction consumed.
    Abort,
}

/// What every public error of kcon answers, whichever client met it: the consumer's, the
/// producer's, the admin calls', the connection pool's, the Schema Registry's. Each type
/// answers the same questions with inherent methods of the same names; this trait is for code
/// that takes any of them (`&dyn KconError`). It is not a subtrait of [`std::error::Error`],
/// whose deprecated `cause` would make `e.cause()` ambiguous on a `&dyn KconError`;
/// [`as_error`](KconError::as_error) gives the standard error (its `source` chain, a
/// downcast).
///
/// ```
/// use kcon_core::{Cause, ConfigError, KconError, Outcome};
///
/// fn exit_status(e: &dyn KconError) -> u8 {
///     match (e.cause(), e.outcome()) {
///         (Cause::Config | Cause::Misuse, _) => 2,
///         (_, Outcome::Retry) => 75,
///         _ => 1,
///     }
/// }
/// let e = ConfigError::invalid("acks", "some", "all, 0, 1 or -1");
/// assert_eq!(exit_status(&e), 2);
/// assert_eq!(e.code(), None);
/// ```
pub trait KconError: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static {
    /// Whose doing it was.
    fn cause(&self) -> Cause;

    /// What the application does next.
    fn outcome(&self) -> Outcome;

    /// The broker's error code, by name, when a broker refused
    /// ([`ResponseError::Unknown`] keeps a code kafka-protocol does not name).
    fn code(&self) -> Option<ResponseError>;

    /// The request the broker's error answered, or that the error is about, when known.
    fn api(&self) -> Option<ApiKey>;

    /// Whether the same call can succeed later without the application changing anything:
    /// [`outcome`](KconError::outcome) is [`Outcome::Retry`].
    fn is_retriable(&self) -> bool {
        self.outcome() == Outcome::Retry
    }

    /// The same error as a standard one.
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static);
}

/// Implements [`KconError`] for an error type that answers the four questions with inherent
/// methods of the same names (`cause`, `outcome`, `code`, `api`), so that each of kcon's
/// public errors states its answers once, as its own methods, and the trait only forwards.
///
/// ```ignore
/// kcon_core::impl_kcon_error!(Error);
/// ```
#[macro_export]
macro_rules! impl_kcon_error {
    ($error:ty) => {
        impl $crate::cause::KconError for $error {
            fn cause(&self) -> $crate::cause::Cause {
                <$error>::cause(self)
            }

            fn outcome(&self) -> $crate::cause::Outcome {
                <$error>::outcome(self)
            }

            fn code(&self) -> ::std::option::Option<$crate::cause::ResponseError> {
                <$error>::code(self)
            }

            fn api(&self) -> ::std::option::Option<$crate::cause::ApiKey> {
                <$error>::api(self)
            }

            fn as_error(&self) -> &(dyn ::std::error::Error + Send + Sync + 'static) {
                self
            }
        }
    };
}

/// A bad configuration value: the configuration's doing, fixed by changing it.
impl KconError for crate::property::ConfigError {
    fn cause(&self) -> Cause {
        Cause::Config
    }

    fn outcome(&self) -> Outcome {
        Outcome::Fix
    }

    fn code(&self) -> Option<ResponseError> {
        None
    }

    fn api(&self) -> Option<ApiKey> {
        None
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
}
