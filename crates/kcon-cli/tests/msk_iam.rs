//! AWS MSK IAM (`sasl.oauthbearer.method=aws_msk_iam`): where the credentials come from. The
//! tool runs with an environment of the test's making (no AWS variable of the caller's, a
//! home directory of its own, instance metadata off unless tested) against a scripted broker
//! that keeps the token it is sent; each source of AWS's credential chain answers from a
//! stand-in of its endpoint or a file, and the token must be signed with what it gave.

mod common;

use std::path::Path;

use common::{Run, command};
use kcon_tests::aws::{Reply, StandIn, credentials_json, param, sts, token_keeper, tokens_sent};

/// The properties that log in with aws_msk_iam in eu-west-1.
const LOGIN: [&str; 8] = [
    "-X",
    "security.protocol=SASL_PLAINTEXT",
    "-X",
    "sasl.mechanism=OAUTHBEARER",
    "-X",
    "sasl.oauthbearer.method=aws_msk_iam",
    "-X",
    "sasl.aws.region=eu-west-1",
];

/// `kcon args` logging in with aws_msk_iam ([`LOGIN`], then `extra` properties), in an
/// environment of `env` alone (and `home` as the home directory; instance metadata off unless
/// `env` names its endpoint); with the arguments it was given, for [`common::finish`].
fn msk_tool(
    args: &[&str],
    home: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (tokio::process::Command, Vec<String>) {
    let mut all: Vec<String> = args.iter().chain(&LOGIN).map(|s| s.to_string()).collect();
    for e in extra {
        all.extend(["-X".to_owned(), e.to_string()]);
    }
    let borrowed: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut c = command(&borrowed);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            c.env_remove(name);
        }
    }
    c.env("HOME", home);
    if !env
        .iter()
        .any(|(k, _)| *k == "AWS_EC2_METADATA_SERVICE_ENDPOINT")
    {
        c.env("AWS_EC2_METADATA_DISABLED", "true");
    }
    for (k, v) in env {
        c.env(k, v);
    }
    (c, all)
}

/// Runs a [`msk_tool`] command to its end.
async fn finish(tool: (tokio::process::Command, Vec<String>)) -> Run {
    let (mut c, args) = tool;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::finish(c.spawn().expect("run kcon"), &args).await
}

/// `kcon consume` against `broker` with aws_msk_iam in eu-west-1, `extra` properties added,
/// in an environment of `env` alone (and `home` as the home directory).
async fn run_tool(broker: &str, home: &Path, env: &[(&str, &str)], extra: &[&str]) -> Run {
    finish(msk_tool(
        &["consume", "-e", "-b", broker, "msk-topic"],
        home,
        env,
        extra,
    ))
    .await
}

/// The one token the broker was sent: signed with `key`, carrying `session`.
fn assert_signed_with(broker: &kcon_scripted::Broker, run: &Run, key: &str, session: &str) {
    assert_signed(broker, run, key, Some(session));
}

/// The one token the broker was sent: signed with `key`, carrying `session` if any.
fn assert_signed(broker: &kcon_scripted::Broker, run: &Run, key: &str, session: Option<&str>) {
    assert_eq!(run.code(), 1, "the broker refuses every token: {run:?}");
    let tokens = tokens_sent(broker);
    let url = tokens
        .first()
        .unwrap_or_else(|| panic!("no token was sent: {run:?}"));
    assert!(
        url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"),
        "{url}"
    );
    let credential = param(url, "X-Amz-Credential").expect("X-Amz-Credential");
    assert!(
        credential.starts_with(&format!("{key}%2F"))
            && credential.contains("%2Feu-west-1%2Fkafka-cluster%2F"),
        "{credential}"
    );
    assert_eq!(param(url, "X-Amz-Security-Token"), session, "{url}");
}

/// Keys in the environment (no session token); and no credentials anywhere, which fails the
/// login saying so before any token is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_environment_or_none() {
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ],
        &[],
    )
    .await;
    assert_signed(&broker, &run, "AKIAENVEXAMPLE", None);

    let broker = token_keeper().await;
    let run = run_tool(&broker.address(), home.path(), &[], &[]).await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the token provider failed: AWS credentials: "),
        "{run:?}"
    );
    assert!(tokens_sent(&broker).is_empty());
}

/// The ECS container endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, with the authorization
/// token ECS and EKS Pod Identity hand the container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_ecs_container_endpoint() {
    let ecs = StandIn::start(Box::new(|r| {
        if r.path == "/v2/credentials/kcon" {
            Reply::ok(credentials_json(
                "ASIAECSEXAMPLE",
                "ecs-secret",
                "ecs-session",
            ))
        } else {
            Reply::status(404)
        }
    }))
    .await;
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let uri = format!("{}/v2/credentials/kcon", ecs.url);
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "container-auth"),
        ],
        &[],
    )
    .await;
    assert_signed_with(&broker, &run, "ASIAECSEXAMPLE", "ecs-session");
    let asked = ecs.requests();
    assert!(
        asked
            .iter()
            .all(|r| r.header("authorization") == Some("container-auth")),
        "{asked:?}"
    );
}

/// EC2 instance metadata, IMDSv2: a session token first (PUT), then the role and its
/// credentials, each asked with that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_ec2_instance_metadata_with_its_token_step() {
    let imds = StandIn::start(Box::new(|r| {
        let token_ok = r.header("x-aws-ec2-metadata-token") == Some("imds-session-token");
        match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/latest/api/token") => {
                match r.header("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(ttl) => Reply::ok("imds-session-token")
                        .with_header("x-aws-ec2-metadata-token-ttl-seconds", ttl),
                    None => Reply::status(400),
                }
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") if token_ok => {
                Reply::ok("msk-role")
            }
            ("GET", "/latest/meta-data/iam/security-credentials/msk-role") if token_ok => {
                Reply::ok(credentials_json(
                    "ASIAIMDSEXAMPLE",
                    "imds-secret",
                    "imds-session",
                ))
            }
            ("GET", _) if !token_ok => Reply::status(401),
            _ => Reply::status(404),
        }
    }))
    .await;
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url)],
        &[],
    )
    .await;
    assert_signed_with(&broker, &run, "ASIAIMDSEXAMPLE", "imds-session");
    let asked = imds.requests();
    let first = asked.first().expect("IMDS was asked");
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("PUT", "/latest/api/token"),
        "{asked:?}"
    );
    assert!(
        asked[1..]
            .iter()
            .all(|r| r.header("x-aws-ec2-metadata-token") == Some("imds-session-token")),
        "{asked:?}"
    );
}

/// Web identity (EKS's IAM roles for service accounts): the token file read, the role assumed
/// with it at STS (a stand-in at `AWS_ENDPOINT_URL_STS`), the assumed role's credentials used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_web_identity_token_file_and_sts() {
    let sts = sts(
        "AssumeRoleWithWebIdentity",
        "ASIAWEBEXAMPLE",
        "web-secret",
        "web-session",
    )
    .await;
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("web-identity-token");
    std::fs::write(&token_file, "the-service-account-jwt").unwrap();
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/msk"),
            ("AWS_ROLE_SESSION_NAME", "kcon-session"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
        &[],
    )
    .await;
    assert_signed_with(&broker, &run, "ASIAWEBEXAMPLE", "web-session");
    let asked = sts.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let form = &asked[0].body;
    for part in [
        "WebIdentityToken=the-service-account-jwt",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fmsk",
        "RoleSessionName=kcon-session",
    ] {
        assert!(form.contains(part), "{part} not in {form}");
    }
}

/// A named profile of the credentials file (`sasl.aws.profile`), not the default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_named_profile() {
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIADEFAULTEXAMPLE\naws_secret_access_key = d\n\
         [msk]\naws_access_key_id = ASIAPROFILEEXAMPLE\naws_secret_access_key = p\n\
         aws_session_token = profile-session\n",
    )
    .unwrap();
    let config = home.path().join("config");
    std::fs::write(&config, "[default]\nregion = us-east-1\n").unwrap();
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ],
        &["sasl.aws.profile=msk"],
    )
    .await;
    assert_signed_with(&broker, &run, "ASIAPROFILEEXAMPLE", "profile-session");
}

/// A role assumed (`sasl.aws.role.arn`, `sasl.aws.role.session.name`) with the chain's
/// credentials, keys in the environment here: STS (a stand-in) is asked, its request signed
/// with those keys, and the token is signed with the role's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_an_assumed_role() {
    let sts = sts(
        "AssumeRole",
        "ASIAROLEEXAMPLE",
        "role-secret",
        "role-session",
    )
    .await;
    let broker = token_keeper().await;
    let home = tempfile::tempdir().unwrap();
    let run = run_tool(
        &broker.address(),
        home.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIABASEEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "base-secret"),
            ("AWS_ENDPOINT_URL_STS", &sts.url),
        ],
        &[
            "sasl.aws.role.arn=arn:aws:iam::123456789012:role/msk",
            "sasl.aws.role.session.name=billing",
        ],
    )
    .await;
    assert_signed_with(&broker, &run, "ASIAROLEEXAMPLE", "role-session");
    let asked = sts.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let form = &asked[0].body;
    for part in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fmsk",
        "RoleSessionName=billing",
    ] {
        assert!(form.contains(part), "{part} not in {form}");
    }
    let authorization = asked[0].header("authorization").unwrap_or_default();
    assert!(
        authorization.contains("Credential=AKIABASEEXAMPLE/"),
        "STS is asked with the base keys: {authorization}"
    );
}

/// On a broker that checks the tokens as MSK would (the `oidc` cluster's listener MSK_IAM, its
/// validator recomputing each SigV4 signature and ending every session after 5 s), with
/// credentials from the ECS endpoint that last 20 s, each a new access key: the tool produces
/// for about 20 s while a group's member reads, every connection re-authenticating with new
/// tokens signed with new credentials, and every record arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_renewed_under_reauthentication_on_a_broker_that_checks_them() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;

    let prefix = format!("ASIA{}", std::process::id());
    let issued = std::sync::Arc::new(AtomicUsize::new(0));
    let ecs = {
        let (prefix, issued) = (prefix.clone(), issued.clone());
        StandIn::start(Box::new(move |_| {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Reply::ok(kcon_tests::aws::credentials_json_expiring(
                &format!("{prefix}X{n:04}"),
                "kcon-msk-test-secret",
                &format!("session-{n}"),
                20,
            ))
        }))
        .await
    };
    let kafka = kcon_tests::kafka::Kafka::oidc();
    let node = kafka.nodes().remove(0);
    let listener = node.listener("MSK_IAM");
    let home = tempfile::tempdir().unwrap();
    let uri = format!("{}/creds", ecs.url);
    let env = [("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str())];
    let topic = kcon_tests::brokers::unique_name("msk-iam");
    let group = kcon_tests::brokers::unique_name("msk-iam-group");
    let tool = |args: &[&str]| msk_tool(args, home.path(), &env, &[]);
    finish(tool(&["topic", "create", "-b", &listener, &topic]))
        .await
        .ok();

    const N: usize = 2000;
    let count = N.to_string();
    let consumer = tokio::spawn(finish(tool(&[
        "consume", "-b", &listener, "-g", &group, "-c", &count, &topic,
    ])));
    let (mut produce, produce_args) = tool(&["produce", "-b", &listener, &topic]);
    produce.stdin(std::process::Stdio::piped());
    let mut producer = produce.spawn().unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    // 100 records a second for 20 s: four sessions' worth on every connection.
    for chunk in 0..N / 10 {
        let lines: String = (chunk * 10..chunk * 10 + 10)
            .map(|i| format!("v{i}\n"))
            .collect();
        if stdin.write_all(lines.as_bytes()).await.is_err() {
            // The tool ended: its run below says why.
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(stdin);
    let args: Vec<&str> = produce_args.iter().map(String::as_str).collect();
    common::finish(producer, &args).await.ok();
    let consumed = consumer.await.unwrap().ok();
    let values: Vec<String> = consumed
        .stdout
        .lines()
        .map(|l| l.split_once(' ').expect("OFFSET VALUE").1.to_owned())
        .collect();
    assert_eq!(
        values,
        (0..N).map(|i| format!("v{i}")).collect::<Vec<_>>(),
        "every record once, in order"
    );

    // The broker accepted tokens signed with several of the credentials, and refused none of
    // this test's.
    let log = std::fs::read_to_string(node.dir.join("stdout")).unwrap();
    let keys: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("kcon-msk-iam accepted "))
        .filter_map(|l| l.split(' ').next())
        .filter(|key| key.starts_with(&prefix))
        .collect();
    assert!(
        keys.len() >= 4,
        "the broker accepted tokens of {} credentials ({} issued): {keys:?}",
        keys.len(),
        issued.load(Ordering::SeqCst)
    );
}
