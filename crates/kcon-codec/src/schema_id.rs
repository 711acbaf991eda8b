//! Confluent's Schema Registry framings: where a record's key or value says which registered
//! schema wrote it.
//!
//! Two places, read the way Confluent's serializers write them (the Java class
//! `io.confluent.kafka.serializers.schema.id.SchemaId` and its `DualSchemaIdDeserializer`):
//! - **In front of the payload**: a magic byte, then the schema's identity, then (Protobuf only)
//!   the message indexes, then the serialized data. Magic 0 is followed by the schema id, a
//!   4-byte big-endian integer; magic 1 by the schema's 16-byte GUID.
//! - **In a record header**, `__key_schema_id` or `__value_schema_id`: the same magic, identity
//!   and (Protobuf) message indexes as the header's value, and then the field is the serialized
//!   data alone. Newer serializers write the GUID form there. The last header of that name
//!   counts (Java's `Headers.lastHeader`); one with a null value is as if absent.
//!
//! Protobuf's message indexes say which message of the schema's file wrote the data: a path
//! of indexes, the first into the file's top-level messages, each next one into the nested
//! messages of the one before. They are a count and then the indexes, each a zigzag varint
//! (Kafka's `ByteUtils.writeVarint`); the most common path, `[0]` (the file's first message),
//! is written as a single zero count.
//!
//! Everything here is a pure function over bytes, for hostile bytes too: no panic, and a
//! count read from the wire never reserves more than the bytes left could hold.

use std::fmt;

use crate::wire::{Reader, WireError};

/// The record-header name of a key's schema identity.
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";
/// The record-header name of a value's schema identity.
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
/// The magic byte in front of a 4-byte schema id.
pub const MAGIC_ID: u8 = 0;
/// The magic byte in front of a 16-byte schema GUID.
pub const MAGIC_GUID: u8 = 1;

/// Which registered schema wrote a key or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaRef {
    /// A schema id (`GET /schemas/ids/{id}`).
    Id(u32),
    /// A schema GUID (`GET /schemas/guids/{guid}`).
    Guid([u8; 16]),
}

impl fmt::Display for SchemaRef {
    /// An id as its number; a GUID in the 8-4-4-4-12 hexadecimal form the registry's REST API
    /// takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaRef::Id(id) => write!(f, "{id}"),
            SchemaRef::Guid(g) => {
                for (i, b) in g.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where the schema identity of a field was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// In front of the payload.
    Prefix,
    /// In the `__key_schema_id` or `__value_schema_id` header.
    Header,
}

/// A key or value taken apart: which schema wrote it, which message of the schema (Protobuf)
/// and the serialized data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The schema.
    pub schema: SchemaRef,
    /// Protobuf's message indexes (never empty: a zero count reads as `[0]`); `None` for the
    /// other formats.
    pub message_indexes: Option<Vec<u32>>,
    /// The serialized data.
    pub payload: &'a [u8],
    /// Where the identity was.
    pub source: IdSource,
}

/// Why a key or value is not in a Schema Registry framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// No bytes at all where the magic byte should be.
    Empty {
        /// Where.
        source: IdSource,
    },
    /// A magic byte that is neither 0 (schema id) nor 1 (GUID).
    UnknownMagic {
        /// Where.
        source: IdSource,
        /// The byte.
        magic: u8,
    },
    /// Fewer bytes than the part read needs.
    Truncated {
        /// Where.
        source: IdSource,
        /// The part: `"schema id"`, `"schema GUID"`, `"message index count"`,
        /// `"message index"`.
        what: &'static str,
        /// Bytes it needs at least.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },
    /// A varint longer than five bytes.
    InvalidVarint {
        /// Where.
        source: IdSource,
        /// The part.
        what: &'static str,
    },
    /// A message index count below zero, or more indexes than the bytes left could hold.
    BadIndexCount {
        /// Where.
        source: IdSource,
        /// The count read.
        count: i32,
        /// Bytes left after it.
        remaining: usize,
    },
    /// A message index below zero.
    NegativeIndex {
        /// Where.
        source: IdSource,
        /// The index read.
        index: i32,
    },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |s: &IdSource| match s {
            IdSource::Prefix => "in front of the payload",
            IdSource::Header => "in the schema id header",
        };
        match self {
            FramingError::Empty { source } => {
                write!(f, "no magic byte {}: the data is empty", at(source))
            }
            FramingError::UnknownMagic { source, magic } => write!(
                f,
                "unknown magic byte {magic} {} (0: schema id, 1: schema GUID)",
                at(source)
            ),
            FramingError::Truncated {
                source,
                what,
                needed,
                available,
            } => write!(
                f,
                "the {what} {} is cut short: {needed} bytes needed, {available} there",
                at(source)
            ),
            FramingError::InvalidVarint { source, what } => {
                write!(
                    f,
                    "the {what} {} is a varint of more than 5 bytes",
                    at(source)
                )
            }
            FramingError::BadIndexCount {
                source,
                count,
                remaining,
            } => write!(
                f,
                "a message index count of {count} {} with {remaining} bytes left",
                at(source)
            ),
            FramingError::NegativeIndex { source, index } => {
                write!(f, "a negative message index {index} {}", at(source))
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// Takes apart a key or value: the identity from `header` (the value of the last
/// `__key_schema_id` or `__value_schema_id` header, if there is one with a value) or else from
/// in front of `data`. `protobuf` says whether message indexes follow the identity.
pub fn parse<'a>(
    header: Option<&[u8]>,
    data: &'a [u8],
    protobuf: bool,
) -> Result<Framed<'a>, FramingError> {
    match header {
        Some(h) => {
            let (schema, message_indexes, _rest) = identity(h, protobuf, IdSource::Header)?;
            // Bytes after the identity in a header are ignored, as Java's
            // `DualSchemaIdDeserializer` ignores them.
            Ok(Framed {
                schema,
                message_indexes,
                payload: data,
                source: IdSource::Header,
            })
        }
        None => {
            let (schema, message_indexes, payload) = identity(data, protobuf, IdSource::Prefix)?;
            Ok(Framed {
                schema,
                message_indexes,
                payload,
                source: IdSource::Prefix,
            })
        }
    }
}

type Identity<'a> = (SchemaRef, Option<Vec<u32>>, &'a [u8]);

/// Magic, identity and (for Protobuf) message indexes at the start of `bytes`, and the bytes
/// after them.
fn identity(bytes: &[u8], protobuf: bool, source: IdSource) -> Result<Identity<'_>, FramingError> {
    let mut r = Reader::new(bytes);
    let truncated = |what, e: WireError| match e {
        WireError::Truncated {
            needed, available, ..
        } => FramingError::Truncated {
            source,
            what,
            needed,
            available,
        },
        WireError::InvalidVarint { .. } => FramingError::InvalidVarint { source, what },
    };
    let magic = r.i8().map_err(|_| FramingError::Empty { source })? as u8;
    let schema = match magic {
        MAGIC_ID => SchemaRef::Id(r.u32().map_err(|e| truncated("schema id", e))?),
        MAGIC_GUID => {
            let g = r.take(16).map_err(|e| truncated("schema GUID", e))?;
            let mut guid = [0; 16];
            guid.copy_from_slice(g);
            SchemaRef::Guid(guid)
        }
        magic => return Err(FramingError::UnknownMagic { source, magic }),
    };
    let indexes = if protobuf {
        let count = r
            .varint()
            .map_err(|e| truncated("message index count", e))?;
        if count == 0 {
            Some(vec![0])
        } else {
            // Each index takes at least one byte: a count the bytes left cannot hold is a lie,
            // refused before anything is reserved for it.
            let remaining = r.remaining();
            if count < 0 || count as usize > remaining {
                return Err(FramingError::BadIndexCount {
                    source,
                    count,
                    remaining,
                });
            }
            let mut indexes = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let index = r.varint().map_err(|e| truncated("message index", e))?;
                if index < 0 {
                    return Err(FramingError::NegativeIndex { source, index });
                }
                indexes.push(index as u32);
            }
            Some(indexes)
        }
    } else {
        None
    };
    Ok((schema, indexes, &bytes[r.pos()..]))
}

/// Writes `schema` and (for Protobuf) `message_indexes` as a serializer does, in front of a
/// payload or as a header's value: `[0]` as the single zero.
pub fn encode(schema: SchemaRef, message_indexes: Option<&[u32]>, out: &mut Vec<u8>) {
    match schema {
        SchemaRef::Id(id) => {
            out.push(MAGIC_ID);
            out.extend_from_slice(&id.to_be_bytes());
        }
        SchemaRef::Guid(g) => {
            out.push(MAGIC_GUID);
            out.extend_from_slice(&g);
        }
    }
    if let Some(indexes) = message_indexes {
        if indexes == [0] || indexes.is_empty() {
            out.push(0);
        } else {
            put_varint(out, indexes.len() as i64);
            for &i in indexes {
                put_varint(out, i64::from(i));
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    crate::wire::put_varlong(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_id_in_front_of_the_payload() {
        let data = [0, 0, 0, 1, 0x2c, b'a', b'b'];
        let f = parse(None, &data, false).unwrap();
        assert_eq!(f.schema, SchemaRef::Id(300));
        assert_eq!(f.payload, b"ab");
        assert_eq!(f.message_indexes, None);
        assert_eq!(f.source, IdSource::Prefix);
    }

    #[test]
    fn protobuf_indexes_with_the_single_zero_shortcut_and_a_nested_path() {
        let f = parse(None, &[0, 0, 0, 0, 7, 0, 9], true).unwrap();
        assert_eq!(
            (f.schema, f.message_indexes.as_deref(), f.payload),
            (SchemaRef::Id(7), Some(&[0][..]), &[9][..])
        );
        // Count 2 (zigzag 4), indexes 1 (2) and 3 (6).
        let f = parse(None, &[0, 0, 0, 0, 7, 4, 2, 6, 9], true).unwrap();
        assert_eq!(f.message_indexes.as_deref(), Some(&[1, 3][..]));
        assert_eq!(f.payload, &[9]);
        let mut out = Vec::new();
        encode(SchemaRef::Id(7), Some(&[1, 3]), &mut out);
        assert_eq!(out, [0, 0, 0, 0, 7, 4, 2, 6]);
    }

    #[test]
    fn a_guid_in_a_header_leaves_the_whole_field_as_payload() {
        let mut header = vec![1];
        header.extend(0x10..0x20u8);
        header.push(0);
        let f = parse(Some(&header), b"\x00payload", true).unwrap();
        let SchemaRef::Guid(g) = f.schema else {
            panic!("{f:?}")
        };
        assert_eq!(g[0], 0x10);
        assert_eq!(f.schema.to_string(), "10111213-1415-1617-1819-1a1b1c1d1e1f");
        assert_eq!(f.payload, b"\x00payload");
        assert_eq!(f.source, IdSource::Header);
        assert_eq!(f.message_indexes.as_deref(), Some(&[0][..]));
    }

    #[test]
    fn hostile_framings_are_refused_with_what_is_wrong() {
        assert_eq!(
            parse(None, &[], false),
            Err(FramingError::Empty {
                source: IdSource::Prefix
            })
        );
        assert_eq!(
            parse(None, b"{\"a\":1}", false),
            Err(FramingError::UnknownMagic {
                source: IdSource::Prefix,
                magic: b'{'
            })
        );
        assert!(matches!(
            parse(None, &[0, 0, 1], false),
            Err(FramingError::Truncated {
                what: "schema id",
                needed: 4,
                available: 2,
                ..
            })
        ));
        assert!(matches!(
            parse(Some(&[1, 2, 3]), b"x", false),
            Err(FramingError::Truncated {
                source: IdSource::Header,
                what: "schema GUID",
                ..
            })
        ));
        // A count of a billion with three bytes left: refused, nothing reserved.
        let mut lying = vec![0, 0, 0, 0, 1];
        put_varint(&mut lying, 1_000_000_000);
        lying.extend([2, 2, 2]);
        assert!(matches!(
            parse(None, &lying, true),
            Err(FramingError::BadIndexCount {
                count: 1_000_000_000,
                remaining: 3,
                ..
            })
        ));
        assert!(matches!(
            parse(None, &[0, 0, 0, 0, 1, 1], true),
            Err(FramingError::BadIndexCount { count: -1, .. })
        ));
        assert!(matches!(
            parse(None, &[0, 0, 0, 0, 1, 2, 1], true),
            Err(FramingError::NegativeIndex { index: -1, .. })
        ));
        assert!(matches!(
            parse(
                None,
                &[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                true
            ),
            Err(FramingError::InvalidVarint { .. })
        ));
        assert!(matches!(
            parse(None, &[0, 0, 0, 0, 1, 4, 0x82, 0x01], true),
            Err(FramingError::Truncated {
                what: "message index",
                ..
            })
        ));
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_and_what_parses_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            crate::fuzzing::schema_framing(&data);
        }

        #[test]
        fn encoded_identities_parse_back(id in any::<u32>(), indexes in proptest::collection::vec(0u32..1 << 31, 1..6), payload in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = Vec::new();
            super::encode(super::SchemaRef::Id(id), Some(&indexes), &mut out);
            out.extend_from_slice(&payload);
            let f = super::parse(None, &out, true).unwrap();
            prop_assert_eq!(f.schema, super::SchemaRef::Id(id));
            prop_assert_eq!(f.message_indexes, Some(indexes));
            prop_assert_eq!(f.payload, &payload[..]);
        }
    }
}
