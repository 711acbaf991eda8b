use super::*;

/// A partition that received `offsets` and finished `finished` of them.
fn progress(offsets: impl IntoIterator<Item = i64>, finished: &[i64]) -> Progress {
    let mut p = Progress::default();
    for offset in offsets {
        p.received(offset);
    }
    for &offset in finished {
        p.finished(offset);
    }
    p
}

/// The text for a hand-made payload of `kind`.
fn text(kind: u8, varints: &[u64], bytes: &[u8]) -> String {
    let mut payload = Vec::new();
    for &v in varints {
        put_varint(&mut payload, v);
    }
    payload.extend_from_slice(bytes);
    format!(
        "{VERSION}{}{}",
        char::from(kind),
        URL_SAFE_NO_PAD.encode(&payload)
    )
}

#[test]
fn records_finished_in_order_move_the_committable_offset_and_need_no_metadata() {
    let mut p = progress(0..5, &[0, 1]);
    assert_eq!(p.committable(), Some(2));
    assert_eq!(p.pending(), 3);
    assert_eq!(p.metadata(4096), Metadata::none(true));
    for offset in 2..5 {
        p.finished(offset);
    }
    assert_eq!(p.committable(), Some(5));
    assert_eq!(p.gap(), 0);
    assert_eq!(Progress::default().committable(), None);
}

#[test]
fn the_committed_offset_stays_at_the_lowest_record_not_finished() {
    let p = progress(0..10, &[3, 4, 5, 9]);
    assert_eq!(p.committable(), Some(0));
    assert_eq!(p.gap(), 10);
    let metadata = check_metadata(&p, 4096);
    assert!(metadata.complete);
    let read = FinishedAbove::read(0, &metadata.text).unwrap().unwrap();
    let finished: Vec<i64> = (0..12).filter(|&o| read.contains(o)).collect();
    assert_eq!(finished, [3, 4, 5, 9]);
    assert_eq!(read.last(), 9);
}

#[test]
fn offsets_that_name_no_record_count_as_finished() {
    // 2, 3 and 4 are a transaction's markers, or records compacted away.
    let p = progress([0, 1, 5, 6], &[1, 5]);
    let read = FinishedAbove::read(0, &check_metadata(&p, 4096).text)
        .unwrap()
        .unwrap();
    let finished: Vec<i64> = (0..8).filter(|&o| read.contains(o)).collect();
    assert_eq!(finished, [1, 2, 3, 4, 5]);
}

#[test]
fn the_text_is_the_documented_one() {
    // Offsets 101 and 102 finished, 103 not, 104 and 105 finished: the bitmap (1 byte) is
    // shorter than the runs 2, 1, 2 (3 bytes). Payload 0x64 (100), 0x05 (the span),
    // 0b0001_1011.
    let p = progress(100..106, &[101, 102, 104, 105]);
    assert_eq!(p.metadata(4096).text, "kcon1bZAUb");
    // Offsets 101 to 300 finished: one run of 200 (2 bytes) against a 25-byte bitmap.
    // Payload 0x64, 0xc8 0x01 (the span, 200), 0xc8 0x01 (the run).
    let p = progress(100..301, &(101..301).collect::<Vec<_>>());
    assert_eq!(p.metadata(4096).text, "kcon1rZMgByAE");
}

#[test]
fn the_smaller_body_is_written() {
    // One record stuck at the bottom, 10,000 finished above it: runs.
    let p = progress(0..10_001, &(1..10_001).collect::<Vec<_>>());
    assert!(check_metadata(&p, 4096).text.starts_with("kcon1r"));
    // Every other record finished: a bitmap.
    let odd: Vec<i64> = (1..1000).step_by(2).collect();
    let p = progress(0..1000, &odd);
    let metadata = check_metadata(&p, 4096);
    assert!(metadata.text.starts_with("kcon1b"), "{}", metadata.text);
    assert!(metadata.complete);
}

#[test]
fn a_set_past_the_bound_is_cut_to_what_fits_and_says_so() {
    // Every other record of 100,000 finished: a 6,250-byte bitmap, 8,336 in base64.
    let odd: Vec<i64> = (1..100_000).step_by(2).collect();
    let p = progress(0..100_000, &odd);
    let metadata = check_metadata(&p, 4096);
    assert!(!metadata.complete);
    assert!(metadata.text.len() <= 4096 && metadata.text.len() > 4000);
    let read = FinishedAbove::read(0, &metadata.text).unwrap().unwrap();
    // 4,090 base64 characters carry 3,067 bytes: 4 of them the offset and the span, the rest
    // 24,504 bits.
    assert_eq!(read.last(), 24_504);
    // A bound too small for any text: none, and not complete.
    assert_eq!(check_metadata(&p, 8), Metadata::none(false));
}

#[test]
fn random_partitions_are_written_within_the_bound_and_read_back_exactly() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut p = Progress::default();
        let mut offset = rng.i64(0..1_000_000);
        for _ in 0..rng.usize(1..2000) {
            p.received(offset);
            if rng.u8(..) < 200 {
                p.finished(offset);
            }
            // Gaps: markers, compaction.
            offset += if rng.u8(..) < 20 { rng.i64(2..50) } else { 1 };
        }
        for max_bytes in [4096, rng.usize(0..200), rng.usize(200..2000)] {
            check_metadata(&p, max_bytes);
        }
    }
}

#[test]
fn only_kcon_version_1_for_the_committed_offset_is_read() {
    // Not this encoding: nothing is finished, and nothing to report.
    for other in ["", "{\"owner\":\"app\"}", "kcon2rZAUb", "kcon"] {
        assert_eq!(FinishedAbove::read(100, other), Ok(None), "{other}");
    }
    let good = text(BITMAP, &[100, 5], &[0b1_1011]);
    assert!(FinishedAbove::read(100, &good).unwrap().is_some());
    // Written for another offset (a commit that carried the text along): refused.
    let Err(Unreadable(why)) = FinishedAbove::read(99, &good) else {
        panic!("read for another offset");
    };
    assert!(why.contains("offset 100, not the committed 99"), "{why}");
    let refused = [
        ("no body", "kcon1".to_owned()),
        ("not base64url", "kcon1r%%%".to_owned()),
        ("unknown kind", text(b'x', &[100, 5], &[5])),
        ("no span", text(RUNS, &[100], &[])),
        ("runs too long", text(RUNS, &[100, 5, 2, 1, 3], &[])),
        ("runs too short", text(RUNS, &[100, 5, 2, 1], &[])),
        ("bitmap too long", text(BITMAP, &[100, 5, 0xff], &[0])),
        ("bitmap too short", text(BITMAP, &[100, 9], &[0xff])),
        ("span past i64", text(RUNS, &[100, i64::MAX as u64], &[])),
        ("offset past i64", text(RUNS, &[u64::MAX, 1, 1], &[])),
        ("varint past 64 bits", text(RUNS, &[100], &[0xff; 11])),
    ];
    for (what, text) in refused {
        assert!(
            matches!(FinishedAbove::read(100, &text), Err(Unreadable(_))),
            "{what}: {text}"
        );
    }
}

#[test]
fn a_huge_span_costs_nothing_to_read() {
    // One run covering 2^62 offsets: read without allocating for them.
    let huge = 1u64 << 62;
    let read = FinishedAbove::read(0, &text(RUNS, &[0, huge, huge], &[]))
        .unwrap()
        .unwrap();
    assert!(read.contains(1) && read.contains(huge as i64));
    assert!(!read.contains(huge as i64 + 1) && !read.contains(0));
}

#[test]
fn varints_are_leb128() {
    for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, value);
        assert_eq!(out.len(), varint_len(value), "{value}");
        let mut input = out.as_slice();
        assert_eq!(take_varint(&mut input), Some(value));
        assert!(input.is_empty());
    }
    assert_eq!(take_varint(&mut [0x80u8].as_slice()), None);
}
