//! The consumer's parts on tokio: the handles of the group member's, the offsets' and the
//! fetcher's tasks, the pool, the listener and an owner's leaving hook, the hooks and the
//! metrics handle, as the driver's [`Parts`]. A step runs on a task of its own, whose handle is
//! kept here across receiving calls cancelled half-way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kcon_core::{PersistentFailure, RequestId, TopicPartition};
use kcon_fetch::handout::Release;
use kcon_fetch::{FetchHandle, StartPosition};
use kcon_group::{GroupMember, RevocationId};
use kcon_offsets::{OffsetAndMetadata, Offsets};
use kcon_pool::{Pool, TopicScope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::driver::{Answer, Parts};
use super::hold::RevocationHold;
use super::machine::StepAnswer;
use super::rebalance::Hook;
use crate::commit::Owned;
use crate::error::Error;
use crate::hooks::{CommitSource, FetchedBatch, HookList, Truncation};
use crate::listener::{RebalanceContext, RebalanceListener};
use crate::metrics::{LagInputs, MetricsHandle, MetricsState};
use crate::record::Record;

/// Told of partitions about to leave the consumer (revoked, lost, unassigned).
pub(crate) type LeavingHook = Box<dyn FnMut(&[TopicPartition]) + Send>;

/// What a step's task hands back: the listener when the step called it, and the answer.
pub(crate) type StepDone = (Option<Box<dyn RebalanceListener>>, StepAnswer);

/// A value the consumer reaches only through `&mut self`: the listener and the leaving hook,
/// which are `Send` and need not be `Sync`. Held in a `Mutex` that is never locked
/// ([`get_mut`](Exclusive::get_mut) borrows it), so a `Consumer` is `Sync` whatever they are:
/// `&Consumer` can cross an await on a spawned task (`lag()`, `watermarks()`) without asking
/// applications for `Sync` listeners.
pub(crate) struct Exclusive<T>(Mutex<T>);

impl<T> Exclusive<T> {
    pub(crate) fn new(value: T) -> Self {
        Exclusive(Mutex::new(value))
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        // Never locked, so never poisoned; a poison flag would change nothing here anyway.
        self.0.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

/// The consumer's parts on tokio.
pub(crate) struct Wiring {
    pub(crate) pool: Pool,
    pub(crate) fetcher: FetchHandle,
    pub(crate) group: Option<GroupMember>,
    pub(crate) offsets: Option<Arc<Offsets>>,
    /// Where the offsets task reports requests that keep failing (the member and the fetcher
    /// report theirs with their events).
    pub(crate) offsets_reports: Option<mpsc::UnboundedReceiver<PersistentFailure>>,
    pub(crate) listener: Exclusive<Option<Box<dyn RebalanceListener>>>,
    /// Set when an owner above the consumer stores offsets (per-partition streams, a record
    /// processor): told of partitions leaving before they go.
    pub(crate) leaving: Exclusive<Option<LeavingHook>>,
    /// Set when that owner holds revocations (a record processor running records side by
    /// side): told of partitions revoking, and waited for before the listener.
    pub(crate) hold: Option<Arc<RevocationHold>>,
    pub(crate) hooks: HookList,
    /// Where the consumer publishes its metrics for [`MetricsHandle`]s.
    pub(crate) published: MetricsHandle,
    /// The metrics pushed to the cluster (KIP-714), unless `enable.metrics.push` is false.
    pub(crate) telemetry: Option<kcon_pool::telemetry::Telemetry>,
    /// The partitions owned, as commit handles see them.
    pub(crate) owned: Owned,
    /// The machine's step under way and the task carrying it out: kept across receiving calls
    /// cancelled half-way, so the next call awaits the same task instead of starting over.
    pub(crate) step: Option<(RequestId, JoinHandle<StepDone>)>,
}

impl Wiring {
    fn spawn(&mut self, id: RequestId, task: impl Future<Output = StepDone> + Send + 'static) {
        self.step = Some((id, tokio::spawn(task)));
    }
}

impl Parts for Wiring {
    fn subscribe(&mut self, _now: Instant, topics: BTreeSet<String>) {
        if let Some(g) = &self.group {
            g.subscribe(topics);
        }
    }

    fn subscribe_regex(&mut self, _now: Instant, topics: BTreeSet<String>, regex: String) {
        if let Some(g) = &self.group {
            g.subscribe_with_regex(topics, Some(regex));
        }
    }

    fn unsubscribe(&mut self, _now: Instant) {
        if let Some(g) = &self.group {
            g.unsubscribe();
        }
    }

    fn gave_up(&mut self, _now: Instant) {
        if let Some(g) = &self.group {
            g.gave_up();
        }
    }

    fn alive(&mut self, _now: Instant) {
        if let Some(g) = &self.group {
            g.poll();
        }
    }

    fn revocation_done(&mut self, _now: Instant, id: RevocationId) {
        if let Some(g) = &self.group {
            g.revocation_done(id);
        }
    }

    fn track_topics(&mut self, _now: Instant, topics: BTreeSet<String>) {
        self.pool.track_topics(TopicScope::topics(topics));
    }

    fn pool_failure(&self) -> Option<Error> {
        self.pool.failure().map(Error::from)
    }

    fn cluster_topics(&self, news: impl FnOnce(u64) -> bool) -> Option<(u64, Vec<String>)> {
        let metadata = self.pool.metadata();
        news(metadata.generation).then(|| {
            (
                metadata.generation,
                metadata.topics.keys().cloned().collect(),
            )
        })
    }

    fn assign(&mut self, _now: Instant, starts: Vec<(TopicPartition, StartPosition)>) {
        self.owned.add(starts.iter().map(|(tp, _)| tp.clone()));
        self.fetcher.assign(starts);
    }

    fn unassign(&mut self, _now: Instant, partitions: Vec<TopicPartition>, fence: u64) {
        self.owned.remove(&partitions, || {});
        self.fetcher.unassign(partitions, fence);
    }

    fn pause(&mut self, _now: Instant, tp: TopicPartition) {
        self.fetcher.pause(tp);
    }

    fn resume(&mut self, _now: Instant, tp: TopicPartition) {
        self.fetcher.resume(tp);
    }

    fn seek(&mut self, _now: Instant, tp: TopicPartition, offset: i64, fence: u64) {
        self.fetcher.seek(tp, offset, None, fence);
    }

    fn release(&mut self, _now: Instant, release: Release) {
        self.fetcher.release(release);
    }

    fn store(&mut self, _now: Instant, tp: TopicPartition, at: OffsetAndMetadata) {
        if let Some(o) = &self.offsets {
            o.store(tp, at);
        }
    }

    fn forget(&mut self, _now: Instant, partitions: Vec<TopicPartition>) {
        let offsets = self.offsets.as_ref();
        self.owned.remove(&partitions.clone(), || {
            if let Some(o) = offsets {
                o.forget(partitions);
            }
        });
    }

    fn offsets_report(&mut self) -> Option<PersistentFailure> {
        self.offsets_reports.as_mut()?.try_recv().ok()
    }

    fn leaving(&mut self, _now: Instant, partitions: Vec<TopicPartition>) {
        if let Some(hook) = self.leaving.get_mut() {
            hook(&partitions);
        }
    }

    fn revoking(&mut self, _now: Instant, partitions: Vec<TopicPartition>) {
        if let Some(hold) = &self.hold {
            hold.revoking(&partitions);
        }
    }

    fn listener(
        &mut self,
        _now: Instant,
        id: RequestId,
        hook: Hook,
        partitions: Vec<TopicPartition>,
        positions: HashMap<TopicPartition, i64>,
    ) -> Option<Answer> {
        self.hooks.each(|h| h.on_rebalance(hook, &partitions));
        // A revocation an owner holds waits for its release first.
        let hold = self.hold.clone().filter(|_| hook == Hook::Revoked);
        let Some(mut listener) = self.listener.get_mut().take() else {
            let Some(hold) = hold else {
                return Some(Ok(StepAnswer::Listener(Ok(Vec::new()))));
            };
            self.spawn(id, async move {
                hold.released(&partitions).await;
                (None, StepAnswer::Listener(Ok(Vec::new())))
            });
            return None;
        };
        let ctx = RebalanceContext {
            offsets: self.offsets.clone(),
            positions,
            seeks: Mutex::new(Vec::new()),
        };
        self.spawn(id, async move {
            if let Some(hold) = hold {
                hold.released(&partitions).await;
            }
            match hook {
                Hook::Assigned => listener.on_assigned(&ctx, &partitions).await,
                Hook::Revoked => listener.on_revoked(&ctx, &partitions).await,
                Hook::Lost => listener.on_lost(&ctx, &partitions).await,
            }
            let seeks = ctx.seeks.into_inner().unwrap_or_else(|p| p.into_inner());
            (Some(listener), StepAnswer::Listener(Ok(seeks)))
        });
        None
    }

    fn commit(&mut self, _now: Instant, id: RequestId) -> Option<Answer> {
        let Some(offsets) = self.offsets.clone() else {
            return Some(Err(kcon_core::RequestFailure::fatal(
                "no offsets without a group.id",
            )));
        };
        let hooks = self.hooks.clone();
        self.spawn(id, async move {
            let started = tokio::time::Instant::now();
            let result = offsets.commit_sync(None).await;
            let latency = started.elapsed();
            let result = result.map(drop).map_err(Error::from);
            hooks.commit(
                CommitSource::Rebalance,
                None,
                latency,
                result.as_ref().err(),
            );
            let result = result.map_err(|e| e.to_string());
            (None, StepAnswer::Commit { latency, result })
        });
        None
    }

    fn committed(
        &mut self,
        _now: Instant,
        id: RequestId,
        partitions: BTreeSet<TopicPartition>,
    ) -> Option<Answer> {
        let Some(offsets) = self.offsets.clone() else {
            return Some(Ok(StepAnswer::Committed(Ok(BTreeMap::new()))));
        };
        self.spawn(id, async move {
            let result = offsets
                .committed(Some(partitions))
                .await
                .map_err(Error::from);
            (None, StepAnswer::Committed(result))
        });
        None
    }

    fn all_topics(&mut self, _now: Instant, id: RequestId) -> Option<Answer> {
        let pool = self.pool.clone();
        self.spawn(id, async move {
            let result = pool
                .refresh_metadata(TopicScope::All)
                .await
                .map(|m| (m.generation, m.topics.keys().cloned().collect()))
                .map_err(|e| e.to_string());
            (None, StepAnswer::Topics(result))
        });
        None
    }

    fn fetched(&mut self, _now: Instant, batch: &FetchedBatch<'_>) {
        self.hooks.each(|h| h.on_fetched(batch));
    }

    fn records(&mut self, _now: Instant, tp: &TopicPartition, records: &[Record]) {
        if !self.hooks.is_empty() {
            self.hooks.each(|h| h.on_records(tp, records));
        }
    }

    fn watches_records(&self) -> bool {
        !self.hooks.is_empty()
    }

    fn partition_error(&mut self, _now: Instant, tp: &TopicPartition, error: &Error) {
        self.hooks.each(|h| h.on_partition_error(tp, error));
    }

    fn persistent_failure(&mut self, _now: Instant, report: &PersistentFailure) {
        self.hooks.each(|h| h.on_persistent_failure(report));
    }

    fn truncated(&mut self, _now: Instant, truncation: &Truncation) {
        self.hooks.each(|h| h.on_truncation(truncation));
    }

    fn publish(
        &mut self,
        _now: Instant,
        metrics: &mut MetricsState,
        lags: BTreeMap<TopicPartition, LagInputs>,
    ) {
        self.published.publish(metrics, lags);
    }

    fn publish_partition(
        &mut self,
        _now: Instant,
        metrics: &mut MetricsState,
        tp: &TopicPartition,
        lag: LagInputs,
    ) {
        self.published.publish_partition(metrics, tp, lag);
    }
}
