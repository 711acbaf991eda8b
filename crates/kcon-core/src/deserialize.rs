//! What reads a record's key or value: the [`Deserializer`] trait, the [`Context`] of the field
//! it reads, and its [`DeserializeError`], which says whether trying again can help.
//!
//! They live here, beside [`Record`], so that deserializers can be written without the
//! consumer: kcon's own (`kcon::deserialize`, which re-exports these and adds `decode` and the
//! ready deserializers) and the Schema Registry's (`kcon-schema-registry`) are both over this
//! trait.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use bytes::Bytes;

use crate::record::Record;

/// Reads the key or the value of a record into `Output`.
///
/// `deserialize` returns a future so that a deserializer may look something up (a schema by
/// its id); one that needs nothing of the kind returns a ready one
/// (`std::future::ready(..)`, or an `async` block that never awaits). The future must be
/// `Send`, so a processor holding the deserializer (kcon's `Processor`) can run on any tokio
/// task.
///
/// ```
/// use std::future::{ready, Future};
/// use bytes::Bytes;
/// use kcon_core::deserialize::{Context, DeserializeError, Deserializer};
///
/// /// A big-endian u64 counter.
/// struct Counter;
///
/// impl Deserializer for Counter {
///     type Output = u64;
///
///     fn deserialize<'a>(
///         &'a self,
///         data: Option<&'a Bytes>,
///         _context: Context<'a>,
///     ) -> impl Future<Output = Result<u64, DeserializeError>> + Send + 'a {
///         let read = data
///             .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
///             .map(u64::from_be_bytes)
///             .ok_or_else(|| DeserializeError::permanent("counter", "not 8 bytes"));
///         ready(read)
///     }
/// }
/// ```
pub trait Deserializer: Send + Sync {
    /// What a field becomes.
    type Output: Send;

    /// Reads `data` (`None` for a null field) of the record `context` describes.
    fn deserialize<'a>(
        &'a self,
        data: Option<&'a Bytes>,
        context: Context<'a>,
    ) -> impl Future<Output = Result<Self::Output, DeserializeError>> + Send + 'a;
}

/// Which field of a record is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl Field {
    /// `"key"` or `"value"`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Key => "key",
            Field::Value => "value",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the bytes a [`Deserializer`] reads come from: the field, its record's topic,
/// partition and offset, and the record's headers (a schema id may travel in one).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Context<'a> {
    /// The field read.
    pub field: Field,
    /// The record's topic.
    pub topic: &'a str,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's headers, in wire order, duplicates kept.
    pub headers: &'a [(Bytes, Option<Bytes>)],
}

impl<'a> Context<'a> {
    /// The context of `field` of `record`.
    pub fn of(record: &'a Record, field: Field) -> Context<'a> {
        Context {
            field,
            topic: &record.topic,
            partition: record.partition,
            offset: record.offset,
            headers: &record.headers,
        }
    }

    /// The value of the last header named `key`, if any (`Some(None)` for a null value).
    pub fn header(&self, key: &str) -> Option<Option<&'a Bytes>> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v.as_ref())
    }
}

/// Why a field could not be read, and whether trying again can help.
///
/// `kind` is a short, stable name of what failed (`"utf8"`, `"json"`, `"null"`,
/// `"schema-registry"`, ...): the error's class in metrics and in a dead-lettered record's
/// headers. The message says the rest.
#[derive(Debug)]
pub struct DeserializeError {
    kind: Cow<'static, str>,
    retriable: bool,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl DeserializeError {
    /// The field will never read: the record is a poison pill.
    pub fn permanent(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        DeserializeError {
            kind: kind.into(),
            retriable: false,
            message: message.into(),
            source: None,
        }
    }

    /// The field could not be read now, and may be later (a registry that is down).
    pub fn retriable(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        DeserializeError {
            retriable: true,
            ..DeserializeError::permanent(kind, message)
        }
    }

    /// The permanent `"null"` error of a deserializer that reads no null `field`: it names
    /// the wrapper that accepts one, since a null key (a record produced without one) or value
    /// (a tombstone) is what a newcomer's deserializer most often meets unready.
    pub fn null(field: Field) -> Self {
        DeserializeError::permanent(
            "null",
            format!(
                "the {field} is null; wrap the deserializer in `Nullable(...)` to accept null {field}s"
            ),
        )
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What failed, in a word.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whether reading the same bytes again can succeed.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DeserializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl StdError for DeserializeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
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

    #[test]
    fn the_context_names_the_field_and_finds_the_last_header() {
        let r = record(None, None);
        let c = Context::of(&r, Field::Value);
        assert_eq!((c.topic, c.partition, c.offset), ("t", 3, 42));
        assert_eq!(c.header("h"), Some(Some(&Bytes::from("2"))));
        assert_eq!(c.header("x"), None);
    }
}
