//! Offsets for kcon: what a consumer has done (committed offsets), as a group member or from
//! outside any generation.
//!
//! - [`CommitMachine`]: a sans-IO state machine for OffsetCommit and OffsetFetch against the
//!   group coordinator: stored offsets, sync and async commits (a later async commit
//!   supersedes a queued earlier one), the auto-commit timer, coordinator discovery and
//!   retries. It does no IO and reads no clock.
//! - [`wire`]: its requests in kafka-protocol's types, per version: kcon-core's
//!   `group_offsets` conversions, which kcon-admin sends too, with the answers as the machine's.
//! - [`Offsets`]: a tokio task that drives a [`CommitMachine`] through a [`kcon_pool::Pool`].
//!
//! The one-shot ListOffsets and watermarks are kcon-pool's; the other stateless calls (several
//! groups' committed offsets, DescribeGroups, ListGroups, OffsetDelete, lag) are kcon-admin's;
//! the reset policy and the lag arithmetic are `kcon_core::offsets`'.

mod config;
#[cfg(feature = "driver")]
mod driver;
mod error;
mod machine;
mod messages;
pub mod property;
pub mod wire;

pub use config::OffsetsConfig;
#[cfg(feature = "driver")]
pub use driver::{CommitObserver, FinishedCommit, Offsets};
pub use error::{CommitError, CommittedError};
pub use machine::{CommitId, CommitKind, CommitMachine, CommittedId, OffsetsEvent};
pub use messages::{
    CommitRequest, CommittedRequest, OffsetAndMetadata, OffsetsRequest, OffsetsResponse, Outgoing,
    PartitionOffset,
};

// The shared vocabulary, for the modules here as `crate::X`.
use kcon_core::{Coordinator, RequestFailure, RequestId, Target, TopicPartition};
