//! `kcon exporter`: every matching group's lag and Burrow-style status as Prometheus metrics,
//! served over HTTP at `/metrics`.
//!
//! One task measures: every `--interval` it lists the groups, keeps those a `--group`
//! expression matches (all without one), measures them with kcon-admin's `groups_lag` (one
//! request per coordinator and leader for all of them) and judges each partition over its
//! window of commits. The measurement replaces the published one whole: a group deleted or no
//! longer matching disappears from the next scrape. When a measurement fails (a broker down
//! or restarting), the last one stays published, the failure is counted, and the next interval
//! tries again: the process does not end. The HTTP side (hyper's HTTP/1.1 server) answers
//! every scrape from the published measurement, never waiting on a broker.
//!
//! SIGINT or SIGTERM (how systemd and Kubernetes stop a service) ends it with exit 0: a
//! measurement under way is dropped (nothing would read it), no connection is accepted any
//! more, and the scrapes under way are answered (for at most [`FINISH_WITHIN`]; a second
//! signal cuts them short).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kcon_admin::{self as admin, GroupLag, GroupsWatch, LagOptions};
use kcon_prometheus::prometheus_client::registry::Registry;
use kcon_prometheus::{GroupLagCollector, MeasuredGroup};
use regex::Regex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::shutdown::Shutdown;

/// `kcon exporter`.
#[derive(Debug, Args)]
pub(crate) struct ExporterArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A regular expression a whole group id must match (`billing` is billing alone,
    /// `billing.*` billing and billing2, as KIP-848 coordinators match), repeatable; every
    /// group without one.
    #[arg(long = "group", value_name = "REGEX")]
    groups: Vec<String>,
    /// Where to serve /metrics.
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:9308")]
    listen: SocketAddr,
    /// Time between measurements: 500ms, 1s, 5m, 1h, 1m30s, or ISO-8601 such as PT30S.
    #[arg(long = "interval", value_name = "DURATION", value_parser = crate::duration::interval, default_value = "30s")]
    interval: Duration,
    /// How many commits of each partition the status is judged on (Burrow's default is 10).
    #[arg(long = "window", value_name = "N", default_value_t = 10)]
    window: usize,
}

pub(crate) async fn run(args: ExporterArgs) -> Result<(), Failure> {
    let filters = group_filters(&args.groups)?;
    let mut shutdown = Shutdown::new()?;
    let cluster = tokio::select! {
        r = args.cluster.connect(Some(&[])) => r?,
        () = shutdown.wait() => return Ok(()),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::runtime(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::runtime(format!("cannot listen on {}: {e}", args.listen)))?;
    // The address on stderr, so a caller that asked for port 0 learns the port.
    eprintln!("kcon: serving /metrics on http://{addr}");
    // What a scrape reads (kcon-prometheus writes it as series): the last measurement of every
    // matching group, and the exporter's own health.
    let published = GroupLagCollector::new();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(published.clone()));
    let registry = Arc::new(registry);
    let (stop_serving, stopped) = watch::channel(false);
    let server = tokio::spawn(serve(listener, registry, stopped));

    let mut watch = GroupsWatch::new(args.window);
    loop {
        let started = Instant::now();
        // A measurement under way when a signal comes is dropped: nothing would read it.
        let outcome = tokio::select! {
            biased;
            () = shutdown.wait() => break,
            o = measure(&cluster.pool, &filters) => o,
        };
        let took = started.elapsed();
        {
            let mut p = published.lock();
            p.polls += 1;
            p.last_poll = Some(took);
            match outcome {
                Ok(lags) => {
                    // Windows of groups gone go with them.
                    let mut judged = watch.observe(&lags);
                    p.groups = lags
                        .into_iter()
                        .filter_map(|(group, lag)| {
                            let judged = judged.remove(&group)?;
                            Some((group, MeasuredGroup { lag, judged }))
                        })
                        .collect();
                    p.last_success = Some(cluster.pool.clock().now());
                }
                Err(e) => {
                    p.poll_errors += 1;
                    warn!(error = %e, "measuring the groups failed; the last measurement stays published");
                }
            }
        }
        tokio::select! {
            biased;
            () = shutdown.wait() => break,
            () = tokio::time::sleep(args.interval) => {}
        }
    }
    // Stop accepting, let the scrapes being answered finish (a second signal cuts them
    // short), then exit 0.
    let _ = stop_serving.send(true);
    tokio::select! {
        _ = server => {}
        () = shutdown.wait() => {}
    }
    eprintln!("kcon: stopped serving /metrics");
    Ok(())
}

/// The `--group` expressions, each matching whole group ids only.
fn group_filters(patterns: &[String]) -> Result<Vec<Regex>, Failure> {
    patterns
        .iter()
        .map(|g| {
            Regex::new(&format!("^(?:{g})$")).map_err(|e| {
                Failure::usage(format!("--group {g:?} is not a regular expression: {e}"))
            })
        })
        .collect()
}

/// Every matching group's lag; a group whose own lookup failed is left out (and logged).
async fn measure(
    pool: &kcon_admin::Pool,
    filters: &[Regex],
) -> Result<BTreeMap<String, GroupLag>, admin::Error> {
    let listed = admin::list_groups(pool).await?;
    let names: Vec<String> = listed
        .into_iter()
        .filter(admin::ListedGroup::is_consumer_group)
        .map(|g| g.group_id)
        .filter(|g| filters.is_empty() || filters.iter().any(|f| f.is_match(g)))
        .collect();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let lags = admin::groups_lag(pool, &names, &LagOptions::default()).await?;
    let mut out = BTreeMap::new();
    for (group, lag) in lags {
        match lag {
            Ok(lag) => {
                out.insert(group, lag);
            }
            Err(e) => info!(%group, error = %e, "no lag for this group this time"),
        }
    }
    Ok(out)
}

/// Answers HTTP requests with hyper's HTTP/1.1 server, one request per connection: GET
/// /metrics with the registry's text, anything else 404. Once `stopped` turns true: accepts no
/// more connections, lets the exchanges under way finish (for at most [`FINISH_WITHIN`]) and
/// returns.
async fn serve(listener: TcpListener, registry: Arc<Registry>, mut stopped: watch::Receiver<bool>) {
    let mut exchanges = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
            // Reap the finished exchanges as they end.
            Some(_) = exchanges.join_next(), if !exchanges.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        exchanges.spawn(async move {
            let answer = service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&request, &registry)) }
            });
            // A scrape is one request: the connection closes after the answer, so that one
            // left open cannot hold up the end. The head is read into at most MAX_HEAD bytes
            // (hyper answers 431 past that).
            let served = http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), answer)
                .await;
            if let Err(e) = served {
                info!(error = %e, "an HTTP exchange failed");
            }
        });
    }
    drop(listener);
    let finished = async { while exchanges.join_next().await.is_some() {} };
    if tokio::time::timeout(FINISH_WITHIN, finished).await.is_err() {
        info!(
            left = exchanges.len(),
            "HTTP exchanges still under way at the end are cut short"
        );
    }
}

/// How long the exchanges under way at the end may take to finish.
const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// The largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// The answer to `request`: the registry's text for GET /metrics, 404 for anything else.
fn answer<B>(request: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) =
        if request.method() == Method::GET && request.uri().path() == "/metrics" {
            let mut text = String::new();
            match kcon_prometheus::prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        } else {
            (
                StatusCode::NOT_FOUND,
                "text/plain",
                "only /metrics is served\n".into(),
            )
        };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// GET /metrics (with a query) is answered with the registry's text, anything else 404, a
    /// request head past the bound 431 (or a closed connection); the connection closes after
    /// one answer.
    #[tokio::test]
    async fn only_get_metrics_is_served_and_a_huge_head_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::new(Registry::default()), stopped));
        // What comes back until the server closes (a reset, after a refused head whose rest
        // was never read, ends it too).
        let ask = |request: String| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        };
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: kcon\r\n\r\n");
        let ok = ask(get("/metrics?name[]=x")).await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.contains("application/openmetrics-text"), "{ok}");
        assert!(ok.ends_with("# EOF\n"), "{ok}");
        let other = ask(get("/")).await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = ask("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_owned()).await;
        assert!(post.starts_with("HTTP/1.1 404"), "{post}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let refused = ask(huge).await;
        assert!(
            refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
            "{refused}"
        );
        stop.send(true).unwrap();
        server.await.unwrap();
    }

    #[test]
    fn a_group_expression_matches_whole_names() {
        let only = |patterns: &[&str], names: &[&str]| -> Vec<String> {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let filters = group_filters(&patterns).unwrap();
            names
                .iter()
                .filter(|n| filters.iter().any(|f| f.is_match(n)))
                .map(|n| n.to_string())
                .collect()
        };
        let names = ["billing", "billing2", "old-billing", "payments"];
        assert_eq!(only(&["billing"], &names), ["billing"]);
        assert_eq!(only(&["billing.*"], &names), ["billing", "billing2"]);
        assert_eq!(
            only(&[".*billing.*"], &names),
            ["billing", "billing2", "old-billing"]
        );
        assert_eq!(only(&["billing|payments"], &names), ["billing", "payments"]);
        assert_eq!(
            only(&["^billing$"], &names),
            ["billing"],
            "anchors still work"
        );
        assert!(group_filters(&["(".into()]).is_err());
    }
}
