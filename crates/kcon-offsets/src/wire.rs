//! The commit machine's requests in kafka-protocol's types: kcon-core's
//! [`group_offsets`](kcon_core::group_offsets) conversions (which kcon-admin sends too), and
//! their answers as the machine's [`OffsetsResponse`].

use kcon_codec::kafka_protocol::messages::offset_commit_response::OffsetCommitResponse;
use kcon_codec::kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
pub use kcon_core::group_offsets::{
    GroupFetchAnswer, offset_commit_request, offset_fetch_groups_request,
    offset_fetch_groups_response, offset_fetch_request,
};

use crate::messages::OffsetsResponse;

/// An OffsetCommit answer: each partition's error code.
pub fn offset_commit_response(r: OffsetCommitResponse) -> OffsetsResponse {
    OffsetsResponse::OffsetCommit {
        partitions: kcon_core::group_offsets::offset_commit_response(r),
    }
}

/// An OffsetFetch answer for `group_id` (v8+: that group's entry; an answer that leaves it out
/// is COORDINATOR_NOT_AVAILABLE, which is retried).
pub fn offset_fetch_response(
    group_id: &str,
    r: OffsetFetchResponse,
    version: i16,
) -> OffsetsResponse {
    let (error_code, partitions) =
        kcon_core::group_offsets::offset_fetch_response(group_id, r, version);
    OffsetsResponse::OffsetFetch {
        error_code,
        partitions,
    }
}
