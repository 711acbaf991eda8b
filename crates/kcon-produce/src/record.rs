//! What is sent and what comes back.

use bytes::Bytes;
use kcon_core::Topic;

/// A record to send.
///
/// ```
/// use kcon_produce::ProducerRecord;
///
/// let record = ProducerRecord::new("invoices", "paid")
///     .with_key("customer-7")
///     .with_header("source", Some("billing"))
///     .with_null_header("trace");
/// assert_eq!(record.partition, None);
/// assert_eq!(record.headers[1], ("trace".into(), None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerRecord {
    /// The topic ([`Topic`]: interned, held without a reference count).
    pub topic: Topic,
    /// The partition; `None` lets the partitioner choose (murmur2 of the key, or by the
    /// `partitioner` property for a null key).
    pub partition: Option<i32>,
    /// The key; `None` for null.
    pub key: Option<Bytes>,
    /// The value; `None` for null (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// The headers, in order; duplicate keys are kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    /// The create time in milliseconds since the epoch; `None` for the time of sending.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with `value` and no key for `topic` (see [`IntoTopic`]).
    pub fn new(topic: impl IntoTopic, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into_topic(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// The same record with this key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same record for this partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// The same record with a header added after the others; `None` for a null value (or
    /// [`with_null_header`](Self::with_null_header), which needs no type for the `None`).
    pub fn with_header(mut self, key: impl Into<Bytes>, value: Option<impl Into<Bytes>>) -> Self {
        self.headers.push((key.into(), value.map(Into::into)));
        self
    }

    /// The same record with a header whose value is null added after the others.
    pub fn with_null_header(mut self, key: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), None));
        self
    }

    /// The same record with this create time (milliseconds since the epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// An upper bound of the bytes the record takes in a magic-2 batch: its fields with the
    /// longest varints their lengths could need, as the Java client's
    /// `DefaultRecord.sizeInUpperBound` counts. What `batch.size`, `max.request.size` and
    /// `buffer.memory` are measured in.
    pub fn size_upper_bound(&self) -> usize {
        const VARINT: usize = 5;
        const VARLONG: usize = 10;
        let field = |b: Option<&Bytes>| VARINT + b.map_or(0, Bytes::len);
        // Length prefix, attributes, timestamp delta, offset delta, key, value, header count.
        let mut size = VARINT + 1 + VARLONG + VARINT + field(self.key.as_ref());
        size += field(self.value.as_ref()) + VARINT;
        for (k, v) in &self.headers {
            size += field(Some(k)) + field(v.as_ref());
        }
        size
    }
}

/// A topic name as a [`ProducerRecord`] takes it: a [`Topic`] (a consumed record's, or one
/// made once with [`Topic::new`]) as it is, anything else that names a topic (`&str`,
/// `String`, `Arc<str>`, ...) looked up in the process's interned names. A record holds its
/// topic without a reference count, so neither the sender's thread nor the producer's task
/// changes one per record.
///
/// ```
/// use kcon_produce::{ProducerRecord, Topic};
///
/// let topic = Topic::new("invoices");
/// let made = ProducerRecord::new(topic, "paid");
/// assert_eq!(made.topic, topic);
/// assert_eq!(ProducerRecord::new(String::from("invoices"), "paid").topic, topic);
/// // A consumed record's topic, passed on.
/// let consumed = kcon_core::Record::new("invoices", 0, 7, None, None);
/// assert_eq!(ProducerRecord::new(consumed.topic, "paid").topic, "invoices");
/// ```
pub trait IntoTopic {
    /// The topic.
    fn into_topic(self) -> Topic;
}

impl<T: Into<Topic>> IntoTopic for T {
    fn into_topic(self) -> Topic {
        self.into()
    }
}

/// A record the broker acknowledged with the configured `acks`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The topic: the record's own [`topic`](ProducerRecord::topic), handed back.
    pub topic: Topic,
    /// The partition it was written to.
    pub partition: i32,
    /// Its offset; `None` when the broker did not say: an idempotent retry answered
    /// DUPLICATE_SEQUENCE_NUMBER (the batch was written before, its offset is not repeated),
    /// or a broker that answers base offset -1.
    pub offset: Option<i64>,
    /// Its timestamp: the broker's log-append time on a topic with
    /// `message.timestamp.type=LogAppendTime`, else the create time that was sent.
    pub timestamp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_bound_covers_the_encoded_record() {
        use kcon_codec::records::{NewRecord, RecordBatchBuilder};
        let record = ProducerRecord::new("t", vec![7u8; 300])
            .with_key("k")
            .with_header("h", Some("v"))
            .with_null_header("n")
            .with_timestamp(i64::MAX);
        let mut b = RecordBatchBuilder::new(0);
        let empty = b.build().unwrap().len();
        let headers: Vec<(&[u8], Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        b.push(NewRecord {
            timestamp: 0,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
            ..NewRecord::default()
        });
        let one = b.build().unwrap().len() - empty;
        assert!(record.size_upper_bound() >= one);
        // Loose by the varints that came out shorter than their longest.
        assert!(record.size_upper_bound() <= one + 64, "{one}");
    }
}
