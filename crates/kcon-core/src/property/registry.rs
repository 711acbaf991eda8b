//! The one registry of the properties kcon accepts: for each its Kafka name and aliases, how
//! its value is read, its default, what it allows in words, the parts it configures and a
//! line of documentation.
//!
//! Everything that takes properties by name asks it: each part's `set` (through [`set`]), the
//! `ConsumerBuilder`, which hands each value to every part [`Property::parts`] names, and the
//! `kcon` tool's `-X`. The README's configuration table is [`markdown_table`], checked by a
//! test. The parts keep typed fields: the registry reads a value once into a [`Setting`], and
//! a part's [`Configurable::apply`] moves it into its field.
//!
//! The registry lives in kcon-core because every part depends on kcon-core and on nothing
//! above it: here it can name every part's properties and types while each part's `set` still
//! uses it.

use std::fmt;
use std::time::Duration;

use super::setting::Setting;
use super::table::TABLE;
use super::{ConfigError, millis_allowed, parse_bool, parse_count, parse_millis};

pub use super::markdown::markdown_table;

/// Every property kcon accepts, in the order of the README's table.
pub static PROPERTIES: &[Property] = TABLE;

/// A part of kcon that properties configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// kcon-pool's `PoolConfig`: connections, metadata, TLS and SASL.
    Pool,
    /// kcon-group's `GroupConfig`: the group member.
    Group,
    /// kcon-offsets' `OffsetsConfig`: commits and offset lookups.
    Offsets,
    /// kcon-fetch's `FetchConfig`: the fetcher.
    Fetch,
    /// The `Consumer` itself (kcon).
    Consumer,
    /// The record processor's policies for records that fail (kcon's `Processor`).
    Policy,
}

impl Part {
    /// The part's name in the README's table.
    pub fn name(self) -> &'static str {
        match self {
            Part::Pool => "pool",
            Part::Group => "group",
            Part::Offsets => "offsets",
            Part::Fetch => "fetch",
            Part::Consumer => "consumer",
            Part::Policy => "policy",
        }
    }
}

/// A property's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, in the text form [`Property::parse`] reads.
    Value(&'static str),
    /// None: the property is unset until set (`bootstrap.servers` must be).
    Unset,
    /// It follows other properties, as these words say.
    Derived(&'static str),
}

/// One property: what the registry knows of it.
#[derive(Debug)]
pub struct Property {
    /// Its Kafka name.
    pub name: &'static str,
    /// Other names accepted for it (librdkafka's spellings).
    pub aliases: &'static [&'static str],
    /// Its default.
    pub default: DefaultValue,
    /// The parts it configures, each of which gets its value.
    pub parts: &'static [Part],
    /// One line on what it does.
    pub doc: &'static str,
    /// How its value is read.
    pub(super) kind: Kind,
}

/// How a property's value is read, and into which [`Setting`].
#[derive(Debug)]
pub(super) enum Kind {
    /// Whole milliseconds from `min` (0 or 1) to 2147483647, trimmed.
    Millis {
        min: u64,
        setting: fn(Duration) -> Setting,
    },
    /// `true` or `false` in any case, trimmed.
    Bool(fn(bool) -> Setting),
    /// A whole number from `min` to `max` (at most `i32::MAX`: Kafka's counts are 32-bit),
    /// trimmed.
    Count {
        min: usize,
        max: usize,
        allowed: &'static str,
        setting: fn(usize) -> Setting,
    },
    /// Any text, as given (not trimmed: spaces can belong to a name or a password).
    Text {
        allowed: &'static str,
        setting: fn(String) -> Setting,
    },
    /// Text, or nothing: an empty value unsets the property. Trimmed when `trim`.
    Optional {
        trim: bool,
        allowed: &'static str,
        setting: fn(Option<String>) -> Setting,
    },
    /// A syntax of the property's own, read by `parse`.
    Other {
        allowed: &'static str,
        parse: fn(&Input<'_>) -> Result<Setting, ConfigError>,
    },
}

/// A value to read, for [`Kind::Other`]'s parsers.
pub(super) struct Input<'a> {
    pub(super) property: &'static str,
    pub(super) value: &'a str,
    pub(super) allowed: &'static str,
}

impl Input<'_> {
    /// The value without surrounding whitespace.
    pub(super) fn trimmed(&self) -> &str {
        self.value.trim()
    }

    /// The value refused, with what the property allows.
    pub(super) fn refused(&self) -> ConfigError {
        ConfigError::invalid(self.property, self.value, self.allowed)
    }
}

impl Property {
    /// What the property accepts, in words: what the README says and a refused value's error
    /// names.
    pub fn allowed(&self) -> &'static str {
        match self.kind {
            Kind::Millis { min, .. } => millis_allowed(min),
            Kind::Bool(_) => "true or false",
            Kind::Count { allowed, .. }
            | Kind::Text { allowed, .. }
            | Kind::Optional { allowed, .. }
            | Kind::Other { allowed, .. } => allowed,
        }
    }

    /// Whether the property configures `part`.
    pub fn configures(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// The names of the parts it configures, comma-separated (`group, offsets`).
    pub fn part_names(&self) -> String {
        let names: Vec<&str> = self.parts.iter().map(|part| part.name()).collect();
        names.join(", ")
    }

    /// Whether `name` is the property's name or one of its aliases.
    pub fn is_named(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    /// Reads `value`; a value the property does not allow is refused with an error naming the
    /// property and what it allows.
    pub fn parse(&self, value: &str) -> Result<Setting, ConfigError> {
        let name = self.name;
        let trimmed = value.trim();
        Ok(match self.kind {
            Kind::Millis { min, setting } => setting(parse_millis(name, trimmed, min)?),
            Kind::Bool(setting) => setting(parse_bool(name, trimmed)?),
            Kind::Count {
                min,
                max,
                allowed,
                setting,
            } => setting(parse_count(name, trimmed, min, max, allowed)?),
            Kind::Text { setting, .. } => setting(value.to_owned()),
            Kind::Optional { trim, setting, .. } => {
                let v = if trim { trimmed } else { value };
                setting((!v.is_empty()).then(|| v.to_owned()))
            }
            Kind::Other { allowed, parse } => parse(&Input {
                property: name,
                value,
                allowed,
            })?,
        })
    }
}

/// The property named `name` (or one of its aliases), if kcon has one.
pub fn lookup(name: &str) -> Option<&'static Property> {
    PROPERTIES.iter().find(|p| p.is_named(name))
}

/// The error for `value` of the registered property `name`, with what the registry says it
/// allows: for the parts' checks across properties (`validate`), which refuse a value the way
/// `set` would.
pub fn refused(name: &str, value: &str) -> ConfigError {
    let allowed = lookup(name).map_or("a value the property allows", Property::allowed);
    ConfigError::invalid(name, value, allowed)
}

/// Checks `value` of the registered property `name` as [`Property::parse`] would: for the
/// parts' checks of fields set directly, which hold the same bounds as the registry.
pub fn check(name: &str, value: &str) -> Result<(), ConfigError> {
    match lookup(name) {
        Some(property) => property.parse(value).map(drop),
        None => Err(ConfigError::UnknownProperty {
            property: name.to_owned(),
        }),
    }
}

/// The properties that configure `part`.
pub fn properties_of(part: Part) -> impl Iterator<Item = &'static Property> {
    PROPERTIES.iter().filter(move |p| p.configures(part))
}

/// A part's configuration, which takes the [`Setting`]s the registry routes to it.
pub trait Configurable {
    /// The part this configures.
    const PART: Part;

    /// Moves `setting` into its field; false if the part has no field for it (the registry
    /// routed a property here that the part does not take: its tests check that they agree,
    /// with [`defaults_disagreeing`]).
    fn apply(&mut self, setting: &Setting) -> bool;
}

/// Sets the property `name` of `config` from its text: the `set` of every part. A name the
/// registry does not route to the part is unknown to it; a refused value leaves `config`
/// unchanged.
pub fn set<C: Configurable>(config: &mut C, name: &str, value: &str) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownProperty {
        property: name.to_owned(),
    };
    let property = lookup(name)
        .filter(|p| p.configures(C::PART))
        .ok_or_else(unknown)?;
    let setting = property.parse(value)?;
    if config.apply(&setting) {
        Ok(())
    } else {
        Err(unknown())
    }
}

/// For the parts' tests: the properties the registry routes to `C`'s part that `C` does not
/// take, or whose registry default, set on `C::default()`, changes it: where the registry (and
/// so the README) and the part disagree. An unset property is set empty (skipped where empty is
/// no value of its), and compared only where an empty value unsets it; derived defaults are
/// not checked. Empty when they agree.
pub fn defaults_disagreeing<C>() -> Vec<&'static str>
where
    C: Configurable + Default + fmt::Debug,
{
    let default = format!("{:?}", C::default());
    properties_of(C::PART)
        .filter_map(|p| {
            let (value, compare) = match p.default {
                DefaultValue::Value(v) => (v, true),
                DefaultValue::Unset => ("", matches!(p.kind, Kind::Optional { .. })),
                DefaultValue::Derived(_) => return None,
            };
            let setting = match p.parse(value) {
                Ok(setting) => setting,
                Err(_) if p.default == DefaultValue::Unset => return None,
                Err(_) => return Some(p.name),
            };
            let mut config = C::default();
            let taken = config.apply(&setting);
            (!taken || (compare && format!("{config:?}") != default)).then_some(p.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for p in PROPERTIES {
            for name in std::iter::once(&p.name).chain(p.aliases) {
                assert!(seen.insert(*name), "{name} is registered twice");
            }
            assert!(!p.parts.is_empty(), "{} configures nothing", p.name);
            assert!(!p.doc.is_empty() && !p.doc.contains('\n'), "{}", p.name);
        }
    }

    #[test]
    fn defaults_are_values_the_property_accepts() {
        for p in PROPERTIES {
            if let DefaultValue::Value(v) = p.default {
                p.parse(v)
                    .unwrap_or_else(|e| panic!("{}'s default: {e}", p.name));
            }
        }
    }

    #[test]
    fn a_refused_value_says_what_the_registry_says_is_allowed() {
        for p in PROPERTIES {
            match p.parse("\u{1}") {
                Ok(_) => assert!(
                    matches!(p.kind, Kind::Text { .. } | Kind::Optional { .. }),
                    "{} took \\u{{1}}",
                    p.name
                ),
                Err(ConfigError::InvalidValue {
                    property, expected, ..
                }) => {
                    assert_eq!(property, p.name);
                    assert_eq!(expected, p.allowed(), "{}", p.name);
                }
                Err(e) => panic!("{}: {e}", p.name),
            }
        }
    }

    #[test]
    fn aliases_find_their_property() {
        assert_eq!(lookup("sasl.mechanisms").unwrap().name, "sasl.mechanism");
        assert_eq!(lookup("sasl.mechanism").unwrap().name, "sasl.mechanism");
        assert!(lookup("sasl.mechanismz").is_none());
    }

    #[test]
    fn retry_backoff_reaches_every_part_that_retries() {
        for name in ["retry.backoff.ms", "retry.backoff.max.ms"] {
            let parts = lookup(name).unwrap().parts;
            assert_eq!(parts, [Part::Pool, Part::Group, Part::Offsets, Part::Fetch]);
        }
    }

    #[test]
    fn values_are_read_by_kind() {
        let read = |name: &str, value: &str| lookup(name).unwrap().parse(value);
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
