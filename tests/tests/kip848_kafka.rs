//! The consumer group protocol (KIP-848, `group.protocol=consumer`) on Apache Kafka 4.4 (the
//! shared single node), where the broker's own assignors run, every client at its defaults
//! (the broker's 5 s heartbeat interval and 45 s session): kcon members joining and leaving
//! while records flow, every record read once; `group.remote.assignor=range` and `uniform`,
//! checked on each member and in ConsumerGroupDescribe; a regex subscription the coordinator
//! matches (RE2/J, whole names); a static member restarting; groups mixed with the Java
//! client's KIP-848 consumer, either side first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon::{Consumer, ListenerFuture, RebalanceContext, RebalanceListener, Record, TopicPartition};
use kcon_admin::ConsumerGroupDescription;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{Driven, STEP, assert_once_in_group, wait_for_split_held, wait_until};
use kcon_tests::group::{Member, Tp};
use kcon_tests::group_peers::{GroupPeer, GroupPeerConfig, PeerClient};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::kip848::{consumer_config, wait_for_mixed_split, wait_for_reconciled};
use kcon_tests::offsets::{fetch_high_watermark, now_ms, produce};
use kcon_tests::pool::config;
use serde_json::Value;
use tokio::task::block_in_place;

/// How long a reconciliation may take at the broker's defaults: the members learn of a new
/// target at their next heartbeat (every 5 s), those giving partitions up revoke them and say
/// so, and those taking them learn at their next heartbeat; on a loaded machine.
const RECONCILED_WITHIN: Duration = Duration::from_secs(60);

/// How long a split must hold before a test goes on: one seen for a moment may be undone by
/// the next heartbeat's answer.
const HELD: Duration = Duration::from_secs(1);

/// Records are produced in batches of this many (the values `kcon_tests::offsets::produce`
/// gives, `value-{offset % BATCH}`, number them).
const BATCH: usize = 10;

/// A pool on the shared Kafka 4.4 node.
fn kafka_pool() -> (&'static Kafka, Pool) {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    (kafka, pool)
}

/// A change of what a member owns, as its listener saw it, in one log shared by the group.
#[derive(Debug, Clone)]
enum Change {
    Assigned(String, Vec<TopicPartition>),
    /// Recorded after the listener's commit, before it returns (the partitions are the
    /// member's until then).
    Revoked(String, Vec<TopicPartition>, Result<(), String>),
    Lost(String, Vec<TopicPartition>),
}

/// A rebalance listener that commits what its consumer has read before partitions go (the
/// at-least-once pattern, `enable.auto.commit=false`) and writes every change to a log shared
/// by the group, so that the order of changes across members is the order they happened in.
#[derive(Debug, Clone)]
struct Ledger {
    name: String,
    log: Arc<Mutex<Vec<Change>>>,
}

impl Ledger {
    fn push(&self, change: Change) {
        self.log.lock().unwrap().push(change);
    }
}

impl RebalanceListener for Ledger {
    fn on_assigned<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.push(Change::Assigned(self.name.clone(), partitions.to_vec()));
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let commit = ctx.commit().await.map_err(|e| e.to_string());
            self.push(Change::Revoked(
                self.name.clone(),
                partitions.to_vec(),
                commit,
            ));
        })
    }

    fn on_lost<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.push(Change::Lost(self.name.clone(), partitions.to_vec()));
        Box::pin(async {})
    }
}

/// The shared log of a group's changes.
#[derive(Debug, Clone, Default)]
struct Changes(Arc<Mutex<Vec<Change>>>);

impl Changes {
    fn listener(&self, name: &str) -> Ledger {
        Ledger {
            name: name.to_owned(),
            log: self.0.clone(),
        }
    }

    fn all(&self) -> Vec<Change> {
        self.0.lock().unwrap().clone()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Replays the log: no partition was ever assigned to one member while another owned it,
    /// none was lost, every commit on revoke succeeded, and each member was revoked only
    /// what it owned.
    fn assert_owned_once(&self) {
        let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
        for (i, change) in self.all().iter().enumerate() {
            match change {
                Change::Assigned(name, tps) => {
                    for tp in tps {
                        if let Some(other) = owner.insert(tp.clone(), name.clone()) {
                            panic!(
                                "change {i}: {tp} assigned to {name} while {other} owned it: {:#?}",
                                self.all()
                            );
                        }
                    }
                }
                Change::Revoked(name, tps, commit) => {
                    assert!(commit.is_ok(), "change {i}: {name}'s commit: {commit:?}");
                    for tp in tps {
                        assert_eq!(
                            owner.remove(tp).as_ref(),
                            Some(name),
                            "change {i}: {name} revoked {tp}: {:#?}",
                            self.all()
                        );
                    }
                }
                Change::Lost(name, tps) => {
                    panic!("change {i}: {name} lost {tps:?}: {:#?}", self.all())
                }
            }
        }
    }

    /// The partitions revoked from `name` in the changes from `from` on.
    fn revoked_since(&self, from: usize, name: &str) -> BTreeSet<TopicPartition> {
        self.all()[from..]
            .iter()
            .filter_map(|c| match c {
                Change::Revoked(n, tps, _) if n == name => Some(tps.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// A kcon consumer at its defaults in `group`, `group.protocol=consumer`, reading from the
/// earliest offset, committing only in its listener (`enable.auto.commit=false`), subscribed
/// to `subscription`, driven by its own task.
fn kcon(
    bootstrap: &str,
    group: &str,
    name: &str,
    changes: &Changes,
    subscription: &[&str],
    extra: &[(&str, &str)],
) -> Driven {
    let mut builder = Consumer::builder()
        .bootstrap_servers(bootstrap)
        .group_id(group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .enable_auto_commit(false)
        .rebalance_listener(changes.listener(name));
    for (k, v) in extra {
        builder = builder.set(k, *v);
    }
    let mut consumer = builder.build().expect("a consumer");
    consumer
        .subscribe(subscription.iter().copied())
        .expect("subscribed");
    Driven::start(name, consumer, STEP)
}

/// Stops and closes a driven consumer (its listener commits what it read); returns its
/// records, checking it got no error.
async fn close(driven: Driven) -> Vec<Record> {
    let name = driven.name.clone();
    let (consumer, state) = driven.stop().await;
    consumer
        .close()
        .await
        .unwrap_or_else(|e| panic!("{name} closes: {e}"));
    assert!(state.errors.is_empty(), "{name}: {:?}", state.errors);
    state.records
}

/// Produces a batch of [`BATCH`] records to every partition of `topic` every 300 ms until
/// stopped.
fn produce_until_stopped(
    pool: Pool,
    topic: String,
    partitions: i32,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            for p in 0..partitions {
                produce(&pool, &topic, p, BATCH, now_ms()).await;
            }
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    });
    (stop, task)
}

/// Each partition's log end.
async fn ends(pool: &Pool, all: &BTreeSet<TopicPartition>) -> BTreeMap<TopicPartition, i64> {
    let mut out = BTreeMap::new();
    for tp in all {
        out.insert(
            tp.clone(),
            fetch_high_watermark(pool, &tp.topic, tp.partition).await,
        );
    }
    out
}

/// Waits until the `consumers` together own exactly `expected`, each partition once and each
/// consumer some, and that has held for [`HELD`].
async fn wait_for_split(consumers: &[&Driven], expected: &BTreeSet<TopicPartition>) {
    wait_for_split_held(consumers, expected, RECONCILED_WITHIN, HELD).await;
}

fn partitions(topic: &str, n: i32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

/// Three kcon members join one after another while records are produced without pause, then
/// leave one after another. After each step every partition is owned by exactly one member;
/// over the whole test no partition is ever assigned to a member while another owns it (the
/// listeners' shared log), a member that stays is never revoked a partition it keeps, and the
/// group reads every record exactly once (each member commits in `on_revoked`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_while_records_flow_reading_each_once() {
    const PARTITIONS: i32 = 6;
    let (kafka, pool) = kafka_pool();
    let topic = unique_name("kip848-flow");
    create_topics(&pool, &[(&topic, PARTITIONS)]).await;
    let group = unique_name("kip848-flow");
    let all = partitions(&topic, PARTITIONS);
    let changes = Changes::default();
    let (stop_producing, producing) =
        produce_until_stopped(pool.clone(), topic.clone(), PARTITIONS);
    let start = |name: &str| kcon(kafka.bootstrap(), &group, name, &changes, &[&topic], &[]);

    // Members that stay through a step are never revoked what they own after it.
    let assert_kept = |from: usize, staying: &[&Driven]| {
        for m in staying {
            let revoked = changes.revoked_since(from, &m.name);
            let kept = m.assignment();
            assert!(
                revoked.is_disjoint(&kept),
                "{} kept {kept:?} but was revoked {revoked:?}: {:#?}",
                m.name,
                changes.all()
            );
        }
    };

    let a = start("a");
    wait_for_split(&[&a], &all).await;
    let from = changes.len();
    let b = start("b");
    wait_for_split(&[&a, &b], &all).await;
    assert_kept(from, &[&a]);
    let from = changes.len();
    let c = start("c");
    wait_for_split(&[&a, &b, &c], &all).await;
    assert_kept(from, &[&a, &b]);
    for m in [&a, &b, &c] {
        assert_eq!(m.assignment().len(), 2, "{}: {:?}", m.name, m.assignment());
    }
    // Every member has been reading.
    for m in [&a, &b, &c] {
        let received = m.received();
        wait_until(
            &format!("{} reading", m.name),
            RECONCILED_WITHIN,
            || m.received() > received,
            || m.state().errors,
        )
        .await;
    }

    let from = changes.len();
    let a_records = close(a).await;
    wait_for_split(&[&b, &c], &all).await;
    assert_kept(from, &[&b, &c]);
    let from = changes.len();
    let b_records = close(b).await;
    wait_for_split(&[&c], &all).await;
    assert_kept(from, &[&c]);

    stop_producing.send(()).expect("the producer runs");
    producing.await.expect("the producer ends");
    let ends = ends(&pool, &all).await;
    let total: i64 = ends.values().sum();
    let read_before = (a_records.len() + b_records.len()) as i64;
    wait_until(
        "every record read",
        RECONCILED_WITHIN,
        || read_before + c.received() as i64 >= total,
        || (read_before + c.received() as i64, total),
    )
    .await;
    let c_records = close(c).await;
    assert_once_in_group(&[&a_records, &b_records, &c_records], &ends, BATCH as i64);
    assert!(
        !a_records.is_empty() && !b_records.is_empty(),
        "a and b read nothing"
    );
    changes.assert_owned_once();
}

/// Describes `group` (ConsumerGroupDescribe) until it has `members` members, all at the
/// assignment epoch, which is the group epoch, each owning its target.
async fn described_stable(pool: &Pool, group: &str, members: usize) -> ConsumerGroupDescription {
    let deadline = Instant::now() + RECONCILED_WITHIN;
    loop {
        let d = kcon_admin::describe_consumer_group(pool, group)
            .await
            .unwrap_or_else(|e| panic!("ConsumerGroupDescribe {group}: {e}"))
            .unwrap_or_else(|| panic!("{group} is no consumer-protocol group"));
        let stable = d.state == "Stable"
            && d.members.len() == members
            && d.group_epoch == d.assignment_epoch
            && d.members.iter().all(|m| {
                m.member_epoch == d.assignment_epoch && m.assignment == m.target_assignment
            });
        if stable {
            return d;
        }
        assert!(Instant::now() < deadline, "not stable: {d:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A member's partitions of `topic`.
fn of_topic(owned: &BTreeSet<Tp>, topic: &str) -> Vec<i32> {
    owned
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| *p)
        .collect()
}

/// Three kcon members with `group.remote.assignor=assignor` join subscribed to two topics of
/// 5 partitions each that do not exist yet; then the topics are created, so the coordinator
/// assigns them from nothing (Kafka's assignors are sticky: what a member owned before
/// shapes its next assignment). On the Kafka 4.4 node that creates no topic on demand:
/// elsewhere the members' own metadata requests for the topics would create them (with
/// `allow.auto.create.topics`, true by default, as in the Java client). Each member's own assignment equals the target ConsumerGroupDescribe
/// shows for it and what it owns there, at the assignment epoch; the assignment is returned
/// per member id.
async fn assigned_by(assignor: &str) -> BTreeMap<String, BTreeSet<Tp>> {
    let kafka = Kafka::noauto();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let group = unique_name(&format!("kip848-{assignor}"));
    let (t1, t2) = (unique_name("kip848-t1"), unique_name("kip848-t2"));
    let all: BTreeSet<Tp> = [&t1, &t2]
        .iter()
        .flat_map(|t| (0..5).map(|p| ((*t).clone(), p)))
        .collect();
    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            Member::start(
                name,
                kafka.bootstrap(),
                consumer_config(&group, &[("group.remote.assignor", assignor)]),
                &[&t1, &t2],
            )
        })
        .collect();
    let refs: Vec<&Member> = members.iter().collect();
    // All three are members before there is anything to assign.
    let deadline = Instant::now() + RECONCILED_WITHIN;
    loop {
        let d = kcon_admin::describe_consumer_group(&pool, &group)
            .await
            .expect("ConsumerGroupDescribe");
        if d.as_ref().is_some_and(|d| d.members.len() == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "three members: {d:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    create_topics(&pool, &[(&t1, 5), (&t2, 5)]).await;
    wait_for_reconciled(&refs, &all, RECONCILED_WITHIN).await;

    let d = described_stable(&pool, &group, 3).await;
    assert_eq!(d.assignor, assignor, "{d:#?}");
    let mut out = BTreeMap::new();
    for m in &members {
        let snap = m.snapshot();
        let described = d
            .members
            .iter()
            .find(|x| x.member_id == snap.generation.member_id)
            .unwrap_or_else(|| panic!("{} ({snap:?}) not described: {d:#?}", m.name));
        let target: BTreeSet<Tp> = described
            .target_assignment
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition))
            .collect();
        assert_eq!(m.owned(), target, "{}: {d:#?}", m.name);
        assert_eq!(
            snap.generation.id, d.assignment_epoch,
            "{}'s epoch: {d:#?}",
            m.name
        );
        assert_eq!(described.subscribed_topics.len(), 2, "{d:#?}");
        out.insert(described.member_id.clone(), target);
    }
    for m in members {
        let log = m.close().await;
        assert!(
            log.closed && log.fatal.is_none() && log.lost.is_empty(),
            "{log:?}"
        );
    }
    let tps: Vec<&Tp> = out.values().flatten().collect();
    assert_eq!(tps.len(), 10, "{out:?}");
    out
}

/// `group.remote.assignor=range`: in member id order, the members get consecutive ranges of
/// each topic, 2, 2 and 1 of 5, the same partitions of both topics (the assignor's point:
/// co-partitioned topics join); so two members own 4 and one 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_range_assignor_gives_ranges_in_member_id_order() {
    let out = assigned_by("range").await;
    let topics: BTreeSet<&String> = out.values().flatten().map(|(t, _)| t).collect();
    assert_eq!(topics.len(), 2, "{out:#?}");
    for topic in topics {
        // The BTreeMap's order is the member ids' (byte order, as Java compares them).
        let ranges: Vec<Vec<i32>> = out.values().map(|owned| of_topic(owned, topic)).collect();
        assert_eq!(
            ranges,
            [vec![0, 1], vec![2, 3], vec![4]],
            "{topic} in member id order: {out:#?}"
        );
    }
}

/// `group.remote.assignor=uniform`: the 10 partitions are balanced over the members, 4, 3
/// and 3 (range gives 4, 4 and 2 here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uniform_assignor_balances_the_counts() {
    let out = assigned_by("uniform").await;
    let mut counts: Vec<usize> = out.values().map(BTreeSet::len).collect();
    counts.sort_unstable();
    assert_eq!(counts, [3, 3, 4], "{out:#?}");
}

/// A regex subscription: two kcon consumers subscribe with `^<prefix>-.*`, which kcon sends as
/// SubscribedTopicRegex and Kafka matches against whole topic names (RE2/J). They share the
/// one matching topic, not `<prefix>_c` beside it; a matching topic created afterwards is
/// taken up; every record of both matching topics is read exactly once and none of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_takes_up_a_matching_topic_created_later() {
    let (kafka, pool) = kafka_pool();
    let prefix = unique_name("kip848-rx");
    let (first, later, unmatched) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}_c"),
    );
    create_topics(&pool, &[(&first, 4), (&unmatched, 2)]).await;
    for (topic, n) in [(&first, 4), (&unmatched, 2)] {
        for p in 0..n {
            produce(&pool, topic, p, BATCH, now_ms()).await;
        }
    }
    let group = unique_name("kip848-rx");
    let changes = Changes::default();
    let regex = format!("^{prefix}-.*");
    let k1 = kcon(kafka.bootstrap(), &group, "k1", &changes, &[&regex], &[]);
    let k2 = kcon(kafka.bootstrap(), &group, "k2", &changes, &[&regex], &[]);
    let mut expected = partitions(&first, 4);
    wait_for_split(&[&k1, &k2], &expected).await;

    create_topics(&pool, &[(&later, 2)]).await;
    for p in 0..2 {
        produce(&pool, &later, p, BATCH, now_ms()).await;
    }
    expected.extend(partitions(&later, 2));
    wait_for_split(&[&k1, &k2], &expected).await;
    let ends = ends(&pool, &expected).await;
    let total: i64 = ends.values().sum();
    wait_until(
        "every matching record read",
        RECONCILED_WITHIN,
        || (k1.received() + k2.received()) as i64 >= total,
        || (k1.state(), k2.state()),
    )
    .await;
    let pool2 = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let d = described_stable(&pool2, &group, 2).await;
    for m in &d.members {
        // Sent as the application wrote it.
        assert_eq!(
            m.subscribed_regex.as_deref(),
            Some(regex.as_str()),
            "{d:#?}"
        );
    }
    let r1 = close(k1).await;
    let r2 = close(k2).await;
    assert_once_in_group(&[&r1, &r2], &ends, BATCH as i64);
    changes.assert_owned_once();
    for c in changes.all() {
        if let Change::Assigned(name, tps) = c {
            assert!(
                tps.iter().all(|tp| tp.topic != unmatched),
                "{name} was assigned {tps:?}"
            );
        }
    }
}

/// Static members (`group.instance.id`): one closes (leaving with epoch -2, so Kafka keeps
/// its assignment for the session, 45 s by default) and a new member with the same instance
/// id comes back at once: it gets the same partitions, under a new member id, and the other
/// member is told of nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_keeping_its_partitions() {
    let (kafka, pool) = kafka_pool();
    let topic = unique_name("kip848-static");
    create_topics(&pool, &[(&topic, 6)]).await;
    let group = unique_name("kip848-static");
    let all = kcon_tests::group::partitions(&topic, 6);
    let start = |name: &str, instance: &str| {
        Member::start(
            name,
            kafka.bootstrap(),
            consumer_config(&group, &[("group.instance.id", instance)]),
            &[&topic],
        )
    };
    let a = start("a", "static-a");
    let b = start("b", "static-b");
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    // Settled: both at the assignment epoch.
    described_stable(&pool, &group, 2).await;
    let a_before = a.log();
    let b_owned = b.owned();
    assert_eq!(b_owned.len(), 3, "{:?}", b.log());
    let b_id = b.snapshot().generation.member_id;
    let log = b.close().await;
    assert!(log.closed && log.fatal.is_none(), "{log:?}");
    let d = kcon_admin::describe_consumer_group(&pool, &group)
        .await
        .expect("ConsumerGroupDescribe")
        .expect("a consumer-protocol group");
    let b_target: Vec<&kcon_admin::ConsumerGroupMember> = d
        .members
        .iter()
        .filter(|m| m.instance_id.as_deref() == Some("static-b"))
        .collect();
    assert_eq!(b_target.len(), 1, "the static member is kept: {d:#?}");

    let b = start("b-again", "static-b");
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    assert_eq!(
        b.owned(),
        b_owned,
        "the restarted member got other partitions"
    );
    let b_log = b.log();
    assert!(
        b_log.revoked.is_empty() && b_log.lost.is_empty(),
        "{b_log:?}"
    );
    assert_ne!(b.snapshot().generation.member_id, b_id, "a new member id");
    let a_after = a.log();
    assert_eq!(a_after.owned, a_before.owned);
    assert_eq!(
        a_after.events, a_before.events,
        "the other member was told of a change"
    );
    described_stable(&pool, &group, 2).await;
    a.close().await;
    b.close().await;
}

/// Which side joins first, alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Kcon,
    Java,
}

/// The records a Java peer reported, as (partition, offset) per topic partition.
fn java_records(events: &[Value]) -> Vec<(TopicPartition, i64)> {
    events
        .iter()
        .filter(|e| e["event"] == "records")
        .flat_map(|e| e["records"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                TopicPartition::new(
                    r[0].as_str().expect("a topic"),
                    r[1].as_i64().unwrap() as i32,
                ),
                r[2].as_i64().expect("an offset"),
            )
        })
        .collect()
}

/// Two kcon consumers and two of the Java client's, all `group.protocol=consumer` at their
/// defaults, in one group; `first` joins first, alone. After all four joined, every partition
/// is owned once; one of each side leaves, and again. Records are produced throughout; the
/// group reads each exactly once (kcon commits in its listener, the Java client
/// auto-commits, which it does before giving partitions up).
async fn mixed_with_java(first: First) {
    const PARTITIONS: i32 = 6;
    let (kafka, pool) = kafka_pool();
    let topic = unique_name("kip848-java");
    create_topics(&pool, &[(&topic, PARTITIONS)]).await;
    let group = unique_name("kip848-java");
    let all = partitions(&topic, PARTITIONS);
    let all_tp: BTreeSet<Tp> = all
        .iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect();
    let changes = Changes::default();
    let (stop_producing, producing) =
        produce_until_stopped(pool.clone(), topic.clone(), PARTITIONS);
    let start = |name: &str| kcon(kafka.bootstrap(), &group, name, &changes, &[&topic], &[]);
    let mut peer_config = GroupPeerConfig::new(
        PeerClient::Java,
        kafka.bootstrap(),
        &group,
        &[&topic],
        "range",
    );
    peer_config.group_protocol = Some("consumer".into());
    peer_config.report_records = true;
    let peer = || block_in_place(|| GroupPeer::start_with(&peer_config));

    let (k1, j1) = match first {
        First::Kcon => {
            let k1 = start("kcon-1");
            wait_for_mixed_split(&[&k1], &[], &all_tp, RECONCILED_WITHIN, HELD).await;
            (k1, peer())
        }
        First::Java => {
            let j1 = peer();
            wait_for_mixed_split(&[], &[&j1], &all_tp, RECONCILED_WITHIN, HELD).await;
            (start("kcon-1"), j1)
        }
    };
    let k2 = start("kcon-2");
    let j2 = peer();
    wait_for_mixed_split(&[&k1, &k2], &[&j1, &j2], &all_tp, RECONCILED_WITHIN, HELD).await;

    let k2_records = close(k2).await;
    let j2_events = block_in_place(|| j2.close_with_events());
    wait_for_mixed_split(&[&k1], &[&j1], &all_tp, RECONCILED_WITHIN, HELD).await;

    stop_producing.send(()).expect("the producer runs");
    producing.await.expect("the producer ends");
    let ends = ends(&pool, &all).await;
    let total: i64 = ends.values().sum();
    let read_before = (k2_records.len() + java_records(&j2_events).len()) as i64;
    wait_until(
        "every record read",
        RECONCILED_WITHIN,
        || read_before + (k1.received() + java_records(&j1.events()).len()) as i64 >= total,
        || (k1.state().assignment, j1.assignment()),
    )
    .await;
    let k1_records = close(k1).await;
    let j1_events = block_in_place(|| j1.close_with_events());
    changes.assert_owned_once();

    // Every record once, across both clients.
    let mut read: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    for r in k1_records.iter().chain(&k2_records) {
        read.entry(TopicPartition::new(&*r.topic, r.partition))
            .or_default()
            .push(r.offset);
    }
    for (tp, offset) in java_records(&j1_events)
        .into_iter()
        .chain(java_records(&j2_events))
    {
        read.entry(tp).or_default().push(offset);
    }
    for offsets in read.values_mut() {
        offsets.sort_unstable();
    }
    let want: BTreeMap<TopicPartition, Vec<i64>> = ends
        .iter()
        .map(|(tp, end)| (tp.clone(), (0..*end).collect()))
        .collect();
    assert_eq!(read, want, "records the group read (offsets per partition)");
    for (name, events) in [("java-1", &j1_events), ("java-2", &j2_events)] {
        let errors: Vec<&Value> = events.iter().filter(|e| e["event"] == "error").collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert!(
            !java_records(events).is_empty(),
            "{name} read nothing: {events:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_java_kcon_first() {
    mixed_with_java(First::Kcon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_java_java_first() {
    mixed_with_java(First::Java).await;
}

/// A second member joining with the `group.instance.id` of a static member that has not left:
/// Kafka refuses it (UNRELEASED_INSTANCE_ID), which is fatal for the newcomer, said naming
/// the `group.instance.id` to change; the member holding the id is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_static_member_fails_and_the_first_keeps_its_partitions() {
    let (kafka, pool) = kafka_pool();
    let topic = unique_name("kip848-dup");
    create_topics(&pool, &[(&topic, 3)]).await;
    let group = unique_name("kip848-dup");
    let all = kcon_tests::group::partitions(&topic, 3);
    let instance = unique_name("instance");
    let start = |name: &str| {
        Member::start(
            name,
            kafka.bootstrap(),
            consumer_config(&group, &[("group.instance.id", &instance)]),
            &[&topic],
        )
    };
    let a = start("a");
    wait_for_reconciled(&[&a], &all, RECONCILED_WITHIN).await;
    let before = a.log();
    let dup = start("dup");
    wait_until(
        "the duplicate failing",
        RECONCILED_WITHIN,
        || dup.log().fatal.is_some(),
        || dup.log(),
    )
    .await;
    let fatal = dup.log().fatal.expect("a fatal error");
    assert!(
        fatal.contains("UNRELEASED_INSTANCE_ID")
            && fatal.contains(&format!("group.instance.id {instance:?}")),
        "{fatal}"
    );
    assert!(dup.owned().is_empty(), "{:?}", dup.log());
    // The first member saw nothing, and still owns everything.
    tokio::time::sleep(Duration::from_secs(6)).await;
    wait_for_reconciled(&[&a], &all, RECONCILED_WITHIN).await;
    assert_eq!(a.log().events, before.events, "{:?}", a.log());
    dup.close().await;
    a.close().await;
}

/// A regex kcon reads but Kafka's RE2/J does not (`(?x)`, free spacing, which RE2 lacks): the
/// coordinator answers INVALID_REGULAR_EXPRESSION, which is fatal, naming the regex and the
/// syntax Kafka reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_kafka_cannot_read_fails_naming_it() {
    let (kafka, _pool) = kafka_pool();
    let group = unique_name("kip848-badrx");
    let regex = format!("^(?x){} - .*", unique_name("kip848-badrx"));
    let changes = Changes::default();
    let k = kcon(kafka.bootstrap(), &group, "k", &changes, &[&regex], &[]);
    wait_until(
        "the subscription failing",
        RECONCILED_WITHIN,
        || !k.state().errors.is_empty(),
        || k.state(),
    )
    .await;
    let errors = k.state().errors;
    assert!(
        errors[0].contains("INVALID_REGULAR_EXPRESSION")
            && errors[0].contains(&regex)
            && errors[0].contains("RE2/J"),
        "{errors:?}"
    );
    let (consumer, _) = k.stop().await;
    let _ = consumer.close().await;
}

/// Kafka matches a regex subscription against whole topic names (RE2/J `matches()`), not
/// within them: `^<prefix>-a` is given `<prefix>-a` and never `<prefix>-ab`, where a match
/// within names (librdkafka's mock, POSIX `regexec`) would give both; the consumer's own
/// list of subscribed topics says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_matches_whole_names() {
    let (kafka, pool) = kafka_pool();
    let prefix = unique_name("kip848-whole");
    let (whole, longer) = (format!("{prefix}-a"), format!("{prefix}-ab"));
    create_topics(&pool, &[(&whole, 2), (&longer, 2)]).await;
    let group = unique_name("kip848-whole");
    let changes = Changes::default();
    let regex = format!("^{prefix}-a");
    let k = kcon(kafka.bootstrap(), &group, "k", &changes, &[&regex], &[]);
    let expected = partitions(&whole, 2);
    wait_for_split(&[&k], &expected).await;
    // Long enough for the coordinator to have resolved the regex against every topic.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(k.assignment(), expected, "{:#?}", changes.all());
    let (consumer, state) = k.stop().await;
    // The consumer's own list agrees with the coordinator.
    assert_eq!(consumer.subscription(), BTreeSet::from([whole.clone()]));
    consumer.close().await.expect("closes");
    assert!(state.errors.is_empty(), "{:?}", state.errors);
    changes.assert_owned_once();
    for c in changes.all() {
        if let Change::Assigned(_, tps) = c {
            assert!(tps.iter().all(|tp| tp.topic == whole), "{tps:?}");
        }
    }
}
