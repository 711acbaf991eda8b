//! A group described whichever protocol it runs, with the partitions each member owns, and
//! its lag with each partition's owner.
//!
//! A classic group's members carry their assignments encoded (the consumer protocol's
//! `Assignment`, DescribeGroups' `member_assignment`); a consumer-protocol group's (KIP-848)
//! come decoded from ConsumerGroupDescribe, with epochs and target assignments besides; a
//! share group's (KIP-932) from ShareGroupDescribe. All are joined into one
//! [`DescribedGroup`], as the Java admin client's `describeConsumerGroups` and franz-go's kadm
//! (`DescribeGroups`, `Lag`) give one shape whatever the protocol.

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::consumer_protocol::Assignment;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::{IsolationLevel, TopicPartition};
use kcon_pool::Pool;
use tracing::warn;

use crate::error::Error;
use crate::groups::{
    ConsumerGroupDescription, GroupDescription, describe_consumer_group_in, describe_group_in,
    find_coordinator_once,
};
use crate::lag::{GroupLag, LagOptions, group_lag};
use crate::retry::Retry;
use crate::share::{
    SHARE_PROTOCOL_TYPE, ShareDescribed, ShareGroupDescription, ShareGroupLag,
    listed_as_share_group, share_group_describe, share_group_lag,
};

/// The protocol type of consumer groups (classic groups of Kafka consumers, and every
/// consumer-protocol group); Kafka Connect's groups say `connect`.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group as [`describe`] describes it, whichever protocol it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// The group id.
    pub group_id: String,
    /// Its state: classic `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable`,
    /// `Dead`; consumer protocol `Empty`, `Assigning`, `Reconciling`, `Stable`, `Dead`; share
    /// group `Empty`, `Stable`, `Dead`.
    pub state: String,
    /// Its protocol type: [`CONSUMER_PROTOCOL_TYPE`] for consumer groups of either protocol,
    /// [`SHARE_PROTOCOL_TYPE`] for a share group.
    pub protocol_type: String,
    /// The assignor: a classic group's chosen protocol (when stable), a consumer-protocol or
    /// share group's coordinator assignor.
    pub assignor: String,
    /// Its members.
    pub members: Vec<DescribedMember>,
    /// For a consumer-protocol group (KIP-848), ConsumerGroupDescribe's whole answer: the
    /// group and assignment epochs, each member's epoch, subscriptions and target assignment.
    /// `None` for a classic group.
    pub consumer_protocol: Option<ConsumerGroupDescription>,
    /// For a share group (KIP-932), ShareGroupDescribe's whole answer: the group and
    /// assignment epochs, each member's epoch, rack and subscriptions. `None` for any other.
    pub share: Option<ShareGroupDescription>,
}

/// A member of a [`DescribedGroup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// The member id.
    pub member_id: String,
    /// `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// The partitions it owns now: a classic member's assignment decoded, a consumer-protocol
    /// member's current assignment, a share group member's assignment (a share group's
    /// partitions may be assigned to several members). `None` when unknown: a classic group
    /// of another protocol type, an assignment the broker left empty (Tansu always does) or
    /// one that does not decode.
    pub assignment: Option<Vec<TopicPartition>>,
}

impl DescribedGroup {
    /// The member that owns `tp`, if any member is known to (in a share group, the first of
    /// those assigned it: see [`owners`](Self::owners)).
    pub fn owner(&self, tp: &TopicPartition) -> Option<&DescribedMember> {
        self.members
            .iter()
            .find(|m| m.assignment.as_ref().is_some_and(|a| a.contains(tp)))
    }

    /// Every member known to own `tp`: at most one in a consumer group, any number in a share
    /// group.
    pub fn owners(&self, tp: &TopicPartition) -> Vec<&DescribedMember> {
        self.members
            .iter()
            .filter(|m| m.assignment.as_ref().is_some_and(|a| a.contains(tp)))
            .collect()
    }

    /// Every partition some member is known to own.
    pub fn assigned(&self) -> BTreeSet<TopicPartition> {
        self.members
            .iter()
            .flat_map(|m| m.assignment.iter().flatten().cloned())
            .collect()
    }

    /// A classic group as DescribeGroups describes it, each member's assignment decoded.
    pub fn from_classic(d: GroupDescription) -> DescribedGroup {
        let members = d
            .members
            .into_iter()
            .map(|m| DescribedMember {
                assignment: member_partitions(&d.protocol_type, &m.assignment),
                member_id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect();
        DescribedGroup {
            group_id: d.group_id,
            state: d.state,
            protocol_type: d.protocol_type,
            assignor: d.protocol,
            members,
            consumer_protocol: None,
            share: None,
        }
    }
}

impl From<ShareGroupDescription> for DescribedGroup {
    /// A share group: its members own what they are assigned.
    fn from(sg: ShareGroupDescription) -> DescribedGroup {
        let members = sg
            .members
            .iter()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                instance_id: None,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: Some(m.assignment.clone()),
            })
            .collect();
        DescribedGroup {
            group_id: sg.group_id.clone(),
            state: sg.state.clone(),
            protocol_type: SHARE_PROTOCOL_TYPE.to_owned(),
            assignor: sg.assignor.clone(),
            members,
            consumer_protocol: None,
            share: Some(sg),
        }
    }
}

impl From<ConsumerGroupDescription> for DescribedGroup {
    /// A consumer-protocol group: its members own their current assignments.
    fn from(cg: ConsumerGroupDescription) -> DescribedGroup {
        let members = cg
            .members
            .iter()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: Some(m.assignment.clone()),
            })
            .collect();
        DescribedGroup {
            group_id: cg.group_id.clone(),
            state: cg.state.clone(),
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            assignor: cg.assignor.clone(),
            members,
            consumer_protocol: Some(cg),
            share: None,
        }
    }
}

/// A member's partitions from its encoded classic assignment (consumer groups only); `None`
/// when unknown: another protocol type, none sent, or one that does not decode (logged).
fn member_partitions(protocol_type: &str, assignment: &[u8]) -> Option<Vec<TopicPartition>> {
    if protocol_type != CONSUMER_PROTOCOL_TYPE || assignment.is_empty() {
        return None;
    }
    match Assignment::decode(assignment) {
        Ok(a) => Some(a.partitions),
        Err(e) => {
            warn!(error = %e, "a member's assignment does not decode");
            None
        }
    }
}

/// `group_id` described whichever protocol it runs: ConsumerGroupDescribe first (a
/// consumer-protocol group, KIP-848), then DescribeGroups (a classic group), as
/// [`describe_consumer_group`](crate::describe_consumer_group) says when to fall back; a group DescribeGroups does not know
/// either (GROUP_ID_NOT_FOUND, or `Dead` without members, which is how Kafka answers a share
/// group below DescribeGroups v6) is asked for with ShareGroupDescribe (a share group,
/// KIP-932) where the coordinator offers it. Where it does not, and its ListGroups lists the
/// group as a share group, the call fails with [`Error::Unsupported`] naming
/// ShareGroupDescribe. A group error code fails the call ([`Error::Broker`] with
/// DescribeGroups' code: GROUP_ID_NOT_FOUND for a group Kafka does not know; Tansu describes an
/// unknown group as `Empty` without error; or ShareGroupDescribe's for a share group).
///
/// A coordinator not ready for the group (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
/// COORDINATOR_LOAD_IN_PROGRESS: a broker just started) or unreachable is asked again, found
/// anew each time, with a growing backoff, until `default.api.timeout.ms` (the pool's) has
/// passed since the call began; then the call fails with the last error.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe(pool: &Pool, group_id: &str) -> Result<DescribedGroup, Error> {
    let retry = Retry::new(pool);
    if let Some(cg) = describe_consumer_group_in(&retry, pool, group_id).await? {
        return Ok(DescribedGroup::from(cg));
    }
    let d = describe_group_in(&retry, pool, group_id).await?;
    if unknown_to_describe_groups(&d) {
        let (c, described) = retry
            .run("ShareGroupDescribe", || async {
                let c = find_coordinator_once(pool, group_id).await?;
                let described = share_group_describe(pool, &c, group_id).await?;
                Ok((c, described))
            })
            .await?;
        match described {
            ShareDescribed::Group(sg) => return Ok(DescribedGroup::from(sg)),
            ShareDescribed::NotFound => {}
            ShareDescribed::NotOffered(e) => {
                if listed_as_share_group(pool, &c, group_id).await {
                    return Err(e);
                }
            }
        }
    }
    if let Some(e) = Error::broker(ApiKey::DescribeGroups, d.error_code) {
        return Err(e);
    }
    Ok(DescribedGroup::from_classic(d))
}

/// Whether DescribeGroups' answer says it knows no such classic group: GROUP_ID_NOT_FOUND
/// (v6+), or `Dead` with no members and no protocol type (below v6).
fn unknown_to_describe_groups(d: &GroupDescription) -> bool {
    d.error_code == ResponseError::GroupIdNotFound.code()
        || (d.error_code == 0
            && d.state == "Dead"
            && d.members.is_empty()
            && d.protocol_type.is_empty())
}

/// A group's description and its lag, as [`describe_group_lag`] measures them.
#[derive(Debug, Clone)]
pub struct DescribedGroupLag {
    /// The group, its members and what each owns.
    pub description: DescribedGroup,
    /// The lag of every partition with a committed offset and of every partition a member
    /// owns. A share group commits no offsets: none here, its lag is in `share`.
    pub lag: GroupLag,
    /// For a share group, each share-partition's start offset and lag, and every partition a
    /// member is assigned.
    pub share: Option<ShareGroupLag>,
}

impl DescribedGroupLag {
    /// The member that owns `tp`, if any member is known to.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&DescribedMember> {
        self.description.owner(tp)
    }

    /// Whether the group is there at all: a share group ShareGroupDescribe described, or a
    /// group with members or committed offsets. Apache Kafka describes a group it does not
    /// know as `Dead`, Tansu as `Empty`; either way a group with neither is none.
    pub fn exists(&self) -> bool {
        self.description.share.is_some()
            || !self.description.members.is_empty()
            || self.lag.partitions.values().any(|p| p.committed.is_some())
    }
}

/// `group_id` described ([`describe`]) and its lag measured ([`group_lag`]) over every
/// partition it has a committed offset for and every partition a member owns (those without
/// a committed offset with their log range and no lag), as kadm's `Lag` joins the two. A
/// share group's lag is [`share_group_lag`](crate::share_group_lag)'s instead, over every
/// share-partition it has state for and every partition a member is assigned (`isolation`
/// does not apply: a share group's isolation level is the group's own configuration, and the
/// end counted to is the high watermark).
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn describe_group_lag(
    pool: &Pool,
    group_id: &str,
    isolation: IsolationLevel,
) -> Result<DescribedGroupLag, Error> {
    let description = describe(pool, group_id).await?;
    if description.share.is_some() {
        let share = share_group_lag(pool, group_id, &description.assigned()).await?;
        let lag = GroupLag {
            group_id: group_id.to_owned(),
            measured_at_ms: share.measured_at_ms,
            partitions: BTreeMap::new(),
        };
        return Ok(DescribedGroupLag {
            description,
            lag,
            share: Some(share),
        });
    }
    let options = LagOptions {
        isolation,
        include: description.assigned(),
    };
    let lag = group_lag(pool, group_id, &options).await?;
    Ok(DescribedGroupLag {
        description,
        lag,
        share: None,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::groups::{ConsumerGroupMember, GroupMemberDescription};

    fn orders(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    fn consumer_group() -> ConsumerGroupDescription {
        let member =
            |id: &str, epoch: i32, owned: Vec<TopicPartition>, target| ConsumerGroupMember {
                member_id: id.to_owned(),
                instance_id: None,
                rack_id: None,
                member_epoch: epoch,
                client_id: "kcon".to_owned(),
                client_host: "/127.0.0.1".to_owned(),
                subscribed_topics: vec!["orders".to_owned()],
                subscribed_regex: None,
                assignment: owned,
                target_assignment: target,
            };
        ConsumerGroupDescription {
            group_id: "g".to_owned(),
            state: "Reconciling".to_owned(),
            group_epoch: 5,
            assignment_epoch: 5,
            assignor: "uniform".to_owned(),
            members: vec![
                member("m-1", 5, vec![orders(0), orders(1)], vec![orders(0)]),
                member("m-2", 4, vec![], vec![orders(1)]),
            ],
        }
    }

    /// A consumer-protocol group's members own their current assignments (not their
    /// targets); the assignor is the coordinator's.
    #[test]
    fn a_consumer_protocol_group_owns_its_current_assignments() {
        let d = DescribedGroup::from(consumer_group());
        assert_eq!(d.protocol_type, "consumer");
        assert_eq!(d.assignor, "uniform");
        let assignments: Vec<Option<Vec<TopicPartition>>> =
            d.members.iter().map(|m| m.assignment.clone()).collect();
        assert_eq!(
            assignments,
            [Some(vec![orders(0), orders(1)]), Some(vec![])]
        );
        assert_eq!(
            d.owner(&orders(1)).map(|m| m.member_id.as_str()),
            Some("m-1")
        );
        assert_eq!(d.assigned(), BTreeSet::from([orders(0), orders(1)]));
        assert_eq!(d.consumer_protocol.map(|c| c.group_epoch), Some(5));
    }

    /// A share group's members own what they are assigned, a partition possibly by several;
    /// the protocol type is `share`.
    #[test]
    fn a_share_group_owns_its_assignments_shared() {
        use crate::share::ShareGroupMember;
        let member = |id: &str, assignment: Vec<TopicPartition>| ShareGroupMember {
            member_id: id.to_owned(),
            rack_id: None,
            member_epoch: 3,
            client_id: "kcon".to_owned(),
            client_host: "/10.0.0.2".to_owned(),
            subscribed_topics: vec!["orders".to_owned()],
            assignment,
        };
        let sg = ShareGroupDescription {
            group_id: "s".to_owned(),
            state: "Stable".to_owned(),
            group_epoch: 3,
            assignment_epoch: 3,
            assignor: "simple".to_owned(),
            members: vec![
                member("a", vec![orders(0), orders(1)]),
                member("b", vec![orders(1)]),
            ],
        };
        let d = DescribedGroup::from(sg);
        assert_eq!(
            (d.protocol_type.as_str(), d.assignor.as_str()),
            ("share", "simple")
        );
        assert!(d.consumer_protocol.is_none());
        assert_eq!(d.share.as_ref().map(|s| s.group_epoch), Some(3));
        let owners: Vec<&str> = d
            .owners(&orders(1))
            .iter()
            .map(|m| m.member_id.as_str())
            .collect();
        assert_eq!(owners, ["a", "b"]);
        assert_eq!(d.owner(&orders(1)).map(|m| m.member_id.as_str()), Some("a"));
        assert!(d.owners(&orders(2)).is_empty());
        assert_eq!(d.assigned(), BTreeSet::from([orders(0), orders(1)]));
    }

    /// What DescribeGroups says of a group it does not know, at either side of v6; a classic
    /// group that is empty or has members is known.
    #[test]
    fn describe_groups_does_not_know_a_share_group() {
        let group = |error_code: i16, state: &str, protocol_type: &str| GroupDescription {
            group_id: "g".to_owned(),
            error_code,
            state: state.to_owned(),
            protocol_type: protocol_type.to_owned(),
            protocol: String::new(),
            members: vec![],
        };
        assert!(unknown_to_describe_groups(&group(69, "Dead", "")));
        assert!(unknown_to_describe_groups(&group(0, "Dead", "")));
        assert!(!unknown_to_describe_groups(&group(0, "Empty", "consumer")));
        assert!(!unknown_to_describe_groups(&group(0, "Empty", "")));
        assert!(!unknown_to_describe_groups(&group(0, "Dead", "consumer")));
        assert!(!unknown_to_describe_groups(&group(30, "", "")));
    }

    /// A classic consumer group's assignments are decoded; one left empty (Tansu) or of
    /// another protocol type is unknown, and owns nothing.
    #[test]
    fn a_classic_group_decodes_its_members_assignments() {
        let assignment = Assignment {
            partitions: vec![orders(2)],
            ..Assignment::default()
        };
        let member = |id: &str, assignment: Bytes| GroupMemberDescription {
            member_id: id.to_owned(),
            group_instance_id: Some(format!("{id}-static")),
            client_id: "c".to_owned(),
            client_host: "/10.0.0.1".to_owned(),
            metadata: Bytes::new(),
            assignment,
        };
        let classic = |protocol_type: &str| GroupDescription {
            group_id: "g".to_owned(),
            error_code: 0,
            state: "Stable".to_owned(),
            protocol_type: protocol_type.to_owned(),
            protocol: "range".to_owned(),
            members: vec![
                member("a", assignment.encode(3)),
                member("b", Bytes::new()),
                member("c", Bytes::from_static(b"\x00")),
            ],
        };
        let d = DescribedGroup::from_classic(classic("consumer"));
        assert_eq!(d.assignor, "range");
        assert!(d.consumer_protocol.is_none());
        let assignments: Vec<Option<Vec<TopicPartition>>> =
            d.members.iter().map(|m| m.assignment.clone()).collect();
        assert_eq!(assignments, [Some(vec![orders(2)]), None, None]);
        assert_eq!(d.members[0].instance_id.as_deref(), Some("a-static"));
        assert_eq!(d.owner(&orders(2)).map(|m| m.member_id.as_str()), Some("a"));
        let connect = DescribedGroup::from_classic(classic("connect"));
        assert!(connect.members.iter().all(|m| m.assignment.is_none()));
        assert!(connect.assigned().is_empty());
    }
}
