//! How long Fetch requests take, from sending to the answer (the broker's long-poll wait
//! included, as in the Java client's `fetch-latency`): timed by the request tasks, read from
//! any task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of the latency histogram's buckets; one more bucket takes the rest.
pub const LATENCY_BUCKETS: [Duration; 11] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Fetch latencies counted as they come: atomics, so request tasks record without a lock.
#[derive(Debug, Default)]
pub struct FetchLatency {
    count: AtomicU64,
    sum_micros: AtomicU64,
    max_micros: AtomicU64,
    /// Per bucket of [`LATENCY_BUCKETS`], then the rest.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

impl FetchLatency {
    /// One Fetch answered after `latency`.
    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| latency <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted so far.
    pub fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            count: self.count.load(Ordering::Relaxed),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
            max: Duration::from_micros(self.max_micros.load(Ordering::Relaxed)),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Latencies counted: how many, their sum and maximum, and how many fell in each bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Requests answered.
    pub count: u64,
    /// Their latencies added up.
    pub sum: Duration,
    /// The longest.
    pub max: Duration,
    /// How many took at most each bound of [`LATENCY_BUCKETS`] and more than the one before;
    /// the last entry counts those above every bound.
    pub buckets: Vec<u64>,
}

impl LatencyHistogram {
    /// The mean latency, when any request was answered.
    pub fn mean(&self) -> Option<Duration> {
        let n = u32::try_from(self.count).ok().filter(|&n| n > 0)?;
        Some(self.sum / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets_with_count_sum_and_max() {
        let l = FetchLatency::default();
        assert_eq!(l.snapshot().mean(), None);
        l.record(Duration::from_millis(3));
        l.record(Duration::from_millis(5));
        l.record(Duration::from_millis(120));
        l.record(Duration::from_secs(30));
        let s = l.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.sum, Duration::from_millis(30_128));
        assert_eq!(s.max, Duration::from_secs(30));
        assert_eq!(s.mean(), Some(Duration::from_millis(7532)));
        let mut expected = vec![0; LATENCY_BUCKETS.len() + 1];
        expected[0] = 2; // 3 ms and 5 ms: at most 5 ms
        expected[5] = 1; // 120 ms: above 100, at most 250
        expected[LATENCY_BUCKETS.len()] = 1; // 30 s: above every bound
        assert_eq!(s.buckets, expected);
    }
}
