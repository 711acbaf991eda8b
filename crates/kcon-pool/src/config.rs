//! The pool's configuration: its typed fields, their defaults (the Java client's, librdkafka's
//! where Java has no such property) and the checks across them. Names and parsing are the
//! pool's property table's ([`crate::property`]); the TLS and SASL checks are in
//! `config/security.rs`.

use std::path::PathBuf;
use std::time::Duration;

use kcon_codec::frame::DEFAULT_MAX_FRAME_SIZE;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::property::{self, Configurable, Part, registry};
use kcon_core::{ConfigError, ExponentialBackoff};

use crate::property::{POOL, PROPERTIES, PoolSetting};
use crate::sasl::oauthbearer::{TokenProvider, UnsecuredJwt};
pub use aws::AwsConfig;
pub use kerberos::KerberosConfig;
pub use oidc::{AssertionAlgorithm, GrantType, OAuthBearerMethod, OidcConfig, Share};

pub mod aws;
pub mod kerberos;
pub mod oidc;
mod security;

pub(crate) use kcon_core::property::split_host_port;
pub use kcon_core::security::{EndpointIdentification, Password, SaslMechanism, SecurityProtocol};

/// The configuration of a [`Pool`](crate::Pool) and of the [`Connection`](crate::Connection)s
/// it makes.
///
/// Fields can be set directly or by Kafka property name with [`PoolConfig::set`]. Defaults are
/// the Java client's (librdkafka's where Java has no such property), as the property table
/// lists them.
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
    /// `metadata.recovery.strategy`: what the pool does when it cannot get the cluster's
    /// metadata from the brokers it knows (KIP-899): go back to `bootstrap.servers`
    /// ([`MetadataRecoveryStrategy::Rebootstrap`], the default, as in Kafka 4.0's clients) or
    /// keep trying the brokers it knows.
    pub metadata_recovery_strategy: MetadataRecoveryStrategy,
    /// `metadata.recovery.rebootstrap.trigger.ms`: under `rebootstrap`, how long the pool goes
    /// without metadata, trying, before it rebootstraps (KIP-1102). Default 5 min.
    pub metadata_recovery_rebootstrap_trigger: Duration,
    /// `reconnect.backoff.ms`: the first wait before reconnecting to a broker. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest wait before reconnecting. Default 1 s.
    pub reconnect_backoff_max: Duration,
    /// `retry.backoff.ms`: the first wait before a retry (KIP-580). Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest wait before a retry (KIP-580). Default 1 s.
    pub retry_backoff_max: Duration,
    /// `default.api.timeout.ms`: how long an admin call over the pool (kcon-admin's: a
    /// group described, listed, reset) keeps retrying a coordinator that is moving, loading
    /// or unreachable before it fails with the last error. Default 60 s.
    pub default_api_timeout: Duration,
    /// `connections.max.idle.ms`: a connection with nothing in flight for this long is closed;
    /// zero keeps idle connections open (librdkafka's meaning of 0). Default 9 min.
    pub connections_max_idle: Duration,
    /// `receive.message.max.bytes`: the largest answer accepted; a larger size prefix poisons
    /// the connection. Default 100 MiB.
    pub receive_message_max_bytes: usize,
    /// `allow.auto.create.topics`: whether Metadata requests for named topics may create them
    /// (on brokers configured to: `auto.create.topics.enable`). Default `true`, as in the Java
    /// consumer. A producer sending through a pool it shares asks for creation whatever it
    /// says, as the Java producer does ([`AutoCreate`](crate::AutoCreate)). Brokers older than
    /// Metadata v4 always may.
    pub allow_auto_create_topics: bool,
    /// `enable.metrics.push`: whether a client on this pool pushes its metrics to the cluster
    /// when a client-metrics subscription asks for them (KIP-714, [`Telemetry`](crate::telemetry::Telemetry)).
    /// Default `true`, as in the Java client.
    pub enable_metrics_push: bool,
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
    /// protocols. No default (Kafka's is GSSAPI, which needs kcon-pool's feature `gssapi`).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `sasl.username`: for PLAIN and SCRAM.
    pub sasl_username: Option<String>,
    /// `sasl.password`: for PLAIN and SCRAM. Shown as `<redacted>` by `Debug`.
    pub sasl_password: Option<Password>,
    /// `sasl.oauthbearer.token.file`: a file holding the OAUTHBEARER token (a JWT's compact
    /// form; surrounding whitespace is ignored), read again at each authentication and
    /// re-authentication.
    pub sasl_oauthbearer_token_file: Option<PathBuf>,
    /// `sasl.oauthbearer.config` (librdkafka's): the unsecured JWT OAUTHBEARER logs in with,
    /// made afresh at each authentication. Sent only with
    /// `enable_sasl_oauthbearer_unsecure_jwt`.
    pub sasl_oauthbearer_config: Option<UnsecuredJwt>,
    /// `enable.sasl.oauthbearer.unsecure.jwt` (librdkafka's): whether the unsecured JWT of
    /// `sasl.oauthbearer.config` may be sent. Default `false`: unsigned tokens are for
    /// development.
    pub enable_sasl_oauthbearer_unsecure_jwt: bool,
    /// The application's own token source for OAUTHBEARER (its identity provider's client):
    /// code, so it has no property name and is set on this field only. One token source is
    /// set: this, `sasl.oauthbearer.token.file`, or `sasl.oauthbearer.config`.
    pub sasl_oauthbearer_token_provider: Option<TokenProvider>,
    /// OAUTHBEARER's tokens from an OAuth token endpoint (`sasl.oauthbearer.method=oidc`,
    /// `sasl.oauthbearer.token.endpoint.url`, ...): one more source of tokens.
    pub sasl_oauthbearer_oidc: OidcConfig,
    /// GSSAPI's settings: `sasl.kerberos.service.name`, `.principal`, `.keytab`, `.ccache`.
    pub sasl_kerberos: KerberosConfig,
    /// `sasl.oauthbearer.method=aws_msk_iam`'s settings: `sasl.aws.region`, `sasl.aws.profile`.
    pub sasl_aws: AwsConfig,
    /// `api.version.max`: the highest version of each API named, whatever the broker
    /// advertises (`JoinGroup=5,SyncGroup=3`): for a broker or proxy that advertises versions
    /// it cannot serve. Default: none.
    pub api_version_max: Vec<(ApiKey, i16)>,
}

impl PoolConfig {
    /// Sets a property by its Kafka name from its string form, as the pool's property table
    /// ([`crate::property`]) reads it: durations are whole milliseconds, counts whole
    /// numbers, booleans `true`/`false`, `bootstrap.servers` a comma-separated list of
    /// `host:port`, names of protocols and mechanisms in any case; an empty file location or
    /// user name unsets it; `sasl.mechanisms` (librdkafka's spelling) is `sasl.mechanism`. A
    /// property the pool does not take is unknown here. A bad value is refused with an error
    /// naming the property and what it accepts, and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        property::set(PROPERTIES, self, name, value)
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
                return Err(registry::refused(PROPERTIES, "bootstrap.servers", server));
            }
        }
        // Counts set directly are checked against the table's range for them.
        for (name, value) in [
            (
                "max.in.flight.requests.per.connection",
                self.max_in_flight_requests_per_connection,
            ),
            ("receive.message.max.bytes", self.receive_message_max_bytes),
        ] {
            registry::check(PROPERTIES, name, &value.to_string())?;
        }
        for (name, value) in [
            ("request.timeout.ms", self.request_timeout),
            (
                "socket.connection.setup.timeout.ms",
                self.socket_connection_setup_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(registry::refused(PROPERTIES, name, "0"));
            }
        }
        self.validate_security()
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

/// `metadata.recovery.strategy`: what the pool does when the brokers it knows cannot give it
/// the cluster's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MetadataRecoveryStrategy {
    /// `rebootstrap`: close every connection, forget the brokers, and ask `bootstrap.servers`
    /// (resolved again) for the metadata: when every known broker is unreachable, when no
    /// metadata came for `metadata.recovery.rebootstrap.trigger.ms`, and when a broker answers
    /// REBOOTSTRAP_REQUIRED.
    #[default]
    Rebootstrap,
    /// `none`: keep trying the brokers of the last metadata answer.
    None,
}

impl MetadataRecoveryStrategy {
    /// Reads the property's value, in any case.
    pub fn parse(value: &str) -> Option<MetadataRecoveryStrategy> {
        if value.eq_ignore_ascii_case("rebootstrap") {
            Some(MetadataRecoveryStrategy::Rebootstrap)
        } else if value.eq_ignore_ascii_case("none") {
            Some(MetadataRecoveryStrategy::None)
        } else {
            None
        }
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
            metadata_recovery_strategy: MetadataRecoveryStrategy::Rebootstrap,
            metadata_recovery_rebootstrap_trigger: Duration::from_millis(300_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            default_api_timeout: Duration::from_millis(60_000),
            connections_max_idle: Duration::from_millis(540_000),
            receive_message_max_bytes: DEFAULT_MAX_FRAME_SIZE,
            allow_auto_create_topics: true,
            enable_metrics_push: true,
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_endpoint_identification_algorithm: EndpointIdentification::Https,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_oauthbearer_token_file: None,
            sasl_oauthbearer_config: None,
            enable_sasl_oauthbearer_unsecure_jwt: false,
            sasl_oauthbearer_token_provider: None,
            sasl_oauthbearer_oidc: OidcConfig::default(),
            sasl_kerberos: KerberosConfig::default(),
            sasl_aws: AwsConfig::default(),
            api_version_max: Vec::new(),
        }
    }
}

impl Configurable<PoolSetting> for PoolConfig {
    const PART: Part = POOL;

    fn apply(&mut self, setting: &PoolSetting) -> bool {
        match setting {
            PoolSetting::BootstrapServers(s) => self.bootstrap_servers = s.clone(),
            PoolSetting::ClientId(id) => self.client_id = id.clone(),
            PoolSetting::SocketConnectionSetupTimeout(d) => {
                self.socket_connection_setup_timeout = *d
            }
            PoolSetting::RequestTimeout(d) => self.request_timeout = *d,
            PoolSetting::MaxInFlightRequestsPerConnection(n) => {
                self.max_in_flight_requests_per_connection = *n;
            }
            PoolSetting::MetadataMaxAge(d) => self.metadata_max_age = *d,
            PoolSetting::MetadataRecoveryStrategy(m) => self.metadata_recovery_strategy = *m,
            PoolSetting::MetadataRecoveryRebootstrapTrigger(d) => {
                self.metadata_recovery_rebootstrap_trigger = *d;
            }
            PoolSetting::ReconnectBackoff(d) => self.reconnect_backoff = *d,
            PoolSetting::ReconnectBackoffMax(d) => self.reconnect_backoff_max = *d,
            PoolSetting::RetryBackoff(d) => self.retry_backoff = *d,
            PoolSetting::RetryBackoffMax(d) => self.retry_backoff_max = *d,
            PoolSetting::DefaultApiTimeout(d) => self.default_api_timeout = *d,
            PoolSetting::ConnectionsMaxIdle(d) => self.connections_max_idle = *d,
            PoolSetting::ReceiveMessageMaxBytes(n) => self.receive_message_max_bytes = *n,
            PoolSetting::AllowAutoCreateTopics(on) => self.allow_auto_create_topics = *on,
            PoolSetting::EnableMetricsPush(on) => self.enable_metrics_push = *on,
            PoolSetting::SecurityProtocol(p) => self.security_protocol = *p,
            PoolSetting::SslCaLocation(p) => self.ssl_ca_location = p.clone(),
            PoolSetting::SslCertificateLocation(p) => self.ssl_certificate_location = p.clone(),
            PoolSetting::SslKeyLocation(p) => self.ssl_key_location = p.clone(),
            PoolSetting::SslEndpointIdentificationAlgorithm(e) => {
                self.ssl_endpoint_identification_algorithm = *e;
            }
            PoolSetting::SaslMechanism(m) => self.sasl_mechanism = Some(*m),
            PoolSetting::SaslUsername(u) => self.sasl_username = u.clone(),
            PoolSetting::SaslPassword(p) => self.sasl_password = Some(p.clone()),
            PoolSetting::SaslOauthbearerTokenFile(p) => {
                self.sasl_oauthbearer_token_file = p.clone();
            }
            PoolSetting::SaslOauthbearerConfig(c) => self.sasl_oauthbearer_config = c.clone(),
            PoolSetting::EnableSaslOauthbearerUnsecureJwt(on) => {
                self.enable_sasl_oauthbearer_unsecure_jwt = *on;
            }
            PoolSetting::SaslKerberosServiceName(n) => self.sasl_kerberos.service_name = n.clone(),
            PoolSetting::SaslKerberosPrincipal(p) => self.sasl_kerberos.principal = p.clone(),
            PoolSetting::SaslKerberosKeytab(k) => self.sasl_kerberos.keytab = k.clone(),
            PoolSetting::SaslKerberosCcache(c) => self.sasl_kerberos.ccache = c.clone(),
            PoolSetting::SaslAwsRegion(r) => self.sasl_aws.region = r.clone(),
            PoolSetting::SaslAwsProfile(p) => self.sasl_aws.profile = p.clone(),
            PoolSetting::SaslAwsRoleArn(r) => self.sasl_aws.role_arn = r.clone(),
            PoolSetting::SaslAwsRoleSessionName(n) => {
                self.sasl_aws.role_session_name = n.clone();
            }
            PoolSetting::SaslOauthbearerMethod(m) => self.sasl_oauthbearer_oidc.method = Some(*m),
            PoolSetting::SaslOauthbearerTokenEndpointUrl(u) => {
                self.sasl_oauthbearer_oidc.token_endpoint_url = u.clone();
            }
            PoolSetting::SaslOauthbearerClientId(id) => {
                self.sasl_oauthbearer_oidc.client_id = id.clone();
            }
            PoolSetting::SaslOauthbearerClientSecret(s) => {
                self.sasl_oauthbearer_oidc.client_secret = s.clone();
            }
            PoolSetting::SaslOauthbearerScope(s) => self.sasl_oauthbearer_oidc.scope = s.clone(),
            PoolSetting::SaslOauthbearerExtensions(e) => {
                self.sasl_oauthbearer_oidc.extensions = e.clone();
            }
            PoolSetting::SaslOauthbearerHeaderUrlencode(on) => {
                self.sasl_oauthbearer_oidc.header_urlencode = *on;
            }
            PoolSetting::SaslOauthbearerSslCaLocation(p) => {
                self.sasl_oauthbearer_oidc.ssl_ca_location = p.clone();
            }
            PoolSetting::SaslLoginConnectTimeout(d) => {
                self.sasl_oauthbearer_oidc.connect_timeout = *d;
            }
            PoolSetting::SaslLoginReadTimeout(d) => self.sasl_oauthbearer_oidc.read_timeout = *d,
            PoolSetting::SaslLoginRetryBackoff(d) => self.sasl_oauthbearer_oidc.retry_backoff = *d,
            PoolSetting::SaslLoginRetryBackoffMax(d) => {
                self.sasl_oauthbearer_oidc.retry_backoff_max = *d;
            }
            PoolSetting::SaslLoginRefreshWindowFactor(f) => {
                self.sasl_oauthbearer_oidc.refresh_window_factor = *f;
            }
            PoolSetting::SaslLoginRefreshWindowJitter(j) => {
                self.sasl_oauthbearer_oidc.refresh_window_jitter = *j;
            }
            PoolSetting::SaslOauthbearerGrantType(g) => self.sasl_oauthbearer_oidc.grant_type = *g,
            PoolSetting::SaslOauthbearerAssertionAlgorithm(a) => {
                self.sasl_oauthbearer_oidc.assertion_algorithm = *a;
            }
            PoolSetting::SaslOauthbearerAssertionPrivateKeyFile(p) => {
                self.sasl_oauthbearer_oidc.assertion_private_key_file = p.clone();
            }
            PoolSetting::SaslOauthbearerAssertionFile(p) => {
                self.sasl_oauthbearer_oidc.assertion_file = p.clone();
            }
            PoolSetting::SaslOauthbearerAssertionTemplateFile(p) => {
                self.sasl_oauthbearer_oidc.assertion_template_file = p.clone();
            }
            PoolSetting::SaslOauthbearerAssertionClaimIss(c) => {
                self.sasl_oauthbearer_oidc.assertion_claim_iss = c.clone();
            }
            PoolSetting::SaslOauthbearerAssertionClaimSub(c) => {
                self.sasl_oauthbearer_oidc.assertion_claim_sub = c.clone();
            }
            PoolSetting::SaslOauthbearerAssertionClaimAud(c) => {
                self.sasl_oauthbearer_oidc.assertion_claim_aud = c.clone();
            }
            PoolSetting::SaslOauthbearerAssertionClaimExp(d) => {
                self.sasl_oauthbearer_oidc.assertion_claim_exp = *d;
            }
            PoolSetting::SaslOauthbearerAssertionClaimNbf(d) => {
                self.sasl_oauthbearer_oidc.assertion_claim_nbf = *d;
            }
            PoolSetting::SaslOauthbearerAssertionClaimJtiInclude(on) => {
                self.sasl_oauthbearer_oidc.assertion_claim_jti_include = *on;
            }
            PoolSetting::ApiVersionMax(caps) => self.api_version_max = caps.clone(),
        }
        true
    }
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
        assert_eq!(c.default_api_timeout, Duration::from_secs(60));
        assert_eq!(c.connections_max_idle, Duration::from_secs(540));
        assert_eq!(c.receive_message_max_bytes, 100 * 1024 * 1024);
        assert_eq!(
            registry::defaults_disagreeing::<_, PoolConfig>(PROPERTIES),
            [] as [&str; 0],
            "the table's defaults are the pool's"
        );
    }

    #[test]
    fn every_listed_property_is_settable() {
        let good = |name: &str| match name {
            "bootstrap.servers" => "a:1, [::1]:9092,",
            "client.id" => "me",
            "allow.auto.create.topics" => "false",
            "enable.metrics.push" => "false",
            "max.in.flight.requests.per.connection" => "7",
            "security.protocol" => "sasl_ssl",
            "ssl.ca.location" => "/etc/kafka/ca.pem",
            "ssl.certificate.location" => "/etc/kafka/client.pem",
            "ssl.key.location" => "/etc/kafka/client.key",
            "ssl.endpoint.identification.algorithm" => "NONE",
            "sasl.mechanism" => "scram-sha-512",
            "sasl.username" => "alice",
            "sasl.password" => " pass word ",
            "sasl.oauthbearer.token.file" => "/run/token.jwt",
            "sasl.oauthbearer.config" => "principal=alice scope=a,b lifeSeconds=60",
            "enable.sasl.oauthbearer.unsecure.jwt" => "true",
            "api.version.max" => " joingroup=5 , SyncGroup = 3,",
            "metadata.recovery.strategy" => " NONE ",
            "sasl.oauthbearer.method" => "OIDC",
            "sasl.oauthbearer.token.endpoint.url" => "https://idp.example/oauth2/token",
            "sasl.oauthbearer.client.credentials.client.id" => "kcon-app",
            "sasl.oauthbearer.client.credentials.client.secret" => " s ",
            "sasl.oauthbearer.scope" => "kafka",
            "sasl.oauthbearer.extensions" => "logicalCluster=lkc-1, identityPoolId=p",
            "sasl.oauthbearer.header.urlencode" => "true",
            "sasl.oauthbearer.ssl.ca.location" => "/etc/idp/ca.pem",
            "sasl.login.refresh.window.factor" => "0.9",
            "sasl.login.refresh.window.jitter" => "0",
            "sasl.oauthbearer.grant.type" => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "sasl.oauthbearer.assertion.algorithm" => "es256",
            "sasl.oauthbearer.assertion.private.key.file" => "/etc/kcon/assertion-key.pem",
            "sasl.oauthbearer.assertion.file" => "/run/assertion.jwt",
            "sasl.oauthbearer.assertion.template.file" => "/etc/kcon/template.json",
            "sasl.oauthbearer.assertion.claim.iss" => "kcon-svc",
            "sasl.oauthbearer.assertion.claim.sub" => "billing",
            "sasl.oauthbearer.assertion.claim.aud" => "https://idp.example/oauth2/token",
            "sasl.oauthbearer.assertion.claim.exp.seconds" => "120",
            "sasl.oauthbearer.assertion.claim.nbf.seconds" => "0",
            "sasl.oauthbearer.assertion.claim.jti.include" => "true",
            "sasl.kerberos.service.name" => "kafka-prod",
            "sasl.kerberos.principal" => "kcon@KCON.TEST",
            "sasl.kerberos.keytab" => "/etc/kcon/kcon.keytab",
            "sasl.kerberos.ccache" => "FILE:/run/kcon.cc",
            "sasl.aws.region" => "eu-west-1",
            "sasl.aws.profile" => "msk",
            "sasl.aws.role.arn" => "arn:aws:iam::123456789012:role/msk",
            "sasl.aws.role.session.name" => "billing",
            _ => "5000",
        };
        let mut c = PoolConfig::default();
        for p in registry::properties_of(PROPERTIES, POOL) {
            c.set(p.name, good(p.name)).unwrap();
        }
        assert_eq!(c.bootstrap_servers, ["a:1", "[::1]:9092"]);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_in_flight_requests_per_connection, 7);
        assert_eq!(c.receive_message_max_bytes, 5000);
        assert_eq!(c.metadata_recovery_strategy, MetadataRecoveryStrategy::None);
        assert_eq!(
            c.metadata_recovery_rebootstrap_trigger,
            Duration::from_secs(5)
        );
        assert!(!c.allow_auto_create_topics);
        assert!(!c.enable_metrics_push);
        assert_eq!(c.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            c.ssl_endpoint_identification_algorithm,
            EndpointIdentification::None
        );
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        assert_eq!(c.sasl_password, Some(Password::new(" pass word ")));
        assert_eq!(
            c.api_version_max,
            [(ApiKey::JoinGroup, 5), (ApiKey::SyncGroup, 3)]
        );
        assert_eq!(
            c.sasl_oauthbearer_token_file.as_deref(),
            Some(std::path::Path::new("/run/token.jwt"))
        );
        let jwt = c.sasl_oauthbearer_config.clone().unwrap();
        assert_eq!((jwt.principal.as_str(), jwt.scope.len()), ("alice", 2));
        assert!(c.enable_sasl_oauthbearer_unsecure_jwt);
        let oidc = &c.sasl_oauthbearer_oidc;
        assert_eq!(oidc.method, Some(OAuthBearerMethod::Oidc));
        assert_eq!(
            oidc.token_endpoint_url.as_deref(),
            Some("https://idp.example/oauth2/token")
        );
        assert_eq!(oidc.client_id.as_deref(), Some("kcon-app"));
        assert_eq!(oidc.client_secret, Some(Password::new(" s ")));
        assert_eq!(oidc.scope.as_deref(), Some("kafka"));
        assert_eq!(oidc.extensions["logicalCluster"], "lkc-1");
        assert_eq!(oidc.extensions["identityPoolId"], "p");
        assert!(oidc.header_urlencode);
        assert_eq!(oidc.connect_timeout, Duration::from_secs(5));
        assert_eq!(oidc.retry_backoff_max, Duration::from_secs(5));
        assert_eq!(
            (
                oidc.refresh_window_factor.get(),
                oidc.refresh_window_jitter.get()
            ),
            (0.9, 0.0)
        );
        assert_eq!(oidc.grant_type, GrantType::JwtBearer);
        assert_eq!(oidc.assertion_algorithm, AssertionAlgorithm::Es256);
        assert_eq!(
            oidc.assertion_private_key_file.as_deref(),
            Some(std::path::Path::new("/etc/kcon/assertion-key.pem"))
        );
        assert_eq!(
            oidc.assertion_file.as_deref(),
            Some(std::path::Path::new("/run/assertion.jwt"))
        );
        assert!(oidc.assertion_template_file.is_some());
        assert_eq!(
            (
                oidc.assertion_claim_iss.as_deref(),
                oidc.assertion_claim_sub.as_deref(),
                oidc.assertion_claim_aud.as_deref()
            ),
            (
                Some("kcon-svc"),
                Some("billing"),
                Some("https://idp.example/oauth2/token")
            )
        );
        assert_eq!(
            (oidc.assertion_claim_exp, oidc.assertion_claim_nbf),
            (Duration::from_secs(120), Duration::ZERO)
        );
        assert!(oidc.assertion_claim_jti_include);
        assert_eq!(
            c.sasl_kerberos,
            KerberosConfig {
                service_name: "kafka-prod".to_owned(),
                principal: Some("kcon@KCON.TEST".to_owned()),
                keytab: Some("/etc/kcon/kcon.keytab".into()),
                ccache: Some("FILE:/run/kcon.cc".to_owned()),
            }
        );
        // The Kerberos properties are for GSSAPI, and the token properties for OAUTHBEARER,
        // which the mechanism set here is neither.
        assert_eq!(
            c.validate().unwrap_err().property(),
            "sasl.kerberos.service.name"
        );
        c.sasl_kerberos = KerberosConfig::default();
        assert_eq!(
            c.validate().unwrap_err().property(),
            "sasl.oauthbearer.token.file"
        );
        c.set("sasl.oauthbearer.token.file", "").unwrap();
        c.sasl_oauthbearer_oidc = OidcConfig::default();
        assert_eq!(
            c.sasl_aws,
            AwsConfig {
                region: Some("eu-west-1".to_owned()),
                profile: Some("msk".to_owned()),
                role_arn: Some("arn:aws:iam::123456789012:role/msk".to_owned()),
                role_session_name: Some("billing".to_owned()),
            }
        );
        c.sasl_aws = AwsConfig::default();
        c.set("sasl.oauthbearer.config", "").unwrap();
        c.set("enable.sasl.oauthbearer.unsecure.jwt", "false")
            .unwrap();
        c.validate().unwrap();
        c.set("sasl.mechanisms", "PLAIN").unwrap();
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::Plain));
        c.set("ssl.ca.location", "").unwrap();
        assert_eq!(c.ssl_ca_location, None);
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
                property: "fetch.min.bytes".into(),
                suggestion: None,
            }
        );
        assert_eq!(c, before, "a refused value changes nothing");
    }

    /// A connection property mistyped is named with the one meant: the pool's configuration is
    /// what the admin calls (kcon-admin) and the tool's commands other than consume take.
    #[test]
    fn an_unknown_property_suggests_the_connection_property_meant() {
        let mut c = PoolConfig::default();
        let before = c.clone();
        let e = c.set("bootstrap.server", "a:1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown configuration property bootstrap.server (did you mean bootstrap.servers?)"
        );
        let e = c.set("SECURITY_PROTOCOL", "SSL").unwrap_err();
        assert_eq!(e.suggestion(), Some("security.protocol"), "{e}");
        let e = c.set("sasl.mechansims", "PLAIN").unwrap_err();
        assert_eq!(e.suggestion(), Some("sasl.mechanisms"), "an alias too: {e}");
        let e = c.set("fetch.min.bytes", "1").unwrap_err();
        assert_eq!(e.suggestion(), None, "{e}");
        assert_eq!(c, before, "a refused name changes nothing");
    }

    #[test]
    fn api_version_max_names_what_it_refuses() {
        let mut c = PoolConfig::default();
        let e = c.set("api.version.max", "JoinGrup=5").unwrap_err();
        assert_eq!(e.property(), "api.version.max");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "cannot use \"JoinGrup=5\" for api.version.max: \"JoinGrup\" is not an API kcon \
                 speaks; it speaks Produce, Fetch,"
            ),
            "{text}"
        );
        assert!(text.contains("JoinGroup"), "{text}");
        let e = c.set("api.version.max", "Fetch=3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot use \"Fetch=3\" for api.version.max: kcon speaks Fetch v4 to v17: a cap at \
             v3 leaves no version"
        );
        for bad in [
            "JoinGroup",
            "JoinGroup=five",
            "JoinGroup=5=6",
            "JoinGroup=99999",
        ] {
            let e = c.set("api.version.max", bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("expected comma-separated API=VERSION pairs"),
                "{bad}: {e}"
            );
        }
        let e = c
            .set("api.version.max", "JoinGroup=5,joingroup=4")
            .unwrap_err();
        assert!(e.to_string().ends_with("JoinGroup is named twice"), "{e}");
        assert_eq!(c.api_version_max, [], "a refused value changes nothing");
        c.set("api.version.max", "LeaveGroup=2").unwrap();
        c.set("api.version.max", "").unwrap();
        assert_eq!(c.api_version_max, [], "empty: no caps");
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
}
