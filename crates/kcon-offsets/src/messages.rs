//! What the commit machine asks to send and what it is fed back, independent of protocol
//! versions: [`wire`](crate::wire) turns them into and out of kafka-protocol's types.

use std::collections::BTreeMap;

use kcon_core::coordinator::FoundCoordinator;

pub use kcon_core::group_offsets::{
    CommitRequest, CommittedRequest, OffsetAndMetadata, PartitionOffset,
};

use crate::TopicPartition;

/// A request the commit machine wants sent.
pub type Outgoing = kcon_core::Outgoing<OffsetsRequest>;

/// The requests of the commit machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetsRequest {
    /// FindCoordinator for the group (key type 0).
    FindCoordinator {
        /// The group id.
        group_id: String,
    },
    /// OffsetCommit.
    OffsetCommit(CommitRequest),
    /// OffsetFetch.
    OffsetFetch(CommittedRequest),
}

/// An answer, in the terms the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetsResponse {
    /// FindCoordinator's answer for the group.
    FindCoordinator(FoundCoordinator),
    /// OffsetCommit's answer: the error code of each partition.
    OffsetCommit {
        /// Per partition.
        partitions: BTreeMap<TopicPartition, i16>,
    },
    /// OffsetFetch's answer for the group.
    OffsetFetch {
        /// The group's error code (v2+; 0 before).
        error_code: i16,
        /// Per partition.
        partitions: BTreeMap<TopicPartition, PartitionOffset>,
    },
}
