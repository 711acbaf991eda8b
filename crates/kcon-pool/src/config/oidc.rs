//! OAUTHBEARER's tokens from an OAuth 2.0 token endpoint (`sasl.oauthbearer.token.endpoint.url`,
//! the client credentials grant): the settings, checked, and the provider made from them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kcon_core::security::Password;
use kcon_core::{ConfigError, ExponentialBackoff};
use tokio_rustls::TlsConnector;

use crate::http::HttpEndpoint;
pub use crate::sasl::assertion::AssertionAlgorithm;
use crate::sasl::assertion::{Claims, Signer};
use crate::sasl::oauthbearer::TokenProvider;
use crate::sasl::oidc::{Assertion, Grant, Oidc, OidcSettings};
use crate::tls::{TlsFiles, client_config};

/// `sasl.oauthbearer.method` (librdkafka's): where OAUTHBEARER's token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthBearerMethod {
    /// `default`: from `sasl.oauthbearer.token.file`, `sasl.oauthbearer.config` or the
    /// application's token provider.
    Default,
    /// `oidc`: from the token endpoint of `sasl.oauthbearer.token.endpoint.url`.
    Oidc,
    /// `aws_msk_iam` (kcon's): signed for Amazon MSK's IAM access control with credentials
    /// from AWS's credential chain (`sasl.aws.*`; the feature `aws-msk-iam`).
    AwsMskIam,
}

impl OAuthBearerMethod {
    /// Reads `default`, `oidc` or `aws_msk_iam`, in any case.
    pub fn parse(s: &str) -> Option<OAuthBearerMethod> {
        [
            OAuthBearerMethod::Default,
            OAuthBearerMethod::Oidc,
            OAuthBearerMethod::AwsMskIam,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// The property's value.
    pub fn name(self) -> &'static str {
        match self {
            OAuthBearerMethod::Default => "default",
            OAuthBearerMethod::Oidc => "oidc",
            OAuthBearerMethod::AwsMskIam => "aws_msk_iam",
        }
    }
}

/// `sasl.oauthbearer.grant.type` (librdkafka's): how the token endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4): the client's id and secret.
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1, KIP-1139): a JWT the
    /// client signs (or reads from a file), with the client's id and secret too when set.
    JwtBearer,
}

impl GrantType {
    /// The JWT bearer grant's name.
    pub const JWT_BEARER: &'static str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

    /// Reads `client_credentials` or `urn:ietf:params:oauth:grant-type:jwt-bearer`.
    pub fn parse(s: &str) -> Option<GrantType> {
        match s {
            "client_credentials" => Some(GrantType::ClientCredentials),
            GrantType::JWT_BEARER => Some(GrantType::JwtBearer),
            _ => None,
        }
    }

    /// The property's value, as the token request names the grant.
    pub fn name(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::JwtBearer => GrantType::JWT_BEARER,
        }
    }
}

/// A share of something, from 0 to 1, kept in millionths (so that configurations compare
/// equal): `sasl.login.refresh.window.factor` and `.jitter`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Share(u32);

impl Share {
    /// `value` (from 0 to 1), to the millionth.
    pub fn new(value: f64) -> Option<Share> {
        (0.0..=1.0)
            .contains(&value)
            .then(|| Share((value * 1e6).round() as u32))
    }

    /// The share.
    pub fn get(self) -> f64 {
        f64::from(self.0) / 1e6
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// The OIDC settings of a [`PoolConfig`](crate::PoolConfig): `sasl.oauthbearer.*` for the
/// token endpoint and `sasl.login.*`, with the Java client's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcConfig {
    /// `sasl.oauthbearer.method`: `None` until set; the token endpoint's URL alone selects
    /// `oidc`, as in the Java client.
    pub method: Option<OAuthBearerMethod>,
    /// `sasl.oauthbearer.token.endpoint.url`: the endpoint, `http://` or `https://`.
    pub token_endpoint_url: Option<String>,
    /// `sasl.oauthbearer.grant.type` (librdkafka's): `client_credentials`, the default, or
    /// the JWT bearer grant.
    pub grant_type: GrantType,
    /// `sasl.oauthbearer.client.credentials.client.id` (librdkafka:
    /// `sasl.oauthbearer.client.id`).
    pub client_id: Option<String>,
    /// `sasl.oauthbearer.client.credentials.client.secret` (librdkafka:
    /// `sasl.oauthbearer.client.secret`). Shown as `<redacted>` by `Debug`.
    pub client_secret: Option<Password>,
    /// `sasl.oauthbearer.scope`: the scope asked for; none when unset.
    pub scope: Option<String>,
    /// `sasl.oauthbearer.extensions` (librdkafka's): SASL extensions sent with every token.
    pub extensions: BTreeMap<String, String>,
    /// `sasl.oauthbearer.header.urlencode`: whether the client id and secret are
    /// form-encoded before they go into the `Authorization` header (RFC 6749 §2.3.1). Default
    /// `false`, as in the Java client.
    pub header_urlencode: bool,
    /// `sasl.oauthbearer.ssl.ca.location` (librdkafka: `https.ca.location`): the CAs that may
    /// sign an `https` endpoint's certificate; the system's trust store when unset.
    pub ssl_ca_location: Option<PathBuf>,
    /// `sasl.login.connect.timeout.ms`: the longest a connection to the endpoint may take.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// `sasl.login.read.timeout.ms`: the longest the endpoint may take to answer. Default 10 s.
    pub read_timeout: Duration,
    /// `sasl.login.retry.backoff.ms`: the first pause after a failed fetch. Default 100 ms.
    pub retry_backoff: Duration,
    /// `sasl.login.retry.backoff.max.ms`: the longest pause. Default 10 s.
    pub retry_backoff_max: Duration,
    /// `sasl.login.refresh.window.factor`: the share of a token's lifetime after which the
    /// next is fetched. Default 0.8; from 0.5 to 1.
    pub refresh_window_factor: Share,
    /// `sasl.login.refresh.window.jitter`: at most this share of the lifetime is added at
    /// random. Default 0.05; from 0 to 0.25.
    pub refresh_window_jitter: Share,
    /// `sasl.oauthbearer.assertion.algorithm`: RS256 (default) or ES256.
    pub assertion_algorithm: AssertionAlgorithm,
    /// `sasl.oauthbearer.assertion.private.key.file`: the unencrypted PEM key that signs the
    /// JWT bearer grant's assertions.
    pub assertion_private_key_file: Option<PathBuf>,
    /// `sasl.oauthbearer.assertion.file`: a file holding a ready assertion, read again at
    /// each fetch (instead of a key that signs one).
    pub assertion_file: Option<PathBuf>,
    /// `sasl.oauthbearer.assertion.template.file`: JSON `{"header": {...}, "payload": {...}}`
    /// whose fields go into each signed assertion.
    pub assertion_template_file: Option<PathBuf>,
    /// `sasl.oauthbearer.assertion.claim.iss`.
    pub assertion_claim_iss: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.sub`.
    pub assertion_claim_sub: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.aud`.
    pub assertion_claim_aud: Option<String>,
    /// `sasl.oauthbearer.assertion.claim.exp.seconds`: how long an assertion is valid.
    /// Default 300 s.
    pub assertion_claim_exp: Duration,
    /// `sasl.oauthbearer.assertion.claim.nbf.seconds`: how long before its issue an assertion
    /// is valid from (for clocks behind the endpoint's). Default 60 s.
    pub assertion_claim_nbf: Duration,
    /// `sasl.oauthbearer.assertion.claim.jti.include`: whether each assertion carries a
    /// random `jti`. Default `false`.
    pub assertion_claim_jti_include: bool,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            method: None,
            token_endpoint_url: None,
            client_id: None,
            client_secret: None,
            scope: None,
            extensions: BTreeMap::new(),
            header_urlencode: false,
            ssl_ca_location: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
            refresh_window_factor: Share(800_000),
            refresh_window_jitter: Share(50_000),
            grant_type: GrantType::ClientCredentials,
            assertion_algorithm: AssertionAlgorithm::Rs256,
            assertion_private_key_file: None,
            assertion_file: None,
            assertion_template_file: None,
            assertion_claim_iss: None,
            assertion_claim_sub: None,
            assertion_claim_aud: None,
            assertion_claim_exp: Duration::from_secs(300),
            assertion_claim_nbf: Duration::from_secs(60),
            assertion_claim_jti_include: false,
        }
    }
}

impl OidcConfig {
    /// Whether the token comes from the endpoint: `sasl.oauthbearer.method=oidc`, or the URL
    /// set with no method.
    pub fn selected(&self) -> bool {
        match self.method {
            Some(m) => m == OAuthBearerMethod::Oidc,
            None => self.token_endpoint_url.is_some(),
        }
    }

    /// The settings set: (property, value shown), for the checks that refuse them where they
    /// would be ignored.
    pub(crate) fn set(&self) -> Vec<(&'static str, String)> {
        let mut set = Vec::new();
        if let Some(m) = self.method.filter(|m| *m != OAuthBearerMethod::Default) {
            set.push(("sasl.oauthbearer.method", m.name().to_owned()));
        }
        if let Some(url) = &self.token_endpoint_url {
            set.push(("sasl.oauthbearer.token.endpoint.url", url.clone()));
        }
        if let Some(id) = &self.client_id {
            set.push(("sasl.oauthbearer.client.credentials.client.id", id.clone()));
        }
        if self.client_secret.is_some() {
            set.push((
                "sasl.oauthbearer.client.credentials.client.secret",
                "<redacted>".to_owned(),
            ));
        }
        if let Some(scope) = &self.scope {
            set.push(("sasl.oauthbearer.scope", scope.clone()));
        }
        if !self.extensions.is_empty() {
            set.push((
                "sasl.oauthbearer.extensions",
                extensions_shown(&self.extensions),
            ));
        }
        if let Some(ca) = &self.ssl_ca_location {
            set.push(("sasl.oauthbearer.ssl.ca.location", ca.display().to_string()));
        }
        if self.grant_type == GrantType::JwtBearer {
            set.push((
                "sasl.oauthbearer.grant.type",
                GrantType::JWT_BEARER.to_owned(),
            ));
        }
        set.extend(self.assertion_set());
        set
    }

    /// The JWT bearer grant's settings that are set, (property, value shown).
    fn assertion_set(&self) -> Vec<(&'static str, String)> {
        let mut set = Vec::new();
        for (property, path) in [
            (
                "sasl.oauthbearer.assertion.private.key.file",
                &self.assertion_private_key_file,
            ),
            ("sasl.oauthbearer.assertion.file", &self.assertion_file),
            (
                "sasl.oauthbearer.assertion.template.file",
                &self.assertion_template_file,
            ),
        ] {
            if let Some(p) = path {
                set.push((property, p.display().to_string()));
            }
        }
        for (property, claim) in [
            (
                "sasl.oauthbearer.assertion.claim.iss",
                &self.assertion_claim_iss,
            ),
            (
                "sasl.oauthbearer.assertion.claim.sub",
                &self.assertion_claim_sub,
            ),
            (
                "sasl.oauthbearer.assertion.claim.aud",
                &self.assertion_claim_aud,
            ),
        ] {
            if let Some(c) = claim {
                set.push((property, c.clone()));
            }
        }
        set
    }

    /// Checks the OIDC settings of an OAUTHBEARER configuration: with OIDC selected, the
    /// endpoint is a URL and the client is named; without, none of its settings is set.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.selected() {
            if let Some((property, value)) = self.set().into_iter().next() {
                return Err(ConfigError::unusable(
                    property,
                    &value,
                    "it is for sasl.oauthbearer.method=oidc (or the token endpoint's URL set \
                     alone), and sasl.oauthbearer.method is default",
                ));
            }
            return Ok(());
        }
        let Some(url) = &self.token_endpoint_url else {
            return Err(ConfigError::invalid(
                "sasl.oauthbearer.token.endpoint.url",
                "",
                "the OAuth token endpoint's http:// or https:// URL: \
                 sasl.oauthbearer.method=oidc needs one",
            ));
        };
        let endpoint = HttpEndpoint::parse(url).ok_or_else(|| {
            ConfigError::invalid(
                "sasl.oauthbearer.token.endpoint.url",
                url,
                "an http:// or https:// URL with a host (no query or fragment)",
            )
        })?;
        if let (false, Some(ca)) = (endpoint.tls, &self.ssl_ca_location) {
            return Err(ConfigError::unusable(
                "sasl.oauthbearer.ssl.ca.location",
                &ca.display().to_string(),
                "the token endpoint's URL is http://, not https://",
            ));
        }
        match self.grant_type {
            GrantType::ClientCredentials => {
                if self.client_id.is_none() {
                    return Err(ConfigError::invalid(
                        "sasl.oauthbearer.client.credentials.client.id",
                        "",
                        "the client's id at the token endpoint: the client credentials grant \
                         needs one",
                    ));
                }
                if self.client_secret.is_none() {
                    return Err(ConfigError::invalid(
                        "sasl.oauthbearer.client.credentials.client.secret",
                        "",
                        "the client's secret at the token endpoint: the client credentials \
                         grant needs one",
                    ));
                }
                if let Some((property, value)) = self.assertion_set().into_iter().next() {
                    return Err(ConfigError::unusable(
                        property,
                        &value,
                        "it is for sasl.oauthbearer.grant.type=urn:ietf:params:oauth:grant-type:jwt-bearer, \
                         and the grant type is client_credentials",
                    ));
                }
            }
            GrantType::JwtBearer => {
                match (&self.client_id, &self.client_secret) {
                    (Some(_), None) => {
                        return Err(ConfigError::invalid(
                            "sasl.oauthbearer.client.credentials.client.secret",
                            "",
                            "the client's secret, since its id is set (the JWT bearer grant \
                             sends both, or neither)",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::invalid(
                            "sasl.oauthbearer.client.credentials.client.id",
                            "",
                            "the client's id, since its secret is set (the JWT bearer grant \
                             sends both, or neither)",
                        ));
                    }
                    _ => {}
                }
                match (&self.assertion_private_key_file, &self.assertion_file) {
                    (None, None) => {
                        return Err(ConfigError::invalid(
                            "sasl.oauthbearer.assertion.private.key.file",
                            "",
                            "the PEM key that signs the assertions (or \
                             sasl.oauthbearer.assertion.file, a file holding one): the JWT \
                             bearer grant needs one",
                        ));
                    }
                    (Some(_), Some(file)) => {
                        return Err(ConfigError::unusable(
                            "sasl.oauthbearer.assertion.file",
                            &file.display().to_string(),
                            "sasl.oauthbearer.assertion.private.key.file is set too: the \
                             assertion is signed or read, not both",
                        ));
                    }
                    (None, Some(file)) => {
                        if let Some((property, _)) = self
                            .assertion_set()
                            .into_iter()
                            .find(|(p, _)| *p != "sasl.oauthbearer.assertion.file")
                        {
                            return Err(ConfigError::unusable(
                                property,
                                &file.display().to_string(),
                                "it is for an assertion kcon signs, and \
                                 sasl.oauthbearer.assertion.file gives a ready one",
                            ));
                        }
                    }
                    (Some(_), None) => {}
                }
            }
        }
        if self.retry_backoff > self.retry_backoff_max {
            return Err(ConfigError::unusable(
                "sasl.login.retry.backoff.ms",
                &self.retry_backoff.as_millis().to_string(),
                "at most sasl.login.retry.backoff.max.ms",
            ));
        }
        Ok(())
    }

    /// The token provider, its TLS settings loaded; `validate` has passed and OIDC is
    /// selected.
    pub(crate) fn provider(&self) -> Result<TokenProvider, ConfigError> {
        self.validate()?;
        let missing = |p: &str| ConfigError::invalid(p, "", "set");
        let url = self
            .token_endpoint_url
            .as_deref()
            .ok_or_else(|| missing("sasl.oauthbearer.token.endpoint.url"))?;
        let endpoint = HttpEndpoint::parse(url)
            .ok_or_else(|| missing("sasl.oauthbearer.token.endpoint.url"))?;
        let tls = if endpoint.tls {
            let config = client_config(TlsFiles {
                prefix: "sasl.oauthbearer.",
                ca_location: self.ssl_ca_location.as_deref(),
                certificate_location: None,
                key_location: None,
                verify_hostname: true,
            })?;
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        let client = self.client_id.clone().zip(self.client_secret.clone());
        let grant = match self.grant_type {
            GrantType::ClientCredentials => {
                let (id, secret) = client
                    .ok_or_else(|| missing("sasl.oauthbearer.client.credentials.client.id"))?;
                Grant::ClientCredentials { id, secret }
            }
            GrantType::JwtBearer => {
                let assertion = match (&self.assertion_private_key_file, &self.assertion_file) {
                    (Some(key), _) => Assertion::Signed(Box::new(Signer::load(
                        self.assertion_algorithm,
                        key,
                        self.assertion_template_file.as_deref(),
                        Claims {
                            iss: self.assertion_claim_iss.clone(),
                            sub: self.assertion_claim_sub.clone(),
                            aud: self.assertion_claim_aud.clone(),
                            exp: self.assertion_claim_exp,
                            nbf: self.assertion_claim_nbf,
                            jti: self.assertion_claim_jti_include,
                        },
                    )?)),
                    (None, Some(file)) => Assertion::File(file.clone()),
                    (None, None) => {
                        return Err(missing("sasl.oauthbearer.assertion.private.key.file"));
                    }
                };
                Grant::JwtBearer { client, assertion }
            }
        };
        Ok(TokenProvider::new(Oidc::new(OidcSettings {
            endpoint,
            tls,
            grant,
            scope: self.scope.clone(),
            extensions: self.extensions.clone(),
            header_urlencode: self.header_urlencode,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            backoff: ExponentialBackoff::new(self.retry_backoff, self.retry_backoff_max),
            refresh_factor: self.refresh_window_factor.get(),
            refresh_jitter: self.refresh_window_jitter.get(),
        })))
    }
}

/// `sasl.oauthbearer.extensions` as the property would say it.
pub(crate) fn extensions_shown(extensions: &BTreeMap<String, String>) -> String {
    extensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What `sasl.oauthbearer.extensions` allows, in words.
pub(crate) const EXTENSIONS_ALLOWED: &str = "comma-separated KEY=VALUE pairs, KEY letters only \
     and not auth, VALUE printable ASCII without commas, each KEY once; empty for none";

/// Reads `sasl.oauthbearer.extensions`: `KEY=VALUE,...`.
pub(crate) fn parse_extensions(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not KEY=VALUE"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!("extension key {key:?}: letters only (KIP-342)"));
        }
        if key == "auth" {
            return Err("the extension key auth is the token's own".to_owned());
        }
        if !value.bytes().all(|b| matches!(b, 0x20..=0x7e)) {
            return Err(format!("extension {key}: printable ASCII only"));
        }
        if out.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("extension {key} is given twice"));
        }
    }
    Ok(out)
}
