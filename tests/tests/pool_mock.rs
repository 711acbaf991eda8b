//! kcon-pool against librdkafka's mock cluster (3 brokers): bootstrap, version negotiation and
//! lowered versions, versions the mock refuses stepped down, moved leaders, slow brokers, brokers going down and up, pipelining,
//! cancellation, and connections the broker drops.
//!
//! Each test starts its own cluster (its own process and ports), so they run in parallel. The
//! same scenarios run against Apache Kafka in `pool_kafka.rs` (and a broker killed, in
//! `pool_cluster.rs`) where Kafka can play them.
//!
//! The mock runs Metadata and Fetch at the versions it advertises (v12 and v16 with kcon), so
//! topics have ids here as on Kafka.

use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kcon_codec::kafka_protocol::messages::leave_group_request::MemberIdentity;
use kcon_codec::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use kcon_codec::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, GroupId, JoinGroupRequest, LeaveGroupRequest,
    ListOffsetsRequest, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, Peer, Pool, Purpose, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::mock::{CoordinatorType, MockCluster, TRANSPORT_ERROR};
use kcon_tests::pool::{
    assert_answered_again, assert_answers, assert_back_within_backoff,
    assert_bootstrap_skips_a_dead_first_address, assert_cancellation_property, assert_negotiated,
    assert_pending_fail, assert_refused_with_backoff, assert_request_times_out,
    assert_slots_usable, assert_thousand_pipelined, assert_versions_of, cancel_scenario, config,
    is_connection_lost, join_all, metadata_request, multi_thread_runtime, pipelined_topics,
    spawn_sends, wait_until,
};
use proptest::strategy::Just;

/// NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// ListOffsets for the latest offset of `topic`'s `partition`, without a leader epoch (so the
/// broker checks only that it leads the partition).
fn list_offsets(topic: &str, partition: i32) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(-1),
                ]),
        ])
}

/// The error code broker `id` answers ListOffsets for `topic`'s `partition` with.
async fn list_offsets_error(pool: &Pool, id: i32, topic: &str, partition: i32) -> i16 {
    let answer = pool
        .send(BrokerTarget::Broker(id), &list_offsets(topic, partition))
        .await
        .unwrap();
    let p = &answer.topics[0].partitions[0];
    assert_eq!(
        (answer.topics[0].name.0.as_str(), p.partition_index),
        (topic, partition)
    );
    p.error_code
}

/// The API keys of the requests broker `id` received since request tracking started, in order.
fn api_keys_received(mock: &MockCluster, id: i32) -> Vec<i16> {
    mock.requests()
        .iter()
        .filter(|r| r.broker_id == id)
        .map(|r| r.api_key)
        .collect()
}

/// A pool on `mock` that has fetched the cluster metadata.
async fn pool_on(mock: &MockCluster, tune: impl FnOnce(&mut kcon_pool::PoolConfig)) -> Pool {
    let mut c = config(mock.bootstrap());
    tune(&mut c);
    let pool = Pool::new(c).unwrap();
    let m = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(m.brokers.len(), 3, "{m:?}");
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_skips_a_dead_first_address() {
    let mock = MockCluster::start(3);
    // The three brokers, ids 1 to 3, each at the address the harness reports for it.
    let advertised: Vec<String> = (1..=3).map(|id| mock.broker_addr(id).to_string()).collect();
    let ids = assert_bootstrap_skips_a_dead_first_address(mock.bootstrap(), &advertised).await;
    assert_eq!(ids, [1, 2, 3]);
}

/// A Fetch of `topic`'s partition 0 from offset 0 that does not wait.
fn fetch_now(topic: &str) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiated_versions_follow_what_the_brokers_offer_even_lowered() {
    let mock = MockCluster::start(3);
    let topic = unique_name("t");
    mock.create_topic(&topic, 2, 3);
    let pool = pool_on(&mock, |_| {}).await;
    for id in 1..=3 {
        // librdkafka 2.16's ranges (with the harness's caps) against kcon's: pinned, so that
        // a change on either side shows here.
        let pinned = [
            (ApiKey::Metadata, 13),
            (ApiKey::Fetch, 16),
            (ApiKey::ListOffsets, 7),
            (ApiKey::Produce, 10),
            (ApiKey::ApiVersions, 2),
            (ApiKey::OffsetForLeaderEpoch, 2),
            // Advertised, though the mock misreads it: stepped down once it refuses it (see
            // `versions_the_mock_refuses_are_stepped_down`).
            (ApiKey::JoinGroup, 6),
            // The mock advertises v4; kcon sends v3 at most (a leader's v4 crashes the mock).
            (ApiKey::SyncGroup, 3),
            (ApiKey::ConsumerGroupHeartbeat, 1),
        ];
        assert_versions_of(&pool, id, mock.broker_addr(id), &pinned).await;
    }
    // Metadata v12 carries leader epochs (v7+) and topic ids (v10+).
    let m = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    assert!(m.partition(&topic, 0).unwrap().leader_epoch.is_some());
    assert!(m.topic(&topic).unwrap().id.is_some(), "{m:?}");

    let (fetch_min, _) = mock.implemented_versions(ApiKey::Fetch).unwrap();
    let (metadata_min, _) = mock.implemented_versions(ApiKey::Metadata).unwrap();
    mock.set_apiversion(ApiKey::Fetch, fetch_min, 9);
    mock.set_apiversion(ApiKey::Metadata, metadata_min, 6);

    let fresh = pool_on(&mock, |_| {}).await;
    for id in 1..=3 {
        let conn = fresh.connection(BrokerTarget::Broker(id)).await.unwrap();
        let offered = fresh.broker_versions(id).unwrap();
        assert_eq!(
            offered.offered(ApiKey::Fetch),
            Some((fetch_min, 9)),
            "broker {id}"
        );
        assert_eq!(
            offered.offered(ApiKey::Metadata),
            Some((metadata_min, 6)),
            "broker {id}"
        );
        assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 9);
        assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 6);
        assert_negotiated(&conn);
    }
    // The old pool's connections keep what they learned when they were made.
    let old = pool.connection(BrokerTarget::Broker(1)).await.unwrap();
    assert_eq!(old.version(ApiKey::Metadata).unwrap(), 13);

    // Metadata at v6 works, and is really v6 on the wire: the answer has the topic and its
    // leaders but no leader epochs, which only v7+ carries.
    let m = fresh
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let t = m.topic(&topic).expect("the topic is in the metadata");
    assert_eq!(t.partitions.len(), 2, "{t:?}");
    for p in t.partitions.values() {
        assert!(p.leader.is_some(), "{p:?}");
        assert_eq!(
            p.leader_epoch, None,
            "an epoch in a Metadata v6 answer: {p:?}"
        );
    }
    // And Fetch at v9 is answered by the leader.
    let leader = m.leader(&topic, 0).unwrap().id;
    let answer = fresh
        .send(BrokerTarget::Broker(leader), &fetch_now(&topic))
        .await
        .unwrap();
    let p = &answer.responses[0].partitions[0];
    assert_eq!((p.partition_index, p.error_code), (0, 0), "{answer:?}");
}

// Mock only here: the single Kafka node never moves a leader (the cluster's moves are tested in
// the `*_cluster.rs` suites).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_follows_a_moved_leader_after_invalidate() {
    let mock = MockCluster::start(3);
    let topic = unique_name("moving");
    mock.create_topic(&topic, 3, 3);
    mock.set_leader(&topic, 0, 1);
    let pool = pool_on(&mock, |_| {}).await;
    let before = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let p = before.partition(&topic, 0).unwrap().clone();
    assert_eq!(p.leader, Some(1), "{p:?}");
    let epoch = p.leader_epoch.expect("Metadata v12 carries leader epochs");
    assert_eq!(list_offsets_error(&pool, 1, &topic, 0).await, 0);

    mock.set_leader(&topic, 0, 2);
    // The old leader says so, and that error is one that makes the metadata stale.
    let code = list_offsets_error(&pool, 1, &topic, 0).await;
    assert_eq!(code, NOT_LEADER_OR_FOLLOWER);
    assert!(!pool.invalidate(0), "no error is no reason to refresh");
    assert!(pool.invalidate(code));
    // The background refresh comes within the retry backoff (100 ms ± 20 %).
    wait_until(
        "the metadata names the new leader",
        Duration::from_secs(5),
        || pool.metadata().partition(&topic, 0).and_then(|p| p.leader) == Some(2),
    )
    .await;
    let after = pool.metadata();
    let moved = after.partition(&topic, 0).unwrap();
    let new_epoch = moved
        .leader_epoch
        .expect("Metadata v12 carries leader epochs");
    assert!(new_epoch > epoch, "leader epoch {epoch} -> {new_epoch}");
    assert!(after.generation > before.generation);
    // The partitions that did not move are unchanged.
    for i in 1..3 {
        assert_eq!(after.partition(&topic, i), before.partition(&topic, i));
    }
    assert_eq!(list_offsets_error(&pool, 2, &topic, 0).await, 0);
}

// Mock only: Kafka can't be told to delay its answers (but see pool_kafka.rs, where it holds a
// Fetch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_broker_times_out_retriably_and_the_next_request_uses_a_fresh_connection() {
    let mock = MockCluster::start(3);
    let timeout = Duration::from_millis(300);
    let pool = pool_on(&mock, |c| c.request_timeout = timeout).await;
    // Connected before the RTT is set, so that the handshake is quick.
    pool.connection(BrokerTarget::Broker(2)).await.unwrap();
    let rtt = Duration::from_millis(1500);
    mock.set_rtt(2, rtt);
    assert_request_times_out(&pool, 2, &metadata_request(&[]), rtt).await;

    mock.set_rtt(2, Duration::ZERO);
    mock.start_request_tracking();
    assert_answered_again(&pool, 2).await;
    // Fresh: broker 2 saw a new connection's handshake before the request.
    let to_two = api_keys_received(&mock, 2);
    assert_eq!(
        to_two.first(),
        Some(&(ApiKey::ApiVersions as i16)),
        "{to_two:?}"
    );
    assert_eq!(
        to_two.last(),
        Some(&(ApiKey::Metadata as i16)),
        "{to_two:?}"
    );
}

// Mock only: set_down/set_up. (pool_cluster.rs kills and restarts a Kafka node for the same
// story.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_fails_pending_requests_backs_off_and_is_used_again_once_up() {
    let mock = MockCluster::start(3);
    let pool = pool_on(&mock, |c| {
        c.reconnect_backoff = Duration::from_millis(50);
        c.reconnect_backoff_max = Duration::from_millis(500);
        // Two in flight: of the three requests below, two are at the broker and the third
        // waits for a slot.
        c.max_in_flight_requests_per_connection = 2;
    })
    .await;
    let policy = pool.config().reconnect_backoff_policy();
    let conn = pool.connection(BrokerTarget::Broker(2)).await.unwrap();
    // Answers held for 5 s, so that requests are pending when the broker goes down.
    mock.set_rtt(2, Duration::from_secs(5));
    mock.start_request_tracking();
    let prefix = unique_name("pending");
    let requests = (0..3)
        .map(|i| metadata_request(&[&format!("{prefix}-{i}")]))
        .collect();
    let pending = spawn_sends(&pool, 2, requests);
    wait_until(
        "the broker has two of the requests",
        Duration::from_secs(5),
        || {
            let metadata = ApiKey::Metadata as i16;
            let requests = mock.requests();
            requests
                .iter()
                .filter(|r| r.broker_id == 2 && r.api_key == metadata)
                .count()
                == 2
        },
    )
    .await;
    assert_eq!(conn.in_flight(), 2);

    let died = Instant::now();
    mock.set_down(2);
    // Every pending request fails, now: not after the 5 s RTT, nor after request.timeout.ms
    // (30 s). The two at the broker get the lost connection.
    assert_pending_fail(pending, Duration::from_secs(2)).await;
    assert!(conn.is_closed());
    mock.set_rtt(2, Duration::ZERO);

    assert_refused_with_backoff(&pool, 2, died).await;
    // The other brokers are not held back by broker 2's backoff.
    let started = Instant::now();
    pool.send(BrokerTarget::Broker(1), &metadata_request(&[]))
        .await
        .unwrap();
    assert!(started.elapsed() < policy.max(), "{:?}", started.elapsed());

    mock.set_up(2);
    assert_back_within_backoff(&pool, 2).await;
}

// A current-thread runtime: while the test polls the 1,000 sends once each, the connection's
// reader cannot run, so all of them are in flight at once, which the test asserts.
#[tokio::test]
async fn a_thousand_pipelined_requests_are_answered_and_matched() {
    let mock = MockCluster::start(3);
    let prefix = unique_name("pipelined");
    let existing = pipelined_topics(&prefix);
    for (topic, n) in &existing {
        mock.create_topic(topic, *n as i32, 3);
    }
    let pool = pool_on(&mock, |c| c.max_in_flight_requests_per_connection = 1000).await;
    let conn = pool.connection(BrokerTarget::Broker(1)).await.unwrap();
    mock.start_request_tracking();
    // Every answer 50 ms late: one at a time, 1,000 requests would take 50 s.
    mock.set_rtt(1, Duration::from_millis(50));
    let took = assert_thousand_pipelined(&conn, &prefix, &existing, "the mock (RTT 50 ms)").await;
    assert!(took < Duration::from_secs(10), "{took:?}: not pipelined");
    let metadata = ApiKey::Metadata as i16;
    let received = mock.requests();
    let at_one = received
        .iter()
        .filter(|r| r.broker_id == 1 && r.api_key == metadata);
    assert_eq!(at_one.count(), 1000);
    assert_eq!(received.len(), 1000, "one connection, no new handshake");
}

// Not a `proptest!` function: the cluster is started once and serves every case, each case on
// a connection of its own. Broker 1's answers are 3 ms late, so that cancellations after a few
// polls or a tiny timeout land while the request is on the wire.
#[test]
fn cancelled_requests_leave_the_connection_usable() {
    let runtime = multi_thread_runtime();
    let mock = MockCluster::start(3);
    const RTT: Duration = Duration::from_millis(3);
    mock.set_rtt(1, RTT);
    let peer = Peer::broker(1, mock.broker_addr(1).to_string());
    assert_cancellation_property(
        &runtime,
        mock.bootstrap(),
        &peer,
        1..=4,
        Just(()),
        async |conn, cap, (), cancels| {
            let prefix = unique_name("cancel");
            let outcome = cancel_scenario(conn, &prefix, cancels, 0).await;
            // No slot was lost: with answers 100 ms late, `cap` requests fit on the wire.
            mock.set_rtt(1, Duration::from_millis(100));
            assert_slots_usable(conn, &prefix, cap, cap).await;
            mock.set_rtt(1, RTT);
            // Cancelled requests keep their slots until answered: never more than `cap` on
            // the wire.
            proptest::prop_assert!(outcome.orphaned <= cap, "{outcome:?}");
            Ok(outcome)
        },
    );
}

// Mock only: no broker can be told to drop a connection on a given request. (A cut stream and a
// wrong frame size are kcon-pool's scripted-peer tests; this is the real-broker angle.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_broker_drops_fails_its_requests_once_and_the_next_uses_a_fresh_one() {
    let mock = MockCluster::start(3);
    let pool = pool_on(&mock, |_| {}).await;
    let conn = pool.connection(BrokerTarget::Broker(1)).await.unwrap();
    let prefix = unique_name("dropped");
    let before = format!("{prefix}-before");
    assert_answers(
        &conn.send(&metadata_request(&[&before])).await.unwrap(),
        &before,
        None,
    );
    mock.start_request_tracking();
    // The next Metadata request broker 1 reads makes it close the connection.
    mock.push_request_error_rtts(1, ApiKey::Metadata, &[(TRANSPORT_ERROR, Duration::ZERO)]);
    // Three requests pipelined on the connection: the first is read and the connection closed
    // under the other two.
    let topics: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    let requests: Vec<_> = topics.iter().map(|t| metadata_request(&[t])).collect();
    let results = join_all(requests.iter().map(|r| conn.send(r)).collect(), || {}).await;
    let reason = conn.close_reason().expect("the connection is closed");
    assert!(
        is_connection_lost(&reason) && reason.is_retriable(),
        "{reason:?}"
    );
    for result in results {
        // Each gets the error that closed the connection, once.
        let e = result.unwrap_err();
        assert_eq!(e.to_string(), reason.to_string());
    }
    assert_eq!(
        mock.error_stack_len(1, ApiKey::Metadata),
        0,
        "the error was used"
    );
    assert_eq!(conn.in_flight(), 0);

    assert_answered_again(&pool, 1).await;
    // Fresh: after the request that closed the old connection, broker 1 saw a new
    // connection's handshake, then the request that was answered.
    let to_one = api_keys_received(&mock, 1);
    let (metadata, api_versions) = (ApiKey::Metadata as i16, ApiKey::ApiVersions as i16);
    assert_eq!(to_one.first(), Some(&metadata), "{to_one:?}");
    assert_eq!(to_one.last(), Some(&metadata), "{to_one:?}");
    assert!(to_one.contains(&api_versions), "{to_one:?}");
}

/// librdkafka's mock advertises JoinGroup v6 and LeaveGroup v4 but misreads them: it closes the
/// connection on a JoinGroup v6, and answers LeaveGroup v3 and v4 without the members array.
/// The pool sends JoinGroup v6 twice, then v5 from the broker's next connection on; LeaveGroup
/// goes one version lower after each answer it cannot decode, until v2 is answered. Each step
/// holds for every later connection to the broker, whatever its purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_the_mock_refuses_are_stepped_down() {
    let mock = MockCluster::start(3);
    mock.set_group_initial_rebalance_delay(Duration::ZERO);
    let pool = pool_on(&mock, |_| {}).await;
    let group = unique_name("g");
    mock.set_coordinator(CoordinatorType::Group, &group, 1);
    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_session_timeout_ms(6000)
        .with_rebalance_timeout_ms(6000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0])),
        ]);
    let coordinator = BrokerTarget::Dedicated(1, Purpose::Coordinator);
    for attempt in 0..2 {
        let conn = pool.connection(coordinator).await.unwrap();
        assert_eq!(
            conn.version(ApiKey::JoinGroup).unwrap(),
            6,
            "attempt {attempt}"
        );
        let e = conn.send(&join).await.unwrap_err();
        assert!(is_connection_lost(&e), "attempt {attempt}: {e:?}");
    }
    let conn = pool.connection(coordinator).await.unwrap();
    assert_eq!(conn.version(ApiKey::JoinGroup).unwrap(), 5);
    let joined = conn.send(&join).await.unwrap();
    assert_eq!(joined.error_code, 0, "{joined:?}");
    // The broker's shared connection, made now, starts at v5 too.
    let shared = pool.connection(BrokerTarget::Broker(1)).await.unwrap();
    assert_eq!(shared.version(ApiKey::JoinGroup).unwrap(), 5);
    // Another broker has not refused anything.
    let other = pool.connection(BrokerTarget::Broker(2)).await.unwrap();
    assert_eq!(other.version(ApiKey::JoinGroup).unwrap(), 6);

    // v3+ name the member in a list, v0-v2 on their own.
    let leave = |version: i16| {
        let r = LeaveGroupRequest::default().with_group_id(GroupId(s(&group)));
        if version >= 3 {
            r.with_members(vec![
                MemberIdentity::default().with_member_id(joined.member_id.clone()),
            ])
        } else {
            r.with_member_id(joined.member_id.clone())
        }
    };
    for version in [4, 3] {
        let conn = pool.connection(coordinator).await.unwrap();
        assert_eq!(conn.version(ApiKey::LeaveGroup).unwrap(), version);
        let e = conn.send(&leave(version)).await.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("malformed LeaveGroup v{version} response")),
            "{e}"
        );
    }
    let conn = pool.connection(coordinator).await.unwrap();
    assert_eq!(conn.version(ApiKey::LeaveGroup).unwrap(), 2);
    let left = conn.send(&leave(2)).await.unwrap();
    assert_eq!(left.error_code, 0, "{left:?}");
}
