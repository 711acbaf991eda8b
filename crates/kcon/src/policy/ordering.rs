//! Which record may start next when records run concurrently (`processing.ordering`,
//! `processing.max.concurrency`): the records waiting are kept in ordering units, each unit's
//! records start one after another in offset order, never two of a unit at once, and at most
//! `max_running` records run in all. The second part of the processor's concurrency, beside
//! `progress.rs`; the policy machine is built on both next.
//!
//! A unit is what must keep its order:
//! - `partition`: the partition (today's order: a partition's records one after another,
//!   partitions side by side);
//! - `key`: a key within its partition (a producer's partitioner sends a key to one partition);
//!   a record without a key is a unit of its own, ordered with nothing (a null key is what
//!   producers send when order does not matter to them);
//! - `unordered`: every record a unit of its own.
//!
//! A unit's head that failed retriably waits for its retry with its unit held back and every
//! other unit going on: a retry delays its key only (under `partition`, its partition). Units
//! become ready in the order their heads can start (a unit whose head finishes goes behind the
//! units ready before it), so no busy key starves another.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use kcon_core::TopicPartition;

use crate::record::Record;

/// How records are ordered (`processing.ordering`).
pub(crate) use crate::config::ProcessingOrder as Ordering;

/// What keeps its order: see the module's documentation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Unit {
    /// A partition, under `partition`.
    Partition(TopicPartition),
    /// A key of a partition, under `key`.
    Key(TopicPartition, Bytes),
    /// One record (`unordered`, or a record without a key under `key`), by its offset.
    Record(TopicPartition, i64),
}

impl Unit {
    /// The partition the unit's records are of.
    pub(crate) fn partition(&self) -> &TopicPartition {
        match self {
            Unit::Partition(tp) | Unit::Key(tp, _) | Unit::Record(tp, _) => tp,
        }
    }
}

impl Ordering {
    /// The unit `record` belongs to.
    pub(crate) fn unit(self, record: &Record) -> Unit {
        let tp = record.topic_partition();
        match (self, &record.key) {
            (Ordering::Partition, _) => Unit::Partition(tp),
            (Ordering::Key, Some(key)) => Unit::Key(tp, key.clone()),
            (Ordering::Key, None) | (Ordering::Unordered, _) => Unit::Record(tp, record.offset),
        }
    }
}

/// One unit's records waiting, its head first.
#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<Record>,
    /// The head is running.
    running: bool,
    /// The head waits for its retry until then.
    retry_at: Option<Instant>,
}

impl Queue {
    /// Whether the head may start.
    fn startable(&self) -> bool {
        !self.records.is_empty() && !self.running && self.retry_at.is_none()
    }
}

/// The records waiting and running, by unit (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Scheduler {
    ordering: Ordering,
    max_running: usize,
    units: BTreeMap<Unit, Queue>,
    /// Units whose head may start, in the order they became ready. An entry whose unit has
    /// since gone or started is passed over when met.
    ready: VecDeque<Unit>,
    /// Retries waiting, by when they are due.
    retries: BTreeSet<(Instant, Unit)>,
    /// Heads running.
    running: usize,
    /// Records not running, per partition: waiting their turn or their retry.
    waiting: BTreeMap<TopicPartition, usize>,
}

impl Scheduler {
    /// A scheduler ordering records as `ordering` says, at most `max_running` (at least one)
    /// running at once.
    pub(crate) fn new(ordering: Ordering, max_running: usize) -> Scheduler {
        Scheduler {
            ordering,
            max_running: max_running.max(1),
            units: BTreeMap::new(),
            ready: VecDeque::new(),
            retries: BTreeSet::new(),
            running: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// `record` arrived: it waits behind its unit's records. How many of its unit's records
    /// wait unstarted now.
    pub(crate) fn push(&mut self, record: Record) -> usize {
        let unit = self.ordering.unit(&record);
        *self.waiting.entry(unit.partition().clone()).or_default() += 1;
        let queue = self.units.entry(unit.clone()).or_default();
        queue.records.push_back(record);
        let len = queue.records.len();
        let waiting = len - usize::from(queue.running);
        if len == 1 && queue.startable() {
            self.ready.push_back(unit);
        }
        waiting
    }

    /// The next record to start, if one may: fewer than `max_running` run and a unit's head
    /// is ready. It runs until [`finished`](Self::finished) or [`retry`](Self::retry).
    pub(crate) fn start(&mut self) -> Option<(Unit, Record)> {
        if self.running >= self.max_running {
            return None;
        }
        while let Some(unit) = self.ready.pop_front() {
            let Some(queue) = self.units.get_mut(&unit) else {
                continue;
            };
            if !queue.startable() {
                continue;
            }
            let Some(record) = queue.records.front().cloned() else {
                continue;
            };
            queue.running = true;
            self.running += 1;
            self.less_waiting(unit.partition());
            return Some((unit, record));
        }
        None
    }

    /// The running head of `unit` is done with (processed, skipped, dead-lettered, or
    /// released): the unit's next record may start.
    pub(crate) fn finished(&mut self, unit: &Unit) {
        let Some(queue) = self.units.get_mut(unit) else {
            return;
        };
        if !queue.running {
            return;
        }
        queue.running = false;
        queue.records.pop_front();
        self.running -= 1;
        if queue.records.is_empty() {
            self.units.remove(unit);
        } else {
            self.ready.push_back(unit.clone());
        }
    }

    /// The running head of `unit` failed retriably: it starts again at `at`, and nothing else
    /// of its unit before it.
    pub(crate) fn retry(&mut self, unit: &Unit, at: Instant) {
        let Some(queue) = self.stop_running(unit) else {
            return;
        };
        queue.retry_at = Some(at);
        self.retries.insert((at, unit.clone()));
    }

    /// The running head of `unit` stops running without finishing (a stop, a dead letter to
    /// write next, a run cancelled): it is the first to start again, before the units ready.
    pub(crate) fn again(&mut self, unit: &Unit) {
        let Some(queue) = self.stop_running(unit) else {
            return;
        };
        if queue.startable() {
            self.ready.push_front(unit.clone());
        }
    }

    /// The running head of `unit` stops running without finishing and waits again (a retry,
    /// or [`again`](Self::again)); its queue, or none when nothing of it runs.
    fn stop_running(&mut self, unit: &Unit) -> Option<&mut Queue> {
        let queue = self.units.get_mut(unit).filter(|q| q.running)?;
        queue.running = false;
        self.running -= 1;
        *self.waiting.entry(unit.partition().clone()).or_default() += 1;
        self.units.get_mut(unit)
    }

    /// The head of `unit`: the record running, or the next to start.
    pub(crate) fn head(&self, unit: &Unit) -> Option<&Record> {
        self.units.get(unit)?.records.front()
    }

    /// Takes `tp`'s records that are not running, in offset order: the heads running stay,
    /// with nothing behind them (a share group's records handed back when a run stops).
    pub(crate) fn take_idle(&mut self, tp: &TopicPartition) -> Vec<Record> {
        let units: Vec<Unit> = self
            .units
            .keys()
            .filter(|u| u.partition() == tp)
            .cloned()
            .collect();
        let mut taken = Vec::new();
        for unit in units {
            let Some(queue) = self.units.get_mut(&unit) else {
                continue;
            };
            let keep = usize::from(queue.running);
            taken.extend(queue.records.drain(keep..));
            if let Some(at) = queue.retry_at.take() {
                self.retries.remove(&(at, unit.clone()));
            }
            if queue.records.is_empty() {
                self.units.remove(&unit);
            }
        }
        self.waiting.remove(tp);
        self.ready.retain(|u| u.partition() != tp);
        taken.sort_by_key(|r| r.offset);
        taken
    }

    /// Time passed: the retries due at `now` may start, those due together in the order of
    /// their units (a partition's, then by key).
    pub(crate) fn wake(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(first) = self.retries.first()
            && first.0 <= now
        {
            let Some((_, unit)) = self.retries.pop_first() else {
                break;
            };
            due.push(unit);
        }
        due.sort();
        for unit in due {
            if let Some(queue) = self.units.get_mut(&unit) {
                queue.retry_at = None;
                if queue.startable() {
                    self.ready.push_back(unit);
                }
            }
        }
    }

    /// When the next retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retries.first().map(|(at, _)| *at)
    }

    /// `partitions` left: their records go, running or not. Returns how many were running
    /// (their work is void).
    pub(crate) fn leaving(&mut self, partitions: &[TopicPartition]) -> usize {
        let gone: Vec<Unit> = self
            .units
            .keys()
            .filter(|u| partitions.contains(u.partition()))
            .cloned()
            .collect();
        let mut running = 0;
        for unit in gone {
            if let Some(queue) = self.units.remove(&unit) {
                running += usize::from(queue.running);
                if let Some(at) = queue.retry_at {
                    self.retries.remove(&(at, unit));
                }
            }
        }
        self.running -= running;
        for tp in partitions {
            self.waiting.remove(tp);
        }
        self.ready.retain(|u| !partitions.contains(u.partition()));
        running
    }

    /// Heads running.
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Records of `tp` not running: waiting their turn or their retry.
    pub(crate) fn waiting(&self, tp: &TopicPartition) -> usize {
        self.waiting.get(tp).copied().unwrap_or(0)
    }

    /// Records waiting behind an earlier record of their unit (running, waiting for its retry,
    /// or next to start), all partitions together: held back by their order, not by the
    /// places in the handler.
    pub(crate) fn behind(&self) -> usize {
        self.units
            .values()
            .map(|q| q.records.len().saturating_sub(1))
            .sum()
    }

    /// Records not running, all partitions together.
    pub(crate) fn waiting_total(&self) -> usize {
        self.waiting.values().sum()
    }

    /// How many records `unit` holds, its running head included.
    pub(crate) fn unit_len(&self, unit: &Unit) -> usize {
        self.units.get(unit).map_or(0, |q| q.records.len())
    }

    fn less_waiting(&mut self, tp: &TopicPartition) {
        if let Some(n) = self.waiting.get_mut(tp) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(tp);
            }
        }
    }
}

/// What a run of the scheduler over operations did (`fuzzing::ordering`), for tests that check
/// an input does something.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrderingRun {
    /// Records started (a retry's included).
    pub started: usize,
    /// Records finished.
    pub finished: usize,
    /// Records retried.
    pub retried: usize,
    /// Records a leaving partition took, running or not.
    pub left: usize,
}

/// Runs a scheduler over operations read from `data` and panics when a check fails (the unit
/// tests' random runs and the fuzz target `ordering`).
///
/// The first byte sets the ordering (its value modulo 3: `partition`, `key`, `unordered`) and
/// the limit (bits 2-3: 1, 2, 5 or 64 running). Then each operation is an op byte and an
/// argument byte, the op modulo 10: 0-2 push 1 to 4 records (argument bits 1-2) to partition 0
/// or 1 (bit 0) after the last one pushed there, each reading one more byte for its key (bits
/// 0-1: `a`, `b`, `c` or none) and the gap before it (bit 2: 1 or 2 offsets); 3-5 finish the
/// running record the argument picks; 6 retry it after the argument × 2 + 1 ms; 7-8 let the
/// argument × 2 ms pass and wake; 9 the partition of bit 0 leaves (its records read again by
/// whoever takes it, so no longer owed). After every operation: every record a unit starts is
/// of that unit, never two of a unit run at once, a unit starts its records in offset order (a
/// retry starts the same one again), at most the limit run and the counts agree. At the end,
/// with every retry due and every record finished as it runs, nothing waits and every record
/// pushed and not taken by a leaving partition finished exactly once.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn check_run(data: &[u8]) -> OrderingRun {
    use std::time::Duration;

    let mut bytes = data.iter().copied();
    let setup = bytes.next().unwrap_or(0);
    let ordering =
        [Ordering::Partition, Ordering::Key, Ordering::Unordered][usize::from(setup % 3)];
    let max = [1, 2, 5, 64][usize::from((setup >> 2) & 3)];
    let mut s = Scheduler::new(ordering, max);
    let mut checked = Checked {
        ordering,
        max,
        running: BTreeMap::new(),
        last_started: BTreeMap::new(),
        run: OrderingRun::default(),
    };
    let tp = |p: u8| TopicPartition::new("orders", i32::from(p));
    let mut now = Instant::now();
    let mut next = [0i64; 2];
    let mut owed: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
    let mut finished: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
    while let (Some(op), Some(arg)) = (bytes.next(), bytes.next()) {
        let picked = checked
            .running
            .keys()
            .nth(usize::from(arg) % checked.running.len().max(1))
            .cloned();
        match op % 10 {
            0..=2 => {
                let p = arg & 1;
                for _ in 0..=((arg >> 1) & 3) {
                    let b = bytes.next().unwrap_or(0);
                    let offset = next[usize::from(p)];
                    next[usize::from(p)] += 1 + i64::from((b >> 2) & 1);
                    let key = ["a", "b", "c"]
                        .get(usize::from(b & 3))
                        .map(|k| Bytes::from_static(k.as_bytes()));
                    s.push(Record::new("orders", i32::from(p), offset, key, None));
                    owed.insert((tp(p), offset));
                }
            }
            3..=5 => {
                if let Some(unit) = picked {
                    let done = checked
                        .running
                        .remove(&unit)
                        .unwrap_or_else(|| unreachable!());
                    assert!(finished.insert(done.clone()), "{done:?} finished twice");
                    checked.run.finished += 1;
                    s.finished(&unit);
                }
            }
            6 => {
                if let Some(unit) = picked {
                    checked.running.remove(&unit);
                    checked.run.retried += 1;
                    s.retry(&unit, now + Duration::from_millis(u64::from(arg) * 2 + 1));
                }
            }
            7 | 8 => {
                now += Duration::from_millis(u64::from(arg) * 2);
                s.wake(now);
            }
            _ => {
                let gone = tp(arg & 1);
                let waiting = s.waiting(&gone);
                let running = checked
                    .running
                    .keys()
                    .filter(|u| *u.partition() == gone)
                    .count();
                assert_eq!(s.leaving(std::slice::from_ref(&gone)), running);
                checked.run.left += waiting + running;
                checked.running.retain(|u, _| *u.partition() != gone);
                checked.last_started.retain(|u, _| *u.partition() != gone);
                owed.retain(|(p, o)| *p != gone || finished.contains(&(p.clone(), *o)));
            }
        }
        checked.start(&mut s);
        let waiting: usize = (0..2).map(|p| s.waiting(&tp(p))).sum();
        assert_eq!(waiting, s.waiting_total());
    }
    loop {
        s.wake(now + Duration::from_secs(3600));
        checked.start(&mut s);
        let Some((unit, done)) = checked.running.pop_first() else {
            break;
        };
        assert!(finished.insert(done.clone()), "{done:?} finished twice");
        checked.run.finished += 1;
        s.finished(&unit);
    }
    assert_eq!(s.waiting_total(), 0, "records wait with nothing running");
    assert!(owed.is_subset(&finished), "a record lost");
    checked.run
}

/// What [`check_run`] knows of the records running, and checks as they start.
#[cfg(any(test, feature = "fuzzing"))]
struct Checked {
    ordering: Ordering,
    max: usize,
    running: BTreeMap<Unit, (TopicPartition, i64)>,
    last_started: BTreeMap<Unit, i64>,
    run: OrderingRun,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Checked {
    /// Starts what may start, checking each.
    fn start(&mut self, s: &mut Scheduler) {
        while let Some((unit, r)) = s.start() {
            assert_eq!(self.ordering.unit(&r), unit);
            let at = (r.topic_partition(), r.offset);
            assert!(
                self.running.insert(unit.clone(), at).is_none(),
                "two records of {unit:?} at once"
            );
            if let Some(&before) = self.last_started.get(&unit) {
                assert!(r.offset >= before, "{unit:?} went back to {}", r.offset);
            }
            self.last_started.insert(unit, r.offset);
            self.run.started += 1;
        }
        assert!(self.running.len() <= self.max && self.running.len() == s.running());
    }
}

#[cfg(test)]
mod tests;
