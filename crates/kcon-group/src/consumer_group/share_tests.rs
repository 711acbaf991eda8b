//! The share group's member (KIP-932): the consumer-protocol machine speaking
//! ShareGroupHeartbeat, on a virtual clock, every answer scripted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kcon_core::coordinator::FoundCoordinator;
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, GroupProtocol, RequestFailure, RequestId, Target, TopicId};

use super::*;
use crate::config::GroupConfig;
use crate::machine::{GroupEvent, MemberState};
use crate::member::Member;
use crate::messages::{GroupRequest, GroupResponse, Outgoing};

const A: TopicId = TopicId([0xa; 16]);

fn coordinator() -> Coordinator {
    Coordinator {
        id: 1,
        host: "h".into(),
        port: 9092,
    }
}

fn config() -> GroupConfig {
    let mut c = GroupConfig::new("g");
    c.group_protocol = GroupProtocol::Share;
    c.set("client.rack", "r").unwrap();
    c.validate().unwrap();
    c
}

fn answer(code: i16, epoch: i32, assignment: Option<&[i32]>) -> GroupResponse {
    GroupResponse::ShareGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
        error_code: code,
        error_message: (code != 0).then(|| "no".into()),
        member_id: None,
        member_epoch: epoch,
        heartbeat_interval_ms: 1000,
        assignment: assignment.map(|ps| BTreeMap::from([(A, ps.iter().copied().collect())])),
    })
}

type H = Harness<ConsumerGroupMachine>;

fn heartbeat(h: &mut H) -> (RequestId, ShareGroupHeartbeat) {
    match h.request() {
        Some(Outgoing {
            id,
            target,
            request: GroupRequest::ShareGroupHeartbeat(hb),
            ..
        }) => {
            assert_eq!(target, Target::Coordinator(coordinator()));
            (id, hb)
        }
        other => panic!("expected a share heartbeat, got {other:?}"),
    }
}

/// Subscribed to `a`, the coordinator found, its join out.
fn joining() -> (H, RequestId, ShareGroupHeartbeat) {
    let now = Instant::now();
    let mut h = Harness::new(ConsumerGroupMachine::new(config(), now, 7), now);
    h.machine.metadata_updated(
        now,
        &crate::assignor::TopicPartitions::new(),
        &BTreeMap::from([(A, "a".to_owned())]),
    );
    h.machine.subscribe(now, ["a"]);
    let find = h.request().expect("FindCoordinator");
    assert!(matches!(find.request, GroupRequest::FindCoordinator { .. }));
    h.answer(
        find.id,
        GroupResponse::FindCoordinator(FoundCoordinator {
            error_code: 0,
            error_message: None,
            coordinator: Some(coordinator()),
        }),
    );
    let (id, hb) = heartbeat(&mut h);
    (h, id, hb)
}

/// The join carries the generated member id, epoch 0, the rack and the names; the assignment
/// is taken at once (Joined, Assigned), and the next heartbeat waits for the interval and
/// repeats nothing: a share group's member tells no partitions owned, so taking some is
/// nothing to tell.
#[test]
fn joins_and_takes_its_assignment() {
    let (mut h, id, hb) = joining();
    assert_eq!(hb.member_epoch, 0);
    assert_eq!(hb.member_id.len(), 22, "{}", hb.member_id);
    assert_eq!(hb.rack_id.as_deref(), Some("r"));
    assert_eq!(hb.subscribed_topic_names, Some(vec!["a".to_owned()]));
    h.answer(id, answer(0, 1, Some(&[0, 1])));
    let events = h.events();
    assert!(
        matches!(&events[..], [GroupEvent::Joined { generation_id: 1, .. }, GroupEvent::Assigned { partitions, .. }] if partitions.len() == 2),
        "{events:?}"
    );
    assert_eq!(h.machine.state(), MemberState::Stable);
    assert!(h.request().is_none(), "no heartbeat before the interval");
    let waited = h.run_to_timeout();
    assert_eq!(waited, Duration::from_secs(1));
    let (_, hb) = heartbeat(&mut h);
    assert_eq!(hb.member_epoch, 1);
    assert_eq!(hb.rack_id, None);
    assert_eq!(hb.subscribed_topic_names, None);
}

/// A partition taken away is revoked (the share consumer acknowledges what it holds of it,
/// then says done); nothing is told to the coordinator meanwhile but the heartbeats.
#[test]
fn a_smaller_assignment_revokes() {
    let (mut h, id, _) = joining();
    h.answer(id, answer(0, 1, Some(&[0, 1])));
    h.events();
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    h.answer(id, answer(0, 2, Some(&[1])));
    let revocation = match &h.events()[..] {
        [
            GroupEvent::Joined { .. },
            GroupEvent::Revoked { id, partitions },
        ] if partitions.len() == 1 && partitions[0].partition == 0 => *id,
        other => panic!("{other:?}"),
    };
    h.machine.revocation_done(h.now, revocation);
    assert!(matches!(
        &h.events()[..],
        [GroupEvent::Assigned { partitions, .. }] if partitions.is_empty()
    ));
    assert_eq!(h.machine.assignment().len(), 1);
}

/// Fenced (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID): everything is lost and the member joins
/// again with epoch 0 and the same id.
#[test]
fn fencing_rejoins() {
    for code in [110, 25] {
        let (mut h, id, hb) = joining();
        h.answer(id, answer(0, 3, Some(&[0])));
        h.events();
        h.run_to_timeout();
        let (id, _) = heartbeat(&mut h);
        h.answer(id, answer(code, -1, None));
        assert!(matches!(&h.events()[..], [GroupEvent::Lost { .. }]));
        let (_, again) = heartbeat(&mut h);
        assert_eq!(again.member_epoch, 0);
        assert_eq!(again.member_id, hb.member_id);
        assert!(again.subscribed_topic_names.is_some());
    }
}

/// Close revokes, waits for the share consumer, then leaves with epoch -1.
#[test]
fn close_leaves_with_epoch_minus_one() {
    let (mut h, id, _) = joining();
    h.answer(id, answer(0, 1, Some(&[0])));
    h.events();
    h.machine.close(h.now);
    let revocation = match &h.events()[..] {
        [GroupEvent::Revoked { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    h.machine.revocation_done(h.now, revocation);
    let (id, leave) = heartbeat(&mut h);
    assert_eq!(leave.member_epoch, LEAVE_EPOCH);
    assert_eq!(leave.subscribed_topic_names, None);
    h.answer(id, answer(0, -1, None));
    assert!(matches!(&h.events()[..], [GroupEvent::Closed]));
    assert!(h.machine.is_terminated());
}

/// The errors no retry fixes end the member, naming ShareGroupHeartbeat; a broker without it
/// fails the first join, saying what a share consumer needs.
#[test]
fn fatal_errors_name_the_share_api() {
    for code in [30, 29, 81, 42, 35] {
        let (mut h, id, _) = joining();
        h.answer(id, answer(code, -1, None));
        match &h.events()[..] {
            [GroupEvent::Fatal(e)] => {
                let text = e.to_string();
                assert!(text.contains("ShareGroupHeartbeat"), "{code}: {text}");
                if code == 35 {
                    assert!(text.contains("KIP-932"), "{text}");
                }
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(h.machine.state(), MemberState::Failed);
    }
    let (mut h, id, _) = joining();
    h.fail(
        id,
        RequestFailure::fatal("broker 1 (127.0.0.1:9092) does not offer ShareGroupHeartbeat"),
    );
    match &h.events()[..] {
        [GroupEvent::Fatal(e)] => assert!(e.to_string().contains("share consumer"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A consumer group's answer to a share group's heartbeat is no answer: heartbeat again after
/// a backoff.
#[test]
fn an_answer_of_the_other_protocol_is_refused() {
    let (mut h, id, _) = joining();
    h.answer(
        id,
        GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
            error_code: 0,
            error_message: None,
            member_id: None,
            member_epoch: 1,
            heartbeat_interval_ms: 1000,
            assignment: None,
        }),
    );
    assert!(h.events().is_empty());
    assert_eq!(h.machine.member_epoch(), 0);
    h.run_to_timeout();
    heartbeat(&mut h);
}

/// A share group has no static membership and its coordinator assigns alone.
#[test]
fn static_membership_and_assignors_are_refused() {
    let mut c = config();
    c.set("group.instance.id", "i").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("group.instance.id") && e.contains("share"),
        "{e}"
    );
    let mut c = config();
    c.set("session.timeout.ms", "10000").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("session.timeout.ms") && e.contains("share"),
        "{e}"
    );
}
