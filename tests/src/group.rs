//! kcon group members for tests against real brokers (`tests/group_kafka.rs`,
//! `tests/group_mock.rs`, `tests/group_mixed.rs`): each [`Member`] runs a
//! [`GroupMember`](kcon_group::GroupMember) on its own pool (as separate processes would),
//! acknowledges revocations at once, keeps polling, and records what it was told, so that tests
//! can check that every partition is owned exactly once and who was revoked what.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon_codec::kafka_protocol::messages::create_topics_request::CreatableTopic;
use kcon_codec::kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_group::{GroupConfig, GroupEvent, GroupMember, MemberSnapshot, MemberState};
use kcon_pool::{BrokerTarget, Pool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pool::config;

/// A topic partition as tests write it.
pub type Tp = (String, i32);

/// `topic`'s partitions `0..n`.
pub fn partitions(topic: &str, n: i32) -> BTreeSet<Tp> {
    (0..n).map(|p| (topic.to_owned(), p)).collect()
}

/// A group configuration for tests: `session.timeout.ms=6000` and `heartbeat.interval.ms=1000`
/// (Tansu completes a join after about half the session timeout), `strategy` as
/// `partition.assignment.strategy`, and `extra` properties.
pub fn group_config(group: &str, strategy: &str, extra: &[(&str, &str)]) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1000"),
        ("partition.assignment.strategy", strategy),
    ]
    .iter()
    .chain(extra)
    {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// How a scenario below configures its members: [`group_config`] or
/// [`group_config_at_defaults`].
pub type ConfigFn = fn(&str, &str, &[(&str, &str)]) -> GroupConfig;

/// A group configuration at the client's defaults but `strategy` as
/// `partition.assignment.strategy` and `extra` properties: for Apache Kafka, whose joins need no
/// shortened session.
pub fn group_config_at_defaults(
    group: &str,
    strategy: &str,
    extra: &[(&str, &str)],
) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    for (k, v) in [("partition.assignment.strategy", strategy)]
        .iter()
        .chain(extra)
    {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// Creates each `(topic, partitions)` with CreateTopics on broker `id` (Tansu creates no topic
/// on Metadata), failing on any per-topic error.
pub async fn create_topics(pool: &Pool, id: BrokerTarget, topics: &[(&str, i32)]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            topics
                .iter()
                .map(|&(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let answer = pool.send(id, &request).await.unwrap();
    assert_eq!(answer.topics.len(), topics.len(), "{answer:?}");
    for t in &answer.topics {
        assert_eq!(
            t.error_code, 0,
            "creating {}: {:?}",
            t.name.0, t.error_message
        );
    }
}

/// What a member was told, in order, and what it owns as a result.
#[derive(Debug, Clone, Default)]
pub struct MemberLog {
    /// Owned now: assigned and not revoked or lost.
    pub owned: BTreeSet<Tp>,
    /// Every partition revoked, in order (a partition may appear more than once).
    pub revoked: Vec<Tp>,
    /// Every partition lost, in order.
    pub lost: Vec<Tp>,
    /// The generations joined, in order.
    pub generations: Vec<i32>,
    /// The member id of each join, in order.
    pub member_ids: Vec<String>,
    /// Whether the member led its last generation.
    pub leader: bool,
    /// How many times the member was told of an assignment (a completed rebalance).
    pub assignments: usize,
    /// The generations whose assignment the member was told of (whose SyncGroup completed),
    /// in order.
    pub synced: Vec<i32>,
    /// The fatal error, if one came.
    pub fatal: Option<String>,
    /// Whether the member closed.
    pub closed: bool,
    /// Every event, as text.
    pub events: Vec<String>,
}

impl MemberLog {
    /// The generations the member joined but whose SyncGroup did not complete (the coordinator
    /// refused it, or a new rebalance began first), in order.
    pub fn unsynced(&self) -> Vec<i32> {
        self.generations
            .iter()
            .copied()
            .filter(|g| !self.synced.contains(g))
            .collect()
    }

    fn record(&mut self, event: &GroupEvent) {
        let tps = |v: &[kcon_core::TopicPartition]| -> Vec<Tp> {
            v.iter().map(|t| (t.topic.clone(), t.partition)).collect()
        };
        self.events.push(format!("{event:?}"));
        match event {
            GroupEvent::Joined {
                generation_id,
                member_id,
                leader,
            } => {
                self.leader = *leader;
                self.generations.push(*generation_id);
                self.member_ids.push(member_id.clone());
            }
            GroupEvent::Assigned {
                partitions,
                generation_id,
            } => {
                self.assignments += 1;
                self.synced.push(*generation_id);
                self.owned.extend(tps(partitions));
            }
            GroupEvent::Revoked { partitions, .. } => {
                for tp in tps(partitions) {
                    self.owned.remove(&tp);
                    self.revoked.push(tp);
                }
            }
            GroupEvent::Lost { partitions } => {
                for tp in tps(partitions) {
                    self.owned.remove(&tp);
                    self.lost.push(tp);
                }
            }
            GroupEvent::Fatal(e) => self.fatal = Some(e.to_string()),
            GroupEvent::Closed => self.closed = true,
            other => self.events.push(format!("unexpected: {other:?}")),
        }
    }
}

/// A kcon group member on its own pool, driven by a task that acknowledges every revocation at
/// once and polls every 200 ms.
#[derive(Debug)]
pub struct Member {
    /// A name for messages.
    pub name: String,
    log: Arc<Mutex<MemberLog>>,
    snapshot: tokio::sync::watch::Receiver<MemberSnapshot>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Member {
    /// Starts a member of `config.group_id` subscribed to `topics`, bootstrapping from
    /// `bootstrap`.
    pub fn start(name: &str, bootstrap: &str, config: GroupConfig, topics: &[&str]) -> Member {
        let pool = Pool::new(self::config(bootstrap)).expect("a pool");
        let mut member = GroupMember::start(pool, config).expect("a valid group config");
        member.subscribe(topics.iter().copied());
        let log = Arc::new(Mutex::new(MemberLog::default()));
        let snapshot = member.watch();
        let (stop, mut stopped) = oneshot::channel();
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    event = member.next_event() => {
                        let Some(event) = event else { return };
                        // Recorded before acknowledged: the log never shows a partition as
                        // owned after the coordinator may have given it to another member.
                        task_log.lock().unwrap().record(&event);
                        if let GroupEvent::Revoked { id, .. } = &event {
                            member.revocation_done(*id);
                        }
                    }
                    _ = tick.tick() => member.poll(),
                    _ = &mut stopped => {
                        for event in member.close(Duration::from_secs(10)).await {
                            task_log.lock().unwrap().record(&event);
                        }
                        return;
                    }
                }
            }
        });
        Member {
            name: name.to_owned(),
            log,
            snapshot,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// What the member was told so far.
    pub fn log(&self) -> MemberLog {
        self.log.lock().unwrap().clone()
    }

    /// The partitions it owns now.
    pub fn owned(&self) -> BTreeSet<Tp> {
        self.log.lock().unwrap().owned.clone()
    }

    /// The machine's state now.
    pub fn snapshot(&self) -> MemberSnapshot {
        self.snapshot.borrow().clone()
    }

    /// Closes the member (revoke, LeaveGroup unless static) and returns its log. Panics with
    /// the member's task's own message if the task panicked, and with the log if the task does
    /// not end within 15 s (the member's close waits at most 10 s for LeaveGroup).
    pub async fn close(mut self) -> MemberLog {
        if let Some(stop) = self.stop.take() {
            // The member's task may have ended already (its member failed): nothing to stop.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_panic() => {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| payload.downcast_ref::<&str>().copied())
                        .unwrap_or("a panic without a message");
                    panic!("member {}'s task panicked: {message}", self.name);
                }
                // Only dropping the Member aborts its task, and close owns it.
                Ok(Err(e)) => panic!("member {}'s task ended without closing: {e}", self.name),
                Err(_) => panic!(
                    "member {} did not close within 15 s: {:?}",
                    self.name,
                    self.log()
                ),
            }
        }
        self.log()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits until the members together own exactly `expected`, each partition once, all of them
/// stable in one generation; panics with every member's log otherwise.
pub async fn wait_for_exactly_once(members: &[&Member], expected: &BTreeSet<Tp>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (ok, why) = exactly_once(members, expected);
        if ok {
            return;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("{}: {:?}\n  {:?}", m.name, m.snapshot(), m.log()))
                .collect();
            // The headline comes last too: CI shows the tail of a failing test's output.
            panic!(
                "partitions not assigned exactly once within {within:?}: {why}\n{}\npartitions not assigned exactly once within {within:?}: {why}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exactly_once(members: &[&Member], expected: &BTreeSet<Tp>) -> (bool, String) {
    let mut seen = BTreeSet::new();
    let mut generations = BTreeSet::new();
    for m in members {
        let snap = m.snapshot();
        if snap.state != MemberState::Stable {
            return (false, format!("{} is {:?}", m.name, snap.state));
        }
        generations.insert(snap.generation.id);
        for tp in m.owned() {
            if !seen.insert(tp.clone()) {
                return (false, format!("{tp:?} owned twice"));
            }
        }
    }
    if generations.len() > 1 {
        return (false, format!("members in generations {generations:?}"));
    }
    if &seen != expected {
        return (false, format!("owned {seen:?}, expected {expected:?}"));
    }
    (true, String::new())
}

/// How long a rebalance may take in these tests: a member learns of a rebalance at its next
/// heartbeat (every 3 s at the client's defaults), a rebalance may need two rounds
/// (cooperative), and the machine is shared and loaded.
pub const REBALANCE_WITHIN: Duration = Duration::from_secs(45);

/// The partitions of the topic [`join_then_leave`] runs on: three members own 4 each, then four
/// own 3 each, so under cooperative-sticky every one of the first three gives the fourth one
/// partition. With several members revoking at once, the hand-over needs each of them to get
/// the first generation's assignment before any rejoins (on Tansu, whose SyncGroup answers
/// come up to a second apart, a rejoin that comes too early costs generations).
pub const JOIN_THEN_LEAVE_PARTITIONS: i32 = 12;

/// Members of one group on `topic` ([`JOIN_THEN_LEAVE_PARTITIONS`]) with `strategy`, each
/// configured by `config`: three
/// join; a fourth joins; the first leaves. After each step every partition is owned exactly
/// once. Under an eager strategy every member gives up everything at each rebalance; under
/// cooperative-sticky a member is never revoked a partition it keeps.
///
/// With `count_generations` the group must also go through just the generations KIP-429 needs
/// under cooperative-sticky: two for the join (the members that give partitions up revoke
/// them, then their rejoin hands them over), one for the leave (the leaver revoked its
/// partitions itself, so nobody else owns them).
pub async fn join_then_leave(
    bootstrap: &str,
    topic: &str,
    group: &str,
    strategy: &str,
    config: ConfigFn,
    count_generations: bool,
) {
    let all = partitions(topic, JOIN_THEN_LEAVE_PARTITIONS);
    let cfg = || config(group, strategy, &[]);
    let a = Member::start("a", bootstrap, cfg(), &[topic]);
    let b = Member::start("b", bootstrap, cfg(), &[topic]);
    let c = Member::start("c", bootstrap, cfg(), &[topic]);
    wait_for_exactly_once(&[&a, &b, &c], &all, REBALANCE_WITHIN).await;
    for m in [&a, &b, &c] {
        assert_eq!(m.owned().len(), 4, "{}: {:?}", m.name, m.log());
    }

    let before = [a.log(), b.log(), c.log()];
    let generation = b.snapshot().generation.id;
    let d = Member::start("d", bootstrap, cfg(), &[topic]);
    wait_for_exactly_once(&[&a, &b, &c, &d], &all, REBALANCE_WITHIN).await;
    check_revocations(strategy, &[&a, &b, &c], &before);
    if count_generations {
        check_generations("the fourth member's join", &[&a, &b, &c, &d], generation, 2);
    }

    let before = [b.log(), c.log(), d.log()];
    let generation = b.snapshot().generation.id;
    let a_log = a.close().await;
    assert!(a_log.closed, "a did not close: {a_log:?}");
    assert!(a_log.owned.is_empty(), "a still owns {:?}", a_log.owned);
    wait_for_exactly_once(&[&b, &c, &d], &all, REBALANCE_WITHIN).await;
    check_revocations(strategy, &[&b, &c, &d], &before);
    if count_generations {
        check_generations("the first member's leave", &[&b, &c, &d], generation, 1);
    }
    for m in [b, c, d] {
        let log = m.close().await;
        assert!(log.closed && log.fatal.is_none(), "{log:?}");
    }
}

/// After a rebalance that started in generation `from`, the members are in generation
/// `from + expected`.
fn check_generations(what: &str, members: &[&Member], from: i32, expected: i32) {
    let now = members[0].snapshot().generation.id;
    let logs: Vec<String> = members
        .iter()
        .map(|m| format!("{}: {:?}", m.name, m.log()))
        .collect();
    assert_eq!(
        now - from,
        expected,
        "{what}: generations {from} to {now}, KIP-429 needs {expected}\n{}",
        logs.join("\n")
    );
}

/// After a rebalance: eager members were revoked all they owned before it; cooperative members
/// were revoked only what they no longer own.
fn check_revocations(strategy: &str, members: &[&Member], before: &[MemberLog]) {
    for (m, before) in members.iter().zip(before) {
        let after = m.log();
        let revoked: BTreeSet<Tp> = after.revoked[before.revoked.len()..]
            .iter()
            .cloned()
            .collect();
        if strategy.contains("cooperative") {
            let kept: BTreeSet<Tp> = before.owned.intersection(&after.owned).cloned().collect();
            let wrongly: Vec<&Tp> = revoked.intersection(&kept).collect();
            assert!(
                wrongly.is_empty(),
                "{} kept {kept:?} but was revoked {wrongly:?}: {after:?}",
                m.name
            );
        } else {
            assert!(
                before.owned.is_subset(&revoked),
                "{}: eager, yet owned {:?} and was revoked only {revoked:?}",
                m.name,
                before.owned
            );
        }
    }
}

/// Two static members (`group.instance.id`), at the client's defaults; the follower closes (a
/// static member sends no LeaveGroup) and starts again within the session timeout. The
/// coordinator recognises the instance (KIP-345): it gives the restarted member a new member id
/// in place of the old one, hands it the partitions it had, and does so without a rebalance:
/// the leader keeps its partitions and joins no new generation.
pub async fn static_member_restarts(bootstrap: &str, topic: &str, group: &str) {
    let all = partitions(topic, 6);
    let cfg = |id: &str| group_config_at_defaults(group, "range", &[("group.instance.id", id)]);
    let a = Member::start("a", bootstrap, cfg("instance-a"), &[topic]);
    let b = Member::start("b", bootstrap, cfg("instance-b"), &[topic]);
    wait_for_exactly_once(&[&a, &b], &all, REBALANCE_WITHIN).await;
    let (leader, follower, follower_id) = if a.log().leader {
        (a, b, "instance-b")
    } else {
        (b, a, "instance-a")
    };
    let leader_before = leader.log();
    let follower_owned = follower.owned();
    let follower_member_id = follower.snapshot().generation.member_id;
    let follower_log = follower.close().await;
    assert!(follower_log.closed, "{follower_log:?}");
    let follower = Member::start("restarted", bootstrap, cfg(follower_id), &[topic]);
    wait_for_exactly_once(&[&leader, &follower], &all, REBALANCE_WITHIN).await;
    let restarted = follower.snapshot().generation;
    assert_ne!(
        restarted.member_id, follower_member_id,
        "KIP-345: the coordinator replaces a rejoining static member's id"
    );
    assert_eq!(
        follower.log().member_ids,
        std::slice::from_ref(&restarted.member_id),
        "the restarted member joined more than once: {:?}",
        follower.log()
    );
    assert_eq!(
        restarted.id,
        leader.snapshot().generation.id,
        "the restarted member is not in the leader's generation"
    );
    assert_eq!(
        follower.owned(),
        follower_owned,
        "the restarted static member got other partitions"
    );
    let leader_after = leader.log();
    assert_eq!(leader_after.owned, leader_before.owned, "{leader_after:?}");
    assert!(leader_after.lost.is_empty(), "{leader_after:?}");
    assert_eq!(
        leader_after.generations, leader_before.generations,
        "the leader rejoined: {leader_after:?}"
    );
    assert_eq!(
        leader_after.assignments, leader_before.assignments,
        "the leader was assigned again: {leader_after:?}"
    );
    leader.close().await;
    follower.close().await;
}
