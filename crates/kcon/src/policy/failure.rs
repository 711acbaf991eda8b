//! How a record failed: what a handler returns ([`Failure`]) and what the policies, hooks and
//! dead-letter headers know of it ([`FailureInfo`]).

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use crate::deserialize::{DeserializeFailure, Field};

/// A handler's failure to process a record: retriable (the record is tried again after a
/// pause, only its partition waiting) or permanent (the record is a poison pill: skipped,
/// dead-lettered or stopped at, as `errors.tolerance` says).
///
/// ```
/// use kcon::{Failure, FailureExt};
///
/// fn charge(amount: &str) -> Result<u64, Failure> {
///     let cents: u64 = amount.parse().permanent()?; // bad data never parses
///     Ok(cents)
/// }
/// let f = charge("ten").unwrap_err();
/// assert!(!f.is_retriable());
/// assert_eq!(f.class(), "core::num::error::ParseIntError");
/// let timeout = Failure::retriable("payment service timed out").with_class("timeout");
/// assert!(timeout.is_retriable());
/// ```
pub struct Failure {
    retriable: bool,
    class: Cow<'static, str>,
    error: Box<dyn StdError + Send + Sync>,
}

impl Failure {
    /// A failure that may pass: the record is tried again. Its class is the error's type name
    /// unless [`with_class`](Failure::with_class) says otherwise.
    pub fn retriable<E: Into<Box<dyn StdError + Send + Sync>>>(error: E) -> Failure {
        Failure {
            retriable: true,
            class: Cow::Borrowed(std::any::type_name::<E>()),
            error: error.into(),
        }
    }

    /// A failure that never passes: the record is a poison pill.
    pub fn permanent<E: Into<Box<dyn StdError + Send + Sync>>>(error: E) -> Failure {
        Failure {
            retriable: false,
            ..Failure::retriable(error)
        }
    }

    /// The same failure under another class: the short name metrics, hooks and the
    /// dead-letter header `kcon.dlq.error.class` show.
    pub fn with_class(mut self, class: impl Into<Cow<'static, str>>) -> Failure {
        self.class = class.into();
        self
    }

    /// Whether the record is tried again.
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// What kind of failure, in a word or a type name.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    pub(crate) fn info(&self) -> FailureInfo {
        FailureInfo {
            stage: Stage::Handler,
            retriable: self.retriable,
            class: self.class.clone().into_owned(),
            message: chain(self.error.to_string(), self.error.source()),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("retriable", &self.retriable)
            .field("class", &self.class)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retriable {
            "retriable"
        } else {
            "permanent"
        };
        write!(f, "{kind} failure ({}): {}", self.class, self.error)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.error)
    }
}

/// `retriable()` and `permanent()` on any `Result` whose error converts to a boxed error:
/// the handler's way to say which kind a failure is, with `?`.
pub trait FailureExt<T> {
    /// The error as a [`Failure::retriable`].
    fn retriable(self) -> Result<T, Failure>;
    /// The error as a [`Failure::permanent`].
    fn permanent(self) -> Result<T, Failure>;
}

impl<T, E: Into<Box<dyn StdError + Send + Sync>>> FailureExt<T> for Result<T, E> {
    fn retriable(self) -> Result<T, Failure> {
        self.map_err(Failure::retriable)
    }

    fn permanent(self) -> Result<T, Failure> {
        self.map_err(Failure::permanent)
    }
}

/// Where a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Its key did not deserialize.
    DeserializeKey,
    /// Its value did not deserialize.
    DeserializeValue,
    /// The handler failed.
    Handler,
}

impl Stage {
    /// `deserialize.key`, `deserialize.value` or `handler`: the dead-letter header
    /// `kcon.dlq.stage`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::DeserializeKey => "deserialize.key",
            Stage::DeserializeValue => "deserialize.value",
            Stage::Handler => "handler",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the policies know of a failure: where, whether it may pass, its class and its
/// message (the error and its sources).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureInfo {
    /// Where it failed.
    pub stage: Stage,
    /// Whether trying again can help.
    pub retriable: bool,
    /// What kind of failure: a deserializer's kind (`"json"`, `"utf8"`, ...) or a handler's
    /// class.
    pub class: String,
    /// The error, then each of its sources, `: `-separated.
    pub message: String,
}

impl From<&DeserializeFailure> for FailureInfo {
    fn from(f: &DeserializeFailure) -> FailureInfo {
        FailureInfo {
            stage: match f.field {
                Field::Key => Stage::DeserializeKey,
                Field::Value => Stage::DeserializeValue,
            },
            retriable: f.error.is_retriable(),
            class: f.error.kind().to_owned(),
            // The class is the error's kind already: the message leaves it out.
            message: chain(f.error.message().to_owned(), f.error.source()),
        }
    }
}

impl fmt::Display for FailureInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({}): {}",
            self.stage, self.class, self.message
        )
    }
}

/// `message` and the texts of `source` and its sources, each once: a source whose text the
/// message already holds (a wrapper that prints its cause) is not repeated.
fn chain(mut message: String, mut source: Option<&(dyn StdError + 'static)>) -> String {
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deserialize::DeserializeError;

    #[test]
    fn a_failure_keeps_its_kind_class_and_message_chain() {
        let parse = "x".parse::<u8>().unwrap_err();
        let f = Failure::permanent(parse);
        assert_eq!(f.class(), "core::num::error::ParseIntError");
        let info = f.info();
        assert_eq!(info.stage, Stage::Handler);
        assert!(!info.retriable);
        assert_eq!(info.message, "invalid digit found in string");
        let f = Failure::retriable(format!("status {}", 503)).with_class("http");
        assert_eq!((f.is_retriable(), f.class()), (true, "http"));
        assert_eq!(f.to_string(), "retriable failure (http): status 503");
    }

    #[test]
    fn a_deserialize_failure_names_its_field_and_sources_once() {
        let bytes = vec![0xff];
        let utf8 = std::str::from_utf8(&bytes).unwrap_err();
        let failure = DeserializeFailure {
            record: crate::record::Record::new("t", 0, 1, None, None),
            field: Field::Key,
            error: DeserializeError::permanent("utf8", "the key is not UTF-8").with_source(utf8),
        };
        let info = FailureInfo::from(&failure);
        assert_eq!(
            (info.stage, info.class.as_str()),
            (Stage::DeserializeKey, "utf8")
        );
        // The class is not repeated in the message (a dead letter carries both).
        assert_eq!(
            info.message,
            "the key is not UTF-8: invalid utf-8 sequence of 1 bytes from index 0"
        );
    }
}
