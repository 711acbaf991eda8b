//! The one error type of kcon-codec.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while encoding or decoding.
///
/// Every variant is caused by the bytes or by the caller, never by IO: the codec does none.
/// Retrying the same bytes gives the same error; a connection that produced a decoding error
/// should be closed, because the stream it carries can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A frame's size prefix is negative, or larger than the configured maximum
    /// (`receive.message.max.bytes`). Nothing was allocated for it.
    FrameSize {
        /// The size the prefix announced.
        size: i64,
        /// The largest size accepted.
        max: usize,
    },
    /// A response (or request) did not decode: it ended early, held a value no valid message
    /// can hold, or had bytes left over (a request; a response only when the guard and the
    /// decoder disagree on where it ends).
    Decode(Box<DecodeError>),
    /// kcon does not speak this API at this version, so it will neither encode nor decode it.
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// The version asked for.
        version: i16,
    },
    /// kcon and the broker have no version of this API in common.
    NoCommonVersion {
        /// The API key.
        api_key: i16,
        /// The versions kcon speaks, `(min, max)`.
        ours: (i16, i16),
        /// The versions the broker offers, `(min, max)`; `None` when it does not offer the API.
        theirs: Option<(i16, i16)>,
    },
    /// A request could not be encoded at this version (a field the version cannot carry, a
    /// string too long for its length prefix, ...).
    Encode {
        /// The API key.
        api_key: i16,
        /// The version.
        version: i16,
        /// What was wrong, as the encoder put it.
        reason: String,
    },
    /// A record batch is corrupt. Iteration stops here: nothing after it is trusted.
    CorruptBatch(Box<CorruptBatch>),
}

impl Error {
    /// The API key the error is about, where it is about one message.
    pub fn api_key(&self) -> Option<i16> {
        match self {
            Error::Decode(d) => Some(d.api_key),
            Error::UnsupportedVersion { api_key, .. }
            | Error::NoCommonVersion { api_key, .. }
            | Error::Encode { api_key, .. } => Some(*api_key),
            Error::FrameSize { .. } | Error::CorruptBatch(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::FrameSize { size, max } => write!(
                f,
                "frame size {size} is out of range (0..={max}, receive.message.max.bytes)"
            ),
            Error::Decode(d) => d.fmt(f),
            Error::UnsupportedVersion { api_key, version } => write!(
                f,
                "{} v{version} is not a version kcon speaks",
                api_name(*api_key)
            ),
            Error::NoCommonVersion {
                api_key,
                ours,
                theirs: Some(theirs),
            } if ours.1 < ours.0 => write!(
                f,
                "no common version of {}: capped at v{} (api.version.max), below the v{} both \
                 sides need at least; the broker offers v{}-v{}",
                api_name(*api_key),
                ours.1,
                ours.0.max(theirs.0),
                theirs.0,
                theirs.1
            ),
            Error::NoCommonVersion {
                api_key,
                ours,
                theirs: Some(theirs),
            } => write!(
                f,
                "no common version of {}: kcon speaks v{}-v{}, the broker v{}-v{}",
                api_name(*api_key),
                ours.0,
                ours.1,
                theirs.0,
                theirs.1
            ),
            Error::NoCommonVersion {
                api_key,
                theirs: None,
                ..
            } => write!(f, "the broker does not offer {}", api_name(*api_key)),
            Error::Encode {
                api_key,
                version,
                reason,
            } => write!(
                f,
                "cannot encode {} v{version}: {reason}",
                api_name(*api_key)
            ),
            Error::CorruptBatch(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::Decode(Box::new(e))
    }
}

impl From<CorruptBatch> for Error {
    fn from(e: CorruptBatch) -> Self {
        Error::CorruptBatch(Box::new(e))
    }
}

/// Which part of a message a [`DecodeError`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The request header.
    RequestHeader,
    /// The response header.
    ResponseHeader,
    /// The request body.
    RequestBody,
    /// The response body.
    ResponseBody,
}

/// A message that did not decode, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeError {
    /// The API key of the message.
    pub api_key: i16,
    /// The version it was decoded at.
    pub version: i16,
    /// The part of the message.
    pub part: Part,
    /// The field, as a path of schema names (`responses.partitions.records`), where known.
    pub field: Option<&'static str>,
    /// Byte offset within the part where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub reason: DecodeReason,
}

impl DecodeError {
    /// A decode error with no field named.
    pub fn new(
        api_key: i16,
        version: i16,
        part: Part,
        offset: usize,
        reason: DecodeReason,
    ) -> Self {
        DecodeError {
            api_key,
            version,
            part,
            field: None,
            offset,
            reason,
        }
    }

    /// The same error, naming the field.
    pub fn with_field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = match self.part {
            Part::RequestHeader => "request header",
            Part::ResponseHeader => "response header",
            Part::RequestBody => "request",
            Part::ResponseBody => "response",
        };
        write!(
            f,
            "malformed {} v{} {part} at byte {}",
            api_name(self.api_key),
            self.version,
            self.offset
        )?;
        if let Some(field) = self.field {
            write!(f, " (field {field})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What was wrong with a message that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeReason {
    /// The message ended before a field was complete.
    Truncated {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// An array announced more elements than the bytes left could hold.
    CountTooLarge {
        /// The count from the wire.
        count: u64,
        /// Bytes left after the count.
        remaining: usize,
    },
    /// A length or count is negative (other than the -1 that means null) or overflows.
    InvalidLength(i64),
    /// An unsigned varint ran past five bytes.
    InvalidVarint,
    /// A string is not UTF-8.
    InvalidUtf8,
    /// The message decoded, but bytes were left over. Only for requests, and for a response
    /// whose decoder stopped before the end the guard found: bytes after a response's end are
    /// not an error (see `message::decode_response`).
    TrailingBytes {
        /// How many.
        remaining: usize,
    },
    /// A tagged field that this version does not allow.
    InvalidTag(u32),
    /// The decoder of the message types refused the bytes; its message.
    Other(String),
}

impl fmt::Display for DecodeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeReason::Truncated { needed, available } => {
                write!(f, "ends early: needs {needed} bytes, {available} left")
            }
            DecodeReason::CountTooLarge { count, remaining } => write!(
                f,
                "array count {count} cannot fit in the {remaining} bytes left"
            ),
            DecodeReason::InvalidLength(n) => write!(f, "invalid length {n}"),
            DecodeReason::InvalidVarint => f.write_str("varint longer than 5 bytes"),
            DecodeReason::InvalidUtf8 => f.write_str("string is not UTF-8"),
            DecodeReason::TrailingBytes { remaining } => {
                write!(f, "{remaining} bytes left over after the message")
            }
            DecodeReason::InvalidTag(tag) => write!(f, "tagged field {tag} not valid here"),
            DecodeReason::Other(s) => f.write_str(s),
        }
    }
}

/// A corrupt record batch (or legacy message set entry): where it is and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptBatch {
    /// The batch's base offset (the wrapper message's offset for magic 0 and 1), when the
    /// batch header could be read that far.
    pub base_offset: Option<i64>,
    /// Byte position of the batch within the records buffer it came from.
    pub position: usize,
    /// What was wrong.
    pub kind: BatchErrorKind,
}

impl fmt::Display for CorruptBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base_offset {
            Some(o) => write!(f, "corrupt record batch at offset {o}")?,
            None => f.write_str("corrupt record batch")?,
        }
        write!(f, " (byte {}): {}", self.position, self.kind)
    }
}

/// What was wrong with a corrupt record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchErrorKind {
    /// The magic byte is not 0, 1 or 2.
    UnknownMagic(i8),
    /// The stored CRC does not match the bytes.
    CrcMismatch {
        /// CRC stored in the batch.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The compression codec id is unknown.
    UnknownCompression(u8),
    /// A length field is out of range.
    InvalidLength {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// The records inside the batch run past its end, or stop short of it.
    RecordsOverrun {
        /// What ran over.
        field: &'static str,
    },
    /// The record count does not match the records present.
    RecordCount {
        /// The count in the header.
        declared: i32,
        /// Records found.
        found: i64,
    },
    /// A varint is malformed.
    InvalidVarint,
    /// Decompression failed.
    Decompression {
        /// Codec name.
        codec: &'static str,
        /// The decompressor's message.
        reason: String,
    },
    /// Decompressed data would exceed the configured cap.
    DecompressedTooLarge {
        /// Codec name.
        codec: &'static str,
        /// The cap in bytes.
        cap: usize,
    },
    /// A control record that cannot be read.
    InvalidControlRecord,
    /// The declared records were all read, but bytes of the batch are left over.
    TrailingBytes {
        /// Bytes left after the last record.
        remaining: usize,
    },
    /// A message inside a compressed magic 0/1 wrapper is itself compressed: only one level
    /// of nesting is legal.
    NestedCompression,
    /// A message inside a compressed magic 0/1 wrapper has a different magic than the wrapper.
    InnerMagicMismatch {
        /// The wrapper's magic.
        wrapper: i8,
        /// The inner message's magic.
        inner: i8,
    },
    /// Anything else, described.
    Other(&'static str),
}

impl fmt::Display for BatchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchErrorKind::UnknownMagic(m) => write!(f, "unknown magic byte {m}"),
            BatchErrorKind::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            BatchErrorKind::UnknownCompression(c) => write!(f, "unknown compression codec {c}"),
            BatchErrorKind::InvalidLength { field, value } => {
                write!(f, "invalid {field} {value}")
            }
            BatchErrorKind::RecordsOverrun { field } => {
                write!(f, "{field} runs past the end of the batch")
            }
            BatchErrorKind::RecordCount { declared, found } => {
                write!(f, "header says {declared} records, the batch holds {found}")
            }
            BatchErrorKind::InvalidVarint => f.write_str("malformed varint"),
            BatchErrorKind::Decompression { codec, reason } => {
                write!(f, "{codec} decompression failed: {reason}")
            }
            BatchErrorKind::DecompressedTooLarge { codec, cap } => write!(
                f,
                "{codec} data decompresses to more than the {cap}-byte cap"
            ),
            BatchErrorKind::InvalidControlRecord => f.write_str("unreadable control record"),
            BatchErrorKind::TrailingBytes { remaining } => {
                write!(f, "{remaining} bytes left after the declared records")
            }
            BatchErrorKind::NestedCompression => {
                f.write_str("compressed message inside a compressed wrapper")
            }
            BatchErrorKind::InnerMagicMismatch { wrapper, inner } => write!(
                f,
                "inner message has magic {inner}, its wrapper magic {wrapper}"
            ),
            BatchErrorKind::Other(s) => f.write_str(s),
        }
    }
}

/// The protocol name of an API key (`Fetch`, `JoinGroup`, ...), or `ApiKey(N)` for one that
/// `kafka-protocol` does not know.
pub fn api_name(api_key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api_key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("ApiKey({api_key})"),
    }
}
