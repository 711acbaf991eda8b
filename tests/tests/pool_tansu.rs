//! kcon-pool against Tansu, a real single-broker Kafka-protocol cluster: bootstrap, version
//! negotiation, pipelining, cancellation, request timeouts, and a broker that dies and comes
//! back.
//!
//! Each test starts its own broker (its own process and port), so they run in parallel.
//!
//! Not here, and why (all are in `pool_mock.rs`):
//! - leader moves: Tansu is one broker, leading every partition, and nothing moves a leader;
//! - slow answers (RTT) and pushed transport errors: Tansu has no fault injection. A request
//!   timeout is still tested here, with a Fetch that Tansu holds for `max_wait_ms` on an empty
//!   partition; and a connection lost for real, by killing the broker.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::create_topics_request::CreatableTopic;
use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, FetchResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{
    BrokerTarget, Connection, Error, Peer, Pool, PoolConfig, Result, TopicId, TopicScope,
    TransportError,
};
use kcon_tests::blocking::BlockingConnection;
use kcon_tests::brokers::{Tansu, free_port, installed, unique_name};
use kcon_tests::pool::{
    assert_answers, assert_backoff_spacing, assert_negotiated, assert_pipelined_metadata,
    assert_slots_usable, cancel_scenario, cancel_strategy, config, dead_address, metadata_request,
    refused_attempts, wait_until,
};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::task::JoinHandle;

/// The one broker's id, from the cluster's own Metadata (Tansu's is 111; not assumed).
async fn broker_id(pool: &Pool) -> i32 {
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let ids: Vec<i32> = m.brokers.keys().copied().collect();
    assert_eq!(ids.len(), 1, "Tansu is a one-broker cluster: {m:?}");
    ids[0]
}

/// Creates each `(topic, partitions)` with CreateTopics through the pool (Tansu does not
/// create topics on Metadata), failing on any per-topic error.
async fn create_topics(pool: &Pool, id: i32, topics: &[(&str, i32)]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            topics
                .iter()
                .map(|&(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let answer = pool.send(BrokerTarget::Broker(id), &request).await.unwrap();
    assert_eq!(answer.topics.len(), topics.len(), "{answer:?}");
    for t in &answer.topics {
        assert_eq!(
            t.error_code, 0,
            "creating {}: {:?}",
            t.name.0, t.error_message
        );
    }
}

/// A Fetch of partition 0 of `topic` from offset 0 that waits up to `max_wait` for a byte.
/// On an empty partition Tansu holds it that long (a long poll), as Kafka does.
fn long_poll(topic: &str, id: TopicId, max_wait: Duration) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                // By name below Fetch v13, by id from v13 (Tansu: v17): both are set.
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

/// Creates a one-partition topic and returns a long-poll Fetch for it.
async fn empty_topic_long_poll(pool: &Pool, id: i32, max_wait: Duration) -> FetchRequest {
    let topic = unique_name("held");
    create_topics(pool, id, &[(&topic, 1)]).await;
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let topic_id = m
        .topic(&topic)
        .and_then(|t| t.id)
        .expect("Tansu sends topic ids");
    long_poll(&topic, topic_id, max_wait)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_skips_a_dead_first_address() {
    let tansu = Tansu::start();
    let dead = dead_address();
    // Alone, the dead address gets nowhere: refused at once.
    let alone = Pool::new(config(&dead.to_string())).unwrap();
    let e = alone
        .refresh_metadata(TopicScope::none())
        .await
        .unwrap_err();
    let refused = matches!(
        &e,
        Error::Transport { kind: TransportError::Io(io), .. }
            if io.kind() == std::io::ErrorKind::ConnectionRefused
    );
    assert!(refused, "{e:?}");
    let mut c = config(&format!("{dead},{}", tansu.bootstrap()));
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
    let brokers: Vec<(i32, String)> = m.brokers.values().map(|b| (b.id, b.address())).collect();
    assert_eq!(brokers.len(), 1, "{m:?}");
    assert_eq!(brokers[0].1, tansu.bootstrap());
    assert!(m.cluster_id.is_some(), "{m:?}");
    // From now on `Any` means the advertised broker, which answers.
    let topic = unique_name("absent");
    let answer = pool
        .send(BrokerTarget::Any, &metadata_request(&[&topic]))
        .await
        .unwrap();
    assert_answers(&answer, &topic, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_versions_are_the_highest_both_sides_speak() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let id = broker_id(&pool).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    // What the pool learned is what the broker says to an independent client (the blocking
    // one, which decodes ApiVersions on its own path).
    let independent = BlockingConnection::connect(tansu.addr()).unwrap();
    assert_eq!(
        pool.broker_versions(id).as_ref(),
        Some(independent.versions())
    );
    assert_eq!(conn.versions(), independent.versions());
    let negotiated = assert_negotiated(&conn);
    // Tansu 0.6.0's ranges (shared/BROKERS.md) against kcon's: pinned, so that a change on
    // either side shows here.
    for (api, version) in [
        (ApiKey::Metadata, 12),
        (ApiKey::Fetch, 17),
        (ApiKey::ListOffsets, 9),
        (ApiKey::Produce, 11),
        (ApiKey::CreateTopics, 7),
        (ApiKey::ApiVersions, 3),
        (ApiKey::JoinGroup, 9),
    ] {
        assert_eq!(negotiated.get(&(api as i16)), Some(&version), "{api:?}");
    }
    for api in [ApiKey::OffsetForLeaderEpoch, ApiKey::ConsumerGroupHeartbeat] {
        let e = conn.version(api).unwrap_err();
        assert!(
            matches!(e, Error::Unsupported { theirs: None, .. }),
            "{api:?}: {e:?}"
        );
    }
    // The pool's own Metadata goes out at v12: topic ids (v10+) come back.
    let topic = unique_name("t");
    create_topics(&pool, id, &[(&topic, 2)]).await;
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let t = m.topic(&topic).expect("the topic is in the metadata");
    assert!(
        t.id.is_some(),
        "no topic id in a Metadata v12 answer: {t:?}"
    );
    assert_eq!(t.partitions.len(), 2);
}

// A current-thread runtime: while the test polls the 1,000 sends once each, the connection's
// reader cannot run, so all of them are in flight at once, which the test asserts.
#[tokio::test]
async fn a_thousand_pipelined_requests_are_answered_and_matched() {
    let tansu = Tansu::start();
    let mut c = config(&tansu.bootstrap());
    c.max_in_flight_requests_per_connection = 1000;
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    // Most names don't exist (the answer names them with UNKNOWN_TOPIC_OR_PARTITION); four
    // exist with 1 to 4 partitions, so those answers differ in content too.
    let prefix = unique_name("pipelined");
    let existing: Vec<(String, i32)> = (1..=4).map(|n| (format!("{prefix}-{n}p"), n)).collect();
    let specs: Vec<(&str, i32)> = existing.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    create_topics(&pool, id, &specs).await;
    let partitions: BTreeMap<String, usize> = existing
        .iter()
        .map(|(t, n)| (t.clone(), *n as usize))
        .collect();
    let names: Vec<String> = (0..1000)
        .map(|i| match i % 250 {
            7 => existing[i / 250].0.clone(),
            _ => format!("{prefix}-absent-{i}"),
        })
        .collect();
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let started = Instant::now();
    let in_flight = assert_pipelined_metadata(&conn, &names, &partitions).await;
    eprintln!(
        "1000 pipelined Metadata requests to Tansu: {:?}",
        started.elapsed()
    );
    assert_eq!(
        in_flight, 1000,
        "the requests were not all on the wire at once"
    );
}

/// Sends `fetch` on `conn` from a task of its own and returns once it is in flight (or has
/// failed, which the task's result tells), so that what is sent next queues behind it.
async fn hold_ahead(conn: &Connection, fetch: FetchRequest) -> JoinHandle<Result<FetchResponse>> {
    let before = conn.in_flight();
    let held = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(&fetch).await }
    });
    while conn.in_flight() == before && !held.is_finished() {
        tokio::task::yield_now().await;
    }
    held
}

/// Checks that a Fetch from [`hold_ahead`] got its own answer.
async fn check_held(held: JoinHandle<Result<FetchResponse>>) -> Result<(), TestCaseError> {
    let fetched = held
        .await
        .unwrap()
        .map_err(|e| TestCaseError::fail(format!("the held Fetch: {e}")))?;
    let p = &fetched.responses[0].partitions[0];
    proptest::prop_assert_eq!((p.partition_index, p.error_code), (0, 0));
    Ok(())
}

// Not a `proptest!` function: the broker is started once and serves every case, each case
// on a connection of its own.
//
// Tansu answers a Metadata request in well under a millisecond, so most cancellations would
// come after the answer. Each case therefore starts with a Fetch that Tansu holds for a few
// milliseconds (a long poll on an empty partition); Tansu, like Kafka, answers one request of
// a connection at a time, so the scenario's requests wait on the wire behind it, and the
// cancellations land mid-flight.
#[test]
fn cancelled_requests_leave_the_connection_usable() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tansu = Tansu::start();
    let peer = Peer::bootstrap(tansu.bootstrap());
    let (topic, topic_id) = runtime.block_on(async {
        let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
        let id = broker_id(&pool).await;
        let topic = unique_name("held");
        create_topics(&pool, id, &[(&topic, 1)]).await;
        let m = pool
            .refresh_metadata(TopicScope::topics([topic.clone()]))
            .await
            .unwrap();
        let topic_id = m
            .topic(&topic)
            .and_then(|t| t.id)
            .expect("Tansu sends topic ids");
        (topic, topic_id)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        // Each failing case can cost a request timeout (a slot that never came back): keep the
        // shrinking short.
        max_shrink_iters: 8,
        ..ProptestConfig::default()
    });
    let strategy = (
        1usize..=5,
        1u64..30,
        proptest::collection::vec(cancel_strategy(), 1..24),
    );
    // `run` takes an `Fn`: the sum goes through a `Cell`.
    let orphaned = std::cell::Cell::new(0);
    let result = runner.run(&strategy, |(cap, hold_ms, cancels)| {
        let outcome = runtime.block_on(async {
            let mut c = config(&tansu.bootstrap());
            // A small cap makes requests wait for slots too, so that some are cancelled while
            // waiting and some while on the wire.
            c.max_in_flight_requests_per_connection = cap;
            // A slot lost by a cancelled request shows as a request timing out waiting for one:
            // soon, rather than after the default 30 s.
            c.request_timeout = Duration::from_secs(3);
            let conn = Connection::connect(peer.clone(), &c)
                .await
                .map_err(|e| TestCaseError::fail(format!("connect: {e}")))?;
            let held = hold_ahead(
                &conn,
                long_poll(&topic, topic_id, Duration::from_millis(hold_ms)),
            )
            .await;
            let prefix = unique_name("cancel");
            let outcome = cancel_scenario(&conn, &prefix, &cancels, 1).await;
            check_held(held).await?;
            // No slot was lost: behind a Fetch held again, `cap` requests fit on the wire.
            let held = hold_ahead(
                &conn,
                long_poll(&topic, topic_id, Duration::from_millis(100)),
            )
            .await;
            assert_slots_usable(&conn, &prefix, cap - 1, cap).await;
            check_held(held).await?;
            // Cancelled requests keep their slots until answered: never more than `cap` on
            // the wire, the held Fetch included.
            proptest::prop_assert!(outcome.orphaned < cap, "{outcome:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_past_request_timeout_fails_and_the_next_uses_a_fresh_connection() {
    let tansu = Tansu::start();
    let mut c = config(&tansu.bootstrap());
    let timeout = Duration::from_millis(400);
    c.request_timeout = timeout;
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    // Held for 3 s by the broker: the stand-in for a slow broker, which Tansu can't simulate.
    let held = empty_topic_long_poll(&pool, id, Duration::from_secs(3)).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let started = Instant::now();
    let e = pool
        .send(BrokerTarget::Broker(id), &held)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            &e,
            Error::Transport { kind: TransportError::RequestTimeout { api_key: 1, timeout: t }, .. }
                if *t == timeout
        ),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert!(took >= timeout && took < Duration::from_secs(3), "{took:?}");
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
    // The next request goes through a new connection, at once (not after the 3 s hold).
    let started = Instant::now();
    let topic = unique_name("absent");
    let answer = pool
        .send(BrokerTarget::Broker(id), &metadata_request(&[&topic]))
        .await
        .unwrap();
    assert_answers(&answer, &topic, None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let fresh = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    assert!(!fresh.is_closed());
}

/// A Tansu broker that can be killed and started again on the same port, which `Tansu` (a
/// fresh port per start) can't do. Memory storage: a restart is an empty cluster.
struct RestartableTansu {
    port: u16,
    child: Option<Child>,
}

impl RestartableTansu {
    fn start() -> RestartableTansu {
        let mut t = RestartableTansu {
            port: free_port(),
            child: None,
        };
        t.restart();
        t
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// Kills the broker and waits for the process to end: its sockets are closed then.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker on its port, retrying while the port can't be bound yet.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("tcp://{}", self.addr());
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut child = Command::new(&installed().tansu)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", installed().tansu.display()));
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut s) = child.stderr.take() {
                        let _ = s.read_to_string(&mut err);
                    }
                    last = format!("tansu exited with {status}: {err}");
                    break;
                }
                if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Tansu did not start on {}: {last}", self.addr());
    }
}

impl Drop for RestartableTansu {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_fails_pending_requests_and_is_reconnected_with_backoff_once_back() {
    let mut tansu = RestartableTansu::start();
    let mut c: PoolConfig = config(&tansu.bootstrap());
    c.reconnect_backoff = Duration::from_millis(50);
    c.reconnect_backoff_max = Duration::from_millis(500);
    // Two in flight: of the three requests below, two are held by the broker and the third
    // waits for a slot.
    c.max_in_flight_requests_per_connection = 2;
    let policy = c.reconnect_backoff_policy();
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    let held = empty_topic_long_poll(&pool, id, Duration::from_secs(20)).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            let held = held.clone();
            tokio::spawn(async move { pool.send(BrokerTarget::Broker(id), &held).await })
        })
        .collect();
    wait_until(
        "two fetches are held by the broker",
        Duration::from_secs(5),
        || conn.in_flight() == 2,
    )
    .await;

    let died = Instant::now();
    tansu.kill();
    // Every pending request fails, now: not after its 20 s hold, nor after
    // request.timeout.ms (30 s). The two on the wire get the lost connection; the one waiting
    // for a slot gets it too, or, had it not reached the slot yet, a refused reconnect.
    for p in pending {
        let e = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("a pending request hung after the broker died")
            .unwrap()
            .unwrap_err();
        let lost = matches!(
            &e,
            Error::Transport {
                kind: TransportError::Closed
                    | TransportError::ClosedMidFrame { .. }
                    | TransportError::Io(_),
                ..
            }
        );
        assert!(lost && e.is_retriable(), "{e:?}");
    }
    assert!(conn.is_closed());

    let probe = metadata_request(&[]);
    let failures = refused_attempts(&pool, BrokerTarget::Broker(id), &probe, 5).await;
    assert_backoff_spacing(died, &failures, &policy, Duration::from_millis(300));

    tansu.restart();
    // Back: the next request connects (after what is left of the backoff, at most
    // reconnect.backoff.max.ms) and is answered.
    let started = Instant::now();
    let answer = pool.send(BrokerTarget::Broker(id), &probe).await.unwrap();
    assert!(answer.topics.is_empty(), "{answer:?}");
    let took = started.elapsed();
    assert!(took < policy.max() + Duration::from_millis(500), "{took:?}");
}
