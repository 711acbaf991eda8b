//! The fetcher's configuration: its typed fields and the Java consumer's defaults (plus one
//! property of kcon's own, `fetch.buffer.max.bytes`). Names and parsing are the fetcher's
//! property table's ([`crate::property`]).

use std::time::Duration;

use kcon_core::property::{self, Configurable, Part};

use crate::property::{FETCH, FetchSetting, PROPERTIES};
use kcon_core::{ConfigError, ExponentialBackoff, ResetPolicy};

use crate::IsolationLevel;

/// How the fetcher fetches. [`set`](FetchConfig::set) takes Kafka property names; the fields
/// can also be set directly. Defaults are the Java consumer's, as the property table lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// `fetch.min.bytes`: the broker waits for this many bytes (or `fetch.max.wait.ms`).
    pub min_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a Fetch waiting for `fetch.min.bytes`.
    pub max_wait: Duration,
    /// `fetch.max.bytes`: the most one Fetch answer may carry (a first batch larger than it is
    /// still returned, KIP-74).
    pub max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most one partition of an answer may carry.
    pub partition_max_bytes: i32,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `client.rack` (KIP-392): sent with every Fetch so the leader can name a follower in the
    /// same rack. Default none.
    pub client_rack: Option<String>,
    /// `auto.offset.reset`.
    pub reset_policy: ResetPolicy,
    /// `retry.backoff.ms`: how long a partition (or a broker whose Fetch failed) waits before
    /// it is fetched again after its first error; the wait doubles with each error in a row.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest retry wait (KIP-580). Each wait is jittered by
    /// ±20 %, never above this.
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms`: also how long a preferred read replica is used (as the Java
    /// client does).
    pub metadata_max_age: Duration,
    /// `fetch.buffer.max.bytes`, kcon's own property: the prefetch budget, bytes fetched and
    /// not yet taken by the application plus bytes reserved by Fetches in flight, for all
    /// partitions together. Defaults to 3 × `fetch.max.bytes`.
    pub buffer_max_bytes: usize,
    /// `max.poll.records`: the most records one batch handed out by a
    /// [`Handout`](crate::handout::Handout) holds (1 to i32::MAX); a larger fetched batch is
    /// handed out in parts, in order.
    pub max_poll_records: i32,
    /// Whether `fetch.buffer.max.bytes` was set; if not it follows `fetch.max.bytes`.
    buffer_max_bytes_set: bool,
}

impl Default for FetchConfig {
    /// The Java consumer's defaults.
    fn default() -> Self {
        FetchConfig {
            min_bytes: 1,
            max_wait: Duration::from_millis(500),
            max_bytes: 52_428_800,
            partition_max_bytes: 1_048_576,
            isolation_level: IsolationLevel::ReadUncommitted,
            client_rack: None,
            reset_policy: ResetPolicy::Latest,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            metadata_max_age: Duration::from_secs(300),
            buffer_max_bytes: 3 * 52_428_800,
            max_poll_records: 500,
            buffer_max_bytes_set: false,
        }
    }
}

impl FetchConfig {
    /// KIP-580's backoff from `retry.backoff.ms` to `retry.backoff.max.ms`.
    pub fn retry_backoff_policy(&self) -> ExponentialBackoff {
        ExponentialBackoff::new(self.retry_backoff, self.retry_backoff_max)
    }

    /// Sets one property by its Kafka name, as the fetcher's property table reads it
    /// ([`crate::property`]). A property the fetcher does not take is unknown
    /// here. A bad value is refused with an error naming the property and what it accepts,
    /// and leaves the configuration unchanged.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        property::set(PROPERTIES, self, name, value)
    }

    /// The Fetch fields besides the partitions, for a request that may carry `max_bytes`.
    pub(crate) fn params(&self, max_bytes: usize) -> crate::session::wire::FetchParams {
        crate::session::wire::FetchParams {
            // Invariant: `parse_millis` caps durations at i32::MAX ms.
            max_wait_ms: i32::try_from(self.max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: self.min_bytes,
            max_bytes: i32::try_from(max_bytes).unwrap_or(i32::MAX),
            isolation_level: self.isolation_level,
            rack_id: self.client_rack.clone().unwrap_or_default(),
        }
    }
}

impl Configurable<FetchSetting> for FetchConfig {
    const PART: Part = FETCH;

    fn apply(&mut self, setting: &FetchSetting) -> bool {
        match setting {
            FetchSetting::FetchMinBytes(n) => self.min_bytes = *n,
            FetchSetting::FetchMaxWait(d) => self.max_wait = *d,
            FetchSetting::FetchMaxBytes(n) => {
                self.max_bytes = *n;
                if !self.buffer_max_bytes_set {
                    self.buffer_max_bytes = 3 * self.max_bytes as usize;
                }
            }
            FetchSetting::MaxPartitionFetchBytes(n) => self.partition_max_bytes = *n,
            FetchSetting::IsolationLevel(level) => self.isolation_level = *level,
            FetchSetting::ClientRack(rack) => self.client_rack = rack.clone(),
            FetchSetting::AutoOffsetReset(policy) => self.reset_policy = *policy,
            FetchSetting::RetryBackoff(d) => self.retry_backoff = *d,
            FetchSetting::RetryBackoffMax(d) => self.retry_backoff_max = *d,
            FetchSetting::MetadataMaxAge(d) => self.metadata_max_age = *d,
            FetchSetting::FetchBufferMaxBytes(n) => {
                self.buffer_max_bytes = *n;
                self.buffer_max_bytes_set = true;
            }
            FetchSetting::MaxPollRecords(n) => self.max_poll_records = *n,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_registrys() {
        assert_eq!(
            kcon_core::property::registry::defaults_disagreeing::<_, FetchConfig>(PROPERTIES),
            [] as [&str; 0]
        );
        let c = FetchConfig::default();
        assert_eq!(c.buffer_max_bytes, 3 * c.max_bytes as usize);
    }

    #[test]
    fn auto_offset_reset_is_set_and_bad_values_name_it() {
        let mut c = FetchConfig::default();
        assert_eq!(c.reset_policy, ResetPolicy::Latest);
        c.set("auto.offset.reset", "by_duration:PT1H").unwrap();
        assert_eq!(
            c.reset_policy,
            ResetPolicy::ByDuration(Duration::from_secs(3600))
        );
        for value in ["smallest", "by_duration:1h"] {
            let e = c.set("auto.offset.reset", value).unwrap_err();
            assert_eq!(e.property(), "auto.offset.reset", "{e}");
            assert!(e.to_string().contains("auto.offset.reset"), "{e}");
        }
        assert_eq!(
            c.reset_policy,
            ResetPolicy::ByDuration(Duration::from_secs(3600)),
            "a bad value leaves the setting as it was"
        );
    }

    #[test]
    fn the_buffer_follows_fetch_max_bytes_until_set() {
        let mut c = FetchConfig::default();
        c.set("fetch.max.bytes", "1000").unwrap();
        assert_eq!(c.buffer_max_bytes, 3000);
        c.set("fetch.buffer.max.bytes", "500").unwrap();
        c.set("fetch.max.bytes", "2000").unwrap();
        assert_eq!(c.buffer_max_bytes, 500);
    }

    #[test]
    fn client_rack_is_sent_empty_when_unset() {
        let mut c = FetchConfig::default();
        assert_eq!(c.params(1).rack_id, "");
        c.set("client.rack", " r1 ").unwrap();
        assert_eq!(c.client_rack.as_deref(), Some("r1"));
        assert_eq!(c.params(1).rack_id, "r1");
        c.set("client.rack", "").unwrap();
        assert_eq!(c.client_rack, None);
        assert!(matches!(
            c.set("session.timeout.ms", "1000"),
            Err(ConfigError::UnknownProperty { .. })
        ));
    }
}
