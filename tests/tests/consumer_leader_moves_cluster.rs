//! Leaders moved cleanly under consumers on Apache Kafka (the three-node cluster,
//! `kcon_tests::kafka::Kafka::cluster`), as an operator moves them: `kafka-reassign-partitions`
//! reorders a partition's replicas and `kafka-leader-election` elects the preferred one, at a
//! new leader epoch. Nothing is truncated, so a consumer reads every record exactly once and
//! tells no truncation.
//!
//! A new leader's epoch begins in its own log when it is elected, but reaches the other
//! replicas only with the first record written in it: until then they lack it. A consumer
//! whose position came from ListOffsets then carries an epoch other replicas do not have.

use std::time::Duration;

use kcon::{Consumer, ConsumerBuilder, TopicPartition, Truncation};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::cluster_faults::{
    Load, PartitionView, assert_read_exactly_once, move_leader, produce_to, rack_of, reassign,
    wait_for_partition,
};
use kcon_tests::cluster_faults::{read, values, written};
use kcon_tests::consumer::{Driven, STEP, expect_no_record, poll_until, recv_n, wait_until};
use kcon_tests::kafka::{Kafka, NewTopic, create};
use kcon_tests::pool::config;
use kcon_tests::truncation::Told;

/// How long records may take to come, across a leader change.
const PATIENCE: Duration = Duration::from_secs(60);

/// A consumer at the user's defaults (`auto.offset.reset=latest`), telling `told`.
fn consumer(kafka: &Kafka, told: &Told) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .hooks(told.clone())
}

/// A topic of one partition on all three nodes, `kept` records written in its first leader
/// epoch, and its leader moved to the second replica: that replica leads at a new epoch in
/// which nothing is written yet. Returns the topic and the partition as its new leader
/// describes it (replicas in the order `[new leader, old leader, third]`).
async fn moved_once(
    kafka: &Kafka,
    pool: &Pool,
    prefix: &str,
    kept: &[String],
) -> (String, PartitionView) {
    let topic = unique_name(prefix);
    create(pool, &[NewTopic::new(&topic, 1)]).await;
    let start = wait_for_partition(pool, None, &topic, 0, "led, all replicas in sync", |p| {
        p.leader.is_some() && p.isr.len() == 3
    })
    .await;
    let first = start.leader.expect("a leader");
    wait_for_partition(
        pool,
        Some(first),
        &topic,
        0,
        "led by its first leader",
        |p| p.leader == Some(first),
    )
    .await;
    assert_eq!(produce_to(pool, first, &topic, 0, -1, kept).await, 0);
    let second = *start
        .replicas
        .iter()
        .find(|&&r| r != first)
        .expect("another replica");
    let third = *start
        .replicas
        .iter()
        .find(|&&r| r != first && r != second)
        .expect("a third replica");
    let moved = move_leader(kafka, pool, &topic, 0, &[second, first, third]).await;
    assert!(
        moved.leader_epoch > start.leader_epoch,
        "a new leader epoch: {start:?} then {moved:?}"
    );
    (topic, moved)
}

/// A consumer at the end of the log (`auto.offset.reset=latest`: its position and epoch come
/// from the leader's ListOffsets answer, the epoch one nothing is written in yet) pauses the
/// partition; the leader moves back to the first replica, which never had that epoch, and
/// records come. Resumed, the consumer validates its position with the new leader, which
/// answers that its older epoch ends at the position: nothing there was ever truncated, and
/// the consumer reads every record written since, and tells no truncation. (The Java client
/// and franz-go call such a position valid; taking it for a truncation whose point is unknown
/// reset the position by `auto.offset.reset` past the records written meanwhile.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_in_an_epoch_the_new_leader_never_had_is_valid_and_nothing_is_skipped() {
    let kafka = Kafka::cluster();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let kept = values("kept", 3);
    let (topic, moved) = moved_once(kafka, &pool, "epochless", &kept).await;
    let tp = TopicPartition::new(&topic, 0);

    let told = Told::default();
    let mut consumer = consumer(kafka, &told).build().unwrap();
    consumer.assign([tp.clone()]).unwrap();
    let end = kept.len() as i64;
    poll_until(&mut consumer, "at the log end, fetching", PATIENCE, |c| {
        c.position(&tp) == Some(end) && c.metrics().fetch_latency.count > 0
    })
    .await;
    consumer.pause([tp.clone()]).unwrap();

    let back = [moved.replicas[1], moved.replicas[0], moved.replicas[2]];
    move_leader(kafka, &pool, &topic, 0, &back).await;
    let new = values("new", 4);
    assert_eq!(produce_to(&pool, back[0], &topic, 0, -1, &new).await, end);

    consumer.resume([tp.clone()]).unwrap();
    assert_eq!(
        read(&recv_n(&mut consumer, new.len(), PATIENCE).await),
        written(end, &new),
        "every record written while the leader moved"
    );
    expect_no_record(&mut consumer, Duration::from_millis(500)).await;
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
    assert_eq!(consumer.metrics().truncations, 0);
    consumer.close().await.unwrap();
}

/// A consumer in the third replica's rack (`client.rack`, KIP-392) at the end of the log is
/// sent by the leader to read from that follower, which lacks the leader's new epoch until a
/// record is written in it: asked with it as the last fetched epoch, the follower answers with
/// a diverging epoch at once. The consumer must wait for records as any idle consumer does
/// (each Fetch held up to `fetch.max.wait.ms`), not ask again and again, and then read what
/// comes, telling no truncation: the follower is behind, not truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sent_to_a_follower_without_the_new_epoch_waits_for_records_without_spinning() {
    let kafka = Kafka::cluster();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let kept = values("kept", 3);
    let (topic, moved) = moved_once(kafka, &pool, "follower", &kept).await;
    let tp = TopicPartition::new(&topic, 0);
    let follower = moved.replicas[2];

    let told = Told::default();
    let mut consumer = consumer(kafka, &told)
        .set("client.rack", rack_of(follower))
        .build()
        .unwrap();
    consumer.assign([tp.clone()]).unwrap();
    let end = kept.len() as i64;
    poll_until(&mut consumer, "at the log end, fetching", PATIENCE, |c| {
        c.position(&tp) == Some(end) && c.metrics().fetch_latency.count > 0
    })
    .await;

    // Idle for 3 s: at the default fetch.max.wait.ms (500 ms) about six Fetches are answered.
    let before = consumer.metrics().fetch_latency.count;
    expect_no_record(&mut consumer, Duration::from_secs(3)).await;
    let fetches = consumer.metrics().fetch_latency.count - before;
    assert!(
        fetches <= 30,
        "{fetches} Fetches answered in 3 s of an idle consumer: it spins"
    );

    let new = values("new", 4);
    assert_eq!(
        produce_to(&pool, moved.replicas[0], &topic, 0, -1, &new).await,
        end
    );
    assert_eq!(
        read(&recv_n(&mut consumer, new.len(), PATIENCE).await),
        written(end, &new)
    );
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
    consumer.close().await.unwrap();
}

/// A group member reads a topic of three partitions while records keep coming, and leaders
/// move under it as an operator moves them: partition 0's by a reassignment that leaves its
/// leader out (then back to three replicas, its data copied to the one added), partition 1's
/// by reordering its replicas and electing the preferred one; between the two the member
/// closes (committing where it stands) and the next one goes on from the commit. Every record
/// is read exactly once, by one member or the other, each partition in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reads_every_record_once_while_leaders_move_under_load() {
    let kafka = Kafka::cluster();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("moving");
    let group = unique_name("moving-group");
    create(&pool, &[NewTopic::new(&topic, 3)]).await;
    let load = Load::start(kafka.bootstrap(), &topic, Duration::from_millis(10));
    let told = Told::default();
    let member = |told: &Told| {
        let mut c = consumer(kafka, told)
            .group_id(&group)
            .set("auto.offset.reset", "earliest")
            .build()
            .unwrap();
        c.subscribe([topic.as_str()]).unwrap();
        Driven::start("member", c, STEP)
    };
    let first = member(&told);
    wait_until(
        "the first member reading",
        PATIENCE,
        || first.received() > 0,
        || first.state().errors,
    )
    .await;

    // Partition 0: a reassignment to the two other replicas moves its leader; then back to
    // three, the old leader a follower again.
    let p0 = wait_for_partition(&pool, None, &topic, 0, "led", |p| p.leader.is_some()).await;
    let old = p0.leader.expect("a leader");
    let others: Vec<i32> = p0.replicas.iter().copied().filter(|&r| r != old).collect();
    let sent = load.sent();
    let moved = reassign(kafka, &pool, &topic, 0, &others).await;
    assert_ne!(moved.leader, Some(old), "{moved:?}");
    reassign(kafka, &pool, &topic, 0, &[others[0], others[1], old]).await;
    load.wait_for_more(sent, 50, "after partition 0's leader moved")
        .await;

    // The member goes, committing where it stands; the next goes on from there.
    let (c, first_read) = first.stop().await;
    c.close().await.unwrap();
    assert_eq!(first_read.errors, Vec::<String>::new());
    let second = member(&told);

    // Partition 1: its replicas reordered and the preferred one elected.
    let p1 = wait_for_partition(&pool, None, &topic, 1, "led", |p| p.leader.is_some()).await;
    let order = [p1.replicas[1], p1.replicas[0], p1.replicas[2]];
    let sent = load.sent();
    let moved = move_leader(kafka, &pool, &topic, 1, &order).await;
    assert!(
        moved.leader_epoch > p1.leader_epoch,
        "{p1:?} then {moved:?}"
    );
    load.wait_for_more(sent, 50, "after partition 1's leader moved")
        .await;

    let written = load.stop().await;
    let first_count = first_read.records.len();
    wait_until(
        "every record read",
        PATIENCE,
        || first_count + second.received() >= written.len(),
        || (first_count, second.received(), written.len()),
    )
    .await;
    let (c, second_read) = second.stop().await;
    c.close().await.unwrap();
    assert_eq!(second_read.errors, Vec::<String>::new());
    assert_read_exactly_once(&written, &[&first_read.records, &second_read.records]);
    assert_eq!(told.truncations(), Vec::<Truncation>::new());
}
