//! A group's committed offsets in kafka-protocol's types, for the version a broker speaks:
//! OffsetCommit and OffsetFetch, which more than one part sends (kcon-offsets' commit machine
//! for its member, kcon-admin's calls from outside the group). Fields a version lacks are left
//! out (kafka-protocol refuses a request that sets them), and what a version cannot express is
//! an error rather than a silently different request.
//!
//! OffsetFetch is one conversion for one group or several (KIP-709): the commit machine asks
//! for its own group, kcon-admin for several groups per coordinator.

use std::collections::{BTreeMap, BTreeSet};

use kcon_codec::kafka_protocol::messages::GroupId;
use kcon_codec::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kcon_codec::kafka_protocol::messages::offset_commit_response::OffsetCommitResponse;
use kcon_codec::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kcon_codec::kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use kcon_codec::kafka_protocol::protocol::StrBytes;

use crate::partition::TopicPartition;
use crate::wire::{VersionError, by_topic, epoch, str_bytes as s, topic_name};

/// An offset to commit, or one that was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The offset of the next record to consume (a processed record's offset + 1).
    pub offset: i64,
    /// The leader epoch of the last consumed record (OffsetCommit v6+, KIP-320), so that a
    /// consumer starting from this offset can detect log truncation.
    pub leader_epoch: Option<i32>,
    /// Application metadata kept with the offset.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// `offset` with no leader epoch and no metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata {
            offset,
            leader_epoch: None,
            metadata: String::new(),
        }
    }
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The group id.
    pub group_id: String,
    /// The member's generation; -1 for a commit from outside the group (an inactive group).
    pub generation_id: i32,
    /// The member id; empty from outside the group.
    pub member_id: String,
    /// `group.instance.id` (v7+).
    pub group_instance_id: Option<String>,
    /// The offsets.
    pub offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

/// An OffsetFetch request for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRequest {
    /// The group id.
    pub group_id: String,
    /// The partitions; `None` for every partition the group has an offset for (v2+).
    pub partitions: Option<BTreeSet<TopicPartition>>,
    /// Ask the coordinator to answer UNSTABLE_OFFSET_COMMIT for partitions with pending
    /// transactional offsets (v7+, KIP-447); set under read_committed.
    pub require_stable: bool,
}

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    /// The error code.
    pub error_code: i16,
    /// The committed offset; `None` when the group has none (offset -1 on the wire).
    pub committed: Option<OffsetAndMetadata>,
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
pub fn offset_commit_response(r: OffsetCommitResponse) -> BTreeMap<TopicPartition, i16> {
    let mut partitions = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            partitions.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                p.error_code,
            );
        }
    }
    partitions
}

/// OffsetFetch for one group at `version` (kcon speaks v1–v9), and whether `require_stable`
/// had to be dropped.
///
/// Before v7 there is no `require_stable`: like the Java client by default
/// (`OffsetFetchRequest.Builder` without `throwOnFetchStableOffsetsUnsupported`), the request
/// goes without it, and the caller logs that transactional offsets may be read unstable. All
/// partitions (`None`) needs v2. From v8 the group goes in the `groups` array (KIP-709).
pub fn offset_fetch_request(
    f: &CommittedRequest,
    version: i16,
) -> Result<(OffsetFetchRequest, bool), VersionError> {
    offset_fetch_groups_request(
        &[f.group_id.as_str()],
        f.partitions.as_ref(),
        f.require_stable,
        version,
    )
}

/// OffsetFetch for `group_ids`, each asking for `partitions` (`None`: every partition the
/// group has an offset for), and whether `require_stable` had to be dropped, as in
/// [`offset_fetch_request`]. From v8 (KIP-709) the groups go together in the `groups` array;
/// before v8 a request holds exactly one group, so more is an error.
pub fn offset_fetch_groups_request(
    group_ids: &[&str],
    partitions: Option<&BTreeSet<TopicPartition>>,
    require_stable: bool,
    version: i16,
) -> Result<(OffsetFetchRequest, bool), VersionError> {
    if version < 1 {
        return Err(VersionError(format!(
            "OffsetFetch v{version}: kcon speaks v1 and later"
        )));
    }
    if partitions.is_none() && version < 2 {
        return Err(VersionError(
            "fetching all of a group's offsets needs OffsetFetch v2".into(),
        ));
    }
    let mut r = OffsetFetchRequest::default();
    let dropped_stable = require_stable && version < 7;
    if version >= 7 {
        r.require_stable = require_stable;
    }
    let grouped = partitions.map(|ps| by_topic(ps.iter().map(|tp| (tp, ()))));
    // The topics of a request (`OffsetFetchRequestTopic` before v8, `...Topics` in a v8+
    // group: the same fields in two types).
    macro_rules! fetch_topics {
        ($ty:ty, $grouped:expr) => {
            $grouped.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|(topic, ps)| {
                        let mut t = <$ty>::default();
                        t.name = topic_name(topic);
                        t.partition_indexes = ps.iter().map(|(p, ())| *p).collect();
                        t
                    })
                    .collect()
            })
        };
    }
    if version >= 8 {
        r.groups = group_ids
            .iter()
            .map(|group_id| {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = GroupId(s(group_id));
                g.topics = fetch_topics!(OffsetFetchRequestTopics, &grouped);
                g
            })
            .collect();
        return Ok((r, dropped_stable));
    }
    let [group_id] = group_ids else {
        return Err(VersionError(format!(
            "OffsetFetch for {} groups in one request needs v8 (KIP-709); the coordinator speaks up to v{version}",
            group_ids.len()
        )));
    };
    r.group_id = GroupId(s(group_id));
    r.topics = fetch_topics!(OffsetFetchRequestTopic, &grouped);
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
) -> GroupFetchAnswer {
    offset_fetch_groups_response(&[group_id], r, version)
        .remove(group_id)
        .unwrap_or_default()
}

/// One group's part of an OffsetFetch answer: its error code and its partitions.
pub type GroupFetchAnswer = (i16, BTreeMap<TopicPartition, PartitionOffset>);

/// An OffsetFetch answer for each of `group_ids`, the groups asked with
/// [`offset_fetch_groups_request`]. From v8 each group has its own error code and partitions,
/// and a group the answer leaves out is COORDINATOR_NOT_AVAILABLE (15, retriable); before v8
/// the answer is the one group's.
pub fn offset_fetch_groups_response(
    group_ids: &[&str],
    r: OffsetFetchResponse,
    version: i16,
) -> BTreeMap<String, GroupFetchAnswer> {
    // The partitions of an answer (`OffsetFetchResponseTopic` before v8, `...Topics` in a v8+
    // group: the same fields in two types).
    macro_rules! fetched_partitions {
        ($topics:expr) => {
            $topics
                .into_iter()
                .flat_map(|t| {
                    t.partitions.into_iter().map(move |p| {
                        (
                            TopicPartition::new(t.name.0.to_string(), p.partition_index),
                            partition_offset(
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.metadata.as_ref(),
                                p.error_code,
                            ),
                        )
                    })
                })
                .collect()
        };
    }
    let mut out: BTreeMap<String, GroupFetchAnswer> = group_ids
        .iter()
        .map(|g| ((*g).to_owned(), (15, BTreeMap::new())))
        .collect();
    if version < 8 {
        let partitions = fetched_partitions!(r.topics);
        if let Some(g) = group_ids.first() {
            out.insert((*g).to_owned(), (r.error_code, partitions));
        }
        return out;
    }
    for g in r.groups {
        let Some(entry) = out.get_mut(g.group_id.0.as_str()) else {
            continue;
        };
        let partitions = fetched_partitions!(g.topics);
        *entry = (g.error_code, partitions);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::assert_encodes as encodes;

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
        let f = CommittedRequest {
            group_id: "g".into(),
            partitions: Some(commit(None).offsets.keys().cloned().collect()),
            require_stable: true,
        };
        for v in 1..=9 {
            let (r, dropped) = offset_fetch_request(&f, v).unwrap();
            assert_eq!(dropped, v < 7);
            encodes(&r, v);
        }
        let all = CommittedRequest {
            partitions: None,
            ..f
        };
        assert!(offset_fetch_request(&all, 1).is_err());
        for v in 2..=9 {
            encodes(&offset_fetch_request(&all, v).unwrap().0, v);
        }
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
        let (error_code, partitions) = offset_fetch_response("g", r.clone(), 8);
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
        assert_eq!(offset_fetch_response("other", r, 8).0, 15);
    }

    fn asked() -> BTreeSet<TopicPartition> {
        [
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 1),
            TopicPartition::new("b", 0),
        ]
        .into()
    }

    /// From v8 several groups go in one request's `groups` array, each asking for the same
    /// partitions (or all), with `require_stable`; below v8 a request holds one group at the
    /// top level, and several are refused.
    #[test]
    fn several_groups_in_one_request_from_v8() {
        let ps = asked();
        for v in 8..=9 {
            let (r, dropped) =
                offset_fetch_groups_request(&["g1", "g2"], Some(&ps), true, v).unwrap();
            assert!(!dropped && r.require_stable);
            assert!(r.group_id.0.is_empty());
            assert_eq!(r.topics, OffsetFetchRequest::default().topics);
            let ids: Vec<_> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
            assert_eq!(ids, ["g1", "g2"]);
            for g in &r.groups {
                let topics = g.topics.as_ref().expect("the asked partitions");
                let got: Vec<_> = topics
                    .iter()
                    .map(|t| (t.name.0.as_str(), t.partition_indexes.clone()))
                    .collect();
                assert_eq!(got, [("a", vec![0, 1]), ("b", vec![0])]);
            }
            encodes(&r, v);
            let (all, _) = offset_fetch_groups_request(&["g1", "g2"], None, false, v).unwrap();
            assert!(all.groups.iter().all(|g| g.topics.is_none()));
            encodes(&all, v);
        }
        // The fallback: one group per request below v8.
        let (r, dropped) = offset_fetch_groups_request(&["g1"], Some(&ps), true, 7).unwrap();
        assert!(!dropped && r.require_stable);
        assert_eq!(r.group_id.0.as_str(), "g1");
        assert!(r.groups.is_empty());
        assert_eq!(r.topics.as_ref().map(Vec::len), Some(2));
        encodes(&r, 7);
        let (r, dropped) = offset_fetch_groups_request(&["g1"], Some(&ps), true, 6).unwrap();
        assert!(dropped && !r.require_stable);
        encodes(&r, 6);
        for v in [1, 6, 7] {
            let e = offset_fetch_groups_request(&["g1", "g2"], Some(&ps), false, v).unwrap_err();
            assert!(e.0.contains("needs v8"), "{e:?}");
        }
    }

    /// A v8/v9 answer: each group its own error code and partitions; a group-level error in
    /// one group leaves the others' offsets intact; a group the answer leaves out is
    /// COORDINATOR_NOT_AVAILABLE; a group not asked for is ignored. Below v8 the answer is the
    /// one group's.
    #[test]
    fn several_groups_answers_with_per_group_errors() {
        use kcon_codec::kafka_protocol::messages::offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        };
        let group = |id: &str, error_code: i16, offsets: &[(i32, i64, i16)]| {
            let mut t = OffsetFetchResponseTopics::default();
            t.name = topic_name("a");
            t.partitions = offsets
                .iter()
                .map(|&(partition, offset, error_code)| {
                    let mut p = OffsetFetchResponsePartitions::default();
                    p.partition_index = partition;
                    p.committed_offset = offset;
                    p.committed_leader_epoch = -1;
                    p.error_code = error_code;
                    p
                })
                .collect();
            let mut g = OffsetFetchResponseGroup::default();
            g.group_id = GroupId(s(id));
            g.error_code = error_code;
            g.topics = vec![t];
            g
        };
        let mut r = OffsetFetchResponse::default();
        r.groups = vec![
            group("g2", 30, &[]),
            group("g1", 0, &[(0, 5, 0), (1, -1, 0), (2, -1, 88)]),
            group("not-asked", 0, &[(0, 1, 0)]),
        ];
        for v in 8..=9 {
            let got = offset_fetch_groups_response(&["g1", "g2", "g3"], r.clone(), v);
            assert_eq!(
                got.keys().map(String::as_str).collect::<Vec<_>>(),
                ["g1", "g2", "g3"]
            );
            let (error_code, g1) = &got["g1"];
            assert_eq!(*error_code, 0);
            assert_eq!(
                g1[&TopicPartition::new("a", 0)].committed,
                Some(OffsetAndMetadata::new(5))
            );
            assert_eq!(g1[&TopicPartition::new("a", 1)].committed, None);
            assert_eq!(g1[&TopicPartition::new("a", 2)].error_code, 88);
            assert_eq!(got["g2"], (30, BTreeMap::new()));
            assert_eq!(got["g3"], (15, BTreeMap::new()));
        }
        // v7: the top-level answer is the one group's.
        let mut old = OffsetFetchResponse::default().with_topics(vec![
            OffsetFetchResponseTopic::default()
                .with_name(topic_name("b"))
                .with_partitions(vec![
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(3)
                        .with_committed_offset(11)
                        .with_committed_leader_epoch(4)
                        .with_metadata(Some(s("m"))),
                ]),
        ]);
        let got = offset_fetch_groups_response(&["g1"], old.clone(), 7);
        let (error_code, g1) = &got["g1"];
        assert_eq!(*error_code, 0);
        assert_eq!(
            g1[&TopicPartition::new("b", 3)].committed,
            Some(OffsetAndMetadata {
                offset: 11,
                leader_epoch: Some(4),
                metadata: "m".into()
            })
        );
        old.error_code = 16;
        assert_eq!(offset_fetch_groups_response(&["g1"], old, 7)["g1"].0, 16);
    }
}
