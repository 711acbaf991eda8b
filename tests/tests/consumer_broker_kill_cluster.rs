//! A broker SIGKILLed and started again under load on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`) while a group consumes: no record is lost and none is
//! read twice.
//!
//! The topic has three partitions on all three nodes (`min.insync.replicas=2`, the cluster's
//! default), so the two nodes left keep taking `acks=all` writes: the killed node's partitions
//! get new leaders once the controller fences it (`broker.session.timeout.ms`), and it comes
//! back as a follower that catches up.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon::{Consumer, Truncation};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    FAULT_WITHIN, Load, Restore, assert_read_exactly_once, wait_for_partition,
    wait_for_three_brokers,
};
use kcon_tests::consumer::{Driven, STEP, wait_until};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;
use kcon_tests::truncation::Told;

const PARTITIONS: i32 = 3;

/// The group's member reads while the node leading partition 0 is killed: the records keep
/// coming (from the new leaders) and keep being read; the node is started again and catches
/// up; every record written is read exactly once, each partition in order, and the member's
/// receiving calls never return an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_every_record_once_across_a_broker_killed_and_restarted_under_load() {
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("killed");
    let group = unique_name("killed-group");
    create(&pool, &[NewTopic::new(&topic, PARTITIONS)]).await;
    let load = Load::start(kafka.bootstrap(), &topic, Duration::from_millis(10));
    let told = Told::default();
    let mut consumer = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .group_id(&group)
        .set("auto.offset.reset", "earliest")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let member = Driven::start("member", consumer, STEP);
    let within = FAULT_WITHIN;
    wait_until(
        "the member reading",
        within,
        || member.received() > 0,
        || member.state().errors,
    )
    .await;

    let victim = wait_for_partition(&pool, None, &topic, 0, "led", |p| p.leader.is_some())
        .await
        .leader
        .expect("a leader");
    let (sent, read) = (load.sent(), member.received());
    kafka.kill_node(victim);
    // Every partition led by another node, as the nodes left say.
    let survivors: Vec<i32> = kafka
        .nodes()
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != victim)
        .collect();
    for p in 0..PARTITIONS {
        wait_for_partition(
            &pool,
            Some(survivors[0]),
            &topic,
            p,
            "led by a survivor",
            |v| v.leader.is_some_and(|l| l != victim) && !v.isr.contains(&victim),
        )
        .await;
    }
    load.wait_for_more(sent, 100, "with a node killed").await;
    wait_until(
        "the member reading with a node killed",
        within,
        || member.received() >= read + 100,
        || (member.received() - read, member.state().errors),
    )
    .await;

    kafka.start_node(victim);
    for p in 0..PARTITIONS {
        wait_for_partition(
            &pool,
            Some(victim),
            &topic,
            p,
            "in sync on all three",
            |v| v.isr.len() == 3,
        )
        .await;
    }
    let sent = load.sent();
    load.wait_for_more(sent, 50, "with the node back").await;

    let written = load.stop().await;
    wait_until(
        "every record read",
        within,
        || member.received() >= written.len(),
        || (member.received(), written.len()),
    )
    .await;
    let (consumer, state) = member.stop().await;
    consumer.close().await.unwrap();
    assert_eq!(state.errors, Vec::<String>::new());
    assert_read_exactly_once(&written, &[&state.records]);
    let partitions: BTreeSet<i32> = state.records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), PARTITIONS as usize);
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
    wait_for_three_brokers(&pool).await;
    drop(restore);
}
