//! SASL authentication of a connection (KIP-43, KIP-152) and its re-authentication (KIP-368).
//!
//! Each mechanism is a sans-IO state machine ([`SaslClient`]): given the server's message, it
//! answers the next client message or ends. The driver here carries those messages in
//! SaslHandshake and SaslAuthenticate requests over the connection's ordinary pipelined request
//! machinery, so timeouts, cancellation and poisoning are the same as for any request.
//!
//! The order on a new connection is TCP → TLS → ApiVersions → SaslHandshake →
//! SaslAuthenticate (as many rounds as the mechanism takes). ApiVersions goes first because a
//! Kafka broker answers it before authentication (KIP-511), and its answer says which
//! SaslHandshake and SaslAuthenticate versions to use.

pub(crate) mod assertion;
#[cfg(feature = "gssapi")]
mod gssapi;
#[cfg(feature = "aws-msk-iam")]
pub(crate) mod msk_iam;
pub(crate) mod oauthbearer;
pub(crate) mod oidc;
mod plain;
mod scram;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::versions::BrokerVersions;
use tokio::time::Instant;
use tracing::debug;

use crate::config::{PoolConfig, SaslMechanism};
use crate::connection::{Io, Lane};
use crate::error::{AuthError, Error, ILLEGAL_SASL_STATE, Peer, Result};
use kcon_core::ConfigError;
use oauthbearer::{OAuthBearerSent, TokenProvider};
use plain::PlainSent;
use scram::ScramClient;

/// One step of a mechanism's client: consumes the server's message, says what comes next.
pub(crate) trait SaslClient: Send {
    /// The server's message (SaslAuthenticate's `auth_bytes`) in, the next step out.
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure>;

    /// The server's refusal, when this state was reached by one (OAUTHBEARER's error
    /// document): added to the broker's error message.
    fn refusal(&self) -> Option<&str> {
        None
    }
}

/// What a mechanism does after a server message.
pub(crate) enum Reply {
    /// Send these bytes, then wait in the given state.
    Send(Vec<u8>, Box<dyn SaslClient>),
    /// Authenticated.
    Done,
}

/// Why a mechanism stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SaslFailure {
    /// The server refused, inside the mechanism (SCRAM's `e=`, OAUTHBEARER's error document).
    Refused(String),
    /// The server broke the mechanism's rules (malformed message, wrong signature).
    Protocol(String),
}

/// The SASL settings of a pool, ready to authenticate connections.
#[derive(Clone)]
pub(crate) struct Sasl {
    mechanism: SaslMechanism,
    credentials: Credentials,
}

#[derive(Clone)]
enum Credentials {
    Password {
        username: String,
        password: String,
    },
    Token(TokenProvider),
    #[cfg(feature = "gssapi")]
    Kerberos(std::sync::Arc<gssapi::Kerberos>),
}

/// An exchange ready to begin: the state after the first message, and that message.
pub(crate) struct Start {
    client: Box<dyn SaslClient>,
    first: Vec<u8>,
    /// OAUTHBEARER: how long the token stays valid.
    token_lifetime: Option<Duration>,
}

/// A finished authentication.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated {
    /// When to re-authenticate, if ever (KIP-368).
    pub(crate) reauthenticate_at: Option<Instant>,
}

/// The share of a session's lifetime after which the Java client re-authenticates: 85 %, plus
/// up to 10 % jitter so that connections made together do not re-authenticate together
/// (`SaslClientAuthenticator.ReauthInfo`).
const REAUTH_AT: f64 = 0.85;
const REAUTH_JITTER: f64 = 0.10;

impl Sasl {
    /// The SASL settings of `config`, if its `security.protocol` uses SASL. `validate` has
    /// checked that what the mechanism needs is there; an OAuth token endpoint's TLS settings
    /// are loaded here.
    pub(crate) fn from_config(config: &PoolConfig) -> Result<Option<Sasl>, ConfigError> {
        if !config.security_protocol.uses_sasl() {
            return Ok(None);
        }
        let Some(mechanism) = config.sasl_mechanism else {
            return Ok(None);
        };
        let credentials = match mechanism {
            SaslMechanism::OAuthBearer => match token_source(config)? {
                Some(provider) => Credentials::Token(provider),
                None => return Ok(None),
            },
            #[cfg(feature = "gssapi")]
            SaslMechanism::Gssapi => {
                Credentials::Kerberos(gssapi::Kerberos::from_config(&config.sasl_kerberos)?)
            }
            // `validate` refuses GSSAPI in a build without it.
            #[cfg(not(feature = "gssapi"))]
            SaslMechanism::Gssapi => return Ok(None),
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                match (&config.sasl_username, &config.sasl_password) {
                    (Some(username), Some(password)) => Credentials::Password {
                        username: username.clone(),
                        password: password.expose().to_owned(),
                    },
                    _ => return Ok(None),
                }
            }
        };
        Ok(Some(Sasl {
            mechanism,
            credentials,
        }))
    }

    /// The mechanism.
    pub(crate) fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// Prepares an exchange with `peer`: draws SCRAM's nonce, asks the application for a
    /// token, or gets Kerberos tickets for the broker's host. Done before anything is sent, so
    /// that a slow token provider or KDC holds up no request (a re-authentication pauses the
    /// connection only once the first message is ready).
    pub(crate) async fn start(&self, peer: &Peer) -> Result<Start, AuthError> {
        match (&self.credentials, self.mechanism) {
            #[cfg(feature = "gssapi")]
            (Credentials::Kerberos(kerberos), _) => {
                let host = crate::config::split_host_port(&peer.address)
                    .map_or(peer.address.as_str(), |(host, _)| host);
                let (client, first) = kerberos.start(host).await?;
                Ok(Start::new(client, first, None))
            }
            (Credentials::Password { username, password }, SaslMechanism::Plain) => {
                let (client, first) = PlainSent::start(username, password);
                Ok(Start::new(Box::new(client), first, None))
            }
            (Credentials::Password { username, password }, SaslMechanism::ScramSha256) => {
                let (client, first) =
                    ScramClient::<sha2::Sha256>::start(username, password, nonce()?);
                Ok(Start::new(Box::new(client), first, None))
            }
            (Credentials::Password { username, password }, SaslMechanism::ScramSha512) => {
                let (client, first) =
                    ScramClient::<sha2::Sha512>::start(username, password, nonce()?);
                Ok(Start::new(Box::new(client), first, None))
            }
            (Credentials::Token(provider), _) => {
                let token = provider
                    .token()
                    .await
                    .map_err(|e| AuthError::TokenProvider(e.to_string()))?;
                let first = token.initial_response().map_err(AuthError::TokenProvider)?;
                Ok(Start::new(Box::new(OAuthBearerSent), first, token.lifetime))
            }
            (Credentials::Password { .. }, SaslMechanism::OAuthBearer) => {
                // `from_config` pairs OAUTHBEARER with a token provider only.
                Err(AuthError::TokenProvider(
                    "no token provider for OAUTHBEARER".to_owned(),
                ))
            }
            (Credentials::Password { .. }, SaslMechanism::Gssapi) => {
                // `from_config` pairs GSSAPI with Kerberos settings only.
                Err(AuthError::Kerberos(format!(
                    "no Kerberos settings for {}",
                    peer.address
                )))
            }
        }
    }

    /// Runs the exchange prepared by [`start`](Sasl::start) on `io`: SaslHandshake, then
    /// SaslAuthenticate rounds until the mechanism is done. `lane` is [`Lane::Auth`] for a
    /// re-authentication, which runs while other requests wait.
    ///
    /// A refusal is [`Error::Authentication`], which is not retriable: the same credentials
    /// would be refused again, and retrying only locks accounts and floods the broker's log.
    pub(crate) async fn run(
        &self,
        io: &Io,
        versions: &BrokerVersions,
        start: Start,
        lane: Lane,
    ) -> Result<Authenticated> {
        let peer = io.peer();
        let fail = |kind: AuthError| Error::Authentication {
            peer: peer.clone(),
            mechanism: self.mechanism,
            kind,
        };
        let version_of = |api| {
            versions
                .version(api)
                .map_err(|e| Error::from_request_codec(peer, e))
        };
        // KIP-152: SaslAuthenticate carries the tokens in Kafka frames. Brokers before 1.0
        // lack it and want raw tokens after SaslHandshake v0; kcon does not speak that.
        let authenticate_version = version_of(ApiKey::SaslAuthenticate)?;
        let handshake_version = version_of(ApiKey::SaslHandshake)?;

        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.mechanism.name()));
        let frame = io
            .exchange(&handshake, handshake_version, io.request_timeout(), lane)
            .await?;
        let answer = io.decode::<SaslHandshakeRequest>(frame, handshake_version)?;
        match answer.error_code {
            0 => {}
            UNSUPPORTED_SASL_MECHANISM => {
                return Err(fail(AuthError::MechanismNotEnabled {
                    enabled: answer.mechanisms.iter().map(|m| m.to_string()).collect(),
                }));
            }
            // On a connection that authenticated, the listener does take SASL: the broker
            // refused to start a re-authentication.
            ILLEGAL_SASL_STATE if lane == Lane::Auth => {
                return Err(fail(AuthError::Protocol(
                    "the broker refused to start a re-authentication (ILLEGAL_SASL_STATE): \
                     Kafka takes at most one a second on a connection"
                        .to_owned(),
                )));
            }
            ILLEGAL_SASL_STATE => {
                return Err(fail(AuthError::NotSaslListener { tls: io.is_tls() }));
            }
            error_code => {
                return Err(fail(AuthError::Refused {
                    error_code: Some(error_code),
                    message: None,
                }));
            }
        }

        let Start {
            mut client,
            first,
            token_lifetime,
        } = start;
        let mut message = first;
        loop {
            // The broker starts the session's clock when it has checked the last message, so
            // counting from before it is sent errs on the early side.
            let sent_at = Instant::now();
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
            let frame = io
                .exchange(&request, authenticate_version, io.request_timeout(), lane)
                .await?;
            let answer = io.decode::<SaslAuthenticateRequest>(frame, authenticate_version)?;
            if answer.error_code != 0 {
                let broker = answer.error_message.as_deref().map(str::to_owned);
                let message = match (broker, client.refusal()) {
                    // Kafka's message for a refused token is its error document itself.
                    (Some(b), Some(detail)) if b == detail => Some(b),
                    (Some(b), Some(detail)) => Some(format!("{b} ({detail})")),
                    (b, detail) => b.or(detail.map(str::to_owned)),
                };
                return Err(fail(AuthError::Refused {
                    error_code: Some(answer.error_code),
                    message,
                }));
            }
            match client.receive(&answer.auth_bytes) {
                Ok(Reply::Send(next_message, next)) => {
                    message = next_message;
                    client = next;
                }
                Ok(Reply::Done) => {
                    let lifetime = (answer.session_lifetime_ms > 0)
                        .then(|| Duration::from_millis(answer.session_lifetime_ms as u64));
                    debug!(
                        %peer,
                        mechanism = self.mechanism.name(),
                        session_lifetime_ms = answer.session_lifetime_ms,
                        "authenticated"
                    );
                    return Ok(Authenticated {
                        reauthenticate_at: reauthenticate_at(
                            sent_at,
                            authenticate_version,
                            lifetime,
                            token_lifetime,
                            fastrand::f64(),
                            lane == Lane::Auth,
                        ),
                    });
                }
                Err(SaslFailure::Refused(message)) => {
                    return Err(fail(AuthError::Refused {
                        error_code: None,
                        message: Some(message),
                    }));
                }
                Err(SaslFailure::Protocol(what)) => return Err(fail(AuthError::Protocol(what))),
            }
        }
    }
}

/// Where OAUTHBEARER's tokens come from: the one source `validate` found set.
fn token_source(config: &PoolConfig) -> Result<Option<TokenProvider>, ConfigError> {
    if let Some(provider) = &config.sasl_oauthbearer_token_provider {
        return Ok(Some(provider.clone()));
    }
    if config.sasl_oauthbearer_oidc.method == Some(crate::config::OAuthBearerMethod::AwsMskIam) {
        // `validate` refuses aws_msk_iam in a build without it.
        #[cfg(feature = "aws-msk-iam")]
        return Ok(Some(TokenProvider::new(msk_iam::MskIam::new(
            msk_iam::MskIamSettings {
                region: config.sasl_aws.region.clone().or_else(|| {
                    msk_iam::region_from_hosts(
                        config.bootstrap_servers.iter().map(|s| {
                            crate::config::split_host_port(s).map_or(s.as_str(), |(h, _)| h)
                        }),
                    )
                }),
                profile: config.sasl_aws.profile.clone(),
                role_arn: config.sasl_aws.role_arn.clone(),
                role_session_name: config.sasl_aws.role_session_name.clone(),
            },
        ))));
        #[cfg(not(feature = "aws-msk-iam"))]
        return Ok(None);
    }
    if config.sasl_oauthbearer_oidc.selected() {
        return config.sasl_oauthbearer_oidc.provider().map(Some);
    }
    if let Some(path) = &config.sasl_oauthbearer_token_file {
        return Ok(Some(TokenProvider::file(path.clone())));
    }
    Ok(config
        .sasl_oauthbearer_config
        .clone()
        .filter(|_| config.enable_sasl_oauthbearer_unsecure_jwt)
        .map(TokenProvider::unsecured))
}

impl Start {
    fn new(client: Box<dyn SaslClient>, first: Vec<u8>, token_lifetime: Option<Duration>) -> Start {
        Start {
            client,
            first,
            token_lifetime,
        }
    }
}

/// SaslHandshake's error code when the broker does not enable the mechanism; the answer lists
/// those it does.
const UNSUPPORTED_SASL_MECHANISM: i16 =
    kcon_codec::kafka_protocol::ResponseError::UnsupportedSaslMechanism.code();

/// Kafka's brokers refuse a re-authentication that starts within a second of the last one on
/// the same connection (`KafkaChannel`'s minimum interval; the broker answers the
/// SaslHandshake with ILLEGAL_SASL_STATE).
const REAUTH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// When to re-authenticate: 85–95 % (`jitter` ∈ [0, 1) picks where) into the shorter of the
/// session lifetime the broker gave and the token's lifetime, counted from `sent_at`; after a
/// re-authentication (`reauthenticated`), not within [`REAUTH_AT_MOST_EVERY`] of it (a
/// session shorter than that ends before it can be renewed: the broker closes the connection,
/// and the pool makes a new one). The broker counts only re-authentications, so the first
/// may come as soon as the first session says. Never when the broker lacks SaslAuthenticate
/// v1, which KIP-368 needs (and such a broker does not expire sessions either).
fn reauthenticate_at(
    sent_at: Instant,
    authenticate_version: i16,
    session_lifetime: Option<Duration>,
    token_lifetime: Option<Duration>,
    jitter: f64,
    reauthenticated: bool,
) -> Option<Instant> {
    if authenticate_version < 1 {
        return None;
    }
    let lifetime = match (session_lifetime, token_lifetime) {
        (Some(s), Some(t)) => s.min(t),
        (s, t) => s.or(t)?,
    };
    let mut share = lifetime.mul_f64(REAUTH_AT + REAUTH_JITTER * jitter);
    if reauthenticated {
        share = share.max(REAUTH_AT_MOST_EVERY);
    }
    Some(sent_at + share)
}

/// Bytes of randomness in a SCRAM nonce: 192 bits, well above the 130 of the Java client's
/// (`ScramFormatter.secureRandomString`).
const NONCE_BYTES: usize = 24;

/// A fresh SCRAM client nonce from the OS CSPRNG, in base64: printable, and never `,`
/// (RFC 5802 §5.1).
fn nonce() -> Result<String, AuthError> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| AuthError::Protocol(format!("no randomness for the SCRAM nonce: {e}")))?;
    Ok(BASE64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reauthentication_comes_at_85_to_95_percent_of_the_shorter_lifetime() {
        let t0 = Instant::now();
        let s = Duration::from_secs(100);
        let at = |v, s, t, j| reauthenticate_at(t0, v, s, t, j, false).map(|at| at - t0);
        assert_eq!(at(1, Some(s), None, 0.0), Some(Duration::from_secs(85)));
        assert_eq!(at(2, Some(s), None, 0.5), Some(Duration::from_secs(90)));
        assert_eq!(
            at(1, Some(s), Some(Duration::from_secs(10)), 0.0),
            Some(Duration::from_millis(8_500))
        );
        assert_eq!(
            at(1, None, Some(Duration::from_secs(10)), 0.0),
            Some(Duration::from_millis(8_500))
        );
        assert_eq!(at(1, None, None, 0.0), None);
        // Never within a second of the last re-authentication: Kafka would refuse it. After
        // the first login, as soon as the session says.
        let short = Some(Duration::from_millis(900));
        assert_eq!(
            reauthenticate_at(t0, 1, short, None, 0.0, true).map(|at| at - t0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(at(1, short, None, 0.0), Some(Duration::from_millis(765)));
        // KIP-368 needs SaslAuthenticate v1.
        assert_eq!(at(0, Some(s), None, 0.0), None);
    }

    #[test]
    fn nonces_are_fresh_and_comma_free() {
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(!a.contains(','));
    }
}
