//! Whole consumers under the consumer group protocol (KIP-848) in simulation: the four machines
//! a `Consumer` drives, against kcon-sim's KIP-848 coordinator model on a virtual clock. After
//! every step the world checks that no partition is owned by two consumers (nor held by two
//! members in the coordinator's view), that no commit passes a record nobody processed, and
//! that every accepted commit carries the member's current epoch and only partitions the
//! coordinator counts as that member's.

use std::time::Duration;

use crate::code;
use kcon_core::TopicPartition;

use super::{App, ClientConfig, Happened, World};
use kcon::consumer::Hook;

const TOPIC: &str = "t";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn world(partitions: i32, records: usize) -> World {
    let mut w = World::new(&[(TOPIC, partitions)]);
    w.produce(TOPIC, records);
    w
}

fn config() -> ClientConfig {
    ClientConfig::consumer_protocol()
}

fn hooks(w: &World, i: usize, hook: Hook) -> Vec<Vec<TopicPartition>> {
    w.clients[i]
        .listener_calls()
        .into_iter()
        .filter(|(h, _)| *h == hook)
        .map(|(_, ps)| ps)
        .collect()
}

fn called(w: &World, i: usize, hook: Hook) -> bool {
    !hooks(w, i, hook).is_empty()
}

#[test]
fn a_single_consumer_reads_everything_and_commits_it() {
    let mut w = world(4, 500);
    let a = w.start(config(), &[TOPIC], App::default());
    w.settle(secs(60));
    w.assert_every_record_processed();
    w.assert_in_order(a);
    assert_eq!(w.clients[a].owned().len(), 4);
    assert!(w.clients[a].group().generation().id > 0);
}

/// Members join one at a time, then leave: each change moves only the partitions that must
/// move, the members that keep theirs are never revoked them, and every record is processed.
#[test]
fn members_join_and_leave_moving_only_what_moves() {
    let mut w = world(6, 200);
    let a = w.start(config(), &[TOPIC], App::default());
    w.settle(secs(60));
    let b = w.start(config(), &[TOPIC], App::default());
    w.produce(TOPIC, 100);
    w.settle(secs(60));
    let c = w.start(config(), &[TOPIC], App::default());
    w.produce(TOPIC, 100);
    w.settle(secs(60));
    for i in [a, b, c] {
        assert_eq!(w.clients[i].owned().len(), 2, "{}", w.dump(30));
    }
    // a gave up 3 then 1; b gave up 1: each revocation exactly what moved.
    let revoked_a: usize = hooks(&w, a, Hook::Revoked).iter().map(Vec::len).sum();
    let revoked_b: usize = hooks(&w, b, Hook::Revoked).iter().map(Vec::len).sum();
    assert_eq!((revoked_a, revoked_b), (4, 1), "{}", w.dump(40));
    assert!(!called(&w, a, Hook::Lost) && !called(&w, b, Hook::Lost));

    w.close(b);
    w.produce(TOPIC, 100);
    w.settle(secs(60));
    // Nothing was taken from the members that stayed.
    assert_eq!(hooks(&w, a, Hook::Revoked).len(), 2);
    assert!(hooks(&w, c, Hook::Revoked).is_empty());
    assert_eq!(w.clients[a].owned().len() + w.clients[c].owned().len(), 6);
    w.assert_every_record_processed();
    // c never gave anything up: it read its partitions in order.
    w.assert_in_order(c);
}

/// The application holds a revocation (a slow `on_revoked`): the partitions reach the new
/// member only after the hook returned, while the partitions the member keeps are consumed
/// throughout.
#[test]
fn reconciliation_waits_for_a_revocation_the_application_holds() {
    let slow = App {
        on_revoked: secs(3),
        ..App::default()
    };
    let mut w = world(4, 300);
    let a = w.start(config(), &[TOPIC], slow);
    w.settle(secs(60));
    w.produce(TOPIC, 300);
    let b = w.start(config(), &[TOPIC], App::default());
    assert!(w.run_until(secs(60), |w| called(w, a, Hook::Revoked)));
    let processed = w.clients[a].processed.len();
    w.settle(secs(60));
    let log = &w.clients[a].log();
    let returned = log
        .iter()
        .find(|(_, h)| matches!(h, Happened::HookReturned(Hook::Revoked)))
        .map(|(at, _)| *at)
        .expect("on_revoked returned");
    let assigned = w.clients[b]
        .log()
        .iter()
        .find(|(_, h)| matches!(h, Happened::Listener(Hook::Assigned, ps) if !ps.is_empty()))
        .map(|(at, _)| *at)
        .expect("the new member got partitions");
    assert!(assigned > returned, "{}", w.dump(40));
    assert!(w.clients[a].processed.len() > processed);
    w.assert_every_record_processed();
}

/// Two members; `error` is injected into the heartbeat numbered `at` (counted from the start).
/// The group must settle again with every record processed, whatever the error and whenever
/// it comes; the invariants hold at every step.
fn inject_at(error: i16, at: u64) -> World {
    let mut w = world(4, 100);
    let a = w.start(config(), &[TOPIC], App::default());
    let b = w.start(config(), &[TOPIC], App::default());
    let reached = w.run_until(secs(60), |w| w.consumer_coordinator.heartbeats >= at);
    assert!(reached, "heartbeat {at} never came\n{}", w.dump(30));
    w.consumer_coordinator.inject(&[error]);
    w.produce(TOPIC, 50);
    w.run_for(secs(5));
    w.produce(TOPIC, 50);
    w.settle(secs(120));
    w.assert_every_record_processed();
    for i in [a, b] {
        assert!(w.clients[i].is_live(), "{}", w.dump(30));
    }
    w
}

/// Every retriable or fencing error a heartbeat can get, injected at each of the first
/// heartbeats of a group forming (joins, reconciliations, acknowledgements).
#[test]
fn every_recoverable_error_at_every_step() {
    for error in [
        code::FENCED_MEMBER_EPOCH,
        code::UNKNOWN_MEMBER_ID,
        code::NOT_COORDINATOR,
        code::COORDINATOR_NOT_AVAILABLE,
        code::COORDINATOR_LOAD_IN_PROGRESS,
        code::INVALID_REQUEST + 1000, // an error the member does not know: retried
    ] {
        for at in 0..14 {
            let w = inject_at(error, at);
            // From the third heartbeat on both members exist: the fence hits one of them,
            // which rejoins (the first two are the joins themselves).
            if at >= 2 && matches!(error, code::FENCED_MEMBER_EPOCH | code::UNKNOWN_MEMBER_ID) {
                assert_eq!(w.consumer_coordinator.fenced, 1, "{error}@{at}");
            }
        }
    }
}

/// The errors no retry fixes end the member that gets them (its receiving call says why);
/// the other member takes its partitions once its session ends, and processes everything.
#[test]
fn every_fatal_error_at_every_step() {
    for error in [
        code::GROUP_AUTHORIZATION_FAILED,
        code::UNRELEASED_INSTANCE_ID,
        code::GROUP_MAX_SIZE_REACHED,
        code::UNSUPPORTED_ASSIGNOR,
        code::INVALID_REGULAR_EXPRESSION,
        code::INVALID_REQUEST,
    ] {
        for at in 0..10 {
            let mut w = world(4, 100);
            w.start(config(), &[TOPIC], App::default());
            w.start(config(), &[TOPIC], App::default());
            assert!(w.run_until(secs(60), |w| w.consumer_coordinator.heartbeats >= at));
            w.consumer_coordinator.inject(&[error]);
            // The failed member's partitions wait for its session (10 s) to end.
            w.strict_ownership = false;
            w.run_for(secs(15));
            w.strict_ownership = true;
            w.settle(secs(120));
            let failed: Vec<usize> = (0..2).filter(|i| !w.clients[*i].is_live()).collect();
            assert_eq!(failed.len(), 1, "{error}@{at}\n{}", w.dump(30));
            let f = failed[0];
            assert!(
                w.clients[f].log().iter().any(
                    |(_, h)| matches!(h, Happened::Error(e) if e.contains("ConsumerGroupHeartbeat"))
                ),
                "{error}@{at}: no error naming the API\n{}",
                w.dump(30)
            );
            w.assert_every_record_processed();
        }
    }
}

/// A member cut off past its session: the coordinator fences it and hands its partitions on
/// while it still believes it owns them (strict ownership is off for that window); nothing it
/// commits afterwards is accepted, it learns it was fenced, rejoins, and the group settles.
#[test]
fn a_member_cut_off_past_its_session_is_fenced_and_rejoins() {
    let mut w = world(4, 300);
    let a = w.start(config(), &[TOPIC], App::default());
    let b = w.start(config(), &[TOPIC], App::default());
    w.settle(secs(60));
    w.strict_ownership = false;
    w.isolate(a, secs(15));
    w.produce(TOPIC, 100);
    assert!(w.run_until(secs(60), |w| called(w, a, Hook::Lost)));
    assert_eq!(w.consumer_coordinator.expired, 1);
    w.strict_ownership = true;
    w.settle(secs(120));
    assert_eq!(w.clients[a].owned().len() + w.clients[b].owned().len(), 4);
    w.assert_every_record_processed();
}

/// The application stops calling past `max.poll.interval.ms`: its member leaves (its
/// partitions lost) and the other takes them; back, it rejoins.
#[test]
fn a_member_whose_application_stops_polling_leaves_and_rejoins() {
    let mut w = world(4, 300);
    let a = w.start(config(), &[TOPIC], App::default());
    let b = w.start(config(), &[TOPIC], App::default());
    w.settle(secs(60));
    w.go_away(a);
    w.produce(TOPIC, 100);
    assert!(w.run_until(secs(60), |w| w.clients[b].owned().len() == 4));
    w.come_back(a);
    w.settle(secs(120));
    assert!(called(&w, a, Hook::Lost));
    assert_eq!(w.clients[a].owned().len(), 2);
    w.assert_every_record_processed();
}

/// A static member closes (leaving with epoch -2) and a new consumer with its instance id
/// comes back within the session: it gets the same partitions, and the other member sees no
/// change at all.
#[test]
fn a_static_member_comes_back_to_its_partitions() {
    let mut w = world(4, 300);
    let a = w.start(
        config().set("group.instance.id", "static-a"),
        &[TOPIC],
        App::default(),
    );
    let b = w.start(
        config().set("group.instance.id", "static-b"),
        &[TOPIC],
        App::default(),
    );
    w.settle(secs(60));
    let b_owned = w.clients[b].owned().clone();
    let a_calls = w.clients[a].listener_calls();
    w.close(b);
    assert!(w.run_until(secs(30), |w| !w.clients[b].is_live()));
    w.produce(TOPIC, 100);
    let b2 = w.start(
        config().set("group.instance.id", "static-b"),
        &[TOPIC],
        App::default(),
    );
    w.settle(secs(60));
    assert_eq!(*w.clients[b2].owned(), b_owned, "{}", w.dump(30));
    assert_eq!(w.clients[a].listener_calls(), a_calls, "{}", w.dump(30));
    w.assert_every_record_processed();
}

/// A regex subscription: the consumers send the pattern itself (not the names it matches) and
/// the coordinator matches it; they share what it matches and nothing else, take up a topic
/// created later that it matches, and process every record.
#[test]
fn a_regex_subscription_takes_up_a_topic_created_later() {
    let mut w = World::new(&[("rx-a", 4), ("other", 2)]);
    w.produce("rx-a", 100);
    let a = w.start(config(), &["^rx-.*"], App::default());
    let b = w.start(config(), &["^rx-.*"], App::default());
    w.settle(secs(60));
    let owned = |w: &World| -> Vec<TopicPartition> {
        let mut all: Vec<TopicPartition> = [a, b]
            .iter()
            .flat_map(|i| w.clients[*i].owned().iter().cloned())
            .collect();
        all.sort();
        all
    };
    let rx_a: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("rx-a", p)).collect();
    assert_eq!(owned(&w), rx_a, "{}", w.dump(30));
    assert_eq!(
        w.consumer_coordinator.regexes_received,
        ["^rx-.*", "^rx-.*"],
        "the pattern went once per join, and nothing else as a regex"
    );

    w.create_topic("rx-b", 2);
    w.produce("rx-b", 100);
    w.produce("rx-a", 50);
    w.settle(secs(60));
    let mut expected = rx_a.clone();
    expected.extend((0..2).map(|p| TopicPartition::new("rx-b", p)));
    assert_eq!(owned(&w), expected, "{}", w.dump(30));
    for i in [a, b] {
        assert!(w.clients[i].owned().len() == 3, "{}", w.dump(30));
        assert!(w.clients[i].consumer().subscription().contains("rx-b"));
    }
    assert_eq!(w.consumer_coordinator.regexes_received.len(), 2);
    w.assert_every_record_processed();
}

/// A regex the coordinator cannot compile ends the consumer with an error naming the regex
/// and the coordinator's reason.
#[test]
fn an_invalid_regex_is_fatal() {
    let mut w = world(2, 10);
    // Valid for kcon's own reading, not for the coordinator's whole-name reading.
    let a = w.start(config(), &["^t)|(x"], App::default());
    w.run_for(secs(10));
    assert!(!w.clients[a].is_live(), "{}", w.dump(30));
    let errors: Vec<&String> = w.clients[a]
        .log()
        .iter()
        .filter_map(|(_, h)| match h {
            Happened::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("INVALID_REGULAR_EXPRESSION (128)")
                && e.contains("^t)|(x")
                && e.contains("not a valid regular expression")),
        "{errors:?}\n{}",
        w.dump(30)
    );
}
