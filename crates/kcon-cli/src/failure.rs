//! Why a command failed, and the exit status that says so.

use std::fmt;

use kcon::property::ConfigError;
use kcon_admin::{Cause, KconError, PoolError};

/// Exit status of a runtime failure: a broker unreachable, an unknown topic or group, a
/// refusal (authorization), bad input data.
pub(crate) const EXIT_RUNTIME: u8 = 1;

/// Exit status of a usage or configuration error: bad arguments, an unknown or bad `-X`
/// property. Also what clap exits with on a usage error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A command's failure: the message for stderr and whether the user's invocation was at fault
/// (exit 2) or the world (exit 1).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    usage: bool,
    message: String,
}

impl Failure {
    /// The world failed: exit 1.
    pub(crate) fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            usage: false,
            message: message.into(),
        }
    }

    /// The invocation is wrong: exit 2.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            usage: true,
            message: message.into(),
        }
    }

    /// The exit status for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.usage { EXIT_USAGE } else { EXIT_RUNTIME }
    }

    /// Any client's error (the consumer's, the producer's, an admin call's, the pool's), by
    /// its cause, kcon-core's error model that they all answer: configuration errors are the
    /// user's (they name the property), the rest are runtime failures, worded for someone who
    /// did not write the code. A consumer's error is said as it is (with its broker code by
    /// name); a request the tool sent for a step of its own (`step`: "creating topic t") says
    /// the step first.
    pub(crate) fn of(step: Option<&str>, e: &dyn KconError) -> Failure {
        let pool = pool_error(e);
        match cause_to_word(e) {
            Some(Cause::Config) => {
                let config = e
                    .as_error()
                    .downcast_ref::<ConfigError>()
                    .or_else(|| source_chain(e).find_map(|s| s.downcast_ref::<ConfigError>()));
                match config {
                    Some(c) => Failure::usage(format!("bad configuration: {c}")),
                    None => Failure::usage(format!("bad configuration: {e}")),
                }
            }
            Some(Cause::Transport) => Failure::transport(e, pool),
            Some(Cause::Authentication) => Failure::runtime(format!("authentication failed: {e}")),
            // The tool's own request had an answer that is no Kafka answer.
            Some(Cause::Corrupt) if pool.is_some_and(|p| p.cause() == Cause::Corrupt) => {
                Failure::runtime(format!("{e} (is that the address of a Kafka broker?)"))
            }
            _ => match (step, e.code()) {
                (Some(step), Some(code)) => {
                    let admin = e.as_error().downcast_ref::<kcon_admin::Error>();
                    let (about, detail) = match admin {
                        Some(kcon_admin::Error::Broker {
                            partition, message, ..
                        }) => (
                            partition
                                .as_ref()
                                .map(|tp| format!(" for {tp}"))
                                .unwrap_or_default(),
                            message
                                .as_ref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default(),
                        ),
                        _ => (String::new(), String::new()),
                    };
                    // kcon-admin retried these, the coordinator found again each time, until
                    // the time was up.
                    let hint = if is_coordinator_error(code) {
                        " (the group's coordinator was not ready for all of \
                         default.api.timeout.ms; a broker that just started may need longer: \
                         -X default.api.timeout.ms=MS)"
                    } else {
                        ""
                    };
                    Failure::runtime(format!(
                        "{step}: the broker answered {}{about}{detail}{hint}",
                        error_name(code.code())
                    ))
                }
                (Some(step), None) => Failure::runtime(format!("{step}: {e}")),
                (None, Some(code)) => {
                    Failure::runtime(format!("{e} [{}]", error_name(code.code())))
                }
                (None, None) => Failure::runtime(e.to_string()),
            },
        }
    }

    /// A consumer's error: [`Failure::of`] with no step.
    pub(crate) fn from_consumer(e: kcon::Error) -> Failure {
        Failure::of(None, &e)
    }

    /// A pool error from a request the tool sends itself: [`Failure::of`] with no step.
    pub(crate) fn from_pool(e: PoolError) -> Failure {
        Failure::of(None, &e)
    }

    /// An admin request's error; `what` says what the request was for.
    pub(crate) fn from_admin(what: &str, e: kcon_admin::Error) -> Failure {
        match &e {
            // The connection's own words: the step adds nothing to "cannot reach the brokers".
            kcon_admin::Error::Connection(p) => Failure::of(None, p),
            _ => Failure::of(Some(what), &e),
        }
    }

    /// A failure to talk to the brokers, `e`, from the pool's error `pool` when there is one:
    /// a broker reached whose connection could not be set up (TLS, SASL, a listener of
    /// another `security.protocol`: the error names the property to check) is told apart
    /// from brokers not reached at all.
    pub(crate) fn transport(e: &dyn fmt::Display, pool: Option<&PoolError>) -> Failure {
        if pool.is_some_and(PoolError::is_setup_failure) {
            Failure::runtime(format!("cannot set up a connection to the brokers: {e}"))
        } else {
            Failure::runtime(format!("{UNREACHABLE}: {e}"))
        }
    }
}

/// The cause the tool words `e` by: none for a record processor's failed dead-letter write,
/// which says in its own words which record it stopped at, whatever made the write fail.
fn cause_to_word(e: &dyn KconError) -> Option<Cause> {
    let dead_letter = e
        .as_error()
        .downcast_ref::<kcon::Error>()
        .is_some_and(|c| c.kind() == kcon::ErrorKind::DeadLetter);
    (!dead_letter).then(|| e.cause())
}

/// The errors `e` was caused by, nearest first.
fn source_chain(e: &dyn KconError) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(e.as_error().source(), |s| s.source())
}

/// The pool's error behind `e`: `e` itself, or the nearest in its chain of sources.
fn pool_error(e: &dyn KconError) -> Option<&PoolError> {
    e.as_error()
        .downcast_ref::<PoolError>()
        .or_else(|| source_chain(e).find_map(|s| s.downcast_ref::<PoolError>()))
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) use kcon_admin::error_name;

/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS: what kcon-admin
/// retries until `default.api.timeout.ms` (a step's request is an admin call).
fn is_coordinator_error(error: kcon_admin::ResponseError) -> bool {
    use kcon_admin::ResponseError as E;
    matches!(
        error,
        E::CoordinatorNotAvailable | E::NotCoordinator | E::CoordinatorLoadInProgress
    )
}

/// How the tool says that no broker could be reached, wherever it finds out.
pub(crate) const UNREACHABLE: &str = "cannot reach the brokers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_as_kafka_documents_them() {
        assert_eq!(error_name(30), "GROUP_AUTHORIZATION_FAILED (30)");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(error_name(-32000), "error -32000");
    }

    /// A coordinator still not ready after the retries names the property that bounds them;
    /// any other refusal does not.
    #[test]
    fn a_coordinator_never_ready_names_default_api_timeout_ms() {
        let e = kcon_admin::Error::broker(kcon_admin::ApiKey::DescribeGroups, 16).unwrap();
        let f = Failure::from_admin("describing group \"g\"", e);
        assert!(
            f.to_string().starts_with(
                "describing group \"g\": the broker answered NOT_COORDINATOR (16) (the \
                 group's coordinator was not ready for all of default.api.timeout.ms"
            ),
            "{f}"
        );
        let e = kcon_admin::Error::broker(kcon_admin::ApiKey::DescribeGroups, 30).unwrap();
        let f = Failure::from_admin("describing group \"g\"", e);
        assert!(!f.to_string().contains("default.api.timeout.ms"), "{f}");
    }

    #[test]
    fn configuration_errors_exit_2_and_the_rest_1() {
        assert_eq!(Failure::usage("x").exit_code(), 2);
        assert_eq!(Failure::runtime("x").exit_code(), 1);
    }

    #[test]
    fn a_consumer_error_is_worded_and_exits_by_its_cause() {
        let bad = kcon::Error::from(kcon::property::ConfigError::invalid(
            "session.timeout.ms",
            "soon",
            "milliseconds",
        ));
        let failure = Failure::from_consumer(bad.clone());
        assert_eq!(failure.exit_code(), EXIT_USAGE);
        assert_eq!(failure.to_string(), format!("bad configuration: {bad}"));

        let unreachable = kcon::Error::from(PoolError::UnknownBroker { id: 3 });
        let failure = Failure::from_consumer(unreachable.clone());
        assert_eq!(failure.exit_code(), EXIT_RUNTIME);
        assert_eq!(failure.to_string(), format!("{UNREACHABLE}: {unreachable}"));

        let stopped = kcon::Error::from(PoolError::Stopped);
        let failure = Failure::from_consumer(stopped.clone());
        assert_eq!(failure.exit_code(), EXIT_RUNTIME);
        assert_eq!(failure.to_string(), stopped.to_string());
    }

    /// Every client's error goes through the one projection: a producer's configuration error
    /// is the user's and says "bad configuration" once, as a consumer's does; a connection
    /// error under an admin call or a consumer's words the same; an admin refusal names its
    /// partition and the broker's message after the step.
    #[test]
    fn every_clients_error_is_worded_by_one_projection() {
        let bad = kcon::property::ConfigError::invalid("acks", "some", "all, 0, 1 or -1");
        let producer = kcon_produce::ProduceError::from(bad.clone());
        let consumer = kcon::Error::from(bad.clone());
        let (p, c) = (Failure::of(None, &producer), Failure::of(None, &consumer));
        assert_eq!((p.exit_code(), c.exit_code()), (EXIT_USAGE, EXIT_USAGE));
        assert_eq!(p.to_string(), c.to_string());
        assert_eq!(p.to_string(), format!("bad configuration: {bad}"));

        let unreachable = PoolError::UnknownBroker { id: 3 };
        let admin = Failure::from_admin("listing topics", unreachable.clone().into());
        let consumer = Failure::from_consumer(unreachable.clone().into());
        assert_eq!(admin.to_string(), format!("{UNREACHABLE}: {unreachable}"));
        assert_eq!(consumer.to_string(), admin.to_string());

        let tp = kcon::TopicPartition::new("t", 1);
        let refused = kcon_admin::Error::Broker {
            api: kcon_admin::ApiKey::DeleteRecords,
            error: kcon_admin::ResponseError::PolicyViolation,
            partition: Some(tp),
            message: Some("not here".into()),
        };
        let f = Failure::from_admin("deleting records", refused);
        assert_eq!(f.exit_code(), EXIT_RUNTIME);
        assert_eq!(
            f.to_string(),
            "deleting records: the broker answered POLICY_VIOLATION (44) for t-1: not here"
        );
    }
}
