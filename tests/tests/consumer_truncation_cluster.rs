//! A log truncated by an unclean leader election on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`), under an assigned consumer and a group's commit.
//!
//! The partition has two replicas, A (its leader) and B, and `unclean.leader.election.enable`.
//! B is killed and leaves the ISR; A takes records B never gets (acks=1); A is killed and B
//! started: the controller elects B, out of sync, leader at a new epoch (an unclean election),
//! and what only A had is gone. New records go to B, and A, started again, truncates its log to
//! B's. The third node keeps the controller quorum with whichever of A and B runs (every node
//! is a controller too).
//!
//! Both consumers read on: they find where the logs part (KIP-320), every record written after
//! the election is read and nothing else, nothing stops, and each tells the truncation once
//! (`ConsumerHooks::on_truncation`, `Metrics::truncations`). A third, under
//! `auto.offset.reset=none`, gets the truncation as its error (the Java client's
//! LogTruncationException) and reads on once the application seeks where the logs part.

use std::time::Duration;

use kcon::{Consumer, TopicPartition};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{Restore, produce_to, wait_for_partition, wait_for_three_brokers};
use kcon_tests::cluster_faults::{read, values, written};
use kcon_tests::consumer::{expect_no_record, recv_n};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;
use kcon_tests::truncation::{Told, expect_truncation_error};

/// How long records may take to come, across a leader change.
const PATIENCE: Duration = Duration::from_secs(60);

/// Records both replicas hold.
const KEPT: usize = 5;
/// Records only A takes, lost in the election.
const LOST: usize = 7;
/// Records B takes as the new leader.
const NEW: usize = 4;

/// A consumer at the user's defaults but for reading from the start of the log.
fn consumer(kafka: &Kafka, group: Option<&str>, told: &Told) -> Consumer {
    consumer_resetting(kafka, group, told, "earliest")
}

/// A consumer at the user's defaults but for `auto.offset.reset`.
fn consumer_resetting(kafka: &Kafka, group: Option<&str>, told: &Told, reset: &str) -> Consumer {
    let b = Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .set("auto.offset.reset", reset)
        .hooks(told.clone());
    match group {
        Some(g) => b.group_id(g).build().unwrap(),
        None => b.build().unwrap(),
    }
}

/// Asserts `told` is the one truncation of `tp` from `position` back to `resumed_at`, where
/// epoch `epoch` ends on the new leader's log.
fn assert_told_once(told: &Told, tp: &TopicPartition, position: i64, resumed_at: i64, epoch: i32) {
    let t = told.truncations();
    assert_eq!(t.len(), 1, "told once: {t:?}");
    assert_eq!(&t[0].partition, tp);
    assert_eq!(
        (t[0].position, t[0].resumed_at, t[0].diverged_in_epoch),
        (position, resumed_at, Some(epoch)),
        "{t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_on_across_an_unclean_leader_election_that_truncates_the_log() {
    let kafka = Kafka::cluster();
    let restore = Restore(kafka);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("unclean");
    let group = unique_name("unclean-group");
    create(
        &pool,
        &[NewTopic::new(&topic, 1)
            .replication(2)
            .config("unclean.leader.election.enable", "true")
            .config("min.insync.replicas", "1")],
    )
    .await;
    let tp = TopicPartition::new(&topic, 0);
    let start = wait_for_partition(&pool, None, &topic, 0, "led, both replicas in sync", |p| {
        p.leader.is_some() && p.isr.len() == 2
    })
    .await;
    let a = start.leader.expect("a leader");
    let b = *start
        .replicas
        .iter()
        .find(|&&r| r != a)
        .expect("a second replica");
    let epoch_a = start.leader_epoch;
    wait_for_partition(&pool, Some(a), &topic, 0, "led by A, as A sees it", |p| {
        p.leader == Some(a)
    })
    .await;

    let kept = values("kept", KEPT);
    assert_eq!(produce_to(&pool, a, &topic, 0, -1, &kept).await, 0);

    // An assigned consumer reads on through everything; a group's first member reads and
    // commits what A alone will hold.
    let assigned_told = Told::default();
    let mut assigned = consumer(kafka, None, &assigned_told);
    assigned.assign([tp.clone()]).unwrap();
    assert_eq!(
        read(&recv_n(&mut assigned, KEPT, PATIENCE).await),
        written(0, &kept)
    );
    // So does one under auto.offset.reset=none, from where the application sought.
    let strict_told = Told::default();
    let mut strict = consumer_resetting(kafka, None, &strict_told, "none");
    strict.assign([tp.clone()]).unwrap();
    strict.seek(tp.clone(), 0).unwrap();
    assert_eq!(
        read(&recv_n(&mut strict, KEPT, PATIENCE).await),
        written(0, &kept)
    );

    kafka.kill_node(b);
    wait_for_partition(&pool, Some(a), &topic, 0, "in sync on A alone", |p| {
        p.isr == [a]
    })
    .await;
    let lost = values("lost", LOST);
    assert_eq!(produce_to(&pool, a, &topic, 0, 1, &lost).await, KEPT as i64);
    let old_end = (KEPT + LOST) as i64;
    assert_eq!(
        read(&recv_n(&mut assigned, LOST, PATIENCE).await),
        written(KEPT as i64, &lost)
    );
    assert_eq!(
        read(&recv_n(&mut strict, LOST, PATIENCE).await),
        written(KEPT as i64, &lost)
    );
    let first_told = Told::default();
    let mut first = consumer(kafka, Some(&group), &first_told);
    first.subscribe([topic.as_str()]).unwrap();
    let mut all = kept.clone();
    all.extend(lost.iter().cloned());
    assert_eq!(
        read(&recv_n(&mut first, KEPT + LOST, PATIENCE).await),
        written(0, &all)
    );
    first.commit().await.unwrap();
    first.close().await.unwrap();

    // The unclean election: A goes, B comes back out of sync and is elected.
    kafka.kill_node(a);
    kafka.start_node(b);
    let elected = wait_for_partition(&pool, Some(b), &topic, 0, "led by B, as B sees it", |p| {
        p.leader == Some(b)
    })
    .await;
    assert!(
        elected.leader_epoch > epoch_a,
        "a new leader epoch: {elected:?}"
    );
    let new = values("new", NEW);
    assert_eq!(
        produce_to(&pool, b, &topic, 0, 1, &new).await,
        KEPT as i64,
        "B's log ended where the records both replicas had end"
    );

    // The assigned consumer read on from where the logs part: the new records, nothing else.
    assert_eq!(
        read(&recv_n(&mut assigned, NEW, PATIENCE).await),
        written(KEPT as i64, &new)
    );
    expect_no_record(&mut assigned, Duration::from_millis(500)).await;
    assert_told_once(&assigned_told, &tp, old_end, KEPT as i64, epoch_a);
    assert_eq!(assigned.metrics().truncations, 1);

    // Under auto.offset.reset=none the truncation is the application's: the receiving call
    // fails naming the partition, where the logs part and the setting; nothing is read until it
    // seeks there, and then the new records.
    let diverges_at = KEPT as i64;
    expect_truncation_error(
        &mut strict,
        &strict_told,
        &tp,
        old_end,
        diverges_at,
        PATIENCE,
    )
    .await;
    strict.seek(tp.clone(), KEPT as i64).unwrap();
    assert_eq!(
        read(&recv_n(&mut strict, NEW, PATIENCE).await),
        written(KEPT as i64, &new)
    );
    strict.close().await.unwrap();

    // The group's next member starts from its commit, past the new log's end.
    let second_told = Told::default();
    let mut second = consumer(kafka, Some(&group), &second_told);
    second.subscribe([topic.as_str()]).unwrap();
    assert_eq!(
        read(&recv_n(&mut second, NEW, PATIENCE).await),
        written(KEPT as i64, &new)
    );
    expect_no_record(&mut second, Duration::from_millis(500)).await;
    assert_told_once(&second_told, &tp, old_end, KEPT as i64, epoch_a);
    assert_eq!(second.metrics().truncations, 1);
    second.commit().await.unwrap();
    assert_eq!(
        second
            .committed([tp.clone()])
            .await
            .unwrap()
            .get(&tp)
            .copied(),
        Some(Some((KEPT + NEW) as i64))
    );

    // A comes back as B's follower and truncates its log to B's.
    kafka.start_node(a);
    wait_for_partition(&pool, Some(b), &topic, 0, "in sync on both again", |p| {
        p.leader == Some(b) && p.isr.len() == 2
    })
    .await;
    let more = values("more", 2);
    assert_eq!(
        produce_to(&pool, b, &topic, 0, -1, &more).await,
        (KEPT + NEW) as i64
    );
    assert_eq!(
        read(&recv_n(&mut assigned, 2, PATIENCE).await),
        written((KEPT + NEW) as i64, &more)
    );
    assert_eq!(assigned_told.truncations().len(), 1, "told once");
    assigned.close().await.unwrap();
    second.close().await.unwrap();
    wait_for_three_brokers(&pool).await;
    drop(restore);
}
