//! Partitions lost, on Apache Kafka's single node (`Kafka::single`): a member the group removed
//! learns it at its next heartbeat (UNKNOWN_MEMBER_ID), tells its listener the partitions are
//! lost, and commits nothing of them. Auto-commit commits a member's positions before it gives
//! partitions up in a rebalance; a lost partition may already be another member's, so a commit
//! of it then could write over the new owner's progress. Apache Kafka refuses a commit under
//! the removed member id by itself, so what the member sends is read off the wire: the member
//! bootstraps at the hang-up proxy (`kcon_tests::hangup`, passing every request on and keeping
//! it), the other member and the test's own requests go to the broker directly.
//!
//! Both members are at the client's defaults but for `auto.commit.interval.ms`, an hour here:
//! with no periodic commit in the test's time, every commit the member sends is one it makes
//! on giving partitions up (a rebalance, or its close), so one sent for the lost partitions
//! cannot pass for a periodic commit that was already on its way when the loss came.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kcon::{
    ApiKey, Consumer, ListenerFuture, RebalanceContext, RebalanceListener, Record, TopicPartition,
};
use kcon_codec::kafka_protocol::messages::leave_group_request::MemberIdentity;
use kcon_codec::kafka_protocol::messages::{GroupId, LeaveGroupRequest, OffsetCommitRequest};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    Driven, REBALANCE_WITHIN, STEP, group_builder_at_defaults, offsets_by_partition, wait_until,
};
use kcon_tests::hangup::kafka_hanging_up;
use kcon_tests::kafka::create_topics;
use kcon_tests::offsets::{fetch_high_watermark, now_ms, produce};
use kcon_tests::policy::committed;
use kcon_tests::pool::config;

/// A member's rebalance callbacks, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
    Lost(Vec<TopicPartition>),
}

/// A listener keeping what it was told.
#[derive(Debug, Clone, Default)]
struct Ledger(Arc<Mutex<Vec<Told>>>);

impl Ledger {
    fn all(&self) -> Vec<Told> {
        self.0.lock().unwrap().clone()
    }

    /// Whether it was told of a loss, and assigned partitions after it.
    fn lost_and_assigned_again(&self) -> bool {
        let all = self.all();
        all.iter()
            .position(|t| matches!(t, Told::Lost(_)))
            .is_some_and(|at| {
                all[at..]
                    .iter()
                    .any(|t| matches!(t, Told::Assigned(p) if !p.is_empty()))
            })
    }
}

impl RebalanceListener for Ledger {
    fn on_assigned<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.0
            .lock()
            .unwrap()
            .push(Told::Assigned(partitions.to_vec()));
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.0
            .lock()
            .unwrap()
            .push(Told::Revoked(partitions.to_vec()));
        Box::pin(async {})
    }

    fn on_lost<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.0.lock().unwrap().push(Told::Lost(partitions.to_vec()));
        Box::pin(async {})
    }
}

/// `group`'s member with client id `client`, at the defaults but for the hour-long
/// auto-commit interval (see the module's text).
fn member(bootstrap: &str, group: &str, client: &str, ledger: &Ledger) -> Consumer {
    group_builder_at_defaults(bootstrap, group, "range")
        .client_id(client)
        .set("auto.commit.interval.ms", "3600000")
        .rebalance_listener(ledger.clone())
        .build()
        .unwrap()
}

/// Removes the member `member_id` from `group`, as an operator's admin call does (a LeaveGroup
/// naming it, KIP-345's batch form).
async fn remove_member(pool: &Pool, group: &str, member_id: &str) {
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_members(vec![
            MemberIdentity::default()
                .with_member_id(StrBytes::from_string(member_id.to_owned()))
                .with_reason(Some(StrBytes::from_static_str("removed by the test"))),
        ]);
    let answer = pool.send(BrokerTarget::Any, &request).await.unwrap();
    assert_eq!(answer.error_code, 0, "{answer:?}");
    assert!(
        answer.members.iter().all(|m| m.error_code == 0),
        "{answer:?}"
    );
}

/// The partitions of an OffsetCommit request, with its member id.
fn commit_of(request: &OffsetCommitRequest) -> (String, BTreeSet<TopicPartition>) {
    let partitions = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.as_str(), p.partition_index))
        })
        .collect();
    (request.member_id.to_string(), partitions)
}

/// Two members share a topic's two partitions, each member having read records it has not
/// committed (no periodic commit comes). The group removes the member behind the proxy: its
/// listener is told its partition is lost (never revoked), it joins again under a new member
/// id, and of everything it sends after its loss no OffsetCommit carries its old member id or
/// names a partition it was not assigned again. Its close then commits, under the new id, only
/// what it owns. Every record is read, and the group's offsets end at the logs' ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_group_removed_commits_nothing_of_what_it_lost() {
    let (kafka, proxy) = kafka_hanging_up(ApiKey::OffsetCommit).await;
    proxy.hang_up(false);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("lost");
    create_topics(&pool, &[(&topic, 2)]).await;
    for partition in 0..2 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
    }
    let group = unique_name("g");
    let (ledger_a, ledger_b) = (Ledger::default(), Ledger::default());
    let mut a = member(&proxy.bootstrap(), &group, "lost-a", &ledger_a);
    let mut b = member(kafka.bootstrap(), &group, "lost-b", &ledger_b);
    a.subscribe([topic.as_str()]).unwrap();
    b.subscribe([topic.as_str()]).unwrap();
    let (a, b) = (Driven::start("a", a, STEP), Driven::start("b", b, STEP));
    wait_until(
        "each member owning one partition, every record read",
        REBALANCE_WITHIN,
        || {
            a.assignment().len() == 1
                && b.assignment().len() == 1
                && a.received() + b.received() >= 20
        },
        || (a.state(), b.state()),
    )
    .await;
    let owned_by_a = a.assignment();

    let described = kcon_admin::describe_group(&pool, &group).await.unwrap();
    let removed = described
        .members
        .iter()
        .find(|m| m.client_id == "lost-a")
        .unwrap_or_else(|| panic!("no member of client id lost-a: {described:?}"))
        .member_id
        .clone();
    let mark = proxy.requests().len();
    remove_member(&pool, &group, &removed).await;
    wait_until(
        "the removed member told of its loss and assigned again",
        REBALANCE_WITHIN,
        || ledger_a.lost_and_assigned_again() && a.assignment().len() + b.assignment().len() == 2,
        || (ledger_a.all(), a.assignment(), b.assignment()),
    )
    .await;
    let told = ledger_a.all();
    let lost_at = told
        .iter()
        .position(|t| matches!(t, Told::Lost(_)))
        .expect("a loss");
    let Told::Lost(lost) = &told[lost_at] else {
        unreachable!()
    };
    assert_eq!(
        lost.iter().cloned().collect::<BTreeSet<_>>(),
        owned_by_a,
        "{told:?}"
    );
    assert!(
        !told[..lost_at]
            .iter()
            .any(|t| matches!(t, Told::Revoked(p) if !p.is_empty())),
        "revoked before the loss: {told:?}"
    );
    let assigned_again: BTreeSet<TopicPartition> = told[lost_at..]
        .iter()
        .filter_map(|t| match t {
            Told::Assigned(p) => Some(p.clone()),
            _ => None,
        })
        .flatten()
        .collect();

    // More records once the group is whole again; then both close, committing what they own.
    let mut ends = Vec::new();
    for partition in 0..2 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
        ends.push(fetch_high_watermark(&pool, &topic, partition).await);
    }
    wait_until(
        "the new records read",
        REBALANCE_WITHIN,
        || {
            let mut all = a.state().records;
            all.extend(b.state().records);
            let read = offsets_by_partition(&all);
            (0..2).all(|p| {
                read.get(&TopicPartition::new(topic.as_str(), p))
                    .is_some_and(|o| o.contains(&(ends[p as usize] - 1)))
            })
        },
        || (a.state(), b.state()),
    )
    .await;
    let (a, state_a) = a.stop().await;
    let (b, state_b) = b.stop().await;
    a.close().await.unwrap();
    b.close().await.unwrap();

    let sent = proxy.requests();
    let after = &sent[mark..];
    let commits: Vec<(String, BTreeSet<TopicPartition>)> = after
        .iter()
        .filter(|f| f.api_key == Some(ApiKey::OffsetCommit as i16))
        .map(|f| commit_of(&f.request::<OffsetCommitRequest>().1))
        .collect();
    for (member_id, partitions) in &commits {
        assert_ne!(
            member_id, &removed,
            "a commit under the removed member id after its removal: {partitions:?}"
        );
        assert!(
            partitions.is_subset(&assigned_again),
            "committed {partitions:?}, assigned again only {assigned_again:?}"
        );
    }
    assert!(
        !commits.is_empty(),
        "its close committed nothing: {:?}",
        after.iter().map(|f| f.api_key).collect::<Vec<_>>()
    );
    let rejoined = after
        .iter()
        .filter(|f| f.api_key == Some(ApiKey::JoinGroup as i16))
        .count();
    assert!(rejoined > 0, "the removed member did not join again");

    // Every record read at least once; the group's offsets end at the logs' ends.
    let mut all: Vec<Record> = state_a.records;
    all.extend(state_b.records);
    let read = offsets_by_partition(&all);
    for partition in 0..2 {
        let tp = TopicPartition::new(topic.as_str(), partition);
        let got: BTreeSet<i64> = read[&tp].iter().copied().collect();
        assert_eq!(got, (0..ends[partition as usize]).collect(), "{tp}");
    }
    let offsets = committed(kafka.bootstrap(), &group, &topic, 2).await;
    for partition in 0..2 {
        let tp = TopicPartition::new(topic.as_str(), partition);
        assert_eq!(offsets[&tp], Some(ends[partition as usize]), "{tp}");
    }
}
