//! kcon-pool against Apache Kafka's own secured listeners (`Kafka::secure()`): TLS (server
//! authentication, mutual TLS, and each way a handshake fails), SASL (SCRAM-SHA-256/512 in
//! plaintext and over TLS, OAUTHBEARER by properties and by each client's token provider, and
//! each way Kafka refuses a login), and what a client whose security settings differ from the
//! listener's is told. The listeners' certificate names
//! `127.0.0.1` and `localhost`; a certificate for another host is met by dialling the listener
//! through 127.0.0.2, which it does not name.
//!
//! Not here, and why (both in `pool_tls.rs` and `pool_sasl.rs`, on Tansu): a plaintext listener
//! that waits on a TLS hello (Kafka closes the connection: tested here), and a broker that
//! closes the connection on a SaslHandshake instead of answering UNSUPPORTED_SASL_MECHANISM
//! (Kafka answers: tested here).

use std::time::Duration;

use kcon_core::ConfigError;
use kcon_pool::{
    AuthError, EndpointIdentification, Error, Pool, PoolConfig, SaslMechanism, SecurityProtocol,
    SetupStage, TlsError, TopicScope, TransportError,
};
use kcon_tests::brokers::unique_name;
use kcon_tests::forwarder::Forwarder;
use kcon_tests::kafka::{Kafka, Node, PASSWORD, USER};
use kcon_tests::pool::config;
use kcon_tests::tls::{Pki, assert_produce_fetch_round_trip};

fn node() -> Node {
    Kafka::secure().nodes().remove(0)
}

/// The error of a first Metadata request with `config`.
async fn metadata_error(config: PoolConfig) -> Error {
    let pool = Pool::new(config).unwrap();
    pool.refresh_metadata(TopicScope::none())
        .await
        .expect_err("the connection must fail")
}

/// Kafka answers ApiVersions on a SASL listener before authentication, then closes the
/// connection on the Metadata request of a client that did not authenticate: the pool says
/// what that most likely means, and that it is the connection's setup that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_sasl_on_a_sasl_listener_is_told_what_the_hang_up_means() {
    let node = node();
    let plaintext = metadata_error(config(&node.listener("SASL_PLAINTEXT"))).await;
    assert!(
        matches!(
            &plaintext,
            Error::Transport {
                kind: TransportError::ClosedAtFirstRequest { tls: false },
                ..
            }
        ),
        "{plaintext:?}"
    );
    assert!(plaintext.is_setup_failure());
    assert!(plaintext.is_retriable(), "a hang-up may pass");
    let shown = plaintext.to_string();
    assert!(
        shown.contains("security.protocol=SASL_PLAINTEXT"),
        "{shown}"
    );

    let mut tls = config(&node.listener("SASL_SSL"));
    tls.security_protocol = SecurityProtocol::Ssl;
    tls.ssl_ca_location = Some(node.tls("ca.pem"));
    let tls = metadata_error(tls).await;
    assert!(
        matches!(
            &tls,
            Error::Transport {
                kind: TransportError::ClosedAtFirstRequest { tls: true },
                ..
            }
        ),
        "{tls:?}"
    );
    assert!(
        tls.to_string().contains("security.protocol=SASL_SSL"),
        "{tls}"
    );
}

/// A broker not reached at all is no setup failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_no_setup_failure() {
    let dead = kcon_tests::pool::dead_address().to_string();
    let e = metadata_error(config(&dead)).await;
    assert!(kcon_tests::pool::is_refused(&e), "{e:?}");
    assert!(!e.is_setup_failure());
}

/// A SASL_PLAINTEXT config for `bootstrap` logging in with `mechanism` as `user`.
fn sasl(bootstrap: &str, mechanism: &str, user: &str, password: &str) -> PoolConfig {
    let mut c = config(bootstrap);
    c.set("security.protocol", "SASL_PLAINTEXT").unwrap();
    c.set("sasl.mechanism", mechanism).unwrap();
    c.set("sasl.username", user).unwrap();
    c.set("sasl.password", password).unwrap();
    c
}

/// Each way Kafka refuses a login, as the pool reports it: the kind, and the property the
/// message names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_refusals_name_the_property_to_check() {
    let node = node();
    let wrong = metadata_error(sasl(
        &node.listener("SASL_PLAINTEXT"),
        "SCRAM-SHA-512",
        USER,
        "not-the-password",
    ))
    .await;
    assert!(
        matches!(
            &wrong,
            Error::Authentication {
                mechanism: SaslMechanism::ScramSha512,
                kind: AuthError::Refused {
                    error_code: Some(58),
                    ..
                },
                ..
            }
        ),
        "{wrong:?}"
    );
    assert!(!wrong.is_retriable());
    assert!(
        wrong
            .to_string()
            .ends_with("(check sasl.username and sasl.password)"),
        "{wrong}"
    );

    let wrong = metadata_error(sasl(
        &node.listener("SASL_PLAINTEXT"),
        "SCRAM-SHA-256",
        USER,
        "not-the-password",
    ))
    .await;
    assert!(
        matches!(
            &wrong,
            Error::Authentication {
                mechanism: SaslMechanism::ScramSha256,
                kind: AuthError::Refused {
                    error_code: Some(58),
                    ..
                },
                ..
            }
        ),
        "{wrong:?}"
    );
    assert!(!wrong.is_retriable());
    let shown = wrong.to_string();
    // The broker's own words follow the error's name.
    assert!(
        shown.contains(
            "SASL SCRAM-SHA-256 authentication failed: refused by the broker \
             (SASL_AUTHENTICATION_FAILED (58)): Authentication failed during authentication due \
             to invalid credentials with SASL mechanism SCRAM-SHA-256"
        ),
        "{shown}"
    );
    assert!(!shown.contains("not-the-password"), "{shown}");

    let lacking = metadata_error(sasl(
        &node.listener("PLAIN_ONLY"),
        "SCRAM-SHA-256",
        USER,
        PASSWORD,
    ))
    .await;
    match &lacking {
        Error::Authentication {
            kind: AuthError::MechanismNotEnabled { enabled },
            ..
        } => assert_eq!(enabled, &["PLAIN"]),
        other => panic!("{other:?}"),
    }
    assert!(
        lacking
            .to_string()
            .ends_with("it enables [PLAIN]: set sasl.mechanism to one of those"),
        "{lacking}"
    );

    let plaintext = format!("127.0.0.1:{}", node.port);
    let no_sasl = metadata_error(sasl(&plaintext, "PLAIN", USER, PASSWORD)).await;
    assert!(
        matches!(
            &no_sasl,
            Error::Authentication {
                kind: AuthError::NotSaslListener { tls: false },
                ..
            }
        ),
        "{no_sasl:?}"
    );
    assert!(
        no_sasl
            .to_string()
            .contains("set security.protocol=PLAINTEXT"),
        "{no_sasl}"
    );
}

/// OAUTHBEARER configured by properties alone, as any client built on the pool takes them:
/// the unsecured JWT of `sasl.oauthbearer.config`, which Kafka's unsecured validator takes,
/// and a token file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_logs_in_with_the_token_properties() {
    let node = node();
    let oauth = || {
        let mut c = config(&node.listener("SASL_PLAINTEXT"));
        c.set("security.protocol", "SASL_PLAINTEXT").unwrap();
        c.set("sasl.mechanism", "OAUTHBEARER").unwrap();
        c
    };
    let mut unsecured = oauth();
    unsecured
        .set("sasl.oauthbearer.config", "principal=alice scope=kafka")
        .unwrap();
    unsecured
        .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
        .unwrap();
    let pool = Pool::new(unsecured.clone()).unwrap();
    let meta = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    assert_eq!(meta.brokers.len(), 1);

    // The token the config makes, written to a file.
    let token = kcon_pool::UnsecuredJwt::parse("principal=alice")
        .unwrap()
        .token(std::time::SystemTime::now());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("  {}\n", token.value)).unwrap();
    let mut from_file = oauth();
    from_file
        .set("sasl.oauthbearer.token.file", &file.display().to_string())
        .unwrap();
    let pool = Pool::new(from_file).unwrap();
    pool.refresh_metadata(TopicScope::none()).await.unwrap();

    // A file that is not there fails the login, naming the property.
    std::fs::remove_file(&file).unwrap();
    let mut gone = oauth();
    gone.set("sasl.oauthbearer.token.file", &file.display().to_string())
        .unwrap();
    let e = metadata_error(gone).await;
    assert!(
        matches!(
            &e,
            Error::Authentication {
                kind: AuthError::TokenProvider(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("cannot read sasl.oauthbearer.token.file"),
        "{e}"
    );
}

/// An SSL config for `bootstrap` trusting `ca` (the system's trust store if `None`).
fn ssl(bootstrap: &str, ca: Option<std::path::PathBuf>) -> PoolConfig {
    let mut c = config(bootstrap);
    c.security_protocol = SecurityProtocol::Ssl;
    c.ssl_ca_location = ca;
    c.socket_connection_setup_timeout = Duration::from_secs(5);
    c
}

fn tls_kind(e: &Error) -> &TlsError {
    match e {
        Error::Tls { kind, .. } => kind,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_authentication_then_metadata_produce_and_fetch_over_tls() {
    let node = node();
    // By name: SNI is sent and `localhost` is checked against the certificate. The broker's
    // advertised address (127.0.0.1, the SSL listener's port) is checked as an IP address.
    let by_name = format!("localhost:{}", node.listeners["SSL"]);
    let pool = Pool::new(ssl(&by_name, Some(node.tls("ca.pem")))).unwrap();
    let meta = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let advertised: Vec<String> = meta.brokers.values().map(|b| b.address()).collect();
    assert_eq!(
        advertised,
        [node.listener("SSL")],
        "Kafka advertises the SSL listener to a client of it"
    );
    assert_produce_fetch_round_trip(&pool, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate() {
    let node = node();
    let mut c = ssl(&node.listener("MTLS"), Some(node.tls("ca.pem")));
    c.set(
        "ssl.certificate.location",
        node.tls("client.pem").to_str().unwrap(),
    )
    .unwrap();
    c.set(
        "ssl.key.location",
        node.tls("client-key.pem").to_str().unwrap(),
    )
    .unwrap();
    let pool = Pool::new(c).unwrap();
    assert_produce_fetch_round_trip(&pool, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_client_certificate_mutual_tls_is_refused_with_the_alert() {
    let node = node();
    let e = metadata_error(ssl(&node.listener("MTLS"), Some(node.tls("ca.pem")))).await;
    // TLS 1.3: the client's handshake is over before the server checks for a certificate, so
    // its alert arrives with the first answer; kcon reports it as TLS all the same. Kafka (the
    // JDK's TLS) sends bad_certificate for a missing one, where OpenSSL sends
    // certificate_required.
    assert!(
        matches!(tls_kind(&e), TlsError::Refused { alert } if alert == "BadCertificate"),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    assert!(e.to_string().contains("ssl.certificate.location"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused_as_such() {
    let node = node();
    let pki = Pki::new();
    let e = metadata_error(ssl(&node.listener("SSL"), Some(pki.other_ca()))).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
    assert!(!e.is_retriable());
    assert!(
        e.to_string()
            .contains("not signed by a trusted CA (ssl.ca.location"),
        "{e}"
    );
    // Nor does the system's trust store know the test CA: it is loaded and used when
    // ssl.ca.location is unset.
    let e = metadata_error(ssl(&node.listener("SSL"), None)).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
}

/// The SSL listener, reached through 127.0.0.2, an address its certificate does not name.
async fn through_another_address(node: &Node) -> Forwarder {
    let upstream = node.listener("SSL").parse().expect("an address");
    Forwarder::start_on("127.0.0.2", upstream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_a_hostname_mismatch() {
    let node = node();
    let other = through_another_address(&node).await;
    let e = metadata_error(ssl(&other.addr().to_string(), Some(node.tls("ca.pem")))).await;
    assert!(
        matches!(
            tls_kind(&e),
            TlsError::HostnameMismatch { host, presented }
                if host == "127.0.0.2"
                    && presented.iter().any(|p| p.contains("localhost"))
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
    let node = node();
    let other = through_another_address(&node).await;
    let mut c = ssl(&other.addr().to_string(), Some(node.tls("ca.pem")));
    c.set("ssl.endpoint.identification.algorithm", "none")
        .unwrap();
    assert_eq!(
        c.ssl_endpoint_identification_algorithm,
        EndpointIdentification::None
    );
    let pool = Pool::new(c.clone()).unwrap();
    assert_produce_fetch_round_trip(&pool, 5).await;
    // `none` skips the name only: the chain must still lead to a trusted CA.
    let pki = Pki::new();
    c.ssl_ca_location = Some(pki.other_ca());
    let e = metadata_error(c).await;
    assert_eq!(tls_kind(&e), &TlsError::UnknownCa, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_the_tls_port_is_told_so() {
    let node = node();
    let e = metadata_error(config(&node.listener("SSL"))).await;
    // Kafka cannot read the Kafka request as a TLS record: it closes the connection, or
    // answers with an alert.
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
    let node = node();
    let plaintext = format!("127.0.0.1:{}", node.port);
    let e = metadata_error(ssl(&plaintext, Some(node.tls("ca.pem")))).await;
    // Kafka reads the TLS hello's first bytes as the size of a ~370 MB request, above
    // socket.request.max.bytes, and closes the connection.
    assert!(matches!(tls_kind(&e), TlsError::ClosedInHandshake), "{e:?}");
    assert!(
        e.to_string()
            .contains("a plaintext listener does that (security.protocol PLAINTEXT"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_and_512_authenticate_and_fetch() {
    let node = node();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let c = sasl(&node.listener("SASL_PLAINTEXT"), mechanism, USER, PASSWORD);
        let pool = Pool::new(c).unwrap();
        assert_produce_fetch_round_trip(&pool, 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_tls_fetches() {
    let node = node();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let mut c = sasl(&node.listener("SASL_SSL"), mechanism, USER, PASSWORD);
        c.set("security.protocol", "SASL_SSL").unwrap();
        c.ssl_ca_location = Some(node.tls("ca.pem"));
        let pool = Pool::new(c).unwrap();
        assert_produce_fetch_round_trip(&pool, 20).await;
    }
}

/// A user given a SCRAM-SHA-256 credential only (with Kafka's own ConfigCommand): it logs in
/// with SCRAM-SHA-256 (polled until the broker has the credential) and is refused with
/// SCRAM-SHA-512.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_credential_for_the_mechanism_is_refused() {
    let kafka = Kafka::secure();
    let node = node();
    let user = unique_name("bob");
    let password = "bob-secret";
    tokio::task::block_in_place(|| {
        kafka.tool(
            "org.apache.kafka.tools.ConfigCommand",
            &[
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                &user,
                "--add-config",
                &format!("SCRAM-SHA-256=[password={password}]"),
            ],
        )
    });
    let listener = node.listener("SASL_PLAINTEXT");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pool = Pool::new(sasl(&listener, "SCRAM-SHA-256", &user, password)).unwrap();
        match pool.refresh_metadata(TopicScope::none()).await {
            Ok(_) => break,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the new credential never worked: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = metadata_error(sasl(&listener, "SCRAM-SHA-512", &user, password)).await;
    assert!(
        matches!(
            &e,
            Error::Authentication {
                mechanism: SaslMechanism::ScramSha512,
                kind: AuthError::Refused { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_retriable());
}

/// Hands out unsecured JWTs for `alice` (which Kafka's unsecured validator takes), counting
/// how often it is asked.
#[derive(Clone, Default)]
struct Alice(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl kcon_pool::OAuthBearerTokenProvider for Alice {
    fn token(&self) -> kcon_pool::TokenFuture<'_> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            Ok(kcon_pool::UnsecuredJwt::parse("principal=alice")?
                .token(std::time::SystemTime::now()))
        })
    }
}

impl Alice {
    fn asked(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Every client's builder takes an OAUTHBEARER token provider and logs in with its tokens: the
/// producer's record is delivered, the consumer reads it back, and the share consumer's member
/// authenticates, each asking its own provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_logs_in_with_an_oauthbearer_token_provider() {
    let node = node();
    let listener = node.listener("SASL_PLAINTEXT");
    let topic = unique_name("oauth-provider");
    let (produced, consumed, shared) = (Alice::default(), Alice::default(), Alice::default());

    let producer = kcon_produce::Producer::builder()
        .bootstrap_servers(&listener)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .oauthbearer_token_provider(kcon_pool::TokenProvider::new(produced.clone()))
        .build()
        .expect("a producer");
    let delivery = producer
        .send(kcon_produce::ProducerRecord::new(topic.as_str(), "signed"))
        .await
        .expect("queued");
    let delivered = tokio::time::timeout(Duration::from_secs(30), delivery)
        .await
        .expect("delivered in time")
        .expect("delivered");
    assert_eq!(delivered.offset, Some(0));
    assert!(
        produced.asked() >= 1,
        "the producer's provider was not asked"
    );
    producer.close().await.expect("the producer closes");

    let mut consumer = kcon::Consumer::builder()
        .bootstrap_servers(&listener)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("auto.offset.reset", "earliest")
        .oauthbearer_token_provider(kcon_pool::TokenProvider::new(consumed.clone()))
        .build()
        .expect("a consumer");
    consumer
        .assign([kcon::TopicPartition::new(topic.as_str(), 0)])
        .unwrap();
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record in time")
        .expect("a record");
    assert_eq!(record.value.as_deref(), Some(&b"signed"[..]));
    assert!(
        consumed.asked() >= 1,
        "the consumer's provider was not asked"
    );
    consumer.close().await.unwrap();

    let mut share = kcon::share::ShareConsumer::builder()
        .bootstrap_servers(&listener)
        .group_id(&unique_name("oauth-share"))
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .oauthbearer_token_provider(kcon_pool::TokenProvider::new(shared.clone()))
        .build()
        .expect("a share consumer");
    share.subscribe([topic.as_str()]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while shared.asked() == 0 || share.assignment().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the share member did not join with its provider's token (asked {} times)",
            shared.asked()
        );
        // The member joins while the consumer waits for records; none come (a new share
        // group starts at the log's end).
        let _ = tokio::time::timeout(Duration::from_millis(500), share.recv_batch()).await;
    }
    share.close().await.unwrap();
}
