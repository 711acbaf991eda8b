//! The sticky assignment when every member subscribes to the same topics (the Java client's
//! `AbstractStickyAssignor.ConstrainedAssignmentBuilder`).
//!
//! With `n` members and `P` partitions every member ends with `min = P / n` or
//! `max = ceil(P / n)` partitions, and exactly `P % n` of them with `max`:
//! 1. Members keep their previous partitions (rack-matched ones only, when rack-aware) up to
//!    their quota: fewer than `min` are all kept; `max` or more keep `max` while members
//!    at `max` are still wanted; otherwise `min`. The rest may be revoked.
//! 2. When rack-aware, unassigned partitions go round-robin to members below quota in a
//!    replica's rack.
//! 3. The rest go round-robin to members below `min`, then to members at `min` up to `max`.

use std::collections::{BTreeMap, BTreeSet};

use super::{AssignError, Context, PerMember, Tp, Transfers};

/// The assignment per member, and the partitions handed to a member other than the one that
/// had them (partition → new member), which the cooperative assignor withholds.
pub(super) fn assign(ctx: &Context<'_, '_>) -> Result<(PerMember, Transfers), AssignError> {
    let mut b = Builder::new(ctx);
    b.assign_owned();
    let mut unassigned: Vec<Tp> = ctx
        .g
        .all_partitions()
        .filter(|tp| !b.assigned.contains(tp))
        .collect();
    // Java sorts both member lists by member id here, which is member index order.
    b.under_min.sort_unstable();
    b.exactly_min.sort_unstable();
    ctx.racks.sort_by_rack_consumers(&mut unassigned);
    b.assign_rack_aware_round_robin(&mut unassigned);
    b.assign_round_robin(&unassigned)?;
    b.verify_unfilled()?;
    Ok((b.assignment, b.transferring))
}

#[derive(Debug)]
struct Builder<'c, 'g, 'a> {
    ctx: &'c Context<'g, 'a>,
    min_quota: usize,
    max_quota: usize,
    /// How many members end at `max_quota` (0 when `min_quota == max_quota`).
    expected_over_min: usize,
    /// How many members are at `max_quota` so far.
    current_over_min: usize,
    assignment: Vec<Vec<Tp>>,
    /// Partitions handed out.
    assigned: BTreeSet<Tp>,
    /// Previous partitions a member did not keep: partition → that member.
    maybe_revoked: BTreeMap<Tp, usize>,
    /// Members below `min_quota`.
    under_min: Vec<usize>,
    /// Members at `min_quota` that may still take one more.
    exactly_min: Vec<usize>,
    transferring: BTreeMap<Tp, usize>,
}

impl<'c, 'g, 'a> Builder<'c, 'g, 'a> {
    fn new(ctx: &'c Context<'g, 'a>) -> Self {
        let n = ctx.g.members.len();
        let total = ctx.total_partitions;
        Builder {
            ctx,
            min_quota: total / n,
            max_quota: total.div_ceil(n),
            expected_over_min: total % n,
            current_over_min: 0,
            assignment: vec![Vec::new(); n],
            assigned: BTreeSet::new(),
            maybe_revoked: BTreeMap::new(),
            under_min: Vec::new(),
            exactly_min: Vec::new(),
            transferring: BTreeMap::new(),
        }
    }

    /// Step 1 (Java's `assignOwnedPartitions`). Members are taken in the Java leader's
    /// member-map order, which decides who may keep `max_quota` when more members had that
    /// many than are wanted at it.
    fn assign_owned(&mut self) {
        let ctx = self.ctx;
        for &m in &ctx.g.hash_order {
            let previous = &ctx.owned[m];
            let mut owned: Vec<Tp> = Vec::with_capacity(previous.len());
            for &tp in previous {
                if ctx.racks.mismatch(m, tp) {
                    self.maybe_revoked.insert(tp, m);
                } else {
                    owned.push(tp);
                }
            }
            owned.sort_by_key(|&tp| (ctx.g.partition_id(tp), ctx.g.topics[tp.0].name));
            owned.retain(|tp| !ctx.multiply_owned.contains(tp));

            let keep = if owned.len() < self.min_quota {
                self.under_min.push(m);
                owned.len()
            } else if owned.len() >= self.max_quota
                && self.current_over_min < self.expected_over_min
            {
                self.current_over_min += 1;
                if self.current_over_min == self.expected_over_min {
                    // Nobody else may reach `max_quota` now.
                    self.exactly_min.clear();
                }
                self.max_quota
            } else {
                if self.current_over_min < self.expected_over_min {
                    self.exactly_min.push(m);
                }
                self.min_quota
            };
            for &tp in &owned[keep..] {
                self.maybe_revoked.insert(tp, m);
            }
            for &tp in &owned[..keep] {
                self.assigned.insert(tp);
            }
            self.assignment[m].extend_from_slice(&owned[..keep]);
        }
    }

    /// Step 2 (Java's `assignRackAwareRoundRobin`): partitions that find a member in a
    /// replica's rack below its quota are assigned and removed from `unassigned`.
    fn assign_rack_aware_round_robin(&mut self, unassigned: &mut Vec<Tp>) {
        let racks = &self.ctx.racks;
        if !racks.active {
            return;
        }
        let mut next_under_min = 0;
        let mut left = Vec::with_capacity(unassigned.len());
        for &tp in unassigned.iter() {
            let mut chosen = None;
            if let Some(mut i) = racks.next_rack_consumer(tp, &self.under_min, next_under_min) {
                let m = self.under_min[i];
                let count = self.assignment[m].len() + 1;
                if count >= self.min_quota {
                    self.under_min.remove(i);
                    // At `min_quota` it may still reach `max_quota`, if members are still
                    // wanted there.
                    if count < self.max_quota && self.current_over_min < self.expected_over_min {
                        self.exactly_min.push(m);
                    }
                } else {
                    i += 1;
                }
                next_under_min = if self.under_min.is_empty() {
                    0
                } else {
                    i % self.under_min.len()
                };
                chosen = Some(m);
            } else if !self.exactly_min.is_empty()
                && let Some(i) = racks.next_rack_consumer(tp, &self.exactly_min, 0)
            {
                let m = self.exactly_min[i];
                if self.assignment[m].len() + 1 == self.max_quota {
                    self.exactly_min.remove(i);
                    self.current_over_min += 1;
                    if self.current_over_min == self.expected_over_min {
                        self.exactly_min.clear();
                    }
                }
                chosen = Some(m);
            }
            match chosen {
                Some(m) => {
                    self.assign_new(tp, m);
                }
                None => left.push(tp),
            }
        }
        *unassigned = left;
    }

    /// Step 3 (Java's `assignRoundRobin`): a cursor cycles over the members below
    /// `min_quota`; once none is left, members at `min_quota` take one more each.
    fn assign_round_robin(&mut self, unassigned: &[Tp]) -> Result<(), AssignError> {
        // Index of the next member in `under_min` (Java's iterator over a LinkedList).
        let mut cursor = 0;
        for &tp in unassigned {
            let (m, from_under_min) = if cursor < self.under_min.len() {
                cursor += 1;
                (self.under_min[cursor - 1], true)
            } else if !self.under_min.is_empty() {
                cursor = 1;
                (self.under_min[0], true)
            } else if !self.exactly_min.is_empty() {
                (self.exactly_min.remove(0), false)
            } else {
                return Err(AssignError::Inconsistent {
                    assignor: self.ctx.assignor,
                    reason: "partitions left over after every member reached its quota",
                });
            };
            let count = self.assign_new(tp, m);
            if count == self.min_quota && from_under_min {
                cursor -= 1;
                self.under_min.remove(cursor);
                self.exactly_min.push(m);
            } else if count == self.max_quota {
                self.current_over_min += 1;
            }
        }
        Ok(())
    }

    /// Gives `tp` to `m`; returns `m`'s count. A partition someone else had (or that several
    /// members claimed) changes owner.
    fn assign_new(&mut self, tp: Tp, m: usize) -> usize {
        self.assignment[m].push(tp);
        self.assigned.insert(tp);
        let moved = self
            .maybe_revoked
            .get(&tp)
            .is_some_and(|&previous| previous != m);
        if moved || self.ctx.multiply_owned.contains(&tp) {
            self.transferring.insert(tp, m);
        }
        self.assignment[m].len()
    }

    /// Java's `verifyUnfilledMembers`: members still below `min_quota` are a bug unless the
    /// partitions ran out exactly at the quotas.
    fn verify_unfilled(&self) -> Result<(), AssignError> {
        if self.under_min.is_empty() {
            return Ok(());
        }
        if self.current_over_min != self.expected_over_min {
            return Err(AssignError::Inconsistent {
                assignor: self.ctx.assignor,
                reason: "fewer members reached the higher quota than expected",
            });
        }
        if self
            .under_min
            .iter()
            .any(|&m| self.assignment[m].len() != self.min_quota)
        {
            return Err(AssignError::Inconsistent {
                assignor: self.ctx.assignor,
                reason: "a member is below the lower quota with no partitions left",
            });
        }
        Ok(())
    }
}
