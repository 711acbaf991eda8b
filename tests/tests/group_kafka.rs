//! kcon group members on Apache Kafka 4.4 (the shared single node), the classic protocol at the
//! client's defaults (`session.timeout.ms=45000`, `heartbeat.interval.ms=3000`): joins, leaves
//! and rebalances, eager and cooperative, and a static member's restart without a rebalance
//! (KIP-345).

use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    JOIN_THEN_LEAVE_PARTITIONS, group_config_at_defaults, join_then_leave, static_member_restarts,
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
