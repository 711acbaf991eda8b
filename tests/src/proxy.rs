//! A recording proxy between a client and a broker: `scripts/record_proxy.py` run standalone
//! with the brokers' virtualenv Python, and the Kafka frames it saw read back.
//!
//! The proxy writes its JSON-lines file when it gets SIGTERM, so [`RecordingProxy::finish`]
//! stops it that way and then reads the file. For the proxy to see all of a client's traffic
//! the broker must advertise the proxy's address ([`Tansu::start_advertising`]); see
//! [`tansu_behind_proxy`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::RequestHeader;
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_codec::message::{decode_request, decode_request_header, decode_response};
use serde_json::Value;

use crate::brokers::{Tansu, installed, repo_root};

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to broker.
    Request,
    /// Broker to client.
    Response,
}

/// One Kafka frame as the proxy saw it (without its 4-byte size prefix), with the labels the
/// proxy gave it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Arrival order over all connections.
    pub seq: u64,
    /// The connection, numbered in accept order.
    pub conn: u64,
    /// Which way it went.
    pub direction: Direction,
    /// The frame's bytes.
    pub data: Bytes,
    /// The request's api key (a response is labelled with its request's).
    pub api_key: Option<i16>,
    /// The request's api version (likewise).
    pub api_version: Option<i16>,
    /// For a request: the `seq` of its response, if one came.
    pub answered_by: Option<u64>,
    /// For a response: the `seq` of its request.
    pub answers: Option<u64>,
}

impl Frame {
    /// Decodes a request frame: its header and body as `R`; panics if it is not one.
    pub fn request<R: Request>(&self) -> (RequestHeader, R) {
        assert_eq!(self.direction, Direction::Request, "frame {}", self.seq);
        let (header, body) = decode_request_header(self.data.clone())
            .unwrap_or_else(|e| panic!("frame {}: request header: {e}", self.seq));
        let request = decode_request::<R>(body, header.request_api_version)
            .unwrap_or_else(|e| panic!("frame {}: request body: {e}", self.seq));
        (header, request)
    }

    /// Decodes a response frame to `R`'s response, at the version of the request it answers;
    /// panics if it is not one.
    pub fn response<R: Request>(&self) -> R::Response {
        assert_eq!(self.direction, Direction::Response, "frame {}", self.seq);
        let version = self
            .api_version
            .unwrap_or_else(|| panic!("frame {}: a response to no known request", self.seq));
        decode_response::<R>(self.data.clone(), version)
            .unwrap_or_else(|e| panic!("frame {}: response: {e}", self.seq))
            .1
    }
}

/// `scripts/record_proxy.py` listening on a loopback port, forwarding to one broker; killed on
/// drop if [`finish`](RecordingProxy::finish) was not called.
#[derive(Debug)]
pub struct RecordingProxy {
    child: Option<Child>,
    port: u16,
    out: PathBuf,
    /// Holds the frames file.
    _dir: tempfile::TempDir,
}

impl RecordingProxy {
    /// Starts the proxy on a free loopback port with no broker yet, and waits until it listens;
    /// clients that connect are held until [`forward_to`](RecordingProxy::forward_to) names the
    /// broker. For a broker that must be told the proxy's address before it starts: the proxy
    /// keeps its port meanwhile, so no other process can take it.
    pub fn listen() -> RecordingProxy {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = dir.path().join("frames.jsonl");
        let script = repo_root().join("scripts/record_proxy.py");
        let mut child = Command::new(&installed().python)
            .arg(&script)
            .args(["--upstream", "-", "--listen", "127.0.0.1:0"])
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        // It prints `port=N` once it listens, and nothing else on stdout.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(port) = line
            .trim()
            .strip_prefix("port=")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "record_proxy.py did not start (printed {line:?}): {}",
                stderr_of(&mut child)
            );
        };
        RecordingProxy {
            child: Some(child),
            port,
            out,
            _dir: dir,
        }
    }

    /// Names the broker the proxy forwards to (once, after [`listen`](RecordingProxy::listen)).
    pub fn forward_to(&mut self, upstream: SocketAddr) {
        let child = self.child.as_mut().expect("the proxy runs");
        let mut stdin = child.stdin.take().expect("forward_to is called once");
        if let Err(e) = writeln!(stdin, "{upstream}") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "record_proxy.py did not take its upstream ({e}): {}",
                stderr_of(child)
            );
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops the proxy (SIGTERM: it then writes what it recorded) and returns every frame, in
    /// arrival order.
    pub fn finish(mut self) -> Vec<Frame> {
        let mut child = self.child.take().expect("finish is called once");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            match child.try_wait().expect("wait for the proxy") {
                Some(s) => break s,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("record_proxy.py did not stop on SIGTERM");
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert!(
            exit.success(),
            "record_proxy.py ended with {exit}: {}",
            stderr_of(&mut child)
        );
        let text = std::fs::read_to_string(&self.out)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.out.display()));
        text.lines().map(parse_frame).collect()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Tansu broker and a recording proxy in front of it, the broker advertising the proxy's
/// address: a client bootstrapping at [`RecordingProxy::addr`] sends everything through it.
///
/// The proxy listens before Tansu starts (Tansu must be told its port) and is told Tansu's
/// address once Tansu listens.
pub fn tansu_behind_proxy() -> (Tansu, RecordingProxy) {
    let mut proxy = RecordingProxy::listen();
    let tansu = Tansu::start_advertising(proxy.addr().port());
    proxy.forward_to(tansu.addr());
    (tansu, proxy)
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    err
}

/// One line of the proxy's JSON-lines file (`Frame.to_json` in the script).
fn parse_frame(line: &str) -> Frame {
    let v: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("a frame line ({e}): {line}"));
    let int = |k: &str| v[k].as_i64();
    let direction = match v["direction"].as_str() {
        Some("request") => Direction::Request,
        Some("response") => Direction::Response,
        other => panic!("a frame of direction {other:?}"),
    };
    let data = v["data"].as_str().expect("a frame has data");
    Frame {
        seq: int("seq").expect("a frame has a seq") as u64,
        conn: int("conn").expect("a frame has a conn") as u64,
        direction,
        data: Bytes::from(unbase64(data)),
        api_key: int("api_key").map(|k| k as i16),
        api_version: int("api_version").map(|k| k as i16),
        answered_by: int("answered_by").map(|s| s as u64),
        answers: int("answers").map(|s| s as u64),
    }
}

/// Standard base64 (with padding) to bytes; panics on anything else (test input only).
fn unbase64(s: &str) -> Vec<u8> {
    let sextet = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data.iter().fold(0u32, |acc, &c| (acc << 6) | sextet(c)) << (6 * (4 - data.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unbase64;

    #[test]
    fn base64_decodes() {
        assert_eq!(unbase64(""), b"");
        assert_eq!(unbase64("Zg=="), b"f");
        assert_eq!(unbase64("Zm8="), b"fo");
        assert_eq!(unbase64("Zm9v"), b"foo");
        assert_eq!(unbase64("Zm9vYmFy"), b"foobar");
        assert_eq!(unbase64("AP8="), [0u8, 255]);
    }
}
