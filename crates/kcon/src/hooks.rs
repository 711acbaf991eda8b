//! Hooks: what the consumer tells an observer as it goes (a batch fetched, records about to be
//! handed out, a rebalance, a commit, a partition's error, a truncated log read on from), for
//! metrics, tracing or audit without wrapping every call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::record::Record;
use crate::{PersistentFailure, TopicPartition};

/// An observer of a consumer, given to [`ConsumerBuilder::hooks`](crate::ConsumerBuilder::hooks).
///
/// Every method has an empty default: implement those you need. They are called on the task
/// that drives the consumer (or, for commits, the one that asked for the commit), in the
/// middle of its work: return quickly and never block. Several hooks are called in the order
/// they were added.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use kcon::{ConsumerHooks, FetchedBatch};
///
/// #[derive(Default)]
/// struct Bytes(AtomicU64);
///
/// impl ConsumerHooks for Bytes {
///     fn on_fetched(&self, batch: &FetchedBatch<'_>) {
///         self.0.fetch_add(batch.bytes as u64, Ordering::Relaxed);
///     }
/// }
/// let b = kcon::Consumer::builder().hooks(Bytes::default());
/// # drop(b);
/// ```
pub trait ConsumerHooks: Send + Sync + 'static {
    /// A batch of one partition came from a Fetch answer, before any of it is handed out.
    fn on_fetched(&self, batch: &FetchedBatch<'_>) {
        let _ = batch;
    }

    /// These records of `partition` are about to be handed out, in order (by `recv` one at a
    /// time, by `recv_batch` or a stream all at once).
    fn on_records(&self, partition: &TopicPartition, records: &[Record]) {
        let _ = (partition, records);
    }

    /// Partitions were assigned, revoked or lost: called before the rebalance listener.
    fn on_rebalance(&self, kind: Hook, partitions: &[TopicPartition]) {
        let _ = (kind, partitions);
    }

    /// A commit finished, acknowledged or not, whoever asked ([`CommitDone::source`]).
    /// Auto-commits and async commits are told from the task that makes them, as they finish
    /// (an auto-commit with nothing to commit sends nothing and is not told).
    fn on_commit(&self, commit: &CommitDone<'_>) {
        let _ = commit;
    }

    /// A partition's error, as `recv` returns it (corrupt data, an offset out of range
    /// under `auto.offset.reset=none`, no position, a log truncated under the position under
    /// `auto.offset.reset=none`).
    fn on_partition_error(&self, partition: &TopicPartition, error: &Error) {
        let _ = (partition, error);
    }

    /// A partition's log was truncated under the consumer's position (an unclean leader
    /// election, KIP-320) and the consumer moved by itself: back to where the leader's log
    /// parts from what it read, or by `auto.offset.reset` where the leader could not say. What
    /// the new leader holds from [`Truncation::resumed_at`] on is handed out next; records
    /// handed out before from the divergence up to [`Truncation::position`] were on the lost
    /// log only. Not an error: `recv` goes on, and the consumer logs it once at WARN. Under
    /// `auto.offset.reset=none` the consumer does not move and `recv` returns an error of kind
    /// [`ErrorKind::LogTruncation`](crate::ErrorKind::LogTruncation) instead (as the Java
    /// client raises `LogTruncationException`). Called on the task that receives records,
    /// once per truncation.
    fn on_truncation(&self, truncation: &Truncation) {
        let _ = truncation;
    }

    /// A request the consumer needs keeps failing: joining the group, heartbeats, commits,
    /// committed-offset lookups, finding the coordinator, fetches from a broker or the
    /// metadata refreshes that find the partitions' leaders (what librdkafka tells its error
    /// callback). The consumer goes on trying, backing off up to `retry.backoff.max.ms`; it
    /// tells once the failure has lasted (three tries and five seconds), then at most once a
    /// minute while it lasts, and once more when the request succeeds again (`recovered`).
    /// Each is logged too, at WARN (INFO for a recovery). Called on the task that receives
    /// records, in its next receiving call or wait.
    fn on_persistent_failure(&self, failure: &PersistentFailure) {
        let _ = failure;
    }
}

/// Which listener hook a rebalance step calls (`kcon::consumer::Hook`), as
/// [`ConsumerHooks::on_rebalance`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on_assigned`.
    Assigned,
    /// `on_revoked`.
    Revoked,
    /// `on_lost`.
    Lost,
}

/// A batch fetched ([`ConsumerHooks::on_fetched`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct FetchedBatch<'a> {
    /// The partition.
    pub partition: &'a TopicPartition,
    /// Records in it.
    pub records: usize,
    /// Bytes of the Fetch answer they came in.
    pub bytes: usize,
    /// The high watermark the answer reported.
    pub high_watermark: i64,
}

/// A log truncated under the consumer's position, which it read on from
/// ([`ConsumerHooks::on_truncation`]; counted in
/// [`Metrics::truncations`](crate::Metrics::truncations)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Truncation {
    /// The partition.
    pub partition: TopicPartition,
    /// The position the leader's log no longer holds as the consumer read it: where it
    /// would have fetched next.
    pub position: i64,
    /// Where the consumer reads on from.
    pub resumed_at: i64,
    /// The leader epoch whose end in the leader's log is [`resumed_at`](Self::resumed_at),
    /// found with OffsetForLeaderEpoch: the records before it are the ones the consumer read,
    /// those from it on are the new leader's. `None` when the leader could not say where the
    /// logs part (it holds no epoch at or below the consumer's): `auto.offset.reset` chose
    /// `resumed_at`.
    pub diverged_in_epoch: Option<i32>,
}

/// Who asked for a commit ([`CommitDone::source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommitSource {
    /// [`Consumer::commit`](crate::Consumer::commit) or
    /// [`commit_offsets`](crate::Consumer::commit_offsets).
    Commit,
    /// [`Consumer::commit_async`](crate::Consumer::commit_async).
    CommitAsync,
    /// The consumer, before partitions are given up (`enable.auto.commit`).
    Rebalance,
    /// [`Consumer::close`](crate::Consumer::close)'s final commit.
    Close,
    /// A [`CommitHandle`](crate::CommitHandle).
    Handle,
    /// The auto-commit timer (`enable.auto.commit`), told from the task that commits.
    Auto,
}

/// A finished commit ([`ConsumerHooks::on_commit`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct CommitDone<'a> {
    /// Who asked for it.
    pub source: CommitSource,
    /// The offsets given explicitly (partition → next offset to consume); `None` for a commit
    /// of what was stored.
    pub offsets: Option<&'a BTreeMap<TopicPartition, i64>>,
    /// From asking to the answer.
    pub latency: Duration,
    /// Why it failed; `None` when acknowledged.
    pub error: Option<&'a Error>,
}

/// The hooks of one consumer, cheap to clone into a task.
#[derive(Clone, Default)]
pub(crate) struct HookList(Arc<Vec<Arc<dyn ConsumerHooks>>>);

impl HookList {
    pub(crate) fn new(hooks: Vec<Arc<dyn ConsumerHooks>>) -> HookList {
        HookList(Arc::new(hooks))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn each(&self, mut f: impl FnMut(&dyn ConsumerHooks)) {
        for h in self.0.iter() {
            f(h.as_ref());
        }
    }

    pub(crate) fn commit(
        &self,
        source: CommitSource,
        offsets: Option<&BTreeMap<TopicPartition, i64>>,
        latency: Duration,
        error: Option<&Error>,
    ) {
        let done = CommitDone {
            source,
            offsets,
            latency,
            error,
        };
        self.each(|h| h.on_commit(&done));
    }
}

impl std::fmt::Debug for HookList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hooks", self.0.len())
    }
}
