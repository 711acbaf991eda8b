//! `kcon topic create` and `kcon topic list`: on Apache Kafka 4.4 (partitions, replication
//! and configs, read back with Kafka's own tool) and on librdkafka's mock cluster, whose
//! metadata names a controller no broker has.

mod common;

use common::kcon;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::Kafka;
use kcon_tests::mock::MockCluster;

/// `kcon topic create` on librdkafka's mock cluster, whose Metadata answers name a controller
/// id that is none of its brokers': CreateTopics goes to any broker (KRaft brokers forward it to
/// the controller), and the failure names the broker that answered and what it lacks: the mock
/// implements no CreateTopics. (It said "cannot reach the brokers: broker 0 is not in the
/// cluster metadata", with every broker up.)
#[tokio::test(flavor = "multi_thread")]
async fn create_on_a_cluster_whose_controller_is_no_broker_asks_a_broker() {
    let mock = MockCluster::start(3);
    assert_eq!(mock.implemented_versions(ApiKey::CreateTopics), None);
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("mock-create");
    let run = kcon(&["topic", "create", "-b", &b, &topic, "-P", "4"]).await;
    assert_eq!(run.code(), 1, "{run:?}");
    let asked = mock.broker_addrs().iter().enumerate().any(|(i, addr)| {
        run.stderr.contains(&format!(
            "creating topic {topic:?}: broker {} ({addr}) does not offer CreateTopics",
            i + 1
        ))
    });
    assert!(asked, "{}", run.stderr);
    assert!(!run.stderr.contains("cannot reach"), "{}", run.stderr);
}

/// A CreateTopics refusal names the broker that answered and what it said: on Apache Kafka 4.4
/// (one node), replication 3 is INVALID_REPLICATION_FACTOR from broker 1 at its address. (The
/// error gave the code and the broker's message, not who answered.)
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_create_names_the_broker_that_answered() {
    let kafka = Kafka::single();
    let topic = unique_name("refused");
    let run = kcon(&[
        "topic",
        "create",
        "-b",
        kafka.bootstrap(),
        &topic,
        "-r",
        "3",
    ])
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "creating topic {topic:?}: the broker answered INVALID_REPLICATION_FACTOR (38): \
             broker 1 ({}) says: ",
            kafka.bootstrap()
        )),
        "{}",
        run.stderr
    );
}

/// `kcon topic create` on Apache Kafka 4.4 with partitions, a replication factor and topic
/// configs: Kafka's own `kafka-topics --describe` reads them back, each partition led; `topic
/// list` shows the partitions; a second create is TOPIC_ALREADY_EXISTS naming the broker, and
/// with `--if-not-exists` a success that says so.
#[tokio::test(flavor = "multi_thread")]
async fn create_sets_partitions_replication_and_configs_as_kafka_reads_them() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let topic = unique_name("cli-created");
    let create = [
        "topic",
        "create",
        "-b",
        b,
        topic.as_str(),
        "-P",
        "3",
        "-r",
        "1",
        "--config",
        "cleanup.policy=compact",
        "--config",
        "retention.ms=3600000",
    ];
    let run = kcon(&create).await.ok();
    assert!(
        run.stderr
            .contains(&format!("created topic {topic:?} with 3 partitions")),
        "{}",
        run.stderr
    );

    let described = kafka.tool(
        "org.apache.kafka.tools.TopicCommand",
        &["--describe", "--topic", &topic],
    );
    let head = described.lines().next().unwrap_or_default();
    assert!(head.contains("PartitionCount: 3"), "{described}");
    assert!(head.contains("ReplicationFactor: 1"), "{described}");
    assert!(head.contains("cleanup.policy=compact"), "{described}");
    assert!(head.contains("retention.ms=3600000"), "{described}");
    let led = described
        .lines()
        .filter(|l| l.contains("Partition: ") && l.contains("Leader: 1"))
        .count();
    assert_eq!(led, 3, "{described}");

    let listed = kcon(&["topic", "list", "-b", b, "--format", "json"])
        .await
        .ok();
    let partitions: Vec<i64> = listed
        .json_lines()
        .iter()
        .filter(|t| t["topic"] == topic.as_str())
        .map(|t| t["partitions"].as_i64().unwrap())
        .collect();
    assert_eq!(partitions, [3], "{}", listed.stdout);

    let again = kcon(&create).await;
    assert_eq!(again.code(), 1, "{again:?}");
    assert!(
        again.stderr.contains(&format!(
            "creating topic {topic:?}: the broker answered TOPIC_ALREADY_EXISTS (36): broker 1 \
             ({b}) says: "
        )),
        "{}",
        again.stderr
    );
    let mut if_not_exists = create.to_vec();
    if_not_exists.push("--if-not-exists");
    let run = kcon(&if_not_exists).await.ok();
    assert!(
        run.stderr
            .contains(&format!("topic {topic:?} exists already")),
        "{}",
        run.stderr
    );
}
