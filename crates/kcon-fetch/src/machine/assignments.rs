//! The partitions a fetcher is assigned, and when the first of their backoffs ends.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Instant;

use kcon_core::TopicPartition;

use super::Assigned;

/// The assigned partitions by name: read through `Deref`, changed only through
/// [`edit`](Self::edit), which forgets the next backoff found. The driver asks for the next
/// timer after every input, and most inputs (a part of the records handed out, credit given
/// back) change no partition: with thousands of partitions a scan at each would cost more
/// than the input.
#[derive(Debug, Default)]
pub(super) struct Assignments {
    map: BTreeMap<TopicPartition, Assigned>,
    /// The earliest partition backoff ending after the instant kept with it, as the last scan
    /// found it; `None` once a partition may have changed.
    next_backoff: Cell<Option<(Instant, Option<Instant>)>>,
}

impl Deref for Assignments {
    type Target = BTreeMap<TopicPartition, Assigned>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Assignments {
    /// The partitions, to change.
    pub(super) fn edit(&mut self) -> &mut BTreeMap<TopicPartition, Assigned> {
        self.next_backoff.set(None);
        &mut self.map
    }

    /// The earliest partition backoff ending after `now`. A scan's answer holds for a later
    /// `now` while no partition changed and it is still ahead: no backoff ends between the
    /// scan and it, and one passed stays passed.
    pub(super) fn next_backoff(&self, now: Instant) -> Option<Instant> {
        if let Some((at, next)) = self.next_backoff.get()
            && at <= now
            && next.is_none_or(|t| t > now)
        {
            return next;
        }
        let next = self
            .map
            .values()
            .filter_map(|a| a.state.retry_at())
            .filter(|t| *t > now)
            .min();
        self.next_backoff.set(Some((now, next)));
        next
    }
}
