//! The embedded consumer protocol: ConsumerProtocolSubscription and ConsumerProtocolAssignment
//! v0-v3, the bytes members exchange through JoinGroup and SyncGroup.
//!
//! Layout (apache/kafka `ConsumerProtocolSubscription.json` and `ConsumerProtocolAssignment.json`,
//! neither has flexible versions, so every field is a classic fixed-width or i16/i32-length
//! encoding): an `i16` version, then the body of that version.
//!
//! ```text
//! Subscription  v0: Topics [string]  UserData nullable bytes
//!               v1: + OwnedPartitions [Topic string, Partitions [i32]]
//!               v2: + GenerationId i32
//!               v3: + RackId nullable string
//! Assignment v0-v3: AssignedPartitions [Topic string, Partitions [i32]]  UserData nullable bytes
//! ```
//!
//! Reading follows the Java client's `ConsumerProtocol`: a version above the highest known is
//! read as the highest known (later versions may only append fields), bytes after the last
//! known field are ignored, and a negative version is an error.
//!
//! These bytes come from other group members, so the decoders never trust a count: an array
//! whose count times the smallest encoding of one element exceeds the bytes left is refused
//! before anything is allocated, and flattening `(topic, [partitions])` into one
//! [`TopicPartition`] per partition (which copies the topic name each time) is bounded by
//! [`EXPANSION_FACTOR`] × the input length.

use std::collections::HashMap;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{self, WireError};

/// The ConsumerProtocolSubscription version kcon writes (the highest it knows, as the Java
/// client does).
pub const SUBSCRIPTION_VERSION: i16 = 3;

/// The ConsumerProtocolAssignment version kcon writes (the highest it knows, as the Java
/// client does).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// The highest version of either message that kcon knows; later versions are read as this one.
pub const HIGHEST_VERSION: i16 = 3;

/// Flattened partition lists may take at most this many bytes of topic names per input byte
/// (plus 64 KiB). A real topic name is at most 249 bytes (Kafka's
/// `Topic.MAX_NAME_LENGTH`) and each partition costs 4 input bytes, so honest input stays
/// under 63 × its length; a crafted one (a 32 KiB name with thousands of partitions) would
/// otherwise turn kilobytes into gigabytes.
pub const EXPANSION_FACTOR: usize = 64;

/// Fixed allowance added to the [`EXPANSION_FACTOR`] bound, so tiny inputs are never refused.
const EXPANSION_SLACK: usize = 64 * 1024;

const SUBSCRIPTION: &str = "ConsumerProtocolSubscription";
const ASSIGNMENT: &str = "ConsumerProtocolAssignment";

/// A topic partition: the pair the consumer protocol's partition lists are made of, and the
/// name every part of kcon uses for it (kcon-core re-exports it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    /// `topic-partition`, as the Java client prints a `TopicPartition`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What a member sends in JoinGroup (the protocol metadata).
///
/// The default has no topics, no user data, no owned partitions, generation -1 and no rack:
/// what a v0 subscription decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Assignor-specific data.
    pub user_data: Option<Bytes>,
    /// The partitions it owns (v1+).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation it owned them in (v2+), -1 when unknown.
    pub generation_id: i32,
    /// The member's rack (v3+).
    pub rack_id: Option<String>,
}

impl Subscription {
    /// The message bytes at `version`: the `i16` version, then the fields that version has
    /// (fields a version lacks are left out). A version above 3 is written as 3, as the Java
    /// client's `ConsumerProtocol.serializeSubscription` does.
    ///
    /// Topics and owned partitions are written in the order given; owned partitions are
    /// grouped per topic in first-seen order, keeping the partition order within a topic.
    /// (The Java client sorts both before writing; sort them first for identical bytes.)
    ///
    /// # Panics
    ///
    /// If `version` is negative, or a string is longer than `i16::MAX` bytes, or the user
    /// data longer than `i32::MAX` bytes: the wire cannot express those, and they come from
    /// this process's own configuration, never from the network.
    pub fn encode(&self, version: i16) -> Bytes {
        assert!(version >= 0, "{SUBSCRIPTION} version {version} is negative");
        let version = version.min(HIGHEST_VERSION);
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        put_array_len(&mut buf, self.topics.len());
        for topic in &self.topics {
            put_string(&mut buf, topic);
        }
        put_nullable_bytes(&mut buf, self.user_data.as_deref());
        if version >= 1 {
            put_topic_partitions(&mut buf, &self.owned_partitions);
        }
        if version >= 2 {
            buf.put_i32(self.generation_id);
        }
        if version >= 3 {
            put_nullable_string(&mut buf, self.rack_id.as_deref());
        }
        buf.freeze()
    }

    /// Reads a subscription written by any consumer (kcon, Java, librdkafka, ...).
    ///
    /// Fields absent from the version read take their defaults (no owned partitions,
    /// generation -1, no rack). An empty rack id reads as `None`, as in the Java client.
    pub fn decode(bytes: &[u8]) -> Result<Subscription, ProtocolError> {
        let mut r = Reader::new(bytes);
        let version = r.version(SUBSCRIPTION)?;
        let count = r.array_len("ConsumerProtocolSubscription.Topics", 2)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            topics.push(r.string("ConsumerProtocolSubscription.Topics")?);
        }
        let user_data = r.nullable_bytes("ConsumerProtocolSubscription.UserData")?;
        let mut subscription = Subscription {
            topics,
            user_data,
            ..Subscription::default()
        };
        if version >= 1 {
            subscription.owned_partitions = r.topic_partitions(
                "ConsumerProtocolSubscription.OwnedPartitions",
                "ConsumerProtocolSubscription.OwnedPartitions.Topic",
                "ConsumerProtocolSubscription.OwnedPartitions.Partitions",
            )?;
        }
        if version >= 2 {
            subscription.generation_id = r.i32("ConsumerProtocolSubscription.GenerationId")?;
        }
        if version >= 3 {
            subscription.rack_id = r
                .nullable_string("ConsumerProtocolSubscription.RackId")?
                .filter(|rack| !rack.is_empty());
        }
        Ok(subscription)
    }
}

impl Default for Subscription {
    fn default() -> Self {
        Subscription {
            topics: Vec::new(),
            user_data: None,
            owned_partitions: Vec::new(),
            // The JSON schema's default for GenerationId: "no generation".
            generation_id: -1,
            rack_id: None,
        }
    }
}

/// What the leader gives a member in SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    /// The partitions assigned.
    pub partitions: Vec<TopicPartition>,
    /// Assignor-specific data.
    pub user_data: Option<Bytes>,
}

impl Assignment {
    /// The message bytes at `version` (all of v0-v3 have the same body). Partitions are
    /// grouped per topic in first-seen order, keeping the partition order within a topic, as
    /// the Java client's `ConsumerProtocol.serializeAssignment` does. A version above 3 is
    /// written as 3.
    ///
    /// # Panics
    ///
    /// If `version` is negative, a topic name is longer than `i16::MAX` bytes or the user data
    /// longer than `i32::MAX` bytes.
    pub fn encode(&self, version: i16) -> Bytes {
        assert!(version >= 0, "{ASSIGNMENT} version {version} is negative");
        let mut buf = BytesMut::new();
        buf.put_i16(version.min(HIGHEST_VERSION));
        put_topic_partitions(&mut buf, &self.partitions);
        put_nullable_bytes(&mut buf, self.user_data.as_deref());
        buf.freeze()
    }

    /// Reads an assignment written by any leader.
    pub fn decode(bytes: &[u8]) -> Result<Assignment, ProtocolError> {
        let mut r = Reader::new(bytes);
        r.version(ASSIGNMENT)?;
        let partitions = r.topic_partitions(
            "ConsumerProtocolAssignment.AssignedPartitions",
            "ConsumerProtocolAssignment.AssignedPartitions.Topic",
            "ConsumerProtocolAssignment.AssignedPartitions.Partitions",
        )?;
        let user_data = r.nullable_bytes("ConsumerProtocolAssignment.UserData")?;
        Ok(Assignment {
            partitions,
            user_data,
        })
    }
}

/// Why a subscription, an assignment or an assignor's user data could not be read.
///
/// Every variant names the field (`Message.Field.SubField`) and the byte offset, counted
/// from the start of the bytes given to the decoder (the version is at offset 0).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes end inside a field.
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the read.
        offset: usize,
        /// Bytes the read needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// The version header is negative (the Java client refuses it too).
    NegativeVersion {
        /// The message.
        message: &'static str,
        /// The version read.
        version: i16,
    },
    /// A non-nullable string, array or bytes field has a negative length.
    NegativeLength {
        /// The field.
        field: &'static str,
        /// Offset of the length.
        offset: usize,
        /// The length read.
        length: i32,
    },
    /// An array claims more elements than the bytes left could hold.
    TooManyElements {
        /// The array field.
        field: &'static str,
        /// Offset of the count.
        offset: usize,
        /// The count read.
        count: i32,
        /// Bytes left after the count.
        available: usize,
        /// The smallest encoding of one element.
        element_size: usize,
    },
    /// Flattening a partition list would copy topic names past [`EXPANSION_FACTOR`] × the
    /// input length (a huge name repeated for many partitions).
    TooLarge {
        /// The partition array field.
        field: &'static str,
        /// Offset of the partition count.
        offset: usize,
        /// The input length.
        input_len: usize,
    },
    /// A string is not UTF-8.
    InvalidUtf8 {
        /// The field.
        field: &'static str,
        /// Offset of the string's length.
        offset: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Truncated {
                field,
                offset,
                needed,
                available,
            } => write!(
                f,
                "{field} at byte {offset}: needs {needed} bytes, {available} left"
            ),
            ProtocolError::NegativeVersion { message, version } => {
                write!(f, "{message} version {version} is negative")
            }
            ProtocolError::NegativeLength {
                field,
                offset,
                length,
            } => write!(
                f,
                "{field} at byte {offset}: length {length} in a non-nullable field"
            ),
            ProtocolError::TooManyElements {
                field,
                offset,
                count,
                available,
                element_size,
            } => write!(
                f,
                "{field} at byte {offset}: {count} elements of at least {element_size} bytes \
                 cannot fit in the {available} bytes left"
            ),
            ProtocolError::TooLarge {
                field,
                offset,
                input_len,
            } => write!(
                f,
                "{field} at byte {offset}: flattening would copy more than {EXPANSION_FACTOR} \
                 bytes of topic names per input byte ({input_len} bytes of input)"
            ),
            ProtocolError::InvalidUtf8 { field, offset } => {
                write!(f, "{field} at byte {offset}: string is not UTF-8")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A bounds-checked cursor over hostile bytes with the classic (non-flexible) Kafka
/// encodings, on kcon-codec's wire reader; every error names the field being read. Also used
/// for the assignors' user data.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    wire: wire::Reader<'a>,
    input_len: usize,
    /// Topic-name bytes still allowed to be copied while flattening partition lists.
    expansion_budget: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `buf`, from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            wire: wire::Reader::new(buf),
            input_len: buf.len(),
            expansion_budget: buf
                .len()
                .saturating_mul(EXPANSION_FACTOR)
                .saturating_add(EXPANSION_SLACK),
        }
    }

    fn remaining(&self) -> usize {
        self.wire.remaining()
    }

    /// Whether every byte was read.
    pub fn is_at_end(&self) -> bool {
        self.remaining() == 0
    }

    fn pos(&self) -> usize {
        self.wire.pos()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtocolError> {
        self.wire.take(n).map_err(|e| truncated(e, field))
    }

    /// An `i16`.
    pub fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        self.wire.i16().map_err(|e| truncated(e, field))
    }

    /// An `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.wire.i32().map_err(|e| truncated(e, field))
    }

    /// The `i16` version header, clamped to the highest known version.
    fn version(&mut self, message: &'static str) -> Result<i16, ProtocolError> {
        let version = self.i16(message)?;
        if version < 0 {
            return Err(ProtocolError::NegativeVersion { message, version });
        }
        Ok(version.min(HIGHEST_VERSION))
    }

    /// An `i32` array count, checked against the bytes left: each element needs at least
    /// `element_size` bytes, so a larger count cannot be honest and nothing is reserved for it.
    pub fn array_len(
        &mut self,
        field: &'static str,
        element_size: usize,
    ) -> Result<usize, ProtocolError> {
        let offset = self.pos();
        let count = self.i32(field)?;
        let Ok(n) = usize::try_from(count) else {
            return Err(ProtocolError::NegativeLength {
                field,
                offset,
                length: count,
            });
        };
        if n > self.remaining() / element_size.max(1) {
            return Err(ProtocolError::TooManyElements {
                field,
                offset,
                count,
                available: self.remaining(),
                element_size,
            });
        }
        Ok(n)
    }

    /// `len` bytes of UTF-8; `offset` is where the string's length was.
    fn utf8(
        &mut self,
        len: usize,
        field: &'static str,
        offset: usize,
    ) -> Result<String, ProtocolError> {
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(ProtocolError::InvalidUtf8 { field, offset }),
        }
    }

    /// A non-nullable string with an `i16` length.
    pub fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let offset = self.pos();
        let len = self.i16(field)?;
        let Ok(n) = usize::try_from(len) else {
            return Err(ProtocolError::NegativeLength {
                field,
                offset,
                length: len.into(),
            });
        };
        self.utf8(n, field, offset)
    }

    /// A nullable string with an `i16` length; `None` for a negative length.
    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, ProtocolError> {
        let offset = self.pos();
        let Ok(n) = usize::try_from(self.i16(field)?) else {
            return Ok(None);
        };
        self.utf8(n, field, offset).map(Some)
    }

    /// Bytes with an `i32` length; `None` for a negative length (as the Java reader does).
    fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, ProtocolError> {
        let Ok(len) = usize::try_from(self.i32(field)?) else {
            return Ok(None);
        };
        Ok(Some(Bytes::copy_from_slice(self.take(len, field)?)))
    }

    /// An array of `(Topic string, Partitions [i32])`, flattened in wire order.
    pub fn topic_partitions(
        &mut self,
        field: &'static str,
        topic_field: &'static str,
        partitions_field: &'static str,
    ) -> Result<Vec<TopicPartition>, ProtocolError> {
        // Smallest entry: an empty topic name (2) and an empty partition array (4).
        let topics = self.array_len(field, 6)?;
        let mut out = Vec::new();
        for _ in 0..topics {
            let topic = self.string(topic_field)?;
            let offset = self.pos();
            let count = self.array_len(partitions_field, 4)?;
            let copied = count.saturating_mul(topic.len());
            if copied > self.expansion_budget {
                return Err(ProtocolError::TooLarge {
                    field: partitions_field,
                    offset,
                    input_len: self.input_len,
                });
            }
            self.expansion_budget -= copied;
            out.reserve(count);
            for _ in 0..count {
                let partition = self.i32(partitions_field)?;
                out.push(TopicPartition {
                    topic: topic.clone(),
                    partition,
                });
            }
        }
        Ok(out)
    }
}

/// The field-named error of a read that ran out of bytes.
fn truncated(e: WireError, field: &'static str) -> ProtocolError {
    match e {
        WireError::Truncated {
            offset,
            needed,
            available,
        } => ProtocolError::Truncated {
            field,
            offset,
            needed,
            available,
        },
        // The classic encodings have no varints; a reader that reads none cannot meet one.
        WireError::InvalidVarint { offset } => ProtocolError::Truncated {
            field,
            offset,
            needed: 0,
            available: 0,
        },
    }
}

/// Appends an `i32` array count.
fn put_array_len(buf: &mut BytesMut, len: usize) {
    // A documented panic of the encoders: such a list cannot come from the network.
    let len = i32::try_from(len).expect("an array longer than i32::MAX elements");
    buf.put_i32(len);
}

/// Appends a non-nullable string with its `i16` length.
pub fn put_string(buf: &mut BytesMut, s: &str) {
    // A documented panic of the encoders: the wire has no longer string.
    let len = i16::try_from(s.len()).expect("a string longer than i16::MAX bytes");
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_nullable_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            // A documented panic of the encoders: the wire has no longer bytes.
            let len = i32::try_from(b.len()).expect("user data longer than i32::MAX bytes");
            buf.put_i32(len);
            buf.put_slice(b);
        }
        None => buf.put_i32(-1),
    }
}

/// Appends `partitions` as `[Topic string, Partitions [i32]]`: grouped per topic in
/// first-seen order, partition order kept within a topic.
pub fn put_topic_partitions(buf: &mut BytesMut, partitions: &[TopicPartition]) {
    let mut groups: Vec<(&str, Vec<i32>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for tp in partitions {
        let i = *index.entry(tp.topic.as_str()).or_insert_with(|| {
            groups.push((tp.topic.as_str(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(tp.partition);
    }
    put_array_len(buf, groups.len());
    for (topic, ids) in &groups {
        put_string(buf, topic);
        put_array_len(buf, ids.len());
        for id in ids {
            buf.put_i32(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn sample_subscription() -> Subscription {
        Subscription {
            topics: vec!["b".into(), "a".into()],
            user_data: Some(Bytes::from_static(&[0xAA, 0xBB])),
            owned_partitions: vec![tp("a", 1), tp("a", 0), tp("b", 2)],
            generation_id: 7,
            rack_id: Some("r1".into()),
        }
    }

    /// Bytes worked out by hand from ConsumerProtocolSubscription.json for
    /// `sample_subscription()`, one version at a time.
    fn hand_encoded_subscription(version: i16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&version.to_be_bytes());
        // Topics: count 2, "b", "a".
        v.extend_from_slice(&[0, 0, 0, 2, 0, 1, b'b', 0, 1, b'a']);
        // UserData: length 2, AA BB.
        v.extend_from_slice(&[0, 0, 0, 2, 0xAA, 0xBB]);
        if version >= 1 {
            // OwnedPartitions: 2 topics; "a" [1, 0]; "b" [2].
            v.extend_from_slice(&[0, 0, 0, 2]);
            v.extend_from_slice(&[0, 1, b'a', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
            v.extend_from_slice(&[0, 1, b'b', 0, 0, 0, 1, 0, 0, 0, 2]);
        }
        if version >= 2 {
            // GenerationId 7.
            v.extend_from_slice(&[0, 0, 0, 7]);
        }
        if version >= 3 {
            // RackId "r1".
            v.extend_from_slice(&[0, 2, b'r', b'1']);
        }
        v
    }

    /// What `sample_subscription()` reads back as after a round trip at `version`.
    fn sample_at(version: i16) -> Subscription {
        let mut s = sample_subscription();
        if version < 1 {
            s.owned_partitions.clear();
        }
        if version < 2 {
            s.generation_id = -1;
        }
        if version < 3 {
            s.rack_id = None;
        }
        s
    }

    #[test]
    fn subscription_bytes_match_the_spec_for_every_version() {
        for version in 0..=3 {
            let bytes = sample_subscription().encode(version);
            assert_eq!(
                &bytes[..],
                &hand_encoded_subscription(version)[..],
                "v{version}"
            );
            assert_eq!(
                Subscription::decode(&bytes),
                Ok(sample_at(version)),
                "v{version}"
            );
        }
    }

    #[test]
    fn an_empty_v0_subscription_has_the_defaults() {
        // Version 0, no topics, null user data.
        let bytes = [0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Subscription::default().encode(0)[..], bytes[..]);
        let s = Subscription::decode(&bytes).unwrap();
        assert_eq!(s, Subscription::default());
        assert_eq!(s.generation_id, -1);
    }

    #[test]
    fn null_rack_and_empty_rack_read_as_none() {
        let mut s = sample_subscription();
        s.rack_id = None;
        let bytes = s.encode(3);
        assert_eq!(&bytes[bytes.len() - 2..], &[0xff, 0xff]);
        assert_eq!(Subscription::decode(&bytes).unwrap().rack_id, None);
        s.rack_id = Some(String::new());
        assert_eq!(Subscription::decode(&s.encode(3)).unwrap().rack_id, None);
    }

    #[test]
    fn assignment_bytes_match_the_spec_for_every_version() {
        let a = Assignment {
            partitions: vec![tp("t", 0), tp("u", 3), tp("t", 2)],
            user_data: None,
        };
        for version in 0..=3i16 {
            let mut expected = version.to_be_bytes().to_vec();
            // 2 topics: "t" [0, 2] (grouped in first-seen order), "u" [3]; null user data.
            expected.extend_from_slice(&[0, 0, 0, 2]);
            expected.extend_from_slice(&[0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
            expected.extend_from_slice(&[0, 1, b'u', 0, 0, 0, 1, 0, 0, 0, 3]);
            expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
            let bytes = a.encode(version);
            assert_eq!(&bytes[..], &expected[..], "v{version}");
            let back = Assignment::decode(&bytes).unwrap();
            assert_eq!(back.partitions, vec![tp("t", 0), tp("t", 2), tp("u", 3)]);
            assert_eq!(back.user_data, None);
        }
        let with_data = Assignment {
            partitions: vec![],
            user_data: Some(Bytes::new()),
        };
        assert_eq!(
            with_data.encode(0)[..],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            "empty, not null, user data"
        );
        assert_eq!(Assignment::decode(&with_data.encode(0)), Ok(with_data));
    }

    #[test]
    fn versions_above_3_are_written_and_read_as_3() {
        let s = sample_subscription();
        assert_eq!(s.encode(9), s.encode(3));
        let a = Assignment::default();
        assert_eq!(a.encode(100), a.encode(3));
    }

    #[test]
    fn a_future_subscription_with_extra_fields_reads_as_v3() {
        // Java's ConsumerProtocolTest.deserializeFutureSubscriptionVersion: version 100, the v3
        // fields, then a field v3 does not know.
        let mut bytes = hand_encoded_subscription(3);
        bytes[..2].copy_from_slice(&4i16.to_be_bytes());
        bytes.extend_from_slice(&[0, 3, b'b', b'a', b'r', 1, 2, 3]);
        assert_eq!(Subscription::decode(&bytes), Ok(sample_at(3)));
        bytes[..2].copy_from_slice(&100i16.to_be_bytes());
        assert_eq!(Subscription::decode(&bytes), Ok(sample_at(3)));
    }

    #[test]
    fn a_future_assignment_with_extra_fields_reads_as_v3() {
        // Java's ConsumerProtocolTest.deserializeFutureAssignmentVersion.
        let a = Assignment {
            partitions: vec![tp("foo", 1)],
            user_data: Some(Bytes::new()),
        };
        let mut bytes = a.encode(3).to_vec();
        bytes[..2].copy_from_slice(&100i16.to_be_bytes());
        bytes.extend_from_slice(&[0, 3, b'b', b'a', b'r']);
        assert_eq!(Assignment::decode(&bytes), Ok(a));
    }

    #[test]
    fn a_new_subscription_read_as_an_old_version_keeps_the_old_fields() {
        // Java's deserializeNewSubscriptionWithOldVersion: v3 bytes with a v0 header.
        let mut bytes = hand_encoded_subscription(3);
        bytes[..2].copy_from_slice(&0i16.to_be_bytes());
        assert_eq!(Subscription::decode(&bytes), Ok(sample_at(0)));
    }

    #[test]
    fn a_negative_version_is_an_error() {
        let mut bytes = hand_encoded_subscription(1);
        bytes[..2].copy_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::NegativeVersion {
                message: SUBSCRIPTION,
                version: -1
            })
        );
        assert!(matches!(
            Assignment::decode(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(ProtocolError::NegativeVersion {
                version: i16::MIN,
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for version in 0..=3 {
            let bytes = sample_subscription().encode(version);
            for cut in 0..bytes.len() {
                // Cut short, a count may also no longer fit the bytes left.
                let err = Subscription::decode(&bytes[..cut]).unwrap_err();
                assert!(
                    matches!(
                        err,
                        ProtocolError::Truncated { .. } | ProtocolError::TooManyElements { .. }
                    ),
                    "v{version} cut at {cut}: {err}"
                );
            }
        }
        let a = Assignment {
            partitions: vec![tp("t", 0), tp("u", 3)],
            user_data: Some(Bytes::from_static(b"xyz")),
        };
        let bytes = a.encode(3);
        for cut in 0..bytes.len() {
            let err = Assignment::decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ProtocolError::Truncated { .. } | ProtocolError::TooManyElements { .. }
                ),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn errors_name_the_field_and_offset() {
        let bytes = sample_subscription().encode(2);
        // Cut inside GenerationId, the last 4 bytes.
        let err = Subscription::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::Truncated {
                field: "ConsumerProtocolSubscription.GenerationId",
                offset: bytes.len() - 4,
                needed: 4,
                available: 3
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "ConsumerProtocolSubscription.GenerationId at byte {}: needs 4 bytes, 3 left",
                bytes.len() - 4
            )
        );
    }

    #[test]
    fn hostile_counts_are_refused_before_allocating() {
        // Topics claims i32::MAX strings in 4 bytes.
        let bytes = [0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::TooManyElements {
                field: "ConsumerProtocolSubscription.Topics",
                offset: 2,
                count: i32::MAX,
                available: 4,
                element_size: 2
            })
        );
        // Exactly as many 2-byte elements as fit is fine as far as the count goes.
        let bytes = [0, 0, 0, 0, 0, 2, 0, 0, 0, 0];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::Truncated { .. })
        ));
        // A negative topic count.
        let bytes = [0, 0, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::NegativeLength {
                field: "ConsumerProtocolSubscription.Topics",
                offset: 2,
                length: -2
            })
        );
        // A null (length -1) topic name in a non-nullable field.
        let bytes = [0, 0, 0, 0, 0, 1, 0xff, 0xff];
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::NegativeLength { offset: 6, .. })
        ));
        // An assignment whose partition array claims 1000 partitions in 8 bytes.
        let mut bytes = vec![0, 3, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0x03, 0xe8];
        bytes.extend_from_slice(&[0; 8]);
        assert!(matches!(
            Assignment::decode(&bytes),
            Err(ProtocolError::TooManyElements {
                field: "ConsumerProtocolAssignment.AssignedPartitions.Partitions",
                count: 1000,
                element_size: 4,
                ..
            })
        ));
        // Owned-partition entries need 6 bytes each.
        let mut bytes = hand_encoded_subscription(0);
        bytes[..2].copy_from_slice(&1i16.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Subscription::decode(&bytes),
            Err(ProtocolError::TooManyElements {
                element_size: 6,
                ..
            })
        ));
    }

    /// An assignment of one topic named `name` with partitions `0..count`, written by hand
    /// (building it as `TopicPartition`s would copy the name `count` times).
    fn one_topic_assignment(name: &str, count: i32) -> Vec<u8> {
        let mut bytes = vec![0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&(name.len() as i16).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(&count.to_be_bytes());
        for p in 0..count {
            bytes.extend_from_slice(&p.to_be_bytes());
        }
        bytes.extend_from_slice(&[0xff; 4]);
        bytes
    }

    #[test]
    fn a_huge_topic_name_repeated_for_many_partitions_is_refused() {
        // One 32767-byte topic with 20 000 partitions: 112 KB of input that would flatten
        // into 655 MB of copied names.
        let bytes = one_topic_assignment(&"x".repeat(i16::MAX as usize), 20_000);
        assert_eq!(
            Assignment::decode(&bytes),
            Err(ProtocolError::TooLarge {
                field: "ConsumerProtocolAssignment.AssignedPartitions.Partitions",
                offset: 8 + i16::MAX as usize,
                input_len: bytes.len()
            })
        );
        // Real topic names (at most 249 bytes) always fit the bound.
        let bytes = one_topic_assignment(&"y".repeat(249), 20_000);
        assert_eq!(
            Assignment::decode(&bytes).map(|d| d.partitions.len()),
            Ok(20_000)
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let bytes = [0, 0, 0, 0, 0, 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Subscription::decode(&bytes),
            Err(ProtocolError::InvalidUtf8 {
                field: "ConsumerProtocolSubscription.Topics",
                offset: 6
            })
        );
    }

    #[test]
    #[should_panic(expected = "negative")]
    fn encoding_a_negative_version_panics() {
        let _ = Subscription::default().encode(-1);
    }

    fn arb_topic() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{0,12}"
    }

    /// Partitions already grouped per topic (distinct topics, each once), which is the form
    /// that survives a round trip unchanged.
    fn arb_grouped_partitions() -> impl Strategy<Value = Vec<TopicPartition>> {
        proptest::collection::btree_map(
            arb_topic(),
            proptest::collection::vec(any::<i32>(), 0..5),
            0..4,
        )
        .prop_map(|groups| {
            groups
                .into_iter()
                .flat_map(|(t, ps)| {
                    ps.into_iter()
                        .map(move |p| TopicPartition::new(t.clone(), p))
                })
                .collect()
        })
    }

    prop_compose! {
        fn arb_subscription()(
            topics in proptest::collection::vec(arb_topic(), 0..5),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            owned_partitions in arb_grouped_partitions(),
            generation_id in any::<i32>(),
            rack_id in proptest::option::of("[a-z0-9-]{1,8}"),
        ) -> Subscription {
            Subscription {
                topics,
                user_data: user_data.map(Bytes::from),
                owned_partitions,
                generation_id,
                rack_id,
            }
        }
    }

    proptest! {
        #[test]
        fn subscriptions_round_trip(s in arb_subscription(), version in 0i16..=3) {
            let mut expected = s.clone();
            if version < 1 { expected.owned_partitions.clear(); }
            if version < 2 { expected.generation_id = -1; }
            if version < 3 { expected.rack_id = None; }
            prop_assert_eq!(Subscription::decode(&s.encode(version)), Ok(expected));
        }

        #[test]
        fn assignments_round_trip(
            partitions in arb_grouped_partitions(),
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            version in 0i16..=3,
        ) {
            let a = Assignment { partitions, user_data: user_data.map(Bytes::from) };
            prop_assert_eq!(Assignment::decode(&a.encode(version)), Ok(a));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Subscription::decode(&bytes);
            let _ = Assignment::decode(&bytes);
        }
    }
}
