//! A deterministic simulation of a Kafka cluster for kcon's sans-IO machines, on a virtual
//! clock: a classic group coordinator ([`coordinator`]) and kcon-group's members run against it
//! with faults and model applications ([`group`]), a KIP-848 coordinator ([`consumer_group`]),
//! partition logs and committed offsets ([`cluster`]), and whole consumers wired from their
//! four machines ([`world`]), under either group protocol.
//!
//! It is a test tool: kcon's tests use it to replay rebalances, faults and timeouts exactly,
//! in milliseconds of real time.

pub mod cluster;
pub mod consumer_group;
pub mod coordinator;
pub mod group;
pub mod world;

/// The Kafka error codes the simulated brokers answer, by name.
pub use kcon_core::error_codes::code;
