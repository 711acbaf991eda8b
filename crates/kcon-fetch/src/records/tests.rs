//! Checking an answer's batches, then decoding them part by part as they are handed out.

use bytes::{Bytes, BytesMut};
use kcon_codec::compression::Compression;
use kcon_codec::records::RecordBatchBuilder;

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
    check_partition(&tp(), &Arc::from("t"), bytes, from, None, -1)
}

fn fetched(d: Checked, size: usize) -> FetchedRecords {
    FetchedRecords {
        partition: tp(),
        records: Vec::new(),
        next_offset: d.position,
        high_watermark: 100,
        size,
        undecoded: d.batches,
    }
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
    assert!(d.decompressed > 0, "decompressed bytes are counted");
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
