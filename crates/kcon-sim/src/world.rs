//! Whole consumers on one virtual clock: each is the four machines kcon's `Consumer` drives
//! (its own bookkeeping, the group member, the commit machine, the fetch loop), wired the way
//! the `Consumer` and the parts' tasks wire them, talking over a simulated network to a
//! simulated cluster ([`Cluster`]) and group coordinator ([`GroupCoordinator`]).
//!
//! - Time is `base + offset` and only offsets matter, so a run replays exactly. The world jumps
//!   from one due thing to the next: a message arriving, a timer of a machine or of the
//!   coordinator, an application finishing a batch or a listener hook.
//! - Each message takes a fixed latency; a request without an answer fails with a retriable
//!   `RequestFailure` after `request.timeout.ms`, as the drivers do. A Fetch without records
//!   is held `fetch.max.wait.ms`, as a broker holds it.
//! - A consumer's application is modelled: it is in a receiving call (`recv_batch`), busy
//!   processing a batch, or away (not calling, as after a receiving call was cancelled); its
//!   listener's hooks take the time the test gives them. Between calls, events wait in the
//!   channels, as they do between the parts' tasks and the `Consumer`.
//! - After every step the invariants hold: no partition owned by two consumers at once (owned
//!   from the assignment until the revocation or loss is handled), no commit past a record
//!   that was not processed, and every machine's `poll_timeout` after now once its
//!   `handle_timeout` ran.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kcon::consumer::{
    Command, CommittedOffsets, ConsumerMachine, Hook, MachineOptions, Step, StepAnswer,
};
use kcon::property::{fetch as fetch_part, group as group_part, offsets as offsets_part, registry};
use kcon_core::GroupProtocol;
use kcon_core::coordinator::{FoundCoordinator, Membership};
use kcon_core::harness::Schedule;
use kcon_core::{Coordinator, Machine, RequestFailure, RequestId, Target, TopicPartition};
use kcon_fetch::handout::{Arrival, Handout};
use kcon_fetch::{FetchAnswer, FetchConfig, FetchMachine, FetchRequest};
use kcon_group::{GroupConfig, GroupEvent, GroupRequest, GroupResponse, MemberMachine};
use kcon_offsets::{
    CommitId, CommitKind, CommitMachine, CommittedId, OffsetAndMetadata, OffsetsConfig,
    OffsetsEvent, OffsetsRequest, OffsetsResponse,
};

use crate::cluster::{BROKER, Cluster, broker_info};
use crate::code;
use crate::consumer_group::{ConsumerGroupConfig, ConsumerGroupCoordinator};
use crate::coordinator::{CoordinatorConfig, GroupCoordinator, GroupState, Ticket};

/// The group every simulated consumer joins.
pub const GROUP: &str = "sim-group";

/// A run that takes more steps than this is spinning.
const MAX_STEPS: u64 = 2_000_000;

/// One-way network latency.
const LATENCY: Duration = Duration::from_millis(1);

/// The wall clock at the simulation's start, in ms since the epoch (record timestamps).
const BASE_MS: i64 = 1_700_000_000_000;

/// A consumer's settings, by Kafka property name.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    properties: Vec<(String, String)>,
}

impl ClientConfig {
    /// The simulation's defaults, fast timers: `session.timeout.ms=6000`,
    /// `heartbeat.interval.ms=1000`, `auto.offset.reset=earliest`, `fetch.max.wait.ms=100`,
    /// `auto.commit.interval.ms=1000`, and `partition.assignment.strategy=strategy`.
    pub fn new(strategy: &str) -> Self {
        ClientConfig {
            properties: [
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "1000"),
                ("max.poll.interval.ms", "30000"),
                ("auto.offset.reset", "earliest"),
                ("fetch.max.wait.ms", "100"),
                ("auto.commit.interval.ms", "1000"),
                ("partition.assignment.strategy", strategy),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    /// The simulation's defaults under `group.protocol=consumer` (KIP-848): the coordinator
    /// decides sessions, heartbeats and assignment, so only `max.poll.interval.ms=30000`,
    /// `auto.offset.reset=earliest`, `fetch.max.wait.ms=100` and `auto.commit.interval.ms=1000`.
    pub fn consumer_protocol() -> Self {
        ClientConfig {
            properties: [
                ("group.protocol", "consumer"),
                ("max.poll.interval.ms", "30000"),
                ("auto.offset.reset", "earliest"),
                ("fetch.max.wait.ms", "100"),
                ("auto.commit.interval.ms", "1000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        }
    }

    /// Sets a property.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.properties.retain(|(n, _)| n != name);
        self.properties.push((name.to_owned(), value.to_owned()));
        self
    }

    fn parts(&self) -> (GroupConfig, OffsetsConfig, FetchConfig) {
        let mut group = GroupConfig::new(GROUP);
        let mut offsets = OffsetsConfig::new(GROUP);
        let mut fetch = FetchConfig::default();
        for (name, value) in &self.properties {
            let parts = registry::parts_of(kcon::ConsumerBuilder::properties(), name);
            assert!(!parts.is_empty(), "{name}: a property kcon knows");
            for part in parts {
                match part {
                    group_part::GROUP => group.set(name, value).expect("a valid group property"),
                    offsets_part::OFFSETS => {
                        offsets.set(name, value).expect("a valid offsets property")
                    }
                    fetch_part::FETCH => fetch.set(name, value).expect("a valid fetch property"),
                    other => panic!("{name} goes to the {other:?}, which the simulation has not"),
                }
            }
        }
        group.validate().expect("a valid group configuration");
        (group, offsets, fetch)
    }
}

/// How a consumer's application behaves.
#[derive(Debug, Clone)]
pub struct App {
    /// How long processing one batch takes.
    pub processing: Duration,
    /// How long `on_assigned` takes.
    pub on_assigned: Duration,
    /// How long `on_revoked` takes.
    pub on_revoked: Duration,
    /// How long `on_lost` takes.
    pub on_lost: Duration,
}

impl Default for App {
    fn default() -> Self {
        App {
            processing: Duration::from_millis(10),
            on_assigned: Duration::ZERO,
            on_revoked: Duration::ZERO,
            on_lost: Duration::ZERO,
        }
    }
}

/// What a consumer's application is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    /// In a receiving call (or closing): the consumer handles events as they come.
    Calling,
    /// Processing a batch, until then.
    Processing(Instant),
    /// Not calling the consumer at all.
    Away,
    /// Closing the consumer.
    Closing,
    /// Closed, or its member failed.
    Done,
}

/// The parts of a consumer a request goes between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Group,
    Offsets,
    Fetch,
}

#[derive(Debug)]
enum Request {
    Group(GroupRequest),
    Offsets(OffsetsRequest),
    Fetch(FetchRequest),
}

#[derive(Debug)]
enum Answer {
    Group(GroupResponse),
    Offsets(OffsetsResponse),
    Fetch(FetchAnswer),
}

#[derive(Debug)]
enum Msg {
    ToBroker {
        client: usize,
        part: Part,
        id: RequestId,
        target: Target,
        request: Request,
    },
    ToClient {
        client: usize,
        part: Part,
        id: RequestId,
        result: Result<Answer, RequestFailure>,
    },
    Timeout {
        client: usize,
        part: Part,
        id: RequestId,
    },
    /// A listener hook returned.
    HookDone { client: usize, step: RequestId },
    /// The application finished processing a batch and calls again.
    Processed { client: usize },
    /// One second in a receiving call: the consumer's housekeeping.
    Tick { client: usize },
}

/// A step the consumer's driver carries out.
#[derive(Debug)]
enum Running {
    /// The listener's hook, returning at the scheduled time.
    Hook(Hook),
    /// A commit of everything stored, since then.
    Commit(CommitId, Instant),
    /// A committed-offset lookup.
    Committed(CommittedId),
}

/// Something that happened to a consumer, for the test to read.
#[derive(Debug, Clone)]
pub enum Happened {
    /// A listener hook was called with these partitions.
    Listener(Hook, Vec<TopicPartition>),
    /// A listener hook returned.
    HookReturned(Hook),
    /// The group member told the consumer this.
    Group(GroupEvent),
    /// The member heard a revocation is done.
    RevocationDone,
    /// A receiving call returned this error (its message).
    Error(String),
}

/// One simulated consumer.
#[derive(Debug)]
pub struct Client {
    /// The consumer's own bookkeeping.
    pub consumer: ConsumerMachine,
    /// The group member, of either protocol.
    pub group: MemberMachine,
    /// The commit machine.
    pub offsets: CommitMachine,
    /// The fetch loop.
    pub fetch: FetchMachine,
    /// The application.
    pub app: App,
    /// What the application is doing.
    pub doing: Doing,
    /// Every record it processed, in order.
    pub processed: Vec<(TopicPartition, i64)>,
    /// What happened to it, in order, with the time.
    pub log: Vec<(Instant, Happened)>,
    handout: Handout,
    /// The fetch task's channel to the handle.
    arrivals: VecDeque<Arrival>,
    /// The group member's channel to the consumer.
    group_events: VecDeque<GroupEvent>,
    /// The step out, and how it is carried out.
    step: Option<(RequestId, Running)>,
    /// A step done, waiting for the next receiving call to be fed in.
    step_done: Option<(RequestId, StepAnswer)>,
    outstanding: BTreeSet<(Part, RequestId)>,
    membership: Membership,
    /// The member is closing: its revocations are acknowledged at once (as its task does).
    member_closing: bool,
    /// Where a close is.
    close: Option<Closing>,
    topics: Vec<String>,
    /// Partitions the member told lost whose loss the consumer has not handled yet: under
    /// KIP-848 the member rejoins at once, so the coordinator may hand them on before the
    /// application hears of it; `Lost` says they may already be another member's.
    lost_unhandled: BTreeSet<TopicPartition>,
}

impl Client {
    /// Whether the consumer runs (not closed, its member not failed).
    pub fn is_live(&self) -> bool {
        !matches!(self.doing, Doing::Done)
    }

    /// The partitions the consumer owns.
    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        self.consumer.assignment()
    }

    /// The listener calls so far.
    pub fn listener_calls(&self) -> Vec<(Hook, Vec<TopicPartition>)> {
        self.log
            .iter()
            .filter_map(|(_, h)| match h {
                Happened::Listener(hook, ps) => Some((*hook, ps.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Consumers, a coordinator and a cluster on one clock.
#[derive(Debug)]
pub struct World {
    /// The start.
    pub base: Instant,
    /// Now.
    pub now: Instant,
    /// The cluster's data and committed offsets.
    pub cluster: Cluster,
    /// The group coordinator of the classic protocol.
    pub coordinator: GroupCoordinator,
    /// The group coordinator of the consumer protocol (KIP-848).
    pub consumer_coordinator: ConsumerGroupCoordinator,
    /// The consumers.
    pub clients: Vec<Client>,
    /// Whether no partition may be owned by two consumers at once. Scenarios that lose a
    /// member's partitions (its session expired while it was cut off) turn it off: a member
    /// cannot know it was evicted before it hears of it.
    pub strict_ownership: bool,
    /// Every commit the coordinator accepted, with the time.
    pub commits: Vec<(Instant, usize, BTreeMap<TopicPartition, OffsetAndMetadata>)>,
    /// Consumers whose network is cut until then.
    pub isolated: BTreeMap<usize, Instant>,
    queue: Schedule<Msg>,
    tickets: BTreeMap<Ticket, (usize, RequestId)>,
    next_ticket: Ticket,
    steps: u64,
    request_timeout: Duration,
    /// Incremented when the cluster's topics change, as the pool's metadata generation is.
    metadata_generation: u64,
}

impl World {
    /// A cluster with `topics` (name, partition count), empty, and no consumers yet.
    pub fn new(topics: &[(&str, i32)]) -> World {
        let base = Instant::now();
        let cluster = Cluster::new(topics);
        World {
            base,
            now: base,
            consumer_coordinator: ConsumerGroupCoordinator::new(
                ConsumerGroupConfig::default(),
                &cluster.topic_ids(),
            ),
            cluster,
            coordinator: GroupCoordinator::new(CoordinatorConfig {
                initial_rebalance_delay: Duration::from_millis(500),
                ..CoordinatorConfig::default()
            }),
            clients: Vec::new(),
            strict_ownership: true,
            commits: Vec::new(),
            isolated: BTreeMap::new(),
            queue: Schedule::default(),
            tickets: BTreeMap::new(),
            next_ticket: 0,
            steps: 0,
            request_timeout: Duration::from_secs(5),
            metadata_generation: 1,
        }
    }

    /// The wall clock now, in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        BASE_MS + self.now.duration_since(self.base).as_millis() as i64
    }

    /// Seconds since the start, for messages.
    pub fn secs(&self, t: Instant) -> f64 {
        t.duration_since(self.base).as_secs_f64()
    }

    /// Appends `n` records to every partition of `topic`.
    pub fn produce(&mut self, topic: &str, n: usize) {
        let now_ms = self.now_ms();
        for tp in self.cluster.partitions() {
            if tp.topic == topic {
                self.cluster.produce(&tp, n, now_ms);
            }
        }
    }

    /// Creates `topic` with `partitions` partitions: the cluster's metadata changes, and the
    /// KIP-848 coordinator subscribes the members whose regex matches it.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions);
        self.metadata_generation += 1;
        self.consumer_coordinator
            .create_topic(topic, Cluster::topic_id(topic), partitions);
        self.check_invariants();
    }

    /// Adds a consumer that subscribes to `topics` and starts receiving.
    pub fn start(&mut self, config: ClientConfig, topics: &[&str], app: App) -> usize {
        let (group, offsets, fetch) = config.parts();
        let now = self.now;
        let options = MachineOptions {
            group: true,
            auto_commit: offsets.enable_auto_commit,
            auto_store: offsets.enable_auto_offset_store,
            metadata_max_age: Duration::from_secs(300),
            coordinator_regex: group.group_protocol == GroupProtocol::Consumer,
        };
        let seed = self.clients.len() as u64 + 1;
        let max_poll_records = fetch.max_poll_records.max(1) as usize;
        let client = Client {
            consumer: ConsumerMachine::new(options, now),
            group: MemberMachine::new(group, now, seed),
            offsets: CommitMachine::new(offsets, now, seed),
            fetch: FetchMachine::new(fetch, now, seed),
            app,
            doing: Doing::Calling,
            processed: Vec::new(),
            log: Vec::new(),
            handout: Handout::new(max_poll_records),
            arrivals: VecDeque::new(),
            group_events: VecDeque::new(),
            step: None,
            step_done: None,
            outstanding: BTreeSet::new(),
            membership: Membership::default(),
            member_closing: false,
            close: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            lost_unhandled: BTreeSet::new(),
        };
        self.clients.push(client);
        let i = self.clients.len() - 1;
        // The pool's metadata names the subscribed topics' ids, as the member's task feeds
        // them in.
        let ids = self
            .cluster
            .topic_ids()
            .into_iter()
            .map(|(name, id, _)| (id, name))
            .collect();
        self.clients[i]
            .group
            .metadata_updated(now, &Default::default(), &ids);
        let topics = self.clients[i].topics.clone();
        self.clients[i]
            .consumer
            .subscribe(now, topics)
            .expect("a valid subscription");
        self.run_commands(i);
        self.schedule_tick(i);
        self.call(i);
        self.check_invariants();
        i
    }

    /// Consumer `i`'s application stops calling the consumer (a receiving call was cancelled,
    /// or the application is busy elsewhere).
    pub fn go_away(&mut self, i: usize) {
        if self.clients[i].doing == Doing::Calling {
            self.clients[i].doing = Doing::Away;
        }
    }

    /// Consumer `i`'s application calls the consumer again.
    pub fn come_back(&mut self, i: usize) {
        if self.clients[i].doing == Doing::Away {
            self.clients[i].doing = Doing::Calling;
            self.schedule_tick(i);
            self.call(i);
            self.check_invariants();
        }
    }

    /// Consumer `i`'s application pauses `tp`.
    pub fn pause(&mut self, i: usize, tp: &TopicPartition) {
        self.clients[i]
            .consumer
            .pause([tp.clone()])
            .expect("an owned partition");
        self.run_commands(i);
    }

    /// Consumer `i`'s application resumes `tp`.
    pub fn resume(&mut self, i: usize, tp: &TopicPartition) {
        self.clients[i]
            .consumer
            .resume([tp.clone()])
            .expect("an owned partition");
        self.run_commands(i);
        if self.clients[i].doing == Doing::Calling {
            self.call(i);
        }
    }

    /// Consumer `i` is closed, as `Consumer::close` closes it: a rebalance under way is
    /// finished, its partitions revoked (the listener hears of them), a final commit, then the
    /// member leaves and the fetch sessions close.
    pub fn close(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if matches!(c.doing, Doing::Done | Doing::Closing) {
            return;
        }
        c.doing = Doing::Closing;
        self.advance_close(i);
        self.check_invariants();
    }

    /// Cuts consumer `i` off the network for `d`: what it sends and is sent is lost.
    pub fn isolate(&mut self, i: usize, d: Duration) {
        self.isolated.insert(i, self.now + d);
    }

    /// Runs until `done` holds (checked after every step) or `limit` passes; whether it held.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_due() {
                Some(next) if next <= end => self.step(next),
                _ => {
                    self.now = end;
                    return done(self);
                }
            }
        }
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Whether no consumer is closing and the group is Stable with every live consumer in it,
    /// owning between them every partition of the topics they subscribe to, each once, with
    /// everything consumed committed.
    pub fn is_settled(&self) -> bool {
        if self.clients.iter().any(|c| c.doing == Doing::Closing) {
            return false;
        }
        let live: Vec<&Client> = self.clients.iter().filter(|c| c.is_live()).collect();
        if live.is_empty() {
            return true;
        }
        let kip848 = live
            .iter()
            .all(|c| c.group.protocol() == GroupProtocol::Consumer);
        if kip848 {
            if !self.consumer_coordinator.is_reconciled() {
                return false;
            }
        } else if self.coordinator.state() != GroupState::Stable {
            return false;
        }
        let mut owned = BTreeSet::new();
        for c in &live {
            let in_step = if kip848 {
                c.group.state() != kcon_group::MemberState::Stable
                    || !c.group_events.is_empty()
                    || self
                        .consumer_coordinator
                        .member_epoch(&c.group.generation().member_id)
                        != Some(c.group.generation().id)
            } else {
                c.group.generation().id != self.coordinator.generation()
            };
            if c.consumer.is_rebalancing() || in_step {
                return false;
            }
            for tp in c.owned() {
                if !owned.insert(tp.clone()) {
                    return false;
                }
            }
        }
        // The topics subscribed: those named, or those a pattern matches now.
        let subscribed: BTreeSet<String> = live
            .iter()
            .flat_map(|c| c.consumer.subscription())
            .collect();
        let all: BTreeSet<TopicPartition> = self
            .cluster
            .partitions()
            .into_iter()
            .filter(|tp| subscribed.contains(&tp.topic))
            .collect();
        owned == all
            && all.iter().all(|tp| {
                self.cluster.committed().get(tp).map_or(0, |o| o.offset) == self.cluster.end(tp)
            })
    }

    /// Runs until the group settles (see [`is_settled`](Self::is_settled)), at most `limit`;
    /// panics with the log when it does not.
    pub fn settle(&mut self, limit: Duration) {
        let settled = self.run_until(limit, World::is_settled);
        assert!(settled, "the group did not settle\n{}", self.dump(60));
    }

    /// Every record produced was processed at least once, and a record processed more than
    /// once only by consumers that owned its partition in turn (at-least-once: a new owner
    /// starts at the last commit).
    pub fn assert_every_record_processed(&self) {
        for tp in self.cluster.partitions() {
            let end = self.cluster.end(&tp);
            let seen: BTreeSet<i64> = self
                .clients
                .iter()
                .flat_map(|c| c.processed.iter())
                .filter(|(p, _)| *p == tp)
                .map(|(_, o)| *o)
                .collect();
            let missing: Vec<i64> = (0..end).filter(|o| !seen.contains(o)).take(5).collect();
            assert!(
                missing.is_empty(),
                "{tp}: records {missing:?}... never processed\n{}",
                self.dump(40)
            );
        }
    }

    /// Consumer `i` processed each partition's records in order, each once, apart from records
    /// it was handed again after one of its own rebalances (the partition came back from its
    /// last commit).
    pub fn assert_in_order(&self, i: usize) {
        let mut next: BTreeMap<&TopicPartition, i64> = BTreeMap::new();
        for (tp, o) in &self.clients[i].processed {
            if let Some(expected) = next.get(tp) {
                assert!(
                    o == expected,
                    "consumer {i} processed {tp}@{o} where @{expected} was next\n{}",
                    self.dump(40)
                );
            }
            next.insert(tp, o + 1);
        }
    }

    /// The last `n` log entries of every consumer, in time order, for failure messages.
    pub fn dump(&self, n: usize) -> String {
        let mut all: Vec<(Instant, usize, &Happened)> = self
            .clients
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.log.iter().map(move |(at, h)| (*at, i, h)))
            .collect();
        all.sort_by_key(|(at, i, _)| (*at, *i));
        let mut out = format!(
            "at {:.3}s, coordinator {:?} generation {} members {:?}; KIP-848 group epoch {} members {:?}\n",
            self.secs(self.now),
            self.coordinator.state(),
            self.coordinator.generation(),
            self.coordinator.member_ids(),
            self.consumer_coordinator.group_epoch(),
            self.consumer_coordinator.member_ids()
        );
        for (i, c) in self.clients.iter().enumerate() {
            let _ = writeln!(
                out,
                "  consumer {i}: {:?} member {:?} gen {} owns {:?} processed {}",
                c.doing,
                c.group.state(),
                c.group.generation().id,
                c.owned(),
                c.processed.len()
            );
        }
        for (at, i, h) in all.iter().skip(all.len().saturating_sub(n)) {
            let _ = writeln!(out, "  {:>9.3}s c{i} {h:?}", self.secs(*at));
        }
        out
    }

    // ----- the loop -----

    fn next_due(&self) -> Option<Instant> {
        let queued = self.queue.next_at();
        let machines = self.clients.iter().filter(|c| c.is_live()).flat_map(|c| {
            [
                c.group.poll_timeout(),
                c.offsets.poll_timeout(),
                c.fetch.poll_timeout(),
            ]
            .into_iter()
            .flatten()
        });
        queued
            .into_iter()
            .chain(self.coordinator.next_deadline())
            .chain(self.consumer_coordinator.next_deadline())
            .chain(machines)
            .min()
    }

    fn step(&mut self, t: Instant) {
        self.steps += 1;
        assert!(
            self.steps < MAX_STEPS,
            "the simulation spins\n{}",
            self.dump(40)
        );
        self.now = self.now.max(t);
        let now = self.now;
        if self.coordinator.next_deadline().is_some_and(|d| d <= now) {
            self.coordinator.tick(now);
            self.flush_coordinator();
        }
        if self
            .consumer_coordinator
            .next_deadline()
            .is_some_and(|d| d <= now)
        {
            self.consumer_coordinator.tick(now);
            self.check_invariants();
        }
        while let Some(msg) = self.queue.take_due(now) {
            self.deliver(msg);
            self.check_invariants();
        }
        for i in 0..self.clients.len() {
            if !self.clients[i].is_live() {
                continue;
            }
            for part in [Part::Group, Part::Offsets, Part::Fetch] {
                let c = &mut self.clients[i];
                let due = match part {
                    Part::Group => c.group.poll_timeout(),
                    Part::Offsets => c.offsets.poll_timeout(),
                    Part::Fetch => c.fetch.poll_timeout(),
                };
                if due.is_some_and(|d| d <= now) {
                    match part {
                        Part::Group => c.group.handle_timeout(now),
                        Part::Offsets => c.offsets.handle_timeout(now),
                        Part::Fetch => c.fetch.handle_timeout(now),
                    }
                    self.drain(i);
                    self.after_input(i);
                    let c = &self.clients[i];
                    let after = match part {
                        Part::Group => c.group.poll_timeout(),
                        Part::Offsets => c.offsets.poll_timeout(),
                        Part::Fetch => c.fetch.poll_timeout(),
                    };
                    assert!(
                        after.is_none_or(|d| d > now),
                        "consumer {i}: the {part:?} machine's poll_timeout is not after now once handle_timeout ran\n{}",
                        self.dump(30)
                    );
                    self.check_invariants();
                }
            }
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::ToBroker {
                client,
                part,
                id,
                target,
                request,
            } => self.broker(client, part, id, target, request),
            Msg::ToClient {
                client,
                part,
                id,
                result,
            } => self.answer_client(client, part, id, result),
            Msg::Timeout { client, part, id } => {
                let failure = RequestFailure::retriable("request timed out");
                self.answer_client(client, part, id, Err(failure));
            }
            Msg::HookDone { client, step } => {
                let now = self.now;
                let c = &mut self.clients[client];
                if let Some((id, Running::Hook(hook))) = &c.step
                    && *id == step
                {
                    c.log.push((now, Happened::HookReturned(*hook)));
                    c.step = None;
                    c.step_done = Some((step, StepAnswer::Listener(Ok(Vec::new()))));
                    self.after_input(client);
                }
            }
            Msg::Processed { client } => {
                let c = &mut self.clients[client];
                if let Doing::Processing(until) = c.doing
                    && until <= self.now
                {
                    c.doing = Doing::Calling;
                    self.schedule_tick(client);
                    self.call(client);
                }
            }
            Msg::Tick { client } => {
                let now = self.now;
                let c = &mut self.clients[client];
                if c.doing == Doing::Calling {
                    c.consumer.tick(now);
                    self.run_commands(client);
                    self.call(client);
                    self.schedule_tick(client);
                }
            }
        }
    }

    fn answer_client(
        &mut self,
        i: usize,
        part: Part,
        id: RequestId,
        result: Result<Answer, RequestFailure>,
    ) {
        let now = self.now;
        let c = &mut self.clients[i];
        if !c.outstanding.remove(&(part, id)) || !c.is_live() {
            return;
        }
        match (part, result) {
            (Part::Group, Ok(Answer::Group(r))) => c.group.handle_response(now, id, Ok(r)),
            (Part::Group, Err(f)) => c.group.handle_response(now, id, Err(f)),
            (Part::Offsets, Ok(Answer::Offsets(r))) => c.offsets.handle_response(now, id, Ok(r)),
            (Part::Offsets, Err(f)) => c.offsets.handle_response(now, id, Err(f)),
            (Part::Fetch, Ok(Answer::Fetch(r))) => c.fetch.handle_response(now, id, Ok(r)),
            (Part::Fetch, Err(f)) => c.fetch.handle_response(now, id, Err(f)),
            (part, other) => panic!("{part:?} answered with {other:?}"),
        }
        self.drain(i);
        self.after_input(i);
    }

    /// The broker side of a request.
    fn broker(
        &mut self,
        client: usize,
        part: Part,
        id: RequestId,
        target: Target,
        request: Request,
    ) {
        let now = self.now;
        let reply = |w: &mut World, answer: Answer| w.reply(client, part, id, Ok(answer), LATENCY);
        match request {
            Request::Group(GroupRequest::FindCoordinator { group_id })
            | Request::Offsets(OffsetsRequest::FindCoordinator { group_id }) => {
                assert_eq!(group_id, GROUP);
                let found = FoundCoordinator {
                    error_code: code::NONE,
                    error_message: None,
                    coordinator: Some(broker()),
                };
                let answer = match part {
                    Part::Group => Answer::Group(GroupResponse::FindCoordinator(found)),
                    _ => Answer::Offsets(OffsetsResponse::FindCoordinator(found)),
                };
                reply(self, answer);
            }
            Request::Group(GroupRequest::Metadata { topics }) => {
                let known = self.cluster.topic_partitions(&topics);
                reply(self, Answer::Group(GroupResponse::Metadata(known)));
            }
            Request::Group(GroupRequest::TopicIds { .. }) => {
                let ids = self
                    .cluster
                    .topic_ids()
                    .into_iter()
                    .map(|(name, id, _)| (id, name))
                    .collect();
                reply(self, Answer::Group(GroupResponse::TopicIds(ids)));
            }
            Request::Group(GroupRequest::ConsumerGroupHeartbeat(h)) => {
                assert_eq!(target, Target::Coordinator(broker()), "{h:?}");
                assert_eq!(h.group_id, GROUP);
                let answer = self.consumer_coordinator.heartbeat(now, &h);
                self.check_invariants();
                reply(
                    self,
                    Answer::Group(GroupResponse::ConsumerGroupHeartbeat(answer)),
                );
            }
            Request::Group(request) => {
                assert_eq!(target, Target::Coordinator(broker()), "{request:?}");
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.tickets.insert(ticket, (client, id));
                self.coordinator.handle(now, ticket, &request);
                self.flush_coordinator();
            }
            Request::Offsets(OffsetsRequest::OffsetCommit(c)) => {
                let error = if self.clients[client].group.protocol() == GroupProtocol::Consumer {
                    self.consumer_coordinator
                        .validate_commit(c.generation_id, &c.member_id)
                } else {
                    self.coordinator.validate_commit(
                        c.generation_id,
                        &c.member_id,
                        c.group_instance_id.as_deref(),
                    )
                };
                if error == code::NONE
                    && self.clients[client].group.protocol() == GroupProtocol::Consumer
                {
                    self.assert_commit_by_an_owner(
                        client,
                        c.generation_id,
                        &c.member_id,
                        &c.offsets,
                    );
                }
                if error == code::NONE {
                    self.assert_processed_up_to(client, &c.offsets);
                    self.cluster.commit(&c.offsets);
                    self.commits.push((now, client, c.offsets.clone()));
                }
                let partitions = c.offsets.keys().map(|tp| (tp.clone(), error)).collect();
                reply(
                    self,
                    Answer::Offsets(OffsetsResponse::OffsetCommit { partitions }),
                );
            }
            Request::Offsets(OffsetsRequest::OffsetFetch(f)) => {
                let answer = self.cluster.offset_fetch(f.partitions.as_ref());
                reply(self, Answer::Offsets(answer));
            }
            Request::Fetch(FetchRequest::Fetch {
                session, params, ..
            }) => {
                let (answer, any) = self.cluster.fetch(&session);
                let wait = if any || session.kind == kcon_fetch::RequestKind::Close {
                    LATENCY
                } else {
                    Duration::from_millis(params.max_wait_ms.max(0) as u64)
                };
                self.reply(
                    client,
                    part,
                    id,
                    Ok(Answer::Fetch(FetchAnswer::Fetch(Box::new(answer)))),
                    wait,
                );
            }
            Request::Fetch(FetchRequest::Connect { broker: b }) => {
                assert_eq!(b, BROKER);
                reply(self, Answer::Fetch(FetchAnswer::Broker(broker_info())));
            }
            Request::Fetch(FetchRequest::Metadata { topics }) => {
                let view = self.cluster.metadata_view(&topics);
                reply(self, Answer::Fetch(FetchAnswer::Metadata(view)));
            }
            Request::Fetch(FetchRequest::ListOffsets {
                partitions, policy, ..
            }) => {
                let spec = policy
                    .offset_spec(self.now_ms())
                    .expect("a reset policy other than none");
                let tps: Vec<TopicPartition> = partitions.into_iter().map(|(tp, _)| tp).collect();
                let answer = self.cluster.list_offsets(&tps, spec);
                reply(self, Answer::Fetch(FetchAnswer::ListOffsets(answer)));
            }
            Request::Offsets(other) => panic!("a request the simulation doesn't know: {other:?}"),
            Request::Fetch(other) => panic!("a request the simulation doesn't know: {other:?}"),
        }
    }

    fn flush_coordinator(&mut self) {
        for (ticket, response) in self.coordinator.take_answers() {
            // Invariant: every ticket the coordinator answers was handed out by `broker`.
            let (client, id) = self.tickets.remove(&ticket).expect("a ticket");
            self.reply(
                client,
                Part::Group,
                id,
                Ok(Answer::Group(response)),
                LATENCY,
            );
        }
    }

    fn reply(
        &mut self,
        client: usize,
        part: Part,
        id: RequestId,
        result: Result<Answer, RequestFailure>,
        after: Duration,
    ) {
        if self.is_isolated(client) {
            return;
        }
        self.push(
            self.now + after,
            Msg::ToClient {
                client,
                part,
                id,
                result,
            },
        );
    }

    /// Drains consumer `i`'s three broker-facing machines (the driving contract): requests go
    /// on the network, events to the consumer's channels, until none has anything more.
    fn drain(&mut self, i: usize) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            if !c.is_live() {
                return;
            }
            let out = if let Some(o) = c.group.poll_request(now) {
                Some((
                    Part::Group,
                    o.id,
                    o.target,
                    o.timeout,
                    Request::Group(o.request),
                ))
            } else if let Some(o) = c.offsets.poll_request(now) {
                Some((
                    Part::Offsets,
                    o.id,
                    o.target,
                    o.timeout,
                    Request::Offsets(o.request),
                ))
            } else {
                c.fetch.poll_request(now).map(|o| {
                    (
                        Part::Fetch,
                        o.id,
                        o.target,
                        o.timeout,
                        Request::Fetch(o.request),
                    )
                })
            };
            if let Some((part, id, target, timeout, request)) = out {
                assert!(
                    c.outstanding.insert((part, id)),
                    "consumer {i} reused {id:?}"
                );
                // A Fetch may be held fetch.max.wait.ms before it is answered.
                let timeout = timeout.unwrap_or(self.request_timeout) + Duration::from_secs(1);
                self.push(
                    now + timeout,
                    Msg::Timeout {
                        client: i,
                        part,
                        id,
                    },
                );
                if !self.is_isolated(i) {
                    self.push(
                        now + LATENCY,
                        Msg::ToBroker {
                            client: i,
                            part,
                            id,
                            target,
                            request,
                        },
                    );
                }
                continue;
            }
            if let Some(event) = c.group.poll_event() {
                if c.group.protocol() == GroupProtocol::Consumer {
                    match &event {
                        GroupEvent::Lost { partitions } => {
                            c.lost_unhandled.extend(partitions.iter().cloned());
                        }
                        GroupEvent::Assigned { partitions, .. } => {
                            for tp in partitions {
                                c.lost_unhandled.remove(tp);
                            }
                        }
                        _ => {}
                    }
                }
                // A closing member's task acknowledges its revocations itself.
                if c.member_closing
                    && let GroupEvent::Revoked { id, .. } = &event
                {
                    c.group.revocation_done(now, *id);
                }
                c.group_events.push_back(event);
                continue;
            }
            if let Some(event) = c.offsets.poll_event() {
                self.offsets_event(i, event);
                continue;
            }
            if let Some(event) = c.fetch.poll_event() {
                c.arrivals.push_back(Arrival::Event(event));
                continue;
            }
            // The offsets task follows the member's membership.
            let m = Membership {
                generation_id: c.group.generation().id,
                member_id: c.group.generation().member_id.clone(),
                coordinator: c.group.coordinator().cloned(),
            };
            if m != c.membership {
                c.offsets
                    .set_generation(m.generation_id, m.member_id.clone());
                if m.coordinator.is_some() {
                    c.offsets.set_coordinator(m.coordinator.clone());
                }
                c.membership = m;
                continue;
            }
            return;
        }
    }

    /// What the commit machine finished: a step's commit or lookup, or the close's commit.
    fn offsets_event(&mut self, i: usize, event: OffsetsEvent) {
        let now = self.now;
        let c = &mut self.clients[i];
        match event {
            OffsetsEvent::Committed { id, result, .. } => {
                if let Some((step, Running::Commit(cid, started))) = &c.step
                    && *cid == id
                {
                    let answer = StepAnswer::Commit {
                        latency: now.duration_since(*started),
                        result: result.map(drop).map_err(|e| e.to_string()),
                    };
                    c.step_done = Some((*step, answer));
                    c.step = None;
                } else if c.close == Some(Closing::Commit(id)) {
                    c.close = Some(Closing::Leaving);
                }
            }
            OffsetsEvent::CommittedOffsets { id, result } => {
                if let Some((step, Running::Committed(fid))) = &c.step
                    && *fid == id
                {
                    let result: Result<CommittedOffsets, kcon::Error> = result
                        .map(|found| {
                            found
                                .into_iter()
                                .map(|(tp, o)| (tp, o.map(|o| (o.offset, o.leader_epoch))))
                                .collect()
                        })
                        .map_err(kcon::Error::from);
                    c.step_done = Some((*step, StepAnswer::Committed(result)));
                    c.step = None;
                }
            }
            other => panic!("an offsets event the simulation doesn't know: {other:?}"),
        }
    }

    /// After any input to a consumer's parts: a receiving call (or a close) under way goes on.
    fn after_input(&mut self, i: usize) {
        match self.clients[i].doing {
            Doing::Calling => self.call(i),
            Doing::Closing => self.advance_close(i),
            _ => {}
        }
    }

    /// Consumer `i`'s application is in `recv_batch`: what `Consumer::fill_or` does, until it
    /// has records (the application then processes them) or waits for something.
    fn call(&mut self, i: usize) {
        loop {
            let now = self.now;
            if self.clients[i].doing != Doing::Calling {
                return;
            }
            if let Some((_, records)) = self.clients[i].consumer.take_batch() {
                let c = &mut self.clients[i];
                for r in &records {
                    c.processed
                        .push((TopicPartition::new(&*r.topic, r.partition), r.offset));
                }
                let until = now + c.app.processing;
                c.doing = Doing::Processing(until);
                self.push(until, Msg::Processed { client: i });
                return;
            }
            self.clients[i].consumer.finish_current();
            match self.fill_step(i) {
                Fill::Again => continue,
                Fill::Wait => return,
                Fill::Error(e) => {
                    let c = &mut self.clients[i];
                    c.log.push((now, Happened::Error(e.to_string())));
                    if c.consumer.fatal().is_some() {
                        c.doing = Doing::Done;
                        return;
                    }
                }
            }
        }
    }

    /// One turn of `Consumer::fill_or`'s loop.
    fn fill_step(&mut self, i: usize) -> Fill {
        let now = self.now;
        if let Some(e) = self.clients[i].consumer.take_error() {
            return Fill::Error(e);
        }
        match self.run_step(i) {
            StepState::Busy => return Fill::Wait,
            StepState::Fed => return Fill::Again,
            StepState::Idle => {}
        }
        let generation = self.metadata_generation;
        let topics = self.cluster.topic_names();
        self.clients[i]
            .consumer
            .prepare(now, generation, || topics.iter());
        self.run_commands(i);
        if self.clients[i].consumer.is_busy() {
            return Fill::Again;
        }
        let c = &mut self.clients[i];
        // Biased: the member's events first, as the Consumer's select! is.
        if let Some(event) = c.group_events.pop_front() {
            c.log.push((now, Happened::Group(event.clone())));
            let handled = c.consumer.group_event(now, Some(event));
            self.run_commands(i);
            return match handled {
                Ok(()) => Fill::Again,
                Err(e) => Fill::Error(e),
            };
        }
        let handed = match c.handout.next_released() {
            Some(h) => Some(h),
            None => loop {
                let Some(arrival) = c.arrivals.pop_front() else {
                    break None;
                };
                if let Some(h) = c.handout.arrive(arrival) {
                    break Some(h);
                }
            },
        };
        let Some(h) = handed else {
            return Fill::Wait;
        };
        for release in h.releases {
            release.apply(&mut c.fetch, now);
        }
        let ready = c.consumer.fetch_event(now, Some(h.event));
        self.run_commands(i);
        self.drain(i);
        match ready {
            Ok(true) => Fill::Again,
            Ok(false) => Fill::Again,
            Err(e) => Fill::Error(e),
        }
    }

    /// `Consumer::finish_steps`, one turn: a step done is fed in, a new one started.
    fn run_step(&mut self, i: usize) -> StepState {
        let now = self.now;
        let c = &mut self.clients[i];
        if let Some((id, answer)) = c.step_done.take() {
            c.consumer.handle_step(id, answer);
            self.run_commands(i);
            return StepState::Fed;
        }
        if c.step.is_some() {
            return StepState::Busy;
        }
        let Some((id, step)) = c.consumer.poll_step() else {
            return StepState::Idle;
        };
        match step {
            Step::Listener {
                hook, partitions, ..
            } => {
                let takes = match hook {
                    Hook::Assigned => c.app.on_assigned,
                    Hook::Revoked => c.app.on_revoked,
                    Hook::Lost => c.app.on_lost,
                };
                c.log.push((now, Happened::Listener(hook, partitions)));
                c.step = Some((id, Running::Hook(hook)));
                self.push(
                    now + takes,
                    Msg::HookDone {
                        client: i,
                        step: id,
                    },
                );
            }
            Step::Commit => {
                let cid = c.offsets.commit_stored(now, CommitKind::Sync);
                c.step = Some((id, Running::Commit(cid, now)));
                self.drain(i);
            }
            Step::Committed(partitions) => {
                let fid = c.offsets.fetch_committed(now, Some(partitions));
                c.step = Some((id, Running::Committed(fid)));
                self.drain(i);
            }
            Step::AllTopics => {
                let topics = self.cluster.topic_names();
                let generation = self.metadata_generation;
                self.clients[i].step_done =
                    Some((id, StepAnswer::Topics(Ok((generation, topics)))));
            }
            other => panic!("a step the simulation doesn't know: {other:?}"),
        }
        StepState::Fed
    }

    /// Passes consumer `i`'s commands to its parts, as `Consumer::run_commands` and the parts'
    /// tasks do.
    fn run_commands(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        while let Some(command) = c.consumer.poll_command() {
            match command {
                Command::Subscribe(topics) => c.group.subscribe(now, topics),
                Command::SubscribeRegex { topics, regex } => {
                    c.group.subscribe_with_regex(now, topics, Some(regex));
                }
                Command::Unsubscribe => c.group.unsubscribe(now),
                Command::Alive => c.group.application_polled(now),
                Command::RevocationDone(id) => {
                    c.log.push((now, Happened::RevocationDone));
                    c.group.revocation_done(now, id);
                }
                Command::TrackTopics(_) | Command::Leaving(_) => {}
                Command::Assign(starts) => c.fetch.assign(now, starts),
                Command::Unassign(partitions) => {
                    let fence = c.handout.unassign(&partitions);
                    c.fetch.unassign(&partitions);
                    c.arrivals.push_back(Arrival::Fenced(partitions, fence));
                }
                Command::Pause(tp) => {
                    c.handout.pause(tp.clone());
                    c.fetch.pause(&tp);
                }
                Command::Resume(tp) => {
                    c.handout.resume(&tp);
                    c.fetch.resume(&tp);
                }
                Command::Seek(tp, offset) => {
                    let fence = c.handout.seek(&tp);
                    c.fetch.seek(&tp, offset, None);
                    c.arrivals.push_back(Arrival::Fenced(vec![tp], fence));
                }
                Command::Store(tp, offset, leader_epoch) => c.offsets.store(
                    tp,
                    OffsetAndMetadata {
                        offset,
                        leader_epoch,
                        metadata: String::new(),
                    },
                ),
                Command::Forget(partitions) => c.offsets.forget(&partitions),
                other => panic!("a command the simulation doesn't know: {other:?}"),
            }
        }
        self.drain(i);
    }

    /// `Consumer::close_within`, as far as it can go now.
    fn advance_close(&mut self, i: usize) {
        let now = self.now;
        loop {
            let stage = *self.clients[i].close.get_or_insert(Closing::Steps);
            match stage {
                Closing::Steps | Closing::Revoking => match self.run_step(i) {
                    StepState::Busy => return,
                    StepState::Fed => continue,
                    StepState::Idle if stage == Closing::Steps => {
                        let c = &mut self.clients[i];
                        c.close = Some(Closing::Revoking);
                        c.consumer.begin_close();
                        self.run_commands(i);
                    }
                    StepState::Idle => {
                        let c = &mut self.clients[i];
                        if c.consumer.fatal().is_none() && c.consumer.auto_commit() {
                            let id = c.offsets.commit_stored(now, CommitKind::Sync);
                            c.close = Some(Closing::Commit(id));
                            self.drain(i);
                        } else {
                            c.close = Some(Closing::Leaving);
                        }
                    }
                },
                Closing::Commit(_) => return,
                Closing::Leaving => {
                    let c = &mut self.clients[i];
                    if !c.member_closing {
                        c.member_closing = true;
                        c.group.close(now);
                        c.fetch.close(now);
                        self.drain(i);
                        continue;
                    }
                    if c.group.is_terminated() && c.fetch.is_closed() {
                        c.doing = Doing::Done;
                    }
                    return;
                }
            }
        }
    }

    /// No partition owned by two live consumers; the committed offsets never past what was
    /// processed.
    fn check_invariants(&self) {
        // The KIP-848 coordinator never lets two members hold a partition.
        for (tp, holders) in self.consumer_coordinator.holders() {
            assert!(
                holders.len() <= 1,
                "the KIP-848 coordinator lets {holders:?} hold {tp}\n{}",
                self.dump(60)
            );
        }
        if !self.strict_ownership {
            return;
        }
        let mut owners: BTreeMap<&TopicPartition, usize> = BTreeMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if !c.is_live() {
                continue;
            }
            for tp in c.owned() {
                if c.lost_unhandled.contains(tp) {
                    continue;
                }
                if let Some(j) = owners.insert(tp, i) {
                    panic!(
                        "{tp} owned by consumers {j} and {i} at once\n{}",
                        self.dump(60)
                    );
                }
            }
        }
    }

    /// Under KIP-848 a commit is accepted only with the member's current epoch, and only for
    /// partitions the coordinator counts the member as holding: a commit from a fenced
    /// member, or of a partition lost and handed on, must have been refused.
    fn assert_commit_by_an_owner(
        &self,
        client: usize,
        epoch: i32,
        member_id: &str,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) {
        assert_eq!(
            self.consumer_coordinator.member_epoch(member_id),
            Some(epoch),
            "consumer {client}'s commit was accepted with a stale epoch\n{}",
            self.dump(40)
        );
        let holders = self.consumer_coordinator.holders();
        for tp in offsets.keys() {
            let holder = holders.get(tp).and_then(|h| h.first());
            assert_eq!(
                holder.map(String::as_str),
                Some(member_id),
                "consumer {client} commits {tp}, held by {holder:?}\n{}",
                self.dump(40)
            );
        }
    }

    /// A commit by consumer `client` may not pass a record nobody processed.
    fn assert_processed_up_to(
        &self,
        client: usize,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) {
        for (tp, o) in offsets {
            let processed: BTreeSet<i64> = self
                .clients
                .iter()
                .flat_map(|c| c.processed.iter())
                .filter(|(p, _)| p == tp)
                .map(|(_, off)| *off)
                .collect();
            if let Some(unprocessed) = (0..o.offset).find(|x| !processed.contains(x)) {
                panic!(
                    "consumer {client} commits {tp} at {} past {unprocessed}, which nobody processed\n{}",
                    o.offset,
                    self.dump(40)
                );
            }
        }
    }

    fn schedule_tick(&mut self, i: usize) {
        self.push(self.now + Duration::from_secs(1), Msg::Tick { client: i });
    }

    fn push(&mut self, at: Instant, msg: Msg) {
        self.queue.send(at, msg);
    }

    fn is_isolated(&self, i: usize) -> bool {
        self.isolated.get(&i).is_some_and(|t| self.now < *t)
    }
}

/// The stages of `Consumer::close_within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// A rebalance under way is finished first.
    Steps,
    /// The partitions are revoked (the listener hears of them).
    Revoking,
    /// The final commit, under way.
    Commit(CommitId),
    /// The member leaves and the fetch sessions close.
    Leaving,
}

/// What one turn of a receiving call came to.
enum Fill {
    /// Something was handled: go on.
    Again,
    /// Nothing to do until the next input.
    Wait,
    /// The call returns this error.
    Error(kcon::Error),
}

/// Where the consumer's steps are.
enum StepState {
    /// A step is under way: nothing else happens meanwhile.
    Busy,
    /// A step was fed in or started.
    Fed,
    /// No step.
    Idle,
}

/// The simulated cluster's broker, as FindCoordinator names it.
pub fn broker() -> Coordinator {
    Coordinator {
        id: BROKER,
        host: "broker-1".to_owned(),
        port: 9092,
    }
}
