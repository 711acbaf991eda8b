//! Peer clients (librdkafka through confluent-kafka, kafka-python, the Apache Kafka Java
//! client) driven from tests.
//!
//! Each Python peer is a small script in `tests/py/` that reads one JSON request on stdin and
//! writes one JSON answer on stdout. Byte strings cross as lowercase hex, `null` for null. The
//! Java client's reader is `tests/java/Txn.java`, and the Java client under OpenTelemetry's
//! instrumentation `tests/java/OtelPeer.java`, both run by `scripts/kafka java`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::brokers::{installed, repo_root};

/// Runs `tests/py/<script>` with the brokers' virtualenv Python, feeds it `request` and returns
/// its JSON answer; panics with the script's stderr when it fails.
pub fn run(script: &str, request: &Value) -> Value {
    let path = repo_root().join("tests/py").join(script);
    let mut child = Command::new(&installed().python)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(request.to_string().as_bytes())
        .expect("write the request to the peer");
    let out = child.wait_with_output().expect("wait for the peer");
    assert!(
        out.status.success(),
        "{script} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase or uppercase hex back to bytes; panics on anything else (test input only).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A JSON hex string or `null` as optional bytes.
pub fn opt_bytes(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(unhex)
}

/// The values (UTF-8) librdkafka reads from `topic`'s partition 0 from its start with
/// `isolation` (`read_committed` or `read_uncommitted`): `expect` of them, and nothing more for
/// 1.5 s (`tests/py/txn.py`).
pub fn librdkafka_reads(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    expect: usize,
) -> Vec<String> {
    let answer = run(
        "txn.py",
        &serde_json::json!({"op": "read", "bootstrap": bootstrap, "topic": topic,
                "isolation": isolation, "expect": expect, "quiet_ms": 1500}),
    );
    answer["values"]
        .as_array()
        .unwrap_or_else(|| panic!("txn.py answered {answer}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The Java client's read_committed reader of `topic`-0 (`scripts/kafka java Txn read`): the
/// values it reads (at least `expect`, then nothing more for 2 s) and its position at the
/// end (the last stable offset).
pub fn java_reads_committed(bootstrap: &str, topic: &str, expect: usize) -> (Vec<String>, i64) {
    let request = serde_json::json!({
        "op": "read",
        "bootstrap": bootstrap,
        "topic": topic,
        "partitions": 1,
        "isolation": "read_committed",
        "expect": expect,
        "quiet_ms": 2000,
        "within_ms": 60000,
    });
    let stdout = run_java("Txn", &request);
    let answer: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the Java reader printed no JSON ({e}): {stdout}"));
    let values = answer["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("a UTF-8 value").to_owned())
        .collect();
    let end = answer["end"][0][1].as_i64().expect("the reader's position");
    (values, end)
}

/// A peer's share consumer as a member of a share group (librdkafka's, `tests/py/share.py`, or
/// the Java client's): started, subscribed, and read for what it consumed once it is done.
pub struct SharePeer {
    name: String,
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl SharePeer {
    /// Starts a member of `group` on `topics` that consumes until it has `expect` records and
    /// nothing more comes for 1.5 s (at most `within`), acknowledging each as `ack` says
    /// (`accept`, `release`, `reject`; `None`: implicitly); returns once it has subscribed.
    pub fn start(
        bootstrap: &str,
        group: &str,
        topics: &[&str],
        expect: usize,
        within: std::time::Duration,
        ack: Option<&str>,
    ) -> SharePeer {
        let path = repo_root().join("tests/py/share.py");
        let mut command = Command::new(&installed().python);
        command.arg(&path);
        let request = serde_json::json!({
            "bootstrap": bootstrap, "group": group, "topics": topics, "expect": expect,
            "quiet_ms": 1500, "within_ms": within.as_millis() as u64, "ack": ack,
        });
        SharePeer::spawn(command, "share.py", &request)
    }

    /// The Java client's KafkaShareConsumer (`tests/java/ShareMember.java`, run by
    /// `scripts/kafka java`) as such a member: it consumes until it has `expect` records and
    /// nothing more came for `quiet` after its first (at most `within`), acknowledging as
    /// `ack` says; returns once it has subscribed.
    pub fn start_java(
        bootstrap: &str,
        group: &str,
        topics: &[&str],
        expect: usize,
        quiet: std::time::Duration,
        within: std::time::Duration,
        ack: Option<&str>,
    ) -> SharePeer {
        let mut command = Command::new(repo_root().join("scripts/kafka"));
        command.args(["java", "ShareMember"]);
        let request = serde_json::json!({
            "bootstrap": bootstrap, "group": group, "topics": topics, "expect": expect,
            "quiet_ms": quiet.as_millis() as u64, "within_ms": within.as_millis() as u64,
            "ack": ack,
        });
        SharePeer::spawn(command, "ShareMember", &request)
    }

    fn spawn(mut command: Command, name: &str, request: &Value) -> SharePeer {
        use std::io::BufRead;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{request}").unwrap_or_else(|e| panic!("write the request to {name}: {e}"));
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.contains("ready"), "{name} did not start: {first:?}");
        SharePeer {
            child,
            lines,
            name: name.to_owned(),
        }
    }

    /// Waits for the member to finish; what it consumed: (topic, partition, offset, delivery
    /// count), in the order it got them.
    pub fn records(mut self) -> Vec<(String, i32, i64, i64)> {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        let name = &self.name;
        let status = self.child.wait().expect("wait for the share member");
        assert!(status.success(), "{name} failed ({status}): {line}");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {line}"));
        answer["records"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} answered {answer}"))
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or_default().to_owned(),
                    r[1].as_i64().unwrap_or(-1) as i32,
                    r[2].as_i64().unwrap_or(-1),
                    r[3].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }
}

impl Drop for SharePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the Java client under OpenTelemetry's instrumentation of it (`tests/java/OtelPeer.java`)
/// sent or read, and the spans its SDK recorded.
#[derive(Debug, Deserialize)]
pub struct JavaTraced {
    /// The values sent or read, in order.
    pub values: Vec<String>,
    /// Every span that ended, in the order they ended.
    pub spans: Vec<JavaSpan>,
}

/// A span as the Java SDK recorded it: ids in lowercase hex, attributes as text.
#[derive(Debug, Deserialize)]
pub struct JavaSpan {
    /// Its name (`<topic> publish`, `<topic> process`).
    pub name: String,
    /// `PRODUCER`, `CONSUMER`, ...
    pub kind: String,
    /// Its trace's id.
    pub trace_id: String,
    /// Its own id.
    pub span_id: String,
    /// Its parent's id, none for a root span.
    pub parent_span_id: Option<String>,
    /// The contexts it links to.
    pub links: Vec<JavaLink>,
    /// Its attributes by key, values as text.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A span's link to another span's context.
#[derive(Debug, Deserialize)]
pub struct JavaLink {
    /// The linked span's trace's id.
    pub trace_id: String,
    /// The linked span's id.
    pub span_id: String,
}

/// Runs `tests/java/OtelPeer.java` with `request` (its header says what each op does); panics
/// with the program's stderr when it fails. The answer is stdout's last line: the client may
/// log a warning to stdout before it.
pub fn java_traced(request: &Value) -> JavaTraced {
    let stdout = run_java("OtelPeer", request);
    let answer = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(answer)
        .unwrap_or_else(|e| panic!("OtelPeer printed no answer ({e}): {stdout}"))
}

/// Runs the Java peer `tests/java/<class>.java` with `request` as its one argument
/// (`scripts/kafka java`) to its end; its stdout. Panics with its exit status and stderr when
/// it fails.
fn run_java(class: &str, request: &Value) -> String {
    let out = Command::new(repo_root().join("scripts/kafka"))
        .args(["java", class, &request.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("run scripts/kafka java {class}: {e}"));
    assert!(
        out.status.success(),
        "the Java peer {class} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
