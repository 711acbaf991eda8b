//! What the tests of the `kcon` binary share: running it with a time limit, Apache Kafka 4.4
//! (`Kafka::single()`, shared by every test of a run) with a pool to set topics up, and records
//! produced with a known shape.

#![allow(dead_code, unreachable_pub)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kcon_codec::records::{NewRecord, RecordBatchBuilder};
use kcon_pool::Pool;
use kcon_tests::kafka::Kafka;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// The longest any one `kcon` run may take in a test.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a finished run left.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code (panics if a signal ended the process).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("kcon was killed by a signal: {self:?}"))
    }

    /// Asserts exit code 0 and returns self.
    pub fn ok(self) -> Run {
        assert_eq!(self.code(), 0, "kcon failed: {self:?}");
        self
    }

    /// Every stdout line, parsed as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }

    /// The stderr lines that are JSON objects (rebalance events), parsed.
    pub fn json_events(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }
}

/// The `kcon` command with `args`.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kcon"));
    c.args(args)
        .env_remove("KCON_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs `kcon args`, with `stdin` as its input, to its end (at most [`RUN_LIMIT`]).
pub async fn kcon_with_input(args: &[&str], stdin: &[u8]) -> Run {
    let mut c = command(args);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().expect("run kcon");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = tokio::spawn(async move {
        // The command may stop reading early (and fail); that is its business.
        let _ = input.write_all(&data).await;
    });
    let run = finish(child, args).await;
    writer.await.expect("the stdin writer");
    run
}

/// Runs `kcon args` with no input, to its end (at most [`RUN_LIMIT`]).
pub async fn kcon(args: &[&str]) -> Run {
    let child = command(args).spawn().expect("run kcon");
    finish(child, args).await
}

/// `kcon group reset-offsets -b BOOTSTRAP GROUP --topic TOPIC <to...> --execute`, which must
/// succeed: how the tests commit a group's offsets from outside it.
pub async fn reset_offsets(bootstrap: &str, group: &str, topic: &str, to: &[&str]) -> Run {
    let mut args = vec![
        "group",
        "reset-offsets",
        "-b",
        bootstrap,
        group,
        "--topic",
        topic,
    ];
    args.extend_from_slice(to);
    args.push("--execute");
    kcon(&args).await.ok()
}

/// Waits for `child` to end, at most [`RUN_LIMIT`].
pub async fn finish(child: Child, args: &[&str]) -> Run {
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kcon {args:?} did not end within {RUN_LIMIT:?}"))
        .expect("wait for kcon");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `kcon` process left running: its stdout and stderr read line by line.
pub struct Running {
    pub child: Child,
    /// `None` once closed.
    pub stdout: Option<tokio::io::Lines<BufReader<ChildStdout>>>,
    pub stderr: tokio::io::Lines<BufReader<ChildStderr>>,
}

impl Running {
    /// Starts `kcon args`.
    pub fn start(args: &[&str]) -> Running {
        Running::start_with_env(args, &[])
    }

    /// Starts `kcon args` with environment variables `env` set (`KCON_LOG`, ...).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut c = command(args);
        c.envs(env.iter().copied());
        let mut child = c.spawn().expect("run kcon");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        Running {
            child,
            stdout: Some(stdout),
            stderr,
        }
    }

    /// Closes the read end of the process's stdout.
    pub fn close_stdout(&mut self) {
        self.stdout = None;
    }

    /// The next `n` stdout lines, within `within`.
    pub async fn stdout_lines(&mut self, n: usize, within: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let stdout = self.stdout.as_mut().expect("stdout is open");
        let read = async {
            while lines.len() < n {
                match stdout.next_line().await.expect("read stdout") {
                    Some(l) => lines.push(l),
                    None => break,
                }
            }
        };
        tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("{n} stdout lines did not come within {within:?}"));
        assert_eq!(lines.len(), n, "stdout ended early: {lines:?}");
        lines
    }

    /// Reads stderr until a line contains `needle`; returns the lines read.
    pub async fn stderr_until(&mut self, needle: &str, within: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        let read = async {
            loop {
                match self.stderr.next_line().await.expect("read stderr") {
                    Some(l) => {
                        let found = l.contains(needle);
                        lines.push(l);
                        if found {
                            return true;
                        }
                    }
                    None => return false,
                }
            }
        };
        let found = tokio::time::timeout(within, read)
            .await
            .unwrap_or_else(|_| panic!("no stderr line with {needle:?} within {within:?}"));
        assert!(found, "stderr ended without {needle:?}: {lines:?}");
        lines
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT (what Ctrl-C sends).
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("a running child has a pid");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Waits for the exit, at most `within`; returns the status and the rest of stdout and
    /// stderr.
    pub async fn wait(mut self, within: Duration) -> (ExitStatus, Vec<String>, Vec<String>) {
        let rest = async {
            let mut out = Vec::new();
            if let Some(stdout) = self.stdout.as_mut() {
                while let Some(l) = stdout.next_line().await.expect("read stdout") {
                    out.push(l);
                }
            }
            let mut err = Vec::new();
            while let Some(l) = self.stderr.next_line().await.expect("read stderr") {
                err.push(l);
            }
            let status = self.child.wait().await.expect("wait for kcon");
            (status, out, err)
        };
        tokio::time::timeout(within, rest)
            .await
            .unwrap_or_else(|_| panic!("kcon did not exit within {within:?}"))
    }
}

/// Apache Kafka 4.4's one-node cluster (`Kafka::single()`, shared by every test of the run:
/// topics and groups get unique names) and a pool connected to it.
pub struct Broker {
    pub kafka: &'static Kafka,
    pub pool: Pool,
}

impl Broker {
    /// The shared node, started by the first test that asks (one that cannot start fails the
    /// test with the reason).
    pub fn single() -> Broker {
        let kafka = Kafka::single();
        let pool = Pool::new(kcon_tests::pool::config(kafka.bootstrap())).expect("a pool");
        Broker { kafka, pool }
    }

    /// `host:port`.
    pub fn bootstrap(&self) -> String {
        self.kafka.bootstrap().to_owned()
    }

    /// Creates `topic` with `partitions` partitions and waits until each has a leader that
    /// takes records.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        kcon_tests::kafka::create_topics(&self.pool, &[(topic, partitions)]).await;
    }

    /// Produces one batch of `records` to `topic`-`partition`; returns its base offset.
    pub async fn produce_batch(&self, topic: &str, partition: i32, records: &[TestRecord]) -> i64 {
        let mut b = RecordBatchBuilder::new(0);
        for r in records {
            let headers: Vec<(&[u8], Option<&[u8]>)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .collect();
            b.push(NewRecord {
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &headers,
                ..NewRecord::default()
            });
        }
        let batch = b.build().expect("a batch");
        kcon_tests::offsets::produce_batch(&self.pool, topic, partition, batch).await
    }

    /// Produces `n` records `value-0..` (null keys) to each of `topic`'s partitions `0..partitions`,
    /// in one batch per partition.
    pub async fn fill(&self, topic: &str, partitions: i32, n: usize) {
        for p in 0..partitions {
            kcon_tests::offsets::produce(&self.pool, topic, p, n, kcon_tests::offsets::now_ms())
                .await;
        }
    }
}

/// A record to produce in a test.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A described group's partitions: `(topic, partition) -> (current_offset, log_end_offset,
/// lag)`.
pub type Described =
    std::collections::BTreeMap<(String, i64), (Option<i64>, Option<i64>, Option<i64>)>;

/// The partitions of a `group describe --format json` answer, as
/// `(topic, partition) -> (current_offset, log_end_offset, lag)`.
pub fn described_partitions(describe: &Value) -> Described {
    describe["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                (
                    p["topic"].as_str().expect("topic").to_owned(),
                    p["partition"].as_i64().expect("partition"),
                ),
                (
                    p["current_offset"].as_i64(),
                    p["log_end_offset"].as_i64(),
                    p["lag"].as_i64(),
                ),
            )
        })
        .collect()
}

/// The records of a JSON output, by (partition, offset).
pub fn by_position(lines: &[Value]) -> std::collections::BTreeMap<(i64, i64), Value> {
    let mut out = std::collections::BTreeMap::new();
    for l in lines {
        let key = (
            l["partition"].as_i64().unwrap(),
            l["offset"].as_i64().unwrap(),
        );
        assert!(out.insert(key, l.clone()).is_none(), "{key:?} twice");
    }
    out
}
