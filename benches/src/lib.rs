//! Data sets shared by kcon's benchmarks.

use bytes::{Bytes, BytesMut};
use kcon_codec::compression::Compression;
use kcon_codec::records::RecordBatchBuilder;

/// About how many bytes of record data go into one batch: the Java producer's default
/// `batch.size`.
pub const BATCH_BYTES: usize = 16 * 1024;

/// Record batches as a fetch response would carry them, with what they hold.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// The batches, back to back.
    pub bytes: Bytes,
    /// Records in all batches.
    pub records: u64,
    /// Each batch's compressed records section (empty for uncompressed batches), to time bare
    /// decompression on exactly the bytes the decoder decompresses.
    pub compressed_sections: Vec<Bytes>,
}

/// About `total` bytes of batches of records with `value_len`-byte values and 10-byte keys,
/// compressed with `codec`. Values are text with the entropy of typical JSON events (digits
/// and repeated field names), so the codecs compress them as they would real data.
pub fn data_set(total: usize, value_len: usize, codec: Compression) -> DataSet {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // xorshift64*: deterministic data, the same every run.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let per_batch = (BATCH_BYTES / (value_len + 20)).max(1);
    let mut out = BytesMut::new();
    let mut sections = Vec::new();
    let mut offset = 0i64;
    let mut uncompressed = 0usize;
    while uncompressed < total {
        let mut builder = RecordBatchBuilder::new(offset).compression(codec);
        for i in 0..per_batch {
            let key = format!("key-{:06}", (offset as usize + i) % 1_000_000);
            let mut value = String::with_capacity(value_len);
            while value.len() < value_len {
                value.push_str(&format!(
                    "{{\"id\":{},\"kind\":\"click\",\"score\":{}}}",
                    next() % 100_000,
                    next() % 1000
                ));
            }
            value.truncate(value_len);
            builder.record(
                1_700_000_000_000 + i as i64,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
            );
            uncompressed += value_len + key.len();
        }
        let batch = builder.build().expect("benchmark batches encode");
        if codec != Compression::None {
            // The records section follows the 61-byte magic-2 batch header.
            sections.push(batch.slice(61..));
        }
        out.extend_from_slice(&batch);
        offset += per_batch as i64;
    }
    DataSet {
        bytes: out.freeze(),
        records: offset as u64,
        compressed_sections: sections,
    }
}
