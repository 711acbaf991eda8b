//! `group.protocol=consumer` against Apache Kafka 3.9.1 at its defaults (`Kafka::kafka39()`),
//! whose group coordinator does not run the consumer protocol: it lists ConsumerGroupHeartbeat
//! v0 in its ApiVersions (checked here) but answers it UNSUPPORTED_VERSION unless
//! `group.coordinator.rebalance.protocols` includes `consumer`. The member fails at its first
//! join with an error naming the API, the broker and that property, and a `Consumer` hands that
//! error to the application. Nothing waits for a timeout.

use std::time::{Duration, Instant};

use kcon::ErrorKind;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::builder;
use kcon_tests::group::Member;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::kip848::consumer_config;
use kcon_tests::pool::config;

/// Far below any timeout the member has (requests 30 s, rebalance 5 min): failing within it
/// means failing on the answer, not on a timer.
const FAST: Duration = Duration::from_secs(10);

/// A 2-partition topic on Kafka 3.9.1, after checking what the broker lists for
/// ConsumerGroupHeartbeat: v0, which kcon then sends and the broker refuses.
async fn kafka39_with_topic() -> (&'static Kafka, String) {
    let kafka = Kafka::kafka39();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let conn = pool.connection(BrokerTarget::Any).await.unwrap();
    assert_eq!(
        conn.versions().offered(ApiKey::ConsumerGroupHeartbeat),
        Some((0, 0)),
        "Kafka 3.9.1's ApiVersions"
    );
    let topic = unique_name("kip848");
    create_topics(&pool, &[(&topic, 2)]).await;
    (kafka, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_fails_fast_naming_the_api_and_the_broker() {
    let (kafka, topic) = kafka39_with_topic().await;
    let started = Instant::now();
    let member = Member::start(
        "a",
        kafka.bootstrap(),
        consumer_config(&unique_name("g"), &[]),
        &[&topic],
    );
    let fatal = loop {
        if let Some(fatal) = member.log().fatal {
            break fatal;
        }
        assert!(
            started.elapsed() < FAST,
            "no error within {FAST:?}: {:?}",
            member.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(fatal.contains("ConsumerGroupHeartbeat"), "{fatal}");
    assert!(fatal.contains("group.protocol"), "{fatal}");
    assert!(
        fatal.contains("group.coordinator.rebalance.protocols"),
        "{fatal}"
    );
    let port = kafka.nodes()[0].port.to_string();
    assert!(fatal.contains(&port), "the broker is not named: {fatal}");
    assert!(member.log().owned.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_returns_the_error() {
    let (kafka, topic) = kafka39_with_topic().await;
    let mut consumer = builder(kafka.bootstrap())
        .group_id(&unique_name("g"))
        .set("group.protocol", "consumer")
        .build()
        .expect("a consumer");
    consumer.subscribe([topic.as_str()]).expect("subscribed");
    let got = tokio::time::timeout(FAST, consumer.recv()).await;
    let error = match got {
        Ok(Err(e)) => e,
        Ok(Ok(r)) => panic!("a record from a group that cannot be joined: {r:?}"),
        Err(_) => panic!("recv waited {FAST:?} instead of failing"),
    };
    assert_ne!(error.kind(), ErrorKind::Config, "{error}");
    let text = error.to_string();
    assert!(text.contains("ConsumerGroupHeartbeat"), "{text}");
    // Every later call says the same.
    let again = consumer.recv().await.expect_err("the member stays failed");
    assert!(
        again.to_string().contains("ConsumerGroupHeartbeat"),
        "{again}"
    );
}
