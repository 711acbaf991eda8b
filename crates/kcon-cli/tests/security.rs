//! The tool against Apache Kafka's own secured listeners (`Kafka::secure()`): a client whose
//! `security.protocol` is not the listener's is told which property to check, never that the
//! broker cannot be reached.

mod common;

use common::{Run, kcon};
use kcon_tests::kafka::{Kafka, Node};

fn node() -> Node {
    Kafka::secure().nodes().remove(0)
}

/// Asserts a failed run (exit 1) whose error says the connection could not be set up, and
/// holds every one of `parts`.
fn assert_setup_failure(run: &Run, parts: &[&str]) {
    assert_eq!(run.code(), 1, "{run:?}");
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("kcon: error: "))
        .unwrap_or_else(|| panic!("no error line: {run:?}"));
    assert!(
        error.starts_with("kcon: error: cannot set up a connection to the brokers: "),
        "{error}"
    );
    assert!(!error.contains("cannot reach"), "{error}");
    for part in parts {
        assert!(error.contains(part), "{part:?} not in {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_a_sasl_listener_is_told_to_set_security_protocol() {
    let node = node();
    let sasl = node.listener("SASL_PLAINTEXT");
    for args in [
        vec!["topic", "list", "-b", &sasl],
        vec!["consume", "-e", "-b", &sasl, "any-topic"],
    ] {
        let run = kcon(&args).await;
        assert_setup_failure(
            &run,
            &[
                &sasl,
                "a SASL listener does that to a client that does not authenticate",
                "security.protocol=SASL_PLAINTEXT",
                "sasl.mechanism",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_without_sasl_on_a_sasl_ssl_listener_is_told_to_set_security_protocol() {
    let node = node();
    let ca = format!("ssl.ca.location={}", node.tls("ca.pem").display());
    let listener = node.listener("SASL_SSL");
    let run = kcon(&[
        "topic",
        "list",
        "-b",
        &listener,
        "-X",
        "security.protocol=SSL",
        "-X",
        &ca,
    ])
    .await;
    assert_setup_failure(&run, &[&listener, "security.protocol=SASL_SSL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_a_tls_listener_is_told_to_set_security_protocol() {
    let node = node();
    let listener = node.listener("SSL");
    let run = kcon(&["topic", "list", "-b", &listener]).await;
    assert_setup_failure(
        &run,
        &[
            &listener,
            "its listener wants TLS (security.protocol SSL or SASL_SSL)",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_listener_is_told_to_check_security_protocol() {
    let node = node();
    let ca = format!("ssl.ca.location={}", node.tls("ca.pem").display());
    let listener = node.listener("SASL_PLAINTEXT");
    let run = kcon(&[
        "topic",
        "list",
        "-b",
        &listener,
        "-X",
        "security.protocol=SSL",
        "-X",
        &ca,
    ])
    .await;
    assert_setup_failure(
        &run,
        &[
            &listener,
            "during the TLS handshake",
            "security.protocol PLAINTEXT or SASL_PLAINTEXT",
        ],
    );
}
