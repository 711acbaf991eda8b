//! kcon group members on Apache Kafka 4.4 (the shared single node), the classic protocol at the
//! client's defaults (`session.timeout.ms=45000`, `heartbeat.interval.ms=3000`): joins, leaves
//! and rebalances, eager and cooperative, a static member's restart without a rebalance
//! (KIP-345), and a static leader's restart after its topic grew, which does rebalance.

use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::REBALANCE_WITHIN;
use kcon_tests::group::{
    JOIN_THEN_LEAVE_PARTITIONS, Member, group_config_at_defaults, join_then_leave, partitions,
    static_member_restarts, wait_for_exactly_once,
};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::config;

/// A topic of `partitions` on the shared node; returns the bootstrap, the topic and a group
/// name.
async fn kafka_with_topic(partitions: i32) -> (&'static str, String, String) {
    let kafka = Kafka::single();
    let topic = unique_name("group-topic");
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create_topics(&pool, &[(&topic, partitions)]).await;
    (kafka.bootstrap(), topic, unique_name("group"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_members_join_and_leave() {
    let (bootstrap, topic, group) = kafka_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(
        bootstrap,
        &topic,
        &group,
        "range",
        group_config_at_defaults,
        false,
    )
    .await;
}

/// And in no more generations than KIP-429 needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_keep_their_partitions_through_rebalances() {
    let (bootstrap, topic, group) = kafka_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(
        bootstrap,
        &topic,
        &group,
        "cooperative-sticky",
        group_config_at_defaults,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_members_join_and_leave() {
    let (bootstrap, topic, group) = kafka_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(
        bootstrap,
        &topic,
        &group,
        "roundrobin",
        group_config_at_defaults,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restarts_with_its_partitions_and_no_rebalance() {
    let (bootstrap, topic, group) = kafka_with_topic(6).await;
    static_member_restarts(bootstrap, &topic, &group).await;
}

/// A topic grows while its group's static leader is away; the leader restarts within its
/// session, and Kafka hands the new process the old assignment without asking it to assign
/// (KIP-814's `skip_assignment`). The metadata the new process starts from already has the new
/// partitions, so only the partition counts its previous incarnation assigned from (kept in
/// its assignment) show the change: it rejoins, and the new partitions are assigned, each to
/// one member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_leader_restarted_after_its_topic_grew_assigns_the_new_partitions() {
    let kafka = Kafka::single();
    let (bootstrap, topic, group) = kafka_with_topic(4).await;
    let cfg = |id: &str| group_config_at_defaults(&group, "range", &[("group.instance.id", id)]);
    let a = Member::start("a", bootstrap, cfg("instance-a"), &[&topic]);
    let b = Member::start("b", bootstrap, cfg("instance-b"), &[&topic]);
    wait_for_exactly_once(&[&a, &b], &partitions(&topic, 4), REBALANCE_WITHIN).await;
    let (leader, follower, leader_id) = if a.log().leader {
        (a, b, "instance-a")
    } else {
        (b, a, "instance-b")
    };
    let generations = follower.log().generations.len();
    assert!(leader.close().await.closed);
    kafka.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--alter", "--topic", &topic, "--partitions", "6"],
    );
    let leader = Member::start("restarted", bootstrap, cfg(leader_id), &[&topic]);
    wait_for_exactly_once(
        &[&leader, &follower],
        &partitions(&topic, 6),
        REBALANCE_WITHIN,
    )
    .await;
    assert!(leader.log().leader, "{:?}", leader.log());
    assert!(
        follower.log().generations.len() > generations,
        "the follower rejoined for the new partitions: {:?}",
        follower.log()
    );
    leader.close().await;
    follower.close().await;
}
