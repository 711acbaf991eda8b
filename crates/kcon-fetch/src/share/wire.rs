//! ShareFetch and ShareAcknowledge in kafka-protocol's types: v1, and v2 through
//! kcon-codec's `share_v2` (kafka-protocol's v1 message with the fields v2 adds).

use kcon_codec::kafka_protocol::messages::GroupId;
use kcon_codec::kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AcknowledgeBatch,
    ShareAcknowledgeRequest,
};
use kcon_codec::kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic, ForgottenTopic, ShareFetchRequest,
};
use kcon_codec::share_v2::{ShareAcknowledgeRequestV2, ShareFetchRequestV2};
use kcon_core::TopicId;
use kcon_core::wire::{VersionError, str_bytes as s};

use super::messages::{AcknowledgementRange, ShareAcknowledge, ShareFetch, SharePartitionRequest};
use crate::session::wire::set_uuid;

/// The versions of ShareFetch and ShareAcknowledge kcon speaks.
pub const SHARE_VERSIONS: (i16, i16) = (1, 2);

fn check(api: &str, version: i16) -> Result<(), VersionError> {
    let (min, max) = SHARE_VERSIONS;
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(VersionError(format!(
            "kcon speaks {api} v{min}-v{max}, not v{version}"
        )))
    }
}

/// The partitions grouped by topic id, in order of first appearance: each topic with its
/// partitions as `make` builds them.
fn by_topic<P>(partitions: impl IntoIterator<Item = (TopicId, P)>) -> Vec<(TopicId, Vec<P>)> {
    let mut out: Vec<(TopicId, Vec<P>)> = Vec::new();
    for (id, p) in partitions {
        match out.iter_mut().find(|(t, _)| *t == id) {
            Some((_, ps)) => ps.push(p),
            None => out.push((id, vec![p])),
        }
    }
    out
}

fn types(r: &AcknowledgementRange) -> Vec<i8> {
    vec![r.kind.code()]
}

/// ShareFetch at `version` (1 or 2). The acquire mode goes from v2; v1 acquires whole
/// batches whatever the mode (the caller says so to the user).
pub fn share_fetch_request(
    f: &ShareFetch,
    version: i16,
) -> Result<ShareFetchRequestV2, VersionError> {
    check("ShareFetch", version)?;
    let mut r = ShareFetchRequest::default();
    r.group_id = Some(GroupId(s(&f.group_id)));
    r.member_id = Some(s(&f.member_id));
    r.share_session_epoch = f.epoch;
    r.max_wait_ms = f.max_wait_ms;
    r.min_bytes = f.min_bytes;
    r.max_bytes = f.max_bytes;
    r.max_records = f.max_records;
    r.batch_size = f.batch_size;
    r.topics = by_topic(
        f.partitions
            .iter()
            .map(|p| (p.topic_id, fetch_partition(p))),
    )
    .into_iter()
    .map(|(id, partitions)| {
        let mut t = FetchTopic::default();
        set_uuid(&mut t.topic_id, Some(id));
        t.partitions = partitions;
        t
    })
    .collect();
    r.forgotten_topics_data = by_topic(f.forgotten.iter().map(|(tp, id)| (*id, tp.partition)))
        .into_iter()
        .map(|(id, partitions)| {
            let mut t = ForgottenTopic::default();
            set_uuid(&mut t.topic_id, Some(id));
            t.partitions = partitions;
            t
        })
        .collect();
    Ok(ShareFetchRequestV2 {
        body: r,
        share_acquire_mode: if version >= 2 {
            f.acquire_mode.code()
        } else {
            0
        },
        is_renew_ack: false,
    })
}

fn fetch_partition(p: &SharePartitionRequest) -> FetchPartition {
    let mut fp = FetchPartition::default();
    fp.partition_index = p.partition.partition;
    fp.acknowledgement_batches = p
        .acknowledgements
        .iter()
        .map(|a| {
            let mut b = AcknowledgementBatch::default();
            b.first_offset = a.first;
            b.last_offset = a.last;
            b.acknowledge_types = types(a);
            b
        })
        .collect();
    fp
}

/// ShareAcknowledge at `version` (1 or 2). Renewals need v2: at v1 the caller sends none (see
/// the share task).
pub fn share_acknowledge_request(
    a: &ShareAcknowledge,
    version: i16,
) -> Result<ShareAcknowledgeRequestV2, VersionError> {
    check("ShareAcknowledge", version)?;
    let mut r = ShareAcknowledgeRequest::default();
    r.group_id = Some(GroupId(s(&a.group_id)));
    r.member_id = Some(s(&a.member_id));
    r.share_session_epoch = a.epoch;
    r.topics = by_topic(a.partitions.iter().map(|p| {
        let mut ap = AcknowledgePartition::default();
        ap.partition_index = p.partition.partition;
        ap.acknowledgement_batches = p
            .acknowledgements
            .iter()
            .map(|r| {
                let mut b = AcknowledgeBatch::default();
                b.first_offset = r.first;
                b.last_offset = r.last;
                b.acknowledge_types = types(r);
                b
            })
            .collect();
        (p.topic_id, ap)
    }))
    .into_iter()
    .map(|(id, partitions)| {
        let mut t = AcknowledgeTopic::default();
        set_uuid(&mut t.topic_id, Some(id));
        t.partitions = partitions;
        t
    })
    .collect();
    Ok(ShareAcknowledgeRequestV2 {
        body: r,
        is_renew_ack: a.renew && version >= 2,
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kcon_codec::kafka_protocol::protocol::{Decodable, Encodable};
    use kcon_core::TopicPartition;

    use super::super::messages::{AcknowledgeType, AcquireMode};
    use super::*;

    fn partition(
        t: &str,
        p: i32,
        id: u8,
        acks: &[(i64, i64, AcknowledgeType)],
    ) -> SharePartitionRequest {
        SharePartitionRequest {
            partition: TopicPartition::new(t, p),
            topic_id: TopicId([id; 16]),
            acknowledgements: acks
                .iter()
                .map(|&(first, last, kind)| AcknowledgementRange { first, last, kind })
                .collect(),
        }
    }

    /// A ShareFetch groups partitions by topic id, carries each range with its one type, and
    /// lists forgotten partitions; only v1 is built.
    #[test]
    fn share_fetch_round_trips() {
        let f = ShareFetch {
            group_id: "g".into(),
            member_id: "m".into(),
            epoch: 3,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            max_records: 500,
            batch_size: 500,
            acquire_mode: AcquireMode::RecordLimit,
            partitions: vec![
                partition(
                    "a",
                    0,
                    1,
                    &[
                        (0, 4, AcknowledgeType::Accept),
                        (5, 5, AcknowledgeType::Gap),
                    ],
                ),
                partition("b", 0, 2, &[]),
                partition("a", 1, 1, &[(9, 9, AcknowledgeType::Reject)]),
            ],
            forgotten: vec![(TopicPartition::new("c", 2), TopicId([3; 16]))],
        };
        let r = share_fetch_request(&f, 1).unwrap();
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        let back = ShareFetchRequest::decode(&mut buf.freeze(), 1).unwrap();
        assert_eq!(back.share_session_epoch, 3);
        assert_eq!(back.max_records, 500);
        assert_eq!(back.member_id.as_deref(), Some("m"));
        assert_eq!(back.topics.len(), 2);
        assert_eq!(*back.topics[0].topic_id.as_bytes(), [1; 16]);
        let a = &back.topics[0].partitions;
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].acknowledgement_batches.len(), 2);
        assert_eq!(a[0].acknowledgement_batches[0].acknowledge_types, [1]);
        assert_eq!(a[0].acknowledgement_batches[1].acknowledge_types, [0]);
        assert_eq!(a[1].acknowledgement_batches[0].acknowledge_types, [3]);
        assert_eq!(back.forgotten_topics_data[0].partitions, [2]);
        // v1 acquires whole batches: the mode is not sent.
        assert_eq!(r.share_acquire_mode, 0);
        // v2 sends it.
        let r2 = share_fetch_request(&f, 2).unwrap();
        let mut buf = BytesMut::new();
        r2.encode(&mut buf, 2).unwrap();
        let back2 = ShareFetchRequestV2::decode(&mut buf.freeze(), 2).unwrap();
        assert_eq!(back2.share_acquire_mode, 1);
        assert!(!back2.is_renew_ack);
        assert_eq!(back2.body, back);
        assert!(share_fetch_request(&f, 3).is_err());
        assert!(share_fetch_request(&f, 0).is_err());
    }

    /// ShareAcknowledge carries the epoch and each partition's ranges.
    #[test]
    fn share_acknowledge_round_trips() {
        let a = ShareAcknowledge {
            group_id: "g".into(),
            member_id: "m".into(),
            epoch: -1,
            renew: false,
            partitions: vec![partition("a", 0, 1, &[(7, 8, AcknowledgeType::Release)])],
        };
        let r = share_acknowledge_request(&a, 1).unwrap();
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        let back = ShareAcknowledgeRequest::decode(&mut buf.freeze(), 1).unwrap();
        assert_eq!(back.share_session_epoch, -1);
        let b = &back.topics[0].partitions[0].acknowledgement_batches[0];
        assert_eq!((b.first_offset, b.last_offset), (7, 8));
        assert_eq!(b.acknowledge_types, [2]);
        let r2 = share_acknowledge_request(&a, 2).unwrap();
        let mut buf = BytesMut::new();
        r2.encode(&mut buf, 2).unwrap();
        let back2 = ShareAcknowledgeRequestV2::decode(&mut buf.freeze(), 2).unwrap();
        assert_eq!(back2.body, back);
        assert!(share_acknowledge_request(&a, 3).is_err());
    }
}
