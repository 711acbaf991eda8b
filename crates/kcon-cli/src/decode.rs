//! `kcon consume --key-format/--value-format`: how a record's key and value are read before
//! they are written out, with kcon's deserializers. A field that does not read makes the
//! record a failure: reported on stderr and, with `--dlq-topic`, dead-lettered. The Schema
//! Registry formats (`avro`, `protobuf`, `json-schema`) read through one registry client,
//! whose properties (`schema.registry.*`, `basic.auth.*`, `bearer.auth.*`,
//! `max.schemas.per.subject`) come with `-X`.

use bytes::Bytes;
use clap::ValueEnum;
use kcon::deserialize::{
    Context, DeserializeError, Deserializer, JsonDeserializer, Nullable, StringDeserializer,
};
use kcon_schema_registry::{
    AvroJsonDeserializer, JsonSchemaDeserializer, PROPERTIES, ProtobufJsonDeserializer,
    SchemaRegistry,
};

use crate::failure::Failure;

/// How a key or a value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FieldFormat {
    /// As bytes: written as text when UTF-8, as base64 when not. Never fails.
    Bytes,
    /// UTF-8 text; other bytes fail.
    String,
    /// JSON; anything else fails. Written as the JSON value itself.
    Json,
    /// Avro written by Confluent's serializer (schema from --schema-registry), as JSON.
    Avro,
    /// Protobuf written by Confluent's serializer, as Protobuf's JSON mapping.
    Protobuf,
    /// JSON Schema written by Confluent's serializer, as the JSON value.
    JsonSchema,
}

impl FieldFormat {
    /// Whether reading needs a Schema Registry.
    pub(crate) fn needs_registry(self) -> bool {
        matches!(
            self,
            FieldFormat::Avro | FieldFormat::Protobuf | FieldFormat::JsonSchema
        )
    }
}

/// Whether `-X name` is a Schema Registry client's property (then it is not the consumer's).
pub(crate) fn is_registry_property(name: &str) -> bool {
    kcon::property::registry::lookup(PROPERTIES, name).is_some()
}

/// The registry client for `url` (or `-X schema.registry.url`) and the registry properties
/// among `properties`; a bad one is a usage error naming it.
pub(crate) fn registry(
    url: Option<&str>,
    properties: &[(String, String)],
) -> Result<SchemaRegistry, Failure> {
    let mut builder = SchemaRegistry::builder();
    if let Some(url) = url {
        builder = builder.set("schema.registry.url", url);
    }
    for (name, value) in properties.iter().filter(|(n, _)| is_registry_property(n)) {
        builder = builder.set(name.as_str(), value.as_str());
    }
    if url.is_none() && !properties.iter().any(|(n, _)| n == "schema.registry.url") {
        return Err(Failure::usage(
            "--key-format/--value-format avro, protobuf and json-schema need --schema-registry URL",
        ));
    }
    builder
        .build()
        .map_err(|e| Failure::usage(format!("bad configuration: {e}")))
}

/// A field as read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Bytes(Option<Bytes>),
    Text(Option<String>),
    Json(serde_json::Value),
}

/// Reads a field in a [`FieldFormat`]. Made once per run, so the schemas a registry format
/// fetched stay cached.
#[derive(Debug, Clone)]
pub(crate) struct FieldDeserializer {
    format: FieldFormat,
    schema: Option<SchemaFormat>,
}

#[derive(Debug, Clone)]
enum SchemaFormat {
    Avro(AvroJsonDeserializer),
    Protobuf(ProtobufJsonDeserializer),
    JsonSchema(JsonSchemaDeserializer),
}

impl FieldDeserializer {
    /// A deserializer of `format`; the registry formats need `registry`.
    pub(crate) fn new(format: FieldFormat, registry: Option<&SchemaRegistry>) -> Self {
        let schema = registry.and_then(|r| match format {
            FieldFormat::Avro => Some(SchemaFormat::Avro(AvroJsonDeserializer::new(r.clone()))),
            FieldFormat::Protobuf => Some(SchemaFormat::Protobuf(ProtobufJsonDeserializer::new(
                r.clone(),
            ))),
            FieldFormat::JsonSchema => Some(SchemaFormat::JsonSchema(JsonSchemaDeserializer::new(
                r.clone(),
            ))),
            _ => None,
        });
        FieldDeserializer { format, schema }
    }

    /// Its format.
    pub(crate) fn format(&self) -> FieldFormat {
        self.format
    }
}

impl Deserializer for FieldDeserializer {
    type Output = Field;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<Field, DeserializeError> {
        if let Some(schema) = &self.schema {
            // A null field (a tombstone) is written as JSON null, as for --value-format json.
            if data.is_none() {
                return Ok(Field::Json(serde_json::Value::Null));
            }
            return Ok(Field::Json(match schema {
                SchemaFormat::Avro(d) => d.deserialize(data, context).await?,
                SchemaFormat::Protobuf(d) => d.deserialize(data, context).await?,
                SchemaFormat::JsonSchema(d) => d.deserialize(data, context).await?,
            }));
        }
        Ok(match self.format {
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
            // Invariant: `new` made a schema deserializer for these whenever it had a
            // registry, and consume asks for one before it makes them.
            FieldFormat::Avro | FieldFormat::Protobuf | FieldFormat::JsonSchema => {
                return Err(DeserializeError::permanent(
                    "schema-registry",
                    "no Schema Registry configured (--schema-registry URL)",
                ));
            }
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
        let key = FieldDeserializer::new(FieldFormat::Bytes, None);
        decode(record, &key, &FieldDeserializer::new(format, None))
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
