//! The pool's configuration: Kafka property names, Java client and librdkafka defaults.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kcon_codec::frame::DEFAULT_MAX_FRAME_SIZE;

use crate::sasl::oauthbearer::TokenProvider;
use kcon_core::property::{parse_bool, parse_count as count, parse_millis};
use kcon_core::{ConfigError, ExponentialBackoff};

/// The configuration of a [`Pool`](crate::Pool) and of the [`Connection`](crate::Connection)s
/// it makes.
///
/// Fields can be set directly or by Kafka property name with [`PoolConfig::set`]. Defaults are
/// the Java client's (librdkafka's where Java has no such property).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// `bootstrap.servers`: `host:port` entries to ask for the cluster metadata. Each resolves
    /// to all its addresses, tried in turn. No default: [`Pool::new`](crate::Pool::new) refuses
    /// an empty list.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent in every request header. Default `kcon`.
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms`: the longest a connection may take to be set up,
    /// TCP connect and ApiVersions handshake together, as librdkafka counts it. Default 10 s.
    pub socket_connection_setup_timeout: Duration,
    /// `request.timeout.ms`: the longest a request waits for a free in-flight slot and for its
    /// answer together. Default 30 s.
    pub request_timeout: Duration,
    /// `max.in.flight.requests.per.connection`: requests sent on one connection and not yet
    /// answered. A request beyond it waits for a slot. Default 5.
    pub max_in_flight_requests_per_connection: usize,
    /// `metadata.max.age.ms`: the cluster metadata is refreshed at least this often. Default
    /// 5 min.
    pub metadata_max_age: Duration,
    /// `reconnect.backoff.ms`: the first wait before reconnecting to a broker. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest wait before reconnecting. Default 1 s.
    pub reconnect_backoff_max: Duration,
    /// `retry.backoff.ms`: the first wait before a retry (KIP-580). Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest wait before a retry (KIP-580). Default 1 s.
    pub retry_backoff_max: Duration,
    /// `connections.max.idle.ms`: a connection with nothing in flight for this long is closed;
    /// zero keeps idle connections open (librdkafka's meaning of 0). Default 9 min.
    pub connections_max_idle: Duration,
    /// `receive.message.max.bytes`: the largest answer accepted; a larger size prefix poisons
    /// the connection. Default 100 MiB.
    pub receive_message_max_bytes: usize,
    /// `allow.auto.create.topics`: whether Metadata requests for named topics may create them
    /// (on brokers configured to). Default `true`, as in the Java consumer. Brokers older than
    /// Metadata v4 always may.
    pub allow_auto_create_topics: bool,
    /// `security.protocol`: TLS, SASL, both or neither. Default `PLAINTEXT`.
    pub security_protocol: SecurityProtocol,
    /// `ssl.ca.location`: a PEM file of the CA certificates that may sign the brokers'
    /// certificates. Unset: the system's trust store (as librdkafka and OpenSSL do).
    pub ssl_ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: a PEM file with the client's certificate (then its chain),
    /// for brokers that authenticate clients by certificate (mutual TLS). Needs
    /// `ssl.key.location`.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: a PEM file with the client certificate's private key (PKCS#8,
    /// PKCS#1 or SEC1; not encrypted). Needs `ssl.certificate.location`.
    pub ssl_key_location: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm`: `https` (default) checks that the broker's
    /// certificate names the host dialled; `none` checks only that a trusted CA signed it.
    pub ssl_endpoint_identification_algorithm: EndpointIdentification,
    /// `sasl.mechanism` (librdkafka: `sasl.mechanisms`): required with the `SASL_*`
    /// protocols. No default: Kafka's, GSSAPI, is not supported.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `sasl.username`: for PLAIN and SCRAM.
    pub sasl_username: Option<String>,
    /// `sasl.password`: for PLAIN and SCRAM. Shown as `<redacted>` by `Debug`.
    pub sasl_password: Option<Password>,
    /// The token source of OAUTHBEARER: application code, so it has no property name and is
    /// set on this field only.
    pub sasl_oauthbearer_token_provider: Option<TokenProvider>,
}

impl PoolConfig {
    /// The Kafka property names [`PoolConfig::set`] accepts.
    pub const PROPERTIES: &'static [&'static str] = &[
        "bootstrap.servers",
        "client.id",
        "socket.connection.setup.timeout.ms",
        "request.timeout.ms",
        "max.in.flight.requests.per.connection",
        "metadata.max.age.ms",
        "reconnect.backoff.ms",
        "reconnect.backoff.max.ms",
        "retry.backoff.ms",
        "retry.backoff.max.ms",
        "connections.max.idle.ms",
        "receive.message.max.bytes",
        "allow.auto.create.topics",
        "security.protocol",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.endpoint.identification.algorithm",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
    ];

    /// Sets a property by its Kafka name from its string form.
    ///
    /// Durations are whole milliseconds, counts whole numbers, booleans `true`/`false`,
    /// `bootstrap.servers` a comma-separated list of `host:port`, names of protocols and
    /// mechanisms in any case; an empty file location or user name unsets it. `sasl.mechanisms`
    /// (librdkafka's spelling) is taken as `sasl.mechanism`. A bad value is refused with an
    /// error naming the property and what it accepts, and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match name {
            "bootstrap.servers" => self.bootstrap_servers = parse_servers(v)?,
            "client.id" => self.client_id = value.to_owned(),
            "socket.connection.setup.timeout.ms" => {
                self.socket_connection_setup_timeout = parse_millis(name, v, 1)?;
            }
            "request.timeout.ms" => self.request_timeout = parse_millis(name, v, 1)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection =
                    count(name, v, 1, MAX_IN_FLIGHT_LIMIT, IN_FLIGHT_EXPECTED)?;
            }
            "metadata.max.age.ms" => self.metadata_max_age = parse_millis(name, v, 0)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = parse_millis(name, v, 0)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = parse_millis(name, v, 0)?,
            "retry.backoff.ms" => self.retry_backoff = parse_millis(name, v, 0)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = parse_millis(name, v, 0)?,
            "connections.max.idle.ms" => self.connections_max_idle = parse_millis(name, v, 0)?,
            "receive.message.max.bytes" => {
                self.receive_message_max_bytes = count(
                    name,
                    v,
                    MIN_RECEIVE_MESSAGE_MAX_BYTES,
                    i32::MAX as usize,
                    RECEIVE_MAX_EXPECTED,
                )?;
            }
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = parse_bool(name, v)?;
            }
            "security.protocol" => {
                self.security_protocol = SecurityProtocol::parse(v)
                    .ok_or_else(|| ConfigError::invalid(name, value, PROTOCOL_EXPECTED))?;
            }
            "ssl.ca.location" => self.ssl_ca_location = path(v),
            "ssl.certificate.location" => self.ssl_certificate_location = path(v),
            "ssl.key.location" => self.ssl_key_location = path(v),
            "ssl.endpoint.identification.algorithm" => {
                self.ssl_endpoint_identification_algorithm = EndpointIdentification::parse(v)
                    .ok_or_else(|| ConfigError::invalid(name, value, "https or none"))?;
            }
            "sasl.mechanism" | "sasl.mechanisms" => {
                self.sasl_mechanism = Some(
                    SaslMechanism::parse(v)
                        .ok_or_else(|| ConfigError::invalid(name, value, MECHANISM_EXPECTED))?,
                );
            }
            // Taken as given, not trimmed: spaces can be part of a user name or password.
            "sasl.username" => {
                self.sasl_username = (!value.is_empty()).then(|| value.to_owned());
            }
            "sasl.password" => self.sasl_password = Some(Password::new(value)),
            _ => {
                return Err(ConfigError::UnknownProperty {
                    property: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Checks what `set` cannot check one property at a time, and the fields set directly:
    /// [`Pool::new`](crate::Pool::new) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.is_empty() {
            return Err(ConfigError::invalid(
                "bootstrap.servers",
                "",
                "at least one host:port",
            ));
        }
        for server in &self.bootstrap_servers {
            if split_host_port(server).is_none() {
                return Err(ConfigError::invalid(
                    "bootstrap.servers",
                    server,
                    SERVERS_EXPECTED,
                ));
            }
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&self.max_in_flight_requests_per_connection) {
            return Err(ConfigError::invalid(
                "max.in.flight.requests.per.connection",
                &self.max_in_flight_requests_per_connection.to_string(),
                IN_FLIGHT_EXPECTED,
            ));
        }
        if !(MIN_RECEIVE_MESSAGE_MAX_BYTES..=i32::MAX as usize)
            .contains(&self.receive_message_max_bytes)
        {
            return Err(ConfigError::invalid(
                "receive.message.max.bytes",
                &self.receive_message_max_bytes.to_string(),
                RECEIVE_MAX_EXPECTED,
            ));
        }
        for (property, value) in [
            ("request.timeout.ms", self.request_timeout),
            (
                "socket.connection.setup.timeout.ms",
                self.socket_connection_setup_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(
                    property,
                    "0",
                    "a whole number of milliseconds, at least 1",
                ));
            }
        }
        self.validate_security()
    }

    /// TLS and SASL settings: what the protocol and mechanism need is there, and nothing is
    /// set that they would ignore. Settings that would be ignored are refused rather than
    /// dropped silently (librdkafka ignores them): `ssl.ca.location` with `PLAINTEXT` most
    /// likely means the user believes the connection is encrypted.
    pub(crate) fn validate_security(&self) -> Result<(), ConfigError> {
        let protocol = self.security_protocol;
        if !protocol.uses_tls() {
            for (property, set) in [
                ("ssl.ca.location", &self.ssl_ca_location),
                ("ssl.certificate.location", &self.ssl_certificate_location),
                ("ssl.key.location", &self.ssl_key_location),
            ] {
                if let Some(path) = set {
                    return Err(ConfigError::invalid(
                        property,
                        &path.display().to_string(),
                        "unset unless security.protocol is SSL or SASL_SSL",
                    ));
                }
            }
        }
        match (&self.ssl_certificate_location, &self.ssl_key_location) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "ssl.key.location",
                    "",
                    "the client certificate's private key, since ssl.certificate.location is set",
                ));
            }
            (None, Some(key)) => {
                return Err(ConfigError::invalid(
                    "ssl.certificate.location",
                    &key.display().to_string(),
                    "the client certificate, since ssl.key.location is set",
                ));
            }
            _ => {}
        }
        if !protocol.uses_sasl() {
            let set = [
                ("sasl.mechanism", self.sasl_mechanism.is_some()),
                ("sasl.username", self.sasl_username.is_some()),
                ("sasl.password", self.sasl_password.is_some()),
                (
                    "sasl.oauthbearer.token.provider",
                    self.sasl_oauthbearer_token_provider.is_some(),
                ),
            ];
            if let Some((property, _)) = set.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    property,
                    "(set)",
                    "unset unless security.protocol is SASL_PLAINTEXT or SASL_SSL",
                ));
            }
            return Ok(());
        }
        let Some(mechanism) = self.sasl_mechanism else {
            return Err(ConfigError::invalid(
                "sasl.mechanism",
                "",
                "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER: security.protocol \
                 SASL_PLAINTEXT and SASL_SSL need one",
            ));
        };
        if mechanism == SaslMechanism::OAuthBearer {
            if self.sasl_oauthbearer_token_provider.is_none() {
                return Err(ConfigError::invalid(
                    "sasl.oauthbearer.token.provider",
                    "",
                    "a token provider in PoolConfig::sasl_oauthbearer_token_provider: \
                     sasl.mechanism OAUTHBEARER needs one",
                ));
            }
            return Ok(());
        }
        // PLAIN and SCRAM. A NUL would split PLAIN's message (RFC 4616) in the wrong place.
        match &self.sasl_username {
            None => {
                return Err(ConfigError::invalid(
                    "sasl.username",
                    "",
                    "a user name: sasl.mechanism PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need one",
                ));
            }
            Some(user) if user.contains('\0') => {
                return Err(ConfigError::invalid(
                    "sasl.username",
                    user,
                    "a user name without NUL characters",
                ));
            }
            Some(_) => {}
        }
        match &self.sasl_password {
            None => Err(ConfigError::invalid(
                "sasl.password",
                "",
                "a password: sasl.mechanism PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need one",
            )),
            Some(p) if p.expose().contains('\0') => Err(ConfigError::invalid(
                "sasl.password",
                "<redacted>",
                "a password without NUL characters",
            )),
            Some(_) => Ok(()),
        }
    }

    /// The reconnect backoff: `reconnect.backoff.ms` doubling up to `reconnect.backoff.max.ms`,
    /// ±20 % jitter, as the Java client's `ClusterConnectionStates`.
    pub fn reconnect_backoff_policy(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.reconnect_backoff, self.reconnect_backoff_max)
    }

    /// The retry backoff of KIP-580: `retry.backoff.ms` doubling up to `retry.backoff.max.ms`,
    /// ±20 % jitter.
    pub fn retry_backoff_policy(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.retry_backoff, self.retry_backoff_max)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            bootstrap_servers: Vec::new(),
            client_id: "kcon".to_owned(),
            socket_connection_setup_timeout: Duration::from_millis(10_000),
            request_timeout: Duration::from_millis(30_000),
            max_in_flight_requests_per_connection: 5,
            metadata_max_age: Duration::from_millis(300_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            connections_max_idle: Duration::from_millis(540_000),
            receive_message_max_bytes: DEFAULT_MAX_FRAME_SIZE,
            allow_auto_create_topics: true,
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_endpoint_identification_algorithm: EndpointIdentification::Https,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_oauthbearer_token_provider: None,
        }
    }
}

/// `security.protocol`: how connections are protected and authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL, without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The property value: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn parse(v: &str) -> Option<Self> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(v))
    }
}

/// `ssl.endpoint.identification.algorithm`: whether the broker's certificate must name the host
/// dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EndpointIdentification {
    /// `https`: it must (RFC 6125), as a browser checks a web server's.
    #[default]
    Https,
    /// `none` (the Java client: an empty value): any name will do, as long as a trusted CA
    /// signed the certificate. For brokers whose certificates name other hosts than the
    /// addresses they advertise.
    None,
}

impl EndpointIdentification {
    fn parse(v: &str) -> Option<Self> {
        if v.eq_ignore_ascii_case("https") {
            Some(EndpointIdentification::Https)
        } else if v.is_empty() || v.eq_ignore_ascii_case("none") {
            Some(EndpointIdentification::None)
        } else {
            None
        }
    }
}

/// `sasl.mechanism`: how a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): user name and password in the clear, so only over TLS in practice.
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677): a challenge-response; the password never travels.
    ScramSha256,
    /// `SCRAM-SHA-512`: the same with SHA-512.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255): a bearer token from the application's
    /// [`OAuthBearerTokenProvider`](crate::OAuthBearerTokenProvider).
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism's SASL name, as the broker knows it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    fn parse(v: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(v))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A password: `Debug` shows `<redacted>`, so a logged configuration leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// librdkafka's range for `max.in.flight.requests.per.connection`.
const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
/// librdkafka's lower bound for `receive.message.max.bytes`.
const MIN_RECEIVE_MESSAGE_MAX_BYTES: usize = 1_000;
const IN_FLIGHT_EXPECTED: &str = "a whole number from 1 to 1000000";
const RECEIVE_MAX_EXPECTED: &str = "a whole number from 1000 to 2147483647";
const SERVERS_EXPECTED: &str = "a comma-separated list of host:port, port from 1 to 65535";
const PROTOCOL_EXPECTED: &str = "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL";
const MECHANISM_EXPECTED: &str =
    "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (GSSAPI is not supported)";

/// Splits `host:port` (IPv6 hosts in brackets, `[::1]:9092`); `None` if it is not one.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((host, port))
}

fn parse_servers(v: &str) -> Result<Vec<String>, ConfigError> {
    // Empty entries ("a:1,,b:2", a trailing comma) are skipped, as Java's LIST type does.
    let servers: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if servers.is_empty() {
        return Err(ConfigError::invalid(
            "bootstrap.servers",
            v,
            "at least one host:port",
        ));
    }
    if let Some(bad) = servers.iter().find(|s| split_host_port(s).is_none()) {
        return Err(ConfigError::invalid(
            "bootstrap.servers",
            bad,
            SERVERS_EXPECTED,
        ));
    }
    Ok(servers)
}

/// A file location; empty unsets it.
fn path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_java_client() {
        let c = PoolConfig::default();
        assert_eq!(c.client_id, "kcon");
        assert_eq!(c.socket_connection_setup_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_in_flight_requests_per_connection, 5);
        assert_eq!(c.metadata_max_age, Duration::from_secs(300));
        assert_eq!(c.reconnect_backoff, Duration::from_millis(50));
        assert_eq!(c.reconnect_backoff_max, Duration::from_secs(1));
        assert_eq!(c.retry_backoff, Duration::from_millis(100));
        assert_eq!(c.retry_backoff_max, Duration::from_secs(1));
        assert_eq!(c.connections_max_idle, Duration::from_secs(540));
        assert_eq!(c.receive_message_max_bytes, 100 * 1024 * 1024);
    }

    #[test]
    fn every_listed_property_is_settable() {
        let good = |name: &str| match name {
            "bootstrap.servers" => "a:1, [::1]:9092,",
            "client.id" => "me",
            "allow.auto.create.topics" => "false",
            "max.in.flight.requests.per.connection" => "7",
            "security.protocol" => "sasl_ssl",
            "ssl.ca.location" => "/etc/kafka/ca.pem",
            "ssl.certificate.location" => "/etc/kafka/client.pem",
            "ssl.key.location" => "/etc/kafka/client.key",
            "ssl.endpoint.identification.algorithm" => "NONE",
            "sasl.mechanism" => "scram-sha-512",
            "sasl.username" => "alice",
            "sasl.password" => " pass word ",
            _ => "5000",
        };
        let mut c = PoolConfig::default();
        for name in PoolConfig::PROPERTIES {
            c.set(name, good(name)).unwrap();
        }
        assert_eq!(c.bootstrap_servers, ["a:1", "[::1]:9092"]);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_in_flight_requests_per_connection, 7);
        assert_eq!(c.receive_message_max_bytes, 5000);
        assert!(!c.allow_auto_create_topics);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            c.ssl_endpoint_identification_algorithm,
            EndpointIdentification::None
        );
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        assert_eq!(c.sasl_password, Some(Password::new(" pass word ")));
        c.validate().unwrap();
        c.set("sasl.mechanisms", "PLAIN").unwrap();
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::Plain));
        c.set("ssl.ca.location", "").unwrap();
        assert_eq!(c.ssl_ca_location, None);
    }

    /// A SASL_SSL config with SCRAM, valid.
    fn sasl() -> PoolConfig {
        let mut c = PoolConfig {
            bootstrap_servers: vec!["h:1".into()],
            ..PoolConfig::default()
        };
        c.set("security.protocol", "SASL_SSL").unwrap();
        c.set("sasl.mechanism", "SCRAM-SHA-256").unwrap();
        c.set("sasl.username", "alice").unwrap();
        c.set("sasl.password", "secret").unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn security_settings_are_checked_together() {
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        let mut c = sasl();
        c.sasl_username = None;
        assert_eq!(e(&c).property(), "sasl.username");
        assert!(e(&c).to_string().contains("need one"), "{}", e(&c));
        let mut c = sasl();
        c.sasl_password = None;
        assert_eq!(e(&c).property(), "sasl.password");
        let mut c = sasl();
        c.sasl_password = Some(Password::new("a\0b"));
        assert_eq!(e(&c).property(), "sasl.password");
        assert!(
            !e(&c).to_string().contains("a\0b"),
            "the password is not shown"
        );
        let mut c = sasl();
        c.sasl_mechanism = None;
        assert_eq!(e(&c).property(), "sasl.mechanism");
        let mut c = sasl();
        c.sasl_mechanism = Some(SaslMechanism::OAuthBearer);
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.provider");
        // Set, but for a protocol that would ignore them.
        let mut c = sasl();
        c.security_protocol = SecurityProtocol::Ssl;
        assert_eq!(e(&c).property(), "sasl.mechanism");
        let mut c = sasl();
        c.security_protocol = SecurityProtocol::SaslPlaintext;
        c.set("ssl.ca.location", "/ca.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.ca.location");
        let mut c = sasl();
        c.set("ssl.certificate.location", "/c.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.key.location");
        let mut c = sasl();
        c.set("ssl.key.location", "/k.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.certificate.location");
        // Bad values.
        let mut c = sasl();
        let gssapi = c.set("sasl.mechanism", "GSSAPI").unwrap_err();
        assert!(
            gssapi.to_string().contains("GSSAPI is not supported"),
            "{gssapi}"
        );
        assert_eq!(
            c.set("security.protocol", "TLS").unwrap_err().to_string(),
            "invalid value \"TLS\" for security.protocol: expected PLAINTEXT, SSL, \
             SASL_PLAINTEXT or SASL_SSL"
        );
        assert!(
            c.set("ssl.endpoint.identification.algorithm", "dns")
                .is_err()
        );
        assert_eq!(c, sasl(), "a refused value changes nothing");
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let shown = format!("{:?}", sasl());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_bad_value_names_the_property_and_what_it_accepts() {
        let mut c = PoolConfig::default();
        let before = c.clone();
        let e = c.set("request.timeout.ms", "soon").unwrap_err();
        assert_eq!(e.property(), "request.timeout.ms");
        assert_eq!(
            e.to_string(),
            "invalid value \"soon\" for request.timeout.ms: expected a whole number of \
             milliseconds, at least 1"
        );
        let e = c
            .set("max.in.flight.requests.per.connection", "0")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"0\" for max.in.flight.requests.per.connection: expected a whole \
             number from 1 to 1000000"
        );
        let e = c.set("bootstrap.servers", "a:1,b").unwrap_err();
        assert_eq!(e.property(), "bootstrap.servers");
        assert!(e.to_string().contains("\"b\""), "{e}");
        for bad in ["a:0", "a:99999", ":1", "::1:9092", "a b:1", ","] {
            assert!(c.set("bootstrap.servers", bad).is_err(), "{bad}");
        }
        let e = c.set("receive.message.max.bytes", "999").unwrap_err();
        assert_eq!(e.property(), "receive.message.max.bytes");
        let e = c.set("allow.auto.create.topics", "yes").unwrap_err();
        assert!(e.to_string().contains("true or false"), "{e}");
        let e = c.set("reconnect.backoff.ms", "-1").unwrap_err();
        assert_eq!(e.property(), "reconnect.backoff.ms");
        let e = c.set("fetch.min.bytes", "1").unwrap_err();
        assert_eq!(
            e,
            ConfigError::UnknownProperty {
                property: "fetch.min.bytes".into()
            }
        );
        assert_eq!(c, before, "a refused value changes nothing");
    }

    #[test]
    fn validate_catches_what_set_cannot() {
        let c = PoolConfig::default();
        assert_eq!(c.validate().unwrap_err().property(), "bootstrap.servers");
        let mut c = PoolConfig {
            bootstrap_servers: vec!["h:1".into()],
            ..PoolConfig::default()
        };
        c.validate().unwrap();
        c.max_in_flight_requests_per_connection = 0;
        assert_eq!(
            c.validate().unwrap_err().property(),
            "max.in.flight.requests.per.connection"
        );
        c.max_in_flight_requests_per_connection = 1;
        c.request_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().property(), "request.timeout.ms");
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("kafka:9092"), Some(("kafka", 9092)));
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1", 9092)));
        assert_eq!(split_host_port("10.0.0.1:1"), Some(("10.0.0.1", 1)));
        assert_eq!(split_host_port("kafka"), None);
        assert_eq!(split_host_port("[::1:9092"), None);
    }
}
