//! ConsumerGroupHeartbeat (v0 and v1) and ShareGroupHeartbeat (v1) in kafka-protocol's types.

use std::collections::BTreeSet;

use kcon_codec::kafka_protocol::messages::GroupId;
use kcon_codec::kafka_protocol::messages::consumer_group_heartbeat_request::{
    ConsumerGroupHeartbeatRequest, TopicPartitions as RequestTopicPartitions,
};
use kcon_codec::kafka_protocol::messages::consumer_group_heartbeat_response::ConsumerGroupHeartbeatResponse;
use kcon_codec::kafka_protocol::messages::share_group_heartbeat_request::ShareGroupHeartbeatRequest;
use kcon_codec::kafka_protocol::messages::share_group_heartbeat_response::ShareGroupHeartbeatResponse;
use kcon_core::TopicId;
use kcon_core::wire::{VersionError, str_bytes as s, topic_name};

use super::messages::{
    ConsumerGroupHeartbeat, ConsumerGroupHeartbeatAnswer, ShareGroupHeartbeat, TopicIdPartitions,
};

/// kafka-protocol's `Uuid` (the `uuid` crate's, which it does not re-export) from a topic id,
/// through its text form.
fn uuid<U: std::str::FromStr + Default>(id: TopicId) -> U {
    let text: String = id.0.iter().map(|b| format!("{b:02x}")).collect();
    // Invariant: 32 hex digits are the `simple` form every `uuid` version parses.
    text.parse().unwrap_or_default()
}

/// ConsumerGroupHeartbeat at `version` (0 or 1). v0 has no regex field: the empty regex sent
/// beside names is left out, and a subscription by regex is refused (rather than sending a
/// request that subscribes to something else).
pub fn heartbeat_request(
    h: &ConsumerGroupHeartbeat,
    version: i16,
) -> Result<ConsumerGroupHeartbeatRequest, VersionError> {
    if !(0..=1).contains(&version) {
        return Err(VersionError(format!(
            "kcon speaks ConsumerGroupHeartbeat v0-v1, not v{version}"
        )));
    }
    let mut r = ConsumerGroupHeartbeatRequest::default();
    r.group_id = GroupId(s(&h.group_id));
    r.member_id = s(&h.member_id);
    r.member_epoch = h.member_epoch;
    r.instance_id = h.instance_id.as_deref().map(s);
    r.rack_id = h.rack_id.as_deref().map(s);
    r.rebalance_timeout_ms = h.rebalance_timeout_ms;
    r.subscribed_topic_names = h
        .subscribed_topic_names
        .as_ref()
        .map(|names| names.iter().map(|n| topic_name(n)).collect());
    if version >= 1 {
        r.subscribed_topic_regex = h.subscribed_topic_regex.as_deref().map(s);
    } else if h
        .subscribed_topic_regex
        .as_deref()
        .is_some_and(|r| !r.is_empty())
    {
        return Err(VersionError(
            "a regex subscription under group.protocol=consumer needs ConsumerGroupHeartbeat v1 \
             (SubscribedTopicRegex, Apache Kafka 4.0 and later), and the coordinator speaks v0"
                .to_owned(),
        ));
    }
    r.server_assignor = h.server_assignor.as_deref().map(s);
    r.topic_partitions = h.owned.as_ref().map(|owned| {
        owned
            .iter()
            .map(|(id, partitions)| {
                let mut t = RequestTopicPartitions::default();
                t.topic_id = uuid(*id);
                t.partitions = partitions.iter().copied().collect();
                t
            })
            .collect()
    });
    Ok(r)
}

/// The answer in the machine's terms. Negative partition numbers are dropped and repeated
/// ones merged: an assignment is a set.
pub fn heartbeat_response(r: ConsumerGroupHeartbeatResponse) -> ConsumerGroupHeartbeatAnswer {
    let assignment = r.assignment.map(|a| {
        assignment(
            a.topic_partitions
                .into_iter()
                .map(|t| (*t.topic_id.as_bytes(), t.partitions)),
        )
    });
    answer(
        r.error_code,
        r.error_message.map(|m| m.to_string()),
        r.member_id.map(|m| m.to_string()),
        r.member_epoch,
        r.heartbeat_interval_ms,
        assignment,
    )
}

/// An assignment as a set: negative partition numbers dropped, repeated topics merged.
fn assignment(topics: impl Iterator<Item = ([u8; 16], Vec<i32>)>) -> TopicIdPartitions {
    let mut out = TopicIdPartitions::new();
    for (id, partitions) in topics {
        let partitions: BTreeSet<i32> = partitions.into_iter().filter(|p| *p >= 0).collect();
        out.entry(TopicId(id)).or_default().extend(partitions);
    }
    out
}

/// Either heartbeat's answer, empty texts read as none.
fn answer(
    error_code: i16,
    error_message: Option<String>,
    member_id: Option<String>,
    member_epoch: i32,
    heartbeat_interval_ms: i32,
    assignment: Option<TopicIdPartitions>,
) -> ConsumerGroupHeartbeatAnswer {
    ConsumerGroupHeartbeatAnswer {
        error_code,
        error_message: error_message.filter(|m| !m.is_empty()),
        member_id: member_id.filter(|m| !m.is_empty()),
        member_epoch,
        heartbeat_interval_ms,
        assignment,
    }
}

/// ShareGroupHeartbeat at `version` (1, the only one kcon speaks).
pub fn share_heartbeat_request(
    h: &ShareGroupHeartbeat,
    version: i16,
) -> Result<ShareGroupHeartbeatRequest, VersionError> {
    if version != 1 {
        return Err(VersionError(format!(
            "kcon speaks ShareGroupHeartbeat v1, not v{version}"
        )));
    }
    let mut r = ShareGroupHeartbeatRequest::default();
    r.group_id = GroupId(s(&h.group_id));
    r.member_id = s(&h.member_id);
    r.member_epoch = h.member_epoch;
    r.rack_id = h.rack_id.as_deref().map(s);
    r.subscribed_topic_names = h
        .subscribed_topic_names
        .as_ref()
        .map(|names| names.iter().map(|n| topic_name(n)).collect());
    Ok(r)
}

/// ShareGroupHeartbeat's answer in the machine's terms, as [`heartbeat_response`] reads
/// ConsumerGroupHeartbeat's.
pub fn share_heartbeat_response(r: ShareGroupHeartbeatResponse) -> ConsumerGroupHeartbeatAnswer {
    let assignment = r.assignment.map(|a| {
        assignment(
            a.topic_partitions
                .into_iter()
                .map(|t| (*t.topic_id.as_bytes(), t.partitions)),
        )
    });
    answer(
        r.error_code,
        r.error_message.map(|m| m.to_string()),
        r.member_id.map(|m| m.to_string()),
        r.member_epoch,
        r.heartbeat_interval_ms,
        assignment,
    )
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kcon_codec::kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    use kcon_codec::kafka_protocol::protocol::{Decodable, Encodable};

    use super::*;

    fn heartbeat() -> ConsumerGroupHeartbeat {
        ConsumerGroupHeartbeat {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            instance_id: Some("i".into()),
            rack_id: None,
            rebalance_timeout_ms: 300_000,
            subscribed_topic_names: Some(vec!["a".into(), "b".into()]),
            subscribed_topic_regex: Some(String::new()),
            server_assignor: Some("uniform".into()),
            owned: Some(
                [(TopicId([7; 16]), BTreeSet::from([0, 2]))]
                    .into_iter()
                    .collect(),
            ),
        }
    }

    /// Both versions encode and read back the same fields; v0 leaves the regex out.
    #[test]
    fn requests_round_trip_at_both_versions() {
        for version in 0..=1 {
            let r = heartbeat_request(&heartbeat(), version).unwrap();
            let mut buf = BytesMut::new();
            r.encode(&mut buf, version).unwrap();
            let back = ConsumerGroupHeartbeatRequest::decode(&mut buf.freeze(), version).unwrap();
            assert_eq!(back.member_id.as_str(), "m");
            assert_eq!(back.member_epoch, 0);
            assert_eq!(back.subscribed_topic_names.as_ref().unwrap().len(), 2);
            assert_eq!(
                back.subscribed_topic_regex.as_deref(),
                (version >= 1).then_some("")
            );
            let owned = back.topic_partitions.unwrap();
            assert_eq!(*owned[0].topic_id.as_bytes(), [7; 16]);
            assert_eq!(owned[0].partitions, [0, 2]);
        }
        assert!(heartbeat_request(&heartbeat(), 2).is_err());
    }

    /// A regex subscription goes as v1's SubscribedTopicRegex with an empty list of names;
    /// v0, which has no such field, refuses it rather than sending a subscription to nothing,
    /// and leaves out the empty regex sent beside names.
    #[test]
    fn a_regex_needs_v1() {
        let mut h = heartbeat();
        h.subscribed_topic_names = Some(Vec::new());
        h.subscribed_topic_regex = Some("^t-.*".into());
        let r = heartbeat_request(&h, 1).unwrap();
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        let back = ConsumerGroupHeartbeatRequest::decode(&mut buf.freeze(), 1).unwrap();
        assert_eq!(back.subscribed_topic_regex.as_deref(), Some("^t-.*"));
        assert_eq!(back.subscribed_topic_names, Some(Vec::new()));
        let refused = heartbeat_request(&h, 0).unwrap_err();
        assert!(refused.0.contains("v1"), "{}", refused.0);
        assert!(refused.0.contains("regex"), "{}", refused.0);
        h.subscribed_topic_regex = Some(String::new());
        assert!(heartbeat_request(&h, 0).is_ok());
    }

    /// An unchanged field goes out as null.
    #[test]
    fn unchanged_fields_are_null() {
        let mut h = heartbeat();
        h.subscribed_topic_names = None;
        h.subscribed_topic_regex = None;
        h.owned = None;
        h.instance_id = None;
        let r = heartbeat_request(&h, 1).unwrap();
        assert!(r.subscribed_topic_names.is_none());
        assert!(r.subscribed_topic_regex.is_none());
        assert!(r.topic_partitions.is_none());
        assert!(r.instance_id.is_none());
    }

    /// ShareGroupHeartbeat v1 carries the id, epoch, rack and names, and no other version is
    /// sent; its answer reads as ConsumerGroupHeartbeat's does.
    #[test]
    fn share_heartbeats_round_trip() {
        use kcon_codec::kafka_protocol::messages::share_group_heartbeat_response::{
            Assignment as ShareAssignment, TopicPartitions as ShareTopicPartitions,
        };
        let h = ShareGroupHeartbeat {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            rack_id: Some("r".into()),
            subscribed_topic_names: Some(vec!["a".into()]),
        };
        let r = share_heartbeat_request(&h, 1).unwrap();
        let mut buf = BytesMut::new();
        r.encode(&mut buf, 1).unwrap();
        let back = ShareGroupHeartbeatRequest::decode(&mut buf.freeze(), 1).unwrap();
        assert_eq!(back.member_id.as_str(), "m");
        assert_eq!(back.rack_id.as_deref(), Some("r"));
        assert_eq!(back.subscribed_topic_names.unwrap().len(), 1);
        assert!(share_heartbeat_request(&h, 0).is_err());
        assert!(share_heartbeat_request(&h, 2).is_err());

        let mut r = ShareGroupHeartbeatResponse::default();
        r.member_epoch = 2;
        r.heartbeat_interval_ms = 100;
        r.error_message = Some(s(""));
        let mut t = ShareTopicPartitions::default();
        t.topic_id = uuid(TopicId([3; 16]));
        t.partitions = vec![1, -2, 1, 0];
        let mut a = ShareAssignment::default();
        a.topic_partitions = vec![t];
        r.assignment = Some(a);
        let answer = share_heartbeat_response(r);
        assert_eq!(answer.member_epoch, 2);
        assert_eq!(answer.error_message, None);
        assert_eq!(
            answer.assignment.unwrap()[&TopicId([3; 16])],
            BTreeSet::from([0, 1])
        );
    }

    /// Repeated topics merge, negative partitions go.
    #[test]
    fn answers_are_read_as_sets() {
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.member_epoch = 3;
        r.heartbeat_interval_ms = 500;
        r.member_id = Some(s(""));
        let mut t = TopicPartitions::default();
        t.topic_id = uuid(TopicId([1; 16]));
        t.partitions = vec![2, -1, 0, 2];
        let mut again = TopicPartitions::default();
        again.topic_id = uuid(TopicId([1; 16]));
        again.partitions = vec![5];
        let mut a = Assignment::default();
        a.topic_partitions = vec![t, again];
        r.assignment = Some(a);
        let answer = heartbeat_response(r);
        assert_eq!(answer.member_epoch, 3);
        assert_eq!(answer.member_id, None);
        assert_eq!(
            answer.assignment.unwrap()[&TopicId([1; 16])],
            BTreeSet::from([0, 2, 5])
        );
    }
}
