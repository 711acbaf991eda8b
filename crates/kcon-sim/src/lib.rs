//! A deterministic simulation of a Kafka cluster for kcon's sans-IO machines, on a virtual
//! clock: a classic group coordinator ([`coordinator`]) and kcon-group's members run against it
//! with faults and model applications ([`group`]), a KIP-848 coordinator ([`consumer_group`]),
//! partition logs with committed offsets ([`cluster`]), a share group (KIP-932, [`share`]):
//! its coordinator, and the brokers' share partitions and share sessions over those logs; and
//! whole consumers against them (`consumer`: kcon's consumer machine on the driver the
//! `Consumer` runs, with kcon-group's member, kcon-offsets' commit machine and kcon-fetch's
//! fetch loop as its parts; `share_consumer`: the parts of kcon's share consumer driver,
//! kcon-group's member under `GroupProtocol::Share` and kcon-fetch's share fetch machine).
//!
//! It is a test tool, never published: kcon-group's tests run group members against it, its
//! own tests whole consumers, and the fuzz targets `group_sim` and `consumer` both, to replay
//! rebalances, faults and timeouts exactly, in milliseconds of real time; its test
//! `share_simulation` runs share consumers (their driver on `share_consumer`'s parts) against
//! the share group model. Apart from `consumer` and `share_consumer` it knows the machines'
//! messages (kcon-group's, kcon-offsets', kcon-fetch's) and nothing of kcon's consumers. Those
//! two are the default feature `consumer`, the one part that depends on kcon (on its hidden
//! feature `fuzzing`, which exports the consumers' machines and drivers); kcon-group's tests
//! take the crate without it, so they do not build kcon.

pub mod cluster;
#[cfg(feature = "consumer")]
pub mod consumer;
pub mod consumer_group;
pub mod coordinator;
pub mod group;
pub mod share;
#[cfg(feature = "consumer")]
pub mod share_consumer;
mod turns;

/// The Kafka error codes the simulated brokers answer, by name.
pub use kcon_core::error_codes::code;
