//! Whole consumers in simulation: the four machines a `Consumer` drives, wired as it wires
//! them, against a model coordinator and cluster on a virtual clock (kcon-sim). Each test is a
//! rebalance path that otherwise runs only against real brokers, in wall time.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon_core::TopicPartition;

use super::{App, ClientConfig, Happened, World};
use kcon::consumer::Hook;

const TOPIC: &str = "t";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// A world with `TOPIC` of `partitions` partitions, each holding `records`.
fn world(partitions: i32, records: usize) -> World {
    let mut w = World::new(&[(TOPIC, partitions)]);
    w.produce(TOPIC, records);
    w
}

#[test]
fn a_single_consumer_reads_everything_and_commits_it() {
    let mut w = world(4, 500);
    let a = w.start(ClientConfig::new("range"), &[TOPIC], App::default());
    w.settle(secs(60));
    w.assert_every_record_processed();
    w.assert_in_order(a);
    assert_eq!(w.clients[a].owned().len(), 4);
    // The pool was told to keep the subscribed topic's metadata fresh.
    assert_eq!(*w.clients[a].tracked(), BTreeSet::from([TOPIC.to_owned()]));
}

/// A consumer blocked in a receiving call with nothing to read wakes for its own timers only
/// (telling the member the application is alive every half `max.poll.interval.ms`, not every
/// second): its member stays in the group well past `max.poll.interval.ms`.
#[test]
fn a_consumer_waiting_for_records_stays_in_the_group_past_max_poll_interval() {
    let mut w = world(4, 0);
    let a = w.start(ClientConfig::new("range"), &[TOPIC], App::default());
    w.settle(secs(60));
    let generation = w.clients[a].group().generation().id;
    let calls = w.clients[a].listener_calls().len();
    // max.poll.interval.ms is 30 s in the simulation.
    w.run_for(secs(100));
    assert!(w.is_settled(), "{}", w.dump(30));
    assert_eq!(w.clients[a].group().generation().id, generation);
    assert_eq!(w.clients[a].listener_calls().len(), calls, "{}", w.dump(30));
    w.produce(TOPIC, 10);
    w.settle(secs(10));
    w.assert_every_record_processed();
}

/// An owner above the consumer (partition streams, a record processor) stores what it has
/// processed itself and hears of partitions leaving before the listener does (so before the
/// revocation's commit); what it processed is committed all the same.
#[test]
fn an_owner_above_the_consumer_hears_partitions_leave_before_the_listener() {
    let app = App {
        stores: true,
        ..App::default()
    };
    let w = two_members("range", app);
    w.assert_every_record_processed();
    let revoked = hooks(&w, 0, Hook::Revoked);
    assert!(!revoked.is_empty(), "{}", w.dump(30));
    for partitions in &revoked {
        let told = w.clients[0]
            .log()
            .iter()
            .position(|(_, h)| matches!(h, Happened::Leaving(ps) if ps == partitions));
        let called = w.clients[0].log().iter().position(
            |(_, h)| matches!(h, Happened::Listener(Hook::Revoked, ps) if ps == partitions),
        );
        assert!(
            told.is_some() && told < called,
            "{partitions:?}: leaving {told:?}, on_revoked {called:?}\n{}",
            w.dump(30)
        );
    }
}

/// The listener calls of consumer `i` with `hook`.
fn hooks(w: &World, i: usize, hook: Hook) -> Vec<Vec<TopicPartition>> {
    w.clients[i]
        .listener_calls()
        .into_iter()
        .filter(|(h, _)| *h == hook)
        .map(|(_, ps)| ps)
        .collect()
}

/// Starts consumer 0 alone and lets it take everything, then consumer 1 joins; both settle.
fn two_members(strategy: &str, app: App) -> World {
    let mut w = world(4, 300);
    w.start(ClientConfig::new(strategy), &[TOPIC], app.clone());
    w.settle(secs(60));
    w.produce(TOPIC, 300);
    w.start(ClientConfig::new(strategy), &[TOPIC], app);
    w.settle(secs(120));
    w
}

#[test]
fn eager_join_and_leave_hand_every_partition_over_once() {
    let mut w = two_members("range", App::default());
    // Eager: the first member gave everything up, then got its half back.
    assert_eq!(hooks(&w, 0, Hook::Revoked).len(), 1);
    assert_eq!(w.clients[0].owned().len(), 2);
    assert_eq!(w.clients[1].owned().len(), 2);
    w.produce(TOPIC, 100);
    w.close(1);
    w.settle(secs(120));
    assert_eq!(w.clients[0].owned().len(), 4);
    w.assert_every_record_processed();
}

#[test]
fn cooperative_join_and_leave_revoke_only_what_moves() {
    let mut w = two_members("cooperative-sticky", App::default());
    // Only the two partitions that moved were revoked; the other two never stopped.
    let revoked = hooks(&w, 0, Hook::Revoked);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].len(), 2);
    assert_eq!(w.clients[1].owned().len(), 2);
    w.produce(TOPIC, 100);
    w.close(1);
    w.settle(secs(120));
    // The leaving member's partitions are added to the one that stays, nothing revoked from it.
    assert_eq!(hooks(&w, 0, Hook::Revoked).len(), 1);
    assert_eq!(w.clients[0].owned().len(), 4);
    w.assert_every_record_processed();
}

#[test]
fn a_slow_on_revoked_holds_the_partitions_until_it_returns() {
    let app = App {
        on_revoked: secs(3),
        ..App::default()
    };
    let w = two_members("cooperative-sticky", app);
    let log = &w.clients[0].log();
    let returned = log
        .iter()
        .find(|(_, h)| matches!(h, Happened::HookReturned(Hook::Revoked)))
        .map(|(at, _)| *at)
        .expect("on_revoked returned");
    let called = log
        .iter()
        .find(|(_, h)| matches!(h, Happened::Listener(Hook::Revoked, _)))
        .map(|(at, _)| *at)
        .expect("on_revoked was called");
    assert!(returned.duration_since(called) >= secs(3));
    // The new member was given the moved partitions only after the hook returned (the
    // ownership invariant checked every step says they were never owned twice).
    let assigned = w.clients[1]
        .log()
        .iter()
        .find(|(_, h)| matches!(h, Happened::Listener(Hook::Assigned, ps) if !ps.is_empty()))
        .map(|(at, _)| *at)
        .expect("the new member got partitions");
    assert!(assigned > returned);
    w.assert_every_record_processed();
}

/// Whether consumer `i`'s log has a listener call with `hook`.
fn called(w: &World, i: usize, hook: Hook) -> bool {
    !hooks(w, i, hook).is_empty()
}

/// How many revocations consumer `i` acknowledged to its member.
fn acknowledged(w: &World, i: usize) -> usize {
    w.clients[i]
        .log()
        .iter()
        .filter(|(_, h)| matches!(h, Happened::RevocationDone))
        .count()
}

#[test]
fn a_receiving_call_cancelled_during_on_revoked_finishes_the_revocation_on_the_next_call() {
    let app = App {
        on_revoked: secs(1),
        ..App::default()
    };
    let mut w = world(4, 300);
    let a = w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        app.clone(),
    );
    w.settle(secs(60));
    w.start(ClientConfig::new("cooperative-sticky"), &[TOPIC], app);
    assert!(w.run_until(secs(60), |w| called(w, a, Hook::Revoked)));
    // The call that runs the hook is cancelled: the hook goes on, nothing else happens.
    w.go_away(a);
    w.run_for(secs(5));
    assert!(
        w.clients[a]
            .log()
            .iter()
            .any(|(_, h)| matches!(h, Happened::HookReturned(Hook::Revoked)))
    );
    assert_eq!(acknowledged(&w, a), 0, "acknowledged before the next call");
    w.come_back(a);
    w.settle(secs(120));
    assert_eq!(
        hooks(&w, a, Hook::Revoked).len(),
        1,
        "the listener ran once"
    );
    assert_eq!(acknowledged(&w, a), 1);
    w.assert_every_record_processed();
}

#[test]
fn a_paused_partition_kept_through_a_rebalance_stays_paused() {
    let mut w = world(4, 300);
    let a = w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        App::default(),
    );
    w.settle(secs(60));
    // Partition 0 is one the first member keeps under cooperative-sticky with two members.
    w.pause(a, &tp(0));
    w.produce(TOPIC, 100);
    let before = w.clients[a].processed.len();
    w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        App::default(),
    );
    w.run_for(secs(30));
    assert!(w.clients[a].owned().contains(&tp(0)), "{}", w.dump(20));
    assert!(w.clients[a].consumer().paused().contains(&tp(0)));
    let of_0 = |w: &World| {
        w.clients[a].processed[before..]
            .iter()
            .filter(|(p, _)| *p == tp(0))
            .count()
    };
    assert_eq!(of_0(&w), 0, "records of a paused partition were processed");
    w.resume(a, &tp(0));
    w.settle(secs(60));
    assert_eq!(of_0(&w), 100);
    w.assert_every_record_processed();
}

#[test]
fn partitions_lost_by_a_member_cut_off_are_not_committed_and_move_on() {
    let mut w = world(4, 300);
    let a = w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        App::default(),
    );
    let b = w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        App::default(),
    );
    w.settle(secs(60));
    // Cut off past its session: the coordinator gives its partitions to the other member while
    // it still believes it owns them (the classic protocol cannot tell it sooner).
    w.strict_ownership = false;
    w.isolate(a, secs(10));
    w.produce(TOPIC, 100);
    assert!(w.run_until(secs(60), |w| called(w, a, Hook::Lost)));
    let lost = hooks(&w, a, Hook::Lost).concat();
    assert!(!lost.is_empty());
    // Nothing of what it lost was committed after the loss.
    let lost_at = w.clients[a]
        .log()
        .iter()
        .find(|(_, h)| matches!(h, Happened::Listener(Hook::Lost, _)))
        .map(|(at, _)| *at)
        .expect("a loss");
    assert!(
        w.commits
            .iter()
            .filter(|(at, c, _)| *c == a && *at > lost_at)
            .all(|(_, _, offsets)| lost.iter().all(|tp| !offsets.contains_key(tp))),
        "a lost partition was committed"
    );
    w.strict_ownership = true;
    w.settle(secs(120));
    assert_eq!(w.clients[a].owned().len() + w.clients[b].owned().len(), 4);
    w.assert_every_record_processed();
}

#[test]
fn a_close_during_a_revocation_finishes_it_then_gives_everything_up() {
    let app = App {
        on_revoked: secs(2),
        ..App::default()
    };
    let mut w = world(4, 300);
    let a = w.start(
        ClientConfig::new("cooperative-sticky"),
        &[TOPIC],
        app.clone(),
    );
    w.settle(secs(60));
    let b = w.start(ClientConfig::new("cooperative-sticky"), &[TOPIC], app);
    assert!(w.run_until(secs(60), |w| called(w, a, Hook::Revoked)));
    w.close(a);
    w.settle(secs(120));
    assert!(!w.clients[a].is_live(), "{}", w.dump(30));
    // The revocation under way, then the close's own for what was left: each partition once.
    let revoked: Vec<TopicPartition> = hooks(&w, a, Hook::Revoked).concat();
    assert_eq!(revoked.len(), 4, "{revoked:?}");
    assert_eq!(w.clients[b].owned().len(), 4);
    w.assert_every_record_processed();
}
