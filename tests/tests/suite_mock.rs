//! The suites on librdkafka's mock cluster: the errors and faults a real broker cannot be made to
//! return on demand, and the mock harness itself.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod consumer_fetch_mock;
mod consumer_mock;
mod group_mock;
mod kip848_mock;
mod logs_mock;
mod mock_harness;
mod offsets_mock;
mod pool_mock;
mod rebootstrap_mock;
mod share_mock;
mod transactions_mock;
