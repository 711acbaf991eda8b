//! SASL against a scripted peer: PLAIN and OAUTHBEARER, which Tansu does not offer, checked
//! byte for byte; refusals; and re-authentication before the session expires (KIP-368) while
//! requests are in flight. (SCRAM runs against Tansu, in the workspace's `tests/`.)
//!
//! Re-authentication tests run on the real clock with lifetimes of a few hundred milliseconds:
//! with the clock paused, a park during socket IO can let it jump to an unrelated timer (see
//! `connection.rs`), and here the exchange itself is socket IO.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{
    AuthError, BrokerTarget, Connection, Error, OAuthBearerToken, OAuthBearerTokenProvider, Peer,
    Pool, PoolConfig, SaslMechanism, TlsError, TokenFuture, TokenProvider,
};
use tokio::time::Instant;

use crate::support::*;

/// A SASL_PLAINTEXT config for `mechanism` with user `alice`, password `secret`.
fn sasl_config(mechanism: &str) -> PoolConfig {
    let mut c = config(&[]);
    c.set("security.protocol", "SASL_PLAINTEXT").unwrap();
    c.set("sasl.mechanism", mechanism).unwrap();
    if mechanism != "OAUTHBEARER" {
        c.set("sasl.username", "alice").unwrap();
        c.set("sasl.password", "secret").unwrap();
    }
    c
}

/// Tokens `token-1`, `token-2`, ... with a `traceId` extension `t1`, `t2`, ...; or an error.
struct Tokens {
    issued: AtomicUsize,
    lifetime: Option<Duration>,
    fail: bool,
}

impl OAuthBearerTokenProvider for Tokens {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            if self.fail {
                return Err("the identity provider is down".into());
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(OAuthBearerToken::new(format!("token-{n}"), self.lifetime)
                .with_extension("traceId", format!("t{n}")))
        })
    }
}

fn oauth_config(lifetime: Option<Duration>, fail: bool) -> PoolConfig {
    let mut c = sasl_config("OAUTHBEARER");
    c.sasl_oauthbearer_token_provider = Some(TokenProvider::new(Tokens {
        issued: AtomicUsize::new(0),
        lifetime,
        fail,
    }));
    c
}

/// What the client must send for token `n` of [`Tokens`] (RFC 7628 §3.1).
fn oauth_initial_response(n: usize) -> Vec<u8> {
    format!("n,,\x01auth=Bearer token-{n}\x01traceId=t{n}\x01\x01").into_bytes()
}

/// Reads a SaslHandshake v1 for `mechanism` and accepts it.
async fn expect_handshake(p: &mut PeerConn, mechanism: &str) -> Received {
    let r = p.recv().await.expect("SaslHandshake");
    assert_eq!(r.api_key(), ApiKey::SaslHandshake as i16, "{:?}", r.header);
    assert_eq!(r.version(), 1);
    assert_eq!(&*r.decode::<SaslHandshakeRequest>().mechanism, mechanism);
    reply_handshake(p, &r).await;
    r
}

async fn reply_handshake(p: &mut PeerConn, r: &Received) {
    let mechanisms = vec![
        StrBytes::from_static_str("PLAIN"),
        StrBytes::from_static_str("OAUTHBEARER"),
    ];
    p.reply::<SaslHandshakeRequest>(
        r,
        &SaslHandshakeResponse::default().with_mechanisms(mechanisms),
    )
    .await;
}

/// Reads a SaslAuthenticate (v2, the highest both speak) and checks its bytes.
async fn expect_authenticate(p: &mut PeerConn, auth_bytes: &[u8]) -> Received {
    let r = p.recv().await.expect("SaslAuthenticate");
    assert_eq!(
        r.api_key(),
        ApiKey::SaslAuthenticate as i16,
        "{:?}",
        r.header
    );
    assert_eq!(r.version(), 2);
    let got = r.decode::<SaslAuthenticateRequest>().auth_bytes;
    assert_eq!(got, auth_bytes, "sent {:?}", String::from_utf8_lossy(&got));
    r
}

/// Accepts an authentication, giving the session `lifetime_ms` (0: no expiry).
async fn accept(p: &mut PeerConn, r: &Received, lifetime_ms: i64) {
    p.reply::<SaslAuthenticateRequest>(
        r,
        &SaslAuthenticateResponse::default().with_session_lifetime_ms(lifetime_ms),
    )
    .await;
}

fn refusal(message: &str) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(58)
        .with_error_message(Some(StrBytes::from_string(message.to_owned())))
}

/// Connects with `c` while the peer runs `script` after the ApiVersions handshake.
async fn connect_scripted<F>(
    l: &Listener,
    c: &PoolConfig,
    script: impl FnOnce(PeerConn) -> F,
) -> (kcon_pool::Result<Connection>, PeerConn)
where
    F: Future<Output = PeerConn>,
{
    let peer_side = async {
        let mut p = l.accept().await;
        p.handshake().await;
        script(p).await
    };
    tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, c),
        peer_side
    )
}

/// Checks that a heartbeat goes through: the connection is authenticated and usable.
async fn assert_usable(conn: &Connection, p: &mut PeerConn, n: i32) {
    let request = heartbeat(n);
    let (answer, _) = tokio::join!(conn.send(&request), async {
        let r = p.recv().await.unwrap();
        p.echo(&r).await;
    });
    assert_eq!(answer.unwrap().throttle_time_ms, n);
}

/// A connection logged in with PLAIN as alice, its session `session_lifetime_ms` long (0:
/// none), and the peer's end of it.
async fn plain_login(l: &Listener, session_lifetime_ms: i64) -> (Connection, PeerConn) {
    let (conn, p) = connect_scripted(l, &sasl_config("PLAIN"), async |mut p| {
        expect_handshake(&mut p, "PLAIN").await;
        let r = expect_authenticate(&mut p, b"\0alice\0secret").await;
        accept(&mut p, &r, session_lifetime_ms).await;
        p
    })
    .await;
    (conn.unwrap(), p)
}

#[tokio::test]
async fn plain_sends_an_empty_authzid_the_user_and_the_password() {
    let l = Listener::bind().await;
    let (conn, mut p) = plain_login(&l, 0).await;
    assert_usable(&conn, &mut p, 1).await;
}

#[tokio::test]
async fn a_refused_password_is_a_fatal_error_with_the_brokers_message() {
    let l = Listener::bind().await;
    let (conn, _p) = connect_scripted(&l, &sasl_config("PLAIN"), async |mut p| {
        expect_handshake(&mut p, "PLAIN").await;
        let r = expect_authenticate(&mut p, b"\0alice\0secret").await;
        p.reply::<SaslAuthenticateRequest>(
            &r,
            &refusal("Authentication failed: Invalid username or password"),
        )
        .await;
        p
    })
    .await;
    let e = conn.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Authentication {
                mechanism: SaslMechanism::Plain,
                kind: AuthError::Refused {
                    error_code: Some(58),
                    message: Some(m),
                },
                ..
            } if m == "Authentication failed: Invalid username or password"
        ),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    let shown = e.to_string();
    assert!(
        shown.contains("SASL PLAIN authentication failed")
            && shown.contains("SASL_AUTHENTICATION_FAILED (58)")
            && shown.contains("Invalid username or password"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test]
async fn the_pool_hands_a_refused_authentication_to_the_caller_without_retrying() {
    let broker = Broker::start(Arc::new(|r: &Received| {
        match ApiKey::try_from(r.api_key()) {
            Ok(ApiKey::SaslHandshake) => r.answer::<SaslHandshakeRequest>(
                &SaslHandshakeResponse::default()
                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]),
            ),
            Ok(ApiKey::SaslAuthenticate) => {
                r.answer::<SaslAuthenticateRequest>(&refusal("Invalid username or password"))
            }
            _ => Answer::Silent,
        }
    }))
    .await;
    let mut c = sasl_config("PLAIN");
    c.bootstrap_servers = vec![broker.address()];
    let pool = Pool::new(c).unwrap();
    for attempt in 1..=2 {
        let e = pool
            .send(BrokerTarget::Any, &MetadataRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Authentication { .. }), "{e:?}");
        assert!(!e.is_retriable());
        // One connection, one authentication, per call: nothing is retried behind the
        // caller's back.
        assert_eq!(broker.stats.accepted(), attempt);
        assert_eq!(broker.stats.count(ApiKey::SaslAuthenticate), attempt);
        assert_eq!(broker.stats.count(ApiKey::Metadata), 0);
    }
}

#[tokio::test]
async fn a_mechanism_the_broker_does_not_enable_names_those_it_does() {
    let l = Listener::bind().await;
    let (conn, _p) = connect_scripted(&l, &sasl_config("SCRAM-SHA-256"), async |mut p| {
        let r = p.recv().await.unwrap();
        p.reply::<SaslHandshakeRequest>(
            &r,
            &SaslHandshakeResponse::default()
                .with_error_code(33)
                .with_mechanisms(vec![
                    StrBytes::from_static_str("PLAIN"),
                    StrBytes::from_static_str("SCRAM-SHA-512"),
                ]),
        )
        .await;
        p
    })
    .await;
    let e = conn.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Authentication {
                kind: AuthError::MechanismNotEnabled { enabled },
                ..
            } if enabled == &["PLAIN", "SCRAM-SHA-512"]
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("the broker does not enable it; it enables [PLAIN, SCRAM-SHA-512]"),
        "{e}"
    );
}

#[tokio::test]
async fn a_broker_without_sasl_authenticate_is_refused_as_unsupported() {
    // Kafka before 1.0: SaslHandshake v0 and raw tokens (KIP-152), which kcon does not speak.
    let ranges: Vec<_> = kcon_versions()
        .into_iter()
        .filter(|&(k, ..)| k != ApiKey::SaslAuthenticate as i16)
        .collect();
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        p.handshake_with(&ranges).await;
        p
    };
    let c = sasl_config("PLAIN");
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let e = conn.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unsupported {
                api_key: 36,
                theirs: None,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn sasl_authenticate_v0_works_and_never_reauthenticates() {
    let ranges: Vec<_> = kcon_versions()
        .into_iter()
        .map(|(k, min, max)| {
            if k == ApiKey::SaslAuthenticate as i16 {
                (k, 0, 0)
            } else {
                (k, min, max)
            }
        })
        .collect();
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        p.handshake_with(&ranges).await;
        expect_handshake(&mut p, "PLAIN").await;
        let r = p.recv().await.unwrap();
        assert_eq!((r.api_key(), r.version()), (36, 0));
        // v0 has no session lifetime: whatever the broker meant, there is no re-authentication.
        accept(&mut p, &r, 0).await;
        p
    };
    let c = sasl_config("PLAIN");
    let (conn, mut p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let conn = conn.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_usable(&conn, &mut p, 7).await;
}

#[tokio::test]
async fn oauthbearer_reauthenticates_before_the_session_expires_without_breaking_requests() {
    let lifetime = Duration::from_millis(600);
    let l = Listener::bind().await;
    let mut authenticated_at = None;
    let (conn, mut p) = connect_scripted(&l, &oauth_config(None, false), async |mut p| {
        expect_handshake(&mut p, "OAUTHBEARER").await;
        let r = expect_authenticate(&mut p, &oauth_initial_response(1)).await;
        authenticated_at = Some(Instant::now());
        accept(&mut p, &r, lifetime.as_millis() as i64).await;
        p
    })
    .await;
    let conn = conn.unwrap();
    let authenticated_at = authenticated_at.unwrap();

    // A request on the wire, which the peer holds across the re-authentication.
    let first = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(&heartbeat(1)).await }
    });
    let r1 = p.recv().await.unwrap();
    assert_eq!(r1.heartbeat_number(), 1);

    // KIP-368, as the Java client: at 85 to 95 % of the lifetime (plus scheduling slack).
    let handshake = p
        .recv()
        .await
        .expect("the re-authentication's SaslHandshake");
    let after = authenticated_at.elapsed();
    assert_eq!(handshake.api_key(), ApiKey::SaslHandshake as i16);
    assert!(
        after >= lifetime.mul_f64(0.84)
            && after <= lifetime.mul_f64(0.95) + Duration::from_millis(150),
        "re-authenticated after {after:?} of a {lifetime:?} session"
    );

    // A request made now must wait: nothing may come between the SaslHandshake and the last
    // SaslAuthenticate.
    let second = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(&heartbeat(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        conn.in_flight(),
        2,
        "the held heartbeat and the SaslHandshake only"
    );
    // The request in flight before the pause is answered during it.
    p.echo(&r1).await;
    assert_eq!(first.await.unwrap().unwrap().throttle_time_ms, 1);
    reply_handshake(&mut p, &handshake).await;
    // With a fresh token from the provider.
    let r = expect_authenticate(&mut p, &oauth_initial_response(2)).await;
    accept(&mut p, &r, 0).await;
    // Resumed: the waiting request goes out now.
    let r2 = p.recv().await.unwrap();
    assert_eq!(r2.heartbeat_number(), 2);
    p.echo(&r2).await;
    assert_eq!(second.await.unwrap().unwrap().throttle_time_ms, 2);
    assert!(!conn.is_closed());
}

#[tokio::test]
async fn the_token_lifetime_drives_reauthentication_when_the_broker_sets_none() {
    let token_lifetime = Duration::from_millis(400);
    let l = Listener::bind().await;
    let mut authenticated_at = None;
    let (conn, mut p) = connect_scripted(
        &l,
        &oauth_config(Some(token_lifetime), false),
        async |mut p| {
            expect_handshake(&mut p, "OAUTHBEARER").await;
            let r = expect_authenticate(&mut p, &oauth_initial_response(1)).await;
            authenticated_at = Some(Instant::now());
            // No session lifetime from the broker (connections.max.reauth.ms unset).
            accept(&mut p, &r, 0).await;
            p
        },
    )
    .await;
    let conn = conn.unwrap();
    let handshake = p.recv().await.unwrap();
    let after = authenticated_at.unwrap().elapsed();
    assert_eq!(handshake.api_key(), ApiKey::SaslHandshake as i16);
    assert!(
        after >= token_lifetime.mul_f64(0.84)
            && after <= token_lifetime.mul_f64(0.95) + Duration::from_millis(150),
        "re-authenticated after {after:?} of a {token_lifetime:?} token"
    );
    reply_handshake(&mut p, &handshake).await;
    let r = expect_authenticate(&mut p, &oauth_initial_response(2)).await;
    accept(&mut p, &r, 0).await;
    // And again, before the second token expires.
    let handshake = p.recv().await.unwrap();
    assert_eq!(handshake.api_key(), ApiKey::SaslHandshake as i16);
    reply_handshake(&mut p, &handshake).await;
    let r = expect_authenticate(&mut p, &oauth_initial_response(3)).await;
    accept(&mut p, &r, 0).await;
    assert_usable(&conn, &mut p, 3).await;
}

#[tokio::test]
async fn a_refused_reauthentication_closes_the_connection_with_the_refusal() {
    let l = Listener::bind().await;
    let (conn, mut p) = plain_login(&l, 300).await;
    expect_handshake(&mut p, "PLAIN").await;
    // A request made during the re-authentication waits, then gets its failure.
    let waiting = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(&heartbeat(1)).await }
    });
    let r = expect_authenticate(&mut p, b"\0alice\0secret").await;
    p.reply::<SaslAuthenticateRequest>(&r, &refusal("password changed"))
        .await;
    let e = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Authentication {
                kind: AuthError::Refused { message: Some(m), .. },
                ..
            } if m == "password changed"
        ),
        "{e:?}"
    );
    assert!(conn.is_closed());
    // The heartbeat never reached the broker.
    p.expect_closed().await;
}

/// Kafka answers a re-authentication that starts within a second of the last one with
/// ILLEGAL_SASL_STATE: on a connection that authenticated, that is what it means, not a
/// listener without SASL.
#[tokio::test]
async fn a_reauthentication_the_broker_will_not_start_is_worded_as_such() {
    let l = Listener::bind().await;
    let (conn, mut p) = plain_login(&l, 300).await;
    let r = p
        .recv()
        .await
        .expect("the re-authentication's SaslHandshake");
    assert_eq!(r.api_key(), ApiKey::SaslHandshake as i16);
    p.reply::<SaslHandshakeRequest>(&r, &SaslHandshakeResponse::default().with_error_code(34))
        .await;
    let waiting = conn.send(&heartbeat(1)).await.unwrap_err();
    let Error::Authentication {
        kind: AuthError::Protocol(why),
        ..
    } = &waiting
    else {
        panic!("{waiting:?}");
    };
    assert!(
        why.contains("refused to start a re-authentication"),
        "{why}"
    );
    assert!(why.contains("one a second"), "{why}");
    assert!(
        !waiting.to_string().contains("does not take SASL"),
        "{waiting}"
    );
}

#[tokio::test]
async fn an_oauthbearer_error_document_is_answered_and_reported() {
    let l = Listener::bind().await;
    let document = r#"{"status":"invalid_token","scope":"kafka"}"#;
    let (conn, _p) = connect_scripted(&l, &oauth_config(None, false), async |mut p| {
        expect_handshake(&mut p, "OAUTHBEARER").await;
        let r = expect_authenticate(&mut p, &oauth_initial_response(1)).await;
        // RFC 7628 §3.2.2: the server's error, as a challenge...
        p.reply::<SaslAuthenticateRequest>(
            &r,
            &SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(document)),
        )
        .await;
        // ...which the client answers with a single %x01, then the server fails.
        let r = expect_authenticate(&mut p, b"\x01").await;
        p.reply::<SaslAuthenticateRequest>(&r, &refusal("Authentication failed"))
            .await;
        p
    })
    .await;
    let e = conn.unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.contains("Authentication failed") && shown.contains("invalid_token"),
        "{shown}"
    );
    assert!(!e.is_retriable());
}

#[tokio::test]
async fn a_token_provider_failure_is_an_authentication_error() {
    let l = Listener::bind().await;
    let c = oauth_config(None, true);
    let (conn, _l) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        async {
            let mut p = l.accept().await;
            p.handshake().await;
            p
        }
    );
    let e = conn.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Authentication {
                kind: AuthError::TokenProvider(why),
                ..
            } if why == "the identity provider is down"
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_tls_answer_to_a_plaintext_request_says_the_listener_wants_tls() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let _ = p.recv().await;
        // A TLS alert record (protocol_version), as a TLS listener may answer a non-TLS hello.
        p.send_raw(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])
            .await;
        p
    };
    let c = config(&[]);
    let (conn, _p) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let e = conn.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Tls {
                kind: TlsError::UnexpectedTls,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("security.protocol SSL or SASL_SSL"),
        "{e}"
    );
}

#[tokio::test]
async fn a_listener_that_closes_after_api_versions_gets_a_hint() {
    let l = Listener::bind().await;
    let peer_side = async {
        let mut p = l.accept().await;
        let _ = p.recv().await;
        drop(p);
    };
    let c = config(&[]);
    let (conn, ()) = tokio::join!(
        Connection::connect_addr(Peer::bootstrap(l.address()), l.addr, &c),
        peer_side
    );
    let e = conn.unwrap_err();
    assert!(
        e.to_string().contains(
            "closed the connection during the ApiVersions request: a TLS listener does that"
        ),
        "{e}"
    );
}
