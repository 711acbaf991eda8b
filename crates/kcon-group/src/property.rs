//! The group member's properties. Those other parts take too (`group.id`, `client.rack`,
//! `retry.backoff.ms`, ...) are in their tables as well, with the same words: a builder that
//! concatenates the tables hands the value to each.

use std::time::Duration;

use kcon_core::ConfigError;
use kcon_core::assignor::{BuiltinAssignor, GroupProtocol};
use kcon_core::property::registry::{DefaultValue, Input, Kind, Part, Property};

/// kcon-group's `GroupConfig`: the group member.
pub const GROUP: Part = Part::new("group");

const STRATEGY: &str = "a comma-separated list of distinct assignors: range, roundrobin, \
     sticky, cooperative-sticky (or their Java class names)";

/// One of the member's properties, read by its entry in [`PROPERTIES`]: a
/// [`GroupConfig`](crate::GroupConfig) takes it into a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupSetting {
    /// `group.id`, as given.
    GroupId(String),
    /// `group.instance.id`; `None` when set empty.
    GroupInstanceId(Option<String>),
    /// `group.protocol`.
    GroupProtocol(GroupProtocol),
    /// `group.remote.assignor`; `None` when set empty (the coordinator's default).
    GroupRemoteAssignor(Option<String>),
    /// `session.timeout.ms`.
    SessionTimeout(Duration),
    /// `heartbeat.interval.ms`.
    HeartbeatInterval(Duration),
    /// `max.poll.interval.ms`.
    MaxPollInterval(Duration),
    /// `client.rack`; `None` when set empty.
    ClientRack(Option<String>),
    /// `retry.backoff.ms`.
    RetryBackoff(Duration),
    /// `retry.backoff.max.ms`.
    RetryBackoffMax(Duration),
    /// `partition.assignment.strategy`: distinct assignors, at least one, in order of
    /// preference.
    PartitionAssignmentStrategy(Vec<BuiltinAssignor>),
}

/// The member's properties, in the order of the README's table. To add one, see DESIGN.md
/// ("How to add a property").
pub static PROPERTIES: &[Property<GroupSetting>] = &[
    Property {
        name: "group.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[GROUP],
        doc: "The consumer group to join and commit for; without it the consumer reads only \
              the partitions it is assigned and commits nothing.",
        kind: Kind::Text {
            allowed: "any text, spaces kept",
            setting: GroupSetting::GroupId,
        },
    },
    Property {
        name: "group.instance.id",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[GROUP],
        doc: "Makes the member static (KIP-345): restarted within session.timeout.ms it gets \
              its partitions back without a rebalance.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a name, unique in the group; empty unsets it",
            setting: GroupSetting::GroupInstanceId,
        },
    },
    Property {
        name: "group.protocol",
        aliases: &[],
        default: DefaultValue::Value("classic"),
        parts: &[GROUP],
        doc: "The group protocol: classic (JoinGroup, SyncGroup, Heartbeat; a member assigns) \
              or consumer (KIP-848's ConsumerGroupHeartbeat; the coordinator assigns).",
        kind: Kind::Other {
            allowed: "classic or consumer",
            parse: |i| {
                GroupProtocol::from_name(i.trimmed())
                    .map(GroupSetting::GroupProtocol)
                    .ok_or_else(|| i.refused())
            },
        },
    },
    Property {
        name: "group.remote.assignor",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[GROUP],
        doc: "With group.protocol=consumer: the coordinator's assignor to use (uniform or range \
              on Apache Kafka); unset, the coordinator's default.",
        kind: Kind::Optional {
            trim: true,
            allowed: "an assignor the coordinator offers; empty unsets it",
            setting: GroupSetting::GroupRemoteAssignor,
        },
    },
    Property {
        name: "session.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("45000"),
        parts: &[GROUP],
        doc: "How long the coordinator waits for a heartbeat before it takes the member out of \
              the group; classic protocol only (the coordinator sets it under consumer).",
        kind: Kind::Millis {
            min: 1,
            setting: GroupSetting::SessionTimeout,
        },
    },
    Property {
        name: "heartbeat.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("3000"),
        parts: &[GROUP],
        doc: "The time between heartbeats, below session.timeout.ms; classic protocol only \
              (the coordinator sets it under consumer).",
        kind: Kind::Millis {
            min: 1,
            setting: GroupSetting::HeartbeatInterval,
        },
    },
    Property {
        name: "max.poll.interval.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: &[GROUP],
        doc: "The longest the application may go without asking for records before the member \
              leaves the group; also the rebalance timeout.",
        kind: Kind::Millis {
            min: 1,
            setting: GroupSetting::MaxPollInterval,
        },
    },
    Property {
        name: "partition.assignment.strategy",
        aliases: &[],
        default: DefaultValue::Value("range,cooperative-sticky"),
        parts: &[GROUP],
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
        parts: &[GROUP],
        doc: "The consumer's rack: for rack-aware assignment (KIP-881) and for reading from a \
              replica in the same rack (KIP-392).",
        kind: Kind::Optional {
            trim: true,
            allowed: "a rack name; empty unsets it",
            setting: GroupSetting::ClientRack,
        },
    },
    Property {
        name: "retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[GROUP],
        doc: "The first pause before a failed request is tried again; it doubles, with jitter, \
              at each failure (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: GroupSetting::RetryBackoff,
        },
    },
    Property {
        name: "retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[GROUP],
        doc: "The most the retry pause grows to (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: GroupSetting::RetryBackoffMax,
        },
    },
];

/// `partition.assignment.strategy`: at least one assignor, none twice.
fn assignors(i: &Input<'_>) -> Result<GroupSetting, ConfigError> {
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
    Ok(GroupSetting::PartitionAssignmentStrategy(list))
}

#[cfg(test)]
mod tests {
    use kcon_core::property::registry::{erased, faults, lookup};

    use super::*;

    #[test]
    fn the_table_is_sound() {
        assert_eq!(faults(erased(PROPERTIES)), [] as [String; 0]);
    }

    #[test]
    fn values_are_read_by_kind() {
        let read = |name: &str, value: &str| lookup(PROPERTIES, name).unwrap().parse(value);
        assert_eq!(read("client.rack", " "), Ok(GroupSetting::ClientRack(None)));
    }
}
