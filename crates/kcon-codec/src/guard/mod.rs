//! Hostile-input guard for responses: walks a response body against a compact schema of the
//! message before `kafka-protocol` decodes it.
//!
//! # Why
//!
//! `kafka-protocol`'s generated decoders reserve `Vec` capacity straight from the array count on
//! the wire, before reading a single element, and read string and bytes lengths the same way.
//! Ten bytes from a broker (or from anything pretending to be one) can therefore ask for gigabytes,
//! and a failed allocation aborts the process: no `Result`, no chance to close the connection.
//! So every response body is first walked here, without allocating, and handed on only if the
//! walk succeeds.
//!
//! # The bound
//!
//! The walk reads exactly what the decoder will read, in the same order, at the same version
//! (compact encodings and tagged-field sections in flexible versions; known tags read as their
//! field, unknown tags skipped by size). At every array it requires
//! `count × (smallest encoded size of one element at this version) ≤ bytes left`, and at every
//! string or bytes value `length ≤ bytes left`. Since the decoder sees the same counts, each
//! `Vec::with_capacity` it then makes holds at most `size_of::<T>() / min_encoded_size` times
//! the bytes the array could occupy: the decoder allocates at most a small constant multiple of
//! the body length.
//!
//! # Where the message ends
//!
//! The walk stops where the message does and says where that is ([`Checked::end`]): a body
//! that ends before it is refused, and bytes after it are not read, so only the message is
//! handed to the decoder. Bytes after the end are the caller's to report, not an error: the
//! Java client's generated readers (`MetadataResponseData.read` and the rest, reached through
//! `AbstractResponse.parseResponse`) stop at the message's last field and never look at what is
//! left in the buffer, and librdkafka's response handlers likewise stop reading (its Fetch
//! handler alone fails on leftovers). librdkafka's mock cluster depends on that: its flexible
//! Metadata answers (v9+) end with one byte more than the message. Nothing is read, or
//! allocated, from those bytes, so the bound above holds for the prefix that is decoded.
//!
//! # Shape
//!
//! [`schema`] is the schema language: `const` trees of structs and fields with version ranges,
//! nullability and tags. [`walk`] is its one interpreter. [`data`], [`groups`], [`admin`]
//! (and [`txn`], [`share`]) hold one schema per API kcon speaks, for exactly the versions in
//! [`crate::versions::SUPPORTED`], written from kafka-protocol 0.18's decoders; the tests encode
//! populated responses at every one of those versions and check that the walk accepts them.
//!
//! # The one leniency
//!
//! Error answers of librdkafka's mock cluster carry null in a few non-nullable fields; the
//! schemas mark exactly those, and the walk takes such a null for empty when the answer's
//! error code is non-zero. [`null_on_error`] says which fields, why, and how the body is
//! rewritten before decoding.

use crate::error::{DecodeError, DecodeReason, Part};

mod admin;
mod data;
mod groups;
mod null_on_error;
mod schema;
mod share;
mod txn;
mod walk;

pub(crate) use null_on_error::NullPatches;

#[cfg(test)]
mod populated;
#[cfg(test)]
mod tests;

use schema::Message;

/// Every response schema; at most one per API.
const MESSAGES: &[&Message] = &[
    &data::PRODUCE,
    &data::FETCH,
    &data::LIST_OFFSETS,
    &data::METADATA,
    &groups::OFFSET_COMMIT,
    &groups::OFFSET_FETCH,
    &groups::FIND_COORDINATOR,
    &groups::JOIN_GROUP,
    &groups::HEARTBEAT,
    &groups::LEAVE_GROUP,
    &groups::SYNC_GROUP,
    &groups::DESCRIBE_GROUPS,
    &groups::LIST_GROUPS,
    &admin::SASL_HANDSHAKE,
    &admin::API_VERSIONS,
    &admin::CREATE_TOPICS,
    &groups::DELETE_GROUPS,
    &admin::SASL_AUTHENTICATE,
    &data::OFFSET_FOR_LEADER_EPOCH,
    &groups::OFFSET_DELETE,
    &groups::CONSUMER_GROUP_HEARTBEAT,
    &groups::CONSUMER_GROUP_DESCRIBE,
    &admin::INIT_PRODUCER_ID,
    &txn::ADD_PARTITIONS_TO_TXN,
    &txn::ADD_OFFSETS_TO_TXN,
    &txn::TXN_OFFSET_COMMIT,
    &txn::END_TXN,
    &share::SHARE_GROUP_HEARTBEAT,
    &share::SHARE_FETCH,
    &share::SHARE_ACKNOWLEDGE,
    &share::SHARE_GROUP_DESCRIBE,
    &share::DESCRIBE_SHARE_GROUP_OFFSETS,
    &admin::DESCRIBE_CONFIGS,
    &admin::INCREMENTAL_ALTER_CONFIGS,
    &txn::DESCRIBE_TRANSACTIONS,
    &admin::GET_TELEMETRY_SUBSCRIPTIONS,
    &admin::PUSH_TELEMETRY,
];

fn schema(api_key: i16, version: i16) -> Option<&'static Message> {
    MESSAGES
        .iter()
        .copied()
        .find(|m| m.api_key as i16 == api_key && m.versions.contains(version))
}

/// What the walk learnt of a body it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Where the message ends: `body[..end]` is the whole message, and anything after it was
    /// not read.
    pub(crate) end: usize,
    /// The nulls to rewrite before decoding (none in a successful answer).
    pub(crate) nulls: NullPatches,
    /// The top-level error code, when the message has one at this version.
    pub(crate) error_code: Option<i16>,
    /// The throttle time, when the message has one at this version (read for the tests only).
    #[cfg(test)]
    pub(crate) throttle_time_ms: Option<i32>,
}

/// Checks `body` (a response body, header already removed) of `api_key` at `version`: Ok only
/// if `kafka-protocol` can decode `body[..end]` exactly, once the returned nulls are rewritten
/// (see [`null_on_error`]), without an allocation out of proportion to its length.
pub(crate) fn check_response(
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Checked, DecodeError> {
    match schema(api_key, version) {
        Some(msg) => walk::walk(msg, version, body),
        // `decode_response` asks `covers` first, so this is only reached by a caller that did
        // not; refusing is the safe answer, since nothing vouches for the body.
        None => Err(DecodeError::new(
            api_key,
            version,
            Part::ResponseBody,
            0,
            DecodeReason::Other("no response schema for this API version".to_owned()),
        )),
    }
}

/// Whether a schema exists for this response.
pub(crate) fn covers(api_key: i16, version: i16) -> bool {
    schema(api_key, version).is_some()
}
