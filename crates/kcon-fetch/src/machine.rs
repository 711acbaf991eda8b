//! The fetch loop as a sans-IO state machine: it ties one [`FetchSession`] per broker, the
//! [`PartitionState`] of every assigned partition, the [`PrefetchBudget`], resets and
//! validation together, and decides what to send next.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::messages::fetch_response::FetchResponse;
use kcon_core::error_codes::error_name;
use kcon_core::failure::Failed;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::{
    FailureTracker, Machine, PersistentFailure, RequestFailure, RequestId, ResetPolicy, Topic,
    TopicId, TopicPartition,
};
use tracing::{debug, warn};

use crate::IsolationLevel;
use crate::budget::PrefetchBudget;
use crate::config::FetchConfig;
use crate::messages::{
    BrokerInfo, FetchAnswer, FetchEvent, FetchRequest, MetadataView, Outgoing, StartPosition,
};
use crate::position::{
    AnswerContext, Backoff, DivergingEpoch, FetchAction, FetchPosition, FetchStatus,
    LeaderAndEpoch, PartitionAnswer, PartitionError, PartitionState, ResetReason,
};
use crate::records::{CorruptRecords, FetchedRecords, check_partition};
use crate::session::{FetchSession, PartitionFetch, RequestKind, SessionOutcome};
use crate::transactions::AbortedTransaction;
use crate::validation::{EpochQuery, epoch_answers, plan_validation};

mod assignments;

use assignments::Assignments;

/// The fetch loop of one consumer. It does no IO and reads no clock: `now` is an argument.
///
/// # Driving it
/// - Inputs from the application: [`assign`](Self::assign), [`unassign`](Self::unassign),
///   [`pause`](Self::pause), [`resume`](Self::resume), [`seek`](Self::seek),
///   [`records_consumed`](Self::records_consumed) (the application took a
///   [`FetchedRecords`]: its bytes leave the prefetch budget), [`close`](Self::close).
/// - From the environment: [`metadata_updated`](Self::metadata_updated) with every new
///   metadata snapshot (leaders, epochs, topic ids, broker versions).
/// - Answers: [`handle_response`](Self::handle_response) with the answer to each request, or
///   why there was none; time: [`handle_timeout`](Self::handle_timeout) once
///   [`poll_timeout`](Self::poll_timeout) has passed.
/// - After every input, drain [`poll_request`](Self::poll_request) (send each) and
///   [`poll_event`](Self::poll_event) (hand each to the application), then sleep until
///   [`poll_timeout`](Self::poll_timeout) or the next input.
///
/// At most one Fetch is in flight per broker (a session's requests are numbered, KIP-227);
/// Fetches to different brokers go out in parallel, and a partition is fetched again as soon
/// as the application took its previous records, while it still works on them.
///
/// # Positions
/// A partition's position ([`PartitionState::position`]) is where its next Fetch starts: an
/// answer's records move it when they are accepted, as the answer is handled, before they are
/// polled; an answer for the offset they were fetched from is stale from then on. The
/// partition is not fetched again while the application has not taken them: their bytes stay
/// in the [`PrefetchBudget`] until [`records_consumed`](Self::records_consumed) (or a seek, a
/// reset or an unassignment drops them), and the budget grants no Fetch to a partition holding
/// bytes. Where the application stands is [`delivered_position`](Self::delivered_position):
/// the same, except while records are held for a pause.
#[derive(Debug)]
pub struct FetchMachine {
    config: FetchConfig,
    partitions: Assignments,
    brokers: BTreeMap<i32, Broker>,
    budget: PrefetchBudget,
    pending: HashMap<RequestId, Pending>,
    queued: VecDeque<Outgoing>,
    events: VecDeque<FetchEvent>,
    next_id: u64,
    /// Metadata must be refreshed (a leader moved, a topic changed, a partition has no leader).
    metadata_wanted: bool,
    metadata_in_flight: bool,
    timers: Timers,
    /// Each broker's Fetches (and connects) that failed in a row: their backoff, reset only by
    /// a good Fetch answer, and their reports.
    broker_tries: BTreeMap<i32, FailureTracker>,
    /// Each leader's reset lookups (ListOffsets under `auto.offset.reset`) that failed in a
    /// row: the backoff of the partitions they were for, and a report (WARN) once they keep
    /// failing; each failure before that is a DEBUG line only (a new topic's leader still being
    /// elected answers NOT_LEADER_OR_FOLLOWER for a while). One per leader, as the lookups go,
    /// so that a broker down does not report once per partition.
    reset_tries: BTreeMap<i32, FailureTracker>,
    /// Metadata refreshes that failed in a row (or left a partition without a leader).
    metadata_tries: FailureTracker,
    now: Instant,
    closing: bool,
    closed_told: bool,
    /// An input since the last plan may have made a request due: the next
    /// [`poll_request`](Machine::poll_request) with nothing queued plans everything.
    plan_all: bool,
    /// Only handing out records happened since the last plan, and it drained a partition that
    /// may let a Fetch go or gave back part of a spent budget: the next plan is of Fetches
    /// alone, and only when a broker has none in flight. Handing out records is the one input
    /// that comes once per batch; planning everything after each one visits every assigned
    /// partition, which with thousands of partitions cost more than the records themselves.
    fetches_due: bool,
    /// Draws the jitter of every backoff; seeded, so that a run can be replayed.
    rng: fastrand::Rng,
}

kcon_core::timers! {
    /// The machine's own timers, one table. Backoffs kept per key are not in it: each partition's
    /// lives in its [`PartitionState`] (`retry_at`) and each broker's in its [`Broker`], beside the
    /// rest of their state, since partitions and brokers come and go with assignments and
    /// metadata; [`FetchMachine::poll_timeout`] is the earliest of the table and those.
    enum Timer {
        /// Metadata may be asked for again after a failed refresh.
        MetadataRetry,
    }
    type Timers;
}

/// One assigned partition.
#[derive(Debug)]
struct Assigned {
    state: PartitionState,
    topic: Topic,
    topic_id: Option<TopicId>,
    /// A ListOffsets for its reset is in flight.
    resetting: bool,
    /// `auto.offset.reset=by_duration` found no record that recent: the reset is looked up
    /// again as `latest` (KIP-1106), not by the duration.
    reset_to_latest: bool,
    /// An OffsetForLeaderEpoch for it is in flight.
    validating: bool,
    /// `auto.offset.reset=none` and the application was told it has no position.
    no_position_told: bool,
    /// The offset of the corrupt batch the application was last told about. The partition
    /// stays there and refetches it after each backoff (a new leader, or a transient fault,
    /// may serve a good copy); the same finding is not reported again until a seek or reset
    /// moves the position.
    corrupt_told: Option<i64>,
    /// The high watermark of its last Fetch answer without error.
    high_watermark: Option<i64>,
    /// The end of the log (high watermark, last stable offset) and the position the owner
    /// was last told of, with records or without: an answer with no records for it tells the
    /// owner when either moved, so that it knows where the log ends without a record to
    /// carry it (an empty partition, one read to its end, control batches skipped).
    told: Option<(i64, i64, i64)>,
    /// Records accepted while the partition is paused (and those still queued for the owner
    /// when the pause came), oldest first: queued for the owner again on resume. The position
    /// in `state` is past them; where the first was fetched from is where the application
    /// stands ([`FetchMachine::delivered_position`]). Their bytes stay in the budget, so the
    /// partition is not fetched meanwhile (paused, it would not be anyway).
    held: VecDeque<FetchedRecords>,
}

impl Assigned {
    /// Whether its position may be below its high watermark: it is, or either is not known.
    fn below_high_watermark(&self) -> bool {
        match (self.state.position(), self.high_watermark) {
            (Some(p), Some(hw)) => p.offset < hw,
            _ => true,
        }
    }

    /// Where the application stands: where the first held records were fetched from, or the
    /// position when nothing is held.
    fn delivered_position(&self) -> Option<FetchPosition> {
        let position = self.state.position()?;
        let Some(first) = self.held.front() else {
            return Some(position);
        };
        let (offset, offset_epoch) = first.fetched_from();
        Some(FetchPosition {
            offset,
            offset_epoch,
            epoch_read: false,
            ..position
        })
    }

    /// A partition that stopped fetching gives up the records held for its pause: awaiting
    /// validation (a leader change, KIP-320), its position goes back to where they begin, so
    /// that validation checks where the application stands and not records it never got,
    /// which the new leader may have truncated; awaiting a reset, they are stale. Returns
    /// whether records were dropped: their bytes must leave the budget.
    fn give_up_held(&mut self) -> bool {
        if self.held.is_empty() || self.state.status() == FetchStatus::Fetching {
            return false;
        }
        if let Some(from) = self.delivered_position() {
            self.state.validate_from(from.offset, from.offset_epoch);
        }
        self.held.clear();
        true
    }
}

/// One broker the fetcher has fetched from or wants to.
#[derive(Debug, Default)]
struct Broker {
    session: FetchSession,
    info: Option<BrokerInfo>,
    connecting: bool,
    /// The Fetch in flight.
    fetching: Option<RequestId>,
    /// After a failed Fetch or Connect, not before this (the backoff of the broker's
    /// [`FailureTracker`], which counts the failures).
    retry_at: Option<Instant>,
}

/// Why a broker is backed off, for its tracker.
enum BrokerFailure<'a> {
    /// A request to it got no answer.
    Request(&'a RequestFailure),
    /// It answered, with an error or something the machine cannot use.
    Answer(String),
}

/// What a request in flight was about, to read its answer.
#[derive(Debug)]
enum Pending {
    Fetch {
        broker: i32,
        /// The fetch offset of every partition the session holds for this request.
        offsets: BTreeMap<TopicPartition, i64>,
    },
    Close {
        broker: i32,
    },
    Connect {
        broker: i32,
    },
    ListOffsets {
        /// The partitions' leader it went to.
        broker: i32,
        partitions: Vec<(TopicPartition, ResetReason)>,
    },
    Validate {
        queries: Vec<EpochQuery>,
    },
    Metadata,
}

impl FetchMachine {
    /// A machine with nothing assigned; `seed` seeds the jitter of its backoffs.
    pub fn new(config: FetchConfig, now: Instant, seed: u64) -> Self {
        let budget = PrefetchBudget::new(config.buffer_max_bytes, config.max_bytes.max(1) as usize);
        let metadata_tries = FailureTracker::new(
            ApiKey::Metadata,
            "the assigned partitions' leaders",
            config.retry_backoff_policy(),
        );
        FetchMachine {
            config,
            partitions: Assignments::default(),
            brokers: BTreeMap::new(),
            budget,
            pending: HashMap::new(),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            metadata_wanted: false,
            metadata_in_flight: false,
            timers: Timers::new(),
            broker_tries: BTreeMap::new(),
            reset_tries: BTreeMap::new(),
            metadata_tries,
            now,
            closing: false,
            closed_told: false,
            plan_all: true,
            fetches_due: false,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    /// The assigned partitions and their state.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicPartition, &PartitionState)> {
        self.partitions.iter().map(|(tp, a)| (tp, &a.state))
    }

    /// The state of one assigned partition.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.partitions.get(tp).map(|a| &a.state)
    }

    /// The fetch session with `broker`, if one was ever used.
    pub fn session(&self, broker: i32) -> Option<&FetchSession> {
        self.brokers.get(&broker).map(|b| &b.session)
    }

    /// The prefetch budget.
    pub fn budget(&self) -> &PrefetchBudget {
        &self.budget
    }

    /// The topics of the assigned partitions: what metadata is needed for.
    pub fn topics(&self) -> BTreeSet<String> {
        self.partitions.keys().map(|tp| tp.topic.clone()).collect()
    }

    /// Whether [`close`](Self::close) was called and every session close was answered.
    pub fn is_closed(&self) -> bool {
        self.closing
            && !self
                .pending
                .values()
                .any(|p| matches!(p, Pending::Close { .. }))
    }

    /// Adds partitions to fetch. A partition already assigned keeps its state. The leader is
    /// learnt from the next [`metadata_updated`](Self::metadata_updated); a metadata refresh is
    /// asked for.
    pub fn assign(
        &mut self,
        now: Instant,
        partitions: impl IntoIterator<Item = (TopicPartition, StartPosition)>,
    ) {
        self.now = now;
        self.plan_all = true;
        for (tp, start) in partitions {
            if self.partitions.contains_key(&tp) {
                continue;
            }
            let mut state = PartitionState::new(LeaderAndEpoch::default());
            match start {
                // Validated against the leader once the metadata names it (Java
                // `seekUnvalidated` of a committed offset).
                StartPosition::Committed {
                    offset,
                    leader_epoch,
                } => state.seek_unvalidated(offset, leader_epoch),
                StartPosition::Reset => state.request_reset(ResetReason::NoPosition),
            }
            let topic = Topic::new(&tp.topic);
            self.partitions.edit().insert(
                tp,
                Assigned {
                    state,
                    topic,
                    topic_id: None,
                    resetting: false,
                    reset_to_latest: false,
                    validating: false,
                    no_position_told: false,
                    corrupt_told: None,
                    high_watermark: None,
                    told: None,
                    held: VecDeque::new(),
                },
            );
        }
        self.metadata_wanted = true;
    }

    /// Stops fetching `partitions`: they leave their sessions with the next Fetch to their
    /// broker (the forgotten list), and their buffered records are dropped.
    pub fn unassign<'a>(&mut self, partitions: impl IntoIterator<Item = &'a TopicPartition>) {
        self.plan_all = true;
        for tp in partitions {
            if self.partitions.edit().remove(tp).is_some() {
                self.drop_buffered(tp);
                self.budget.remove(tp);
            }
        }
    }

    /// Stops fetching `tp` until [`resume`](Self::resume): it leaves its session (the
    /// forgotten list of the next Fetch to its broker). Records already handed out stay valid;
    /// records queued and not yet polled, and those of a Fetch in flight, are held back until
    /// the resume, in order (their bytes stay in the budget, and a partition holding records
    /// is not fetched). The position does not move: it was past them when they were accepted.
    pub fn pause(&mut self, tp: &TopicPartition) {
        self.plan_all = true;
        let Some(a) = self.partitions.edit().get_mut(tp) else {
            return;
        };
        a.state.pause();
        let mine = |e: &FetchEvent| matches!(e, FetchEvent::Records(r) if &r.partition == tp);
        if self.events.iter().any(mine) {
            let (held, others): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut self.events).into_iter().partition(mine);
            self.events = others;
            a.held.extend(held.into_iter().filter_map(|e| match e {
                FetchEvent::Records(r) => Some(r),
                _ => None,
            }));
        }
    }

    /// Fetches `tp` again; it rejoins its session with the next Fetch. The records held during
    /// the pause are queued for the owner, in order.
    pub fn resume(&mut self, tp: &TopicPartition) {
        self.plan_all = true;
        if let Some(a) = self.partitions.edit().get_mut(tp) {
            a.state.resume();
            self.events
                .extend(a.held.drain(..).map(FetchEvent::Records));
        }
    }

    /// Where the application stands in `tp`, as far as the fetcher knows: the position
    /// ([`PartitionState::position`], where the next Fetch starts, past every record
    /// accepted), or, while records of `tp` are held for a pause, the position the first of
    /// them was fetched from. Records queued for the owner count as the application's: the
    /// input that accepted them gave them to it, and polling only hands them over.
    pub fn delivered_position(&self, tp: &TopicPartition) -> Option<FetchPosition> {
        self.partitions.get(tp)?.delivered_position()
    }

    /// Moves `tp` to `offset` (Java `seek`): records fetched for the old position and not yet
    /// handed out are dropped; with a known epoch the position is validated first (KIP-320).
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64, leader_epoch: Option<i32>) {
        self.plan_all = true;
        let Some(a) = self.partitions.edit().get_mut(tp) else {
            return;
        };
        a.state.seek_unvalidated(offset, leader_epoch);
        a.reset_to_latest = false;
        a.no_position_told = false;
        a.corrupt_told = None;
        self.drop_buffered(tp);
    }

    /// Looks `tp`'s position up again under `auto.offset.reset` (the application's
    /// `seek_to_beginning` / `seek_to_end` go through a policy too).
    pub fn reset(&mut self, tp: &TopicPartition) {
        self.plan_all = true;
        let Some(a) = self.partitions.edit().get_mut(tp) else {
            return;
        };
        a.state.request_reset(ResetReason::NoPosition);
        a.reset_to_latest = false;
        a.no_position_told = false;
        a.corrupt_told = None;
        self.drop_buffered(tp);
    }

    /// The application took `bytes` of `tp`'s records (a [`FetchedRecords::size`]): they leave
    /// the prefetch budget, and once `tp` holds nothing it is fetched again.
    pub fn records_consumed(&mut self, tp: &TopicPartition, bytes: usize) {
        let was_spent = self.budget.available() == 0;
        self.budget.consumed(tp, bytes);
        // A budget spent until now may grant a Fetch to a partition drained before, and a
        // drained partition may let one go: plan then, and only then. Planning visits every
        // partition, and a drain of thousands of partitions would plan once per partition.
        if (was_spent && self.budget.available() > 0)
            || (self.budget.buffered_for(tp) == 0 && self.drain_may_fetch(tp))
        {
            self.fetches_due = true;
        }
    }

    /// Whether `tp`, drained, may let a Fetch go, as [`fetchable`](Self::fetchable) decides:
    /// it is behind (below its high watermark, or that is not known), or no other partition
    /// its broker serves is still being taken (a Fetch of partitions caught up is held back
    /// until then). One with no broker to fetch from now lets none go: what gives it one (its
    /// backoff's end, an answer, new metadata) plans everything.
    fn drain_may_fetch(&self, tp: &TopicPartition) -> bool {
        let Some(a) = self.partitions.get(tp) else {
            return false;
        };
        let Some(broker) = a.state.target_at(self.now) else {
            return false;
        };
        a.below_high_watermark() || !self.draining(self.now, broker)
    }

    /// Handing out `tp`'s records left `bytes` more held for those still to come (a
    /// [`FetchedRecords::held_more`]: a batch decompressed for a part, whose later records wait
    /// for the next): the prefetch budget counts them until a part's `size` gives them back.
    pub fn records_held(&mut self, tp: &TopicPartition, bytes: usize) {
        self.budget.hold(tp, bytes);
    }

    /// Handing out `tp`'s records found a corrupt one (the part that ends before it carries
    /// `corrupt`, and `bytes`, its `size`, leave the budget): the partition goes back to that
    /// offset, though the answer had moved it past, and is fetched again from there after
    /// `retry.backoff.ms`, in case a new leader serves a good copy. The application is told once
    /// per offset, after the records before it. Nothing happens to a partition sought, reset or
    /// unassigned since: those records were stale.
    pub fn records_corrupt(
        &mut self,
        now: Instant,
        tp: &TopicPartition,
        corrupt: &CorruptRecords,
        bytes: usize,
    ) {
        self.plan_all = true;
        self.budget.consumed(tp, bytes);
        let backoff = self.backoff();
        let Some(a) = self.partitions.edit().get_mut(tp) else {
            return;
        };
        if !a.state.rewind_to_corrupt(
            corrupt.offset,
            corrupt.leader_epoch,
            corrupt.answer_end,
            now,
            &backoff,
        ) {
            return;
        }
        if a.corrupt_told != Some(corrupt.offset) {
            a.corrupt_told = Some(corrupt.offset);
            self.events.push_back(FetchEvent::PartitionError {
                partition: tp.clone(),
                error: PartitionError::Corrupt {
                    offset: corrupt.offset,
                },
            });
        }
    }

    /// A new metadata snapshot: leaders and epochs (a change may start validation, KIP-320),
    /// topic ids, and the versions of the brokers connected so far.
    pub fn metadata_updated(&mut self, now: Instant, view: &MetadataView) {
        self.now = now;
        self.plan_all = true;
        for (id, info) in &view.brokers {
            let broker = self.brokers.entry(*id).or_default();
            broker.info = Some(*info);
        }
        let mut leaderless = false;
        for (tp, a) in self.partitions.edit() {
            let Some(p) = view.partitions.get(tp) else {
                leaderless = true;
                continue;
            };
            a.topic_id = p.topic_id;
            leaderless |= p.leader.leader.is_none();
            // A leader whose versions are unknown yet is taken as able to validate: the
            // partition then waits for them (see `plan`) rather than skipping validation.
            let can_validate = p
                .leader
                .leader
                .and_then(|id| self.brokers.get(&id)?.info)
                .is_none_or(|i| i.can_validate);
            a.state.update_leader(p.leader, can_validate);
            if a.give_up_held() {
                self.budget.discard(tp);
            }
        }
        // A partition the metadata does not name (yet), or names without a leader, needs
        // another look; the backoff keeps that from becoming a loop.
        if leaderless {
            self.metadata_wanted = true;
            self.metadata_backoff(
                now,
                BrokerFailure::Answer("a partition has no leader in the metadata".into()),
            );
        } else {
            // Metadata goes to any broker: which one answered is not known here.
            let report = self.metadata_tries.succeeded_by(now, None);
            self.tell(report);
        }
    }

    /// Closes every fetch session (epoch -1, KIP-227) so the brokers free their cache slots at
    /// once. Nothing is fetched after; [`FetchEvent::Closed`] comes when the closes are
    /// answered (or failed).
    pub fn close(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        self.now = now;
        self.closing = true;
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        for id in ids {
            // Invariant: `ids` are keys of `brokers`.
            let Some(b) = self.brokers.get_mut(&id) else {
                continue;
            };
            let Some(session) = b.session.close() else {
                continue;
            };
            let Some(info) = b.info else {
                continue;
            };
            let apart = b.fetching.is_some();
            let params = self.config.params(0);
            let id_ = self.id();
            self.pending.insert(id_, Pending::Close { broker: id });
            self.queued.push_back(outgoing(
                id_,
                FetchRequest::Fetch {
                    broker: id,
                    version: info.fetch_version,
                    session,
                    params,
                    apart,
                },
            ));
        }
        // Without a session to close, closed at once.
        self.tell_if_closed();
    }

    /// Queues [`FetchEvent::Closed`] once every session close was answered.
    fn tell_if_closed(&mut self) {
        if self.is_closed() && !self.closed_told {
            self.closed_told = true;
            self.events.push_back(FetchEvent::Closed);
        }
    }

    fn id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId::new(self.next_id)
    }

    fn ctx(&mut self, now: Instant) -> AnswerContext {
        AnswerContext {
            now,
            reset_policy: self.config.reset_policy,
            retry_backoff: self.backoff(),
            replica_lease: self.config.metadata_max_age,
        }
    }

    /// The backoff for the next failure, with a fresh jitter.
    fn backoff(&mut self) -> Backoff {
        Backoff {
            policy: self.config.retry_backoff_policy(),
            random: self.rng.f64(),
        }
    }

    /// `broker` failed (a Fetch, a Connect, a Fetch that could not be built): it is not asked
    /// again before its backoff, which grows until a Fetch it answers gets through.
    fn broker_backoff(&mut self, now: Instant, broker: i32, why: BrokerFailure<'_>) {
        let random = self.rng.f64();
        let policy = self.config.retry_backoff_policy();
        let tracker = self.broker_tries.entry(broker).or_insert_with(|| {
            FailureTracker::new(
                ApiKey::Fetch,
                format!("the partitions fetched from broker {broker}"),
                policy,
            )
        });
        let failed = record(tracker, now, why, random);
        let b = self.brokers.entry(broker).or_default();
        b.retry_at = Some(failed.retry_at);
        self.tell(failed.report);
    }

    /// A metadata refresh failed, or left a partition without a leader.
    fn metadata_backoff(&mut self, now: Instant, why: BrokerFailure<'_>) {
        let random = self.rng.f64();
        let failed = record(&mut self.metadata_tries, now, why, random);
        self.timers.set(Timer::MetadataRetry, failed.retry_at);
        self.tell(failed.report);
    }

    /// Passes a report on to the application, if there is one.
    fn tell(&mut self, report: Option<PersistentFailure>) {
        if let Some(r) = report {
            self.events.push_back(FetchEvent::PersistentFailure(r));
        }
    }

    /// Records of `tp` fetched and not yet handed out (queued, or held for a pause) are
    /// dropped, and their bytes leave the budget (a seek, a reset, an unassignment).
    fn drop_buffered(&mut self, tp: &TopicPartition) {
        self.events
            .retain(|e| !matches!(e, FetchEvent::Records(r) if &r.partition == tp));
        if let Some(a) = self.partitions.edit().get_mut(tp) {
            a.held.clear();
        }
        self.budget.discard(tp);
    }

    /// Decides every request that can go out now, in this order: metadata, connections,
    /// resets, validations, fetches.
    fn plan(&mut self, now: Instant) {
        if self.metadata_wanted
            && !self.metadata_in_flight
            && self
                .timers
                .get(Timer::MetadataRetry)
                .is_none_or(|t| now >= t)
            && !self.partitions.is_empty()
        {
            self.metadata_wanted = false;
            self.metadata_in_flight = true;
            let id = self.id();
            self.pending.insert(id, Pending::Metadata);
            let topics = self.topics().into_iter().collect();
            self.queued
                .push_back(outgoing(id, FetchRequest::Metadata { topics }));
        }
        self.plan_resets(now);
        self.plan_validations(now);
        self.plan_fetches(now);
    }

    fn plan_resets(&mut self, now: Instant) {
        let mut due = Vec::new();
        let mut no_position = Vec::new();
        for (tp, a) in self.partitions.edit() {
            if a.resetting {
                continue;
            }
            let Some(reason) = a.state.needs_reset(now) else {
                continue;
            };
            if self.config.reset_policy == ResetPolicy::None {
                if !a.no_position_told {
                    a.no_position_told = true;
                    no_position.push(tp.clone());
                }
                continue;
            }
            a.resetting = true;
            due.push((tp.clone(), reason, a.reset_to_latest));
        }
        if !no_position.is_empty() {
            self.events.push_back(FetchEvent::NoPosition {
                partitions: no_position,
            });
        }
        // One ListOffsets per leader and policy: the configured one, and `latest` for
        // partitions whose by_duration lookup found nothing. Each goes to the partition's
        // leader, as the Java client's `OffsetFetcher` groups its lookups by node; a partition
        // whose leader is unknown waits for the metadata (its reset stays due).
        // (leader, to latest) → (partition, why, its leader epoch).
        type Lookup = (TopicPartition, ResetReason, Option<i32>);
        let mut requests: BTreeMap<(i32, bool), Vec<Lookup>> = BTreeMap::new();
        for (tp, reason, to_latest) in due {
            // Invariant: `due` holds assigned partitions.
            let a = self
                .partitions
                .edit()
                .get_mut(&tp)
                .expect("an assigned partition");
            let leader = a.state.leader();
            let Some(broker) = leader.leader else {
                a.resetting = false;
                self.metadata_wanted = true;
                continue;
            };
            requests
                .entry((broker, to_latest))
                .or_default()
                .push((tp, reason, leader.epoch));
        }
        for ((broker, to_latest), due) in requests {
            let policy = if to_latest {
                ResetPolicy::Latest
            } else {
                self.config.reset_policy
            };
            let id = self.id();
            let partitions = due.iter().map(|(tp, _, e)| (tp.clone(), *e)).collect();
            let due = due
                .into_iter()
                .map(|(tp, reason, _)| (tp, reason))
                .collect();
            self.pending.insert(
                id,
                Pending::ListOffsets {
                    broker,
                    partitions: due,
                },
            );
            self.queued.push_back(outgoing(
                id,
                FetchRequest::ListOffsets {
                    broker,
                    partitions,
                    policy,
                },
            ));
        }
    }

    fn plan_validations(&mut self, now: Instant) {
        let brokers = &self.brokers;
        let mut connect = BTreeSet::new();
        // Only partitions whose leader's versions are known: `plan_validation` completes the
        // others at once (their leader "cannot validate"), which must not happen to a leader we
        // simply have not connected to yet.
        let candidates = self.partitions.edit().iter_mut().filter(|(_, a)| {
            // Checked first: this runs after every input, over every assigned partition, and
            // almost none needs validation.
            if a.validating || !a.state.needs_validation(now) {
                return false;
            }
            let leader = a.state.position().and_then(|p| p.current_leader.leader);
            match leader.map(|id| brokers.get(&id).and_then(|b| b.info)) {
                Some(Some(_)) => true,
                Some(None) => {
                    if let Some(id) = leader {
                        connect.insert(id);
                    }
                    false
                }
                None => false,
            }
        });
        let plan = plan_validation(candidates.map(|(tp, a)| (tp, &mut a.state)), now, |id| {
            brokers
                .get(&id)
                .and_then(|b| b.info)
                .is_some_and(|i| i.can_validate)
        });
        for id in connect {
            self.connect(now, id);
        }
        for request in plan.requests {
            for q in &request.queries {
                if let Some(a) = self.partitions.edit().get_mut(&q.partition) {
                    a.validating = true;
                }
            }
            let id = self.id();
            self.pending.insert(
                id,
                Pending::Validate {
                    queries: request.queries.clone(),
                },
            );
            self.queued
                .push_back(outgoing(id, FetchRequest::Validate(request)));
        }
    }

    fn connect(&mut self, now: Instant, broker: i32) {
        let b = self.brokers.entry(broker).or_default();
        if b.connecting || b.info.is_some() || b.retry_at.is_some_and(|t| now < t) {
            return;
        }
        b.connecting = true;
        let id = self.id();
        self.pending.insert(id, Pending::Connect { broker });
        self.queued
            .push_back(outgoing(id, FetchRequest::Connect { broker }));
    }

    /// The brokers a Fetch may go to now, each with its candidates (the partitions it serves
    /// now, in the map's order), and brokers whose versions are unknown yet, with none (they
    /// are connected to). A broker with a Fetch in flight or backing off is left out, and so
    /// is one whose Fetch is held back (below). An expired read replica is dropped on the way.
    ///
    /// This runs after every input that drained a partition, over every assigned partition:
    /// with thousands of them, a name copied or looked up per partition each time cost more
    /// than the records (at 2,000 partitions, over twice the CPU per record of 6). So the walk
    /// that decides looks at each partition's own state and at a short list of brokers, and
    /// names are gathered in a second walk only when a Fetch goes out: while the application
    /// drains one partition after another, most plans hold their Fetch back and take one walk.
    fn fetchable(&mut self, now: Instant) -> Vec<(i32, Vec<TopicPartition>)> {
        // The brokers no Fetch may go to now: few, so a scan beats a map's lookup.
        let busy: Vec<i32> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.fetching.is_some() || b.retry_at.is_some_and(|t| now < t))
            .map(|(id, _)| *id)
            .collect();
        // The brokers that serve a fetchable partition now, each with whether one of its
        // partitions is behind: it may be below its high watermark and has nothing buffered.
        let mut serving: Vec<(i32, bool)> = Vec::new();
        let budget = &self.budget;
        for (tp, a) in self.partitions.edit() {
            let Some(broker) = a.state.fetch_target(now) else {
                continue;
            };
            if busy.contains(&broker) {
                continue;
            }
            let i = match serving.iter().position(|(b, _)| *b == broker) {
                Some(i) => i,
                None => {
                    serving.push((broker, false));
                    serving.len() - 1
                }
            };
            if serving[i].1 {
                continue;
            }
            serving[i].1 = a.below_high_watermark() && budget.buffered_for(tp) == 0;
        }
        let mut due: Vec<(i32, Vec<TopicPartition>)> = Vec::new();
        let mut gather = Vec::new();
        serving.sort_unstable();
        for (broker, behind) in serving {
            let known = self.brokers.get(&broker).is_some_and(|b| b.info.is_some());
            // A Fetch carrying only partitions already at their high watermark waits at the
            // broker for `fetch.max.wait.ms`, and with one Fetch in flight per broker the
            // partitions the application is draining meanwhile would wait for it too. While
            // one of this broker's partitions still has records being taken, hold such a
            // Fetch back: its drain plans again, and the Fetch then carries both. (Paused
            // partitions have no fetch target, so they never hold one back.) A partition with
            // records buffered is not behind: it is not fetched until drained.
            if known && !behind && self.draining(now, broker) {
                continue;
            }
            if known {
                gather.push(due.len());
            }
            due.push((broker, Vec::new()));
        }
        if !gather.is_empty() {
            for (tp, a) in self.partitions.iter() {
                let Some(broker) = a.state.target_at(now) else {
                    continue;
                };
                if let Some(&i) = gather.iter().find(|&&i| due[i].0 == broker) {
                    due[i].1.push(tp.clone());
                }
            }
        }
        due
    }

    /// Whether records buffered for one of the partitions `broker` serves now are still being
    /// taken by the application. Asked of the buffered partitions, which a draining consumer
    /// finds at the first.
    fn draining(&self, now: Instant, broker: i32) -> bool {
        self.budget
            .buffered_partitions()
            .any(|tp| self.partitions.get(tp).and_then(|a| a.state.target_at(now)) == Some(broker))
    }

    fn plan_fetches(&mut self, now: Instant) {
        let due = self.fetchable(now);
        for (broker, candidates) in due {
            let b = self.brokers.entry(broker).or_default();
            let Some(info) = b.info else {
                self.connect(now, broker);
                continue;
            };
            let Some(grant) = self.budget.grant(broker, candidates) else {
                continue;
            };
            let mut wanted = BTreeMap::new();
            for tp in grant.partitions {
                // Invariant: the candidates are assigned partitions with a position (they
                // had a fetch target).
                let Some(a) = self.partitions.get(&tp) else {
                    continue;
                };
                let Some(position) = a.state.position() else {
                    continue;
                };
                // The last fetched epoch lets the leader tell a log that parts from what was
                // read (KIP-320). A follower's log may lack an epoch the leader began until a
                // record is written in it, and would answer a diverging epoch at once, every
                // time: a follower is asked without one (as the Java client asks every
                // broker), as for a reader its log is the leader's, only behind.
                let to_leader = a.state.leader().leader == Some(broker);
                wanted.insert(
                    tp,
                    PartitionFetch {
                        topic_id: a.topic_id,
                        fetch_offset: position.offset,
                        log_start_offset: -1,
                        current_leader_epoch: a.state.leader().epoch,
                        last_fetched_epoch: position.offset_epoch.filter(|_| to_leader),
                        partition_max_bytes: self.config.partition_max_bytes,
                    },
                );
            }
            let version = info.fetch_version;
            let b = self.brokers.entry(broker).or_default();
            let session = match b.session.build(&wanted, version) {
                Ok(s) => s,
                Err(e) => {
                    // Fetch v13+ and a topic the metadata gave no id: the pool cannot send an
                    // older version on the connection, so wait for metadata with the id.
                    warn!(broker, %e, "could not build a Fetch");
                    self.budget.failed(broker);
                    self.broker_backoff(now, broker, BrokerFailure::Answer(e.to_string()));
                    self.metadata_wanted = true;
                    continue;
                }
            };
            let offsets = wanted
                .iter()
                .map(|(tp, p)| (tp.clone(), p.fetch_offset))
                .collect();
            self.next_id += 1;
            let id = RequestId::new(self.next_id);
            b.fetching = Some(id);
            self.pending.insert(id, Pending::Fetch { broker, offsets });
            self.queued.push_back(outgoing(
                id,
                FetchRequest::Fetch {
                    broker,
                    version,
                    session,
                    params: self.config.params(grant.max_bytes),
                    apart: false,
                },
            ));
        }
    }

    fn on_fetch_failed(
        &mut self,
        now: Instant,
        broker: i32,
        offsets: &BTreeMap<TopicPartition, i64>,
        e: &RequestFailure,
    ) {
        debug!(broker, %e, "Fetch failed");
        self.budget.failed(broker);
        let b = self.brokers.entry(broker).or_default();
        b.fetching = None;
        // The session's next request is full (the broker may or may not have applied this
        // one); the versions are asked again, as the connection may be a new one.
        let _ = b.session.handle_failure();
        b.info = None;
        self.broker_backoff(now, broker, BrokerFailure::Request(e));
        for tp in offsets.keys() {
            if let Some(a) = self.partitions.edit().get_mut(tp) {
                a.state.broker_failed(broker);
            }
        }
        self.metadata_wanted = true;
    }

    fn on_fetch(
        &mut self,
        now: Instant,
        broker: i32,
        offsets: &BTreeMap<TopicPartition, i64>,
        response: &FetchResponse,
    ) {
        let b = self.brokers.entry(broker).or_default();
        b.fetching = None;
        let outcome = match b.session.handle_response(response) {
            Ok(o) => o,
            Err(e) => {
                // Closed meanwhile: the answer is of no use.
                debug!(broker, %e, "Fetch answer ignored");
                self.budget.failed(broker);
                return;
            }
        };
        if let SessionOutcome::Reset(reason) = outcome {
            self.budget.failed(broker);
            if reason.needs_metadata_refresh() {
                self.metadata_wanted = true;
            }
            // A session error is answered by a full fetch at once; any other top-level error
            // backs the broker off, so an error answered at once cannot become a loop.
            if !matches!(
                reason,
                crate::session::SessionReset::SessionNotFound
                    | crate::session::SessionReset::InvalidEpoch
            ) {
                self.broker_backoff(now, broker, BrokerFailure::Answer(format!("{reason:?}")));
            }
            return;
        }
        if let Some(t) = self.broker_tries.get_mut(&broker) {
            let report = t.succeeded(now);
            self.tell(report);
        }
        let ctx = self.ctx(now);
        let read_committed = self.config.isolation_level == IsolationLevel::ReadCommitted;
        let mut received = Vec::new();
        let mut repositioned = Vec::new();
        for t in &response.responses {
            let name = if t.topic.is_empty() {
                let id = TopicId(*t.topic_id.as_bytes());
                match self
                    .brokers
                    .get(&broker)
                    .and_then(|b| b.session.topic_name(id))
                {
                    Some(n) => n.to_owned(),
                    None => continue,
                }
            } else {
                t.topic.to_string()
            };
            for p in &t.partitions {
                let tp = TopicPartition::new(name.as_str(), p.partition_index);
                let Some(&fetch_offset) = offsets.get(&tp) else {
                    continue;
                };
                let Some(a) = self.partitions.edit().get_mut(&tp) else {
                    continue;
                };
                let mut answer = PartitionAnswer::error(broker, fetch_offset, p.error_code);
                answer.preferred_read_replica =
                    (p.preferred_read_replica.0 >= 0).then_some(p.preferred_read_replica.0);
                let hint = &p.current_leader;
                answer.leader_hint = (hint.leader_id.0 >= 0)
                    .then(|| LeaderAndEpoch::new(hint.leader_id.0, hint.leader_epoch));
                // Java `FetchResponse.isDivergingEpoch`: an epoch of -1 means none.
                answer.diverging = (p.diverging_epoch.epoch >= 0).then_some(DivergingEpoch {
                    epoch: p.diverging_epoch.epoch,
                    end_offset: p.diverging_epoch.end_offset,
                });
                if p.error_code == 0 && p.high_watermark >= 0 {
                    a.high_watermark = Some(p.high_watermark);
                }
                let mut checked = match (&p.records, p.error_code) {
                    // An answer with a diverging epoch has no records to read (Kafka sends
                    // none); whatever came is not delivered.
                    _ if answer.diverging.is_some() => None,
                    (Some(bytes), 0) if !bytes.is_empty() => {
                        let aborted = read_committed.then(|| {
                            p.aborted_transactions
                                .iter()
                                .flatten()
                                .map(AbortedTransaction::from)
                                .collect()
                        });
                        Some(check_partition(
                            &tp,
                            a.topic,
                            bytes.clone(),
                            fetch_offset,
                            a.state.position().and_then(|p| p.offset_epoch),
                            aborted,
                            p.last_stable_offset,
                        ))
                    }
                    _ => None,
                };
                answer.corrupt_at = checked.as_ref().and_then(|c| c.corrupt_at);
                let (state, actions) = a.state.on_fetch_answer(&answer, &ctx);
                a.state = state;
                let mut delivered = false;
                for action in actions {
                    match action {
                        FetchAction::Deliver => {
                            let Some(d) = checked.as_mut() else { continue };
                            if d.batches.is_empty() {
                                // Only control batches or aborted data: move past them.
                                a.state.advance(d.position, None);
                                continue;
                            }
                            let fetched = p.records.as_ref().map_or(0, |b| b.len());
                            let size = fetched + d.decompressed;
                            received.push((tp.clone(), size));
                            let mut records = FetchedRecords::new(
                                tp.clone(),
                                Vec::new(),
                                d.position,
                                p.high_watermark,
                                size,
                            );
                            records.last_stable_offset = p.last_stable_offset;
                            records.bytes = fetched;
                            delivered = true;
                            a.told = Some((p.high_watermark, p.last_stable_offset, d.position));
                            // Delivered once per answer: the batches move out.
                            records.undecoded = std::mem::take(&mut d.batches);
                            // Accepted: the next Fetch starts past them. The partition is not
                            // fetched again before the application takes them (their bytes,
                            // in `received`, join the budget below), and an answer still on
                            // its way for the old offset is stale from now.
                            a.state
                                .advance(records.next_offset, records.last_leader_epoch());
                            if a.state.is_paused() {
                                a.held.push_back(records);
                            } else {
                                self.events.push_back(FetchEvent::Records(records));
                            }
                        }
                        FetchAction::Discard => {}
                        FetchAction::RefreshMetadata => self.metadata_wanted = true,
                        // The partition awaits its reset; `plan_resets` sends it.
                        FetchAction::Reset(_) => {}
                        FetchAction::Report(PartitionError::Corrupt { offset })
                            if a.corrupt_told == Some(offset) => {}
                        FetchAction::Report(error) => {
                            if let PartitionError::Corrupt { offset } = error {
                                a.corrupt_told = Some(offset);
                            }
                            if matches!(
                                error,
                                PartitionError::LogTruncation {
                                    repositioned: true,
                                    ..
                                }
                            ) {
                                repositioned.push(tp.clone());
                            }
                            self.events.push_back(FetchEvent::PartitionError {
                                partition: tp.clone(),
                                error,
                            })
                        }
                    }
                }
                // No records for it: the owner hears of the log's end (and of a position moved
                // past control batches) when they changed, with no records to carry them.
                if !delivered
                    && p.error_code == 0
                    && p.high_watermark >= 0
                    && !a.state.is_paused()
                    && let Some(position) = a.state.position()
                {
                    let now_at = (p.high_watermark, p.last_stable_offset, position.offset);
                    if a.told != Some(now_at) {
                        a.told = Some(now_at);
                        let mut end = FetchedRecords::new(
                            tp.clone(),
                            Vec::new(),
                            position.offset,
                            p.high_watermark,
                            0,
                        );
                        end.last_stable_offset = p.last_stable_offset;
                        self.events.push_back(FetchEvent::Records(end));
                    }
                }
                // A leader hint may have sent it to validation (KIP-320).
                if a.give_up_held() {
                    self.budget.discard(&tp);
                }
            }
        }
        self.budget.complete(broker, received);
        // A diverging epoch moved these (or sent them to a reset): as after validation, what
        // was fetched for the old position must not reach the application.
        for tp in repositioned {
            self.drop_buffered(&tp);
        }
    }

    /// The answer to a reset lookup that went to `broker`: each partition's position, or its
    /// failure. A lookup any partition of which failed counts one failure of the broker's
    /// reset lookups, whose backoff the failed partitions wait; one that failed none is their
    /// success.
    fn on_reset_answers(
        &mut self,
        now: Instant,
        broker: i32,
        partitions: Vec<(TopicPartition, ResetReason)>,
        answer: Result<&BTreeMap<TopicPartition, ListedOffset>, &RequestFailure>,
    ) {
        let mut failed = Vec::new();
        let mut refusals: BTreeMap<i16, usize> = BTreeMap::new();
        for (tp, reason) in partitions {
            let listed = match answer {
                Ok(answer) => answer.get(&tp).copied(),
                Err(_) => None,
            };
            if !self.on_reset_answer(&tp, reason, listed) {
                if let Some(l) = listed {
                    *refusals.entry(l.error_code).or_default() += 1;
                }
                failed.push(tp);
            }
        }
        let random = self.rng.f64();
        let policy = self.config.retry_backoff_policy();
        let tracker = self.reset_tries.entry(broker).or_insert_with(|| {
            FailureTracker::new(
                ApiKey::ListOffsets,
                format!(
                    "the offset resets of partitions led by broker {broker} (auto.offset.reset)"
                ),
                policy,
            )
        });
        if failed.is_empty() {
            // The broker answered for every partition it leads: which of its addresses is not
            // known here, so the recovery names no broker.
            let report = tracker.succeeded_by(now, None);
            self.tell(report);
            return;
        }
        let failure = match answer {
            Err(f) => tracker.failed(now, f, random),
            Ok(_) => {
                let cause = if refusals.is_empty() {
                    format!("ListOffsets answered without {} partition(s)", failed.len())
                } else {
                    refusals
                        .iter()
                        .map(|(code, n)| format!("{} for {n} partition(s)", error_name(*code)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                tracker.refused(now, cause, None, random)
            }
        };
        for tp in &failed {
            if let Some(a) = self.partitions.edit().get_mut(tp) {
                a.state.reset_failed_until(failure.retry_at);
            }
        }
        self.tell(failure.report);
    }

    /// One partition's reset answer; false when it failed (the caller backs it off).
    fn on_reset_answer(
        &mut self,
        tp: &TopicPartition,
        reason: ResetReason,
        listed: Option<ListedOffset>,
    ) -> bool {
        let Some(a) = self.partitions.edit().get_mut(tp) else {
            return true;
        };
        a.resetting = false;
        match listed {
            Some(l) if l.error_code == 0 && l.offset >= 0 => {
                a.reset_to_latest = false;
                if a.state.complete_reset(l.offset, l.leader_epoch) {
                    self.events.push_back(FetchEvent::Reset {
                        partition: tp.clone(),
                        reason,
                        offset: l.offset,
                    });
                }
                true
            }
            // By timestamp, no record that recent answers offset -1 without an error. KIP-1106:
            // `by_duration` then resets to the end of the log. The partition stays awaiting
            // its reset with no backoff, and the next `plan_resets` asks `latest` for it (the
            // answer to a lookup by time cannot tell the end; asking the same again would
            // answer -1 forever).
            Some(l)
                if l.error_code == 0
                    && matches!(self.config.reset_policy, ResetPolicy::ByDuration(_))
                    && !a.reset_to_latest =>
            {
                debug!(%tp, "no record within auto.offset.reset's duration: reset to latest");
                a.reset_to_latest = true;
                true
            }
            Some(l) => {
                if kcon_core::error_codes::is_stale_metadata_error(l.error_code) {
                    self.metadata_wanted = true;
                }
                self.events.push_back(FetchEvent::ResetFailed {
                    partition: tp.clone(),
                    error_code: l.error_code,
                });
                false
            }
            None => false,
        }
    }

    fn on_validation_answer(
        &mut self,
        now: Instant,
        q: &EpochQuery,
        answer: Option<&crate::validation::EpochAnswer>,
    ) {
        let ctx = self.ctx(now);
        let Some(a) = self.partitions.edit().get_mut(&q.partition) else {
            return;
        };
        a.validating = false;
        let Some(answer) = answer else {
            a.state.validation_failed(now, &ctx.retry_backoff);
            return;
        };
        let (state, actions) = a.state.on_validation_answer(&q.position, answer, &ctx);
        a.state = state;
        let mut repositioned = false;
        for action in actions {
            match action {
                FetchAction::RefreshMetadata => self.metadata_wanted = true,
                FetchAction::Report(error) => {
                    repositioned |= matches!(
                        error,
                        PartitionError::LogTruncation {
                            repositioned: true,
                            ..
                        }
                    );
                    self.events.push_back(FetchEvent::PartitionError {
                        partition: q.partition.clone(),
                        error,
                    });
                }
                FetchAction::Deliver | FetchAction::Discard | FetchAction::Reset(_) => {}
            }
        }
        if repositioned {
            // A truncation under a reset policy moved the position, or sent it to a reset:
            // what was fetched for the old one must not reach the application. The bytes of
            // it all leave the budget here, those of records the hand-out side holds for a
            // pause too: it drops them when the truncation's event reaches it (but those
            // before the divergence, which it keeps counting no bytes). A position found
            // valid keeps its records, and their bytes.
            self.drop_buffered(&q.partition);
        }
    }
}

impl Machine for FetchMachine {
    type Request = FetchRequest;
    type Target = kcon_core::Target;
    type Response = FetchAnswer;
    type Event = FetchEvent;

    /// The next request to send.
    fn poll_request(&mut self, now: Instant) -> Option<Outgoing> {
        self.now = now;
        if self.queued.is_empty() && !self.closing {
            let fetches_only = !self.plan_all;
            if std::mem::take(&mut self.plan_all) {
                self.fetches_due = false;
                self.plan(now);
            } else if std::mem::take(&mut self.fetches_due)
                && self.brokers.values().any(|b| b.fetching.is_none())
            {
                self.plan_fetches(now);
            }
            // What a plan queued changes what the next may ask (as every plan did when the
            // queue ran empty): once these are out, plan again.
            if !self.queued.is_empty() {
                if fetches_only {
                    self.fetches_due = true;
                } else {
                    self.plan_all = true;
                }
            }
        }
        self.queued.pop_front()
    }

    /// The next event for the application, as the inputs queued them. Polling changes nothing
    /// else: a partition's position moved when its records were accepted, and records of a
    /// paused partition are not queued until it is resumed ([`pause`](FetchMachine::pause),
    /// [`resume`](FetchMachine::resume)).
    fn poll_event(&mut self) -> Option<FetchEvent> {
        self.events.pop_front()
    }

    /// The earliest timer still ahead: the table's (the metadata retry), or a partition's or a
    /// broker's backoff, kept per key beside their state. Backoffs passed are left in place
    /// (a partition's is read as "not before"), so only those ahead count.
    fn poll_timeout(&self) -> Option<Instant> {
        let partitions = self.partitions.next_backoff(self.now);
        let brokers = self.brokers.values().filter_map(|b| b.retry_at);
        partitions
            .into_iter()
            .chain(brokers)
            .chain(self.timers.next())
            .filter(|t| *t > self.now)
            .min()
    }

    /// Time passed: backoffs that ended let their partitions be fetched again (picked up by
    /// the next [`poll_request`](Self::poll_request)).
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.plan_all = true;
        let timers = self.timers;
        for timer in timers.expired(now) {
            match timer {
                // The refresh goes with the next plan, if it is still wanted.
                Timer::MetadataRetry => self.timers.stop(timer),
            }
        }
    }

    /// The answer to request `id`, or why there was none.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<FetchAnswer, RequestFailure>,
    ) {
        self.now = now;
        self.plan_all = true;
        let Some(pending) = self.pending.remove(&id) else {
            debug!(
                ?id,
                "an answer to a request the fetcher no longer waits for"
            );
            return;
        };
        match (pending, result) {
            (Pending::Fetch { broker, offsets }, Ok(FetchAnswer::Fetch(r))) => {
                self.on_fetch(now, broker, &offsets, &r);
            }
            (Pending::Fetch { broker, offsets }, Err(e)) => {
                self.on_fetch_failed(now, broker, &offsets, &e)
            }
            (Pending::Close { broker }, result) => {
                debug!(broker, ok = result.is_ok(), "fetch session close answered");
                self.tell_if_closed();
            }
            (Pending::Connect { broker }, Ok(FetchAnswer::Broker(info))) => {
                let b = self.brokers.entry(broker).or_default();
                b.connecting = false;
                b.info = Some(info);
            }
            (Pending::Connect { broker }, Err(e)) => {
                debug!(broker, %e, "could not learn the broker's versions");
                self.brokers.entry(broker).or_default().connecting = false;
                self.broker_backoff(now, broker, BrokerFailure::Request(&e));
                self.metadata_wanted = true;
                // A read replica we cannot reach is given up for the leader (Java
                // `AbstractFetch.selectReadReplica` falls back when the node is offline);
                // otherwise a partition would wait on a dead follower for the whole lease.
                for a in self.partitions.edit().values_mut() {
                    a.state.broker_failed(broker);
                }
            }
            (Pending::ListOffsets { broker, partitions }, Ok(FetchAnswer::ListOffsets(answer))) => {
                self.on_reset_answers(now, broker, partitions, Ok(&answer))
            }
            (Pending::ListOffsets { broker, partitions }, Err(e)) => {
                self.on_reset_answers(now, broker, partitions, Err(&e));
            }
            (Pending::Validate { queries }, Ok(FetchAnswer::Validation(r))) => {
                let answers = epoch_answers(&r);
                for q in queries {
                    self.on_validation_answer(now, &q, answers.get(&q.partition));
                }
            }
            (Pending::Validate { queries }, Err(e)) => {
                debug!(%e, "OffsetForLeaderEpoch failed");
                for q in queries {
                    self.on_validation_answer(now, &q, None);
                }
            }
            (Pending::Metadata, Ok(FetchAnswer::Metadata(view))) => {
                self.metadata_in_flight = false;
                self.metadata_updated(now, &view);
            }
            (Pending::Metadata, Err(e)) => {
                debug!(%e, "metadata refresh failed");
                self.metadata_in_flight = false;
                self.metadata_wanted = true;
                self.metadata_backoff(now, BrokerFailure::Request(&e));
            }
            (pending, Ok(other)) => {
                // A driver bug: the answer is not of the request's kind. Treated as a failure
                // so that nothing waits forever.
                warn!(?pending, ?other, "an answer of the wrong kind");
                let failure = Err(RequestFailure::retriable("an answer of the wrong kind"));
                self.pending.insert(id, pending);
                self.handle_response(now, id, failure);
            }
        }
    }
}

/// Records a failure in `tracker`.
fn record(
    tracker: &mut FailureTracker,
    now: Instant,
    why: BrokerFailure<'_>,
    random: f64,
) -> Failed {
    match why {
        BrokerFailure::Request(f) => tracker.failed(now, f, random),
        BrokerFailure::Answer(cause) => tracker.refused(now, cause, None, random),
    }
}

/// A request of the machine, to where it goes.
fn outgoing(id: RequestId, request: FetchRequest) -> Outgoing {
    Outgoing {
        id,
        target: request.target(),
        request,
        timeout: None,
    }
}

/// Whether a request is a session close (for drivers and tests).
pub fn is_session_close(request: &FetchRequest) -> bool {
    matches!(request, FetchRequest::Fetch { session, .. } if session.kind == RequestKind::Close)
}
