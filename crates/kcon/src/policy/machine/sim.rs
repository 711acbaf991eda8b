//! The policy machine and its driver on a virtual clock, for the tests (`tests.rs`) and the
//! fuzz target `processor` (the feature `fuzzing`). `Sim` feeds the processor's own
//! driver (`policy::driver`) as the `Processor` does, and carries out the work it hands out by
//! answering it as each test says; its `World` is the consumer, hooks and metrics the driver
//! tells. It checks, after every step, that at most one record is out, that offsets are stored
//! one after another (none passed over), that pauses and resumes alternate, and that nothing is
//! asked for a partition the consumer no longer owns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::policy::driver::{Driver, Parts, Turn};
use crate::policy::failure::Stage;

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
}

/// The consumer, hooks and metrics around the machine, as the driver tells them: it keeps what
/// it was told and checks it.
pub(crate) struct World {
    /// The last offset stored per partition (the record's own).
    pub(crate) stored: BTreeMap<TopicPartition, i64>,
    pub(crate) paused: BTreeMap<TopicPartition, bool>,
    pub(crate) events: Vec<Event>,
    /// The first offset fed per partition.
    pub(crate) first: BTreeMap<TopicPartition, i64>,
    /// Partitions the consumer owns: fed ones, until they leave.
    pub(crate) owned: BTreeSet<TopicPartition>,
    /// Partitions the consumer let go of, not yet taken by the driver.
    pub(crate) leaving: Vec<TopicPartition>,
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
        assert_ne!(
            how,
            Settlement::Released,
            "a consumer's record released: its retries wait in the machine"
        );
        let tp = record.topic_partition();
        self.owns(&("store", record.offset), &tp);
        let expected = match self.stored.get(&tp) {
            None => self.first[&tp],
            Some(last) => last + 1,
        };
        assert_eq!(record.offset, expected, "{tp}: a record was passed over");
        self.stored.insert(tp, record.offset);
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
        self.events.push(Event::Skipped {
            record: record.clone(),
            failure: failure.clone(),
        });
    }

    fn dead_lettered(&mut self, record: &Record, failure: &FailureInfo) {
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

    fn publish(&mut self, _machine: &PolicyMachine, _force: bool) {}
}

/// The driver on a virtual clock: the test carries out the work it hands out, by answering it.
pub(crate) struct Sim {
    pub(crate) d: Driver,
    pub(crate) w: World,
    pub(crate) now: Instant,
    pub(crate) out: Option<Out>,
    /// Why the last run stopped, not yet looked at.
    pub(crate) stop: Option<Stop>,
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
                paused: BTreeMap::new(),
                events: Vec::new(),
                first: BTreeMap::new(),
                owned: BTreeSet::new(),
                leaving: Vec::new(),
            },
            now: Instant::now(),
            out: None,
            stop: None,
        }
    }

    /// The machine.
    pub(crate) fn m(&self) -> &PolicyMachine {
        &self.d.machine
    }

    /// Records `offsets` of `at` arrive.
    pub(crate) fn feed(&mut self, at: (&str, i32), offsets: std::ops::Range<i64>) {
        self.w.first.entry(tp(at)).or_insert(offsets.start);
        self.w.owned.insert(tp(at));
        let records = offsets
            .map(|o| Record::new(at.0, at.1, o, None, Some(format!("v{o}").into())))
            .collect();
        self.d.batch(self.now, Ok(records), &mut self.w).unwrap();
        self.carry_on();
    }

    /// Answers the record out with `outcome`.
    pub(crate) fn answer(&mut self, outcome: Outcome) {
        let out = self.out.take().expect("a record is out");
        assert!(
            !out.dead_letter,
            "a dead letter is out, not a record to process"
        );
        self.d
            .answered(self.now, out.id, Ok(Done::Processed(outcome)), &mut self.w);
        self.carry_on();
    }

    /// Answers every record out with `outcome` until none is.
    pub(crate) fn answer_all(&mut self, outcome: Outcome) {
        while self.out.is_some() {
            self.answer(outcome.clone());
        }
    }

    /// Answers the dead letter out.
    pub(crate) fn dead_lettered(&mut self, result: Result<(), DeadLetterFailure>) {
        let out = self.out.take().expect("a dead letter is out");
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

    /// The record out: its partition, offset and attempt (0 for a dead letter).
    pub(crate) fn out(&self) -> Option<((&str, i32), i64, u32)> {
        let o = self.out.as_ref()?;
        let at = if o.record.partition == A.1 { A } else { B };
        Some((
            at,
            o.record.offset,
            if o.dead_letter { 0 } else { o.attempt },
        ))
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

    /// `at` leaves the consumer (revoked or lost); the consumer un-pauses it and tells its
    /// leaving hook, which the driver reads at the top of its next turn.
    pub(crate) fn leave(&mut self, at: (&str, i32)) {
        self.w.owned.remove(&tp(at));
        self.w.paused.remove(&tp(at));
        self.w.leaving.push(tp(at));
        self.carry_on();
    }

    /// The driver runs again (after a stop, or after its run was cancelled with work out):
    /// the work out when the last run ended is void, asked for again by the new run.
    pub(crate) fn run_again(&mut self) {
        self.out = None;
        self.d.call(self.now, &mut self.w).unwrap();
        self.carry_on();
    }

    /// Closes the breaker.
    pub(crate) fn close_breaker(&mut self) {
        self.d.close_breaker(self.now, &mut self.w).unwrap();
        self.carry_on();
    }

    /// A turn of the driver (after a wake-up, or an answer): partitions that left are told,
    /// then it goes on until it hands out work, stops, or waits.
    pub(crate) fn carry_on(&mut self) {
        match self.d.turn(self.now, &mut self.w) {
            Turn::Step(out) => {
                let record = out.request.record().clone();
                self.w.owns(&out.request, &record.topic_partition());
                assert!(self.out.is_none(), "two records out at once");
                let (attempt, dead_letter) = match out.request {
                    Work::Process { attempt, .. } => (attempt, false),
                    Work::DeadLetter { .. } => (0, true),
                };
                self.out = Some(Out {
                    id: out.id,
                    record,
                    attempt,
                    dead_letter,
                });
                assert!(
                    matches!(self.d.turn(self.now, &mut self.w), Turn::Wait),
                    "two records out at once"
                );
            }
            Turn::Wait => {}
            Turn::Stop(stop) => self.stop = Some(stop),
            Turn::Error(e) => panic!("{e}"),
        }
    }
}
