//! The wall clock: one per [`Pool`](crate::Pool), so one per process unless an application
//! builds pools with clocks of its own. Every part that stamps or ages something by the wall
//! clock (a record's timestamp, a dead letter's failure time, lag in seconds, a reset by
//! duration, a timestamp lookup) reads the clock of the pool it works over; none reads the
//! system's itself. Durations and deadlines use tokio's monotonic clock instead.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, by the wall clock.
    fn now(&self) -> SystemTime;

    /// Now in milliseconds since the Unix epoch, as Kafka's timestamps count (0 before it).
    fn now_ms(&self) -> i64 {
        millis_since_epoch(self.now())
    }
}

/// The system's wall clock: what a [`Pool`](crate::Pool) reads unless given another.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// `t` in milliseconds since the Unix epoch: 0 before it, `i64::MAX` past what an `i64` holds.
pub fn millis_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn milliseconds_count_from_the_epoch_and_stop_at_its_edges() {
        assert_eq!(millis_since_epoch(UNIX_EPOCH), 0);
        assert_eq!(
            millis_since_epoch(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(millis_since_epoch(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let now = SystemClock.now_ms();
        assert!(now > 1_700_000_000_000, "{now}");
    }
}
