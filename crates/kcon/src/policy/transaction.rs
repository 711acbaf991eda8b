//! The Processor's exactly-once mode
//! ([`ProcessorBuilder::exactly_once`](super::ProcessorBuilder::exactly_once)): a transactional
//! sink. What the handler sends to its [`Sink`], the dead letters, and the offsets past the
//! records done with (processed, skipped or dead-lettered) go in one transaction of the
//! processor's transactional producer. The transaction commits when the processor has nothing
//! ready to do (the records handed out are done, or what is left waits for a retry's backoff)
//! and when a run stops; so a batch's outputs, its dead letters and its input offsets take effect
//! together or not at all, and retries, dead letters and the breaker work inside transactions.
//!
//! A transaction begins at its first output or dead letter (or at its commit, when it holds only
//! offsets). Its offsets go with the consumer's group metadata as it was when its first record
//! was handed to the handler (KIP-447: a member that lost the partition since is refused by the
//! group coordinator), and a generation that moved on meanwhile aborts it before they are sent.
//! When anything of it fails in a way the transaction survives (an output or a dead letter
//! refused, the offsets refused for a stale generation, the coordinator aborting a transaction
//! open longer than `transaction.timeout.ms`), it is aborted, and each partition it held
//! records of is put back to the first of them: they come again, to this member or to the
//! partition's next owner. A fatal error (the producer fenced by a newer one with the same
//! `transactional.id`) stops the run with [`ErrorKind::Transaction`](crate::ErrorKind).
//!
//! A run dropped while a transaction is open leaves it open, and the next run (or `commit`, or
//! `close`) settles it first: the producer call that was under way is made again, which waits
//! for it or returns the outcome the producer kept; a commit that went through stands, and
//! anything else is aborted and its records come again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kcon_produce::{
    ConsumerGroupMetadata, Deliveries, Outcome as ProduceOutcome, ProduceError, Producer,
    ProducerRecord,
};
use tracing::{debug, info, warn};

use super::source::sealed::Source;
use super::{Processor, RecordSource, Shell};
use crate::TopicPartition;
use crate::error::{Error, ErrorKind};
use crate::record::Record;

/// How long each transaction call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a handler sends the records it makes of the record in hand, in the exactly-once mode
/// ([`Processor::sink`](crate::Processor::sink)). Clone it into the handler.
///
/// The records sent while the handler runs are written in the processor's transaction once it
/// returns `Ok`; when it fails, they are dropped (a retry makes them again). Under
/// [`run_concurrently`](crate::Processor::run_concurrently) each record in the handler has
/// outputs of its own: a send made while the handler's future is polled goes with that record
/// (send from the handler's future itself, not from a task it spawns).
#[derive(Clone, Debug)]
pub struct Sink {
    outputs: Outputs,
}

/// Outputs sent and not yet taken.
type Outputs = Arc<Mutex<Vec<ProducerRecord>>>;

thread_local! {
    /// The outputs of the record whose handler is being polled on this thread, under
    /// `run_concurrently` ([`WithOutputs`]).
    static HANDLING: std::cell::RefCell<Option<Outputs>> = const { std::cell::RefCell::new(None) };
}

impl Sink {
    /// Sends `record` with the outputs of the record in the handler.
    pub fn send(&self, record: ProducerRecord) {
        HANDLING.with(|h| lock(h.borrow().as_ref().unwrap_or(&self.outputs)).push(record));
    }

    /// Puts `records` with the outputs to send next.
    pub(crate) fn extend(&self, records: Vec<ProducerRecord>) {
        self.outputs().extend(records);
    }

    /// The outputs sent since the last take.
    pub(crate) fn take(&self) -> Vec<ProducerRecord> {
        std::mem::take(&mut *self.outputs())
    }

    fn outputs(&self) -> MutexGuard<'_, Vec<ProducerRecord>> {
        lock(&self.outputs)
    }
}

/// `outputs`, locked (a handler that panicked while sending left them as they were).
fn lock(outputs: &Outputs) -> MutexGuard<'_, Vec<ProducerRecord>> {
    outputs.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record's handling under `run_concurrently` in the exactly-once mode: while it is polled,
/// what the handler sends to the [`Sink`] goes to this record's outputs, returned beside the
/// handling's outcome.
pub(crate) struct WithOutputs<F> {
    outputs: Outputs,
    handling: std::pin::Pin<Box<F>>,
}

impl<F: Future> WithOutputs<F> {
    pub(crate) fn new(handling: F) -> WithOutputs<F> {
        WithOutputs {
            outputs: Outputs::default(),
            handling: Box::pin(handling),
        }
    }
}

impl<F: Future> Future for WithOutputs<F> {
    type Output = (F::Output, Vec<ProducerRecord>);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let outer = HANDLING.with(|h| h.replace(Some(self.outputs.clone())));
        let polled = self.handling.as_mut().poll(cx);
        HANDLING.with(|h| *h.borrow_mut() = outer);
        polled.map(|out| {
            let outputs = std::mem::take(&mut *lock(&self.outputs));
            (out, outputs)
        })
    }
}

/// The producer call an open transaction is in: the one a dropped run made last, to make again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Begun or not yet: records handled, outputs and dead letters sent.
    Open,
    /// `send_offsets_to_transaction`.
    Offsets,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

impl Step {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Open => "the records' handling and outputs",
            Step::Offsets => "send_offsets_to_transaction",
            Step::Commit => "commit_transaction",
            Step::Abort => "abort_transaction",
        }
    }
}

/// The processor's transactions: its producer, and the transaction open now.
#[derive(Debug)]
pub(crate) struct Transactions {
    pub(crate) producer: Producer,
    pub(crate) call_timeout: Duration,
    /// `init_transactions` went through.
    pub(crate) initialized: bool,
    pub(crate) sink: Sink,
    pub(crate) open: Option<Open>,
    /// Transactions committed and aborted so far.
    pub(crate) committed: u64,
    pub(crate) aborted: u64,
}

/// A transaction holding records: what the processor knows of it that the producer does not.
#[derive(Debug)]
pub(crate) struct Open {
    /// The membership its offsets go with: the consumer's when its first record was handled.
    pub(crate) group: ConsumerGroupMetadata,
    /// `begin_transaction` went through.
    pub(crate) begun: bool,
    /// The offset past the last record done with, per partition.
    pub(crate) offsets: BTreeMap<TopicPartition, i64>,
    /// The first record it handled of each partition: where the partition goes back to when it
    /// aborts.
    pub(crate) starts: BTreeMap<TopicPartition, i64>,
    /// The outputs sent, not yet known to be written.
    pub(crate) deliveries: Vec<Deliveries>,
    pub(crate) outputs: usize,
    pub(crate) step: Step,
    /// A send of this transaction's failed: it is aborted before anything else.
    pub(crate) failed: Option<ProduceError>,
}

impl Transactions {
    pub(crate) fn new(producer: Producer) -> Transactions {
        Transactions {
            producer,
            call_timeout: CALL_TIMEOUT,
            initialized: false,
            sink: Sink {
                outputs: Arc::default(),
            },
            open: None,
            committed: 0,
            aborted: 0,
        }
    }

    /// `record` is about to be handled (or dead-lettered) under `group`: the open transaction
    /// holds it from now on (one is opened for it when none is).
    pub(crate) fn touch(&mut self, record: &Record, group: impl FnOnce() -> ConsumerGroupMetadata) {
        let open = self.open.get_or_insert_with(|| Open {
            group: group(),
            begun: false,
            offsets: BTreeMap::new(),
            starts: BTreeMap::new(),
            deliveries: Vec::new(),
            outputs: 0,
            step: Step::Open,
            failed: None,
        });
        open.starts
            .entry(record.topic_partition())
            .or_insert(record.offset);
    }

    /// `tp`'s records below `offset` were done with (processed, skipped or dead-lettered):
    /// the offset goes with the open transaction.
    pub(crate) fn store(&mut self, tp: TopicPartition, offset: i64) {
        if let Some(open) = self.open.as_mut() {
            open.offsets.insert(tp, offset);
        } else {
            warn!(topic = %tp.topic, partition = tp.partition, offset, "records done with outside a transaction: their offset is not committed");
        }
    }

    /// Begins the open transaction if it has not begun.
    pub(crate) async fn begin(&mut self) -> Result<(), ProduceError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if !open.begun {
            self.producer.begin_transaction(self.call_timeout).await?;
            open.begun = true;
        }
        Ok(())
    }

    /// Sends the handler's outputs in the open transaction (begun first), in as few calls as
    /// `buffer.memory` allows, each a single wait for all its records. A failure is kept: the
    /// transaction aborts once the record's answer is in.
    pub(crate) async fn send_outputs(&mut self) {
        let outputs = self.sink.take();
        if outputs.is_empty() || self.open.as_ref().is_none_or(|o| o.failed.is_some()) {
            return;
        }
        let count = outputs.len();
        let result = match self.begin().await {
            Ok(()) => send_chunked(&self.producer, outputs).await,
            Err(e) => Err(e),
        };
        if let Some(open) = self.open.as_mut() {
            match result {
                Ok(deliveries) => {
                    open.deliveries.extend(deliveries);
                    open.outputs += count;
                }
                Err(e) => open.failed = Some(e),
            }
        }
    }

    /// Writes `record` (a dead letter) in the open transaction, begun first, and waits for it.
    pub(crate) async fn write(&mut self, record: ProducerRecord) -> Result<(), ProduceError> {
        self.begin().await?;
        let delivery = self.producer.send(record).await?;
        delivery.await.map(drop)
    }

    /// The failure a send of the open transaction's left, taken.
    pub(crate) fn take_failure(&mut self) -> Option<ProduceError> {
        self.open.as_mut().and_then(|o| o.failed.take())
    }
}

/// What a failed producer call of a transaction means for the run.
pub(crate) enum Verdict {
    /// The transaction cannot go on, but the processor can: abort it, and its records come
    /// again.
    Abort,
    /// The run stops with this error: the producer cannot go on (fenced, closed), or a
    /// transaction call outlasted its timeout and goes on in the producer (the next run waits
    /// for it).
    Stop(Error),
}

/// Judges `e`, a failure of a producer call made at `step`.
pub(crate) fn judge(e: ProduceError, step: Step) -> Verdict {
    match e.outcome() {
        ProduceOutcome::Close | ProduceOutcome::Closed => Verdict::Stop(transaction_error(&e)),
        // Only a transaction call answers with a timeout of its own, and goes on; a record's
        // retriable error fails the transaction.
        ProduceOutcome::Retry if step != Step::Open => Verdict::Stop(transaction_error(&e)),
        _ => {
            debug!(during = step.name(), error = %e, "the transaction fails");
            Verdict::Abort
        }
    }
}

/// The processor's error for a producer error that stops the run.
pub(crate) fn transaction_error(e: &ProduceError) -> Error {
    Error::of_producer(
        ErrorKind::Transaction,
        "the processor's transactional producer",
        e,
    )
}

/// Sends `records` with `producer` in as few calls as its `buffer.memory` allows (one for
/// records that fit in it), each a single wait for all its records.
pub(crate) async fn send_chunked(
    producer: &Producer,
    records: Vec<ProducerRecord>,
) -> Result<Vec<Deliveries>, ProduceError> {
    let room = producer.config().buffer_memory;
    let mut calls = Vec::new();
    let mut pending = Vec::new();
    let mut size = 0usize;
    for record in records {
        let bytes = producer.room(&record);
        if !pending.is_empty() && size.saturating_add(bytes) > room {
            calls.push(producer.send_all(std::mem::take(&mut pending)).await?);
            size = 0;
        }
        size = size.saturating_add(bytes);
        pending.push(record);
    }
    if !pending.is_empty() {
        calls.push(producer.send_all(pending).await?);
    }
    Ok(calls)
}

/// Logs the settling of a transaction a dropped run left open.
pub(crate) fn settling(open: &Open) {
    info!(
        partitions = open.starts.len(),
        during = open.step.name(),
        "a run was dropped with a transaction open: settling it"
    );
}

/// How many transactions an exactly-once processor committed and aborted
/// ([`Processor::transactions`](crate::Processor::transactions)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TransactionCounts {
    /// Committed: their outputs, dead letters and offsets took effect.
    pub committed: u64,
    /// Aborted: their records came again.
    pub aborted: u64,
}

impl<K, V, S: RecordSource> Processor<K, V, S> {
    /// `record` is about to be handled or dead-lettered: in the exactly-once mode the open
    /// transaction holds it (one is opened, with the consumer's membership now, if none is).
    pub(super) fn hold_in_transaction(&mut self, record: &Record) {
        let Shell {
            consumer,
            transactions,
            group,
            ..
        } = &mut self.parts;
        if let Some(t) = transactions {
            t.touch(record, || {
                Source::group_metadata(consumer).unwrap_or_else(|_| {
                    ConsumerGroupMetadata::new(group.clone().unwrap_or_default())
                })
            });
        }
    }

    /// Before a run (or a commit): the producer's transactions initialized once, and a
    /// transaction a dropped run left open settled. The producer call it was in is made again,
    /// which waits for the one under way or returns the outcome the producer kept: a commit
    /// that went through stands; anything else is aborted and its records come again.
    pub(super) async fn start_transactions(&mut self) -> Result<(), Error> {
        let Some(t) = self.parts.transactions.as_mut() else {
            return Ok(());
        };
        let (producer, timeout) = (t.producer.clone(), t.call_timeout);
        if !t.initialized {
            producer
                .init_transactions(timeout)
                .await
                .map_err(|e| transaction_error(&e))?;
            if let Some(t) = self.parts.transactions.as_mut() {
                t.initialized = true;
            }
        }
        let Some(open) = self
            .parts
            .transactions
            .as_ref()
            .and_then(|t| t.open.as_ref())
        else {
            return Ok(());
        };
        settling(open);
        let failure = match open.step {
            Step::Commit => match producer.commit_transaction(timeout).await {
                Ok(()) => {
                    self.committed();
                    info!("the dropped run's transaction was committed");
                    return Ok(());
                }
                Err(e) => Some((e, Step::Commit)),
            },
            Step::Offsets => {
                let (offsets, group) = (open.offsets.clone(), open.group.clone());
                producer
                    .send_offsets_to_transaction(offsets, &group, timeout)
                    .await
                    .err()
                    .map(|e| (e, Step::Offsets))
            }
            Step::Open | Step::Abort => None,
        };
        if let Some((e, step)) = failure
            && let Verdict::Stop(stop) = judge(e, step)
        {
            return Err(stop);
        }
        self.abort_transaction().await
    }

    /// Commits the open transaction: its outputs written, the group's generation unchanged
    /// since its first record, its offsets sent with that membership, then the commit. A
    /// failure the processor survives aborts it (its records come again); one it does not
    /// stops the run, the transaction left open for the next run to settle.
    pub(super) async fn commit_transaction(&mut self) -> Result<(), Error> {
        let Some(t) = self.parts.transactions.as_mut() else {
            return Ok(());
        };
        let (producer, timeout) = (t.producer.clone(), t.call_timeout);
        let Some(open) = t.open.as_mut() else {
            return Ok(());
        };
        if let Some(e) = open.failed.take() {
            return self.transaction_failed(e, Step::Open).await;
        }
        if open.offsets.is_empty() && !open.begun {
            // Nothing done with yet (a retry waits): nothing to commit.
            t.open = None;
            return Ok(());
        }
        if self.driver.machine.finished_above() {
            // A record done with above one waiting for its retry (records run side by side):
            // its outputs would be committed without its offset. The transaction waits.
            return Ok(());
        }
        for deliveries in std::mem::take(&mut open.deliveries) {
            if let Some(Err(e)) = deliveries.await.into_iter().find(Result::is_err) {
                return self.transaction_failed(e, Step::Open).await;
            }
        }
        let now = Source::group_metadata(&self.parts.consumer)?;
        let Some(t) = self.parts.transactions.as_mut() else {
            return Ok(());
        };
        let Some(open) = t.open.as_mut() else {
            return Ok(());
        };
        if (now.generation_id, &now.member_id) != (open.group.generation_id, &open.group.member_id)
        {
            info!(
                before = open.group.generation_id,
                after = now.generation_id,
                "the group's generation moved on during the transaction: aborting it; its records come again"
            );
            return self.abort_transaction().await;
        }
        if let Err(e) = t.begin().await {
            return self.transaction_failed(e, Step::Open).await;
        }
        let Some(open) = self
            .parts
            .transactions
            .as_mut()
            .and_then(|t| t.open.as_mut())
        else {
            return Ok(());
        };
        open.step = Step::Offsets;
        let (offsets, group) = (open.offsets.clone(), open.group.clone());
        let (inputs, outputs) = (open.offsets.len(), open.outputs);
        if let Err(e) = producer
            .send_offsets_to_transaction(offsets, &group, timeout)
            .await
        {
            return self.transaction_failed(e, Step::Offsets).await;
        }
        if let Some(open) = self
            .parts
            .transactions
            .as_mut()
            .and_then(|t| t.open.as_mut())
        {
            open.step = Step::Commit;
        }
        if let Err(e) = producer.commit_transaction(timeout).await {
            return self.transaction_failed(e, Step::Commit).await;
        }
        self.committed();
        debug!(partitions = inputs, outputs, "transaction committed");
        Ok(())
    }

    /// As a run ends: the open transaction commits, or, a record being done with above one
    /// that is not (a retry waited), it is aborted and its records come again.
    pub(super) async fn end_transaction(&mut self) -> Result<(), Error> {
        let open = self
            .parts
            .transactions
            .as_ref()
            .is_some_and(|t| t.open.is_some());
        if open && self.driver.machine.finished_above() {
            return self.abort_transaction().await;
        }
        self.commit_transaction().await
    }

    /// A producer call of the open transaction, made at `step`, failed with `e`.
    pub(super) async fn transaction_failed(
        &mut self,
        e: ProduceError,
        step: Step,
    ) -> Result<(), Error> {
        match judge(e, step) {
            Verdict::Abort => self.abort_transaction().await,
            Verdict::Stop(stop) => Err(stop),
        }
    }

    /// Aborts the open transaction (if it began), then puts each partition it held records of
    /// back to the first of them.
    async fn abort_transaction(&mut self) -> Result<(), Error> {
        let Some(t) = self.parts.transactions.as_mut() else {
            return Ok(());
        };
        let (producer, timeout) = (t.producer.clone(), t.call_timeout);
        let Some(open) = t.open.as_mut() else {
            return Ok(());
        };
        if open.begun {
            open.step = Step::Abort;
            producer
                .abort_transaction(timeout)
                .await
                .map_err(|e| transaction_error(&e))?;
        }
        let Some(open) = self.parts.transactions.as_mut().and_then(|t| {
            t.aborted += 1;
            t.open.take()
        }) else {
            return Ok(());
        };
        warn!(
            partitions = open.starts.len(),
            "the transaction was aborted; its records come again"
        );
        let owned = Source::assignment(&self.parts.consumer);
        let mut back = Vec::with_capacity(open.starts.len());
        for (tp, offset) in open.starts {
            if owned.contains(&tp) {
                Source::seek(&mut self.parts.consumer, tp.clone(), offset)?;
            }
            back.push(tp);
        }
        self.driver
            .rewound(crate::consumer::now(), &back, &mut self.parts)
    }

    /// On close: a transaction a dropped run left open is settled as a run would (a commit
    /// under way is made again; anything else is aborted).
    pub(super) async fn close_transaction(&mut self) -> Result<(), Error> {
        let open = self
            .parts
            .transactions
            .as_ref()
            .is_some_and(|t| t.initialized && t.open.is_some());
        if !open {
            return Ok(());
        }
        self.start_transactions().await
    }

    fn committed(&mut self) {
        if let Some(t) = self.parts.transactions.as_mut() {
            t.open = None;
            t.committed += 1;
        }
    }
}
