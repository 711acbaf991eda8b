//! A small Kafka producer for kcon: records to batches to Produce requests, with an awaited
//! delivery result per record.
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
//! producer.close().await; // sends what is queued and waits for the answers
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

mod accumulator;
mod config;
mod error;
mod machine;
mod partitioner;
mod producer;
mod record;
mod retry;
mod sender;

pub use config::{Acks, PRODUCER, PROPERTIES, ProducerConfig, ProducerSetting};
pub use error::{ErrorKind, Outcome, ProduceError, error_name};
/// Whose doing a [`ProduceError`] was ([`ProduceError::cause`]): kcon-core's, the same value
/// the consumer's errors and the connection pool's give.
pub use kcon_core::Cause;
pub use partitioner::{Partitioner, PartitionerKind, murmur2, partition_for_key};
pub use producer::{Delivery, Producer, ProducerBuilder, ProducerStats};
pub use record::{Delivered, ProducerRecord};
