//! Records as the application gets them: owned values whose key, value and header values are
//! `Bytes` slices of the Fetch answer (no copy for uncompressed data; a compressed batch is
//! decompressed once, by the decoder, into a buffer of its own).

use std::sync::Arc;

use bytes::Bytes;
use kcon_codec::records::{DecodeOptions, RecordBatches, TimestampType};
use kcon_group::TopicPartition;

use crate::transactions::{AbortedTransaction, BatchVerdict, TransactionFilter};

/// One record handed to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic (shared by every record of a batch).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The leader epoch of its batch; `None` for magic 0 and 1.
    pub leader_epoch: Option<i32>,
    /// The timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key, `None` when null.
    pub key: Option<Bytes>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<Bytes>,
    /// The headers in wire order, duplicates kept: (key, value).
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// The fewest bytes a magic-2 record takes: length, attributes, timestamp and offset deltas,
/// key and value lengths, header count (one byte each).
const MIN_RECORD_BYTES: usize = 7;

/// Records of one partition from one Fetch answer, in offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// The partition.
    pub partition: TopicPartition,
    /// The records.
    pub records: Vec<ConsumerRecord>,
    /// The position after them: the next offset the fetcher reads (past control batches and
    /// aborted transactions too, so it may be past the last record's offset + 1).
    pub next_offset: i64,
    /// The high watermark the answer reported.
    pub high_watermark: i64,
    /// The bytes of the answer these records stand for: what the prefetch budget counts until
    /// the application has taken them.
    pub size: usize,
}

/// What one partition's record bytes held, read in order until the first problem.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) records: Vec<ConsumerRecord>,
    /// The offset to fetch next.
    pub(crate) position: i64,
    /// The last delivered record's leader epoch.
    pub(crate) last_epoch: Option<i32>,
    /// The offset of a batch that failed to decode; nothing at or after it was read.
    pub(crate) corrupt_at: Option<i64>,
}

/// Reads one partition's record bytes fetched from `fetch_offset`: read_committed when
/// `aborted` is `Some`. A corrupt batch (bad CRC, lengths, compression, control record) stops
/// the walk; the records before it are kept and its offset is `corrupt_at`: never a panic, a
/// skip or an advance past it. A truncated last batch (the broker's limit cut it) is not an
/// error: it is fetched again from its start.
pub(crate) fn decode_partition(
    partition: &TopicPartition,
    topic: &Arc<str>,
    bytes: Bytes,
    fetch_offset: i64,
    aborted: Option<Vec<AbortedTransaction>>,
    last_stable_offset: i64,
) -> Decoded {
    let mut filter = match aborted {
        Some(list) => TransactionFilter::read_committed(fetch_offset, list, last_stable_offset),
        None => TransactionFilter::read_uncommitted(fetch_offset),
    };
    let mut out = Decoded {
        records: Vec::new(),
        position: fetch_offset,
        last_epoch: None,
        corrupt_at: None,
    };
    'batches: for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
        let batch = match batch {
            Ok(b) => b,
            Err(_) => {
                out.corrupt_at = Some(filter.position());
                break;
            }
        };
        let before = filter.position();
        let (from, until) = match filter.batch(&batch) {
            Ok(BatchVerdict::Deliver { from, until }) => (from, until),
            Ok(BatchVerdict::Aborted | BatchVerdict::Control) => {
                out.position = filter.position();
                continue;
            }
            Ok(BatchVerdict::Unstable) => break,
            Err(_) => {
                out.corrupt_at = Some(before.max(batch.base_offset()));
                break;
            }
        };
        let epoch = batch.partition_leader_epoch();
        let leader_epoch = (epoch >= 0).then_some(epoch);
        let start = out.records.len();
        // Room for the batch's records, as many as its bytes can hold (the count is the
        // wire's word: a hostile one must not reserve more than the bytes present).
        let declared = usize::try_from(batch.record_count()).unwrap_or(0);
        out.records
            .reserve(declared.min(batch.size_in_bytes() / MIN_RECORD_BYTES));
        for r in batch.records() {
            let r = match r {
                Ok(r) => r,
                Err(_) => {
                    // A record of the batch is unreadable: the whole batch is withheld, so
                    // the position stays at its start and the application is told.
                    out.records.truncate(start);
                    out.corrupt_at = Some(before.max(batch.base_offset()));
                    break 'batches;
                }
            };
            if !(from..until).contains(&r.offset()) {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.clone(),
                partition: partition.partition,
                offset: r.offset(),
                leader_epoch,
                timestamp: r.timestamp(),
                timestamp_type: r.timestamp_type(),
                key: r.key_bytes(),
                value: r.value_bytes(),
                headers: r
                    .headers()
                    .map(|h| (h.key_bytes(), h.value_bytes()))
                    .collect(),
            });
        }
        if out.records.len() > start {
            out.last_epoch = leader_epoch.or(out.last_epoch);
        }
        out.position = filter.position();
    }
    out
}
