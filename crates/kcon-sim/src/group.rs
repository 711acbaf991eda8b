//! A deterministic simulation harness for [`GroupMachine`]: N members, each with a model
//! application, talk to a model group coordinator ([`coordinator`]) over a simulated network,
//! all on a virtual clock.
//!
//! - Time is `base + offset`: the base is the one real `Instant` read, and only offsets
//!   matter, so runs replay exactly. The harness jumps from one due
//!   thing to the next: a message arriving, a coordinator timer, a member's `poll_timeout`, an
//!   application's poll or acknowledgement.
//! - Every message takes a latency drawn from a seeded [`fastrand::Rng`] (so a seed replays a
//!   run exactly) and can be dropped; a request without an answer fails with a retriable
//!   [`RequestFailure`] after its timeout (`Outgoing::timeout`, else `request.timeout.ms`), as
//!   the driver does, so every request is answered exactly once.
//! - [`Fault`]s make the broker answer a chosen request with an error, a lost connection, or
//!   nothing, instead of handling it.
//! - After every input to a machine the harness drains `poll_request` and `poll_event` (the
//!   driving contract), and after every step it checks the invariants: no partition owned by
//!   two members at once (owned from `Assigned` until its `Revoked` is acknowledged or it is
//!   `Lost`), each application's view equal to its machine's `assignment()`, and no
//!   `poll_timeout` left at or before `now` once `handle_timeout(now)` ran.

use crate::coordinator;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kcon_core::coordinator::FoundCoordinator;
use kcon_core::{Coordinator, Machine, RequestFailure, RequestId, Target, TopicPartition};
use kcon_group::assignor::{PartitionInfo, TopicPartitions};
use kcon_group::{
    GroupConfig, GroupEvent, GroupMachine, GroupRequest, GroupResponse, Member, MemberState,
    RevocationId,
};

use coordinator::{CoordinatorConfig, GroupCoordinator, join_error, sync_error};

use crate::code;
use crate::turns::{LoopParts, Simulation, Turns, coordinator_line, last_entries};

/// The group every simulated member joins.
pub const GROUP: &str = "sim-group";

/// The kinds of request a member sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    /// FindCoordinator.
    FindCoordinator,
    /// Metadata (the subscribed topics' partitions, for the leader's assignment).
    Metadata,
    /// JoinGroup.
    JoinGroup,
    /// SyncGroup.
    SyncGroup,
    /// Heartbeat.
    Heartbeat,
    /// LeaveGroup.
    LeaveGroup,
}

impl Api {
    /// The kind of `request`; panics on a request a classic member never sends.
    pub fn of(request: &GroupRequest) -> Api {
        match request {
            GroupRequest::FindCoordinator { .. } => Api::FindCoordinator,
            GroupRequest::Metadata { .. } => Api::Metadata,
            GroupRequest::JoinGroup(_) => Api::JoinGroup,
            GroupRequest::SyncGroup(_) => Api::SyncGroup,
            GroupRequest::Heartbeat(_) => Api::Heartbeat,
            GroupRequest::LeaveGroup(_) => Api::LeaveGroup,
            other => panic!("a request the simulation doesn't know: {other:?}"),
        }
    }

    /// The Kafka API key.
    pub fn key(self) -> i16 {
        match self {
            Api::FindCoordinator => 10,
            Api::Metadata => 3,
            Api::JoinGroup => 11,
            Api::SyncGroup => 14,
            Api::Heartbeat => 12,
            Api::LeaveGroup => 13,
        }
    }
}

/// The error codes a classic group coordinator answers that the member tells apart, for
/// faults to inject.
pub const GROUP_ERRORS: [i16; 11] = [
    code::NOT_COORDINATOR,
    code::COORDINATOR_NOT_AVAILABLE,
    code::COORDINATOR_LOAD_IN_PROGRESS,
    code::REBALANCE_IN_PROGRESS,
    code::UNKNOWN_MEMBER_ID,
    code::ILLEGAL_GENERATION,
    code::MEMBER_ID_REQUIRED,
    code::FENCED_INSTANCE_ID,
    code::GROUP_AUTHORIZATION_FAILED,
    code::INCONSISTENT_GROUP_PROTOCOL,
    code::GROUP_MAX_SIZE_REACHED,
];

/// What a [`Fault`] does to the request it catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// The broker answers with this error code.
    Error(i16),
    /// The connection fails: a retriable [`RequestFailure`].
    Transport,
    /// No answer: the request times out.
    Drop,
}

/// Makes the broker answer the first matching request delivered at or after `from` with
/// `what` instead of handling it. One-shot.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The kind of request it catches.
    pub api: Api,
    /// Only this member's requests; any member's when `None`.
    pub member: Option<usize>,
    /// It catches requests delivered at or after this.
    pub from: Instant,
    /// What it does to the request it catches.
    pub what: Injected,
    /// When it fired.
    pub fired: Option<Instant>,
    /// The log position then (see [`Sim::mark`]).
    pub fired_mark: u64,
    /// What the member's application owned then.
    pub owned_when_fired: BTreeSet<TopicPartition>,
}

/// How the application answers a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationPolicy {
    /// Acknowledges as soon as it is told.
    Immediate,
    /// Acknowledges after this long (committing offsets, say).
    After(Duration),
    /// Never acknowledges (a stuck application).
    Never,
}

/// The model application of one member.
#[derive(Debug, Clone)]
pub struct App {
    /// How it answers a revocation.
    pub revocation: RevocationPolicy,
    /// How often it polls; `None`: it has stopped polling.
    pub poll_interval: Option<Duration>,
    /// The partitions it consumes: from `Assigned` until it acknowledged their `Revoked` or
    /// was told they are `Lost`.
    pub owned: BTreeSet<TopicPartition>,
    /// Revocations told but not acknowledged yet.
    pub pending: Vec<(RevocationId, Vec<TopicPartition>)>,
}

impl Default for App {
    fn default() -> Self {
        App {
            revocation: RevocationPolicy::Immediate,
            poll_interval: Some(Duration::from_millis(500)),
            owned: BTreeSet::new(),
            pending: Vec::new(),
        }
    }
}

/// One entry of a member's log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its place among all members' entries: see [`Sim::mark`].
    pub seq: u64,
    /// When it happened.
    pub at: Instant,
    /// The member's incarnation then (see [`Node::incarnation`]).
    pub incarnation: u32,
    /// What happened.
    pub kind: Kind,
}

/// What a log [`Entry`] records.
#[derive(Debug, Clone)]
pub enum Kind {
    /// The machine asked to send this.
    Sent(GroupRequest),
    /// The machine was fed this answer: an error code, or a failure.
    Answered(Api, Result<i16, String>),
    /// The machine told the application this.
    Event(GroupEvent),
    /// A fault caught this member's request.
    Injected(Api, Injected),
    /// The process died.
    Crashed,
}

/// A simulated member: its configuration, machine (`None` while crashed) and application.
#[derive(Debug)]
pub struct Node {
    /// The member's configuration, used again at every restart.
    pub config: GroupConfig,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Its machine; `None` while crashed or before it starts.
    pub machine: Option<GroupMachine>,
    /// Bumped by every crash: messages for an older incarnation are dropped.
    pub incarnation: u32,
    /// Its model application.
    pub app: App,
    /// What happened to it, in order.
    pub log: Vec<Entry>,
    /// If set, the log keeps only about this many of its newest entries (at most twice as
    /// many), for runs too long to keep all: `since` a mark older than those sees fewer.
    pub log_limit: Option<usize>,
    /// Requests of the current incarnation still owed an answer.
    outstanding: BTreeMap<RequestId, Api>,
}

impl Node {
    /// The live machine. Panics when crashed: the test asked something only a live member can
    /// answer.
    pub fn machine(&self) -> &GroupMachine {
        self.machine.as_ref().expect("a running member")
    }

    /// Whether it runs and is not closed or failed.
    pub fn is_live(&self) -> bool {
        self.machine.as_ref().is_some_and(|m| !m.is_terminated())
    }

    /// The events of every incarnation logged since `mark` (see [`Sim::mark`]), with their
    /// time.
    pub fn events_since(&self, mark: u64) -> Vec<(Instant, GroupEvent)> {
        self.since(mark)
            .filter_map(|e| match &e.kind {
                Kind::Event(ev) => Some((e.at, ev.clone())),
                _ => None,
            })
            .collect()
    }

    /// The requests of every incarnation sent since `mark`, with their time.
    pub fn sent_since(&self, mark: u64) -> Vec<(Instant, GroupRequest)> {
        self.since(mark)
            .filter_map(|e| match &e.kind {
                Kind::Sent(r) => Some((e.at, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// The log entries since `mark`.
    pub fn since(&self, mark: u64) -> impl Iterator<Item = &Entry> {
        self.log.iter().filter(move |e| e.seq >= mark)
    }

    fn record(&mut self, entry: Entry) {
        if let Some(n) = self.log_limit
            && self.log.len() >= 2 * n.max(1)
        {
            self.log.drain(..self.log.len() - n);
        }
        self.log.push(entry);
    }
}

#[derive(Debug)]
pub(crate) enum Msg {
    ToBroker {
        member: usize,
        incarnation: u32,
        id: RequestId,
        target: Target,
        request: GroupRequest,
    },
    ToMember {
        member: usize,
        incarnation: u32,
        id: RequestId,
        result: Result<GroupResponse, RequestFailure>,
    },
    Timeout {
        member: usize,
        incarnation: u32,
        id: RequestId,
    },
    Poll {
        member: usize,
        incarnation: u32,
    },
    Ack {
        member: usize,
        incarnation: u32,
        id: RevocationId,
    },
}

/// Network behaviour.
#[derive(Debug, Clone)]
pub struct Network {
    /// One-way latency, drawn uniformly from this range (in milliseconds).
    pub latency_ms: (u64, u64),
    /// Probability that a message (request or answer) is lost.
    pub drop_rate: f64,
    /// Members cut off from the cluster until the given time: everything they send or are
    /// sent is lost.
    pub isolated: BTreeMap<usize, Instant>,
    /// `request.timeout.ms` of the simulated driver: how long a request without an answer
    /// waits before it fails (when the machine gives no timeout of its own). 5 s, below the
    /// simulated `session.timeout.ms` as the Java defaults (30 s, 45 s) are, so that one lost
    /// heartbeat is retried before the session runs out.
    pub request_timeout: Duration,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            latency_ms: (1, 1),
            drop_rate: 0.0,
            isolated: BTreeMap::new(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// The one real instant read: virtual time is this plus an offset.
    pub base: Instant,
    /// The virtual now.
    pub now: Instant,
    rng: fastrand::Rng,
    /// How the network behaves.
    pub net: Network,
    /// The model of the broker's group coordinator.
    pub coordinator: GroupCoordinator,
    /// The broker id of the coordinator; requests to another broker get NOT_COORDINATOR.
    pub coordinator_broker: i32,
    /// Until then the coordinator answers COORDINATOR_LOAD_IN_PROGRESS (after a move).
    loading_until: Option<Instant>,
    /// The cluster's topics and their partitions.
    pub topics: TopicPartitions,
    /// The members, by index.
    pub nodes: Vec<Node>,
    /// The faults armed, fired or not.
    pub faults: Vec<Fault>,
    /// Whether to check that no partition is owned by two members at once. Only runs that
    /// lose messages turn it off: with the classic protocol a member cut off from the
    /// coordinator cannot know it was evicted, so the Java client, librdkafka and kcon all
    /// own partitions the group has already given to others until they hear of it.
    pub strict_ownership: bool,
    turns: Turns<Msg, (usize, u32, RequestId)>,
}

impl Sim {
    /// A cluster with `topics` (name, partition count) and no members yet.
    pub fn new(seed: u64, topics: &[(&str, i32)], coordinator: CoordinatorConfig) -> Sim {
        let base = Instant::now();
        Sim {
            base,
            now: base,
            rng: fastrand::Rng::with_seed(seed),
            net: Network::default(),
            coordinator: GroupCoordinator::new(coordinator),
            coordinator_broker: 1,
            loading_until: None,
            topics: topics
                .iter()
                .map(|(t, n)| {
                    let partitions = (0..*n).map(|p| PartitionInfo::new(p, Vec::new())).collect();
                    ((*t).to_owned(), partitions)
                })
                .collect(),
            nodes: Vec::new(),
            faults: Vec::new(),
            strict_ownership: true,
            turns: Turns::default(),
        }
    }

    /// A point in the logs: entries logged from now on are `since` it.
    pub fn mark(&self) -> u64 {
        next_seq()
    }

    /// Seconds since the start, for messages.
    pub fn secs(&self, t: Instant) -> f64 {
        t.duration_since(self.base).as_secs_f64()
    }

    /// Adds a member (not started) subscribing to `topics`.
    pub fn add(&mut self, config: GroupConfig, topics: &[&str], app: App) -> usize {
        config.validate().expect("a valid configuration");
        self.nodes.push(Node {
            config,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            machine: None,
            incarnation: 0,
            app,
            log: Vec::new(),
            log_limit: None,
            outstanding: BTreeMap::new(),
        });
        self.nodes.len() - 1
    }

    /// Starts member `i`, or restarts it after a crash, close or fatal error: a new machine
    /// (a new process) subscribes.
    pub fn start(&mut self, i: usize) {
        let now = self.now;
        let seed = self.rng.u64(..);
        let node = &mut self.nodes[i];
        if let Some(old) = &node.machine {
            assert!(old.is_terminated(), "member {i} is already running");
            node.machine = None;
            node.incarnation += 1;
            node.outstanding.clear();
        }
        let mut machine = GroupMachine::new(node.config.clone(), now, seed);
        machine.subscribe(now, node.topics.iter().cloned());
        node.machine = Some(machine);
        node.app.owned.clear();
        node.app.pending.clear();
        self.schedule_poll(i);
        self.drain(i);
        self.check_invariants();
    }

    /// Kills member `i`'s process: no LeaveGroup, no more heartbeats; what it consumed is
    /// gone with it.
    pub fn crash(&mut self, i: usize) {
        let at = self.now;
        let node = &mut self.nodes[i];
        if node.machine.take().is_none() {
            return;
        }
        node.incarnation += 1;
        node.outstanding.clear();
        node.app.owned.clear();
        node.app.pending.clear();
        node.record(Entry {
            seq: next_seq(),
            at,
            incarnation: node.incarnation - 1,
            kind: Kind::Crashed,
        });
    }

    /// Closes member `i` (the application asks for it).
    pub fn close(&mut self, i: usize) {
        let now = self.now;
        if let Some(m) = self.nodes[i].machine.as_mut() {
            m.close(now);
            self.drain(i);
            self.check_invariants();
        }
    }

    /// Changes member `i`'s subscription.
    pub fn subscribe(&mut self, i: usize, topics: &[&str]) {
        let now = self.now;
        self.nodes[i].topics = topics.iter().map(|t| (*t).to_owned()).collect();
        if let Some(m) = self.nodes[i].machine.as_mut() {
            m.subscribe(now, topics.iter().copied());
            self.drain(i);
            self.check_invariants();
        }
    }

    /// Member `i`'s application unsubscribes (it keeps `topics`, its configured
    /// subscription, for a later `resubscribe` or restart).
    pub fn unsubscribe(&mut self, i: usize) {
        let now = self.now;
        if let Some(m) = self.nodes[i].machine.as_mut() {
            m.unsubscribe(now);
            self.drain(i);
            self.check_invariants();
        }
    }

    /// Adds `more` partitions to `topic`. Drivers hand the machines fresh metadata
    /// periodically; the simulation does it on every application poll.
    pub fn grow_topic(&mut self, topic: &str, more: i32) {
        let partitions = self.topics.get_mut(topic).expect("a topic of the cluster");
        let n = partitions.len() as i32;
        partitions.extend((n..n + more).map(|p| PartitionInfo::new(p, Vec::new())));
    }

    /// Member `i`'s application stops polling (stuck in processing).
    pub fn stop_polling(&mut self, i: usize) {
        self.nodes[i].app.poll_interval = None;
    }

    /// Member `i`'s application polls again, at once and then every `interval`.
    pub fn resume_polling(&mut self, i: usize, interval: Duration) {
        let was_stopped = self.nodes[i].app.poll_interval.is_none();
        self.nodes[i].app.poll_interval = Some(interval);
        if was_stopped && self.nodes[i].machine.is_some() {
            let incarnation = self.nodes[i].incarnation;
            self.push(
                self.now,
                Msg::Poll {
                    member: i,
                    incarnation,
                },
            );
        }
    }

    /// Arms a fault.
    pub fn inject(&mut self, api: Api, member: Option<usize>, what: Injected) {
        self.faults.push(Fault {
            api,
            member,
            from: self.now,
            what,
            fired: None,
            fired_mark: 0,
            owned_when_fired: BTreeSet::new(),
        });
    }

    /// Moves the coordinator to broker `to`, which loads the group for `load` (answering
    /// COORDINATOR_LOAD_IN_PROGRESS meanwhile). The old broker answers NOT_COORDINATOR.
    pub fn move_coordinator(&mut self, to: i32, load: Duration) {
        // The new coordinator times the sessions from when it has loaded the group, as Kafka's
        // does: heartbeats answered COORDINATOR_LOAD_IN_PROGRESS meanwhile cannot keep a
        // member alive, and the load must not expire it.
        self.coordinator.fail_over(self.now + load);
        self.flush_coordinator();
        self.coordinator_broker = to;
        self.loading_until = (!load.is_zero()).then(|| self.now + load);
    }

    /// Runs until virtual time `t`.
    pub fn run_until(&mut self, t: Instant) {
        while let Some(next) = self.next_due() {
            if next > t {
                break;
            }
            self.step(next);
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds (checked after every step) or `limit` passes; whether it held.
    pub fn run_until_cond(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        self.run_until_done(limit, done)
    }

    /// Whether every live member is Stable in the coordinator's current Stable generation,
    /// and the coordinator's members are exactly the live ones.
    pub fn is_settled(&self) -> bool {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.is_live()).collect();
        if live.is_empty() {
            return true;
        }
        if self.coordinator.state() != coordinator::GroupState::Stable {
            return false;
        }
        let ids: BTreeSet<String> = live
            .iter()
            .map(|n| n.machine().generation().member_id.clone())
            .collect();
        live.iter().all(|n| {
            let m = n.machine();
            m.state() == MemberState::Stable
                && m.generation().id == self.coordinator.generation()
                && n.app.pending.is_empty()
        }) && ids == self.coordinator.member_ids()
    }

    /// Asserts the group settled: every live member Stable in one generation, and every
    /// partition of the topics they subscribe to owned by exactly one of them.
    pub fn assert_settled(&self) {
        assert!(
            self.is_settled(),
            "the group did not settle\n{}",
            self.dump(60)
        );
        let subscribed: BTreeSet<&String> = self
            .nodes
            .iter()
            .filter(|n| n.is_live())
            .flat_map(|n| n.topics.iter())
            .collect();
        let all: BTreeSet<TopicPartition> = self
            .topics
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, ps)| {
                ps.iter()
                    .map(|p| TopicPartition::new(t.clone(), p.partition))
            })
            .collect();
        let mut owned = BTreeSet::new();
        for n in self.nodes.iter().filter(|n| n.is_live()) {
            for tp in n.machine().assignment() {
                assert!(
                    owned.insert(tp.clone()),
                    "{tp} assigned twice\n{}",
                    self.dump(60)
                );
            }
        }
        assert_eq!(
            owned,
            all,
            "not every partition is assigned\n{}",
            self.dump(60)
        );
    }

    /// The last `n` log entries of all members, in time order, for failure messages.
    pub fn dump(&self, n: usize) -> String {
        let last = last_entries(
            self.nodes
                .iter()
                .map(|node| node.log.iter().map(|e| (e.at, e))),
            n,
        );
        let mut out = coordinator_line(self.secs(self.now), &self.coordinator) + "\n";
        for (i, node) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "  member {i}: {:?} owned {:?}",
                node.machine
                    .as_ref()
                    .map(|m| (m.state(), m.generation().clone())),
                node.app.owned
            );
        }
        for (at, i, e) in last {
            let _ = writeln!(
                out,
                "  {:>9.3}s m{i}#{} {:?}",
                self.secs(at),
                e.incarnation,
                e.kind
            );
        }
        out
    }

    /// Whether member `member`, in its incarnation `incarnation`, still waits for the answer to
    /// request `id` (an answer to an earlier life, or to a request it gave up, is dropped).
    fn awaits(&self, member: usize, incarnation: u32, id: RequestId) -> bool {
        let node = &self.nodes[member];
        node.incarnation == incarnation && node.outstanding.contains_key(&id)
    }

    fn answer_member(
        &mut self,
        i: usize,
        id: RequestId,
        result: Result<GroupResponse, RequestFailure>,
    ) {
        let now = self.now;
        let node = &mut self.nodes[i];
        // Invariant: callers checked that the request is outstanding.
        let api = node
            .outstanding
            .remove(&id)
            .expect("an outstanding request");
        let summary = match &result {
            Ok(r) => Ok(error_code(r)),
            Err(f) => Err(f.reason.clone()),
        };
        node.record(Entry {
            seq: next_seq(),
            at: now,
            incarnation: node.incarnation,
            kind: Kind::Answered(api, summary),
        });
        if let Some(m) = node.machine.as_mut() {
            m.handle_response(now, id, result);
            self.drain(i);
        }
    }

    /// The broker side of a request: a fault, FindCoordinator and Metadata answered from the
    /// cluster, coordinator requests checked for the right broker and handed to the model.
    fn broker(
        &mut self,
        member: usize,
        incarnation: u32,
        id: RequestId,
        target: Target,
        request: GroupRequest,
    ) {
        let now = self.now;
        let api = Api::of(&request);
        let reply = |sim: &mut Sim, result| sim.reply(member, incarnation, id, result);
        if let Some(f) = self.faults.iter_mut().find(|f| {
            f.fired.is_none()
                && f.api == api
                && f.from <= now
                && f.member.is_none_or(|m| m == member)
        }) {
            f.fired = Some(now);
            f.fired_mark = next_seq();
            f.owned_when_fired = self.nodes[member].app.owned.clone();
            let what = f.what;
            let node = &mut self.nodes[member];
            node.record(Entry {
                seq: next_seq(),
                at: now,
                incarnation,
                kind: Kind::Injected(api, what),
            });
            match what {
                Injected::Error(code) => reply(self, Ok(error_response(&request, code))),
                Injected::Transport => reply(
                    self,
                    Err(RequestFailure::retriable("connection reset (injected)")),
                ),
                Injected::Drop => {}
            }
            return;
        }
        match (&target, &request) {
            (_, GroupRequest::FindCoordinator { group_id }) => {
                assert_eq!(group_id, GROUP);
                let c = broker(self.coordinator_broker);
                reply(
                    self,
                    Ok(GroupResponse::FindCoordinator(FoundCoordinator {
                        error_code: code::NONE,
                        error_message: None,
                        coordinator: Some(c),
                    })),
                );
            }
            (_, GroupRequest::Metadata { topics }) => {
                let known = self
                    .topics
                    .iter()
                    .filter(|(t, _)| topics.contains(*t))
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                reply(self, Ok(GroupResponse::Metadata(known)));
            }
            (Target::Coordinator(c), _) => {
                assert_eq!(*c, broker(c.id), "a coordinator the cluster never named");
                if c.id != self.coordinator_broker {
                    reply(self, Ok(error_response(&request, code::NOT_COORDINATOR)));
                } else if self.loading_until.is_some_and(|t| now < t) {
                    reply(
                        self,
                        Ok(error_response(&request, code::COORDINATOR_LOAD_IN_PROGRESS)),
                    );
                } else {
                    let ticket = self.turns.ticket((member, incarnation, id));
                    self.coordinator.handle(now, ticket, &request);
                    self.flush_coordinator();
                }
            }
            (target, request) => panic!("{request:?} sent to {target:?}"),
        }
    }

    /// Sends an answer back over the network (unless lost).
    fn reply(
        &mut self,
        member: usize,
        incarnation: u32,
        id: RequestId,
        result: Result<GroupResponse, RequestFailure>,
    ) {
        if self.lost() || self.is_isolated(member) {
            return;
        }
        let at = self.now + self.latency();
        self.push(
            at,
            Msg::ToMember {
                member,
                incarnation,
                id,
                result,
            },
        );
    }

    /// Drains member `i` (the driving contract): its requests go on the network, its events
    /// to the application, until neither has anything more.
    fn drain(&mut self, i: usize) {
        loop {
            let now = self.now;
            let node = &mut self.nodes[i];
            let Some(m) = node.machine.as_mut() else {
                return;
            };
            if let Some(out) = m.poll_request(now) {
                let api = Api::of(&out.request);
                if m.is_terminated() {
                    panic!("member {i} asked to send {api:?} after it terminated");
                }
                node.record(Entry {
                    seq: next_seq(),
                    at: now,
                    incarnation: node.incarnation,
                    kind: Kind::Sent(out.request.clone()),
                });
                assert!(
                    node.outstanding.insert(out.id, api).is_none(),
                    "member {i} reused request id {:?}",
                    out.id
                );
                let incarnation = node.incarnation;
                let timeout = out.timeout.unwrap_or(self.net.request_timeout);
                self.push(
                    now + timeout,
                    Msg::Timeout {
                        member: i,
                        incarnation,
                        id: out.id,
                    },
                );
                if !self.lost() && !self.is_isolated(i) {
                    let at = now + self.latency();
                    self.push(
                        at,
                        Msg::ToBroker {
                            member: i,
                            incarnation,
                            id: out.id,
                            target: out.target,
                            request: out.request,
                        },
                    );
                }
                continue;
            }
            if let Some(event) = m.poll_event() {
                node.record(Entry {
                    seq: next_seq(),
                    at: now,
                    incarnation: node.incarnation,
                    kind: Kind::Event(event.clone()),
                });
                self.application(i, event);
                continue;
            }
            return;
        }
    }

    /// The application's side of an event.
    fn application(&mut self, i: usize, event: GroupEvent) {
        let now = self.now;
        let incarnation = self.nodes[i].incarnation;
        let app = &mut self.nodes[i].app;
        match event {
            GroupEvent::Assigned { partitions, .. } => {
                for tp in partitions {
                    assert!(
                        app.owned.insert(tp.clone()),
                        "member {i} was assigned {tp}, which it already owns"
                    );
                }
            }
            GroupEvent::Revoked { partitions, id } => {
                for tp in &partitions {
                    assert!(
                        app.owned.contains(tp),
                        "member {i} was asked to revoke {tp}, which it doesn't own"
                    );
                }
                match app.revocation {
                    RevocationPolicy::Immediate => self.acknowledge(i, id, &partitions),
                    RevocationPolicy::After(d) => {
                        app.pending.push((id, partitions));
                        self.push(
                            now + d,
                            Msg::Ack {
                                member: i,
                                incarnation,
                                id,
                            },
                        );
                    }
                    RevocationPolicy::Never => app.pending.push((id, partitions)),
                }
            }
            GroupEvent::Lost { partitions } => {
                for tp in &partitions {
                    assert!(
                        app.owned.remove(tp),
                        "member {i} lost {tp}, which it didn't own"
                    );
                }
                // A pending revocation of lost partitions can no longer be acknowledged
                // usefully; the application drops it.
                app.pending
                    .retain(|(_, ps)| ps.iter().any(|tp| app.owned.contains(tp)));
            }
            _ => {}
        }
    }

    fn acknowledge(&mut self, i: usize, id: RevocationId, partitions: &[TopicPartition]) {
        let now = self.now;
        let node = &mut self.nodes[i];
        for tp in partitions {
            node.app.owned.remove(tp);
        }
        if let Some(m) = node.machine.as_mut() {
            m.revocation_done(now, id);
            self.drain(i);
        }
    }

    fn schedule_poll(&mut self, i: usize) {
        if let Some(every) = self.nodes[i].app.poll_interval {
            let incarnation = self.nodes[i].incarnation;
            self.push(
                self.now + every,
                Msg::Poll {
                    member: i,
                    incarnation,
                },
            );
        }
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.net.latency_ms;
        Duration::from_millis(self.rng.u64(lo..=hi))
    }

    fn is_isolated(&self, i: usize) -> bool {
        self.net.isolated.get(&i).is_some_and(|t| self.now < *t)
    }

    fn lost(&mut self) -> bool {
        self.net.drop_rate > 0.0 && self.rng.f64() < self.net.drop_rate
    }
}

/// The loop is [`Simulation`]'s; the members' side of a step is theirs.
impl Simulation for Sim {
    type Msg = Msg;
    type ReplyTo = (usize, u32, RequestId);

    fn loop_parts(&mut self) -> LoopParts<'_, Self> {
        (&mut self.now, &mut self.turns, &mut self.coordinator)
    }

    fn others_due(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter_map(|n| n.machine.as_ref()?.poll_timeout())
            .min()
    }

    fn flush_coordinator(&mut self) {
        for (ticket, response) in self.coordinator.take_answers() {
            let (member, incarnation, id) = self.turns.answered(ticket);
            self.reply(member, incarnation, id, Ok(response));
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::ToBroker {
                member,
                incarnation,
                id,
                target,
                request,
            } => self.broker(member, incarnation, id, target, request),
            Msg::ToMember {
                member,
                incarnation,
                id,
                result,
            } => {
                if self.awaits(member, incarnation, id) {
                    self.answer_member(member, id, result);
                }
            }
            Msg::Timeout {
                member,
                incarnation,
                id,
            } => {
                if self.awaits(member, incarnation, id) {
                    let failure = RequestFailure::retriable("request timed out");
                    self.answer_member(member, id, Err(failure));
                }
            }
            Msg::Poll {
                member,
                incarnation,
            } => {
                let now = self.now;
                let node = &mut self.nodes[member];
                if node.incarnation != incarnation {
                    return;
                }
                let Some(m) = node.machine.as_mut() else {
                    return;
                };
                if node.app.poll_interval.is_none() {
                    return;
                }
                m.application_polled(now);
                m.metadata_updated(now, &self.topics, &BTreeMap::new());
                self.drain(member);
                self.schedule_poll(member);
            }
            Msg::Ack {
                member,
                incarnation,
                id,
            } => {
                if self.nodes[member].incarnation != incarnation {
                    return;
                }
                let pending = &mut self.nodes[member].app.pending;
                if let Some(pos) = pending.iter().position(|(r, _)| *r == id) {
                    let (_, partitions) = pending.remove(pos);
                    self.acknowledge(member, id, &partitions);
                }
            }
        }
    }

    fn members(&mut self, now: Instant) {
        for i in 0..self.nodes.len() {
            let Some(m) = self.nodes[i].machine.as_mut() else {
                continue;
            };
            if m.poll_timeout().is_some_and(|d| d <= now) {
                m.handle_timeout(now);
                self.drain(i);
                let after = self.nodes[i]
                    .machine
                    .as_ref()
                    .and_then(|m| m.poll_timeout());
                assert!(
                    after.is_none_or(|d| d > now),
                    "member {i}: poll_timeout {:?}s is not after now {:?}s once handle_timeout ran\n{}",
                    after.map(|d| self.secs(d)),
                    self.secs(now),
                    self.dump(30)
                );
                self.check_invariants();
            }
        }
    }

    /// No partition owned by two members; each application's view is its machine's.
    fn check_invariants(&self) {
        let mut owners: BTreeMap<&TopicPartition, usize> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(m) = node.machine.as_ref() else {
                continue;
            };
            for tp in &node.app.owned {
                if let Some(j) = owners.insert(tp, i)
                    && self.strict_ownership
                {
                    panic!(
                        "{tp} owned by members {j} and {i} at once\n{}",
                        self.dump(60)
                    );
                }
            }
            assert_eq!(
                &node.app.owned,
                m.assignment(),
                "member {i}: the application's partitions differ from the machine's\n{}",
                self.dump(40)
            );
        }
    }

    fn dump(&self, n: usize) -> String {
        Sim::dump(self, n)
    }
}

/// The next log sequence number. Global rather than per simulation so that entries can be
/// pushed where only a node is borrowed; only the order matters.
fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Broker `id` of the simulated cluster.
pub fn broker(id: i32) -> Coordinator {
    Coordinator {
        id,
        host: format!("broker-{id}"),
        port: 9092,
    }
}

/// The error code an answer carries (0 for Metadata).
pub fn error_code(r: &GroupResponse) -> i16 {
    match r {
        GroupResponse::FindCoordinator(FoundCoordinator { error_code, .. })
        | GroupResponse::SyncGroup { error_code, .. }
        | GroupResponse::Heartbeat { error_code }
        | GroupResponse::LeaveGroup { error_code } => *error_code,
        GroupResponse::JoinGroup(j) => j.error_code,
        _ => code::NONE,
    }
}

/// The answer to `request` that carries only `code`.
fn error_response(request: &GroupRequest, code: i16) -> GroupResponse {
    match request {
        GroupRequest::FindCoordinator { .. } => GroupResponse::FindCoordinator(FoundCoordinator {
            error_code: code,
            error_message: Some("injected".to_owned()),
            coordinator: None,
        }),
        GroupRequest::JoinGroup(j) => join_error(code, &j.member_id),
        GroupRequest::SyncGroup(_) => sync_error(code),
        GroupRequest::Heartbeat(_) => GroupResponse::Heartbeat { error_code: code },
        GroupRequest::LeaveGroup(_) => GroupResponse::LeaveGroup { error_code: code },
        // Metadata carries no top-level error here: faults on it are transport failures.
        other => panic!("no error answer for {other:?}"),
    }
}

/// A member configuration: `strategy` as `partition.assignment.strategy`, short timeouts so
/// that runs cover many of them quickly (virtual time makes any length free, but short ones
/// keep failure dumps readable).
pub fn config(strategy: &str, instance: Option<&str>) -> GroupConfig {
    let mut c = GroupConfig::new(GROUP);
    c.set("partition.assignment.strategy", strategy).unwrap();
    c.set("session.timeout.ms", "10000").unwrap();
    c.set("heartbeat.interval.ms", "1000").unwrap();
    c.set("max.poll.interval.ms", "30000").unwrap();
    if let Some(id) = instance {
        c.set("group.instance.id", id).unwrap();
    }
    c
}
