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

use kcon::{ApiKey, Consumer, Record, TopicPartition};
use kcon_codec::kafka_protocol::messages::leave_group_request::MemberIdentity;
use kcon_codec::kafka_protocol::messages::{GroupId, LeaveGroupRequest, OffsetCommitRequest};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    Driven, ListenerCall, REBALANCE_WITHIN, RecordingListener, STEP, group_builder_at_defaults,
    offsets_by_partition, wait_until,
};
use kcon_tests::hangup::kafka_hanging_up;
use kcon_tests::kafka::create_topics;
use kcon_tests::offsets::{fetch_high_watermark, now_ms, produce};
use kcon_tests::policy::committed;
use kcon_tests::pool::config;

/// Whether `listener` was told of a loss, and assigned partitions after it.
fn lost_and_assigned_again(listener: &RecordingListener) -> bool {
    let calls = listener.calls();
    calls
        .iter()
        .position(|c| matches!(c, ListenerCall::Lost(_)))
        .is_some_and(|at| {
            calls[at..]
                .iter()
                .any(|c| matches!(c, ListenerCall::Assigned(p) if !p.is_empty()))
        })
}

/// `group`'s member with client id `client`, at the defaults but for the hour-long
/// auto-commit interval (see the module's text).
fn member(bootstrap: &str, group: &str, client: &str, listener: &RecordingListener) -> Consumer {
    group_builder_at_defaults(bootstrap, group, "range")
        .client_id(client)
        .set("auto.commit.interval.ms", "3600000")
        .rebalance_listener(listener.clone())
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
    let (listener_a, listener_b) = (RecordingListener::new(), RecordingListener::new());
    let mut a = member(&proxy.bootstrap(), &group, "lost-a", &listener_a);
    let mut b = member(kafka.bootstrap(), &group, "lost-b", &listener_b);
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
        || lost_and_assigned_again(&listener_a) && a.assignment().len() + b.assignment().len() == 2,
        || (listener_a.calls(), a.assignment(), b.assignment()),
    )
    .await;
    let told = listener_a.calls();
    let lost_at = told
        .iter()
        .position(|t| matches!(t, ListenerCall::Lost(_)))
        .expect("a loss");
    let ListenerCall::Lost(lost) = &told[lost_at] else {
        unreachable!()
    };
    assert_eq!(
        lost.iter().cloned().collect::<BTreeSet<_>>(),
        owned_by_a,
        "{told:?}"
    );
    assert!(
        !told[..lost_at].iter().any(
            |t| matches!(t, ListenerCall::Revoked { partitions, .. } if !partitions.is_empty())
        ),
        "revoked before the loss: {told:?}"
    );
    let assigned_again: BTreeSet<TopicPartition> = told[lost_at..]
        .iter()
        .filter_map(|t| match t {
            ListenerCall::Assigned(p) => Some(p.clone()),
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
