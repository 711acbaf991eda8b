//! The record processor's driver, sans-IO: what a run does with each input (partitions the
//! consumer let go of, a fetched batch, a retry coming due, the answer to the work out), how the
//! machine's events reach the parts ([`Parts`], one method per thing a part can be told), when
//! the run stops, and what an open breaker pauses and its closing resumes.
//!
//! Two shells feed it. The [`Processor`](crate::Processor) carries out the work it hands out
//! (deserialize and call the handler, or write a dead letter) and waits for the next input (the
//! consumer's next batch, a sleep until the machine's `poll_timeout`, the stop future), with its
//! parts the consumer, the hooks and the metrics handle; the machine's simulation
//! (`machine/tests.rs`) feeds the same code on a virtual clock, answering the work itself. Neither
//! copies any of it: a new event is a new method of [`Parts`], which each must implement before
//! it compiles.
//!
//! It has the shape of the consumer's and the share consumer's drivers: [`call`](Driver::call)
//! when a call (a run) starts, [`turn`](Driver::turn) before the call goes on or waits, saying
//! what it does next as a [`Turn`] whose variants mean what theirs do (`Step`: work is out,
//! carry it out and hand in the answer; `Wait`: wait for the next input; `Error`: return it),
//! [`answered`](Driver::answered) and [`timeout`](Driver::timeout) for the inputs.
//!
//! ```text
//!   call ─► turn ─┬─ Step ──► the shell carries it out ─► answered ─► turn
//!            ▲    ├─ Stop / Error ──────────────────────────────────► the run returns
//!            │    └─ Wait ──► the shell waits for one input:
//!            └──────────────── batch | timeout (poll_timeout) | stop future
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kcon_core::group_offsets::OffsetAndMetadata;
use kcon_core::{Machine, Outgoing, RequestFailure, RequestId, TopicPartition};
use tracing::{debug, warn};

use super::failure::FailureInfo;
use super::machine::{Done, Event, PolicyMachine, Settlement, Stop, Work};
use super::progress::FinishedAbove;
use super::settled::{Settled, SettledWarnings};
use crate::error::{Error, ErrorKind};
use crate::record::Record;

/// The parts around the policy machine: the record source (a consumer it stores offsets with
/// and pauses, or a share consumer it settles records with), the hooks, the metrics handle. One method per thing a part can be told; none has a default, so
/// a new event fails to compile in every implementation until it says what it does.
///
/// Two implementations: the `Processor`'s (the consumer, its hooks and metrics handle) and the
/// simulation's (`machine/tests.rs`).
pub(crate) trait Parts {
    // ----- the record source -----

    /// The partitions the consumer let go of since it was last asked (its leaving hook).
    fn take_leaving(&mut self) -> Vec<TopicPartition>;
    /// The partitions the consumer began revoking since it was last asked, holding the
    /// revocation until they are released.
    fn take_revoking(&mut self) -> Vec<TopicPartition>;
    /// The processor is done with these partitions revoking: their records are finished or
    /// dropped, and their offsets stored.
    fn released(&mut self, partitions: &[TopicPartition]);
    /// The partitions the consumer owns.
    fn assignment(&self) -> BTreeSet<TopicPartition>;
    /// The partitions the consumer has paused.
    fn paused(&self) -> BTreeSet<TopicPartition>;
    /// Settle a share group's `record` as `how` says: accept, reject or release it.
    fn settle(&mut self, now: Instant, record: &Record, how: Settlement) -> Result<(), Error>;
    /// The offset `tp` started at when it was last assigned and the metadata committed with
    /// it, once, when not empty.
    fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)>;
    /// Store `at` for a consumer's partition `tp`: its lowest record not done with, and the
    /// records done with above it in the metadata (in the exactly-once mode, the offset goes
    /// in the open transaction).
    fn store(
        &mut self,
        now: Instant,
        tp: TopicPartition,
        at: OffsetAndMetadata,
    ) -> Result<(), Error>;
    /// Pause these partitions.
    fn pause(&mut self, now: Instant, partitions: Vec<TopicPartition>) -> Result<(), Error>;
    /// Resume these partitions.
    fn resume(&mut self, now: Instant, partitions: Vec<TopicPartition>) -> Result<(), Error>;

    // ----- the hooks -----

    /// Try `attempt` of `record` failed retriably; the next is in `delay`.
    fn retrying(&mut self, record: &Record, failure: &FailureInfo, attempt: u32, delay: Duration);
    /// `record` failed for good and was skipped.
    fn skipped(&mut self, record: &Record, failure: &FailureInfo);
    /// `record` failed for good and the dead-letter topic acknowledged it.
    fn dead_lettered(&mut self, record: &Record, failure: &FailureInfo);
    /// `record`'s failure opened the breaker.
    fn breaker_opened(&mut self, record: &Record, failure: &FailureInfo);
    /// `tp`'s metadata names the records done with above its offset only up to `named`.
    fn metadata_cut(&mut self, tp: &TopicPartition, named: i64);

    // ----- the metrics handle -----

    /// Publish the machine's counts: at once when `force`, else when due.
    fn publish(&mut self, machine: &PolicyMachine, force: bool);
}

/// What a run does next ([`Driver::turn`]).
#[derive(Debug)]
pub(crate) enum Turn {
    /// Work is out: carry it out and hand in its answer ([`Driver::answered`]), then turn
    /// again.
    Step(Outgoing<Work, ()>),
    /// Nothing to do: wait for the consumer's next batch, the machine's `poll_timeout`, or the
    /// stop future.
    Wait,
    /// The run stops: nothing past the record was stored.
    Stop(Stop),
    /// The run fails with a part's error (the consumer refused a store, a pause or a resume).
    Error(Error),
}

/// The policy machine and what its driver keeps between runs.
#[derive(Debug)]
pub(crate) struct Driver {
    /// The machine (its queries are made on it directly).
    pub(crate) machine: PolicyMachine,
    /// Partitions paused when the breaker opened, resumed when it closes.
    breaker_paused: BTreeSet<TopicPartition>,
    /// The WARN lines of skipped and dead-lettered records, rate-limited.
    warnings: SettledWarnings,
}

impl Driver {
    /// Drives `machine`.
    pub(crate) fn new(machine: PolicyMachine) -> Driver {
        Driver {
            machine,
            breaker_paused: BTreeSet::new(),
            warnings: SettledWarnings::default(),
        }
    }

    /// A run starts: refused while the breaker is open; partitions that left meanwhile are
    /// told, then the work out when the last run ended (stopped, or cancelled mid-record) is
    /// asked for again.
    pub(crate) fn call<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Result<(), Error> {
        if self.machine.is_open() {
            return Err(Error::new(
                ErrorKind::CircuitOpen,
                "the circuit breaker is open: close it (close_breaker) before running again",
            ));
        }
        self.forget_leaving(now, parts);
        self.machine.restart(now);
        Ok(())
    }

    /// One turn of a run: partitions the consumer let go of meanwhile are told first, then the
    /// machine's events are carried out in order (stores, pauses, resumes, what the hooks
    /// hear), and the turn says what the run does next: the work to carry out, a stop, a
    /// part's error, or wait.
    ///
    /// Leaving partitions come first because a retry coming due can cancel a `recv_batch` that
    /// had already started a revocation (told the leaving hook, then awaited the listener or
    /// the commit): a record of a revoked partition carried out now would be processed here
    /// while its next owner reads it too, and its offset could not be stored.
    pub(crate) fn turn<P: Parts>(&mut self, now: Instant, parts: &mut P) -> Turn {
        self.forget_leaving(now, parts);
        while let Some(event) = self.machine.poll_event() {
            let told = match event {
                Event::Settle { record, how } => parts.settle(now, &record, how),
                Event::Store { tp, at } => parts.store(now, tp, at),
                Event::Pause(tp) => parts.pause(now, vec![tp]),
                Event::Resume(tp) => parts.resume(now, vec![tp]),
                Event::Retrying {
                    record,
                    failure,
                    attempt,
                    delay,
                } => {
                    debug!(topic = %record.topic, partition = record.partition, offset = record.offset, attempt, ?delay, "retrying: {failure}");
                    parts.retrying(&record, &failure, attempt, delay);
                    Ok(())
                }
                Event::Skipped { record, failure } => {
                    self.warnings.note(now, Settled::Skipped, &record, &failure);
                    parts.skipped(&record, &failure);
                    Ok(())
                }
                Event::DeadLettered { record, failure } => {
                    self.warnings
                        .note(now, Settled::DeadLettered, &record, &failure);
                    parts.dead_lettered(&record, &failure);
                    Ok(())
                }
                Event::BreakerOpened { record, failure } => {
                    warn!(topic = %record.topic, partition = record.partition, offset = record.offset, "circuit breaker opened: {failure}");
                    parts.breaker_opened(&record, &failure);
                    Ok(())
                }
                Event::Stop(stop) => {
                    if matches!(stop, Stop::BreakerOpen { .. }) {
                        self.pause_all(now, parts);
                    }
                    self.release(parts);
                    parts.publish(&self.machine, true);
                    return Turn::Stop(stop);
                }
            };
            if let Err(e) = told {
                return Turn::Error(e);
            }
            parts.publish(&self.machine, false);
        }
        // After the stores of the partitions released were carried out.
        self.release(parts);
        self.tell_cuts(parts);
        match self.machine.poll_request(now) {
            Some(out) => Turn::Step(out),
            None => {
                // Published at once when nothing runs; while records run it is due again at
                // their answers.
                parts.publish(&self.machine, self.machine.running() == 0);
                Turn::Wait
            }
        }
    }

    /// The work `id` was carried out (or could not be).
    pub(crate) fn answered<P: Parts>(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Done, RequestFailure>,
        parts: &mut P,
    ) {
        self.machine.handle_response(now, id, result);
        parts.publish(&self.machine, false);
    }

    /// A commit is about to be made: the metadata of partitions whose records finished above
    /// their stored offset since it was last written is written now, so that the commit
    /// names them.
    pub(crate) fn before_commit<P: Parts>(
        &mut self,
        now: Instant,
        parts: &mut P,
    ) -> Result<(), Error> {
        for (tp, at) in self.machine.store_metadata(now) {
            parts.store(now, tp, at)?;
        }
        self.tell_cuts(parts);
        Ok(())
    }

    /// The machine's `poll_timeout` passed: retries due become ready.
    pub(crate) fn timeout(&mut self, now: Instant) {
        self.machine.handle_timeout(now);
    }

    /// The source's receiving call returned: partitions it let go of during the call are
    /// told before the batch (which may belong to a partition assigned again after leaving, and
    /// must not be dropped with the old lane), then the batch's records of each partition in
    /// order (a consumer's batch is one partition's; a share consumer's may hold several), or
    /// the call's error.
    pub(crate) fn batch<P: Parts>(
        &mut self,
        now: Instant,
        batch: Result<Vec<Record>, Error>,
        parts: &mut P,
    ) -> Result<(), Error> {
        self.forget_leaving(now, parts);
        let mut records = batch?.into_iter().peekable();
        while let Some(first) = records.next() {
            let tp = first.topic_partition();
            let mut run = vec![first];
            while let Some(next) =
                records.next_if(|r| r.partition == tp.partition && *r.topic == *tp.topic)
            {
                run.push(next);
            }
            // The partition was assigned with metadata: the records it names as done with
            // above the committed offset are passed over.
            if let Some((committed, metadata)) = parts.take_committed_metadata(&tp) {
                match FinishedAbove::read(committed, &metadata) {
                    Ok(Some(above)) => self.machine.done_before(tp.clone(), above),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(topic = %tp.topic, partition = tp.partition, committed, "{}: every record from the committed offset is processed", e.0)
                    }
                }
            }
            self.machine.records(now, tp, run);
        }
        Ok(())
    }

    /// Closes the breaker after it opened: its counts start afresh, and the partitions it
    /// paused resume, those still owned and not waiting for a retry.
    pub(crate) fn close_breaker<P: Parts>(
        &mut self,
        now: Instant,
        parts: &mut P,
    ) -> Result<(), Error> {
        self.machine.close_breaker(now);
        let waiting: BTreeSet<TopicPartition> = self.machine.paused().cloned().collect();
        let owned = parts.assignment();
        let resume: Vec<TopicPartition> = std::mem::take(&mut self.breaker_paused)
            .into_iter()
            .filter(|tp| owned.contains(tp) && !waiting.contains(tp))
            .collect();
        parts.resume(now, resume)?;
        parts.publish(&self.machine, true);
        Ok(())
    }

    /// An aborted transaction put these partitions back to its first record of each: the
    /// machine forgets what it holds of them (they come again from the consumer), and those a
    /// retry had paused resume (not those the open breaker paused).
    pub(crate) fn rewound<P: Parts>(
        &mut self,
        now: Instant,
        partitions: &[TopicPartition],
        parts: &mut P,
    ) -> Result<(), Error> {
        self.machine.leaving(now, partitions);
        let (paused, owned) = (parts.paused(), parts.assignment());
        let resume: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| {
                paused.contains(*tp) && owned.contains(*tp) && !self.breaker_paused.contains(*tp)
            })
            .cloned()
            .collect();
        parts.resume(now, resume)?;
        parts.publish(&self.machine, true);
        Ok(())
    }

    /// Tells the machine of partitions the consumer began revoking, then of those it let go
    /// of.
    fn forget_leaving<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        let revoking = parts.take_revoking();
        if !revoking.is_empty() {
            self.machine.revoking(now, &revoking);
        }
        let gone = parts.take_leaving();
        if gone.is_empty() {
            return;
        }
        for tp in &gone {
            self.breaker_paused.remove(tp);
        }
        self.machine.leaving(now, &gone);
    }

    /// Tells the hooks of metadata cut short since the last turn (a WARN line each).
    fn tell_cuts<P: Parts>(&mut self, parts: &mut P) {
        for (tp, named) in self.machine.take_cuts() {
            warn!(topic = %tp.topic, partition = tp.partition, named, "the records done with above the committed offset no longer all fit in the commit's metadata (4,096 bytes): a restart processes those past {named} again");
            parts.metadata_cut(&tp, named);
        }
    }

    /// Releases the partitions revoking the machine is done with.
    fn release<P: Parts>(&mut self, parts: &mut P) {
        let released = self.machine.take_released();
        if !released.is_empty() {
            debug!(
                ?released,
                "the records of the partitions revoking are done with"
            );
            parts.released(&released);
        }
    }

    /// The breaker opened: every owned partition not paused already is paused until it closes.
    fn pause_all<P: Parts>(&mut self, now: Instant, parts: &mut P) {
        let paused = parts.paused();
        let pause: Vec<TopicPartition> = parts
            .assignment()
            .into_iter()
            .filter(|tp| !paused.contains(tp))
            .collect();
        self.breaker_paused.extend(pause.iter().cloned());
        if let Err(e) = parts.pause(now, pause) {
            warn!("pausing every partition for the open breaker failed: {e}");
        }
    }
}
