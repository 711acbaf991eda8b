//! GET requests to the registry: HTTP/1.1 by hyper's client connection, over TCP or
//! tokio-rustls, every call bounded by one deadline and every answer by a size.
//!
//! Connections are kept for reuse (a few per client; a lookup is rare once the cache is warm).
//! A kept connection that fails before any answer is replaced by a new one once, since the
//! registry may have closed it while idle. URLs are tried in turn from the one that last
//! answered: a URL that cannot be reached, or answers 5xx, hands over to the next, as
//! Confluent's `RestService` fails over between its URLs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, AUTHORIZATION, HOST, USER_AGENT};
use kcon_core::ConfigError;
use kcon_pool::http::read_body;
use tokio_rustls::TlsConnector;

use crate::config::{Auth, Endpoint, RegistryConfig, TlsFiles};

/// The largest answer read: a registered schema is far smaller (the registry keeps them in a
/// Kafka topic whose records are 1 MiB by default).
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Connections kept idle per client.
const MAX_IDLE: usize = 4;

/// What the registry sent back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
    /// The URL that answered (for messages).
    pub(crate) url: String,
}

/// No answer: the registry could not be reached, or did not answer in time or in HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Unreachable(pub(crate) String);

type Sender = SendRequest<Empty<Bytes>>;

pub(crate) struct Http {
    endpoints: Vec<Endpoint>,
    auth: Auth,
    tls: Option<TlsConnector>,
    timeout: Duration,
    idle: Mutex<Vec<(usize, Sender)>>,
    preferred: AtomicUsize,
    user_agent: String,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field(
                "urls",
                &self
                    .endpoints
                    .iter()
                    .map(|e| e.authority.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Http {
    pub(crate) fn new(config: &RegistryConfig) -> Result<Http, ConfigError> {
        let tls = if config.endpoints.iter().any(|e| e.tls) {
            Some(connector(&config.tls)?)
        } else {
            None
        };
        Ok(Http {
            endpoints: config.endpoints.clone(),
            auth: config.auth.clone(),
            tls,
            timeout: config.timeout,
            idle: Mutex::new(Vec::new()),
            preferred: AtomicUsize::new(0),
            user_agent: format!("kcon/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// `GET {base}{path}` from the URLs in turn, the whole call within the timeout.
    pub(crate) async fn get(&self, path: &str) -> Result<Answer, Unreachable> {
        match tokio::time::timeout(self.timeout, self.get_any(path)).await {
            Ok(result) => result,
            Err(_) => Err(Unreachable(format!(
                "no answer within schema.registry.request.timeout.ms ({} ms)",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn get_any(&self, path: &str) -> Result<Answer, Unreachable> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in (0..n).map(|k| (first + k) % n) {
            match self.get_from(i, path).await {
                Ok(answer) if answer.status < 500 || i == (first + n - 1) % n => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Ok(answer) => last = Some(Ok(answer)),
                Err(e) => last = Some(Err(e)),
            }
        }
        last.unwrap_or_else(|| Err(Unreachable("no registry URL".to_owned())))
    }

    async fn get_from(&self, i: usize, path: &str) -> Result<Answer, Unreachable> {
        let endpoint = &self.endpoints[i];
        let url = format!(
            "{}://{}{}",
            if endpoint.tls { "https" } else { "http" },
            endpoint.authority,
            endpoint.path
        );
        let fail = |what: String| Unreachable(format!("{url}: {what}"));
        let kept = self.take_idle(i);
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(s) => s,
            None => self.connect(endpoint).await.map_err(fail)?,
        };
        let request = || {
            let mut r = hyper::Request::get(format!("{}{path}", endpoint.path))
                .header(HOST, endpoint.authority.as_str())
                .header(
                    ACCEPT,
                    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json",
                )
                .header(USER_AGENT, self.user_agent.as_str());
            if let Some(auth) = self.auth.header(endpoint) {
                r = r.header(AUTHORIZATION, auth);
            }
            r.body(Empty::<Bytes>::new())
                .map_err(|e| fail(format!("bad request: {e}")))
        };
        let response = match sender.send_request(request()?).await {
            Ok(r) => r,
            // A kept connection the registry closed while it was idle: once more, anew.
            Err(_) if reused => {
                sender = self.connect(endpoint).await.map_err(fail)?;
                sender
                    .send_request(request()?)
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let status = response.status().as_u16();
        let body = read_body(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(fail)?;
        self.keep_idle(i, sender);
        Ok(Answer { status, body, url })
    }

    fn take_idle(&self, i: usize) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = idle.iter().position(|(e, _)| *e == i) {
            let (_, s) = idle.swap_remove(pos);
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn keep_idle(&self, i: usize, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((i, sender));
        }
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Sender, String> {
        // Bounded by `get`'s timeout, which bounds the whole call.
        endpoint.connect(self.tls.as_ref()).await
    }
}

/// rustls as kcon-pool's broker connections have it: the CAs of
/// `schema.registry.ssl.ca.location` or the system's, a client certificate if given.
fn connector(files: &TlsFiles) -> Result<TlsConnector, ConfigError> {
    let config = kcon_pool::tls_client_config(kcon_pool::TlsFiles {
        prefix: "schema.registry.",
        ca_location: files.ca.as_deref(),
        certificate_location: files.certificate.as_deref(),
        key_location: files.key.as_deref(),
        verify_hostname: files.verify_host,
    })?;
    Ok(TlsConnector::from(Arc::new(config)))
}
