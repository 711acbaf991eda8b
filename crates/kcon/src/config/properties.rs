//! kcon's own properties: the `Consumer`'s (`close.timeout.ms`), the record policies'
//! (`errors.*`), which a `Processor` over the consumer follows, and the share consumer's
//! (`share.acknowledgement.mode`, `share.acquire.mode`).

use std::time::Duration;

use kcon_core::ConfigError;
use kcon_core::property::registry::{DefaultValue, Input, Kind, Part, Property, Refusal};
use kcon_core::property::{parse_count, parse_millis};

use super::policy::{ErrorTolerance, ProcessingOrder};
use kcon_fetch::share::AcquireMode;

/// The `Consumer` itself.
pub const CONSUMER: Part = Part::new("consumer");

/// The record policies for records that fail (kcon's `Processor`), configured by
/// [`PolicyConfig`](super::PolicyConfig).
pub const POLICY: Part = Part::new("policy");

/// The share consumer ([`ShareConsumer`](crate::share::ShareConsumer)).
pub const SHARE: Part = Part::new("share consumer");

/// The record policies of a [`Processor`](crate::Processor) over a share consumer, which refuse
/// the `errors.*` properties of a consumer's partitions (backoff, breaker).
pub const SHARE_POLICY: Part = Part::new("policy over a share consumer");

/// Properties a share consumer (by [`SHARE`]) or a Processor over one (by [`SHARE_POLICY`])
/// refuses although a consumer, or a Processor over one, takes them, with why: the share group
/// decides them, or they are a consumer group's (the Java `KafkaShareConsumer` refuses the
/// same). The builders ask [`refusal`](kcon_core::property::registry::refusal) before they set
/// a property.
pub const REFUSALS: &[Refusal] = &[
    Refusal {
        name: "auto.offset.reset",
        by: SHARE,
        why: "unset for a share consumer: the share group's share.auto.offset.reset decides where it starts \
         (a group config: kcon group config GROUP --set share.auto.offset.reset=earliest)",
    },
    Refusal {
        name: "isolation.level",
        by: SHARE,
        why: "unset for a share consumer: the share group's share.isolation.level decides",
    },
    Refusal {
        name: "group.instance.id",
        by: SHARE,
        why: "unset for a share consumer: share groups have no static membership",
    },
    Refusal {
        name: "group.protocol",
        by: SHARE,
        why: "unset for a share consumer: it speaks the share group protocol",
    },
    Refusal {
        name: "group.remote.assignor",
        by: SHARE,
        why: "unset for a share consumer: the coordinator assigns share groups itself",
    },
    Refusal {
        name: "partition.assignment.strategy",
        by: SHARE,
        why: "unset for a share consumer: the coordinator assigns",
    },
    Refusal {
        name: "session.timeout.ms",
        by: SHARE,
        why: "unset for a share consumer: the share group's session timeout decides",
    },
    Refusal {
        name: "heartbeat.interval.ms",
        by: SHARE,
        why: "unset for a share consumer: the coordinator gives the interval",
    },
    Refusal {
        name: "errors.retry.backoff.ms",
        by: SHARE_POLICY,
        why: "unset for a share consumer: a retry is the group handing the record out again",
    },
    Refusal {
        name: "errors.retry.delay.max.ms",
        by: SHARE_POLICY,
        why: "unset for a share consumer: a retry is the group handing the record out again",
    },
    Refusal {
        name: "errors.retry.timeout",
        by: SHARE_POLICY,
        why: "unset for a share consumer: errors.retry.max.attempts counts its deliveries",
    },
    Refusal {
        name: "errors.breaker.window.records",
        by: SHARE_POLICY,
        why: "unset for a share consumer: a Processor over one keeps no circuit breaker",
    },
    Refusal {
        name: "errors.breaker.failures",
        by: SHARE_POLICY,
        why: "unset for a share consumer: a Processor over one keeps no circuit breaker",
    },
    Refusal {
        name: "errors.breaker.consecutive.failures",
        by: SHARE_POLICY,
        why: "unset for a share consumer: a Processor over one keeps no circuit breaker",
    },
];

/// How a share consumer's records are acknowledged (`share.acknowledgement.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcknowledgementMode {
    /// `implicit`: every record of a batch is accepted when the next batch is asked for, or
    /// on commit or close, unless acknowledged otherwise before.
    #[default]
    Implicit,
    /// `explicit`: the application acknowledges every record; the next batch is refused while
    /// one of the last is not.
    Explicit,
}

impl AcknowledgementMode {
    /// What `share.acknowledgement.mode` takes.
    pub const EXPECTED: &'static str = "implicit or explicit";

    /// The mode named `name`, in any case.
    pub fn parse(name: &str) -> Option<AcknowledgementMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "implicit" => Some(AcknowledgementMode::Implicit),
            "explicit" => Some(AcknowledgementMode::Explicit),
            _ => None,
        }
    }
}

const MAX_COUNT: usize = i32::MAX as usize;
const FROM_1: &str = "a whole number from 1 to 2147483647";

/// One of kcon's own properties, read by its entry in [`PROPERTIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerSetting {
    /// `close.timeout.ms`.
    CloseTimeout(Duration),
    /// `errors.retry.max.attempts`.
    ErrorsRetryMaxAttempts(usize),
    /// `errors.retry.backoff.ms`.
    ErrorsRetryBackoff(Duration),
    /// `errors.retry.delay.max.ms`.
    ErrorsRetryDelayMax(Duration),
    /// `errors.deadletterqueue.topic.name`; `None` when set empty.
    ErrorsDeadLetterQueueTopicName(Option<String>),
    /// `errors.breaker.window.records`.
    ErrorsBreakerWindowRecords(usize),
    /// `errors.tolerance`.
    ErrorsTolerance(ErrorTolerance),
    /// `errors.retry.timeout`; `None` for no limit (-1).
    ErrorsRetryTimeout(Option<Duration>),
    /// `errors.breaker.failures`; `None` when set empty (no such rule).
    ErrorsBreakerFailures(Option<usize>),
    /// `errors.breaker.consecutive.failures`; `None` when set empty (no such rule).
    ErrorsBreakerConsecutiveFailures(Option<usize>),
    /// `share.acknowledgement.mode`.
    ShareAcknowledgementMode(AcknowledgementMode),
    /// `share.acquire.mode`.
    ShareAcquireMode(AcquireMode),
    /// `processing.ordering`.
    ProcessingOrdering(ProcessingOrder),
    /// `processing.max.concurrency`.
    ProcessingMaxConcurrency(usize),
    /// `processing.max.buffered.records`.
    ProcessingMaxBufferedRecords(usize),
    /// `processing.max.buffered.records.per.key`.
    ProcessingMaxBufferedRecordsPerKey(usize),
    /// `processing.revocation.timeout.ms`.
    ProcessingRevocationTimeout(Duration),
}

/// kcon's own properties, in the order of the README's table. To add one, see DESIGN.md ("How
/// to add a property").
pub static PROPERTIES: &[Property<ConsumerSetting>] = &[
    Property {
        name: "close.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: &[CONSUMER, SHARE],
        doc: "kcon's own: the longest closing the consumer may take, final commit and leaving \
              the group included.",
        kind: Kind::Millis {
            min: 0,
            setting: ConsumerSetting::CloseTimeout,
        },
    },
    Property {
        name: "share.acknowledgement.mode",
        aliases: &[],
        default: DefaultValue::Value("implicit"),
        parts: &[SHARE],
        doc: "How a share consumer's records are acknowledged: implicit accepts every record of \
              a batch when the next is asked for (or on commit or close) unless acknowledged \
              otherwise; explicit leaves every record to the application and refuses the next \
              batch while one is not acknowledged.",
        kind: Kind::Other {
            allowed: AcknowledgementMode::EXPECTED,
            parse: acknowledgement_mode,
        },
    },
    Property {
        name: "share.acquire.mode",
        aliases: &[],
        default: DefaultValue::Value("batch_optimized"),
        parts: &[SHARE],
        doc: "How the brokers acquire records for a share consumer's fetches: \
              batch_optimized takes whole batches (a fetch may acquire more than \
              max.poll.records); record_limit at most max.poll.records (KIP-1206, ShareFetch v2: \
              Apache Kafka 4.2; a broker that speaks v1 acquires whole batches, and a WARN line \
              says so once).",
        kind: Kind::Other {
            allowed: AcquireMode::EXPECTED,
            parse: acquire_mode,
        },
    },
    Property {
        name: "errors.tolerance",
        aliases: &[],
        default: DefaultValue::Value("none"),
        parts: &[POLICY],
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
        parts: &[POLICY],
        doc: "kcon's own: how many times a Processor tries a record whose failure is \
              retriable, the first try included, before the record has failed for good.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: ConsumerSetting::ErrorsRetryMaxAttempts,
        },
    },
    Property {
        name: "errors.retry.timeout",
        aliases: &[],
        default: DefaultValue::Value("-1"),
        parts: &[POLICY],
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
        parts: &[POLICY],
        doc: "kcon's own: the first pause before a Processor retries a record; it doubles at \
              each failure, with jitter, up to errors.retry.delay.max.ms. Only the record's \
              partition waits.",
        kind: Kind::Millis {
            min: 0,
            setting: ConsumerSetting::ErrorsRetryBackoff,
        },
    },
    Property {
        name: "errors.retry.delay.max.ms",
        aliases: &[],
        default: DefaultValue::Value("60000"),
        parts: &[POLICY],
        doc: "Kafka Connect's name: the most a Processor's pause between two tries of a record \
              grows to.",
        kind: Kind::Millis {
            min: 0,
            setting: ConsumerSetting::ErrorsRetryDelayMax,
        },
    },
    Property {
        name: "errors.deadletterqueue.topic.name",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POLICY],
        doc: "Kafka Connect's name: with errors.tolerance=all, the topic a Processor writes each \
              record that failed for good to (key, value and headers unchanged, plus kcon.dlq.* \
              headers saying where it came from and why), acknowledged before the offset past \
              it is stored; unset, such records are skipped.",
        kind: Kind::Optional {
            trim: true,
            allowed: "a topic name; empty unsets it",
            setting: ConsumerSetting::ErrorsDeadLetterQueueTopicName,
        },
    },
    Property {
        name: "errors.breaker.window.records",
        aliases: &[],
        default: DefaultValue::Value("100"),
        parts: &[POLICY],
        doc: "kcon's own: how many of a Processor's last records errors.breaker.failures counts \
              failures among.",
        kind: Kind::Count {
            min: 1,
            max: 100_000,
            allowed: "a whole number from 1 to 100000",
            setting: ConsumerSetting::ErrorsBreakerWindowRecords,
        },
    },
    Property {
        name: "errors.breaker.failures",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: &[POLICY],
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
        parts: &[POLICY],
        doc: "kcon's own: a Processor's circuit breaker opens when this many records in a row \
              failed for good; unset, never by this rule.",
        kind: Kind::Other {
            allowed: "a whole number from 1 to 2147483647; empty unsets it",
            parse: breaker_consecutive,
        },
    },
    Property {
        name: "processing.ordering",
        aliases: &[],
        default: DefaultValue::Value("partition"),
        parts: &[POLICY],
        doc: "kcon's own: what a Processor keeps in order when records run concurrently: \
              partition (a partition's records one after another, partitions side by side), \
              key (a key's records within its partition one after another, keys side by side; \
              a record without a key ordered with nothing) or unordered. A retry holds back \
              its unit only. The committed offset never passes a record not yet done with.",
        kind: Kind::Other {
            allowed: ProcessingOrder::EXPECTED,
            parse: processing_ordering,
        },
    },
    Property {
        name: "processing.max.concurrency",
        aliases: &[],
        default: DefaultValue::Value("1"),
        parts: &[POLICY],
        doc: "kcon's own: how many records a Processor has in its handler at once, across \
              partitions (run_concurrently; run takes 1 only). 1 handles one record at a time.",
        kind: Kind::Count {
            min: 1,
            max: MAX_CONCURRENCY,
            allowed: "a whole number from 1 to 10000",
            setting: ConsumerSetting::ProcessingMaxConcurrency,
        },
    },
    Property {
        name: "processing.max.buffered.records",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: &[POLICY],
        doc: "kcon's own: how many records a Processor keeps fetched and not started (waiting \
              their turn behind a record of their partition or key, or a free place in the \
              handler) before it takes no more from the consumer; a partition paused for a \
              retry does not count.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: ConsumerSetting::ProcessingMaxBufferedRecords,
        },
    },
    Property {
        name: "processing.max.buffered.records.per.key",
        aliases: &[],
        default: DefaultValue::Value("250"),
        parts: &[POLICY],
        doc: "kcon's own: under processing.ordering=key, how many records of one key a \
              Processor keeps fetched and not started before it pauses the key's partition \
              (resumed once none of the partition's records waits), so that one hot key \
              cannot take the whole processing.max.buffered.records.",
        kind: Kind::Count {
            min: 1,
            max: MAX_COUNT,
            allowed: FROM_1,
            setting: ConsumerSetting::ProcessingMaxBufferedRecordsPerKey,
        },
    },
    Property {
        name: "processing.revocation.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: &[POLICY],
        doc: "kcon's own: how long a revocation waits for the records of the partitions \
              revoked that are in a Processor's handler (run_concurrently) before the \
              listener's on_revoked and the commit; those not started are dropped for the next \
              owner at once. Past it the partitions go as far as they were done with.",
        kind: Kind::Millis {
            min: 0,
            setting: ConsumerSetting::ProcessingRevocationTimeout,
        },
    },
];

/// The most records a Processor has in its handler at once.
const MAX_CONCURRENCY: usize = 10_000;

fn processing_ordering(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    ProcessingOrder::parse(i.value)
        .map(ConsumerSetting::ProcessingOrdering)
        .ok_or_else(|| i.refused())
}

/// `errors.tolerance`.
fn acknowledgement_mode(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    AcknowledgementMode::parse(i.value)
        .map(ConsumerSetting::ShareAcknowledgementMode)
        .ok_or_else(|| i.refused())
}

fn acquire_mode(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    AcquireMode::parse(i.value)
        .map(ConsumerSetting::ShareAcquireMode)
        .ok_or_else(|| i.refused())
}

fn tolerance(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    ErrorTolerance::parse(i.value)
        .map(ConsumerSetting::ErrorsTolerance)
        .ok_or_else(|| i.refused())
}

/// `errors.retry.timeout`: milliseconds, or -1 for no limit (Kafka Connect's reading).
fn retry_timeout(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    if i.trimmed() == "-1" {
        return Ok(ConsumerSetting::ErrorsRetryTimeout(None));
    }
    parse_millis(i.property, i.trimmed(), 0)
        .map(|d| ConsumerSetting::ErrorsRetryTimeout(Some(d)))
        .map_err(|_| i.refused())
}

/// `errors.breaker.failures`: a count, or empty for none.
fn breaker_failures(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    optional_count(i, 0, 99_999).map(ConsumerSetting::ErrorsBreakerFailures)
}

/// `errors.breaker.consecutive.failures`: a count, or empty for none.
fn breaker_consecutive(i: &Input<'_>) -> Result<ConsumerSetting, ConfigError> {
    optional_count(i, 1, MAX_COUNT).map(ConsumerSetting::ErrorsBreakerConsecutiveFailures)
}

/// A whole number from `min` to `max`, or nothing for an empty value.
fn optional_count(i: &Input<'_>, min: usize, max: usize) -> Result<Option<usize>, ConfigError> {
    if i.trimmed().is_empty() {
        return Ok(None);
    }
    parse_count(i.property, i.trimmed(), min, max, i.allowed).map(Some)
}

#[cfg(test)]
mod tests {
    use kcon_core::property::registry::{erased, faults, parts_of};

    use super::*;
    use crate::config::ConsumerBuilder;

    #[test]
    fn the_table_is_sound() {
        assert_eq!(faults(erased(PROPERTIES)), [] as [String; 0]);
    }

    #[test]
    fn the_consumers_tables_together_are_sound() {
        assert_eq!(faults(ConsumerBuilder::properties()), [] as [String; 0]);
    }

    #[test]
    fn retry_backoff_reaches_every_part_that_retries() {
        for name in ["retry.backoff.ms", "retry.backoff.max.ms"] {
            let parts = parts_of(ConsumerBuilder::properties(), name);
            assert_eq!(
                parts,
                [
                    kcon_pool::property::POOL,
                    kcon_group::property::GROUP,
                    kcon_offsets::property::OFFSETS,
                    kcon_fetch::property::FETCH
                ]
            );
        }
    }
}
