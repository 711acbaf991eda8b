//! What kcon's simulations and fuzz targets drive (the feature `fuzzing`, hidden; no API
//! promise): the consumer's machine and its sans-IO driver ([`consumer`]), which kcon-sim's
//! whole-consumer simulation runs with the other machines as its parts, the share consumer's
//! ([`share`]), for a share group's members to be run the same way, and the record processor's policy
//! machine on its driver (`policy::machine::sim`, [`processor`]), driven by operations read
//! from bytes, the processor's commit metadata ([`offset_metadata`]), read and written, and
//! its scheduler of records by ordering unit ([`ordering`]).

use std::collections::BTreeMap;
use std::time::Duration;

use kcon_core::TopicPartition;

/// The consumer's machine and the driver the `Consumer` runs it on, for a shell of another
/// kind: kcon-sim's whole-consumer simulation implements [`Parts`](consumer::Parts) with the
/// group member, the commit machine and the fetch loop on a virtual clock, and feeds the
/// [`Driver`](consumer::Driver) the inputs its scheduled messages bring.
pub mod consumer {
    pub use crate::consumer::driver::{Answer, CloseTurn, Driver, FetchInput, Got, Parts, Turn};
    pub use crate::consumer::machine::{
        Command, CommittedOffsets, ConsumerMachine, MachineOptions, Step, StepAnswer,
    };
    pub use crate::metrics::{LagInputs, MetricsState};
}

/// The share consumer's machine and the driver the `ShareConsumer` runs it on, for a shell of
/// another kind: kcon-sim's share simulation implements [`Parts`](share::Parts) with the group
/// member (under `GroupProtocol::Share`) and the share fetch machine on a virtual clock
/// (`kcon_sim::share_consumer::ShareParts`), and its model applications call the
/// [`Driver`](share::Driver) as applications call the `ShareConsumer`, feeding it the inputs
/// its scheduled messages bring.
pub mod share {
    pub use crate::share::ShareMetrics;
    pub use crate::share::driver::{Driver, Parts, Turn};
    pub use crate::share::machine::{Command, OUTCOMES_KEPT, ShareConsumerMachine};
}

/// At most this many ops are read.
const OPS: usize = 400;

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
            .outs
            .front()
            .map(|o| (o.record.topic_partition(), o.record.offset, o.dead_letter));
        match op {
            0 => {
                let part = tp(at);
                if !stopped && !s.is_paused(at) && s.outs.is_empty() {
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
                            cause: crate::error::Cause::Broker,
                            reason: "the dead-letter topic's leader is unavailable".to_owned(),
                        }));
                    }
                }
            }
            6 => {
                if s.outs.is_empty() {
                    s.advance(Duration::from_millis(u64::from(arg) * 20));
                }
            }
            7 => {
                let part = tp(at);
                if s.w.owned.contains(&part) && s.outs.is_empty() {
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
        if let Some(o) = s.outs.front() {
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

/// What a [`processor_concurrent`] run did, for tests that check a seed does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrentRun {
    /// The most records out at once.
    pub most_out: usize,
    /// Work answered as done, before the closing drain.
    pub done: usize,
    /// Retries.
    pub retried: usize,
    /// Revocations held and released.
    pub released: usize,
    /// Partitions paused for the buffer's bound.
    pub pressed: usize,
}

/// Runs the record processor's policy machine with records side by side
/// (`processing.ordering`, `processing.max.concurrency`) on its driver, on a virtual clock,
/// over `data`; panics when an invariant breaks.
///
/// The simulation checks after every step that at most `processing.max.concurrency` records
/// are out and never two of one ordering unit, that a unit's records start in offset order, that
/// a stored offset never passes a record not done with and never goes back, that what its
/// metadata names was done with, and that a partition is released only while its revocation is
/// held. At the end, with every record answered as done and every retry come due, each partition
/// still owned is stored to one past the last record fed to it.
///
/// The input: a setup byte, bits 0-1 the ordering modulo 3 (`partition`, `key`, `unordered`),
/// bits 2-3 the concurrency (1, 2, 5, 16), bits 4-5 `processing.max.buffered.records` (3, 8,
/// 64, 1000), bit 6 `errors.tolerance=all` with a dead-letter topic, bit 7
/// `processing.max.buffered.records.per.key=2` (else its default); backoff 50 ms. Then
/// operations, an op byte and an argument byte each, the op modulo 9: 0-1 records of partition 0
/// or 1 (argument bit 0) arrive, 1 to 6 of them (bits 1-3), each reading a byte for its key
/// (`a` to `e`, or none), unless the partition is paused or revoking; 2-3 the work out picked by
/// the argument is done; 4 it fails retriably; 5 it fails for good; 6 the clock moves on by
/// the argument × 10 ms; 7 the partition of bit 0 begins revoking (held until released, then it
/// goes) or, with bit 1, is lost; 8 the processor runs again after a stop.
pub fn processor_concurrent(data: &[u8]) -> ConcurrentRun {
    use crate::policy::Outcome;
    use crate::policy::machine_sim::{A, B, Sim, failure, tp};

    let mut bytes = Bytes(data);
    let setup = bytes.byte();
    let ordering = ["partition", "key", "unordered"][usize::from(setup & 3) % 3];
    let concurrency = ["1", "2", "5", "16"][usize::from((setup >> 2) & 3)];
    let buffered = ["3", "8", "64", "1000"][usize::from((setup >> 4) & 3)];
    let mut config = vec![
        ("processing.ordering", ordering),
        ("processing.max.concurrency", concurrency),
        ("processing.max.buffered.records", buffered),
        ("errors.retry.backoff.ms", "50"),
        ("errors.retry.delay.max.ms", "50"),
        ("errors.retry.max.attempts", "3"),
    ];
    if setup & 128 != 0 {
        config.push(("processing.max.buffered.records.per.key", "2"));
    }
    if setup & 64 != 0 {
        config.push(("errors.tolerance", "all"));
        config.push(("errors.deadletterqueue.topic.name", "dlq"));
    }
    let mut s = Sim::new(&config);
    let mut run = ConcurrentRun::default();
    // Per partition: the offset after the last fed.
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut revoking: Vec<(&str, i32)> = Vec::new();
    let mut stopped = false;
    let mut ops = 0;
    while !bytes.0.is_empty() && ops < OPS {
        ops += 1;
        let op = bytes.byte() % 9;
        let arg = bytes.byte();
        let at = if arg & 1 == 0 { A } else { B };
        let pick = |s: &Sim| usize::from(arg) % s.outs.len().max(1);
        match op {
            0 | 1 => {
                let part = tp(at);
                if !s.is_paused(at) && !revoking.contains(&at) {
                    let start = *next.entry(part.clone()).or_insert(0);
                    let n = i64::from((arg >> 1) & 7) % 6 + 1;
                    let records: Vec<(i64, Option<&'static str>)> = (start..start + n)
                        .map(|o| {
                            (
                                o,
                                ["a", "b", "c", "d", "e"]
                                    .get(usize::from(bytes.byte() % 6))
                                    .copied(),
                            )
                        })
                        .collect();
                    s.feed_keyed(at, records);
                    next.insert(part, start + n);
                }
            }
            2..=5 if !s.outs.is_empty() => {
                let outcome = match op {
                    4 => Outcome::Failed(failure(true)),
                    5 => Outcome::Failed(failure(false)),
                    _ => Outcome::Done,
                };
                s.answer_index(pick(&s), outcome);
                run.done += usize::from(op < 4);
                run.retried += usize::from(op == 4);
            }
            6 => s.advance(Duration::from_millis(u64::from(arg) * 10)),
            7 => {
                let part = tp(at);
                if s.w.owned.contains(&part) && !revoking.contains(&at) {
                    if arg & 2 == 0 {
                        s.revoke(at);
                        revoking.push(at);
                    } else {
                        s.leave(at);
                        next.remove(&part);
                    }
                }
            }
            8 if stopped => {
                s.run_again();
                stopped = false;
            }
            _ => {}
        }
        if s.take_stop().is_some() {
            stopped = true;
        }
        // A revocation released lets the partition go.
        let released: Vec<(&str, i32)> = revoking
            .iter()
            .copied()
            .filter(|at| !s.w.held.contains(&tp(*at)))
            .collect();
        for at in released {
            revoking.retain(|r| *r != at);
            s.leave(at);
            next.remove(&tp(at));
            run.released += 1;
        }
        run.most_out = run.most_out.max(s.outs.iter().filter(|o| !o.void).count());
        run.pressed += [A, B].iter().filter(|p| s.is_paused(**p)).count();
    }
    // The end: every record done, every retry due, until nothing is out.
    for _ in 0..10_000 {
        if stopped {
            s.run_again();
            stopped = false;
        }
        if s.outs.is_empty() {
            if kcon_core::Machine::poll_timeout(s.m()).is_none() {
                break;
            }
            s.wait_for_retry();
            continue;
        }
        s.answer_index(0, Outcome::Done);
        if s.take_stop().is_some() {
            stopped = true;
        }
        for at in std::mem::take(&mut revoking) {
            if s.w.held.contains(&tp(at)) {
                revoking.push(at);
            } else {
                s.leave(at);
                next.remove(&tp(at));
            }
        }
    }
    assert!(s.outs.is_empty(), "work still out after the drain");
    // A revocation released as the drain ended lets its partition go: its records not done
    // with are its next owner's.
    for at in revoking {
        if !s.w.held.contains(&tp(at)) {
            s.leave(at);
            next.remove(&tp(at));
        }
    }
    for (part, end) in &next {
        if !s.w.owned.contains(part) {
            continue;
        }
        assert_eq!(
            s.w.stored.get(part).map(|o| o + 1),
            Some(*end),
            "{part}: not stored to its end"
        );
    }
    run
}

/// What an [`offset_metadata`] run did, for tests that check a seed does something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OffsetMetadataRun {
    /// A text to read was kcon's, written for the committed offset, and read.
    pub read: bool,
    /// Texts written (and checked).
    pub written: usize,
    /// Of those, texts the bound cut short.
    pub cut: usize,
}

/// Reads or writes the commit metadata in which the record processor carries the records
/// finished above a partition's committed offset (`policy::progress`) from `data`; panics when
/// a check fails.
///
/// The first byte picks. Even: a text to read, as a broker could answer it: the next eight
/// bytes are the committed offset (little-endian, zero-filled when short), the rest the
/// metadata (UTF-8, invalid sequences replaced). It must read or be refused without panicking,
/// and what reads never counts the committed offset or an offset past the span's end as
/// finished. Odd: a partition made of the bytes that follow, one op each: bit 0 clear receives
/// the next record after a gap of bits 1-3 (markers, compaction), bit 0 set finishes the
/// pending record the other bits pick; after every 16th op, and at the end, the metadata is
/// written within a bound of eight times the op byte (4,096 at the end) and checked: within the
/// bound, read back for the committable offset, no pending record counted as finished, and,
/// when the text says it is complete, every record finished above the committed offset in it.
pub fn offset_metadata(data: &[u8]) -> OffsetMetadataRun {
    use crate::policy::progress::{FinishedAbove, Progress, check_metadata};

    let mut run = OffsetMetadataRun::default();
    let Some((&mode, rest)) = data.split_first() else {
        return run;
    };
    if mode & 1 == 0 {
        let (head, text) = rest.split_at(rest.len().min(8));
        let mut le = [0u8; 8];
        le[..head.len()].copy_from_slice(head);
        let committed = i64::from_le_bytes(le);
        if let Ok(Some(read)) = FinishedAbove::read(committed, &String::from_utf8_lossy(text)) {
            run.read = true;
            assert!(
                !read.contains(committed),
                "the committed offset counted as finished"
            );
            assert!(
                read.last() == i64::MAX || !read.contains(read.last() + 1),
                "an offset past the span counted as finished"
            );
        }
        return run;
    }
    let mut progress = Progress::default();
    let mut pending: Vec<i64> = Vec::new();
    let mut next: i64 = 0;
    for (i, &op) in rest.iter().take(OPS * 4).enumerate() {
        if op & 1 == 0 {
            next += i64::from((op >> 1) & 7);
            progress.received(next);
            pending.push(next);
            next += 1;
        } else if !pending.is_empty() {
            let which = usize::from(op >> 1) % pending.len();
            progress.finished(pending.swap_remove(which));
        }
        if i % 16 == 15 {
            let written = check_metadata(&progress, usize::from(op) * 8);
            run.written += 1;
            run.cut += usize::from(!written.complete);
        }
    }
    let written = check_metadata(&progress, 4096);
    run.written += 1;
    run.cut += usize::from(!written.complete);
    run
}

pub use crate::policy::ordering::OrderingRun;

/// Runs the record processor's scheduler (which record may start next when records run
/// concurrently, `policy::ordering`) over operations read from `data`; panics when a check
/// fails. See `policy::ordering::check_run` for the input's format and the checks: no unit
/// ever runs two records, a unit's records start in offset order, the counts agree, and every
/// record owed finishes exactly once.
pub fn ordering(data: &[u8]) -> OrderingRun {
    crate::policy::ordering::check_run(data)
}

#[cfg(test)]
mod concurrent_tests {
    use super::*;

    /// A partition revoking while a record of it failed for good under `errors.tolerance=none`
    /// (the run stopped): released when the next run voids its work, as the drain ends; it
    /// goes, its records not done with its next owner's (fuzz target `processor_concurrent`,
    /// whose interpreter then checked it was stored to its end).
    #[test]
    fn a_partition_released_as_the_drain_ends_goes() {
        let mut data = vec![0x0a, 0x0a];
        data.extend([0xe8; 8]);
        data.push(0xef);
        data.extend([0xe8; 17]);
        data.push(0xef);
        data.extend([0xe8; 3]);
        let run = processor_concurrent(&data);
        assert_eq!(run.released, 0, "released only as the drain ends: {run:?}");
    }

    /// Random runs of the processor with records side by side, through the interpreter the
    /// fuzz target `processor_concurrent` runs (its checks after every step and at the end),
    /// over 300 pseudo-random inputs.
    #[test]
    fn random_concurrent_runs_keep_every_rule() {
        let mut total = ConcurrentRun::default();
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let data: Vec<u8> = (0..rng.usize(1..1200)).map(|_| rng.u8(..)).collect();
            let run = processor_concurrent(&data);
            total.most_out = total.most_out.max(run.most_out);
            total.done += run.done;
            total.retried += run.retried;
            total.released += run.released;
            total.pressed += run.pressed;
        }
        assert!(
            total.most_out == 16 && total.done > 5_000 && total.retried > 500,
            "{total:?}"
        );
        assert!(total.released > 100 && total.pressed > 100, "{total:?}");
    }
}
