//! kcon-pool against Apache Kafka's own secured listeners (`Kafka::secure()`): what a client
//! whose security settings differ from the listener's is told.

use kcon_pool::{
    AuthError, Error, Pool, PoolConfig, SaslMechanism, SecurityProtocol, TopicScope, TransportError,
};
use kcon_tests::kafka::{Kafka, Node, PASSWORD, USER};
use kcon_tests::pool::config;

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
