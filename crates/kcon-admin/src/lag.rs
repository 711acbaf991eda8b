//! Lag: how far a consumer group is behind the end of each partition's log, in records and in
//! time, for the `kcon` tool's `group describe` and whatever watches groups.
//!
//! - [`log_end`], [`lag`] and [`committed_lag`] are the pure rules, kcon-core's
//!   (`kcon_core::offsets`), which the `Consumer`'s `lag()` and `metrics()` follow too: the end
//!   of a log from what its leader answered, and the lag of a reader at a position.
//! - [`groups_lag`] / [`group_lag`] ask the cluster: the groups' committed offsets, each
//!   partition's log start and end, and the timestamp of the record at each committed offset.
//! - [`log_ranges`]: where partitions' logs start and end, by the same rule.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_pool::Pool;

use crate::error::Error;
use crate::groups::committed_offsets_of_groups;
use crate::offsets::list_offsets_each;
use crate::probe::{ProbedLog, probe};

pub use kcon_core::offsets::{Lag, committed_lag, lag, log_end};

/// What [`groups_lag`] measures.
#[derive(Debug, Clone, Default)]
pub struct LagOptions {
    /// read_uncommitted (the default) counts to the high watermark; read_committed to the last
    /// stable offset, and asks for committed offsets with `require_stable` (KIP-447).
    pub isolation: IsolationLevel,
    /// Partitions to report for every group even where it has no committed offset (those its
    /// members are assigned, say): their log range is reported, their lag is unknown.
    pub include: BTreeSet<TopicPartition>,
}

/// A group's lag, per partition.
#[derive(Debug, Clone)]
pub struct GroupLag {
    /// The group id.
    pub group_id: String,
    /// The wall-clock time (ms since the epoch) the ages are measured at: taken once every
    /// answer is in, so an age is never understated by the time the requests took.
    pub measured_at_ms: i64,
    /// Every partition the group has a committed offset for, and those asked to be included.
    pub partitions: BTreeMap<TopicPartition, PartitionLag>,
}

impl GroupLag {
    /// The lag in records summed over the partitions where it is known; a partition whose
    /// committed offset is past the log end ([`PartitionLag::past_end`]) counts 0, so that it
    /// hides no other partition's lag.
    pub fn total_records(&self) -> i64 {
        self.partitions
            .values()
            .filter_map(|p| p.lag.records)
            .map(|r| r.max(0))
            .fold(0, i64::saturating_add)
    }

    /// The largest lag in time over the partitions where it is known.
    pub fn max_time(&self) -> Option<Duration> {
        self.partitions.values().filter_map(|p| p.lag.time).max()
    }
}

/// One partition of a [`GroupLag`]. What is unknown is `None`, and `error` says why.
#[derive(Debug, Clone)]
pub struct PartitionLag {
    /// The group's committed offset (the next offset it reads); `None` when it has none.
    pub committed: Option<i64>,
    /// Where the log starts.
    pub log_start: Option<i64>,
    /// Where the log ends for the isolation level ([`log_end`]).
    pub log_end: Option<i64>,
    /// The lag from the committed offset ([`committed_lag`]); unknown without a committed
    /// offset. Negative when the committed offset is past the end of the log (see
    /// [`past_end`](Self::past_end)).
    pub lag: Lag,
    /// Why something above is unknown: the committed offset's error, or the error of the
    /// lookups of the log's end or of the record at the committed offset.
    pub error: Option<Error>,
}

impl PartitionLag {
    /// Whether the committed offset is past the end of the log: an offset committed from
    /// outside the group, or a log truncated (an unclean leader election) or deleted and
    /// recreated under the group. Its lag is then negative, the end minus the committed offset,
    /// as Kafka's `kafka-consumer-groups.sh` shows it; a consumer starting from it resets by
    /// `auto.offset.reset`.
    pub fn past_end(&self) -> bool {
        matches!((self.committed, self.log_end), (Some(c), Some(end)) if c > end)
    }
}

/// Where a partition's log starts and ends, as [`log_ranges`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRange {
    /// The log start offset.
    pub start: i64,
    /// The end for the isolation level asked ([`log_end`]).
    pub end: i64,
}

/// Where each of `partitions`' logs starts (ListOffsets earliest) and ends (the larger of
/// ListOffsets latest and a Fetch's end, [`log_end`]), each with its own outcome. The call
/// fails only when the metadata cannot be had.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn log_ranges(
    pool: &Pool,
    partitions: &BTreeSet<TopicPartition>,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, Result<LogRange, Error>>, Error> {
    let listed = Listed::ask(pool, partitions, isolation).await?;
    let at: BTreeMap<TopicPartition, i64> = partitions
        .iter()
        .map(|tp| (tp.clone(), listed.start(tp).unwrap_or(0)))
        .collect();
    let probed = probe(pool, &at, isolation).await?;
    Ok(partitions
        .iter()
        .map(|tp| {
            let p = probed.get(tp);
            let range = match listed.range(tp, p) {
                (Some(start), Some(end)) => Ok(LogRange { start, end }),
                _ => Err(listed.why_unknown(tp, p)),
            };
            (tp.clone(), range)
        })
        .collect())
}

/// The lag of `group_id` per partition: [`groups_lag`] for one group.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn group_lag(
    pool: &Pool,
    group_id: &str,
    options: &LagOptions,
) -> Result<GroupLag, Error> {
    let mut all = groups_lag(pool, &[group_id.to_owned()], options).await?;
    all.remove(group_id).unwrap_or_else(|| {
        Err(Error::Unsupported {
            api: Some(ApiKey::OffsetFetch),
            reason: format!("no answer for group {group_id:?}"),
        })
    })
}

/// The lag of each of `groups` per partition: its committed offset, the log's start and end,
/// the lag in records and in time (the age of the record at the committed offset, zero when
/// caught up).
///
/// Requests: the committed offsets of all the groups (one OffsetFetch per coordinator from v8),
/// ListOffsets earliest and latest per leader for all their partitions, and one sessionless
/// Fetch per leader from the committed offsets (the probe, as many rounds as groups share a
/// partition at different offsets), which gives each record's timestamp and the high watermark.
///
/// Outcomes are as fine as the Java admin client's: each group has its own (its coordinator
/// unreachable or its OffsetFetch refused fails that group, as `listConsumerGroupOffsets`
/// completes each group on its own), and within a group each partition has its own (an error
/// on the committed offset, as `ListConsumerGroupOffsetsHandler` has per partition, or on the
/// log lookups, as `listOffsets` has per partition, leaves what it hides unknown and says why
/// in [`PartitionLag::error`]). The call fails only when the cluster cannot be reached at all.
///
/// # Cancel safety
///
/// Cancel-safe: it only asks. Dropping the future abandons the requests out (their answers are
/// thrown away) and changes nothing on the cluster; call it again for an answer.
pub async fn groups_lag(
    pool: &Pool,
    groups: &[String],
    options: &LagOptions,
) -> Result<BTreeMap<String, Result<GroupLag, Error>>, Error> {
    let require_stable = options.isolation == IsolationLevel::ReadCommitted;
    let committed = committed_offsets_of_groups(pool, groups, None, require_stable).await?;
    // Each group's partitions: the committed offset, or why it is unknown.
    let mut wanted: BTreeMap<String, BTreeMap<TopicPartition, Result<Option<i64>, Error>>> =
        BTreeMap::new();
    let mut out = BTreeMap::new();
    for (group, offsets) in committed {
        let offsets = match offsets {
            Ok(o) => o,
            Err(e) => {
                out.insert(group, Err(e));
                continue;
            }
        };
        let mut partitions: BTreeMap<TopicPartition, Result<Option<i64>, Error>> = options
            .include
            .iter()
            .map(|tp| (tp.clone(), Ok(None)))
            .collect();
        for (tp, p) in offsets {
            let c = match Error::partition(ApiKey::OffsetFetch, p.error_code, &tp) {
                Some(e) => Err(e),
                None => Ok(p.committed.map(|o| o.offset).filter(|o| *o >= 0)),
            };
            partitions.insert(tp, c);
        }
        wanted.insert(group, partitions);
    }
    let all: BTreeSet<TopicPartition> = wanted.values().flat_map(|p| p.keys().cloned()).collect();
    let listed = Listed::ask(pool, &all, options.isolation).await?;
    // The offsets each partition is probed at: every group's committed offset, or the log
    // start for a group without one (the probe then gives the end only).
    let mut probe_at: BTreeMap<TopicPartition, BTreeSet<i64>> = BTreeMap::new();
    for partitions in wanted.values() {
        for (tp, c) in partitions {
            let at = match c {
                Ok(Some(c)) => *c,
                _ => listed.start(tp).unwrap_or(0),
            };
            probe_at.entry(tp.clone()).or_default().insert(at);
        }
    }
    let mut probed: BTreeMap<(TopicPartition, i64), Result<ProbedLog, Error>> = BTreeMap::new();
    for round in probe_rounds(&probe_at) {
        for (tp, p) in probe(pool, &round, options.isolation).await? {
            let at = round[&tp];
            probed.insert((tp, at), p);
        }
    }
    let now = pool.clock().now_ms();
    for (group, partitions) in wanted {
        let partitions = partitions
            .into_iter()
            .map(|(tp, c)| {
                let at = match &c {
                    Ok(Some(c)) => *c,
                    _ => listed.start(&tp).unwrap_or(0),
                };
                let p = probed.get(&(tp.clone(), at));
                let lag = partition_lag(&listed, &tp, c, p, now);
                (tp, lag)
            })
            .collect();
        out.insert(
            group.clone(),
            Ok(GroupLag {
                group_id: group,
                measured_at_ms: now,
                partitions,
            }),
        );
    }
    Ok(out)
}

/// One partition of a group: its committed offset (or why it is unknown), the ListOffsets
/// answers and the probe from the committed offset.
fn partition_lag(
    listed: &Listed,
    tp: &TopicPartition,
    committed: Result<Option<i64>, Error>,
    probed: Option<&Result<ProbedLog, Error>>,
    now_ms: i64,
) -> PartitionLag {
    let (log_start, log_end) = listed.range(tp, probed);
    let (committed, mut error) = match committed {
        Ok(c) => (c, None),
        Err(e) => (None, Some(e)),
    };
    let lag = match (committed, log_end) {
        (Some(c), Some(end)) => {
            let ts = probed
                .and_then(|p| p.as_ref().ok())
                .and_then(|p| p.timestamp);
            committed_lag(c, log_start, end, ts, now_ms)
        }
        _ => Lag::default(),
    };
    if error.is_none() {
        if log_end.is_none() {
            error = Some(listed.why_unknown(tp, probed));
        } else if committed.is_some() && lag.time.is_none() {
            // Behind, and the record's age unknown: because the probe failed, if it did (an
            // answer without a readable record at the offset is no error).
            error = probed.and_then(|p| p.as_ref().err()).cloned();
        }
    }
    PartitionLag {
        committed,
        log_start,
        log_end,
        lag,
        error,
    }
}

/// The probe's rounds: each partition at most once per round (a Fetch names a partition
/// once), so partitions probed at several offsets (groups at different committed offsets) take
/// as many rounds as they have offsets.
fn probe_rounds(
    at: &BTreeMap<TopicPartition, BTreeSet<i64>>,
) -> Vec<BTreeMap<TopicPartition, i64>> {
    let mut rounds: Vec<BTreeMap<TopicPartition, i64>> = Vec::new();
    for (tp, offsets) in at {
        for (i, offset) in offsets.iter().enumerate() {
            if rounds.len() <= i {
                rounds.push(BTreeMap::new());
            }
            rounds[i].insert(tp.clone(), *offset);
        }
    }
    rounds
}

/// ListOffsets earliest and latest for a set of partitions.
struct Listed {
    start: BTreeMap<TopicPartition, Result<ListedOffset, Error>>,
    end: BTreeMap<TopicPartition, Result<ListedOffset, Error>>,
}

impl Listed {
    async fn ask(
        pool: &Pool,
        partitions: &BTreeSet<TopicPartition>,
        isolation: IsolationLevel,
    ) -> Result<Listed, Error> {
        let spec = |s: OffsetSpec| partitions.iter().map(|tp| (tp.clone(), s)).collect();
        Ok(Listed {
            start: list_offsets_each(pool, &spec(OffsetSpec::Earliest), isolation).await?,
            end: list_offsets_each(pool, &spec(OffsetSpec::Latest), isolation).await?,
        })
    }

    fn start(&self, tp: &TopicPartition) -> Option<i64> {
        offset(self.start.get(tp))
    }

    /// The log's start and end: the later of the two starts known (a log start only moves
    /// forward), and [`log_end`] of the two ends.
    fn range(
        &self,
        tp: &TopicPartition,
        probed: Option<&Result<ProbedLog, Error>>,
    ) -> (Option<i64>, Option<i64>) {
        let p = probed.and_then(|p| p.as_ref().ok());
        let start = self.start(tp).max(p.and_then(|p| p.start));
        let end = log_end(offset(self.end.get(tp)), p.and_then(|p| p.end));
        (start, end)
    }

    /// Why the range is unknown: the probe's error, else ListOffsets'.
    fn why_unknown(&self, tp: &TopicPartition, probed: Option<&Result<ProbedLog, Error>>) -> Error {
        let errors = [
            probed.and_then(|p| p.as_ref().err()),
            self.end.get(tp).and_then(|l| l.as_ref().err()),
            self.start.get(tp).and_then(|l| l.as_ref().err()),
        ];
        errors
            .into_iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_else(|| crate::offsets::unknown_partition(tp))
    }
}

fn offset(listed: Option<&Result<ListedOffset, Error>>) -> Option<i64> {
    listed
        .and_then(|l| l.as_ref().ok())
        .map(|l| l.offset)
        .filter(|o| *o >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lag counts from the committed offset, and its seconds from that offset's record; below
    /// the log start it counts from the log start; caught up is zero in both; without a
    /// committed offset it is unknown while the log's end is still known.
    #[test]
    fn lag_counts_from_the_committed_offset_and_seconds_from_its_record() {
        let listed = |start: i64, end: i64| Listed {
            start: [(tp(), Ok(at(start)))].into(),
            end: [(tp(), Ok(at(end)))].into(),
        };
        let probe = Ok(ProbedLog {
            end: Some(100),
            start: Some(10),
            read_from: 40,
            timestamp: Some(5_000),
        });
        // ListOffsets latest behind the Fetch high watermark (Tansu): the larger wins.
        let l = listed(10, 11);
        let r = partition_lag(&l, &tp(), Ok(Some(40)), Some(&probe), 7_500);
        assert_eq!(
            (r.lag.records, r.lag.time),
            (Some(60), Some(Duration::from_millis(2_500)))
        );
        assert_eq!((r.log_start, r.log_end), (Some(10), Some(100)));
        assert!(r.error.is_none(), "{r:?}");
        let r = partition_lag(&l, &tp(), Ok(Some(100)), Some(&probe), 7_500);
        assert_eq!((r.lag.records, r.lag.time), (Some(0), Some(Duration::ZERO)));
        // Below the log start: the records before it are gone.
        let r = partition_lag(&l, &tp(), Ok(Some(0)), Some(&probe), 7_500);
        assert_eq!(r.lag.records, Some(90));
        let r = partition_lag(&l, &tp(), Ok(None), Some(&probe), 7_500);
        assert_eq!(
            (r.lag.records, r.lag.time, r.log_end),
            (None, None, Some(100))
        );
        assert!(r.error.is_none(), "{r:?}");
    }

    /// A failed probe leaves the end to ListOffsets and the time unknown, saying why; with the
    /// end unknown too the records are unknown; a committed offset's own error comes first.
    #[test]
    fn what_is_unknown_says_why() {
        let failed: Result<ProbedLog, Error> = Err(Error::NoLeader(tp()));
        let l = Listed {
            start: [(tp(), Ok(at(0)))].into(),
            end: [(tp(), Ok(at(8)))].into(),
        };
        let r = partition_lag(&l, &tp(), Ok(Some(3)), Some(&failed), 1_000);
        assert_eq!(
            (r.log_end, r.lag.records, r.lag.time),
            (Some(8), Some(5), None)
        );
        assert!(matches!(r.error, Some(Error::NoLeader(_))), "{r:?}");
        let refused = Error::partition(ApiKey::ListOffsets, 29, &tp()).expect("an error");
        let l = Listed {
            start: [(tp(), Err(refused.clone()))].into(),
            end: [(tp(), Err(refused))].into(),
        };
        let r = partition_lag(&l, &tp(), Ok(Some(3)), Some(&failed), 1_000);
        assert_eq!((r.log_end, r.lag.records), (None, None));
        assert!(r.error.is_some(), "{r:?}");
        let offset_error = Error::partition(ApiKey::OffsetFetch, 88, &tp()).expect("an error");
        let r = partition_lag(&l, &tp(), Err(offset_error), Some(&failed), 1_000);
        assert_eq!(r.committed, None);
        assert_eq!(r.error.and_then(|e| e.api()), Some(ApiKey::OffsetFetch));
    }

    /// A committed offset past the end of the log has a negative lag, as
    /// kafka-consumer-groups.sh shows it, and is past the end; it adds nothing to the total.
    #[test]
    fn a_commit_past_the_end_has_a_negative_lag() {
        let l = Listed {
            start: [(tp(), Ok(at(0)))].into(),
            end: [(tp(), Ok(at(100)))].into(),
        };
        let probe = Ok(ProbedLog {
            end: Some(100),
            start: Some(0),
            read_from: 300,
            timestamp: None,
        });
        let r = partition_lag(&l, &tp(), Ok(Some(300)), Some(&probe), 1_000);
        assert_eq!(
            (r.lag.records, r.lag.time),
            (Some(-200), Some(Duration::ZERO))
        );
        assert!(r.past_end() && r.error.is_none(), "{r:?}");
        let at_end = partition_lag(&l, &tp(), Ok(Some(100)), Some(&probe), 1_000);
        assert_eq!(at_end.lag.records, Some(0));
        assert!(!at_end.past_end());
        let behind = partition_lag(&l, &tp(), Ok(Some(60)), Some(&probe), 1_000);
        let g = GroupLag {
            group_id: "g".into(),
            measured_at_ms: 1_000,
            partitions: [(tp(), r), (TopicPartition::new("t", 1), behind)].into(),
        };
        assert_eq!(g.total_records(), 40);
    }

    /// Partitions asked at several offsets take one round per offset, each partition at most
    /// once per round.
    #[test]
    fn probe_rounds_name_each_partition_once() {
        let a = TopicPartition::new("a", 0);
        let b = TopicPartition::new("b", 0);
        let at = [
            (a.clone(), BTreeSet::from([4, 8, 9])),
            (b.clone(), BTreeSet::from([1])),
        ]
        .into();
        let rounds = probe_rounds(&at);
        assert_eq!(
            rounds,
            [
                BTreeMap::from([(a.clone(), 4), (b, 1)]),
                BTreeMap::from([(a.clone(), 8)]),
                BTreeMap::from([(a, 9)]),
            ]
        );
        assert!(probe_rounds(&BTreeMap::new()).is_empty());
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn at(offset: i64) -> ListedOffset {
        ListedOffset {
            error_code: 0,
            offset,
            timestamp: -1,
            leader_epoch: None,
        }
    }
}
