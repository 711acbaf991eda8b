//! The one error type of kcon-pool, and who caused it.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use kcon_codec::error::api_name;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;

use kcon_core::error_codes::error_name;
use kcon_core::{Cause, ConfigError, Outcome, RequestFailure};

use crate::config::SaslMechanism;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kcon-pool, grouped by who caused it.
///
/// It is `Clone` because one failure can have many receivers: when a connection dies, every
/// request waiting on it gets the error that killed it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The network or the connection failed: a connect refused or reset, a closed socket, a
    /// timeout. A retry, on a fresh connection, can help.
    Transport {
        /// The broker at the other end.
        peer: Peer,
        /// What happened.
        kind: TransportError,
    },
    /// The broker sent bytes that are not a valid answer (a frame of impossible size, a response
    /// that does not decode, an answer to no request). The connection is closed: nothing after
    /// the bad bytes can be trusted.
    Corrupt {
        /// The broker that sent them.
        peer: Peer,
        /// What was wrong.
        kind: Corruption,
    },
    /// The broker does not offer an API, or no version of it that kcon speaks.
    Unsupported {
        /// The broker.
        peer: Peer,
        /// The API key.
        api_key: i16,
        /// The versions kcon speaks, `(min, max)`.
        ours: (i16, i16),
        /// The versions the broker offers, `(min, max)`; `None` when it does not offer the API.
        theirs: Option<(i16, i16)>,
    },
    /// The broker answered a request that kcon-pool makes itself (the ApiVersions handshake)
    /// with an error code.
    Broker {
        /// The broker.
        peer: Peer,
        /// The API key of the request it answered.
        api_key: i16,
        /// The Kafka error code.
        error_code: i16,
    },
    /// The TLS handshake failed, or TLS was met where it was not expected: the broker's
    /// certificate, the client's, or the two ends' `security.protocol` disagree.
    Tls {
        /// The broker.
        peer: Peer,
        /// What went wrong.
        kind: TlsError,
    },
    /// SASL authentication failed. Not retriable: the same credentials would be refused again,
    /// and retrying would only lock accounts and flood the broker's log, so the pool hands it
    /// to the caller instead of reconnecting.
    Authentication {
        /// The broker.
        peer: Peer,
        /// The mechanism tried.
        mechanism: SaslMechanism,
        /// Why it failed.
        kind: AuthError,
    },
    /// A Metadata answer named no brokers: a broker starting up or in trouble. The answer is
    /// ignored and counted as a failed refresh, as the Java client does; the refresh is tried
    /// again after its backoff.
    NoBrokers {
        /// The broker that answered.
        peer: Peer,
    },
    /// The cluster answering is not the one this client worked with: its cluster id changed
    /// (`bootstrap.servers`, a DNS name or a proxy now leads to another cluster). Not
    /// retriable: the pool sends nothing more, so that no group commits to a cluster it did
    /// not belong to.
    ClusterChanged {
        /// The broker that answered with the other cluster's id.
        peer: Peer,
        /// The cluster id the client knew.
        known: String,
        /// The cluster id now answering.
        found: String,
    },
    /// No broker with this id is in the metadata, even after a refresh.
    UnknownBroker {
        /// The broker id asked for.
        id: i32,
    },
    /// The caller asked for something kcon cannot do.
    Misuse(Misuse),
    /// A configuration value is invalid.
    Config(ConfigError),
    /// The task doing the work was stopped before it answered: the Tokio runtime is shutting
    /// down.
    Stopped,
}

impl Error {
    /// Who caused it: the one projection of a request's failure, kcon-core's [`Cause`], which
    /// every facade above the pool (the consumer's, the producer's, the admin calls', the
    /// tool's) returns as it is, so the same failure reads the same whichever part met it.
    pub fn cause(&self) -> Cause {
        match self {
            Error::Transport { .. } | Error::Tls { .. } | Error::UnknownBroker { .. } => {
                Cause::Transport
            }
            Error::Corrupt { .. } => Cause::Corrupt,
            Error::Unsupported { .. } => Cause::Unsupported,
            Error::Broker { .. } | Error::NoBrokers { .. } => Cause::Broker,
            // The client was pointed at another cluster: the configuration's (or the DNS's
            // behind it) to fix.
            Error::ClusterChanged { .. } => Cause::Config,
            Error::Authentication { .. } => Cause::Authentication,
            Error::Misuse(_) => Cause::Misuse,
            Error::Config(_) => Cause::Config,
            // The runtime is shutting down: the client's tasks are gone with it.
            Error::Stopped => Cause::Closed,
        }
    }

    /// Whether the same request can succeed if tried again (after a backoff, maybe on another
    /// connection or after a metadata refresh).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::UnknownBroker { .. } | Error::NoBrokers { .. } => true,
            Error::Tls { kind, .. } => kind.is_retriable(),
            Error::Broker { error_code, .. } => {
                ResponseError::try_from_code(*error_code).is_some_and(|e| e.is_retriable())
            }
            // Corrupt data comes from a broken (or hostile) broker: the same request is likely
            // to get the same answer. Versions, misuse and configuration do not change by
            // themselves.
            Error::Corrupt { .. }
            | Error::Unsupported { .. }
            | Error::Misuse(_)
            | Error::Config(_)
            | Error::Authentication { .. }
            | Error::ClusterChanged { .. }
            | Error::Stopped => false,
        }
    }

    /// What the caller does next: [`Outcome::Retry`] when
    /// [`is_retriable`](Error::is_retriable), [`Outcome::Closed`] when the runtime is shutting
    /// down, [`Outcome::Close`] when the pool sends nothing more (the cluster changed), else
    /// [`Outcome::Fix`].
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Stopped => Outcome::Closed,
            Error::ClusterChanged { .. } => Outcome::Close,
            e if e.is_retriable() => Outcome::Retry,
            _ => Outcome::Fix,
        }
    }

    /// One error of each cause the pool meets, for the tests of the errors built on this one
    /// (the consumer's and the producer's), which check that they carry its cause and outcome
    /// over: this crate's tests say what each of these answers.
    #[doc(hidden)]
    pub fn examples() -> Vec<Error> {
        let peer = Peer::broker(1, "kafka-1:9092");
        let broker = |api: ApiKey, code: ResponseError| Error::Broker {
            peer: peer.clone(),
            api_key: api as i16,
            error_code: code.code(),
        };
        vec![
            Error::UnknownBroker { id: 3 },
            Error::Unsupported {
                peer: peer.clone(),
                api_key: ApiKey::OffsetForLeaderEpoch as i16,
                ours: (2, 4),
                theirs: None,
            },
            Error::Misuse(Misuse::UnsupportedApi { api_key: 9999 }),
            Error::Config(ConfigError::invalid("sasl.mechanism", "MD5", "PLAIN")),
            Error::Stopped,
            broker(ApiKey::ApiVersions, ResponseError::NotCoordinator),
            broker(ApiKey::Produce, ResponseError::NotEnoughReplicas),
            broker(ApiKey::Metadata, ResponseError::TopicAuthorizationFailed),
        ]
    }

    /// The broker's error code, when the broker answered the pool's own request with one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            Error::Broker { error_code, .. } => ResponseError::try_from_code(*error_code),
            _ => None,
        }
    }

    /// The request the error is about, when it is about one the pool knows.
    pub fn api(&self) -> Option<ApiKey> {
        match self {
            Error::Broker { api_key, .. } | Error::Unsupported { api_key, .. } => {
                ApiKey::try_from(*api_key).ok()
            }
            Error::Misuse(Misuse::UnsupportedApi { api_key }) => ApiKey::try_from(*api_key).ok(),
            _ => None,
        }
    }

    /// Whether the broker was reached but the connection could not be set up for Kafka
    /// requests: a TLS failure, a broker closing the connection during the TLS handshake,
    /// ApiVersions or SASL (or at the first request after them, without SASL), or not
    /// answering a step. Most often the client's security settings (`security.protocol`, the
    /// TLS files, `sasl.mechanism`) differ from the listener's; the error says which to check.
    /// A refused or timed-out TCP connect, a name that does not resolve, a connection lost
    /// once in use, are not.
    pub fn is_setup_failure(&self) -> bool {
        match self {
            Error::Tls { .. } => true,
            Error::Transport { kind, .. } => match kind {
                TransportError::ClosedDuringSetup { stage, .. }
                | TransportError::SetupTimeout { stage, .. } => *stage != SetupStage::Connect,
                TransportError::ClosedAtFirstRequest { .. } => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// The broker the error is about, where it is about one.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Error::Transport { peer, .. }
            | Error::Corrupt { peer, .. }
            | Error::Unsupported { peer, .. }
            | Error::Broker { peer, .. }
            | Error::Tls { peer, .. }
            | Error::Authentication { peer, .. }
            | Error::NoBrokers { peer }
            | Error::ClusterChanged { peer, .. } => Some(peer),
            Error::UnknownBroker { .. } | Error::Misuse(_) | Error::Config(_) | Error::Stopped => {
                None
            }
        }
    }

    pub(crate) fn transport(peer: &Peer, kind: TransportError) -> Self {
        Error::Transport {
            peer: peer.clone(),
            kind,
        }
    }

    /// An IO error; one that carries a TLS error (tokio-rustls wraps rustls' errors in
    /// `io::Error`, on the handshake and on every later read and write) becomes
    /// [`Error::Tls`], so that a broker refusing the client's certificate after a TLS 1.3
    /// handshake (its alert arrives with the first answer) says so.
    pub(crate) fn io(peer: &Peer, e: io::Error) -> Self {
        match crate::tls::classify(&e) {
            Some(kind) => Error::Tls {
                peer: peer.clone(),
                kind,
            },
            None => Error::transport(peer, TransportError::Io(Arc::new(e))),
        }
    }

    pub(crate) fn corrupt(peer: &Peer, kind: Corruption) -> Self {
        Error::Corrupt {
            peer: peer.clone(),
            kind,
        }
    }

    /// Maps a codec error met while choosing or encoding a request's version: the broker lacks
    /// the API, kcon does not speak it, or the caller's request does not fit the version.
    pub(crate) fn from_request_codec(peer: &Peer, e: kcon_codec::Error) -> Self {
        match e {
            kcon_codec::Error::NoCommonVersion {
                api_key,
                ours,
                theirs,
            } => Error::Unsupported {
                peer: peer.clone(),
                api_key,
                ours,
                theirs,
            },
            kcon_codec::Error::UnsupportedVersion { api_key, .. } => {
                Error::Misuse(Misuse::UnsupportedApi { api_key })
            }
            other => Error::Misuse(Misuse::Encode(other)),
        }
    }
}

/// Why a machine's request sent through the pool got no answer. A corrupt answer closed its
/// connection, so it counts as retriable: a fresh connection may do better, and the machines'
/// backoff keeps that from looping fast.
impl From<Error> for RequestFailure {
    fn from(e: Error) -> RequestFailure {
        let retriable = e.is_retriable() || matches!(e, Error::Corrupt { .. });
        RequestFailure {
            retriable,
            reason: e.to_string(),
            broker: e.peer().map(ToString::to_string),
            version: None,
            cause: Some(e.cause()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport { peer, kind } => write!(f, "{peer}: {kind}"),
            Error::Corrupt { peer, kind } => {
                write!(f, "{peer} sent a corrupt answer, connection closed: {kind}")
            }
            Error::Unsupported {
                peer,
                api_key,
                theirs: None,
                ..
            } => write!(f, "{peer} does not offer {}", api_name(*api_key)),
            Error::Unsupported {
                peer,
                api_key,
                ours,
                theirs: Some(theirs),
            } if ours.1 < ours.0 => write!(
                f,
                "{peer} offers {} v{}-v{}, and api.version.max caps it at v{}: no common version",
                api_name(*api_key),
                theirs.0,
                theirs.1,
                ours.1
            ),
            Error::Unsupported {
                peer,
                api_key,
                ours,
                theirs: Some(theirs),
            } => write!(
                f,
                "{peer} offers {} v{}-v{}, kcon speaks v{}-v{}: no common version",
                api_name(*api_key),
                theirs.0,
                theirs.1,
                ours.0,
                ours.1
            ),
            Error::Broker {
                peer,
                api_key,
                error_code,
            } => {
                write!(
                    f,
                    "{peer} answered {} with {}",
                    api_name(*api_key),
                    error_name(*error_code)
                )
            }
            Error::Tls { peer, kind } => write!(f, "{peer}: TLS: {kind}"),
            Error::Authentication {
                peer,
                mechanism,
                kind,
            } => {
                write!(f, "{peer}: SASL {mechanism} authentication failed: {kind}")?;
                // The property to check.
                match kind {
                    AuthError::MechanismNotEnabled { .. } => {
                        f.write_str(": set sasl.mechanism to one of those")
                    }
                    AuthError::Refused { .. } => match mechanism {
                        SaslMechanism::OAuthBearer => f.write_str(OAUTHBEARER_CHECK),
                        SaslMechanism::Plain
                        | SaslMechanism::ScramSha256
                        | SaslMechanism::ScramSha512 => {
                            f.write_str(" (check sasl.username and sasl.password)")
                        }
                        SaslMechanism::Gssapi => f.write_str(KERBEROS_CHECK),
                    },
                    AuthError::Kerberos(_) => f.write_str(KERBEROS_CHECK),
                    AuthError::NotSaslListener { .. }
                    | AuthError::Protocol(_)
                    | AuthError::TokenProvider(_) => Ok(()),
                }
            }
            Error::NoBrokers { peer } => write!(
                f,
                "{peer} answered Metadata with no brokers; the answer is ignored"
            ),
            Error::ClusterChanged { peer, known, found } => write!(
                f,
                "{peer} belongs to cluster {found:?}, not to cluster {known:?} this client worked \
                 with: bootstrap.servers (or the names behind it) now lead to another cluster, so \
                 the client sends nothing more"
            ),
            Error::UnknownBroker { id } => {
                write!(f, "broker {id} is not in the cluster metadata")
            }
            Error::Misuse(m) => m.fmt(f),
            Error::Config(c) => c.fmt(f),
            Error::Stopped => f.write_str("the Tokio runtime is shutting down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport {
                kind: TransportError::Io(e),
                ..
            } => Some(&**e),
            Error::Corrupt {
                kind: Corruption::Codec(e),
                ..
            } => Some(e),
            Error::Misuse(Misuse::Encode(e)) => Some(e),
            Error::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// The broker at the other end of a connection: its id, when known, and the address dialled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The broker id from the cluster metadata; `None` for a bootstrap server, whose id is not
    /// known yet.
    pub id: Option<i32>,
    /// The `host:port` dialled.
    pub address: String,
}

impl Peer {
    /// A broker with a known id.
    pub fn broker(id: i32, address: impl Into<String>) -> Self {
        Peer {
            id: Some(id),
            address: address.into(),
        }
    }

    /// A bootstrap server, or any address whose broker id is not known.
    pub fn bootstrap(address: impl Into<String>) -> Self {
        Peer {
            id: None,
            address: address.into(),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "broker {id} ({})", self.address),
            None => write!(f, "bootstrap server {}", self.address),
        }
    }
}

/// How the network or the connection failed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TransportError {
    /// An IO error: name resolution, connect, read or write.
    Io(Arc<io::Error>),
    /// The host name resolved to no address.
    NoAddress,
    /// The broker closed the connection between two answers.
    Closed,
    /// The broker closed the connection in the middle of an answer.
    ClosedMidFrame {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
    },
    /// kcon closed the connection (it was dropped, retired or idle) while the request waited.
    ClosedByClient,
    /// No answer came within the request timeout (`request.timeout.ms`). If the request had
    /// been sent, the connection was closed, as the Java client does (`NetworkClient`,
    /// "Disconnecting from node due to request timeout") and librdkafka with
    /// `socket.max.fails=1`: a later answer could no longer be told from a fresh one.
    RequestTimeout {
        /// The API key of the request that timed out.
        api_key: i16,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection was not set up (TCP connect, TLS, ApiVersions and SASL together) within
    /// `socket.connection.setup.timeout.ms`.
    SetupTimeout {
        /// The timeout.
        timeout: Duration,
        /// The step that was under way.
        stage: SetupStage,
    },
    /// The broker closed the connection while it was being set up.
    ClosedDuringSetup {
        /// The step that was under way.
        stage: SetupStage,
        /// Whether the connection uses TLS.
        tls: bool,
    },
    /// On a connection set up without SASL, the broker closed the connection at the first
    /// request after the ApiVersions handshake, a Metadata request, answering none: what a
    /// SASL listener does to a client that does not authenticate (Kafka answers ApiVersions
    /// before authentication, then closes the connection on anything but SaslHandshake).
    ClosedAtFirstRequest {
        /// Whether the connection uses TLS.
        tls: bool,
    },
}

/// The steps of setting a connection up, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetupStage {
    /// The TCP connect.
    Connect,
    /// The TLS handshake.
    TlsHandshake,
    /// The ApiVersions request.
    ApiVersions,
    /// SaslHandshake and SaslAuthenticate.
    SaslAuthentication,
}

impl fmt::Display for SetupStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetupStage::Connect => "the TCP connect",
            SetupStage::TlsHandshake => "the TLS handshake",
            SetupStage::ApiVersions => "the ApiVersions request",
            SetupStage::SaslAuthentication => "SASL authentication",
        })
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Io(e) => write!(f, "{e}"),
            TransportError::NoAddress => f.write_str("the host name resolved to no address"),
            TransportError::Closed => f.write_str("the broker closed the connection"),
            TransportError::ClosedMidFrame { buffered } => write!(
                f,
                "the broker closed the connection in the middle of an answer ({buffered} bytes in)"
            ),
            TransportError::ClosedByClient => f.write_str("the connection was closed by kcon"),
            TransportError::RequestTimeout { api_key, timeout } => write!(
                f,
                "{} got no answer within {} ms (request.timeout.ms)",
                api_name(*api_key),
                timeout.as_millis()
            ),
            TransportError::SetupTimeout { timeout, stage } => {
                write!(
                    f,
                    "connection not set up within {} ms (socket.connection.setup.timeout.ms), \
                     during {stage}",
                    timeout.as_millis()
                )?;
                if *stage == SetupStage::TlsHandshake {
                    // Measured with Tansu: a plaintext listener reads the TLS hello as the size
                    // of a ~370 MB request and waits for the rest.
                    f.write_str(
                        ": a plaintext listener never answers a TLS hello (is \
                         security.protocol SSL or SASL_SSL only where the broker's is?)",
                    )?;
                }
                Ok(())
            }
            TransportError::ClosedDuringSetup { stage, tls } => {
                write!(f, "the broker closed the connection during {stage}")?;
                match (stage, tls) {
                    // A TLS listener cannot parse a Kafka request as a TLS record and drops the
                    // connection (socat/OpenSSL: "wrong version number", then a reset).
                    (SetupStage::ApiVersions, false) => f.write_str(
                        ": a TLS listener does that to a plaintext client (security.protocol \
                         SSL or SASL_SSL?)",
                    ),
                    // Measured with Tansu: it closes on a SaslHandshake for a mechanism it does
                    // not enable (PLAIN) instead of answering error 33; a listener without SASL
                    // may close on any SaslHandshake.
                    (SetupStage::SaslAuthentication, _) => f.write_str(
                        ": it may not enable sasl.mechanism, or not expect SASL on this \
                         listener (security.protocol)",
                    ),
                    _ => Ok(()),
                }
            }
            TransportError::ClosedAtFirstRequest { tls } => write!(
                f,
                "the broker closed the connection at the first request after ApiVersions, \
                 without answering it: a SASL listener does that to a client that does not \
                 authenticate (if this listener is one, set security.protocol={}, with \
                 sasl.mechanism and its credentials)",
                if *tls { "SASL_SSL" } else { "SASL_PLAINTEXT" }
            ),
        }
    }
}

/// How a TLS handshake failed, or why a connection met TLS it did not expect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The broker's certificate is not signed by a trusted CA (`ssl.ca.location`, or the
    /// system's trust store when it is unset).
    UnknownCa,
    /// The broker's certificate does not name the host dialled. `none` as
    /// `ssl.endpoint.identification.algorithm` turns the check off.
    HostnameMismatch {
        /// The host dialled.
        host: String,
        /// The names the certificate gives, where rustls reports them.
        presented: Vec<String>,
    },
    /// Something else is wrong with the broker's certificate (expired, not yet valid, revoked,
    /// not for server authentication, ...).
    BadCertificate(String),
    /// The broker ended the handshake with an alert: it may want a client certificate
    /// (`ssl.certificate.location`), refuse the one given, or share no protocol version or
    /// cipher suite with the client.
    Refused {
        /// The TLS alert received.
        alert: String,
    },
    /// The broker answered the TLS hello with something that is not TLS: a plaintext listener.
    NotTls,
    /// A plaintext connection got a TLS record back: the listener wants TLS.
    UnexpectedTls,
    /// The broker closed the connection in the middle of the TLS handshake.
    ClosedInHandshake,
    /// The host to check the certificate against is not a valid DNS name or IP address.
    InvalidServerName(String),
    /// Any other TLS failure, as rustls words it.
    Other(String),
}

impl TlsError {
    /// Whether trying again can help: only when the connection was cut, which a broker
    /// restarting does too. A certificate or protocol mismatch stays until someone fixes the
    /// configuration (the Java client's `SslAuthenticationException` is fatal too).
    pub fn is_retriable(&self) -> bool {
        matches!(self, TlsError::ClosedInHandshake)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::UnknownCa => f.write_str(
                "the broker's certificate is not signed by a trusted CA (ssl.ca.location, or \
                 the system's trust store when unset)",
            ),
            TlsError::HostnameMismatch { host, presented } if presented.is_empty() => write!(
                f,
                "the broker's certificate is not valid for {host} \
                 (ssl.endpoint.identification.algorithm=none skips this check)"
            ),
            TlsError::HostnameMismatch { host, presented } => write!(
                f,
                "the broker's certificate is for {}, not for {host} \
                 (ssl.endpoint.identification.algorithm=none skips this check)",
                presented.join(", ")
            ),
            TlsError::BadCertificate(why) => {
                write!(f, "the broker's certificate is invalid: {why}")
            }
            TlsError::Refused { alert } => write!(
                f,
                "the broker refused the handshake (alert {alert}): it may want a client \
                 certificate (ssl.certificate.location), refuse the one given, or share no \
                 protocol version or cipher suite with kcon"
            ),
            TlsError::NotTls => f.write_str(
                "the broker did not answer in TLS: a plaintext listener? (security.protocol \
                 PLAINTEXT or SASL_PLAINTEXT)",
            ),
            TlsError::UnexpectedTls => f.write_str(
                "the broker answered a plaintext request in TLS: its listener wants TLS \
                 (security.protocol SSL or SASL_SSL)",
            ),
            TlsError::ClosedInHandshake => f.write_str(
                "the broker closed the connection during the TLS handshake: a plaintext \
                 listener does that (security.protocol PLAINTEXT or SASL_PLAINTEXT?), or one \
                 that refused the client certificate (ssl.certificate.location)",
            ),
            TlsError::InvalidServerName(host) => {
                write!(f, "{host:?} is not a valid DNS name or IP address")
            }
            TlsError::Other(why) => f.write_str(why),
        }
    }
}

/// What a refused OAUTHBEARER token's error adds: where the token came from.
const OAUTHBEARER_CHECK: &str = " (check the token: sasl.oauthbearer.token.file's, \
     sasl.oauthbearer.config's, the token endpoint's, the AWS credentials' of \
     sasl.oauthbearer.method=aws_msk_iam, or the application's token provider's)";
/// What to check when GSSAPI fails.
const KERBEROS_CHECK: &str = " (check sasl.kerberos.principal, sasl.kerberos.keytab or \
     sasl.kerberos.ccache, sasl.kerberos.service.name, and the Kerberos configuration: \
     KRB5_CONFIG, else /etc/krb5.conf)";

/// Why SASL authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The broker does not enable the mechanism (SaslHandshake error 33).
    MechanismNotEnabled {
        /// The mechanisms it does enable.
        enabled: Vec<String>,
    },
    /// The listener does not take SASL: Kafka answers a SaslHandshake on a PLAINTEXT or SSL
    /// listener with ILLEGAL_SASL_STATE.
    NotSaslListener {
        /// Whether the connection uses TLS (the listener is then SSL, else PLAINTEXT).
        tls: bool,
    },
    /// The broker refused: wrong credentials, an unknown user, an invalid token.
    Refused {
        /// The Kafka error code, when the refusal came as one (58, SASL_AUTHENTICATION_FAILED,
        /// for bad credentials).
        error_code: Option<i16>,
        /// The broker's own words.
        message: Option<String>,
    },
    /// The broker broke the mechanism's rules: a malformed message, or a SCRAM signature
    /// proving it does not hold the credential.
    Protocol(String),
    /// The application's OAUTHBEARER token provider failed, or gave a token that cannot be
    /// sent.
    TokenProvider(String),
    /// GSSAPI: Kerberos failed on the client's side, in the words of the Kerberos library:
    /// credentials missing or expired, the KDC unreachable or refusing (an unknown principal,
    /// a wrong key), no ticket for the broker's service.
    Kerberos(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MechanismNotEnabled { enabled } => write!(
                f,
                "the broker does not enable it; it enables [{}]",
                enabled.join(", ")
            ),
            AuthError::NotSaslListener { tls } => {
                let (article, protocol) = if *tls {
                    ("an", "SSL")
                } else {
                    ("a", "PLAINTEXT")
                };
                write!(
                    f,
                    "the listener does not take SASL (it answered the SaslHandshake with {}): \
                     if it is {article} {protocol} listener, set security.protocol={protocol} \
                     and leave the sasl.* properties unset",
                    error_name(ILLEGAL_SASL_STATE)
                )
            }
            AuthError::Refused {
                error_code,
                message,
            } => {
                f.write_str("refused by the broker")?;
                if let Some(code) = error_code {
                    write!(f, " ({})", error_name(*code))?;
                }
                match message {
                    Some(m) => write!(f, ": {m}"),
                    None => Ok(()),
                }
            }
            AuthError::Protocol(what) => write!(f, "protocol violation: {what}"),
            AuthError::TokenProvider(why) => write!(f, "the token provider failed: {why}"),
            AuthError::Kerberos(why) => write!(f, "Kerberos: {why}"),
        }
    }
}

/// SaslHandshake's answer on a listener without SASL.
pub(crate) const ILLEGAL_SASL_STATE: i16 =
    kcon_codec::kafka_protocol::ResponseError::IllegalSaslState.code();

/// What was wrong with the bytes a broker sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A frame or a response that does not decode.
    Codec(kcon_codec::Error),
    /// An answer whose correlation id matches no request sent on the connection.
    UnknownCorrelationId(i32),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Codec(e) => e.fmt(f),
            Corruption::UnknownCorrelationId(id) => {
                write!(f, "answer with correlation id {id}, which no request has")
            }
        }
    }
}

/// Something the caller asked for that kcon cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// kcon does not speak this API at all (see `kcon_codec::versions::SUPPORTED`).
    UnsupportedApi {
        /// The API key.
        api_key: i16,
    },
    /// The request cannot be encoded at the version negotiated with the broker (it sets a field
    /// that version cannot carry, ...). Build the request for
    /// [`Connection::version`](crate::Connection::version).
    Encode(kcon_codec::Error),
    /// [`Pool::new`](crate::Pool::new) was called outside a Tokio runtime.
    NoRuntime,
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misuse::UnsupportedApi { api_key } => {
                write!(f, "kcon does not speak {}", api_name(*api_key))
            }
            Misuse::Encode(e) => e.fmt(f),
            Misuse::NoRuntime => f.write_str("the pool must be created inside a Tokio runtime"),
        }
    }
}

kcon_core::impl_kcon_error!(Error);

#[cfg(test)]
mod tests {
    use super::*;

    /// What each of [`Error::examples`] answers: the one table of a pool error's cause and
    /// outcome, which the consumer's and the producer's errors carry over as they are.
    #[test]
    fn every_cause_of_a_pool_error_is_a_cause_and_an_outcome() {
        let expected = [
            (Cause::Transport, Outcome::Retry),
            (Cause::Unsupported, Outcome::Fix),
            (Cause::Misuse, Outcome::Fix),
            (Cause::Config, Outcome::Fix),
            (Cause::Closed, Outcome::Closed),
            (Cause::Broker, Outcome::Retry),
            (Cause::Broker, Outcome::Retry),
            (Cause::Broker, Outcome::Fix),
        ];
        let examples = Error::examples();
        assert_eq!(examples.len(), expected.len());
        for (e, answers) in examples.iter().zip(expected) {
            assert_eq!((e.cause(), e.outcome()), answers, "{e}");
        }
    }

    #[test]
    fn messages_name_the_broker_and_the_api() {
        let peer = Peer::broker(3, "kafka-3:9092");
        let e = Error::Unsupported {
            peer: peer.clone(),
            api_key: 23,
            ours: (2, 4),
            theirs: None,
        };
        assert_eq!(
            e.to_string(),
            "broker 3 (kafka-3:9092) does not offer OffsetForLeaderEpoch"
        );
        assert!(!e.is_retriable());
        let t = Error::transport(
            &Peer::bootstrap("b:9092"),
            TransportError::RequestTimeout {
                api_key: 1,
                timeout: Duration::from_secs(30),
            },
        );
        assert_eq!(
            t.to_string(),
            "bootstrap server b:9092: Fetch got no answer within 30000 ms (request.timeout.ms)"
        );
        assert!(t.is_retriable());
        let b = Error::Broker {
            peer,
            api_key: 18,
            error_code: 35,
        };
        assert_eq!(
            b.to_string(),
            "broker 3 (kafka-3:9092) answered ApiVersions with UNSUPPORTED_VERSION (35)"
        );
        assert!(!b.is_retriable());
    }
}
