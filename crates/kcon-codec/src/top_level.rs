//! What the answers kcon decodes carry at top level, their error code and their throttle time:
//! one table, by API.
//!
//! An answer's top-level error code is the `error_code` of the message itself, not one of its
//! topics, partitions, groups or resources. [`error_code`] reads it from a decoded answer of any
//! API, given as `&dyn Any` (as a connection holds the answers of every API alike);
//! [`TopLevelError`] reads it from an answer of a known type.
//!
//! An answer's throttle time is its `throttle_time_ms`: how long the broker throttles the
//! client for a quota. From a version of each API on (Kafka 2.0's), the broker answers at once
//! and then reads nothing more from the connection for that time, and the client is to send
//! nothing on it meanwhile; at earlier versions the broker delayed the answer itself, and the
//! client does not wait again. [`throttle_time_ms`] reads the field from a decoded answer of any API,
//! [`throttle_wait_ms`] the time the client is to wait at the answer's version, and
//! [`TopLevelThrottle`] the field of an answer of a known type.
//!
//! The table has one entry for each API of [`SUPPORTED`]: the types kcon decodes its answers
//! to, each with which of the two it carries at a version kcon speaks, and the first version at
//! which the client waits out the throttle time. ShareFetch, ShareAcknowledge and
//! DescribeShareGroupOffsets answers are decoded to kcon's own types ([`crate::share_v2`],
//! [`crate::share_offsets_v1`]), listed with kafka-protocol's. AddPartitionsToTxn has no error
//! code: its answer has an `error_code` from v4 on only, the brokers' batched form, which kcon
//! does not send. SaslHandshake and SaslAuthenticate answers have no throttle time. At a
//! version of a message without the field, the decoded answer holds 0 there, and so that is
//! what is read: the error code of Fetch before v7, Metadata before v13, OffsetFetch outside
//! v2-v7 and FindCoordinator after v3; the throttle time of FindCoordinator, Heartbeat,
//! LeaveGroup, SyncGroup, DescribeGroups, ListGroups and ApiVersions at v0, of ListOffsets and
//! JoinGroup before v2, and of Metadata, OffsetCommit and OffsetFetch before v3.
//!
//! # How the table is kept complete
//!
//! kafka-protocol's published crate has the Rust types generated from Kafka's message specs,
//! not the specs. The guard's response schemas (`guard`) are kcon's transcription of those
//! types, one per API kcon speaks, at exactly the versions it speaks, and its tests prove them
//! against kafka-protocol's decoders field by field. The table is checked against them:
//!
//! - here: every API of [`SUPPORTED`] has exactly one entry and no other API has one, each type
//!   answers the API of its entry, the types of one entry carry the same fields, and an entry
//!   has a first version to wait from exactly when its types carry a throttle time;
//! - in the guard's tests, for each of the two fields: at every version kcon speaks of every
//!   API, kcon's decoded type of the answer carries the field in the table if and only if the
//!   API's schema has it at top level at some version; where the version has it, a value set
//!   through the table is the value the guard reads at that field of the encoded answer, and
//!   the value read back through the table from the decoded answer. The client waits out a
//!   throttle time only at versions whose schema has the field.
//!
//! An API added to [`SUPPORTED`] needs a guard schema (a guard test holds the two together),
//! and then an entry here that agrees with that schema; an answer decoded to a new type fails
//! the same tests until the type is in the table.
//!
//! [`SUPPORTED`]: crate::versions::SUPPORTED

use std::any::Any;

use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiKey, ApiVersionsResponse,
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse, CreateTopicsResponse,
    DeleteGroupsResponse, DescribeConfigsResponse, DescribeGroupsResponse,
    DescribeShareGroupOffsetsResponse, DescribeTransactionsResponse, EndTxnResponse, FetchResponse,
    FindCoordinatorResponse, GetTelemetrySubscriptionsResponse, HeartbeatResponse,
    IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, ListOffsetsResponse, MetadataResponse, OffsetCommitResponse,
    OffsetDeleteResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse,
    PushTelemetryResponse, SaslAuthenticateResponse, SaslHandshakeResponse,
    ShareAcknowledgeResponse, ShareFetchResponse, ShareGroupDescribeResponse,
    ShareGroupHeartbeatResponse, SyncGroupResponse, TxnOffsetCommitResponse,
};

use crate::share_offsets_v1::DescribeShareGroupOffsetsResponseV1;
use crate::share_v2::{ShareAcknowledgeResponseV2, ShareFetchResponseV2};

/// An answer type kcon decodes.
pub trait TopLevel: Any {
    /// The API it answers.
    const API_KEY: ApiKey;
}

/// An answer type with a top-level error code.
pub trait TopLevelError: TopLevel {
    /// The top-level error code: 0 for none, and at a version of the message without it.
    fn top_level_error(&self) -> i16;

    /// Sets the top-level error code. Only 0 encodes at a version of the message without it.
    fn set_top_level_error(&mut self, code: i16);
}

/// An answer type with a throttle time.
pub trait TopLevelThrottle: TopLevel {
    /// The throttle time in milliseconds, as the broker sent it: 0 for none, and at a version
    /// of the message without it.
    fn throttle_ms(&self) -> i32;

    /// Sets the throttle time. Only 0 encodes at a version of the message without it.
    fn set_throttle_ms(&mut self, ms: i32);
}

/// The top-level error code of `answer`, an answer of any API kcon speaks; `None` when its
/// API's answers have none (and for anything that is not an answer).
pub fn error_code(answer: &dyn Any) -> Option<i16> {
    types().find_map(|t| (t.error_code?.read)(answer))
}

/// Sets the top-level error code of `answer`; false, with nothing set, when its API's answers
/// have none (or it is not an answer).
pub fn set_error_code(answer: &mut dyn Any, code: i16) -> bool {
    types().any(|t| t.error_code.is_some_and(|f| (f.write)(answer, code)))
}

/// Whether the answers of `api` have a top-level error code at a version kcon speaks; `None`
/// for an API kcon does not speak.
pub fn has_error_code(api: ApiKey) -> Option<bool> {
    entry(api).map(|(_, _, types)| types.iter().any(|t| t.error_code.is_some()))
}

/// The throttle time in `answer`, an answer of any API kcon speaks, as decoded, whatever its
/// version; `None` when its API's answers have none (and for anything that is not an answer).
pub fn throttle_time_ms(answer: &dyn Any) -> Option<i32> {
    types().find_map(|t| (t.throttle_time_ms?.read)(answer))
}

/// Sets the throttle time of `answer`; false, with nothing set, when its API's answers have
/// none (or it is not an answer).
pub fn set_throttle_time_ms(answer: &mut dyn Any, ms: i32) -> bool {
    types().any(|t| t.throttle_time_ms.is_some_and(|f| (f.write)(answer, ms)))
}

/// Whether the answers of `api` have a throttle time at a version kcon speaks; `None` for an
/// API kcon does not speak.
pub fn has_throttle_time_ms(api: ApiKey) -> Option<bool> {
    entry(api).map(|(_, _, types)| types.iter().any(|t| t.throttle_time_ms.is_some()))
}

/// The first version of `api` at which the client waits out the throttle time of an answer;
/// `None` when its answers have none, or for an API kcon does not speak.
pub fn throttle_waits_from(api: ApiKey) -> Option<i16> {
    entry(api).and_then(|&(_, from, _)| from)
}

/// How long `answer`, an answer of any API kcon speaks at `version`, asks its client to wait
/// before the next request on its connection, in milliseconds: its throttle time from the
/// version at which the broker answers first and throttles after ([`throttle_waits_from`]);
/// `None` at an earlier version, at which the broker delayed the answer itself, and for an
/// answer without a throttle time (or anything that is not an answer).
pub fn throttle_wait_ms(answer: &dyn Any, version: i16) -> Option<i32> {
    APIS.iter()
        .find_map(|(_, from, types)| {
            let ms = types
                .iter()
                .find_map(|t| (t.throttle_time_ms?.read)(answer))?;
            Some(from.is_some_and(|from| version >= from).then_some(ms))
        })
        .flatten()
}

/// One field of one answer type, through `&dyn Any`.
#[derive(Clone, Copy)]
struct Field<V> {
    /// The value, if the answer is of this type.
    read: fn(&dyn Any) -> Option<V>,
    /// Sets the value if the answer is of this type, and says whether it was.
    write: fn(&mut dyn Any, V) -> bool,
}

/// What one answer type carries at top level.
#[derive(Clone, Copy)]
struct AnswerType {
    /// The API the type answers.
    #[cfg(test)]
    api_key: ApiKey,
    /// Its top-level error code, if it has one.
    error_code: Option<Field<i16>>,
    /// Its throttle time, if it has one.
    throttle_time_ms: Option<Field<i32>>,
}

/// A type with a top-level error code and no throttle time.
const fn error<T: TopLevelError>() -> AnswerType {
    AnswerType {
        #[cfg(test)]
        api_key: T::API_KEY,
        error_code: Some(error_field::<T>()),
        throttle_time_ms: None,
    }
}

/// A type with a throttle time and no top-level error code.
const fn throttle<T: TopLevelThrottle>() -> AnswerType {
    AnswerType {
        #[cfg(test)]
        api_key: T::API_KEY,
        error_code: None,
        throttle_time_ms: Some(throttle_field::<T>()),
    }
}

/// A type with both.
const fn both<T: TopLevelError + TopLevelThrottle>() -> AnswerType {
    AnswerType {
        #[cfg(test)]
        api_key: T::API_KEY,
        error_code: Some(error_field::<T>()),
        throttle_time_ms: Some(throttle_field::<T>()),
    }
}

const fn error_field<T: TopLevelError>() -> Field<i16> {
    Field {
        read: |answer| answer.downcast_ref::<T>().map(T::top_level_error),
        write: |answer, code| {
            answer
                .downcast_mut::<T>()
                .map(|a| a.set_top_level_error(code))
                .is_some()
        },
    }
}

const fn throttle_field<T: TopLevelThrottle>() -> Field<i32> {
    Field {
        read: |answer| answer.downcast_ref::<T>().map(T::throttle_ms),
        write: |answer, ms| {
            answer
                .downcast_mut::<T>()
                .map(|a| a.set_throttle_ms(ms))
                .is_some()
        },
    }
}

/// Every API kcon speaks, in the order of [`SUPPORTED`](crate::versions::SUPPORTED): the API,
/// the first version at which the client waits out the throttle time of its answers (`None`
/// when they have none), and the types kcon decodes its answers to.
const APIS: &[(ApiKey, Option<i16>, &[AnswerType])] = &[
    (ApiKey::Produce, Some(6), &[throttle::<ProduceResponse>()]),
    (ApiKey::Fetch, Some(8), &[both::<FetchResponse>()]),
    (
        ApiKey::ListOffsets,
        Some(3),
        &[throttle::<ListOffsetsResponse>()],
    ),
    (ApiKey::Metadata, Some(6), &[both::<MetadataResponse>()]),
    (
        ApiKey::OffsetCommit,
        Some(4),
        &[throttle::<OffsetCommitResponse>()],
    ),
    (
        ApiKey::OffsetFetch,
        Some(4),
        &[both::<OffsetFetchResponse>()],
    ),
    (
        ApiKey::FindCoordinator,
        Some(2),
        &[both::<FindCoordinatorResponse>()],
    ),
    (ApiKey::JoinGroup, Some(3), &[both::<JoinGroupResponse>()]),
    (ApiKey::Heartbeat, Some(2), &[both::<HeartbeatResponse>()]),
    (ApiKey::LeaveGroup, Some(2), &[both::<LeaveGroupResponse>()]),
    (ApiKey::SyncGroup, Some(2), &[both::<SyncGroupResponse>()]),
    (
        ApiKey::DescribeGroups,
        Some(2),
        &[throttle::<DescribeGroupsResponse>()],
    ),
    (ApiKey::ListGroups, Some(2), &[both::<ListGroupsResponse>()]),
    (
        ApiKey::SaslHandshake,
        None,
        &[error::<SaslHandshakeResponse>()],
    ),
    (
        ApiKey::ApiVersions,
        Some(2),
        &[both::<ApiVersionsResponse>()],
    ),
    (
        ApiKey::CreateTopics,
        Some(3),
        &[throttle::<CreateTopicsResponse>()],
    ),
    (
        ApiKey::DeleteGroups,
        Some(1),
        &[throttle::<DeleteGroupsResponse>()],
    ),
    (
        ApiKey::SaslAuthenticate,
        None,
        &[error::<SaslAuthenticateResponse>()],
    ),
    (
        ApiKey::OffsetForLeaderEpoch,
        Some(2),
        &[throttle::<OffsetForLeaderEpochResponse>()],
    ),
    (
        ApiKey::OffsetDelete,
        Some(0),
        &[both::<OffsetDeleteResponse>()],
    ),
    (
        ApiKey::ConsumerGroupHeartbeat,
        Some(0),
        &[both::<ConsumerGroupHeartbeatResponse>()],
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        Some(0),
        &[throttle::<ConsumerGroupDescribeResponse>()],
    ),
    (
        ApiKey::InitProducerId,
        Some(1),
        &[both::<InitProducerIdResponse>()],
    ),
    (
        ApiKey::AddPartitionsToTxn,
        Some(1),
        &[throttle::<AddPartitionsToTxnResponse>()],
    ),
    (
        ApiKey::AddOffsetsToTxn,
        Some(1),
        &[both::<AddOffsetsToTxnResponse>()],
    ),
    (ApiKey::EndTxn, Some(1), &[both::<EndTxnResponse>()]),
    (
        ApiKey::TxnOffsetCommit,
        Some(1),
        &[throttle::<TxnOffsetCommitResponse>()],
    ),
    (
        ApiKey::DescribeTransactions,
        Some(0),
        &[throttle::<DescribeTransactionsResponse>()],
    ),
    (
        ApiKey::ShareGroupHeartbeat,
        Some(0),
        &[both::<ShareGroupHeartbeatResponse>()],
    ),
    (
        ApiKey::ShareFetch,
        Some(0),
        &[both::<ShareFetchResponseV2>(), both::<ShareFetchResponse>()],
    ),
    (
        ApiKey::ShareAcknowledge,
        Some(0),
        &[
            both::<ShareAcknowledgeResponseV2>(),
            both::<ShareAcknowledgeResponse>(),
        ],
    ),
    (
        ApiKey::ShareGroupDescribe,
        Some(0),
        &[throttle::<ShareGroupDescribeResponse>()],
    ),
    (
        ApiKey::DescribeShareGroupOffsets,
        Some(0),
        &[
            throttle::<DescribeShareGroupOffsetsResponseV1>(),
            throttle::<DescribeShareGroupOffsetsResponse>(),
        ],
    ),
    (
        ApiKey::DescribeConfigs,
        Some(2),
        &[throttle::<DescribeConfigsResponse>()],
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        Some(0),
        &[throttle::<IncrementalAlterConfigsResponse>()],
    ),
    (
        ApiKey::GetTelemetrySubscriptions,
        Some(0),
        &[both::<GetTelemetrySubscriptionsResponse>()],
    ),
    (
        ApiKey::PushTelemetry,
        Some(0),
        &[both::<PushTelemetryResponse>()],
    ),
];

fn entry(api: ApiKey) -> Option<&'static (ApiKey, Option<i16>, &'static [AnswerType])> {
    APIS.iter().find(|(k, _, _)| *k == api)
}

fn types() -> impl Iterator<Item = &'static AnswerType> {
    APIS.iter().flat_map(|(_, _, types)| types.iter())
}

/// Implements [`TopLevel`] for answer types.
macro_rules! answers {
    ($($t:ty: $api:ident),* $(,)?) => {
        $(
            impl TopLevel for $t {
                const API_KEY: ApiKey = ApiKey::$api;
            }
        )*
    };
}

/// Implements [`TopLevelError`] for kafka-protocol answer types, whose field is `error_code`.
macro_rules! error_code_field {
    ($($t:ty),* $(,)?) => {
        $(
            impl TopLevelError for $t {
                fn top_level_error(&self) -> i16 {
                    self.error_code
                }

                fn set_top_level_error(&mut self, code: i16) {
                    self.error_code = code;
                }
            }
        )*
    };
}

/// Implements [`TopLevelThrottle`] for kafka-protocol answer types, whose field is
/// `throttle_time_ms`.
macro_rules! throttle_time_field {
    ($($t:ty),* $(,)?) => {
        $(
            impl TopLevelThrottle for $t {
                fn throttle_ms(&self) -> i32 {
                    self.throttle_time_ms
                }

                fn set_throttle_ms(&mut self, ms: i32) {
                    self.throttle_time_ms = ms;
                }
            }
        )*
    };
}

answers!(
    ProduceResponse: Produce,
    FetchResponse: Fetch,
    ListOffsetsResponse: ListOffsets,
    MetadataResponse: Metadata,
    OffsetCommitResponse: OffsetCommit,
    OffsetFetchResponse: OffsetFetch,
    FindCoordinatorResponse: FindCoordinator,
    JoinGroupResponse: JoinGroup,
    HeartbeatResponse: Heartbeat,
    LeaveGroupResponse: LeaveGroup,
    SyncGroupResponse: SyncGroup,
    DescribeGroupsResponse: DescribeGroups,
    ListGroupsResponse: ListGroups,
    SaslHandshakeResponse: SaslHandshake,
    ApiVersionsResponse: ApiVersions,
    CreateTopicsResponse: CreateTopics,
    DeleteGroupsResponse: DeleteGroups,
    SaslAuthenticateResponse: SaslAuthenticate,
    OffsetForLeaderEpochResponse: OffsetForLeaderEpoch,
    OffsetDeleteResponse: OffsetDelete,
    ConsumerGroupHeartbeatResponse: ConsumerGroupHeartbeat,
    ConsumerGroupDescribeResponse: ConsumerGroupDescribe,
    InitProducerIdResponse: InitProducerId,
    AddPartitionsToTxnResponse: AddPartitionsToTxn,
    AddOffsetsToTxnResponse: AddOffsetsToTxn,
    EndTxnResponse: EndTxn,
    TxnOffsetCommitResponse: TxnOffsetCommit,
    ShareGroupHeartbeatResponse: ShareGroupHeartbeat,
    ShareFetchResponse: ShareFetch,
    ShareFetchResponseV2: ShareFetch,
    ShareAcknowledgeResponse: ShareAcknowledge,
    ShareAcknowledgeResponseV2: ShareAcknowledge,
    ShareGroupDescribeResponse: ShareGroupDescribe,
    DescribeShareGroupOffsetsResponse: DescribeShareGroupOffsets,
    DescribeShareGroupOffsetsResponseV1: DescribeShareGroupOffsets,
    DescribeConfigsResponse: DescribeConfigs,
    IncrementalAlterConfigsResponse: IncrementalAlterConfigs,
    GetTelemetrySubscriptionsResponse: GetTelemetrySubscriptions,
    PushTelemetryResponse: PushTelemetry,
    DescribeTransactionsResponse: DescribeTransactions,
);

error_code_field!(
    FetchResponse,
    MetadataResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    ListGroupsResponse,
    SaslHandshakeResponse,
    ApiVersionsResponse,
    SaslAuthenticateResponse,
    OffsetDeleteResponse,
    ConsumerGroupHeartbeatResponse,
    InitProducerIdResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ShareGroupHeartbeatResponse,
    ShareFetchResponse,
    ShareAcknowledgeResponse,
    GetTelemetrySubscriptionsResponse,
    PushTelemetryResponse,
);

throttle_time_field!(
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    MetadataResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    DescribeGroupsResponse,
    ListGroupsResponse,
    ApiVersionsResponse,
    CreateTopicsResponse,
    DeleteGroupsResponse,
    OffsetForLeaderEpochResponse,
    OffsetDeleteResponse,
    ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribeResponse,
    InitProducerIdResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    TxnOffsetCommitResponse,
    ShareGroupHeartbeatResponse,
    ShareFetchResponse,
    ShareAcknowledgeResponse,
    ShareGroupDescribeResponse,
    DescribeShareGroupOffsetsResponse,
    DescribeConfigsResponse,
    IncrementalAlterConfigsResponse,
    GetTelemetrySubscriptionsResponse,
    PushTelemetryResponse,
    DescribeTransactionsResponse,
);

impl TopLevelError for ShareFetchResponseV2 {
    fn top_level_error(&self) -> i16 {
        self.0.error_code
    }

    fn set_top_level_error(&mut self, code: i16) {
        self.0.error_code = code;
    }
}

impl TopLevelThrottle for ShareFetchResponseV2 {
    fn throttle_ms(&self) -> i32 {
        self.0.throttle_time_ms
    }

    fn set_throttle_ms(&mut self, ms: i32) {
        self.0.throttle_time_ms = ms;
    }
}

impl TopLevelError for ShareAcknowledgeResponseV2 {
    fn top_level_error(&self) -> i16 {
        self.body.error_code
    }

    fn set_top_level_error(&mut self, code: i16) {
        self.body.error_code = code;
    }
}

impl TopLevelThrottle for ShareAcknowledgeResponseV2 {
    fn throttle_ms(&self) -> i32 {
        self.body.throttle_time_ms
    }

    fn set_throttle_ms(&mut self, ms: i32) {
        self.body.throttle_time_ms = ms;
    }
}

impl TopLevelThrottle for DescribeShareGroupOffsetsResponseV1 {
    fn throttle_ms(&self) -> i32 {
        self.body.throttle_time_ms
    }

    fn set_throttle_ms(&mut self, ms: i32) {
        self.body.throttle_time_ms = ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::SUPPORTED;
    use kafka_protocol::messages::{
        AddPartitionsToTxnResponse, OffsetCommitResponse, ProduceResponse,
    };

    #[test]
    fn every_api_kcon_speaks_has_one_entry_and_no_other_api_has_one() {
        let ours: Vec<ApiKey> = SUPPORTED.iter().map(|&(api, _, _)| api).collect();
        let listed: Vec<ApiKey> = APIS.iter().map(|&(api, _, _)| api).collect();
        assert_eq!(listed, ours, "the table follows SUPPORTED, entry for entry");
        for &(api, _, _) in SUPPORTED {
            assert!(has_error_code(api).is_some(), "{api:?}");
            assert!(has_throttle_time_ms(api).is_some(), "{api:?}");
        }
        assert_eq!(has_error_code(ApiKey::DeleteTopics), None);
        assert_eq!(has_throttle_time_ms(ApiKey::DeleteTopics), None);
        assert_eq!(throttle_waits_from(ApiKey::DeleteTopics), None);
    }

    #[test]
    fn each_type_answers_the_api_of_its_entry() {
        for (api, _, types) in APIS {
            assert!(!types.is_empty(), "{api:?}");
            for t in *types {
                assert_eq!(t.api_key, *api);
            }
        }
    }

    #[test]
    fn the_types_of_an_entry_carry_the_same_fields() {
        for (api, from, types) in APIS {
            let first = types[0];
            for t in *types {
                assert_eq!(
                    t.error_code.is_some(),
                    first.error_code.is_some(),
                    "{api:?}"
                );
                assert_eq!(
                    t.throttle_time_ms.is_some(),
                    first.throttle_time_ms.is_some(),
                    "{api:?}"
                );
            }
            // The client waits out a throttle time only where the answers carry one.
            assert_eq!(from.is_some(), first.throttle_time_ms.is_some(), "{api:?}");
        }
    }

    #[test]
    fn reads_and_sets_the_top_level_error_code_of_any_answer() {
        const REBOOTSTRAP_REQUIRED: i16 = 129;
        let hb = HeartbeatResponse::default().with_error_code(REBOOTSTRAP_REQUIRED);
        assert_eq!(error_code(&hb), Some(129));
        assert_eq!(hb.top_level_error(), 129);
        assert_eq!(error_code(&FetchResponse::default()), Some(0));
        let share = ShareFetchResponseV2(ShareFetchResponse::default().with_error_code(129));
        assert_eq!(error_code(&share), Some(129));
        let mut ack = ShareAcknowledgeResponseV2::default();
        assert!(set_error_code(&mut ack, 129));
        assert_eq!(ack.body.error_code, 129);
        assert_eq!(error_code(&ack), Some(129));
        let mut txn = EndTxnResponse::default();
        assert!(set_error_code(&mut txn, 129));
        assert_eq!(txn.error_code, 129);

        // Answers without one, and things that are not answers.
        assert_eq!(error_code(&OffsetCommitResponse::default()), None);
        assert_eq!(error_code(&ProduceResponse::default()), None);
        assert_eq!(error_code(&AddPartitionsToTxnResponse::default()), None);
        assert_eq!(error_code(&129_i16), None);
        let mut produce = ProduceResponse::default();
        assert!(!set_error_code(&mut produce, 129));
        assert_eq!(produce, ProduceResponse::default());

        assert_eq!(has_error_code(ApiKey::ShareFetch), Some(true));
        assert_eq!(has_error_code(ApiKey::AddPartitionsToTxn), Some(false));
    }

    #[test]
    fn reads_and_sets_the_throttle_time_of_any_answer() {
        let hb = HeartbeatResponse::default().with_throttle_time_ms(250);
        assert_eq!(throttle_time_ms(&hb), Some(250));
        assert_eq!(hb.throttle_ms(), 250);
        let produce = ProduceResponse::default().with_throttle_time_ms(40);
        assert_eq!(throttle_time_ms(&produce), Some(40));

        // kcon's own share types.
        let share = ShareFetchResponseV2(ShareFetchResponse::default().with_throttle_time_ms(7));
        assert_eq!(throttle_time_ms(&share), Some(7));
        let mut ack = ShareAcknowledgeResponseV2 {
            acquisition_lock_timeout_ms: 30_000,
            ..Default::default()
        };
        assert!(set_throttle_time_ms(&mut ack, 8));
        assert_eq!(ack.body.throttle_time_ms, 8);
        assert_eq!(ack.acquisition_lock_timeout_ms, 30_000);
        assert_eq!(throttle_time_ms(&ack), Some(8));
        let mut offsets = DescribeShareGroupOffsetsResponseV1::default();
        assert!(set_throttle_time_ms(&mut offsets, 9));
        assert_eq!(offsets.body.throttle_time_ms, 9);
        assert_eq!(throttle_time_ms(&offsets), Some(9));

        // Answers without one, and things that are not answers.
        assert_eq!(throttle_time_ms(&SaslAuthenticateResponse::default()), None);
        assert_eq!(throttle_time_ms(&SaslHandshakeResponse::default()), None);
        assert_eq!(throttle_time_ms(&250_i32), None);
        let mut sasl = SaslAuthenticateResponse::default();
        assert!(!set_throttle_time_ms(&mut sasl, 250));
        assert_eq!(sasl, SaslAuthenticateResponse::default());

        assert_eq!(has_throttle_time_ms(ApiKey::Produce), Some(true));
        assert_eq!(has_throttle_time_ms(ApiKey::SaslHandshake), Some(false));
    }

    #[test]
    fn the_client_waits_from_the_version_at_which_the_broker_throttles_after_answering() {
        let fetch = FetchResponse::default().with_throttle_time_ms(250);
        assert_eq!(throttle_waits_from(ApiKey::Fetch), Some(8));
        assert_eq!(throttle_wait_ms(&fetch, 8), Some(250));
        // The field is there, but the broker delayed the answer itself.
        assert_eq!(throttle_wait_ms(&fetch, 7), None);
        assert_eq!(throttle_time_ms(&fetch), Some(250));
        let offsets = DescribeShareGroupOffsetsResponseV1 {
            body: DescribeShareGroupOffsetsResponse::default().with_throttle_time_ms(3),
            lags: Vec::new(),
        };
        assert_eq!(throttle_wait_ms(&offsets, 0), Some(3));
        assert_eq!(throttle_waits_from(ApiKey::SaslAuthenticate), None);
        assert_eq!(
            throttle_wait_ms(&SaslAuthenticateResponse::default(), 2),
            None
        );
        assert_eq!(throttle_wait_ms(&250_i32, 8), None);
    }
}
