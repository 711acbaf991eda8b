//! kcon-pool with SASL against a broker that closes the connection on a SaslHandshake for a
//! mechanism it does not enable, instead of answering UNSUPPORTED_SASL_MECHANISM with the ones
//! it does: Tansu built with SQLite storage and `--authentication` (see `kcon_tests::sasl`) does
//! that to PLAIN, and Apache Kafka cannot be made to (its answer is tested in
//! `pool_kafka_security.rs`, with SCRAM, OAUTHBEARER and every other SASL case).

use kcon_pool::{Error, Pool, SetupStage, TopicScope, TransportError};
use kcon_tests::sasl::{SHA256_USER, ScramTansu};

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
