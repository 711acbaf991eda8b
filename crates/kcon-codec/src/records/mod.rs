//! Record batches: kcon's own decoder (magic 0, 1 and 2) and encoder (magic 2).
//!
//! The records of a Fetch response partition are a sequence of batches: magic-2 record batches
//! (KIP-98), or, from brokers still storing the old formats, magic 0 and 1 message sets, whose
//! entries are single messages or compressed wrapper messages holding an inner message set.
//! [`RecordBatches`] walks that sequence, one [`Batch`] per entry; [`Batch::records`] walks a
//! batch's records lazily, each a [`Record`] borrowing the batch.
//!
//! Why a decoder of our own (rather than `kafka-protocol`'s `RecordBatchDecoder`): that one
//! allocates a `Record` and an `IndexMap` per record, merges duplicate header keys, and
//! reserves capacity from counts read off the wire. Here:
//!
//! - a record is a view: its key, value and headers are slices of the batch's buffer (the
//!   fetched bytes for an uncompressed batch, the one decompressed buffer of a compressed one),
//!   so walking records allocates nothing and touches no reference count; [`Record::key_bytes`]
//!   and [`Record::value_bytes`] hand out zero-copy [`bytes::Bytes`] when a record must outlive
//!   the batch;
//! - header order and duplicate keys are kept, a null key or value is distinct from an empty one;
//! - every count and length from the wire is checked against the bytes present (or the
//!   decompression cap) before anything is sized from it;
//! - a batch cut short at the end of the buffer (the fetch's size limit, KIP-74) ends the walk
//!   normally, while a corrupt batch is an error that stops it.
//!
//! ```
//! use bytes::Bytes;
//! use kcon_codec::compression::Compression;
//! use kcon_codec::records::{DecodeOptions, RecordBatchBuilder, RecordBatches};
//!
//! // A batch as a producer would write it...
//! let mut builder = RecordBatchBuilder::new(42).compression(Compression::Lz4);
//! builder.record(1_700_000_000_000, Some(b"k"), Some(b"v"));
//! let bytes: Bytes = builder.build().unwrap();
//!
//! // ...and as a consumer reads it.
//! let mut batches = RecordBatches::new(bytes, DecodeOptions::default());
//! for batch in &mut batches {
//!     let batch = batch.unwrap();
//!     for record in batch.records() {
//!         let record = record.unwrap();
//!         assert_eq!(record.offset(), 42);
//!         assert_eq!(record.key(), Some(&b"k"[..]));
//!     }
//!     assert_eq!(batch.next_offset(), 43);
//! }
//! assert!(!batches.truncated_tail());
//! ```

mod batch;
mod builder;
mod legacy;
mod record;

#[cfg(any(feature = "fuzzing", test))]
mod fuzz;
#[cfg(test)]
mod tests;

pub use batch::{Batch, RecordBatches};
pub use builder::{EncodeError, NewRecord, RecordBatchBuilder, with_producer};
#[doc(hidden)]
pub use legacy::{LegacyMessage, encode_legacy_message_set};
pub use record::{ControlRecord, ControlRecordType, Header, Headers, Record, Records, RecordsMark};

#[doc(hidden)]
#[cfg(any(feature = "fuzzing", test))]
pub use fuzz::{fuzz_decode_all, fuzz_round_trip};

use crate::compression::DEFAULT_MAX_DECOMPRESSED_BYTES;

/// The CRC-32C (Castagnoli) of `bytes`, as a v2 record batch carries it over everything from
/// its attributes on.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    // CRC-32/ISCSI is CRC-32C; the 64-bit result holds the 32-bit CRC.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Options of the record decoder.
///
/// ```
/// use kcon_codec::records::DecodeOptions;
///
/// let opts = DecodeOptions::default()
///     .with_verify_crc(false)
///     .with_max_decompressed_bytes(16 << 20);
/// assert!(!opts.verify_crc);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Verify each batch's CRC (CRC-32C for magic 2, CRC-32 for magic 0 and 1 messages, inner
    /// ones included) before reading it: the Java consumer's `check.crcs`, on by default.
    pub verify_crc: bool,
    /// The most bytes one compressed batch may decompress to; a batch past it is an error
    /// ([`crate::error::BatchErrorKind::DecompressedTooLarge`]). Default
    /// [`DEFAULT_MAX_DECOMPRESSED_BYTES`] (64 MiB).
    pub max_decompressed_bytes: usize,
    /// Leave a compressed magic-2 batch's records compressed until
    /// [`Batch::decompress`](crate::records::Batch::decompress) is called, rather than
    /// decompressing them as the walk reads the batch. The walk still checks the CRC (over the
    /// compressed bytes, as the producer computed it) and the header. A consumer holding many
    /// batches then holds their compressed bytes only, and decompresses each when its records
    /// are wanted. Off by default. Magic 0 and 1 wrappers are always decompressed by the walk:
    /// their inner offsets are needed to know the wrapper's.
    pub defer_decompression: bool,
}

impl DecodeOptions {
    /// These options with CRC verification on or off.
    pub fn with_verify_crc(mut self, verify_crc: bool) -> Self {
        self.verify_crc = verify_crc;
        self
    }

    /// These options with another decompression cap.
    pub fn with_max_decompressed_bytes(mut self, max: usize) -> Self {
        self.max_decompressed_bytes = max;
        self
    }

    /// These options with decompression deferred, or not (see
    /// [`defer_decompression`](Self::defer_decompression)).
    pub fn with_deferred_decompression(mut self, defer: bool) -> Self {
        self.defer_decompression = defer;
        self
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            verify_crc: true,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            defer_decompression: false,
        }
    }
}

/// What a record's timestamp means (attribute bit 3; magic 0 has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Magic 0: the message has no timestamp (it reads as -1).
    NoTimestamp,
    /// Set by the producer (`CreateTime`).
    CreateTime,
    /// Set by the broker when it appended the batch (`LogAppendTime`); every record of the
    /// batch has the batch's max timestamp.
    LogAppendTime,
}

/// Offsets and sizes of the magic-2 batch header (`DefaultRecordBatch` in the Java client).
pub(crate) mod v2 {
    /// Offset of the base offset (i64).
    pub(crate) const BASE_OFFSET: usize = 0;
    /// Offset of the batch length (i32): the bytes after it.
    pub(crate) const LENGTH: usize = 8;
    /// Bytes before and including the length field (`LOG_OVERHEAD`); the same for magic 0/1.
    pub(crate) const LOG_OVERHEAD: usize = 12;
    pub(crate) const PARTITION_LEADER_EPOCH: usize = 12;
    /// Offset of the magic byte, at the same place in every format.
    pub(crate) const MAGIC: usize = 16;
    pub(crate) const CRC: usize = 17;
    /// The CRC covers everything from the attributes on.
    pub(crate) const ATTRIBUTES: usize = 21;
    pub(crate) const LAST_OFFSET_DELTA: usize = 23;
    pub(crate) const BASE_TIMESTAMP: usize = 27;
    pub(crate) const MAX_TIMESTAMP: usize = 35;
    pub(crate) const PRODUCER_ID: usize = 43;
    pub(crate) const PRODUCER_EPOCH: usize = 51;
    pub(crate) const BASE_SEQUENCE: usize = 53;
    pub(crate) const RECORD_COUNT: usize = 57;
    /// The header's size (`RECORD_BATCH_OVERHEAD`): the records start here.
    pub(crate) const HEADER_LEN: usize = 61;

    /// Attribute bits.
    pub(crate) const COMPRESSION_MASK: i16 = 0x07;
    pub(crate) const TIMESTAMP_TYPE: i16 = 0x08;
    pub(crate) const TRANSACTIONAL: i16 = 0x10;
    pub(crate) const CONTROL: i16 = 0x20;
    /// KIP-534: the base timestamp is the delete horizon of a compacted batch.
    pub(crate) const DELETE_HORIZON: i16 = 0x40;

    /// The smallest record: a length, attributes, timestamp delta, offset delta, key length,
    /// value length and header count, each at least one byte.
    pub(crate) const MIN_RECORD_LEN: usize = 7;
}
