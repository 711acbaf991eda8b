//! The offset messages in kafka-protocol's types, for the version a broker speaks: fields a
//! version lacks are left out (kafka-protocol refuses a request that sets them), and what a
//! version cannot express is an error rather than a silently different request.

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kcon_codec::kafka_protocol::messages::describe_groups_response::DescribeGroupsResponse;
use kcon_codec::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kcon_codec::kafka_protocol::messages::list_groups_response::ListGroupsResponse;
use kcon_codec::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kcon_codec::kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
use kcon_codec::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kcon_codec::kafka_protocol::messages::offset_commit_response::OffsetCommitResponse;
use kcon_codec::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kcon_codec::kafka_protocol::messages::offset_delete_response::OffsetDeleteResponse;
use kcon_codec::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kcon_codec::kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use kcon_codec::kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;

use crate::TopicPartition;
use crate::admin::{GroupDescription, GroupMemberDescription, ListedGroup, ListedOffset};
use crate::config::IsolationLevel;
use crate::messages::{
    CommitRequest, FetchRequest, OffsetAndMetadata, OffsetsResponse, PartitionOffset,
};
use crate::positions::OffsetSpec;

/// Why a request cannot be sent at the version the broker speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError(pub String);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn epoch(e: i32) -> Option<i32> {
    (e >= 0).then_some(e)
}

/// Groups `items` by topic, keeping partition order (the maps are sorted by topic then
/// partition, so each topic's partitions are adjacent).
fn by_topic<'a, T: 'a>(
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

/// OffsetCommit at `version` (kcon speaks v2–v9). The retention time is left to the broker
/// (-1, v2–v4); the leader epoch goes from v6 (KIP-320); `group.instance.id` needs v7
/// (KIP-345).
pub fn offset_commit_request(
    c: &CommitRequest,
    version: i16,
) -> Result<OffsetCommitRequest, VersionError> {
    if version < 2 {
        return Err(VersionError(format!(
            "OffsetCommit v{version}: kcon speaks v2 and later"
        )));
    }
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(&c.group_id));
    r.generation_id_or_member_epoch = c.generation_id;
    r.member_id = s(&c.member_id);
    if let Some(instance) = &c.group_instance_id {
        if version < 7 {
            return Err(VersionError(format!(
                "group.instance.id needs OffsetCommit v7 (KIP-345); the coordinator speaks up to v{version}"
            )));
        }
        r.group_instance_id = Some(s(instance));
    }
    r.topics = by_topic(&c.offsets)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = topic_name(topic);
            t.partitions = partitions
                .into_iter()
                .map(|(partition, o)| {
                    let mut p = OffsetCommitRequestPartition::default();
                    p.partition_index = partition;
                    p.committed_offset = o.offset;
                    if version >= 6 {
                        p.committed_leader_epoch = o.leader_epoch.unwrap_or(-1);
                    }
                    p.committed_metadata = Some(s(&o.metadata));
                    p
                })
                .collect();
            t
        })
        .collect();
    Ok(r)
}

/// An OffsetCommit answer: each partition's error code.
pub fn offset_commit_response(r: OffsetCommitResponse) -> OffsetsResponse {
    let mut partitions = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            partitions.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                p.error_code,
            );
        }
    }
    OffsetsResponse::OffsetCommit { partitions }
}

/// OffsetFetch for one group at `version` (kcon speaks v1–v9), and whether `require_stable`
/// had to be dropped.
///
/// Before v7 there is no `require_stable`: like the Java client by default
/// (`OffsetFetchRequest.Builder` without `throwOnFetchStableOffsetsUnsupported`), the request
/// goes without it, and the caller logs that transactional offsets may be read unstable. All
/// partitions (`None`) needs v2. From v8 the group goes in the `groups` array (KIP-709).
pub fn offset_fetch_request(
    f: &FetchRequest,
    version: i16,
) -> Result<(OffsetFetchRequest, bool), VersionError> {
    if version < 1 {
        return Err(VersionError(format!(
            "OffsetFetch v{version}: kcon speaks v1 and later"
        )));
    }
    if f.partitions.is_none() && version < 2 {
        return Err(VersionError(
            "fetching all of a group's offsets needs OffsetFetch v2".into(),
        ));
    }
    let mut r = OffsetFetchRequest::default();
    let dropped_stable = f.require_stable && version < 7;
    if version >= 7 {
        r.require_stable = f.require_stable;
    }
    let grouped = f
        .partitions
        .as_ref()
        .map(|ps| by_topic(ps.iter().map(|tp| (tp, ()))));
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(s(&f.group_id));
        g.topics = grouped.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, ps)| {
                    let mut t = OffsetFetchRequestTopics::default();
                    t.name = topic_name(topic);
                    t.partition_indexes = ps.into_iter().map(|(p, ())| p).collect();
                    t
                })
                .collect()
        });
        r.groups = vec![g];
    } else {
        r.group_id = GroupId(s(&f.group_id));
        r.topics = grouped.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, ps)| {
                    let mut t = OffsetFetchRequestTopic::default();
                    t.name = topic_name(topic);
                    t.partition_indexes = ps.into_iter().map(|(p, ())| p).collect();
                    t
                })
                .collect()
        });
    }
    Ok((r, dropped_stable))
}

fn partition_offset(
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
    error_code: i16,
) -> PartitionOffset {
    PartitionOffset {
        error_code,
        committed: (offset >= 0).then(|| OffsetAndMetadata {
            offset,
            leader_epoch: epoch(leader_epoch),
            metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
        }),
    }
}

/// An OffsetFetch answer for `group_id` (v8+: that group's entry; an answer that leaves it out
/// is COORDINATOR_NOT_AVAILABLE, which is retried).
pub fn offset_fetch_response(
    group_id: &str,
    r: OffsetFetchResponse,
    version: i16,
) -> OffsetsResponse {
    let mut partitions = BTreeMap::new();
    if version >= 8 {
        let Some(g) = r
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group_id)
        else {
            return OffsetsResponse::OffsetFetch {
                error_code: 15,
                partitions,
            };
        };
        for t in g.topics {
            for p in t.partitions {
                partitions.insert(
                    TopicPartition::new(t.name.0.to_string(), p.partition_index),
                    partition_offset(
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata.as_ref(),
                        p.error_code,
                    ),
                );
            }
        }
        return OffsetsResponse::OffsetFetch {
            error_code: g.error_code,
            partitions,
        };
    }
    for t in r.topics {
        for p in t.partitions {
            partitions.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                partition_offset(
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.metadata.as_ref(),
                    p.error_code,
                ),
            );
        }
    }
    OffsetsResponse::OffsetFetch {
        error_code: r.error_code,
        partitions,
    }
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

/// DescribeGroups for `groups` (v0–v5).
pub fn describe_groups_request(groups: &[String]) -> DescribeGroupsRequest {
    let mut r = DescribeGroupsRequest::default();
    r.groups = groups.iter().map(|g| GroupId(s(g))).collect();
    r
}

/// A DescribeGroups answer.
pub fn describe_groups_response(r: DescribeGroupsResponse) -> Vec<GroupDescription> {
    r.groups
        .into_iter()
        .map(|g| GroupDescription {
            group_id: g.group_id.0.to_string(),
            error_code: g.error_code,
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    metadata: m.member_metadata,
                    assignment: m.member_assignment,
                })
                .collect(),
        })
        .collect()
}

/// ListGroups (v0–v5), all states and types.
pub fn list_groups_request() -> ListGroupsRequest {
    ListGroupsRequest::default()
}

/// A ListGroups answer: its error code and groups.
pub fn list_groups_response(r: ListGroupsResponse) -> (i16, Vec<ListedGroup>) {
    let groups = r
        .groups
        .into_iter()
        .map(|g| ListedGroup {
            group_id: g.group_id.0.to_string(),
            protocol_type: g.protocol_type.to_string(),
            state: (!g.group_state.is_empty()).then(|| g.group_state.to_string()),
        })
        .collect();
    (r.error_code, groups)
}

/// OffsetDelete (v0, KIP-496) for `partitions` of `group_id`.
pub fn offset_delete_request(group_id: &str, partitions: &[TopicPartition]) -> OffsetDeleteRequest {
    let mut sorted = partitions.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut r = OffsetDeleteRequest::default();
    r.group_id = GroupId(s(group_id));
    r.topics = by_topic(sorted.iter().map(|tp| (tp, ())))
        .into_iter()
        .map(|(topic, ps)| {
            let mut t = OffsetDeleteRequestTopic::default();
            t.name = topic_name(topic);
            t.partitions = ps
                .into_iter()
                .map(|(p, ())| {
                    let mut x = OffsetDeleteRequestPartition::default();
                    x.partition_index = p;
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}

/// An OffsetDelete answer: the group's error code and each partition's.
pub fn offset_delete_response(r: OffsetDeleteResponse) -> (i16, BTreeMap<TopicPartition, i16>) {
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            out.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                p.error_code,
            );
        }
    }
    (r.error_code, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcon_codec::kafka_protocol::protocol::{Encodable, Request};

    fn encodes<R: Request + Encodable>(r: &R, version: i16) {
        let mut b = bytes::BytesMut::new();
        r.encode(&mut b, version)
            .unwrap_or_else(|e| panic!("{} v{version}: {e}", std::any::type_name::<R>()));
    }

    fn commit(instance: Option<&str>) -> CommitRequest {
        let mut offsets = BTreeMap::new();
        offsets.insert(
            TopicPartition::new("a", 1),
            OffsetAndMetadata {
                offset: 5,
                leader_epoch: Some(3),
                metadata: "m".into(),
            },
        );
        offsets.insert(TopicPartition::new("a", 0), OffsetAndMetadata::new(2));
        offsets.insert(TopicPartition::new("b", 0), OffsetAndMetadata::new(9));
        CommitRequest {
            group_id: "g".into(),
            generation_id: 4,
            member_id: "m".into(),
            group_instance_id: instance.map(Into::into),
            offsets,
        }
    }

    #[test]
    fn every_version_encodes() {
        for v in 2..=9 {
            let r = offset_commit_request(&commit(None), v).unwrap();
            assert_eq!(r.topics.len(), 2);
            assert_eq!(r.topics[0].partitions.len(), 2);
            assert_eq!(
                r.topics[0].partitions[1].committed_leader_epoch,
                if v >= 6 { 3 } else { -1 }
            );
            encodes(&r, v);
        }
        for v in 7..=9 {
            encodes(&offset_commit_request(&commit(Some("i")), v).unwrap(), v);
        }
        assert!(
            offset_commit_request(&commit(Some("i")), 6)
                .unwrap_err()
                .0
                .contains("group.instance.id")
        );
        let f = FetchRequest {
            group_id: "g".into(),
            partitions: Some(commit(None).offsets.keys().cloned().collect()),
            require_stable: true,
        };
        for v in 1..=9 {
            let (r, dropped) = offset_fetch_request(&f, v).unwrap();
            assert_eq!(dropped, v < 7);
            encodes(&r, v);
        }
        let all = FetchRequest {
            partitions: None,
            ..f
        };
        assert!(offset_fetch_request(&all, 1).is_err());
        for v in 2..=9 {
            encodes(&offset_fetch_request(&all, v).unwrap().0, v);
        }
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
        for v in 0..=5 {
            encodes(&describe_groups_request(&["g".into()]), v);
            encodes(&list_groups_request(), v);
        }
        encodes(
            &offset_delete_request("g", &[TopicPartition::new("a", 0)]),
            0,
        );
    }

    #[test]
    fn fetch_answers_map_minus_one_to_no_offset() {
        use kcon_codec::kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
        };
        let mut p = OffsetFetchResponsePartitions::default();
        p.partition_index = 0;
        p.committed_offset = -1;
        let mut q = OffsetFetchResponsePartitions::default();
        q.partition_index = 1;
        q.committed_offset = 7;
        q.committed_leader_epoch = 2;
        q.metadata = Some(s("meta"));
        let mut t = OffsetFetchResponseTopics::default();
        t.name = topic_name("a");
        t.partitions = vec![p, q];
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = GroupId(s("g"));
        g.topics = vec![t];
        let mut r = OffsetFetchResponse::default();
        r.groups = vec![g];
        let OffsetsResponse::OffsetFetch {
            error_code,
            partitions,
        } = offset_fetch_response("g", r.clone(), 8)
        else {
            panic!("not an OffsetFetch answer");
        };
        assert_eq!(error_code, 0);
        assert_eq!(partitions[&TopicPartition::new("a", 0)].committed, None);
        assert_eq!(
            partitions[&TopicPartition::new("a", 1)].committed,
            Some(OffsetAndMetadata {
                offset: 7,
                leader_epoch: Some(2),
                metadata: "meta".into()
            })
        );
        assert!(matches!(
            offset_fetch_response("other", r, 8),
            OffsetsResponse::OffsetFetch { error_code: 15, .. }
        ));
    }
}
