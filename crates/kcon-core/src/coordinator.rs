//! The group coordinator: finding it (FindCoordinator in kafka-protocol's types, for the group
//! member, the commit machine and one-shot group administration alike), and what a member
//! shows it to commit.

use kcon_codec::kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kcon_codec::kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kcon_codec::kafka_protocol::protocol::StrBytes;

use crate::machine::Coordinator;

/// FindCoordinator's answer for one group, whatever the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCoordinator {
    /// The error code.
    pub error_code: i16,
    /// The broker's message, if any.
    pub error_message: Option<String>,
    /// The coordinator, when the error code is 0.
    pub coordinator: Option<Coordinator>,
}

/// What a member's commits carry to show the coordinator it is a current member of the group,
/// and where they go: the generation and member id of the group member, or generation -1 and
/// an empty member id from outside any generation (a tool resetting offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The generation id; -1 outside any generation.
    pub generation_id: i32,
    /// The member id; empty outside the group.
    pub member_id: String,
    /// The group coordinator, when known.
    pub coordinator: Option<Coordinator>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            generation_id: -1,
            member_id: String::new(),
            coordinator: None,
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn text(v: &StrBytes) -> String {
    v.to_string()
}

/// FindCoordinator for a group (key type 0); v4+ batches keys, kcon sends one.
pub fn find_coordinator_request(group_id: &str, version: i16) -> FindCoordinatorRequest {
    let mut r = FindCoordinatorRequest::default();
    if version >= 4 {
        r.coordinator_keys = vec![s(group_id)];
    } else {
        r.key = s(group_id);
    }
    r
}

/// The coordinator from a FindCoordinator answer (v4+: the entry for `group_id`).
pub fn find_coordinator_response(
    group_id: &str,
    r: FindCoordinatorResponse,
    version: i16,
) -> FoundCoordinator {
    let (error_code, error_message, id, host, port) = if version >= 4 {
        let Some(c) = r
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == group_id)
        else {
            // COORDINATOR_NOT_AVAILABLE: retriable, which is right for an answer that left the
            // group out.
            return FoundCoordinator {
                error_code: 15,
                error_message: Some("the answer names no coordinator for the group".into()),
                coordinator: None,
            };
        };
        (c.error_code, c.error_message, c.node_id.0, c.host, c.port)
    } else {
        (r.error_code, r.error_message, r.node_id.0, r.host, r.port)
    };
    let coordinator = (error_code == 0).then(|| Coordinator {
        id,
        host: text(&host),
        port,
    });
    FoundCoordinator {
        error_code,
        error_message: error_message.as_ref().map(text).filter(|m| !m.is_empty()),
        coordinator,
    }
}

#[cfg(test)]
mod tests {
    use kcon_codec::kafka_protocol::protocol::{Encodable, Request};

    use super::*;

    fn encodes<R: Request + Encodable>(r: &R, version: i16) {
        let mut buf = bytes::BytesMut::new();
        r.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{} v{version}: {e}", std::any::type_name::<R>()));
    }

    #[test]
    fn every_version_encodes() {
        for v in 0..=6 {
            encodes(&find_coordinator_request("g", v), v);
        }
    }

    #[test]
    fn batched_find_coordinator_picks_the_groups_entry() {
        use kcon_codec::kafka_protocol::messages::BrokerId;
        use kcon_codec::kafka_protocol::messages::find_coordinator_response::Coordinator as C;
        let mut r = FindCoordinatorResponse::default();
        let mut other = C::default();
        other.key = s("other");
        other.node_id = BrokerId(9);
        let mut mine = C::default();
        mine.key = s("g");
        mine.node_id = BrokerId(2);
        mine.host = s("h");
        mine.port = 9092;
        r.coordinators = vec![other, mine];
        assert_eq!(
            find_coordinator_response("g", r.clone(), 4),
            FoundCoordinator {
                error_code: 0,
                error_message: None,
                coordinator: Some(Coordinator {
                    id: 2,
                    host: "h".into(),
                    port: 9092
                }),
            }
        );
        r.coordinators.remove(1);
        assert!(matches!(
            find_coordinator_response("g", r, 4),
            FoundCoordinator {
                error_code: 15,
                coordinator: None,
                ..
            }
        ));
    }
}
