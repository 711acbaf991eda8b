//! `kcon exporter` on Apache Kafka 4.4 (`Kafka::single()`) and a real Prometheus (Debian's,
//! installed by `scripts/brokers install`): Prometheus scrapes the exporter every second, an
//! alert on lag in seconds fires for a group left behind and resolves once it catches up, the
//! lag-seconds series it stored matches the true age of the oldest unconsumed record; and the
//! exporter outlives the broker going away and coming back (a proxy in front of the shared
//! node, stopped and started again on its port), counting the failed measurements meanwhile.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Broker, Running, reset_offsets};
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_tests::brokers::{free_port, unique_name};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::produce::AnswerDropper;
use kcon_tests::tls::prometheus_binary;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// How old the records are when produced: the alert's threshold sits halfway.
const AGE_MS: i64 = 120_000;
const THRESHOLD_S: i64 = 60;

/// A GET over HTTP/1.1, returning the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of the head")?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    // Prometheus may answer chunked; its JSON has no CRLF inside, so the chunk sizes are the
    // lines that parse as hex between CRLFs.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n")
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, chunk)| chunk)
            .collect()
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts `kcon exporter` on a free port and returns it with its address (from its stderr).
async fn exporter(bootstrap: &str, group: &str, interval: &str) -> (Running, SocketAddr) {
    let pattern = format!("^{}$", regex_escape(group));
    let mut running = Running::start(&[
        "exporter",
        "-b",
        bootstrap,
        "--group",
        &pattern,
        "--listen",
        "127.0.0.1:0",
        "--interval",
        interval,
    ]);
    let lines = running
        .stderr_until("serving /metrics on http://", Duration::from_secs(20))
        .await;
    let addr = lines
        .iter()
        .find_map(|l| l.split("http://").nth(1))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {lines:?}"));
    (running, addr)
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// The value of the sample `name{labels}` (labels as written, in the exporter's order) in
/// a scrape of `addr`.
async fn sample(addr: SocketAddr, name_and_labels: String) -> Option<f64> {
    let (code, body) = get(addr, "/metrics").await.ok()?;
    assert_eq!(code, 200, "{body}");
    body.lines().find_map(|l| {
        l.strip_prefix(name_and_labels.as_str())?
            .trim()
            .parse()
            .ok()
    })
}

/// Prometheus on a free port, scraping `target` every second, with one alert rule; its data
/// in `dir`. Killed on drop.
fn prometheus(dir: &Path, target: SocketAddr, group: &str) -> (Child, SocketAddr) {
    let rules = format!(
        "groups:\n- name: kcon\n  rules:\n  - alert: KconGroupLagging\n    expr: kcon_group_max_lag_seconds{{group=\"{group}\"}} > {THRESHOLD_S}\n    for: 2s\n"
    );
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n- rules.yml\nscrape_configs:\n- job_name: kcon\n  static_configs:\n  - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = Command::new(prometheus_binary())
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    (child, addr)
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(Instant::now() < deadline, "not {what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alerts Prometheus reports: (name, state).
async fn alerts(prom: SocketAddr) -> Option<Vec<(String, String)>> {
    let (code, body) = get(prom, "/api/v1/alerts").await.ok()?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_group_fires_a_prometheus_alert_that_resolves_once_it_catches_up() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("exported");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    let produced_at = now_ms() - AGE_MS;
    produce(&broker.pool, &topic, 0, 50, produced_at).await;
    // The group has read 10 of 50: the record at offset 10 is AGE_MS old.
    reset_offsets(&b, &group, &topic, &["--to-offset", "10"]).await;
    let (exp, addr) = exporter(&b, &group, "PT0.5S").await;
    let dir = std::env::temp_dir().join(unique_name("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let (_prom, prom) = prometheus(&dir, addr, &group);

    let labels = format!("{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}");
    let lag = until(
        "the exporter has the group",
        Duration::from_secs(20),
        || sample(addr, format!("kcon_group_partition_lag_records{labels}")),
    )
    .await;
    assert_eq!(lag, 40.0);

    until("the alert fires", Duration::from_secs(60), || async {
        let a = alerts(prom).await?;
        a.iter()
            .any(|(n, s)| n == "KconGroupLagging" && s == "firing")
            .then_some(())
    })
    .await;

    // The lag in seconds Prometheus stored against the true age of the record at offset 10,
    // both read now: within the scrape interval (1 s) and the exporter's (0.5 s), plus 1.5 s
    // for the measurement itself and the clocks' rounding.
    let query = format!(
        "/api/v1/query?query={}",
        encode(&format!("kcon_group_partition_lag_seconds{labels}"))
    );
    let stored: f64 = until(
        "Prometheus answers the query",
        Duration::from_secs(20),
        || async {
            let (_, body) = get(prom, &query).await.ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
        },
    )
    .await;
    let true_age = (now_ms() - (produced_at + 10)) as f64 / 1000.0;
    assert!(
        (true_age - stored).abs() <= 3.0,
        "stored {stored} s, true age {true_age} s"
    );

    // Caught up: the alert resolves (it leaves the list of pending and firing alerts).
    reset_offsets(&b, &group, &topic, &["--to-latest"]).await;
    until("the alert resolves", Duration::from_secs(60), || async {
        let a = alerts(prom).await?;
        (!a.iter().any(|(n, _)| n == "KconGroupLagging")).then_some(())
    })
    .await;
    assert_eq!(
        sample(addr, format!("kcon_group_partition_lag_seconds{labels}")).await,
        Some(0.0)
    );
    exp.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A proxy in front of the shared node that names itself as its every broker and coordinator
/// (so that all of a client's connections go through it), listening on `listener`; it loses no
/// answer.
fn broker_behind(listener: TcpListener) -> AnswerDropper {
    let upstream: SocketAddr = Broker::single()
        .bootstrap()
        .parse()
        .expect("one node's address");
    AnswerDropper::in_front_of_on(listener, upstream, ApiKey::Produce, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_outlives_a_broker_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = listener.local_addr().unwrap();
    let broker = broker_behind(listener);
    let b = broker.bootstrap();
    let group = unique_name("g");
    let (mut exp, addr) = exporter(&b, &group, "PT0.3S").await;
    let polls = || sample(addr, "kcon_exporter_polls_total".to_owned());
    let errors = || sample(addr, "kcon_exporter_poll_errors_total".to_owned());
    until("a measurement", Duration::from_secs(20), || async {
        (polls().await? >= 1.0).then_some(())
    })
    .await;
    assert_eq!(errors().await, Some(0.0));
    // The broker goes away: every connection through the proxy closes, new ones are refused.
    drop(broker);
    until(
        "a failed measurement counted",
        Duration::from_secs(60),
        || async { (errors().await? >= 1.0).then_some(()) },
    )
    .await;
    let failed_at = now_ms() as f64 / 1000.0;
    // And comes back on its address (the old listener closes as its task ends).
    let listener = until("the port bound again", Duration::from_secs(10), || async {
        TcpListener::bind(broker_addr).await.ok()
    })
    .await;
    let _broker = broker_behind(listener);
    until(
        "a measurement after the restart",
        Duration::from_secs(60),
        || async {
            let last = sample(
                addr,
                "kcon_exporter_last_success_timestamp_seconds".to_owned(),
            )
            .await?;
            (last > failed_at).then_some(())
        },
    )
    .await;
    assert!(
        exp.child.try_wait().unwrap().is_none(),
        "the exporter is still running"
    );
    exp.terminate();
}

/// SIGTERM (how systemd and Kubernetes stop a service) and SIGINT end the exporter with exit
/// 0: it stops accepting connections and answers the scrape under way before it goes. The
/// interval is given in a short form.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sigint_end_the_exporter_with_0_after_the_scrape_under_way() {
    let b = Broker::single().bootstrap();
    let group = unique_name("g");
    for signal in ["TERM", "INT"] {
        let (exp, addr) = exporter(&b, &group, "1s").await;
        until("a measurement", Duration::from_secs(20), || async {
            (sample(addr, "kcon_exporter_polls_total".to_owned()).await? >= 1.0).then_some(())
        })
        .await;
        // A scrape under way: connected, half of its request sent.
        let mut scrape = TcpStream::connect(addr).await.unwrap();
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: kcon\r\n")
            .await
            .unwrap();
        // Time for the exporter to accept it (nothing outside tells when it has; a connection
        // still in the listen queue at the signal would be refused with it).
        tokio::time::sleep(Duration::from_secs(1)).await;
        exp.signal(signal);
        until(
            "no more connections accepted",
            Duration::from_secs(10),
            || async { TcpStream::connect(addr).await.is_err().then_some(()) },
        )
        .await;
        scrape
            .write_all(b"Connection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        scrape.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("kcon_exporter_polls_total") && response.ends_with("# EOF\n"),
            "the whole scrape: {response}"
        );
        let (status, _, stderr) = exp.wait(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?} {stderr:?}");
    }
}
