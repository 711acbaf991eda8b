//! The producer's decisions, sans-IO: [`SenderMachine`] owns the batches, the metadata it
//! partitions by, the producer id and sequences, and the requests in flight, and decides what
//! to send when. It never touches a socket, reads no clock and spawns nothing: the
//! records, flushes and close come in as its commands, the answers through
//! [`Machine::handle_response`], time as `now` and the wall clock (the timestamp of a record
//! that has none) through [`SenderMachine::wall_clock`] before records are handed in. The
//! sender task (`sender.rs`: this machine on `kcon_pool::driver::drive`) carries out its
//! requests over the pool and hands its events to whoever waits.
//!
//! After every input it makes one pass: fail what expired, partition the records whose topic
//! is known, ask for a metadata refresh or an InitProducerId if one is wanted, send what is
//! ready, answer the flushes that are done.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest,
    ProduceResponse, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::NewRecord;
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::error_codes::is_stale_metadata_error;
use kcon_core::{
    ExponentialBackoff, Machine, Outgoing, RequestFailure, RequestId, RequestIds, Target, Topic,
    TopicPartition,
};
use kcon_pool::{Metadata, TopicScope};
use tracing::{debug, warn};

use crate::accumulator::{
    Accumulator, Batch, BatchLimits, Sequenced, Wakes, buffers_kept, next_sequence,
};
use crate::config::ProducerConfig;
use crate::error::{ErrorKind, ProduceError};
use crate::packed::PackedHeaders;
use crate::partitioner::Partitioner;
use crate::producer::Counters;
use crate::record::{Delivered, ProducerRecord};
use crate::retry::{self, Outcome};

/// What the machine asks to have done; the answer is the pool's result, as the pool gave it.
#[derive(Debug)]
pub enum Request {
    /// Send this Produce request to the broker of its [`Target::Broker`], the leader of every
    /// partition it carries, at the versions of the producer's transaction protocol when it has
    /// one; answered with [`Response::Produce`].
    Produce(ProduceRequest, Option<TxnProtocol>),
    /// Ask any broker for a fresh producer id; answered with [`Response::InitProducerId`].
    InitProducerId(InitProducerIdRequest),
    /// Refresh the pool's metadata of these topics; answered with [`Response::Metadata`].
    Metadata(TopicScope),
    /// Find the coordinator of `key` (a transactional id or a group, by FindCoordinator's
    /// `key_type`) from any broker; answered with [`Response::FindCoordinator`].
    FindCoordinator {
        /// The transactional id or group id.
        key: String,
        /// [`kcon_core::coordinator::TRANSACTION`] or [`kcon_core::coordinator::GROUP`].
        key_type: i8,
    },
    /// Add partitions to the transaction, at the transaction coordinator.
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    /// Add a group's offsets to the transaction, at the transaction coordinator.
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    /// Commit offsets inside the transaction, at the group coordinator, at the versions of the
    /// transaction protocol; the driver leaves out the fields the negotiated version lacks.
    TxnOffsetCommit(TxnOffsetCommitRequest, TxnProtocol),
    /// Commit or abort the transaction, at the transaction coordinator, at the versions of the
    /// transaction protocol.
    EndTxn(EndTxnRequest, TxnProtocol),
    /// Ask the transaction coordinator what state the transaction is in (whether the last
    /// one's markers are written).
    DescribeTransactions(DescribeTransactionsRequest),
}

/// The pool's result of a [`Request`], its error kept whole: whether it is retriable, and what
/// kind of error a record fails with, are read from it.
#[derive(Debug)]
pub enum Response {
    /// The answer to [`Request::Produce`].
    Produce(Result<ProduceResponse, kcon_pool::Error>),
    /// The answer to [`Request::InitProducerId`], with the cluster's finalized
    /// `transaction.version` as the broker that answered reported it (0: none).
    InitProducerId(Result<(InitProducerIdResponse, i16), kcon_pool::Error>),
    /// The metadata after [`Request::Metadata`].
    Metadata(Result<Arc<Metadata>, kcon_pool::Error>),
    /// The answer to [`Request::FindCoordinator`].
    FindCoordinator(Result<FoundCoordinator, kcon_pool::Error>),
    /// The answer to [`Request::AddPartitionsToTxn`].
    AddPartitionsToTxn(Result<AddPartitionsToTxnResponse, kcon_pool::Error>),
    /// The answer to [`Request::AddOffsetsToTxn`].
    AddOffsetsToTxn(Result<AddOffsetsToTxnResponse, kcon_pool::Error>),
    /// The answer to [`Request::TxnOffsetCommit`].
    TxnOffsetCommit(Result<TxnOffsetCommitResponse, kcon_pool::Error>),
    /// The answer to [`Request::EndTxn`].
    EndTxn(Result<EndTxnResponse, kcon_pool::Error>),
    /// The answer to [`Request::DescribeTransactions`].
    DescribeTransactions(Result<DescribeTransactionsResponse, kcon_pool::Error>),
}

/// What the machine tells its driver.
#[derive(Debug)]
pub enum Event<T> {
    /// A record is done: tell whoever waits on it (`waiter`, as it came in).
    Answer {
        /// Whoever waits on the record.
        waiter: T,
        /// Where it was written, or why it failed.
        result: Result<Delivered, ProduceError>,
    },
    /// Every record queued before the flush is done.
    Flushed(FlushId),
    /// A transaction call is done.
    Transaction {
        /// Its callers, as [`SenderMachine::transaction`] named each: the call, and the same
        /// call made again while it was under way, which joined it. When none of them reads
        /// the outcome, the driver hands it back with [`SenderMachine::unread`].
        calls: Vec<CallId>,
        /// What it was.
        op: TxnOp,
        /// Its outcome.
        result: Result<(), ProduceError>,
    },
}

/// Names one [`SenderMachine::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlushId(u64);

/// A record as a handle queued it, with `waiter`, whoever waits for its outcome.
pub struct Incoming<T> {
    /// The record.
    pub record: ProducerRecord,
    /// The record's headers, when they were packed on the thread that sent it (its own
    /// `headers` then empty).
    pub(crate) packed: Option<PackedHeaders>,
    /// Its size as `buffer.memory` counts it.
    pub size: usize,
    /// Whoever waits for its outcome.
    pub waiter: T,
    /// When it was queued: `delivery.timeout.ms` counts from here.
    pub(crate) received: Instant,
}

/// A record in a batch: who waits for it.
struct Pending<T> {
    id: u64,
    timestamp: i64,
    waiter: T,
    /// The record's own topic, handed back in its [`Delivered`].
    topic: Topic,
}

/// The room for records a topic's queue is shrunk to once they are placed, when it holds more
/// than twice this.
const WAITING_KEPT: usize = 64;

/// A topic's records waiting for its metadata, and how to partition once it is there.
struct TopicState<T> {
    partitioner: Option<Partitioner>,
    /// The topic's partitions by number, as the accumulator keys them: made once per
    /// partition, not once per record.
    partitions: Vec<TopicPartition>,
    waiting: VecDeque<(u64, Incoming<T>)>,
    /// Why the topic cannot be used yet, for the error if its records time out.
    last_error: Option<ProduceError>,
    /// The partitioner and `partitions` match the metadata as it is: with nothing waiting, a
    /// record is placed as it is taken, without a turn in `waiting`. Cleared by every new
    /// metadata; set again by the next pass that places the topic's records.
    placing: bool,
}

impl<T> TopicState<T> {
    fn new() -> Self {
        TopicState {
            partitioner: None,
            partitions: Vec::new(),
            waiting: VecDeque::new(),
            last_error: None,
            placing: false,
        }
    }
}

/// The producer id and the sequence numbers (KIP-98), when `enable.idempotence` is on.
#[derive(Default)]
struct Idempotence {
    /// The id and epoch batches are sent with; `None` until InitProducerId answered.
    producer: Option<(i64, i16)>,
    /// The next base sequence per partition under `producer`.
    sequences: HashMap<TopicPartition, i32>,
    /// The InitProducerId request out.
    init: Option<RequestId>,
    /// InitProducerId attempts that failed in a row.
    failures: u32,
    /// No InitProducerId before this (the backoff after a failed one).
    not_before: Option<Instant>,
    /// A new producer id is needed: once nothing is in flight, ask for one.
    reset_wanted: bool,
}

impl Idempotence {
    /// Whether batches can be encoded and sent now.
    fn ready(&self) -> bool {
        self.producer.is_some() && !self.reset_wanted
    }
}

kcon_core::timers! {
    /// The machine's timers, one table, listed in the order of the pass that follows them
    /// (`step`: expire, refresh, initialize, send). Deadlines kept per batch (linger, backoff,
    /// `delivery.timeout.ms`, on the batch in the accumulator) and per record waiting for its
    /// topic's metadata (on the record) are as many as there are batches and records, so they stay
    /// there, and the table holds one timer per cause for the earliest of them. The table is derived
    /// from the state whenever it is read (`timers`), each timer by its one rule (`deadline`), and
    /// never stored: batches and records come and go in many places, and nothing has to re-arm it.
    enum Timer {
        /// The earliest record waiting for its topic's metadata reaches `delivery.timeout.ms`.
        RecordDeadline,
        /// The earliest batch not in flight reaches its deadline (its first record's arrival plus
        /// `delivery.timeout.ms`).
        BatchDeadline,
        /// The metadata refresh's backoff ends, while a refresh is wanted and none is out.
        MetadataRetry,
        /// InitProducerId's backoff ends, while a producer id is needed and none is asked for.
        ProducerIdRetry,
        /// The earliest head batch never sent has lingered `linger.ms`.
        Linger,
        /// The earliest retried head batch's backoff ends.
        RetryBackoff,
        /// A transaction request's backoff ends, or a coordinator lookup's.
        Transaction,
    }
    type Timers;
}

/// Mixed into the machine's seed for its partitioners' seeds (the 64-bit golden ratio, as
/// splitmix64 steps by), so that they are not the jitter's stream.
const PARTITIONER_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// The producer's sans-IO machine; `T` is what waits for a record's outcome (the sender task's
/// reply channel and `buffer.memory` permit), handed back in [`Event::Answer`].
///
/// Its timers are one table (`Timer`); [`poll_timeout`](Machine::poll_timeout) is the
/// table's earliest, and [`handle_timeout`](Machine::handle_timeout) fires those due before
/// its pass.
pub struct SenderMachine<T> {
    config: Arc<ProducerConfig>,
    /// The wall clock in ms since the epoch, as the driver last handed it
    /// ([`wall_clock`](Self::wall_clock)): the timestamp of records taken without one.
    wall_ms: i64,
    backoff: ExponentialBackoff,
    /// The backoff's jitter.
    rng: fastrand::Rng,
    /// The seeds of the topics' partitioners (`murmur2_random`), a second stream of the
    /// machine's seed: a seed spreads null-keyed records the same way every time.
    partitioner_seeds: fastrand::Rng,
    acc: Accumulator<Pending<T>>,
    /// The topics produced to.
    topics: BTreeMap<Topic, TopicState<T>>,
    metadata: Arc<Metadata>,
    /// The metadata refresh out.
    refresh: Option<RequestId>,
    refresh_wanted: bool,
    /// Refreshes in a row that left something unresolved: the backoff's attempt count.
    refreshes: u32,
    /// No refresh before this (the backoff after the last).
    refresh_not_before: Option<Instant>,
    /// The leader and partitions of each Produce request out.
    in_flight_requests: HashMap<RequestId, (i32, Vec<TopicPartition>)>,
    in_flight: HashMap<i32, usize>,
    idempotence: Option<Idempotence>,
    /// Ids of the records not done yet, for flushes.
    incomplete: Incomplete,
    next_id: u64,
    flushes: Vec<(u64, FlushId)>,
    next_flush: u64,
    closing: bool,
    /// An error no record can get past (InitProducerId refused for good).
    fatal: Option<ProduceError>,
    stats: Arc<Counters>,
    ids: RequestIds,
    requests: VecDeque<Outgoing<Request, Target>>,
    events: VecDeque<Event<T>>,
    /// The last input's `now`: only deadlines after it are timeouts.
    now: Instant,
    /// The transaction, with a `transactional.id`.
    txn: Option<txn::Transactions>,
    /// When `close` was called: a transaction still ending `delivery.timeout.ms` later is
    /// given up.
    closing_at: Option<Instant>,
}

impl<T> SenderMachine<T> {
    /// A machine partitioning by `metadata` (the pool's, as it is now), its jitter and its
    /// random partitions from `seed`, at `now` and, on the wall clock, `now_ms`.
    pub(crate) fn new(
        config: Arc<ProducerConfig>,
        metadata: Arc<Metadata>,
        stats: Arc<Counters>,
        seed: u64,
        now: Instant,
        now_ms: i64,
    ) -> Self {
        let limits = BatchLimits {
            max_records: config.batch_num_messages,
            max_bytes: config.batch_size,
            linger: config.linger,
        };
        SenderMachine {
            backoff: config.pool.retry_backoff_policy(),
            rng: fastrand::Rng::with_seed(seed),
            // Apart from the jitter's stream, so that drawing one does not move the other.
            partitioner_seeds: fastrand::Rng::with_seed(seed ^ PARTITIONER_STREAM),
            acc: Accumulator::new(
                limits,
                config.compression,
                buffers_kept(config.batch_size, config.buffer_memory),
            ),
            topics: BTreeMap::new(),
            metadata,
            wall_ms: now_ms,
            refresh: None,
            refresh_wanted: false,
            refreshes: 0,
            refresh_not_before: None,
            in_flight_requests: HashMap::new(),
            in_flight: HashMap::new(),
            idempotence: config.idempotent().then(Idempotence::default),
            closing_at: None,
            txn: config.transactional_id.clone().map(|id| {
                // Invariant: validate() keeps transaction.timeout.ms within i32.
                let timeout_ms = config.transaction_timeout.as_millis().min(i32::MAX as u128);
                txn::Transactions::new(id, timeout_ms as i32, config.pool.retry_backoff_policy())
            }),
            incomplete: Incomplete::default(),
            next_id: 0,
            flushes: Vec::new(),
            next_flush: 0,
            closing: false,
            fatal: None,
            stats,
            config,
            ids: RequestIds::default(),
            requests: VecDeque::new(),
            events: VecDeque::new(),
            now,
        }
    }

    /// Queues a record: [`records`](Self::records) of one, as the tests give them.
    #[cfg(test)]
    pub(crate) fn record(&mut self, now: Instant, incoming: Incoming<T>) {
        self.records(now, [incoming]);
    }

    /// Queues `records`, in their order, and decides once for all of them: records that came
    /// together are partitioned, batched and sent in one pass rather than one pass each.
    pub fn records(&mut self, now: Instant, records: impl IntoIterator<Item = Incoming<T>>) {
        for incoming in records {
            self.queue_record(incoming);
        }
        self.step(now);
    }

    fn queue_record(&mut self, mut incoming: Incoming<T>) {
        if self.closing {
            answer_record(
                &mut self.events,
                incoming.waiter,
                Err(ProduceError::closed()),
            );
        } else if let Some(fatal) = &self.fatal {
            Counters::add(&self.stats.records_failed, 1);
            answer_record(&mut self.events, incoming.waiter, Err(fatal.clone()));
        } else if let Err(refused) = self.txn_accepts_records() {
            // Outside a transaction: the record fails alone, and the transaction's state is
            // not changed by it (not counted as a failed record of the transaction).
            answer_record(&mut self.events, incoming.waiter, Err(refused));
        } else {
            // A record without a timestamp takes the wall clock when the producer took it,
            // not when it is placed (after a metadata refresh, perhaps).
            incoming.record.timestamp.get_or_insert(self.wall_ms);
            let id = self.next_id;
            self.next_id += 1;
            self.incomplete.insert(id);
            // Partitioned in `step`, in arrival order, once the topic is known.
            // Interned names compare by their pointers first: finding the one topic of most
            // producers is one comparison of two words.
            let name = incoming.record.topic;
            let topic = self.topics.entry(name).or_insert_with(TopicState::new);
            match topic.placing && topic.waiting.is_empty() {
                // Its partitions known and nothing before it waiting: placed now, in order.
                true if let Some(partitioner) = &mut topic.partitioner => {
                    placer!(self).place(&name, partitioner, &topic.partitions, id, incoming);
                }
                _ => topic.waiting.push_back((id, incoming)),
            }
        }
    }

    /// Sends every record queued so far without waiting for `linger.ms`;
    /// [`Event::Flushed`] with the id returned says when each of them is done.
    pub fn flush(&mut self, now: Instant) -> FlushId {
        let id = FlushId(self.next_flush);
        self.next_flush += 1;
        self.flushes.push((self.next_id, id));
        self.step(now);
        id
    }

    /// Refuses new records (they fail as closed) and sends every record queued without
    /// waiting for `linger.ms`; [`is_finished`](Self::is_finished) says when they are done.
    pub fn close(&mut self, now: Instant) {
        self.closing = true;
        self.closing_at.get_or_insert(now);
        self.txn_close();
        self.step(now);
    }

    /// The wall clock now, in ms since the epoch, as the driver read it before handing in
    /// records: those without a timestamp get this one (the machine reads no clock).
    pub fn wall_clock(&mut self, now_ms: i64) {
        self.wall_ms = now_ms;
    }

    /// Counts a batch as having lingered once less than `slack` of its `linger.ms` is left
    /// (all of it for a shorter linger), for a driver whose timers fire up to `slack` late:
    /// woken for the linger's very end, such a driver would send every batch that much past
    /// it, and every record would wait that much longer. With the slack, batches go within
    /// `slack` of their linger's end, before it or after, as the Java client's, which counts
    /// whole milliseconds, sends them up to 1 ms early. A driver with a precise timer gives no
    /// slack (`Duration::ZERO`).
    pub(crate) fn with_timer_slack(mut self, slack: Duration) -> Self {
        self.acc
            .set_linger(self.config.linger.saturating_sub(slack));
        self
    }

    /// Whether a batch waits for its `linger.ms` to end, which [`poll_timeout`] then wakes
    /// the machine for: until then records may wait to be handed in (none could make a batch
    /// go sooner unless it fills one).
    ///
    /// [`poll_timeout`]: Machine::poll_timeout
    pub fn lingering(&self) -> bool {
        self.acc.wakes(self.now).linger.is_some()
    }

    /// Closed, and nothing is waiting or in flight: the driver may stop.
    pub fn is_finished(&self) -> bool {
        self.closing && self.is_idle() && self.txn.as_ref().is_none_or(|t| t.is_idle())
    }

    fn is_idle(&self) -> bool {
        self.acc.is_empty()
            && self.in_flight_requests.is_empty()
            && self.topics.values().all(|t| t.waiting.is_empty())
    }

    /// One pass: expire, partition, refresh, initialize, send, answer flushes.
    fn step(&mut self, now: Instant) {
        self.now = now;
        if let Some(fatal) = self.fatal.clone() {
            self.fail_everything_waiting(&fatal);
        }
        self.expire(now);
        self.place_waiting();
        self.txn_step(now);
        self.start_refresh(now);
        self.start_init(now);
        self.send_ready(now);
        if !self.refresh_wanted && self.refresh.is_none() {
            // Everything the metadata was wanted for is resolved: the next refresh after a
            // new error starts the backoff over.
            self.refreshes = 0;
        }
        self.answer_flushes();
    }

    /// When `timer` fires, as the state says after the last input's pass: the one rule of each
    /// timer. Only instants after that input's `now` count: whatever was due by then was done
    /// in its pass, or waits for an input (a leader, a producer id, a free request slot), so a
    /// past instant would only make the driver spin.
    fn deadline(&self, timer: Timer, wakes: &Wakes) -> Option<Instant> {
        let now = self.now;
        let after = |at: Option<Instant>| at.filter(|&at| at > now);
        match timer {
            Timer::RecordDeadline => self
                .topics
                .values()
                .filter_map(|t| t.waiting.front())
                .map(|(_, first)| first.received + self.config.delivery_timeout)
                .filter(|&at| at > now)
                .min(),
            // The accumulator's wakes are after `now` already.
            Timer::BatchDeadline => wakes.deadline,
            Timer::Linger => wakes.linger,
            Timer::RetryBackoff => wakes.backoff,
            Timer::MetadataRetry => after(
                self.refresh_not_before
                    .filter(|_| self.refresh_wanted && self.refresh.is_none()),
            ),
            Timer::ProducerIdRetry => after(
                self.idempotence
                    .as_ref()
                    .filter(|i| i.init.is_none() && (i.producer.is_none() || i.reset_wanted))
                    .and_then(|i| i.not_before),
            ),
            // Each of the transaction's times is taken only if after `now` before the earliest
            // is: a backoff that is over (its request waits for a coordinator) must not hide
            // the lookup's that is not.
            Timer::Transaction => self
                .txn
                .as_ref()
                .and_then(|t| t.retry_at(now))
                .into_iter()
                .chain(after(self.txn_give_up_at()))
                .min(),
        }
    }

    /// The timer table, as the state after the last input's pass says it is.
    fn timers(&self) -> Timers {
        let wakes = self.acc.wakes(self.now);
        Timers::from_deadlines(|timer| self.deadline(timer, &wakes))
    }

    /// `timer` fired, before the pass that follows it.
    fn on_timer(&mut self, timer: Timer) {
        match timer {
            // The backoff is over: the refresh goes in this pass if it is still wanted, and
            // the backoff is not left behind in the past.
            Timer::MetadataRetry => self.refresh_not_before = None,
            // The same for InitProducerId.
            Timer::ProducerIdRetry => {
                if let Some(i) = &mut self.idempotence {
                    i.not_before = None;
                }
            }
            // Every pass fails what expired and sends what is ready, whatever its input (an
            // answer may come after a deadline): these only wake the machine for that pass.
            // The transaction's backoffs are read against the pass's `now` the same way.
            Timer::RecordDeadline
            | Timer::BatchDeadline
            | Timer::Linger
            | Timer::RetryBackoff
            | Timer::Transaction => {}
        }
    }

    fn fail_everything_waiting(&mut self, error: &ProduceError) {
        for t in self.topics.values_mut() {
            for (id, incoming) in t.waiting.drain(..) {
                self.incomplete.remove(&id);
                Counters::add(&self.stats.records_failed, 1);
                answer_record(&mut self.events, incoming.waiter, Err(error.clone()));
            }
        }
        for (tp, batch) in self.acc.drain_waiting() {
            self.fail_batch(&tp, batch, error.clone().for_partition(&tp));
        }
    }

    /// Fails records and batches whose `delivery.timeout.ms` has passed, with the failure that
    /// kept them back.
    fn expire(&mut self, now: Instant) {
        let timeout = self.config.delivery_timeout;
        for (name, t) in self.topics.iter_mut() {
            while t
                .waiting
                .front()
                .is_some_and(|(_, i)| i.received + timeout <= now)
            {
                let Some((id, incoming)) = t.waiting.pop_front() else {
                    break;
                };
                self.incomplete.remove(&id);
                Counters::add(&self.stats.records_failed, 1);
                let what = match incoming.record.partition {
                    Some(p) => format!("{name}-{p}"),
                    None => name.to_string(),
                };
                answer_record(
                    &mut self.events,
                    incoming.waiter,
                    Err(ProduceError::timed_out(
                        timeout,
                        &what,
                        t.last_error.as_ref(),
                    )),
                );
            }
        }
        for (tp, batch) in self.acc.expire(now) {
            let error =
                ProduceError::timed_out(timeout, &tp.to_string(), batch.last_error.as_ref())
                    .for_partition(&tp);
            self.fail_batch(&tp, batch, error);
        }
    }

    /// Partitions the waiting records of every topic the metadata knows, in arrival order.
    fn place_waiting(&mut self) {
        let metadata = self.metadata.clone();
        let kind = self.config.partitioner;
        let seeds = &mut self.partitioner_seeds;
        let mut wanted = false;
        for (name, t) in self.topics.iter_mut() {
            if t.waiting.is_empty() {
                continue;
            }
            let count = match metadata.topic(name) {
                Some(m) if m.error_code == 0 && !m.partitions.is_empty() => {
                    m.partitions.len() as i32
                }
                Some(m) if m.error_code != 0 => {
                    let retriable = is_stale_metadata_error(m.error_code)
                        || retry::init_retriable(m.error_code);
                    let error = ProduceError::broker(
                        ApiKey::Metadata,
                        m.error_code,
                        None,
                        &format!("the metadata of topic {name}"),
                        retriable,
                    );
                    if !retriable {
                        // TOPIC_AUTHORIZATION_FAILED, INVALID_TOPIC_EXCEPTION: no wait helps.
                        for (id, incoming) in t.waiting.drain(..) {
                            self.incomplete.remove(&id);
                            Counters::add(&self.stats.records_failed, 1);
                            answer_record(&mut self.events, incoming.waiter, Err(error.clone()));
                        }
                        continue;
                    }
                    t.last_error = Some(error);
                    wanted = true;
                    continue;
                }
                _ => {
                    wanted = true;
                    continue;
                }
            };
            let partitioner = t
                .partitioner
                .get_or_insert_with(|| Partitioner::with_seed(kind, count, seeds.u64(..)));
            if partitioner.partitions() != count {
                partitioner.resize(count);
            }
            if t.partitions.len() != count as usize {
                t.partitions = (0..count)
                    .map(|p| TopicPartition::new(name.as_str(), p))
                    .collect();
            }
            t.last_error = None;
            t.placing = true;
            let mut placer = placer!(self);
            for (id, incoming) in t.waiting.drain(..) {
                placer.place(name, partitioner, &t.partitions, id, incoming);
            }
            // The next records are placed as they come, until the metadata changes: the room
            // of a burst that waited (the records sent before the topic's first metadata came,
            // or those taken in the pass after a refresh) is given back.
            if t.waiting.capacity() > 2 * WAITING_KEPT {
                t.waiting.shrink_to(WAITING_KEPT);
            }
        }
        if wanted {
            self.refresh_wanted = true;
        }
    }

    /// Starts a metadata refresh of every topic produced to, if one is wanted and the backoff
    /// since the last allows.
    fn start_refresh(&mut self, now: Instant) {
        if !self.refresh_wanted
            || self.refresh.is_some()
            || self.refresh_not_before.is_some_and(|at| at > now)
        {
            return;
        }
        self.refresh_wanted = false;
        let scope = TopicScope::topics(self.topics.keys().map(|t| t.to_string()));
        let id = self.ids.next_id();
        self.refresh = Some(id);
        self.requests.push_back(Outgoing {
            id,
            target: Target::Any,
            request: Request::Metadata(scope),
            timeout: None,
        });
    }

    fn refreshed(
        &mut self,
        result: Result<Result<Arc<Metadata>, kcon_pool::Error>, RequestFailure>,
        now: Instant,
    ) {
        match result {
            Ok(Ok(metadata)) => {
                self.metadata = metadata;
                // Each topic's partitions are checked against it at its next pass.
                for t in self.topics.values_mut() {
                    t.placing = false;
                }
            }
            Ok(Err(e)) if !e.is_retriable() => {
                // Authentication or an unsupported broker: the records waiting for the
                // metadata cannot get it.
                let error = ProduceError::pool(e, "asking for the topics' metadata");
                for t in self.topics.values_mut() {
                    for (id, incoming) in t.waiting.drain(..) {
                        self.incomplete.remove(&id);
                        Counters::add(&self.stats.records_failed, 1);
                        answer_record(&mut self.events, incoming.waiter, Err(error.clone()));
                    }
                }
            }
            Ok(Err(e)) => {
                let error = ProduceError::pool(e, "asking for the topics' metadata");
                debug!(error = %error, "metadata refresh failed");
                for t in self.topics.values_mut().filter(|t| !t.waiting.is_empty()) {
                    t.last_error = Some(error.clone());
                }
                self.refresh_wanted = true;
            }
            Err(e) => {
                warn!(error = %e, "the metadata refresh task failed");
                self.refresh_wanted = true;
            }
        }
        // Back off before the next refresh, longer while they keep leaving something
        // unresolved (KIP-580); a pass that wants none resets the count.
        self.refresh_not_before = Some(now + self.backoff.delay(self.refreshes, self.rng.f64()));
        self.refreshes = self.refreshes.saturating_add(1);
    }

    /// Starts InitProducerId when the producer needs an id and nothing is in flight under the
    /// old one.
    fn start_init(&mut self, now: Instant) {
        if self.txn.is_some() {
            // The transaction asks for its producer id itself, at its coordinator.
            return;
        }
        let in_flight = !self.in_flight_requests.is_empty();
        let Some(i) = &mut self.idempotence else {
            return;
        };
        let needed = i.producer.is_none() || i.reset_wanted;
        if !needed || i.init.is_some() || i.not_before.is_some_and(|at| at > now) {
            return;
        }
        // Nothing to send yet: no id is needed before the first record.
        if self.acc.is_empty() && self.topics.values().all(|t| t.waiting.is_empty()) {
            return;
        }
        // Batches in flight carry the old id: their answers must come first, so that no
        // sequence of the old id is reused under the new one while it may still be written.
        if in_flight {
            return;
        }
        // A fresh id (-1, -1), not an epoch bump of the old one: the Java client bumps the
        // epoch only for transactional producers on brokers with KIP-360, and a fresh id works
        // with every broker that answers InitProducerId.
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            // Unused without a transactional id; the Java client's `transaction.timeout.ms`
            // default, within any broker's `transaction.max.timeout.ms`.
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let id = self.ids.next_id();
        i.init = Some(id);
        self.requests.push_back(Outgoing {
            id,
            target: Target::Any,
            request: Request::InitProducerId(request),
            timeout: None,
        });
    }

    fn initialized(
        &mut self,
        result: Result<Result<InitProducerIdResponse, kcon_pool::Error>, RequestFailure>,
        now: Instant,
    ) {
        let backoff = self.backoff;
        let Some(i) = &mut self.idempotence else {
            return;
        };
        let error = match result {
            Ok(Ok(r)) if r.error_code == 0 && r.producer_id.0 >= 0 => {
                debug!(
                    producer_id = r.producer_id.0,
                    epoch = r.producer_epoch,
                    "producer id"
                );
                i.producer = Some((r.producer_id.0, r.producer_epoch));
                i.sequences.clear();
                i.failures = 0;
                i.not_before = None;
                i.reset_wanted = false;
                self.acc.forget_sequences();
                return;
            }
            Ok(Ok(r)) => {
                let code = if r.error_code == 0 {
                    // No error and no id: a broken answer; asking again may do better.
                    kcon_codec::kafka_protocol::ResponseError::UnknownServerError.code()
                } else {
                    r.error_code
                };
                let retriable = retry::init_retriable(code);
                ProduceError::broker(
                    ApiKey::InitProducerId,
                    code,
                    None,
                    "asking for a producer id",
                    retriable,
                )
            }
            Ok(Err(e)) => ProduceError::pool(e, "asking for a producer id"),
            Err(e) => ProduceError::new(
                ErrorKind::Closed,
                true,
                format!("asking for a producer id: the task failed: {e}"),
            ),
        };
        if error.is_retriable() {
            debug!(error = %error, "InitProducerId failed; retrying");
            i.not_before = Some(now + backoff.delay(i.failures, self.rng.f64()));
            i.failures = i.failures.saturating_add(1);
            // Records waiting on it time out with this error if it never comes.
            for b in self.topics.values_mut() {
                if !b.waiting.is_empty() {
                    b.last_error = Some(error.clone());
                }
            }
        } else {
            warn!(error = %error, "no producer id: every record fails");
            self.fatal = Some(error);
        }
    }

    /// Sends every ready batch whose leader is known, one request per leader holding up to
    /// `max.request.size` of batches, while the leader has fewer than
    /// `max.in.flight.requests.per.connection` requests in flight.
    fn send_ready(&mut self, now: Instant) {
        if self.idempotence.as_ref().is_some_and(|i| !i.ready()) {
            return;
        }
        let flushing = self.closing
            || !self.flushes.is_empty()
            || self.txn.as_ref().is_some_and(|t| t.flushing());
        // Per leader: whether a head is ready, and every head that may go. A leader with a ready
        // head takes the others' heads too, lingered or not, as the Java client's drain takes
        // every partition of a ready node: their records go sooner, in the same request.
        type Heads = Vec<(TopicPartition, bool, Instant)>;
        let mut by_leader: BTreeMap<i32, (bool, Heads)> = BTreeMap::new();
        for (tp, ready, opened) in self.acc.sendable(now, flushing) {
            // In a transaction, a partition's batches wait until it is added to it.
            if self.txn.as_ref().is_some_and(|t| !t.may_send(&tp)) {
                continue;
            }
            match self
                .metadata
                .partition(&tp.topic, tp.partition)
                .and_then(|p| p.leader)
                .filter(|l| self.metadata.broker(*l).is_some())
            {
                Some(leader) => {
                    let (any_ready, heads) = by_leader.entry(leader).or_default();
                    *any_ready |= ready;
                    heads.push((tp, ready, opened));
                }
                None if ready => self.refresh_wanted = true,
                None => {}
            }
        }
        let max_in_flight = self.config.pool.max_in_flight_requests_per_connection;
        for (leader, (any_ready, mut heads)) in by_leader {
            if !any_ready {
                continue;
            }
            // The ready heads first, the one opened first first (partition order among heads
            // opened together); the others fill the room left in the requests the ready ones
            // make, and never make one of their own. In partition order alone, batches too
            // large to share a request (a full one at 100 B is most of `max.request.size`)
            // starved the partitions late in the order: one early in it, its next batch ready
            // whenever its answer came, took every request slot that came free, and the
            // others waited until `send` stopped for room. The Java client rotates where its
            // drain starts for the same reason.
            heads.sort_by_key(|(_, ready, opened)| (!ready, *opened));
            let mut partitions = heads.into_iter().peekable();
            while partitions.peek().is_some_and(|(_, ready, _)| *ready)
                && self.in_flight.get(&leader).copied().unwrap_or(0) < max_in_flight
            {
                let mut carried = Vec::new();
                let mut data: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
                let mut total = 0usize;
                while let Some((tp, _, _)) = partitions.peek().cloned() {
                    let Some(head) = self.acc.head_mut(&tp) else {
                        partitions.next();
                        continue;
                    };
                    if !carried.is_empty()
                        && total.saturating_add(head.bytes) > self.config.max_request_size
                    {
                        break;
                    }
                    partitions.next();
                    let transactional = self.txn.is_some();
                    let sequenced = self.idempotence.as_mut().and_then(|i| {
                        let (producer_id, producer_epoch) = i.producer?;
                        if let Some(s) = head.sequenced()
                            && (s.producer_id, s.producer_epoch) == (producer_id, producer_epoch)
                        {
                            return Some(s);
                        }
                        let next = i.sequences.entry(tp.clone()).or_insert(0);
                        let s = Sequenced {
                            producer_id,
                            producer_epoch,
                            base_sequence: *next,
                            transactional,
                        };
                        *next = next_sequence(*next, head.records.len() as i32);
                        Some(s)
                    });
                    let bytes = match head.encode(sequenced) {
                        Ok(b) => b,
                        Err(e) => {
                            let error = ProduceError::new(
                                ErrorKind::InvalidRecord,
                                false,
                                format!("cannot encode the batch for {tp}: {e}"),
                            )
                            .for_partition(&tp);
                            if let Some(batch) = self.acc.pop_head(&tp) {
                                self.fail_batch(&tp, batch, error);
                            }
                            continue;
                        }
                    };
                    total = total.saturating_add(bytes.len());
                    self.acc.set_in_flight(&tp);
                    data.entry(tp.topic.clone()).or_default().push(
                        PartitionProduceData::default()
                            .with_index(tp.partition)
                            .with_records(Some(bytes)),
                    );
                    carried.push(tp);
                }
                if carried.is_empty() {
                    continue;
                }
                self.send_request(leader, carried, data);
            }
        }
    }

    fn send_request(
        &mut self,
        leader: i32,
        partitions: Vec<TopicPartition>,
        data: BTreeMap<String, Vec<PartitionProduceData>>,
    ) {
        let timeout = self.config.pool.request_timeout;
        let request = ProduceRequest::default()
            .with_transactional_id(
                self.config
                    .transactional_id
                    .clone()
                    .map(|id| TransactionalId(StrBytes::from_string(id))),
            )
            .with_acks(self.config.acks.wire())
            // The broker waits this long for the replicas, as the Java client sets it from
            // request.timeout.ms.
            .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(
                data.into_iter()
                    .map(|(name, partitions)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partition_data(partitions)
                    })
                    .collect(),
            );
        *self.in_flight.entry(leader).or_insert(0) += 1;
        let id = self.ids.next_id();
        self.in_flight_requests.insert(id, (leader, partitions));
        self.requests.push_back(Outgoing {
            id,
            target: Target::Broker(leader),
            request: Request::Produce(request, self.txn.as_ref().map(|t| t.protocol)),
            timeout: None,
        });
    }

    /// The answer to a Produce request to `leader` carrying `partitions`' heads.
    fn answered(
        &mut self,
        leader: i32,
        partitions: Vec<TopicPartition>,
        result: Result<ProduceResponse, kcon_pool::Error>,
        now: Instant,
    ) {
        if let Some(n) = self.in_flight.get_mut(&leader) {
            *n = n.saturating_sub(1);
        }
        let idempotent = self.idempotence.is_some();
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let retriable = e.is_retriable();
                let error = ProduceError::pool(e, &format!("producing to broker {leader}"));
                if retriable {
                    // A lost connection may mean a moved leader, as the Java client's `Sender`
                    // assumes on a disconnect.
                    self.refresh_wanted = true;
                }
                for tp in &partitions {
                    let e = error.clone().for_partition(tp);
                    if retriable {
                        self.retry_or_fail(tp, e, now);
                    } else {
                        self.fail_head(tp, e);
                    }
                }
                return;
            }
        };
        let mut by_partition: HashMap<(&str, i32), _> = HashMap::new();
        for t in &response.responses {
            for p in &t.partition_responses {
                by_partition.insert((t.name.0.as_str(), p.index), p);
            }
        }
        for tp in &partitions {
            let Some(p) = by_partition.get(&(tp.topic.as_str(), tp.partition)) else {
                let error = ProduceError::new(
                    ErrorKind::Corrupt,
                    false,
                    format!(
                        "broker {} answered a Produce request without {tp}: whether its batch \
                         was written is unknown",
                        leader
                    ),
                )
                .for_partition(tp);
                self.fail_head(tp, error);
                continue;
            };
            // The broker's refusal of this partition's batch, made only when there is one.
            let refused = |retriable: bool| {
                ProduceError::broker(
                    ApiKey::Produce,
                    p.error_code,
                    Some(tp.clone()),
                    &format!("producing to {tp}"),
                    retriable,
                )
            };
            match retry::outcome(p.error_code, idempotent) {
                Outcome::Delivered { offset_known } => {
                    let offset = (offset_known && p.base_offset >= 0).then_some(p.base_offset);
                    let append_time = (p.log_append_time_ms >= 0).then_some(p.log_append_time_ms);
                    self.deliver(tp, offset, append_time);
                }
                Outcome::Retry { refresh_metadata } => {
                    if refresh_metadata {
                        self.refresh_wanted = true;
                    }
                    let error = refused(true);
                    self.retry_or_fail(tp, error, now);
                }
                Outcome::ResetProducerId { .. }
                    if self.txn.is_some()
                        && p.error_code == ResponseError::InvalidProducerEpoch.code() =>
                {
                    // The leader has seen a newer epoch of the producer id: the transaction
                    // coordinator ended the transaction under it (KIP-588), after
                    // transaction.timeout.ms or for a producer that took the id over. The
                    // transaction is aborted; the abort bumps the epoch, or fails as fenced.
                    let error = refused(false)
                        .advising(&self.txn_epoch_advice(now))
                        .abortable();
                    self.txn_aborted_by_coordinator(&error);
                    self.fail_head(tp, error);
                }
                Outcome::ResetProducerId { .. } if self.txn.is_some() && fenced(p.error_code) => {
                    // Another producer with the same transactional.id took over.
                    let error = refused(false);
                    self.txn_fatal(error.clone());
                    self.fail_head(tp, error.fatal());
                }
                Outcome::ResetProducerId { retry } => {
                    let error = refused(retry);
                    // In a transaction the batch fails, and with it the transaction; its
                    // abort bumps the epoch.
                    let retry = retry && !self.txn_sequence_lost(&error);
                    if self.txn.is_none()
                        && let Some(i) = &mut self.idempotence
                    {
                        i.reset_wanted = true;
                    }
                    if retry {
                        self.retry_or_fail(tp, error, now);
                    } else {
                        self.fail_head(tp, refused(false));
                    }
                }
                Outcome::Fail => {
                    let error = refused(false);
                    self.fail_head(tp, error);
                }
            }
        }
    }

    /// The partition's head batch is written: every record gets its offset.
    fn deliver(&mut self, tp: &TopicPartition, base_offset: Option<i64>, append_time: Option<i64>) {
        let Some(batch) = self.acc.pop_head(tp) else {
            return;
        };
        Counters::add(&self.stats.batches_delivered, 1);
        Counters::add(&self.stats.records_delivered, batch.records.len() as u64);
        let mut list = batch.records;
        for (i, r) in list.drain(..).enumerate() {
            self.incomplete.remove(&r.id);
            answer_record(
                &mut self.events,
                r.waiter,
                Ok(Delivered {
                    topic: r.topic,
                    partition: tp.partition,
                    offset: base_offset.and_then(|b| b.checked_add(i as i64)),
                    timestamp: append_time.unwrap_or(r.timestamp),
                }),
            );
        }
        self.acc.give_list(list);
    }

    /// Sends the head again after the backoff if retries and time allow, else fails it.
    fn retry_or_fail(&mut self, tp: &TopicPartition, error: ProduceError, now: Instant) {
        let retries = self.config.retries;
        let Some(head) = self.acc.head_mut(tp) else {
            return;
        };
        let delay = self.backoff.delay(head.retries, self.rng.f64());
        if retry::may_retry(head.retries, retries, now, delay, head.deadline) {
            debug!(partition = %tp, error = %error, retries = head.retries + 1, "retrying a batch");
            Counters::add(&self.stats.retries, 1);
            self.acc.retry_head(tp, now + delay, error);
        } else {
            let error = if head.retries >= retries {
                error
            } else {
                ProduceError::timed_out(self.config.delivery_timeout, &tp.to_string(), Some(&error))
                    .for_partition(tp)
            };
            self.fail_head(tp, error);
        }
    }

    fn fail_head(&mut self, tp: &TopicPartition, error: ProduceError) {
        if let Some(batch) = self.acc.pop_head(tp) {
            self.fail_batch(tp, batch, error);
        }
    }

    /// Fails every record of `batch`. A batch sent with sequence numbers leaves the broker's
    /// expectation in doubt: if the broker refused it, the partition's next sequence goes back
    /// to the batch's; if its fate is unknown (a timeout, a lost answer), a new producer id
    /// starts the sequences over (as the Java client's idempotent producer does when a batch
    /// with an unresolved sequence expires).
    fn fail_batch(&mut self, tp: &TopicPartition, batch: Batch<Pending<T>>, error: ProduceError) {
        if let (Some(i), Some(s)) = (&mut self.idempotence, batch.sequenced())
            && i.producer == Some((s.producer_id, s.producer_epoch))
        {
            // Refused for good (MESSAGE_TOO_LARGE, INVALID_RECORD, ...): not written. A
            // retriable error that ran out of retries may have been written after all
            // (NOT_ENOUGH_REPLICAS_AFTER_APPEND), so only a new id is safe then.
            let refused =
                error.kind() == ErrorKind::Broker && !error.is_retriable() && !i.reset_wanted;
            if refused {
                i.sequences.insert(tp.clone(), s.base_sequence);
            } else if let Some(t) = self.txn.as_mut() {
                // The abort the failure forces bumps the epoch.
                t.want_bump();
            } else {
                i.reset_wanted = true;
            }
        }
        Counters::add(&self.stats.records_failed, batch.records.len() as u64);
        debug!(partition = %tp, error = %error, records = batch.records.len(), "batch failed");
        let mut list = batch.records;
        for r in list.drain(..) {
            self.incomplete.remove(&r.id);
            answer_record(&mut self.events, r.waiter, Err(error.clone()));
        }
        self.acc.give_list(list);
    }

    /// Answers every flush whose records (those queued before it) are all done.
    fn answer_flushes(&mut self) {
        let first = self.incomplete.first();
        let (done, waiting): (Vec<_>, Vec<_>) = self
            .flushes
            .drain(..)
            .partition(|(marker, _)| first.is_none_or(|f| f >= *marker));
        self.flushes = waiting;
        for (_, id) in done {
            self.events.push_back(Event::Flushed(id));
        }
    }
}

/// The ids of the records not done yet. Ids are given one after another and records finish
/// in any order; a flush asks only for the lowest id not done. Kept as a window from that id
/// up, one flag per id: a record's id added and taken out in constant time (amortized), where
/// a sorted set took a search each.
#[derive(Debug, Default)]
struct Incomplete {
    /// The id of the window's first flag.
    base: u64,
    /// Whether each id from `base` up is not done yet; the first, when there is one, is.
    pending: VecDeque<bool>,
}

impl Incomplete {
    /// Adds `id`, which is above every id added before.
    fn insert(&mut self, id: u64) {
        if self.pending.is_empty() {
            self.base = id;
        }
        let end = self.base + self.pending.len() as u64;
        // Ids skipped (none, as the machine gives them) count as done.
        for _ in end..id {
            self.pending.push_back(false);
        }
        if id >= end {
            self.pending.push_back(true);
        }
    }

    /// Takes `id` out, if it is in.
    fn remove(&mut self, id: &u64) {
        let Some(at) = id.checked_sub(self.base) else {
            return;
        };
        if let Some(flag) = usize::try_from(at)
            .ok()
            .and_then(|at| self.pending.get_mut(at))
        {
            *flag = false;
        }
        while self.pending.front() == Some(&false) {
            self.pending.pop_front();
            self.base += 1;
        }
    }

    /// Whether every record is done.
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The lowest id not done yet.
    fn first(&self) -> Option<u64> {
        (!self.pending.is_empty()).then_some(self.base)
    }
}

impl<T> Machine for SenderMachine<T> {
    type Request = Request;
    type Target = Target;
    type Response = Response;
    type Event = Event<T>;

    /// A failure (the task carrying the request out ended without a result) counts as a
    /// Produce request the pool stopped on ([`kcon_pool::Error::Stopped`]: its batches fail,
    /// their fate unknown, rather than stay in flight forever), a metadata refresh to try
    /// again, and an InitProducerId that failed retriably.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Response, RequestFailure>,
    ) {
        if self.txn.as_ref().is_some_and(|t| t.owns(id)) {
            self.txn_answered(now, id, result);
        } else if let Some((leader, partitions)) = self.in_flight_requests.remove(&id) {
            let result = match result {
                Ok(Response::Produce(r)) => r,
                _ => Err(kcon_pool::Error::Stopped),
            };
            self.answered(leader, partitions, result, now);
        } else if self.refresh == Some(id) {
            self.refresh = None;
            let result = match result {
                Ok(Response::Metadata(r)) => Ok(r),
                Ok(_) => Err(RequestFailure::fatal("not a metadata answer")),
                Err(f) => Err(f),
            };
            self.refreshed(result, now);
        } else if let Some(i) = self.idempotence.as_mut().filter(|i| i.init == Some(id)) {
            i.init = None;
            let result = match result {
                Ok(Response::InitProducerId(r)) => Ok(r.map(|(answer, _)| answer)),
                Ok(_) => Err(RequestFailure::fatal("not an InitProducerId answer")),
                Err(f) => Err(f),
            };
            self.initialized(result, now);
        }
        self.step(now);
    }

    /// Fires the timers due at `now`, then makes a pass.
    fn handle_timeout(&mut self, now: Instant) {
        let timers = self.timers();
        for timer in timers.expired(now) {
            self.on_timer(timer);
        }
        self.step(now);
    }

    fn poll_request(&mut self, _now: Instant) -> Option<Outgoing<Request, Target>> {
        self.requests.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    /// The table's earliest timer: a linger, backoff or deadline ends.
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers().next()
    }
}

/// Whether a Produce error code means another producer with the same transactional id took
/// over, or the producer may not use it: fatal to a transactional producer. INVALID_PRODUCER_EPOCH
/// is not (KIP-588): the transaction is over, not necessarily the producer.
fn fenced(code: i16) -> bool {
    use kcon_codec::kafka_protocol::ResponseError as E;
    matches!(
        ResponseError::try_from_code(code),
        Some(E::ProducerFenced | E::TransactionalIdAuthorizationFailed)
    )
}

/// The [`Placer`] of machine `$m`: its fields borrowed one by one, so that its topics can be
/// borrowed beside them.
macro_rules! placer {
    ($m:expr) => {
        Placer {
            acc: &mut $m.acc,
            events: &mut $m.events,
            incomplete: &mut $m.incomplete,
            stats: &$m.stats,
            wall_ms: $m.wall_ms,
            timeout: $m.config.delivery_timeout,
        }
    };
}
use placer;

/// What placing a record in the accumulator touches of the machine, borrowed apart from its
/// topics (whose partitioner and partitions place it).
struct Placer<'a, T> {
    acc: &'a mut Accumulator<Pending<T>>,
    events: &'a mut VecDeque<Event<T>>,
    incomplete: &'a mut Incomplete,
    stats: &'a Counters,
    /// The timestamp of a record taken without one.
    wall_ms: i64,
    /// `delivery.timeout.ms`.
    timeout: Duration,
}

impl<T> Placer<'_, T> {
    /// Places record `id` of topic `name` (of `partitions.len()` partitions) in its partition's
    /// batch, or fails it when it names a partition the topic does not have.
    fn place(
        &mut self,
        name: &str,
        partitioner: &mut Partitioner,
        partitions: &[TopicPartition],
        id: u64,
        incoming: Incoming<T>,
    ) {
        let Incoming {
            record,
            packed,
            size,
            waiter,
            received,
        } = incoming;
        let count = partitions.len() as i32;
        let partition = match record.partition {
            Some(p) if (0..count).contains(&p) => p,
            Some(p) => {
                self.incomplete.remove(&id);
                Counters::add(&self.stats.records_failed, 1);
                answer_record(
                    self.events,
                    waiter,
                    Err(ProduceError::new(
                        ErrorKind::InvalidRecord,
                        false,
                        format!("partition {p} of {name} does not exist (it has {count})"),
                    )),
                );
                return;
            }
            None => partitioner.partition(record.key.as_deref()),
        };
        let timestamp = record.timestamp.unwrap_or(self.wall_ms);
        let headers: Vec<(&[u8], Option<&[u8]>)> = match &packed {
            Some(packed) => packed.iter().collect(),
            None => record
                .headers
                .iter()
                .map(|(k, v)| (&k[..], v.as_deref()))
                .collect(),
        };
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            ..NewRecord::default()
        };
        let pending = Pending {
            id,
            timestamp,
            waiter,
            topic: record.topic,
        };
        // Invariant: `partition` is below `count`, the length of `partitions` (the
        // partitioner's own count).
        let tp = &partitions[partition as usize];
        // A batch opened by this record lingers from when the producer took it: a record that
        // waited (for its topic's metadata, or in the producer's queue while the task waited
        // for another batch's linger) waited part of it already.
        self.acc
            .append(tp, new, size, pending, received, received + self.timeout);
    }
}

/// Tells a record's waiter its outcome.
fn answer_record<T>(
    events: &mut VecDeque<Event<T>>,
    waiter: T,
    result: Result<Delivered, ProduceError>,
) {
    events.push_back(Event::Answer { waiter, result });
}

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
mod txn;

pub(crate) use txn::txn_offset_commit_at;
pub use txn::{CallId, TxnCall, TxnOffset, TxnOp, TxnProtocol};
