//! The records of one partition being handed out, one at a time or all at once.

use kcon_core::TopicPartition;
use kcon_fetch::FetchedRecords;

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
}

enum Remaining {
    Whole(Vec<Record>),
    Rest(std::vec::IntoIter<Record>),
}

impl Batch {
    pub(crate) fn new(r: FetchedRecords) -> Batch {
        Batch {
            partition: r.partition,
            records: Remaining::Whole(r.records),
            next_offset: r.next_offset,
            handed: None,
        }
    }

    /// The next record, if any.
    pub(crate) fn next(&mut self) -> Option<Record> {
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
        let records = match &mut self.records {
            Remaining::Whole(v) => std::mem::take(v),
            Remaining::Rest(rest) => rest.by_ref().collect(),
        };
        if let Some(last) = records.last() {
            self.handed = Some((self.next_offset, last.leader_epoch));
        }
        records
    }

    /// Every record, when none was handed out yet.
    pub(crate) fn fresh(&self) -> Option<&[Record]> {
        match &self.records {
            Remaining::Whole(v) if self.handed.is_none() => Some(v),
            _ => None,
        }
    }

    /// Keeps only the records not handed out yet before `offset` (where the partition's log
    /// diverged from its leader's): the batch then ends there. Whether any record is left to
    /// hand out.
    pub(crate) fn cut_at(&mut self, offset: i64) -> bool {
        let kept: Vec<Record> = match &mut self.records {
            Remaining::Whole(v) => std::mem::take(v),
            Remaining::Rest(rest) => rest.by_ref().collect(),
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
        match &self.records {
            Remaining::Whole(v) => v.is_empty(),
            Remaining::Rest(rest) => rest.len() == 0,
        }
    }

    /// The timestamp of the next record to hand out.
    pub(crate) fn next_timestamp(&self) -> Option<i64> {
        match &self.records {
            Remaining::Whole(v) => v.first(),
            Remaining::Rest(rest) => rest.as_slice().first(),
        }
        .map(|r| r.timestamp)
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = match &self.records {
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
