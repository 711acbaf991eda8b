//! kcon-pool over TLS, against a real TLS terminator (socat, with OpenSSL) in front of Tansu,
//! which advertises the TLS port: every connection the pool makes, bootstrap or not, is TLS.
//! Each test makes its own CA and certificates and starts its own broker and terminator.

use std::time::Duration;

use kcon_core::ConfigError;
use kcon_pool::{
    EndpointIdentification, Error, Pool, PoolConfig, SecurityProtocol, SetupStage, TlsError,
    TopicScope, TransportError,
};
use kcon_tests::tls::{ClientAuth, Pki, TlsTansu, assert_produce_fetch_round_trip};

/// An SSL config for `bootstrap` trusting `ca` (the system's trust store if `None`).
fn ssl(bootstrap: &str, ca: Option<std::path::PathBuf>) -> PoolConfig {
    let mut c = PoolConfig::default();
    c.bootstrap_servers = vec![bootstrap.to_owned()];
    c.security_protocol = SecurityProtocol::Ssl;
    c.ssl_ca_location = ca;
    c.socket_connection_setup_timeout = Duration::from_secs(5);
    c
}

/// The error of a first Metadata request with `config`.
async fn metadata_error(config: PoolConfig) -> Error {
    let pool = Pool::new(config).unwrap();
    pool.refresh_metadata(TopicScope::none())
        .await
        .expect_err("the connection must fail")
}

fn tls_kind(e: &Error) -> &TlsError {
    match e {
        Error::Tls { kind, .. } => kind,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_authentication_then_metadata_produce_and_fetch_over_tls() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::None);
    // By name: SNI is sent and `localhost` is checked against the certificate. The broker's
    // advertised address (127.0.0.1, the TLS port) is checked as an IP address.
    let pool = Pool::new(ssl(&broker.bootstrap_by_name(), Some(pki.ca()))).unwrap();
    let meta = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let advertised: Vec<String> = meta.brokers.values().map(|b| b.address()).collect();
    assert_eq!(
        advertised,
        [broker.bootstrap()],
        "Tansu advertises the TLS port"
    );
    assert_produce_fetch_round_trip(&pool, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::Required);
    let mut c = ssl(&broker.bootstrap(), Some(pki.ca()));
    let client = pki.client();
    c.set("ssl.certificate.location", client.cert.to_str().unwrap())
        .unwrap();
    c.set("ssl.key.location", client.key.to_str().unwrap())
        .unwrap();
    let pool = Pool::new(c).unwrap();
    assert_produce_fetch_round_trip(&pool, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_client_certificate_mutual_tls_is_refused_with_the_alert() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::Required);
    let e = metadata_error(ssl(&broker.bootstrap(), Some(pki.ca()))).await;
    // TLS 1.3: the client's handshake is over before the server checks for a certificate, so
    // its alert arrives with the first answer; kcon reports it as TLS all the same.
    assert!(
        matches!(tls_kind(&e), TlsError::Refused { alert } if alert == "CertificateRequired"),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    assert!(e.to_string().contains("ssl.certificate.location"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused_as_such() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::None);
    let e = metadata_error(ssl(&broker.bootstrap(), Some(pki.other_ca()))).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
    assert!(!e.is_retriable());
    assert!(
        e.to_string()
            .contains("not signed by a trusted CA (ssl.ca.location"),
        "{e}"
    );
    // Nor does the system's trust store know the test CA: it is loaded and used when
    // ssl.ca.location is unset.
    let e = metadata_error(ssl(&broker.bootstrap(), None)).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_a_hostname_mismatch() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.elsewhere(), ClientAuth::None);
    let e = metadata_error(ssl(&broker.bootstrap(), Some(pki.ca()))).await;
    assert!(
        matches!(
            tls_kind(&e),
            TlsError::HostnameMismatch { host, presented }
                if host == "127.0.0.1"
                    && presented.iter().any(|p| p.contains("kafka.elsewhere.invalid"))
        ),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    assert!(
        e.to_string()
            .contains("ssl.endpoint.identification.algorithm=none"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_none_accepts_another_hosts_certificate_but_not_an_unknown_ca() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.elsewhere(), ClientAuth::None);
    let mut c = ssl(&broker.bootstrap(), Some(pki.ca()));
    c.set("ssl.endpoint.identification.algorithm", "none")
        .unwrap();
    assert_eq!(
        c.ssl_endpoint_identification_algorithm,
        EndpointIdentification::None
    );
    let pool = Pool::new(c.clone()).unwrap();
    assert_produce_fetch_round_trip(&pool, 5).await;
    // `none` skips the name only: the chain must still lead to a trusted CA.
    c.ssl_ca_location = Some(pki.other_ca());
    let e = metadata_error(c).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_the_tls_port_is_told_so() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::None);
    let mut c = PoolConfig::default();
    c.bootstrap_servers = vec![broker.bootstrap()];
    let e = metadata_error(c).await;
    // OpenSSL answers the Kafka request with a reset ("wrong version number"), or an alert.
    let told = matches!(
        &e,
        Error::Transport {
            kind: TransportError::ClosedDuringSetup {
                stage: SetupStage::ApiVersions,
                tls: false,
            },
            ..
        } | Error::Tls {
            kind: TlsError::UnexpectedTls,
            ..
        }
    );
    assert!(told, "{e:?}");
    assert!(e.to_string().contains("SSL or SASL_SSL"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_the_plaintext_port_is_told_so() {
    let pki = Pki::new();
    let broker = TlsTansu::start(&pki, &pki.server(), ClientAuth::None);
    let mut c = ssl(&broker.plaintext().to_string(), Some(pki.ca()));
    c.socket_connection_setup_timeout = Duration::from_secs(1);
    let e = metadata_error(c).await;
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

#[test]
fn unusable_certificate_files_are_configuration_errors_naming_the_property() {
    let pki = Pki::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let base = ssl("localhost:9093", Some(pki.ca()));
    let refused = |c: PoolConfig| match Pool::new(c) {
        Err(Error::Config(e)) => e,
        other => panic!("expected a configuration error, got {other:?}"),
    };

    let mut c = base.clone();
    c.ssl_ca_location = Some(pki.path("missing.pem"));
    let e = refused(c);
    assert_eq!(e.property(), "ssl.ca.location");
    assert!(e.to_string().contains("cannot read it"), "{e}");

    // A key where the CA should be: no certificate in it.
    let mut c = base.clone();
    c.ssl_ca_location = Some(pki.client().key);
    let e = refused(c);
    assert!(
        matches!(&e, ConfigError::Unusable { property, reason, .. }
            if property == "ssl.ca.location" && reason.contains("no CERTIFICATE")),
        "{e}"
    );

    // A certificate where the key should be.
    let mut c = base.clone();
    c.ssl_certificate_location = Some(pki.client().cert);
    c.ssl_key_location = Some(pki.client().cert);
    assert_eq!(refused(c).property(), "ssl.key.location");

    // An encrypted key: said so, since ssl.key.password is not supported.
    let encrypted = pki.path("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQww\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut c = base.clone();
    c.ssl_certificate_location = Some(pki.client().cert);
    c.ssl_key_location = Some(encrypted);
    let e = refused(c);
    assert!(e.to_string().contains("encrypted"), "{e}");

    // A key that is not the certificate's.
    let mut c = base;
    c.ssl_certificate_location = Some(pki.client().cert);
    c.ssl_key_location = Some(pki.server().key);
    let e = refused(c);
    assert!(
        e.to_string()
            .contains("does not go with ssl.certificate.location"),
        "{e}"
    );
}
