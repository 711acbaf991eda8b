//! What the group machine asks to send and what it is fed back, independent of protocol
//! versions: [`wire`](crate::wire) turns them into and out of kafka-protocol's types for the
//! version a broker speaks.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kcon_core::TopicId;
use kcon_core::coordinator::FoundCoordinator;

use crate::assignor::TopicPartitions;
use crate::consumer_group::{
    ConsumerGroupHeartbeat, ConsumerGroupHeartbeatAnswer, ShareGroupHeartbeat,
};

/// A request the group machine wants sent.
pub type Outgoing = kcon_core::Outgoing<GroupRequest>;

/// The coordinator a FindCoordinator answer names, or why there is none.
pub(crate) fn found_coordinator(
    result: Result<GroupResponse, kcon_core::RequestFailure>,
) -> Result<kcon_core::coordinator::FoundCoordinator, kcon_core::RequestFailure> {
    match result {
        Ok(GroupResponse::FindCoordinator(found)) => Ok(found),
        Ok(other) => Err(kcon_core::RequestFailure::retriable(format!(
            "an answer of the wrong kind: {other:?}"
        ))),
        Err(f) => Err(f),
    }
}

/// FindCoordinator for `group_id`, sent as request `id` to any broker.
pub(crate) fn find_coordinator(id: kcon_core::RequestId, group_id: &str) -> Outgoing {
    Outgoing {
        id,
        target: kcon_core::Target::Any,
        request: GroupRequest::FindCoordinator {
            group_id: group_id.to_owned(),
        },
        timeout: None,
    }
}

/// The requests of a group member: a classic one's, and a consumer-protocol one's (KIP-848:
/// ConsumerGroupHeartbeat, and the topic names of its assignment's topic ids).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupRequest {
    /// FindCoordinator for the group (key type 0).
    FindCoordinator {
        /// The group id.
        group_id: String,
    },
    /// Metadata for these topics: the leader needs every subscribed topic's partitions to
    /// assign them.
    Metadata {
        /// The topics (the union of all members' subscriptions).
        topics: BTreeSet<String>,
    },
    /// JoinGroup.
    JoinGroup(JoinGroup),
    /// SyncGroup.
    SyncGroup(SyncGroup),
    /// Heartbeat.
    Heartbeat(Heartbeat),
    /// LeaveGroup for this member.
    LeaveGroup(LeaveGroup),
    /// ConsumerGroupHeartbeat (KIP-848): joining, heartbeating and leaving, all in one.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeat),
    /// ShareGroupHeartbeat (KIP-932): a share group member's, the same way.
    ShareGroupHeartbeat(ShareGroupHeartbeat),
    /// Metadata for these topics, or for every topic: the coordinator assigns by topic id, and
    /// the member needs the names.
    TopicIds {
        /// The topics subscribed to by name.
        topics: BTreeSet<String>,
        /// Every topic of the cluster: the member subscribes by a regex, whose matches only
        /// the coordinator knows.
        all: bool,
    },
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    /// The group id.
    pub group_id: String,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// The rebalance timeout: `max.poll.interval.ms` (JoinGroup v1+).
    pub rebalance_timeout_ms: i32,
    /// The member id: empty on the first join.
    pub member_id: String,
    /// `group.instance.id` (JoinGroup v5+).
    pub group_instance_id: Option<String>,
    /// Always "consumer".
    pub protocol_type: String,
    /// The assignors, in order of preference, each with the member's subscription encoded for
    /// it.
    pub protocols: Vec<(String, Bytes)>,
    /// Why the member joins (KIP-800, JoinGroup v8+).
    pub reason: Option<String>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    /// The group id.
    pub group_id: String,
    /// The generation joined.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` (v3+).
    pub group_instance_id: Option<String>,
    /// "consumer" (v5+).
    pub protocol_type: String,
    /// The assignor the coordinator chose (v5+).
    pub protocol_name: String,
    /// From the leader: every member's encoded assignment; empty from the others.
    pub assignments: Vec<(String, Bytes)>,
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The group id.
    pub group_id: String,
    /// The generation.
    pub generation_id: i32,
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` (v3+).
    pub group_instance_id: Option<String>,
}

/// A LeaveGroup request for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroup {
    /// The group id.
    pub group_id: String,
    /// The member id.
    pub member_id: String,
    /// `group.instance.id` (v3+); static members leave only when asked to explicitly, which
    /// kcon's machine never does on close (KIP-345).
    pub group_instance_id: Option<String>,
    /// Why (KIP-800, v5+).
    pub reason: Option<String>,
}

/// An answer, in the terms the machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupResponse {
    /// FindCoordinator's answer for the group.
    FindCoordinator(FoundCoordinator),
    /// The partitions of the topics asked for (topics that don't exist are left out).
    Metadata(TopicPartitions),
    /// JoinGroup's answer.
    JoinGroup(JoinGroupAnswer),
    /// SyncGroup's answer.
    SyncGroup {
        /// The error code.
        error_code: i16,
        /// The protocol type (v5+).
        protocol_type: Option<String>,
        /// The protocol name (v5+).
        protocol_name: Option<String>,
        /// The member's encoded assignment.
        assignment: Bytes,
    },
    /// Heartbeat's answer.
    Heartbeat {
        /// The error code.
        error_code: i16,
    },
    /// LeaveGroup's answer: the top-level error, else this member's.
    LeaveGroup {
        /// The error code.
        error_code: i16,
    },
    /// ConsumerGroupHeartbeat's answer.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer),
    /// ShareGroupHeartbeat's answer (the same fields).
    ShareGroupHeartbeat(ConsumerGroupHeartbeatAnswer),
    /// Topic names by id, as the metadata has them.
    TopicIds(BTreeMap<TopicId, String>),
}

/// JoinGroup's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinGroupAnswer {
    /// The error code.
    pub error_code: i16,
    /// The generation.
    pub generation_id: i32,
    /// The protocol type (v7+).
    pub protocol_type: Option<String>,
    /// The assignor the coordinator chose.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Whether the leader should skip assigning (KIP-814, v9+): a static leader rejoined and
    /// the coordinator kept the assignment.
    pub skip_assignment: bool,
    /// This member's id (the one to use from now on; with MEMBER_ID_REQUIRED, the one to rejoin
    /// with).
    pub member_id: String,
    /// For the leader: every member and its subscription bytes for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

/// A member as JoinGroup tells the leader about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// Its subscription, encoded.
    pub metadata: Bytes,
}
