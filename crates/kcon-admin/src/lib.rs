//! Cluster and consumer-group administration for kcon: one-shot calls over a
//! [`kcon_pool::Pool`] that hold no state between calls and run on the caller's task.
//!
//! - Offsets of the log: [`list_offsets`] (ListOffsets per leader, with stale-metadata
//!   retries) and [`watermarks`], kcon-pool's lookups answering with this crate's [`Error`],
//!   and the [`probe()`] (one sessionless Fetch per leader: the log's end and the timestamp of
//!   the record at an offset).
//! - Groups: [`find_coordinator`], [`describe_group`], [`list_groups`], [`delete_offsets`]
//!   (OffsetDelete, KIP-496), [`committed_offsets_of_groups`] (OffsetFetch for several groups
//!   per coordinator, KIP-709).
//! - A group whichever protocol it runs: [`describe`] joins ConsumerGroupDescribe (KIP-848),
//!   DescribeGroups and, for a group neither knows, ShareGroupDescribe (KIP-932) into one
//!   [`DescribedGroup`], each member with the partitions it owns; [`describe_group_lag`] adds
//!   the lag of every partition with its owner, or for a share group each share-partition's
//!   start offset and lag.
//! - Share groups (KIP-932): [`describe_share_group`] (ShareGroupDescribe),
//!   [`share_group_start_offsets`] (DescribeShareGroupOffsets), [`share_group_lag`].
//! - Lag ([`lag`]): [`group_lag`] / [`groups_lag`] per partition, with an outcome per group
//!   and per partition; [`log_ranges`]; the pure [`lag::lag`] and [`lag::log_end`], kcon-core's
//!   rules, which the consumer's own lag follows too.
//! - Status over time: [`GroupWatch`] keeps each partition's window of commits across
//!   measurements and judges it by Burrow's rules ([`status`]); [`GroupsWatch`] does it for
//!   many groups.
//! - Moving a group's offsets from outside it: [`plan_reset`] (to the start or end of the log,
//!   an offset, a time, a duration ago, or shifted; the group must be inactive) and
//!   [`execute_reset`]; [`commit_offsets`] (OffsetCommit with generation -1).
//! - Topics: [`create_topic`], [`list_topics`].
//! - A group's configs (KIP-848's GROUP config resource, Apache Kafka 4.0+), as
//!   `kafka-configs.sh --entity-type groups` has them: [`describe_group_configs`]
//!   (DescribeConfigs), [`alter_group_configs`] (IncrementalAlterConfigs: set
//!   `share.auto.offset.reset=earliest` for a share group to read what was written before it
//!   started, delete to go back to the default). Sent to any broker; retried like the rest
//!   until `default.api.timeout.ms`.
//!
//! Every call fails with one [`Error`], which says who caused it and whether a retry can help.
//! A group's coordinator that is not ready (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS: a broker just started) or cannot be reached is asked again,
//! found anew each time, after a growing, jittered backoff (`retry.backoff.ms` to
//! `retry.backoff.max.ms`) until the pool's `default.api.timeout.ms` (60 s by default) has
//! passed since the call began; then the call fails with the last error.
//! The conversions to and from kafka-protocol's types are in [`wire`] (OffsetCommit's and
//! OffsetFetch's are `kcon_core::group_offsets`', shared with the commit machine).

mod described;
mod error;
mod group_configs;
mod groups;
pub mod lag;
mod offsets;
pub mod probe;
mod reset;
mod retry;
mod share;
pub mod status;
mod topics;
mod watch;
pub mod wire;

pub use described::{
    CONSUMER_PROTOCOL_TYPE, DescribedGroup, DescribedGroupLag, DescribedMember, describe,
    describe_group_lag,
};
pub use error::{Error, error_name};
pub use group_configs::{
    ConfigSource, ConfigSynonym, GroupConfigChange, GroupConfigEntry, alter_group_configs,
    describe_group_configs,
};
pub use groups::{
    ConsumerGroupDescription, ConsumerGroupMember, GroupDescription, GroupMemberDescription,
    GroupOffsets, ListedGroup, committed_offsets_of_groups, delete_offsets,
    describe_consumer_group, describe_group, find_coordinator, list_groups,
};
/// The error codes and API keys of [`Error::Broker`], by kafka-protocol's names.
pub use kcon_codec::kafka_protocol::{ResponseError, messages::ApiKey};
/// The error model every client's errors share: whose doing, what next, and the trait that
/// takes any of them.
pub use kcon_core::{KconError, Outcome};
/// The connection pool every call goes through, what configures it, its metadata and its
/// errors ([`Error::Connection`]).
pub use kcon_pool::{
    AutoCreate, Cause, Error as PoolError, Metadata, Pool, PoolConfig, SaslMechanism, TopicScope,
};
pub use lag::{
    GroupLag, Lag, LagOptions, LogRange, PartitionLag, group_lag, groups_lag, log_ranges,
};
pub use offsets::{list_offsets, watermarks};
pub use probe::{ProbedLog, probe};
pub use reset::{PlannedReset, ResetPlan, ResetTo, commit_offsets, execute_reset, plan_reset};
pub use share::{
    SHARE_PROTOCOL_TYPE, ShareGroupDescription, ShareGroupLag, ShareGroupMember, ShareGroupStarts,
    SharePartitionLag, SharePartitionStart, describe_share_group, share_group_lag,
    share_group_start_offsets, share_lag,
};
pub use topics::{Created, NewTopic, TopicListing, create_topic, list_topics};
pub use watch::{GroupWatch, GroupsWatch, Judged};
