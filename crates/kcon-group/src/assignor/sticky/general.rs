//! The sticky assignment when members subscribe to different topics (the Java client's
//! `AbstractStickyAssignor.GeneralAssignmentBuilder`).
//!
//! 1. Members keep their previous partitions of topics they still subscribe to (rack-matched
//!    ones only, when rack-aware).
//! 2. Each unassigned partition goes to the member with the fewest partitions among its
//!    topic's subscribers (first within a replica's rack, when rack-aware); topics with the
//!    fewest subscribers go first.
//! 3. Partitions are then moved, one at a time, from a member to one that has at least two
//!    fewer and subscribes to the topic, until no such move is left. A move that undoes an
//!    earlier one is preferred (a partition goes back where it came from), and a partition a
//!    member held in an older generation goes back to it when that helps balance. If the
//!    moves did not improve the balance score (the sum of count differences over all member
//!    pairs), they are undone.
//!
//! Where the order of a Java `HashMap` or `HashSet` decides, the same order is reproduced
//! (see `java_order`); elsewhere members are taken in member-id order and partitions in
//! (topic, index) order, which changes nothing. Java's balance check is recomputed here per
//! topic instead of per partition, with the same answer, so a rebalance of 1000 partitions
//! over 100 members stays in milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use super::super::java_order::{JavaHashOrder, java_topic_partition_hash};
use super::{Context, DEFAULT_GENERATION, Tp};

/// The assignment per member.
pub(super) fn assign(ctx: &Context<'_, '_>) -> Vec<Vec<Tp>> {
    let mut b = Builder::new(ctx);
    let prev = b.previous_assignment();
    let assigned = b.assign_owned();
    let mut unassigned: Vec<Tp> = b
        .sorted_all_partitions
        .iter()
        .copied()
        .filter(|tp| !assigned.contains(tp))
        .collect();
    b.by_count = (0..ctx.g.members.len())
        .map(|m| (b.current[m].len(), m))
        .collect();
    b.balance(&prev, &mut unassigned);
    b.current
}

/// Per topic and partition position: the member that held it in the latest generation below
/// the group's highest, with that generation (Java's `prevAssignment`).
type Previous = Vec<Vec<Option<(usize, i32)>>>;

#[derive(Debug)]
struct Builder<'c, 'g, 'a> {
    ctx: &'c Context<'g, 'a>,
    /// Per topic, the members subscribed to it.
    topic_consumers: Vec<Vec<usize>>,
    /// Per member, per topic: whether it subscribes.
    subscribes: Vec<Vec<bool>>,
    /// Per member, the partitions of all its topics (what it could hold at most).
    max_size: Vec<usize>,
    /// All partitions, topics with the fewest subscribers first.
    sorted_all_partitions: Vec<Tp>,
    current: Vec<Vec<Tp>>,
    /// Per topic and position, the member holding it.
    owner: Vec<Vec<Option<usize>>>,
    /// `(partition count, member)` for the members still taking part in balancing (Java's
    /// `sortedCurrentSubscriptions`).
    by_count: BTreeSet<(usize, usize)>,
    /// Members whose partitions may still move (Java removes the others from its maps).
    participating: Vec<bool>,
    movements: PartitionMovements,
    /// A member dropped a partition of a topic it left (or of a rack it does not match).
    revocation_required: bool,
}

impl<'c, 'g, 'a> Builder<'c, 'g, 'a> {
    fn new(ctx: &'c Context<'g, 'a>) -> Self {
        let g = ctx.g;
        let n = g.members.len();
        let subscribes: Vec<Vec<bool>> = (0..n)
            .map(|m| (0..g.topics.len()).map(|t| g.subscribes(m, t)).collect())
            .collect();
        let topic_consumers: Vec<Vec<usize>> = (0..g.topics.len())
            .map(|t| (0..n).filter(|&m| subscribes[m][t]).collect())
            .collect();
        let max_size = subscribes
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, s)| **s)
                    .map(|(t, _)| g.topics[t].partitions.len())
                    .sum()
            })
            .collect();
        let mut topic_order: Vec<usize> = (0..g.topics.len()).collect();
        topic_order.sort_by_key(|&t| (topic_consumers[t].len(), t));
        let sorted_all_partitions = topic_order
            .iter()
            .flat_map(|&t| (0..g.topics[t].partitions.len()).map(move |pos| (t, pos)))
            .collect();
        Builder {
            ctx,
            topic_consumers,
            subscribes,
            max_size,
            sorted_all_partitions,
            current: vec![Vec::new(); n],
            owner: g
                .topics
                .iter()
                .map(|t| vec![None; t.partitions.len()])
                .collect(),
            by_count: BTreeSet::new(),
            participating: vec![true; n],
            movements: PartitionMovements::default(),
            revocation_required: false,
        }
    }

    fn owner(&self, tp: Tp) -> Option<usize> {
        self.owner[tp.0][tp.1]
    }

    /// Java's `prepopulateCurrentAssignments`: what members of older generations held, the
    /// newest such generation winning per partition. Members without a generation count as
    /// generation -1 once some member has one.
    fn previous_assignment(&self) -> Previous {
        let g = self.ctx.g;
        let max_generation = self.ctx.max_generation;
        let mut prev: Previous = g
            .topics
            .iter()
            .map(|t| vec![None; t.partitions.len()])
            .collect();
        // Among equal generations the first in the leader's member-map order stays.
        for &m in &g.hash_order {
            let md = &self.ctx.data[m];
            let generation = match md.generation {
                Some(generation) if generation < max_generation => generation,
                None if max_generation > DEFAULT_GENERATION => DEFAULT_GENERATION,
                _ => continue,
            };
            for (t, pos) in md.partitions.iter().filter_map(|tp| g.lookup(tp)) {
                let slot = &mut prev[t][pos];
                if slot.is_none_or(|(_, known)| generation > known) {
                    *slot = Some((m, generation));
                }
            }
        }
        prev
    }

    /// Step 1 (Java's `assignOwnedPartitions`): keeps the previous partitions of topics each
    /// member still subscribes to (and, when rack-aware, in its rack); returns them.
    fn assign_owned(&mut self) -> BTreeSet<Tp> {
        let ctx = self.ctx;
        let mut assigned = BTreeSet::new();
        for (m, owned) in ctx.owned.iter().enumerate() {
            for &tp in owned {
                if !self.subscribes[m][tp.0] || ctx.racks.mismatch(m, tp) {
                    self.revocation_required = true;
                    continue;
                }
                self.current[m].push(tp);
                self.owner[tp.0][tp.1] = Some(m);
                assigned.insert(tp);
            }
        }
        assigned
    }

    /// Steps 2 and 3 (Java's `balance`).
    fn balance(&mut self, prev: &Previous, unassigned: &mut Vec<Tp>) {
        // Nobody held anything: no stickiness to protect, so moves are never undone.
        let initializing = self.by_count.last().is_none_or(|&(count, _)| count == 0);

        if self.ctx.racks.active {
            let mut left = Vec::with_capacity(unassigned.len());
            for &tp in unassigned.iter() {
                if !self.assign_to_least_loaded(tp, true) {
                    left.push(tp);
                }
            }
            for tp in left {
                self.assign_to_least_loaded(tp, false);
            }
        } else {
            for &tp in unassigned.iter() {
                self.assign_to_least_loaded(tp, false);
            }
        }

        // Only partitions of topics with two or more subscribers can move.
        let movable = |tp: &Tp| self.topic_consumers[tp.0].len() >= 2;
        let mut reassignable: Vec<Tp> = self.sorted_all_partitions.clone();
        reassignable.retain(movable);
        unassigned.retain(movable);

        // Only members that could gain a partition, or hold a movable one, take part.
        for m in 0..self.ctx.g.members.len() {
            let count = self.current[m].len();
            let can_change = count < self.max_size[m]
                || self.current[m]
                    .iter()
                    .any(|tp| self.topic_consumers[tp.0].len() >= 2);
            if !can_change {
                self.participating[m] = false;
                self.by_count.remove(&(count, m));
            }
        }

        let before_current = self.current.clone();
        let before_owner = self.owner.clone();

        // First try to balance by moving only the partitions that were just handed out,
        // unless a member already has to give something up.
        if !self.revocation_required {
            self.perform_reassignments(unassigned, prev);
        }
        let reassigned = self.perform_reassignments(&reassignable, prev);

        if !initializing
            && reassigned
            && self.balance_score(&self.current) >= self.balance_score(&before_current)
        {
            // The moves cost stickiness without improving balance.
            self.current = before_current;
            self.owner = before_owner;
        }
    }

    /// Gives `tp` to the least-loaded member subscribed to its topic (in its rack when
    /// `rack_matching`); false if there is none.
    fn assign_to_least_loaded(&mut self, tp: Tp, rack_matching: bool) -> bool {
        let racks = &self.ctx.racks;
        let found =
            self.by_count.iter().copied().find(|&(_, m)| {
                self.subscribes[m][tp.0] && !(rack_matching && racks.mismatch(m, tp))
            });
        let Some((count, m)) = found else {
            return false;
        };
        self.by_count.remove(&(count, m));
        self.current[m].push(tp);
        self.owner[tp.0][tp.1] = Some(m);
        self.by_count.insert((count + 1, m));
        true
    }

    /// Java's `isBalanced`: counts differ by at most one, or no member below its maximum
    /// could take a partition of one of its topics from a member with two or more than it.
    ///
    /// Java checks each partition of each member's topics; the highest count among a
    /// topic's holders answers the same question for all of them.
    fn is_balanced(&self) -> bool {
        let (Some(&(min, _)), Some(&(max, _))) = (self.by_count.first(), self.by_count.last())
        else {
            return true;
        };
        if min + 1 >= max {
            return true;
        }
        let top_holder: Vec<usize> = self
            .owner
            .iter()
            .map(|per_topic| {
                per_topic
                    .iter()
                    .flatten()
                    .filter(|&&m| self.participating[m])
                    .map(|&m| self.current[m].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.by_count.iter().all(|&(count, m)| {
            count == self.max_size[m]
                || (0..top_holder.len())
                    .filter(|&t| self.subscribes[m][t])
                    .all(|t| count + 1 >= top_holder[t])
        })
    }

    /// Java's `performReassignments`: passes over `partitions` while the assignment is not
    /// balanced, moving each partition whose holder has two or more than another subscriber
    /// of its topic. Returns whether anything moved.
    fn perform_reassignments(&mut self, partitions: &[Tp], prev: &Previous) -> bool {
        let mut reassigned = false;
        // Java loops until a pass moves nothing. Each move strictly improves balance except
        // when a partition returns to where it came from, so this ends well before the cap,
        // which only guards against looping forever on input nobody has found yet.
        let max_passes = partitions.len() + self.ctx.g.members.len() + 16;
        for _ in 0..max_passes {
            let mut modified = false;
            for &tp in partitions {
                if self.is_balanced() {
                    break;
                }
                let Some(holder) = self.owner(tp) else {
                    continue;
                };
                let held = self.current[holder].len();

                // Back to the member of an older generation, if that evens things out. Java
                // does not check that this member still subscribes to the topic (it would
                // hand it a partition of a topic it left); kcon does.
                if let Some((previous, _)) = prev[tp.0][tp.1]
                    && self.participating[previous]
                    && self.subscribes[previous][tp.0]
                    && held > self.current[previous].len() + 1
                {
                    self.reassign_to(tp, previous);
                    reassigned = true;
                    modified = true;
                    continue;
                }

                if self.has_much_less_loaded_subscriber(tp, holder) {
                    // The holder subscribes and takes part, so there is always a target.
                    if let Some(target) = self.least_loaded_subscriber(tp) {
                        self.reassign_to(tp, target);
                        reassigned = true;
                        modified = true;
                    }
                }
            }
            if !modified {
                break;
            }
        }
        reassigned
    }

    /// Whether another subscriber of `tp`'s topic has at least two fewer partitions than
    /// `holder`. Java first looks among members in a replica's rack (when the holder is in
    /// one) and then among all; either way the partition goes to the least-loaded
    /// subscriber, so asking about all subscribers gives the same moves.
    fn has_much_less_loaded_subscriber(&self, tp: Tp, holder: usize) -> bool {
        let held = self.current[holder].len();
        self.topic_consumers[tp.0]
            .iter()
            .any(|&other| held > self.current[other].len() + 1)
    }

    /// The subscriber of `tp`'s topic with the fewest partitions (ties: lowest member id).
    fn least_loaded_subscriber(&self, tp: Tp) -> Option<usize> {
        self.by_count
            .iter()
            .find(|&&(_, m)| self.subscribes[m][tp.0])
            .map(|&(_, m)| m)
    }

    /// Moves `tp` towards `target`, or rather the partition the movement record says should
    /// go (Java's `reassignPartition`).
    fn reassign_to(&mut self, tp: Tp, target: usize) {
        let Some(holder) = self.owner(tp) else {
            return;
        };
        let actual = self.movements.partition_to_move(tp, holder, target);
        self.move_partition(actual, target);
    }

    /// Java's `processPartitionMovement`.
    fn move_partition(&mut self, tp: Tp, to: usize) {
        let Some(from) = self.owner(tp) else {
            return;
        };
        if from == to {
            return;
        }
        self.by_count.remove(&(self.current[from].len(), from));
        self.by_count.remove(&(self.current[to].len(), to));
        let g = self.ctx.g;
        let hash = java_topic_partition_hash(g.topics[tp.0].name, g.partition_id(tp));
        self.movements.record(tp, hash, from, to);
        if let Some(i) = self.current[from].iter().position(|&x| x == tp) {
            self.current[from].remove(i);
        }
        self.current[to].push(tp);
        self.owner[tp.0][tp.1] = Some(to);
        self.by_count.insert((self.current[to].len(), to));
        self.by_count.insert((self.current[from].len(), from));
    }

    /// Java's `getBalanceScore` over the members taking part: the sum of
    /// |count(a) - count(b)| over all pairs.
    fn balance_score(&self, assignment: &[Vec<Tp>]) -> i64 {
        let mut counts: Vec<i64> = assignment
            .iter()
            .enumerate()
            .filter(|(m, _)| self.participating[*m])
            .map(|(_, list)| list.len() as i64)
            .collect();
        counts.sort_unstable();
        let n = counts.len() as i64;
        // Sorted ascending, the i-th count is added i times and subtracted n - 1 - i times.
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| c * (2 * i as i64 - n + 1))
            .sum()
    }
}

/// The moves made so far, so that a partition can go back where it came from instead of a
/// second partition of the same topic moving (Java's `AbstractStickyAssignor.PartitionMovements`).
#[derive(Debug, Default)]
struct PartitionMovements {
    /// Partition → (member it came from at the start, member holding it now).
    by_partition: BTreeMap<Tp, (usize, usize)>,
    /// Topic → (from, to) → partitions of that topic moved that way, in the iteration order
    /// of Java's `HashSet` of them (which decides the partition sent back).
    by_topic: BTreeMap<usize, BTreeMap<(usize, usize), JavaHashOrder<Tp>>>,
}

impl PartitionMovements {
    /// Java's `getTheActualPartitionToBeMoved`: moving `tp` from `holder` to `target`; if a
    /// partition of the same topic earlier went from `target` to where `tp` started, the
    /// first such one goes back instead.
    fn partition_to_move(&self, tp: Tp, holder: usize, target: usize) -> Tp {
        let Some(moves) = self.by_topic.get(&tp.0) else {
            return tp;
        };
        let origin = self.by_partition.get(&tp).map_or(holder, |&(from, _)| from);
        moves
            .get(&(target, origin))
            .and_then(JavaHashOrder::first)
            .unwrap_or(tp)
    }

    /// Java's `movePartition`: records `tp` going `from` → `to`, folding it into its earlier
    /// move (and dropping the record when it returns to where it started). `hash` is Java's
    /// hash of the partition.
    fn record(&mut self, tp: Tp, hash: i32, from: usize, to: usize) {
        match self.remove(tp) {
            Some((origin, _)) if origin == to => {}
            Some((origin, _)) => self.add(tp, hash, origin, to),
            None => self.add(tp, hash, from, to),
        }
    }

    fn remove(&mut self, tp: Tp) -> Option<(usize, usize)> {
        let pair = self.by_partition.remove(&tp)?;
        if let Some(moves) = self.by_topic.get_mut(&tp.0) {
            if let Some(set) = moves.get_mut(&pair) {
                set.remove(tp);
                if set.is_empty() {
                    moves.remove(&pair);
                }
            }
            if moves.is_empty() {
                self.by_topic.remove(&tp.0);
            }
        }
        Some(pair)
    }

    fn add(&mut self, tp: Tp, hash: i32, from: usize, to: usize) {
        self.by_partition.insert(tp, (from, to));
        self.by_topic
            .entry(tp.0)
            .or_default()
            .entry((from, to))
            .or_insert_with(JavaHashOrder::new)
            .insert(tp, hash);
    }
}
