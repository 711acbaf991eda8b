//! Compression codecs of record batches, every decompression bounded by a cap.
//!
//! Kafka compresses a whole batch (magic 2: the records section; magic 0 and 1: the value of a
//! wrapper message) with one of four codecs, named by the low three bits of the attributes:
//! gzip, snappy, lz4 and zstd. This module compresses and decompresses such payloads.
//!
//! Decompression is where a hostile or broken peer can make a consumer allocate without limit
//! (a few kilobytes of zstd or gzip can expand to gigabytes), so every call takes a cap on the
//! decompressed size and fails with [`CompressionError::TooLarge`] once the output would pass it.
//! The output buffer never grows past `cap + 1` bytes, and no length read from the payload is
//! used to allocate before it has been checked against the cap (and, for snappy, against what
//! the compressed bytes present can expand to).
//!
//! ```
//! use kcon_codec::compression::{compress, decompress, Compression};
//!
//! let data = b"hello hello hello hello".repeat(10);
//! let packed = compress(Compression::Zstd, &data).unwrap();
//! assert_eq!(decompress(Compression::Zstd, &packed, 1 << 20).unwrap(), data);
//! // The same payload with a cap below its size is refused.
//! assert!(decompress(Compression::Zstd, &packed, 100).is_err());
//! ```

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};

use bytes::Bytes;

use crate::error::BatchErrorKind;

mod lz4;
pub(crate) mod pool;

pub use pool::{FreeListShare, free_list_usage};

/// The default cap on the decompressed size of one batch: 64 MiB.
///
/// Large enough for any batch a broker accepts with its default `message.max.bytes` (1 MiB
/// compressed) at a ratio of 64, which well-compressible JSON rarely exceeds.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// A compression codec, as numbered in the low three bits of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (0).
    #[default]
    None,
    /// gzip (1): RFC 1952 members, as `java.util.zip.GZIPOutputStream` writes them.
    Gzip,
    /// snappy (2): either a raw snappy block or the xerial framing of `snappy-java`.
    Snappy,
    /// lz4 (3): the LZ4 frame format (KIP-57).
    Lz4,
    /// zstd (4): a zstd frame (KIP-110), magic 2 only.
    Zstd,
}

impl Compression {
    /// The codec with this id (the attributes' low three bits), if any.
    pub fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The codec's id, as written in the attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec's name as the Kafka configuration spells it (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a payload could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompressionError {
    /// The decompressed data would exceed the cap (or, for zstd, the frame needs a window
    /// larger than the cap). Nothing larger than `cap + 1` bytes was allocated.
    TooLarge {
        /// The codec.
        codec: Compression,
        /// The cap in bytes.
        cap: usize,
    },
    /// The compressed data is malformed.
    Corrupt {
        /// The codec.
        codec: Compression,
        /// What the decompressor reported.
        reason: String,
    },
    /// Compressing failed (the codec reported an error; not expected in practice).
    Compress {
        /// The codec.
        codec: Compression,
        /// What the compressor reported.
        reason: String,
    },
}

impl fmt::Display for CompressionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionError::TooLarge { codec, cap } => {
                write!(
                    f,
                    "{codec} data decompresses to more than the {cap}-byte cap"
                )
            }
            CompressionError::Corrupt { codec, reason } => {
                write!(f, "{codec} decompression failed: {reason}")
            }
            CompressionError::Compress { codec, reason } => {
                write!(f, "{codec} compression failed: {reason}")
            }
        }
    }
}

impl std::error::Error for CompressionError {}

impl From<CompressionError> for BatchErrorKind {
    fn from(e: CompressionError) -> Self {
        match e {
            CompressionError::TooLarge { codec, cap } => BatchErrorKind::DecompressedTooLarge {
                codec: codec.name(),
                cap,
            },
            CompressionError::Corrupt { codec, reason }
            | CompressionError::Compress { codec, reason } => BatchErrorKind::Decompression {
                codec: codec.name(),
                reason,
            },
        }
    }
}

/// Decompresses `input`, refusing output larger than `cap` bytes.
///
/// [`Compression::None`] returns a copy of the input (still bounded by the cap). Snappy input
/// in the xerial framing (it starts with `\x82SNAPPY\x00`) and raw snappy are both accepted, as
/// the Java client's `SnappyInputStream` accepts both. The LZ4 frame header checksum is
/// verified; use the record decoder for magic-0 messages, whose checksum old clients computed
/// wrongly.
///
/// ```
/// use kcon_codec::compression::{compress, decompress, Compression, CompressionError};
///
/// let zeros = vec![0u8; 1 << 20];
/// let bomb = compress(Compression::Gzip, &zeros).unwrap();
/// assert!(matches!(
///     decompress(Compression::Gzip, &bomb, 4096),
///     Err(CompressionError::TooLarge { .. })
/// ));
/// ```
pub fn decompress(
    codec: Compression,
    input: &[u8],
    cap: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    decompress_into(codec, input, cap, Lz4HeaderChecksum::Verify, &mut out)?;
    Ok(out)
}

/// Whether an LZ4 frame's header checksum byte is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lz4HeaderChecksum {
    /// Checked, as the LZ4 frame format requires.
    Verify,
    /// Not checked: magic-0 messages. Kafka before 0.10 (KAFKA-3160) computed the checksum over
    /// the magic number too; the Java client's `KafkaLZ4BlockInputStream` is built with
    /// `ignoreFlagDescriptorChecksum` for magic 0, and so is this decoder.
    Ignore,
}

/// Decompresses `input` into `out` (cleared first), bounded by `cap`. On error `out` holds
/// part of the output; its capacity is never more than `cap + 1` bytes (the bomb tests check
/// exactly that).
pub(crate) fn decompress_into(
    codec: Compression,
    input: &[u8],
    cap: usize,
    lz4_checksum: Lz4HeaderChecksum,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    out.clear();
    let len = decompress_over(codec, input, cap, lz4_checksum, out)?;
    out.truncate(len);
    Ok(())
}

/// Decompresses `input` into a buffer of the process-wide pool (see [`pool`]): the result is
/// shared, and the buffer goes back to the pool once every `Bytes` sliced from it is dropped.
/// Also returns the bytes of the buffer the result holds on to, which may be more than the
/// output when the buffer was larger from an earlier batch.
pub(crate) fn decompress_pooled(
    codec: Compression,
    input: &[u8],
    cap: usize,
    lz4_checksum: Lz4HeaderChecksum,
) -> Result<(Bytes, usize), CompressionError> {
    let mut buf = pool::POOL.take(cap.saturating_add(1));
    match decompress_over(codec, input, cap, lz4_checksum, &mut buf) {
        Ok(len) => {
            let held = buf.capacity();
            Ok((pool::POOL.share(buf, len), held))
        }
        Err(e) => {
            pool::POOL.give_back(buf);
            Err(e)
        }
    }
}

/// Decompresses `input` over the front of `out`, bounded by `cap`, and returns the output's
/// length. `out`'s bytes are overwritten, not cleared first, and its length is used as room
/// before it grows (lz4, gzip and zstd; snappy clears it), so a buffer reused from an earlier
/// batch costs no zero-filling. A buffer longer than `cap + 1` is cut to that first.
fn decompress_over(
    codec: Compression,
    input: &[u8],
    cap: usize,
    lz4_checksum: Lz4HeaderChecksum,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    out.truncate(cap.saturating_add(1));
    // The first guess at the output size comes from the compressed size, which is bytes present,
    // never from a length the payload declares. 4x is a typical ratio for the text payloads
    // Kafka carries; the buffer doubles from there up to the cap.
    let hint = input.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if input.len() > cap {
                return Err(CompressionError::TooLarge { codec, cap });
            }
            out.clear();
            out.extend_from_slice(input);
            Ok(out.len())
        }
        Compression::Gzip => {
            // `MultiGzDecoder`: Java's `GZIPInputStream` also reads concatenated members.
            let reader = flate2::bufread::MultiGzDecoder::new(input);
            read_bounded(reader, out, hint, cap, codec)
        }
        Compression::Snappy => {
            out.clear();
            snappy_decompress(input, cap, out)?;
            Ok(out.len())
        }
        Compression::Lz4 => lz4::decompress(input, cap, lz4_checksum, hint, out),
        Compression::Zstd => zstd_decompress(input, cap, out),
    }
}

/// The smallest buffer a streaming decode starts with.
const MIN_BUFFER: usize = 4096;

/// Readies `out` as room for a streaming decode bounded by `cap`: cut to `cap + 1` bytes, and
/// at least `hint` long (at least [`MIN_BUFFER`], at most `cap + 1`), keeping what it holds.
fn start_room(out: &mut Vec<u8>, hint: usize, cap: usize) {
    let limit = cap.saturating_add(1);
    out.truncate(limit);
    let first = hint.max(MIN_BUFFER).min(limit);
    if out.len() < first {
        out.reserve_exact(first - out.len());
        out.resize(first, 0);
    }
}

/// Grows `out` when the output fills it (`filled == out.len()`): to double, each step
/// reserved exactly, never past `cap + 1` bytes. A buffer already full at `cap + 1` means the
/// output passed the cap.
fn more_room(
    out: &mut Vec<u8>,
    filled: usize,
    codec: Compression,
    cap: usize,
) -> Result<(), CompressionError> {
    if filled < out.len() {
        return Ok(());
    }
    let limit = cap.saturating_add(1);
    if filled >= limit {
        return Err(CompressionError::TooLarge { codec, cap });
    }
    // `filled < limit` here, so the buffer grows by at least a byte.
    let grown = filled.saturating_mul(2).max(MIN_BUFFER).min(limit);
    out.reserve_exact(grown - filled);
    out.resize(grown, 0);
    Ok(())
}

/// Reads `reader` to its end over the front of `out`, failing once more than `cap` bytes come
/// out; returns how many came out.
///
/// `out`'s length is used as room first (its bytes are overwritten); when that is short it
/// grows to `hint` (clamped to `cap + 1`) and doubles from there, each step reserved exactly,
/// so its capacity never passes `cap + 1`: reading one byte more than the cap is how the cap
/// is detected (`Read::take(cap + 1)` by hand, because `read_to_end` grows the buffer by its
/// own policy, up to twice what it holds).
fn read_bounded<R: Read>(
    mut reader: R,
    out: &mut Vec<u8>,
    hint: usize,
    cap: usize,
    codec: Compression,
) -> Result<usize, CompressionError> {
    start_room(out, hint, cap);
    let mut filled = 0;
    loop {
        more_room(out, filled, codec, cap)?;
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            // `min`: a reader claiming more than the slice it was given must not move `filled`
            // past the buffer.
            Ok(n) => filled += n.min(out.len() - filled),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CompressionError::Corrupt {
                    codec,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(filled)
}

/// The magic of the xerial snappy framing (`snappy-java`'s `SnappyCodec.MAGIC_HEADER`).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic, then the two i32 version fields (`version`, `compatible version`).
const XERIAL_HEADER_LEN: usize = 16;
/// Upper bound of snappy's expansion: the best element is a 3-byte copy of 64 bytes (ratio
/// 21.3), so no valid block decompresses to more than 22 times its size. A declared length
/// beyond that is a lie, refused before anything is allocated for it.
const SNAPPY_MAX_RATIO: usize = 22;

fn snappy_decompress(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    if input.starts_with(XERIAL_MAGIC) {
        // snappy-java's `SnappyOutputStream`, which the Java producer uses: a header, then
        // blocks of a big-endian i32 length and a raw snappy block.
        let mut rest = input
            .get(XERIAL_HEADER_LEN..)
            .ok_or_else(|| CompressionError::Corrupt {
                codec,
                reason: "xerial snappy header is truncated".into(),
            })?;
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(corrupt_snappy("xerial block length is truncated"));
            };
            let len = i32::from_be_bytes(*len);
            let len =
                usize::try_from(len).map_err(|_| corrupt_snappy("negative xerial block length"))?;
            let (block, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| corrupt_snappy("xerial block runs past the end"))?;
            snappy_raw_append(block, cap, out)?;
            rest = tail;
        }
        Ok(())
    } else {
        snappy_raw_append(input, cap, out)
    }
}

fn corrupt_snappy(reason: &str) -> CompressionError {
    CompressionError::Corrupt {
        codec: Compression::Snappy,
        reason: reason.into(),
    }
}

/// Appends the decompression of one raw snappy block to `out`, checking the length the block
/// declares against the cap and against the block's own size before allocating it.
fn snappy_raw_append(block: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    let declared = snap::raw::decompress_len(block).map_err(|e| CompressionError::Corrupt {
        codec,
        reason: e.to_string(),
    })?;
    if declared > cap.saturating_sub(out.len()) {
        return Err(CompressionError::TooLarge { codec, cap });
    }
    if declared > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
        return Err(corrupt_snappy(
            "declared length exceeds what the block can hold",
        ));
    }
    let start = out.len();
    let want = start + declared;
    if want > out.capacity() {
        // Doubling for amortized growth over many xerial blocks, but never past the cap
        // (`resize` alone could double past it).
        let target = out.capacity().saturating_mul(2).max(want).min(cap);
        out.reserve_exact(target - start);
    }
    out.resize(want, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| CompressionError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    out.truncate(start + n);
    Ok(())
}

/// The zstd frame magic number, little-endian on the wire.
const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
/// zstd's smallest and largest window logs (`ZSTD_WINDOWLOG_ABSOLUTEMIN`, `ZSTD_WINDOWLOG_MAX_64`).
const ZSTD_WINDOW_LOG_MIN: u32 = 10;
const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// The window size the first zstd frame of `input` declares (RFC 8878 3.1.1.1), when its
/// header is there to read: the decoder allocates about that much.
fn zstd_window_size(input: &[u8]) -> Option<u64> {
    if !input.starts_with(&ZSTD_MAGIC) {
        return None;
    }
    let fhd = *input.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *input.get(5)?;
        let window_log = 10 + u32::from(wd >> 3);
        let base = 1u64 << window_log;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // A single-segment frame's window is its content size, which follows the dictionary id.
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1, 2, 4, 8][usize::from(fhd >> 6)];
    let start = 5 + dict_len;
    let field = input.get(start..start + fcs_len)?;
    let mut le = [0u8; 8];
    le[..fcs_len].copy_from_slice(field);
    let fcs = u64::from_le_bytes(le);
    // A 2-byte content size is stored minus 256.
    Some(if fcs_len == 2 { fcs + 256 } else { fcs })
}

/// Above this size a thread's zstd decompression context is freed after use instead of kept:
/// a frame with a large window (up to the cap) leaves its window buffer in the context.
const ZSTD_KEEP_CONTEXT_BYTES: usize = 16 << 20;

thread_local! {
    /// Each thread's zstd decompression context, reused from batch to batch: creating one per
    /// batch allocated its window buffers anew each time (and paid their page faults).
    static ZSTD_CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { RefCell::new(None) };
}

fn zstd_decompress(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<usize, CompressionError> {
    let codec = Compression::Zstd;
    // A frame whose window is larger than the cap would make the decoder allocate that window
    // before producing a byte: refused as too large, since a larger cap is what would admit it.
    if zstd_window_size(input).is_some_and(|w| w > cap as u64) {
        return Err(CompressionError::TooLarge { codec, cap });
    }
    ZSTD_CONTEXT.with(|slot| {
        let mut slot = slot.borrow_mut();
        let mut context = match slot.take() {
            Some(context) => context,
            None => {
                zstd::zstd_safe::DCtx::try_create().ok_or_else(|| CompressionError::Corrupt {
                    codec,
                    reason: "zstd could not allocate a decompression context".into(),
                })?
            }
        };
        let result = zstd_stream(&mut context, input, cap, out);
        if context.sizeof() <= ZSTD_KEEP_CONTEXT_BYTES {
            *slot = Some(context);
        }
        result
    })
}

/// Decompresses every zstd frame of `input` with `context`, over the front of `out` (its
/// length used as room first, as in [`read_bounded`], growing the same way up to `cap + 1`).
fn zstd_stream(
    context: &mut zstd::zstd_safe::DCtx<'static>,
    input: &[u8],
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    use zstd::zstd_safe::{DParameter, InBuffer, OutBuffer, ResetDirective};
    let codec = Compression::Zstd;
    let corrupt = |code: usize| CompressionError::Corrupt {
        codec,
        reason: zstd::zstd_safe::get_error_name(code).to_string(),
    };
    context
        .reset(ResetDirective::SessionAndParameters)
        .map_err(corrupt)?;
    // The decoder's own limit, for whatever frames follow the first: the smallest power of
    // two at least the cap, so a window within the cap is accepted and none past twice it is.
    let window_log = usize::BITS - cap.saturating_sub(1).leading_zeros();
    context
        .set_parameter(DParameter::WindowLogMax(
            window_log.clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX),
        ))
        .map_err(corrupt)?;
    start_room(out, input.len().saturating_mul(4), cap);
    let mut source = InBuffer::around(input);
    let mut filled = 0;
    loop {
        more_room(out, filled, codec, cap)?;
        let mut dest = OutBuffer::around(&mut out[filled..]);
        let hint = context
            .decompress_stream(&mut dest, &mut source)
            .map_err(corrupt)?;
        filled += dest.pos();
        if filled > cap {
            return Err(CompressionError::TooLarge { codec, cap });
        }
        let input_left = source.pos() < input.len();
        if hint == 0 {
            // A frame ended (and is wholly written out); another may follow.
            if !input_left {
                return Ok(filled);
            }
        } else if !input_left && filled < out.len() {
            // The frame wants more input, there is none, and it had room to write.
            return Err(CompressionError::Corrupt {
                codec,
                reason: "zstd frame cut short".into(),
            });
        }
    }
}

/// Compresses `input` as a Kafka producer would: gzip at the default level, snappy in the
/// xerial framing (like the Java client), lz4 as an LZ4 frame of independent 64 KiB blocks
/// (like `KafkaLZ4BlockOutputStream`), zstd at level 3 (the Java client's default).
///
/// [`Compression::None`] returns a copy.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    compress_with(codec, input, false)
}

/// [`compress`], appending to `out`: an LZ4 frame is written straight into it, block by
/// block, where the other codecs' output is copied in.
pub(crate) fn compress_onto(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    if codec == Compression::Lz4 {
        lz4::compress_frame_into(input, out);
    } else {
        out.extend_from_slice(&compress(codec, input)?);
    }
    Ok(())
}

/// [`compress`], with the magic-0 LZ4 header checksum bug reproduced when `broken_lz4_checksum`
/// is set (for the legacy test encoder).
pub(crate) fn compress_with(
    codec: Compression,
    input: &[u8],
    broken_lz4_checksum: bool,
) -> Result<Vec<u8>, CompressionError> {
    let failed = |e: &dyn fmt::Display| CompressionError::Compress {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2 + 64),
                flate2::Compression::default(),
            );
            enc.write_all(input).map_err(|e| failed(&e))?;
            enc.finish().map_err(|e| failed(&e))
        }
        Compression::Snappy => Ok(snappy_xerial_compress(input)),
        Compression::Lz4 => {
            let mut out = Vec::new();
            lz4::compress_frame_into(input, &mut out);
            if broken_lz4_checksum {
                // KAFKA-3160: the checksum of Kafka before 0.10 covered the magic number too.
                if let Some(hc_at) = lz4::header_len(&out) {
                    out[hc_at] = lz4::header_checksum(&out[..hc_at]);
                }
            }
            Ok(out)
        }
        Compression::Zstd => zstd::bulk::compress(input, 3).map_err(|e| failed(&e)),
    }
}

/// The block size of snappy-java's `SnappyOutputStream` (`DEFAULT_BLOCK_SIZE`, 32 KiB).
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;

fn snappy_xerial_compress(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + input.len() / 2 + 64);
    out.extend_from_slice(XERIAL_MAGIC);
    // version 1, compatible version 1, as snappy-java writes.
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK_SIZE)];
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        // A chunk of at most 32 KiB always fits `max_compress_len` of the block size, and
        // snappy only fails on inputs over 4 GiB, so this cannot fail; an error would leave an
        // empty block, which the decoder refuses rather than misreads.
        let n = encoder.compress(chunk, &mut block).unwrap_or(0);
        out.extend_from_slice(&(n as i32).to_be_bytes());
        out.extend_from_slice(&block[..n]);
    }
    out
}

/// Raw snappy (no framing), as librdkafka writes it; for tests of the raw path.
#[cfg(test)]
pub(crate) fn snappy_raw_compress(input: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(input)
        .unwrap_or_default()
}

/// A decompression bomb for tests: `mib` MiB of zeros, built from one compressed MiB so the
/// test neither holds the plain data nor spends time compressing it: repeated gzip members and
/// zstd frames (both codecs read concatenations), repeated xerial snappy blocks, and for lz4 one
/// frame of repeated 1 MiB blocks (Kafka's lz4 reads a single frame).
#[cfg(test)]
pub(crate) fn test_bomb(codec: Compression, mib: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    match codec {
        Compression::Snappy => {
            out.extend_from_slice(&snappy_xerial_compress(&[])[..XERIAL_HEADER_LEN]);
            let mut unit = Vec::new();
            for chunk in zeros.chunks(XERIAL_BLOCK_SIZE) {
                let block = snap::raw::Encoder::new()
                    .compress_vec(chunk)
                    .unwrap_or_default();
                unit.extend_from_slice(&(block.len() as i32).to_be_bytes());
                unit.extend_from_slice(&block);
            }
            for _ in 0..mib {
                out.extend_from_slice(&unit);
            }
        }
        Compression::Lz4 => {
            // FLG: version 01, independent blocks; BD: 1 MiB maximum block size.
            let descriptor = [0x60, 0x60];
            out.extend_from_slice(&lz4::FRAME_MAGIC);
            out.extend_from_slice(&descriptor);
            out.push(lz4::header_checksum(&descriptor));
            let block = lz4_flex::block::compress(&zeros);
            for _ in 0..mib {
                out.extend_from_slice(&(block.len() as u32).to_le_bytes());
                out.extend_from_slice(&block);
            }
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        _ => {
            let unit = compress(codec, &zeros).unwrap_or_default();
            for _ in 0..mib {
                out.extend_from_slice(&unit);
            }
        }
    }
    out
}

/// Entry point of a decompression fuzz target: every codec over the same bytes, with a small
/// cap; must never panic nor allocate past the cap.
#[doc(hidden)]
#[cfg(any(feature = "fuzzing", test))]
pub fn fuzz_decompress(data: &[u8]) {
    const CAP: usize = 1 << 20;
    for id in 0..=4 {
        if let Some(codec) = Compression::from_id(id) {
            for checksum in [Lz4HeaderChecksum::Verify, Lz4HeaderChecksum::Ignore] {
                let mut out = Vec::new();
                let r = decompress_into(codec, data, CAP, checksum, &mut out);
                assert!(
                    out.capacity() <= CAP + 1,
                    "{codec}: buffer grew past the cap"
                );
                if let Ok(()) = r {
                    assert!(out.len() <= CAP);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn ids_round_trip() {
        for c in ALL {
            assert_eq!(Compression::from_id(c.id()), Some(c));
        }
        for id in 5..=7 {
            assert_eq!(Compression::from_id(id), None);
        }
    }

    /// Found by the record_batches fuzz target: a frame header declaring 4 MiB blocks once made
    /// the decoder allocate 8 MiB of block buffers for a 1 KiB input under a 1 MiB cap. Blocks
    /// are now decompressed straight into the output, which never passes the cap.
    #[test]
    fn an_lz4_frame_of_large_blocks_is_read_within_the_cap() {
        let data = b"four mebibyte blocks ".repeat(2000);
        let info = lz4_flex::frame::FrameInfo::new().block_size(lz4_flex::frame::BlockSize::Max4MB);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&data).unwrap();
        let frame = enc.finish().unwrap();
        assert_eq!(frame[5], 0x70, "BD declares 4 MiB blocks");
        let mut out = Vec::new();
        decompress_into(
            Compression::Lz4,
            &frame,
            1 << 20,
            Lz4HeaderChecksum::Verify,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, data);
        assert!(out.capacity() <= 1 << 20);
        // Past a cap below its content, it is too large.
        assert_eq!(
            decompress(Compression::Lz4, &frame, 1000),
            Err(CompressionError::TooLarge {
                codec: Compression::Lz4,
                cap: 1000
            })
        );
        // The legacy LZ4 format (8 MiB blocks), found by the same target right after, and a
        // skippable frame in front of a real one, are not Kafka's format: refused.
        let legacy = [0x02, 0x21, 0x4c, 0x18, 0, 0, 0, 0];
        assert!(matches!(
            decompress(Compression::Lz4, &legacy, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
        skippable.extend(&frame);
        assert!(matches!(
            decompress(Compression::Lz4, &skippable, 1 << 20),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn decompression_bombs_hit_the_cap_without_allocating_past_it() {
        // 100 MiB of zeros against a 1 MiB cap.
        const MIB: usize = 100;
        const CAP: usize = 1 << 20;
        for codec in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Lz4,
            Compression::Snappy,
        ] {
            let packed = test_bomb(codec, MIB);
            let mut out = Vec::new();
            let r = decompress_into(codec, &packed, CAP, Lz4HeaderChecksum::Verify, &mut out);
            assert_eq!(
                r,
                Err(CompressionError::TooLarge { codec, cap: CAP }),
                "{codec}"
            );
            assert!(
                out.capacity() <= CAP + 1,
                "{codec}: capacity {}",
                out.capacity()
            );
            // And a smaller one is accepted under a cap that fits it, refused one byte below.
            let small = test_bomb(codec, 3);
            assert_eq!(
                decompress(codec, &small, 3 * CAP).unwrap().len(),
                3 * CAP,
                "{codec}"
            );
            assert!(decompress(codec, &small, 3 * CAP - 1).is_err(), "{codec}");
        }
    }

    #[test]
    fn raw_snappy_declared_length_is_checked_before_allocating() {
        // A varint declaring 100 MB, then nothing.
        let mut lie = Vec::new();
        crate::wire::put_uvarint(&mut lie, 100_000_000);
        lie.push(0);
        assert!(matches!(
            decompress(Compression::Snappy, &lie, 1 << 20),
            Err(CompressionError::TooLarge { .. })
        ));
        // Within the cap but more than ten bytes can expand to: corrupt, not allocated.
        assert!(matches!(
            decompress(Compression::Snappy, &lie, usize::MAX),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn zstd_window_larger_than_the_cap_is_refused() {
        let data = vec![7u8; 300_000];
        let packed = zstd::bulk::compress(&data, 3).unwrap();
        assert!(matches!(
            decompress(Compression::Zstd, &packed, 100_000),
            Err(CompressionError::TooLarge { .. })
        ));
        assert_eq!(
            decompress(Compression::Zstd, &packed, 300_000).unwrap(),
            data
        );
    }

    #[test]
    fn raw_and_xerial_snappy_both_decode() {
        let data = b"abcdefgh".repeat(20_000);
        let raw = snappy_raw_compress(&data);
        let xerial = snappy_xerial_compress(&data);
        assert!(xerial.starts_with(XERIAL_MAGIC));
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            data
        );
        assert_eq!(
            decompress(Compression::Snappy, &xerial, 1 << 20).unwrap(),
            data
        );
        // A xerial stream of zero blocks is empty data.
        assert_eq!(
            decompress(Compression::Snappy, &xerial[..XERIAL_HEADER_LEN], 10).unwrap(),
            b""
        );
    }

    #[test]
    fn lz4_broken_header_checksum_is_accepted_only_when_ignored() {
        let data = b"old kafka lz4".repeat(100);
        let broken = compress_with(Compression::Lz4, &data, true).unwrap();
        let good = compress(Compression::Lz4, &data).unwrap();
        assert_ne!(broken, good);
        assert!(decompress(Compression::Lz4, &broken, 1 << 20).is_err());
        for packed in [&broken, &good] {
            let mut out = Vec::new();
            decompress_into(
                Compression::Lz4,
                packed,
                1 << 20,
                Lz4HeaderChecksum::Ignore,
                &mut out,
            )
            .unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        for codec in ALL {
            if codec == Compression::None {
                continue;
            }
            assert!(
                decompress(codec, b"definitely not compressed", 1 << 20).is_err(),
                "{codec}"
            );
            // Empty input: whatever the codec says, it must not panic.
            let _ = decompress(codec, b"", 1 << 20);
        }
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000), codec in 0u8..5) {
            let codec = Compression::from_id(codec).unwrap();
            let packed = compress(codec, &data).unwrap();
            prop_assert_eq!(&decompress(codec, &packed, data.len()).unwrap(), &data);
            if !data.is_empty() {
                let r = decompress(codec, &packed, data.len() - 1);
                prop_assert_eq!(r, Err(CompressionError::TooLarge { codec, cap: data.len() - 1 }));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz_decompress(&data);
        }
    }
}
