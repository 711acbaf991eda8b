//! Byte strings in JSON, both ways: a JSON string when the bytes are UTF-8, `{"base64":"..."}`
//! when they are not, `null` for null. `kcon consume --format json` writes them this way and
//! `kcon produce --format json` reads them back, so its output can be produced again.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kcon::TopicPartition;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A byte string as JSON: a string when UTF-8, `{"base64":"..."}` when not, `null` for null.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonBytes<'a>(pub(crate) Option<&'a [u8]>);

/// How bytes that are not UTF-8 are written.
#[derive(Serialize)]
struct Base64 {
    base64: String,
}

impl Serialize for JsonBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.map(std::str::from_utf8) {
            None => serializer.serialize_none(),
            Some(Ok(text)) => serializer.serialize_str(text),
            Some(Err(_)) => Base64 {
                base64: STANDARD.encode(self.0.unwrap_or_default()),
            }
            .serialize(serializer),
        }
    }
}

/// A partition as JSON, `{"topic":..,"partition":..}`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PartitionJson<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
}

impl<'a> From<&'a TopicPartition> for PartitionJson<'a> {
    fn from(tp: &'a TopicPartition) -> PartitionJson<'a> {
        PartitionJson {
            topic: &tp.topic,
            partition: tp.partition,
        }
    }
}

/// `value` as one line of JSON, with its newline, appended to `out`.
pub(crate) fn write_line<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Invariant: serializing into a Vec cannot fail (no IO; every map key is a string).
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

/// Reads a byte string written as [`JsonBytes`]; `what` names the field in the error.
pub(crate) fn read_bytes(value: &Value, what: &str) -> Result<Option<Vec<u8>>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
        Value::Object(o) if o.len() == 1 => match o.get("base64") {
            Some(Value::String(b64)) => STANDARD
                .decode(b64)
                .map(Some)
                .map_err(|e| format!("{what}: bad base64: {e}")),
            _ => Err(format!(
                "{what}: expected a string, null or {{\"base64\":\"...\"}}"
            )),
        },
        _ => Err(format!(
            "{what}: expected a string, null or {{\"base64\":\"...\"}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bytes: Option<&[u8]>) -> String {
        serde_json::to_string(&JsonBytes(bytes)).unwrap()
    }

    #[test]
    fn text_binary_and_null_round_trip() {
        for bytes in [
            None,
            Some(&b""[..]),
            Some(&b"plain \"quoted\"\n"[..]),
            Some(&b"\xff\x00binary"[..]),
            Some("żółw".as_bytes()),
        ] {
            let json = written(bytes);
            let value: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(read_bytes(&value, "v").unwrap().as_deref(), bytes, "{json}");
        }
        assert_eq!(written(Some(b"\xff")), r#"{"base64":"/w=="}"#);
        assert_eq!(written(None), "null");
    }

    #[test]
    fn other_shapes_are_refused_naming_the_field() {
        let e = read_bytes(&serde_json::json!(5), "value").unwrap_err();
        assert!(e.starts_with("value:"), "{e}");
        let e = read_bytes(&serde_json::json!({"base64": "!!"}), "key").unwrap_err();
        assert!(e.contains("base64"), "{e}");
    }
}
