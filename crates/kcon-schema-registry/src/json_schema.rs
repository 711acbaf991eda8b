//! JSON Schema: the payload is JSON; the schema id must name a registered JSON schema. The
//! payload is not validated against the schema (Confluent's deserializers validate only when
//! asked); an application that wants it validates the `serde_json::Value` it gets.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use kcon_core::deserialize::{Context, DeserializeError, Deserializer};
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::client::{RegisteredSchema, SchemaRegistry, SchemaType};
use crate::framing::{ParsedKey, SchemaError, SubjectLookup, framed};

struct Core {
    registry: SchemaRegistry,
    subject: SubjectLookup,
    checked: Cache<ParsedKey, Arc<RegisteredSchema>, SchemaError>,
}

/// JSON Schema records into `T` (by default `serde_json::Value`).
pub struct JsonSchemaDeserializer<T = serde_json::Value> {
    core: Arc<Core>,
    _type: PhantomData<fn() -> T>,
}

impl Core {
    /// A core with this one's settings and an empty cache.
    fn unshared(&self) -> Core {
        Core {
            checked: Cache::new(self.registry.capacity()),
            registry: self.registry.clone(),
            subject: self.subject,
        }
    }
}

impl<T> JsonSchemaDeserializer<T> {
    /// A deserializer looking writer schemas up in `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        JsonSchemaDeserializer {
            core: Arc::new(Core {
                checked: Cache::new(registry.capacity()),
                registry,
                subject: SubjectLookup::None,
            }),
            _type: PhantomData,
        }
    }

    /// Names `subject` in every schema lookup (see [`SubjectLookup`]).
    pub fn subject_lookup(mut self, subject: SubjectLookup) -> Self {
        crate::configure(&mut self.core, Core::unshared, |c| c.subject = subject);
        self
    }
}

impl<T> Clone for JsonSchemaDeserializer<T> {
    fn clone(&self) -> Self {
        JsonSchemaDeserializer {
            core: self.core.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for JsonSchemaDeserializer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSchemaDeserializer<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + Send> Deserializer for JsonSchemaDeserializer<T> {
    type Output = T;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<T, DeserializeError> {
        let framed = framed(data, &context, false)?;
        let schema = framed.schema;
        let key = (schema, self.core.subject.subject(&context));
        self.core
            .checked
            .get_or_load(&key, || async {
                let registered = self
                    .core
                    .registry
                    .schema(schema, key.1.as_deref(), None)
                    .await?;
                if registered.schema_type != SchemaType::Json {
                    return Err(SchemaError::unusable(
                        "json-schema",
                        schema,
                        format!("a {} schema, not JSON Schema", registered.schema_type),
                    ));
                }
                Ok(registered)
            })
            .await?;
        serde_json::from_slice(framed.payload).map_err(|e| {
            DeserializeError::permanent(
                "json-schema",
                format!("the {} is not the JSON expected: {e}", context.field),
            )
            .with_source(e)
        })
    }
}
