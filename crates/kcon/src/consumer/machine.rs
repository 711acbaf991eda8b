//! The consumer's own bookkeeping as a sans-IO machine: subscription and pattern matching,
//! assignment, positions, offsets handed out and not yet stored, pauses, the records being
//! handed out, and the rebalance steps. It owns that state alone; the [`Consumer`](crate::Consumer)
//! only drives it, through the driver it shares with kcon-sim's whole-consumer simulation
//! ([`super::driver`]).
//!
//! # Driving it
//! It follows kcon-core's [`Machine`] contract (no socket, no clock: `now` is an argument):
//! - requests are its steps ([`Step`]): what it waits for (the listener's hook, a commit before
//!   partitions go, a committed-offset lookup, every topic's metadata for a pattern), carried
//!   out by the parts around it (the target is `()`: a step names what carries it out) and
//!   answered exactly once under their id ([`StepAnswer`], or a `RequestFailure` when the task
//!   carrying it out died);
//! - events are its [`Command`]s: what the group member, the fetcher, the offsets task, the
//!   pool, an owner above the consumer, the hooks, the metrics handles or the application's
//!   receiving call must hear, in order;
//! - its timers (telling the member the application is alive while a receiving call waits,
//!   refreshing a pattern's topics, looking at the pool's metadata for a pattern, a metrics
//!   publish put off as too soon) are one table: [`poll_timeout`](Machine::poll_timeout);
//! - its own commands are the application's calls (`subscribe`, `assign`, `seek`, `pause`,
//!   taking records, ...) and what the other parts tell it
//!   ([`group_event`](ConsumerMachine::group_event),
//!   [`fetch_event`](ConsumerMachine::fetch_event), [`metadata`](ConsumerMachine::metadata)).
//!
//! Steps go one at a time, in order: while one is out the machine takes no group or fetch event
//! and runs no timer (the listener runs with no records handed out, events are handled in the
//! order the group sent them, and the member hears nothing of the application while its
//! listener runs).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use kcon_core::error_codes::error_name;
use kcon_core::group_offsets::OffsetAndMetadata;
use kcon_core::{
    Machine, Outgoing, PersistentFailure, RequestFailure, RequestId, RequestIds, TopicPartition,
};
use kcon_fetch::handout::{Arrival, HandedOut, Handout, Release};
use kcon_fetch::position::{PartitionError, ResetReason};
use kcon_fetch::{BorrowedRecords, FetchEvent, FetchedRecords, StartPosition};
use kcon_group::{GroupEvent, RevocationId};
use tracing::{debug, info, warn};

use super::batch::Batch;
use super::rebalance::{Hook, Rebalance, Stage};
use super::subscription::Subscription;
use crate::error::{Error, ErrorKind};
use crate::hooks::Truncation;
use crate::metrics::{LagInputs, MetricsHandle, MetricsState, PartitionLag};
use crate::record::Record;

/// The member hears the application is alive at most this often: a receiving call that starts
/// sooner after the last report tells it nothing.
const LIVENESS_MIN: Duration = Duration::from_millis(500);

/// How often the pool's metadata snapshot is looked at while a pattern subscription waits: the
/// pool tells nobody of a new snapshot (kcon-pool's driver looks as often, for its machines).
const METADATA_LOOK: Duration = Duration::from_secs(1);

/// What the consumer's settings tell its machine.
#[derive(Debug, Clone)]
pub struct MachineOptions {
    /// A `group.id` is set: the consumer may subscribe and commit.
    pub group: bool,
    /// `enable.auto.commit`.
    pub auto_commit: bool,
    /// `enable.auto.offset.store`.
    pub auto_store: bool,
    /// `metadata.max.age.ms`: how often a pattern subscription asks for every topic.
    pub metadata_max_age: Duration,
    /// `max.poll.interval.ms`: a receiving call that waits tells the member the application is
    /// alive every half of it (at most every 500 ms), so the member never gives up on an
    /// application blocked in a call.
    pub max_poll_interval: Duration,
    /// The group coordinator matches a pattern subscription (`group.protocol=consumer`,
    /// KIP-848's `SubscribedTopicRegex`): the member is subscribed to the pattern once, and
    /// what the consumer matches itself only answers [`subscription`](ConsumerMachine::subscription).
    /// Otherwise (the classic protocol) the consumer subscribes the member to the names it
    /// matched, again whenever they change.
    pub coordinator_regex: bool,
}

/// What the machine tells the parts around it, in order: its events. A new one is a new method
/// of the driver's [`Parts`](super::driver::Parts), so every implementation must say what it
/// does with it before it compiles.
#[derive(Debug, Clone)]
pub enum Command {
    /// The group member subscribes to these topics.
    Subscribe(BTreeSet<String>),
    /// The group member subscribes to these topics and to whatever the regex matches, which
    /// the coordinator works out (`group.protocol=consumer`).
    SubscribeRegex {
        /// The topics named.
        topics: BTreeSet<String>,
        /// The regex, as the coordinator gets it.
        regex: String,
    },
    /// The group member leaves.
    Unsubscribe,
    /// The group member hears the unsubscription gave everything up: it acknowledges the
    /// revocations it tells from now on itself.
    GaveUp,
    /// The group member hears the application is alive.
    Alive,
    /// The group member hears the revocation is done.
    RevocationDone(RevocationId),
    /// The pool keeps these topics' metadata fresh.
    TrackTopics(BTreeSet<String>),
    /// The fetcher starts these partitions.
    Assign(Vec<(TopicPartition, StartPosition)>),
    /// The fetcher stops these partitions; it confirms with this fence (the hand-out side's,
    /// [`Handout::unassign`]).
    Unassign(Vec<TopicPartition>, u64),
    /// The fetcher pauses a partition.
    Pause(TopicPartition),
    /// The fetcher resumes a partition.
    Resume(TopicPartition),
    /// The fetcher moves a partition; it confirms with this fence ([`Handout::seek`]).
    Seek(TopicPartition, i64, u64),
    /// Records handed out release bytes from, or hold them in, the fetcher's prefetch budget.
    Release(Release),
    /// The offsets task stores a partition's next offset, its record's leader epoch and the
    /// metadata a commit carries.
    Store(TopicPartition, OffsetAndMetadata),
    /// The offsets task forgets these partitions' stored offsets.
    Forget(Vec<TopicPartition>),
    /// The owner above the consumer (partition streams, a record processor) hears these
    /// partitions leave, before anything else is done.
    Leaving(Vec<TopicPartition>),
    /// The owner above the consumer that holds revocations hears these partitions begin
    /// revoking; it hears of them leaving when they go.
    Revoking(Vec<TopicPartition>),
    /// The hooks hear of a request that keeps failing, or of its recovery.
    Report(PersistentFailure),
    /// The metrics handles get a copy of everything: the counters and every owned partition's
    /// lag inputs.
    Publish,
    /// The metrics handles get the counters and this partition's lag inputs, the others'
    /// staying as last published (a whole publish was put off as too soon).
    PublishPartition(TopicPartition),
    /// The application's receiving call returns this error.
    Error(Error),
    /// The fetcher's error: the hooks hear of it for each partition it names, and the
    /// receiving call returns it.
    FetchError(Error),
    /// The hooks hear of a log truncated under a position, which the consumer read on from.
    Truncated(Truncation),
}

/// A step the machine waits for: its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Call the listener's hook; its answer is [`StepAnswer::Listener`].
    Listener {
        /// Which hook.
        hook: Hook,
        /// The partitions it hears of.
        partitions: Vec<TopicPartition>,
        /// The positions now, for the listener to read.
        positions: HashMap<TopicPartition, i64>,
    },
    /// Commit every stored offset and wait for the coordinator; answered with
    /// [`StepAnswer::Commit`].
    Commit,
    /// Look up the committed offsets of these partitions; answered with
    /// [`StepAnswer::Committed`].
    Committed(BTreeSet<TopicPartition>),
    /// Ask for every topic's metadata (a pattern subscription); answered with
    /// [`StepAnswer::Topics`].
    AllTopics,
}

/// Each partition's committed offset (the next offset to consume), the leader epoch it was
/// committed with and its metadata; `None` where the group has none.
pub type CommittedOffsets = BTreeMap<TopicPartition, Option<OffsetAndMetadata>>;

/// The answer to a [`Step`]. A step whose task died is answered with a `RequestFailure`.
#[derive(Debug, Clone)]
pub enum StepAnswer {
    /// The hook returned, with the seeks it asked for; or it panicked (why).
    Listener(Result<Vec<(TopicPartition, i64)>, String>),
    /// The commit's latency and outcome.
    Commit {
        /// How long it took.
        latency: Duration,
        /// Whether the coordinator acknowledged it.
        result: Result<(), String>,
    },
    /// The committed offsets found (next offset and leader epoch; `None` when there is none),
    /// or why the lookup failed.
    Committed(Result<CommittedOffsets, Error>),
    /// Every topic of the cluster in a metadata snapshot (its generation), or why it failed.
    Topics(Result<(u64, BTreeSet<String>), String>),
}

/// The consumer's bookkeeping (see the module documentation for how to drive it).
#[derive(Debug)]
pub struct ConsumerMachine {
    options: MachineOptions,
    subscription: Subscription,
    /// The partitions the consumer owns (by the group, or assigned by the application).
    assignment: BTreeSet<TopicPartition>,
    /// Owned, not yet handed to the fetcher: where each starts (`None`: the committed offset,
    /// else by `auto.offset.reset`).
    starting: BTreeMap<TopicPartition, Option<i64>>,
    /// The metadata committed with the offset a partition started at, when not empty, until
    /// its owner above the consumer (a record processor) takes it.
    committed_metadata: BTreeMap<TopicPartition, (i64, String)>,
    /// The next offset to hand out, per partition, outside the current batch.
    positions: HashMap<TopicPartition, i64>,
    /// What each partition's last Fetch answer said of its log.
    fetched: HashMap<TopicPartition, Fetched>,
    /// Offsets processed (handed out before the application's current call) and not yet
    /// stored: the next offset and its leader epoch.
    unstored: HashMap<TopicPartition, (i64, Option<i32>)>,
    /// The records between the fetcher and the application, as the fetch task sent them:
    /// fenced by a seek or an unassignment until the task confirms, held while paused, cut to
    /// `max.poll.records`. What they release goes to the fetcher as [`Command::Release`].
    handout: Handout,
    /// The batch being handed out.
    current: Option<Batch>,
    /// The rest of a batch whose partition was paused while it was being handed out: kept,
    /// not fetched again, so the records keep their leader epochs and the fetcher its place.
    held: BTreeMap<TopicPartition, Batch>,
    /// Held batches whose partitions were resumed while another batch was being handed out:
    /// each becomes the current batch, in order, before anything fetched since.
    resumed: VecDeque<Batch>,
    paused: BTreeSet<TopicPartition>,
    /// The member's fatal error: every later call returns it.
    fatal: Option<Error>,
    /// The group event being handled.
    rebalance: Option<Rebalance>,
    /// The step out, and what it is.
    step: Option<(RequestId, StepKind)>,
    ids: RequestIds,
    commands: VecDeque<Command>,
    steps: VecDeque<(RequestId, Step)>,
    /// When the group member was last told the application is alive.
    last_liveness: Instant,
    /// A receiving call that waits tells the member the application is alive this often.
    liveness_every: Duration,
    /// When the pool's metadata is next looked at (a pattern subscription).
    metadata_look: Option<Instant>,
    /// When the metrics may next be published whole.
    next_publish: Instant,
    /// A publish was put off as too soon: it is due at `next_publish`.
    publish_due: bool,
    /// An owner above the consumer (per-partition streams, a record processor) stores
    /// offsets itself, and hears of partitions leaving.
    streams: bool,
    /// That owner holds revocations until it has finished the records of the partitions
    /// revoked (a record processor running records side by side).
    hold: bool,
    metrics: MetricsState,
}

/// What a partition's last Fetch answer said of its log, for its lag.
#[derive(Debug, Clone, Copy)]
struct Fetched {
    high_watermark: i64,
    /// The last stable offset (the end under read_committed), when the answer gave one.
    last_stable_offset: Option<i64>,
    /// The timestamp of the answer's last record, once the consumer has it: when no later
    /// record is held, the age of the next one is at most this one's (timestamps grow with
    /// offsets, as producers and brokers set them).
    last_timestamp: Option<i64>,
}

/// What the step out is, to read its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    Rebalance,
    Committed,
    Topics,
}

impl ConsumerMachine {
    /// A consumer that reads nothing yet, made at `now`.
    /// `handout` is the fetcher's hand-out side, made for its configuration.
    pub fn new(options: MachineOptions, handout: Handout, now: Instant) -> Self {
        let liveness_every = (options.max_poll_interval / 2).max(LIVENESS_MIN);
        ConsumerMachine {
            options,
            subscription: Subscription::None,
            assignment: BTreeSet::new(),
            starting: BTreeMap::new(),
            committed_metadata: BTreeMap::new(),
            positions: HashMap::new(),
            fetched: HashMap::new(),
            unstored: HashMap::new(),
            handout,
            current: None,
            held: BTreeMap::new(),
            resumed: VecDeque::new(),
            paused: BTreeSet::new(),
            fatal: None,
            rebalance: None,
            step: None,
            ids: RequestIds::default(),
            commands: VecDeque::new(),
            steps: VecDeque::new(),
            last_liveness: now,
            liveness_every,
            metadata_look: None,
            next_publish: now,
            publish_due: false,
            streams: false,
            hold: false,
            metrics: MetricsState::new(),
        }
    }

    // ----- queries -----

    /// The partitions owned now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.assignment
    }

    /// The topics subscribed: those named, or those a pattern matches now.
    pub fn subscription(&self) -> BTreeSet<String> {
        self.subscription.topics()
    }

    /// Whether the consumer reads through its group.
    pub(crate) fn in_group(&self) -> bool {
        self.subscription.in_group()
    }

    /// The partitions paused.
    pub fn paused(&self) -> &BTreeSet<TopicPartition> {
        &self.paused
    }

    /// The next offset handed out for `tp`, when known.
    pub(crate) fn position(&self, tp: &TopicPartition) -> Option<i64> {
        if let Some((next, _)) = self.batch_of(tp).and_then(|b| b.handed) {
            return Some(next);
        }
        match self.starting.get(tp) {
            Some(explicit) => *explicit,
            None => self.positions.get(tp).copied(),
        }
    }

    /// The pool stopped (another cluster answered): the consumer cannot go on, and nothing more
    /// is committed.
    pub(crate) fn pool_failed(&mut self, e: Error) {
        if self.fatal.is_some() {
            return;
        }
        warn!(error = %e, "the connection pool stopped; the consumer cannot go on");
        self.fatal = Some(e.clone());
        self.commands.push_back(Command::Error(e));
    }

    /// The fatal error, once there is one.
    pub fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// An error if the consumer can no longer be used.
    pub fn usable(&self) -> Result<(), Error> {
        match &self.fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Whether a step is out or waiting to go: the machine takes no event until it is done.
    pub(crate) fn is_busy(&self) -> bool {
        self.step.is_some() || !self.steps.is_empty()
    }

    /// The step handed out and not answered yet, if any.
    pub(crate) fn awaiting_step(&self) -> Option<RequestId> {
        match self.step {
            Some((id, _)) if self.steps.is_empty() => Some(id),
            _ => None,
        }
    }

    /// Whether a group event is being handled.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn is_rebalancing(&self) -> bool {
        self.rebalance.is_some()
    }

    /// Whether records are ready to hand out.
    pub(crate) fn has_records(&self) -> bool {
        self.current.as_ref().is_some_and(|b| !b.is_done())
    }

    /// Whether offsets are stored once processed (`enable.auto.offset.store`).
    pub(crate) fn stores_processed(&self) -> bool {
        self.options.auto_store
    }

    /// Whether `enable.auto.commit` is on.
    pub(crate) fn auto_commit(&self) -> bool {
        self.options.auto_commit
    }

    /// The high watermark of `tp`'s last Fetch answer.
    pub(crate) fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.fetched.get(tp).map(|f| f.high_watermark)
    }

    /// Records of `tp` between its position and the end of its log as the last Fetch answer
    /// gave it: the high watermark, or the last stable offset when `read_committed`. `None`
    /// until both are known.
    pub(crate) fn current_lag(&self, tp: &TopicPartition, read_committed: bool) -> Option<i64> {
        let f = self.fetched.get(tp)?;
        let end = if read_committed {
            f.last_stable_offset?
        } else {
            f.high_watermark
        };
        Some((end - self.position(tp)?).max(0))
    }

    /// The lag of `tp` at `now_ms` (wall clock, ms since the epoch) against the log's `end`
    /// (and its start, when known), by kcon-core's one rule.
    pub(crate) fn partition_lag(
        &self,
        tp: &TopicPartition,
        log_start: Option<i64>,
        end: Option<i64>,
        now_ms: i64,
    ) -> PartitionLag {
        self.lag_inputs(tp, end).lag(log_start, now_ms)
    }

    /// What `tp`'s lag is computed from: its position, the given `end`, and the timestamp of
    /// the next record when the consumer holds it, else of the last record handed out.
    fn lag_inputs(&self, tp: &TopicPartition, end: Option<i64>) -> LagInputs {
        let next_timestamp = self.batch_of(tp).and_then(Batch::next_timestamp);
        LagInputs {
            position: self.position(tp),
            end,
            next_timestamp,
            last_timestamp: self.fetched.get(tp).and_then(|f| f.last_timestamp),
        }
    }

    /// Every owned partition's lag inputs against the high watermark of its last Fetch
    /// answer: the lag at any later time is computed from them.
    pub(crate) fn lags_inputs(&self) -> BTreeMap<TopicPartition, LagInputs> {
        self.assignment
            .iter()
            .map(|tp| {
                let end = self.high_watermark(tp);
                (tp.clone(), self.lag_inputs(tp, end))
            })
            .collect()
    }

    /// Every owned partition's lag against the high watermark of its last Fetch answer.
    pub(crate) fn lags(&self, now_ms: i64) -> BTreeMap<TopicPartition, PartitionLag> {
        self.lags_inputs()
            .into_iter()
            .map(|(tp, i)| (tp, i.lag(None, now_ms)))
            .collect()
    }

    /// The batch about to be handed out, when nothing of it was yet: its partition and
    /// records (decoded now, if they were left where they lie).
    pub(crate) fn fresh_batch(&mut self) -> Option<(&TopicPartition, &[Record])> {
        self.current.as_mut()?.fresh()
    }

    /// The counters behind the metrics.
    pub(crate) fn metrics(&self) -> &MetricsState {
        &self.metrics
    }

    /// The counters, to add commits made elsewhere.
    /// `tp`'s lag inputs against the high watermark of its last Fetch answer.
    pub(crate) fn lag_inputs_of(&self, tp: &TopicPartition) -> LagInputs {
        self.lag_inputs(tp, self.high_watermark(tp))
    }

    /// The partition of the batch being handed out.
    pub(crate) fn current_partition(&self) -> Option<&TopicPartition> {
        self.current.as_ref().map(|b| &b.partition)
    }

    pub(crate) fn metrics_mut(&mut self) -> &mut MetricsState {
        &mut self.metrics
    }

    /// A part of the consumer (the group member, the offsets task, the fetcher) reports a
    /// request that keeps failing, or its recovery: counted (not a recovery) and told to the
    /// hooks.
    pub(crate) fn persistent_failure(&mut self, report: PersistentFailure) {
        if !report.recovered {
            self.metrics.persistent_failure();
        }
        self.commands.push_back(Command::Report(report));
    }

    /// Publishes the metrics for the handles: at once when `force`, else when
    /// [`MetricsHandle::PUBLISH_EVERY`] has passed since the last publish (one put off is due
    /// then: a timer).
    pub(crate) fn publish(&mut self, now: Instant, force: bool) {
        if !force && now < self.next_publish {
            self.publish_due = true;
            return;
        }
        self.publish_due = false;
        self.next_publish = now + MetricsHandle::PUBLISH_EVERY;
        self.commands.push_back(Command::Publish);
    }

    /// Publishes as [`publish`](Self::publish) does; when that is put off as too soon, still
    /// publishes the counters and the lag of `tp`, whose records just arrived or were handed
    /// out (one map entry, not every partition's). A handle read while the application works
    /// on a batch therefore counts it, whenever the application calls next.
    pub(crate) fn publish_for(&mut self, now: Instant, tp: &TopicPartition) {
        self.publish(now, false);
        if self.publish_due {
            self.commands
                .push_back(Command::PublishPartition(tp.clone()));
        }
    }

    // ----- the application's calls -----

    /// Subscribes to `topics` (names; `^` patterns), replacing the subscription.
    pub fn subscribe<I, S>(&mut self, now: Instant, topics: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.usable()?;
        if !self.options.group {
            return Err(Error::misuse("subscribe needs a group.id"));
        }
        if matches!(self.subscription, Subscription::Manual) {
            return Err(Error::misuse(
                "the consumer has partitions assigned by the application: unsubscribe first",
            ));
        }
        let subscription = Subscription::parse(topics)?;
        match &subscription {
            Subscription::Topics(names) => {
                self.commands.push_back(Command::TrackTopics(names.clone()));
                self.commands.push_back(Command::Subscribe(names.clone()));
            }
            Subscription::Pattern(p) if self.options.coordinator_regex => {
                let regex = p.coordinator_regex();
                info!(%regex, names = ?p.names(), "subscribing by regex; the group coordinator matches it");
                self.commands
                    .push_back(Command::TrackTopics(p.names().clone()));
                self.commands.push_back(Command::SubscribeRegex {
                    topics: p.names().clone(),
                    regex,
                });
            }
            // The classic protocol: the member is subscribed to what the pattern matches.
            _ => {}
        }
        self.subscription = subscription;
        if let Subscription::Pattern(p) = &mut self.subscription {
            p.subscribed(now);
            self.metadata_look = Some(now + METADATA_LOOK);
        } else {
            self.metadata_look = None;
        }
        self.metrics.rebalance_started(now);
        Ok(())
    }

    /// Reads `partitions` without a group, replacing the previous assignment.
    pub(crate) fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        self.usable()?;
        if self.in_group() {
            return Err(Error::misuse(
                "the consumer is subscribed in a group: unsubscribe before assigning partitions",
            ));
        }
        let new: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let gone: Vec<TopicPartition> = self.assignment.difference(&new).cloned().collect();
        self.drop_partitions(&gone);
        let added: Vec<TopicPartition> = new.difference(&self.assignment).cloned().collect();
        self.commands.push_back(Command::TrackTopics(
            new.iter().map(|tp| tp.topic.clone()).collect(),
        ));
        for tp in added {
            self.starting.insert(tp.clone(), None);
            self.assignment.insert(tp);
        }
        self.subscription = if self.assignment.is_empty() {
            Subscription::None
        } else {
            Subscription::Manual
        };
        Ok(())
    }

    /// Stops reading: a group member gives its partitions up as on a revocation and leaves;
    /// assigned partitions are dropped. A rebalance in progress must be finished first
    /// ([`is_busy`](Self::is_busy) false); the revocation this begins is finished by the
    /// driver, then [`unsubscribed`](Self::unsubscribed).
    pub(crate) fn unsubscribe(&mut self) {
        let all: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        match self.subscription {
            Subscription::Manual => self.drop_partitions(&all),
            Subscription::Topics(_) | Subscription::Pattern(_) => {
                // The member's own revocation event comes later and finds nothing left to give
                // up (the subscription is gone); it is only acknowledged then.
                self.commands.push_back(Command::Unsubscribe);
                let commit = self.options.auto_commit;
                self.begin(Rebalance::revoke(all, None, commit));
            }
            Subscription::None => {}
        }
    }

    /// The unsubscription's revocation is done: the member need not wait for its own
    /// revocation event to be read before it leaves.
    pub(crate) fn unsubscribed(&mut self) {
        if matches!(
            self.subscription,
            Subscription::Topics(_) | Subscription::Pattern(_)
        ) {
            self.commands.push_back(Command::GaveUp);
        }
        self.subscription = Subscription::None;
        self.metadata_look = None;
    }

    /// The next record of the current batch, if any.
    pub(crate) fn next_record(&mut self) -> Option<Record> {
        self.current.as_mut()?.next()
    }

    /// The rest of the current batch lent to be read in place, with its partition, if any:
    /// handed out now.
    pub(crate) fn lend_batch(&mut self) -> Option<(&TopicPartition, BorrowedRecords<'_>)> {
        self.current.as_mut()?.lend()
    }

    /// Whether the records handed out from now on are left where they lie in the Fetch
    /// answer (for [`lend_batch`](Self::lend_batch)) rather than decoded: either way they are
    /// the same records, decoded when asked for as such.
    pub(crate) fn set_in_place(&mut self, in_place: bool) {
        self.handout.set_in_place(in_place);
    }

    /// The rest of the current batch, with its partition, if any.
    pub fn take_batch(&mut self) -> Option<(TopicPartition, Vec<Record>)> {
        let batch = self.current.as_mut().filter(|b| !b.is_done())?;
        let records = batch.take_rest();
        Some((batch.partition.clone(), records))
    }

    /// Marks the record at `offset` of `tp` processed.
    pub fn store_offset(
        &mut self,
        tp: TopicPartition,
        offset: i64,
        leader_epoch: Option<i32>,
    ) -> Result<(), Error> {
        self.store_at(
            tp,
            OffsetAndMetadata {
                offset: offset.saturating_add(1),
                leader_epoch,
                metadata: String::new(),
            },
        )
    }

    /// The offset `tp` started at when it was last assigned and the metadata committed with
    /// it, if that was not empty; once (an owner above the consumer takes it).
    pub fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)> {
        self.committed_metadata.remove(tp)
    }

    /// Stores `at` (already the next offset to consume) for `tp` (owned): what an owner that
    /// finishes records out of order stores, its lowest record not finished with the metadata
    /// naming those finished above it.
    pub fn store_at(&mut self, tp: TopicPartition, at: OffsetAndMetadata) -> Result<(), Error> {
        self.usable()?;
        if !self.assignment.contains(&tp) {
            return Err(Error::misuse(format!(
                "cannot store an offset for {tp}: the consumer does not own it"
            ))
            .with_partitions(vec![tp]));
        }
        if !self.options.group {
            return Err(Error::misuse(
                "offsets can only be stored and committed with a group.id",
            ));
        }
        self.commands.push_back(Command::Store(tp, at));
        Ok(())
    }

    /// Moves `tp` (owned) to `offset`.
    pub fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), Error> {
        self.usable()?;
        if offset < 0 {
            return Err(Error::misuse(format!(
                "cannot seek {tp} to {offset}: offsets are not negative (see seek_to_beginning and seek_to_end)"
            )));
        }
        if !self.assignment.contains(&tp) {
            return Err(
                Error::misuse(format!("cannot seek {tp}: the consumer does not own it"))
                    .with_partitions(vec![tp]),
            );
        }
        if let Some(start) = self.starting.get_mut(&tp) {
            *start = Some(offset);
            return Ok(());
        }
        self.finish_current_of(&tp);
        self.drop_held(std::slice::from_ref(&tp));
        self.forget_last_timestamp(&tp);
        let fence = self.handout.seek(&tp);
        self.commands
            .push_back(Command::Seek(tp.clone(), offset, fence));
        self.positions.insert(tp, offset);
        Ok(())
    }

    /// Stops handing out and fetching `partitions` (owned).
    pub fn pause(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        for tp in partitions {
            self.owned(&tp)?;
            if !self.paused.insert(tp.clone()) {
                continue;
            }
            // The records of the current batch not handed out yet wait here for the resume:
            // what was handed out counts as the recv loop's finishing the batch would count it.
            if self
                .current
                .as_ref()
                .is_some_and(|b| b.partition == tp && !b.is_done())
                && let Some(b) = self.current.take()
            {
                self.count_handed(&b);
                self.held.insert(tp.clone(), b);
            }
            self.handout.pause(tp.clone());
            self.commands.push_back(Command::Pause(tp));
        }
        Ok(())
    }

    /// Hands out and fetches `partitions` again.
    pub fn resume(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        for tp in partitions {
            self.owned(&tp)?;
            if self.paused.remove(&tp) {
                if let Some(held) = self.held.remove(&tp) {
                    if self.current.as_ref().is_none_or(Batch::is_done) {
                        self.finish_current();
                    }
                    match self.current {
                        None => self.current = Some(held),
                        Some(_) => self.resumed.push_back(held),
                    }
                }
                self.handout.resume(&tp);
                self.commands.push_back(Command::Resume(tp));
            }
        }
        Ok(())
    }

    /// Hands storing to an owner above the consumer from now on (per-partition streams, a
    /// record processor): nothing is stored as it is handed out; the owner stores records as
    /// it processes them, and hears of partitions leaving.
    pub fn store_elsewhere(&mut self) {
        self.streams = true;
    }

    /// The owner above the consumer holds revocations: it hears of partitions as they begin
    /// revoking ([`Command::Revoking`]), not only as they go.
    pub fn hold_revocations(&mut self) {
        self.hold = true;
    }

    /// Stores what the application has processed: everything handed out before its current
    /// call (with `enable.auto.offset.store`).
    pub fn store_processed(&mut self) {
        if !self.options.auto_store || self.streams || !self.options.group {
            self.unstored.clear();
            return;
        }
        if let Some(b) = &self.current
            && let Some(handed) = b.handed
        {
            self.unstored.insert(b.partition.clone(), handed);
        }
        let mut stored: Vec<(TopicPartition, (i64, Option<i32>))> = self.unstored.drain().collect();
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        for (tp, (offset, leader_epoch)) in stored {
            self.commands.push_back(Command::Store(
                tp,
                OffsetAndMetadata {
                    offset,
                    leader_epoch,
                    metadata: String::new(),
                },
            ));
        }
    }

    /// The current batch is spent: its position becomes the partition's, and a batch resumed
    /// meanwhile is handed out next.
    pub fn finish_current(&mut self) {
        if let Some(b) = self.current.take() {
            self.count_handed(&b);
        }
        self.current = self.resumed.pop_front();
    }

    /// What of `b` was handed out is its partition's position (and processed, to be stored
    /// with `enable.auto.offset.store`).
    fn count_handed(&mut self, b: &Batch) {
        if let Some((next, epoch)) = b.handed {
            self.positions.insert(b.partition.clone(), next);
            if self.options.auto_store && !self.streams {
                self.unstored.insert(b.partition.clone(), (next, epoch));
            }
        }
    }

    /// The batch of `tp` being handed out, held by a pause or resumed, if any.
    fn batch_of(&self, tp: &TopicPartition) -> Option<&Batch> {
        self.current
            .iter()
            .chain(self.held.get(tp))
            .chain(&self.resumed)
            .find(|b| &b.partition == tp)
    }

    /// Forgets the held and resumed batches of `partitions`.
    fn drop_held(&mut self, partitions: &[TopicPartition]) {
        self.held.retain(|tp, _| !partitions.contains(tp));
        self.resumed.retain(|b| !partitions.contains(&b.partition));
    }

    /// The application is in a receiving call at `now` (it starts one): the group member hears
    /// it is alive, at most every 500 ms.
    pub(crate) fn application_polled(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_liveness) >= LIVENESS_MIN {
            self.alive(now);
        }
    }

    /// The member hears the application is alive (a consumer without a group has none).
    fn alive(&mut self, now: Instant) {
        self.last_liveness = now;
        if self.options.group {
            self.commands.push_back(Command::Alive);
        }
    }

    /// Whether the pool's metadata snapshot `generation` is news to a pattern subscription,
    /// which is matched against it ([`metadata`](Self::metadata)) before the driver waits.
    pub(crate) fn wants_metadata(&self, generation: u64) -> bool {
        matches!(&self.subscription, Subscription::Pattern(p) if p.is_new(generation))
    }

    /// The pool's metadata snapshot `generation` names these topics: a pattern subscription is
    /// matched against them when the snapshot is news.
    pub(crate) fn metadata<'a>(
        &mut self,
        _now: Instant,
        generation: u64,
        topics: impl IntoIterator<Item = &'a String>,
    ) {
        if self.is_busy() || !self.wants_metadata(generation) {
            return;
        }
        self.topics(generation, topics);
    }

    /// The driver is about to wait for the parts' events: newly owned partitions whose start
    /// must be looked up are (or, when every start is known, handed to the fetcher).
    pub(crate) fn waiting(&mut self, _now: Instant) {
        self.start_partitions();
    }

    /// Matches a pattern subscription against the cluster's topics in the pool's metadata
    /// snapshot `generation`.
    fn topics<'a>(&mut self, generation: u64, topics: impl IntoIterator<Item = &'a String>) {
        let Subscription::Pattern(p) = &mut self.subscription else {
            return;
        };
        if let Some(now) = p.matches(generation, topics) {
            info!(topics = ?now, "the topic pattern matches");
            if !self.options.coordinator_regex {
                self.commands.push_back(Command::Subscribe(now));
            }
        }
    }

    /// Closing: what was handed out counts, and a group member's partitions are revoked
    /// (the listener hears of them; the final commit is the driver's, not the revocation's).
    /// Returns whether a revocation began.
    pub(crate) fn begin_close(&mut self) -> bool {
        self.finish_current();
        self.store_processed();
        if self.fatal.is_some() || !self.in_group() || self.assignment.is_empty() {
            return false;
        }
        let owned: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        let mut rebalance = Rebalance::revoke(owned, None, false);
        rebalance.let_go = false;
        self.begin(rebalance);
        true
    }

    /// A commit the application asked for finished after `latency`.
    pub(crate) fn commit_done(&mut self, latency: Duration, ok: bool) {
        self.metrics.commit_done(latency, ok);
    }

    // ----- what the other parts tell it -----

    /// An event of the group member (`None`: its task stopped). A fatal one goes to the
    /// application ([`Command::Error`]) and is kept for every later call.
    pub(crate) fn group_event(&mut self, now: Instant, event: Option<GroupEvent>) {
        let Some(event) = event else {
            // The member's task stopped without a fatal error: the runtime is shutting down.
            let e = Error::closed();
            self.fatal = Some(e.clone());
            self.commands.push_back(Command::Error(e));
            return;
        };
        match event {
            GroupEvent::Joined {
                generation_id,
                member_id,
                leader,
            } => {
                debug!(generation_id, member_id, leader, "joined the group");
                self.metrics.rebalance_started(now);
            }
            GroupEvent::Assigned {
                partitions,
                generation_id,
            } => {
                if !self.in_group() {
                    // Assigned before an unsubscribe reached the member: it revokes them next.
                    debug!(?partitions, "assigned after unsubscribing: ignored");
                    return;
                }
                info!(generation_id, ?partitions, "partitions assigned");
                for tp in &partitions {
                    self.assignment.insert(tp.clone());
                    self.starting.insert(tp.clone(), None);
                }
                self.metrics.rebalance_done(now);
                self.begin(Rebalance::new(Hook::Assigned, partitions, None, false));
            }
            GroupEvent::Revoked { partitions, id } => {
                info!(?partitions, "partitions revoked");
                self.metrics.rebalance_started(now);
                let owned = self.group_owned(&partitions);
                let commit = self.options.auto_commit;
                self.begin(Rebalance::revoke(owned, Some(id), commit));
            }
            GroupEvent::Lost { partitions } => {
                warn!(?partitions, "partitions lost");
                self.metrics.rebalance_started(now);
                let owned = self.group_owned(&partitions);
                self.begin(Rebalance::new(Hook::Lost, owned, None, false));
            }
            GroupEvent::Fatal(e) => {
                let e = Error::from(e);
                // Returned to the application (the next receiving call), not logged again.
                debug!(error = %e, "the group member cannot go on");
                self.fatal = Some(e.clone());
                self.commands.push_back(Command::Error(e));
            }
            GroupEvent::PersistentFailure(report) => self.persistent_failure(report),
            // Closed (after close) needs nothing here.
            _ => {}
        }
    }

    /// What the fetch task sent, through the hand-out side: the event to hand to
    /// [`fetch_event`](Self::fetch_event), or nothing (a fence confirmed, records fetched
    /// before a seek or an unassignment, records of a paused partition, now held).
    pub(crate) fn arrive(&mut self, arrival: Arrival) -> Option<FetchEvent> {
        let handed = self.handout.arrive(arrival)?;
        Some(self.hand_out(handed))
    }

    /// Whether records released (a resumed partition's, the rest of a batch cut by
    /// `max.poll.records`) wait to be handed out before anything the fetch task sends.
    pub fn has_released(&self) -> bool {
        self.handout.has_released()
    }

    /// The next records released, as an event for [`fetch_event`](Self::fetch_event).
    pub(crate) fn next_released(&mut self) -> Option<FetchEvent> {
        let handed = self.handout.next_released()?;
        Some(self.hand_out(handed))
    }

    /// An event leaves the hand-out side: what it releases or holds goes to the fetcher.
    fn hand_out(&mut self, handed: HandedOut) -> FetchEvent {
        for release in handed.releases {
            self.commands.push_back(Command::Release(release));
        }
        handed.event
    }

    /// An event of the fetcher (`None`: it stopped). Records make a batch to hand out
    /// ([`has_records`](Self::has_records)); an error goes to the application once
    /// ([`Command::FetchError`]).
    pub(crate) fn fetch_event(&mut self, now: Instant, event: Option<FetchEvent>) {
        let Some(event) = event else {
            return self.fetch_error(Error::closed());
        };
        match event {
            FetchEvent::Records(r) => self.records(now, r),
            // A truncation the fetcher repositioned from (a reset policy is set) is an event,
            // not an error: the Java client logs it and reads on (KIP-320,
            // `SubscriptionState.maybeCompleteValidation`); it raises
            // LogTruncationException only without a reset policy, as the error below does.
            FetchEvent::PartitionError {
                partition,
                error:
                    PartitionError::LogTruncation {
                        offset,
                        divergent,
                        repositioned: true,
                    },
            } => self.truncated(&partition, offset, divergent),
            FetchEvent::PartitionError { partition, error } => {
                self.fetch_error(Error::partition(&partition, &error));
            }
            FetchEvent::Reset {
                partition,
                reason,
                offset,
            } => {
                debug!(%partition, ?reason, offset, "position reset");
                if self.assignment.contains(&partition) {
                    self.moved(&partition, None);
                    self.positions.insert(partition.clone(), offset);
                    match reason {
                        // The truncation was told without where it ends: the reset says.
                        ResetReason::UnknownTruncation { offset: position } => {
                            self.read_on(Truncation {
                                partition,
                                position,
                                resumed_at: offset,
                                diverged_in_epoch: None,
                            });
                        }
                        // A position the log no longer holds (a commit without its leader
                        // epoch past a truncated log's end, records deleted by retention):
                        // Java's `FetchCollector` logs it at INFO and resets too.
                        ResetReason::OffsetOutOfRange { offset: position } => info!(
                            "offset {position} of {partition} is out of range; \
                             auto.offset.reset moved the position to offset {offset}"
                        ),
                        _ => {}
                    }
                }
            }
            FetchEvent::NoPosition { partitions } => {
                let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                self.fetch_error(
                    Error::new(
                        ErrorKind::NoOffset,
                        format!(
                            "no committed offset for {} and auto.offset.reset is none: seek them",
                            names.join(", ")
                        ),
                    )
                    .with_partitions(partitions),
                );
            }
            // Retried after a backoff; a failure that lasts comes as a PersistentFailure, and
            // the fetcher's tracker logged it at WARN.
            FetchEvent::ResetFailed {
                partition,
                error_code,
            } => {
                debug!(%partition, error = %error_name(error_code), "looking up a reset offset failed; retrying");
            }
            FetchEvent::Closed => self.fetch_error(Error::closed()),
            FetchEvent::PersistentFailure(report) => self.persistent_failure(report),
            _ => {}
        }
    }

    /// The fetcher found the log of `tp` truncated under `position` and moved back to
    /// `divergent`, where its log diverged from the leader's, with the leader's epoch ending
    /// there (`None`: not known; a reset follows, and says where the consumer reads on). The
    /// application's position is there now, unless records before it are still held for a
    /// pause.
    fn truncated(&mut self, tp: &TopicPartition, position: i64, divergent: Option<(i64, i32)>) {
        if !self.assignment.contains(tp) {
            return;
        }
        self.moved(tp, divergent.map(|(offset, _)| offset));
        let Some((offset, epoch)) = divergent else {
            debug!(%tp, position, "log truncated, the leader cannot say where: a reset follows");
            return;
        };
        if !self.held.contains_key(tp) {
            self.positions.insert(tp.clone(), offset);
        }
        self.read_on(Truncation {
            partition: tp.clone(),
            position,
            resumed_at: offset,
            diverged_in_epoch: Some(epoch),
        });
    }

    /// The consumer reads on past a truncated log: logged once at WARN, counted, and told to
    /// the hooks. Records handed out from `resumed_at` on were on the lost part of the log:
    /// the operator may want to know, but nothing stops.
    fn read_on(&mut self, t: Truncation) {
        let Truncation {
            partition,
            position,
            resumed_at,
            diverged_in_epoch,
        } = &t;
        match diverged_in_epoch {
            Some(epoch) => warn!(
                "the log of {partition} was truncated under offset {position}: its leader's log \
                 parts from what was read at offset {resumed_at}, where leader epoch {epoch} \
                 ends (an unclean leader election); reading on from offset {resumed_at}"
            ),
            None => warn!(
                "the log of {partition} was truncated under offset {position} and its leader \
                 cannot say where its log parts from what was read (an unclean leader \
                 election); auto.offset.reset moved the position: reading on from offset \
                 {resumed_at}"
            ),
        }
        self.metrics.truncation();
        self.commands.push_back(Command::Truncated(t));
    }

    /// The fetcher moved `tp` itself (a reset, a truncated log): the rest of a batch held for a
    /// pause was fetched for the old position. What of it lies before `diverged_at` is still on
    /// the leader's log and stays held; the rest is dropped, as the hand-out side drops what it
    /// holds.
    fn moved(&mut self, tp: &TopicPartition, diverged_at: Option<i64>) {
        let keep = match (self.held.get_mut(tp), diverged_at) {
            (None, _) => return,
            (Some(b), Some(offset)) => b.cut_at(offset),
            (Some(_), None) => false,
        };
        if !keep {
            self.held.remove(tp);
        }
        self.forget_last_timestamp(tp);
    }

    fn fetch_error(&mut self, error: Error) {
        self.commands.push_back(Command::FetchError(error));
    }

    // ----- timers -----

    /// The timer table as the machine's state says it is: every deadline is kept where its
    /// state lives (the last sign of life, the publish put off, the pattern's refresh), so the
    /// table is derived from them, never stored beside them to drift.
    fn timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.timer(timer))
    }

    /// When `timer` is due, if armed.
    fn timer(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Liveness if self.options.group => {
                self.last_liveness.checked_add(self.liveness_every)
            }
            Timer::Liveness => None,
            Timer::Publish => self.publish_due.then_some(self.next_publish),
            Timer::MetadataLook => self.metadata_look,
            Timer::PatternRefresh => match &self.subscription {
                Subscription::Pattern(p) => p.refresh_at(self.options.metadata_max_age),
                _ => None,
            },
        }
    }

    // ----- the rebalance steps -----

    /// The commit before partitions go returned. A commit that failed was logged by the
    /// offsets task (at INFO when the rebalance refused it): it is not logged again.
    fn handle_step_commit(&mut self, latency: Duration, result: Result<(), String>) {
        self.metrics.commit_done(latency, result.is_ok());
        self.end_rebalance();
    }

    /// Starts handling a group event whose steps wait. The previous one is done: every path
    /// that begins one waited for the machine to be idle.
    fn begin(&mut self, rebalance: Rebalance) {
        debug_assert!(self.rebalance.is_none());
        self.rebalance = Some(rebalance);
        self.start_rebalance();
    }

    /// The steps before the listener's hook, then the hook.
    fn start_rebalance(&mut self) {
        let Some(r) = self.rebalance.as_ref() else {
            return;
        };
        let (hook, partitions) = (r.hook, r.partitions.clone());
        match hook {
            Hook::Assigned => {}
            Hook::Revoked => {
                // What was handed out counts: stored, and the position the listener sees. An
                // owner that holds revocations finishes what it has of them first (not at
                // the close, which commits what was done with and stops everything).
                if self.hold && self.rebalance.as_ref().is_some_and(|r| r.let_go) {
                    self.commands
                        .push_back(Command::Revoking(partitions.clone()));
                } else {
                    self.tell_leaving(&partitions);
                }
                if self
                    .current
                    .as_ref()
                    .is_some_and(|b| partitions.contains(&b.partition))
                {
                    self.finish_current();
                }
                self.store_processed();
            }
            Hook::Lost => {
                // Nothing of these may be committed any more.
                self.tell_leaving(&partitions);
                for tp in &partitions {
                    self.unstored.remove(tp);
                }
                self.drop_current_of(&partitions);
            }
        }
        // `on_assigned` hears of every assignment, empty ones too (a cooperative rebalance
        // that added nothing), as the Java client's listener does; nothing is revoked or lost
        // without partitions.
        if hook == Hook::Assigned || !partitions.is_empty() {
            let id = self.push_step(
                StepKind::Rebalance,
                Step::Listener {
                    hook,
                    partitions,
                    positions: self.positions.clone(),
                },
            );
            if let Some(r) = self.rebalance.as_mut() {
                r.stage = Stage::Listener(id);
            }
        } else {
            self.hook_done(Ok(Vec::new()));
        }
    }

    /// The hook returned: its seeks applied, then the commit (a revocation under auto-commit)
    /// or the end.
    fn hook_done(&mut self, result: Result<Vec<(TopicPartition, i64)>, String>) {
        match result {
            Ok(seeks) => {
                for (tp, offset) in seeks {
                    if let Err(e) = self.seek(tp, offset) {
                        warn!(error = %e, "a seek from the rebalance listener was refused");
                    }
                }
            }
            Err(e) => warn!(error = %e, "the rebalance listener panicked; it is dropped"),
        }
        let commit = self
            .rebalance
            .as_ref()
            .is_some_and(|r| r.commit && !r.partitions.is_empty());
        if commit && self.options.group {
            let id = self.push_step(StepKind::Rebalance, Step::Commit);
            if let Some(r) = self.rebalance.as_mut() {
                r.stage = Stage::Commit(id);
            }
        } else {
            self.end_rebalance();
        }
    }

    /// The last steps: the partitions leave (revoked, lost), the member is told.
    fn end_rebalance(&mut self) {
        let Some(r) = self.rebalance.take() else {
            return;
        };
        if r.hook != Hook::Assigned && r.let_go {
            self.drop_partitions(&r.partitions);
        }
        if let Some(id) = r.revocation {
            self.commands.push_back(Command::RevocationDone(id));
        }
    }

    // ----- helpers -----

    fn push_step(&mut self, kind: StepKind, step: Step) -> RequestId {
        let id = self.ids.next_id();
        self.step = Some((id, kind));
        self.steps.push_back((id, step));
        id
    }

    /// Looks up where newly owned partitions start, or hands them to the fetcher when every
    /// start is known.
    fn start_partitions(&mut self) {
        if self.starting.is_empty() || self.is_busy() {
            return;
        }
        let lookup: BTreeSet<TopicPartition> = self
            .starting
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if !lookup.is_empty() && self.options.group {
            self.push_step(StepKind::Committed, Step::Committed(lookup));
            return;
        }
        self.committed(Ok(BTreeMap::new()));
    }

    /// The committed offsets of the partitions starting: each starts there, or by
    /// `auto.offset.reset` without one. A failed lookup leaves them waiting, retried on the
    /// next call, and the error goes to the application.
    fn committed(&mut self, result: Result<CommittedOffsets, Error>) {
        let committed = match result {
            Ok(c) => c,
            Err(e) => {
                self.commands.push_back(Command::Error(e));
                return;
            }
        };
        let mut starts = Vec::new();
        for (tp, at) in std::mem::take(&mut self.starting) {
            let start = match at {
                Some(offset) => StartPosition::Committed {
                    offset,
                    leader_epoch: None,
                },
                None => match committed.get(&tp) {
                    Some(Some(at)) if at.offset >= 0 => {
                        if !at.metadata.is_empty() {
                            self.committed_metadata
                                .insert(tp.clone(), (at.offset, at.metadata.clone()));
                        }
                        StartPosition::Committed {
                            offset: at.offset,
                            leader_epoch: at.leader_epoch,
                        }
                    }
                    _ => StartPosition::Reset,
                },
            };
            if let StartPosition::Committed { offset, .. } = start {
                self.positions.insert(tp.clone(), offset);
            }
            starts.push((tp, start));
        }
        debug!(?starts, "fetching newly owned partitions");
        self.commands.push_back(Command::Assign(starts));
    }

    /// Records of one partition from the fetcher: a batch to hand out, when there are any.
    fn records(&mut self, now: Instant, r: FetchedRecords) {
        if !self.assignment.contains(&r.partition) {
            return;
        }
        self.metrics.fetched(now, r.len(), r.bytes);
        // Without records (an answer that only says where the log ends, or control batches
        // and aborted transactions only), the last record's time still bounds the next one's.
        let last_timestamp = match r.last_timestamp() {
            Some(timestamp) => Some(timestamp),
            None => self
                .fetched
                .get(&r.partition)
                .and_then(|f| f.last_timestamp),
        };
        self.fetched.insert(
            r.partition.clone(),
            Fetched {
                high_watermark: r.high_watermark,
                last_stable_offset: (r.last_stable_offset >= 0).then_some(r.last_stable_offset),
                last_timestamp,
            },
        );
        if r.is_empty() {
            // Control batches or aborted transactions only: the position moves (forward: an
            // answer that brought nothing leaves it where it is).
            let last = self.positions.get(&r.partition).copied();
            if last.is_some_and(|last| last >= r.next_offset) {
                return;
            }
            if self.options.auto_store && !self.streams && last.is_some() {
                self.unstored
                    .insert(r.partition.clone(), (r.next_offset, None));
            }
            self.positions.insert(r.partition, r.next_offset);
            return;
        }
        self.current = Some(Batch::new(r));
    }

    /// Those of `partitions` the consumer owns through its group subscription.
    fn group_owned(&self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        if !self.in_group() {
            return Vec::new();
        }
        partitions
            .iter()
            .filter(|tp| self.assignment.contains(tp))
            .cloned()
            .collect()
    }

    /// The records fetched of `tp` are no longer the ones before its position (a seek, or a
    /// pause that fetches the rest again): they say nothing of the next record's age.
    fn forget_last_timestamp(&mut self, tp: &TopicPartition) {
        if let Some(f) = self.fetched.get_mut(tp) {
            f.last_timestamp = None;
        }
    }

    fn finish_current_of(&mut self, tp: &TopicPartition) {
        if self.current.as_ref().is_some_and(|b| &b.partition == tp) {
            self.finish_current();
        }
    }

    fn drop_current_of(&mut self, partitions: &[TopicPartition]) {
        self.drop_held(partitions);
        if self
            .current
            .as_ref()
            .is_some_and(|b| partitions.contains(&b.partition))
        {
            self.current = self.resumed.pop_front();
        }
    }

    /// Forgets `partitions`: the fetcher stops, stored offsets and positions go.
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        self.tell_leaving(partitions);
        self.drop_current_of(partitions);
        let fence = self.handout.unassign(partitions);
        self.commands
            .push_back(Command::Unassign(partitions.to_vec(), fence));
        if self.options.group {
            self.commands
                .push_back(Command::Forget(partitions.to_vec()));
        }
        for tp in partitions {
            self.assignment.remove(tp);
            self.starting.remove(tp);
            self.committed_metadata.remove(tp);
            self.positions.remove(tp);
            self.fetched.remove(tp);
            self.unstored.remove(tp);
            self.paused.remove(tp);
        }
    }

    fn tell_leaving(&mut self, partitions: &[TopicPartition]) {
        if self.streams {
            self.commands
                .push_back(Command::Leaving(partitions.to_vec()));
        }
    }

    fn owned(&self, tp: &TopicPartition) -> Result<(), Error> {
        if self.assignment.contains(tp) {
            return Ok(());
        }
        Err(Error::misuse(format!("the consumer does not own {tp}"))
            .with_partitions(vec![tp.clone()]))
    }
}

impl Machine for ConsumerMachine {
    type Request = Step;
    /// A step names what carries it out (the listener, the offsets task, the pool).
    type Target = ();
    type Response = StepAnswer;
    type Event = Command;

    /// The answer to step `id`; a failure means the task carrying it out died (a listener
    /// that panicked answers with its panic).
    fn handle_response(
        &mut self,
        _now: Instant,
        id: RequestId,
        result: Result<StepAnswer, RequestFailure>,
    ) {
        let Some((out, kind)) = self.step else {
            return;
        };
        if out != id {
            return;
        }
        self.step = None;
        match (kind, result) {
            (StepKind::Rebalance, Ok(StepAnswer::Listener(result))) => self.hook_done(result),
            (StepKind::Rebalance, Ok(StepAnswer::Commit { latency, result })) => {
                self.handle_step_commit(latency, result);
            }
            (StepKind::Committed, Ok(StepAnswer::Committed(result))) => self.committed(result),
            (StepKind::Topics, Ok(StepAnswer::Topics(Ok((generation, topics))))) => {
                self.topics(generation, &topics);
            }
            (StepKind::Topics, Ok(StepAnswer::Topics(Err(e)))) => {
                warn!(error = %e, "metadata for the topic pattern failed; retrying");
            }
            (StepKind::Topics, Err(e)) => {
                warn!(error = %e, "metadata for the topic pattern failed; retrying");
            }
            (StepKind::Rebalance, Err(e)) => match self.rebalance.as_ref() {
                Some(r) if matches!(r.stage, Stage::Commit(_)) => {
                    warn!(error = %e, "the commit before giving up partitions failed: its task ended");
                    let result = Err(format!("the commit task failed: {e}"));
                    self.handle_step_commit(Duration::ZERO, result);
                }
                _ => self.hook_done(Err(e.reason)),
            },
            (StepKind::Committed, Err(e)) => {
                self.committed(Err(
                    Error::new(ErrorKind::Transport, e.reason).retriable(true)
                ));
            }
            (kind, answer) => {
                warn!(
                    ?kind,
                    ?answer,
                    "a step answered with the wrong kind of answer"
                );
            }
        }
    }

    /// Timers due at `now` fire (none while a step is out).
    fn handle_timeout(&mut self, now: Instant) {
        if self.is_busy() {
            return;
        }
        let timers = self.timers();
        for timer in timers.expired(now) {
            match timer {
                Timer::Liveness => self.alive(now),
                Timer::Publish => self.publish(now, false),
                // The driver looks at the pool's snapshot before it waits again.
                Timer::MetadataLook => self.metadata_look = Some(now + METADATA_LOOK),
                Timer::PatternRefresh => {
                    if let Subscription::Pattern(p) = &mut self.subscription {
                        p.refreshing(now);
                        self.push_step(StepKind::Topics, Step::AllTopics);
                    }
                }
            }
        }
    }

    fn poll_request(&mut self, _now: Instant) -> Option<Outgoing<Step, ()>> {
        let (id, request) = self.steps.pop_front()?;
        Some(Outgoing {
            id,
            target: (),
            request,
            timeout: None,
        })
    }

    fn poll_event(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The earliest timer; none while a step is out (the consumer does nothing of its own
    /// until it is answered). Only a receiving call waits for it: between calls nothing
    /// drives the consumer, and what came due fires at the next call's first wait.
    fn poll_timeout(&self) -> Option<Instant> {
        if self.is_busy() {
            return None;
        }
        self.timers().next()
    }
}

kcon_core::timers! {
    /// The machine's timers, one table ([`Timers`], derived from the machine's state by
    /// [`ConsumerMachine::timer`]): [`Machine::poll_timeout`] is its earliest. They run only
    /// while the driver runs: a consumer has no task of its own, so inside a receiving call (and
    /// the member hears of the application only while it is in one).
    enum Timer {
        /// A receiving call that waits tells the member the application is alive: every half
        /// `max.poll.interval.ms` (at least 500 ms) since it last did.
        Liveness,
        /// A metrics publish put off as too soon.
        Publish,
        /// A pattern subscription looks at the pool's metadata every second for new topics.
        MetadataLook,
        /// A pattern subscription asks for every topic's metadata: at once, then every
        /// `metadata.max.age.ms`.
        PatternRefresh,
    }
    type Timers;
}

/// The hand-out side the machine owns: fences, pause holding and `max.poll.records`, driven
/// through the machine's own calls and inputs, with what the fetcher must hear as commands.
#[cfg(test)]
mod handout_tests {
    use std::ops::Range;

    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// A consumer without a group reading partition t-0, which the fetcher has started.
    fn machine(max_poll_records: usize) -> ConsumerMachine {
        let options = MachineOptions {
            group: false,
            auto_commit: false,
            auto_store: false,
            metadata_max_age: Duration::from_secs(300),
            max_poll_interval: Duration::from_secs(300),
            coordinator_regex: false,
        };
        let now = Instant::now();
        let mut m = ConsumerMachine::new(options, Handout::new(max_poll_records), now);
        m.assign([tp()]).unwrap();
        m.waiting(now);
        assert!(
            commands(&mut m)
                .iter()
                .any(|c| matches!(c, Command::Assign(starts) if starts[0].0 == tp())),
            "the fetcher starts t-0"
        );
        m
    }

    fn commands(m: &mut ConsumerMachine) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// An answer's records of t-0 at `offsets`, 700 bytes of it.
    fn records(offsets: Range<i64>) -> Arrival {
        let end = offsets.end;
        let records = offsets
            .map(|o| Record::new("t", 0, o, None, None))
            .collect();
        Arrival::Event(FetchEvent::Records(FetchedRecords::new(
            tp(),
            records,
            end,
            end,
            700,
        )))
    }

    fn offsets(event: Option<FetchEvent>) -> Vec<i64> {
        match event {
            Some(FetchEvent::Records(r)) => r.records.iter().map(|r| r.offset).collect(),
            other => panic!("not records: {other:?}"),
        }
    }

    fn consumed(commands: &[Command]) -> Vec<usize> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Release(Release::Consumed(_, bytes)) => Some(*bytes),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_seek_drops_the_records_on_their_way_until_the_fetcher_confirms_its_fence() {
        let mut m = machine(500);
        m.seek(tp(), 0).unwrap();
        let fence = match commands(&mut m).as_slice() {
            [Command::Seek(p, 0, fence)] if *p == tp() => *fence,
            other => panic!("not one seek: {other:?}"),
        };
        // Fetched for the old position: dropped (the task drops their bytes with the seek).
        assert!(m.arrive(records(10..12)).is_none());
        assert!(m.arrive(Arrival::Fenced(vec![tp()], fence)).is_none());
        assert_eq!(offsets(m.arrive(records(0..2))), [0, 1]);
        assert_eq!(consumed(&commands(&mut m)), [700]);
    }

    /// A truncation the task told again before it took the seek (under
    /// `auto.offset.reset=none` it tells it until the application seeks) was about the position
    /// the seek left: dropped, and the same error after the fence comes through.
    #[test]
    fn a_seek_drops_the_errors_of_the_position_it_left_until_the_fetcher_confirms_its_fence() {
        let mut m = machine(500);
        let truncated = || {
            Arrival::Event(FetchEvent::PartitionError {
                partition: tp(),
                error: PartitionError::LogTruncation {
                    offset: 12,
                    divergent: Some((5, 0)),
                    repositioned: false,
                },
            })
        };
        m.seek(tp(), 5).unwrap();
        let fence = match commands(&mut m).as_slice() {
            [Command::Seek(p, 5, fence)] if *p == tp() => *fence,
            other => panic!("not one seek: {other:?}"),
        };
        assert!(m.arrive(truncated()).is_none());
        let no_position = Arrival::Event(FetchEvent::NoPosition {
            partitions: vec![tp()],
        });
        assert!(m.arrive(no_position).is_none());
        assert!(m.arrive(Arrival::Fenced(vec![tp()], fence)).is_none());
        assert!(matches!(
            m.arrive(truncated()),
            Some(FetchEvent::PartitionError { partition, .. }) if partition == tp()
        ));
    }

    #[test]
    fn a_paused_partitions_records_wait_for_the_resume_then_release_their_bytes() {
        let mut m = machine(500);
        m.pause([tp()]).unwrap();
        assert!(matches!(commands(&mut m).as_slice(), [Command::Pause(p)] if *p == tp()));
        assert!(m.arrive(records(0..3)).is_none());
        assert!(!m.has_released());
        assert!(
            consumed(&commands(&mut m)).is_empty(),
            "held, not handed out"
        );
        m.resume([tp()]).unwrap();
        assert!(m.has_released());
        assert_eq!(offsets(m.next_released()), [0, 1, 2]);
        assert_eq!(consumed(&commands(&mut m)), [700]);
        assert!(!m.has_released());
    }

    /// Records 0..4 of t-0 handed to the machine, 0 and 1 to the application, then t-0
    /// paused: 2 and 3 are held.
    fn paused_after_two_of_four() -> ConsumerMachine {
        let mut m = machine(500);
        let event = m.arrive(records(0..4));
        m.fetch_event(Instant::now(), event);
        assert_eq!(m.next_record().map(|r| r.offset), Some(0));
        assert_eq!(m.next_record().map(|r| r.offset), Some(1));
        m.pause([tp()]).unwrap();
        assert!(!m.has_records());
        assert_eq!(m.position(&tp()), Some(2));
        commands(&mut m);
        m
    }

    fn truncation(divergent: i64) -> Option<FetchEvent> {
        Some(FetchEvent::PartitionError {
            partition: tp(),
            error: PartitionError::LogTruncation {
                offset: 4,
                divergent: Some((divergent, 7)),
                repositioned: true,
            },
        })
    }

    /// Every record the application gets of t-0 from now on, the partition resumed.
    fn after_resume(m: &mut ConsumerMachine) -> Vec<i64> {
        m.resume([tp()]).unwrap();
        std::iter::from_fn(|| m.next_record().map(|r| r.offset)).collect()
    }

    /// The truncations the hooks hear of in `commands`; panics on an error for the
    /// application among them.
    fn told_truncations(commands: &[Command]) -> Vec<Truncation> {
        for c in commands {
            assert!(
                !matches!(c, Command::FetchError(_) | Command::Error(_)),
                "a truncation read on from is no error: {c:?}"
            );
        }
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Truncated(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    fn truncations_counted(m: &ConsumerMachine) -> u64 {
        m.metrics()
            .snapshot(
                Instant::now(),
                BTreeMap::new(),
                kcon_fetch::LatencyHistogram::default(),
                kcon_pool::Rebootstraps::default(),
                kcon_pool::Throttled::default(),
            )
            .truncations
    }

    #[test]
    fn a_truncation_while_paused_keeps_only_the_held_records_before_the_divergence() {
        let mut m = paused_after_two_of_four();
        m.fetch_event(Instant::now(), truncation(3));
        assert_eq!(
            told_truncations(&commands(&mut m)),
            [Truncation {
                partition: tp(),
                position: 4,
                resumed_at: 3,
                diverged_in_epoch: Some(7),
            }],
            "the hooks hear of the truncation"
        );
        assert_eq!(m.position(&tp()), Some(2), "record 2 is still to come");
        assert_eq!(after_resume(&mut m), [2], "3 was on the truncated log");
        m.finish_current();
        assert_eq!(m.position(&tp()), Some(3), "the fetcher goes on from 3");
    }

    #[test]
    fn a_truncation_below_every_held_record_drops_them_and_moves_the_position_there() {
        let mut m = paused_after_two_of_four();
        m.fetch_event(Instant::now(), truncation(2));
        assert_eq!(m.position(&tp()), Some(2));
        assert!(after_resume(&mut m).is_empty());
    }

    /// As after an unclean leader election: the log of t-0 ended at 4 when the leader changed,
    /// and the new leader's log parts from it at 2. The fetcher moved back to 2 (a reset policy is set):
    /// the consumer tells the hooks once, counts it, and hands out what comes from 2 on; the
    /// receiving call never sees an error.
    #[test]
    fn a_truncation_the_fetcher_moved_back_from_is_an_event_and_the_records_after_it_come() {
        let mut m = machine(500);
        let event = m.arrive(records(0..4));
        m.fetch_event(Instant::now(), event);
        let handed: Vec<i64> = std::iter::from_fn(|| m.next_record().map(|r| r.offset)).collect();
        assert_eq!(handed, [0, 1, 2, 3]);
        m.finish_current();
        commands(&mut m);

        m.fetch_event(Instant::now(), truncation(2));
        assert_eq!(
            told_truncations(&commands(&mut m)),
            [Truncation {
                partition: tp(),
                position: 4,
                resumed_at: 2,
                diverged_in_epoch: Some(7),
            }]
        );
        assert_eq!(truncations_counted(&m), 1);
        assert_eq!(m.position(&tp()), Some(2), "reading on from the divergence");

        // The new leader's records from 2 on are handed out as any others.
        let event = m.arrive(records(2..6));
        m.fetch_event(Instant::now(), event);
        assert!(told_truncations(&commands(&mut m)).is_empty(), "told once");
        let handed: Vec<i64> = std::iter::from_fn(|| m.next_record().map(|r| r.offset)).collect();
        assert_eq!(handed, [2, 3, 4, 5]);
        assert_eq!(truncations_counted(&m), 1);
    }

    /// The leader could not say where the logs part: the fetcher resets by the policy, and
    /// the truncation is told once, with the offset the reset found.
    #[test]
    fn a_truncation_the_leader_cannot_place_is_told_with_the_reset_that_follows() {
        let mut m = machine(500);
        m.fetch_event(
            Instant::now(),
            Some(FetchEvent::PartitionError {
                partition: tp(),
                error: PartitionError::LogTruncation {
                    offset: 4,
                    divergent: None,
                    repositioned: true,
                },
            }),
        );
        assert!(
            told_truncations(&commands(&mut m)).is_empty(),
            "where the consumer reads on is not known yet"
        );
        m.fetch_event(
            Instant::now(),
            Some(FetchEvent::Reset {
                partition: tp(),
                reason: ResetReason::UnknownTruncation { offset: 4 },
                offset: 1,
            }),
        );
        assert_eq!(
            told_truncations(&commands(&mut m)),
            [Truncation {
                partition: tp(),
                position: 4,
                resumed_at: 1,
                diverged_in_epoch: None,
            }]
        );
        assert_eq!(truncations_counted(&m), 1);
        assert_eq!(m.position(&tp()), Some(1));
    }

    /// Under auto.offset.reset=none the fetcher does not move: the application asked to stop
    /// there, and its receiving call returns the error (Java's LogTruncationException).
    #[test]
    fn under_auto_offset_reset_none_a_truncation_is_the_applications_error() {
        let mut m = machine(500);
        m.fetch_event(
            Instant::now(),
            Some(FetchEvent::PartitionError {
                partition: tp(),
                error: PartitionError::LogTruncation {
                    offset: 4,
                    divergent: Some((2, 7)),
                    repositioned: false,
                },
            }),
        );
        let errors: Vec<Error> = commands(&mut m)
            .into_iter()
            .filter_map(|c| match c {
                Command::FetchError(e) => Some(e),
                Command::Truncated(t) => panic!("told as read on from: {t:?}"),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind(), ErrorKind::LogTruncation);
        assert_eq!(errors[0].partitions(), [tp()]);
        assert_eq!(truncations_counted(&m), 0);
    }

    #[test]
    fn a_reset_while_paused_drops_the_held_records() {
        let mut m = paused_after_two_of_four();
        m.fetch_event(
            Instant::now(),
            Some(FetchEvent::Reset {
                partition: tp(),
                reason: kcon_fetch::position::ResetReason::OffsetOutOfRange { offset: 4 },
                offset: 10,
            }),
        );
        assert_eq!(m.position(&tp()), Some(10));
        assert!(
            after_resume(&mut m).is_empty(),
            "fetched for the old position"
        );
    }

    #[test]
    fn max_poll_records_cuts_an_answer_and_its_rest_comes_first_with_the_bytes() {
        let mut m = machine(2);
        assert_eq!(offsets(m.arrive(records(0..3))), [0, 1]);
        assert!(
            consumed(&commands(&mut m)).is_empty(),
            "the rest is still to come"
        );
        assert!(m.has_released());
        assert_eq!(offsets(m.next_released()), [2]);
        assert_eq!(consumed(&commands(&mut m)), [700]);
    }
}
