//! kcon group members against Tansu: joins, leaves and rebalances, eager and cooperative, and
//! a static member's restart. Tansu completes a join after about half the session timeout, so
//! each rebalance here takes a few seconds.

use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::{
    JOIN_THEN_LEAVE_PARTITIONS, create_topics, join_then_leave, static_member_restarts,
};
use kcon_tests::pool::config;

/// A Tansu broker with a topic of `partitions`; returns the broker, the topic and a group name.
async fn tansu_with_topic(partitions: i32) -> (Tansu, String, String) {
    let tansu = Tansu::start();
    let topic = unique_name("group-topic");
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    create_topics(&pool, BrokerTarget::Any, &[(&topic, partitions)]).await;
    (tansu, topic, unique_name("group"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_members_join_and_leave() {
    let (tansu, topic, group) = tansu_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(&tansu.bootstrap(), &topic, &group, "range", false).await;
}

/// And in no more generations than KIP-429 needs: Tansu answers the SyncGroups of a
/// generation up to a second apart, and a member that rejoined to hand partitions over before
/// the others had theirs would make them fail (see kcon-group's `HANDOVER_DELAY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_keep_their_partitions_through_rebalances() {
    let (tansu, topic, group) = tansu_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(
        &tansu.bootstrap(),
        &topic,
        &group,
        "cooperative-sticky",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_members_join_and_leave() {
    let (tansu, topic, group) = tansu_with_topic(JOIN_THEN_LEAVE_PARTITIONS).await;
    join_then_leave(&tansu.bootstrap(), &topic, &group, "roundrobin", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restarts_with_its_member_id_and_partitions() {
    let (tansu, topic, group) = tansu_with_topic(6).await;
    // Tansu rebalances on a static member's rejoin (see `static_member_restarts`).
    static_member_restarts(&tansu.bootstrap(), &topic, &group, false).await;
}
