//! Offsets for kcon: what a consumer has done (committed offsets) and where it reads next
//! (positions, resets, lag).
//!
//! - [`CommitMachine`]: a sans-IO state machine for OffsetCommit and OffsetFetch against the
//!   group coordinator: stored offsets, sync and async commits (a later async commit
//!   supersedes a queued earlier one), the auto-commit timer, coordinator discovery and
//!   retries. It does no IO and reads no clock.
//! - [`positions`]: pure functions: the `auto.offset.reset` policy (with KIP-1106's
//!   `by_duration`), watermarks and lag.
//! - [`wire`]: the requests in kafka-protocol's types, per version.
//! - [`Offsets`]: a tokio task that drives a [`CommitMachine`] through a [`kcon_pool::Pool`];
//!   [`admin`]: one-shot requests (ListOffsets, several groups' committed offsets,
//!   DescribeGroups, ListGroups, OffsetDelete).

pub mod admin;
mod config;
mod driver;
mod error;
mod machine;
mod messages;
pub mod wire;

pub use config::OffsetsConfig;
pub use driver::Offsets;
pub use error::{CommitError, FetchError};
pub use machine::{CommitId, CommitKind, CommitMachine, FetchId, OffsetsEvent};
pub use messages::{
    CommitRequest, FetchRequest, OffsetAndMetadata, OffsetsRequest, OffsetsResponse, Outgoing,
    PartitionOffset,
};

// The shared vocabulary, for the modules here as `crate::X`.
use kcon_core::{Coordinator, RequestFailure, RequestId, Target, TopicPartition};
