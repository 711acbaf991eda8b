//! The group peers of `kcon_tests::group_peers` against real brokers: librdkafka and
//! kafka-python members split a 6-partition topic exactly once on Apache Kafka 4.4 (the shared
//! single node, every client at its defaults), librdkafka members on the mock cluster, and
//! kafka-python's limits on the mock are pinned.
//!
//! Every test has its own group (and the mock tests their own mock), so they run in parallel.

use std::time::Duration;

use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::partitions;
use kcon_tests::group_peers::{GroupPeer, GroupPeerConfig, PeerClient, wait_for_split};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::mock::MockCluster;
use kcon_tests::pool::config;

/// How long a group of fresh peers may take to settle: a first join, a second round when the
/// other member arrives during the first (learnt at a heartbeat, every 3 s at the clients'
/// defaults; plus the mock's initial rebalance delay there), and a loaded machine.
const SPLIT_WITHIN: Duration = Duration::from_secs(25);

/// Creates a 6-partition topic on the shared Kafka node and returns its name.
fn six_partition_topic(kafka: &Kafka) -> String {
    let topic = unique_name("t");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let pool = Pool::new(config(kafka.bootstrap())).unwrap();
        create_topics(&pool, &[(&topic, 6)]).await;
    });
    topic
}

/// A peer of `client` in `group` on `topic` with `strategy`, on Kafka at the client's defaults.
fn peer_on_kafka(
    client: PeerClient,
    kafka: &Kafka,
    group: &str,
    topic: &str,
    strategy: &str,
) -> GroupPeer {
    let config = GroupPeerConfig::new(client, kafka.bootstrap(), group, &[topic], strategy)
        .at_client_defaults();
    GroupPeer::start_with(&config)
}

/// Two peers of `clients` in one group on a fresh topic split its 6 partitions exactly once;
/// then the first leaves and the second ends up with all 6.
fn two_peers_split_on_kafka(clients: [PeerClient; 2], strategy: &str) {
    let kafka = Kafka::single();
    let topic = six_partition_topic(kafka);
    let group = unique_name("g");
    let all = partitions(&topic, 6);
    let first = peer_on_kafka(clients[0], kafka, &group, &topic, strategy);
    let second = peer_on_kafka(clients[1], kafka, &group, &topic, strategy);
    wait_for_split(&[&first, &second], &all, SPLIT_WITHIN);

    first.close();
    second.wait_for("every partition after the other left", SPLIT_WITHIN, |a| {
        *a == all
    });
    second.close();
}

#[test]
fn two_librdkafka_members_split_with_range_on_kafka() {
    two_peers_split_on_kafka([PeerClient::Librdkafka; 2], "range");
}

#[test]
fn two_librdkafka_members_split_with_cooperative_sticky_on_kafka() {
    two_peers_split_on_kafka([PeerClient::Librdkafka; 2], "cooperative-sticky");
}

#[test]
fn librdkafka_and_kafka_python_split_with_range_on_kafka() {
    two_peers_split_on_kafka([PeerClient::Librdkafka, PeerClient::KafkaPython], "range");
}

/// librdkafka members on the mock cluster, as static members (KIP-345; the mock elects the one
/// with the lowest `group.instance.id` as leader).
#[test]
fn two_librdkafka_members_split_on_the_mock_cluster() {
    let mock = MockCluster::start(3);
    let topic = unique_name("t");
    mock.create_topic(&topic, 6, 3);
    mock.set_group_initial_rebalance_delay(Duration::from_millis(500));
    let group = unique_name("g");
    let all = partitions(&topic, 6);
    let start = |id| {
        let client = PeerClient::Librdkafka;
        GroupPeer::start(
            client,
            mock.bootstrap(),
            &group,
            &[&topic],
            "range",
            Some(id),
        )
    };
    let a = start("a");
    let b = start("b");
    wait_for_split(&[&a, &b], &all, SPLIT_WITHIN);
    a.close();
    b.close();
}

/// kafka-python bootstraps from the mock only when told to speak as to Kafka 2.3 (see the
/// `group_peers` module doc); alone in a group (so it leads, and the mock's sync race can't
/// hit it) it then gets every partition.
#[test]
fn kafka_python_needs_an_old_api_version_on_the_mock_cluster() {
    let mock = MockCluster::start(1);
    let topic = unique_name("t");
    mock.create_topic(&topic, 6, 1);
    mock.set_group_initial_rebalance_delay(Duration::ZERO);
    let group = unique_name("g");
    let config = GroupPeerConfig::new(
        PeerClient::KafkaPython,
        mock.bootstrap(),
        &group,
        &[&topic],
        "range",
    )
    .for_mock_cluster();
    let peer = GroupPeer::start_with(&config);
    let all = partitions(&topic, 6);
    peer.wait_for("every partition", SPLIT_WITHIN, |a| *a == all);
    peer.close();
}

/// Without `api_version`, kafka-python 3.0.12 can't read the mock's refusal of ApiVersions v4
/// and never bootstraps.
#[test]
#[should_panic(expected = "Unable to bootstrap")]
fn kafka_python_cannot_bootstrap_from_the_mock_cluster_by_default() {
    let mock = MockCluster::start(1);
    let mut config = GroupPeerConfig::new(
        PeerClient::KafkaPython,
        mock.bootstrap(),
        &unique_name("g"),
        &["t"],
        "range",
    );
    config
        .extra
        .insert("bootstrap_timeout_ms".to_owned(), serde_json::json!(3000));
    GroupPeer::start_with(&config);
}
