//! The roundrobin assignor, matching the Java client's `RoundRobinAssignor`.

use std::collections::BTreeMap;

use super::{
    AssignError, Assignor, GroupView, MemberSubscription, RebalanceProtocol, TopicPartitions, Tp,
};
use kcon_codec::consumer_protocol::Assignment;

/// `roundrobin`: every partition of every subscribed topic, sorted by topic then index, is
/// dealt to the members in turn (static members by `group.instance.id` first, then by member
/// id), skipping members not subscribed to the partition's topic; the turn carries over from
/// one topic to the next.
///
/// Not rack-aware: the Java client's `RoundRobinAssignor` ignores racks too (KIP-881 made
/// only range and the sticky assignors rack-aware).
#[derive(Debug, Clone, Default)]
pub struct RoundRobinAssignor {}

impl RoundRobinAssignor {
    /// The roundrobin assignor.
    pub fn new() -> Self {
        RoundRobinAssignor::default()
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
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
        let mut order: Vec<usize> = (0..g.members.len()).collect();
        order.sort_by(|&a, &b| g.member_info_cmp(a, b));
        // Java's CircularIterator over the sorted members: `next` is the member whose turn it is.
        let mut next = 0;
        for (t, pos) in g.all_partitions() {
            // Every topic in the view has at least one subscriber, so this ends within one lap.
            while !g.subscribes(order[next], t) {
                next = (next + 1) % order.len();
            }
            out[order[next]].push((t, pos));
            next = (next + 1) % order.len();
        }
        Ok(g.result(out))
    }
}
