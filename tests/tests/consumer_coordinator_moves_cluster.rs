//! A group's coordinator moving on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`): the node coordinating the group is SIGKILLed while the
//! group's member reads under load, with the classic protocol and with the consumer protocol
//! (KIP-848), each at the client's defaults. Once the controller fences the node, the group is
//! coordinated from the leader of its `__consumer_offsets` partition on another node: the member
//! finds it, goes on reading, and its auto-commits land there; the node comes back. Every
//! record written is read exactly once, in order per partition, and no receiving call returns
//! an error.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    FAULT_WITHIN, Load, Restore, group_member, read_to_the_end, reading, reads_on,
    wait_for_three_brokers,
};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;

const PARTITIONS: i32 = 3;

/// The group's committed offsets, summed over its partitions, as its coordinator answers;
/// `None` while no coordinator answers for it.
async fn committed_sum(pool: &Pool, group: &str, topic: &str) -> Option<i64> {
    let partitions: BTreeSet<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let groups = [group.to_owned()];
    let answers = kcon_admin::committed_offsets_of_groups(pool, &groups, Some(&partitions), false)
        .await
        .ok()?;
    let offsets = answers.get(group)?.as_ref().ok()?;
    Some(
        offsets
            .values()
            .filter_map(|p| p.committed.as_ref().map(|c| c.offset))
            .sum(),
    )
}

async fn coordinator_moves_under_a_reading_member(protocol: &str) {
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("coordinator-moves");
    let group = unique_name("coordinator-moves-group");
    create(&pool, &[NewTopic::new(&topic, PARTITIONS)]).await;
    let load = Load::start(kafka.bootstrap(), &topic, Duration::from_millis(10));
    let consumer = group_member(kafka, &group)
        .set("group.protocol", protocol)
        .build()
        .unwrap();
    let member = reading(consumer, &topic).await;
    let within = FAULT_WITHIN;

    let dead = kcon_admin::find_coordinator(&pool, &group).await.unwrap();
    let (sent, read) = (load.sent(), member.received());
    kafka.kill_node(dead.id);
    // The group moves when the controller fences the node (`broker.session.timeout.ms`).
    let deadline = Instant::now() + within;
    let moved = loop {
        if let Ok(c) = kcon_admin::find_coordinator(&pool, &group).await
            && c.id != dead.id
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the group's coordinator did not move from node {} within {within:?}",
            dead.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // What the new coordinator has committed once it answers, then: the member's auto-commits
    // (every 5 s) move it on.
    let deadline = Instant::now() + within;
    let at_move = loop {
        if let Some(sum) = committed_sum(&pool, &group, &topic).await {
            break sum;
        }
        assert!(
            Instant::now() < deadline,
            "no committed offsets from the new coordinator (node {}) within {within:?}",
            moved.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    load.wait_for_more(sent, 100, "with the coordinator's node killed")
        .await;
    reads_on(&member, read, 100, "after the coordinator moved").await;
    let deadline = Instant::now() + within;
    loop {
        let now = committed_sum(&pool, &group, &topic).await;
        if now.is_some_and(|sum| sum > at_move) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no commit reached the new coordinator (node {}) within {within:?}: {at_move} then {now:?}",
            moved.id
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    kafka.start_node(dead.id);
    read_to_the_end(load, member, PARTITIONS).await;
    wait_for_three_brokers(&pool).await;
    drop(restore);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_reads_every_record_once_while_its_coordinator_moves() {
    coordinator_moves_under_a_reading_member("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_protocol_group_reads_every_record_once_while_its_coordinator_moves() {
    coordinator_moves_under_a_reading_member("consumer").await;
}
