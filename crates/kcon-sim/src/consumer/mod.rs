//! Whole consumers on one virtual clock: each is the four machines kcon's `Consumer` drives
//! (its own bookkeeping, the group member, the commit machine, the fetch loop), talking over a
//! simulated network to this crate's simulated cluster ([`Cluster`]) and group coordinators
//! ([`GroupCoordinator`], [`ConsumerGroupCoordinator`]). The consumer's machine and its driver
//! come from kcon's hidden feature `fuzzing` (`kcon::fuzzing::consumer`), which kcon exports
//! for this module only.
//!
//! - The consumer's machine runs on the consumer's own driver ([`Driver`]): the same
//!   decisions the tokio `Consumer` makes (what each input does, how commands reach the parts,
//!   how steps start and finish, the order of a close), with `SimParts` as its parts in place
//!   of the tasks' handles. This module only feeds it inputs from its scheduled messages, as
//!   the `Consumer`'s async shell does from its channels, and copies none of it.
//! - The group member, the commit machine and the fetch loop are driven as their tasks drive
//!   them (the driving contract: drain requests and events after every input), their requests
//!   going over the network to the models.
//! - Time is `base + offset` and only offsets matter, so a run replays exactly. The world jumps
//!   from one due thing to the next: a message arriving, a timer of a machine (the consumer's
//!   own while a receiving call waits) or of the coordinator, an application finishing a batch
//!   or a listener hook.
//! - Each message takes a fixed latency; a request without an answer fails with a retriable
//!   `RequestFailure` after `request.timeout.ms`, as the drivers do. A Fetch without records
//!   is held `fetch.max.wait.ms`, as a broker holds it.
//! - A consumer's application is modelled: it is in a receiving call (`recv_batch`), busy
//!   processing a batch, or away (not calling, as after a receiving call was cancelled); its
//!   listener's hooks take the time the test gives them. Between calls, events wait in the
//!   channels, as they do between the parts' tasks and the `Consumer`.
//! - After every step the invariants hold: no partition owned by two consumers at once (owned
//!   from the assignment until the revocation or loss is handled), no commit past a record
//!   that was not processed, and every machine's `poll_timeout` (the consumer's too) after now
//!   once its timers fired.
//!
//! This crate's tests run scenarios on it (`classic`, `kip848`), and the fuzz target `consumer`
//! drives it with operations read from its input.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kcon::consumer::Hook;
use kcon::fuzzing::consumer::{
    Answer, CloseTurn, CommittedOffsets, ConsumerMachine, Driver, FetchInput, Got, LagInputs,
    MachineOptions, MetricsState, Parts, StepAnswer, Turn,
};
use kcon::property::{fetch as fetch_part, group as group_part, offsets as offsets_part, registry};
use kcon::{Error, FetchedBatch, Record, Truncation};
use kcon_core::GroupProtocol;
use kcon_core::coordinator::{FoundCoordinator, Membership};
use kcon_core::{
    Coordinator, Machine, PersistentFailure, RequestFailure, RequestId, Target, TopicPartition,
};
use kcon_fetch::handout::{Arrival, Handout, Release};
use kcon_fetch::{FetchAnswer, FetchConfig, FetchMachine, FetchRequest, StartPosition};
use kcon_group::{
    GroupConfig, GroupEvent, GroupRequest, GroupResponse, MemberMachine, RevocationId,
};
use kcon_offsets::{
    CommitId, CommitKind, CommitMachine, CommittedId, OffsetAndMetadata, OffsetsConfig,
    OffsetsEvent, OffsetsRequest, OffsetsResponse,
};

use crate::cluster::{BROKER, Cluster, broker_info};
use crate::code;
use crate::consumer_group::{ConsumerGroupConfig, ConsumerGroupCoordinator};
use crate::coordinator::{CoordinatorConfig, GroupCoordinator, GroupState};
use crate::turns::{LoopParts, Simulation, Turns, coordinator_line, last_entries};

#[cfg(test)]
mod classic;
#[cfg(test)]
mod kip848;

/// The group every simulated consumer joins.
pub const GROUP: &str = "sim-group";

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
    /// The application stores each batch's offset itself once it has processed it, as an
    /// owner above the consumer does (partition streams, a record processor: the consumer
    /// `store_elsewhere`), and drops a batch whose partition it hears is leaving.
    pub stores: bool,
}

impl Default for App {
    fn default() -> Self {
        App {
            processing: Duration::from_millis(10),
            on_assigned: Duration::ZERO,
            on_revoked: Duration::ZERO,
            on_lost: Duration::ZERO,
            stores: false,
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
pub(crate) enum Part {
    Group,
    Offsets,
    Fetch,
}

#[derive(Debug)]
pub(crate) enum Request {
    Group(GroupRequest),
    Offsets(OffsetsRequest),
    Fetch(FetchRequest),
}

#[derive(Debug)]
pub(crate) enum Reply {
    Group(GroupResponse),
    Offsets(OffsetsResponse),
    Fetch(FetchAnswer),
}

#[derive(Debug)]
pub(crate) enum Msg {
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
        result: Result<Reply, RequestFailure>,
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
}

/// A step of the consumer's machine being carried out.
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
    /// An owner above the consumer heard these partitions leave.
    Leaving(Vec<TopicPartition>),
    /// The hooks heard of a request that keeps failing, or of its recovery.
    Report(PersistentFailure),
    /// The hooks heard of a truncated log the consumer read on from.
    Truncated(Truncation),
    /// A receiving call returned this error (its message).
    Error(String),
    /// The application was handed these records of a partition: the first and last offset.
    Handed(TopicPartition, i64, i64),
    /// The application seeked a partition to this offset.
    Seeked(TopicPartition, i64),
}

/// One simulated consumer.
#[derive(Debug)]
pub struct Client {
    /// The consumer's machine on its driver: the code the `Consumer` runs.
    driver: Driver,
    /// What the driver commands: the other machines and the channels between them.
    parts: SimParts,
    /// What the application is doing.
    pub doing: Doing,
    /// Every record it processed, in order.
    pub processed: Vec<(TopicPartition, i64)>,
    /// A receiving call is under way: it began (the member heard the application is alive)
    /// and has not returned.
    in_call: bool,
    /// The close's final commit, once sent.
    close_commit: Option<CommitId>,
    topics: Vec<String>,
    outstanding: BTreeSet<(Part, RequestId)>,
    membership: Membership,
    /// The member is closing: its revocations are acknowledged at once (as its task does).
    member_closing: bool,
    /// Partitions the member told lost whose loss the consumer has not handled yet: under
    /// KIP-848 the member rejoins at once, and under either protocol a member whose application
    /// stopped calling past `max.poll.interval.ms` leaves the group, so the coordinator may hand
    /// them on before the application hears of it (on its next call); `Lost` says they may
    /// already be another member's.
    lost_unhandled: BTreeSet<TopicPartition>,
}

impl Client {
    /// Whether the consumer runs (not closed, its member not failed).
    pub fn is_live(&self) -> bool {
        !matches!(self.doing, Doing::Done)
    }

    /// The consumer's machine.
    pub fn consumer(&self) -> &ConsumerMachine {
        &self.driver.machine
    }

    /// The group member, of either protocol.
    pub fn group(&self) -> &MemberMachine {
        &self.parts.group
    }

    /// What happened to it, in order, with the time.
    pub fn log(&self) -> &[(Instant, Happened)] {
        &self.parts.log
    }

    /// The partitions the consumer owns.
    pub fn owned(&self) -> &BTreeSet<TopicPartition> {
        self.driver.machine.assignment()
    }

    /// The topics the consumer told the pool to keep fresh.
    pub fn tracked(&self) -> &BTreeSet<String> {
        &self.parts.tracked
    }

    /// The listener calls so far.
    pub fn listener_calls(&self) -> Vec<(Hook, Vec<TopicPartition>)> {
        self.parts
            .log
            .iter()
            .filter_map(|(_, h)| match h {
                Happened::Listener(hook, ps) => Some((*hook, ps.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A consumer's parts in the simulation: the machines its tasks would run and the channels
/// between them and the consumer, as the driver's [`Parts`].
#[derive(Debug)]
struct SimParts {
    /// The consumer's index, for the messages it schedules.
    client: usize,
    /// The group member, of either protocol.
    group: MemberMachine,
    /// The commit machine.
    offsets: CommitMachine,
    /// The fetch loop.
    fetch: FetchMachine,
    /// How long the listener's hooks take.
    app: App,
    /// What happened, in order, with the time.
    log: Vec<(Instant, Happened)>,
    /// The fetch task's channel to the handle.
    arrivals: VecDeque<Arrival>,
    /// The group member's channel to the consumer.
    group_events: VecDeque<GroupEvent>,
    /// The application gave everything up and has not subscribed since: the member's task
    /// acknowledges revocations itself.
    gave_up: bool,
    /// The offsets task's channel of reports to the consumer.
    offsets_reports: VecDeque<PersistentFailure>,
    /// The step out, and how it is carried out.
    step: Option<(RequestId, Running)>,
    /// A step done, waiting for the consumer to take its answer (as the `Consumer` awaits a
    /// step's task again on its next receiving call).
    step_done: Option<(RequestId, Answer)>,
    /// The topics the pool is told to keep fresh.
    tracked: BTreeSet<String>,
    /// The batch the application is processing when it stores offsets itself: its partition
    /// and the last record's offset and leader epoch; dropped when the partition leaves.
    held: Option<(TopicPartition, i64, Option<i32>)>,
    /// The pool's metadata as the consumer reads it: its generation and every topic.
    metadata: (u64, BTreeSet<String>),
    /// Messages to schedule once the driver returns (a listener hook's return).
    outbox: Vec<(Instant, Msg)>,
}

impl SimParts {
    /// Acknowledges the revocations whose events the consumer has not read, as the member's
    /// task does for those it told of once the application gave everything up or closes.
    fn acknowledge_unread(&mut self, now: Instant) {
        for event in &self.group_events {
            if let GroupEvent::Revoked { id, .. } = event {
                self.group.revocation_done(now, *id);
            }
        }
    }
}

impl Parts for SimParts {
    fn subscribe(&mut self, now: Instant, topics: BTreeSet<String>) {
        self.gave_up = false;
        self.group.subscribe(now, topics);
    }

    fn subscribe_regex(&mut self, now: Instant, topics: BTreeSet<String>, regex: String) {
        self.gave_up = false;
        self.group.subscribe_with_regex(now, topics, Some(regex));
    }

    fn unsubscribe(&mut self, now: Instant) {
        self.group.unsubscribe(now);
    }

    fn gave_up(&mut self, now: Instant) {
        self.gave_up = true;
        self.acknowledge_unread(now);
    }

    fn alive(&mut self, now: Instant) {
        self.group.application_polled(now);
    }

    fn revocation_done(&mut self, now: Instant, id: RevocationId) {
        self.log.push((now, Happened::RevocationDone));
        self.group.revocation_done(now, id);
    }

    fn track_topics(&mut self, _now: Instant, topics: BTreeSet<String>) {
        // The pool tracks what it was last told (`Pool::track_topics` replaces the scope).
        self.tracked = topics;
    }

    fn pool_failure(&self) -> Option<Error> {
        // The simulation's cluster keeps its id.
        None
    }

    fn cluster_topics(&self, news: impl FnOnce(u64) -> bool) -> Option<(u64, Vec<String>)> {
        let (generation, topics) = &self.metadata;
        news(*generation).then(|| (*generation, topics.iter().cloned().collect()))
    }

    fn assign(&mut self, now: Instant, starts: Vec<(TopicPartition, StartPosition)>) {
        self.fetch.assign(now, starts);
    }

    fn unassign(&mut self, _now: Instant, partitions: Vec<TopicPartition>, fence: u64) {
        self.fetch.unassign(&partitions);
        self.arrivals.push_back(Arrival::Fenced(partitions, fence));
    }

    fn pause(&mut self, _now: Instant, tp: TopicPartition) {
        self.fetch.pause(&tp);
    }

    fn resume(&mut self, _now: Instant, tp: TopicPartition) {
        self.fetch.resume(&tp);
    }

    fn seek(&mut self, _now: Instant, tp: TopicPartition, offset: i64, fence: u64) {
        self.fetch.seek(&tp, offset, None);
        self.arrivals.push_back(Arrival::Fenced(vec![tp], fence));
    }

    fn release(&mut self, now: Instant, release: Release) {
        release.apply(&mut self.fetch, now);
    }

    fn store(&mut self, _now: Instant, tp: TopicPartition, at: OffsetAndMetadata) {
        self.offsets.store(tp, at);
    }

    fn forget(&mut self, _now: Instant, partitions: Vec<TopicPartition>) {
        self.offsets.forget(&partitions);
    }

    fn offsets_report(&mut self) -> Option<PersistentFailure> {
        self.offsets_reports.pop_front()
    }

    fn leaving(&mut self, now: Instant, partitions: Vec<TopicPartition>) {
        if self
            .held
            .as_ref()
            .is_some_and(|(tp, ..)| partitions.contains(tp))
        {
            self.held = None;
        }
        self.log.push((now, Happened::Leaving(partitions)));
    }

    /// The simulation's applications hold no revocations.
    fn revoking(&mut self, now: Instant, partitions: Vec<TopicPartition>) {
        self.log.push((now, Happened::Leaving(partitions)));
    }

    fn listener(
        &mut self,
        now: Instant,
        id: RequestId,
        hook: Hook,
        partitions: Vec<TopicPartition>,
        _positions: HashMap<TopicPartition, i64>,
    ) -> Option<Answer> {
        let takes = match hook {
            Hook::Assigned => self.app.on_assigned,
            Hook::Revoked => self.app.on_revoked,
            Hook::Lost => self.app.on_lost,
        };
        self.log.push((now, Happened::Listener(hook, partitions)));
        self.step = Some((id, Running::Hook(hook)));
        self.outbox.push((
            now + takes,
            Msg::HookDone {
                client: self.client,
                step: id,
            },
        ));
        None
    }

    fn commit(&mut self, now: Instant, id: RequestId) -> Option<Answer> {
        let commit = self.offsets.commit_stored(now, CommitKind::Sync);
        self.step = Some((id, Running::Commit(commit, now)));
        None
    }

    fn committed(
        &mut self,
        now: Instant,
        id: RequestId,
        partitions: BTreeSet<TopicPartition>,
    ) -> Option<Answer> {
        let lookup = self.offsets.fetch_committed(now, Some(partitions));
        self.step = Some((id, Running::Committed(lookup)));
        None
    }

    fn all_topics(&mut self, _now: Instant, _id: RequestId) -> Option<Answer> {
        Some(Ok(StepAnswer::Topics(Ok(self.metadata.clone()))))
    }

    fn fetched(&mut self, _now: Instant, _batch: &FetchedBatch<'_>) {}

    fn records(&mut self, _now: Instant, _tp: &TopicPartition, _records: &[Record]) {}

    fn partition_error(&mut self, _now: Instant, _tp: &TopicPartition, _error: &Error) {}

    fn persistent_failure(&mut self, now: Instant, report: &PersistentFailure) {
        self.log.push((now, Happened::Report(report.clone())));
    }

    fn truncated(&mut self, now: Instant, truncation: &Truncation) {
        self.log
            .push((now, Happened::Truncated(truncation.clone())));
    }

    fn publish(
        &mut self,
        _now: Instant,
        _metrics: &mut MetricsState,
        _lags: BTreeMap<TopicPartition, LagInputs>,
    ) {
    }

    fn publish_partition(
        &mut self,
        _now: Instant,
        _metrics: &mut MetricsState,
        _tp: &TopicPartition,
        _lag: LagInputs,
    ) {
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
    turns: Turns<Msg, (usize, RequestId)>,
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
            turns: Turns::default(),
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

    /// Creates `topic` with `partitions` partitions: the cluster's metadata changes (the
    /// consumers' pools see a new snapshot), and the KIP-848 coordinator subscribes the members
    /// whose regex matches it.
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        self.cluster.create_topic(topic, partitions);
        self.metadata_generation += 1;
        let metadata = (self.metadata_generation, self.cluster.topic_names());
        for c in &mut self.clients {
            c.parts.metadata = metadata.clone();
        }
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
            max_poll_interval: group.max_poll_interval,
            coordinator_regex: group.group_protocol == GroupProtocol::Consumer,
        };
        let seed = self.clients.len() as u64 + 1;
        let max_poll_records = fetch.max_poll_records.max(1) as usize;
        let i = self.clients.len();
        let client = Client {
            driver: Driver::new(ConsumerMachine::new(
                options,
                Handout::new(max_poll_records),
                now,
            )),
            parts: SimParts {
                client: i,
                group: MemberMachine::new(group, now, seed),
                offsets: CommitMachine::new(offsets, now, seed),
                fetch: FetchMachine::new(fetch, now, seed),
                app,
                log: Vec::new(),
                arrivals: VecDeque::new(),
                group_events: VecDeque::new(),
                gave_up: false,
                offsets_reports: VecDeque::new(),
                step: None,
                step_done: None,
                tracked: BTreeSet::new(),
                held: None,
                metadata: (self.metadata_generation, self.cluster.topic_names()),
                outbox: Vec::new(),
            },
            doing: Doing::Calling,
            processed: Vec::new(),
            in_call: false,
            close_commit: None,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            outstanding: BTreeSet::new(),
            membership: Membership::default(),
            member_closing: false,
            lost_unhandled: BTreeSet::new(),
        };
        self.clients.push(client);
        // The pool's metadata names the subscribed topics' ids, as the member's task feeds
        // them in.
        let ids = self
            .cluster
            .topic_ids()
            .into_iter()
            .map(|(name, id, _)| (id, name))
            .collect();
        let c = &mut self.clients[i];
        c.parts
            .group
            .metadata_updated(now, &Default::default(), &ids);
        if c.parts.app.stores {
            c.driver.machine.store_elsewhere();
        }
        let topics = c.topics.clone();
        c.driver
            .machine
            .subscribe(now, topics)
            .expect("a valid subscription");
        c.driver.run(now, &mut c.parts);
        self.drain(i);
        self.call(i);
        self.check_invariants();
        i
    }

    /// Consumer `i`'s application stops calling the consumer (a receiving call was cancelled,
    /// or the application is busy elsewhere).
    pub fn go_away(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.doing == Doing::Calling {
            c.doing = Doing::Away;
            c.in_call = false;
        }
    }

    /// Consumer `i`'s application calls the consumer again.
    pub fn come_back(&mut self, i: usize) {
        if self.clients[i].doing == Doing::Away {
            self.clients[i].doing = Doing::Calling;
            self.call(i);
            self.check_invariants();
        }
    }

    /// Consumer `i`'s application pauses `tp`.
    pub fn pause(&mut self, i: usize, tp: &TopicPartition) {
        let now = self.now;
        let c = &mut self.clients[i];
        c.driver
            .machine
            .pause([tp.clone()])
            .expect("an owned partition");
        c.driver.run(now, &mut c.parts);
        self.drain(i);
    }

    /// Consumer `i`'s application resumes `tp`.
    pub fn resume(&mut self, i: usize, tp: &TopicPartition) {
        let now = self.now;
        let c = &mut self.clients[i];
        c.driver
            .machine
            .resume([tp.clone()])
            .expect("an owned partition");
        c.driver.run(now, &mut c.parts);
        self.drain(i);
        if self.clients[i].doing == Doing::Calling {
            self.call(i);
        }
    }

    /// Consumer `i` is closed, as `Consumer::close` closes it (the driver's close): a
    /// rebalance under way is finished, its partitions revoked (the listener hears of them), a
    /// final commit, then the member leaves and the fetch sessions close.
    pub fn close(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if matches!(c.doing, Doing::Done | Doing::Closing) {
            return;
        }
        c.doing = Doing::Closing;
        c.in_call = false;
        self.advance_close(i);
        self.check_invariants();
    }

    /// Consumer `i`'s application commits what it was handed (`commit` or `commit_async`, as
    /// the `Consumer` does: the records handed out stored, then the commit machine commits
    /// what is stored). The application does not wait: the commit's outcome is not read.
    pub fn commit(&mut self, i: usize, kind: CommitKind) {
        let now = self.now;
        let c = &mut self.clients[i];
        if !matches!(c.doing, Doing::Calling | Doing::Processing(_) | Doing::Away)
            || c.driver.machine.usable().is_err()
        {
            return;
        }
        c.driver.machine.store_processed();
        c.driver.run(now, &mut c.parts);
        c.parts.offsets.commit_stored(now, kind);
        self.drain(i);
        self.check_invariants();
    }

    /// Consumer `i`'s application seeks `tp` (owned) to `offset`, as `Consumer::seek` does.
    pub fn seek(&mut self, i: usize, tp: &TopicPartition, offset: i64) {
        let now = self.now;
        let c = &mut self.clients[i];
        if c.driver.machine.seek(tp.clone(), offset).is_ok() {
            c.parts
                .log
                .push((now, Happened::Seeked(tp.clone(), offset)));
        }
        c.driver.run(now, &mut c.parts);
        self.drain(i);
        if self.clients[i].doing == Doing::Calling {
            self.call(i);
        }
        self.check_invariants();
    }

    /// Consumer `i`'s application subscribes to `topics` instead, as `Consumer::subscribe`
    /// does.
    pub fn subscribe(&mut self, i: usize, topics: &[&str]) {
        let now = self.now;
        let c = &mut self.clients[i];
        if c.driver
            .machine
            .subscribe(now, topics.iter().copied())
            .is_ok()
        {
            c.topics = topics.iter().map(|t| (*t).to_owned()).collect();
        }
        c.driver.run(now, &mut c.parts);
        self.drain(i);
        if self.clients[i].doing == Doing::Calling {
            self.call(i);
        }
        self.check_invariants();
    }

    /// Consumer `i`'s process dies: nothing more is sent or handled, the group hears nothing
    /// (its session expires at the coordinator).
    pub fn crash(&mut self, i: usize) {
        self.clients[i].doing = Doing::Done;
        self.check_invariants();
    }

    /// Steps taken so far, over the whole run.
    pub fn steps(&self) -> u64 {
        self.turns.steps()
    }

    /// Cuts consumer `i` off the network for `d`: what it sends and is sent is lost.
    pub fn isolate(&mut self, i: usize, d: Duration) {
        self.isolated.insert(i, self.now + d);
    }

    /// Runs until `done` holds (checked after every step) or `limit` passes; whether it held.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        self.run_until_done(limit, done)
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
            .all(|c| c.parts.group.protocol() == GroupProtocol::Consumer);
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
                c.parts.group.state() != kcon_group::MemberState::Stable
                    || !c.parts.group_events.is_empty()
                    || self
                        .consumer_coordinator
                        .member_epoch(&c.parts.group.generation().member_id)
                        != Some(c.parts.group.generation().id)
            } else {
                c.parts.group.generation().id != self.coordinator.generation()
            };
            if c.driver.machine.is_rebalancing() || in_step {
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
            .flat_map(|c| c.driver.machine.subscription())
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
        let last = last_entries(
            self.clients
                .iter()
                .map(|c| c.parts.log.iter().map(|(at, h)| (*at, h))),
            n,
        );
        let mut out = format!(
            "{}; KIP-848 group epoch {} members {:?}\n",
            coordinator_line(self.secs(self.now), &self.coordinator),
            self.consumer_coordinator.group_epoch(),
            self.consumer_coordinator.member_ids()
        );
        for (i, c) in self.clients.iter().enumerate() {
            let _ = writeln!(
                out,
                "  consumer {i}: {:?} member {:?} gen {} owns {:?} processed {}",
                c.doing,
                c.parts.group.state(),
                c.parts.group.generation().id,
                c.owned(),
                c.processed.len()
            );
        }
        for (at, i, h) in last {
            let _ = writeln!(out, "  {:>9.3}s c{i} {h:?}", self.secs(at));
        }
        out
    }

    fn answer_client(
        &mut self,
        i: usize,
        part: Part,
        id: RequestId,
        result: Result<Reply, RequestFailure>,
    ) {
        let now = self.now;
        let c = &mut self.clients[i];
        if !c.outstanding.remove(&(part, id)) || !c.is_live() {
            return;
        }
        let p = &mut c.parts;
        match (part, result) {
            (Part::Group, Ok(Reply::Group(r))) => p.group.handle_response(now, id, Ok(r)),
            (Part::Group, Err(f)) => p.group.handle_response(now, id, Err(f)),
            (Part::Offsets, Ok(Reply::Offsets(r))) => p.offsets.handle_response(now, id, Ok(r)),
            (Part::Offsets, Err(f)) => p.offsets.handle_response(now, id, Err(f)),
            (Part::Fetch, Ok(Reply::Fetch(r))) => p.fetch.handle_response(now, id, Ok(r)),
            (Part::Fetch, Err(f)) => p.fetch.handle_response(now, id, Err(f)),
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
        let reply = |w: &mut World, answer: Reply| w.reply(client, part, id, Ok(answer), LATENCY);
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
                    Part::Group => Reply::Group(GroupResponse::FindCoordinator(found)),
                    _ => Reply::Offsets(OffsetsResponse::FindCoordinator(found)),
                };
                reply(self, answer);
            }
            Request::Group(GroupRequest::Metadata { topics }) => {
                let known = self.cluster.topic_partitions(&topics);
                reply(self, Reply::Group(GroupResponse::Metadata(known)));
            }
            Request::Group(GroupRequest::TopicIds { .. }) => {
                let ids = self
                    .cluster
                    .topic_ids()
                    .into_iter()
                    .map(|(name, id, _)| (id, name))
                    .collect();
                reply(self, Reply::Group(GroupResponse::TopicIds(ids)));
            }
            Request::Group(GroupRequest::ConsumerGroupHeartbeat(h)) => {
                assert_eq!(target, Target::Coordinator(broker()), "{h:?}");
                assert_eq!(h.group_id, GROUP);
                let answer = self.consumer_coordinator.heartbeat(now, &h);
                self.check_invariants();
                reply(
                    self,
                    Reply::Group(GroupResponse::ConsumerGroupHeartbeat(answer)),
                );
            }
            Request::Group(request) => {
                assert_eq!(target, Target::Coordinator(broker()), "{request:?}");
                let ticket = self.turns.ticket((client, id));
                self.coordinator.handle(now, ticket, &request);
                self.flush_coordinator();
            }
            Request::Offsets(OffsetsRequest::OffsetCommit(c)) => {
                let error =
                    if self.clients[client].parts.group.protocol() == GroupProtocol::Consumer {
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
                    && self.clients[client].parts.group.protocol() == GroupProtocol::Consumer
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
                    Reply::Offsets(OffsetsResponse::OffsetCommit { partitions }),
                );
            }
            Request::Offsets(OffsetsRequest::OffsetFetch(f)) => {
                let answer = self.cluster.offset_fetch(f.partitions.as_ref());
                reply(self, Reply::Offsets(answer));
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
                    Ok(Reply::Fetch(FetchAnswer::Fetch(Box::new(answer)))),
                    wait,
                );
            }
            Request::Fetch(FetchRequest::Connect { broker: b }) => {
                assert_eq!(b, BROKER);
                reply(self, Reply::Fetch(FetchAnswer::Broker(broker_info())));
            }
            Request::Fetch(FetchRequest::Metadata { topics }) => {
                let view = self.cluster.metadata_view(&topics);
                reply(self, Reply::Fetch(FetchAnswer::Metadata(view)));
            }
            Request::Fetch(FetchRequest::ListOffsets {
                partitions, policy, ..
            }) => {
                let spec = policy
                    .offset_spec(self.now_ms())
                    .expect("a reset policy other than none");
                let tps: Vec<TopicPartition> = partitions.into_iter().map(|(tp, _)| tp).collect();
                let answer = self.cluster.list_offsets(&tps, spec);
                reply(self, Reply::Fetch(FetchAnswer::ListOffsets(answer)));
            }
            Request::Offsets(other) => panic!("a request the simulation doesn't know: {other:?}"),
            Request::Fetch(other) => panic!("a request the simulation doesn't know: {other:?}"),
        }
    }

    fn reply(
        &mut self,
        client: usize,
        part: Part,
        id: RequestId,
        result: Result<Reply, RequestFailure>,
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
    /// on the network, events to the consumer's channels, until none has anything more; and
    /// schedules what the consumer's parts sent (a listener hook's return).
    fn drain(&mut self, i: usize) {
        let now = self.now;
        for (at, msg) in std::mem::take(&mut self.clients[i].parts.outbox) {
            self.push(at, msg);
        }
        loop {
            let c = &mut self.clients[i];
            if !c.is_live() {
                return;
            }
            let p = &mut c.parts;
            let out = if let Some(o) = p.group.poll_request(now) {
                Some((
                    Part::Group,
                    o.id,
                    o.target,
                    o.timeout,
                    Request::Group(o.request),
                ))
            } else if let Some(o) = p.offsets.poll_request(now) {
                Some((
                    Part::Offsets,
                    o.id,
                    o.target,
                    o.timeout,
                    Request::Offsets(o.request),
                ))
            } else {
                p.fetch.poll_request(now).map(|o| {
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
            if let Some(event) = c.parts.group.poll_event() {
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
                // A closing member's task acknowledges its revocations itself, as does one whose
                // application gave everything up.
                if (c.member_closing || c.parts.gave_up)
                    && let GroupEvent::Revoked { id, .. } = &event
                {
                    c.parts.group.revocation_done(now, *id);
                }
                c.parts.group_events.push_back(event);
                continue;
            }
            if let Some(event) = c.parts.offsets.poll_event() {
                self.offsets_event(i, event);
                continue;
            }
            if let Some(event) = c.parts.fetch.poll_event() {
                c.parts.arrivals.push_back(Arrival::Event(event));
                continue;
            }
            // The offsets task follows the member's membership.
            let p = &mut c.parts;
            let m = Membership {
                generation_id: p.group.generation().id,
                member_id: p.group.generation().member_id.clone(),
                coordinator: p.group.coordinator().cloned(),
                losses: p.group.losses(),
            };
            if m != c.membership {
                p.offsets.set_losses(m.losses);
                p.offsets
                    .set_generation(m.generation_id, m.member_id.clone());
                if m.coordinator.is_some() {
                    p.offsets.set_coordinator(m.coordinator.clone());
                }
                c.membership = m;
                continue;
            }
            return;
        }
    }

    /// What the commit machine finished (a step's commit or lookup, or the close's commit),
    /// or reports on the offsets task's channel.
    fn offsets_event(&mut self, i: usize, event: OffsetsEvent) {
        let now = self.now;
        let c = &mut self.clients[i];
        let p = &mut c.parts;
        match event {
            OffsetsEvent::Committed { id, result, .. } => {
                if let Some((step, Running::Commit(commit, started))) = &p.step
                    && *commit == id
                {
                    let answer = StepAnswer::Commit {
                        latency: now.duration_since(*started),
                        result: result.map(drop).map_err(|e| e.to_string()),
                    };
                    p.step_done = Some((*step, Ok(answer)));
                    p.step = None;
                } else if c.close_commit == Some(id) {
                    c.driver.close_committed();
                }
            }
            OffsetsEvent::CommittedOffsets { id, result } => {
                if let Some((step, Running::Committed(lookup))) = &p.step
                    && *lookup == id
                {
                    let result: Result<CommittedOffsets, Error> = result.map_err(Error::from);
                    p.step_done = Some((*step, Ok(StepAnswer::Committed(result))));
                    p.step = None;
                }
            }
            OffsetsEvent::PersistentFailure(report) => p.offsets_reports.push_back(report),
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

    /// Consumer `i`'s application is in `recv_batch`, as `Consumer::recv_batch` is: it takes
    /// the batch ready, else a receiving call starts (or goes on) on the driver until it has
    /// records (the application then processes them) or waits for something.
    fn call(&mut self, i: usize) {
        loop {
            let now = self.now;
            let c = &mut self.clients[i];
            if c.doing != Doing::Calling {
                return;
            }
            if let Some((tp, records)) = c.driver.machine.take_batch() {
                for r in &records {
                    c.processed
                        .push((TopicPartition::new(&*r.topic, r.partition), r.offset));
                }
                if let (Some(first), Some(last)) = (records.first(), records.last()) {
                    c.parts
                        .log
                        .push((now, Happened::Handed(tp.clone(), first.offset, last.offset)));
                }
                if c.parts.app.stores {
                    c.parts.held = records.last().map(|r| (tp, r.offset, r.leader_epoch));
                }
                c.in_call = false;
                let until = now + c.parts.app.processing;
                c.doing = Doing::Processing(until);
                self.push(until, Msg::Processed { client: i });
                return;
            }
            c.driver.machine.finish_current();
            let fill = if c.in_call {
                self.fill_turn(i)
            } else {
                c.in_call = true;
                match c.driver.call(now, &mut c.parts) {
                    Ok(()) => Fill::Again,
                    Err(e) => Fill::Error(e),
                }
            };
            self.drain(i);
            match fill {
                Fill::Again => continue,
                Fill::Wait => return,
                Fill::Error(e) => {
                    let c = &mut self.clients[i];
                    c.in_call = false;
                    c.parts.log.push((now, Happened::Error(e.to_string())));
                    if c.driver.machine.fatal().is_some() {
                        c.doing = Doing::Done;
                        return;
                    }
                }
            }
        }
    }

    /// One turn of a receiving call on the driver, as `Consumer::fill_or` takes it: the
    /// driver's turn, then, when it waits, one input (the member's events first, as the
    /// `Consumer`'s `select!` is biased). The consumer's timers come due as inputs of their own
    /// ([`step`](Self::step)).
    fn fill_turn(&mut self, i: usize) -> Fill {
        let now = self.now;
        let c = &mut self.clients[i];
        let (driver, parts) = (&mut c.driver, &mut c.parts);
        match driver.turn(now, parts) {
            Turn::Error(e) => return Fill::Error(e),
            Turn::Again => return Fill::Again,
            Turn::Step => {
                return match parts.step_done.take() {
                    Some((id, answer)) => {
                        driver.answered(now, id, answer, parts);
                        Fill::Again
                    }
                    None => Fill::Wait,
                };
            }
            Turn::Ready => return Fill::Again,
            Turn::Wait => {}
        }
        if let Some(event) = parts.group_events.pop_front() {
            parts.log.push((now, Happened::Group(event.clone())));
            return match driver.group_event(now, Some(event), parts) {
                Some(e) => Fill::Error(e),
                None => Fill::Again,
            };
        }
        // Released records first, as the `Consumer`'s wait takes them; else the fetch task's
        // next arrival.
        let input = if driver.machine.has_released() {
            FetchInput::Released
        } else {
            match parts.arrivals.pop_front() {
                Some(arrival) => FetchInput::Arrival(Some(arrival)),
                None => return Fill::Wait,
            }
        };
        match driver.fetch_input(now, input, parts) {
            Got::Error(e) => Fill::Error(e),
            Got::Records | Got::Nothing => Fill::Again,
        }
    }

    /// A close under way goes as far as it can now, as `Consumer::close_within` takes it: the
    /// driver says what comes next, this carries it out.
    fn advance_close(&mut self, i: usize) {
        let now = self.now;
        loop {
            let c = &mut self.clients[i];
            let turn = c.driver.close_turn(now, &mut c.parts);
            self.drain(i);
            let c = &mut self.clients[i];
            match turn {
                CloseTurn::Finishing | CloseTurn::Revoking => match c.parts.step_done.take() {
                    Some((id, answer)) => {
                        c.driver.answered(now, id, answer, &mut c.parts);
                        self.drain(i);
                    }
                    None => return,
                },
                CloseTurn::Commit => {
                    if c.close_commit.is_none() {
                        let id = c.parts.offsets.commit_stored(now, CommitKind::Sync);
                        c.close_commit = Some(id);
                        self.drain(i);
                    }
                    return;
                }
                CloseTurn::Leave => {
                    if !c.member_closing {
                        c.member_closing = true;
                        c.parts.acknowledge_unread(now);
                        c.parts.group.close(now);
                        c.parts.fetch.close(now);
                        self.drain(i);
                        continue;
                    }
                    if c.parts.group.is_terminated() && c.parts.fetch.is_closed() {
                        c.doing = Doing::Done;
                    }
                    return;
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

    fn is_isolated(&self, i: usize) -> bool {
        self.isolated.get(&i).is_some_and(|t| self.now < *t)
    }
}

/// The loop is [`Simulation`]'s; the consumers' side of a step is theirs, and the KIP-848
/// coordinator's timers fire after the classic coordinator's.
impl Simulation for World {
    type Msg = Msg;
    type ReplyTo = (usize, RequestId);

    fn loop_parts(&mut self) -> LoopParts<'_, Self> {
        (&mut self.now, &mut self.turns, &mut self.coordinator)
    }

    fn others_due(&self) -> Option<Instant> {
        let machines = self.clients.iter().filter(|c| c.is_live()).flat_map(|c| {
            [
                c.parts.group.poll_timeout(),
                c.parts.offsets.poll_timeout(),
                c.parts.fetch.poll_timeout(),
                // The consumer's own timers run while a receiving call waits.
                (c.doing == Doing::Calling)
                    .then(|| c.driver.machine.poll_timeout())
                    .flatten(),
            ]
            .into_iter()
            .flatten()
        });
        machines
            .chain(self.consumer_coordinator.next_deadline())
            .min()
    }

    fn flush_coordinator(&mut self) {
        for (ticket, response) in self.coordinator.take_answers() {
            let (client, id) = self.turns.answered(ticket);
            self.reply(client, Part::Group, id, Ok(Reply::Group(response)), LATENCY);
        }
    }

    fn other_coordinators(&mut self, now: Instant) {
        if self
            .consumer_coordinator
            .next_deadline()
            .is_some_and(|d| d <= now)
        {
            self.consumer_coordinator.tick(now);
            self.check_invariants();
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
                if let Some((id, Running::Hook(hook))) = &c.parts.step
                    && *id == step
                {
                    c.parts.log.push((now, Happened::HookReturned(*hook)));
                    c.parts.step = None;
                    c.parts.step_done = Some((step, Ok(StepAnswer::Listener(Ok(Vec::new())))));
                    self.after_input(client);
                }
            }
            Msg::Processed { client } => {
                let c = &mut self.clients[client];
                if let Doing::Processing(until) = c.doing
                    && until <= self.now
                {
                    // Processed: an application that stores offsets itself stores the batch's
                    // (unless its partition left meanwhile), then calls again.
                    if let Some((tp, offset, leader_epoch)) = c.parts.held.take() {
                        c.driver
                            .machine
                            .store_offset(tp, offset, leader_epoch)
                            .expect("a partition still owned");
                        c.driver.run(self.now, &mut c.parts);
                        self.drain(client);
                    }
                    let c = &mut self.clients[client];
                    c.doing = Doing::Calling;
                    self.call(client);
                }
            }
        }
    }

    fn members(&mut self, now: Instant) {
        for i in 0..self.clients.len() {
            if !self.clients[i].is_live() {
                continue;
            }
            for part in [Part::Group, Part::Offsets, Part::Fetch] {
                let c = &mut self.clients[i];
                let due = match part {
                    Part::Group => c.parts.group.poll_timeout(),
                    Part::Offsets => c.parts.offsets.poll_timeout(),
                    Part::Fetch => c.parts.fetch.poll_timeout(),
                };
                if due.is_some_and(|d| d <= now) {
                    match part {
                        Part::Group => c.parts.group.handle_timeout(now),
                        Part::Offsets => c.parts.offsets.handle_timeout(now),
                        Part::Fetch => c.parts.fetch.handle_timeout(now),
                    }
                    self.drain(i);
                    self.after_input(i);
                    let c = &self.clients[i];
                    let after = match part {
                        Part::Group => c.parts.group.poll_timeout(),
                        Part::Offsets => c.parts.offsets.poll_timeout(),
                        Part::Fetch => c.parts.fetch.poll_timeout(),
                    };
                    assert!(
                        after.is_none_or(|d| d > now),
                        "consumer {i}: the {part:?} machine's poll_timeout is not after now once handle_timeout ran\n{}",
                        self.dump(30)
                    );
                    self.check_invariants();
                }
            }
            // The consumer's own timers: a receiving call that waits wakes for them, and its
            // driver fires them.
            let c = &self.clients[i];
            let due = c.driver.machine.poll_timeout();
            if c.doing == Doing::Calling && due.is_some_and(|d| d <= now) {
                self.after_input(i);
                let c = &self.clients[i];
                if c.doing == Doing::Calling {
                    let after = c.driver.machine.poll_timeout();
                    assert!(
                        after.is_none_or(|d| d > now),
                        "consumer {i}: the consumer machine's poll_timeout is not after now once its timers fired\n{}",
                        self.dump(30)
                    );
                }
                self.check_invariants();
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

    fn dump(&self, n: usize) -> String {
        World::dump(self, n)
    }
}

/// What one turn of a receiving call came to.
enum Fill {
    /// Something was handled: go on.
    Again,
    /// Nothing to do until the next input.
    Wait,
    /// The call returns this error.
    Error(Error),
}

/// The simulated cluster's broker, as FindCoordinator names it.
pub fn broker() -> Coordinator {
    Coordinator {
        id: BROKER,
        host: "broker-1".to_owned(),
        port: 9092,
    }
}
