//! OAUTHBEARER with tokens from a real OAuth 2.0 server (`sasl.oauthbearer.token.endpoint.url`,
//! the client credentials grant), on `Kafka::oidc()`: Apache Kafka 4.4.0 validating the JWTs
//! with its own `OAuthBearerValidatorCallbackHandler` against the key set of the Ory Hydra
//! started with the cluster, and ending each session when its token expires (KIP-368). Every
//! test registers OAuth clients of its own names.
//!
//! Here: the token endpoint going away and coming back (this test counts log lines, so it
//! keeps to its own process).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kcon::Consumer;
use kcon_produce::ProducerRecord;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::recv_n;
use kcon_tests::forwarder::Forwarder;
use kcon_tests::kafka::Kafka;
use kcon_tests::logs::capture_at;
use kcon_tests::oidc::{consumer, login, producer, topic};
use kcon_tests::pool::dead_address;
use tracing_subscriber::filter::LevelFilter;

/// The token endpoint goes away while a group's consumer reads: the renewal fails, the token
/// held stays in use, the failure is reported once and the recovery once, and records keep
/// coming throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_going_away_is_reported_once_and_recovered_from() {
    let logs = capture_at(LevelFilter::DEBUG);
    let hydra = Kafka::oidc().hydra();
    let id = unique_name("oidc-away");
    // Tokens of 30 s renewed after half their life: when a renewal fails, the token held has
    // 15 s left, more than the outage lasts after it.
    hydra.create_client(&id, "away-secret", Some(Duration::from_secs(30)));
    let public: SocketAddr = hydra.public.parse().unwrap();
    let front = Forwarder::start(public).await;
    let endpoint = hydra
        .token_endpoint
        .replace(&hydra.public, &front.addr().to_string());
    let (bootstrap, mut props) = login(&id, "away-secret", &endpoint);
    props.push(("sasl.login.refresh.window.factor", "0.5".to_owned()));
    props.push(("sasl.login.refresh.window.jitter", "0".to_owned()));
    let topic = topic(&bootstrap, &props, 1).await;
    let producer = producer(Kafka::oidc().bootstrap(), &[]);
    let mut consumer = consumer(&bootstrap, &props, &unique_name("oidc-away"));
    consumer.subscribe([topic.as_str()]).unwrap();

    let mut sent = 0;
    let mut flow = async |consumer: &mut Consumer| {
        for _ in 0..10 {
            let record = ProducerRecord::new(topic.clone(), sent.to_string());
            producer.send(record).await.unwrap().await.unwrap();
            sent += 1;
        }
        recv_n(consumer, 10, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    flow(&mut consumer).await;
    let mark = logs.mark();
    let logged = |what: &str| logs.since(mark).iter().filter(|l| l.contains(what)).count();

    // Away: every connection to the endpoint is dropped, until a renewal has failed and 3 s
    // more.
    front.repoint(dead_address());
    let away = Instant::now();
    while logged("gives no token") == 0 {
        assert!(
            away.elapsed() < Duration::from_secs(30),
            "no renewal failed: {:#?}",
            logs.since(mark)
        );
        flow(&mut consumer).await;
    }
    let failed = Instant::now();
    while failed.elapsed() < Duration::from_secs(3) {
        flow(&mut consumer).await;
    }
    front.repoint(public);
    let back = Instant::now();
    while logged("gives a token again") == 0 {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no recovery: {:#?}",
            logs.since(mark)
        );
        flow(&mut consumer).await;
    }
    consumer.close().await.unwrap();

    let lines = logs.since(mark);
    let warned: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("OAuth token endpoint"))
        .collect();
    assert_eq!(warned.len(), 1, "reported once: {lines:#?}");
    assert!(
        warned[0].contains(&front.addr().to_string()),
        "{}",
        warned[0]
    );
    assert!(
        warned[0].contains("the token held stays valid for"),
        "{}",
        warned[0]
    );
    let recoveries = lines
        .iter()
        .filter(|l| l.contains(" INFO ") && l.contains("gives a token again"))
        .count();
    assert_eq!(recoveries, 1, "{lines:#?}");
}
