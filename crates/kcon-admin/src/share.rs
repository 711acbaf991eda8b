//! Share groups (KIP-932) seen from outside: ShareGroupDescribe for the group, its members and
//! the partitions each is assigned; DescribeShareGroupOffsets for where each share-partition
//! starts (the share-partition start offset: every record before it is done with, acknowledged
//! or archived); and the lag from there to the end of the log.
//!
//! A share group commits no offsets, so its lag is not a consumer group's: records between the
//! start offset and the end of the log are not all waiting (some past the start may be
//! acknowledged already). The broker counts the lag itself (KIP-1226: DescribeShareGroupOffsets
//! v1, Apache Kafka 4.2 and later), the records not yet acknowledged, and that is the lag
//! reported. A broker that speaks v0 only gives none: then the lag is counted here from the
//! start offset to the end of the log ([`log_ranges`](crate::log_ranges), as for consumer
//! groups), the most that can be left, and said to be so
//! ([`SharePartitionLag::lag_is_upper_bound`]).

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::{Coordinator, IsolationLevel, TopicPartition};
use kcon_pool::{BrokerTarget, Pool, Purpose};
use tracing::debug;

use crate::error::Error;
use crate::groups::{find_coordinator_once, left_out};
use crate::lag::{lag, log_ranges};
use crate::retry::Retry;
use crate::wire;

/// The protocol type ListGroups gives share groups, and [`DescribedGroup`](crate::DescribedGroup)
/// gives a share group described.
pub const SHARE_PROTOCOL_TYPE: &str = "share";

/// A share group (KIP-932) as ShareGroupDescribe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state: `Empty`, `Stable`, `Dead`.
    pub state: String,
    /// The group's epoch: it moves with every change of members or subscriptions.
    pub group_epoch: i32,
    /// The epoch of the assignment the coordinator computed last.
    pub assignment_epoch: i32,
    /// The coordinator's share assignor (`simple`).
    pub assignor: String,
    /// Its members.
    pub members: Vec<ShareGroupMember>,
}

/// A member of a share group. Unlike a consumer group's, a partition may be assigned to
/// several members at once: they share its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupMember {
    /// The member id.
    pub member_id: String,
    /// `client.rack`, when sent.
    pub rack_id: Option<String>,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// The topics it subscribed to.
    pub subscribed_topics: Vec<String>,
    /// The partitions it is assigned, sorted, each topic by name (by id where the answer gave
    /// no name).
    pub assignment: Vec<TopicPartition>,
}

/// One share-partition as DescribeShareGroupOffsets answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartitionStart {
    /// The share-partition start offset; negative when the partition has no share state yet.
    pub start_offset: i64,
    /// The leader epoch the state was written at; negative when unknown.
    pub leader_epoch: i32,
    /// The lag the broker counted (DescribeShareGroupOffsets v1): records not yet acknowledged;
    /// `None` from a broker that speaks v0, or that had none to give.
    pub lag: Option<i64>,
    /// The partition's error code (0: none).
    pub error_code: i16,
    /// The broker's message for it, when it sent one.
    pub error_message: Option<String>,
}

/// One group of a DescribeShareGroupOffsets answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupStarts {
    /// The group id.
    pub group_id: String,
    /// The group's error code (0: none).
    pub error_code: i16,
    /// The broker's message for it, when it sent one.
    pub error_message: Option<String>,
    /// Every share-partition the group has state for.
    pub partitions: BTreeMap<TopicPartition, SharePartitionStart>,
}

/// A share group's start offsets and lag, per partition, as [`share_group_lag`] measures them.
#[derive(Debug, Clone)]
pub struct ShareGroupLag {
    /// The group id.
    pub group_id: String,
    /// The wall-clock time (ms since the epoch) once every answer was in.
    pub measured_at_ms: i64,
    /// Every partition the group has share state for, and those asked to be included.
    pub partitions: BTreeMap<TopicPartition, SharePartitionLag>,
}

impl ShareGroupLag {
    /// The lag in records summed over the partitions where it is known.
    pub fn total_records(&self) -> i64 {
        self.partitions
            .values()
            .filter_map(|p| p.lag)
            .fold(0, i64::saturating_add)
    }

    /// Whether the total is an upper bound: some partition's lag was counted by kcon from the
    /// start offset, the broker giving none.
    pub fn lag_is_upper_bound(&self) -> bool {
        self.partitions
            .values()
            .any(|p| p.lag.is_some() && p.lag_is_upper_bound)
    }
}

/// One partition of a [`ShareGroupLag`]. What is unknown is `None`, and `error` says why.
#[derive(Debug, Clone)]
pub struct SharePartitionLag {
    /// The share-partition start offset; `None` when the group has no state for the partition
    /// (a partition assigned but never fetched from) or the broker answered an error for it.
    pub start_offset: Option<i64>,
    /// The leader epoch the state was written at.
    pub leader_epoch: Option<i32>,
    /// Where the log starts.
    pub log_start: Option<i64>,
    /// Where the log ends (the high watermark; see [`log_end`](crate::lag::log_end)).
    pub log_end: Option<i64>,
    /// The records not yet acknowledged, as the broker counts them (DescribeShareGroupOffsets
    /// v1); from a broker that gives none, the records from the start offset (or the log
    /// start, when the log has moved past it) to the end of the log ([`share_lag`]), an upper
    /// bound ([`lag_is_upper_bound`](Self::lag_is_upper_bound)).
    pub lag: Option<i64>,
    /// Whether `lag` is kcon's upper bound rather than the broker's count.
    pub lag_is_upper_bound: bool,
    /// Why something above is unknown: the partition's DescribeShareGroupOffsets error, or the
    /// error of the lookups of its log.
    pub error: Option<Error>,
}

/// The records of a share-partition from `start_offset` to `log_end`: counted from `log_start`
/// when the log no longer holds the start offset, never negative. The same rule as a
/// consumer's lag from its committed offset ([`crate::lag::lag`]).
pub fn share_lag(start_offset: i64, log_start: i64, log_end: i64) -> i64 {
    lag(start_offset, Some(log_start), log_end, None, 0)
        .records
        .unwrap_or(0)
}

/// What ShareGroupDescribe said of a group.
pub(crate) enum ShareDescribed {
    /// A share group.
    Group(ShareGroupDescription),
    /// GROUP_ID_NOT_FOUND: no share group of that id.
    NotFound,
    /// The coordinator does not offer ShareGroupDescribe; the error says so.
    NotOffered(Error),
}

/// `group_id` described as a share group (ShareGroupDescribe, sent to its coordinator). A
/// group that is not a share group fails with GROUP_ID_NOT_FOUND (Kafka's answer for any other
/// kind of group too); a coordinator that does not offer the API fails with
/// [`Error::Unsupported`] naming it; any other group error code with it, after a coordinator
/// not ready for the group was asked again until `default.api.timeout.ms`.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe_share_group(
    pool: &Pool,
    group_id: &str,
) -> Result<ShareGroupDescription, Error> {
    let described = Retry::new(pool)
        .run("ShareGroupDescribe", || async {
            let c = find_coordinator_once(pool, group_id).await?;
            share_group_describe(pool, &c, group_id).await
        })
        .await?;
    match described {
        ShareDescribed::Group(g) => Ok(g),
        ShareDescribed::NotFound => Err(Error::Broker {
            api: ApiKey::ShareGroupDescribe,
            error: ResponseError::GroupIdNotFound,
            partition: None,
            message: Some(format!("no share group {group_id:?}")),
        }),
        ShareDescribed::NotOffered(e) => Err(e),
    }
}

/// ShareGroupDescribe of `group_id` at its coordinator `c`.
pub(crate) async fn share_group_describe(
    pool: &Pool,
    c: &Coordinator,
    group_id: &str,
) -> Result<ShareDescribed, Error> {
    let answer = pool
        .send(
            BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
            &wire::share_group_describe_request(&[group_id.to_owned()]),
        )
        .await;
    let r = match answer {
        Ok(r) => r,
        Err(e @ kcon_pool::Error::Unsupported { .. }) => {
            return Ok(ShareDescribed::NotOffered(not_offered(
                ApiKey::ShareGroupDescribe,
                group_id,
                &e,
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let Some((error_code, message, group)) = wire::share_group_describe_response(r)
        .into_iter()
        .find(|(_, _, g)| g.group_id == group_id)
    else {
        return Err(left_out(ApiKey::ShareGroupDescribe));
    };
    match ResponseError::try_from_code(error_code) {
        None if error_code == 0 => Ok(ShareDescribed::Group(group)),
        Some(ResponseError::GroupIdNotFound) => Ok(ShareDescribed::NotFound),
        Some(error) => Err(Error::Broker {
            api: ApiKey::ShareGroupDescribe,
            error,
            partition: None,
            message,
        }),
        None => Err(unknown_code(ApiKey::ShareGroupDescribe, error_code)),
    }
}

/// Whether the broker `c` lists `group_id` as a share group (ListGroups). A ListGroups that
/// fails says nothing: `false`.
pub(crate) async fn listed_as_share_group(pool: &Pool, c: &Coordinator, group_id: &str) -> bool {
    match pool
        .send(BrokerTarget::Broker(c.id), &wire::list_groups_request())
        .await
    {
        Ok(r) => {
            let (_, groups) = wire::list_groups_response(r);
            groups
                .iter()
                .any(|g| g.group_id == group_id && g.is_share_group())
        }
        Err(e) => {
            debug!(group_id, error = %e, "ListGroups failed: the group's type is unknown");
            false
        }
    }
}

/// The start offset of every share-partition `group_id` has state for
/// (DescribeShareGroupOffsets, sent to its coordinator). A group error code fails the call,
/// after a coordinator not ready for the group was asked again until
/// `default.api.timeout.ms`; each partition keeps its own.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn share_group_start_offsets(
    pool: &Pool,
    group_id: &str,
) -> Result<BTreeMap<TopicPartition, SharePartitionStart>, Error> {
    Retry::new(pool)
        .run("DescribeShareGroupOffsets", || {
            share_group_start_offsets_once(pool, group_id)
        })
        .await
}

async fn share_group_start_offsets_once(
    pool: &Pool,
    group_id: &str,
) -> Result<BTreeMap<TopicPartition, SharePartitionStart>, Error> {
    let c = find_coordinator_once(pool, group_id).await?;
    let answer = pool
        .send(
            BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
            &wire::describe_share_group_offsets_request(group_id),
        )
        .await;
    let r = match answer {
        Ok(r) => r,
        Err(e @ kcon_pool::Error::Unsupported { .. }) => {
            return Err(not_offered(ApiKey::DescribeShareGroupOffsets, group_id, &e));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(g) = wire::describe_share_group_offsets_response(r)
        .into_iter()
        .find(|g| g.group_id == group_id)
    else {
        return Err(left_out(ApiKey::DescribeShareGroupOffsets));
    };
    match ResponseError::try_from_code(g.error_code) {
        None if g.error_code == 0 => Ok(g.partitions),
        Some(error) => Err(Error::Broker {
            api: ApiKey::DescribeShareGroupOffsets,
            error,
            partition: None,
            message: g.error_message,
        }),
        None => Err(unknown_code(
            ApiKey::DescribeShareGroupOffsets,
            g.error_code,
        )),
    }
}

/// `group_id`'s start offset and lag on every partition it has share state for and every
/// partition in `include` (those its members are assigned, say: without state, their log
/// range is reported and their lag is unknown). Requests: DescribeShareGroupOffsets to the
/// coordinator, then ListOffsets and a sessionless Fetch per leader ([`log_ranges`]).
/// A group error code fails the call; each partition has its own outcome.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn share_group_lag(
    pool: &Pool,
    group_id: &str,
    include: &BTreeSet<TopicPartition>,
) -> Result<ShareGroupLag, Error> {
    let starts = share_group_start_offsets(pool, group_id).await?;
    let all: BTreeSet<TopicPartition> = starts.keys().chain(include).cloned().collect();
    let ranges = if all.is_empty() {
        BTreeMap::new()
    } else {
        log_ranges(pool, &all, IsolationLevel::ReadUncommitted).await?
    };
    let measured_at_ms = pool.clock().now_ms();
    let partitions = all
        .into_iter()
        .map(|tp| {
            let start = starts.get(&tp);
            let range = ranges.get(&tp);
            let p = share_partition_lag(&tp, start, range);
            (tp, p)
        })
        .collect();
    Ok(ShareGroupLag {
        group_id: group_id.to_owned(),
        measured_at_ms,
        partitions,
    })
}

/// One partition's start offset, log range and lag, from what was answered of it.
fn share_partition_lag(
    tp: &TopicPartition,
    start: Option<&SharePartitionStart>,
    range: Option<&Result<crate::lag::LogRange, Error>>,
) -> SharePartitionLag {
    let start_error = start.and_then(|s| {
        ResponseError::try_from_code(s.error_code).map(|error| Error::Broker {
            api: ApiKey::DescribeShareGroupOffsets,
            error,
            partition: Some(tp.clone()),
            message: s.error_message.clone(),
        })
    });
    let start_offset = start
        .filter(|s| s.error_code == 0 && s.start_offset >= 0)
        .map(|s| s.start_offset);
    let leader_epoch = start
        .filter(|s| s.error_code == 0 && s.leader_epoch >= 0)
        .map(|s| s.leader_epoch);
    let (log_start, log_end, range_error) = match range {
        Some(Ok(r)) => (Some(r.start), Some(r.end), None),
        Some(Err(e)) => (None, None, Some(e.clone())),
        None => (None, None, None),
    };
    let counted = start
        .filter(|s| s.error_code == 0)
        .and_then(|s| s.lag)
        .filter(|l| *l >= 0);
    let (lag, lag_is_upper_bound) = match (counted, start_offset, log_start, log_end) {
        (Some(l), ..) => (Some(l), false),
        (None, Some(s), Some(ls), Some(le)) => (Some(share_lag(s, ls, le)), true),
        _ => (None, false),
    };
    SharePartitionLag {
        start_offset,
        leader_epoch,
        log_start,
        log_end,
        lag,
        lag_is_upper_bound,
        error: start_error.or(range_error),
    }
}

/// A coordinator that does not offer `api`, for `group_id`: what it lacks and what has it.
fn not_offered(api: ApiKey, group_id: &str, e: &kcon_pool::Error) -> Error {
    Error::Unsupported {
        api: Some(api),
        reason: format!(
            "cannot describe share group {group_id:?}: {e} (share groups are described by \
             Apache Kafka 4.1 or later, with share groups enabled)"
        ),
    }
}

/// An error code kafka-protocol does not name.
fn unknown_code(api: ApiKey, code: i16) -> Error {
    Error::Broker {
        api,
        error: ResponseError::UnknownServerError,
        partition: None,
        message: Some(format!("error code {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::LogRange;

    fn orders(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    #[test]
    fn the_lag_runs_from_the_start_offset_or_the_log_start_to_the_end() {
        assert_eq!(share_lag(40, 0, 100), 60);
        assert_eq!(share_lag(100, 0, 100), 0);
        // The log was truncated past the start offset: what is gone does not count.
        assert_eq!(share_lag(10, 30, 100), 70);
        // A start offset past a log end read earlier: never negative.
        assert_eq!(share_lag(120, 0, 100), 0);
    }

    #[test]
    fn a_partition_without_state_or_with_an_error_has_no_lag_and_says_why() {
        let range = Ok(LogRange { start: 5, end: 50 });
        let ok = SharePartitionStart {
            start_offset: 20,
            leader_epoch: 3,
            lag: None,
            error_code: 0,
            error_message: None,
        };
        let p = share_partition_lag(&orders(0), Some(&ok), Some(&range));
        assert_eq!(
            (p.start_offset, p.leader_epoch, p.log_end, p.lag),
            (Some(20), Some(3), Some(50), Some(30))
        );
        assert!(p.lag_is_upper_bound, "counted by kcon: {p:?}");
        assert!(p.error.is_none());

        // Assigned, but the group has no state for it yet.
        let p = share_partition_lag(&orders(1), None, Some(&range));
        assert_eq!((p.start_offset, p.log_end, p.lag), (None, Some(50), None));
        assert!(p.error.is_none());

        // A start offset of -1: no state either.
        let fresh = SharePartitionStart {
            start_offset: -1,
            leader_epoch: -1,
            ..ok.clone()
        };
        let p = share_partition_lag(&orders(2), Some(&fresh), Some(&range));
        assert_eq!((p.start_offset, p.leader_epoch, p.lag), (None, None, None));

        let denied = SharePartitionStart {
            error_code: ResponseError::TopicAuthorizationFailed.code(),
            error_message: Some("denied".into()),
            ..ok
        };
        let p = share_partition_lag(&orders(3), Some(&denied), Some(&range));
        assert_eq!((p.start_offset, p.lag), (None, None));
        let e = p.error.expect("the partition's error");
        assert_eq!(e.code(), Some(ResponseError::TopicAuthorizationFailed));
        assert_eq!(e.api(), Some(ApiKey::DescribeShareGroupOffsets));
        assert_eq!(e.topic_partition(), Some(&orders(3)));

        let gone = Err(Error::NoLeader(orders(4)));
        let p = share_partition_lag(&orders(4), None, Some(&gone));
        assert_eq!((p.log_end, p.lag), (None, None));
        assert!(matches!(p.error, Some(Error::NoLeader(_))), "{p:?}");
    }

    /// The lag the broker counted (v1) is the lag, whatever the start offset and the log end
    /// say; one it has none for (-1 on the wire) is counted by kcon, an upper bound.
    #[test]
    fn the_brokers_lag_is_the_lag() {
        let range = Ok(LogRange {
            start: 0,
            end: 3000,
        });
        let acknowledged = SharePartitionStart {
            start_offset: 0,
            leader_epoch: 1,
            lag: Some(0),
            error_code: 0,
            error_message: None,
        };
        let p = share_partition_lag(&orders(0), Some(&acknowledged), Some(&range));
        assert_eq!((p.lag, p.lag_is_upper_bound), (Some(0), false));
        let none = SharePartitionStart {
            lag: None,
            ..acknowledged
        };
        let p = share_partition_lag(&orders(0), Some(&none), Some(&range));
        assert_eq!((p.lag, p.lag_is_upper_bound), (Some(3000), true));
        let l = ShareGroupLag {
            group_id: "s".into(),
            measured_at_ms: 0,
            partitions: BTreeMap::from([(orders(0), p)]),
        };
        assert!(l.lag_is_upper_bound());
    }

    #[test]
    fn the_total_counts_only_known_lags() {
        let part = |lag| SharePartitionLag {
            start_offset: None,
            leader_epoch: None,
            log_start: None,
            log_end: None,
            lag,
            lag_is_upper_bound: false,
            error: None,
        };
        let l = ShareGroupLag {
            group_id: "s".into(),
            measured_at_ms: 0,
            partitions: BTreeMap::from([
                (orders(0), part(Some(7))),
                (orders(1), part(None)),
                (orders(2), part(Some(5))),
            ]),
        };
        assert_eq!(l.total_records(), 12);
    }
}
