//! Records as the application gets them: owned values whose key, value and header values are
//! `Bytes` slices of the Fetch answer (no copy for uncompressed data; a compressed batch is
//! decompressed once, by the decoder, into a buffer of its own).
//!
//! Reading an answer has two steps. The fetch loop checks every batch when the answer comes
//! (CRC, lengths, transactions; an uncompressed batch's records too, read in place) and keeps
//! the batches to deliver as they are, a compressed one still compressed; a record becomes a
//! [`ConsumerRecord`] only when it is handed out, at most `max.poll.records` at a time, and a
//! compressed batch is decompressed then. An answer therefore costs its bytes as they came, not
//! its bytes plus its decompressed records plus a decoded copy of every record (about 140 bytes
//! each) for as long as the application takes to get to them.
//!
//! A compressed batch's records are read only when handed out, so a bad one (a payload that
//! does not decompress, a record that does not parse, though the producer's CRC holds) is found
//! then: the records before it are handed out, the part that ends there carries
//! [`CorruptRecords`], and the fetch loop moves the partition back to it
//! ([`FetchMachine::records_corrupt`](crate::FetchMachine::records_corrupt)).

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
    /// The bytes of the answer these records stand for, and the decompressed bytes held for
    /// the records not handed out yet: what the prefetch budget counts until the application
    /// has taken them. A part handed out carries what leaves the budget with it.
    pub size: usize,
    /// Records checked and not decoded yet, after those in `records`.
    pub(crate) undecoded: Undecoded,
    /// On the part that ends at a corrupt record: where, and how to go back there.
    pub(crate) corrupt: Option<CorruptRecords>,
    /// Decompressed bytes that taking this part left held for the records after it.
    pub(crate) held_more: usize,
}

/// A record found corrupt as the records of an answer were handed out: a compressed batch
/// whose payload does not decompress, or whose records do not parse, though its CRC holds.
///
/// The part that carries it ends before the record, and its `next_offset` is `offset`. The
/// fetch loop had moved the partition to the answer's end when it handed the answer over;
/// [`FetchMachine::records_corrupt`](crate::FetchMachine::records_corrupt) moves it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptRecords {
    /// The first offset not handed out: just past the last good record of the corrupt batch,
    /// or where the batch's records start when none was good.
    pub offset: i64,
    /// The leader epoch of the last record handed out before `offset`, or of the position the
    /// answer was fetched from when none was.
    pub leader_epoch: Option<i32>,
    /// Where the answer had moved the position: the partition moves back only from there.
    pub answer_end: i64,
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
            corrupt: None,
            held_more: 0,
        }
    }

    /// The records, decoded or not. A compressed batch not decompressed yet counts the records
    /// its header declares within the offsets to deliver: exact unless compaction removed
    /// some, or a record turns out to be corrupt.
    pub fn len(&self) -> usize {
        self.records.len() + self.undecoded.len()
    }

    /// On a part that ends at a corrupt record (see [`CorruptRecords`]).
    pub fn corrupt(&self) -> Option<&CorruptRecords> {
        self.corrupt.as_ref()
    }

    /// Decompressed bytes that taking this part (see [`take`](Self::take)) left held for the
    /// records still to come: the prefetch budget counts them from now
    /// ([`FetchMachine::records_held`](crate::FetchMachine::records_held)) until a later part
    /// carries them in its `size`.
    pub fn held_more(&self) -> usize {
        self.held_more
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

    /// Every record decoded into `records` (up to a corrupt one: then `next_offset` is its
    /// offset and [`corrupt`](Self::corrupt) says so).
    pub fn decoded(mut self) -> Self {
        self.take(usize::MAX)
    }

    /// Takes the first `max` records (`max` ≥ 1) as records of their own, decoding (and
    /// decompressing) no more batches than those need: all of them when there are no more than
    /// `max`, and then the part is the whole, `next_offset` and `size` included, and `self` is
    /// left empty. Otherwise the part ends after its last record and `self` keeps the rest and
    /// the answer's `next_offset`; the part's `size` is the decompressed bytes no longer held
    /// for the rest, and [`held_more`](Self::held_more) those newly held (a batch decompressed
    /// for this part whose later records wait for the next).
    ///
    /// A corrupt record ends the records: the part that reaches it is the last, ends before it
    /// and carries [`CorruptRecords`].
    pub fn take(&mut self, max: usize) -> FetchedRecords {
        let max = max.max(1);
        let held_before = self.undecoded.spill_held;
        let mut records = std::mem::take(&mut self.records);
        if records.len() > max {
            // Decoded already: the rest waits in front of what is not, so that a part never
            // moves the records after it.
            for r in records.drain(max..).rev() {
                self.undecoded.spill.push_front(r);
            }
        } else {
            let want = max - records.len();
            // Only what is known to be there: a compressed batch's count is checked against
            // its records when it is decompressed (see `decode_into`).
            records.reserve(want.min(self.undecoded.spill.len()));
            self.undecoded.decode_into(&mut records, want);
        }
        if self.is_empty() {
            let u = &mut self.undecoded;
            u.spill_held = 0;
            let corrupt = u.corrupt_at.take().map(|offset| CorruptRecords {
                offset,
                leader_epoch: u.epoch,
                answer_end: self.next_offset,
            });
            return FetchedRecords {
                partition: self.partition.clone(),
                records,
                next_offset: corrupt.map_or(self.next_offset, |c| c.offset),
                high_watermark: self.high_watermark,
                // Everything counted for the answer leaves with its last part.
                size: std::mem::take(&mut self.size),
                undecoded: Undecoded::default(),
                corrupt,
                held_more: 0,
            };
        }
        // The decompressed batch the rest waits in is the only one held for it.
        let held_after = self.undecoded.spill_held;
        let released = held_before.saturating_sub(held_after);
        let held_more = held_after.saturating_sub(held_before);
        self.size = self.size.saturating_sub(released) + held_more;
        // Invariant: `max` ≥ 1 and records are left, so the part holds `max` of them.
        let after = records.last().map_or(self.next_offset, |r| r.offset + 1);
        let mut part = FetchedRecords::new(
            self.partition.clone(),
            records,
            after,
            self.high_watermark,
            released,
        );
        part.held_more = held_more;
        part
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
    /// Bytes of the buffer the batch of `spill` was decompressed into when it was decoded
    /// (0 for one read in place, or decompressed when the answer came and counted then).
    spill_held: usize,
    batches: VecDeque<Deliverable>,
    /// Records in `batches` (within their ranges; for compressed batches, as declared).
    in_batches: usize,
    /// The leader epoch of the last record decoded, or of the position the answer was
    /// fetched from: where the position goes back to with a corrupt record after it.
    epoch: Option<i32>,
    /// A corrupt record found while decoding: nothing at or after this offset is handed out.
    corrupt_at: Option<i64>,
}

/// A batch to deliver: its records with offsets in `from..until` (`count` of them; for a
/// compressed batch, as its header declares them).
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
            && self.spill_held == other.spill_held
            && self.in_batches == other.in_batches
            && self.epoch == other.epoch
            && self.corrupt_at == other.corrupt_at
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

    /// Appends up to `want` records to `out`, in order, decoding (and decompressing) batches
    /// as needed; the rest of the last batch decoded waits in `spill`. A corrupt record stops
    /// it: the records before it are kept, the batches after it dropped, and `corrupt_at` says
    /// where.
    fn decode_into(&mut self, out: &mut Vec<ConsumerRecord>, mut want: usize) {
        let from_spill = want.min(self.spill.len());
        out.extend(self.spill.drain(..from_spill));
        if self.spill.is_empty() {
            self.spill_held = 0;
        }
        want -= from_spill;
        while want > 0 {
            let Some(mut d) = self.batches.pop_front() else {
                break;
            };
            self.in_batches -= d.count;
            // Decompressed only now that its records are wanted: until here the batch cost its
            // compressed bytes alone.
            let decompressed_now = d.batch.needs_decompression();
            if d.batch.decompress().is_err() {
                self.stop_at(d.from);
                return;
            }
            // The count is bounded by the records' bytes now (`Batch::decompress` checks a
            // compressed batch's), so a hostile header cannot size this.
            out.reserve(want.min(d.count));
            let leader_epoch = d.leader_epoch();
            // Invariant: set with the first batch.
            let topic = self.topic.as_ref().expect("a topic with the batches");
            let mut taken = 0;
            let mut spilled = false;
            // The first offset of the batch's range not decoded yet.
            let mut next = d.from;
            let mut failed = false;
            for r in d.batch.records() {
                // An uncompressed batch was read whole when the answer came; a compressed one
                // is read for the first time here.
                let Ok(r) = r else {
                    failed = true;
                    break;
                };
                if !(d.from..d.until).contains(&r.offset()) {
                    continue;
                }
                next = r.offset() + 1;
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
                    spilled = true;
                }
            }
            if taken > 0 || spilled {
                // Magic 0 and 1 records carry no epoch: the one known stays.
                self.epoch = leader_epoch.or(self.epoch);
            }
            if spilled && decompressed_now {
                self.spill_held = d.batch.decompressed_len();
            }
            want -= taken;
            if failed {
                self.stop_at(next);
                return;
            }
        }
    }

    /// A corrupt record at `offset`: nothing from there on is handed out.
    fn stop_at(&mut self, offset: i64) {
        self.corrupt_at = Some(offset);
        self.batches.clear();
        self.in_batches = 0;
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
    /// Bytes of decompressed records the batches hold besides the answer's: those the walk
    /// decompressed (magic 0 and 1 wrappers); compressed magic-2 batches are decompressed when
    /// handed out, and counted then.
    pub(crate) decompressed: usize,
}

/// Checks one partition's record bytes fetched from `fetch_offset` (the position's epoch
/// `position_epoch`): read_committed when `aborted` is `Some`. A corrupt batch (bad CRC,
/// lengths, an uncompressed record's framing, a control record) stops the walk; the batches
/// before it are kept and its offset is `corrupt_at`: never a panic, a skip or an advance past
/// it. A truncated last batch (the broker's limit cut it) is not an error: it is fetched again
/// from its start. Every record of an uncompressed batch is read here once to check it; a
/// compressed batch is checked by its CRC and header and left compressed (its records are
/// read when handed out: see [`FetchedRecords::take`]). None is decoded here.
pub(crate) fn check_partition(
    partition: &TopicPartition,
    topic: &Arc<str>,
    bytes: Bytes,
    fetch_offset: i64,
    position_epoch: Option<i32>,
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
            epoch: position_epoch,
            ..Undecoded::default()
        },
        position: fetch_offset,
        corrupt_at: None,
        decompressed: 0,
    };
    let options = DecodeOptions::default().with_deferred_decompression(true);
    for batch in RecordBatches::new(bytes, options) {
        let mut batch = match batch {
            Ok(b) => b,
            Err(_) => {
                out.corrupt_at = Some(filter.position());
                break;
            }
        };
        let before = filter.position();
        // A control batch is read now, whatever its codec: read_committed goes by its marker.
        // (Kafka writes them uncompressed; one marker costs nothing to decompress.)
        if batch.is_control() && batch.decompress().is_err() {
            out.corrupt_at = Some(before.max(batch.base_offset()));
            break;
        }
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
        let (count, readable) = if batch.needs_decompression() {
            (declared_in(&batch, from, until), true)
        } else {
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
            (count, readable)
        };
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

/// The records a compressed batch declares within `from..until`: its count, bounded by the
/// offsets its header spans there.
fn declared_in(batch: &Batch, from: i64, until: i64) -> usize {
    let start = from.max(batch.base_offset());
    let end = until.min(batch.next_offset());
    let span = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    usize::try_from(batch.record_count()).map_or(0, |n| n.min(span))
}

#[cfg(test)]
mod tests;
