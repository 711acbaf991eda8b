//! A share consumer against Apache Kafka 3.9.1 at its defaults (`Kafka::kafka39()`), which has
//! no share groups (no ShareGroupHeartbeat in its ApiVersions, checked here): the first
//! `recv_batch` fails at once with an error naming the API and what a share consumer needs,
//! rather than waiting for records that cannot come.

use std::time::{Duration, Instant};

use kcon::ErrorKind;
use kcon::share::ShareConsumer;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_share_groups_fails_fast_naming_the_api() {
    let kafka = Kafka::kafka39();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let conn = pool.connection(BrokerTarget::Any).await.unwrap();
    assert_eq!(
        conn.versions().offered(ApiKey::ShareGroupHeartbeat),
        None,
        "Kafka 3.9.1 at its defaults offers ShareGroupHeartbeat"
    );
    let topic = unique_name("share");
    create_topics(&pool, &[(&topic, 1)]).await;
    let mut c = ShareConsumer::builder()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", unique_name("g"))
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), c.recv_batch())
        .await
        .expect("an error, not a wait")
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::Fatal, "{e}");
    let text = e.to_string();
    assert!(text.contains("ShareGroupHeartbeat"), "{text}");
    assert!(text.contains("KIP-932"), "{text}");
    // Every later call says the same.
    let again = c.recv_batch().await.unwrap_err();
    assert_eq!(again.to_string(), text);
    c.close().await.unwrap();
}
