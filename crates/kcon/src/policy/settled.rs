//! The WARN lines of records a policy settled without processing them: skipped (rejected, for
//! a share group) or dead-lettered. Both processors log them here, the same way.
//!
//! One line per record would flood stderr when a whole queue fails the same way (a key
//! deserializer that refuses the null keys of every record, say), and none at all leaves a
//! newcomer with an emptied queue and no word of why. So the first record of a kind is logged
//! at once, and later ones at most once every [`EVERY`], each line saying how many records it
//! stands for; the records between are DEBUG lines. Every record is also counted by the
//! processor's metrics and told to its hooks.

use std::fmt::Display;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::record::Record;

/// How often, at most, a kind of settled record is logged at WARN.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// How a record was settled without being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Skipped (a share group rejects it): it failed for good, `errors.tolerance=all`, and
    /// there is no dead-letter topic.
    Skipped,
    /// Written to the dead-letter topic.
    DeadLettered,
}

impl Settled {
    fn words(self) -> &'static str {
        match self {
            Settled::Skipped => "skipped",
            Settled::DeadLettered => "dead-lettered",
        }
    }
}

/// The WARN lines' state: per kind, when the last was logged and how many records since.
#[derive(Debug, Default)]
pub(crate) struct SettledWarnings {
    /// Per kind (skipped, dead-lettered): the last WARN's time, and the records since it.
    kinds: [(Option<Instant>, u64); 2],
}

impl SettledWarnings {
    /// Logs that `record` was settled as `kind` for `failure`: at WARN if it is the first of
    /// its kind or [`EVERY`] has passed since the last WARN of its kind; returns whether it
    /// did.
    pub(crate) fn note(
        &mut self,
        now: Instant,
        kind: Settled,
        record: &Record,
        failure: &dyn Display,
    ) -> bool {
        let (last, since) = &mut self.kinds[kind as usize];
        *since += 1;
        let due = last.is_none_or(|at| now.saturating_duration_since(at) >= EVERY);
        if !due {
            debug!(topic = %record.topic, partition = record.partition, offset = record.offset, "{}: {failure}", kind.words());
            return false;
        }
        if *since == 1 {
            warn!(topic = %record.topic, partition = record.partition, offset = record.offset, "{}: {failure}", kind.words());
        } else {
            warn!(
                topic = %record.topic, partition = record.partition, offset = record.offset,
                "{}: {failure} ({since} records {} since the last such line; the others at DEBUG)",
                kind.words(),
                kind.words()
            );
        }
        *last = Some(now);
        *since = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64) -> Record {
        Record::new("t", 0, offset, None, Some("v".into()))
    }

    /// The first of a kind is logged, then at most one a kind every ten seconds, whatever
    /// the other kind does.
    #[test]
    fn the_first_of_a_kind_then_one_every_ten_seconds() {
        let mut w = SettledWarnings::default();
        let t0 = Instant::now();
        let warned: Vec<bool> = [0, 1, 2, 9_999, 10_000, 10_001, 25_000]
            .iter()
            .map(|&ms| {
                w.note(
                    t0 + Duration::from_millis(ms),
                    Settled::DeadLettered,
                    &record(ms as i64),
                    &"bad",
                )
            })
            .collect();
        assert_eq!(warned, [true, false, false, false, true, false, true]);
        assert!(w.note(
            t0 + Duration::from_millis(3),
            Settled::Skipped,
            &record(0),
            &"bad"
        ));
        assert_eq!(w.kinds[Settled::DeadLettered as usize].1, 0);
    }
}
