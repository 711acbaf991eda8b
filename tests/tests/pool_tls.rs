//! kcon-pool over TLS against a plaintext listener that waits on a TLS hello rather than
//! closing the connection: Tansu (behind the socat TLS terminator of `kcon_tests::tls`, reached
//! on its own plaintext port) does that, and Apache Kafka, which closes it
//! (`pool_kafka_security.rs`), cannot be made to. Everything else TLS is tested on Kafka's own
//! listeners there.

use std::time::Duration;

use kcon_pool::{
    Error, Pool, PoolConfig, SecurityProtocol, SetupStage, TopicScope, TransportError,
};
use kcon_tests::tls::{ClientAuth, Pki, TlsTansu};

/// An SSL config for `bootstrap` trusting `ca`.
fn ssl(bootstrap: &str, ca: std::path::PathBuf) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.bootstrap_servers = vec![bootstrap.to_owned()];
    c.security_protocol = SecurityProtocol::Ssl;
    c.ssl_ca_location = Some(ca);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_the_plaintext_port_is_told_so() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::None);
    let mut c = ssl(&broker.plaintext().to_string(), pki.ca());
    c.socket_connection_setup_timeout = Duration::from_secs(1);
    let e = Pool::new(c)
        .unwrap()
        .refresh_metadata(TopicScope::none())
        .await
        .expect_err("the connection must fail");
    // Measured: Tansu reads the TLS hello as the size of a ~370 MB request and waits.
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportError::SetupTimeout {
                    stage: SetupStage::TlsHandshake,
                    ..
                },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("a plaintext listener never answers a TLS hello"),
        "{e}"
    );
}
