//! Record policies: what happens to a record that cannot be processed.
//!
//! A [`Processor`] owns a [`RecordSource`] (a [`Consumer`], or a share consumer: see below),
//! deserializes each record's key and value, hands it to the application's handler and follows
//! the handler's verdict:
//! - done: the record's offset is stored (and committed by auto-commit, `commit`, or `close`);
//! - a retriable [`Failure`] (a timeout, a rate limit): the record is tried again after an
//!   exponential backoff with jitter (`errors.retry.backoff.ms` doubling up to
//!   `errors.retry.delay.max.ms`), up to `errors.retry.max.attempts` tries or
//!   `errors.retry.timeout`; meanwhile only its partition is paused, the others keep flowing,
//!   and order within the partition is kept; after the last try it has failed for good;
//! - a permanent [`Failure`], or a key or value that does not deserialize: the record failed
//!   for good. With `errors.tolerance=all` it is skipped, or, with
//!   `errors.deadletterqueue.topic.name`, written to the dead-letter topic (original key, value
//!   and headers, plus `kcon.dlq.*` headers: see [`headers`]) and acknowledged before its
//!   offset is stored. With `errors.tolerance=none` (the default, as in Kafka Connect) the
//!   processor stops with an error at the record.
//! - a circuit breaker (`errors.breaker.failures` of the last `errors.breaker.window.records`,
//!   or `errors.breaker.consecutive.failures` in a row): when it opens, every partition is
//!   paused and the processor stops with an [`ErrorKind::CircuitOpen`](crate::ErrorKind)
//!   error, rather than dead-lettering everything while a downstream service is broken.
//!
//! Nothing is lost: an offset is stored only once its record was processed, skipped, or
//! acknowledged by the dead-letter topic. A record that stops the processor is the first one
//! processed when it runs again (or, after a restart, the first one fetched: its offset was
//! not committed). A process killed between a dead-letter write and the commit writes the
//! record to the dead-letter topic again after its restart: dead letters are at least once.
//!
//! Over a [`ShareConsumer`](crate::share::ShareConsumer) (`share.acknowledgement.mode=explicit`)
//! the same rules settle records instead of storing offsets: a record done with is accepted,
//! one skipped is rejected (archived), and a retry is a release: the group hands the record out
//! again (to this member or another) with its delivery count raised, and the delivery count is
//! the attempt, with no backoff and no paused partition. The group's own delivery limit
//! (`share.delivery.count.limit` on the broker, 5 by default) archives a record it has handed
//! out that many times whatever the processor says: keep `errors.retry.max.attempts` at or below
//! it, so that the last delivery is the processor's to settle. When a run stops, every record
//! the processor holds is released. The retry backoff, timeout and breaker properties are
//! refused for a share consumer.
//!
//! # Records side by side
//!
//! [`run_concurrently`](Processor::run_concurrently) has up to `processing.max.concurrency`
//! records in the handler at once, ordered as `processing.ordering` says: `partition` (a
//! partition's records one after another), `key` (a key's records within its partition one
//! after another; a record without a key is ordered with nothing) or `unordered`. Every rule
//! above holds per record, and a retry holds back its unit only (under `key`, its key: the
//! partition is not paused and its other keys go on). A partition's committed offset is its
//! lowest record not yet done with, so a commit never passes one; the records done with above
//! it are written in the commit's metadata (kcon's `kcon1` text, stored with the offset at most
//! every 200 ms and before [`commit`](Processor::commit), within the broker's 4,096-byte
//! default), and the kcon
//! member that next takes the partition (after a restart or a rebalance) passes them over; any
//! other client processes them again (at least once either way). At most
//! `processing.max.buffered.records` records wait unstarted: past that, the partitions with
//! records waiting are paused until theirs have started; under `key`, so is the partition of a
//! key with more than `processing.max.buffered.records.per.key` records waiting. A revocation waits (at most
//! `processing.revocation.timeout.ms`) for the records of its partitions in the handler, drops
//! those not started, and commits the partitions as far as they were done with before they go:
//! no record is in two members' handlers at once. A lost partition commits nothing.
//!
//! ```no_run
//! use kcon::deserialize::StringDeserializer;
//! use kcon::{Consumer, Processor};
//!
//! # async fn call_service(_: &str) -> Result<(), std::io::Error> { Ok(()) }
//! # #[tokio::main]
//! # async fn main() -> Result<(), kcon::Error> {
//! let mut consumer = Consumer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .group_id("orders")
//!     .build()?;
//! consumer.subscribe(["orders"])?;
//! let mut processor = Processor::builder(consumer)
//!     .key(StringDeserializer)
//!     .value(StringDeserializer)
//!     .set("processing.ordering", "key")
//!     .set("processing.max.concurrency", "256")
//!     .build()?;
//! processor
//!     .run_concurrently(async |order| {
//!         use kcon::FailureExt as _;
//!         // One customer's orders one after another; 256 customers at once.
//!         call_service(&order.value).await.retriable()
//!     })
//!     .await
//! # }
//! ```
//!
//! # Exactly once
//!
//! Built with [`exactly_once(producer)`](ProcessorBuilder::exactly_once) (a producer with a
//! `transactional.id`; a consumer in a group with `enable.auto.commit=false`), the processor is
//! a consume-transform-produce pipeline: the records the handler sends to the processor's
//! [`Sink`] while it handles a record, the dead letters, and the offsets past the records done
//! with go in one transaction of that producer. A transaction commits when nothing is ready to
//! do (the batch handed out is done, or what is left waits for a retry) and when a run stops,
//! but never while a record is done with above one that is not (records side by side, a retry
//! waiting under `key`): that record's outputs would be committed without its offset, so the
//! transaction waits for the retry, and a run ending first aborts it. Under
//! [`run_concurrently`](Processor::run_concurrently) a batch's records run side by side, each
//! with outputs of its own, and the next batch is fetched once the transaction committed. So
//! a batch's outputs, dead letters and input offsets take effect together or not at all, and
//! the rules above hold inside transactions (a retried record's failed tries leave no output; a
//! dead letter is written in the transaction of its record's offset). The offsets go with the
//! group membership of the transaction's first record (KIP-447), and a generation that moved
//! on meanwhile aborts it. A transaction that cannot commit (an output or a dead letter
//! refused, the offsets refused, the coordinator's transaction timeout) is aborted and its
//! records come again, each partition put back to the first record it held; a producer fenced
//! by a newer one with the same `transactional.id` stops the run
//! ([`ErrorKind::Transaction`]). A run dropped with a
//! transaction open leaves it for the next run, `commit` or `close` to settle: a commit under
//! way is made again and stands if it went through; anything else is aborted, and its records
//! come again.
//!
//! The decisions live in a sans-IO machine (`machine/`: no clock, no IO, on kcon-core's machine
//! contract, tested on a virtual clock) and the decisions of driving it in a sans-IO driver
//! (`driver.rs`), shared with that test; the processor is the async shell that carries out the
//! work and waits for the next input.

mod breaker;
mod dead_letter;
mod driver;
mod failure;
mod hooks;
mod machine;
mod metrics;
// The records finished above a partition's committed offset, carried in its commit's metadata:
// the first part of the processor's concurrency (`processing.max.concurrency`), which is built
// on it; until then only its tests and the fuzz target `offset_metadata` use it.
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(dead_code, reason = "the processor's concurrency is built on it next")
)]
pub(crate) mod progress;
// Which record may start next when records run concurrently: the second part of the
// concurrency, which its tests and the fuzz target `ordering` use until the machine is built
// on it.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the processor's concurrency is built on it next")
)]
pub(crate) mod ordering;
pub(crate) mod settled;
mod source;
mod transaction;

/// The policy machine's simulation, for the fuzz target `processor`.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use machine::sim as machine_sim;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use kcon_core::property::{AnyProperty, registry};
use kcon_core::{Machine, Outgoing, RequestId};
use kcon_produce::{Acks, Producer};
use tokio::time::Instant;
use tracing::{debug, warn};

/// Read with the consumer's other properties, beside its configuration (`config/policy.rs`).
pub use crate::config::{ErrorTolerance, PolicyConfig, ProcessingOrder};
pub use dead_letter::{
    DeadLetterContext, DeadLetterError, DeadLetterSource, dead_letter_record, headers,
    is_dead_letter_header, replay_record,
};
pub use failure::{Failure, FailureExt, FailureInfo, Stage};
pub use hooks::PolicyHooks;
pub use metrics::{PartitionCounts, PolicyMetrics, PolicyMetricsHandle};
pub use source::RecordSource;
pub use transaction::{Sink, TransactionCounts};

use crate::config::{POLICY, REFUSALS, SHARE_POLICY, effective};
use crate::consumer::hold::RevocationHold;
use crate::consumer::{Consumer, now};
use crate::deserialize::{BytesDeserializer, Decoded, Deserializer, decode};
use crate::error::{Cause, Error, ErrorKind};
use crate::{OffsetAndMetadata, TopicPartition};
use driver::{Driver, Parts, Turn};
pub(crate) use machine::{DeadLetterFailure, Outcome};
use machine::{Delivery, Done, PolicyMachine, Settlement, Stop, Work};
use source::sealed::Source;
use transaction::{Step, Transactions, transaction_error};

/// How often, at most, the counts are published while records flow.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A consumer with record policies: deserializers, a handler, retries, a dead-letter topic and
/// a circuit breaker (see the [module](self) documentation for the rules).
///
/// The policies (`errors.*`, [`Processor::properties`]), the deserializers, a dead-letter
/// producer and hooks are set on the [builder](Processor::builder).
///
/// ```no_run
/// use kcon::deserialize::{JsonDeserializer, Nullable, StringDeserializer};
/// use kcon::{Consumer, Failure, FailureExt, Processor};
///
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64, amount: u64 }
///
/// # async fn charge(_: &Order) -> Result<(), std::io::Error> { Ok(()) }
/// # #[tokio::main]
/// # async fn main() -> Result<(), kcon::Error> {
/// let mut consumer = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     .set("auto.offset.reset", "earliest") // a new group reads what is already there
///     .build()?;
/// consumer.subscribe(["orders"])?;
/// let mut processor = Processor::builder(consumer)
///     .key(Nullable(StringDeserializer))
///     .value(JsonDeserializer::<Order>::new())
///     .set("errors.tolerance", "all")
///     .set("errors.deadletterqueue.topic.name", "orders.dlq")
///     .set("errors.retry.max.attempts", "5")
///     .set("errors.breaker.consecutive.failures", "20")
///     .build()?;
/// let stop = async { tokio::signal::ctrl_c().await.ok(); };
/// let outcome = processor
///     .run_until(stop, async move |record| {
///         if record.value.amount == 0 {
///             return Err(Failure::permanent("an order of nothing"));
///         }
///         charge(&record.value).await.retriable() // a network error may pass
///     })
///     .await;
/// processor.close().await?; // commits what was processed
/// outcome
/// # }
/// ```
///
/// The handler is an async closure taking the [`Decoded`] record by reference. Run on a
/// spawned task (whose future must be `Send`), the handler must own everything it captures:
/// write it `async move |record| ...` and move into it clones of what it shares with the rest
/// of the program (an `Arc`, a channel's sender, a client handle), never a borrow of a local.
/// A captured reference makes `run` fail to compile there with "implementation of `Send` is
/// not general enough", however the closure is written:
///
/// ```no_run
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use kcon::{Consumer, Processor};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), kcon::Error> {
/// let mut consumer = Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     .build()?;
/// consumer.subscribe(["orders"])?;
/// let mut processor = Processor::builder(consumer).build()?;
/// let handled = Arc::new(AtomicU64::new(0));
/// // A clone the handler owns; `&handled` captured instead would make the task not `Send`.
/// let count = Arc::clone(&handled);
/// let task = tokio::spawn(async move {
///     let stop = async { tokio::signal::ctrl_c().await.ok(); };
///     let outcome = processor
///         .run_until(stop, async move |_record| {
///             count.fetch_add(1, Ordering::Relaxed);
///             Ok(())
///         })
///         .await;
///     processor.close().await.and(outcome)
/// });
/// task.await.expect("the processor's task")?;
/// println!("{} records handled", handled.load(Ordering::Relaxed));
/// # Ok(())
/// # }
/// ```
pub struct Processor<K = BytesDeserializer, V = BytesDeserializer, S = Consumer> {
    key: K,
    value: V,
    /// The record policies it follows.
    config: PolicyConfig,
    driver: Driver,
    /// The source, the hooks and the metrics handle: what the driver tells.
    parts: Shell<S>,
    /// The dead-letter topic and its producer, and whether the processor made the producer.
    dead_letter: Option<DeadLetter>,
}

/// The parts the driver tells, in the processor.
struct Shell<S> {
    consumer: S,
    /// Partitions the consumer said are leaving, not yet told to the machine.
    leaving: Arc<Mutex<Vec<TopicPartition>>>,
    /// The consumer's revocations the processor holds until the records of the partitions
    /// revoked that are in its handler are done with (a consumer's, outside the exactly-once
    /// mode).
    hold: Option<Arc<RevocationHold>>,
    group: Option<String>,
    hooks: Vec<Arc<dyn PolicyHooks>>,
    metrics: PolicyMetricsHandle,
    next_publish: Instant,
    /// The exactly-once mode's transactions: records done with go in them, not to the
    /// consumer's offsets.
    transactions: Option<Transactions>,
}

struct DeadLetter {
    topic: String,
    producer: Producer,
    owned: bool,
}

/// Builds a [`Processor`] over a record source: its deserializers, a dead-letter producer of
/// the application's own, hooks.
pub struct ProcessorBuilder<K, V, S = Consumer> {
    consumer: S,
    key: K,
    value: V,
    /// The `errors.*` properties given, in order: read by `build`.
    properties: Vec<(String, String)>,
    producer: Option<Producer>,
    /// The exactly-once mode's transactional producer.
    transactional: Option<Producer>,
    /// Its transaction calls' timeout, if not the default.
    call_timeout: Option<Duration>,
    hooks: Vec<Arc<dyn PolicyHooks>>,
}

impl<S: RecordSource> Processor<BytesDeserializer, BytesDeserializer, S> {
    /// A builder over `consumer` (a [`Consumer`] or a
    /// [`ShareConsumer`](crate::share::ShareConsumer)), reading keys and values as bytes until
    /// told otherwise.
    pub fn builder(consumer: S) -> ProcessorBuilder<BytesDeserializer, BytesDeserializer, S> {
        ProcessorBuilder {
            consumer,
            key: BytesDeserializer,
            value: BytesDeserializer,
            properties: Vec::new(),
            producer: None,
            transactional: None,
            call_timeout: None,
            hooks: Vec::new(),
        }
    }
}

impl Processor {
    /// Every property a processor takes: the record policies' `errors.*`.
    pub fn properties() -> impl Iterator<Item = &'static dyn AnyProperty> + Clone {
        registry::erased(crate::config::PROPERTIES).filter(|p| p.parts().contains(&POLICY))
    }
}

impl<K, V, S: RecordSource> ProcessorBuilder<K, V, S> {
    /// Reads keys with `key`.
    pub fn key<K2: Deserializer>(self, key: K2) -> ProcessorBuilder<K2, V, S> {
        ProcessorBuilder {
            consumer: self.consumer,
            key,
            value: self.value,
            properties: self.properties,
            producer: self.producer,
            transactional: self.transactional,
            call_timeout: self.call_timeout,
            hooks: self.hooks,
        }
    }

    /// Reads values with `value`.
    pub fn value<V2: Deserializer>(self, value: V2) -> ProcessorBuilder<K, V2, S> {
        ProcessorBuilder {
            consumer: self.consumer,
            key: self.key,
            value,
            properties: self.properties,
            producer: self.producer,
            transactional: self.transactional,
            call_timeout: self.call_timeout,
            hooks: self.hooks,
        }
    }

    /// Sets a record-policy property (an `errors.*` one: see [`Processor::properties`]) under
    /// its Kafka Connect name. Nothing is checked until [`build`](ProcessorBuilder::build),
    /// which names the first property refused and what it allows.
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.trim().to_owned(), value.into()));
        self
    }

    /// `errors.tolerance`: stop at a record that failed for good (`None`, the default), or
    /// skip or dead-letter it and go on (`All`).
    pub fn errors_tolerance(self, tolerance: ErrorTolerance) -> Self {
        self.set("errors.tolerance", tolerance.to_string())
    }

    /// `errors.deadletterqueue.topic.name`: where records that failed for good are written,
    /// with `errors.tolerance=all`.
    pub fn dead_letter_topic(self, topic: &str) -> Self {
        self.set("errors.deadletterqueue.topic.name", topic)
    }

    /// `errors.retry.max.attempts`: tries of a record that fails retriably, the first
    /// included (over a share consumer, its deliveries).
    pub fn retry_max_attempts(self, attempts: u32) -> Self {
        self.set("errors.retry.max.attempts", attempts.to_string())
    }

    /// Writes dead letters with `producer` (another cluster's, say), which must have
    /// `acks=all`. Without one, the processor makes its own over the consumer's connections:
    /// `acks=all`, `enable.idempotence=true`.
    pub fn dead_letter_producer(mut self, producer: Producer) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Adds `hooks`, told of retries (a share consumer's releases, with no delay: the group
    /// hands the record out again), skips (a share consumer's rejects), dead letters and
    /// breaker trips.
    pub fn hooks(mut self, hooks: impl PolicyHooks) -> Self {
        self.hooks.push(Arc::new(hooks));
        self
    }

    /// The processor. Must be called inside a Tokio runtime (it may start a producer).
    ///
    /// Over a consumer, from now on the processor stores offsets itself, as records are done
    /// with, whatever `enable.auto.offset.store` says; records the consumer handed out before
    /// were processed by the application and are stored under its rules first. A share
    /// consumer must acknowledge explicitly (`share.acknowledgement.mode=explicit`): the
    /// processor settles each record itself.
    pub fn build(self) -> Result<Processor<K, V, S>, Error>
    where
        K: Deserializer,
        V: Deserializer,
    {
        let mut consumer = self.consumer;
        let config = policy_config(&self.properties, consumer.delivery())?;
        if let Some(producer) = &self.transactional {
            consumer.transactional()?;
            if producer.config().transactional_id.is_none() {
                return Err(Error::config(
                    "transactional.id",
                    "",
                    "set on an exactly-once processor's producer (its transactions hold the \
                     outputs and the offsets)",
                ));
            }
            if self.producer.is_some() {
                return Err(Error::misuse(
                    "an exactly-once processor writes its dead letters in its transactions: \
                     give no dead-letter producer",
                ));
            }
        }
        let dead_letter = match (&config.dead_letter_topic, self.producer) {
            // Written in the transactions, by their producer.
            (topic, _) if self.transactional.is_some() => topic
                .as_ref()
                .zip(self.transactional.clone())
                .map(|(topic, producer)| DeadLetter {
                    topic: topic.clone(),
                    producer,
                    owned: false,
                }),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Error::misuse(
                    "a dead-letter producer was given but errors.deadletterqueue.topic.name is unset",
                ));
            }
            (Some(topic), Some(producer)) => {
                if producer.config().acks != Acks::All {
                    return Err(Error::config(
                        "acks",
                        "1",
                        "all for a dead-letter producer (a dead letter must be on every in-sync \
                         replica before the offset past its record is stored)",
                    ));
                }
                Some(DeadLetter {
                    topic: topic.clone(),
                    producer,
                    owned: false,
                })
            }
            (Some(topic), None) => {
                let producer = Producer::builder()
                    .pool(consumer.pool().clone())
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    .build()
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Config,
                            format!("the dead-letter producer could not start: {e}"),
                        )
                    })?;
                Some(DeadLetter {
                    topic: topic.clone(),
                    producer,
                    owned: true,
                })
            }
        };
        let leaving: Arc<Mutex<Vec<TopicPartition>>> = Arc::default();
        let told = leaving.clone();
        consumer.prepare(
            dead_letter.as_ref().map(|d| d.topic.as_str()),
            Box::new(move |partitions| {
                told.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(partitions);
            }),
        )?;
        // The exactly-once mode takes the consumer's next batch (where revocations happen) only
        // once nothing is in the handler, and its offsets go in transactions: nothing to hold.
        let hold = (consumer.delivery() == Delivery::Partitions && self.transactional.is_none())
            .then(|| Arc::new(RevocationHold::new(config.revocation_timeout)));
        if let Some(hold) = &hold {
            consumer.hold_revocations(hold.clone());
        }
        let group = consumer.group();
        let metrics = PolicyMetricsHandle::new(consumer.client_id(), group.as_deref());
        if config.tolerance == ErrorTolerance::None && config.dead_letter_topic.is_none() {
            debug!("errors.tolerance=none: a record that fails for good stops the processor");
        }
        Ok(Processor {
            key: self.key,
            value: self.value,
            driver: Driver::new(PolicyMachine::new(
                &config,
                consumer.delivery(),
                fastrand::u64(..),
            )),
            config,
            parts: Shell {
                consumer,
                leaving,
                hold,
                group,
                hooks: self.hooks,
                metrics,
                next_publish: Instant::now(),
                transactions: self.transactional.map(|producer| {
                    let mut t = Transactions::new(producer);
                    t.call_timeout = self.call_timeout.unwrap_or(t.call_timeout);
                    t
                }),
            },
            dead_letter,
        })
    }
}

impl<K, V> ProcessorBuilder<K, V, Consumer> {
    /// Processes exactly once with `producer` (which has a `transactional.id`): what the
    /// handler sends to the processor's [`Sink`](Processor::sink), the dead letters and the
    /// offsets past the records done with go in one transaction per batch (see the
    /// [exactly-once](self#exactly-once) rules). The consumer must have a group and
    /// `enable.auto.commit=false`, and should read with `isolation.level=read_committed` when
    /// its input is written in transactions. Dead letters go in the transaction: no other
    /// dead-letter producer is taken. The processor initializes the producer's transactions at
    /// its first run (fencing a producer left over with the same id) and closes it on
    /// [`close`](Processor::close).
    pub fn exactly_once(mut self, producer: Producer) -> Self {
        self.transactional = Some(producer);
        self
    }

    /// How long each transaction call of the exactly-once mode may take (default 60 s). A call
    /// that outlasts it stops the run with an [`ErrorKind::Transaction`] error whose outcome
    /// is `Retry`: the call goes on in the producer, and the next run waits for it first.
    pub fn transaction_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
}

impl<K: Deserializer, V: Deserializer, S: RecordSource> Processor<K, V, S> {
    /// Processes records with `handler` until an error stops it (see
    /// [`run_until`](Processor::run_until)).
    ///
    /// # Cancel safety
    ///
    /// As [`run_until`](Processor::run_until)'s.
    pub async fn run<H>(&mut self, handler: H) -> Result<(), Error>
    where
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        self.run_until(std::future::pending::<()>(), handler).await
    }

    /// Processes records with `handler` until `stop` completes (then `Ok`) or something stops
    /// it (then the error):
    /// - [`ErrorKind::RecordFailed`]: a record failed for good under `errors.tolerance=none`
    ///   (cause [`Handler`](crate::Cause::Handler), outcome
    ///   [`RunAgain`](crate::Outcome::RunAgain));
    /// - [`ErrorKind::DeadLetter`]: a dead-letter write failed (the write's cause, outcome
    ///   [`Retry`](crate::Outcome::Retry): running again writes it again);
    /// - [`ErrorKind::CircuitOpen`]: the breaker opened (cause
    ///   [`Handler`](crate::Cause::Handler), outcome [`Paused`](crate::Outcome::Paused): call
    ///   [`close_breaker`](Processor::close_breaker) before running again);
    /// - any error of the consumer's receiving calls (a fatal group error, a partition's
    ///   corrupt data, ...).
    ///
    /// Nothing past the record at fault is stored; running again starts at that record. A
    /// record being handled when `stop` completes is finished first; `stop` is checked between
    /// records and while waiting for them. Dropping the returned future mid-record loses
    /// nothing either: the record is handled again by the next run.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is lost. A record is stored only once it was done with, so the record
    /// being handled when the future is dropped (the handler's future dropped with it) is handled
    /// again, from the start, by the next run: a handler cut off part-way must be safe to run again
    /// on the same record. A dead letter being written may be written again (dead letters are at
    /// least once). `stop` ends the run between records instead, finishing the record under way.
    pub async fn run_until<F, H>(&mut self, stop: F, mut handler: H) -> Result<(), Error>
    where
        F: Future<Output = ()>,
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        if self.config.max_concurrency > 1 {
            return Err(Error::config(
                "processing.max.concurrency",
                &self.config.max_concurrency.to_string(),
                "1 for run and run_until, whose handler takes one record at a time \
                 (run_concurrently takes more)",
            ));
        }
        let mut stop = std::pin::pin!(stop);
        self.start_transactions().await?;
        self.driver.call(now(), &mut self.parts)?;
        loop {
            loop {
                // Whichever wake-up came last, partitions the consumer let go of meanwhile
                // are told first (see `Driver::turn`).
                match self.driver.turn(now(), &mut self.parts) {
                    Turn::Step(out) => {
                        if is_ready(stop.as_mut()) {
                            // The work stays out: the next run's `call` asks for it again.
                            self.parts.publish(&self.driver.machine, true);
                            return self.end_transaction().await;
                        }
                        let id = out.id;
                        let done = self.carry_out(out, &mut handler).await;
                        self.driver.answered(now(), id, Ok(done), &mut self.parts);
                        // An output the transaction could not take aborts it at once.
                        let failed = self
                            .parts
                            .transactions
                            .as_mut()
                            .and_then(|t| t.take_failure());
                        if let Some(e) = failed {
                            self.transaction_failed(e, Step::Open).await?;
                        }
                    }
                    Turn::Wait => break,
                    Turn::Stop(reason) => {
                        let stopped = self.stopped(reason);
                        // What was done with before the record at fault is committed.
                        self.end_transaction().await?;
                        return Err(stopped);
                    }
                    Turn::Error(e) => return Err(e),
                }
            }
            // Nothing ready: the records done with so far are committed, in the exactly-once
            // mode, before the processor waits.
            self.commit_transaction().await?;
            let retry_at = self.driver.machine.poll_timeout().map(Instant::from_std);
            tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                // The consumer began revoking partitions: told at the next turn.
                () = revocation(self.parts.hold.as_deref()) => {}
                () = sleep_until(retry_at) => self.driver.timeout(now()),
                batch = Source::recv_batch(&mut self.parts.consumer),
                    if self.driver.machine.wants_records() =>
                {
                    self.driver.batch(now(), batch, &mut self.parts)?;
                }
            }
        }
    }

    /// A run of records side by side ends with `end`, none of them in the handler, after a
    /// `last` turn: the answers that came after the turn before it are carried out by it
    /// (their offsets stored, in the exactly-once mode into the transaction), so that the
    /// commit made next names them. A stop or an error that turn raises is the run's outcome
    /// unless `end` is an error already. Work it hands out stays out: the next run asks for it
    /// again.
    fn run_ends(&self, end: Result<(), Error>, last: Turn) -> Result<(), Error> {
        match last {
            Turn::Stop(reason) if end.is_ok() => Err(self.stopped(reason)),
            Turn::Error(e) if end.is_ok() => Err(e),
            Turn::Step(_) | Turn::Wait | Turn::Stop(_) | Turn::Error(_) => end,
        }
    }

    /// Processes records with `handler`, up to `processing.max.concurrency` at once, until
    /// an error stops it (see [`run_concurrently_until`](Processor::run_concurrently_until)).
    ///
    /// # Cancel safety
    ///
    /// As [`run_concurrently_until`](Processor::run_concurrently_until)'s.
    pub async fn run_concurrently<H>(&mut self, handler: H) -> Result<(), Error>
    where
        H: AsyncFn(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        self.run_concurrently_until(std::future::pending::<()>(), handler)
            .await
    }

    /// Processes records with `handler` until `stop` completes (then `Ok`) or something stops
    /// it (then the error, as [`run_until`](Processor::run_until) says), with up to
    /// `processing.max.concurrency` records in the handler at once, ordered as
    /// `processing.ordering` says: the records of one unit (a partition, or a key within its
    /// partition) one after another in offset order, units side by side. The handler is an
    /// [`AsyncFn`]: called for several records at once, it shares what it captures.
    ///
    /// Every rule of [`run_until`](Processor::run_until) holds per record: retries (holding
    /// back their unit only), dead letters, the breaker. A partition's committed offset is its
    /// lowest record not done with, so a commit never passes one; the records done with above
    /// it go in the commit's metadata (see the [module](self) documentation). At most
    /// `processing.max.buffered.records` records wait unstarted: the next batch is fetched
    /// when fewer wait and a place in the handler is free.
    ///
    /// When `stop` completes, or a record stops the run, the records in the handler are
    /// finished first (a record that fails for good meanwhile waits for the next run); none
    /// is started after it.
    ///
    /// In the exactly-once mode a fetched batch's records run side by side, each with outputs
    /// of its own (what its handler sends to the [`Sink`] while it runs), and the batch's
    /// transaction commits once none of them is in the handler and nothing is ready: the next
    /// batch is fetched after that. A transaction never commits while a record is done with
    /// above one that is not (a retry waits under `key` ordering): its outputs would be
    /// committed without its offset. It waits for the retry instead, and a run ending then
    /// aborts it (its records come again).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe as [`run_until`](Processor::run_until) is: nothing is lost. Dropping the
    /// future drops the handler's futures of every record in it, and each of those records is
    /// handled again, from the start, by the next run.
    pub async fn run_concurrently_until<F, H>(&mut self, stop: F, handler: H) -> Result<(), Error>
    where
        F: Future<Output = ()>,
        H: AsyncFn(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        use futures_util::FutureExt as _;
        use futures_util::StreamExt as _;
        use futures_util::stream::FuturesUnordered;

        if self.parts.transactions.is_some() {
            return self.run_transactions_concurrently(stop, handler).await;
        }
        let mut stop = std::pin::pin!(stop);
        self.driver.call(now(), &mut self.parts)?;
        let (key, value, handler) = (&self.key, &self.value, &handler);
        // One future type for both kinds of work: what to carry out is decided before it
        // starts, so that the future borrows only the deserializers and the handler.
        let carry = async |id: RequestId, carry: Carry| -> (RequestId, Done) {
            match carry {
                Carry::Process(record, attempt) => {
                    let outcome = match decode(record, key, value).await {
                        Ok(mut decoded) => {
                            decoded.attempt = attempt;
                            handled(handler(&decoded).await)
                        }
                        Err(failure) => Outcome::Failed(FailureInfo::from(&failure)),
                    };
                    (id, Done::Processed(outcome))
                }
                Carry::DeadLetter(at, prepared) => {
                    let result = match prepared {
                        Ok((copy, producer)) => send_dead_letter(&producer, copy).await,
                        Err(e) => Err(e),
                    };
                    (id, dead_letter_written(&at, result))
                }
            }
        };
        let mut running = FuturesUnordered::new();
        // How the run ends, once the records in the handler are finished.
        let mut ending: Option<Result<(), Error>> = None;
        loop {
            while ending.is_none() {
                match self.driver.turn(now(), &mut self.parts) {
                    Turn::Step(out) => {
                        if is_ready(stop.as_mut()) {
                            // The work stays out: the next run's `call` asks for it again.
                            ending = Some(Ok(()));
                            break;
                        }
                        let work = match out.request {
                            Work::Process { record, attempt } => Carry::Process(record, attempt),
                            Work::DeadLetter {
                                record,
                                failure,
                                attempts,
                            } => {
                                let prepared = self.dead_letter_copy(&record, &failure, attempts);
                                Carry::DeadLetter(record, prepared)
                            }
                        };
                        running.push(carry(out.id, work));
                    }
                    Turn::Wait => break,
                    Turn::Stop(reason) => ending = Some(Err(self.stopped(reason))),
                    Turn::Error(e) => ending = Some(Err(e)),
                }
            }
            if running.is_empty()
                && let Some(end) = ending.take()
            {
                let last = self.driver.turn(now(), &mut self.parts);
                let end = self.run_ends(end, last);
                self.parts.publish(&self.driver.machine, true);
                return end;
            }
            let retry_at = self.driver.machine.poll_timeout().map(Instant::from_std);
            let fetch = ending.is_none() && self.driver.machine.wants_records();
            tokio::select! {
                biased;
                Some((id, done)) = running.next(), if !running.is_empty() => {
                    self.driver.answered(now(), id, Ok(done), &mut self.parts);
                    // Every other record finished by now too, before new work starts: timers
                    // fire by the millisecond, and with hundreds in the handler a tick ends
                    // dozens at once. One loop for all of them, not one each. (Polled without
                    // a waker: the `select!` above polls `running` again, with this task's,
                    // before it waits.)
                    while let Some(Some((id, done))) = running.next().now_or_never() {
                        self.driver.answered(now(), id, Ok(done), &mut self.parts);
                    }
                }
                () = &mut stop, if ending.is_none() => ending = Some(Ok(())),
                // The consumer began revoking partitions: told at the next turn.
                () = revocation(self.parts.hold.as_deref()) => {}
                () = sleep_until(retry_at), if ending.is_none() => self.driver.timeout(now()),
                batch = Source::recv_batch(&mut self.parts.consumer), if fetch => {
                    if let Err(e) = self.driver.batch(now(), batch, &mut self.parts) {
                        ending = Some(Err(e));
                    }
                }
            }
        }
    }

    /// [`run_concurrently_until`](Processor::run_concurrently_until) in the exactly-once mode:
    /// a batch at a time, its records side by side, its transaction committed when none runs
    /// and nothing is ready.
    async fn run_transactions_concurrently<F, H>(
        &mut self,
        stop: F,
        handler: H,
    ) -> Result<(), Error>
    where
        F: Future<Output = ()>,
        H: AsyncFn(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        use futures_util::StreamExt as _;
        use futures_util::stream::FuturesUnordered;

        let mut stop = std::pin::pin!(stop);
        self.start_transactions().await?;
        self.driver.call(now(), &mut self.parts)?;
        let handler = &handler;
        let mut running = FuturesUnordered::new();
        let mut ending: Option<Result<(), Error>> = None;
        loop {
            while ending.is_none() {
                match self.driver.turn(now(), &mut self.parts) {
                    Turn::Step(out) => {
                        if is_ready(stop.as_mut()) {
                            // The work stays out: the next run's `call` asks for it again.
                            ending = Some(Ok(()));
                            break;
                        }
                        match out.request {
                            // Records are decoded here, one at a time, so that what runs side by
                            // side borrows the handler only.
                            Work::Process { record, attempt } => {
                                self.hold_in_transaction(&record);
                                let id = out.id;
                                match decode(record, &self.key, &self.value).await {
                                    Ok(mut decoded) => {
                                        decoded.attempt = attempt;
                                        running.push(async move {
                                            let (result, outputs) =
                                                transaction::WithOutputs::new(handler(&decoded))
                                                    .await;
                                            (id, handled(result), outputs)
                                        });
                                    }
                                    Err(failure) => {
                                        let failed = Outcome::Failed(FailureInfo::from(&failure));
                                        let done = Done::Processed(failed);
                                        self.driver.answered(now(), id, Ok(done), &mut self.parts);
                                    }
                                }
                            }
                            // A dead letter is written in the transaction, between handlings.
                            Work::DeadLetter {
                                record,
                                failure,
                                attempts,
                            } => {
                                let done = self.carry_dead_letter(record, &failure, attempts).await;
                                self.driver
                                    .answered(now(), out.id, Ok(done), &mut self.parts);
                            }
                        }
                    }
                    Turn::Wait => break,
                    Turn::Stop(reason) => ending = Some(Err(self.stopped(reason))),
                    Turn::Error(e) => ending = Some(Err(e)),
                }
            }
            if !running.is_empty() {
                let retry_at = self.driver.machine.poll_timeout().map(Instant::from_std);
                tokio::select! {
                    biased;
                    Some((id, outcome, outputs)) = running.next() => {
                        if let Some(t) = self.parts.transactions.as_mut() {
                            // A failed try's outputs are dropped: a retry makes them again.
                            if matches!(outcome, Outcome::Done) {
                                t.sink.extend(outputs);
                                t.send_outputs().await;
                            }
                        }
                        self.driver.answered(now(), id, Ok(Done::Processed(outcome)), &mut self.parts);
                    }
                    () = &mut stop, if ending.is_none() => ending = Some(Ok(())),
                    () = sleep_until(retry_at), if ending.is_none() => self.driver.timeout(now()),
                }
                continue;
            }
            // Nothing runs and nothing is ready: the batch's transaction commits (or, records
            // being done with above one waiting for its retry, waits for it; a run ending then
            // aborts it).
            if let Some(end) = ending.take() {
                let last = self.driver.turn(now(), &mut self.parts);
                let end = self.run_ends(end, last);
                self.parts.publish(&self.driver.machine, true);
                self.end_transaction().await?;
                return end;
            }
            self.commit_transaction().await?;
            let retry_at = self.driver.machine.poll_timeout().map(Instant::from_std);
            let fetch =
                self.driver.machine.wants_records() && !self.driver.machine.finished_above();
            tokio::select! {
                biased;
                () = &mut stop => ending = Some(Ok(())),
                () = sleep_until(retry_at) => self.driver.timeout(now()),
                batch = Source::recv_batch(&mut self.parts.consumer), if fetch => {
                    if let Err(e) = self.driver.batch(now(), batch, &mut self.parts) {
                        ending = Some(Err(e));
                    }
                }
            }
        }
    }

    /// Closes the breaker after it opened: its counts start afresh, the partitions it paused
    /// resume, and the next run starts at the record that opened it.
    pub fn close_breaker(&mut self) -> Result<(), Error> {
        self.driver.close_breaker(now(), &mut self.parts)
    }

    /// The record policies it follows, as its `errors.*` properties set them.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The policies' counts now.
    pub fn metrics(&self) -> PolicyMetrics {
        snapshot(&self.driver.machine)
    }

    /// A handle that reads the counts from any task.
    pub fn metrics_handle(&self) -> PolicyMetricsHandle {
        self.parts.metrics.clone()
    }

    /// The consumer (its assignment, metrics, lag, a commit handle), or the share consumer.
    pub fn consumer(&self) -> &S {
        &self.parts.consumer
    }

    /// Commits what was done with so far (processed, skipped or dead-lettered): a consumer's
    /// offsets, or a share consumer's acknowledgements (sent at once, their outcomes told to
    /// its hooks and metrics), or, in the exactly-once mode, the open transaction (after
    /// settling one a dropped run left open).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent (with the offsets
    /// stored by then) and goes on if the future is dropped; only its outcome goes unread, and it
    /// is then neither counted in the consumer's metrics nor told to its hooks. Commit again (or
    /// close) to know the offsets are committed. Dropped before its first poll, it does nothing.
    pub async fn commit(&mut self) -> Result<(), Error> {
        if self.parts.transactions.is_some() {
            self.start_transactions().await?;
            return self.commit_transaction().await;
        }
        self.driver.before_commit(now(), &mut self.parts)?;
        Source::commit(&mut self.parts.consumer).await
    }

    /// Where the handler sends the records it makes of the record in hand, in the exactly-once
    /// mode: they are written in the processor's transaction when the handler returns `Ok`.
    /// Refused ([`ErrorKind::Misuse`]) without the exactly-once mode
    /// ([`ProcessorBuilder::exactly_once`]).
    ///
    /// ```no_run
    /// use kcon::{Consumer, Processor};
    /// use kcon_produce::{Producer, ProducerRecord};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut consumer = Consumer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .group_id("enricher")
    ///     .set("enable.auto.commit", "false")
    ///     .set("isolation.level", "read_committed")
    ///     .build()?;
    /// consumer.subscribe(["orders"])?;
    /// let producer = Producer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .set("transactional.id", "enricher-0")
    ///     .build()?;
    /// let mut processor = Processor::builder(consumer).exactly_once(producer).build()?;
    /// let sink = processor.sink()?;
    /// processor
    ///     .run(async move |order| {
    ///         let value = order.value.clone().unwrap_or_default();
    ///         sink.send(ProducerRecord::new("enriched", value));
    ///         Ok(())
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sink(&self) -> Result<Sink, Error> {
        self.parts
            .transactions
            .as_ref()
            .map(|t| t.sink.clone())
            .ok_or_else(|| {
                Error::misuse(
                    "a sink is the exactly-once mode's: build the processor with \
                     exactly_once(producer)",
                )
            })
    }

    /// The exactly-once mode's transactions committed and aborted so far; `None` in the other
    /// modes.
    pub fn transactions(&self) -> Option<TransactionCounts> {
        self.parts.transactions.as_ref().map(|t| TransactionCounts {
            committed: t.committed,
            aborted: t.aborted,
        })
    }

    /// Closes the consumer (with auto-commit, committing what was done with; records waiting
    /// are not, so the next owner reads them; a share consumer releases what it holds
    /// unsettled) and flushes the dead-letter producer (closing it if the processor made it).
    /// In the exactly-once mode, a transaction a dropped run left open is settled first (a
    /// commit under way is made again and stands if it went through; anything else is
    /// aborted), and the transactional producer is closed. Takes at most the consumer's
    /// `close.timeout.ms`.
    ///
    /// Fails with the first failure among those steps; a producer's close fails when a record
    /// it had queued failed while it closed.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the processor is moved in, so dropping the future drops the consumer
    /// part-way through its close, as [`Consumer::close`]'s cancel safety says, and stops waiting
    /// for the dead-letter producer, which still sends the records it holds.
    pub async fn close(self) -> Result<(), Error> {
        let timeout = self.parts.consumer.close_timeout();
        self.close_within(timeout).await
    }

    /// [`close`](Processor::close), within `timeout`: a step not done by then is left as
    /// dropping the processor leaves it (a producer goes on closing without anyone waiting),
    /// and the close fails as timed out.
    ///
    /// # Cancel safety
    ///
    /// As [`close`](Processor::close)'s: not cancel-safe. Give it the time it may take as
    /// `timeout` instead.
    pub async fn close_within(mut self, timeout: Duration) -> Result<(), Error> {
        // Nothing is in the handler any more: the close's revocation waits for nothing.
        if let Some(hold) = &self.parts.hold {
            hold.close();
        }
        let deadline = Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(Instant::now());
        let late = |what: &str| {
            Error::new(
                ErrorKind::Transport,
                format!(
                    "{what} did not finish within the close's {} ms",
                    timeout.as_millis()
                ),
            )
            .retriable(true)
        };
        let settled = tokio::time::timeout_at(deadline, self.close_transaction())
            .await
            .unwrap_or_else(|_| Err(late("settling the open transaction")));
        let result = Source::close_within(self.parts.consumer, left()).await;
        let mut producers = Ok(());
        if let Some(t) = self.parts.transactions {
            producers = t
                .producer
                .close_within(left())
                .await
                .map_err(|e| transaction_error(&e));
        }
        if let Some(d) = self.dead_letter {
            let done = if d.owned {
                d.producer.close_within(left()).await.map_err(|e| {
                    Error::of_producer(
                        ErrorKind::DeadLetter,
                        "the dead-letter producer's close",
                        &e,
                    )
                })
            } else {
                tokio::time::timeout_at(deadline, d.producer.flush())
                    .await
                    .map_err(|_| late("flushing the dead-letter producer"))
            };
            producers = producers.and(done);
        }
        settled.and(result).and(producers)
    }

    /// Carries out `out`: deserializes the record and calls the handler, or writes the dead
    /// letter.
    async fn carry_out<H>(&mut self, out: Outgoing<Work, ()>, handler: &mut H) -> Done
    where
        H: AsyncFnMut(&Decoded<K::Output, V::Output>) -> Result<(), Failure>,
    {
        match out.request {
            Work::Process { record, attempt } => {
                self.hold_in_transaction(&record);
                let outcome = match decode(record, &self.key, &self.value).await {
                    Ok(mut decoded) => {
                        decoded.attempt = attempt;
                        let outcome = handler(&decoded).await;
                        if let Some(t) = self.parts.transactions.as_mut() {
                            match &outcome {
                                Ok(()) => t.send_outputs().await,
                                // A failed try's outputs are dropped: a retry makes them again.
                                Err(_) => drop(t.sink.take()),
                            }
                        }
                        handled(outcome)
                    }
                    Err(failure) => Outcome::Failed(FailureInfo::from(&failure)),
                };
                Done::Processed(outcome)
            }
            Work::DeadLetter {
                record,
                failure,
                attempts,
            } => self.carry_dead_letter(record, &failure, attempts).await,
        }
    }

    /// Writes `record`'s dead letter (in the open transaction in the exactly-once mode, which
    /// holds the record from now on): the answer to its [`Work::DeadLetter`].
    async fn carry_dead_letter(
        &mut self,
        record: crate::record::Record,
        failure: &FailureInfo,
        attempts: u32,
    ) -> Done {
        self.hold_in_transaction(&record);
        let result = self.write_dead_letter(&record, failure, attempts).await;
        dead_letter_written(&record, result)
    }

    async fn write_dead_letter(
        &mut self,
        record: &crate::record::Record,
        failure: &FailureInfo,
        attempts: u32,
    ) -> Result<(), DeadLetterFailure> {
        let (copy, producer) = self.dead_letter_copy(record, failure, attempts)?;
        if let Some(t) = self.parts.transactions.as_mut() {
            return t.write(copy).await.map_err(dead_letter_failed);
        }
        send_dead_letter(&producer, copy).await
    }

    /// The dead letter of `record` and the producer that writes it, or why it cannot go.
    fn dead_letter_copy(
        &self,
        record: &crate::record::Record,
        failure: &FailureInfo,
        attempts: u32,
    ) -> Result<(kcon_produce::ProducerRecord, Producer), DeadLetterFailure> {
        // Invariant: the machine asks for dead letters only when a topic is configured, and
        // `build` made or took a producer whenever one is.
        let Some(d) = &self.dead_letter else {
            return Err(DeadLetterFailure {
                cause: Cause::Misuse,
                reason: "no dead-letter producer".to_owned(),
            });
        };
        // A pattern subscription may come to match the dead-letter topic itself: its records
        // failing there would go round forever.
        if *record.topic == *d.topic {
            return Err(DeadLetterFailure {
                cause: Cause::Config,
                reason: format!(
                    "the record is from the dead-letter topic {} itself; it is not written \
                     there again",
                    d.topic
                ),
            });
        }
        let cx = DeadLetterContext {
            failure,
            attempts,
            group: self.parts.group.as_deref(),
            failed_at_ms: self.parts.consumer.wall_ms(),
        };
        Ok((dead_letter_record(&d.topic, record, cx), d.producer.clone()))
    }

    /// The error for `reason` (an open breaker's driver paused every partition already).
    fn stopped(&self, reason: Stop) -> Error {
        let redelivered = self.parts.consumer.delivery() == Delivery::Redelivered;
        match reason {
            Stop::Failed {
                record,
                failure,
                attempts,
            } => {
                let tries = if redelivered {
                    format!("at delivery {attempts}")
                } else {
                    format!("after {attempts} tries")
                };
                Error::new(
                    ErrorKind::RecordFailed,
                    format!(
                        "{}-{}@{} failed for good {tries} and errors.tolerance is none: \
                         {failure}",
                        record.topic, record.partition, record.offset
                    ),
                )
                .with_partitions(vec![record.topic_partition()])
            }
            Stop::DeadLetterFailed { record, error } => {
                let topic = self.dead_letter.as_ref().map_or("", |d| d.topic.as_str());
                let then = if redelivered {
                    "it was released, and the group hands it out again"
                } else {
                    "its offset is not stored, and it is written again when the processor runs \
                     again"
                };
                Error::new(
                    ErrorKind::DeadLetter,
                    format!(
                        "writing {}-{}@{} to the dead-letter topic {topic} failed: {}; {then}",
                        record.topic, record.partition, record.offset, error.reason
                    ),
                )
                .with_cause(error.cause)
                .retriable(true)
                .with_partitions(vec![record.topic_partition()])
            }
            Stop::BreakerOpen {
                record,
                failure,
                tripped,
            } => Error::new(
                ErrorKind::CircuitOpen,
                format!(
                    "the circuit breaker opened at {}-{}@{}: {} of the last {} records failed \
                     for good, {} in a row; every partition is paused. The last failure: \
                     {failure}",
                    record.topic,
                    record.partition,
                    record.offset,
                    tripped.failures,
                    tripped.counted,
                    tripped.consecutive
                ),
            )
            .with_partitions(vec![record.topic_partition()]),
        }
    }
}

impl<S: RecordSource> Parts for Shell<S> {
    fn take_leaving(&mut self) -> Vec<TopicPartition> {
        std::mem::take(&mut *self.leaving.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn take_revoking(&mut self) -> Vec<TopicPartition> {
        self.hold
            .as_ref()
            .map(|h| h.take_revoking())
            .unwrap_or_default()
    }

    fn released(&mut self, partitions: &[TopicPartition]) {
        if let Some(hold) = &self.hold {
            hold.release(partitions);
        }
    }

    fn assignment(&self) -> BTreeSet<TopicPartition> {
        Source::assignment(&self.consumer)
    }

    fn paused(&self) -> BTreeSet<TopicPartition> {
        Source::paused(&self.consumer)
    }

    fn settle(
        &mut self,
        _now: std::time::Instant,
        record: &crate::record::Record,
        how: Settlement,
    ) -> Result<(), Error> {
        self.consumer.settle(record, how)
    }

    fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)> {
        // The exactly-once mode keeps records in partition order: nothing is written there.
        self.consumer.take_committed_metadata(tp)
    }

    fn store(
        &mut self,
        _now: std::time::Instant,
        tp: TopicPartition,
        at: OffsetAndMetadata,
    ) -> Result<(), Error> {
        match &mut self.transactions {
            Some(t) => {
                t.store(tp, at.offset);
                Ok(())
            }
            None => self.consumer.store(tp, at),
        }
    }

    fn pause(
        &mut self,
        _now: std::time::Instant,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), Error> {
        Source::pause(&mut self.consumer, partitions)
    }

    fn resume(
        &mut self,
        _now: std::time::Instant,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), Error> {
        Source::resume(&mut self.consumer, partitions)
    }

    fn retrying(
        &mut self,
        record: &crate::record::Record,
        failure: &FailureInfo,
        attempt: u32,
        delay: Duration,
    ) {
        self.hooks
            .iter()
            .for_each(|h| h.on_retry(record, failure, attempt, delay));
    }

    fn skipped(&mut self, record: &crate::record::Record, failure: &FailureInfo) {
        self.hooks.iter().for_each(|h| h.on_skip(record, failure));
    }

    fn dead_lettered(&mut self, record: &crate::record::Record, failure: &FailureInfo) {
        self.hooks
            .iter()
            .for_each(|h| h.on_dead_letter(record, failure));
    }

    fn breaker_opened(&mut self, record: &crate::record::Record, failure: &FailureInfo) {
        self.hooks
            .iter()
            .for_each(|h| h.on_breaker_open(record, failure));
    }

    fn metadata_cut(&mut self, tp: &TopicPartition, named: i64) {
        self.hooks.iter().for_each(|h| h.on_metadata_cut(tp, named));
    }

    /// Publishes the counts for the handle: at once when `force`, else at most every
    /// [`PUBLISH_EVERY`].
    fn publish(&mut self, machine: &PolicyMachine, force: bool) {
        let at = Instant::now();
        if !force && at < self.next_publish {
            return;
        }
        self.next_publish = at + PUBLISH_EVERY;
        self.metrics.publish(snapshot(machine));
    }
}

/// What a handler's result makes of its record's try.
fn handled(result: Result<(), Failure>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(failure) => Outcome::Failed(failure.info()),
    }
}

/// The answer to `record`'s dead-letter write, a failure told in a WARN line.
fn dead_letter_written(
    record: &crate::record::Record,
    result: Result<(), DeadLetterFailure>,
) -> Done {
    if let Err(e) = &result {
        warn!(topic = %record.topic, partition = record.partition, offset = record.offset, "dead-letter write failed: {}", e.reason);
    }
    Done::DeadLettered(result)
}

/// The policies' counts now.
fn snapshot(machine: &PolicyMachine) -> PolicyMetrics {
    let mut m = machine.counts().snapshot_with(
        now(),
        machine.is_open(),
        machine.waiting(),
        machine.running(),
        machine.buffered(),
    );
    for (tp, gap) in machine.gaps() {
        m.partitions.entry(tp.clone()).or_default().gap = gap;
    }
    m.records_waiting_for_key = machine.behind();
    m
}

impl<K, V, S: std::fmt::Debug> std::fmt::Debug for Processor<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("consumer", &self.parts.consumer)
            .field("machine", &self.driver.machine)
            .finish_non_exhaustive()
    }
}

impl<K, V, S: std::fmt::Debug> std::fmt::Debug for ProcessorBuilder<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorBuilder")
            .field("consumer", &self.consumer)
            .field("producer", &self.producer.is_some())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// The record policies `given` set, read for a processor over a source whose records come as
/// `delivery` says: over a share consumer, the properties of partitions (backoff, breaker) are
/// refused.
fn policy_config(given: &[(String, String)], delivery: Delivery) -> Result<PolicyConfig, Error> {
    let mut config = PolicyConfig::default();
    for (property, name, value) in effective(given, Processor::properties())? {
        if delivery == Delivery::Redelivered
            && let Some(r) = registry::refusal(REFUSALS, SHARE_POLICY, property)
        {
            return Err(Error::config(property.name(), value, r.why));
        }
        config.set(name, value)?;
    }
    config.validate()?;
    Ok(config)
}

/// What a record in the handler of [`Processor::run_concurrently_until`] carries out.
enum Carry {
    /// Deserialize the record and call the handler, try number `.1`.
    Process(crate::record::Record, u32),
    /// Write the record's dead letter (made, or why it could not be).
    DeadLetter(
        crate::record::Record,
        Result<(kcon_produce::ProducerRecord, Producer), DeadLetterFailure>,
    ),
}

/// A dead-letter write's failure, from the producer's.
fn dead_letter_failed(e: kcon_produce::ProduceError) -> DeadLetterFailure {
    DeadLetterFailure {
        cause: e.cause(),
        reason: e.to_string(),
    }
}

/// Writes the dead letter `copy` with `producer` and waits for its acknowledgement.
async fn send_dead_letter(
    producer: &Producer,
    copy: kcon_produce::ProducerRecord,
) -> Result<(), DeadLetterFailure> {
    let delivery = producer.send(copy).await.map_err(dead_letter_failed)?;
    delivery.await.map(drop).map_err(dead_letter_failed)
}

/// Whether `stop` has completed, without waiting for it.
fn is_ready<S: Future<Output = ()>>(stop: Pin<&mut S>) -> bool {
    stop.poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

/// Completes when the consumer began revoking partitions the processor holds.
async fn revocation(hold: Option<&RevocationHold>) {
    match hold {
        Some(hold) => hold.wanted().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(props: &[(&str, &str)]) -> Consumer {
        let mut b = Consumer::builder()
            .bootstrap_servers("127.0.0.1:9")
            .group_id("g");
        for (n, v) in props {
            b = b.set(n, *v);
        }
        b.build().unwrap()
    }

    #[tokio::test]
    async fn a_dead_letter_topic_the_consumer_reads_is_refused() {
        let dlq = |c| {
            Processor::builder(c)
                .set("errors.tolerance", "all")
                .set("errors.deadletterqueue.topic.name", "orders")
        };
        let mut c = consumer(&[]);
        c.subscribe(["orders", "payments"]).unwrap();
        let e = dlq(c).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.property(), Some("errors.deadletterqueue.topic.name"));
        let mut c = consumer(&[]);
        c.subscribe(["payments"]).unwrap();
        assert!(dlq(c).build().is_ok());
    }

    #[tokio::test]
    async fn a_consumer_has_one_owner_of_its_storing() {
        let mut c = consumer(&[]);
        c.take_over_storing(|_| {}).unwrap();
        let e = c.take_over_storing(|_| {}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        let e = Processor::builder(c).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        assert!(Processor::builder(consumer(&[])).build().is_ok());
    }

    #[tokio::test]
    async fn a_dead_letter_producer_needs_a_topic_and_acks_all() {
        let producer = |acks: &str| {
            Producer::builder()
                .bootstrap_servers("127.0.0.1:9")
                .set("acks", acks)
                .build()
                .unwrap()
        };
        let e = Processor::builder(consumer(&[]))
            .dead_letter_producer(producer("all"))
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misuse);
        let e = Processor::builder(consumer(&[]))
            .errors_tolerance(ErrorTolerance::All)
            .dead_letter_topic("d")
            .dead_letter_producer(producer("1"))
            .build()
            .unwrap_err();
        assert_eq!(e.property(), Some("acks"));
    }

    /// Every refusal of a Processor over a share consumer names a property a Processor
    /// would otherwise take, and building with it set fails naming that property and why.
    #[tokio::test]
    async fn every_refusal_over_a_share_consumer_is_of_a_processor_property_and_is_told() {
        let refusals: Vec<_> = REFUSALS.iter().filter(|r| r.by == SHARE_POLICY).collect();
        assert_eq!(refusals.len(), 6);
        for r in refusals {
            assert!(
                Processor::properties().any(|p| p.is_named(r.name)),
                "{} is no property of a processor's",
                r.name
            );
            let share = crate::share::ShareConsumer::builder()
                .set("bootstrap.servers", "127.0.0.1:9")
                .set("group.id", "g")
                .set("share.acknowledgement.mode", "explicit")
                .build()
                .unwrap();
            let e = Processor::builder(share)
                .set(r.name, "x")
                .build()
                .unwrap_err();
            assert_eq!(e.property(), Some(r.name), "{e}");
            assert!(e.to_string().contains(r.why), "{e}");
            // Over a consumer the same property is read (and "x" refused as a value).
            let e = Processor::builder(consumer(&[]))
                .set(r.name, "x")
                .build()
                .unwrap_err();
            assert!(!e.to_string().contains(r.why), "{e}");
        }
    }

    #[tokio::test]
    async fn the_record_policies_are_the_processors_properties() {
        // A consumer refuses them, naming the builder that takes them.
        let e = Consumer::builder()
            .bootstrap_servers("127.0.0.1:9")
            .set("errors.tolerance", "all")
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.property(), Some("errors.tolerance"));
        assert!(e.to_string().contains("Processor::builder"), "{e}");
        // The processor reads them, and names the first it refuses and what it allows.
        let e = Processor::builder(consumer(&[]))
            .set("errors.retry.max.attempts", "0")
            .build()
            .unwrap_err();
        assert_eq!(e.property(), Some("errors.retry.max.attempts"));
        let e = Processor::builder(consumer(&[]))
            .set("errors.tolerence", "all")
            .build()
            .unwrap_err();
        assert!(
            e.to_string().ends_with("(did you mean errors.tolerance?)"),
            "{e}"
        );
        // A consumer's property is not the processor's.
        let e = Processor::builder(consumer(&[]))
            .set("session.timeout.ms", "10000")
            .build()
            .unwrap_err();
        assert_eq!(e.property(), Some("session.timeout.ms"));
        // Checked across properties: a dead-letter topic needs errors.tolerance=all.
        let e = Processor::builder(consumer(&[]))
            .dead_letter_topic("d")
            .build()
            .unwrap_err();
        assert_eq!(e.property(), Some("errors.deadletterqueue.topic.name"));
        let p = Processor::builder(consumer(&[]))
            .errors_tolerance(ErrorTolerance::All)
            .retry_max_attempts(3)
            .set("errors.retry.backoff.ms", "250")
            .build()
            .unwrap();
        assert_eq!(p.config().retry_max_attempts, 3);
        assert_eq!(p.config().retry_backoff, Duration::from_millis(250));
        assert_eq!(p.config().tolerance, ErrorTolerance::All);
    }
}
