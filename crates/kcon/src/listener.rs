//! The rebalance listener: the application's say when partitions come and go.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kcon_offsets::{OffsetAndMetadata, Offsets};

use crate::TopicPartition;
use crate::error::Error;

/// What a [`RebalanceListener`] method returns: a boxed future, so the listener can await
/// (commit, flush a sink) before the consumer goes on.
pub type ListenerFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Told when the group gives the consumer partitions, takes them back in order, or finds them
/// lost. The methods run inside [`Consumer::recv`](crate::Consumer::recv) (and the other
/// receiving calls) and [`Consumer::close`](crate::Consumer::close), one at a time, in the
/// order of the group's events; no records are handed out while one runs.
///
/// - `on_assigned`: partitions added (under cooperative-sticky only the new ones). The
///   listener may [`seek`](RebalanceContext::seek) them; otherwise they start at their
///   committed offset, or by `auto.offset.reset`.
/// - `on_revoked`: partitions to give up. The member's generation is still valid: offsets
///   committed here count. The group waits for the method (at most `max.poll.interval.ms`).
///   With `enable.auto.commit`, the stored offsets of these partitions are committed right
///   after it returns.
/// - `on_lost`: partitions another member may already own (the generation was refused, or
///   the application stopped polling): nothing may be committed for them.
///
/// ```
/// use kcon::{ListenerFuture, RebalanceContext, RebalanceListener, TopicPartition};
///
/// /// Commits what was processed before partitions go (needs enable.auto.commit=false).
/// struct CommitOnRevoke;
///
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_revoked<'a>(
///         &'a mut self,
///         ctx: &'a RebalanceContext,
///         partitions: &'a [TopicPartition],
///     ) -> ListenerFuture<'a> {
///         Box::pin(async move {
///             if let Err(e) = ctx.commit().await {
///                 eprintln!("commit before giving up {} partitions failed: {e}", partitions.len());
///             }
///         })
///     }
/// }
/// ```
pub trait RebalanceListener: Send + 'static {
    /// Partitions added to the assignment.
    fn on_assigned<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        let _ = (ctx, partitions);
        Box::pin(async {})
    }

    /// Partitions about to be given up; offsets committed here count.
    fn on_revoked<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        let _ = (ctx, partitions);
        Box::pin(async {})
    }

    /// Partitions lost: another member may own them already.
    fn on_lost<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        let _ = (ctx, partitions);
        Box::pin(async {})
    }
}

/// What a [`RebalanceListener`] can do while the consumer waits for it: read positions, store
/// and commit offsets, and choose where newly assigned partitions start.
#[derive(Debug)]
pub struct RebalanceContext {
    pub(crate) offsets: Option<Arc<Offsets>>,
    /// The positions when the hook was called.
    pub(crate) positions: HashMap<TopicPartition, i64>,
    pub(crate) seeks: std::sync::Mutex<Vec<(TopicPartition, i64)>>,
}

impl RebalanceContext {
    /// The next offset the consumer hands out for `tp`, when known.
    ///
    /// ```
    /// # fn f(ctx: &kcon::RebalanceContext) {
    /// let next = ctx.position(&kcon::TopicPartition::new("orders", 0));
    /// # let _ = next;
    /// # }
    /// ```
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// Stores `offset` as the next offset to consume of `tp` (what a commit sends).
    ///
    /// ```
    /// # fn f(ctx: &kcon::RebalanceContext) -> Result<(), kcon::Error> {
    /// ctx.store_offset(kcon::TopicPartition::new("orders", 0), 42)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn store_offset(&self, tp: TopicPartition, offset: i64) -> Result<(), Error> {
        let offsets = self.offsets()?;
        offsets.store(
            tp,
            OffsetAndMetadata {
                offset,
                leader_epoch: None,
                metadata: String::new(),
            },
        );
        Ok(())
    }

    /// Commits every stored offset and waits for the coordinator's answer.
    ///
    /// ```
    /// # async fn f(ctx: &kcon::RebalanceContext) -> Result<(), kcon::Error> {
    /// ctx.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent and goes on if
    /// the future is dropped; only its outcome goes unread. Dropped before its first poll, it does
    /// nothing.
    pub async fn commit(&self) -> Result<(), Error> {
        self.offsets()?.commit_sync(None).await?;
        Ok(())
    }

    /// Commits `offsets` (partition → the next offset to consume) and waits for the answer.
    ///
    /// ```
    /// # async fn f(ctx: &kcon::RebalanceContext) -> Result<(), kcon::Error> {
    /// ctx.commit_offsets([(kcon::TopicPartition::new("orders", 0), 42)]).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent and goes on if
    /// the future is dropped; only its outcome goes unread. Dropped before its first poll, it does
    /// nothing.
    pub async fn commit_offsets(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<(), Error> {
        self.commit_offsets_with_metadata(crate::commit::offset_map(offsets))
            .await
    }

    /// Commits `offsets` with their leader epochs and metadata and waits for the answer, as
    /// [`Consumer::commit_offsets_with_metadata`](crate::Consumer::commit_offsets_with_metadata)
    /// does.
    ///
    /// ```
    /// # async fn f(ctx: &kcon::RebalanceContext) -> Result<(), kcon::Error> {
    /// let mut at = kcon::OffsetAndMetadata::new(42);
    /// at.metadata = "revoked".to_owned();
    /// ctx.commit_offsets_with_metadata([(kcon::TopicPartition::new("orders", 0), at)])
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`commit_offsets`](Self::commit_offsets).
    pub async fn commit_offsets_with_metadata(
        &self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), Error> {
        let map = offsets.into_iter().collect();
        self.offsets()?.commit_sync(Some(map)).await?;
        Ok(())
    }

    /// Starts `tp`, newly assigned, at `offset` instead of its committed offset (only in
    /// [`RebalanceListener::on_assigned`]; elsewhere use [`Consumer::seek`](crate::Consumer::seek)).
    ///
    /// ```
    /// # fn f(ctx: &kcon::RebalanceContext) {
    /// ctx.seek(kcon::TopicPartition::new("orders", 0), 0);
    /// # }
    /// ```
    pub fn seek(&self, tp: TopicPartition, offset: i64) {
        // Invariant: the lock is only taken here and after the listener returned.
        self.seeks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tp, offset));
    }

    fn offsets(&self) -> Result<&Offsets, Error> {
        self.offsets.as_deref().ok_or_else(|| {
            Error::misuse("offsets can only be stored and committed with a group.id")
        })
    }
}
