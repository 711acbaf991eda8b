//! Records: the lazy walk over a batch's records, and the record and header views.

use std::fmt;

use bytes::Bytes;

use super::TimestampType;
use super::batch::Batch;
use super::legacy;
use crate::error::{BatchErrorKind, Result};
use crate::wire::{Reader, WireError};

/// One record of a [`Batch`]: a view into the batch's buffer.
///
/// Copying a `Record` copies a few words; nothing in it is reference counted. Keys, values and
/// headers are borrowed slices; [`key_bytes`](Record::key_bytes) and
/// [`value_bytes`](Record::value_bytes) turn them into [`Bytes`] sharing the batch's buffer.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a Batch,
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
    attributes: i8,
}

impl<'a> Record<'a> {
    /// The record's offset in its partition.
    #[inline]
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's timestamp in milliseconds since the epoch: the batch's max timestamp when
    /// the batch uses [`TimestampType::LogAppendTime`], -1 for magic 0.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// What the timestamp means.
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        self.batch.timestamp_type()
    }

    /// The key; `None` for a null key (distinct from an empty one).
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value; `None` for a null value (a tombstone), distinct from an empty one.
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The key as [`Bytes`] sharing the batch's buffer (no copy).
    #[inline]
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.map(|k| self.batch.data().slice_ref(k))
    }

    /// The value as [`Bytes`] sharing the batch's buffer (no copy).
    #[inline]
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.map(|v| self.batch.data().slice_ref(v))
    }

    /// The headers, in wire order, duplicates kept. Always empty for magic 0 and 1.
    #[inline]
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            owner: self.batch.data(),
            buf: self.headers,
            remaining: self.header_count,
        }
    }

    /// How many headers the record has.
    #[inline]
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The record's own attributes byte (unused by Kafka for magic 2 records; the message
    /// attributes for magic 0 and 1).
    #[inline]
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The batch the record belongs to: its leader epoch, producer, flags.
    #[inline]
    pub fn batch(&self) -> &'a Batch {
        self.batch
    }

    /// The leader epoch of the batch, -1 when unknown (magic 0 and 1).
    #[inline]
    pub fn leader_epoch(&self) -> i32 {
        self.batch.partition_leader_epoch()
    }

    /// The producer id of the batch, -1 when none.
    #[inline]
    pub fn producer_id(&self) -> i64 {
        self.batch.producer_id()
    }

    /// Whether the batch is part of a transaction.
    #[inline]
    pub fn is_transactional(&self) -> bool {
        self.batch.is_transactional()
    }

    /// Whether the record is a control record (its batch is a control batch).
    #[inline]
    pub fn is_control(&self) -> bool {
        self.batch.is_control()
    }

    /// The control record this record is, if its batch is a control batch.
    ///
    /// `Ok(None)` for an ordinary record. An unreadable key, or an abort/commit marker with an
    /// unreadable value, is a corrupt batch.
    pub fn control(&self) -> Result<Option<ControlRecord>> {
        if !self.batch.is_control() {
            return Ok(None);
        }
        ControlRecord::parse(self.key, self.value)
            .map(Some)
            .map_err(|k| self.batch.corrupt(k))
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key.map(Bytes::copy_from_slice))
            .field("value", &self.value.map(Bytes::copy_from_slice))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

/// The headers of a [`Record`], in wire order, duplicates kept.
///
/// The record walk has already checked every header's lengths, so this iterator cannot fail.
#[derive(Clone)]
pub struct Headers<'a> {
    owner: &'a Bytes,
    buf: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    #[inline]
    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The lengths were checked when the record was read (`Records::next_v2`), so none of
        // these reads fails; if one did, the walk would end rather than panic.
        let mut p = 0;
        let key = read_bytes(self.buf, &mut p).ok()??;
        let value = read_bytes(self.buf, &mut p).ok()?;
        self.buf = &self.buf[p..];
        self.remaining -= 1;
        Some(Header {
            owner: self.owner,
            key,
            value,
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for Headers<'_> {}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// One record header: a key (never null) and a value (null distinct from empty).
#[derive(Clone, Copy)]
pub struct Header<'a> {
    owner: &'a Bytes,
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// The key: UTF-8 when the producer was well behaved, not checked here.
    #[inline]
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The value; `None` for a null value.
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The key as [`Bytes`] sharing the batch's buffer.
    pub fn key_bytes(&self) -> Bytes {
        self.owner.slice_ref(self.key)
    }

    /// The value as [`Bytes`] sharing the batch's buffer.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.map(|v| self.owner.slice_ref(v))
    }
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Header")
            .field(&Bytes::copy_from_slice(self.key))
            .field(&self.value.map(Bytes::copy_from_slice))
            .finish()
    }
}

/// The type of a control record (the second i16 of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// 0: the transaction of the batch's producer was aborted.
    Abort,
    /// 1: the transaction of the batch's producer was committed.
    Commit,
    /// Any other type (KRaft's leader change, snapshot and voter records, ...): not a
    /// transaction marker; consumers skip it.
    Other(i16),
}

impl ControlRecordType {
    /// The type's number on the wire.
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Other(t) => t,
        }
    }
}

/// A decoded control record (Java's `ControlRecordType` and `EndTransactionMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// The version of the key.
    pub version: i16,
    /// What the record marks.
    pub kind: ControlRecordType,
    /// For an abort or commit marker, the transaction coordinator's epoch from its value.
    pub coordinator_epoch: Option<i32>,
}

impl ControlRecord {
    /// An end-transaction marker, version 0.
    pub fn end_transaction(commit: bool, coordinator_epoch: i32) -> Self {
        ControlRecord {
            version: 0,
            kind: if commit {
                ControlRecordType::Commit
            } else {
                ControlRecordType::Abort
            },
            coordinator_epoch: Some(coordinator_epoch),
        }
    }

    /// The record's key: version i16, type i16.
    pub fn key(&self) -> [u8; 4] {
        let mut k = [0; 4];
        k[..2].copy_from_slice(&self.version.to_be_bytes());
        k[2..].copy_from_slice(&self.kind.id().to_be_bytes());
        k
    }

    /// The record's value for an abort or commit marker: version i16 (0), coordinator epoch
    /// i32. `None` for other types, whose value this crate does not model.
    pub fn value(&self) -> Option<[u8; 6]> {
        let epoch = self.coordinator_epoch?;
        let mut v = [0; 6];
        v[2..].copy_from_slice(&epoch.to_be_bytes());
        Some(v)
    }

    /// Reads a control record from a record's key and value.
    ///
    /// Like the Java client (`ControlRecordType.parse`, `EndTransactionMarker.deserialize`): a
    /// negative version is invalid, a newer one is read as far as its version-0 fields go.
    pub(crate) fn parse(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> std::result::Result<ControlRecord, BatchErrorKind> {
        let invalid = BatchErrorKind::InvalidControlRecord;
        let key = key.ok_or(invalid.clone())?;
        let (Some(version), Some(kind)) = (be_i16(key, 0), be_i16(key, 2)) else {
            return Err(invalid);
        };
        if version < 0 {
            return Err(invalid);
        }
        let kind = match kind {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            t => ControlRecordType::Other(t),
        };
        let coordinator_epoch = match kind {
            ControlRecordType::Abort | ControlRecordType::Commit => {
                let value = value.ok_or(invalid.clone())?;
                match (be_i16(value, 0), value.get(2..6)) {
                    (Some(v), Some(epoch)) if v >= 0 => {
                        let mut e = [0; 4];
                        e.copy_from_slice(epoch);
                        Some(i32::from_be_bytes(e))
                    }
                    _ => return Err(invalid),
                }
            }
            ControlRecordType::Other(_) => None,
        };
        Ok(ControlRecord {
            version,
            kind,
            coordinator_epoch,
        })
    }
}

fn be_i16(buf: &[u8], at: usize) -> Option<i16> {
    let b = buf.get(at..at + 2)?;
    Some(i16::from_be_bytes([b[0], b[1]]))
}

/// Why a field of a record did not read; turned into a [`BatchErrorKind`] on the error path
/// only, so the hot path carries one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The bytes ended inside the field.
    End,
    /// A varint ran past its longest encoding.
    Varint,
}

impl From<WireError> for Fail {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated { .. } => Fail::End,
            WireError::InvalidVarint { .. } => Fail::Varint,
        }
    }
}

impl Fail {
    #[cold]
    fn at(self, field: &'static str) -> BatchErrorKind {
        match self {
            Fail::End => BatchErrorKind::RecordsOverrun { field },
            Fail::Varint => BatchErrorKind::InvalidVarint,
        }
    }
}

/// A zigzag varint of at most 5 bytes (Java's `ByteUtils.readVarint`). The one-byte case,
/// which covers most deltas and small lengths, is a compare and a branch.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> std::result::Result<i32, Fail> {
    let p = *pos;
    if let Some(&b0) = buf.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(unzigzag32(u32::from(b0)));
        }
        // Two bytes: lengths of 64 to 8191 bytes, offset deltas up to 8191.
        if let Some(&b1) = buf.get(p + 1) {
            if b1 < 0x80 {
                *pos = p + 2;
                return Ok(unzigzag32(u32::from(b0 & 0x7f) | u32::from(b1) << 7));
            }
        }
    }
    let (v, next) = read_varint_multi(buf, p)?;
    *pos = next;
    Ok(v)
}

#[inline(always)]
fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

#[inline(always)]
fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Three bytes or more, or an error: through the shared bounds-checked reader, out of line so
/// the common cases stay small.
/// Position passed and returned by value, so the caller's position stays in a register.
#[inline(never)]
fn read_varint_multi(buf: &[u8], pos: usize) -> std::result::Result<(i32, usize), Fail> {
    let mut r = Reader::new(buf.get(pos..).unwrap_or_default());
    let v = r.varint().map_err(Fail::from)?;
    Ok((v, pos + r.pos()))
}

/// A zigzag varlong of at most 10 bytes (Java's `ByteUtils.readVarlong`).
#[inline(always)]
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> std::result::Result<i64, Fail> {
    let p = *pos;
    if let Some(&b0) = buf.get(p) {
        if b0 < 0x80 {
            *pos = p + 1;
            return Ok(unzigzag64(u64::from(b0)));
        }
        if let Some(&b1) = buf.get(p + 1) {
            if b1 < 0x80 {
                *pos = p + 2;
                return Ok(unzigzag64(u64::from(b0 & 0x7f) | u64::from(b1) << 7));
            }
        }
    }
    let (v, next) = read_varlong_multi(buf, p)?;
    *pos = next;
    Ok(v)
}

#[inline(never)]
fn read_varlong_multi(buf: &[u8], pos: usize) -> std::result::Result<(i64, usize), Fail> {
    let mut r = Reader::new(buf.get(pos..).unwrap_or_default());
    let v = r.varlong().map_err(Fail::from)?;
    Ok((v, pos + r.pos()))
}

/// A varint length and that many bytes; a negative length is null (Java's `DefaultRecord`
/// reads any negative key or value size as null).
#[inline(always)]
fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> std::result::Result<Option<&'a [u8]>, Fail> {
    let n = read_varint(buf, pos)?;
    if n < 0 {
        return Ok(None);
    }
    let start = *pos;
    let s = start
        .checked_add(n as usize)
        .and_then(|end| buf.get(start..end))
        .ok_or(Fail::End)?;
    *pos = start + s.len();
    Ok(Some(s))
}

/// Skips a varint length and that many bytes (a header value: negative is null).
#[inline(always)]
fn skip_bytes(buf: &[u8], pos: &mut usize) -> std::result::Result<i32, Fail> {
    let n = read_varint(buf, pos)?;
    if n > 0 {
        let end = pos.checked_add(n as usize).ok_or(Fail::End)?;
        if end > buf.len() {
            return Err(Fail::End);
        }
        *pos = end;
    }
    Ok(n)
}

/// The value and headers of a record whose fields before them end at `p`, within `rec`, which
/// ends where the record does: the value, the header bytes, the header count. The headers'
/// lengths are checked here, so iterating them later cannot fail; the fields must fill the
/// record's `len` bytes exactly.
#[inline(always)]
fn record_tail(
    rec: &[u8],
    mut p: usize,
    len: i32,
) -> std::result::Result<Tail<'_>, BatchErrorKind> {
    let value = read_bytes(rec, &mut p).map_err(|f| f.at("value"))?;
    let header_count = read_varint(rec, &mut p).map_err(|f| f.at("header count"))?;
    let header_start = p;
    if header_count != 0 {
        // Each header takes at least two bytes, so a hostile count ends at the record's end
        // after at most half its length in steps; nothing is allocated for it.
        if header_count < 0 {
            return Err(BatchErrorKind::InvalidLength {
                field: "header count",
                value: i64::from(header_count),
            });
        }
        for _ in 0..header_count {
            let key_len = skip_bytes(rec, &mut p).map_err(|f| f.at("header key"))?;
            if key_len < 0 {
                return Err(BatchErrorKind::InvalidLength {
                    field: "header key length",
                    value: i64::from(key_len),
                });
            }
            skip_bytes(rec, &mut p).map_err(|f| f.at("header value"))?;
        }
    }
    if p != rec.len() {
        return Err(BatchErrorKind::InvalidLength {
            field: "record length",
            value: i64::from(len),
        });
    }
    Ok(Tail {
        value,
        headers: &rec[header_start..],
        header_count: header_count as u32,
    })
}

/// What [`record_tail`] reads.
struct Tail<'a> {
    value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

/// The records of a [`Batch`], read lazily, in offset order.
///
/// Yields an error, then nothing more, when the batch turns out to be corrupt: a record
/// running past the batch, a bad varint, fewer records than the header declares, or bytes left
/// after the declared records. Such an error means the batch, and what follows it in the
/// partition, cannot be trusted: stop consuming the partition.
pub struct Records<'a> {
    batch: &'a Batch,
    buf: &'a [u8],
    pos: usize,
    /// Records still to read.
    remaining: u32,
    state: State,
}

#[derive(Clone, Copy)]
enum State {
    /// Magic 2.
    V2 {
        base_offset: i64,
        base_timestamp: i64,
        /// `Some(max_timestamp)` for a log-append-time batch.
        log_append_time: Option<i64>,
    },
    /// Magic 0 or 1: a message set, checked when the batch was read.
    Legacy(legacy::Walk),
    /// Finished, or failed.
    Done,
}

impl<'a> Records<'a> {
    pub(crate) fn new_v2(batch: &'a Batch) -> Self {
        Records {
            batch,
            buf: batch.data(),
            pos: 0,
            remaining: batch.record_count().max(0) as u32,
            state: State::V2 {
                base_offset: batch.base_offset(),
                base_timestamp: batch.base_timestamp(),
                log_append_time: (batch.timestamp_type() == TimestampType::LogAppendTime)
                    .then_some(batch.max_timestamp()),
            },
        }
    }

    pub(crate) fn new_legacy(batch: &'a Batch, walk: legacy::Walk) -> Self {
        Records {
            batch,
            buf: batch.data(),
            pos: 0,
            remaining: batch.record_count().max(0) as u32,
            state: State::Legacy(walk),
        }
    }

    /// Reads the next magic-2 record (`DefaultRecord`):
    ///
    /// ```text
    /// length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
    /// keyLength varint, key, valueLength varint, value,
    /// headerCount varint, [headerKeyLength varint, key, headerValueLength varint, value]
    /// ```
    ///
    /// The fields are read within the record's length, and must fill it exactly, as the Java
    /// client requires ("Invalid record size").
    #[inline(always)]
    fn next_v2(
        &mut self,
        base_offset: i64,
        base_timestamp: i64,
        log_append_time: Option<i64>,
    ) -> std::result::Result<Record<'a>, BatchErrorKind> {
        let buf = self.buf;
        let mut p = self.pos;
        let len = match read_varint(buf, &mut p) {
            Ok(len) => len,
            Err(Fail::End) if self.pos == buf.len() => {
                let declared = self.batch.record_count();
                return Err(BatchErrorKind::RecordCount {
                    declared,
                    found: i64::from(declared) - i64::from(self.remaining),
                });
            }
            Err(f) => return Err(f.at("record length")),
        };
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| p.checked_add(n))
            .ok_or(BatchErrorKind::InvalidLength {
                field: "record length",
                value: i64::from(len),
            })?;
        // Every field below is read from `rec`, so none can run past the record.
        let Some(rec) = buf.get(..end) else {
            return Err(BatchErrorKind::RecordsOverrun { field: "record" });
        };
        let Some(&attributes) = rec.get(p) else {
            return Err(Fail::End.at("record attributes"));
        };
        p += 1;
        let ts_delta = read_varlong(rec, &mut p).map_err(|f| f.at("timestamp delta"))?;
        let offset_delta = read_varint(rec, &mut p).map_err(|f| f.at("offset delta"))?;
        let key = read_bytes(rec, &mut p).map_err(|f| f.at("key"))?;
        let Tail {
            value,
            headers,
            header_count,
        } = record_tail(rec, p, len)?;
        self.pos = end;
        Ok(Record {
            batch: self.batch,
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: match log_append_time {
                Some(t) => t,
                None => base_timestamp.wrapping_add(ts_delta),
            },
            key,
            value,
            headers,
            header_count,
            attributes: attributes as i8,
        })
    }

    #[cold]
    fn fail(&mut self, kind: BatchErrorKind) -> Option<Result<Record<'a>>> {
        self.state = State::Done;
        Some(Err(self.batch.corrupt(kind)))
    }
}

impl<'a> Records<'a> {
    /// Everything but the next magic-2 record: the end of a magic-2 batch, the legacy walk,
    /// the finished state. Out of line, so the per-record path inlines into the caller's loop.
    #[inline(never)]
    fn next_other(&mut self) -> Option<Result<Record<'a>>> {
        match self.state {
            State::V2 { .. } => {
                // All declared records were read: the batch must end here.
                self.state = State::Done;
                let left = self.buf.len() - self.pos;
                if left != 0 {
                    return self.fail(BatchErrorKind::TrailingBytes { remaining: left });
                }
                None
            }
            State::Legacy(walk) => {
                if self.remaining == 0 {
                    self.state = State::Done;
                    return None;
                }
                match walk.next(self.buf, &mut self.pos) {
                    Ok(m) => {
                        self.remaining -= 1;
                        Some(Ok(Record {
                            batch: self.batch,
                            offset: m.offset,
                            timestamp: m.timestamp,
                            key: m.key,
                            value: m.value,
                            headers: &[],
                            header_count: 0,
                            attributes: m.attributes,
                        }))
                    }
                    Err(kind) => self.fail(kind),
                }
            }
            State::Done => None,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>>;

    /// Inlined whole into the caller's loop, so the record's fields stay in registers; the
    /// rarely taken paths are out of line (`next_other`, `fail`, the long varints).
    #[inline(always)]
    fn next(&mut self) -> Option<Result<Record<'a>>> {
        if let State::V2 {
            base_offset,
            base_timestamp,
            log_append_time,
        } = self.state
        {
            if self.remaining != 0 {
                return match self.next_v2(base_offset, base_timestamp, log_append_time) {
                    Ok(r) => {
                        self.remaining -= 1;
                        Some(Ok(r))
                    }
                    Err(kind) => self.fail(kind),
                };
            }
        }
        self.next_other()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.state {
            State::Done => (0, Some(0)),
            // One more for a trailing-bytes error after the last record.
            _ => (0, Some(self.remaining as usize + 1)),
        }
    }
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("base_offset", &self.batch.base_offset())
            .field("position", &self.pos)
            .field("remaining", &self.remaining)
            .finish()
    }
}
