//! The suites that need no broker: the public futures are `Send`, MSK IAM tokens against AWS's
//! signer, kcon's KIP-714 metrics payload read by OpenTelemetry's protobuf types, Schema
//! Registry decoding of records Confluent's serializers wrote, and every suite in a binary.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod futures_are_send;
mod msk_iam_signer;
mod otlp_metrics;
mod schema_registry;
mod suites;
