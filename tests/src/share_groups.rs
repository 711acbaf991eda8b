//! A scripted broker holding share groups (KIP-932), for describing them from outside as a
//! broker of Kafka 4.1 would, which no broker here is (Apache Kafka 4.4 counts each
//! share-partition's lag itself, DescribeShareGroupOffsets v1; librdkafka's mock cluster does
//! not serve ShareGroupDescribe, Tansu has no share groups). It answers a share group the way
//! Kafka 4.1 does: GROUP_ID_NOT_FOUND to
//! ConsumerGroupDescribe, `Dead` without members to DescribeGroups below v6, and the group to
//! ShareGroupDescribe; DescribeShareGroupOffsets (v0: no lag of its own), ListOffsets and the
//! probe's Fetch give each share-partition's start offset and its log's range. kcon-admin's tests and `kcon group
//! describe`'s use it.

use crate::pool::config;
use kcon_admin::ApiKey;
use kcon_codec::kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerGroup;
use kcon_codec::kafka_protocol::messages::describe_groups_response::DescribedGroup as ClassicGroup;
use kcon_codec::kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup as OffsetsGroup,
    DescribeShareGroupOffsetsResponsePartition as OffsetsPartition,
    DescribeShareGroupOffsetsResponseTopic as OffsetsTopic,
};
use kcon_codec::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kcon_codec::kafka_protocol::messages::list_groups_response::ListedGroup;
use kcon_codec::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kcon_codec::kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup as ShareGroup, Member, TopicPartitions,
};
use kcon_codec::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribeShareGroupOffsetsResponse, FetchRequest, FetchResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, ShareGroupDescribeRequest, ShareGroupDescribeResponse, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::share_offsets_v1::{
    DescribeShareGroupOffsetsRequestV1, DescribeShareGroupOffsetsResponseV1,
};
use kcon_core::TopicPartition;
use kcon_pool::Pool;
use kcon_scripted::{
    Answer, BROKER_ID, Received, Script, ScriptedBroker, VersionRange, coordinator_answer,
    kcon_versions_of, one_broker_metadata,
};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Partition `p` of the topic `orders`.
pub fn orders(p: i32) -> TopicPartition {
    TopicPartition::new("orders", p)
}

/// GROUP_ID_NOT_FOUND.
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// GROUP_AUTHORIZATION_FAILED.
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// Each partition of `orders`: (log start, log end).
pub const LOGS: [(i64, i64); 4] = [(0, 100), (20, 50), (0, 7), (0, 9)];

/// The groups the broker knows: the share group `shared` (two members sharing `orders-1`),
/// the share group `denied` (GROUP_AUTHORIZATION_FAILED to ShareGroupDescribe), the share
/// group `hidden-offsets` (described, but GROUP_AUTHORIZATION_FAILED to
/// DescribeShareGroupOffsets), and the classic group `classic`. Any other group is unknown.
#[derive(Default)]
pub struct ShareGroups {
    /// The groups ShareGroupDescribe was asked for.
    pub asked_share: Vec<String>,
}

fn share_group(id: &str) -> ShareGroup {
    let member = |id: &str, epoch: i32, partitions: Vec<i32>| {
        Member::default()
            .with_member_id(s(id))
            .with_rack_id(Some(s("rack-a")))
            .with_member_epoch(epoch)
            .with_client_id(s("kcon-share"))
            .with_client_host(s("/10.0.0.7"))
            .with_subscribed_topic_names(vec![TopicName(s("orders"))])
            .with_assignment(Assignment::default().with_topic_partitions(vec![
                    TopicPartitions::default()
                        // Every byte 0x22: the uuid crate's type is reachable only through
                        // parsing.
                        .with_topic_id("22".repeat(16).parse().unwrap())
                        .with_topic_name(TopicName(s("orders")))
                        .with_partitions(partitions),
                ]))
    };
    ShareGroup::default()
        .with_group_id(GroupId(s(id)))
        .with_group_state(s("Stable"))
        .with_group_epoch(6)
        .with_assignment_epoch(5)
        .with_assignor_name(s("simple"))
        .with_members(vec![
            member("m-1", 6, vec![1, 0]),
            member("m-2", 5, vec![1, 2]),
        ])
}

impl Script for ShareGroups {
    fn answer(&mut self, req: &Received) -> Answer {
        let version = req.version();
        let addr = req.broker;
        match req.api() {
            Some(ApiKey::Metadata) => {
                let _ = req.decode::<MetadataRequest>();
                req.answer::<MetadataRequest>(&one_broker_metadata(addr, &[("orders", LOGS.len())]))
            }
            Some(ApiKey::FindCoordinator) => coordinator_answer(req, BROKER_ID, addr),
            // No consumer-protocol group here: Kafka's answer for a share or classic group.
            Some(ApiKey::ConsumerGroupDescribe) => {
                let r = req.decode::<ConsumerGroupDescribeRequest>();
                let groups = r
                    .group_ids
                    .iter()
                    .map(|g| {
                        ConsumerGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(GROUP_ID_NOT_FOUND)
                    })
                    .collect();
                req.answer::<ConsumerGroupDescribeRequest>(
                    &ConsumerGroupDescribeResponse::default().with_groups(groups),
                )
            }
            // Below v6 Kafka answers a group that is not classic as `Dead`, without members.
            Some(ApiKey::DescribeGroups) => {
                let r = req.decode::<DescribeGroupsRequest>();
                let groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        if g.0.as_str() == "classic" {
                            ClassicGroup::default()
                                .with_group_id(g.clone())
                                .with_group_state(s("Empty"))
                                .with_protocol_type(s("consumer"))
                        } else {
                            ClassicGroup::default()
                                .with_group_id(g.clone())
                                .with_group_state(s("Dead"))
                        }
                    })
                    .collect();
                req.answer::<DescribeGroupsRequest>(
                    &DescribeGroupsResponse::default().with_groups(groups),
                )
            }
            Some(ApiKey::ShareGroupDescribe) => {
                let r = req.decode::<ShareGroupDescribeRequest>();
                let groups = r
                    .group_ids
                    .iter()
                    .map(|g| {
                        self.asked_share.push(g.0.to_string());
                        match g.0.as_str() {
                            "shared" | "hidden-offsets" => share_group(g.0.as_str()),
                            "denied" => ShareGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                                .with_error_message(Some(s("not allowed to describe it"))),
                            _ => ShareGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(GROUP_ID_NOT_FOUND)
                                .with_error_message(Some(s("not a share group"))),
                        }
                    })
                    .collect();
                req.answer::<ShareGroupDescribeRequest>(
                    &ShareGroupDescribeResponse::default().with_groups(groups),
                )
            }
            Some(ApiKey::DescribeShareGroupOffsets) => {
                let r = req.decode::<DescribeShareGroupOffsetsRequestV1>().0;
                let groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        let answer = OffsetsGroup::default().with_group_id(g.group_id.clone());
                        if g.group_id.0.as_str() != "shared" {
                            return answer
                                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                                .with_error_message(Some(s("no offsets for you")));
                        }
                        let p = |i: i32, start: i64| {
                            OffsetsPartition::default()
                                .with_partition_index(i)
                                .with_start_offset(start)
                                .with_leader_epoch(4)
                        };
                        // orders-2 is assigned but has no state yet (left out); orders-3 has
                        // an error of its own.
                        answer.with_topics(vec![
                            OffsetsTopic::default()
                                .with_topic_name(TopicName(s("orders")))
                                .with_topic_id("22".repeat(16).parse().unwrap())
                                .with_partitions(vec![
                                    p(0, 40),
                                    p(1, 10),
                                    p(3, -1)
                                        .with_leader_epoch(-1)
                                        .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
                                        .with_error_message(Some(s("no such partition"))),
                                ]),
                        ])
                    })
                    .collect();
                // v0: no lag of the broker's own.
                req.answer::<DescribeShareGroupOffsetsRequestV1>(
                    &DescribeShareGroupOffsetsResponseV1 {
                        body: DescribeShareGroupOffsetsResponse::default().with_groups(groups),
                        lags: Vec::new(),
                    },
                )
            }
            Some(ApiKey::ListOffsets) => {
                let r = req.decode::<ListOffsetsRequest>();
                let topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let (start, end) = LOGS[p.partition_index as usize];
                                // -2: earliest; anything else asked here is latest.
                                let offset = if p.timestamp == -2 { start } else { end };
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_timestamp(-1)
                                    .with_offset(offset)
                            })
                            .collect();
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(partitions)
                    })
                    .collect();
                req.answer::<ListOffsetsRequest>(
                    &ListOffsetsResponse::default().with_topics(topics),
                )
            }
            // The probe: the log's range, no records.
            Some(ApiKey::Fetch) => {
                let r = req.decode::<FetchRequest>();
                let responses = r
                    .topics
                    .iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let (start, end) = LOGS[p.partition as usize];
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_high_watermark(end)
                                    .with_last_stable_offset(end)
                                    .with_log_start_offset(start)
                            })
                            .collect();
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_partitions(partitions)
                    })
                    .collect();
                req.answer::<FetchRequest>(&FetchResponse::default().with_responses(responses))
            }
            // Only a broker without ShareGroupDescribe is asked this: it lists `shared` as the
            // share group it is.
            Some(ApiKey::ListGroups) => {
                let _ = req.decode::<ListGroupsRequest>();
                let listed = |id: &str, protocol_type: &str| {
                    ListedGroup::default()
                        .with_group_id(GroupId(s(id)))
                        .with_protocol_type(s(protocol_type))
                        .when_v4(version, "Stable")
                };
                let answer = ListGroupsResponse::default().with_groups(vec![
                    listed("shared", "share"),
                    listed("classic", "consumer"),
                ]);
                req.answer::<ListGroupsRequest>(&answer)
            }
            _ => Answer::Silent,
        }
    }
}

/// ListGroups' state, from v4.
trait WhenV4 {
    fn when_v4(self, version: i16, state: &str) -> Self;
}

impl WhenV4 for ListedGroup {
    fn when_v4(self, version: i16, state: &str) -> Self {
        if version >= 4 {
            self.with_group_state(s(state))
        } else {
            self
        }
    }
}

/// The APIs every broker here offers, at kcon's versions, and Fetch up to v12 (the probe names
/// topics by name there; the scripted metadata carries no topic ids).
fn versions(share: bool) -> Vec<VersionRange> {
    let mut apis = vec![
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::ConsumerGroupDescribe,
        ApiKey::DescribeGroups,
        ApiKey::ListOffsets,
        ApiKey::ListGroups,
    ];
    if share {
        apis.extend([
            ApiKey::ShareGroupDescribe,
            ApiKey::DescribeShareGroupOffsets,
        ]);
    }
    let mut v = kcon_versions_of(&apis);
    v.push((ApiKey::Fetch as i16, 4, 12));
    // DescribeShareGroupOffsets v0 only, as Apache Kafka 4.1: no lag of the broker's own, so
    // kcon counts it, an upper bound.
    for r in &mut v {
        if r.0 == ApiKey::DescribeShareGroupOffsets as i16 {
            r.2 = 0;
        }
    }
    v
}

/// A broker offering the share-group APIs (or not, `share` false) over [`ShareGroups`].
pub async fn start(share: bool) -> ScriptedBroker<ShareGroups> {
    ScriptedBroker::start(versions(share), ShareGroups::default()).await
}

/// A pool bootstrapped from `broker`.
pub fn pool(broker: &ScriptedBroker<ShareGroups>) -> Pool {
    Pool::new(config(&broker.bootstrap())).expect("a pool")
}
