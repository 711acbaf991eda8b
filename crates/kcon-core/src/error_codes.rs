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
}
