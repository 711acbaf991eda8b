//! The pool's configuration: Kafka property names, Java client and librdkafka defaults.

use std::fmt;
use std::time::Duration;

use kcon_codec::frame::DEFAULT_MAX_FRAME_SIZE;

use crate::backoff::ExponentialBackoff;

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
    ];

    /// Sets a property by its Kafka name from its string form.
    ///
    /// Durations are whole milliseconds, counts whole numbers, booleans `true`/`false`,
    /// `bootstrap.servers` a comma-separated list of `host:port`. A bad value is refused with an
    /// error naming the property and what it accepts, and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match name {
            "bootstrap.servers" => self.bootstrap_servers = parse_servers(v)?,
            "client.id" => self.client_id = value.to_owned(),
            "socket.connection.setup.timeout.ms" => {
                self.socket_connection_setup_timeout = millis(name, v, 1)?;
            }
            "request.timeout.ms" => self.request_timeout = millis(name, v, 1)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight_requests_per_connection =
                    count(name, v, 1, MAX_IN_FLIGHT_LIMIT, IN_FLIGHT_EXPECTED)?;
            }
            "metadata.max.age.ms" => self.metadata_max_age = millis(name, v, 0)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = millis(name, v, 0)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = millis(name, v, 0)?,
            "retry.backoff.ms" => self.retry_backoff = millis(name, v, 0)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = millis(name, v, 0)?,
            "connections.max.idle.ms" => self.connections_max_idle = millis(name, v, 0)?,
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
                self.allow_auto_create_topics = match v {
                    "true" => true,
                    "false" => false,
                    _ => return Err(ConfigError::invalid(name, value, "true or false")),
                };
            }
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
        Ok(())
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
        }
    }
}

/// librdkafka's range for `max.in.flight.requests.per.connection`.
const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
/// librdkafka's lower bound for `receive.message.max.bytes`.
const MIN_RECEIVE_MESSAGE_MAX_BYTES: usize = 1_000;
const IN_FLIGHT_EXPECTED: &str = "a whole number from 1 to 1000000";
const RECEIVE_MAX_EXPECTED: &str = "a whole number from 1000 to 2147483647";
const SERVERS_EXPECTED: &str = "a comma-separated list of host:port, port from 1 to 65535";

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No property has this name.
    UnknownProperty {
        /// The name given.
        property: String,
    },
    /// The value is not one the property accepts.
    InvalidValue {
        /// The property.
        property: String,
        /// The value given.
        value: String,
        /// What the property accepts.
        expected: &'static str,
    },
}

impl ConfigError {
    /// The name of the property the error is about.
    pub fn property(&self) -> &str {
        match self {
            ConfigError::UnknownProperty { property }
            | ConfigError::InvalidValue { property, .. } => property,
        }
    }

    fn invalid(property: &str, value: &str, expected: &'static str) -> Self {
        ConfigError::InvalidValue {
            property: property.to_owned(),
            value: value.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownProperty { property } => {
                write!(f, "unknown configuration property {property:?}")
            }
            ConfigError::InvalidValue {
                property,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for {property}: expected {expected}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

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

fn millis(property: &str, v: &str, min: u64) -> Result<Duration, ConfigError> {
    let expected = if min == 0 {
        "a whole number of milliseconds, at least 0"
    } else {
        "a whole number of milliseconds, at least 1"
    };
    // The upper bound keeps `Instant + Duration` from overflowing: i32::MAX ms (24.8 days) is
    // also the Java client's largest int-typed timeout.
    match v.parse::<u64>() {
        Ok(ms) if ms >= min && ms <= i32::MAX as u64 => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::invalid(property, v, expected)),
    }
}

fn count(
    property: &str,
    v: &str,
    min: usize,
    max: usize,
    expected: &'static str,
) -> Result<usize, ConfigError> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::invalid(property, v, expected)),
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
        c.validate().unwrap();
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
