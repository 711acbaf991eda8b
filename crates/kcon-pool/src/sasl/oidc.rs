//! OAUTHBEARER tokens from an OAuth 2.0 token endpoint (Kafka's KIP-768, librdkafka's
//! `sasl.oauthbearer.method=oidc`): by the client credentials grant (RFC 6749 §4.4), or by the
//! JWT bearer grant (RFC 7523 §2.1, KIP-1139) with an assertion signed here
//! ([`assertion`](super::assertion)) or read from a file.
//!
//! One token is shared by every connection of the clients that share the configuration. A task
//! of its own fetches it when first asked for, and again ahead of its expiry: at
//! `sasl.login.refresh.window.factor` of its lifetime, plus up to
//! `sasl.login.refresh.window.jitter` of it, so that clients started together do not ask
//! together, and while it still has [`SESSION_AT_LEAST`] left. A connection that authenticates
//! or re-authenticates (KIP-368) takes the token held then; past the token's renewal it waits
//! for the renewal under way, so that it never starts a session too short to renew.
//!
//! A failed fetch is tried again after a backoff (`sasl.login.retry.backoff.ms`, doubling with
//! jitter up to `sasl.login.retry.backoff.max.ms`). The first failure of a run of them is
//! logged once at WARN, its recovery at INFO; the tries between are DEBUG. While the endpoint
//! fails:
//! - a token still valid is handed out as before (its remaining lifetime, so connections
//!   re-authenticate before it expires and find the next one);
//! - with none valid, a connection that needs one waits for the next success (bounded by its
//!   own timeouts), unless the endpoint refused the client itself (a 4xx answer other than 408
//!   and 429: a wrong secret, an unknown client, a scope not granted, an assertion it cannot
//!   verify): then it fails at once, with the endpoint's answer, since the same request would
//!   be refused again.
//!
//! The token's lifetime is the shorter of the answer's `expires_in` and what the token's `exp`
//! claim leaves, when it is a JWT; at least one of them must be given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};
use bytes::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use kcon_core::ExponentialBackoff;
use kcon_core::security::Password;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use super::assertion::Signer;
use super::oauthbearer::{OAuthBearerToken, OAuthBearerTokenProvider, TokenFuture};
use crate::config::oidc::GrantType;
use crate::http::{FullBody, HttpEndpoint, form_encode, read_body};

/// The largest answer read from the token endpoint: a token is a few KiB at most.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What asking the token endpoint needs, checked (by `PoolConfig::validate`) and loaded.
pub(crate) struct OidcSettings {
    /// `sasl.oauthbearer.token.endpoint.url`.
    pub(crate) endpoint: HttpEndpoint,
    /// rustls for an `https` endpoint.
    pub(crate) tls: Option<TlsConnector>,
    /// How the endpoint is asked.
    pub(crate) grant: Grant,
    /// `sasl.oauthbearer.scope`.
    pub(crate) scope: Option<String>,
    /// `sasl.oauthbearer.extensions`: sent with every token.
    pub(crate) extensions: BTreeMap<String, String>,
    /// `sasl.oauthbearer.header.urlencode`.
    pub(crate) header_urlencode: bool,
    /// `sasl.login.connect.timeout.ms`.
    pub(crate) connect_timeout: Duration,
    /// `sasl.login.read.timeout.ms`.
    pub(crate) read_timeout: Duration,
    /// `sasl.login.retry.backoff.ms` and `.max.ms`.
    pub(crate) backoff: ExponentialBackoff,
    /// `sasl.login.refresh.window.factor`.
    pub(crate) refresh_factor: f64,
    /// `sasl.login.refresh.window.jitter`.
    pub(crate) refresh_jitter: f64,
}

/// How the token endpoint is asked for a token.
pub(crate) enum Grant {
    /// The client credentials grant: the client's id and secret.
    ClientCredentials { id: String, secret: Password },
    /// The JWT bearer grant (RFC 7523 §2.1): an assertion, with the client's id and secret
    /// when they are set.
    JwtBearer {
        client: Option<(String, Password)>,
        assertion: Assertion,
    },
}

/// Where the JWT bearer grant's assertion comes from.
pub(crate) enum Assertion {
    /// Signed afresh for each request.
    Signed(Box<Signer>),
    /// Read from `sasl.oauthbearer.assertion.file` for each request.
    File(PathBuf),
}

/// The token provider of `sasl.oauthbearer.token.endpoint.url`.
pub(crate) struct Oidc {
    shared: Arc<Shared>,
}

struct Shared {
    settings: OidcSettings,
    state: Mutex<State>,
    /// Bumped at every change of `state`: waiters wake and look again.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The token held, if any (expired ones included: `token` looks at the time).
    token: Option<Held>,
    /// The endpoint's last refusal of the client, while no fetch has succeeded since.
    refused: Option<String>,
    /// Whether the fetching task runs.
    running: bool,
    /// Whether the last fetch failed.
    failing: bool,
    /// Failures reported at WARN, and recoveries at INFO, for the tests.
    #[cfg(test)]
    warnings: u32,
    #[cfg(test)]
    recoveries: u32,
}

struct Held {
    value: String,
    expires: Instant,
    /// When the next token is fetched.
    renew: Instant,
}

/// A fetch that did not give a token.
#[derive(Debug)]
struct Failed {
    /// What happened, in words, with the endpoint's answer if there was one.
    why: String,
    /// The endpoint refused the client: asking again the same way will not help.
    refused: bool,
}

/// A fetched token.
#[derive(Debug)]
struct Fetched {
    value: String,
    lifetime: Duration,
}

impl Oidc {
    pub(crate) fn new(settings: OidcSettings) -> Oidc {
        Oidc {
            shared: Arc::new(Shared {
                settings,
                state: Mutex::new(State::default()),
                changed: watch::Sender::new(0),
            }),
        }
    }
}

impl OAuthBearerTokenProvider for Oidc {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut changes = shared.changed.subscribe();
            loop {
                {
                    let mut state = shared.lock();
                    let now = Instant::now();
                    // A token past its renewal is handed out only while renewals fail: else
                    // the renewal under way is waited for, so that no connection starts a
                    // session too short to renew (see `renew_after`).
                    let usable = |h: &&Held| h.expires > now && (now < h.renew || state.failing);
                    if let Some(held) = state.token.as_ref().filter(usable) {
                        let mut token =
                            OAuthBearerToken::new(held.value.clone(), Some(held.expires - now));
                        token.extensions = shared.settings.extensions.clone();
                        return Ok(token);
                    }
                    if let Some(why) = &state.refused {
                        return Err(why.clone().into());
                    }
                    if !state.running {
                        state.running = true;
                        tokio::spawn(refresh(Arc::downgrade(shared)));
                    }
                }
                // The task bumps `changed` after every fetch; a change made between the look
                // above and this wait is not missed (the receiver saw the value before it).
                if changes.changed().await.is_err() {
                    return Err("the token endpoint's task stopped".into());
                }
            }
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One POST to the token endpoint, bounded by the connect and read timeouts.
    async fn fetch(&self) -> Result<Fetched, Failed> {
        let s = &self.settings;
        let transient = |why: String| Failed {
            why,
            refused: false,
        };
        let (mut form, client) = match &s.grant {
            Grant::ClientCredentials { id, secret } => (
                "grant_type=client_credentials".to_owned(),
                Some((id, secret)),
            ),
            Grant::JwtBearer { client, assertion } => {
                let assertion = match assertion {
                    Assertion::Signed(signer) => {
                        signer.assertion(SystemTime::now()).map_err(transient)?
                    }
                    Assertion::File(path) => read_assertion(path).await?,
                };
                (
                    format!(
                        "grant_type={}&assertion={}",
                        form_encode(GrantType::JWT_BEARER),
                        form_encode(&assertion)
                    ),
                    client.as_ref().map(|(id, secret)| (id, secret)),
                )
            }
        };
        if let Some(scope) = &s.scope {
            form.push_str("&scope=");
            form.push_str(&form_encode(scope));
        }
        let path = if s.endpoint.path.is_empty() {
            "/"
        } else {
            &s.endpoint.path
        };
        let mut request = hyper::Request::post(path)
            .header(HOST, s.endpoint.authority.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("kcon/", env!("CARGO_PKG_VERSION")));
        if let Some((id, secret)) = client {
            let (id, secret) = if s.header_urlencode {
                (form_encode(id), form_encode(secret.expose()))
            } else {
                (id.clone(), secret.expose().to_owned())
            };
            request = request.header(
                AUTHORIZATION,
                format!("Basic {}", BASE64.encode(format!("{id}:{secret}"))),
            );
        }
        let request = request
            .body(FullBody::new(Bytes::from(form)))
            .map_err(|e| transient(format!("cannot make the request: {e}")))?;
        // The request is made before the connection: an assertion that cannot be made costs
        // the endpoint nothing.
        let mut sender = tokio::time::timeout(
            s.connect_timeout,
            s.endpoint.connect::<FullBody>(s.tls.as_ref()),
        )
        .await
        .map_err(|_| {
            transient(format!(
                "no connection within {} ms (sasl.login.connect.timeout.ms)",
                s.connect_timeout.as_millis()
            ))
        })?
        .map_err(transient)?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| transient(format!("no answer: {e}")))?;
            let status = response.status().as_u16();
            let body = read_body(response.into_body(), MAX_ANSWER_BYTES)
                .await
                .map_err(transient)?;
            Ok::<_, Failed>((status, body))
        };
        let (status, body) = tokio::time::timeout(s.read_timeout, exchange)
            .await
            .map_err(|_| {
                transient(format!(
                    "no answer within {} ms (sasl.login.read.timeout.ms)",
                    s.read_timeout.as_millis()
                ))
            })??;
        if !(200..300).contains(&status) {
            return Err(Failed {
                why: format!("HTTP {status}: {}", error_answer(&body)),
                refused: (400..500).contains(&status) && status != 408 && status != 429,
            });
        }
        read_token(&body, SystemTime::now()).map_err(|why| Failed {
            why,
            // The endpoint's answer will not change by itself; kept trying all the same.
            refused: true,
        })
    }
}

/// `sasl.oauthbearer.assertion.file`'s assertion, read now.
async fn read_assertion(path: &Path) -> Result<String, Failed> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned))
        .await
        .map_err(|e| Failed {
            why: format!("reading sasl.oauthbearer.assertion.file stopped: {e}"),
            refused: false,
        })?;
    let text = read.map_err(|e| Failed {
        why: format!(
            "cannot read sasl.oauthbearer.assertion.file {}: {e}",
            path.display()
        ),
        refused: false,
    })?;
    let assertion = text.trim();
    if assertion.is_empty() {
        return Err(Failed {
            why: format!(
                "sasl.oauthbearer.assertion.file {} is empty",
                path.display()
            ),
            refused: false,
        });
    }
    Ok(assertion.to_owned())
}

/// The task that fetches the token, and again ahead of its expiry, while any handle of the
/// provider is left.
async fn refresh(shared: Weak<Shared>) {
    let mut failures: u32 = 0;
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let s = &strong.settings;
        let url = s.endpoint.shown();
        let asked = Instant::now();
        let wait = match strong.fetch().await {
            Ok(fetched) => {
                if failures > 0 {
                    info!(
                        url,
                        failures, "the OAuth token endpoint gives a token again"
                    );
                    #[cfg(test)]
                    {
                        strong.lock().recoveries += 1;
                    }
                }
                failures = 0;
                let share = s.refresh_factor + s.refresh_jitter * fastrand::f64();
                let wait = renew_after(fetched.lifetime, share);
                debug!(
                    url,
                    lifetime_ms = fetched.lifetime.as_millis() as u64,
                    next_ms = wait.as_millis() as u64,
                    "OAuth token fetched"
                );
                let mut state = strong.lock();
                state.token = Some(Held {
                    value: fetched.value,
                    // Counted from before the request: the token may be a little older.
                    expires: asked + fetched.lifetime,
                    renew: asked + wait,
                });
                state.refused = None;
                state.failing = false;
                wait
            }
            Err(failed) => {
                let wait = s.backoff.delay_random(failures);
                let held = {
                    let mut state = strong.lock();
                    state.failing = true;
                    if failed.refused {
                        state.refused = Some(format!(
                            "the OAuth token endpoint {url} refused: {}",
                            failed.why
                        ));
                    }
                    state
                        .token
                        .as_ref()
                        .map(|h| h.expires.saturating_duration_since(Instant::now()))
                };
                if failures == 0 {
                    warn!(url, "{}", failure_report(&failed.why, held));
                    #[cfg(test)]
                    {
                        strong.lock().warnings += 1;
                    }
                } else {
                    debug!(url, failures, error = %failed.why, "the OAuth token endpoint still gives no token");
                }
                failures = failures.saturating_add(1);
                wait
            }
        };
        strong.changed.send_modify(|n| *n = n.wrapping_add(1));
        drop(strong);
        tokio::time::sleep_until(asked + wait).await;
    }
}

/// What a session must have left when it starts, for the connection to renew it in place:
/// Kafka's brokers take at most one re-authentication a second on a connection
/// (`KafkaChannel`'s minimum interval), and a connection re-authenticates at 85 % of its
/// session's lifetime at the earliest.
const SESSION_AT_LEAST: Duration = Duration::from_secs(2);

/// How long after it was asked for a token of `lifetime` is renewed: at `share` of it, but
/// while it has [`SESSION_AT_LEAST`] left, so that a connection that takes it just before the
/// renewal still gets a session it can renew; at half its lifetime at the earliest, so that a
/// token shorter than that is not asked for over and over.
fn renew_after(lifetime: Duration, share: f64) -> Duration {
    lifetime
        .mul_f64(share)
        .min(lifetime.saturating_sub(SESSION_AT_LEAST))
        .max(lifetime / 2)
}

/// The WARN line of a failed fetch that starts a run of them; `held` is how long the token held
/// stays valid, if any.
fn failure_report(why: &str, held: Option<Duration>) -> String {
    let held = match held {
        Some(left) if !left.is_zero() => format!(
            "the token held stays valid for {} ms more",
            left.as_millis()
        ),
        _ => "connections that need a token wait for one".to_owned(),
    };
    format!(
        "the OAuth token endpoint gives no token: {why}; tried again with backoff \
         (sasl.login.retry.backoff.ms, sasl.login.retry.backoff.max.ms) and reported again only \
         once it answers; {held}"
    )
}

/// The token and its lifetime from a successful answer (RFC 6749 §5.1), `now` being the
/// wall clock, against which a JWT's `exp` is read.
fn read_token(body: &[u8], now: SystemTime) -> Result<Fetched, String> {
    let answer: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", excerpt(body)))?;
    let Some(value) = answer.get("access_token").and_then(|v| v.as_str()) else {
        return Err(format!("the answer has no access_token: {}", excerpt(body)));
    };
    let expires_in = answer
        .get("expires_in")
        .and_then(|v| v.as_f64())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)));
    let from_exp = jwt_exp(value).map(|exp| {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        exp.saturating_sub(now)
    });
    let lifetime = match (expires_in, from_exp) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).ok_or_else(|| {
            "the answer gives no expires_in, and the token is not a JWT with an exp claim"
                .to_owned()
        })?,
    };
    if lifetime.is_zero() {
        return Err(
            "the token has expired already by its exp claim (is this machine's clock right?)"
                .to_owned(),
        );
    }
    Ok(Fetched {
        value: value.to_owned(),
        lifetime,
    })
}

/// A JWT's `exp` claim (seconds since the epoch), if the token is a JWT with one.
fn jwt_exp(token: &str) -> Option<Duration> {
    let mut parts = token.split('.');
    let (_, payload) = (parts.next()?, parts.next()?);
    let claims: serde_json::Value =
        serde_json::from_slice(&BASE64_URL.decode(payload.trim_end_matches('=')).ok()?).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp.is_finite() && exp >= 0.0).then(|| Duration::from_secs_f64(exp.min(1e12)))
}

/// An error answer in words: RFC 6749 §5.2's `error` and `error_description` when it has
/// them, else the start of the body.
fn error_answer(body: &[u8]) -> String {
    let field = |answer: &serde_json::Value, name: &str| {
        answer.get(name).and_then(|v| v.as_str()).map(str::to_owned)
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(answer) => match (field(&answer, "error"), field(&answer, "error_description")) {
            (Some(e), Some(d)) => format!("{e}: {d}"),
            (Some(e), None) => e,
            _ => excerpt(body),
        },
        Err(_) => excerpt(body),
    }
}

/// At most 300 characters of an answer, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None if text.is_empty() => "(empty)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A scripted token endpoint: answers each request with the next of `answers` (the last
    /// one again once they run out) and keeps what it was sent.
    struct Endpoint {
        url: String,
        requests: Arc<Mutex<Vec<(String, String)>>>,
    }

    async fn endpoint(answers: Vec<(u16, String)>) -> Endpoint {
        endpoint_over(answers, None).await
    }

    /// [`endpoint`], over TLS with `tls` when given (a handshake that fails is skipped).
    async fn endpoint_over(
        answers: Vec<(u16, String)>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/oauth2/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter().peekable();
            let mut last = None;
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tcp: Box<dyn Stream> = match &tls {
                    None => Box::new(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => continue,
                    },
                };
                let mut read = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let n = tcp.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client closed before its request ended");
                    read.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&read).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_owned();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if read.len() >= end + 4 + length {
                            break (head, text[end + 4..end + 4 + length].to_owned());
                        }
                    }
                };
                seen.lock().unwrap().push((head, body));
                let (status, body) = match answers.next() {
                    Some(a) => {
                        last = Some(a.clone());
                        a
                    }
                    None => last.clone().unwrap(),
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tcp.write_all(answer.as_bytes()).await.unwrap();
                let _ = tcp.shutdown().await;
            }
        });
        Endpoint { url, requests }
    }

    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

    fn settings(url: &str) -> OidcSettings {
        OidcSettings {
            endpoint: HttpEndpoint::parse(url).unwrap(),
            tls: None,
            grant: Grant::ClientCredentials {
                id: "kcon-app".to_owned(),
                secret: Password::new("s3cret"),
            },
            scope: Some("kafka read".to_owned()),
            extensions: BTreeMap::from([("logicalCluster".to_owned(), "lkc-1".to_owned())]),
            header_urlencode: false,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            backoff: ExponentialBackoff::new(Duration::from_millis(50), Duration::from_millis(200)),
            refresh_factor: 0.5,
            refresh_jitter: 0.0,
        }
    }

    fn granted(token: &str, seconds: u64) -> (u16, String) {
        (
            200,
            format!(r#"{{"access_token":"{token}","expires_in":{seconds},"token_type":"Bearer"}}"#),
        )
    }

    #[tokio::test]
    async fn one_token_is_fetched_by_the_client_credentials_grant_for_every_caller() {
        let idp = endpoint(vec![granted("tok-1", 60)]).await;
        let oidc = Oidc::new(settings(&idp.url));
        let (a, b) = tokio::join!(oidc.token(), oidc.token());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.value.as_str(), b.value.as_str()), ("tok-1", "tok-1"));
        let life = a.lifetime.unwrap();
        assert!(
            life <= Duration::from_secs(60) && life > Duration::from_secs(55),
            "{life:?}"
        );
        assert_eq!(a.extensions["logicalCluster"], "lkc-1");
        let requests = idp.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 1, "one fetch for both: {requests:?}");
        let (head, body) = &requests[0];
        assert!(head.starts_with("POST /oauth2/token HTTP/1.1"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!(
                "authorization: basic {}",
                BASE64.encode("kcon-app:s3cret").to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            head.contains("content-type: application/x-www-form-urlencoded"),
            "{head}"
        );
        assert_eq!(body, "grant_type=client_credentials&scope=kafka+read");
    }

    #[tokio::test]
    async fn the_id_and_secret_are_form_encoded_in_the_header_when_asked() {
        let idp = endpoint(vec![granted("tok", 60)]).await;
        let mut s = settings(&idp.url);
        s.grant = Grant::ClientCredentials {
            id: "app one".to_owned(),
            secret: Password::new("p:w&x"),
        };
        s.header_urlencode = true;
        s.scope = None;
        Oidc::new(s).token().await.unwrap();
        let (head, body) = idp.requests.lock().unwrap()[0].clone();
        assert!(
            head.contains(&format!("Basic {}", BASE64.encode("app+one:p%3Aw%26x"))),
            "{head}"
        );
        assert_eq!(body, "grant_type=client_credentials");
    }

    #[tokio::test]
    async fn the_jwt_bearer_grant_sends_the_assertion_with_or_without_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("assertion.jwt");
        std::fs::write(&file, "eyJh.eyJz.c2ln\n").unwrap();
        let idp = endpoint(vec![granted("tok", 60)]).await;
        let mut s = settings(&idp.url);
        s.grant = Grant::JwtBearer {
            client: None,
            assertion: Assertion::File(file.clone()),
        };
        Oidc::new(s).token().await.unwrap();
        let (head, body) = idp.requests.lock().unwrap()[0].clone();
        assert_eq!(
            body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer\
             &assertion=eyJh.eyJz.c2ln&scope=kafka+read"
        );
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );

        let idp = endpoint(vec![granted("tok", 60)]).await;
        let mut s = settings(&idp.url);
        s.grant = Grant::JwtBearer {
            client: Some(("kcon-app".to_owned(), Password::new("s3cret"))),
            assertion: Assertion::File(file),
        };
        Oidc::new(s).token().await.unwrap();
        let (head, _) = idp.requests.lock().unwrap()[0].clone();
        assert!(
            head.contains(&format!("Basic {}", BASE64.encode("kcon-app:s3cret"))),
            "{head}"
        );
    }

    #[tokio::test]
    async fn an_empty_assertion_file_is_a_failure_tried_again_not_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("assertion.jwt");
        std::fs::write(&file, "  \n").unwrap();
        let idp = endpoint(vec![granted("tok", 60)]).await;
        let mut s = settings(&idp.url);
        s.grant = Grant::JwtBearer {
            client: None,
            assertion: Assertion::File(file.clone()),
        };
        let oidc = Oidc::new(s);
        let waited = tokio::time::timeout(Duration::from_millis(300), oidc.token()).await;
        assert!(waited.is_err(), "waits for an assertion: {waited:?}");
        assert!(idp.requests.lock().unwrap().is_empty());
        // Whatever renews the file renews the assertion.
        std::fs::write(&file, "eyJh.eyJz.c2ln").unwrap();
        let t = tokio::time::timeout(Duration::from_secs(5), oidc.token())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.value, "tok");
    }

    /// An https endpoint whose certificate a CA of the test's signs: fetched with that CA
    /// (`sasl.oauthbearer.ssl.ca.location`), refused with the system's trust store.
    #[tokio::test]
    async fn an_https_endpoint_is_trusted_by_the_ca_given_and_only_by_it() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let idp = endpoint_over(vec![granted("tok-tls", 60)], Some(acceptor)).await;
        let connector = |ca: Option<&std::path::Path>| {
            let config = crate::tls::client_config(crate::tls::TlsFiles {
                prefix: "sasl.oauthbearer.",
                ca_location: ca,
                certificate_location: None,
                key_location: None,
                verify_hostname: true,
            })
            .unwrap();
            TlsConnector::from(Arc::new(config))
        };
        let mut s = settings(&idp.url);
        s.tls = Some(connector(None));
        let e = Oidc::new(s).shared.fetch().await.unwrap_err();
        assert!(
            e.why.contains("TLS handshake failed") && !e.refused,
            "{e:?}"
        );
        let mut s = settings(&idp.url);
        s.tls = Some(connector(Some(&ca_file)));
        assert_eq!(Oidc::new(s).token().await.unwrap().value, "tok-tls");
        assert_eq!(idp.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_client_fails_at_once_with_the_endpoints_answer() {
        let idp = endpoint(vec![(
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
                .to_owned(),
        )])
        .await;
        let oidc = Oidc::new(settings(&idp.url));
        let e = tokio::time::timeout(Duration::from_secs(5), oidc.token())
            .await
            .expect("a refusal is not waited out")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTP 401"), "{e}");
        assert!(
            e.contains("invalid_client: Client authentication failed"),
            "{e}"
        );
        assert!(e.contains(&idp.url), "{e}");
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_tried_again_while_callers_wait_or_keep_the_held_token() {
        // The first fetch fails: the caller waits for the retry, not for an error.
        let idp = endpoint(vec![
            (503, "busy".to_owned()),
            granted("tok-1", 2),
            (500, r#"{"error":"server_error"}"#.to_owned()),
            (500, r#"{"error":"server_error"}"#.to_owned()),
            (500, r#"{"error":"server_error"}"#.to_owned()),
            granted("tok-2", 60),
        ])
        .await;
        let oidc = Oidc::new(settings(&idp.url));
        assert_eq!(oidc.token().await.unwrap().value, "tok-1");
        // tok-1 is refreshed after half its 2 s; three failures, then tok-2. Meanwhile the
        // held token is handed out, with what is left of its lifetime.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let held = oidc.token().await.unwrap();
        assert_eq!(held.value, "tok-1");
        assert!(held.lifetime.unwrap() < Duration::from_secs(1), "{held:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let t = oidc.token().await.unwrap();
            if t.value == "tok-2" {
                break;
            }
            assert!(Instant::now() < deadline, "tok-2 never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(idp.requests.lock().unwrap().len(), 6);
        let state = oidc.shared.lock();
        assert_eq!(state.warnings, 2, "one WARN per run of failures");
        assert_eq!(state.recoveries, 2, "each recovery at INFO");
    }

    #[test]
    fn a_token_is_renewed_at_its_share_of_life_while_a_session_started_on_it_can_be_renewed() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(3600), 0.8), s(2880));
        assert_eq!(renew_after(s(10), 0.8), s(8));
        assert_eq!(renew_after(s(5), 0.8), s(3));
        assert_eq!(renew_after(s(4), 0.85), s(2));
        assert_eq!(renew_after(s(3), 0.8), Duration::from_millis(1500));
        assert_eq!(renew_after(s(1), 0.8), Duration::from_millis(500));
    }

    #[test]
    fn a_failure_is_reported_with_its_cause_and_what_it_means_for_connections() {
        let r = failure_report("HTTP 503: busy", None);
        assert!(r.contains("gives no token: HTTP 503: busy"), "{r}");
        assert!(r.contains("sasl.login.retry.backoff.ms"), "{r}");
        assert!(
            r.ends_with("connections that need a token wait for one"),
            "{r}"
        );
        let r = failure_report("no answer", Some(Duration::from_millis(1500)));
        assert!(
            r.ends_with("the token held stays valid for 1500 ms more"),
            "{r}"
        );
        let r = failure_report("no answer", Some(Duration::ZERO));
        assert!(r.ends_with("wait for one"), "{r}");
    }

    #[tokio::test]
    async fn an_endpoint_that_cannot_be_reached_is_waited_for_not_failed() {
        // A port with nothing behind it.
        let url = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/token", l.local_addr().unwrap())
        };
        let oidc = Oidc::new(settings(&url));
        let waited = tokio::time::timeout(Duration::from_millis(500), oidc.token()).await;
        assert!(waited.is_err(), "still waiting: {waited:?}");
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2ln",
            BASE64_URL.encode(br#"{"alg":"RS256"}"#),
            BASE64_URL.encode(claims)
        )
    }

    #[test]
    fn the_lifetime_is_the_shorter_of_expires_in_and_the_exp_claim() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let token = jwt(r#"{"sub":"a","exp":1030}"#);
        let body = format!(r#"{{"access_token":"{token}","expires_in":60}}"#);
        let f = read_token(body.as_bytes(), now).unwrap();
        assert_eq!(
            (f.value.as_str(), f.lifetime),
            (token.as_str(), Duration::from_secs(30))
        );
        let body = format!(r#"{{"access_token":"{token}","expires_in":10}}"#);
        assert_eq!(
            read_token(body.as_bytes(), now).unwrap().lifetime,
            Duration::from_secs(10)
        );
        let body = format!(r#"{{"access_token":"{token}"}}"#);
        assert_eq!(
            read_token(body.as_bytes(), now).unwrap().lifetime,
            Duration::from_secs(30)
        );
        let opaque = r#"{"access_token":"opaque","expires_in":5,"token_type":"Bearer"}"#;
        assert_eq!(
            read_token(opaque.as_bytes(), now).unwrap().lifetime,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn answers_without_a_usable_token_say_why() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        for (body, why) in [
            ("<html>", "not JSON"),
            (r#"{"token_type":"Bearer"}"#, "no access_token"),
            (r#"{"access_token":"opaque"}"#, "no expires_in"),
            (
                r#"{"access_token":"opaque","expires_in":-1}"#,
                "no expires_in",
            ),
        ] {
            let e = read_token(body.as_bytes(), now).unwrap_err();
            assert!(e.contains(why), "{body}: {e}");
        }
        let expired = format!(r#"{{"access_token":"{}"}}"#, jwt(r#"{"exp":999}"#));
        let e = read_token(expired.as_bytes(), now).unwrap_err();
        assert!(e.contains("expired already"), "{e}");
    }

    #[test]
    fn error_answers_are_worded_from_their_fields() {
        assert_eq!(
            error_answer(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
            "invalid_client: bad secret"
        );
        assert_eq!(
            error_answer(br#"{"error":"invalid_scope"}"#),
            "invalid_scope"
        );
        assert_eq!(error_answer(b"  "), "(empty)");
        let long = "x".repeat(1000);
        assert_eq!(error_answer(long.as_bytes()).len(), 303);
    }
}
