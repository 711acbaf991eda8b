//! The record processor's bookkeeping as a sans-IO machine: the records of each partition
//! waiting to be processed, the retry timers, the circuit breaker, the counts. It decides what
//! happens to every record; the [`Processor`](crate::Processor) only carries it out (calls the
//! handler, writes dead letters, stores offsets, pauses partitions).
//!
//! # Driving it
//! It follows kcon-core's [`Machine`] contract: no socket, no clock (`now` is an argument),
//! randomness from a seed given at construction; its driver is the processor's
//! ([`super::driver`]), shared by the `Processor` and the simulation in `tests.rs`.
//! - requests ([`Work`]): the record work that needs an answer, with the target `()` (the
//!   request says what carries it out): process a record (the handler) or write it to the
//!   dead-letter topic (the producer), answered with a [`Done`]. At most one is out at a time;
//! - events ([`Event`]), carried out in order: store, pause, resume, what the hooks hear, and
//!   [`Event::Stop`] (an error that ends the driver's run);
//! - timers: one table ([`Timer`]), whose one timer is the earliest retry due
//!   ([`poll_timeout`](Machine::poll_timeout), fired by
//!   [`handle_timeout`](Machine::handle_timeout));
//! - its own commands: [`records`](PolicyMachine::records) (a fetched batch of one partition),
//!   [`leaving`](PolicyMachine::leaving) (partitions revoked or lost: their records go, the
//!   next owner reads them), [`restart`](PolicyMachine::restart) (the driver starts again,
//!   after stopping or being cancelled), [`close_breaker`](PolicyMachine::close_breaker).
//!
//! # The rules it keeps
//! - A partition's records are processed in offset order, one at a time. An offset is stored
//!   only once its record is processed, skipped or acknowledged by the dead-letter topic, so a
//!   commit never passes a record that is waiting, failing or lost in a dead-letter write.
//! - A retriable failure pauses only its partition (the driver pauses it in the consumer) until
//!   the record's retry is due; other partitions go on. The partition resumes when its waiting
//!   records are done.
//! - A record that failed for good counts in the breaker first: if it opens the breaker, the
//!   record stays where it is and everything stops. Otherwise `errors.tolerance` decides.
//!
//! # A share group's records
//! Made for a share consumer's records ([`Delivery::Redelivered`]), the machine keeps the same
//! rules where a share group settles records instead of storing offsets: a record done with is
//! accepted (skipped: rejected, archived), and the group's redelivery is the retry. A retriable
//! failure while the record's delivery count is below `errors.retry.max.attempts` releases it
//! at once (no backoff, no paused partition: the group hands it out again, to this member or
//! another, its delivery count raised), and the delivery count is the attempt. When the run
//! stops, every record it holds is released, the one at fault first.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kcon_core::{
    ExponentialBackoff, Machine, Outgoing, RequestFailure, RequestId, RequestIds, TopicPartition,
};

use crate::config::ErrorTolerance;

use super::breaker::{Breaker, Tripped};
use super::failure::{FailureInfo, Stage};
use super::metrics::Counts;
use crate::config::PolicyConfig;
use crate::record::Record;

/// The record work the driver carries out and answers: the machine's requests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work {
    /// Deserialize the record and call the handler (try number `attempt`, from 1); answered
    /// with [`Done::Processed`].
    Process { record: Record, attempt: u32 },
    /// Write the record to the dead-letter topic and wait for the acknowledgement; answered
    /// with [`Done::DeadLettered`].
    DeadLetter {
        record: Record,
        failure: FailureInfo,
        attempts: u32,
    },
}

/// The answer to a [`Work`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Done {
    /// What became of the record of a [`Work::Process`].
    Processed(Outcome),
    /// The dead-letter topic acknowledged the record of a [`Work::DeadLetter`], or why not.
    DeadLettered(Result<(), DeadLetterFailure>),
}

/// Why a dead-letter write failed: whose doing it was, and what happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeadLetterFailure {
    /// The write's cause (the producer's, or the configuration's when the record cannot go).
    pub(crate) cause: crate::error::Cause,
    /// What happened, for the log and the error.
    pub(crate) reason: String,
}

/// What happened to the record of a [`Work::Process`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Processed.
    Done,
    /// It did not deserialize, or the handler failed.
    Failed(FailureInfo),
}

/// How a record is settled ([`Event::Settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    unreachable_pub,
    reason = "named by the sealed trait behind `RecordSource`, whose methods are public"
)]
pub enum Settlement {
    /// Processed, or acknowledged by the dead-letter topic: a consumer stores the offset past
    /// it, a share consumer accepts it.
    Done,
    /// Failed for good and skipped: a consumer stores the offset past it (it is not read
    /// again), a share consumer rejects it (archived).
    Skipped,
    /// Handed back to the share group, to be delivered again (a retry, or a record held when
    /// the run stops): a share consumer releases it. Only a share group's records are
    /// released; a consumer's retries wait in the machine.
    Released,
}

/// Where the records come from, which decides what a retry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    unreachable_pub,
    reason = "named by the sealed trait behind `RecordSource`, whose methods are public"
)]
pub enum Delivery {
    /// A consumer's partitions: a retry waits out a backoff with its partition paused, and
    /// the tries are counted here.
    Partitions,
    /// A share group's: a retry is a release (the group delivers the record again), and the
    /// record's delivery count is the attempt.
    Redelivered,
}

/// What the driver must do and the hooks hear, in order: the machine's events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The record is done with, or handed back, as `how` says.
    Settle { record: Record, how: Settlement },
    /// Stop fetching and handing out the partition.
    Pause(TopicPartition),
    /// Fetch and hand out the partition again.
    Resume(TopicPartition),
    /// Try `attempt` failed retriably; the next is in `delay`.
    Retrying {
        record: Record,
        failure: FailureInfo,
        attempt: u32,
        delay: Duration,
    },
    /// Failed for good and skipped (`errors.tolerance=all`, no dead-letter topic).
    Skipped {
        record: Record,
        failure: FailureInfo,
    },
    /// Failed for good and acknowledged by the dead-letter topic.
    DeadLettered {
        record: Record,
        failure: FailureInfo,
    },
    /// This record's failure opened the breaker.
    BreakerOpened {
        record: Record,
        failure: FailureInfo,
    },
    /// The driver's run stops here, with the error this says.
    Stop(Stop),
}

/// Why the driver must stop: nothing past the record was stored, and the record is the first
/// to be processed when the driver runs again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// It failed for good under `errors.tolerance=none`.
    Failed {
        record: Record,
        failure: FailureInfo,
        attempts: u32,
    },
    /// Its dead-letter write failed; it is written again when the driver runs again.
    DeadLetterFailed {
        record: Record,
        error: DeadLetterFailure,
    },
    /// Its failure opened the breaker: every partition should pause.
    BreakerOpen {
        record: Record,
        failure: FailureInfo,
        tripped: Tripped,
    },
}

kcon_core::timers! {
    /// The machine's timers, one table. A retry is due per partition waiting (its lane's
    /// `retry_at`), and partitions come and go with the assignment, so those deadlines stay in
    /// their lanes and the table holds one timer, the earliest of them, derived from the lanes
    /// whenever it is read (`timers`), never stored beside them. The breaker counts outcomes, not time: it has no timer.
    enum Timer {
        /// The earliest retry of a partition's head record is due.
        Retry,
    }
    type Timers;
}

/// One partition's records waiting to be processed, and its head's retry state.
#[derive(Debug, Default)]
struct Lane {
    records: VecDeque<Record>,
    /// Failed tries of the head record so far.
    failures: u32,
    /// When the head record first failed.
    first_failure: Option<Instant>,
    /// The head record waits for a retry until then (the [`Timer::Retry`] of the earliest).
    retry_at: Option<Instant>,
    /// The head record failed for good and goes to the dead-letter topic.
    dead_letter: Option<(FailureInfo, u32)>,
    /// The machine had the driver pause the partition.
    paused: bool,
}

impl Lane {
    fn ready(&self) -> bool {
        !self.records.is_empty() && self.retry_at.is_none()
    }

    /// The head is done with: the next record starts with no failures.
    fn pop(&mut self) -> Option<Record> {
        self.failures = 0;
        self.first_failure = None;
        self.retry_at = None;
        self.dead_letter = None;
        self.records.pop_front()
    }

    /// The head starts over: its next try is its first (after a stop).
    fn start_over(&mut self) {
        self.failures = 0;
        self.first_failure = None;
    }
}

/// The record processor's machine (see the module's documentation).
#[derive(Debug)]
pub(crate) struct PolicyMachine {
    delivery: Delivery,
    tolerance: ErrorTolerance,
    dead_letter: bool,
    max_attempts: u32,
    retry_timeout: Option<Duration>,
    backoff: ExponentialBackoff,
    rng: fastrand::Rng,
    lanes: BTreeMap<TopicPartition, Lane>,
    /// The work out with the driver (a `Process` or `DeadLetter`) and its partition.
    in_flight: Option<(RequestId, TopicPartition)>,
    breaker: Breaker,
    /// The breaker is open: nothing is processed until it is closed.
    open: bool,
    /// The machine stopped: nothing is handed out until the driver runs again.
    stopped: bool,
    ids: RequestIds,
    requests: VecDeque<(RequestId, Work)>,
    events: VecDeque<Event>,
    counts: Counts,
}

impl PolicyMachine {
    /// A machine following `config` for records delivered as `delivery` says, writing dead
    /// letters when `config` names a topic (the driver has a producer for it), with retry
    /// jitter drawn from `seed`.
    pub(crate) fn new(config: &PolicyConfig, delivery: Delivery, seed: u64) -> PolicyMachine {
        PolicyMachine {
            delivery,
            tolerance: config.tolerance,
            dead_letter: config.dead_letter_topic.is_some(),
            max_attempts: config.retry_max_attempts.max(1),
            retry_timeout: config.retry_timeout,
            backoff: config.backoff(),
            rng: fastrand::Rng::with_seed(seed),
            lanes: BTreeMap::new(),
            in_flight: None,
            breaker: Breaker::new(
                config.breaker_window,
                config.breaker_failures,
                config.breaker_consecutive,
            ),
            open: false,
            stopped: false,
            ids: RequestIds::default(),
            requests: VecDeque::new(),
            events: VecDeque::new(),
            counts: Counts::default(),
        }
    }

    /// Records of `partition`, in order, after those already waiting.
    pub(crate) fn records(
        &mut self,
        now: Instant,
        partition: TopicPartition,
        records: Vec<Record>,
    ) {
        if records.is_empty() {
            return;
        }
        self.lanes
            .entry(partition)
            .or_default()
            .records
            .extend(records);
        self.pump(now);
    }

    /// `partitions` left the consumer: their records are dropped unprocessed (their offsets
    /// were not stored, so the next owner reads them), and whatever was asked for them is
    /// void. The consumer un-pauses a partition that leaves.
    pub(crate) fn leaving(&mut self, now: Instant, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        for tp in partitions {
            self.lanes.remove(tp);
        }
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(_, tp)| partitions.contains(tp))
        {
            self.in_flight = None;
        }
        self.requests
            .retain(|(_, w)| !concerns(w.record(), partitions));
        self.events.retain(|e| match e {
            Event::Settle { record, .. } => !concerns(record, partitions),
            Event::Pause(tp) | Event::Resume(tp) => !partitions.contains(tp),
            _ => true,
        });
        self.pump(now);
    }

    /// The answer to the [`Work::Process`] of `tp`'s head.
    fn processed(&mut self, now: Instant, tp: TopicPartition, outcome: Outcome) {
        let Some(lane) = self.lanes.get_mut(&tp) else {
            return self.pump(now);
        };
        match outcome {
            Outcome::Done => {
                self.counts.processed(&tp);
                self.breaker.record(false);
                self.done(&tp, Settlement::Done);
            }
            Outcome::Failed(failure) if self.delivery == Delivery::Redelivered => {
                lane.failures += 1;
                let attempt = lane.records.front().map_or(1, delivery_count);
                if failure.retriable && attempt < self.max_attempts {
                    // The group's redelivery is the retry: released now, handed out again.
                    if let Some(record) = lane.records.front() {
                        self.events.push_back(Event::Retrying {
                            record: record.clone(),
                            failure,
                            attempt,
                            delay: Duration::ZERO,
                        });
                    }
                    self.counts.retried(&tp);
                    self.done(&tp, Settlement::Released);
                } else {
                    self.failed_for_good(&tp, failure);
                }
            }
            Outcome::Failed(failure) => {
                lane.failures += 1;
                let first = *lane.first_failure.get_or_insert(now);
                let attempt = lane.failures;
                let in_time = self
                    .retry_timeout
                    .is_none_or(|limit| now.saturating_duration_since(first) < limit);
                if failure.retriable && attempt < self.max_attempts && in_time {
                    let delay = self.backoff.delay(attempt - 1, self.rng.f64());
                    lane.retry_at = Some(now + delay);
                    if !lane.paused {
                        lane.paused = true;
                        self.events.push_back(Event::Pause(tp.clone()));
                    }
                    if let Some(record) = lane.records.front() {
                        self.events.push_back(Event::Retrying {
                            record: record.clone(),
                            failure,
                            attempt,
                            delay,
                        });
                    }
                    self.counts.retried(&tp);
                } else {
                    self.failed_for_good(&tp, failure);
                }
            }
        }
        self.pump(now);
    }

    /// The answer to the [`Work::DeadLetter`] of `tp`'s head: acknowledged, or why not.
    fn dead_lettered(
        &mut self,
        now: Instant,
        tp: TopicPartition,
        result: Result<(), DeadLetterFailure>,
    ) {
        let Some(lane) = self.lanes.get_mut(&tp) else {
            return self.pump(now);
        };
        match result {
            Ok(()) => {
                if let (Some(record), Some((failure, _))) =
                    (lane.records.front(), lane.dead_letter.clone())
                {
                    self.events.push_back(Event::DeadLettered {
                        record: record.clone(),
                        failure,
                    });
                }
                self.counts.dead_lettered(&tp, now);
                self.done(&tp, Settlement::Done);
            }
            Err(error) => {
                if let Some(record) = lane.records.front() {
                    let record = record.clone();
                    self.stop(Stop::DeadLetterFailed { record, error });
                }
                self.counts.dead_letter_failed();
            }
        }
        self.pump(now);
    }

    /// The driver runs again (after a stop, or after its run was cancelled with work out):
    /// the work out is asked for again, from the start.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.requests.clear();
        self.in_flight = None;
        self.stopped = false;
        self.pump(now);
    }

    /// Closes the breaker: its counts start afresh and processing goes on from the record
    /// that opened it.
    pub(crate) fn close_breaker(&mut self, now: Instant) {
        self.open = false;
        self.stopped = false;
        self.breaker.clear();
        self.pump(now);
    }

    /// Whether the breaker is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// The partitions the machine has paused (their records wait for a retry).
    pub(crate) fn paused(&self) -> impl Iterator<Item = &TopicPartition> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.paused)
            .map(|(tp, _)| tp)
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Records waiting, all partitions together.
    pub(crate) fn waiting(&self) -> usize {
        self.lanes.values().map(|l| l.records.len()).sum()
    }

    /// The head of `tp` is settled as `how` (done with: its offset stored or the record
    /// accepted or rejected; or released), and the partition resumes if it was paused and
    /// nothing of it waits.
    fn done(&mut self, tp: &TopicPartition, how: Settlement) {
        let Some(lane) = self.lanes.get_mut(tp) else {
            return;
        };
        if let Some(record) = lane.pop() {
            self.events.push_back(Event::Settle { record, how });
        }
        if lane.records.is_empty() {
            if lane.paused {
                self.events.push_back(Event::Resume(tp.clone()));
            }
            self.lanes.remove(tp);
        }
    }

    /// The head of `tp` failed for good: the breaker hears it, then `errors.tolerance`
    /// decides.
    fn failed_for_good(&mut self, tp: &TopicPartition, failure: FailureInfo) {
        let Some(lane) = self.lanes.get_mut(tp) else {
            return;
        };
        let Some(record) = lane.records.front().cloned() else {
            return;
        };
        let attempts = match self.delivery {
            Delivery::Partitions => lane.failures,
            Delivery::Redelivered => delivery_count(&record),
        };
        if let Some(tripped) = self.breaker.record(true) {
            lane.start_over();
            self.open = true;
            self.counts.breaker_tripped();
            self.events.push_back(Event::BreakerOpened {
                record: record.clone(),
                failure: failure.clone(),
            });
            self.stop(Stop::BreakerOpen {
                record,
                failure,
                tripped,
            });
            return;
        }
        match self.tolerance {
            ErrorTolerance::None => {
                lane.start_over();
                self.stop(Stop::Failed {
                    record,
                    failure,
                    attempts,
                });
            }
            ErrorTolerance::All if self.dead_letter => {
                lane.dead_letter = Some((failure, attempts));
            }
            ErrorTolerance::All => {
                self.events.push_back(Event::Skipped { record, failure });
                self.counts.skipped(tp);
                self.done(tp, Settlement::Skipped);
            }
        }
    }

    /// The driver's run stops with `stop`; nothing is handed out until it runs again. A share
    /// group's records held are released first, the one at fault before the rest: the group
    /// hands them out again, and the share consumer hands out no more while any is unsettled.
    fn stop(&mut self, stop: Stop) {
        self.stopped = true;
        if self.delivery == Delivery::Redelivered {
            let at_fault = stop.record().topic_partition();
            let mut held: Vec<Record> = Vec::new();
            if let Some(lane) = self.lanes.remove(&at_fault) {
                held.extend(lane.records);
            }
            for (_, lane) in std::mem::take(&mut self.lanes) {
                held.extend(lane.records);
            }
            for record in held {
                self.events.push_back(Event::Settle {
                    record,
                    how: Settlement::Released,
                });
            }
        }
        self.events.push_back(Event::Stop(stop));
    }

    /// Hands the driver the next record to process or dead-letter, if nothing is out, nothing
    /// stops the machine and a partition has one ready.
    fn pump(&mut self, _now: Instant) {
        if self.in_flight.is_some() || self.stopped || self.open {
            return;
        }
        let Some((tp, lane)) = self.lanes.iter().find(|(_, l)| l.ready()) else {
            return;
        };
        // Invariant: a ready lane has a head record.
        let Some(record) = lane.records.front().cloned() else {
            return;
        };
        let attempt = match self.delivery {
            Delivery::Partitions => lane.failures + 1,
            Delivery::Redelivered => delivery_count(&record),
        };
        let work = match &lane.dead_letter {
            Some((failure, attempts)) => Work::DeadLetter {
                record,
                failure: failure.clone(),
                attempts: *attempts,
            },
            None => Work::Process { record, attempt },
        };
        let id = self.ids.next_id();
        self.in_flight = Some((id, tp.clone()));
        self.requests.push_back((id, work));
    }

    /// When `timer` fires, as the lanes say: the earliest retry, whether or not the machine
    /// may hand work out (a retry coming due while the breaker is open or the run stopped
    /// wakes the driver all the same, as it always has).
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Retry => self.lanes.values().filter_map(|l| l.retry_at).min(),
        }
    }

    /// The timer table, as the lanes say it is: a retry is set, cleared, or dropped with its
    /// partition in several places, and the rule is written once, in `deadline`.
    fn timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.deadline(timer))
    }

    /// `timer` fired at `now`.
    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            // Every retry due, not only the earliest, becomes ready: the head records of their
            // partitions are handed out again in turn.
            Timer::Retry => {
                for lane in self.lanes.values_mut() {
                    if lane.retry_at.is_some_and(|at| at <= now) {
                        lane.retry_at = None;
                    }
                }
            }
        }
    }
}

impl Machine for PolicyMachine {
    type Request = Work;
    /// Work names what carries it out: the handler, or the dead-letter producer.
    type Target = ();
    type Response = Done;
    type Event = Event;

    /// The answer to the work `id`; a failure (the work could not be carried out) counts as
    /// a failed try of the handler, or a failed dead-letter write. An answer to work no longer
    /// out (its partition left, the driver restarted) changes nothing.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Done, RequestFailure>,
    ) {
        let Some((out, tp)) = self.in_flight.clone() else {
            return;
        };
        if out != id {
            return;
        }
        self.in_flight = None;
        let dead_letter = self
            .lanes
            .get(&tp)
            .is_some_and(|lane| lane.dead_letter.is_some());
        match result {
            Ok(Done::Processed(outcome)) => self.processed(now, tp, outcome),
            Ok(Done::DeadLettered(result)) => self.dead_lettered(now, tp, result),
            Err(failure) if dead_letter => {
                // The write's task ended without a result: nothing says the record went.
                let failure = DeadLetterFailure {
                    cause: crate::error::Cause::Transport,
                    reason: failure.reason,
                };
                self.dead_lettered(now, tp, Err(failure));
            }
            Err(failure) => {
                let failure = FailureInfo {
                    stage: Stage::Handler,
                    retriable: failure.retriable,
                    class: "request".to_owned(),
                    message: failure.reason,
                };
                self.processed(now, tp, Outcome::Failed(failure));
            }
        }
    }

    /// Time passed: the timers due fire (retries that are due become ready).
    fn handle_timeout(&mut self, now: Instant) {
        let timers = self.timers();
        for timer in timers.expired(now) {
            self.on_timer(timer, now);
        }
        self.pump(now);
    }

    fn poll_request(&mut self, _now: Instant) -> Option<Outgoing<Work, ()>> {
        let (id, request) = self.requests.pop_front()?;
        Some(Outgoing {
            id,
            target: (),
            request,
            timeout: None,
        })
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the next retry is due: the table's one timer.
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers().next()
    }
}

impl Work {
    /// The record it is about.
    pub(crate) fn record(&self) -> &Record {
        match self {
            Work::Process { record, .. } | Work::DeadLetter { record, .. } => record,
        }
    }
}

impl Stop {
    /// The record at fault.
    pub(crate) fn record(&self) -> &Record {
        match self {
            Stop::Failed { record, .. }
            | Stop::DeadLetterFailed { record, .. }
            | Stop::BreakerOpen { record, .. } => record,
        }
    }
}

/// A share group's record's delivery count: the try it is on (1 without one).
fn delivery_count(record: &Record) -> u32 {
    u32::from(record.delivery_count.unwrap_or(1).max(1))
}

/// Whether `record` is of one of `partitions`.
fn concerns(record: &Record, partitions: &[TopicPartition]) -> bool {
    partitions
        .iter()
        .any(|tp| tp.partition == record.partition && *tp.topic == *record.topic)
}

#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(
    not(all(test, feature = "fuzzing")),
    allow(
        dead_code,
        reason = "the tests use some of the simulation, the fuzz target some other"
    )
)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
