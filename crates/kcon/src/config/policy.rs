//! The record policies' configuration: the `errors.*` properties, read by kcon's property
//! table (`config/properties.rs`) like every other; and `ErrorTolerance`, the value of
//! `errors.tolerance`.

use std::fmt;
use std::time::Duration;

use kcon_core::property::{Configurable, Part, registry};
use kcon_core::{ConfigError, ExponentialBackoff};

use super::properties::{ConsumerSetting, POLICY, PROPERTIES};

/// What a [`Processor`](crate::Processor) does with records that fail. Set through the
/// processor's builder (`ProcessorBuilder::set("errors.tolerance", "all")`, ...); each field
/// names its property.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// `errors.tolerance`: stop at a record that failed for good (`none`, the default), or
    /// skip or dead-letter it and go on (`all`).
    pub tolerance: ErrorTolerance,
    /// `errors.retry.max.attempts`: tries of a record that fails retriably, the first
    /// included. Default 10.
    pub retry_max_attempts: u32,
    /// `errors.retry.timeout`: how long after its first failure a record may still be
    /// retried; `None` (-1, the default) for no limit but the attempts.
    pub retry_timeout: Option<Duration>,
    /// `errors.retry.backoff.ms`: the first pause before a retry. Default 100 ms.
    pub retry_backoff: Duration,
    /// `errors.retry.delay.max.ms`: the longest pause before a retry. Default 60 s.
    pub retry_delay_max: Duration,
    /// `errors.deadletterqueue.topic.name`: where records that failed for good go, with
    /// `errors.tolerance=all`; `None` skips them.
    pub dead_letter_topic: Option<String>,
    /// `errors.breaker.window.records`: the records the failure count looks back over.
    /// Default 100.
    pub breaker_window: usize,
    /// `errors.breaker.failures`: the breaker opens when more than this many of the window's
    /// records failed for good. Default none.
    pub breaker_failures: Option<usize>,
    /// `errors.breaker.consecutive.failures`: the breaker opens when this many records in a
    /// row failed for good. Default none.
    pub breaker_consecutive: Option<usize>,
    /// `processing.ordering`: what keeps its order when records run concurrently. Default
    /// `partition`.
    pub ordering: ProcessingOrder,
    /// `processing.max.concurrency`: records in the handler at once. Default 1.
    pub max_concurrency: usize,
    /// `processing.max.buffered.records`: records fetched and not started before no more
    /// are taken. Default 1,000.
    pub max_buffered: usize,
    /// `processing.max.buffered.records.per.key`: under `key` ordering, records of one key
    /// fetched and not started before its partition is paused. Default 250.
    pub max_buffered_per_key: usize,
    /// `processing.revocation.timeout.ms`: how long a revocation waits for the records of
    /// the partitions revoked that are in the handler. Default 30 s.
    pub revocation_timeout: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            tolerance: ErrorTolerance::None,
            retry_max_attempts: 10,
            retry_timeout: None,
            retry_backoff: Duration::from_millis(100),
            retry_delay_max: Duration::from_secs(60),
            dead_letter_topic: None,
            breaker_window: 100,
            breaker_failures: None,
            breaker_consecutive: None,
            ordering: ProcessingOrder::Partition,
            max_concurrency: 1,
            max_buffered: 1000,
            max_buffered_per_key: 250,
            revocation_timeout: Duration::from_secs(30),
        }
    }
}

impl PolicyConfig {
    /// Sets a property by name, as kcon's property table reads it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        registry::set(PROPERTIES, self, name, value)
    }

    /// Checks what one property at a time cannot: a dead-letter topic needs
    /// `errors.tolerance=all` (with `none` nothing is ever written there), and a failure count
    /// the window could never exceed would never open the breaker.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(topic) = &self.dead_letter_topic
            && self.tolerance == ErrorTolerance::None
        {
            return Err(ConfigError::invalid(
                "errors.deadletterqueue.topic.name",
                topic,
                "unset unless errors.tolerance=all (with errors.tolerance=none a record that \
                 fails for good stops processing and is never dead-lettered)",
            ));
        }
        if let Some(failures) = self.breaker_failures
            && failures >= self.breaker_window
        {
            return Err(registry::refused(
                PROPERTIES,
                "errors.breaker.failures",
                &failures.to_string(),
            ));
        }
        Ok(())
    }

    /// The pause before each retry.
    pub(crate) fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.retry_backoff, self.retry_delay_max)
    }
}

impl Configurable<ConsumerSetting> for PolicyConfig {
    const PART: Part = POLICY;

    fn apply(&mut self, setting: &ConsumerSetting) -> bool {
        match setting {
            ConsumerSetting::ErrorsTolerance(t) => self.tolerance = *t,
            ConsumerSetting::ErrorsRetryMaxAttempts(n) => {
                self.retry_max_attempts = u32::try_from(*n).unwrap_or(u32::MAX);
            }
            ConsumerSetting::ErrorsRetryTimeout(t) => self.retry_timeout = *t,
            ConsumerSetting::ErrorsRetryBackoff(d) => self.retry_backoff = *d,
            ConsumerSetting::ErrorsRetryDelayMax(d) => self.retry_delay_max = *d,
            ConsumerSetting::ErrorsDeadLetterQueueTopicName(t) => {
                self.dead_letter_topic = t.clone()
            }
            ConsumerSetting::ErrorsBreakerWindowRecords(n) => self.breaker_window = *n,
            ConsumerSetting::ErrorsBreakerFailures(n) => self.breaker_failures = *n,
            ConsumerSetting::ErrorsBreakerConsecutiveFailures(n) => self.breaker_consecutive = *n,
            ConsumerSetting::ProcessingOrdering(o) => self.ordering = *o,
            ConsumerSetting::ProcessingMaxConcurrency(n) => self.max_concurrency = *n,
            ConsumerSetting::ProcessingMaxBufferedRecords(n) => self.max_buffered = *n,
            ConsumerSetting::ProcessingMaxBufferedRecordsPerKey(n) => {
                self.max_buffered_per_key = *n
            }
            ConsumerSetting::ProcessingRevocationTimeout(d) => self.revocation_timeout = *d,
            _ => return false,
        }
        true
    }
}

/// `errors.tolerance` (Kafka Connect's name, KIP-298): what a record that failed for good
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorTolerance {
    /// Processing stops with an error; nothing past the record is stored.
    #[default]
    None,
    /// The record is skipped, or written to the dead-letter topic when one is set, and
    /// processing goes on.
    All,
}

impl ErrorTolerance {
    /// What `errors.tolerance` allows, in words.
    pub const EXPECTED: &'static str = "none or all";

    /// Reads `none` or `all`, in any case.
    pub fn parse(value: &str) -> Option<ErrorTolerance> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Some(ErrorTolerance::None),
            "all" => Some(ErrorTolerance::All),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorTolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorTolerance::None => "none",
            ErrorTolerance::All => "all",
        })
    }
}

/// `processing.ordering`: what a [`Processor`](crate::Processor) keeps in order when records
/// run concurrently (`processing.max.concurrency` above 1, or a retry holding back one unit
/// while others go on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProcessingOrder {
    /// A partition's records one after another, partitions side by side.
    #[default]
    Partition,
    /// A key's records within its partition one after another, keys side by side; a record
    /// without a key is ordered with nothing (a null key is what producers send when order
    /// does not matter to them).
    Key,
    /// No order: any record may run beside any other.
    Unordered,
}

impl ProcessingOrder {
    /// What `processing.ordering` allows, in words.
    pub const EXPECTED: &'static str = "partition, key or unordered";

    /// Reads `partition`, `key` or `unordered`, in any case.
    pub fn parse(value: &str) -> Option<ProcessingOrder> {
        match value.trim().to_ascii_lowercase().as_str() {
            "partition" => Some(ProcessingOrder::Partition),
            "key" => Some(ProcessingOrder::Key),
            "unordered" => Some(ProcessingOrder::Unordered),
            _ => None,
        }
    }
}

impl fmt::Display for ProcessingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessingOrder::Partition => "partition",
            ProcessingOrder::Key => "key",
            ProcessingOrder::Unordered => "unordered",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(props: &[(&str, &str)]) -> Result<PolicyConfig, ConfigError> {
        let mut c = PolicyConfig::default();
        for (n, v) in props {
            c.set(n, v)?;
        }
        c.validate().map(|()| c)
    }

    #[test]
    fn the_registry_and_the_config_agree_on_defaults() {
        assert_eq!(
            registry::defaults_disagreeing::<_, PolicyConfig>(PROPERTIES),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn properties_are_read_into_fields() {
        let c = config(&[
            ("errors.tolerance", "ALL"),
            ("errors.retry.max.attempts", "3"),
            ("errors.retry.timeout", "2500"),
            ("errors.retry.backoff.ms", "10"),
            ("errors.retry.delay.max.ms", "40"),
            ("errors.deadletterqueue.topic.name", " orders.dlq "),
            ("errors.breaker.window.records", "20"),
            ("errors.breaker.failures", "5"),
            ("errors.breaker.consecutive.failures", "4"),
            ("processing.ordering", " Key"),
            ("processing.max.concurrency", "256"),
        ])
        .unwrap();
        assert_eq!((c.ordering, c.max_concurrency), (ProcessingOrder::Key, 256));
        assert_eq!(c.tolerance, ErrorTolerance::All);
        assert_eq!(c.retry_max_attempts, 3);
        assert_eq!(c.retry_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(
            c.backoff(),
            ExponentialBackoff::new(Duration::from_millis(10), Duration::from_millis(40))
        );
        assert_eq!(c.dead_letter_topic.as_deref(), Some("orders.dlq"));
        assert_eq!(
            (c.breaker_window, c.breaker_failures, c.breaker_consecutive),
            (20, Some(5), Some(4))
        );
        let c = config(&[
            ("errors.retry.timeout", "-1"),
            ("errors.breaker.failures", ""),
        ])
        .unwrap();
        assert_eq!((c.retry_timeout, c.breaker_failures), (None, None));
    }

    #[test]
    fn bad_values_and_conflicts_name_the_property() {
        for (name, value) in [
            ("errors.tolerance", "some"),
            ("errors.retry.max.attempts", "0"),
            ("errors.retry.timeout", "-2"),
            ("errors.breaker.consecutive.failures", "0"),
            ("errors.breaker.window.records", "100001"),
            ("processing.ordering", "offset"),
            ("processing.max.concurrency", "0"),
            ("processing.max.concurrency", "10001"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert!(
                matches!(&e, ConfigError::InvalidValue { property, .. } if property == name),
                "{name}={value}: {e}"
            );
        }
        let e = config(&[("errors.deadletterqueue.topic.name", "dlq")]).unwrap_err();
        assert!(e.to_string().contains("errors.tolerance=all"), "{e}");
        let e = config(&[
            ("errors.breaker.window.records", "10"),
            ("errors.breaker.failures", "10"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("errors.breaker.failures"), "{e}");
    }
}
