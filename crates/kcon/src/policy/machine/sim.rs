//! The policy machine and its driver on a virtual clock, for the tests (`tests.rs`) and the
//! fuzz target `processor` (the feature `fuzzing`). `Sim` feeds the processor's own
//! driver (`policy::driver`) as the `Processor` does, and carries out the work it hands out by
//! answering it as each test says; its `World` is the consumer, hooks and metrics the driver
//! tells. It checks, after every step, that at most `processing.max.concurrency` records are
//! out and never two of one ordering unit, that a stored offset never passes a record not done
//! with and never goes back, that pauses and resumes alternate, and that nothing is asked for a
//! partition the consumer no longer owns.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::*;
use crate::policy::driver::{Driver, Parts, Turn};
use crate::policy::failure::Stage;
use crate::policy::ordering::{Ordering, Unit};

pub(crate) const A: (&str, i32) = ("orders", 0);
pub(crate) const B: (&str, i32) = ("orders", 1);

pub(crate) fn tp((topic, partition): (&str, i32)) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

pub(crate) fn failure(retriable: bool) -> FailureInfo {
    FailureInfo {
        stage: Stage::Handler,
        retriable,
        class: "test".into(),
        message: if retriable { "busy" } else { "poison" }.into(),
    }
}

pub(crate) fn retriable() -> Outcome {
    Outcome::Failed(failure(true))
}

pub(crate) fn permanent() -> Outcome {
    Outcome::Failed(failure(false))
}

/// What is out with the driver.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) id: RequestId,
    pub(crate) record: Record,
    pub(crate) attempt: u32,
    pub(crate) dead_letter: bool,
    /// Its partition left after it went out: its answer changes nothing.
    pub(crate) void: bool,
}

/// The consumer, hooks and metrics around the machine, as the driver tells them: it keeps what
/// it was told and checks it.
pub(crate) struct World {
    /// The last offset stored per partition, as the record's own (the stored offset less
    /// one).
    pub(crate) stored: BTreeMap<TopicPartition, i64>,
    /// The metadata last stored per partition.
    pub(crate) metadata: BTreeMap<TopicPartition, String>,
    /// The offset last stored per partition since the consumer took it.
    pub(crate) owned_stores: BTreeMap<TopicPartition, i64>,
    /// Metadata cut short: the partition, and up to where it names records done with.
    pub(crate) cuts: Vec<(TopicPartition, i64)>,
    /// The offsets fed per partition.
    pub(crate) fed: BTreeMap<TopicPartition, BTreeSet<i64>>,
    /// The records done with per partition: processed, skipped or dead-lettered.
    pub(crate) done: BTreeMap<TopicPartition, BTreeSet<i64>>,
    /// The offset each partition was assigned at and the metadata committed with it, until
    /// the driver takes it.
    pub(crate) committed: BTreeMap<TopicPartition, (i64, String)>,
    pub(crate) paused: BTreeMap<TopicPartition, bool>,
    pub(crate) events: Vec<Event>,
    /// The first offset fed per partition.
    pub(crate) first: BTreeMap<TopicPartition, i64>,
    /// Partitions the consumer owns: fed ones, until they leave.
    pub(crate) owned: BTreeSet<TopicPartition>,
    /// Partitions the consumer let go of, not yet taken by the driver.
    pub(crate) leaving: Vec<TopicPartition>,
    /// Partitions the consumer began revoking, not yet taken by the driver.
    pub(crate) revoking: Vec<TopicPartition>,
    /// Partitions revoking and not yet released.
    pub(crate) held: BTreeSet<TopicPartition>,
}

impl World {
    pub(crate) fn owns(&self, what: &dyn std::fmt::Debug, of: &TopicPartition) {
        assert!(
            self.owned.contains(of),
            "{what:?} for {of}, which the consumer does not own"
        );
    }
}

impl Parts for World {
    fn take_leaving(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.leaving)
    }

    fn take_revoking(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut self.revoking)
    }

    fn released(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            assert!(
                self.held.remove(tp),
                "{tp} released, not revoking or released twice"
            );
        }
    }

    fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.owned.clone()
    }

    fn paused(&self) -> BTreeSet<TopicPartition> {
        self.paused
            .iter()
            .filter(|(_, p)| **p)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn settle(
        &mut self,
        _now: Instant,
        record: &Record,
        how: Settlement,
    ) -> Result<(), crate::error::Error> {
        panic!(
            "a consumer's record {} settled {how:?}: its partition's offset is stored",
            record.offset
        );
    }

    fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)> {
        self.committed.remove(tp)
    }

    fn store(
        &mut self,
        _now: Instant,
        tp: TopicPartition,
        at: crate::OffsetAndMetadata,
    ) -> Result<(), crate::error::Error> {
        self.owns(&("store", at.offset), &tp);
        let fed = self.fed.get(&tp).cloned().unwrap_or_default();
        let done = self.done.get(&tp).cloned().unwrap_or_default();
        if let Some(missed) = fed.range(..at.offset).find(|o| !done.contains(o)) {
            panic!("{tp}: {} stored past {missed}, not done with", at.offset);
        }
        if let Some(&before) = self.owned_stores.get(&tp) {
            assert!(
                at.offset >= before,
                "{tp}: {} stored after {before}",
                at.offset
            );
        }
        self.owned_stores.insert(tp.clone(), at.offset);
        // What the metadata says was done with above the offset was.
        if let Ok(Some(above)) =
            crate::policy::progress::FinishedAbove::read(at.offset, &at.metadata)
        {
            for o in fed.range(at.offset..) {
                assert!(
                    !above.contains(*o) || done.contains(o),
                    "{tp}: the metadata of {} names {o}, not done with",
                    at.offset
                );
            }
        }
        self.stored.insert(tp.clone(), at.offset - 1);
        self.metadata.insert(tp, at.metadata);
        Ok(())
    }

    fn pause(
        &mut self,
        _now: Instant,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), crate::error::Error> {
        for tp in partitions {
            self.owns(&"pause", &tp);
            assert_ne!(self.paused.insert(tp, true), Some(true), "paused twice");
        }
        Ok(())
    }

    fn resume(
        &mut self,
        _now: Instant,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), crate::error::Error> {
        for tp in partitions {
            self.owns(&"resume", &tp);
            assert_eq!(
                self.paused.insert(tp, false),
                Some(true),
                "resumed unpaused"
            );
        }
        Ok(())
    }

    fn retrying(&mut self, record: &Record, failure: &FailureInfo, attempt: u32, delay: Duration) {
        self.events.push(Event::Retrying {
            record: record.clone(),
            failure: failure.clone(),
            attempt,
            delay,
        });
    }

    fn skipped(&mut self, record: &Record, failure: &FailureInfo) {
        self.done
            .entry(record.topic_partition())
            .or_default()
            .insert(record.offset);
        self.events.push(Event::Skipped {
            record: record.clone(),
            failure: failure.clone(),
        });
    }

    fn dead_lettered(&mut self, record: &Record, failure: &FailureInfo) {
        self.done
            .entry(record.topic_partition())
            .or_default()
            .insert(record.offset);
        self.events.push(Event::DeadLettered {
            record: record.clone(),
            failure: failure.clone(),
        });
    }

    fn breaker_opened(&mut self, record: &Record, failure: &FailureInfo) {
        self.events.push(Event::BreakerOpened {
            record: record.clone(),
            failure: failure.clone(),
        });
    }

    fn metadata_cut(&mut self, tp: &TopicPartition, named: i64) {
        self.cuts.push((tp.clone(), named));
    }

    fn publish(&mut self, _machine: &PolicyMachine, _force: bool) {}
}

/// The driver on a virtual clock: the test carries out the work it hands out, by answering it.
pub(crate) struct Sim {
    pub(crate) d: Driver,
    pub(crate) w: World,
    pub(crate) now: Instant,
    /// The work out, oldest first.
    pub(crate) outs: VecDeque<Out>,
    /// Why the last run stopped, not yet looked at.
    pub(crate) stop: Option<Stop>,
    ordering: Ordering,
    max_running: usize,
    /// The offset each unit last started, while its partition is owned.
    started: BTreeMap<Unit, i64>,
}

impl Sim {
    pub(crate) fn new(config: &[(&str, &str)]) -> Sim {
        let mut c = PolicyConfig::default();
        for (n, v) in config {
            c.set(n, v).unwrap();
        }
        c.validate().unwrap();
        Sim {
            d: Driver::new(PolicyMachine::new(&c, Delivery::Partitions, 7)),
            w: World {
                stored: BTreeMap::new(),
                metadata: BTreeMap::new(),
                owned_stores: BTreeMap::new(),
                cuts: Vec::new(),
                fed: BTreeMap::new(),
                done: BTreeMap::new(),
                committed: BTreeMap::new(),
                paused: BTreeMap::new(),
                events: Vec::new(),
                first: BTreeMap::new(),
                owned: BTreeSet::new(),
                leaving: Vec::new(),
                revoking: Vec::new(),
                held: BTreeSet::new(),
            },
            now: Instant::now(),
            outs: VecDeque::new(),
            stop: None,
            ordering: c.ordering,
            max_running: c.max_concurrency,
            started: BTreeMap::new(),
        }
    }

    /// The machine.
    pub(crate) fn m(&self) -> &PolicyMachine {
        &self.d.machine
    }

    /// Records `offsets` of `at` arrive, without keys.
    pub(crate) fn feed(&mut self, at: (&str, i32), offsets: std::ops::Range<i64>) {
        self.feed_keyed(at, offsets.map(|o| (o, None)));
    }

    /// Records of `at` arrive: (offset, key).
    pub(crate) fn feed_keyed(
        &mut self,
        at: (&str, i32),
        records: impl IntoIterator<Item = (i64, Option<&'static str>)>,
    ) {
        let records: Vec<Record> = records
            .into_iter()
            .map(|(o, key)| {
                let key = key.map(|k| bytes::Bytes::from_static(k.as_bytes()));
                Record::new(at.0, at.1, o, key, Some(format!("v{o}").into()))
            })
            .collect();
        let Some(first) = records.first() else {
            return;
        };
        self.w.first.entry(tp(at)).or_insert(first.offset);
        self.w.owned.insert(tp(at));
        let fed = self.w.fed.entry(tp(at)).or_default();
        fed.extend(records.iter().map(|r| r.offset));
        self.d.batch(self.now, Ok(records), &mut self.w).unwrap();
        self.carry_on();
    }

    /// Answers the oldest record out with `outcome`.
    pub(crate) fn answer(&mut self, outcome: Outcome) {
        let out = self.outs.pop_front().expect("a record is out");
        self.answer_out(out, outcome);
    }

    /// Answers the record out at `offset` of `at` with `outcome`.
    pub(crate) fn answer_at(&mut self, at: (&str, i32), offset: i64, outcome: Outcome) {
        let i = self
            .outs
            .iter()
            .position(|o| o.record.topic_partition() == tp(at) && o.record.offset == offset)
            .unwrap_or_else(|| panic!("{offset} of {at:?} is not out"));
        let out = self.outs.remove(i).expect("found above");
        self.answer_out(out, outcome);
    }

    fn answer_out(&mut self, out: Out, outcome: Outcome) {
        assert!(
            !out.dead_letter,
            "a dead letter is out, not a record to process"
        );
        let tp = out.record.topic_partition();
        if outcome == Outcome::Done && !out.void {
            self.w.done.entry(tp).or_default().insert(out.record.offset);
        }
        self.d
            .answered(self.now, out.id, Ok(Done::Processed(outcome)), &mut self.w);
        self.carry_on();
    }

    /// Answers every record out with `outcome` until none is.
    pub(crate) fn answer_all(&mut self, outcome: Outcome) {
        while !self.outs.is_empty() {
            self.answer(outcome.clone());
        }
    }

    /// Answers the oldest work out, a dead letter.
    pub(crate) fn dead_lettered(&mut self, result: Result<(), DeadLetterFailure>) {
        let out = self.outs.pop_front().expect("a dead letter is out");
        assert!(
            out.dead_letter,
            "a record to process is out, not a dead letter"
        );
        self.d.answered(
            self.now,
            out.id,
            Ok(Done::DeadLettered(result)),
            &mut self.w,
        );
        self.carry_on();
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.m().poll_timeout().is_some_and(|t| t <= self.now) {
            self.d.timeout(self.now);
        }
        self.carry_on();
    }

    /// Advances to the next retry; how long that was.
    pub(crate) fn wait_for_retry(&mut self) -> Duration {
        let at = self.m().poll_timeout().expect("a retry is scheduled");
        let by = at.saturating_duration_since(self.now);
        self.advance(by);
        by
    }

    /// The oldest record out: its partition, offset and attempt (0 for a dead letter).
    pub(crate) fn out(&self) -> Option<((&str, i32), i64, u32)> {
        self.outs.front().map(describe)
    }

    /// Every record out, oldest first, as [`out`](Self::out) describes them.
    pub(crate) fn all_out(&self) -> Vec<((&str, i32), i64, u32)> {
        self.outs.iter().map(describe).collect()
    }

    pub(crate) fn stored(&self, at: (&str, i32)) -> Option<i64> {
        self.w.stored.get(&tp(at)).copied()
    }

    pub(crate) fn is_paused(&self, at: (&str, i32)) -> bool {
        self.w.paused.get(&tp(at)).copied().unwrap_or(false)
    }

    /// Why the last run stopped, once.
    pub(crate) fn take_stop(&mut self) -> Option<Stop> {
        self.stop.take()
    }

    /// The consumer begins revoking `at` and holds the revocation until the driver releases
    /// it (then `leave` lets it go).
    pub(crate) fn revoke(&mut self, at: (&str, i32)) {
        self.w.revoking.push(tp(at));
        self.w.held.insert(tp(at));
        self.carry_on();
    }

    /// `at` leaves the consumer (revoked or lost); the consumer un-pauses it and tells its
    /// leaving hook, which the driver reads at the top of its next turn.
    pub(crate) fn leave(&mut self, at: (&str, i32)) {
        self.w.owned.remove(&tp(at));
        self.w.paused.remove(&tp(at));
        self.w.leaving.push(tp(at));
        self.w.fed.remove(&tp(at));
        self.w.done.remove(&tp(at));
        self.w.owned_stores.remove(&tp(at));
        for out in &mut self.outs {
            out.void |= out.record.topic_partition() == tp(at);
        }
        self.started.retain(|u, _| *u.partition() != tp(at));
        self.carry_on();
    }

    /// The driver runs again (after a stop, or after its run was cancelled with work out):
    /// the work out when the last run ended is void, asked for again by the new run.
    pub(crate) fn run_again(&mut self) {
        self.outs.clear();
        self.d.call(self.now, &mut self.w).unwrap();
        self.carry_on();
    }

    /// Closes the breaker.
    pub(crate) fn close_breaker(&mut self) {
        self.d.close_breaker(self.now, &mut self.w).unwrap();
        self.carry_on();
    }

    /// Turns of the driver (after a wake-up, or an answer): partitions that left are told,
    /// then it goes on handing out work until it stops or waits.
    pub(crate) fn carry_on(&mut self) {
        loop {
            match self.d.turn(self.now, &mut self.w) {
                Turn::Step(out) => {
                    let record = out.request.record().clone();
                    let tp = record.topic_partition();
                    self.w.owns(&out.request, &tp);
                    let (attempt, dead_letter) = match out.request {
                        Work::Process { attempt, .. } => (attempt, false),
                        Work::DeadLetter { .. } => (0, true),
                    };
                    let unit = self.ordering.unit(&record);
                    let owned_out = self.outs.iter().filter(|o| !o.void);
                    assert!(
                        owned_out.clone().count() < self.max_running,
                        "more than {} records out at once",
                        self.max_running
                    );
                    assert!(
                        owned_out
                            .clone()
                            .all(|o| self.ordering.unit(&o.record) != unit),
                        "two records of {unit:?} out at once"
                    );
                    if let Some(&last) = self.started.get(&unit) {
                        assert!(
                            record.offset >= last,
                            "{unit:?} started {} after {last}",
                            record.offset
                        );
                    }
                    self.started.insert(unit, record.offset);
                    self.outs.push_back(Out {
                        id: out.id,
                        record,
                        attempt,
                        dead_letter,
                        void: false,
                    });
                }
                Turn::Wait => return,
                Turn::Stop(stop) => {
                    self.stop = Some(stop);
                    return;
                }
                Turn::Error(e) => panic!("{e}"),
            }
        }
    }
}

/// What a test reads of work out: its partition, offset and attempt (0 for a dead letter).
fn describe(o: &Out) -> ((&'static str, i32), i64, u32) {
    let at = if o.record.partition == A.1 { A } else { B };
    (
        at,
        o.record.offset,
        if o.dead_letter { 0 } else { o.attempt },
    )
}

impl Sim {
    /// Answers the work out at `index` (of [`all_out`](Self::all_out)): a record to process
    /// with `outcome`, a dead letter as acknowledged.
    pub(crate) fn answer_index(&mut self, index: usize, outcome: Outcome) {
        let Some(out) = self.outs.remove(index) else {
            return;
        };
        if !out.dead_letter {
            return self.answer_out(out, outcome);
        }
        self.d.answered(
            self.now,
            out.id,
            Ok(Done::DeadLettered(Ok(()))),
            &mut self.w,
        );
        self.carry_on();
    }
}
