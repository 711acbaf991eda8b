//! Cluster and consumer-group administration for kcon: one-shot calls over a
//! [`kcon_pool::Pool`] that hold no state between calls and run on the caller's task.
//!
//! - Offsets of the log: [`list_offsets`] (ListOffsets per leader, with stale-metadata
//!   retries), [`watermarks`], and the [`probe()`] (one sessionless Fetch per leader: the log's
//!   end and the timestamp of the record at an offset).
//! - Groups: [`find_coordinator`], [`describe_group`], [`list_groups`], [`delete_offsets`]
//!   (OffsetDelete, KIP-496), [`committed_offsets_of_groups`] (OffsetFetch for several groups
//!   per coordinator, KIP-709).
//! - Lag, computed in one place ([`lag`]): [`group_lag`] / [`groups_lag`] per partition, with
//!   an outcome per group and per partition; the pure [`lag::lag`] and [`lag::log_end`] that
//!   the consumer's own lag uses; [`log_ranges`].
//! - Topics: [`create_topic`], [`list_topics`].
//!
//! Every call fails with one [`Error`], which says who caused it and whether a retry can help.
//! The conversions to and from kafka-protocol's types are in [`wire`] (OffsetFetch's are
//! `kcon_offsets::wire`'s, shared with the commit machine).

mod error;
mod groups;
pub mod lag;
mod offsets;
pub mod probe;
pub mod status;
mod topics;
pub mod wire;

pub use error::{Error, error_name};
pub use groups::{
    ConsumerGroupDescription, ConsumerGroupMember, GroupDescription, GroupMemberDescription,
    GroupOffsets, ListedGroup, committed_offsets_of_groups, delete_offsets,
    describe_consumer_group, describe_group, find_coordinator, list_groups,
};
pub use lag::{
    GroupLag, Lag, LagOptions, LogRange, PartitionLag, group_lag, groups_lag, log_ranges,
};
pub use offsets::{list_offsets, watermarks};
pub use probe::{ProbedLog, probe};
pub use topics::{Created, NewTopic, TopicListing, create_topic, list_topics};
