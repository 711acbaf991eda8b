//! The fetcher's properties. Those other parts take too (`isolation.level`, `client.rack`,
//! `retry.backoff.ms`, ...) are in their tables as well, with the same words: a builder that
//! concatenates the tables hands the value to each.

use std::time::Duration;

use kcon_core::offsets::{IsolationLevel, ResetPolicy};
use kcon_core::property::registry::{DefaultValue, Kind, Part, Property};

/// kcon-fetch's `FetchConfig`: the fetcher.
pub const FETCH: Part = Part::new("fetch");

const MAX_COUNT: usize = i32::MAX as usize;
const FROM_0: &str = "a whole number from 0 to 2147483647";
const FROM_1: &str = "a whole number from 1 to 2147483647";

/// One of the fetcher's properties, read by its entry in [`PROPERTIES`]: a
/// [`FetchConfig`](crate::FetchConfig) takes it into a field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchSetting {
    /// `auto.offset.reset`.
    AutoOffsetReset(ResetPolicy),
    /// `fetch.min.bytes`.
    FetchMinBytes(i32),
    /// `fetch.max.wait.ms`.
    FetchMaxWait(Duration),
    /// `fetch.max.bytes`.
    FetchMaxBytes(i32),
    /// `max.partition.fetch.bytes`.
    MaxPartitionFetchBytes(i32),
    /// `fetch.buffer.max.bytes`.
    FetchBufferMaxBytes(usize),
    /// `max.poll.records`.
    MaxPollRecords(i32),
    /// `metadata.max.age.ms`.
    MetadataMaxAge(Duration),
    /// `retry.backoff.ms`.
    RetryBackoff(Duration),
    /// `retry.backoff.max.ms`.
    RetryBackoffMax(Duration),
    /// `client.rack`; `None` when set empty.
    ClientRack(Option<String>),
    /// `isolation.level`.
    IsolationLevel(IsolationLevel),
}

/// The fetcher's properties, in the order of the README's table. To add one, see DESIGN.md
/// ("How to add a property").
pub static PROPERTIES: &[Property<FetchSetting>] = &[
    Property {
        name: "auto.offset.reset",
        aliases: &[],
        default: DefaultValue::Value("latest"),
        parts: &[FETCH],
        doc: "Where a partition starts when it has no committed offset or its position is out \
              of range; none makes that an error, and a log truncated under the position too \
              (otherwise the consumer reads on from where the logs part).",
        kind: Kind::Other {
            allowed: ResetPolicy::ALLOWED,
            parse: |i| ResetPolicy::parse(i.trimmed()).map(FetchSetting::AutoOffsetReset),
        },
    },
    Property {
        name: "fetch.min.bytes",
        aliases: &[],
        default: DefaultValue::Value("1"),
        parts: &[FETCH],
        doc: "The bytes a broker waits to have (or fetch.max.wait.ms to pass) before it answers \
              a Fetch.",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| FetchSetting::FetchMinBytes(n as i32),
        },
    },
    Property {
        name: "fetch.max.wait.ms",
        aliases: &[],
        default: DefaultValue::Value("500"),
        parts: &[FETCH],
        doc: "The longest a broker holds a Fetch waiting for fetch.min.bytes.",
        kind: Kind::Millis {
            min: 0,
            setting: FetchSetting::FetchMaxWait,
        },
    },
    Property {
        name: "fetch.max.bytes",
        aliases: &[],
        default: DefaultValue::Value("52428800"),
        parts: &[FETCH],
        doc: "The most a Fetch answer may carry, though a first batch larger than that still \
              comes whole (KIP-74).",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| FetchSetting::FetchMaxBytes(n as i32),
        },
    },
    Property {
        name: "max.partition.fetch.bytes",
        aliases: &[],
        default: DefaultValue::Value("1048576"),
        parts: &[FETCH],
        doc: "The most one partition's part of a Fetch answer may carry.",
        kind: Kind::Count {
            min: 0,
            max: MAX_COUNT,
            allowed: FROM_0,
            setting: |n| FetchSetting::MaxPartitionFetchBytes(n as i32),
        },
    },
    Property {
        name: "fetch.buffer.max.bytes",
        aliases: &[],
        default: DefaultValue::Derived("3 × fetch.max.bytes"),
        parts: &[FETCH],
        doc: "kcon's own: the prefetch budget, bytes fetched and not yet handed out plus bytes \
              reserved by Fetches in flight, all partitions together.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: FetchSetting::FetchBufferMaxBytes,
        },
    },
    Property {
        name: "max.poll.records",
        aliases: &[],
        default: DefaultValue::Value("500"),
        parts: &[FETCH],
        doc: "The most records one batch hands the application; a larger fetched batch is \
              handed out in parts.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: |n| FetchSetting::MaxPollRecords(n as i32),
        },
    },
    Property {
        name: "metadata.max.age.ms",
        aliases: &[],
        default: DefaultValue::Value("300000"),
        parts: &[FETCH],
        doc: "The longest the cluster's metadata goes unrefreshed; also how long the fetcher \
              keeps reading from a preferred replica.",
        kind: Kind::Millis {
            min: 0,
            setting: FetchSetting::MetadataMaxAge,
        },
    },
    Property {
        name: "retry.backoff.ms",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[FETCH],
        doc: "The first pause before a failed request is tried again; it doubles, with jitter, \
              at each failure (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: FetchSetting::RetryBackoff,
        },
    },
    Property {
        name: "retry.backoff.max.ms",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[FETCH],
        doc: "The most the retry pause grows to (KIP-580).",
        kind: Kind::Millis {
            min: 0,
            setting: FetchSetting::RetryBackoffMax,
        },
    },
    Property {
        name: "client.rack",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[FETCH],
        doc: "The consumer's rack: for rack-aware assignment (KIP-881) and for reading from a \
              replica in the same rack (KIP-392).",
        kind: Kind::Optional {
            trim: true,
            allowed: "a rack name; empty unsets it",
            setting: FetchSetting::ClientRack,
        },
    },
    Property {
        name: "isolation.level",
        aliases: &[],
        default: DefaultValue::Value("read_uncommitted"),
        parts: &[FETCH],
        doc: "read_committed leaves out records of aborted transactions and stops at the first \
              open one.",
        kind: Kind::Other {
            allowed: IsolationLevel::ALLOWED,
            parse: |i| IsolationLevel::parse(i.value).map(FetchSetting::IsolationLevel),
        },
    },
];

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
        assert_eq!(
            read("fetch.max.wait.ms", " 250 "),
            Ok(FetchSetting::FetchMaxWait(Duration::from_millis(250)))
        );
        assert!(read("fetch.min.bytes", "2147483648").is_err());
    }
}
