//! The suites on scripted brokers (`kcon-scripted`): answers no real broker here gives, with
//! every request the client sent recorded and asserted.
//!
//! Each suite is a module, its file beside this one; `tests/Cargo.toml` says why suites share a
//! binary.

mod admin_scripted;
mod admin_share_scripted;
#[path = "consumer_fetch_scripted/main.rs"]
mod consumer_fetch_scripted;
mod consumer_truncation_scripted;
mod group_sync_scripted;
mod produce_scripted;
mod share_scripted;
