//! Exactly-once consume-transform-produce ([`ExactlyOnce`]): each batch the consumer hands
//! out, the records the application makes of it and the batch's input offsets go in one
//! transaction of a transactional producer, so that the outputs and the offsets take effect
//! together or not at all.
//!
//! Per batch: `begin_transaction`; the transform; its records sent; the offsets past the batch
//! sent with the consumer's group metadata as it was when the batch was handed out (KIP-447:
//! a member that lost the partition since is refused by the group coordinator); commit. If
//! anything of that fails in a way the transaction survives (an output refused, the offsets
//! refused for a stale generation, the group moving on while the batch was transformed, the
//! coordinator aborting a transaction open longer than `transaction.timeout.ms`), the
//! transaction is aborted and the batch's partition goes back to the batch's first offset, so
//! the same records come again (to whichever member owns the partition then). A fatal error
//! (the producer fenced by a newer one with the same `transactional.id`) ends the pipeline.
//!
//! [`ExactlyOnce::process_batch`] may be cancelled at any await (a `select!` with a shutdown
//! signal, a timeout): the next call finds out what became of the batch the dropped one held
//! (a commit that went through stands; anything else is aborted and the batch comes again)
//! before it goes on.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use kcon_produce::{
    ConsumerGroupMetadata, Outcome as ProduceOutcome, ProduceError, Producer, ProducerRecord,
};
use tracing::{debug, info, warn};

use crate::TopicPartition;
use crate::consumer::Consumer;
use crate::error::Error;
use crate::record::Record;

/// How long each transaction call may take by default.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An error of the application's transform, as it gave it.
pub type TransformError = Box<dyn StdError + Send + Sync>;

/// Why the pipeline stopped: it cannot go on, and is closed by dropping or
/// [`ExactlyOnce::close`]. One error leaves it usable: [`PipelineError::Producer`] with an
/// error whose outcome is `Retry` ([`ProduceError::is_retriable`]), a transaction call that
/// did not finish within the call timeout; the call goes on, and the next
/// [`process_batch`](ExactlyOnce::process_batch) waits for it first.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError {
    /// The consumer failed (fatally, or a partition error the pipeline does not handle).
    Consumer(Error),
    /// The producer cannot go on: fenced by a newer producer with the same
    /// `transactional.id`, refused the id, or closed.
    Producer(ProduceError),
    /// The consumer commits by itself (`enable.auto.commit=true`), which would commit input
    /// offsets outside the transactions.
    AutoCommit,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Consumer(e) => write!(f, "the consumer: {e}"),
            PipelineError::Producer(e) => write!(f, "the transactional producer: {e}"),
            PipelineError::AutoCommit => f.write_str(
                "the consumer has enable.auto.commit=true: its offsets must go in the \
                 transactions only; set it to false",
            ),
        }
    }
}

impl StdError for PipelineError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PipelineError::Consumer(e) => Some(e),
            PipelineError::Producer(e) => Some(e),
            PipelineError::AutoCommit => None,
        }
    }
}

/// What became of one batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum Batch {
    /// Committed: `outputs` records written, and the offsets past the `inputs` records of
    /// `partition` committed for the group.
    Committed {
        /// The batch's partition.
        partition: TopicPartition,
        /// Records consumed.
        inputs: usize,
        /// Records produced.
        outputs: usize,
    },
    /// Aborted, and `partition` put back to the batch's first offset (when the consumer still
    /// owns it): the same records come again.
    Aborted {
        /// The batch's partition.
        partition: TopicPartition,
        /// Why.
        reason: AbortReason,
    },
}

/// Why a batch's transaction was aborted.
#[derive(Debug)]
#[non_exhaustive]
pub enum AbortReason {
    /// The transform failed.
    Transform(TransformError),
    /// The producer's transaction failed (an output refused, the offsets refused).
    Transaction(ProduceError),
    /// The consumer's group generation changed while the batch was transformed: whether the
    /// partition is still this member's is not known, so nothing of the batch is committed.
    Rebalanced {
        /// The generation when the batch was handed out.
        before: i32,
        /// The generation when its offsets were to be sent.
        after: i32,
    },
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::Transform(e) => write!(f, "the transform failed: {e}"),
            AbortReason::Transaction(e) => write!(f, "the transaction failed: {e}"),
            AbortReason::Rebalanced { before, after } => write!(
                f,
                "the group's generation went from {before} to {after} during the batch"
            ),
        }
    }
}

/// A consumer and a transactional producer reading, transforming and writing exactly once.
///
/// ```no_run
/// use kcon::exactly_once::ExactlyOnce;
/// use kcon_produce::{Producer, ProducerRecord};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut consumer = kcon::Consumer::builder()
///     .set("bootstrap.servers", "localhost:9092")
///     .set("group.id", "enricher")
///     .set("enable.auto.commit", "false")
///     .set("isolation.level", "read_committed")
///     .build()?;
/// consumer.subscribe(["orders"])?;
/// let producer = Producer::builder()
///     .bootstrap_servers("localhost:9092")
///     .set("transactional.id", "enricher-0")
///     .build()?;
/// let mut pipeline = ExactlyOnce::new(consumer, producer).await?;
/// loop {
///     pipeline
///         .process_batch(|records| async move {
///             Ok(records
///                 .into_iter()
///                 .map(|r| ProducerRecord::new("enriched", r.value.unwrap_or_default()))
///                 .collect())
///         })
///         .await?;
/// #   break;
/// }
/// pipeline.close().await;
/// # Ok(())
/// # }
/// ```
pub struct ExactlyOnce {
    consumer: Consumer,
    producer: Producer,
    call_timeout: Duration,
    /// The batch whose transaction has begun and is not known to have ended. A call dropped
    /// part-way (cancelled) leaves it here, and the next call settles it first.
    open: Option<OpenBatch>,
}

/// A batch whose transaction has begun: what the pipeline knows of it that nothing else does.
/// The transaction's state is the producer's alone; `step` only says which of the producer's
/// calls the pipeline made last for it, to make the same call again (the producer's way of
/// getting the outcome of a call whose caller gave up).
#[derive(Debug)]
struct OpenBatch {
    partition: TopicPartition,
    /// The batch's first offset: where the partition goes back to when the transaction aborts.
    start: i64,
    step: Step,
}

/// The producer call a batch is in.
#[derive(Debug, Clone)]
enum Step {
    /// Begun: the transform, its records sent and acknowledged.
    Open,
    /// `send_offsets_to_transaction` of the offset past the batch, with the group metadata.
    Offsets(i64, ConsumerGroupMetadata),
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`, then the partition back to the batch's first offset.
    Abort,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Open => "the transform or its records",
            Step::Offsets(..) => "send_offsets_to_transaction",
            Step::Commit => "commit_transaction",
            Step::Abort => "abort_transaction",
        }
    }
}

impl ExactlyOnce {
    /// A pipeline of `consumer` (in a group, `enable.auto.commit=false`) and `producer`
    /// (with a `transactional.id`), whose transactions it initializes: a producer left over
    /// with the same id is fenced, and its open transaction aborted.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the consumer and the producer are moved in, so dropping the future
    /// drops them (the consumer leaves its group; the producer's `init_transactions` goes on
    /// until its task sees every handle gone). Build them again to start over.
    pub async fn new(consumer: Consumer, producer: Producer) -> Result<Self, PipelineError> {
        if consumer
            .settings()
            .offsets
            .as_ref()
            .is_some_and(|o| o.enable_auto_commit)
        {
            return Err(PipelineError::AutoCommit);
        }
        consumer.group_metadata().map_err(PipelineError::Consumer)?;
        producer
            .init_transactions(CALL_TIMEOUT)
            .await
            .map_err(PipelineError::Producer)?;
        Ok(ExactlyOnce {
            consumer,
            producer,
            call_timeout: CALL_TIMEOUT,
            open: None,
        })
    }

    /// Each transaction call waits at most `timeout` (default 60 s).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The consumer (to subscribe, look at its assignment or metrics).
    pub fn consumer(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// The producer.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Waits for the next batch (one partition's records, at most `max.poll.records`), hands
    /// it to `transform`, and writes what that returns and the batch's offsets in one
    /// transaction. A batch whose transaction aborted is not an error: it comes again. An
    /// abort whose reason does not go away (an output refused for good, whose error's outcome
    /// is `Fix`, or a transform that always fails on the batch) comes again the same way: the
    /// application decides what then (seek past the batch, stop). The error says the pipeline
    /// cannot go on, but for one kind: a transaction call that did not finish within the call
    /// timeout ([`PipelineError::Producer`] with an error whose outcome is `Retry`) goes on in
    /// the producer, and the next call (or [`close`](ExactlyOnce::close)) settles the batch
    /// first, as after a cancelled call.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the future may be dropped at any await (a `select!` with a shutdown
    /// signal, a `tokio::time::timeout`), and the pipeline goes on with the next call. Dropped
    /// while it waits for records, nothing was taken. Dropped once it holds a batch (in the
    /// transform, while its records or offsets are sent, during the commit or an abort), the
    /// batch's transaction is left as it stands, and the next `process_batch` settles it
    /// before it takes another batch: it makes the producer call that was under way again,
    /// which waits for it or returns the outcome the producer kept; a commit that went through
    /// stands (the batch is done, nothing is written twice), and anything else is aborted and
    /// the batch's partition put back to the batch's first offset, so its records come again,
    /// once, in a later transaction. [`close`](ExactlyOnce::close) aborts such a transaction
    /// instead. The transform's future is dropped with the call: it must not leave anything
    /// behind that a second run of the same records would repeat outside the transaction.
    /// Transaction calls on [`producer`](ExactlyOnce::producer) made by the application
    /// meanwhile would get in the way: the pipeline alone drives its transactions.
    pub async fn process_batch<F, Fut>(&mut self, transform: F) -> Result<Batch, PipelineError>
    where
        F: FnOnce(Vec<Record>) -> Fut,
        Fut: Future<Output = Result<Vec<ProducerRecord>, TransformError>>,
    {
        self.settle().await?;
        let records = self
            .consumer
            .recv_batch()
            .await
            .map_err(PipelineError::Consumer)?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            // recv_batch waits for at least one record.
            return Err(PipelineError::Consumer(Error::misuse(
                "the consumer handed out an empty batch",
            )));
        };
        let partition = TopicPartition::new(&*first.topic, first.partition);
        let (start, next) = (first.offset, last.offset + 1);
        let inputs = records.len();
        // The membership the batch was handed out under: the offsets go with it.
        let group = self
            .consumer
            .group_metadata()
            .map_err(PipelineError::Consumer)?;
        // From here on the batch is open until its transaction is known to have ended. (The
        // begin is sent as its future is first polled, in this same poll: a call dropped at
        // any later await has begun the transaction.)
        self.open = Some(OpenBatch {
            partition: partition.clone(),
            start,
            step: Step::Open,
        });
        self.producer
            .begin_transaction(self.call_timeout)
            .await
            .map_err(PipelineError::Producer)?;
        let outputs = match transform(records).await {
            Ok(outputs) => outputs,
            Err(e) => return self.abort(AbortReason::Transform(e)).await,
        };
        let count = outputs.len();
        // Sent in as few calls as `buffer.memory` allows (one for a batch's outputs that fit
        // in it), each a single wait for all its records.
        let room = self.producer.config().buffer_memory;
        let mut calls = Vec::new();
        let mut pending = Vec::new();
        let mut size = 0usize;
        for record in outputs {
            let bytes = self.producer.room(&record);
            if !pending.is_empty() && size.saturating_add(bytes) > room {
                match self.producer.send_all(std::mem::take(&mut pending)).await {
                    Ok(d) => calls.push(d),
                    Err(e) => return self.failed(e).await,
                }
                size = 0;
            }
            size = size.saturating_add(bytes);
            pending.push(record);
        }
        if !pending.is_empty() {
            match self.producer.send_all(pending).await {
                Ok(d) => calls.push(d),
                Err(e) => return self.failed(e).await,
            }
        }
        for deliveries in calls {
            if let Some(Err(e)) = deliveries.await.into_iter().find(Result::is_err) {
                return self.failed(e).await;
            }
        }
        let now = self
            .consumer
            .group_metadata()
            .map_err(PipelineError::Consumer)?;
        if (now.generation_id, &now.member_id) != (group.generation_id, &group.member_id) {
            let reason = AbortReason::Rebalanced {
                before: group.generation_id,
                after: now.generation_id,
            };
            return self.abort(reason).await;
        }
        self.step(Step::Offsets(next, group.clone()));
        let offsets = [(partition.clone(), next)];
        if let Err(e) = self
            .producer
            .send_offsets_to_transaction(offsets, &group, self.call_timeout)
            .await
        {
            return self.failed(e).await;
        }
        self.step(Step::Commit);
        if let Err(e) = self.producer.commit_transaction(self.call_timeout).await {
            return self.failed(e).await;
        }
        self.open = None;
        debug!(%partition, inputs, outputs = count, next, "batch committed");
        Ok(Batch::Committed {
            partition,
            inputs,
            outputs: count,
        })
    }

    /// The open batch is in `step` now.
    fn step(&mut self, step: Step) {
        if let Some(open) = self.open.as_mut() {
            open.step = step;
        }
    }

    /// A producer call for the open batch failed with `e`: fatal ends the pipeline; a
    /// transaction call that timed out goes on, the batch left open for the next call;
    /// anything else aborts the batch.
    async fn failed(&mut self, e: ProduceError) -> Result<Batch, PipelineError> {
        match e.outcome() {
            ProduceOutcome::Close | ProduceOutcome::Closed => Err(PipelineError::Producer(e)),
            // A record's own error (retriable ones included) fails the transaction; only a
            // transaction call answers with its timeout, and goes on.
            ProduceOutcome::Retry if self.open.as_ref().is_some_and(|o| o.in_call()) => {
                Err(PipelineError::Producer(e))
            }
            _ => self.abort(AbortReason::Transaction(e)).await,
        }
    }

    /// Aborts the open batch's transaction for `reason` and puts its partition back.
    async fn abort(&mut self, reason: AbortReason) -> Result<Batch, PipelineError> {
        if let Some(open) = &self.open {
            warn!(partition = %open.partition, offset = open.start, reason = %reason, "aborting the batch's transaction; its records come again");
        }
        let partition = self.abort_open().await?;
        Ok(Batch::Aborted { partition, reason })
    }

    /// Aborts the open batch's transaction, then puts its partition back to the batch's first
    /// offset (when the consumer still owns it), and returns the partition.
    async fn abort_open(&mut self) -> Result<TopicPartition, PipelineError> {
        self.step(Step::Abort);
        self.producer
            .abort_transaction(self.call_timeout)
            .await
            .map_err(PipelineError::Producer)?;
        let Some(open) = self.open.take() else {
            return Err(PipelineError::Consumer(Error::misuse(
                "aborting a batch the pipeline does not hold",
            )));
        };
        if self.consumer.assignment().contains(&open.partition) {
            self.consumer
                .seek(open.partition.clone(), open.start)
                .map_err(PipelineError::Consumer)?;
        }
        Ok(open.partition)
    }

    /// Settles the batch a dropped (or timed-out) call left open: the producer call it was in
    /// is made again, which waits for the one under way or returns the outcome the producer
    /// kept. A commit that went through stands; anything else is aborted and the partition
    /// put back, so the batch comes again.
    async fn settle(&mut self) -> Result<(), PipelineError> {
        let Some(open) = &self.open else {
            return Ok(());
        };
        let (partition, start, step) = (open.partition.clone(), open.start, open.step.clone());
        info!(%partition, offset = start, during = step.name(), "a call was dropped holding a batch: settling its transaction");
        let outcome = match step {
            Step::Open => Ok(()),
            Step::Offsets(next, group) => {
                self.producer
                    .send_offsets_to_transaction(
                        [(partition.clone(), next)],
                        &group,
                        self.call_timeout,
                    )
                    .await
            }
            Step::Commit => match self.producer.commit_transaction(self.call_timeout).await {
                Ok(()) => {
                    self.open = None;
                    info!(%partition, "the dropped call's batch was committed");
                    return Ok(());
                }
                Err(e) => Err(e),
            },
            Step::Abort => Ok(()),
        };
        if let Err(e) = outcome {
            match e.outcome() {
                ProduceOutcome::Close | ProduceOutcome::Closed | ProduceOutcome::Retry => {
                    return Err(PipelineError::Producer(e));
                }
                _ => debug!(error = %e, "the dropped call's transaction failed"),
            }
        }
        self.abort_open().await?;
        info!(%partition, offset = start, "the dropped call's batch was aborted; its records come again");
        Ok(())
    }

    /// Closes the producer and the consumer. A transaction a dropped call left open is
    /// aborted (a commit under way is waited for), so nothing of that batch is committed
    /// unless its commit had gone through.
    ///
    /// # Cancel safety
    ///
    /// The pipeline is moved in, so dropping the future drops the consumer and the producer
    /// handle: the producer's task, once no handle is left, finishes as a close does
    /// (aborting a transaction left open); a clone of the producer the application keeps
    /// keeps it running.
    pub async fn close(self) {
        if let Some(open) = &self.open {
            debug!(partition = %open.partition, during = open.step.name(), "closing with a batch a dropped call left open: its transaction is aborted unless it committed");
        }
        self.producer.close().await;
        if let Err(e) = self.consumer.close().await {
            debug!(error = %e, "closing the consumer");
        }
    }
}

impl OpenBatch {
    /// Whether the batch is in a transaction call of the producer's (which answers a timeout
    /// of its own and goes on), rather than its records.
    fn in_call(&self) -> bool {
        !matches!(self.step, Step::Open)
    }
}
