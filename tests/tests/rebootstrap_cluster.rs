//! Rebootstrap (KIP-899) on Apache Kafka's three-node cluster: every node is stopped and started
//! again on a new client port (`Kafka::move_nodes`), so that no broker a consumer knows answers
//! any more, and the bootstrap address (a forwarder re-pointed, as a DNS name or a load
//! balancer in front of a cluster would be) leads to the moved nodes. Consumers at the client's
//! defaults, one in a group and one by assignment, go on where they were, nothing lost and
//! nothing read twice; one with `metadata.recovery.strategy=none` keeps dialling the addresses
//! that are gone; one whose bootstrap address now leads to another cluster (the single node)
//! stops with an error naming both cluster ids.
//!
//! REBOOTSTRAP_REQUIRED and the rebootstrap trigger time stay with the scripted broker
//! (kcon-pool's `scripted/rebootstrap.rs`): nothing in Apache Kafka 4.4's configuration makes a
//! broker send that error, and a broker that answers but gives no metadata is no state a real
//! cluster can be put in.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon::{Consumer, ErrorKind, RebootstrapCause, TopicPartition};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{Restore, all_in_sync, log_ends, wait_for_three_brokers};
use kcon_tests::consumer::{
    assert_exactly, builder_at_defaults, expect_no_record, group_builder_at_defaults, partitions,
    recv_n,
};
use kcon_tests::forwarder::Forwarder;
use kcon_tests::kafka::{Kafka, NewTopic, create, first_address};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

const PARTITIONS: i32 = 2;
/// Records produced per partition at a time (the values `produce` gives repeat every batch).
const BATCH: i64 = 5;
/// How long a consumer may take to find the moved nodes: the reconnect backoffs to the gone
/// ones, the rebootstrap, the cluster electing leaders again and (for the group) loading the
/// group on its coordinator.
const RESUME_WITHIN: Duration = Duration::from_secs(90);

fn each_partition(topic: &str, offset: i64) -> BTreeMap<TopicPartition, i64> {
    partitions(topic, PARTITIONS)
        .into_iter()
        .map(|tp| (tp, offset))
        .collect()
}

/// One batch to each partition through a pool on `bootstrap`, once every partition is in
/// sync on all three nodes (restarted nodes rejoin their leaders' ISR a moment after they
/// answer, and `acks=all` is refused until then); returns the log ends from before it.
async fn produce_batches(bootstrap: &str, topic: &str) -> BTreeMap<TopicPartition, i64> {
    let pool = Pool::new(config(bootstrap)).unwrap();
    all_in_sync(&pool, topic, PARTITIONS).await;
    let ends = log_ends(&pool, topic, PARTITIONS).await;
    for p in 0..PARTITIONS {
        produce(&pool, topic, p, BATCH as usize, now_ms()).await;
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_resume_after_every_node_moves_to_a_new_address() {
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let topic = unique_name("rebootstrap");
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create(&pool, &[NewTopic::new(&topic, PARTITIONS)]).await;
    drop(pool);
    produce_batches(kafka.bootstrap(), &topic).await;

    let forwarder = Forwarder::start(first_address(kafka.bootstrap())).await;
    let boot = forwarder.addr().to_string();
    let mut grouped = group_builder_at_defaults(&boot, &unique_name("g"), "range")
        .set("enable.auto.commit", "false")
        .build()
        .unwrap();
    grouped.subscribe([topic.as_str()]).unwrap();
    let mut assigned = builder_at_defaults(&boot).build().unwrap();
    assigned.assign(partitions(&topic, PARTITIONS)).unwrap();
    let mut stuck = builder_at_defaults(&boot)
        .set("metadata.recovery.strategy", "none")
        .build()
        .unwrap();
    stuck.assign(partitions(&topic, PARTITIONS)).unwrap();
    let to_another = Forwarder::start(first_address(kafka.bootstrap())).await;
    let mut elsewhere = builder_at_defaults(&to_another.addr().to_string())
        .build()
        .unwrap();
    elsewhere.assign(partitions(&topic, PARTITIONS)).unwrap();

    let first = each_partition(&topic, BATCH);
    let none = BTreeMap::new();
    let n = (PARTITIONS as i64 * BATCH) as usize;
    for consumer in [&mut grouped, &mut assigned, &mut stuck, &mut elsewhere] {
        let got = recv_n(consumer, n, RESUME_WITHIN).await;
        assert_exactly(&got, &none, &first, BATCH);
    }
    grouped.commit().await.unwrap();

    // Every node the consumers know stops answering at once and comes back at a new address;
    // the bootstrap address leads to the first of them, the other one to another cluster.
    let moved = kafka.move_nodes();
    assert!(
        moved.split(',').all(|a| !kafka.bootstrap().contains(a)),
        "{moved} reuses an address of {}",
        kafka.bootstrap()
    );
    forwarder.repoint(first_address(&moved));
    let single = Kafka::single();
    to_another.repoint(first_address(single.bootstrap()));
    // Nothing written before the move is gone from the moved nodes.
    assert_eq!(produce_batches(&moved, &topic).await, first);

    let second = each_partition(&topic, 2 * BATCH);
    let got = recv_n(&mut grouped, n, RESUME_WITHIN).await;
    assert_exactly(&got, &first, &second, BATCH);
    grouped.commit().await.unwrap();
    let got = recv_n(&mut assigned, n, RESUME_WITHIN).await;
    assert_exactly(&got, &first, &second, BATCH);
    for (name, consumer) in [("grouped", &grouped), ("assigned", &assigned)] {
        let r = consumer.metrics().rebootstraps;
        assert!(r.of(RebootstrapCause::Unreachable) >= 1, "{name}: {r:?}");
    }
    // Without rebootstrap the third consumer knows only the old addresses, and gets nothing.
    expect_no_record(&mut stuck, Duration::from_secs(3)).await;
    assert_eq!(stuck.metrics().rebootstraps.total(), 0);
    // The fourth one's bootstrap address leads to another cluster: it stops, naming both ids.
    let e = stopped(&mut elsewhere).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let text = e.to_string();
    for id in [kafka.cluster_id(), single.cluster_id()] {
        assert!(text.contains(&id), "{id} not named: {text}");
    }
    assert!(text.contains("bootstrap.servers"), "{text}");

    grouped.close().await.unwrap();
    assigned.close().await.unwrap();
    let pool = Pool::new(config(&moved)).unwrap();
    wait_for_three_brokers(&pool).await;
    drop(restore);
}

/// The error a consumer's receiving call returns once it cannot go on; panics on a record, or
/// when none comes within [`RESUME_WITHIN`].
async fn stopped(consumer: &mut Consumer) -> kcon::Error {
    match tokio::time::timeout(RESUME_WITHIN, consumer.recv()).await {
        Ok(Err(e)) => e,
        Ok(Ok(r)) => panic!("a record where the consumer should have stopped: {r:?}"),
        Err(_) => panic!("no error within {RESUME_WITHIN:?}: {consumer:?}"),
    }
}
