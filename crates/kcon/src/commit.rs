//! A handle that stores and commits offsets from any task while the consumer runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use kcon_offsets::{OffsetAndMetadata, Offsets};
use tokio::time::Instant;

use crate::TopicPartition;
use crate::error::Error;
use crate::hooks::{CommitSource, HookList};
use crate::metrics::MetricsHandle;
use crate::record::Record;

/// Stores and commits offsets from any task while the consumer runs
/// ([`Consumer::commit_handle`](crate::Consumer::commit_handle)): for a
/// [`stream`](crate::Consumer::stream) user, whose stream holds the consumer, or for tasks
/// that process partitions on their own.
///
/// It stores only offsets of partitions the consumer owns at that moment: once a partition is
/// revoked or lost, storing its offset is refused, so a late worker cannot commit over the
/// partition's next owner. A commit sends what is stored, whoever stored it (the consumer's
/// own store at its last call under `enable.auto.offset.store`, per-partition streams, and
/// this handle), in order with the consumer's own commits.
///
/// ```no_run
/// # async fn f(mut consumer: kcon::Consumer) -> Result<(), kcon::Error> {
/// let commits = consumer.commit_handle()?;
/// let record = consumer.recv().await?;
/// tokio::spawn(async move {
///     // ... process the record ...
///     commits.store_offset(&record)?;
///     commits.commit().await
/// });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CommitHandle {
    offsets: Arc<Offsets>,
    owned: Owned,
    metrics: MetricsHandle,
    hooks: HookList,
}

/// The partitions the consumer owns, as commit handles see them. Changed under the write
/// lock together with the offsets task's commands, so a store racing a revocation either
/// lands before the partition is forgotten (and is dropped with it) or is refused.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owned(Arc<RwLock<BTreeSet<TopicPartition>>>);

impl Owned {
    pub(crate) fn add(&self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut owned = self.0.write().unwrap_or_else(|e| e.into_inner());
        owned.extend(partitions);
    }

    /// Removes `partitions`, then runs `then` (telling the offsets task to forget them)
    /// before any handle can store again.
    pub(crate) fn remove(&self, partitions: &[TopicPartition], then: impl FnOnce()) {
        let mut owned = self.0.write().unwrap_or_else(|e| e.into_inner());
        for tp in partitions {
            owned.remove(tp);
        }
        then();
    }
}

impl CommitHandle {
    pub(crate) fn new(
        offsets: Arc<Offsets>,
        owned: Owned,
        metrics: MetricsHandle,
        hooks: HookList,
    ) -> CommitHandle {
        CommitHandle {
            offsets,
            owned,
            metrics,
            hooks,
        }
    }

    /// Marks `record` processed: the next commit sends its offset + 1 (with its leader
    /// epoch). Fails when the consumer does not own the record's partition (any more).
    pub fn store_offset(&self, record: &Record) -> Result<(), Error> {
        let owned = self.owned.0.read().unwrap_or_else(|e| e.into_inner());
        let tp = TopicPartition::new(&*record.topic, record.partition);
        if !owned.contains(&tp) {
            return Err(Error::misuse(format!(
                "cannot store an offset for {tp}: the consumer does not own it"
            ))
            .with_partitions(vec![tp]));
        }
        self.offsets.store(
            tp,
            OffsetAndMetadata {
                offset: record.offset.saturating_add(1),
                leader_epoch: record.leader_epoch,
                metadata: String::new(),
            },
        );
        Ok(())
    }

    /// Commits what is stored and waits for the coordinator's answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent (with the offsets
    /// stored by then) and goes on if the future is dropped; only its outcome goes unread, and it
    /// is then neither counted in the metrics nor told to the hooks. Commit again (or close) to
    /// know the offsets are committed. Dropped before its first poll, it does nothing.
    pub async fn commit(&self) -> Result<(), Error> {
        self.commit_map(None).await
    }

    /// Commits `offsets` (partition → the next offset to consume) and waits for the answer.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent (with the offsets
    /// stored by then) and goes on if the future is dropped; only its outcome goes unread, and it
    /// is then neither counted in the metrics nor told to the hooks. Commit again (or close) to
    /// know the offsets are committed. Dropped before its first poll, it does nothing.
    pub async fn commit_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<(), Error> {
        self.commit_map(Some(offset_map(offsets))).await
    }

    /// Commits `offsets` with their leader epochs and metadata and waits for the answer, as
    /// [`Consumer::commit_offsets_with_metadata`](crate::Consumer::commit_offsets_with_metadata)
    /// does.
    ///
    /// # Cancel safety
    ///
    /// As [`commit_offsets`](Self::commit_offsets).
    pub async fn commit_offsets_with_metadata(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), Error> {
        self.commit_map(Some(offsets.into_iter().collect())).await
    }

    async fn commit_map(
        &self,
        map: Option<BTreeMap<TopicPartition, OffsetAndMetadata>>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let given: Option<BTreeMap<TopicPartition, i64>> = map
            .as_ref()
            .map(|m| m.iter().map(|(tp, o)| (tp.clone(), o.offset)).collect());
        let result = self
            .offsets
            .commit_sync(map)
            .await
            .map(drop)
            .map_err(Error::from);
        let latency = started.elapsed();
        self.metrics.handle_commit(latency, result.is_ok());
        self.hooks.commit(
            CommitSource::Handle,
            given.as_ref(),
            latency,
            result.as_ref().err(),
        );
        result
    }
}

/// Offsets to commit as OffsetCommit takes them: no leader epoch, no metadata.
pub(crate) fn offset_map(
    offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    offsets
        .into_iter()
        .map(|(tp, offset)| {
            (
                tp,
                OffsetAndMetadata {
                    offset,
                    leader_epoch: None,
                    metadata: String::new(),
                },
            )
        })
        .collect()
}
