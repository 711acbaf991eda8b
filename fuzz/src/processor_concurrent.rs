//! The `processor_concurrent` target: the record processor's policy machine with records side
//! by side (`processing.ordering`, `processing.max.concurrency`) on its driver
//! (`kcon::fuzzing::processor_concurrent`, the feature `fuzzing`) driven by the fuzz bytes; see
//! that function for the input's format and the invariants checked after every op.

/// Runs the policy machine over `data` (the target's body).
pub fn run(data: &[u8]) {
    kcon::fuzzing::processor_concurrent(data);
}

/// The allocation the target allows beyond [`bounded`](crate::bounded)'s share of the input.
/// The machine keeps the records handed to it until they start: up to
/// `processing.max.buffered.records` (1,000 in the largest setup) and a batch, all in one unit's
/// queue under `partition` ordering, a queue that doubles as it grows. That bounds its largest
/// allocation by the setup, not the input, since a record costs little more than a byte of
/// input here.
pub fn allowance() -> usize {
    2 * 1024 * std::mem::size_of::<kcon::Record>()
}

/// Hand-made seeds for `corpus/processor_concurrent/`, each checked here to do what it is
/// named for; `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored --exact
/// processor_concurrent::tests::write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops of two bytes (op modulo 9, argument): 0 feed (argument bit 0 the partition, bits 1-3
    // the count, then a key byte per record), 2 done, 4 retriable, 5 for good, 6 time
    // (argument × 10 ms), 7 revoke (bit 1 clear) or lose (set), 8 run again.
    vec![
        // Under `key` (1), 5 at once (bits 2-3: 2), bound 1000 (bits 4-5: 3): six records of
        // keys a, b, a, c, b, d; two done out of order, the first failing retriably, then
        // done after its backoff with the rest.
        (
            "key-out-of-order",
            vec![
                0b0011_1001,
                0,
                0b1010,
                0,
                1,
                0,
                2,
                1,
                3,
                2,
                1,
                2,
                1,
                4,
                0,
                6,
                10,
                2,
                0,
                2,
                0,
                2,
                0,
                2,
                0,
            ],
        ),
        // Under `unordered` (2), one at a time, bound 8 (bits 4-5: 1): twelve records of
        // partition 0 (paused past the bound), partition 0 revoked with a record out, released
        // once it is done.
        (
            "revoked-while-running",
            vec![
                0b0001_0010,
                0,
                0b1010,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0b1010,
                0,
                0,
                0,
                0,
                0,
                0,
                7,
                0,
                2,
                0,
                2,
                0,
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_does_what_it_is_named_for() {
        for (name, data) in seeds() {
            let run = kcon::fuzzing::processor_concurrent(&data);
            match name {
                "key-out-of-order" => {
                    assert!(run.most_out >= 3 && run.retried == 1, "{name}: {run:?}");
                }
                _ => assert!(run.released == 1 && run.pressed > 0, "{name}: {run:?}"),
            }
        }
    }

    /// Inputs that once failed: more than 512 records of one partition waiting under
    /// `partition` ordering, one at a time, the buffer's bound at 1,000, grew the partition's
    /// queue past the input's share of the allocation bound (records held up to the buffer's
    /// bound are the setup's cost, see [`allowance`]).
    #[test]
    fn regressions_pass_within_the_bound() {
        let regressions = crate::corpus::regressions("processor_concurrent");
        for (_, data) in &regressions {
            crate::bounded(data, allowance(), run);
        }
        assert!(!regressions.is_empty(), "no regression inputs");
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("processor_concurrent", seeds());
    }
}
