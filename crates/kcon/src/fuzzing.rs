//! Entry points for kcon's fuzz targets (the feature `fuzzing`, hidden; no API promise): the
//! whole-consumer simulation (`consumer::sim`, [`consumer`]) and the record processor's policy
//! machine on its driver (`policy::machine::sim`, [`processor`]), driven by operations read
//! from bytes.
//!
//! [`consumer`] reads its input as a setup byte and then operations, one per step, each an op
//! byte and the bytes it reads (missing bytes read as zero):
//!
//! - setup: bit 0 the group protocol (0 classic, 1 KIP-848), bits 1-2 the classic assignor
//!   (`range`, `roundrobin`, `cooperative-sticky`, `cooperative-sticky`), bit 3 the
//!   applications store their offsets themselves (`store_elsewhere`, as a processor does),
//!   bit 4 `enable.auto.commit=false`.
//! - ops (op byte modulo 14): start a consumer (subscribing to `t`, or `t` and `u`); produce
//!   records; let time pass; an application stops calling, or calls again; pause or resume an
//!   owned partition; seek an owned partition back (never past a record nobody was handed);
//!   commit (sync or async); subscribe anew; close; crash; cut a consumer off the network; the
//!   classic coordinator fails over; the KIP-848 coordinator answers the next heartbeats with
//!   errors.
//!
//! After every op, besides the simulation's own checks after every step (no partition owned
//! by two live consumers at once, unless a fault may have evicted a member without its
//! knowing; under KIP-848 the coordinator never lets two members hold a partition and accepts
//! commits only from the holder at its current epoch; no commit past a record no consumer was
//! handed; every machine's timers after now once fired): the op took at most
//! [`STEPS_PER_OP`] steps, and the records each consumer was handed out of a partition went
//! forward, without a repeat, but after a seek of it or a listener call naming it.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon_core::TopicPartition;
use kcon_offsets::CommitKind;

use crate::consumer::sim::{App, ClientConfig, Doing, Happened, World};

/// At most this many simulation steps per op: an op that takes more spins.
pub const STEPS_PER_OP: u64 = 50_000;

/// At most this many consumers.
const CLIENTS: usize = 4;

/// At most this many ops are read.
const OPS: usize = 400;

/// The topics: `t` with three partitions, `u` with two.
const TOPICS: [(&str, i32); 2] = [("t", 3), ("u", 2)];

/// What a run did, for tests that check a seed does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerRun {
    /// Records handed to applications, over all consumers.
    pub handed: usize,
    /// Commits the coordinator accepted.
    pub commits: usize,
    /// Consumers started.
    pub consumers: usize,
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

/// Runs the simulation over `data`; panics when an invariant breaks.
pub fn consumer(data: &[u8]) -> ConsumerRun {
    let mut bytes = Bytes(data);
    let setup = bytes.byte();
    let kip848 = setup & 1 == 1;
    let strategy = [
        "range",
        "roundrobin",
        "cooperative-sticky",
        "cooperative-sticky",
    ][usize::from((setup >> 1) & 3)];
    let stores = setup & 8 != 0;
    let no_auto_commit = setup & 16 != 0;
    let mut config = if kip848 {
        ClientConfig::consumer_protocol()
    } else {
        ClientConfig::new(strategy)
    };
    if no_auto_commit {
        config = config.set("enable.auto.commit", "false");
    }
    let app = App {
        stores,
        ..App::default()
    };

    let mut w = World::new(&TOPICS);
    w.produce("t", 20);
    w.produce("u", 10);
    let mut order = Order::default();
    let mut run = ConsumerRun::default();
    let mut ops = 0;
    while !bytes.0.is_empty() && ops < OPS {
        ops += 1;
        let before = w.steps();
        let op = bytes.byte() % 14;
        let arg = bytes.byte();
        let live: Vec<usize> = (0..w.clients.len())
            .filter(|i| w.clients[*i].is_live())
            .collect();
        let pick = |a: u8| -> Option<usize> {
            (!live.is_empty()).then(|| live[usize::from(a) % live.len()])
        };
        match op {
            0 => {
                if w.clients.len() < CLIENTS {
                    let topics: &[&str] = if arg & 1 == 0 { &["t"] } else { &["t", "u"] };
                    w.start(config.clone(), topics, app.clone());
                    run.consumers += 1;
                }
            }
            1 => {
                let topic = TOPICS[usize::from(arg & 1)].0;
                w.produce(topic, usize::from(arg >> 1) % 40 + 1);
            }
            2 => w.run_for(Duration::from_millis(u64::from(arg) * 50)),
            3 => {
                if let Some(i) = pick(arg) {
                    w.go_away(i);
                }
            }
            4 => {
                if let Some(i) = pick(arg) {
                    w.come_back(i);
                }
            }
            5 | 6 => {
                let which = bytes.byte();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let c = &w.clients[i];
                    let candidates: Vec<TopicPartition> = if op == 5 {
                        c.owned()
                            .iter()
                            .filter(|tp| !c.consumer().paused().contains(*tp))
                            .cloned()
                            .collect()
                    } else {
                        c.consumer().paused().iter().cloned().collect()
                    };
                    if !candidates.is_empty() {
                        let tp = candidates[usize::from(which) % candidates.len()].clone();
                        if op == 5 {
                            w.pause(i, &tp);
                        } else {
                            w.resume(i, &tp);
                        }
                    }
                }
            }
            7 => {
                let which = bytes.byte();
                let back = bytes.byte();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let owned: Vec<TopicPartition> = w.clients[i].owned().iter().cloned().collect();
                    if !owned.is_empty() {
                        let tp = owned[usize::from(which) % owned.len()].clone();
                        // Never past a record nobody was handed: a seek forward skips records
                        // on the application's word, and a commit may then pass them.
                        let first_unhanded = first_unhanded(&w, &tp);
                        let offset = (first_unhanded - i64::from(back)).max(0);
                        w.seek(i, &tp, offset);
                    }
                }
            }
            8 => {
                if let Some(i) = pick(arg) {
                    let kind = if arg & 0x80 == 0 {
                        CommitKind::Sync
                    } else {
                        CommitKind::Async
                    };
                    w.commit(i, kind);
                }
            }
            9 => {
                let which = bytes.byte();
                if let Some(i) = pick(arg)
                    && usable(&w, i)
                {
                    let topics: &[&str] = match which % 3 {
                        0 => &["t"],
                        1 => &["u"],
                        _ => &["t", "u"],
                    };
                    w.subscribe(i, topics);
                }
            }
            10 => {
                if let Some(i) = pick(arg) {
                    w.close(i);
                }
            }
            11 => {
                if let Some(i) = pick(arg) {
                    w.crash(i);
                }
            }
            12 => {
                let ms = bytes.byte();
                if let Some(i) = pick(arg) {
                    // A member cut off may be evicted before it can know: another may be given
                    // its partitions meanwhile, which the group protocols allow.
                    w.strict_ownership = false;
                    w.isolate(i, Duration::from_millis(u64::from(ms) * 100));
                }
            }
            13 => {
                if kip848 {
                    // Retriable and fencing errors of ConsumerGroupHeartbeat; a fenced member
                    // loses its partitions when it hears of it, after they may have moved.
                    const ERRORS: [i16; 5] = [
                        kcon_sim::code::COORDINATOR_NOT_AVAILABLE,
                        kcon_sim::code::NOT_COORDINATOR,
                        kcon_sim::code::COORDINATOR_LOAD_IN_PROGRESS,
                        kcon_sim::code::FENCED_MEMBER_EPOCH,
                        kcon_sim::code::UNKNOWN_MEMBER_ID,
                    ];
                    let error = ERRORS[usize::from(arg) % ERRORS.len()];
                    if matches!(
                        error,
                        kcon_sim::code::FENCED_MEMBER_EPOCH | kcon_sim::code::UNKNOWN_MEMBER_ID
                    ) {
                        w.strict_ownership = false;
                    }
                    w.consumer_coordinator.inject(&[error]);
                } else {
                    let now = w.now;
                    w.coordinator.fail_over(now);
                }
            }
            _ => unreachable!("op modulo 14"),
        }
        let took = w.steps() - before;
        assert!(
            took <= STEPS_PER_OP,
            "op {op} took {took} steps\n{}",
            w.dump(40)
        );
        order.check(&w);
    }
    // The groups settle once the faults are over: every record is handed out in the end.
    run.handed = w.clients.iter().map(|c| c.processed.len()).sum();
    run.commits = w.commits.len();
    run
}

/// Whether consumer `i` is running and its application may call it.
fn usable(w: &World, i: usize) -> bool {
    let c = &w.clients[i];
    c.is_live() && c.doing != Doing::Closing && c.consumer().usable().is_ok()
}

/// The first offset of `tp` no consumer was handed.
fn first_unhanded(w: &World, tp: &TopicPartition) -> i64 {
    let handed: std::collections::BTreeSet<i64> = w
        .clients
        .iter()
        .flat_map(|c| c.processed.iter())
        .filter(|(p, _)| p == tp)
        .map(|(_, o)| *o)
        .collect();
    (0..).find(|o| !handed.contains(o)).unwrap_or(0)
}

/// Each consumer's hand-outs, read from its log as it grows: per partition, the next offset
/// it may be handed at the least.
#[derive(Default)]
struct Order {
    /// Per consumer, how far its log was read, and per partition the offset after the last
    /// record handed out.
    read: Vec<(usize, BTreeMap<TopicPartition, i64>)>,
}

impl Order {
    fn check(&mut self, w: &World) {
        self.read.resize_with(w.clients.len(), Default::default);
        for (i, c) in w.clients.iter().enumerate() {
            let (read, next) = &mut self.read[i];
            for (_, happened) in &c.log()[*read..] {
                match happened {
                    Happened::Handed(tp, first, last) => {
                        if let Some(expected) = next.get(tp) {
                            assert!(
                                first >= expected,
                                "consumer {i} was handed {tp}@{first} after @{}\n{}",
                                expected - 1,
                                w.dump(40)
                            );
                        }
                        assert!(first <= last);
                        next.insert(tp.clone(), last + 1);
                    }
                    Happened::Seeked(tp, _) => {
                        next.remove(tp);
                    }
                    Happened::Listener(_, partitions) | Happened::Leaving(partitions) => {
                        for tp in partitions {
                            next.remove(tp);
                        }
                    }
                    _ => {}
                }
            }
            *read = c.log().len();
        }
    }
}

/// What a processor run did, for tests that check a seed does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorRun {
    /// Records whose offsets were stored, over both partitions.
    pub stored: usize,
    /// Retries (a record handed out again after a retriable failure).
    pub retries: usize,
    /// Records the dead-letter topic acknowledged.
    pub dead_lettered: usize,
}

/// Runs the record processor's policy machine on its driver (the `Processor`'s own, on a
/// virtual clock) over `data`; panics when an invariant breaks.
///
/// The input is a setup byte and then operations, each an op byte and an argument byte:
///
/// - setup: bits 0-1 `errors.tolerance` and the dead-letter topic (0: `none`; 1: `all`;
///   2 and 3: `all` with a dead-letter topic), bits 2-3 `errors.retry.max.attempts` minus one,
///   bit 4 `errors.retry.timeout=500`, bit 5 a breaker (`errors.breaker.window.records=10`,
///   `errors.breaker.failures=5`, `errors.breaker.consecutive.failures=3`); backoff 100 ms up
///   to 1 s.
/// - ops (op byte modulo 9): records of partition 0 or 1 arrive (unless it is paused or the
///   processor stopped); the record out is processed, fails retriably, or fails for good; the
///   dead letter out is acknowledged, or its write fails; the clock advances; a partition
///   leaves (revoked mid-retry, say); the processor runs again after a stop, or the breaker is
///   closed. As in `Processor::run_until`, records arrive, the clock wakes the driver and
///   partitions leave only while no work is out (the consumer is called, and rebalances, only
///   between records).
///
/// Besides the simulation's own checks (at most one record out; offsets stored one after
/// another; pauses and resumes alternate; nothing asked for a partition not owned): the record
/// out of a partition is always its first not stored (in order, none passed over); its attempt
/// is at most `errors.retry.max.attempts`; an offset is stored only for a record processed,
/// acknowledged by the dead-letter topic, or (under `errors.tolerance=all` without one) failed
/// for good; the records waiting are at most those fed and not stored.
pub fn processor(data: &[u8]) -> ProcessorRun {
    use crate::policy::machine_sim::{A, B, Sim, failure, tp};
    use crate::policy::{DeadLetterFailure, Outcome};
    use std::collections::BTreeSet;

    let mut bytes = Bytes(data);
    let setup = bytes.byte();
    let tolerance_all = setup & 3 != 0;
    let dead_letter = setup & 2 != 0;
    let max_attempts = u32::from((setup >> 2) & 3) + 1;
    let attempts = max_attempts.to_string();
    let mut config = vec![
        ("errors.retry.max.attempts", attempts.as_str()),
        ("errors.retry.backoff.ms", "100"),
        ("errors.retry.delay.max.ms", "1000"),
    ];
    if tolerance_all {
        config.push(("errors.tolerance", "all"));
    }
    if dead_letter {
        config.push(("errors.deadletterqueue.topic.name", "dlq"));
    }
    if setup & 16 != 0 {
        config.push(("errors.retry.timeout", "500"));
    }
    if setup & 32 != 0 {
        config.push(("errors.breaker.window.records", "10"));
        config.push(("errors.breaker.failures", "5"));
        config.push(("errors.breaker.consecutive.failures", "3"));
    }
    let mut s = Sim::new(&config);
    let mut run = ProcessorRun::default();
    // Per partition: the offset after the last fed, while owned.
    let mut fed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    // Records answered: processed, acknowledged by the dead-letter topic, failed for good.
    let mut finished: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
    let mut dead_lettered: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
    let mut failed: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
    let mut stopped = false;
    let mut last_out: Option<(TopicPartition, i64, u32, bool)> = None;
    let mut ops = 0;
    while !bytes.0.is_empty() && ops < OPS {
        ops += 1;
        let op = bytes.byte() % 9;
        let arg = bytes.byte();
        let at = if arg & 1 == 0 { A } else { B };
        let stored_before: BTreeMap<TopicPartition, Option<i64>> =
            [A, B].iter().map(|p| (tp(*p), s.stored(*p))).collect();
        let out = s
            .out
            .as_ref()
            .map(|o| (o.record.topic_partition(), o.record.offset, o.dead_letter));
        match op {
            0 => {
                let part = tp(at);
                if !stopped && !s.is_paused(at) && s.out.is_none() {
                    // The consumer hands out from the first record not stored: at-least-once.
                    let start = *fed
                        .entry(part.clone())
                        .or_insert_with(|| s.stored(at).map_or(0, |o| o + 1));
                    let n = i64::from(arg >> 1) % 8 + 1;
                    s.feed(at, start..start + n);
                    fed.insert(part, start + n);
                }
            }
            1..=3 => {
                if let Some((part, offset, false)) = out {
                    let outcome = match op {
                        1 => Outcome::Done,
                        2 => Outcome::Failed(failure(true)),
                        _ => Outcome::Failed(failure(false)),
                    };
                    match op {
                        1 => finished.insert((part, offset)),
                        _ => failed.insert((part, offset)),
                    };
                    s.answer(outcome);
                }
            }
            4 | 5 => {
                if let Some((part, offset, true)) = out {
                    if op == 4 {
                        dead_lettered.insert((part, offset));
                        run.dead_lettered += 1;
                        s.dead_lettered(Ok(()));
                    } else {
                        s.dead_lettered(Err(DeadLetterFailure {
                            cause: crate::Cause::Broker,
                            reason: "the dead-letter topic's leader is unavailable".to_owned(),
                        }));
                    }
                }
            }
            6 => {
                if s.out.is_none() {
                    s.advance(Duration::from_millis(u64::from(arg) * 20));
                }
            }
            7 => {
                let part = tp(at);
                if s.w.owned.contains(&part) && s.out.is_none() {
                    s.leave(at);
                    fed.remove(&part);
                }
            }
            8 => {
                if arg & 1 == 0 {
                    // `Processor::run_until` refuses to start while the breaker is open.
                    if stopped && !s.m().is_open() {
                        s.run_again();
                        stopped = false;
                    }
                } else {
                    s.close_breaker();
                }
            }
            _ => unreachable!("op modulo 9"),
        }
        if s.take_stop().is_some() {
            stopped = true;
        }
        // What was stored: only records done with, in a way that allows it.
        for p in [A, B] {
            let part = tp(p);
            let before = stored_before[&part];
            let Some(now) = s.stored(p) else { continue };
            let from = before.map_or(s.w.first[&part], |o| o + 1);
            for offset in from..=now {
                let key = (part.clone(), offset);
                let allowed = finished.contains(&key)
                    || dead_lettered.contains(&key)
                    || (tolerance_all && !dead_letter && failed.contains(&key));
                assert!(allowed, "{part}@{offset} stored, never done with");
                run.stored += 1;
            }
        }
        // The record out is its partition's first not stored, at an allowed attempt.
        if let Some(o) = &s.out {
            let part = o.record.topic_partition();
            let next = s.w.stored.get(&part).map_or(s.w.first[&part], |o| o + 1);
            assert_eq!(o.record.offset, next, "{part}: out of order");
            assert!(
                o.dead_letter || (1..=max_attempts).contains(&o.attempt),
                "{part}@{}: attempt {} of {max_attempts}",
                o.record.offset,
                o.attempt
            );
            let now = (part, o.record.offset, o.attempt, o.dead_letter);
            if let Some(last) = &last_out
                && !now.3
                && now.0 == last.0
                && now.1 == last.1
                && now.2 > last.2
            {
                run.retries += 1;
            }
            last_out = Some(now);
        }
        // Memory: what waits was fed and not stored.
        let unstored: i64 = fed
            .iter()
            .map(|(part, end)| end - s.w.stored.get(part).map_or(s.w.first[part], |o| o + 1))
            .sum();
        assert!(
            s.m().waiting() as i64 <= unstored.max(0),
            "{} records wait, {unstored} fed and not stored",
            s.m().waiting()
        );
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classic_group_hands_records_out_and_commits() {
        // Setup 0 (classic, range); start two consumers, let time pass, produce, time.
        let run = consumer(&[0, 0, 0, 0, 1, 2, 200, 1, 20, 2, 200, 2, 200]);
        assert_eq!(run.consumers, 2);
        assert!(run.handed >= 60, "{run:?}");
        assert!(run.commits > 0, "{run:?}");
    }

    #[test]
    fn a_kip848_group_hands_records_out_and_commits() {
        let run = consumer(&[1, 0, 1, 0, 0, 2, 200, 8, 0, 2, 200, 2, 200]);
        assert_eq!(run.consumers, 2);
        assert!(run.handed >= 60, "{run:?}");
        assert!(run.commits > 0, "{run:?}");
    }

    /// A consumer whose application stopped calling past `max.poll.interval.ms` leaves the
    /// group, its member telling it the partitions are lost; the coordinator hands them to
    /// another before the application calls again and hears of it (fuzz target `consumer`).
    #[test]
    fn partitions_lost_by_an_application_away_may_be_another_consumers_before_it_hears() {
        let input = [
            0x0c, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc8, 0x02, 0xc8, 0x01, 0x28, 0x06, 0xc8, 0x02,
            0x02, 0xc8, 0x33, 0x08, 0xc8, 0xfe, 0xff, 0xff, 0xff, 0x00, 0x04, 0x02, 0xc8, 0x08,
            0x00, 0x08, 0x81, 0x02, 0xc8, 0x0a, 0x01, 0x02, 0xc8, 0x02, 0xc8, 0x09, 0x00, 0x02,
            0xc8,
        ];
        consumer(&input);
    }

    /// The breaker closed after a failed dead-letter write stopped the run, then the run
    /// starts again: the work the closing handed out is void, asked for again by the new run
    /// (fuzz target `processor`; the simulation kept the old work as out).
    #[test]
    fn processor_a_run_after_closing_the_breaker_asks_for_its_work_again() {
        processor(&[6, 0, 2, 3, 0, 5, 0, 3, 0, 251, 247, 8]);
    }

    /// Records arriving while a record is out: the `Processor` never calls the consumer then
    /// (fuzz target `processor`, whose interpreter first fed them).
    #[test]
    fn processor_records_arrive_only_between_records() {
        let run = processor(&[5, 0, 4, 0, 1, 7, 0, 6, 20, 0, 4, 1, 0, 1, 0]);
        assert_eq!(run.stored, 2, "{run:?}");
    }

    #[test]
    fn a_processor_retries_dead_letters_and_stores() {
        // Tolerance all with a dead-letter topic, 3 attempts: 4 records of partition 0; the
        // first done, the second fails retriably, is retried after the backoff and done, the
        // third fails for good and is dead-lettered, the fourth done.
        let run = processor(&[0b1010, 0, 6, 1, 0, 2, 0, 6, 10, 1, 0, 3, 0, 4, 0, 1, 0]);
        assert_eq!(run.stored, 4, "{run:?}");
        assert_eq!(run.retries, 1, "{run:?}");
        assert_eq!(run.dead_lettered, 1, "{run:?}");
    }
}
