//! The suites on the shared three-node Apache Kafka 4.4 cluster (`Kafka::cluster()`): nodes killed,
//! leaders and coordinators moved, unclean elections. `.config/nextest.toml` runs this binary's
//! tests one at a time, so that no other test meets a node that is down.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod consumer_broker_kill_cluster;
mod consumer_controller_kill_cluster;
mod consumer_coordinator_moves_cluster;
mod consumer_leader_moves_cluster;
mod consumer_truncation_cluster;
mod kafka_cluster;
mod logs_cluster;
mod pool_cluster;
mod rebootstrap_cluster;
mod share_leader_moves_cluster;
