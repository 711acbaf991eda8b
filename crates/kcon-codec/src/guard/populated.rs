//! Populated responses of every API kcon speaks, at any version, built with kafka-protocol's
//! builders: the material of the guard's tests.
//!
//! Each builder sets a field only in the versions that carry it (kafka-protocol refuses to
//! encode a non-default value elsewhere), fills every array with two or more elements, sets
//! every known tagged field where it exists and one unknown tag per struct where the version is
//! flexible. `alt` flips which of two sibling nullable values is null, so that building each
//! version with `alt` false and true covers both null and non-null everywhere.

use crate::share_v2::{ShareAcknowledgeResponseV2, ShareFetchResponseV2};
use bytes::Bytes;
use kafka_protocol::messages::{
    BrokerId, GroupId, ProducerId, TopicName, add_offsets_to_txn_response as aot,
    add_partitions_to_txn_response as apt, api_versions_response as av,
    consumer_group_describe_response as cgd, consumer_group_heartbeat_response as cgh,
    create_topics_response as ct, delete_groups_response as dg, describe_configs_response as dc,
    describe_groups_response as dsg, describe_share_group_offsets_response as dsgo,
    describe_transactions_response as dt, end_txn_response as et, fetch_response as fr,
    find_coordinator_response as fc, get_telemetry_subscriptions_response as gts,
    heartbeat_response as hb, incremental_alter_configs_response as iac,
    init_producer_id_response as ipi, join_group_response as jg, leave_group_response as lg,
    list_groups_response as lsg, list_offsets_response as lo, metadata_response as md,
    offset_commit_response as oc, offset_delete_response as od, offset_fetch_response as of,
    offset_for_leader_epoch_response as ofle, produce_response as pr,
    push_telemetry_response as pt, sasl_authenticate_response as sa, sasl_handshake_response as sh,
    share_acknowledge_response as sak, share_fetch_response as sf,
    share_group_describe_response as sgd, share_group_heartbeat_response as sgh,
    sync_group_response as sg, txn_offset_commit_response as toc,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// `when(cond, f)`: applies a builder step only in the versions that have the field.
pub(super) trait When: Sized {
    fn when(self, cond: bool, f: impl FnOnce(Self) -> Self) -> Self {
        if cond { f(self) } else { self }
    }
}

impl<T> When for T {}

fn s(v: &'static str) -> StrBytes {
    StrBytes::from_static_str(v)
}

/// `Some(v)` or null.
fn null_or<T>(null: bool, v: T) -> Option<T> {
    if null { None } else { Some(v) }
}

/// The unknown tag every flexible struct carries.
const UNKNOWN_TAG: i32 = 99;

fn unknown() -> Bytes {
    Bytes::from_static(b"??")
}

/// A topic-id-like struct decoded from 16 bytes of `b`: kafka-protocol does not re-export the
/// `uuid` crate, and kcon-codec does not depend on it, so non-nil ids come from its own
/// decoder. (Read `.topic_id`; see [`uuid`].)
pub(super) fn with_id(b: u8) -> cgh::TopicPartitions {
    let mut raw = vec![b; 16];
    // An empty compact array of partitions, and no tagged fields.
    raw.extend_from_slice(&[1, 0]);
    let mut buf = Bytes::from(raw);
    // The bytes above are a valid v0 TopicPartitions by construction.
    cgh::TopicPartitions::decode(&mut buf, 0).expect("a hand-made TopicPartitions decodes")
}

/// A non-nil topic id filled with byte `$b`.
macro_rules! uuid {
    ($b:expr) => {
        with_id($b).topic_id
    };
}

pub(super) fn produce(v: i16, alt: bool) -> pr::ProduceResponse {
    let flex = v >= 9;
    let record_error = |i: i32, null: bool| {
        pr::BatchIndexAndErrorMessage::default()
            .with_batch_index(i)
            .with_batch_index_error_message(null_or(null, s("bad record")))
            .when(flex, |e| {
                e.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let partition = |i: i32, null: bool| {
        pr::PartitionProduceResponse::default()
            .with_index(i)
            .with_error_code(i as i16)
            .with_base_offset(1000 + i64::from(i))
            .with_log_append_time_ms(-1)
            .when(v >= 5, |p| p.with_log_start_offset(17))
            .when(v >= 8, |p| {
                p.with_record_errors(vec![record_error(3, null), record_error(4, !null)])
                    .with_error_message(null_or(null, s("partly failed")))
            })
            .when(v >= 10, |p| {
                p.with_current_leader(
                    pr::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(2))
                        .with_leader_epoch(8),
                )
            })
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        pr::TopicProduceResponse::default()
            .with_name(TopicName(s(name)))
            .with_partition_responses(vec![partition(0, alt), partition(1, !alt)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let node = |id: i32, null: bool| {
        pr::NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(s("broker.example"))
            .with_port(9092)
            .with_rack(null_or(null, s("rack-a")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    pr::ProduceResponse::default()
        .with_responses(vec![topic("a"), topic("b")])
        .with_throttle_time_ms(12)
        .when(v >= 10, |r| {
            r.with_node_endpoints(vec![node(1, alt), node(2, !alt)])
        })
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn fetch(v: i16, alt: bool) -> fr::FetchResponse {
    let flex = v >= 12;
    let aborted = |p: i64| {
        fr::AbortedTransaction::default()
            .with_producer_id(ProducerId(p))
            .with_first_offset(p * 10)
            .when(flex, |a| {
                a.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let partition = |i: i32, null: bool| {
        fr::PartitionData::default()
            .with_partition_index(i)
            .with_error_code(0)
            .with_high_watermark(500)
            .with_last_stable_offset(400)
            .when(v >= 5, |p| p.with_log_start_offset(3))
            .when(flex, |p| {
                p.with_diverging_epoch(
                    fr::EpochEndOffset::default()
                        .with_epoch(4)
                        .with_end_offset(300)
                        .with_unknown_tagged_field(UNKNOWN_TAG, unknown()),
                )
                .with_current_leader(
                    fr::LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(2))
                        .with_leader_epoch(5),
                )
                .with_snapshot_id(fr::SnapshotId::default().with_end_offset(10).with_epoch(1))
                .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
            .with_aborted_transactions(null_or(null, vec![aborted(5), aborted(6)]))
            .when(v >= 11, |p| p.with_preferred_read_replica(BrokerId(2)))
            .with_records(null_or(!null, Bytes::from_static(b"opaque records")))
    };
    let topic = |name: &'static str, id: u8| {
        fr::FetchableTopicResponse::default()
            .when(v <= 12, |t| t.with_topic(TopicName(s(name))))
            .when(v >= 13, |t| t.with_topic_id(uuid!(id)))
            .with_partitions(vec![partition(0, alt), partition(1, !alt)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let node = |id: i32, null: bool| {
        fr::NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(s("broker.example"))
            .with_port(9092)
            .with_rack(null_or(null, s("rack-a")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    fr::FetchResponse::default()
        .with_throttle_time_ms(5)
        .when(v >= 7, |r| r.with_error_code(0).with_session_id(77))
        .with_responses(vec![topic("a", 1), topic("b", 2)])
        .when(v >= 16, |r| {
            r.with_node_endpoints(vec![node(1, alt), node(2, !alt)])
        })
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn list_offsets(v: i16, _alt: bool) -> lo::ListOffsetsResponse {
    let flex = v >= 6;
    let partition = |i: i32| {
        lo::ListOffsetsPartitionResponse::default()
            .with_partition_index(i)
            .with_error_code(0)
            .with_timestamp(1_700_000_000_000)
            .with_offset(42 + i64::from(i))
            .when(v >= 4, |p| p.with_leader_epoch(3))
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        lo::ListOffsetsTopicResponse::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    lo::ListOffsetsResponse::default()
        .when(v >= 2, |r| r.with_throttle_time_ms(9))
        .with_topics(vec![topic("a"), topic("b")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn metadata(v: i16, alt: bool) -> md::MetadataResponse {
    let flex = v >= 9;
    let broker = |id: i32, null: bool| {
        md::MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(s("broker.example"))
            .with_port(9092)
            .when(v >= 1, |b| b.with_rack(null_or(null, s("rack-a"))))
            .when(flex, |b| {
                b.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let partition = |i: i32| {
        md::MetadataResponsePartition::default()
            .with_error_code(0)
            .with_partition_index(i)
            .with_leader_id(BrokerId(1))
            .when(v >= 7, |p| p.with_leader_epoch(6))
            .with_replica_nodes(vec![BrokerId(1), BrokerId(2), BrokerId(3)])
            .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])
            .when(v >= 5, |p| {
                p.with_offline_replicas(vec![BrokerId(3), BrokerId(4)])
            })
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str, id: u8, null: bool| {
        md::MetadataResponseTopic::default()
            .with_error_code(0)
            // The protocol allows a null name from v12 (topics described by id).
            .with_name(null_or(null && v >= 12, TopicName(s(name))))
            .when(v >= 10, |t| t.with_topic_id(uuid!(id)))
            .when(v >= 1, |t| t.with_is_internal(id == 2))
            .with_partitions(vec![partition(0), partition(1)])
            .when(v >= 8, |t| t.with_topic_authorized_operations(0x0f))
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    md::MetadataResponse::default()
        .when(v >= 3, |r| r.with_throttle_time_ms(4))
        .with_brokers(vec![broker(1, alt), broker(2, !alt)])
        .when(v >= 2, |r| r.with_cluster_id(null_or(alt, s("cluster-1"))))
        .when(v >= 1, |r| r.with_controller_id(BrokerId(2)))
        .with_topics(vec![topic("a", 1, alt), topic("b", 2, !alt)])
        .when((8..=10).contains(&v), |r| {
            r.with_cluster_authorized_operations(0x1f)
        })
        .when(v >= 13, |r| r.with_error_code(if alt { 129 } else { 0 }))
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn offset_commit(v: i16, _alt: bool) -> oc::OffsetCommitResponse {
    let flex = v >= 8;
    let partition = |i: i32| {
        oc::OffsetCommitResponsePartition::default()
            .with_partition_index(i)
            .with_error_code(if i == 0 { 0 } else { 22 })
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        oc::OffsetCommitResponseTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    oc::OffsetCommitResponse::default()
        .when(v >= 3, |r| r.with_throttle_time_ms(2))
        .with_topics(vec![topic("a"), topic("b")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn offset_fetch(v: i16, alt: bool) -> of::OffsetFetchResponse {
    let flex = v >= 6;
    let old_partition = |i: i32, null: bool| {
        of::OffsetFetchResponsePartition::default()
            .with_partition_index(i)
            .with_committed_offset(100 + i64::from(i))
            .when(v >= 5, |p| p.with_committed_leader_epoch(2))
            .with_metadata(null_or(null, s("meta")))
            .with_error_code(0)
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let old_topic = |name: &'static str| {
        of::OffsetFetchResponseTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![old_partition(0, alt), old_partition(1, !alt)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let partition = |i: i32, null: bool| {
        of::OffsetFetchResponsePartitions::default()
            .with_partition_index(i)
            .with_committed_offset(200 + i64::from(i))
            .with_committed_leader_epoch(3)
            .with_metadata(null_or(null, s("meta")))
            .with_error_code(0)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let topic = |name: &'static str| {
        of::OffsetFetchResponseTopics::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0, alt), partition(1, !alt)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let group = |id: &'static str| {
        of::OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_topics(vec![topic("a"), topic("b")])
            .with_error_code(0)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    of::OffsetFetchResponse::default()
        .when(v >= 3, |r| r.with_throttle_time_ms(1))
        .when(v <= 7, |r| {
            r.with_topics(vec![old_topic("a"), old_topic("b")])
        })
        .when((2..=7).contains(&v), |r| r.with_error_code(0))
        .when(v >= 8, |r| r.with_groups(vec![group("g1"), group("g2")]))
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn find_coordinator(v: i16, alt: bool) -> fc::FindCoordinatorResponse {
    let flex = v >= 3;
    let coordinator = |key: &'static str, null: bool| {
        fc::Coordinator::default()
            .with_key(s(key))
            .with_node_id(BrokerId(3))
            .with_host(s("broker.example"))
            .with_port(9093)
            .with_error_code(0)
            .with_error_message(null_or(null, s("fine")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    fc::FindCoordinatorResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(3))
        .when(v <= 3, |r| {
            r.with_error_code(0)
                .with_node_id(BrokerId(3))
                .with_host(s("broker.example"))
                .with_port(9093)
        })
        .when((1..=3).contains(&v), |r| {
            r.with_error_message(null_or(alt, s("fine")))
        })
        .when(v >= 4, |r| {
            r.with_coordinators(vec![coordinator("g1", alt), coordinator("g2", !alt)])
        })
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn join_group(v: i16, alt: bool) -> jg::JoinGroupResponse {
    let flex = v >= 6;
    let member = |id: &'static str, null: bool| {
        jg::JoinGroupResponseMember::default()
            .with_member_id(s(id))
            .when(v >= 5, |m| {
                m.with_group_instance_id(null_or(null, s("instance")))
            })
            .with_metadata(Bytes::from_static(b"\x00\x01subscription"))
            .when(flex, |m| {
                m.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    jg::JoinGroupResponse::default()
        .when(v >= 2, |r| r.with_throttle_time_ms(6))
        .with_error_code(0)
        .with_generation_id(11)
        .when(v >= 7, |r| {
            r.with_protocol_type(null_or(alt, s("consumer")))
        })
        // Null only from v7, where the protocol allows it.
        .with_protocol_name(null_or(!alt && v >= 7, s("range")))
        .with_leader(s("m-1"))
        .when(v >= 9, |r| r.with_skip_assignment(true))
        .with_member_id(s("m-2"))
        .with_members(vec![member("m-1", alt), member("m-2", !alt)])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn heartbeat(v: i16, _alt: bool) -> hb::HeartbeatResponse {
    hb::HeartbeatResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(8))
        .with_error_code(27)
        .when(v >= 4, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn init_producer_id(v: i16, _alt: bool) -> ipi::InitProducerIdResponse {
    ipi::InitProducerIdResponse::default()
        .with_throttle_time_ms(8)
        .with_error_code(51)
        .with_producer_id(ProducerId(7_000_000_000))
        .with_producer_epoch(3)
        .when(v >= 2, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn leave_group(v: i16, alt: bool) -> lg::LeaveGroupResponse {
    let flex = v >= 4;
    let member = |id: &'static str, null: bool| {
        lg::MemberResponse::default()
            .with_member_id(s(id))
            .with_group_instance_id(null_or(null, s("instance")))
            .with_error_code(0)
            .when(flex, |m| {
                m.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    lg::LeaveGroupResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(8))
        .with_error_code(0)
        .when(v >= 3, |r| {
            r.with_members(vec![member("m-1", alt), member("m-2", !alt)])
        })
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn sync_group(v: i16, alt: bool) -> sg::SyncGroupResponse {
    sg::SyncGroupResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(8))
        .with_error_code(0)
        .when(v >= 5, |r| {
            r.with_protocol_type(null_or(alt, s("consumer")))
                .with_protocol_name(null_or(!alt, s("range")))
        })
        .with_assignment(Bytes::from_static(b"\x00\x01assignment"))
        .when(v >= 4, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn describe_groups(v: i16, alt: bool) -> dsg::DescribeGroupsResponse {
    let flex = v >= 5;
    let member = |id: &'static str, null: bool| {
        dsg::DescribedGroupMember::default()
            .with_member_id(s(id))
            .when(v >= 4, |m| {
                m.with_group_instance_id(null_or(null, s("instance")))
            })
            .with_client_id(s("kcon"))
            .with_client_host(s("/10.0.0.1"))
            .with_member_metadata(Bytes::from_static(b"metadata"))
            .with_member_assignment(Bytes::from_static(b"assignment"))
            .when(flex, |m| {
                m.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let group = |id: &'static str| {
        dsg::DescribedGroup::default()
            .with_error_code(0)
            .with_group_id(GroupId(s(id)))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("range"))
            .with_members(vec![member("m-1", alt), member("m-2", !alt)])
            .when(v >= 3, |g| g.with_authorized_operations(0x0f))
            .when(flex, |g| {
                g.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    dsg::DescribeGroupsResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(8))
        .with_groups(vec![group("g1"), group("g2")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn list_groups(v: i16, _alt: bool) -> lsg::ListGroupsResponse {
    let flex = v >= 3;
    let group = |id: &'static str| {
        lsg::ListedGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_protocol_type(s("consumer"))
            .when(v >= 4, |g| g.with_group_state(s("Stable")))
            .when(v >= 5, |g| g.with_group_type(s("classic")))
            .when(flex, |g| {
                g.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    lsg::ListGroupsResponse::default()
        .when(v >= 1, |r| r.with_throttle_time_ms(8))
        .with_error_code(0)
        .with_groups(vec![group("g1"), group("g2")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn sasl_handshake(_v: i16, _alt: bool) -> sh::SaslHandshakeResponse {
    sh::SaslHandshakeResponse::default()
        .with_error_code(0)
        .with_mechanisms(vec![s("PLAIN"), s("SCRAM-SHA-256"), s("OAUTHBEARER")])
}

pub(super) fn api_versions(v: i16, _alt: bool) -> av::ApiVersionsResponse {
    let flex = v >= 3;
    let key = |k: i16, min: i16, max: i16| {
        av::ApiVersion::default()
            .with_api_key(k)
            .with_min_version(min)
            .with_max_version(max)
            .when(flex, |a| {
                a.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let supported = |name: &'static str| {
        av::SupportedFeatureKey::default()
            .with_name(s(name))
            .with_min_version(0)
            .with_max_version(3)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let finalized = |name: &'static str| {
        av::FinalizedFeatureKey::default()
            .with_name(s(name))
            .with_max_version_level(3)
            .with_min_version_level(1)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    av::ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(vec![key(0, 3, 11), key(1, 4, 17), key(18, 0, 3)])
        .when(v >= 1, |r| r.with_throttle_time_ms(0))
        .when(flex, |r| {
            r.with_supported_features(vec![
                supported("metadata.version"),
                supported("kraft.version"),
            ])
            .with_finalized_features_epoch(42)
            .with_finalized_features(vec![
                finalized("metadata.version"),
                finalized("group.version"),
            ])
            .with_zk_migration_ready(true)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn create_topics(v: i16, alt: bool) -> ct::CreateTopicsResponse {
    let flex = v >= 5;
    let config = |name: &'static str, null: bool| {
        ct::CreatableTopicConfigs::default()
            .with_name(s(name))
            .with_value(null_or(null, s("1")))
            .with_read_only(true)
            .with_config_source(5)
            .with_is_sensitive(null)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let topic = |name: &'static str, id: u8, null: bool| {
        ct::CreatableTopicResult::default()
            .with_name(TopicName(s(name)))
            .when(v >= 7, |t| t.with_topic_id(uuid!(id)))
            .with_error_code(0)
            .with_error_message(null_or(null, s("created")))
            .when(flex, |t| {
                t.with_topic_config_error_code(29)
                    .with_num_partitions(3)
                    .with_replication_factor(2)
                    .with_configs(null_or(
                        null,
                        vec![
                            config("cleanup.policy", null),
                            config("retention.ms", !null),
                        ],
                    ))
                    .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    ct::CreateTopicsResponse::default()
        .with_throttle_time_ms(3)
        .with_topics(vec![topic("a", 1, alt), topic("b", 2, !alt)])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn delete_groups(v: i16, _alt: bool) -> dg::DeleteGroupsResponse {
    let flex = v >= 2;
    let result = |id: &'static str, code: i16| {
        dg::DeletableGroupResult::default()
            .with_group_id(GroupId(s(id)))
            .with_error_code(code)
            .when(flex, |g| {
                g.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    dg::DeleteGroupsResponse::default()
        .with_throttle_time_ms(3)
        .with_results(vec![result("g1", 0), result("g2", 69)])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn sasl_authenticate(v: i16, alt: bool) -> sa::SaslAuthenticateResponse {
    sa::SaslAuthenticateResponse::default()
        .with_error_code(0)
        .with_error_message(null_or(alt, s("welcome")))
        .with_auth_bytes(Bytes::from_static(b"server-final-message"))
        .when(v >= 1, |r| r.with_session_lifetime_ms(3_600_000))
        .when(v >= 2, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn offset_for_leader_epoch(v: i16, _alt: bool) -> ofle::OffsetForLeaderEpochResponse {
    let flex = v >= 4;
    let partition = |i: i32| {
        ofle::EpochEndOffset::default()
            .with_error_code(0)
            .with_partition(i)
            .with_leader_epoch(7)
            .with_end_offset(900 + i64::from(i))
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        ofle::OffsetForLeaderTopicResult::default()
            .with_topic(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    ofle::OffsetForLeaderEpochResponse::default()
        .with_throttle_time_ms(3)
        .with_topics(vec![topic("a"), topic("b")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn offset_delete(_v: i16, _alt: bool) -> od::OffsetDeleteResponse {
    let partition = |i: i32| {
        od::OffsetDeleteResponsePartition::default()
            .with_partition_index(i)
            .with_error_code(0)
    };
    let topic = |name: &'static str| {
        od::OffsetDeleteResponseTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
    };
    od::OffsetDeleteResponse::default()
        .with_error_code(0)
        .with_throttle_time_ms(3)
        .with_topics(vec![topic("a"), topic("b")])
}

pub(super) fn consumer_group_heartbeat(_v: i16, alt: bool) -> cgh::ConsumerGroupHeartbeatResponse {
    let topic = |id: u8, partitions: Vec<i32>| {
        cgh::TopicPartitions::default()
            .with_topic_id(uuid!(id))
            .with_partitions(partitions)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let assignment = cgh::Assignment::default()
        .with_topic_partitions(vec![topic(1, vec![0, 1, 2]), topic(2, vec![3])])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown());
    cgh::ConsumerGroupHeartbeatResponse::default()
        .with_throttle_time_ms(3)
        .with_error_code(0)
        .with_error_message(null_or(!alt, s("fine")))
        .with_member_id(null_or(alt, s("m-1")))
        .with_member_epoch(4)
        .with_heartbeat_interval_ms(5000)
        .with_assignment(null_or(alt, assignment))
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn consumer_group_describe(v: i16, alt: bool) -> cgd::ConsumerGroupDescribeResponse {
    let topic = |id: u8, name: &'static str, partitions: Vec<i32>| {
        cgd::TopicPartitions::default()
            .with_topic_id(uuid!(id))
            .with_topic_name(TopicName(s(name)))
            .with_partitions(partitions)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let assignment = |first: i32| {
        cgd::Assignment::default()
            .with_topic_partitions(vec![
                topic(1, "a", vec![first, first + 1]),
                topic(2, "b", vec![0]),
            ])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let member = |id: &'static str, null: bool| {
        cgd::Member::default()
            .with_member_id(s(id))
            .with_instance_id(null_or(null, s("instance")))
            .with_rack_id(null_or(!null, s("rack-1")))
            .with_member_epoch(7)
            .with_client_id(s("kcon"))
            .with_client_host(s("/10.0.0.1"))
            .with_subscribed_topic_names(vec![TopicName(s("a")), TopicName(s("b"))])
            .with_subscribed_topic_regex(null_or(null, s("^a.*")))
            .with_assignment(assignment(0))
            .with_target_assignment(assignment(2))
            .when(v >= 1, |m| m.with_member_type(1))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let group = |id: &'static str| {
        cgd::DescribedGroup::default()
            .with_error_code(0)
            .with_error_message(null_or(!alt, s("fine")))
            .with_group_id(GroupId(s(id)))
            .with_group_state(s("Stable"))
            .with_group_epoch(9)
            .with_assignment_epoch(8)
            .with_assignor_name(s("uniform"))
            .with_members(vec![member("m-1", alt), member("m-2", !alt)])
            .with_authorized_operations(0x0f)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    cgd::ConsumerGroupDescribeResponse::default()
        .with_throttle_time_ms(3)
        .with_groups(vec![group("g1"), group("g2")])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn add_partitions_to_txn(v: i16, _alt: bool) -> apt::AddPartitionsToTxnResponse {
    let flex = v >= 3;
    let partition = |i: i32| {
        apt::AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(i)
            .with_partition_error_code(if i == 0 { 0 } else { 51 })
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        apt::AddPartitionsToTxnTopicResult::default()
            .with_name(TopicName(s(name)))
            .with_results_by_partition(vec![partition(0), partition(1)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    apt::AddPartitionsToTxnResponse::default()
        .with_throttle_time_ms(4)
        .with_results_by_topic_v3_and_below(vec![topic("a"), topic("b")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn add_offsets_to_txn(v: i16, _alt: bool) -> aot::AddOffsetsToTxnResponse {
    aot::AddOffsetsToTxnResponse::default()
        .with_throttle_time_ms(5)
        .with_error_code(51)
        .when(v >= 3, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn txn_offset_commit(v: i16, _alt: bool) -> toc::TxnOffsetCommitResponse {
    let flex = v >= 3;
    let partition = |i: i32| {
        toc::TxnOffsetCommitResponsePartition::default()
            .with_partition_index(i)
            .with_error_code(if i == 0 { 0 } else { 22 })
            .when(flex, |p| {
                p.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let topic = |name: &'static str| {
        toc::TxnOffsetCommitResponseTopic::default()
            .with_name(TopicName(s(name)))
            .with_partitions(vec![partition(0), partition(1)])
            .when(flex, |t| {
                t.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    toc::TxnOffsetCommitResponse::default()
        .with_throttle_time_ms(6)
        .with_topics(vec![topic("a"), topic("b")])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn end_txn(v: i16, _alt: bool) -> et::EndTxnResponse {
    et::EndTxnResponse::default()
        .with_throttle_time_ms(7)
        .with_error_code(48)
        .when(v >= 5, |r| {
            r.with_producer_id(ProducerId(9)).with_producer_epoch(2)
        })
        .when(v >= 3, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn share_group_heartbeat(_v: i16, alt: bool) -> sgh::ShareGroupHeartbeatResponse {
    let topic = |id: u8, partitions: Vec<i32>| {
        sgh::TopicPartitions::default()
            .with_topic_id(uuid!(id))
            .with_partitions(partitions)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let assignment = sgh::Assignment::default()
        .with_topic_partitions(vec![topic(1, vec![0, 1, 2]), topic(2, vec![3])])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown());
    sgh::ShareGroupHeartbeatResponse::default()
        .with_throttle_time_ms(3)
        .with_error_code(0)
        .with_error_message(null_or(!alt, s("fine")))
        .with_member_id(null_or(alt, s("m-1")))
        .with_member_epoch(4)
        .with_heartbeat_interval_ms(5000)
        .with_assignment(null_or(alt, assignment))
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn share_fetch(_v: i16, alt: bool) -> ShareFetchResponseV2 {
    let acquired = |first: i64| {
        sf::AcquiredRecords::default()
            .with_first_offset(first)
            .with_last_offset(first + 4)
            .with_delivery_count(2)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let partition = |i: i32, null: bool| {
        sf::PartitionData::default()
            .with_partition_index(i)
            .with_error_code(0)
            .with_error_message(null_or(null, s("part")))
            .with_acknowledge_error_code(124)
            .with_acknowledge_error_message(null_or(!null, s("ack")))
            .with_current_leader(
                sf::LeaderIdAndEpoch::default()
                    .with_leader_id(1)
                    .with_leader_epoch(7)
                    .with_unknown_tagged_field(UNKNOWN_TAG, unknown()),
            )
            .with_records(null_or(null, Bytes::from_static(b"records")))
            .with_acquired_records(vec![acquired(0), acquired(10)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let topic = |id: u8| {
        sf::ShareFetchableTopicResponse::default()
            .with_topic_id(uuid!(id))
            .with_partitions(vec![partition(0, alt), partition(1, !alt)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let node = |id: i32, null: bool| {
        sf::NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(s("b1"))
            .with_port(9092)
            .with_rack(null_or(null, s("rack-a")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    ShareFetchResponseV2(
        sf::ShareFetchResponse::default()
            .with_throttle_time_ms(3)
            .with_error_code(0)
            .with_error_message(null_or(alt, s("fine")))
            .with_acquisition_lock_timeout_ms(30_000)
            .with_responses(vec![topic(1), topic(2)])
            .with_node_endpoints(vec![node(1, alt), node(2, !alt)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown()),
    )
}

pub(super) fn share_acknowledge(v: i16, alt: bool) -> ShareAcknowledgeResponseV2 {
    let partition = |i: i32, null: bool| {
        sak::PartitionData::default()
            .with_partition_index(i)
            .with_error_code(if i == 0 { 0 } else { 125 })
            .with_error_message(null_or(null, s("part")))
            .with_current_leader(
                sak::LeaderIdAndEpoch::default()
                    .with_leader_id(1)
                    .with_leader_epoch(7)
                    .with_unknown_tagged_field(UNKNOWN_TAG, unknown()),
            )
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let topic = |id: u8| {
        sak::ShareAcknowledgeTopicResponse::default()
            .with_topic_id(uuid!(id))
            .with_partitions(vec![partition(0, alt), partition(1, !alt)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let node = |id: i32, null: bool| {
        sak::NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(s("b1"))
            .with_port(9092)
            .with_rack(null_or(null, s("rack-a")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let body = sak::ShareAcknowledgeResponse::default()
        .with_throttle_time_ms(3)
        .with_error_code(0)
        .with_error_message(null_or(!alt, s("fine")))
        .with_responses(vec![topic(1), topic(2)])
        .with_node_endpoints(vec![node(1, alt), node(2, !alt)])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown());
    ShareAcknowledgeResponseV2 {
        body,
        acquisition_lock_timeout_ms: if v >= 2 { 15_000 } else { 0 },
    }
}

pub(super) fn share_group_describe(_v: i16, alt: bool) -> sgd::ShareGroupDescribeResponse {
    let topic = |id: u8, name: &'static str, partitions: Vec<i32>| {
        sgd::TopicPartitions::default()
            .with_topic_id(uuid!(id))
            .with_topic_name(TopicName(s(name)))
            .with_partitions(partitions)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let member = |id: &'static str, null: bool| {
        sgd::Member::default()
            .with_member_id(s(id))
            .with_rack_id(null_or(null, s("rack-1")))
            .with_member_epoch(7)
            .with_client_id(s("kcon"))
            .with_client_host(s("/10.0.0.1"))
            .with_subscribed_topic_names(vec![TopicName(s("a")), TopicName(s("b"))])
            .with_assignment(
                sgd::Assignment::default()
                    .with_topic_partitions(vec![topic(1, "a", vec![0, 1]), topic(2, "b", vec![0])])
                    .with_unknown_tagged_field(UNKNOWN_TAG, unknown()),
            )
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let group = |id: &'static str| {
        sgd::DescribedGroup::default()
            .with_error_code(0)
            .with_error_message(null_or(!alt, s("fine")))
            .with_group_id(GroupId(s(id)))
            .with_group_state(s("Stable"))
            .with_group_epoch(9)
            .with_assignment_epoch(8)
            .with_assignor_name(s("simple"))
            .with_members(vec![member("m-1", alt), member("m-2", !alt)])
            .with_authorized_operations(i32::MIN)
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    sgd::ShareGroupDescribeResponse::default()
        .with_throttle_time_ms(3)
        .with_groups(vec![group("g1"), group("g2")])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn describe_share_group_offsets(
    v: i16,
    alt: bool,
) -> crate::share_offsets_v1::DescribeShareGroupOffsetsResponseV1 {
    let partition = |i: i32, null: bool| {
        dsgo::DescribeShareGroupOffsetsResponsePartition::default()
            .with_partition_index(i)
            .with_start_offset(if i == 0 { 42 } else { -1 })
            .with_leader_epoch(3)
            .with_error_code(if i == 0 { 0 } else { 3 })
            .with_error_message(null_or(null, s("unknown partition")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let topic = |id: u8, name: &'static str| {
        dsgo::DescribeShareGroupOffsetsResponseTopic::default()
            .with_topic_name(TopicName(s(name)))
            .with_topic_id(uuid!(id))
            .with_partitions(vec![partition(0, alt), partition(1, !alt)])
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let group = |id: &'static str, error: i16| {
        dsgo::DescribeShareGroupOffsetsResponseGroup::default()
            .with_group_id(GroupId(s(id)))
            .with_topics(vec![topic(1, "a"), topic(2, "b")])
            .with_error_code(error)
            .with_error_message(null_or(error == 0, s("denied")))
            .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
    };
    let body = dsgo::DescribeShareGroupOffsetsResponse::default()
        .with_throttle_time_ms(3)
        .with_groups(vec![group("g1", 0), group("g2", 30)])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown());
    // v1: every partition's lag, one of them none (-1).
    let lags = if v >= 1 {
        vec![vec![vec![0, 9]; 2], vec![vec![-1, 3000]; 2]]
    } else {
        Vec::new()
    };
    crate::share_offsets_v1::DescribeShareGroupOffsetsResponseV1 { body, lags }
}

pub(super) fn describe_configs(v: i16, alt: bool) -> dc::DescribeConfigsResponse {
    let flex = v >= 4;
    let synonym = |name: &'static str, null: bool| {
        dc::DescribeConfigsSynonym::default()
            .with_name(s(name))
            .with_value(null_or(null, s("latest")))
            .with_source(5)
            .when(flex, |x| {
                x.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let entry = |name: &'static str, null: bool| {
        dc::DescribeConfigsResourceResult::default()
            .with_name(s(name))
            .with_value(null_or(null, s("earliest")))
            .with_read_only(null)
            .with_config_source(8)
            .with_is_sensitive(!null)
            .with_synonyms(vec![synonym(name, null), synonym("group.x", !null)])
            .when(v >= 3, |x| {
                x.with_config_type(2)
                    .with_documentation(null_or(!null, s("where a share group starts")))
            })
            .when(flex, |x| {
                x.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    let result = |name: &'static str, error: i16| {
        dc::DescribeConfigsResult::default()
            .with_error_code(error)
            .with_error_message(null_or(error == 0, s("unknown resource type")))
            .with_resource_type(32)
            .with_resource_name(s(name))
            .with_configs(vec![
                entry("share.auto.offset.reset", alt),
                entry("share.record.lock.duration.ms", !alt),
            ])
            .when(flex, |x| {
                x.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    dc::DescribeConfigsResponse::default()
        .with_throttle_time_ms(3)
        .with_results(vec![result("g1", 0), result("g2", 42)])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn incremental_alter_configs(v: i16, alt: bool) -> iac::IncrementalAlterConfigsResponse {
    let flex = v >= 1;
    let response = |name: &'static str, error: i16, null: bool| {
        iac::AlterConfigsResourceResponse::default()
            .with_error_code(error)
            .with_error_message(null_or(null, s("Unknown group config name: x")))
            .with_resource_type(32)
            .with_resource_name(s(name))
            .when(flex, |x| {
                x.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
            })
    };
    iac::IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(3)
        .with_responses(vec![response("g1", 0, alt), response("g2", 40, !alt)])
        .when(flex, |r| {
            r.with_unknown_tagged_field(UNKNOWN_TAG, unknown())
        })
}

pub(super) fn get_telemetry_subscriptions(
    _v: i16,
    alt: bool,
) -> gts::GetTelemetrySubscriptionsResponse {
    gts::GetTelemetrySubscriptionsResponse::default()
        .with_throttle_time_ms(3)
        .with_error_code(if alt { 89 } else { 0 })
        .with_client_instance_id(uuid!(7))
        .with_subscription_id(-12345)
        .with_accepted_compression_types(vec![4, 3, 1, 2])
        .with_push_interval_ms(300_000)
        .with_telemetry_max_bytes(1 << 20)
        .with_delta_temporality(true)
        .with_requested_metrics(vec![s("org.apache.kafka.consumer."), s("*")])
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn push_telemetry(_v: i16, alt: bool) -> pt::PushTelemetryResponse {
    pt::PushTelemetryResponse::default()
        .with_throttle_time_ms(3)
        .with_error_code(if alt { 117 } else { 0 })
        .with_unknown_tagged_field(UNKNOWN_TAG, unknown())
}

pub(super) fn describe_transactions(_v: i16, alt: bool) -> dt::DescribeTransactionsResponse {
    let state = |id: &'static str, error_code: i16, state: &'static str| {
        dt::TransactionState::default()
            .with_error_code(error_code)
            .with_transactional_id(kafka_protocol::messages::TransactionalId(s(id)))
            .with_transaction_state(s(state))
            .with_transaction_timeout_ms(60_000)
            .with_transaction_start_time_ms(1_700_000_000_000)
            .with_producer_id(ProducerId(9))
            .with_producer_epoch(3)
            .with_topics(vec![
                dt::TopicData::default()
                    .with_topic(TopicName(s("a")))
                    .with_partitions(vec![0, 2]),
            ])
    };
    let states = if alt {
        vec![state("tx-2", 53, "")]
    } else {
        vec![
            state("tx-1", 0, "PrepareCommit"),
            state("tx-3", 0, "CompleteAbort"),
        ]
    };
    dt::DescribeTransactionsResponse::default()
        .with_throttle_time_ms(4)
        .with_transaction_states(states)
}
