//! The consumer, its groups (classic, KIP-848, share), the Processor and exactly-once on the
//! shared single-node Apache Kafka brokers (4.4, and 3.9 where a suite says so), some beside the
//! Java client, librdkafka and kafka-python as peers.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod consumer_fetch_kafka;
mod consumer_fetch_session_kafka;
mod consumer_handles;
mod consumer_hangup;
mod consumer_hangup_commit;
mod consumer_kafka;
mod consumer_lost_kafka;
mod consumer_prometheus;
mod exactly_once_kafka;
mod fetch_kafka;
mod group_kafka;
mod group_mixed;
mod group_peers;
mod kip848_kafka;
mod kip848_kafka39;
mod logs_kafka;
mod offsets_kafka;
mod policy_kafka;
mod processor_concurrency_kafka;
mod processor_exactly_once_kafka;
mod share_kafka;
mod share_kafka39;
mod share_processor_kafka;
