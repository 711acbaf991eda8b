//! What the record policies count: per partition, records processed, retried, skipped and
//! dead-lettered; the breaker's trips; the dead-letter rate. Counted by the policy machine,
//! published to a handle any task can read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::TopicPartition;

/// How far back [`PolicyMetrics::dead_letter_rate`] looks.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// One partition's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionCounts {
    /// Records the handler processed.
    pub processed: u64,
    /// Retries: tries that failed retriably and were scheduled again (a share consumer's
    /// records: released, for the group to hand out again).
    pub retried: u64,
    /// Records that failed for good and were skipped (a share consumer's: rejected).
    pub skipped: u64,
    /// Records that failed for good and were acknowledged by the dead-letter topic.
    pub dead_lettered: u64,
    /// The bytes of the commit metadata last written for the partition (the records done
    /// with above its committed offset, when they finish out of order; 0 when none).
    pub metadata_bytes: usize,
    /// Times those records did not all fit in `offset.metadata.max.bytes` (4,096) and the
    /// metadata named only the first of them: a restart processes the rest again.
    pub metadata_cut: u64,
    /// Records passed over because the metadata committed with the offset the partition was
    /// assigned at said they were done with (by this member before a restart, or by the
    /// partition's last owner).
    pub done_before: u64,
    /// How far the records received run ahead of the partition's lowest record not done
    /// with (its committed offset when next committed), when the snapshot was taken: 0 when
    /// every record received is done with.
    pub gap: i64,
}

/// The policy machine's counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    partitions: BTreeMap<TopicPartition, PartitionCounts>,
    breaker_trips: u64,
    dead_letter_failures: u64,
    /// Dead letters written per second over the last [`RATE_WINDOW`]: (the second's start,
    /// count), oldest first.
    recent: VecDeque<(Instant, u64)>,
}

impl Counts {
    pub(crate) fn processed(&mut self, tp: &TopicPartition) {
        self.of(tp).processed += 1;
    }

    pub(crate) fn retried(&mut self, tp: &TopicPartition) {
        self.of(tp).retried += 1;
    }

    pub(crate) fn skipped(&mut self, tp: &TopicPartition) {
        self.of(tp).skipped += 1;
    }

    pub(crate) fn dead_lettered(&mut self, tp: &TopicPartition, now: Instant) {
        self.of(tp).dead_lettered += 1;
        match self.recent.back_mut() {
            Some((start, n)) if now.saturating_duration_since(*start) < Duration::from_secs(1) => {
                *n += 1;
            }
            _ => self.recent.push_back((now, 1)),
        }
        self.forget_before(now);
    }

    pub(crate) fn dead_letter_failed(&mut self) {
        self.dead_letter_failures += 1;
    }

    /// Commit metadata of `bytes` was written for `tp`, naming every record done with above
    /// its committed offset or (not `complete`) the first of them.
    pub(crate) fn metadata_written(&mut self, tp: &TopicPartition, bytes: usize, complete: bool) {
        let c = self.of(tp);
        c.metadata_bytes = bytes;
        c.metadata_cut += u64::from(!complete);
    }

    /// `n` records of `tp` passed over: the commit's metadata said they were done with.
    pub(crate) fn done_before(&mut self, tp: &TopicPartition, n: u64) {
        self.of(tp).done_before += n;
    }

    pub(crate) fn breaker_tripped(&mut self) {
        self.breaker_trips += 1;
    }

    /// The snapshot at `now`.
    #[cfg(test)]
    pub(crate) fn snapshot(
        &self,
        now: Instant,
        breaker_open: bool,
        waiting: usize,
    ) -> PolicyMetrics {
        self.snapshot_with(now, breaker_open, waiting, 0, 0)
    }

    /// The snapshot at `now`, with the records in the handler and those buffered (received,
    /// not started).
    pub(crate) fn snapshot_with(
        &self,
        now: Instant,
        breaker_open: bool,
        waiting: usize,
        running: usize,
        buffered: usize,
    ) -> PolicyMetrics {
        let sum = |f: fn(&PartitionCounts) -> u64| self.partitions.values().map(f).sum();
        let recent: u64 = self
            .recent
            .iter()
            .filter(|(start, _)| now.saturating_duration_since(*start) < RATE_WINDOW)
            .map(|(_, n)| n)
            .sum();
        PolicyMetrics {
            partitions: self.partitions.clone(),
            records_processed: sum(|c| c.processed),
            records_retried: sum(|c| c.retried),
            records_skipped: sum(|c| c.skipped),
            records_dead_lettered: sum(|c| c.dead_lettered),
            dead_letter_failures: self.dead_letter_failures,
            breaker_trips: self.breaker_trips,
            breaker_open,
            dead_letter_rate: recent as f64 / RATE_WINDOW.as_secs_f64(),
            records_waiting: waiting,
            records_running: running,
            records_buffered: buffered,
            records_waiting_for_key: 0,
        }
    }

    fn of(&mut self, tp: &TopicPartition) -> &mut PartitionCounts {
        if !self.partitions.contains_key(tp) {
            self.partitions
                .insert(tp.clone(), PartitionCounts::default());
        }
        // Invariant: inserted just above when missing.
        self.partitions.get_mut(tp).expect("inserted above")
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }
}

/// A snapshot of a [`Processor`](crate::Processor)'s counts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PolicyMetrics {
    /// Per partition that had records.
    pub partitions: BTreeMap<TopicPartition, PartitionCounts>,
    /// Records processed, all partitions.
    pub records_processed: u64,
    /// Retries scheduled, all partitions.
    pub records_retried: u64,
    /// Records skipped, all partitions.
    pub records_skipped: u64,
    /// Records dead-lettered (acknowledged), all partitions.
    pub records_dead_lettered: u64,
    /// Dead-letter writes that failed (each stopped processing).
    pub dead_letter_failures: u64,
    /// Times the circuit breaker opened.
    pub breaker_trips: u64,
    /// Whether the breaker is open now.
    pub breaker_open: bool,
    /// Records dead-lettered per second over the last minute: the figure to alert on
    /// (lag grows slowly while a consumer dead-letters everything).
    pub dead_letter_rate: f64,
    /// Records fetched and not yet done with: those in the handler, waiting their turn, or
    /// waiting for a retry.
    pub records_waiting: usize,
    /// Records in the handler (or being dead-lettered) now: at most
    /// `processing.max.concurrency`.
    pub records_running: usize,
    /// Records fetched and not started: waiting their turn (behind a record of their
    /// ordering unit, or for a free place in the handler) or their retry.
    pub records_buffered: usize,
    /// Of those buffered, the records waiting behind an earlier record of their key (under
    /// `processing.ordering=key`; of their partition under `partition`): held back by their
    /// order, not by the places in the handler. Many while the handler has free places means
    /// few keys carry the load.
    pub records_waiting_for_key: usize,
}

/// Reads a [`Processor`](crate::Processor)'s counts from any task or thread; cheap to clone.
/// The processor publishes them at most every 100 ms while records flow, and at once when it
/// waits or stops.
#[derive(Debug, Clone)]
pub struct PolicyMetricsHandle {
    published: Arc<Mutex<PolicyMetrics>>,
    client_id: Arc<str>,
    group: Option<Arc<str>>,
}

impl PolicyMetricsHandle {
    pub(crate) fn new(client_id: &str, group: Option<&str>) -> PolicyMetricsHandle {
        PolicyMetricsHandle {
            published: Arc::default(),
            client_id: client_id.into(),
            group: group.map(Into::into),
        }
    }

    /// The counts as last published.
    pub fn snapshot(&self) -> PolicyMetrics {
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The consumer's `client.id` and `group.id`.
    pub fn identity(&self) -> (&str, Option<&str>) {
        (&self.client_id, self.group.as_deref())
    }

    pub(crate) fn publish(&self, metrics: PolicyMetrics) {
        *self.published.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_partition_and_in_total() {
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        let now = Instant::now();
        let mut c = Counts::default();
        c.processed(&a);
        c.processed(&b);
        c.retried(&a);
        c.skipped(&b);
        c.dead_lettered(&a, now);
        c.breaker_tripped();
        let m = c.snapshot(now, true, 4);
        assert_eq!(m.partitions[&a].processed + m.partitions[&b].processed, 2);
        assert_eq!(
            (
                m.records_retried,
                m.records_skipped,
                m.records_dead_lettered
            ),
            (1, 1, 1)
        );
        assert_eq!(
            (m.breaker_trips, m.breaker_open, m.records_waiting),
            (1, true, 4)
        );
    }

    #[test]
    fn the_dead_letter_rate_covers_the_last_minute_only() {
        let tp = TopicPartition::new("t", 0);
        let start = Instant::now();
        let mut c = Counts::default();
        for i in 0..120u64 {
            // One per half second for a minute.
            c.dead_lettered(&tp, start + Duration::from_millis(500 * i));
        }
        let end = start + Duration::from_secs(60);
        assert!((c.snapshot(end, false, 0).dead_letter_rate - 2.0).abs() < 0.05);
        let later = end + Duration::from_secs(30);
        let rate = c.snapshot(later, false, 0).dead_letter_rate;
        assert!((rate - 1.0).abs() < 0.05, "{rate}");
        assert_eq!(
            c.snapshot(later + RATE_WINDOW, false, 0).dead_letter_rate,
            0.0
        );
        assert!(c.recent.len() <= 61, "one entry per second at most");
    }
}
