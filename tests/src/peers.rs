//! Peer clients (librdkafka through confluent-kafka, kafka-python) driven from tests.
//!
//! Each peer is a small Python script in `tests/py/` that reads one JSON request on stdin and
//! writes one JSON answer on stdout. Byte strings cross as lowercase hex, `null` for null.

use std::io::Write;
use std::process::{Command, Stdio};

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
