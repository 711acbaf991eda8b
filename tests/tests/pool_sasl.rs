//! kcon-pool with SASL SCRAM against Tansu built with SQLite storage and `--authentication`
//! (users made by the test with `tansu user create`; see `kcon_tests::sasl`), in plaintext and
//! behind a TLS terminator. PLAIN and OAUTHBEARER, which Tansu does not offer, are tested
//! against a scripted peer in kcon-pool's own tests.

use kcon_pool::{AuthError, Error, Pool, SaslMechanism, SetupStage, TopicScope, TransportError};
use kcon_tests::sasl::{SHA256_USER, SHA512_USER, ScramTansu};
use kcon_tests::tls::{Pki, assert_produce_fetch_round_trip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_authenticates_and_fetches() {
    let broker = ScramTansu::start();
    let pool = Pool::new(broker.config(SHA256_USER, None, None)).unwrap();
    assert_produce_fetch_round_trip(&pool, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_authenticates_and_fetches() {
    let broker = ScramTansu::start();
    let pool = Pool::new(broker.config(SHA512_USER, None, None)).unwrap();
    assert_produce_fetch_round_trip(&pool, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_fetches() {
    let pki = Pki::new();
    let broker = ScramTansu::start_behind_tls(&pki);
    for user in [SHA256_USER, SHA512_USER] {
        let pool = Pool::new(broker.config(user, None, Some(pki.ca()))).unwrap();
        assert_produce_fetch_round_trip(&pool, 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_fatal_error() {
    let broker = ScramTansu::start();
    let pool = Pool::new(broker.config(SHA256_USER, Some("not-the-password"), None)).unwrap();
    let e = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("a wrong password must be refused");
    assert!(
        matches!(
            &e,
            Error::Authentication {
                mechanism: SaslMechanism::ScramSha256,
                kind: AuthError::Refused { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    let shown = e.to_string();
    // The broker's own words: Tansu refuses in SCRAM's server-final (`e=invalid-proof`).
    assert!(
        shown.contains(
            "SASL SCRAM-SHA-256 authentication failed: refused by the broker: invalid-proof"
        ),
        "{shown}"
    );
    assert!(!shown.contains("not-the-password"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_credential_for_the_mechanism_is_refused() {
    let broker = ScramTansu::start();
    // alice's credential is for SCRAM-SHA-256 only.
    let mut c = broker.config(SHA256_USER, None, None);
    c.set("sasl.mechanism", "SCRAM-SHA-512").unwrap();
    let e = Pool::new(c)
        .unwrap()
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("no SCRAM-SHA-512 credential");
    assert!(
        matches!(
            &e,
            Error::Authentication {
                kind: AuthError::Refused { .. },
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_is_refused_by_the_broker() {
    let broker = ScramTansu::start();
    let mut c = broker.config(SHA256_USER, None, None);
    c.set("sasl.mechanism", "PLAIN").unwrap();
    let e = Pool::new(c)
        .unwrap()
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("Tansu refuses PLAIN");
    // Tansu closes the connection on the SaslHandshake rather than answering error 33 with
    // the mechanisms it enables (the answer a Kafka broker gives, tested against a scripted
    // peer); the error says where it happened and what to check.
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportError::ClosedDuringSetup {
                    stage: SetupStage::SaslAuthentication,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("it may not enable sasl.mechanism"),
        "{e}"
    );
}
