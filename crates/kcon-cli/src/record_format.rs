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
//!
//! With `--key-format`/`--value-format` other than bytes, a field read as `string` is written
//! as text (a JSON string in json), one read as `json` as the JSON value itself (compact, in
//! either format). A record that did not read is reported on stderr as one JSON object, in
//! either format: `{"error":"deserialize","topic":"t","partition":0,"offset":5,
//! "field":"value","kind":"json","message":"...","dead_letter_topic":"t.dlq"}` (the last
//! member only with `--dlq-topic`).

use std::io::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use kcon::{BorrowedRecord, Record, TopicPartition};
use serde::{Serialize, Serializer};

use crate::bytes_json::{JsonBytes, PartitionJson, write_line};
use crate::decode::Field;

/// A key or a value as it is written: its bytes, or what a format read it as.
#[derive(Debug, Clone, Copy)]
enum Shown<'a> {
    Bytes(Option<&'a [u8]>),
    Text(Option<&'a str>),
    Json(&'a serde_json::Value),
}

impl<'a> From<&'a Field> for Shown<'a> {
    fn from(f: &'a Field) -> Shown<'a> {
        match f {
            Field::Bytes(b) => Shown::Bytes(b.as_deref()),
            Field::Text(t) => Shown::Text(t.as_deref()),
            Field::Json(v) => Shown::Json(v),
        }
    }
}

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
        self.write_borrowed(out, record.into(), record.delivery_count);
    }

    /// Appends `record`, one read where it lies in the Fetch answer (or a [`Record`] read so),
    /// with a share group's `delivery_count` if it has one, and a newline, to `out`.
    pub(crate) fn write_borrowed(
        self,
        out: &mut Vec<u8>,
        record: BorrowedRecord<'_>,
        delivery_count: Option<u16>,
    ) {
        let key = Shown::Bytes(record.key());
        let value = Shown::Bytes(record.value());
        self.write(out, record, delivery_count, key, value);
    }

    /// Appends `record` with its key and value as read, and a newline, to `out`.
    pub(crate) fn write_decoded(
        self,
        out: &mut Vec<u8>,
        record: &Record,
        key: &Field,
        value: &Field,
    ) {
        self.write(
            out,
            record.into(),
            record.delivery_count,
            key.into(),
            value.into(),
        );
    }

    fn write(
        self,
        out: &mut Vec<u8>,
        record: BorrowedRecord<'_>,
        delivery_count: Option<u16>,
        key: Shown<'_>,
        value: Shown<'_>,
    ) {
        match self {
            Format::Json => write_line(out, &JsonRecord::new(record, delivery_count, key, value)),
            Format::Text => {
                text_record(out, record, key, value);
                out.push(b'\n');
            }
        }
    }

    /// The line (with its newline) telling of a rebalance event: `event` is `assigned`,
    /// `revoked` or `lost`.
    pub(crate) fn rebalance_event(self, event: &str, partitions: &[TopicPartition]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Format::Json => write_line(
                &mut out,
                &RebalanceEvent {
                    event,
                    partitions: partitions.iter().map(PartitionJson::from).collect(),
                },
            ),
            Format::Text => {
                let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
                let list = if names.is_empty() {
                    "no partitions".to_owned()
                } else {
                    names.join(", ")
                };
                out.extend_from_slice(format!("kcon: {event} {list}\n").as_bytes());
            }
        }
        out
    }
}

/// A record in JSON, its members in this order.
#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Shown<'a>,
    value: Shown<'a>,
    headers: Vec<(JsonBytes<'a>, JsonBytes<'a>)>,
    /// A share group's delivery count (`kcon share consume`); absent for a consumer's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_count: Option<u16>,
}

impl<'a> JsonRecord<'a> {
    fn new(
        r: BorrowedRecord<'a>,
        delivery_count: Option<u16>,
        key: Shown<'a>,
        value: Shown<'a>,
    ) -> JsonRecord<'a> {
        JsonRecord {
            topic: r.topic(),
            partition: r.partition(),
            offset: r.offset(),
            timestamp: r.timestamp(),
            key,
            value,
            headers: r
                .headers()
                .map(|(k, v)| (JsonBytes(Some(k)), JsonBytes(v)))
                .collect(),
            delivery_count,
        }
    }
}

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Shown::Bytes(b) => JsonBytes(*b).serialize(serializer),
            Shown::Text(t) => t.serialize(serializer),
            Shown::Json(v) => v.serialize(serializer),
        }
    }
}

/// A rebalance event in JSON.
#[derive(Serialize)]
struct RebalanceEvent<'a> {
    event: &'a str,
    partitions: Vec<PartitionJson<'a>>,
}

fn text_record(out: &mut Vec<u8>, r: BorrowedRecord<'_>, key: Shown<'_>, value: Shown<'_>) {
    // Invariant: writing to a Vec cannot fail.
    let _ = write!(out, "{}/{}@{}", r.topic(), r.partition(), r.offset());
    if !is_null(key) {
        out.extend_from_slice(b" key=");
        text_field(out, key);
    }
    out.push(b' ');
    if is_null(value) {
        out.extend_from_slice(b"(null)");
    } else {
        text_field(out, value);
    }
}

/// A null field: left out (a key) or `(null)` (a value) in text. JSON's own `null` is a value
/// the field held.
fn is_null(field: Shown<'_>) -> bool {
    matches!(field, Shown::Bytes(None) | Shown::Text(None))
}

fn text_field(out: &mut Vec<u8>, field: Shown<'_>) {
    match field {
        Shown::Bytes(Some(b)) => text_bytes(out, b),
        Shown::Text(Some(t)) => text_str(out, t),
        // Compact JSON holds no control characters: strings escape them.
        Shown::Json(v) => {
            // Invariant: serializing a JSON value to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, v);
        }
        Shown::Bytes(None) | Shown::Text(None) => {}
    }
}

/// The line (with its newline) reporting a record whose `field` (`key` or `value`) did not
/// read, the failure's `kind` and `message`: JSON in either output format, with the
/// dead-letter topic it went to, if any.
pub(crate) fn failure_line(
    record: &Record,
    field: &str,
    kind: &str,
    message: &str,
    dead_letter_topic: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let report = FailureReport {
        error: "deserialize",
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        field,
        kind,
        message,
        dead_letter_topic,
    };
    write_line(&mut out, &report);
    out
}

/// A record that did not read, reported in JSON.
#[derive(Serialize)]
struct FailureReport<'a> {
    error: &'static str,
    topic: &'a str,
    partition: i32,
    offset: i64,
    field: &'a str,
    kind: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_topic: Option<&'a str>,
}

/// UTF-8 text with control characters and backslashes escaped, so that a record stays on one
/// line; other bytes as base64.
fn text_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        out.extend_from_slice(b"base64:");
        out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
        return;
    };
    text_str(out, text);
}

/// Text with control characters and backslashes escaped, so that a record stays on one line.
/// What needs no escape is copied in runs, not character by character.
fn text_str(out: &mut Vec<u8>, text: &str) {
    let mut run = 0;
    for (at, c) in text.char_indices() {
        let escaped: Option<&[u8]> = match c {
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            c if c.is_control() => None,
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[run..at]);
        run = at + c.len_utf8();
        match escaped {
            Some(escaped) => out.extend_from_slice(escaped),
            // Invariant: writing to a Vec cannot fail.
            None => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out.extend_from_slice(&text.as_bytes()[run..]);
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
    fn text_escapes_what_breaks_a_line_and_copies_the_rest_as_it_is() {
        // Each character on its own: what the runs copied must add up to.
        fn one_by_one(text: &str) -> String {
            text.chars()
                .map(|c| match c {
                    '\\' => "\\\\".to_owned(),
                    '\n' => "\\n".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\t' => "\\t".to_owned(),
                    c if c.is_control() => format!("\\u{{{:x}}}", u32::from(c)),
                    c => c.to_string(),
                })
                .collect()
        }
        for text in [
            "",
            "plain",
            "\\",
            "\n\nend",
            "start\t",
            "é ü 漢字 🦀",
            "a\u{85}b\u{9f}\u{a0}c",
            "\u{0}\u{1f}\u{7f}\u{80}",
            "mid\\dle\r\nof 🦀\u{1b}[0m",
        ] {
            let mut out = Vec::new();
            text_str(&mut out, text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                one_by_one(text),
                "{text:?}"
            );
        }
        let mut out = Vec::new();
        text_str(&mut out, "a\u{85}b\u{a0}");
        assert_eq!(
            out,
            "a\\u{85}b\u{a0}".as_bytes(),
            "C1 controls, not what follows them"
        );
    }

    #[test]
    fn decoded_fields_are_written_as_what_they_were_read() {
        let r = record(None, None);
        let key = Field::Text(Some("k\n".into()));
        let value = Field::Json(serde_json::json!({"a": "x\ny", "n": [1, null]}));
        let mut out = Vec::new();
        Format::Json.write_decoded(&mut out, &r, &key, &value);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["key"], "k\n");
        assert_eq!(
            parsed["value"],
            serde_json::json!({"a": "x\ny", "n": [1, null]})
        );
        let mut out = Vec::new();
        Format::Text.write_decoded(&mut out, &r, &key, &value);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t\"q/3@41 key=k\\n {\"a\":\"x\\ny\",\"n\":[1,null]}\n"
        );
        let mut out = Vec::new();
        Format::Text.write_decoded(
            &mut out,
            &r,
            &Field::Text(None),
            &Field::Json(serde_json::Value::Null),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "t\"q/3@41 null\n");
    }

    #[test]
    fn a_failure_is_one_json_line_with_its_coordinates() {
        let error = kcon::deserialize::DeserializeError::permanent("json", "bad \"x\"");
        let line = failure_line(
            &record(None, None),
            kcon::deserialize::Field::Value.name(),
            error.kind(),
            &error.to_string(),
            Some("d"),
        );
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "error": "deserialize", "topic": "t\"q", "partition": 3, "offset": 41,
                "field": "value", "kind": "json", "message": "json: bad \"x\"",
                "dead_letter_topic": "d"
            })
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
