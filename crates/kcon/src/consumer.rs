//! The consumer: a group member, its offsets and a fetcher, driven by the application's calls.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcon_admin as admin;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::list_offsets::ListedOffset;
use kcon_core::offsets::Watermarks;
use kcon_core::{IsolationLevel, OffsetSpec};
use kcon_fetch::{FetchEvent, FetchedRecords, Fetcher, StartPosition};
use kcon_group::{GroupEvent, GroupMember, RevocationId};
use kcon_offsets::{OffsetAndMetadata, Offsets};
use kcon_pool::{Pool, TopicScope};
use regex::Regex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};
use tracing::{debug, info, warn};

use crate::config::{ConsumerBuilder, Settings};
use crate::error::{Error, ErrorKind};
use crate::listener::{RebalanceContext, RebalanceListener};
use crate::metrics::{Metrics, MetricsState};
use crate::{Record, TopicPartition};

/// How often a consumer blocked in a receiving call tells its group member it is alive, and
/// looks for new metadata (regex subscriptions).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

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
    fetcher: Fetcher,
    group: Option<GroupMember>,
    offsets: Option<Arc<Offsets>>,
    listener: Option<Box<dyn RebalanceListener>>,
    subscription: Subscription,
    /// The partitions the consumer owns (by the group, or assigned by the application).
    assignment: BTreeSet<TopicPartition>,
    /// Owned, not yet handed to the fetcher: where each starts (`None`: the committed offset,
    /// else by `auto.offset.reset`). Committed offsets are looked up on the next call.
    starting: BTreeMap<TopicPartition, Option<i64>>,
    /// The next offset to hand out, per partition, outside the current batch.
    positions: HashMap<TopicPartition, i64>,
    /// The high watermark of each partition's last Fetch answer.
    high_watermarks: HashMap<TopicPartition, i64>,
    /// Offsets processed (handed out before the application's current call) and not yet
    /// stored: the next offset and its leader epoch.
    unstored: HashMap<TopicPartition, (i64, Option<i32>)>,
    /// The batch `recv` hands out one record at a time.
    current: Option<Batch>,
    paused: BTreeSet<TopicPartition>,
    /// Errors to return from the next receiving calls, in order.
    errors: VecDeque<Error>,
    /// The member's fatal error: every later call returns it.
    fatal: Option<Error>,
    /// When the group member was last told the application is alive.
    last_liveness: Instant,
    /// The metadata snapshot a regex subscription was last matched against.
    metadata_seen: Option<Instant>,
    metrics: MetricsState,
    /// A revocation or loss being handled: kept until it is done, so a receiving call
    /// cancelled half-way (in the listener, in the commit) finishes it on the next call and
    /// the member is always told the revocation is done.
    pending: Option<Pending>,
    /// When a pattern subscription last refreshed the metadata of every topic.
    pattern_refreshed: Option<Instant>,
    /// Set when the consumer feeds per-partition streams: told of partitions leaving before
    /// they go, and records are stored by the streams, not when handed out.
    leaving: Option<LeavingHook>,
}

/// Told of partitions about to leave the consumer (revoked, lost, unassigned).
pub(crate) type LeavingHook = Box<dyn FnMut(&[TopicPartition]) + Send>;

/// What the consumer reads.
#[derive(Debug)]
enum Subscription {
    None,
    /// Topics by name, in the group.
    Topics(BTreeSet<String>),
    /// Topics whose names match, in the group; the topics matched last.
    Pattern(Regex, Option<BTreeSet<String>>),
    /// Partitions the application assigned.
    Manual,
}

/// Records of one partition being handed out.
struct Batch {
    partition: TopicPartition,
    /// The records not handed out yet. The Vec the fetcher made stays whole until `recv`
    /// takes a first record, so `recv_batch` hands it over without moving a record.
    records: Remaining,
    /// The position after the batch (past control batches too).
    next_offset: i64,
    /// The position after the last record handed out, and that record's epoch.
    handed: Option<(i64, Option<i32>)>,
}

enum Remaining {
    Whole(Vec<Record>),
    Rest(std::vec::IntoIter<Record>),
}

impl Batch {
    fn new(r: FetchedRecords) -> Batch {
        Batch {
            partition: r.partition,
            records: Remaining::Whole(r.records),
            next_offset: r.next_offset,
            handed: None,
        }
    }

    fn next(&mut self) -> Option<Record> {
        if let Remaining::Whole(v) = &mut self.records {
            self.records = Remaining::Rest(std::mem::take(v).into_iter());
        }
        let Remaining::Rest(rest) = &mut self.records else {
            return None;
        };
        let record = rest.next()?;
        let next = if rest.len() == 0 {
            self.next_offset
        } else {
            record.offset + 1
        };
        self.handed = Some((next, record.leader_epoch));
        Some(record)
    }

    /// Every record not handed out yet, at once.
    fn take_rest(&mut self) -> Vec<Record> {
        let records = match &mut self.records {
            Remaining::Whole(v) => std::mem::take(v),
            Remaining::Rest(rest) => rest.by_ref().collect(),
        };
        if let Some(last) = records.last() {
            self.handed = Some((self.next_offset, last.leader_epoch));
        }
        records
    }

    fn is_done(&self) -> bool {
        match &self.records {
            Remaining::Whole(v) => v.is_empty(),
            Remaining::Rest(rest) => rest.len() == 0,
        }
    }

    /// The timestamp of the next record to hand out.
    fn next_timestamp(&self) -> Option<i64> {
        match &self.records {
            Remaining::Whole(v) => v.first(),
            Remaining::Rest(rest) => rest.as_slice().first(),
        }
        .map(|r| r.timestamp)
    }
}

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
    ) -> Result<Consumer, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::misuse(
                "a consumer must be built inside a tokio runtime (its tasks run there)",
            ));
        }
        let pool = Pool::new(settings.pool.clone())?;
        let fetcher = Fetcher::start(pool.clone(), settings.fetch.clone())?;
        let (group, offsets) = match (&settings.group, &settings.offsets) {
            (Some(g), Some(o)) => {
                let member = GroupMember::start(pool.clone(), g.clone())?;
                let offsets = Offsets::start(pool.clone(), o.clone())?;
                offsets.follow(member.membership());
                (Some(member), Some(Arc::new(offsets)))
            }
            _ => (None, None),
        };
        Ok(Consumer {
            pool,
            settings,
            fetcher,
            group,
            offsets,
            listener,
            subscription: Subscription::None,
            assignment: BTreeSet::new(),
            starting: BTreeMap::new(),
            positions: HashMap::new(),
            high_watermarks: HashMap::new(),
            unstored: HashMap::new(),
            current: None,
            paused: BTreeSet::new(),
            errors: VecDeque::new(),
            fatal: None,
            last_liveness: Instant::now(),
            metadata_seen: None,
            metrics: MetricsState::new(),
            leaving: None,
            pending: None,
            pattern_refreshed: None,
        })
    }

    /// Subscribes to `topics` in the group (`group.id`), replacing the subscription. A name
    /// starting with `^` is a regular expression (librdkafka's convention): every topic whose
    /// name matches is subscribed, re-evaluated when the metadata refreshes.
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
        self.usable()?;
        if self.group.is_none() {
            return Err(Error::misuse("subscribe needs a group.id"));
        }
        if matches!(self.subscription, Subscription::Manual) {
            return Err(Error::misuse(
                "the consumer has partitions assigned by the application: unsubscribe first",
            ));
        }
        let mut names = BTreeSet::new();
        let mut patterns = Vec::new();
        for t in topics {
            let t: String = t.into();
            match t.strip_prefix('^') {
                Some(_) => patterns.push(t),
                None if t.is_empty() => return Err(Error::misuse("an empty topic name")),
                None => {
                    names.insert(t);
                }
            }
        }
        if patterns.is_empty() {
            self.subscription = Subscription::Topics(names.clone());
            self.pool
                .track_topics(TopicScope::topics(names.iter().cloned()));
            self.member()?.subscribe(names);
        } else {
            // Names and patterns together: one pattern that also matches the names exactly.
            let mut alternatives: Vec<String> =
                patterns.iter().map(|p| format!("(?:{p})")).collect();
            alternatives.extend(names.iter().map(|n| format!("^{}$", regex::escape(n))));
            let joined = alternatives.join("|");
            let regex = Regex::new(&joined).map_err(|e| {
                Error::misuse(format!(
                    "the topic pattern {joined:?} is not a regular expression: {e}"
                ))
            })?;
            self.subscription = Subscription::Pattern(regex, None);
            self.metadata_seen = None;
            self.pattern_refreshed = None;
        }
        self.metrics.rebalance_started(Instant::now());
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
        self.usable()?;
        if matches!(
            self.subscription,
            Subscription::Topics(_) | Subscription::Pattern(..)
        ) {
            return Err(Error::misuse(
                "the consumer is subscribed in a group: unsubscribe before assigning partitions",
            ));
        }
        let new: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let gone: Vec<TopicPartition> = self.assignment.difference(&new).cloned().collect();
        self.drop_partitions(&gone);
        let added: Vec<TopicPartition> = new.difference(&self.assignment).cloned().collect();
        self.pool
            .track_topics(TopicScope::topics(new.iter().map(|tp| tp.topic.clone())));
        for tp in added {
            self.starting.insert(tp.clone(), None);
            self.assignment.insert(tp);
        }
        self.subscription = if self.assignment.is_empty() {
            Subscription::None
        } else {
            Subscription::Manual
        };
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
        // A revocation left half-way by a cancelled call is finished first.
        self.finish_pending().await;
        let all: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
        match self.subscription {
            Subscription::Manual => self.drop_partitions(&all),
            Subscription::Topics(_) | Subscription::Pattern(..) => {
                // The member's own revocation event comes later and finds nothing left to give
                // up (the subscription is gone); it is only acknowledged then.
                if let Some(g) = &self.group {
                    g.unsubscribe();
                }
                self.begin(Pending::revoke(all, None, self.auto_commit()));
                self.finish_pending().await;
            }
            Subscription::None => {}
        }
        self.subscription = Subscription::None;
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
        match &self.subscription {
            Subscription::Topics(t) => t.clone(),
            Subscription::Pattern(_, matched) => matched.clone().unwrap_or_default(),
            Subscription::None | Subscription::Manual => BTreeSet::new(),
        }
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
        self.assignment.clone()
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
            if let Some(batch) = &mut self.current
                && let Some(record) = batch.next()
            {
                return Ok(record);
            }
            self.finish_current();
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
            if let Some((_, records)) = self.take_batch() {
                return Ok(records);
            }
            self.finish_current();
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
            if let Some(batch) = self.take_batch() {
                return Ok(Ok(batch));
            }
            self.finish_current();
            if let Some(t) = self.fill_or(Some(&mut *interrupt)).await? {
                return Ok(Err(t));
            }
        }
    }

    /// The rest of the current batch, if any.
    fn take_batch(&mut self) -> Option<(TopicPartition, Vec<Record>)> {
        let batch = self.current.as_mut().filter(|b| !b.is_done())?;
        let records = batch.take_rest();
        Some((batch.partition.clone(), records))
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
        self.usable()?;
        let tp = TopicPartition::new(&*record.topic, record.partition);
        if !self.assignment.contains(&tp) {
            return Err(Error::misuse(format!(
                "cannot store an offset for {tp}: the consumer does not own it"
            ))
            .with_partitions(vec![tp]));
        }
        self.offsets_handle()?
            .store_offset(tp, record.offset, record.leader_epoch);
        Ok(())
    }

    /// Commits the stored offsets (with `enable.auto.offset.store`, everything handed out
    /// before this call) and waits for the coordinator's acknowledgement.
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// let batch = consumer.recv_batch().await?;
    /// // ... process the batch ...
    /// consumer.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.usable()?;
        self.store_processed();
        let offsets = self.offsets_handle()?.clone();
        let started = Instant::now();
        let result = offsets.commit_sync(None).await;
        self.metrics.commit_done(started.elapsed(), result.is_ok());
        result?;
        Ok(())
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
        self.usable()?;
        let map = offset_map(offsets);
        let handle = self.offsets_handle()?.clone();
        let started = Instant::now();
        let result = handle.commit_sync(Some(map)).await;
        self.metrics.commit_done(started.elapsed(), result.is_ok());
        result?;
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
    pub fn commit_async(
        &mut self,
    ) -> Result<impl std::future::Future<Output = Result<(), Error>> + Send + 'static, Error> {
        self.usable()?;
        self.store_processed();
        let rx = self.offsets_handle()?.commit_async(None);
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
        if let Some(b) = &self.current
            && &b.partition == tp
            && let Some((next, _)) = b.handed
        {
            return Some(next);
        }
        match self.starting.get(tp) {
            Some(explicit) => *explicit,
            None => self.positions.get(tp).copied(),
        }
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
        self.usable()?;
        if offset < 0 {
            return Err(Error::misuse(format!(
                "cannot seek {tp} to {offset}: offsets are not negative (see seek_to_beginning and seek_to_end)"
            )));
        }
        if !self.assignment.contains(&tp) {
            return Err(
                Error::misuse(format!("cannot seek {tp}: the consumer does not own it"))
                    .with_partitions(vec![tp]),
            );
        }
        if let Some(start) = self.starting.get_mut(&tp) {
            *start = Some(offset);
            return Ok(());
        }
        self.finish_current_of(&tp);
        self.fetcher.seek(tp.clone(), offset, None);
        self.positions.insert(tp, offset);
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
        let found = admin::watermarks(&self.pool, &self.assignment).await?;
        let now = now_ms();
        let isolation = self.isolation();
        Ok(found
            .into_iter()
            .map(|(tp, w)| {
                let fetched = match isolation {
                    IsolationLevel::ReadUncommitted => self.high_watermarks.get(&tp).copied(),
                    IsolationLevel::ReadCommitted => None,
                };
                let end = admin::lag::log_end(w.end(isolation), fetched);
                let lag = self.partition_lag(&tp, Some(w.log_start), end, now);
                (tp, lag)
            })
            .collect())
    }

    fn partition_lag(
        &self,
        tp: &TopicPartition,
        log_start: Option<i64>,
        end: Option<i64>,
        now: i64,
    ) -> crate::PartitionLag {
        let position = self.position(tp);
        let next_ts = self
            .current
            .as_ref()
            .filter(|b| &b.partition == tp)
            .and_then(Batch::next_timestamp);
        let lag = match (position, end) {
            (Some(p), Some(e)) => admin::lag::lag(p, log_start, e, next_ts, now),
            _ => admin::Lag::default(),
        };
        crate::PartitionLag {
            position,
            end,
            records: lag.records,
            time: lag.time,
        }
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
        for tp in partitions {
            self.owned(&tp)?;
            if !self.paused.insert(tp.clone()) {
                continue;
            }
            // Records of the current batch not handed out yet are fetched again on resume.
            if let Some(b) = &self.current
                && b.partition == tp
                && !b.is_done()
            {
                let at = self.position(&tp);
                self.finish_current_of(&tp);
                if let Some(at) = at.or_else(|| self.positions.get(&tp).copied()) {
                    self.fetcher.seek(tp.clone(), at, None);
                }
            }
            self.fetcher.pause(tp);
        }
        Ok(())
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
        for tp in partitions {
            self.owned(&tp)?;
            if self.paused.remove(&tp) {
                self.fetcher.resume(tp);
            }
        }
        Ok(())
    }

    /// The partitions paused now.
    ///
    /// ```no_run
    /// # fn f(consumer: &kcon::Consumer) {
    /// assert!(consumer.paused().is_empty());
    /// # }
    /// ```
    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.paused.clone()
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
        let now = now_ms();
        let partitions = self
            .assignment
            .iter()
            .map(|tp| {
                let end = self.high_watermarks.get(tp).copied();
                (tp.clone(), self.partition_lag(tp, None, end, now))
            })
            .collect();
        self.metrics.snapshot(partitions)
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
        if time::timeout_at(deadline, self.finish_pending())
            .await
            .is_err()
        {
            warn!("a revocation in progress did not finish before the close deadline");
        }
        self.finish_current();
        self.store_processed();
        if self.fatal.is_none() && self.in_group() && !self.assignment.is_empty() {
            // The listener is told, the final commit below commits (not the revocation's own).
            let owned: Vec<TopicPartition> = self.assignment.iter().cloned().collect();
            let mut pending = Pending::revoke(owned, None, false);
            pending.let_go = false;
            self.begin(pending);
            if time::timeout_at(deadline, self.finish_pending())
                .await
                .is_err()
            {
                warn!("the rebalance listener did not return before the close deadline");
            }
        }
        if self.fatal.is_none()
            && self.auto_commit()
            && let Some(offsets) = &self.offsets
        {
            match time::timeout_at(deadline, offsets.commit_sync(None)).await {
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

    /// Makes sure the consumer has records to hand out (`current`), handling group and fetch
    /// events meanwhile.
    async fn fill(&mut self) -> Result<(), Error> {
        self.fill_or::<()>(None).await.map(drop)
    }

    /// [`fill`](Consumer::fill), or returns what `interrupt` brings first (`Some`): waiting on
    /// it is as safe to cancel as the group's and the fetcher's channels, so a driver can
    /// listen to its own commands without cancelling a rebalance half-way.
    pub(crate) async fn fill_or<T>(
        &mut self,
        mut interrupt: Option<&mut mpsc::UnboundedReceiver<T>>,
    ) -> Result<Option<T>, Error> {
        self.usable()?;
        self.alive();
        loop {
            if let Some(e) = self.errors.pop_front() {
                return Err(e);
            }
            if let Some(e) = &self.fatal {
                return Err(e.clone());
            }
            self.finish_pending().await;
            self.store_processed();
            self.match_pattern().await;
            self.start_partitions().await?;
            let next = time::sleep(HOUSEKEEPING);
            let event = tokio::select! {
                biased;
                e = next_group_event(self.group.as_mut()) => Step::Group(e),
                Some(t) = next_interrupt(interrupt.as_deref_mut()) => return Ok(Some(t)),
                e = self.fetcher.next() => Step::Fetch(e),
                () = next => Step::Housekeeping,
            };
            match event {
                Step::Group(e) => self.on_group_event(e).await?,
                Step::Fetch(None) => return Err(Error::closed()),
                Step::Fetch(Some(e)) => {
                    if self.on_fetch_event(e)? {
                        return Ok(None);
                    }
                }
                Step::Housekeeping => self.alive(),
            }
        }
    }

    async fn on_group_event(&mut self, event: Option<GroupEvent>) -> Result<(), Error> {
        let Some(event) = event else {
            // The member's task stopped without a fatal error: the runtime is shutting down.
            let e = Error::closed();
            self.fatal = Some(e.clone());
            return Err(e);
        };
        match event {
            GroupEvent::Joined {
                generation_id,
                member_id,
                leader,
            } => {
                debug!(generation_id, member_id, leader, "joined the group");
                self.metrics.rebalance_started(Instant::now());
            }
            GroupEvent::Assigned {
                partitions,
                generation_id,
            } => {
                if !self.in_group() {
                    // Assigned before an unsubscribe reached the member: it revokes them next.
                    debug!(?partitions, "assigned after unsubscribing: ignored");
                    return Ok(());
                }
                info!(generation_id, ?partitions, "partitions assigned");
                for tp in &partitions {
                    self.assignment.insert(tp.clone());
                    self.starting.insert(tp.clone(), None);
                }
                self.metrics.rebalance_done(Instant::now());
                self.begin(Pending::new(Hook::Assigned, partitions, None, false));
                self.finish_pending().await;
            }
            GroupEvent::Revoked { partitions, id } => {
                info!(?partitions, "partitions revoked");
                self.metrics.rebalance_started(Instant::now());
                let owned = self.group_owned(&partitions);
                self.begin(Pending::revoke(owned, Some(id), self.auto_commit()));
                self.finish_pending().await;
            }
            GroupEvent::Lost { partitions } => {
                warn!(?partitions, "partitions lost");
                self.metrics.rebalance_started(Instant::now());
                let owned = self.group_owned(&partitions);
                self.begin(Pending::new(Hook::Lost, owned, None, false));
                self.finish_pending().await;
            }
            GroupEvent::Fatal(e) => {
                let e = Error::from(e);
                warn!(error = %e, "the group member cannot go on");
                self.fatal = Some(e.clone());
                return Err(e);
            }
            // Closed (after close) needs nothing here.
            _ => {}
        }
        Ok(())
    }

    /// Starts handling a group event whose steps await. The previous one is done: every path
    /// that begins one finished the pending one first.
    fn begin(&mut self, pending: Pending) {
        debug_assert!(self.pending.is_none());
        self.pending = Some(pending);
    }

    /// Takes the pending group event to its end. Each await is on a spawned task (the
    /// listener's hook, the commit) whose handle stays in `pending`: a receiving call cancelled
    /// meanwhile leaves the work running, and the next call picks up where it stopped. So the
    /// member is always told a revocation is done, and the listener runs exactly once.
    async fn finish_pending(&mut self) {
        loop {
            let Some(pending) = self.pending.as_mut() else {
                return;
            };
            match &mut pending.stage {
                Stage::Start => self.start_pending(),
                Stage::Hook(task) => {
                    let done = task.await;
                    self.hook_done(done);
                }
                Stage::Commit(task) => {
                    let (latency, result) = match task.await {
                        Ok(r) => r,
                        Err(e) => (Duration::ZERO, Err(format!("the commit task failed: {e}"))),
                    };
                    self.metrics.commit_done(latency, result.is_ok());
                    if let Err(e) = result {
                        warn!(error = %e, "the commit before giving up partitions failed");
                    }
                    self.end_pending();
                }
            }
        }
    }

    /// The steps before the listener's hook, then the hook on a task of its own.
    fn start_pending(&mut self) {
        let Some(pending) = self.pending.as_ref() else {
            return;
        };
        let (hook, partitions) = (pending.hook, pending.partitions.clone());
        match hook {
            Hook::Assigned => {}
            Hook::Revoked => {
                // What was handed out counts: stored, and the position the listener sees.
                self.tell_leaving(&partitions);
                if self
                    .current
                    .as_ref()
                    .is_some_and(|b| partitions.contains(&b.partition))
                {
                    self.finish_current();
                }
                self.store_processed();
            }
            Hook::Lost => {
                // Nothing of these may be committed any more.
                self.tell_leaving(&partitions);
                for tp in &partitions {
                    self.unstored.remove(tp);
                }
                self.drop_current_of(&partitions);
            }
        }
        // `on_assigned` hears of every assignment, empty ones too (a cooperative rebalance
        // that added nothing), as the Java client's listener does; nothing is revoked or lost
        // without partitions.
        let call = hook == Hook::Assigned || !partitions.is_empty();
        let listener = if call { self.listener.take() } else { None };
        let Some(mut listener) = listener else {
            self.hook_done(Ok((None, Vec::new())));
            return;
        };
        let ctx = RebalanceContext {
            offsets: self.offsets.clone(),
            positions: self.positions.clone(),
            seeks: Mutex::new(Vec::new()),
        };
        let task = tokio::spawn(async move {
            match hook {
                Hook::Assigned => listener.on_assigned(&ctx, &partitions).await,
                Hook::Revoked => listener.on_revoked(&ctx, &partitions).await,
                Hook::Lost => listener.on_lost(&ctx, &partitions).await,
            }
            let seeks = ctx.seeks.into_inner().unwrap_or_else(|p| p.into_inner());
            (Some(listener), seeks)
        });
        if let Some(p) = self.pending.as_mut() {
            p.stage = Stage::Hook(task);
        }
    }

    /// The hook returned: the listener back in place, its seeks applied, then the commit (a
    /// revocation under auto-commit) or the end.
    fn hook_done(&mut self, done: Result<HookDone, tokio::task::JoinError>) {
        match done {
            Ok((listener, seeks)) => {
                if listener.is_some() {
                    self.listener = listener;
                }
                for (tp, offset) in seeks {
                    if let Err(e) = self.seek(tp, offset) {
                        warn!(error = %e, "a seek from the rebalance listener was refused");
                    }
                }
            }
            Err(e) => warn!(error = %e, "the rebalance listener panicked; it is dropped"),
        }
        let commit = self
            .pending
            .as_ref()
            .is_some_and(|p| p.commit && !p.partitions.is_empty());
        match (&self.offsets, commit) {
            (Some(offsets), true) => {
                let offsets = offsets.clone();
                let task = tokio::spawn(async move {
                    let started = Instant::now();
                    let result = offsets.commit_sync(None).await;
                    (
                        started.elapsed(),
                        result.map(drop).map_err(|e| e.to_string()),
                    )
                });
                if let Some(p) = self.pending.as_mut() {
                    p.stage = Stage::Commit(task);
                }
            }
            _ => self.end_pending(),
        }
    }

    /// The last steps: the partitions leave (revoked, lost), the member is told.
    fn end_pending(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if pending.hook != Hook::Assigned && pending.let_go {
            self.drop_partitions(&pending.partitions);
        }
        if let (Some(id), Some(g)) = (pending.revocation, &self.group) {
            g.revocation_done(id);
        }
    }

    /// Those of `partitions` the consumer owns through its group subscription.
    fn group_owned(&self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        if !self.in_group() {
            return Vec::new();
        }
        partitions
            .iter()
            .filter(|tp| self.assignment.contains(tp))
            .cloned()
            .collect()
    }

    fn in_group(&self) -> bool {
        matches!(
            self.subscription,
            Subscription::Topics(_) | Subscription::Pattern(..)
        )
    }

    /// Handles one fetch event; true when `current` has records to hand out.
    fn on_fetch_event(&mut self, event: FetchEvent) -> Result<bool, Error> {
        match event {
            FetchEvent::Records(r) => {
                if !self.assignment.contains(&r.partition) {
                    return Ok(false);
                }
                self.metrics.fetched(r.records.len(), r.size);
                self.high_watermarks
                    .insert(r.partition.clone(), r.high_watermark);
                if r.records.is_empty() {
                    // Control batches or aborted transactions only: the position moves.
                    if self.auto_store()
                        && let Some(last) = self.positions.get(&r.partition)
                        && *last < r.next_offset
                    {
                        self.unstored
                            .insert(r.partition.clone(), (r.next_offset, None));
                    }
                    self.positions.insert(r.partition, r.next_offset);
                    return Ok(false);
                }
                self.current = Some(Batch::new(r));
                Ok(true)
            }
            FetchEvent::PartitionError { partition, error } => {
                Err(Error::partition(&partition, &error))
            }
            FetchEvent::Reset {
                partition,
                reason,
                offset,
            } => {
                debug!(%partition, ?reason, offset, "position reset");
                if self.assignment.contains(&partition) {
                    self.positions.insert(partition, offset);
                }
                Ok(false)
            }
            FetchEvent::NoPosition { partitions } => {
                let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                Err(Error::new(
                    ErrorKind::NoOffset,
                    format!(
                        "no committed offset for {} and auto.offset.reset is none: seek them",
                        names.join(", ")
                    ),
                )
                .with_partitions(partitions))
            }
            FetchEvent::ResetFailed {
                partition,
                error_code,
            } => {
                warn!(%partition, error_code, "looking up a reset offset failed; retrying");
                Ok(false)
            }
            FetchEvent::Closed => Err(Error::closed()),
            _ => Ok(false),
        }
    }

    /// Hands newly owned partitions to the fetcher, at their committed offsets where the group
    /// has some. A failed lookup leaves them waiting, retried on the next call.
    async fn start_partitions(&mut self) -> Result<(), Error> {
        if self.starting.is_empty() {
            return Ok(());
        }
        let mut starts = Vec::new();
        let mut lookup = BTreeSet::new();
        for (tp, at) in &self.starting {
            match at {
                Some(offset) => starts.push((
                    tp.clone(),
                    StartPosition::Committed {
                        offset: *offset,
                        leader_epoch: None,
                    },
                )),
                None => {
                    lookup.insert(tp.clone());
                }
            }
        }
        if !lookup.is_empty() {
            match &self.offsets {
                Some(offsets) => {
                    let committed = offsets.committed(Some(lookup.clone())).await?;
                    for tp in lookup {
                        let start = match committed.get(&tp) {
                            Some(Some(o)) if o.offset >= 0 => StartPosition::Committed {
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                            },
                            _ => StartPosition::Reset,
                        };
                        starts.push((tp, start));
                    }
                }
                None => starts.extend(lookup.into_iter().map(|tp| (tp, StartPosition::Reset))),
            }
        }
        for (tp, start) in &starts {
            self.starting.remove(tp);
            if let StartPosition::Committed { offset, .. } = start {
                self.positions.insert(tp.clone(), *offset);
            }
        }
        debug!(?starts, "fetching newly owned partitions");
        self.fetcher.assign(starts);
        Ok(())
    }

    /// Re-evaluates a regex subscription against the newest metadata.
    async fn match_pattern(&mut self) {
        let Subscription::Pattern(regex, matched) = &self.subscription else {
            return;
        };
        // The pool's own refreshes cover only the topics its users track (the matched ones):
        // new topics show up only in a refresh of every topic, every `metadata.max.age.ms`.
        let mut metadata = self.pool.metadata();
        let max_age = self.settings.pool.metadata_max_age;
        let due = self
            .pattern_refreshed
            .is_none_or(|at| at.elapsed() >= max_age);
        if matched.is_none() || due {
            self.pattern_refreshed = Some(Instant::now());
            match self.pool.refresh_metadata(TopicScope::All).await {
                Ok(m) => metadata = m,
                Err(e) => {
                    warn!(error = %e, "metadata for the topic pattern failed; retrying");
                    return;
                }
            }
        }
        if matched.is_some() && metadata.updated_at() == self.metadata_seen {
            return;
        }
        self.metadata_seen = metadata.updated_at();
        let now: BTreeSet<String> = metadata
            .topics
            .keys()
            .filter(|t| regex.is_match(t))
            .cloned()
            .collect();
        if matched.as_ref() != Some(&now) {
            info!(topics = ?now, "the topic pattern matches");
            if let Some(g) = &self.group {
                g.subscribe(now.iter().cloned());
            }
            if let Subscription::Pattern(_, m) = &mut self.subscription {
                *m = Some(now);
            }
        }
    }

    /// Stores what the application has processed: everything handed out before its current
    /// call (with `enable.auto.offset.store`).
    fn store_processed(&mut self) {
        if !self.auto_store() || self.leaving.is_some() {
            self.unstored.clear();
            return;
        }
        if let Some(b) = &self.current
            && let Some(handed) = b.handed
        {
            self.unstored.insert(b.partition.clone(), handed);
        }
        let Some(offsets) = &self.offsets else {
            self.unstored.clear();
            return;
        };
        for (tp, (offset, leader_epoch)) in self.unstored.drain() {
            offsets.store(
                tp,
                OffsetAndMetadata {
                    offset,
                    leader_epoch,
                    metadata: String::new(),
                },
            );
        }
    }

    /// The current batch is spent: its position becomes the partition's.
    fn finish_current(&mut self) {
        let Some(b) = self.current.take() else {
            return;
        };
        if let Some((next, epoch)) = b.handed {
            self.positions.insert(b.partition.clone(), next);
            if self.auto_store() && self.leaving.is_none() {
                self.unstored.insert(b.partition, (next, epoch));
            }
        }
    }

    /// Ends the current batch if it is `tp`'s: what was handed out counts, the rest is dropped.
    fn finish_current_of(&mut self, tp: &TopicPartition) {
        if self.current.as_ref().is_some_and(|b| &b.partition == tp) {
            self.finish_current();
        }
    }

    fn drop_current_of(&mut self, partitions: &[TopicPartition]) {
        if self
            .current
            .as_ref()
            .is_some_and(|b| partitions.contains(&b.partition))
        {
            self.current = None;
        }
    }

    /// Forgets `partitions`: the fetcher stops, stored offsets and positions go.
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        if partitions.is_empty() {
            return;
        }
        self.tell_leaving(partitions);
        self.drop_current_of(partitions);
        self.fetcher.unassign(partitions.iter().cloned());
        if let Some(o) = &self.offsets {
            o.forget(partitions.to_vec());
        }
        for tp in partitions {
            self.assignment.remove(tp);
            self.starting.remove(tp);
            self.positions.remove(tp);
            self.high_watermarks.remove(tp);
            self.unstored.remove(tp);
            self.paused.remove(tp);
        }
    }

    fn tell_leaving(&mut self, partitions: &[TopicPartition]) {
        if let Some(hook) = &mut self.leaving {
            hook(partitions);
        }
    }

    /// Feeds per-partition streams from now on: `hook` hears of partitions leaving, and
    /// offsets are stored by the streams as their records are processed.
    pub(crate) fn set_leaving_hook(&mut self, hook: LeavingHook) {
        self.leaving = Some(hook);
    }

    /// The offsets task, shared with per-partition streams.
    pub(crate) fn shared_offsets(&self) -> Option<Arc<Offsets>> {
        self.offsets.clone()
    }

    /// Whether records are stored once processed (`enable.auto.offset.store`).
    pub(crate) fn stores_processed(&self) -> bool {
        self.auto_store()
    }

    /// Tells the group member the application is alive, at most once per second.
    fn alive(&mut self) {
        let now = Instant::now();
        if let Some(g) = &self.group
            && now.duration_since(self.last_liveness) >= HOUSEKEEPING / 2
        {
            g.poll();
            self.last_liveness = now;
        }
    }

    fn usable(&self) -> Result<(), Error> {
        match &self.fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn owned(&self, tp: &TopicPartition) -> Result<(), Error> {
        if self.assignment.contains(tp) {
            return Ok(());
        }
        Err(Error::misuse(format!("the consumer does not own {tp}"))
            .with_partitions(vec![tp.clone()]))
    }

    fn member(&self) -> Result<&GroupMember, Error> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::misuse("this needs a group.id"))
    }

    fn offsets_handle(&self) -> Result<&Arc<Offsets>, Error> {
        self.offsets.as_ref().ok_or_else(|| {
            Error::misuse("offsets can only be stored and committed with a group.id")
        })
    }

    fn auto_commit(&self) -> bool {
        self.settings
            .offsets
            .as_ref()
            .is_some_and(|o| o.enable_auto_commit)
    }

    fn auto_store(&self) -> bool {
        self.settings
            .offsets
            .as_ref()
            .is_some_and(|o| o.enable_auto_offset_store)
    }

    fn isolation(&self) -> IsolationLevel {
        self.settings.fetch.isolation_level
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("subscription", &self.subscription)
            .field("assignment", &self.assignment)
            .field("fatal", &self.fatal)
            .finish_non_exhaustive()
    }
}

/// A group event whose handling awaits the listener's hook and maybe a commit, each on a task
/// of its own.
struct Pending {
    hook: Hook,
    partitions: Vec<TopicPartition>,
    /// The member's revocation to acknowledge at the end.
    revocation: Option<RevocationId>,
    /// Whether the stored offsets are committed after the hook.
    commit: bool,
    /// Whether the partitions are let go at the end (not at close, which commits after the
    /// listener and then stops everything).
    let_go: bool,
    stage: Stage,
}

impl Pending {
    fn new(
        hook: Hook,
        partitions: Vec<TopicPartition>,
        revocation: Option<RevocationId>,
        commit: bool,
    ) -> Pending {
        Pending {
            hook,
            partitions,
            revocation,
            commit,
            let_go: true,
            stage: Stage::Start,
        }
    }

    fn revoke(
        partitions: Vec<TopicPartition>,
        revocation: Option<RevocationId>,
        commit: bool,
    ) -> Pending {
        Pending::new(Hook::Revoked, partitions, revocation, commit)
    }
}

/// What the listener's task hands back: the listener, and the seeks it asked for.
type HookDone = (
    Option<Box<dyn RebalanceListener>>,
    Vec<(TopicPartition, i64)>,
);

enum Stage {
    Start,
    Hook(JoinHandle<HookDone>),
    Commit(JoinHandle<(Duration, Result<(), String>)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Assigned,
    Revoked,
    Lost,
}

enum Step {
    Group(Option<GroupEvent>),
    Fetch(Option<FetchEvent>),
    Housekeeping,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
