//! The tool against Apache Kafka's own secured listeners (`Kafka::secure()`): a client whose
//! `security.protocol` is not the listener's is told which property to check, never that the
//! broker cannot be reached.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Run, Running, command, kcon, kcon_with_input};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, Node, PASSWORD, USER};
use tokio::io::AsyncWriteExt;

fn node() -> Node {
    Kafka::secure().nodes().remove(0)
}

/// `-X` arguments logging in on a SASL_PLAINTEXT listener with `mechanism` as `user`.
fn sasl(mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT".to_owned(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|p| ["-X".to_owned(), p])
    .collect()
}

/// `kcon ARGS` with `extra` appended.
async fn kcon_plus(args: &[&str], extra: &[String]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    kcon(&all).await
}

/// The `kcon: error: ` line of a failed run (exit 1).
fn error_line(run: &Run) -> &str {
    assert_eq!(run.code(), 1, "{run:?}");
    run.stderr
        .lines()
        .find(|l| l.starts_with("kcon: error: "))
        .unwrap_or_else(|| panic!("no error line: {run:?}"))
}

/// Asserts a refused login: the tool's prefix, and every one of `parts`.
fn assert_refused_login(run: &Run, parts: &[&str]) {
    let error = error_line(run);
    assert!(
        error.starts_with("kcon: error: authentication failed: "),
        "{error}"
    );
    for part in parts {
        assert!(error.contains(part), "{part:?} not in {error}");
    }
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

/// Kafka refuses a wrong password and an unknown user alike, in each mechanism's words: the
/// tool adds the properties to check, and never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_name_sasl_username_and_sasl_password() {
    let listener = node().listener("SASL_PLAINTEXT");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        for (user, password) in [
            (USER, "not-the-password"),
            ("nobody-here", "not-the-password"),
        ] {
            let run = kcon_plus(
                &["topic", "list", "-b", &listener],
                &sasl(mechanism, user, password),
            )
            .await;
            assert_refused_login(
                &run,
                &[
                    &format!("SASL {mechanism} authentication failed: refused by the broker"),
                    "SASL_AUTHENTICATION_FAILED",
                    "(check sasl.username and sasl.password)",
                ],
            );
            assert!(!run.stderr.contains(password), "{run:?}");
        }
    }
}

/// The PLAIN_ONLY listener enables PLAIN alone: a client asking for SCRAM is told the
/// listener's mechanisms and the property to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_the_listener_lacks_names_sasl_mechanism() {
    let listener = node().listener("PLAIN_ONLY");
    let run = kcon_plus(
        &["topic", "list", "-b", &listener],
        &sasl("SCRAM-SHA-512", USER, PASSWORD),
    )
    .await;
    assert_refused_login(
        &run,
        &["it enables [PLAIN]", "set sasl.mechanism to one of those"],
    );
    // The same user with the listener's mechanism gets in.
    kcon_plus(
        &["topic", "list", "-b", &listener],
        &sasl("PLAIN", USER, PASSWORD),
    )
    .await
    .ok();
}

/// Kafka answers a SaslHandshake on a PLAINTEXT or SSL listener with ILLEGAL_SASL_STATE: the
/// client is told which security.protocol the listener most likely has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_on_a_listener_without_it_names_security_protocol() {
    let node = node();
    let plaintext = format!("127.0.0.1:{}", node.port);
    let run = kcon_plus(
        &["topic", "list", "-b", &plaintext],
        &sasl("PLAIN", USER, PASSWORD),
    )
    .await;
    assert_refused_login(
        &run,
        &[
            "ILLEGAL_SASL_STATE",
            "if it is a PLAINTEXT listener, set security.protocol=PLAINTEXT",
        ],
    );
    let ssl = node.listener("SSL");
    let ca = format!("ssl.ca.location={}", node.tls("ca.pem").display());
    let mut props = sasl("PLAIN", USER, PASSWORD);
    props[1] = "security.protocol=SASL_SSL".to_owned();
    props.extend(["-X".to_owned(), ca]);
    let run = kcon_plus(&["topic", "list", "-b", &ssl], &props).await;
    assert_refused_login(
        &run,
        &["if it is an SSL listener, set security.protocol=SSL"],
    );
}

/// Runs one of Kafka's `ConfigCommand` alterations of `user`'s SCRAM credentials.
fn alter_user(user: &str, change: &[&str]) {
    let mut args = vec!["--alter"];
    args.extend_from_slice(change);
    args.extend_from_slice(&["--entity-type", "users", "--entity-name", user]);
    Kafka::secure().tool("org.apache.kafka.tools.ConfigCommand", &args);
}

/// A group consumer on the REAUTH listener (sessions of 5 s) whose user loses its credential:
/// its next login is refused, the group member cannot go on, and the tool ends with the same
/// words as a refused first login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_end_a_group_consumer_as_a_refused_first_login() {
    let kafka = Kafka::secure();
    let node = node();
    let user = unique_name("revoked");
    let password = "revoked-secret";
    alter_user(
        &user,
        &[
            "--add-config",
            &format!("SCRAM-SHA-256=[password={password}]"),
        ],
    );
    let topic = unique_name("revoked");
    kcon(&["topic", "create", "-b", kafka.bootstrap(), &topic])
        .await
        .ok();
    kcon_with_input(&["produce", "-b", kafka.bootstrap(), &topic], b"a\nb\nc\n")
        .await
        .ok();

    let group = unique_name("revoked");
    let listener = node.listener("REAUTH");
    let mut args = vec!["consume", "-b", &listener, "-g", &group, &topic];
    let login = sasl("SCRAM-SHA-256", &user, password);
    args.extend(login.iter().map(String::as_str));
    let mut running = Running::start(&args);
    let lines = running.stdout_lines(3, Duration::from_secs(30)).await;
    assert!(lines[2].ends_with(" c"), "{lines:?}");

    alter_user(&user, &["--delete-config", "SCRAM-SHA-256"]);
    // The session ends within 5 s of the last login; the login after it is refused.
    let (status, _, stderr) = running.wait(Duration::from_secs(45)).await;
    assert_eq!(status.code(), Some(1), "{stderr:#?}");
    let error = stderr
        .iter()
        .find(|l| l.starts_with("kcon: error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr:#?}"));
    assert!(
        error.starts_with("kcon: error: authentication failed: "),
        "{error}"
    );
    assert!(
        error.contains("SASL SCRAM-SHA-256 authentication failed")
            && error.contains("(check sasl.username and sasl.password)"),
        "{error}"
    );
}

/// A topic on the secure cluster with `values` written to it (one partition).
async fn topic_with(values: &[String]) -> String {
    let kafka = Kafka::secure();
    let topic = unique_name("oauth");
    kcon(&["topic", "create", "-b", kafka.bootstrap(), &topic])
        .await
        .ok();
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    kcon_with_input(
        &["produce", "-b", kafka.bootstrap(), &topic],
        input.as_bytes(),
    )
    .await
    .ok();
    topic
}

/// The values of a text output's lines, in order.
fn values(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_once(' ').expect("OFFSET VALUE").1.to_owned())
        .collect()
}

/// An unsecured JWT for `principal`, valid for `life` from now, as a test writes it into a
/// token file: `{"alg":"none"}`, `sub`, `iat`, `exp`, no signature.
fn unsecured_token(principal: &str, life: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let claims = serde_json::json!({
        "sub": principal,
        "iat": now,
        "exp": now + life.as_secs_f64(),
    });
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `-X` arguments for OAUTHBEARER over SASL_PLAINTEXT with `source`'s properties.
fn oauthbearer(source: &[&str]) -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=OAUTHBEARER",
    ]
    .iter()
    .chain(source)
    .flat_map(|p| ["-X".to_owned(), (*p).to_owned()])
    .collect()
}

/// `-X sasl.mechanism=OAUTHBEARER` alone is refused before any broker is asked, naming the
/// properties that give a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_without_a_token_names_the_properties_that_give_one() {
    let listener = node().listener("SASL_PLAINTEXT");
    let run = kcon_plus(&["consume", "-e", "-b", &listener, "t"], &oauthbearer(&[])).await;
    assert_eq!(run.code(), 2, "{run:?}");
    for part in [
        "bad configuration: ",
        "sasl.oauthbearer.token.file",
        "sasl.oauthbearer.config",
        "enable.sasl.oauthbearer.unsecure.jwt=true",
    ] {
        assert!(run.stderr.contains(part), "{part:?} not in {}", run.stderr);
    }
    assert!(!run.stderr.contains("PoolConfig"), "{}", run.stderr);
}

/// The unsecured JWT librdkafka makes from `sasl.oauthbearer.config`, which Kafka's
/// unsecured validator takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_consumes_with_an_unsecured_jwt_from_sasl_oauthbearer_config() {
    let sent: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let topic = topic_with(&sent).await;
    let listener = node().listener("SASL_PLAINTEXT");
    let source = [
        "sasl.oauthbearer.config=principal=alice scope=kafka lifeSeconds=600",
        "enable.sasl.oauthbearer.unsecure.jwt=true",
    ];
    let run = kcon_plus(
        &["consume", "-e", "-b", &listener, &topic],
        &oauthbearer(&source),
    )
    .await
    .ok();
    assert_eq!(values(&run.stdout), sent);
}

/// Tokens from a real OAuth 2.0 server (the Hydra beside `Kafka::oidc()`), by the client
/// credentials grant: the tool creates a topic, produces and consumes with them, and a wrong
/// secret fails with the server's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_logs_in_with_tokens_from_an_oauth_token_endpoint() {
    let kafka = Kafka::oidc();
    let hydra = kafka.hydra();
    let client = unique_name("oidc-tool");
    hydra.create_client(&client, "tool-secret", None);
    let listener = kafka.nodes().remove(0).listener("OIDC");
    let login = |secret: &str| {
        oauthbearer(&[
            &format!(
                "sasl.oauthbearer.token.endpoint.url={}",
                hydra.token_endpoint
            ),
            &format!("sasl.oauthbearer.client.id={client}"),
            &format!("sasl.oauthbearer.client.secret={secret}"),
            "sasl.oauthbearer.scope=kafka",
        ])
    };
    let topic = unique_name("oidc-tool");
    kcon_plus(
        &["topic", "create", "-b", &listener, &topic],
        &login("tool-secret"),
    )
    .await
    .ok();
    let sent: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let input: String = sent.iter().map(|v| format!("{v}\n")).collect();
    let mut args = vec!["produce", "-b", &listener, &topic];
    let produce_login = login("tool-secret");
    args.extend(produce_login.iter().map(String::as_str));
    kcon_with_input(&args, input.as_bytes()).await.ok();
    let run = kcon_plus(
        &["consume", "-e", "-b", &listener, &topic],
        &login("tool-secret"),
    )
    .await
    .ok();
    assert_eq!(values(&run.stdout), sent);

    let run = kcon_plus(
        &["consume", "-e", "-b", &listener, &topic],
        &login("not-the-secret"),
    )
    .await;
    assert_refused_login(&run, &["HTTP 401", "invalid_client", &hydra.token_endpoint]);
}

/// Kerberos (the realm beside `Kafka::kerberos()`, its krb5.conf in `KRB5_CONFIG`, which the
/// tool inherits): with a keytab the tool creates a topic, produces and consumes; a principal
/// the KDC does not know fails with the KDC's answer and the properties to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_logs_in_with_kerberos_from_a_keytab() {
    let realm = kcon_tests::kerberos::realm();
    let listener = kcon_tests::kerberos::listener();
    let login = |principal: &str| -> Vec<String> {
        vec![
            "-X".to_owned(),
            "security.protocol=SASL_PLAINTEXT".to_owned(),
            "-X".to_owned(),
            "sasl.mechanism=GSSAPI".to_owned(),
            "-X".to_owned(),
            format!("sasl.kerberos.principal={principal}"),
            "-X".to_owned(),
            format!("sasl.kerberos.keytab={}", realm.keytab(principal).display()),
        ]
    };
    let topic = unique_name("kerberos-tool");
    kcon_plus(
        &["topic", "create", "-b", &listener, &topic],
        &login("kcon"),
    )
    .await
    .ok();
    let sent: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let input: String = sent.iter().map(|v| format!("{v}\n")).collect();
    let mut args = vec!["produce", "-b", &listener, &topic];
    let produce_login = login("kcon");
    args.extend(produce_login.iter().map(String::as_str));
    kcon_with_input(&args, input.as_bytes()).await.ok();
    let run = kcon_plus(&["consume", "-e", "-b", &listener, &topic], &login("kcon")).await;
    assert_eq!(values(&run.ok().stdout), sent);

    let run = kcon_plus(&["consume", "-e", "-b", &listener, &topic], &login("ghost")).await;
    assert_refused_login(
        &run,
        &[
            "SASL GSSAPI authentication failed",
            "Client 'ghost@KCON.TEST' not found in Kerberos database",
            "sasl.kerberos.keytab",
        ],
    );
}

/// A token read from `sasl.oauthbearer.token.file`; a token Kafka refuses names where it came
/// from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_consumes_with_a_token_from_sasl_oauthbearer_token_file() {
    let sent: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let topic = topic_with(&sent).await;
    let listener = node().listener("SASL_PLAINTEXT");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.jwt");
    std::fs::write(
        &file,
        unsecured_token(USER, Duration::from_secs(600)) + "\n",
    )
    .unwrap();
    let source = format!("sasl.oauthbearer.token.file={}", file.display());
    let run = kcon_plus(
        &["consume", "-e", "-b", &listener, &topic],
        &oauthbearer(&[&source]),
    )
    .await
    .ok();
    assert_eq!(values(&run.stdout), sent);

    // Expired: Kafka's validator refuses it.
    std::fs::write(&file, unsecured_token(USER, Duration::ZERO)).unwrap();
    let run = kcon_plus(
        &["consume", "-e", "-b", &listener, &topic],
        &oauthbearer(&[&source]),
    )
    .await;
    assert_refused_login(
        &run,
        &[
            "SASL OAUTHBEARER authentication failed",
            "sasl.oauthbearer.token.file",
        ],
    );
}

/// Writes `values` to `topic` through `kcon produce`, one line every `every`, while the test
/// goes on; returns when all are written and the producer has exited.
async fn produce_slowly(topic: String, values: Vec<String>, every: Duration) {
    let kafka = Kafka::secure();
    let mut producer = command(&["produce", "-b", kafka.bootstrap(), &topic]);
    producer.stdin(std::process::Stdio::piped());
    let mut child = producer.spawn().expect("run kcon produce");
    let mut stdin = child.stdin.take().expect("piped stdin");
    for v in values {
        stdin.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        tokio::time::sleep(every).await;
    }
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Consumes `n` records from `topic` on the REAUTH listener (sessions of 5 s) with `source`
/// while they are produced one every 100 ms: every record arrives, once and in order, and the
/// connections re-authenticated (the pool's debug lines) without a refused login.
async fn consume_across_reauthentications(source: &[&str], renew: Option<std::path::PathBuf>) {
    let node = node();
    let sent: Vec<String> = (0..130).map(|i| format!("r{i}")).collect();
    let topic = topic_with(&[]).await;
    let listener = node.listener("REAUTH");
    let count = sent.len().to_string();
    let mut args = vec!["consume", "-b", &listener, "-c", &count, &topic];
    let props = oauthbearer(source);
    args.extend(props.iter().map(String::as_str));
    let running = Running::start_with_env(&args, &[("KCON_LOG", "kcon_pool::connection=debug")]);
    let producing = tokio::spawn(produce_slowly(
        topic.clone(),
        sent.clone(),
        Duration::from_millis(100),
    ));
    // A fresh token every second, valid for 8 s: a client that kept its first token would
    // be refused from the second re-authentication on.
    let renewing = renew.map(|file| {
        tokio::spawn(async move {
            loop {
                std::fs::write(&file, unsecured_token(USER, Duration::from_secs(8))).unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    let (status, stdout, stderr) = running.wait(Duration::from_secs(60)).await;
    producing.await.unwrap();
    if let Some(r) = renewing {
        r.abort();
    }
    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    let got: Vec<String> = values(&stdout.join("\n"));
    assert_eq!(got, sent, "every record, once, in order");
    let reauthentications = stderr
        .iter()
        .filter(|l| l.contains("re-authenticating"))
        .count();
    assert!(reauthentications >= 2, "{stderr:#?}");
    assert!(
        !stderr.iter().any(|l| l.contains("authentication failed")),
        "{stderr:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsecured_jwt_reauthenticates_while_the_tool_consumes_and_nothing_is_lost() {
    consume_across_reauthentications(
        &[
            "sasl.oauthbearer.config=principal=alice lifeSeconds=600",
            "enable.sasl.oauthbearer.unsecure.jwt=true",
        ],
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_token_file_is_read_again_at_each_reauthentication() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.jwt");
    std::fs::write(&file, unsecured_token(USER, Duration::from_secs(8))).unwrap();
    let source = format!("sasl.oauthbearer.token.file={}", file.display());
    consume_across_reauthentications(&[&source], Some(file.clone())).await;
}
