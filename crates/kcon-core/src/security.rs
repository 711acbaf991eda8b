//! The values of the TLS and SASL properties: `security.protocol`,
//! `ssl.endpoint.identification.algorithm`, `sasl.mechanism` and a password that does not show
//! itself. kcon-pool acts on them; they are here so that each table of properties that names them can read them.

use std::fmt;

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

    /// The protocol named `v`, in any case.
    pub fn parse(v: &str) -> Option<Self> {
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
    /// `https`, or `none` (or empty), in any case.
    pub fn parse(v: &str) -> Option<Self> {
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
    /// `OAUTHBEARER` (RFC 7628, KIP-255): a bearer token from a token provider the application
    /// hands kcon-pool.
    OAuthBearer,
    /// `GSSAPI` (RFC 4752): Kerberos, through the system's GSS-API library (kcon-pool's
    /// feature `gssapi`).
    Gssapi,
}

impl SaslMechanism {
    /// The mechanism's SASL name, as the broker knows it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::Gssapi => "GSSAPI",
        }
    }

    /// The mechanism named `v`, in any case.
    pub fn parse(v: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
            SaslMechanism::OAuthBearer,
            SaslMechanism::Gssapi,
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
