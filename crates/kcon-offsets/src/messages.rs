//! What the commit machine asks to send and what it is fed back, independent of protocol
//! versions: [`wire`](crate::wire) turns them into and out of kafka-protocol's types.

use std::collections::{BTreeMap, BTreeSet};

use kcon_core::coordinator::FoundCoordinator;

use crate::TopicPartition;

/// An offset to commit, or one that was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to consume (a processed record's offset + 1).
    pub offset: i64,
    /// The leader epoch of the last consumed record (OffsetCommit v6+, KIP-320), so that a
    /// consumer starting from this offset can detect log truncation.
    pub leader_epoch: Option<i32>,
    /// Application metadata kept with the offset.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// `offset` with no leader epoch and no metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }
    }
}

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

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The group id.
    pub group_id: String,
    /// The member's generation; -1 for a commit from outside the group (an inactive group).
    pub generation_id: i32,
    /// The member id; empty from outside the group.
    pub member_id: String,
    /// `group.instance.id` (v7+).
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

/// An OffsetFetch request for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRequest {
    /// The group id.
    pub group_id: String,
    /// The partitions; `None` for every partition the group has an offset for (v2+).
    pub partitions: Option<BTreeSet<TopicPartition>>,
    /// Ask the coordinator to answer UNSTABLE_OFFSET_COMMIT for partitions with pending
    /// transactional offsets (v7+, KIP-447); set under read_committed.
    pub require_stable: bool,
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

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The error code.
    pub error_code: i16,
    /// The committed offset; `None` when the group has none (offset -1 on the wire).
    pub committed: Option<OffsetAndMetadata>,
}
