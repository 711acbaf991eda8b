//! The consumer: its own bookkeeping ([`machine`]), driven by the application's calls
//! together with a group member, its offsets and a fetcher.

mod batch;
mod machine;
mod rebalance;
#[cfg(test)]
mod sim;
mod subscription;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcon_admin as admin;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::offsets::Watermarks;
use kcon_core::{IsolationLevel, OffsetSpec, RequestId};
use kcon_fetch::{FetchEvent, Fetcher};
use kcon_group::{GroupEvent, GroupMember};
use kcon_offsets::{OffsetAndMetadata, Offsets};
use kcon_pool::{Pool, TopicScope};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::{info, warn};

use crate::commit::{CommitHandle, Owned};
use crate::config::{ConsumerBuilder, Settings};
use crate::error::{Error, ErrorKind};
use crate::hooks::{CommitSource, ConsumerHooks, FetchedBatch, HookList};
use crate::listener::{RebalanceContext, RebalanceListener};
use crate::metrics::{Metrics, MetricsHandle};
use crate::{Record, TopicPartition};

pub use rebalance::Hook;

use machine::{Command, ConsumerMachine, HOUSEKEEPING, MachineOptions, Step, StepAnswer};

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
    pool: Pool,
    settings: Settings,
    /// Everything the consumer knows of its subscription, assignment, positions and
    /// rebalances: it owns that state, this struct only drives it.
    machine: ConsumerMachine,
    fetcher: Fetcher,
    group: Option<GroupMember>,
    offsets: Option<Arc<Offsets>>,
    listener: Exclusive<Option<Box<dyn RebalanceListener>>>,
    /// The machine's step under way and the task carrying it out: kept across receiving calls
    /// cancelled half-way, so the next call awaits the same task instead of starting over.
    step: Option<(RequestId, JoinHandle<StepDone>)>,
    /// Set when an owner above the consumer stores offsets (per-partition streams, a record
    /// processor): told of partitions leaving before they go.
    leaving: Exclusive<Option<LeavingHook>>,
    hooks: HookList,
    /// Where the consumer publishes its metrics for [`MetricsHandle`]s, and when next.
    published: MetricsHandle,
    next_publish: std::time::Instant,
    /// A publish was skipped as too soon: the consumer wakes for it at `next_publish`.
    publish_due: bool,
    /// Records handed out one at a time: the clock is read every [`PUBLISH_CHECK`] of them.
    handed: u32,
    /// The partitions owned, as commit handles see them.
    owned: Owned,
    /// Where the offsets task reports requests that keep failing (the member and the fetcher
    /// report theirs with their events).
    offsets_reports: Option<mpsc::UnboundedReceiver<kcon_core::PersistentFailure>>,
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

/// Told of partitions about to leave the consumer (revoked, lost, unassigned).
pub(crate) type LeavingHook = Box<dyn FnMut(&[TopicPartition]) + Send>;

/// A value the consumer reaches only through `&mut self`: the listener and the leaving hook,
/// which are `Send` and need not be `Sync`. Held in a `Mutex` that is never locked
/// ([`get_mut`](Exclusive::get_mut) borrows it), so a `Consumer` is `Sync` whatever they are:
/// `&Consumer` can cross an await on a spawned task (`lag()`, `watermarks()`) without asking
/// applications for `Sync` listeners.
struct Exclusive<T>(Mutex<T>);

impl<T> Exclusive<T> {
    fn new(value: T) -> Self {
        Exclusive(Mutex::new(value))
    }

    fn get_mut(&mut self) -> &mut T {
        // Never locked, so never poisoned; a poison flag would change nothing here anyway.
        self.0.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a step's task hands back: the listener when the step called it, and the answer.
type StepDone = (Option<Box<dyn RebalanceListener>>, StepAnswer);

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
        let fetcher = Fetcher::start(pool.clone(), settings.fetch.clone())?;
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
            coordinator_regex: settings
                .group
                .as_ref()
                .is_some_and(|g| g.group_protocol == kcon_core::GroupProtocol::Consumer),
        };
        let published = MetricsHandle::new(
            &settings.pool.client_id,
            settings.group.as_ref().map(|g| g.group_id.as_str()),
            fetcher.latency_counter(),
        );
        let hooks = HookList::new(hooks);
        if let Some(o) = &offsets {
            o.observe(commit_observer(published.clone(), hooks.clone()));
        }
        Ok(Consumer {
            machine: ConsumerMachine::new(options, now()),
            pool,
            settings,
            fetcher,
            group,
            offsets,
            listener: Exclusive::new(listener),
            step: None,
            leaving: Exclusive::new(None),
            hooks,
            published,
            next_publish: now(),
            publish_due: false,
            handed: 0,
            owned: Owned::default(),
            offsets_reports,
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
        self.machine.subscribe(now(), topics)?;
        self.run_commands();
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
        self.machine.assign(partitions)?;
        self.run_commands();
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
    pub async fn unsubscribe(&mut self) {
        // A rebalance left half-way by a cancelled call is finished first.
        self.finish_steps().await;
        self.machine.unsubscribe();
        self.run_commands();
        self.finish_steps().await;
        self.machine.unsubscribed();
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
        self.machine.subscription()
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
        self.machine.assignment().clone()
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
    pub async fn recv(&mut self) -> Result<Record, Error> {
        loop {
            if let Some(record) = self.machine.next_record() {
                self.handed = self.handed.wrapping_add(1);
                if self.handed.is_multiple_of(PUBLISH_CHECK) {
                    self.publish(false);
                }
                return Ok(record);
            }
            self.machine.finish_current();
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
    pub async fn recv_batch(&mut self) -> Result<Vec<Record>, Error> {
        loop {
            if let Some((tp, records)) = self.machine.take_batch() {
                self.publish_for(&tp);
                return Ok(records);
            }
            self.machine.finish_current();
            self.fill().await?;
        }
    }

    /// [`recv_batch`](Consumer::recv_batch) with the batch's partition, or what `interrupt`
    /// brings first.
    pub(crate) async fn recv_batch_or<T>(
        &mut self,
        interrupt: &mut mpsc::UnboundedReceiver<T>,
    ) -> Result<Result<(TopicPartition, Vec<Record>), T>, Error> {
        loop {
            if let Some(batch) = self.machine.take_batch() {
                self.publish_for(&batch.0);
                return Ok(Ok(batch));
            }
            self.machine.finish_current();
            if let Some(t) = self.fill_or(Some(&mut *interrupt)).await? {
                return Ok(Err(t));
            }
        }
    }

    /// The records as a [`Stream`](futures_core::Stream): each item is what
    /// [`recv`](Consumer::recv) returns. The stream ends after the consumer is closed or its
    /// member hit a fatal error (the error is its last item).
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    ///
    /// let mut stream = consumer.stream();
    /// while let Some(record) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
    ///     let record = record?;
    ///     println!("{}", record.offset);
    /// #   break;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(&mut self) -> crate::stream::RecordStream<'_> {
        crate::stream::RecordStream::new(self)
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
        self.machine
            .store_offset(tp, record.offset, record.leader_epoch)?;
        self.run_commands();
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
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.machine.usable()?;
        self.machine.store_processed();
        self.run_commands();
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
    pub async fn commit_offsets(
        &mut self,
        offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
    ) -> Result<(), Error> {
        self.machine.usable()?;
        let given: BTreeMap<TopicPartition, i64> = offsets.into_iter().collect();
        let map = offset_map(given.clone());
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
        self.machine.commit_done(latency, result.is_ok());
        self.hooks
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
    pub fn commit_async(
        &mut self,
    ) -> Result<impl std::future::Future<Output = Result<(), Error>> + Send + 'static, Error> {
        self.machine.usable()?;
        self.machine.store_processed();
        self.run_commands();
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
    pub async fn committed(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
        let set: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let got = self.offsets_handle()?.committed(Some(set.clone())).await?;
        Ok(set
            .into_iter()
            .map(|tp| {
                let offset = got
                    .get(&tp)
                    .and_then(|o| o.as_ref())
                    .map(|o| o.offset)
                    .filter(|&o| o >= 0);
                (tp, offset)
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
        self.machine.position(tp)
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
        self.machine.seek(tp, offset)?;
        self.run_commands();
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
        let found = admin::list_offsets(&self.pool, specs, self.isolation()).await?;
        for (tp, l) in &found {
            if let Some(e) = admin::Error::partition(ApiKey::ListOffsets, l.error_code, tp) {
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
    pub async fn watermarks(&self, tp: &TopicPartition) -> Result<Watermarks, Error> {
        let set = BTreeSet::from([tp.clone()]);
        let mut found = admin::watermarks(&self.pool, &set).await?;
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
    /// Fetch answer's high watermark, by kcon-admin's rule), and the age of the next record
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
    pub async fn lag(&self) -> Result<BTreeMap<TopicPartition, crate::PartitionLag>, Error> {
        let found = admin::watermarks(&self.pool, self.machine.assignment()).await?;
        let now = now_ms();
        let isolation = self.isolation();
        Ok(found
            .into_iter()
            .map(|(tp, w)| {
                let fetched = match isolation {
                    IsolationLevel::ReadUncommitted => self.machine.high_watermark(&tp),
                    IsolationLevel::ReadCommitted => None,
                };
                let end = admin::lag::log_end(w.end(isolation), fetched);
                let lag = self.machine.partition_lag(&tp, Some(w.log_start), end, now);
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
        let result = self.machine.pause(partitions);
        self.run_commands();
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
        let result = self.machine.resume(partitions);
        self.run_commands();
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
        self.machine.paused().clone()
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
        let lags = self.machine.lags(now_ms());
        self.machine
            .metrics()
            .snapshot(now(), lags, self.fetcher.latency())
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
    pub fn metrics_handle(&self) -> crate::MetricsHandle {
        self.published.clone()
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
            self.owned.clone(),
            self.published.clone(),
            self.hooks.clone(),
        ))
    }

    /// Publishes the metrics for [`MetricsHandle`]s: at once when `force`, else when due.
    fn publish(&mut self, force: bool) {
        let now = now();
        if !force && now < self.next_publish {
            self.publish_due = true;
            return;
        }
        self.publish_due = false;
        self.next_publish = now + MetricsHandle::PUBLISH_EVERY;
        let inputs = self.machine.lags_inputs();
        self.published.publish(self.machine.metrics_mut(), inputs);
    }

    /// Publishes as [`publish`](Self::publish) does; when that is put off as too soon, still
    /// publishes the counters and the lag of `tp`, whose records just arrived or were handed
    /// out (one map entry, not every partition's). A handle read while the application works
    /// on a batch therefore counts it, whenever the application calls next.
    fn publish_for(&mut self, tp: &TopicPartition) {
        self.publish(false);
        if self.publish_due {
            let inputs = self.machine.lag_inputs_of(tp);
            self.published
                .publish_partition(self.machine.metrics_mut(), tp, inputs);
        }
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
    pub async fn close_within(mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut result = Ok(());
        if time::timeout_at(deadline, self.finish_steps())
            .await
            .is_err()
        {
            warn!("a revocation in progress did not finish before the close deadline");
        }
        // The listener is told, the final commit below commits (not the revocation's own).
        let revoking = self.machine.begin_close();
        self.run_commands();
        if revoking
            && time::timeout_at(deadline, self.finish_steps())
                .await
                .is_err()
        {
            warn!("the rebalance listener did not return before the close deadline");
        }
        if self.machine.fatal().is_none()
            && self.machine.auto_commit()
            && let Some(offsets) = &self.offsets
        {
            let started = Instant::now();
            let done = time::timeout_at(deadline, offsets.commit_sync(None)).await;
            if let Ok(outcome) = &done {
                let error = outcome.as_ref().err().map(|e| Error::from(e.clone()));
                self.hooks
                    .commit(CommitSource::Close, None, started.elapsed(), error.as_ref());
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
        let left = deadline.saturating_duration_since(Instant::now());
        let fetcher = self.fetcher;
        let fetch_close = fetcher.close(left);
        match self.group.take() {
            Some(group) => {
                tokio::join!(group.close(left), fetch_close);
            }
            None => {
                fetch_close.await;
            }
        }
        info!("consumer closed");
        result
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
    /// Every wait here is on a channel, a sleep, or the task of the machine's step (kept in
    /// `self.step`), so dropping the call loses nothing.
    pub(crate) async fn fill_or<T>(
        &mut self,
        mut interrupt: Option<&mut mpsc::UnboundedReceiver<T>>,
    ) -> Result<Option<T>, Error> {
        self.machine.usable()?;
        self.machine.tick(now());
        self.run_commands();
        loop {
            self.tell_failures();
            // Every event (a fetch answer, a group event, the housekeeping tick) may change
            // what the metrics handles read.
            self.publish(false);
            if let Some(e) = self.machine.take_error() {
                return Err(e);
            }
            self.finish_steps().await;
            let metadata = self.pool.metadata();
            self.machine
                .prepare(now(), metadata.generation, || metadata.topics.keys());
            self.run_commands();
            if self.machine.is_busy() {
                // A step came out of `prepare` (a committed-offset lookup, the topics of a
                // pattern): it is finished before anything else.
                continue;
            }
            let wake = Instant::now() + HOUSEKEEPING;
            let wake = if self.publish_due {
                wake.min(Instant::from_std(self.next_publish))
            } else {
                wake
            };
            let next = time::sleep_until(wake);
            tokio::select! {
                biased;
                event = next_group_event(self.group.as_mut()) => {
                    let handled = self.machine.group_event(now(), event);
                    self.run_commands();
                    self.publish(true);
                    handled?;
                }
                Some(t) = next_interrupt(interrupt.as_deref_mut()) => return Ok(Some(t)),
                event = self.fetcher.next() => {
                    if let Some(FetchEvent::Records(r)) = &event {
                        let batch = FetchedBatch {
                            partition: &r.partition,
                            records: r.records.len(),
                            bytes: r.bytes,
                            high_watermark: r.high_watermark,
                        };
                        self.hooks.each(|h| h.on_fetched(&batch));
                    }
                    let ready = self.machine.fetch_event(now(), event);
                    self.run_commands();
                    match ready {
                        Ok(true) => {
                            if let Some(tp) = self.machine.current_partition().cloned() {
                                self.publish_for(&tp);
                            }
                            if !self.hooks.is_empty()
                                && let Some((tp, records)) = self.machine.fresh_batch()
                            {
                                self.hooks.each(|h| h.on_records(tp, records));
                            }
                            return Ok(None);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            for tp in e.partitions() {
                                self.hooks.each(|h| h.on_partition_error(tp, &e));
                            }
                            return Err(e);
                        }
                    }
                }
                () = next => {
                    self.machine.tick(now());
                    self.run_commands();
                }
            }
        }
    }

    /// Carries out the machine's steps one after another until none is left. Each runs on a
    /// task of its own whose handle stays in `self.step`: a receiving call cancelled meanwhile
    /// leaves the work running, and the next call picks up where it stopped. So the member is
    /// always told a revocation is done, and the listener runs exactly once per event.
    async fn finish_steps(&mut self) {
        loop {
            if self.step.is_none() {
                let Some((id, step)) = self.machine.poll_step() else {
                    return;
                };
                match self.start_step(step) {
                    Ok(task) => self.step = Some((id, task)),
                    Err(answer) => {
                        self.machine.handle_step(id, answer);
                        self.run_commands();
                        continue;
                    }
                }
            }
            let Some((id, task)) = self.step.as_mut() else {
                return;
            };
            let id = *id;
            let done = task.await;
            self.step = None;
            let answer = match done {
                Ok((listener, answer)) => {
                    if listener.is_some() {
                        *self.listener.get_mut() = listener;
                    }
                    answer
                }
                Err(e) => StepAnswer::Failed(e.to_string()),
            };
            self.machine.handle_step(id, answer);
            self.run_commands();
        }
    }

    /// The task that carries out `step`, or its answer when there is nothing to wait for.
    fn start_step(&mut self, step: Step) -> Result<JoinHandle<StepDone>, StepAnswer> {
        match step {
            Step::Listener {
                hook,
                partitions,
                positions,
            } => {
                self.hooks.each(|h| h.on_rebalance(hook, &partitions));
                let Some(mut listener) = self.listener.get_mut().take() else {
                    return Err(StepAnswer::Listener(Ok(Vec::new())));
                };
                let ctx = RebalanceContext {
                    offsets: self.offsets.clone(),
                    positions,
                    seeks: Mutex::new(Vec::new()),
                };
                Ok(tokio::spawn(async move {
                    match hook {
                        Hook::Assigned => listener.on_assigned(&ctx, &partitions).await,
                        Hook::Revoked => listener.on_revoked(&ctx, &partitions).await,
                        Hook::Lost => listener.on_lost(&ctx, &partitions).await,
                    }
                    let seeks = ctx.seeks.into_inner().unwrap_or_else(|p| p.into_inner());
                    (Some(listener), StepAnswer::Listener(Ok(seeks)))
                }))
            }
            Step::Commit => {
                let Some(offsets) = self.offsets.clone() else {
                    return Err(StepAnswer::Failed("no offsets without a group.id".into()));
                };
                let hooks = self.hooks.clone();
                Ok(tokio::spawn(async move {
                    let started = Instant::now();
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
                }))
            }
            Step::Committed(partitions) => {
                let Some(offsets) = self.offsets.clone() else {
                    return Err(StepAnswer::Committed(Ok(BTreeMap::new())));
                };
                Ok(tokio::spawn(async move {
                    let result = offsets
                        .committed(Some(partitions))
                        .await
                        .map(|found| {
                            found
                                .into_iter()
                                .map(|(tp, o)| (tp, o.map(|o| (o.offset, o.leader_epoch))))
                                .collect()
                        })
                        .map_err(Error::from);
                    (None, StepAnswer::Committed(result))
                }))
            }
            Step::AllTopics => {
                let pool = self.pool.clone();
                Ok(tokio::spawn(async move {
                    let result = pool
                        .refresh_metadata(TopicScope::All)
                        .await
                        .map(|m| (m.generation, m.topics.keys().cloned().collect()))
                        .map_err(|e| e.to_string());
                    (None, StepAnswer::Topics(result))
                }))
            }
        }
    }

    /// Tells the hooks of requests that keep failing (or recovered): the offsets task's
    /// reports, and those that came with the member's and the fetcher's events.
    fn tell_failures(&mut self) {
        if let Some(rx) = &mut self.offsets_reports {
            while let Ok(report) = rx.try_recv() {
                self.machine.persistent_failure(report);
            }
        }
        while let Some(report) = self.machine.take_report() {
            self.hooks.each(|h| h.on_persistent_failure(&report));
        }
    }

    /// Passes the machine's commands to the parts they are for, in order.
    fn run_commands(&mut self) {
        while let Some(command) = self.machine.poll_command() {
            match command {
                Command::Subscribe(topics) => {
                    if let Some(g) = &self.group {
                        g.subscribe(topics);
                    }
                }
                Command::SubscribeRegex { topics, regex } => {
                    if let Some(g) = &self.group {
                        g.subscribe_with_regex(topics, Some(regex));
                    }
                }
                Command::Unsubscribe => {
                    if let Some(g) = &self.group {
                        g.unsubscribe();
                    }
                }
                Command::Alive => {
                    if let Some(g) = &self.group {
                        g.poll();
                    }
                }
                Command::RevocationDone(id) => {
                    if let Some(g) = &self.group {
                        g.revocation_done(id);
                    }
                }
                Command::TrackTopics(topics) => self.pool.track_topics(TopicScope::topics(topics)),
                Command::Assign(starts) => {
                    self.owned.add(starts.iter().map(|(tp, _)| tp.clone()));
                    self.fetcher.assign(starts);
                }
                Command::Unassign(partitions) => {
                    self.owned.remove(&partitions, || {});
                    self.fetcher.unassign(partitions);
                }
                Command::Pause(tp) => self.fetcher.pause(tp),
                Command::Resume(tp) => self.fetcher.resume(tp),
                Command::Seek(tp, offset) => self.fetcher.seek(tp, offset, None),
                Command::Store(tp, offset, leader_epoch) => {
                    if let Some(o) = &self.offsets {
                        o.store(
                            tp,
                            OffsetAndMetadata {
                                offset,
                                leader_epoch,
                                metadata: String::new(),
                            },
                        );
                    }
                }
                Command::Forget(partitions) => {
                    let offsets = self.offsets.as_ref();
                    self.owned.remove(&partitions.clone(), || {
                        if let Some(o) = offsets {
                            o.forget(partitions);
                        }
                    });
                }
                Command::Leaving(partitions) => {
                    if let Some(hook) = self.leaving.get_mut() {
                        hook(&partitions);
                    }
                }
            }
        }
    }

    /// Hands storing to an owner above the consumer (per-partition streams, a record
    /// processor): `hook` hears of partitions leaving, before the revocation's commit, and the
    /// owner stores records as it processes them.
    pub(crate) fn set_leaving_hook(&mut self, hook: LeavingHook) {
        *self.leaving.get_mut() = Some(hook);
        self.machine.store_elsewhere();
    }

    /// Stores what was handed out so far under the consumer's own rule
    /// (`enable.auto.offset.store`): before an owner above it takes storing over.
    pub(crate) fn store_now(&mut self) {
        self.machine.store_processed();
        self.run_commands();
    }

    /// The consumer's configuration.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The consumer's connections.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The offsets task, shared with per-partition streams.
    pub(crate) fn shared_offsets(&self) -> Option<Arc<Offsets>> {
        self.offsets.clone()
    }

    /// Whether records are stored once processed (`enable.auto.offset.store`).
    pub(crate) fn stores_processed(&self) -> bool {
        self.machine.stores_processed()
    }

    fn offsets_handle(&self) -> Result<&Arc<Offsets>, Error> {
        self.offsets.as_ref().ok_or_else(|| {
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
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

async fn next_interrupt<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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

/// The wall clock, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
