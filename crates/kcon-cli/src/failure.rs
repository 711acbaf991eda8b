//! Why a command failed, and the exit status that says so.

use std::fmt;

use kcon_admin::{Cause, PoolError};

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

    /// A consumer error, by its cause: configuration errors are the user's (they name the
    /// property), the rest are runtime failures, worded for someone who did not write the code.
    /// A processor's failed dead-letter write says in its own words which record it stopped at,
    /// whatever made the write fail.
    pub(crate) fn from_consumer(e: kcon::Error) -> Failure {
        use kcon::{Cause, ErrorKind};
        let cause = (e.kind() != ErrorKind::DeadLetter).then(|| e.cause());
        match cause {
            Some(Cause::Config) => Failure::usage(format!("bad configuration: {e}")),
            Some(Cause::Transport) => {
                let pool = std::error::Error::source(&e).and_then(|s| s.downcast_ref());
                Failure::transport(&e, pool)
            }
            Some(Cause::Authentication) => Failure::runtime(format!("authentication failed: {e}")),
            _ => match e.code() {
                Some(code) => Failure::runtime(format!("{e} [{}]", error_name(code))),
                None => Failure::runtime(e.to_string()),
            },
        }
    }

    /// A pool error from a request the tool sends itself.
    pub(crate) fn from_pool(e: PoolError) -> Failure {
        match e.cause() {
            Cause::Config => Failure::usage(format!("bad configuration: {e}")),
            Cause::Transport => Failure::transport(&e, Some(&e)),
            Cause::Authentication => Failure::runtime(format!("authentication failed: {e}")),
            Cause::Corrupt => {
                Failure::runtime(format!("{e} (is that the address of a Kafka broker?)"))
            }
            // Unsupported, Broker, Misuse, Closed (and no handler's or record's: the pool's
            // causes are those of a request).
            _ => Failure::runtime(e.to_string()),
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

    /// An admin request's error; `what` says what the request was for.
    pub(crate) fn from_admin(what: &str, e: kcon_admin::Error) -> Failure {
        use kcon_admin::Error as A;
        match e {
            A::Connection(p) => Failure::from_pool(p),
            A::Config(c) => Failure::usage(format!("bad configuration: {c}")),
            A::Broker {
                error,
                partition,
                message,
                ..
            } => {
                let about = partition.map(|tp| format!(" for {tp}")).unwrap_or_default();
                let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
                // kcon-admin retried these, the coordinator found again each time, until the
                // time was up.
                let hint = if is_coordinator_error(error) {
                    " (the group's coordinator was not ready for all of default.api.timeout.ms; \
                     a broker that just started may need longer: -X default.api.timeout.ms=MS)"
                } else {
                    ""
                };
                Failure::runtime(format!(
                    "{what}: the broker answered {}{about}{detail}{hint}",
                    error_name(error.code())
                ))
            }
            other => Failure::runtime(format!("{what}: {other}")),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) use kcon_admin::error_name;

/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS: what kcon-admin
/// retries until `default.api.timeout.ms`.
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
}
