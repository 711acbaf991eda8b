//! The group membership state machine: classic consumer groups (JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup), eager and cooperative (KIP-429), static membership (KIP-345).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator::CoordinatorLookup;
use kcon_core::error_codes::{code, error_name, is_fatal_group_error};
use kcon_core::failure::Failed;
use kcon_core::{
    Coordinator, ExponentialBackoff, FailureTracker, PersistentFailure, RequestFailure, RequestId,
    RequestIds, Target, TopicId, TopicPartition,
};
use tracing::{debug, info, warn};

use crate::assignor::{Assignor, MemberSubscription, RebalanceProtocol, TopicPartitions};
use crate::config::GroupConfig;
use crate::error::GroupError;
use crate::lookup::{Answer, LookupFirst, LookupOutcome, LookupParts};
use crate::member::Member;
use crate::messages::{
    GroupRequest, GroupResponse, Heartbeat, JoinGroup, JoinGroupAnswer, LeaveGroup, Outgoing,
    SyncGroup,
};
use crate::revocation::Revocation;
use kcon_codec::consumer_protocol::{self as protocol, Assignment, Subscription};

mod coordinator;
pub(crate) use coordinator::coordinator_error;
mod heartbeat;
mod join;
mod leave;
mod snapshot;
#[cfg(test)]
mod tests;
mod timers;

use timers::{Timer, Timers};

/// The protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Why the leader rejoins when a topic's partition count changed (KIP-800 join reason).
const PARTITION_COUNT_CHANGED: &str = "the leader saw the partition count of a topic change";

/// Why the leader rejoins when partitions it withheld were not handed over in time.
const FOLLOW_UP_MISSING: &str =
    "partitions the leader withheld for a cooperative follow-up rebalance are still unassigned";

/// How long after the SyncGroup that revoked partitions a cooperative member waits, at the
/// least, before it rejoins to hand them over (KIP-429's second rebalance). The Java client's
/// `ConsumerCoordinator` and librdkafka rejoin as soon as the revocation is done.
///
/// The rejoin starts the next generation, and the coordinator then answers REBALANCE_IN_PROGRESS
/// to any SyncGroup of the current one still waiting: that member never learns what the
/// generation took from it, keeps those partitions, and a further generation must ask again.
/// Kafka's coordinator answers every waiting SyncGroup the moment the leader's arrives, so
/// nothing is waiting by the time anyone rejoins. Tansu looks at a waiting SyncGroup once a
/// second. Step by step (Tansu 0.6, four members and a fifth joining, every old member giving
/// one partition up): (1) at S the leader's SyncGroup completes generation N and the leader
/// learns its revocation; the followers' SyncGroups, sent before S, wait for their next look,
/// up to a second later; (2) the leader revokes and rejoins at S, which starts generation N+1
/// at once; (3) each follower's look finds N+1, and its SyncGroup waits for 0.8 ×
/// `session.timeout.ms` and fails; (4) the followers rejoin still owning what they should
/// have given up, N+1 withholds it again, and whichever member learns its revocation first
/// ends N+1 for the others the same way. Measured: up to seven generations and 23 s for the
/// join, where KIP-429 needs two.
///
/// Every member's SyncGroup is answered by S + 1 s, and each member learns its own assignment
/// at S or later: waiting a little over a second from there lets all of them through. Against
/// Kafka's coordinator the hand-over comes this much later.
const HANDOVER_DELAY: Duration = Duration::from_millis(1500);

/// What the machine tells the application, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GroupEvent {
    /// The member joined a generation (informational: partitions come with `Assigned`).
    Joined {
        /// The generation.
        generation_id: i32,
        /// The member id.
        member_id: String,
        /// Whether this member leads the generation (it ran the assignor).
        leader: bool,
    },
    /// Partitions newly assigned to the member: start consuming them. Under the cooperative
    /// protocol these are only the partitions added; those kept are not repeated.
    Assigned {
        /// The partitions added.
        partitions: Vec<TopicPartition>,
        /// The generation they were assigned in.
        generation_id: i32,
    },
    /// Partitions the member must give up. The application stops consuming them, may commit
    /// their offsets (the generation is still valid), and then calls
    /// [`GroupMachine::revocation_done`] with `id`; the machine waits for that, at most
    /// `max.poll.interval.ms`, before rejoining or leaving.
    Revoked {
        /// The partitions to give up.
        partitions: Vec<TopicPartition>,
        /// What to acknowledge the revocation with.
        id: RevocationId,
    },
    /// Partitions the member no longer owns and could not give up in order: its generation or
    /// member id was refused, or it stopped polling. Committing their offsets is no longer
    /// allowed; another member may already own them.
    Lost {
        /// The partitions lost.
        partitions: Vec<TopicPartition>,
    },
    /// The member cannot go on; the machine does nothing more.
    Fatal(GroupError),
    /// The member left the group after [`GroupMachine::close`]; the machine does nothing
    /// more.
    Closed,
    /// A request the member needs keeps failing (logged at WARN already), or recovered after it
    /// was reported: the member goes on trying, and the application may want to know.
    PersistentFailure(PersistentFailure),
}

/// Identifies a [`GroupEvent::Revoked`] to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RevocationId(u64);

impl RevocationId {
    /// The `n`th revocation of a member (the consumer-protocol member numbers its own).
    pub(crate) fn new(n: u64) -> RevocationId {
        RevocationId(n)
    }
}

/// The member's place in the group, as offset commits need it (generation, member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generation id; -1 when the member has none.
    pub id: i32,
    /// The member id; empty before the coordinator gave one.
    pub member_id: String,
    /// The assignor chosen for the generation.
    pub protocol_name: Option<String>,
}

impl Generation {
    fn none() -> Generation {
        Generation {
            id: -1,
            member_id: String::new(),
            protocol_name: None,
        }
    }

    /// Whether the member belongs to a generation.
    pub fn is_valid(&self) -> bool {
        self.id >= 0 && !self.member_id.is_empty()
    }
}

/// A coarse view of the machine's state, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberState {
    /// Not subscribed: not a member.
    Idle,
    /// Waiting for the application to acknowledge a revocation.
    Revoking,
    /// JoinGroup being sent or awaited (PREPARING_REBALANCE).
    Joining,
    /// The leader is fetching metadata to run the assignor.
    Assigning,
    /// SyncGroup being sent or awaited (COMPLETING_REBALANCE).
    Syncing,
    /// In a generation with an assignment.
    Stable,
    /// Left the group because the application stopped polling; rejoins on the next poll.
    PollExpired,
    /// LeaveGroup being sent after `close` or `unsubscribe`.
    Leaving,
    /// Closed.
    Closed,
    /// Stopped by a fatal error.
    Failed,
}

/// The state machine of one classic consumer-group member. It does no IO and reads no clock:
/// time comes in as `now` arguments, randomness (backoff jitter) from a seed.
///
/// # Driving it
/// - Inputs: [`subscribe`](Self::subscribe), [`unsubscribe`](Self::unsubscribe),
///   [`application_polled`](Self::application_polled),
///   [`revocation_done`](Self::revocation_done), [`close`](Self::close),
///   [`metadata_updated`](Self::metadata_updated) (application and environment);
///   [`handle_response`](kcon_core::Machine::handle_response) (the answer, or failure, of a
///   request it asked for); [`handle_timeout`](kcon_core::Machine::handle_timeout) (once
///   `poll_timeout` has passed).
/// - Outputs: [`poll_request`](kcon_core::Machine::poll_request) (send these),
///   [`poll_event`](kcon_core::Machine::poll_event) (tell the application),
///   [`poll_timeout`](kcon_core::Machine::poll_timeout) (call `handle_timeout` then).
/// - After any input, drain `poll_request` and `poll_event` until they return `None`, then
///   read `poll_timeout` again. Every answer must come back exactly once, through
///   `handle_response`, even when the request failed; answers to requests the machine no
///   longer cares about are ignored.
///
/// See DESIGN.md for the state diagram.
#[derive(Debug)]
pub struct GroupMachine {
    config: GroupConfig,
    protocol: RebalanceProtocol,
    backoff: ExponentialBackoff,
    rng: fastrand::Rng,
    ids: RequestIds,
    /// The topics subscribed to.
    topics: BTreeSet<String>,
    phase: Phase,
    coordinator: CoordinatorLookup,
    generation: Generation,
    /// The partitions the member owns (including those whose revocation is pending).
    assignment: BTreeSet<TopicPartition>,
    /// The generation `assignment` was received in (the last SyncGroup that completed), -1
    /// when the member owns nothing through a generation. A cooperative subscription states
    /// this one, not the generation last joined: see `join_request`.
    owned_generation: i32,
    /// What the member owned before an eager revocation: the sticky assignor's user data
    /// carries it into the next join (Java's `StickyAssignor.memberAssignment`).
    previous_assignment: Vec<TopicPartition>,
    /// The generation `previous_assignment` was owned in.
    previous_generation: i32,
    heartbeat: HeartbeatState,
    /// JoinGroups answered REBALANCE_IN_PROGRESS in a row, for the backoff.
    rebalance_attempts: u32,
    /// Failed tries of each request the member retries: the backoff between them, reset only
    /// by the request's own success (not by finding the coordinator again), and the reports.
    tries: Tries,
    /// When the application last polled.
    last_poll: Instant,
    /// The pending revocation, if any.
    revocation: Option<Revocation>,
    next_revocation: u64,
    /// The leader's view of the partition counts it assigned, to rejoin when they change.
    assigned_metadata: Option<BTreeMap<String, usize>>,
    /// As leader, it saw a partition count differ from `assigned_metadata` and rejoins to
    /// assign again; cleared once it assigned from fresh metadata (or stopped leading).
    reassign_needed: bool,
    /// Why the next JoinGroup happens (KIP-800).
    join_reason: String,
    /// A rejoin asked for while a rebalance was under way, done when it completes.
    rejoin_needed: Option<String>,
    /// Why the member leaves (KIP-800).
    leave_reason: String,
    /// A LeaveGroup to send without waiting for its answer (after the poll timeout).
    pending_leave: Option<LeaveGroup>,
    /// Every timer, armed from the state after each input (see `rearm`).
    timers: Timers,
    events: VecDeque<GroupEvent>,
    /// How many times everything owned was lost at once (see [`crate::Member::losses`]).
    losses: u64,
    /// A leader whose assignment withheld partitions (cooperative): the generation it made
    /// it in, and when it rejoins if that generation is still the current one.
    follow_up: Option<(i32, Instant)>,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// Waiting for the application to acknowledge `revocation`, then `then`.
    Revoking(AfterRevoke),
    Joining {
        in_flight: Option<RequestId>,
        retry_at: Option<Instant>,
    },
    /// The leader asks for metadata, then runs the assignor.
    Assigning {
        join: JoinGroupAnswer,
        in_flight: Option<RequestId>,
        retry_at: Option<Instant>,
    },
    Syncing {
        assignments: Vec<(String, Bytes)>,
        in_flight: Option<RequestId>,
    },
    Stable,
    PollExpired,
    Leaving {
        in_flight: Option<RequestId>,
        then: AfterLeave,
    },
    Closed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRevoke {
    /// Rejoin at once (the group is rebalancing, or the subscription changed).
    Join,
    /// Rejoin to hand the partitions over to their new owner (KIP-429's second rebalance), not
    /// before this instant ([`HANDOVER_DELAY`] after the SyncGroup that revoked them).
    HandOver(Instant),
    Leave(AfterLeave),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterLeave {
    /// Unsubscribed: stay out of the group until subscribed again.
    Idle,
    /// Closed for good.
    Closed,
}

/// The requests the member retries after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Try {
    Join,
    Sync,
    Heartbeat,
    /// The leader's Metadata request.
    Metadata,
}

/// The member's requests that are retried after a failure, one tracker each.
#[derive(Debug)]
struct Tries {
    join: FailureTracker,
    sync: FailureTracker,
    heartbeat: FailureTracker,
    /// The leader's Metadata request.
    metadata: FailureTracker,
}

impl Tries {
    fn new(config: &GroupConfig) -> Tries {
        let subject = format!("group {}", config.group_id);
        let tracker =
            |api| FailureTracker::new(api, subject.clone(), config.retry_backoff_policy());
        Tries {
            join: tracker(ApiKey::JoinGroup),
            sync: tracker(ApiKey::SyncGroup),
            heartbeat: tracker(ApiKey::Heartbeat),
            metadata: tracker(ApiKey::Metadata),
        }
    }

    fn clear(&mut self) {
        self.join.clear();
        self.sync.clear();
        self.heartbeat.clear();
        self.metadata.clear();
    }
}

#[derive(Debug)]
struct HeartbeatState {
    /// The heartbeat in flight and the generation it was sent for.
    in_flight: Option<(RequestId, i32)>,
    /// When the next heartbeat is due.
    next_at: Instant,
    /// When the session would expire without a successful heartbeat (Java's session timer).
    session_deadline: Instant,
}

impl GroupMachine {
    /// A member for `config` (validate it first with [`GroupConfig::validate`]), not yet
    /// subscribed. `seed` seeds the backoff jitter.
    pub fn new(config: GroupConfig, now: Instant, seed: u64) -> GroupMachine {
        let mut m = GroupMachine {
            protocol: config.rebalance_protocol(),
            backoff: config.retry_backoff_policy(),
            rng: fastrand::Rng::with_seed(seed),
            ids: RequestIds::default(),
            topics: BTreeSet::new(),
            phase: Phase::Idle,
            coordinator: CoordinatorLookup::new(
                config.group_id.clone(),
                config.retry_backoff_policy(),
            ),
            generation: Generation::none(),
            assignment: BTreeSet::new(),
            owned_generation: -1,
            previous_assignment: Vec::new(),
            previous_generation: -1,
            heartbeat: HeartbeatState {
                in_flight: None,
                next_at: now,
                session_deadline: now + config.session_timeout,
            },
            rebalance_attempts: 0,
            tries: Tries::new(&config),
            last_poll: now,
            revocation: None,
            next_revocation: 0,
            assigned_metadata: None,
            reassign_needed: false,
            join_reason: String::new(),
            rejoin_needed: None,
            leave_reason: String::new(),
            pending_leave: None,
            timers: Timers::new(),
            events: VecDeque::new(),
            losses: 0,
            follow_up: None,
            config,
        };
        m.rearm();
        m
    }

    // ----- queries -----

    /// The rebalance protocol the member follows.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.protocol
    }

    /// The topics subscribed to.
    pub fn subscription(&self) -> &BTreeSet<String> {
        &self.topics
    }

    // ----- application inputs -----

    /// Subscribes to `topics` (replacing the previous subscription): joins the group, or
    /// rejoins when the topics changed. An empty list unsubscribes.
    pub fn subscribe<I, S>(&mut self, now: Instant, topics: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        self.set_subscription(now, topics);
        self.rearm();
    }

    fn set_subscription(&mut self, now: Instant, topics: BTreeSet<String>) {
        if topics.is_empty() {
            self.unsubscribe(now);
            return;
        }
        if self.is_terminated() {
            return;
        }
        if let Phase::Leaving { then, .. } = self.phase {
            // The LeaveGroup goes on; once it is answered the member joins again with these
            // (unless it is closing).
            if then == AfterLeave::Idle {
                self.topics = topics;
                self.last_poll = now;
            }
            return;
        }
        if topics == self.topics && !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.topics = topics;
        self.last_poll = now;
        match self.phase {
            Phase::Idle | Phase::PollExpired | Phase::Stable => {
                self.prepare_rejoin("subscription changed", now);
            }
            // A JoinGroup not yet sent carries the new subscription; one already answered
            // doesn't, so the member rejoins once the current rebalance completes.
            _ => self.rejoin_needed = Some("subscription changed".to_owned()),
        }
    }

    fn acknowledge_revocation(&mut self, now: Instant, id: RevocationId) {
        let Some(r) = &mut self.revocation else {
            return;
        };
        let Some(pos) = r.parts.iter().position(|(i, _)| *i == id) else {
            return;
        };
        // The application gave these up: they leave the assignment now, even if another
        // part of the revocation is still pending.
        let (_, partitions) = r.parts.remove(pos);
        for tp in &partitions {
            self.assignment.remove(tp);
        }
        if r.parts.is_empty() {
            self.finish_revocation(now);
        }
    }

    fn check_partition_counts(&mut self, now: Instant, topics: &TopicPartitions) {
        let Some(assigned) = &self.assigned_metadata else {
            return;
        };
        if self.reassign_needed {
            // A rebalance for an earlier change is under way; it assigns from fresh metadata.
            return;
        }
        let changed = assigned
            .iter()
            .any(|(t, n)| topics.get(t).is_some_and(|p| p.len() != *n));
        if !changed {
            return;
        }
        info!(group = %self.config.group_id, "partition count changed; rejoining");
        // The snapshot is kept (not cleared) until the leader assigns again: if the rejoin
        // comes back with `skip_assignment` (a static leader whose member id was reset), the
        // change must still lead to a real rebalance (`on_join`).
        self.reassign_needed = true;
        let reason = PARTITION_COUNT_CHANGED;
        if matches!(self.phase, Phase::Stable) {
            self.prepare_rejoin(reason, now);
        } else {
            self.rejoin_needed = Some(reason.to_owned());
        }
    }

    // ----- timers -----

    fn fail_broker(&mut self, api: ApiKey, error_code: i16, now: Instant) {
        self.fail(
            GroupError::Broker {
                api_key: api as i16,
                error_code,
                message: None,
            },
            now,
        );
    }

    /// The member cannot go on: the error goes to its owner, who returns it to the application
    /// (a DEBUG line here, so that it is told once).
    fn fail(&mut self, error: GroupError, _now: Instant) {
        debug!(group = %self.config.group_id, %error, "group member failed");
        self.lose_all();
        self.generation = Generation::none();
        self.phase = Phase::Failed;
        self.events.push_back(GroupEvent::Fatal(error));
    }

    /// A try of `request` failed without an answer: its tracker backs off (and may report).
    /// Returns when it may go again.
    fn try_failed(&mut self, request: Try, failure: &RequestFailure, now: Instant) -> Instant {
        let random = self.rng.f64();
        let failed = self.tracker(request).failed(now, failure, random);
        self.after_failure(failed)
    }

    /// A try of `request` was answered with `error_code`, which the member retries.
    fn try_refused(&mut self, request: Try, error_code: i16, now: Instant) -> Instant {
        let random = self.rng.f64();
        let broker = self.coordinator.known().map(Coordinator::name);
        let failed = self
            .tracker(request)
            .refused(now, error_name(error_code), broker, random);
        self.after_failure(failed)
    }

    /// A try of `request` was answered, by the coordinator: it works again.
    fn try_answered(&mut self, request: Try, now: Instant) {
        let broker = self.coordinator.known().map(Coordinator::name);
        let report = self.tracker(request).succeeded_by(now, broker);
        self.tell(report);
    }

    fn after_failure(&mut self, failed: Failed) -> Instant {
        self.tell(failed.report);
        failed.retry_at
    }

    fn tracker(&mut self, request: Try) -> &mut FailureTracker {
        match request {
            Try::Join => &mut self.tries.join,
            Try::Sync => &mut self.tries.sync,
            Try::Heartbeat => &mut self.tries.heartbeat,
            Try::Metadata => &mut self.tries.metadata,
        }
    }

    // ----- requests -----

    /// An outgoing request with the next id (the id `phase_request` peeked at and recorded).
    fn outgoing(
        &mut self,
        target: Target,
        request: GroupRequest,
        timeout: Option<Duration>,
    ) -> Outgoing {
        Outgoing {
            id: self.ids.next_id(),
            target,
            request,
            timeout,
        }
    }

    // ----- helpers -----
}

/// The classic member's commands and queries; a regex subscription is the consumer
/// protocol's (the classic member subscribes to the names alone).
impl Member for GroupMachine {
    /// The configuration.
    fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The member's generation (id -1 when it has none).
    fn generation(&self) -> Generation {
        self.generation.clone()
    }

    fn losses(&self) -> u64 {
        self.losses
    }

    /// The partitions the member owns, including any whose revocation is pending.
    fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.assignment
    }

    /// The coordinator, when known.
    fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.known()
    }

    /// The coarse state.
    fn state(&self) -> MemberState {
        match &self.phase {
            Phase::Idle => MemberState::Idle,
            Phase::Revoking(_) => MemberState::Revoking,
            Phase::Joining { .. } => MemberState::Joining,
            Phase::Assigning { .. } => MemberState::Assigning,
            Phase::Syncing { .. } => MemberState::Syncing,
            Phase::Stable if self.revocation.is_some() => MemberState::Revoking,
            Phase::Stable => MemberState::Stable,
            Phase::PollExpired => MemberState::PollExpired,
            Phase::Leaving { .. } => MemberState::Leaving,
            Phase::Closed => MemberState::Closed,
            Phase::Failed => MemberState::Failed,
        }
    }

    /// Whether the machine is done (closed or failed): it will ask for nothing more.
    fn is_terminated(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Failed)
    }

    /// The topics whose metadata the machine needs watched: the subscription, and as leader
    /// every topic it assigned.
    fn watched_topics(&self) -> BTreeSet<String> {
        let mut t = self.topics.clone();
        if let Some(m) = &self.assigned_metadata {
            t.extend(m.keys().cloned());
        }
        t
    }

    fn subscribe_to(&mut self, now: Instant, topics: BTreeSet<String>, _regex: Option<String>) {
        self.set_subscription(now, topics);
        self.rearm();
    }

    /// Leaves the group (revoking the partitions first) and stays out until subscribed again.
    fn unsubscribe(&mut self, now: Instant) {
        self.topics.clear();
        self.leave(AfterLeave::Idle, "the consumer unsubscribed", now);
        self.rearm();
    }

    /// Closes the member: revokes its partitions (so the application can commit), then sends
    /// LeaveGroup, unless the member is static (KIP-345: a static member keeps its place for
    /// `session.timeout.ms` so that a restart gets its assignment back). Ends with
    /// [`GroupEvent::Closed`].
    fn close(&mut self, now: Instant) {
        self.leave(AfterLeave::Closed, "the consumer is being closed", now);
        self.rearm();
    }

    /// The application polled: resets the `max.poll.interval.ms` timer, and rejoins when the
    /// member had left because of it.
    fn application_polled(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.phase, Phase::PollExpired) && !self.topics.is_empty() {
            self.prepare_rejoin("the consumer polled again after its poll timeout", now);
        }
        self.rearm();
    }

    /// The application finished with the revocation `id` (and committed what it wanted).
    fn revocation_done(&mut self, now: Instant, id: RevocationId) {
        self.acknowledge_revocation(now, id);
        self.rearm();
    }

    /// The cluster metadata changed: as leader, rejoin when a topic it assigned has a
    /// different number of partitions now (the Java client's `ConsumerCoordinator` does the
    /// same, so new partitions get consumed).
    fn metadata_updated(
        &mut self,
        now: Instant,
        topics: &TopicPartitions,
        _ids: &BTreeMap<TopicId, String>,
    ) {
        self.check_partition_counts(now, topics);
        self.rearm();
    }
}

kcon_core::machine_on_timers! {
    impl Machine for GroupMachine {
        timer = Timer,
        request = GroupRequest,
        response = GroupResponse,
        event = GroupEvent,
    }
}

/// The classic member's requests and answers, after the lookup's.
impl LookupFirst for GroupMachine {
    fn lookup_parts(&mut self) -> LookupParts<'_> {
        (
            &mut self.coordinator,
            &mut self.ids,
            &mut self.rng,
            &mut self.events,
        )
    }

    /// Whether the current phase talks to the coordinator.
    fn needs_coordinator(&self) -> bool {
        match self.phase {
            Phase::Joining { .. } | Phase::Syncing { .. } | Phase::Stable => true,
            Phase::Revoking(_) | Phase::Assigning { .. } => self.generation.is_valid(),
            Phase::Idle
            | Phase::PollExpired
            | Phase::Leaving { .. }
            | Phase::Closed
            | Phase::Failed => false,
        }
    }

    fn lookup_answered(&mut self, now: Instant, outcome: LookupOutcome) {
        match outcome {
            LookupOutcome::Found => {
                // Heartbeats go out at once to the new coordinator, unless they are backing
                // off after failures: finding the coordinator again is not a heartbeat
                // getting through.
                self.heartbeat.next_at = self.tries.heartbeat.retry_at().unwrap_or(now).max(now);
                self.heartbeat.session_deadline = now + self.config.session_timeout;
            }
            LookupOutcome::Retrying => {}
            LookupOutcome::Failed(error) => self.fail(error, now),
        }
    }

    fn own_request(&mut self, now: Instant) -> Option<Outgoing> {
        self.phase_request(now)
            .or_else(|| self.heartbeat_request(now))
    }

    fn own_response(&mut self, now: Instant, id: RequestId, result: Answer) {
        if let Some((hb, generation)) = self.heartbeat.in_flight
            && hb == id
        {
            self.heartbeat.in_flight = None;
            self.on_heartbeat(generation, result, now);
            return;
        }
        let phase_id = match &self.phase {
            Phase::Joining { in_flight, .. }
            | Phase::Assigning { in_flight, .. }
            | Phase::Syncing { in_flight, .. }
            | Phase::Leaving { in_flight, .. } => *in_flight,
            _ => None,
        };
        if phase_id != Some(id) {
            debug!(group = %self.config.group_id, ?id, "ignoring the answer to a request no longer wanted");
            return;
        }
        let phase = &self.phase;
        match result {
            Err(failure) => self.on_phase_failure(failure, now),
            Ok(GroupResponse::JoinGroup(answer)) if matches!(phase, Phase::Joining { .. }) => {
                self.on_join(answer, now)
            }
            Ok(GroupResponse::Metadata(topics)) if matches!(phase, Phase::Assigning { .. }) => {
                self.on_metadata(topics, now)
            }
            Ok(GroupResponse::SyncGroup {
                error_code,
                protocol_type,
                protocol_name,
                assignment,
            }) if matches!(phase, Phase::Syncing { .. }) => {
                self.on_sync(error_code, protocol_type, protocol_name, assignment, now)
            }
            Ok(GroupResponse::LeaveGroup { error_code })
                if matches!(phase, Phase::Leaving { .. }) =>
            {
                if error_code != code::NONE {
                    // The member is out of the group either way (the coordinator forgets it
                    // after the session timeout); nothing to retry.
                    debug!(group = %self.config.group_id, error = %error_name(error_code), "LeaveGroup answered an error");
                }
                self.left(now);
            }
            Ok(other) => {
                // Not what the request asked for (no broker sends it; a driver could): the
                // request failed, and goes again as after a lost connection rather than
                // staying in flight for ever.
                warn!(group = %self.config.group_id, ?other, "an answer of the wrong kind; taken as a failure");
                let failure = RequestFailure::retriable("an answer of the wrong kind");
                self.on_phase_failure(failure, now);
            }
        }
    }
}

/// The version a member wrote its subscription in: the first two bytes.
fn subscription_version(metadata: &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(metadata.get(..2)?.try_into().ok()?))
}
