//! kcon's Kafka producer: records to batches to Produce requests, with an awaited delivery
//! result per record, idempotence and transactions.
//!
//! ```no_run
//! use kcon_produce::{Producer, ProducerRecord};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .set("acks", "all")
//!     .set("enable.idempotence", "true")
//!     .set("linger.ms", "5")
//!     .build()?;
//! let record = ProducerRecord::new("invoices", r#"{"id":7,"paid":true}"#)
//!     .with_key("customer-7")
//!     .with_header("source", Some("billing"));
//! // `send` waits for room in `buffer.memory`; the delivery resolves once the broker has it.
//! let delivery = producer.send(record).await?;
//! let delivered = delivery.await?;
//! println!("{}-{}@{:?}", delivered.topic, delivered.partition, delivered.offset);
//! producer.close().await?; // sends what is queued and waits for the answers
//! # Ok(())
//! # }
//! ```
//!
//! What it holds:
//! - [`Producer`]: the handle. [`Producer::send`] queues a record (waiting for room in
//!   `buffer.memory`) and returns a [`Delivery`] that resolves to the [`Delivered`] topic,
//!   partition, offset and timestamp once the broker acknowledged it with the configured
//!   `acks`, or to a [`ProduceError`]; [`Producer::flush`] and [`Producer::close`].
//! - [`ProducerConfig`]: Kafka property names (`acks`, `compression.type`, `linger.ms`,
//!   `batch.size`, `retries`, `delivery.timeout.ms`, `enable.idempotence`, ... and every
//!   connection property of kcon-pool's `PoolConfig`).
//! - [`Partitioner`]: keyed records where the Java client puts them (murmur2), null keys in
//!   turn.
//!
//! Its driving rules:
//! - One task owns every batch, the metadata it partitions by, the producer id and the
//!   requests in flight, held by a sans-IO machine that decides and a thin shell that carries
//!   its requests out over the pool; handles only talk to it over a channel.
//! - Records of a partition are appended in the order they arrive, into batches of at most
//!   `batch.num.messages` records and `batch.size` bytes. A batch is sent when full, when a
//!   later one is behind it, after `linger.ms`, or on flush and close.
//! - A partition has at most one batch in flight, so a retry can never reorder its records.
//!   Batches of all the partitions a broker leads share one Produce request (up to
//!   `max.request.size`); each broker has up to `max.in.flight.requests.per.connection`
//!   requests in flight.
//! - Retriable broker errors and lost connections are retried after KIP-580's backoff
//!   (`retry.backoff.ms` doubling to `retry.backoff.max.ms`, ±20 % jitter) while `retries`
//!   and `delivery.timeout.ms` allow; errors that mean a stale leader refresh the metadata
//!   first. Without `enable.idempotence` a retried batch may be written twice (its first
//!   answer may have been lost after the write). With it, InitProducerId gives the producer an
//!   id, every batch carries the id, epoch and its partition's sequence numbers (KIP-98), and
//!   the broker drops a retried batch it already has.
//! - `acks=0` is not offered: kcon's connections expect an answer to every request.
//! - With a `transactional.id`, records go out in transactions (KIP-98):
//!   [`Producer::init_transactions`] once, then per transaction
//!   [`Producer::begin_transaction`], the sends, [`Producer::send_offsets_to_transaction`]
//!   with the consumer's group metadata (KIP-447), and [`Producer::commit_transaction`] or
//!   [`Producer::abort_transaction`]. An error's [`Outcome`] says what next: `Abort` (the
//!   transaction failed, the producer goes on), `Close` (fenced by a newer producer with the
//!   same id), or `Retry`.
//!
//! ```no_run
//! use std::time::Duration;
//! use kcon_produce::{ConsumerGroupMetadata, Producer, ProducerRecord, TopicPartition};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kcon_produce::ProduceError> {
//! let producer = Producer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .set("transactional.id", "orders-enricher-0")
//!     .build()?;
//! let timeout = Duration::from_secs(30);
//! producer.init_transactions(timeout).await?;
//! producer.begin_transaction(timeout).await?;
//! producer.send(ProducerRecord::new("enriched", "v")).await?;
//! // From the consumer: `consumer.group_metadata()?`.
//! let group = ConsumerGroupMetadata::new("enricher");
//! let consumed = [(TopicPartition::new("orders", 0), 42)];
//! producer.send_offsets_to_transaction(consumed, &group, timeout).await?;
//! producer.commit_transaction(timeout).await?;
//! # Ok(())
//! # }
//! ```

mod accumulator;
mod buffers;
mod config;
mod deliveries;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hooks;
mod inbox;
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
mod machine;
mod packed;
mod partitioner;
mod producer;
mod record;
mod retry;
mod sender;

pub use config::{Acks, PRODUCER, PROPERTIES, ProducerConfig, ProducerSetting};
pub use deliveries::Deliveries;
pub use error::{Cause, ErrorKind, KconError, Outcome, ProduceError, error_name};
pub use hooks::ProducerHooks;
/// What a consumer hands [`Producer::send_offsets_to_transaction`]: its group, generation and
/// member id.
pub use kcon_core::ConsumerGroupMetadata;
/// A topic's interned name, as records carry it.
pub use kcon_core::Topic;
/// A topic's partition, as [`Producer::send_offsets_to_transaction`] takes them.
pub use kcon_core::TopicPartition;
/// OAUTHBEARER tokens ([`ProducerBuilder::oauthbearer_token_provider`]), as the connection pool
/// asks for them.
pub use kcon_pool::{OAuthBearerToken, OAuthBearerTokenProvider, TokenFuture, TokenProvider};
pub use partitioner::{Partitioner, PartitionerKind, murmur2, partition_for_key};
pub use producer::{Delivery, Producer, ProducerBuilder, ProducerMetrics, ProducerMetricsHandle};
pub use record::{Delivered, IntoTopic, ProducerRecord};
