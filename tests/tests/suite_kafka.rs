//! The producer, transactions, the admin calls, the connection pool and its security (TLS, SASL,
//! Kerberos, OIDC), Schema Registry decoding and OpenTelemetry on the shared single-node Apache
//! Kafka brokers, and the brokers' own harness.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod admin_delete_offsets_kafka;
mod admin_group_config_kafka;
mod admin_kafka;
mod auto_create_kafka;
mod codec_kafka;
mod kafka_harness;
mod kerberos_kafka;
mod kerberos_renewal_kafka;
mod oidc_kafka;
mod oidc_outage_kafka;
mod oidc_renewal_kafka;
mod opentelemetry_jaeger;
mod opentelemetry_kafka;
mod pool_kafka;
mod pool_kafka_security;
mod produce_kafka;
mod quota_kafka;
mod schema_registry_kafka;
mod telemetry_kafka;
mod transactions_kafka;
