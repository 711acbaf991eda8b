//! Consumer-group peers for mixed-group tests: the Apache Kafka Java client, librdkafka
//! (confluent-kafka) and kafka-python consumers that join the same group as kcon's members and
//! report what they are assigned.
//!
//! Each [`GroupPeer`] runs `tests/py/group_member.py` with the brokers' virtualenv Python, or
//! for the Java client `tests/java/GroupMember.java` (through `scripts/kafka java`, which
//! compiles it against the 4.4.0 client); both speak the same lines. The script reads its configuration as the first line of stdin (like the other peers in
//! `tests/py/`), subscribes, polls without end (consuming and discarding records) and prints
//! one JSON event per line: `ready`, then `assigned` / `revoked` / `lost` with the partitions
//! the rebalance callback was given and the member's whole assignment after it (`full`), and
//! `error` for client errors, which are not always fatal (a broker closing a connection is one).
//! A reader thread keeps the events and the latest full assignment; [`GroupPeer::wait_for`]
//! waits on them. `close` on stdin makes the member leave the group and exit; so does the end of
//! stdin, so a peer never outlives its test. kafka-python logs at INFO on the peer's stderr
//! (each join, sync and assignment); set `GROUP_MEMBER_DEBUG=1` (or a librdkafka `debug` list
//! such as `cgrp,protocol`) to have either client log more there. Every failure message here
//! includes that stderr.
//!
//! # What the peers do on which broker (measured with 2-member groups on a 6-partition topic)
//!
//! - The Java client 4.4.0 on Apache Kafka 4.4: every assignor, and the consumer protocol
//!   (KIP-848) with the broker's assignors, at the client's own defaults (no shortened
//!   session). A JVM starts in about 2 s; a KIP-848 member is assigned about 1 s after that.
//! - librdkafka 2.16 and kafka-python 3.0.12 on Apache Kafka 4.4, at the clients' defaults
//!   ([`GroupPeerConfig::at_client_defaults`]): `range` and `cooperative-sticky` (librdkafka),
//!   `range`, `roundrobin`, `sticky` and `cooperative-sticky` (kafka-python), alone and mixed.
//! - librdkafka 2.16 on Tansu 0.6: `range`, `roundrobin` and `cooperative-sticky` work, alone
//!   and with kafka-python members. A join takes about `session.timeout.ms`/2 on Tansu, hence
//!   the 6 s session timeout (1 s heartbeats) the Python peers use unless told otherwise.
//! - librdkafka on the mock cluster: works (the mock's classic group applies a 3 s initial
//!   rebalance delay; see [`MockCluster::set_group_initial_rebalance_delay`]).
//! - kafka-python 3.0.12 on Tansu: `range`, `roundrobin`, `sticky` (KIP-54, eager) and
//!   `cooperative-sticky` (KIP-429) all work, alone and with librdkafka members. It has no
//!   KIP-848 (`group.protocol=consumer`) support to test against.
//! - kafka-python on the mock cluster: it cannot bootstrap at all by default. It opens with
//!   ApiVersions v4 (v3 when told a 2.4+ broker), which the mock refuses with
//!   UNSUPPORTED_VERSION laid out in the flexible format; kafka-python fails to decode that
//!   answer and drops the connection instead of retrying at v0, forever. With
//!   [`GroupPeerConfig::for_mock_cluster`] (`api_version=(2, 3)`: ApiVersions v2, and Kafka
//!   2.3's request versions, all inside what the mock parses correctly) it bootstraps and joins,
//!   but it is still unreliable as a group member there: the mock completes a sync as soon as
//!   the leader's SyncGroup has assigned every member, and answers a follower's SyncGroup that
//!   arrives after that with INVALID_REQUEST (42) (`rdkafka_mock_cgrp.c`, `sync_check` and
//!   `check_state`; see `tests/mock_harness.rs`). A kafka-python follower is often slower than
//!   the leader: with a librdkafka leader it was refused at every rejoin, with a kafka-python
//!   leader now and then. Use librdkafka peers on the mock; put kafka-python in groups on Tansu.
//!
//! [`MockCluster::set_group_initial_rebalance_delay`]:
//!     crate::mock::MockCluster::set_group_initial_rebalance_delay

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::brokers::{installed, repo_root};
use crate::group::Tp;

/// How long [`GroupPeer::start`] waits for the script to subscribe (it imports the client
/// library first; a loaded machine running many tests makes that slow).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`GroupPeer::close`] waits for the member to leave the group and exit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// Which client library a peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClient {
    /// librdkafka 2.16, through confluent-kafka 2.16.1.
    Librdkafka,
    /// kafka-python 3.0.12.
    KafkaPython,
    /// The Apache Kafka Java client 4.4.0 (`tests/java/GroupMember.java`, run by
    /// `scripts/kafka java`): the reference client, on Apache Kafka.
    Java,
}

impl PeerClient {
    /// The name `group_member.py` knows the client by.
    fn script_name(self) -> &'static str {
        match self {
            PeerClient::Librdkafka => "confluent",
            PeerClient::KafkaPython => "kafka-python",
            PeerClient::Java => "java",
        }
    }
}

/// Everything a peer is started with. [`GroupPeerConfig::new`] sets the test defaults (6 s
/// session timeout, 1 s heartbeats, no static membership); the fields can be changed before
/// [`GroupPeer::start_with`].
#[derive(Debug, Clone)]
pub struct GroupPeerConfig {
    /// The client library.
    pub client: PeerClient,
    /// The bootstrap list, `host:port,...`.
    pub bootstrap: String,
    /// The group id.
    pub group: String,
    /// The subscribed topics.
    pub topics: Vec<String>,
    /// The assignor: `range`, `roundrobin`, `cooperative-sticky`, or (kafka-python only)
    /// `sticky`.
    pub strategy: String,
    /// `session.timeout.ms`; `None` keeps the client's default.
    pub session_timeout_ms: Option<u32>,
    /// `heartbeat.interval.ms`; `None` keeps the client's default.
    pub heartbeat_interval_ms: Option<u32>,
    /// `group.instance.id` (KIP-345 static membership), if any.
    pub group_instance_id: Option<String>,
    /// `group.protocol`: `None` (classic) or `Some("consumer")` (KIP-848, librdkafka and the Java client:
    /// `strategy` and the session and heartbeat settings are then not used).
    pub group_protocol: Option<String>,
    /// Whether the peer reports the records it polls (`records` events; the Java peer only).
    pub report_records: bool,
    /// Client-specific settings: librdkafka properties for [`PeerClient::Librdkafka`],
    /// `KafkaConsumer` keyword arguments for [`PeerClient::KafkaPython`].
    pub extra: Map<String, Value>,
}

impl GroupPeerConfig {
    /// A member of `group` subscribed to `topics` with `strategy`, with the test defaults.
    pub fn new(
        client: PeerClient,
        bootstrap: &str,
        group: &str,
        topics: &[&str],
        strategy: &str,
    ) -> GroupPeerConfig {
        GroupPeerConfig {
            client,
            bootstrap: bootstrap.to_owned(),
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            strategy: strategy.to_owned(),
            // The Java peer runs on Apache Kafka, whose joins need no shortened session; the
            // Python peers' brokers (Tansu, the mock) do.
            session_timeout_ms: (client != PeerClient::Java).then_some(6000),
            heartbeat_interval_ms: (client != PeerClient::Java).then_some(1000),
            group_instance_id: None,
            group_protocol: None,
            report_records: false,
            extra: Map::new(),
        }
    }

    /// Keeps the client's own `session.timeout.ms` and `heartbeat.interval.ms`: for Apache
    /// Kafka, whose joins need no shortened session.
    pub fn at_client_defaults(mut self) -> GroupPeerConfig {
        self.session_timeout_ms = None;
        self.heartbeat_interval_ms = None;
        self
    }

    /// Sets what a peer needs to work against librdkafka's mock cluster: for kafka-python,
    /// `api_version=(2, 3)`, without which it can't bootstrap there (see the module doc; even
    /// then it is an unreliable group member on the mock). librdkafka needs nothing.
    pub fn for_mock_cluster(mut self) -> GroupPeerConfig {
        if self.client == PeerClient::KafkaPython {
            self.extra.insert("api_version".to_owned(), json!([2, 3]));
        }
        self
    }

    /// The script's input line.
    fn to_json(&self) -> Value {
        json!({
            "client": self.client.script_name(),
            "bootstrap": self.bootstrap,
            "group": self.group,
            "topics": self.topics,
            "strategy": self.strategy,
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "group_instance_id": self.group_instance_id,
            "group_protocol": self.group_protocol,
            "report_records": self.report_records,
            "extra": self.extra,
        })
    }
}

/// What the reader thread learned from the script's stdout.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<Value>,
    /// The `full` assignment of the latest assignment event.
    assignment: BTreeSet<Tp>,
    /// Set at the end of stdout: the script has exited (or is about to).
    ended: bool,
}

/// State shared with the reader threads.
#[derive(Debug, Default)]
struct Shared {
    seen: Mutex<Seen>,
    changed: Condvar,
    stderr: Mutex<String>,
}

/// A consumer-group member run by another client library in its own process, killed on drop.
///
/// Driving contract: [`start`](GroupPeer::start) returns once the member has subscribed; the
/// member then joins and rebalances on its own. Read its state with
/// [`assignment`](GroupPeer::assignment) and [`events`](GroupPeer::events), or block until a
/// condition holds with [`wait_for`](GroupPeer::wait_for); end it with
/// [`close`](GroupPeer::close) (it leaves the group) or by dropping it (killed: the group only
/// notices at the session timeout). Every method except `events` panics, with the event log
/// and the script's stderr, if the script has died.
#[derive(Debug)]
pub struct GroupPeer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
}

impl GroupPeer {
    /// Starts a member of `group` with the test defaults (see [`GroupPeerConfig::new`]) and, if
    /// `instance_id` is given, that `group.instance.id`. Returns once it has subscribed.
    pub fn start(
        client: PeerClient,
        bootstrap: &str,
        group: &str,
        topics: &[&str],
        strategy: &str,
        instance_id: Option<&str>,
    ) -> GroupPeer {
        let mut config = GroupPeerConfig::new(client, bootstrap, group, topics, strategy);
        config.group_instance_id = instance_id.map(str::to_owned);
        GroupPeer::start_with(&config)
    }

    /// Starts a member configured by `config`. Returns once it has subscribed; panics with the
    /// script's stderr if it fails to.
    pub fn start_with(config: &GroupPeerConfig) -> GroupPeer {
        let label = format!(
            "{:?} peer of group {} ({})",
            config.client, config.group, config.strategy
        );
        let (program, script) = match config.client {
            PeerClient::Java => (
                repo_root().join("scripts/kafka"),
                vec!["java".to_owned(), "GroupMember".to_owned()],
            ),
            _ => (
                installed().python.clone(),
                vec![
                    repo_root()
                        .join("tests/py/group_member.py")
                        .to_string_lossy()
                        .into_owned(),
                ],
            ),
        };
        let mut child = Command::new(&program)
            .args(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {script:?}: {e}", program.display()));
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let readers = vec![
            read_events(stdout, Arc::clone(&shared)),
            drain_stderr(stderr, Arc::clone(&shared)),
        ];
        let mut peer = GroupPeer {
            label,
            child,
            stdin,
            shared,
            readers,
        };
        peer.send(&config.to_json().to_string());
        peer.wait_for_event("ready", READY_TIMEOUT);
        peer
    }

    /// The member's whole assignment as of its latest rebalance callback (empty before the
    /// first).
    pub fn assignment(&self) -> BTreeSet<Tp> {
        let seen = self.seen();
        if seen.ended {
            drop(seen);
            self.fail("the script exited");
        }
        seen.assignment.clone()
    }

    /// Blocks until `pred` holds for the member's assignment, checking after each event; panics
    /// after `timeout` saying it was waiting for `what`, or at once if the script dies.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&BTreeSet<Tp>) -> bool) {
        self.wait_until(what, timeout, |seen| pred(&seen.assignment));
    }

    /// Every event the member printed so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.seen().events.clone()
    }

    /// The last `max` bytes (about) of what the script wrote on stderr so far: the client's
    /// log (kafka-python's at INFO, every join, sync and assignment; more with
    /// `GROUP_MEMBER_DEBUG`).
    pub fn stderr_tail(&self, max: usize) -> String {
        let stderr = lock(&self.shared.stderr);
        let mut from = stderr.len().saturating_sub(max);
        while !stderr.is_char_boundary(from) {
            from += 1;
        }
        stderr[from..].to_owned()
    }

    /// Makes the member close its consumer (leaving the group, after a final `revoked` or
    /// `lost` callback) and waits for the process to exit; panics if it doesn't within 20 s
    /// or exits with a failure.
    pub fn close(self) {
        self.close_with_events();
    }

    /// [`close`](GroupPeer::close), returning every event the member printed, its last
    /// `records` and `closed` included.
    pub fn close_with_events(mut self) -> Vec<Value> {
        self.send("close");
        self.wait_for_event("closed", CLOSE_TIMEOUT);
        // Closing stdin as well: the script exits on either.
        self.stdin = None;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => self.fail("the script did not exit after closing"),
                Err(e) => self.fail(&format!("cannot wait for the script: {e}")),
            }
        };
        if !status.success() {
            self.fail(&format!("the script exited with {status} after closing"));
        }
        self.events()
    }

    /// Sends one line to the script's stdin.
    fn send(&mut self, line: &str) {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = sent {
            self.fail(&format!("cannot send {line:?}: {e}"));
        }
    }

    /// Waits until the member has printed an event named `name`.
    fn wait_for_event(&self, name: &str, timeout: Duration) {
        self.wait_until(&format!("the {name:?} event"), timeout, |seen| {
            seen.events.iter().any(|e| e["event"] == name)
        });
    }

    fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut seen = self.seen();
        loop {
            if done(&seen) {
                return;
            }
            if seen.ended {
                drop(seen);
                self.fail(&format!("the script exited while waiting for {what}"));
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                drop(seen);
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            };
            seen = self
                .shared
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        lock(&self.shared.seen)
    }

    /// Panics with `what`, the event log and the script's stderr.
    fn fail(&self, what: &str) -> ! {
        let mut events = String::new();
        for e in &self.seen().events {
            let _ = writeln!(events, "  {e}");
        }
        let stderr = lock(&self.shared.stderr).clone();
        panic!("{}: {what}\nevents:\n{events}stderr:\n{stderr}", self.label);
    }
}

impl Drop for GroupPeer {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes are closed now, so the readers end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Reads the script's events into `shared` until its stdout ends.
fn read_events(stdout: impl Read + Send + 'static, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // A line that isn't JSON (a stray print from a library) is kept as a string, so
            // that it shows in failure messages.
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            let mut seen = lock(&shared.seen);
            if let Some(full) = event.get("full") {
                seen.assignment = topic_partitions(full);
            }
            seen.events.push(event);
            drop(seen);
            shared.changed.notify_all();
        }
        lock(&shared.seen).ended = true;
        shared.changed.notify_all();
    })
}

/// Keeps everything the script writes on stderr, so that the pipe never fills and failures can
/// show it.
fn drain_stderr(mut stderr: impl Read + Send + 'static, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            lock(&shared.stderr).push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    })
}

/// `[["t", 0], ...]` as a set; panics on anything else (the script writes exactly that).
fn topic_partitions(list: &Value) -> BTreeSet<Tp> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("an assignment that is not a list: {list}"));
    items
        .iter()
        .map(|tp| match (tp[0].as_str(), tp[1].as_i64()) {
            (Some(topic), Some(partition)) => (topic.to_owned(), partition as i32),
            _ => panic!("not a [topic, partition] pair: {tp}"),
        })
        .collect()
}

/// Checks that `assignments` (one per member) split `expected` exactly once: no partition held
/// by two members, none missing, none extra. The error lists the assignments.
pub fn split_exactly_once(
    assignments: &[BTreeSet<Tp>],
    expected: &BTreeSet<Tp>,
) -> Result<(), String> {
    let mut union = BTreeSet::new();
    let mut twice = BTreeSet::new();
    for tp in assignments.iter().flatten() {
        if !union.insert(tp.clone()) {
            twice.insert(tp.clone());
        }
    }
    let missing: Vec<_> = expected.difference(&union).collect();
    let extra: Vec<_> = union.difference(expected).collect();
    if twice.is_empty() && missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "assigned twice: {twice:?}; missing: {missing:?}; not expected: {extra:?}; \
         assignments: {assignments:?}"
    ))
}

/// Waits until `peers` split `expected` exactly once with every peer holding at least one
/// partition (so a member that has not had its first assignment yet, or one still holding a
/// previous generation's whole set, doesn't pass for a finished rebalance). Fits groups with at
/// least as many partitions as members. Panics after `timeout` with every peer's event log.
pub fn wait_for_split(peers: &[&GroupPeer], expected: &BTreeSet<Tp>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let assignments: Vec<_> = peers.iter().map(|p| p.assignment()).collect();
        let split = split_exactly_once(&assignments, expected);
        if split.is_ok() && assignments.iter().all(|a| !a.is_empty()) {
            return;
        }
        if Instant::now() >= deadline {
            let mut logs = String::new();
            for peer in peers {
                let _ = writeln!(logs, "{}:", peer.label);
                for e in peer.events() {
                    let _ = writeln!(logs, "  {e}");
                }
            }
            let why = split
                .err()
                .unwrap_or_else(|| "a member holds nothing".to_owned());
            panic!("no exactly-once split within {timeout:?}: {why}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Locks, ignoring poisoning: a panicking test thread leaves the data consistent (each critical
/// section is a single update), and drop must still work.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
