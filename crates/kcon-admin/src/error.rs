//! The one error type of kcon-admin, and who caused it.

use std::fmt;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::wire::VersionError;
use kcon_core::{Cause, ConfigError, Outcome, TopicPartition};

/// Why an admin call, or one partition or group of it, has no answer.
///
/// The variant says who caused it: a broker that answered an error code
/// ([`Error::Broker`]), the connection to a broker ([`Error::Connection`]), the configuration
/// ([`Error::Config`]), a broker that cannot carry the request ([`Error::Unsupported`]), or a
/// partition that has no leader ([`Error::NoLeader`]). Like every client's error it answers
/// [`cause`](Error::cause) (whose doing it was), [`outcome`](Error::outcome) (what to do
/// next), [`code`](Error::code) and [`api`](Error::api), also as kcon-core's [`KconError`](kcon_core::KconError);
/// [`is_retriable`](Error::is_retriable) says whether asking again later can help.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A broker answered `api` with an error code: for the request as a whole, a group, or
    /// one partition (`partition`).
    Broker {
        /// The request it answered.
        api: ApiKey,
        /// The error, by name.
        error: ResponseError,
        /// The partition the error is about, where it is about one.
        partition: Option<TopicPartition>,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// The request could not be sent or its answer not read: the network, TLS, SASL
    /// authentication, a corrupt answer, a broker missing from the metadata, a runtime
    /// shutting down. The pool's error says which, and whether a retry can help.
    Connection(kcon_pool::Error),
    /// A configuration value is invalid; the error names the property.
    Config(ConfigError),
    /// The broker does not offer `api`, or not at a version that can carry the request (a
    /// field or feature it lacks).
    Unsupported {
        /// The request.
        api: Option<ApiKey>,
        /// What is missing.
        reason: String,
    },
    /// The partition has no leader in the metadata, even after a refresh (a leader election
    /// under way, or every replica offline).
    NoLeader(TopicPartition),
    /// The group has members, and what was asked needs it inactive: its offsets can be
    /// changed from outside the group only while it has none.
    GroupActive {
        /// The group.
        group_id: String,
        /// How many members it has.
        members: usize,
        /// Its state.
        state: String,
    },
    /// The group has no committed offset for the partition, and what was asked starts from
    /// one (a reset that shifts the committed offset).
    NoCommittedOffset(TopicPartition),
}

impl Error {
    /// A broker's error code for `api`; `None` for code 0 (no error).
    pub fn broker(api: ApiKey, code: i16) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Broker {
            api,
            error,
            partition: None,
            message: None,
        })
    }

    /// A broker's error code for one partition of `api`; `None` for code 0.
    pub fn partition(api: ApiKey, code: i16, tp: &TopicPartition) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Broker {
            api,
            error,
            partition: Some(tp.clone()),
            message: None,
        })
    }

    /// Whether the same call can succeed later without anything changing on the caller's
    /// side: a retriable Kafka error (as the protocol classifies it: a moved leader or
    /// coordinator, a load in progress, a timeout), a connection that may come back, a leader
    /// being elected. Refusals (authorization, an unknown group id format), configuration and
    /// missing versions are not.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { error, .. } => error.is_retriable(),
            Error::Connection(e) => e.is_retriable(),
            Error::NoLeader(_) => true,
            Error::Config(_)
            | Error::Unsupported { .. }
            | Error::GroupActive { .. }
            | Error::NoCommittedOffset(_) => false,
        }
    }

    /// Whose doing it was: a connection's error says its own (the network, TLS, SASL, a
    /// corrupt answer); a group with members or without a committed offset, and a partition
    /// without a leader, are what the brokers say of the cluster ([`Cause::Broker`]).
    pub fn cause(&self) -> Cause {
        match self {
            Error::Broker { .. }
            | Error::NoLeader(_)
            | Error::GroupActive { .. }
            | Error::NoCommittedOffset(_) => Cause::Broker,
            Error::Connection(e) => e.cause(),
            Error::Config(_) => Cause::Config,
            Error::Unsupported { .. } => Cause::Unsupported,
        }
    }

    /// What the caller does next: [`Outcome::Retry`] when [`is_retriable`](Error::is_retriable),
    /// a connection's own outcome (a runtime shutting down is [`Outcome::Closed`]), else
    /// [`Outcome::Fix`] (a group with members is stopped first, a reset without a committed
    /// offset given one).
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Connection(e) => e.outcome(),
            e if e.is_retriable() => Outcome::Retry,
            _ => Outcome::Fix,
        }
    }

    /// The broker's error, when a broker answered one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// The request the error is about, when known.
    pub fn api(&self) -> Option<ApiKey> {
        match self {
            Error::Broker { api, .. } => Some(*api),
            Error::Unsupported { api, .. } => *api,
            Error::Connection(e) => e.api(),
            _ => None,
        }
    }

    /// The partition the error is about, when it is about one.
    pub fn topic_partition(&self) -> Option<&TopicPartition> {
        match self {
            Error::Broker { partition, .. } => partition.as_ref(),
            Error::NoLeader(tp) | Error::NoCommittedOffset(tp) => Some(tp),
            _ => None,
        }
    }

    pub(crate) fn version(api: ApiKey, e: VersionError) -> Error {
        Error::Unsupported {
            api: Some(api),
            reason: e.0,
        }
    }
}

kcon_core::impl_kcon_error!(Error);

impl From<kcon_pool::Error> for Error {
    fn from(e: kcon_pool::Error) -> Error {
        use kcon_pool::Error as P;
        match e {
            P::Config(c) => Error::Config(c),
            P::Unsupported { api_key, .. } => Error::Unsupported {
                api: ApiKey::try_from(api_key).ok(),
                reason: e.to_string(),
            },
            // Only the pool's own handshake (ApiVersions) answers with a code here.
            P::Broker {
                api_key,
                error_code,
                ..
            } => match (
                ApiKey::try_from(api_key),
                ResponseError::try_from_code(error_code),
            ) {
                (Ok(api), Some(error)) => Error::Broker {
                    api,
                    error,
                    partition: None,
                    message: Some(e.to_string()),
                },
                _ => Error::Connection(e),
            },
            other => Error::Connection(other),
        }
    }
}

impl From<kcon_pool::ListOffsetsError> for Error {
    fn from(e: kcon_pool::ListOffsetsError) -> Error {
        use kcon_pool::ListOffsetsError as L;
        match e {
            L::Broker {
                api,
                error,
                partition,
            } => Error::Broker {
                api,
                error,
                partition: Some(partition),
                message: None,
            },
            L::NoLeader(tp) => Error::NoLeader(tp),
            L::Unsupported { reason } => Error::Unsupported {
                api: Some(ApiKey::ListOffsets),
                reason,
            },
            L::Pool(p) => Error::from(p),
        }
    }
}

pub use kcon_core::error_codes::error_name;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Broker {
                api,
                error,
                partition,
                message,
            } => {
                write!(f, "{api:?} answered {}", error_name(error.code()))?;
                if let Some(tp) = partition {
                    write!(f, " for {tp}")?;
                }
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            Error::Connection(e) => write!(f, "{e}"),
            Error::Config(e) => write!(f, "{e}"),
            Error::Unsupported { reason, .. } => f.write_str(reason),
            Error::NoLeader(tp) => write!(f, "{tp} has no leader in the metadata"),
            Error::GroupActive {
                group_id,
                members,
                state,
            } => write!(
                f,
                "group {group_id:?} has {members} active member{} (state {state}): its offsets \
                 can be changed from outside only while it is inactive",
                if *members == 1 { "" } else { "s" }
            ),
            Error::NoCommittedOffset(tp) => write!(f, "the group has no committed offset for {tp}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connection(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Broker { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_as_kafka_documents_them() {
        let e = Error::broker(ApiKey::OffsetFetch, 30).expect("an error");
        assert_eq!(
            e.to_string(),
            "OffsetFetch answered GROUP_AUTHORIZATION_FAILED (30)"
        );
        assert_eq!(e.code(), Some(ResponseError::GroupAuthorizationFailed));
        assert_eq!(e.api(), Some(ApiKey::OffsetFetch));
        assert!(!e.is_retriable());
        let tp = TopicPartition::new("t", 2);
        let e = Error::partition(ApiKey::ListOffsets, 6, &tp).expect("an error");
        assert_eq!(
            e.to_string(),
            "ListOffsets answered NOT_LEADER_OR_FOLLOWER (6) for t-2"
        );
        assert!(e.is_retriable());
        assert_eq!(e.topic_partition(), Some(&tp));
        assert!(Error::broker(ApiKey::Fetch, 0).is_none());
        assert_eq!(error_name(-32000), "error -32000");
        assert!(Error::NoLeader(tp).is_retriable());
    }

    #[test]
    fn pool_errors_keep_who_caused_them() {
        let e = Error::from(kcon_pool::Error::UnknownBroker { id: 3 });
        assert!(matches!(e, Error::Connection(_)), "{e:?}");
        assert!(e.is_retriable());
        assert_eq!((e.cause(), e.outcome()), (Cause::Transport, Outcome::Retry));
        let e = Error::from(kcon_pool::Error::Config(ConfigError::invalid(
            "request.timeout.ms",
            "soon",
            "a number",
        )));
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(!e.is_retriable());
        assert_eq!((e.cause(), e.outcome()), (Cause::Config, Outcome::Fix));
        let e = Error::from(kcon_pool::Error::Stopped);
        assert_eq!((e.cause(), e.outcome()), (Cause::Closed, Outcome::Closed));
    }

    /// The lookups' errors keep their partition, their request and who caused them.
    #[test]
    fn list_offsets_errors_keep_the_partition_and_who_caused_them() {
        use kcon_pool::ListOffsetsError as L;
        let tp = TopicPartition::new("t", 2);
        let lookup = L::partition(ApiKey::ListOffsets, 6, &tp).expect("an error");
        let e = Error::from(lookup.clone());
        assert_eq!(e.to_string(), lookup.to_string());
        assert_eq!(e.topic_partition(), Some(&tp));
        assert_eq!(
            (e.code(), e.api()),
            (
                Some(ResponseError::NotLeaderOrFollower),
                Some(ApiKey::ListOffsets)
            )
        );
        let cases = [
            lookup,
            L::unknown_partition(&tp),
            L::NoLeader(tp.clone()),
            L::Unsupported {
                reason: "read_committed needs ListOffsets v2".into(),
            },
            L::Pool(kcon_pool::Error::UnknownBroker { id: 3 }),
            L::Pool(kcon_pool::Error::Stopped),
        ];
        for lookup in cases {
            let e = Error::from(lookup.clone());
            assert_eq!(
                (e.cause(), e.outcome(), e.api()),
                (lookup.cause(), lookup.outcome(), lookup.api()),
                "{lookup}"
            );
        }
        assert!(matches!(
            Error::from(L::NoLeader(tp.clone())),
            Error::NoLeader(p) if p == tp
        ));
    }

    /// Every error answers the four questions of kcon-core's error model, through the trait as
    /// through its own methods.
    #[test]
    fn each_error_says_whose_doing_it_was_and_what_next() {
        let tp = TopicPartition::new("t", 0);
        let cases = [
            (
                Error::broker(ApiKey::OffsetFetch, 30).expect("an error"),
                (Cause::Broker, Outcome::Fix),
            ),
            (
                Error::partition(ApiKey::ListOffsets, 6, &tp).expect("an error"),
                (Cause::Broker, Outcome::Retry),
            ),
            (Error::NoLeader(tp.clone()), (Cause::Broker, Outcome::Retry)),
            (
                Error::NoCommittedOffset(tp.clone()),
                (Cause::Broker, Outcome::Fix),
            ),
            (
                Error::Unsupported {
                    api: Some(ApiKey::DescribeProducers),
                    reason: "not offered".into(),
                },
                (Cause::Unsupported, Outcome::Fix),
            ),
        ];
        for (e, expected) in cases {
            assert_eq!((e.cause(), e.outcome()), expected, "{e}");
            let any: &dyn kcon_core::KconError = &e;
            assert_eq!((any.cause(), any.outcome()), expected, "{e}");
            assert_eq!((any.code(), any.api()), (e.code(), e.api()), "{e}");
            assert_eq!(any.is_retriable(), e.is_retriable(), "{e}");
        }
    }
}
