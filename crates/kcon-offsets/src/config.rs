//! The offset configuration: its typed fields, the Java client's defaults and the checks
//! across them. Names and parsing are the offsets' property table's ([`crate::property`]).

use std::time::Duration;

use kcon_core::property::{self, Configurable, Part};

use crate::property::{OFFSETS, OffsetsSetting, PROPERTIES};
use kcon_core::{ConfigError, ExponentialBackoff, IsolationLevel};

/// The configuration of a consumer's offsets ([`CommitMachine`](crate::CommitMachine) and the
/// reset policy).
///
/// Fields can be set directly or by Kafka property name with [`OffsetsConfig::set`]. Defaults
/// are the Java consumer's, as the property table lists them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OffsetsConfig {
    /// `group.id`: the group whose offsets are committed and fetched. Required by
    /// [`validate`](OffsetsConfig::validate).
    pub group_id: String,
    /// `group.instance.id`: sent with commits (OffsetCommit v7+, KIP-345) so that the
    /// coordinator can fence a stale static member.
    pub group_instance_id: Option<String>,
    /// `enable.auto.commit`: commit stored offsets every `auto.commit.interval.ms`. Default
    /// true.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`. Default 5 s.
    pub auto_commit_interval: Duration,
    /// `enable.auto.offset.store`: whether the consumer stores a record's offset when the
    /// application polls again after receiving it (at-least-once, the Java client's
    /// behaviour); when false only what the application stores with
    /// [`CommitMachine::store_offset`](crate::CommitMachine::store_offset) is committed
    /// (librdkafka's two-stage pattern). The consumer applies it; the machine only stores what
    /// it is told. Default true.
    pub enable_auto_offset_store: bool,
    /// `isolation.level`. Default read_uncommitted.
    pub isolation_level: IsolationLevel,
    /// `retry.backoff.ms`: the first wait before a retry (KIP-580). Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest such wait. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `default.api.timeout.ms`: how long a commit or offset fetch may keep retrying before it
    /// fails with a timeout. Default 60 s.
    pub default_api_timeout: Duration,
}

impl OffsetsConfig {
    /// A configuration for `group_id`, everything else at its default.
    pub fn new(group_id: impl Into<String>) -> Self {
        OffsetsConfig {
            group_id: group_id.into(),
            ..OffsetsConfig::default()
        }
    }

    /// Sets a property by its Kafka name from its string form, as the offsets' property table
    /// ([`crate::property`]) reads it. Durations are whole milliseconds, booleans
    /// `true`/`false`. A property the offsets do not take is unknown here. A bad value is
    /// refused with an error naming the property and what it accepts, and leaves the
    /// configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        property::set(PROPERTIES, self, name, value)
    }

    /// Checks what `set` cannot check one property at a time, and the fields set directly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group_id.is_empty() {
            return Err(ConfigError::invalid("group.id", "", "a non-empty group id"));
        }
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            // A zero interval would commit in a busy loop; the Java client requires >= 0 but
            // treats 0 as "every poll", which a timer-driven machine cannot mean.
            return Err(ConfigError::invalid(
                "auto.commit.interval.ms",
                "0",
                "a whole number of milliseconds from 1 to 2147483647 when enable.auto.commit=true",
            ));
        }
        Ok(())
    }

    /// The retry backoff (KIP-580) from `retry.backoff.ms` and `retry.backoff.max.ms`.
    pub fn retry_backoff_policy(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.retry_backoff, self.retry_backoff_max)
    }
}

impl Default for OffsetsConfig {
    fn default() -> Self {
        OffsetsConfig {
            group_id: String::new(),
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5_000),
            enable_auto_offset_store: true,
            isolation_level: IsolationLevel::ReadUncommitted,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            default_api_timeout: Duration::from_millis(60_000),
        }
    }
}

impl Configurable<OffsetsSetting> for OffsetsConfig {
    const PART: Part = OFFSETS;

    fn apply(&mut self, setting: &OffsetsSetting) -> bool {
        match setting {
            OffsetsSetting::GroupId(id) => self.group_id = id.clone(),
            OffsetsSetting::GroupInstanceId(id) => self.group_instance_id = id.clone(),
            OffsetsSetting::EnableAutoCommit(on) => self.enable_auto_commit = *on,
            OffsetsSetting::AutoCommitInterval(d) => self.auto_commit_interval = *d,
            OffsetsSetting::EnableAutoOffsetStore(on) => self.enable_auto_offset_store = *on,
            OffsetsSetting::IsolationLevel(level) => self.isolation_level = *level,
            OffsetsSetting::RetryBackoff(d) => self.retry_backoff = *d,
            OffsetsSetting::RetryBackoffMax(d) => self.retry_backoff_max = *d,
            OffsetsSetting::DefaultApiTimeout(d) => self.default_api_timeout = *d,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_java_clients() {
        let c = OffsetsConfig::new("g");
        assert!(c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(c.isolation_level, IsolationLevel::ReadUncommitted);
        assert_eq!(c.default_api_timeout, Duration::from_secs(60));
        c.validate().unwrap();
        assert_eq!(
            kcon_core::property::registry::defaults_disagreeing::<_, OffsetsConfig>(PROPERTIES),
            [] as [&str; 0],
            "the table's defaults are the offsets'"
        );
    }

    #[test]
    fn properties_set_and_bad_values_name_the_property() {
        let mut c = OffsetsConfig::new("g");
        c.set("enable.auto.commit", "FALSE").unwrap();
        c.set("auto.commit.interval.ms", "250").unwrap();
        c.set("isolation.level", "read_committed").unwrap();
        c.set("group.instance.id", "i").unwrap();
        assert!(!c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_millis(250));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        for (name, value) in [
            ("enable.auto.commit", "yes"),
            ("auto.commit.interval.ms", "-1"),
            ("isolation.level", "committed"),
            ("default.api.timeout.ms", "0"),
        ] {
            let e = c.set(name, value).unwrap_err();
            assert_eq!(e.property(), name, "{e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        assert!(matches!(
            c.set("auto.commit.interval", "1"),
            Err(ConfigError::UnknownProperty { .. })
        ));
        assert_eq!(
            OffsetsConfig::new("").validate().unwrap_err().property(),
            "group.id"
        );
    }
}
