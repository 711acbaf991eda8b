//! What every part's conversions to and from kafka-protocol's types share: the error for a
//! request a version cannot express, and the small field conversions.
//!
//! Each part turns its version-free requests into kafka-protocol's types for the version a
//! broker speaks: fields a version lacks are left out (kafka-protocol refuses a request that
//! sets them), and what a version cannot express is a [`VersionError`] rather than a silently
//! different request.

use std::fmt;

use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::protocol::{Encodable, Request, StrBytes};

use crate::machine::RequestFailure;
use crate::partition::TopicPartition;

/// Why a request cannot be sent at the version the broker speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError(pub String);

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VersionError {}

/// A request the broker's version cannot carry will not become sendable by trying again.
impl From<VersionError> for RequestFailure {
    fn from(e: VersionError) -> RequestFailure {
        RequestFailure::fatal(e.0)
    }
}

/// A string field.
pub fn str_bytes(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A topic name field.
pub fn topic_name(v: &str) -> TopicName {
    TopicName(str_bytes(v))
}

/// A leader epoch from the wire, where -1 means unknown.
pub fn epoch(e: i32) -> Option<i32> {
    (e >= 0).then_some(e)
}

/// Encodes `request` at `version`, and panics naming the type and version when it cannot:
/// the wire modules' tests build every request at every version they send with it.
pub fn assert_encodes<R: Request + Encodable>(request: &R, version: i16) {
    let mut buf = bytes::BytesMut::new();
    request
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{} v{version}: {e}", std::any::type_name::<R>()));
}

/// Groups `items` by topic, keeping partition order (items sorted by topic then partition, as
/// a `BTreeMap` of [`TopicPartition`]s iterates, have each topic's partitions adjacent).
pub fn by_topic<'a, T: 'a>(
    items: impl IntoIterator<Item = (&'a TopicPartition, T)>,
) -> Vec<(&'a str, Vec<(i32, T)>)> {
    let mut out: Vec<(&str, Vec<(i32, T)>)> = Vec::new();
    for (tp, v) in items {
        match out.last_mut() {
            Some((t, ps)) if *t == tp.topic => ps.push((tp.partition, v)),
            _ => out.push((&tp.topic, vec![(tp.partition, v)])),
        }
    }
    out
}
