//! The Kafka wire codec of kcon: pure functions over [`bytes::Bytes`], no IO, no clock.
//!
//! - [`frame`]: size-prefixed frames, read incrementally and bounded before anything is allocated.
//! - [`header`]: request headers v0–v2 and response headers v0–v1.
//! - [`message`]: typed `encode_request` / `decode_response` over `kafka-protocol`'s message types,
//!   with every response checked by kcon's guard before it is decoded.
//! - [`versions`]: the API versions kcon speaks and the negotiation with a broker's ApiVersions answer.
//! - [`records`]: kcon's own record-batch decoder (magic 0, 1, 2) and encoder (magic 2).
//! - [`consumer_protocol`]: the embedded consumer protocol (subscriptions and assignments that
//!   group members exchange through JoinGroup and SyncGroup), and [`TopicPartition`].
//! - [`compression`]: gzip, snappy, lz4 and zstd, every decompression bounded.
//! - [`schema_id`]: Confluent's Schema Registry framings of a key or value (the schema id or GUID
//!   in front of the payload or in a header, Protobuf's message indexes).
//! - [`otlp`]: OpenTelemetry's metrics protobuf, written: what a client pushes to a broker
//!   (KIP-714).
//! - [`top_level`]: the top-level error code and the throttle time of the answers of every API
//!   kcon speaks, in one table.
//!
//! Hostile input: for any byte string, no decoder here panics, loops without consuming input, or
//! allocates more than a small multiple of the input length plus the decompression cap. The fuzz
//! targets in the workspace's `fuzz/` folder check exactly that.

pub mod compression;
pub mod consumer_protocol;
pub mod error;
pub mod frame;
mod guard;
pub mod header;
pub mod message;
pub mod otlp;
pub mod parts;
pub mod records;
pub mod schema_id;
pub mod share_offsets_v1;
pub mod share_v2;
pub mod top_level;
pub mod versions;
mod wire;

#[cfg(any(feature = "fuzzing", test))]
pub mod fuzzing;

pub use consumer_protocol::TopicPartition;
pub use error::{Error, Result};
pub use kafka_protocol;
