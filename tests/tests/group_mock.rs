//! kcon group members against librdkafka's mock cluster (3 brokers): the same join/leave
//! scenarios as on Apache Kafka, and the faults only the mock can make: a coordinator that moves, and
//! errors pushed for Heartbeat and SyncGroup.
//!
//! Static membership is tested on Apache Kafka only (`group_kafka.rs`): the mock's classic groups ignore
//! `group.instance.id` (`rd_kafka_mock_cgrp_classic_member_add` adds a new member and
//! rebalances for every JoinGroup with an unknown member id).

use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    JOIN_THEN_LEAVE_PARTITIONS, Member, REBALANCE_WITHIN, group_config, join_then_leave,
    partitions, wait_for_exactly_once,
};
use kcon_tests::mock::{CoordinatorType, MockCluster};

const NOT_COORDINATOR: i16 = 16;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;

/// A 3-broker mock cluster with a topic of `partitions` and a short initial rebalance delay.
fn mock_with_topic(partitions: i32) -> (MockCluster, String, String) {
    let mock = MockCluster::start(3);
    mock.set_group_initial_rebalance_delay(Duration::from_millis(200));
    let topic = unique_name("group-topic");
    mock.create_topic(&topic, partitions, 3);
    (mock, topic, unique_name("group"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_members_join_and_leave() {
    let (mock, topic, group) = mock_with_topic(JOIN_THEN_LEAVE_PARTITIONS);
    join_then_leave(
        mock.bootstrap(),
        &topic,
        &group,
        "range",
        group_config,
        false,
    )
    .await;
}

/// Generations are not counted here: the mock answers a follower whose SyncGroup arrives after
/// the leader's with INVALID_REQUEST, and that member's rejoin costs a generation now and then
/// (seen here on a loaded machine, in the join and in the leave alike).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_keep_their_partitions_through_rebalances() {
    let (mock, topic, group) = mock_with_topic(JOIN_THEN_LEAVE_PARTITIONS);
    join_then_leave(
        mock.bootstrap(),
        &topic,
        &group,
        "cooperative-sticky",
        group_config,
        false,
    )
    .await;
}

/// Two stable members; the group's coordinator moves to another broker. The members find it
/// (the old one answers NOT_COORDINATOR) and keep every partition assigned exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_follow_a_moved_coordinator() {
    let (mock, topic, group) = mock_with_topic(6);
    let all = partitions(&topic, 6);
    let cfg = || group_config(&group, "range", &[]);
    let a = Member::start("a", mock.bootstrap(), cfg(), &[&topic]);
    let b = Member::start("b", mock.bootstrap(), cfg(), &[&topic]);
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;
    let old = a.snapshot().coordinator.expect("a coordinator").id;
    let new = if old == 3 { 1 } else { old + 1 };
    mock.set_coordinator(CoordinatorType::Group, &group, new);
    let deadline = std::time::Instant::now() + REBALANCE_WITHIN;
    while [&a, &b]
        .iter()
        .any(|m| m.snapshot().coordinator.map(|c| c.id) != Some(new))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "members did not move to coordinator {new}: {:?} {:?}",
            a.snapshot(),
            b.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;
    for m in [a, b] {
        let log = m.close().await;
        assert!(log.fatal.is_none(), "{log:?}");
        assert!(log.closed, "{log:?}");
    }
}

/// Errors pushed for the group's requests: NOT_COORDINATOR and REBALANCE_IN_PROGRESS on
/// Heartbeat, UNKNOWN_MEMBER_ID on SyncGroup. The members rediscover, rejoin, start over with
/// a new member id, and end with every partition owned exactly once; UNKNOWN_MEMBER_ID makes
/// partitions lost, never revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_recover_from_pushed_errors() {
    let (mock, topic, group) = mock_with_topic(6);
    let all = partitions(&topic, 6);
    let cfg = || group_config(&group, "cooperative-sticky", &[]);
    let a = Member::start("a", mock.bootstrap(), cfg(), &[&topic]);
    let b = Member::start("b", mock.bootstrap(), cfg(), &[&topic]);
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;

    let coordinator = a.snapshot().coordinator.expect("a coordinator").id;

    // NOT_COORDINATOR on a heartbeat: the member finds the coordinator again and stays.
    let generation = a.snapshot().generation.id;
    mock.start_request_tracking();
    push(&mock, coordinator, ApiKey::Heartbeat, NOT_COORDINATOR).await;
    // The mock takes the error as the heartbeat arrives; the member's FindCoordinator follows
    // once the answer reaches it, which on a loaded machine can be after `push` returns.
    let deadline = std::time::Instant::now() + REBALANCE_WITHIN;
    while !mock
        .requests()
        .iter()
        .any(|r| r.api() == Some(ApiKey::FindCoordinator))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no FindCoordinator after NOT_COORDINATOR: {:?} {:?}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;
    assert_eq!(
        a.snapshot().generation.id,
        generation,
        "NOT_COORDINATOR caused a rebalance"
    );

    // REBALANCE_IN_PROGRESS on a heartbeat: that member rejoins; a new generation follows.
    push(&mock, coordinator, ApiKey::Heartbeat, REBALANCE_IN_PROGRESS).await;
    let deadline = std::time::Instant::now() + REBALANCE_WITHIN;
    while a.snapshot().generation.id == generation {
        assert!(
            std::time::Instant::now() < deadline,
            "no new generation: {:?}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;

    // UNKNOWN_MEMBER_ID on SyncGroup (a third member makes the group sync again): the member
    // that gets it starts over with a new member id, and what it owned is lost, not revoked.
    let before = [a.log(), b.log()];
    let c = Member::start("c", mock.bootstrap(), cfg(), &[&topic]);
    push(&mock, coordinator, ApiKey::SyncGroup, UNKNOWN_MEMBER_ID).await;
    wait_for_exactly_once(&[&a, &b, &c], &all, REBALANCE_WITHIN).await;
    let after = [a.log(), b.log(), c.log()];
    let changed_id = |l: &kcon_tests::group::MemberLog, from: usize| {
        let ids: std::collections::BTreeSet<&String> = l.member_ids[from..].iter().collect();
        ids.len() > 1 || (from > 0 && l.member_ids[from..].iter().any(|i| *i != l.member_ids[0]))
    };
    let hit: Vec<usize> = (0..3)
        .filter(|&i| changed_id(&after[i], before.get(i).map_or(0, |l| l.member_ids.len())))
        .collect();
    assert!(!hit.is_empty(), "no member started over: {after:?}");
    for &i in hit.iter().filter(|&&i| i < 2) {
        let lost: Vec<_> = after[i].lost[before[i].lost.len()..].to_vec();
        assert!(
            before[i].owned.iter().all(|tp| lost.contains(tp)),
            "member {i} started over but did not lose {:?}: {:?}",
            before[i].owned,
            after[i]
        );
    }
    for m in [a, b, c] {
        let log = m.close().await;
        assert!(log.fatal.is_none(), "{log:?}");
        assert!(log.closed, "{log:?}");
    }
}

/// Pushes `error` for the next `api` request to broker `id` and waits until a request took it.
async fn push(mock: &MockCluster, id: i32, api: ApiKey, error: i16) {
    mock.push_request_error_rtts(id, api, &[(error, Duration::ZERO)]);
    let deadline = std::time::Instant::now() + REBALANCE_WITHIN;
    while mock.error_stack_len(id, api) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nobody sent {api:?} to broker {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
