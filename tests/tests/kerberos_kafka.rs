//! GSSAPI (Kerberos) on `Kafka::kerberos()`: Apache Kafka 4.4.0's listener `KERBEROS`, whose
//! broker logs in as `kafka/127.0.0.1` with the JDK's Kerberos, in a realm served by MIT
//! Kerberos's KDC started with the cluster. The listener ends every session after 6 s
//! (KIP-368), so every test here re-authenticates too. kcon logs in through MIT Kerberos's
//! libgssapi_krb5 (the feature `gssapi`), reading the realm's krb5.conf from `KRB5_CONFIG`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_pool::{AuthError, Error, Pool, TopicScope};
use kcon_produce::ProducerRecord;
use kcon_tests::consumer::recv_n;
use kcon_tests::kerberos::{keytab_login, listener, realm};
use kcon_tests::login::{
    Properties, assigned_consumer, every_client_works, pool_config, producer, topic, values,
};

/// With a keytab, every client logs in (the admin path creating the topic, the producer, a
/// group's consumer), and the group reads what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keytab_logs_in_every_client_and_a_group_reads_what_was_sent() {
    let realm = realm();
    let bootstrap = listener();
    let props = keytab_login(&realm, "kcon");
    every_client_works(&bootstrap, &props, "kerberos-group").await;
}

/// Without a keytab, the tickets come from a credential cache that someone else filled
/// (`kinit`, here): the client reads them from `sasl.kerberos.ccache`, and an empty cache fails
/// saying there are no credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_put_in_a_credential_cache_by_kinit_log_in() {
    let realm = realm();
    let bootstrap = listener();
    let dir = tempfile::tempdir().unwrap();
    let ccache = format!("FILE:{}", dir.path().join("krb5cc").display());
    let props: Properties = vec![
        ("security.protocol", "SASL_PLAINTEXT".to_owned()),
        ("sasl.mechanism", "GSSAPI".to_owned()),
        ("sasl.kerberos.ccache", ccache.clone()),
    ];

    // Nothing in the cache yet.
    let pool = Pool::new(pool_config(&bootstrap, &props)).unwrap();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("an empty cache cannot log in");
    let why = kerberos_failure(&e);
    assert!(why.contains("No credentials"), "{why}");
    drop(pool);

    kinit(&realm.keytab("kcon"), "kcon", &ccache);
    let topic = topic(&bootstrap, &props, 1).await;
    let producer = producer(&bootstrap, &props);
    for i in 0..50 {
        producer
            .send(ProducerRecord::new(topic.clone(), format!("v{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut consumer = assigned_consumer(&bootstrap, &props);
    consumer
        .assign([TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let records = recv_n(&mut consumer, 50, Duration::from_secs(60)).await;
    assert_eq!(
        values(&records),
        (0..50).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
    consumer.close().await.unwrap();
}

/// A principal the KDC does not know (its keytab outlived it): the login fails at once, with
/// the KDC's own answer, and is not retried as a transient failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_principal_fails_at_once_naming_the_kdcs_refusal() {
    let realm = realm();
    let props = keytab_login(&realm, "ghost");
    let pool = Pool::new(pool_config(&listener(), &props)).unwrap();
    let started = Instant::now();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("a principal the KDC does not know cannot log in");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let why = kerberos_failure(&e);
    assert!(
        why.contains(&format!(
            "Client 'ghost@{}' not found in Kerberos database",
            realm.name
        )),
        "{why}"
    );
    assert!(!e.is_retriable(), "{e}");
    let shown = e.to_string();
    assert!(shown.contains("sasl.kerberos.principal"), "{shown}");
}

/// A service name the realm has no principal for: the KDC refuses the service ticket, and the
/// error says which service was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_name_fails_naming_the_service_asked_for() {
    let realm = realm();
    let mut props = keytab_login(&realm, "kcon");
    props.push(("sasl.kerberos.service.name", "not-kafka".to_owned()));
    let pool = Pool::new(pool_config(&listener(), &props)).unwrap();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("no such service");
    let why = kerberos_failure(&e);
    assert!(
        why.contains("not-kafka/127.0.0.1") && why.contains("not found in Kerberos database"),
        "{why}"
    );
}

/// What Kerberos said, when `e` is a failure of Kerberos on the client's side; panics otherwise.
fn kerberos_failure(e: &Error) -> &str {
    match e {
        Error::Authentication {
            kind: AuthError::Kerberos(why),
            ..
        } => why,
        other => panic!("not a Kerberos failure: {other:?}"),
    }
}

/// `kinit` with `keytab` into `ccache`, under the realm's configuration.
fn kinit(keytab: &Path, principal: &str, ccache: &str) {
    let out = Command::new("kinit")
        .args(["-k", "-t"])
        .arg(keytab)
        .args(["-c", ccache, principal])
        .output()
        .expect("kinit (MIT Kerberos's krb5-user, installed by scripts/brokers install)");
    assert!(
        out.status.success(),
        "kinit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
