//! Jaeger (v2, built from the Go module proxy by `scripts/brokers install`), a real tracing
//! backend: spans exported to it over OTLP/HTTP are stored in memory and read back through its
//! query API, as an operator's tracing UI reads them. Jaeger v2 is a distribution of the
//! OpenTelemetry Collector, and carries the Collector's Prometheus exporter: metrics exported
//! to it over OTLP/HTTP are served in Prometheus's text format, as a Prometheus server scrapes
//! them ([`Jaeger::scrape`]).
//!
//! One Jaeger per test that asks (it starts in about a second): its own ports, its own
//! configuration under a temporary directory, killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::brokers::{free_port, installed};

/// How long Jaeger may take to answer its query API after it is started.
const START_WITHIN: Duration = Duration::from_secs(30);

/// A running Jaeger with in-memory storage.
pub struct Jaeger {
    child: Child,
    otlp_port: u16,
    query_port: u16,
    prometheus_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Jaeger {
    /// Starts Jaeger on free loopback ports (OTLP over HTTP, its query API) and waits until
    /// the query API answers. Panics with the log's tail when it does not; one more start on
    /// new ports when another process took a port first.
    pub fn start() -> Jaeger {
        match Jaeger::try_start() {
            Ok(jaeger) => jaeger,
            Err(first) if first.contains("address already in use") => {
                Jaeger::try_start().unwrap_or_else(|e| panic!("{e}"))
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn try_start() -> Result<Jaeger, String> {
        let dir = tempfile::tempdir().expect("a temporary directory for Jaeger");
        let (otlp_port, query_port, grpc_port, prometheus_port) =
            (free_port(), free_port(), free_port(), free_port());
        let config = dir.path().join("jaeger.yaml");
        std::fs::write(
            &config,
            configuration(otlp_port, query_port, grpc_port, prometheus_port),
        )
        .expect("write Jaeger's configuration");
        let log = dir.path().join("jaeger.log");
        let out = std::fs::File::create(&log).expect("create Jaeger's log");
        let binary = &installed().jaeger;
        assert!(
            !binary.as_os_str().is_empty(),
            "Jaeger is not built (run `scripts/brokers install`)"
        );
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a second handle on the log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut jaeger = Jaeger {
            child,
            otlp_port,
            query_port,
            prometheus_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok(Some(status)) = jaeger.child.try_wait() {
                return Err(format!(
                    "Jaeger exited ({status}) before answering:\n{}",
                    jaeger.log_tail()
                ));
            }
            if let Ok((200, _)) = get(query_port, "/api/services") {
                return Ok(jaeger);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Jaeger's query API did not answer within {START_WITHIN:?}:\n{}",
                    jaeger.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where OTLP/HTTP trace exports go (`http://127.0.0.1:<port>/v1/traces`).
    pub fn otlp_traces_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.otlp_port)
    }

    /// Where OTLP/HTTP metric exports go (`http://127.0.0.1:<port>/v1/metrics`).
    pub fn otlp_metrics_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.otlp_port)
    }

    /// The metrics received, in Prometheus's text format (the Collector's Prometheus exporter:
    /// names with dots as underscores, a counter's with `_total`, a unit in braces dropped and
    /// one of seconds as `_seconds`), once `until` holds for the text; panics when it does not
    /// within `within`, with the text last scraped.
    pub fn scrape(&self, until: impl Fn(&str) -> bool, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let last = get(self.prometheus_port, "/metrics");
            if let Ok((200, body)) = &last
                && until(body)
            {
                return body.clone();
            }
            assert!(
                Instant::now() < deadline,
                "Jaeger's Prometheus exporter did not serve what was awaited within {within:?}; \
                 it last answered {last:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The trace `trace_id` (lowercase hex) as the query API returns it (`data[0]`, with its
    /// `spans` and `processes`), once it holds at least `spans` spans; panics when it does not
    /// within `within`, with what the API last said.
    pub fn trace(&self, trace_id: &str, spans: usize, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let path = format!("/api/traces/{trace_id}");
        loop {
            let last = get(self.query_port, &path);
            if let Ok((200, body)) = &last {
                let found: Value = serde_json::from_str(body).unwrap_or_else(|e| {
                    panic!("Jaeger answered {path} with no JSON ({e}): {body}")
                });
                let trace = &found["data"][0];
                if trace["spans"].as_array().is_some_and(|s| s.len() >= spans) {
                    return trace.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "Jaeger did not hold {spans} spans of trace {trace_id} within {within:?}; it last \
                 answered {last:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Jaeger's configuration: an OTLP/HTTP receiver, memory storage for the traces, the query
/// API; the metrics received to the Prometheus exporter; its own metrics off (they would take a
/// fixed port).
fn configuration(otlp_port: u16, query_port: u16, grpc_port: u16, prometheus_port: u16) -> String {
    format!(
        r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query_port}
    grpc:
      endpoint: 127.0.0.1:{grpc_port}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000

receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}

processors:
  batch:
    timeout: 100ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
  prometheus:
    endpoint: 127.0.0.1:{prometheus_port}
"#
    )
}

/// An HTTP/1.0 GET on loopback: the status and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}
