//! What Kafka's error codes mean for a client, by name (kafka-protocol's [`ResponseError`]),
//! so that no part keeps its own table of numbers.

use kcon_codec::kafka_protocol::ResponseError;

/// Whether a partition-level error code means the cached metadata is stale and should be
/// refreshed: the errors on which the Java consumer's fetcher and offset code call
/// `requestMetadataUpdate`.
pub fn is_stale_metadata_error(error_code: i16) -> bool {
    use ResponseError as E;
    matches!(
        ResponseError::try_from_code(error_code),
        Some(
            E::UnknownTopicOrPartition
                | E::LeaderNotAvailable
                | E::NotLeaderOrFollower
                | E::ReplicaNotAvailable
                | E::KafkaStorageError
                | E::FencedLeaderEpoch
                | E::OffsetNotAvailable
                | E::UnknownTopicId
                | E::InconsistentTopicId
        )
    )
}

/// Whether a group coordinator's error is one no retry can fix, so the member (or the commits
/// and lookups waiting on the coordinator) stops and the application is told: another instance
/// took this `group.instance.id` (FENCED_INSTANCE_ID, UNRELEASED_INSTANCE_ID), the group may not
/// be used (GROUP_AUTHORIZATION_FAILED), the member does not fit the group
/// (INCONSISTENT_GROUP_PROTOCOL, GROUP_MAX_SIZE_REACHED), or the broker refuses the
/// configuration (INVALID_SESSION_TIMEOUT, INVALID_GROUP_ID, UNSUPPORTED_VERSION). Any other
/// error from a coordinator is retried after a backoff, as the Java client's
/// `AbstractCoordinator` handlers retry what they do not name.
pub fn is_fatal_group_error(error_code: i16) -> bool {
    use ResponseError as E;
    matches!(
        ResponseError::try_from_code(error_code),
        Some(
            E::InconsistentGroupProtocol
                | E::InvalidGroupId
                | E::InvalidSessionTimeout
                | E::GroupAuthorizationFailed
                | E::UnsupportedVersion
                | E::GroupMaxSizeReached
                | E::FencedInstanceId
                | E::UnreleasedInstanceId
        )
    )
}

/// The codes kcon acts on, as constants to match on, each defined from its name.
pub mod code {
    use kcon_codec::kafka_protocol::ResponseError;

    /// No error.
    pub const NONE: i16 = 0;

    macro_rules! codes {
        ($($name:ident = $variant:ident,)*) => {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: i16 = ResponseError::$variant.code();
            )*
        };
    }

    codes! {
    UNKNOWN_SERVER_ERROR = UnknownServerError,
    OFFSET_OUT_OF_RANGE = OffsetOutOfRange,
    CORRUPT_MESSAGE = CorruptMessage,
    UNKNOWN_TOPIC_OR_PARTITION = UnknownTopicOrPartition,
    LEADER_NOT_AVAILABLE = LeaderNotAvailable,
    NOT_LEADER_OR_FOLLOWER = NotLeaderOrFollower,
    REQUEST_TIMED_OUT = RequestTimedOut,
    REPLICA_NOT_AVAILABLE = ReplicaNotAvailable,
    COORDINATOR_LOAD_IN_PROGRESS = CoordinatorLoadInProgress,
    COORDINATOR_NOT_AVAILABLE = CoordinatorNotAvailable,
    NOT_COORDINATOR = NotCoordinator,
    ILLEGAL_GENERATION = IllegalGeneration,
    INCONSISTENT_GROUP_PROTOCOL = InconsistentGroupProtocol,
    INVALID_GROUP_ID = InvalidGroupId,
    UNKNOWN_MEMBER_ID = UnknownMemberId,
    INVALID_SESSION_TIMEOUT = InvalidSessionTimeout,
    REBALANCE_IN_PROGRESS = RebalanceInProgress,
    TOPIC_AUTHORIZATION_FAILED = TopicAuthorizationFailed,
    GROUP_AUTHORIZATION_FAILED = GroupAuthorizationFailed,
    CLUSTER_AUTHORIZATION_FAILED = ClusterAuthorizationFailed,
    UNSUPPORTED_VERSION = UnsupportedVersion,
    INVALID_REQUEST = InvalidRequest,
    KAFKA_STORAGE_ERROR = KafkaStorageError,
    GROUP_ID_NOT_FOUND = GroupIdNotFound,
    FETCH_SESSION_ID_NOT_FOUND = FetchSessionIdNotFound,
    INVALID_FETCH_SESSION_EPOCH = InvalidFetchSessionEpoch,
    FENCED_LEADER_EPOCH = FencedLeaderEpoch,
    UNKNOWN_LEADER_EPOCH = UnknownLeaderEpoch,
    OFFSET_NOT_AVAILABLE = OffsetNotAvailable,
    MEMBER_ID_REQUIRED = MemberIdRequired,
    GROUP_MAX_SIZE_REACHED = GroupMaxSizeReached,
    FENCED_INSTANCE_ID = FencedInstanceId,
    UNSTABLE_OFFSET_COMMIT = UnstableOffsetCommit,
    UNKNOWN_TOPIC_ID = UnknownTopicId,
    FETCH_SESSION_TOPIC_ID_ERROR = FetchSessionTopicIdError,
    INCONSISTENT_TOPIC_ID = InconsistentTopicId,
    FENCED_MEMBER_EPOCH = FencedMemberEpoch,
    UNRELEASED_INSTANCE_ID = UnreleasedInstanceId,
    UNSUPPORTED_ASSIGNOR = UnsupportedAssignor,
    STALE_MEMBER_EPOCH = StaleMemberEpoch,
    INVALID_REGULAR_EXPRESSION = InvalidRegularExpression,
    REBOOTSTRAP_REQUIRED = RebootstrapRequired,
    UNSUPPORTED_COMPRESSION_TYPE = UnsupportedCompressionType,
    INVALID_RECORD = InvalidRecord,
    THROTTLING_QUOTA_EXCEEDED = ThrottlingQuotaExceeded,
    UNKNOWN_SUBSCRIPTION_ID = UnknownSubscriptionId,
    TELEMETRY_TOO_LARGE = TelemetryTooLarge,
    }
}

/// An error code as Kafka's protocol documentation names it, for every message, log line and
/// report kcon writes: `COORDINATOR_LOAD_IN_PROGRESS (14)`, or `error 123` for a code this build
/// does not know.
pub fn error_name(error_code: i16) -> String {
    let e = match ResponseError::try_from_code(error_code) {
        None | Some(ResponseError::Unknown(_)) => return format!("error {error_code}"),
        Some(e) => e,
    };
    // kafka-protocol's variants are the documented names in CamelCase.
    let camel = format!("{e:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    format!("{name} ({error_code})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_as_kafka_documents_them() {
        assert_eq!(error_name(30), "GROUP_AUTHORIZATION_FAILED (30)");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(error_name(14), "COORDINATOR_LOAD_IN_PROGRESS (14)");
        assert_eq!(error_name(-32000), "error -32000");
    }

    #[test]
    fn the_named_codes_are_the_numbers_brokers_send() {
        let named = [
            (code::UNKNOWN_SERVER_ERROR, -1),
            (code::OFFSET_OUT_OF_RANGE, 1),
            (code::NOT_COORDINATOR, 16),
            (code::REBALANCE_IN_PROGRESS, 27),
            (code::FENCED_LEADER_EPOCH, 74),
            (code::INVALID_REQUEST, 42),
            (code::FENCED_INSTANCE_ID, 82),
            (code::UNSTABLE_OFFSET_COMMIT, 88),
            (code::INCONSISTENT_TOPIC_ID, 103),
            (code::FENCED_MEMBER_EPOCH, 110),
            (code::STALE_MEMBER_EPOCH, 113),
            (code::UNKNOWN_SUBSCRIPTION_ID, 117),
        ];
        for (c, n) in named {
            assert_eq!(c, n);
        }
    }

    #[test]
    fn stale_codes() {
        for code in [3, 5, 6, 74, 100] {
            assert!(is_stale_metadata_error(code), "{code}");
        }
        for code in [0, 1, 15, 16, 27, 35] {
            assert!(!is_stale_metadata_error(code), "{code}");
        }
    }

    #[test]
    fn fatal_group_errors_are_the_ones_no_retry_fixes() {
        // The numbers the broker sends for them.
        for code in [23, 24, 26, 30, 35, 81, 82, 111] {
            assert!(is_fatal_group_error(code), "{code}");
        }
        // Coordinator moves, loads and rebalances, and membership errors, are retried.
        for code in [0, 7, 14, 15, 16, 22, 25, 27, 79] {
            assert!(!is_fatal_group_error(code), "{code}");
        }
    }
}
