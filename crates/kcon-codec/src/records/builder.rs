//! The magic-2 record batch encoder.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::record::ControlRecord;
use super::v2;
use crate::compression::{self, Compression, CompressionError};
use crate::wire::{put_varlong, varlong_len};

/// Why a batch could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The codec failed.
    Compression(CompressionError),
    /// A value does not fit its field (a length past `i32::MAX`, an offset delta past the
    /// `i32` range, more than `i32::MAX` records).
    TooLarge {
        /// The field.
        field: &'static str,
    },
    /// The format cannot carry what was asked (zstd in a magic 0/1 message set, ...).
    Unsupported(&'static str),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Compression(e) => e.fmt(f),
            EncodeError::TooLarge { field } => write!(f, "{field} does not fit its field"),
            EncodeError::Unsupported(what) => write!(f, "cannot encode: {what}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A record to append to a [`RecordBatchBuilder`]; build it with struct update syntax from
/// [`NewRecord::default`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// The offset delta from the batch's base offset; `None` for the previous record's plus
    /// one (0 for the first). Explicit deltas let a test write the gaps compaction leaves.
    pub offset_delta: Option<i32>,
    /// The record's timestamp, milliseconds since the epoch.
    pub timestamp: i64,
    /// The key; `None` for null.
    pub key: Option<&'a [u8]>,
    /// The value; `None` for null.
    pub value: Option<&'a [u8]>,
    /// The headers, in order; duplicate keys are kept.
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// A byte range in the builder's arena.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

#[derive(Debug, Clone)]
struct Pending {
    offset_delta: i64,
    timestamp: i64,
    key: Option<Span>,
    value: Option<Span>,
    /// Range in `headers`.
    headers: (usize, usize),
}

/// Builds one magic-2 record batch (KIP-98 format) with the CRC filled in.
///
/// Header fields default as a non-idempotent producer writes them: producer id, epoch and
/// base sequence -1, partition leader epoch -1, no compression, create time. The base
/// timestamp is the first record's (or the delete horizon, when set), the max timestamp the
/// largest record timestamp (or the log-append time, when set).
///
/// ```
/// use kcon_codec::compression::Compression;
/// use kcon_codec::records::{DecodeOptions, NewRecord, RecordBatchBuilder, RecordBatches};
///
/// let mut builder = RecordBatchBuilder::new(1000)
///     .compression(Compression::Zstd)
///     .producer(7, 0, 0)
///     .transactional(true);
/// builder.record(1, Some(b"a"), Some(b"1"));
/// builder.push(NewRecord { timestamp: 2, value: Some(b"2"), ..NewRecord::default() });
/// let bytes = builder.build().unwrap();
///
/// let batch = RecordBatches::new(bytes, DecodeOptions::default()).next().unwrap().unwrap();
/// assert_eq!((batch.base_offset(), batch.next_offset()), (1000, 1002));
/// assert!(batch.is_transactional());
/// assert_eq!(batch.records().count(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    base_offset: i64,
    partition_leader_epoch: i32,
    compression: Compression,
    log_append_time: Option<i64>,
    transactional: bool,
    control: bool,
    delete_horizon: Option<i64>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    last_offset_delta: Option<i32>,
    records: Vec<Pending>,
    headers: Vec<(Span, Option<Span>)>,
    arena: Vec<u8>,
}

impl RecordBatchBuilder {
    /// An empty batch starting at `base_offset`.
    pub fn new(base_offset: i64) -> Self {
        RecordBatchBuilder {
            base_offset,
            partition_leader_epoch: -1,
            compression: Compression::None,
            log_append_time: None,
            transactional: false,
            control: false,
            delete_horizon: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_offset_delta: None,
            records: Vec::new(),
            headers: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// A control batch holding one end-transaction marker (commit or abort) for a producer,
    /// as a transaction coordinator has the partition leader write it.
    pub fn end_transaction_marker(
        base_offset: i64,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        timestamp: i64,
    ) -> Self {
        let marker = ControlRecord::end_transaction(commit, coordinator_epoch);
        let key = marker.key();
        let value = marker.value();
        let mut b = RecordBatchBuilder::new(base_offset)
            .producer(producer_id, producer_epoch, -1)
            .transactional(true)
            .control(true);
        b.record(timestamp, Some(&key), value.as_ref().map(|v| &v[..]));
        b
    }

    /// The codec of the records section.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The partition leader epoch field.
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Producer id, epoch and base sequence (idempotent and transactional producers).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the transactional attribute.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Sets the control attribute (the records should then be control records).
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Marks the batch log-append-time with this time as its max timestamp, as a broker with
    /// `message.timestamp.type=LogAppendTime` writes it; records then read with this timestamp.
    pub fn log_append_time(mut self, time: i64) -> Self {
        self.log_append_time = Some(time);
        self
    }

    /// Sets the delete-horizon attribute (KIP-534) with this horizon as the base timestamp.
    pub fn delete_horizon(mut self, horizon: i64) -> Self {
        self.delete_horizon = Some(horizon);
        self
    }

    /// Overrides the last offset delta (otherwise the last record's delta, or 0 when empty):
    /// compaction can leave a batch whose last records are gone.
    pub fn last_offset_delta(mut self, delta: i32) -> Self {
        self.last_offset_delta = Some(delta);
        self
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn span(&mut self, bytes: Option<&[u8]>) -> Option<Span> {
        bytes.map(|b| {
            let start = self.arena.len();
            self.arena.extend_from_slice(b);
            Span {
                start,
                len: b.len(),
            }
        })
    }

    /// Appends a record (its bytes are copied).
    pub fn push(&mut self, record: NewRecord<'_>) -> &mut Self {
        let offset_delta = match (record.offset_delta, self.records.last()) {
            (Some(d), _) => i64::from(d),
            (None, Some(prev)) => prev.offset_delta + 1,
            (None, None) => 0,
        };
        let key = self.span(record.key);
        let value = self.span(record.value);
        let first_header = self.headers.len();
        for (k, v) in record.headers {
            let k = self.span(Some(k)).unwrap_or(Span { start: 0, len: 0 });
            let v = self.span(*v);
            self.headers.push((k, v));
        }
        self.records.push(Pending {
            offset_delta,
            timestamp: record.timestamp,
            key,
            value,
            headers: (first_header, self.headers.len()),
        });
        self
    }

    /// Appends a record without headers at the next offset.
    pub fn record(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> &mut Self {
        self.push(NewRecord {
            timestamp,
            key,
            value,
            ..NewRecord::default()
        })
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.arena[span.start..span.start + span.len]
    }

    /// Bytes a length-prefixed field takes.
    fn field_len(span: Option<Span>) -> Result<usize, EncodeError> {
        match span {
            None => Ok(1),
            Some(s) => {
                let len = i32::try_from(s.len).map_err(|_| EncodeError::TooLarge {
                    field: "key, value or header length",
                })?;
                Ok(varlong_len(i64::from(len)) + s.len)
            }
        }
    }

    fn put_field(&self, out: &mut impl BufMut, span: Option<Span>) {
        match span {
            None => put_varlong(out, -1),
            Some(s) => {
                put_varlong(out, s.len as i64);
                out.put_slice(self.bytes(s));
            }
        }
    }

    /// Encodes the batch.
    pub fn build(&self) -> Result<Bytes, EncodeError> {
        let base_timestamp = self
            .delete_horizon
            .or(self.records.first().map(|r| r.timestamp))
            .unwrap_or(-1);
        let max_timestamp = self
            .log_append_time
            .or(self.records.iter().map(|r| r.timestamp).max())
            .unwrap_or(-1);
        let record_count =
            i32::try_from(self.records.len()).map_err(|_| EncodeError::TooLarge {
                field: "record count",
            })?;

        // Sizes first, so the output is allocated once.
        let mut body_lens = Vec::with_capacity(self.records.len());
        let mut records_len = 0usize;
        for r in &self.records {
            let offset_delta =
                i32::try_from(r.offset_delta).map_err(|_| EncodeError::TooLarge {
                    field: "offset delta",
                })?;
            let (h0, h1) = r.headers;
            let mut body = 1
                + varlong_len(r.timestamp.wrapping_sub(base_timestamp))
                + varlong_len(i64::from(offset_delta))
                + Self::field_len(r.key)?
                + Self::field_len(r.value)?
                + varlong_len((h1 - h0) as i64);
            for &(k, v) in &self.headers[h0..h1] {
                body += Self::field_len(Some(k))? + Self::field_len(v)?;
            }
            let body =
                i32::try_from(body).map_err(|_| EncodeError::TooLarge { field: "record" })?;
            body_lens.push(body);
            records_len = records_len.saturating_add(varlong_len(i64::from(body)) + body as usize);
        }

        let write_records = |out: &mut BytesMut| {
            for (r, &body) in self.records.iter().zip(&body_lens) {
                put_varlong(out, i64::from(body));
                out.put_i8(0);
                put_varlong(out, r.timestamp.wrapping_sub(base_timestamp));
                put_varlong(out, r.offset_delta);
                self.put_field(out, r.key);
                self.put_field(out, r.value);
                let (h0, h1) = r.headers;
                put_varlong(out, (h1 - h0) as i64);
                for &(k, v) in &self.headers[h0..h1] {
                    self.put_field(out, Some(k));
                    self.put_field(out, v);
                }
            }
        };

        let mut out;
        if self.compression == Compression::None {
            out = BytesMut::with_capacity(v2::HEADER_LEN.saturating_add(records_len));
            out.put_bytes(0, v2::HEADER_LEN);
            write_records(&mut out);
        } else {
            let mut plain = BytesMut::with_capacity(records_len);
            write_records(&mut plain);
            let packed = compression::compress(self.compression, &plain)
                .map_err(EncodeError::Compression)?;
            out = BytesMut::with_capacity(v2::HEADER_LEN + packed.len());
            out.put_bytes(0, v2::HEADER_LEN);
            out.put_slice(&packed);
        }

        let batch_length =
            i32::try_from(out.len() - v2::LOG_OVERHEAD).map_err(|_| EncodeError::TooLarge {
                field: "batch length",
            })?;
        let last_offset_delta = match (self.last_offset_delta, self.records.last()) {
            (Some(d), _) => d,
            // In range: checked with every delta above.
            (None, Some(r)) => r.offset_delta as i32,
            (None, None) => 0,
        };
        let mut attributes = i16::from(self.compression.id());
        if self.log_append_time.is_some() {
            attributes |= v2::TIMESTAMP_TYPE;
        }
        if self.transactional {
            attributes |= v2::TRANSACTIONAL;
        }
        if self.control {
            attributes |= v2::CONTROL;
        }
        if self.delete_horizon.is_some() {
            attributes |= v2::DELETE_HORIZON;
        }

        let mut header = &mut out[..v2::HEADER_LEN];
        header.put_i64(self.base_offset);
        header.put_i32(batch_length);
        header.put_i32(self.partition_leader_epoch);
        header.put_i8(2);
        header.put_u32(0); // the CRC, filled in below
        header.put_i16(attributes);
        header.put_i32(last_offset_delta);
        header.put_i64(base_timestamp);
        header.put_i64(max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(record_count);
        let crc = crc32c::crc32c(&out[v2::ATTRIBUTES..]);
        out[v2::CRC..v2::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out.freeze())
    }
}
