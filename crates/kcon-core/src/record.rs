//! The record handed to the application: topic, partition, offset, timestamp, key, value and
//! headers. The fetch layer (kcon-fetch) makes them from Fetch answers without copying; it
//! lives here, below every part, so that what reads records (deserializers, kcon's record
//! policies, the Schema Registry crate) needs neither the fetch layer nor the consumer.

use bytes::Bytes;
use kcon_codec::records::TimestampType;

use crate::partition::{Topic, TopicPartition};

/// A record handed to the application: topic, partition, offset, leader epoch, timestamp and
/// its type, key and value (`Bytes` slices of the Fetch answer: no copy), headers in order
/// with duplicates kept.
///
/// The fields are public to read; new ones may come, so a `Record` is made with
/// [`Record::new`] and the `with_*` methods (to test a handler, say), never field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The topic ([`Topic`]: interned, copied without a reference count).
    pub topic: Topic,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The leader epoch of its batch; `None` for magic 0 and 1.
    pub leader_epoch: Option<i32>,
    /// The timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Whether the producer or the broker set the timestamp.
    pub timestamp_type: TimestampType,
    /// The key, `None` when null.
    pub key: Option<Bytes>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<Bytes>,
    /// The headers in wire order, duplicates kept: (key, value).
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// How many times a share group has handed the record out, this time included (KIP-932:
    /// 1 the first time, more after a release or a lock that expired); `None` for a record
    /// read by a consumer, which no count follows.
    pub delivery_count: Option<u16>,
}

impl Record {
    /// A record of `topic`/`partition` at `offset` with `key` and `value`: no leader epoch,
    /// timestamp 0 (create time), no headers.
    ///
    /// ```
    /// let r = kcon_core::Record::new("orders", 0, 41, None, Some("v".into()))
    ///     .with_timestamp(1_700_000_000_000, kcon_codec::records::TimestampType::CreateTime)
    ///     .with_headers(vec![("trace".into(), Some("1".into()))]);
    /// assert_eq!(r.header("trace"), Some(Some(&"1".into())));
    /// ```
    #[inline]
    pub fn new(
        topic: impl Into<Topic>,
        partition: i32,
        offset: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> Record {
        Record {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: None,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key,
            value,
            headers: Vec::new(),
            delivery_count: None,
        }
    }

    /// The same record with this delivery count (a share group's; see
    /// [`delivery_count`](Self::delivery_count)).
    pub fn with_delivery_count(mut self, delivery_count: u16) -> Record {
        self.delivery_count = Some(delivery_count);
        self
    }

    /// The same record with this timestamp (ms since the epoch) and its type.
    pub fn with_timestamp(mut self, timestamp: i64, timestamp_type: TimestampType) -> Record {
        self.timestamp = timestamp;
        self.timestamp_type = timestamp_type;
        self
    }

    /// The same record with these headers, in order.
    pub fn with_headers(mut self, headers: Vec<(Bytes, Option<Bytes>)>) -> Record {
        self.headers = headers;
        self
    }

    /// The same record with this leader epoch.
    pub fn with_leader_epoch(mut self, leader_epoch: Option<i32>) -> Record {
        self.leader_epoch = leader_epoch;
        self
    }

    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.as_str(), self.partition)
    }

    /// The value of the last header named `key`, if any (`Some(None)` for a null value).
    pub fn header(&self, key: &str) -> Option<Option<&Bytes>> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == key.as_bytes())
            .map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kcon_codec::records::TimestampType;

    use super::*;
    use crate::partition::TopicPartition;

    fn record(headers: Vec<(Bytes, Option<Bytes>)>) -> Record {
        Record::new("orders", 3, 42, Some(Bytes::from_static(b"k")), None)
            .with_leader_epoch(Some(7))
            .with_timestamp(1_700_000_000_000, TimestampType::CreateTime)
            .with_headers(headers)
    }

    #[test]
    fn a_record_keeps_every_field_it_is_made_with() {
        let r = record(vec![(Bytes::from_static(b"h"), None)]);
        assert_eq!(r.topic_partition(), TopicPartition::new("orders", 3));
        assert_eq!((r.offset, r.leader_epoch), (42, Some(7)));
        assert_eq!(r.timestamp, 1_700_000_000_000);
        assert_eq!(r.timestamp_type, TimestampType::CreateTime);
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value, None);
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn the_last_header_of_a_name_wins() {
        let r = record(vec![
            (Bytes::from_static(b"trace"), Some(Bytes::from_static(b"a"))),
            (Bytes::from_static(b"other"), None),
            (Bytes::from_static(b"trace"), Some(Bytes::from_static(b"b"))),
            (Bytes::from_static(b"null"), None),
        ]);
        assert_eq!(r.header("trace"), Some(Some(&Bytes::from_static(b"b"))));
        assert_eq!(r.header("null"), Some(None));
        assert_eq!(r.header("missing"), None);
    }
}
