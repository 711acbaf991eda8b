//! librdkafka's mock cluster, run by `scripts/mock_cluster.py` and controlled from tests.
//!
//! The mock cluster is a multi-broker, in-memory Kafka-protocol cluster inside librdkafka (from
//! the confluent-kafka wheel that `scripts/brokers install` puts in the project's virtualenv).
//! Its value for kcon's tests is fault injection: brokers going down, slow brokers, errors
//! pushed for chosen APIs, moved leaders and coordinators, lowered API versions, and a log of
//! the requests it received. Each [`MockCluster`] is its own process with its own ports, so
//! tests can run in parallel; dropping it (or the test process dying, which closes the
//! script's stdin) ends that process.
//!
//! Broker ids are `1..=N`. Every control method sends one JSON command line to the script and
//! waits for its answer, panicking with librdkafka's error text when the mock refuses.
//!
//! # Limits of the mock (librdkafka 2.16.0), measured in `tests/mock_harness.rs`
//!
//! - Some advertised versions are misparsed or misanswered (see [`MISHANDLED_VERSIONS`]).
//!   [`MockCluster::start`] does not lower them: every API runs at the versions the mock
//!   advertises, as a user of the mock gets them, and kcon's pool steps a version the broker
//!   refuses down by itself (DESIGN.md, "Versions a broker refuses").
//! - Metadata v9+ (flexible) answers end with one byte after the message: the handler writes
//!   the body's empty tagged-field section and the mock's generic send path writes another.
//!   kcon-codec ignores bytes after a response's end, as the Java client and librdkafka do, so
//!   Metadata is not lowered; `tests/mock_harness.rs` pins the extra byte.
//! - Error answers to FindCoordinator, JoinGroup and SyncGroup carry null in non-nullable
//!   fields at every version: FindCoordinator's `host`, JoinGroup's `leader` and `member_id`
//!   (and its nullable `protocol_name`), SyncGroup's `assignment` (also when a sync fails in
//!   the group, e.g. REBALANCE_IN_PROGRESS). Java's decoders would refuse them; kcon-codec, like
//!   librdkafka, reads exactly these nulls as empty when the answer's error code is non-zero,
//!   so pushed errors for these APIs reach the caller in a typed answer and the connection
//!   stays open. Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListOffsets,
//!   OffsetForLeaderEpoch, Fetch, Produce and ConsumerGroupHeartbeat carry pushed errors in
//!   well-formed answers.
//! - A classic group's sync completes as soon as the leader's SyncGroup has assigned every
//!   member; a follower whose SyncGroup comes after that is refused with INVALID_REQUEST (42)
//!   and must rejoin. Followers have to sync before the leader does (librdkafka's nearly always
//!   do; kafka-python's often don't, see [`crate::group_peers`]).
//! - ConsumerGroupHeartbeat must set both `SubscribedTopicNames` and `SubscribedTopicRegex`
//!   or neither (librdkafka sends an empty regex with the names); otherwise an assertion
//!   aborts the whole mock process, and every later command fails with that in its stderr.
//! - Produce v5 answers lack the v5 log start offset (v3, v4 and v6-v10 are fine).
//! - When any connection to a broker closes, the mock ends every share session on that broker
//!   (every member's, every group's) and releases their records; Apache Kafka ends only the
//!   session of the connection that closed. A client's pool closes its bootstrap connection
//!   once the metadata names the brokers, about when its first share session opens, so a share
//!   test whose acknowledgements must take keeps its sessions on a broker no connection of it
//!   closes while they are open (`tests/share_mock.rs`, kcon-cli's `consume_mock.rs`).
//! - Set `MOCK_CLUSTER_DEBUG=mock,protocol` to have the mock log each request it parses and
//!   why it drops a connection; [`MockCluster::stderr`] returns that log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::{ApiKey, MetadataRequest};
use serde_json::{Value, json};

use crate::blocking::BlockingConnection;
use crate::brokers::{installed, repo_root};

/// How long the script may take to print its bootstraps line. Starting takes well under a
/// second; the margin is for a loaded 2-core machine running many tests at once.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one control command may take. Commands are applied by the mock cluster's own
/// thread and answered at once; a command that takes longer means the script is stuck.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long drop waits for the script to exit after `quit` before killing it.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// librdkafka's `RD_KAFKA_RESP_ERR__TRANSPORT`: pushed as a request error, it makes the mock
/// broker close the connection instead of answering.
pub const TRANSPORT_ERROR: i16 = -195;

/// API versions the mock cluster advertises but cannot serve, with the highest version that
/// works and why: at each of these versions the mock misreads the request and drops the
/// connection, or answers without a field the version requires. Each bug was read in
/// librdkafka's mock request handlers (`rdkafka_mock_handlers.c`) and is confirmed against the
/// running mock by `tests/mock_harness.rs`. librdkafka's own client never sends these versions
/// (it sends JoinGroup v5, SyncGroup v3, LeaveGroup v1), which is why the bugs go unnoticed
/// there.
///
/// The harness used to lower them. It does not any more: a user of the mock meets them, and
/// kcon's pool steps each down by itself (two hang-ups in a row, or one answer that does not
/// decode, try the version below), which the mock tests now exercise at every start.
pub const MISHANDLED_VERSIONS: &[(ApiKey, i16, &str)] = &[
    (
        ApiKey::JoinGroup,
        5,
        "v6 is flexible, but the mock reads the protocols array count as a 4-byte int, \
         rejects the request (`ProtocolCnt ... > max allowed`) and closes the connection",
    ),
    (
        ApiKey::SyncGroup,
        3,
        "v4 is flexible, but the mock reads the assignments array count as a 4-byte int",
    ),
    (
        ApiKey::LeaveGroup,
        2,
        "v3+ carries a members array (batch leave), but the mock reads a single member id \
         string and answers without the members array",
    ),
];

/// Which kind of coordinator [`MockCluster::set_coordinator`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorType {
    /// A consumer group's coordinator (`key` is the group id).
    Group,
    /// A transactional producer's coordinator (`key` is the transactional id).
    Transaction,
}

impl CoordinatorType {
    fn as_str(self) -> &'static str {
        match self {
            CoordinatorType::Group => "group",
            CoordinatorType::Transaction => "transaction",
        }
    }
}

/// One request the mock cluster received while request tracking was on.
///
/// librdkafka 2.16 exports no accessor for a tracked request's API version, so there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedRequest {
    /// The broker that received it.
    pub broker_id: i32,
    /// Its API key.
    pub api_key: i16,
    /// When the mock received it, in microseconds of librdkafka's monotonic clock.
    pub timestamp_us: i64,
}

impl TrackedRequest {
    /// The API key as [`ApiKey`], or `None` for a key kafka-protocol doesn't know.
    pub fn api(&self) -> Option<ApiKey> {
        ApiKey::try_from(self.api_key).ok()
    }
}

/// The script's pipes and process, behind one lock so commands never interleave.
#[derive(Debug)]
struct Control {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines the script printed on stdout, read by a thread so waits can time out.
    lines: Receiver<String>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// A librdkafka mock cluster in its own process, ended on drop.
#[derive(Debug)]
pub struct MockCluster {
    control: Mutex<Control>,
    stderr: Arc<Mutex<String>>,
    bootstrap: String,
    /// Broker id to address, from the cluster's own Metadata answer.
    brokers: BTreeMap<i32, SocketAddr>,
    /// `(min, max)` per API key as the mock advertised it before any change: the versions it
    /// implements, which `set_apiversion` must not exceed.
    implemented: BTreeMap<i16, (i16, i16)>,
}

/// Where a share group starts reading a partition it has not read before (the broker's
/// `share.auto.offset.reset` group setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareOffsetReset {
    /// At the end: only records produced after the group first fetches the partition.
    Latest,
    /// At the log start.
    Earliest,
}

impl MockCluster {
    /// Lowers the versions the mock mishandles ([`MISHANDLED_VERSIONS`]) to the highest that
    /// work. Only for tests that speak the group protocol by hand to look at the mock itself:
    /// their connections send the highest version advertised and never step down. A user of
    /// the mock does not have this, and neither do the tests of kcon's consumers.
    pub fn lower_mishandled_versions(&self) {
        for &(api, max, _why) in MISHANDLED_VERSIONS {
            let (min, _) = self.implemented_versions(api).unwrap_or_else(|| {
                panic!("the mock cluster no longer offers {api:?}; revisit MISHANDLED_VERSIONS")
            });
            self.set_apiversion(api, min, max);
        }
    }

    /// Starts a mock cluster of `brokers` brokers (ids `1..=brokers`), exactly as librdkafka
    /// ships it: advertising the versions it mishandles too (see [`MISHANDLED_VERSIONS`]).
    /// Panics with the reason and the script's stderr if it does not start.
    pub fn start(brokers: usize) -> MockCluster {
        assert!(brokers >= 1, "a mock cluster needs at least one broker");
        let python = &installed().python;
        let script = repo_root().join("scripts/mock_cluster.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(brokers.to_string())
            .arg(&installed().librdkafka)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {} {}: {e}", python.display(), script.display())
            });

        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // stderr is drained continuously, so a chatty librdkafka can never fill the pipe and
        // block the script, and so failures can show what it said.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                lock(&sink).push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stdin = child.stdin.take();

        let mut cluster = MockCluster {
            control: Mutex::new(Control {
                child,
                stdin,
                lines,
                stderr_reader: Some(stderr_reader),
            }),
            stderr,
            bootstrap: String::new(),
            brokers: BTreeMap::new(),
            implemented: BTreeMap::new(),
        };

        let first = cluster.next_line(START_TIMEOUT, "start");
        let ready: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
            cluster.fail(&format!(
                "printed {first:?} instead of its bootstraps ({e})"
            ))
        });
        let Some(bootstrap) = ready["bootstraps"].as_str() else {
            cluster.fail(&format!("printed {first:?}, which has no \"bootstraps\""))
        };
        cluster.bootstrap = bootstrap.to_owned();
        cluster.discover(brokers);
        cluster
    }

    /// Learns the implemented API versions and which address is which broker id from the
    /// cluster itself: the bootstrap list's order is librdkafka's internal list order, not a
    /// documented id order.
    fn discover(&mut self, expected: usize) {
        let first: SocketAddr = self
            .bootstrap
            .split(',')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("bad bootstraps {:?}", self.bootstrap)));
        let mut conn = BlockingConnection::connect(first)
            .unwrap_or_else(|e| self.fail(&format!("cannot connect to {first}: {e}")));
        self.implemented = ApiKey::iter()
            .filter_map(|k| conn.versions().offered(k).map(|r| (k as i16, r)))
            .collect();
        // Metadata v1 (not the negotiated version): the oldest with what's needed, and one
        // the mock parses and answers correctly whatever else is lowered or broken.
        let metadata = conn
            .send_at(&MetadataRequest::default().with_topics(Some(Vec::new())), 1)
            .unwrap_or_else(|e| self.fail(&format!("Metadata from {first} failed: {e}")));
        for broker in &metadata.brokers {
            let addr = format!("{}:{}", broker.host.as_str(), broker.port);
            let addr = addr.parse().unwrap_or_else(|e| {
                self.fail(&format!("Metadata lists broker address {addr:?}: {e}"))
            });
            self.brokers.insert(broker.node_id.0, addr);
        }
        let ids: Vec<i32> = self.brokers.keys().copied().collect();
        let want: Vec<i32> = (1..=expected as i32).collect();
        if ids != want {
            self.fail(&format!(
                "Metadata lists broker ids {ids:?}, expected {want:?}"
            ));
        }
    }

    /// The bootstrap list, `127.0.0.1:p1,127.0.0.1:p2,...`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The brokers' addresses in id order: index 0 is broker 1.
    pub fn broker_addrs(&self) -> Vec<SocketAddr> {
        self.brokers.values().copied().collect()
    }

    /// The address of broker `id`; panics if there is no such broker.
    pub fn broker_addr(&self, id: i32) -> SocketAddr {
        *self
            .brokers
            .get(&id)
            .unwrap_or_else(|| panic!("the mock cluster has no broker {id}"))
    }

    /// A new blocking connection to broker `id`, or the reason it failed.
    pub fn connect(&self, id: i32) -> std::io::Result<BlockingConnection> {
        BlockingConnection::connect(self.broker_addr(id))
    }

    /// The `(min, max)` versions of `api` the mock implements (what it advertised at start,
    /// before any [`set_apiversion`](MockCluster::set_apiversion) or workaround), or `None` if
    /// it does not implement `api`.
    pub fn implemented_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.implemented.get(&(api as i16)).copied()
    }

    /// Makes broker `id` close its connections and refuse new ones (`-1`: all brokers). Leaders
    /// don't move.
    pub fn set_down(&self, id: i32) {
        self.command(json!({"cmd": "broker_set_down", "broker": id}));
    }

    /// Makes broker `id` accept connections again (`-1`: all brokers).
    pub fn set_up(&self, id: i32) {
        self.command(json!({"cmd": "broker_set_up", "broker": id}));
    }

    /// Adds a broker with the new id `id`, listening on a port of its own, and returns its
    /// address; the mock spreads partitions over it.
    pub fn add_broker(&self, id: i32) -> SocketAddr {
        let answer = self.command(json!({"cmd": "broker_add", "broker": id}));
        answer["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("broker_add answered {answer}"))
    }

    /// Removes broker `id` for good: its connections and its listener close, its partitions
    /// move to the other brokers, and Metadata no longer names it.
    pub fn decommission(&self, id: i32) {
        self.command(json!({"cmd": "broker_decommission", "broker": id}));
    }

    /// Delays every answer of broker `id` (`-1`: all brokers) by `rtt`.
    pub fn set_rtt(&self, id: i32, rtt: Duration) {
        self.command(json!({"cmd": "broker_set_rtt", "broker": id, "rtt_ms": millis(rtt)}));
    }

    /// Sets the rack broker `id` (`-1`: all brokers) reports in Metadata.
    pub fn set_rack(&self, id: i32, rack: &str) {
        self.command(json!({"cmd": "broker_set_rack", "broker": id, "rack": rack}));
    }

    /// Makes the next `errors.len()` requests of `api`, to any broker, fail with these error
    /// codes in order (a code of 0 lets that request through;
    /// [`TRANSPORT_ERROR`] closes the connection instead).
    ///
    /// Where the error shows depends on the API's handler: most put it in the response's top
    /// level or every partition; Metadata consumes it without reporting it (use
    /// [`set_topic_error`](MockCluster::set_topic_error) there).
    pub fn push_request_errors(&self, api: ApiKey, errors: &[i16]) {
        self.command(
            json!({"cmd": "push_request_errors", "api_key": api as i16, "errors": errors}),
        );
    }

    /// Like [`push_request_errors`](MockCluster::push_request_errors) for broker `id` only, each
    /// error with a delay before the answer. Broker errors are used before cluster-wide ones.
    pub fn push_request_error_rtts(&self, id: i32, api: ApiKey, errors: &[(i16, Duration)]) {
        let errors: Vec<[i64; 2]> = errors
            .iter()
            .map(|&(code, rtt)| [i64::from(code), millis(rtt)])
            .collect();
        self.command(json!({
            "cmd": "broker_push_request_error_rtts",
            "broker": id,
            "api_key": api as i16,
            "errors": errors,
        }));
    }

    /// How many pushed errors for `api` broker `id` still holds.
    pub fn error_stack_len(&self, id: i32, api: ApiKey) -> usize {
        let answer = self
            .command(json!({"cmd": "broker_error_stack_cnt", "broker": id, "api_key": api as i16}));
        answer["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("broker_error_stack_cnt answered {answer}")) as usize
    }

    /// Drops the cluster-wide errors still pushed for `api`.
    pub fn clear_request_errors(&self, api: ApiKey) {
        self.command(json!({"cmd": "clear_request_errors", "api_key": api as i16}));
    }

    /// Makes broker `id` the leader of `topic`'s `partition` (`-1`: no leader), creating the
    /// topic if needed. The partition's leader epoch goes up.
    pub fn set_leader(&self, topic: &str, partition: i32, id: i32) {
        self.command(json!({
            "cmd": "partition_set_leader", "topic": topic, "partition": partition, "broker": id,
        }));
    }

    /// Makes broker `id` the preferred read replica (KIP-392) of `topic`'s `partition`: the
    /// leader's Fetch answers (v11+) name it and carry no records, and that broker serves
    /// fetches for the partition.
    pub fn set_follower(&self, topic: &str, partition: i32, id: i32) {
        self.command(json!({
            "cmd": "partition_set_follower", "topic": topic, "partition": partition, "broker": id,
        }));
    }

    /// Sets the log start offset (`lo`) and high watermark (`hi`) the follower reports for
    /// `topic`'s `partition`; `-1` reverts to the leader's value.
    pub fn set_follower_watermarks(&self, topic: &str, partition: i32, lo: i64, hi: i64) {
        self.command(json!({
            "cmd": "partition_set_follower_wmarks",
            "topic": topic, "partition": partition, "lo": lo, "hi": hi,
        }));
    }

    /// Gives `topic`'s `partition` its own errors for `api`: each later request of `api` that
    /// names the partition takes the next code, in order, as that partition's error code in
    /// the answer; the request's other partitions and its top-level error are untouched (a code
    /// of 0 lets that request's partition through).
    ///
    /// What the mock (librdkafka 2.16, `rd_kafka_mock_partition_push_request_errors`) does with
    /// them:
    /// - Only the Produce, Fetch and ShareFetch handlers use them; for other APIs they are
    ///   never consumed.
    /// - One error is used per request naming the partition, and only when the request gets as
    ///   far as the partition: to its leader (for Fetch also to its `set_follower` replica),
    ///   with an acceptable leader epoch, and with no cluster-wide or broker error pushed for
    ///   the request ([`push_request_errors`](MockCluster::push_request_errors) and
    ///   [`push_request_error_rtts`](MockCluster::push_request_error_rtts) take precedence
    ///   and leave these in place). A Fetch that doesn't name the partition (a fetch session
    ///   leaving it out) uses none.
    /// - A Fetch answer's erroring partition has no records but real watermarks; with
    ///   NOT_LEADER_OR_FOLLOWER at v12+ it also carries the current leader (KIP-951), which has
    ///   not changed. A Produce to it appends nothing.
    /// - Codes are written as they are: [`TRANSPORT_ERROR`] closes nothing here.
    /// - The topic is created if it doesn't exist; a partition past its end is refused. There
    ///   is no way to see how many are left, and
    ///   [`clear_request_errors`](MockCluster::clear_request_errors) does not clear them.
    pub fn push_partition_request_errors(
        &self,
        topic: &str,
        partition: i32,
        api: ApiKey,
        errors: &[i16],
    ) {
        self.command(json!({
            "cmd": "partition_push_request_errors", "topic": topic, "partition": partition,
            "api_key": api as i16, "errors": errors,
        }));
    }

    /// Makes broker `id` the coordinator for `key` (a group id or transactional id).
    pub fn set_coordinator(&self, kind: CoordinatorType, key: &str, id: i32) {
        self.command(json!({
            "cmd": "coordinator_set", "key_type": kind.as_str(), "key": key, "broker": id,
        }));
    }

    /// Creates `topic` (the mock has no CreateTopics API). Panics if it exists.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication_factor: i32) {
        self.command(json!({
            "cmd": "topic_create", "topic": topic,
            "partitions": partitions, "replication_factor": replication_factor,
        }));
    }

    /// Makes Metadata (and AddPartitionsToTxn) report `error` for `topic`; 0 clears it.
    pub fn set_topic_error(&self, topic: &str, error: i16) {
        self.command(json!({"cmd": "topic_set_error", "topic": topic, "error": error}));
    }

    /// Changes the versions of `api` the mock accepts and advertises in ApiVersions. `(-1,
    /// -1)` removes the API. Panics when asked for more than the mock implements: it would
    /// advertise versions it cannot parse.
    pub fn set_apiversion(&self, api: ApiKey, min: i16, max: i16) {
        if (min, max) != (-1, -1) {
            let (lo, hi) = self.implemented_versions(api).unwrap_or_else(|| {
                panic!("the mock does not implement {api:?}, so it can't be offered")
            });
            assert!(
                lo <= min && min <= max && max <= hi,
                "set_apiversion({api:?}, {min}, {max}): the mock implements v{lo}-v{hi}"
            );
        }
        self.command(
            json!({"cmd": "set_apiversion", "api_key": api as i16, "min": min, "max": max}),
        );
    }

    /// Stops offering `api` at all.
    pub fn remove_api(&self, api: ApiKey) {
        self.set_apiversion(api, -1, -1);
    }

    /// Starts recording the requests every broker receives.
    pub fn start_request_tracking(&self) {
        self.command(json!({"cmd": "start_request_tracking"}));
    }

    /// Stops recording requests; what was recorded stays.
    pub fn stop_request_tracking(&self) {
        self.command(json!({"cmd": "stop_request_tracking"}));
    }

    /// The requests recorded so far, oldest first.
    pub fn requests(&self) -> Vec<TrackedRequest> {
        let answer = self.command(json!({"cmd": "get_requests"}));
        let list = answer["requests"]
            .as_array()
            .unwrap_or_else(|| panic!("get_requests answered {answer}"));
        list.iter()
            .map(|r| {
                let field = |name: &str| {
                    r[name]
                        .as_i64()
                        .unwrap_or_else(|| panic!("tracked request without {name}: {r}"))
                };
                TrackedRequest {
                    broker_id: field("broker_id") as i32,
                    api_key: field("api_key") as i16,
                    timestamp_us: field("timestamp_us"),
                }
            })
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.command(json!({"cmd": "clear_requests"}));
    }

    /// How long a classic group's first rebalance waits for more members (the broker's
    /// `group.initial.rebalance.delay.ms`; the mock's default is 3 s).
    pub fn set_group_initial_rebalance_delay(&self, delay: Duration) {
        self.command(json!({"cmd": "group_initial_rebalance_delay_ms", "ms": millis(delay)}));
    }

    /// The session timeout of KIP-848 (ConsumerGroupHeartbeat) groups created after this call
    /// (the broker's `group.consumer.session.timeout.ms`; the mock's default is 30 s).
    pub fn set_group_consumer_session_timeout(&self, timeout: Duration) {
        self.command(
            json!({"cmd": "set_group_consumer_session_timeout_ms", "ms": millis(timeout)}),
        );
    }

    /// The heartbeat interval KIP-848 groups created after this call tell their members (the
    /// broker's `group.consumer.heartbeat.interval.ms`; the mock's default is 3 s).
    pub fn set_group_consumer_heartbeat_interval(&self, interval: Duration) {
        self.command(
            json!({"cmd": "set_group_consumer_heartbeat_interval_ms", "ms": millis(interval)}),
        );
    }

    /// Sets one of the share groups' settings (KIP-932) for every share group: `setting` is
    /// `session_timeout`, `heartbeat_interval`, `max_delivery_attempts` (default 5),
    /// `record_lock_duration` (ms; 0 means the session timeout), `isolation_level` (0
    /// read_uncommitted, 1 read_committed), `max_size`, `max_fetch_sessions`,
    /// `max_record_locks` or `auto_offset_reset` (0 latest, the default; 1 earliest).
    pub fn set_sharegroup(&self, setting: &str, value: i32) {
        self.command(json!({"cmd": "sharegroup_set", "setting": setting, "value": value}));
    }

    /// Share groups' heartbeat interval and session timeout, and their record locks' duration.
    pub fn set_sharegroup_timing(&self, heartbeat: Duration, session: Duration, lock: Duration) {
        self.set_sharegroup("heartbeat_interval", millis(heartbeat) as i32);
        self.set_sharegroup("session_timeout", millis(session) as i32);
        self.set_sharegroup("record_lock_duration", millis(lock) as i32);
    }

    /// Replaces the mock's assignment of share group `group` (which gives each partition to one
    /// member) with `assignment`: each member id with its (topic, partition)s; a partition may
    /// go to several members. The group stays manual afterwards: a member joining later gets
    /// nothing until the next call. Every member's epoch is bumped (each to its own new value),
    /// so a member that has not heartbeated since the last bump (e.g. since another member
    /// joined) is fenced and must rejoin. Panics if the group or a member id is unknown to the
    /// mock; topics and partitions are not checked.
    pub fn set_sharegroup_target_assignment(
        &self,
        group: &str,
        assignment: &[(&str, &[(&str, i32)])],
    ) {
        let members: serde_json::Map<String, Value> = assignment
            .iter()
            .map(|(member, partitions)| {
                let list: Vec<Value> = partitions.iter().map(|(t, p)| json!([t, p])).collect();
                ((*member).to_owned(), Value::Array(list))
            })
            .collect();
        self.command(json!({
            "cmd": "sharegroup_target_assignment",
            "group": group,
            "assignment": members,
        }));
    }

    /// The member ids of share group `group`, as the mock has them.
    pub fn sharegroup_member_ids(&self, group: &str) -> Vec<String> {
        let answer = self.command(json!({"cmd": "sharegroup_member_ids", "group": group}));
        answer["member_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The session timeout of share groups (KIP-932) created after this call (the broker's
    /// `group.share.session.timeout.ms`; the mock's default is 45 s, and it looks for expired
    /// members once a second). Whole milliseconds, 1 ms to 2147.483 s.
    pub fn set_sharegroup_session_timeout(&self, timeout: Duration) {
        self.command(json!({"cmd": "sharegroup_set_session_timeout", "ms": millis(timeout)}));
    }

    /// The heartbeat interval share groups created after this call tell their members (the
    /// broker's `group.share.heartbeat.interval.ms`; the mock's default is 5 s). Whole
    /// milliseconds, 1 ms to 2147.483 s.
    pub fn set_sharegroup_heartbeat_interval(&self, interval: Duration) {
        self.command(json!({"cmd": "sharegroup_set_heartbeat_interval", "ms": millis(interval)}));
    }

    /// How many times a record may be acquired before it is archived instead of handed out
    /// again (the broker's `group.share.delivery.count.limit`; the mock's default is 5, 0 means
    /// no limit), for every share group.
    pub fn set_sharegroup_max_delivery_attempts(&self, attempts: u32) {
        self.command(json!({"cmd": "sharegroup_set_max_delivery_attempts", "value": attempts}));
    }

    /// How long an acquired record stays locked to its member before it is available again
    /// (the broker's `group.share.record.lock.duration.ms`; the mock's default is 30 s;
    /// [`Duration::ZERO`] means the group's session timeout), for every share group. Whole
    /// milliseconds, at most 2147.483 s.
    pub fn set_sharegroup_record_lock_duration(&self, lock: Duration) {
        self.command(json!({"cmd": "sharegroup_set_record_lock_duration", "ms": millis(lock)}));
    }

    /// Which records share groups hand out: up to the high watermark (`ReadUncommitted`, the
    /// mock's default) or up to the last stable offset without aborted transactions'
    /// records (`ReadCommitted`), for every share group.
    pub fn set_sharegroup_isolation_level(&self, level: kcon_core::IsolationLevel) {
        let value = match level {
            kcon_core::IsolationLevel::ReadUncommitted => "read_uncommitted",
            kcon_core::IsolationLevel::ReadCommitted => "read_committed",
        };
        self.command(json!({"cmd": "sharegroup_set_isolation_level", "value": value}));
    }

    /// How many members a share group takes; a member joining a full group is refused with
    /// GROUP_MAX_SIZE_REACHED (the mock's default is 200; 0 means no limit).
    pub fn set_sharegroup_max_size(&self, members: u32) {
        self.command(json!({"cmd": "sharegroup_set_max_size", "value": members}));
    }

    /// How many share sessions of one share group each broker keeps; a new session (ShareFetch
    /// at epoch 0) beyond that is refused with SHARE_SESSION_LIMIT_REACHED (the mock's default
    /// is 2000; 0 means no limit).
    pub fn set_sharegroup_max_fetch_sessions(&self, sessions: u32) {
        self.command(json!({"cmd": "sharegroup_set_max_fetch_sessions", "value": sessions}));
    }

    /// How many records of one partition a share group has acquired at a time; no more are
    /// handed out until some are acknowledged or their locks expire (the mock's default is
    /// 2000; 0 means no limit).
    pub fn set_sharegroup_max_record_locks(&self, locks: u32) {
        self.command(json!({"cmd": "sharegroup_set_max_record_locks", "value": locks}));
    }

    /// Where a share group starts reading a partition it fetches for the first time (the
    /// group's `share.auto.offset.reset`): [`ShareOffsetReset::Latest`], the mock's default,
    /// skips every record produced before that; [`ShareOffsetReset::Earliest`] starts at the
    /// log start. For every share group, and the ones created later.
    pub fn set_sharegroup_auto_offset_reset(&self, reset: ShareOffsetReset) {
        let value = match reset {
            ShareOffsetReset::Latest => "latest",
            ShareOffsetReset::Earliest => "earliest",
        };
        self.command(json!({"cmd": "sharegroup_set_auto_offset_reset", "value": value}));
    }

    /// What the script and librdkafka wrote on stderr so far (with `MOCK_CLUSTER_DEBUG` set,
    /// the mock's own log of what it parsed and why it closed connections).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Sends one raw command (`{"cmd": ..., ...}`) and returns the answer, or the error text
    /// when the script answers `"ok": false`. For commands the typed methods don't cover and
    /// for tests of refusals.
    pub fn try_command(&self, command: &Value) -> Result<Value, String> {
        let mut control = lock(&self.control);
        let name = command["cmd"].as_str().unwrap_or("?").to_owned();
        let sent = match control.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{command}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = sent {
            drop(control);
            self.fail(&format!("cannot send {name}: {e}"));
        }
        let line = recv(&control.lines, COMMAND_TIMEOUT);
        drop(control);
        let line = line.unwrap_or_else(|why| self.fail(&format!("{why} while answering {name}")));
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| self.fail(&format!("answered {name} with {line:?} ({e})")));
        if answer["ok"] == json!(true) {
            Ok(answer)
        } else {
            Err(answer["error"].as_str().unwrap_or(&line).to_owned())
        }
    }

    /// Sends one command and returns the answer; panics with the error if the mock refused.
    fn command(&self, command: Value) -> Value {
        self.try_command(&command)
            .unwrap_or_else(|e| panic!("mock cluster refused {command}: {e}"))
    }

    /// The next stdout line, or a panic with the reason and the script's stderr.
    fn next_line(&self, timeout: Duration, during: &str) -> String {
        let line = recv(&lock(&self.control).lines, timeout);
        line.unwrap_or_else(|why| self.fail(&format!("{why} during {during}")))
    }

    /// Ends the script (it is of no use after a protocol failure) and panics with `what` and
    /// everything it wrote on stderr.
    fn fail(&self, what: &str) -> ! {
        let mut control = lock(&self.control);
        control.stdin = None;
        let _ = control.child.kill();
        let status = control.child.wait();
        // The reader ends at EOF, which the kill guarantees: after the join the text is whole.
        if let Some(reader) = control.stderr_reader.take() {
            let _ = reader.join();
        }
        drop(control);
        let stderr = lock(&self.stderr).clone();
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        panic!("mock cluster script: {what} (process {status}); its stderr:\n{stderr}");
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        let control = self.control.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut stdin) = control.stdin.take() {
            // Closing stdin right after `quit` would do too; `quit` says what we mean.
            let _ = writeln!(stdin, "{}", json!({"cmd": "quit"}));
        }
        let deadline = Instant::now() + QUIT_TIMEOUT;
        while Instant::now() < deadline {
            match control.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let _ = control.child.kill();
        let _ = control.child.wait();
    }
}

/// Waits for the next line, saying why there is none.
fn recv(lines: &Receiver<String>, timeout: Duration) -> Result<String, String> {
    lines.recv_timeout(timeout).map_err(|e| match e {
        RecvTimeoutError::Timeout => format!("no answer within {timeout:?}"),
        RecvTimeoutError::Disconnected => "the process exited".to_owned(),
    })
}

/// Locks, ignoring poisoning: a test that panicked while holding the lock left the data
/// consistent (every critical section is a single send or read), and drop must still work.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whole milliseconds, as the mock's C API takes them.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).expect("a duration of a sane length")
}
