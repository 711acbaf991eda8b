//! The `processor` target: the record processor's policy machine on its driver
//! (`kcon::fuzzing::processor`, the feature `fuzzing`) driven by the fuzz bytes; see that
//! function for the input's format and the invariants checked after every op.

/// Runs the policy machine over `data` (the target's body).
pub fn run(data: &[u8]) {
    kcon::fuzzing::processor(data);
}

/// Hand-made seeds for `corpus/processor/`, each checked here to store offsets;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops: 0 feed (arg bit 0 the partition, the rest the count), 1 done, 2 retriable, 3 poison,
    // 4 dead letter acknowledged, 5 dead letter failed, 6 time (arg × 20 ms), 7 leave,
    // 8 run again (even arg) or close the breaker (odd).
    vec![
        // Tolerance all, a dead-letter topic, 3 attempts: done, retried then done, poison
        // dead-lettered, done.
        (
            "retry-dead-letter",
            vec![0b1010, 0, 6, 1, 0, 2, 0, 6, 10, 1, 0, 3, 0, 4, 0, 1, 0],
        ),
        // Tolerance none: a poison record stops; running again retries it; then done.
        (
            "stop-run-again",
            vec![0, 0, 4, 1, 0, 3, 0, 8, 0, 1, 0, 1, 0],
        ),
        // Both partitions; partition 0 revoked mid-retry, fed again from its stored offset.
        (
            "revoked-mid-retry",
            vec![
                0b0101, 0, 4, 0, 5, 1, 0, 2, 0, 1, 1, 1, 1, 7, 0, 6, 20, 0, 4, 1, 0, 1, 0,
            ],
        ),
        // A failing dead-letter write stops; running again writes it again.
        (
            "dead-letter-fails",
            vec![0b0010, 0, 2, 3, 0, 5, 0, 8, 0, 4, 0, 1, 0],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_stores_offsets() {
        for (name, data) in seeds() {
            let run = kcon::fuzzing::processor(&data);
            assert!(run.stored >= 2, "{name}: {run:?}");
        }
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("processor", seeds());
    }
}
