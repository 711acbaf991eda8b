//! Errors of the fetch session: caller misuse only. Broker errors and transport failures are
//! not errors of the session: it recovers from them itself and says so in a
//! [`SessionOutcome`](crate::SessionOutcome).

use std::fmt;

use kcon_core::TopicPartition;

/// Why the session refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// A request is already in flight. KIP-227 numbers a session's requests with consecutive
    /// epochs, so the next one can only be built once the previous one is answered or failed.
    RequestInFlight,
    /// An answer came when no request was in flight (a late or duplicate answer).
    NoRequestInFlight,
    /// The session was closed with [`FetchSession::close`](crate::FetchSession::close).
    Closed,
    /// Fetch v13+ names topics by id (KIP-516), and this partition's topic has none; the
    /// caller must fetch at v12 or below, as the Java client does when a topic lacks an id.
    MissingTopicId(TopicPartition),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::RequestInFlight => {
                f.write_str("a fetch request of this session is already in flight")
            }
            SessionError::NoRequestInFlight => {
                f.write_str("a fetch answer came with no request of this session in flight")
            }
            SessionError::Closed => f.write_str("the fetch session is closed"),
            SessionError::MissingTopicId(tp) => write!(
                f,
                "Fetch v13+ needs topic ids (KIP-516) and the topic of {tp} has none"
            ),
        }
    }
}

impl std::error::Error for SessionError {}
