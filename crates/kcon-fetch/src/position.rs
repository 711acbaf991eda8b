//! The fetch state of one assigned partition, as the fetcher keeps it: where it reads next, who
//! it reads from, and what a Fetch answer for it changes. Pure: no IO, no clock (`now` is an
//! argument).
//!
//! This is the Java client's `SubscriptionState.TopicPartitionState` and `FetchPosition`, plus
//! the per-partition error handling of its `FetchCollector` (behaviour, not code):
//!
//! ```text
//!                 seek_unvalidated (epochs known)        complete_validation / truncation
//! Initializing ─► AwaitingValidation ───────────────────────────────────► Fetching
//!      │  ▲            ▲  leader or epoch changed (KIP-320),                 │  │
//!      │  │            └── update_leader with validation possible ─────────┘  │
//!      │  │ request_reset                                                       │
//!      └──┴─► AwaitingReset(reason) ◄── OFFSET_OUT_OF_RANGE (policy ≠ none) ────┘
//!                   │ complete_reset (ListOffsets answer)
//!                   └─► AwaitingValidation or Fetching
//! ```
//!
//! A Fetch answer from the leader with a diverging epoch (KIP-320) is a validation answer that
//! came with the Fetch: a fetching partition moves back to where the logs part and goes on
//! fetching, or awaits a reset when the leader cannot place the divergence (policy ≠ none).
//!
//! Feeding it: [`PartitionState::update_leader`] after every metadata snapshot,
//! [`PartitionState::on_fetch_answer`] for each partition of each Fetch answer,
//! [`PartitionState::advance`] as an answer's records are accepted (the next Fetch starts past
//! them, though the application may not have them yet); read
//! [`PartitionState::fetch_target`] when planning the next Fetch.

use std::fmt;
use std::time::{Duration, Instant};

use kcon_core::{ExponentialBackoff, ResetPolicy};

pub(crate) use kcon_core::error_codes::code as codes;

/// A partition's leader as the metadata names it (Java `Metadata.LeaderAndEpoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderAndEpoch {
    /// The leader's broker id; `None` while the partition has no leader.
    pub leader: Option<i32>,
    /// The leader epoch (Metadata v7+); `None` when the broker does not send it.
    pub epoch: Option<i32>,
}

impl LeaderAndEpoch {
    /// A known leader at a known epoch.
    pub fn new(leader: i32, epoch: i32) -> Self {
        LeaderAndEpoch {
            leader: Some(leader),
            epoch: Some(epoch),
        }
    }
}

/// Where a partition reads next (Java `SubscriptionState.FetchPosition`).
///
/// A partition's position is where its next Fetch starts: one past the last record accepted
/// from a Fetch answer, whether or not the application has taken that record yet. The fetch
/// loop keeps what the application has not been given apart (records held for a pause) and
/// says where the application stands itself
/// ([`FetchMachine::delivered_position`](crate::FetchMachine::delivered_position)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    /// The next offset to fetch (one past the last record accepted).
    pub offset: i64,
    /// The leader epoch of the last record accepted (or of the committed offset): what
    /// OffsetForLeaderEpoch is asked about after a leader change (KIP-320). `None` when
    /// unknown (old brokers, old commits): such a position cannot be validated.
    pub offset_epoch: Option<i32>,
    /// Whether `offset_epoch` is that of a record this consumer read, rather than one a
    /// ListOffsets answer, a commit or a leader's answer gave: those may name an epoch no
    /// record was written in (a leader's epoch begins when it is elected, and ListOffsets
    /// `latest` answers it at once), which another replica never had without anything being
    /// truncated ([`classify`](crate::validation::classify)).
    pub epoch_read: bool,
    /// The leader this position was last checked against.
    pub current_leader: LeaderAndEpoch,
}

/// Why a partition waits for a reset (a ListOffsets lookup under `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// No committed offset, or the application asked for one.
    NoPosition,
    /// The broker answered OFFSET_OUT_OF_RANGE for this fetch offset.
    OffsetOutOfRange {
        /// The offset that was out of range.
        offset: i64,
    },
    /// Validation found no epoch at or below ours on the leader (UNDEFINED_EPOCH or
    /// UNDEFINED_EPOCH_OFFSET, KIP-320): the divergence point is unknown.
    UnknownTruncation {
        /// The position that could not be validated.
        offset: i64,
    },
}

/// What a partition is doing (Java `SubscriptionState.FetchStates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    /// Assigned, no position yet (the committed offset is being fetched).
    Initializing,
    /// Has a valid position: fetched when not paused and not backing off.
    Fetching,
    /// The position must be checked with OffsetForLeaderEpoch before fetching (KIP-320).
    AwaitingValidation,
    /// The position must be looked up under the reset policy.
    AwaitingReset(ResetReason),
}

/// A follower the leader told us to read from (KIP-392), until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReplica {
    /// The follower's broker id.
    pub broker: i32,
    /// When the lease ends and fetching goes back to the leader (Java: now +
    /// `metadata.max.age.ms` when the replica was first named).
    pub expires_at: Instant,
}

/// The fetch state of one assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    status: FetchStatus,
    position: Option<FetchPosition>,
    leader: LeaderAndEpoch,
    paused: bool,
    read_replica: Option<ReadReplica>,
    retry_at: Option<Instant>,
    /// Errors in a row since the partition last fetched cleanly or moved: the exponent of its
    /// backoff.
    failures: u32,
}

/// The part of one partition's Fetch answer the state machine acts on; the records themselves
/// stay with the fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAnswer {
    /// The broker that answered (the leader or a preferred read replica).
    pub broker: i32,
    /// The fetch offset the request carried for this partition.
    pub fetch_offset: i64,
    /// The partition's error code.
    pub error_code: i16,
    /// The response's preferred read replica (Fetch v11+, KIP-392); `None` for -1.
    pub preferred_read_replica: Option<i32>,
    /// The response's current leader (Fetch v16+, KIP-951) on NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH; `None` when absent.
    pub leader_hint: Option<LeaderAndEpoch>,
    /// The base offset of a batch that failed to decode (CRC, lengths, decompression): the
    /// records before it are good, nothing at or after it is.
    pub corrupt_at: Option<i64>,
    /// The response's diverging epoch (Fetch v12+, KIP-320), present when its epoch is not
    /// negative (Java `FetchResponse.isDivergingEpoch`): the log the broker reads from does not
    /// hold the last fetched epoch the request carried up to its fetch offset. It comes with no
    /// records.
    pub diverging: Option<DivergingEpoch>,
}

/// A Fetch answer's `DivergingEpoch` (KIP-320): the largest epoch of the broker's log at or
/// below the request's last fetched epoch, and where it ends there (Kafka's
/// `Partition.readRecords` answers it when that epoch is below the one asked about or ends
/// before the fetch offset), as an OffsetForLeaderEpoch answer would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivergingEpoch {
    /// The epoch.
    pub epoch: i32,
    /// Where it ends in the broker's log.
    pub end_offset: i64,
}

impl PartitionAnswer {
    /// A clean answer from `broker` for `fetch_offset`, no replica, no hint, nothing corrupt.
    pub fn ok(broker: i32, fetch_offset: i64) -> Self {
        PartitionAnswer {
            broker,
            fetch_offset,
            error_code: codes::NONE,
            preferred_read_replica: None,
            leader_hint: None,
            corrupt_at: None,
            diverging: None,
        }
    }

    /// An answer from `broker` for `fetch_offset` with `error_code`.
    pub fn error(broker: i32, fetch_offset: i64, error_code: i16) -> Self {
        PartitionAnswer {
            error_code,
            ..PartitionAnswer::ok(broker, fetch_offset)
        }
    }
}

/// The wait before something that failed is tried again: KIP-580's exponential backoff
/// (`retry.backoff.ms` doubling per failure in a row, up to `retry.backoff.max.ms`), jittered
/// by a random number the machine draws, so that the machine stays a function of its inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// `retry.backoff.ms` and `retry.backoff.max.ms`.
    pub policy: ExponentialBackoff,
    /// A number in `[0, 1)` that picks the jitter.
    pub random: f64,
}

impl Backoff {
    /// Always `wait`, without jitter (`retry.backoff.max.ms` not above `retry.backoff.ms`).
    pub fn constant(wait: Duration) -> Self {
        Backoff {
            policy: ExponentialBackoff::new(wait, wait),
            random: 0.0,
        }
    }

    /// When to try again after one more failure, `failures` being the failures in a row
    /// before this one; counts this one.
    pub fn retry_at(&self, now: Instant, failures: &mut u32) -> Instant {
        let wait = self.policy.delay(*failures, self.random);
        *failures = failures.saturating_add(1);
        now + wait
    }
}

/// The settings a transition needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerContext {
    /// The time the answer arrived.
    pub now: Instant,
    /// `auto.offset.reset`.
    pub reset_policy: ResetPolicy,
    /// How long a partition waits before it is fetched again after an error.
    pub retry_backoff: Backoff,
    /// How long a preferred read replica is used (`metadata.max.age.ms`, as the Java client).
    pub replica_lease: Duration,
}

/// What the driver must do after a transition, besides keeping the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAction {
    /// Hand the answer's records to the application's buffer.
    Deliver,
    /// Drop the answer's records: the position moved since the request (a seek, a reset) or
    /// the partition is no longer fetching (Java: "discarding stale fetch response").
    Discard,
    /// Ask for fresh metadata (the leader moved, or the topic changed).
    RefreshMetadata,
    /// Look up a new position with ListOffsets under this policy; the partition is
    /// [`FetchStatus::AwaitingReset`] until [`PartitionState::complete_reset`].
    Reset(ResetPolicy),
    /// Tell the application.
    Report(PartitionError),
}

/// An error for one partition, reported to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionError {
    /// OFFSET_OUT_OF_RANGE under `auto.offset.reset=none` (Java `OffsetOutOfRangeException`):
    /// the application must seek.
    OffsetOutOfRange {
        /// The offset that was out of range.
        offset: i64,
    },
    /// The batch at `offset`, or the record at `offset` of a compressed batch (read only as it
    /// is handed out), is corrupt: our decoder's finding, or CORRUPT_MESSAGE from the broker.
    /// The position does not move past it: nothing is skipped silently; the application may
    /// seek past it.
    Corrupt {
        /// The first offset not delivered.
        offset: i64,
    },
    /// The log was truncated under the position (KIP-320, Java `LogTruncationException`).
    LogTruncation {
        /// The position that was checked.
        offset: i64,
        /// The first offset known to diverge, with its epoch; `None` when the leader could not
        /// say (then, under a reset policy, the partition is reset).
        divergent: Option<(i64, i32)>,
        /// Whether kcon moved the position itself (a reset policy is set); under `none` the
        /// application must seek.
        repositioned: bool,
    },
    /// TOPIC_AUTHORIZATION_FAILED: not retriable until the ACLs change.
    TopicAuthorization,
    /// Another error code from the broker; fetching is retried after the backoff.
    Broker {
        /// The error code.
        code: i16,
    },
}

impl PartitionError {
    /// Whether fetching again without an application action can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, PartitionError::Broker { .. })
    }
}

impl fmt::Display for PartitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionError::OffsetOutOfRange { offset } => write!(
                f,
                "fetch offset {offset} is out of range and auto.offset.reset=none"
            ),
            PartitionError::Corrupt { offset } => {
                write!(f, "corrupt record batch at offset {offset}")
            }
            PartitionError::LogTruncation {
                offset,
                divergent,
                repositioned,
            } => {
                write!(f, "log truncation detected at position {offset}")?;
                match divergent {
                    Some((o, e)) => write!(f, ", first divergent offset {o} (epoch {e})")?,
                    None => f.write_str(", divergence point unknown")?,
                }
                if *repositioned {
                    f.write_str("; position moved")
                } else {
                    f.write_str("; auto.offset.reset=none, the application must seek")
                }
            }
            PartitionError::TopicAuthorization => f.write_str("not authorized to read the topic"),
            PartitionError::Broker { code } => write!(f, "broker error code {code}"),
        }
    }
}

impl std::error::Error for PartitionError {}

impl PartitionState {
    /// A newly assigned partition led by `leader`: no position yet.
    pub fn new(leader: LeaderAndEpoch) -> Self {
        PartitionState {
            status: FetchStatus::Initializing,
            position: None,
            leader,
            paused: false,
            read_replica: None,
            retry_at: None,
            failures: 0,
        }
    }

    /// What the partition is doing.
    pub fn status(&self) -> FetchStatus {
        self.status
    }

    /// The position, once known.
    pub fn position(&self) -> Option<FetchPosition> {
        self.position
    }

    /// The leader the metadata last named.
    pub fn leader(&self) -> LeaderAndEpoch {
        self.leader
    }

    /// Whether the application paused the partition.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The preferred read replica in use, if any (it may have expired: see
    /// [`fetch_target`](Self::fetch_target)).
    pub fn read_replica(&self) -> Option<ReadReplica> {
        self.read_replica
    }

    /// When a backing-off partition may be fetched (or validated) again.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Pauses fetching (the fetcher also takes the partition out of its fetch session).
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Resumes fetching.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Moves to `offset` as the application or a committed offset says, validating first when
    /// both epochs are known (Java `SubscriptionState.seekUnvalidated`): a committed offset
    /// may come from before a truncation.
    pub fn seek_unvalidated(&mut self, offset: i64, offset_epoch: Option<i32>) {
        let position = FetchPosition {
            offset,
            offset_epoch,
            epoch_read: false,
            current_leader: self.leader,
        };
        self.validate_position(position);
    }

    /// Moves to a position known to be on the leader's log (Java `seekValidated`): fetching
    /// starts at once.
    pub fn seek_validated(&mut self, offset: i64, offset_epoch: Option<i32>) {
        self.position = Some(FetchPosition {
            offset,
            offset_epoch,
            epoch_read: false,
            current_leader: self.leader,
        });
        self.status = FetchStatus::Fetching;
        self.clear_backoff();
    }

    /// Asks for a reset under the policy (no committed offset, or the application's
    /// `seek_to_beginning`/`seek_to_end`).
    pub fn request_reset(&mut self, reason: ResetReason) {
        self.status = FetchStatus::AwaitingReset(reason);
        self.clear_backoff();
    }

    /// The ListOffsets answer of a reset: `offset` with the leader epoch ListOffsets gave.
    /// Ignored unless a reset is awaited (a seek got there first, as Java's
    /// `maybeSeekUnvalidated`); a position with an epoch is validated like a seek.
    pub fn complete_reset(&mut self, offset: i64, leader_epoch: Option<i32>) -> bool {
        if !matches!(self.status, FetchStatus::AwaitingReset(_)) {
            return false;
        }
        self.seek_unvalidated(offset, leader_epoch);
        true
    }

    /// A failed reset lookup: try again after `backoff` (Java `requestFailed`).
    pub fn reset_failed(&mut self, now: Instant, backoff: &Backoff) {
        if matches!(self.status, FetchStatus::AwaitingReset(_)) {
            self.back_off(now, backoff);
        }
    }

    /// A failed reset lookup, whose owner keeps the backoff of the partition's lookups (a
    /// `FailureTracker`, which also reports a failure that lasts): tried again at `retry_at`.
    pub fn reset_failed_until(&mut self, retry_at: Instant) {
        if matches!(self.status, FetchStatus::AwaitingReset(_)) {
            self.retry_at = Some(retry_at);
        }
    }

    /// A Fetch answer's records up to `next_offset` were accepted, the last one in
    /// `last_epoch`: the next Fetch starts there. Only a fetching partition moves, and never
    /// backwards from a late batch.
    pub fn advance(&mut self, next_offset: i64, last_epoch: Option<i32>) {
        if self.status != FetchStatus::Fetching {
            return;
        }
        let Some(p) = &mut self.position else {
            return;
        };
        if next_offset > p.offset {
            p.offset = next_offset;
            // A record without an epoch (magic < 2) keeps the epoch we knew: it is still the
            // best lower bound for validation.
            if last_epoch.is_some() {
                p.offset_epoch = last_epoch;
                p.epoch_read = true;
            }
        }
    }

    /// Records handed out found a corrupt one at `offset` (a compressed batch is decompressed
    /// and read only then), after the partition had moved to `from`, the end of their answer:
    /// the position goes back to `offset`, the last record before it in `last_epoch` (the
    /// epoch the position had before the answer when none of it was handed out), and the
    /// partition is fetched again from there after `backoff`. Only a fetching partition still
    /// at `from` moves (one sought or reset since has dropped those records). Returns whether
    /// it moved.
    pub fn rewind_to_corrupt(
        &mut self,
        offset: i64,
        last_epoch: Option<i32>,
        from: i64,
        now: Instant,
        backoff: &Backoff,
    ) -> bool {
        if self.status != FetchStatus::Fetching {
            return false;
        }
        let Some(p) = &mut self.position else {
            return false;
        };
        if p.offset != from || offset > from {
            return false;
        }
        p.offset = offset;
        // Not `or` the epoch held now: that is the answer's last record's, past `offset`.
        p.offset_epoch = last_epoch;
        // Perhaps the position's before the answer, from a reset or a commit.
        p.epoch_read = false;
        self.back_off(now, backoff);
        true
    }

    /// Records accepted past `offset` were dropped before the application got them (held for
    /// a pause when the partition came to await validation): the position awaiting validation
    /// goes back to `offset`, the last record before it in `offset_epoch`, still checked
    /// against the same leader, and is validated there (without an epoch it cannot be, and is
    /// fetched from at once, as after a seek). Returns whether it moved: only a partition
    /// awaiting validation does.
    pub fn validate_from(&mut self, offset: i64, offset_epoch: Option<i32>) -> bool {
        if self.status != FetchStatus::AwaitingValidation {
            return false;
        }
        let Some(p) = self.position else {
            return false;
        };
        self.validate_position(FetchPosition {
            offset,
            offset_epoch,
            // Where the held records began: the epoch may be one the position had from
            // elsewhere (a reset, a commit).
            epoch_read: false,
            current_leader: p.current_leader,
        });
        true
    }

    /// A new metadata snapshot names `leader` for the partition. When the leader or its epoch
    /// changed and both the position's epoch and the new one are known, the position must be
    /// validated (KIP-320; Java `maybeValidatePositionForCurrentLeader`); `can_validate` is
    /// whether the new leader offers OffsetForLeaderEpoch at a version kcon speaks; when it
    /// does not (Tansu), the position is taken as valid, as Java does for old brokers.
    /// Returns whether the partition now awaits validation.
    pub fn update_leader(&mut self, leader: LeaderAndEpoch, can_validate: bool) -> bool {
        // Epochs never go backwards: an older snapshot must not undo a leader change we
        // already acted on (the pool's metadata cache keeps this too; this is the last guard).
        if matches!((self.leader.epoch, leader.epoch), (Some(old), Some(new)) if new < old) {
            return self.status == FetchStatus::AwaitingValidation;
        }
        if leader != self.leader {
            // The follower was chosen by the old leader; the new one may pick another.
            self.read_replica = None;
        }
        self.leader = leader;
        if leader.leader.is_none() || matches!(self.status, FetchStatus::AwaitingReset(_)) {
            return false;
        }
        let Some(position) = self.position else {
            return false;
        };
        if position.current_leader == leader {
            return self.status == FetchStatus::AwaitingValidation;
        }
        let moved = FetchPosition {
            current_leader: leader,
            ..position
        };
        if can_validate {
            self.validate_position(moved);
        } else {
            self.position = Some(moved);
            if self.status == FetchStatus::AwaitingValidation {
                self.status = FetchStatus::Fetching;
            }
        }
        self.status == FetchStatus::AwaitingValidation
    }

    /// Validation succeeded, or is skipped (the leader does not offer OffsetForLeaderEpoch).
    pub fn complete_validation(&mut self) {
        if self.status == FetchStatus::AwaitingValidation {
            self.status = FetchStatus::Fetching;
            self.clear_backoff();
        }
    }

    /// Whether the partition awaits validation and may be validated at `now`.
    pub fn needs_validation(&self, now: Instant) -> bool {
        self.status == FetchStatus::AwaitingValidation && self.backoff_passed(now)
    }

    /// Whether the partition awaits a reset that may be looked up at `now`.
    pub fn needs_reset(&self, now: Instant) -> Option<ResetReason> {
        match self.status {
            FetchStatus::AwaitingReset(r) if self.backoff_passed(now) => Some(r),
            _ => None,
        }
    }

    /// The broker to fetch from at `now`, or `None` when the partition is not fetchable
    /// (paused, no valid position, no leader, backing off). An expired read replica is
    /// dropped here (Java `SubscriptionState.preferredReadReplica` with its expiry), and
    /// fetching goes back to the leader.
    pub fn fetch_target(&mut self, now: Instant) -> Option<i32> {
        let target = self.target_at(now)?;
        if self.read_replica.is_some_and(|r| now >= r.expires_at) {
            self.read_replica = None;
        }
        Some(target)
    }

    /// [`fetch_target`](Self::fetch_target) without dropping an expired read replica: the
    /// same broker, for a reader that only looks.
    pub fn target_at(&self, now: Instant) -> Option<i32> {
        if self.paused || self.status != FetchStatus::Fetching || !self.backoff_passed(now) {
            return None;
        }
        let leader = self.leader.leader?;
        match self.read_replica {
            Some(r) if now < r.expires_at => Some(r.broker),
            _ => Some(leader),
        }
    }

    /// The fetcher lost the connection to `broker`, or its Fetch failed in transport: a read
    /// replica there is given up (Java `AbstractFetch.handleFetchFailure` clears the session's
    /// preferred replicas).
    pub fn broker_failed(&mut self, broker: i32) {
        if self.read_replica.is_some_and(|r| r.broker == broker) {
            self.read_replica = None;
        }
    }

    /// What one partition's Fetch answer does: the new state and what the driver must do.
    /// Matches the Java client's `FetchCollector.handleInitializeSuccess`/`handleInitializeErrors`
    /// and `FetchUtils.requestMetadataUpdate`, with two deliberate differences: every error
    /// backs the partition off for `retry_backoff` (so an error answered at once cannot become
    /// a tight fetch loop while metadata refreshes), and UNKNOWN_LEADER_EPOCH also refreshes
    /// metadata (Java only retries; kcon refreshes too, and the pool coalesces the refreshes).
    pub fn on_fetch_answer(
        mut self,
        answer: &PartitionAnswer,
        ctx: &AnswerContext,
    ) -> (PartitionState, Vec<FetchAction>) {
        let mut actions = Vec::new();
        // Java: a partition without a valid position (reset or validation pending, or
        // unassigned) drops whatever the answer says.
        let Some(position) = self
            .position
            .filter(|_| self.status == FetchStatus::Fetching)
        else {
            actions.push(FetchAction::Discard);
            return (self, actions);
        };
        let stale = position.offset != answer.fetch_offset;
        let from_replica = self.read_replica.is_some_and(|r| r.broker == answer.broker);
        if answer.error_code != codes::NONE {
            // An error answer carries no records for the partition; whatever came is dropped.
            actions.push(FetchAction::Discard);
        }
        match answer.error_code {
            codes::NONE => {
                if stale {
                    actions.push(FetchAction::Discard);
                    return (self, actions);
                }
                if let Some(diverging) = answer.diverging {
                    // Whatever came with it is not delivered (Kafka sends no records then).
                    actions.push(FetchAction::Discard);
                    if from_replica {
                        // KIP-392: a follower's log may lag the leader's, and lack an epoch
                        // the leader began: that is no truncation. Ask the leader, as for
                        // OFFSET_OUT_OF_RANGE from a follower.
                        self.read_replica = None;
                    } else {
                        self.on_diverging_epoch(&position, diverging, ctx, &mut actions);
                    }
                    return (self, actions);
                }
                self.note_read_replica(answer, ctx);
                actions.push(FetchAction::Deliver);
                if answer.corrupt_at.is_none() {
                    self.failures = 0;
                }
                if let Some(offset) = answer.corrupt_at {
                    // The good records before the batch are delivered; the position stops
                    // there and the error reaches the application when it gets there. The
                    // backoff keeps a refetch of the same bad batch from spinning.
                    actions.push(FetchAction::Report(PartitionError::Corrupt { offset }));
                    self.back_off(ctx.now, &ctx.retry_backoff);
                }
            }
            codes::NOT_LEADER_OR_FOLLOWER
            | codes::FENCED_LEADER_EPOCH
            | codes::REPLICA_NOT_AVAILABLE
            | codes::LEADER_NOT_AVAILABLE
            | codes::OFFSET_NOT_AVAILABLE
            | codes::KAFKA_STORAGE_ERROR
            | codes::UNKNOWN_LEADER_EPOCH => {
                // The leader (or our read replica) cannot serve us: back to the leader the next
                // metadata names (Java `FetchUtils.requestMetadataUpdate` clears the replica).
                self.read_replica = None;
                let newer = |h: &LeaderAndEpoch| h.leader.is_some() && h.epoch > self.leader.epoch;
                if let Some(hint) = answer.leader_hint.filter(newer) {
                    // KIP-951: the broker named the new leader; move now rather than after the
                    // refresh. Validation is decided when the metadata confirms the leader's
                    // versions, so here it is taken as possible (the safe choice).
                    self.update_leader(hint, true);
                }
                actions.push(FetchAction::RefreshMetadata);
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
            codes::OFFSET_OUT_OF_RANGE => {
                if from_replica {
                    // KIP-392: a follower may be behind the leader's log start or end; ask the
                    // leader rather than resetting (Java `handleOffsetOutOfRange`).
                    self.read_replica = None;
                } else if !stale {
                    match ctx.reset_policy {
                        ResetPolicy::None => {
                            actions.push(FetchAction::Report(PartitionError::OffsetOutOfRange {
                                offset: position.offset,
                            }));
                            // The position stays (the application must seek); fetching it again
                            // gives the same error, as in Java, but not in a tight loop.
                            self.back_off(ctx.now, &ctx.retry_backoff);
                        }
                        policy => {
                            self.status =
                                FetchStatus::AwaitingReset(ResetReason::OffsetOutOfRange {
                                    offset: position.offset,
                                });
                            self.clear_backoff();
                            actions.push(FetchAction::Reset(policy));
                        }
                    }
                }
            }
            codes::UNKNOWN_TOPIC_OR_PARTITION
            | codes::UNKNOWN_TOPIC_ID
            | codes::INCONSISTENT_TOPIC_ID => {
                // The topic was deleted, recreated or not yet known to this broker; the
                // metadata tells which (and the assignment follows it).
                self.read_replica = None;
                actions.push(FetchAction::RefreshMetadata);
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
            codes::CORRUPT_MESSAGE => {
                actions.push(FetchAction::Report(PartitionError::Corrupt {
                    offset: answer.fetch_offset,
                }));
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
            codes::TOPIC_AUTHORIZATION_FAILED => {
                actions.push(FetchAction::Report(PartitionError::TopicAuthorization));
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
            codes::UNKNOWN_SERVER_ERROR => {
                // Java logs and retries.
                self.read_replica = self.read_replica.filter(|_| !from_replica);
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
            code => {
                actions.push(FetchAction::Report(PartitionError::Broker { code }));
                self.read_replica = self.read_replica.filter(|_| !from_replica);
                self.back_off(ctx.now, &ctx.retry_backoff);
            }
        }
        (self, actions)
    }

    /// KIP-392: the leader named a follower to read from. The lease starts only when the
    /// replica changes (Java `updatePreferredReadReplica`), so a leader that keeps naming the
    /// same follower does not keep us off the leader past `metadata.max.age.ms`. A follower
    /// answers with no replica (-1), which keeps the current one.
    fn note_read_replica(&mut self, answer: &PartitionAnswer, ctx: &AnswerContext) {
        let Some(broker) = answer.preferred_read_replica else {
            return;
        };
        if self.leader.leader == Some(broker) {
            self.read_replica = None;
            return;
        }
        if self.read_replica.is_some_and(|r| r.broker == broker) {
            return;
        }
        self.read_replica = Some(ReadReplica {
            broker,
            expires_at: ctx.now + ctx.replica_lease,
        });
    }

    /// Java `TopicPartitionState.validatePosition`: validation needs both the epoch of the
    /// position and the leader's; without them there is nothing to compare.
    fn validate_position(&mut self, position: FetchPosition) {
        self.position = Some(position);
        self.clear_backoff();
        self.status = if position.offset_epoch.is_some() && position.current_leader.epoch.is_some()
        {
            FetchStatus::AwaitingValidation
        } else {
            FetchStatus::Fetching
        };
    }

    /// Validation failed with a retriable error, or its request failed in transport: asked
    /// again after `backoff` (Java `SubscriptionState.requestFailed`).
    pub fn validation_failed(&mut self, now: Instant, backoff: &Backoff) {
        if self.status == FetchStatus::AwaitingValidation {
            self.back_off(now, backoff);
        }
    }

    /// Validation found the position on the leader's log, which lacks its epoch: the
    /// position takes `epoch`, the leader's that ends past it, so that the next Fetch's last
    /// fetched epoch is one the leader has; for [`crate::validation`].
    pub(crate) fn take_leaders_epoch(&mut self, epoch: i32) {
        if let Some(p) = &mut self.position {
            p.offset_epoch = Some(epoch);
            p.epoch_read = false;
        }
    }

    /// Sets the state directly; for [`crate::validation`].
    pub(crate) fn set_validated(&mut self, position: FetchPosition) {
        self.position = Some(position);
        self.status = FetchStatus::Fetching;
        self.clear_backoff();
    }

    /// One more failure in a row: not tried again before its backoff.
    pub(crate) fn back_off(&mut self, now: Instant, backoff: &Backoff) {
        self.retry_at = Some(backoff.retry_at(now, &mut self.failures));
    }

    /// A clean answer or a new position: no wait, and the next failure waits the least.
    fn clear_backoff(&mut self) {
        self.retry_at = None;
        self.failures = 0;
    }

    fn backoff_passed(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }
}

#[cfg(test)]
mod tests;
