//! kcon group members against Tansu: joins, leaves and rebalances, eager and cooperative, and
//! a static member's restart. Tansu completes a join after about half the session timeout, so
//! each rebalance here takes a few seconds.

use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::{create_topics, join_then_leave, static_member_restarts};
use kcon_tests::pool::config;

/// A Tansu broker with a 6-partition topic; returns the broker, the topic and a group name.
async fn tansu_with_topic() -> (Tansu, String, String) {
    let tansu = Tansu::start();
    let topic = unique_name("group-topic");
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 6)]).await;
    (tansu, topic, unique_name("group"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_members_join_and_leave() {
    let (tansu, topic, group) = tansu_with_topic().await;
    join_then_leave(&tansu.bootstrap(), &topic, &group, "range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_members_keep_their_partitions_through_rebalances() {
    let (tansu, topic, group) = tansu_with_topic().await;
    join_then_leave(&tansu.bootstrap(), &topic, &group, "cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundrobin_members_join_and_leave() {
    let (tansu, topic, group) = tansu_with_topic().await;
    join_then_leave(&tansu.bootstrap(), &topic, &group, "roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restarts_with_its_member_id_and_partitions() {
    let (tansu, topic, group) = tansu_with_topic().await;
    // Tansu rebalances on a static member's rejoin (see `static_member_restarts`).
    static_member_restarts(&tansu.bootstrap(), &topic, &group, false).await;
}
