//! Kafka properties by name: the mechanism of the tables of properties each crate contributes
//! ([`registry`]), the error a refused value gets, and the parsers of durations, booleans,
//! counts and `host:port` that the tables' entries share.

use std::fmt;
use std::time::Duration;

mod markdown;
pub mod registry;

pub use registry::{
    AnyProperty, Configurable, DefaultValue, Input, Kind, Part, Property, check, erased, faults,
    lookup, parts_of, refused, set,
};

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
    /// The value names something that cannot be used: a file that cannot be read, or that
    /// holds no certificate or key.
    Unusable {
        /// The property.
        property: String,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl ConfigError {
    /// The name of the property the error is about.
    pub fn property(&self) -> &str {
        match self {
            ConfigError::UnknownProperty { property }
            | ConfigError::InvalidValue { property, .. }
            | ConfigError::Unusable { property, .. } => property,
        }
    }

    /// The error for `value` of `property`, well-formed but unusable for `reason`.
    pub fn unusable(property: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Unusable {
            property: property.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// The error for `value` refused for `property`, which accepts `expected`.
    pub fn invalid(property: &str, value: &str, expected: &'static str) -> Self {
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
            ConfigError::Unusable {
                property,
                value,
                reason,
            } => write!(f, "cannot use {value:?} for {property}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// What a duration property with lower bound `min` accepts, in words.
pub const fn millis_allowed(min: u64) -> &'static str {
    if min == 0 {
        "a whole number of milliseconds, at least 0"
    } else {
        "a whole number of milliseconds, at least 1"
    }
}

/// A duration property in whole milliseconds, at least `min` (0 or 1) and at most
/// 2147483647: what every `*.ms` property of kcon's crates accepts.
pub fn parse_millis(property: &str, v: &str, min: u64) -> Result<Duration, ConfigError> {
    let expected = millis_allowed(min);
    // The upper bound keeps `Instant + Duration` from overflowing: i32::MAX ms (24.8 days) is
    // also the Java client's largest int-typed timeout.
    match v.parse::<u64>() {
        Ok(ms) if ms >= min && ms <= i32::MAX as u64 => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::invalid(property, v, expected)),
    }
}

/// A boolean property: `true` or `false`, in any case (as the Java client's `ConfigDef`).
pub fn parse_bool(property: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::invalid(property, v, "true or false")),
    }
}

/// A count property: a whole number from `min` to `max`; `expected` says so in words.
pub fn parse_count(
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

/// Splits `host:port` (IPv6 hosts in brackets, `[::1]:9092`); `None` if it is not one.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("kafka:9092"), Some(("kafka", 9092)));
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1", 9092)));
        assert_eq!(split_host_port("10.0.0.1:1"), Some(("10.0.0.1", 1)));
        assert_eq!(split_host_port("kafka"), None);
        assert_eq!(split_host_port("[::1:9092"), None);
    }
}
