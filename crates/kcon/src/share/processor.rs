//! Record policies over a share consumer: [`ShareProcessor`]. A share group hands a record out
//! again when it is released, so a retry is a release (the redelivery is the retry, its
//! delivery count the attempt); a record that fails for good is rejected (archived),
//! dead-lettered then accepted, or stops the processor released, as `errors.tolerance` and
//! `errors.deadletterqueue.topic.name` say.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcon_produce::{Acks, Producer};

use super::{AcknowledgeType, AcknowledgementMode, ShareConsumer};
use crate::config::{ErrorTolerance, PolicyConfig};
use crate::deserialize::{BytesDeserializer, Decoded, Deserializer, decode};
use crate::error::{Error, ErrorKind};
use crate::policy::settled::{Settled, SettledWarnings};
use crate::policy::{DeadLetterContext, Failure, FailureInfo, PolicyHooks, dead_letter_record};
use crate::record::Record;

/// What a [`ShareProcessor`] did with the records it handled ([`ShareProcessor::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShareProcessorCounts {
    /// Records the handler processed (accepted).
    pub processed: u64,
    /// Records released after a retriable failure: handed out again, their delivery count
    /// raised.
    pub released: u64,
    /// Records rejected after failing for good (`errors.tolerance=all`, no dead-letter topic).
    pub rejected: u64,
    /// Records whose dead letter the topic acknowledged (then accepted).
    pub dead_lettered: u64,
}

/// Runs a handler over a share consumer's records (explicit acknowledgement): each record is
/// deserialized and handled, and settled by what came of it:
/// - done: accepted;
/// - a retriable failure (a deserializer's or the handler's) while its delivery count is below
///   `errors.retry.max.attempts`: released, so the group hands it out again (to this member or
///   another) with its delivery count raised: the redelivery is the retry. The group's own
///   delivery limit (`share.delivery.count.limit` on the broker, 5 by default) archives a
///   record it has handed out that many times whatever the processor says: keep
///   `errors.retry.max.attempts` at or below it so that the last delivery is the processor's
///   to settle (dead letter, reject);
/// - failed for good (permanent, or retriable at the last attempt): with `errors.tolerance=all`
///   written to `errors.deadletterqueue.topic.name` and accepted once the topic has it, or
///   rejected without one; with `errors.tolerance=none` released and the processor stops with
///   [`ErrorKind::RecordFailed`].
///
/// A record is settled only after its fate is sure: a dead letter that fails to be written
/// leaves its record released and stops the processor ([`ErrorKind::DeadLetter`]); records of
/// the batch not handled when the processor stops are released too. Nothing is lost, and
/// nothing is accepted that was not processed or dead-lettered.
pub struct ShareProcessor<K = BytesDeserializer, V = BytesDeserializer> {
    consumer: ShareConsumer,
    key: K,
    value: V,
    config: PolicyConfig,
    /// The dead-letter topic and the processor's own producer for it.
    dead_letter: Option<(String, Producer)>,
    hooks: Vec<Arc<dyn PolicyHooks>>,
    counts: ShareProcessorCounts,
    /// The WARN lines of rejected and dead-lettered records, rate-limited as the
    /// [`Processor`](crate::Processor)'s are.
    warnings: SettledWarnings,
}

impl<K, V> std::fmt::Debug for ShareProcessor<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareProcessor")
            .field("consumer", &self.consumer)
            .field("tolerance", &self.config.tolerance)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl ShareProcessor {
    /// A processor over `consumer`, which must acknowledge explicitly
    /// (`share.acknowledgement.mode=explicit`), reading keys and values as bytes (see
    /// [`with_deserializers`](ShareProcessor::with_deserializers)). Its `errors.*` properties
    /// say what to do with records that fail; with a dead-letter topic the processor writes
    /// to it with a producer of its own over the consumer's connections (`acks=all`,
    /// idempotent). Call inside a Tokio runtime.
    pub fn new(consumer: ShareConsumer) -> Result<ShareProcessor, Error> {
        Self::with_deserializers(consumer, BytesDeserializer, BytesDeserializer)
    }
}

impl<K: Deserializer, V: Deserializer> ShareProcessor<K, V> {
    /// A processor over `consumer` reading keys with `key` and values with `value`.
    pub fn with_deserializers(
        consumer: ShareConsumer,
        key: K,
        value: V,
    ) -> Result<ShareProcessor<K, V>, Error> {
        if consumer.acknowledgement_mode() != AcknowledgementMode::Explicit {
            return Err(Error::config(
                "share.acknowledgement.mode",
                "implicit",
                "explicit under a ShareProcessor (it settles each record itself)",
            ));
        }
        let config = consumer.policy.clone();
        let dead_letter = match &config.dead_letter_topic {
            None => None,
            Some(topic) if consumer.subscription().contains(topic) => {
                return Err(Error::config(
                    "errors.deadletterqueue.topic.name",
                    topic,
                    "a topic the share consumer does not read (a record failing there would \
                     be dead-lettered into itself, again and again)",
                ));
            }
            Some(topic) => {
                let producer = Producer::builder()
                    .pool(consumer.pool.clone())
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    .build()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Config,
                            format!("the dead-letter producer could not start: {e}"),
                        )
                    })?;
                debug_assert_eq!(producer.config().acks, Acks::All);
                Some((topic.clone(), producer))
            }
        };
        Ok(ShareProcessor {
            consumer,
            key,
            value,
            config,
            dead_letter,
            hooks: Vec::new(),
            counts: ShareProcessorCounts::default(),
            warnings: SettledWarnings::default(),
        })
    }

    /// Adds `hooks`, told of releases (as retries, with no delay: the group hands the record
    /// out again), rejects (as skips) and dead letters.
    pub fn hooks(mut self, hooks: impl PolicyHooks) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// What it did so far.
    pub fn counts(&self) -> ShareProcessorCounts {
        self.counts
    }

    /// The share consumer.
    pub fn consumer(&self) -> &ShareConsumer {
        &self.consumer
    }

    /// Processes records with `handler` until an error stops it.
    ///
    /// # Cancel safety
    ///
    /// As [`run_until`](ShareProcessor::run_until)'s.
    pub async fn run<H>(&mut self, handler: H) -> Result<(), Error>
    where
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        self.run_until(std::future::pending::<()>(), handler).await
    }

    /// Processes records with `handler` until `stop` completes (then `Ok`, the batch under
    /// way finished first) or something stops it (then the error, what was not handled
    /// released).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropped while it handles a batch, the batch's records not settled yet stay
    /// unacknowledged, and the share consumer (explicit acknowledgement) refuses to hand out more:
    /// every later run fails at once (`Misuse`). End a run with `stop` instead, which is checked
    /// between batches and lets the batch under way finish; after a dropped run, close the
    /// processor (which releases what is unsettled) and build another. Dropped while it waits for
    /// records, nothing is lost.
    pub async fn run_until<S, H>(&mut self, stop: S, mut handler: H) -> Result<(), Error>
    where
        S: Future<Output = ()>,
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        let mut stop = std::pin::pin!(stop);
        loop {
            let batch = tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                batch = self.consumer.recv_batch() => batch?,
            };
            for (i, record) in batch.iter().enumerate() {
                if let Err(e) = self.handle(record, &mut handler).await {
                    for r in &batch[i + 1..] {
                        self.consumer.acknowledge(r, AcknowledgeType::Release)?;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Closes the share consumer (releasing what it holds unsettled) and the dead-letter
    /// producer.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future drops the share consumer part-way through its close, as
    /// [`ShareConsumer::close`](crate::share::ShareConsumer::close)'s cancel safety says.
    pub async fn close(self) -> Result<(), Error> {
        let result = self.consumer.close().await;
        if let Some((_, producer)) = &self.dead_letter {
            producer.close().await;
        }
        result
    }

    /// Handles and settles `record`; an error stops the processor (the record released).
    async fn handle<H>(&mut self, record: &Record, handler: &mut H) -> Result<(), Error>
    where
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        let attempt = u32::from(record.delivery_count.unwrap_or(1));
        let failure = match decode(record.clone(), &self.key, &self.value).await {
            Ok(mut decoded) => {
                decoded.attempt = attempt;
                match handler(&decoded).await {
                    Ok(()) => {
                        self.counts.processed += 1;
                        return self.consumer.acknowledge(record, AcknowledgeType::Accept);
                    }
                    Err(f) => f.info(),
                }
            }
            Err(f) => FailureInfo::from(&f),
        };
        if failure.retriable && attempt < self.config.retry_max_attempts {
            for h in &self.hooks {
                h.on_retry(record, &failure, attempt, Duration::ZERO);
            }
            self.counts.released += 1;
            return self.consumer.acknowledge(record, AcknowledgeType::Release);
        }
        match (self.config.tolerance, self.dead_letter.is_some()) {
            (ErrorTolerance::None, _) => {
                self.consumer
                    .acknowledge(record, AcknowledgeType::Release)?;
                Err(Error::new(
                    ErrorKind::RecordFailed,
                    format!(
                        "{}-{}@{} failed for good at delivery {attempt} and errors.tolerance is \
                         none: {failure}",
                        record.topic, record.partition, record.offset
                    ),
                )
                .with_partitions(vec![record.topic_partition()]))
            }
            (ErrorTolerance::All, false) => {
                self.warnings
                    .note(Instant::now(), Settled::Skipped, record, &failure);
                for h in &self.hooks {
                    h.on_skip(record, &failure);
                }
                self.counts.rejected += 1;
                self.consumer.acknowledge(record, AcknowledgeType::Reject)
            }
            (ErrorTolerance::All, true) => {
                if let Err(e) = self.write_dead_letter(record, &failure, attempt).await {
                    self.consumer
                        .acknowledge(record, AcknowledgeType::Release)?;
                    return Err(e);
                }
                self.warnings
                    .note(Instant::now(), Settled::DeadLettered, record, &failure);
                for h in &self.hooks {
                    h.on_dead_letter(record, &failure);
                }
                self.counts.dead_lettered += 1;
                self.consumer.acknowledge(record, AcknowledgeType::Accept)
            }
        }
    }

    async fn write_dead_letter(
        &self,
        record: &Record,
        failure: &FailureInfo,
        attempts: u32,
    ) -> Result<(), Error> {
        let Some((topic, producer)) = &self.dead_letter else {
            return Err(Error::misuse("no dead-letter producer"));
        };
        let cx = DeadLetterContext {
            failure,
            attempts,
            group: Some(&self.consumer.group_id),
            failed_at_ms: self.consumer.pool.clock().now_ms(),
        };
        let copy = dead_letter_record(topic, record, cx);
        let failed = |e: kcon_produce::ProduceError| {
            Error::new(
                ErrorKind::DeadLetter,
                format!(
                    "{}-{}@{}'s dead letter to {topic} failed: {e}; the record was released",
                    record.topic, record.partition, record.offset
                ),
            )
            .with_cause(e.cause())
        };
        let delivery = producer.send(copy).await.map_err(failed)?;
        delivery.await.map(drop).map_err(failed)
    }
}
