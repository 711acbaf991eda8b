//! A broker SIGKILLed and started again under load on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`) while a group consumes: no record is lost and none is
//! read twice.
//!
//! The topic has three partitions on all three nodes (`min.insync.replicas=2`, the cluster's
//! default), so the two nodes left keep taking `acks=all` writes: the killed node's partitions
//! get new leaders once the controller fences it (`broker.session.timeout.ms`), and it comes
//! back as a follower that catches up.

use std::time::Duration;

use kcon::Truncation;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    Load, Restore, group_member, read_to_the_end, reading, reads_on, wait_for_partition,
    wait_for_three_brokers,
};
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
    let consumer = group_member(kafka, &group)
        .hooks(told.clone())
        .build()
        .unwrap();
    let member = reading(consumer, &topic).await;

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
    reads_on(&member, read, 100, "with a node killed").await;

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

    read_to_the_end(load, member, PARTITIONS).await;
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
    wait_for_three_brokers(&pool).await;
    drop(restore);
}
