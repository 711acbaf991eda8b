//! One-shot requests a consumer tool needs: ListOffsets (earliest, latest, max timestamp, by
//! timestamp; watermarks), the committed offsets of several groups (OffsetFetch, KIP-709),
//! DescribeGroups, ListGroups, OffsetDelete (KIP-496).
//!
//! These hold no state between calls, so they are plain async functions over a [`Pool`]
//! with the per-version conversions of [`wire`]; the stateful offset logic (commit
//! order, retries, auto-commit) is the sans-IO [`CommitMachine`](crate::CommitMachine).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use kcon_codec::error::api_name;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::{BrokerTarget, Error as PoolError, Pool, Purpose, TopicScope};
use tracing::debug;

use kcon_core::coordinator;
use kcon_core::error_codes::is_stale_metadata_error;
use kcon_core::list_offsets::{ListedOffset, list_offsets_request, list_offsets_response};
use kcon_core::wire::VersionError;
use kcon_core::{IsolationLevel, OffsetSpec, Watermarks};

use crate::messages::PartitionOffset;
use crate::{Coordinator, TopicPartition, wire};

/// How many times a ListOffsets round is retried after stale-metadata errors (a moved leader):
/// each retry refreshes the metadata first.
const LIST_OFFSETS_ATTEMPTS: u32 = 5;

/// How long to wait between those retries (the metadata refresh itself is coalesced by the
/// pool).
const LIST_OFFSETS_BACKOFF: Duration = Duration::from_millis(100);

/// How many times the committed offsets of a group are asked for after a retriable group error
/// (a moved or loading coordinator, UNSTABLE_OFFSET_COMMIT at the group level); each retry
/// finds the coordinator again.
const GROUP_OFFSETS_ATTEMPTS: u32 = 5;

/// How long to wait between those retries.
const GROUP_OFFSETS_BACKOFF: Duration = Duration::from_millis(100);

/// One group's committed offsets as [`committed_offsets_of_groups`] answers them: each
/// partition's error code and committed offset (`None` where the group has none), or why the
/// group as a whole has no answer.
pub type GroupOffsets = Result<BTreeMap<TopicPartition, PartitionOffset>, AdminError>;

/// A group as DescribeGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The error code for this group.
    pub error_code: i16,
    /// Its state: `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`, `Dead`.
    pub state: String,
    /// Its protocol type (`consumer` for consumer groups).
    pub protocol_type: String,
    /// The chosen protocol (the assignor), when stable.
    pub protocol: String,
    /// Its members.
    pub members: Vec<GroupMemberDescription>,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// Its subscription, encoded (see `kcon_group::protocol`).
    pub metadata: Bytes,
    /// Its assignment, encoded.
    pub assignment: Bytes,
}

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroup {
    /// The group id.
    pub group_id: String,
    /// Its protocol type.
    pub protocol_type: String,
    /// Its state (ListGroups v4+).
    pub state: Option<String>,
}

/// Why an admin request failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AdminError {
    /// The pool could not send the request or get its answer.
    Pool(PoolError),
    /// A broker answered with an error for the request as a whole.
    Broker {
        /// The API key of the request.
        api_key: i16,
        /// The error code.
        error_code: i16,
    },
    /// The request cannot be expressed at the version the broker speaks.
    Version(String),
    /// A partition has no leader in the metadata, even after a refresh.
    NoLeader(TopicPartition),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Pool(e) => write!(f, "{e}"),
            AdminError::Broker {
                api_key,
                error_code,
            } => write!(f, "{} answered error {error_code}", api_name(*api_key)),
            AdminError::Version(e) => f.write_str(e),
            AdminError::NoLeader(tp) => {
                write!(
                    f,
                    "{}-{} has no leader in the metadata",
                    tp.topic, tp.partition
                )
            }
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Pool(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PoolError> for AdminError {
    fn from(e: PoolError) -> Self {
        AdminError::Pool(e)
    }
}

impl From<VersionError> for AdminError {
    fn from(e: VersionError) -> Self {
        AdminError::Version(e.0)
    }
}

/// ListOffsets for `partitions`, each sent to its leader. Partitions whose answer is a
/// stale-metadata error (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, FENCED_LEADER_EPOCH,
/// ...) are asked again after a metadata refresh, up to a bound; what is still an error then is
/// returned with its error code, like the Java client's `ListOffsetsResult` per partition.
pub async fn list_offsets(
    pool: &Pool,
    partitions: &BTreeMap<TopicPartition, OffsetSpec>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, ListedOffset>, AdminError> {
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
        let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>> =
            BTreeMap::new();
        for (tp, spec) in &todo {
            let Some(p) = metadata.partition(&tp.topic, tp.partition) else {
                out.insert(tp.clone(), missing(3));
                continue;
            };
            let Some(leader) = p.leader else {
                out.insert(tp.clone(), missing(5));
                continue;
            };
            by_leader
                .entry(leader)
                .or_default()
                .insert(tp.clone(), (*spec, p.leader_epoch));
        }
        let mut stale = BTreeMap::new();
        for (leader, batch) in by_leader {
            let conn = pool.connection(BrokerTarget::Broker(leader)).await?;
            let v = conn.version(ApiKey::ListOffsets)?;
            let req = list_offsets_request(&batch, isolation, v)?;
            let answer = list_offsets_response(conn.send(&req).await?);
            for (tp, (spec, _)) in batch {
                let listed = answer.get(&tp).copied().unwrap_or(missing(3));
                if is_stale_metadata_error(listed.error_code) && attempt + 1 < LIST_OFFSETS_ATTEMPTS
                {
                    stale.insert(tp.clone(), spec);
                }
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
pub async fn watermarks(
    pool: &Pool,
    partitions: &BTreeSet<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, Watermarks>, AdminError> {
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

/// The coordinator of `group_id` (FindCoordinator, key type 0).
pub async fn find_coordinator(pool: &Pool, group_id: &str) -> Result<Coordinator, AdminError> {
    let conn = pool.connection(BrokerTarget::Any).await?;
    let v = conn.version(ApiKey::FindCoordinator)?;
    let r = conn
        .send(&coordinator::find_coordinator_request(group_id, v))
        .await?;
    let found = coordinator::find_coordinator_response(group_id, r, v);
    found.coordinator.ok_or(AdminError::Broker {
        api_key: ApiKey::FindCoordinator as i16,
        error_code: found.error_code,
    })
}

/// DescribeGroups for `group_id`, sent to its coordinator.
pub async fn describe_group(pool: &Pool, group_id: &str) -> Result<GroupDescription, AdminError> {
    let c = find_coordinator(pool, group_id).await?;
    let r = pool
        .send(
            BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
            &wire::describe_groups_request(&[group_id.to_owned()]),
        )
        .await?;
    wire::describe_groups_response(r)
        .into_iter()
        .find(|g| g.group_id == group_id)
        .ok_or(AdminError::Broker {
            api_key: ApiKey::DescribeGroups as i16,
            error_code: 15,
        })
}

/// ListGroups on every broker of the cluster (each coordinates some groups), merged and
/// sorted, as the Java admin client's `listConsumerGroups` does.
pub async fn list_groups(pool: &Pool) -> Result<Vec<ListedGroup>, AdminError> {
    let metadata = pool.refresh_metadata(TopicScope::none()).await?;
    let mut out = BTreeSet::new();
    for id in metadata.brokers.keys() {
        let (error_code, groups) = wire::list_groups_response(
            pool.send(BrokerTarget::Broker(*id), &wire::list_groups_request())
                .await?,
        );
        if error_code != 0 {
            return Err(AdminError::Broker {
                api_key: ApiKey::ListGroups as i16,
                error_code,
            });
        }
        out.extend(groups);
    }
    Ok(out.into_iter().collect())
}

/// OffsetDelete (v0, KIP-496): deletes `group_id`'s committed offsets for `partitions`. The
/// group must be empty or not subscribed to the topics (else GROUP_SUBSCRIBED_TO_TOPIC per
/// partition). Returns each partition's error code.
pub async fn delete_offsets(
    pool: &Pool,
    group_id: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i16>, AdminError> {
    let c = find_coordinator(pool, group_id).await?;
    let (error_code, out) = wire::offset_delete_response(
        pool.send(
            BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
            &wire::offset_delete_request(group_id, partitions),
        )
        .await?,
    );
    if error_code != 0 {
        return Err(AdminError::Broker {
            api_key: ApiKey::OffsetDelete as i16,
            error_code,
        });
    }
    Ok(out)
}

/// The committed offsets of `groups` (OffsetFetch), each group's from its coordinator:
/// groups sharing a coordinator go in one request where it speaks OffsetFetch v8+ (KIP-709),
/// one request per group below v8. `partitions` are the partitions asked for in every group
/// (`None`: all a group has offsets for); every asked partition is in a group's answer, `None`
/// where the group has no offset. `require_stable` (KIP-447, for read_committed) is sent from
/// v7 and dropped below, as by the commit machine.
///
/// Each group has its own outcome: an error for one group (its FindCoordinator or OffsetFetch
/// error code, or its coordinator unreachable) leaves the others' answers intact. Coordinator
/// errors (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) and a
/// group-level UNSTABLE_OFFSET_COMMIT are retried a bounded number of times, with the
/// coordinator found again. The call as a whole fails only when FindCoordinator cannot be sent
/// at all (the cluster is unreachable).
pub async fn committed_offsets_of_groups(
    pool: &Pool,
    groups: &[String],
    partitions: Option<&BTreeSet<TopicPartition>>,
    require_stable: bool,
) -> Result<BTreeMap<String, GroupOffsets>, AdminError> {
    let mut out = BTreeMap::new();
    let mut todo: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    for attempt in 0..GROUP_OFFSETS_ATTEMPTS {
        let last = attempt + 1 == GROUP_OFFSETS_ATTEMPTS;
        let mut retry = BTreeSet::new();
        let mut by_coordinator: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for group in todo {
            match find_coordinator(pool, group).await {
                Ok(c) => by_coordinator.entry(c.id).or_default().push(group),
                Err(e @ AdminError::Broker { error_code, .. }) => {
                    if is_retriable_group_error(error_code) && !last {
                        retry.insert(group);
                    }
                    out.insert(group.to_owned(), Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        for (coordinator, batch) in by_coordinator {
            let answers =
                match fetch_from_coordinator(pool, coordinator, &batch, partitions, require_stable)
                    .await
                {
                    Ok(answers) => answers,
                    Err(e) => {
                        for group in batch {
                            out.insert(group.to_owned(), Err(e.clone()));
                        }
                        continue;
                    }
                };
            for (group, (error_code, mut got)) in answers {
                if error_code != 0 {
                    if is_retriable_group_error(error_code) && !last {
                        retry.extend(batch.iter().find(|g| **g == group));
                    }
                    let e = AdminError::Broker {
                        api_key: ApiKey::OffsetFetch as i16,
                        error_code,
                    };
                    out.insert(group, Err(e));
                    continue;
                }
                for tp in partitions.into_iter().flatten() {
                    got.entry(tp.clone()).or_insert(PartitionOffset {
                        error_code: 0,
                        committed: None,
                    });
                }
                out.insert(group, Ok(got));
            }
        }
        if retry.is_empty() {
            break;
        }
        tokio::time::sleep(GROUP_OFFSETS_BACKOFF).await;
        todo = retry;
    }
    Ok(out)
}

/// OffsetFetch for `groups`, all coordinated by `coordinator`: one request from v8, one per
/// group below.
async fn fetch_from_coordinator(
    pool: &Pool,
    coordinator: i32,
    groups: &[&str],
    partitions: Option<&BTreeSet<TopicPartition>>,
    require_stable: bool,
) -> Result<BTreeMap<String, wire::GroupFetchAnswer>, AdminError> {
    let conn = pool
        .connection(BrokerTarget::Dedicated(coordinator, Purpose::Coordinator))
        .await?;
    let v = conn.version(ApiKey::OffsetFetch)?;
    let requests: Vec<&[&str]> = if v >= 8 {
        vec![groups]
    } else {
        groups.chunks(1).collect()
    };
    let mut out = BTreeMap::new();
    for batch in requests {
        let (req, dropped_stable) =
            wire::offset_fetch_groups_request(batch, partitions, require_stable, v)?;
        if dropped_stable {
            debug!(
                coordinator,
                version = v,
                "the coordinator cannot require stable offsets (OffsetFetch < v7)"
            );
        }
        out.extend(wire::offset_fetch_groups_response(
            batch,
            conn.send(&req).await?,
            v,
        ));
    }
    Ok(out)
}

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, and
/// UNSTABLE_OFFSET_COMMIT where librdkafka's mock cluster puts it, at the group level.
fn is_retriable_group_error(error_code: i16) -> bool {
    use crate::machine::code;
    matches!(
        error_code,
        code::COORDINATOR_LOAD_IN_PROGRESS
            | code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
            | code::UNSTABLE_OFFSET_COMMIT
    )
}
