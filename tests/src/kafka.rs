//! Apache Kafka for tests: the clusters of `scripts/kafka`, shared by every test of a run.
//!
//! A JVM broker takes about 8 s and 350 MB to start, so no test starts its own: the first test
//! process (or `scripts/test`, before the runner) that asks for a cluster starts it, and every
//! later one finds it running (`scripts/kafka up` is idempotent and locked per cluster). Tests
//! keep out of each other's way by their names: every topic, group and transactional id is
//! [`unique_name`](crate::brokers::unique_name)'s.
//!
//! - [`Kafka::single`]: Apache Kafka 4.4.0, one node (broker and controller), share groups and
//!   transaction version 2 enabled: the broker of the real-broker suites.
//! - [`Kafka::cluster`]: 4.4.0, three nodes in racks `rack-1`..`rack-3`, replication 3 and
//!   `min.insync.replicas=2` by default, the rack-aware replica selector (KIP-392): faults that
//!   need a cluster. A test that kills a node or moves leaders runs alone (nextest's
//!   `kafka-cluster` group, `.config/nextest.toml`) and leaves every node running
//!   ([`Kafka::start_node`]; the next `up` also restarts a node a failed test left dead).
//! - [`Kafka::kafka39`]: 3.9.1, one node, with 3.9's defaults (the consumer protocol off): the
//!   compatibility suite.
//! - [`Kafka::secure`]: 4.4.0, one node with a listener per security protocol
//!   ([`Node::listeners`]: `SASL_PLAINTEXT`, `REAUTH` (SASL with re-authentication every 5 s),
//!   `SSL`, `MTLS` (a client certificate required), `SASL_SSL`, `PLAIN_ONLY` (SASL_PLAINTEXT
//!   enabling PLAIN alone)); SASL mechanisms PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER (Kafka's
//!   unsecured-JWT validator), user [`USER`]/[`PASSWORD`]; its PEM files in [`Node::tls`].
//! - [`Kafka::noauto`]: 4.4.0, one node with `auto.create.topics.enable=false` (the one setting
//!   off its default): a broker that creates no topic on demand, whoever asks.
//! - [`Kafka::oidc`]: 4.4.0, one node with a listener `OIDC` (SASL_PLAINTEXT, OAUTHBEARER
//!   alone) that validates JWTs with Kafka's own `OAuthBearerValidatorCallbackHandler`
//!   against the key set of an Ory Hydra (a real OAuth 2.0 server) started with the cluster
//!   ([`Kafka::hydra`]), and ends a session when its token expires (KIP-368); and a listener
//!   `MSK_IAM` that checks AWS MSK IAM tokens as Amazon MSK would (`tests/java/MskIamValidator.java`,
//!   a broker plugin: SigV4 with the secret `kcon-msk-test-secret` for any access key, region
//!   eu-west-1), ending sessions after 5 s.
//! - [`Kafka::kerberos`]: 4.4.0, one node with a listener `KERBEROS` (SASL_PLAINTEXT, GSSAPI
//!   alone, service principal `kafka/127.0.0.1`, sessions of 6 s) in a realm of its own served
//!   by MIT Kerberos's KDC ([`Kafka::realm`]).
//!
//! A cluster that cannot start fails the test with the reason and its log's tail, as
//! `scripts/kafka` reports them: nothing skips.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use kcon_codec::kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use serde_json::Value;

use crate::brokers::repo_root;

/// The Kerberos realm beside [`Kafka::kerberos`]: its client configuration, its KDC's log, and
/// a keytab for each client principal (`kcon`, `kcon-short` whose tickets last 12 s, and `ghost`,
/// deleted from the realm after its keytab was written).
#[derive(Debug, Clone)]
pub struct Realm {
    /// `KCON.TEST`.
    pub name: String,
    /// The realm's krb5.conf: where its KDC listens.
    pub krb5_conf: std::path::PathBuf,
    /// The KDC's log: a line per ticket it issues or refuses.
    pub kdc_log: std::path::PathBuf,
    keytabs: BTreeMap<String, std::path::PathBuf>,
}

impl Realm {
    /// The keytab of client principal `name`; panics if the realm has none.
    pub fn keytab(&self, name: &str) -> std::path::PathBuf {
        self.keytabs
            .get(name)
            .unwrap_or_else(|| panic!("the realm has no keytab for {name}"))
            .clone()
    }

    /// How many ticket-granting tickets the KDC has issued to `principal` (`name@REALM`) so
    /// far: its AS_REQ lines that say ISSUE.
    pub fn tickets_issued(&self, principal: &str) -> usize {
        let log = std::fs::read_to_string(&self.kdc_log)
            .unwrap_or_else(|e| panic!("{}: {e}", self.kdc_log.display()));
        let wanted = format!(" {principal} for krbtgt/");
        log.lines()
            .filter(|l| l.contains("AS_REQ") && l.contains("ISSUE") && l.contains(&wanted))
            .count()
    }

    /// Panics unless this process reads the realm's krb5.conf through `KRB5_CONFIG`, as
    /// `.cargo/config.toml` sets it for the workspace's tests: otherwise MIT Kerberos would
    /// look for the realm where it is not.
    pub fn assert_configured(&self) {
        let set = std::env::var_os("KRB5_CONFIG").map(std::path::PathBuf::from);
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        assert!(
            set.as_deref().and_then(canonical).is_some()
                && set.as_deref().and_then(canonical) == canonical(&self.krb5_conf),
            "KRB5_CONFIG is {set:?}, not the test realm's {}: run the tests with cargo from the \
             workspace (its .cargo/config.toml sets it), or set KRB5_CONFIG to that file",
            self.krb5_conf.display()
        );
    }
}

/// One of `scripts/kafka`'s clusters, running.
#[derive(Debug)]
pub struct Kafka {
    name: &'static str,
    bootstrap: String,
}

/// A node of a cluster, as `scripts/kafka status` reports it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node id (1, 2, 3).
    pub id: i32,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Whether its process runs.
    pub alive: bool,
    /// Its directory: `server.properties`, `server.log`, data.
    pub dir: std::path::PathBuf,
    /// The secure cluster's listeners by name, with their ports (empty elsewhere).
    pub listeners: std::collections::BTreeMap<String, u16>,
}

impl Node {
    /// `127.0.0.1:port` of the listener `name` (`SASL_SSL`, ...); panics if it has none.
    pub fn listener(&self, name: &str) -> String {
        let port = self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("node {} has no listener {name}", self.id));
        format!("127.0.0.1:{port}")
    }

    /// A PEM file of the secure cluster's: `ca.pem`, `client.pem`, `client-key.pem`.
    pub fn tls(&self, file: &str) -> std::path::PathBuf {
        self.dir.join("tls").join(file)
    }
}

/// The Ory Hydra beside [`Kafka::oidc`]: its token endpoint, and its admin API, where a test
/// registers the OAuth clients it logs in as (Hydra keeps them in memory).
#[derive(Debug, Clone)]
pub struct Hydra {
    /// `http://127.0.0.1:PORT/oauth2/token`.
    pub token_endpoint: String,
    /// `127.0.0.1:PORT` of the admin API.
    admin: String,
    /// `127.0.0.1:PORT` of the public API (the token endpoint's).
    pub public: String,
}

impl Hydra {
    /// Registers an OAuth client for the client credentials grant with scope `kafka`, its
    /// secret sent by HTTP basic authentication; its tokens last `lifespan` (Hydra's default,
    /// an hour, when `None`). Panics unless Hydra answers 201.
    pub fn create_client(&self, id: &str, secret: &str, lifespan: Option<Duration>) {
        let mut client = serde_json::json!({
            "client_id": id,
            "client_secret": secret,
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "kafka",
        });
        if let Some(life) = lifespan {
            client["client_credentials_grant_access_token_lifespan"] =
                Value::from(format!("{}ms", life.as_millis()));
        }
        self.admin_post("/admin/clients", &client);
    }

    /// Registers an OAuth client for the JWT bearer grant (RFC 7523) with scope `kafka`, its
    /// secret sent by HTTP basic authentication (Hydra authenticates the client of that grant
    /// too).
    pub fn create_jwt_bearer_client(&self, id: &str, secret: &str) {
        let client = serde_json::json!({
            "client_id": id,
            "client_secret": secret,
            "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "kafka",
        });
        self.admin_post("/admin/clients", &client);
    }

    /// Trusts assertions of `issuer` about `subject` signed by the key `jwk` (a public JWK
    /// with its `kid`), for scope `kafka`, until 2099.
    pub fn trust_jwt_issuer(&self, issuer: &str, subject: &str, jwk: Value) {
        let grant = serde_json::json!({
            "issuer": issuer,
            "subject": subject,
            "scope": ["kafka"],
            "jwk": jwk,
            "expires_at": "2099-01-01T00:00:00Z",
        });
        self.admin_post("/admin/trust/grants/jwt-bearer/issuers", &grant);
    }

    /// POSTs `body` to the admin API; panics unless Hydra answers 201.
    fn admin_post(&self, path: &str, body: &Value) {
        use std::io::{Read, Write};
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.admin,
            body.len()
        );
        let mut tcp = std::net::TcpStream::connect(&self.admin)
            .unwrap_or_else(|e| panic!("Hydra's admin API at {}: {e}", self.admin));
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "Hydra refused POST {path} {body}: {answer}"
        );
    }
}

/// The secure cluster's user, for PLAIN and both SCRAM mechanisms.
pub const USER: &str = "alice";
/// [`USER`]'s password.
pub const PASSWORD: &str = "alice-secret";

impl Kafka {
    /// Apache Kafka 4.4.0, one node: the broker of the real-broker suites. It takes the
    /// clients' metrics (KIP-714) with a plugin that writes what it is pushed
    /// ([`telemetry_pushes`](Kafka::telemetry_pushes)), so every client at its defaults asks it
    /// for a subscription.
    pub fn single() -> &'static Kafka {
        static SINGLE: OnceLock<Kafka> = OnceLock::new();
        SINGLE.get_or_init(|| Kafka::up("single"))
    }

    /// Apache Kafka 4.4.0, three nodes in three racks.
    pub fn cluster() -> &'static Kafka {
        static CLUSTER: OnceLock<Kafka> = OnceLock::new();
        CLUSTER.get_or_init(|| Kafka::up("cluster"))
    }

    /// Apache Kafka 3.9.1, one node, at its defaults (the consumer protocol off).
    pub fn kafka39() -> &'static Kafka {
        static KAFKA39: OnceLock<Kafka> = OnceLock::new();
        KAFKA39.get_or_init(|| Kafka::up("kafka39"))
    }

    /// Apache Kafka 4.4.0, one node with a listener of each security protocol.
    pub fn secure() -> &'static Kafka {
        static SECURE: OnceLock<Kafka> = OnceLock::new();
        SECURE.get_or_init(|| Kafka::up("secure"))
    }

    /// Apache Kafka 4.4.0, one node with `auto.create.topics.enable=false`.
    pub fn noauto() -> &'static Kafka {
        static NOAUTO: OnceLock<Kafka> = OnceLock::new();
        NOAUTO.get_or_init(|| Kafka::up("noauto"))
    }

    /// Apache Kafka 4.4.0, one node whose OAUTHBEARER listener `OIDC` takes the JWTs its
    /// Hydra signs.
    pub fn oidc() -> &'static Kafka {
        static OIDC: OnceLock<Kafka> = OnceLock::new();
        OIDC.get_or_init(|| Kafka::up("oidc"))
    }

    /// The OAuth 2.0 server of [`Kafka::oidc`]; panics on another cluster.
    pub fn hydra(&self) -> Hydra {
        let status = self.status();
        let h = &status["hydra"];
        let url = |key: &str| -> String {
            h[key]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no Hydra ({key}): {status}", self.name))
                .to_owned()
        };
        Hydra {
            token_endpoint: url("token_endpoint"),
            admin: format!(
                "127.0.0.1:{}",
                h["admin"].as_u64().expect("Hydra's admin port")
            ),
            public: format!(
                "127.0.0.1:{}",
                h["public"].as_u64().expect("Hydra's public port")
            ),
        }
    }

    /// Apache Kafka 4.4.0, one node whose GSSAPI listener `KERBEROS` takes the tickets of its
    /// realm's KDC.
    pub fn kerberos() -> &'static Kafka {
        static KERBEROS: OnceLock<Kafka> = OnceLock::new();
        KERBEROS.get_or_init(|| Kafka::up("kerberos"))
    }

    /// The Kerberos realm of [`Kafka::kerberos`]; panics on another cluster.
    pub fn realm(&self) -> Realm {
        let status = self.status();
        let kdc = &status["kdc"];
        let text = |key: &str| -> String {
            kdc[key]
                .as_str()
                .unwrap_or_else(|| panic!("{} has no KDC ({key}): {status}", self.name))
                .to_owned()
        };
        let keytabs = kdc["clients"]
            .as_object()
            .expect("the realm's clients")
            .iter()
            .map(|(name, path)| (name.clone(), path.as_str().expect("a keytab").into()))
            .collect();
        Realm {
            name: text("realm"),
            krb5_conf: text("krb5_conf").into(),
            kdc_log: text("log").into(),
            keytabs,
        }
    }

    /// Apache Kafka 4.4.0, one node whose fetch session cache holds 8 sessions, one per cache
    /// shard (`max.incremental.fetch.session.cache.slots`): a larger session takes the slot of
    /// one older than two minutes.
    pub fn sessions() -> &'static Kafka {
        static SESSIONS: OnceLock<Kafka> = OnceLock::new();
        SESSIONS.get_or_init(|| Kafka::up("sessions"))
    }

    fn up(name: &'static str) -> Kafka {
        let bootstrap = printed_bootstrap(name, "up");
        Kafka { name, bootstrap }
    }

    /// The bootstrap list: every node's `127.0.0.1:port`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The nodes, with whether each runs now.
    pub fn nodes(&self) -> Vec<Node> {
        self.status()["nodes"]
            .as_array()
            .expect("status lists nodes")
            .iter()
            .map(|v| Node {
                id: v["id"].as_i64().expect("a node id") as i32,
                port: v["port"].as_u64().expect("a port") as u16,
                alive: v["alive"].as_bool().unwrap_or(false),
                dir: v["dir"].as_str().expect("a directory").into(),
                listeners: v["listeners"]
                    .as_object()
                    .map(|l| {
                        l.iter()
                            .map(|(k, p)| (k.clone(), p.as_u64().expect("a port") as u16))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// SIGKILLs node `id`; its process is gone when this returns.
    pub fn kill_node(&self, id: i32) {
        scripts_kafka(&["kill", self.name, &id.to_string()]);
    }

    /// Starts node `id` again on its ports and data, and waits until it answers.
    pub fn start_node(&self, id: i32) {
        scripts_kafka(&["start", self.name, &id.to_string()]);
    }

    /// Stops every node, moves each to a new client port and starts them again on their data
    /// (`scripts/kafka move`): none of the addresses clients knew answers any more. Returns the
    /// new bootstrap list; [`bootstrap`](Kafka::bootstrap) keeps the old one, and the test
    /// processes after this one find the new one.
    pub fn move_nodes(&self) -> String {
        printed_bootstrap(self.name, "move")
    }

    /// The cluster id its nodes were formatted with.
    pub fn cluster_id(&self) -> String {
        self.status()["cluster_id"]
            .as_str()
            .expect("status names the cluster id")
            .to_owned()
    }

    /// The cluster's state as `scripts/kafka status` prints it.
    fn status(&self) -> Value {
        let out = scripts_kafka(&["status", self.name]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`scripts/kafka status {}`: {e}", self.name))
    }

    /// Runs one of Kafka's admin tools (`org.apache.kafka.tools.TopicCommand`, ...) against the
    /// cluster; panics with its output unless it exits 0. Returns its stdout.
    pub fn tool(&self, class: &str, args: &[&str]) -> String {
        let mut all = vec!["tool", self.name, class];
        all.extend_from_slice(args);
        let out = scripts_kafka(&all);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The first address of the bootstrap list `bootstrap` (`127.0.0.1:port,...`).
pub fn first_address(bootstrap: &str) -> std::net::SocketAddr {
    let first = bootstrap.split(',').next().expect("a bootstrap address");
    first
        .parse()
        .unwrap_or_else(|e| panic!("{first} is no 127.0.0.1:port: {e}"))
}

/// Runs `scripts/kafka COMMAND NAME` (`up`, `move`) and returns the bootstrap list it prints
/// for the cluster (its `NAME=BOOTSTRAP` line).
fn printed_bootstrap(name: &str, command: &str) -> String {
    let out = scripts_kafka(&[command, name]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("`scripts/kafka {command} {name}` printed no {name}=: {text}"))
        .to_owned()
}

/// Runs `scripts/kafka ARGS`, panicking with its stderr (the reason, a broker log's tail) when
/// it fails.
fn scripts_kafka(args: &[&str]) -> std::process::Output {
    let script = repo_root().join("scripts/kafka");
    let out = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`scripts/kafka {}` failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A topic to create: its name, partitions, and any topic configs.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// The replication factor; -1 takes the broker's `default.replication.factor`.
    pub replication: i16,
    /// Topic configs (`cleanup.policy`, `unclean.leader.election.enable`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// `partitions` partitions at the broker's default replication.
    pub fn new(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.to_owned(),
            partitions,
            replication: -1,
            configs: Vec::new(),
        }
    }

    /// The replication factor.
    pub fn replication(mut self, factor: i16) -> NewTopic {
        self.replication = factor;
        self
    }

    /// A topic config.
    pub fn config(mut self, name: &str, value: &str) -> NewTopic {
        self.configs.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Creates `topics` through the pool (CreateTopics to the controller's broker, which KRaft
/// brokers forward), and waits until every partition of each has a leader that takes requests
/// for it: Kafka answers CreateTopics before its leaders are elected everywhere, and a broker
/// names itself leader in its metadata a moment before it takes records, so a produce in
/// between gets NOT_LEADER_OR_FOLLOWER.
pub async fn create(pool: &Pool, topics: &[NewTopic]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication)
                        .with_configs(
                            t.configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string(k.clone()))
                                        .with_value(Some(StrBytes::from_string(v.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let answer = pool.send(BrokerTarget::Any, &request).await.unwrap();
    for t in &answer.topics {
        assert_eq!(
            t.error_code, 0,
            "creating {}: {:?}",
            t.name.0, t.error_message
        );
    }
    wait_for_leaders(pool, topics).await;
}

/// A pool on the shared single node, with `topics` of `(name, partitions)` created.
pub async fn single_with(topics: &[(&str, i32)]) -> Pool {
    let pool = Pool::new(crate::pool::config(Kafka::single().bootstrap()))
        .expect("a pool on the single node");
    create_topics(&pool, topics).await;
    pool
}

/// Creates topics of `(name, partitions)` at the broker's default replication.
pub async fn create_topics(pool: &Pool, topics: &[(&str, i32)]) {
    let topics: Vec<NewTopic> = topics.iter().map(|&(n, p)| NewTopic::new(n, p)).collect();
    create(pool, &topics).await;
}

/// Waits (up to 30 s) until the metadata names a leader for every partition of `topics`, and
/// each leader answers ListOffsets for its partitions without error (it answers
/// NOT_LEADER_OR_FOLLOWER, as to a produce, until it has taken the partition up).
async fn wait_for_leaders(pool: &Pool, topics: &[NewTopic]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let ends: BTreeMap<TopicPartition, OffsetSpec> = topics
        .iter()
        .flat_map(|t| {
            (0..t.partitions).map(|p| (TopicPartition::new(&t.name, p), OffsetSpec::Latest))
        })
        .collect();
    loop {
        let named = match pool.refresh_metadata(TopicScope::topics(&names)).await {
            Ok(meta) => topics
                .iter()
                .all(|t| (0..t.partitions).all(|p| meta.leader(&t.name, p).is_some())),
            Err(_) => false,
        };
        let taken_up = named
            && kcon_admin::list_offsets(pool, &ends, IsolationLevel::ReadUncommitted)
                .await
                .is_ok_and(|listed| listed.values().all(|l| l.error_code == 0));
        if taken_up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "topics {names:?} have no leader for every partition after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
