//! Exactly-once consume-transform-produce ([`ExactlyOnce`]): each batch the consumer hands
//! out, the records the application makes of it and the batch's input offsets go in one
//! transaction of a transactional producer, so that the outputs and the offsets take effect
//! together or not at all.
//!
//! Per batch: `begin_transaction`; the transform; its records sent; the offsets past the batch
//! sent with the consumer's group metadata as it was when the batch was handed out (KIP-447:
//! a member that lost the partition since is refused by the group coordinator); commit. If
//! anything of that fails in a way the transaction survives (an output refused, the offsets
//! refused for a stale generation, the group moving on while the batch was transformed), the
//! transaction is aborted and the batch's partition goes back to the batch's first offset, so
//! the same records come again (to whichever member owns the partition then). A fatal error
//! (the producer fenced by a newer one with the same `transactional.id`) ends the pipeline.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use kcon_produce::{Outcome as ProduceOutcome, ProduceError, Producer, ProducerRecord};
use tracing::{debug, warn};

use crate::TopicPartition;
use crate::consumer::Consumer;
use crate::error::Error;
use crate::record::Record;

/// How long each transaction call may take by default.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An error of the application's transform, as it gave it.
pub type TransformError = Box<dyn StdError + Send + Sync>;

/// Why the pipeline stopped: it cannot go on, and is closed by dropping or
/// [`ExactlyOnce::close`].
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
}

impl ExactlyOnce {
    /// A pipeline of `consumer` (in a group, `enable.auto.commit=false`) and `producer`
    /// (with a `transactional.id`), whose transactions it initializes: a producer left over
    /// with the same id is fenced, and its open transaction aborted.
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
    /// cannot go on.
    pub async fn process_batch<F, Fut>(&mut self, transform: F) -> Result<Batch, PipelineError>
    where
        F: FnOnce(Vec<Record>) -> Fut,
        Fut: Future<Output = Result<Vec<ProducerRecord>, TransformError>>,
    {
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
        self.producer
            .begin_transaction()
            .await
            .map_err(PipelineError::Producer)?;
        let outputs = match transform(records).await {
            Ok(outputs) => outputs,
            Err(e) => {
                return self
                    .abort(partition, start, AbortReason::Transform(e))
                    .await;
            }
        };
        let count = outputs.len();
        let mut deliveries = Vec::with_capacity(count);
        for record in outputs {
            match self.producer.send(record).await {
                Ok(d) => deliveries.push(d),
                Err(e) => return self.failed(partition, start, e).await,
            }
        }
        for d in deliveries {
            if let Err(e) = d.await {
                return self.failed(partition, start, e).await;
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
            return self.abort(partition, start, reason).await;
        }
        let offsets = [(partition.clone(), next)];
        if let Err(e) = self
            .producer
            .send_offsets_to_transaction(offsets, &group, self.call_timeout)
            .await
        {
            return self.failed(partition, start, e).await;
        }
        if let Err(e) = self.producer.commit_transaction(self.call_timeout).await {
            return self.failed(partition, start, e).await;
        }
        debug!(%partition, inputs, outputs = count, next, "batch committed");
        Ok(Batch::Committed {
            partition,
            inputs,
            outputs: count,
        })
    }

    /// A producer call failed with `e`: fatal ends the pipeline, anything else aborts the batch.
    async fn failed(
        &mut self,
        partition: TopicPartition,
        start: i64,
        e: ProduceError,
    ) -> Result<Batch, PipelineError> {
        match e.outcome() {
            ProduceOutcome::Close | ProduceOutcome::Closed => Err(PipelineError::Producer(e)),
            _ => {
                self.abort(partition, start, AbortReason::Transaction(e))
                    .await
            }
        }
    }

    /// Aborts the transaction and puts `partition` back to `start`.
    async fn abort(
        &mut self,
        partition: TopicPartition,
        start: i64,
        reason: AbortReason,
    ) -> Result<Batch, PipelineError> {
        warn!(%partition, offset = start, reason = %reason, "aborting the batch's transaction; its records come again");
        self.producer
            .abort_transaction(self.call_timeout)
            .await
            .map_err(PipelineError::Producer)?;
        if self.consumer.assignment().contains(&partition) {
            self.consumer
                .seek(partition.clone(), start)
                .map_err(PipelineError::Consumer)?;
        }
        Ok(Batch::Aborted { partition, reason })
    }

    /// Closes the producer (aborting a transaction left open) and the consumer.
    pub async fn close(self) {
        self.producer.close().await;
        if let Err(e) = self.consumer.close().await {
            debug!(error = %e, "closing the consumer");
        }
    }
}
