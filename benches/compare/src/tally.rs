//! What a client received: counts, the times of the first and the last record, and the
//! exactly-once check (every partition's offsets contiguous from 0 to its end, none twice).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Counts records as a client hands them to the application.
#[derive(Debug)]
pub struct Tally {
    started: SystemTime,
    first: Option<SystemTime>,
    /// When the last partition reached its end.
    last: Option<SystemTime>,
    /// Per partition: the offset it ends before, and the next offset expected.
    ends: Vec<i64>,
    next: Vec<i64>,
    /// Partitions not at their end yet.
    remaining: usize,
    records: u64,
    bytes: u64,
    /// Records at an offset below the next expected one: delivered again.
    duplicates: u64,
    /// Offsets skipped over: never delivered.
    missing: u64,
    /// Records of a partition not in the workload, or past a partition's end.
    unexpected: u64,
}

impl Tally {
    /// Nothing received yet, from partitions ending at `ends`.
    pub fn new(started: SystemTime, ends: &[i64]) -> Tally {
        Tally {
            started,
            first: None,
            last: None,
            ends: ends.to_vec(),
            next: vec![0; ends.len()],
            remaining: ends.iter().filter(|&&e| e > 0).count(),
            records: 0,
            bytes: 0,
            duplicates: 0,
            missing: 0,
            unexpected: 0,
        }
    }

    /// Counts one record of `partition` at `offset` with a `value_len`-byte value.
    #[inline]
    pub fn observe(&mut self, partition: i32, offset: i64, value_len: usize) {
        if self.first.is_none() {
            self.first = Some(SystemTime::now());
        }
        self.records += 1;
        self.bytes += value_len as u64;
        let p = partition as usize;
        let (Some(&end), Some(&next)) = (self.ends.get(p), self.next.get(p)) else {
            self.unexpected += 1;
            return;
        };
        if offset < next {
            self.duplicates += 1;
            return;
        }
        if offset >= end {
            self.unexpected += 1;
            return;
        }
        self.missing += (offset - next) as u64;
        self.next[p] = offset + 1;
        if offset + 1 == end {
            self.remaining -= 1;
            if self.remaining == 0 {
                self.last = Some(SystemTime::now());
            }
        }
    }

    /// Every partition has reached its end.
    pub fn done(&self) -> bool {
        self.remaining == 0
    }

    /// The report line: times are nanoseconds since the Unix epoch.
    pub fn report(&self, closed: SystemTime) -> serde_json::Value {
        let ns = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        json!({
            "records": self.records,
            "bytes": self.bytes,
            "started_ns": ns(self.started),
            "first_ns": self.first.map(ns),
            "last_ns": self.last.map(ns),
            "closed_ns": ns(closed),
            "complete": self.done(),
            "duplicates": self.duplicates,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "exactly_once": self.done()
                && self.duplicates == 0
                && self.missing == 0
                && self.unexpected == 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_offsets_are_exactly_once() {
        let mut t = Tally::new(SystemTime::now(), &[2, 1]);
        t.observe(0, 0, 10);
        t.observe(1, 0, 10);
        assert!(!t.done());
        t.observe(0, 1, 10);
        assert!(t.done());
        assert_eq!(t.report(SystemTime::now())["exactly_once"], true);
    }

    #[test]
    fn duplicates_and_gaps_are_counted() {
        let mut t = Tally::new(SystemTime::now(), &[4]);
        t.observe(0, 0, 1);
        t.observe(0, 0, 1);
        t.observe(0, 3, 1);
        t.observe(1, 0, 1);
        let r = t.report(SystemTime::now());
        assert_eq!(r["duplicates"], 1);
        assert_eq!(r["missing"], 2);
        assert_eq!(r["unexpected"], 1);
        assert_eq!(r["complete"], true);
        assert_eq!(r["exactly_once"], false);
    }
}
