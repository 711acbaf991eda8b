//! The `consumer` target: kcon's whole-consumer simulation (`kcon::fuzzing::consumer`, the
//! feature `fuzzing`) driven by the fuzz bytes; see that function for the input's format and
//! the invariants checked after every op.

/// Runs the simulation over `data` (the target's body).
pub fn run(data: &[u8]) {
    kcon::fuzzing::consumer(data);
}

/// Hand-made seeds for `corpus/consumer/`, each checked here to hand records out and commit;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops: 0 start (arg bit 0: also `u`), 1 produce, 2 time (arg × 50 ms), 3 away, 4 back,
    // 5 pause, 6 resume, 7 seek, 8 commit, 9 subscribe, 10 close, 11 crash, 12 isolate,
    // 13 coordinator fault.
    let time = [2, 200];
    let two_join = [&[0, 0][..], &[0, 1], &time, &time, &[1, 40], &time, &time].concat();
    let classic_range = [&[0][..], &two_join].concat();
    let kip848 = [&[1][..], &two_join].concat();
    // Cooperative-sticky, storing itself, no auto-commit: a third joins, commits, one closes.
    let cooperative = [
        &[0b0_1100][..],
        &two_join,
        &[0, 0],
        &time,
        &[8, 0],
        &[8, 0x81],
        &time,
        &[10, 1],
        &time,
        &time,
        &[8, 0],
        &time,
    ]
    .concat();
    // Pause, seek back, resume, a fail-over (classic) or a retriable heartbeat error (KIP-848).
    let faults = |setup: u8| {
        [
            &[setup][..],
            &two_join,
            &[5, 0, 0],
            &[7, 1, 0, 5],
            &time,
            &[6, 0, 0],
            &[13, 0],
            &time,
            &[1, 20],
            &[9, 0, 2],
            &time,
            &[3, 0],
            &time,
            &[4, 0],
            &time,
        ]
        .concat()
    };
    // Crash and isolation: the others take the partitions over.
    let crash = [
        &[0b0100][..],
        &two_join,
        &[0, 1],
        &time,
        &[11, 0],
        &[12, 1, 30],
        &time,
        &time,
        &time,
        &[1, 30],
        &time,
    ]
    .concat();
    vec![
        ("classic-range", classic_range),
        ("kip848", kip848),
        ("cooperative-stores-commits", cooperative),
        ("classic-faults", faults(0b0100)),
        ("kip848-faults", faults(1)),
        ("crash-isolate", crash),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_hands_records_out_and_commits() {
        for (name, data) in seeds() {
            let run = kcon::fuzzing::consumer(&data);
            assert!(run.consumers >= 2, "{name}: {run:?}");
            assert!(run.handed >= 30, "{name}: {run:?}");
            assert!(run.commits > 0, "{name}: {run:?}");
        }
    }

    /// The inputs that once failed, kept in the corpus as `regression-*`, hold the invariants
    /// (a KIP-848 consumer fenced while its close's commit waited, then let in again with a
    /// new epoch: the commit went under that epoch with the partition the coordinator had
    /// given to another member).
    #[test]
    fn the_regression_inputs_pass() {
        let regressions = crate::corpus::regressions("consumer");
        for (_, data) in &regressions {
            run(data);
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("consumer", seeds());
    }
}
