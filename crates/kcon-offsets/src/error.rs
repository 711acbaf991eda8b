//! Why a commit or an offset fetch failed.

use std::collections::BTreeMap;
use std::fmt;

use kcon_codec::error::api_name;
use kcon_core::error_codes::error_name;

use crate::TopicPartition;
use crate::machine::CommitId;

/// Why a commit failed. Coordinator errors (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
/// COORDINATOR_LOAD_IN_PROGRESS), lost connections and timeouts are retried by the machine
/// until `default.api.timeout.ms` and never show up here on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitError {
    /// REBALANCE_IN_PROGRESS: the group is rebalancing. The offsets stay stored, so the next
    /// commit (after the member rejoined, e.g. on revocation) sends them again; the Java
    /// client raises `RebalanceInProgressException` for the same reason.
    RebalanceInProgress,
    /// The coordinator refused the commit: ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID (the
    /// member's generation is over and its partitions may be lost; the Java client's
    /// `CommitFailedException`), FENCED_INSTANCE_ID, OFFSET_METADATA_TOO_LARGE,
    /// INVALID_COMMIT_OFFSET_SIZE, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED, ...
    Broker {
        /// The error that decided the outcome (the first refusing partition's, in order).
        error_code: i16,
        /// Every partition's error code that was not 0.
        partitions: BTreeMap<TopicPartition, i16>,
    },
    /// The commit kept failing with retriable errors until `default.api.timeout.ms`.
    TimedOut {
        /// The last retriable error.
        last: String,
    },
    /// The request could not be sent in a form the coordinator accepts, or the coordinator
    /// could not be found for good (GROUP_AUTHORIZATION_FAILED on FindCoordinator).
    Request(String),
    /// An async commit whose offsets went with a later commit (`by`), which completes for
    /// both: a later commit supersedes an earlier one that was not sent yet.
    Superseded {
        /// The commit that carries these offsets.
        by: CommitId,
    },
    /// Every partition of a commit not yet sent was revoked or lost meanwhile: another member
    /// commits them now, so nothing was sent (the Java client fails such a commit too).
    PartitionsGone {
        /// The partitions it was for.
        partitions: Vec<TopicPartition>,
    },
    /// The OffsetCommit was answered with another API's answer: the glue fed the wrong answer
    /// back, or the connection mixed answers up. Not retried: nothing says the offsets went.
    UnexpectedAnswer {
        /// What came instead, for the log.
        answer: String,
    },
}

impl CommitError {
    /// Whether the member's generation is over (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
    /// FENCED_INSTANCE_ID, and the consumer protocol's FENCED_MEMBER_EPOCH): its partitions
    /// may already belong to another member.
    pub fn is_generation_lost(&self) -> bool {
        matches!(
            self,
            CommitError::Broker {
                error_code: 22 | 25 | 82 | 110,
                ..
            }
        )
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::RebalanceInProgress => f.write_str(
                "the group is rebalancing (REBALANCE_IN_PROGRESS); the offsets stay stored for the next commit",
            ),
            CommitError::Broker {
                error_code,
                partitions,
            } => write!(
                f,
                "{} answered {} for {} partition(s)",
                api_name(8),
                error_name(*error_code),
                partitions.len()
            ),
            CommitError::TimedOut { last } => {
                write!(f, "the commit timed out (default.api.timeout.ms); last error: {last}")
            }
            CommitError::Request(e) => f.write_str(e),
            CommitError::Superseded { by } => {
                write!(f, "superseded by commit {}, which carries its offsets", by.0)
            }
            CommitError::PartitionsGone { partitions } => write!(
                f,
                "not sent: its {} partition(s) were revoked or lost before it could go",
                partitions.len()
            ),
            CommitError::UnexpectedAnswer { answer } => {
                write!(f, "OffsetCommit got an unexpected answer: {answer}")
            }
        }
    }
}

impl std::error::Error for CommitError {}

/// Why fetching committed offsets failed. UNSTABLE_OFFSET_COMMIT (KIP-447), coordinator errors
/// and lost connections are retried until `default.api.timeout.ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommittedError {
    /// The coordinator refused: GROUP_AUTHORIZATION_FAILED, GROUP_ID_NOT_FOUND, or per
    /// partition (TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_OR_PARTITION, ...).
    Broker {
        /// The group's error code, else the first partition's.
        error_code: i16,
        /// Every partition's error code that was not 0.
        partitions: BTreeMap<TopicPartition, i16>,
    },
    /// Retriable errors until `default.api.timeout.ms`.
    TimedOut {
        /// The last retriable error.
        last: String,
    },
    /// The request could not be sent in a form the coordinator accepts.
    Request(String),
    /// The OffsetFetch was answered with another API's answer (see
    /// [`CommitError::UnexpectedAnswer`]).
    UnexpectedAnswer {
        /// What came instead, for the log.
        answer: String,
    },
}

impl fmt::Display for CommittedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommittedError::Broker {
                error_code,
                partitions,
            } => write!(
                f,
                "{} answered {} ({} partition error(s))",
                api_name(9),
                error_name(*error_code),
                partitions.len()
            ),
            CommittedError::TimedOut { last } => write!(
                f,
                "fetching committed offsets timed out (default.api.timeout.ms); last error: {last}"
            ),
            CommittedError::Request(e) => f.write_str(e),
            CommittedError::UnexpectedAnswer { answer } => {
                write!(f, "OffsetFetch got an unexpected answer: {answer}")
            }
        }
    }
}

impl std::error::Error for CommittedError {}
