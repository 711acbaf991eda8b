//! OAUTHBEARER with tokens from a real OAuth 2.0 server (`sasl.oauthbearer.token.endpoint.url`,
//! the client credentials grant), on `Kafka::oidc()`: Apache Kafka 4.4.0 validating the JWTs
//! with its own `OAuthBearerValidatorCallbackHandler` against the key set of the Ory Hydra
//! started with the cluster, and ending each session when its token expires (KIP-368). Every
//! test registers OAuth clients of its own names.
//!
//! The tests that count what kcon logs are in `oidc_renewal_kafka.rs` and
//! `oidc_outage_kafka.rs`, one to a process.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kcon_pool::{AuthError, Error, Pool, TopicScope};
use kcon_produce::ProducerRecord;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::recv_n;
use kcon_tests::kafka::Kafka;
use kcon_tests::login::every_client_works;
use kcon_tests::oidc::{consumer, login, pool_config, producer, topic, values};

// The admin path, the producer and a group's consumer all log in with the server's tokens
/// (each client fetches its own and keeps it for all its connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_logs_in_with_tokens_from_the_oauth_server_and_a_group_reads_what_was_sent() {
    let hydra = Kafka::oidc().hydra();
    let id = unique_name("oidc-client");
    hydra.create_client(&id, "every-client-secret", None);
    let (bootstrap, props) = login(&id, "every-client-secret", &hydra.token_endpoint);
    every_client_works(&bootstrap, &props, "oidc-group").await;
}

/// A wrong secret: the token endpoint refuses the client, and the connection fails at once
/// (not after a timeout) with the endpoint's own answer, not retried as a transient failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_fails_at_once_with_the_oauth_servers_answer() {
    let hydra = Kafka::oidc().hydra();
    let id = unique_name("oidc-wrong");
    hydra.create_client(&id, "the-right-secret", None);
    let (bootstrap, props) = login(&id, "a-wrong-secret", &hydra.token_endpoint);
    let pool = Pool::new(pool_config(&bootstrap, &props)).unwrap();
    let started = Instant::now();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("a wrong secret cannot log in");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let Error::Authentication {
        kind: AuthError::TokenProvider(why),
        ..
    } = &e
    else {
        panic!("{e:?}");
    };
    assert!(why.contains("HTTP 401"), "{why}");
    assert!(why.contains("invalid_client"), "{why}");
    assert!(why.contains(&hydra.token_endpoint), "{why}");
    assert!(!e.is_retriable(), "{e}");
}

/// A share consumer and the admin calls log in with the server's tokens too: the group's
/// configuration is set, and the share consumer reads what is sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_consumer_logs_in_with_tokens_from_the_oauth_server() {
    let hydra = Kafka::oidc().hydra();
    let id = unique_name("oidc-share");
    hydra.create_client(&id, "share-secret", None);
    let (bootstrap, props) = login(&id, "share-secret", &hydra.token_endpoint);
    let topic = topic(&bootstrap, &props, 1).await;
    // The group read from the earliest offset, set by kcon-admin over OAUTHBEARER too.
    let group = unique_name("oidc-share");
    let admin = Pool::new(pool_config(&bootstrap, &props)).unwrap();
    kcon_tests::share::configure(&admin, &group, &[]).await;
    let extra: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut share = kcon_tests::share::consumer(&bootstrap, &group, &extra);
    kcon_tests::share::joined(&mut share, &topic, 1).await;

    let producer = producer(Kafka::oidc().bootstrap(), &[]);
    for i in 0..50 {
        let record = ProducerRecord::new(topic.clone(), format!("s{i}"));
        producer.send(record).await.unwrap().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeSet::new();
    while got.len() < 50 {
        assert!(Instant::now() < deadline, "{} of 50: {got:?}", got.len());
        let batch = tokio::time::timeout(Duration::from_secs(10), share.recv_batch())
            .await
            .map(|b| b.unwrap())
            .unwrap_or_default();
        got.extend(values(&batch));
    }
    let sent: BTreeSet<String> = (0..50).map(|i| format!("s{i}")).collect();
    assert_eq!(got, sent);
    share.close().await.unwrap();
}

/// The JWT bearer grant (RFC 7523, KIP-1139): kcon signs an assertion with an RSA key Hydra
/// trusts for the subject, and the broker takes the token Hydra gives for it; a key Hydra does
/// not trust is refused at once with Hydra's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_grant_logs_in_with_an_assertion_kcon_signs() {
    let hydra = Kafka::oidc().hydra();
    let dir = tempfile::tempdir().unwrap();
    let issuer = unique_name("kcon-issuer");
    let subject = unique_name("kcon-svc");
    let kid = unique_name("key");
    let (key, jwk) = rsa_key(dir.path(), "trusted", &kid);
    hydra.trust_jwt_issuer(&issuer, &subject, jwk);
    let id = unique_name("oidc-jwt");
    hydra.create_jwt_bearer_client(&id, "jwt-client-secret");
    let template = dir.path().join("template.json");
    std::fs::write(
        &template,
        serde_json::json!({"header": {"kid": kid}}).to_string(),
    )
    .unwrap();
    let (bootstrap, mut props) = login(&id, "jwt-client-secret", &hydra.token_endpoint);
    let jwt_bearer = |key: &std::path::Path| {
        vec![
            (
                "sasl.oauthbearer.grant.type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
            ),
            (
                "sasl.oauthbearer.assertion.private.key.file",
                key.display().to_string(),
            ),
            (
                "sasl.oauthbearer.assertion.template.file",
                template.display().to_string(),
            ),
            ("sasl.oauthbearer.assertion.claim.iss", issuer.clone()),
            ("sasl.oauthbearer.assertion.claim.sub", subject.clone()),
            (
                "sasl.oauthbearer.assertion.claim.aud",
                hydra.token_endpoint.clone(),
            ),
            (
                "sasl.oauthbearer.assertion.claim.jti.include",
                "true".to_owned(),
            ),
        ]
    };
    props.extend(jwt_bearer(&key));
    let topic = topic(&bootstrap, &props, 1).await;
    let producer = producer(&bootstrap, &props);
    for i in 0..20 {
        let record = ProducerRecord::new(topic.clone(), format!("j{i}"));
        producer.send(record).await.unwrap().await.unwrap();
    }
    let mut consumer = consumer(&bootstrap, &props, &unique_name("oidc-jwt"));
    consumer.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut consumer, 20, Duration::from_secs(60)).await;
    let want: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
    assert_eq!(values(&records), want);
    consumer.close().await.unwrap();

    // A key of the same kid that Hydra does not trust.
    let (untrusted, _) = rsa_key(dir.path(), "untrusted", &kid);
    let (_, mut props) = login(&id, "jwt-client-secret", &hydra.token_endpoint);
    props.extend(jwt_bearer(&untrusted));
    let pool = Pool::new(pool_config(&bootstrap, &props)).unwrap();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("an assertion Hydra cannot verify");
    let Error::Authentication {
        kind: AuthError::TokenProvider(why),
        ..
    } = &e
    else {
        panic!("{e:?}");
    };
    assert!(
        why.contains("HTTP 400") || why.contains("HTTP 401"),
        "{why}"
    );
    assert!(why.contains("invalid_grant"), "{why}");
}

/// A new RSA key in `dir` (openssl, PKCS#8 PEM) and its public JWK with `kid`.
fn rsa_key(
    dir: &std::path::Path,
    name: &str,
    kid: &str,
) -> (std::path::PathBuf, serde_json::Value) {
    use base64::Engine;
    let key = dir.join(format!("{name}.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&key)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").expect("Modulus=HEX");
    let modulus: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = serde_json::json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": b64.encode(&modulus),
        "e": "AQAB",
    });
    (key, jwk)
}
