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
//!   dead-letter topic (the producer), answered with a [`Done`]. At most
//!   `processing.max.concurrency` are out at a time, never two of one ordering unit
//!   (`processing.ordering`: a partition, a key within its partition, or a record);
//! - events ([`Event`]), carried out in order: store, pause, resume, what the hooks hear, and
//!   [`Event::Stop`] (an error that ends the driver's run);
//! - timers: one table ([`Timer`]): the earliest retry due and the earliest rewrite of a
//!   partition's commit metadata ([`poll_timeout`](Machine::poll_timeout), fired by
//!   [`handle_timeout`](Machine::handle_timeout));
//! - its own commands: [`records`](PolicyMachine::records) (a fetched batch of one partition),
//!   [`leaving`](PolicyMachine::leaving) (partitions revoked or lost: their records go, the
//!   next owner reads them), [`restart`](PolicyMachine::restart) (the driver starts again,
//!   after stopping or being cancelled), [`close_breaker`](PolicyMachine::close_breaker).
//!
//! # The rules it keeps
//! - A unit's records are processed in offset order, one at a time (the scheduler of
//!   `ordering.rs`). A partition's stored offset is its lowest record not yet processed,
//!   skipped or acknowledged by the dead-letter topic (`progress.rs`), so a commit never passes
//!   a record that is waiting, running, failing or lost in a dead-letter write; the records
//!   done with above it go in the metadata stored with it.
//! - A retriable failure holds back only its unit until the record's retry is due; under
//!   `partition` ordering its partition is paused (the driver pauses it in the consumer) and
//!   resumes when nothing of it is left.
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use kcon_core::group_offsets::OffsetAndMetadata;
use kcon_core::{
    ExponentialBackoff, Machine, Outgoing, RequestFailure, RequestId, RequestIds, TopicPartition,
};

use crate::config::ErrorTolerance;

use super::breaker::{Breaker, Tripped};
use super::failure::{FailureInfo, Stage};
use super::metrics::Counts;
use super::ordering::{Ordering, Scheduler, Unit};
use super::progress::{FinishedAbove, Progress};
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
    /// A share group's record is done with, or handed back, as `how` says.
    Settle { record: Record, how: Settlement },
    /// A consumer's partition is done with up to `at` (its lowest record not done with), and
    /// the metadata names the records done with above it (empty when none, or when it was
    /// not written this time).
    Store {
        tp: TopicPartition,
        at: OffsetAndMetadata,
    },
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
    /// The machine's timers, one table. Retries are due per unit waiting (the scheduler keeps
    /// them by when they are due) and a partition's metadata is rewritten at most every
    /// [`METADATA_EVERY`], so those deadlines stay where they are kept and the table's timers
    /// are derived from them whenever it is read (`timers`), never stored beside them. The
    /// breaker counts outcomes, not time: it has no timer.
    enum Timer {
        /// The earliest retry of a unit's head record is due.
        Retry,
        /// A partition's commit metadata, out of date, may be written again.
        Metadata,
    }
    type Timers;
}

/// How often, at most, a partition's commit metadata is written again while its records
/// finish out of order: writing it walks the records pending, so it is not done per record.
/// Between two writes, an offset stored carries no metadata, and a restart then processes
/// again the records finished above it (at least once holds).
pub(crate) const METADATA_EVERY: Duration = Duration::from_millis(200);

/// The most bytes of a commit's metadata: Apache Kafka's `offset.metadata.max.bytes` default,
/// past which the broker refuses the commit.
pub(crate) const METADATA_MAX_BYTES: usize = 4096;

/// The retry state of a unit's head record, once it has failed.
#[derive(Debug, Default)]
struct Head {
    /// Failed tries so far.
    failures: u32,
    /// When it first failed.
    first_failure: Option<Instant>,
    /// It failed for good and goes to the dead-letter topic.
    dead_letter: Option<(FailureInfo, u32)>,
}

impl Head {
    /// The head starts over: its next try is its first (after a stop).
    fn start_over(&mut self) {
        self.failures = 0;
        self.first_failure = None;
    }
}

/// One partition's records in the machine: received, not yet done with.
#[derive(Debug, Default)]
struct Partition {
    progress: Progress,
    /// The machine had the driver pause the partition (a retry under `partition` ordering).
    paused: bool,
    /// The highest leader epoch of the records done with: what a stored offset carries.
    epoch: Option<i32>,
    /// The offset last stored.
    stored: Option<i64>,
    /// When the metadata was last written.
    metadata_at: Option<Instant>,
    /// Records finished above the stored offset that its metadata does not name yet.
    stale: bool,
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
    /// A retry pauses its partition (`partition` ordering): fetching it waits with it.
    pause_on_retry: bool,
    /// `processing.max.buffered.records`.
    max_buffered: usize,
    /// `processing.max.buffered.records.per.key`, under `key` ordering.
    max_per_key: Option<usize>,
    /// The records waiting and running, by ordering unit.
    scheduler: Scheduler,
    /// The retry state of heads that failed.
    heads: BTreeMap<Unit, Head>,
    /// The partitions with records in the machine.
    partitions: BTreeMap<TopicPartition, Partition>,
    /// What the commit's metadata said was done with above the offset a partition was
    /// assigned at (by this member before a restart, or by its last owner): those records are
    /// passed over as they come, until one past what it describes comes.
    done_before: BTreeMap<TopicPartition, FinishedAbove>,
    /// The work out with the driver (a `Process` or `DeadLetter`) and its unit.
    out: BTreeMap<RequestId, Unit>,
    /// Partitions revoking: nothing more of them starts, and once none of their records is
    /// out they are stored and released.
    draining: BTreeSet<TopicPartition>,
    /// Partitions revoking that the machine is done with, for the driver to release.
    released: Vec<TopicPartition>,
    /// Partitions whose metadata could not name every record done with above the offset,
    /// and the offset up to which it does, for the driver to tell.
    cuts: Vec<(TopicPartition, i64)>,
    /// Partitions paused because `processing.max.buffered.records` records wait unstarted
    /// ([`bound_buffer`](Self::bound_buffer)).
    pressed: BTreeSet<TopicPartition>,
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
            pause_on_retry: config.ordering == Ordering::Partition,
            max_buffered: config.max_buffered.max(1),
            max_per_key: (config.ordering == Ordering::Key && delivery == Delivery::Partitions)
                .then_some(config.max_buffered_per_key.max(1)),
            scheduler: Scheduler::new(config.ordering, config.max_concurrency),
            heads: BTreeMap::new(),
            partitions: BTreeMap::new(),
            done_before: BTreeMap::new(),
            out: BTreeMap::new(),
            draining: BTreeSet::new(),
            released: Vec::new(),
            pressed: BTreeSet::new(),
            cuts: Vec::new(),
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

    /// `partitions` begin revoking (the consumer waits for their release before it commits
    /// and lets them go): their records not started are dropped (the next owner reads them),
    /// those out are finished, and once none is out the partition's lowest record not done
    /// with is stored, with the metadata, and the partition released
    /// ([`take_released`](Self::take_released)). It leaves ([`leaving`](Self::leaving)) when
    /// the consumer lets it go.
    pub(crate) fn revoking(&mut self, now: Instant, partitions: &[TopicPartition]) {
        self.draining.extend(partitions.iter().cloned());
        self.pump(now);
    }

    /// The partitions whose metadata was cut since the driver last asked, each with the
    /// offset up to which it names the records done with.
    pub(crate) fn take_cuts(&mut self) -> Vec<(TopicPartition, i64)> {
        std::mem::take(&mut self.cuts)
    }

    /// The partitions revoking that the machine is done with since the driver last asked.
    pub(crate) fn take_released(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.released)
    }

    /// Partitions revoking: their records not out are dropped; those with none out are
    /// stored and released.
    fn drain(&mut self, now: Instant) {
        let draining: Vec<TopicPartition> = self.draining.iter().cloned().collect();
        for tp in draining {
            self.scheduler.take_idle(&tp);
            let out: Vec<&Unit> = self.out.values().filter(|u| *u.partition() == tp).collect();
            self.heads
                .retain(|unit, _| *unit.partition() != tp || out.contains(&unit));
            if !out.is_empty() {
                continue;
            }
            if let Some((tp, at)) = self.store(now, tp.clone(), true) {
                self.events.push_back(Event::Store { tp, at });
            }
            self.draining.remove(&tp);
            self.released.push(tp);
        }
    }

    /// `tp` was assigned at an offset committed with metadata saying these records above it
    /// were done with: they are passed over as they come.
    pub(crate) fn done_before(&mut self, tp: TopicPartition, above: FinishedAbove) {
        self.done_before.insert(tp, above);
    }

    /// A fetched batch of `tp`'s records, in offset order, arrived. Those the commit's
    /// metadata said were done with are done with at once, counted, and named again in the
    /// metadata of this member's commits.
    pub(crate) fn records(&mut self, now: Instant, tp: TopicPartition, records: Vec<Record>) {
        // A partition revoking is read by its next owner.
        if records.is_empty() || self.draining.contains(&tp) {
            return;
        }
        let partition = self.partitions.entry(tp.clone()).or_default();
        let mut passed = 0;
        // A key of the partition has more records waiting than its bound.
        let mut hot = false;
        for record in records {
            partition.progress.received(record.offset);
            if let Some(done) = self.done_before.get(&tp) {
                if done.contains(record.offset) {
                    partition.progress.finished(record.offset);
                    partition.epoch = partition.epoch.max(record.leader_epoch);
                    passed += 1;
                    continue;
                }
                if record.offset > done.last() {
                    self.done_before.remove(&tp);
                }
            }
            let waiting = self.scheduler.push(record);
            hot |= self.max_per_key.is_some_and(|bound| waiting > bound);
        }
        if passed > 0 {
            self.counts.done_before(&tp, passed);
            if let Some((tp, at)) = self.store(now, tp.clone(), true) {
                self.events.push_back(Event::Store { tp, at });
            }
            if self
                .partitions
                .get(&tp)
                .is_some_and(|p| p.progress.pending() == 0)
            {
                self.partitions.remove(&tp);
            }
        }
        self.pump(now);
        if hot {
            self.press(tp.clone());
        }
        self.bound_buffer(Some(&tp));
    }

    /// `partitions` left (revoked or lost): their records go, work out for them included (its
    /// answer will change nothing), and nothing is stored for them any more.
    pub(crate) fn leaving(&mut self, now: Instant, partitions: &[TopicPartition]) {
        self.scheduler.leaving(partitions);
        self.out
            .retain(|_, unit| !partitions.contains(unit.partition()));
        self.heads
            .retain(|unit, _| !partitions.contains(unit.partition()));
        for tp in partitions {
            self.partitions.remove(tp);
            self.done_before.remove(tp);
            self.draining.remove(tp);
            self.pressed.remove(tp);
        }
        self.requests
            .retain(|(_, w)| !concerns(w.record(), partitions));
        self.events.retain(|e| match e {
            Event::Settle { record, .. } => !concerns(record, partitions),
            Event::Store { tp, .. } | Event::Pause(tp) | Event::Resume(tp) => {
                !partitions.contains(tp)
            }
            _ => true,
        });
        self.pump(now);
    }

    /// The answer to the [`Work::Process`] of `unit`'s head, `record`.
    fn processed(&mut self, now: Instant, unit: Unit, record: Record, outcome: Outcome) {
        let tp = unit.partition().clone();
        match outcome {
            Outcome::Done => {
                self.counts.processed(&tp);
                self.breaker.record(false);
                self.finish(now, &unit, record, Settlement::Done);
            }
            Outcome::Failed(failure) if self.delivery == Delivery::Redelivered => {
                self.heads.entry(unit.clone()).or_default().failures += 1;
                let attempt = delivery_count(&record);
                if failure.retriable && attempt < self.max_attempts {
                    // The group's redelivery is the retry: released now, handed out again.
                    self.events.push_back(Event::Retrying {
                        record: record.clone(),
                        failure,
                        attempt,
                        delay: Duration::ZERO,
                    });
                    self.counts.retried(&tp);
                    self.finish(now, &unit, record, Settlement::Released);
                } else {
                    self.failed_for_good(now, unit, record, failure);
                }
            }
            Outcome::Failed(failure) => {
                let head = self.heads.entry(unit.clone()).or_default();
                head.failures += 1;
                let first = *head.first_failure.get_or_insert(now);
                let attempt = head.failures;
                let in_time = self
                    .retry_timeout
                    .is_none_or(|limit| now.saturating_duration_since(first) < limit);
                if failure.retriable && attempt < self.max_attempts && in_time {
                    let delay = self.backoff.delay(attempt - 1, self.rng.f64());
                    self.scheduler.retry(&unit, now + delay);
                    if self.pause_on_retry
                        && let Some(p) = self.partitions.get_mut(&tp)
                        && !p.paused
                    {
                        p.paused = true;
                        // Paused for the bound already: now for the retry.
                        if !self.pressed.remove(&tp) {
                            self.events.push_back(Event::Pause(tp.clone()));
                        }
                    }
                    self.events.push_back(Event::Retrying {
                        record,
                        failure,
                        attempt,
                        delay,
                    });
                    self.counts.retried(&tp);
                } else {
                    self.failed_for_good(now, unit, record, failure);
                }
            }
        }
        self.pump(now);
    }

    /// The answer to the [`Work::DeadLetter`] of `unit`'s head, `record`: acknowledged, or
    /// why not.
    fn dead_lettered(
        &mut self,
        now: Instant,
        unit: Unit,
        record: Record,
        result: Result<(), DeadLetterFailure>,
    ) {
        match result {
            Ok(()) => {
                let failure = self
                    .heads
                    .get_mut(&unit)
                    .and_then(|h| h.dead_letter.take())
                    .map(|(failure, _)| failure);
                if let Some(failure) = failure {
                    self.events.push_back(Event::DeadLettered {
                        record: record.clone(),
                        failure,
                    });
                }
                self.counts.dead_lettered(unit.partition(), now);
                self.finish(now, &unit, record, Settlement::Done);
            }
            Err(error) => {
                self.counts.dead_letter_failed();
                // The dead letter is asked for again when the driver runs again.
                self.scheduler.again(&unit);
                if !self.stopped {
                    self.stop(Stop::DeadLetterFailed { record, error });
                }
            }
        }
        self.pump(now);
    }

    /// The driver runs again (after a stop, or after its run was cancelled with work out):
    /// the work out is asked for again, from the start.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.requests.clear();
        for unit in std::mem::take(&mut self.out).into_values() {
            self.scheduler.again(&unit);
        }
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
        self.partitions
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(tp, _)| tp)
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Records received and not yet done with, all partitions together (those running
    /// included).
    pub(crate) fn waiting(&self) -> usize {
        self.partitions.values().map(|p| p.progress.pending()).sum()
    }

    /// Per partition with records in the machine, how far the records received run ahead of
    /// its lowest record not done with (0 when every record is).
    pub(crate) fn gaps(&self) -> impl Iterator<Item = (&TopicPartition, i64)> {
        self.partitions.iter().map(|(tp, p)| (tp, p.progress.gap()))
    }

    /// Whether a record of a partition is done with above one that is not (the exactly-once
    /// mode commits no transaction then: the record's outputs would be committed without its
    /// offset).
    pub(crate) fn finished_above(&self) -> bool {
        self.partitions
            .values()
            .any(|p| p.progress.finished_above())
    }

    /// Records with the driver now (in the handler, or being dead-lettered).
    pub(crate) fn running(&self) -> usize {
        self.out.len()
    }

    /// Records received and waiting behind an earlier record of their ordering unit (their
    /// key, under `key`).
    pub(crate) fn behind(&self) -> usize {
        self.scheduler.behind()
    }

    /// Records received and not started (waiting their turn or their retry).
    pub(crate) fn buffered(&self) -> usize {
        self.scheduler.waiting_total()
    }

    /// Whether the driver should call the source's receiving call now. A share consumer
    /// hands out no more while a record of its last batch is unsettled. A consumer's is
    /// always called, so that its group's events are handled while the handler is busy: the
    /// records it hands out are bounded by pausing partitions instead
    /// ([`over_buffer`](Self::over_buffer)).
    pub(crate) fn wants_records(&self) -> bool {
        match self.delivery {
            Delivery::Redelivered => self.waiting() == 0,
            Delivery::Partitions => true,
        }
    }

    /// Records waiting unstarted in partitions the machine has not paused (a paused
    /// partition's records wait for its retry, and no more of it are fetched).
    fn buffered_flowing(&self) -> usize {
        let paused: usize = self
            .partitions
            .iter()
            .filter(|(_, p)| p.paused)
            .map(|(tp, _)| self.scheduler.waiting(tp))
            .sum();
        self.buffered().saturating_sub(paused)
    }

    /// Bounds the records waiting unstarted: once `processing.max.buffered.records` wait (in
    /// partitions not paused for a retry), every partition with records waiting is paused, and
    /// so is each partition whose records come while the bound is passed; a partition paused
    /// for the bound resumes when none of its records waits unstarted. Partitions with nothing
    /// waiting go on being fetched, so the bound is passed by at most a batch of each, and no
    /// partition whose fetched records are many holds the others back.
    fn bound_buffer(&mut self, arrived: Option<&TopicPartition>) {
        if self.delivery != Delivery::Partitions || self.buffered_flowing() < self.max_buffered {
            return;
        }
        let pause: Vec<TopicPartition> = match arrived {
            Some(tp) if !self.pressed.is_empty() => vec![tp.clone()],
            _ => self
                .partitions
                .keys()
                .filter(|tp| self.scheduler.waiting(tp) > 0)
                .cloned()
                .collect(),
        };
        for tp in pause {
            self.press(tp);
        }
    }

    /// Pauses `tp` until none of its records waits unstarted (the buffer's bound, or a key's:
    /// [`bound_buffer`](Self::bound_buffer), [`records`](Self::records)), unless it is paused
    /// for a retry already.
    fn press(&mut self, tp: TopicPartition) {
        let retrying = self.partitions.get(&tp).is_some_and(|p| p.paused);
        if !retrying && self.scheduler.waiting(&tp) > 0 && self.pressed.insert(tp.clone()) {
            self.events.push_back(Event::Pause(tp));
        }
    }

    /// A record of `tp` started: the partition resumes if the bound paused it and none of its
    /// records waits unstarted any more.
    fn started_one_of(&mut self, tp: &TopicPartition) {
        if !self.pressed.is_empty() && self.scheduler.waiting(tp) == 0 && self.pressed.remove(tp) {
            self.events.push_back(Event::Resume(tp.clone()));
        }
    }

    /// `unit`'s head, `record`, is settled as `how` (done with: its offset stored, or the
    /// record accepted or rejected; or released): its unit's next record may start, and its
    /// partition resumes if it was paused and nothing of it is left.
    fn finish(&mut self, now: Instant, unit: &Unit, record: Record, how: Settlement) {
        self.heads.remove(unit);
        self.scheduler.finished(unit);
        let tp = unit.partition();
        let Some(partition) = self.partitions.get_mut(tp) else {
            return;
        };
        partition.progress.finished(record.offset);
        match self.delivery {
            Delivery::Redelivered => self.events.push_back(Event::Settle { record, how }),
            Delivery::Partitions => {
                partition.epoch = partition.epoch.max(record.leader_epoch);
                if let Some((tp, at)) = self.store(now, tp.clone(), false) {
                    self.events.push_back(Event::Store { tp, at });
                }
            }
        }
        let Some(partition) = self.partitions.get_mut(tp) else {
            return;
        };
        if partition.progress.pending() == 0 {
            if partition.paused || self.pressed.remove(tp) {
                self.events.push_back(Event::Resume(tp.clone()));
            }
            self.partitions.remove(tp);
        }
    }

    /// What to store for `tp`: its committable offset if it moved and no record finished
    /// above it, or with the records finished above it in the metadata when a write is due
    /// (or `force`d); a partition whose metadata could not be written now waits for the
    /// [`Timer::Metadata`], its offset too.
    fn store(
        &mut self,
        now: Instant,
        tp: TopicPartition,
        force: bool,
    ) -> Option<(TopicPartition, OffsetAndMetadata)> {
        let partition = self.partitions.get_mut(&tp)?;
        let offset = partition.progress.committable()?;
        let moved = partition.stored != Some(offset);
        let above = partition.progress.finished_above();
        let due = above
            && (force
                || partition
                    .metadata_at
                    .is_none_or(|at| now >= at + METADATA_EVERY));
        // While records finish above the committable offset, the offset is stored only with
        // the metadata naming them: an offset stored alone would overwrite the last metadata
        // with none, and a commit then would name nothing done above its offset. So it moves
        // at most every `METADATA_EVERY` then (the Metadata timer stores it), and at once
        // while records finish in order.
        if !due && (!moved || above) {
            partition.stale |= above;
            return None;
        }
        let metadata = if due {
            partition.metadata_at = Some(now);
            let written = partition.progress.metadata(METADATA_MAX_BYTES);
            self.counts
                .metadata_written(&tp, written.text.len(), written.complete);
            if !written.complete {
                let named = FinishedAbove::read(offset, &written.text)
                    .ok()
                    .flatten()
                    .map_or(offset, |f| f.last());
                self.cuts.push((tp.clone(), named));
            }
            written.text
        } else {
            String::new()
        };
        partition.stale = above && !due;
        partition.stored = Some(offset);
        Some((
            tp,
            OffsetAndMetadata {
                offset,
                leader_epoch: partition.epoch,
                metadata,
            },
        ))
    }

    /// The metadata of every partition whose records finished above its stored offset since
    /// it was last written, to store before a commit so that the commit names all it can.
    pub(crate) fn store_metadata(
        &mut self,
        now: Instant,
    ) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        let stale: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.stale)
            .map(|(tp, _)| tp.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|tp| self.store(now, tp, true))
            .collect()
    }

    /// `unit`'s head, `record`, failed for good: the breaker hears it, then
    /// `errors.tolerance` decides. While the machine is stopped (another record stopped it
    /// while this one ran), the record waits for the next run, from its first try.
    fn failed_for_good(&mut self, now: Instant, unit: Unit, record: Record, failure: FailureInfo) {
        let tp = unit.partition().clone();
        let head = self.heads.entry(unit.clone()).or_default();
        let attempts = match self.delivery {
            Delivery::Partitions => head.failures,
            Delivery::Redelivered => delivery_count(&record),
        };
        if self.stopped {
            head.start_over();
            self.scheduler.again(&unit);
            return;
        }
        if let Some(tripped) = self.breaker.record(true) {
            head.start_over();
            self.scheduler.again(&unit);
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
                head.start_over();
                self.scheduler.again(&unit);
                self.stop(Stop::Failed {
                    record,
                    failure,
                    attempts,
                });
            }
            ErrorTolerance::All if self.dead_letter => {
                // Its unit's next work is the dead letter, before any other record of it.
                head.dead_letter = Some((failure, attempts));
                self.scheduler.again(&unit);
            }
            ErrorTolerance::All => {
                self.events.push_back(Event::Skipped {
                    record: record.clone(),
                    failure,
                });
                self.counts.skipped(&tp);
                self.finish(now, &unit, record, Settlement::Skipped);
            }
        }
    }

    /// The driver's run stops with `stop`; nothing is handed out until it runs again. A share
    /// group's records held and not with the driver are released first, the one at fault
    /// first: the group hands them out again, and the share consumer hands out no more while
    /// any is unsettled.
    fn stop(&mut self, stop: Stop) {
        self.stopped = true;
        if self.delivery == Delivery::Redelivered {
            let at_fault = stop.record();
            let at_tp = at_fault.topic_partition();
            let mut order: Vec<TopicPartition> = vec![at_tp.clone()];
            order.extend(self.partitions.keys().filter(|tp| **tp != at_tp).cloned());
            let mut held: Vec<Record> = Vec::new();
            for tp in order {
                let mut idle = self.scheduler.take_idle(&tp);
                if let Some(i) = idle.iter().position(|r| r.offset == at_fault.offset)
                    && tp == at_tp
                {
                    let first = idle.remove(i);
                    held.push(first);
                }
                held.extend(idle);
            }
            for record in held {
                if let Some(p) = self.partitions.get_mut(&record.topic_partition()) {
                    p.progress.finished(record.offset);
                }
                self.events.push_back(Event::Settle {
                    record,
                    how: Settlement::Released,
                });
            }
            self.partitions.retain(|_, p| p.progress.pending() > 0);
            let running: Vec<&Unit> = self.out.values().collect();
            self.heads.retain(|unit, _| running.contains(&unit));
        }
        self.events.push_back(Event::Stop(stop));
    }

    /// Hands the driver the records that may start (to process or dead-letter), unless
    /// something stops the machine.
    fn pump(&mut self, now: Instant) {
        if !self.draining.is_empty() {
            self.drain(now);
        }
        if self.stopped || self.open {
            return;
        }
        while let Some((unit, record)) = self.scheduler.start() {
            self.started_one_of(unit.partition());
            let head = self.heads.get(&unit);
            let work = match head.and_then(|h| h.dead_letter.as_ref()) {
                Some((failure, attempts)) => Work::DeadLetter {
                    record,
                    failure: failure.clone(),
                    attempts: *attempts,
                },
                None => {
                    let attempt = match self.delivery {
                        Delivery::Partitions => head.map_or(0, |h| h.failures) + 1,
                        Delivery::Redelivered => delivery_count(&record),
                    };
                    Work::Process { record, attempt }
                }
            };
            let id = self.ids.next_id();
            self.out.insert(id, unit);
            self.requests.push_back((id, work));
        }
    }

    /// When `timer` fires, as the scheduler and the partitions say: the earliest retry
    /// (whether or not the machine may hand work out: a retry coming due while the breaker is
    /// open or the run stopped wakes the driver all the same, as it always has), and the
    /// earliest metadata write due.
    fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Retry => self.scheduler.next_retry(),
            Timer::Metadata => self
                .partitions
                .values()
                .filter(|p| p.stale)
                .filter_map(|p| p.metadata_at.map(|at| at + METADATA_EVERY))
                .min(),
        }
    }

    /// The timer table, as the scheduler and the partitions say it is: written once, in
    /// `deadline`.
    fn timers(&self) -> Timers {
        Timers::from_deadlines(|timer| self.deadline(timer))
    }

    /// `timer` fired at `now`.
    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            // Every retry due, not only the earliest, may start: the heads of their units are
            // handed out again in turn.
            Timer::Retry => self.scheduler.wake(now),
            Timer::Metadata => {
                let due: Vec<TopicPartition> = self
                    .partitions
                    .iter()
                    .filter(|(_, p)| {
                        p.stale && p.metadata_at.is_none_or(|at| now >= at + METADATA_EVERY)
                    })
                    .map(|(tp, _)| tp.clone())
                    .collect();
                for tp in due {
                    if let Some((tp, at)) = self.store(now, tp, true) {
                        self.events.push_back(Event::Store { tp, at });
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
        let Some(unit) = self.out.remove(&id) else {
            return;
        };
        // Invariant: work out is for its unit's head, which stays until the answer.
        let Some(record) = self.scheduler.head(&unit).cloned() else {
            return;
        };
        let dead_letter = self
            .heads
            .get(&unit)
            .is_some_and(|h| h.dead_letter.is_some());
        match result {
            Ok(Done::Processed(outcome)) => self.processed(now, unit, record, outcome),
            Ok(Done::DeadLettered(result)) => self.dead_lettered(now, unit, record, result),
            Err(failure) if dead_letter => {
                // The write's task ended without a result: nothing says the record went.
                let failure = DeadLetterFailure {
                    cause: crate::error::Cause::Transport,
                    reason: failure.reason,
                };
                self.dead_lettered(now, unit, record, Err(failure));
            }
            Err(failure) => {
                let failure = FailureInfo {
                    stage: Stage::Handler,
                    retriable: failure.retriable,
                    class: "request".to_owned(),
                    message: failure.reason,
                };
                self.processed(now, unit, record, Outcome::Failed(failure));
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

    /// When the next retry or metadata write is due: the table's earliest timer.
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
