//! The top-level error code of the answers kcon decodes: one table, by API.
//!
//! An answer's top-level error code is the `error_code` of the message itself, not one of its
//! topics, partitions, groups or resources. [`error_code`] reads it from a decoded answer of any
//! API, given as `&dyn Any` (as a connection holds the answers of every API alike);
//! [`TopLevelError`] reads it from an answer of a known type.
//!
//! The table has one entry for each API of [`SUPPORTED`]: the types kcon decodes its answers
//! to when they have a top-level error code at a version kcon speaks, or none when they do not.
//! ShareFetch and ShareAcknowledge answers are decoded to kcon's own types ([`crate::share_v2`]),
//! listed with kafka-protocol's. AddPartitionsToTxn has none: its answer has an `error_code`
//! from v4 on only, the brokers' batched form, which kcon does not send. At a version of a
//! message without the field (Fetch before v7, Metadata before v13, OffsetFetch outside v2-v7,
//! FindCoordinator after v3), the decoded answer holds 0 there, and so that is what is read.
//!
//! # How the table is kept complete
//!
//! kafka-protocol's published crate has the Rust types generated from Kafka's message specs,
//! not the specs. The guard's response schemas (`guard`) are kcon's transcription of those
//! types, one per API kcon speaks, at exactly the versions it speaks, and its tests prove them
//! against kafka-protocol's decoders field by field. The table is checked against them:
//!
//! - here: every API of [`SUPPORTED`] has exactly one entry and no other API has one, and each
//!   type answers the API of its entry;
//! - in the guard's tests: at every version kcon speaks of every API, kcon's decoded type of
//!   the answer is in the table if and only if the API's schema has a top-level `error_code`
//!   at some version; where the version has it, a code set through the table is the code the
//!   guard reads at that field of the encoded answer, and the code read back through the table
//!   from the decoded answer.
//!
//! An API added to [`SUPPORTED`] needs a guard schema (a guard test holds the two together),
//! and then an entry here that agrees with that schema; an answer decoded to a new type fails
//! the same test until the type is in the table.
//!
//! [`SUPPORTED`]: crate::versions::SUPPORTED

use std::any::Any;

use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, ApiKey, ApiVersionsResponse, ConsumerGroupHeartbeatResponse,
    EndTxnResponse, FetchResponse, FindCoordinatorResponse, HeartbeatResponse,
    InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    MetadataResponse, OffsetDeleteResponse, OffsetFetchResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse, ShareAcknowledgeResponse, ShareFetchResponse,
    ShareGroupHeartbeatResponse, SyncGroupResponse,
};

use crate::share_v2::{ShareAcknowledgeResponseV2, ShareFetchResponseV2};

/// An answer type with a top-level error code.
pub trait TopLevelError: Any {
    /// The API it answers.
    const API_KEY: ApiKey;

    /// The top-level error code: 0 for none, and at a version of the message without it.
    fn top_level_error(&self) -> i16;

    /// Sets the top-level error code. Only 0 encodes at a version of the message without it.
    fn set_top_level_error(&mut self, code: i16);
}

/// The top-level error code of `answer`, an answer of any API kcon speaks; `None` when its
/// API's answers have none (and for anything that is not an answer).
pub fn error_code(answer: &dyn Any) -> Option<i16> {
    readers().find_map(|r| (r.read)(answer))
}

/// Sets the top-level error code of `answer`; false, with nothing set, when its API's answers
/// have none (or it is not an answer).
pub fn set_error_code(answer: &mut dyn Any, code: i16) -> bool {
    readers().any(|r| (r.write)(answer, code))
}

/// Whether the answers of `api` have a top-level error code at a version kcon speaks; `None`
/// for an API kcon does not speak.
pub fn has_error_code(api: ApiKey) -> Option<bool> {
    APIS.iter()
        .find(|(k, _)| *k == api)
        .map(|(_, types)| !types.is_empty())
}

/// The top-level error code of one answer type, through `&dyn Any`.
#[derive(Clone, Copy)]
struct Reader {
    /// The API the type answers.
    #[cfg(test)]
    api_key: ApiKey,
    /// The code, if the answer is of this type.
    read: fn(&dyn Any) -> Option<i16>,
    /// Sets the code if the answer is of this type, and says whether it was.
    write: fn(&mut dyn Any, i16) -> bool,
}

const fn reader<T: TopLevelError>() -> Reader {
    Reader {
        #[cfg(test)]
        api_key: T::API_KEY,
        read: read::<T>,
        write: write::<T>,
    }
}

fn read<T: TopLevelError>(answer: &dyn Any) -> Option<i16> {
    answer.downcast_ref::<T>().map(T::top_level_error)
}

fn write<T: TopLevelError>(answer: &mut dyn Any, code: i16) -> bool {
    answer
        .downcast_mut::<T>()
        .map(|a| a.set_top_level_error(code))
        .is_some()
}

/// No top-level error code: the errors are per topic, partition, group or resource.
const NONE: &[Reader] = &[];

/// Every API kcon speaks, in the order of [`SUPPORTED`](crate::versions::SUPPORTED), with the
/// types kcon decodes its answers to when they have a top-level error code.
const APIS: &[(ApiKey, &[Reader])] = &[
    (ApiKey::Produce, NONE),
    (ApiKey::Fetch, &[reader::<FetchResponse>()]),
    (ApiKey::ListOffsets, NONE),
    (ApiKey::Metadata, &[reader::<MetadataResponse>()]),
    (ApiKey::OffsetCommit, NONE),
    (ApiKey::OffsetFetch, &[reader::<OffsetFetchResponse>()]),
    (
        ApiKey::FindCoordinator,
        &[reader::<FindCoordinatorResponse>()],
    ),
    (ApiKey::JoinGroup, &[reader::<JoinGroupResponse>()]),
    (ApiKey::Heartbeat, &[reader::<HeartbeatResponse>()]),
    (ApiKey::LeaveGroup, &[reader::<LeaveGroupResponse>()]),
    (ApiKey::SyncGroup, &[reader::<SyncGroupResponse>()]),
    (ApiKey::DescribeGroups, NONE),
    (ApiKey::ListGroups, &[reader::<ListGroupsResponse>()]),
    (ApiKey::SaslHandshake, &[reader::<SaslHandshakeResponse>()]),
    (ApiKey::ApiVersions, &[reader::<ApiVersionsResponse>()]),
    (ApiKey::CreateTopics, NONE),
    (ApiKey::DeleteGroups, NONE),
    (
        ApiKey::SaslAuthenticate,
        &[reader::<SaslAuthenticateResponse>()],
    ),
    (ApiKey::OffsetForLeaderEpoch, NONE),
    (ApiKey::OffsetDelete, &[reader::<OffsetDeleteResponse>()]),
    (
        ApiKey::ConsumerGroupHeartbeat,
        &[reader::<ConsumerGroupHeartbeatResponse>()],
    ),
    (ApiKey::ConsumerGroupDescribe, NONE),
    (
        ApiKey::InitProducerId,
        &[reader::<InitProducerIdResponse>()],
    ),
    (ApiKey::AddPartitionsToTxn, NONE),
    (
        ApiKey::AddOffsetsToTxn,
        &[reader::<AddOffsetsToTxnResponse>()],
    ),
    (ApiKey::EndTxn, &[reader::<EndTxnResponse>()]),
    (ApiKey::TxnOffsetCommit, NONE),
    (
        ApiKey::ShareGroupHeartbeat,
        &[reader::<ShareGroupHeartbeatResponse>()],
    ),
    (
        ApiKey::ShareFetch,
        &[
            reader::<ShareFetchResponseV2>(),
            reader::<ShareFetchResponse>(),
        ],
    ),
    (
        ApiKey::ShareAcknowledge,
        &[
            reader::<ShareAcknowledgeResponseV2>(),
            reader::<ShareAcknowledgeResponse>(),
        ],
    ),
    (ApiKey::ShareGroupDescribe, NONE),
    (ApiKey::DescribeShareGroupOffsets, NONE),
    (ApiKey::DescribeConfigs, NONE),
    (ApiKey::IncrementalAlterConfigs, NONE),
];

fn readers() -> impl Iterator<Item = &'static Reader> {
    APIS.iter().flat_map(|(_, types)| types.iter())
}

/// Implements [`TopLevelError`] for kafka-protocol answer types, whose field is `error_code`.
macro_rules! error_code_field {
    ($($t:ty: $api:ident),* $(,)?) => {
        $(
            impl TopLevelError for $t {
                const API_KEY: ApiKey = ApiKey::$api;

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

error_code_field!(
    FetchResponse: Fetch,
    MetadataResponse: Metadata,
    OffsetFetchResponse: OffsetFetch,
    FindCoordinatorResponse: FindCoordinator,
    JoinGroupResponse: JoinGroup,
    HeartbeatResponse: Heartbeat,
    LeaveGroupResponse: LeaveGroup,
    SyncGroupResponse: SyncGroup,
    ListGroupsResponse: ListGroups,
    SaslHandshakeResponse: SaslHandshake,
    ApiVersionsResponse: ApiVersions,
    SaslAuthenticateResponse: SaslAuthenticate,
    OffsetDeleteResponse: OffsetDelete,
    ConsumerGroupHeartbeatResponse: ConsumerGroupHeartbeat,
    InitProducerIdResponse: InitProducerId,
    AddOffsetsToTxnResponse: AddOffsetsToTxn,
    EndTxnResponse: EndTxn,
    ShareGroupHeartbeatResponse: ShareGroupHeartbeat,
    ShareFetchResponse: ShareFetch,
    ShareAcknowledgeResponse: ShareAcknowledge,
);

impl TopLevelError for ShareFetchResponseV2 {
    const API_KEY: ApiKey = ApiKey::ShareFetch;

    fn top_level_error(&self) -> i16 {
        self.0.error_code
    }

    fn set_top_level_error(&mut self, code: i16) {
        self.0.error_code = code;
    }
}

impl TopLevelError for ShareAcknowledgeResponseV2 {
    const API_KEY: ApiKey = ApiKey::ShareAcknowledge;

    fn top_level_error(&self) -> i16 {
        self.body.error_code
    }

    fn set_top_level_error(&mut self, code: i16) {
        self.body.error_code = code;
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
        let listed: Vec<ApiKey> = APIS.iter().map(|&(api, _)| api).collect();
        assert_eq!(listed, ours, "the table follows SUPPORTED, entry for entry");
        for &(api, _, _) in SUPPORTED {
            assert!(has_error_code(api).is_some(), "{api:?}");
        }
        assert_eq!(has_error_code(ApiKey::DeleteTopics), None);
    }

    #[test]
    fn each_type_answers_the_api_of_its_entry() {
        for (api, types) in APIS {
            for r in *types {
                assert_eq!(r.api_key, *api);
            }
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
}
