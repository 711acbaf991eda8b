//! Per-partition batches, with no IO: which batch a record joins, when a batch is ready, when
//! it expires. The sender task asks it what to send and tells it what came back.
//!
//! Each partition has a queue of batches, oldest first. Only the head is ever sent, and only
//! one at a time: a partition has at most one batch in flight, so a retried batch can never
//! land behind a later one (what the Java client gets only with
//! `max.in.flight.requests.per.connection=1` or idempotence), and with idempotence a batch's
//! sequence numbers are those the broker expects next. Batches of other partitions on the
//! same broker go in the same request, and several requests per broker may be in flight.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use kcon_codec::compression::Compression;
use kcon_codec::records::{EncodeError, NewRecord, RecordBatchBuilder, with_producer};
use kcon_core::TopicPartition;
use std::time::Instant;

use crate::buffers::Buffers;
use crate::error::ProduceError;

/// The most record bytes a partition's first batch makes room for at once (the Java client's
/// `batch.size` default): beyond them it grows as records come. Later batches make room for
/// what the partition's last batch took.
const FIRST_ROOM: usize = 16_384;

/// How many full batches' buffers (`batch.size` each) the producer keeps for the next batches
/// at most: about what a few partitions' batches in flight and the ones filling behind them
/// take, so that a producer writing to a handful of partitions at full speed opens every
/// batch in a buffer used before.
const KEPT_BATCHES: usize = 8;

/// The most bytes of buffers an accumulator of `batch.size` keeps for its next batches:
/// [`KEPT_BATCHES`] full batches, and no more than `buffer.memory`, which the records they
/// held could not take more of.
pub(crate) fn buffers_kept(batch_size: usize, buffer_memory: usize) -> usize {
    batch_size.saturating_mul(KEPT_BATCHES).min(buffer_memory)
}

/// When a batch is full, and how long one that is not waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    /// `batch.num.messages`.
    pub(crate) max_records: usize,
    /// `batch.size`, in [`size_upper_bound`](crate::ProducerRecord::size_upper_bound) units.
    pub(crate) max_bytes: usize,
    /// `linger.ms`.
    pub(crate) linger: Duration,
}

/// The producer id, epoch and base sequence a batch was encoded with (idempotence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequenced {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    /// Written inside a transaction (the batch's transactional attribute).
    pub(crate) transactional: bool,
}

/// One batch of one partition: the records (encoded on first send), with `T` per record for
/// whoever waits on it.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    builder: RecordBatchBuilder,
    pub(crate) records: Vec<T>,
    /// The records' size bounds added up.
    pub(crate) bytes: usize,
    /// When the batch was opened: `linger.ms` counts from here.
    pub(crate) created: Instant,
    /// When it fails if not acknowledged: its first record's arrival plus `delivery.timeout.ms`.
    pub(crate) deadline: Instant,
    /// Sends that failed and were retried.
    pub(crate) retries: u32,
    /// No send before this (the retry backoff).
    pub(crate) retry_at: Option<Instant>,
    /// The batch as last sent, built when first sent and kept (in place of the builder's
    /// records) for as long as the batch lives: closed to more records from then on. A retry
    /// sends the same bytes.
    built: Option<Bytes>,
    /// The sequencing `built` carries, while it is still the one to send with: forgotten after
    /// a new producer id, when the next send gives `built` the new one.
    sent_with: Option<Option<Sequenced>>,
    /// The failure being retried, for the error if time runs out.
    pub(crate) last_error: Option<ProduceError>,
    /// Where the builder's buffer goes back to once the batch is done.
    buffers: Buffers,
}

impl<T> Batch<T> {
    /// A batch with room for `room` bytes of records, in a buffer kept from a batch before
    /// when one of about that size is.
    fn new(
        compression: Compression,
        now: Instant,
        deadline: Instant,
        buffers: &Buffers,
        room: usize,
        records: Vec<T>,
    ) -> Self {
        let mut builder = RecordBatchBuilder::new(0)
            .compression(compression)
            .with_buffer(buffers.take(room.saturating_add(RecordBatchBuilder::HEADER_LEN)));
        builder.reserve(room);
        Batch {
            builder,
            records,
            bytes: 0,
            created: now,
            deadline,
            retries: 0,
            retry_at: None,
            built: None,
            sent_with: None,
            last_error: None,
            buffers: buffers.clone(),
        }
    }

    fn is_full(&self, limits: &BatchLimits) -> bool {
        self.records.len() >= limits.max_records || self.bytes >= limits.max_bytes
    }

    /// Whether `size` more bytes fit: an empty batch takes any record, however large.
    fn fits(&self, size: usize, limits: &BatchLimits) -> bool {
        self.records.is_empty()
            || (self.records.len() < limits.max_records
                && self.bytes.saturating_add(size) <= limits.max_bytes)
    }

    /// Encodes the batch (built once: when `sequenced` differs from what it was last sent with,
    /// after the producer id was reset, the built batch's producer fields are set anew, its
    /// records as they are) and returns the bytes to send. The records are kept built only:
    /// the builder's copy of them is let go once the batch is built.
    pub(crate) fn encode(&mut self, sequenced: Option<Sequenced>) -> Result<Bytes, EncodeError> {
        if let Some(built) = &self.built
            && self.sent_with == Some(sequenced)
        {
            return Ok(built.clone());
        }
        let (id, epoch, sequence, transactional) = sequenced.map_or((-1, -1, -1, false), |s| {
            (
                s.producer_id,
                s.producer_epoch,
                s.base_sequence,
                s.transactional,
            )
        });
        let bytes = match &self.built {
            Some(built) => with_producer(built, id, epoch, sequence, transactional).ok_or(
                EncodeError::Unsupported("a batch of its own that is not one"),
            )?,
            None => {
                let builder = std::mem::replace(&mut self.builder, RecordBatchBuilder::new(0));
                let (bytes, spare) = builder
                    .producer(id, epoch, sequence)
                    .transactional(transactional)
                    .finish_with(|buffer| self.buffers.wrap(buffer))?;
                if let Some(spare) = spare {
                    self.buffers.give(spare);
                }
                bytes
            }
        };
        self.built = Some(bytes.clone());
        self.sent_with = Some(sequenced);
        Ok(bytes)
    }

    /// The sequencing it was sent with, if it was sent by an idempotent producer.
    pub(crate) fn sequenced(&self) -> Option<Sequenced> {
        self.sent_with.flatten()
    }
}

#[derive(Debug)]
struct Queue<T> {
    batches: VecDeque<Batch<T>>,
    /// The head is in a request not answered yet.
    in_flight: bool,
    /// The records and bytes of the batch appended to last: what the next new batch makes
    /// room for, so that a partition whose batches fill to a megabyte allocates each once,
    /// not at every doubling from 16 KiB (each a copy of what it holds), and one whose
    /// batches hold a few records takes little.
    last: (usize, usize),
}

impl<T> Queue<T> {
    /// Appends a record of `size` bytes to the last batch, or to a `new` one when it is full,
    /// already sent, or the record does not fit. Returns whether the batch is now full.
    fn append(
        &mut self,
        limits: &BatchLimits,
        record: NewRecord<'_>,
        size: usize,
        item: T,
        new: impl FnOnce(usize, usize) -> Batch<T>,
    ) -> bool {
        let open = self
            .batches
            .back()
            .is_some_and(|b| b.built.is_none() && b.fits(size, limits));
        if !open {
            // Room for as many records as the last batch held, or, at first, for as many like
            // this one as `FIRST_ROOM` bytes hold, within the batch's limits; a batch that
            // takes more grows as it fills (a batch of a few records must not hold
            // `batch.size` of memory).
            let (last_records, last_bytes) = self.last;
            let first = limits.max_bytes.min(FIRST_ROOM) / size.max(1);
            let records = limits.max_records.min(first.max(last_records)).max(1);
            let bytes = records.saturating_mul(size).max(last_bytes);
            self.batches
                .push_back(new(limits.max_bytes.min(bytes), records));
        }
        // Invariant: a batch was pushed just above if there was none.
        let Some(batch) = self.batches.back_mut() else {
            return false;
        };
        batch.builder.push(record);
        batch.records.push(item);
        batch.bytes = batch.bytes.saturating_add(size);
        self.last = (batch.records.len(), batch.bytes);
        batch.is_full(limits)
    }
}

/// When the batches next change without outside help ([`Accumulator::wakes`]), after a given
/// instant: each the earliest over every partition, `None` when nothing of the kind is ahead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wakes {
    /// A head never sent, and not in flight, has lingered `linger.ms`.
    pub(crate) linger: Option<Instant>,
    /// A retried head's backoff is over.
    pub(crate) backoff: Option<Instant>,
    /// A batch not in flight reaches its deadline (`delivery.timeout.ms`).
    pub(crate) deadline: Option<Instant>,
}

impl Wakes {
    /// The earliest of them.
    #[cfg(test)]
    fn earliest(&self) -> Option<Instant> {
        [self.linger, self.backoff, self.deadline]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The partitions' queues, by topic and then by partition: in `TopicPartition`'s order, and
/// found with one comparison of topic names when one topic is written to, where a map keyed
/// by `TopicPartition` compared the name again at every step of its search (3.5 times a
/// record over six partitions). A topic without queues is removed with its last.
#[derive(Debug)]
struct Queues<T> {
    by_topic: BTreeMap<String, BTreeMap<i32, (TopicPartition, Queue<T>)>>,
    /// What the last batch of each partition without a queue took ([`Queue::last`]), for its
    /// next queue's first batch: a transactional producer's partitions empty at every commit,
    /// and each transaction's batch would otherwise start at [`FIRST_ROOM`] and grow, copied at
    /// every doubling. One entry per partition written to and idle.
    last: HashMap<TopicPartition, (usize, usize)>,
}

impl<T> Default for Queues<T> {
    fn default() -> Self {
        Queues {
            by_topic: BTreeMap::new(),
            last: HashMap::new(),
        }
    }
}

impl<T> Queues<T> {
    #[cfg(test)]
    fn get(&self, tp: &TopicPartition) -> Option<&Queue<T>> {
        Some(&self.by_topic.get(tp.topic.as_str())?.get(&tp.partition)?.1)
    }

    fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut Queue<T>> {
        Some(
            &mut self
                .by_topic
                .get_mut(tp.topic.as_str())?
                .get_mut(&tp.partition)?
                .1,
        )
    }

    fn insert(&mut self, tp: &TopicPartition, queue: Queue<T>) {
        let partitions = match self.by_topic.get_mut(tp.topic.as_str()) {
            Some(partitions) => partitions,
            None => self.by_topic.entry(tp.topic.clone()).or_default(),
        };
        partitions.insert(tp.partition, (tp.clone(), queue));
    }

    fn remove(&mut self, tp: &TopicPartition) {
        if let Some(partitions) = self.by_topic.get_mut(tp.topic.as_str()) {
            if let Some((tp, q)) = partitions.remove(&tp.partition) {
                self.last.insert(tp, q.last);
            }
            if partitions.is_empty() {
                self.by_topic.remove(tp.topic.as_str());
            }
        }
    }

    /// What `tp`'s last batch took, when it had a queue before: forgotten once asked, for the
    /// queue made with it keeps it from then on.
    fn take_last(&mut self, tp: &TopicPartition) -> (usize, usize) {
        self.last.remove(tp).unwrap_or((0, 0))
    }

    fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &Queue<T>)> {
        self.by_topic
            .values()
            .flat_map(|partitions| partitions.values().map(|(tp, q)| (tp, q)))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&TopicPartition, &mut Queue<T>)> {
        self.by_topic
            .values_mut()
            .flat_map(|partitions| partitions.values_mut().map(|(tp, q)| (&*tp, q)))
    }

    fn values(&self) -> impl Iterator<Item = &Queue<T>> {
        self.iter().map(|(_, q)| q)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Queue<T>> {
        self.iter_mut().map(|(_, q)| q)
    }

    /// Keeps the queues `keep` says, and the topics left with one.
    fn retain(&mut self, mut keep: impl FnMut(&Queue<T>) -> bool) {
        let last = &mut self.last;
        self.by_topic.retain(|_, partitions| {
            partitions.retain(|_, (tp, q)| {
                let kept = keep(q);
                if !kept {
                    last.insert(tp.clone(), q.last);
                }
                kept
            });
            !partitions.is_empty()
        });
    }

    fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }
}

/// Every partition's queue of batches.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    limits: BatchLimits,
    compression: Compression,
    queues: Queues<T>,
    /// The buffers of batches done, for the next ones.
    buffers: Buffers,
    /// The record lists of batches done, emptied, for the next ones: at most
    /// [`KEPT_BATCHES`]. A list of a few thousand records is past glibc's threshold for a
    /// map of its own (or is given back with the top of its heap), so a new one faults its
    /// pages in again, record by record.
    lists: Vec<Vec<T>>,
    /// The last [`wakes`](Accumulator::wakes) and the instant they were asked after, until the
    /// queues change: the task asks for them twice after each pass (whether it waits for a
    /// linger, and for how long it waits), and each answer scans every partition.
    wakes: Cell<Option<(Instant, Wakes)>>,
}

impl<T> Accumulator<T> {
    /// An empty accumulator, keeping at most `kept` bytes of the buffers of batches done
    /// ([`buffers_kept`]).
    pub(crate) fn new(limits: BatchLimits, compression: Compression, kept: usize) -> Self {
        Accumulator {
            limits,
            compression,
            queues: Queues::default(),
            buffers: Buffers::new(kept),
            lists: Vec::new(),
            wakes: Cell::new(None),
        }
    }

    /// Batches linger `linger` from now on, whatever `linger.ms` says.
    pub(crate) fn set_linger(&mut self, linger: Duration) {
        self.changed();
        self.limits.linger = linger;
    }

    /// Appends a record of `size` bytes to the partition's last batch, or to a new one when it
    /// is full, already sent, or the record does not fit. `received` and `deadline` are the
    /// record's (a new batch takes its first record's: its linger counts from `received`).
    /// Returns whether the batch is now full.
    pub(crate) fn append(
        &mut self,
        tp: &TopicPartition,
        record: NewRecord<'_>,
        size: usize,
        item: T,
        received: Instant,
        deadline: Instant,
    ) -> bool {
        self.changed();
        let compression = self.compression;
        let buffers = &self.buffers;
        let lists = &mut self.lists;
        let new = |room, records| {
            let list = take_list(lists, records);
            Batch::new(compression, received, deadline, buffers, room, list)
        };
        // One search of the queues for a partition that has one, as all but its first record
        // find.
        if let Some(queue) = self.queues.get_mut(tp) {
            return queue.append(&self.limits, record, size, item, new);
        }
        let mut queue = Queue {
            batches: VecDeque::new(),
            in_flight: false,
            last: self.queues.take_last(tp),
        };
        let full = queue.append(&self.limits, record, size, item, new);
        self.queues.insert(tp, queue);
        full
    }

    /// The partitions whose head batch may go now (not in flight, past its retry backoff), each
    /// with whether it is ready: full, not alone in its queue (the Java client's
    /// `RecordAccumulator.ready` rule), a retry, lingered `linger.ms`, or `flushing` (flush or
    /// close), and when the head was opened. A head not ready may still go with a ready one to
    /// the same broker.
    pub(crate) fn sendable(
        &self,
        now: Instant,
        flushing: bool,
    ) -> Vec<(TopicPartition, bool, Instant)> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.in_flight)
            .filter_map(|(tp, q)| {
                let head = q.batches.front()?;
                if head.retry_at.is_some_and(|at| at > now) {
                    return None;
                }
                let ready = flushing
                    || q.batches.len() > 1
                    || head.is_full(&self.limits)
                    || head.retries > 0
                    || now >= head.created + self.limits.linger;
                Some((tp.clone(), ready, head.created))
            })
            .collect()
    }

    /// The partitions whose head is ready ([`sendable`](Self::sendable)).
    #[cfg(test)]
    fn ready(&self, now: Instant, flushing: bool) -> Vec<TopicPartition> {
        self.sendable(now, flushing)
            .into_iter()
            .filter_map(|(tp, ready, _)| ready.then_some(tp))
            .collect()
    }

    /// When something next changes without outside help, after `now`, the earliest of each
    /// cause over every partition: a head's linger or backoff ends, or a batch not in flight
    /// reaches its deadline. (What was due by `now` is ready already, or waits for something
    /// else: a leader, a free request slot.)
    pub(crate) fn wakes(&self, now: Instant) -> Wakes {
        if let Some((at, wakes)) = self.wakes.get()
            && at == now
        {
            return wakes;
        }
        let wakes = self.scan_wakes(now);
        self.wakes.set(Some((now, wakes)));
        wakes
    }

    /// The queues change (every `&mut self` call, before the change): the wakes asked for
    /// since are forgotten.
    fn changed(&mut self) {
        self.wakes.set(None);
    }

    /// [`wakes`](Accumulator::wakes), read off every partition's queue.
    fn scan_wakes(&self, now: Instant) -> Wakes {
        let mut wakes = Wakes::default();
        let at = |wake: &mut Option<Instant>, t: Instant| {
            if t > now {
                *wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        for q in self.queues.values() {
            let mut waiting = q.batches.iter();
            if q.in_flight {
                waiting.next();
            } else if let Some(head) = q.batches.front() {
                match head.retry_at {
                    Some(t) => at(&mut wakes.backoff, t),
                    None => at(&mut wakes.linger, head.created + self.limits.linger),
                }
            }
            // Later batches were opened later, and their deadlines come later.
            if let Some(first) = waiting.next() {
                at(&mut wakes.deadline, first.deadline);
            }
        }
        wakes
    }

    /// The head batch of a partition.
    pub(crate) fn head_mut(&mut self, tp: &TopicPartition) -> Option<&mut Batch<T>> {
        self.changed();
        self.queues.get_mut(tp)?.batches.front_mut()
    }

    /// Marks the partition's head as sent.
    pub(crate) fn set_in_flight(&mut self, tp: &TopicPartition) {
        self.changed();
        if let Some(q) = self.queues.get_mut(tp) {
            q.in_flight = true;
        }
    }

    /// Whether the partition's head is in flight.
    #[cfg(test)]
    pub(crate) fn is_in_flight(&self, tp: &TopicPartition) -> bool {
        self.queues.get(tp).is_some_and(|q| q.in_flight)
    }

    /// Takes the head batch off the queue (acknowledged, or failed for good).
    pub(crate) fn pop_head(&mut self, tp: &TopicPartition) -> Option<Batch<T>> {
        self.changed();
        let q = self.queues.get_mut(tp)?;
        q.in_flight = false;
        let head = q.batches.pop_front();
        if q.batches.is_empty() {
            self.queues.remove(tp);
        }
        head
    }

    /// Puts the head back to be sent again at `at`, remembering why it failed.
    pub(crate) fn retry_head(&mut self, tp: &TopicPartition, at: Instant, error: ProduceError) {
        self.changed();
        if let Some(q) = self.queues.get_mut(tp) {
            q.in_flight = false;
            if let Some(head) = q.batches.front_mut() {
                head.retries += 1;
                head.retry_at = Some(at);
                head.last_error = Some(error);
            }
        }
    }

    /// Takes out every batch not in flight whose deadline has passed, oldest first per
    /// partition.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(TopicPartition, Batch<T>)> {
        self.changed();
        let mut out = Vec::new();
        for (tp, q) in self.queues.iter_mut() {
            let skip = usize::from(q.in_flight);
            while q.batches.len() > skip && q.batches[skip].deadline <= now {
                if let Some(b) = q.batches.remove(skip) {
                    out.push((tp.clone(), b));
                }
            }
        }
        self.queues.retain(|q| !q.batches.is_empty());
        out
    }

    /// Takes out every batch not in flight (the producer cannot go on).
    pub(crate) fn drain_waiting(&mut self) -> Vec<(TopicPartition, Batch<T>)> {
        self.changed();
        let mut out = Vec::new();
        for (tp, q) in self.queues.iter_mut() {
            let skip = usize::from(q.in_flight);
            while q.batches.len() > skip {
                if let Some(b) = q.batches.remove(skip) {
                    out.push((tp.clone(), b));
                }
            }
        }
        self.queues.retain(|q| !q.batches.is_empty());
        out
    }

    /// Forgets how every head not in flight was encoded: after a new producer id, each is
    /// encoded again with the new id and fresh sequence numbers.
    pub(crate) fn forget_sequences(&mut self) {
        self.changed();
        for q in self.queues.values_mut() {
            if !q.in_flight
                && let Some(head) = q.batches.front_mut()
            {
                head.sent_with = None;
            }
        }
    }

    /// Every partition with a batch waiting or in flight.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.queues.iter().map(|(tp, _)| tp)
    }

    /// Keeps a done batch's record list, emptied, for a later batch, unless
    /// [`KEPT_BATCHES`] are kept already.
    pub(crate) fn give_list(&mut self, mut list: Vec<T>) {
        list.clear();
        if list.capacity() > 0 && self.lists.len() < KEPT_BATCHES {
            self.lists.push(list);
        }
    }

    /// Whether no batch is waiting or in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The records of every batch, waiting or in flight.
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.queues
            .values()
            .flat_map(|q| &q.batches)
            .map(|b| b.records.len())
            .sum()
    }
}

/// A record list with room for `records`: one kept with room for them and at most four times
/// as many, the one kept last of those; or a new one of exactly that room.
fn take_list<T>(lists: &mut Vec<Vec<T>>, records: usize) -> Vec<T> {
    let most = records.saturating_mul(4);
    match lists
        .iter()
        .rposition(|l| (records..=most).contains(&l.capacity()))
    {
        Some(at) => lists.swap_remove(at),
        None => Vec::with_capacity(records),
    }
}

/// The sequence after `records` more from `sequence`, wrapping to 0 past `i32::MAX` as the
/// Java client's `DefaultRecordBatch.incrementSequence` (and the broker) do.
pub(crate) fn next_sequence(sequence: i32, records: i32) -> i32 {
    if sequence > i32::MAX - records {
        records - (i32::MAX - sequence) - 1
    } else {
        sequence + records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        max_records: 3,
        max_bytes: 100,
        linger: Duration::from_millis(10),
    };

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn record(value: &[u8]) -> NewRecord<'_> {
        NewRecord {
            value: Some(value),
            ..NewRecord::default()
        }
    }

    fn acc() -> Accumulator<u32> {
        Accumulator::new(LIMITS, Compression::None, 1 << 20)
    }

    fn far(now: Instant) -> Instant {
        now + Duration::from_secs(100)
    }

    /// The queues of several topics go in `TopicPartition`'s order (topic, then partition), and
    /// a topic goes with its last queue, taken, expired or drained.
    #[test]
    fn queues_of_several_topics_go_in_partition_order_and_leave_with_their_last() {
        let now = Instant::now();
        let mut a = acc();
        let at = |topic: &str, p: i32| TopicPartition::new(topic, p);
        let order = [at("b", 2), at("a", 10), at("b", 0), at("a", 9), at("ab", 1)];
        for (i, tp) in order.iter().enumerate() {
            a.append(tp, record(b"x"), 1, i as u32, now, far(now));
        }
        let listed: Vec<TopicPartition> = a.partitions().cloned().collect();
        let mut sorted = order.to_vec();
        sorted.sort();
        assert_eq!(listed, sorted);
        assert_eq!(a.ready(now + LIMITS.linger, false), sorted);
        // The last queue of a topic taken: the topic goes with it, the others stay.
        assert_eq!(a.pop_head(&at("ab", 1)).map(|b| b.records), Some(vec![4]));
        assert!(!a.queues.by_topic.contains_key("ab"));
        assert!(a.pop_head(&at("ab", 1)).is_none());
        assert_eq!(a.pop_head(&at("a", 9)).map(|b| b.records), Some(vec![3]));
        assert_eq!(a.queues.by_topic["a"].len(), 1);
        // Expired, the rest go, and their topics with them.
        a.set_in_flight(&at("b", 0));
        let expired = a.expire(far(now));
        let expired: Vec<_> = expired.into_iter().map(|(tp, b)| (tp, b.records)).collect();
        assert_eq!(expired, [(at("a", 10), vec![1]), (at("b", 2), vec![0])]);
        assert_eq!(a.partitions().cloned().collect::<Vec<_>>(), [at("b", 0)]);
        assert!(!a.is_empty());
        assert!(a.drain_waiting().is_empty(), "the head in flight stays");
        assert!(a.pop_head(&at("b", 0)).is_some());
        assert!(a.is_empty());
        assert!(a.queues.by_topic.is_empty());
    }

    /// An accumulator of batches up to a megabyte or 100,000 records, uncompressed.
    fn megabyte_batches() -> Accumulator<u32> {
        let limits = BatchLimits {
            max_records: 100_000,
            max_bytes: 1_000_000,
            linger: Duration::from_millis(10),
        };
        Accumulator::new(limits, Compression::None, 1 << 23)
    }

    /// A done batch's record list, given back, holds the next batch's records when it has room
    /// for them and at most four times as many; at most `KEPT_BATCHES` lists are kept.
    #[test]
    fn a_done_batchs_record_list_is_used_again() {
        let now = Instant::now();
        let mut a = megabyte_batches();
        let value = [7u8; 90];
        for i in 0..1000 {
            a.append(&tp(0), record(&value), 100, i, now, far(now));
        }
        let done = a.pop_head(&tp(0)).unwrap().records;
        let (at, room) = (done.as_ptr(), done.capacity());
        assert!(room >= 1000);
        a.give_list(done);
        // The next batch makes room for 1,000 records, as the last took: the list fits.
        a.append(&tp(0), record(&value), 100, 0, now, far(now));
        let head = a.head_mut(&tp(0)).unwrap();
        assert_eq!((head.records.as_ptr(), head.records.capacity()), (at, room));
        assert_eq!(head.records, [0], "emptied when given back");
        // A list too large for a small batch is not taken for it.
        let small = a.pop_head(&tp(0)).unwrap().records;
        a.give_list(Vec::with_capacity(100_000));
        a.give_list(small);
        a.append(&tp(1), record(&value), 100, 0, now, far(now));
        let first = FIRST_ROOM / 100;
        assert_eq!(a.head_mut(&tp(1)).unwrap().records.capacity(), first);
        assert_eq!(a.lists.len(), 2, "neither fits {first} records");
        for _ in 0..2 * KEPT_BATCHES {
            a.give_list(Vec::with_capacity(10));
        }
        assert_eq!(a.lists.len(), KEPT_BATCHES);
    }

    /// A partition's first batch makes room for `FIRST_ROOM` bytes of records like its first;
    /// each later one for what the batch before it took, so that batches of a megabyte are
    /// allocated once, and batches of a few records after them small again.
    #[test]
    fn a_new_batch_makes_room_for_what_the_last_took() {
        let now = Instant::now();
        let mut a = megabyte_batches();
        let value = [7u8; 90];
        let first = FIRST_ROOM / 100;
        let append = |a: &mut Accumulator<u32>, n: u32| {
            for i in 0..n {
                a.append(&tp(0), record(&value), 100, i, now, far(now));
            }
        };
        append(&mut a, 1);
        let head = a.head_mut(&tp(0)).unwrap();
        assert_eq!(head.records.capacity(), first);
        assert!(head.builder.spare_capacity() >= first * 100 - 100);
        append(&mut a, 999);
        // Sent: the next record opens a second batch.
        a.head_mut(&tp(0)).unwrap().encode(None).unwrap();
        append(&mut a, 1);
        let second = a.queues.get(&tp(0)).unwrap().batches.back().unwrap();
        assert_eq!(second.records.capacity(), 1000);
        assert!(second.builder.spare_capacity() >= 999 * 100);
        a.pop_head(&tp(0)).unwrap();
        append(&mut a, 1);
        a.head_mut(&tp(0)).unwrap().encode(None).unwrap();
        append(&mut a, 1);
        let third = a.queues.get(&tp(0)).unwrap().batches.back().unwrap();
        assert_eq!(third.records.capacity(), first, "after a batch of two");
        assert!(third.builder.spare_capacity() < 2 * FIRST_ROOM);
    }

    /// A partition whose queue emptied (a transaction committed, its batches acknowledged)
    /// opens its next batch with room for what its last took, however it emptied; a partition
    /// never written to still starts at `FIRST_ROOM`.
    #[test]
    fn a_partition_emptied_keeps_the_room_its_last_batch_took() {
        let now = Instant::now();
        let mut a = megabyte_batches();
        let value = [7u8; 90];
        let append = |a: &mut Accumulator<u32>, tp: &TopicPartition, n: u32| {
            for i in 0..n {
                a.append(tp, record(&value), 100, i, now, far(now));
            }
        };
        let room = |a: &mut Accumulator<u32>, tp: &TopicPartition| {
            a.head_mut(tp).map(|b| b.records.capacity())
        };
        // Acknowledged: the queue goes, what its batch took stays.
        append(&mut a, &tp(0), 1000);
        a.set_in_flight(&tp(0));
        a.pop_head(&tp(0)).unwrap();
        assert!(a.is_empty());
        append(&mut a, &tp(0), 1);
        assert_eq!(room(&mut a, &tp(0)), Some(1000));
        assert_eq!(room(&mut a, &tp(1)), None);
        append(&mut a, &tp(1), 1);
        assert_eq!(
            room(&mut a, &tp(1)),
            Some(FIRST_ROOM / 100),
            "never written to"
        );
        // Expired (both partitions' batches) or drained, likewise; and a batch of one after it
        // is small again.
        append(&mut a, &tp(0), 1999);
        assert_eq!(a.expire(far(now) + Duration::from_secs(1)).len(), 2);
        append(&mut a, &tp(0), 1);
        assert_eq!(room(&mut a, &tp(0)), Some(2000));
        assert_eq!(a.drain_waiting().len(), 1);
        append(&mut a, &tp(0), 1);
        assert_eq!(
            room(&mut a, &tp(0)),
            Some(FIRST_ROOM / 100),
            "after a batch of one"
        );
        let idle: Vec<_> = a.queues.last.keys().collect();
        assert_eq!(
            idle,
            [&tp(1)],
            "the partition without a queue is the one remembered"
        );
    }

    /// Eight full batches' buffers are kept, never more than `buffer.memory`.
    #[test]
    fn the_buffers_kept_stay_within_buffer_memory() {
        assert_eq!(buffers_kept(1_000_000, 33_554_432), 8_000_000);
        assert_eq!(buffers_kept(16_000_000, 33_554_432), 33_554_432);
        assert_eq!(buffers_kept(usize::MAX, 1 << 20), 1 << 20);
    }

    #[test]
    fn a_batch_is_full_at_its_record_count() {
        let now = Instant::now();
        let mut a = acc();
        assert!(!a.append(&tp(0), record(b"a"), 10, 1, now, far(now)));
        assert!(!a.append(&tp(0), record(b"b"), 10, 2, now, far(now)));
        assert!(a.append(&tp(0), record(b"c"), 10, 3, now, far(now)));
        // The fourth opens a second batch: the first is now ready without lingering.
        assert!(!a.append(&tp(0), record(b"d"), 10, 4, now, far(now)));
        assert_eq!(a.ready(now, false), [tp(0)]);
        let head = a.pop_head(&tp(0)).unwrap();
        assert_eq!(head.records, [1, 2, 3]);
        assert_eq!(a.head_mut(&tp(0)).unwrap().records, [4]);
    }

    #[test]
    fn a_batch_is_full_at_its_byte_size_and_a_large_record_goes_alone() {
        let now = Instant::now();
        let mut a = acc();
        assert!(!a.append(&tp(0), record(b"a"), 60, 1, now, far(now)));
        // 60 + 50 > 100: a new batch.
        assert!(!a.append(&tp(0), record(b"b"), 50, 2, now, far(now)));
        assert!(a.append(&tp(0), record(b"c"), 50, 3, now, far(now)));
        // Larger than batch.size: a batch of its own, full at once.
        assert!(a.append(&tp(0), record(b"d"), 500, 4, now, far(now)));
        let batches: Vec<Vec<u32>> = std::iter::from_fn(|| a.pop_head(&tp(0)))
            .map(|b| b.records)
            .collect();
        assert_eq!(batches, [vec![1], vec![2, 3], vec![4]]);
        assert!(a.is_empty());
    }

    #[test]
    fn a_lone_batch_lingers_unless_flushing() {
        let now = Instant::now();
        let mut a = acc();
        a.append(&tp(1), record(b"a"), 10, 1, now, far(now));
        assert!(a.ready(now, false).is_empty());
        assert_eq!(a.wakes(now).earliest(), Some(now + LIMITS.linger));
        assert_eq!(
            a.wakes(now),
            Wakes {
                linger: Some(now + LIMITS.linger),
                backoff: None,
                deadline: Some(far(now)),
            }
        );
        assert_eq!(a.ready(now, true), [tp(1)]);
        assert_eq!(a.ready(now + LIMITS.linger, false), [tp(1)]);
        // Once its linger is over (say its leader is unknown), only its deadline is ahead: a
        // past instant is never a wake-up time.
        assert_eq!(a.wakes(now + LIMITS.linger).earliest(), Some(far(now)));
        assert_eq!(a.wakes(now + LIMITS.linger).linger, None);
    }

    /// The wakes are kept between two asks at one instant, and every change of the queues
    /// (a record, a send, an answer, a retry, an expiry) asks them afresh.
    #[test]
    fn the_wakes_kept_are_those_of_the_queues_as_they_are() {
        let now = Instant::now();
        let later = now + Duration::from_millis(3);
        let mut a = acc();
        a.append(&tp(0), record(b"a"), 10, 1, now, far(now));
        assert_eq!(a.wakes(later), a.scan_wakes(later));
        assert_eq!(a.wakes(later).linger, Some(now + LIMITS.linger));
        // A batch opened later on another partition leaves the earliest linger as it was...
        a.append(&tp(1), record(b"b"), 10, 2, later, far(later));
        assert_eq!(a.wakes(later).linger, Some(now + LIMITS.linger));
        // ...until the first partition's head is sent: then the second's linger is next.
        a.set_in_flight(&tp(0));
        assert_eq!(a.wakes(later).linger, Some(later + LIMITS.linger));
        let retry = later + Duration::from_millis(1);
        a.retry_head(&tp(0), retry, ProduceError::closed());
        assert_eq!(a.wakes(later).backoff, Some(retry));
        a.pop_head(&tp(0));
        assert_eq!(a.wakes(later).backoff, None);
        // The same queues asked after another instant are read again.
        let past = later + LIMITS.linger;
        assert_eq!(a.wakes(past).linger, None);
        assert_eq!(a.wakes(past).deadline, Some(far(later)));
        assert_eq!(a.expire(far(later)).len(), 1);
        assert_eq!(a.wakes(past), Wakes::default());
        assert_eq!(a.wakes(past), a.scan_wakes(past));
    }

    #[test]
    fn one_batch_in_flight_per_partition_and_records_keep_their_order() {
        let now = Instant::now();
        let mut a = acc();
        for i in 0..7 {
            a.append(&tp(0), record(b"x"), 10, i, now, far(now));
        }
        a.append(&tp(1), record(b"y"), 10, 100, now, far(now));
        let later = now + LIMITS.linger;
        assert_eq!(a.ready(later, false), [tp(0), tp(1)]);
        let bytes = a.head_mut(&tp(0)).unwrap().encode(None).unwrap();
        a.set_in_flight(&tp(0));
        // Sent: nothing more joins it, and the partition's next batch waits for it.
        assert_eq!(a.ready(later, true), [tp(1)]);
        a.append(&tp(0), record(b"z"), 10, 7, now, far(now));
        // Failed and retried: the same bytes go again, before any later batch.
        a.retry_head(
            &tp(0),
            later + Duration::from_millis(5),
            ProduceError::closed(),
        );
        assert_eq!(a.ready(later, false), [tp(1)]);
        // The backoff is its wake-up, not a linger.
        assert_eq!(
            a.wakes(later).backoff,
            Some(later + Duration::from_millis(5))
        );
        assert_eq!(a.wakes(later).linger, None);
        assert_eq!(
            a.ready(later + Duration::from_millis(5), false),
            [tp(0), tp(1)]
        );
        let head = a.head_mut(&tp(0)).unwrap();
        assert_eq!(head.retries, 1);
        assert_eq!(head.encode(None).unwrap(), bytes);
        let mut order = Vec::new();
        while let Some(b) = a.pop_head(&tp(0)) {
            order.extend(b.records);
        }
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn batches_not_in_flight_expire_at_their_deadline() {
        let now = Instant::now();
        let mut a = acc();
        let d1 = now + Duration::from_secs(1);
        let d2 = now + Duration::from_secs(2);
        for i in 0..4 {
            a.append(&tp(0), record(b"x"), 10, i, now, d1);
        }
        a.append(&tp(1), record(b"x"), 10, 9, now, d2);
        a.set_in_flight(&tp(0));
        // Partition 1's head lingers first.
        assert_eq!(a.wakes(now).earliest(), Some(now + LIMITS.linger));
        assert_eq!(a.wakes(now).deadline, Some(d1));
        a.set_in_flight(&tp(1));
        // Then partition 0's waiting batch reaches its deadline.
        assert_eq!(a.wakes(now).earliest(), Some(d1));
        let gone = a.expire(d1);
        // The in-flight heads stay: their requests decide.
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.records, [3]);
        assert!(a.is_in_flight(&tp(0)));
        assert!(a.expire(d2).is_empty());
        assert!(a.drain_waiting().is_empty());
        assert_eq!(a.pop_head(&tp(1)).unwrap().records, [9]);
        assert_eq!(a.wakes(now).earliest(), None);
        assert!(!a.is_empty());
    }

    #[test]
    fn a_new_producer_id_reencodes_the_heads() {
        let now = Instant::now();
        let mut a = acc();
        a.append(&tp(0), record(b"x"), 10, 0, now, far(now));
        let first = Sequenced {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 40,
            transactional: false,
        };
        let old = a.head_mut(&tp(0)).unwrap().encode(Some(first)).unwrap();
        assert_eq!(a.head_mut(&tp(0)).unwrap().sequenced(), Some(first));
        a.forget_sequences();
        let second = Sequenced {
            producer_id: 8,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        };
        // A record sent after the reset goes in a batch of its own: the head was built.
        a.append(&tp(0), record(b"y"), 10, 1, now, far(now));
        let new = a.head_mut(&tp(0)).unwrap().encode(Some(second)).unwrap();
        assert_ne!(old, new);
        // The same records (count at byte 57), under the new producer.
        assert_eq!(i32::from_be_bytes(new[57..61].try_into().unwrap()), 1);
        assert_eq!(new[61..], old[61..]);
        // Producer id at byte 43, base sequence at 53 of a magic-2 batch header.
        assert_eq!(i64::from_be_bytes(new[43..51].try_into().unwrap()), 8);
        assert_eq!(i32::from_be_bytes(new[53..57].try_into().unwrap()), 0);
        assert_eq!(i32::from_be_bytes(old[53..57].try_into().unwrap()), 40);
        // The transactional attribute (bit 4 of the attributes at byte 21).
        let attributes = |b: &Bytes| i16::from_be_bytes(b[21..23].try_into().unwrap());
        assert_eq!(attributes(&old) & 0x10, 0);
        assert_eq!(attributes(&new) & 0x10, 0x10);
    }

    #[test]
    fn sequences_wrap_as_the_broker_expects() {
        assert_eq!(next_sequence(0, 5), 5);
        assert_eq!(next_sequence(i32::MAX - 2, 2), i32::MAX);
        assert_eq!(next_sequence(i32::MAX - 2, 3), 0);
        assert_eq!(next_sequence(i32::MAX, 10), 9);
    }
}
