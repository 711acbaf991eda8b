//! Who asks Apache Kafka to create a missing topic by asking for its metadata
//! (`allow_auto_topic_creation`; the broker creates it where `auto.create.topics.enable=true`,
//! its default): a producer sending through a shared pool always, as the Java producer; the
//! pool's own requests (a consumer's, an admin call's, a producer's on a pool of its own) as
//! `allow.auto.create.topics` says, default true as in the Java consumer.

use std::time::Duration;

use kcon_pool::{Pool, TopicScope};
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::Kafka;
use kcon_tests::pool::config;

/// Whether Kafka's own tool lists `topic`.
fn listed(kafka: &Kafka, topic: &str) -> bool {
    kafka
        .tool("org.apache.kafka.tools.TopicCommand", &["--list"])
        .lines()
        .any(|l| l.trim() == topic)
}

/// A producer sending through a pool whose `allow.auto.create.topics` is false (a consumer's
/// that must not create, as `kcon dlq replay` shares its pool) still asks for creation, as the
/// Java producer always does: the record sent to a missing topic is delivered into the topic
/// the broker created. (Its requests went by the pool's setting: the record waited for a topic
/// that never came and timed out.)
#[tokio::test(flavor = "multi_thread")]
async fn a_producer_asks_for_creation_whatever_the_pools_setting() {
    let kafka = Kafka::single();
    let mut c = config(kafka.bootstrap());
    c.set("allow.auto.create.topics", "false").unwrap();
    c.set("request.timeout.ms", "5000").unwrap();
    let pool = Pool::new(c).unwrap();
    let producer = Producer::builder()
        .pool(pool.clone())
        .set("delivery.timeout.ms", "10000")
        .set("linger.ms", "0")
        .build()
        .unwrap();
    let topic = unique_name("producer-creates");
    let delivery = producer
        .send(ProducerRecord::new(topic.clone(), "v"))
        .await
        .expect("queued");
    let delivered = tokio::time::timeout(Duration::from_secs(30), delivery)
        .await
        .expect("an answer within the delivery timeout")
        .expect("delivered");
    assert_eq!((delivered.partition, delivered.offset), (0, Some(0)));
    assert!(listed(kafka, &topic));
    producer.close().await.expect("the producer closes");
}

/// The pool's own requests go by `allow.auto.create.topics`: false asks about a missing topic
/// without creating it (UNKNOWN_TOPIC_OR_PARTITION, and Kafka's tool does not list it); the
/// default, true as in the Java consumer, creates it.
#[tokio::test(flavor = "multi_thread")]
async fn the_pools_requests_create_a_topic_only_as_allow_auto_create_topics_says() {
    let kafka = Kafka::single();
    let mut c = config(kafka.bootstrap());
    c.set("allow.auto.create.topics", "false").unwrap();
    let refusing = Pool::new(c).unwrap();
    let kept = unique_name("pool-no-create");
    let m = refusing
        .refresh_metadata(TopicScope::topics([kept.clone()]))
        .await
        .unwrap();
    assert_eq!(m.topic(&kept).map(|t| t.error_code), Some(3));

    let default = Pool::new(config(kafka.bootstrap())).unwrap();
    assert!(default.config().allow_auto_create_topics);
    let created = unique_name("pool-creates");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = default
            .refresh_metadata(TopicScope::topics([created.clone()]))
            .await
            .unwrap();
        if m.topic(&created)
            .is_some_and(|t| t.error_code == 0 && !t.partitions.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{created} not created: {:?}",
            m.topic(&created)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed(kafka, &created));
    // Asked again without creation, the first topic is still not there.
    assert!(!listed(kafka, &kept));
}
