//! The application's side: the [`Producer`] handle, its builder, and the [`Delivery`] a send
//! returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use kcon_core::telemetry::ClientInstanceId;
use kcon_core::{ConsumerGroupMetadata, TopicPartition};
use kcon_pool::{AutoCreate, Pool, TokenProvider};
use tokio::sync::{Semaphore, TryAcquireError, oneshot};

use crate::config::{Acks, ProducerConfig};
use crate::deliveries::{Deliveries, Group, Reply};
use crate::error::{ErrorKind, ProduceError};
use crate::hooks::{self, Hooks, ProducerHooks};
use crate::inbox::{self, Queue};
use crate::machine::{TxnCall, TxnOffset, TxnOp};
use crate::packed;
use crate::record::{Delivered, ProducerRecord};
use crate::sender::{self, Command, Incoming};

/// A Kafka producer: a cheap-to-clone handle on one background task that batches, sends and
/// retries.
///
/// ```no_run
/// use kcon_produce::{Producer, ProducerRecord};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kcon_produce::ProduceError> {
/// let producer = Producer::builder()
///     .set("bootstrap.servers", "localhost:9092")
///     .set("enable.idempotence", "true")
///     .set("compression.type", "zstd")
///     .build()?;
/// // Waits for room in `buffer.memory`, then the record is queued: records of one partition
/// // are written in the order their sends returned.
/// let delivery = producer.send(ProducerRecord::new("invoices", "paid").with_key("c-7")).await?;
/// // Resolves once the broker acknowledged the record with the configured acks.
/// let delivered = delivery.await?;
/// println!("{}-{} at {:?}", delivered.topic, delivered.partition, delivered.offset);
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Memory
///
/// A record is dropped by the producer's task, once its batch is built: on another thread than
/// the one that made it. Under glibc's allocator each allocation freed there takes a lock the
/// allocating thread's own allocations contend on. So [`send`](Producer::send) and
/// [`send_all`](Producer::send_all) move what the record alone holds into one buffer the
/// calling thread keeps for the purpose, and free the originals on that thread: its headers
/// (their list, names and values), and a key or value of at most 512 bytes made for it alone.
/// Producing 1,000,000 records of 100 bytes at `acks=1`, each value allocated for its record,
/// takes about 1.2 s of CPU so (1.1 s when the records share one buffer, 1.8 s when the task
/// frees each value).
/// A larger key or value, and one shared with other records (`Bytes` slices of a buffer the
/// caller keeps), is left as it is, and freed by the task: an application producing large
/// values at high rates does well to use an allocator whose threads free each other's memory
/// cheaply (jemalloc, mimalloc), or to cut values from shared buffers.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    /// The producer task's queue.
    commands: Queue,
    /// `buffer.memory`, in bytes of records not yet acknowledged.
    memory: Arc<Semaphore>,
    config: Arc<ProducerConfig>,
    pool: Pool,
    stats: Arc<Counters>,
    hooks: Hooks,
    /// The metrics pushed to the cluster (KIP-714), unless `enable.metrics.push` is false.
    telemetry: Option<kcon_pool::telemetry::Telemetry>,
}

/// What the producer has done so far: [`Producer::metrics`], or
/// [`ProducerMetricsHandle::snapshot`] from any task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerMetrics {
    /// Records the brokers acknowledged.
    pub records_delivered: u64,
    /// Batches the brokers acknowledged.
    pub batches_delivered: u64,
    /// Records that failed.
    pub records_failed: u64,
    /// Batches sent again after a retriable failure.
    pub retries: u64,
    /// Times the transaction coordinator answered whether the last transaction's markers
    /// were written, asked before the next transaction added a partition or offsets when it
    /// began soon after the last ended.
    pub marker_checks: u64,
    /// Transactions whose first partition or offsets waited because the coordinator said the
    /// last transaction's markers were still being written.
    pub marker_waits: u64,
}

/// A handle that reads a producer's metrics from any task or thread, while the producer runs
/// and after it closed (the last values then): the shape of the consumer's metrics handle,
/// which kcon-prometheus's collector reads at every scrape.
#[derive(Debug, Clone)]
pub struct ProducerMetricsHandle {
    counters: Arc<Counters>,
    client_id: Arc<str>,
}

impl ProducerMetricsHandle {
    /// The producer's metrics now.
    pub fn snapshot(&self) -> ProducerMetrics {
        ProducerMetricsHandle::read(&self.counters)
    }

    fn read(s: &Counters) -> ProducerMetrics {
        ProducerMetrics {
            records_delivered: s.records_delivered.load(Ordering::Relaxed),
            batches_delivered: s.batches_delivered.load(Ordering::Relaxed),
            records_failed: s.records_failed.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            marker_checks: s.marker_checks.load(Ordering::Relaxed),
            marker_waits: s.marker_waits.load(Ordering::Relaxed),
        }
    }

    /// The producer's `client.id`, which labels its series.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// The producer's metrics as it pushes them to the cluster (KIP-714), named after the Java
/// producer's (`org.apache.kafka.producer.` and the Java metric's group and name, dashes as
/// dots): `record.send.total` counts the records the brokers acknowledged (Java's counts them
/// as they are sent), `record.error.total` those that failed.
fn telemetry(m: &ProducerMetrics) -> Vec<kcon_pool::telemetry::Metric> {
    use kcon_pool::telemetry::Metric;
    vec![
        Metric::counter(
            "org.apache.kafka.producer.record.send.total",
            m.records_delivered,
        ),
        Metric::counter(
            "org.apache.kafka.producer.record.error.total",
            m.records_failed,
        ),
    ]
}

/// The counters behind [`ProducerMetrics`], shared with the task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records_delivered: AtomicU64,
    pub(crate) batches_delivered: AtomicU64,
    pub(crate) records_failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) marker_checks: AtomicU64,
    pub(crate) marker_waits: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Producer {
    /// A builder taking Kafka property names.
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder::default()
    }

    /// A producer for `config`, with a pool of its own. Must be called inside a Tokio runtime:
    /// the producer's task and the pool's are spawned there.
    ///
    /// Its Metadata requests ask the brokers to create a missing topic it sends to as its
    /// `allow.auto.create.topics` says: by default they do, as the Java producer's always do
    /// (the broker creates it where `auto.create.topics.enable=true`); false is honoured, as
    /// librdkafka's producer honours it.
    pub fn new(config: ProducerConfig) -> Result<Producer, ProduceError> {
        config.validate()?;
        let pool = Pool::new(config.pool.clone()).map_err(|e| ProduceError::pool(e, "the pool"))?;
        Ok(Producer::start(
            config,
            pool,
            AutoCreate::Configured,
            Arc::new([]),
        ))
    }

    fn start(
        config: ProducerConfig,
        pool: Pool,
        auto_create: AutoCreate,
        hooks: Hooks,
    ) -> Producer {
        let config = Arc::new(config);
        let (commands, inbox, doorbell) =
            inbox::queue(config.batch_size, config.batch_num_messages);
        let stats = Arc::new(Counters::default());
        // Invariant: buffer.memory is at most u32::MAX; the clamp only matters where usize is
        // narrow.
        let memory = Arc::new(Semaphore::new(
            config.buffer_memory.min(Semaphore::MAX_PERMITS),
        ));
        sender::spawn(
            pool.clone(),
            auto_create,
            config.clone(),
            stats.clone(),
            hooks.clone(),
            sender::Handles {
                inbox,
                doorbell,
                memory: memory.clone(),
            },
        );
        let mut resource = Vec::new();
        if let Some(id) = &config.transactional_id {
            resource.push(("transactional_id".to_string(), id.clone()));
        }
        let counters = stats.clone();
        let telemetry = kcon_pool::telemetry::Telemetry::start(
            &pool,
            resource,
            Arc::new(move || telemetry(&ProducerMetricsHandle::read(&counters))),
        );
        Producer {
            shared: Arc::new(Shared {
                commands,
                memory,
                config,
                pool,
                stats,
                hooks,
                telemetry,
            }),
        }
    }

    /// Queues `record` and returns the [`Delivery`] to await its result.
    ///
    /// Waits first while the records sent and not yet acknowledged take `buffer.memory` or are
    /// `queue.buffering.max.messages` (the Java client's `send` blocks the same way on the
    /// first, librdkafka's on the second; see [`room`](Producer::room)); waiters are served in
    /// turn. A task that awaits each send before the next gets its records of one partition
    /// written in that order. Fails at once, without queuing, for a record larger than
    /// `max.request.size` or `buffer.memory`, a negative partition, or a closed producer.
    ///
    /// Without `enable.idempotence`, a batch sent again after a lost answer or a timeout may
    /// be written twice (at-least-once); with it, the broker drops the second copy.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the record is queued only when the call returns its [`Delivery`]. Dropped while
    /// it waits for room in `buffer.memory`, nothing is queued, the record (moved in) is dropped
    /// with the future and its turn among the waiters given up; send it again (a clone of it) to
    /// have it written.
    pub async fn send(&self, mut record: ProducerRecord) -> Result<Delivery, ProduceError> {
        if !self.shared.hooks.is_empty() {
            hooks::sending(&self.shared.hooks, &mut record);
        }
        let size = record.size_upper_bound();
        if let Some(refused) = self.refused(&record, size) {
            return Err(self.not_queued(refused));
        }
        // At most u32::MAX: the room is at most buffer.memory (the record is no larger), which
        // is capped there.
        let room = self.shared.config.room(size) as u32;
        // The room is taken as a count, not a permit: the task gives it back by the round,
        // and no reference to the semaphore goes with the record (a count the sending thread
        // and the task would both write for every record).
        let memory = &self.shared.memory;
        match memory.try_acquire_many(room) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::Closed) => return Err(self.not_queued(ProduceError::closed())),
            // Room is had at once when nobody waits for it (waiters are given what comes free
            // first, in turn): the wait is the rare path, and its future is boxed, so that a
            // send that finds room is a small future to make and move.
            Err(TryAcquireError::NoPermits) => Box::pin(memory.acquire_many(room))
                .await
                .map_err(|_| self.not_queued(ProduceError::closed()))?
                .forget(),
        }
        let packed = packed::pack(&mut record);
        self.shared
            .commands
            .send_single(|single| Incoming {
                record,
                packed,
                size,
                reply: Reply::One(single),
                room,
                queued: None,
            })
            .map_err(|_| {
                // The task is gone: the room goes back to whoever waits for it (none will
                // queue either).
                memory.add_permits(room as usize);
                self.not_queued(ProduceError::closed())
            })
    }

    /// Queues `records`, in their order, and returns the [`Deliveries`] to await all their
    /// results: [`send`](Producer::send) for many records at once, at a fraction of its cost
    /// per record (one call to the producer's task and one wait for all of them, not one of
    /// each per record). Records of one partition are written in the order given.
    ///
    /// Waits first for room in `buffer.memory` for all of them (their room is given back as
    /// each is done), so a call's records together must fit in it (each takes
    /// [`room`](Producer::room)): a call that cannot fails at once, naming `buffer.memory`;
    /// send them in smaller groups. A record `send` would refuse (larger than
    /// `max.request.size`, a negative partition) is not queued and fails in its place among
    /// the results; the others are queued. A closed producer fails the call.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the records are queued only when the call returns its [`Deliveries`].
    /// Dropped while it waits for room in `buffer.memory`, nothing is queued, the records
    /// (moved in) are dropped with the future and its turn among the waiters given up.
    pub async fn send_all(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
    ) -> Result<Deliveries, ProduceError> {
        // A Vec given is taken as it is (collecting it copies nothing).
        let mut records: Vec<ProducerRecord> = records.into_iter().collect();
        if !self.shared.hooks.is_empty() {
            for record in &mut records {
                hooks::sending(&self.shared.hooks, record);
            }
        }
        let (deliveries, members) = Deliveries::new(records.len());
        // One vector of the records to queue, each moved once; their room is handed out once
        // it is had.
        let mut incoming = Vec::with_capacity(records.len());
        let mut room = 0usize;
        for (mut record, mut member) in records.into_iter().zip(members) {
            let size = record.size_upper_bound();
            match self.refused(&record, size) {
                Some(refused) => deliveries.refuse(member, Err(self.not_queued(refused))),
                None => {
                    if incoming.is_empty() {
                        deliveries.hand_over(&mut member);
                    }
                    let own = self.shared.config.room(size);
                    room = room.saturating_add(own);
                    incoming.push(Incoming {
                        packed: packed::pack(&mut record),
                        record,
                        size,
                        reply: Reply::Member(member),
                        // At most buffer.memory (checked below for all of them together),
                        // itself at most u32::MAX.
                        room: own as u32,
                        queued: None,
                    });
                }
            }
        }
        if incoming.is_empty() {
            return Ok(deliveries);
        }
        let limit = self.shared.config.buffer_memory;
        if room > limit {
            return Err(self.none_queued(
                incoming.len(),
                ProduceError::new(
                    ErrorKind::InvalidRecord,
                    false,
                    format!(
                        "{} records taking {room} bytes of room in all are more than buffer.memory \
                     ({limit} bytes) holds at once (each takes at least buffer.memory / \
                     queue.buffering.max.messages; Producer::room says how much): send them in \
                     smaller groups",
                        incoming.len()
                    ),
                ),
            ));
        }
        // At most buffer.memory, itself at most u32::MAX. Each record's own room is given
        // back when it is done (the room taken is the sum of theirs).
        self.shared
            .memory
            .acquire_many(room as u32)
            .await
            .map_err(|_| self.none_queued(incoming.len(), ProduceError::closed()))?
            .forget();
        let queued = incoming.len();
        self.shared
            .commands
            .send(Command::Records(incoming))
            .map_err(|_| {
                self.shared.memory.add_permits(room);
                self.none_queued(queued, ProduceError::closed())
            })?;
        Ok(deliveries)
    }

    /// The room in `buffer.memory` `record` takes while it is queued: its size bound
    /// ([`ProducerRecord::size_upper_bound`]), and at least `buffer.memory` /
    /// `queue.buffering.max.messages`. A [`send_all`](Producer::send_all) call's records must
    /// together take at most `buffer.memory`.
    pub fn room(&self, record: &ProducerRecord) -> usize {
        self.shared.config.room(record.size_upper_bound())
    }

    /// `e`, the outcome of a record that was not queued, told to the hooks.
    fn not_queued(&self, e: ProduceError) -> ProduceError {
        hooks::acknowledged(&self.shared.hooks, Err(&e));
        e
    }

    /// `e`, the outcome of `n` records of one call, none of them queued, told to the hooks
    /// once for each.
    fn none_queued(&self, n: usize, e: ProduceError) -> ProduceError {
        for _ in 0..n {
            hooks::acknowledged(&self.shared.hooks, Err(&e));
        }
        e
    }

    /// Why `record` (of `size` bytes at most) cannot be sent at all, if it cannot: larger than
    /// `max.request.size` or `buffer.memory`, or for a negative partition.
    fn refused(&self, record: &ProducerRecord, size: usize) -> Option<ProduceError> {
        let config = &self.shared.config;
        let limit = config.max_request_size.min(config.buffer_memory);
        if size > limit {
            return Some(ProduceError::new(
                ErrorKind::InvalidRecord,
                false,
                format!(
                    "a record of up to {size} bytes for {} is larger than {} ({limit} bytes)",
                    record.topic,
                    if limit == config.max_request_size {
                        "max.request.size"
                    } else {
                        "buffer.memory"
                    }
                ),
            ));
        }
        match record.partition {
            Some(p) if p < 0 => Some(ProduceError::new(
                ErrorKind::InvalidRecord,
                false,
                format!(
                    "partition {p} of {}: partitions are numbered from 0",
                    record.topic
                ),
            )),
            _ => None,
        }
    }

    /// Sends every record queued so far without waiting for `linger.ms`, and returns once each
    /// of them has been acknowledged or has failed (their [`Delivery`]s say which).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: once polled, the flush is asked for and goes on if the future is dropped (the
    /// records are sent without waiting for `linger.ms` all the same); only the wait for them ends.
    /// A flush dropped before its first poll asks for nothing.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Refuses further records, sends every record queued, and returns once each has been
    /// acknowledged or has failed (at most `delivery.timeout.ms` after the last was queued);
    /// then the producer's task ends. Every handle of this producer is closed (clone a handle
    /// first to read from it after the close: its sends are refused). A transaction left open
    /// is aborted.
    ///
    /// Fails when a record queued before the close began failed while the close waited for it:
    /// the error is the first such failure, and says how many there were (each also reached
    /// its own delivery future). A record refused because the producer was closing is its
    /// sender's to hear, not the close's. Several handles closing together each get that
    /// outcome; a close made after the producer's task ended (another handle's close finished)
    /// returns `Ok`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: once polled, the producer is closing and goes on closing if the future is
    /// dropped (records are refused from then on, those queued are still sent, a transaction left
    /// open is aborted); only the wait for it ends. Dropped before its first poll, it does nothing.
    pub async fn close(self) -> Result<(), ProduceError> {
        self.shared.memory.close();
        let (tx, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Close(tx)).is_err() {
            // The task ended: another handle's close finished first.
            return Ok(());
        }
        // The task ends only after answering the close.
        let closed = rx.await.unwrap_or(Ok(()));
        if let Some(telemetry) = &self.shared.telemetry {
            let deadline = tokio::time::Instant::now() + self.shared.config.pool.request_timeout;
            telemetry.close(deadline).await;
        }
        closed
    }

    /// The id the cluster gave this producer for its pushed metrics (KIP-714), waiting up to
    /// `timeout` for a broker to name it (it asks once it reached the cluster); `None` when none
    /// did by then, or `enable.metrics.push` is false, or no broker offers KIP-714.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn client_instance_id(&self, timeout: Duration) -> Option<ClientInstanceId> {
        match &self.shared.telemetry {
            Some(t) => t.client_instance_id(timeout).await,
            None => None,
        }
    }

    /// [`close`](Producer::close), waiting at most `timeout`: when it runs out, the close goes
    /// on without anyone waiting (each record queued still sent or failed within
    /// `delivery.timeout.ms`) and this fails as timed out.
    ///
    /// # Cancel safety
    ///
    /// As [`close`](Producer::close)'s.
    pub async fn close_within(self, timeout: Duration) -> Result<(), ProduceError> {
        tokio::time::timeout(timeout, self.close())
            .await
            .unwrap_or_else(|_| Err(ProduceError::close_timed_out(timeout)))
    }

    /// Makes the producer ready for transactions (it needs a `transactional.id`): finds the
    /// transaction coordinator and gets the producer id and epoch of the transactional id,
    /// which fences any earlier producer with the same id and completes or aborts the
    /// transaction it left open. Call it once, before the first transaction.
    ///
    /// Every transaction call waits at most `timeout`; one that times out goes on in the
    /// background, and the same call made again waits for it (or returns its outcome).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, in the way the timeout above is: once polled, the call is made, and dropping
    /// the future only stops the wait for it. The call goes on in the producer, and the same call
    /// made again (from any handle) waits for it, or returns its outcome if it has finished (even
    /// an outcome that reached the dropped future unread). Another transaction call is refused
    /// ([`ErrorKind::TransactionState`]) while the dropped one is unfinished, and once it has
    /// finished drops the outcome kept for it: make the same call again first. Dropped before its
    /// first poll, it does nothing.
    pub async fn init_transactions(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.transaction(TxnCall::Init, timeout).await
    }

    /// Begins a transaction: the records sent from now until the commit or abort are part of
    /// it. Local to the producer; nothing goes to the broker until the first record. It waits
    /// at most `timeout`, as every transaction call does: the producer's task answers it once
    /// the calls before it (a commit made again, a close) are taken.
    ///
    /// # Cancel safety
    ///
    /// As [`init_transactions`](Producer::init_transactions)'s: cancel-safe, the call going on in
    /// the producer for the same call made again. The begin itself is answered at once: a dropped
    /// begin has begun the transaction.
    pub async fn begin_transaction(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.transaction(TxnCall::Begin, timeout).await
    }

    /// Commits `offsets` (partition → the next offset to consume) of the consumer group that
    /// `group` describes inside the transaction: they take effect if it commits, and never if
    /// it aborts. `group` comes from the consumer (`Consumer::group_metadata`): its generation
    /// and member id let the group coordinator refuse a consumer that lost its partitions
    /// (KIP-447), which fails the transaction ([`Outcome::Abort`](crate::Outcome::Abort)).
    ///
    /// # Cancel safety
    ///
    /// As [`init_transactions`](Producer::init_transactions)'s: cancel-safe, the call going on in
    /// the producer for the same call made again. The offsets a dropped call sent take effect if
    /// the transaction commits; the same call made again joins it whatever offsets it names.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), ProduceError> {
        let offsets = offsets
            .into_iter()
            .map(|(partition, offset)| TxnOffset {
                partition,
                offset,
                leader_epoch: None,
                metadata: None,
            })
            .collect();
        let call = TxnCall::SendOffsets {
            offsets,
            group: group.clone(),
        };
        self.transaction(call, timeout).await
    }

    /// Sends every record of the transaction, then commits it. If a record or the offsets
    /// failed, the commit fails with an error whose outcome is
    /// [`Outcome::Abort`](crate::Outcome::Abort): abort the transaction, then go on.
    ///
    /// # Cancel safety
    ///
    /// As [`init_transactions`](Producer::init_transactions)'s: cancel-safe, the call going on in
    /// the producer for the same call made again. A dropped commit may still commit: only the same
    /// call made again tells whether it did (never abort on the guess that it did not); `close`
    /// waits for it.
    pub async fn commit_transaction(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.transaction(TxnCall::Commit, timeout).await
    }

    /// Aborts the transaction: records not sent yet fail, those written are marked aborted
    /// (read_committed consumers skip them), and offsets sent in it are dropped. If the broker
    /// lost the producer's sequence, the abort bumps the producer epoch before the next
    /// transaction.
    ///
    /// # Cancel safety
    ///
    /// As [`init_transactions`](Producer::init_transactions)'s: cancel-safe, the call going on in
    /// the producer for the same call made again.
    pub async fn abort_transaction(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.transaction(TxnCall::Abort, timeout).await
    }

    async fn transaction(&self, call: TxnCall, timeout: Duration) -> Result<(), ProduceError> {
        let op = call.op();
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Transaction(call, tx))
            .map_err(|_| ProduceError::closed())?;
        let mut reply = TxnReply {
            op,
            rx,
            read: false,
            commands: &self.shared.commands,
        };
        let answer = tokio::time::timeout(timeout, &mut reply.rx).await;
        reply.read = answer.is_ok();
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProduceError::closed()),
            Err(_) => Err(ProduceError::new(
                ErrorKind::TimedOut,
                true,
                format!(
                    "{} did not finish within {} ms; it goes on, and calling it again waits \
                     for it",
                    op.name(),
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// A snapshot of the producer's metrics: records and batches delivered, records failed,
    /// batches retried.
    ///
    /// ```no_run
    /// # fn f(producer: &kcon_produce::Producer) {
    /// let m = producer.metrics();
    /// println!("{} records delivered, {} retries", m.records_delivered, m.retries);
    /// # }
    /// ```
    pub fn metrics(&self) -> ProducerMetrics {
        self.metrics_handle().snapshot()
    }

    /// A handle that reads the producer's metrics from any task or thread.
    pub fn metrics_handle(&self) -> ProducerMetricsHandle {
        ProducerMetricsHandle {
            counters: self.shared.stats.clone(),
            client_id: Arc::from(self.shared.config.pool.client_id.as_str()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// The pool the producer sends through.
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }
}

/// The answer to one transaction call, as its caller waits for it. Left unread (the call's
/// future dropped, or its timeout passed) it hands an answer that came meanwhile back to the
/// task, which keeps it for the same call made again: an outcome is never lost between the
/// task's answer and the caller's giving up. (An answer that comes after is kept by the task
/// itself, its send failing.)
struct TxnReply<'a> {
    op: TxnOp,
    rx: oneshot::Receiver<Result<(), ProduceError>>,
    read: bool,
    commands: &'a Queue,
}

impl Drop for TxnReply<'_> {
    fn drop(&mut self) {
        if self.read {
            return;
        }
        self.rx.close();
        if let Ok(result) = self.rx.try_recv() {
            // Ahead of any later call of this handle's: commands are taken in order.
            let _ = self.commands.send(Command::Unread(self.op, result));
        }
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("pool", &self.shared.pool)
            .field("metrics", &self.metrics())
            .finish()
    }
}

/// The result of one [`Producer::send`]: resolves to the [`Delivered`] record once the broker
/// acknowledged it, or to the error it failed with.
///
/// # Cancel safety
///
/// Cancel-safe: dropping it does not withdraw the record, which is sent all the same (and counted
/// in [`Producer::metrics`]); only its outcome goes unread.
#[must_use = "a delivery says whether the record was written"]
pub struct Delivery {
    /// The group of slots its outcome comes to, shared with records sent before and after.
    pub(crate) group: Arc<Group>,
    index: usize,
}

impl Delivery {
    pub(crate) fn new(group: Arc<Group>, index: usize) -> Self {
        Delivery { group, index }
    }

    /// The outcome if the record is done, without waiting; the delivery itself, to await or ask
    /// again, while it is not. For checking many deliveries in turn without a task that waits
    /// on each (whose waits add up to a wake-up per record).
    ///
    /// ```
    /// # async fn check(producer: &kcon_produce::Producer) -> Result<(), kcon_produce::ProduceError> {
    /// # let record = kcon_produce::ProducerRecord::new("t", "v");
    /// let delivery = producer.send(record).await?;
    /// match delivery.try_outcome() {
    ///     Ok(outcome) => println!("done: {:?}", outcome?.offset),
    ///     Err(pending) => println!("written at {:?}", pending.await?.offset),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_outcome(self) -> Result<Result<Delivered, ProduceError>, Delivery> {
        self.group.take(self.index).ok_or(self)
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

impl Future for Delivery {
    type Output = Result<Delivered, ProduceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.group.poll(self.index, cx.waker())
    }
}

/// Builds a [`Producer`] from Kafka property names.
///
/// ```
/// use kcon_produce::{ErrorKind, Producer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = Producer::builder()
///     .set("bootstrap.servers", "localhost:9092")
///     .set("compression.type", "brotli")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert_eq!(err.property(), Some("compression.type"));
/// # }
/// ```
#[derive(Default)]
pub struct ProducerBuilder {
    properties: Vec<(String, String)>,
    pool: Option<Pool>,
    token_provider: Option<TokenProvider>,
    hooks: Vec<Arc<dyn ProducerHooks>>,
}

impl fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are not shown: passwords are properties too.
        let names: Vec<&str> = self.properties.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ProducerBuilder")
            .field("properties", &names)
            .field("pool", &self.pool.is_some())
            .field("token_provider", &self.token_provider.is_some())
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl ProducerBuilder {
    /// Sets a property by its Kafka name (`"acks"`, `"linger.ms"`, `"enable.idempotence"`, or
    /// any connection property: `"bootstrap.servers"`, `"security.protocol"`, ...). A later
    /// value replaces an earlier one. Unknown names and bad values are reported by
    /// [`build`](ProducerBuilder::build).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.trim().to_owned(), value.into()));
        self
    }

    /// `bootstrap.servers`: `host:port` pairs, comma-separated.
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// `client.id`: the name the brokers log and quota the producer by.
    pub fn client_id(self, id: &str) -> Self {
        self.set("client.id", id)
    }

    /// `acks`: what a batch waits for ([`Acks::All`], the default, or [`Acks::Leader`]).
    pub fn acks(self, acks: Acks) -> Self {
        let acks = match acks {
            Acks::All => "all",
            Acks::Leader => "1",
        };
        self.set("acks", acks)
    }

    /// `linger.ms`: how long a batch waits for more records before it goes.
    pub fn linger(self, linger: Duration) -> Self {
        self.set("linger.ms", linger.as_millis().to_string())
    }

    /// `transactional.id`: makes the producer transactional (see
    /// [`init_transactions`](Producer::init_transactions)).
    pub fn transactional_id(self, id: &str) -> Self {
        self.set("transactional.id", id)
    }

    /// The OAUTHBEARER token provider (`sasl.mechanism=OAUTHBEARER`): asked for a token at
    /// every authentication, as a consumer's is. Refused with a pool given to the builder,
    /// whose configuration stands.
    pub fn oauthbearer_token_provider(mut self, provider: TokenProvider) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// Sends through `pool` (shared with a consumer, say) rather than a pool of the producer's
    /// own. The pool's configuration then stands: setting a connection property here is an
    /// error. `request.timeout.ms`, `retry.backoff.ms`, `retry.backoff.max.ms` and
    /// `max.in.flight.requests.per.connection` are read from it. Its `allow.auto.create.topics`
    /// is not: that is its other users' (a consumer's), and the producer's Metadata requests
    /// ask for a missing topic to be created whatever it says, as the Java producer's do.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Adds `hooks`, told of every record sent and of its outcome (see [`ProducerHooks`]).
    pub fn hooks(mut self, hooks: impl ProducerHooks) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// The producer. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<Producer, ProduceError> {
        let mut config = ProducerConfig::default();
        if let Some(pool) = &self.pool {
            config.pool = pool.config().clone();
        }
        for (name, value) in &self.properties {
            if self.pool.is_some() && crate::config::is_pool_property(name) {
                return Err(ProduceError::config(kcon_core::ConfigError::invalid(
                    name,
                    value,
                    "unset: the producer sends through a pool given to the builder, whose \
                     configuration stands",
                )));
            }
            config.set(name, value)?;
        }
        if let Some(provider) = self.token_provider {
            if self.pool.is_some() {
                return Err(ProduceError::new(
                    ErrorKind::Misuse,
                    false,
                    "an OAUTHBEARER token provider and a pool given to the builder: the pool's \
                     configuration stands, so give the provider to the pool's instead",
                ));
            }
            config.pool.sasl_oauthbearer_token_provider = Some(provider);
        }
        let hooks: Hooks = self.hooks.into();
        match self.pool {
            Some(pool) => {
                config.validate()?;
                Ok(Producer::start(config, pool, AutoCreate::Always, hooks))
            }
            None => {
                config.validate()?;
                let pool = Pool::new(config.pool.clone())
                    .map_err(|e| ProduceError::pool(e, "the pool"))?;
                Ok(Producer::start(config, pool, AutoCreate::Configured, hooks))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoToken;

    impl kcon_pool::OAuthBearerTokenProvider for NoToken {
        fn token(&self) -> kcon_pool::TokenFuture<'_> {
            Box::pin(async { Err("no token here".into()) })
        }
    }

    /// A token provider goes into the producer's own pool; with a pool given, whose
    /// configuration stands, it is refused as misuse rather than dropped unsaid.
    #[tokio::test]
    async fn a_token_provider_is_refused_beside_a_given_pool() {
        let provider = || TokenProvider::new(NoToken);
        let own = Producer::builder()
            .bootstrap_servers("127.0.0.1:9")
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "OAUTHBEARER")
            .oauthbearer_token_provider(provider())
            .build()
            .expect("a producer of its own pool");
        assert!(own.config().pool.sasl_oauthbearer_token_provider.is_some());
        let mut pool = kcon_pool::PoolConfig::default();
        pool.set("bootstrap.servers", "127.0.0.1:9").unwrap();
        let pool = Pool::new(pool).unwrap();
        let e = Producer::builder()
            .pool(pool)
            .oauthbearer_token_provider(provider())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
        assert!(
            e.to_string().contains("give the provider to the pool"),
            "{e}"
        );
    }

    /// A delivery not done comes back to be asked again; a done one gives its outcome; one
    /// whose producer's task went away without answering fails as closed.
    #[test]
    fn a_delivery_tells_its_outcome_without_waiting_once_it_has_one() {
        let mut handout = crate::deliveries::Handout::default();
        let mut open = crate::deliveries::OpenGroups::default();
        let (reply, delivery) = handout.next();
        let mut reply = Reply::One(reply);
        reply.open(&mut open);
        let delivery = delivery.try_outcome().expect_err("not done yet");
        let delivered = Delivered {
            topic: "t".into(),
            partition: 2,
            offset: Some(41),
            timestamp: 7,
        };
        reply.answer(Ok(delivered.clone()), &mut open);
        match delivery.try_outcome() {
            Ok(Ok(d)) => assert_eq!(d, delivered),
            other => panic!("not the delivery: {other:?}"),
        }

        let (reply, delivery) = handout.next();
        Reply::One(reply).open(&mut open);
        drop(open);
        match delivery.try_outcome() {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed, "{e:?}"),
            other => panic!("not closed: {other:?}"),
        }
    }
}
