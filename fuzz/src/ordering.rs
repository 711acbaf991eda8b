//! The `ordering` target: the record processor's scheduler of records by ordering unit
//! (`kcon::fuzzing::ordering`, the feature `fuzzing`) driven by the fuzz bytes; see that
//! function for the checks and `policy::ordering::check_run` for the input's format.

/// Runs the scheduler over `data` (the target's body).
pub fn run(data: &[u8]) {
    kcon::fuzzing::ordering(data);
}

/// Hand-made seeds for `corpus/ordering/`, each checked here to do what it is named for;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored --exact
/// ordering::tests::write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops of two bytes (op modulo 10, argument): 0 push (argument bit 0 the partition, bits
    // 1-2 the count less one, then a byte per record: key bits 0-1, gap bit 2), 3 finish,
    // 6 retry after argument × 2 + 1 ms, 7 time (argument × 2 ms), 9 leave.
    vec![
        // Under `key` (4: 4 % 3 is 1), two running at most: four records of keys a, b, a, c;
        // finished in turn, one retried, time passing.
        (
            "key-retry",
            vec![4, 0, 6, 0, 1, 0, 2, 3, 0, 6, 0, 7, 60, 3, 0, 3, 0, 3, 0],
        ),
        // Under `partition`, one running at most: two records of each partition, partition 0
        // leaving with one running and one waiting, partition 1's finished.
        (
            "partition-leaves",
            vec![0, 0, 2, 0, 0, 0, 3, 2, 2, 9, 0, 3, 0, 3, 0],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_does_what_it_is_named_for() {
        for (name, data) in seeds() {
            let run = kcon::fuzzing::ordering(&data);
            assert!(run.finished >= 2, "{name}: {run:?}");
            match name {
                "key-retry" => assert!(run.retried == 1, "{name}: {run:?}"),
                _ => assert!(run.left == 2, "{name}: {run:?}"),
            }
        }
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("ordering", seeds());
    }
}
