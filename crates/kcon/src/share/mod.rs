//! The share consumer (KIP-932, Kafka's queues): members of a share group read the same
//! partitions, each record handed to one member at a time under a time-limited lock, and
//! settled one by one: accepted, released (handed out again with its delivery count raised) or
//! rejected (archived). [`ShareConsumer`] runs a share group member (kcon-group's
//! consumer-protocol machine speaking ShareGroupHeartbeat) and a share fetch task (kcon-fetch's
//! `ShareFetchMachine`) over one pool. A [`Processor`](crate::Processor) runs a handler over
//! one with the record policies (`errors.*`): a retriable failure releases the record, one that
//! fails for good is dead-lettered, rejected, or stops it.
//!
//! The share consumer's own bookkeeping is a sans-IO machine (`machine`: the assignment, the
//! records acquired, the last batch and what the application said of it, the outcomes, the
//! metrics' counts). The decisions of the driving are sans-IO too (`driver`; the feature
//! `fuzzing` exports the driver and the machine as `crate::fuzzing::share`, for a simulation
//! to drive); [`ShareConsumer`] is the async shell that waits for the next input, over the
//! tokio tasks' handles (`wiring`).
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

use std::collections::BTreeSet;
use std::time::Duration;

use kcon_core::{ConfigError, GroupProtocol, Machine, Record, TopicPartition};
use kcon_fetch::FetchConfig;
use kcon_fetch::share::ShareFetcher;
use kcon_group::{GroupConfig, GroupEvent, GroupMember};
use kcon_pool::{Pool, PoolConfig, TokenProvider};
use tokio::time;

use crate::config::{
    ConsumerSetting, PROPERTIES, REFUSALS, SHARE, check_pool, effective, refuse_policy,
    set_if_listed,
};
use crate::consumer::now;
use crate::error::Error;

#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
pub(crate) mod driver;
#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(
        unreachable_pub,
        reason = "exported by the module `fuzzing`, which the feature `fuzzing` and the tests compile"
    )
)]
pub(crate) mod machine;
mod wiring;

use driver::{Driver, Turn};
use machine::ShareConsumerMachine;
use wiring::Wiring;

pub use crate::config::AcknowledgementMode;
pub use kcon_fetch::share::{
    AcknowledgeType, AcknowledgementOutcome, AcknowledgementRange, AcquireMode, ShareEvent,
};

/// Builds a [`ShareConsumer`]: Kafka's property names, as [`ConsumerBuilder`](crate::ConsumerBuilder)
/// takes them, less those a share group decides (`auto.offset.reset`, `isolation.level`,
/// `session.timeout.ms`, ...), which are refused naming the group's setting; plus
/// `share.acknowledgement.mode`.
#[derive(Default, Clone)]
pub struct ShareConsumerBuilder {
    properties: Vec<(String, String)>,
    hooks: Vec<std::sync::Arc<dyn ShareConsumerHooks>>,
    token_provider: Option<TokenProvider>,
}

/// What a share consumer tells as it goes, for instrumentation (tracing, metrics of one's own),
/// as [`ConsumerHooks`](crate::ConsumerHooks) are for a consumer: every method has an empty
/// default. Called in place, on the consumer's call: a hook must not block.
///
/// ```
/// use kcon::share::{AcknowledgementOutcome, ShareConsumer, ShareConsumerHooks};
///
/// struct Failed;
/// impl ShareConsumerHooks for Failed {
///     fn on_acknowledged(&self, outcome: &AcknowledgementOutcome) {
///         if !outcome.is_ok() {
///             eprintln!("{} records of {} come again", outcome.offsets(), outcome.partition);
///         }
///     }
/// }
/// let b = ShareConsumer::builder().hooks(Failed);
/// # drop(b);
/// ```
pub trait ShareConsumerHooks: Send + Sync + 'static {
    /// An acknowledgement outcome, as the consumer reads it (in `recv_batch`, `commit` and
    /// `close`): each partition's acknowledgements sent in one request, and whether the broker
    /// took them (the Java client's acknowledgement commit callback).
    fn on_acknowledged(&self, outcome: &AcknowledgementOutcome) {
        let _ = outcome;
    }
}

impl std::fmt::Debug for ShareConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are not shown: passwords are properties too.
        let names: Vec<&str> = self.properties.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ShareConsumerBuilder")
            .field("properties", &names)
            .field("hooks", &self.hooks.len())
            .field("token_provider", &self.token_provider.is_some())
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

    /// `bootstrap.servers`: `host:port` pairs, comma-separated.
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// `group.id`: the share group.
    pub fn group_id(self, group: &str) -> Self {
        self.set("group.id", group)
    }

    /// `client.id`: the name the brokers log and quota the consumer by.
    pub fn client_id(self, id: &str) -> Self {
        self.set("client.id", id)
    }

    /// `max.poll.records`: the most records one `recv_batch` hands out.
    pub fn max_poll_records(self, n: u32) -> Self {
        self.set("max.poll.records", n.to_string())
    }

    /// `share.acknowledgement.mode`: implicit (the default) or explicit.
    pub fn acknowledgement_mode(self, mode: AcknowledgementMode) -> Self {
        let mode = match mode {
            AcknowledgementMode::Implicit => "implicit",
            AcknowledgementMode::Explicit => "explicit",
        };
        self.set("share.acknowledgement.mode", mode)
    }

    /// The OAUTHBEARER token provider (`sasl.mechanism=OAUTHBEARER`), as
    /// [`ConsumerBuilder::oauthbearer_token_provider`](crate::ConsumerBuilder::oauthbearer_token_provider)
    /// takes it: asked for a token at every authentication.
    pub fn oauthbearer_token_provider(mut self, provider: TokenProvider) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// Adds `hooks`, told what the consumer does as it goes ([`ShareConsumerHooks`]).
    pub fn hooks(mut self, hooks: impl ShareConsumerHooks) -> Self {
        self.hooks.push(std::sync::Arc::new(hooks));
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
        let max_poll_records = usize::try_from(s.fetch.max_poll_records.max(1)).unwrap_or(1);
        let metrics = ShareMetricsHandle {
            published: std::sync::Arc::default(),
            client_id: client_id.as_str().into(),
            group: s.group.group_id.as_str().into(),
        };
        let read = metrics.clone();
        let telemetry = kcon_pool::telemetry::Telemetry::start(
            &pool,
            vec![("group_id".to_string(), s.group.group_id.clone())],
            std::sync::Arc::new(move || telemetry(&read.snapshot())),
        );
        Ok(ShareConsumer {
            group_id: s.group.group_id.clone(),
            telemetry,
            pool,
            close_timeout: s.close_timeout,
            driver: Driver::new(ShareConsumerMachine::new(
                s.mode,
                max_poll_records,
                s.group.max_poll_interval,
                now(),
            )),
            parts: Wiring {
                member: Some(member),
                fetcher: Some(fetcher),
                wanting: None,
                closing_member: None,
                closing_fetcher: None,
                hooks: self.hooks,
                metrics,
            },
        })
    }

    fn settings(&self) -> Result<ShareSettings, Error> {
        let mut pool = PoolConfig::default();
        let mut group = GroupConfig::default();
        let mut fetch = FetchConfig::default();
        let mut mode = AcknowledgementMode::default();
        let mut acquire_mode = AcquireMode::default();
        let mut close_timeout = Duration::from_secs(30);
        refuse_policy(&self.properties)?;
        for (property, name, value) in effective(&self.properties, ShareConsumer::properties())? {
            let unknown = || ConfigError::unknown(name, []);
            if let Some(r) = kcon_core::property::registry::refusal(REFUSALS, SHARE, property) {
                return Err(Error::config(property.name(), value, r.why));
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
                    _ => return Err(unknown().into()),
                }
            }
        }
        if let Some(p) = self.token_provider.clone() {
            pool.sasl_oauthbearer_token_provider = Some(p);
        }
        check_pool(&pool)?;
        group.group_protocol = GroupProtocol::Share;
        group.validate()?;
        Ok(ShareSettings {
            pool,
            group,
            fetch,
            mode,
            acquire_mode,
            close_timeout,
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
    /// The metrics pushed to the cluster (KIP-714), unless `enable.metrics.push` is false.
    telemetry: Option<kcon_pool::telemetry::Telemetry>,
    close_timeout: Duration,
    /// The consumer's bookkeeping (its machine: it owns that state), and the driver's
    /// decisions around it.
    driver: Driver,
    /// The tasks' handles, the hooks and the metrics handle the driver commands.
    parts: Wiring,
}

/// The input a `recv_batch` waited for.
enum Input {
    Group(Option<GroupEvent>),
    Fetch(Option<ShareEvent>),
    /// The machine's `poll_timeout` passed.
    Timeout,
}

/// Until `at` (the machine's `poll_timeout`, on tokio's clock), or for ever without one.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => time::sleep_until(time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
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
        crate::config::ConsumerBuilder::properties().filter(|p| {
            p.parts().iter().any(|part| {
                [
                    kcon_pool::property::POOL,
                    kcon_group::property::GROUP,
                    kcon_fetch::property::FETCH,
                    SHARE,
                ]
                .contains(part)
            })
        })
    }

    /// The acknowledgement mode.
    pub fn acknowledgement_mode(&self) -> AcknowledgementMode {
        self.driver.machine.mode()
    }

    /// What it has done so far: records acquired, accepted, released, rejected, failed
    /// acknowledgements, expired locks, delivery counts.
    pub fn metrics(&self) -> ShareMetrics {
        self.parts.metrics.snapshot()
    }

    /// A handle that reads the metrics from any task or thread (with crate `kcon-prometheus`,
    /// `register_metrics` on it).
    pub fn metrics_handle(&self) -> ShareMetricsHandle {
        self.parts.metrics.clone()
    }

    /// The partitions the group assigned this member now.
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.driver.machine.assignment().clone()
    }

    /// The topics subscribed to.
    pub fn subscription(&self) -> BTreeSet<String> {
        self.driver.machine.subscription().clone()
    }

    /// Its connections and cluster metadata: a producer built on them
    /// (`ProducerBuilder::pool`) shares them rather than opening its own.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Its `group.id`.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Its `client.id`.
    pub fn client_id(&self) -> &str {
        &self.parts.metrics.client_id
    }

    /// Its `close.timeout.ms`: how long [`close`](ShareConsumer::close) takes at most.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Joins the share group subscribed to `topics` (replacing the subscription; empty leaves).
    pub fn subscribe<I, S>(&mut self, topics: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        self.driver.subscribe(now(), topics, &mut self.parts)
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
        // The decisions are the driver's ([`Driver::turn`] and the inputs it is handed); this
        // loop only waits, on the member's and the fetcher's channels.
        self.driver.call(now(), &mut self.parts)?;
        loop {
            match self.driver.turn(now(), &mut self.parts) {
                Turn::Error(e) => return Err(e),
                Turn::Ready => return Ok(self.driver.machine.take_batch()),
                Turn::Wait => {}
            }
            let (Some(member), Some(fetcher)) = (&mut self.parts.member, &mut self.parts.fetcher)
            else {
                return Err(Error::closed());
            };
            // Called off (a timeout around this call), the wait leaves nothing wanted: records
            // acquired while the application does not wait would sit under their locks. The
            // want is held here while it waits, so that it is dropped with the call.
            let wanting = self.parts.wanting.take();
            let due = self.driver.machine.poll_timeout();
            let input = tokio::select! {
                e = member.next_event() => Input::Group(e),
                e = fetcher.next() => Input::Fetch(e),
                () = sleep_until(due) => Input::Timeout,
            };
            self.parts.wanting = wanting;
            match input {
                Input::Group(e) => self.driver.group_event(now(), e, &mut self.parts),
                Input::Fetch(e) => self.driver.fetch_event(now(), e, &mut self.parts),
                Input::Timeout => self.driver.timeout(now(), &mut self.parts),
            }
        }
    }

    /// Settles `record` (one of the last batch's) as `kind`: accepted, released (handed out
    /// again, its delivery count raised) or rejected (archived). The acknowledgement goes with
    /// the next fetch, or with [`commit`](Self::commit). `Renew` settles nothing: the record's
    /// lock starts over and it stays to be acknowledged (KIP-1222, sent at once on a
    /// ShareAcknowledge; a broker without ShareAcknowledge v2 refuses it with
    /// UNSUPPORTED_VERSION, told as its outcome). A record already acknowledged, or not of the
    /// last batch, is refused (`Misuse`).
    pub fn acknowledge(&mut self, record: &Record, kind: AcknowledgeType) -> Result<(), Error> {
        self.driver
            .acknowledge(now(), record, kind, &mut self.parts)
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
        let id = self.driver.commit(now(), &mut self.parts)?;
        loop {
            let fetcher = self.parts.fetcher.as_mut().ok_or_else(Error::closed)?;
            let event = fetcher.next().await;
            if self
                .driver
                .commit_input(now(), id, event, &mut self.parts)?
            {
                break;
            }
        }
        Ok(self.driver.machine.take_outcomes())
    }

    /// Outcomes of acknowledgements sent with fetches since the last call (or commit): the
    /// newest 4,096 at most, so that an application that never reads them does not keep them
    /// all (the metrics count, and the hooks are told, every one).
    pub fn take_acknowledgement_outcomes(&mut self) -> Vec<AcknowledgementOutcome> {
        self.driver.machine.take_outcomes()
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
    pub async fn close(self) -> Result<(), Error> {
        let timeout = self.close_timeout;
        self.close_within(timeout).await
    }

    /// [`close`](ShareConsumer::close), within `timeout`: what is not done by then (a share
    /// session not closed, the member's leaving) is left as dropping the consumer leaves it.
    ///
    /// # Cancel safety
    ///
    /// As [`close`](ShareConsumer::close)'s: not cancel-safe. Give it the time it may take as
    /// `timeout` instead.
    pub async fn close_within(mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = time::Instant::now() + timeout;
        self.driver.close(now(), &mut self.parts);
        if let Some(fetcher) = self.parts.closing_fetcher.take() {
            let left = deadline.saturating_duration_since(time::Instant::now());
            for e in fetcher.close(left).await {
                self.driver.fetch_event(now(), Some(e), &mut self.parts);
            }
        }
        self.driver.leave(now(), &mut self.parts);
        if let Some(member) = self.parts.closing_member.take() {
            let left = deadline.saturating_duration_since(time::Instant::now());
            let events = member.close(left).await;
            self.driver.member_closed(now(), events);
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.close(deadline).await;
        }
        Ok(())
    }

    /// The id the cluster gave this consumer for its pushed metrics (KIP-714), waiting up to
    /// `timeout` for a broker to name it (it asks once it reached the cluster); `None` when none
    /// did by then, or `enable.metrics.push` is false, or no broker offers KIP-714.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn client_instance_id(&self, timeout: Duration) -> Option<crate::ClientInstanceId> {
        match &self.telemetry {
            Some(t) => t.client_instance_id(timeout).await,
            None => None,
        }
    }
}

/// The share consumer's metrics as it pushes them to the cluster (KIP-714), named after the
/// Java share consumer's (`org.apache.kafka.consumer.share.fetch.manager.`, its group
/// `consumer-share-fetch-manager-metrics`): records acquired as `records.consumed.total`, the
/// acknowledgements the brokers took (accept, release, reject, renew) as
/// `acknowledgements.send.total`, those that failed as `acknowledgements.error.total`.
fn telemetry(m: &ShareMetrics) -> Vec<kcon_pool::telemetry::Metric> {
    use kcon_pool::telemetry::Metric;
    const FETCH: &str = "org.apache.kafka.consumer.share.fetch.manager.";
    let sent = m.records_accepted + m.records_released + m.records_rejected + m.records_renewed;
    vec![
        Metric::counter(format!("{FETCH}records.consumed.total"), m.records_acquired),
        Metric::counter(format!("{FETCH}acknowledgements.send.total"), sent),
        Metric::counter(
            format!("{FETCH}acknowledgements.error.total"),
            m.acknowledgements_failed,
        ),
    ]
}

impl std::fmt::Debug for ShareConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareConsumer")
            .field("mode", &self.driver.machine.mode())
            .field("assigned", self.driver.machine.assignment())
            .field("buffered", &self.driver.machine.buffered())
            .field("metrics", &self.parts.metrics.snapshot())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SHARE_POLICY;

    /// Every refusal of a share consumer's names a property it would otherwise take, and
    /// building with it set fails naming that property and why (a Processor's refusals over a
    /// share consumer are the policy module's to test).
    #[test]
    fn every_refusal_is_of_a_property_it_would_take_and_is_told() {
        for r in REFUSALS.iter().filter(|r| r.by != SHARE_POLICY) {
            assert_eq!(r.by, SHARE);
            assert!(
                ShareConsumer::properties().any(|p| p.is_named(r.name)),
                "{} is no property of a share consumer's parts",
                r.name
            );
            // Refused before its value is read.
            let e = ShareConsumer::builder()
                .set("bootstrap.servers", "127.0.0.1:9")
                .set("group.id", "g")
                .set(r.name, "x")
                .settings()
                .map(drop)
                .unwrap_err();
            assert_eq!(e.property(), Some(r.name), "{e}");
            assert!(e.to_string().contains(r.why), "{e}");
        }
    }

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
        assert_eq!(e.kind(), crate::error::ErrorKind::Config);
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
