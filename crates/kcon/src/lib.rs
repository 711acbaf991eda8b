//! kcon: a pure-Rust Apache Kafka consumer.
//!
//! A [`Consumer`] joins a consumer group (eager or cooperative rebalancing, static
//! membership), or reads partitions the application assigns; it fetches with fetch sessions
//! (KIP-227), detects log truncation (KIP-320), reads transactions `read_committed`, and
//! commits offsets at-least-once by default. It speaks TLS and SASL (PLAIN, SCRAM,
//! OAUTHBEARER) with nothing but Rust.
//!
//! Configuration takes the Java client's and librdkafka's property names:
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), kcon::Error> {
//! let mut consumer = kcon::Consumer::builder()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "billing")
//!     .set("auto.offset.reset", "earliest")
//!     .set("partition.assignment.strategy", "cooperative-sticky")
//!     .build()?;
//! consumer.subscribe(["invoices"])?;
//! loop {
//!     let batch = consumer.recv_batch().await?;
//!     for record in &batch {
//!         // ... process ...
//! #       let _ = record;
//!     }
//!     consumer.commit().await?; // at-least-once: commit after processing
//! #   break;
//! }
//! consumer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The crate `kcon-prometheus` registers the consumer's and a processor's metrics into a
//! `prometheus_client` registry, read from their [`MetricsHandle`] and [`PolicyMetricsHandle`].
//!
//! Records are decoded by [`deserialize`]'s deserializers, and a [`Processor`] applies
//! record policies (retries, a dead-letter topic, a circuit breaker) to those that fail. The
//! crate `kcon-schema-registry` adds deserializers of keys and values written by Confluent's
//! Avro, Protobuf and JSON Schema serializers, their schemas fetched from a Schema Registry.
//!
//! The parts underneath are crates of their own: `kcon-codec` (the wire format),
//! `kcon-pool` (connections, TLS, SASL), `kcon-group` (membership and assignors),
//! `kcon-offsets` (commits and offset lookups) and `kcon-fetch` (fetch sessions).

mod commit;
mod config;
pub mod consumer;
pub mod deserialize;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hooks;
mod listener;
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
mod metrics;
mod partitions;
pub mod policy;
mod record;
pub mod share;
mod stream;

pub use commit::CommitHandle;
pub use config::ConsumerBuilder;
pub use consumer::Consumer;
pub use error::{Cause, Error, ErrorKind, KconError, Outcome};
pub use hooks::{CommitDone, CommitSource, ConsumerHooks, FetchedBatch, Truncation};
pub use listener::{ListenerFuture, RebalanceContext, RebalanceListener};
pub use metrics::{Metrics, MetricsHandle, PartitionLag};
pub use partitions::{PartitionStream, PartitionStreams};
pub use policy::{
    ErrorTolerance, Failure, FailureExt, FailureInfo, PartitionCounts, PolicyConfig, PolicyHooks,
    PolicyMetrics, PolicyMetricsHandle, ProcessingOrder, Processor, ProcessorBuilder, RecordSource,
    Stage,
};
pub use stream::RecordStream;

pub use record::{BorrowedBatch, BorrowedHeaders, BorrowedRecord, BorrowedRecords, Record};

pub use kcon_codec::kafka_protocol::messages::ApiKey;
pub use kcon_codec::records::TimestampType;
/// ISO-8601 durations as `auto.offset.reset=by_duration:` takes them (KIP-1106, Java's
/// `Duration.parse`).
pub use kcon_core::offsets::parse_iso8601_duration;
/// Properties by name: kcon-core's mechanism (`registry`, `ConfigError`, the parsers) and the
/// tables of the consumer's parts (`pool`, `group`, `offsets`, `fetch`) and of kcon itself
/// (`PROPERTIES`, for the parts `CONSUMER`, `POLICY` and `SHARE`): names, defaults, what is
/// allowed and which part each configures (what a tool checks `-X name=value` against); and
/// `REFUSALS`, the consumer's properties a share consumer refuses (`SHARE`) and the record
/// policies a Processor over one refuses (`SHARE_POLICY`), with why.
/// [`ConsumerBuilder::properties`] concatenates the consumer's;
/// [`Processor::properties`](crate::Processor::properties) lists the record policies'.
pub mod property {
    pub use crate::config::{
        CONSUMER, ConsumerSetting, POLICY, PROPERTIES, REFUSALS, SHARE, SHARE_POLICY,
    };
    pub use kcon_core::property::*;
    pub use kcon_fetch::property as fetch;
    pub use kcon_group::property as group;
    pub use kcon_offsets::property as offsets;
    pub use kcon_pool::property as pool;
}
/// An offset to commit or committed, with the leader epoch and the metadata kept beside it
/// (`Consumer::commit_offsets_with_metadata`, `Consumer::committed_with_metadata`).
pub use kcon_core::group_offsets::OffsetAndMetadata;
/// The id the cluster gives a client for the metrics it pushes (KIP-714):
/// [`Consumer::client_instance_id`].
pub use kcon_core::telemetry::ClientInstanceId;
pub use kcon_core::{
    ConsumerGroupMetadata, IsolationLevel, PersistentFailure, ResetPolicy, Topic, TopicPartition,
    Watermarks,
};
pub use kcon_fetch::{LATENCY_BUCKETS, LatencyHistogram};
pub use kcon_pool::{
    OAuthBearerToken, OAuthBearerTokenProvider, RebootstrapCause, Rebootstraps, TokenFuture,
    TokenProvider,
};
