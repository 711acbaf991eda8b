//! Partition assignors (`partition.assignment.strategy`): what the group leader runs to split
//! the subscribed partitions among the members.
//!
//! - [`RangeAssignor`] (`range`): per topic, contiguous ranges; rack-aware (KIP-881).
//! - [`RoundRobinAssignor`] (`roundrobin`): all partitions dealt out in turn; not rack-aware,
//!   as in the Java client.
//! - [`StickyAssignor`] (`sticky`, eager) and [`CooperativeStickyAssignor`]
//!   (`cooperative-sticky`, KIP-429): balanced, keeping what members owned; rack-aware.
//!
//! Each gives the Java client's result for the same input (the classes of the same names in
//! `org.apache.kafka.clients.consumer`). Where Java's result depends on the order it walks its
//! member `HashMap` (which member keeps a contested partition, who may keep the larger
//! quota), that order is reproduced from the member ids and their order in the JoinGroup
//! answer (see `java_order`), so kcon as a leader hands out what a Java leader would. See each
//! assignor for the remaining differences.
//!
//! Assignors are pure: no clock, no randomness, no state kept between calls.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use kcon_core::{BuiltinAssignor, TopicPartition};

use java_order::{JavaHashOrder, java_cmp, java_string_hash};
use kcon_codec::consumer_protocol::{Assignment, Subscription};

mod java_order;
mod rack;
mod range;
mod round_robin;
mod sticky;
#[cfg(test)]
mod tests;

pub use range::RangeAssignor;
pub use round_robin::RoundRobinAssignor;
pub use sticky::{CooperativeStickyAssignor, StickyAssignor};

/// How a group moves partitions between members (the Java client's
/// `ConsumerPartitionAssignor.RebalanceProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RebalanceProtocol {
    /// Every member gives up all its partitions before each rebalance.
    Eager,
    /// Members keep their partitions through a rebalance and give up only those that move
    /// (KIP-429); a moved partition reaches its new owner in a follow-up rebalance.
    Cooperative,
}

/// One member of the group as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id` (static membership, KIP-345).
    pub group_instance_id: Option<String>,
    /// Its decoded subscription.
    pub subscription: Subscription,
}

/// One partition of a topic, as the assignors need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The racks of the brokers holding its replicas (all replicas, not just the ISR, as the
    /// Java client counts them); empty when unknown.
    pub replica_racks: Vec<String>,
}

impl PartitionInfo {
    /// A partition whose replicas are on `replica_racks`.
    pub fn new(partition: i32, replica_racks: Vec<String>) -> Self {
        PartitionInfo {
            partition,
            replica_racks,
        }
    }
}

/// The topics that exist (as far as metadata knows), each with its partitions sorted by index.
/// Topics nobody subscribes to are ignored; subscribed topics missing here are skipped.
pub type TopicPartitions = BTreeMap<String, Vec<PartitionInfo>>;

/// A partition assignment strategy, run by the group leader.
pub trait Assignor: Send + Sync + fmt::Debug {
    /// The protocol name members advertise in JoinGroup: `range`, `roundrobin`, `sticky`,
    /// `cooperative-sticky`.
    fn name(&self) -> &'static str;

    /// The rebalance protocols it can run under, preferred first (the Java client's
    /// `supportedProtocols()`).
    fn supported_protocols(&self) -> &'static [RebalanceProtocol];

    /// What a member puts in `Subscription::user_data` for this assignor, given the
    /// partitions it was last assigned and the generation of that assignment (-1 if none):
    /// the Java client's `subscriptionUserData`. `None` for assignors that use none.
    fn user_data(&self, _owned: &[TopicPartition], _generation_id: i32) -> Option<Bytes> {
        None
    }

    /// The assignment for each member (one entry per member id, possibly empty).
    ///
    /// `members` should be in the JoinGroup answer's order: where the Java leader's result
    /// depends on its member map's order, that order is derived from this one.
    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &TopicPartitions,
    ) -> Result<BTreeMap<String, Assignment>, AssignError>;
}

/// The Kafka names of the built-in assignors.
pub const ASSIGNOR_NAMES: &[&str] = &[
    BuiltinAssignor::Range.name(),
    BuiltinAssignor::RoundRobin.name(),
    BuiltinAssignor::Sticky.name(),
    BuiltinAssignor::CooperativeSticky.name(),
];

/// A built-in assignor by its Kafka name (`range`, `roundrobin`, `sticky`,
/// `cooperative-sticky`) or by the Java client's class name
/// (`org.apache.kafka.clients.consumer.RangeAssignor`, ...), as `partition.assignment.strategy`
/// accepts both.
pub fn assignor(name: &str) -> Option<Arc<dyn Assignor>> {
    BuiltinAssignor::from_name(name).map(builtin)
}

/// The implementation of the built-in assignor `which`.
pub fn builtin(which: BuiltinAssignor) -> Arc<dyn Assignor> {
    match which {
        BuiltinAssignor::Range => Arc::new(RangeAssignor::new()),
        BuiltinAssignor::RoundRobin => Arc::new(RoundRobinAssignor::new()),
        BuiltinAssignor::Sticky => Arc::new(StickyAssignor::new()),
        BuiltinAssignor::CooperativeSticky => Arc::new(CooperativeStickyAssignor::new()),
    }
}

/// Why an assignor could not produce an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssignError {
    /// Two members have the same member id (a JoinGroup answer never has that).
    DuplicateMember {
        /// The repeated id.
        member_id: String,
    },
    /// The assignor reached a state its algorithm rules out (where the Java client throws
    /// `IllegalStateException`); a bug, reported instead of a wrong assignment.
    Inconsistent {
        /// The assignor.
        assignor: &'static str,
        /// What went wrong.
        reason: &'static str,
    },
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssignError::DuplicateMember { member_id } => {
                write!(f, "member id {member_id:?} appears twice in the group")
            }
            AssignError::Inconsistent { assignor, reason } => {
                write!(f, "the {assignor} assignor failed: {reason}")
            }
        }
    }
}

impl std::error::Error for AssignError {}

/// A partition inside an assignment run: (index into [`GroupView::topics`], position in that
/// topic's sorted partitions). Its order is (topic name, partition index).
type Tp = (usize, usize);

/// The input of an assignment, normalised once for every assignor.
#[derive(Debug)]
struct GroupView<'a> {
    /// Sorted by member id as Java's `String.compareTo` sorts; a member is referred to by its
    /// index here.
    members: Vec<Member<'a>>,
    /// The topics at least one member subscribes to that exist and have partitions, sorted by
    /// name (what the Java client's `AbstractPartitionAssignor.assign` keeps).
    topics: Vec<Topic<'a>>,
    /// Member indices in the order a Java leader walks its member map (a `HashMap` filled in
    /// JoinGroup answer order, which is the order of `members` given to `assign`).
    hash_order: Vec<usize>,
    /// Each member's position in `hash_order`.
    hash_rank: Vec<usize>,
}

#[derive(Debug)]
struct Member<'a> {
    id: &'a str,
    instance_id: Option<&'a str>,
    /// The member's rack; an empty rack id counts as none, as in the Java assignors.
    rack: Option<&'a str>,
    /// Its subscription as a set (a topic listed twice counts once), including topics that
    /// do not exist.
    topics: BTreeSet<&'a str>,
    subscription: &'a Subscription,
}

#[derive(Debug)]
struct Topic<'a> {
    name: &'a str,
    /// Sorted by partition index, each index once.
    partitions: Vec<&'a PartitionInfo>,
}

impl<'a> GroupView<'a> {
    fn new(
        members: &'a [MemberSubscription],
        topics: &'a TopicPartitions,
    ) -> Result<Self, AssignError> {
        let mut list: Vec<(usize, Member<'a>)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    i,
                    Member {
                        id: &m.member_id,
                        instance_id: m.group_instance_id.as_deref(),
                        rack: m.subscription.rack_id.as_deref().filter(|r| !r.is_empty()),
                        topics: m.subscription.topics.iter().map(String::as_str).collect(),
                        subscription: &m.subscription,
                    },
                )
            })
            .collect();
        list.sort_by(|a, b| java_cmp(a.1.id, b.1.id));
        if let Some(pair) = list.windows(2).find(|w| w[0].1.id == w[1].1.id) {
            return Err(AssignError::DuplicateMember {
                member_id: pair[0].1.id.to_owned(),
            });
        }
        // Input position → sorted index, to replay the Java leader's inserts in input order.
        let mut sorted_index = vec![0; list.len()];
        for (sorted, (input, _)) in list.iter().enumerate() {
            sorted_index[*input] = sorted;
        }
        let mut map = JavaHashOrder::new();
        for (input, m) in members.iter().enumerate() {
            map.insert(sorted_index[input], java_string_hash(&m.member_id));
        }
        let hash_order = map.ordered();
        let mut hash_rank = vec![0; list.len()];
        for (rank, &m) in hash_order.iter().enumerate() {
            hash_rank[m] = rank;
        }
        let list: Vec<Member<'a>> = list.into_iter().map(|(_, m)| m).collect();
        let subscribed: BTreeSet<&str> =
            list.iter().flat_map(|m| m.topics.iter().copied()).collect();
        let topics = topics
            .iter()
            .filter(|(name, partitions)| {
                subscribed.contains(name.as_str()) && !partitions.is_empty()
            })
            .map(|(name, partitions)| {
                let mut partitions: Vec<&PartitionInfo> = partitions.iter().collect();
                partitions.sort_by_key(|p| p.partition);
                partitions.dedup_by_key(|p| p.partition);
                Topic { name, partitions }
            })
            .collect();
        Ok(GroupView {
            members: list,
            topics,
            hash_order,
            hash_rank,
        })
    }

    /// The index of an existing, subscribed topic.
    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.binary_search_by(|t| t.name.cmp(name)).ok()
    }

    /// The internal form of `tp`, if that partition exists.
    fn lookup(&self, tp: &TopicPartition) -> Option<Tp> {
        let t = self.topic_index(&tp.topic)?;
        let pos = self.topics[t]
            .partitions
            .binary_search_by_key(&tp.partition, |p| p.partition)
            .ok()?;
        Some((t, pos))
    }

    fn partition_id(&self, tp: Tp) -> i32 {
        self.topics[tp.0].partitions[tp.1].partition
    }

    fn topic_partition(&self, tp: Tp) -> TopicPartition {
        TopicPartition::new(self.topics[tp.0].name, self.partition_id(tp))
    }

    fn subscribes(&self, member: usize, topic: usize) -> bool {
        self.members[member]
            .topics
            .contains(self.topics[topic].name)
    }

    /// All partitions of every topic, in (topic, partition) order.
    fn all_partitions(&self) -> impl Iterator<Item = Tp> + '_ {
        self.topics
            .iter()
            .enumerate()
            .flat_map(|(t, topic)| (0..topic.partitions.len()).map(move |pos| (t, pos)))
    }

    /// Per-member partition lists (indexed like `members`) as the assignors' answer.
    fn result(&self, per_member: Vec<Vec<Tp>>) -> BTreeMap<String, Assignment> {
        self.members
            .iter()
            .zip(per_member)
            .map(|(m, tps)| {
                let partitions = tps.into_iter().map(|tp| self.topic_partition(tp)).collect();
                (
                    m.id.to_owned(),
                    Assignment {
                        partitions,
                        user_data: None,
                    },
                )
            })
            .collect()
    }

    /// The member order of the Java client's `AbstractPartitionAssignor.MemberInfo`, used by
    /// range and roundrobin: members with a `group.instance.id` first, sorted by it (so
    /// static members keep their place across restarts, KIP-345), then the others by member
    /// id. Ties (two members with the same instance id) keep the member map's order, as
    /// Java's stable sort does.
    fn member_info_cmp(&self, a: usize, b: usize) -> Ordering {
        let (ma, mb) = (&self.members[a], &self.members[b]);
        let by_instance = match (ma.instance_id, mb.instance_id) {
            (Some(x), Some(y)) => java_cmp(x, y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let by_id = || match (ma.instance_id, mb.instance_id) {
            (None, None) => java_cmp(ma.id, mb.id),
            _ => Ordering::Equal,
        };
        by_instance
            .then_with(by_id)
            .then_with(|| self.hash_rank[a].cmp(&self.hash_rank[b]))
    }
}
