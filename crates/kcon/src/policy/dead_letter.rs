//! The dead-letter record: the original key, value and headers, byte for byte, plus headers
//! saying where the record came from and why it failed; and its inverse, which reads those
//! headers back ([`DeadLetterSource::read`]) and makes the record to produce again
//! ([`replay_record`], what `kcon dlq replay` sends).
//!
//! The header values are UTF-8 text (numbers in decimal), so any tool can read them.

use std::fmt;

use bytes::Bytes;
use kcon_produce::ProducerRecord;

use super::failure::FailureInfo;
use crate::record::Record;

/// The names of the headers a dead-letter record carries after the original ones.
pub mod headers {
    /// The topic the record was consumed from.
    pub const TOPIC: &str = "kcon.dlq.source.topic";
    /// Its partition.
    pub const PARTITION: &str = "kcon.dlq.source.partition";
    /// Its offset.
    pub const OFFSET: &str = "kcon.dlq.source.offset";
    /// Its timestamp, milliseconds since the epoch.
    pub const TIMESTAMP: &str = "kcon.dlq.source.timestamp";
    /// The consumer group that failed it (absent without one).
    pub const GROUP: &str = "kcon.dlq.group";
    /// Where it failed: `deserialize.key`, `deserialize.value` or `handler`.
    pub const STAGE: &str = "kcon.dlq.stage";
    /// The failure's class: a deserializer's kind or the handler error's class.
    pub const ERROR_CLASS: &str = "kcon.dlq.error.class";
    /// The failure's message.
    pub const ERROR_MESSAGE: &str = "kcon.dlq.error.message";
    /// How many times the record was tried.
    pub const ATTEMPTS: &str = "kcon.dlq.attempts";
    /// When it failed for good, milliseconds since the epoch.
    pub const FAILED_AT: &str = "kcon.dlq.failed.at";
    /// The prefix of all of them.
    pub const PREFIX: &str = "kcon.dlq.";
}

/// The longest error message a dead-letter header carries, in bytes (longer ones are cut at a
/// character boundary): a message built from a huge payload must not make the dead-letter
/// record too large to write.
const MAX_MESSAGE: usize = 8 * 1024;

/// Where and why a record failed, for its dead-letter copy.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterContext<'a> {
    /// The failure.
    pub failure: &'a FailureInfo,
    /// How many times the record was tried.
    pub attempts: u32,
    /// The consumer group that failed it, if any.
    pub group: Option<&'a str>,
    /// When it failed for good, milliseconds since the epoch.
    pub failed_at_ms: i64,
}

/// `record`'s copy for the dead-letter `topic`: key, value and headers unchanged, then the
/// `kcon.dlq.*` headers. Its partition follows its key (murmur2), as for any produced record;
/// its timestamp is the time it is written (the original is in a header), so the topic's
/// retention counts from the failure.
pub fn dead_letter_record(
    topic: &str,
    record: &Record,
    cx: DeadLetterContext<'_>,
) -> ProducerRecord {
    let mut out = ProducerRecord::default();
    out.topic = topic.into();
    out.key = record.key.clone();
    out.value = record.value.clone();
    out.headers = Vec::with_capacity(record.headers.len() + 10);
    out.headers.extend(record.headers.iter().cloned());
    let mut add = |name: &'static str, value: String| {
        out.headers.push((
            Bytes::from_static(name.as_bytes()),
            Some(Bytes::from(value)),
        ));
    };
    add(headers::TOPIC, record.topic.to_string());
    add(headers::PARTITION, record.partition.to_string());
    add(headers::OFFSET, record.offset.to_string());
    add(headers::TIMESTAMP, record.timestamp.to_string());
    if let Some(group) = cx.group {
        add(headers::GROUP, group.to_owned());
    }
    add(headers::STAGE, cx.failure.stage.name().to_owned());
    add(headers::ERROR_CLASS, cx.failure.class.clone());
    add(
        headers::ERROR_MESSAGE,
        cut(&cx.failure.message, MAX_MESSAGE),
    );
    add(headers::ATTEMPTS, cx.attempts.to_string());
    add(headers::FAILED_AT, cx.failed_at_ms.to_string());
    out
}

/// Whether a header is one of those [`dead_letter_record`] adds.
pub fn is_dead_letter_header(name: &[u8]) -> bool {
    name.starts_with(headers::PREFIX.as_bytes())
}

/// Where a dead letter's record came from, read back from the `kcon.dlq.source.*` headers
/// [`dead_letter_record`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterSource {
    /// The topic the record was consumed from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset, when the letter says.
    pub offset: Option<i64>,
    /// Its timestamp (milliseconds since the epoch), when the letter says.
    pub timestamp: Option<i64>,
}

impl DeadLetterSource {
    /// Reads `dead_letter`'s source headers: the topic and partition must be there; the
    /// offset and timestamp, when there, must be numbers.
    pub fn read(dead_letter: &Record) -> Result<DeadLetterSource, DeadLetterError> {
        let number = |name: &'static str| -> Result<Option<i64>, DeadLetterError> {
            optional_text(dead_letter, name)?
                .map(|v| {
                    v.parse().map_err(|_| DeadLetterError::BadNumber {
                        header: name,
                        value: v,
                    })
                })
                .transpose()
        };
        let topic = text(dead_letter, headers::TOPIC)?;
        let partition = text(dead_letter, headers::PARTITION)?;
        Ok(DeadLetterSource {
            topic,
            partition: partition.parse().map_err(|_| DeadLetterError::BadNumber {
                header: headers::PARTITION,
                value: partition,
            })?,
            offset: number(headers::OFFSET)?,
            timestamp: number(headers::TIMESTAMP)?,
        })
    }
}

/// Why a record does not read back as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// A header [`dead_letter_record`] always writes is missing: not a kcon dead letter.
    MissingHeader {
        /// The header.
        header: &'static str,
    },
    /// A header's value is not UTF-8.
    NotUtf8 {
        /// The header.
        header: &'static str,
    },
    /// A header's value is not the number it should be.
    BadNumber {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for DeadLetterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterError::MissingHeader { header } => {
                write!(f, "no {header} header: not a kcon dead letter?")
            }
            DeadLetterError::NotUtf8 { header } => write!(f, "the {header} header is not UTF-8"),
            DeadLetterError::BadNumber { header, value } => {
                write!(f, "the {header} header is not a number: {value:?}")
            }
        }
    }
}

impl std::error::Error for DeadLetterError {}

/// The record to produce again for `dead_letter`: its key, value and original headers (the
/// `kcon.dlq.*` headers dropped), to `to` (partitioned by key) or, without it, back to its
/// source topic and partition ([`DeadLetterSource`]). Its timestamp is left to the producer:
/// the original is in the letter's `kcon.dlq.source.timestamp`, and an old timestamp could put
/// the copy past the topic's retention at once.
pub fn replay_record(
    dead_letter: &Record,
    to: Option<&str>,
) -> Result<ProducerRecord, DeadLetterError> {
    let mut copy = ProducerRecord::default();
    match to {
        Some(topic) => copy.topic = topic.into(),
        None => {
            let source = DeadLetterSource::read(dead_letter)?;
            copy.topic = source.topic.into();
            copy.partition = Some(source.partition);
        }
    }
    copy.key = dead_letter.key.clone();
    copy.value = dead_letter.value.clone();
    copy.headers = dead_letter
        .headers
        .iter()
        .filter(|(k, _)| !is_dead_letter_header(k))
        .cloned()
        .collect();
    Ok(copy)
}

/// The UTF-8 value of the last header `name` of `record`, which must be there.
fn text(record: &Record, name: &'static str) -> Result<String, DeadLetterError> {
    optional_text(record, name)?.ok_or(DeadLetterError::MissingHeader { header: name })
}

/// The UTF-8 value of the last header `name` of `record`, if there is one.
fn optional_text(record: &Record, name: &'static str) -> Result<Option<String>, DeadLetterError> {
    record
        .header(name)
        .flatten()
        .map(|v| {
            String::from_utf8(v.to_vec()).map_err(|_| DeadLetterError::NotUtf8 { header: name })
        })
        .transpose()
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::failure::Stage;

    fn failure(message: String) -> FailureInfo {
        FailureInfo {
            stage: Stage::DeserializeValue,
            retriable: false,
            class: "json".into(),
            message,
        }
    }

    #[test]
    fn the_copy_keeps_the_record_and_says_where_and_why() {
        let record = Record::new("orders", 2, 41, Some("k".into()), Some(vec![0, 255].into()))
            .with_timestamp(1_700, crate::TimestampType::CreateTime)
            .with_headers(vec![("trace".into(), Some("7".into())), ("n".into(), None)]);
        let f = failure("expected value".into());
        let cx = DeadLetterContext {
            failure: &f,
            attempts: 3,
            group: Some("billing"),
            failed_at_ms: 1_800,
        };
        let out = dead_letter_record("orders.dlq", &record, cx);
        assert_eq!(&*out.topic, "orders.dlq");
        assert_eq!(
            (out.key, out.value),
            (record.key.clone(), record.value.clone())
        );
        assert_eq!(out.partition, None);
        assert_eq!(out.timestamp, None);
        assert_eq!(&out.headers[..2], &record.headers[..]);
        let added: Vec<(String, String)> = out.headers[2..]
            .iter()
            .map(|(k, v)| {
                assert!(is_dead_letter_header(k));
                let v = v.as_ref().unwrap();
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        let expected = [
            (headers::TOPIC, "orders"),
            (headers::PARTITION, "2"),
            (headers::OFFSET, "41"),
            (headers::TIMESTAMP, "1700"),
            (headers::GROUP, "billing"),
            (headers::STAGE, "deserialize.value"),
            (headers::ERROR_CLASS, "json"),
            (headers::ERROR_MESSAGE, "expected value"),
            (headers::ATTEMPTS, "3"),
            (headers::FAILED_AT, "1800"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(added, expected);
    }

    fn letter() -> Record {
        Record::new("orders.dlq", 0, 9, Some("k".into()), Some("v".into())).with_headers(vec![
            ("trace".into(), Some("t1".into())),
            (headers::TOPIC.into(), Some("orders".into())),
            (headers::PARTITION.into(), Some("2".into())),
            (headers::ERROR_CLASS.into(), Some("json".into())),
        ])
    }

    #[test]
    fn a_copy_goes_back_to_its_source_with_its_original_headers_only() {
        let copy = replay_record(&letter(), None).unwrap();
        assert_eq!((&*copy.topic, copy.partition), ("orders", Some(2)));
        assert_eq!((copy.key, copy.value), (Some("k".into()), Some("v".into())));
        assert_eq!(
            copy.headers,
            vec![(Bytes::from("trace"), Some(Bytes::from("t1")))]
        );
        let elsewhere = replay_record(&letter(), Some("retry")).unwrap();
        assert_eq!((&*elsewhere.topic, elsewhere.partition), ("retry", None));
        let not_a_letter = Record::new("x", 0, 1, None, None);
        let e = replay_record(&not_a_letter, None).unwrap_err();
        assert!(e.to_string().contains("kcon.dlq.source.topic"), "{e}");
    }

    /// Reading back what `dead_letter_record` wrote gives the record's coordinates and, to
    /// replay, its key, value and headers as they were.
    #[test]
    fn the_inverse_reads_back_what_the_writer_wrote() {
        let record = Record::new("orders", 2, 41, Some("k".into()), None)
            .with_timestamp(1_700, crate::TimestampType::CreateTime)
            .with_headers(vec![("trace".into(), Some("7".into())), ("n".into(), None)]);
        let f = failure("expected value".into());
        let cx = DeadLetterContext {
            failure: &f,
            attempts: 3,
            group: Some("billing"),
            failed_at_ms: 1_800,
        };
        let written = dead_letter_record("orders.dlq", &record, cx);
        let letter = Record::new("orders.dlq", 0, 7, written.key, written.value)
            .with_headers(written.headers);
        assert_eq!(
            DeadLetterSource::read(&letter),
            Ok(DeadLetterSource {
                topic: "orders".to_owned(),
                partition: 2,
                offset: Some(41),
                timestamp: Some(1_700),
            })
        );
        let copy = replay_record(&letter, None).unwrap();
        assert_eq!((&*copy.topic, copy.partition), ("orders", Some(2)));
        assert_eq!((copy.key, copy.value), (record.key.clone(), None));
        assert_eq!(copy.headers, record.headers);
        assert_eq!(copy.timestamp, None, "the time of the replay");
    }

    #[test]
    fn a_letter_with_bad_headers_says_which() {
        let with = |name: &str, value: &[u8]| {
            letter().with_headers(vec![
                (headers::TOPIC.into(), Some("orders".into())),
                (headers::PARTITION.into(), Some("2".into())),
                (
                    Bytes::copy_from_slice(name.as_bytes()),
                    Some(Bytes::copy_from_slice(value)),
                ),
            ])
        };
        assert_eq!(
            DeadLetterSource::read(&with(headers::PARTITION, b"two")),
            Err(DeadLetterError::BadNumber {
                header: headers::PARTITION,
                value: "two".to_owned()
            })
        );
        assert_eq!(
            DeadLetterSource::read(&with(headers::TOPIC, b"\xff")),
            Err(DeadLetterError::NotUtf8 {
                header: headers::TOPIC
            })
        );
        assert!(matches!(
            DeadLetterSource::read(&with(headers::OFFSET, b"x")),
            Err(DeadLetterError::BadNumber { header, .. }) if header == headers::OFFSET
        ));
        let no_partition = Record::new("d", 0, 0, None, None)
            .with_headers(vec![(headers::TOPIC.into(), Some("orders".into()))]);
        assert_eq!(
            DeadLetterSource::read(&no_partition),
            Err(DeadLetterError::MissingHeader {
                header: headers::PARTITION
            })
        );
    }

    #[test]
    fn a_huge_message_is_cut_at_a_character_boundary_and_null_stays_null() {
        let f = failure("é".repeat(MAX_MESSAGE));
        let cx = DeadLetterContext {
            failure: &f,
            attempts: 1,
            group: None,
            failed_at_ms: 0,
        };
        let out = dead_letter_record("d", &Record::new("t", 0, 0, None, None), cx);
        assert_eq!((out.key, out.value), (None, None));
        let (_, message) = out
            .headers
            .iter()
            .find(|(k, _)| k.as_ref() == headers::ERROR_MESSAGE.as_bytes())
            .unwrap();
        let message = message.as_ref().unwrap();
        assert_eq!(message.len(), MAX_MESSAGE);
        assert!(std::str::from_utf8(message).is_ok());
        assert!(
            !out.headers
                .iter()
                .any(|(k, _)| k.as_ref() == headers::GROUP.as_bytes())
        );
    }
}
