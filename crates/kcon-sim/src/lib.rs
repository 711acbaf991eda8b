//! A deterministic simulation of a Kafka cluster for kcon's sans-IO machines, on a virtual
//! clock: a classic group coordinator ([`coordinator`]) and kcon-group's members run against it
//! with faults and model applications ([`group`]), a KIP-848 coordinator ([`consumer_group`]),
//! partition logs with committed offsets ([`cluster`]), and a share group (KIP-932, [`share`]):
//! its coordinator, and the brokers' share partitions and share sessions over those logs.
//!
//! It is a test tool: kcon-group's tests run group members against it, and kcon's tests whole
//! consumers (kcon's own simulation, which drives each consumer with the driver the `Consumer`
//! runs on), to replay rebalances, faults and timeouts exactly, in milliseconds of real time.
//! It knows the machines' messages (kcon-group's, kcon-offsets', kcon-fetch's) and nothing of
//! the `Consumer`: it does not depend on kcon, so the group member's tests do not build it.

pub mod cluster;
pub mod consumer_group;
pub mod coordinator;
pub mod group;
pub mod share;

/// The Kafka error codes the simulated brokers answer, by name.
pub use kcon_core::error_codes::code;
