//! The rack-awareness decision shared by the range and sticky assignors (KIP-881).

use std::collections::BTreeSet;

use super::PartitionInfo;

/// The distinct racks of a partition's replicas.
pub(super) fn replica_racks(partition: &PartitionInfo) -> BTreeSet<&str> {
    partition.replica_racks.iter().map(String::as_str).collect()
}

/// Whether to assign with rack matching, as the Java client's
/// `AbstractPartitionAssignor.useRackAwareAssignment` decides: only when some consumer has a
/// rack that holds replicas, and some partition is not on every rack (when all partitions are
/// everywhere, matching racks cannot improve anything and would only cost stickiness and
/// co-partitioning). `prefer` forces it in the last case, as Java's test-only
/// `preferRackAwareLogic` does.
pub(super) fn use_rack_aware_assignment<'a>(
    consumer_racks: &BTreeSet<&str>,
    partition_racks: &BTreeSet<&str>,
    mut racks_per_partition: impl Iterator<Item = &'a BTreeSet<&'a str>>,
    prefer: bool,
) -> bool {
    if consumer_racks.is_disjoint(partition_racks) {
        // Also covers "no consumer has a rack".
        return false;
    }
    if prefer {
        return true;
    }
    !racks_per_partition.all(|racks| racks == partition_racks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Java's `AbstractPartitionAssignorTest.testUseRackAwareAssignment`.
    #[test]
    fn decides_like_the_java_client() {
        let all: BTreeSet<&str> = ["a", "b", "c"].into();
        let two: BTreeSet<&str> = ["a", "b"].into();
        let none = BTreeSet::new();
        let on_all: Vec<BTreeSet<&str>> = (0..10).map(|_| all.clone()).collect();
        let on_subset: Vec<BTreeSet<&str>> =
            (0..10).map(|i| [["a", "b", "c"][i % 3]].into()).collect();
        let d: BTreeSet<&str> = ["d"].into();
        let ad: BTreeSet<&str> = ["a", "d"].into();
        for prefer in [false, true] {
            let f = |c: &BTreeSet<&str>, p: &BTreeSet<&str>, per: &Vec<BTreeSet<&str>>| {
                use_rack_aware_assignment(c, p, per.iter(), prefer)
            };
            assert!(!f(&none, &none, &on_all));
            assert!(!f(&none, &all, &on_all));
            assert!(!f(&all, &none, &vec![]));
            assert!(!f(&d, &all, &on_all));
            assert_eq!(f(&all, &all, &on_all), prefer);
            assert_eq!(f(&two, &all, &on_all), prefer);
            assert!(f(&all, &all, &on_subset));
            assert!(f(&two, &all, &on_subset));
            assert!(f(&ad, &all, &on_subset));
        }
        assert!(!use_rack_aware_assignment(&ad, &all, on_all.iter(), false));
    }
}
