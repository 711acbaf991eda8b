//! The share consumer (KIP-932, Kafka's queues): members of a share group read the same
//! partitions, each record handed to one member at a time under a time-limited lock, and
//! settled one by one: accepted, released (handed out again with its delivery count raised) or
//! rejected (archived). [`ShareConsumer`] runs a share group member (kcon-group's
//! consumer-protocol machine speaking ShareGroupHeartbeat) and a share fetch task (kcon-fetch's
//! `ShareFetchMachine`) over one pool. [`ShareProcessor`] runs a handler over one with the
//! record policies (`errors.*`): a retriable failure releases the record, one that fails for
//! good is dead-lettered, rejected, or stops it.
//!
//! ```no_run
//! use kcon::share::{AcknowledgeType, ShareConsumer};
//!
//! # async fn run() -> Result<(), kcon::Error> {
//! let mut consumer = ShareConsumer::builder()
//!     .set("bootstrap.servers", "localhost:9092")
//!     .set("group.id", "workers")
//!     .set("share.acknowledgement.mode", "explicit")
//!     .build()?;
//! consumer.subscribe(["jobs"])?;
//! loop {
//!     for record in consumer.recv_batch().await? {
//!         let done = record.value.is_some();
//!         let kind = if done { AcknowledgeType::Accept } else { AcknowledgeType::Reject };
//!         consumer.acknowledge(&record, kind)?;
//!     }
//! }
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use kcon_core::{ConfigError, GroupProtocol, Record, TopicPartition};
use kcon_fetch::FetchConfig;
use kcon_fetch::share::{ShareFetcher, Wanting};
use kcon_group::{GroupConfig, GroupEvent, GroupMember};
use kcon_pool::{Pool, PoolConfig};
use tokio::time;
use tracing::debug;

use crate::config::{
    ConsumerSetting, POLICY, PROPERTIES, PolicyConfig, SHARE, check_pool_and_policy, effective,
    set_if_listed,
};
use crate::error::Error;

mod processor;

pub use crate::config::AcknowledgementMode;
pub use kcon_fetch::share::{
    AcknowledgeType, AcknowledgementOutcome, AcknowledgementRange, AcquireMode, ShareEvent,
};
pub use processor::{ShareProcessor, ShareProcessorCounts};

/// Properties a share consumer refuses, with why: the share group decides them, or they are a
/// consumer group's (the Java `KafkaShareConsumer` refuses the same).
const REFUSED: &[(&str, &str)] = &[
    (
        "auto.offset.reset",
        "unset for a share consumer: the share group's share.auto.offset.reset decides where it starts \
         (a group config: kcon group config GROUP --set share.auto.offset.reset=earliest)",
    ),
    (
        "isolation.level",
        "unset for a share consumer: the share group's share.isolation.level decides",
    ),
    (
        "group.instance.id",
        "unset for a share consumer: share groups have no static membership",
    ),
    (
        "group.protocol",
        "unset for a share consumer: it speaks the share group protocol",
    ),
    (
        "group.remote.assignor",
        "unset for a share consumer: the coordinator assigns share groups itself",
    ),
    (
        "partition.assignment.strategy",
        "unset for a share consumer: the coordinator assigns",
    ),
    (
        "session.timeout.ms",
        "unset for a share consumer: the share group's session timeout decides",
    ),
    (
        "heartbeat.interval.ms",
        "unset for a share consumer: the coordinator gives the interval",
    ),
    (
        "errors.retry.backoff.ms",
        "unset for a share consumer: a retry is the group handing the record out again",
    ),
    (
        "errors.retry.delay.max.ms",
        "unset for a share consumer: a retry is the group handing the record out again",
    ),
    (
        "errors.retry.timeout",
        "unset for a share consumer: errors.retry.max.attempts counts its deliveries",
    ),
    (
        "errors.breaker.window.records",
        "unset for a share consumer: its processor has no circuit breaker",
    ),
    (
        "errors.breaker.failures",
        "unset for a share consumer: its processor has no circuit breaker",
    ),
    (
        "errors.breaker.consecutive.failures",
        "unset for a share consumer: its processor has no circuit breaker",
    ),
];

/// Builds a [`ShareConsumer`]: Kafka's property names, as [`ConsumerBuilder`](crate::ConsumerBuilder)
/// takes them, less those a share group decides (`auto.offset.reset`, `isolation.level`,
/// `session.timeout.ms`, ...), which are refused naming the group's setting; plus
/// `share.acknowledgement.mode`.
#[derive(Default, Clone)]
pub struct ShareConsumerBuilder {
    properties: Vec<(String, String)>,
    on_acknowledged: Vec<AcknowledgedHook>,
}

/// A function told every acknowledgement outcome (see
/// [`ShareConsumerBuilder::on_acknowledged`]).
type AcknowledgedHook = std::sync::Arc<dyn Fn(&AcknowledgementOutcome) + Send + Sync>;

impl std::fmt::Debug for ShareConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are not shown: passwords are properties too.
        let names: Vec<&str> = self.properties.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ShareConsumerBuilder")
            .field("properties", &names)
            .field("on_acknowledged", &self.on_acknowledged.len())
            .finish()
    }
}

/// A share consumer's metrics, read from any task or thread while it runs (a Prometheus
/// collector's scrape): a clone of [`ShareConsumer::metrics_handle`].
#[derive(Debug, Clone)]
pub struct ShareMetricsHandle {
    published: std::sync::Arc<std::sync::Mutex<ShareMetrics>>,
    client_id: std::sync::Arc<str>,
    group: std::sync::Arc<str>,
}

impl ShareMetricsHandle {
    /// The metrics now.
    pub fn snapshot(&self) -> ShareMetrics {
        self.lock().clone()
    }

    /// The consumer's `client.id` and `group.id`.
    pub fn identity(&self) -> (&str, &str) {
        (&self.client_id, &self.group)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ShareMetrics> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a share consumer has done so far ([`ShareConsumer::metrics`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShareMetrics {
    /// Records the brokers acquired for this member and it handed out (or buffered).
    pub records_acquired: u64,
    /// Records whose acceptance the broker took.
    pub records_accepted: u64,
    /// Records whose release the broker took (they come again).
    pub records_released: u64,
    /// Records whose rejection the broker took (archived).
    pub records_rejected: u64,
    /// Records whose lock renewal the broker took (KIP-1222).
    pub records_renewed: u64,
    /// Records whose acknowledgement failed (refused, or its request lost): they are handed
    /// out again once their locks expire.
    pub acknowledgements_failed: u64,
    /// Records acquired again after their lock expired while this member held them.
    pub lock_expirations: u64,
    /// Records acquired by delivery count: 1, 2, 3, 4, and 5 or more.
    pub delivery_counts: [u64; 5],
    /// Commits done ([`ShareConsumer::commit`]).
    pub commits: u64,
}

impl ShareConsumerBuilder {
    /// Sets a property by its Kafka name; checked by [`build`](Self::build).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.properties.push((name.trim().to_owned(), value.into()));
        self
    }

    /// Tells `hook` every acknowledgement outcome as the consumer reads it (in `recv_batch`,
    /// `commit` and `close`): each partition's acknowledgements sent in one request, and
    /// whether the broker took them (the Java client's acknowledgement commit callback). Called
    /// in place: it must not block.
    pub fn on_acknowledged(
        mut self,
        hook: impl Fn(&AcknowledgementOutcome) + Send + Sync + 'static,
    ) -> Self {
        self.on_acknowledged.push(std::sync::Arc::new(hook));
        self
    }

    /// Checks the properties and starts the consumer's tasks (inside a tokio runtime). It
    /// joins nothing until [`ShareConsumer::subscribe`].
    pub fn build(self) -> Result<ShareConsumer, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::misuse(
                "a share consumer must be built inside a tokio runtime (its tasks run there)",
            ));
        }
        let s = self.settings()?;
        let client_id = s.pool.client_id.clone();
        let pool = Pool::new(s.pool)?;
        let member = GroupMember::start(pool.clone(), s.group.clone())?;
        let fetcher = ShareFetcher::start(
            pool.clone(),
            s.fetch.clone(),
            s.group.group_id.clone(),
            "",
            s.acquire_mode,
        );
        Ok(ShareConsumer {
            group_id: s.group.group_id.clone(),
            subscription: BTreeSet::new(),
            policy: s.policy,
            pool,
            member: Some(member),
            fetcher: Some(fetcher),
            mode: s.mode,
            max_poll_records: usize::try_from(s.fetch.max_poll_records.max(1)).unwrap_or(1),
            close_timeout: s.close_timeout,
            assigned: BTreeSet::new(),
            buffer: VecDeque::new(),
            delivered: BTreeMap::new(),
            outcomes: Vec::new(),
            next_commit: 0,
            records_seen: 0,
            metrics: ShareMetricsHandle {
                published: std::sync::Arc::default(),
                client_id: client_id.as_str().into(),
                group: s.group.group_id.as_str().into(),
            },
            on_acknowledged: self.on_acknowledged,
            failed: None,
        })
    }

    fn settings(&self) -> Result<ShareSettings, Error> {
        let mut pool = PoolConfig::default();
        let mut group = GroupConfig::default();
        let mut fetch = FetchConfig::default();
        let mut mode = AcknowledgementMode::default();
        let mut acquire_mode = AcquireMode::default();
        let mut policy = PolicyConfig::default();
        let mut close_timeout = Duration::from_secs(30);
        for (property, name, value) in effective(&self.properties, ShareConsumer::properties())? {
            let unknown = || ConfigError::unknown(name, []);
            if let Some((_, why)) = REFUSED.iter().find(|(n, _)| property.is_named(n)) {
                return Err(Error::config(property.name(), value, why));
            }
            set_if_listed(kcon_pool::property::PROPERTIES, &mut pool, name, value)?;
            set_if_listed(kcon_group::property::PROPERTIES, &mut group, name, value)?;
            set_if_listed(kcon_fetch::property::PROPERTIES, &mut fetch, name, value)?;
            if let Some(own) = kcon_core::property::registry::lookup(PROPERTIES, name) {
                let setting = own.parse(value)?;
                match setting {
                    ConsumerSetting::CloseTimeout(d) => close_timeout = d,
                    ConsumerSetting::ShareAcknowledgementMode(m) => mode = m,
                    ConsumerSetting::ShareAcquireMode(m) => acquire_mode = m,
                    // The `errors.*` properties, for a ShareProcessor over the consumer.
                    _ if own.parts.contains(&POLICY) => {
                        kcon_core::property::Configurable::apply(&mut policy, &setting);
                    }
                    _ => return Err(unknown().into()),
                }
            }
        }
        check_pool_and_policy(&pool, &policy)?;
        group.group_protocol = GroupProtocol::Share;
        group.validate()?;
        Ok(ShareSettings {
            pool,
            group,
            fetch,
            mode,
            acquire_mode,
            close_timeout,
            policy,
        })
    }
}

struct ShareSettings {
    pool: PoolConfig,
    group: GroupConfig,
    fetch: FetchConfig,
    mode: AcknowledgementMode,
    acquire_mode: AcquireMode,
    close_timeout: Duration,
    policy: PolicyConfig,
}

/// A member of a share group (KIP-932): [`recv_batch`](Self::recv_batch) hands out records the
/// brokers acquired for it, each with its delivery count
/// ([`Record::delivery_count`]), and each is settled with
/// [`acknowledge`](Self::acknowledge) (explicit mode) or accepted when the next batch is asked
/// for (implicit mode, the default). Acknowledgements go with the next fetch to the partition's
/// leader, or at once with [`commit`](Self::commit); [`close`](Self::close) accepts the last
/// batch in implicit mode, releases what the application never saw or left unacknowledged, and
/// leaves the group.
///
/// Records not acknowledged before their lock expires (the group's
/// `share.record.lock.duration.ms`) are handed out again, to this member or another, with their
/// delivery count raised; after the group's delivery limit they are archived.
pub struct ShareConsumer {
    pool: Pool,
    group_id: String,
    /// The topics subscribed to.
    subscription: BTreeSet<String>,
    /// The `errors.*` properties: what a [`ShareProcessor`] over the consumer does with
    /// records that fail.
    policy: PolicyConfig,
    member: Option<GroupMember>,
    fetcher: Option<ShareFetcher>,
    mode: AcknowledgementMode,
    max_poll_records: usize,
    close_timeout: Duration,
    assigned: BTreeSet<TopicPartition>,
    /// Records acquired and not handed out yet.
    buffer: VecDeque<Record>,
    /// The last batch's records by partition and offset, with what the application said.
    delivered: BTreeMap<TopicPartition, BTreeMap<i64, Option<AcknowledgeType>>>,
    /// Outcomes of acknowledgements not read yet.
    outcomes: Vec<AcknowledgementOutcome>,
    next_commit: u64,
    /// `ShareEvent::Records` read from the fetcher: what a want says it has seen.
    records_seen: u64,
    metrics: ShareMetricsHandle,
    on_acknowledged: Vec<AcknowledgedHook>,
    failed: Option<Error>,
}

impl ShareConsumer {
    /// A builder.
    pub fn builder() -> ShareConsumerBuilder {
        ShareConsumerBuilder::default()
    }

    /// Every property a share consumer takes (and those it refuses, which its builder names):
    /// the pool's, the group member's, the fetcher's and kcon's own.
    pub fn properties()
    -> impl Iterator<Item = &'static dyn kcon_core::property::AnyProperty> + Clone {
        crate::ConsumerBuilder::properties().filter(|p| {
            p.parts().iter().any(|part| {
                [
                    kcon_pool::property::POOL,
                    kcon_group::property::GROUP,
                    kcon_fetch::property::FETCH,
                    SHARE,
                    POLICY,
                ]
                .contains(part)
            })
        })
    }

    /// The acknowledgement mode.
    pub fn acknowledgement_mode(&self) -> AcknowledgementMode {
        self.mode
    }

    /// What it has done so far: records acquired, accepted, released, rejected, failed
    /// acknowledgements, expired locks, delivery counts.
    pub fn metrics(&self) -> ShareMetrics {
        self.metrics.snapshot()
    }

    /// A handle that reads the metrics from any task or thread (with crate `kcon-prometheus`,
    /// `register_metrics` on it).
    pub fn metrics_handle(&self) -> ShareMetricsHandle {
        self.metrics.clone()
    }

    /// The partitions the group assigned this member now.
    pub fn assignment(&self) -> &BTreeSet<TopicPartition> {
        &self.assigned
    }

    /// Joins the share group subscribed to `topics` (replacing the subscription; empty leaves).
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let member = self.member.as_ref().ok_or_else(Error::closed)?;
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        self.subscription = topics.iter().cloned().collect();
        member.subscribe(topics);
        Ok(())
    }

    /// The next records acquired for this member: at most `max.poll.records`, each with its
    /// delivery count, waiting for them as long as it takes (wrap it in a timeout to bound
    /// it). The last batch is settled first: in implicit mode its records not acknowledged are
    /// accepted; in explicit mode a record of it not acknowledged makes this an error
    /// (`Misuse`) and hands out nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: records are taken only in the poll that returns them; those acquired while it
    /// waited stay for the next call, and the fetcher stops asking for more as the wait is dropped
    /// (records acquired for nobody would sit under their locks). Its first poll settles the last
    /// batch all the same (in implicit mode, what was not acknowledged is accepted).
    pub async fn recv_batch(&mut self) -> Result<Vec<Record>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.member.is_none() {
            return Err(Error::closed());
        }
        if self.subscription.is_empty() {
            return Err(Error::misuse("recv_batch before subscribe"));
        }
        self.settle_batch()?;
        if let Some(member) = &self.member {
            member.poll();
        }
        self.drain_events()?;
        // Called off (a timeout around this call), the wait leaves nothing wanted: records
        // acquired while the application does not wait would sit under their locks.
        let mut waiting: Option<Wanting> = None;
        while self.buffer.is_empty() {
            // Again after every event: a want sent before a batch was read is stale.
            if let Some(w) = waiting.take() {
                w.ended();
            }
            waiting = Some(self.fetcher()?.wait_for_records(self.records_seen));
            let (member, fetcher) = match (&mut self.member, &mut self.fetcher) {
                (Some(m), Some(f)) => (m, f),
                _ => return Err(Error::closed()),
            };
            tokio::select! {
                e = member.next_event() => match e {
                    Some(e) => self.on_member_event(e)?,
                    None => return Err(Error::closed()),
                },
                e = fetcher.next() => match e {
                    Some(e) => self.on_fetch_event(e),
                    None => return Err(Error::closed()),
                },
            }
        }
        if let Some(w) = waiting {
            w.ended();
        }
        let n = self.max_poll_records.min(self.buffer.len());
        let batch: Vec<Record> = self.buffer.drain(..n).collect();
        for r in &batch {
            self.delivered
                .entry(TopicPartition::new(&*r.topic, r.partition))
                .or_default()
                .insert(r.offset, None);
        }
        Ok(batch)
    }

    /// Settles `record` (one of the last batch's) as `kind`: accepted, released (handed out
    /// again, its delivery count raised) or rejected (archived). The acknowledgement goes with
    /// the next fetch, or with [`commit`](Self::commit). `Renew` settles nothing: the record's
    /// lock starts over and it stays to be acknowledged (KIP-1222, sent at once on a
    /// ShareAcknowledge; a broker without ShareAcknowledge v2 refuses it with
    /// UNSUPPORTED_VERSION, told as its outcome). A record already acknowledged, or not of the
    /// last batch, is refused (`Misuse`).
    pub fn acknowledge(&mut self, record: &Record, kind: AcknowledgeType) -> Result<(), Error> {
        if kind == AcknowledgeType::Gap {
            return Err(Error::misuse(
                "a record is acknowledged as accept, release, reject or renew; gaps are the \
                 client's",
            ));
        }
        let tp = TopicPartition::new(&*record.topic, record.partition);
        let slot = self
            .delivered
            .get_mut(&tp)
            .and_then(|offsets| offsets.get_mut(&record.offset))
            .ok_or_else(|| {
                Error::misuse(format!(
                    "{tp} offset {} is not a record of the last batch",
                    record.offset
                ))
            })?;
        if let Some(before) = slot {
            return Err(Error::misuse(format!(
                "{tp} offset {} was acknowledged already ({})",
                record.offset,
                before.name()
            )));
        }
        if kind != AcknowledgeType::Renew {
            *slot = Some(kind);
        }
        self.fetcher()?
            .acknowledge(tp, record.offset, record.offset, kind);
        Ok(())
    }

    /// Sends every acknowledgement given so far (in implicit mode, the last batch accepted
    /// first) without waiting for a fetch, and waits for the brokers' answers: each
    /// partition's outcome (an error code, or why the request failed). A refused
    /// acknowledgement's records are handed out again when their locks expire.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that nothing is withdrawn: once polled, the acknowledgements are sent and go
    /// on if the future is dropped; their outcomes come with a later call's
    /// ([`commit`](Self::commit), or
    /// [`take_acknowledgement_outcomes`](Self::take_acknowledgement_outcomes) after a
    /// [`recv_batch`](Self::recv_batch)). Dropped before its first poll, it does nothing.
    pub async fn commit(&mut self) -> Result<Vec<AcknowledgementOutcome>, Error> {
        if self.mode == AcknowledgementMode::Implicit {
            self.accept_unacknowledged();
        }
        let id = self.next_commit;
        self.next_commit += 1;
        self.fetcher()?.commit(id);
        loop {
            let fetcher = self.fetcher.as_mut().ok_or_else(Error::closed)?;
            match fetcher.next().await {
                Some(ShareEvent::Committed(done)) if done >= id => {
                    self.metrics.lock().commits += 1;
                    break;
                }
                Some(e) => self.on_fetch_event(e),
                None => return Err(Error::closed()),
            }
        }
        Ok(std::mem::take(&mut self.outcomes))
    }

    /// Outcomes of acknowledgements sent with fetches since the last call (or commit).
    pub fn take_acknowledgement_outcomes(&mut self) -> Vec<AcknowledgementOutcome> {
        std::mem::take(&mut self.outcomes)
    }

    /// Closes: in implicit mode the last batch is accepted; records left unacknowledged and
    /// those acquired but never handed out are released; the acknowledgements go with the
    /// share sessions' close, and the member leaves the group. Takes at most
    /// `close.timeout.ms`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the consumer is moved in, so dropping the future drops it part-way through
    /// the close: share sessions not closed yet stay open, so records it held and had not released
    /// yet stay locked until `share.record.lock.duration.ms` passes (then go to other members), and
    /// the member leaves the group in the background.
    pub async fn close(mut self) -> Result<(), Error> {
        let deadline = time::Instant::now() + self.close_timeout;
        if self.mode == AcknowledgementMode::Implicit {
            self.accept_unacknowledged();
        }
        self.release_rest();
        if let Some(fetcher) = self.fetcher.take() {
            let left = deadline.saturating_duration_since(time::Instant::now());
            for e in fetcher.close(left).await {
                self.on_fetch_event(e);
            }
        }
        if let Some(member) = self.member.take() {
            let left = deadline.saturating_duration_since(time::Instant::now());
            let mut events = member.close(left).await;
            // The member revokes before it leaves: nothing waits on those revocations here.
            events.retain(|e| matches!(e, GroupEvent::Fatal(_)));
            if let Some(GroupEvent::Fatal(e)) = events.pop() {
                debug!(error = %e, "the share group member failed while closing");
            }
        }
        Ok(())
    }

    fn fetcher(&self) -> Result<&ShareFetcher, Error> {
        self.fetcher.as_ref().ok_or_else(Error::closed)
    }

    /// The last batch settled before the next: implicit accepts what was not acknowledged,
    /// explicit refuses to go on while something was not.
    fn settle_batch(&mut self) -> Result<(), Error> {
        match self.mode {
            AcknowledgementMode::Implicit => self.accept_unacknowledged(),
            AcknowledgementMode::Explicit => {
                let open: Vec<String> = self
                    .delivered
                    .iter()
                    .flat_map(|(tp, offsets)| {
                        offsets
                            .iter()
                            .filter(|(_, a)| a.is_none())
                            .map(move |(o, _)| format!("{tp}@{o}"))
                    })
                    .take(5)
                    .collect();
                if !open.is_empty() {
                    return Err(Error::misuse(format!(
                        "share.acknowledgement.mode=explicit: records of the last batch are not \
                         acknowledged ({}); acknowledge each before asking for more",
                        open.join(", ")
                    )));
                }
                self.delivered.clear();
            }
        }
        Ok(())
    }

    /// Every record of the last batch not acknowledged yet, accepted (in ranges).
    fn accept_unacknowledged(&mut self) {
        let delivered = std::mem::take(&mut self.delivered);
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        for (tp, offsets) in delivered {
            for (first, last) in runs(offsets.iter().filter(|(_, a)| a.is_none()).map(|(o, _)| *o))
            {
                fetcher.acknowledge(tp.clone(), first, last, AcknowledgeType::Accept);
            }
        }
    }

    /// Records left unacknowledged and those never handed out: released.
    fn release_rest(&mut self) {
        let delivered = std::mem::take(&mut self.delivered);
        let buffered = std::mem::take(&mut self.buffer);
        let Some(fetcher) = &self.fetcher else {
            return;
        };
        let mut rest: BTreeMap<TopicPartition, BTreeSet<i64>> = BTreeMap::new();
        for (tp, offsets) in delivered {
            rest.entry(tp).or_default().extend(
                offsets
                    .into_iter()
                    .filter(|(_, a)| a.is_none())
                    .map(|(o, _)| o),
            );
        }
        for r in buffered {
            rest.entry(TopicPartition::new(&*r.topic, r.partition))
                .or_default()
                .insert(r.offset);
        }
        for (tp, offsets) in rest {
            for (first, last) in runs(offsets.into_iter()) {
                fetcher.acknowledge(tp.clone(), first, last, AcknowledgeType::Release);
            }
        }
    }

    fn drain_events(&mut self) -> Result<(), Error> {
        while let Some(e) = self.member.as_mut().and_then(GroupMember::try_next_event) {
            self.on_member_event(e)?;
        }
        while let Some(e) = self.fetcher.as_mut().and_then(ShareFetcher::try_next) {
            self.on_fetch_event(e);
        }
        Ok(())
    }

    fn on_member_event(&mut self, event: GroupEvent) -> Result<(), Error> {
        let (Some(member), Some(fetcher)) = (&self.member, &self.fetcher) else {
            return Err(Error::closed());
        };
        match event {
            GroupEvent::Assigned { partitions, .. } => {
                fetcher.set_member_id(member.snapshot().generation.member_id);
                self.assigned.extend(partitions);
                fetcher.assign(self.assigned.clone());
            }
            GroupEvent::Revoked { partitions, id } => {
                for tp in &partitions {
                    self.assigned.remove(tp);
                }
                fetcher.assign(self.assigned.clone());
                // Nothing to finish first: acknowledgements of these partitions still go.
                member.revocation_done(id);
            }
            GroupEvent::Lost { partitions } => {
                for tp in &partitions {
                    self.assigned.remove(tp);
                }
                fetcher.assign(self.assigned.clone());
            }
            GroupEvent::Fatal(e) => {
                let e = Error::from(e);
                // Returned to the application, not logged again.
                debug!(error = %e, "the share group member cannot go on");
                self.failed = Some(e.clone());
                return Err(e);
            }
            other => debug!(event = ?other, "share group member"),
        }
        Ok(())
    }

    fn on_fetch_event(&mut self, event: ShareEvent) {
        match event {
            ShareEvent::Records {
                records,
                lock_expired,
                ..
            } => {
                self.records_seen += 1;
                let mut m = self.metrics.lock();
                m.records_acquired += records.len() as u64;
                m.lock_expirations += lock_expired as u64;
                for r in &records {
                    let count = usize::from(r.delivery_count.unwrap_or(1).clamp(1, 5));
                    m.delivery_counts[count - 1] += 1;
                }
                self.buffer.extend(records);
            }
            ShareEvent::Acknowledged(o) => {
                let mut m = self.metrics.lock();
                for r in &o.ranges {
                    let n = r.last.saturating_sub(r.first).saturating_add(1).max(0) as u64;
                    match (o.is_ok(), r.kind) {
                        (false, _) => m.acknowledgements_failed += n,
                        (true, AcknowledgeType::Accept) => m.records_accepted += n,
                        (true, AcknowledgeType::Release) => m.records_released += n,
                        (true, AcknowledgeType::Reject) => m.records_rejected += n,
                        (true, AcknowledgeType::Renew) => m.records_renewed += n,
                        (true, AcknowledgeType::Gap) => {}
                    }
                }
                drop(m);
                for hook in &self.on_acknowledged {
                    hook(&o);
                }
                self.outcomes.push(o);
            }
            other => debug!(event = ?other, "share fetcher"),
        }
    }
}

impl std::fmt::Debug for ShareConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareConsumer")
            .field("mode", &self.mode)
            .field("assigned", &self.assigned)
            .field("buffered", &self.buffer.len())
            .field("metrics", &self.metrics.snapshot())
            .finish_non_exhaustive()
    }
}

/// Consecutive offsets in `offsets` (ascending) as inclusive ranges.
fn runs(offsets: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for o in offsets {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == o => *last = o,
            _ => out.push((o, o)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mistyped name is told with the share consumer's property meant, and a property the
    /// share group decides is suggested too: setting it is then refused naming the group
    /// setting that decides it.
    #[test]
    fn an_unknown_property_suggests_the_one_meant() {
        let settings = |name: &str| {
            ShareConsumer::builder()
                .set("bootstrap.servers", "127.0.0.1:9")
                .set("group.id", "g")
                .set(name, "x")
                .settings()
                .map(drop)
                .unwrap_err()
        };
        let e = settings("share.acknowledgment.mode");
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        assert!(
            e.to_string().contains(
                "unknown configuration property share.acknowledgment.mode (did you mean \
                 share.acknowledgement.mode?)"
            ),
            "{e}"
        );
        let e = settings("auto.offset.rest");
        assert!(
            e.to_string().ends_with("(did you mean auto.offset.reset?)"),
            "{e}"
        );
        let e = settings("fetch.wait.max.ms");
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }
}
