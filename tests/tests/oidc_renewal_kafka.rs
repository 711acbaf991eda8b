//! OAUTHBEARER with tokens from a real OAuth 2.0 server (`sasl.oauthbearer.token.endpoint.url`,
//! the client credentials grant), on `Kafka::oidc()`: Apache Kafka 4.4.0 validating the JWTs
//! with its own `OAuthBearerValidatorCallbackHandler` against the key set of the Ory Hydra
//! started with the cluster, and ending each session when its token expires (KIP-368). Every
//! test registers OAuth clients of its own names.
//!
//! Here: tokens renewed and sessions re-authenticated in place while records flow (this test
//! counts log lines, so it keeps to its own process).

use std::collections::BTreeSet;
use std::time::Duration;

use kcon_produce::ProducerRecord;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::recv_n;
use kcon_tests::kafka::Kafka;
use kcon_tests::logs::capture_at;
use kcon_tests::oidc::{consumer, login, producer, topic, values};
use tracing_subscriber::filter::LevelFilter;

/// Tokens of 5 s while 10,000 records a second flow through a producer and a group's consumer
/// for 15 s: each client fetches new tokens ahead of expiry and re-authenticates its
/// connections (KIP-368) in place, with no new connection, while the broker ends every
/// session whose token expires; every record is read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tokens_are_renewed_and_connections_re_authenticate_while_records_flow() {
    let logs = capture_at(LevelFilter::DEBUG);
    let hydra = Kafka::oidc().hydra();
    let id = unique_name("oidc-short");
    hydra.create_client(&id, "short-lived-secret", Some(Duration::from_secs(5)));
    let (bootstrap, props) = login(&id, "short-lived-secret", &hydra.token_endpoint);
    let topic = topic(&bootstrap, &props, 3).await;
    const RATE: usize = 10_000;
    const SECONDS: usize = 15;
    let total = RATE * SECONDS;

    let mut consumer = consumer(&bootstrap, &props, &unique_name("oidc-short"));
    consumer.subscribe([topic.as_str()]).unwrap();
    let reader = tokio::spawn(async move {
        let records = recv_n(&mut consumer, total, Duration::from_secs(120)).await;
        // Nothing more: each record once.
        let more = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
        assert!(more.is_err(), "a record beyond those sent: {more:?}");
        consumer.close().await.unwrap();
        values(&records)
    });

    let producer = producer(&bootstrap, &props);
    let started = tokio::time::Instant::now();
    let mut deliveries = Vec::with_capacity(total);
    let mut mark = None;
    for tick in 0..SECONDS * 100 {
        tokio::time::sleep_until(started + Duration::from_millis(10 * tick as u64)).await;
        for i in tick * RATE / 100..(tick + 1) * RATE / 100 {
            let record = ProducerRecord::new(topic.clone(), i.to_string());
            deliveries.push(producer.send(record).await.unwrap());
        }
        // Both clients are connected and logged in by then: from here on, no connection is
        // made and every session is renewed by re-authentication.
        if tick == 300 {
            mark = Some(logs.mark());
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
    // The window looked at ends with the flow, before the consumer closes.
    let end = logs.mark();
    let got = reader.await.unwrap();
    assert_eq!(got.len(), total);
    let unique: BTreeSet<usize> = got.iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(unique.len(), total, "each record once");
    assert_eq!(unique.last(), Some(&(total - 1)));
    drop(producer);

    let mark = mark.expect("the flow ran past its warm-up");
    let lines: Vec<String> = logs.since(mark).into_iter().take(end - mark).collect();
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    let port = bootstrap.rsplit(':').next().unwrap().to_owned();
    let connects: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" connected") && l.contains(&port))
        .collect();
    assert!(connects.is_empty(), "new connections: {connects:#?}");
    // 12 s of 5 s tokens (4 s by the answer's expires_in, which Hydra rounds down): each
    // client renews its token every 2 s (while a session started on it can still be renewed),
    // and each connection re-authenticates before its session ends.
    assert!(
        count("OAuth token fetched") >= 8,
        "{}",
        count("OAuth token fetched")
    );
    assert!(
        count("re-authenticating") >= 8,
        "{}",
        count("re-authenticating")
    );
    let warnings: Vec<&String> = lines.iter().filter(|l| l.contains(" WARN ")).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
