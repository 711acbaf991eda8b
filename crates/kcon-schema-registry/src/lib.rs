//! Schema Registry decoding for kcon: keys and values written by Confluent's Avro, Protobuf and
//! JSON Schema serializers, their schemas fetched from a Schema Registry by the id (or GUID)
//! each record carries.
//!
//! - [`SchemaRegistry`]: the registry client. `GET /schemas/ids/{id}` (and `/schemas/guids/`,
//!   and subject versions for references), basic or bearer authentication, TLS by rustls, one
//!   deadline per lookup, a bounded cache in which concurrent lookups of one schema are one
//!   request. Configured with Confluent's property names ([`PROPERTIES`]); a bad one is a
//!   [`ConfigError`] naming it, which kcon's `Error` converts from.
//! - Deserializers over kcon-core's [`Deserializer`] trait, for kcon's `Processor` or
//!   `kcon::deserialize::decode`: [`AvroDeserializer`] (a serde type, with a reader schema for
//!   schema evolution), [`AvroValueDeserializer`], [`AvroJsonDeserializer`],
//!   [`ProtobufJsonDeserializer`], [`ProtobufDynamicDeserializer`], [`ProtobufDeserializer`] (a
//!   prost type), [`JsonSchemaDeserializer`].
//! - The framings ([`kcon_codec::schema_id`]): the schema id in front of the payload or in the
//!   `__key_schema_id` / `__value_schema_id` header, keys and values each their own.
//!
//! A failure is a [`DeserializeError`] that says whose fault it is: a registry that cannot be
//! reached, answers 5xx or garbage, refuses the credentials or does not answer within
//! `schema.registry.request.timeout.ms` makes a *retriable* error (kind `schema-registry`: the
//! processor retries the record with backoff); an unknown schema id, a framing that is not
//! Confluent's (`schema-framing`), or a payload that does not read with its schema (`avro`,
//! `protobuf`, `json-schema`) a *permanent* one (the record is dead-lettered or skipped per
//! `errors.tolerance`).
//!
//! The crate depends on kcon-core (the trait, the [`Record`](kcon_core::Record)) and kcon-pool
//! (its rustls client configuration), not on the consumer: a consumer without Schema Registry
//! decoding builds no HTTP client, Avro or Protobuf crate.
//!
//! ```no_run
//! use kcon::deserialize::Nullable;
//! use kcon::{Consumer, Processor};
//! use kcon_schema_registry::{AvroDeserializer, SchemaRegistry};
//!
//! #[derive(serde::Deserialize)]
//! struct Payment { id: String, amount: f64 }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), kcon::Error> {
//! let registry = SchemaRegistry::builder()
//!     .set("schema.registry.url", "http://localhost:8081")
//!     .build()?;
//! let mut consumer = Consumer::builder()
//!     .bootstrap_servers("localhost:9092")
//!     .group_id("payments")
//!     .set("auto.offset.reset", "earliest") // a new group reads what is already there
//!     .build()?;
//! consumer.subscribe(["payments"])?;
//! let mut processor = Processor::builder(consumer)
//!     .value(Nullable(AvroDeserializer::<Payment>::new(registry)))
//!     .set("errors.tolerance", "all")
//!     .set("errors.deadletterqueue.topic.name", "payments.dlq")
//!     .build()?;
//! processor
//!     .run(async move |record| {
//!         if let Some(payment) = &record.value {
//!             println!("{} paid {}", payment.id, payment.amount);
//!         }
//!         Ok(())
//!     })
//!     .await
//! # }
//! ```

/// Changes a deserializer's `core`: in place while the deserializer holds the only reference,
/// else in `unshared` of it (its settings, an empty cache), so that configuring after a clone
/// leaves the clones as they were.
fn configure<C>(
    core: &mut std::sync::Arc<C>,
    unshared: impl FnOnce(&C) -> C,
    change: impl FnOnce(&mut C),
) {
    match std::sync::Arc::get_mut(core) {
        Some(c) => change(c),
        None => {
            let mut own = unshared(core);
            change(&mut own);
            *core = std::sync::Arc::new(own);
        }
    }
}

/// A public deserializer type over its module's `Core` (one per deserializer, shared by its
/// clones, configured by the module's `builder_methods!` through [`configure`]): the struct,
/// `new`, `Clone` and `Debug`. A type parameter is the application's output type.
macro_rules! deserializer_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            core: Arc<Core>,
        }

        impl $name {
            /// A deserializer looking writer schemas up in `registry`.
            pub fn new(registry: SchemaRegistry) -> Self {
                $name {
                    core: Arc::new(Core::new(registry)),
                }
            }

            builder_methods!();
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
    ($(#[$doc:meta])* $name:ident<$t:ident>) => {
        $(#[$doc])*
        pub struct $name<$t> {
            core: Arc<Core>,
            _type: PhantomData<fn() -> $t>,
        }

        impl<$t> $name<$t> {
            /// A deserializer looking writer schemas up in `registry`.
            pub fn new(registry: SchemaRegistry) -> Self {
                $name {
                    core: Arc::new(Core::new(registry)),
                    _type: PhantomData,
                }
            }

            builder_methods!();
        }

        impl<$t> Clone for $name<$t> {
            fn clone(&self) -> Self {
                $name {
                    core: self.core.clone(),
                    _type: PhantomData,
                }
            }
        }

        impl<$t> std::fmt::Debug for $name<$t> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}<{}>", stringify!($name), std::any::type_name::<$t>())
            }
        }
    };
}

mod avro;
mod cache;
mod client;
mod config;
mod framing;
mod http;
mod json_schema;
mod protobuf;

pub use avro::{
    AvroDeserializer, AvroJsonDeserializer, AvroValueDeserializer, MAX_DEPTH, MAX_VALUES_PER_BYTE,
    ReaderSchemaError, to_json as avro_to_json,
};
pub use client::{
    RegisteredSchema, RegistryError, RegistryErrorKind, SchemaReference, SchemaRegistry,
    SchemaRegistryBuilder, SchemaType,
};
pub use config::{PROPERTIES, RegistrySetting, SCHEMA_REGISTRY};
pub use framing::SubjectLookup;
pub use http::MAX_ANSWER_BYTES;
pub use json_schema::JsonSchemaDeserializer;
pub use kcon_codec::schema_id::{
    Framed, FramingError, IdSource, KEY_SCHEMA_ID_HEADER, SchemaRef, VALUE_SCHEMA_ID_HEADER,
};
/// The trait every deserializer here implements, and its error: kcon-core's, which kcon
/// re-exports as `kcon::deserialize`.
pub use kcon_core::deserialize::{Context, DeserializeError, Deserializer, Field};
/// Why a registry client could not be built: the property at fault and what it allows.
pub use kcon_core::{Cause, ConfigError, KconError, Outcome};
pub use protobuf::{ProtobufDeserializer, ProtobufDynamicDeserializer, ProtobufJsonDeserializer};
/// The Avro and Protobuf crates the deserializers' outputs are types of.
pub use {apache_avro, prost, prost_reflect};
