//! Entry points of the record fuzz targets, and the batch description they share with the
//! property tests.

use bytes::Bytes;

use super::{Batch, DecodeOptions, NewRecord, RecordBatchBuilder, RecordBatches, TimestampType};
use crate::compression::Compression;

/// Decodes every batch of `data` and touches every record and header, with CRC verification
/// on and off and a decompression cap of `cap` bytes. Must never panic, loop, or allocate past
/// the cap.
#[doc(hidden)]
pub fn fuzz_decode_all(data: &[u8], cap: usize) {
    let bytes = Bytes::copy_from_slice(data);
    for (verify_crc, defer) in [(true, false), (false, false), (true, true)] {
        let opts = DecodeOptions::default()
            .with_verify_crc(verify_crc)
            .with_max_decompressed_bytes(cap)
            .with_deferred_decompression(defer);
        let mut batches = RecordBatches::new(bytes.clone(), opts);
        let mut consumed = 0;
        for batch in &mut batches {
            let Ok(mut batch) = batch else { break };
            assert_eq!(batch.position(), consumed);
            consumed += batch.size_in_bytes();
            if batch.needs_decompression() {
                // Read too early, then decompressed as a consumer does when handing it out.
                touch(&batch);
                if batch.decompress().is_err() {
                    continue;
                }
            }
            touch(&batch);
        }
        assert_eq!(batches.bytes_consumed(), consumed);
        assert!(consumed <= data.len());
        assert!(batches.next().is_none(), "the walk is fused");
    }
}

/// Reads every field of a batch and of its records, as a consumer would.
fn touch(batch: &Batch) {
    let _ = (
        batch.next_offset(),
        batch.delete_horizon(),
        batch.is_transactional(),
        batch.producer_id(),
        batch.timestamp_type(),
        format!("{batch:?}"),
    );
    let mut n: i64 = 0;
    for record in batch.records() {
        let Ok(record) = record else { break };
        n += 1;
        let _ = (record.offset(), record.timestamp(), record.leader_epoch());
        assert_eq!(record.key_bytes().as_deref(), record.key());
        assert_eq!(record.value_bytes().as_deref(), record.value());
        let mut headers = 0;
        for h in record.headers() {
            headers += 1;
            assert_eq!(h.key_bytes(), h.key());
            assert_eq!(h.value_bytes().as_deref(), h.value());
        }
        assert_eq!(headers, record.header_count());
        let _ = record.control();
    }
    assert!(n <= i64::from(batch.record_count()));
}

/// An owned description of a magic-2 batch: what the encoder is given and the decoder must
/// give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) base_offset: i64,
    pub(crate) compression: Compression,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) transactional: bool,
    pub(crate) control: bool,
    pub(crate) log_append_time: Option<i64>,
    pub(crate) delete_horizon: Option<i64>,
    pub(crate) records: Vec<SpecRecord>,
}

/// One record of a [`Spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpecRecord {
    pub(crate) offset_delta: i32,
    pub(crate) timestamp: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Spec {
    /// The batch, encoded.
    pub(crate) fn encode(&self) -> Bytes {
        // A buffer used before (its bytes stale) changes nothing of what is written.
        let mut b = RecordBatchBuilder::new(self.base_offset)
            .with_buffer(vec![0xA5; 40])
            .compression(self.compression)
            .partition_leader_epoch(self.partition_leader_epoch)
            .producer(self.producer_id, self.producer_epoch, self.base_sequence)
            .transactional(self.transactional)
            .control(self.control);
        if let Some(t) = self.log_append_time {
            b = b.log_append_time(t);
        }
        if let Some(h) = self.delete_horizon {
            b = b.delete_horizon(h);
        }
        for r in &self.records {
            let headers: Vec<(&[u8], Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|(k, v)| (&k[..], v.as_deref()))
                .collect();
            b.push(NewRecord {
                offset_delta: Some(r.offset_delta),
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &headers,
            });
        }
        let built = match b.build() {
            Ok(bytes) => bytes,
            Err(e) => panic!("a spec within the format's limits must encode: {e}"),
        };
        // Taking the builder writes the same bytes, in place or not.
        let finished = b.finish_with(Bytes::from).map(|(batch, _)| batch);
        assert_eq!(finished.as_ref(), Ok(&built), "finish differs from build");
        built
    }

    /// Asserts that `batch` is what this spec describes.
    pub(crate) fn check(&self, batch: &Batch) {
        assert_eq!(batch.magic(), 2);
        assert_eq!(batch.base_offset(), self.base_offset);
        assert_eq!(batch.compression(), self.compression);
        assert_eq!(batch.partition_leader_epoch(), self.partition_leader_epoch);
        assert_eq!(batch.producer_id(), self.producer_id);
        assert_eq!(batch.producer_epoch(), self.producer_epoch);
        assert_eq!(batch.base_sequence(), self.base_sequence);
        assert_eq!(batch.is_transactional(), self.transactional);
        assert_eq!(batch.is_control(), self.control);
        assert_eq!(batch.delete_horizon(), self.delete_horizon);
        assert_eq!(batch.record_count() as usize, self.records.len());
        let last_delta = self.records.last().map_or(0, |r| r.offset_delta);
        assert_eq!(
            batch.next_offset(),
            self.base_offset
                .wrapping_add(i64::from(last_delta))
                .wrapping_add(1)
        );
        let expected_type = if self.log_append_time.is_some() {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        assert_eq!(batch.timestamp_type(), expected_type);
        let mut records = batch.records();
        for want in &self.records {
            let got = match records.next() {
                Some(Ok(r)) => r,
                other => panic!("expected a record, got {other:?}"),
            };
            assert_eq!(
                got.offset(),
                self.base_offset.wrapping_add(i64::from(want.offset_delta))
            );
            assert_eq!(
                got.timestamp(),
                self.log_append_time.unwrap_or(want.timestamp)
            );
            assert_eq!(got.timestamp_type(), expected_type);
            assert_eq!(got.key(), want.key.as_deref());
            assert_eq!(got.value(), want.value.as_deref());
            assert_eq!(got.key_bytes().as_deref(), want.key.as_deref());
            assert_eq!(got.value_bytes().as_deref(), want.value.as_deref());
            let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = got
                .headers()
                .map(|h| (h.key().to_vec(), h.value().map(<[u8]>::to_vec)))
                .collect();
            assert_eq!(headers, want.headers);
            assert_eq!(got.header_count(), want.headers.len());
        }
        assert!(records.next().is_none(), "more records than encoded");
    }
}

/// A reader of fuzz input that yields zeros once the input is spent, so every input describes
/// some batch.
struct Source<'a>(&'a [u8]);

impl Source<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        for b in &mut a {
            *b = self.u8();
        }
        a
    }

    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.array())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.array())
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        match self.u8() % 4 {
            0 => None,
            1 => Some(Vec::new()),
            _ => {
                let n = usize::from(self.u8() % 64);
                Some((0..n).map(|_| self.u8()).collect())
            }
        }
    }
}

/// Derives a batch description from `data`, encodes it, decodes it, and asserts the decoded
/// batch is the description; also decodes the encoding cut at one point, which must end the
/// walk normally.
#[doc(hidden)]
pub fn fuzz_round_trip(data: &[u8]) {
    let mut src = Source(data);
    let flags = src.u8();
    let mut spec = Spec {
        base_offset: src.i64(),
        compression: Compression::from_id(src.u8() % 5).unwrap_or_default(),
        partition_leader_epoch: src.i32(),
        producer_id: src.i64(),
        producer_epoch: i16::from_be_bytes(src.array()),
        base_sequence: src.i32(),
        transactional: flags & 1 != 0,
        control: flags & 2 != 0,
        log_append_time: (flags & 4 != 0).then(|| src.i64()),
        delete_horizon: (flags & 8 != 0).then(|| src.i64()),
        records: Vec::new(),
    };
    let count = src.u8() % 16;
    let mut delta: i32 = 0;
    for _ in 0..count {
        delta = delta.wrapping_add(i32::from(src.u8() % 4));
        let timestamp = src.i64();
        let key = src.bytes();
        let value = src.bytes();
        let headers = (0..src.u8() % 4)
            .map(|_| (src.bytes().unwrap_or_default(), src.bytes()))
            .collect();
        spec.records.push(SpecRecord {
            offset_delta: delta,
            timestamp,
            key,
            value,
            headers,
        });
        delta = delta.wrapping_add(1);
    }
    let encoded = spec.encode();
    let mut batches = RecordBatches::new(encoded.clone(), DecodeOptions::default());
    match batches.next() {
        Some(Ok(batch)) => spec.check(&batch),
        other => panic!("the encoding must decode: {other:?}"),
    }
    assert!(batches.next().is_none());
    assert_eq!(batches.bytes_consumed(), encoded.len());
    assert!(!batches.truncated_tail());

    let cut = usize::from(src.u8()) % encoded.len();
    let mut batches = RecordBatches::new(encoded.slice(..cut), DecodeOptions::default());
    assert!(batches.next().is_none(), "a cut batch is a truncated tail");
    assert_eq!(batches.truncated_tail(), cut > 0);
    assert_eq!(batches.bytes_consumed(), 0);
}
