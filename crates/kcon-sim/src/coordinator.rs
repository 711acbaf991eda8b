//! A model of the broker's classic group coordinator, for one group, written from the
//! behaviour Kafka documents and implements (`GroupMetadataManager`'s classic-group handlers
//! and `ClassicGroup` in apache/kafka's group-coordinator module; the Scala
//! `GroupCoordinator` before it behaves the same):
//!
//! - States Empty → PreparingRebalance → CompletingRebalance → Stable.
//! - JoinGroup is a barrier: the rebalance completes when every known member has rejoined
//!   (and no member given an id by MEMBER_ID_REQUIRED is still pending), or when the largest
//!   rebalance timeout passes, which removes the members that did not rejoin. A group that was
//!   Empty first waits `group.initial.rebalance.delay.ms`, extended while members keep
//!   arriving, up to the rebalance timeout (`InitialDelayedJoin`).
//! - A dynamic member joining with an empty id gets MEMBER_ID_REQUIRED and an id (KIP-394,
//!   JoinGroup v4+); a static member (KIP-345) gets an id at once.
//! - The leader is the first member to join, kept while it stays; the generation increments
//!   on every completed rebalance; the protocol is the one most members prefer among those all
//!   support.
//! - SyncGroup from the leader stores every member's assignment and makes the group Stable;
//!   the others' SyncGroup waits for it. A member that doesn't SyncGroup within the rebalance
//!   timeout is removed (the "pending sync" timeout). [`CoordinatorConfig::sync_looks`]
//!   answers the waiting ones the way Tansu does instead (measured against Tansu 0.6 and read
//!   in its group coordinator): on a timer of their own, not with the leader's.
//! - Heartbeat answers REBALANCE_IN_PROGRESS while PreparingRebalance, NONE in
//!   CompletingRebalance and Stable, UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID /
//!   ILLEGAL_GENERATION for members the group no longer knows in that form.
//! - A member whose session expires is removed (members parked in JoinGroup or SyncGroup are
//!   kept alive); LeaveGroup removes at once. Either starts a rebalance.
//! - A static member rejoining with an empty member id replaces its old member id (whose
//!   parked requests are answered FENCED_INSTANCE_ID, and whose later requests are too); in a
//!   Stable group whose chosen protocol it doesn't change, it gets the current generation
//!   and its old assignment without a rebalance (the leader with `skip_assignment`, KIP-814).
//! - The group's metadata is persisted when a generation's assignment is stored; when the
//!   coordinator moves ([`GroupCoordinator::fail_over`]) the new one loads that and nothing
//!   else: parked requests are answered NOT_COORDINATOR.
//!
//! The model answers in [`GroupResponse`] terms: the wire encoding is kcon-codec's business
//! and tested there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_group::{
    GroupRequest, GroupResponse, Heartbeat, JoinGroup, JoinGroupAnswer, JoinedMember, LeaveGroup,
    SyncGroup,
};

use crate::code;

/// Identifies a request delivered to the coordinator; its answer comes back with it.
pub type Ticket = u64;

/// The coordinator's settings (broker configuration).
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms` (the broker default is 3 s).
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
    /// When set, a SyncGroup that cannot be answered when it arrives is looked at again every
    /// this long, as Tansu 0.6 does (once a second): it is answered at the first look that
    /// finds the group Stable in the generation it names, and REBALANCE_IN_PROGRESS at the
    /// first look after 0.8 × the member's session timeout without that. Nothing else answers
    /// it: not the leader's SyncGroup, nor a rebalance starting meanwhile. When unset, as in
    /// Kafka, the leader's SyncGroup answers every waiting one at once, and a rebalance that
    /// starts first answers them REBALANCE_IN_PROGRESS at once.
    pub sync_looks: Option<Duration>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay: Duration::from_secs(3),
            max_size: usize::MAX,
            sync_looks: None,
        }
    }
}

/// The group's state (Kafka's `ClassicGroupState`, without Dead: the model has one group
/// that is never deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// A rebalance began: JoinGroup waits for every member.
    PreparingRebalance,
    /// Joined: the leader's SyncGroup is awaited.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    /// Order of first join: the leader is the earliest member.
    seq: u64,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    session_deadline: Instant,
    awaiting_join: Option<Ticket>,
    awaiting_sync: Option<Ticket>,
    /// With `sync_looks`: when the waiting SyncGroup is looked at next, and the generation it
    /// names.
    sync_look: Option<SyncLook>,
    /// Whether the member has sent SyncGroup for the generation being completed.
    synced: bool,
    assignment: Bytes,
}

/// A SyncGroup waiting for its next look (`CoordinatorConfig::sync_looks`).
#[derive(Debug, Clone, Copy)]
struct SyncLook {
    next: Instant,
    /// From the first look at or after this, it is answered REBALANCE_IN_PROGRESS.
    give_up: Instant,
    generation: i32,
}

/// What a coordinator persists after a generation's assignment is stored, and what a new
/// coordinator loads after a move.
#[derive(Debug, Clone)]
struct Snapshot {
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
}

/// One group's coordinator.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they expire unless used.
    pending: BTreeMap<String, Instant>,
    /// Member ids fenced by a static member's replacement: FENCED_INSTANCE_ID from now on.
    fenced: BTreeSet<String>,
    next_seq: u64,
    /// When the JoinGroup barrier gives up on members that have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// The initial delay of a rebalance that started from Empty: (when it ends, whether new
    /// members arrived meanwhile, when the rebalance timeout ends).
    initial_delay: Option<(Instant, bool, Instant)>,
    /// When members that have not sent SyncGroup are removed.
    sync_deadline: Option<Instant>,
    persisted: Snapshot,
    answers: Vec<(Ticket, GroupResponse)>,
    /// Completed JoinGroup barriers, for tests that count rebalances.
    pub rebalances: u32,
}

impl GroupCoordinator {
    /// An empty group.
    pub fn new(config: CoordinatorConfig) -> Self {
        GroupCoordinator {
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            fenced: BTreeSet::new(),
            next_seq: 0,
            rebalance_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            persisted: Snapshot {
                generation: 0,
                protocol_type: None,
                protocol_name: None,
                leader: None,
                members: BTreeMap::new(),
            },
            answers: Vec::new(),
            rebalances: 0,
        }
    }

    // ----- queries -----

    /// The group's state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The members' ids.
    pub fn member_ids(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The answers produced since the last call, to deliver.
    pub fn take_answers(&mut self) -> Vec<(Ticket, GroupResponse)> {
        std::mem::take(&mut self.answers)
    }

    /// The earliest timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|m| m.session_deadline);
        let looks = self
            .members
            .values()
            .filter_map(|m| Some(m.sync_look?.next));
        [
            self.rebalance_deadline,
            self.initial_delay.map(|d| d.0),
            self.sync_deadline,
        ]
        .into_iter()
        .flatten()
        .chain(sessions)
        .chain(looks)
        .chain(self.pending.values().copied())
        .min()
    }

    // ----- inputs -----

    /// A request addressed to this coordinator.
    pub fn handle(&mut self, now: Instant, ticket: Ticket, request: &GroupRequest) {
        match request {
            GroupRequest::JoinGroup(j) => self.join(now, ticket, j),
            GroupRequest::SyncGroup(s) => self.sync(now, ticket, s),
            GroupRequest::Heartbeat(h) => self.heartbeat(now, ticket, h),
            GroupRequest::LeaveGroup(l) => self.leave(now, ticket, l),
            other => panic!("not a coordinator request: {other:?}"),
        }
    }

    /// Acts on every timer that has passed.
    pub fn tick(&mut self, now: Instant) {
        self.look_at_syncs(now);
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending.remove(&id);
            self.maybe_complete_join(now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.session_deadline <= now
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member(now, &id);
        }
        if let Some((at, new_members, limit)) = self.initial_delay
            && at <= now
        {
            // InitialDelayedJoin: wait another delay while members keep arriving, never past
            // the rebalance timeout.
            let next = now + self.config.initial_rebalance_delay;
            if new_members && next < limit {
                self.initial_delay = Some((next, false, limit));
            } else {
                self.initial_delay = None;
                self.complete_join(now);
            }
        }
        if self.rebalance_deadline.is_some_and(|t| t <= now) {
            self.complete_join(now);
        }
        if self.sync_deadline.is_some_and(|t| t <= now) {
            self.sync_deadline = None;
            if self.state == GroupState::CompletingRebalance {
                let laggards: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.synced)
                    .map(|m| m.id.clone())
                    .collect();
                for id in laggards {
                    self.remove_member(now, &id);
                }
            }
        }
    }

    /// The coordinator moved to another broker: parked requests are answered NOT_COORDINATOR
    /// by the old one, and the new one starts from what was persisted, with fresh session
    /// timers from `now`, when it has loaded the group (as after loading `__consumer_offsets`).
    pub fn fail_over(&mut self, now: Instant) {
        let parked: Vec<(Ticket, bool)> = self
            .members
            .values()
            .flat_map(|m| {
                m.awaiting_join
                    .map(|t| (t, true))
                    .into_iter()
                    .chain(m.awaiting_sync.map(|t| (t, false)))
            })
            .collect();
        for (ticket, join) in parked {
            let answer = if join {
                join_error(code::NOT_COORDINATOR, "")
            } else {
                sync_error(code::NOT_COORDINATOR)
            };
            self.answers.push((ticket, answer));
        }
        let s = self.persisted.clone();
        self.generation = s.generation;
        self.protocol_type = s.protocol_type;
        self.protocol_name = s.protocol_name;
        self.leader = s.leader;
        self.members = s.members;
        for m in self.members.values_mut() {
            m.awaiting_join = None;
            m.awaiting_sync = None;
            m.sync_look = None;
            m.synced = true;
            m.session_deadline = now + m.session_timeout;
        }
        self.pending.clear();
        self.rebalance_deadline = None;
        self.initial_delay = None;
        self.sync_deadline = None;
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    // ----- JoinGroup -----

    fn join(&mut self, now: Instant, ticket: Ticket, j: &JoinGroup) {
        if !self.supports(j) {
            self.answer(
                ticket,
                join_error(code::INCONSISTENT_GROUP_PROTOCOL, &j.member_id),
            );
            return;
        }
        if !self.accepts_joining(&j.member_id) {
            self.answer(
                ticket,
                join_error(code::GROUP_MAX_SIZE_REACHED, &j.member_id),
            );
            return;
        }
        if j.member_id.is_empty() {
            let id = self.new_member_id(j.group_instance_id.as_deref());
            match &j.group_instance_id {
                Some(instance) => match self.static_member(instance) {
                    Some(old) => self.replace_static_member(now, ticket, j, &old, id),
                    None => self.add_member(now, ticket, j, id),
                },
                None => {
                    // KIP-394: a dynamic member must come back with the id it is given, so
                    // that a client that never saw the answer doesn't leave a ghost member.
                    self.pending
                        .insert(id.clone(), now + ms(j.session_timeout_ms));
                    self.answer(
                        ticket,
                        GroupResponse::JoinGroup(JoinGroupAnswer {
                            error_code: code::MEMBER_ID_REQUIRED,
                            member_id: id,
                            ..JoinGroupAnswer::default()
                        }),
                    );
                }
            }
            return;
        }
        if self.pending.remove(&j.member_id).is_some() {
            self.add_member(now, ticket, j, j.member_id.clone());
            return;
        }
        if let Err(error) = self.validate(&j.member_id, j.group_instance_id.as_deref()) {
            self.answer(ticket, join_error(error, &j.member_id));
            return;
        }
        let matches = self.members[&j.member_id].protocols == j.protocols;
        let is_leader = self.leader.as_deref() == Some(j.member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(now, ticket, j);
                self.maybe_complete_join(now);
            }
            GroupState::CompletingRebalance if matches => {
                // It lost the first answer: the same again.
                let answer = self.join_answer(&j.member_id, false);
                self.answer(ticket, answer);
            }
            GroupState::Stable if matches && !is_leader => {
                // A follower with nothing new: the current generation, then SyncGroup.
                let answer = self.join_answer(&j.member_id, false);
                self.answer(ticket, answer);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // The leader rejoining, or new metadata: a rebalance (the leader may have seen
                // metadata change that its subscription doesn't show).
                self.update_member(now, ticket, j);
                self.prepare_rebalance(now);
            }
            GroupState::Empty => {
                self.answer(ticket, join_error(code::UNKNOWN_MEMBER_ID, &j.member_id));
            }
        }
    }

    fn add_member(&mut self, now: Instant, ticket: Ticket, j: &JoinGroup, id: String) {
        let member = Member {
            id: id.clone(),
            instance_id: j.group_instance_id.clone(),
            seq: self.next_seq,
            protocol_type: j.protocol_type.clone(),
            protocols: j.protocols.clone(),
            session_timeout: ms(j.session_timeout_ms),
            rebalance_timeout: ms(j.rebalance_timeout_ms),
            session_deadline: now + ms(j.session_timeout_ms),
            awaiting_join: Some(ticket),
            awaiting_sync: None,
            sync_look: None,
            synced: false,
            assignment: Bytes::new(),
        };
        self.next_seq += 1;
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.insert(id, member);
        if let Some((_, new_members, _)) = &mut self.initial_delay {
            *new_members = true;
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            _ => self.prepare_rebalance(now),
        }
    }

    fn update_member(&mut self, now: Instant, ticket: Ticket, j: &JoinGroup) {
        // Invariant: callers validated the member id.
        let m = self.members.get_mut(&j.member_id).expect("a known member");
        m.protocols = j.protocols.clone();
        m.session_timeout = ms(j.session_timeout_ms);
        m.rebalance_timeout = ms(j.rebalance_timeout_ms);
        m.session_deadline = now + m.session_timeout;
        // A second JoinGroup replaces the first, which is never answered (as in ClassicGroup).
        m.awaiting_join = Some(ticket);
    }

    fn replace_static_member(
        &mut self,
        now: Instant,
        ticket: Ticket,
        j: &JoinGroup,
        old_id: &str,
        new_id: String,
    ) {
        // Invariant: static_member found `old_id` among the members.
        let mut m = self.members.remove(old_id).expect("the static member");
        // Requests the old instance left parked are fenced.
        if let Some(t) = m.awaiting_join.take() {
            self.answer(t, join_error(code::FENCED_INSTANCE_ID, old_id));
        }
        if let Some(t) = m.awaiting_sync.take() {
            self.answer(t, sync_error(code::FENCED_INSTANCE_ID));
        }
        m.sync_look = None;
        self.fenced.insert(old_id.to_owned());
        m.id = new_id.clone();
        m.protocols = j.protocols.clone();
        m.session_timeout = ms(j.session_timeout_ms);
        m.rebalance_timeout = ms(j.rebalance_timeout_ms);
        m.session_deadline = now + m.session_timeout;
        m.awaiting_join = Some(ticket);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        match self.state {
            GroupState::Stable
                if self.select_protocol().as_ref() == self.protocol_name.as_ref() =>
            {
                // KIP-345: no rebalance. The new id is persisted with the old assignment; the
                // leader is told to skip assigning (KIP-814, JoinGroup v9).
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let answer = self.join_answer(&new_id, is_leader);
                // Invariant: inserted just above.
                self.members
                    .get_mut(&new_id)
                    .expect("the member")
                    .awaiting_join = None;
                self.answer(ticket, answer);
                self.persist();
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            _ => self.prepare_rebalance(now),
        }
    }

    /// The JoinGroup answer for the current generation.
    fn join_answer(&self, member_id: &str, skip_assignment: bool) -> GroupResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members_for_leader()
        } else {
            Vec::new()
        };
        GroupResponse::JoinGroup(JoinGroupAnswer {
            error_code: code::NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_owned(),
            members,
        })
    }

    fn members_for_leader(&self) -> Vec<JoinedMember> {
        let name = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance && self.config.sync_looks.is_none() {
            // resetAndPropagateAssignmentWithError: members waiting in SyncGroup learn that
            // this generation will not complete.
            self.fail_pending_syncs(code::REBALANCE_IN_PROGRESS);
        }
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty && !self.config.initial_rebalance_delay.is_zero() {
            let delay = self.config.initial_rebalance_delay.min(timeout);
            self.initial_delay = Some((now + delay, false, now + timeout));
            self.rebalance_deadline = None;
        } else {
            self.rebalance_deadline = Some(now + timeout);
        }
        self.state = GroupState::PreparingRebalance;
        self.maybe_complete_join(now);
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined =
            self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        if all_joined {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        self.rebalance_deadline = None;
        self.initial_delay = None;
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.members.remove(&id);
        }
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        self.generation += 1;
        self.rebalances += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_type = None;
            self.protocol_name = None;
            self.persist();
            return;
        }
        self.protocol_name = self.select_protocol();
        self.protocol_type = self
            .members
            .values()
            .next()
            .map(|m| m.protocol_type.clone());
        self.state = GroupState::CompletingRebalance;
        self.sync_deadline = Some(now + self.rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let answer = self.join_answer(&id, false);
            // Invariant: every member left awaits its join.
            let m = self.members.get_mut(&id).expect("a member");
            let ticket = m.awaiting_join.take().expect("awaiting join");
            m.synced = false;
            m.session_deadline = now + m.session_timeout;
            self.answer(ticket, answer);
        }
    }

    // ----- SyncGroup -----

    fn sync(&mut self, now: Instant, ticket: Ticket, s: &SyncGroup) {
        if let Err(error) = self.validate(&s.member_id, s.group_instance_id.as_deref()) {
            self.answer(ticket, sync_error(error));
            return;
        }
        if s.generation_id != self.generation {
            self.answer(ticket, sync_error(code::ILLEGAL_GENERATION));
            return;
        }
        if self.protocol_type.as_deref() != Some(s.protocol_type.as_str())
            || self.protocol_name.as_deref() != Some(s.protocol_name.as_str())
        {
            self.answer(ticket, sync_error(code::INCONSISTENT_GROUP_PROTOCOL));
            return;
        }
        let is_leader = self.leader.as_deref() == Some(s.member_id.as_str());
        match self.state {
            GroupState::Empty => self.answer(ticket, sync_error(code::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
                if !is_leader && self.config.sync_looks.is_some() =>
            {
                // Tansu: nothing to hand out yet; look again later.
                let every = self.config.sync_looks.unwrap_or_default();
                // Invariant: validated above.
                let m = self.members.get_mut(&s.member_id).expect("a member");
                m.awaiting_sync = Some(ticket);
                m.synced = true;
                m.session_deadline = now + m.session_timeout;
                m.sync_look = Some(SyncLook {
                    next: now + every,
                    give_up: now + m.session_timeout.mul_f64(0.8),
                    generation: s.generation_id,
                });
            }
            GroupState::PreparingRebalance => {
                self.answer(ticket, sync_error(code::REBALANCE_IN_PROGRESS));
            }
            GroupState::CompletingRebalance => {
                // Invariant: validated above.
                let m = self.members.get_mut(&s.member_id).expect("a member");
                m.awaiting_sync = Some(ticket);
                m.synced = true;
                m.session_deadline = now + m.session_timeout;
                if !is_leader {
                    return;
                }
                let given: BTreeMap<&String, &Bytes> =
                    s.assignments.iter().map(|(id, a)| (id, a)).collect();
                for m in self.members.values_mut() {
                    // Members the leader left out get an empty assignment.
                    m.assignment = given.get(&m.id).map(|b| (*b).clone()).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                self.sync_deadline = None;
                self.persist();
                let waiting: Vec<(Ticket, Bytes)> = self
                    .members
                    .values_mut()
                    // With `sync_looks` only the leader's own is answered now.
                    .filter(|m| m.sync_look.is_none())
                    .filter_map(|m| Some((m.awaiting_sync.take()?, m.assignment.clone())))
                    .collect();
                for (t, assignment) in waiting {
                    let answer = self.sync_answer(assignment);
                    self.answer(t, answer);
                }
            }
            GroupState::Stable => {
                let m = self.members.get_mut(&s.member_id).expect("a member");
                m.synced = true;
                m.session_deadline = now + m.session_timeout;
                let assignment = m.assignment.clone();
                let answer = self.sync_answer(assignment);
                self.answer(ticket, answer);
            }
        }
    }

    /// `sync_looks`: the waiting SyncGroups whose look is due get their assignment if the group
    /// is Stable in the generation they name, else wait for the next look, or give up.
    fn look_at_syncs(&mut self, now: Instant) {
        let every = self.config.sync_looks.unwrap_or_default();
        let (state, generation) = (self.state, self.generation);
        let mut answers = Vec::new();
        for m in self.members.values_mut() {
            let Some(look) = m.sync_look.as_mut() else {
                continue;
            };
            if look.next > now {
                continue;
            }
            let outcome = if state == GroupState::Stable && look.generation == generation {
                Some(Ok(m.assignment.clone()))
            } else if now >= look.give_up {
                Some(Err(code::REBALANCE_IN_PROGRESS))
            } else {
                look.next = now + every;
                None
            };
            if let Some(outcome) = outcome {
                m.sync_look = None;
                m.session_deadline = now + m.session_timeout;
                // Invariant: a look is armed only with a SyncGroup waiting.
                let ticket = m.awaiting_sync.take().expect("a waiting SyncGroup");
                answers.push((ticket, outcome));
            }
        }
        for (ticket, outcome) in answers {
            let answer = match outcome {
                Ok(assignment) => self.sync_answer(assignment),
                Err(error) => sync_error(error),
            };
            self.answer(ticket, answer);
        }
    }

    fn sync_answer(&self, assignment: Bytes) -> GroupResponse {
        GroupResponse::SyncGroup {
            error_code: code::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    fn fail_pending_syncs(&mut self, error: i16) {
        let waiting: Vec<Ticket> = self
            .members
            .values_mut()
            .filter_map(|m| m.awaiting_sync.take())
            .collect();
        for t in waiting {
            self.answer(t, sync_error(error));
        }
    }

    // ----- Heartbeat -----

    fn heartbeat(&mut self, now: Instant, ticket: Ticket, h: &Heartbeat) {
        let error = match self.validate(&h.member_id, h.group_instance_id.as_deref()) {
            Err(e) => e,
            Ok(()) if h.generation_id != self.generation => code::ILLEGAL_GENERATION,
            Ok(()) => {
                let m = self.members.get_mut(&h.member_id).expect("a member");
                m.session_deadline = now + m.session_timeout;
                match self.state {
                    GroupState::Empty => code::UNKNOWN_MEMBER_ID,
                    GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
                    GroupState::CompletingRebalance | GroupState::Stable => code::NONE,
                }
            }
        };
        self.answer(ticket, GroupResponse::Heartbeat { error_code: error });
    }

    // ----- OffsetCommit -----

    /// The error an OffsetCommit gets, or NONE when the coordinator takes it
    /// (`ClassicGroup.validateOffsetCommit`): a commit from outside any generation (-1, empty
    /// member id) only while the group is Empty; otherwise from a member the group knows, of
    /// its current generation, and not while the generation is being completed (its members
    /// have no assignment yet). While a rebalance is being prepared the old generation still
    /// commits: that is how a member commits before giving its partitions up.
    pub fn validate_commit(
        &self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        if generation_id < 0 && member_id.is_empty() && instance_id.is_none() {
            return if self.state == GroupState::Empty {
                code::NONE
            } else {
                code::UNKNOWN_MEMBER_ID
            };
        }
        if let Err(e) = self.validate(member_id, instance_id) {
            return e;
        }
        if generation_id != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        if self.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }

    // ----- LeaveGroup -----

    fn leave(&mut self, now: Instant, ticket: Ticket, l: &LeaveGroup) {
        if self.pending.remove(&l.member_id).is_some() {
            self.maybe_complete_join(now);
            self.answer(
                ticket,
                GroupResponse::LeaveGroup {
                    error_code: code::NONE,
                },
            );
            return;
        }
        let error = match self.validate(&l.member_id, l.group_instance_id.as_deref()) {
            Err(e) => e,
            Ok(()) => {
                self.remove_member(now, &l.member_id);
                code::NONE
            }
        };
        self.answer(ticket, GroupResponse::LeaveGroup { error_code: error });
    }

    // ----- helpers -----

    /// Takes a member out (LeaveGroup, session or sync expiry) and rebalances what is left.
    fn remove_member(&mut self, now: Instant, id: &str) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(t) = m.awaiting_join {
            self.answer(t, join_error(code::UNKNOWN_MEMBER_ID, id));
        }
        if let Some(t) = m.awaiting_sync {
            self.answer(t, sync_error(code::UNKNOWN_MEMBER_ID));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.seq)
                .map(|m| m.id.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID for a request from a member the group does not
    /// know in that form (`ClassicGroup.validateMember`).
    fn validate(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_member(instance) {
                Some(current) if current != member_id => return Err(code::FENCED_INSTANCE_ID),
                Some(_) => return Ok(()),
                None => return Err(code::UNKNOWN_MEMBER_ID),
            }
        }
        if self.fenced.contains(member_id) {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if !self.members.contains_key(member_id) {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// `ClassicGroup.supportsProtocols`: the first member sets the protocol type; later ones
    /// must share it and one protocol with every member.
    fn supports(&self, j: &JoinGroup) -> bool {
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != j.member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        others.iter().all(|m| m.protocol_type == j.protocol_type)
            && j.protocols.iter().any(|(name, _)| {
                others
                    .iter()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// `ClassicGroup.acceptJoiningMember` against `group.max.size`.
    fn accepts_joining(&self, member_id: &str) -> bool {
        let known = self.members.contains_key(member_id);
        match self.state {
            GroupState::Empty => true,
            GroupState::PreparingRebalance => {
                let awaiting = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_join.is_some())
                    .count();
                (known && self.members[member_id].awaiting_join.is_some())
                    || awaiting < self.config.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                known || self.members.len() < self.config.max_size
            }
        }
    }

    /// The protocol every member supports that most members prefer; ties go to the one the
    /// earliest member prefers.
    fn select_protocol(&self) -> Option<String> {
        let mut by_seq: Vec<&Member> = self.members.values().collect();
        by_seq.sort_by_key(|m| m.seq);
        let first = by_seq.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                by_seq
                    .iter()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in &by_seq {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|n| votes.get(n) == Some(&best))
            .cloned()
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(300))
    }

    fn new_member_id(&mut self, instance_id: Option<&str>) -> String {
        let id = format!("{}-{}", instance_id.unwrap_or("consumer"), self.next_seq);
        self.next_seq += 1;
        id
    }

    fn persist(&mut self) {
        self.persisted = Snapshot {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: if self.state == GroupState::Stable {
                self.members.clone()
            } else {
                BTreeMap::new()
            },
        };
    }

    fn answer(&mut self, ticket: Ticket, response: GroupResponse) {
        self.answers.push((ticket, response));
    }
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

/// A JoinGroup answer carrying only an error.
pub fn join_error(error_code: i16, member_id: &str) -> GroupResponse {
    GroupResponse::JoinGroup(JoinGroupAnswer {
        error_code,
        generation_id: -1,
        member_id: member_id.to_owned(),
        ..JoinGroupAnswer::default()
    })
}

/// A SyncGroup answer carrying only an error.
pub fn sync_error(error_code: i16) -> GroupResponse {
    GroupResponse::SyncGroup {
        error_code,
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}
