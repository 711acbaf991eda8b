//! The consumer: its own bookkeeping (`machine`), driven by the application's calls together
//! with a group member, its offsets and a fetcher. The decisions of the driving are sans-IO
//! (`driver`), shared with kcon-sim's whole-consumer simulation (the feature `fuzzing` exports
//! the driver and the machine to it as `crate::fuzzing::consumer`); this module is the async
//! shell that waits for the next input, over the tokio tasks' handles (`wiring`).

mod batch;
mod build;
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
pub(crate) mod driver;
pub(crate) mod hold;
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
pub(crate) mod machine;
mod rebalance;
mod subscription;
mod wiring;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::offsets::Watermarks;
use kcon_core::{
    ConsumerGroupMetadata, IsolationLevel, Machine, OffsetSpec, PersistentFailure, RequestFailure,
};
use kcon_fetch::FetchHandle;
use kcon_fetch::handout::Handout;
use kcon_group::{GroupEvent, GroupMember};
use kcon_offsets::{OffsetAndMetadata, Offsets};
use kcon_pool::Pool;
use tokio::sync::mpsc;
use tokio::time::{self, Instant};
use tracing::{info, warn};

use crate::commit::{CommitHandle, Owned, offset_map};
use crate::config::{ConsumerBuilder, Settings};
use crate::error::{Error, ErrorKind};
use crate::hooks::{CommitSource, ConsumerHooks, HookList};
use crate::listener::RebalanceListener;
use crate::metrics::{Metrics, MetricsHandle};
use crate::record::{BorrowedBatch, Record};
use crate::{ClientInstanceId, TopicPartition};

pub use rebalance::Hook;

use driver::{CloseTurn, Driver, FetchInput, Got, Turn};
use machine::{ConsumerMachine, MachineOptions};
pub(crate) use wiring::LeavingHook;
use wiring::{Exclusive, Wiring};

/// A Kafka consumer: subscribe to topics in a consumer group (or assign partitions), receive
/// records, commit what was processed.
///
/// Nothing happens in the background that the application must drive, but the group's
/// liveness follows the Java client's rule: ask for records ([`recv`](Consumer::recv),
/// [`recv_batch`](Consumer::recv_batch), the [`stream`](Consumer::stream)) at least every
/// `max.poll.interval.ms`, or the member leaves the group and rejoins on the next call.
/// Rebalance events are handled inside those calls: the [`RebalanceListener`] runs there, and
/// with `enable.auto.commit` the stored offsets are committed before partitions are given up.
///
/// At-least-once is the default: with `enable.auto.offset.store` (default true), a record's
/// offset is stored when the application next calls the consumer (to receive, commit or
/// close), i.e. once it has processed the record; auto-commit, `commit` and `close` commit
/// what is stored.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), kcon::Error> {
/// let mut consumer = kcon::Consumer::builder()
///     .bootstrap_servers("localhost:9092")
///     .group_id("billing")
///     // Without it a new group starts at each partition's end (`latest`).
///     .set("auto.offset.reset", "earliest")
///     .build()?;
/// consumer.subscribe(["invoices"])?;
/// loop {
///     let record = consumer.recv().await?;
///     println!("{}-{}@{}", record.topic, record.partition, record.offset);
/// #   break;
/// }
/// consumer.close().await?;
/// # Ok(())
/// # }
/// ```
///
/// Dropping a consumer without [`close`](Consumer::close) releases everything too: the member
/// leaves the group in the background, the fetcher and the offsets task stop (without a
/// final commit).
pub struct Consumer {
    settings: Settings,
    /// Everything the consumer knows of its subscription, assignment, positions and
    /// rebalances (its machine: it owns that state), and the driver's decisions around it.
    driver: Driver,
    /// The tasks' handles and everything else the machine commands or is watched by.
    parts: Wiring,
    /// Records handed out one at a time: the clock is read every [`PUBLISH_CHECK`] of them.
    handed: u32,
}

/// What the offsets task tells of the commits nobody awaits in place (auto-commits, async
/// ones): counted into the published metrics at once, like a commit handle's, and told to the
/// hooks.
fn commit_observer(metrics: MetricsHandle, hooks: HookList) -> kcon_offsets::CommitObserver {
    Arc::new(move |c: &kcon_offsets::FinishedCommit<'_>| {
        let source = match c.kind {
            kcon_offsets::CommitKind::Auto => CommitSource::Auto,
            _ => CommitSource::CommitAsync,
        };
        let error = c.result.as_ref().err().map(|e| Error::from(e.clone()));
        metrics.handle_commit(c.latency, error.is_none());
        hooks.commit(source, None, c.latency, error.as_ref());
    })
}

/// Records `recv` hands out between two looks at the clock for publishing metrics.
const PUBLISH_CHECK: u32 = 128;

impl Consumer {
    /// A builder for a consumer's configuration.
    ///
    /// ```
    /// let builder = kcon::Consumer::builder().bootstrap_servers("localhost:9092");
    /// # drop(builder);
    /// ```
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::new()
    }

    pub(crate) fn start(
        settings: Settings,
        listener: Option<Box<dyn RebalanceListener>>,
        hooks: Vec<Arc<dyn ConsumerHooks>>,
    ) -> Result<Consumer, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::misuse(
                "a consumer must be built inside a tokio runtime (its tasks run there)",
            ));
        }
        let pool = Pool::new(settings.pool.clone())?;
        let handout = Handout::for_config(&settings.fetch)?;
        let fetcher = FetchHandle::start(pool.clone(), settings.fetch.clone())?;
        let (group, offsets, offsets_reports) = match (&settings.group, &settings.offsets) {
            (Some(g), Some(o)) => {
                let member = GroupMember::start(pool.clone(), g.clone())?;
                let mut offsets = Offsets::start(pool.clone(), o.clone())?;
                offsets.follow(member.membership());
                let reports = offsets.take_reports();
                (Some(member), Some(Arc::new(offsets)), reports)
            }
            _ => (None, None, None),
        };
        let options = MachineOptions {
            group: group.is_some(),
            auto_commit: settings
                .offsets
                .as_ref()
                .is_some_and(|o| o.enable_auto_commit),
            auto_store: settings
                .offsets
                .as_ref()
                .is_some_and(|o| o.enable_auto_offset_store),
            metadata_max_age: settings.pool.metadata_max_age,
            max_poll_interval: settings
                .group
                .as_ref()
                .map_or(Duration::MAX, |g| g.max_poll_interval),
            coordinator_regex: settings
                .group
                .as_ref()
                .is_some_and(|g| g.group_protocol == kcon_core::GroupProtocol::Consumer),
        };
        let published = MetricsHandle::new(
            &settings.pool.client_id,
            settings.group.as_ref().map(|g| g.group_id.as_str()),
            fetcher.latency_counter(),
            pool.rebootstrap_counter(),
            pool.throttle_counter(),
            pool.clock().clone(),
        );
        let hooks = HookList::new(hooks);
        if let Some(o) = &offsets {
            o.observe(commit_observer(published.clone(), hooks.clone()));
        }
        let telemetry = {
            let metrics = published.clone();
            let mut resource = Vec::new();
            if let Some(g) = &settings.group {
                resource.push(("group_id".to_string(), g.group_id.clone()));
                if let Some(id) = &g.group_instance_id {
                    resource.push(("group_instance_id".to_string(), id.clone()));
                }
            }
            kcon_pool::telemetry::Telemetry::start(
                &pool,
                resource,
                Arc::new(move || crate::metrics::telemetry(&metrics.snapshot())),
            )
        };
        Ok(Consumer {
            driver: Driver::new(ConsumerMachine::new(options, handout, now())),
            parts: Wiring {
                pool,
                fetcher,
                group,
                offsets,
                offsets_reports,
                listener: Exclusive::new(listener),
                leaving: Exclusive::new(None),
                hold: None,
                hooks,
                published,
                telemetry,
                owned: Owned::default(),
                step: None,
            },
            settings,
            handed: 0,
        })
    }

    /// Subscribes to `topics` in the group (`group.id`), replacing the subscription. A name
    /// starting with `^` is a regular expression (librdkafka's convention): every topic whose
    /// name matches is subscribed. Under the classic protocol the consumer matches it against
    /// the cluster's topics, again when the metadata refreshes. Under `group.protocol=consumer`
    /// the group coordinator does (KIP-848's `SubscribedTopicRegex`, as librdkafka and the Java
    /// client's `SubscriptionPattern` do): Apache Kafka reads it in RE2/J syntax and matches
    /// whole names, so `^audit-.*` takes every topic starting with `audit-`, and `^audit` only
    /// `audit`. Several patterns go as `(a)|(b)`, names beside them by name.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.subscribe(["orders", "^audit-.*"])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.driver.machine.subscribe(now(), topics)?;
        self.run();
        Ok(())
    }

    /// Reads `partitions` without a group, replacing the previous assignment: each starts at
    /// its committed offset when a `group.id` is set and it has one, else by
    /// `auto.offset.reset`, unless [`seek`](Consumer::seek)ed before the next receiving call.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// use kcon::TopicPartition;
    /// consumer.assign([TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        self.driver.machine.assign(partitions)?;
        self.run();
        Ok(())
    }

    /// Stops reading. A group member gives its partitions up at once, as on a revocation
    /// (the listener's `on_revoked`, then under auto-commit a commit of the stored offsets),
    /// and leaves the group; partitions assigned by the application are dropped. The consumer
    /// can then subscribe or assign again.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) {
    /// consumer.unsubscribe().await;
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropped part-way, the unsubscription is half done (the member may have left
    /// the group and the partitions been given up, the listener's revocation may still be running)
    /// while the consumer still counts itself subscribed. Call `unsubscribe` again: it finishes
    /// what the dropped call began, then completes.
    pub async fn unsubscribe(&mut self) {
        // A rebalance left half-way by a cancelled call is finished first.
        self.finish_steps().await;
        self.driver.machine.unsubscribe();
        self.run();
        self.finish_steps().await;
        self.driver.machine.unsubscribed();
        self.run();
    }

    /// The topics subscribed: those named, or those a pattern matches now (empty with
    /// partitions assigned by the application).
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// println!("{:?}", consumer.subscription());
    /// # }
    /// ```
    pub fn subscription(&self) -> BTreeSet<String> {
        self.driver.machine.subscription()
    }

    /// The partitions the consumer owns now.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// for tp in consumer.assignment() {
    ///     println!("{tp}");
    /// }
    /// # }
    /// ```
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.driver.machine.assignment().clone()
    }

    /// The consumer's place in its group, for a transactional producer's
    /// `send_offsets_to_transaction`: the group id, the generation (the member epoch under
    /// `group.protocol=consumer`), the member id and `group.instance.id`. With them the group
    /// coordinator refuses offsets a consumer commits through a transaction after it lost its
    /// partitions (KIP-447). Before the consumer has joined, the generation is -1 and the
    /// member id empty, and only the group is checked. Fails without `group.id`.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// let group = consumer.group_metadata()?;
    /// println!("{} generation {}", group.group_id, group.generation_id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn group_metadata(&self) -> Result<ConsumerGroupMetadata, Error> {
        let (Some(settings), Some(member)) = (&self.settings.group, &self.parts.group) else {
            return Err(Error::misuse(
                "group_metadata: the consumer has no group.id, so there is no group to commit \
                 offsets for",
            ));
        };
        let membership = member.membership().borrow().clone();
        Ok(ConsumerGroupMetadata::member(
            settings.group_id.clone(),
            membership.generation_id,
            membership.member_id,
            settings.group_instance_id.clone(),
        ))
    }

    /// The next record, waiting for one. Rebalances are handled meanwhile (the listener runs
    /// here); an error for one partition (corrupt data, an offset out of range under
    /// `auto.offset.reset=none`) is returned once and the other partitions go on.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let record = consumer.recv().await?;
    /// println!("{:?}", record.value);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: records are taken from the consumer only in the poll that returns them, so a
    /// call dropped while it waits (a `select!`, a timeout) loses none, and the next receiving call
    /// hands out the same ones. A rebalance handled meanwhile (the listener's call, the
    /// revocation's commit) runs on a task of its own: a dropped call leaves it running and the
    /// next receiving call finishes it, so the listener runs once per event.
    pub async fn recv(&mut self) -> Result<Record, Error> {
        loop {
            if let Some(record) = self.driver.machine.next_record() {
                self.handed = self.handed.wrapping_add(1);
                if self.handed.is_multiple_of(PUBLISH_CHECK) {
                    self.publish(false);
                }
                return Ok(record);
            }
            self.driver.machine.finish_current();
            self.driver.machine.set_in_place(false);
            self.fill().await?;
        }
    }

    /// The next records, waiting for at least one: at most `max.poll.records`, of one
    /// partition, in order.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// for record in consumer.recv_batch().await? {
    ///     println!("{}", record.offset);
    /// }
    /// consumer.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: records are taken from the consumer only in the poll that returns them, so a
    /// call dropped while it waits (a `select!`, a timeout) loses none, and the next receiving call
    /// hands out the same ones. A rebalance handled meanwhile (the listener's call, the
    /// revocation's commit) runs on a task of its own: a dropped call leaves it running and the
    /// next receiving call finishes it, so the listener runs once per event.
    pub async fn recv_batch(&mut self) -> Result<Vec<Record>, Error> {
        loop {
            if let Some((tp, records)) = self.driver.machine.take_batch() {
                self.publish_for(&tp);
                return Ok(records);
            }
            self.driver.machine.finish_current();
            self.driver.machine.set_in_place(false);
            self.fill().await?;
        }
    }

    /// The next records, lent to be read where they lie in the Fetch answer, waiting for at
    /// least one: the records [`recv_batch`](Consumer::recv_batch) would return (at most
    /// `max.poll.records`, of one partition, in order), handed out as it hands them out (the
    /// position moves past them, and `enable.auto.offset.store` stores it), but no [`Record`]
    /// is built: keys, values and headers are slices of the answer's bytes, no copy and no
    /// reference count per record. For a loop that reads each record once and keeps none
    /// (counting, parsing into types of its own, forwarding) this costs less per record than
    /// `recv_batch`; [`BorrowedRecord::to_record`](crate::BorrowedRecord::to_record) keeps one.
    ///
    /// The batch borrows the consumer: drop it before the consumer's next call. With
    /// `enable.auto.offset.store=false`, commit the offsets read with
    /// [`commit_offsets`](Consumer::commit_offsets), or store a record kept with `to_record`
    /// ([`store_offset`](Consumer::store_offset)). With [`ConsumerHooks`], the records are
    /// decoded for `on_records` first and lent from there.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// loop {
    ///     for record in &consumer.recv_borrowed().await? {
    ///         println!("{} {:?}", record.offset(), record.value());
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`recv_batch`](Consumer::recv_batch): records are lent only in the poll
    /// that returns them.
    pub async fn recv_borrowed(&mut self) -> Result<BorrowedBatch<'_>, Error> {
        self.driver.machine.set_in_place(true);
        loop {
            while !self.driver.machine.has_records() {
                self.driver.machine.finish_current();
                self.fill().await?;
            }
            if let Some(tp) = self.driver.machine.current_partition().cloned() {
                self.publish_for(&tp);
            }
            // Publishing runs the machine's commands: the batch is lent only if it still holds
            // records after them.
            if self.driver.machine.has_records() {
                break;
            }
        }
        let Some((partition, records)) = self.driver.machine.lend_batch() else {
            unreachable!("the current batch has records to lend, checked just now")
        };
        Ok(BorrowedBatch::new(partition, records))
    }

    /// [`recv_batch`](Consumer::recv_batch) with the batch's partition, or what `interrupt`
    /// brings first.
    pub(crate) async fn recv_batch_or<T>(
        &mut self,
        interrupt: &mut mpsc::UnboundedReceiver<T>,
    ) -> Result<Result<(TopicPartition, Vec<Record>), T>, Error> {
        loop {
            if let Some(batch) = self.driver.machine.take_batch() {
                self.publish_for(&batch.0);
                return Ok(Ok(batch));
            }
            self.driver.machine.finish_current();
            if let Some(t) = self.fill_or(Some(&mut *interrupt)).await? {
                return Ok(Err(t));
            }
        }
    }

    /// Marks `record` processed: a commit sends its offset + 1 (with its leader epoch). With
    /// `enable.auto.offset.store=false` this is the only way offsets are stored.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let record = consumer.recv().await?;
    /// // ... process it ...
    /// consumer.store_offset(&record)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn store_offset(&mut self, record: &Record) -> Result<(), Error> {
        let tp = TopicPartition::new(&*record.topic, record.partition);
        self.driver
            .machine
            .store_offset(tp, record.offset, record.leader_epoch)?;
        self.run();
        Ok(())
    }

    /// The offset `tp` started at when it was last assigned and the metadata committed with it
    /// (when not empty), once: a record processor reads in it the records done with above the
    /// offset.
    pub(crate) fn take_committed_metadata(&mut self, tp: &TopicPartition) -> Option<(i64, String)> {
        self.driver.machine.take_committed_metadata(tp)
    }

    /// Stores `at` (the next offset to consume, with its leader epoch and metadata) for `tp`:
    /// a record processor finishing records out of order stores its lowest record not
    /// finished, with the records finished above it in the metadata.
    pub(crate) fn store_at(
        &mut self,
        tp: TopicPartition,
        at: OffsetAndMetadata,
    ) -> Result<(), Error> {
        self.driver.machine.store_at(tp, at)?;
        self.run();
        Ok(())
    }

    /// Commits the stored offsets without waiting; the returned future (which need not be
    /// polled for the commit to happen) completes with the outcome. Commits are sent in order;
    /// a later commit asked for before an earlier one went out carries its offsets.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let done = consumer.commit_async()?;
    /// let next = consumer.recv().await?;
    /// done.await?;
    /// # drop(next);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent (with the offsets
    /// stored by then) and goes on if the future is dropped; only its outcome goes unread, and it
    /// is then neither counted in the metrics nor told to the hooks. Commit again (or close) to
    /// know the offsets are committed. Dropped before its first poll, it does nothing.
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.driver.machine.usable()?;
        self.driver.machine.store_processed();
        self.run();
        let offsets = self.offsets_handle()?.clone();
        let started = Instant::now();
        let result = offsets.commit_sync(None).await;
        self.commit_done(CommitSource::Commit, None, started, result.map(drop))
    }

    /// Commits `offsets` (partition → the next offset to consume) and waits for the answer.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.commit_offsets([(kcon::TopicPartition::new("orders", 0), 100)]).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that the commit is never withdrawn: once polled, it is sent (with the offsets
    /// stored by then) and goes on if the future is dropped; only its outcome goes unread, and it
    /// is then neither counted in the metrics nor told to the hooks. Commit again (or close) to
    /// know the offsets are committed. Dropped before its first poll, it does nothing.
    pub async fn commit_offsets(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<(), Error> {
        self.commit_offsets_with_metadata(offset_map(offsets)).await
    }

    /// Commits `offsets` (partition → the next offset to consume, with the leader epoch of the
    /// last record consumed and metadata the group keeps beside the offset) and waits for the
    /// answer, as the Java client's `commitSync` with `OffsetAndMetadata` does. The broker
    /// refuses metadata longer than its `offset.metadata.max.bytes` (4,096 bytes by default)
    /// with OFFSET_METADATA_TOO_LARGE, and commits nothing of that partition.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let mut at = kcon::OffsetAndMetadata::new(100);
    /// at.metadata = "checkpoint 7".to_owned();
    /// consumer
    ///     .commit_offsets_with_metadata([(kcon::TopicPartition::new("orders", 0), at)])
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`commit_offsets`](Self::commit_offsets): never withdrawn once polled; dropped, only
    /// its outcome goes unread.
    pub async fn commit_offsets_with_metadata(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    ) -> Result<(), Error> {
        self.driver.machine.usable()?;
        let map: BTreeMap<TopicPartition, OffsetAndMetadata> = offsets.into_iter().collect();
        let given: BTreeMap<TopicPartition, i64> =
            map.iter().map(|(tp, o)| (tp.clone(), o.offset)).collect();
        let handle = self.offsets_handle()?.clone();
        let started = Instant::now();
        let result = handle.commit_sync(Some(map)).await;
        self.commit_done(
            CommitSource::Commit,
            Some(&given),
            started,
            result.map(drop),
        )
    }

    /// A commit the application asked for finished: counted, told to the hooks, published.
    fn commit_done(
        &mut self,
        source: CommitSource,
        given: Option<&BTreeMap<TopicPartition, i64>>,
        started: Instant,
        result: Result<(), kcon_offsets::CommitError>,
    ) -> Result<(), Error> {
        let latency = started.elapsed();
        let result = result.map_err(Error::from);
        self.driver.machine.commit_done(latency, result.is_ok());
        self.parts
            .hooks
            .commit(source, given, latency, result.as_ref().err());
        self.publish(true);
        result
    }

    /// Commits the stored offsets without waiting; the returned future (which need not be
    /// polled for the commit to happen) completes with the outcome. Commits are sent in order;
    /// a later commit asked for before an earlier one went out carries its offsets.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let done = consumer.commit_async()?;
    /// let next = consumer.recv().await?;
    /// done.await?;
    /// # drop(next);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// The commit is asked for when this returns; the future only tells its outcome, so dropping it
    /// (or never polling it) changes nothing, and the commit is counted and told to the hooks all
    /// the same.
    pub fn commit_async(
        &mut self,
    ) -> Result<impl std::future::Future<Output = Result<(), Error>> + Send + 'static, Error> {
        self.driver.machine.usable()?;
        self.driver.machine.store_processed();
        self.run();
        let rx = self.offsets_handle()?.commit_async(None);
        // Counted and told to the hooks by the offsets task as it finishes (see `start`),
        // whether or not this future is polled.
        Ok(async move {
            match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(Error::from(e)),
                Err(_) => Err(Error::closed()),
            }
        })
    }

    /// The committed offsets of `partitions` (the next offset to consume; `None` when the
    /// group has none).
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// let committed = consumer.committed(consumer.assignment()).await?;
    /// # drop(committed);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only asks; dropping the future changes nothing (the requests out are
    /// abandoned, their answers thrown away).
    pub async fn committed(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
        let got = self.committed_with_metadata(partitions).await?;
        Ok(got
            .into_iter()
            .map(|(tp, o)| (tp, o.map(|o| o.offset)))
            .collect())
    }

    /// The committed offsets of `partitions` with what was committed beside each: the leader
    /// epoch and the metadata (`None` when the group has no offset for the partition).
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// for (tp, committed) in consumer.committed_with_metadata(consumer.assignment()).await? {
    ///     if let Some(at) = committed {
    ///         println!("{tp}: {} ({})", at.offset, at.metadata);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`committed`](Self::committed).
    pub async fn committed_with_metadata(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>, Error> {
        let set: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let mut got = self.offsets_handle()?.committed(Some(set.clone())).await?;
        Ok(set
            .into_iter()
            .map(|tp| {
                let committed = got.remove(&tp).flatten().filter(|o| o.offset >= 0);
                (tp, committed)
            })
            .collect())
    }

    /// The next offset the consumer hands out for `tp`; `None` until it is known (an owned
    /// partition whose start is still being looked up, or one the consumer does not own).
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// let next = consumer.position(&kcon::TopicPartition::new("orders", 0));
    /// # drop(next);
    /// # }
    /// ```
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.driver.machine.position(tp)
    }

    /// How many records of `tp` (owned) lie between the position and the end of its log as
    /// the last Fetch answer for it gave that end (the high watermark; the last stable offset
    /// under `read_committed`), with no request sent: the Java client's `currentLag`
    /// (KIP-695). `Some(0)` once everything the log held when last asked has been handed out,
    /// an empty partition's as soon as its first answer comes; `None` until the position and
    /// such an answer are known. Every Fetch answer updates it, those that bring the
    /// partition no records too.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let tp = kcon::TopicPartition::new("orders", 0);
    /// let batch = consumer.recv_batch().await?;
    /// if consumer.current_lag(&tp) == Some(0) {
    ///     println!("read to the end of {tp} as far as the broker last said");
    /// }
    /// # drop(batch);
    /// # Ok(())
    /// # }
    /// ```
    pub fn current_lag(&self, tp: &TopicPartition) -> Option<i64> {
        let read_committed = self.isolation() == IsolationLevel::ReadCommitted;
        self.driver.machine.current_lag(tp, read_committed)
    }

    /// Moves `tp` (owned) to `offset`: the next record handed out is the one at `offset`.
    ///
    /// ```no_run
    /// # fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.seek(kcon::TopicPartition::new("orders", 0), 1234)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), Error> {
        self.driver.machine.seek(tp, offset)?;
        self.run();
        Ok(())
    }

    /// Moves `partitions` (owned) to the start of their logs.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let all = consumer.assignment();
    /// consumer.seek_to_beginning(all).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: every partition's start is looked up first, and the partitions are moved only
    /// in the poll that returns: dropped before, none has moved.
    pub async fn seek_to_beginning(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        self.seek_to(partitions, OffsetSpec::Earliest).await
    }

    /// Moves `partitions` (owned) to the end of their logs: only records produced from now on
    /// are handed out.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let all = consumer.assignment();
    /// consumer.seek_to_end(all).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: every partition's end is looked up first, and the partitions are moved only in
    /// the poll that returns: dropped before, none has moved.
    pub async fn seek_to_end(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        self.seek_to(partitions, OffsetSpec::Latest).await
    }

    async fn seek_to(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
        spec: OffsetSpec,
    ) -> Result<(), Error> {
        let specs: BTreeMap<TopicPartition, OffsetSpec> =
            partitions.into_iter().map(|tp| (tp, spec)).collect();
        let found = self.list_offsets(&specs).await?;
        for (tp, listed) in found {
            self.seek(tp, listed.offset.max(0))?;
        }
        Ok(())
    }

    /// The end of each partition's log now, asked of the leaders (ListOffsets `latest`): the
    /// high watermark, or the last stable offset under `read_committed`. The partitions need
    /// not be owned. The Java client's `endOffsets`.
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// let tp = kcon::TopicPartition::new("orders", 0);
    /// let ends = consumer.end_offsets([tp.clone()]).await?;
    /// println!("{tp} ends at {}", ends[&tp]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn end_offsets(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, i64>, Error> {
        let specs: BTreeMap<TopicPartition, OffsetSpec> = partitions
            .into_iter()
            .map(|tp| (tp, OffsetSpec::Latest))
            .collect();
        let found = self.list_offsets(&specs).await?;
        Ok(found.into_iter().map(|(tp, l)| (tp, l.offset)).collect())
    }

    /// For each partition, the first offset whose record's timestamp (ms since the epoch) is
    /// at or after the one given, with that record's timestamp; `None` when no record is that
    /// recent.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let tp = kcon::TopicPartition::new("orders", 0);
    /// let found = consumer.offsets_for_times([(tp.clone(), 1_700_000_000_000)]).await?;
    /// if let Some(Some((offset, _timestamp))) = found.get(&tp) {
    ///     consumer.seek(tp, *offset)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only asks; dropping the future changes nothing (the requests out are
    /// abandoned, their answers thrown away).
    pub async fn offsets_for_times(
        &self,
        timestamps: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<BTreeMap<TopicPartition, Option<(i64, i64)>>, Error> {
        let specs: BTreeMap<TopicPartition, OffsetSpec> = timestamps
            .into_iter()
            .map(|(tp, ts)| (tp, OffsetSpec::Timestamp(ts)))
            .collect();
        let found = self.list_offsets(&specs).await?;
        Ok(found
            .into_iter()
            .map(|(tp, l)| {
                let hit = (l.offset >= 0).then_some((l.offset, l.timestamp));
                (tp, hit)
            })
            .collect())
    }

    async fn list_offsets(
        &self,
        specs: &BTreeMap<TopicPartition, OffsetSpec>,
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>, Error> {
        let found = kcon_pool::list_offsets(&self.parts.pool, specs, self.isolation()).await?;
        for (tp, l) in &found {
            if let Some(e) =
                kcon_pool::ListOffsetsError::partition(ApiKey::ListOffsets, l.error_code, tp)
            {
                return Err(Error::from(e));
            }
        }
        Ok(found)
    }

    /// Where `tp`'s log starts and ends (log start offset, high watermark, last stable
    /// offset), asked of its leader.
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// let w = consumer.watermarks(&kcon::TopicPartition::new("orders", 0)).await?;
    /// println!("{}..{}", w.log_start, w.high_watermark);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only asks; dropping the future changes nothing (the requests out are
    /// abandoned, their answers thrown away).
    pub async fn watermarks(&self, tp: &TopicPartition) -> Result<Watermarks, Error> {
        let set = BTreeSet::from([tp.clone()]);
        let mut found = kcon_pool::watermarks(&self.parts.pool, &set).await?;
        found.remove(tp).ok_or_else(|| {
            Error::new(
                ErrorKind::Broker,
                format!("no watermarks for {tp} in the answer"),
            )
            .with_partitions(vec![tp.clone()])
        })
    }

    /// The lag of every owned partition, asked of the leaders now: records between the
    /// position and the end of the log (the high watermark, or the last stable offset under
    /// read_committed; under read_uncommitted the larger of ListOffsets' answer and the last
    /// Fetch answer's high watermark, by kcon-core's rule), and the age of the next record
    /// when the consumer holds it.
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) -> Result<(), kcon::Error> {
    /// for (tp, lag) in consumer.lag().await? {
    ///     println!("{tp}: {:?} records", lag.records);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only asks; dropping the future changes nothing (the requests out are
    /// abandoned, their answers thrown away).
    pub async fn lag(
        &self,
    ) -> Result<BTreeMap<TopicPartition, crate::metrics::PartitionLag>, Error> {
        let found =
            kcon_pool::watermarks(&self.parts.pool, self.driver.machine.assignment()).await?;
        let now = self.wall_ms();
        let isolation = self.isolation();
        Ok(found
            .into_iter()
            .map(|(tp, w)| {
                let fetched = match isolation {
                    IsolationLevel::ReadUncommitted => self.driver.machine.high_watermark(&tp),
                    IsolationLevel::ReadCommitted => None,
                };
                let end = kcon_core::offsets::log_end(w.end(isolation), fetched);
                let lag = self
                    .driver
                    .machine
                    .partition_lag(&tp, Some(w.log_start), end, now);
                (tp, lag)
            })
            .collect())
    }

    /// Stops handing out records of `partitions` (owned) and fetching them, until
    /// [`resume`](Consumer::resume). The group membership is unaffected.
    ///
    /// ```no_run
    /// # fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let tp = kcon::TopicPartition::new("orders", 0);
    /// consumer.pause([tp.clone()])?;
    /// consumer.resume([tp])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn pause(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        let result = self.driver.machine.pause(partitions);
        self.run();
        result
    }

    /// Fetches and hands out `partitions` again after [`pause`](Consumer::pause).
    ///
    /// ```no_run
    /// # fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.resume(consumer.assignment())?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn resume(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<(), Error> {
        let result = self.driver.machine.resume(partitions);
        self.run();
        result
    }

    /// The partitions paused now.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// assert!(consumer.paused().is_empty());
    /// # }
    /// ```
    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.driver.machine.paused().clone()
    }

    /// The wall clock now, in milliseconds since the epoch: the pool's clock, the one every
    /// part of the consumer reads.
    pub(crate) fn wall_ms(&self) -> i64 {
        self.parts.pool.clock().now_ms()
    }

    /// A snapshot of the consumer's metrics: per-partition position and lag (from the last
    /// Fetch answers, no request is sent), records and bytes fetched and their rates,
    /// rebalances and their duration, commit latency.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// let m = consumer.metrics();
    /// println!("{} records, {} rebalances", m.records_consumed, m.rebalances);
    /// # }
    /// ```
    pub fn metrics(&self) -> Metrics {
        let lags = self.driver.machine.lags(self.wall_ms());
        self.driver.machine.metrics().snapshot(
            now(),
            lags,
            self.parts.fetcher.latency(),
            self.parts.pool.rebootstraps(),
            self.parts.pool.throttle_counter().snapshot(),
        )
    }

    /// A handle that reads the consumer's metrics from any task or thread while the consumer
    /// runs (this method needs the consumer; the handle does not).
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// let metrics = consumer.metrics_handle();
    /// tokio::spawn(async move {
    ///     loop {
    ///         println!("{:?}", metrics.snapshot().partitions);
    ///         tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    ///     }
    /// });
    /// # }
    /// ```
    pub fn metrics_handle(&self) -> crate::metrics::MetricsHandle {
        self.parts.published.clone()
    }

    /// A cloneable handle that stores and commits offsets from any task while the consumer
    /// runs: for [`stream`](Consumer::stream) users and per-partition workers. Needs a
    /// `group.id`.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let commits = consumer.commit_handle()?;
    /// let record = consumer.recv().await?;
    /// commits.store_offset(&record)?;
    /// commits.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit_handle(&self) -> Result<CommitHandle, Error> {
        Ok(CommitHandle::new(
            self.offsets_handle()?.clone(),
            self.parts.owned.clone(),
            self.parts.published.clone(),
            self.parts.hooks.clone(),
        ))
    }

    /// Publishes the metrics for [`MetricsHandle`]s: at once when `force`, else when due.
    fn publish(&mut self, force: bool) {
        self.driver.publish(now(), force, &mut self.parts);
    }

    /// Publishes as [`publish`](Self::publish) does; when that is put off as too soon, still
    /// publishes the counters and the lag of `tp`, whose records were just handed out.
    fn publish_for(&mut self, tp: &TopicPartition) {
        self.driver.machine.publish_for(now(), tp);
        self.run();
    }

    /// Passes the machine's commands to the parts.
    fn run(&mut self) {
        self.driver.run(now(), &mut self.parts);
    }

    /// Closes the consumer within `close.timeout.ms` (default 30 s): the listener is told the
    /// partitions are revoked, a final commit of the stored offsets (with
    /// `enable.auto.commit`), LeaveGroup (not for a static member), fetch sessions closed.
    ///
    /// ```no_run
    /// # async fn f(consumer: kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.close().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the consumer is moved in, so dropping the future drops it part-way through
    /// the close, and what was not done yet is left as dropping a consumer leaves it (the member
    /// leaves the group in the background; a final commit under way may be cut off; the listener
    /// may not be told of the revocation). Bound it with [`close_within`](Consumer::close_within)
    /// rather than a timeout around it.
    pub async fn close(self) -> Result<(), Error> {
        let timeout = self.settings.close_timeout;
        self.close_within(timeout).await
    }

    /// [`close`](Consumer::close), within `timeout`.
    ///
    /// ```no_run
    /// # async fn f(consumer: kcon::Consumer) -> Result<(), kcon::Error> {
    /// consumer.close_within(std::time::Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the consumer is moved in, so dropping the future drops it part-way through
    /// the close, and what was not done yet is left as dropping a consumer leaves it (the member
    /// leaves the group in the background; a final commit under way may be cut off; the listener
    /// may not be told of the revocation). Give it the time it may take as `timeout` instead.
    pub async fn close_within(mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut result = Ok(());
        // The driver says what comes next: a rebalance under way finished, the listener told
        // of the revocation (the final commit below commits, not the revocation's own), the
        // final commit, then the member and the fetcher close.
        loop {
            match self.driver.close_turn(now(), &mut self.parts) {
                turn @ (CloseTurn::Finishing | CloseTurn::Revoking) => {
                    if time::timeout_at(deadline, self.finish_step()).await.is_ok() {
                        continue;
                    }
                    if turn == CloseTurn::Finishing {
                        warn!("a revocation in progress did not finish before the close deadline");
                    }
                    if self.driver.close_late(now(), &mut self.parts) || turn == CloseTurn::Revoking
                    {
                        warn!("the rebalance listener did not return before the close deadline");
                    }
                }
                CloseTurn::Commit => {
                    if let Some(offsets) = &self.parts.offsets {
                        let started = Instant::now();
                        let done = time::timeout_at(deadline, offsets.commit_sync(None)).await;
                        if let Ok(outcome) = &done {
                            let error = outcome.as_ref().err().map(|e| Error::from(e.clone()));
                            self.parts.hooks.commit(
                                CommitSource::Close,
                                None,
                                started.elapsed(),
                                error.as_ref(),
                            );
                        }
                        match done {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => result = Err(Error::from(e)),
                            Err(_) => {
                                result = Err(Error::new(
                                    ErrorKind::Transport,
                                    "the final commit did not finish within close.timeout.ms",
                                )
                                .retriable(true))
                            }
                        }
                    }
                    self.driver.close_committed();
                }
                CloseTurn::Leave => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let fetcher = self.parts.fetcher;
        let fetch_close = fetcher.close(left);
        match self.parts.group.take() {
            Some(group) => {
                tokio::join!(group.close(left), fetch_close);
            }
            None => {
                fetch_close.await;
            }
        }
        if let Some(telemetry) = &self.parts.telemetry {
            telemetry.close(deadline).await;
        }
        info!("consumer closed");
        result
    }

    /// The id the cluster gave this consumer for its pushed metrics (KIP-714), waiting up to
    /// `timeout` for a broker to name it (it asks once it reached the cluster); `None` when none
    /// did by then, or `enable.metrics.push` is false, or no broker offers KIP-714. An operator
    /// finds the consumer's metrics in the brokers' metrics plugin under this id.
    ///
    /// ```no_run
    /// # async fn f(consumer: &kcon::Consumer) {
    /// if let Some(id) = consumer.client_instance_id(std::time::Duration::from_secs(5)).await {
    ///     println!("client instance {id}");
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn client_instance_id(&self, timeout: Duration) -> Option<ClientInstanceId> {
        match &self.parts.telemetry {
            Some(t) => t.client_instance_id(timeout).await,
            None => None,
        }
    }

    /// Makes sure the consumer has records to hand out, handling group and fetch events
    /// meanwhile.
    async fn fill(&mut self) -> Result<(), Error> {
        self.fill_or::<()>(None).await.map(drop)
    }

    /// [`fill`](Consumer::fill), or returns what `interrupt` brings first (`Some`): waiting on
    /// it is as safe to cancel as the group's and the fetcher's channels, so a driver can
    /// listen to its own commands without cancelling a rebalance half-way.
    ///
    /// The decisions are the driver's ([`Driver::turn`] and the inputs it is handed); this loop
    /// only waits. Every wait here is on a channel, a sleep, or the task of the machine's step
    /// (kept in the wiring), so dropping the call loses nothing.
    pub(crate) async fn fill_or<T>(
        &mut self,
        mut interrupt: Option<&mut mpsc::UnboundedReceiver<T>>,
    ) -> Result<Option<T>, Error> {
        self.driver.call(now(), &mut self.parts)?;
        loop {
            match self.driver.turn(now(), &mut self.parts) {
                Turn::Error(e) => return Err(e),
                Turn::Again => continue,
                Turn::Step => {
                    self.finish_step().await;
                    continue;
                }
                Turn::Ready => return Ok(None),
                Turn::Wait => {}
            }
            let deadline = self.driver.machine.poll_timeout().map(Instant::from_std);
            tokio::select! {
                biased;
                event = next_group_event(self.parts.group.as_mut()) => {
                    if let Some(e) = self.driver.group_event(now(), event, &mut self.parts) {
                        return Err(e);
                    }
                }
                Some(t) = next_interrupt(interrupt.as_deref_mut()) => return Ok(Some(t)),
                input = next_fetch_input(&mut self.parts.fetcher, self.driver.machine.has_released()) => {
                    match self.driver.fetch_input(now(), input, &mut self.parts) {
                        Got::Records => return Ok(None),
                        Got::Error(e) => return Err(e),
                        Got::Nothing => {}
                    }
                }
                Some(report) = next_report(self.parts.offsets_reports.as_mut()) => {
                    self.driver.offsets_report(now(), report, &mut self.parts);
                }
                () = sleep_until(deadline) => self.driver.timeout(now(), &mut self.parts),
            }
        }
    }

    /// Carries out the machine's steps one after another until none is left.
    async fn finish_steps(&mut self) {
        while self.driver.steps(now(), &mut self.parts) {
            self.finish_step().await;
        }
    }

    /// Waits for the step out and hands its answer to the driver. The step runs on a task of
    /// its own whose handle stays in the wiring: a call cancelled meanwhile leaves the work
    /// running, and the next call awaits the same task. So the member is always told a
    /// revocation is done, and the listener runs exactly once per event.
    async fn finish_step(&mut self) {
        let (id, answer) = match self.parts.step.as_mut() {
            Some((id, task)) => {
                let id = *id;
                let done = task.await;
                self.parts.step = None;
                let answer = match done {
                    Ok((listener, answer)) => {
                        if listener.is_some() {
                            *self.parts.listener.get_mut() = listener;
                        }
                        Ok(answer)
                    }
                    Err(e) => Err(RequestFailure::retriable(e.to_string())),
                };
                (id, answer)
            }
            // Invariant: a step the machine awaits has its task here; should it not, the
            // machine hears the step failed rather than waiting for ever.
            None => match self.driver.machine.awaiting_step() {
                Some(id) => (
                    id,
                    Err(RequestFailure::retriable("the step's task is gone")),
                ),
                None => return,
            },
        };
        self.driver.answered(now(), id, answer, &mut self.parts);
    }

    /// Hands storing offsets to an owner above the consumer that processes its records (a
    /// runner such as [`Processor`](crate::Processor)). The records handed out so far are
    /// stored under the consumer's own rule (`enable.auto.offset.store`) first. From then on
    /// an offset is stored only by [`store_offset`](Consumer::store_offset), as the owner
    /// finishes records, and `on_leaving` hears of the partitions the consumer lets go of
    /// (revoked or lost), before a revocation's commit: what the owner holds of them is no
    /// longer its to finish. `on_leaving` runs inside the consumer's calls: it must not block.
    ///
    /// Refused ([`ErrorKind::Misuse`]) when storing was taken over
    /// already (a consumer has one owner).
    ///
    /// ```no_run
    /// use std::sync::{Arc, Mutex};
    /// # fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let leaving = Arc::new(Mutex::new(Vec::new()));
    /// let told = leaving.clone();
    /// consumer.take_over_storing(move |partitions| {
    ///     told.lock().unwrap().extend_from_slice(partitions);
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn take_over_storing(
        &mut self,
        on_leaving: impl FnMut(&[TopicPartition]) + Send + 'static,
    ) -> Result<(), Error> {
        if self.parts.leaving.get_mut().is_some() {
            return Err(Error::misuse(
                "storing offsets was taken over already: a consumer has one owner",
            ));
        }
        self.store_now();
        self.set_leaving_hook(Box::new(on_leaving));
        Ok(())
    }

    /// Hands storing to an owner above the consumer: `hook` hears of partitions leaving,
    /// before the revocation's commit, and the owner stores records as it processes them.
    pub(crate) fn set_leaving_hook(&mut self, hook: LeavingHook) {
        *self.parts.leaving.get_mut() = Some(hook);
        self.driver.machine.store_elsewhere();
    }

    /// Has `hold` hold every revocation (not a loss, not the close) until the owner above
    /// the consumer releases the partitions: they are told to it as they begin revoking
    /// (instead of to the leaving hook, which hears of them when they go), and the listener's
    /// `on_revoked` and the revocation's commit wait for the release.
    pub(crate) fn hold_revocations(&mut self, hold: std::sync::Arc<hold::RevocationHold>) {
        self.parts.hold = Some(hold);
        self.driver.machine.hold_revocations();
    }

    /// Stores what was handed out so far under the consumer's own rule
    /// (`enable.auto.offset.store`): before an owner above it takes storing over.
    fn store_now(&mut self) {
        self.driver.machine.store_processed();
        self.run();
    }

    /// The consumer's connections and cluster metadata: a producer built on them
    /// (`ProducerBuilder::pool`) shares them rather than opening its own.
    pub fn pool(&self) -> &Pool {
        &self.parts.pool
    }

    /// Its `group.id`, if it has one.
    pub fn group_id(&self) -> Option<&str> {
        self.settings.group.as_ref().map(|g| g.group_id.as_str())
    }

    /// Its `client.id`.
    pub fn client_id(&self) -> &str {
        &self.settings.pool.client_id
    }

    /// Its `close.timeout.ms`: how long [`close`](Consumer::close) takes at most.
    pub fn close_timeout(&self) -> Duration {
        self.settings.close_timeout
    }

    /// Whether it commits by itself: `enable.auto.commit`, with a group.
    pub fn enable_auto_commit(&self) -> bool {
        self.settings
            .offsets
            .as_ref()
            .is_some_and(|o| o.enable_auto_commit)
    }

    /// The offsets task, shared with per-partition streams.
    pub(crate) fn shared_offsets(&self) -> Option<Arc<Offsets>> {
        self.parts.offsets.clone()
    }

    /// Whether records are stored once processed (`enable.auto.offset.store`).
    pub(crate) fn stores_processed(&self) -> bool {
        self.driver.machine.stores_processed()
    }

    fn offsets_handle(&self) -> Result<&Arc<Offsets>, Error> {
        self.parts.offsets.as_ref().ok_or_else(|| {
            Error::misuse("offsets can only be stored and committed with a group.id")
        })
    }

    fn isolation(&self) -> IsolationLevel {
        self.settings.fetch.isolation_level
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("machine", &self.driver.machine)
            .finish_non_exhaustive()
    }
}

/// Sleeps until `deadline`, or for ever when there is none: the machine's `poll_timeout` as a
/// `select!` branch.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn next_interrupt<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_report(
    reports: Option<&mut mpsc::UnboundedReceiver<PersistentFailure>>,
) -> Option<PersistentFailure> {
    match reports {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The fetcher's side of a wait: the records the machine's hand-out side released come at once
/// (after the group's event, as the `select!` is biased), else the fetch task's next arrival.
async fn next_fetch_input(fetcher: &mut FetchHandle, released: bool) -> FetchInput {
    if released {
        FetchInput::Released
    } else {
        FetchInput::Arrival(fetcher.next().await)
    }
}

async fn next_group_event(group: Option<&mut GroupMember>) -> Option<GroupEvent> {
    match group {
        Some(g) => g.next_event().await,
        None => std::future::pending().await,
    }
}

/// The machine's clock: tokio's, so a paused test runtime moves it too.
pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}
