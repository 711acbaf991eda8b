//! The tool's durations (`--interval`, `--by-duration`): one parser for all of them.
//!
//! Two spellings are taken:
//! - the short forms of most command-line tools: a number and a unit, `ms`, `s`, `m`, `h` or
//!   `d`, or several of them (`500ms`, `1s`, `5m`, `1h`, `1m30s`, `1.5s`);
//! - ISO-8601 (`PT1H`, `P1DT2H`, `PT0.5S`), as Kafka's own tools write them
//!   (`kafka-consumer-groups.sh --by-duration`) and as kcon-core reads
//!   `auto.offset.reset=by_duration:`.

use std::time::Duration;

use kcon::parse_iso8601_duration;

/// What the tool's durations may look like, for `--help` and errors.
const FORMS: &str = "500ms, 1s, 5m, 1h, 2d, 1m30s, or ISO-8601 such as PT1H or P1DT2H";

/// A duration (zero allowed): `--by-duration`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    parse(s).ok_or_else(|| format!("expected a duration such as {FORMS}"))
}

/// A duration of more than zero: the time between two measurements.
pub(crate) fn interval(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        Duration::ZERO => Err("the interval must be more than 0".to_owned()),
        d => Ok(d),
    }
}

fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.starts_with(['P', 'p']) {
        return parse_iso8601_duration(s);
    }
    short(s)
}

/// `<number><unit>` one or more times; the number may have a fraction (to the nanosecond).
fn short(s: &str) -> Option<Duration> {
    const UNITS: [(&str, u128); 5] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
    ];
    let mut rest = s;
    let mut nanos: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (_, per) = UNITS.iter().find(|(u, _)| *u == unit)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if number.contains('.')
            && (fraction.is_empty()
                || fraction.len() > 9
                || !fraction.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let whole: u128 = whole.parse().ok()?;
        let mut part = whole.checked_mul(*per)?;
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().ok()?;
            part = part.checked_add(digits * per / 10u128.pow(fraction.len() as u32))?;
        }
        nanos = nanos.checked_add(part)?;
        rest = after;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_and_iso_8601_both_read() {
        let ok = |s: &str| duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3_600));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86_400));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("1.5s"), Duration::from_millis(1_500));
        assert_eq!(ok("0.25ms"), Duration::from_micros(250));
        assert_eq!(ok(" 10ms "), Duration::from_millis(10));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("PT1H"), Duration::from_secs(3_600));
        assert_eq!(ok("P1DT2H"), Duration::from_secs(86_400 + 7_200));
        assert_eq!(ok("PT0.5S"), Duration::from_millis(500));
        assert_eq!(ok("pt30s"), Duration::from_secs(30));
    }

    #[test]
    fn anything_else_is_refused_saying_what_is_allowed() {
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "1S",
            "1 s",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1sec",
            "PT",
            "P1H",
            "1h P1D",
            "99999999999999999999d",
        ] {
            let e = duration(bad).expect_err(bad);
            assert!(e.contains("500ms") && e.contains("PT1H"), "{bad:?}: {e}");
        }
        assert!(interval("0s").unwrap_err().contains("more than 0"));
        assert!(interval("PT0S").is_err());
        assert_eq!(interval("1ms"), Ok(Duration::from_millis(1)));
    }
}
