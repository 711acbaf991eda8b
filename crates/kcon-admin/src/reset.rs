//! Moving a group's committed offsets from outside the group, as
//! `kafka-consumer-groups.sh --reset-offsets` does: [`plan_reset`] works out where each
//! partition goes (the group must be inactive), [`execute_reset`] commits the plan, and
//! [`commit_offsets`] is the commit itself for any offsets (OffsetCommit with generation -1
//! and no member id, as franz-go's kadm `CommitOffsets` sends it).
//!
//! ```no_run
//! # async fn reset(pool: kcon_pool::Pool) -> Result<(), kcon_admin::Error> {
//! use std::collections::BTreeSet;
//! use kcon_admin::{ResetTo, execute_reset, plan_reset};
//! use kcon_core::TopicPartition;
//!
//! let partitions = BTreeSet::from([TopicPartition::new("orders", 0)]);
//! let plan = plan_reset(&pool, "billing", &partitions, ResetTo::Earliest).await?;
//! for (tp, p) in &plan.partitions {
//!     println!("{tp}: {:?} -> {}", p.current, p.new);
//! }
//! execute_reset(&pool, &plan).await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::group_offsets::{
    CommitRequest, OffsetAndMetadata, offset_commit_request, offset_commit_response,
};
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_pool::{BrokerTarget, Pool, Purpose};

use crate::described::describe;
use crate::error::Error;
use crate::groups::{committed_offsets_of_groups, find_coordinator_once};
use crate::lag::log_ranges;
use crate::offsets::{list_offsets_each, unknown_partition};
use crate::retry::{Retry, is_retriable_coordinator_error};

/// Where [`plan_reset`] moves each partition, as `kafka-consumer-groups.sh --reset-offsets`
/// names the targets. Every target is kept within the log: at most its end, at least its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The start of the log (`--to-earliest`).
    Earliest,
    /// The end of the log (`--to-latest`): the larger of ListOffsets latest and a Fetch's high
    /// watermark ([`log_end`](crate::lag::log_end)).
    Latest,
    /// This offset (`--to-offset`).
    Offset(i64),
    /// The first record at or after this time, milliseconds since the epoch
    /// (`--to-datetime`); the end of the log when no record is that recent.
    Timestamp(i64),
    /// The first record at most this long ago (`--by-duration`); the end of the log when no
    /// record is that recent.
    ByDuration(Duration),
    /// The committed offset moved by this many records, back when negative (`--shift-by`); a
    /// partition without a committed offset cannot be shifted.
    ShiftBy(i64),
}

/// Where one partition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedReset {
    /// The group's committed offset now; `None` when it has none.
    pub current: Option<i64>,
    /// The offset the reset commits.
    pub new: i64,
}

/// A group's offsets as a reset would leave them, from [`plan_reset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    /// The group.
    pub group_id: String,
    /// Each partition to reset.
    pub partitions: BTreeMap<TopicPartition, PlannedReset>,
}

impl ResetPlan {
    /// The offsets to commit.
    pub fn offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions
            .iter()
            .map(|(tp, p)| (tp.clone(), p.new))
            .collect()
    }
}

/// Where each of `partitions` goes when `group_id` is reset `to`, with the group's committed
/// offset now; nothing is committed. The group must be inactive: one with members (either
/// protocol, [`describe`]) fails with [`Error::GroupActive`], since the coordinator takes
/// commits from outside the group only while it has none; a group that does not exist yet is
/// planned for (the commit makes it), as kafka-consumer-groups.sh does.
///
/// The log's start and end are [`log_ranges`]' (the end by [`log_end`](crate::lag::log_end)'s
/// rule); a time is looked up with ListOffsets by timestamp. The call fails at the first
/// partition whose log range or time lookup failed, or ([`ResetTo::ShiftBy`]) that has no
/// committed offset ([`Error::NoCommittedOffset`]).
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn plan_reset(
    pool: &Pool,
    group_id: &str,
    partitions: &BTreeSet<TopicPartition>,
    to: ResetTo,
) -> Result<ResetPlan, Error> {
    check_inactive(pool, group_id).await?;
    let current = committed(pool, group_id).await?;
    let ranges = log_ranges(pool, partitions, IsolationLevel::ReadUncommitted).await?;
    let mut range = BTreeMap::new();
    for tp in partitions {
        let r = match ranges.get(tp) {
            Some(Ok(r)) => *r,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(unknown_partition(tp)),
        };
        range.insert(tp.clone(), (r.start, r.end));
    }
    let at_time = match to {
        ResetTo::Timestamp(ts) => Some(ts),
        ResetTo::ByDuration(d) => Some(
            pool.clock()
                .now_ms()
                .saturating_sub(d.as_millis() as i64)
                .max(0),
        ),
        _ => None,
    };
    let found = match at_time {
        Some(ts) => {
            let specs = partitions
                .iter()
                .map(|tp| (tp.clone(), OffsetSpec::Timestamp(ts)))
                .collect();
            let mut found = BTreeMap::new();
            for (tp, listed) in
                list_offsets_each(pool, &specs, IsolationLevel::ReadUncommitted).await?
            {
                found.insert(tp, listed?.offset);
            }
            found
        }
        None => BTreeMap::new(),
    };
    let mut planned = BTreeMap::new();
    for (tp, (start, end)) in range {
        let current = current.get(&tp).copied();
        let new = new_offset(to, start, end, current, found.get(&tp).copied())
            .ok_or_else(|| Error::NoCommittedOffset(tp.clone()))?;
        planned.insert(tp, PlannedReset { current, new });
    }
    Ok(ResetPlan {
        group_id: group_id.to_owned(),
        partitions: planned,
    })
}

/// Where a partition whose log runs from `start` to `end` goes `to`, from its committed
/// offset `current` and the offset a time lookup `found` (-1 when no record is that recent);
/// `None` for a shift without a committed offset.
fn new_offset(
    to: ResetTo,
    start: i64,
    end: i64,
    current: Option<i64>,
    found: Option<i64>,
) -> Option<i64> {
    let within = |o: i64| o.clamp(start, end.max(start));
    Some(match to {
        ResetTo::Earliest => start,
        ResetTo::Latest => end,
        ResetTo::Offset(o) => within(o),
        // No record that recent: the end of the log, as kafka-consumer-groups.sh does.
        ResetTo::Timestamp(_) | ResetTo::ByDuration(_) => found.filter(|&o| o >= 0).unwrap_or(end),
        ResetTo::ShiftBy(n) => within(current?.saturating_add(n)),
    })
}

/// Commits `plan` ([`commit_offsets`]); fails with the first partition's error, if any.
///
/// # Cancel safety
///
/// As [`commit_offsets`]'s: a dropped reset may have committed some or all of the plan's offsets;
/// execute it again to have all of them.
pub async fn execute_reset(pool: &Pool, plan: &ResetPlan) -> Result<(), Error> {
    let outcomes = commit_offsets(pool, &plan.group_id, &plan.offsets()).await?;
    match outcomes.into_values().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Commits `offsets` for `group_id` from outside the group (OffsetCommit with generation -1
/// and no member id), which a coordinator accepts only while the group has no members
/// (otherwise, per partition, UNKNOWN_MEMBER_ID or ILLEGAL_GENERATION). Each partition has its
/// own outcome, as kadm's `CommitOffsets` and the Java admin client's
/// `alterConsumerGroupOffsets` give one per partition. Coordinator errors
/// (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR), for the group
/// or a partition, and a coordinator that cannot be reached are retried, the coordinator found
/// again, with a growing backoff until `default.api.timeout.ms`; the call fails as a whole only
/// when the coordinator cannot be found or reached by then.
///
/// # Cancel safety
///
/// Not cancel-safe in effect: dropped once an OffsetCommit went out, some or all of the offsets may
/// be committed (a retry commits only those still to do). Calling it again with the same offsets is
/// safe and commits the rest: a commit of the same offset changes nothing.
pub async fn commit_offsets(
    pool: &Pool,
    group_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, Result<(), Error>>, Error> {
    let retry = Retry::new(pool);
    let mut out = BTreeMap::new();
    let mut todo = offsets.clone();
    let mut attempts = 0;
    loop {
        let retry_after = match commit_once(pool, group_id, &todo).await {
            Ok(answered) => {
                let mut again = BTreeMap::new();
                let mut last = None;
                for (tp, offset) in todo {
                    // A partition the answer leaves out was not committed.
                    let code = answered
                        .get(&tp)
                        .copied()
                        .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
                    match Error::partition(ApiKey::OffsetCommit, code, &tp) {
                        None => {
                            out.insert(tp, Ok(()));
                        }
                        Some(e) if is_retriable_coordinator_error(&e) => {
                            again.insert(tp.clone(), offset);
                            out.insert(tp, Err(e.clone()));
                            last = Some(e);
                        }
                        Some(e) => {
                            out.insert(tp, Err(e));
                        }
                    }
                }
                todo = again;
                match last {
                    // Partitions still to commit: if the time is up, they keep their errors.
                    Some(e) => e,
                    None => break,
                }
            }
            Err(e) if is_retriable_coordinator_error(&e) => e,
            Err(e) => return Err(e),
        };
        if !retry.pause(attempts).await {
            if out.is_empty() {
                return Err(retry_after);
            }
            // Partitions never answered fail with the last error.
            for tp in todo.into_keys() {
                out.entry(tp).or_insert_with(|| Err(retry_after.clone()));
            }
            break;
        }
        attempts += 1;
        tracing::debug!(group_id, attempts, error = %retry_after, "committing again");
    }
    Ok(out)
}

/// One OffsetCommit of `offsets` for `group_id` from outside the group, at its coordinator
/// found anew: each partition's error code.
async fn commit_once(
    pool: &Pool,
    group_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<BTreeMap<TopicPartition, i16>, Error> {
    let c = find_coordinator_once(pool, group_id).await?;
    let conn = pool
        .connection(BrokerTarget::Dedicated(c.id, Purpose::Coordinator))
        .await?;
    let v = conn.version(ApiKey::OffsetCommit)?;
    let request = CommitRequest {
        group_id: group_id.to_owned(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect(),
    };
    let req =
        offset_commit_request(&request, v).map_err(|e| Error::version(ApiKey::OffsetCommit, e))?;
    Ok(offset_commit_response(conn.send(&req).await?))
}

/// Fails with [`Error::GroupActive`] when `group_id` has members; a group Kafka does not know
/// (GROUP_ID_NOT_FOUND) has none.
async fn check_inactive(pool: &Pool, group_id: &str) -> Result<(), Error> {
    let d = match describe(pool, group_id).await {
        Ok(d) => d,
        Err(e) if e.code() == Some(ResponseError::GroupIdNotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if d.members.is_empty() {
        return Ok(());
    }
    Err(Error::GroupActive {
        group_id: group_id.to_owned(),
        members: d.members.len(),
        state: d.state,
    })
}

/// The group's committed offsets (the next offset to consume) of every partition it has one
/// for.
async fn committed(pool: &Pool, group_id: &str) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    let mut answers =
        committed_offsets_of_groups(pool, &[group_id.to_owned()], None, false).await?;
    let offsets = answers.remove(group_id).unwrap_or_else(|| {
        Err(Error::Unsupported {
            api: Some(ApiKey::OffsetFetch),
            reason: format!("no answer for group {group_id:?}"),
        })
    })?;
    Ok(offsets
        .into_iter()
        .filter_map(|(tp, p)| {
            let offset = p.committed?.offset;
            (p.error_code == 0 && offset >= 0).then_some((tp, offset))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each target within a log from 10 to 30, the group at 20.
    #[test]
    fn every_target_stays_within_the_log() {
        let at = |to, found| new_offset(to, 10, 30, Some(20), found);
        assert_eq!(at(ResetTo::Earliest, None), Some(10));
        assert_eq!(at(ResetTo::Latest, None), Some(30));
        assert_eq!(at(ResetTo::Offset(12), None), Some(12));
        assert_eq!(
            at(ResetTo::Offset(999), None),
            Some(30),
            "kept within the log"
        );
        assert_eq!(at(ResetTo::Offset(-5), None), Some(10));
        assert_eq!(at(ResetTo::Timestamp(5), Some(17)), Some(17));
        // No record that recent: the end.
        assert_eq!(at(ResetTo::Timestamp(5), Some(-1)), Some(30));
        assert_eq!(at(ResetTo::ByDuration(Duration::ZERO), None), Some(30));
        assert_eq!(at(ResetTo::ShiftBy(-5), None), Some(15));
        assert_eq!(at(ResetTo::ShiftBy(-50), None), Some(10));
        assert_eq!(at(ResetTo::ShiftBy(50), None), Some(30));
        assert_eq!(new_offset(ResetTo::ShiftBy(1), 10, 30, None, None), None);
        // An empty log whose end is behind its start (a start moved by retention): the start.
        assert_eq!(new_offset(ResetTo::Offset(3), 10, 5, None, None), Some(10));
    }

    #[test]
    fn a_plan_commits_its_new_offsets() {
        let tp = TopicPartition::new("t", 0);
        let plan = ResetPlan {
            group_id: "g".to_owned(),
            partitions: BTreeMap::from([(
                tp.clone(),
                PlannedReset {
                    current: Some(30),
                    new: 12,
                },
            )]),
        };
        assert_eq!(plan.offsets(), BTreeMap::from([(tp, 12)]));
    }
}
