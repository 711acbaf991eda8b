//! What kcon logs on Apache Kafka, captured (`kcon_tests::logs`): each line once, at the level
//! its event deserves. A commit a rebalance refuses is routine (INFO, once); a commit from
//! outside a group that has members is a mistake (WARN).
//!
//! The log capture is the test process's, and nextest runs each test in a process of its own;
//! the lines counted name what the test made unique (its group) all the same.

use std::time::{Duration, Instant};

use kcon_core::TopicPartition;
use kcon_offsets::Offsets;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    Member, REBALANCE_WITHIN, group_config_at_defaults, partitions, wait_for_exactly_once,
};
use kcon_tests::kafka::{self, Kafka};
use kcon_tests::logs::{self, Logs};
use kcon_tests::offsets::{commit_map, offsets_config};
use kcon_tests::pool::config;

/// The lines logged since `mark` that name `what`.
fn naming(logs: &Logs, mark: usize, what: &str) -> Vec<String> {
    logs.since(mark)
        .into_iter()
        .filter(|l| l.contains(what))
        .collect()
}

/// Waits (up to `within`) until a line logged since `mark` names both `a` and `b`.
async fn wait_for_line(logs: &Logs, mark: usize, a: &str, b: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !naming(logs, mark, a).iter().any(|l| l.contains(b)) {
        assert!(
            Instant::now() < deadline,
            "no line naming {a} and {b} within {within:?}: {:#?}",
            logs.since(mark)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An auto-commit still carrying the generation a rebalance ended (a second member joined) is
/// refused with ILLEGAL_GENERATION: one INFO line says so, and nothing at WARN (the offsets
/// task and its driver each logged it at WARN before). A commit sent from outside the group
/// while it has members is refused too, and that one is worth a WARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_a_rebalance_refuses_is_logged_once_at_info() {
    let logs = logs::capture();
    let kafka = Kafka::single();
    let topic = unique_name("logs-rebalance");
    let admin = Pool::new(config(kafka.bootstrap())).unwrap();
    kafka::create_topics(&admin, &[(&topic, 2)]).await;
    let group = unique_name("logs-rebalance-g");
    let a = Member::start(
        "a",
        kafka.bootstrap(),
        group_config_at_defaults(&group, "range,cooperative-sticky", &[]),
        &[&topic],
    );
    wait_for_exactly_once(&[&a], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    let first = a.snapshot().generation;

    let offsets = Offsets::start(
        Pool::new(config(kafka.bootstrap())).unwrap(),
        // Auto-commit every 5 s (the default): the test follows the new generation long
        // before the next round after the refused one.
        offsets_config(&group, &[("enable.auto.commit", "true")]),
    )
    .unwrap();
    offsets.set_generation(first.id, first.member_id.clone());
    let tp = TopicPartition::new(&topic, 0);
    offsets.store_offset(tp.clone(), 1, None);
    // The first generation's auto-commit gets through (offset 2: the record at 1 is done).
    let deadline = Instant::now() + Duration::from_secs(30);
    while offsets
        .committed(Some([tp.clone()].into()))
        .await
        .unwrap()
        .get(&tp)
        .cloned()
        .flatten()
        .map(|o| o.offset)
        != Some(2)
    {
        assert!(
            Instant::now() < deadline,
            "the first auto-commit never landed: {:#?}",
            logs.lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A second member joins: generation `first` is over.
    let mark = logs.mark();
    let b = Member::start(
        "b",
        kafka.bootstrap(),
        group_config_at_defaults(&group, "range,cooperative-sticky", &[]),
        &[&topic],
    );
    wait_for_exactly_once(&[&a, &b], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    offsets.store_offset(tp.clone(), 2, None);
    wait_for_line(
        &logs,
        mark,
        &group,
        "ILLEGAL_GENERATION",
        Duration::from_secs(30),
    )
    .await;
    // Following the member's new generation, the next auto-commit gets through.
    let second = a.snapshot().generation;
    assert!(second.id > first.id, "{first:?} {second:?}");
    offsets.set_generation(second.id, second.member_id.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while offsets
        .committed(Some([tp.clone()].into()))
        .await
        .unwrap()
        .get(&tp)
        .cloned()
        .flatten()
        .map(|o| o.offset)
        != Some(3)
    {
        assert!(
            Instant::now() < deadline,
            "the second auto-commit never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = logs.since(mark);
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("ILLEGAL_GENERATION"))
        .collect();
    assert_eq!(refused.len(), 1, "logged once: {lines:#?}");
    assert!(
        refused[0].contains(" INFO ") && refused[0].contains("auto-commit failed"),
        "{lines:#?}"
    );
    let warns: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" WARN ") && (l.contains(&group) || l.contains("commit")))
        .collect();
    assert!(warns.is_empty(), "nothing at WARN: {warns:#?}");

    // Outside the group (generation -1, no member id) while it has members: refused, and a
    // WARN says so, once.
    let mark = logs.mark();
    let outsider = Offsets::start(
        Pool::new(config(kafka.bootstrap())).unwrap(),
        offsets_config(&group, &[]),
    )
    .unwrap();
    let refused = outsider
        .commit_sync(Some(commit_map(&[(&topic, 1, 5, None, "")])))
        .await
        .unwrap_err();
    let lines = logs.since(mark);
    let warns: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("commit"))
        .collect();
    assert_eq!(warns.len(), 1, "{refused}: {lines:#?}");
    assert!(warns[0].contains("commit failed"), "{warns:#?}");

    outsider.close(Duration::from_secs(5)).await;
    offsets.close(Duration::from_secs(5)).await;
    for m in [a, b] {
        let log = m.close().await;
        assert!(log.fatal.is_none(), "{log:?}");
    }
}

/// A consumer-protocol consumer (`group.protocol=consumer`) on Kafka 3.9.1 at its defaults,
/// whose coordinator answers ConsumerGroupHeartbeat with UNSUPPORTED_VERSION: the error the
/// application receives names the broker setting that enables the protocol and the client
/// setting that needs none, and is not logged besides (it was logged twice at WARN too): the
/// application, or `kcon`, tells it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_protocol_member_refused_by_kafka_3_9_names_the_broker_setting() {
    let logs = logs::capture();
    let kafka = Kafka::kafka39();
    let topic = unique_name("logs-kip848");
    let admin = Pool::new(config(kafka.bootstrap())).unwrap();
    kafka::create_topics(&admin, &[(&topic, 1)]).await;
    let group = unique_name("logs-kip848-g");
    let mark = logs.mark();
    let mut consumer = kcon::Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .group_id(&group)
        .set("group.protocol", "consumer")
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("an answer within 30 s")
        .expect_err("the coordinator refuses the consumer protocol");
    for what in [
        "group.coordinator.rebalance.protocols=classic,consumer",
        "group.protocol=classic",
        "UNSUPPORTED_VERSION",
    ] {
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    let told: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains("KIP-848"))
        .collect();
    assert!(told.is_empty(), "returned, not logged: {told:#?}");
    drop(consumer);
}
