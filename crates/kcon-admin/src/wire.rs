//! The admin-only messages in kafka-protocol's types: DescribeGroups, ConsumerGroupDescribe,
//! ShareGroupDescribe, DescribeShareGroupOffsets (v1 in kcon-codec's `share_offsets_v1`),
//! ListGroups, OffsetDelete, CreateTopics, DescribeConfigs and IncrementalAlterConfigs of a
//! group's configs, and the sessionless Fetch of the log probe. (OffsetCommit and OffsetFetch,
//! which the commit machine sends too, ListOffsets and FindCoordinator are `kcon_core`'s.)

use std::collections::BTreeMap;

use kcon_codec::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use kcon_codec::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kcon_codec::kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kcon_codec::kafka_protocol::messages::describe_groups_response::DescribeGroupsResponse;
use kcon_codec::kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kcon_codec::kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kcon_codec::kafka_protocol::messages::list_groups_response::ListGroupsResponse;
use kcon_codec::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kcon_codec::kafka_protocol::messages::offset_delete_response::OffsetDeleteResponse;
use kcon_codec::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, CreateTopicsRequest,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeShareGroupOffsetsRequest,
    FetchRequest, GroupId, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ShareGroupDescribeRequest, ShareGroupDescribeResponse,
};
use kcon_codec::share_offsets_v1::{
    DescribeShareGroupOffsetsRequestV1, DescribeShareGroupOffsetsResponseV1,
};
use kcon_core::wire::{VersionError, by_topic, str_bytes as s, topic_name};
use kcon_core::{IsolationLevel, TopicId, TopicPartition};

use crate::group_configs::{ConfigSource, ConfigSynonym, GroupConfigChange, GroupConfigEntry};
use crate::groups::{
    ConsumerGroupDescription, ConsumerGroupMember, GroupDescription, GroupMemberDescription,
    ListedGroup,
};
use crate::share::{
    ShareGroupDescription, ShareGroupMember, ShareGroupStarts, SharePartitionStart,
};
use crate::topics::NewTopic;

/// A topic as a describe answer names it: by name, or by its id where the name is empty (a
/// topic deleted meanwhile, or one the broker could not name).
fn named(name: &str, id: &[u8; 16]) -> String {
    if name.is_empty() {
        TopicId(*id).to_string()
    } else {
        name.to_owned()
    }
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

/// ConsumerGroupDescribe for `groups` (v0–v1), without authorized operations.
pub fn consumer_group_describe_request(groups: &[String]) -> ConsumerGroupDescribeRequest {
    let mut r = ConsumerGroupDescribeRequest::default();
    r.group_ids = groups.iter().map(|g| GroupId(s(g))).collect();
    r
}

/// A ConsumerGroupDescribe answer: each group's error code and message, and its description.
/// A topic the answer names by id only (an empty name) is shown by its id.
pub fn consumer_group_describe_response(
    r: ConsumerGroupDescribeResponse,
) -> Vec<(i16, Option<String>, ConsumerGroupDescription)> {
    use kcon_codec::kafka_protocol::messages::consumer_group_describe_response::Assignment;
    let partitions = |a: Assignment| -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = a
            .topic_partitions
            .into_iter()
            .flat_map(|t| {
                let topic = named(&t.topic_name.0, t.topic_id.as_bytes());
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect();
        out.sort();
        out
    };
    r.groups
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|m| ConsumerGroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.instance_id.map(|i| i.to_string()),
                    rack_id: m.rack_id.map(|r| r.to_string()),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    subscribed_topics: m
                        .subscribed_topic_names
                        .into_iter()
                        .map(|t| t.0.to_string())
                        .collect(),
                    // Kafka sends an empty regex for a member that subscribed by name only.
                    subscribed_regex: m
                        .subscribed_topic_regex
                        .filter(|r| !r.is_empty())
                        .map(|r| r.to_string()),
                    assignment: partitions(m.assignment),
                    target_assignment: partitions(m.target_assignment),
                })
                .collect();
            let description = ConsumerGroupDescription {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                assignor: g.assignor_name.to_string(),
                members,
            };
            (
                g.error_code,
                g.error_message.map(|m| m.to_string()),
                description,
            )
        })
        .collect()
}

/// ShareGroupDescribe for `groups` (v1), without authorized operations.
pub fn share_group_describe_request(groups: &[String]) -> ShareGroupDescribeRequest {
    let mut r = ShareGroupDescribeRequest::default();
    r.group_ids = groups.iter().map(|g| GroupId(s(g))).collect();
    r
}

/// A ShareGroupDescribe answer: each group's error code and message, and its description,
/// every member's assignment sorted. A topic the answer names by id only (an empty name) is
/// shown by its id.
pub fn share_group_describe_response(
    r: ShareGroupDescribeResponse,
) -> Vec<(i16, Option<String>, ShareGroupDescription)> {
    r.groups
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut assignment: Vec<TopicPartition> = m
                        .assignment
                        .topic_partitions
                        .into_iter()
                        .flat_map(|t| {
                            let topic = named(&t.topic_name.0, t.topic_id.as_bytes());
                            t.partitions
                                .into_iter()
                                .map(move |p| TopicPartition::new(topic.clone(), p))
                        })
                        .collect();
                    assignment.sort();
                    ShareGroupMember {
                        member_id: m.member_id.to_string(),
                        rack_id: m.rack_id.map(|r| r.to_string()),
                        member_epoch: m.member_epoch,
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        subscribed_topics: m
                            .subscribed_topic_names
                            .into_iter()
                            .map(|t| t.0.to_string())
                            .collect(),
                        assignment,
                    }
                })
                .collect();
            let description = ShareGroupDescription {
                group_id: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                assignor: g.assignor_name.to_string(),
                members,
            };
            (
                g.error_code,
                g.error_message.map(|m| m.to_string()),
                description,
            )
        })
        .collect()
}

/// DescribeShareGroupOffsets (v0–v1, the same request) for every share-partition of
/// `group_id` (topics null: all the group has state for).
pub fn describe_share_group_offsets_request(group_id: &str) -> DescribeShareGroupOffsetsRequestV1 {
    let mut g = DescribeShareGroupOffsetsRequestGroup::default();
    g.group_id = GroupId(s(group_id));
    g.topics = None;
    let mut r = DescribeShareGroupOffsetsRequest::default();
    r.groups = vec![g];
    DescribeShareGroupOffsetsRequestV1(r)
}

/// A DescribeShareGroupOffsets answer: each group's error code and message, and its
/// share-partitions' start offsets and (v1) lags with their own error codes.
pub fn describe_share_group_offsets_response(
    r: DescribeShareGroupOffsetsResponseV1,
) -> Vec<ShareGroupStarts> {
    let lag = |g, t, p| r.lag(g, t, p);
    r.body
        .groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let mut partitions = BTreeMap::new();
            for (ti, t) in g.topics.iter().enumerate() {
                let topic = named(&t.topic_name.0, t.topic_id.as_bytes());
                for (pi, p) in t.partitions.iter().enumerate() {
                    partitions.insert(
                        TopicPartition::new(topic.clone(), p.partition_index),
                        SharePartitionStart {
                            start_offset: p.start_offset,
                            leader_epoch: p.leader_epoch,
                            lag: lag(gi, ti, pi),
                            error_code: p.error_code,
                            error_message: p.error_message.as_ref().map(|m| m.to_string()),
                        },
                    );
                }
            }
            ShareGroupStarts {
                group_id: g.group_id.0.to_string(),
                error_code: g.error_code,
                error_message: g.error_message.as_ref().map(|m| m.to_string()),
                partitions,
            }
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

/// CreateTopics (v2–v7) for one topic; the broker has `timeout_ms` to create it.
pub fn create_topics_request(topic: &NewTopic, timeout_ms: i32) -> CreateTopicsRequest {
    let configs = topic
        .configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    CreateTopicsRequest::default()
        .with_timeout_ms(timeout_ms)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(configs),
        ])
}

/// The GROUP config resource type of DescribeConfigs and IncrementalAlterConfigs (KIP-848).
pub const GROUP_RESOURCE: i8 = 32;

/// DescribeConfigs (v1-v4) of every config of `group_id` (no keys named: all of them), with
/// each config's synonyms (where its default comes from) and without documentation.
pub fn describe_group_configs_request(group_id: &str) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default()
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(GROUP_RESOURCE)
                .with_resource_name(s(group_id))
                .with_configuration_keys(None),
        ])
        .with_include_synonyms(true)
        .with_include_documentation(false)
}

/// One resource of a DescribeConfigs answer: its error code and message, and its configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfigs {
    /// The resource type (32: a group).
    pub resource_type: i8,
    /// The resource's name (the group id).
    pub resource_name: String,
    /// Its error code (0: none).
    pub error_code: i16,
    /// The broker's message, when it sent one.
    pub error_message: Option<String>,
    /// Its configs, sorted by name.
    pub configs: Vec<GroupConfigEntry>,
}

/// A DescribeConfigs answer, each resource's configs sorted by name.
pub fn describe_configs_response(r: DescribeConfigsResponse) -> Vec<DescribedConfigs> {
    r.results
        .into_iter()
        .map(|result| {
            let mut configs: Vec<GroupConfigEntry> = result
                .configs
                .into_iter()
                .map(|c| GroupConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_code(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                    synonyms: c
                        .synonyms
                        .into_iter()
                        .map(|y| ConfigSynonym {
                            name: y.name.to_string(),
                            value: y.value.map(|v| v.to_string()),
                            source: ConfigSource::from_code(y.source),
                        })
                        .collect(),
                })
                .collect();
            configs.sort_by(|a, b| a.name.cmp(&b.name));
            DescribedConfigs {
                resource_type: result.resource_type,
                resource_name: result.resource_name.to_string(),
                error_code: result.error_code,
                error_message: result.error_message.map(|m| m.to_string()),
                configs,
            }
        })
        .collect()
}

/// IncrementalAlterConfigs (v0-v1) of `group_id`: each change a SET (operation 0) or a DELETE
/// (operation 1, back to the default), in the order given.
pub fn alter_group_configs_request(
    group_id: &str,
    changes: &[GroupConfigChange],
) -> IncrementalAlterConfigsRequest {
    let configs = changes
        .iter()
        .map(|c| match c {
            GroupConfigChange::Set { name, value } => AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(0)
                .with_value(Some(s(value))),
            GroupConfigChange::Delete { name } => AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(1)
                .with_value(None),
        })
        .collect();
    IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(GROUP_RESOURCE)
                .with_resource_name(s(group_id))
                .with_configs(configs),
        ])
        .with_validate_only(false)
}

/// An IncrementalAlterConfigs answer: each resource's type, name, error code and message.
pub fn alter_configs_response(
    r: IncrementalAlterConfigsResponse,
) -> Vec<(i8, String, i16, Option<String>)> {
    r.responses
        .into_iter()
        .map(|x| {
            (
                x.resource_type,
                x.resource_name.to_string(),
                x.error_code,
                x.error_message.map(|m| m.to_string()),
            )
        })
        .collect()
}

/// One partition of a probe: where to read from, and the topic's id (Fetch v13+ names topics
/// by id only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAt {
    /// The offset to read from.
    pub offset: i64,
    /// The topic's id, from the metadata.
    pub topic_id: Option<TopicId>,
}

/// A sessionless Fetch (session id 0, epoch -1: the broker keeps no state for it, KIP-227) at
/// `version` (v4–v17, what kcon speaks) for `partitions`, each from its offset with
/// `partition_max_bytes`, answered after at most `max_wait_ms` with whatever is there
/// (`min_bytes` 0). The fetch loop's requests come from `kcon_fetch`'s session; this one has no
/// session, no leader epochs and no rack, so it is built here.
pub fn probe_request(
    partitions: &BTreeMap<TopicPartition, ProbeAt>,
    isolation: IsolationLevel,
    max_wait_ms: i32,
    partition_max_bytes: i32,
    max_bytes: i32,
    version: i16,
) -> Result<FetchRequest, VersionError> {
    if !(4..=17).contains(&version) {
        return Err(VersionError(format!(
            "kcon speaks Fetch v4-v17, not v{version}"
        )));
    }
    let by_ids = version >= 13;
    let mut r = FetchRequest::default();
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 0;
    r.max_bytes = max_bytes;
    r.isolation_level = isolation.code();
    r.session_id = 0;
    r.session_epoch = -1;
    for (topic, ps) in by_topic(partitions) {
        let mut t = FetchTopic::default();
        t.topic = topic_name(topic);
        if by_ids {
            let Some(id) = ps.first().and_then(|(_, at)| at.topic_id) else {
                return Err(VersionError(format!(
                    "Fetch v{version} names topics by id, and the metadata gave no id for {topic:?}"
                )));
            };
            set_uuid(&mut t.topic_id, id);
        }
        for (partition, at) in ps {
            let mut p = FetchPartition::default();
            p.partition = partition;
            p.fetch_offset = at.offset;
            p.partition_max_bytes = partition_max_bytes;
            t.partitions.push(p);
        }
        r.topics.push(t);
    }
    Ok(r)
}

/// kafka-protocol's `Uuid` (the `uuid` crate's, which it does not re-export) from a topic id,
/// through its text form: the one constructor reachable without naming the type.
fn set_uuid<U: std::str::FromStr>(field: &mut U, id: TopicId) {
    let text: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    // Invariant: 32 hex digits are the `simple` form every `uuid` version parses.
    if let Ok(v) = text.parse() {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcon_core::wire::assert_encodes as encodes;

    #[test]
    fn a_consumer_group_description_names_topics_shows_an_unnamed_one_by_id_and_no_empty_regex() {
        use kcon_codec::kafka_protocol::messages::TopicName;
        use kcon_codec::kafka_protocol::messages::consumer_group_describe_response::{
            Assignment, DescribedGroup, Member, TopicPartitions,
        };
        for v in 0..=1 {
            encodes(&consumer_group_describe_request(&["g".into()]), v);
        }
        let topic = |id: u8, name: &str, partitions: Vec<i32>| {
            TopicPartitions::default()
                // Every byte `id`: the uuid crate's type is reachable only through parsing.
                .with_topic_id(format!("{id:02x}").repeat(16).parse().unwrap())
                .with_topic_name(TopicName(s(name)))
                .with_partitions(partitions)
        };
        let member =
            Member::default()
                .with_member_id(s("m-1"))
                .with_instance_id(Some(s("i-1")))
                .with_member_epoch(5)
                .with_client_id(s("kcon"))
                .with_client_host(s("/10.0.0.1"))
                .with_subscribed_topic_names(vec![TopicName(s("orders"))])
                // What Apache Kafka sends for a member subscribed by name only.
                .with_subscribed_topic_regex(Some(s("")))
                .with_assignment(Assignment::default().with_topic_partitions(vec![
                    topic(1, "orders", vec![2, 0]),
                    topic(9, "", vec![1]),
                ]))
                .with_target_assignment(Assignment::default().with_topic_partitions(vec![topic(
                    1,
                    "orders",
                    vec![0],
                )]));
        let r = ConsumerGroupDescribeResponse::default().with_groups(vec![
            DescribedGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_group_state(s("Reconciling"))
                .with_group_epoch(6)
                .with_assignment_epoch(6)
                .with_assignor_name(s("uniform"))
                .with_members(vec![
                    member.clone(),
                    member
                        .with_member_id(s("m-2"))
                        .with_subscribed_topic_regex(Some(s("orders-.*"))),
                ]),
            DescribedGroup::default()
                .with_group_id(GroupId(s("classic")))
                .with_error_code(69)
                .with_error_message(Some(s("not a consumer group"))),
        ]);
        let got = consumer_group_describe_response(r);
        assert_eq!(got.len(), 2);
        let (code, message, g) = &got[0];
        assert_eq!((*code, message), (0, &None));
        assert_eq!(
            (g.state.as_str(), g.group_epoch, g.assignment_epoch),
            ("Reconciling", 6, 6)
        );
        assert_eq!(g.assignor, "uniform");
        let m = &g.members[0];
        assert_eq!((m.member_epoch, m.instance_id.as_deref()), (5, Some("i-1")));
        assert_eq!(m.subscribed_topics, ["orders"]);
        assert_eq!(m.subscribed_regex, None, "an empty regex is none");
        assert_eq!(g.members[1].subscribed_regex.as_deref(), Some("orders-.*"));
        let unnamed = TopicId([9; 16]).to_string();
        assert_eq!(
            m.assignment,
            // Sorted: the id's text form sorts before "orders".
            [
                TopicPartition::new(unnamed, 1),
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 2),
            ]
        );
        assert_eq!(m.target_assignment, [TopicPartition::new("orders", 0)]);
        assert_eq!(got[1].0, 69);
        assert_eq!(got[1].1.as_deref(), Some("not a consumer group"));
    }

    #[test]
    fn a_share_group_description_names_topics_and_sorts_each_assignment() {
        use kcon_codec::kafka_protocol::messages::TopicName;
        use kcon_codec::kafka_protocol::messages::share_group_describe_response::{
            Assignment, DescribedGroup, Member, TopicPartitions,
        };
        let req = share_group_describe_request(&["s".into()]);
        assert_eq!(req.group_ids, [GroupId(s("s"))]);
        assert!(!req.include_authorized_operations);
        encodes(&req, 1);
        let topic = |id: u8, name: &str, partitions: Vec<i32>| {
            TopicPartitions::default()
                .with_topic_id(format!("{id:02x}").repeat(16).parse().unwrap())
                .with_topic_name(TopicName(s(name)))
                .with_partitions(partitions)
        };
        let member = Member::default()
            .with_member_id(s("m-1"))
            .with_rack_id(Some(s("r1")))
            .with_member_epoch(3)
            .with_client_id(s("kcon"))
            .with_client_host(s("/10.0.0.1"))
            .with_subscribed_topic_names(vec![TopicName(s("orders"))])
            .with_assignment(Assignment::default().with_topic_partitions(vec![
                topic(1, "orders", vec![2, 0]),
                topic(9, "", vec![1]),
            ]));
        let r = ShareGroupDescribeResponse::default().with_groups(vec![
            DescribedGroup::default()
                .with_group_id(GroupId(s("s")))
                .with_group_state(s("Stable"))
                .with_group_epoch(4)
                .with_assignment_epoch(3)
                .with_assignor_name(s("simple"))
                .with_members(vec![member]),
            DescribedGroup::default()
                .with_group_id(GroupId(s("denied")))
                .with_error_code(30)
                .with_error_message(Some(s("not authorized"))),
        ]);
        let got = share_group_describe_response(r);
        let (code, message, g) = &got[0];
        assert_eq!((*code, message), (0, &None));
        assert_eq!(
            (g.state.as_str(), g.group_epoch, g.assignment_epoch),
            ("Stable", 4, 3)
        );
        assert_eq!(g.assignor, "simple");
        let m = &g.members[0];
        assert_eq!(
            (m.member_id.as_str(), m.member_epoch, m.rack_id.as_deref()),
            ("m-1", 3, Some("r1"))
        );
        assert_eq!(m.subscribed_topics, ["orders"]);
        assert_eq!(
            m.assignment,
            [
                TopicPartition::new(TopicId([9; 16]).to_string(), 1),
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 2),
            ]
        );
        assert_eq!(
            (got[1].0, got[1].1.as_deref()),
            (30, Some("not authorized"))
        );
    }

    #[test]
    fn share_group_offsets_are_asked_for_every_partition_and_read_per_partition() {
        use kcon_codec::kafka_protocol::messages::describe_share_group_offsets_response::{
            DescribeShareGroupOffsetsResponseGroup as Group,
            DescribeShareGroupOffsetsResponsePartition as Partition,
            DescribeShareGroupOffsetsResponseTopic as Topic,
        };
        use kcon_codec::kafka_protocol::messages::{DescribeShareGroupOffsetsResponse, TopicName};
        let req = describe_share_group_offsets_request("s");
        assert_eq!(req.0.groups.len(), 1);
        assert_eq!(req.0.groups[0].group_id, GroupId(s("s")));
        assert_eq!(req.0.groups[0].topics, None, "null: every share-partition");
        encodes(&req, 0);
        encodes(&req, 1);
        let body = DescribeShareGroupOffsetsResponse::default().with_groups(vec![
            Group::default()
                .with_group_id(GroupId(s("s")))
                .with_topics(vec![
                    Topic::default()
                        .with_topic_name(TopicName(s("orders")))
                        .with_partitions(vec![
                            Partition::default()
                                .with_partition_index(1)
                                .with_start_offset(40)
                                .with_leader_epoch(2),
                            Partition::default()
                                .with_partition_index(0)
                                .with_start_offset(-1)
                                .with_leader_epoch(-1)
                                .with_error_code(3)
                                .with_error_message(Some(s("unknown"))),
                        ]),
                ]),
            Group::default()
                .with_group_id(GroupId(s("other")))
                .with_error_code(69),
        ]);
        // v0: no lags.
        let v0 = DescribeShareGroupOffsetsResponseV1 {
            body: body.clone(),
            lags: Vec::new(),
        };
        let got = describe_share_group_offsets_response(v0);
        assert_eq!(
            got[0].partitions[&TopicPartition::new("orders", 1)].lag,
            None
        );
        // v1: orders-1's lag, and none (-1) for orders-0.
        let r = DescribeShareGroupOffsetsResponseV1 {
            body,
            lags: vec![vec![vec![17, -1]]],
        };
        let got = describe_share_group_offsets_response(r);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].partitions[&TopicPartition::new("orders", 1)].lag,
            Some(17)
        );
        assert_eq!(
            got[0].partitions[&TopicPartition::new("orders", 0)].lag,
            None
        );
        assert_eq!((got[0].group_id.as_str(), got[0].error_code), ("s", 0));
        let at = |p| &got[0].partitions[&TopicPartition::new("orders", p)];
        assert_eq!(
            (at(1).start_offset, at(1).leader_epoch, at(1).error_code),
            (40, 2, 0)
        );
        assert_eq!((at(0).start_offset, at(0).error_code), (-1, 3));
        assert_eq!(at(0).error_message.as_deref(), Some("unknown"));
        assert_eq!((got[1].error_code, got[1].partitions.len()), (69, 0));
    }

    #[test]
    fn every_version_encodes() {
        for v in 0..=5 {
            encodes(&describe_groups_request(&["g".into()]), v);
            encodes(&list_groups_request(), v);
        }
        encodes(
            &offset_delete_request("g", &[TopicPartition::new("a", 0)]),
            0,
        );
        let topic = NewTopic {
            name: "t".into(),
            partitions: 3,
            replication_factor: 1,
            configs: vec![("retention.ms".into(), "1000".into())],
        };
        for v in 2..=7 {
            encodes(&create_topics_request(&topic, 1_000), v);
        }
    }

    /// A group's configs are asked for all at once, with synonyms; the answer is read sorted by
    /// name, each with its source; the changes go as SET and DELETE of the GROUP resource.
    #[test]
    fn group_configs_are_described_and_altered_as_the_group_resource() {
        use kcon_codec::kafka_protocol::messages::describe_configs_response::{
            DescribeConfigsResourceResult as Entry, DescribeConfigsResult, DescribeConfigsSynonym,
        };
        let req = describe_group_configs_request("workers");
        assert_eq!(req.resources.len(), 1);
        let r = &req.resources[0];
        assert_eq!((r.resource_type, r.resource_name.as_str()), (32, "workers"));
        assert_eq!(r.configuration_keys, None, "every config");
        assert!(req.include_synonyms && !req.include_documentation);
        for v in 1..=4 {
            encodes(&req, v);
        }
        let answer = DescribeConfigsResponse::default().with_results(vec![
            DescribeConfigsResult::default()
                .with_resource_type(32)
                .with_resource_name(s("workers"))
                .with_configs(vec![
                    Entry::default()
                        .with_name(s("share.record.lock.duration.ms"))
                        .with_value(Some(s("30000")))
                        .with_config_source(5)
                        .with_synonyms(vec![
                            DescribeConfigsSynonym::default()
                                .with_name(s("group.share.record.lock.duration.ms"))
                                .with_value(Some(s("30000")))
                                .with_source(5),
                        ]),
                    Entry::default()
                        .with_name(s("share.auto.offset.reset"))
                        .with_value(Some(s("earliest")))
                        .with_config_source(8),
                ]),
        ]);
        let got = describe_configs_response(answer);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].resource_type, got[0].error_code), (32, 0));
        let names: Vec<_> = got[0].configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["share.auto.offset.reset", "share.record.lock.duration.ms"]
        );
        let reset = &got[0].configs[0];
        assert!(reset.is_set());
        assert_eq!(reset.value.as_deref(), Some("earliest"));
        let lock = &got[0].configs[1];
        assert_eq!(lock.source, ConfigSource::Default);
        assert!(!lock.is_set());
        assert_eq!(
            lock.synonyms,
            [ConfigSynonym {
                name: "group.share.record.lock.duration.ms".into(),
                value: Some("30000".into()),
                source: ConfigSource::Default,
            }]
        );

        let req = alter_group_configs_request(
            "workers",
            &[
                GroupConfigChange::Set {
                    name: "share.auto.offset.reset".into(),
                    value: "earliest".into(),
                },
                GroupConfigChange::Delete {
                    name: "share.record.lock.duration.ms".into(),
                },
            ],
        );
        assert!(!req.validate_only);
        let r = &req.resources[0];
        assert_eq!((r.resource_type, r.resource_name.as_str()), (32, "workers"));
        let ops: Vec<_> = r
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.config_operation, c.value.as_deref()))
            .collect();
        assert_eq!(
            ops,
            [
                ("share.auto.offset.reset", 0, Some("earliest")),
                ("share.record.lock.duration.ms", 1, None),
            ]
        );
        for v in 0..=1 {
            encodes(&req, v);
        }
    }

    /// The probe asks each partition from its offset, by name below v13 and by id from v13;
    /// a topic without an id cannot be asked at v13+, and versions kcon does not speak are
    /// refused.
    #[test]
    fn probe_requests_name_topics_as_the_version_does() {
        let id = TopicId([7; 16]);
        let mut at = BTreeMap::new();
        for (tp, offset) in [(("a", 1), 5), (("a", 0), 3), (("b", 0), 0)] {
            at.insert(
                TopicPartition::new(tp.0, tp.1),
                ProbeAt {
                    offset,
                    topic_id: Some(id),
                },
            );
        }
        for v in 4..=17 {
            let r = probe_request(&at, IsolationLevel::ReadCommitted, 50, 1024, 4096, v).unwrap();
            assert_eq!((r.session_id, r.session_epoch, r.min_bytes), (0, -1, 0));
            assert_eq!(r.isolation_level, 1);
            let got: Vec<_> = r
                .topics
                .iter()
                .map(|t| {
                    let ps: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| (p.partition, p.fetch_offset))
                        .collect();
                    (t.topic.as_str(), ps)
                })
                .collect();
            assert_eq!(got, [("a", vec![(0, 3), (1, 5)]), ("b", vec![(0, 0)])]);
            if v >= 13 {
                assert_eq!(r.topics[0].topic_id.as_bytes(), &[7; 16]);
            }
            encodes(&r, v);
        }
        let no_id: BTreeMap<_, _> = at
            .into_iter()
            .map(|(tp, p)| {
                (
                    tp,
                    ProbeAt {
                        topic_id: None,
                        ..p
                    },
                )
            })
            .collect();
        assert!(probe_request(&no_id, IsolationLevel::ReadUncommitted, 50, 1, 1, 12).is_ok());
        let e = probe_request(&no_id, IsolationLevel::ReadUncommitted, 50, 1, 1, 13).unwrap_err();
        assert!(e.0.contains("no id"), "{e}");
        assert!(probe_request(&no_id, IsolationLevel::ReadUncommitted, 50, 1, 1, 3).is_err());
        assert!(probe_request(&no_id, IsolationLevel::ReadUncommitted, 50, 1, 1, 18).is_err());
    }
}
