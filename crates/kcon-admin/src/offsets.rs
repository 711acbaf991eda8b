//! ListOffsets per leader and the watermarks, kcon-pool's lookups ([`kcon_pool::list_offsets`],
//! [`kcon_pool::watermarks`]), answering with kcon-admin's [`Error`].

use std::collections::{BTreeMap, BTreeSet};

use kcon_core::list_offsets::ListedOffset;
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition, Watermarks};
use kcon_pool::{ListOffsetsError, Pool};

use crate::error::Error;

/// Each partition's answer or why it has none.
pub(crate) type EachListed = BTreeMap<TopicPartition, Result<ListedOffset, Error>>;

/// ListOffsets for `partitions`, each sent to its leader. Partitions whose answer is a
/// stale-metadata error (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
/// ...) are asked again after a metadata refresh, up to a bound; what is still an error then is
/// returned with its error code, like the Java client's `ListOffsetsResult` per partition. A
/// partition without a leader answers LEADER_NOT_AVAILABLE, one missing from the metadata
/// UNKNOWN_TOPIC_OR_PARTITION. A leader that cannot be reached fails the call.
///
/// This is [`kcon_pool::list_offsets`] with its error as kcon-admin's.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn list_offsets(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, ListedOffset>, Error> {
    Ok(kcon_pool::list_offsets(pool, partitions, isolation).await?)
}

/// [`list_offsets`] with each partition's own outcome ([`kcon_pool::list_offsets_each`]).
pub(crate) async fn list_offsets_each(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<EachListed, Error> {
    let each = kcon_pool::list_offsets_each(pool, partitions, isolation).await?;
    Ok(each
        .into_iter()
        .map(|(tp, listed)| (tp, listed.map_err(Error::from)))
        .collect())
}

/// A partition the metadata does not have: its topic is unknown, or has fewer partitions.
pub(crate) fn unknown_partition(tp: &TopicPartition) -> Error {
    Error::from(ListOffsetsError::unknown_partition(tp))
}

/// The watermarks of `partitions`: log start (earliest), high watermark (latest under
/// read_uncommitted) and last stable offset (latest under read_committed). Partitions with an
/// error in any of the three lookups are left out.
///
/// This is [`kcon_pool::watermarks`] with its error as kcon-admin's.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn watermarks(
    pool: &Pool,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, Watermarks>, Error> {
    Ok(kcon_pool::watermarks(pool, partitions).await?)
}
