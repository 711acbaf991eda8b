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

#[cfg(test)]
mod tests {
    use super::*;

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
