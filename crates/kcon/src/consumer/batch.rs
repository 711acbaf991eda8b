//! The records of one partition being handed out: one at a time, all at once, or lent to be
//! read in place.

use kcon_core::TopicPartition;
use kcon_fetch::{BorrowedRecords, FetchedRecords};

use crate::record::Record;

/// Records of one partition being handed out.
pub(crate) struct Batch {
    pub(crate) partition: TopicPartition,
    /// The records not handed out yet. The Vec the fetcher made stays whole until `recv`
    /// takes a first record, so `recv_batch` hands it over without moving a record.
    records: Remaining,
    /// The position after the batch (past control batches too).
    next_offset: i64,
    /// The position after the last record handed out, and that record's epoch.
    pub(crate) handed: Option<(i64, Option<i32>)>,
    /// Whether the records left were lent out to be read in place
    /// ([`lend`](Self::lend)): handed out, kept here while they are read.
    lent: bool,
}

enum Remaining {
    /// Records left where they lie in the Fetch answer, decoded only if asked for one by one
    /// or as a Vec.
    InPlace(FetchedRecords),
    Whole(Vec<Record>),
    Rest(std::vec::IntoIter<Record>),
}

impl Batch {
    pub(crate) fn new(r: FetchedRecords) -> Batch {
        let (partition, next_offset) = (r.partition.clone(), r.next_offset);
        let records = if r.len() == r.records.len() {
            Remaining::Whole(r.records)
        } else {
            Remaining::InPlace(r)
        };
        Batch {
            partition,
            records,
            next_offset,
            handed: None,
            lent: false,
        }
    }

    /// The records decoded, when they were left where they lie.
    fn decode(&mut self) {
        if matches!(self.records, Remaining::InPlace(_))
            && let Remaining::InPlace(r) =
                std::mem::replace(&mut self.records, Remaining::Whole(Vec::new()))
        {
            self.records = Remaining::Whole(r.decoded().records);
        }
    }

    /// The next record, if any.
    pub(crate) fn next(&mut self) -> Option<Record> {
        if self.lent {
            return None;
        }
        self.decode();
        if let Remaining::Whole(v) = &mut self.records {
            self.records = Remaining::Rest(std::mem::take(v).into_iter());
        }
        let Remaining::Rest(rest) = &mut self.records else {
            return None;
        };
        let record = rest.next()?;
        let next = if rest.len() == 0 {
            self.next_offset
        } else {
            record.offset + 1
        };
        self.handed = Some((next, record.leader_epoch));
        Some(record)
    }

    /// Every record not handed out yet, at once.
    pub(crate) fn take_rest(&mut self) -> Vec<Record> {
        if self.lent {
            return Vec::new();
        }
        self.decode();
        let records = match &mut self.records {
            Remaining::Whole(v) => std::mem::take(v),
            Remaining::Rest(rest) => rest.by_ref().collect(),
            Remaining::InPlace(_) => Vec::new(),
        };
        if let Some(last) = records.last() {
            self.handed = Some((self.next_offset, last.leader_epoch));
        }
        records
    }

    /// Every record not handed out yet, lent to be read in place, with the partition: handed
    /// out now (the batch is done), kept here until the batch is finished. `None` when none is
    /// left.
    pub(crate) fn lend(&mut self) -> Option<(&TopicPartition, BorrowedRecords<'_>)> {
        if self.is_done() {
            return None;
        }
        let epoch = match &self.records {
            Remaining::InPlace(r) => r.last_leader_epoch(),
            Remaining::Whole(v) => v.last().and_then(|r| r.leader_epoch),
            Remaining::Rest(rest) => rest.as_slice().last().and_then(|r| r.leader_epoch),
        };
        self.handed = Some((self.next_offset, epoch));
        self.lent = true;
        let records = match &self.records {
            Remaining::InPlace(r) => r.borrowed(),
            Remaining::Whole(v) => BorrowedRecords::of_records(v),
            Remaining::Rest(rest) => BorrowedRecords::of_records(rest.as_slice()),
        };
        Some((&self.partition, records))
    }

    /// Its partition and every record, when none was handed out yet (decoded now if they
    /// were left where they lie).
    pub(crate) fn fresh(&mut self) -> Option<(&TopicPartition, &[Record])> {
        if self.handed.is_some() {
            return None;
        }
        self.decode();
        match &self.records {
            Remaining::Whole(v) => Some((&self.partition, v)),
            _ => None,
        }
    }

    /// Keeps only the records not handed out yet before `offset` (where the partition's log
    /// diverged from its leader's): the batch then ends there. Whether any record is left to
    /// hand out.
    pub(crate) fn cut_at(&mut self, offset: i64) -> bool {
        if self.lent {
            return false;
        }
        self.decode();
        let kept: Vec<Record> = match &mut self.records {
            Remaining::Whole(v) => std::mem::take(v),
            Remaining::Rest(rest) => rest.by_ref().collect(),
            Remaining::InPlace(_) => Vec::new(),
        }
        .into_iter()
        .filter(|r| r.offset < offset)
        .collect();
        self.next_offset = self.next_offset.min(offset);
        let left = !kept.is_empty();
        self.records = Remaining::Rest(kept.into_iter());
        left
    }

    /// Whether every record was handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.lent
            || match &self.records {
                Remaining::InPlace(r) => r.is_empty(),
                Remaining::Whole(v) => v.is_empty(),
                Remaining::Rest(rest) => rest.len() == 0,
            }
    }

    /// The timestamp of the next record to hand out.
    pub(crate) fn next_timestamp(&self) -> Option<i64> {
        if self.lent {
            return None;
        }
        match &self.records {
            Remaining::InPlace(r) => r.borrowed().next().map(|r| r.timestamp()),
            Remaining::Whole(v) => v.first().map(|r| r.timestamp),
            Remaining::Rest(rest) => rest.as_slice().first().map(|r| r.timestamp),
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = match &self.records {
            _ if self.lent => 0,
            Remaining::InPlace(r) => r.len(),
            Remaining::Whole(v) => v.len(),
            Remaining::Rest(rest) => rest.len(),
        };
        f.debug_struct("Batch")
            .field("partition", &self.partition)
            .field("left", &left)
            .field("next_offset", &self.next_offset)
            .field("handed", &self.handed)
            .finish()
    }
}
