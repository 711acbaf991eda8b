//! The three-node Apache Kafka cluster (`kcon_tests::kafka::Kafka::cluster`): its racks and
//! replication, and a node killed and started again on its port.
//!
//! Every test binary named `*_cluster` runs in nextest's `kafka-cluster` group, one test at a
//! time (`.config/nextest.toml`): its tests may kill nodes and move leaders, which no other
//! test on the cluster must meet, and each leaves every node running.

use std::net::SocketAddr;
use std::time::Duration;

use kcon_pool::{Pool, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;

/// Three brokers, one per rack, each leading some of a replicated topic's partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_in_three_racks_and_replicates_by_default() {
    let kafka = Kafka::cluster();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("spread");
    create(&pool, &[NewTopic::new(&topic, 6)]).await;
    let meta = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let mut racks: Vec<Option<String>> = meta.brokers.values().map(|b| b.rack.clone()).collect();
    racks.sort();
    assert_eq!(
        racks,
        ["rack-1", "rack-2", "rack-3"].map(|r| Some(r.to_owned()))
    );
    let t = meta.topic(&topic).expect("the topic is in the metadata");
    for p in t.partitions.values() {
        assert_eq!(p.replicas.len(), 3, "{p:?}");
    }
}

/// A node killed is gone from the cluster's answers until it is started again, on the same
/// port, and then answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_started_again_answers_on_its_port() {
    let kafka = Kafka::cluster();
    let node = kafka.nodes()[2].clone();
    kafka.kill_node(node.id);
    assert!(!kafka.nodes()[2].alive);
    assert!(
        std::net::TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], node.port)),
            Duration::from_secs(1)
        )
        .is_err(),
        "the killed node still accepts connections"
    );
    kafka.start_node(node.id);
    assert!(kafka.nodes()[2].alive);
    let pool = Pool::new(config(&format!("127.0.0.1:{}", node.port))).unwrap();
    let meta = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(meta.brokers.len(), 3);
}
