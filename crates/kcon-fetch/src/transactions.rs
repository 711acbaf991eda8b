//! read_committed filtering (KIP-98) over one partition's batches.
//!
//! A transactional producer's records are committed or aborted as a whole, by a control batch
//! (the commit or abort marker) that the transaction coordinator has the leader write after
//! them. A read_committed consumer must not see aborted records, yet it reads them before it
//! reads their marker; so the broker adds to each partition of a Fetch answer the list of
//! aborted transactions that overlap the returned data: (producer id, first offset). The
//! filter below follows the Java client's `CompletedFetch` (`nextFetchedRecord`,
//! `consumeAbortedTransactionsUpTo`, `isBatchAborted`, `containsAbortMarker`):
//!
//! 1. Before a batch of a producer is judged, every aborted transaction that began at or
//!    before the batch's last offset moves from the list into the set of aborted producers.
//! 2. An abort marker of a producer takes it out of the set: its later batches belong to a
//!    new transaction.
//! 3. A transactional batch of a producer in the set is skipped whole.
//! 4. Control batches never reach the application; the position moves past them.
//!
//! Records at or past the last stable offset are never returned: their transactions are still
//! open.

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use kcon_codec::kafka_protocol::messages::fetch_response;
use kcon_codec::records::{Batch, ControlRecordType, Record};

/// An aborted transaction of a Fetch answer's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbortedTransaction {
    /// The offset of the transaction's first record.
    pub first_offset: i64,
    /// The producer that aborted it.
    pub producer_id: i64,
}

impl From<&fetch_response::AbortedTransaction> for AbortedTransaction {
    fn from(t: &fetch_response::AbortedTransaction) -> Self {
        AbortedTransaction {
            first_offset: t.first_offset,
            producer_id: t.producer_id.0,
        }
    }
}

/// What to do with one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Hand the batch's records with offsets in `from..until` to the application.
    Deliver {
        /// The first offset to deliver (the fetch position: a compressed batch may start
        /// before it).
        from: i64,
        /// The first offset not to deliver (the last stable offset, or past the batch).
        until: i64,
    },
    /// The batch belongs to an aborted transaction: skip it.
    Aborted,
    /// A control batch (a transaction marker): skip it.
    Control,
    /// The batch starts at or past the last stable offset: stop here, fetch it again later.
    Unstable,
}

/// Which records a consumer may see of one partition's answer, batch by batch, in order.
///
/// Feed every batch of the partition's records, in order, to [`batch`](Self::batch); it says
/// what to do with each and keeps [`position`](Self::position), the offset to fetch next.
/// After [`BatchVerdict::Unstable`], stop: later batches are unstable too.
#[derive(Debug, Clone)]
pub struct TransactionFilter {
    read_committed: bool,
    /// The answer's aborted transactions not yet reached, earliest first.
    pending: BinaryHeap<Reverse<AbortedTransaction>>,
    /// Producers whose current transaction is aborted.
    aborted_producers: HashSet<i64>,
    last_stable_offset: i64,
    position: i64,
}

impl TransactionFilter {
    /// A read_committed filter for an answer fetched from `fetch_offset`, with its aborted
    /// transactions and last stable offset (-1 when the broker sent none: no cut).
    pub fn read_committed(
        fetch_offset: i64,
        aborted: impl IntoIterator<Item = AbortedTransaction>,
        last_stable_offset: i64,
    ) -> Self {
        TransactionFilter {
            read_committed: true,
            pending: aborted.into_iter().map(Reverse).collect(),
            aborted_producers: HashSet::new(),
            last_stable_offset: if last_stable_offset < 0 {
                i64::MAX
            } else {
                last_stable_offset
            },
            position: fetch_offset,
        }
    }

    /// A read_uncommitted filter: every record is delivered, control batches are skipped.
    pub fn read_uncommitted(fetch_offset: i64) -> Self {
        TransactionFilter {
            read_committed: false,
            pending: BinaryHeap::new(),
            aborted_producers: HashSet::new(),
            last_stable_offset: i64::MAX,
            position: fetch_offset,
        }
    }

    /// The offset to fetch next: past every batch judged so far, delivered or skipped (a
    /// compacted batch's last offset counts, so the next fetch never asks for it again, as in
    /// Java's `CompletedFetch`), but never past the last stable offset.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Judges the next batch. An unreadable control record is a corrupt batch.
    ///
    /// Batches wholly before the fetch position (a broker answers from the start of the batch
    /// holding the offset asked for) still go through the aborted-transaction bookkeeping, as
    /// in Java: an abort marker among them ends its producer's aborted transaction.
    pub fn batch(&mut self, batch: &Batch) -> kcon_codec::Result<BatchVerdict> {
        if batch.base_offset() >= self.last_stable_offset {
            return Ok(BatchVerdict::Unstable);
        }
        if self.read_committed && batch.producer_id() >= 0 {
            self.consume_aborted_up_to(batch.last_offset());
            if is_abort_marker(batch)? {
                self.aborted_producers.remove(&batch.producer_id());
            } else if batch.is_transactional()
                && self.aborted_producers.contains(&batch.producer_id())
            {
                self.advance_past(batch);
                return Ok(BatchVerdict::Aborted);
            }
        }
        if batch.is_control() {
            self.advance_past(batch);
            return Ok(BatchVerdict::Control);
        }
        let from = self.position;
        self.advance_past(batch);
        Ok(BatchVerdict::Deliver {
            from,
            until: self.position,
        })
    }

    /// Java `consumeAbortedTransactionsUpTo`: transactions that began by `offset`.
    fn consume_aborted_up_to(&mut self, offset: i64) {
        while let Some(Reverse(t)) = self.pending.peek() {
            if t.first_offset > offset {
                break;
            }
            self.aborted_producers.insert(t.producer_id);
            self.pending.pop();
        }
    }

    /// Moves the position past `batch`, or to the last stable offset if the batch straddles
    /// it (offsets between its last record below the LSO and the LSO do not exist in it).
    fn advance_past(&mut self, batch: &Batch) {
        self.position = self
            .position
            .max(batch.next_offset().min(self.last_stable_offset));
    }
}

/// Java `containsAbortMarker`: a control batch whose first record is an abort marker.
fn is_abort_marker(batch: &Batch) -> kcon_codec::Result<bool> {
    if !batch.is_control() {
        return Ok(false);
    }
    let Some(first) = batch.records().next() else {
        return Ok(false);
    };
    Ok(matches!(
        first?.control()?,
        Some(c) if c.kind == ControlRecordType::Abort
    ))
}

/// The committed records of one partition's batches, and the position after them.
#[derive(Debug)]
pub struct Committed<'a> {
    /// The records to hand to the application, in offset order.
    pub records: Vec<Record<'a>>,
    /// The offset to fetch next.
    pub position: i64,
}

/// The records of `batches` a consumer may see, as a pure function: read_committed when
/// `aborted` is `Some` (the answer's aborted-transactions list), read_uncommitted otherwise.
/// Stops at the first corrupt record, returning its error.
pub fn committed_records<'a>(
    batches: &'a [Batch],
    fetch_offset: i64,
    aborted: Option<&[AbortedTransaction]>,
    last_stable_offset: i64,
) -> kcon_codec::Result<Committed<'a>> {
    let mut filter = match aborted {
        Some(list) => TransactionFilter::read_committed(
            fetch_offset,
            list.iter().copied(),
            last_stable_offset,
        ),
        None => TransactionFilter::read_uncommitted(fetch_offset),
    };
    let mut records = Vec::new();
    for batch in batches {
        match filter.batch(batch)? {
            BatchVerdict::Deliver { from, until } => {
                for r in batch.records() {
                    let r = r?;
                    if (from..until).contains(&r.offset()) {
                        records.push(r);
                    }
                }
            }
            BatchVerdict::Aborted | BatchVerdict::Control => {}
            BatchVerdict::Unstable => break,
        }
    }
    Ok(Committed {
        records,
        position: filter.position(),
    })
}
