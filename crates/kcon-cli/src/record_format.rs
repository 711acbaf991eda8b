//! How `kcon consume` writes records (stdout) and rebalance events (stderr), in its two
//! formats.
//!
//! - `json`: one object per line. A record:
//!   `{"topic":"t","partition":0,"offset":5,"timestamp":1700000000000,"key":null,"value":"v","headers":[["h","x"]]}`;
//!   key, value and header keys and values are strings when UTF-8, `{"base64":"..."}` when
//!   not, `null` when null. A rebalance event:
//!   `{"event":"assigned","partitions":[{"topic":"t","partition":0}]}` (or `revoked`, `lost`).
//! - `text`: for reading. `TOPIC/PARTITION@OFFSET key=KEY VALUE`, `key=...` left out for a
//!   null key, `(null)` for a null value; control characters and backslashes escaped
//!   (`\n`, `\t`, `\\`, `\u{1b}`), bytes that are not UTF-8 as `base64:...`. Headers and
//!   timestamps are left out: use json for everything. Rebalance events read
//!   `kcon: assigned t-0, t-1`.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use kcon::{Record, TopicPartition};

use crate::bytes_json::{write_bytes, write_int, write_str};

/// An output format (of `kcon consume`, and of the administrative commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For reading.
    Text,
    /// JSON.
    Json,
}

impl Format {
    /// Appends `record` and a newline to `out`.
    pub(crate) fn write_record(self, out: &mut Vec<u8>, record: &Record) {
        match self {
            Format::Json => json_record(out, record),
            Format::Text => text_record(out, record),
        }
        out.push(b'\n');
    }

    /// The line (with its newline) telling of a rebalance event: `event` is `assigned`,
    /// `revoked` or `lost`.
    pub(crate) fn rebalance_event(self, event: &str, partitions: &[TopicPartition]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Format::Json => {
                out.extend_from_slice(b"{\"event\":");
                write_str(&mut out, event);
                out.extend_from_slice(b",\"partitions\":[");
                for (i, tp) in partitions.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"topic\":");
                    write_str(&mut out, &tp.topic);
                    out.extend_from_slice(b",\"partition\":");
                    write_int(&mut out, i64::from(tp.partition));
                    out.push(b'}');
                }
                out.extend_from_slice(b"]}");
            }
            Format::Text => {
                let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                let list = if names.is_empty() {
                    "no partitions".to_owned()
                } else {
                    names.join(", ")
                };
                out.extend_from_slice(format!("kcon: {event} {list}").as_bytes());
            }
        }
        out.push(b'\n');
        out
    }
}

fn json_record(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(b"{\"topic\":");
    write_str(out, &r.topic);
    out.extend_from_slice(b",\"partition\":");
    write_int(out, i64::from(r.partition));
    out.extend_from_slice(b",\"offset\":");
    write_int(out, r.offset);
    out.extend_from_slice(b",\"timestamp\":");
    write_int(out, r.timestamp);
    out.extend_from_slice(b",\"key\":");
    write_bytes(out, r.key.as_deref());
    out.extend_from_slice(b",\"value\":");
    write_bytes(out, r.value.as_deref());
    out.extend_from_slice(b",\"headers\":[");
    for (i, (k, v)) in r.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_bytes(out, Some(k));
        out.push(b',');
        write_bytes(out, v.as_deref());
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
}

fn text_record(out: &mut Vec<u8>, r: &Record) {
    let mut line = format!("{}/{}@{}", r.topic, r.partition, r.offset);
    if let Some(key) = &r.key {
        line.push_str(" key=");
        text_bytes(&mut line, key);
    }
    line.push(' ');
    match &r.value {
        Some(value) => text_bytes(&mut line, value),
        None => line.push_str("(null)"),
    }
    out.extend_from_slice(line.as_bytes());
}

/// UTF-8 text with control characters and backslashes escaped, so that a record stays on one
/// line; other bytes as base64.
fn text_bytes(line: &mut String, bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        line.push_str("base64:");
        line.push_str(&STANDARD.encode(bytes));
        return;
    };
    for c in text.chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c.is_control() => {
                // Invariant: writing to a String cannot fail.
                let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
            }
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kcon::TimestampType;

    use super::*;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> Record {
        Record::new(
            Arc::<str>::from("t\"q"),
            3,
            41,
            key.map(Bytes::from_static),
            value.map(Bytes::from_static),
        )
        .with_timestamp(1_700_000_000_123, TimestampType::CreateTime)
        .with_headers(vec![
            (Bytes::from_static(b"h"), Some(Bytes::from_static(b"\xfe"))),
            (Bytes::from_static(b"h"), None),
        ])
    }

    fn line(format: Format, r: &Record) -> String {
        let mut out = Vec::new();
        format.write_record(&mut out, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_records_have_every_field_in_order() {
        let text = line(Format::Json, &record(None, Some(b"\xffv")));
        assert_eq!(
            text,
            "{\"topic\":\"t\\\"q\",\"partition\":3,\"offset\":41,\"timestamp\":1700000000123,\
             \"key\":null,\"value\":{\"base64\":\"/3Y=\"},\"headers\":[[\"h\",{\"base64\":\"/g==\"}],[\"h\",null]]}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["offset"], 41);
    }

    #[test]
    fn text_records_stay_on_one_line() {
        assert_eq!(
            line(Format::Text, &record(Some(b"k"), Some(b"a\nb\\c\x1b"))),
            "t\"q/3@41 key=k a\\nb\\\\c\\u{1b}\n"
        );
        assert_eq!(
            line(Format::Text, &record(None, None)),
            "t\"q/3@41 (null)\n"
        );
        assert_eq!(
            line(Format::Text, &record(None, Some(b"\xff"))),
            "t\"q/3@41 base64:/w==\n"
        );
    }

    #[test]
    fn rebalance_events() {
        let tps = [TopicPartition::new("a", 0), TopicPartition::new("a", 1)];
        let json = Format::Json.rebalance_event("revoked", &tps);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "{\"event\":\"revoked\",\"partitions\":[{\"topic\":\"a\",\"partition\":0},{\"topic\":\"a\",\"partition\":1}]}\n"
        );
        let text = Format::Text.rebalance_event("assigned", &tps);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "kcon: assigned a-0, a-1\n"
        );
    }
}
