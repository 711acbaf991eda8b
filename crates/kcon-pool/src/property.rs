//! The pool's properties: connections, metadata, TLS and SASL. Every client built on the pool
//! takes them (the consumer's `ConsumerBuilder`, the producer); the consumer's other parts have
//! tables of their own, and a property several parts take (`retry.backoff.ms`) is in each of
//! their tables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::versions::SUPPORTED;
use kcon_core::ConfigError;
use kcon_core::property::registry::{DefaultValue, Input, Kind, Part, Property};
use kcon_core::property::split_host_port;
use kcon_core::security::{EndpointIdentification, Password, SaslMechanism, SecurityProtocol};

use crate::config::MetadataRecoveryStrategy;
use crate::config::kerberos::DEFAULT_SERVICE_NAME;
use crate::config::oidc::{
    AssertionAlgorithm, EXTENSIONS_ALLOWED, GrantType, OAuthBearerMethod, Share, parse_extensions,
};
use crate::sasl::oauthbearer::{UNSECURED_JWT_ALLOWED, UnsecuredJwt};

/// kcon-pool's `PoolConfig`: connections, metadata, TLS and SASL.
pub const POOL: Part = Part::new("pool");

const MAX_COUNT: usize = i32::MAX as usize;
const SERVERS: &str = "a comma-separated list of host:port, port from 1 to 65535";
const FILE: &str = "the path of a PEM file; empty unsets it";
const API_VERSIONS: &str = "comma-separated API=VERSION pairs, each API named once by its \
     Kafka protocol name (JoinGroup, SyncGroup, LeaveGroup, Fetch, ...) among those kcon speaks, \
     VERSION a whole number at least kcon's lowest version of it; empty for none";

/// One of the pool's properties, read by its entry in [`PROPERTIES`]: a
/// [`PoolConfig`](crate::PoolConfig) takes it into a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolSetting {
    /// `client.id`.
    ClientId(String),
    /// `socket.connection.setup.timeout.ms`.
    SocketConnectionSetupTimeout(Duration),
    /// `request.timeout.ms`.
    RequestTimeout(Duration),
    /// `max.in.flight.requests.per.connection`.
    MaxInFlightRequestsPerConnection(usize),
    /// `metadata.max.age.ms`.
    MetadataMaxAge(Duration),
    /// `metadata.recovery.strategy`.
    MetadataRecoveryStrategy(MetadataRecoveryStrategy),
    /// `metadata.recovery.rebootstrap.trigger.ms`.
    MetadataRecoveryRebootstrapTrigger(Duration),
    /// `reconnect.backoff.ms`.
    ReconnectBackoff(Duration),
    /// `reconnect.backoff.max.ms`.
    ReconnectBackoffMax(Duration),
    /// `retry.backoff.ms`.
    RetryBackoff(Duration),
    /// `retry.backoff.max.ms`.
    RetryBackoffMax(Duration),
    /// `default.api.timeout.ms`.
    DefaultApiTimeout(Duration),
    /// `connections.max.idle.ms`.
    ConnectionsMaxIdle(Duration),
    /// `receive.message.max.bytes`.
    ReceiveMessageMaxBytes(usize),
    /// `allow.auto.create.topics`.
    AllowAutoCreateTopics(bool),
    /// `enable.metrics.push`.
    EnableMetricsPush(bool),
    /// `security.protocol`.
    SecurityProtocol(SecurityProtocol),
    /// `ssl.ca.location`; `None` when set empty.
    SslCaLocation(Option<PathBuf>),
    /// `ssl.certificate.location`; `None` when set empty.
    SslCertificateLocation(Option<PathBuf>),
    /// `ssl.key.location`; `None` when set empty.
    SslKeyLocation(Option<PathBuf>),
    /// `ssl.endpoint.identification.algorithm`.
    SslEndpointIdentificationAlgorithm(EndpointIdentification),
    /// `sasl.mechanism`.
    SaslMechanism(SaslMechanism),
    /// `sasl.username`; `None` when set empty.
    SaslUsername(Option<String>),
    /// `sasl.password`.
    SaslPassword(Password),
    /// `sasl.oauthbearer.token.file`; `None` when set empty.
    SaslOauthbearerTokenFile(Option<PathBuf>),
    /// `sasl.oauthbearer.config`; `None` when set empty.
    SaslOauthbearerConfig(Option<UnsecuredJwt>),
    /// `enable.sasl.oauthbearer.unsecure.jwt`.
    EnableSaslOauthbearerUnsecureJwt(bool),
    /// `sasl.kerberos.service.name`.
    SaslKerberosServiceName(String),
    /// `sasl.kerberos.principal`; `None` when set empty.
    SaslKerberosPrincipal(Option<String>),
    /// `sasl.kerberos.keytab`; `None` when set empty.
    SaslKerberosKeytab(Option<PathBuf>),
    /// `sasl.kerberos.ccache`; `None` when set empty.
    SaslKerberosCcache(Option<String>),
    /// `sasl.oauthbearer.method`.
    SaslOauthbearerMethod(OAuthBearerMethod),
    /// `sasl.aws.region`; `None` when set empty.
    SaslAwsRegion(Option<String>),
    /// `sasl.aws.profile`; `None` when set empty.
    SaslAwsProfile(Option<String>),
    /// `sasl.aws.role.arn`; `None` when set empty.
    SaslAwsRoleArn(Option<String>),
    /// `sasl.aws.role.session.name`; `None` when set empty.
    SaslAwsRoleSessionName(Option<String>),
    /// `sasl.oauthbearer.token.endpoint.url`; `None` when set empty.
    SaslOauthbearerTokenEndpointUrl(Option<String>),
    /// `sasl.oauthbearer.client.credentials.client.id`; `None` when set empty.
    SaslOauthbearerClientId(Option<String>),
    /// `sasl.oauthbearer.client.credentials.client.secret`; `None` when set empty.
    SaslOauthbearerClientSecret(Option<Password>),
    /// `sasl.oauthbearer.scope`; `None` when set empty.
    SaslOauthbearerScope(Option<String>),
    /// `sasl.oauthbearer.extensions`.
    SaslOauthbearerExtensions(BTreeMap<String, String>),
    /// `sasl.oauthbearer.header.urlencode`.
    SaslOauthbearerHeaderUrlencode(bool),
    /// `sasl.oauthbearer.ssl.ca.location`; `None` when set empty.
    SaslOauthbearerSslCaLocation(Option<PathBuf>),
    /// `sasl.login.connect.timeout.ms`.
    SaslLoginConnectTimeout(Duration),
    /// `sasl.login.read.timeout.ms`.
    SaslLoginReadTimeout(Duration),
    /// `sasl.login.retry.backoff.ms`.
    SaslLoginRetryBackoff(Duration),
    /// `sasl.login.retry.backoff.max.ms`.
    SaslLoginRetryBackoffMax(Duration),
    /// `sasl.login.refresh.window.factor`.
    SaslLoginRefreshWindowFactor(Share),
    /// `sasl.login.refresh.window.jitter`.
    SaslLoginRefreshWindowJitter(Share),
    /// `sasl.oauthbearer.grant.type`.
    SaslOauthbearerGrantType(GrantType),
    /// `sasl.oauthbearer.assertion.algorithm`.
    SaslOauthbearerAssertionAlgorithm(AssertionAlgorithm),
    /// `sasl.oauthbearer.assertion.private.key.file`; `None` when set empty.
    SaslOauthbearerAssertionPrivateKeyFile(Option<PathBuf>),
    /// `sasl.oauthbearer.assertion.file`; `None` when set empty.
    SaslOauthbearerAssertionFile(Option<PathBuf>),
    /// `sasl.oauthbearer.assertion.template.file`; `None` when set empty.
    SaslOauthbearerAssertionTemplateFile(Option<PathBuf>),
    /// `sasl.oauthbearer.assertion.claim.iss`; `None` when set empty.
    SaslOauthbearerAssertionClaimIss(Option<String>),
    /// `sasl.oauthbearer.assertion.claim.sub`; `None` when set empty.
    SaslOauthbearerAssertionClaimSub(Option<String>),
    /// `sasl.oauthbearer.assertion.claim.aud`; `None` when set empty.
    SaslOauthbearerAssertionClaimAud(Option<String>),
    /// `sasl.oauthbearer.assertion.claim.exp.seconds`.
    SaslOauthbearerAssertionClaimExp(Duration),
    /// `sasl.oauthbearer.assertion.claim.nbf.seconds`.
    SaslOauthbearerAssertionClaimNbf(Duration),
    /// `sasl.oauthbearer.assertion.claim.jti.include`.
    SaslOauthbearerAssertionClaimJtiInclude(bool),
    /// `bootstrap.servers`: `host:port` entries, none empty.
    BootstrapServers(Vec<String>),
    /// `api.version.max`: an API and the highest version to send it at, for each API named
    /// once; empty for none.
    ApiVersionMax(Vec<(ApiKey, i16)>),
}

/// The pool's properties, in the order of the README's table. To add one, see DESIGN.md ("How
/// to add a property").
pub static PROPERTIES: &[Property<PoolSetting>] = &[
    Property {
        name: "bootstrap.servers",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "Brokers to ask first for the cluster's metadata; required. A name is tried at \
              each address it resolves to.",
        kind: Kind::Other {
            allowed: SERVERS,
            parse: servers,
        },
    },
    Property {
        name: "client.id",
        aliases: &[],
        default: DefaultValue::Value("kcon"),
        parts: &[POOL],
        doc: "The name in every request's header, by which brokers' logs and quotas know the \
              client.",
        kind: Kind::Text {
            allowed: "any text",
            setting: PoolSetting::ClientId,
        },
    },
    Property {
        name: "socket.connection.setup.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: &[POOL],
        doc: "How long a new connection may take to be ready: TCP connect and the ApiVersions \
              exchange together.",
        kind: Kind::Millis {
            min: 1,
            setting: PoolSetting::SocketConnectionSetupTimeout,
        },
    },
    Property {
        name: "request.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: &[POOL],
        doc: "How long a request may wait in all, for a free in-flight slot and then for its \
              answer.",
        kind: Kind::Millis {
            min: 1,
            setting: PoolSetting::RequestTimeout,
        },
    },
    Property {
        name: "max.in.flight.requests.per.connection",
        aliases: &[],
        default: DefaultValue::Value("5"),
        parts: &[POOL],
        doc: "Requests one connection may have sent and not yet seen answered; further ones \
              wait for a slot.",
        kind: Kind::Count {
            min: 1,
            // librdkafka's upper bound.
            max: 1_000_000,
            allowed: "a whole number from 1 to 1000000",
            setting: PoolSetting::MaxInFlightRequestsPerConnection,
        },
    },
    Property {
        name: "metadata.max.age.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: &[POOL],
        doc: "The longest the cluster's metadata goes unrefreshed; also how long the fetcher \
              keeps reading from a preferred replica.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::MetadataMaxAge,
        },
    },
    Property {
        name: "metadata.recovery.strategy",
        aliases: &[],
        default: DefaultValue::Value("rebootstrap"),
        parts: &[POOL],
        doc: "rebootstrap: when the known brokers cannot give metadata, close every connection \
              and ask bootstrap.servers again (KIP-899); none: keep trying the known brokers.",
        kind: Kind::Other {
            allowed: "rebootstrap or none",
            parse: |i| {
                MetadataRecoveryStrategy::parse(i.trimmed())
                    .map(PoolSetting::MetadataRecoveryStrategy)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "metadata.recovery.rebootstrap.trigger.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: &[POOL],
        doc: "How long the client may go without metadata, trying, before it rebootstraps \
              (KIP-1102).",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::MetadataRecoveryRebootstrapTrigger,
        },
    },
    Property {
        name: "reconnect.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("50"),
        parts: &[POOL],
        doc: "The first pause before connecting again to a broker that failed; it doubles, \
              with jitter, at each failure.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::ReconnectBackoff,
        },
    },
    Property {
        name: "reconnect.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[POOL],
        doc: "The most the reconnection pause grows to.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::ReconnectBackoffMax,
        },
    },
    Property {
        name: "retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[POOL],
        doc: "The first pause before a failed request is tried again; it doubles, with jitter, \
              at each failure (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::RetryBackoff,
        },
    },
    Property {
        name: "retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[POOL],
        doc: "The most the retry pause grows to (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::RetryBackoffMax,
        },
    },
    Property {
        name: "default.api.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: &[POOL],
        doc: "How long a commit, an offset lookup or an admin call (describing, listing, \
              resetting a group) may keep retrying before it fails.",
        kind: Kind::Millis {
            min: 1,
            setting: PoolSetting::DefaultApiTimeout,
        },
    },
    Property {
        name: "connections.max.idle.ms",
        aliases: &[],
        default: DefaultValue::Value("540000"),
        parts: &[POOL],
        doc: "A connection with nothing in flight for this long is closed; 0 never closes an \
              idle one.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::ConnectionsMaxIdle,
        },
    },
    Property {
        name: "receive.message.max.bytes",
        aliases: &[],
        default: DefaultValue::Value("104857600"),
        parts: &[POOL],
        doc: "The largest answer a connection accepts; a larger size prefix closes the \
              connection before anything is allocated.",
        kind: Kind::Count {
            // librdkafka's lower bound.
            min: 1_000,
            max: MAX_COUNT,
            allowed: "a whole number from 1000 to 2147483647",
            setting: PoolSetting::ReceiveMessageMaxBytes,
        },
    },
    Property {
        name: "allow.auto.create.topics",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: &[POOL],
        doc: "Whether asking for a missing topic's metadata may create it, on brokers \
              configured to (auto.create.topics.enable). A producer sending through a pool it \
              shares asks whatever the pool says, as the Java producer always does.",
        kind: Kind::Bool(PoolSetting::AllowAutoCreateTopics),
    },
    Property {
        name: "enable.metrics.push",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: &[POOL],
        doc: "Whether a consumer, share consumer or producer pushes its metrics to the \
              cluster when a client-metrics subscription there asks for them (KIP-714), for \
              the brokers' metrics plugin; the admin calls push none.",
        kind: Kind::Bool(PoolSetting::EnableMetricsPush),
    },
    Property {
        name: "api.version.max",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "Caps the version of each API named, whatever the brokers advertise: for a broker \
              or proxy that advertises a version it cannot serve. Without it, a version a \
              broker refuses (it closes the connection on it twice in a row, or answers what \
              does not decode) is stepped down by itself.",
        kind: Kind::Other {
            allowed: API_VERSIONS,
            parse: api_version_max,
        },
    },
    Property {
        name: "security.protocol",
        aliases: &[],
        default: DefaultValue::Value("PLAINTEXT"),
        parts: &[POOL],
        doc: "Whether connections are encrypted with TLS, authenticated with SASL, both or \
              neither.",
        kind: Kind::Other {
            allowed: "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
            parse: |i| {
                SecurityProtocol::parse(i.trimmed())
                    .map(PoolSetting::SecurityProtocol)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "ssl.ca.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "CA certificates that may sign the brokers' certificates; unset, the system's \
              trust store.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| PoolSetting::SslCaLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.certificate.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The client's certificate, then its chain, for brokers that authenticate clients \
              by certificate; needs ssl.key.location.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| PoolSetting::SslCertificateLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.key.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The unencrypted private key (PKCS#8, PKCS#1 or SEC1) of the client's \
              certificate; needs ssl.certificate.location.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| PoolSetting::SslKeyLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.endpoint.identification.algorithm",
        aliases: &[],
        default: DefaultValue::Value("https"),
        parts: &[POOL],
        doc: "https: a broker's certificate must name the host dialled; none: any trusted \
              certificate will do.",
        kind: Kind::Other {
            allowed: "https or none",
            parse: |i| {
                EndpointIdentification::parse(i.trimmed())
                    .map(PoolSetting::SslEndpointIdentificationAlgorithm)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.mechanism",
        aliases: &["sasl.mechanisms"],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "How a connection logs in; the SASL protocols need one. OAUTHBEARER takes its \
              token from an OAuth token endpoint (sasl.oauthbearer.token.endpoint.url), from \
              sasl.oauthbearer.token.file, from sasl.oauthbearer.config (unsecured) or from the \
              application's code. GSSAPI is Kerberos (sasl.kerberos.*), through MIT Kerberos's \
              libgssapi_krb5, with the feature gssapi.",
        kind: Kind::Other {
            allowed: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI",
            parse: |i| {
                SaslMechanism::parse(i.trimmed())
                    .map(PoolSetting::SaslMechanism)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.username",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The user that PLAIN and SCRAM log in as.",
        kind: Kind::Optional {
            trim: false,
            allowed: "any text, spaces kept; empty unsets it",
            setting: PoolSetting::SaslUsername,
        },
    },
    Property {
        name: "sasl.password",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The password of PLAIN and SCRAM; debug output and logs show it as <redacted>.",
        kind: Kind::Text {
            allowed: "any text, spaces kept",
            setting: |p| PoolSetting::SaslPassword(Password::new(p)),
        },
    },
    Property {
        name: "sasl.kerberos.service.name",
        aliases: &[],
        default: DefaultValue::Value(DEFAULT_SERVICE_NAME),
        parts: &[POOL],
        doc: "GSSAPI: the brokers' Kerberos service name. A connection logs in to the principal \
              service/host@REALM, the host as dialled (the broker's advertised host).",
        kind: Kind::Other {
            allowed: "a name without '@', '/' or control characters",
            parse: |i| {
                let name = i.trimmed();
                if name.is_empty() || name.contains(['@', '/']) || name.contains(char::is_control) {
                    return Err(i.refused());
                }
                Ok(PoolSetting::SaslKerberosServiceName(name.to_owned()))
            },
        },
    },
    Property {
        name: "sasl.kerberos.principal",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "GSSAPI: the client's Kerberos principal (name@REALM, or name in the default \
              realm). Unset: the credential cache's, or the keytab's first.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a principal; empty unsets it",
            setting: PoolSetting::SaslKerberosPrincipal,
        },
    },
    Property {
        name: "sasl.kerberos.keytab",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "GSSAPI: a keytab holding the principal's keys. The client gets its tickets from \
              the KDC with it, and new ones when they expire. Unset: tickets are read from the \
              credential cache (sasl.kerberos.ccache), which kinit or a daemon keeps fresh.",
        kind: Kind::Optional {
            trim: true,
            allowed: "the path of a keytab file; empty unsets it",
            setting: |p| PoolSetting::SaslKerberosKeytab(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.kerberos.ccache",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "GSSAPI: the Kerberos credential cache (FILE:/path, DIR:, KEYRING:). With a keytab, \
              where its tickets are kept (unset: in memory, one cache per client); without, \
              where the tickets are read (unset: KRB5CCNAME, else the system's default). \
              kcon's own property: the Java client names its cache in sasl.jaas.config.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a credential cache name; empty unsets it",
            setting: PoolSetting::SaslKerberosCcache,
        },
    },
    Property {
        name: "sasl.oauthbearer.token.file",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "A file holding the OAUTHBEARER token (a JWT, surrounding whitespace ignored), \
              read again at each login and re-authentication: whatever renews the file renews \
              the logins.",
        kind: Kind::Optional {
            trim: true,
            allowed: "the path of a file; empty unsets it",
            setting: |p| PoolSetting::SaslOauthbearerTokenFile(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.oauthbearer.config",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The unsecured JWT OAUTHBEARER logs in with, made afresh at each login, as \
              librdkafka makes it (principal=alice scope=a,b lifeSeconds=3600); for \
              development, sent only with enable.sasl.oauthbearer.unsecure.jwt=true.",
        kind: Kind::Other {
            allowed: UNSECURED_JWT_ALLOWED,
            parse: unsecured_jwt,
        },
    },
    Property {
        name: "enable.sasl.oauthbearer.unsecure.jwt",
        aliases: &[],
        default: DefaultValue::Value("false"),
        parts: &[POOL],
        doc: "Whether OAUTHBEARER may send the unsigned token sasl.oauthbearer.config \
              describes.",
        kind: Kind::Bool(PoolSetting::EnableSaslOauthbearerUnsecureJwt),
    },
    Property {
        name: "sasl.oauthbearer.method",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "Where OAUTHBEARER's token comes from: oidc, an OAuth token endpoint \
              (sasl.oauthbearer.token.endpoint.url); aws_msk_iam (kcon's), a token for Amazon \
              MSK's IAM access control signed with credentials from AWS's credential chain \
              (sasl.aws.*; the feature aws-msk-iam); default, the token file, the unsecured \
              JWT or the application's code. Unset, the endpoint's URL alone selects oidc, as \
              in the Java client.",
        kind: Kind::Other {
            allowed: "default, oidc or aws_msk_iam",
            parse: |i| {
                OAuthBearerMethod::parse(i.trimmed())
                    .map(PoolSetting::SaslOauthbearerMethod)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.aws.region",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "aws_msk_iam: the AWS region of the MSK cluster, which the token is signed for \
              (kcon's). Unset: the region in the bootstrap servers' MSK host names \
              (...kafka.REGION.amazonaws.com), else the region of AWS's configuration \
              (AWS_REGION, the profile's region, the instance's).",
        kind: Kind::Optional {
            trim: true,
            allowed: "an AWS region (eu-west-1); empty unsets it",
            setting: PoolSetting::SaslAwsRegion,
        },
    },
    Property {
        name: "sasl.aws.profile",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "aws_msk_iam: the named profile of the AWS configuration and credentials files \
              whose credentials sign the token (kcon's; AWS's Java library calls it \
              awsProfileName). Unset: AWS_PROFILE, else the default profile; AWS's whole \
              credential chain applies either way.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a profile name; empty unsets it",
            setting: PoolSetting::SaslAwsProfile,
        },
    },
    Property {
        name: "sasl.aws.role.arn",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "aws_msk_iam: an IAM role to assume (STS AssumeRole) with the credentials AWS's \
              chain finds; the token is signed with the role's (kcon's; AWS's Java library \
              calls it awsRoleArn). Unset: the chain's credentials sign.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a role ARN (arn:aws:iam::123456789012:role/name); empty unsets it",
            setting: PoolSetting::SaslAwsRoleArn,
        },
    },
    Property {
        name: "sasl.aws.role.session.name",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "aws_msk_iam: the session name of the assumed role (sasl.aws.role.arn), as \
              CloudTrail shows it (kcon's; AWS's Java library calls it awsRoleSessionName). \
              Unset: AWS's default, assume-role-provider-<time>.",
        kind: Kind::Optional {
            trim: true,
            allowed: "2 to 64 of letters, digits and +=,.@-; empty unsets it",
            setting: PoolSetting::SaslAwsRoleSessionName,
        },
    },
    Property {
        name: "sasl.oauthbearer.token.endpoint.url",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The OAuth 2.0 token endpoint OAUTHBEARER takes its tokens from, by the client \
              credentials grant (KIP-768); a token is fetched again before it expires and \
              connections re-authenticate with it.",
        kind: Kind::Optional {
            trim: true,
            allowed: "an http:// or https:// URL; empty unsets it",
            setting: PoolSetting::SaslOauthbearerTokenEndpointUrl,
        },
    },
    Property {
        name: "sasl.oauthbearer.grant.type",
        aliases: &[],
        default: DefaultValue::Value("client_credentials"),
        parts: &[POOL],
        doc: "How the token endpoint is asked: client_credentials (the client's id and \
              secret), or urn:ietf:params:oauth:grant-type:jwt-bearer (KIP-1139: a JWT the \
              client signs, sasl.oauthbearer.assertion.*).",
        kind: Kind::Other {
            allowed: "client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer",
            parse: |i| {
                GrantType::parse(i.trimmed())
                    .map(PoolSetting::SaslOauthbearerGrantType)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.oauthbearer.client.credentials.client.id",
        aliases: &["sasl.oauthbearer.client.id"],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The client's id at the token endpoint.",
        kind: Kind::Optional {
            trim: true,
            allowed: "any text; empty unsets it",
            setting: PoolSetting::SaslOauthbearerClientId,
        },
    },
    Property {
        name: "sasl.oauthbearer.client.credentials.client.secret",
        aliases: &["sasl.oauthbearer.client.secret"],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The client's secret at the token endpoint, sent by HTTP basic authentication; \
              debug output and logs show it as <redacted>.",
        kind: Kind::Optional {
            trim: false,
            allowed: "any text, spaces kept; empty unsets it",
            setting: |s| PoolSetting::SaslOauthbearerClientSecret(s.map(Password::new)),
        },
    },
    Property {
        name: "sasl.oauthbearer.scope",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The scope asked of the token endpoint; none when unset.",
        kind: Kind::Optional {
            trim: true,
            allowed: "space-separated scope names; empty unsets it",
            setting: PoolSetting::SaslOauthbearerScope,
        },
    },
    Property {
        name: "sasl.oauthbearer.extensions",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "SASL extensions (KIP-342) sent with each token from the token endpoint, as \
              librdkafka takes them (logicalCluster=lkc-1,identityPoolId=pool-2).",
        kind: Kind::Other {
            allowed: EXTENSIONS_ALLOWED,
            parse: |i| {
                // Not the syntax at all: refused with what is allowed. Else the parser says
                // what is wrong.
                let items = i.value.split(',').map(str::trim).filter(|s| !s.is_empty());
                if !items.clone().all(|item| item.contains('=')) {
                    return Err(i.refused());
                }
                parse_extensions(i.value)
                    .map(PoolSetting::SaslOauthbearerExtensions)
                    .map_err(|why| ConfigError::unusable(i.property, i.value, why))
            },
        },
    },
    Property {
        name: "sasl.oauthbearer.header.urlencode",
        aliases: &[],
        default: DefaultValue::Value("false"),
        parts: &[POOL],
        doc: "Whether the client id and secret are form-encoded in the Authorization header \
              (RFC 6749 §2.3.1), as some token endpoints want.",
        kind: Kind::Bool(PoolSetting::SaslOauthbearerHeaderUrlencode),
    },
    Property {
        name: "sasl.oauthbearer.ssl.ca.location",
        aliases: &["https.ca.location"],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The CAs that may sign an https token endpoint's certificate; the system's trust \
              store when unset.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| PoolSetting::SaslOauthbearerSslCaLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.private.key.file",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The key that signs the JWT bearer grant's assertions: an unencrypted PEM file, \
              RSA (PKCS#8 or PKCS#1) for RS256, P-256 in PKCS#8 for ES256.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| PoolSetting::SaslOauthbearerAssertionPrivateKeyFile(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.algorithm",
        aliases: &[],
        default: DefaultValue::Value("RS256"),
        parts: &[POOL],
        doc: "How assertions are signed.",
        kind: Kind::Other {
            allowed: "RS256 or ES256",
            parse: |i| {
                AssertionAlgorithm::parse(i.trimmed())
                    .map(PoolSetting::SaslOauthbearerAssertionAlgorithm)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.file",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "A file holding a ready assertion for the JWT bearer grant, read again at each \
              fetch (whatever renews the file renews the assertion), instead of a key that \
              signs one.",
        kind: Kind::Optional {
            trim: true,
            allowed: "the path of a file; empty unsets it",
            setting: |p| PoolSetting::SaslOauthbearerAssertionFile(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.template.file",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "JSON {\"header\": {...}, \"payload\": {...}} whose fields go into each signed \
              assertion (a kid, a claim of the identity provider's); the claims the properties \
              set win.",
        kind: Kind::Optional {
            trim: true,
            allowed: "the path of a file; empty unsets it",
            setting: |p| PoolSetting::SaslOauthbearerAssertionTemplateFile(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.iss",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The assertion's issuer (iss).",
        kind: Kind::Optional {
            trim: true,
            allowed: "any text; empty unsets it",
            setting: PoolSetting::SaslOauthbearerAssertionClaimIss,
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.sub",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The assertion's subject (sub): whom the token is for.",
        kind: Kind::Optional {
            trim: true,
            allowed: "any text; empty unsets it",
            setting: PoolSetting::SaslOauthbearerAssertionClaimSub,
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.aud",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POOL],
        doc: "The assertion's audience (aud): usually the token endpoint's URL.",
        kind: Kind::Optional {
            trim: true,
            allowed: "any text; empty unsets it",
            setting: PoolSetting::SaslOauthbearerAssertionClaimAud,
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.exp.seconds",
        aliases: &[],
        default: DefaultValue::Value("300"),
        parts: &[POOL],
        doc: "How long an assertion is valid after it is made (exp).",
        kind: Kind::Count {
            min: 1,
            max: 86_400,
            allowed: "a whole number of seconds from 1 to 86400",
            setting: |n| {
                PoolSetting::SaslOauthbearerAssertionClaimExp(Duration::from_secs(n as u64))
            },
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.nbf.seconds",
        aliases: &[],
        default: DefaultValue::Value("60"),
        parts: &[POOL],
        doc: "How long before it is made an assertion is valid from (nbf), for a clock behind \
              the identity provider's.",
        kind: Kind::Count {
            min: 0,
            max: 3_600,
            allowed: "a whole number of seconds from 0 to 3600",
            setting: |n| {
                PoolSetting::SaslOauthbearerAssertionClaimNbf(Duration::from_secs(n as u64))
            },
        },
    },
    Property {
        name: "sasl.oauthbearer.assertion.claim.jti.include",
        aliases: &[],
        default: DefaultValue::Value("false"),
        parts: &[POOL],
        doc: "Whether each assertion carries a random jti, for identity providers that refuse \
              an assertion seen before.",
        kind: Kind::Bool(PoolSetting::SaslOauthbearerAssertionClaimJtiInclude),
    },
    Property {
        name: "sasl.login.connect.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: &[POOL],
        doc: "How long a connection to the token endpoint may take.",
        kind: Kind::Millis {
            min: 1,
            setting: PoolSetting::SaslLoginConnectTimeout,
        },
    },
    Property {
        name: "sasl.login.read.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: &[POOL],
        doc: "How long the token endpoint may take to answer.",
        kind: Kind::Millis {
            min: 1,
            setting: PoolSetting::SaslLoginReadTimeout,
        },
    },
    Property {
        name: "sasl.login.retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[POOL],
        doc: "The first pause after the token endpoint failed; it doubles, with jitter, at \
              each failure.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::SaslLoginRetryBackoff,
        },
    },
    Property {
        name: "sasl.login.retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: &[POOL],
        doc: "The most the token endpoint's retry pause grows to.",
        kind: Kind::Millis {
            min: 0,
            setting: PoolSetting::SaslLoginRetryBackoffMax,
        },
    },
    Property {
        name: "sasl.login.refresh.window.factor",
        aliases: &[],
        default: DefaultValue::Value("0.8"),
        parts: &[POOL],
        doc: "The share of a token's lifetime after which the next one is fetched.",
        kind: Kind::Other {
            allowed: "a number from 0.5 to 1.0",
            parse: |i| share(i, 0.5, 1.0).map(PoolSetting::SaslLoginRefreshWindowFactor),
        },
    },
    Property {
        name: "sasl.login.refresh.window.jitter",
        aliases: &[],
        default: DefaultValue::Value("0.05"),
        parts: &[POOL],
        doc: "At most this share of a token's lifetime is added at random to when the next is \
              fetched.",
        kind: Kind::Other {
            allowed: "a number from 0 to 0.25",
            parse: |i| share(i, 0.0, 0.25).map(PoolSetting::SaslLoginRefreshWindowJitter),
        },
    },
];

/// A share from `min` to `max`, as a decimal number.
fn share(i: &Input<'_>, min: f64, max: f64) -> Result<Share, ConfigError> {
    i.trimmed()
        .parse::<f64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .and_then(Share::new)
        .ok_or_else(|| i.refused())
}

/// `sasl.oauthbearer.config`: librdkafka's syntax; empty unsets it.
fn unsecured_jwt(i: &Input<'_>) -> Result<PoolSetting, ConfigError> {
    if i.trimmed().is_empty() {
        return Ok(PoolSetting::SaslOauthbearerConfig(None));
    }
    // Not the syntax at all: refused with what is allowed. Else the parser says what is wrong.
    if !i.value.split_whitespace().all(|item| item.contains('=')) {
        return Err(i.refused());
    }
    UnsecuredJwt::parse(i.value)
        .map(|c| PoolSetting::SaslOauthbearerConfig(Some(c)))
        .map_err(|why| ConfigError::unusable(i.property, i.value, why))
}

/// `bootstrap.servers`: empty entries (`a:1,,b:2`, a trailing comma) are skipped, as the Java
/// client's list type does; a bad entry is named.
fn servers(i: &Input<'_>) -> Result<PoolSetting, ConfigError> {
    let servers: Vec<String> = i
        .trimmed()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if servers.is_empty() {
        return Err(ConfigError::invalid(
            i.property,
            i.trimmed(),
            "at least one host:port",
        ));
    }
    if let Some(bad) = servers.iter().find(|s| split_host_port(s).is_none()) {
        return Err(ConfigError::invalid(i.property, bad, i.allowed));
    }
    Ok(PoolSetting::BootstrapServers(servers))
}

/// `api.version.max`: `API=VERSION` pairs. An API kcon does not speak, and a version below
/// kcon's lowest (which would leave none), are refused with the reason.
fn api_version_max(i: &Input<'_>) -> Result<PoolSetting, ConfigError> {
    let mut caps: Vec<(ApiKey, i16)> = Vec::new();
    for pair in i
        .trimmed()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, version) = pair.split_once('=').ok_or_else(|| i.refused())?;
        let (name, version) = (name.trim(), version.trim());
        let Some(&(api, min, max)) = SUPPORTED
            .iter()
            .find(|(k, _, _)| format!("{k:?}").eq_ignore_ascii_case(name))
        else {
            let known: Vec<String> = SUPPORTED.iter().map(|(k, _, _)| format!("{k:?}")).collect();
            return Err(ConfigError::unusable(
                i.property,
                i.value,
                format!(
                    "{name:?} is not an API kcon speaks; it speaks {}",
                    known.join(", ")
                ),
            ));
        };
        let version: i16 = version.parse().map_err(|_| i.refused())?;
        if version < min {
            return Err(ConfigError::unusable(
                i.property,
                i.value,
                format!(
                    "kcon speaks {api:?} v{min} to v{max}: a cap at v{version} leaves no version"
                ),
            ));
        }
        if caps.iter().any(|(k, _)| *k == api) {
            return Err(ConfigError::unusable(
                i.property,
                i.value,
                format!("{api:?} is named twice"),
            ));
        }
        caps.push((api, version));
    }
    Ok(PoolSetting::ApiVersionMax(caps))
}

#[cfg(test)]
mod tests {
    use kcon_core::property::registry::{erased, faults, lookup};

    use super::*;

    #[test]
    fn the_table_is_sound() {
        assert_eq!(faults(erased(PROPERTIES)), [] as [String; 0]);
        for p in PROPERTIES {
            assert_eq!(p.parts, [POOL], "{}", p.name);
        }
    }

    #[test]
    fn aliases_find_their_property() {
        assert_eq!(
            lookup(PROPERTIES, "sasl.mechanisms").unwrap().name,
            "sasl.mechanism"
        );
        assert_eq!(
            lookup(PROPERTIES, "sasl.mechanism").unwrap().name,
            "sasl.mechanism"
        );
        assert!(lookup(PROPERTIES, "sasl.mechanismz").is_none());
    }

    #[test]
    fn values_are_read_by_kind() {
        let read = |name: &str, value: &str| lookup(PROPERTIES, name).unwrap().parse(value);
        assert_eq!(
            read("allow.auto.create.topics", "FALSE"),
            Ok(PoolSetting::AllowAutoCreateTopics(false))
        );
        assert_eq!(
            read("sasl.username", " al ice "),
            Ok(PoolSetting::SaslUsername(Some(" al ice ".into())))
        );
        assert_eq!(
            read("bootstrap.servers", "a:1, [::1]:9092,"),
            Ok(PoolSetting::BootstrapServers(vec![
                "a:1".into(),
                "[::1]:9092".into()
            ]))
        );
        let e = read("bootstrap.servers", "a:1,b").unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        let e = read("bootstrap.servers", " , ").unwrap_err();
        assert!(e.to_string().contains("at least one host:port"), "{e}");
    }
}
