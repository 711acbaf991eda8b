//! A share consumer (KIP-932) across a leader moved as an operator moves it, on Apache Kafka's
//! three-node cluster (`Kafka::cluster`): `kafka-reassign-partitions` reorders the partition's
//! replicas and `kafka-leader-election` elects the preferred one. The old leader answers the
//! member's next ShareFetch with NOT_LEADER_OR_FOLLOWER naming the new leader and its epoch
//! (KIP-951); the member fetches from it at once, before any metadata says so, and what is
//! written there is handed out.
//!
//! The move is read from what kcon logs at DEBUG ("the partition's leader moved", with the
//! leader and epoch the answer named), captured for this suite's process
//! (`kcon_tests::logs::capture_at`).

use std::collections::BTreeMap;

use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{move_leader, produce_to, values, wait_for_partition};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::logs;
use kcon_tests::pool::config;
use kcon_tests::share::{RECORDS_WITHIN, accept, configure, consumer, joined, receive, seen};
use tracing_subscriber::filter::LevelFilter;

/// Records written before the move, and after it.
const EACH: usize = 10;

/// One partition on all three nodes; a share member (explicit acknowledgement) reads and
/// accepts what its first leader took, the leadership moves to the second replica, and the
/// member reads what the new leader takes: every record once, at delivery count 1, every
/// acknowledgement taken. The member moved on the old leader's answer, to the leader and epoch
/// the cluster has.
///
/// The first records are committed before the move: Kafka keeps a share-partition's
/// acquisitions in its leader's memory, and a new leader starts from the share coordinator's
/// state, so records acquired and not yet acknowledged when the leader moves come again from
/// the new leader (at-least-once), with the delivery count the coordinator last stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_member_follows_the_leader_the_old_one_names() {
    let logs = logs::capture_at(LevelFilter::DEBUG);
    let kafka = Kafka::cluster();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name("share-moves");
    create(&pool, &[NewTopic::new(&topic, 1)]).await;
    let start = wait_for_partition(&pool, None, &topic, 0, "led, all replicas in sync", |p| {
        p.leader.is_some() && p.isr.len() == 3
    })
    .await;
    let first = start.leader.expect("a leader");
    let group = unique_name("share-group");
    configure(&pool, &group, &[]).await;

    let mut member = consumer(
        kafka.bootstrap(),
        &group,
        &[("share.acknowledgement.mode", "explicit")],
    );
    joined(&mut member, &topic, 1).await;
    let before = values("before", EACH);
    produce_to(&pool, first, &topic, 0, -1, &before).await;
    let mut got = receive(&mut member, EACH, RECORDS_WITHIN, accept).await;
    assert_eq!(got.len(), EACH, "{got:?}");
    let outcomes = member.commit().await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");

    let mark = logs.mark();
    let others: Vec<i32> = start
        .replicas
        .iter()
        .copied()
        .filter(|&r| r != first)
        .collect();
    let order = [others[0], first, others[1]];
    let moved = move_leader(kafka, &pool, &topic, 0, &order).await;
    let leader = moved.leader.expect("a leader");
    assert_eq!(leader, others[0]);
    let after = values("after", EACH);
    produce_to(&pool, leader, &topic, 0, -1, &after).await;
    got.extend(receive(&mut member, EACH, RECORDS_WITHIN, accept).await);
    let outcomes = member.commit().await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    member.close().await.unwrap();

    let expected: BTreeMap<(i32, i64), u16> = (0..2 * EACH as i64).map(|o| ((0, o), 1)).collect();
    assert_eq!(seen(&got), expected);
    let texts: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap())
        .collect();
    assert_eq!(texts, [before, after].concat());

    let hint = format!("leader={leader} epoch={}", moved.leader_epoch);
    let lines: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains(&group) && l.contains("the partition's leader moved"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(&hint)),
        "no move to {hint} on the old leader's answer: {lines:?}"
    );
}
