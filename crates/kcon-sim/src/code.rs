//! The Kafka error codes the simulated brokers answer, by name.

use kcon_codec::kafka_protocol::ResponseError as E;

/// No error.
pub const NONE: i16 = 0;
/// COORDINATOR_LOAD_IN_PROGRESS.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
/// COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
/// NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
/// ILLEGAL_GENERATION.
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
/// INCONSISTENT_GROUP_PROTOCOL.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();
/// UNKNOWN_MEMBER_ID.
pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
/// REBALANCE_IN_PROGRESS.
pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
/// GROUP_AUTHORIZATION_FAILED.
pub const GROUP_AUTHORIZATION_FAILED: i16 = E::GroupAuthorizationFailed.code();
/// MEMBER_ID_REQUIRED.
pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
/// GROUP_MAX_SIZE_REACHED.
pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();
/// FENCED_INSTANCE_ID.
pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
/// FENCED_MEMBER_EPOCH (KIP-848).
pub const FENCED_MEMBER_EPOCH: i16 = E::FencedMemberEpoch.code();
/// UNRELEASED_INSTANCE_ID (KIP-848).
pub const UNRELEASED_INSTANCE_ID: i16 = E::UnreleasedInstanceId.code();
/// UNSUPPORTED_ASSIGNOR (KIP-848).
pub const UNSUPPORTED_ASSIGNOR: i16 = E::UnsupportedAssignor.code();
/// STALE_MEMBER_EPOCH (KIP-848).
pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();
/// INVALID_REGULAR_EXPRESSION (KIP-848).
pub const INVALID_REGULAR_EXPRESSION: i16 = E::InvalidRegularExpression.code();
/// INVALID_REQUEST.
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
