//! The group messages in kafka-protocol's types, for the version a broker speaks: fields a
//! version lacks are left out (kafka-protocol refuses a request that sets them), and what a
//! version cannot express is an error rather than a silently different request.

use kcon_codec::kafka_protocol::messages::GroupId;
use kcon_codec::kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kcon_codec::kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kcon_codec::kafka_protocol::messages::join_group_request::{
    JoinGroupRequest, JoinGroupRequestProtocol,
};
use kcon_codec::kafka_protocol::messages::join_group_response::JoinGroupResponse;
use kcon_codec::kafka_protocol::messages::leave_group_request::{
    LeaveGroupRequest, MemberIdentity,
};
use kcon_codec::kafka_protocol::messages::leave_group_response::LeaveGroupResponse;
use kcon_codec::kafka_protocol::messages::sync_group_request::{
    SyncGroupRequest, SyncGroupRequestAssignment,
};
use kcon_codec::kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::wire::{VersionError, str_bytes as s};

use crate::messages::{
    GroupResponse, Heartbeat, JoinGroup, JoinGroupAnswer, JoinedMember, LeaveGroup, SyncGroup,
};

fn text(v: &StrBytes) -> String {
    v.to_string()
}

/// JoinGroup at `version`; static membership needs v5.
pub fn join_group_request(j: &JoinGroup, version: i16) -> Result<JoinGroupRequest, VersionError> {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s(&j.group_id));
    r.session_timeout_ms = j.session_timeout_ms;
    if version >= 1 {
        r.rebalance_timeout_ms = j.rebalance_timeout_ms;
    }
    r.member_id = s(&j.member_id);
    if let Some(instance) = &j.group_instance_id {
        if version < 5 {
            return Err(VersionError(format!(
                "group.instance.id needs JoinGroup v5 (KIP-345); the coordinator speaks up to v{version}"
            )));
        }
        r.group_instance_id = Some(s(instance));
    }
    r.protocol_type = s(&j.protocol_type);
    r.protocols = j
        .protocols
        .iter()
        .map(|(name, metadata)| {
            let mut p = JoinGroupRequestProtocol::default();
            p.name = s(name);
            p.metadata = metadata.clone();
            p
        })
        .collect();
    if version >= 8 {
        r.reason = j.reason.as_deref().map(s);
    }
    Ok(r)
}

/// A JoinGroup answer.
pub fn join_group_response(r: JoinGroupResponse) -> GroupResponse {
    GroupResponse::JoinGroup(JoinGroupAnswer {
        error_code: r.error_code,
        generation_id: r.generation_id,
        protocol_type: r.protocol_type.as_ref().map(text),
        protocol_name: r.protocol_name.as_ref().map(text),
        leader: text(&r.leader),
        skip_assignment: r.skip_assignment,
        member_id: text(&r.member_id),
        members: r
            .members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: text(&m.member_id),
                group_instance_id: m.group_instance_id.as_ref().map(text),
                metadata: m.metadata,
            })
            .collect(),
    })
}

/// SyncGroup at `version`.
pub fn sync_group_request(j: &SyncGroup, version: i16) -> Result<SyncGroupRequest, VersionError> {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(&j.group_id));
    r.generation_id = j.generation_id;
    r.member_id = s(&j.member_id);
    if let Some(instance) = &j.group_instance_id {
        if version < 3 {
            return Err(VersionError(format!(
                "group.instance.id needs SyncGroup v3 (KIP-345); the coordinator speaks up to v{version}"
            )));
        }
        r.group_instance_id = Some(s(instance));
    }
    if version >= 5 {
        r.protocol_type = Some(s(&j.protocol_type));
        r.protocol_name = Some(s(&j.protocol_name));
    }
    r.assignments = j
        .assignments
        .iter()
        .map(|(member, assignment)| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = s(member);
            a.assignment = assignment.clone();
            a
        })
        .collect();
    Ok(r)
}

/// A SyncGroup answer.
pub fn sync_group_response(r: SyncGroupResponse) -> GroupResponse {
    GroupResponse::SyncGroup {
        error_code: r.error_code,
        protocol_type: r.protocol_type.as_ref().map(text),
        protocol_name: r.protocol_name.as_ref().map(text),
        assignment: r.assignment,
    }
}

/// Heartbeat at `version`.
pub fn heartbeat_request(h: &Heartbeat, version: i16) -> Result<HeartbeatRequest, VersionError> {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(&h.group_id));
    r.generation_id = h.generation_id;
    r.member_id = s(&h.member_id);
    if let Some(instance) = &h.group_instance_id {
        if version < 3 {
            return Err(VersionError(format!(
                "group.instance.id needs Heartbeat v3 (KIP-345); the coordinator speaks up to v{version}"
            )));
        }
        r.group_instance_id = Some(s(instance));
    }
    Ok(r)
}

/// A Heartbeat answer.
pub fn heartbeat_response(r: HeartbeatResponse) -> GroupResponse {
    GroupResponse::Heartbeat {
        error_code: r.error_code,
    }
}

/// LeaveGroup for one member at `version` (v3+ names members in a list).
pub fn leave_group_request(l: &LeaveGroup, version: i16) -> LeaveGroupRequest {
    let mut r = LeaveGroupRequest::default();
    r.group_id = GroupId(s(&l.group_id));
    if version >= 3 {
        let mut m = MemberIdentity::default();
        m.member_id = s(&l.member_id);
        m.group_instance_id = l.group_instance_id.as_deref().map(s);
        if version >= 5 {
            m.reason = l.reason.as_deref().map(s);
        }
        r.members = vec![m];
    } else {
        r.member_id = s(&l.member_id);
    }
    r
}

/// A LeaveGroup answer: the top-level error, else the first member's.
pub fn leave_group_response(r: LeaveGroupResponse) -> GroupResponse {
    let error_code = if r.error_code != 0 {
        r.error_code
    } else {
        r.members.first().map_or(0, |m| m.error_code)
    };
    GroupResponse::LeaveGroup { error_code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kcon_core::wire::assert_encodes as encodes;

    fn join() -> JoinGroup {
        JoinGroup {
            group_id: "g".into(),
            session_timeout_ms: 6000,
            rebalance_timeout_ms: 300_000,
            member_id: String::new(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"\0\0"))],
            reason: Some("why".into()),
        }
    }

    #[test]
    fn every_version_encodes() {
        for v in 0..=9 {
            encodes(&join_group_request(&join(), v).unwrap(), v);
        }
        let sync = SyncGroup {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            assignments: vec![("m".into(), Bytes::from_static(b"\0\0"))],
        };
        for v in 0..=5 {
            encodes(&sync_group_request(&sync, v).unwrap(), v);
        }
        let hb = Heartbeat {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            group_instance_id: Some("i".into()),
        };
        for v in 3..=4 {
            encodes(&heartbeat_request(&hb, v).unwrap(), v);
        }
        let leave = LeaveGroup {
            group_id: "g".into(),
            member_id: "m".into(),
            group_instance_id: None,
            reason: Some("closing".into()),
        };
        for v in 0..=5 {
            encodes(&leave_group_request(&leave, v), v);
        }
    }

    #[test]
    fn static_membership_needs_its_versions() {
        let mut j = join();
        j.group_instance_id = Some("i".into());
        let e = join_group_request(&j, 4).unwrap_err();
        assert!(e.0.contains("group.instance.id"), "{e:?}");
        join_group_request(&j, 5).unwrap();
        let hb = Heartbeat {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            group_instance_id: Some("i".into()),
        };
        assert!(heartbeat_request(&hb, 2).is_err());
    }
}
