//! `kcon` against Apache Kafka 3.9.1 at its defaults (the shared `kafka39` node: the consumer
//! protocol off, no share groups, no group configs): what the broker cannot do is said once, on
//! stderr (where log lines go too), naming what would enable it.

mod common;

use common::kcon;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{self, Kafka};

/// A topic of one partition on the 3.9.1 node.
async fn topic() -> (&'static Kafka, String) {
    let kafka = Kafka::kafka39();
    let pool = Pool::new(kcon_tests::pool::config(kafka.bootstrap())).unwrap();
    let topic = unique_name("kafka39-cli");
    kafka::create_topics(&pool, &[(&topic, 1)]).await;
    (kafka, topic)
}

/// `kcon consume -X group.protocol=consumer` on Kafka 3.9.1, whose coordinator answers
/// ConsumerGroupHeartbeat with UNSUPPORTED_VERSION while
/// `group.coordinator.rebalance.protocols` is `classic` (its default): the run fails, and the
/// reason, naming the broker setting that enables the protocol and the client setting that
/// needs none, is printed once (it was printed three times: two WARN lines and the error).
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_protocol_member_refused_by_kafka_3_9_is_told_once_naming_the_broker_setting() {
    let (kafka, topic) = topic().await;
    let group = unique_name("kafka39-cli-g");
    let run = kcon(&[
        "consume",
        "-b",
        kafka.bootstrap(),
        "-g",
        &group,
        "-X",
        "group.protocol=consumer",
        &topic,
    ])
    .await;
    assert_ne!(run.code(), 0, "{run:?}");
    assert_eq!(
        run.stderr.matches("KIP-848").count(),
        1,
        "told once: {}",
        run.stderr
    );
    for what in [
        "group.coordinator.rebalance.protocols=classic,consumer",
        "group.protocol=classic",
        "UNSUPPORTED_VERSION",
    ] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
}

/// `kcon share consume` on Kafka 3.9.1, which has no share groups: the reason is printed
/// once (it was printed three times too).
#[tokio::test(flavor = "multi_thread")]
async fn a_share_member_refused_by_kafka_3_9_is_told_once() {
    let (kafka, topic) = topic().await;
    let group = unique_name("kafka39-cli-s");
    let run = kcon(&[
        "share",
        "consume",
        "-b",
        kafka.bootstrap(),
        "-g",
        &group,
        &topic,
    ])
    .await;
    assert_ne!(run.code(), 0, "{run:?}");
    assert_eq!(
        run.stderr.matches("KIP-932").count(),
        1,
        "told once: {}",
        run.stderr
    );
    assert!(run.stderr.contains("ShareGroupHeartbeat"), "{}", run.stderr);
}

/// `kcon group config` on Kafka 3.9.1, which has no group configs (KIP-848's GROUP config
/// resource came with Kafka 4.0): reading them and setting one fail, naming the API, the
/// broker's answer and the version that has them.
#[tokio::test(flavor = "multi_thread")]
async fn group_configs_refused_by_kafka_3_9_name_the_version_that_has_them() {
    let kafka = Kafka::kafka39();
    let group = unique_name("kafka39-cli-config");
    let run = kcon(&["group", "config", "-b", kafka.bootstrap(), &group]).await;
    assert_eq!(run.code(), 1, "{run:?}");
    for what in [
        "the broker has no group configs",
        "DescribeConfigs",
        "INVALID_REQUEST (42)",
        "Apache Kafka 4.0 or later",
    ] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
    let run = kcon(&[
        "group",
        "config",
        "-b",
        kafka.bootstrap(),
        &group,
        "--set",
        "share.auto.offset.reset=earliest",
    ])
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    for what in [
        "IncrementalAlterConfigs",
        "Unknown resource type 32",
        "Apache Kafka 4.0 or later",
    ] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
}
