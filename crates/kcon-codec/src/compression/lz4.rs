//! The LZ4 frame format (KIP-57), read block by block straight into the output buffer, and
//! written block by block straight into the batch being built.
//!
//! Each block is decompressed by `lz4_flex`'s block decoder from the input slice into its place
//! in the output: no intermediate block buffers, no copies. What the frame declares is checked
//! as it is read: the version and reserved bits, the header checksum (unless it is ignored, for
//! magic-0 messages), each block's size against the declared maximum and its checksum when
//! present, the content size and the content checksum when present, and the end mark. Only
//! standard frames are read, one after another to the end of the input; the legacy LZ4 format,
//! skippable frames and frames with a dictionary id are not Kafka's and are refused.

use std::cell::RefCell;

use twox_hash::XxHash32;

use super::{Compression, CompressionError, Lz4HeaderChecksum};

/// The LZ4 frame magic number, little-endian on the wire.
pub(super) const FRAME_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();

// FLG, the first byte of the frame descriptor.
const FLG_VERSION_MASK: u8 = 0xc0;
const FLG_VERSION_01: u8 = 0x40;
const FLG_INDEPENDENT_BLOCKS: u8 = 0x20;
const FLG_BLOCK_CHECKSUMS: u8 = 0x10;
const FLG_CONTENT_SIZE: u8 = 0x08;
const FLG_CONTENT_CHECKSUM: u8 = 0x04;
const FLG_RESERVED: u8 = 0x02;
const FLG_DICT_ID: u8 = 0x01;
// BD, the second byte: bits 6-4 name the maximum block size, the others are reserved.
const BD_RESERVED: u8 = 0x8f;

/// The high bit of a block's size field: the block is stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;
/// How far back a match of a linked block may reach into the frame's earlier output.
const WINDOW: usize = 64 << 10;

/// Length of the frame header up to (not including) its checksum byte, when `input` starts
/// with a frame header and holds all of it.
pub(super) fn header_len(input: &[u8]) -> Option<usize> {
    if !input.starts_with(&FRAME_MAGIC) {
        return None;
    }
    let flg = *input.get(4)?;
    let mut len = 6;
    if flg & FLG_CONTENT_SIZE != 0 {
        len += 8;
    }
    if flg & FLG_DICT_ID != 0 {
        len += 4;
    }
    (input.len() > len).then_some(len)
}

/// The frame header checksum: the second byte of the xxHash32 of the descriptor (the header
/// without the magic number and without the checksum itself).
pub(super) fn header_checksum(descriptor: &[u8]) -> u8 {
    (XxHash32::oneshot(0, descriptor) >> 8) as u8
}

/// What a frame's header declares.
struct Header {
    /// Bytes of the header, checksum included.
    len: usize,
    independent: bool,
    block_checksums: bool,
    content_checksum: bool,
    content_size: Option<u64>,
    block_max: usize,
}

fn corrupt(reason: impl Into<String>) -> CompressionError {
    CompressionError::Corrupt {
        codec: Compression::Lz4,
        reason: reason.into(),
    }
}

fn read_u32(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_header(input: &[u8], checksum: Lz4HeaderChecksum) -> Result<Header, CompressionError> {
    if !input.starts_with(&FRAME_MAGIC) {
        return Err(corrupt("not an LZ4 frame (no frame magic number)"));
    }
    let hc_at = header_len(input).ok_or_else(|| corrupt("LZ4 frame header cut short"))?;
    let (flg, bd) = (input[4], input[5]);
    if flg & FLG_VERSION_MASK != FLG_VERSION_01 {
        return Err(corrupt(format!(
            "LZ4 frame version {} (only 1 exists)",
            flg >> 6
        )));
    }
    if flg & FLG_RESERVED != 0 || bd & BD_RESERVED != 0 {
        return Err(corrupt("LZ4 frame descriptor sets reserved bits"));
    }
    if flg & FLG_DICT_ID != 0 {
        return Err(corrupt(
            "LZ4 frame names a dictionary, which Kafka never uses",
        ));
    }
    let block_max = match (bd >> 4) & 0x7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        n => return Err(corrupt(format!("LZ4 frame maximum block size code {n}"))),
    };
    if checksum == Lz4HeaderChecksum::Verify && input[hc_at] != header_checksum(&input[4..hc_at]) {
        return Err(corrupt("LZ4 frame header checksum mismatch"));
    }
    let content_size = (flg & FLG_CONTENT_SIZE != 0).then(|| {
        let mut le = [0u8; 8];
        le.copy_from_slice(&input[6..14]);
        u64::from_le_bytes(le)
    });
    Ok(Header {
        len: hc_at + 1,
        independent: flg & FLG_INDEPENDENT_BLOCKS != 0,
        block_checksums: flg & FLG_BLOCK_CHECKSUMS != 0,
        content_checksum: flg & FLG_CONTENT_CHECKSUM != 0,
        content_size,
        block_max,
    })
}

/// Makes `out` at least `want` bytes long. It grows at least to double its length (so a
/// stream of blocks costs amortised constant copies), never past `limit`, by exact
/// reservations, so its capacity never passes `limit` either.
fn grow(out: &mut Vec<u8>, want: usize, limit: usize) {
    if out.len() >= want {
        return;
    }
    let target = want.max(out.len().saturating_mul(2)).min(limit);
    out.reserve_exact(target - out.len());
    out.resize(target, 0);
}

/// Decompresses the LZ4 frames of `input` over the front of `out`, bounded by `cap`, and
/// returns the output's length.
///
/// `out`'s current bytes are overwritten, its length used as room before it grows (a buffer
/// reused from an earlier batch is not cleared first); `hint` is the first size to grow to.
/// Its capacity never grows past `cap` (a longer buffer passed in is cut to `cap` first).
pub(super) fn decompress(
    input: &[u8],
    cap: usize,
    checksum: Lz4HeaderChecksum,
    hint: usize,
    out: &mut Vec<u8>,
) -> Result<usize, CompressionError> {
    out.truncate(cap);
    grow(out, hint.min(cap), cap);
    let mut pos = 0;
    let mut filled = 0;
    loop {
        let header = read_header(&input[pos..], checksum)?;
        pos += header.len;
        let frame_start = filled;
        loop {
            let size = read_u32(input, pos)
                .ok_or_else(|| corrupt("LZ4 frame ends without its end mark"))?;
            pos += 4;
            if size == 0 {
                break;
            }
            let stored = size & BLOCK_UNCOMPRESSED != 0;
            let len = (size & !BLOCK_UNCOMPRESSED) as usize;
            if len > header.block_max {
                return Err(corrupt(format!(
                    "LZ4 block of {len} bytes, past the frame's maximum of {}",
                    header.block_max
                )));
            }
            let data = input
                .get(pos..pos + len)
                .ok_or_else(|| corrupt("LZ4 block cut short"))?;
            pos += len;
            if header.block_checksums {
                let stored_sum =
                    read_u32(input, pos).ok_or_else(|| corrupt("LZ4 block checksum cut short"))?;
                pos += 4;
                if XxHash32::oneshot(0, data) != stored_sum {
                    return Err(corrupt("LZ4 block checksum mismatch"));
                }
            }
            filled += if stored {
                if filled + len > cap {
                    return Err(CompressionError::TooLarge {
                        codec: Compression::Lz4,
                        cap,
                    });
                }
                grow(out, filled + len, cap);
                out[filled..filled + len].copy_from_slice(data);
                len
            } else {
                // Room for the largest block the frame allows, or up to the cap.
                let room_end = (filled + header.block_max).min(cap);
                grow(out, room_end, cap);
                let (earlier, rest) = out.split_at_mut(filled);
                let dest = &mut rest[..room_end - filled];
                let result = if header.independent || filled == frame_start {
                    lz4_flex::block::decompress_into(data, dest)
                } else {
                    // A linked block may copy from the frame's previous 64 KiB.
                    let dict = &earlier[frame_start.max(filled.saturating_sub(WINDOW))..];
                    lz4_flex::block::decompress_into_with_dict(data, dest, dict)
                };
                match result {
                    Ok(n) => n,
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                        if room_end == cap =>
                    {
                        return Err(CompressionError::TooLarge {
                            codec: Compression::Lz4,
                            cap,
                        });
                    }
                    Err(e) => return Err(corrupt(e.to_string())),
                }
            };
        }
        if header.content_checksum {
            let stored_sum =
                read_u32(input, pos).ok_or_else(|| corrupt("LZ4 content checksum cut short"))?;
            pos += 4;
            if XxHash32::oneshot(0, &out[frame_start..filled]) != stored_sum {
                return Err(corrupt("LZ4 content checksum mismatch"));
            }
        }
        if let Some(declared) = header.content_size
            && declared != (filled - frame_start) as u64
        {
            return Err(corrupt(format!(
                "LZ4 frame declares {declared} bytes of content and holds {}",
                filled - frame_start
            )));
        }
        if pos == input.len() {
            break;
        }
    }
    Ok(filled)
}

/// The largest block [`compress_frame_into`] writes: 64 KiB, as the Java client's
/// `KafkaLZ4BlockOutputStream` does by default.
const BLOCK_MAX_WRITTEN: usize = 64 << 10;
/// BD, the maximum block size byte, for 64 KiB blocks (code 4).
const BD_64K: u8 = 4 << 4;

thread_local! {
    /// Room for one block's largest output, zeroed once per thread: the block compressor
    /// writes into initialised memory, and zeroing that room for every block costs about what
    /// copying the packed block out of it does.
    static PACKED: RefCell<Vec<u8>> = RefCell::new(vec![
        0;
        lz4_flex::block::get_maximum_output_size(BLOCK_MAX_WRITTEN)
    ]);
}

/// Appends `input` to `out` as one LZ4 frame of independent blocks of at most 64 KiB, with no
/// checksums and no content size, as the Java producer writes it. A block that would not
/// shrink is stored as it is.
pub(super) fn compress_frame_into(input: &[u8], out: &mut Vec<u8>) {
    let flg = FLG_VERSION_01 | FLG_INDEPENDENT_BLOCKS;
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&[flg, BD_64K, header_checksum(&[flg, BD_64K])]);
    PACKED.with_borrow_mut(|packed| {
        for (i, block) in input.chunks(BLOCK_MAX_WRITTEN).enumerate() {
            // The room holds the largest output a block can have, so this cannot fail; were
            // it to, the block is stored as it is, which any reader takes.
            let written = match lz4_flex::block::compress_into(block, packed) {
                Ok(n) if n < block.len() => {
                    out.extend_from_slice(&(n as u32).to_le_bytes());
                    &packed[..n]
                }
                _ => {
                    out.extend_from_slice(&(block.len() as u32 | BLOCK_UNCOMPRESSED).to_le_bytes());
                    block
                }
            };
            if i == 0 {
                // Room for the rest of the frame as the first block shrank, with a tenth more:
                // the frame grows by copying only when later blocks shrink much less.
                let rest = input.len() - block.len();
                let shrunk = rest as u64 * written.len() as u64 / block.len() as u64;
                let guess = usize::try_from(shrunk + shrunk / 10).unwrap_or(rest);
                out.reserve(written.len() + guess + 4 * rest.div_ceil(BLOCK_MAX_WRITTEN) + 4);
            }
            out.extend_from_slice(written);
        }
    });
    out.extend_from_slice(&0u32.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
    use proptest::prelude::*;

    use super::*;

    const CAP: usize = 1 << 20;

    fn encode(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(frame: &[u8]) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        let len = decompress(frame, CAP, Lz4HeaderChecksum::Verify, 0, &mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// Log-like text: compressible, with matches reaching back across block boundaries.
    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!("GET /item/{} 200 {}\n", i % 997, i * 31 % 4099).as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn every_option() -> FrameInfo {
        FrameInfo::new()
            .block_mode(BlockMode::Linked)
            .block_checksums(true)
            .content_checksum(true)
    }

    #[test]
    fn every_frame_option_reads_as_lz4_flex_reads_it() {
        let data = text(300_000);
        for mode in [BlockMode::Independent, BlockMode::Linked] {
            for size in [BlockSize::Max64KB, BlockSize::Max256KB] {
                for sums in [false, true] {
                    for content_size in [None, Some(data.len() as u64)] {
                        let info = FrameInfo::new()
                            .block_mode(mode)
                            .block_size(size)
                            .block_checksums(sums)
                            .content_checksum(sums)
                            .content_size(content_size);
                        let frame = encode(&data, info);
                        let mut theirs = Vec::new();
                        FrameDecoder::new(&frame[..])
                            .read_to_end(&mut theirs)
                            .unwrap();
                        assert_eq!(theirs, data);
                        assert_eq!(decode(&frame).unwrap(), data, "{mode:?} {size:?} {sums}");
                    }
                }
            }
        }
    }

    /// xorshift bytes, which no LZ4 block shrinks.
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// `data` as [`compress_frame_into`] writes it.
    fn written(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_frame_into(data, &mut out);
        out
    }

    /// The blocks of a frame with a 7-byte header and no checksums: (stored, length).
    fn blocks(frame: &[u8]) -> Vec<(bool, usize)> {
        let mut at = 7;
        let mut found = Vec::new();
        while let Some(size) = read_u32(frame, at).filter(|&s| s != 0) {
            let len = (size & !BLOCK_UNCOMPRESSED) as usize;
            found.push((size & BLOCK_UNCOMPRESSED != 0, len));
            at += 4 + len;
        }
        assert_eq!(at + 4, frame.len(), "the end mark closes the frame");
        found
    }

    #[test]
    fn a_written_frame_reads_back_here_and_in_lz4_flex() {
        let mixed = [text(100_000), noise(70_000), text(1_000)].concat();
        let sizes = [0, 1, 15, 64 << 10, (64 << 10) + 1, 300_000];
        let cases = sizes.iter().map(|&n| text(n)).chain([noise(5_000), mixed]);
        for data in cases {
            let frame = written(&data);
            // The header lz4_flex writes for independent 64 KiB blocks without checksums.
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Independent);
            assert_eq!(frame[..7], encode(&data, info)[..7], "{} bytes", data.len());
            let mut theirs = Vec::new();
            FrameDecoder::new(&frame[..])
                .read_to_end(&mut theirs)
                .unwrap();
            assert_eq!(theirs, data, "{} bytes", data.len());
            assert_eq!(decode(&frame).unwrap(), data, "{} bytes", data.len());
            assert_eq!(blocks(&frame).len(), data.len().div_ceil(64 << 10));
        }
    }

    #[test]
    fn a_written_block_that_would_not_shrink_is_stored() {
        let data = [text(64 << 10), noise(64 << 10), text(10)].concat();
        let frame = written(&data);
        let found = blocks(&frame);
        assert!(
            !found[0].0 && found[0].1 < 64 << 10,
            "text is packed: {found:?}"
        );
        assert_eq!(found[1], (true, 64 << 10), "noise is stored");
        assert!(found[2].0, "ten bytes do not shrink: {found:?}");
        assert_eq!(decode(&frame).unwrap(), data);
    }

    #[test]
    fn a_frame_is_written_after_what_the_buffer_holds() {
        let data = text(150_000);
        let mut out = b"batch header".to_vec();
        compress_frame_into(&data, &mut out);
        assert_eq!(&out[..12], b"batch header");
        assert_eq!(out[12..], written(&data));
        assert_eq!(decode(&out[12..]).unwrap(), data);
    }

    #[test]
    fn incompressible_data_in_stored_blocks_reads_back() {
        // lz4_flex stores such blocks uncompressed (the size's high bit).
        let data = noise(200_000);
        let frame = encode(&data, every_option());
        let first_block = read_u32(&frame, 7).unwrap();
        assert_ne!(
            first_block & BLOCK_UNCOMPRESSED,
            0,
            "the first block is stored"
        );
        assert_eq!(decode(&frame).unwrap(), data);
    }

    #[test]
    fn concatenated_frames_read_one_after_another() {
        let (a, b) = (text(70_000), text(5_000));
        let mut both = encode(&a, FrameInfo::new());
        both.extend(encode(&b, every_option()));
        assert_eq!(decode(&both).unwrap(), [a, b].concat());
        // Anything after a frame that is not a frame is corrupt.
        let mut trailing = encode(&text(100), FrameInfo::new());
        trailing.push(0);
        assert!(matches!(
            decode(&trailing),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn every_checksum_and_declared_length_is_checked() {
        let data = text(100_000);
        let frame = encode(&data, every_option().content_size(Some(data.len() as u64)));
        let hc_at = header_len(&frame).unwrap();
        let first_len = (read_u32(&frame, hc_at + 1).unwrap() & !BLOCK_UNCOMPRESSED) as usize;
        let block_sum_at = hc_at + 1 + 4 + first_len;
        let content_sum_at = frame.len() - 4;
        let cases = [
            (hc_at, "header checksum"),
            (hc_at + 1 + 4 + 10, "block data (caught by its checksum)"),
            (block_sum_at, "block checksum"),
            (content_sum_at, "content checksum"),
            (6, "content size"),
        ];
        for (at, what) in cases {
            let mut bad = frame.clone();
            bad[at] ^= 0x01;
            if at == 6 {
                // Keep the header checksum right, so the content size itself is what fails.
                bad[hc_at] = header_checksum(&bad[4..hc_at]);
            }
            assert!(
                matches!(decode(&bad), Err(CompressionError::Corrupt { .. })),
                "{what}"
            );
        }
    }

    #[test]
    fn a_frame_cut_anywhere_is_an_error() {
        let frame = encode(&text(3000), every_option());
        for cut in 0..frame.len() {
            assert!(decode(&frame[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&frame).is_ok());
    }

    #[test]
    fn reserved_bits_version_and_dictionaries_are_refused() {
        let frame = encode(b"x", FrameInfo::new());
        let patch = |at: usize, xor: u8| {
            let mut bad = frame.clone();
            bad[at] ^= xor;
            bad[6] = header_checksum(&bad[4..6]);
            decode(&bad)
        };
        for (at, xor) in [(4, 0x80), (4, 0x02), (5, 0x80), (5, 0x01), (5, 0x40)] {
            assert!(
                matches!(patch(at, xor), Err(CompressionError::Corrupt { .. })),
                "byte {at} ^ {xor:#x}"
            );
        }
        // A dictionary id adds four header bytes.
        let mut dict = frame[..6].to_vec();
        dict[4] |= FLG_DICT_ID;
        dict.extend([1, 2, 3, 4]);
        dict.push(header_checksum(&dict[4..]));
        dict.extend(&frame[7..]);
        assert!(matches!(
            decode(&dict),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_reused_longer_buffer_holds_exactly_the_output() {
        let data = text(10_000);
        let frame = encode(&data, FrameInfo::new());
        let mut out = vec![0xAA; 300_000];
        let len = decompress(&frame, CAP, Lz4HeaderChecksum::Verify, 0, &mut out).unwrap();
        assert_eq!((&out[..len], out.len()), (&data[..], 300_000));
        // A buffer longer than the cap is cut to it, not used past it.
        let mut out = vec![0xAA; 300_000];
        let len = decompress(&frame, 20_000, Lz4HeaderChecksum::Verify, 0, &mut out).unwrap();
        assert_eq!((&out[..len], out.len()), (&data[..], 20_000));
    }

    proptest! {
        #[test]
        fn round_trips_any_data(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            repeat in 1usize..20,
            linked in any::<bool>(),
            sums in any::<bool>(),
        ) {
            let data = data.repeat(repeat);
            let mode = if linked { BlockMode::Linked } else { BlockMode::Independent };
            let frame = encode(
                &data,
                FrameInfo::new().block_mode(mode).block_checksums(sums).content_checksum(sums),
            );
            prop_assert_eq!(decode(&frame).unwrap(), data);
        }

        #[test]
        fn any_written_frame_round_trips(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            repeat in 1usize..20,
        ) {
            let data = data.repeat(repeat);
            let frame = written(&data);
            let mut theirs = Vec::new();
            FrameDecoder::new(&frame[..]).read_to_end(&mut theirs).unwrap();
            prop_assert_eq!(&theirs, &data);
            prop_assert_eq!(decode(&frame).unwrap(), data);
        }

        #[test]
        fn mutated_frames_never_panic_nor_pass_the_cap(
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            cap in 0usize..200_000,
        ) {
            let frame = encode(&text(150_000), FrameInfo::new().block_mode(BlockMode::Linked));
            let mut bad = frame.clone();
            let i = at.index(bad.len());
            bad[i] ^= xor;
            let mut out = Vec::new();
            let _ = decompress(&bad, cap, Lz4HeaderChecksum::Verify, 0, &mut out);
            prop_assert!(out.capacity() <= cap);
        }
    }
}
