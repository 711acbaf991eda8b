use bytes::{BufMut, Bytes};
use proptest::collection::vec;
use proptest::prelude::*;

use super::fuzz::{Spec, SpecRecord};
use super::*;
use crate::compression::{self, Compression};
use crate::error::{BatchErrorKind, Error};
use crate::wire::put_varlong;

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn decode_all(buf: Bytes, opts: DecodeOptions) -> (Vec<Result<Batch, Error>>, RecordBatches) {
    let mut it = RecordBatches::new(buf, opts);
    let v = it.by_ref().collect();
    (v, it)
}

fn corrupt_kind(e: &Error) -> (&Option<i64>, usize, &BatchErrorKind) {
    match e {
        Error::CorruptBatch(c) => (&c.base_offset, c.position, &c.kind),
        other => panic!("expected a corrupt batch, got {other}"),
    }
}

/// A magic-2 batch from raw parts: the header fields that matter here, the records section as
/// given (already compressed if `attributes` says so), length and CRC computed.
fn raw_batch(base_offset: i64, attributes: i16, record_count: i32, records: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_i64(base_offset);
    b.put_i32(0);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(attributes);
    b.put_i32(record_count.max(1) - 1);
    b.put_i64(0);
    b.put_i64(0);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(record_count);
    b.put_slice(records);
    seal(&mut b);
    b
}

/// Recomputes the length and CRC of the magic-2 batch that is all of `b`.
fn seal(b: &mut [u8]) {
    let len = (b.len() - v2::LOG_OVERHEAD) as i32;
    b[v2::LENGTH..v2::LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[v2::ATTRIBUTES..]);
    b[v2::CRC..v2::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch CRC agrees with an independent CRC-32C (the crc32c crate) at every length up to
/// a few vector widths, from every alignment, and on large inputs whose tail is not a
/// multiple of any block size; and with the standard check value.
#[test]
fn batch_crc_is_crc32c_at_every_length_and_alignment() {
    assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    let data: Vec<u8> = (0..(1usize << 20) + 77)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for start in 0..16 {
        for len in 0..=1100 {
            let bytes = &data[start..start + len];
            assert_eq!(
                super::crc32c(bytes),
                crc32c::crc32c(bytes),
                "{len} bytes from {start}"
            );
        }
    }
    for len in [4095, 4096, 4097, 65_536 + 3, 100_000, (1 << 20) + 60] {
        let bytes = &data[17..17 + len];
        assert_eq!(super::crc32c(bytes), crc32c::crc32c(bytes), "{len} bytes");
    }
}

/// One encoded record: its body fields as given.
fn raw_record(body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    put_varlong(&mut r, body.len() as i64);
    r.extend_from_slice(body);
    r
}

fn simple_spec(base_offset: i64, compression: Compression, n: usize) -> Spec {
    Spec {
        base_offset,
        compression,
        partition_leader_epoch: 3,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
        control: false,
        log_append_time: None,
        delete_horizon: None,
        records: (0..n)
            .map(|i| SpecRecord {
                offset_delta: i as i32,
                timestamp: 1_000 + i as i64,
                key: Some(format!("key-{i}").into_bytes()),
                value: Some(vec![i as u8; 30]),
                headers: vec![(b"h".to_vec(), Some(b"v".to_vec()))],
            })
            .collect(),
    }
}

fn bytes_opt() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(Vec::new())),
        vec(any::<u8>(), 0..40).prop_map(Some),
        // Long enough for two-byte varint lengths.
        vec(any::<u8>(), 60..200).prop_map(Some),
    ]
}

fn header_key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet, so duplicate keys are common.
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(Vec::new()),
        vec(any::<u8>(), 0..10),
    ]
}

/// A record's gap before its offset delta, timestamp, key, value and headers.
type RecordParts = (
    i32,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
);

fn spec_record() -> impl Strategy<Value = RecordParts> {
    (
        0i32..3,
        prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_800_000_000_000],
        bytes_opt(),
        bytes_opt(),
        vec((header_key(), bytes_opt()), 0..4),
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            any::<i64>(),
            0u8..5,
            any::<i32>(),
            any::<i64>(),
            any::<i16>(),
            any::<i32>(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
        ),
        vec(spec_record(), 0..20),
    )
        .prop_map(
            |(
                (base_offset, codec, epoch, pid, pepoch, seq),
                (transactional, control, lat, horizon),
                recs,
            )| {
                let mut delta: i32 = 0;
                let records = recs
                    .into_iter()
                    .map(|(gap, timestamp, key, value, headers)| {
                        delta += gap;
                        let r = SpecRecord {
                            offset_delta: delta,
                            timestamp,
                            key,
                            value,
                            headers,
                        };
                        delta += 1;
                        r
                    })
                    .collect();
                Spec {
                    base_offset,
                    compression: Compression::from_id(codec).unwrap_or_default(),
                    partition_leader_epoch: epoch,
                    producer_id: pid,
                    producer_epoch: pepoch,
                    base_sequence: seq,
                    transactional,
                    control,
                    log_append_time: lat,
                    delete_horizon: horizon,
                    records,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encode_then_decode_is_the_identity(specs in vec(spec(), 1..4)) {
        let mut buf = Vec::new();
        let mut sizes = Vec::new();
        for s in &specs {
            let b = s.encode();
            sizes.push(b.len());
            buf.extend_from_slice(&b);
        }
        let total = buf.len();
        let (batches, it) = decode_all(buf.into(), DecodeOptions::default());
        prop_assert_eq!(batches.len(), specs.len());
        let mut pos = 0;
        for ((b, s), size) in batches.iter().zip(&specs).zip(&sizes) {
            let b = b.as_ref().unwrap();
            prop_assert_eq!(b.position(), pos);
            prop_assert_eq!(b.size_in_bytes(), *size);
            s.check(b);
            pos += size;
        }
        prop_assert_eq!(it.bytes_consumed(), total);
        prop_assert!(!it.truncated_tail());
    }

    #[test]
    fn a_walk_resumed_from_its_mark_reads_what_the_whole_walk_reads(
        spec in spec(),
        flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = spec.encode().to_vec();
        if let Some((i, x)) = flip {
            let i = i.index(buf.len());
            buf[i] ^= x | 1;
        }
        let opts = DecodeOptions::default().with_verify_crc(false);
        let (batches, _) = decode_all(buf.into(), opts);
        for b in batches.iter().flatten() {
            let read = |r: Result<Record<'_>, Error>| {
                r.map(|r| (r.offset(), r.key_bytes(), r.value_bytes())).map_err(|e| e.to_string())
            };
            let whole: Vec<_> = b.records().map(read).collect();
            let mut walk = b.records();
            let mut parts: Vec<_> = walk.by_ref().take(cut.index(whole.len() + 1)).map(read).collect();
            parts.extend(b.records_from(walk.mark()).map(read));
            prop_assert_eq!(parts, whole);
        }
    }

    #[test]
    fn fuzz_round_trip_holds(data in vec(any::<u8>(), 0..600)) {
        fuzz_round_trip(&data);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..400)) {
        fuzz_decode_all(&data, 1 << 20);
    }

    #[test]
    fn mutated_batches_never_panic(
        spec in spec(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = spec.encode().to_vec();
        for (i, x) in flips {
            let i = i.index(buf.len());
            buf[i] ^= x | 1;
        }
        fuzz_decode_all(&buf, 1 << 20);
    }

    #[test]
    fn legacy_message_sets_round_trip(
        magic in 0i8..2,
        codec in prop::sample::select(vec![
            Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4,
        ]),
        lat in proptest::option::of(0i64..1 << 41),
        first_offset in 0i64..1 << 40,
        msgs in vec((0i64..3, 0i64..1 << 41, bytes_opt(), bytes_opt()), 1..12),
    ) {
        let mut offset = first_offset;
        let owned: Vec<_> = msgs
            .into_iter()
            .map(|(gap, ts, k, v)| {
                offset += gap;
                let m = (offset, ts, k, v);
                offset += 1;
                m
            })
            .collect();
        let messages: Vec<LegacyMessage<'_>> = owned
            .iter()
            .map(|(o, ts, k, v)| LegacyMessage {
                offset: *o,
                timestamp: *ts,
                key: k.as_deref(),
                value: v.as_deref(),
            })
            .collect();
        let bytes = encode_legacy_message_set(magic, codec, lat, &messages).unwrap();
        let total = bytes.len();
        let (batches, it) = decode_all(bytes, DecodeOptions::default());
        prop_assert_eq!(it.bytes_consumed(), total);
        let expected_batches = if codec == Compression::None { messages.len() } else { 1 };
        prop_assert_eq!(batches.len(), expected_batches);
        let mut got = Vec::new();
        for b in &batches {
            let b = b.as_ref().unwrap();
            prop_assert_eq!(b.magic(), magic);
            prop_assert_eq!(b.compression(), codec);
            prop_assert!(!b.is_transactional() && !b.is_control());
            prop_assert_eq!(b.producer_id(), -1);
            prop_assert_eq!(b.partition_leader_epoch(), -1);
            for r in b.records() {
                let r = r.unwrap();
                prop_assert_eq!(r.header_count(), 0);
                prop_assert_eq!(r.timestamp_type(), b.timestamp_type());
                got.push((r.offset(), r.timestamp(), r.key_bytes(), r.value_bytes()));
            }
            prop_assert_eq!(b.next_offset(), got.last().unwrap().0 + 1);
            // A walk stopped after its first message goes on from its mark.
            let mut walk = b.records();
            walk.next();
            let rest: Vec<_> = b.records_from(walk.mark()).map(|r| r.unwrap().offset()).collect();
            let after: Vec<_> = walk.map(|r| r.unwrap().offset()).collect();
            prop_assert_eq!(rest, after);
        }
        prop_assert_eq!(got.len(), messages.len());
        for (g, m) in got.iter().zip(&messages) {
            prop_assert_eq!(g.0, m.offset);
            let ts = match (magic, lat) {
                (0, _) => -1,
                (_, Some(t)) => t,
                (_, None) => m.timestamp,
            };
            prop_assert_eq!(g.1, ts);
            prop_assert_eq!(g.2.as_deref(), m.key);
            prop_assert_eq!(g.3.as_deref(), m.value);
        }
    }
}

#[test]
fn every_cut_of_a_multi_batch_buffer_ends_normally() {
    let parts: Vec<Bytes> = [
        simple_spec(0, Compression::None, 3).encode(),
        simple_spec(3, Compression::Gzip, 4).encode(),
        encode_legacy_message_set(
            1,
            Compression::Snappy,
            None,
            &[LegacyMessage {
                offset: 7,
                timestamp: 5,
                key: None,
                value: Some(b"legacy"),
            }],
        )
        .unwrap(),
        simple_spec(8, Compression::Zstd, 2).encode(),
    ]
    .into();
    let buf: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let buf = Bytes::from(buf);
    let mut ends = vec![0];
    for p in &parts {
        ends.push(ends.last().unwrap() + p.len());
    }
    for cut in 0..=buf.len() {
        let (batches, it) = decode_all(buf.slice(..cut), DecodeOptions::default());
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        assert_eq!(batches.len(), whole, "cut {cut}");
        assert!(batches.iter().all(Result::is_ok), "cut {cut}");
        assert_eq!(it.bytes_consumed(), ends[whole], "cut {cut}");
        assert_eq!(it.truncated_tail(), !ends.contains(&cut), "cut {cut}");
    }
}

#[test]
fn a_flipped_byte_is_a_crc_error_carrying_the_base_offset() {
    for codec in CODECS {
        let first = simple_spec(100, codec, 5).encode();
        let second = simple_spec(105, codec, 5).encode();
        let mut buf = first.to_vec();
        buf.extend_from_slice(&second);
        // Every byte the CRC covers, in the second batch.
        for i in first.len() + v2::ATTRIBUTES..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            let (batches, it) = decode_all(bad.clone().into(), DecodeOptions::default());
            assert_eq!(batches.len(), 2, "{codec} byte {i}");
            assert!(batches[0].is_ok());
            let (base, position, kind) = corrupt_kind(batches[1].as_ref().unwrap_err());
            assert_eq!(*base, Some(105));
            assert_eq!(position, first.len());
            assert!(matches!(kind, BatchErrorKind::CrcMismatch { .. }), "{kind}");
            assert_eq!(it.bytes_consumed(), first.len());
            // Without verification: whatever comes out, no panic.
            fuzz_decode_all(&bad, 1 << 20);
        }
    }
}

#[test]
fn a_flipped_byte_in_a_legacy_message_is_a_crc_error() {
    for magic in [0, 1] {
        let msgs = [
            LegacyMessage {
                offset: 50,
                timestamp: 9,
                key: Some(b"k"),
                value: Some(b"v"),
            },
            LegacyMessage {
                offset: 51,
                timestamp: 10,
                key: None,
                value: Some(b"w"),
            },
        ];
        let buf = encode_legacy_message_set(magic, Compression::Gzip, None, &msgs).unwrap();
        for i in v2::MAGIC + 1..buf.len() {
            let mut bad = buf.to_vec();
            bad[i] ^= 0x01;
            let (batches, _) = decode_all(bad.clone().into(), DecodeOptions::default());
            let (base, _, kind) = corrupt_kind(batches[0].as_ref().unwrap_err());
            assert_eq!(*base, Some(51), "the wrapper's offset");
            assert!(matches!(kind, BatchErrorKind::CrcMismatch { .. }), "{kind}");
            fuzz_decode_all(&bad, 1 << 20);
        }
    }
}

#[test]
fn uncompressed_records_are_zero_copy_slices_of_the_input() {
    let buf = simple_spec(0, Compression::None, 3).encode();
    let range = buf.as_ptr_range();
    let batch = RecordBatches::new(buf.clone(), DecodeOptions::default())
        .next()
        .unwrap()
        .unwrap();
    for r in batch.records() {
        let r = r.unwrap();
        let key = r.key_bytes().unwrap();
        assert!(range.contains(&key.as_ptr()));
        assert!(range.contains(&r.value().unwrap().as_ptr()));
        for h in r.headers() {
            assert!(range.contains(&h.key_bytes().as_ptr()));
        }
    }
}

#[test]
fn decompression_bombs_in_batches_hit_the_cap() {
    const CAP: usize = 1 << 20;
    for codec in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ] {
        // 100 MiB of zeros.
        let bomb = compression::test_bomb(codec, 100);
        let batch = raw_batch(9, i16::from(codec.id()), 1, &bomb);
        let opts = DecodeOptions::default().with_max_decompressed_bytes(CAP);
        let (batches, _) = decode_all(batch.into(), opts);
        let (base, _, kind) = corrupt_kind(batches[0].as_ref().unwrap_err());
        assert_eq!(*base, Some(9));
        assert_eq!(
            kind,
            &BatchErrorKind::DecompressedTooLarge {
                codec: codec.name(),
                cap: CAP
            }
        );

        // The same through a magic-1 wrapper.
        let mut legacy = Vec::new();
        legacy.put_i64(4);
        legacy.put_i32(0);
        legacy.put_u32(0);
        legacy.put_i8(1);
        legacy.put_i8(codec.id() as i8);
        legacy.put_i64(0);
        legacy.put_i32(-1);
        legacy.put_i32(bomb.len() as i32);
        legacy.put_slice(&bomb);
        let size = (legacy.len() - 12) as i32;
        legacy[8..12].copy_from_slice(&size.to_be_bytes());
        let crc = crc32fast::hash(&legacy[16..]);
        legacy[12..16].copy_from_slice(&crc.to_be_bytes());
        if codec == Compression::Zstd {
            // zstd is refused in magic 0/1 before decompressing.
            continue;
        }
        let (batches, _) = decode_all(legacy.into(), opts);
        let (_, _, kind) = corrupt_kind(batches[0].as_ref().unwrap_err());
        assert!(
            matches!(kind, BatchErrorKind::DecompressedTooLarge { .. }),
            "{codec}: {kind}"
        );
    }
}

#[test]
fn hostile_counts_and_lengths_are_errors() {
    let good_record = raw_record(&[0, 0, 0, 2, b'k', 2, b'v', 0]);
    // Record counts the bytes cannot hold, or negative.
    for count in [i32::MAX, i32::MIN, -1, 2] {
        let b = raw_batch(1, 0, count, &good_record);
        let (batches, _) = decode_all(b.into(), DecodeOptions::default());
        let r: Vec<_> = batches
            .into_iter()
            .flat_map(|b| match b {
                Ok(b) => b
                    .records()
                    .map(|r| r.map(|r| r.offset()))
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
            .collect();
        assert!(r.last().unwrap().is_err(), "count {count}: {r:?}");
    }

    // Key, value and header lengths past the record, record lengths past the batch.
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for len in [i64::from(i32::MAX), 1 << 30, 100] {
        let mut body = vec![0, 0, 0];
        put_varlong(&mut body, len);
        body.extend_from_slice(b"kk");
        cases.push(raw_record(&body));
        let mut body = vec![0, 0, 0, 1];
        put_varlong(&mut body, len);
        cases.push(raw_record(&body));
        let mut body = vec![0, 0, 0, 1, 1];
        put_varlong(&mut body, len); // header count
        cases.push(raw_record(&body));
        let mut rec = Vec::new();
        put_varlong(&mut rec, len); // record length
        rec.extend_from_slice(&[0, 0, 0, 1, 1, 0]);
        cases.push(rec);
    }
    // A negative record length, a negative header count and header key length, a record whose
    // fields stop short of its length, a varint of six bytes.
    cases.push(vec![1, 0, 0, 0, 1, 1, 0]);
    cases.push(raw_record(&[0, 0, 0, 1, 1, 1]));
    cases.push(raw_record(&[0, 0, 0, 1, 1, 2, 1, 1]));
    cases.push(raw_record(&[0, 0, 0, 1, 1, 0, 0, 0]));
    cases.push(raw_record(&[
        0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 1, 0,
    ]));
    for (i, rec) in cases.iter().enumerate() {
        let b = raw_batch(77, 0, 1, rec);
        let (batches, _) = decode_all(b.into(), DecodeOptions::default());
        let outcome: Vec<_> = match &batches[0] {
            Ok(b) => b.records().map(|r| r.map(|_| ())).collect(),
            Err(e) => vec![Err(e.clone())],
        };
        let err = outcome
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap_or_else(|| panic!("case {i} decoded: {rec:?}"));
        let (base, position, _) = corrupt_kind(err);
        assert_eq!((*base, position), (Some(77), 0), "case {i}");
    }

    // Batch lengths: negative or below the smallest message is corrupt; past the buffer is a
    // truncated tail.
    let good = raw_batch(1, 0, 1, &good_record);
    for (length, corrupt) in [(-1, true), (i32::MIN, true), (13, true), (i32::MAX, false)] {
        let mut b = good.clone();
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let (batches, it) = decode_all(b.into(), DecodeOptions::default());
        assert_eq!(batches.len(), usize::from(corrupt), "length {length}");
        assert_eq!(it.truncated_tail(), !corrupt);
    }
    // A magic-2 batch shorter than its header, and an unknown magic.
    let mut short = good[..40].to_vec();
    short[8..12].copy_from_slice(&28i32.to_be_bytes());
    let (batches, _) = decode_all(short.into(), DecodeOptions::default());
    assert!(matches!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        BatchErrorKind::InvalidLength { .. }
    ));
    let mut magic = good.clone();
    magic[v2::MAGIC] = 3;
    let (batches, _) = decode_all(magic.into(), DecodeOptions::default());
    assert_eq!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        &BatchErrorKind::UnknownMagic(3)
    );
    // Unknown codec.
    let b = raw_batch(1, 5, 1, &good_record);
    let (batches, _) = decode_all(b.into(), DecodeOptions::default());
    assert_eq!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        &BatchErrorKind::UnknownCompression(5)
    );
}

#[test]
fn records_must_fill_the_batch_exactly() {
    // A 19-byte record: two of them (38 bytes) pass the bound of a 7-byte smallest record
    // for a declared count of 3, so the shortfall is found by the walk.
    let mut body = vec![0, 0, 0, 2, b'k', 22];
    body.extend_from_slice(b"0123456789a");
    body.push(0);
    let rec = raw_record(&body);
    // Bytes left after the declared records.
    let mut body = rec.clone();
    body.extend_from_slice(&rec);
    for codec in CODECS {
        let packed = compression::compress(codec, &body).unwrap();
        let b = raw_batch(5, i16::from(codec.id()), 1, &packed);
        let batch = RecordBatches::new(b.into(), DecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        let out: Vec<_> = batch.records().collect();
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok());
        assert_eq!(
            corrupt_kind(out[1].as_ref().unwrap_err()).2,
            &BatchErrorKind::TrailingBytes {
                remaining: rec.len()
            }
        );
    }
    // Fewer records than declared.
    let b = raw_batch(5, 0, 3, &body);
    let batch = RecordBatches::new(b.into(), DecodeOptions::default())
        .next()
        .unwrap()
        .unwrap();
    let out: Vec<_> = batch.records().collect();
    assert_eq!(out.len(), 3);
    assert_eq!(
        corrupt_kind(out[2].as_ref().unwrap_err()).2,
        &BatchErrorKind::RecordCount {
            declared: 3,
            found: 2
        }
    );
}

#[test]
fn control_records_decode() {
    for (commit, kind) in [
        (true, ControlRecordType::Commit),
        (false, ControlRecordType::Abort),
    ] {
        let b = RecordBatchBuilder::end_transaction_marker(40, 12, 3, commit, 17, 99)
            .build()
            .unwrap();
        let batch = RecordBatches::new(b, DecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        assert!(batch.is_control() && batch.is_transactional());
        assert_eq!((batch.producer_id(), batch.producer_epoch()), (12, 3));
        let record = batch.records().next().unwrap().unwrap();
        assert!(record.is_control());
        assert_eq!(
            record.control().unwrap(),
            Some(ControlRecord {
                version: 0,
                kind,
                coordinator_epoch: Some(17)
            })
        );
    }

    // Another type (KRaft's leader change, 2): no coordinator epoch, value left alone.
    let mut builder = RecordBatchBuilder::new(0).control(true);
    builder.record(0, Some(&[0, 0, 0, 2]), Some(b"whatever"));
    let batch = RecordBatches::new(builder.build().unwrap(), DecodeOptions::default())
        .next()
        .unwrap()
        .unwrap();
    let c = batch.records().next().unwrap().unwrap().control().unwrap();
    assert_eq!(
        c,
        Some(ControlRecord {
            version: 0,
            kind: ControlRecordType::Other(2),
            coordinator_epoch: None
        })
    );

    // Unreadable ones: short or null key, negative version, marker with a short value.
    for (key, value) in [
        (Some(&[0u8, 0, 0][..]), Some(&[0u8, 0, 0, 0, 0, 1][..])),
        (None, Some(&[0, 0, 0, 0, 0, 1][..])),
        (Some(&[0xff, 0xff, 0, 1][..]), Some(&[0, 0, 0, 0, 0, 1][..])),
        (Some(&[0, 0, 0, 1][..]), Some(&[0, 0, 0][..])),
        (Some(&[0, 0, 0, 0][..]), None),
    ] {
        let mut builder = RecordBatchBuilder::new(8).control(true);
        builder.record(0, key, value);
        let batch = RecordBatches::new(builder.build().unwrap(), DecodeOptions::default())
            .next()
            .unwrap()
            .unwrap();
        let err = batch
            .records()
            .next()
            .unwrap()
            .unwrap()
            .control()
            .unwrap_err();
        assert_eq!(corrupt_kind(&err).2, &BatchErrorKind::InvalidControlRecord);
    }
    // An ordinary record is not a control record.
    let batch = RecordBatches::new(
        simple_spec(0, Compression::None, 1).encode(),
        DecodeOptions::default(),
    )
    .next()
    .unwrap()
    .unwrap();
    assert_eq!(
        batch.records().next().unwrap().unwrap().control().unwrap(),
        None
    );
}

#[test]
fn legacy_nesting_and_wrapper_rules() {
    let inner_msgs = [LegacyMessage {
        offset: 0,
        timestamp: 1,
        key: None,
        value: Some(b"x"),
    }];
    // A compressed message inside a compressed wrapper.
    let inner_wrapper = encode_legacy_message_set(1, Compression::Gzip, None, &inner_msgs).unwrap();
    let outer = wrap(1, 9, Compression::Gzip, &inner_wrapper);
    let (batches, _) = decode_all(outer, DecodeOptions::default());
    assert_eq!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        &BatchErrorKind::NestedCompression
    );

    // Inner magic different from the wrapper's.
    let inner_v0 = encode_legacy_message_set(0, Compression::None, None, &inner_msgs).unwrap();
    let outer = wrap(1, 9, Compression::Gzip, &inner_v0);
    let (batches, _) = decode_all(outer, DecodeOptions::default());
    assert_eq!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        &BatchErrorKind::InnerMagicMismatch {
            wrapper: 1,
            inner: 0
        }
    );

    // Magic 1 relative offsets: inner 0, 1, 2 under wrapper offset 12 are 10, 11, 12; under
    // wrapper offset 0 (an old librdkafka quirk) they are taken as they are; a wrapper offset
    // below the last inner one is corrupt.
    let three: Vec<_> = (0..3)
        .map(|o| LegacyMessage {
            offset: o,
            timestamp: 100 + o,
            key: None,
            value: Some(b"v"),
        })
        .collect();
    let inner = encode_legacy_message_set(1, Compression::None, None, &three).unwrap();
    for (wrapper, expected) in [(12, Some([10, 11, 12])), (0, Some([0, 1, 2])), (1, None)] {
        let (batches, _) = decode_all(
            wrap(1, wrapper, Compression::Lz4, &inner),
            DecodeOptions::default(),
        );
        match expected {
            Some(offsets) => {
                let b = batches[0].as_ref().unwrap();
                let got: Vec<i64> = b.records().map(|r| r.unwrap().offset()).collect();
                assert_eq!(got, offsets);
                assert_eq!(b.base_offset(), offsets[0]);
                assert_eq!(b.next_offset(), offsets[2] + 1);
            }
            None => assert!(batches[0].is_err()),
        }
    }
    // An empty inner set, and a wrapper with a null value.
    let (batches, _) = decode_all(
        wrap(1, 3, Compression::Snappy, b""),
        DecodeOptions::default(),
    );
    assert!(batches[0].is_err());
    let mut null_value = wrap(1, 3, Compression::Snappy, b"").to_vec();
    let value_len_at = null_value.len()
        - compression::compress(Compression::Snappy, b"")
            .unwrap()
            .len()
        - 4;
    null_value.truncate(value_len_at);
    null_value.put_i32(-1);
    let size = (null_value.len() - 12) as i32;
    null_value[8..12].copy_from_slice(&size.to_be_bytes());
    let crc = crc32fast::hash(&null_value[16..]);
    null_value[12..16].copy_from_slice(&crc.to_be_bytes());
    let (batches, _) = decode_all(null_value.into(), DecodeOptions::default());
    assert!(matches!(
        corrupt_kind(batches[0].as_ref().unwrap_err()).2,
        BatchErrorKind::Other(_)
    ));
}

/// A magic-`magic` wrapper at `offset` whose value is `inner` compressed with `codec`.
fn wrap(magic: i8, offset: i64, codec: Compression, inner: &[u8]) -> Bytes {
    let packed = compression::compress(codec, inner).unwrap();
    let mut m = Vec::new();
    m.put_i64(offset);
    m.put_i32(0);
    m.put_u32(0);
    m.put_i8(magic);
    m.put_i8(codec.id() as i8);
    if magic == 1 {
        m.put_i64(0);
    }
    m.put_i32(-1);
    m.put_i32(packed.len() as i32);
    m.put_slice(&packed);
    let size = (m.len() - 12) as i32;
    m[8..12].copy_from_slice(&size.to_be_bytes());
    let crc = crc32fast::hash(&m[16..]);
    m[12..16].copy_from_slice(&crc.to_be_bytes());
    m.into()
}

#[test]
fn magic_zero_lz4_with_the_old_header_checksum_decodes() {
    let msgs = [LegacyMessage {
        offset: 3,
        timestamp: 0,
        key: Some(b"k"),
        value: Some(b"old lz4"),
    }];
    // The encoder writes magic-0 lz4 with the pre-0.10 checksum.
    let buf = encode_legacy_message_set(0, Compression::Lz4, None, &msgs).unwrap();
    let (batches, _) = decode_all(buf, DecodeOptions::default());
    let b = batches[0].as_ref().unwrap();
    let r = b.records().next().unwrap().unwrap();
    assert_eq!((r.offset(), r.value()), (3, Some(&b"old lz4"[..])));
    assert_eq!(r.timestamp_type(), TimestampType::NoTimestamp);
}

#[test]
fn crc_verification_can_be_turned_off() {
    let mut buf = simple_spec(0, Compression::None, 2).encode().to_vec();
    buf[v2::CRC] ^= 0xff;
    let (batches, _) = decode_all(buf.clone().into(), DecodeOptions::default());
    assert!(batches[0].is_err());
    let (batches, _) = decode_all(buf.into(), DecodeOptions::default().with_verify_crc(false));
    assert_eq!(batches[0].as_ref().unwrap().records().count(), 2);
}

#[test]
fn empty_buffer_and_tiny_tails() {
    let (batches, it) = decode_all(Bytes::new(), DecodeOptions::default());
    assert!(batches.is_empty() && !it.truncated_tail() && it.bytes_consumed() == 0);
    for n in 1..12 {
        let (batches, it) = decode_all(vec![0xff; n].into(), DecodeOptions::default());
        assert!(batches.is_empty() && it.truncated_tail(), "{n}");
    }
}

#[test]
fn an_error_stops_the_walk() {
    let good = simple_spec(0, Compression::None, 1).encode();
    let mut buf = good.to_vec();
    buf.extend_from_slice(&good);
    buf.extend_from_slice(&good);
    let second = good.len();
    buf[second + v2::MAGIC] = 9;
    let (batches, it) = decode_all(buf.into(), DecodeOptions::default());
    assert_eq!(batches.len(), 2);
    assert!(batches[1].is_err());
    assert_eq!(it.bytes_consumed(), second);
}

/// The walk with decompression deferred, each batch decompressed after: what the walk alone
/// gives, error for error.
fn decode_deferred(buf: Bytes, opts: DecodeOptions) -> Vec<Result<Batch, Error>> {
    let mut out = Vec::new();
    for b in RecordBatches::new(buf, opts.with_deferred_decompression(true)) {
        match b {
            Ok(mut b) => {
                let r = b.decompress();
                let failed = r.is_err();
                out.push(r.map(|()| b));
                if failed {
                    break;
                }
            }
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

#[test]
fn a_deferred_batch_is_decompressed_only_when_asked_and_then_reads_as_any() {
    for codec in CODECS {
        let spec = simple_spec(40, codec, 5);
        let opts = DecodeOptions::default().with_deferred_decompression(true);
        let mut batch = RecordBatches::new(spec.encode(), opts)
            .next()
            .unwrap()
            .unwrap();
        let compressed = codec != Compression::None;
        assert_eq!(batch.needs_decompression(), compressed, "{codec}");
        assert_eq!(batch.decompressed_len(), 0, "{codec}: nothing held yet");
        if compressed {
            // Read too early: one error, nothing more, no panic.
            let early: Vec<_> = batch.records().collect();
            assert_eq!(early.len(), 1, "{codec}");
            let (base, _, kind) = corrupt_kind(early[0].as_ref().unwrap_err());
            assert_eq!(*base, Some(40));
            assert!(matches!(kind, BatchErrorKind::Other(_)), "{codec}: {kind}");
        }
        batch.decompress().unwrap();
        batch.decompress().unwrap();
        assert!(!batch.needs_decompression());
        assert_eq!(batch.decompressed_len() > 0, compressed, "{codec}");
        spec.check(&batch);
    }
}

#[test]
fn a_deferred_batch_with_a_bad_payload_passes_the_walk_and_fails_where_the_walk_would() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let good = simple_spec(0, codec, 3).encode();
        // The payload cut short, the CRC computed over the cut bytes: the producer's CRC
        // holds, the records do not decompress.
        let mut bad = simple_spec(3, codec, 3).encode().to_vec();
        bad.truncate(bad.len() - 6);
        seal(&mut bad);
        let mut buf = good.to_vec();
        buf.extend_from_slice(&bad);
        let buf = Bytes::from(buf);

        let (eager, _) = decode_all(buf.clone(), DecodeOptions::default());
        let walked: Vec<_> = RecordBatches::new(
            buf.clone(),
            DecodeOptions::default().with_deferred_decompression(true),
        )
        .collect();
        assert!(walked.iter().all(Result::is_ok), "{codec}: the CRC holds");
        let deferred = decode_deferred(buf, DecodeOptions::default());
        assert_eq!(deferred.len(), 2, "{codec}");
        assert!(deferred[0].is_ok());
        let e = corrupt_kind(eager[1].as_ref().unwrap_err());
        let d = corrupt_kind(deferred[1].as_ref().unwrap_err());
        assert_eq!(e, d, "{codec}");
        assert_eq!((*d.0, d.1), (Some(3), good.len()));

        // A flipped byte is still found on the walk, without decompressing.
        let mut flipped = simple_spec(0, codec, 3).encode().to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let opts = DecodeOptions::default().with_deferred_decompression(true);
        let (walked, _) = decode_all(flipped.into(), opts);
        let (_, _, kind) = corrupt_kind(walked[0].as_ref().unwrap_err());
        assert!(
            matches!(kind, BatchErrorKind::CrcMismatch { .. }),
            "{codec}"
        );
    }
}

#[test]
fn a_deferred_bomb_hits_the_walks_cap_and_a_count_past_it_is_refused_on_the_walk() {
    const CAP: usize = 1 << 20;
    let opts = DecodeOptions::default()
        .with_max_decompressed_bytes(CAP)
        .with_deferred_decompression(true);
    for codec in [Compression::Gzip, Compression::Zstd, Compression::Lz4] {
        let bomb = compression::test_bomb(codec, 100);
        let raw = raw_batch(9, i16::from(codec.id()), 1, &bomb);
        let mut batch = RecordBatches::new(raw.into(), opts)
            .next()
            .unwrap()
            .unwrap();
        let e = batch.decompress().unwrap_err();
        let (base, _, kind) = corrupt_kind(&e);
        assert_eq!(*base, Some(9));
        assert_eq!(
            kind,
            &BatchErrorKind::DecompressedTooLarge {
                codec: codec.name(),
                cap: CAP
            }
        );
        assert!(batch.needs_decompression(), "still compressed");
        assert_eq!(batch.decompressed_len(), 0);
    }
    // More records than the cap could hold, however the payload decompresses.
    let payload = compression::compress(Compression::Lz4, b"x").unwrap();
    let count = (CAP / v2::MIN_RECORD_LEN + 1) as i32;
    let raw = raw_batch(0, i16::from(Compression::Lz4.id()), count, &payload);
    let (walked, _) = decode_all(raw.into(), opts);
    let (_, _, kind) = corrupt_kind(walked[0].as_ref().unwrap_err());
    assert!(
        matches!(
            kind,
            BatchErrorKind::InvalidLength {
                field: "record count",
                ..
            }
        ),
        "{kind}"
    );
    // A count the decompressed records cannot hold is found when decompressing.
    let raw = raw_batch(0, i16::from(Compression::Lz4.id()), 1000, &payload);
    let mut batch = RecordBatches::new(raw.into(), opts)
        .next()
        .unwrap()
        .unwrap();
    let e = batch.decompress().unwrap_err();
    let (_, _, kind) = corrupt_kind(&e);
    assert!(
        matches!(
            kind,
            BatchErrorKind::InvalidLength {
                field: "record count",
                ..
            }
        ),
        "{kind}"
    );
}

/// A batch whose count no section within the cap could hold and whose payload does not
/// decompress either fails for its count on both paths: the walk decompressed first and
/// failed for the payload, where a deferred read refused the count at once.
#[test]
fn a_count_past_the_cap_fails_first_whether_decompression_is_deferred_or_not() {
    let mut payload = compression::compress(Compression::Gzip, b"some records").unwrap();
    // The gzip trailer's CRC-32 no longer matches.
    let last = payload.len() - 5;
    payload[last] ^= 0xff;
    for verify_crc in [true, false] {
        let opts = DecodeOptions::default().with_verify_crc(verify_crc);
        let count = (opts.max_decompressed_bytes / v2::MIN_RECORD_LEN + 1) as i32;
        let raw = Bytes::from(raw_batch(
            0,
            i16::from(Compression::Gzip.id()),
            count,
            &payload,
        ));
        let (walked, _) = decode_all(raw.clone(), opts);
        let deferred = decode_deferred(raw, opts);
        for e in [&walked[0], &deferred[0]] {
            let (_, _, kind) = corrupt_kind(e.as_ref().unwrap_err());
            assert_eq!(
                kind,
                &BatchErrorKind::InvalidLength {
                    field: "record count",
                    value: i64::from(count)
                },
                "verify_crc={verify_crc}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn deferred_decompression_reads_what_the_walk_reads(
        specs in vec(spec(), 1..4),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut buf = Vec::new();
        for s in &specs {
            buf.extend_from_slice(&s.encode());
        }
        for (i, x) in flips {
            let i = i.index(buf.len());
            buf[i] ^= x | 1;
        }
        let buf = Bytes::from(buf);
        for verify_crc in [true, false] {
            let opts = DecodeOptions::default().with_verify_crc(verify_crc);
            let (eager, _) = decode_all(buf.clone(), opts);
            let deferred = decode_deferred(buf.clone(), opts);
            prop_assert_eq!(eager.len(), deferred.len());
            for (e, d) in eager.iter().zip(&deferred) {
                match (e, d) {
                    (Ok(e), Ok(d)) => {
                        let e: Vec<_> = e.records().map(|r| r.map(|r| (r.offset(), r.value_bytes()))).collect();
                        let d: Vec<_> = d.records().map(|r| r.map(|r| (r.offset(), r.value_bytes()))).collect();
                        prop_assert_eq!(e, d);
                    }
                    (Err(e), Err(d)) => prop_assert_eq!(e, d),
                    _ => prop_assert!(false, "{:?} against {:?}", e, d),
                }
            }
        }
    }
}

/// A record whose offset delta leaves the `i32` range fails the batch's encoding, naming the
/// field, whether the delta was given or followed from the previous record's; the records
/// before it encode.
#[test]
fn an_offset_delta_past_i32_fails_the_build_naming_the_field() {
    let mut b = RecordBatchBuilder::new(0);
    b.push(NewRecord {
        offset_delta: Some(i32::MAX),
        timestamp: 5,
        value: Some(b"last in range"),
        ..NewRecord::default()
    });
    assert!(b.build().is_ok());
    b.record(6, None, Some(b"one past"));
    assert_eq!(
        b.build(),
        Err(EncodeError::TooLarge {
            field: "offset delta"
        })
    );
}

/// A delete horizon set after the records were appended is the base timestamp all the same:
/// each record reads back with its own timestamp, and the batch is the one set before.
#[test]
fn a_delete_horizon_set_after_the_records_rebases_their_timestamps() {
    let records: [(i64, &[u8]); 3] = [(1_000, b"a"), (400, b"b"), (1_000_000, b"c")];
    let mut before = RecordBatchBuilder::new(10).delete_horizon(7);
    let mut after = RecordBatchBuilder::new(10);
    for (timestamp, value) in records {
        before.record(timestamp, Some(b"k"), Some(value));
        after.record(timestamp, Some(b"k"), Some(value));
    }
    let after = after.delete_horizon(7);
    let bytes = after.build().unwrap();
    assert_eq!(bytes, before.build().unwrap());
    let batch = RecordBatches::new(bytes, DecodeOptions::default())
        .next()
        .unwrap()
        .unwrap();
    let read: Vec<(i64, Vec<u8>)> = batch
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r.timestamp(), r.value().unwrap().to_vec())
        })
        .collect();
    assert_eq!(
        read,
        records
            .iter()
            .map(|(t, v)| (*t, v.to_vec()))
            .collect::<Vec<_>>()
    );
}

/// A batch given another producer with `with_producer` is the batch built for that producer,
/// byte for byte, with every codec, transactional or not; bytes that are not one magic-2 batch
/// give nothing.
#[test]
fn a_batch_given_another_producer_is_the_batch_built_for_it() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut builder = RecordBatchBuilder::new(0)
            .compression(compression)
            .producer(7, 1, 100)
            .transactional(true);
        for i in 0..20u8 {
            builder.push(NewRecord {
                timestamp: 1_000 + i64::from(i),
                key: Some(&[i]),
                value: Some(&[i; 50]),
                headers: &[(b"h", Some(b"v"))],
                ..NewRecord::default()
            });
        }
        let first = builder.build().unwrap();
        for (id, epoch, sequence, transactional) in [(9, 0, 0, false), (7, 2, 100, true)] {
            let again = with_producer(&first, id, epoch, sequence, transactional).unwrap();
            let built = builder
                .clone()
                .producer(id, epoch, sequence)
                .transactional(transactional)
                .build()
                .unwrap();
            assert_eq!(again, built, "{compression:?} {id} {transactional}");
        }
    }
    let mut builder = RecordBatchBuilder::new(0);
    builder.record(1, None, Some(b"v"));
    let bytes = builder.build().unwrap();
    assert_eq!(
        with_producer(&bytes[..bytes.len() - 1], 1, 0, 0, false),
        None
    );
    assert_eq!(with_producer(&bytes[..20], 1, 0, 0, false), None);
    let mut legacy = bytes.to_vec();
    legacy[16] = 1;
    assert_eq!(with_producer(&legacy, 1, 0, 0, false), None);
}

#[test]
fn a_batch_built_in_a_given_buffer_is_written_in_it_or_hands_it_back() {
    let records = |b: &mut RecordBatchBuilder| {
        for i in 0..3u8 {
            b.record(1_000 + i64::from(i), Some(&[i]), Some(&[i; 50]));
        }
    };
    let mut fresh = RecordBatchBuilder::new(0);
    records(&mut fresh);
    let expected = fresh.build().unwrap();

    // Uncompressed, the batch is written where the records were, in the buffer given.
    let buffer = vec![0xA5u8; 4096];
    let at = buffer.as_ptr();
    let mut b = RecordBatchBuilder::new(0).with_buffer(buffer);
    records(&mut b);
    let mut wrapped = None;
    let (batch, spare) = b
        .finish_with(|v| {
            wrapped = Some((v.as_ptr(), v.capacity()));
            Bytes::from(v)
        })
        .unwrap();
    assert_eq!(batch, expected);
    assert_eq!(wrapped, Some((at, 4096)));
    assert!(spare.is_none());

    // Compressed, the batch is written elsewhere and the buffer comes back for another.
    let mut lz4 = RecordBatchBuilder::new(0).compression(Compression::Lz4);
    records(&mut lz4);
    let expected = lz4.build().unwrap();
    let buffer = vec![0xA5u8; 4096];
    let at = buffer.as_ptr();
    let mut b = RecordBatchBuilder::new(0)
        .compression(Compression::Lz4)
        .with_buffer(buffer);
    records(&mut b);
    let (batch, spare) = b
        .finish_with(|_| panic!("a compressed batch is not written in place"))
        .unwrap();
    assert_eq!(batch, expected);
    let spare = spare.unwrap();
    assert_eq!((spare.as_ptr(), spare.capacity()), (at, 4096));

    // A buffer given once records are in changes nothing.
    let mut b = RecordBatchBuilder::new(0);
    records(&mut b);
    let b = b.with_buffer(vec![1, 2, 3]);
    assert_eq!(b.finish().unwrap(), fresh.build().unwrap());
}
