//! ListOffsets per leader, and the watermarks built on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::error_codes::is_stale_metadata_error;
use kcon_core::list_offsets::{ListedOffset, list_offsets_request, list_offsets_response};
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition, Watermarks};
use kcon_pool::{BrokerTarget, Pool, TopicScope};

use crate::Error;

/// How many times a ListOffsets round is retried after stale-metadata errors (a moved leader):
/// each retry refreshes the metadata first.
const LIST_OFFSETS_ATTEMPTS: u32 = 5;

/// How long to wait between those retries (the metadata refresh itself is coalesced by the
/// pool).
const LIST_OFFSETS_BACKOFF: Duration = Duration::from_millis(100);

/// Each partition's answer or why it has none.
pub(crate) type EachListed = BTreeMap<TopicPartition, Result<ListedOffset, Error>>;

/// ListOffsets for `partitions`, each sent to its leader. Partitions whose answer is a
/// stale-metadata error (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
/// ...) are asked again after a metadata refresh, up to a bound; what is still an error then is
/// returned with its error code, like the Java client's `ListOffsetsResult` per partition. A
/// partition without a leader answers LEADER_NOT_AVAILABLE, one missing from the metadata
/// UNKNOWN_TOPIC_OR_PARTITION. A leader that cannot be reached fails the call.
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
    let mut out = BTreeMap::new();
    for (tp, listed) in list_offsets_each(pool, partitions, isolation).await? {
        let listed = match listed {
            Ok(l) => l,
            Err(Error::Broker { error, .. }) => missing(error.code()),
            Err(Error::NoLeader(_)) => missing(ResponseError::LeaderNotAvailable.code()),
            Err(e) => return Err(e),
        };
        out.insert(tp, listed);
    }
    Ok(out)
}

/// [`list_offsets`] with each partition's own outcome: `Ok` only for an answer without error;
/// a leader that cannot be reached fails its partitions, not the call. The call fails only
/// when the metadata cannot be had.
pub(crate) async fn list_offsets_each(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<EachListed, Error> {
    let mut out = BTreeMap::new();
    let mut todo: BTreeMap<TopicPartition, OffsetSpec> = partitions.clone();
    let topics: BTreeSet<String> = partitions.keys().map(|tp| tp.topic.clone()).collect();
    let mut metadata = pool.metadata();
    if topics.iter().any(|t| metadata.topic(t).is_none()) {
        metadata = pool
            .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
            .await?;
    }
    for attempt in 0..LIST_OFFSETS_ATTEMPTS {
        let last = attempt + 1 == LIST_OFFSETS_ATTEMPTS;
        let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>> =
            BTreeMap::new();
        for (tp, spec) in &todo {
            let Some(p) = metadata.partition(&tp.topic, tp.partition) else {
                out.insert(tp.clone(), Err(unknown_partition(tp)));
                continue;
            };
            let Some(leader) = p.leader else {
                out.insert(tp.clone(), Err(Error::NoLeader(tp.clone())));
                continue;
            };
            by_leader
                .entry(leader)
                .or_default()
                .insert(tp.clone(), (*spec, p.leader_epoch));
        }
        let mut stale = BTreeMap::new();
        for (leader, batch) in by_leader {
            let answer = match ask_leader(pool, leader, &batch, isolation).await {
                Ok(a) => a,
                Err(e) => {
                    for tp in batch.into_keys() {
                        out.insert(tp, Err(e.clone()));
                    }
                    continue;
                }
            };
            for (tp, (spec, _)) in batch {
                // A partition the answer leaves out: the leader does not know it (the Java
                // client's ListOffsetsHandler fails such a partition too).
                let code = answer
                    .get(&tp)
                    .map_or(ResponseError::UnknownTopicOrPartition.code(), |l| {
                        l.error_code
                    });
                if is_stale_metadata_error(code) && !last {
                    stale.insert(tp.clone(), spec);
                }
                let listed = match Error::partition(ApiKey::ListOffsets, code, &tp) {
                    None => Ok(answer[&tp]),
                    Some(e) => Err(e),
                };
                out.insert(tp, listed);
            }
        }
        if stale.is_empty() {
            break;
        }
        tokio::time::sleep(LIST_OFFSETS_BACKOFF).await;
        metadata = pool
            .refresh_metadata(TopicScope::topics(topics.iter().cloned()))
            .await?;
        todo = stale;
    }
    Ok(out)
}

async fn ask_leader(
    pool: &Pool,
    leader: i32,
    batch: &BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, ListedOffset>, Error> {
    let conn = pool.connection(BrokerTarget::Broker(leader)).await?;
    let v = conn.version(ApiKey::ListOffsets)?;
    let req = list_offsets_request(batch, isolation, v)
        .map_err(|e| Error::version(ApiKey::ListOffsets, e))?;
    Ok(list_offsets_response(conn.send(&req).await?))
}

/// A partition the metadata does not have: its topic is unknown, or has fewer partitions.
pub(crate) fn unknown_partition(tp: &TopicPartition) -> Error {
    Error::Broker {
        api: ApiKey::Metadata,
        error: ResponseError::UnknownTopicOrPartition,
        partition: Some(tp.clone()),
        message: None,
    }
}

fn missing(error_code: i16) -> ListedOffset {
    ListedOffset {
        error_code,
        offset: -1,
        timestamp: -1,
        leader_epoch: None,
    }
}

/// The watermarks of `partitions`: log start (earliest), high watermark (latest under
/// read_uncommitted) and last stable offset (latest under read_committed). Partitions with an
/// error in any of the three lookups are left out.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn watermarks(
    pool: &Pool,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, Watermarks>, Error> {
    let spec = |s: OffsetSpec| partitions.iter().map(|tp| (tp.clone(), s)).collect();
    let start = list_offsets(
        pool,
        &spec(OffsetSpec::Earliest),
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    let high = list_offsets(
        pool,
        &spec(OffsetSpec::Latest),
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    let stable = list_offsets(
        pool,
        &spec(OffsetSpec::Latest),
        IsolationLevel::ReadCommitted,
    )
    .await;
    let mut out = BTreeMap::new();
    for tp in partitions {
        let (Some(s), Some(h)) = (start.get(tp), high.get(tp)) else {
            continue;
        };
        if s.error_code != 0 || h.error_code != 0 {
            continue;
        }
        let last_stable = stable
            .as_ref()
            .ok()
            .and_then(|m| m.get(tp))
            .filter(|l| l.error_code == 0)
            .map(|l| l.offset);
        out.insert(
            tp.clone(),
            Watermarks {
                log_start: s.offset,
                high_watermark: h.offset,
                last_stable,
            },
        );
    }
    Ok(out)
}
