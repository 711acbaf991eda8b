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

use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::TopicId;
use kcon_pool::{BrokerTarget, Connection, Error, Peer, Pool, Result, TopicScope};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::create_topics;
use kcon_tests::pool::{
    assert_answered_again, assert_back_within_backoff, assert_bootstrap_skips_a_dead_first_address,
    assert_cancellation_property, assert_pending_fail, assert_refused_with_backoff,
    assert_request_times_out, assert_slots_usable, assert_thousand_pipelined, assert_versions_of,
    cancel_scenario, config, multi_thread_runtime, pipelined_topics, spawn_sends, wait_until,
};
use proptest::test_runner::TestCaseError;
use tokio::task::JoinHandle;

/// The one broker's id, from the cluster's own Metadata (Tansu's is 111; not assumed).
async fn broker_id(pool: &Pool) -> i32 {
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let ids: Vec<i32> = m.brokers.keys().copied().collect();
    assert_eq!(ids.len(), 1, "Tansu is a one-broker cluster: {m:?}");
    ids[0]
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

/// Creates a one-partition topic, for Fetches that Tansu holds, and returns its name and id.
async fn empty_topic(pool: &Pool, id: i32) -> (String, TopicId) {
    let topic = unique_name("held");
    create_topics(pool, BrokerTarget::Broker(id), &[(&topic, 1)]).await;
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let topic_id = m
        .topic(&topic)
        .and_then(|t| t.id)
        .expect("Tansu sends topic ids");
    (topic, topic_id)
}

/// Creates a one-partition topic and returns a long-poll Fetch for it.
async fn empty_topic_long_poll(pool: &Pool, id: i32, max_wait: Duration) -> FetchRequest {
    let (topic, topic_id) = empty_topic(pool, id).await;
    long_poll(&topic, topic_id, max_wait)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_skips_a_dead_first_address() {
    let tansu = Tansu::start();
    // One broker, advertising the address it listens on; its id is its own (not assumed).
    assert_bootstrap_skips_a_dead_first_address(&tansu.bootstrap(), &[tansu.bootstrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_versions_are_the_highest_both_sides_speak() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let id = broker_id(&pool).await;
    // Tansu 0.6.0's ranges (DESIGN.md, "The brokers") against kcon's: pinned, so that a change on
    // either side shows here.
    let pinned = [
        (ApiKey::Metadata, 12),
        (ApiKey::Fetch, 17),
        (ApiKey::ListOffsets, 9),
        (ApiKey::Produce, 11),
        (ApiKey::CreateTopics, 7),
        (ApiKey::ApiVersions, 3),
        (ApiKey::JoinGroup, 9),
    ];
    let conn = assert_versions_of(&pool, id, tansu.addr(), &pinned).await;
    // Tansu offers neither at all.
    for api in [ApiKey::OffsetForLeaderEpoch, ApiKey::ConsumerGroupHeartbeat] {
        let e = conn.version(api).unwrap_err();
        assert!(
            matches!(e, Error::Unsupported { theirs: None, .. }),
            "{api:?}: {e:?}"
        );
    }
    // The pool's own Metadata goes out at v12: topic ids (v10+) come back.
    let topic = unique_name("t");
    create_topics(&pool, BrokerTarget::Broker(id), &[(&topic, 2)]).await;
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
    let prefix = unique_name("pipelined");
    let existing = pipelined_topics(&prefix);
    let specs: Vec<(&str, i32)> = existing
        .iter()
        .map(|(t, n)| (t.as_str(), *n as i32))
        .collect();
    create_topics(&pool, BrokerTarget::Broker(id), &specs).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    // No bound on the time, unlike against the mock: with no RTT to add, it says nothing about
    // pipelining here; the 1,000 requests in flight at once do.
    assert_thousand_pipelined(&conn, &prefix, &existing, "Tansu").await;
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
    let runtime = multi_thread_runtime();
    let tansu = Tansu::start();
    let peer = Peer::bootstrap(tansu.bootstrap());
    let (topic, topic_id) = runtime.block_on(async {
        let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
        empty_topic(&pool, broker_id(&pool).await).await
    });
    // Each case holds its first Fetch for 1 to 29 ms.
    assert_cancellation_property(
        &runtime,
        &tansu.bootstrap(),
        &peer,
        1..=5,
        1u64..30,
        async |conn, cap, hold_ms, cancels| {
            let held = hold_ahead(
                conn,
                long_poll(&topic, topic_id, Duration::from_millis(hold_ms)),
            )
            .await;
            let prefix = unique_name("cancel");
            let outcome = cancel_scenario(conn, &prefix, cancels, 1).await;
            check_held(held).await?;
            // No slot was lost: behind a Fetch held again, `cap` requests fit on the wire.
            let held = hold_ahead(
                conn,
                long_poll(&topic, topic_id, Duration::from_millis(100)),
            )
            .await;
            assert_slots_usable(conn, &prefix, cap - 1, cap).await;
            check_held(held).await?;
            // Cancelled requests keep their slots until answered: never more than `cap` on
            // the wire, the held Fetch included.
            proptest::prop_assert!(outcome.orphaned < cap, "{outcome:?}");
            Ok(outcome)
        },
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
    let hold = Duration::from_secs(3);
    let held = empty_topic_long_poll(&pool, id, hold).await;
    assert_request_times_out(&pool, id, &held, hold).await;
    // The next request goes through a new connection, at once (not after the 3 s hold).
    let took = assert_answered_again(&pool, id).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_fails_pending_requests_and_is_reconnected_with_backoff_once_back() {
    let mut tansu = Tansu::start();
    let mut c = config(&tansu.bootstrap());
    c.reconnect_backoff = Duration::from_millis(50);
    c.reconnect_backoff_max = Duration::from_millis(500);
    // Two in flight: of the three requests below, two are held by the broker and the third
    // waits for a slot.
    c.max_in_flight_requests_per_connection = 2;
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    let held = empty_topic_long_poll(&pool, id, Duration::from_secs(20)).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    let pending = spawn_sends(&pool, id, vec![held; 3]);
    wait_until(
        "two fetches are held by the broker",
        Duration::from_secs(5),
        || conn.in_flight() == 2,
    )
    .await;

    let died = Instant::now();
    tansu.stop();
    // Every pending request fails, now: not after its 20 s hold, nor after
    // request.timeout.ms (30 s). The two on the wire get the lost connection.
    assert_pending_fail(pending, Duration::from_secs(5)).await;
    assert!(conn.is_closed());

    assert_refused_with_backoff(&pool, id, died).await;

    // Back on the same port, where the pool's metadata still points (an empty cluster:
    // memory storage).
    tansu.restart();
    assert_back_within_backoff(&pool, id).await;
}
