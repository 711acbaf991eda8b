//! The sticky assignors, matching the Java client's `StickyAssignor` and
//! `CooperativeStickyAssignor` (both built on its `AbstractStickyAssignor`).
//!
//! One run:
//! 1. Each member's previous partitions and generation are read (`MemberData`): for `sticky`
//!    from its `StickyAssignorUserData`, for `cooperative-sticky` from the subscription's
//!    owned partitions and generation.
//! 2. Conflicting claims are settled: the claim from the highest generation wins; two claims
//!    from the same generation void both (the partition is then treated as moving).
//! 3. If every member subscribes to the same topics, the constrained builder
//!    ([`constrained`]) fills quotas; otherwise the general builder ([`general`]) keeps
//!    what it can and moves partitions until no move improves balance.
//! 4. `cooperative-sticky` then withholds every partition that would go straight from one
//!    member to another (KIP-429): its owner revokes it first, and the follow-up rebalance
//!    hands it out.
//!
//! Both are rack-aware (KIP-881): with racks, owned partitions whose replicas are not in the
//! member's rack are given up, and new partitions go to members in a replica's rack where
//! balance allows.
//!
//! Where kcon differs from Java's `AbstractStickyAssignor`, on input Java mishandles:
//! - Java keeps the highest generation it has seen in a field, across calls; kcon takes the
//!   highest in the current input. The same within a group, whose generations only grow.
//! - "Every member subscribes to the same topics" compares topic sets; Java's check skips
//!   members with an empty subscription and could then give them partitions.
//! - Claims on partitions that do not exist are dropped; a partition listed twice by one
//!   member counts once (Java would void it against itself).
//! - The general builder hands a partition back to its member of an older generation only if
//!   that member still subscribes to the topic (Java could assign it a topic it left).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::rack::{replica_racks, use_rack_aware_assignment};
use super::{
    AssignError, Assignor, GroupView, MemberSubscription, RebalanceProtocol, TopicPartitions, Tp,
};
use kcon_core::TopicPartition;

use kcon_codec::consumer_protocol::{Assignment, Subscription};

mod constrained;
mod general;
mod user_data;

/// The generation of a member that never had an assignment (Java's `DEFAULT_GENERATION`).
const DEFAULT_GENERATION: i32 = -1;

/// `sticky` (eager): as balanced as possible, and keeping as many of each member's previous
/// partitions as balance allows.
///
/// Members report what they had in `StickyAssignorUserData` (see [`Assignor::user_data`]),
/// because under the eager protocol they have revoked everything by the time they join. As
/// in the Java client's `StickyAssignor.memberData`, only the user data counts: a member
/// without it owned nothing, whatever its subscription's `owned_partitions` say (Java and
/// kcon members send user data once they have been assigned).
#[derive(Debug, Clone, Default)]
pub struct StickyAssignor {
    /// Java's test-only `preferRackAwareLogic`.
    pub(in crate::assignor) prefer_rack_aware: bool,
}

impl StickyAssignor {
    /// The sticky assignor.
    pub fn new() -> Self {
        StickyAssignor::default()
    }
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Eager]
    }

    /// `StickyAssignorUserData` v1 with `owned` and `generation_id`; none before the first
    /// assignment (no partitions and generation -1), as the Java client sends none then.
    fn user_data(&self, owned: &[TopicPartition], generation_id: i32) -> Option<Bytes> {
        if owned.is_empty() && generation_id < 0 {
            return None;
        }
        Some(user_data::encode_sticky(owned, generation_id))
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &TopicPartitions,
    ) -> Result<BTreeMap<String, Assignment>, AssignError> {
        let g = GroupView::new(members, topics)?;
        let (assignment, _) = run(&g, Flavour::Eager, self.prefer_rack_aware)?;
        Ok(g.result(assignment))
    }
}

/// `cooperative-sticky`: the sticky assignment under the cooperative protocol (KIP-429).
///
/// A partition that would move from one member to another in this rebalance is assigned to
/// no one: its owner sees it revoked and rejoins, and the next rebalance (where nobody owns
/// it) gives it to its new member. Members report their partitions in the subscription's
/// `owned_partitions` and `generation_id` (v2+); older subscriptions carry the generation in
/// `CooperativeStickyAssignorUserData`.
#[derive(Debug, Clone, Default)]
pub struct CooperativeStickyAssignor {
    /// Java's test-only `preferRackAwareLogic`.
    pub(in crate::assignor) prefer_rack_aware: bool,
}

impl CooperativeStickyAssignor {
    /// The cooperative-sticky assignor.
    pub fn new() -> Self {
        CooperativeStickyAssignor::default()
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Cooperative, RebalanceProtocol::Eager]
    }

    /// `CooperativeStickyAssignorUserData` v0: the generation, always sent (-1 before the
    /// first assignment), as the Java client does.
    fn user_data(&self, _owned: &[TopicPartition], generation_id: i32) -> Option<Bytes> {
        Some(user_data::encode_generation(generation_id))
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &TopicPartitions,
    ) -> Result<BTreeMap<String, Assignment>, AssignError> {
        let g = GroupView::new(members, topics)?;
        let (mut assignment, transferring) = run(&g, Flavour::Cooperative, self.prefer_rack_aware)?;
        // The constrained builder tracks moves as it goes; after the general one they are
        // found by comparing with what members own (Java's
        // `computePartitionsTransferringOwnership`).
        let transferring = match transferring {
            Some(t) => t,
            None => transferring_ownership(&g, &assignment),
        };
        for (tp, member) in transferring {
            assignment[member].retain(|&x| x != tp);
        }
        Ok(g.result(assignment))
    }
}

/// Partitions per member index.
type PerMember = Vec<Vec<Tp>>;

/// Partitions changing owner: partition → the member it goes to.
type Transfers = BTreeMap<Tp, usize>;

/// Which of the two assignors is running: they differ in where member data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Eager,
    Cooperative,
}

/// What a member had before this rebalance (Java's `AbstractStickyAssignor.MemberData`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberData {
    partitions: Vec<TopicPartition>,
    generation: Option<i32>,
}

impl MemberData {
    fn of(flavour: Flavour, subscription: &Subscription) -> MemberData {
        match flavour {
            // `StickyAssignor.memberData` reads the user data only.
            Flavour::Eager => match subscription.user_data.as_deref() {
                Some(bytes) if !bytes.is_empty() => {
                    let (partitions, generation) = user_data::decode_sticky(bytes);
                    MemberData {
                        partitions,
                        generation,
                    }
                }
                _ => MemberData {
                    partitions: Vec::new(),
                    generation: None,
                },
            },
            // `CooperativeStickyAssignor.memberData`: a v2+ subscription has the generation;
            // an older one may have it in the user data.
            Flavour::Cooperative => {
                if subscription.generation_id >= 0 {
                    return MemberData {
                        partitions: subscription.owned_partitions.clone(),
                        generation: Some(subscription.generation_id),
                    };
                }
                MemberData {
                    partitions: subscription.owned_partitions.clone(),
                    generation: subscription
                        .user_data
                        .as_deref()
                        .map(user_data::decode_generation),
                }
            }
        }
    }
}

/// Everything both builders need.
#[derive(Debug)]
struct Context<'g, 'a> {
    /// The assignor's name, for errors.
    assignor: &'static str,
    g: &'g GroupView<'a>,
    racks: RackInfo<'a>,
    /// Per member: what it had, its previous partitions that still exist and that no other
    /// member's claim beat (Java's `consumerToOwnedPartitions`).
    owned: Vec<Vec<Tp>>,
    data: Vec<MemberData>,
    /// Partitions claimed by several members of the same generation: nobody keeps them, and
    /// whoever gets them is treated as taking them over.
    multiply_owned: BTreeSet<Tp>,
    max_generation: i32,
    total_partitions: usize,
}

/// Runs the shared part: the assignment per member, and for the constrained builder the
/// partitions that change owner (partition → new member).
fn run(
    g: &GroupView<'_>,
    flavour: Flavour,
    prefer_rack_aware: bool,
) -> Result<(PerMember, Option<Transfers>), AssignError> {
    if g.members.is_empty() {
        return Ok((Vec::new(), Some(BTreeMap::new())));
    }
    let data: Vec<MemberData> = g
        .members
        .iter()
        .map(|m| MemberData::of(flavour, m.subscription))
        .collect();
    let (owned, multiply_owned, max_generation) = settle_ownership(g, &data);
    let ctx = Context {
        assignor: match flavour {
            Flavour::Eager => "sticky",
            Flavour::Cooperative => "cooperative-sticky",
        },
        g,
        racks: RackInfo::new(g, prefer_rack_aware),
        owned,
        data,
        multiply_owned,
        max_generation,
        total_partitions: g.topics.iter().map(|t| t.partitions.len()).sum(),
    };
    let first = &g.members[0].topics;
    if g.members.iter().all(|m| &m.topics == first) {
        let (assignment, transferring) = constrained::assign(&ctx)?;
        Ok((assignment, Some(transferring)))
    } else {
        Ok((general::assign(&ctx), None))
    }
}

/// Settles who had what (the ownership half of Java's `allSubscriptionsEqual`), members in
/// the Java leader's member-map order: the first claim of a partition stands until a claim
/// from a higher generation replaces it; a claim from the same generation as the standing
/// one voids the partition for both.
///
/// As in Java, the standing claim's generation is its member's subscription generation,
/// while the new claim's is its member data's (they differ only for `sticky` members whose
/// user data and subscription disagree). Unlike Java, claims on partitions that do not exist
/// are dropped (Java drops only those of unknown topics, and could then assign a partition
/// index the topic does not have), and a member claiming a partition twice claims it once
/// (Java would void it against itself).
fn settle_ownership(g: &GroupView<'_>, data: &[MemberData]) -> (Vec<Vec<Tp>>, BTreeSet<Tp>, i32) {
    let mut max_generation = DEFAULT_GENERATION;
    // Partition → (the member whose claim came last, whether that member holds it).
    let mut claims: BTreeMap<Tp, (usize, bool)> = BTreeMap::new();
    let mut multiply_owned = BTreeSet::new();
    let mut claimed_in_order: Vec<Vec<Tp>> = vec![Vec::new(); g.members.len()];
    for &m in &g.hash_order {
        let md = &data[m];
        let generation = md.generation.unwrap_or(DEFAULT_GENERATION);
        max_generation = max_generation.max(generation);
        let mut seen = BTreeSet::new();
        for tp in md.partitions.iter().filter_map(|tp| g.lookup(tp)) {
            if !seen.insert(tp) {
                continue;
            }
            claimed_in_order[m].push(tp);
            let Some(&(other, _)) = claims.get(&tp) else {
                claims.insert(tp, (m, true));
                continue;
            };
            let other_generation = g.members[other]
                .subscription
                .generation_id
                .max(DEFAULT_GENERATION);
            if generation == other_generation {
                multiply_owned.insert(tp);
                claims.insert(tp, (m, false));
            } else if generation > other_generation {
                claims.insert(tp, (m, true));
            }
        }
    }
    let owned = claimed_in_order
        .into_iter()
        .enumerate()
        .map(|(m, tps)| {
            tps.into_iter()
                .filter(|tp| claims.get(tp) == Some(&(m, true)))
                .collect()
        })
        .collect();
    (owned, multiply_owned, max_generation)
}

/// The partitions that go from one member to another (Java's
/// `CooperativeStickyAssignor.computePartitionsTransferringOwnership`): assigned to a member
/// that does not own them, while some member that owns them is not assigned them.
fn transferring_ownership(g: &GroupView<'_>, assignment: &[Vec<Tp>]) -> Transfers {
    let mut added: BTreeMap<Tp, usize> = BTreeMap::new();
    let mut revoked: BTreeSet<Tp> = BTreeSet::new();
    for (m, assigned) in assignment.iter().enumerate() {
        let owned: BTreeSet<Tp> = g.members[m]
            .subscription
            .owned_partitions
            .iter()
            .filter_map(|tp| g.lookup(tp))
            .collect();
        let assigned_set: BTreeSet<Tp> = assigned.iter().copied().collect();
        for &tp in assigned {
            if !owned.contains(&tp) {
                added.insert(tp, m);
            }
        }
        revoked.extend(owned.difference(&assigned_set));
    }
    added.retain(|tp, _| revoked.contains(tp));
    added
}

/// Racks as the sticky builders see them (Java's `AbstractStickyAssignor.RackInfo`).
#[derive(Debug)]
struct RackInfo<'a> {
    /// Whether rack-aware assignment is on; when off, nothing mismatches.
    active: bool,
    /// Per member, its rack (when active).
    consumer_racks: Vec<Option<&'a str>>,
    /// Per topic and partition position, its replica racks (when active).
    partition_racks: Vec<Vec<BTreeSet<&'a str>>>,
    /// Per topic and position, how many members sit in a rack holding a replica; empty when
    /// no member has a rack. Java computes this whenever members have racks, even when
    /// rack-aware assignment is off, and orders unassigned partitions by it.
    consumers_on_replica_racks: Vec<Vec<usize>>,
}

impl<'a> RackInfo<'a> {
    fn new(g: &GroupView<'a>, prefer_rack_aware: bool) -> Self {
        let mut members_by_rack: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &g.members {
            if let Some(rack) = m.rack {
                *members_by_rack.entry(rack).or_default() += 1;
            }
        }
        let inactive = |consumers_on_replica_racks| RackInfo {
            active: false,
            consumer_racks: Vec::new(),
            partition_racks: Vec::new(),
            consumers_on_replica_racks,
        };
        if members_by_rack.is_empty() {
            return inactive(Vec::new());
        }
        let partition_racks: Vec<Vec<BTreeSet<&str>>> = g
            .topics
            .iter()
            .map(|t| t.partitions.iter().map(|p| replica_racks(p)).collect())
            .collect();
        let consumers_on_replica_racks = partition_racks
            .iter()
            .map(|per_topic| {
                per_topic
                    .iter()
                    .map(|racks| {
                        racks
                            .iter()
                            .map(|r| members_by_rack.get(r).copied().unwrap_or(0))
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let consumer_racks: BTreeSet<&str> = members_by_rack.keys().copied().collect();
        let all_partition_racks: BTreeSet<&str> = partition_racks
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        let active = use_rack_aware_assignment(
            &consumer_racks,
            &all_partition_racks,
            partition_racks.iter().flatten(),
            prefer_rack_aware,
        );
        if !active {
            return inactive(consumers_on_replica_racks);
        }
        RackInfo {
            active,
            consumer_racks: g.members.iter().map(|m| m.rack).collect(),
            partition_racks,
            consumers_on_replica_racks,
        }
    }

    fn consumer_rack(&self, member: usize) -> Option<&'a str> {
        self.consumer_racks.get(member).copied().flatten()
    }

    fn partition_racks(&self, tp: Tp) -> Option<&BTreeSet<&'a str>> {
        self.partition_racks.get(tp.0)?.get(tp.1)
    }

    /// Whether `member` has a rack and `tp` has no replica there.
    fn mismatch(&self, member: usize, tp: Tp) -> bool {
        match self.consumer_rack(member) {
            None => false,
            Some(rack) => !self.partition_racks(tp).is_some_and(|r| r.contains(rack)),
        }
    }

    /// Stable-sorts partitions so those with the fewest members in their replicas' racks
    /// come first (they have the fewest chances of a rack match).
    fn sort_by_rack_consumers(&self, partitions: &mut [Tp]) {
        if self.consumers_on_replica_racks.is_empty() {
            return;
        }
        partitions.sort_by_key(|&(t, pos)| self.consumers_on_replica_racks[t][pos]);
    }

    /// The index in `list` (searching circularly from `first`) of the first member whose rack
    /// holds a replica of `tp` (Java's `RackInfo.nextRackConsumer`).
    fn next_rack_consumer(&self, tp: Tp, list: &[usize], first: usize) -> Option<usize> {
        let racks = self.partition_racks(tp).filter(|r| !r.is_empty())?;
        (0..list.len())
            .map(|i| (first + i) % list.len())
            .find(|&i| {
                self.consumer_rack(list[i])
                    .is_some_and(|r| racks.contains(r))
            })
    }
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::{Flavour, MemberData};
    use kcon_core::TopicPartition;

    use kcon_codec::consumer_protocol::Subscription;

    /// What the sticky (`cooperative == false`) or cooperative-sticky assignor reads from a
    /// subscription: previous partitions and generation.
    pub(in crate::assignor) fn member_data(
        cooperative: bool,
        subscription: &Subscription,
    ) -> (Vec<TopicPartition>, Option<i32>) {
        let flavour = if cooperative {
            Flavour::Cooperative
        } else {
            Flavour::Eager
        };
        let MemberData {
            partitions,
            generation,
        } = MemberData::of(flavour, subscription);
        (partitions, generation)
    }
}
