//! Support for kcon-pool's tests against real brokers (`tests/pool_kafka.rs`,
//! `tests/pool_cluster.rs`, `tests/pool_mock.rs`): configs, requests whose answers say which request they answer, and
//! the scenarios both files play: bootstrap past a dead address, version negotiation, request
//! timeouts, pipelining, cancellation, and a broker going away and coming back.
//!
//! The scenarios take a [`Connection`] or a [`Pool`] (and, where the brokers differ, what the
//! caller expects of its broker) and know nothing of the broker otherwise, so the same
//! assertions run against Apache Kafka and against librdkafka's mock cluster. Each test file says,
//! where it calls them, how its broker plays its part.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::{Future, poll_fn};
use std::net::{SocketAddr, TcpListener};
use std::ops::RangeInclusive;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::{Request, StrBytes};
use kcon_codec::versions::SUPPORTED;
use kcon_core::{ExponentialBackoff, TopicId};
use kcon_pool::{
    BrokerTarget, Connection, Error, Peer, Pool, PoolConfig, TopicScope, TransportError,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

use crate::blocking::BlockingConnection;
use crate::brokers::unique_name;

/// UNKNOWN_TOPIC_OR_PARTITION: what both brokers answer for a topic that does not exist when
/// auto-creation is off.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// A pool configuration with `bootstrap` (a comma-separated `host:port` list) and the rest at
/// the defaults.
pub fn config(bootstrap: &str) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.set("bootstrap.servers", bootstrap)
        .unwrap_or_else(|e| panic!("bootstrap list {bootstrap:?}: {e}"));
    c
}

/// A loopback address where nothing listens: a port bound and released, so a connect to it is
/// refused at once (the kernel answers with a reset; no timeout is involved).
pub fn dead_address() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("a bound listener has an address")
}

/// Whether `e` is a refused connect: what a dead address, or a broker that is down, answers.
pub fn is_refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Transport { kind: TransportError::Io(io), .. }
            if io.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Whether `e` is the loss of a connection the broker closed (EOF or reset), which is what a
/// broker going down or dropping a connection looks like.
pub fn is_connection_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::Transport {
            kind: TransportError::Closed
                | TransportError::ClosedMidFrame { .. }
                // A connection that answered nothing since its setup, closed with a Metadata
                // request waiting, is told as what a SASL listener does; a broker going down
                // right after the setup is told the same way (kcon-pool's `is_closed` counts
                // it as closed too).
                | TransportError::ClosedAtFirstRequest { .. }
                | TransportError::Io(_),
            ..
        }
    )
}

/// A Metadata request for `topics` that must not create them: the answer then names each topic
/// asked for, existing or not, which makes it tell which request it answers.
pub fn metadata_request(topics: &[&str]) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*t).to_owned()))))
                })
                .collect(),
        ))
        .with_allow_auto_topic_creation(false)
}

/// The one topic of a Metadata answer: its name, error code and partition count. Panics if the
/// answer has another number of topics.
pub fn only_topic(answer: &MetadataResponse) -> (String, i16, usize) {
    assert_eq!(answer.topics.len(), 1, "{answer:?}");
    let t = &answer.topics[0];
    let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
    (name, t.error_code, t.partitions.len())
}

/// Checks that a Metadata answer is the one for `topic`: same name, and either its
/// `partitions` with no error, or UNKNOWN_TOPIC_OR_PARTITION when `partitions` is `None`.
pub fn assert_answers(answer: &MetadataResponse, topic: &str, partitions: Option<usize>) {
    let (name, error_code, count) = only_topic(answer);
    assert_eq!(name, topic, "an answer for another request");
    match partitions {
        Some(n) => assert_eq!((error_code, count), (0, n), "{topic}"),
        None => assert_eq!(error_code, UNKNOWN_TOPIC_OR_PARTITION, "{topic}"),
    }
}

/// The bootstrap scenario: a pool bootstrapped from a dead address followed by `bootstrap`
/// skips the dead one at once and fetches the cluster metadata from the live one.
///
/// The metadata must advertise brokers at the `advertised` addresses (in id order) and a
/// cluster id; then `Any`, and each advertised broker by its id, must answer. Returns the
/// advertised brokers' ids, in order.
pub async fn assert_bootstrap_skips_a_dead_first_address(
    bootstrap: &str,
    advertised: &[String],
) -> Vec<i32> {
    let dead = dead_address();
    // Alone, the dead address gets nowhere: refused at once.
    let alone = Pool::new(config(&dead.to_string())).unwrap();
    let e = alone
        .refresh_metadata(TopicScope::none())
        .await
        .unwrap_err();
    assert!(is_refused(&e), "{e:?}");
    let mut c = config(&format!("{dead},{bootstrap}"));
    // Refused, not timed out: the dead address costs nothing like this setup timeout.
    c.socket_connection_setup_timeout = Duration::from_secs(5);
    let pool = Pool::new(c).unwrap();
    let started = Instant::now();
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (ids, addresses): (Vec<i32>, Vec<String>) =
        m.brokers.values().map(|b| (b.id, b.address())).unzip();
    assert_eq!(addresses, advertised, "{m:?}");
    assert!(m.cluster_id.is_some(), "{m:?}");
    // From now on `Any` means an advertised broker, and every one of them answers.
    let topic = unique_name("absent");
    let targets =
        std::iter::once(BrokerTarget::Any).chain(ids.iter().map(|&id| BrokerTarget::Broker(id)));
    for target in targets {
        let answer = pool
            .send(target, &metadata_request(&[&topic]))
            .await
            .unwrap();
        assert_answers(&answer, &topic, None);
    }
    ids
}

/// Sends broker `id` a Metadata request for a topic that does not exist, checks that the answer
/// is its own and that the connection the pool then holds for `id` is open, and returns how
/// long the answer took (connecting first, if the pool had no open connection to `id`).
pub async fn assert_answered_again(pool: &Pool, id: i32) -> Duration {
    let started = Instant::now();
    let topic = unique_name("absent");
    let answer = pool
        .send(BrokerTarget::Broker(id), &metadata_request(&[&topic]))
        .await
        .unwrap();
    assert_answers(&answer, &topic, None);
    let took = started.elapsed();
    let fresh = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    assert!(!fresh.is_closed(), "{:?}", fresh.close_reason());
    took
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The version kcon should send `api` at to a broker offering `theirs`: the highest in both
/// ranges, and SyncGroup at v3 at most unless both sides' lowest is higher (v4 crashes
/// librdkafka's mock; see `kcon_codec::versions::SENT_AT_MOST`). Written out here, apart from
/// `kcon_codec::versions::negotiate`, so that the tests check the pool against the rule rather
/// than against its own code.
pub fn expected_version(api: ApiKey, ours: (i16, i16), theirs: Option<(i16, i16)>) -> Option<i16> {
    let (min, max) = theirs?;
    let lowest = min.max(ours.0);
    let mut v = max.min(ours.1);
    if api == ApiKey::SyncGroup {
        v = v.min(3.max(lowest));
    }
    (v >= lowest).then_some(v)
}

/// Checks every API kcon speaks on `conn`: the version it sends at is the highest both sides
/// speak, and an API without a common version is refused as unsupported, naming both ranges.
/// Returns `(api, version)` for the APIs that have one.
pub fn assert_negotiated(conn: &Connection) -> BTreeMap<i16, i16> {
    let mut negotiated = BTreeMap::new();
    for &(api, min, max) in SUPPORTED {
        let theirs = conn.versions().offered(api);
        match (expected_version(api, (min, max), theirs), conn.version(api)) {
            (Some(want), Ok(got)) => {
                assert_eq!(got, want, "{api:?}: kcon v{min}-v{max}, broker {theirs:?}");
                negotiated.insert(api as i16, got);
            }
            (
                None,
                Err(Error::Unsupported {
                    api_key,
                    ours,
                    theirs: named,
                    ..
                }),
            ) => {
                assert_eq!((api_key, ours, named), (api as i16, (min, max), theirs));
            }
            (want, got) => panic!("{api:?}: expected {want:?}, got {got:?} (broker {theirs:?})"),
        }
    }
    negotiated
}

/// Checks the versions `pool` negotiated with broker `id`, listening at `addr`: what the pool
/// learned is what the broker says to an independent client (the blocking one, which decodes
/// ApiVersions on its own path), every API is negotiated as [`assert_negotiated`] requires, and
/// the APIs in `pinned` at exactly the versions given. Returns the pool's connection to `id`.
pub async fn assert_versions_of(
    pool: &Pool,
    id: i32,
    addr: SocketAddr,
    pinned: &[(ApiKey, i16)],
) -> Connection {
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let independent = BlockingConnection::connect(addr).unwrap();
    assert_eq!(
        pool.broker_versions(id).as_ref(),
        Some(independent.versions())
    );
    assert_eq!(conn.versions(), independent.versions());
    let negotiated = assert_negotiated(&conn);
    for &(api, version) in pinned {
        assert_eq!(
            negotiated.get(&(api as i16)),
            Some(&version),
            "broker {id} {api:?}"
        );
    }
    conn
}

/// The request-timeout scenario: sends `request` to broker `id`, which the caller has made
/// answer it only after `slow` (longer than the pool's `request.timeout.ms`), on the connection
/// the pool holds for `id`. The request must fail, retriably, with a request timeout after
/// `request.timeout.ms` and before `slow`.
pub async fn assert_request_times_out<R: Request + 'static>(
    pool: &Pool,
    id: i32,
    request: &R,
    slow: Duration,
) where
    R::Response: 'static,
{
    let timeout = pool.config().request_timeout;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let started = Instant::now();
    let e = pool
        .send(BrokerTarget::Broker(id), request)
        .await
        .map(|_| ())
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            &e,
            Error::Transport { kind: TransportError::RequestTimeout { api_key, timeout: t }, .. }
                if *api_key == R::KEY && *t == timeout
        ),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert!(took >= timeout && took < slow, "{took:?}");
    // The request was on the wire: its connection is closed, since a late answer could no
    // longer be told apart.
    assert!(conn.is_closed());
    assert!(matches!(
        conn.close_reason(),
        Some(Error::Transport {
            kind: TransportError::RequestTimeout { .. },
            ..
        })
    ));
}

/// Polls every future in turn until all are done, like `futures::future::join_all`, calling
/// `after_first_round` once every future has been polled once.
///
/// On a current-thread runtime no other task runs during that first round, so the hook sees
/// the state right after every request was handed to the connection and before any answer
/// could be read.
pub async fn join_all<F: Future>(
    futures: Vec<F>,
    mut after_first_round: impl FnMut(),
) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut first = true;
    poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none()
                && let Poll::Ready(v) = future.as_mut().poll(cx)
            {
                *output = Some(v);
            }
        }
        if std::mem::take(&mut first) {
            after_first_round();
        }
        if outputs.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// Sends one Metadata request per name on `conn`, all at once, and returns how many requests
/// were in flight right after all were handed to the connection, and the answers in order.
async fn send_at_once(
    conn: &Connection,
    names: &[String],
) -> (usize, Vec<kcon_pool::Result<MetadataResponse>>) {
    let requests: Vec<MetadataRequest> = names.iter().map(|n| metadata_request(&[n])).collect();
    let mut in_flight = 0;
    // Unconstrained: tokio's cooperative budget would otherwise make the semaphore refuse a
    // slot after ~128 operations in one poll (to be retried at once), which says nothing about
    // the connection, only about the budget of this task.
    let answers = tokio::task::unconstrained(join_all(
        requests.iter().map(|r| conn.send(r)).collect(),
        || in_flight = conn.in_flight(),
    ))
    .await;
    (in_flight, answers)
}

/// Sends one Metadata request per name on `conn`, all at once (the connection's
/// `max.in.flight.requests.per.connection` must allow them), and checks that every answer is
/// the one for its own request: `partitions` gives the partition count of the names that
/// exist; the others must come back as unknown topics.
///
/// Returns how many requests were in flight right after all were handed to the connection (on
/// a current-thread runtime: all of them, since no answer can have been read yet).
pub async fn assert_pipelined_metadata(
    conn: &Connection,
    names: &[String],
    partitions: &BTreeMap<String, usize>,
) -> usize {
    let (in_flight, answers) = send_at_once(conn, names).await;
    for (name, answer) in names.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("Metadata for {name}: {e}"));
        assert_answers(&answer, name, partitions.get(name).copied());
    }
    assert_eq!(conn.in_flight(), 0, "every answer frees its slot");
    assert!(!conn.is_closed(), "{:?}", conn.close_reason());
    in_flight
}

/// Checks that no in-flight slot of `conn` was lost: sends `requests` Metadata requests at
/// once, and requires `in_flight` of them (with those the caller already has in flight) to be
/// on the wire together right after they were handed over, then each answer to be its own.
///
/// The caller must make sure the broker cannot answer during that moment (Kafka holding a
/// Fetch ahead of them, or a mock RTT), and that `in_flight` is the connection's
/// `max.in.flight.requests.per.connection`, so that a slot kept by a finished or cancelled
/// request shows as a request left waiting.
pub async fn assert_slots_usable(
    conn: &Connection,
    prefix: &str,
    requests: usize,
    in_flight: usize,
) {
    let names: Vec<String> = (0..requests)
        .map(|i| format!("{prefix}-slot-{i}"))
        .collect();
    let (seen, answers) = send_at_once(conn, &names).await;
    assert_eq!(seen, in_flight, "in-flight slots were lost");
    for (name, answer) in names.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("Metadata for {name}: {e}"));
        assert_answers(&answer, name, None);
    }
}

/// The topics of the pipelining scenario that exist: `<prefix>-1p` to `<prefix>-4p`, with 1 to
/// 4 partitions, for the caller to create.
pub fn pipelined_topics(prefix: &str) -> Vec<(String, usize)> {
    (1..=4).map(|n| (format!("{prefix}-{n}p"), n)).collect()
}

/// The pipelining scenario: 1,000 Metadata requests on `conn` at once (its
/// `max.in.flight.requests.per.connection` must be 1,000, and the runtime a current-thread
/// one), each answered with its own answer ([`assert_pipelined_metadata`]), all of them in
/// flight together. Returns how long they took, which it also prints, naming `broker`.
///
/// Most names don't exist (the answer names them with UNKNOWN_TOPIC_OR_PARTITION); the four of
/// `existing` ([`pipelined_topics`], created) exist with 1 to 4 partitions, so those answers
/// differ in content too.
pub async fn assert_thousand_pipelined(
    conn: &Connection,
    prefix: &str,
    existing: &[(String, usize)],
    broker: &str,
) -> Duration {
    let names: Vec<String> = (0..1000)
        .map(|i| match i % 250 {
            7 => existing[i / 250].0.clone(),
            _ => format!("{prefix}-absent-{i}"),
        })
        .collect();
    let partitions: BTreeMap<String, usize> = existing.iter().cloned().collect();
    let started = Instant::now();
    let in_flight = assert_pipelined_metadata(conn, &names, &partitions).await;
    let took = started.elapsed();
    eprintln!("1000 pipelined Metadata requests to {broker}: {took:?}");
    assert_eq!(
        in_flight, 1000,
        "the requests were not all on the wire at once"
    );
    took
}

/// When a request of the cancellation scenario is given up.
#[derive(Debug, Clone, Copy)]
pub enum Cancel {
    /// Never: the request runs to its answer.
    Never,
    /// After this many polls, yielding to the runtime between them rather than waiting for the
    /// answer: before the request has a slot, or just after it was handed to the writer.
    AfterPolls(u8),
    /// After this many microseconds (`tokio::time::timeout`, so rounded up to the timer's
    /// millisecond): anywhere, mostly while the request is on the wire.
    AfterMicros(u16),
}

/// Cancellation points for the property: a third run to completion, the rest dropped after a
/// few polls or a tiny timeout.
pub fn cancel_strategy() -> impl Strategy<Value = Cancel> {
    prop_oneof![
        Just(Cancel::Never),
        (1u8..5).prop_map(Cancel::AfterPolls),
        (0u16..3000).prop_map(Cancel::AfterMicros),
    ]
}

/// Polls `future` `polls` times, waking itself at once after each (a yield, not a wait for the
/// answer), then drops it.
async fn poll_then_drop<F: Future>(future: F, polls: u8) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut n = 0;
    poll_fn(|cx| {
        if n == polls {
            return Poll::Ready(None);
        }
        n += 1;
        match future.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    })
    .await
}

/// What the cancellation scenario saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelOutcome {
    /// Requests that ran to their answer (each checked to be its own).
    pub answered: usize,
    /// Requests given up before their answer.
    pub cancelled: usize,
    /// Requests given up while on the wire and still unanswered once every cancellable request
    /// had ended (a lower bound of those cancelled mid-flight: others may have been answered,
    /// and their answers thrown away, before the count).
    pub orphaned: usize,
}

/// The cancellation scenario, on `conn`: one Metadata request per entry of `cancels`, for topic
/// `<prefix>-<index>`, each given up as its entry says.
///
/// First every request that may be cancelled is sent, all at once; once they have all ended,
/// the requests still in flight beyond `held` (requests the caller keeps in flight on `conn`
/// meanwhile, such as one the broker holds so that the others queue behind it on the wire)
/// can only be cancelled ones still on the wire: [`CancelOutcome::orphaned`]. Then the
/// requests never cancelled are sent, all at once, behind those orphans, whose answers must be
/// thrown away rather than delivered to them.
///
/// Every request that runs to its answer must get the answer for its own topic. Afterwards the
/// connection must still be open, must answer one more request correctly, and must get every
/// in-flight slot back within 5 s (cancelled requests hold theirs until the broker answers
/// them; the caller's `held` requests must be answered by then too).
pub async fn cancel_scenario(
    conn: &Connection,
    prefix: &str,
    cancels: &[Cancel],
    held: usize,
) -> CancelOutcome {
    let run = |wanted: fn(&Cancel) -> bool| {
        let mut tasks = JoinSet::new();
        for (i, &cancel) in cancels.iter().enumerate().filter(|(_, c)| wanted(c)) {
            let conn = conn.clone();
            let topic = format!("{prefix}-{i}");
            tasks.spawn(async move {
                let request = metadata_request(&[&topic]);
                let send = conn.send(&request);
                let outcome = match cancel {
                    Cancel::Never => Some(send.await),
                    Cancel::AfterPolls(n) => poll_then_drop(send, n).await,
                    Cancel::AfterMicros(us) => {
                        tokio::time::timeout(Duration::from_micros(u64::from(us)), send)
                            .await
                            .ok()
                    }
                };
                let Some(answer) = outcome else {
                    return false;
                };
                let answer = answer.unwrap_or_else(|e| panic!("Metadata for {topic}: {e}"));
                assert_answers(&answer, &topic, None);
                true
            });
        }
        tasks
    };
    let (mut answered, mut cancelled) = (0, 0);
    let mut count = |joined: Result<bool, tokio::task::JoinError>| match joined {
        Ok(true) => answered += 1,
        Ok(false) => cancelled += 1,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let mut cancellable = run(|c| !matches!(c, Cancel::Never));
    while let Some(joined) = cancellable.join_next().await {
        count(joined);
    }
    let orphaned = conn.in_flight().saturating_sub(held);
    let mut never = run(|c| matches!(c, Cancel::Never));
    while let Some(joined) = never.join_next().await {
        count(joined);
    }
    let topic = format!("{prefix}-after");
    let answer = conn
        .send(&metadata_request(&[&topic]))
        .await
        .unwrap_or_else(|e| panic!("the connection no longer serves: {e}"));
    assert_answers(&answer, &topic, None);
    wait_until(
        "the cancelled requests' slots are back",
        Duration::from_secs(5),
        || conn.in_flight() == 0,
    )
    .await;
    assert!(!conn.is_closed(), "{:?}", conn.close_reason());
    CancelOutcome {
        answered,
        cancelled,
        orphaned,
    }
}

/// A multi-thread runtime with two workers, for a plain `#[test]` that drives async code.
pub fn multi_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The cancellation property, on the broker at `peer` (whose cluster `bootstrap` reaches): 16
/// cases, each on a connection of its own whose `max.in.flight.requests.per.connection` is
/// drawn from `caps`. A case hands `case` the connection, the cap, a value of `extra` (what the
/// broker's own part of the case needs) and the cancellations drawn; `case` plays
/// [`cancel_scenario`] with them, with whatever its broker needs around it and the bounds it
/// sets on the outcome, and returns the outcome.
///
/// Every request of a case must be answered or cancelled; and in some case at least one must
/// have been cancelled while on the wire.
pub fn assert_cancellation_property<E: Strategy>(
    runtime: &Runtime,
    bootstrap: &str,
    peer: &Peer,
    caps: RangeInclusive<usize>,
    extra: E,
    case: impl AsyncFn(&Connection, usize, E::Value, &[Cancel]) -> Result<CancelOutcome, TestCaseError>,
) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        // Each failing case can cost a request timeout (a slot that never came back): keep the
        // shrinking short.
        max_shrink_iters: 8,
        ..ProptestConfig::default()
    });
    let strategy = (
        caps,
        extra,
        proptest::collection::vec(cancel_strategy(), 1..24),
    );
    // `run` takes an `Fn`: the sum goes through a `Cell`.
    let orphaned = std::cell::Cell::new(0);
    let result = runner.run(&strategy, |(cap, extra, cancels)| {
        let outcome = runtime.block_on(async {
            let mut c = config(bootstrap);
            // A small cap makes requests wait for slots too, so that some are cancelled while
            // waiting and some while on the wire.
            c.max_in_flight_requests_per_connection = cap;
            // A slot lost by a cancelled request shows as a request timing out waiting for one:
            // soon, rather than after the default 30 s.
            c.request_timeout = Duration::from_secs(3);
            let conn = Connection::connect(peer.clone(), &c)
                .await
                .map_err(|e| TestCaseError::fail(format!("connect: {e}")))?;
            let outcome = case(&conn, cap, extra, &cancels).await?;
            proptest::prop_assert_eq!(outcome.answered + outcome.cancelled, cancels.len());
            Ok(outcome)
        })?;
        orphaned.set(orphaned.get() + outcome.orphaned);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Otherwise the property never cancelled a request on the wire, the case it is about.
    assert!(
        orphaned.get() > 0,
        "no request was cancelled mid-flight in any case"
    );
}

/// Sends each of `requests` to broker `id` from a task of its own, so that they are all pending
/// at once.
pub fn spawn_sends<R>(
    pool: &Pool,
    id: i32,
    requests: Vec<R>,
) -> Vec<JoinHandle<kcon_pool::Result<R::Response>>>
where
    R: Request + Send + Sync + 'static,
    R::Response: Send,
{
    requests
        .into_iter()
        .map(|request| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.send(BrokerTarget::Broker(id), &request).await })
        })
        .collect()
}

/// Checks that each of `pending`, requests that were pending when their broker went away,
/// fails within `within`: the ones on the wire with the lost connection; one waiting for a slot
/// gets it too, or, had it not reached the slot yet, a refused reconnect. Either is retriable.
pub async fn assert_pending_fail<T: Debug>(
    pending: Vec<JoinHandle<kcon_pool::Result<T>>>,
    within: Duration,
) {
    for p in pending {
        let e = tokio::time::timeout(within, p)
            .await
            .expect("a pending request hung after the broker went away")
            .unwrap()
            .unwrap_err();
        assert!(is_connection_lost(&e) && e.is_retriable(), "{e:?}");
    }
}

/// Checks, while broker `id` is down, that the pool's next five connects to it are refused and
/// spaced by the pool's reconnect backoff ([`assert_backoff_spacing`], with 300 ms of slack for
/// a loaded machine), `died` being a time before the broker went down.
pub async fn assert_refused_with_backoff(pool: &Pool, id: i32, died: Instant) {
    let policy = pool.config().reconnect_backoff_policy();
    let probe = metadata_request(&[]);
    let failures = refused_attempts(pool, BrokerTarget::Broker(id), &probe, 5).await;
    assert_backoff_spacing(died, &failures, &policy, Duration::from_millis(300));
}

/// Checks, once broker `id` is back, that the next request to it connects (after what is left
/// of the backoff, at most `reconnect.backoff.max.ms`) and is answered.
pub async fn assert_back_within_backoff(pool: &Pool, id: i32) {
    let max = pool.config().reconnect_backoff_policy().max();
    let took = assert_answered_again(pool, id).await;
    assert!(took < max + Duration::from_millis(500), "{took:?}");
}

/// Sends `request` to `target` `attempts` times in a row, each expected to fail because the
/// broker refuses connections (it is down), and returns when each failure came back.
pub async fn refused_attempts<R: Request + 'static>(
    pool: &Pool,
    target: BrokerTarget,
    request: &R,
    attempts: usize,
) -> Vec<Instant>
where
    R::Response: 'static,
{
    let mut at = Vec::with_capacity(attempts);
    for _ in 0..attempts {
        let e = pool.send(target, request).await.map(|_| ()).unwrap_err();
        assert!(is_refused(&e) && e.is_retriable(), "{e:?}");
        at.push(Instant::now());
    }
    at
}

/// Checks the reconnect backoff between connect attempts to a broker that is down.
///
/// `died` is a time before the broker went away; `failures` are the times at which the
/// attempts that followed failed. The pool waits `delay(k)` of `policy` before attempt `k`
/// (counting from 0: the first, after the lost connection), so attempt 0 fails at least
/// `delay(0)` after `died` and attempt `k + 1` at least `delay(k + 1)` after attempt `k`, with
/// the jitter's low end. Timers never fire early, so the lower bounds are exact; a refused
/// connect takes microseconds, so the upper bounds (jitter's high end) only get `slack` for a
/// loaded machine.
pub fn assert_backoff_spacing(
    died: Instant,
    failures: &[Instant],
    policy: &ExponentialBackoff,
    slack: Duration,
) {
    let first = failures[0] - died;
    assert!(
        first >= policy.delay(0, 0.0),
        "attempt 0 came {first:?} after the connection was lost: no backoff"
    );
    for (k, pair) in failures.windows(2).enumerate() {
        let attempt = k as u32 + 1;
        let gap = pair[1] - pair[0];
        let (low, high) = (policy.delay(attempt, 0.0), policy.delay(attempt, 1.0));
        assert!(
            gap >= low && gap <= high + slack,
            "attempt {attempt} came {gap:?} after the previous one, expected {low:?}..={high:?}; \
             all gaps: {:?}",
            failures.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        );
    }
}

/// A Fetch of partition 0 of `topic` from offset 0 that waits up to `max_wait` for a byte.
/// On an empty partition Kafka holds it that long (a long poll).
pub fn long_poll(topic: &str, id: TopicId, max_wait: Duration) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                // By name below Fetch v13, by id from v13: both are set.
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_topic_id(id.0.to_vec().try_into().expect("16 bytes are a UUID"))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

/// Creates a one-partition topic, for Fetches that Kafka holds, and returns its name and id.
pub async fn empty_topic(pool: &Pool) -> (String, TopicId) {
    let topic = unique_name("held");
    crate::kafka::create_topics(pool, &[(&topic, 1)]).await;
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let topic_id = m
        .topic(&topic)
        .and_then(|t| t.id)
        .expect("Kafka sends topic ids");
    (topic, topic_id)
}

/// Creates a one-partition topic and returns a long-poll Fetch for it.
pub async fn empty_topic_long_poll(pool: &Pool, max_wait: Duration) -> FetchRequest {
    let (topic, topic_id) = empty_topic(pool).await;
    long_poll(&topic, topic_id, max_wait)
}
