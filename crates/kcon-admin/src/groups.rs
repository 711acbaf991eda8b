//! Consumer groups: their coordinator, DescribeGroups, ConsumerGroupDescribe, ListGroups,
//! OffsetDelete, and the committed offsets of several groups (OffsetFetch, KIP-709). Share
//! groups are `share.rs`'s.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::coordinator;
use kcon_core::group_offsets::{
    GroupFetchAnswer, PartitionOffset, offset_fetch_groups_request, offset_fetch_groups_response,
};
use kcon_core::{Coordinator, TopicPartition};
use kcon_pool::{BrokerTarget, Pool, Purpose, TopicScope};
use tracing::debug;

use crate::error::Error;
use crate::retry::{Retry, is_coordinator_error, is_retriable_coordinator_error};
use crate::wire;

/// One group's committed offsets as [`committed_offsets_of_groups`] answers them: each
/// partition's error code and committed offset (`None` where the group has none), or why the
/// group as a whole has no answer.
pub type GroupOffsets = Result<BTreeMap<TopicPartition, PartitionOffset>, Error>;

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

/// A consumer group of the consumer protocol (KIP-848) as ConsumerGroupDescribe describes
/// it: the coordinator's assignment, with every member's epoch and both its current and its
/// target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state: `Empty`, `Assigning`, `Reconciling`, `Stable`, `Dead`.
    pub state: String,
    /// The group's epoch: it moves with every change of members or subscriptions.
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The coordinator's assignor (`uniform`, `range`, ...).
    pub assignor: String,
    /// Its members.
    pub members: Vec<ConsumerGroupMember>,
}

/// A member of a consumer-protocol group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMember {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// `client.rack`, when sent.
    pub rack_id: Option<String>,
    /// The member's epoch: equal to the assignment epoch once it has reconciled.
    pub member_epoch: i32,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// The topics it subscribed to by name.
    pub subscribed_topics: Vec<String>,
    /// The regular expression it subscribed with, if any (never empty: the empty regex
    /// Apache Kafka sends for a member subscribed by name is none).
    pub subscribed_regex: Option<String>,
    /// The partitions it owns now.
    pub assignment: Vec<TopicPartition>,
    /// The partitions the coordinator wants it to own.
    pub target_assignment: Vec<TopicPartition>,
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
    /// Its subscription, encoded (see `kcon_codec::consumer_protocol`).
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

impl ListedGroup {
    /// Whether it is a consumer group, whose committed offsets are partitions' positions: its
    /// protocol type is `consumer` ([`CONSUMER_PROTOCOL_TYPE`](crate::CONSUMER_PROTOCOL_TYPE)),
    /// or empty (a group that only commits offsets, from outside any generation).
    pub fn is_consumer_group(&self) -> bool {
        self.protocol_type.is_empty()
            || self.protocol_type == crate::described::CONSUMER_PROTOCOL_TYPE
    }

    /// Whether it is a share group (KIP-932): its protocol type is `share`
    /// ([`SHARE_PROTOCOL_TYPE`](crate::SHARE_PROTOCOL_TYPE)).
    pub fn is_share_group(&self) -> bool {
        self.protocol_type == crate::share::SHARE_PROTOCOL_TYPE
    }
}

/// The coordinator of `group_id` (FindCoordinator, key type 0). A broker that has none to
/// give yet (COORDINATOR_NOT_AVAILABLE), or that cannot be reached, is asked again until
/// `default.api.timeout.ms` (see [`crate`]'s retries).
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn find_coordinator(pool: &Pool, group_id: &str) -> Result<Coordinator, Error> {
    Retry::new(pool)
        .run("FindCoordinator", || find_coordinator_once(pool, group_id))
        .await
}

/// One FindCoordinator for `group_id`: what each attempt of a call to a coordinator starts
/// with.
pub(crate) async fn find_coordinator_once(
    pool: &Pool,
    group_id: &str,
) -> Result<Coordinator, Error> {
    let conn = pool.connection(BrokerTarget::Any).await?;
    let found = conn
        .find_coordinator(group_id, coordinator::GROUP, None)
        .await?;
    if let Some(c) = found.coordinator {
        return Ok(c);
    }
    // An answer without a coordinator and without an error code is a broker that has none
    // to give yet: COORDINATOR_NOT_AVAILABLE, which is retried.
    let error = ResponseError::try_from_code(found.error_code)
        .unwrap_or(ResponseError::CoordinatorNotAvailable);
    Err(Error::Broker {
        api: ApiKey::FindCoordinator,
        error,
        partition: None,
        message: found.error_message,
    })
}

/// DescribeGroups for `group_id`, sent to its coordinator. The group's own error code is in
/// the description (GROUP_ID_NOT_FOUND from v6 for a group that does not exist), as the Java
/// admin client's `describeConsumerGroups` reports it per group; a coordinator not ready for
/// the group (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) is
/// asked again, found anew, until `default.api.timeout.ms`, and then fails the call.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe_group(pool: &Pool, group_id: &str) -> Result<GroupDescription, Error> {
    describe_group_in(&Retry::new(pool), pool, group_id).await
}

/// [`describe_group`] within the call `retry`.
pub(crate) async fn describe_group_in(
    retry: &Retry,
    pool: &Pool,
    group_id: &str,
) -> Result<GroupDescription, Error> {
    retry
        .run("DescribeGroups", || async {
            let c = find_coordinator_once(pool, group_id).await?;
            let r = pool
                .send(
                    BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
                    &wire::describe_groups_request(&[group_id.to_owned()]),
                )
                .await?;
            let d = wire::describe_groups_response(r)
                .into_iter()
                .find(|g| g.group_id == group_id)
                .ok_or_else(|| left_out(ApiKey::DescribeGroups))?;
            match ResponseError::try_from_code(d.error_code) {
                Some(error) if is_coordinator_error(error) => Err(Error::Broker {
                    api: ApiKey::DescribeGroups,
                    error,
                    partition: None,
                    message: None,
                }),
                _ => Ok(d),
            }
        })
        .await
}

/// An answer that leaves out the group asked about: a coordinator that is not (yet) the
/// group's, asked again.
pub(crate) fn left_out(api: ApiKey) -> Error {
    Error::Broker {
        api,
        error: ResponseError::CoordinatorNotAvailable,
        partition: None,
        message: Some("the answer leaves the group out".into()),
    }
}

/// ConsumerGroupDescribe for `group_id`, sent to its coordinator: `None` when the broker does
/// not offer the API or the group is not a consumer-protocol group (GROUP_ID_NOT_FOUND, which
/// is also Kafka's answer for a classic group), where [`describe_group`] describes it. The
/// Java admin client falls back from one to the other the same way. Apache Kafka 3.9 offers
/// ConsumerGroupDescribe v0 but, with the consumer protocol off (its default), answers every
/// group with UNSUPPORTED_VERSION: that group too is `None`. Tansu answers a classic group with
/// a description without members whose epochs are -1: a consumer-protocol group's epoch is
/// never negative, so that too is `None`.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe_consumer_group(
    pool: &Pool,
    group_id: &str,
) -> Result<Option<ConsumerGroupDescription>, Error> {
    describe_consumer_group_in(&Retry::new(pool), pool, group_id).await
}

/// [`describe_consumer_group`] within the call `retry`.
pub(crate) async fn describe_consumer_group_in(
    retry: &Retry,
    pool: &Pool,
    group_id: &str,
) -> Result<Option<ConsumerGroupDescription>, Error> {
    retry
        .run("ConsumerGroupDescribe", || {
            consumer_group_describe_once(pool, group_id)
        })
        .await
}

async fn consumer_group_describe_once(
    pool: &Pool,
    group_id: &str,
) -> Result<Option<ConsumerGroupDescription>, Error> {
    let c = find_coordinator_once(pool, group_id).await?;
    let target = BrokerTarget::Dedicated(c.id, Purpose::Coordinator);
    let answer = pool
        .send(
            target,
            &wire::consumer_group_describe_request(&[group_id.to_owned()]),
        )
        .await;
    let r = match answer {
        Ok(r) => r,
        Err(kcon_pool::Error::Unsupported { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some((error_code, message, group)) = wire::consumer_group_describe_response(r)
        .into_iter()
        .find(|(_, _, g)| g.group_id == group_id)
    else {
        return Err(left_out(ApiKey::ConsumerGroupDescribe));
    };
    match ResponseError::try_from_code(error_code) {
        None if error_code == 0 && group.group_epoch < 0 => Ok(None),
        None if error_code == 0 => Ok(Some(group)),
        Some(ResponseError::GroupIdNotFound | ResponseError::UnsupportedVersion) => Ok(None),
        Some(error) => Err(Error::Broker {
            api: ApiKey::ConsumerGroupDescribe,
            error,
            partition: None,
            message,
        }),
        None => Err(Error::Broker {
            api: ApiKey::ConsumerGroupDescribe,
            error: ResponseError::UnknownServerError,
            partition: None,
            message: Some(format!("error code {error_code}")),
        }),
    }
}

/// ListGroups on every broker of the cluster (each coordinates some groups), merged and
/// sorted, as the Java admin client's `listConsumerGroups` does. A broker still loading its
/// groups (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE) or unreachable is asked
/// again until `default.api.timeout.ms`.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn list_groups(pool: &Pool) -> Result<Vec<ListedGroup>, Error> {
    let retry = Retry::new(pool);
    let metadata = pool.refresh_metadata(TopicScope::none()).await?;
    let mut out = BTreeSet::new();
    for id in metadata.brokers.keys() {
        let groups = retry
            .run("ListGroups", || async {
                let (error_code, groups) = wire::list_groups_response(
                    pool.send(BrokerTarget::Broker(*id), &wire::list_groups_request())
                        .await?,
                );
                match Error::broker(ApiKey::ListGroups, error_code) {
                    Some(e) => Err(e),
                    None => Ok(groups),
                }
            })
            .await?;
        out.extend(groups);
    }
    Ok(out.into_iter().collect())
}

/// OffsetDelete (v0, KIP-496): deletes `group_id`'s committed offsets for `partitions`. The
/// group must be empty or not subscribed to the topics (else GROUP_SUBSCRIBED_TO_TOPIC per
/// partition, with a message saying the members must stop or unsubscribe first). Each
/// partition's outcome, as the Java admin client's `deleteConsumerGroupOffsets` gives one per
/// partition; a group-level error (GROUP_ID_NOT_FOUND for a group that has none) fails the
/// call, after a coordinator not ready for the group was asked again until
/// `default.api.timeout.ms`.
///
/// # Cancel safety
///
/// Not cancel-safe in effect: dropped once OffsetDelete went out, the offsets may be deleted all
/// the same: look at the group's offsets ([`committed_offsets_of_groups`]) before calling it again.
pub async fn delete_offsets(
    pool: &Pool,
    group_id: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, Result<(), Error>>, Error> {
    let answered = Retry::new(pool)
        .run("OffsetDelete", || async {
            let c = find_coordinator_once(pool, group_id).await?;
            let (error_code, answered) = wire::offset_delete_response(
                pool.send(
                    BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
                    &wire::offset_delete_request(group_id, partitions),
                )
                .await?,
            );
            match Error::broker(ApiKey::OffsetDelete, error_code) {
                Some(e) => Err(e),
                None => Ok(answered),
            }
        })
        .await?;
    Ok(partitions
        .iter()
        .map(|tp| {
            // A partition the answer leaves out was not deleted.
            let code = answered
                .get(tp)
                .copied()
                .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
            let outcome = match Error::partition(ApiKey::OffsetDelete, code, tp) {
                None => Ok(()),
                Some(Error::Broker {
                    api,
                    error: error @ ResponseError::GroupSubscribedToTopic,
                    partition,
                    ..
                }) => Err(Error::Broker {
                    api,
                    error,
                    partition,
                    message: Some(format!(
                        "the group has active members subscribed to {:?}; its offsets there \
                         can be deleted once they stop or no longer subscribe to it",
                        tp.topic
                    )),
                }),
                Some(e) => Err(e),
            };
            (tp.clone(), outcome)
        })
        .collect())
}

/// The committed offsets of `groups` (OffsetFetch), each group's from its coordinator:
/// groups sharing a coordinator go in one request where it speaks OffsetFetch v8+ (KIP-709),
/// one request per group below v8. `partitions` are the partitions asked for in every group
/// (`None`: all a group has offsets for); every asked partition is in a group's answer, `None`
/// where the group has no offset. `require_stable` (KIP-447, for read_committed) is sent from
/// v7 and dropped below, as by the commit machine.
///
/// Each group has its own outcome: an error for one group (its FindCoordinator or OffsetFetch
/// error code, or its coordinator unreachable) leaves the others' answers intact, as the Java
/// admin client's `listConsumerGroupOffsets` completes each group's future on its own.
/// Coordinator errors (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
/// NOT_COORDINATOR), a group-level UNSTABLE_OFFSET_COMMIT and a coordinator that cannot be
/// reached are retried, the coordinator found again, with a growing backoff until
/// `default.api.timeout.ms`; then the group keeps its last error. The call as a whole fails
/// only when FindCoordinator cannot be sent at all (the cluster is unreachable) until then.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn committed_offsets_of_groups(
    pool: &Pool,
    groups: &[String],
    partitions: Option<&BTreeSet<TopicPartition>>,
    require_stable: bool,
) -> Result<BTreeMap<String, GroupOffsets>, Error> {
    let retry = Retry::new(pool);
    let mut out = BTreeMap::new();
    let mut todo: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    let mut attempts = 0;
    loop {
        let mut again = BTreeSet::new();
        // FindCoordinator that could not be sent at all, this round.
        let mut unsent = None;
        let mut by_coordinator: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for group in todo {
            match find_coordinator_once(pool, group).await {
                Ok(c) => by_coordinator.entry(c.id).or_default().push(group),
                Err(e) => {
                    if is_retriable_group_error(&e) {
                        again.insert(group);
                    }
                    match e {
                        Error::Broker { .. } => {}
                        Error::Connection(_) if is_retriable_group_error(&e) => {
                            unsent = Some(e.clone());
                        }
                        e => return Err(e),
                    }
                    out.insert(group.to_owned(), Err(e));
                }
            }
        }
        for (coordinator, batch) in by_coordinator {
            let answers =
                match fetch_from_coordinator(pool, coordinator, &batch, partitions, require_stable)
                    .await
                {
                    Ok(answers) => answers,
                    Err(e) => {
                        if is_retriable_group_error(&e) {
                            again.extend(batch.iter().copied());
                        }
                        for group in batch {
                            out.insert(group.to_owned(), Err(e.clone()));
                        }
                        continue;
                    }
                };
            for (group, (error_code, mut got)) in answers {
                if let Some(e) = Error::broker(ApiKey::OffsetFetch, error_code) {
                    if is_retriable_group_error(&e) {
                        again.extend(batch.iter().find(|g| **g == group));
                    }
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
        if again.is_empty() {
            break;
        }
        if !retry.pause(attempts).await {
            if let Some(e) = unsent {
                return Err(e);
            }
            break;
        }
        attempts += 1;
        debug!(attempts, groups = ?again, "asking for the committed offsets again");
        todo = again;
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
) -> Result<BTreeMap<String, GroupFetchAnswer>, Error> {
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
            offset_fetch_groups_request(batch, partitions, require_stable, v)
                .map_err(|e| Error::version(ApiKey::OffsetFetch, e))?;
        if dropped_stable {
            debug!(
                coordinator,
                version = v,
                "the coordinator cannot require stable offsets (OffsetFetch < v7)"
            );
        }
        out.extend(offset_fetch_groups_response(
            batch,
            conn.send(&req).await?,
            v,
        ));
    }
    Ok(out)
}

/// Whether a group's committed offsets are asked for again after `e`: a coordinator not
/// ready ([`is_retriable_coordinator_error`]: the Java admin client's
/// `ListConsumerGroupOffsetsHandler` retries those), or UNSTABLE_OFFSET_COMMIT where
/// librdkafka's mock cluster puts it, at the group level.
pub(crate) fn is_retriable_group_error(e: &Error) -> bool {
    is_retriable_coordinator_error(e) || e.code() == Some(ResponseError::UnstableOffsetCommit)
}
