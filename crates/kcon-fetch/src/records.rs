//! Records as the application gets them: owned values whose key, value and header values are
//! `Bytes` slices of the Fetch answer (no copy for uncompressed data; a compressed batch is
//! decompressed once, by the decoder, into a buffer of its own).
//!
//! Reading an answer has two steps. The fetch loop checks every batch when the answer comes
//! (CRC, lengths, compression, each record's framing, transactions) and keeps the batches to
//! deliver as they are; a record becomes a [`ConsumerRecord`] only when it is handed out, at
//! most `max.poll.records` at a time. An answer of many small records therefore costs its
//! bytes, not its bytes plus a decoded copy of every record (about 140 bytes each) for as long
//! as the application takes to get to them.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use kcon_codec::records::{Batch, DecodeOptions, RecordBatches, TimestampType};
use kcon_core::TopicPartition;

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

/// Records of one partition from one Fetch answer, in offset order.
///
/// The fetch loop's handle ([`Fetcher`](crate::Fetcher)) hands these out with every record in
/// `records`. A [`FetchMachine`](crate::FetchMachine)'s event holds them still undecoded:
/// [`take`](Self::take) or [`decoded`](Self::decoded) turns them into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// The partition.
    pub partition: TopicPartition,
    /// The records decoded so far.
    pub records: Vec<ConsumerRecord>,
    /// The position after them: the next offset the fetcher reads (past control batches and
    /// aborted transactions too, so it may be past the last record's offset + 1).
    pub next_offset: i64,
    /// The high watermark the answer reported.
    pub high_watermark: i64,
    /// The bytes of the answer these records stand for (and the decompressed bytes of its
    /// compressed batches): what the prefetch budget counts until the application has taken
    /// them.
    pub size: usize,
    /// Records checked and not decoded yet, after those in `records`.
    pub(crate) undecoded: Undecoded,
}

impl FetchedRecords {
    /// Records of `partition`, all decoded.
    pub fn new(
        partition: TopicPartition,
        records: Vec<ConsumerRecord>,
        next_offset: i64,
        high_watermark: i64,
        size: usize,
    ) -> Self {
        FetchedRecords {
            partition,
            records,
            next_offset,
            high_watermark,
            size,
            undecoded: Undecoded::default(),
        }
    }

    /// The records, decoded or not.
    pub fn len(&self) -> usize {
        self.records.len() + self.undecoded.len()
    }

    /// Whether there are no records (only control batches or aborted ones were read).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leader epoch of the last record, decoded or not.
    pub fn last_leader_epoch(&self) -> Option<i32> {
        let u = &self.undecoded;
        match u.batches.back() {
            Some(d) => d.leader_epoch(),
            None => u.spill.back().or(self.records.last())?.leader_epoch,
        }
    }

    /// Every record decoded into `records`.
    pub fn decoded(mut self) -> Self {
        let n = self.undecoded.len();
        self.undecoded.decode_into(&mut self.records, n);
        self
    }

    /// Takes the first `max` records (`max` ≥ 1) as records of their own, decoding no more
    /// than those: all of them when there are no more than `max`, and then the part is the
    /// whole, `next_offset` and `size` included, and `self` is left empty. Otherwise the part
    /// ends after its last record and weighs nothing, and `self` keeps the rest, the answer's
    /// `next_offset` and `size`.
    pub fn take(&mut self, max: usize) -> FetchedRecords {
        let max = max.max(1);
        let mut records = std::mem::take(&mut self.records);
        if records.len() > max {
            // Decoded already: the rest waits in front of what is not, so that a part never
            // moves the records after it.
            for r in records.drain(max..).rev() {
                self.undecoded.spill.push_front(r);
            }
        } else {
            let want = max - records.len();
            records.reserve(want.min(self.undecoded.len()));
            self.undecoded.decode_into(&mut records, want);
        }
        if self.is_empty() {
            return FetchedRecords {
                partition: self.partition.clone(),
                records,
                next_offset: self.next_offset,
                high_watermark: self.high_watermark,
                size: std::mem::take(&mut self.size),
                undecoded: Undecoded::default(),
            };
        }
        // Invariant: `max` ≥ 1 and records are left, so the part holds `max` of them.
        let after = records.last().map_or(self.next_offset, |r| r.offset + 1);
        FetchedRecords::new(
            self.partition.clone(),
            records,
            after,
            self.high_watermark,
            0,
        )
    }
}

/// Batches of one partition, checked and kept as received until their records are handed
/// out, and the records of a batch decoded beyond the last part taken.
#[derive(Debug, Clone, Default)]
pub(crate) struct Undecoded {
    topic: Option<Arc<str>>,
    partition: i32,
    /// Decoded records not handed out yet: the tail of the last batch decoded.
    spill: VecDeque<ConsumerRecord>,
    batches: VecDeque<Deliverable>,
    /// Records in `batches` (within their ranges).
    in_batches: usize,
}

/// A batch to deliver: its records with offsets in `from..until` (`count` of them).
#[derive(Debug, Clone)]
struct Deliverable {
    batch: Batch,
    from: i64,
    until: i64,
    count: usize,
}

impl Deliverable {
    /// The leader epoch the batch was written in, when it says (magic 2 batches do).
    fn leader_epoch(&self) -> Option<i32> {
        let epoch = self.batch.partition_leader_epoch();
        (epoch >= 0).then_some(epoch)
    }
}

impl PartialEq for Undecoded {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && self.spill == other.spill
            && self.in_batches == other.in_batches
            && self.batches.len() == other.batches.len()
            && self.batches.iter().zip(&other.batches).all(|(a, b)| {
                (a.from, a.until, a.count) == (b.from, b.until, b.count)
                    && a.batch.as_bytes() == b.batch.as_bytes()
            })
    }
}

impl Eq for Undecoded {}

impl Undecoded {
    pub(crate) fn len(&self) -> usize {
        self.spill.len() + self.in_batches
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends up to `want` records to `out`, in order, decoding batches as needed; the rest
    /// of the last batch decoded waits in `spill`.
    fn decode_into(&mut self, out: &mut Vec<ConsumerRecord>, mut want: usize) {
        let from_spill = want.min(self.spill.len());
        out.extend(self.spill.drain(..from_spill));
        want -= from_spill;
        while want > 0 {
            let Some(d) = self.batches.pop_front() else {
                break;
            };
            self.in_batches -= d.count;
            let leader_epoch = d.leader_epoch();
            // Invariant: set with the first batch.
            let topic = self.topic.as_ref().expect("a topic with the batches");
            let mut taken = 0;
            // Checked when the answer came: a record that fails now is not there.
            for r in d.batch.records().flatten() {
                if !(d.from..d.until).contains(&r.offset()) {
                    continue;
                }
                let record = ConsumerRecord {
                    topic: topic.clone(),
                    partition: self.partition,
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
                };
                if taken < want {
                    out.push(record);
                    taken += 1;
                } else {
                    self.spill.push_back(record);
                }
            }
            want -= taken;
        }
    }
}

/// What one partition's record bytes held, read in order until the first problem.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The batches to deliver.
    pub(crate) batches: Undecoded,
    /// The offset to fetch next.
    pub(crate) position: i64,
    /// The offset of a batch that failed to decode; nothing at or after it was read.
    pub(crate) corrupt_at: Option<i64>,
    /// Bytes of decompressed records the batches hold besides the answer's.
    pub(crate) decompressed: usize,
}

/// Checks one partition's record bytes fetched from `fetch_offset`: read_committed when
/// `aborted` is `Some`. A corrupt batch (bad CRC, lengths, compression, a record's framing,
/// control record) stops the walk; the batches before it are kept and its offset is
/// `corrupt_at`: never a panic, a skip or an advance past it. A truncated last batch (the
/// broker's limit cut it) is not an error: it is fetched again from its start. Every record is
/// read here once to check it; none is decoded (see [`FetchedRecords::take`]).
pub(crate) fn check_partition(
    partition: &TopicPartition,
    topic: &Arc<str>,
    bytes: Bytes,
    fetch_offset: i64,
    aborted: Option<Vec<AbortedTransaction>>,
    last_stable_offset: i64,
) -> Checked {
    let mut filter = match aborted {
        Some(list) => TransactionFilter::read_committed(fetch_offset, list, last_stable_offset),
        None => TransactionFilter::read_uncommitted(fetch_offset),
    };
    let mut out = Checked {
        batches: Undecoded {
            topic: Some(topic.clone()),
            partition: partition.partition,
            ..Undecoded::default()
        },
        position: fetch_offset,
        corrupt_at: None,
        decompressed: 0,
    };
    for batch in RecordBatches::new(bytes, DecodeOptions::default()) {
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
        let mut count = 0;
        let mut readable = true;
        for r in batch.records() {
            match r {
                Ok(r) => count += usize::from((from..until).contains(&r.offset())),
                Err(_) => {
                    readable = false;
                    break;
                }
            }
        }
        if !readable {
            // A record of the batch is unreadable: the whole batch is withheld, so the
            // position stays at its start and the application is told.
            out.corrupt_at = Some(before.max(batch.base_offset()));
            break;
        }
        if count > 0 {
            out.decompressed += batch.decompressed_len();
            out.batches.in_batches += count;
            out.batches.batches.push_back(Deliverable {
                batch,
                from,
                until,
                count,
            });
        }
        out.position = filter.position();
    }
    out
}

#[cfg(test)]
mod tests;
