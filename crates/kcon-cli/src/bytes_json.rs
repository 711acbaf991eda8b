//! Byte strings in JSON, both ways: a JSON string when the bytes are UTF-8, `{"base64":"..."}`
//! when they are not, `null` for null. `kcon consume --format json` writes them this way and
//! `kcon produce --format json` reads them back, so its output can be produced again.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Appends `bytes` as JSON to `out`.
pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let Some(bytes) = bytes else {
        out.extend_from_slice(b"null");
        return;
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => write_str(out, text),
        Err(_) => {
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Appends `text` as a JSON string to `out`.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    // Invariant: serializing a str into a Vec cannot fail (no IO, no non-string keys).
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends `n` to `out`.
pub(crate) fn write_int(out: &mut Vec<u8>, n: i64) {
    // Invariant: writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Reads a byte string written by [`write_bytes`]; `what` names the field in the error.
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
        let mut out = Vec::new();
        write_bytes(&mut out, bytes);
        String::from_utf8(out).unwrap()
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
