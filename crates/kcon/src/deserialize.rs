//! Deserializers: a record's key and value bytes into the application's types.
//!
//! A [`Deserializer`] reads one field (the key or the value) of one record. It may await (a
//! Schema Registry lookup, say), and its failure is a [`DeserializeError`] that says whether
//! trying again can help: a registry that is down is retriable, bytes that are not what the
//! topic should hold are not. [`decode`] applies a key and a value deserializer to a record;
//! a failure is a [`DeserializeFailure`] that carries the record, so nothing is lost and the
//! record can be dead-lettered byte for byte (see [`Processor`](crate::Processor)).
//!
//! The trait, [`Context`], [`Field`] and [`DeserializeError`] are kcon-core's (beside the
//! [`Record`]), re-exported here: a deserializer can be written without the
//! consumer, as the Schema Registry crate (`kcon-schema-registry`) does.
//!
//! Ready ones: [`BytesDeserializer`] (the bytes as they are, null kept), [`StringDeserializer`]
//! (UTF-8 text), [`JsonDeserializer`] (serde JSON, cargo feature `json`, on by default) and
//! [`Nullable`] (a null field as `None` around any other).
//!
//! ```
//! use kcon::deserialize::{decode, Nullable, StringDeserializer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let record = kcon::Record::new("orders", 0, 7, None, Some("paid".into()));
//! let decoded = decode(record, &Nullable(StringDeserializer), &StringDeserializer)
//!     .await
//!     .unwrap();
//! assert_eq!(decoded.key, None);
//! assert_eq!(decoded.value, "paid");
//! # }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use bytes::Bytes;
pub use kcon_core::deserialize::{Context, DeserializeError, Deserializer, Field};

use crate::record::Record;

/// A record whose key or value did not deserialize: the record itself, untouched, the field
/// and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeserializeFailure {
    /// The record, as it was fetched.
    pub record: Record,
    /// The field that failed (the key is read first).
    pub field: Field,
    /// Why.
    pub error: DeserializeError,
}

impl fmt::Display for DeserializeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} of {}-{}@{} does not deserialize: {}",
            self.field, self.record.topic, self.record.partition, self.record.offset, self.error
        )
    }
}

impl StdError for DeserializeFailure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}

/// A record with its key and value deserialized. The record keeps the original bytes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Decoded<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The record: topic, partition, offset, timestamp, headers and the original bytes.
    pub record: Record,
    /// Which attempt at processing this is, from 1 (a [`Processor`](crate::Processor)
    /// retrying a record hands it out again with the next number).
    pub attempt: u32,
}

/// Deserializes `record`'s key with `key` and then its value with `value`.
///
/// ```
/// use kcon::deserialize::{decode, Field, StringDeserializer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bad = kcon::Record::new("orders", 0, 7, Some("k".into()), Some(vec![0xff].into()));
/// let failure = decode(bad, &StringDeserializer, &StringDeserializer).await.unwrap_err();
/// assert_eq!(failure.field, Field::Value);
/// assert_eq!(failure.error.kind(), "utf8");
/// assert_eq!(failure.record.offset, 7);
/// # }
/// ```
///
/// # Cancel safety
///
/// Cancel-safe as far as `key` and `value` are (kcon's deserializers only read, a Schema Registry
/// lookup included); the record, moved in, is dropped with the future, so decode a clone to be able
/// to decode it again.
pub async fn decode<K, V>(
    record: Record,
    key: &K,
    value: &V,
) -> Result<Decoded<K::Output, V::Output>, DeserializeFailure>
where
    K: Deserializer,
    V: Deserializer,
{
    let k = key
        .deserialize(record.key.as_ref(), Context::of(&record, Field::Key))
        .await;
    let k = match k {
        Ok(k) => k,
        Err(error) => return Err(failure(record, Field::Key, error)),
    };
    let v = value
        .deserialize(record.value.as_ref(), Context::of(&record, Field::Value))
        .await;
    match v {
        Ok(v) => Ok(Decoded {
            key: k,
            value: v,
            record,
            attempt: 1,
        }),
        Err(error) => Err(failure(record, Field::Value, error)),
    }
}

fn failure(record: Record, field: Field, error: DeserializeError) -> DeserializeFailure {
    DeserializeFailure {
        record,
        field,
        error,
    }
}

/// The bytes as they are, `None` for a null field: no copy (a `Bytes` shares the fetched
/// buffer).
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesDeserializer;

impl Deserializer for BytesDeserializer {
    type Output = Option<Bytes>;

    fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        _context: Context<'a>,
    ) -> impl Future<Output = Result<Option<Bytes>, DeserializeError>> + Send + 'a {
        std::future::ready(Ok(data.cloned()))
    }
}

/// UTF-8 text. A null field fails (`"null"`); wrap it in [`Nullable`] to read null as `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringDeserializer;

impl Deserializer for StringDeserializer {
    type Output = String;

    fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> impl Future<Output = Result<String, DeserializeError>> + Send + 'a {
        std::future::ready(present(data, context).and_then(|b| {
            std::str::from_utf8(b).map(str::to_owned).map_err(|e| {
                DeserializeError::permanent("utf8", format!("the {} is not UTF-8", context.field))
                    .with_source(e)
            })
        }))
    }
}

/// `Some` of what `D` reads, or `None` for a null field (a tombstone's value, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<D>(pub D);

impl<D: Deserializer> Deserializer for Nullable<D> {
    type Output = Option<D::Output>;

    async fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> Result<Option<D::Output>, DeserializeError> {
        match data {
            None => Ok(None),
            Some(_) => self.0.deserialize(data, context).await.map(Some),
        }
    }
}

/// The field's bytes, or the error for a null one.
fn present<'a>(
    data: Option<&'a Bytes>,
    context: Context<'_>,
) -> Result<&'a Bytes, DeserializeError> {
    data.ok_or_else(|| DeserializeError::null(context.field))
}

#[cfg(feature = "json")]
pub use json::JsonDeserializer;

#[cfg(feature = "json")]
mod json {
    use std::future::Future;
    use std::marker::PhantomData;

    use bytes::Bytes;
    use serde::de::DeserializeOwned;

    use super::{Context, DeserializeError, Deserializer};

    /// JSON into any `serde` type. A null field reads as JSON `null`, so
    /// `JsonDeserializer<Option<T>>` takes tombstones as `None` and `JsonDeserializer<T>` fails
    /// on them (`"json"`), as on any bytes that are not a `T` in JSON.
    ///
    /// ```
    /// use kcon::deserialize::{decode, BytesDeserializer, JsonDeserializer};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Order { id: u32 }
    ///
    /// let r = kcon::Record::new("orders", 0, 1, None, Some(r#"{"id":7}"#.into()));
    /// let d = decode(r, &BytesDeserializer, &JsonDeserializer::<Order>::new()).await.unwrap();
    /// assert_eq!(d.value, Order { id: 7 });
    /// # }
    /// ```
    pub struct JsonDeserializer<T> {
        // fn() -> T: the deserializer holds no T, so it is Send and Sync whatever T is.
        _type: PhantomData<fn() -> T>,
    }

    impl<T> JsonDeserializer<T> {
        /// A deserializer of `T`.
        pub fn new() -> Self {
            JsonDeserializer { _type: PhantomData }
        }
    }

    impl<T> Default for JsonDeserializer<T> {
        fn default() -> Self {
            JsonDeserializer::new()
        }
    }

    impl<T> Clone for JsonDeserializer<T> {
        fn clone(&self) -> Self {
            JsonDeserializer::new()
        }
    }

    impl<T> std::fmt::Debug for JsonDeserializer<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "JsonDeserializer<{}>", std::any::type_name::<T>())
        }
    }

    impl<T: DeserializeOwned + Send> Deserializer for JsonDeserializer<T> {
        type Output = T;

        fn deserialize<'a>(
            &'a self,
            data: Option<&'a Bytes>,
            context: Context<'a>,
        ) -> impl Future<Output = Result<T, DeserializeError>> + Send + 'a {
            let bytes: &[u8] = data.map_or(b"null", |b| &b[..]);
            std::future::ready(serde_json::from_slice(bytes).map_err(|e| {
                DeserializeError::permanent(
                    "json",
                    format!("the {} is not the JSON expected: {e}", context.field),
                )
                .with_source(e)
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&'static [u8]>, value: Option<&'static [u8]>) -> Record {
        Record::new(
            "t",
            3,
            42,
            key.map(Bytes::from_static),
            value.map(Bytes::from_static),
        )
        .with_headers(vec![
            ("h".into(), Some("1".into())),
            ("h".into(), Some("2".into())),
        ])
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn bytes_pass_through_sharing_the_buffer_and_null_stays_null() {
        let r = record(None, Some(b"v"));
        let d = run(decode(r, &BytesDeserializer, &BytesDeserializer)).unwrap();
        assert_eq!(d.key, None);
        assert_eq!(d.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(d.value.unwrap().as_ptr(), d.record.value.unwrap().as_ptr());
    }

    #[test]
    fn strings_refuse_bad_utf8_and_null_permanently() {
        let f = run(decode(
            record(Some(b"k"), Some(b"\xc3")),
            &StringDeserializer,
            &StringDeserializer,
        ))
        .unwrap_err();
        assert_eq!((f.field, f.error.kind()), (Field::Value, "utf8"));
        assert!(!f.error.is_retriable());
        assert!(f.error.source().is_some());
        assert_eq!(f.record.offset, 42);
        let f = run(decode(
            record(None, Some(b"v")),
            &StringDeserializer,
            &StringDeserializer,
        ))
        .unwrap_err();
        assert_eq!((f.field, f.error.kind()), (Field::Key, "null"));
        assert_eq!(
            f.to_string(),
            "the key of t-3@42 does not deserialize: null: the key is null; wrap the \
             deserializer in `Nullable(...)` to accept null keys"
        );
    }

    #[test]
    fn nullable_reads_null_as_none_and_passes_failures_on() {
        let d = run(decode(
            record(None, Some(b"v")),
            &Nullable(StringDeserializer),
            &StringDeserializer,
        ))
        .unwrap();
        assert_eq!((d.key, d.value.as_str()), (None, "v"));
        let f = run(decode(
            record(Some(b"\xff"), None),
            &Nullable(StringDeserializer),
            &BytesDeserializer,
        ))
        .unwrap_err();
        assert_eq!(f.error.kind(), "utf8");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_reads_types_and_treats_null_as_json_null() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Order {
            id: u32,
        }
        let ok = run(decode(
            record(None, Some(br#"{"id":1}"#)),
            &BytesDeserializer,
            &JsonDeserializer::<Order>::new(),
        ))
        .unwrap();
        assert_eq!(ok.value, Order { id: 1 });
        let tombstone = run(decode(
            record(None, None),
            &BytesDeserializer,
            &JsonDeserializer::<Option<Order>>::new(),
        ))
        .unwrap();
        assert_eq!(tombstone.value, None);
        for bad in [None, Some(&br#"{"id":"x"}"#[..]), Some(&b"{"[..])] {
            let f = run(decode(
                record(None, bad),
                &BytesDeserializer,
                &JsonDeserializer::<Order>::new(),
            ))
            .unwrap_err();
            assert_eq!((f.field, f.error.kind()), (Field::Value, "json"), "{bad:?}");
            assert!(!f.error.is_retriable());
        }
    }
}
