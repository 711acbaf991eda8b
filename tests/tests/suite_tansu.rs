//! The suites on Tansu, the second broker: what it answers differently from Apache Kafka, and the
//! listeners (TLS, SASL) it misbehaves on.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod admin_tansu;
mod consumer_fetch_tansu;
mod fetch_tansu;
mod offsets_tansu;
mod pool_sasl;
mod pool_tls;
mod produce_tansu;
mod transactions_tansu;
