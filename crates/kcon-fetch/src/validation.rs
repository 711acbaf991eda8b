//! Truncation detection (KIP-320): after a leader change, ask the new leader with
//! OffsetForLeaderEpoch where the epoch of our last consumed record ends in its log. If it ends
//! before our position, the log was truncated under us (an unclean election, or records the old
//! leader never replicated) and the position moves back to the first divergent offset.
//!
//! Driving it:
//! 1. [`plan_validation`] picks the partitions awaiting validation, groups them per leader into
//!    version-free [`ValidationRequest`]s, and completes at once those whose leader does not
//!    offer OffsetForLeaderEpoch (Tansu: validation is skipped, as the Java client skips it for
//!    brokers below the version it needs);
//! 2. [`offset_for_leader_epoch_request`] turns a request into kafka-protocol's type (v2–v4);
//! 3. [`epoch_answers`] reads the response, and
//!    [`PartitionState::on_validation_answer`] applies each partition's answer; a request that
//!    failed in transport is [`PartitionState::validation_failed`] for each of its partitions.
//!
//! Matches the Java client's `OffsetFetcher.validatePositionsAsync`,
//! `OffsetsForLeaderEpochUtils` and `SubscriptionState.maybeCompleteValidation` (behaviour, not
//! code), with one deliberate difference noted on [`classify`], for positions whose epoch is a
//! record's the consumer read.

use std::collections::BTreeMap;
use std::time::Instant;

use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kcon_codec::kafka_protocol::messages::offset_for_leader_epoch_response::OffsetForLeaderEpochResponse;
use kcon_codec::kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::versions::BrokerVersions;
use kcon_core::ResetPolicy;
use kcon_core::TopicPartition;

use crate::position::{
    AnswerContext, DivergingEpoch, FetchAction, FetchPosition, FetchStatus, PartitionError,
    PartitionState, ResetReason, codes,
};
use kcon_core::wire::VersionError;

/// The epoch or end offset a leader answers when it has no epoch at or below the one asked
/// about (KIP-320 `UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED: i64 = -1;

/// One partition's question to its leader: does `position` still lie on your log?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuery {
    /// The partition.
    pub partition: TopicPartition,
    /// The position as it was when the request was built; the answer applies only if the
    /// position is still this one (Java compares `requestPosition`).
    pub position: FetchPosition,
}

/// An OffsetForLeaderEpoch request to one leader, independent of the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRequest {
    /// The leader asked.
    pub broker: i32,
    /// The partitions it leads that await validation.
    pub queries: Vec<EpochQuery>,
}

/// What [`plan_validation`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationPlan {
    /// One request per leader, ordered by broker id.
    pub requests: Vec<ValidationRequest>,
    /// Partitions whose leader does not offer OffsetForLeaderEpoch: taken as valid.
    pub skipped: Vec<TopicPartition>,
}

/// One partition's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochAnswer {
    /// The partition's error code.
    pub error_code: i16,
    /// The largest epoch at or below the one asked about, or -1.
    pub leader_epoch: i32,
    /// Where that epoch ends in the leader's log (the start of the next epoch, or the log end
    /// offset for the latest epoch), or -1.
    pub end_offset: i64,
}

/// What an answer says about a position, before the reset policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// The leader's log holds our position.
    Valid,
    /// The log diverges from ours at `offset` (in `epoch`, the leader's): fetch from there.
    Diverged {
        /// The first offset known to diverge.
        offset: i64,
        /// The leader's epoch ending there.
        epoch: i32,
    },
    /// The leader cannot say where the logs part (no epoch at or below ours, or it lacks our
    /// epoch and its floor epoch ends past our position): reset per policy.
    Unknown,
    /// A retriable error; `refresh_metadata` when the leader may have moved.
    Retry {
        /// Whether metadata must be refreshed first.
        refresh_metadata: bool,
    },
    /// The broker will not answer a consumer (CLUSTER_AUTHORIZATION_FAILED at v2): skip
    /// validation, as for a broker without the API.
    Skip,
    /// A non-retriable error for the application.
    Failed(PartitionError),
}

/// Whether a broker offering `versions` can validate positions: OffsetForLeaderEpoch at a
/// version kcon speaks (v2–v4). The Java client needs v3 (the first with `replica_id`, which
/// lets Apache Kafka brokers before 2.3 accept the request from a consumer); kcon also sends v2,
/// which librdkafka's mock cluster offers alone, and treats a v2 refusal
/// (CLUSTER_AUTHORIZATION_FAILED) as "skip validation".
pub fn can_validate(versions: &BrokerVersions) -> bool {
    versions.version(ApiKey::OffsetForLeaderEpoch).is_ok()
}

/// Picks the partitions awaiting validation at `now` and groups them by the leader their
/// position was moved to. A partition whose leader cannot validate (`can_validate(broker)` is
/// false) completes validation at once and is listed in [`ValidationPlan::skipped`].
pub fn plan_validation<'a>(
    partitions: impl IntoIterator<Item = (&'a TopicPartition, &'a mut PartitionState)>,
    now: Instant,
    can_validate: impl Fn(i32) -> bool,
) -> ValidationPlan {
    let mut per_broker: BTreeMap<i32, Vec<EpochQuery>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (tp, state) in partitions {
        if !state.needs_validation(now) {
            continue;
        }
        // Invariant of AwaitingValidation: a position with both epochs (Java
        // `validatePosition`); without a leader there is nobody to ask yet.
        let Some(position) = state.position() else {
            continue;
        };
        let Some(broker) = position.current_leader.leader else {
            continue;
        };
        if !can_validate(broker) {
            state.complete_validation();
            skipped.push(tp.clone());
            continue;
        }
        per_broker.entry(broker).or_default().push(EpochQuery {
            partition: tp.clone(),
            position,
        });
    }
    ValidationPlan {
        requests: per_broker
            .into_iter()
            .map(|(broker, queries)| ValidationRequest { broker, queries })
            .collect(),
        skipped,
    }
}

/// `request` as kafka-protocol's OffsetForLeaderEpochRequest at `version` (2–4), sent as a
/// consumer (`replica_id` -1 from v3; v2 has no such field).
pub fn offset_for_leader_epoch_request(
    request: &ValidationRequest,
    version: i16,
) -> Result<OffsetForLeaderEpochRequest, VersionError> {
    if !(2..=4).contains(&version) {
        return Err(VersionError(format!(
            "OffsetForLeaderEpoch v{version}: kcon validates positions with v2-v4"
        )));
    }
    let mut topics: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    for q in &request.queries {
        // -1 asks without fencing / about no epoch: never built by `plan_validation`, whose
        // partitions have both epochs, but a hand-made request must still encode.
        let p = OffsetForLeaderPartition::default()
            .with_partition(q.partition.partition)
            .with_current_leader_epoch(q.position.current_leader.epoch.unwrap_or(-1))
            .with_leader_epoch(q.position.offset_epoch.unwrap_or(-1));
        topics.entry(&q.partition.topic).or_default().push(p);
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partitions(partitions)
        })
        .collect();
    Ok(OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics))
}

/// Each partition's answer in `response`.
pub fn epoch_answers(
    response: &OffsetForLeaderEpochResponse,
) -> BTreeMap<TopicPartition, EpochAnswer> {
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            out.insert(
                TopicPartition::new(t.topic.0.to_string(), p.partition),
                EpochAnswer {
                    error_code: p.error_code,
                    leader_epoch: p.leader_epoch,
                    end_offset: p.end_offset,
                },
            );
        }
    }
    out
}

/// What `answer` says about `position` (KIP-320; Java `maybeCompleteValidation`).
///
/// The leader answers with the largest epoch `E'` at or below ours (`E`) and where it ends.
/// - `E' = E` and end ≥ position: our records are on its log (same epoch, same offsets, same
///   records: the invariant leader epochs give).
/// - end < position: the logs part at `end` (exactly, when `E' = E`).
/// - `E' < E` and end ≥ position: the leader never had our epoch. When `E` is a record's we
///   read ([`FetchPosition::epoch_read`]), that record is not on its log, but the divergence
///   point is unknown: kcon, as librdkafka, takes it as a truncation and resets per policy
///   (the Java client takes it as valid: the deliberate difference). With clean elections it
///   cannot happen: a committed record's epoch is on every replica. When `E` came from
///   ListOffsets, a commit or a leader's answer it may be an epoch no record was written in
///   (a leader's epoch begins when it is elected; ListOffsets `latest` answers it at once, and
///   a leader elected after it never had it): nothing we read is missing, and the position is
///   valid, as in the Java client and franz-go. Taken for a truncation, a clean leader change
///   reset such a position by the policy, past what was written meanwhile.
/// - UNDEFINED epoch or offset: no epoch at or below ours is left; reset per policy.
pub fn classify(position: &FetchPosition, answer: &EpochAnswer) -> Validation {
    match answer.error_code {
        codes::NONE => {}
        codes::NOT_LEADER_OR_FOLLOWER
        | codes::FENCED_LEADER_EPOCH
        | codes::UNKNOWN_LEADER_EPOCH
        | codes::LEADER_NOT_AVAILABLE
        | codes::REPLICA_NOT_AVAILABLE
        | codes::KAFKA_STORAGE_ERROR
        | codes::OFFSET_NOT_AVAILABLE
        | codes::UNKNOWN_TOPIC_OR_PARTITION
        | codes::UNKNOWN_TOPIC_ID => {
            // Java `OffsetsForLeaderEpochUtils`: retry these, and refresh metadata.
            return Validation::Retry {
                refresh_metadata: true,
            };
        }
        codes::UNKNOWN_SERVER_ERROR => {
            return Validation::Retry {
                refresh_metadata: false,
            };
        }
        codes::CLUSTER_AUTHORIZATION_FAILED => return Validation::Skip,
        codes::TOPIC_AUTHORIZATION_FAILED => {
            return Validation::Failed(PartitionError::TopicAuthorization);
        }
        code => return Validation::Failed(PartitionError::Broker { code }),
    }
    if answer.end_offset == UNDEFINED || i64::from(answer.leader_epoch) == UNDEFINED {
        return Validation::Unknown;
    }
    if answer.end_offset < position.offset {
        return Validation::Diverged {
            offset: answer.end_offset,
            epoch: answer.leader_epoch,
        };
    }
    match position.offset_epoch {
        Some(ours) if answer.leader_epoch < ours && position.epoch_read => Validation::Unknown,
        _ => Validation::Valid,
    }
}

impl PartitionState {
    /// Applies `answer`, the leader's answer about `sent` (the position the request carried).
    /// Ignored when the partition no longer awaits validation or its position moved since (a
    /// seek, a reset: Java "skipping completed validation").
    ///
    /// On divergence under a reset policy the position moves to the first divergent offset (as
    /// Java's `seekValidated` there) and the application is told; under `none` the position
    /// stays, the application gets the error and must seek (Java `LogTruncationException`).
    pub fn on_validation_answer(
        mut self,
        sent: &FetchPosition,
        answer: &EpochAnswer,
        ctx: &AnswerContext,
    ) -> (PartitionState, Vec<FetchAction>) {
        let mut actions = Vec::new();
        if self.status() != FetchStatus::AwaitingValidation || self.position() != Some(*sent) {
            return (self, actions);
        }
        match classify(sent, answer) {
            Validation::Valid => {
                if sent
                    .offset_epoch
                    .is_some_and(|ours| answer.leader_epoch < ours)
                {
                    self.take_leaders_epoch(answer.leader_epoch);
                }
                self.complete_validation();
            }
            Validation::Skip => self.complete_validation(),
            Validation::Diverged { offset, epoch } => {
                if !self.truncated(sent, Some((offset, epoch)), ctx, &mut actions) {
                    // Asked again after the backoff, and reported again, until the
                    // application seeks: the same as Java, without a tight loop.
                    self.validation_failed(ctx.now, &ctx.retry_backoff);
                }
            }
            Validation::Unknown => {
                if !self.truncated(sent, None, ctx, &mut actions) {
                    self.validation_failed(ctx.now, &ctx.retry_backoff);
                }
            }
            Validation::Retry { refresh_metadata } => {
                if refresh_metadata {
                    actions.push(FetchAction::RefreshMetadata);
                }
                self.validation_failed(ctx.now, &ctx.retry_backoff);
            }
            Validation::Failed(e) => {
                actions.push(FetchAction::Report(e));
                self.validation_failed(ctx.now, &ctx.retry_backoff);
            }
        }
        (self, actions)
    }

    /// A Fetch answer from the leader for `sent` (the partition's position, fetching) carried
    /// a diverging epoch instead of records (KIP-320): the leader checked the request's last
    /// fetched epoch itself and says what an OffsetForLeaderEpoch answer would, so it is read
    /// the same way ([`classify`]), and a truncation found is handled as validation handles it.
    /// Without this the partition would fetch the same offset again at once, and get the same
    /// answer, forever. An answer that diverges from nothing by its own numbers is fetched
    /// again after the backoff.
    pub(crate) fn on_diverging_epoch(
        &mut self,
        sent: &FetchPosition,
        diverging: DivergingEpoch,
        ctx: &AnswerContext,
        actions: &mut Vec<FetchAction>,
    ) {
        let answer = EpochAnswer {
            error_code: codes::NONE,
            leader_epoch: diverging.epoch,
            end_offset: diverging.end_offset,
        };
        let moved = match classify(sent, &answer) {
            Validation::Diverged { offset, epoch } => {
                self.truncated(sent, Some((offset, epoch)), ctx, actions)
            }
            Validation::Unknown => self.truncated(sent, None, ctx, actions),
            // The leader lacks an epoch no record we read was in: the position is on its
            // log, and the next Fetch asks with the leader's epoch, which it has.
            Validation::Valid if sent.offset_epoch.is_some_and(|ours| diverging.epoch < ours) => {
                self.take_leaders_epoch(diverging.epoch);
                true
            }
            _ => false,
        };
        if !moved {
            // Fetched again after the backoff: under `none` the same error is reported again
            // until the application seeks, as OFFSET_OUT_OF_RANGE is.
            self.back_off(ctx.now, &ctx.retry_backoff);
        }
    }

    /// The log was truncated under `sent`; the logs part at `divergent` (offset, the leader's
    /// epoch ending there), or the leader cannot say where (`None`). Under a reset policy the
    /// partition moves to the divergence (Java `seekValidated`), or awaits a reset by the
    /// policy when it is unknown, and the application is told; under `none` nothing moves and
    /// the application gets the error (Java `LogTruncationException`). Returns whether the
    /// partition moved.
    fn truncated(
        &mut self,
        sent: &FetchPosition,
        divergent: Option<(i64, i32)>,
        ctx: &AnswerContext,
        actions: &mut Vec<FetchAction>,
    ) -> bool {
        let repositioned = ctx.reset_policy != ResetPolicy::None;
        if repositioned {
            match divergent {
                Some((offset, epoch)) => self.set_validated(FetchPosition {
                    offset,
                    offset_epoch: Some(epoch),
                    epoch_read: false,
                    current_leader: sent.current_leader,
                }),
                None => {
                    self.request_reset(ResetReason::UnknownTruncation {
                        offset: sent.offset,
                    });
                    actions.push(FetchAction::Reset(ctx.reset_policy));
                }
            }
        }
        actions.push(FetchAction::Report(PartitionError::LogTruncation {
            offset: sent.offset,
            divergent,
            repositioned,
        }));
        repositioned
    }
}

#[cfg(test)]
mod tests;
