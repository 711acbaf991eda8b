//! Records as the application gets them: owned values whose key, value and header values are
//! `Bytes` slices of the Fetch answer (no copy for uncompressed data; a compressed batch is
//! decompressed once, by the decoder, into a buffer of its own).
//!
//! Reading an answer has two steps. The fetch loop checks every batch when the answer comes
//! (CRC, lengths, transactions; an uncompressed batch's records too, read in place) and keeps
//! the batches to deliver as they are, a compressed one still compressed; a record becomes a
//! [`Record`] only when it is handed out, at most `max.poll.records` at a time, and a
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

use bytes::Bytes;
use kcon_codec::records::{Batch, DecodeOptions, RecordBatches, Records, RecordsMark};
use kcon_core::{Record, Topic, TopicPartition};

use crate::transactions::{AbortedTransaction, BatchVerdict, TransactionFilter};

mod borrowed;

pub use borrowed::{BorrowedHeaders, BorrowedRecord, BorrowedRecords};

/// Records of one partition from one Fetch answer, in offset order.
///
/// The application's side of the fetch loop ([`Handout`](crate::handout::Handout)) hands
/// these out with every record in `records`. A [`FetchMachine`](crate::FetchMachine)'s event
/// holds them still undecoded: [`take`](Self::take) or [`decoded`](Self::decoded) turns them
/// into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecords {
    /// The partition.
    pub partition: TopicPartition,
    /// The records decoded so far.
    pub records: Vec<Record>,
    /// The position after them: the next offset the fetcher reads (past control batches and
    /// aborted transactions too, so it may be past the last record's offset + 1).
    pub next_offset: i64,
    /// The high watermark the answer reported.
    pub high_watermark: i64,
    /// The last stable offset the answer reported (the end under `read_committed`); -1 when
    /// unknown.
    pub last_stable_offset: i64,
    /// The bytes of the answer these records stand for, and the decompressed bytes held for
    /// the records not handed out yet: what the prefetch budget counts until the application
    /// has taken them. A part handed out carries what leaves the budget with it.
    pub size: usize,
    /// The bytes of the Fetch answer these records came in (the partition's record batches as
    /// fetched, compressed or not): what the consumer counts as bytes consumed. Parts taken
    /// with [`take`](Self::take) share them in proportion to their records, the last part
    /// taking what is left, so the bytes are counted as their records are handed out.
    pub bytes: usize,
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
    /// Records of `partition`, all decoded, that came in `size` bytes (their [`bytes`](Self::bytes)
    /// too).
    pub fn new(
        partition: TopicPartition,
        records: Vec<Record>,
        next_offset: i64,
        high_watermark: i64,
        size: usize,
    ) -> Self {
        FetchedRecords {
            partition,
            records,
            next_offset,
            high_watermark,
            last_stable_offset: -1,
            size,
            bytes: size,
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

    /// The position the answer was fetched from, while no part was taken yet: its fetch
    /// offset, and the leader epoch the partition's position had there. The fetch loop moves
    /// a paused partition back there when it drops these records before handing them out.
    pub(crate) fn fetched_from(&self) -> (i64, Option<i32>) {
        self.undecoded.fetched_from
    }

    /// The timestamp of the last record, decoded or not: known for a part taken with
    /// [`take`](Self::take) or [`take_undecoded`](Self::take_undecoded) (`None` only when it
    /// is empty), and for an answer whose last batch is not compressed.
    pub fn last_timestamp(&self) -> Option<i64> {
        match self.undecoded.batches.back() {
            Some(d) => d.last.map(|l| l.timestamp),
            None => self.records.last().map(|r| r.timestamp),
        }
    }

    /// The leader epoch of the last record, decoded or not.
    pub fn last_leader_epoch(&self) -> Option<i32> {
        let u = &self.undecoded;
        match u.batches.back() {
            Some(d) => d.leader_epoch(),
            None => self.records.last()?.leader_epoch,
        }
    }

    /// Keeps only the records before `offset`, where the partition's log diverged from the
    /// leader's (the leader no longer has the records from there), and counts none of the
    /// answer's bytes: the fetch loop dropped them from the prefetch budget when it moved the
    /// partition there. Returns whether records are left.
    pub(crate) fn cut_at(&mut self, offset: i64) -> bool {
        self.size = 0;
        self.undecoded.held = 0;
        if self.next_offset > offset {
            self.records.retain(|r| r.offset < offset);
            self.undecoded.cut_at(offset);
            self.next_offset = offset;
        }
        !self.is_empty()
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
        self.take_part(max, true)
    }

    /// [`take`](Self::take), the records of the part left where they lie: its batches
    /// decompressed and checked (a corrupt record ends the part as it ends `take`'s) but no
    /// record decoded. [`borrowed`](Self::borrowed) reads them in place; `take` or
    /// [`decoded`](Self::decoded) on the part decodes them. A batch whose every record goes
    /// with the part moves as it is, unread; one the part ends inside is read up to the end
    /// of the part, to find where the rest starts.
    pub fn take_undecoded(&mut self, max: usize) -> FetchedRecords {
        self.take_part(max, false)
    }

    fn take_part(&mut self, max: usize, decode: bool) -> FetchedRecords {
        let max = max.max(1);
        let held_before = self.undecoded.held;
        let mut records = std::mem::take(&mut self.records);
        let mut kept = self.undecoded.part();
        if records.len() > max {
            // Decoded already: the rest stays in front of what is not.
            self.records = records.split_off(max);
        } else {
            let want = max - records.len();
            let dest = if decode {
                Dest::Records(&mut records)
            } else {
                Dest::Batches(&mut kept)
            };
            self.undecoded.take_into(dest, want);
        }
        if self.is_empty() {
            let u = &mut self.undecoded;
            u.held = 0;
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
                last_stable_offset: self.last_stable_offset,
                // Everything counted for the answer leaves with its last part.
                size: std::mem::take(&mut self.size),
                bytes: std::mem::take(&mut self.bytes),
                undecoded: kept,
                corrupt,
                held_more: 0,
            };
        }
        // The decompressed batch the rest waits in is the only one held for it.
        let held_after = self.undecoded.held;
        let released = held_before.saturating_sub(held_after);
        let held_more = held_after.saturating_sub(held_before);
        self.size = self.size.saturating_sub(released) + held_more;
        // The answer's bytes go with the records: this part's share, by its records against
        // those left (a count exact unless compaction thinned a batch not decoded yet).
        let taken = records.len() + kept.len();
        let share = self.bytes as u128 * taken as u128 / (taken + self.len()) as u128;
        let bytes = (share as usize).min(self.bytes);
        self.bytes -= bytes;
        // Invariant: `max` ≥ 1 and records are left, so the part holds `max` of them; a batch
        // kept whole or in part knows its last record's offset.
        let last = match kept.batches.back() {
            Some(d) => d.last.map(|l| l.offset),
            None => records.last().map(|r| r.offset),
        };
        let after = last.map_or(self.next_offset, |offset| offset + 1);
        let mut part = FetchedRecords::new(
            self.partition.clone(),
            records,
            after,
            self.high_watermark,
            released,
        );
        part.undecoded = kept;
        part.bytes = bytes;
        part.held_more = held_more;
        part.last_stable_offset = self.last_stable_offset;
        part
    }

    /// The records, read where they lie in the answer (those already decoded first, as
    /// records): nothing is copied and no reference counted. The records of a part taken with
    /// [`take_undecoded`](Self::take_undecoded) or [`take`](Self::take) are all there; a
    /// compressed batch not decompressed yet (records as the fetch loop handed them over,
    /// before any part was taken) reads as none, and counts as none in the walk's length.
    pub fn borrowed(&self) -> BorrowedRecords<'_> {
        BorrowedRecords::new(&self.records, &self.undecoded)
    }
}

/// Where [`Undecoded::take_into`] puts the records it takes.
enum Dest<'a> {
    /// Decoded, one [`Record`] each.
    Records(&'a mut Vec<Record>),
    /// Left where they lie: the batches (or the ranges of them) that hold them.
    Batches(&'a mut Undecoded),
}

/// Batches of one partition, checked and kept as received until their records are handed
/// out. A part that ends inside a batch leaves the batch first in line, marked where its
/// walk stopped: the rest of its records are decoded when a later part takes them, never
/// ahead of time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Undecoded {
    topic: Option<Topic>,
    partition: i32,
    /// Bytes of the buffer the first batch was decompressed into when a part ending inside
    /// it was taken (0 for a batch read in place, or decompressed when the answer came and
    /// counted then).
    held: usize,
    batches: VecDeque<Deliverable>,
    /// Records in `batches` (within their ranges; for a compressed batch not decompressed
    /// yet, as declared; exact from the first part taken of it).
    in_batches: usize,
    /// The leader epoch of the last record decoded, or of the position the answer was
    /// fetched from: where the position goes back to with a corrupt record after it.
    epoch: Option<i32>,
    /// A corrupt record found while decoding: nothing at or after this offset is handed out.
    corrupt_at: Option<i64>,
    /// The position the answer was fetched from: its fetch offset, and the leader epoch the
    /// position had there (what `epoch` starts as).
    fetched_from: (i64, Option<i32>),
}

/// A batch to deliver: its records with offsets in `from..until` (`count` of them; for a
/// compressed batch not decompressed yet, as its header declares them), read from `resume`
/// when a part already took the records before `from`.
#[derive(Debug, Clone)]
struct Deliverable {
    batch: Batch,
    from: i64,
    until: i64,
    count: usize,
    /// The last of the `count` records: known once they were counted (a batch read when the
    /// answer came, or decompressed since); `None` for a compressed batch not decompressed
    /// yet.
    last: Option<Last>,
    resume: Option<RecordsMark>,
    /// Whether the walk fails after the `count` records: found when a part ending inside a
    /// batch decompressed for it counted the rest.
    corrupt_after: bool,
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
            && self.held == other.held
            && self.in_batches == other.in_batches
            && self.epoch == other.epoch
            && self.corrupt_at == other.corrupt_at
            && self.fetched_from == other.fetched_from
            && self.batches.len() == other.batches.len()
            && self.batches.iter().zip(&other.batches).all(|(a, b)| {
                (a.from, a.until, a.count, a.last, a.resume, a.corrupt_after)
                    == (b.from, b.until, b.count, b.last, b.resume, b.corrupt_after)
                    && a.batch.as_bytes() == b.batch.as_bytes()
            })
    }
}

impl Eq for Undecoded {}

impl Undecoded {
    pub(crate) fn len(&self) -> usize {
        self.in_batches
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same partition's records, none yet: a part of these taken with its records left
    /// where they lie.
    fn part(&self) -> Undecoded {
        Undecoded {
            topic: self.topic,
            partition: self.partition,
            epoch: self.epoch,
            fetched_from: self.fetched_from,
            ..Undecoded::default()
        }
    }

    fn push(&mut self, d: Deliverable) {
        self.in_batches += d.count;
        self.batches.push_back(d);
    }

    /// Moves up to `want` records to `dest`, in order, decompressing batches as needed; a
    /// batch whose records outnumber what is wanted stays first, marked where its walk
    /// stopped. A corrupt record stops it: the records before it go, the batches after it are
    /// dropped, and `corrupt_at` says where.
    fn take_into(&mut self, mut dest: Dest<'_>, mut want: usize) {
        while want > 0 {
            let Some(d) = self.batches.front_mut() else {
                break;
            };
            // Decompressed only now that its records are wanted: until here the batch cost its
            // compressed bytes alone.
            let decompressed_now = d.batch.needs_decompression();
            if d.batch.decompress().is_err() {
                let from = d.from;
                self.stop_at(from);
                return;
            }
            let leader_epoch = d.leader_epoch();
            if let Dest::Batches(part) = &mut dest
                && !decompressed_now
                && d.count <= want
                && !d.corrupt_after
            {
                // Every record goes, counted already and readable to the batch's end: the
                // batch moves as it is, unread.
                let Some(d) = self.batches.pop_front() else {
                    unreachable!("the batch in front was there just now")
                };
                self.in_batches -= d.count;
                self.held = 0;
                want -= d.count;
                self.epoch = leader_epoch.or(self.epoch);
                part.push(d);
                continue;
            }
            // A count is exact once the batch was read (when the answer came, or decompressed
            // for an earlier part): no walk goes past its records. A batch decompressed just
            // now has its header's count, so its walk goes to its end.
            let most = if decompressed_now {
                want
            } else {
                want.min(d.count)
            };
            let mut walk = match d.resume {
                Some(mark) => d.batch.records_from(mark),
                None => d.batch.records(),
            };
            let mut taken = 0;
            // The first offset of the batch's range not taken yet.
            let mut next = d.from;
            let mut failed = false;
            // Whether the walk came to the batch's end.
            let mut ended = false;
            // The timestamp of the last record taken, for a part that keeps its records.
            let mut last_timestamp = 0;
            // The walk is written out for each destination: one loop with a step per
            // destination, or one generic walk taking the step as a closure, cost 2 % and 5-10 %
            // more CPU per record on the consume paths (1,000,000 records of 100 B).
            match &mut dest {
                Dest::Records(out) => {
                    // The count is bounded by the records' bytes now (`Batch::decompress` checks
                    // a compressed batch's), so a hostile header cannot size this.
                    out.reserve(most.min(d.count));
                    // Invariant: set with the first batch.
                    let topic = self.topic.expect("a topic with the batches");
                    while taken < most {
                        // An uncompressed batch was read whole when the answer came; a
                        // compressed one is read for the first time here.
                        let r = match walk.next() {
                            None => {
                                ended = true;
                                break;
                            }
                            Some(Ok(r)) => r,
                            Some(Err(_)) => {
                                failed = true;
                                break;
                            }
                        };
                        if !(d.from..d.until).contains(&r.offset()) {
                            continue;
                        }
                        next = r.offset() + 1;
                        // `Record` is kcon-core's and open to new fields: made by its
                        // constructor, the rest of its public fields set where it lies in `out`
                        // (a record finished on the stack and then pushed is copied twice: 4 %
                        // more instructions per record).
                        out.push(Record::new(
                            topic,
                            self.partition,
                            r.offset(),
                            r.key_bytes(),
                            r.value_bytes(),
                        ));
                        let Some(record) = out.last_mut() else {
                            unreachable!("a record was pushed just now")
                        };
                        finish_record(record, &r, leader_epoch);
                        taken += 1;
                    }
                }
                Dest::Batches(_) => {
                    while taken < most {
                        match walk.next() {
                            None => {
                                ended = true;
                                break;
                            }
                            Some(Ok(r)) if (d.from..d.until).contains(&r.offset()) => {
                                next = r.offset() + 1;
                                last_timestamp = r.timestamp();
                                taken += 1;
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                }
            }
            if taken > 0 {
                // Magic 0 and 1 records carry no epoch: the one known stays.
                self.epoch = leader_epoch.or(self.epoch);
                if let Dest::Batches(part) = &mut dest {
                    part.push(Deliverable {
                        batch: d.batch.clone(),
                        from: d.from,
                        until: next,
                        count: taken,
                        last: Some(Last {
                            offset: next - 1,
                            timestamp: last_timestamp,
                        }),
                        resume: d.resume,
                        corrupt_after: false,
                    });
                }
            }
            want -= taken;
            // Where the next part starts, and what the batch still holds from there: exact
            // for a batch read when the answer came; a batch decompressed just now is counted
            // here, once.
            let mark = walk.mark();
            let (left, last, bad_after) = if failed || ended {
                (0, None, false)
            } else if decompressed_now {
                let c = count_within(d.batch.records_from(mark), next, d.until);
                (c.count, c.last, c.unreadable)
            } else {
                (d.count.saturating_sub(taken), d.last, d.corrupt_after)
            };
            if failed || (left == 0 && bad_after) {
                self.stop_at(next);
                return;
            }
            self.in_batches -= d.count;
            if left == 0 {
                self.batches.pop_front();
                self.held = 0;
                continue;
            }
            d.count = left;
            d.last = last;
            d.corrupt_after = bad_after;
            d.from = next;
            d.resume = Some(mark);
            self.in_batches += left;
            if decompressed_now {
                self.held = d.batch.decompressed_len();
            }
        }
    }

    /// Drops the records from `offset` on.
    fn cut_at(&mut self, offset: i64) {
        self.batches.retain(|d| d.from < offset);
        for d in &mut self.batches {
            if d.until <= offset {
                continue;
            }
            d.until = offset;
            let (count, last) = if d.batch.needs_decompression() {
                (declared_in(&d.batch, d.from, offset), None)
            } else {
                let walk = match d.resume {
                    Some(mark) => d.batch.records_from(mark),
                    None => d.batch.records(),
                };
                let c = count_within(walk, d.from, offset);
                (c.count, c.last)
            };
            // An unreadable record after those counted may now lie past the cut.
            d.corrupt_after &= count == d.count;
            d.count = count;
            d.last = last;
        }
        self.batches.retain(|d| d.count > 0);
        self.in_batches = self.batches.iter().map(|d| d.count).sum();
        self.corrupt_at = self.corrupt_at.filter(|&c| c < offset);
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
    topic: Topic,
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
            topic: Some(topic),
            partition: partition.partition,
            epoch: position_epoch,
            fetched_from: (fetch_offset, position_epoch),
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
        let counted = if batch.needs_decompression() {
            Counted {
                count: declared_in(&batch, from, until),
                last: None,
                unreadable: false,
            }
        } else {
            count_within(batch.records(), from, until)
        };
        let Counted {
            count,
            last,
            unreadable,
        } = counted;
        if unreadable {
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
                last,
                resume: None,
                corrupt_after: false,
            });
        }
        out.position = filter.position();
    }
    out
}

/// Every record of a share fetch answer's `bytes` for `partition` from offset `from` on,
/// decoded (the broker filtered transactions for the group already), and the offset of the
/// first corrupt record, when one stopped the walk.
pub(crate) fn share_records(
    partition: &TopicPartition,
    topic: Topic,
    bytes: Bytes,
    from: i64,
) -> (Vec<Record>, Option<i64>) {
    let checked = check_partition(partition, topic, bytes, from, None, None, i64::MAX);
    let mut fetched = FetchedRecords::new(partition.clone(), Vec::new(), checked.position, -1, 0);
    fetched.undecoded = checked.batches;
    let decoded = fetched.decoded();
    let corrupt = match (decoded.corrupt.map(|c| c.offset), checked.corrupt_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (decoded.records, corrupt)
}

/// The offset and timestamp of a batch's last record within its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Last {
    offset: i64,
    timestamp: i64,
}

/// What a walk of a batch's records found within a range of offsets.
#[derive(Debug, Clone, Copy)]
struct Counted {
    count: usize,
    /// The last record counted.
    last: Option<Last>,
    /// Whether the walk met an unreadable record (after those counted).
    unreadable: bool,
}

/// The records of `walk` with offsets in `from..until`, read to the walk's end or its first
/// unreadable record.
fn count_within(walk: Records<'_>, from: i64, until: i64) -> Counted {
    let mut c = Counted {
        count: 0,
        last: None,
        unreadable: false,
    };
    for r in walk {
        match r {
            Ok(r) if (from..until).contains(&r.offset()) => {
                c.count += 1;
                c.last = Some(Last {
                    offset: r.offset(),
                    timestamp: r.timestamp(),
                });
            }
            Ok(_) => {}
            Err(_) => {
                c.unreadable = true;
                break;
            }
        }
    }
    c
}

/// Sets what [`Record::new`] leaves at its default in `record`, made of `r`: its leader
/// epoch, timestamp and headers.
#[inline]
fn finish_record(
    record: &mut Record,
    r: &kcon_codec::records::Record<'_>,
    leader_epoch: Option<i32>,
) {
    record.leader_epoch = leader_epoch;
    record.timestamp = r.timestamp();
    record.timestamp_type = r.timestamp_type();
    // Most records have none: no call to collect them.
    if r.header_count() > 0 {
        record.headers = r
            .headers()
            .map(|h| (h.key_bytes(), h.value_bytes()))
            .collect();
    }
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
