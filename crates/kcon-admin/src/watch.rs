//! The commit-window tracker: each partition's window of commits, kept across measurements of
//! a group's lag, and the Burrow-style statuses judged on it ([`status`](crate::status)).
//!
//! OffsetFetch shows a group's committed offset, not when it was committed, so whoever samples
//! the group sees a commit when the offset moves: [`GroupWatch::observe`] takes one
//! measurement ([`GroupLag`]), adds a commit to a partition's window when its committed offset
//! differs from the last one seen, samples the log end, and judges every partition. A watcher
//! of several groups ([`GroupsWatch`]) keeps one [`GroupWatch`] per group and forgets a group
//! once a measurement no longer has it.
//!
//! ```no_run
//! # async fn watch(pool: kcon_pool::Pool) -> Result<(), kcon_admin::Error> {
//! use kcon_admin::{GroupWatch, LagOptions, group_lag};
//!
//! let mut watch = GroupWatch::new(10); // Burrow's window of 10 commits
//! loop {
//!     let lag = group_lag(&pool, "billing", &LagOptions::default()).await?;
//!     let judged = watch.observe(&lag);
//!     println!("billing: {} ({} records behind)", judged.group, lag.total_records());
//!     tokio::time::sleep(std::time::Duration::from_secs(30)).await;
//! }
//! # }
//! ```

use std::collections::BTreeMap;

use kcon_core::TopicPartition;

use crate::lag::GroupLag;
use crate::status::{Commit, Status, Window, group_status};

/// What one measurement of a group makes of it: each partition's status (those with a
/// committed offset) and the group's (its worst partition's, STOP, STALL and REWIND counting
/// as ERR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Each partition with a committed offset.
    pub partitions: BTreeMap<TopicPartition, Status>,
    /// The group's status.
    pub group: Status,
}

/// Each partition's window of commits seen, kept across measurements of one group.
#[derive(Debug, Clone)]
pub struct GroupWatch {
    capacity: usize,
    windows: BTreeMap<TopicPartition, Window>,
}

impl GroupWatch {
    /// A watch judging each partition on its last `capacity` commits (Burrow's default is
    /// 10; at least 2).
    pub fn new(capacity: usize) -> GroupWatch {
        GroupWatch {
            capacity,
            windows: BTreeMap::new(),
        }
    }

    /// Feeds one measurement and judges the group: a partition's committed offset that moved
    /// since the last measurement is a commit seen at [`GroupLag::measured_at_ms`], with the
    /// lag then; its log end is sampled; partitions without a committed offset are left out.
    pub fn observe(&mut self, lag: &GroupLag) -> Judged {
        let mut partitions = BTreeMap::new();
        for (tp, p) in &lag.partitions {
            let Some(committed) = p.committed else {
                continue;
            };
            let capacity = self.capacity;
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
            let status = w.status(
                lag_records.unwrap_or(0),
                0,
                lag.measured_at_ms,
                p.log_start,
                p.log_end,
            );
            partitions.insert(tp.clone(), status);
        }
        let group = group_status(partitions.values().copied());
        Judged { partitions, group }
    }
}

/// One [`GroupWatch`] per group, for a watcher of many groups (a lag exporter): a group
/// missing from a measurement (deleted, or no longer matching) is forgotten with its windows.
#[derive(Debug, Clone)]
pub struct GroupsWatch {
    capacity: usize,
    groups: BTreeMap<String, GroupWatch>,
}

impl GroupsWatch {
    /// A watch of `capacity` commits per partition (see [`GroupWatch::new`]).
    pub fn new(capacity: usize) -> GroupsWatch {
        GroupsWatch {
            capacity,
            groups: BTreeMap::new(),
        }
    }

    /// Feeds one measurement of every group watched and judges each; the groups it leaves out
    /// are forgotten.
    pub fn observe(&mut self, lags: &BTreeMap<String, GroupLag>) -> BTreeMap<String, Judged> {
        self.groups.retain(|g, _| lags.contains_key(g));
        lags.iter()
            .map(|(group, lag)| {
                let capacity = self.capacity;
                let judged = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupWatch::new(capacity))
                    .observe(lag);
                (group.clone(), judged)
            })
            .collect()
    }

    /// The groups watched now.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::{Lag, PartitionLag};

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    /// A measurement at `at_ms` of partitions `(partition, committed, log end)`.
    fn measured(at_ms: i64, partitions: &[(i32, Option<i64>, i64)]) -> GroupLag {
        GroupLag {
            group_id: "g".to_owned(),
            measured_at_ms: at_ms,
            partitions: partitions
                .iter()
                .map(|&(p, committed, end)| {
                    let lag = PartitionLag {
                        committed,
                        log_start: Some(0),
                        log_end: Some(end),
                        lag: Lag {
                            records: committed.map(|c| end - c),
                            time: None,
                        },
                        error: None,
                    };
                    (tp(p), lag)
                })
                .collect(),
        }
    }

    /// A commit is seen when the offset moves; standing still with lag for longer than the
    /// window spans is STOP, and the group ERR; a partition without a committed offset has no
    /// status.
    #[test]
    fn a_partition_whose_offset_stands_still_with_lag_stops() {
        let mut w = GroupWatch::new(10);
        let first = w.observe(&measured(1_000, &[(0, Some(5), 30), (1, None, 3)]));
        assert_eq!(first.partitions.len(), 1, "{first:?}");
        assert_eq!(
            (first.partitions[&tp(0)], first.group),
            (Status::Ok, Status::Ok)
        );
        // Moved once, 1 s later: the window spans 1 s.
        let moved = w.observe(&measured(2_000, &[(0, Some(10), 30)]));
        assert_eq!(moved.partitions[&tp(0)], Status::Ok);
        // Still there 0.5 s later: within the span, OK; 2 s later: longer than it, STOP.
        let still = w.observe(&measured(2_500, &[(0, Some(10), 30)]));
        assert_eq!(still.partitions[&tp(0)], Status::Ok);
        let stopped = w.observe(&measured(4_000, &[(0, Some(10), 30)]));
        assert_eq!(
            (stopped.partitions[&tp(0)], stopped.group),
            (Status::Stop, Status::Err)
        );
        // Caught up: OK whatever the commits did.
        let caught_up = w.observe(&measured(9_000, &[(0, Some(30), 30)]));
        assert_eq!(caught_up.group, Status::Ok);
    }

    /// A committed offset past the log end (its lag negative) is PAST_END at once, and the
    /// group ERR; its negative lag is no lag, not a wrapped-around huge one.
    #[test]
    fn a_commit_past_the_log_end_is_past_end() {
        let mut w = GroupWatch::new(10);
        let judged = w.observe(&measured(1_000, &[(0, Some(300), 100), (1, Some(5), 5)]));
        assert_eq!(
            (judged.partitions[&tp(0)], judged.partitions[&tp(1)]),
            (Status::PastEnd, Status::Ok)
        );
        assert_eq!(judged.group, Status::Err);
        let window = w.windows[&tp(0)].commits();
        assert_eq!(window[0].lag, Some(0), "{window:?}");
    }

    /// A watcher of several groups forgets a group a measurement leaves out: when it comes
    /// back its history starts afresh.
    #[test]
    fn a_group_gone_from_a_measurement_is_forgotten() {
        let mut w = GroupsWatch::new(10);
        let of = |lag: GroupLag| BTreeMap::from([("g".to_owned(), lag)]);
        w.observe(&of(measured(1_000, &[(0, Some(5), 30)])));
        w.observe(&of(measured(2_000, &[(0, Some(10), 30)])));
        let judged = w.observe(&of(measured(4_000, &[(0, Some(10), 30)])));
        assert_eq!(judged["g"].group, Status::Err);
        assert!(w.observe(&BTreeMap::new()).is_empty());
        assert_eq!(w.groups().count(), 0);
        let again = w.observe(&of(measured(5_000, &[(0, Some(10), 30)])));
        assert_eq!(
            again["g"].group,
            Status::Ok,
            "one commit seen says nothing more"
        );
    }
}
