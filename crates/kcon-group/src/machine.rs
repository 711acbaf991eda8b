//! The group membership state machine: classic consumer groups (JoinGroup / SyncGroup /
//! Heartbeat / LeaveGroup), eager and cooperative (KIP-429), static membership (KIP-345).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator::{CoordinatorLookup, Lookup};
use kcon_core::error_codes::is_fatal_group_error;
use kcon_core::{
    Coordinator, ExponentialBackoff, Machine, RequestFailure, RequestId, RequestIds, Target,
    TopicPartition,
};
use tracing::{debug, info, warn};

use crate::assignor::{Assignor, MemberSubscription, RebalanceProtocol, TopicPartitions};
use crate::config::GroupConfig;
use crate::error::GroupError;
use crate::messages::{
    GroupRequest, GroupResponse, Heartbeat, JoinGroup, JoinGroupAnswer, LeaveGroup, Outgoing,
    SyncGroup,
};
use kcon_codec::consumer_protocol::{self as protocol, Assignment, Subscription};

/// The protocol type of consumer groups.
pub const PROTOCOL_TYPE: &str = "consumer";

/// Why the leader rejoins when a topic's partition count changed (KIP-800 join reason).
const PARTITION_COUNT_CHANGED: &str = "the leader saw the partition count of a topic change";

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

/// Kafka error codes the machine acts on.
pub(crate) mod code {
    pub(crate) const NONE: i16 = 0;
    pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub(crate) const NOT_COORDINATOR: i16 = 16;
    pub(crate) const ILLEGAL_GENERATION: i16 = 22;
    pub(crate) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(crate) const REBALANCE_IN_PROGRESS: i16 = 27;
    pub(crate) const MEMBER_ID_REQUIRED: i16 = 79;
    pub(crate) const FENCED_INSTANCE_ID: i16 = 82;
}

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
}

/// Identifies a [`GroupEvent::Revoked`] to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RevocationId(u64);

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
///   [`handle_response`](Self::handle_response) (the answer, or failure, of a request it asked
///   for); [`handle_timeout`](Self::handle_timeout) (once `poll_timeout` has passed).
/// - Outputs: [`poll_request`](Self::poll_request) (send these), [`poll_event`](Self::poll_event)
///   (tell the application), [`poll_timeout`](Self::poll_timeout) (call `handle_timeout` then).
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
    /// Consecutive failed JoinGroup/SyncGroup/Metadata attempts, for the backoff.
    rebalance_attempts: u32,
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
    events: VecDeque<GroupEvent>,
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

#[derive(Debug)]
struct Revocation {
    /// Each `Revoked` told and not acknowledged yet, with its partitions. More than one when
    /// `close` or `unsubscribe` came while a revocation was pending: the application already
    /// holds that one, so only the rest is revoked anew, and each is acknowledged on its own.
    parts: Vec<(RevocationId, Vec<TopicPartition>)>,
    deadline: Instant,
}

impl Revocation {
    fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.parts.iter().flat_map(|(_, p)| p)
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

/// The timers of the machine, one table: `poll_timeout` is the earliest armed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Find the coordinator again after a failure.
    CoordinatorRetry,
    /// Retry JoinGroup or the leader's Metadata request after a failure; send the hand-over
    /// JoinGroup once `HANDOVER_DELAY` has passed.
    RebalanceRetry,
    /// Send the next heartbeat.
    Heartbeat,
    /// No heartbeat succeeded within `session.timeout.ms`: the coordinator is presumed lost.
    Session,
    /// The application has not polled within `max.poll.interval.ms`.
    Poll,
    /// The application has not acknowledged a revocation within `max.poll.interval.ms`.
    Revocation,
}

impl GroupMachine {
    /// A member for `config` (validate it first with [`GroupConfig::validate`]), not yet
    /// subscribed. `seed` seeds the backoff jitter.
    pub fn new(config: GroupConfig, now: Instant, seed: u64) -> GroupMachine {
        GroupMachine {
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
            last_poll: now,
            revocation: None,
            next_revocation: 0,
            assigned_metadata: None,
            reassign_needed: false,
            join_reason: String::new(),
            rejoin_needed: None,
            leave_reason: String::new(),
            pending_leave: None,
            events: VecDeque::new(),
            config,
        }
    }

    // ----- queries -----

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The rebalance protocol the member follows.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.protocol
    }

    /// The member's generation (id -1 when it has none).
    pub fn generation(&self) -> &Generation {
        &self.generation
    }

    /// The partitions the member owns, including any whose revocation is pending.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.assignment
    }

    /// The topics subscribed to.
    pub fn subscription(&self) -> &BTreeSet<String> {
        &self.topics
    }

    /// The coordinator, when known.
    pub fn coordinator(&self) -> Option<&Coordinator> {
        self.coordinator.known()
    }

    /// The coarse state.
    pub fn state(&self) -> MemberState {
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
    pub fn is_terminated(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Failed)
    }

    /// The topics whose metadata the machine needs watched: the subscription, and as leader
    /// every topic it assigned.
    pub fn watched_topics(&self) -> BTreeSet<String> {
        let mut t = self.topics.clone();
        if let Some(m) = &self.assigned_metadata {
            t.extend(m.keys().cloned());
        }
        t
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
        if topics.is_empty() {
            self.unsubscribe(now);
            return;
        }
        if self.is_terminated() || matches!(self.phase, Phase::Leaving { .. }) {
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

    /// Leaves the group (revoking the partitions first) and stays out until subscribed again.
    pub fn unsubscribe(&mut self, now: Instant) {
        self.topics.clear();
        self.leave(AfterLeave::Idle, "the consumer unsubscribed", now);
    }

    /// Closes the member: revokes its partitions (so the application can commit), then sends
    /// LeaveGroup, unless the member is static (KIP-345: a static member keeps its place for
    /// `session.timeout.ms` so that a restart gets its assignment back). Ends with
    /// [`GroupEvent::Closed`].
    pub fn close(&mut self, now: Instant) {
        self.leave(AfterLeave::Closed, "the consumer is being closed", now);
    }

    /// The application polled: resets the `max.poll.interval.ms` timer, and rejoins when the
    /// member had left because of it.
    pub fn application_polled(&mut self, now: Instant) {
        self.last_poll = now;
        if matches!(self.phase, Phase::PollExpired) && !self.topics.is_empty() {
            self.prepare_rejoin("the consumer polled again after its poll timeout", now);
        }
    }

    /// The application finished with the revocation `id` (and committed what it wanted).
    pub fn revocation_done(&mut self, now: Instant, id: RevocationId) {
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

    /// The cluster metadata changed: as leader, rejoin when a topic it assigned has a
    /// different number of partitions now (the Java client's `ConsumerCoordinator` does the
    /// same, so new partitions get consumed).
    pub fn metadata_updated(&mut self, now: Instant, topics: &TopicPartitions) {
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

    fn timer(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::CoordinatorRetry => self.coordinator.retry_at(self.needs_coordinator()),
            Timer::RebalanceRetry => match &self.phase {
                Phase::Joining {
                    in_flight: None,
                    retry_at,
                }
                | Phase::Assigning {
                    in_flight: None,
                    retry_at,
                    ..
                } => *retry_at,
                _ => None,
            },
            Timer::Heartbeat => (self.heartbeating()
                && self.coordinator.known().is_some()
                && self.heartbeat.in_flight.is_none())
            .then_some(self.heartbeat.next_at),
            Timer::Session => (self.heartbeating() && self.coordinator.known().is_some())
                .then_some(self.heartbeat.session_deadline),
            Timer::Poll => self
                .poll_timer_armed()
                .then(|| self.last_poll + self.config.max_poll_interval),
            Timer::Revocation => self.revocation.as_ref().map(|r| r.deadline),
        }
    }

    // ----- answers -----

    fn on_find_coordinator(&mut self, result: Result<GroupResponse, RequestFailure>, now: Instant) {
        let result = match result {
            Ok(GroupResponse::FindCoordinator(found)) => Ok(found),
            Ok(other) => Err(RequestFailure::retriable(format!(
                "an answer of the wrong kind: {other:?}"
            ))),
            Err(f) => Err(f),
        };
        match self.coordinator.handle_answer(now, result, self.rng.f64()) {
            Lookup::Found(c) => {
                info!(group = %self.config.group_id, coordinator = c.id, host = %c.host, port = c.port, "found the group coordinator");
                // Heartbeats go out at once to the new coordinator.
                self.heartbeat.next_at = now;
                self.heartbeat.session_deadline = now + self.config.session_timeout;
            }
            Lookup::Retrying { .. } => {}
            Lookup::Failed {
                error_code: Some(error_code),
                message,
            } => self.fail(
                GroupError::Broker {
                    api_key: ApiKey::FindCoordinator as i16,
                    error_code,
                    message,
                },
                now,
            ),
            Lookup::Failed {
                error_code: None,
                message,
            } => self.fail(GroupError::Request(message.unwrap_or_default()), now),
        }
    }

    fn on_heartbeat(
        &mut self,
        sent_for: i32,
        result: Result<GroupResponse, RequestFailure>,
        now: Instant,
    ) {
        let error_code = match result {
            Ok(GroupResponse::Heartbeat { error_code }) => error_code,
            Ok(other) => {
                warn!(group = %self.config.group_id, ?other, "an answer of the wrong kind; ignored");
                return;
            }
            Err(f) if f.retriable => {
                self.coordinator_lost(&f.reason, now);
                return;
            }
            Err(f) => {
                self.fail(GroupError::Request(f.reason), now);
                return;
            }
        };
        let current = sent_for == self.generation.id && self.heartbeating();
        match error_code {
            code::NONE => {
                self.heartbeat.session_deadline = now + self.config.session_timeout;
            }
            _ if !current => {
                // An answer for a generation the member has already left behind (it rejoined
                // meanwhile): the Java client ignores these too.
                debug!(group = %self.config.group_id, error_code, "heartbeat error for an old generation; ignored");
            }
            code::REBALANCE_IN_PROGRESS => {
                self.heartbeat.session_deadline = now + self.config.session_timeout;
                match self.phase {
                    Phase::Stable if self.revocation.is_none() => {
                        info!(group = %self.config.group_id, "the group is rebalancing; rejoining");
                        self.prepare_rejoin("the coordinator started a rebalance", now);
                    }
                    // Another member has started the next generation already: the hand-over
                    // need not wait for this one to reach everybody.
                    Phase::Revoking(AfterRevoke::HandOver(_)) => {
                        self.phase = Phase::Revoking(AfterRevoke::Join);
                    }
                    // Syncing: the SyncGroup answer will say so. Revoking: a rejoin follows.
                    _ => {}
                }
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_lost("the coordinator moved", now);
            }
            code::COORDINATOR_LOAD_IN_PROGRESS => {
                self.heartbeat.next_at = now + self.config.retry_backoff;
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::Heartbeat, error_code, now)
            }
            _ => {
                // Retriable, or unexpected: try again after the backoff.
                self.heartbeat.next_at = now + self.config.retry_backoff;
            }
        }
    }

    fn on_phase_failure(&mut self, failure: RequestFailure, now: Instant) {
        if !failure.retriable {
            if let Phase::Leaving { .. } = self.phase {
                self.left(now);
            } else {
                self.fail(GroupError::Request(failure.reason), now);
            }
            return;
        }
        match &mut self.phase {
            Phase::Assigning {
                in_flight,
                retry_at,
                ..
            } => {
                // Metadata goes to any broker: retry after a backoff.
                *in_flight = None;
                let delay = self.backoff.delay(self.rebalance_attempts, self.rng.f64());
                self.rebalance_attempts += 1;
                *retry_at = Some(now + delay);
            }
            Phase::Leaving { .. } => self.left(now),
            _ => self.coordinator_lost(&failure.reason, now),
        }
    }

    fn on_join(&mut self, answer: JoinGroupAnswer, now: Instant) {
        let error_code = answer.error_code;
        match error_code {
            code::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                // KIP-394: the coordinator gave the member an id to join with; rejoin at once.
                debug!(group = %self.config.group_id, member_id = %answer.member_id, "member id required; rejoining with it");
                self.generation.member_id = answer.member_id;
                self.start_join(None);
                return;
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
                return;
            }
            code::REBALANCE_IN_PROGRESS | code::COORDINATOR_LOAD_IN_PROGRESS => {
                let delay = self.rebalance_backoff();
                self.start_join(Some(now + delay));
                return;
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_lost("JoinGroup: the coordinator moved", now);
                return;
            }
            code::FENCED_INSTANCE_ID => {
                self.fail_broker(ApiKey::JoinGroup, error_code, now);
                return;
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::JoinGroup, error_code, now);
                return;
            }
            _ => {
                // Retriable, or unexpected: join again after the backoff.
                warn!(group = %self.config.group_id, error_code, "JoinGroup failed; joining again after a backoff");
                let delay = self.rebalance_backoff();
                self.start_join(Some(now + delay));
                return;
            }
        }
        if let Some(t) = &answer.protocol_type
            && t != PROTOCOL_TYPE
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("protocol type {PROTOCOL_TYPE:?}"),
                    got: t.clone(),
                },
                now,
            );
            return;
        }
        let Some(name) = answer
            .protocol_name
            .clone()
            .filter(|n| self.assignor(n).is_some())
        else {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("one of {:?}", self.assignor_names()),
                    got: answer.protocol_name.clone().unwrap_or_default(),
                },
                now,
            );
            return;
        };
        self.rebalance_attempts = 0;
        self.generation = Generation {
            id: answer.generation_id,
            member_id: answer.member_id.clone(),
            protocol_name: Some(name),
        };
        let leader = answer.leader == answer.member_id;
        info!(group = %self.config.group_id, generation = answer.generation_id, member_id = %answer.member_id, leader, "joined the group");
        self.events.push_back(GroupEvent::Joined {
            generation_id: answer.generation_id,
            member_id: answer.member_id.clone(),
            leader,
        });
        // Java resets the heartbeat timers when a join completes.
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        self.heartbeat.session_deadline = now + self.config.session_timeout;
        // A static leader whose assignment the coordinator kept (KIP-814, `skip_assignment`)
        // doesn't assign, but must go on watching partition counts (`metadata_updated`). A
        // leader that rejoined (say after UNKNOWN_MEMBER_ID) keeps the snapshot of the
        // metadata it assigned from, so that a count that changed meanwhile still makes it
        // rejoin; one without a snapshot (a restarted process) takes the current metadata
        // first (`on_metadata`), as Java's `onLeaderElected` keeps its metadata snapshot.
        let keeps_snapshot = answer.skip_assignment && self.assigned_metadata.is_some();
        if leader && answer.skip_assignment && self.reassign_needed {
            // It rejoined to assign again, but the coordinator (seeing a static member come
            // back to a Stable group) kept the old assignment: once synced, rejoin as the
            // known leader, which makes the coordinator rebalance.
            self.rejoin_needed = Some(PARTITION_COUNT_CHANGED.to_owned());
        }
        if leader && !keeps_snapshot {
            self.phase = Phase::Assigning {
                join: answer,
                in_flight: None,
                retry_at: None,
            };
        } else {
            if !leader {
                self.assigned_metadata = None;
                self.reassign_needed = false;
            }
            self.phase = Phase::Syncing {
                assignments: Vec::new(),
                in_flight: None,
            };
        }
    }

    fn on_metadata(&mut self, topics: TopicPartitions, now: Instant) {
        let Phase::Assigning { join, .. } = &self.phase else {
            return;
        };
        let mut members = Vec::with_capacity(join.members.len());
        let mut versions = BTreeMap::new();
        for m in &join.members {
            let subscription = match Subscription::decode(&m.metadata) {
                Ok(s) => s,
                Err(e) => {
                    // One member's bad bytes must not stop the group: it gets nothing and
                    // will rejoin when it sees its empty assignment (the Java leader would
                    // throw and fail the rebalance for everyone).
                    warn!(group = %self.config.group_id, member_id = %m.member_id, error = %e, "a member's subscription does not decode; it gets no partitions");
                    Subscription::default()
                }
            };
            versions.insert(m.member_id.clone(), subscription_version(&m.metadata));
            members.push(MemberSubscription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                subscription,
            });
        }
        let skip_assignment = join.skip_assignment;
        let subscribed: BTreeSet<&String> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter())
            .collect();
        self.assigned_metadata = Some(
            topics
                .iter()
                .filter(|(t, _)| subscribed.contains(t))
                .map(|(t, p)| (t.clone(), p.len()))
                .collect(),
        );
        if skip_assignment {
            // KIP-814: the coordinator kept every member's assignment; SyncGroup without one.
            self.rebalance_attempts = 0;
            self.phase = Phase::Syncing {
                assignments: Vec::new(),
                in_flight: None,
            };
            return;
        }
        let name = self.generation.protocol_name.clone().unwrap_or_default();
        // Invariant: on_join moved to Assigning only with a protocol name among the assignors.
        let assignor = self.assignor(&name).expect("the chosen assignor");
        let result = match assignor.assign(&members, &topics) {
            Ok(r) => r,
            Err(e) => {
                self.fail(GroupError::Assignor(e), now);
                return;
            }
        };
        self.reassign_needed = false;
        let assignments = members
            .iter()
            .map(|m| {
                let a = result.get(&m.member_id).cloned().unwrap_or_default();
                // Each member gets the assignment in the version its subscription used (at
                // most kcon's), so an older client reads it.
                let version = versions
                    .get(&m.member_id)
                    .copied()
                    .flatten()
                    .unwrap_or(0)
                    .clamp(0, protocol::ASSIGNMENT_VERSION);
                (m.member_id.clone(), a.encode(version))
            })
            .collect();
        self.rebalance_attempts = 0;
        self.phase = Phase::Syncing {
            assignments,
            in_flight: None,
        };
    }

    fn on_sync(
        &mut self,
        error_code: i16,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignment: Bytes,
        now: Instant,
    ) {
        match error_code {
            code::NONE => {}
            code::REBALANCE_IN_PROGRESS => {
                // Another rebalance started before this one completed: join it. Owned
                // partitions stay owned under the cooperative protocol (eager revoked them
                // before joining).
                self.start_join(None);
                return;
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.reset_generation(error_code, now);
                return;
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                self.coordinator_lost("SyncGroup: the coordinator moved", now);
                return;
            }
            _ if is_fatal_group_error(error_code) => {
                self.fail_broker(ApiKey::SyncGroup, error_code, now);
                return;
            }
            _ => {
                // Retriable, or unexpected (librdkafka's mock cluster answers INVALID_REQUEST
                // to a follower that syncs after the leader): rejoin after the backoff, as
                // librdkafka does for every SyncGroup error but FENCED_INSTANCE_ID.
                warn!(group = %self.config.group_id, error_code, "SyncGroup failed; joining again after a backoff");
                let delay = self.rebalance_backoff();
                self.start_join(Some(now + delay));
                return;
            }
        }
        if let Some(t) = protocol_type
            && t != PROTOCOL_TYPE
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("protocol type {PROTOCOL_TYPE:?}"),
                    got: t,
                },
                now,
            );
            return;
        }
        if let Some(n) = protocol_name
            && Some(&n) != self.generation.protocol_name.as_ref()
        {
            self.fail(
                GroupError::InconsistentProtocol {
                    expected: format!("{:?} (from JoinGroup)", self.generation.protocol_name),
                    got: n,
                },
                now,
            );
            return;
        }
        let assigned = if assignment.is_empty() {
            // Brokers send an empty assignment to a member the leader left out.
            Assignment::default()
        } else {
            match Assignment::decode(&assignment) {
                Ok(a) => a,
                Err(e) => {
                    self.fail(GroupError::CorruptAssignment(e), now);
                    return;
                }
            }
        };
        self.rebalance_attempts = 0;
        let new: BTreeSet<TopicPartition> = assigned.partitions.into_iter().collect();
        let generation_id = self.generation.id;
        self.owned_generation = generation_id;
        self.phase = Phase::Stable;
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        match self.protocol {
            RebalanceProtocol::Eager => {
                // Everything was revoked before joining: all of it is new.
                self.assignment = new.clone();
                info!(group = %self.config.group_id, generation = generation_id, partitions = new.len(), "assigned");
                self.events.push_back(GroupEvent::Assigned {
                    partitions: new.into_iter().collect(),
                    generation_id,
                });
            }
            RebalanceProtocol::Cooperative => {
                let added: Vec<TopicPartition> =
                    new.difference(&self.assignment).cloned().collect();
                let revoked: Vec<TopicPartition> =
                    self.assignment.difference(&new).cloned().collect();
                info!(group = %self.config.group_id, generation = generation_id, added = added.len(), revoked = revoked.len(), "assigned (cooperative)");
                // KIP-429: partitions taken away are revoked first; the member then rejoins so
                // the leader can give them to their new owner, once the other members have
                // had time to get this generation's assignment (HANDOVER_DELAY). Partitions
                // kept are consumed throughout.
                self.assignment.extend(added.iter().cloned());
                if !revoked.is_empty() {
                    self.revoke(revoked, AfterRevoke::HandOver(now + HANDOVER_DELAY), now);
                    // The revoke left the phase at Revoking; the member stays in its
                    // generation and keeps heartbeating meanwhile.
                }
                // Always told, even when empty: the rebalance is complete for this member.
                self.events.push_back(GroupEvent::Assigned {
                    partitions: added,
                    generation_id,
                });
            }
        }
        if matches!(self.phase, Phase::Stable)
            && let Some(reason) = self.rejoin_needed.take()
        {
            self.prepare_rejoin(&reason, now);
        }
    }

    // ----- transitions -----

    /// Starts a rebalance from a member that may own partitions: eager revokes everything
    /// first; cooperative revokes only partitions of topics no longer subscribed.
    fn prepare_rejoin(&mut self, reason: &str, now: Instant) {
        self.join_reason = reason.to_owned();
        let to_revoke: Vec<TopicPartition> = match self.protocol {
            RebalanceProtocol::Eager => self.assignment.iter().cloned().collect(),
            RebalanceProtocol::Cooperative => self
                .assignment
                .iter()
                .filter(|tp| !self.topics.contains(&tp.topic))
                .cloned()
                .collect(),
        };
        if self.protocol == RebalanceProtocol::Eager {
            self.previous_assignment = to_revoke.clone();
            self.previous_generation = self.generation.id;
        }
        if to_revoke.is_empty() || !self.generation.is_valid() {
            if !to_revoke.is_empty() {
                self.lose_all();
            }
            self.start_join(None);
        } else {
            self.revoke(to_revoke, AfterRevoke::Join, now);
        }
    }

    fn revoke(&mut self, partitions: Vec<TopicPartition>, then: AfterRevoke, now: Instant) {
        let id = RevocationId(self.next_revocation);
        self.next_revocation += 1;
        info!(group = %self.config.group_id, partitions = partitions.len(), "revoking");
        self.events.push_back(GroupEvent::Revoked {
            partitions: partitions.clone(),
            id,
        });
        match &mut self.revocation {
            // Widening a pending revocation (see `leave`): its deadline stands.
            Some(r) => r.parts.push((id, partitions)),
            None => {
                self.revocation = Some(Revocation {
                    parts: vec![(id, partitions)],
                    deadline: now + self.config.max_poll_interval,
                });
            }
        }
        self.phase = Phase::Revoking(then);
    }

    fn finish_revocation(&mut self, now: Instant) {
        let Some(r) = self.revocation.take() else {
            return;
        };
        for tp in r.partitions() {
            self.assignment.remove(tp);
        }
        match self.phase {
            Phase::Revoking(AfterRevoke::Join) => self.start_join(None),
            Phase::Revoking(AfterRevoke::HandOver(at)) => {
                self.start_join(Some(at).filter(|&t| t > now))
            }
            Phase::Revoking(AfterRevoke::Leave(then)) => self.send_leave(then, now),
            _ => {}
        }
    }

    fn start_join(&mut self, retry_at: Option<Instant>) {
        if self.topics.is_empty() {
            self.phase = Phase::Idle;
            return;
        }
        self.phase = Phase::Joining {
            in_flight: None,
            retry_at,
        };
    }

    /// The coordinator said the member's generation or id is no longer valid: its partitions
    /// are lost (not revoked: another member may own them already), and it joins afresh.
    fn reset_generation(&mut self, error_code: i16, now: Instant) {
        warn!(group = %self.config.group_id, error_code, generation = self.generation.id, "the coordinator no longer knows this generation; partitions lost, rejoining");
        self.lose_all();
        self.generation.id = -1;
        self.generation.protocol_name = None;
        // ILLEGAL_GENERATION keeps the member id (the coordinator still knows the member);
        // UNKNOWN_MEMBER_ID does not (the Java client's `resetStateAndRejoin`).
        if error_code == code::UNKNOWN_MEMBER_ID {
            self.generation.member_id.clear();
        }
        self.heartbeat.in_flight = None;
        match self.phase {
            Phase::Leaving { then, .. } | Phase::Revoking(AfterRevoke::Leave(then)) => {
                self.finish_leave(then, now);
            }
            _ => self.start_join(None),
        }
    }

    fn lose_all(&mut self) {
        self.revocation = None;
        self.owned_generation = -1;
        if self.assignment.is_empty() {
            return;
        }
        let partitions: Vec<TopicPartition> =
            std::mem::take(&mut self.assignment).into_iter().collect();
        self.events.push_back(GroupEvent::Lost { partitions });
    }

    fn coordinator_lost(&mut self, reason: &str, now: Instant) {
        if self.coordinator.lost() {
            info!(group = %self.config.group_id, reason, "lost the group coordinator; finding it again");
        }
        self.heartbeat.in_flight = None;
        match &mut self.phase {
            Phase::Joining {
                in_flight,
                retry_at,
            } => {
                *in_flight = None;
                *retry_at = None;
            }
            // The Java client rejoins when SyncGroup cannot complete: the generation being
            // completed is probably gone with the coordinator.
            Phase::Syncing { .. } | Phase::Assigning { .. } => self.start_join(None),
            Phase::Leaving { then, .. } => {
                let then = *then;
                self.finish_leave(then, now);
            }
            _ => {}
        }
    }

    fn poll_expired(&mut self, now: Instant) {
        warn!(group = %self.config.group_id, max_poll_interval_ms = self.config.max_poll_interval.as_millis() as u64,
            "the application did not poll within max.poll.interval.ms; leaving the group");
        // The application is stuck: it can't act on a revocation, so the partitions are lost
        // (the group gives them to others as soon as the member is gone).
        self.lose_all();
        let leave = self.leave_request("consumer poll timeout has expired");
        self.generation.id = -1;
        self.generation.protocol_name = None;
        self.heartbeat.in_flight = None;
        self.phase = Phase::PollExpired;
        // Sent without waiting for the answer: it changes nothing.
        self.pending_leave = leave;
        let _ = now;
    }

    fn leave(&mut self, then: AfterLeave, reason: &str, now: Instant) {
        if self.is_terminated() {
            return;
        }
        match self.phase {
            Phase::Leaving { .. } => {
                if let Phase::Leaving { then: t, .. } = &mut self.phase
                    && then == AfterLeave::Closed
                {
                    *t = AfterLeave::Closed;
                }
                return;
            }
            Phase::Revoking(AfterRevoke::Leave(_)) => {
                if then == AfterLeave::Closed {
                    self.phase = Phase::Revoking(AfterRevoke::Leave(AfterLeave::Closed));
                }
                return;
            }
            Phase::Idle | Phase::PollExpired => {
                self.lose_all();
                self.finish_leave(then, now);
                return;
            }
            _ => {}
        }
        self.leave_reason = reason.to_owned();
        if self.generation.is_valid() && !self.assignment.is_empty() {
            // A pending revocation is widened to everything the member owns. The application
            // already holds the pending `Revoked` (and may have committed for it): revoking
            // the same partitions again under a new id would leave its acknowledgement of the
            // first one unheard. So only the rest is revoked, and the leave waits for both.
            let pending: BTreeSet<&TopicPartition> = self
                .revocation
                .iter()
                .flat_map(|r| r.partitions())
                .collect();
            let rest: Vec<TopicPartition> = self
                .assignment
                .iter()
                .filter(|tp| !pending.contains(tp))
                .cloned()
                .collect();
            if rest.is_empty() {
                self.phase = Phase::Revoking(AfterRevoke::Leave(then));
            } else {
                self.revoke(rest, AfterRevoke::Leave(then), now);
            }
        } else {
            self.lose_all();
            self.send_leave(then, now);
        }
    }

    /// Moves to Leaving with a LeaveGroup to send, or straight on when there is nothing to
    /// leave (static member, no member id, no coordinator).
    fn send_leave(&mut self, then: AfterLeave, now: Instant) {
        if self.leave_request(&self.leave_reason).is_none() {
            self.finish_leave(then, now);
            return;
        }
        self.phase = Phase::Leaving {
            in_flight: None,
            then,
        };
    }

    fn left(&mut self, now: Instant) {
        if let Phase::Leaving { then, .. } = self.phase {
            self.finish_leave(then, now);
        }
    }

    fn finish_leave(&mut self, then: AfterLeave, _now: Instant) {
        self.lose_all();
        self.generation.id = -1;
        self.generation.protocol_name = None;
        if self.config.group_instance_id.is_none() {
            self.generation.member_id.clear();
        }
        self.heartbeat.in_flight = None;
        self.assigned_metadata = None;
        self.reassign_needed = false;
        match then {
            AfterLeave::Idle => {
                self.phase = Phase::Idle;
                if !self.topics.is_empty() {
                    // Subscribed again while leaving.
                    self.start_join(None);
                }
            }
            AfterLeave::Closed => {
                self.phase = Phase::Closed;
                self.events.push_back(GroupEvent::Closed);
            }
        }
    }

    /// LeaveGroup for this member, or `None` when it has nothing to leave: a static member
    /// (KIP-345), a member without id, or no coordinator to tell.
    fn leave_request(&self, reason: &str) -> Option<LeaveGroup> {
        if self.config.group_instance_id.is_some()
            || self.generation.member_id.is_empty()
            || self.coordinator.known().is_none()
        {
            return None;
        }
        Some(LeaveGroup {
            group_id: self.config.group_id.clone(),
            member_id: self.generation.member_id.clone(),
            group_instance_id: None,
            reason: Some(reason.to_owned()),
        })
    }

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

    fn fail(&mut self, error: GroupError, _now: Instant) {
        warn!(group = %self.config.group_id, %error, "group member failed");
        self.lose_all();
        self.generation = Generation::none();
        self.phase = Phase::Failed;
        self.events.push_back(GroupEvent::Fatal(error));
    }

    // ----- requests -----

    fn phase_request(&mut self, now: Instant) -> Option<Outgoing> {
        let coordinator = self.coordinator.known().cloned();
        let id = self.ids.peek();
        let request = match &mut self.phase {
            Phase::Joining {
                in_flight: in_flight @ None,
                retry_at,
            } if retry_at.is_none_or(|t| now >= t) => {
                let coordinator = coordinator?;
                *in_flight = Some(id);
                *retry_at = None;
                // This JoinGroup carries the latest subscription.
                self.rejoin_needed = None;
                let timeout = Some(self.config.max_poll_interval + Duration::from_secs(5));
                let join = self.join_request();
                return Some(self.outgoing(
                    Target::Coordinator(coordinator),
                    GroupRequest::JoinGroup(join),
                    timeout,
                ));
            }
            Phase::Assigning {
                join,
                in_flight: in_flight @ None,
                retry_at,
            } if retry_at.is_none_or(|t| now >= t) => {
                *in_flight = Some(id);
                *retry_at = None;
                let topics = join
                    .members
                    .iter()
                    .filter_map(|m| Subscription::decode(&m.metadata).ok())
                    .flat_map(|s| s.topics)
                    .collect();
                GroupRequest::Metadata { topics }
            }
            Phase::Syncing {
                assignments,
                in_flight: in_flight @ None,
            } => {
                coordinator.as_ref()?;
                *in_flight = Some(id);
                GroupRequest::SyncGroup(SyncGroup {
                    group_id: self.config.group_id.clone(),
                    generation_id: self.generation.id,
                    member_id: self.generation.member_id.clone(),
                    group_instance_id: self.config.group_instance_id.clone(),
                    protocol_type: PROTOCOL_TYPE.to_owned(),
                    protocol_name: self.generation.protocol_name.clone().unwrap_or_default(),
                    assignments: std::mem::take(assignments),
                })
            }
            Phase::Leaving {
                in_flight: in_flight @ None,
                ..
            } => {
                coordinator.as_ref()?;
                *in_flight = Some(id);
                // Invariant: send_leave entered Leaving only with a request to send.
                let leave = self
                    .leave_request(&self.leave_reason)
                    .expect("a LeaveGroup to send");
                GroupRequest::LeaveGroup(leave)
            }
            _ => {
                let leave = self.pending_leave.take()?;
                return Some(self.outgoing(
                    Target::Coordinator(coordinator?),
                    GroupRequest::LeaveGroup(leave),
                    None,
                ));
            }
        };
        let target = match request {
            GroupRequest::Metadata { .. } => Target::Any,
            // Invariant: the arms above returned when a coordinator request had no coordinator.
            _ => Target::Coordinator(coordinator.expect("a known coordinator")),
        };
        Some(self.outgoing(target, request, None))
    }

    fn heartbeat_request(&mut self, now: Instant) -> Option<Outgoing> {
        if !self.heartbeating()
            || self.heartbeat.in_flight.is_some()
            || now < self.heartbeat.next_at
        {
            return None;
        }
        let coordinator = self.coordinator.known().cloned()?;
        let out = self.outgoing(
            Target::Coordinator(coordinator),
            GroupRequest::Heartbeat(Heartbeat {
                group_id: self.config.group_id.clone(),
                generation_id: self.generation.id,
                member_id: self.generation.member_id.clone(),
                group_instance_id: self.config.group_instance_id.clone(),
            }),
            None,
        );
        self.heartbeat.in_flight = Some((out.id, self.generation.id));
        // Java times the next heartbeat from when this one was sent.
        self.heartbeat.next_at = now + self.config.heartbeat_interval;
        Some(out)
    }

    fn join_request(&self) -> JoinGroup {
        let owned: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        // A cooperative member states the generation its owned partitions were assigned in
        // (KIP-792 added the field to qualify them), as librdkafka's sticky assignor does and
        // as Java's `CooperativeStickyAssignor` writes in its user data (its `onAssignment`
        // generation). Not the generation last joined: after a SyncGroup that failed with
        // REBALANCE_IN_PROGRESS the member owns what it owned before, and a subscription that
        // changed only in its generation is new metadata to a coordinator. Step by step, on a
        // coordinator that answers parked SyncGroups on a timer (Tansu): (1) the member joins
        // generation 5 with (owned P, generation 4); (2) another member starts generation 6
        // before this one's SyncGroup is answered, which fails; (3) the member rejoins, and
        // by then generation 6 may have completed without it (Tansu keeps a member's last
        // subscription instead of waiting for it); (4) a subscription saying (P, 5) differs
        // from the stored one and starts generation 7, which assigns exactly what 6 did,
        // while (P, 4) is the same bytes and joins 6 as it stands.
        let (user_owned, user_generation) = match self.protocol {
            RebalanceProtocol::Eager => (&self.previous_assignment, self.previous_generation),
            RebalanceProtocol::Cooperative => (&owned, self.owned_generation),
        };
        let protocols = self
            .config
            .partition_assignment_strategy
            .iter()
            .map(|a| {
                let subscription = Subscription {
                    topics: self.topics.iter().cloned().collect(),
                    user_data: a.user_data(user_owned, user_generation),
                    owned_partitions: owned.clone(),
                    // The generation only qualifies owned partitions, which eager members never
                    // have at join time: eager subscriptions say -1, as librdkafka's do. This
                    // keeps a restarted static member's subscription byte-identical to its last
                    // one, which brokers that compare the bytes (Tansu) need to skip the
                    // rebalance (KIP-345).
                    generation_id: match self.protocol {
                        RebalanceProtocol::Eager => -1,
                        RebalanceProtocol::Cooperative => self.owned_generation,
                    },
                    rack_id: self.config.client_rack.clone(),
                };
                (
                    a.name().to_owned(),
                    subscription.encode(protocol::SUBSCRIPTION_VERSION),
                )
            })
            .collect();
        JoinGroup {
            group_id: self.config.group_id.clone(),
            session_timeout_ms: self.config.session_timeout.as_millis() as i32,
            rebalance_timeout_ms: self.config.max_poll_interval.as_millis() as i32,
            member_id: self.generation.member_id.clone(),
            group_instance_id: self.config.group_instance_id.clone(),
            protocol_type: PROTOCOL_TYPE.to_owned(),
            protocols,
            reason: (!self.join_reason.is_empty()).then(|| self.join_reason.clone()),
        }
    }

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

    fn next_backoff(&mut self, attempts: u32) -> Duration {
        self.backoff.delay(attempts, self.rng.f64())
    }

    fn rebalance_backoff(&mut self) -> Duration {
        let d = self.next_backoff(self.rebalance_attempts);
        self.rebalance_attempts += 1;
        d
    }

    fn assignor(&self, name: &str) -> Option<&std::sync::Arc<dyn Assignor>> {
        self.config
            .partition_assignment_strategy
            .iter()
            .find(|a| a.name() == name)
    }

    fn assignor_names(&self) -> Vec<&'static str> {
        self.config
            .partition_assignment_strategy
            .iter()
            .map(|a| a.name())
            .collect()
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

    /// Whether the member heartbeats now: it has a generation and is not (re)joining. Java
    /// heartbeats in COMPLETING_REBALANCE and STABLE.
    fn heartbeating(&self) -> bool {
        self.generation.is_valid()
            && matches!(
                self.phase,
                Phase::Stable
                    | Phase::Revoking(_)
                    | Phase::Assigning { .. }
                    | Phase::Syncing { .. }
            )
    }

    fn poll_timer_armed(&self) -> bool {
        !self.topics.is_empty()
            && matches!(
                self.phase,
                Phase::Joining { .. }
                    | Phase::Assigning { .. }
                    | Phase::Syncing { .. }
                    | Phase::Stable
                    | Phase::Revoking(AfterRevoke::Join | AfterRevoke::HandOver(_))
            )
    }
}

impl Machine for GroupMachine {
    type Request = GroupRequest;
    type Response = GroupResponse;
    type Event = GroupEvent;

    /// The next request to send, if any.
    fn poll_request(&mut self, now: Instant) -> Option<Outgoing> {
        if self.is_terminated() {
            return None;
        }
        if self.coordinator.is_due(now, self.needs_coordinator()) {
            let id = self.ids.next_id();
            self.coordinator.sent(id);
            return Some(Outgoing {
                id,
                target: Target::Any,
                request: GroupRequest::FindCoordinator {
                    group_id: self.config.group_id.clone(),
                },
                timeout: None,
            });
        }
        if let Some(out) = self.phase_request(now) {
            return Some(out);
        }
        self.heartbeat_request(now)
    }

    /// The next event for the application, if any.
    fn poll_event(&mut self) -> Option<GroupEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    fn poll_timeout(&self) -> Option<Instant> {
        [
            Timer::CoordinatorRetry,
            Timer::RebalanceRetry,
            Timer::Heartbeat,
            Timer::Session,
            Timer::Poll,
            Timer::Revocation,
        ]
        .into_iter()
        .filter_map(|t| self.timer(t))
        .min()
    }

    /// Acts on every timer that has passed.
    fn handle_timeout(&mut self, now: Instant) {
        if self.timer(Timer::Revocation).is_some_and(|t| now >= t) {
            warn!(group = %self.config.group_id,
                "the application did not acknowledge a revocation within max.poll.interval.ms; going on");
            // The machine goes on without the acknowledgement, and the group may give the
            // partitions to another member at once: the application, which may still be
            // working on them, is told they are lost (no more commits), not left believing
            // it owns them.
            if let Some(r) = &self.revocation {
                self.events.push_back(GroupEvent::Lost {
                    partitions: r.partitions().cloned().collect(),
                });
            }
            self.finish_revocation(now);
        }
        if self.timer(Timer::Poll).is_some_and(|t| now >= t) {
            self.poll_expired(now);
        }
        if self.timer(Timer::Session).is_some_and(|t| now >= t) {
            // Java's heartbeat thread does the same: without an answer for a whole session the
            // coordinator is presumed gone. The session timer restarts so that, once found
            // again, a heartbeat is tried before giving up on it again; if the coordinator did
            // evict the member, that heartbeat says so.
            warn!(group = %self.config.group_id,
                "no heartbeat answered within session.timeout.ms; finding the coordinator again");
            self.heartbeat.session_deadline = now + self.config.session_timeout;
            self.coordinator_lost("session timeout without a heartbeat answer", now);
        }
        // The other timers only gate what poll_request sends.
    }

    /// Feeds the answer to request `id` (or why it got none).
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<GroupResponse, RequestFailure>,
    ) {
        if self.coordinator.is_lookup(id) {
            self.on_find_coordinator(result, now);
            return;
        }
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
        match result {
            Err(failure) => self.on_phase_failure(failure, now),
            Ok(GroupResponse::JoinGroup(answer)) => self.on_join(answer, now),
            Ok(GroupResponse::Metadata(topics)) => self.on_metadata(topics, now),
            Ok(GroupResponse::SyncGroup {
                error_code,
                protocol_type,
                protocol_name,
                assignment,
            }) => self.on_sync(error_code, protocol_type, protocol_name, assignment, now),
            Ok(GroupResponse::LeaveGroup { error_code }) => {
                if error_code != code::NONE {
                    // The member is out of the group either way (the coordinator forgets it
                    // after the session timeout); nothing to retry.
                    debug!(group = %self.config.group_id, error_code, "LeaveGroup answered an error");
                }
                self.left(now);
            }
            Ok(other) => {
                warn!(group = %self.config.group_id, ?other, "an answer of the wrong kind; ignored");
            }
        }
    }
}

/// The version a member wrote its subscription in: the first two bytes.
fn subscription_version(metadata: &[u8]) -> Option<i16> {
    Some(i16::from_be_bytes(metadata.get(..2)?.try_into().ok()?))
}
