//! ListOffsets in kafka-protocol's types: the query a reset, a watermark or a timestamp
//! lookup sends to a partition's leader, and its answer per partition.

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::BrokerId;
use kcon_codec::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kcon_codec::kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;

use crate::offsets::{IsolationLevel, OffsetSpec};
use crate::partition::TopicPartition;
use crate::wire::{VersionError, by_topic, epoch, topic_name};

/// One partition of a ListOffsets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The error code (0 when the offset is valid).
    pub error_code: i16,
    /// The offset; -1 when a timestamp query found no record at or after the timestamp.
    pub offset: i64,
    /// The record's timestamp for timestamp and max-timestamp queries; -1 otherwise.
    pub timestamp: i64,
    /// The leader epoch of the offset (v4+).
    pub leader_epoch: Option<i32>,
}

/// ListOffsets at `version` (kcon speaks v1–v9) for `partitions`, each with its query and the
/// leader epoch the caller knows (v4+, KIP-320; the broker fences a stale one). Isolation
/// levels need v2, the max-timestamp query v7 (KIP-734).
pub fn list_offsets_request(
    partitions: &BTreeMap<TopicPartition, (OffsetSpec, Option<i32>)>,
    isolation: IsolationLevel,
    version: i16,
) -> Result<ListOffsetsRequest, VersionError> {
    if version < 1 {
        return Err(VersionError(format!(
            "ListOffsets v{version}: kcon speaks v1 and later"
        )));
    }
    let mut r = ListOffsetsRequest::default();
    r.replica_id = BrokerId(-1);
    if version >= 2 {
        r.isolation_level = isolation.code();
    } else if isolation == IsolationLevel::ReadCommitted {
        return Err(VersionError(
            "read_committed needs ListOffsets v2; the broker speaks v1".into(),
        ));
    }
    let mut topics = Vec::new();
    for (topic, ps) in by_topic(partitions) {
        let mut t = ListOffsetsTopic::default();
        t.name = topic_name(topic);
        for (partition, (spec, leader_epoch)) in ps {
            if *spec == OffsetSpec::MaxTimestamp && version < 7 {
                return Err(VersionError(format!(
                    "the max-timestamp query needs ListOffsets v7 (KIP-734); the broker speaks up to v{version}"
                )));
            }
            let mut p = ListOffsetsPartition::default();
            p.partition_index = partition;
            p.timestamp = spec.timestamp();
            if version >= 4 {
                p.current_leader_epoch = leader_epoch.unwrap_or(-1);
            }
            t.partitions.push(p);
        }
        topics.push(t);
    }
    r.topics = topics;
    Ok(r)
}

/// A ListOffsets answer, per partition.
pub fn list_offsets_response(r: ListOffsetsResponse) -> BTreeMap<TopicPartition, ListedOffset> {
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            out.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                ListedOffset {
                    error_code: p.error_code,
                    offset: p.offset,
                    timestamp: p.timestamp,
                    leader_epoch: epoch(p.leader_epoch),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::wire::assert_encodes as encodes;

    use super::*;

    #[test]
    fn every_version_encodes_and_what_a_version_lacks_is_refused() {
        let mut lo = BTreeMap::new();
        lo.insert(TopicPartition::new("a", 0), (OffsetSpec::Earliest, Some(1)));
        lo.insert(
            TopicPartition::new("a", 1),
            (OffsetSpec::Timestamp(1_000), None),
        );
        for v in 1..=9 {
            encodes(
                &list_offsets_request(&lo, IsolationLevel::ReadUncommitted, v).unwrap(),
                v,
            );
        }
        assert!(list_offsets_request(&lo, IsolationLevel::ReadCommitted, 1).is_err());
        lo.insert(
            TopicPartition::new("a", 2),
            (OffsetSpec::MaxTimestamp, None),
        );
        assert!(list_offsets_request(&lo, IsolationLevel::ReadCommitted, 6).is_err());
        encodes(
            &list_offsets_request(&lo, IsolationLevel::ReadCommitted, 7).unwrap(),
            7,
        );
    }
}
