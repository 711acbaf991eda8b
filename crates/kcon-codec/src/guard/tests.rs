//! The guard's tests. The central one encodes a populated response at every supported version
//! and requires the guard to accept it and kafka-protocol to give it back: that is what proves
//! the hand-written schemas match kafka-protocol's decoders.

use std::fmt::Debug;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, ApiVersionsRequest,
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DescribeGroupsRequest, EndTxnRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest,
    SaslAuthenticateRequest, SaslHandshakeRequest, ShareGroupHeartbeatRequest, SyncGroupRequest,
    TxnOffsetCommitRequest, fetch_response as fr,
};
use kafka_protocol::messages::{
    DescribeConfigsRequest, GetTelemetrySubscriptionsRequest, IncrementalAlterConfigsRequest,
    PushTelemetryRequest, ShareGroupDescribeRequest,
};
use kafka_protocol::protocol::{Decodable, Request};
use proptest::prelude::*;

use super::schema::{Elem, Message, StructDef, Ty};
use super::{MESSAGES, NullPatches, check_response, covers, populated};
use crate::error::{DecodeError, DecodeReason, Part};
use crate::frame::decode_frame;
use crate::header::decode_response_header;
use crate::message::{decode_response, encode_response};
use crate::versions::{SUPPORTED, is_supported};
use crate::wire::put_uvarint;

/// Runs `$body` with `$R` the request type of `$api` and `$build` its populated-response
/// builder.
macro_rules! dispatch {
    ($api:expr, $R:ident, $build:ident => $body:expr) => {
        match $api {
            ApiKey::Produce => {
                type $R = ProduceRequest;
                let $build = populated::produce;
                $body
            }
            ApiKey::Fetch => {
                type $R = FetchRequest;
                let $build = populated::fetch;
                $body
            }
            ApiKey::ListOffsets => {
                type $R = ListOffsetsRequest;
                let $build = populated::list_offsets;
                $body
            }
            ApiKey::Metadata => {
                type $R = MetadataRequest;
                let $build = populated::metadata;
                $body
            }
            ApiKey::OffsetCommit => {
                type $R = OffsetCommitRequest;
                let $build = populated::offset_commit;
                $body
            }
            ApiKey::OffsetFetch => {
                type $R = OffsetFetchRequest;
                let $build = populated::offset_fetch;
                $body
            }
            ApiKey::FindCoordinator => {
                type $R = FindCoordinatorRequest;
                let $build = populated::find_coordinator;
                $body
            }
            ApiKey::JoinGroup => {
                type $R = JoinGroupRequest;
                let $build = populated::join_group;
                $body
            }
            ApiKey::Heartbeat => {
                type $R = HeartbeatRequest;
                let $build = populated::heartbeat;
                $body
            }
            ApiKey::LeaveGroup => {
                type $R = LeaveGroupRequest;
                let $build = populated::leave_group;
                $body
            }
            ApiKey::SyncGroup => {
                type $R = SyncGroupRequest;
                let $build = populated::sync_group;
                $body
            }
            ApiKey::DescribeGroups => {
                type $R = DescribeGroupsRequest;
                let $build = populated::describe_groups;
                $body
            }
            ApiKey::ListGroups => {
                type $R = ListGroupsRequest;
                let $build = populated::list_groups;
                $body
            }
            ApiKey::SaslHandshake => {
                type $R = SaslHandshakeRequest;
                let $build = populated::sasl_handshake;
                $body
            }
            ApiKey::ApiVersions => {
                type $R = ApiVersionsRequest;
                let $build = populated::api_versions;
                $body
            }
            ApiKey::CreateTopics => {
                type $R = CreateTopicsRequest;
                let $build = populated::create_topics;
                $body
            }
            ApiKey::DeleteGroups => {
                type $R = DeleteGroupsRequest;
                let $build = populated::delete_groups;
                $body
            }
            ApiKey::SaslAuthenticate => {
                type $R = SaslAuthenticateRequest;
                let $build = populated::sasl_authenticate;
                $body
            }
            ApiKey::OffsetForLeaderEpoch => {
                type $R = OffsetForLeaderEpochRequest;
                let $build = populated::offset_for_leader_epoch;
                $body
            }
            ApiKey::OffsetDelete => {
                type $R = OffsetDeleteRequest;
                let $build = populated::offset_delete;
                $body
            }
            ApiKey::ConsumerGroupHeartbeat => {
                type $R = ConsumerGroupHeartbeatRequest;
                let $build = populated::consumer_group_heartbeat;
                $body
            }
            ApiKey::ConsumerGroupDescribe => {
                type $R = ConsumerGroupDescribeRequest;
                let $build = populated::consumer_group_describe;
                $body
            }
            ApiKey::InitProducerId => {
                type $R = InitProducerIdRequest;
                let $build = populated::init_producer_id;
                $body
            }
            ApiKey::AddPartitionsToTxn => {
                type $R = AddPartitionsToTxnRequest;
                let $build = populated::add_partitions_to_txn;
                $body
            }
            ApiKey::AddOffsetsToTxn => {
                type $R = AddOffsetsToTxnRequest;
                let $build = populated::add_offsets_to_txn;
                $body
            }
            ApiKey::TxnOffsetCommit => {
                type $R = TxnOffsetCommitRequest;
                let $build = populated::txn_offset_commit;
                $body
            }
            ApiKey::EndTxn => {
                type $R = EndTxnRequest;
                let $build = populated::end_txn;
                $body
            }
            ApiKey::ShareGroupHeartbeat => {
                type $R = ShareGroupHeartbeatRequest;
                let $build = populated::share_group_heartbeat;
                $body
            }
            ApiKey::ShareFetch => {
                type $R = crate::share_v2::ShareFetchRequestV2;
                let $build = populated::share_fetch;
                $body
            }
            ApiKey::ShareAcknowledge => {
                type $R = crate::share_v2::ShareAcknowledgeRequestV2;
                let $build = populated::share_acknowledge;
                $body
            }
            ApiKey::ShareGroupDescribe => {
                type $R = ShareGroupDescribeRequest;
                let $build = populated::share_group_describe;
                $body
            }
            ApiKey::DescribeShareGroupOffsets => {
                type $R = crate::share_offsets_v1::DescribeShareGroupOffsetsRequestV1;
                let $build = populated::describe_share_group_offsets;
                $body
            }
            ApiKey::DescribeConfigs => {
                type $R = DescribeConfigsRequest;
                let $build = populated::describe_configs;
                $body
            }
            ApiKey::IncrementalAlterConfigs => {
                type $R = IncrementalAlterConfigsRequest;
                let $build = populated::incremental_alter_configs;
                $body
            }
            ApiKey::GetTelemetrySubscriptions => {
                type $R = GetTelemetrySubscriptionsRequest;
                let $build = populated::get_telemetry_subscriptions;
                $body
            }
            ApiKey::PushTelemetry => {
                type $R = PushTelemetryRequest;
                let $build = populated::push_telemetry;
                $body
            }
            ApiKey::DescribeTransactions => {
                type $R = kafka_protocol::messages::DescribeTransactionsRequest;
                let $build = populated::describe_transactions;
                $body
            }
            other => panic!("no populated response for {other:?}"),
        }
    };
}

/// Encodes `resp` as a frame, checks that the guard accepts its body and that it decodes back
/// to `resp`, and returns the body.
fn round_trip<R: Request>(version: i16, resp: R::Response) -> Bytes
where
    R::Response: PartialEq + Debug,
{
    let mut buf = BytesMut::new();
    encode_response::<R>(&mut buf, 7, version, &resp)
        .unwrap_or_else(|e| panic!("api {} v{version} does not encode: {e}", R::KEY));
    // `encode_response` wrote exactly one whole frame.
    let frame = decode_frame(&mut buf).unwrap().unwrap();
    let (_, header_len) = decode_response_header(R::KEY, version, &frame).unwrap();
    let body = frame.slice(header_len..);
    match check_response(R::KEY, version, &body) {
        Ok(checked) => {
            assert!(
                checked.nulls.is_empty(),
                "a valid response needs no rewrite: {:?}",
                checked.nulls
            );
            assert_eq!(checked.end, body.len(), "the message is the whole body");
        }
        Err(e) => panic!("the guard refuses a valid response: {e}"),
    }
    let (header, back) = decode_response::<R>(frame, version)
        .unwrap_or_else(|e| panic!("api {} v{version} does not decode: {e}", R::KEY));
    assert_eq!(header.correlation_id, 7);
    assert_eq!(back, resp, "api {} v{version}", R::KEY);
    body
}

/// The body of a populated `api` response at `version`, after checking its round trip.
fn populated_body(api: ApiKey, version: i16, alt: bool) -> Bytes {
    dispatch!(api, R, build => round_trip::<R>(version, build(version, alt)))
}

/// Whether kafka-protocol decodes `body` as the `api` response at `version`, all of it.
///
/// Only call this on bodies the guard accepted, or on bodies whose array counts are known to
/// be small: on anything else it may try to allocate without bound.
fn kafka_protocol_decodes(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
    fn decode<T: Decodable>(body: &[u8], version: i16) -> Result<(), String> {
        let mut buf = Bytes::copy_from_slice(body);
        T::decode(&mut buf, version).map_err(|e| e.to_string())?;
        if buf.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes left over", buf.len()))
        }
    }
    dispatch!(api, R, _build => decode::<<R as Request>::Response>(body, version))
}

/// What the guard hands kafka-protocol's decoder: `body` up to the end of the message, with
/// the nulls it took for empty rewritten, or `None` when it refuses `body`.
///
/// The callers ask kafka-protocol to decode that *exactly*, so they also check that the two
/// agree on where the message ends.
fn guarded(api: ApiKey, version: i16, body: &[u8]) -> Option<Vec<u8>> {
    let checked = check_response(api as i16, version, body).ok()?;
    let message = Bytes::copy_from_slice(&body[..checked.end]);
    Some(checked.nulls.apply(message).to_vec())
}

/// Every supported `(api, version)`.
fn supported_pairs() -> impl Iterator<Item = (ApiKey, i16)> {
    SUPPORTED
        .iter()
        .flat_map(|&(api, min, max)| (min..=max).map(move |v| (api, v)))
}

#[test]
fn every_supported_version_round_trips_through_the_guard() {
    let mut pairs = 0;
    for (api, version) in supported_pairs() {
        for alt in [false, true] {
            let body = populated_body(api, version, alt);
            assert!(!body.is_empty());
        }
        pairs += 1;
    }
    // 37 APIs; a change to SUPPORTED should be a deliberate change here too (Produce v12,
    // EndTxn v5 and TxnOffsetCommit v5: transaction version 2; GetTelemetrySubscriptions and
    // PushTelemetry v0: KIP-714; DescribeTransactions v0).
    assert_eq!(pairs, 180);
}

#[test]
fn covers_exactly_the_supported_versions() {
    // DescribeShareGroupOffsets is key 90.
    for api_key in -2..=95 {
        for version in -2..=30 {
            assert_eq!(
                covers(api_key, version),
                is_supported(api_key, version),
                "api {api_key} v{version}"
            );
        }
    }
    assert_eq!(MESSAGES.len(), SUPPORTED.len());
}

#[test]
fn an_uncovered_version_is_refused() {
    let err = check_response(ApiKey::Fetch as i16, 3, &[]).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::Other(_)), "{err:?}");
}

/// Calls `f` on every array field of `def` present at `version`, looking through nested structs.
fn each_array(def: &StructDef, version: i16, f: &mut impl FnMut(&'static str, Elem)) {
    for field in def.fields {
        if !field.versions.contains(version) {
            continue;
        }
        match field.ty {
            Ty::Array(elem) => {
                f(field.path, elem);
                if let Elem::Struct(inner) = elem {
                    each_array(inner, version, f);
                }
            }
            Ty::Struct(inner) | Ty::OptStruct(inner) => each_array(inner, version, f),
            _ => {}
        }
    }
}

#[test]
fn every_array_element_takes_at_least_one_byte() {
    // The bound `count × min_size ≤ remaining` only limits allocation if every element takes
    // space; the walker clamps the minimum to one regardless, but a zero here would mean a
    // schema mistake (an element with no fields at a version that has the array).
    for msg in MESSAGES {
        for version in 0..=20 {
            if !msg.versions.contains(version) {
                continue;
            }
            let flexible = version >= msg.flexible;
            each_array(msg.body, version, &mut |path, elem| {
                assert!(
                    elem.min_size(version, flexible) >= 1,
                    "{:?} v{version} {path}",
                    msg.api_key
                );
            });
        }
    }
}

#[test]
fn each_array_allocates_under_64_bytes_per_input_byte() {
    // kafka-protocol reserves `count × size_of::<T>()` for an array; the guard allows
    // `count ≤ remaining / min_size`, so the reservation is at most `size_of / min_size` bytes
    // per input byte. The fuzz harness fails any single allocation over 64 bytes per input
    // byte (plus 64 KiB): every element type must stay under that ratio at every version.
    use kafka_protocol::messages::{
        add_partitions_to_txn_response as apt, api_versions_response as av,
        consumer_group_describe_response as cgd, consumer_group_heartbeat_response as cgh,
        create_topics_response as ct, delete_groups_response as dg,
        describe_groups_response as dsg, fetch_response as fr, find_coordinator_response as fc,
        join_group_response as jg, leave_group_response as lg, list_groups_response as lsg,
        list_offsets_response as lo, metadata_response as md, offset_commit_response as oc,
        offset_delete_response as od, offset_fetch_response as of,
        offset_for_leader_epoch_response as ofle, produce_response as pr,
        share_acknowledge_response as sak, share_fetch_response as sf,
        share_group_heartbeat_response as sgh, txn_offset_commit_response as toc,
    };
    use kafka_protocol::messages::{
        describe_configs_response as dc, describe_share_group_offsets_response as dsgo,
        incremental_alter_configs_response as iac, share_group_describe_response as sgd,
    };
    use kafka_protocol::protocol::StrBytes;
    use std::mem::size_of;
    let element_sizes: &[(ApiKey, &str, usize)] = &[
        (
            ApiKey::Produce,
            "responses",
            size_of::<pr::TopicProduceResponse>(),
        ),
        (
            ApiKey::Produce,
            "responses.partition_responses",
            size_of::<pr::PartitionProduceResponse>(),
        ),
        (
            ApiKey::Produce,
            "responses.partition_responses.record_errors",
            size_of::<pr::BatchIndexAndErrorMessage>(),
        ),
        (
            ApiKey::Produce,
            "node_endpoints",
            size_of::<pr::NodeEndpoint>(),
        ),
        (
            ApiKey::Fetch,
            "responses",
            size_of::<fr::FetchableTopicResponse>(),
        ),
        (
            ApiKey::Fetch,
            "responses.partitions",
            size_of::<fr::PartitionData>(),
        ),
        (
            ApiKey::Fetch,
            "responses.partitions.aborted_transactions",
            size_of::<fr::AbortedTransaction>(),
        ),
        (
            ApiKey::Fetch,
            "node_endpoints",
            size_of::<fr::NodeEndpoint>(),
        ),
        (
            ApiKey::ListOffsets,
            "topics",
            size_of::<lo::ListOffsetsTopicResponse>(),
        ),
        (
            ApiKey::ListOffsets,
            "topics.partitions",
            size_of::<lo::ListOffsetsPartitionResponse>(),
        ),
        (
            ApiKey::Metadata,
            "brokers",
            size_of::<md::MetadataResponseBroker>(),
        ),
        (
            ApiKey::Metadata,
            "topics",
            size_of::<md::MetadataResponseTopic>(),
        ),
        (
            ApiKey::Metadata,
            "topics.partitions",
            size_of::<md::MetadataResponsePartition>(),
        ),
        (
            ApiKey::Metadata,
            "topics.partitions.replica_nodes",
            size_of::<i32>(),
        ),
        (
            ApiKey::Metadata,
            "topics.partitions.isr_nodes",
            size_of::<i32>(),
        ),
        (
            ApiKey::Metadata,
            "topics.partitions.offline_replicas",
            size_of::<i32>(),
        ),
        (
            ApiKey::OffsetCommit,
            "topics",
            size_of::<oc::OffsetCommitResponseTopic>(),
        ),
        (
            ApiKey::OffsetCommit,
            "topics.partitions",
            size_of::<oc::OffsetCommitResponsePartition>(),
        ),
        (
            ApiKey::OffsetFetch,
            "topics",
            size_of::<of::OffsetFetchResponseTopic>(),
        ),
        (
            ApiKey::OffsetFetch,
            "topics.partitions",
            size_of::<of::OffsetFetchResponsePartition>(),
        ),
        (
            ApiKey::OffsetFetch,
            "groups",
            size_of::<of::OffsetFetchResponseGroup>(),
        ),
        (
            ApiKey::OffsetFetch,
            "groups.topics",
            size_of::<of::OffsetFetchResponseTopics>(),
        ),
        (
            ApiKey::OffsetFetch,
            "groups.topics.partitions",
            size_of::<of::OffsetFetchResponsePartitions>(),
        ),
        (
            ApiKey::FindCoordinator,
            "coordinators",
            size_of::<fc::Coordinator>(),
        ),
        (
            ApiKey::JoinGroup,
            "members",
            size_of::<jg::JoinGroupResponseMember>(),
        ),
        (
            ApiKey::LeaveGroup,
            "members",
            size_of::<lg::MemberResponse>(),
        ),
        (
            ApiKey::DescribeGroups,
            "groups",
            size_of::<dsg::DescribedGroup>(),
        ),
        (
            ApiKey::DescribeGroups,
            "groups.members",
            size_of::<dsg::DescribedGroupMember>(),
        ),
        (ApiKey::ListGroups, "groups", size_of::<lsg::ListedGroup>()),
        (ApiKey::SaslHandshake, "mechanisms", size_of::<StrBytes>()),
        (ApiKey::ApiVersions, "api_keys", size_of::<av::ApiVersion>()),
        (
            ApiKey::ApiVersions,
            "supported_features",
            size_of::<av::SupportedFeatureKey>(),
        ),
        (
            ApiKey::ApiVersions,
            "finalized_features",
            size_of::<av::FinalizedFeatureKey>(),
        ),
        (
            ApiKey::CreateTopics,
            "topics",
            size_of::<ct::CreatableTopicResult>(),
        ),
        (
            ApiKey::CreateTopics,
            "topics.configs",
            size_of::<ct::CreatableTopicConfigs>(),
        ),
        (
            ApiKey::DeleteGroups,
            "results",
            size_of::<dg::DeletableGroupResult>(),
        ),
        (
            ApiKey::OffsetForLeaderEpoch,
            "topics",
            size_of::<ofle::OffsetForLeaderTopicResult>(),
        ),
        (
            ApiKey::OffsetForLeaderEpoch,
            "topics.partitions",
            size_of::<ofle::EpochEndOffset>(),
        ),
        (
            ApiKey::OffsetDelete,
            "topics",
            size_of::<od::OffsetDeleteResponseTopic>(),
        ),
        (
            ApiKey::OffsetDelete,
            "topics.partitions",
            size_of::<od::OffsetDeleteResponsePartition>(),
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            "assignment.topic_partitions",
            size_of::<cgh::TopicPartitions>(),
        ),
        (
            ApiKey::ConsumerGroupHeartbeat,
            "assignment.topic_partitions.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups",
            size_of::<cgd::DescribedGroup>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members",
            size_of::<cgd::Member>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members.subscribed_topic_names",
            size_of::<StrBytes>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members.assignment.topic_partitions",
            size_of::<cgd::TopicPartitions>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members.assignment.topic_partitions.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members.target_assignment.topic_partitions",
            size_of::<cgd::TopicPartitions>(),
        ),
        (
            ApiKey::ConsumerGroupDescribe,
            "groups.members.target_assignment.topic_partitions.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::AddPartitionsToTxn,
            "results_by_topic_v3_and_below",
            size_of::<apt::AddPartitionsToTxnTopicResult>(),
        ),
        (
            ApiKey::AddPartitionsToTxn,
            "results_by_topic_v3_and_below.results_by_partition",
            size_of::<apt::AddPartitionsToTxnPartitionResult>(),
        ),
        (
            ApiKey::TxnOffsetCommit,
            "topics",
            size_of::<toc::TxnOffsetCommitResponseTopic>(),
        ),
        (
            ApiKey::TxnOffsetCommit,
            "topics.partitions",
            size_of::<toc::TxnOffsetCommitResponsePartition>(),
        ),
        (
            ApiKey::ShareGroupHeartbeat,
            "assignment.topic_partitions",
            size_of::<sgh::TopicPartitions>(),
        ),
        (
            ApiKey::ShareGroupHeartbeat,
            "assignment.topic_partitions.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::ShareFetch,
            "responses",
            size_of::<sf::ShareFetchableTopicResponse>(),
        ),
        (
            ApiKey::ShareFetch,
            "responses.partitions",
            size_of::<sf::PartitionData>(),
        ),
        (
            ApiKey::ShareFetch,
            "responses.partitions.acquired_records",
            size_of::<sf::AcquiredRecords>(),
        ),
        (
            ApiKey::ShareFetch,
            "node_endpoints",
            size_of::<sf::NodeEndpoint>(),
        ),
        (
            ApiKey::ShareAcknowledge,
            "responses",
            size_of::<sak::ShareAcknowledgeTopicResponse>(),
        ),
        (
            ApiKey::ShareAcknowledge,
            "responses.partitions",
            size_of::<sak::PartitionData>(),
        ),
        (
            ApiKey::ShareAcknowledge,
            "node_endpoints",
            size_of::<sak::NodeEndpoint>(),
        ),
        (
            ApiKey::ShareGroupDescribe,
            "groups",
            size_of::<sgd::DescribedGroup>(),
        ),
        (
            ApiKey::ShareGroupDescribe,
            "groups.members",
            size_of::<sgd::Member>(),
        ),
        (
            ApiKey::ShareGroupDescribe,
            "groups.members.subscribed_topic_names",
            size_of::<StrBytes>(),
        ),
        (
            ApiKey::ShareGroupDescribe,
            "groups.members.assignment.topic_partitions",
            size_of::<sgd::TopicPartitions>(),
        ),
        (
            ApiKey::ShareGroupDescribe,
            "groups.members.assignment.topic_partitions.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::DescribeShareGroupOffsets,
            "groups",
            size_of::<dsgo::DescribeShareGroupOffsetsResponseGroup>(),
        ),
        (
            ApiKey::DescribeShareGroupOffsets,
            "groups.topics",
            size_of::<dsgo::DescribeShareGroupOffsetsResponseTopic>(),
        ),
        (
            ApiKey::DescribeShareGroupOffsets,
            "groups.topics.partitions",
            size_of::<dsgo::DescribeShareGroupOffsetsResponsePartition>(),
        ),
        (
            ApiKey::DescribeConfigs,
            "results",
            size_of::<dc::DescribeConfigsResult>(),
        ),
        (
            ApiKey::DescribeConfigs,
            "results.configs",
            size_of::<dc::DescribeConfigsResourceResult>(),
        ),
        (
            ApiKey::DescribeConfigs,
            "results.configs.synonyms",
            size_of::<dc::DescribeConfigsSynonym>(),
        ),
        (
            ApiKey::IncrementalAlterConfigs,
            "responses",
            size_of::<iac::AlterConfigsResourceResponse>(),
        ),
        (
            ApiKey::DescribeTransactions,
            "transaction_states",
            size_of::<kafka_protocol::messages::describe_transactions_response::TransactionState>(),
        ),
        (
            ApiKey::DescribeTransactions,
            "transaction_states.topics",
            size_of::<kafka_protocol::messages::describe_transactions_response::TopicData>(),
        ),
        (
            ApiKey::DescribeTransactions,
            "transaction_states.topics.partitions",
            size_of::<i32>(),
        ),
        (
            ApiKey::GetTelemetrySubscriptions,
            "accepted_compression_types",
            size_of::<i8>(),
        ),
        (
            ApiKey::GetTelemetrySubscriptions,
            "requested_metrics",
            size_of::<StrBytes>(),
        ),
    ];
    for msg in MESSAGES {
        for version in 0..=20 {
            if !msg.versions.contains(version) {
                continue;
            }
            let flexible = version >= msg.flexible;
            each_array(msg.body, version, &mut |path, elem| {
                let Some(&(_, _, size)) = element_sizes
                    .iter()
                    .find(|(api, p, _)| *api == msg.api_key && *p == path)
                else {
                    panic!(
                        "{:?} {path}: add its element type to this table",
                        msg.api_key
                    );
                };
                let ratio = size as f64 / elem.min_size(version, flexible) as f64;
                assert!(
                    ratio <= 64.0,
                    "{:?} v{version} {path}: {ratio:.1}",
                    msg.api_key
                );
            });
        }
    }
    // The largest ratio today is about 51: ListGroups v3 `groups`, four strings in a
    // 152-byte struct against three bytes at least on the wire.
}

#[test]
fn every_truncation_is_an_error_and_kafka_protocol_agrees() {
    // The five pairs named first, plus every other supported pair: a proper prefix of a valid
    // body is never itself valid, since the walk reads the same bytes and needs more.
    let named = [
        (ApiKey::Fetch, 17),
        (ApiKey::Metadata, 12),
        (ApiKey::JoinGroup, 9),
        (ApiKey::OffsetFetch, 9),
        (ApiKey::ApiVersions, 3),
    ];
    for (api, version) in named.into_iter().chain(supported_pairs()) {
        for alt in [false, true] {
            let body = populated_body(api, version, alt);
            for cut in 0..body.len() {
                let prefix = &body[..cut];
                assert!(
                    check_response(api as i16, version, prefix).is_err(),
                    "{api:?} v{version} cut at {cut}"
                );
                // The counts in a prefix of a valid body are the valid ones, so kafka-protocol
                // can safely be asked too: it must fail as well.
                assert!(
                    kafka_protocol_decodes(api, version, prefix).is_err(),
                    "{api:?} v{version} cut at {cut}: kafka-protocol decodes it"
                );
            }
        }
    }
}

/// A body under construction.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn i16(mut self, v: i16) -> Self {
        self.0.put_i16(v);
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.put_i32(v);
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.put_i64(v);
        self
    }
    fn uv(mut self, v: u32) -> Self {
        put_uvarint(&mut self.0, u64::from(v));
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn pad_to(mut self, len: usize) -> Self {
        self.0.resize(len, 0);
        self
    }
}

/// The nulls the guard takes for empty in `body`, which must be one whole message.
fn check(api: ApiKey, version: i16, body: &Body) -> Result<NullPatches, DecodeError> {
    let checked = check_response(api as i16, version, &body.0)?;
    assert_eq!(checked.end, body.0.len(), "the message is the whole body");
    Ok(checked.nulls)
}

#[test]
fn a_huge_count_in_a_tiny_body_is_refused() {
    // Metadata v12 (flexible): throttle, no brokers, null cluster id, controller, then a topics
    // count of 2^30, padded to 20 bytes.
    let body = Body::default()
        .i32(0)
        .uv(1)
        .uv(0)
        .i32(1)
        .uv((1 << 30) + 1)
        .pad_to(20);
    let err = check(ApiKey::Metadata, 12, &body).unwrap_err();
    assert_eq!(err.part, Part::ResponseBody);
    assert_eq!(err.field, Some("topics"));
    assert_eq!(err.offset, 10);
    assert_eq!(
        err.reason,
        DecodeReason::CountTooLarge {
            count: 1 << 30,
            remaining: 5
        }
    );

    // Metadata v1 (not flexible): the brokers count comes first, as an int32.
    let body = Body::default().i32(1 << 30).pad_to(20);
    let err = check(ApiKey::Metadata, 1, &body).unwrap_err();
    assert_eq!(err.field, Some("brokers"));
    assert_eq!(err.offset, 0);
    assert_eq!(
        err.reason,
        DecodeReason::CountTooLarge {
            count: 1 << 30,
            remaining: 16
        }
    );

    // A count that fits the bytes but not the elements' size: 4 brokers of at least 14 bytes
    // (node id, empty host, port, empty rack) do not fit in 20.
    let body = Body::default().i32(4).pad_to(24);
    let err = check(ApiKey::Metadata, 1, &body).unwrap_err();
    assert_eq!(
        err.reason,
        DecodeReason::CountTooLarge {
            count: 4,
            remaining: 20
        }
    );

    // Nested: Fetch v4, one topic, a partitions count of 2^31 - 1.
    let body = Body::default()
        .i32(0)
        .i32(1)
        .i16(1)
        .raw(b"t")
        .i32(i32::MAX)
        .pad_to(64);
    let err = check(ApiKey::Fetch, 4, &body).unwrap_err();
    assert_eq!(err.field, Some("responses.partitions"));
    assert!(matches!(err.reason, DecodeReason::CountTooLarge { .. }));

    // A tagged-field count is bounded the same way: Heartbeat v4 claims 2^28 tagged fields.
    let body = Body::default().i32(0).i16(0).uv(1 << 28).pad_to(16);
    let err = check(ApiKey::Heartbeat, 4, &body).unwrap_err();
    assert_eq!(err.field, Some("_tagged_fields"));
    assert!(matches!(err.reason, DecodeReason::CountTooLarge { .. }));
}

#[test]
fn lengths_are_checked_against_the_bytes_left() {
    // SaslAuthenticate v0: error code, error message of length 1000 in a short body.
    let body = Body::default().i16(0).i16(1000).raw(b"short");
    let err = check(ApiKey::SaslAuthenticate, 0, &body).unwrap_err();
    assert_eq!(err.field, Some("error_message"));
    assert_eq!(err.offset, 4);
    assert_eq!(
        err.reason,
        DecodeReason::Truncated {
            needed: 1000,
            available: 5
        }
    );

    // A negative length other than -1.
    let body = Body::default().i16(0).i16(-2);
    let err = check(ApiKey::SaslAuthenticate, 0, &body).unwrap_err();
    assert_eq!(err.reason, DecodeReason::InvalidLength(-2));

    // Bytes with a compact length of 2^32 - 2 (SaslAuthenticate v2 auth_bytes).
    let body = Body::default().i16(0).uv(0).uv(u32::MAX).pad_to(16);
    let err = check(ApiKey::SaslAuthenticate, 2, &body).unwrap_err();
    assert_eq!(err.field, Some("auth_bytes"));
    assert!(matches!(err.reason, DecodeReason::Truncated { .. }));

    // Null where the decoder has no null: a mechanism of SaslHandshake.
    let body = Body::default().i16(0).i32(1).i16(-1);
    let err = check(ApiKey::SaslHandshake, 0, &body).unwrap_err();
    assert_eq!(err.field, Some("mechanisms"));
    assert_eq!(err.reason, DecodeReason::InvalidLength(-1));
    assert!(kafka_protocol_decodes(ApiKey::SaslHandshake, 0, &body.0).is_err());

    // Not UTF-8.
    let body = Body::default().i16(0).i32(1).i16(2).raw(&[0xc3, 0x28]);
    let err = check(ApiKey::SaslHandshake, 0, &body).unwrap_err();
    assert_eq!(err.reason, DecodeReason::InvalidUtf8);
    assert!(kafka_protocol_decodes(ApiKey::SaslHandshake, 0, &body.0).is_err());
}

#[test]
fn the_walk_stops_at_the_end_of_the_message_and_reads_nothing_after_it() {
    // Heartbeat v0 is one error code: the message ends after two bytes, whatever follows.
    for after in [&[][..], &[0], &[0xff; 9]] {
        let body = Body::default().i16(0).raw(after);
        let checked = check_response(ApiKey::Heartbeat as i16, 0, &body.0).unwrap();
        assert_eq!(checked.end, 2, "{after:?}");
    }

    // Metadata v12 as librdkafka's mock cluster answers it: the body's tagged-field section,
    // then one more empty one. After it, bytes that would be a huge array count or a broken
    // varint if anything read them.
    let message = Body::default()
        .i32(0) // throttle_time_ms
        .uv(1) // no brokers
        .uv(0) // null cluster_id
        .i32(1) // controller_id
        .uv(1) // no topics
        .uv(0); // no tagged fields
    let end = message.0.len();
    for after in [&[0][..], &[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x80; 7]] {
        let body = Body(message.0.clone()).raw(after);
        let checked = check_response(ApiKey::Metadata as i16, 12, &body.0).unwrap();
        assert_eq!(checked.end, end, "{after:?}");
        let decoded = guarded(ApiKey::Metadata, 12, &body.0).unwrap();
        kafka_protocol_decodes(ApiKey::Metadata, 12, &decoded).unwrap();
    }

    // A message that ends early is still refused, at every cut: a field, or an array count,
    // needs more bytes than are left.
    for cut in 0..end {
        let err = check_response(ApiKey::Metadata as i16, 12, &message.0[..cut]).unwrap_err();
        assert!(
            matches!(
                err.reason,
                DecodeReason::Truncated { .. } | DecodeReason::CountTooLarge { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
}

/// A Fetch body (v12 or later) with one topic and one partition, whose tagged-field sections
/// are `root_tags` and `partition_tags` (count and entries).
fn fetch_body(version: i16, root_tags: &[u8], partition_tags: &[u8]) -> Body {
    let body = Body::default()
        .i32(0) // throttle_time_ms
        .i16(0) // error_code
        .i32(0) // session_id
        .uv(2); // one topic
    // v13 replaced the topic name by its id.
    let body = if version <= 12 {
        body.uv(2).raw(b"t")
    } else {
        body.raw(&[0x11; 16])
    };
    body.uv(2) // one partition
        .i32(0) // partition_index
        .i16(0) // error_code
        .i64(10) // high_watermark
        .i64(10) // last_stable_offset
        .i64(0) // log_start_offset
        .uv(0) // null aborted_transactions
        .i32(-1) // preferred_read_replica
        .uv(0) // null records
        .raw(partition_tags)
        .uv(0) // topic tags
        .raw(root_tags)
}

#[test]
fn known_tags_are_read_as_their_field_whatever_their_size_says() {
    // diverging_epoch (tag 0) announced with size 0 but followed by a whole EpochEndOffset:
    // kafka-protocol reads the struct and never looks at the size, so the guard must too.
    let mut tags = Body::default().uv(1).uv(0).uv(0).i32(4).i64(300).uv(0);
    let body = fetch_body(12, &[0], &tags.0);
    check(ApiKey::Fetch, 12, &body).unwrap();
    kafka_protocol_decodes(ApiKey::Fetch, 12, &body.0).unwrap();
    let mut buf = Bytes::from(body.0.clone());
    let resp = <fr::FetchResponse as Decodable>::decode(&mut buf, 12).unwrap();
    assert_eq!(resp.responses[0].partitions[0].diverging_epoch.epoch, 4);

    // The same tag with a size that covers the struct, but the struct cut short: the guard
    // reads the struct, not the size, and finds the body too short.
    tags = Body::default().uv(1).uv(0).uv(13).i32(4);
    let body = fetch_body(12, &[0], &tags.0);
    assert!(check(ApiKey::Fetch, 12, &body).is_err());

    // An unknown tag is skipped by its size.
    let tags = Body::default().uv(1).uv(7).uv(3).raw(b"abc");
    let body = fetch_body(12, &[0], &tags.0);
    check(ApiKey::Fetch, 12, &body).unwrap();
    kafka_protocol_decodes(ApiKey::Fetch, 12, &body.0).unwrap();
}

#[test]
fn a_known_tag_outside_its_versions_is_refused_as_kafka_protocol_does() {
    // node_endpoints (tag 0 of the Fetch body) exists from v16: at v12 kafka-protocol bails.
    let root = Body::default().uv(1).uv(0).uv(1).uv(1);
    let body = fetch_body(12, &root.0, &[0]);
    let err = check(ApiKey::Fetch, 12, &body).unwrap_err();
    assert_eq!(err.reason, DecodeReason::InvalidTag(0));
    assert_eq!(err.field, Some("node_endpoints"));
    let kp = kafka_protocol_decodes(ApiKey::Fetch, 12, &body.0).unwrap_err();
    assert!(kp.contains("Tag 0 is not valid for version 12"), "{kp}");
    // At v16 the same bytes are an empty node_endpoints array.
    check(ApiKey::Fetch, 16, &fetch_body(16, &root.0, &[0])).unwrap();
}

#[test]
fn an_absent_optional_struct_is_any_presence_byte_but_one() {
    // ConsumerGroupHeartbeat v0 with presence byte 0 (kafka-protocol writes -1, reads "not 1").
    for presence in [0u8, 0xff, 7] {
        let body = Body::default()
            .i32(0)
            .i16(0)
            .uv(0)
            .uv(0)
            .i32(1)
            .i32(5000)
            .raw(&[presence])
            .uv(0);
        check(ApiKey::ConsumerGroupHeartbeat, 0, &body).unwrap();
        kafka_protocol_decodes(ApiKey::ConsumerGroupHeartbeat, 0, &body.0).unwrap();
    }
}

#[test]
fn single_byte_changes_the_guard_accepts_kafka_protocol_decodes() {
    // Every position of every populated body, set to values that flip signs, nullness and
    // varint continuation: whatever the guard lets through must decode. This is what catches
    // a guard that is more lenient than the decoder (a known tag skipped by size instead of
    // read as its field, a field at the wrong version, a missing nullability check...).
    let mut accepted = 0usize;
    for (api, version) in supported_pairs() {
        for alt in [false, true] {
            let body = populated_body(api, version, alt).to_vec();
            for at in 0..body.len() {
                let old = body[at];
                for new in [
                    0x00,
                    0x01,
                    0x02,
                    0x7f,
                    0x80,
                    0xff,
                    old.wrapping_add(1),
                    old.wrapping_sub(1),
                ] {
                    if new == old {
                        continue;
                    }
                    let mut changed = body.clone();
                    changed[at] = new;
                    if let Some(rewritten) = guarded(api, version, &changed) {
                        accepted += 1;
                        if let Err(e) = kafka_protocol_decodes(api, version, &rewritten) {
                            panic!(
                                "{api:?} v{version} byte {at} = {new:#x}: guard accepts, kafka-protocol: {e}"
                            );
                        }
                    }
                }
            }
        }
    }
    // Most changes land in values (offsets, ids, string contents) and stay valid.
    assert!(accepted > 1000, "{accepted}");
}

/// A supported `(api, version)` picked by two numbers.
fn pick(api: usize, version: u16) -> (ApiKey, i16) {
    let (key, min, max) = SUPPORTED[api % SUPPORTED.len()];
    let span = (max - min + 1) as u16;
    (key, min + (version % span) as i16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(
        api in 0..SUPPORTED.len(),
        version in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let (api, version) = pick(api, version);
        if let Some(rewritten) = guarded(api, version, &body) {
            // Whatever the guard accepts, kafka-protocol can decode without a runaway
            // allocation; that it also succeeds shows the two agree.
            let kp = kafka_protocol_decodes(api, version, &rewritten);
            prop_assert!(kp.is_ok(), "{:?} v{} {:?}: {:?}", api, version, body, kp);
        }
    }

    #[test]
    fn mutated_valid_responses_never_panic(
        api in 0..SUPPORTED.len(),
        version in any::<u16>(),
        alt in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let (api, version) = pick(api, version);
        let mut body = populated_body(api, version, alt).to_vec();
        for (at, byte) in edits {
            let at = at % body.len();
            body[at] = byte;
        }
        // Sometimes also drop a tail, so that counts meet the end of the body.
        if cut % 4 == 0 {
            body.truncate(cut % (body.len() + 1));
        }
        if let Some(rewritten) = guarded(api, version, &body) {
            let kp = kafka_protocol_decodes(api, version, &rewritten);
            prop_assert!(kp.is_ok(), "{:?} v{} {:?}: {:?}", api, version, body, kp);
        }
    }
}

// --- Null read as empty in error answers (see `null_on_error`) ---

/// NOT_COORDINATOR, an error the mock cluster is asked to answer with in kcon's tests.
const NOT_COORDINATOR: i16 = 16;

impl Body {
    /// A string (`Some`) or null (`None`), in the compact encoding when `flexible`.
    fn str(self, flexible: bool, s: Option<&str>) -> Self {
        match (flexible, s) {
            (true, None) => self.uv(0),
            (true, Some(s)) => self.uv(s.len() as u32 + 1).raw(s.as_bytes()),
            (false, None) => self.i16(-1),
            (false, Some(s)) => self.i16(s.len() as i16).raw(s.as_bytes()),
        }
    }
    /// Null bytes (or a null array), in the compact encoding when `flexible`.
    fn null_bytes(self, flexible: bool) -> Self {
        if flexible { self.uv(0) } else { self.i32(-1) }
    }
    /// An empty array, in the compact encoding when `flexible`.
    fn empty_array(self, flexible: bool) -> Self {
        if flexible { self.uv(1) } else { self.i32(0) }
    }
    /// The tagged-field section of a flexible version: none.
    fn no_tags(self, flexible: bool) -> Self {
        if flexible { self.uv(0) } else { self }
    }
}

/// The FindCoordinator answer librdkafka's mock cluster writes for `error` at `version` (v0-v3,
/// `rd_kafka_mock_handle_FindCoordinator`): node id -1, null host, port -1.
fn mock_find_coordinator(version: i16, error: i16) -> Body {
    let flexible = version >= 3;
    let mut body = Body::default();
    if version >= 1 {
        body = body.i32(0);
    }
    body = body.i16(error);
    if version >= 1 {
        body = body.str(flexible, Some("Broker: Not coordinator"));
    }
    body.i32(-1).str(flexible, None).i32(-1).no_tags(flexible)
}

/// The JoinGroup answer the mock writes for `error` (`rd_kafka_mock_handle_JoinGroup`'s error
/// case): generation -1, null protocol name, leader and member id, no members. Written here
/// correctly for the flexible v6, which the mock itself gets wrong (it writes a 4-byte count).
fn mock_join_group(version: i16, error: i16) -> Body {
    let flexible = version >= 6;
    let mut body = Body::default();
    if version >= 2 {
        body = body.i32(0);
    }
    body.i16(error)
        .i32(-1)
        .str(flexible, None)
        .str(flexible, None)
        .str(flexible, None)
        .empty_array(flexible)
        .no_tags(flexible)
}

/// The SyncGroup answer the mock writes for `error` (`rd_kafka_mock_handle_SyncGroup`'s error
/// case, and `rd_kafka_mock_cgrp_classic_sync_done` with an error): null assignment.
fn mock_sync_group(version: i16, error: i16) -> Body {
    let flexible = version >= 4;
    let mut body = Body::default();
    if version >= 1 {
        body = body.i32(0);
    }
    body.i16(error).null_bytes(flexible).no_tags(flexible)
}

/// `body` as a response frame (without its size prefix) with correlation id 7.
fn frame_of(api: ApiKey, version: i16, body: &Body) -> Bytes {
    use kafka_protocol::protocol::HeaderVersion;
    let header_version = dispatch!(api, R, _build => {
        <<R as Request>::Response as HeaderVersion>::header_version(version)
    });
    let mut frame = Body::default().i32(7);
    if header_version >= 1 {
        frame = frame.uv(0);
    }
    frame.raw(&body.0).0.into()
}

#[test]
fn the_mock_clusters_error_answers_decode_with_empty_values() {
    for version in 0..=3 {
        let body = mock_find_coordinator(version, NOT_COORDINATOR);
        let nulls = check(ApiKey::FindCoordinator, version, &body).unwrap();
        assert!(!nulls.is_empty(), "v{version}");
        let frame = frame_of(ApiKey::FindCoordinator, version, &body);
        let (h, resp) = decode_response::<FindCoordinatorRequest>(frame, version).unwrap();
        assert_eq!(h.correlation_id, 7);
        assert_eq!(resp.error_code, NOT_COORDINATOR, "v{version}");
        assert_eq!(
            (resp.node_id.0, resp.host.as_str(), resp.port),
            (-1, "", -1)
        );
    }
    for version in 0..=6 {
        let body = mock_join_group(version, NOT_COORDINATOR);
        let frame = frame_of(ApiKey::JoinGroup, version, &body);
        let (_, resp) = decode_response::<JoinGroupRequest>(frame, version).unwrap();
        assert_eq!(resp.error_code, NOT_COORDINATOR, "v{version}");
        assert_eq!(resp.generation_id, -1);
        // Nullable in kafka-protocol already: stays null.
        assert_eq!(resp.protocol_name, None);
        assert_eq!((resp.leader.as_str(), resp.member_id.as_str()), ("", ""));
        assert!(resp.members.is_empty());
    }
    for version in 0..=4 {
        let body = mock_sync_group(version, NOT_COORDINATOR);
        let frame = frame_of(ApiKey::SyncGroup, version, &body);
        let (_, resp) = decode_response::<SyncGroupRequest>(frame, version).unwrap();
        assert_eq!(resp.error_code, NOT_COORDINATOR, "v{version}");
        assert!(resp.assignment.is_empty());
    }
}

#[test]
fn the_rewrite_keeps_the_size_and_only_touches_the_nulls() {
    // JoinGroup v5: throttle, error, generation, then three null strings at 10, 12 and 14.
    let body = mock_join_group(5, NOT_COORDINATOR);
    let nulls = check(ApiKey::JoinGroup, 5, &body).unwrap();
    let rewritten = nulls.apply(Bytes::from(body.0.clone()));
    assert_eq!(rewritten.len(), body.0.len());
    let mut expected = body.0.clone();
    // The protocol name is nullable, so its null stays; leader and member id become empty.
    expected[12..16].fill(0);
    assert_eq!(&rewritten[..], &expected[..]);

    // Compact: a null is any encoding of 0, a padded one too; the rewrite sets its lowest bit.
    let body = Body::default()
        .i32(0)
        .i16(NOT_COORDINATOR)
        .uv(0)
        .i32(-1)
        .raw(&[0x80, 0x00])
        .i32(-1)
        .uv(0);
    let nulls = check(ApiKey::FindCoordinator, 3, &body).unwrap();
    let rewritten = nulls.apply(Bytes::from(body.0.clone()));
    assert_eq!(&rewritten[11..13], &[0x81, 0x00]);
    kafka_protocol_decodes(ApiKey::FindCoordinator, 3, &rewritten).unwrap();
}

#[test]
fn a_null_is_still_refused_in_a_successful_answer() {
    for (api, version, body, field) in [
        (
            ApiKey::FindCoordinator,
            2,
            mock_find_coordinator(2, 0),
            "host",
        ),
        (
            ApiKey::FindCoordinator,
            3,
            mock_find_coordinator(3, 0),
            "host",
        ),
        (ApiKey::JoinGroup, 5, mock_join_group(5, 0), "leader"),
        (ApiKey::SyncGroup, 3, mock_sync_group(3, 0), "assignment"),
        (ApiKey::SyncGroup, 4, mock_sync_group(4, 0), "assignment"),
    ] {
        let err = check(api, version, &body).unwrap_err();
        assert_eq!(err.field, Some(field), "{api:?} v{version}");
        assert_eq!(err.reason, DecodeReason::InvalidLength(-1));
        let frame = frame_of(api, version, &body);
        let decoded = dispatch!(api, R, _build => decode_response::<R>(frame, version).map(|_| ()));
        assert!(decoded.is_err(), "{api:?} v{version}");
    }
}

#[test]
fn a_null_is_still_refused_in_fields_not_marked() {
    // JoinGroup v5 with an error and one member whose id is null: the members' ids are not
    // among the fields the mock nulls.
    let body = Body::default()
        .i32(0)
        .i16(NOT_COORDINATOR)
        .i32(-1)
        .str(false, None)
        .str(false, Some("m-1"))
        .str(false, Some("m-1"))
        .i32(1)
        .str(false, None)
        .str(false, None)
        .i32(0);
    let err = check(ApiKey::JoinGroup, 5, &body).unwrap_err();
    assert_eq!(err.field, Some("members.member_id"));

    // A nested error code is no top-level one: DescribeGroups' group id stays non-nullable
    // even in a group with an error.
    let body = Body::default()
        .i32(0)
        .i32(1)
        .i16(NOT_COORDINATOR)
        .str(false, None)
        .pad_to(64);
    let err = check(ApiKey::DescribeGroups, 1, &body).unwrap_err();
    assert_eq!(err.field, Some("groups.group_id"));

    // Nor is any other error code than the answer's own: a null host after an error code of
    // 0 is refused whatever the error message says.
    let body = mock_find_coordinator(1, 0);
    assert!(check(ApiKey::FindCoordinator, 1, &body).is_err());
}

#[test]
fn null_on_error_marks_only_top_level_strings_and_bytes_after_the_error_code() {
    use super::schema::Null;
    use super::walk::TOP_LEVEL_ERROR_CODE;
    let mut marked = Vec::new();
    for msg in MESSAGES {
        for version in 0..=20 {
            if !msg.versions.contains(version) {
                continue;
            }
            let mut error_code_read = false;
            for f in msg.body.fields {
                if !f.versions.contains(version) || f.tag.is_some() {
                    continue;
                }
                if f.path == TOP_LEVEL_ERROR_CODE {
                    assert!(matches!(f.ty, Ty::I16), "{:?}", msg.api_key);
                    error_code_read = true;
                }
                if f.null == Null::EmptyOnError {
                    assert!(matches!(f.ty, Ty::Str | Ty::Bytes), "{}", f.path);
                    assert!(
                        error_code_read,
                        "{:?} v{version} {}: no error code before it",
                        msg.api_key, f.path
                    );
                    marked.push((msg.api_key as i16, f.path));
                }
            }
        }
        // Nothing below the top level is marked: the rule reads the top-level error code.
        let mut nested = |def: &StructDef| {
            for f in def.fields {
                assert_ne!(f.null, Null::EmptyOnError, "{}", f.path);
            }
        };
        each_struct(msg.body, &mut nested);
    }
    marked.sort();
    marked.dedup();
    assert_eq!(
        marked,
        [
            (ApiKey::FindCoordinator as i16, "host"),
            (ApiKey::JoinGroup as i16, "leader"),
            (ApiKey::JoinGroup as i16, "member_id"),
            (ApiKey::SyncGroup as i16, "assignment"),
        ]
    );
}

/// Calls `f` on every struct nested in `def` (not `def` itself).
fn each_struct(def: &StructDef, f: &mut impl FnMut(&StructDef)) {
    for field in def.fields {
        let inner = match field.ty {
            Ty::Array(Elem::Struct(inner)) | Ty::Struct(inner) | Ty::OptStruct(inner) => inner,
            _ => continue,
        };
        f(inner);
        each_struct(inner, f);
    }
}

/// Whether `msg` has its top-level error code on the wire at `version`.
fn has_top_level_error_code(msg: &Message, version: i16) -> bool {
    use super::walk::TOP_LEVEL_ERROR_CODE;
    msg.body.fields.iter().any(|f| {
        f.path == TOP_LEVEL_ERROR_CODE
            && matches!(f.ty, Ty::I16)
            && f.tag.is_none()
            && f.versions.contains(version)
    })
}

/// Whether `msg` has its throttle time on the wire at `version`.
fn has_top_level_throttle_time(msg: &Message, version: i16) -> bool {
    use super::walk::TOP_LEVEL_THROTTLE_TIME_MS;
    msg.body.fields.iter().any(|f| {
        f.path == TOP_LEVEL_THROTTLE_TIME_MS
            && matches!(f.ty, Ty::I32)
            && f.tag.is_none()
            && f.versions.contains(version)
    })
}

/// The table of top-level error codes (`crate::top_level`) against the schemas: kcon's
/// decoded type of every answer is in the table if and only if the API's schema has a
/// top-level `error_code` at a version kcon speaks, and at every version that has it, a code
/// set through the table is the one on the wire there and the one read back through the table.
#[test]
fn the_top_level_error_code_table_agrees_with_the_schemas() {
    use crate::top_level;
    // No populated builder sets it.
    const CODE: i16 = 129;
    for msg in MESSAGES {
        let api = msg.api_key;
        let (_, min, max) = SUPPORTED.iter().find(|(k, _, _)| *k == api).unwrap();
        let somewhere = (*min..=*max).any(|v| has_top_level_error_code(msg, v));
        assert_eq!(
            top_level::has_error_code(api),
            Some(somewhere),
            "{api:?}: the table and the schema disagree on a top-level error code"
        );
    }
    for (api, version) in supported_pairs() {
        let msg = MESSAGES
            .iter()
            .find(|m| m.api_key == api && m.versions.contains(version))
            .unwrap();
        let on_wire = has_top_level_error_code(msg, version);
        let listed = top_level::has_error_code(api) == Some(true);
        // kafka-protocol encodes only 0 in a field the version does not have.
        let code = if on_wire { CODE } else { 0 };
        let read = dispatch!(api, R, build => {
            let mut answer = build(version, false);
            assert_eq!(
                top_level::set_error_code(&mut answer, code),
                listed,
                "{api:?} v{version}: {} is {}in the table",
                std::any::type_name::<<R as Request>::Response>(),
                if listed { "not " } else { "" },
            );
            let body = round_trip::<R>(version, answer);
            let checked = check_response(api as i16, version, &body).unwrap();
            assert_eq!(checked.error_code, on_wire.then_some(CODE), "{api:?} v{version}");
            let decoded =
                <<R as Request>::Response as Decodable>::decode(&mut body.clone(), version)
                    .unwrap();
            top_level::error_code(&decoded)
        });
        assert_eq!(read, listed.then_some(code), "{api:?} v{version}");
    }
}

/// The table of throttle times (`crate::top_level`) against the schemas: kcon's decoded type
/// of every answer carries a throttle time in the table if and only if the API's schema has a
/// top-level `throttle_time_ms` at a version kcon speaks; at every version that has it, a time
/// set through the table is the one on the wire there and the one read back through the table;
/// and the client waits out the time only at versions that have it.
#[test]
fn the_throttle_time_table_agrees_with_the_schemas() {
    use crate::top_level;
    // No populated builder sets it.
    const MS: i32 = 4_321;
    for msg in MESSAGES {
        let api = msg.api_key;
        let (_, min, max) = SUPPORTED.iter().find(|(k, _, _)| *k == api).unwrap();
        let somewhere = (*min..=*max).any(|v| has_top_level_throttle_time(msg, v));
        assert_eq!(
            top_level::has_throttle_time_ms(api),
            Some(somewhere),
            "{api:?}: the table and the schema disagree on a throttle time"
        );
        assert_eq!(
            top_level::throttle_waits_from(api).is_some(),
            somewhere,
            "{api:?}"
        );
    }
    for (api, version) in supported_pairs() {
        let msg = MESSAGES
            .iter()
            .find(|m| m.api_key == api && m.versions.contains(version))
            .unwrap();
        let on_wire = has_top_level_throttle_time(msg, version);
        let listed = top_level::has_throttle_time_ms(api) == Some(true);
        let waits = top_level::throttle_waits_from(api).is_some_and(|from| version >= from);
        assert!(
            on_wire || !waits,
            "{api:?} v{version}: the client would wait on a throttle time the answer lacks"
        );
        // kafka-protocol encodes only 0 in a field the version does not have.
        let ms = if on_wire { MS } else { 0 };
        let (read, wait) = dispatch!(api, R, build => {
            let mut answer = build(version, false);
            assert_eq!(
                top_level::set_throttle_time_ms(&mut answer, ms),
                listed,
                "{api:?} v{version}: {} is {}in the table",
                std::any::type_name::<<R as Request>::Response>(),
                if listed { "not " } else { "" },
            );
            let body = round_trip::<R>(version, answer);
            let checked = check_response(api as i16, version, &body).unwrap();
            assert_eq!(checked.throttle_time_ms, on_wire.then_some(MS), "{api:?} v{version}");
            let decoded =
                <<R as Request>::Response as Decodable>::decode(&mut body.clone(), version)
                    .unwrap();
            (
                top_level::throttle_time_ms(&decoded),
                top_level::throttle_wait_ms(&decoded, version),
            )
        });
        assert_eq!(read, listed.then_some(ms), "{api:?} v{version}");
        assert_eq!(wait, waits.then_some(ms), "{api:?} v{version}");
    }
}
