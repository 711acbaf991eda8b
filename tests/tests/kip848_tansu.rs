//! `group.protocol=consumer` against Tansu, which offers no ConsumerGroupHeartbeat: the member
//! fails at its first join with an error naming the API and the broker, and a `Consumer` hands
//! that error to the application. Nothing waits for a timeout.

use std::time::{Duration, Instant};

use kcon::ErrorKind;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::consumer::builder;
use kcon_tests::group::{Member, create_topics};
use kcon_tests::kip848::consumer_config;
use kcon_tests::pool::config;

/// Far below any timeout the member has (requests 30 s, rebalance 5 min): failing within it
/// means failing on the answer, not on a timer.
const FAST: Duration = Duration::from_secs(10);

async fn tansu_with_topic() -> (Tansu, String) {
    let tansu = Tansu::start();
    let topic = unique_name("kip848");
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 2)]).await;
    (tansu, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_fails_fast_naming_the_api_and_the_broker() {
    let (tansu, topic) = tansu_with_topic().await;
    let started = Instant::now();
    let member = Member::start(
        "a",
        &tansu.bootstrap(),
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
    let port = tansu.addr().port().to_string();
    assert!(fatal.contains(&port), "the broker is not named: {fatal}");
    assert!(member.log().owned.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_returns_the_error() {
    let (tansu, topic) = tansu_with_topic().await;
    let mut consumer = builder(&tansu.bootstrap())
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
