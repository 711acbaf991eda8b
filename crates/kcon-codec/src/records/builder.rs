//! The magic-2 record batch encoder.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::record::ControlRecord;
use super::v2;
use crate::compression::{self, Compression, CompressionError};
use crate::wire::{Reader, put_varlong, varlong_len};

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
    /// Records appended.
    count: usize,
    /// The first record's timestamp: the records in `encoded` are written with their
    /// timestamp deltas from it.
    first_timestamp: Option<i64>,
    /// The largest record timestamp.
    max_timestamp: Option<i64>,
    /// The last record's offset delta.
    last_delta: Option<i64>,
    /// Room for the batch header, then the records, encoded as they were appended: one copy
    /// of their bytes, in the form and at the place they take in the batch, so that
    /// [`finish`](Self::finish) writes the header in front of them and copies nothing. Empty
    /// until the first record or reservation.
    encoded: Vec<u8>,
    /// The first field an appended record overflowed, for `build` to fail with.
    too_large: Option<&'static str>,
}

impl RecordBatchBuilder {
    /// The bytes a batch's header takes in front of its records: what a buffer given with
    /// [`with_buffer`](Self::with_buffer) needs beyond the records' room.
    pub const HEADER_LEN: usize = v2::HEADER_LEN;

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
            count: 0,
            first_timestamp: None,
            max_timestamp: None,
            last_delta: None,
            encoded: Vec::new(),
            too_large: None,
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

    /// Encodes into `buffer` (emptied first) rather than a buffer of its own: a producer hands
    /// each new batch a buffer a batch it sent before was built in, whose pages are already
    /// memory, so that writing records into it does not fault fresh pages in. Given to a
    /// builder with records already appended, the buffer is dropped and nothing changes.
    pub fn with_buffer(mut self, mut buffer: Vec<u8>) -> Self {
        if self.encoded.is_empty() {
            buffer.clear();
            self.encoded = buffer;
        }
        self
    }

    /// Room for `bytes` more of encoded records without growing: for a caller that knows
    /// about how large the batch will be, one allocation instead of a copy at every doubling.
    pub fn reserve(&mut self, bytes: usize) {
        self.header_room();
        self.encoded.reserve(bytes);
    }

    /// Makes the header's room in front of the records, once.
    fn header_room(&mut self) {
        if self.encoded.is_empty() {
            self.encoded.resize(v2::HEADER_LEN, 0);
        }
    }

    /// The records encoded so far.
    fn records(&self) -> &[u8] {
        self.encoded.get(v2::HEADER_LEN..).unwrap_or_default()
    }

    /// The bytes of records it has room for without growing, beyond those appended.
    pub fn spare_capacity(&self) -> usize {
        let taken = self.encoded.len().max(v2::HEADER_LEN);
        self.encoded.capacity().saturating_sub(taken)
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a record (its bytes are copied).
    pub fn push(&mut self, record: NewRecord<'_>) -> &mut Self {
        let offset_delta = match (record.offset_delta, self.last_delta) {
            (Some(d), _) => i64::from(d),
            (None, Some(prev)) => prev + 1,
            (None, None) => 0,
        };
        if i32::try_from(offset_delta).is_err() {
            self.overflowed("offset delta");
        }
        let first = *self.first_timestamp.get_or_insert(record.timestamp);
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(record.timestamp, |m| m.max(record.timestamp)),
        );
        let timestamp_delta = record.timestamp.wrapping_sub(first);
        let header_count = record.headers.len() as i64;
        let mut body = 1
            + varlong_len(timestamp_delta)
            + varlong_len(offset_delta)
            + self.field_len(record.key)
            + self.field_len(record.value)
            + varlong_len(header_count);
        for (k, v) in record.headers {
            body += self.field_len(Some(k)) + self.field_len(*v);
        }
        if i32::try_from(body).is_err() {
            self.overflowed("record");
        }
        self.header_room();
        let out = &mut self.encoded;
        out.reserve(varlong_len(body as i64) + body);
        put_varlong(out, body as i64);
        out.put_i8(0);
        put_varlong(out, timestamp_delta);
        put_varlong(out, offset_delta);
        put_field(out, record.key);
        put_field(out, record.value);
        put_varlong(out, header_count);
        for (k, v) in record.headers {
            put_field(out, Some(k));
            put_field(out, *v);
        }
        self.count += 1;
        self.last_delta = Some(offset_delta);
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

    /// Keeps the first field that overflowed, for `build`.
    fn overflowed(&mut self, field: &'static str) {
        self.too_large.get_or_insert(field);
    }

    /// The bytes `field` takes: its length and its bytes (-1 alone for null).
    fn field_len(&mut self, field: Option<&[u8]>) -> usize {
        match field {
            None => 1,
            Some(b) => {
                if i32::try_from(b.len()).is_err() {
                    self.overflowed("key, value or header length");
                }
                varlong_len(b.len() as i64) + b.len()
            }
        }
    }

    /// The records as the batch carries them before compression: as encoded, or, when the
    /// base timestamp is not the first record's (a delete horizon), with every timestamp
    /// delta written again from the base.
    fn records_from(&self, base_timestamp: i64) -> Result<Cow<'_, [u8]>, EncodeError> {
        let first = self.first_timestamp.unwrap_or(base_timestamp);
        if first == base_timestamp {
            return Ok(Cow::Borrowed(self.records()));
        }
        let shift = first.wrapping_sub(base_timestamp);
        let corrupt = |_| EncodeError::Unsupported("re-reading the builder's own records");
        let mut out = Vec::with_capacity(self.records().len() + 10 * self.count);
        let mut r = Reader::new(self.records());
        while r.remaining() > 0 {
            let body = usize::try_from(r.varlong().map_err(corrupt)?)
                .map_err(|_| EncodeError::Unsupported("a negative record length"))?;
            let start = r.pos();
            let attributes = r.i8().map_err(corrupt)?;
            let delta = r.varlong().map_err(corrupt)?.wrapping_add(shift);
            let read = r.pos() - start;
            let rest = body
                .checked_sub(read)
                .ok_or(EncodeError::Unsupported("a record shorter than its fields"))
                .and_then(|n| r.take(n).map_err(corrupt))?;
            let new_body = 1 + varlong_len(delta) + rest.len();
            if i32::try_from(new_body).is_err() {
                return Err(EncodeError::TooLarge { field: "record" });
            }
            put_varlong(&mut out, new_body as i64);
            out.put_i8(attributes);
            put_varlong(&mut out, delta);
            out.extend_from_slice(rest);
        }
        Ok(Cow::Owned(out))
    }

    /// Encodes the batch.
    pub fn build(&self) -> Result<Bytes, EncodeError> {
        let shape = self.shape()?;
        let records = self.records_from(shape.base_timestamp)?;
        let mut out;
        if self.compression == Compression::None {
            out = Vec::with_capacity(v2::HEADER_LEN.saturating_add(records.len()));
            out.resize(v2::HEADER_LEN, 0);
            out.extend_from_slice(&records);
        } else {
            out = vec![0; v2::HEADER_LEN];
            compression::compress_onto(self.compression, &records, &mut out)
                .map_err(EncodeError::Compression)?;
        }
        self.write_header(&shape, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// Encodes the batch as [`build`](Self::build) does, taking the builder: uncompressed, the
    /// header is written in front of the records where they were encoded, without copying
    /// them (a producer's batch of a megabyte is not copied a second time to be sent).
    pub fn finish(self) -> Result<Bytes, EncodeError> {
        self.finish_with(Bytes::from).map(|(batch, _)| batch)
    }

    /// [`finish`](Self::finish), with the buffer the records were encoded in made into the
    /// batch's bytes by `wrap` when the batch is written in place (uncompressed), or handed
    /// back beside a batch written elsewhere (compressed, or records re-encoded), for the
    /// caller to use again ([`with_buffer`](Self::with_buffer)).
    pub fn finish_with(
        mut self,
        wrap: impl FnOnce(Vec<u8>) -> Bytes,
    ) -> Result<(Bytes, Option<Vec<u8>>), EncodeError> {
        let shape = self.shape()?;
        let in_place = self.compression == Compression::None
            && self.first_timestamp.unwrap_or(shape.base_timestamp) == shape.base_timestamp;
        if !in_place {
            let batch = self.build()?;
            return Ok((batch, Some(std::mem::take(&mut self.encoded))));
        }
        self.header_room();
        let mut out = std::mem::take(&mut self.encoded);
        self.write_header(&shape, &mut out)?;
        Ok((wrap(out), None))
    }

    /// What the header says of the records, or why they cannot be encoded.
    fn shape(&self) -> Result<Shape, EncodeError> {
        if let Some(field) = self.too_large {
            return Err(EncodeError::TooLarge { field });
        }
        Ok(Shape {
            base_timestamp: self.delete_horizon.or(self.first_timestamp).unwrap_or(-1),
            max_timestamp: self.log_append_time.or(self.max_timestamp).unwrap_or(-1),
            record_count: i32::try_from(self.count).map_err(|_| EncodeError::TooLarge {
                field: "record count",
            })?,
        })
    }

    /// Writes the header into the first [`v2::HEADER_LEN`] bytes of `out`, the whole batch
    /// with the records (packed, when compressed) after them, and its CRC.
    fn write_header(&self, shape: &Shape, out: &mut [u8]) -> Result<(), EncodeError> {
        let batch_length =
            i32::try_from(out.len() - v2::LOG_OVERHEAD).map_err(|_| EncodeError::TooLarge {
                field: "batch length",
            })?;
        let last_offset_delta = match (self.last_offset_delta, self.last_delta) {
            (Some(d), _) => d,
            // In range: checked with every delta appended.
            (None, Some(d)) => d as i32,
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
        header.put_i64(shape.base_timestamp);
        header.put_i64(shape.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(shape.record_count);
        let crc = super::crc32c(&out[v2::ATTRIBUTES..]);
        out[v2::CRC..v2::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }
}

/// The header fields that follow from the records appended.
struct Shape {
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
}

/// `batch`, one magic-2 record batch as [`RecordBatchBuilder::build`] writes it, with its
/// producer id, epoch and base sequence and its transactional attribute set anew and its CRC
/// computed again: how a producer sends a batch again under another producer id without
/// encoding (or compressing) its records again, or keeping them to do so. `None` for bytes that
/// are not one magic-2 batch.
///
/// ```
/// use kcon_codec::records::{DecodeOptions, RecordBatchBuilder, RecordBatches, with_producer};
///
/// let mut builder = RecordBatchBuilder::new(0).producer(7, 0, 10);
/// builder.record(1, None, Some(b"v"));
/// let again = with_producer(&builder.build().unwrap(), 8, 2, 0, true).unwrap();
/// let built = builder.producer(8, 2, 0).transactional(true).build().unwrap();
/// assert_eq!(again, built);
/// let batch = RecordBatches::new(again, DecodeOptions::default()).next().unwrap().unwrap();
/// assert_eq!((batch.producer_id(), batch.base_sequence()), (8, 0));
/// ```
pub fn with_producer(
    batch: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
) -> Option<Bytes> {
    if batch.len() < v2::HEADER_LEN || batch[v2::MAGIC] != 2 {
        return None;
    }
    let length = i32::from_be_bytes(batch[v2::LENGTH..v2::LENGTH + 4].try_into().ok()?);
    if usize::try_from(length).ok()? != batch.len() - v2::LOG_OVERHEAD {
        return None;
    }
    let mut out = BytesMut::from(batch);
    let at = v2::ATTRIBUTES;
    let mut attributes = i16::from_be_bytes([out[at], out[at + 1]]);
    if transactional {
        attributes |= v2::TRANSACTIONAL;
    } else {
        attributes &= !v2::TRANSACTIONAL;
    }
    out[at..at + 2].copy_from_slice(&attributes.to_be_bytes());
    out[v2::PRODUCER_ID..v2::PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    out[v2::PRODUCER_EPOCH..v2::PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    out[v2::BASE_SEQUENCE..v2::BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = super::crc32c(&out[v2::ATTRIBUTES..]);
    out[v2::CRC..v2::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out.freeze())
}

/// Writes a key, value or header field: its length and bytes, or -1 for null.
fn put_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}
