//! A broker SIGKILLed and started again under load on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`) while a group consumes: no record is lost and none is
//! read twice; and each node in turn SIGKILLed and started again under a classic group of kcon
//! and librdkafka, whose commits reach the end of every partition after each.
//!
//! The topic has three partitions on all three nodes (`min.insync.replicas=2`, the cluster's
//! default), so the two nodes left keep taking `acks=all` writes: the killed node's partitions
//! get new leaders once the controller fences it (`broker.session.timeout.ms`), and it comes
//! back as a follower that catches up.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon::Truncation;
use kcon_offsets::{Offsets, OffsetsConfig};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    Load, Restore, group_member, log_ends, read_to_the_end, reading, reads_on, wait_for_commits,
    wait_for_partition, wait_for_three_brokers,
};
use kcon_tests::consumer::{Driven, REBALANCE_WITHIN, STEP, wait_until};
use kcon_tests::group::Tp;
use kcon_tests::group_peers::{GroupPeer, GroupPeerConfig, PeerClient, split_exactly_once};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;
use kcon_tests::truncation::Told;
use serde_json::json;
use tokio::task::block_in_place;

const PARTITIONS: i32 = 3;

/// Waits until node `victim`, started again, says it is in the ISR of each of `topic`'s
/// partitions `0..partitions` with both others.
async fn back_in_sync(pool: &Pool, victim: i32, topic: &str, partitions: i32) {
    for p in 0..partitions {
        wait_for_partition(pool, Some(victim), topic, p, "in sync on all three", |v| {
            v.isr.len() == 3
        })
        .await;
    }
}

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
    back_in_sync(&pool, victim, &topic, PARTITIONS).await;
    let sent = load.sent();
    load.wait_for_more(sent, 50, "with the node back").await;

    read_to_the_end(load, member, PARTITIONS).await;
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
    wait_for_three_brokers(&pool).await;
    drop(restore);
}

/// A classic group of a kcon consumer and a librdkafka consumer, each at its client's defaults
/// (range, auto-commits every 500 ms so that a test can watch them): the partitions split
/// between the two; then each node in turn (the group's coordinator among them) is SIGKILLed
/// while records are written, and started again. The group goes on consuming and committing
/// throughout, and once each node is back in every partition's ISR the group's commits reach
/// the end of every partition: every record written was consumed, none lost. kcon's receiving
/// calls never fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_of_kcon_and_librdkafka_loses_nothing_while_each_node_is_killed_and_restarted()
 {
    const PARTITIONS: i32 = 6;
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("bounced");
    let group = unique_name("bounced-group");
    create(&pool, &[NewTopic::new(&topic, PARTITIONS)]).await;

    let mut consumer = group_member(kafka, &group)
        .partition_assignment_strategy("range")
        .set("auto.commit.interval.ms", "500")
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let kcon = Driven::start("kcon", consumer, STEP);
    let mut peer = GroupPeerConfig::new(
        PeerClient::Librdkafka,
        kafka.bootstrap(),
        &group,
        &[&topic],
        "range",
    )
    .at_client_defaults();
    peer.extra
        .insert("auto.offset.reset".to_owned(), json!("earliest"));
    peer.extra
        .insert("auto.commit.interval.ms".to_owned(), json!(500));
    let peer = block_in_place(|| GroupPeer::start_with(&peer));
    let all: BTreeSet<Tp> = (0..PARTITIONS).map(|p| (topic.clone(), p)).collect();
    let kcon_owns = || -> BTreeSet<Tp> {
        kcon.assignment()
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect()
    };
    wait_until(
        "split exactly once",
        REBALANCE_WITHIN,
        || {
            let (k, p) = (kcon_owns(), peer.assignment());
            !k.is_empty() && !p.is_empty() && split_exactly_once(&[k, p], &all).is_ok()
        },
        || (kcon.state(), peer.events()),
    )
    .await;

    let load = Load::start(kafka.bootstrap(), &topic, Duration::from_millis(10));
    let committed = Offsets::start(pool.clone(), OffsetsConfig::new(group.as_str())).unwrap();
    let why = || (kcon.state(), peer.events());
    load.wait_for_more(0, 100, "before the first kill").await;
    let ends = log_ends(&pool, &topic, PARTITIONS).await;
    wait_for_commits(&committed, &ends, "before the first kill", why).await;

    for victim in kafka.nodes().iter().map(|n| n.id) {
        let sent = load.sent();
        kafka.kill_node(victim);
        load.wait_for_more(sent, 100, &format!("with node {victim} killed"))
            .await;
        kafka.start_node(victim);
        back_in_sync(&pool, victim, &topic, PARTITIONS).await;
        let ends = log_ends(&pool, &topic, PARTITIONS).await;
        let what = format!("once node {victim} is back");
        wait_for_commits(&committed, &ends, &what, why).await;
    }

    let written = load.stop().await;
    let ends = log_ends(&pool, &topic, PARTITIONS).await;
    assert_eq!(ends.values().sum::<i64>(), written.len() as i64, "{ends:?}");
    wait_for_commits(&committed, &ends, "every record written", why).await;
    let (c, seen) = kcon.stop().await;
    assert_eq!(seen.errors, Vec::<String>::new());
    assert!(!seen.records.is_empty(), "kcon read nothing: {seen:?}");
    // kcon first: the peer leaving would start a rebalance under kcon's final commit.
    c.close().await.unwrap();
    block_in_place(|| peer.close());
    wait_for_three_brokers(&pool).await;
    drop(restore);
}
