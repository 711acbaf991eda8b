//! `kcon consume --key-format/--value-format`: how a record's key and value are read before
//! they are written out, with kcon's deserializers. A field that does not read makes the
//! record a failure: reported on stderr and, with `--dlq-topic`, dead-lettered.

use bytes::Bytes;
use clap::ValueEnum;
use kcon::deserialize::{
    Context, DeserializeError, Deserializer, JsonDeserializer, Nullable, StringDeserializer,
};

/// How a key or a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FieldFormat {
    /// As bytes: written as text when UTF-8, as base64 when not. Never fails.
    Bytes,
    /// UTF-8 text; other bytes fail.
    String,
    /// JSON; anything else fails. Written as the JSON value itself.
    Json,
}

/// A field as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Bytes(Option<Bytes>),
    Text(Option<String>),
    Json(serde_json::Value),
}

/// Reads a field in a [`FieldFormat`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDeserializer(pub(crate) FieldFormat);

impl Deserializer for FieldDeserializer {
    type Output = Field;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<Field, DeserializeError> {
        Ok(match self.0 {
            FieldFormat::Bytes => Field::Bytes(data.cloned()),
            // A null field (a tombstone's value, a record without key) is no failure.
            FieldFormat::String => Field::Text(
                Nullable(StringDeserializer)
                    .deserialize(data, context)
                    .await?,
            ),
            FieldFormat::Json => Field::Json(
                JsonDeserializer::<serde_json::Value>::new()
                    .deserialize(data, context)
                    .await?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use kcon::Record;
    use kcon::deserialize::decode;

    use super::*;

    async fn read(format: FieldFormat, value: Option<&'static [u8]>) -> Result<Field, String> {
        let record = Record::new("t", 0, 0, None, value.map(Bytes::from_static));
        let key = FieldDeserializer(FieldFormat::Bytes);
        decode(record, &key, &FieldDeserializer(format))
            .await
            .map(|d| d.value)
            .map_err(|f| f.error.kind().to_owned())
    }

    #[tokio::test]
    async fn each_format_reads_what_it_should_and_refuses_the_rest() {
        let bad = Some(&b"\xff{"[..]);
        assert_eq!(
            read(FieldFormat::Bytes, bad).await,
            Ok(Field::Bytes(Some(Bytes::from_static(b"\xff{"))))
        );
        assert_eq!(read(FieldFormat::String, bad).await, Err("utf8".into()));
        assert_eq!(read(FieldFormat::Json, bad).await, Err("json".into()));
        assert_eq!(
            read(FieldFormat::Json, Some(br#"{"a":[1]}"#)).await,
            Ok(Field::Json(serde_json::json!({"a": [1]})))
        );
        assert_eq!(
            read(FieldFormat::String, Some(b"ok")).await,
            Ok(Field::Text(Some("ok".into())))
        );
        for format in [FieldFormat::Bytes, FieldFormat::String] {
            assert!(read(format, None).await.is_ok(), "{format:?} reads null");
        }
        assert_eq!(
            read(FieldFormat::Json, None).await,
            Ok(Field::Json(serde_json::Value::Null))
        );
    }
}
