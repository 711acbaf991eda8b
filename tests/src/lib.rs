//! Support code for kcon's integration tests: real brokers started per test, and the peer
//! clients that share topics and groups with kcon.
//!
//! Brokers come from `scripts/brokers install` (the README's test command runs it first). A
//! broker that cannot be found or started fails the test with the reason: nothing here skips.

pub mod aws;
pub mod blocking;
pub mod brokers;
pub mod cluster_faults;
pub mod consumer;
pub mod fetch;
pub mod forwarder;
mod frames;
pub mod group;
pub mod group_peers;
pub mod hangup;
pub mod jaeger;
pub mod kafka;
pub mod kerberos;
pub mod kip848;
pub mod login;
pub mod logs;
pub mod member;
pub mod mock;
pub mod offsets;
pub mod oidc;
pub mod peers;
pub mod policy;
pub mod pool;
pub mod produce;
pub mod prometheus;
pub mod proxy;
pub mod sasl;
pub mod schema_registry;
pub mod share;
pub mod share_groups;
pub mod telemetry;
pub mod tls;
pub mod transactions;
pub mod truncation;
