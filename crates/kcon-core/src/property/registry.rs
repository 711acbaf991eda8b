//! The mechanism of kcon's properties: a [`Property`] says, for one Kafka name, its aliases,
//! how its value is read into a crate's setting type, its default, what it allows in words,
//! the parts it configures and a line of documentation.
//!
//! Each crate owns a table of the properties it introduces (a `&'static [Property<S>]` over a
//! setting enum of its own) and implements [`Configurable<S>`] for the configurations that
//! take them: a part's `set` goes through [`set`], and a builder that takes the properties of
//! several crates (the `ConsumerBuilder`, the `kcon` tool's `-X`) looks a name up in each of
//! their tables in turn. The README's configuration table is [`markdown_table`] over those
//! tables, checked by a test. The parts keep typed fields: a table reads a value once into a
//! setting, and a part's [`Configurable::apply`] moves it into its field.
//!
//! kcon-core names no property itself: every crate depends on kcon-core, so each can build
//! its table on this mechanism, and none of them names a property of a crate above it.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, millis_allowed, parse_bool, parse_count, parse_millis};

pub use super::markdown::markdown_table;

/// A part of kcon that properties configure, by the name the README's table gives it: each
/// crate names its own parts (kcon-pool's `pool`, kcon-produce's `producer`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Part(&'static str);

impl Part {
    /// The part called `name`.
    pub const fn new(name: &'static str) -> Part {
        Part(name)
    }

    /// The part's name in the README's table.
    pub fn name(self) -> &'static str {
        self.0
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

/// One property, read into the setting type `S` of the crate whose table holds it.
#[derive(Debug)]
pub struct Property<S: 'static> {
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
    pub kind: Kind<S>,
}

/// How a property's value is read, and into which setting.
#[derive(Debug)]
pub enum Kind<S: 'static> {
    /// Whole milliseconds from `min` (0 or 1) to 2147483647, trimmed.
    Millis {
        /// The least allowed: 0 or 1.
        min: u64,
        /// The setting for the duration read.
        setting: fn(Duration) -> S,
    },
    /// `true` or `false` in any case, trimmed.
    Bool(fn(bool) -> S),
    /// A whole number from `min` to `max`, trimmed.
    Count {
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
        /// What is allowed, in words.
        allowed: &'static str,
        /// The setting for the count read.
        setting: fn(usize) -> S,
    },
    /// Any text, as given (not trimmed: spaces can belong to a name or a password).
    Text {
        /// What is allowed, in words.
        allowed: &'static str,
        /// The setting for the text.
        setting: fn(String) -> S,
    },
    /// Text, or nothing: an empty value unsets the property. Trimmed when `trim`.
    Optional {
        /// Whether surrounding whitespace is dropped.
        trim: bool,
        /// What is allowed, in words.
        allowed: &'static str,
        /// The setting for the text, `None` when empty.
        setting: fn(Option<String>) -> S,
    },
    /// A syntax of the property's own, read by `parse`.
    Other {
        /// What is allowed, in words.
        allowed: &'static str,
        /// Reads the value, refusing it with [`Input::refused`] or an error of its own.
        parse: fn(&Input<'_>) -> Result<S, ConfigError>,
    },
}

/// A value to read, for [`Kind::Other`]'s parsers.
#[derive(Debug)]
pub struct Input<'a> {
    /// The property's name.
    pub property: &'static str,
    /// The value as given.
    pub value: &'a str,
    /// What the property allows, in words.
    pub allowed: &'static str,
}

impl Input<'_> {
    /// The value without surrounding whitespace.
    pub fn trimmed(&self) -> &str {
        self.value.trim()
    }

    /// The value refused, with what the property allows.
    pub fn refused(&self) -> ConfigError {
        ConfigError::invalid(self.property, self.value, self.allowed)
    }
}

impl<S> Property<S> {
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
    pub fn parse(&self, value: &str) -> Result<S, ConfigError> {
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

/// A property of any crate's table, its setting type set aside: what the README's table, the
/// checks of a concatenation of tables and a tool's messages need of it.
pub trait AnyProperty: fmt::Debug + Sync {
    /// Its Kafka name.
    fn name(&self) -> &'static str;
    /// Other names accepted for it.
    fn aliases(&self) -> &'static [&'static str];
    /// Its default.
    fn default(&self) -> DefaultValue;
    /// The parts it configures.
    fn parts(&self) -> &'static [Part];
    /// One line on what it does.
    fn doc(&self) -> &'static str;
    /// What it accepts, in words.
    fn allowed(&self) -> &'static str;
    /// Whether every text is a value of it (its kind is text or optional text).
    fn takes_any_text(&self) -> bool;
    /// Reads `value` and sets the setting aside: whether the property accepts it.
    fn check(&self, value: &str) -> Result<(), ConfigError>;

    /// Whether `name` is the property's name or one of its aliases.
    fn is_named(&self, name: &str) -> bool {
        self.name() == name || self.aliases().contains(&name)
    }

    /// Whether the property configures `part`.
    fn configures(&self, part: Part) -> bool {
        self.parts().contains(&part)
    }

    /// The names of the parts it configures, comma-separated (`group, offsets`).
    fn part_names(&self) -> String {
        let names: Vec<&str> = self.parts().iter().map(|part| part.name()).collect();
        names.join(", ")
    }
}

impl<S: fmt::Debug + Sync> AnyProperty for Property<S> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }
    fn default(&self) -> DefaultValue {
        self.default
    }
    fn parts(&self) -> &'static [Part] {
        self.parts
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn allowed(&self) -> &'static str {
        Property::allowed(self)
    }
    fn takes_any_text(&self) -> bool {
        matches!(self.kind, Kind::Text { .. } | Kind::Optional { .. })
    }
    fn check(&self, value: &str) -> Result<(), ConfigError> {
        self.parse(value).map(drop)
    }
}

/// The properties of `table`, their setting type set aside: for concatenating tables of
/// several crates.
pub fn erased<S: fmt::Debug + Sync>(
    table: &'static [Property<S>],
) -> impl Iterator<Item = &'static dyn AnyProperty> + Clone {
    table.iter().map(|p| p as &'static dyn AnyProperty)
}

/// A property a part refuses although it takes the rest of its owner's: `by` names the part
/// (a share consumer takes the consumer's properties, less those its group decides), `why`
/// what decides instead, in words the refusal's error carries. A crate keeps its refusals in a
/// table beside its properties, and a builder asks [`refusal`] before it sets a property.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    /// The property's Kafka name.
    pub name: &'static str,
    /// The part that refuses it.
    pub by: Part,
    /// Why, and what decides instead.
    pub why: &'static str,
}

/// Why `part` refuses the property `property` names, as `table` says, if it does.
pub fn refusal(
    table: &'static [Refusal],
    part: Part,
    property: &dyn AnyProperty,
) -> Option<&'static Refusal> {
    table
        .iter()
        .find(|r| r.by == part && property.is_named(r.name))
}

/// The property of `table` named `name` (or one of its aliases), if it has one.
pub fn lookup<S>(table: &'static [Property<S>], name: &str) -> Option<&'static Property<S>> {
    table.iter().find(|p| p.is_named(name))
}

/// The error for `value` of the property `name` of `table`, with what the table says it
/// allows: for the parts' checks across properties (`validate`), which refuse a value the way
/// `set` would.
pub fn refused<S>(table: &'static [Property<S>], name: &str, value: &str) -> ConfigError {
    let allowed = lookup(table, name).map_or("a value the property allows", Property::allowed);
    ConfigError::invalid(name, value, allowed)
}

/// Checks `value` of the property `name` of `table` as [`Property::parse`] would: for the
/// parts' checks of fields set directly, which hold the same bounds as the table.
pub fn check<S>(table: &'static [Property<S>], name: &str, value: &str) -> Result<(), ConfigError> {
    match lookup(table, name) {
        Some(property) => property.parse(value).map(drop),
        None => Err(ConfigError::unknown(name, table_names(table))),
    }
}

/// Every name and alias of `properties` (tables concatenated, [`erased`]): what an unknown
/// name is compared with for a suggestion ([`ConfigError::unknown`]).
pub fn names<'a>(
    properties: impl IntoIterator<Item = &'a dyn AnyProperty>,
) -> impl Iterator<Item = &'static str> {
    properties
        .into_iter()
        .flat_map(|p| std::iter::once(p.name()).chain(p.aliases().iter().copied()))
}

/// Every name and alias of the properties of one table.
fn table_names<S: 'static>(
    properties: impl IntoIterator<Item = &'static Property<S>>,
) -> impl Iterator<Item = &'static str> {
    properties
        .into_iter()
        .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
}

/// The properties of `table` that configure `part`.
pub fn properties_of<S>(
    table: &'static [Property<S>],
    part: Part,
) -> impl Iterator<Item = &'static Property<S>> {
    table.iter().filter(move |p| p.configures(part))
}

/// A part's configuration, which takes the settings of type `S` that a table routes to it. A
/// configuration may take the settings of several tables (kcon-group's takes kcon-pool's
/// `retry.backoff.ms`): it implements the trait once for each setting type.
pub trait Configurable<S> {
    /// The part this configures.
    const PART: Part;

    /// Moves `setting` into its field; false if the part has no field for it (the table
    /// routed a property here that the part does not take: its tests check that they agree,
    /// with [`defaults_disagreeing`]).
    fn apply(&mut self, setting: &S) -> bool;
}

/// Sets the property `name` of `table` on `config` from its text: the `set` of every part. A
/// name the table does not route to the part is unknown to it; a refused value leaves
/// `config` unchanged.
pub fn set<S, C: Configurable<S>>(
    table: &'static [Property<S>],
    config: &mut C,
    name: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let unknown = || ConfigError::unknown(name, table_names(properties_of(table, C::PART)));
    let property = lookup(table, name)
        .filter(|p| p.configures(C::PART))
        .ok_or_else(unknown)?;
    let setting = property.parse(value)?;
    if config.apply(&setting) {
        Ok(())
    } else {
        Err(unknown())
    }
}

/// For the parts' tests: the properties of `table` routed to `C`'s part that `C` does not
/// take, or whose table default, set on `C::default()`, changes it: where the table (and so
/// the README) and the part disagree. An unset property is set empty (skipped where empty is
/// no value of its), and compared only where an empty value unsets it; derived defaults are
/// not checked. Empty when they agree.
pub fn defaults_disagreeing<S, C>(table: &'static [Property<S>]) -> Vec<&'static str>
where
    C: Configurable<S> + Default + fmt::Debug,
{
    let default = format!("{:?}", C::default());
    properties_of(table, C::PART)
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

/// The parts that the entries named `name` (or one of whose aliases it is) among `properties`
/// configure, in order: a property several crates take is in each of their tables, each entry
/// naming its own crate's parts. Empty when no entry has the name.
pub fn parts_of<'a>(
    properties: impl IntoIterator<Item = &'a dyn AnyProperty>,
    name: &str,
) -> Vec<Part> {
    let mut parts = Vec::new();
    for p in properties.into_iter().filter(|p| p.is_named(name)) {
        for part in p.parts() {
            if !parts.contains(part) {
                parts.push(*part);
            }
        }
    }
    parts
}

/// What is wrong with `properties`, the tables a builder concatenates (one table alone, for a
/// crate's own tests): a name or alias given to two properties; a property in several tables
/// whose entries disagree on its aliases, default, what it allows or its documentation, or
/// configure a part twice; a property configuring nothing; a documentation line empty or of
/// several lines; a default the property refuses; or a refused value whose error does not name
/// the property and what it allows. Empty when nothing is.
pub fn faults<'a>(properties: impl IntoIterator<Item = &'a dyn AnyProperty>) -> Vec<String> {
    let mut faults = Vec::new();
    // Each name and alias, with the property it names and the first entry of that property.
    let mut seen: std::collections::BTreeMap<&str, &dyn AnyProperty> = Default::default();
    let mut parts: std::collections::BTreeMap<&str, Vec<Part>> = Default::default();
    for p in properties {
        let name = p.name();
        if let Some(first) = seen.get(name).copied().filter(|first| first.name() == name) {
            if first.aliases() != p.aliases()
                || first.default() != p.default()
                || first.allowed() != p.allowed()
                || first.doc() != p.doc()
            {
                faults.push(format!("{name}'s entries disagree"));
            }
        } else {
            for n in std::iter::once(&name).chain(p.aliases()) {
                if seen.insert(*n, p).is_some() {
                    faults.push(format!("{n} names two properties"));
                }
            }
        }
        let taken = parts.entry(name).or_default();
        for part in p.parts() {
            if taken.contains(part) {
                faults.push(format!("{name} configures {} twice", part.name()));
            }
            taken.push(*part);
        }
        if p.parts().is_empty() {
            faults.push(format!("{name} configures nothing"));
        }
        if p.doc().is_empty() || p.doc().contains('\n') {
            faults.push(format!("{name}'s documentation is not one line"));
        }
        if let DefaultValue::Value(v) = p.default()
            && let Err(e) = p.check(v)
        {
            faults.push(format!("{name}'s default: {e}"));
        }
        match p.check("\u{1}") {
            Ok(()) if !p.takes_any_text() => faults.push(format!("{name} took \\u{{1}}")),
            Ok(()) => {}
            Err(ConfigError::InvalidValue {
                property, expected, ..
            }) if property == name && expected == p.allowed() => {}
            Err(e) => faults.push(format!("{name} refused \\u{{1}} with {e}")),
        }
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Part = Part::new("a");
    const B: Part = Part::new("b");

    #[derive(Debug, PartialEq)]
    enum One {
        Wait(Duration),
        Name(Option<String>),
    }

    #[derive(Debug, PartialEq)]
    enum Two {
        Wait(Duration),
    }

    static ONE: &[Property<One>] = &[
        Property {
            name: "x.wait.ms",
            aliases: &["x.wait"],
            default: DefaultValue::Value("5"),
            parts: &[A],
            doc: "A pause.",
            kind: Kind::Millis {
                min: 1,
                setting: One::Wait,
            },
        },
        Property {
            name: "x.name",
            aliases: &[],
            default: DefaultValue::Unset,
            parts: &[A],
            doc: "A name.",
            kind: Kind::Optional {
                trim: true,
                allowed: "a name; empty unsets it",
                setting: One::Name,
            },
        },
    ];

    static TWO: &[Property<Two>] = &[Property {
        name: "x.wait.ms",
        aliases: &["x.wait"],
        default: DefaultValue::Value("5"),
        parts: &[B],
        doc: "A pause.",
        kind: Kind::Millis {
            min: 1,
            setting: Two::Wait,
        },
    }];

    #[derive(Debug, Default)]
    struct PartA {
        wait: Duration,
        name: Option<String>,
    }

    impl Configurable<One> for PartA {
        const PART: Part = A;

        fn apply(&mut self, setting: &One) -> bool {
            match setting {
                One::Wait(d) => self.wait = *d,
                One::Name(n) => self.name = n.clone(),
            }
            true
        }
    }

    #[test]
    fn set_reads_by_name_or_alias_and_names_the_property_it_refuses() {
        let mut a = PartA::default();
        set(ONE, &mut a, "x.wait", " 7 ").unwrap();
        assert_eq!(a.wait, Duration::from_millis(7));
        set(ONE, &mut a, "x.name", " n ").unwrap();
        assert_eq!(a.name.as_deref(), Some("n"));
        let e = set(ONE, &mut a, "x.wait.ms", "0").unwrap_err();
        assert_eq!(e, ConfigError::invalid("x.wait.ms", "0", millis_allowed(1)));
        assert_eq!(
            a.wait,
            Duration::from_millis(7),
            "a refused value changes nothing"
        );
        let e = set(ONE, &mut a, "x.other", "1").unwrap_err();
        assert!(matches!(e, ConfigError::UnknownProperty { .. }), "{e}");
        assert_eq!(e.suggestion(), None, "{e}");
        // A name close to one of the part's: suggested, by set and by check alike.
        let e = set(ONE, &mut a, "x.wiat.ms", "1").unwrap_err();
        assert_eq!(e.suggestion(), Some("x.wait.ms"), "{e}");
        let e = check(ONE, "X_NAME", "n").unwrap_err();
        assert_eq!(e.suggestion(), Some("x.name"), "{e}");
        assert_eq!(
            refused(ONE, "x.wait.ms", "0"),
            ConfigError::invalid("x.wait.ms", "0", millis_allowed(1))
        );
        assert!(check(ONE, "x.wait.ms", "3").is_ok());
    }

    #[test]
    fn a_defaults_disagreement_is_named() {
        // PartA's default wait is 0, the table's 5.
        assert_eq!(defaults_disagreeing::<_, PartA>(ONE), ["x.wait.ms"]);
    }

    #[test]
    fn tables_concatenated_share_a_property_as_one_row() {
        let both = || erased(ONE).chain(erased(TWO));
        assert_eq!(faults(both()), [] as [String; 0]);
        assert_eq!(parts_of(both(), "x.wait"), [A, B]);
        let table = markdown_table(both());
        assert_eq!(table.matches("x.wait.ms").count(), 1, "{table}");
        assert!(table.contains("| a, b |"), "{table}");
        let twice = faults(erased(ONE).chain(erased(ONE)));
        assert!(
            twice.iter().any(|f| f.contains("configures a twice")),
            "{twice:?}"
        );
    }
}
