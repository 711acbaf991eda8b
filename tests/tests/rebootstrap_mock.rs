//! Rebootstrap (KIP-899) on librdkafka's mock cluster: every broker the consumers know is
//! replaced by new ones at new addresses, and the bootstrap address (a forwarder re-pointed, as
//! a DNS name or a load balancer would be) then leads to the new ones. A consumer in a group and
//! one by assignment both go on where they were, nothing lost and nothing read twice; one with
//! `metadata.recovery.strategy=none` keeps dialling the brokers that are gone.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon::{RebootstrapCause, TopicPartition};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    assert_exactly, builder, expect_no_record, group_builder, partitions, recv_n,
};
use kcon_tests::forwarder::Forwarder;
use kcon_tests::mock::{CoordinatorType, MockCluster};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

/// Records produced per partition at a time (the values `produce` gives repeat every batch).
const BATCH: i64 = 5;
/// How long a consumer may take to find the new brokers: the reconnect backoffs to the gone
/// ones, the rebootstrap, and (for the group) a new coordinator.
const RESUME_WITHIN: Duration = Duration::from_secs(60);

fn each_partition(topic: &str, offset: i64) -> BTreeMap<TopicPartition, i64> {
    partitions(topic, 2)
        .into_iter()
        .map(|tp| (tp, offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_resume_after_every_known_broker_is_replaced() {
    let mock = MockCluster::start(2);
    mock.set_group_initial_rebalance_delay(Duration::from_millis(200));
    let topic = unique_name("rebootstrap");
    mock.create_topic(&topic, 2, 2);
    let producer = Pool::new(config(mock.bootstrap())).unwrap();
    for p in 0..2 {
        produce(&producer, &topic, p, BATCH as usize, now_ms()).await;
    }
    drop(producer);

    let forwarder = Forwarder::start(mock.broker_addr(1)).await;
    let boot = forwarder.addr().to_string();
    let group = unique_name("g");
    let mut grouped = group_builder(&boot, &group, "range")
        .set("enable.auto.commit", "false")
        .build()
        .unwrap();
    grouped.subscribe([topic.as_str()]).unwrap();
    let mut assigned = builder(&boot).build().unwrap();
    assigned.assign(partitions(&topic, 2)).unwrap();
    let mut stuck = builder(&boot)
        .set("metadata.recovery.strategy", "none")
        .build()
        .unwrap();
    stuck.assign(partitions(&topic, 2)).unwrap();

    let first = each_partition(&topic, BATCH);
    let none = BTreeMap::new();
    let got = recv_n(&mut grouped, 2 * BATCH as usize, RESUME_WITHIN).await;
    assert_exactly(&got, &none, &first, BATCH);
    grouped.commit().await.unwrap();
    let got = recv_n(&mut assigned, 2 * BATCH as usize, RESUME_WITHIN).await;
    assert_exactly(&got, &none, &first, BATCH);
    let got = recv_n(&mut stuck, 2 * BATCH as usize, RESUME_WITHIN).await;
    assert_exactly(&got, &none, &first, BATCH);

    // Brokers 1 and 2 stop answering (so that nobody learns of the new ones from them), brokers
    // 3 and 4 join and take every partition and the group, then 1 and 2 are gone for good, and
    // the bootstrap address leads to broker 3.
    mock.set_down(1);
    mock.set_down(2);
    let three = mock.add_broker(3);
    let four = mock.add_broker(4);
    mock.decommission(1);
    mock.decommission(2);
    mock.set_coordinator(CoordinatorType::Group, &group, 3);
    for old in [mock.broker_addr(1), mock.broker_addr(2)] {
        assert!(old != three && old != four, "{old} reused");
    }
    forwarder.repoint(three);
    let producer = Pool::new(config(&format!("{three},{four}"))).unwrap();
    for p in 0..2 {
        produce(&producer, &topic, p, BATCH as usize, now_ms()).await;
    }

    let second = each_partition(&topic, 2 * BATCH);
    let got = recv_n(&mut grouped, 2 * BATCH as usize, RESUME_WITHIN).await;
    assert_exactly(&got, &first, &second, BATCH);
    grouped.commit().await.unwrap();
    let got = recv_n(&mut assigned, 2 * BATCH as usize, RESUME_WITHIN).await;
    assert_exactly(&got, &first, &second, BATCH);
    for (name, consumer) in [("grouped", &grouped), ("assigned", &assigned)] {
        let r = consumer.metrics().rebootstraps;
        assert!(r.of(RebootstrapCause::Unreachable) >= 1, "{name}: {r:?}");
    }
    // Without rebootstrap the third consumer knows only brokers 1 and 2, and gets nothing.
    expect_no_record(&mut stuck, Duration::from_secs(3)).await;
    assert_eq!(stuck.metrics().rebootstraps.total(), 0);

    grouped.close().await.unwrap();
    assigned.close().await.unwrap();
}
