//! Records: the lazy walk over a batch's records, and the record and header views.

use std::fmt;

use bytes::Bytes;

use super::TimestampType;
use super::batch::Batch;
use super::legacy;
use crate::error::{BatchErrorKind, Result};
use crate::wire::{Reader, WireError, unzigzag32, unzigzag64};

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

/// An unsigned varint of one or two bytes at `p`, with where it ends: the common case of
/// every record field (deltas and lengths below 8192). `None` for anything longer, or cut.
#[inline(always)]
fn short_uvarint(buf: &[u8], p: usize) -> Option<(u32, usize)> {
    let b0 = *buf.get(p)?;
    if b0 < 0x80 {
        return Some((u32::from(b0), p + 1));
    }
    let b1 = *buf.get(p + 1)?;
    (b1 < 0x80).then(|| (u32::from(b0 & 0x7f) | u32::from(b1) << 7, p + 2))
}

/// A zigzag varint of at most 5 bytes (Java's `ByteUtils.readVarint`). The one-byte case,
/// which covers most deltas and small lengths, is a compare and a branch.
#[inline(always)]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> std::result::Result<i32, Fail> {
    let (v, next) = match short_uvarint(buf, *pos) {
        Some((v, next)) => (unzigzag32(v), next),
        None => read_varint_multi(buf, *pos)?,
    };
    *pos = next;
    Ok(v)
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
    let (v, next) = match short_uvarint(buf, *pos) {
        Some((v, next)) => (unzigzag64(u64::from(v)), next),
        None => read_varlong_multi(buf, *pos)?,
    };
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

/// The header count and the headers of a record, read from `p` (where its value ends) within
/// `rec`, which ends where the record does: the header bytes and the header count. The headers'
/// lengths are checked here, so iterating them later cannot fail; the fields must fill the
/// record's `len` bytes exactly.
#[inline(never)]
fn record_headers(
    rec: &[u8],
    mut p: usize,
    len: i32,
) -> std::result::Result<(&[u8], u32), BatchErrorKind> {
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
    Ok((&rec[header_start..], header_count as u32))
}

/// A magic-2 record as read from the records section, before the batch's bases are applied.
struct Parsed<'a> {
    /// The bytes after the record.
    next: &'a [u8],
    attributes: u8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
}

/// How many bytes from a record's start [`read_record_fast`] reads without bounds checks: its
/// length, attributes, timestamp delta, offset delta and key length, each varint of one to
/// three bytes, take at most 13.
const WINDOW: usize = 16;

/// A varint of one to three bytes at `w[i]`, still zigzag encoded, and where it ends; `None`
/// when it is longer (left to the exact reader).
#[inline(always)]
fn short_varint(w: &[u8; WINDOW], i: usize) -> Option<(u32, usize)> {
    let b0 = w[i];
    if b0 < 0x80 {
        return Some((u32::from(b0), i + 1));
    }
    let b1 = w[i + 1];
    if b1 < 0x80 {
        return Some((u32::from(b0 & 0x7f) | u32::from(b1) << 7, i + 2));
    }
    let b2 = w[i + 2];
    if b2 < 0x80 {
        let v = u32::from(b0 & 0x7f) | u32::from(b1 & 0x7f) << 7 | u32::from(b2) << 14;
        return Some((v, i + 3));
    }
    None
}

/// A length varint of one to three bytes whose bytes are `b0`, `b1`, `b2` (those after its
/// end are ignored): its zigzag value halved (the length when the value is even; when it is
/// odd, which `b0 & 1` tells, the length is negative) and its size in bytes. `None` when it
/// is longer.
///
/// Halving the zigzag value before assembling it saves the sign's shift: `b0`'s low 7 bits
/// halved are `b0 / 2 - 64` when its top bit is set.
#[inline(always)]
fn half_varint(b0: u8, b1: u8, b2: impl FnOnce() -> Option<u8>) -> Option<(usize, usize)> {
    let b0 = usize::from(b0);
    if b0 < 0x80 {
        return Some((b0 >> 1, 1));
    }
    let b1 = usize::from(b1);
    if b1 < 0x80 {
        return Some(((b0 >> 1) - 0x40 + (b1 << 6), 2));
    }
    let b2 = usize::from(b2()?);
    if b2 < 0x80 {
        return Some(((b0 >> 1) - 0x40 + ((b1 - 0x80) << 6) + (b2 << 13), 3));
    }
    None
}

/// The record at the start of `rest` when it has the common shape: at least [`WINDOW`] bytes
/// left in the section, varints of at most three bytes before the headers, and no headers
/// (`HEADERS` false: the form inlined into the caller's loop) or headers that check (`HEADERS`
/// true: the form [`read_record_slow`] tries first). `None` for anything else, valid or not:
/// [`read_record_exact`] then reads the record again, so errors are reported exactly as it
/// reports them, and nothing is accepted here that it would refuse.
///
/// The fixed window lets the fields before the key be read without a check each; whether they
/// stayed within the record is checked once, with the key (positions only grow, so the key's
/// end being within the record covers every byte read before it). Every length read here is
/// below 2^20, so no sum of them overflows.
#[inline(always)]
fn read_record_fast<const HEADERS: bool>(rest: &[u8]) -> Option<Parsed<'_>> {
    let w = rest.first_chunk::<WINDOW>()?;
    // An odd zigzag value is a negative length: an error, reported by the exact reader.
    if w[0] & 1 != 0 {
        return None;
    }
    let (len, i) = half_varint(w[0], w[1], || Some(w[2]))?;
    let size = i + len;
    // Every field below is read from `rec`, so none can run past the record.
    let (rec, next) = rest.split_at_checked(size)?;
    // Without headers a record ends with a header count of 0: one ending otherwise has
    // headers (or is corrupt), and leaves the inlined form at once.
    if !HEADERS && rec.last() != Some(&0) {
        return None;
    }
    let attributes = w[i];
    let (ts_raw, i) = short_varint(w, i + 1)?;
    let (offset_raw, i) = short_varint(w, i)?;
    // Odd is negative: a null key (Java's `DefaultRecord` reads any negative length as null).
    let key_null = w[i] & 1 != 0;
    let (key_half, n) = half_varint(w[i], w[i + 1], || Some(w[i + 2]))?;
    let i = i + n;
    let key_len = if key_null { 0 } else { key_half };
    // The key, then at least two bytes: the value length and the header count take at least
    // one each.
    let (key, v) = rec.get(i..i + key_len + 2)?.split_at(key_len);
    let key = if key_null { None } else { Some(key) };
    let key_end = i + key_len;
    let value_null = v[0] & 1 != 0;
    let (value_half, n) = half_varint(v[0], v[1], || rec.get(key_end + 2).copied())?;
    let value_start = key_end + n;
    let (value, headers, header_count) = if HEADERS {
        let value_end = if value_null {
            value_start
        } else {
            value_start + value_half
        };
        // The header count follows the value, within the record.
        if value_end >= size {
            return None;
        }
        let (headers, header_count) = headers_fast(rec, value_end)?;
        let value = if value_null {
            None
        } else {
            Some(rec.get(value_start..value_end)?)
        };
        (value, headers, header_count)
    } else {
        // No headers: the record's last byte is a header count of 0, and the value ends
        // there.
        let last = size - 1;
        let value = if value_null {
            if value_start != last {
                return None;
            }
            None
        } else {
            if value_start + value_half != last {
                return None;
            }
            Some(rec.get(value_start..last)?)
        };
        (value, &[][..], 0)
    };
    Some(Parsed {
        next,
        attributes,
        timestamp_delta: unzigzag64(u64::from(ts_raw)),
        offset_delta: unzigzag32(offset_raw),
        key,
        value,
        headers,
        header_count,
    })
}

/// The header count and headers of a record from `p` (where its value ends) to the end of
/// `rec` when they have the common shape: a one-byte count, one-byte key lengths, value
/// lengths of one or two bytes; the header bytes and the count. `None` for anything else,
/// valid or not (the exact reader then reads the record).
#[inline(always)]
fn headers_fast(rec: &[u8], p: usize) -> Option<(&[u8], u32)> {
    let c = *rec.get(p)?;
    // Negative, or more than 63 headers: left to the exact reader.
    if c & 0x81 != 0 {
        return None;
    }
    let count = u32::from(c >> 1);
    let start = p + 1;
    let mut q = start;
    for _ in 0..count {
        // Header keys are never null: an odd (negative) length is an error.
        let k = *rec.get(q)?;
        if k & 0x81 != 0 {
            return None;
        }
        q += 1 + usize::from(k >> 1);
        let v = *rec.get(q)?;
        let (half, n) = if v < 0x80 {
            (usize::from(v >> 1), 1)
        } else {
            half_varint(v, *rec.get(q + 1)?, || None)?
        };
        // Odd is negative: a null value, no bytes.
        q += if v & 1 != 0 { n } else { n + half };
    }
    if q != rec.len() {
        return None;
    }
    Some((rec.get(start..)?, count))
}

/// The record at the start of `rest` when the inlined [`read_record_fast`] did not read it:
/// the fast form again, headers allowed, then the exact reader. Out of line and given only
/// values, so the caller's loop keeps its state in registers.
#[cold]
#[inline(never)]
fn read_record_slow(
    rest: &[u8],
    declared: i32,
    remaining: u32,
) -> std::result::Result<Parsed<'_>, BatchErrorKind> {
    match read_record_fast::<true>(rest) {
        Some(r) => Ok(r),
        None => read_record_exact(rest, declared, remaining),
    }
}

/// Reads the magic-2 record at the start of `rest` (`DefaultRecord`), checking everything:
///
/// ```text
/// length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
/// keyLength varint, key, valueLength varint, value,
/// headerCount varint, [headerKeyLength varint, key, headerValueLength varint, value]
/// ```
///
/// The fields are read within the record's length, and must fill it exactly, as the Java
/// client requires ("Invalid record size"). `declared` and `remaining` (the batch's record
/// count, and the records still to read) only describe a batch that ends too soon.
#[inline(never)]
fn read_record_exact(
    rest: &[u8],
    declared: i32,
    remaining: u32,
) -> std::result::Result<Parsed<'_>, BatchErrorKind> {
    let mut p = 0;
    let len = match read_varint(rest, &mut p) {
        Ok(len) => len,
        Err(Fail::End) if rest.is_empty() => {
            return Err(BatchErrorKind::RecordCount {
                declared,
                found: i64::from(declared) - i64::from(remaining),
            });
        }
        Err(f) => return Err(f.at("record length")),
    };
    let size = usize::try_from(len)
        .ok()
        .and_then(|n| p.checked_add(n))
        .ok_or(BatchErrorKind::InvalidLength {
            field: "record length",
            value: i64::from(len),
        })?;
    // Every field below is read from `rec`, so none can run past the record.
    let Some((rec, next)) = rest.split_at_checked(size) else {
        return Err(BatchErrorKind::RecordsOverrun { field: "record" });
    };
    let Some(&attributes) = rec.get(p) else {
        return Err(Fail::End.at("record attributes"));
    };
    p += 1;
    let timestamp_delta = read_varlong(rec, &mut p).map_err(|f| f.at("timestamp delta"))?;
    let offset_delta = read_varint(rec, &mut p).map_err(|f| f.at("offset delta"))?;
    let key = read_bytes(rec, &mut p).map_err(|f| f.at("key"))?;
    let value = read_bytes(rec, &mut p).map_err(|f| f.at("value"))?;
    let (headers, header_count) = record_headers(rec, p, len)?;
    Ok(Parsed {
        next,
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        header_count,
    })
}

/// The records of a [`Batch`], read lazily, in offset order.
///
/// Yields an error, then nothing more, when the batch turns out to be corrupt: a record
/// running past the batch, a bad varint, fewer records than the header declares, or bytes left
/// after the declared records. Such an error means the batch, and what follows it in the
/// partition, cannot be trusted: stop consuming the partition.
#[derive(Clone)]
pub struct Records<'a> {
    batch: &'a Batch,
    /// The bytes not read yet.
    rest: &'a [u8],
    /// Magic-2 records still to read; always 0 for a legacy walk. The only field the
    /// per-record path tests.
    v2_left: u32,
    /// Legacy messages still to read; 0 for magic 2.
    legacy_left: u32,
    /// Whether the walk is a magic-2 one whose end (no bytes after the last record) is still
    /// to be checked.
    v2_end: bool,
    /// Whether the batch's records are still compressed: the walk is one error.
    compressed: bool,
    /// Added to each record's offset delta.
    base_offset: i64,
    /// Added to each record's timestamp delta masked with `timestamp_mask`: the base timestamp
    /// and all ones, or, for a log-append-time batch, the max timestamp and zero.
    timestamp_base: i64,
    timestamp_mask: i64,
}

/// Where a walk of a batch's records ([`Records`]) stands: taken with [`Records::mark`], gone
/// on from with [`Batch::records_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordsMark {
    /// Bytes of the records section read.
    read: usize,
    v2_left: u32,
    legacy_left: u32,
    v2_end: bool,
}

impl<'a> Records<'a> {
    #[inline]
    pub(crate) fn new(batch: &'a Batch) -> Self {
        let count = batch.record_count().max(0) as u32;
        if batch.legacy_walk().is_some() || batch.needs_decompression() {
            return Records {
                batch,
                rest: batch.records_section(),
                v2_left: 0,
                legacy_left: if batch.needs_decompression() {
                    0
                } else {
                    count
                },
                v2_end: false,
                compressed: batch.needs_decompression(),
                base_offset: 0,
                timestamp_base: 0,
                timestamp_mask: 0,
            };
        }
        let log_append_time = batch.timestamp_type() == TimestampType::LogAppendTime;
        Records {
            batch,
            rest: batch.records_section(),
            v2_left: count,
            legacy_left: 0,
            v2_end: true,
            compressed: false,
            base_offset: batch.base_offset(),
            timestamp_base: if log_append_time {
                batch.max_timestamp()
            } else {
                batch.base_timestamp()
            },
            timestamp_mask: if log_append_time { 0 } else { -1 },
        }
    }

    /// Where the walk stands, to go on from there with [`Batch::records_from`]: for taking a
    /// batch's records in parts without decoding the rest ahead of time.
    pub fn mark(&self) -> RecordsMark {
        RecordsMark {
            read: self.batch.records_section().len() - self.rest.len(),
            v2_left: self.v2_left,
            legacy_left: self.legacy_left,
            v2_end: self.v2_end,
        }
    }

    /// The walk of `batch` from `mark`, one that [`mark`](Self::mark) took of a walk of the
    /// same batch in the same state (decompressed or not). A mark of another batch reads
    /// garbage, which fails as a corrupt batch does: never a panic.
    pub(crate) fn resume(batch: &'a Batch, mark: RecordsMark) -> Self {
        let mut walk = Records::new(batch);
        if walk.compressed {
            return walk;
        }
        walk.rest = walk.rest.get(mark.read..).unwrap_or_default();
        walk.v2_left = mark.v2_left;
        walk.legacy_left = mark.legacy_left;
        walk.v2_end = mark.v2_end;
        walk
    }

    /// Reads the next magic-2 record: the common shape without a check per field, anything
    /// else (and every error) through the exact reader.
    #[inline(always)]
    fn next_v2(&mut self) -> std::result::Result<Record<'a>, BatchErrorKind> {
        let rest = self.rest;
        let r = match read_record_fast::<false>(rest) {
            Some(r) => r,
            None => read_record_slow(rest, self.batch.record_count(), self.v2_left)?,
        };
        self.rest = r.next;
        Ok(Record {
            batch: self.batch,
            offset: self.base_offset.wrapping_add(i64::from(r.offset_delta)),
            timestamp: self
                .timestamp_base
                .wrapping_add(r.timestamp_delta & self.timestamp_mask),
            key: r.key,
            value: r.value,
            headers: r.headers,
            header_count: r.header_count,
            attributes: r.attributes as i8,
        })
    }

    /// Ends the walk with an error. Takes no reference to `self` out of line, so the walk's
    /// state can stay in registers in the caller's loop.
    #[inline(always)]
    fn fail(&mut self, kind: BatchErrorKind) -> Option<Result<Record<'a>>> {
        self.v2_left = 0;
        self.legacy_left = 0;
        self.v2_end = false;
        self.compressed = false;
        Some(Err(self.batch.corrupt(kind)))
    }

    /// Everything but the next magic-2 record: the end of a magic-2 batch, the legacy walk,
    /// the finished state. Its out-of-line parts take values, not `self`.
    #[inline(always)]
    fn next_other(&mut self) -> Option<Result<Record<'a>>> {
        if self.v2_end {
            // All declared records were read: the batch must end here.
            self.v2_end = false;
            let left = self.rest.len();
            if left != 0 {
                return self.fail(BatchErrorKind::TrailingBytes { remaining: left });
            }
            return None;
        }
        if self.legacy_left == 0 {
            if self.compressed {
                return self.fail(BatchErrorKind::Other(
                    "the records were read before the batch was decompressed",
                ));
            }
            return None;
        }
        match legacy_next(self.batch, self.rest) {
            Ok((m, rest)) => {
                self.rest = rest;
                self.legacy_left -= 1;
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
}

/// The next message of a legacy batch's walk, and the bytes after it.
#[inline(never)]
fn legacy_next<'a>(
    batch: &Batch,
    rest: &'a [u8],
) -> std::result::Result<(legacy::WalkedMessage<'a>, &'a [u8]), BatchErrorKind> {
    let walk = batch.legacy_walk().ok_or(BatchErrorKind::Other(
        "a magic 2 batch walked as a legacy one",
    ))?;
    let mut pos = 0;
    let m = walk.next(rest, &mut pos)?;
    Ok((m, rest.get(pos..).unwrap_or_default()))
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>>;

    /// Inlined whole into the caller's loop, so the walk's state and the record's fields stay
    /// in registers; the rarely taken paths are out of line and take values (the exact record
    /// reader, the legacy walk, the error).
    #[inline(always)]
    fn next(&mut self) -> Option<Result<Record<'a>>> {
        if self.v2_left != 0 {
            return match self.next_v2() {
                Ok(r) => {
                    self.v2_left -= 1;
                    Some(Ok(r))
                }
                Err(kind) => self.fail(kind),
            };
        }
        self.next_other()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.v2_left + self.legacy_left) as usize;
        if left == 0 && !self.v2_end && !self.compressed {
            return (0, Some(0));
        }
        // One more for a trailing-bytes error after the last record.
        (0, Some(left + 1))
    }
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("base_offset", &self.batch.base_offset())
            .field(
                "position",
                &(self.batch.records_section().len() - self.rest.len()),
            )
            .field("remaining", &(self.v2_left + self.legacy_left))
            .finish()
    }
}

#[cfg(test)]
mod fast_path_tests {
    //! The fast record readers against the exact one: whatever a fast form reads, the exact
    //! reader reads the same; and the inlined form does read the common shape.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::{Parsed, WINDOW, read_record_exact, read_record_fast};

    /// A zigzag varint of `v`, padded with `pad` needless continuation bytes (the decoders
    /// accept such non-canonical encodings).
    fn put_varint(out: &mut Vec<u8>, v: i64, pad: usize) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        let mut n = 0;
        let min = (64 - u.leading_zeros() as usize).div_ceil(7).max(1) + pad;
        loop {
            n += 1;
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if n >= min {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    #[derive(Debug, Clone)]
    struct Fields {
        attributes: u8,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        /// Padding of each varint, in order of writing.
        pads: Vec<usize>,
    }

    fn body(f: &Fields) -> Vec<u8> {
        let mut pads = f.pads.iter().copied().cycle();
        let mut b = vec![f.attributes];
        put_varint(&mut b, f.timestamp_delta, pads.next().unwrap_or(0));
        put_varint(&mut b, i64::from(f.offset_delta), pads.next().unwrap_or(0));
        for field in [&f.key, &f.value] {
            match field {
                Some(x) => {
                    put_varint(&mut b, x.len() as i64, pads.next().unwrap_or(0));
                    b.extend_from_slice(x);
                }
                None => put_varint(&mut b, -1, pads.next().unwrap_or(0)),
            }
        }
        put_varint(&mut b, f.headers.len() as i64, pads.next().unwrap_or(0));
        for (k, v) in &f.headers {
            put_varint(&mut b, k.len() as i64, pads.next().unwrap_or(0));
            b.extend_from_slice(k);
            match v {
                Some(v) => {
                    put_varint(&mut b, v.len() as i64, pads.next().unwrap_or(0));
                    b.extend_from_slice(v);
                }
                None => put_varint(&mut b, -1, pads.next().unwrap_or(0)),
            }
        }
        b
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![vec(any::<u8>(), 0..8), vec(any::<u8>(), 0..max)]
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            any::<u8>(),
            prop_oneof![0i64..64, 0i64..20_000, -100i64..0, any::<i64>()],
            prop_oneof![0i32..64, 0i32..20_000, any::<i32>()],
            proptest::option::weighted(0.9, bytes(200)),
            proptest::option::weighted(0.9, prop_oneof![bytes(300), vec(any::<u8>(), 8150..8250)]),
            prop_oneof![
                3 => Just(vec![]),
                1 => vec((bytes(80), proptest::option::of(bytes(150))), 1..4),
            ],
            prop_oneof![3 => Just(vec![0]), 1 => vec(0usize..3, 1..12)],
        )
            .prop_map(
                |(attributes, timestamp_delta, offset_delta, key, value, headers, pads)| Fields {
                    attributes,
                    timestamp_delta,
                    offset_delta,
                    key,
                    value,
                    headers,
                    pads,
                },
            )
    }

    fn assert_same(fast: &Parsed<'_>, exact: &Parsed<'_>) {
        assert_eq!(fast.next.as_ptr_range(), exact.next.as_ptr_range());
        assert_eq!(fast.attributes, exact.attributes);
        assert_eq!(fast.timestamp_delta, exact.timestamp_delta);
        assert_eq!(fast.offset_delta, exact.offset_delta);
        assert_eq!(
            fast.key.map(<[u8]>::as_ptr_range),
            exact.key.map(<[u8]>::as_ptr_range)
        );
        assert_eq!(
            fast.value.map(<[u8]>::as_ptr_range),
            exact.value.map(<[u8]>::as_ptr_range)
        );
        assert_eq!(fast.headers, exact.headers);
        assert_eq!(fast.header_count, exact.header_count);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Valid or corrupt, a record the fast forms read is read the same by the exact
        /// reader; and the inlined form reads every plain record of the common shape.
        #[test]
        fn fast_readers_agree_with_the_exact_reader(
            f in fields(),
            length_error in prop_oneof![4 => Just(0i64), 1 => -3i64..3],
            length_pad in prop_oneof![3 => Just(0usize), 1 => 0usize..3],
            flip in proptest::option::weighted(0.3, (any::<prop::sample::Index>(), any::<u8>())),
            trailing in vec(any::<u8>(), 0..24),
        ) {
            let body = body(&f);
            let mut rest = Vec::new();
            put_varint(&mut rest, body.len() as i64 + length_error, length_pad);
            rest.extend_from_slice(&body);
            if let Some((at, byte)) = flip {
                let i = at.index(rest.len());
                rest[i] = byte;
            }
            let plain_end = rest.len();
            rest.extend_from_slice(&trailing);
            let exact = read_record_exact(&rest, 1, 1);
            let fast = [read_record_fast::<false>(&rest), read_record_fast::<true>(&rest)];
            for fast in fast.iter().flatten() {
                match &exact {
                    Ok(exact) => assert_same(fast, exact),
                    Err(e) => panic!("the fast reader read a record the exact one refused: {e:?}"),
                }
            }
            // The common shape: varints of at most three bytes before the headers, one-byte
            // header counts and key lengths, header values of at most two.
            let common = flip.is_none()
                && length_error == 0
                && length_pad == 0
                && f.pads.iter().all(|&p| p == 0)
                && f.key.as_ref().is_none_or(|k| k.len() < 1 << 19)
                && f.value.as_ref().is_none_or(|v| v.len() < 1 << 19)
                && (-(1 << 19)..1 << 19).contains(&f.timestamp_delta)
                && (-(1 << 19)..1 << 19).contains(&f.offset_delta)
                && rest.len() >= WINDOW;
            if common && f.headers.is_empty() {
                let fast = read_record_fast::<false>(&rest);
                prop_assert!(fast.is_some());
                prop_assert_eq!(fast.unwrap().next.len(), rest.len() - plain_end);
            }
            let simple_headers = f.headers.len() < 64
                && f.headers.iter().all(|(k, v)| {
                    k.len() < 64 && v.as_ref().is_none_or(|v| v.len() < 8192)
                });
            if common && simple_headers {
                let fast = read_record_fast::<true>(&rest);
                prop_assert!(fast.is_some());
                prop_assert_eq!(fast.unwrap().header_count as usize, f.headers.len());
            }
        }
    }
}
