//! Record-batch decoding, measured against a baseline and two limits on the same bytes:
//!
//! - `kcon`: kcon-codec's decoder with default options (CRC checked), every record visited and
//!   its key and value touched;
//! - `kcon-deferred` (compressed): the same, each batch decompressed after the walk, as the
//!   fetcher does when it hands records out;
//! - `kafka-protocol`: that crate's `RecordBatchDecoder` over the same bytes, doing the same
//!   touching (given kcon's decompressor, since its own compression features are off);
//! - `crc32c` (uncompressed): one bare CRC-32C pass over the bytes, the least any checked
//!   decode must do;
//! - `decompress` (compressed): bare decompression of every batch's records section.
//!
//! Throughput is in records. Run: `cargo bench -p kcon-benches --bench decode`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::records::{Compression as KpCompression, RecordBatchDecoder};
use kcon_benches::{DataSet, data_set};
use kcon_codec::compression::{
    Compression, DEFAULT_MAX_DECOMPRESSED_BYTES, FreeListShare, decompress,
};
use kcon_codec::records::{DecodeOptions, RecordBatches};

const TOTAL: usize = 1 << 20;

/// The free list a consumer's fetcher lets decompression keep when it buffers nothing: its
/// default budget, three times the default `fetch.max.bytes` (50 MiB).
const CONSUMER_FREE_LIST: usize = 3 * 50 * 1024 * 1024;

fn touch(key: Option<&[u8]>, value: Option<&[u8]>) -> usize {
    // Read the length and the first byte of each, so the data is really reached.
    let k = key.map_or(0, |k| {
        k.len() + usize::from(k.first().copied().unwrap_or(0))
    });
    let v = value.map_or(0, |v| {
        v.len() + usize::from(v.first().copied().unwrap_or(0))
    });
    k + v
}

fn kcon(data: &DataSet) -> usize {
    let mut sum = 0;
    for batch in RecordBatches::new(data.bytes.clone(), DecodeOptions::default()) {
        let batch = batch.expect("benchmark data decodes");
        for record in batch.records() {
            let record = record.expect("benchmark record decodes");
            sum += touch(record.key(), record.value());
        }
    }
    sum
}

fn kcon_deferred(data: &DataSet) -> usize {
    let opts = DecodeOptions::default().with_deferred_decompression(true);
    let mut sum = 0;
    for batch in RecordBatches::new(data.bytes.clone(), opts) {
        let mut batch = batch.expect("benchmark data decodes");
        batch.decompress().expect("benchmark data decompresses");
        for record in batch.records() {
            let record = record.expect("benchmark record decodes");
            sum += touch(record.key(), record.value());
        }
    }
    sum
}

fn kafka_protocol(data: &DataSet) -> usize {
    let decompressor = |buf: &mut Bytes, codec: KpCompression| -> anyhow::Result<Bytes> {
        let codec = Compression::from_id(codec as u8).expect("a known codec");
        Ok(Bytes::from(decompress(
            codec,
            buf,
            DEFAULT_MAX_DECOMPRESSED_BYTES,
        )?))
    };
    let mut buf = data.bytes.clone();
    let mut sum = 0;
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompressor))
            .expect("benchmark data decodes");
        for r in &set.records {
            sum += touch(r.key.as_deref(), r.value.as_deref());
        }
    }
    sum
}

fn bench(c: &mut Criterion) {
    // Decompression buffers are reused as in a consumer; with no share they would not be.
    let _free_list = FreeListShare::new(CONSUMER_FREE_LIST);
    for value_len in [100, 1024] {
        let mut group = c.benchmark_group(format!("decode/{value_len}B"));
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let data = data_set(TOTAL, value_len, codec);
            assert_eq!(
                kcon(&data),
                kafka_protocol(&data),
                "both decoders see the same records"
            );
            group.throughput(Throughput::Elements(data.records));
            group.bench_with_input(BenchmarkId::new("kcon", codec), &data, |b, d| {
                b.iter(|| black_box(kcon(d)))
            });
            group.bench_with_input(BenchmarkId::new("kafka-protocol", codec), &data, |b, d| {
                b.iter(|| black_box(kafka_protocol(d)))
            });
            if codec == Compression::None {
                group.bench_with_input(BenchmarkId::new("crc32c", codec), &data, |b, d| {
                    b.iter(|| black_box(crc32c::crc32c(&d.bytes)))
                });
            } else {
                assert_eq!(kcon(&data), kcon_deferred(&data));
                group.bench_with_input(BenchmarkId::new("kcon-deferred", codec), &data, |b, d| {
                    b.iter(|| black_box(kcon_deferred(d)))
                });
                group.bench_with_input(BenchmarkId::new("decompress", codec), &data, |b, d| {
                    b.iter(|| {
                        let mut n = 0;
                        for s in &d.compressed_sections {
                            n += decompress(codec, s, DEFAULT_MAX_DECOMPRESSED_BYTES)
                                .expect("benchmark data decompresses")
                                .len();
                        }
                        black_box(n)
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
