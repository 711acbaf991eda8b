//! Records read where they lie in the Fetch answer: views that borrow the answer's bytes, for
//! an application that reads each record once and keeps none (no `Bytes` per key and value,
//! so no reference count raised and dropped, and no [`Record`] built).

use std::collections::vec_deque;
use std::fmt;

use bytes::Bytes;
use kcon_codec::records::{self as wire, Records, TimestampType};
use kcon_core::{Record, Topic};

use super::{Deliverable, Undecoded, finish_record};

/// The records of a part, in order, read in place: those decoded already, then those of its
/// batches ([`FetchedRecords::borrowed`](super::FetchedRecords::borrowed)).
#[derive(Clone)]
pub struct BorrowedRecords<'a> {
    topic: Option<Topic>,
    partition: i32,
    decoded: std::slice::Iter<'a, Record>,
    batches: vec_deque::Iter<'a, Deliverable>,
    walk: Option<Walk<'a>>,
    /// Records still to come: the batches' counts are exact once they were read (when the
    /// answer came, or decompressed for a part); a batch still compressed holds none to read
    /// in place and counts none.
    left: usize,
}

/// The walk of one batch's range.
#[derive(Clone)]
struct Walk<'a> {
    records: Records<'a>,
    from: i64,
    until: i64,
    /// Records of the range still to come.
    left: usize,
    leader_epoch: Option<i32>,
}

impl<'a> BorrowedRecords<'a> {
    pub(super) fn new(decoded: &'a [Record], undecoded: &'a Undecoded) -> Self {
        BorrowedRecords {
            topic: undecoded.topic,
            partition: undecoded.partition,
            decoded: decoded.iter(),
            batches: undecoded.batches.iter(),
            walk: None,
            left: decoded.len()
                + undecoded
                    .batches
                    .iter()
                    .filter(|d| !d.batch.needs_decompression())
                    .map(|d| d.count)
                    .sum::<usize>(),
        }
    }

    /// Records decoded already, read as borrowed ones.
    pub fn of_records(records: &'a [Record]) -> Self {
        BorrowedRecords {
            topic: None,
            partition: 0,
            decoded: records.iter(),
            batches: Default::default(),
            walk: None,
            left: records.len(),
        }
    }
}

impl<'a> Iterator for BorrowedRecords<'a> {
    type Item = BorrowedRecord<'a>;

    #[inline]
    fn next(&mut self) -> Option<BorrowedRecord<'a>> {
        if let Some(r) = self.decoded.next() {
            self.left -= 1;
            return Some(r.into());
        }
        loop {
            if let Some(w) = &mut self.walk {
                while w.left > 0 {
                    match w.records.next() {
                        Some(Ok(r)) if (w.from..w.until).contains(&r.offset()) => {
                            w.left -= 1;
                            self.left = self.left.saturating_sub(1);
                            return Some(BorrowedRecord(Inner::Wire {
                                // Invariant: an `Undecoded` with batches has its topic.
                                topic: self.topic.unwrap_or_else(|| Topic::new("")),
                                partition: self.partition,
                                leader_epoch: w.leader_epoch,
                                record: r,
                            }));
                        }
                        Some(Ok(_)) => {}
                        // The batch was read whole before (it is not compressed, or was
                        // decompressed and counted): its walk does not end or fail before its
                        // count. Were it to, what it left uncounted no longer comes.
                        _ => {
                            self.left = self.left.saturating_sub(w.left);
                            w.left = 0;
                        }
                    }
                }
            }
            let d = self.batches.next()?;
            if d.batch.needs_decompression() {
                continue;
            }
            self.walk = Some(Walk {
                records: match d.resume {
                    Some(mark) => d.batch.records_from(mark),
                    None => d.batch.records(),
                },
                from: d.from,
                until: d.until,
                left: d.count,
                leader_epoch: d.leader_epoch(),
            });
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for BorrowedRecords<'_> {}

impl std::iter::FusedIterator for BorrowedRecords<'_> {}

impl fmt::Debug for BorrowedRecords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BorrowedRecords")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

/// A record read where it lies in the Fetch answer: its key, value and headers are slices of
/// the answer's bytes (of the decompressed batch, for a compressed one), valid while the
/// batch is borrowed. [`to_record`](Self::to_record) makes a [`Record`] of it to keep (sharing
/// the answer's bytes, no copy).
#[derive(Clone, Copy)]
pub struct BorrowedRecord<'a>(Inner<'a>);

#[derive(Clone, Copy)]
enum Inner<'a> {
    Wire {
        topic: Topic,
        partition: i32,
        leader_epoch: Option<i32>,
        record: wire::Record<'a>,
    },
    Decoded(&'a Record),
}

/// A decoded record, read as a borrowed one (as [`BorrowedRecords::of_records`] lends each).
impl<'a> From<&'a Record> for BorrowedRecord<'a> {
    fn from(record: &'a Record) -> Self {
        BorrowedRecord(Inner::Decoded(record))
    }
}

impl<'a> BorrowedRecord<'a> {
    /// The topic.
    #[inline]
    pub fn topic(&self) -> &'static str {
        match self.0 {
            Inner::Wire { topic, .. } => topic.as_str(),
            Inner::Decoded(r) => r.topic.as_str(),
        }
    }

    /// The partition.
    #[inline]
    pub fn partition(&self) -> i32 {
        match self.0 {
            Inner::Wire { partition, .. } => partition,
            Inner::Decoded(r) => r.partition,
        }
    }

    /// The record's offset.
    #[inline]
    pub fn offset(&self) -> i64 {
        match self.0 {
            Inner::Wire { record, .. } => record.offset(),
            Inner::Decoded(r) => r.offset,
        }
    }

    /// The leader epoch of its batch; `None` for magic 0 and 1.
    #[inline]
    pub fn leader_epoch(&self) -> Option<i32> {
        match self.0 {
            Inner::Wire { leader_epoch, .. } => leader_epoch,
            Inner::Decoded(r) => r.leader_epoch,
        }
    }

    /// The timestamp in milliseconds since the epoch.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        match self.0 {
            Inner::Wire { record, .. } => record.timestamp(),
            Inner::Decoded(r) => r.timestamp,
        }
    }

    /// Whether the producer or the broker set the timestamp.
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        match self.0 {
            Inner::Wire { record, .. } => record.timestamp_type(),
            Inner::Decoded(r) => r.timestamp_type,
        }
    }

    /// The key, `None` when null.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        match self.0 {
            Inner::Wire { record, .. } => record.key(),
            Inner::Decoded(r) => r.key.as_deref(),
        }
    }

    /// The value, `None` when null (a tombstone).
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        match self.0 {
            Inner::Wire { record, .. } => record.value(),
            Inner::Decoded(r) => r.value.as_deref(),
        }
    }

    /// The headers in wire order, duplicates kept: (key, value).
    #[inline]
    pub fn headers(&self) -> BorrowedHeaders<'a> {
        BorrowedHeaders(match self.0 {
            Inner::Wire { record, .. } => HeadersInner::Wire(record.headers()),
            Inner::Decoded(r) => HeadersInner::Decoded(r.headers.iter()),
        })
    }

    /// The value of the last header named `key` (`Some(None)` for a null value), as
    /// [`Record::header`] finds it.
    pub fn header(&self, key: &str) -> Option<Option<&'a [u8]>> {
        self.headers()
            .filter(|(k, _)| *k == key.as_bytes())
            .last()
            .map(|(_, v)| v)
    }

    /// The record as a [`Record`] of its own, to keep past the batch: its key, value and
    /// headers share the answer's bytes (nothing is copied).
    pub fn to_record(&self) -> Record {
        match self.0 {
            Inner::Wire {
                topic,
                partition,
                leader_epoch,
                record,
            } => {
                let mut r = Record::new(
                    topic,
                    partition,
                    record.offset(),
                    record.key_bytes(),
                    record.value_bytes(),
                );
                finish_record(&mut r, &record, leader_epoch);
                r
            }
            Inner::Decoded(r) => r.clone(),
        }
    }
}

impl fmt::Debug for BorrowedRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BorrowedRecord")
            .field("topic", &self.topic())
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .field("timestamp", &self.timestamp())
            .field("key", &self.key().map(Bytes::copy_from_slice))
            .field("value", &self.value().map(Bytes::copy_from_slice))
            .finish_non_exhaustive()
    }
}

/// The headers of a [`BorrowedRecord`], in wire order: (key, value), `None` for a null value.
#[derive(Clone)]
pub struct BorrowedHeaders<'a>(HeadersInner<'a>);

#[derive(Clone)]
enum HeadersInner<'a> {
    Wire(wire::Headers<'a>),
    Decoded(std::slice::Iter<'a, (Bytes, Option<Bytes>)>),
}

impl<'a> Iterator for BorrowedHeaders<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            HeadersInner::Wire(h) => h.next().map(|h| (h.key(), h.value())),
            HeadersInner::Decoded(h) => h.next().map(|(k, v)| (&k[..], v.as_deref())),
        }
    }
}

impl fmt::Debug for BorrowedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}
