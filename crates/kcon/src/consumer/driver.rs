//! The consumer's driver, sans-IO: what to do with each input (a group event, a fetch event, a
//! step's answer, a timer), how the machine's commands reach the parts ([`Parts`], one method per
//! thing a part can be told), how steps start and finish, and the order of a close.
//!
//! Two shells feed it. The tokio [`Consumer`](crate::Consumer) waits for the next input (the
//! member's and the fetcher's channels, a step's task, a sleep until the machine's
//! `poll_timeout`) and hands it in, with its parts the tasks' handles ([`super::wiring`]);
//! kcon-sim's whole-consumer simulation (`kcon_sim::consumer`, through the feature `fuzzing`)
//! feeds the same code from its scheduled messages, with its parts the other machines on a
//! virtual clock. Neither copies any of it: a new command is a new method of [`Parts`], which
//! each must implement before it compiles.
//!
//! ```text
//!                    call ─► turn ─┬─ Error ─────────────► the call returns it
//!   (application_polled,           ├─ Step ──► the shell awaits the step ─► answered ─┐
//!    usable)                       ├─ Again ───────────────────────────────────────────┤
//!                                  └─ Wait ──► the shell waits for one input:          │
//!                                     group_event | fetch_event (Records: return) |    │
//!                                     timeout (poll_timeout) ──────────────────────────┘
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use kcon_core::group_offsets::OffsetAndMetadata;
use kcon_core::{Machine, PersistentFailure, RequestFailure, RequestId, TopicPartition};
use kcon_fetch::handout::{Arrival, Release};
use kcon_fetch::{FetchEvent, StartPosition};
use kcon_group::{GroupEvent, RevocationId};

use super::machine::{Command, ConsumerMachine, Step, StepAnswer};
use super::rebalance::Hook;
use crate::error::Error;
use crate::hooks::{FetchedBatch, Truncation};
use crate::metrics::{LagInputs, MetricsState};
use crate::record::Record;

/// A step's answer, or why there is none (the task carrying it out died).
pub type Answer = Result<StepAnswer, RequestFailure>;

/// The parts around a consumer's machine: what it commands (the group member, the pool, the
/// fetcher, the offsets task, an owner above the consumer), what carries out its steps, and
/// what watches it (the hooks, the metrics handles). One method per thing a part can be told;
/// none has a default, so a new command fails to compile in every implementation until it
/// says what it does.
///
/// Two implementations: the tokio tasks' handles (`wiring::Wiring`) and kcon-sim's
/// simulation's machines on a virtual clock.
pub trait Parts {
    // ----- the group member -----

    /// Subscribe to these topics.
    fn subscribe(&mut self, now: Instant, topics: BTreeSet<String>);
    /// Subscribe to these topics and whatever the regex matches (the coordinator matches it).
    fn subscribe_regex(&mut self, now: Instant, topics: BTreeSet<String>, regex: String);
    /// Leave the group.
    fn unsubscribe(&mut self, now: Instant);
    /// The application gave up everything it owned: the member acknowledges revocations
    /// itself until subscribed again.
    fn gave_up(&mut self, now: Instant);
    /// The application is alive.
    fn alive(&mut self, now: Instant);
    /// The revocation `id` is done.
    fn revocation_done(&mut self, now: Instant, id: RevocationId);

    // ----- the pool -----

    /// Keep these topics' metadata fresh.
    fn track_topics(&mut self, now: Instant, topics: BTreeSet<String>);
    /// The cluster's topics as the pool's metadata snapshot names them, with its generation,
    /// when `news` says that generation is wanted.
    fn cluster_topics(&self, news: impl FnOnce(u64) -> bool) -> Option<(u64, Vec<String>)>;

    // ----- the fetcher -----

    /// Start fetching these partitions, from there.
    fn assign(&mut self, now: Instant, starts: Vec<(TopicPartition, StartPosition)>);
    /// Stop fetching these partitions, then confirm with `fence` ([`Arrival::Fenced`]).
    fn unassign(&mut self, now: Instant, partitions: Vec<TopicPartition>, fence: u64);
    /// Pause a partition.
    fn pause(&mut self, now: Instant, tp: TopicPartition);
    /// Resume a partition.
    fn resume(&mut self, now: Instant, tp: TopicPartition);
    /// Move a partition, then confirm with `fence` ([`Arrival::Fenced`]).
    fn seek(&mut self, now: Instant, tp: TopicPartition, offset: i64, fence: u64);
    /// What records handed out release from, or hold in, the prefetch budget.
    fn release(&mut self, now: Instant, release: Release);

    // ----- the offsets task -----

    /// Store a partition's next offset, its record's leader epoch and the commit's metadata.
    fn store(&mut self, now: Instant, tp: TopicPartition, at: OffsetAndMetadata);
    /// Forget these partitions' stored offsets.
    fn forget(&mut self, now: Instant, partitions: Vec<TopicPartition>);
    /// The offsets task's next report of a request that keeps failing, without waiting.
    fn offsets_report(&mut self) -> Option<PersistentFailure>;

    // ----- an owner above the consumer -----

    /// These partitions are leaving (partition streams, a record processor).
    fn leaving(&mut self, now: Instant, partitions: Vec<TopicPartition>);
    /// These partitions begin revoking, and the owner holds the revocation (a record
    /// processor): it is told them instead of [`leaving`](Parts::leaving), which follows when
    /// they go.
    fn revoking(&mut self, now: Instant, partitions: Vec<TopicPartition>);

    // ----- steps: each answered later through [`Driver::answered`], or at once (`Some`) -----

    /// Call the listener's `hook` with `partitions`; `positions` are for it to read.
    fn listener(
        &mut self,
        now: Instant,
        id: RequestId,
        hook: Hook,
        partitions: Vec<TopicPartition>,
        positions: HashMap<TopicPartition, i64>,
    ) -> Option<Answer>;
    /// Commit every stored offset and wait for the coordinator (before partitions go).
    fn commit(&mut self, now: Instant, id: RequestId) -> Option<Answer>;
    /// Look up these partitions' committed offsets.
    fn committed(
        &mut self,
        now: Instant,
        id: RequestId,
        partitions: BTreeSet<TopicPartition>,
    ) -> Option<Answer>;
    /// Ask for every topic's metadata.
    fn all_topics(&mut self, now: Instant, id: RequestId) -> Option<Answer>;
    /// The error that stopped the pool, if one did (another cluster answered): the consumer
    /// can go on no more.
    fn pool_failure(&self) -> Option<Error>;

    // ----- what watches the consumer: the hooks, the metrics handles -----

    /// A fetcher batch reached the consumer.
    fn fetched(&mut self, now: Instant, batch: &FetchedBatch<'_>);
    /// A batch is about to be handed out.
    fn records(&mut self, now: Instant, tp: &TopicPartition, records: &[Record]);
    /// Whether [`records`](Self::records) is to be told of each batch: records left where
    /// they lie in the answer are decoded for it.
    fn watches_records(&self) -> bool {
        true
    }
    /// The fetcher's error for `tp` goes to the application.
    fn partition_error(&mut self, now: Instant, tp: &TopicPartition, error: &Error);
    /// A request keeps failing, or recovered.
    fn persistent_failure(&mut self, now: Instant, report: &PersistentFailure);
    /// A log was truncated under a position, and the consumer read on.
    fn truncated(&mut self, now: Instant, truncation: &Truncation);
    /// Publish the counters and every owned partition's lag inputs.
    fn publish(
        &mut self,
        now: Instant,
        metrics: &mut MetricsState,
        lags: BTreeMap<TopicPartition, LagInputs>,
    );
    /// Publish the counters and one partition's lag inputs.
    fn publish_partition(
        &mut self,
        now: Instant,
        metrics: &mut MetricsState,
        tp: &TopicPartition,
        lag: LagInputs,
    );
}

/// What a receiving call does after a [`turn`](Driver::turn).
#[derive(Debug)]
pub enum Turn {
    /// Something changed: turn again.
    Again,
    /// A step is out: wait for its answer ([`Driver::answered`]), then turn again.
    Step,
    /// Nothing to do: wait for the next input (a group or fetch event, or `poll_timeout`).
    Wait,
    /// Records are ready without waiting (the rest of a batch held by a pause, resumed): hand
    /// them out.
    Ready,
    /// Return this error.
    Error(Error),
}

/// The fetcher's side of a wait: what the fetch task sent (`None`: it stopped), or the records
/// the hand-out side released (a resumed partition's, the rest of a batch cut by
/// `max.poll.records`), which go first.
#[derive(Debug)]
pub enum FetchInput {
    /// The fetch task's next arrival.
    Arrival(Option<Arrival>),
    /// The machine's released records
    /// ([`has_released`](super::machine::ConsumerMachine::has_released)).
    Released,
}

/// What a fetch event came to.
#[derive(Debug)]
pub enum Got {
    /// Nothing for the application: wait again.
    Nothing,
    /// A batch is ready to hand out.
    Records,
    /// Return this error.
    Error(Error),
}

/// What a close does next ([`Driver::close_turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseTurn {
    /// Wait for the step out: a rebalance that was under way.
    Finishing,
    /// Wait for the step out: the close's own revocation (the listener hears of every
    /// partition).
    Revoking,
    /// Commit what is stored (auto-commit), then [`Driver::close_committed`].
    Commit,
    /// The member leaves and the fetcher closes: the close is done with the machine.
    Leave,
}

/// Where a close is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Finishing,
    Revoking,
    Commit,
    Leave,
}

/// The consumer's machine and what its driver keeps between inputs.
#[derive(Debug)]
pub struct Driver {
    /// The machine (its queries and the application's calls are made on it directly).
    pub machine: ConsumerMachine,
    /// Errors the machine told the application, not returned yet.
    errors: VecDeque<Error>,
    /// Where a close is, once one began.
    closing: Option<Closing>,
}

impl Driver {
    /// Drives `machine`.
    pub fn new(machine: ConsumerMachine) -> Driver {
        Driver {
            machine,
            errors: VecDeque::new(),
            closing: None,
        }
    }

    /// Passes the machine's commands to the parts, in order: after every input.
    pub fn run<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        while let Some(command) = self.machine.poll_event() {
            match command {
                Command::Subscribe(topics) => parts.subscribe(now, topics),
                Command::SubscribeRegex { topics, regex } => {
                    parts.subscribe_regex(now, topics, regex);
                }
                Command::Unsubscribe => parts.unsubscribe(now),
                Command::GaveUp => parts.gave_up(now),
                Command::Alive => parts.alive(now),
                Command::RevocationDone(id) => parts.revocation_done(now, id),
                Command::TrackTopics(topics) => parts.track_topics(now, topics),
                Command::Assign(starts) => parts.assign(now, starts),
                Command::Unassign(partitions, fence) => parts.unassign(now, partitions, fence),
                Command::Pause(tp) => parts.pause(now, tp),
                Command::Resume(tp) => parts.resume(now, tp),
                Command::Seek(tp, offset, fence) => parts.seek(now, tp, offset, fence),
                Command::Release(release) => parts.release(now, release),
                Command::Store(tp, at) => parts.store(now, tp, at),
                Command::Forget(partitions) => parts.forget(now, partitions),
                Command::Leaving(partitions) => parts.leaving(now, partitions),
                Command::Revoking(partitions) => parts.revoking(now, partitions),
                Command::Report(report) => parts.persistent_failure(now, &report),
                Command::Publish => {
                    let lags = self.machine.lags_inputs();
                    parts.publish(now, self.machine.metrics_mut(), lags);
                }
                Command::PublishPartition(tp) => {
                    let lag = self.machine.lag_inputs_of(&tp);
                    parts.publish_partition(now, self.machine.metrics_mut(), &tp, lag);
                }
                Command::Error(e) => self.errors.push_back(e),
                Command::FetchError(e) => {
                    for tp in e.partitions() {
                        parts.partition_error(now, tp, &e);
                    }
                    self.errors.push_back(e);
                }
                Command::Truncated(t) => parts.truncated(now, &t),
            }
        }
    }

    /// A receiving call starts: it fails at once when the consumer can no longer be used, and
    /// the member hears the application is alive.
    pub fn call<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Result<(), Error> {
        self.machine.usable()?;
        self.machine.application_polled(now);
        self.run(now, parts);
        Ok(())
    }

    /// One turn of a receiving call, before it waits: at the top of every wait the offsets
    /// task's reports are told and the metrics published when due, then an error goes to the
    /// application, a step is started or waited for, and otherwise what was processed is
    /// stored, the timers due fire, a pattern is matched against new metadata and newly owned
    /// partitions start.
    pub fn turn<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Turn {
        while let Some(report) = parts.offsets_report() {
            self.machine.persistent_failure(report);
        }
        if self.machine.fatal().is_none()
            && let Some(e) = parts.pool_failure()
        {
            self.machine.pool_failed(e);
        }
        // Every input (a fetch answer, a group event, a timer) may change what the metrics
        // handles read.
        self.machine.publish(now, false);
        self.run(now, parts);
        if let Some(e) = self.take_error() {
            return Turn::Error(e);
        }
        if self.steps(now, parts) {
            return Turn::Step;
        }
        if !self.machine.is_busy() {
            self.machine.store_processed();
            if self.machine.poll_timeout().is_some_and(|at| at <= now) {
                self.machine.handle_timeout(now);
            }
            let machine = &self.machine;
            if let Some((generation, topics)) =
                parts.cluster_topics(|generation| machine.wants_metadata(generation))
            {
                self.machine.metadata(now, generation, &topics);
            }
            self.machine.waiting(now);
        }
        self.run(now, parts);
        if self.machine.is_busy() {
            Turn::Again
        } else if self.machine.has_records() {
            Turn::Ready
        } else {
            Turn::Wait
        }
    }

    /// Starts the machine's steps in order (one answered at once is fed in and the next
    /// started); whether one is out, waiting for its answer.
    pub(crate) fn steps<P: Parts>(&mut self, now: Instant, parts: &mut P) -> bool {
        loop {
            if self.machine.awaiting_step().is_some() {
                return true;
            }
            let Some(out) = self.machine.poll_request(now) else {
                return false;
            };
            let answer = match out.request {
                Step::Listener {
                    hook,
                    partitions,
                    positions,
                } => parts.listener(now, out.id, hook, partitions, positions),
                Step::Commit => parts.commit(now, out.id),
                Step::Committed(partitions) => parts.committed(now, out.id, partitions),
                Step::AllTopics => parts.all_topics(now, out.id),
            };
            if let Some(answer) = answer {
                self.answered(now, out.id, answer, parts);
            }
        }
    }

    /// Step `id` was answered.
    pub fn answered<P: Parts>(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Answer,
        parts: &mut P,
    ) {
        self.machine.handle_response(now, id, answer);
        self.run(now, parts);
    }

    /// The group member's event (`None`: its task stopped); the error the call returns, if
    /// any.
    pub fn group_event<P: Parts>(
        &mut self,
        now: Instant,
        event: Option<GroupEvent>,
        parts: &mut P,
    ) -> Option<Error> {
        self.machine.group_event(now, event);
        self.run(now, parts);
        self.machine.publish(now, true);
        self.run(now, parts);
        self.errors.pop_front()
    }

    /// The fetcher's input: through the machine's hand-out side, an event to handle, or
    /// nothing for the application.
    pub fn fetch_input<P: Parts>(&mut self, now: Instant, input: FetchInput, parts: &mut P) -> Got {
        let event = match input {
            FetchInput::Arrival(None) => return self.fetch_event(now, None, parts),
            FetchInput::Arrival(Some(arrival)) => self.machine.arrive(arrival),
            FetchInput::Released => self.machine.next_released(),
        };
        match event {
            Some(event) => self.fetch_event(now, Some(event), parts),
            // A fence confirmed, records fetched before a seek, records held for a pause.
            None => Got::Nothing,
        }
    }

    /// The fetcher's event (`None`: its task stopped).
    fn fetch_event<P: Parts>(
        &mut self,
        now: Instant,
        event: Option<FetchEvent>,
        parts: &mut P,
    ) -> Got {
        // An answer that brought no records and no bytes only says where the log ends: no
        // batch was fetched.
        if let Some(FetchEvent::Records(r)) = &event
            && (!r.is_empty() || r.bytes > 0)
        {
            parts.fetched(
                now,
                &FetchedBatch {
                    partition: &r.partition,
                    records: r.len(),
                    bytes: r.bytes,
                    high_watermark: r.high_watermark,
                },
            );
        }
        self.machine.fetch_event(now, event);
        self.run(now, parts);
        if let Some(e) = self.errors.pop_front() {
            return Got::Error(e);
        }
        if !self.machine.has_records() {
            return Got::Nothing;
        }
        if let Some(tp) = self.machine.current_partition().cloned() {
            self.machine.publish_for(now, &tp);
            self.run(now, parts);
        }
        if parts.watches_records()
            && let Some((tp, records)) = self.machine.fresh_batch()
        {
            parts.records(now, tp, records);
        }
        Got::Records
    }

    /// The offsets task reported a request that keeps failing: the hooks and the metrics hear
    /// it now, not at the consumer's next wake-up.
    pub(crate) fn offsets_report<P: Parts>(
        &mut self,
        now: Instant,
        report: PersistentFailure,
        parts: &mut P,
    ) {
        self.machine.persistent_failure(report);
        self.run(now, parts);
    }

    /// The machine's `poll_timeout` passed.
    pub(crate) fn timeout<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        self.machine.handle_timeout(now);
        self.run(now, parts);
    }

    /// The metrics are published, at once when `force`, else when due.
    pub(crate) fn publish<P: Parts>(&mut self, now: Instant, force: bool, parts: &mut P) {
        self.machine.publish(now, force);
        self.run(now, parts);
    }

    /// The next error for the application: one told, else the fatal one.
    fn take_error(&mut self) -> Option<Error> {
        self.errors
            .pop_front()
            .or_else(|| self.machine.fatal().cloned())
    }

    /// The next thing a close does: a rebalance under way is finished, the partitions are
    /// revoked (the listener hears of them; the revocation commits nothing), a final commit
    /// under auto-commit (not after a fatal error), then the member leaves and the fetcher
    /// closes.
    pub fn close_turn<P: Parts>(&mut self, now: Instant, parts: &mut P) -> CloseTurn {
        loop {
            let stage = *self.closing.get_or_insert(Closing::Finishing);
            match stage {
                Closing::Finishing | Closing::Revoking => {
                    if self.steps(now, parts) {
                        return match stage {
                            Closing::Finishing => CloseTurn::Finishing,
                            _ => CloseTurn::Revoking,
                        };
                    }
                    if stage == Closing::Finishing {
                        self.revoke_all(now, parts);
                    } else {
                        self.closing = Some(Closing::Commit);
                    }
                }
                Closing::Commit => {
                    if self.machine.fatal().is_none() && self.machine.auto_commit() {
                        return CloseTurn::Commit;
                    }
                    self.closing = Some(Closing::Leave);
                }
                Closing::Leave => return CloseTurn::Leave,
            }
        }
    }

    /// The close's deadline passed while it waited for a step: it goes on without it (the
    /// close's own revocation is begun but its listener not called). Whether that revocation
    /// was skipped so.
    pub(crate) fn close_late<P: Parts>(&mut self, now: Instant, parts: &mut P) -> bool {
        match self.closing {
            Some(Closing::Finishing) => {
                let revoking = self.revoke_all(now, parts);
                self.closing = Some(Closing::Commit);
                revoking
            }
            _ => {
                self.closing = Some(Closing::Commit);
                false
            }
        }
    }

    /// The close's final commit finished (or was given up on).
    pub fn close_committed(&mut self) {
        self.closing = Some(Closing::Leave);
    }

    /// The close's own revocation begins; whether there was anything to revoke.
    fn revoke_all<P: Parts>(&mut self, now: Instant, parts: &mut P) -> bool {
        self.closing = Some(Closing::Revoking);
        let revoking = self.machine.begin_close();
        self.run(now, parts);
        revoking
    }
}
