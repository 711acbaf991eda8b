//! What every Schema Registry deserializer shares: taking a field apart by Confluent's framing
//! (`kcon_codec::schema_id`), the subject a lookup names, and errors that can be kept in a
//! cache and handed to every waiter.

use bytes::Bytes;
use kcon_codec::schema_id::{
    self, Framed, KEY_SCHEMA_ID_HEADER, SchemaRef, VALUE_SCHEMA_ID_HEADER,
};

use kcon_core::deserialize::{Context, DeserializeError, Field};

/// Which subject a deserializer's schema lookups name (the `subject` query parameter, which a
/// registry with contexts needs to find an id in the right one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectLookup {
    /// None: `GET /schemas/ids/{id}` alone, as Confluent's deserializers look ids up by
    /// default.
    #[default]
    None,
    /// `{topic}-key` or `{topic}-value`: Confluent's `TopicNameStrategy`.
    TopicName,
}

impl SubjectLookup {
    pub(crate) fn subject(self, context: &Context<'_>) -> Option<String> {
        match self {
            SubjectLookup::None => None,
            SubjectLookup::TopicName => Some(format!("{}-{}", context.topic, context.field)),
        }
    }
}

/// The field taken apart: its schema identity from its header or from in front of its bytes.
/// A null field is a permanent `"null"` error (wrap the deserializer in
/// kcon's `deserialize::Nullable` to read tombstones as `None`).
pub(crate) fn framed<'a>(
    data: Option<&'a Bytes>,
    context: &Context<'a>,
    protobuf: bool,
) -> Result<Framed<'a>, DeserializeError> {
    let data = data.ok_or_else(|| DeserializeError::null(context.field))?;
    let header_name = match context.field {
        Field::Key => KEY_SCHEMA_ID_HEADER,
        Field::Value => VALUE_SCHEMA_ID_HEADER,
    };
    // A header with a null value is as if absent (Java's `DualSchemaIdDeserializer`).
    let header = context.header(header_name).flatten().map(|h| &h[..]);
    schema_id::parse(header, data, protobuf).map_err(|e| {
        DeserializeError::permanent(
            "schema-framing",
            format!(
                "the {} is not in a Schema Registry framing: {e}",
                context.field
            ),
        )
        .with_source(e)
    })
}

/// A failure to get a usable schema, kept whole so that every waiter of a coalesced lookup
/// gets it.
#[derive(Debug, Clone)]
pub(crate) struct SchemaError {
    pub(crate) retriable: bool,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl SchemaError {
    /// A schema that cannot be used for good: not the format expected, or not parsable.
    pub(crate) fn unusable(
        kind: &'static str,
        schema: SchemaRef,
        why: impl std::fmt::Display,
    ) -> Self {
        SchemaError {
            retriable: false,
            kind,
            message: format!("schema {schema}: {why}"),
        }
    }
}

impl From<crate::client::RegistryError> for SchemaError {
    fn from(e: crate::client::RegistryError) -> Self {
        SchemaError {
            retriable: e.is_retriable(),
            kind: "schema-registry",
            message: e.to_string(),
        }
    }
}

impl From<SchemaError> for DeserializeError {
    fn from(e: SchemaError) -> Self {
        if e.retriable {
            DeserializeError::retriable(e.kind, e.message)
        } else {
            DeserializeError::permanent(e.kind, e.message)
        }
    }
}

/// The key of a deserializer's cache of parsed schemas.
pub(crate) type ParsedKey = (SchemaRef, Option<String>);
