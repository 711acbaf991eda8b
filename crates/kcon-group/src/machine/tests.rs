//! The classic member on a virtual clock, every answer scripted: how its requests back off
//! when they keep failing, and what it reports.

use std::time::{Duration, Instant};

use kcon_codec::consumer_protocol::Assignment;
use kcon_core::Machine;
use kcon_core::coordinator::FoundCoordinator;
use kcon_core::failure::{REPORT_AFTER, REPORT_AFTER_TIME};
use kcon_core::harness::Harness;
use kcon_core::{Coordinator, RequestFailure, Target, TopicPartition};

use super::*;
use crate::config::GroupConfig;
use crate::messages::{GroupRequest, GroupResponse, JoinGroupAnswer};

type H = Harness<GroupMachine>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn coordinator() -> Coordinator {
    Coordinator {
        id: 1,
        host: "h".into(),
        port: 9092,
    }
}

fn found() -> GroupResponse {
    GroupResponse::FindCoordinator(FoundCoordinator {
        error_code: 0,
        error_message: None,
        coordinator: Some(coordinator()),
    })
}

/// The pool's failure when the coordinator closes the connection on a request.
fn hang_up(version: i16) -> RequestFailure {
    RequestFailure {
        retriable: true,
        reason: "broker 1 (h:9092): the broker closed the connection".into(),
        broker: Some("broker 1 (h:9092)".into()),
        version: Some(version),
        cause: None,
    }
}

/// A member subscribed to `t`, at the defaults (retry.backoff.ms 100, retry.backoff.max.ms
/// 1000).
fn member() -> H {
    let mut c = GroupConfig::new("g");
    c.set("max.poll.interval.ms", "60000").unwrap();
    c.validate().unwrap();
    let now = Instant::now();
    let mut h = Harness::new(GroupMachine::new(c, now, 7), now);
    h.machine.subscribe(now, ["t"]);
    h
}

/// Answers a FindCoordinator due now, if one is: the lookup works, whatever else fails.
fn find_if_asked(h: &mut H) -> Option<Outgoing> {
    let out = h.request()?;
    if matches!(out.request, GroupRequest::FindCoordinator { .. }) {
        h.answer(out.id, found());
        return h.request();
    }
    Some(out)
}

/// Moves the clock until the member sends a request other than FindCoordinator (answering
/// those), and returns it with the time it went out.
fn next_request(h: &mut H) -> (Instant, Outgoing) {
    for _ in 0..100 {
        if let Some(out) = find_if_asked(h) {
            return (h.now, out);
        }
        h.run_to_timeout();
    }
    panic!("no request in 100 timers");
}

fn joined(id: &str, generation: i32) -> GroupResponse {
    GroupResponse::JoinGroup(JoinGroupAnswer {
        error_code: 0,
        generation_id: generation,
        protocol_type: Some(PROTOCOL_TYPE.into()),
        protocol_name: Some("range".into()),
        leader: "the-leader".into(),
        member_id: id.into(),
        ..JoinGroupAnswer::default()
    })
}

fn synced(partitions: &[i32]) -> GroupResponse {
    let a = Assignment {
        partitions: partitions
            .iter()
            .map(|p| TopicPartition::new("t", *p))
            .collect(),
        user_data: None,
    };
    GroupResponse::SyncGroup {
        error_code: 0,
        protocol_type: None,
        protocol_name: None,
        assignment: a.encode(0),
    }
}

fn reports(events: &[GroupEvent]) -> Vec<PersistentFailure> {
    events
        .iter()
        .filter_map(|e| match e {
            GroupEvent::PersistentFailure(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Asserts the waits between tries grow as KIP-580's backoff does at the defaults: 100, 200,
/// 400, 800 ms, then 1 s, each ±20 % (and never above 1 s).
fn assert_backs_off(waits: &[Duration]) {
    for (i, w) in waits.iter().enumerate() {
        let nominal = (100u64 << i.min(10)).min(1000);
        let low = ms(nominal * 8 / 10);
        let high = ms((nominal * 12 / 10).min(1000));
        assert!(
            *w >= low && *w <= high,
            "wait {i} is {w:?}, not {low:?}..={high:?}: {waits:?}"
        );
    }
}

/// A coordinator that hangs up on every JoinGroup, while FindCoordinator finds it at once: the
/// JoinGroups back off exponentially to retry.backoff.max.ms (each lookup leaves the backoff
/// alone), the failure is reported once after it has lasted, and the join that finally works
/// starts the backoff over and reports the recovery.
#[test]
fn a_coordinator_hanging_up_on_join_group_gets_them_at_a_growing_interval() {
    let mut h = member();
    let t0 = h.now;
    let mut sent = Vec::new();
    let mut events = Vec::new();
    // 20 s of JoinGroups that the coordinator hangs up on.
    while h.now < t0 + Duration::from_secs(20) {
        let (at, out) = next_request(&mut h);
        assert!(matches!(out.request, GroupRequest::JoinGroup(_)), "{out:?}");
        assert!(
            sent.len() < 100,
            "100 JoinGroups in {:?}: they go at the pace of lookups",
            h.now - t0
        );
        assert_eq!(out.target, Target::Coordinator(coordinator()));
        sent.push(at);
        h.fail(out.id, hang_up(6));
        events.extend(h.events());
    }
    let waits: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_backs_off(&waits);
    // At most one a second once the backoff reached its max: 20 s hold at most 25 tries.
    assert!(sent.len() <= 25, "{} JoinGroups in 20 s", sent.len());
    let told = reports(&events);
    assert_eq!(told.len(), 1, "{told:?}");
    let r = &told[0];
    assert_eq!(
        (r.api, r.version, r.broker.as_deref(), r.recovered),
        (ApiKey::JoinGroup, Some(6), Some("broker 1 (h:9092)"), false)
    );
    assert_eq!(r.cause, "the broker closed the connection");
    assert!(
        r.failures >= REPORT_AFTER && r.failing_for >= REPORT_AFTER_TIME,
        "{r:?}"
    );
    assert_eq!(r.since, sent[0]);
    assert_eq!(h.machine.state(), MemberState::Joining);

    // The coordinator answers again: the member joins, and is told of the recovery.
    let (_, out) = next_request(&mut h);
    h.answer(out.id, joined("m-1", 1));
    let events = h.events();
    assert!(
        matches!(events[0], GroupEvent::PersistentFailure(ref r) if r.recovered && r.api == ApiKey::JoinGroup)
    );
    assert!(matches!(events[1], GroupEvent::Joined { .. }), "{events:?}");
    let (_, sync) = next_request(&mut h);
    assert!(matches!(sync.request, GroupRequest::SyncGroup(_)));
    h.answer(sync.id, synced(&[0]));
    assert_eq!(h.machine.state(), MemberState::Stable);
}

/// The backoff starts over only when JoinGroup itself is answered: a success in between (the
/// lookup, the next request finding the coordinator) changes nothing, an answer does.
#[test]
fn only_an_answered_join_group_starts_its_backoff_over() {
    let mut h = member();
    let mut sent = Vec::new();
    for _ in 0..4 {
        let (at, out) = next_request(&mut h);
        sent.push(at);
        h.fail(out.id, hang_up(6));
    }
    let (at, out) = next_request(&mut h);
    sent.push(at);
    let waits: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_backs_off(&waits);
    // REBALANCE_IN_PROGRESS is an answer: the JoinGroup works, and the member rejoins after a
    // backoff of its own.
    h.answer(
        out.id,
        GroupResponse::JoinGroup(JoinGroupAnswer {
            error_code: code::REBALANCE_IN_PROGRESS,
            ..JoinGroupAnswer::default()
        }),
    );
    let (_, out) = next_request(&mut h);
    let failed_at = h.now;
    h.fail(out.id, hang_up(6));
    let (at, _) = next_request(&mut h);
    let wait = at - failed_at;
    assert!(
        wait >= ms(80) && wait <= ms(120),
        "the backoff started over: {wait:?}"
    );
}

/// A coordinator that hangs up on every SyncGroup: each failure rejoins, after the SyncGroup's
/// own growing backoff, so a JoinGroup and a SyncGroup per lookup cannot loop fast.
#[test]
fn a_coordinator_hanging_up_on_sync_group_is_rejoined_at_a_growing_interval() {
    let mut h = member();
    let mut failed_at = Vec::new();
    let mut rejoined_at = Vec::new();
    for generation in 1..=6 {
        let (at, join) = next_request(&mut h);
        assert!(
            matches!(join.request, GroupRequest::JoinGroup(_)),
            "{join:?}"
        );
        if generation > 1 {
            rejoined_at.push(at);
        }
        h.answer(join.id, joined("m-1", generation));
        let (_, sync) = next_request(&mut h);
        assert!(
            matches!(sync.request, GroupRequest::SyncGroup(_)),
            "{sync:?}"
        );
        failed_at.push(h.now);
        h.fail(sync.id, hang_up(4));
    }
    let waits: Vec<Duration> = failed_at
        .iter()
        .zip(&rejoined_at)
        .map(|(f, r)| *r - *f)
        .collect();
    assert_backs_off(&waits);
}

/// Heartbeats that the coordinator hangs up on: the coordinator is found again at once, and
/// the next heartbeat waits for the heartbeats' growing backoff, not for the lookup.
#[test]
fn heartbeats_that_fail_back_off_though_the_coordinator_is_found_again() {
    let mut h = member();
    let (_, join) = next_request(&mut h);
    h.answer(join.id, joined("m-1", 1));
    let (_, sync) = next_request(&mut h);
    h.answer(sync.id, synced(&[0]));
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for _ in 0..6 {
        let (at, hb) = next_request(&mut h);
        assert!(matches!(hb.request, GroupRequest::Heartbeat(_)), "{hb:?}");
        sent.push(at);
        failed.push(h.now);
        h.fail(hb.id, hang_up(4));
    }
    // The first heartbeat goes heartbeat.interval.ms after the sync; every later one the
    // backoff after the previous failure.
    let waits: Vec<Duration> = failed
        .iter()
        .zip(&sent[1..])
        .map(|(f, s)| *s - *f)
        .collect();
    assert_backs_off(&waits);
    // An answered heartbeat starts the backoff over.
    let (_, hb) = next_request(&mut h);
    h.answer(hb.id, GroupResponse::Heartbeat { error_code: 0 });
    let (_, hb) = next_request(&mut h);
    let at = h.now;
    h.fail(hb.id, hang_up(4));
    let (next, _) = next_request(&mut h);
    let wait = next - at;
    assert!(wait >= ms(80) && wait <= ms(120), "{wait:?}");
}

/// Error answers that the member retries count as failures too (COORDINATOR_LOAD_IN_PROGRESS
/// for as long as the coordinator loads the group), and are reported once they last.
#[test]
fn a_coordinator_that_keeps_loading_is_reported() {
    let mut h = member();
    let t0 = h.now;
    let mut events = Vec::new();
    let mut tries = 0;
    while h.now < t0 + Duration::from_secs(8) {
        let (_, out) = next_request(&mut h);
        tries += 1;
        assert!(tries < 100, "100 JoinGroups in {:?}", h.now - t0);
        h.answer(
            out.id,
            GroupResponse::JoinGroup(JoinGroupAnswer {
                error_code: code::COORDINATOR_LOAD_IN_PROGRESS,
                ..JoinGroupAnswer::default()
            }),
        );
        events.extend(h.events());
    }
    assert!(tries <= 13, "{tries} JoinGroups in 8 s");
    let told = reports(&events);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].cause, "COORDINATOR_LOAD_IN_PROGRESS (14)");
    assert_eq!(told[0].broker.as_deref(), Some("broker 1 (h:9092)"));
}

/// A member subscribed again while its LeaveGroup (for an unsubscribe) is out: the leave goes
/// on, and once answered the member joins again with the new subscription, not dropping it.
#[test]
fn a_subscription_made_while_leaving_joins_once_the_leave_is_answered() {
    let mut h = member();
    let (_, join) = next_request(&mut h);
    h.answer(join.id, joined("m-1", 1));
    let (_, sync) = next_request(&mut h);
    h.answer(sync.id, synced(&[]));
    let now = h.now;
    h.machine.subscribe(now, Vec::<String>::new());
    let leave = h.request().expect("a LeaveGroup");
    assert!(
        matches!(leave.request, GroupRequest::LeaveGroup(_)),
        "{leave:?}"
    );
    h.machine.subscribe(now, ["u"]);
    assert!(
        h.request().is_none(),
        "nothing before the leave is answered"
    );
    h.answer(leave.id, GroupResponse::LeaveGroup { error_code: 0 });
    assert_eq!(h.machine.state(), MemberState::Joining);
    let (_, rejoin) = next_request(&mut h);
    match rejoin.request {
        GroupRequest::JoinGroup(j) => assert_eq!(j.member_id, "", "a new member"),
        other => panic!("not a JoinGroup: {other:?}"),
    }
    assert_eq!(h.machine.subscription().iter().collect::<Vec<_>>(), ["u"]);
}

/// A member closed while its FindCoordinator is out is done: the late answer, here a refusal
/// that would otherwise fail the member, changes nothing and reports nothing after `Closed`.
#[test]
fn an_answer_after_close_is_ignored() {
    let mut h = member();
    let lookup = h.request().expect("FindCoordinator");
    assert!(matches!(
        lookup.request,
        GroupRequest::FindCoordinator { .. }
    ));
    let now = h.now;
    h.machine.close(now);
    assert!(matches!(h.events().last(), Some(GroupEvent::Closed)));
    h.answer(
        lookup.id,
        GroupResponse::FindCoordinator(FoundCoordinator {
            error_code: code::GROUP_AUTHORIZATION_FAILED,
            error_message: None,
            coordinator: None,
        }),
    );
    let after = h.events();
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(h.machine.state(), MemberState::Closed);
    assert!(h.requests().is_empty());
}

/// An answer of another kind than the request's (no broker sends one; a driver could) fails
/// that request: the JoinGroup goes again after a backoff instead of waiting for ever.
#[test]
fn an_answer_of_the_wrong_kind_fails_the_request() {
    let mut h = member();
    let (first, join) = next_request(&mut h);
    assert!(matches!(join.request, GroupRequest::JoinGroup(_)));
    h.answer(join.id, GroupResponse::Heartbeat { error_code: 0 });
    assert!(h.machine.poll_timeout().is_some(), "nothing to wake it");
    let (at, again) = next_request(&mut h);
    assert!(
        matches!(again.request, GroupRequest::JoinGroup(_)),
        "{again:?}"
    );
    assert!(at > first, "again at once");
}
