//! Reconciliation, as pure functions: the coordinator's target assignment (topic ids) against
//! what the member owns (topic names). Partitions to give up are revoked first; partitions to
//! take are assigned only once nothing is left to revoke, and only those whose topic id
//! resolves to a name.

use std::collections::{BTreeMap, BTreeSet};

use kcon_core::{TopicId, TopicPartition};

use super::messages::TopicIdPartitions;

/// The target in names: the partitions whose topic id is known, and the ids that are not.
pub(crate) fn resolve(
    target: &TopicIdPartitions,
    names: &BTreeMap<TopicId, String>,
) -> (BTreeSet<TopicPartition>, BTreeSet<TopicId>) {
    let mut resolved = BTreeSet::new();
    let mut unresolved = BTreeSet::new();
    for (id, partitions) in target {
        match names.get(id) {
            Some(name) => resolved.extend(partitions.iter().map(|p| TopicPartition::new(name, *p))),
            None => {
                unresolved.insert(*id);
            }
        }
    }
    (resolved, unresolved)
}

/// The next step from `owned` towards `target` (resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Give these up first.
    Revoke(Vec<TopicPartition>),
    /// Then take these.
    Assign(Vec<TopicPartition>),
    /// Owned is the target.
    Done,
}

/// Revoke before assign: a partition moving between members is released by its owner before
/// anyone may take it, and the coordinator hands it on only once the owner reported it gone.
pub(crate) fn next_step(
    owned: &BTreeSet<TopicPartition>,
    target: &BTreeSet<TopicPartition>,
) -> Step {
    let revoke: Vec<TopicPartition> = owned.difference(target).cloned().collect();
    if !revoke.is_empty() {
        return Step::Revoke(revoke);
    }
    let assign: Vec<TopicPartition> = target.difference(owned).cloned().collect();
    if assign.is_empty() {
        Step::Done
    } else {
        Step::Assign(assign)
    }
}

/// `owned` by topic id, for the heartbeat. A partition whose topic has no known id is left out
/// (it cannot happen: owned partitions come from a resolved target).
pub(crate) fn by_id(
    owned: &BTreeSet<TopicPartition>,
    ids: &BTreeMap<String, TopicId>,
) -> TopicIdPartitions {
    let mut out = TopicIdPartitions::new();
    for tp in owned {
        if let Some(id) = ids.get(&tp.topic) {
            out.entry(*id).or_default().insert(tp.partition);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    #[test]
    fn unknown_ids_wait() {
        let names = BTreeMap::from([(TopicId([1; 16]), "a".to_owned())]);
        let target = TopicIdPartitions::from([
            (TopicId([1; 16]), BTreeSet::from([0, 1])),
            (TopicId([2; 16]), BTreeSet::from([0])),
        ]);
        let (resolved, unresolved) = resolve(&target, &names);
        assert_eq!(resolved, BTreeSet::from([tp("a", 0), tp("a", 1)]));
        assert_eq!(unresolved, BTreeSet::from([TopicId([2; 16])]));
    }

    #[test]
    fn revoke_comes_before_assign() {
        let owned = BTreeSet::from([tp("a", 0), tp("a", 1)]);
        let target = BTreeSet::from([tp("a", 1), tp("a", 2)]);
        assert_eq!(next_step(&owned, &target), Step::Revoke(vec![tp("a", 0)]));
        let owned = BTreeSet::from([tp("a", 1)]);
        assert_eq!(next_step(&owned, &target), Step::Assign(vec![tp("a", 2)]));
        assert_eq!(next_step(&target, &target), Step::Done);
    }

    proptest! {
        /// Following the steps reaches the target, never owning a partition outside both the
        /// start and the target, and never taking one before every revocation is done.
        #[test]
        fn steps_reach_the_target(owned in proptest::collection::btree_set(0..12i32, 0..12),
                                  target in proptest::collection::btree_set(0..12i32, 0..12)) {
            let mut owned: BTreeSet<TopicPartition> = owned.into_iter().map(|p| tp("t", p)).collect();
            let start = owned.clone();
            let target: BTreeSet<TopicPartition> = target.into_iter().map(|p| tp("t", p)).collect();
            let mut revoked_all = false;
            for _ in 0..3 {
                match next_step(&owned, &target) {
                    Step::Revoke(r) => {
                        prop_assert!(!revoked_all);
                        for p in r { owned.remove(&p); }
                        revoked_all = true;
                    }
                    Step::Assign(a) => {
                        prop_assert!(owned.is_subset(&target));
                        owned.extend(a);
                    }
                    Step::Done => break,
                }
                prop_assert!(owned.iter().all(|p| start.contains(p) || target.contains(p)));
            }
            prop_assert_eq!(owned, target);
        }
    }
}
