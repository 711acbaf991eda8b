//! Protobuf: the writer's file descriptor from the registry (asked for with
//! `format=serialized`, the base64 `FileDescriptorProto` Confluent's deserializers read), with
//! the files it imports (its references, each the version of a subject, fetched the same way)
//! and Google's well-known types; the message the record's message indexes name; the payload
//! as a dynamic message (prost-reflect), as JSON (Protobuf's JSON mapping), or as the
//! application's prost type.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use kcon_codec::schema_id::SchemaRef;
use kcon_core::deserialize::{Context, DeserializeError, Deserializer};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::cache::Cache;
use crate::client::{SchemaRegistry, SchemaType};
use crate::framing::{ParsedKey, SchemaError, SubjectLookup, framed};

/// A writer's files, in one pool.
struct Files {
    pool: DescriptorPool,
    /// The name of the registered schema's own file in the pool.
    file: String,
}

struct Core {
    registry: SchemaRegistry,
    subject: SubjectLookup,
    parsed: Cache<ParsedKey, Files, SchemaError>,
}

impl Core {
    fn new(registry: SchemaRegistry) -> Core {
        Core {
            parsed: Cache::new(registry.capacity()),
            registry,
            subject: SubjectLookup::None,
        }
    }

    /// A core with this one's settings and an empty cache.
    fn unshared(&self) -> Core {
        Core {
            parsed: Cache::new(self.registry.capacity()),
            registry: self.registry.clone(),
            subject: self.subject,
        }
    }

    async fn files(
        &self,
        schema: SchemaRef,
        subject: Option<String>,
    ) -> Result<Arc<Files>, SchemaError> {
        let key = (schema, subject);
        self.parsed
            .get_or_load(&key, || async {
                let format = Some("serialized");
                let registered = self
                    .registry
                    .schema(schema, key.1.as_deref(), format)
                    .await?;
                if registered.schema_type != SchemaType::Protobuf {
                    return Err(SchemaError::unusable(
                        "protobuf",
                        schema,
                        format!("a {} schema, not Protobuf", registered.schema_type),
                    ));
                }
                let references = self.registry.references(&registered, format).await?;
                // Google's well-known types, which Confluent's serializers do not register.
                let mut pool = DescriptorPool::global();
                for (name, reference) in &references {
                    if pool.get_file_by_name(name).is_some() {
                        continue;
                    }
                    let bytes = file_bytes(&reference.schema, Some(name)).map_err(|e| {
                        SchemaError::unusable("protobuf", schema, format!("reference {name}: {e}"))
                    })?;
                    pool.decode_file_descriptor_proto(&bytes[..]).map_err(|e| {
                        SchemaError::unusable("protobuf", schema, format!("reference {name}: {e}"))
                    })?;
                }
                let bytes = file_bytes(&registered.schema, None)
                    .map_err(|e| SchemaError::unusable("protobuf", schema, e))?;
                let before: Vec<String> = pool.files().map(|f| f.name().to_owned()).collect();
                pool.decode_file_descriptor_proto(&bytes[..])
                    .map_err(|e| SchemaError::unusable("protobuf", schema, e))?;
                let file = pool
                    .files()
                    .map(|f| f.name().to_owned())
                    .find(|n| !before.contains(n))
                    .ok_or_else(|| {
                        SchemaError::unusable(
                            "protobuf",
                            schema,
                            "its file has the name of a file already known",
                        )
                    })?;
                Ok(Files { pool, file })
            })
            .await
    }

    /// The message the record names, and its payload.
    async fn message<'a>(
        &self,
        data: Option<&'a Bytes>,
        context: &Context<'a>,
    ) -> Result<(MessageDescriptor, &'a [u8]), DeserializeError> {
        let framed = framed(data, context, true)?;
        let files = self
            .files(framed.schema, self.subject.subject(context))
            .await?;
        let indexes = framed.message_indexes.as_deref().unwrap_or(&[0]);
        let descriptor = message_at(&files, indexes).ok_or_else(|| {
            DeserializeError::permanent(
                "protobuf",
                format!(
                    "the {}'s message indexes {indexes:?} name no message of schema {}",
                    context.field, framed.schema
                ),
            )
        })?;
        Ok((descriptor, framed.payload))
    }

    async fn dynamic(
        &self,
        data: Option<&Bytes>,
        context: Context<'_>,
    ) -> Result<DynamicMessage, DeserializeError> {
        let (descriptor, payload) = self.message(data, &context).await?;
        let name = descriptor.full_name().to_owned();
        DynamicMessage::decode(descriptor, payload).map_err(|e| {
            DeserializeError::permanent(
                "protobuf",
                format!("the {} is not a {name}: {e}", context.field),
            )
            .with_source(e)
        })
    }
}

/// The message at `indexes`: the first into the file's top-level messages, each next one
/// into the nested messages of the one before.
fn message_at(files: &Files, indexes: &[u32]) -> Option<MessageDescriptor> {
    let file = files.pool.get_file_by_name(&files.file)?;
    let (first, rest) = indexes.split_first()?;
    let mut message = file.messages().nth(*first as usize)?;
    for i in rest {
        let child = message.child_messages().nth(*i as usize)?;
        message = child;
    }
    Some(message)
}

/// A `FileDescriptorProto` from a registry's base64 text, its name set to `name` if given
/// (the name its importers know it by, as Confluent's deserializers set it).
fn file_bytes(text: &str, name: Option<&str>) -> Result<Vec<u8>, String> {
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            "not a base64 FileDescriptorProto (a registry that ignores format=serialized \
             answers Protobuf source, which kcon does not compile)"
                .to_owned()
        })?;
    if let Some(name) = name {
        // Field 1 (name), length-delimited; the last occurrence of a field wins.
        bytes.push(0x0a);
        let mut len = name.len();
        while len >= 0x80 {
            bytes.push((len as u8) | 0x80);
            len >>= 7;
        }
        bytes.push(len as u8);
        bytes.extend_from_slice(name.as_bytes());
    }
    Ok(bytes)
}

macro_rules! builder_methods {
    () => {
        /// Names `subject` in every schema lookup (see [`SubjectLookup`]).
        pub fn subject_lookup(mut self, subject: SubjectLookup) -> Self {
            crate::configure(&mut self.core, Core::unshared, |c| c.subject = subject);
            self
        }
    };
}

deserializer_type! {
    /// Protobuf into a [`DynamicMessage`] of the writer's message type.
    ProtobufDynamicDeserializer
}

impl Deserializer for ProtobufDynamicDeserializer {
    type Output = DynamicMessage;

    fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> impl Future<Output = Result<DynamicMessage, DeserializeError>> + Send + 'a {
        self.core.dynamic(data, context)
    }
}

deserializer_type! {
    /// Protobuf into JSON by Protobuf's JSON mapping (lowerCamelCase names, 64-bit integers as
    /// strings, enums by name, fields at their default left out), as Confluent's and Google's
    /// `MessageToJson` write it.
    ProtobufJsonDeserializer
}

impl Deserializer for ProtobufJsonDeserializer {
    type Output = serde_json::Value;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<serde_json::Value, DeserializeError> {
        let message = self.core.dynamic(data, context).await?;
        message
            .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
            .map_err(|e| {
                DeserializeError::permanent(
                    "protobuf",
                    format!("the {} has no JSON form: {e}", context.field),
                )
            })
    }
}

deserializer_type! {
    /// Protobuf into the application's prost type `M`. The schema is still looked up and the
    /// record's message indexes must name a message of it, so a record of an unknown schema or a
    /// broken framing fails as with the other deserializers; that the message is `M` is the
    /// application's word (prost types need not know their full name).
    ProtobufDeserializer<M>
}

impl<M: prost::Message + Default + Send> Deserializer for ProtobufDeserializer<M> {
    type Output = M;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<M, DeserializeError> {
        let (descriptor, payload) = self.core.message(data, &context).await?;
        M::decode(payload).map_err(|e| {
            DeserializeError::permanent(
                "protobuf",
                format!(
                    "the {} ({}) is not a {}: {e}",
                    context.field,
                    descriptor.full_name(),
                    std::any::type_name::<M>()
                ),
            )
            .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_renamed_by_appending_its_name_field() {
        // A FileDescriptorProto named "a.proto", renamed "dir/b.proto".
        let original = [0x0a, 7, b'a', b'.', b'p', b'r', b'o', b't', b'o'];
        let text = base64::engine::general_purpose::STANDARD.encode(original);
        let bytes = file_bytes(&text, Some("dir/b.proto")).unwrap();
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_proto(&bytes[..]).unwrap();
        assert!(pool.get_file_by_name("dir/b.proto").is_some());
        assert!(pool.get_file_by_name("a.proto").is_none());
        assert!(file_bytes("syntax = \"proto3\";", None).is_err());
    }
}
