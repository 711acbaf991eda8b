//! The errors that end a group member.

use std::fmt;

use kcon_codec::error::api_name;
use kcon_core::Cause;
use kcon_core::error_codes::error_name;

use crate::assignor::AssignError;
use kcon_codec::consumer_protocol::ProtocolError;

/// Why a member cannot go on; the machine stops after reporting one
/// ([`GroupEvent::Fatal`](crate::GroupEvent::Fatal)). Retriable conditions never show up here:
/// the machine retries them itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GroupError {
    /// The coordinator answered with an error no retry can fix: FENCED_INSTANCE_ID,
    /// GROUP_AUTHORIZATION_FAILED, INCONSISTENT_GROUP_PROTOCOL, GROUP_MAX_SIZE_REACHED,
    /// INVALID_SESSION_TIMEOUT, ...
    Broker {
        /// The API key of the request it answered.
        api_key: i16,
        /// The Kafka error code.
        error_code: i16,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// The coordinator's answer contradicts the member's request: another protocol type, or
    /// an assignor the member did not offer.
    InconsistentProtocol {
        /// What the member expected.
        expected: String,
        /// What came.
        got: String,
    },
    /// The leader's assignment for this member does not decode.
    CorruptAssignment(ProtocolError),
    /// The assignor failed (this member is the leader).
    Assignor(AssignError),
    /// A request could not be sent in any form the broker accepts (the broker lacks the API or
    /// a version the request needs, e.g. static membership before JoinGroup v5).
    Request(String),
    /// The coordinator's connection was refused authentication (SASL): wrong credentials, a
    /// mechanism the listener lacks, a re-authentication refused. The pool's words.
    Authentication(String),
}

impl GroupError {
    /// The error of a request that failed for good, `reason` as the pool said it: a refused
    /// login stays one.
    pub(crate) fn request_failed(reason: String, cause: Option<Cause>) -> GroupError {
        match cause {
            Some(Cause::Authentication) => GroupError::Authentication(reason),
            _ => GroupError::Request(reason),
        }
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Broker {
                api_key,
                error_code,
                message,
            } => {
                write!(
                    f,
                    "{} answered {}",
                    api_name(*api_key),
                    error_name(*error_code)
                )?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            GroupError::InconsistentProtocol { expected, got } => {
                write!(
                    f,
                    "the coordinator answered protocol {got:?}, expected {expected}"
                )
            }
            GroupError::CorruptAssignment(e) => write!(f, "the leader's assignment: {e}"),
            GroupError::Assignor(e) => write!(f, "assigning partitions: {e}"),
            GroupError::Request(e) | GroupError::Authentication(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for GroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GroupError::CorruptAssignment(e) => Some(e),
            GroupError::Assignor(e) => Some(e),
            _ => None,
        }
    }
}
