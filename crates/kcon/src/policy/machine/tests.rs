//! The policy machine on a virtual clock. `Sim` plays the driver: it keeps what the machine
//! asked for and checks, after every step, that at most one record is out, that offsets are
//! stored one after another (none passed over), that pauses and resumes alternate, and that
//! nothing is asked for a partition the consumer no longer owns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
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
    record: Record,
    attempt: u32,
    dead_letter: bool,
}

struct Sim {
    m: PolicyMachine,
    now: Instant,
    /// The last offset stored per partition (the record's own).
    stored: BTreeMap<TopicPartition, i64>,
    out: Option<Out>,
    paused: BTreeMap<TopicPartition, bool>,
    events: Vec<Event>,
    /// The first offset fed per partition.
    first: BTreeMap<TopicPartition, i64>,
    /// Partitions the consumer owns: fed ones, until they leave.
    owned: BTreeSet<TopicPartition>,
}

impl Sim {
    fn new(config: &[(&str, &str)]) -> Sim {
        let mut c = PolicyConfig::default();
        for (n, v) in config {
            c.set(n, v).unwrap();
        }
        c.validate().unwrap();
        Sim {
            m: PolicyMachine::new(&c, 7),
            now: Instant::now(),
            stored: BTreeMap::new(),
            out: None,
            paused: BTreeMap::new(),
            events: Vec::new(),
            first: BTreeMap::new(),
            owned: BTreeSet::new(),
        }
    }

    /// Records `offsets` of `at` arrive.
    fn feed(&mut self, at: (&str, i32), offsets: std::ops::Range<i64>) {
        self.first.entry(tp(at)).or_insert(offsets.start);
        self.owned.insert(tp(at));
        let records = offsets
            .map(|o| Record::new(at.0, at.1, o, None, Some(format!("v{o}").into())))
            .collect();
        self.m.records(self.now, tp(at), records);
        self.drain();
    }

    /// Answers the record out with `outcome`.
    fn answer(&mut self, outcome: Outcome) {
        let out = self.out.take().expect("a record is out");
        assert!(
            !out.dead_letter,
            "a dead letter is out, not a record to process"
        );
        self.m.processed(self.now, outcome);
        self.drain();
    }

    /// Answers every record out with `outcome` until none is.
    fn answer_all(&mut self, outcome: Outcome) {
        while self.out.is_some() {
            self.answer(outcome.clone());
        }
    }

    /// Answers the dead letter out.
    fn dead_lettered(&mut self, result: Result<(), String>) {
        let out = self.out.take().expect("a dead letter is out");
        assert!(
            out.dead_letter,
            "a record to process is out, not a dead letter"
        );
        self.m.dead_lettered(self.now, result);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.m.poll_timeout().is_some_and(|t| t <= self.now) {
            self.m.handle_timeout(self.now);
        }
        self.drain();
    }

    /// Advances to the next retry; how long that was.
    fn wait_for_retry(&mut self) -> Duration {
        let at = self.m.poll_timeout().expect("a retry is scheduled");
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
        self.stored.get(&tp(at)).copied()
    }

    fn is_paused(&self, at: (&str, i32)) -> bool {
        self.paused.get(&tp(at)).copied().unwrap_or(false)
    }

    /// `at` leaves the consumer (revoked or lost); the consumer un-pauses it.
    fn leave(&mut self, at: (&str, i32)) {
        self.owned.remove(&tp(at));
        self.paused.remove(&tp(at));
        self.m.leaving(self.now, &[tp(at)]);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(action) = self.m.poll_action() {
            let of = match &action {
                Action::Process { record, .. }
                | Action::DeadLetter { record, .. }
                | Action::Store(record) => record.topic_partition(),
                Action::Pause(tp) | Action::Resume(tp) => tp.clone(),
            };
            assert!(
                self.owned.contains(&of),
                "{action:?} for {of}, which the consumer does not own"
            );
            match action {
                Action::Process { record, attempt } => {
                    assert!(self.out.is_none(), "two records out at once");
                    self.out = Some(Out {
                        record,
                        attempt,
                        dead_letter: false,
                    });
                }
                Action::DeadLetter { record, .. } => {
                    assert!(self.out.is_none(), "two records out at once");
                    self.out = Some(Out {
                        record,
                        attempt: 0,
                        dead_letter: true,
                    });
                }
                Action::Store(record) => {
                    let tp = record.topic_partition();
                    let expected = match self.stored.get(&tp) {
                        None => self.first[&tp],
                        Some(last) => last + 1,
                    };
                    assert_eq!(record.offset, expected, "{tp}: a record was passed over");
                    self.stored.insert(tp, record.offset);
                }
                Action::Pause(tp) => {
                    assert_ne!(self.paused.insert(tp, true), Some(true), "paused twice");
                }
                Action::Resume(tp) => {
                    assert_eq!(
                        self.paused.insert(tp, false),
                        Some(true),
                        "resumed unpaused"
                    );
                }
            }
        }
        while let Some(e) = self.m.poll_event() {
            self.events.push(e);
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
    assert_eq!(s.m.counts().snapshot(s.now, false, 0).records_processed, 5);
    assert_eq!(s.m.waiting(), 0);
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
    let retries = s
        .events
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
    }) = s.m.take_stop()
    else {
        panic!("stops");
    };
    assert_eq!((record.offset, attempts), (1, 3));
    assert_eq!(s.stored(A), Some(0), "nothing past offset 0");
    assert_eq!(s.out(), None);
    // Running again starts at the record, from its first try.
    s.m.restart(s.now);
    s.drain();
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
        if s.m.poll_timeout().is_some() {
            s.wait_for_retry();
            tries += 1;
        }
    }
    // Tries at 0, 100, 200 and 300 ms: the fourth fails 300 ms after the first, past 250.
    assert_eq!(tries, 4);
    assert_eq!(s.stored(A), Some(0), "skipped under tolerance all");
    assert!(matches!(s.events.last(), Some(Event::Skipped { .. })));
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
    let m = s.m.counts().snapshot(s.now, false, 0);
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
    assert!(matches!(s.events.last(), Some(Event::DeadLettered { .. })));
}

#[test]
fn a_failed_dead_letter_write_stops_and_is_written_again_on_the_next_run() {
    let mut s = Sim::new(&[
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", "orders.dlq"),
    ]);
    s.feed(A, 0..2);
    s.answer(permanent());
    s.dead_lettered(Err("broker down".into()));
    assert!(matches!(
        s.m.take_stop(),
        Some(Stop::DeadLetterFailed { record, .. }) if record.offset == 0
    ));
    assert_eq!(s.stored(A), None);
    assert_eq!(s.out(), None, "nothing more until the driver runs again");
    s.m.restart(s.now);
    s.drain();
    assert_eq!(
        s.out(),
        Some((A, 0, 0)),
        "the dead letter again, not the handler"
    );
    s.dead_lettered(Ok(()));
    assert_eq!(s.stored(A), Some(0));
    let m = s.m.counts().snapshot(s.now, false, 0);
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
        s.m.take_stop(),
        Some(Stop::BreakerOpen { record, tripped, .. }) if record.offset == 4 && tripped.failures == 3
    ));
    assert_eq!(
        s.stored(A),
        Some(3),
        "the record that opened it is not skipped"
    );
    assert!(s.m.is_open());
    assert_eq!(s.out(), None);
    s.feed(B, 0..1);
    assert_eq!(s.out(), None, "nothing is processed while it is open");
    s.m.close_breaker(s.now);
    s.drain();
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
    assert!(s.m.take_stop().is_none());
    assert_eq!(s.stored(A), Some(99));
}

#[test]
fn a_partition_leaving_drops_its_records_its_retry_and_its_answer() {
    let mut s = Sim::new(&[]);
    s.feed(A, 0..3);
    s.answer(retriable());
    s.feed(B, 0..2);
    assert_eq!(s.out(), Some((B, 0, 1)));
    s.leave(A);
    assert_eq!(s.m.poll_timeout(), None, "A's retry is gone");
    s.answer_all(Outcome::Done);
    assert_eq!((s.stored(A), s.stored(B)), (None, Some(1)));
    // B leaves with its record out: the answer that comes late changes nothing.
    s.feed(B, 2..4);
    s.leave(B);
    s.answer(Outcome::Done);
    assert_eq!(s.stored(B), Some(1));
    assert_eq!(s.m.waiting(), 0);
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
    s.now = s.m.poll_timeout().expect("A's retry");
    s.m.handle_timeout(s.now);
    s.leave(A);
    assert_eq!(s.out(), None, "A's retry is not handed out");
    assert_eq!((s.stored(A), s.stored(B)), (None, Some(0)));
    assert_eq!((s.m.poll_timeout(), s.m.waiting()), (None, 0));
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
    s.m.restart(s.now);
    s.drain();
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(1));
}
