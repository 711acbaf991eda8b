//! Where a consumer reads next, as pure functions: `isolation.level`, the `auto.offset.reset`
//! policy (including KIP-1106's `by_duration`), the ListOffsets query it turns into,
//! watermarks and lag.

use std::fmt;
use std::time::Duration;

use crate::property::ConfigError;

/// `isolation.level`: which records a consumer reads, and so which offsets it may commit and
/// which end offset its lag counts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// `read_uncommitted` (the default): everything up to the high watermark.
    #[default]
    ReadUncommitted,
    /// `read_committed`: up to the last stable offset; committed offsets are fetched with
    /// `require_stable` (KIP-447).
    ReadCommitted,
}

impl IsolationLevel {
    /// The values `isolation.level` takes, in words.
    pub const ALLOWED: &'static str = "read_uncommitted or read_committed";

    /// `isolation.level` from its string form, `read_uncommitted` or `read_committed` in any
    /// case; the error names the property.
    pub fn parse(value: &str) -> Result<IsolationLevel, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            _ => Err(ConfigError::invalid(
                "isolation.level",
                value,
                IsolationLevel::ALLOWED,
            )),
        }
    }

    /// The wire value (ListOffsets, Fetch).
    pub fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// `auto.offset.reset`: where a partition without a valid position starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPolicy {
    /// `earliest`: the log start offset.
    Earliest,
    /// `latest` (the default): the end of the log (under read_committed, the last stable
    /// offset).
    Latest,
    /// `none`: no reset; the application gets an error naming the partitions.
    None,
    /// `by_duration:<ISO-8601 duration>` (KIP-1106): the first record whose timestamp is at
    /// most this long ago; the end of the log when there is none.
    ByDuration(Duration),
}

impl ResetPolicy {
    /// The values `auto.offset.reset` takes, in words.
    pub const ALLOWED: &'static str = "earliest, latest, none, or by_duration:<ISO-8601 \
         duration> (KIP-1106, e.g. by_duration:P1DT2H30M)";

    /// Parses an `auto.offset.reset` value; the error names the property.
    pub fn parse(value: &str) -> Result<ResetPolicy, ConfigError> {
        let v = value.trim();
        let lower = v.to_ascii_lowercase();
        match lower.as_str() {
            "earliest" => return Ok(ResetPolicy::Earliest),
            "latest" => return Ok(ResetPolicy::Latest),
            "none" => return Ok(ResetPolicy::None),
            _ => {}
        }
        let Some(duration) = lower.strip_prefix("by_duration:") else {
            return Err(ConfigError::invalid(
                "auto.offset.reset",
                value,
                ResetPolicy::ALLOWED,
            ));
        };
        parse_iso8601_duration(duration)
            .map(ResetPolicy::ByDuration)
            .ok_or_else(|| ConfigError::invalid("auto.offset.reset", value, ResetPolicy::ALLOWED))
    }

    /// The ListOffsets query that resets a partition under this policy, `now_ms` being the
    /// wall-clock time in milliseconds since the epoch; `None` for [`ResetPolicy::None`].
    pub fn offset_spec(self, now_ms: i64) -> Option<OffsetSpec> {
        match self {
            ResetPolicy::Earliest => Some(OffsetSpec::Earliest),
            ResetPolicy::Latest => Some(OffsetSpec::Latest),
            ResetPolicy::None => None,
            ResetPolicy::ByDuration(d) => {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                // A duration longer than the epoch is "from the beginning of time": timestamp 0
                // finds the first record, which is what the user asked for.
                Some(OffsetSpec::Timestamp(now_ms.saturating_sub(ms).max(0)))
            }
        }
    }
}

impl fmt::Display for ResetPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetPolicy::Earliest => f.write_str("earliest"),
            ResetPolicy::Latest => f.write_str("latest"),
            ResetPolicy::None => f.write_str("none"),
            ResetPolicy::ByDuration(d) => write!(f, "by_duration:PT{}S", d.as_secs_f64()),
        }
    }
}

/// Parses an ISO-8601 duration the way Java's `java.time.Duration.parse` does, which is what
/// KIP-1106 specifies: `PnDTnHnMn.nS`, case-insensitive, each part optional but at least one
/// present, seconds with up to nine fraction digits. Signs are refused: a reset into the future
/// means nothing. Years, months and weeks are refused, as Java refuses them.
pub fn parse_iso8601_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_uppercase();
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return None;
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut any = false;
    if !date.is_empty() {
        let days = date.strip_suffix('D')?;
        total = total.checked_add(Duration::from_secs(whole(days)?.checked_mul(86_400)?))?;
        any = true;
    }
    if let Some(mut t) = time {
        for (unit, secs) in [('H', 3_600u64), ('M', 60)] {
            if let Some(i) = t.find(unit) {
                let n = whole(&t[..i])?;
                total = total.checked_add(Duration::from_secs(n.checked_mul(secs)?))?;
                t = &t[i + 1..];
                any = true;
            }
        }
        if !t.is_empty() {
            let secs = t.strip_suffix('S')?;
            let (int, frac) = match secs.split_once('.') {
                Some((i, f)) => (i, f),
                None => (secs, ""),
            };
            let mut d = Duration::from_secs(whole(int)?);
            if !frac.is_empty() || secs.contains('.') {
                if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
                d += Duration::from_nanos(u64::from(nanos));
            }
            total = total.checked_add(d)?;
            any = true;
        }
    }
    any.then_some(total)
}

/// A non-empty run of ASCII digits (no sign: see `parse_iso8601_duration`).
fn whole(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a ListOffsets query asks for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset (timestamp -2).
    Earliest,
    /// The end of the log (timestamp -1): the high watermark, or the last stable offset under
    /// read_committed.
    Latest,
    /// The offset of the record with the largest timestamp (timestamp -3, ListOffsets v7+,
    /// KIP-734).
    MaxTimestamp,
    /// The first offset whose record timestamp is at or after this one (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    /// The timestamp ListOffsets carries for this query.
    pub fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// Where a partition's log starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// The log start offset.
    pub log_start: i64,
    /// The high watermark: the offset after the last replicated record.
    pub high_watermark: i64,
    /// The last stable offset (read_committed's end), when known.
    pub last_stable: Option<i64>,
}

impl Watermarks {
    /// The offset a consumer at `isolation` can read up to: the high watermark, or the last
    /// stable offset under read_committed (`None` when that is unknown).
    pub fn end(&self, isolation: IsolationLevel) -> Option<i64> {
        match isolation {
            IsolationLevel::ReadUncommitted => Some(self.high_watermark),
            IsolationLevel::ReadCommitted => self.last_stable,
        }
    }
}

/// The lag in records of a consumer at `position` (the next offset it reads, or a committed
/// offset): the end of the log for `isolation` minus the position, never negative. A position
/// below the log start counts from the log start, since the records before it are gone (the
/// Java client's `SubscriptionState.partitionLag` counts the same way from the position it
/// would read). `None` when the end is unknown.
pub fn record_lag(
    position: i64,
    watermarks: &Watermarks,
    isolation: IsolationLevel,
) -> Option<i64> {
    let end = watermarks.end(isolation)?;
    let from = position.max(watermarks.log_start);
    Some(end.saturating_sub(from).max(0))
}

/// The lag in time: how old the oldest unconsumed record is, from the timestamp (ms since the
/// epoch) of the record at the consumer's position when it is known. `Some(ZERO)` when the
/// consumer is caught up (`position >= end`); `None` when it is behind but the next record's
/// timestamp is not known yet. A timestamp in the future (clock skew) counts as no lag.
pub fn time_lag(
    now_ms: i64,
    position: i64,
    end: i64,
    next_record_timestamp: Option<i64>,
) -> Option<Duration> {
    if position >= end {
        return Some(Duration::ZERO);
    }
    let ts = next_record_timestamp?;
    let age = now_ms.saturating_sub(ts).max(0);
    Some(Duration::from_millis(age as u64))
}

/// The end of a partition's log from two answers of its leader: ListOffsets latest (`listed`)
/// and the high watermark (or, under read_committed, the last stable offset) of a Fetch answer
/// (`fetched`). The larger, when either is known.
///
/// Both are ends the leader reported at some moment, and a log end only grows, so the larger
/// is the more recent and neither overstates the end. Either alone can be behind: a ListOffsets
/// answer may predate records a later Fetch saw, and Tansu 0.6 answers ListOffsets latest with
/// the base offset of the last batch + 1 instead of the log end (after one 50-record batch it
/// says 1), which only the Fetch high watermark corrects. On Apache Kafka the two agree.
pub fn log_end(listed: Option<i64>, fetched: Option<i64>) -> Option<i64> {
    listed.max(fetched)
}

/// One partition's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Records between the position and the end of the log.
    pub records: Option<i64>,
    /// The age of the record at the position: zero when caught up, `None` when behind but
    /// that record's timestamp is unknown.
    pub time: Option<Duration>,
}

/// The lag of a reader at `position` (a committed offset, or a consumer's next offset) in a
/// log that starts at `log_start` (when known) and ends at `end` (the end for the reader's
/// isolation level, see [`log_end`]); `timestamp` is that of the first record at or after the
/// position (or after the log start, when the position is below it), `now_ms` the wall clock.
///
/// Records count from the log start when the position is below it: the records before it are
/// gone ([`record_lag`], as the Java client's `SubscriptionState` counts). The time is the age
/// of the oldest record not read yet, zero when caught up, never negative under clock skew
/// ([`time_lag`]).
pub fn lag(
    position: i64,
    log_start: Option<i64>,
    end: i64,
    timestamp: Option<i64>,
    now_ms: i64,
) -> Lag {
    let from = position.max(log_start.unwrap_or(position));
    let marks = Watermarks {
        log_start: from,
        high_watermark: end,
        last_stable: Some(end),
    };
    Lag {
        records: record_lag(position, &marks, IsolationLevel::ReadUncommitted),
        time: time_lag(now_ms, from, end, timestamp),
    }
}

/// The lag of a group at its `committed` offset: [`lag`], except past the end of the log,
/// where the records are negative (`end - committed`, as Kafka's `kafka-consumer-groups.sh`
/// shows them, rather than the 0 of a consumer's position) and the time is zero.
pub fn committed_lag(
    committed: i64,
    log_start: Option<i64>,
    end: i64,
    timestamp: Option<i64>,
    now_ms: i64,
) -> Lag {
    if committed > end {
        return Lag {
            records: Some(end - committed),
            time: Some(Duration::ZERO),
        };
    }
    lag(committed, log_start, end, timestamp, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations_as_java_parses_them() {
        let d = |s| parse_iso8601_duration(s);
        assert_eq!(d("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(d("P1D"), Some(Duration::from_secs(86_400)));
        assert_eq!(d("p1dt2h30m"), Some(Duration::from_secs(86_400 + 9_000)));
        assert_eq!(d("PT0.5S"), Some(Duration::from_millis(500)));
        assert_eq!(d("PT10M5.000000001S"), Some(Duration::new(605, 1)));
        assert_eq!(d("PT0S"), Some(Duration::ZERO));
        for bad in [
            "",
            "P",
            "PT",
            "1H",
            "PT1",
            "P1W",
            "P1Y",
            "P1M",
            "PT-1H",
            "PT+1H",
            "PT1.S",
            "PT1.0000000001S",
            "PT1H1H",
            "PTH",
            "P1DT",
            "PT1M1H",
            "P99999999999999999999D",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reset_policies_parse_and_turn_into_queries() {
        assert_eq!(
            ResetPolicy::parse("Earliest").unwrap(),
            ResetPolicy::Earliest
        );
        assert_eq!(ResetPolicy::parse("none").unwrap(), ResetPolicy::None);
        let p = ResetPolicy::parse("by_duration:PT1M").unwrap();
        assert_eq!(p.offset_spec(100_000), Some(OffsetSpec::Timestamp(40_000)));
        assert_eq!(
            ResetPolicy::parse("by_duration:P100000D")
                .unwrap()
                .offset_spec(5),
            Some(OffsetSpec::Timestamp(0))
        );
        let e = ResetPolicy::parse("by_duration:").unwrap_err();
        assert_eq!(e.property(), "auto.offset.reset");
        assert!(e.to_string().contains("ISO-8601"), "{e}");
        assert_eq!(OffsetSpec::MaxTimestamp.timestamp(), -3);
    }

    #[test]
    fn lag_counts_to_the_isolation_levels_end() {
        let w = Watermarks {
            log_start: 10,
            high_watermark: 100,
            last_stable: Some(90),
        };
        assert_eq!(
            record_lag(40, &w, IsolationLevel::ReadUncommitted),
            Some(60)
        );
        assert_eq!(record_lag(40, &w, IsolationLevel::ReadCommitted), Some(50));
        assert_eq!(record_lag(0, &w, IsolationLevel::ReadUncommitted), Some(90));
        assert_eq!(
            record_lag(120, &w, IsolationLevel::ReadUncommitted),
            Some(0)
        );
        let unknown = Watermarks {
            last_stable: None,
            ..w
        };
        assert_eq!(
            record_lag(40, &unknown, IsolationLevel::ReadCommitted),
            None
        );
        assert_eq!(time_lag(10_000, 5, 5, None), Some(Duration::ZERO));
        assert_eq!(time_lag(10_000, 4, 5, None), None);
        assert_eq!(
            time_lag(10_000, 4, 5, Some(7_500)),
            Some(Duration::from_millis(2_500))
        );
        assert_eq!(time_lag(10_000, 4, 5, Some(20_000)), Some(Duration::ZERO));
    }

    #[test]
    fn the_larger_end_wins_and_lag_never_goes_negative() {
        assert_eq!(log_end(Some(1), Some(50)), Some(50));
        assert_eq!(log_end(Some(50), Some(49)), Some(50));
        assert_eq!(log_end(None, Some(3)), Some(3));
        assert_eq!(log_end(None, None), None);
        let l = lag(120, Some(10), 100, None, 0);
        assert_eq!((l.records, l.time), (Some(0), Some(Duration::ZERO)));
        // A record from the future (clock skew) is no lag.
        let l = lag(40, None, 100, Some(9_000), 1_000);
        assert_eq!((l.records, l.time), (Some(60), Some(Duration::ZERO)));
        // Behind with the record's timestamp unknown.
        assert_eq!(lag(40, None, 100, None, 1_000).time, None);
    }
}
