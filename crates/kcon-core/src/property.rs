//! Kafka properties by name: the mechanism of the tables of properties each crate contributes
//! ([`registry`]), the error a refused value gets, and the parsers of durations, booleans,
//! counts and `host:port` that the tables' entries share.

use std::fmt;
use std::time::Duration;

mod markdown;
pub mod registry;
pub mod suggest;

pub use registry::{
    AnyProperty, Configurable, DefaultValue, Input, Kind, Part, Property, check, erased, faults,
    lookup, names, parts_of, refused, set,
};

/// A configuration value that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No property has this name.
    UnknownProperty {
        /// The name given.
        property: String,
        /// The known property it is closest to, when one is close ([`suggest::closest`]):
        /// the name meant, most likely.
        suggestion: Option<String>,
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
            ConfigError::UnknownProperty { property, .. }
            | ConfigError::InvalidValue { property, .. }
            | ConfigError::Unusable { property, .. } => property,
        }
    }

    /// The error for `property`, which none of the names `known` is: with the known name it is
    /// closest to, if one is close ([`suggest::closest`]). `known` is every name (and alias)
    /// the client being configured takes.
    pub fn unknown<'a>(property: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        ConfigError::UnknownProperty {
            property: property.to_owned(),
            suggestion: suggest::closest(property, known).map(str::to_owned),
        }
    }

    /// The known property an unknown one is closest to, when one is close.
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownProperty { suggestion, .. } => suggestion.as_deref(),
            _ => None,
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
            ConfigError::UnknownProperty {
                property,
                suggestion,
            } => {
                f.write_str("unknown configuration property ")?;
                write_name(f, property)?;
                if let Some(s) = suggestion {
                    f.write_str(" (did you mean ")?;
                    write_name(f, s)?;
                    f.write_str("?)")?;
                }
                Ok(())
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

/// A property's name as given: bare when it looks like one (letters, digits, `.`, `_`, `-`),
/// quoted otherwise, so that an empty name or one with spaces shows as what it is.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        f.write_str(name)
    } else {
        write!(f, "{name:?}")
    }
}

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
    fn an_unknown_property_says_which_known_one_it_is_closest_to() {
        let known = ["auto.offset.reset", "group.id"];
        let e = ConfigError::unknown("auto.offset.rest", known);
        assert_eq!(
            e.to_string(),
            "unknown configuration property auto.offset.rest (did you mean auto.offset.reset?)"
        );
        assert_eq!(e.suggestion(), Some("auto.offset.reset"));
        assert_eq!(e.property(), "auto.offset.rest");
        let e = ConfigError::unknown("fetch.min.bytes", known);
        assert_eq!(
            e.to_string(),
            "unknown configuration property fetch.min.bytes"
        );
        assert_eq!(e.suggestion(), None);
        let e = ConfigError::unknown("group id", known);
        assert_eq!(
            e.to_string(),
            "unknown configuration property \"group id\" (did you mean group.id?)"
        );
        assert_eq!(
            ConfigError::unknown("", known).to_string(),
            "unknown configuration property \"\""
        );
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
