//! What an answer means for a batch, and whether it may be tried again: pure functions of the
//! error code, the attempts so far and the clock, as the Java client's `Sender` decides them.

use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_core::error_codes::is_stale_metadata_error;
use std::time::Instant;

/// What a partition's error code in a Produce answer means for its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Written. `offset_known` is false when the broker said the batch was a duplicate of one
    /// it already has (idempotence): written earlier, its offset not repeated.
    Delivered {
        /// Whether the answer's base offset is the batch's.
        offset_known: bool,
    },
    /// Not written; send it again after the backoff, after refreshing the metadata first when
    /// the error says the leader moved or the partition is not known.
    Retry {
        /// Refresh the metadata before the retry.
        refresh_metadata: bool,
    },
    /// The broker does not know or no longer accepts the producer id or its sequence
    /// (idempotence): get a new producer id, then send the batch again under it (`retry`) or
    /// fail it.
    ResetProducerId {
        /// Whether the batch is sent again under the new id.
        retry: bool,
    },
    /// Failed for good: no retry can help.
    Fail,
}

/// The outcome of `code` for a batch sent by a producer that is `idempotent` or not.
///
/// - DUPLICATE_SEQUENCE_NUMBER: the broker has the batch already, so a retry of an idempotent
///   batch whose first answer was lost succeeded (the Java client's `Sender` completes it).
/// - UNKNOWN_PRODUCER_ID: the broker lost the producer's state (the log's start moved past
///   its last write); the batch was not written, so it is sent again under a new producer id,
///   as KIP-360 does.
/// - OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, PRODUCER_FENCED: the broker and
///   the producer disagree about what was written; the batch fails (a gap before it is
///   possible) and later batches go under a new producer id, as the Java client's idempotent
///   producer bumps its epoch. A transactional producer refines these (`machine.rs`):
///   PRODUCER_FENCED is fatal, INVALID_PRODUCER_EPOCH fails the transaction (KIP-588).
/// - The stale-metadata errors ([`is_stale_metadata_error`]): the leader moved or the
///   partition is not known yet; refresh, then retry.
/// - Any other error kafka-protocol marks retriable (NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT,
///   CORRUPT_MESSAGE, ...), as the Java client's `RetriableException`s: retry.
/// - Everything else (MESSAGE_TOO_LARGE, INVALID_RECORD, TOPIC_AUTHORIZATION_FAILED, ...):
///   fail.
pub(crate) fn outcome(code: i16, idempotent: bool) -> Outcome {
    use ResponseError as E;
    let Some(error) = ResponseError::try_from_code(code) else {
        return Outcome::Delivered { offset_known: true };
    };
    match error {
        E::DuplicateSequenceNumber if idempotent => Outcome::Delivered {
            offset_known: false,
        },
        E::UnknownProducerId if idempotent => Outcome::ResetProducerId { retry: true },
        E::OutOfOrderSequenceNumber | E::InvalidProducerEpoch | E::ProducerFenced if idempotent => {
            Outcome::ResetProducerId { retry: false }
        }
        _ if is_stale_metadata_error(code) => Outcome::Retry {
            refresh_metadata: true,
        },
        e if e.is_retriable() => Outcome::Retry {
            refresh_metadata: false,
        },
        _ => Outcome::Fail,
    }
}

/// Whether a batch that failed `retries_so_far` times before this failure may be sent again:
/// `retries` allows another, and after waiting `delay` it would still be before its
/// `deadline` (the end of `delivery.timeout.ms`).
pub(crate) fn may_retry(
    retries_so_far: u32,
    retries: u32,
    now: Instant,
    delay: Duration,
    deadline: Instant,
) -> bool {
    retries_so_far < retries && now + delay < deadline
}

/// Whether an InitProducerId error code can go away by asking again (the coordinator is
/// loading or moving, or another request for the id is in progress).
pub(crate) fn init_retriable(code: i16) -> bool {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(
            E::CoordinatorNotAvailable
            | E::NotCoordinator
            | E::CoordinatorLoadInProgress
            | E::ConcurrentTransactions,
        ) => true,
        Some(e) => e.is_retriable(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResponseError as E;

    #[test]
    fn codes_decide_the_batch() {
        assert_eq!(outcome(0, false), Outcome::Delivered { offset_known: true });
        for e in [
            E::NotLeaderOrFollower,
            E::UnknownTopicOrPartition,
            E::LeaderNotAvailable,
        ] {
            assert_eq!(
                outcome(e.code(), false),
                Outcome::Retry {
                    refresh_metadata: true
                },
                "{e:?}"
            );
        }
        for e in [
            E::NotEnoughReplicas,
            E::NotEnoughReplicasAfterAppend,
            E::RequestTimedOut,
            E::CorruptMessage,
        ] {
            assert_eq!(
                outcome(e.code(), false),
                Outcome::Retry {
                    refresh_metadata: false
                },
                "{e:?}"
            );
        }
        for e in [
            E::MessageTooLarge,
            E::InvalidRecord,
            E::TopicAuthorizationFailed,
            E::RecordListTooLarge,
            E::InvalidRequiredAcks,
        ] {
            assert_eq!(outcome(e.code(), false), Outcome::Fail, "{e:?}");
        }
    }

    #[test]
    fn sequence_errors_matter_only_to_an_idempotent_producer() {
        assert_eq!(
            outcome(E::DuplicateSequenceNumber.code(), true),
            Outcome::Delivered {
                offset_known: false
            }
        );
        assert_eq!(
            outcome(E::UnknownProducerId.code(), true),
            Outcome::ResetProducerId { retry: true }
        );
        for e in [
            E::OutOfOrderSequenceNumber,
            E::InvalidProducerEpoch,
            E::ProducerFenced,
        ] {
            assert_eq!(
                outcome(e.code(), true),
                Outcome::ResetProducerId { retry: false },
                "{e:?}"
            );
        }
        // A producer that sent no producer id cannot have caused them: the broker is wrong.
        assert_eq!(
            outcome(E::DuplicateSequenceNumber.code(), false),
            Outcome::Fail
        );
        assert_eq!(
            outcome(E::OutOfOrderSequenceNumber.code(), false),
            Outcome::Fail
        );
    }

    #[test]
    fn retries_stop_at_the_count_or_the_deadline() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let deadline = now + ms(1000);
        assert!(may_retry(0, 3, now, ms(100), deadline));
        assert!(may_retry(2, 3, now, ms(100), deadline));
        assert!(!may_retry(3, 3, now, ms(100), deadline));
        assert!(!may_retry(0, 0, now, ms(100), deadline));
        // The backoff would end at or past the deadline.
        assert!(!may_retry(0, 3, now, ms(1000), deadline));
        assert!(!may_retry(0, 3, now + ms(950), ms(100), deadline));
    }

    #[test]
    fn init_producer_id_waits_out_coordinator_moves() {
        assert!(init_retriable(E::CoordinatorLoadInProgress.code()));
        assert!(init_retriable(E::NotCoordinator.code()));
        assert!(init_retriable(E::ConcurrentTransactions.code()));
        assert!(!init_retriable(E::ClusterAuthorizationFailed.code()));
        assert!(!init_retriable(E::UnsupportedVersion.code()));
    }
}
