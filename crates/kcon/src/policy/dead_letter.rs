//! The dead-letter record: the original key, value and headers, byte for byte, plus headers
//! saying where the record came from and why it failed.
//!
//! The header values are UTF-8 text (numbers in decimal), so any tool can read them.

use bytes::Bytes;
use kcon_produce::ProducerRecord;

use super::failure::FailureInfo;
use crate::Record;

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
    out.topic = topic.to_owned();
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
        assert_eq!(out.topic, "orders.dlq");
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
