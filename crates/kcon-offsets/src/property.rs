//! The properties of commits and offset lookups. Those other parts take too (`group.id`,
//! `isolation.level`, `retry.backoff.ms`, ...) are in their tables as well, with the same words:
//! a builder that concatenates the tables hands the value to each.

use std::time::Duration;

use kcon_core::offsets::IsolationLevel;
use kcon_core::property::registry::{DefaultValue, Kind, Part, Property};

/// kcon-offsets' `OffsetsConfig`: commits and offset lookups.
pub const OFFSETS: Part = Part::new("offsets");

/// One of the offsets' properties, read by its entry in [`PROPERTIES`]: an
/// [`OffsetsConfig`](crate::OffsetsConfig) takes it into a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffsetsSetting {
    /// `group.id`, as given.
    GroupId(String),
    /// `group.instance.id`; `None` when set empty.
    GroupInstanceId(Option<String>),
    /// `enable.auto.commit`.
    EnableAutoCommit(bool),
    /// `auto.commit.interval.ms`.
    AutoCommitInterval(Duration),
    /// `enable.auto.offset.store`.
    EnableAutoOffsetStore(bool),
    /// `isolation.level`.
    IsolationLevel(IsolationLevel),
    /// `default.api.timeout.ms`.
    DefaultApiTimeout(Duration),
    /// `retry.backoff.ms`.
    RetryBackoff(Duration),
    /// `retry.backoff.max.ms`.
    RetryBackoffMax(Duration),
}

/// The offsets' properties, in the order of the README's table. To add one, see DESIGN.md
/// ("How to add a property").
pub static PROPERTIES: &[Property<OffsetsSetting>] = &[
    Property {
        name: "group.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[OFFSETS],
        doc: "The consumer group to join and commit for; without it the consumer reads only \
              the partitions it is assigned and commits nothing.",
        kind: Kind::Text {
            allowed: "any text, spaces kept",
            setting: OffsetsSetting::GroupId,
        },
    },
    Property {
        name: "group.instance.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[OFFSETS],
        doc: "Makes the member static (KIP-345): restarted within session.timeout.ms it gets \
              its partitions back without a rebalance.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a name, unique in the group; empty unsets it",
            setting: OffsetsSetting::GroupInstanceId,
        },
    },
    Property {
        name: "enable.auto.commit",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: &[OFFSETS],
        doc: "Commit the stored offsets every auto.commit.interval.ms, before partitions are \
              given up, and on close.",
        kind: Kind::Bool(OffsetsSetting::EnableAutoCommit),
    },
    Property {
        name: "auto.commit.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("5000"),
        parts: &[OFFSETS],
        doc: "The time between automatic commits; at least 1 with enable.auto.commit.",
        kind: Kind::Millis {
            min: 0,
            setting: OffsetsSetting::AutoCommitInterval,
        },
    },
    Property {
        name: "enable.auto.offset.store",
        aliases: &[],
        default: DefaultValue::Value("true"),
        parts: &[OFFSETS],
        doc: "Store a record's offset for commit once the application asks for more records; \
              false commits only what the application stores.",
        kind: Kind::Bool(OffsetsSetting::EnableAutoOffsetStore),
    },
    Property {
        name: "isolation.level",
        aliases: &[],
        default: DefaultValue::Value("read_uncommitted"),
        parts: &[OFFSETS],
        doc: "read_committed leaves out records of aborted transactions and stops at the first \
              open one.",
        kind: Kind::Other {
            allowed: IsolationLevel::ALLOWED,
            parse: |i| IsolationLevel::parse(i.value).map(OffsetsSetting::IsolationLevel),
        },
    },
    Property {
        name: "default.api.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: &[OFFSETS],
        doc: "How long a commit, an offset lookup or an admin call (describing, listing, \
              resetting a group) may keep retrying before it fails.",
        kind: Kind::Millis {
            min: 1,
            setting: OffsetsSetting::DefaultApiTimeout,
        },
    },
    Property {
        name: "retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[OFFSETS],
        doc: "The first pause before a failed request is tried again; it doubles, with jitter, \
              at each failure (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: OffsetsSetting::RetryBackoff,
        },
    },
    Property {
        name: "retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[OFFSETS],
        doc: "The most the retry pause grows to (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: OffsetsSetting::RetryBackoffMax,
        },
    },
];

#[cfg(test)]
mod tests {
    use kcon_core::property::registry::{erased, faults};

    use super::*;

    #[test]
    fn the_table_is_sound() {
        assert_eq!(faults(erased(PROPERTIES)), [] as [String; 0]);
    }
}
