//! The policy machine's tests, on the simulation of `sim.rs`.

use std::time::Duration;

use super::sim::*;
use super::*;
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
        cause: crate::error::Cause::Transport,
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
    s.outs.clear();
    s.run_again();
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(1));
}

/// A share group's work out: `Ok((offset, attempt))` to process, `Err((offset, attempts))` to
/// dead-letter.
type SharedWork = Result<(i64, u32), (i64, u32)>;

/// A machine for a share group's records ([`Delivery::Redelivered`]) under `config`, fed
/// directly: no consumer world to check against, the events are the assertions.
struct Shared {
    m: PolicyMachine,
    now: Instant,
}

impl Shared {
    fn new(config: &[(&str, &str)]) -> Shared {
        let mut c = PolicyConfig::default();
        for (n, v) in config {
            c.set(n, v).unwrap();
        }
        c.validate().unwrap();
        Shared {
            m: PolicyMachine::new(&c, Delivery::Redelivered, 7),
            now: Instant::now(),
        }
    }

    /// Records of `at` at `offsets`, each at delivery count `count`.
    fn feed(&mut self, at: (&str, i32), offsets: std::ops::Range<i64>, count: u16) {
        let records = offsets
            .map(|o| {
                let mut r = Record::new(at.0, at.1, o, None, Some(format!("v{o}").into()));
                r.delivery_count = Some(count);
                r
            })
            .collect();
        self.m.records(self.now, tp(at), records);
    }

    /// The work out: (offset, attempt), or a dead letter's (offset, attempts) as `Err`.
    fn out(&mut self) -> Option<(RequestId, SharedWork)> {
        let out = self.m.poll_request(self.now)?;
        let what = match out.request {
            Work::Process { record, attempt } => Ok((record.offset, attempt)),
            Work::DeadLetter {
                record, attempts, ..
            } => Err((record.offset, attempts)),
        };
        Some((out.id, what))
    }

    fn answer(&mut self, id: RequestId, done: Done) {
        self.m.handle_response(self.now, id, Ok(done));
    }

    /// The settlements told since the last call, as (offset, how), and whether a stop came.
    fn told(&mut self) -> (Vec<(i64, Settlement)>, Option<Stop>) {
        let mut settled = Vec::new();
        let mut stop = None;
        while let Some(e) = self.m.poll_event() {
            match e {
                Event::Settle { record, how } => settled.push((record.offset, how)),
                Event::Stop(s) => stop = Some(s),
                Event::Pause(_) | Event::Resume(_) => panic!("a share group's partition paused"),
                _ => {}
            }
        }
        (settled, stop)
    }
}

/// A share group's record: the attempt is its delivery count; a retriable failure below
/// `errors.retry.max.attempts` releases it at once (no timer, nothing paused) and the next
/// record goes on; a done one is settled `Done` (accepted).
#[test]
fn a_share_groups_retry_is_a_release_and_its_delivery_count_the_attempt() {
    let mut s = Shared::new(&[("errors.retry.max.attempts", "3")]);
    s.feed(A, 0..2, 2);
    let (id, what) = s.out().expect("work");
    assert_eq!(what, Ok((0, 2)));
    s.answer(id, Done::Processed(retriable()));
    assert_eq!(s.told(), (vec![(0, Settlement::Released)], None));
    assert_eq!(s.m.poll_timeout(), None, "no retry waits in the machine");
    let (id, what) = s.out().expect("the next record");
    assert_eq!(what, Ok((1, 2)));
    s.answer(id, Done::Processed(Outcome::Done));
    assert_eq!(s.told(), (vec![(1, Settlement::Done)], None));
    let counts = s.m.counts().snapshot(s.now, false, 0);
    assert_eq!((counts.records_retried, counts.records_processed), (1, 1));
}

/// At the last attempt a retriable failure has failed for good: with a dead-letter topic the
/// record is written there (its delivery count as the attempts) and then accepted; without
/// one it is rejected (`Skipped`).
#[test]
fn a_share_groups_record_failed_for_good_is_dead_lettered_then_accepted_or_rejected() {
    let mut s = Shared::new(&[
        ("errors.retry.max.attempts", "3"),
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", "dlq"),
    ]);
    s.feed(A, 0..1, 3);
    let (id, _) = s.out().expect("work");
    s.answer(id, Done::Processed(retriable()));
    let (id, what) = s.out().expect("the dead letter");
    assert_eq!(what, Err((0, 3)));
    assert_eq!(
        s.told(),
        (vec![], None),
        "nothing settled before the topic has it"
    );
    s.answer(id, Done::DeadLettered(Ok(())));
    assert_eq!(s.told(), (vec![(0, Settlement::Done)], None));

    let mut s = Shared::new(&[("errors.tolerance", "all")]);
    s.feed(A, 0..1, 1);
    let (id, _) = s.out().expect("work");
    s.answer(id, Done::Processed(permanent()));
    assert_eq!(s.told(), (vec![(0, Settlement::Skipped)], None));
}

/// A stop (`errors.tolerance=none`, or a failed dead-letter write) releases every record the
/// machine holds, the one at fault first, then stops; the next run starts with nothing held.
#[test]
fn a_stop_releases_every_share_record_held_the_one_at_fault_first() {
    let mut s = Shared::new(&[]);
    s.feed(A, 0..3, 1);
    s.feed(B, 5..7, 1);
    let (id, what) = s.out().expect("work");
    assert_eq!(what, Ok((0, 1)));
    s.answer(id, Done::Processed(Outcome::Done));
    // The partitions take turns: B's first record, then A's next.
    let (id, what) = s.out().expect("work");
    assert_eq!(what, Ok((5, 1)));
    s.answer(id, Done::Processed(Outcome::Done));
    let (id, what) = s.out().expect("work");
    assert_eq!(what, Ok((1, 1)));
    s.answer(id, Done::Processed(permanent()));
    let (settled, stop) = s.told();
    assert_eq!(
        settled,
        [
            (0, Settlement::Done),
            (5, Settlement::Done),
            (1, Settlement::Released),
            (2, Settlement::Released),
            (6, Settlement::Released),
        ]
    );
    let Some(Stop::Failed {
        record, attempts, ..
    }) = stop
    else {
        panic!("stops: {stop:?}");
    };
    assert_eq!((record.offset, attempts), (1, 1));
    s.m.restart(s.now);
    assert!(s.out().is_none(), "nothing held after the stop");
    assert_eq!(s.m.waiting(), 0);

    let mut s = Shared::new(&[
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", "dlq"),
    ]);
    s.feed(A, 0..2, 1);
    let (id, _) = s.out().expect("work");
    s.answer(id, Done::Processed(permanent()));
    let (id, _) = s.out().expect("the dead letter");
    let error = DeadLetterFailure {
        cause: crate::error::Cause::Transport,
        reason: "down".into(),
    };
    s.answer(id, Done::DeadLettered(Err(error)));
    let (settled, stop) = s.told();
    assert_eq!(
        settled,
        [(0, Settlement::Released), (1, Settlement::Released)]
    );
    assert!(
        matches!(stop, Some(Stop::DeadLetterFailed { .. })),
        "{stop:?}"
    );
}

/// Under `processing.ordering=key` the records of different keys run side by side, a key's
/// one at a time in offset order; a partition's stored offset is its lowest record not done
/// with, never past it.
#[test]
fn keys_run_side_by_side_and_the_stored_offset_waits_for_the_lowest_record() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "4"),
    ]);
    s.feed_keyed(
        A,
        [
            (0, Some("a")),
            (1, Some("b")),
            (2, Some("a")),
            (3, Some("c")),
        ],
    );
    assert_eq!(
        s.all_out(),
        [(A, 0, 1), (A, 1, 1), (A, 3, 1)],
        "a's second record waits for its first"
    );
    assert_eq!(s.m().behind(), 1, "2 waits behind 0, its key's");
    s.answer_at(A, 1, Outcome::Done);
    s.answer_at(A, 3, Outcome::Done);
    assert_eq!(
        s.stored(A).map(|o| o + 1),
        Some(0),
        "0 is not done with: the offset stays at it, 1 and 3 named in its metadata"
    );
    s.answer_at(A, 0, Outcome::Done);
    assert_eq!(
        s.stored(A).map(|o| o + 1),
        Some(0),
        "3 is done above 2: the offset moves with the metadata naming 3, not before it is due"
    );
    s.advance(Duration::from_millis(200));
    assert_eq!(s.stored(A), Some(1), "0 and 1 done with; 2 not");
    assert_eq!(s.all_out(), [(A, 2, 1)]);
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(3));
    assert_eq!(s.m().waiting(), 0);
}

/// Under `key` ordering a retriable failure holds back its key only: the partition is not
/// paused, and the other keys' records are processed while it waits.
#[test]
fn a_retry_holds_back_its_key_only() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "100"),
    ]);
    s.feed_keyed(
        A,
        [
            (0, Some("a")),
            (1, Some("b")),
            (2, Some("a")),
            (3, Some("b")),
        ],
    );
    assert_eq!(s.out(), Some((A, 0, 1)));
    s.answer(retriable());
    assert!(!s.is_paused(A), "other keys keep the partition flowing");
    assert_eq!(s.out(), Some((A, 1, 1)));
    s.answer(Outcome::Done);
    assert_eq!(
        s.out(),
        Some((A, 3, 1)),
        "b goes on; a's 2 waits behind its 0"
    );
    s.answer(Outcome::Done);
    assert_eq!(s.out(), None);
    assert_eq!(
        s.stored(A).map(|o| o + 1),
        Some(0),
        "0 waits for its retry: the offset stays at it"
    );
    s.wait_for_retry();
    assert_eq!(s.out(), Some((A, 0, 2)));
    s.answer(Outcome::Done);
    assert_eq!(s.out(), Some((A, 2, 1)));
    s.answer(Outcome::Done);
    assert_eq!(s.stored(A), Some(3));
}

/// Records done with above the stored offset are named in the metadata stored with it, at
/// most every `METADATA_EVERY` (the timer writes what came meanwhile) and before a commit;
/// what the metadata names was done with (the world checks it), and the offset stays at the
/// lowest record not done with.
#[test]
fn the_records_done_above_the_stored_offset_go_in_its_metadata() {
    let mut s = Sim::new(&[
        ("processing.ordering", "unordered"),
        ("processing.max.concurrency", "8"),
    ]);
    s.feed(A, 0..6);
    assert_eq!(s.all_out().len(), 6);
    s.answer_at(A, 0, Outcome::Done);
    s.answer_at(A, 2, Outcome::Done);
    let read = |s: &Sim| {
        let text = s.w.metadata.get(&tp(A)).cloned().unwrap_or_default();
        let above = crate::policy::progress::FinishedAbove::read(1, &text).unwrap();
        (1..6)
            .filter(|o| above.as_ref().is_some_and(|a| a.contains(*o)))
            .collect::<Vec<_>>()
    };
    assert_eq!(s.stored(A), Some(0));
    assert_eq!(read(&s), [2], "written with the first record done above 1");
    s.answer_at(A, 4, Outcome::Done);
    assert_eq!(read(&s), [2], "not written again before METADATA_EVERY");
    assert_eq!(s.m().poll_timeout(), Some(s.now + METADATA_EVERY));
    s.advance(METADATA_EVERY);
    assert_eq!(read(&s), [2, 4], "written when the timer fired");
    s.answer_at(A, 5, Outcome::Done);
    s.d.before_commit(s.now, &mut s.w).unwrap();
    assert_eq!(read(&s), [2, 4, 5], "written before a commit");
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(5));
    assert_eq!(
        s.w.metadata[&tp(A)],
        "",
        "nothing above the offset: no metadata"
    );
}

/// A stop with other records in the handler: their answers are taken (a record done with is
/// stored; one failing for good waits for the next run, from its first try), and nothing new
/// starts until the driver runs again.
#[test]
fn a_stop_takes_the_answers_of_the_records_still_in_the_handler() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "3"),
    ]);
    s.feed_keyed(
        A,
        [
            (0, Some("a")),
            (1, Some("b")),
            (2, Some("c")),
            (3, Some("d")),
        ],
    );
    s.answer_at(A, 1, permanent());
    assert!(matches!(s.take_stop(), Some(Stop::Failed { .. })));
    s.answer_at(A, 0, Outcome::Done);
    s.answer_at(A, 2, permanent());
    assert_eq!(s.take_stop(), None, "one stop");
    assert_eq!(s.out(), None, "nothing starts while stopped");
    assert_eq!(s.stored(A), Some(0));
    s.run_again();
    let mut again = s.all_out();
    again.sort();
    assert_eq!(again, [(A, 1, 1), (A, 2, 1), (A, 3, 1)]);
}

/// A member assigned a partition at an offset committed with kcon's metadata passes over the
/// records it names as done with (by this member before a restart, or by the last owner): it
/// processes only the others, counts those passed over, and names them again in its own
/// metadata until the offset passes them.
#[test]
fn records_the_commits_metadata_names_are_passed_over_by_the_next_member() {
    let config = [
        ("processing.ordering", "unordered"),
        ("processing.max.concurrency", "8"),
    ];
    let mut first = Sim::new(&config);
    first.feed(A, 0..6);
    for offset in [1, 3, 4] {
        first.answer_at(A, offset, Outcome::Done);
    }
    first.d.before_commit(first.now, &mut first.w).unwrap();
    assert_eq!(first.stored(A).map(|o| o + 1), Some(0));
    let metadata = first.w.metadata[&tp(A)].clone();

    let mut next = Sim::new(&config);
    next.w.committed.insert(tp(A), (0, metadata.clone()));
    next.w.done.entry(tp(A)).or_default().extend([1, 3, 4]);
    next.feed(A, 0..8);
    let mut out: Vec<i64> = next.all_out().iter().map(|(_, o, _)| *o).collect();
    out.sort();
    assert_eq!(out, [0, 2, 5, 6, 7], "1, 3 and 4 passed over");
    let counts = next.m().counts().snapshot(next.now, false, 0);
    assert_eq!(counts.partitions[&tp(A)].done_before, 3);
    assert_eq!(
        next.w.metadata[&tp(A)],
        metadata,
        "stored again, naming the same records"
    );
    next.answer_at(A, 0, Outcome::Done);
    next.answer_at(A, 2, Outcome::Done);
    assert_eq!(next.stored(A), Some(4), "0 to 4 done with");
    next.answer_all(Outcome::Done);
    assert_eq!(next.stored(A), Some(7));

    // Metadata written for another offset, or another client's, passes nothing over.
    for (at, text) in [(1, metadata.as_str()), (0, "checkpoint 7")] {
        let mut other = Sim::new(&config);
        other.w.committed.insert(tp(A), (at, text.to_owned()));
        other.feed(A, 0..6);
        assert_eq!(other.all_out().len(), 6, "{text} at {at}");
    }
}

/// A partition revoking: its records not started are dropped at once (its next owner reads
/// them), those in the handler finish, a retriable failure among them is not retried, and once
/// none is out its lowest record not done with is stored and the partition released; the other
/// partitions are not disturbed.
#[test]
fn a_partition_revoking_is_released_once_its_records_in_the_handler_are_done() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "3"),
    ]);
    s.feed_keyed(
        A,
        [
            (0, Some("a")),
            (1, Some("b")),
            (2, Some("c")),
            (3, Some("d")),
        ],
    );
    s.feed_keyed(B, [(10, Some("a")), (11, Some("b"))]);
    assert_eq!(s.all_out(), [(A, 0, 1), (A, 1, 1), (A, 2, 1)]);
    s.revoke(A);
    assert_eq!(
        s.w.held,
        BTreeSet::from([tp(A)]),
        "held while records are out"
    );
    s.answer_at(A, 1, Outcome::Done);
    assert_eq!(
        s.all_out(),
        [(A, 0, 1), (A, 2, 1), (B, 10, 1)],
        "3 dropped; B goes on"
    );
    s.answer_at(A, 2, retriable());
    assert_eq!(
        s.m().poll_timeout(),
        None,
        "not retried: the next owner tries it"
    );
    assert_eq!(s.w.held, BTreeSet::from([tp(A)]));
    s.answer_at(A, 0, Outcome::Done);
    assert!(s.w.held.is_empty(), "released");
    assert_eq!(
        s.stored(A).map(|o| o + 1),
        Some(2),
        "0 and 1 done with; 2 not"
    );
    s.leave(A);
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(B), Some(11));
    assert_eq!(s.m().waiting(), 0);

    // Nothing out: released at once.
    s.feed(A, 20..22);
    s.answer_all(Outcome::Done);
    s.revoke(A);
    assert!(s.w.held.is_empty());
    assert_eq!(s.stored(A), Some(21));
}

/// Once `processing.max.buffered.records` records wait unstarted, the partitions with records
/// waiting are paused (the consumer's receiving call goes on, handing out nothing of them; the
/// others flow), each until none of its records waits; a partition a retry pauses meanwhile
/// stays paused for it.
#[test]
fn a_full_buffer_pauses_the_partitions_with_records_waiting_until_theirs_started() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.buffered.records", "4"),
    ]);
    s.feed_keyed(B, [(0, Some("b"))]);
    s.answer(Outcome::Done);
    s.feed_keyed(A, (0..6).map(|o| (o, Some("a"))));
    assert_eq!(s.m().buffered(), 5);
    assert!(s.is_paused(A), "5 wait");
    assert!(!s.is_paused(B), "nothing of B waits: it flows");
    for _ in 0..4 {
        s.answer(Outcome::Done);
    }
    assert!(s.is_paused(A), "one of A still waits");
    s.answer(Outcome::Done);
    assert!(!s.is_paused(A), "every record of A started: resumed");
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(5));

    // Paused for the bound, then for a retry (under partition ordering): the retry's resume,
    // when nothing of the partition is left, ends it.
    let mut s = Sim::new(&[
        ("processing.max.buffered.records", "4"),
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "100"),
    ]);
    s.feed(A, 0..6);
    assert!(s.is_paused(A));
    s.answer(retriable());
    assert!(s.is_paused(A));
    s.wait_for_retry();
    s.answer_all(Outcome::Done);
    assert!(!s.is_paused(A), "resumed when nothing of it is left");
    assert_eq!(s.stored(A), Some(5));
}

/// Under `key` ordering, one key with more records waiting than
/// `processing.max.buffered.records.per.key` pauses its partition, far below the buffer's
/// bound, until none of the partition's records waits; the other partitions flow, and its own
/// other keys run meanwhile. Under `partition` ordering the per-key bound does not apply (the
/// partition is the unit: the buffer's bound is its bound).
#[test]
fn a_hot_key_pauses_its_partition_alone_far_below_the_buffers_bound() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "5"),
        ("processing.max.buffered.records", "100"),
        ("processing.max.buffered.records.per.key", "3"),
    ]);
    s.feed_keyed(B, [(0, Some("b")), (1, Some("c"))]);
    s.feed_keyed(
        A,
        [
            (0, Some("h")),
            (1, Some("x")),
            (2, Some("h")),
            (3, Some("h")),
        ],
    );
    assert!(!s.is_paused(A), "two of h wait: within its bound");
    s.feed_keyed(A, [(4, Some("h")), (5, Some("h")), (6, Some("y"))]);
    assert_eq!(s.m().buffered(), 4, "h's four after its first");
    assert!(s.is_paused(A), "four of h wait, past its bound of 3");
    assert!(!s.is_paused(B), "nothing of B waits: it flows");
    let out: Vec<i64> = s
        .all_out()
        .iter()
        .filter(|o| o.0 == A)
        .map(|o| o.1)
        .collect();
    assert_eq!(out, [0, 1, 6], "the partition's other keys run beside h");
    s.answer_at(A, 1, Outcome::Done);
    s.answer_at(A, 6, Outcome::Done);
    for offset in [0, 2, 3, 4] {
        assert!(s.is_paused(A), "h's records after {offset} wait");
        s.answer_at(A, offset, Outcome::Done);
    }
    assert!(
        !s.is_paused(A),
        "h's last record started: nothing of A waits"
    );
    s.answer_all(Outcome::Done);
    assert_eq!(s.stored(A), Some(6));

    let mut s = Sim::new(&[
        ("processing.max.buffered.records", "100"),
        ("processing.max.buffered.records.per.key", "3"),
    ]);
    s.feed(A, 0..10);
    assert!(
        !s.is_paused(A),
        "under partition ordering only the buffer's bound counts"
    );
}

/// When the records done with above the stored offset no longer fit in 4,096 bytes of
/// metadata, the metadata names those it can (what it names was done with: the world checks
/// it), the hooks hear up to where, and the counts say so.
#[test]
fn metadata_past_its_bound_is_cut_and_said_so() {
    let mut s = Sim::new(&[
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "16"),
        ("processing.max.buffered.records", "100000"),
    ]);
    // Key `a` at every even offset, waiting behind its first record, which never finishes;
    // records without a key between them, each done.
    s.feed_keyed(
        A,
        (0..40_000).map(|o| (o, if o % 2 == 0 { Some("a") } else { None })),
    );
    while let Some(i) = s.outs.iter().position(|o| o.record.offset != 0) {
        s.answer_index(i, Outcome::Done);
    }
    s.d.before_commit(s.now, &mut s.w).unwrap();
    assert_eq!(s.stored(A).map(|o| o + 1), Some(0));
    let text = &s.w.metadata[&tp(A)];
    assert!(
        !text.is_empty() && text.len() <= 4096,
        "{} bytes",
        text.len()
    );
    let (cut, named) =
        s.w.cuts
            .last()
            .cloned()
            .expect("the hooks heard of the cut");
    assert_eq!(cut, tp(A));
    assert!((1_000..39_999).contains(&named), "named up to {named}");
    let counts = s.m().counts().snapshot(s.now, false, 0);
    assert_eq!(counts.partitions[&tp(A)].metadata_cut, 1);
    assert_eq!(counts.partitions[&tp(A)].metadata_bytes, text.len());
}

/// Records finishing out of order all the time (the low-water mark moving with nearly every
/// answer): what is stored at any moment, the offset and its metadata together, names every
/// record done with at least 200 ms before, so that a commit at any moment passes over all but
/// the last 200 ms of work after a restart. An offset stored alone whenever it moved would
/// leave the metadata empty nearly always.
#[test]
fn what_is_stored_names_every_record_done_200_ms_before_at_any_moment() {
    let mut s = Sim::new(&[
        ("processing.ordering", "unordered"),
        ("processing.max.concurrency", "8"),
    ]);
    s.feed(A, 0..400);
    let step = Duration::from_millis(10);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut done_at: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut named_most = 0;
    while !s.all_out().is_empty() {
        let out: Vec<i64> = s.all_out().iter().map(|o| o.1).collect();
        let pick = rng.usize(..out.len());
        s.answer_index(pick, Outcome::Done);
        done_at.insert(out[pick], s.now);
        s.advance(step);
        let offset = s.stored(A).map_or(0, |o| o + 1);
        let metadata = s.w.metadata.get(&tp(A)).cloned().unwrap_or_default();
        let named = crate::policy::progress::FinishedAbove::read(offset, &metadata)
            .ok()
            .flatten();
        named_most = named_most.max(named.as_ref().map_or(0, |n| n.last() - offset));
        for (&o, &at) in done_at.range(offset..) {
            if s.now.duration_since(at) >= Duration::from_millis(200) + step {
                assert!(
                    named.as_ref().is_some_and(|n| n.contains(o)),
                    "{o}, done with {:?} before, not named by the metadata stored with {offset}: {metadata:?}",
                    s.now.duration_since(at)
                );
            }
        }
    }
    assert_eq!(s.stored(A), Some(399));
    assert!(
        named_most > 8,
        "the metadata named records {named_most} above"
    );
}
