//! The pool: one connection per broker (and per purpose that needs its own), bootstrap, the
//! metadata cache and its refreshes, reconnect backoff, idle connections.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_codec::versions::BrokerVersions;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::{self, Instant};
use tracing::{debug, error, warn};

use kcon_core::{ConfigError, ExponentialBackoff, FailureTracker, RequestFailure, Target};

use crate::clock::{Clock, SystemClock};
use crate::config::{MetadataRecoveryStrategy, PoolConfig};
use crate::connection::{Connection, Security, SpareMap};
use crate::error::{Error, Misuse, Peer, Result};
use crate::rebootstrap::{AnswerWatch, RebootstrapCause, RebootstrapCounter, Rebootstraps};
use crate::step_down::StepDown;
use crate::throttle::ThrottleCounter;
use kcon_core::error_codes::code::REBOOTSTRAP_REQUIRED;
use kcon_core::error_codes::is_stale_metadata_error;

use crate::metadata::{AutoCreate, Metadata, TopicScope, metadata_request};

/// A pool of broker connections with the cluster metadata: a cheap-to-clone handle.
///
/// - Connections are made on first use, one per broker, plus one per broker and
///   [`Purpose`] for traffic that must not queue behind the rest (heartbeats behind a long
///   fetch). A connection that fails is replaced on the next request, after the reconnect
///   backoff.
/// - Until a Metadata answer names the brokers, [`BrokerTarget::Any`] goes to the bootstrap
///   servers; after, the advertised brokers replace them.
/// - The metadata is refreshed on demand ([`refresh_metadata`](Pool::refresh_metadata)), after
///   errors that mean it is stale ([`invalidate`](Pool::invalidate),
///   [`request_refresh`](Pool::request_refresh)), and every `metadata.max.age.ms`. Concurrent
///   refreshes share one Metadata request.
/// - A background task (stopped when the last handle is dropped) does the periodic refreshes
///   and closes connections idle for `connections.max.idle.ms`.
///
/// Requests are not retried by the pool: a retriable error ([`Error::is_retriable`]) is the
/// caller's to retry, with [`PoolConfig::retry_backoff_policy`], because only the caller knows
/// whether its request may be sent twice.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    /// A pool for `config`, which is validated. It connects to nothing yet. Its wall clock is
    /// the system's.
    ///
    /// Must be called inside a Tokio runtime: it spawns the pool's background task there.
    pub fn new(config: PoolConfig) -> Result<Pool> {
        Pool::with_clock(config, Arc::new(SystemClock))
    }

    /// [`new`](Pool::new) with a wall clock of the application's: every part working over the
    /// pool reads `clock` for the wall-clock time.
    pub fn with_clock(config: PoolConfig, clock: Arc<dyn Clock>) -> Result<Pool> {
        config.validate()?;
        // Certificates and keys are read once, here: a bad file fails now, with its property.
        let security = Security::from_config(&config)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| Error::Misuse(Misuse::NoRuntime))?;
        let state = PoolState::new(config.retry_backoff_policy());
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(PoolInner {
            config,
            clock,
            security,
            spare: Arc::default(),
            state: Mutex::new(state),
            watch: Arc::new(AnswerWatch::new(wake.clone())),
            rebootstraps: Arc::new(RebootstrapCounter::default()),
            stopped: OnceLock::new(),
            wake,
            housekeeping: Mutex::new(None),
        });
        let task = runtime.spawn(housekeeping(Arc::downgrade(&inner), inner.wake.clone()));
        *inner
            .housekeeping
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        Ok(Pool { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The wall clock every part working over the pool reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Sends `request` to `target` and waits for its answer (at most `request.timeout.ms` once a
    /// connection is there; setting one up has its own timeout).
    ///
    /// The version is the highest both kcon and the broker speak; when the request's shape
    /// depends on it, get a [`connection`](Pool::connection), ask it for the
    /// [`version`](Connection::version) and send there instead.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future leaves the pool and the connection usable. Dropped before
    /// the request was handed to the connection, nothing was sent; dropped after, the request is
    /// written whole and the broker may still carry it out, its answer read and thrown away (the
    /// request keeps its in-flight slot until then). Sending it again is then a second request:
    /// safe for reads, and for writes only where the broker treats a repeat as the same (an
    /// idempotent producer's batch, a commit of the same offsets). A connection being set up for it
    /// is abandoned ([`connection`](Pool::connection)).
    pub async fn send<R: Request + 'static>(
        &self,
        target: BrokerTarget,
        request: &R,
    ) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        self.send_with_timeout(target, request, self.inner.config.request_timeout)
            .await
    }

    /// [`send`](Pool::send) with a timeout of its own, for requests the broker may hold longer
    /// than `request.timeout.ms`.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Pool::send)'s.
    pub async fn send_with_timeout<R: Request + 'static>(
        &self,
        target: BrokerTarget,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R::Response: 'static,
    {
        let conn = self.connection(target).await?;
        conn.send_with_timeout(request, timeout).await
    }

    /// An open connection to `target`, made if needed.
    ///
    /// [`BrokerTarget::Any`] picks the open connection with the fewest requests in flight (the
    /// Java client's `leastLoadedNode`), else connects to the brokers in turn, starting at a
    /// random one, skipping those in reconnect backoff. A broker id that is not in the metadata
    /// triggers one refresh before [`Error::UnknownBroker`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a connection the dropped call was setting up is closed half-made, and the next
    /// call for the same broker (or one waiting on the same setup) starts it over, with no
    /// reconnect backoff counted; connections already open are not touched.
    pub async fn connection(&self, target: BrokerTarget) -> Result<Connection> {
        match target {
            BrokerTarget::Any => self.inner.any_connection().await,
            BrokerTarget::Broker(id) => self.inner.broker_connection(id, None).await,
            BrokerTarget::Dedicated(id, purpose) => {
                self.inner.broker_connection(id, Some(purpose)).await
            }
        }
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.inner.lock().metadata.clone()
    }

    /// Asks the cluster for the metadata of `scope` now and returns the snapshot with the
    /// answer applied. The topics are added to those the periodic refresh asks about.
    ///
    /// Joins a refresh already in flight whose scope covers `scope`, so that many callers that
    /// noticed the same stale leader cause one Metadata request.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the Metadata request runs on a task of its own, so dropping the future only
    /// stops the wait; the refresh finishes, and the pool's snapshot gets its answer, for whoever
    /// asks next.
    pub async fn refresh_metadata(&self, scope: TopicScope) -> Result<Arc<Metadata>> {
        self.refresh_metadata_with(scope, AutoCreate::Configured)
            .await
    }

    /// [`refresh_metadata`](Pool::refresh_metadata) for an asker whose request may create the
    /// missing topics of `scope` by another rule than the pool's `allow.auto.create.topics`: a
    /// producer's ([`AutoCreate::Always`]). It joins a refresh in flight only if that one asks
    /// for creation too (or `auto_create` does not).
    pub async fn refresh_metadata_with(
        &self,
        scope: TopicScope,
        auto_create: AutoCreate,
    ) -> Result<Arc<Metadata>> {
        self.inner.lock().tracked.include(&scope);
        self.inner.refresh(scope, auto_create).await
    }

    /// Replaces the topics the periodic refresh asks about, and drops the others from the cache
    /// (the consumer's subscription changed).
    pub fn track_topics(&self, scope: TopicScope) {
        let mut st = self.inner.lock();
        st.metadata = Arc::new(st.metadata.retained(&scope));
        st.tracked = scope;
    }

    /// Marks the metadata stale: the background task refreshes the tracked topics as soon as the
    /// retry backoff since the last refresh allows (the Java client's `Metadata.requestUpdate`).
    pub fn request_refresh(&self) {
        self.inner.lock().stale = true;
        self.inner.wake.notify_one();
    }

    /// If `error_code` (from any response) means the metadata is stale, requests a refresh and
    /// returns `true`. See [`is_stale_metadata_error`].
    pub fn invalidate(&self, error_code: i16) -> bool {
        let stale = is_stale_metadata_error(error_code);
        if stale {
            self.request_refresh();
        }
        stale
    }

    /// How many times the pool went back to `bootstrap.servers`, by cause (see
    /// `metadata.recovery.strategy`).
    pub fn rebootstraps(&self) -> Rebootstraps {
        self.inner.rebootstraps.snapshot()
    }

    /// The rebootstrap counters, to read live without holding the pool.
    pub fn rebootstrap_counter(&self) -> Arc<RebootstrapCounter> {
        self.inner.rebootstraps.clone()
    }

    /// The answers in which a broker throttled one of the pool's connections for a quota
    /// (KIP-219), to read live without holding the pool. Each held its connection's next
    /// request back for the throttle time.
    pub fn throttle_counter(&self) -> Arc<ThrottleCounter> {
        self.inner.watch.throttles()
    }

    /// The error that stopped the pool, if one did: the cluster answering changed
    /// ([`Error::ClusterChanged`]). Every request fails with it from then on.
    pub fn failure(&self) -> Option<Error> {
        // Read on every turn of a consumer: one atomic load, no lock.
        self.inner.stopped.get().cloned()
    }

    /// The API versions broker `id` offered on the last connection made to it.
    pub fn broker_versions(&self, id: i32) -> Option<BrokerVersions> {
        self.inner.lock().versions.get(&id).cloned()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Pool")
            .field("bootstrap_servers", &self.inner.config.bootstrap_servers)
            .field("brokers", &st.metadata.brokers.len())
            .field("metadata_generation", &st.metadata.generation)
            .field("slots", &st.slots.len())
            .finish()
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerTarget {
    /// Any broker: the least loaded open connection, else the first broker that connects; the
    /// bootstrap servers until a Metadata answer has named the brokers.
    Any,
    /// The broker with this id, on its shared connection.
    Broker(i32),
    /// The broker with this id, on a connection of its own for this purpose.
    Dedicated(i32, Purpose),
}

/// Where a machine's request goes on the pool's connections: the coordinator on its own
/// connection (heartbeats and commits never wait behind a fetch), a broker on its shared one.
impl From<&Target> for BrokerTarget {
    fn from(target: &Target) -> BrokerTarget {
        match target {
            Target::Any => BrokerTarget::Any,
            Target::Coordinator(c) => BrokerTarget::Dedicated(c.id, Purpose::Coordinator),
            Target::Broker(id) => BrokerTarget::Broker(*id),
        }
    }
}

/// Why a request needs a connection apart from the broker's shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Group coordination (JoinGroup, SyncGroup, Heartbeat, OffsetCommit): heartbeats must not
    /// wait behind a fetch that the broker holds for `fetch.max.wait.ms`. The Java client does
    /// the same, with a second node id (`Integer.MAX_VALUE - id`) for the coordinator.
    Coordinator,
    /// A consumer's Fetches: a broker answers a connection's requests in order and holds a
    /// Fetch up to `fetch.max.wait.ms`, so the pool's other requests to that broker (metadata,
    /// ListOffsets, a producer sharing the pool with a consumer, admin calls) go on its shared
    /// connection and never wait behind one.
    Fetch,
}

/// Where the connections of one broker (or bootstrap server) and purpose live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SlotKey {
    Bootstrap(usize),
    Broker(i32, Option<Purpose>),
}

struct PoolInner {
    config: PoolConfig,
    /// The wall clock.
    clock: Arc<dyn Clock>,
    /// TLS and SASL settings, loaded from `config` once.
    security: Security,
    /// The maps the connections read large answers into, kept for the next ones.
    spare: Arc<SpareMap>,
    state: Mutex<PoolState>,
    /// What the connections tell of their answers: a broker asked for a rebootstrap.
    watch: Arc<AnswerWatch>,
    /// Rebootstraps, by cause.
    rebootstraps: Arc<RebootstrapCounter>,
    /// What stopped the pool, once something did: every request fails with it. Set under the
    /// pool lock (so a rebootstrap under it sees it), read without.
    stopped: OnceLock<Error>,
    /// Wakes the background task early: a refresh or a rebootstrap was requested.
    wake: Arc<Notify>,
    housekeeping: Mutex<Option<AbortHandle>>,
}

struct PoolState {
    metadata: Arc<Metadata>,
    /// What the periodic and requested refreshes ask about.
    tracked: TopicScope,
    slots: HashMap<SlotKey, Arc<Slot>>,
    versions: HashMap<i32, BrokerVersions>,
    /// Versions each broker address was found to mishandle, kept across its connections.
    step_downs: HashMap<String, Arc<StepDown>>,
    /// The newest Metadata request in flight.
    refresh: Option<InFlightRefresh>,
    next_refresh_id: u64,
    /// A refresh of the tracked topics was requested.
    stale: bool,
    /// Failed refreshes in a row: their backoff (reset only by a refresh that works) and the
    /// WARN line when they go on.
    refresh_tries: FailureTracker,
    /// No background refresh before this: the retry backoff after the last one.
    refresh_not_before: Option<Instant>,
    /// Since when metadata has been wanted and none has come (the Java client's
    /// `metadataAttemptStartMs`): set by the first refresh after a success, and by a
    /// rebootstrap; cleared by a refresh that works. `metadata.recovery.rebootstrap.trigger.ms`
    /// counts from it.
    attempt_started: Option<Instant>,
}

type RefreshResult = Option<Result<Arc<Metadata>>>;

struct InFlightRefresh {
    id: u64,
    scope: TopicScope,
    /// Who it asks for: a request that must ask for creation joins it only if it does.
    auto_create: AutoCreate,
    done: watch::Receiver<RefreshResult>,
}

impl PoolInner {
    /// The pool lock. Held only for short synchronous steps, never across an await. Lock
    /// order, when nested: pool, then a slot's state, then a connection's state (no lock is
    /// taken while holding a later one). A slot's gate (async) is never awaited while holding
    /// any of them. Each step leaves the state consistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn any_connection(&self) -> Result<Connection> {
        let slots = loop {
            let (slots, known) = self.candidate_slots()?;
            if let Some(conn) = slots
                .iter()
                .filter_map(|s| s.open())
                .min_by_key(Connection::in_flight)
            {
                return Ok(conn);
            }
            let now = Instant::now();
            let mut last_error = None;
            for slot in slots.iter().filter(|s| !s.backing_off(now)) {
                match self.connect_slot(slot).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        debug!(peer = %slot.peer, error = %e, "connect failed; trying the next broker");
                        last_error = Some(e);
                    }
                }
            }
            // Every broker the metadata names failed to connect or waits out its reconnect
            // backoff: back to the bootstrap servers (KIP-899), and try them now.
            if let Some(generation) = known
                && self.rebootstrap(RebootstrapCause::Unreachable, Some(generation))
            {
                continue;
            }
            if let Some(e) = last_error {
                return Err(e);
            }
            break slots;
        };
        // Every candidate is backing off: wait for the first to come back.
        match slots.iter().min_by_key(|s| s.not_before()) {
            Some(slot) => self.connect_slot(slot).await,
            None => Err(Error::Config(ConfigError::InvalidValue {
                property: "bootstrap.servers".to_owned(),
                value: String::new(),
                expected: "at least one host:port",
            })),
        }
    }

    /// The slots `Any` may use, in the order to try them: the advertised brokers from a random
    /// one on (spreading clients, as `leastLoadedNode`'s random offset does), with the
    /// generation of the metadata naming them, or the bootstrap servers in the configured
    /// order. The pool's failure, once it has one.
    fn candidate_slots(&self) -> Result<(Vec<Arc<Slot>>, Option<u64>)> {
        let mut st = self.lock();
        self.refuse_if_stopped()?;
        if st.metadata.brokers.is_empty() {
            let slots = self
                .config
                .bootstrap_servers
                .iter()
                .enumerate()
                .map(|(i, address)| {
                    st.slot(SlotKey::Bootstrap(i), Peer::bootstrap(address.as_str()))
                })
                .collect();
            return Ok((slots, None));
        }
        let mut brokers: Vec<(i32, String)> = st
            .metadata
            .brokers
            .values()
            .map(|b| (b.id, b.address()))
            .collect();
        let start = fastrand::usize(..brokers.len());
        brokers.rotate_left(start);
        let generation = st.metadata.generation;
        let slots = brokers
            .into_iter()
            .map(|(id, address)| st.slot(SlotKey::Broker(id, None), Peer::broker(id, address)))
            .collect();
        Ok((slots, Some(generation)))
    }

    /// Goes back to the bootstrap servers, if `metadata.recovery.strategy` says to: closes
    /// every connection, forgets the brokers (topics and leader epochs stay), and has the
    /// background task ask for the metadata at once. `known`: only if the metadata still names
    /// the brokers of that generation (callers that found the same brokers unreachable
    /// rebootstrap once). Whether it did.
    fn rebootstrap(&self, cause: RebootstrapCause, known: Option<u64>) -> bool {
        if self.config.metadata_recovery_strategy != MetadataRecoveryStrategy::Rebootstrap {
            return false;
        }
        let slots = {
            let mut st = self.lock();
            if self.stopped.get().is_some() {
                return false;
            }
            if let Some(generation) = known
                && (st.metadata.brokers.is_empty() || st.metadata.generation != generation)
            {
                return false;
            }
            st.metadata = Arc::new(st.metadata.without_brokers());
            st.attempt_started = Some(Instant::now());
            st.stale = true;
            st.refresh_not_before = None;
            std::mem::take(&mut st.slots)
        };
        self.rebootstraps.count(cause);
        warn!(
            cause = cause.name(),
            bootstrap_servers = %self.config.bootstrap_servers.join(","),
            "rebootstrapping: {cause}; every connection is closed and the cluster's metadata is \
             asked of bootstrap.servers again (metadata.recovery.strategy=rebootstrap)"
        );
        close_all(slots);
        self.wake.notify_one();
        true
    }

    /// The error that stopped the pool, if one did.
    fn refuse_if_stopped(&self) -> Result<()> {
        match self.stopped.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn broker_connection(
        self: &Arc<Self>,
        id: i32,
        purpose: Option<Purpose>,
    ) -> Result<Connection> {
        self.refuse_if_stopped()?;
        let slot = match self.broker_slot(id, purpose) {
            Some(slot) => slot,
            None => {
                // Not in the metadata (yet): refresh once before giving up on it, as the Java
                // client does for a node it does not know.
                let tracked = self.lock().tracked.clone();
                self.refresh(tracked, AutoCreate::Configured).await?;
                self.broker_slot(id, purpose)
                    .ok_or(Error::UnknownBroker { id })?
            }
        };
        self.connect_slot(&slot).await
    }

    fn broker_slot(&self, id: i32, purpose: Option<Purpose>) -> Option<Arc<Slot>> {
        let mut st = self.lock();
        let address = st.metadata.broker(id)?.address();
        Some(st.slot(SlotKey::Broker(id, purpose), Peer::broker(id, address)))
    }

    /// The slot's connection, made if it has none open: one caller connects, the others wait
    /// for it (the gate) and share the result.
    async fn connect_slot(&self, slot: &Slot) -> Result<Connection> {
        if let Some(conn) = slot.open() {
            return Ok(conn);
        }
        let _gate = slot.gate.lock().await;
        if let Some(conn) = slot.open() {
            return Ok(conn);
        }
        let policy = self.config.reconnect_backoff_policy();
        if let Some(not_before) = slot.backoff_until(&policy) {
            time::sleep_until(not_before).await;
        }
        let step_down = self
            .lock()
            .step_downs
            .entry(slot.peer.address.clone())
            .or_insert_with(|| Arc::new(StepDown::new(slot.peer.clone())))
            .clone();
        let connected = Connection::connect_secured(
            slot.peer.clone(),
            &self.config,
            &self.security,
            Some(&step_down),
            Some(&self.watch),
            &self.spare,
        )
        .await;
        match connected {
            Ok(conn) => {
                slot.connected(conn.clone());
                if let Some(id) = slot.peer.id {
                    self.lock().versions.insert(id, conn.versions().clone());
                }
                // The background task schedules the new connection's idle close.
                self.wake.notify_one();
                Ok(conn)
            }
            Err(e) => {
                slot.failed(&policy);
                step_down.connect_failed();
                Err(e)
            }
        }
    }

    /// Joins the refresh in flight if it covers `scope`, else starts one, and waits for it.
    async fn refresh(
        self: &Arc<Self>,
        scope: TopicScope,
        auto_create: AutoCreate,
    ) -> Result<Arc<Metadata>> {
        let mut done = {
            let mut st = self.lock();
            let configured = self.config.allow_auto_create_topics;
            match &st.refresh {
                Some(r)
                    if r.scope.covers(&scope)
                        && (r.auto_create.asks(configured) || !auto_create.asks(configured)) =>
                {
                    r.done.clone()
                }
                _ => self.start_refresh(&mut st, scope, auto_create),
            }
        };
        // The Metadata request runs in a task of its own, so a caller that stops waiting does
        // not cancel it for the others.
        match done.wait_for(Option::is_some).await {
            Ok(result) => result.clone().unwrap_or(Err(Error::Stopped)),
            Err(_) => Err(Error::Stopped),
        }
    }

    fn start_refresh(
        self: &Arc<Self>,
        st: &mut PoolState,
        scope: TopicScope,
        auto_create: AutoCreate,
    ) -> watch::Receiver<RefreshResult> {
        let (tx, rx) = watch::channel(None);
        let id = st.next_refresh_id;
        st.next_refresh_id += 1;
        st.refresh = Some(InFlightRefresh {
            id,
            scope: scope.clone(),
            auto_create,
            done: rx.clone(),
        });
        let inner = self.clone();
        tokio::spawn(async move {
            let result = inner.fetch_metadata(&scope, auto_create).await;
            inner.finish_refresh(id, &scope, &result);
            // Fails only when every receiver is gone: no caller waits for this refresh any
            // more, and the pool has its outcome already (the new snapshot, or the failure
            // and its backoff).
            let _ = tx.send(Some(result));
        });
        rx
    }

    async fn fetch_metadata(
        &self,
        scope: &TopicScope,
        auto_create: AutoCreate,
    ) -> Result<Arc<Metadata>> {
        self.lock().attempt_started.get_or_insert_with(Instant::now);
        let conn = self.any_connection().await?;
        let version = conn.version(ApiKey::Metadata)?;
        let allow = auto_create.asks(self.config.allow_auto_create_topics);
        let request = metadata_request(scope, version, allow);
        let answer = conn.send(&request).await?;
        let peer = conn.peer().clone();
        if answer.error_code != 0 {
            // v13's top-level error: REBOOTSTRAP_REQUIRED (KIP-1102) is acted on at once; the
            // answer carries no metadata either way.
            if answer.error_code == REBOOTSTRAP_REQUIRED {
                self.rebootstrap(RebootstrapCause::Required, None);
            }
            return Err(Error::Broker {
                peer,
                api_key: ApiKey::Metadata as i16,
                error_code: answer.error_code,
            });
        }
        if answer.brokers.is_empty() {
            // Every broker answers with the live brokers, itself included: an empty list is a
            // broker starting up or in trouble. Taking it would leave the pool nobody to ask.
            return Err(Error::NoBrokers { peer });
        }
        let now = Instant::now();
        let (snapshot, retired) = {
            let mut st = self.lock();
            if let (Some(known), Some(found)) = (&st.metadata.cluster_id, &answer.cluster_id)
                && known.as_str() != found.as_str()
            {
                let e = Error::ClusterChanged {
                    peer,
                    known: known.clone(),
                    found: found.to_string(),
                };
                let _ = self.stopped.set(e.clone());
                let slots = std::mem::take(&mut st.slots);
                drop(st);
                error!(error = %e, "the pool stops");
                close_all(slots);
                return Err(e);
            }
            let merged = Arc::new(st.metadata.merged(&answer, scope, version >= 9, now));
            st.metadata = merged.clone();
            st.attempt_started = None;
            (merged, st.retire_moved())
        };
        // Dropped outside the lock: a connection's last handle closes it.
        for slot in retired {
            debug!(peer = %slot.peer, "broker left or moved: retiring its connection");
        }
        Ok(snapshot)
    }

    fn finish_refresh(&self, id: u64, scope: &TopicScope, result: &Result<Arc<Metadata>>) {
        let mut st = self.lock();
        if st.refresh.as_ref().is_some_and(|r| r.id == id) {
            st.refresh = None;
        }
        let policy = self.config.retry_backoff_policy();
        let now = Instant::now();
        let mut overdue = false;
        match result {
            Ok(_) => {
                if scope.covers(&st.tracked) {
                    st.stale = false;
                }
                // Any broker may have answered: the recovery names none.
                st.refresh_tries.succeeded_by(now.into_std(), None);
                // Even after a success, the next background refresh waits a retry backoff
                // (Java's `Metadata.timeToAllowUpdate`): a burst of stale-leader errors must
                // not become a burst of Metadata requests.
                st.refresh_not_before = Some(now + policy.delay_random(0));
            }
            Err(e) => {
                debug!(error = %e, failures = st.refresh_tries.failures() + 1, "metadata refresh failed");
                let failure = RequestFailure::from(e.clone());
                let failed = st
                    .refresh_tries
                    .failed(now.into_std(), &failure, fastrand::f64());
                st.refresh_not_before = Some(now + failed.delay);
                // Retried by the background task after the backoff.
                st.stale = true;
                overdue = st.attempt_started.is_some_and(|since| {
                    now.duration_since(since) > self.config.metadata_recovery_rebootstrap_trigger
                });
            }
        }
        drop(st);
        if overdue {
            self.rebootstrap(RebootstrapCause::NoMetadata, None);
        }
        // The background task schedules the next refresh from this one.
        self.wake.notify_one();
    }

    /// Refreshes the metadata if due, closes idle connections.
    async fn housekeep(self: &Arc<Self>) {
        if self.watch.take_required() {
            self.rebootstrap(RebootstrapCause::Required, None);
        }
        let now = Instant::now();
        let due = {
            let st = self.lock();
            st.refresh_due(&self.config, now)
                .then(|| st.tracked.clone())
        };
        if let Some(scope) = due {
            // A failure is recorded by `finish_refresh` and retried after the backoff.
            let _ = self.refresh(scope, AutoCreate::Configured).await;
        }
        let idle = self.close_idle(Instant::now());
        drop(idle);
    }

    /// When the background task should next look: a refresh due, an idle connection to close.
    fn next_housekeeping(&self, now: Instant) -> Instant {
        let st = self.lock();
        let mut next = now + HOUSEKEEPING_MAX_SLEEP;
        if let Some(at) = st.refresh_at(&self.config, now) {
            next = next.min(at);
        }
        let max_idle = self.config.connections_max_idle;
        if !max_idle.is_zero() {
            for slot in st.slots.values() {
                if let Some(at) = slot.idle_deadline(now, max_idle) {
                    next = next.min(at);
                }
            }
        }
        next.max(now)
    }

    /// Takes out of their slots the connections idle for `connections.max.idle.ms` (the Java
    /// client's `Selector.maybeCloseOldestConnection`), and returns them to be dropped.
    fn close_idle(&self, now: Instant) -> Vec<Connection> {
        let max_idle = self.config.connections_max_idle;
        if max_idle.is_zero() {
            return Vec::new();
        }
        let st = self.lock();
        st.slots
            .values()
            .filter_map(|slot| {
                let conn = slot.take_if_idle(now, max_idle)?;
                debug!(peer = %slot.peer, "closing idle connection");
                Some(conn)
            })
            .collect()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        let task = self
            .housekeeping
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Closes the connections of `slots`, taken out of the pool (outside the pool lock): requests in
/// flight on them fail, and their callers retry them as after a lost connection.
fn close_all(slots: HashMap<SlotKey, Arc<Slot>>) {
    for slot in slots.values() {
        if let Some(conn) = slot.take() {
            conn.close();
        }
    }
}

/// The longest the background task sleeps without looking.
const HOUSEKEEPING_MAX_SLEEP: Duration = Duration::from_secs(3600);

impl PoolState {
    /// The state of a new pool: no metadata, no connections, nothing tracked; failed refreshes
    /// back off by `retry`.
    fn new(retry: ExponentialBackoff) -> PoolState {
        PoolState {
            metadata: Arc::new(Metadata::default()),
            tracked: TopicScope::none(),
            slots: HashMap::new(),
            versions: HashMap::new(),
            step_downs: HashMap::new(),
            refresh: None,
            next_refresh_id: 0,
            stale: false,
            refresh_tries: FailureTracker::new(
                kcon_codec::kafka_protocol::messages::ApiKey::Metadata,
                "the cluster metadata",
                retry,
            ),
            refresh_not_before: None,
            attempt_started: None,
        }
    }

    /// The slot for `key`, made if missing. A slot whose peer differs (the broker moved to a new
    /// address) is replaced: its connection is retired.
    fn slot(&mut self, key: SlotKey, peer: Peer) -> Arc<Slot> {
        match self.slots.get(&key) {
            Some(slot) if slot.peer == peer => slot.clone(),
            _ => {
                let slot = Arc::new(Slot::new(peer));
                self.slots.insert(key, slot.clone());
                slot
            }
        }
    }

    /// Removes the slots the metadata no longer backs: brokers gone or moved (same id, new
    /// address, which the Java client follows by closing the old connection), and the
    /// bootstrap servers once the advertised brokers are known.
    fn retire_moved(&mut self) -> Vec<Arc<Slot>> {
        let brokers = &self.metadata.brokers;
        let mut retired = Vec::new();
        self.slots.retain(|key, slot| {
            let keep = match key {
                SlotKey::Bootstrap(_) => brokers.is_empty(),
                SlotKey::Broker(id, _) => brokers
                    .get(id)
                    .is_some_and(|b| b.address() == slot.peer.address),
            };
            if !keep {
                retired.push(slot.clone());
            }
            keep
        });
        retired
    }

    /// When the background task should refresh the metadata, if it should; `now` when at once.
    fn refresh_at(&self, config: &PoolConfig, now: Instant) -> Option<Instant> {
        let at = if self.stale {
            self.refresh_not_before
        } else {
            // Only periodic once there is metadata: before, nothing asked for any.
            let updated = self.metadata.updated_at()?;
            Some(updated + config.metadata_max_age)
        };
        match (at, self.refresh_not_before) {
            (Some(at), Some(not_before)) => Some(at.max(not_before)),
            (Some(at), None) => Some(at),
            // Stale and never refreshed, or just rebootstrapped: now.
            (None, _) => Some(now),
        }
    }

    fn refresh_due(&self, config: &PoolConfig, now: Instant) -> bool {
        self.refresh_at(config, now).is_some_and(|at| at <= now)
    }
}

/// The connection of one broker (or bootstrap server) and purpose, and its reconnect state.
struct Slot {
    peer: Peer,
    /// Held while connecting, so that one caller connects and the others wait for it.
    gate: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

struct SlotState {
    conn: Option<Connection>,
    /// Connection losses and failed connects since the last success.
    failures: u32,
    /// No connect before this.
    not_before: Option<Instant>,
}

impl Slot {
    fn new(peer: Peer) -> Slot {
        Slot {
            peer,
            gate: tokio::sync::Mutex::new(()),
            state: Mutex::new(SlotState {
                conn: None,
                failures: 0,
                not_before: None,
            }),
        }
    }

    /// The slot's lock: short synchronous steps only; after the pool's and before a
    /// connection's when nested (see `PoolInner::lock`).
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> Option<Connection> {
        self.lock().conn.clone().filter(|c| !c.is_closed())
    }

    fn not_before(&self) -> Option<Instant> {
        self.lock().not_before
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.not_before().is_some_and(|t| t > now)
    }

    /// Takes out a dead connection and starts the reconnect backoff from its death (the Java
    /// client's `ClusterConnectionStates.disconnected`); returns when a connect may start.
    fn backoff_until(&self, policy: &ExponentialBackoff) -> Option<Instant> {
        let mut st = self.lock();
        if let Some(dead) = st.conn.take() {
            let died = dead.closed_at().unwrap_or_else(Instant::now);
            let until = died + policy.delay_random(st.failures);
            st.failures = st.failures.saturating_add(1);
            st.not_before = Some(st.not_before.map_or(until, |t| t.max(until)));
        }
        st.not_before.filter(|&t| t > Instant::now())
    }

    /// Takes the slot's connection out, open or not.
    fn take(&self) -> Option<Connection> {
        self.lock().conn.take()
    }

    fn connected(&self, conn: Connection) {
        let mut st = self.lock();
        st.conn = Some(conn);
        st.failures = 0;
        st.not_before = None;
    }

    fn failed(&self, policy: &ExponentialBackoff) {
        let mut st = self.lock();
        st.not_before = Some(Instant::now() + policy.delay_random(st.failures));
        st.failures = st.failures.saturating_add(1);
    }

    /// When the slot's connection would be idle long enough to close, counting one busy now
    /// as busy until now; `None` without an open connection.
    fn idle_deadline(&self, now: Instant, max_idle: Duration) -> Option<Instant> {
        let st = self.lock();
        let conn = st.conn.as_ref().filter(|c| !c.is_closed())?;
        Some(conn.idle_since().unwrap_or(now) + max_idle)
    }

    fn take_if_idle(&self, now: Instant, max_idle: Duration) -> Option<Connection> {
        let mut st = self.lock();
        let since = st.conn.as_ref()?.idle_since()?;
        if now < since + max_idle {
            return None;
        }
        st.conn.take()
    }
}

/// The pool's background task: refreshes the metadata when due and closes idle connections,
/// until the pool is dropped.
async fn housekeeping(pool: Weak<PoolInner>, wake: Arc<Notify>) {
    loop {
        let next = match pool.upgrade() {
            Some(inner) => inner.next_housekeeping(Instant::now()),
            None => return,
        };
        tokio::select! {
            () = time::sleep_until(next) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = pool.upgrade() else {
            return;
        };
        inner.housekeep().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_a_moved_broker() {
        let mut st = PoolState::new(ExponentialBackoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
        ));
        let a = st.slot(SlotKey::Broker(1, None), Peer::broker(1, "a:1"));
        let same = st.slot(SlotKey::Broker(1, None), Peer::broker(1, "a:1"));
        assert!(Arc::ptr_eq(&a, &same));
        let moved = st.slot(SlotKey::Broker(1, None), Peer::broker(1, "b:1"));
        assert!(!Arc::ptr_eq(&a, &moved));
        assert_eq!(st.slots.len(), 1);
    }
}
