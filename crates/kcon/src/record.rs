//! The record handed to the application: the fetch layer's own, handed over without a copy.

pub use kcon_fetch::Record;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kcon_codec::records::TimestampType;

    use super::*;
    use crate::TopicPartition;

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
