//! The walk over a records buffer, one batch at a time, and the batch itself.

use std::fmt;

use bytes::Bytes;

use super::record::{Records, RecordsMark};
use super::{DecodeOptions, TimestampType, legacy, v2};
use crate::compression::{self, Compression, Lz4HeaderChecksum};
use crate::error::{BatchErrorKind, CorruptBatch, Error, Result};

/// The batches of a records buffer (a Fetch response partition's `records`), in order.
///
/// Each item is one magic-2 record batch, or one magic 0/1 entry (a message, or a compressed
/// wrapper with its inner messages). The walk ends:
///
/// - at the end of the buffer;
/// - at a batch cut short by the fetch's size limit (fewer bytes left than the batch's length,
///   or than a length field): a normal end, reported by [`truncated_tail`](Self::truncated_tail);
///   the consumer fetches again from [`Batch::next_offset`] of the last whole batch;
/// - at a corrupt batch: an [`Error::CorruptBatch`] item, then nothing more. Nothing after a
///   corrupt batch is read, and it is never skipped silently.
///
/// ```
/// use kcon_codec::records::{DecodeOptions, RecordBatchBuilder, RecordBatches};
///
/// let mut builder = RecordBatchBuilder::new(0);
/// builder.record(0, None, Some(b"a"));
/// let whole = builder.build().unwrap();
/// // Two batches, the second cut short by the fetch size.
/// let mut buf = whole.to_vec();
/// buf.extend_from_slice(&whole[..20]);
///
/// let mut batches = RecordBatches::new(buf.into(), DecodeOptions::default());
/// assert_eq!(batches.by_ref().count(), 1);
/// assert!(batches.truncated_tail());
/// assert_eq!(batches.bytes_consumed(), whole.len());
/// ```
pub struct RecordBatches {
    buf: Bytes,
    pos: usize,
    opts: DecodeOptions,
    truncated: bool,
    done: bool,
}

impl RecordBatches {
    /// A walk over `buf` (the bytes are shared, not copied).
    pub fn new(buf: Bytes, opts: DecodeOptions) -> Self {
        RecordBatches {
            buf,
            pos: 0,
            opts,
            truncated: false,
            done: false,
        }
    }

    /// Bytes of the whole batches returned so far: where the next batch starts. After a
    /// corrupt batch, where that batch starts.
    pub fn bytes_consumed(&self) -> usize {
        self.pos
    }

    /// Whether the walk ended at a batch cut short by the end of the buffer (or at fewer bytes
    /// than a batch's length field). The cut bytes are not counted in
    /// [`bytes_consumed`](Self::bytes_consumed).
    pub fn truncated_tail(&self) -> bool {
        self.truncated
    }

    /// The options the walk decodes with.
    pub fn options(&self) -> &DecodeOptions {
        &self.opts
    }

    /// Reads the batch at `self.pos`: `Ok(None)` at the end of the buffer or a truncated tail.
    fn read_batch(&mut self) -> Result<Option<Batch>> {
        let pos = self.pos;
        let rest = &self.buf[pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        let Some(head) = rest.first_chunk::<{ v2::LOG_OVERHEAD }>() else {
            self.truncated = true;
            return Ok(None);
        };
        let base_offset = i64::from_be_bytes(read_array(head, v2::BASE_OFFSET));
        let length = i32::from_be_bytes(read_array(head, v2::LENGTH));
        let corrupt = |kind| -> Error {
            CorruptBatch {
                base_offset: Some(base_offset),
                position: pos,
                kind,
            }
            .into()
        };
        // Like the Java client's `ByteBufferLogInputStream.nextBatch`: a length below the
        // smallest message of any format is corruption; one past the bytes left is a batch
        // cut by the fetch size (KIP-74), which ends the walk.
        let size = match usize::try_from(length) {
            Ok(n) if n >= legacy::MIN_MESSAGE_SIZE_V0 => n + v2::LOG_OVERHEAD,
            _ => {
                return Err(corrupt(BatchErrorKind::InvalidLength {
                    field: "batch length",
                    value: i64::from(length),
                }));
            }
        };
        if rest.len() < size {
            self.truncated = true;
            return Ok(None);
        }
        let raw = self.buf.slice(pos..pos + size);
        // In bounds: `size` is at least 12 + 14 bytes, and the magic is at 16 in every format.
        let magic = raw[v2::MAGIC] as i8;
        let batch = match magic {
            2 => Batch::read_v2(raw, pos, base_offset, &self.opts),
            0 | 1 => Batch::read_legacy(raw, pos, magic, &self.opts),
            m => Err(BatchErrorKind::UnknownMagic(m)),
        }
        .map_err(corrupt)?;
        self.pos = pos + size;
        Ok(Some(batch))
    }
}

/// The records section of the magic-2 batch `raw` decompressed into a pooled buffer, and the
/// bytes that buffer holds.
fn decompress_section(
    codec: Compression,
    raw: &[u8],
    cap: usize,
) -> std::result::Result<(Bytes, usize), BatchErrorKind> {
    let section = raw.get(v2::HEADER_LEN..).unwrap_or_default();
    Ok(compression::decompress_pooled(
        codec,
        section,
        cap,
        Lz4HeaderChecksum::Verify,
    )?)
}

/// `N` bytes of `buf` at `at`; `buf` is a fixed-size header the caller has checked is long
/// enough, so the fallback of zeros is never taken.
#[inline]
fn read_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

impl Iterator for RecordBatches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        match self.read_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for RecordBatches {}

impl fmt::Debug for RecordBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBatches")
            .field("len", &self.buf.len())
            .field("consumed", &self.pos)
            .field("truncated", &self.truncated)
            .field("done", &self.done)
            .finish()
    }
}

/// One record batch (magic 2), or one magic 0/1 entry: its header, and its records.
///
/// For magic 0 and 1 the header fields that do not exist read as the Java client reports them:
/// leader epoch, producer id, producer epoch and base sequence -1, not transactional, not
/// control; the CRC, attributes and timestamps are the (wrapper) message's.
#[derive(Clone)]
pub struct Batch {
    position: usize,
    raw: Bytes,
    /// The records: the decompressed magic-2 records section, or the legacy message set.
    /// Empty for an uncompressed magic-2 batch, whose records are read in place from `raw`
    /// (one reference count less to take and drop per batch).
    data: Bytes,
    /// Bytes of the buffer `data` keeps alive besides `raw`: the decompression buffer, which
    /// may be longer than `data` when it was reused from a larger batch.
    held: usize,
    /// The decompression cap, while the records are still compressed in `raw`
    /// ([`DecodeOptions::defer_decompression`]); `None` once `data` holds them, and for
    /// batches whose records never needed decompressing.
    deferred: Option<usize>,
    /// Whether the records are the uncompressed section of `raw`, after the header.
    records_in_raw: bool,
    magic: i8,
    base_offset: i64,
    last_offset: i64,
    batch_length: i32,
    partition_leader_epoch: i32,
    crc: u32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    compression: Compression,
    timestamp_type: TimestampType,
    legacy: Option<legacy::Walk>,
}

impl Batch {
    /// Reads a magic-2 batch from `raw`, which holds exactly its declared size.
    fn read_v2(
        raw: Bytes,
        position: usize,
        base_offset: i64,
        opts: &DecodeOptions,
    ) -> std::result::Result<Batch, BatchErrorKind> {
        let Some(h) = raw.first_chunk::<{ v2::HEADER_LEN }>() else {
            return Err(BatchErrorKind::InvalidLength {
                field: "batch length",
                value: raw.len() as i64 - v2::LOG_OVERHEAD as i64,
            });
        };
        let crc = u32::from_be_bytes(read_array(h, v2::CRC));
        if opts.verify_crc {
            // One pass of the CRC-32C over the batch (carry-less multiplication folding).
            let computed = super::crc32c(&raw[v2::ATTRIBUTES..]);
            if computed != crc {
                return Err(BatchErrorKind::CrcMismatch {
                    stored: crc,
                    computed,
                });
            }
        }
        let attributes = i16::from_be_bytes(read_array(h, v2::ATTRIBUTES));
        let codec_id = (attributes & v2::COMPRESSION_MASK) as u8;
        let compression =
            Compression::from_id(codec_id).ok_or(BatchErrorKind::UnknownCompression(codec_id))?;
        let record_count = i32::from_be_bytes(read_array(h, v2::RECORD_COUNT));
        let count_error = BatchErrorKind::InvalidLength {
            field: "record count",
            value: i64::from(record_count),
        };
        let count = usize::try_from(record_count).map_err(|_| count_error.clone())?;
        // A count no section within the cap could hold is refused before anything is
        // decompressed, whether decompression is deferred or not: a corrupt batch fails the
        // same way on both paths (the count first, then the payload, then the count against
        // what it decompressed to).
        if compression != Compression::None
            && count > opts.max_decompressed_bytes / v2::MIN_RECORD_LEN
        {
            return Err(count_error);
        }
        let defer = compression != Compression::None && opts.defer_decompression;
        let (data, held) = if compression == Compression::None || defer {
            (Bytes::new(), 0)
        } else {
            // Decompressed once into one pooled buffer; the records are slices of it.
            decompress_section(compression, &raw, opts.max_decompressed_bytes)?
        };
        // A count the bytes cannot hold is refused before any record is read (nothing is sized
        // from it, but it would otherwise surface only at the end of the walk). Still
        // compressed, the records can be no longer than the cap.
        let section_len = if compression == Compression::None {
            raw.len().saturating_sub(v2::HEADER_LEN)
        } else if defer {
            opts.max_decompressed_bytes
        } else {
            data.len()
        };
        if count > section_len / v2::MIN_RECORD_LEN {
            return Err(count_error);
        }
        let last_offset_delta = i32::from_be_bytes(read_array(h, v2::LAST_OFFSET_DELTA));
        Ok(Batch {
            position,
            magic: 2,
            base_offset,
            last_offset: base_offset.wrapping_add(i64::from(last_offset_delta)),
            batch_length: i32::from_be_bytes(read_array(h, v2::LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(read_array(h, v2::PARTITION_LEADER_EPOCH)),
            crc,
            attributes,
            last_offset_delta,
            base_timestamp: i64::from_be_bytes(read_array(h, v2::BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(read_array(h, v2::MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(read_array(h, v2::PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(read_array(h, v2::PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(read_array(h, v2::BASE_SEQUENCE)),
            record_count,
            compression,
            timestamp_type: if attributes & v2::TIMESTAMP_TYPE != 0 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            legacy: None,
            records_in_raw: compression == Compression::None,
            raw,
            data,
            held,
            deferred: defer.then_some(opts.max_decompressed_bytes),
        })
    }

    /// Decompresses the records of a batch read with
    /// [`DecodeOptions::defer_decompression`], bounded by the cap the walk was given; does
    /// nothing when they are not compressed or already decompressed. Until then
    /// [`records`](Self::records) yields an error.
    ///
    /// A payload that does not decompress, or whose output cannot hold the records the header
    /// counts, is the same [`Error::CorruptBatch`] the walk would have returned, at the same
    /// base offset and position; the batch then stays compressed, and calling this again
    /// fails again.
    ///
    /// ```
    /// use kcon_codec::compression::Compression;
    /// use kcon_codec::records::{DecodeOptions, RecordBatchBuilder, RecordBatches};
    ///
    /// let mut builder = RecordBatchBuilder::new(7).compression(Compression::Zstd);
    /// builder.record(0, None, Some(b"v"));
    /// let opts = DecodeOptions::default().with_deferred_decompression(true);
    /// let mut batch = RecordBatches::new(builder.build().unwrap(), opts).next().unwrap().unwrap();
    /// assert!(batch.needs_decompression());
    /// assert!(batch.records().next().unwrap().is_err());
    /// batch.decompress().unwrap();
    /// assert_eq!(batch.records().next().unwrap().unwrap().offset(), 7);
    /// ```
    pub fn decompress(&mut self) -> Result<()> {
        let Some(cap) = self.deferred else {
            return Ok(());
        };
        let (data, held) =
            decompress_section(self.compression, &self.raw, cap).map_err(|k| self.corrupt(k))?;
        // The check the walk makes of a batch it decompresses.
        let count = self.record_count.max(0) as usize;
        if count > data.len() / v2::MIN_RECORD_LEN {
            return Err(self.corrupt(BatchErrorKind::InvalidLength {
                field: "record count",
                value: i64::from(self.record_count),
            }));
        }
        self.data = data;
        self.held = held;
        self.deferred = None;
        Ok(())
    }

    /// Whether the records are still compressed: [`decompress`](Self::decompress) must come
    /// before [`records`](Self::records).
    pub fn needs_decompression(&self) -> bool {
        self.deferred.is_some()
    }

    /// Reads a magic 0/1 entry from `raw`, which holds exactly its declared size.
    fn read_legacy(
        raw: Bytes,
        position: usize,
        magic: i8,
        opts: &DecodeOptions,
    ) -> std::result::Result<Batch, BatchErrorKind> {
        let d = legacy::decode(&raw, opts)?;
        Ok(Batch {
            position,
            magic,
            base_offset: d.base_offset,
            last_offset: d.last_offset,
            batch_length: (raw.len() - v2::LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1,
            crc: d.crc,
            attributes: i16::from(d.attributes),
            last_offset_delta: d.last_offset.wrapping_sub(d.base_offset) as i32,
            base_timestamp: d.timestamp,
            max_timestamp: d.timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: d.count,
            compression: d.compression,
            timestamp_type: d.timestamp_type,
            legacy: Some(d.walk),
            records_in_raw: false,
            raw,
            deferred: None,
            held: if d.compression == Compression::None {
                0
            } else {
                d.data.len()
            },
            data: d.data,
        })
    }

    /// The offset field at the front of the batch (the wrapper's offset for magic 0/1).
    fn wrapper_offset(&self) -> i64 {
        i64::from_be_bytes(read_array(&self.raw, v2::BASE_OFFSET))
    }

    /// The error for a corrupt record of this batch.
    #[cold]
    pub(crate) fn corrupt(&self, kind: BatchErrorKind) -> Error {
        CorruptBatch {
            base_offset: Some(if self.magic < 2 {
                self.wrapper_offset()
            } else {
                self.base_offset
            }),
            position: self.position,
            kind,
        }
        .into()
    }

    /// The buffer the records' slices point into: `raw` for an uncompressed magic-2 batch.
    #[inline]
    pub(crate) fn data(&self) -> &Bytes {
        if self.records_in_raw {
            &self.raw
        } else {
            &self.data
        }
    }

    /// The records: the magic-2 records section (decompressed if need be), or the legacy
    /// message set.
    #[inline]
    pub(crate) fn records_section(&self) -> &[u8] {
        if self.records_in_raw {
            self.raw.get(v2::HEADER_LEN..).unwrap_or_default()
        } else {
            &self.data
        }
    }

    /// How the messages of a magic 0/1 entry map to records; `None` for magic 2.
    #[inline]
    pub(crate) fn legacy_walk(&self) -> Option<legacy::Walk> {
        self.legacy
    }

    /// The records, read lazily: each a view into this batch. For a batch whose decompression
    /// was deferred and has not happened yet ([`needs_decompression`](Self::needs_decompression)),
    /// one error and nothing else.
    ///
    /// ```
    /// use kcon_codec::records::{DecodeOptions, NewRecord, RecordBatchBuilder, RecordBatches};
    ///
    /// let mut builder = RecordBatchBuilder::new(10);
    /// builder.push(NewRecord {
    ///     timestamp: 5,
    ///     key: Some(b"k"),
    ///     value: None,
    ///     headers: &[(b"h", Some(b"1")), (b"h", Some(b"2"))],
    ///     ..NewRecord::default()
    /// });
    /// let batch = RecordBatches::new(builder.build().unwrap(), DecodeOptions::default())
    ///     .next()
    ///     .unwrap()
    ///     .unwrap();
    /// let record = batch.records().next().unwrap().unwrap();
    /// assert_eq!((record.offset(), record.timestamp()), (10, 5));
    /// assert_eq!(record.value(), None);
    /// let values: Vec<_> = record.headers().map(|h| h.value()).collect();
    /// assert_eq!(values, [Some(&b"1"[..]), Some(&b"2"[..])]);
    /// ```
    #[inline]
    pub fn records(&self) -> Records<'_> {
        Records::new(self)
    }

    /// The records from where an earlier walk of this batch stopped ([`Records::mark`]),
    /// with the batch decompressed then as it is now.
    pub fn records_from(&self, mark: RecordsMark) -> Records<'_> {
        Records::resume(self, mark)
    }

    /// Bytes of the records' own buffer, the one they were decompressed into, which the batch
    /// and its records keep in memory besides [`as_bytes`](Self::as_bytes): 0 for an
    /// uncompressed batch, whose records are read in place, and for one whose decompression
    /// is deferred and still to come. At least the decompressed size; more when the buffer is
    /// one reused from a larger batch.
    pub fn decompressed_len(&self) -> usize {
        self.held
    }

    /// Byte position of the batch in the records buffer it was read from.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The whole batch as it was received (shared, not copied): for forwarding or storing it.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// Bytes the batch takes in the buffer (`12 + batch_length`).
    pub fn size_in_bytes(&self) -> usize {
        self.raw.len()
    }

    /// The format: 2 for record batches, 0 or 1 for old message sets.
    pub fn magic(&self) -> i8 {
        self.magic
    }

    /// The offset of the first record. For a magic 0/1 wrapper, the first inner message's.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The offset of the last record the batch was written with (`base_offset +
    /// last_offset_delta`; compaction may have removed that record). For magic 0/1 the
    /// (wrapper) message's offset.
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Where the next fetch continues: `last_offset + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset.wrapping_add(1)
    }

    /// The batch length field: bytes after it (for magic 0/1, the message size).
    pub fn batch_length(&self) -> i32 {
        self.batch_length
    }

    /// The leader epoch of the partition when the batch was appended (KIP-101), -1 if unknown.
    pub fn partition_leader_epoch(&self) -> i32 {
        self.partition_leader_epoch
    }

    /// The stored CRC (CRC-32C for magic 2, the wrapper's CRC-32 for magic 0/1).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The raw attributes.
    pub fn attributes(&self) -> i16 {
        self.attributes
    }

    /// The codec the records were compressed with.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// What the records' timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        self.timestamp_type
    }

    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.magic == 2 && self.attributes & v2::TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (attribute bit 5): transaction markers.
    pub fn is_control(&self) -> bool {
        self.magic == 2 && self.attributes & v2::CONTROL != 0
    }

    /// Whether the base timestamp is a delete horizon (attribute bit 6, KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.magic == 2 && self.attributes & v2::DELETE_HORIZON != 0
    }

    /// The delete horizon of a compacted batch (its base timestamp), when set.
    pub fn delete_horizon(&self) -> Option<i64> {
        self.has_delete_horizon().then_some(self.base_timestamp)
    }

    /// The last offset delta field.
    pub fn last_offset_delta(&self) -> i32 {
        self.last_offset_delta
    }

    /// The base timestamp field: the records' timestamps are deltas from it (for magic 0/1,
    /// the message's timestamp).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// The max timestamp field: the largest record timestamp, or the log-append time.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The producer id, -1 when none.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// The producer epoch, -1 when none.
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch
    }

    /// The sequence number of the first record, -1 when none.
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence
    }

    /// The number of records the header declares (for magic 0/1, the messages found).
    pub fn record_count(&self) -> i32 {
        self.record_count
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("position", &self.position)
            .field("magic", &self.magic)
            .field("base_offset", &self.base_offset)
            .field("last_offset", &self.last_offset)
            .field("record_count", &self.record_count)
            .field("compression", &self.compression)
            .field("timestamp_type", &self.timestamp_type)
            .field("partition_leader_epoch", &self.partition_leader_epoch)
            .field("producer_id", &self.producer_id)
            .field("producer_epoch", &self.producer_epoch)
            .field("base_sequence", &self.base_sequence)
            .field("transactional", &self.is_transactional())
            .field("control", &self.is_control())
            .finish()
    }
}
