//! The registry's entries: every property kcon accepts, under the Java client's name and with
//! its default (librdkafka's where Java has no such property), grouped by the part they
//! mostly configure. To add one, see DESIGN.md ("How to add a property").

use std::path::PathBuf;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::versions::SUPPORTED;

use super::registry::{DefaultValue, Input, Kind, Part, Property};
use super::setting::Setting;
use super::{ConfigError, split_host_port};
use crate::assignor::{BuiltinAssignor, GroupProtocol};
use crate::offsets::{IsolationLevel, ResetPolicy};
use crate::record_policy::ErrorTolerance;
use crate::security::{EndpointIdentification, Password, SaslMechanism, SecurityProtocol};

/// kcon-pool's `PoolConfig`: connections, metadata, TLS and SASL.
pub const POOL: Part = Part::new("pool");
/// kcon-group's `GroupConfig`: the group member.
pub const GROUP: Part = Part::new("group");
/// kcon-offsets' `OffsetsConfig`: commits and offset lookups.
pub const OFFSETS: Part = Part::new("offsets");
/// kcon-fetch's `FetchConfig`: the fetcher.
pub const FETCH: Part = Part::new("fetch");
/// The `Consumer` itself (kcon).
pub const CONSUMER: Part = Part::new("consumer");
/// The record processor's policies for records that fail (kcon's `Processor`).
pub const POLICY: Part = Part::new("policy");

const POOL_ONLY: &[Part] = &[POOL];
const POOL_FETCH: &[Part] = &[POOL, FETCH];
const RETRYING: &[Part] = &[POOL, GROUP, OFFSETS, FETCH];
const GROUP_ONLY: &[Part] = &[GROUP];
const GROUP_OFFSETS: &[Part] = &[GROUP, OFFSETS];
const GROUP_FETCH: &[Part] = &[GROUP, FETCH];
const OFFSETS_ONLY: &[Part] = &[OFFSETS];
const OFFSETS_FETCH: &[Part] = &[OFFSETS, FETCH];
const FETCH_ONLY: &[Part] = &[FETCH];
const CONSUMER_ONLY: &[Part] = &[CONSUMER];
const POLICY_ONLY: &[Part] = &[POLICY];

/// The largest count: Kafka's counts are 32-bit, so every count fits an `i32`.
const MAX_COUNT: usize = i32::MAX as usize;

const FROM_0: &str = "a whole number from 0 to 2147483647";
const FROM_1: &str = "a whole number from 1 to 2147483647";
const SERVERS: &str = "a comma-separated list of host:port, port from 1 to 65535";
const FILE: &str = "the path of a PEM file; empty unsets it";
const API_VERSIONS: &str = "comma-separated API=VERSION pairs, each API named once by its \
     Kafka protocol name (JoinGroup, SyncGroup, LeaveGroup, Fetch, ...) among those kcon speaks, \
     VERSION a whole number at least kcon's lowest version of it; empty for none";
const STRATEGY: &str = "a comma-separated list of distinct assignors: range, roundrobin, \
     sticky, cooperative-sticky (or their Java class names)";

/// The consumer's properties, in the order of the README's table.
pub static PROPERTIES: &[Property<Setting>] = &[
    Property {
        name: "bootstrap.servers",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
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
        parts: POOL_ONLY,
        doc: "The name in every request's header, by which brokers' logs and quotas know the \
              client.",
        kind: Kind::Text {
            allowed: "any text",
            setting: Setting::ClientId,
        },
    },
    Property {
        name: "socket.connection.setup.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("10000"),
        parts: POOL_ONLY,
        doc: "How long a new connection may take to be ready: TCP connect and the ApiVersions \
              exchange together.",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::SocketConnectionSetupTimeout,
        },
    },
    Property {
        name: "request.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: POOL_ONLY,
        doc: "How long a request may wait in all, for a free in-flight slot and then for its \
              answer.",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::RequestTimeout,
        },
    },
    Property {
        name: "max.in.flight.requests.per.connection",
        aliases: &[],
        default: DefaultValue::Value("5"),
        parts: POOL_ONLY,
        doc: "Requests one connection may have sent and not yet seen answered; further ones \
              wait for a slot.",
        kind: Kind::Count {
            min: 1,
            // librdkafka's upper bound.
            max: 1_000_000,
            allowed: "a whole number from 1 to 1000000",
            setting: Setting::MaxInFlightRequestsPerConnection,
        },
    },
    Property {
        name: "metadata.max.age.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: POOL_FETCH,
        doc: "The longest the cluster's metadata goes unrefreshed; also how long the fetcher \
              keeps reading from a preferred replica.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::MetadataMaxAge,
        },
    },
    Property {
        name: "reconnect.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("50"),
        parts: POOL_ONLY,
        doc: "The first pause before connecting again to a broker that failed; it doubles, \
              with jitter, at each failure.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::ReconnectBackoff,
        },
    },
    Property {
        name: "reconnect.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: POOL_ONLY,
        doc: "The most the reconnection pause grows to.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::ReconnectBackoffMax,
        },
    },
    Property {
        name: "retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: RETRYING,
        doc: "The first pause before a failed request is tried again; it doubles, with jitter, \
              at each failure (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::RetryBackoff,
        },
    },
    Property {
        name: "retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: RETRYING,
        doc: "The most the retry pause grows to (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::RetryBackoffMax,
        },
    },
    Property {
        name: "connections.max.idle.ms",
        aliases: &[],
        default: DefaultValue::Value("540000"),
        parts: POOL_ONLY,
        doc: "A connection with nothing in flight for this long is closed; 0 never closes an \
              idle one.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::ConnectionsMaxIdle,
        },
    },
    Property {
        name: "receive.message.max.bytes",
        aliases: &[],
        default: DefaultValue::Value("104857600"),
        parts: POOL_ONLY,
        doc: "The largest answer a connection accepts; a larger size prefix closes the \
              connection before anything is allocated.",
        kind: Kind::Count {
            // librdkafka's lower bound.
            min: 1_000,
            max: MAX_COUNT,
            allowed: "a whole number from 1000 to 2147483647",
            setting: Setting::ReceiveMessageMaxBytes,
        },
    },
    Property {
        name: "allow.auto.create.topics",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: POOL_ONLY,
        doc: "Whether asking for a missing topic's metadata may create it, on brokers \
              configured to.",
        kind: Kind::Bool(Setting::AllowAutoCreateTopics),
    },
    Property {
        name: "api.version.max",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
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
        parts: POOL_ONLY,
        doc: "Whether connections are encrypted with TLS, authenticated with SASL, both or \
              neither.",
        kind: Kind::Other {
            allowed: "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
            parse: |i| {
                SecurityProtocol::parse(i.trimmed())
                    .map(Setting::SecurityProtocol)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "ssl.ca.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "CA certificates that may sign the brokers' certificates; unset, the system's \
              trust store.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| Setting::SslCaLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.certificate.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "The client's certificate, then its chain, for brokers that authenticate clients \
              by certificate; needs ssl.key.location.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| Setting::SslCertificateLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.key.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "The unencrypted private key (PKCS#8, PKCS#1 or SEC1) of the client's \
              certificate; needs ssl.certificate.location.",
        kind: Kind::Optional {
            trim: true,
            allowed: FILE,
            setting: |p| Setting::SslKeyLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "ssl.endpoint.identification.algorithm",
        aliases: &[],
        default: DefaultValue::Value("https"),
        parts: POOL_ONLY,
        doc: "https: a broker's certificate must name the host dialled; none: any trusted \
              certificate will do.",
        kind: Kind::Other {
            allowed: "https or none",
            parse: |i| {
                EndpointIdentification::parse(i.trimmed())
                    .map(Setting::SslEndpointIdentificationAlgorithm)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.mechanism",
        aliases: &["sasl.mechanisms"],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "How a connection logs in; the SASL protocols need one. OAUTHBEARER takes its \
              tokens from the application.",
        kind: Kind::Other {
            allowed: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (GSSAPI is not \
                      supported)",
            parse: |i| {
                SaslMechanism::parse(i.trimmed())
                    .map(Setting::SaslMechanism)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "sasl.username",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "The user that PLAIN and SCRAM log in as.",
        kind: Kind::Optional {
            trim: false,
            allowed: "any text, spaces kept; empty unsets it",
            setting: Setting::SaslUsername,
        },
    },
    Property {
        name: "sasl.password",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POOL_ONLY,
        doc: "The password of PLAIN and SCRAM; debug output and logs show it as <redacted>.",
        kind: Kind::Text {
            allowed: "any text, spaces kept",
            setting: |p| Setting::SaslPassword(Password::new(p)),
        },
    },
    Property {
        name: "group.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: GROUP_OFFSETS,
        doc: "The consumer group to join and commit for; without it the consumer reads only \
              the partitions it is assigned and commits nothing.",
        kind: Kind::Text {
            allowed: "any text, spaces kept",
            setting: Setting::GroupId,
        },
    },
    Property {
        name: "group.instance.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: GROUP_OFFSETS,
        doc: "Makes the member static (KIP-345): restarted within session.timeout.ms it gets \
              its partitions back without a rebalance.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a name, unique in the group; empty unsets it",
            setting: Setting::GroupInstanceId,
        },
    },
    Property {
        name: "group.protocol",
        aliases: &[],
        default: DefaultValue::Value("classic"),
        parts: GROUP_ONLY,
        doc: "The group protocol: classic (JoinGroup, SyncGroup, Heartbeat; a member assigns) \
              or consumer (KIP-848's ConsumerGroupHeartbeat; the coordinator assigns).",
        kind: Kind::Other {
            allowed: "classic or consumer",
            parse: |i| {
                GroupProtocol::from_name(i.trimmed())
                    .map(Setting::GroupProtocol)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "group.remote.assignor",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: GROUP_ONLY,
        doc: "With group.protocol=consumer: the coordinator's assignor to use (uniform or range \
              on Apache Kafka); unset, the coordinator's default.",
        kind: Kind::Optional {
            trim: true,
            allowed: "an assignor the coordinator offers; empty unsets it",
            setting: Setting::GroupRemoteAssignor,
        },
    },
    Property {
        name: "session.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("45000"),
        parts: GROUP_ONLY,
        doc: "How long the coordinator waits for a heartbeat before it takes the member out of \
              the group; classic protocol only (the coordinator sets it under consumer).",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::SessionTimeout,
        },
    },
    Property {
        name: "heartbeat.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("3000"),
        parts: GROUP_ONLY,
        doc: "The time between heartbeats, below session.timeout.ms; classic protocol only \
              (the coordinator sets it under consumer).",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::HeartbeatInterval,
        },
    },
    Property {
        name: "max.poll.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: GROUP_ONLY,
        doc: "The longest the application may go without asking for records before the member \
              leaves the group; also the rebalance timeout.",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::MaxPollInterval,
        },
    },
    Property {
        name: "partition.assignment.strategy",
        aliases: &[],
        default: DefaultValue::Value("range,cooperative-sticky"),
        parts: GROUP_ONLY,
        doc: "Assignors in order of preference; the member rebalances cooperatively only when \
              every one listed can. Classic protocol only (see group.remote.assignor).",
        kind: Kind::Other {
            allowed: STRATEGY,
            parse: assignors,
        },
    },
    Property {
        name: "client.rack",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: GROUP_FETCH,
        doc: "The consumer's rack: for rack-aware assignment (KIP-881) and for reading from a \
              replica in the same rack (KIP-392).",
        kind: Kind::Optional {
            trim: true,
            allowed: "a rack name; empty unsets it",
            setting: Setting::ClientRack,
        },
    },
    Property {
        name: "enable.auto.commit",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: OFFSETS_ONLY,
        doc: "Commit the stored offsets every auto.commit.interval.ms, before partitions are \
              given up, and on close.",
        kind: Kind::Bool(Setting::EnableAutoCommit),
    },
    Property {
        name: "auto.commit.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("5000"),
        parts: OFFSETS_ONLY,
        doc: "The time between automatic commits; at least 1 with enable.auto.commit.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::AutoCommitInterval,
        },
    },
    Property {
        name: "enable.auto.offset.store",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: OFFSETS_ONLY,
        doc: "Store a record's offset for commit once the application asks for more records; \
              false commits only what the application stores.",
        kind: Kind::Bool(Setting::EnableAutoOffsetStore),
    },
    Property {
        name: "auto.offset.reset",
        aliases: &[],
        default: DefaultValue::Value("latest"),
        parts: FETCH_ONLY,
        doc: "Where a partition starts when it has no committed offset or its position is out \
              of range; none makes that an error.",
        kind: Kind::Other {
            allowed: ResetPolicy::ALLOWED,
            parse: |i| ResetPolicy::parse(i.trimmed()).map(Setting::AutoOffsetReset),
        },
    },
    Property {
        name: "isolation.level",
        aliases: &[],
        default: DefaultValue::Value("read_uncommitted"),
        parts: OFFSETS_FETCH,
        doc: "read_committed leaves out records of aborted transactions and stops at the first \
              open one.",
        kind: Kind::Other {
            allowed: IsolationLevel::ALLOWED,
            parse: |i| IsolationLevel::parse(i.value).map(Setting::IsolationLevel),
        },
    },
    Property {
        name: "default.api.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: OFFSETS_ONLY,
        doc: "How long a commit or an offset lookup may keep retrying before it fails.",
        kind: Kind::Millis {
            min: 1,
            setting: Setting::DefaultApiTimeout,
        },
    },
    Property {
        name: "fetch.min.bytes",
        aliases: &[],
        default: DefaultValue::Value("1"),
        parts: FETCH_ONLY,
        doc: "The bytes a broker waits to have (or fetch.max.wait.ms to pass) before it answers \
              a Fetch.",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| Setting::FetchMinBytes(n as i32),
        },
    },
    Property {
        name: "fetch.max.wait.ms",
        aliases: &[],
        default: DefaultValue::Value("500"),
        parts: FETCH_ONLY,
        doc: "The longest a broker holds a Fetch waiting for fetch.min.bytes.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::FetchMaxWait,
        },
    },
    Property {
        name: "fetch.max.bytes",
        aliases: &[],
        default: DefaultValue::Value("52428800"),
        parts: FETCH_ONLY,
        doc: "The most a Fetch answer may carry, though a first batch larger than that still \
              comes whole (KIP-74).",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| Setting::FetchMaxBytes(n as i32),
        },
    },
    Property {
        name: "max.partition.fetch.bytes",
        aliases: &[],
        default: DefaultValue::Value("1048576"),
        parts: FETCH_ONLY,
        doc: "The most one partition's part of a Fetch answer may carry.",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| Setting::MaxPartitionFetchBytes(n as i32),
        },
    },
    Property {
        name: "fetch.buffer.max.bytes",
        aliases: &[],
        default: DefaultValue::Derived("3 × fetch.max.bytes"),
        parts: FETCH_ONLY,
        doc: "kcon's own: the prefetch budget, bytes fetched and not yet handed out plus bytes \
              reserved by Fetches in flight, all partitions together.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: Setting::FetchBufferMaxBytes,
        },
    },
    Property {
        name: "max.poll.records",
        aliases: &[],
        default: DefaultValue::Value("500"),
        parts: FETCH_ONLY,
        doc: "The most records one batch hands the application; a larger fetched batch is \
              handed out in parts.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: |n| Setting::MaxPollRecords(n as i32),
        },
    },
    Property {
        name: "close.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: CONSUMER_ONLY,
        doc: "kcon's own: the longest closing the consumer may take, final commit and leaving \
              the group included.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::CloseTimeout,
        },
    },
    Property {
        name: "errors.tolerance",
        aliases: &[],
        default: DefaultValue::Value("none"),
        parts: POLICY_ONLY,
        doc: "Kafka Connect's name: what a record that failed for good does in a Processor: none \
              stops processing with an error, nothing stored past the record; all skips it, or \
              writes it to errors.deadletterqueue.topic.name, and goes on.",
        kind: Kind::Other {
            allowed: ErrorTolerance::EXPECTED,
            parse: tolerance,
        },
    },
    Property {
        name: "errors.retry.max.attempts",
        aliases: &[],
        default: DefaultValue::Value("10"),
        parts: POLICY_ONLY,
        doc: "kcon's own: how many times a Processor tries a record whose failure is \
              retriable, the first try included, before the record has failed for good.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: Setting::ErrorsRetryMaxAttempts,
        },
    },
    Property {
        name: "errors.retry.timeout",
        aliases: &[],
        default: DefaultValue::Value("-1"),
        parts: POLICY_ONLY,
        doc: "Kafka Connect's name: how long after a record's first failure a Processor may \
              still retry it; -1 sets no limit but errors.retry.max.attempts, 0 retries nothing \
              (Kafka Connect's default is 0).",
        kind: Kind::Other {
            allowed: "a whole number of milliseconds, at least 0, or -1 for no limit",
            parse: retry_timeout,
        },
    },
    Property {
        name: "errors.retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: POLICY_ONLY,
        doc: "kcon's own: the first pause before a Processor retries a record; it doubles at \
              each failure, with jitter, up to errors.retry.delay.max.ms. Only the record's \
              partition waits.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::ErrorsRetryBackoff,
        },
    },
    Property {
        name: "errors.retry.delay.max.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: POLICY_ONLY,
        doc: "Kafka Connect's name: the most a Processor's pause between two tries of a record \
              grows to.",
        kind: Kind::Millis {
            min: 0,
            setting: Setting::ErrorsRetryDelayMax,
        },
    },
    Property {
        name: "errors.deadletterqueue.topic.name",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POLICY_ONLY,
        doc: "Kafka Connect's name: with errors.tolerance=all, the topic a Processor writes each \
              record that failed for good to (key, value and headers unchanged, plus kcon.dlq.* \
              headers saying where it came from and why), acknowledged before the offset past \
              it is stored; unset, such records are skipped.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a topic name; empty unsets it",
            setting: Setting::ErrorsDeadLetterQueueTopicName,
        },
    },
    Property {
        name: "errors.breaker.window.records",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: POLICY_ONLY,
        doc: "kcon's own: how many of a Processor's last records errors.breaker.failures counts \
              failures among.",
        kind: Kind::Count {
            min: 1,
            max: 100_000,
            allowed: "a whole number from 1 to 100000",
            setting: Setting::ErrorsBreakerWindowRecords,
        },
    },
    Property {
        name: "errors.breaker.failures",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POLICY_ONLY,
        doc: "kcon's own: a Processor's circuit breaker opens (every partition paused, \
              processing stops with an error) when more than this many of the last \
              errors.breaker.window.records records failed for good; unset, never by this rule.",
        kind: Kind::Other {
            allowed: "a whole number from 0 to 99999, below errors.breaker.window.records; \
                      empty unsets it",
            parse: breaker_failures,
        },
    },
    Property {
        name: "errors.breaker.consecutive.failures",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: POLICY_ONLY,
        doc: "kcon's own: a Processor's circuit breaker opens when this many records in a row \
              failed for good; unset, never by this rule.",
        kind: Kind::Other {
            allowed: "a whole number from 1 to 2147483647; empty unsets it",
            parse: breaker_consecutive,
        },
    },
];

/// `bootstrap.servers`: empty entries (`a:1,,b:2`, a trailing comma) are skipped, as the Java
/// client's list type does; a bad entry is named.
fn servers(i: &Input<'_>) -> Result<Setting, ConfigError> {
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
    Ok(Setting::BootstrapServers(servers))
}

/// `api.version.max`: `API=VERSION` pairs. An API kcon does not speak, and a version below
/// kcon's lowest (which would leave none), are refused with the reason.
fn api_version_max(i: &Input<'_>) -> Result<Setting, ConfigError> {
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
    Ok(Setting::ApiVersionMax(caps))
}

/// `partition.assignment.strategy`: at least one assignor, none twice.
fn assignors(i: &Input<'_>) -> Result<Setting, ConfigError> {
    let mut list = Vec::new();
    for name in i
        .trimmed()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match BuiltinAssignor::from_name(name) {
            Some(a) if !list.contains(&a) => list.push(a),
            _ => return Err(i.refused()),
        }
    }
    if list.is_empty() {
        return Err(i.refused());
    }
    Ok(Setting::PartitionAssignmentStrategy(list))
}

/// `errors.tolerance`.
fn tolerance(i: &Input<'_>) -> Result<Setting, ConfigError> {
    ErrorTolerance::parse(i.value)
        .map(Setting::ErrorsTolerance)
        .ok_or_else(|| i.refused())
}

/// `errors.retry.timeout`: milliseconds, or -1 for no limit (Kafka Connect's reading).
fn retry_timeout(i: &Input<'_>) -> Result<Setting, ConfigError> {
    if i.trimmed() == "-1" {
        return Ok(Setting::ErrorsRetryTimeout(None));
    }
    super::parse_millis(i.property, i.trimmed(), 0)
        .map(|d| Setting::ErrorsRetryTimeout(Some(d)))
        .map_err(|_| i.refused())
}

/// `errors.breaker.failures`: a count, or empty for none.
fn breaker_failures(i: &Input<'_>) -> Result<Setting, ConfigError> {
    optional_count(i, 0, 99_999).map(Setting::ErrorsBreakerFailures)
}

/// `errors.breaker.consecutive.failures`: a count, or empty for none.
fn breaker_consecutive(i: &Input<'_>) -> Result<Setting, ConfigError> {
    optional_count(i, 1, MAX_COUNT).map(Setting::ErrorsBreakerConsecutiveFailures)
}

/// A whole number from `min` to `max`, or nothing for an empty value.
fn optional_count(i: &Input<'_>, min: usize, max: usize) -> Result<Option<usize>, ConfigError> {
    if i.trimmed().is_empty() {
        return Ok(None);
    }
    super::parse_count(i.property, i.trimmed(), min, max, i.allowed).map(Some)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::registry::{erased, faults, lookup};
    use super::*;

    #[test]
    fn the_table_is_sound() {
        assert_eq!(faults(erased(PROPERTIES)), [] as [String; 0]);
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
    fn retry_backoff_reaches_every_part_that_retries() {
        for name in ["retry.backoff.ms", "retry.backoff.max.ms"] {
            let parts = lookup(PROPERTIES, name).unwrap().parts;
            assert_eq!(parts, [POOL, GROUP, OFFSETS, FETCH]);
        }
    }

    #[test]
    fn values_are_read_by_kind() {
        let read = |name: &str, value: &str| lookup(PROPERTIES, name).unwrap().parse(value);
        assert_eq!(
            read("fetch.max.wait.ms", " 250 "),
            Ok(Setting::FetchMaxWait(Duration::from_millis(250)))
        );
        assert_eq!(
            read("allow.auto.create.topics", "FALSE"),
            Ok(Setting::AllowAutoCreateTopics(false))
        );
        assert_eq!(read("client.rack", " "), Ok(Setting::ClientRack(None)));
        assert_eq!(
            read("sasl.username", " al ice "),
            Ok(Setting::SaslUsername(Some(" al ice ".into())))
        );
        assert_eq!(
            read("bootstrap.servers", "a:1, [::1]:9092,"),
            Ok(Setting::BootstrapServers(vec![
                "a:1".into(),
                "[::1]:9092".into()
            ]))
        );
        let e = read("bootstrap.servers", "a:1,b").unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        let e = read("bootstrap.servers", " , ").unwrap_err();
        assert!(e.to_string().contains("at least one host:port"), "{e}");
        assert!(read("fetch.min.bytes", "2147483648").is_err());
    }
}
