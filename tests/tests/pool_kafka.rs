//! kcon-pool against Apache Kafka 4.4 (the shared single node): bootstrap, version negotiation
//! against the broker's real ApiVersions, pipelining, cancellation and request timeouts. A
//! broker killed and back is in `pool_cluster.rs` (the single node is shared by every test).
//!
//! Not here, and why (all are in `pool_mock.rs`): slow answers (RTT) and pushed transport
//! errors, which no broker can be told to make. A request timeout is still tested here, with a
//! Fetch that Kafka holds for `max_wait_ms` on an empty partition.

use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use kcon_pool::{BrokerTarget, Connection, Peer, Pool, Result, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::{
    assert_answered_again, assert_bootstrap_skips_a_dead_first_address,
    assert_cancellation_property, assert_request_times_out, assert_slots_usable,
    assert_thousand_pipelined, assert_versions_of, cancel_scenario, config, empty_topic,
    empty_topic_long_poll, long_poll, multi_thread_runtime, pipelined_topics,
};
use proptest::test_runner::TestCaseError;
use tokio::task::JoinHandle;

/// The one broker's id, from the cluster's own Metadata (not assumed).
async fn broker_id(pool: &Pool) -> i32 {
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let ids: Vec<i32> = m.brokers.keys().copied().collect();
    assert_eq!(
        ids.len(),
        1,
        "the single node is a one-broker cluster: {m:?}"
    );
    ids[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_skips_a_dead_first_address() {
    let kafka = Kafka::single();
    // One broker, advertising the address it listens on; its id is its own (not assumed).
    assert_bootstrap_skips_a_dead_first_address(kafka.bootstrap(), &[kafka.bootstrap().to_owned()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_versions_are_the_highest_both_sides_speak() {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let id = broker_id(&pool).await;
    // Kafka 4.4.0's ranges against kcon's: pinned, so that a change on either side shows here.
    // Kafka offers Fetch v18, ListOffsets v11, Produce v13, ApiVersions v5 and SyncGroup v5:
    // these pin kcon's own highest (and SyncGroup's v3 cap).
    let pinned = [
        (ApiKey::Metadata, 13),
        (ApiKey::Fetch, 17),
        (ApiKey::ListOffsets, 9),
        (ApiKey::Produce, 12),
        (ApiKey::EndTxn, 5),
        (ApiKey::TxnOffsetCommit, 5),
        (ApiKey::CreateTopics, 7),
        (ApiKey::ApiVersions, 3),
        (ApiKey::JoinGroup, 9),
        (ApiKey::SyncGroup, 3),
        (ApiKey::OffsetForLeaderEpoch, 4),
        (ApiKey::ConsumerGroupHeartbeat, 1),
        (ApiKey::ShareGroupHeartbeat, 1),
    ];
    let addr = kafka.bootstrap().parse().expect("one node's address");
    let conn = assert_versions_of(&pool, id, addr, &pinned).await;
    // Kafka 4 dropped the oldest versions (KIP-896): what it offers starts above v0.
    for (api, min) in [(ApiKey::Fetch, 4), (ApiKey::OffsetForLeaderEpoch, 2)] {
        assert_eq!(
            conn.versions().offered(api).map(|(low, _)| low),
            Some(min),
            "{api:?}"
        );
    }
    // The pool's own Metadata goes out at v13: topic ids (v10+) come back.
    let topic = unique_name("t");
    create_topics(&pool, &[(&topic, 2)]).await;
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let t = m.topic(&topic).expect("the topic is in the metadata");
    assert!(
        t.id.is_some(),
        "no topic id in a Metadata v13 answer: {t:?}"
    );
    assert_eq!(t.partitions.len(), 2);
}

// A current-thread runtime: while the test polls the 1,000 sends once each, the connection's
// reader cannot run, so all of them are in flight at once, which the test asserts.
#[tokio::test]
async fn a_thousand_pipelined_requests_are_answered_and_matched() {
    let kafka = Kafka::single();
    let mut c = config(kafka.bootstrap());
    c.max_in_flight_requests_per_connection = 1000;
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    let prefix = unique_name("pipelined");
    let existing = pipelined_topics(&prefix);
    let specs: Vec<(&str, i32)> = existing
        .iter()
        .map(|(t, n)| (t.as_str(), *n as i32))
        .collect();
    create_topics(&pool, &specs).await;
    let conn = pool.connection(BrokerTarget::Broker(id)).await.unwrap();
    // No bound on the time, unlike against the mock: with no RTT to add, it says nothing about
    // pipelining here; the 1,000 requests in flight at once do.
    assert_thousand_pipelined(&conn, &prefix, &existing, "Kafka").await;
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
// Kafka answers a Metadata request in about a millisecond, so most cancellations would come
// after the answer. Each case therefore starts with a Fetch that Kafka holds for a few
// milliseconds (a long poll on an empty partition); Kafka answers one request of a connection
// at a time, so the scenario's requests wait on the wire behind it, and the cancellations land
// mid-flight.
#[test]
fn cancelled_requests_leave_the_connection_usable() {
    let runtime = multi_thread_runtime();
    let kafka = Kafka::single();
    let peer = Peer::bootstrap(kafka.bootstrap().to_owned());
    let (topic, topic_id) = runtime.block_on(async {
        let pool = Pool::new(config(kafka.bootstrap())).unwrap();
        empty_topic(&pool).await
    });
    // Each case holds its first Fetch for 1 to 29 ms.
    assert_cancellation_property(
        &runtime,
        kafka.bootstrap(),
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
    let kafka = Kafka::single();
    let mut c = config(kafka.bootstrap());
    let timeout = Duration::from_millis(400);
    c.request_timeout = timeout;
    let pool = Pool::new(c).unwrap();
    let id = broker_id(&pool).await;
    // Held for 3 s by the broker: the stand-in for a slow broker.
    let hold = Duration::from_secs(3);
    let held = empty_topic_long_poll(&pool, hold).await;
    assert_request_times_out(&pool, id, &held, hold).await;
    // The next request goes through a new connection, at once (not after the 3 s hold).
    let took = assert_answered_again(&pool, id).await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}
