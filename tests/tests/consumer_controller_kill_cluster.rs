//! The active controller SIGKILLed on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`, where every node is a broker and a KRaft controller)
//! while a group's member reads under load at the client's defaults. The two controllers left
//! elect a new quorum leader, which fences the killed node: its partitions get new leaders and
//! metadata changes go on (a topic created meanwhile is written to and read by kcon). The node
//! comes back. Every record written is read exactly once, in order per partition, and no
//! receiving call returns an error.

use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    FAULT_WITHIN, Load, Restore, group_member, read_to_the_end, reading, reads_on,
    wait_for_partition, wait_for_three_brokers,
};
use kcon_tests::consumer::{builder_at_defaults, recv_n};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;

const PARTITIONS: i32 = 3;

/// The KRaft quorum's leader (the active controller), as Kafka's own tool describes it; `None`
/// when the tool cannot say (no leader yet).
fn quorum_leader(kafka: &Kafka) -> Option<i32> {
    let out = kafka.tool(
        "org.apache.kafka.tools.MetadataQuorumCommand",
        &["describe", "--status"],
    );
    out.lines()
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .and_then(|id| id.trim().parse().ok())
        .filter(|&id| id >= 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_every_record_once_across_the_active_controller_killed() {
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("controller-killed");
    let group = unique_name("controller-killed-group");
    create(&pool, &[NewTopic::new(&topic, PARTITIONS)]).await;
    let load = Load::start(kafka.bootstrap(), &topic, Duration::from_millis(10));
    let member = reading(group_member(kafka, &group).build().unwrap(), &topic).await;
    let within = FAULT_WITHIN;

    let controller = tokio::task::block_in_place(|| quorum_leader(kafka)).expect("a controller");
    let (sent, read) = (load.sent(), member.received());
    kafka.kill_node(controller);
    let deadline = Instant::now() + within;
    let elected = loop {
        let leader = tokio::task::block_in_place(|| quorum_leader(kafka));
        if let Some(id) = leader.filter(|&id| id != controller) {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no new active controller within {within:?} after node {controller} was killed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(elected, controller);
    // The new controller fences the killed node once its broker session lapses
    // (`broker.session.timeout.ms`): its partitions get leaders on the nodes left, and no new
    // replica is placed on it (before that, a topic created could get one there).
    let survivor = kafka
        .nodes()
        .iter()
        .map(|n| n.id)
        .find(|&id| id != controller)
        .expect("a node left");
    for p in 0..PARTITIONS {
        wait_for_partition(
            &pool,
            Some(survivor),
            &topic,
            p,
            "led by a node left, out of the killed node's reach",
            |v| v.leader.is_some_and(|l| l != controller) && !v.isr.contains(&controller),
        )
        .await;
    }

    // Metadata changes go on under the new controller: a topic created now is led, written
    // and read. Kafka's replica placer stripes replicas over the racks, and each rack here is
    // one node, so one of the two replicas may be placed on the killed (fenced) node, never to
    // join the ISR until it is back: `min.insync.replicas=1` lets `acks=all` writes in then.
    let fresh = unique_name("controller-killed-fresh");
    create(
        &pool,
        &[NewTopic::new(&fresh, 1)
            .replication(2)
            .config("min.insync.replicas", "1")],
    )
    .await;
    let producer = Producer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .set("acks", "all")
        .build()
        .unwrap();
    for i in 0..10 {
        producer
            .send(ProducerRecord::new(&fresh, format!("fresh-{i}")).with_partition(0))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.expect("the producer closes");
    let mut reader = builder_at_defaults(kafka.bootstrap()).build().unwrap();
    reader.assign([TopicPartition::new(&fresh, 0)]).unwrap();
    let got = recv_n(&mut reader, 10, within).await;
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(
        values,
        (0..10).map(|i| format!("fresh-{i}")).collect::<Vec<_>>()
    );
    reader.close().await.unwrap();

    load.wait_for_more(sent, 100, "with the controller killed")
        .await;
    reads_on(&member, read, 100, "with the controller killed").await;

    kafka.start_node(controller);
    wait_for_three_brokers(&pool).await;
    read_to_the_end(load, member, PARTITIONS).await;
    drop(restore);
}
