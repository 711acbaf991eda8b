//! Magic 0 and 1 message sets (the formats before KIP-98): decoding, and a small encoder for
//! tests.
//!
//! An entry is `offset i64, size i32`, then a message: `crc u32` (IEEE CRC-32 of the rest),
//! `magic i8`, `attributes i8`, `timestamp i64` (magic 1 only), `key bytes`, `value bytes`
//! (i32 length, -1 for null). A message whose attributes name a codec is a wrapper: its value
//! is a compressed message set (Java's `AbstractLegacyRecordBatch` and `LegacyRecord`).

use bytes::{BufMut, Bytes};

use super::builder::EncodeError;
use super::{DecodeOptions, TimestampType, v2};
use crate::compression::{self, Compression, Lz4HeaderChecksum};
use crate::error::BatchErrorKind;
use crate::wire::{Reader, WireError};

/// The smallest message: crc, magic, attributes, key length, value length
/// (`LegacyRecord.RECORD_OVERHEAD_V0`).
pub(crate) const MIN_MESSAGE_SIZE_V0: usize = 14;
/// Where the message starts in an entry: after the offset and size.
const MESSAGE_START: usize = v2::LOG_OVERHEAD;
/// The CRC covers the message from its magic byte on.
const CRC_START: usize = v2::MAGIC;
/// Attribute bit 3: log-append time (magic 1).
const TIMESTAMP_TYPE: i8 = 0x08;
/// The codec bits.
const COMPRESSION_MASK: i8 = 0x07;

/// One parsed message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub(crate) offset: i64,
    pub(crate) crc: u32,
    pub(crate) magic: i8,
    pub(crate) attributes: i8,
    /// -1 for magic 0.
    pub(crate) timestamp: i64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
}

fn overrun(field: &'static str) -> impl Fn(WireError) -> BatchErrorKind {
    move |_| BatchErrorKind::RecordsOverrun { field }
}

/// A length-prefixed byte string; a negative length is null, as `Utils.sizeDelimited` reads it.
fn read_bytes<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
) -> Result<Option<&'a [u8]>, BatchErrorKind> {
    let n = r.i32().map_err(overrun(field))?;
    match usize::try_from(n) {
        Ok(n) => r.take(n).map(Some).map_err(overrun(field)),
        Err(_) => Ok(None),
    }
}

/// Parses the entry filling all of `entry` (offset, size and message); the caller has sliced
/// it to the size it declares. Its key and value must fill the message exactly.
pub(crate) fn parse_entry(entry: &[u8]) -> Result<Message<'_>, BatchErrorKind> {
    let mut r = Reader::new(entry);
    let offset = r.i64().map_err(overrun("message"))?;
    r.skip(4).map_err(overrun("message"))?;
    let crc = r.u32().map_err(overrun("message"))?;
    let magic = r.i8().map_err(overrun("message"))?;
    let attributes = r.i8().map_err(overrun("message"))?;
    let timestamp = match magic {
        0 => -1,
        1 => r.i64().map_err(overrun("message timestamp"))?,
        m => return Err(BatchErrorKind::UnknownMagic(m)),
    };
    let key = read_bytes(&mut r, "message key")?;
    let value = read_bytes(&mut r, "message value")?;
    if r.remaining() != 0 {
        return Err(BatchErrorKind::TrailingBytes {
            remaining: r.remaining(),
        });
    }
    Ok(Message {
        offset,
        crc,
        magic,
        attributes,
        timestamp,
        key,
        value,
    })
}

/// Checks an entry's stored CRC against its bytes. Done before the message is parsed, as
/// Java's `LegacyRecord.ensureValid` does, so a flipped length reads as the CRC error it is.
fn check_crc(entry: &[u8]) -> Result<(), BatchErrorKind> {
    let stored = u32::from_be_bytes(
        entry
            .get(MESSAGE_START..CRC_START)
            .and_then(|s| s.try_into().ok())
            .ok_or(BatchErrorKind::RecordsOverrun { field: "message" })?,
    );
    let computed = crc32fast::hash(entry.get(CRC_START..).unwrap_or_default());
    if computed == stored {
        Ok(())
    } else {
        Err(BatchErrorKind::CrcMismatch { stored, computed })
    }
}

/// The entry at `pos` of an inner message set, `None` at its end. Unlike the outer walk, a
/// cut entry is corruption here: the set was decompressed whole.
fn split_entry(set: &[u8], pos: usize) -> Result<Option<&[u8]>, BatchErrorKind> {
    let rest = set.get(pos..).unwrap_or_default();
    if rest.is_empty() {
        return Ok(None);
    }
    let Some(head) = rest.first_chunk::<{ v2::LOG_OVERHEAD }>() else {
        return Err(BatchErrorKind::RecordsOverrun {
            field: "inner message",
        });
    };
    let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let total = usize::try_from(size)
        .ok()
        .filter(|&s| s >= MIN_MESSAGE_SIZE_V0)
        .map(|s| s + MESSAGE_START)
        .ok_or(BatchErrorKind::InvalidLength {
            field: "message size",
            value: i64::from(size),
        })?;
    rest.get(..total)
        .map(Some)
        .ok_or(BatchErrorKind::RecordsOverrun {
            field: "inner message",
        })
}

/// How the messages of a legacy batch map to records; `Copy`, kept in the records iterator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk {
    /// Added to each message's offset: 0 for absolute offsets, `wrapper offset - last inner
    /// offset` for the relative inner offsets of magic 1 (KIP-31).
    adjust: i64,
    /// The wrapper's timestamp, when it overrides the inner ones (log-append time).
    timestamp: Option<i64>,
}

/// A record read by [`Walk::next`].
pub(crate) struct WalkedMessage<'a> {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) attributes: i8,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
}

impl Walk {
    /// The message at `*pos` of `set`, moving `pos` past it. The set was checked whole when the
    /// batch was read, so this fails only if that check and this walk disagree.
    pub(crate) fn next<'a>(
        self,
        set: &'a [u8],
        pos: &mut usize,
    ) -> Result<WalkedMessage<'a>, BatchErrorKind> {
        let entry = split_entry(set, *pos)?.ok_or(BatchErrorKind::RecordsOverrun {
            field: "inner message",
        })?;
        let m = parse_entry(entry)?;
        *pos += entry.len();
        Ok(WalkedMessage {
            offset: self.adjust.wrapping_add(m.offset),
            timestamp: self.timestamp.unwrap_or(m.timestamp),
            attributes: m.attributes,
            key: m.key,
            value: m.value,
        })
    }
}

/// A decoded magic 0/1 entry, as the batch needs it.
pub(crate) struct Decoded {
    /// The message set the records are read from: the entry itself when uncompressed, the
    /// decompressed value of a wrapper.
    pub(crate) data: Bytes,
    pub(crate) walk: Walk,
    pub(crate) count: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) crc: u32,
    pub(crate) attributes: i8,
    pub(crate) timestamp: i64,
    pub(crate) timestamp_type: TimestampType,
    pub(crate) compression: Compression,
}

/// Decodes the magic 0/1 entry that is all of `raw` (sliced to its declared size).
///
/// For a wrapper, the inner set is decompressed and checked whole here (offsets, magic, no
/// nested compression, CRCs), because the relative offsets of magic 1 need the last inner
/// offset before the first record can be given its offset; the Java client reads the inner set
/// whole for the same reason (`DeepRecordsIterator`).
pub(crate) fn decode(raw: &Bytes, opts: &DecodeOptions) -> Result<Decoded, BatchErrorKind> {
    if opts.verify_crc {
        check_crc(raw)?;
    }
    let m = parse_entry(raw)?;
    let timestamp_type = match (m.magic, m.attributes & TIMESTAMP_TYPE != 0) {
        (0, _) => TimestampType::NoTimestamp,
        (_, false) => TimestampType::CreateTime,
        (_, true) => TimestampType::LogAppendTime,
    };
    let codec_id = (m.attributes & COMPRESSION_MASK) as u8;
    let compression = match Compression::from_id(codec_id) {
        Some(Compression::Zstd) => {
            // KIP-110: zstd needs magic 2; Java's `DeepRecordsIterator` refuses it here too.
            return Err(BatchErrorKind::Other(
                "zstd compression in a magic 0 or 1 message",
            ));
        }
        Some(c) => c,
        None => return Err(BatchErrorKind::UnknownCompression(codec_id)),
    };
    if compression == Compression::None {
        return Ok(Decoded {
            data: raw.clone(),
            walk: Walk {
                adjust: 0,
                timestamp: None,
            },
            count: 1,
            base_offset: m.offset,
            last_offset: m.offset,
            crc: m.crc,
            attributes: m.attributes,
            timestamp: m.timestamp,
            timestamp_type,
            compression,
        });
    }

    let value = m.value.ok_or(BatchErrorKind::Other(
        "compressed wrapper message has a null value",
    ))?;
    let checksum = if m.magic == 0 {
        Lz4HeaderChecksum::Ignore
    } else {
        Lz4HeaderChecksum::Verify
    };
    let mut inner = Vec::new();
    compression::decompress_into(
        compression,
        value,
        opts.max_decompressed_bytes,
        checksum,
        &mut inner,
    )?;

    let mut pos = 0;
    let mut count: i32 = 0;
    let mut first = None;
    let mut last = 0;
    while let Some(entry) = split_entry(&inner, pos)? {
        // The magic first: it decides the layout the rest is parsed with.
        let magic = entry[v2::MAGIC] as i8;
        if magic != m.magic {
            return Err(BatchErrorKind::InnerMagicMismatch {
                wrapper: m.magic,
                inner: magic,
            });
        }
        if opts.verify_crc {
            check_crc(entry)?;
        }
        let im = parse_entry(entry)?;
        if im.attributes & COMPRESSION_MASK != 0 {
            return Err(BatchErrorKind::NestedCompression);
        }
        count = count.checked_add(1).ok_or(BatchErrorKind::Other(
            "too many messages in a compressed wrapper",
        ))?;
        first.get_or_insert(im.offset);
        last = im.offset;
        pos += entry.len();
    }
    let first = first.ok_or(BatchErrorKind::Other(
        "compressed wrapper message holds no messages",
    ))?;

    let (adjust, last_offset) = if m.magic == 1 {
        if m.offset == 0 {
            // Some librdkafka versions produce a wrapper offset of 0; the Java client then
            // takes the inner offsets as they are.
            (0, last)
        } else if m.offset < last {
            return Err(BatchErrorKind::Other(
                "wrapper offset is below its last inner offset",
            ));
        } else {
            (m.offset - last, m.offset)
        }
    } else {
        // Magic 0 inner offsets are absolute.
        (0, m.offset)
    };
    let timestamp = (timestamp_type == TimestampType::LogAppendTime).then_some(m.timestamp);
    Ok(Decoded {
        data: Bytes::from(inner),
        walk: Walk { adjust, timestamp },
        count,
        base_offset: adjust.wrapping_add(first),
        last_offset,
        crc: m.crc,
        attributes: m.attributes,
        timestamp: m.timestamp,
        timestamp_type,
        compression,
    })
}

/// A message for [`encode_legacy_message_set`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyMessage<'a> {
    /// Absolute offset.
    pub offset: i64,
    /// Create time (ignored for magic 0).
    pub timestamp: i64,
    /// Key; `None` for null.
    pub key: Option<&'a [u8]>,
    /// Value; `None` for null.
    pub value: Option<&'a [u8]>,
}

fn put_message(
    out: &mut Vec<u8>,
    offset: i64,
    magic: i8,
    attributes: i8,
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_i64(offset);
    out.put_i32(0);
    out.put_u32(0);
    out.put_i8(magic);
    out.put_i8(attributes);
    if magic == 1 {
        out.put_i64(timestamp);
    }
    for field in [key, value] {
        match field {
            Some(b) => {
                let len = i32::try_from(b.len()).map_err(|_| EncodeError::TooLarge {
                    field: "message key or value",
                })?;
                out.put_i32(len);
                out.put_slice(b);
            }
            None => out.put_i32(-1),
        }
    }
    let size = i32::try_from(out.len() - start - MESSAGE_START)
        .map_err(|_| EncodeError::TooLarge { field: "message" })?;
    out[start + 8..start + 12].copy_from_slice(&size.to_be_bytes());
    let crc = crc32fast::hash(&out[start + CRC_START..]);
    out[start + 12..start + 16].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Encodes a magic 0 or 1 message set, for tests and fixtures of the legacy decoder.
///
/// Uncompressed: one entry per message, at its offset. Compressed: one wrapper entry at the
/// last message's offset whose value is the compressed inner set, with relative inner offsets
/// for magic 1 (KIP-31: the first message's offset subtracted) and absolute ones for magic 0,
/// as the Java producer and broker wrote them. `log_append_time` (magic 1) sets attribute bit 3
/// and that timestamp on the outer messages. lz4 with magic 0 writes the header checksum the
/// way Kafka before 0.10 did (over the magic number too).
#[doc(hidden)]
pub fn encode_legacy_message_set(
    magic: i8,
    compression: Compression,
    log_append_time: Option<i64>,
    messages: &[LegacyMessage<'_>],
) -> Result<Bytes, EncodeError> {
    if !(0..=1).contains(&magic) {
        return Err(EncodeError::Unsupported("legacy magic must be 0 or 1"));
    }
    let lat = if magic == 1 { log_append_time } else { None };
    let outer_type = if lat.is_some() { TIMESTAMP_TYPE } else { 0 };
    let mut out = Vec::new();
    match compression {
        Compression::None => {
            for m in messages {
                let ts = lat.unwrap_or(m.timestamp);
                put_message(&mut out, m.offset, magic, outer_type, ts, m.key, m.value)?;
            }
        }
        Compression::Zstd => {
            return Err(EncodeError::Unsupported("zstd needs magic 2"));
        }
        codec => {
            let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
                return Err(EncodeError::Unsupported(
                    "a compressed wrapper needs messages",
                ));
            };
            let mut inner = Vec::new();
            for m in messages {
                let offset = if magic == 1 {
                    m.offset.wrapping_sub(first.offset)
                } else {
                    m.offset
                };
                put_message(&mut inner, offset, magic, 0, m.timestamp, m.key, m.value)?;
            }
            let packed = compression::compress_with(codec, &inner, magic == 0)
                .map_err(EncodeError::Compression)?;
            let max_ts = messages.iter().map(|m| m.timestamp).max().unwrap_or(-1);
            let attributes = outer_type | codec.id() as i8;
            put_message(
                &mut out,
                last.offset,
                magic,
                attributes,
                lat.unwrap_or(max_ts),
                None,
                Some(&packed),
            )?;
        }
    }
    Ok(Bytes::from(out))
}
