//! Fetching for kcon.
//!
//! - [`FetchSession`]: the fetch session with one broker (KIP-227), a sans-IO state machine:
//!   it decides whether the next Fetch is full or incremental, which partitions it carries and
//!   which it forgets, and how the session recovers from errors. [`fetch_request`] turns its
//!   version-free [`SessionRequest`] into kafka-protocol's `FetchRequest` for Fetch v4–v17.
//! - [`transactions`]: read_committed filtering (KIP-98) over one partition's decoded batches,
//!   as a pure function of the batches and the response's aborted-transactions list.
//! - [`position`]: one partition's fetch state (position, leader, pause, read replica) and its
//!   transitions on a Fetch answer, per error code, as pure functions.
//! - [`validation`]: truncation detection after a leader change (KIP-320): OffsetForLeaderEpoch
//!   requests per leader and what their answers mean for the position.
//! - [`budget`]: the prefetch byte budget shared by all partitions, and the fetch order.
//!
//! - [`FetchMachine`]: the fetch loop that drives these, sans-IO; [`FetchHandle`]: the handle
//!   of its tokio task, sending through a [`kcon_pool::Pool`]; [`handout`]: the application's
//!   side of it, which the handle's owner keeps (the consumer, in its machine).
//! - [`share`]: a share group's fetching (KIP-932): share sessions, acquired records with
//!   their delivery counts, acknowledgements; [`share::ShareFetchMachine`], sans-IO.

pub mod budget;
mod error;
pub mod position;
mod session;
pub mod transactions;
pub mod validation;

pub use error::SessionError;
pub use session::wire::{FetchParams, fetch_request};
pub use session::{
    FINAL_EPOCH, FetchSession, Forgotten, INITIAL_EPOCH, PartitionFetch, RequestKind,
    SessionOutcome, SessionRequest, SessionReset,
};

mod config;
#[cfg(feature = "driver")]
mod driver;
pub mod handout;
mod latency;
mod machine;
mod messages;
pub mod property;
mod records;
pub mod share;

pub use config::FetchConfig;
#[cfg(feature = "driver")]
pub use driver::FetchHandle;
/// The record handed to the application: kcon-core's, made here from Fetch answers.
pub use kcon_core::Record;
pub use latency::{FetchLatency, LATENCY_BUCKETS, LatencyHistogram};
pub use machine::{FetchMachine, is_session_close};
pub use messages::{
    BrokerInfo, FetchAnswer, FetchEvent, FetchRequest, MetadataView, Outgoing, PartitionInfo,
    StartPosition,
};
pub use records::{
    BorrowedHeaders, BorrowedRecord, BorrowedRecords, CorruptRecords, FetchedRecords,
};

// The shared vocabulary, for the modules here as `crate::X`.
use kcon_core::IsolationLevel;
