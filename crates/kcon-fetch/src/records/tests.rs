//! Checking an answer's batches, then decoding them part by part as they are handed out.

use bytes::{Bytes, BytesMut};
use kcon_codec::compression::Compression;
use kcon_codec::records::{NewRecord, RecordBatchBuilder};

use super::*;

fn batch(base: i64, n: usize, epoch: i32, compression: Compression) -> Bytes {
    let mut b = RecordBatchBuilder::new(base)
        .partition_leader_epoch(epoch)
        .compression(compression);
    for i in 0..n {
        let v = format!("v{}", base + i as i64);
        b.record(1_000 + i as i64, Some(b"k"), Some(v.as_bytes()));
    }
    b.build().expect("a batch")
}

fn joined(parts: &[Bytes]) -> Bytes {
    let mut all = BytesMut::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    all.freeze()
}

fn tp() -> TopicPartition {
    TopicPartition::new("t", 2)
}

fn check(bytes: Bytes, from: i64) -> Checked {
    check_partition(&tp(), Topic::new("t"), bytes, from, Some(0), None, -1)
}

fn fetched(d: Checked, size: usize) -> FetchedRecords {
    let mut r = FetchedRecords::new(tp(), Vec::new(), d.position, 100, size);
    r.undecoded = d.batches;
    r
}

fn offsets(r: &FetchedRecords) -> Vec<i64> {
    r.records.iter().map(|r| r.offset).collect()
}

#[test]
fn parts_are_decoded_in_order_across_batches_and_the_last_carries_the_position() {
    let bytes = joined(&[
        batch(0, 5, 3, Compression::None),
        batch(5, 7, 4, Compression::None),
    ]);
    let d = check(bytes.clone(), 0);
    assert_eq!((d.position, d.corrupt_at, d.decompressed), (12, None, 0));
    let mut r = fetched(d, bytes.len());
    assert_eq!((r.len(), r.records.len()), (12, 0), "nothing decoded yet");
    assert_eq!(r.last_leader_epoch(), Some(4));

    let mut parts = Vec::new();
    while !r.is_empty() {
        parts.push(r.take(5));
    }
    let seen: Vec<_> = parts
        .iter()
        .map(|p| (offsets(p), p.next_offset, p.size))
        .collect();
    assert_eq!(
        seen,
        [
            (vec![0, 1, 2, 3, 4], 5, 0),
            (vec![5, 6, 7, 8, 9], 10, 0),
            (vec![10, 11], 12, bytes.len()),
        ]
    );
    let second = &parts[1].records;
    assert_eq!(second[0].value.as_deref(), Some(&b"v5"[..]));
    assert_eq!((second[0].leader_epoch, second[0].partition), (Some(4), 2));
    assert_eq!(parts[0].records[4].leader_epoch, Some(3));
    // Zero-copy: an uncompressed value points into the answer's buffer.
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(range.contains(&(second[0].value.as_ref().unwrap().as_ptr() as usize)));
}

#[test]
fn decoding_everything_gives_what_the_parts_give() {
    let bytes = joined(&[
        batch(0, 4, 1, Compression::Lz4),
        batch(4, 3, 1, Compression::Zstd),
    ]);
    let d = check(bytes.clone(), 0);
    assert_eq!(d.decompressed, 0, "nothing decompressed yet");
    let whole = fetched(d, 1).decoded();
    assert_eq!(offsets(&whole), (0..7).collect::<Vec<_>>());

    let mut r = fetched(check(bytes, 0), 1);
    let mut parts = Vec::new();
    while !r.is_empty() {
        parts.extend(r.take(2).records);
    }
    assert_eq!(parts, whole.records);
}

#[test]
fn records_before_the_fetch_offset_are_not_handed_out() {
    // Fetched from offset 3: the broker sends the whole batch holding it.
    let d = check(batch(0, 6, 1, Compression::None), 3);
    assert_eq!(d.position, 6);
    let r = fetched(d, 1);
    assert_eq!(r.len(), 3);
    assert_eq!(offsets(&r.decoded()), [3, 4, 5]);
}

#[test]
fn a_batch_with_an_unreadable_record_is_withheld_whole_even_when_its_crc_holds() {
    let good = batch(0, 3, 1, Compression::None);
    let mut bad = batch(3, 3, 1, Compression::None).to_vec();
    // The first record's length (a varint at the start of the records section) made huge,
    // and the CRC (over attributes..end) written again so that only the record is wrong.
    const RECORDS: usize = 61;
    bad[RECORDS] = 0x7e;
    let crc = crc32c::crc32c(&bad[21..]);
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    let d = check(joined(&[good, Bytes::from(bad)]), 0);
    assert_eq!((d.position, d.corrupt_at), (3, Some(3)));
    assert_eq!(offsets(&fetched(d, 1).decoded()), [0, 1, 2]);
}

#[test]
fn an_answers_bytes_go_with_its_records_part_by_part() {
    // 12 records in two batches, 5 of them compressed: the bytes counted as consumed are the
    // answer's as fetched, shared by the parts in proportion to their records.
    let bytes = joined(&[
        batch(0, 5, 3, Compression::Lz4),
        batch(5, 7, 4, Compression::None),
    ]);
    let mut r = fetched(check(bytes.clone(), 0), 7_000);
    r.bytes = 1_200;
    let mut parts = Vec::new();
    while !r.is_empty() {
        parts.push(r.take(5));
    }
    let shares: Vec<_> = parts.iter().map(|p| (p.records.len(), p.bytes)).collect();
    assert_eq!(shares, [(5, 500), (5, 500), (2, 200)]);
    assert_eq!(r.bytes, 0, "nothing left counted twice");
    // Taken whole, the one part carries them all.
    let mut whole = fetched(check(bytes, 0), 7_000);
    whole.bytes = 1_200;
    assert_eq!(whole.take(100).bytes, 1_200);
}

#[test]
fn decoded_records_taken_in_parts_keep_their_order() {
    let d = check(batch(0, 4, 1, Compression::None), 0);
    let all = fetched(d, 9).decoded();
    let mut r = FetchedRecords::new(tp(), all.records.clone(), 4, 100, 9);
    assert_eq!(r.last_leader_epoch(), Some(1));
    let first = r.take(3);
    assert_eq!(
        (offsets(&first), first.next_offset, first.size),
        (vec![0, 1, 2], 3, 0)
    );
    let last = r.take(3);
    assert_eq!(
        (offsets(&last), last.next_offset, last.size),
        (vec![3], 4, 9)
    );
    assert!(r.is_empty());
}

/// The compressed batch `base..base + n` (values `v{offset}`) whose record at `bad` (an index
/// into the batch) does not parse: its length made longer than the records left. The payload
/// decompresses and the CRC holds, as a producer with a bug would write it.
fn compressed_with_bad_record(base: i64, n: usize, bad: usize, codec: Compression) -> Bytes {
    const HEADER: usize = 61;
    let plain = batch(base, n, 1, Compression::None);
    let mut section = plain[HEADER..].to_vec();
    // Every record here is shorter than 64 bytes: its length is one zigzag varint byte.
    let mut at = 0;
    for _ in 0..bad {
        at += 1 + usize::from(section[at] >> 1);
    }
    section[at] = 0x7e;
    let packed = kcon_codec::compression::compress(codec, &section).expect("compresses");
    let mut b = plain[..HEADER].to_vec();
    let attributes = i16::from_be_bytes([b[21], b[22]]) | i16::from(codec.id());
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&packed);
    seal(&mut b);
    Bytes::from(b)
}

/// The compressed batch `base..base + n` whose payload does not decompress: cut short, the
/// CRC computed over what is left.
fn compressed_cut(base: i64, n: usize, codec: Compression) -> Bytes {
    let mut b = batch(base, n, 1, codec).to_vec();
    b.truncate(b.len() - 5);
    seal(&mut b);
    Bytes::from(b)
}

/// The batch length and CRC of `b` written again over its bytes.
fn seal(b: &mut [u8]) {
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_compressed_batch_is_decompressed_only_when_its_records_are_handed_out() {
    for codec in [Compression::Lz4, Compression::Zstd] {
        let bytes = joined(&[batch(0, 4, 1, codec), batch(4, 4, 1, codec)]);
        let d = check(bytes.clone(), 0);
        assert_eq!((d.position, d.corrupt_at, d.decompressed), (8, None, 0));
        let mut r = fetched(d, bytes.len());
        let still = |r: &FetchedRecords| -> Vec<bool> {
            r.undecoded
                .batches
                .iter()
                .map(|d| d.batch.needs_decompression())
                .collect()
        };
        assert_eq!(still(&r), [true, true], "{codec}: held as they came");
        assert_eq!(r.len(), 8, "counted from the headers");
        // Still compressed: nothing to read in place, and the walk counts nothing.
        assert_eq!(
            (r.borrowed().len(), r.borrowed().count()),
            (0, 0),
            "{codec}"
        );

        let first = r.take(4);
        assert_eq!(offsets(&first), [0, 1, 2, 3]);
        assert_eq!(still(&r), [true], "{codec}: the second waits, compressed");
        let second = r.take(4);
        assert_eq!(
            (offsets(&second), second.size),
            (vec![4, 5, 6, 7], bytes.len())
        );
        assert_eq!(second.records[0].value.as_deref(), Some(&b"v4"[..]));
    }
}

#[test]
fn decompressed_bytes_held_for_the_next_part_are_counted_until_it_goes() {
    let bytes = joined(&[
        batch(0, 5, 1, Compression::Lz4),
        batch(5, 5, 1, Compression::Zstd),
    ]);
    let wire = bytes.len();
    let mut r = fetched(check(bytes, 0), wire);
    let mut counted = wire;
    let mut released = 0;
    let mut parts = Vec::new();
    while !r.is_empty() {
        let part = r.take(3);
        counted += part.held_more();
        released += part.size;
        // What the budget counts for the rest is what the rest holds: the answer's bytes and
        // the decompressed batch its next records wait in.
        let held = r.undecoded.held;
        assert_eq!(counted - released, r.size);
        assert_eq!(r.size, if r.is_empty() { 0 } else { wire + held });
        parts.push((offsets(&part), held > 0));
    }
    assert_eq!(released, counted, "everything counted was given back");
    assert_eq!(
        parts,
        [
            // The first batch decompressed; two of its records wait in it.
            (vec![0, 1, 2], true),
            // The second decompressed; two of its records wait in it.
            (vec![3, 4, 5], true),
            (vec![6, 7, 8], true),
            (vec![9], false),
        ]
    );
    // The first part's decompression was announced to the budget.
    let mut r = fetched(check(batch(0, 5, 1, Compression::Lz4), 0), 1);
    assert!(r.take(3).held_more() > 0);
    assert_eq!(r.take(3).held_more(), 0, "the last part holds nothing more");
}

#[test]
fn a_corrupt_compressed_payload_is_found_when_handed_out_and_ends_the_records_there() {
    for codec in [Compression::Lz4, Compression::Zstd, Compression::Gzip] {
        let bytes = joined(&[
            batch(0, 3, 4, codec),
            compressed_cut(3, 3, codec),
            batch(6, 3, 4, codec),
        ]);
        // The CRC holds: nothing is wrong when the answer comes.
        let d = check(bytes.clone(), 0);
        assert_eq!((d.position, d.corrupt_at), (9, None), "{codec}");
        let mut r = fetched(d, bytes.len());
        let first = r.take(2);
        assert_eq!(
            (offsets(&first), first.next_offset, first.corrupt()),
            (vec![0, 1], 2, None)
        );
        // The next part reaches the bad batch: it is the last, ends before it, and carries
        // everything counted, so the budget lets go of the answer as it would at its end.
        let last = r.take(2);
        assert!(r.is_empty(), "{codec}: nothing after the bad batch is kept");
        assert_eq!(
            (offsets(&last), last.next_offset, last.size),
            (vec![2], 3, bytes.len() + first.held_more())
        );
        assert_eq!(
            last.corrupt(),
            Some(&CorruptRecords {
                offset: 3,
                leader_epoch: Some(4),
                answer_end: 9,
            }),
            "{codec}"
        );
    }
}

#[test]
fn a_record_that_does_not_parse_is_found_when_handed_out_and_the_records_before_it_go_out() {
    let bytes = joined(&[
        batch(0, 2, 4, Compression::Lz4),
        compressed_with_bad_record(2, 4, 2, Compression::Lz4),
        batch(6, 3, 4, Compression::Lz4),
    ]);
    let d = check(bytes.clone(), 0);
    assert_eq!((d.position, d.corrupt_at), (9, None));
    let whole = fetched(d, bytes.len()).decoded();
    // 2 and 3 parse; 4 does not: the records end at 4, the answer's end is not reached.
    assert_eq!(offsets(&whole), [0, 1, 2, 3]);
    assert_eq!((whole.next_offset, whole.size), (4, bytes.len()));
    assert_eq!(
        whole.corrupt().map(|c| (c.offset, c.answer_end)),
        Some((4, 9))
    );

    // Cut by parts, the good records of the bad batch still go out before the error.
    let mut r = fetched(check(bytes, 0), 1);
    let mut seen = Vec::new();
    let mut corrupt = None;
    while !r.is_empty() {
        let part = r.take(1);
        seen.extend(offsets(&part));
        corrupt = part.corrupt().copied().or(corrupt);
    }
    assert_eq!(seen, [0, 1, 2, 3]);
    assert_eq!(corrupt.map(|c| c.offset), Some(4));

    // Nothing of the batch parses: the error is at its first offset, with the epoch of the
    // position the answer was fetched from.
    let bad_first = compressed_with_bad_record(10, 3, 0, Compression::Zstd);
    let d = check_partition(&tp(), Topic::new("t"), bad_first, 10, Some(7), None, -1);
    let r = fetched(d, 1).decoded();
    assert!(r.records.is_empty());
    assert_eq!(
        r.corrupt(),
        Some(&CorruptRecords {
            offset: 10,
            leader_epoch: Some(7),
            answer_end: 13,
        })
    );
}

#[test]
fn a_part_ending_inside_a_compacted_compressed_batch_leaves_the_exact_count() {
    // Offsets 0, 2, 4, 6, 8 (compaction removed the odd ones), fetched from 3: the header
    // allows up to 5 records there; 4, 6 and 8 are.
    let mut b = RecordBatchBuilder::new(0)
        .partition_leader_epoch(1)
        .compression(Compression::Zstd);
    for delta in [0, 2, 4, 6, 8] {
        let v = format!("v{delta}");
        b.push(NewRecord {
            offset_delta: Some(delta),
            timestamp: 1_000,
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    let bytes = joined(&[b.build().unwrap(), batch(9, 2, 1, Compression::None)]);
    let wire = bytes.len();
    let mut r = fetched(check(bytes, 3), wire);
    assert_eq!(r.len(), 5 + 2, "declared, before decompression");
    let first = r.take(1);
    assert_eq!(offsets(&first), [4]);
    assert_eq!(r.len(), 2 + 2, "counted once decompressed");
    let second = r.take(3);
    assert_eq!(offsets(&second), [6, 8, 9]);
    assert_eq!(second.records[1].value.as_deref(), Some(&b"v8"[..]));
    let last = r.take(3);
    assert_eq!((offsets(&last), last.next_offset), (vec![10], 11));
    assert!(r.is_empty());
    assert_eq!(
        first.size + second.size + last.size,
        wire + first.held_more()
    );
}

#[test]
fn records_cut_where_the_log_diverged_keep_those_before_and_count_no_bytes() {
    let answer = || {
        let bytes = joined(&[
            batch(0, 5, 1, Compression::None),
            batch(5, 5, 1, Compression::Lz4),
            batch(10, 2, 1, Compression::None),
        ]);
        let len = bytes.len();
        fetched(check(bytes, 0), len)
    };
    // As it came: the compressed batch is cut without being decompressed.
    let mut r = answer();
    assert!(r.cut_at(7));
    assert_eq!((r.len(), r.next_offset, r.size), (7, 7, 0));
    assert!(
        r.undecoded
            .batches
            .iter()
            .any(|d| d.batch.needs_decompression())
    );
    let all = r.take(100);
    assert_eq!(offsets(&all), [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!((all.next_offset, all.size, all.corrupt()), (7, 0, None));

    // After a part that ended inside the compressed batch, decompressed and held for the rest.
    let mut r = answer();
    assert_eq!(offsets(&r.take(6)), [0, 1, 2, 3, 4, 5]);
    assert!(r.undecoded.held > 0);
    assert!(r.cut_at(8));
    assert_eq!((r.len(), r.size, r.undecoded.held), (2, 0, 0));
    let rest = r.take(100);
    assert_eq!(
        (offsets(&rest), rest.next_offset, rest.size),
        (vec![6, 7], 8, 0)
    );

    // Nothing before the cut; a cut past the records keeps them all.
    let mut r = answer();
    assert!(!r.cut_at(0));
    let mut r = answer();
    assert!(r.cut_at(12));
    assert_eq!((r.len(), r.next_offset, r.size), (12, 12, 0));
}

/// Takes `a` with `take` and `b`, the same answer, with `take_undecoded`, `max` records a
/// part: each part left undecoded, read in place and decoded later, holds the records `take`
/// decodes, and says the same of its position, bytes, epoch and corruption. The number of
/// parts.
fn undecoded_parts_match(mut a: FetchedRecords, mut b: FetchedRecords, max: usize) -> usize {
    let mut parts = 0;
    while !a.is_empty() {
        let decoded = a.take(max);
        let kept = b.take_undecoded(max);
        let read: Vec<Record> = kept.borrowed().map(|r| r.to_record()).collect();
        assert_eq!(
            read, decoded.records,
            "max {max}, part {parts}: read in place"
        );
        assert_eq!(kept.len(), decoded.records.len());
        assert_eq!(kept.borrowed().len(), decoded.records.len());
        let said = |p: &FetchedRecords| {
            (
                p.next_offset,
                p.size,
                p.bytes,
                p.held_more(),
                p.corrupt().copied(),
                p.last_leader_epoch(),
                p.last_timestamp(),
            )
        };
        assert_eq!(said(&kept), said(&decoded), "max {max}, part {parts}");
        assert_eq!(
            kept.decoded().records,
            decoded.records,
            "max {max}, part {parts}: decoded later"
        );
        assert_eq!(
            (b.len(), b.next_offset, b.size, b.bytes),
            (a.len(), a.next_offset, a.size, a.bytes),
            "max {max}, part {parts}: what is left"
        );
        parts += 1;
    }
    assert!(b.is_empty());
    parts
}

#[test]
fn parts_left_undecoded_hold_what_take_decodes() {
    let mut compacted = RecordBatchBuilder::new(0)
        .partition_leader_epoch(1)
        .compression(Compression::Zstd);
    for delta in [0, 2, 4, 6, 8] {
        compacted.push(NewRecord {
            offset_delta: Some(delta),
            timestamp: 1_000,
            value: Some(b"v"),
            ..NewRecord::default()
        });
    }
    let answers = [
        (
            joined(&[
                batch(0, 5, 3, Compression::None),
                batch(5, 7, 4, Compression::None),
            ]),
            0,
        ),
        (
            joined(&[
                batch(0, 4, 1, Compression::Lz4),
                batch(4, 3, 2, Compression::Zstd),
                batch(7, 3, 2, Compression::None),
            ]),
            0,
        ),
        (batch(0, 6, 1, Compression::None), 3),
        (batch(0, 6, 1, Compression::Lz4), 3),
        (
            joined(&[
                batch(0, 3, 4, Compression::Lz4),
                compressed_cut(3, 3, Compression::Lz4),
                batch(6, 3, 4, Compression::Lz4),
            ]),
            0,
        ),
        (
            joined(&[
                batch(0, 2, 4, Compression::Lz4),
                compressed_with_bad_record(2, 4, 2, Compression::Lz4),
                batch(6, 3, 4, Compression::Lz4),
            ]),
            0,
        ),
        (compressed_with_bad_record(10, 3, 0, Compression::Zstd), 10),
        (
            joined(&[
                compacted.build().unwrap(),
                batch(9, 2, 1, Compression::None),
            ]),
            3,
        ),
    ];
    for (bytes, from) in answers {
        for max in [1, 2, 3, 5, 100] {
            let answer = || {
                let mut r = fetched(check(bytes.clone(), from), bytes.len() + 7);
                r.bytes = 1_000;
                r
            };
            let parts = undecoded_parts_match(answer(), answer(), max);
            assert!(parts > 0);
        }
    }
}

#[test]
fn records_read_in_place_are_slices_of_the_answer_with_their_headers() {
    let mut b = RecordBatchBuilder::new(40).partition_leader_epoch(6);
    let headers: [(&[u8], Option<&[u8]>); 3] = [
        (b"trace", Some(b"a")),
        (b"null", None),
        (b"trace", Some(b"b")),
    ];
    b.push(NewRecord {
        timestamp: 5,
        key: Some(b"k"),
        value: Some(b"first"),
        headers: &headers,
        ..NewRecord::default()
    });
    b.push(NewRecord {
        timestamp: 6,
        value: None,
        ..NewRecord::default()
    });
    let bytes = b.build().unwrap();
    let mut r = fetched(check(bytes.clone(), 40), bytes.len());
    let part = r.take_undecoded(10);
    assert!(r.is_empty());
    let read: Vec<BorrowedRecord<'_>> = part.borrowed().collect();
    assert_eq!(read.len(), 2);
    let first = read[0];
    assert_eq!(
        (
            first.topic(),
            first.partition(),
            first.offset(),
            first.leader_epoch()
        ),
        ("t", 2, 40, Some(6))
    );
    assert_eq!(
        (first.key(), first.value()),
        (Some(&b"k"[..]), Some(&b"first"[..]))
    );
    assert_eq!(first.timestamp(), 5);
    assert_eq!(first.headers().collect::<Vec<_>>(), headers);
    assert_eq!(first.header("trace"), Some(Some(&b"b"[..])));
    assert_eq!(first.header("null"), Some(None));
    assert_eq!(first.header("none"), None);
    // No copy: the value lies in the answer's buffer.
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(range.contains(&(first.value().unwrap().as_ptr() as usize)));
    assert_eq!((read[1].offset(), read[1].value()), (41, None));

    // Records decoded already read the same.
    let records: Vec<Record> = read.iter().map(BorrowedRecord::to_record).collect();
    let again: Vec<Record> = BorrowedRecords::of_records(&records)
        .map(|r| r.to_record())
        .collect();
    assert_eq!(again, records);
    let from_records = BorrowedRecords::of_records(&records).next().unwrap();
    assert_eq!(from_records.headers().collect::<Vec<_>>(), headers);
    assert_eq!(format!("{:?}", from_records), format!("{first:?}"));
}
