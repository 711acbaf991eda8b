//! Each partition's window of commits, kept across measurements of a group's lag: what
//! `kcon group lag --watch` and `kcon exporter` judge a group's status by.

use std::collections::BTreeMap;

use kcon::TopicPartition;
use kcon_admin::status::{Commit, Status, Window};
use kcon_admin::{self as admin};

/// Each partition's window of commits seen, kept across measurements.
#[derive(Default)]
pub(crate) struct Watched {
    windows: BTreeMap<TopicPartition, Window>,
}

impl Watched {
    /// Feeds one measurement and returns each partition's status, and the group's.
    pub(crate) fn observe(
        &mut self,
        lag: &admin::GroupLag,
        capacity: usize,
    ) -> (BTreeMap<TopicPartition, Status>, Status) {
        let mut statuses = BTreeMap::new();
        for (tp, p) in &lag.partitions {
            let Some(committed) = p.committed else {
                continue;
            };
            let w = self
                .windows
                .entry(tp.clone())
                .or_insert_with(|| Window::new(capacity));
            // OffsetFetch shows the offset, not when it was committed: a commit is seen when
            // the offset moves.
            let lag_records = p.lag.records.map(|r| r.max(0) as u64);
            if w.commits().last().is_none_or(|c| c.offset != committed) {
                w.commit(Commit {
                    offset: committed,
                    at_ms: lag.measured_at_ms,
                    lag: lag_records,
                });
            }
            if let Some(end) = p.log_end {
                w.log_end(end);
            }
            let status = w.status(lag_records.unwrap_or(0), 0, lag.measured_at_ms, p.log_start);
            statuses.insert(tp.clone(), status);
        }
        let group = admin::status::group_status(statuses.values().copied());
        (statuses, group)
    }
}
