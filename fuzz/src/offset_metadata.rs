//! The `offset_metadata` target: the commit metadata in which kcon's record processor carries
//! the records finished above a partition's committed offset (`kcon::fuzzing::offset_metadata`,
//! the feature `fuzzing`): hostile text read as a broker could answer it, and partitions made
//! of the fuzz bytes written and read back; see that function for the input's format and the
//! checks.

/// Reads or writes offset metadata from `data` (the target's body).
pub fn run(data: &[u8]) {
    kcon::fuzzing::offset_metadata(data);
}

/// A text to read, committed with the offset `committed`.
fn to_read(committed: i64, text: &str) -> Vec<u8> {
    let mut data = vec![0];
    data.extend_from_slice(&committed.to_le_bytes());
    data.extend_from_slice(text.as_bytes());
    data
}

/// Hand-made seeds for `corpus/offset_metadata/`, each checked here to do what it is named for;
/// `cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored write_seeds` writes them.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Ops after the odd first byte: even receives the next record after a gap of bits 1-3,
    // odd finishes the pending record bits 1-7 pick; every 16th op writes within 8 × its byte.
    let mut out_of_order = vec![1];
    out_of_order.extend([0u8; 32]);
    out_of_order.extend([3u8; 15]);
    // The 48th op finishes the lowest record, and writes within 8 bytes: too few.
    out_of_order.push(1);
    out_of_order.extend([3u8; 4]);
    let mut gaps = vec![1];
    for _ in 0..12 {
        gaps.extend([0, 14, 0, 3, 7, 0]);
    }
    vec![
        // The documented texts: a bitmap and a run.
        ("read-bitmap", to_read(100, "kcon1bZAUb")),
        ("read-runs", to_read(100, "kcon1rZMgByAE")),
        // 32 records, 20 finished out of order; written under small bounds and at 4,096.
        ("write-out-of-order", out_of_order),
        // Records with gaps between them (markers, compaction), finished in no order.
        ("write-gaps", gaps),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_does_what_it_is_named_for() {
        for (name, data) in seeds() {
            let run = kcon::fuzzing::offset_metadata(&data);
            if name.starts_with("read") {
                assert!(run.read, "{name}: {run:?}");
            } else {
                assert!(run.written >= 3 && run.cut >= 1, "{name}: {run:?}");
            }
        }
    }

    #[test]
    fn pseudo_random_inputs_keep_the_checks() {
        let mut total = kcon::fuzzing::OffsetMetadataRun::default();
        for seed in 0..400u64 {
            let mut next = crate::seeded(seed);
            let len = next() % 600 + 1;
            let data: Vec<u8> = (0..len)
                .map(|i| if i == 0 { 1 } else { next() as u8 })
                .collect();
            let run = kcon::fuzzing::offset_metadata(&data);
            total.written += run.written;
            total.cut += run.cut;
        }
        // Most texts are written whole; small bounds cut some.
        assert!(total.cut > 0 && total.cut < total.written, "{total:?}");
    }

    #[test]
    #[ignore]
    fn write_seeds() {
        crate::corpus::write_seeds("offset_metadata", seeds());
    }
}
