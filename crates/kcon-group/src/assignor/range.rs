//! The range assignor, matching the Java client's `RangeAssignor` (rack-aware since KIP-881).

use std::collections::{BTreeMap, BTreeSet};

use super::rack::{replica_racks, use_rack_aware_assignment};
use super::{
    AssignError, Assignor, GroupView, MemberSubscription, RebalanceProtocol, TopicPartitions, Tp,
};
use kcon_codec::consumer_protocol::Assignment;

/// `range`: each topic on its own, its partitions in index order cut into contiguous ranges,
/// one per subscribed member in member order (static members by `group.instance.id` first,
/// then by member id); the first `partitions % members` members get one more.
///
/// Rack-aware (KIP-881) when members have racks and some partition's replicas are not on
/// every rack: first, partitions are given to members in the same rack without breaking the
/// per-topic ranges' sizes; topics with the same subscribers and the same partition count
/// are kept co-partitioned (partition `p` of each goes to the same member) before racks are
/// matched; whatever is left is assigned as without racks. Each member's list is then sorted.
/// All of it as the Java client's `RangeAssignor.assignPartitions` does.
#[derive(Debug, Clone, Default)]
pub struct RangeAssignor {
    /// Use rack matching even when every partition is on every rack (Java's test-only
    /// `preferRackAwareLogic`), so its standard cases can be checked with racks.
    pub(super) prefer_rack_aware: bool,
}

impl RangeAssignor {
    /// The range assignor.
    pub fn new() -> Self {
        RangeAssignor::default()
    }
}

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn supported_protocols(&self) -> &'static [RebalanceProtocol] {
        &[RebalanceProtocol::Eager]
    }

    fn assign(
        &self,
        members: &[MemberSubscription],
        topics: &TopicPartitions,
    ) -> Result<BTreeMap<String, Assignment>, AssignError> {
        let g = GroupView::new(members, topics)?;
        let mut out: Vec<Vec<Tp>> = vec![Vec::new(); g.members.len()];
        let mut states: Vec<TopicState<'_>> = (0..g.topics.len())
            .map(|t| TopicState::new(&g, t, self.prefer_rack_aware))
            .collect();
        let rack_aware = states.iter().any(|s| s.needs_rack_aware);
        if rack_aware {
            assign_with_rack_matching(&g, &mut states, &mut out);
        }
        for state in &mut states {
            state.assign_ranges(&g, false, &mut out);
        }
        if rack_aware {
            // Rack matching hands partitions out of order; Java sorts each list afterwards.
            for list in &mut out {
                list.sort_unstable();
            }
        }
        Ok(g.result(out))
    }
}

/// One topic's progress (Java's `RangeAssignor.TopicAssignmentState`).
#[derive(Debug)]
struct TopicState<'a> {
    topic: usize,
    /// The subscribed members in range order, with their racks.
    consumers: Vec<(usize, Option<&'a str>)>,
    /// Replica racks per partition position; empty when none of the topic's consumers has
    /// a rack (then nothing is matched, and the co-partitioning key is 0, as in Java).
    partition_racks: Vec<BTreeSet<&'a str>>,
    needs_rack_aware: bool,
    /// Positions not yet assigned, in order.
    unassigned: BTreeSet<usize>,
    /// Partitions assigned so far, per member index.
    assigned: BTreeMap<usize, usize>,
    per_consumer: usize,
    /// How many consumers may still get `per_consumer + 1`.
    with_extra: usize,
}

impl<'a> TopicState<'a> {
    fn new(g: &GroupView<'a>, topic: usize, prefer_rack_aware: bool) -> Self {
        let mut members: Vec<usize> = (0..g.members.len())
            .filter(|&m| g.subscribes(m, topic))
            .collect();
        members.sort_by(|&a, &b| g.member_info_cmp(a, b));
        let consumers: Vec<(usize, Option<&str>)> =
            members.iter().map(|&m| (m, g.members[m].rack)).collect();
        let partitions = &g.topics[topic].partitions;
        let consumer_racks: BTreeSet<&str> = consumers.iter().filter_map(|c| c.1).collect();
        let partition_racks: Vec<BTreeSet<&str>> = if consumer_racks.is_empty() {
            Vec::new()
        } else {
            partitions.iter().map(|p| replica_racks(p)).collect()
        };
        let all_partition_racks: BTreeSet<&str> =
            partition_racks.iter().flatten().copied().collect();
        let needs_rack_aware = use_rack_aware_assignment(
            &consumer_racks,
            &all_partition_racks,
            partition_racks.iter(),
            prefer_rack_aware,
        );
        let n = consumers.len();
        TopicState {
            topic,
            needs_rack_aware,
            partition_racks,
            unassigned: (0..partitions.len()).collect(),
            assigned: consumers.iter().map(|c| (c.0, 0)).collect(),
            per_consumer: partitions.len().checked_div(n).unwrap_or(0),
            with_extra: partitions.len().checked_rem(n).unwrap_or(0),
            consumers,
        }
    }

    /// A member without a rack matches every partition; one with a rack only partitions with
    /// a replica there.
    fn racks_match(&self, g: &GroupView<'_>, member: usize, pos: usize) -> bool {
        match g.members[member].rack {
            None => true,
            Some(rack) => self
                .partition_racks
                .get(pos)
                .is_some_and(|racks| racks.contains(rack)),
        }
    }

    /// How many more partitions `member` may take while keeping the ranges' sizes.
    fn max_assignable(&self, member: usize) -> usize {
        let cap = self.per_consumer + usize::from(self.with_extra > 0);
        cap.saturating_sub(self.assigned.get(&member).copied().unwrap_or(0))
    }

    fn assign(&mut self, member: usize, positions: &[usize], out: &mut [Vec<Tp>]) {
        out[member].extend(positions.iter().map(|&pos| (self.topic, pos)));
        let count = self.assigned.entry(member).or_insert(0);
        *count += positions.len();
        if *count > self.per_consumer {
            self.with_extra = self.with_extra.saturating_sub(1);
        }
        for pos in positions {
            self.unassigned.remove(pos);
        }
    }

    /// Each consumer in order takes the first unassigned partitions it may take (those in its
    /// rack when `rack_matching`), up to its share.
    fn assign_ranges(&mut self, g: &GroupView<'_>, rack_matching: bool, out: &mut [Vec<Tp>]) {
        for i in 0..self.consumers.len() {
            if self.unassigned.is_empty() {
                break;
            }
            let member = self.consumers[i].0;
            let chosen: Vec<usize> = self
                .unassigned
                .iter()
                .copied()
                .filter(|&pos| !rack_matching || self.racks_match(g, member, pos))
                .take(self.max_assignable(member))
                .collect();
            if !chosen.is_empty() {
                self.assign(member, &chosen, out);
            }
        }
    }
}

/// The rack-matching pass (Java's `assignWithRackMatching`): topics are grouped by their
/// consumers (members and racks) and then by partition count; a group of several topics is
/// co-partitioned, a lone topic is range-assigned within racks if it needs rack awareness.
fn assign_with_rack_matching(
    g: &GroupView<'_>,
    states: &mut [TopicState<'_>],
    out: &mut [Vec<Tp>],
) {
    type Key<'k> = (Vec<(usize, Option<&'k str>)>, usize);
    let mut groups: BTreeMap<Key<'_>, Vec<usize>> = BTreeMap::new();
    for (i, s) in states.iter().enumerate() {
        groups
            .entry((s.consumers.clone(), s.partition_racks.len()))
            .or_default()
            .push(i);
    }
    // Each topic is in one group and groups touch disjoint topics, so their order does not
    // change the result (Java walks them in HashMap order).
    for ((consumers, num_partitions), group) in groups {
        if group.len() > 1 {
            assign_co_partitioned(g, &consumers, num_partitions, &group, states, out);
        } else {
            let state = &mut states[group[0]];
            if state.needs_rack_aware {
                state.assign_ranges(g, true, out);
            }
        }
    }
}

/// Java's `assignCoPartitionedWithRackMatching`: for each partition index `p`, the first
/// remaining consumer whose rack holds partition `p` of every topic in the group, and who
/// has room in each, gets `p` of all of them; co-partitioning wins over rack alignment, so a
/// `p` with no such consumer is left for the plain range pass.
fn assign_co_partitioned(
    g: &GroupView<'_>,
    consumers: &[(usize, Option<&str>)],
    num_partitions: usize,
    group: &[usize],
    states: &mut [TopicState<'_>],
    out: &mut [Vec<Tp>],
) {
    let mut remaining: Vec<usize> = consumers.iter().map(|c| c.0).collect();
    for pos in 0..num_partitions {
        let found = remaining.iter().position(|&c| {
            group.iter().all(|&t| {
                let s = &states[t];
                s.racks_match(g, c, pos) && s.max_assignable(c) > 0
            })
        });
        let Some(i) = found else { continue };
        let c = remaining[i];
        for &t in group {
            states[t].assign(c, &[pos], out);
        }
        if group.iter().all(|&t| states[t].max_assignable(c) == 0) {
            remaining.remove(i);
            if remaining.is_empty() {
                break;
            }
        }
    }
}
