//! The consumer-protocol member on a virtual clock, every answer scripted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kcon_core::coordinator::FoundCoordinator;
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, Machine, RequestFailure, RequestId, Target, TopicId, TopicPartition};

use super::*;
use crate::config::GroupConfig;
use crate::machine::{GroupEvent, MemberState};
use crate::member::Member;
use crate::messages::{GroupRequest, GroupResponse, Outgoing};

const A: TopicId = TopicId([0xa; 16]);
const B: TopicId = TopicId([0xb; 16]);

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn coordinator() -> Coordinator {
    Coordinator {
        id: 1,
        host: "h".into(),
        port: 9092,
    }
}

fn config(extra: &[(&str, &str)]) -> GroupConfig {
    let mut c = GroupConfig::new("g");
    c.set("group.protocol", "consumer").unwrap();
    c.set("max.poll.interval.ms", "60000").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c.validate().unwrap();
    c
}

fn names() -> BTreeMap<TopicId, String> {
    BTreeMap::from([(A, "a".to_owned()), (B, "b".to_owned())])
}

fn assignment(parts: &[(TopicId, &[i32])]) -> TopicIdPartitions {
    parts
        .iter()
        .map(|(id, ps)| (*id, ps.iter().copied().collect()))
        .collect()
}

fn ok(epoch: i32, assignment: Option<TopicIdPartitions>) -> GroupResponse {
    GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
        error_code: 0,
        error_message: None,
        member_id: None,
        member_epoch: epoch,
        heartbeat_interval_ms: 1000,
        assignment,
    })
}

fn error(code: i16) -> GroupResponse {
    GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
        error_code: code,
        error_message: Some("no".into()),
        member_id: None,
        member_epoch: -1,
        heartbeat_interval_ms: 0,
        assignment: None,
    })
}

type H = Harness<ConsumerGroupMachine>;

/// A member subscribed to a and b whose coordinator is found, its join heartbeat out.
fn joining(extra: &[(&str, &str)]) -> (H, RequestId, ConsumerGroupHeartbeat) {
    let now = Instant::now();
    let mut h = Harness::new(ConsumerGroupMachine::new(config(extra), now, 7), now);
    h.machine
        .metadata_updated(now, &crate::assignor::TopicPartitions::new(), &names());
    h.machine.subscribe(now, ["b", "a"]);
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

fn heartbeat(h: &mut H) -> (RequestId, ConsumerGroupHeartbeat) {
    match h.request() {
        Some(Outgoing {
            id,
            target,
            request: GroupRequest::ConsumerGroupHeartbeat(hb),
            ..
        }) => {
            assert_eq!(target, Target::Coordinator(coordinator()));
            (id, hb)
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

/// Joined at epoch 1 with `parts`, every event drained.
fn member(parts: &[(TopicId, &[i32])]) -> H {
    let (mut h, id, _) = joining(&[]);
    h.answer(id, ok(1, Some(assignment(parts))));
    h.events();
    // The acknowledgement.
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(1, None));
    h
}

fn owned(h: &H) -> BTreeSet<TopicPartition> {
    h.machine.assignment().clone()
}

/// The join heartbeat says everything: epoch 0, the generated member id, the rebalance timeout,
/// the sorted names with an empty regex (what librdkafka's mock needs), nothing owned. The
/// answer's assignment is reconciled at once and acknowledged by the next heartbeat, which
/// repeats nothing unchanged.
#[test]
fn joins_reconciles_and_acknowledges() {
    let (mut h, id, hb) = joining(&[("group.remote.assignor", "uniform"), ("client.rack", "r")]);
    assert_eq!(hb.member_epoch, 0);
    assert_eq!(hb.member_id.len(), 22, "{}", hb.member_id);
    assert_eq!(hb.member_id, h.machine.member_id());
    assert_eq!(hb.rebalance_timeout_ms, 60_000);
    assert_eq!(
        hb.subscribed_topic_names,
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some(""));
    assert_eq!(hb.owned, Some(TopicIdPartitions::new()));
    assert_eq!(hb.server_assignor.as_deref(), Some("uniform"));
    assert_eq!(hb.rack_id.as_deref(), Some("r"));
    assert_eq!(h.machine.state(), MemberState::Joining);
    assert!(h.request().is_none(), "one heartbeat in flight at a time");

    h.answer(id, ok(3, Some(assignment(&[(A, &[0, 1]), (B, &[2])]))));
    let events = h.events();
    assert!(
        matches!(&events[..], [GroupEvent::Joined { generation_id: 3, leader: false, .. }, GroupEvent::Assigned { partitions, generation_id: 3 }]
            if *partitions == [tp("a", 0), tp("a", 1), tp("b", 2)]),
        "{events:?}"
    );
    assert_eq!(h.machine.generation().id, 3);
    assert_eq!(h.machine.state(), MemberState::Stable);
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.member_epoch, 3);
    assert_eq!(hb.owned, Some(assignment(&[(A, &[0, 1]), (B, &[2])])));
    assert_eq!(hb.subscribed_topic_names, None);
    assert_eq!(hb.subscribed_topic_regex, None);
    assert_eq!(hb.rebalance_timeout_ms, -1);
    assert_eq!(hb.server_assignor, None);
    h.answer(id, ok(3, None));
    assert!(h.events().is_empty());
    // Then at the coordinator's interval, saying nothing new.
    assert!(h.request().is_none());
    assert_eq!(h.run_to_timeout(), Duration::from_secs(1));
    let (_, hb) = heartbeat(&mut h);
    assert_eq!((hb.owned, hb.subscribed_topic_names), (None, None));
}

/// Partitions leave first: the new ones come only once the application gave the old ones up,
/// and the heartbeats meanwhile still report them owned.
#[test]
fn revokes_before_assigning() {
    let mut h = member(&[(A, &[0, 1])]);
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(2, Some(assignment(&[(A, &[1]), (B, &[0])]))));
    let events = h.events();
    let revocation = match &events[..] {
        [
            GroupEvent::Joined { .. },
            GroupEvent::Revoked { partitions, id },
        ] => {
            assert_eq!(*partitions, [tp("a", 0)]);
            *id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(h.machine.state(), MemberState::Revoking);
    assert_eq!(owned(&h), BTreeSet::from([tp("a", 0), tp("a", 1)]));
    h.run_to_timeout();
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.owned, None, "still owned until the application is done");
    h.answer(id, ok(2, None));
    assert!(h.events().is_empty());

    h.machine.revocation_done(h.now, revocation);
    let events = h.events();
    assert!(
        matches!(&events[..], [GroupEvent::Assigned { partitions, .. }] if *partitions == [tp("b", 0)]),
        "{events:?}"
    );
    let (_, hb) = heartbeat(&mut h);
    assert_eq!(hb.owned, Some(assignment(&[(A, &[1]), (B, &[0])])));
}

/// A topic id the member has no name for waits for a metadata lookup; the rest is assigned
/// meanwhile.
#[test]
fn unknown_topic_ids_are_looked_up() {
    let mut h = member(&[(A, &[0])]);
    let c = TopicId([0xc; 16]);
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(2, Some(assignment(&[(A, &[0]), (c, &[0, 1])]))));
    let lookup = h.request().expect("a lookup");
    assert!(
        matches!(&lookup.request, GroupRequest::TopicIds { topics, all: false } if topics.len() == 2)
    );
    assert_eq!(lookup.target, Target::Any);
    // Not in this answer either: asked again after a backoff.
    h.answer(lookup.id, GroupResponse::TopicIds(names()));
    assert!(
        !h.requests()
            .iter()
            .any(|o| matches!(o.request, GroupRequest::TopicIds { .. })),
        "not again at once"
    );
    assert_eq!(owned(&h), BTreeSet::from([tp("a", 0)]));
    let d = h.run_to_timeout();
    assert!(d <= Duration::from_secs(1), "{d:?}");
    let lookup = h
        .requests()
        .into_iter()
        .find(|o| matches!(o.request, GroupRequest::TopicIds { .. }))
        .expect("another lookup");
    h.answer(
        lookup.id,
        GroupResponse::TopicIds(BTreeMap::from([(c, "c".to_owned())])),
    );
    let events = h.events();
    assert!(
        events.iter().any(|e| matches!(e, GroupEvent::Assigned { partitions, .. } if *partitions == [tp("c", 0), tp("c", 1)])),
        "{events:?}"
    );
}

/// FENCED_MEMBER_EPOCH and UNKNOWN_MEMBER_ID: everything is lost (not revoked), and the member
/// joins again at once with epoch 0, the same member id and nothing owned.
#[test]
fn fencing_loses_everything_and_rejoins() {
    for code in [110, 25] {
        let mut h = member(&[(A, &[0, 1])]);
        let member_id = h.machine.member_id().to_owned();
        h.run_to_timeout();
        let (id, _) = heartbeat(&mut h);
        assert_eq!(h.machine.losses(), 0);
        h.answer(id, error(code));
        let events = h.events();
        assert!(
            matches!(&events[..], [GroupEvent::Lost { partitions }] if partitions.len() == 2),
            "{code}: {events:?}"
        );
        assert_eq!(h.machine.generation().id, -1);
        // What commits carry: offsets stored before this are not committed.
        assert_eq!(h.machine.losses(), 1);
        let (_, hb) = heartbeat(&mut h);
        assert_eq!(hb.member_epoch, 0);
        assert_eq!(hb.member_id, member_id);
        assert_eq!(hb.owned, Some(TopicIdPartitions::new()));
        assert!(hb.subscribed_topic_names.is_some());
    }
}

/// A join fenced again and again backs off instead of looping.
#[test]
fn a_refused_join_backs_off() {
    let (mut h, id, _) = joining(&[]);
    h.answer(id, error(25));
    assert!(h.request().is_none());
    let d = h.run_to_timeout();
    assert!(d >= Duration::from_millis(50), "{d:?}");
    heartbeat(&mut h);
}

/// The errors no retry fixes end the member with the coordinator's words.
#[test]
fn fatal_errors_end_the_member() {
    for code in [30, 29, 111, 81, 112, 128, 42, 82] {
        let mut h = member(&[(A, &[0])]);
        h.run_to_timeout();
        let (id, _) = heartbeat(&mut h);
        h.answer(id, error(code));
        let events = h.events();
        assert!(matches!(&events[0], GroupEvent::Lost { .. }), "{events:?}");
        match &events[1] {
            GroupEvent::Fatal(e) => {
                let text = e.to_string();
                assert!(text.contains("ConsumerGroupHeartbeat"), "{text}");
                assert!(text.contains("no"), "{text}");
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(h.machine.state(), MemberState::Failed);
        assert!(h.requests().is_empty());
        assert!(h.machine.poll_timeout().is_none());
    }
}

/// A broker without ConsumerGroupHeartbeat fails the member at its first join, saying so.
#[test]
fn a_broker_without_the_api_fails_fast() {
    let (mut h, id, _) = joining(&[]);
    h.fail(
        id,
        RequestFailure::fatal("broker 1 (127.0.0.1:9092) does not offer ConsumerGroupHeartbeat"),
    );
    match &h.events()[..] {
        [GroupEvent::Fatal(e)] => {
            let text = e.to_string();
            assert!(text.contains("group.protocol=consumer"), "{text}");
            assert!(
                text.contains("does not offer ConsumerGroupHeartbeat"),
                "{text}"
            );
            assert!(text.contains("127.0.0.1:9092"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(h.requests().is_empty());
}

/// A coordinator that lists ConsumerGroupHeartbeat but does not run the consumer protocol
/// (Apache Kafka 3.7 to 3.9 at their defaults) answers UNSUPPORTED_VERSION: the member fails at
/// its first join, naming the coordinator, what it said, and the broker setting that enables the
/// protocol.
#[test]
fn unsupported_version_fails_fast_naming_the_coordinator() {
    let (mut h, id, _) = joining(&[]);
    h.answer(id, error(35));
    match &h.events()[..] {
        [GroupEvent::Fatal(e)] => {
            let text = e.to_string();
            for part in [
                "ConsumerGroupHeartbeat answered UNSUPPORTED_VERSION (35)",
                "group.protocol=consumer",
                "broker 1 (h:9092): no",
                "group.coordinator.rebalance.protocols=classic,consumer",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.machine.state(), MemberState::Failed);
    assert!(h.requests().is_empty());
}

/// A moved coordinator or a lost connection: find it again, then a full heartbeat at the same
/// epoch; the partitions stay.
#[test]
fn coordinator_errors_rediscover() {
    for fail in [true, false] {
        let mut h = member(&[(A, &[0])]);
        h.run_to_timeout();
        let (id, _) = heartbeat(&mut h);
        if fail {
            h.fail(id, RequestFailure::retriable("connection reset"));
        } else {
            h.answer(id, error(16));
        }
        assert!(h.events().is_empty());
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
        // Found again at once, but the heartbeat that failed waits for its backoff
        // (retry.backoff.ms, ±20 %): finding the coordinator is not a heartbeat getting through.
        assert!(h.request().is_none(), "no heartbeat before the backoff");
        let waited = h.run_to_timeout();
        assert!(
            waited >= Duration::from_millis(80) && waited <= Duration::from_millis(120),
            "{waited:?}"
        );
        let (_, hb) = heartbeat(&mut h);
        assert_eq!(hb.member_epoch, 1);
        assert_eq!(hb.owned, Some(assignment(&[(A, &[0])])));
        assert!(hb.subscribed_topic_names.is_some());
        assert_eq!(owned(&h).len(), 1);
    }
}

/// Closing revokes everything, waits for the application, then leaves: epoch -1 for a dynamic
/// member, -2 with the instance id for a static one (its assignment is kept for it).
#[test]
fn close_revokes_then_leaves() {
    for (instance, epoch) in [(None, LEAVE_EPOCH), (Some("i"), STATIC_LEAVE_EPOCH)] {
        let extra: Vec<(&str, &str)> = instance
            .map(|i| ("group.instance.id", i))
            .into_iter()
            .collect();
        let (mut h, id, hb) = joining(&extra);
        assert_eq!(hb.instance_id.as_deref(), instance);
        h.answer(id, ok(1, Some(assignment(&[(A, &[0])]))));
        h.events();
        h.machine.close(h.now);
        let revocation = match &h.events()[..] {
            [GroupEvent::Revoked { id, partitions }] if partitions.len() == 1 => *id,
            other => panic!("{other:?}"),
        };
        // Still a member meanwhile: the acknowledgement of the assignment goes out.
        let (hid, hb) = heartbeat(&mut h);
        assert_eq!(hb.member_epoch, 1);
        h.answer(hid, ok(1, None));
        h.machine.revocation_done(h.now, revocation);
        let (lid, leave) = heartbeat(&mut h);
        assert_eq!(leave.member_epoch, epoch);
        assert_eq!(leave.instance_id.as_deref(), instance);
        assert_eq!(h.machine.state(), MemberState::Leaving);
        h.answer(lid, error(0));
        assert!(matches!(&h.events()[..], [GroupEvent::Closed]));
        assert!(h.machine.is_terminated());
        assert!(h.requests().is_empty());
    }
}

/// A member that never heartbeated leaves without a word.
#[test]
fn close_before_joining_sends_nothing() {
    let now = Instant::now();
    let mut h = Harness::new(ConsumerGroupMachine::new(config(&[]), now, 1), now);
    h.machine.close(now);
    assert!(matches!(&h.events()[..], [GroupEvent::Closed]));
    assert!(h.requests().is_empty());
}

/// No poll within max.poll.interval.ms: the partitions are lost, the member leaves (without
/// waiting for the answer), and rejoins at the next poll with epoch 0.
#[test]
fn poll_timeout_leaves_and_the_next_poll_rejoins() {
    let mut h = member(&[(A, &[0])]);
    let mut left = false;
    while h.machine.state() != MemberState::PollExpired {
        h.run_to_timeout();
        for out in h.requests() {
            if let GroupRequest::ConsumerGroupHeartbeat(hb) = &out.request {
                if hb.member_epoch == LEAVE_EPOCH {
                    left = true;
                } else {
                    h.answer(out.id, ok(1, None));
                }
            }
        }
    }
    let events = h.events();
    assert!(
        matches!(&events[..], [GroupEvent::Lost { .. }]),
        "{events:?}"
    );
    left |= h
        .requests()
        .iter()
        .any(|o| matches!(&o.request, GroupRequest::ConsumerGroupHeartbeat(hb) if hb.member_epoch == LEAVE_EPOCH));
    assert!(left, "a leave heartbeat");
    h.machine.application_polled(h.now);
    let (_, hb) = heartbeat(&mut h);
    assert_eq!(hb.member_epoch, 0);
}

/// A revocation the application never acknowledges ends in Lost after max.poll.interval.ms;
/// the member goes on.
#[test]
fn an_unacknowledged_revocation_is_lost() {
    let mut h = member(&[(A, &[0, 1])]);
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(2, Some(assignment(&[(A, &[1])]))));
    h.events();
    let deadline = h.now + Duration::from_secs(60);
    while h.now < deadline {
        h.run_to_timeout();
        for out in h.requests() {
            h.machine.application_polled(h.now);
            h.answer(out.id, ok(2, None));
        }
    }
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GroupEvent::Lost { partitions } if *partitions == [tp("a", 0)])),
        "{events:?}"
    );
    assert_eq!(owned(&h), BTreeSet::from([tp("a", 1)]));
}

/// A hostile coordinator: an interval of 0 is taken as the floor, not as "heartbeat in a loop";
/// an answer without a valid epoch changes nothing.
#[test]
fn hostile_answers_are_bounded() {
    let (mut h, id, _) = joining(&[]);
    h.answer(
        id,
        GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
            error_code: 0,
            error_message: None,
            member_id: Some("theirs".into()),
            member_epoch: 1,
            heartbeat_interval_ms: 0,
            assignment: Some(assignment(&[(A, &[0, -1])])),
        }),
    );
    assert_eq!(h.machine.member_id(), "theirs");
    h.events();
    let (id, _) = heartbeat(&mut h);
    h.answer(
        id,
        GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
            error_code: 0,
            error_message: None,
            member_id: None,
            member_epoch: 1,
            heartbeat_interval_ms: 1,
            assignment: None,
        }),
    );
    assert_eq!(h.machine.heartbeat_interval(), Duration::from_millis(10));
    assert!(h.run_to_timeout() >= Duration::from_millis(9));
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(-7, Some(TopicIdPartitions::new())));
    assert!(h.events().is_empty());
    assert_eq!(h.machine.generation().id, 1);
    assert_eq!(owned(&h).len(), 1);
}

/// A new subscription goes out at once, and only then.
#[test]
fn a_new_subscription_is_sent_at_once() {
    let mut h = member(&[(A, &[0])]);
    h.machine.subscribe(h.now, ["a"]);
    let (_, hb) = heartbeat(&mut h);
    assert_eq!(hb.subscribed_topic_names, Some(vec!["a".into()]));
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some(""));
}

/// A member subscribed by `regex` alone, its coordinator found, its join heartbeat out.
fn joining_by_regex(regex: &str) -> (H, RequestId, ConsumerGroupHeartbeat) {
    let now = Instant::now();
    let mut h = Harness::new(ConsumerGroupMachine::new(config(&[]), now, 7), now);
    h.machine
        .subscribe_with_regex(now, Vec::<String>::new(), Some(regex.to_owned()));
    let find = h.request().expect("FindCoordinator");
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

/// A regex subscription goes to the coordinator as it is, on the join (with an empty list of
/// names, as the Java client sends beside a `SubscriptionPattern`) and again, with the names,
/// whenever either changes; heartbeats in between carry neither. A rejoin after a fence sends
/// it again, and going back to names alone clears it with an empty regex.
#[test]
fn a_regex_goes_on_the_join_and_when_changed() {
    let (mut h, id, hb) = joining_by_regex("^t-.*");
    assert_eq!(hb.member_epoch, 0);
    assert_eq!(hb.subscribed_topic_names, Some(Vec::new()));
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some("^t-.*"));
    assert_eq!(h.machine.regex(), Some("^t-.*"));
    h.answer(id, ok(1, None));
    h.events();
    h.run_to_timeout();
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(
        (hb.subscribed_topic_names, hb.subscribed_topic_regex),
        (None, None)
    );
    h.answer(id, ok(1, None));

    // A new regex, with the same names: both go, at once.
    h.machine
        .subscribe_with_regex(h.now, Vec::<String>::new(), Some("^u-.*".to_owned()));
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.subscribed_topic_names, Some(Vec::new()));
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some("^u-.*"));
    h.answer(id, ok(1, None));

    // Fenced: the rejoin says everything again.
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    h.answer(id, error(110));
    h.events();
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.member_epoch, 0);
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some("^u-.*"));
    assert_eq!(hb.subscribed_topic_names, Some(Vec::new()));
    h.answer(id, ok(2, None));
    h.events();

    // Names alone: the regex is cleared with an empty one.
    h.machine.subscribe(h.now, ["a"]);
    let (_, hb) = heartbeat(&mut h);
    assert_eq!(hb.subscribed_topic_names, Some(vec!["a".into()]));
    assert_eq!(hb.subscribed_topic_regex.as_deref(), Some(""));
    assert_eq!(h.machine.regex(), None);
}

/// Names and a regex together go together; an empty regex is no regex, and neither names nor
/// a regex leaves the group.
#[test]
fn names_beside_a_regex_and_an_empty_subscription() {
    let now = Instant::now();
    let mut h = Harness::new(ConsumerGroupMachine::new(config(&[]), now, 7), now);
    h.machine
        .subscribe_with_regex(now, ["b", "a"], Some("^t-.*".to_owned()));
    assert_eq!(h.machine.state(), MemberState::Joining);
    h.machine
        .subscribe_with_regex(now, Vec::<String>::new(), Some(String::new()));
    assert_eq!(h.machine.state(), MemberState::Idle);
    assert_eq!(h.machine.regex(), None);

    let (mut h, _, _) = joining(&[]);
    h.machine
        .subscribe_with_regex(h.now, ["a", "b"], Some("^t-.*".to_owned()));
    // The join is still in flight: the change goes with the next heartbeat.
    assert!(h.request().is_none());
}

/// The coordinator assigns what a regex matched by topic id; the member, which cannot know
/// the names, asks for every topic's metadata to name them.
#[test]
fn a_regex_member_looks_every_topic_up() {
    let (mut h, id, _) = joining_by_regex("^t-.*");
    let c = TopicId([0xc; 16]);
    h.answer(id, ok(1, Some(assignment(&[(c, &[0, 1])]))));
    let lookup = h.request().expect("a lookup");
    assert!(
        matches!(&lookup.request, GroupRequest::TopicIds { topics, all: true } if topics.is_empty()),
        "{lookup:?}"
    );
    h.answer(
        lookup.id,
        GroupResponse::TopicIds(BTreeMap::from([(c, "t-c".to_owned())])),
    );
    let events = h.events();
    assert!(
        events.iter().any(|e| matches!(e, GroupEvent::Assigned { partitions, .. } if *partitions == [tp("t-c", 0), tp("t-c", 1)])),
        "{events:?}"
    );
}

/// INVALID_REGULAR_EXPRESSION ends the member, naming the regex and the coordinator's reason.
#[test]
fn an_invalid_regex_is_fatal_and_named() {
    let (mut h, id, _) = joining_by_regex("^t-(");
    h.answer(
        id,
        GroupResponse::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatAnswer {
            error_code: 128,
            error_message: Some(
                "SubscribedTopicRegex `^t-(` is not a valid regular expression: missing )".into(),
            ),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }),
    );
    match &h.events()[..] {
        [GroupEvent::Fatal(e)] => {
            let text = e.to_string();
            for part in [
                "ConsumerGroupHeartbeat",
                "INVALID_REGULAR_EXPRESSION (128)",
                "\"^t-(\"",
                "missing )",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.machine.state(), MemberState::Failed);
    assert!(h.requests().is_empty());
}

/// UNRELEASED_INSTANCE_ID (another live member holds the instance id) and FENCED_INSTANCE_ID
/// (a newer member took it over) end the member naming its `group.instance.id`, the setting
/// to change, beside the coordinator's words.
#[test]
fn instance_id_errors_name_the_instance_id() {
    for code in [111, 82] {
        let (mut h, id, _) = joining(&[("group.instance.id", "inst-1")]);
        h.answer(id, error(code));
        match &h.events()[..] {
            [GroupEvent::Fatal(e)] => {
                let text = e.to_string();
                for part in [
                    "ConsumerGroupHeartbeat",
                    "group.instance.id \"inst-1\"",
                    "no",
                ] {
                    assert!(text.contains(part), "{code}, {part}: {text}");
                }
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(h.machine.state(), MemberState::Failed);
    }
}

/// Revokes a0 at epoch 1 (the target moved on): returns the harness with the revocation
/// acknowledged and its heartbeat out.
fn revoked_a0() -> (H, RequestId) {
    let mut h = member(&[(A, &[0, 1])]);
    h.run_to_timeout();
    let (id, _) = heartbeat(&mut h);
    // Told to give a0 up, at its epoch (others hold what it is due next).
    h.answer(id, ok(1, Some(assignment(&[(A, &[1])]))));
    let revocation = match &h.events()[..] {
        [GroupEvent::Joined { .. }, GroupEvent::Revoked { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    h.machine.revocation_done(h.now, revocation);
    h.events();
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.owned, Some(assignment(&[(A, &[1])])));
    (h, id)
}

/// After giving partitions up, a member the coordinator keeps at its old epoch (librdkafka's
/// mock cluster does until what it is due is free) asks again after a backoff, sooner each
/// time than the interval, until an answer moves it on; then the interval again.
#[test]
fn a_member_held_at_its_epoch_after_a_revocation_asks_again_soon() {
    let (mut h, id) = revoked_a0();
    h.answer(id, ok(1, None));
    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(h.run_to_timeout());
        let (id, hb) = heartbeat(&mut h);
        assert_eq!(hb.member_epoch, 1);
        h.answer(id, ok(1, None));
    }
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(1)),
        "{waits:?}"
    );
    assert!(waits[0] < waits[2], "the pause grows: {waits:?}");
    // Moved on, with what it was due.
    let d = h.run_to_timeout();
    assert!(d < Duration::from_secs(1), "{d:?}");
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(2, Some(assignment(&[(A, &[1]), (B, &[0])]))));
    assert!(h.events().iter().any(
        |e| matches!(e, GroupEvent::Assigned { partitions, .. } if *partitions == [tp("b", 0)])
    ));
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(2, None));
    assert_eq!(h.run_to_timeout(), Duration::from_secs(1));
}

/// A coordinator that moves the member on as soon as it reported the revocation (Kafka's way)
/// sees heartbeats at the interval.
#[test]
fn a_member_moved_on_after_a_revocation_keeps_the_interval() {
    let (mut h, id) = revoked_a0();
    h.answer(id, ok(2, None));
    assert_eq!(h.run_to_timeout(), Duration::from_secs(1));
}

/// A join the coordinator holds at epoch 0 is asked again after a growing backoff, in full,
/// without taking anything from the answer.
#[test]
fn a_join_held_at_epoch_zero_is_asked_again() {
    let (mut h, id, _) = joining(&[]);
    h.answer(id, ok(0, None));
    assert!(h.events().is_empty());
    assert_eq!(h.machine.state(), MemberState::Joining);
    let first = h.run_to_timeout();
    let (id, hb) = heartbeat(&mut h);
    assert_eq!(hb.member_epoch, 0);
    assert!(hb.subscribed_topic_names.is_some() && hb.rebalance_timeout_ms > 0);
    h.answer(id, ok(0, None));
    let second = h.run_to_timeout();
    assert!(
        first < second && second < Duration::from_secs(1),
        "{first:?} {second:?}"
    );
    let (id, _) = heartbeat(&mut h);
    h.answer(id, ok(3, Some(assignment(&[(A, &[0])]))));
    assert_eq!(h.machine.generation().id, 3);
}

/// A coordinator that hangs up on every heartbeat, while FindCoordinator finds it at once: the
/// heartbeats back off exponentially to retry.backoff.max.ms (each lookup leaves that alone),
/// the failure is reported once it has lasted, and the heartbeat that gets through starts the
/// backoff over and reports the recovery.
#[test]
fn heartbeats_the_coordinator_hangs_up_on_back_off_across_lookups_and_are_reported() {
    let mut h = member(&[(A, &[0])]);
    let hang_up = RequestFailure {
        retriable: true,
        reason: "broker 1 (h:9092): the broker closed the connection".into(),
        broker: Some("broker 1 (h:9092)".into()),
        version: Some(1),
        cause: None,
    };
    let t0 = h.now;
    let mut sent = Vec::new();
    let mut reports = Vec::new();
    let id = loop {
        let out = match h.request() {
            Some(out) => out,
            None => {
                h.run_to_timeout();
                continue;
            }
        };
        match out.request {
            GroupRequest::FindCoordinator { .. } => h.answer(
                out.id,
                GroupResponse::FindCoordinator(FoundCoordinator {
                    error_code: 0,
                    error_message: None,
                    coordinator: Some(coordinator()),
                }),
            ),
            GroupRequest::ConsumerGroupHeartbeat(_) if h.now < t0 + Duration::from_secs(10) => {
                assert!(sent.len() < 100, "100 heartbeats in {:?}", h.now - t0);
                sent.push(h.now);
                h.fail(out.id, hang_up.clone());
            }
            GroupRequest::ConsumerGroupHeartbeat(_) => break out.id,
            other => panic!("unexpected {other:?}"),
        }
        reports.extend(h.events().into_iter().filter_map(|e| match e {
            GroupEvent::PersistentFailure(r) => Some(r),
            _ => None,
        }));
    };
    // The first heartbeat goes a heartbeat interval after the last answer; from the first
    // failure on, each waits for the backoff.
    let waits: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, w) in waits.iter().enumerate() {
        let nominal = (100u64 << i.min(10)).min(1000);
        let (low, high) = (nominal * 8 / 10, (nominal * 12 / 10).min(1000));
        assert!(
            *w >= Duration::from_millis(low) && *w <= Duration::from_millis(high),
            "wait {i} is {w:?}: {waits:?}"
        );
    }
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        (reports[0].api, reports[0].version, reports[0].recovered),
        (
            kcon_codec::kafka_protocol::messages::ApiKey::ConsumerGroupHeartbeat,
            Some(1),
            false
        )
    );
    h.answer(id, ok(1, None));
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GroupEvent::PersistentFailure(r) if r.recovered)),
        "{events:?}"
    );
    assert_eq!(owned(&h).len(), 1, "the member kept its partition");
}
