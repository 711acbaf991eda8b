//! The policy machine and its driver on a virtual clock. `Sim` feeds the processor's own
//! driver (`policy::driver`) as the `Processor` does, and carries out the work it hands out by
//! answering it as each test says; its `World` is the consumer, hooks and metrics the driver
//! tells. It checks, after every step, that at most one record is out, that offsets are stored
//! one after another (none passed over), that pauses and resumes alternate, and that nothing is
//! asked for a partition the consumer no longer owns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::policy::driver::{Driver, Next, Parts};
use crate::policy::failure::Stage;

const A: (&str, i32) = ("orders", 0);
const B: (&str, i32) = ("orders", 1);

fn tp((topic, partition): (&str, i32)) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn failure(retriable: bool) -> FailureInfo {
    FailureInfo {
        stage: Stage::Handler,
        retriable,
        class: "test".into(),
        message: if retriable { "busy" } else { "poison" }.into(),
    }
}

fn retriable() -> Outcome {
    Outcome::Failed(failure(true))
}

fn permanent() -> Outcome {
    Outcome::Failed(failure(false))
}

/// What is out with the driver.
#[derive(Debug)]
struct Out {
    id: RequestId,
    record: Record,
    attempt: u32,
    dead_letter: bool,
}

/// The consumer, hooks and metrics around the machine, as the driver tells them: it keeps what
/// it was told and checks it.
struct World {
    /// The last offset stored per partition (the record's own).
    stored: BTreeMap<TopicPartition, i64>,
    paused: BTreeMap<TopicPartition, bool>,
    events: Vec<Event>,
    /// The first offset fed per partition.
    first: BTreeMap<TopicPartition, i64>,
    /// Partitions the consumer owns: fed ones, until they leave.
    owned: BTreeSet<TopicPartition>,
    /// Partitions the consumer let go of, not yet taken by the driver.
    leaving: Vec<TopicPartition>,
}

impl World {
    fn owns(&self, what: &dyn std::fmt::Debug, of: &TopicPartition) {
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

    fn store(&mut self, _now: Instant, record: &Record) -> Result<(), crate::Error> {
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
    ) -> Result<(), crate::Error> {
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
    ) -> Result<(), crate::Error> {
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
struct Sim {
    d: Driver,
    w: World,
    now: Instant,
    out: Option<Out>,
    /// Why the last run stopped, not yet looked at.
    stop: Option<Stop>,
}

impl Sim {
    fn new(config: &[(&str, &str)]) -> Sim {
        let mut c = PolicyConfig::default();
        for (n, v) in config {
            c.set(n, v).unwrap();
        }
        c.validate().unwrap();
        Sim {
            d: Driver::new(PolicyMachine::new(&c, 7)),
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
    fn m(&self) -> &PolicyMachine {
        &self.d.machine
    }

    /// Records `offsets` of `at` arrive.
    fn feed(&mut self, at: (&str, i32), offsets: std::ops::Range<i64>) {
        self.w.first.entry(tp(at)).or_insert(offsets.start);
        self.w.owned.insert(tp(at));
        let records = offsets
            .map(|o| Record::new(at.0, at.1, o, None, Some(format!("v{o}").into())))
            .collect();
        self.d.batch(self.now, Ok(records), &mut self.w).unwrap();
        self.drain();
    }

    /// Answers the record out with `outcome`.
    fn answer(&mut self, outcome: Outcome) {
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
    fn answer_all(&mut self, outcome: Outcome) {
        while self.out.is_some() {
            self.answer(outcome.clone());
        }
    }

    /// Answers the dead letter out.
    fn dead_lettered(&mut self, result: Result<(), DeadLetterFailure>) {
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

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.m().poll_timeout().is_some_and(|t| t <= self.now) {
            self.d.timeout(self.now);
        }
        self.drain();
    }

    /// Advances to the next retry; how long that was.
    fn wait_for_retry(&mut self) -> Duration {
        let at = self.m().poll_timeout().expect("a retry is scheduled");
        let by = at.saturating_duration_since(self.now);
        self.advance(by);
        by
    }

    /// The record out: its partition, offset and attempt (0 for a dead letter).
    fn out(&self) -> Option<((&str, i32), i64, u32)> {
        let o = self.out.as_ref()?;
        let at = if o.record.partition == A.1 { A } else { B };
        Some((
            at,
            o.record.offset,
            if o.dead_letter { 0 } else { o.attempt },
        ))
    }

    fn stored(&self, at: (&str, i32)) -> Option<i64> {
        self.w.stored.get(&tp(at)).copied()
    }

    fn is_paused(&self, at: (&str, i32)) -> bool {
        self.w.paused.get(&tp(at)).copied().unwrap_or(false)
    }

    /// Why the last run stopped, once.
    fn take_stop(&mut self) -> Option<Stop> {
        self.stop.take()
    }

    /// `at` leaves the consumer (revoked or lost); the consumer un-pauses it and tells its
    /// leaving hook, which the driver reads at the top of its next turn.
    fn leave(&mut self, at: (&str, i32)) {
        self.w.owned.remove(&tp(at));
        self.w.paused.remove(&tp(at));
        self.w.leaving.push(tp(at));
        self.drain();
    }

    /// The driver runs again (after a stop, or after its run was cancelled with work out).
    fn run_again(&mut self) {
        self.d.start(self.now, &mut self.w).unwrap();
        self.drain();
    }

    /// Closes the breaker.
    fn close_breaker(&mut self) {
        self.d.close_breaker(self.now, &mut self.w).unwrap();
        self.drain();
    }

    /// A turn of the driver, after a wake-up: partitions that left are told, then it goes on.
    fn drain(&mut self) {
        self.d.turn(self.now, &mut self.w);
        self.carry_on();
    }

    /// The driver goes on until it hands out work, stops, or waits.
    fn carry_on(&mut self) {
        match self.d.next(self.now, &mut self.w) {
            Next::Work(out) => {
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
                    matches!(self.d.next(self.now, &mut self.w), Next::Wait),
                    "two records out at once"
                );
            }
            Next::Wait => {}
            Next::Stop(stop) => self.stop = Some(stop),
            Next::Error(e) => panic!("{e}"),
        }
    }
}

#[test]
fn records_are_processed_in_order_and_stored_as_they_are_done() {
    let mut s = Sim::new(&[]);
    s.feed(A, 0..3);
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(0));
    s.feed(A, 3..5);
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(4));
    assert_eq!(
        s.m().counts().snapshot(s.now, false, 0).records_processed,
        5
    );
    assert_eq!(s.m().waiting(), 0);
}

#[test]
fn a_retriable_failure_pauses_only_its_partition_and_is_retried_with_backoff() {
    let mut s = Sim::new(&[
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "1000"),
    ]);
    s.feed(A, 0..2);
    s.answer(retriable());
    assert!(s.is_paused(A));
    assert_eq!(s.out(), None, "A waits; nothing else to do");
    // B flows while A waits.
    s.feed(B, 10..12);
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(B), Some(11));
    assert_eq!(s.stored(A), None);
    let first = s.wait_for_retry();
    assert!((80..=120).contains(&first.as_millis()), "{first:?}");
    assert_eq!(s.out(), Some((A, 0, 2)));
    s.answer(retriable());
    let second = s.wait_for_retry();
    assert!((160..=240).contains(&second.as_millis()), "{second:?}");
    assert_eq!(s.out(), Some((A, 0, 3)));
    s.answer(Outcome::Done);
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(1));
    assert!(!s.is_paused(A), "resumed once nothing of it waits");
    let retries =
        s.w.events
            .iter()
            .filter(|e| matches!(e, Event::Retrying { .. }));
    assert_eq!(retries.count(), 2);
}

#[test]
fn exhausted_retries_make_a_permanent_failure_which_stops_under_tolerance_none() {
    let mut s = Sim::new(&[("errors.retry.max.attempts", "3")]);
    s.feed(A, 0..3);
    s.answer(Outcome::Done);
    for attempt in 2..=3 {
        s.answer(retriable());
        s.wait_for_retry();
        assert_eq!(s.out(), Some((A, 1, attempt)));
    }
    s.answer(retriable());
    let Some(Stop::Failed {
        record, attempts, ..
    }) = s.take_stop()
    else {
        panic!("stops");
    };
    assert_eq!((record.offset, attempts), (1, 3));
    assert_eq!(s.stored(A), Some(0), "nothing past offset 0");
    assert_eq!(s.out(), None);
    // Running again starts at the record, from its first try.
    s.run_again();
    assert_eq!(s.out(), Some((A, 1, 1)));
}

#[test]
fn the_retry_timeout_ends_retries_before_the_attempts_do() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.retry.timeout", "250"),
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "100"),
    ]);
    s.feed(A, 0..1);
    let mut tries = 1;
    while s.out().is_some() {
        s.answer(retriable());
        if s.m().poll_timeout().is_some() {
            s.wait_for_retry();
            tries += 1;
        }
    }
    // Tries at 0, 100, 200 and 300 ms: the fourth fails 300 ms after the first, past 250.
    assert_eq!(tries, 4);
    assert_eq!(s.stored(A), Some(0), "skipped under tolerance all");
    assert!(matches!(s.w.events.last(), Some(Event::Skipped { .. })));
}

#[test]
fn a_poison_record_is_skipped_under_tolerance_all_without_a_dead_letter_topic() {
    let mut s = Sim::new(&[("errors.tolerance", "all")]);
    s.feed(A, 0..3);
    s.answer(Outcome::Done);
    s.answer(permanent());
    assert_eq!(
        s.out(),
        Some((A, 2, 1)),
        "the next record is processed at once"
    );
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(2));
    let m = s.m().counts().snapshot(s.now, false, 0);
    assert_eq!((m.records_processed, m.records_skipped), (2, 1));
}

#[test]
fn a_dead_letter_is_acknowledged_before_its_offset_is_stored() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", "orders.dlq"),
    ]);
    s.feed(A, 0..3);
    s.answer(Outcome::Done);
    s.answer(permanent());
    assert_eq!(s.out(), Some((A, 1, 0)), "the dead letter is out");
    assert_eq!(
        s.stored(A),
        Some(0),
        "not stored before the acknowledgement"
    );
    s.dead_lettered(Ok(()));
    assert_eq!(s.stored(A), Some(1));
    assert_eq!(s.out(), Some((A, 2, 1)));
    assert!(matches!(
        s.w.events.last(),
        Some(Event::DeadLettered { .. })
    ));
}

#[test]
fn a_failed_dead_letter_write_stops_and_is_written_again_on_the_next_run() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", "orders.dlq"),
    ]);
    s.feed(A, 0..2);
    s.answer(permanent());
    s.dead_lettered(Err(DeadLetterFailure {
        cause: crate::Cause::Transport,
        reason: "broker down".into(),
    }));
    assert!(matches!(
        s.take_stop(),
        Some(Stop::DeadLetterFailed { record, .. }) if record.offset == 0
    ));
    assert_eq!(s.stored(A), None);
    assert_eq!(s.out(), None, "nothing more until the driver runs again");
    s.run_again();
    assert_eq!(
        s.out(),
        Some((A, 0, 0)),
        "the dead letter again, not the handler"
    );
    s.dead_lettered(Ok(()));
    assert_eq!(s.stored(A), Some(0));
    let m = s.m().counts().snapshot(s.now, false, 0);
    assert_eq!((m.dead_letter_failures, m.records_dead_lettered), (1, 1));
}

#[test]
fn the_breaker_opens_on_a_burst_and_holds_the_record_that_opened_it() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.breaker.window.records", "10"),
        ("errors.breaker.failures", "2"),
    ]);
    s.feed(A, 0..20);
    for outcome in [Outcome::Done, permanent(), Outcome::Done, permanent()] {
        s.answer(outcome);
    }
    s.answer(permanent());
    assert!(matches!(
        s.take_stop(),
        Some(Stop::BreakerOpen { record, tripped, .. }) if record.offset == 4 && tripped.failures == 3
    ));
    assert_eq!(
        s.stored(A),
        Some(3),
        "the record that opened it is not skipped"
    );
    assert!(s.m().is_open());
    assert_eq!(s.out(), None);
    s.feed(B, 0..1);
    assert_eq!(s.out(), None, "nothing is processed while it is open");
    s.close_breaker();
    assert_eq!(s.out(), Some((A, 4, 1)));
    s.answer_all(Outcome::Done);
    assert_eq!((s.stored(A), s.stored(B)), (Some(19), Some(0)));
}

#[test]
fn scattered_failures_do_not_open_the_breaker() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.breaker.window.records", "10"),
        ("errors.breaker.failures", "2"),
        ("errors.breaker.consecutive.failures", "2"),
    ]);
    s.feed(A, 0..100);
    for i in 0..100 {
        s.answer(if i % 5 == 0 {
            permanent()
        } else {
            Outcome::Done
        });
    }
    assert!(s.take_stop().is_none());
    assert_eq!(s.stored(A), Some(99));
}

#[test]
fn retries_of_two_partitions_come_due_each_at_its_own_time() {
    let mut s = Sim::new(&[
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "1000"),
    ]);
    s.feed(A, 0..1);
    s.answer(retriable());
    s.advance(Duration::from_millis(50));
    s.feed(B, 10..11);
    s.answer(retriable());
    // A's retry (80-120 ms after it failed) comes before B's (80-120 ms after 50 ms).
    let a_due = s.m().poll_timeout().expect("A's retry");
    s.wait_for_retry();
    assert_eq!(s.out(), Some((A, 0, 2)));
    s.answer(Outcome::Done);
    assert!(s.is_paused(B), "B's retry is not due yet");
    let b_due = s.m().poll_timeout().expect("B's retry");
    assert!(b_due > a_due, "{b_due:?} after {a_due:?}");
    s.wait_for_retry();
    assert_eq!(s.out(), Some((B, 10, 2)));
    s.answer(Outcome::Done);
    assert_eq!((s.stored(A), s.stored(B)), (Some(0), Some(10)));
    assert_eq!(s.m().poll_timeout(), None);
}

#[test]
fn a_wake_up_past_several_retries_hands_each_out_in_turn() {
    let mut s = Sim::new(&[
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "1000"),
    ]);
    s.feed(A, 0..1);
    s.answer(retriable());
    s.feed(B, 10..11);
    s.answer(retriable());
    // One timeout, well past both: both retries are due, and go out one at a time.
    s.advance(Duration::from_secs(1));
    assert_eq!(s.out(), Some((A, 0, 2)));
    s.answer(Outcome::Done);
    assert_eq!(s.out(), Some((B, 10, 2)));
    s.answer(Outcome::Done);
    assert_eq!((s.stored(A), s.stored(B)), (Some(0), Some(10)));
    assert_eq!(s.m().poll_timeout(), None);
}

#[test]
fn a_partition_leaving_drops_its_records_its_retry_and_its_answer() {
    let mut s = Sim::new(&[]);
    s.feed(A, 0..3);
    s.answer(retriable());
    s.feed(B, 0..2);
    assert_eq!(s.out(), Some((B, 0, 1)));
    s.leave(A);
    assert_eq!(s.m().poll_timeout(), None, "A's retry is gone");
    s.answer_all(Outcome::Done);
    assert_eq!((s.stored(A), s.stored(B)), (None, Some(1)));
    // B leaves with its record out: the answer that comes late changes nothing.
    s.feed(B, 2..4);
    s.leave(B);
    s.answer(Outcome::Done);
    assert_eq!(s.stored(B), Some(1));
    assert_eq!(s.m().waiting(), 0);
}

#[test]
fn a_retry_coming_due_as_its_partition_leaves_is_dropped_unprocessed() {
    let mut s = Sim::new(&[]);
    s.feed(A, 0..2);
    s.answer(retriable());
    s.feed(B, 0..1);
    s.answer(Outcome::Done);
    // The retry comes due while the consumer is giving A up: the driver hands the machine the
    // timeout, then hears of the leaving before it carries out what the timeout queued.
    s.now = s.m().poll_timeout().expect("A's retry");
    s.d.timeout(s.now);
    s.leave(A);
    assert_eq!(s.out(), None, "A's retry is not handed out");
    assert_eq!((s.stored(A), s.stored(B)), (None, Some(0)));
    assert_eq!((s.m().poll_timeout(), s.m().waiting()), (None, 0));
    // A comes back (assigned again): its records are the new assignment's, from the top.
    s.feed(A, 0..1);
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(0));
}

#[test]
fn a_run_cancelled_with_a_record_out_hands_it_out_again() {
    let mut s = Sim::new(&[]);
    s.feed(A, 0..2);
    assert_eq!(s.out(), Some((A, 0, 1)));
    // The driver's future was dropped mid-handler: the next run restarts the machine.
    s.out = None;
    s.run_again();
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(1));
}
