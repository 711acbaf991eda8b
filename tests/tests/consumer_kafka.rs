//! `kcon::Consumer` on Apache Kafka (`Kafka::single()`), at the client's defaults: group
//! consumption with commits and successors, at-least-once through auto-commit and `close`,
//! explicit offset stores, commits with metadata (the consumer's, its commit handle's, a
//! listener's) read back, cooperative groups of two consumers with a listener that commits on
//! revocation, manual assignment (reset policies, seeks, pause/resume, watermarks, lag), lookups
//! by timestamp and resets by duration answered with the log's real offsets, regex
//! subscriptions, batch sizes and the `Stream`, records lent in place (`recv_borrowed`),
//! metrics, configuration errors and misuse, and unsubscribing, closing or dropping a consumer
//! (each leaves its group at once; a proxy in front of the node stands for a broker that is
//! gone).
//!
//! `current_lag`, the lag as the last Fetch answer left it, with no request sent (the Java
//! client's `currentLag`, KIP-695): a partition that brings no records (empty, read to its end,
//! or only a commit marker past its records) gets its end from the answers all the same. Those
//! tests set `fetch.max.wait.ms` to 20 s: every answer that comes sooner comes because it has
//! something to say.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_core::Stream;
use kcon::{
    Consumer, ConsumerBuilder, ErrorKind, ListenerFuture, OffsetAndMetadata, RebalanceContext,
    RebalanceListener, Record, ResetPolicy, TopicPartition,
};
use kcon_codec::compression::Compression;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::records::{NewRecord, RecordBatchBuilder};
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    Driven, ListenerBehaviour, ListenerCall, REBALANCE_WITHIN, RecordingListener, STEP,
    assert_exactly, assert_offsets_exactly, assert_once_in_group, builder_at_defaults,
    expect_no_record, group_builder_at_defaults, group_members, offsets_by_partition, partition_of,
    partitions, poll_until, recv_n, wait_for_split, wait_until,
};
use kcon_tests::kafka::{Kafka, create_topics, single_with};
use kcon_tests::offsets::{now_ms, produce, produce_at, produce_batch, produce_spread};
use kcon_tests::produce::AnswerDropper;

/// The single node's bootstrap list.
fn bootstrap() -> &'static str {
    Kafka::single().bootstrap()
}

/// Each partition of `all` with `offset` (where reading starts or ends).
fn ends(all: &BTreeSet<TopicPartition>, offset: i64) -> BTreeMap<TopicPartition, i64> {
    all.iter().map(|tp| (tp.clone(), offset)).collect()
}

/// Far below a 20 s long poll, far above what an answer takes.
const PROMPT: Duration = Duration::from_secs(8);

/// A new topic of `partitions` partitions, for the `current_lag` tests.
async fn topic(partitions: i32) -> String {
    let name = unique_name("lag");
    single_with(&[(&name, partitions)]).await;
    name
}

/// A consumer without a group whose Fetch answers wait up to 20 s for records.
fn consumer() -> Consumer {
    Consumer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.wait.ms", "20000")
        .build()
        .unwrap()
}

/// Receives until `done` holds, each wait for a batch at most 50 ms, all within [`PROMPT`];
/// returns the records received.
async fn receive_until(consumer: &mut Consumer, done: impl Fn(&Consumer) -> bool) -> usize {
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + PROMPT;
    while !done(consumer) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PROMPT:?}"
        );
        if let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(50), consumer.recv_batch()).await
        {
            received += batch.unwrap().len();
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_lag_comes_from_the_fetch_answers_empty_partitions_included() {
    let topic = topic(2).await;
    let producer = Producer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..250 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(&topic, format!("v{i}")).with_partition(0))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await.expect("the producer closes");

    let (full, empty) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let mut consumer = consumer();
    consumer.assign([full.clone(), empty.clone()]).unwrap();
    assert_eq!(consumer.current_lag(&full), None, "nothing fetched yet");
    let first = consumer.recv_batch().await.unwrap();
    assert!(!first.is_empty());
    // The answer that brought them said where the log ends.
    assert_eq!(consumer.current_lag(&full), Some(250 - first.len() as i64));
    // The empty partition's end comes in answers without records for it: no record says so.
    let rest = receive_until(&mut consumer, |c| {
        c.current_lag(&full) == Some(0) && c.current_lag(&empty) == Some(0)
    })
    .await;
    assert_eq!(first.len() + rest, 250);
    assert_eq!(consumer.position(&full), Some(250));
    consumer.close().await.unwrap();
}

/// Records of a transaction read before its commit: the commit marker then comes alone, in an
/// answer with no records, and moves the position past it; the lag is 0, not 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_marker_alone_moves_the_position_past_it() {
    let topic = topic(1).await;
    let tp = TopicPartition::new(&topic, 0);
    let producer = Producer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .set("transactional.id", unique_name("lag"))
        .build()
        .unwrap();
    producer
        .init_transactions(Duration::from_secs(30))
        .await
        .unwrap();
    producer
        .begin_transaction(Duration::from_secs(30))
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(&topic, format!("t{i}")).with_partition(0))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }

    // read_uncommitted (the default) reads them before the commit.
    let mut consumer = consumer();
    consumer.assign([tp.clone()]).unwrap();
    let read = receive_until(&mut consumer, |c| c.current_lag(&tp) == Some(0)).await;
    assert_eq!(read, 10);
    assert_eq!(consumer.position(&tp), Some(10));

    producer
        .commit_transaction(Duration::from_secs(30))
        .await
        .unwrap();
    producer.close().await.expect("the producer closes");
    // The marker at offset 10: the high watermark is 11 and the position goes past it.
    let more = receive_until(&mut consumer, |c| c.position(&tp) == Some(11)).await;
    assert_eq!(more, 0);
    assert_eq!(consumer.current_lag(&tp), Some(0));
    consumer.close().await.unwrap();
}

/// A consumer in a group reads every record exactly once, commits and closes; the next
/// consumer of the group starts at the commits: it reads nothing old, and then exactly the
/// records produced after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_consumer_reads_every_record_once_and_its_successor_starts_at_the_commits() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 3)]).await;
    produce_spread(&pool, &topic, 3, 90, 10).await;
    let all = partitions(&topic, 3);
    let group = unique_name("g");

    let mut first = group_builder_at_defaults(bootstrap(), &group, "range")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    first.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut first, 90, REBALANCE_WITHIN).await;
    assert_exactly(&records, &BTreeMap::new(), &ends(&all, 30), 10);
    assert_eq!(first.assignment(), all);
    expect_no_record(&mut first, Duration::from_millis(500)).await;
    for tp in &all {
        assert_eq!(first.position(tp), Some(30), "{tp}");
    }
    first.commit().await.unwrap();
    let committed = first.committed(all.clone()).await.unwrap();
    assert_eq!(
        committed,
        all.iter().map(|tp| (tp.clone(), Some(30))).collect()
    );
    first.close().await.unwrap();

    let mut second = group_builder_at_defaults(bootstrap(), &group, "range")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    second.subscribe([topic.as_str()]).unwrap();
    let old = poll_until(&mut second, "assigned", REBALANCE_WITHIN, |c| {
        c.assignment() == all && all.iter().all(|tp| c.position(tp) == Some(30))
    })
    .await;
    assert!(old.is_empty(), "the successor read old records: {old:?}");
    for p in 0..3 {
        assert_eq!(produce(&pool, &topic, p, 5, now_ms()).await, 30);
    }
    let records = recv_n(&mut second, 15, Duration::from_secs(10)).await;
    assert_exactly(&records, &ends(&all, 30), &ends(&all, 35), 10);
    expect_no_record(&mut second, Duration::from_millis(500)).await;
    second.close().await.unwrap();
}

/// At-least-once with auto-commit: a consumer hands out some records one at a time and
/// closes; the final commit covers exactly what was handed out, so the next consumer of the
/// group continues right after the last record handed out of each partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_on_close_lets_the_next_consumer_continue_after_the_last_record_handed_out() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 80, 10).await;
    let all = partitions(&topic, 2);
    let group = unique_name("g");
    // Only the close commits: the timer would not fire during the test.
    let consumer = || {
        group_builder_at_defaults(bootstrap(), &group, "range")
            .set("auto.commit.interval.ms", "60000")
            .build()
            .unwrap()
    };

    let mut first = consumer();
    first.subscribe([topic.as_str()]).unwrap();
    let handed = recv_n(&mut first, 25, REBALANCE_WITHIN).await;
    let next: BTreeMap<TopicPartition, i64> = offsets_by_partition(&handed)
        .into_iter()
        .map(|(tp, offsets)| (tp, offsets.last().copied().unwrap_or(-1) + 1))
        .collect();
    first.close().await.unwrap();

    let mut second = consumer();
    second.subscribe([topic.as_str()]).unwrap();
    let rest = recv_n(&mut second, 80 - 25, REBALANCE_WITHIN).await;
    assert_exactly(&rest, &next, &ends(&all, 40), 10);
    expect_no_record(&mut second, Duration::from_millis(500)).await;
    second.close().await.unwrap();
}

/// With `enable.auto.offset.store=false`, only what the application stores is committed: by
/// `commit`, and by the final commit of `close` (auto-commit on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_offset_store_only_stored_offsets_are_committed() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    produce_spread(&pool, &topic, 1, 20, 10).await;
    let tp = TopicPartition::new(&topic, 0);
    let group = unique_name("g");
    let consumer = || {
        group_builder_at_defaults(bootstrap(), &group, "range")
            .enable_auto_offset_store(false)
            .set("auto.commit.interval.ms", "60000")
            .build()
            .unwrap()
    };

    let mut c = consumer();
    c.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut c, 20, REBALANCE_WITHIN).await;
    assert_exactly(
        &records,
        &BTreeMap::new(),
        &ends(&[tp.clone()].into(), 20),
        10,
    );
    c.store_offset(&records[7]).unwrap();
    c.commit().await.unwrap();
    assert_eq!(c.committed([tp.clone()]).await.unwrap()[&tp], Some(8));
    // Receiving more stores nothing.
    expect_no_record(&mut c, Duration::from_millis(300)).await;
    c.commit().await.unwrap();
    assert_eq!(c.committed([tp.clone()]).await.unwrap()[&tp], Some(8));
    c.store_offset(&records[12]).unwrap();
    c.close().await.unwrap();

    // A consumer that never joins the group reads the commit.
    let reader = consumer();
    assert_eq!(reader.committed([tp.clone()]).await.unwrap()[&tp], Some(13));
    drop(reader);
}

/// A commit with metadata and the last record's leader epoch reads back whole, from the
/// committing consumer and from one that never joins; a partition never committed reads as
/// none; metadata past the broker's `offset.metadata.max.bytes` (4,096 by default) is refused
/// with OFFSET_METADATA_TOO_LARGE and leaves the commit before it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_with_metadata_read_back_whole_and_too_much_metadata_is_refused() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 1, 10, 10).await;
    let tp = TopicPartition::new(&topic, 0);
    let other = TopicPartition::new(&topic, 1);
    let group = unique_name("g");
    let consumer = || {
        group_builder_at_defaults(bootstrap(), &group, "range")
            .enable_auto_commit(false)
            .build()
            .unwrap()
    };
    let mut c = consumer();
    c.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    let sixth = records
        .iter()
        .find(|r| r.partition == 0 && r.offset == 5)
        .expect("record 5 of partition 0");
    assert!(sixth.leader_epoch.is_some(), "{sixth:?}");
    let at = OffsetAndMetadata {
        offset: 6,
        leader_epoch: sixth.leader_epoch,
        metadata: "kcon1bZAUb".to_owned(),
    };
    c.commit_offsets_with_metadata([(tp.clone(), at.clone())])
        .await
        .unwrap();
    let read = c
        .committed_with_metadata([tp.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(read[&tp], Some(at.clone()));
    assert_eq!(read[&other], None);
    assert_eq!(c.committed([tp.clone()]).await.unwrap()[&tp], Some(6));

    let too_long = OffsetAndMetadata {
        offset: 8,
        leader_epoch: None,
        metadata: "x".repeat(4097),
    };
    let err = c
        .commit_offsets_with_metadata([(tp.clone(), too_long)])
        .await
        .expect_err("4,097 bytes of metadata");
    assert!(
        err.to_string().contains("OFFSET_METADATA_TOO_LARGE"),
        "{err}"
    );
    // The commit handle commits the same way, from another task.
    let handle = c.commit_handle().unwrap();
    let mut later = at.clone();
    later.offset = 7;
    later.metadata = "from the handle".to_owned();
    let committed = tokio::spawn({
        let (tp, later) = (tp.clone(), later.clone());
        async move { handle.commit_offsets_with_metadata([(tp, later)]).await }
    });
    committed.await.unwrap().unwrap();
    c.close().await.unwrap();

    // A consumer that never joins the group reads the same.
    let reader = consumer();
    let read = reader.committed_with_metadata([tp.clone()]).await.unwrap();
    assert_eq!(read[&tp], Some(later));
    drop(reader);
}

/// Commits each partition it gives up at its position, with metadata naming it, from
/// `on_revoked`.
struct CommitsWithMetadataOnRevoke;

impl RebalanceListener for CommitsWithMetadataOnRevoke {
    fn on_revoked<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let offsets = partitions.iter().filter_map(|tp| {
                let mut at = OffsetAndMetadata::new(ctx.position(tp)?);
                at.metadata = format!("revoked {tp}");
                Some((tp.clone(), at))
            });
            ctx.commit_offsets_with_metadata(offsets.collect::<Vec<_>>())
                .await
                .expect("the commit in on_revoked");
        })
    }
}

/// A listener commits with metadata as its partitions go, and the group keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_commits_with_metadata_as_partitions_are_revoked() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    produce_spread(&pool, &topic, 1, 10, 10).await;
    let tp = TopicPartition::new(&topic, 0);
    let group = unique_name("g");
    let builder =
        || group_builder_at_defaults(bootstrap(), &group, "range").enable_auto_commit(false);
    let mut c = builder()
        .rebalance_listener(CommitsWithMetadataOnRevoke)
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    c.unsubscribe().await;
    c.close().await.unwrap();
    let reader = builder().build().unwrap();
    let read = reader.committed_with_metadata([tp.clone()]).await.unwrap();
    let at = read[&tp].clone().expect("a commit");
    assert_eq!((at.offset, at.metadata), (10, format!("revoked {tp}")));
    drop(reader);
}

/// Two kcon consumers in one group with cooperative-sticky and a listener that commits in
/// `on_revoked` (auto-commit off): the second joins and the partitions split exactly once,
/// the first giving up only what moves; the second closes and the first gets everything back.
/// Each hand-over starts at the commits the listener made, so over the whole test the group
/// processes every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_consumers_split_the_partitions_and_commit_on_revoke_without_duplicates() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 4)]).await;
    produce_spread(&pool, &topic, 4, 80, 10).await;
    let all = partitions(&topic, 4);
    let group = unique_name("g");
    let commit_on_revoke = ListenerBehaviour {
        commit_on_revoke: true,
        ..ListenerBehaviour::default()
    };
    let start = |name: &str, listener: &RecordingListener| {
        let mut c = group_builder_at_defaults(bootstrap(), &group, "cooperative-sticky")
            .enable_auto_commit(false)
            .rebalance_listener(listener.clone())
            .build()
            .unwrap();
        c.subscribe([topic.as_str()]).unwrap();
        Driven::start(name, c, STEP)
    };

    let listener_a = RecordingListener::with(commit_on_revoke);
    let a = start("a", &listener_a);
    wait_until(
        "all 80 records read by a",
        REBALANCE_WITHIN,
        || a.received() == 80,
        || a.state(),
    )
    .await;
    assert_eq!(a.assignment(), all);

    let listener_b = RecordingListener::with(commit_on_revoke);
    let b = start("b", &listener_b);
    wait_for_split(&[&a, &b], &all, REBALANCE_WITHIN).await;
    let moved = b.assignment();
    for p in 0..4 {
        assert_eq!(produce(&pool, &topic, p, 10, now_ms()).await, 20);
    }
    wait_until(
        "120 records read by the group",
        Duration::from_secs(15),
        || a.received() + b.received() == 120,
        || (a.state(), b.state()),
    )
    .await;
    let (b, b_seen) = b.stop().await;
    b.close().await.unwrap();
    // b's positions at close are not checked here: see
    // `at_close_the_listener_sees_the_position_after_the_records_handed_out`.
    let moved_list: Vec<TopicPartition> = moved.iter().cloned().collect();
    let calls = listener_b.calls();
    // Under cooperative-sticky, b may first be told of an empty assignment: the generation in
    // which a gives the partitions up (the Java client calls onPartitionsAssigned then too).
    let told: Vec<&ListenerCall> = calls
        .iter()
        .filter(|c| !matches!(c, ListenerCall::Assigned(p) if p.is_empty()))
        .collect();
    match &told[..] {
        [
            ListenerCall::Assigned(assigned),
            ListenerCall::Revoked {
                partitions, commit, ..
            },
        ] => {
            assert_eq!(
                (assigned, partitions),
                (&moved_list, &moved_list),
                "{calls:?}"
            );
            assert_eq!(commit, &Some(Ok(())), "{calls:?}");
        }
        _ => panic!("b was told {calls:?}"),
    }

    wait_until(
        "all partitions back with a",
        REBALANCE_WITHIN,
        || a.assignment() == all,
        || a.state(),
    )
    .await;
    for p in 0..4 {
        assert_eq!(produce(&pool, &topic, p, 5, now_ms()).await, 30);
    }
    wait_until(
        "140 records read by the group",
        Duration::from_secs(15),
        || a.received() + b_seen.records.len() == 140,
        || (a.state(), &b_seen),
    )
    .await;
    let (a, a_seen) = a.stop().await;
    assert_once_in_group(&[&a_seen.records, &b_seen.records], &ends(&all, 35), 10);
    assert!(
        a_seen.errors.is_empty() && b_seen.errors.is_empty(),
        "{a_seen:?} {b_seen:?}"
    );

    // a was told of everything in order, and was never revoked a partition it kept: assigned
    // everything, revoked (with a commit at its positions) what moved to b, assigned that back.
    let calls = listener_a.calls();
    let told: Vec<&ListenerCall> = calls
        .iter()
        .filter(|c| !matches!(c, ListenerCall::Assigned(p) if p.is_empty()))
        .collect();
    assert_eq!(
        told,
        [
            &ListenerCall::Assigned(all.iter().cloned().collect()),
            &ListenerCall::Revoked {
                partitions: moved_list.clone(),
                positions: vec![Some(20); moved.len()],
                commit: Some(Ok(())),
            },
            &ListenerCall::Assigned(moved_list),
        ],
        "{calls:?}"
    );
    assert_eq!(listener_a.owned(), all);
    a.close().await.unwrap();
}

/// The receiving calls are documented cancel-safe ("Dropping the stream while a record is being
/// waited for loses nothing"). An application that polls with a timeout cancels them; here
/// the timeout (200 ms) fires while a slow `on_revoked` (1.5 s) runs during an eager
/// rebalance. Nothing may be lost: the listener must finish and be called again for the next
/// assignment, and the rebalance must complete with the partitions split between the two
/// consumers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiving_call_cancelled_while_the_listener_runs_loses_no_rebalance() {
    let topic = unique_name("consumer");
    single_with(&[(&topic, 2)]).await;
    let all = partitions(&topic, 2);
    let group = unique_name("g");
    let slow = RecordingListener::with(ListenerBehaviour {
        revoke_delay: Duration::from_millis(1500),
        ..ListenerBehaviour::default()
    });
    let mut a = group_builder_at_defaults(bootstrap(), &group, "range")
        .rebalance_listener(slow.clone())
        .build()
        .unwrap();
    a.subscribe([topic.as_str()]).unwrap();
    let a = Driven::start("a", a, Duration::from_millis(200));
    wait_until(
        "a owns everything",
        REBALANCE_WITHIN,
        || a.assignment() == all,
        || slow.calls(),
    )
    .await;

    let mut b = group_builder_at_defaults(bootstrap(), &group, "range")
        .build()
        .unwrap();
    b.subscribe([topic.as_str()]).unwrap();
    let b = Driven::start("b", b, STEP);
    wait_until(
        "the partitions split, and a's listener told of both rebalances",
        Duration::from_secs(20),
        || {
            let calls = slow.calls();
            let assigned = calls
                .iter()
                .filter(|c| matches!(c, ListenerCall::Assigned(_)))
                .count();
            let revoked = calls
                .iter()
                .any(|c| matches!(c, ListenerCall::Revoked { .. }));
            assigned == 2 && revoked && a.assignment().len() == 1 && b.assignment().len() == 1
        },
        || (slow.calls(), a.state(), b.state()),
    )
    .await;
    for d in [a, b] {
        let (c, _) = d.stop().await;
        c.close().await.unwrap();
    }
}

/// The listener's context gives the position of each partition it is told about: at close,
/// after records were handed out one at a time, that is the offset after the last one handed
/// out (what `Consumer::position` says), not where the current batch started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_close_the_listener_sees_the_position_after_the_records_handed_out() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    // One batch: the consumer hands it out from one Fetch answer.
    produce(&pool, &topic, 0, 40, now_ms()).await;
    let tp = TopicPartition::new(&topic, 0);
    let listener = RecordingListener::new();
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .rebalance_listener(listener.clone())
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut c, 15, REBALANCE_WITHIN).await;
    assert_eq!(records.last().map(|r| r.offset), Some(14));
    assert_eq!(c.position(&tp), Some(15));
    c.close().await.unwrap();
    assert_eq!(
        listener.calls().last(),
        Some(&ListenerCall::Revoked {
            partitions: vec![tp],
            positions: vec![Some(15)],
            commit: None,
        }),
        "{:?}",
        listener.calls()
    );
}

/// The misuse error for `assign` while subscribed says "unsubscribe before assigning
/// partitions". Doing so with the partition the group had given: the consumer owns the
/// assigned partition from then on, and goes on reading it from the group's commit, also
/// after the member's own revocation event (which comes after `unsubscribe` gave the
/// partitions up) has been handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_then_assigning_keeps_the_assigned_partition() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    let tp = TopicPartition::new(&topic, 0);
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    c.commit().await.unwrap();

    c.unsubscribe().await;
    c.assign([tp.clone()]).unwrap();
    assert_eq!(c.assignment(), [tp.clone()].into());
    produce(&pool, &topic, 0, 5, now_ms()).await;
    let records = recv_n(&mut c, 5, Duration::from_secs(10)).await;
    // Batches of 5 from offset 10: values value-0 to value-4 each.
    assert_exactly(
        &records,
        &[(tp.clone(), 10)].into(),
        &[(tp.clone(), 15)].into(),
        5,
    );
    expect_no_record(&mut c, Duration::from_millis(1500)).await;
    assert_eq!(c.assignment(), [tp.clone()].into());
    produce(&pool, &topic, 0, 5, now_ms()).await;
    let records = recv_n(&mut c, 5, Duration::from_secs(10)).await;
    assert_exactly(&records, &[(tp.clone(), 15)].into(), &[(tp, 20)].into(), 5);
    c.close().await.unwrap();
}

/// Manual assignment without a group: partitions start by `auto.offset.reset` (earliest,
/// latest) or where they were sought before the first receiving call; `seek`,
/// `seek_to_beginning` and `seek_to_end` move the next record handed out, and `position`
/// follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_partitions_start_by_the_reset_policy_and_move_by_seeks() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    // One batch each: Kafka's ListOffsets latest is the end of the log, whatever its batches.
    produce(&pool, &topic, 0, 10, now_ms()).await;
    produce(&pool, &topic, 1, 10, now_ms()).await;

    let mut c = builder_at_defaults(bootstrap()).build().unwrap();
    c.assign([p0.clone()]).unwrap();
    assert_eq!(c.assignment(), [p0.clone()].into());
    assert_eq!(c.position(&p0), None, "not looked up yet");
    let records = recv_n(&mut c, 10, Duration::from_secs(10)).await;
    assert_exactly(&records, &BTreeMap::new(), &[(p0.clone(), 10)].into(), 10);
    assert_eq!(c.position(&p0), Some(10));

    c.seek(p0.clone(), 3).unwrap();
    assert_eq!(c.position(&p0), Some(3));
    assert_eq!(
        recv_n(&mut c, 1, Duration::from_secs(10)).await[0].offset,
        3
    );
    assert_eq!(c.position(&p0), Some(4));
    c.seek_to_beginning([p0.clone()]).await.unwrap();
    assert_eq!(
        recv_n(&mut c, 1, Duration::from_secs(10)).await[0].offset,
        0
    );
    c.seek_to_end([p0.clone()]).await.unwrap();
    assert_eq!(c.position(&p0), Some(10));
    expect_no_record(&mut c, Duration::from_millis(500)).await;
    produce(&pool, &topic, 0, 1, now_ms()).await;
    assert_eq!(
        recv_n(&mut c, 1, Duration::from_secs(10)).await[0].offset,
        10
    );

    // A new assignment replaces the old; a seek before the first receiving call sets the start.
    c.assign([p1.clone()]).unwrap();
    assert_eq!(c.assignment(), [p1.clone()].into());
    c.seek(p1.clone(), 7).unwrap();
    assert_eq!(c.position(&p1), Some(7));
    let records = recv_n(&mut c, 3, Duration::from_secs(10)).await;
    assert_eq!(
        records
            .iter()
            .map(|r| (partition_of(r), r.offset))
            .collect::<Vec<_>>(),
        (7..10).map(|o| (p1.clone(), o)).collect::<Vec<_>>()
    );
    let e = c.seek(p0.clone(), 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    assert_eq!(e.partitions(), std::slice::from_ref(&p0));
    c.close().await.unwrap();

    // latest: only what is produced after the position was looked up.
    let mut latest = builder_at_defaults(bootstrap())
        .auto_offset_reset(ResetPolicy::Latest)
        .build()
        .unwrap();
    latest.assign([p1.clone()]).unwrap();
    let old = poll_until(&mut latest, "at the end", Duration::from_secs(10), |c| {
        c.position(&p1) == Some(10)
    })
    .await;
    assert!(old.is_empty(), "{old:?}");
    produce(&pool, &topic, 1, 1, now_ms()).await;
    let records = recv_n(&mut latest, 1, Duration::from_secs(10)).await;
    assert_eq!((partition_of(&records[0]), records[0].offset), (p1, 10));
    latest.close().await.unwrap();
}

/// `pause` stops handing out a partition's records, also those of a batch being handed out
/// one at a time; `resume` brings them back from where they stopped, none lost or repeated,
/// also while the other partition's batch is being handed out. The other partition goes on
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_a_partition_and_resume_brings_it_back() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    produce(&pool, &topic, 0, 10, now_ms()).await;
    produce(&pool, &topic, 1, 10, now_ms()).await;

    let mut c = builder_at_defaults(bootstrap()).build().unwrap();
    c.assign([p0.clone(), p1.clone()]).unwrap();
    c.pause([p0.clone()]).unwrap();
    assert_eq!(c.paused(), [p0.clone()].into());
    let records = recv_n(&mut c, 10, Duration::from_secs(10)).await;
    assert_exactly(&records, &BTreeMap::new(), &[(p1.clone(), 10)].into(), 10);
    expect_no_record(&mut c, Duration::from_secs(1)).await;
    c.resume([p0.clone()]).unwrap();
    assert!(c.paused().is_empty());
    let records = recv_n(&mut c, 10, Duration::from_secs(10)).await;
    assert_exactly(&records, &BTreeMap::new(), &[(p0.clone(), 10)].into(), 10);

    // Paused in the middle of a batch handed out one record at a time.
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let first = recv_n(&mut c, 3, Duration::from_secs(10)).await;
    assert_exactly(
        &first,
        &[(p0.clone(), 10)].into(),
        &[(p0.clone(), 13)].into(),
        10,
    );
    c.pause([p0.clone()]).unwrap();
    assert_eq!(c.position(&p0), Some(13));
    produce(&pool, &topic, 1, 5, now_ms()).await;
    let other = recv_n(&mut c, 5, Duration::from_secs(10)).await;
    assert_exactly(
        &other,
        &[(p1.clone(), 10)].into(),
        &[(p1.clone(), 15)].into(),
        10,
    );
    expect_no_record(&mut c, Duration::from_millis(500)).await;
    c.resume([p0.clone()]).unwrap();
    let rest = recv_n(&mut c, 7, Duration::from_secs(10)).await;
    assert_exactly(
        &rest,
        &[(p0.clone(), 13)].into(),
        &[(p0.clone(), 20)].into(),
        10,
    );
    expect_no_record(&mut c, Duration::from_millis(500)).await;

    // Paused in the middle of a batch, resumed in the middle of the other partition's: that
    // batch is finished first, then the held rest, in order, none lost or repeated.
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let first = recv_n(&mut c, 4, Duration::from_secs(10)).await;
    assert_exactly(
        &first,
        &[(p0.clone(), 20)].into(),
        &[(p0.clone(), 24)].into(),
        10,
    );
    c.pause([p0.clone()]).unwrap();
    produce(&pool, &topic, 1, 5, now_ms()).await;
    let some = recv_n(&mut c, 2, Duration::from_secs(10)).await;
    assert_exactly(
        &some,
        &[(p1.clone(), 15)].into(),
        &[(p1.clone(), 17)].into(),
        5,
    );
    c.resume([p0.clone()]).unwrap();
    assert_eq!(c.position(&p0), Some(24));
    let rest = recv_n(&mut c, 9, Duration::from_secs(10)).await;
    assert!(
        rest[..3].iter().all(|r| r.partition == 1) && rest[3..].iter().all(|r| r.partition == 0),
        "{:?}",
        rest.iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>()
    );
    assert_exactly(
        &rest[..3],
        &[(p1.clone(), 17)].into(),
        &[(p1.clone(), 20)].into(),
        5,
    );
    assert_exactly(
        &rest[3..],
        &[(p0.clone(), 24)].into(),
        &[(p0.clone(), 30)].into(),
        10,
    );
    expect_no_record(&mut c, Duration::from_millis(500)).await;
    // The rest of a paused batch waits in the consumer: nothing is fetched (or counted) twice.
    assert_eq!(c.metrics().records_consumed, 50);
    c.close().await.unwrap();
}

/// `watermarks` reports the log's start and end; `lag` (asked of the broker) and the lag in
/// `metrics` (from the last Fetch answer) both count the records produced minus those consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_and_lag_count_the_records_not_consumed() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    let tp = TopicPartition::new(&topic, 0);
    produce(&pool, &topic, 0, 10, now_ms()).await;

    let mut c = builder_at_defaults(bootstrap()).build().unwrap();
    c.assign([tp.clone()]).unwrap();
    recv_n(&mut c, 4, Duration::from_secs(10)).await;
    let w = c.watermarks(&tp).await.unwrap();
    assert_eq!((w.log_start, w.high_watermark), (0, 10), "{w:?}");
    let lag = c.lag().await.unwrap();
    assert_eq!(lag.keys().collect::<Vec<_>>(), [&tp]);
    assert_eq!(
        (lag[&tp].position, lag[&tp].end, lag[&tp].records),
        (Some(4), Some(10), Some(6))
    );
    let m = c.metrics();
    let from_fetch = m.partitions[&tp];
    assert_eq!(
        (from_fetch.position, from_fetch.end, from_fetch.records),
        (Some(4), Some(10), Some(6))
    );
    // Behind, holding the next record: its age is known.
    assert!(from_fetch.time.is_some(), "{from_fetch:?}");

    recv_n(&mut c, 6, Duration::from_secs(10)).await;
    expect_no_record(&mut c, Duration::from_millis(300)).await;
    let lag = c.lag().await.unwrap();
    assert_eq!(
        (lag[&tp].records, lag[&tp].time),
        (Some(0), Some(Duration::ZERO))
    );
    c.close().await.unwrap();
}

/// `offsets_for_times` finds, per partition, the first offset whose record's timestamp is at
/// or after the one asked, with that record's timestamp, and `None` when no record is that
/// recent. Asked at a record's own timestamp and one millisecond after it, Kafka's answers pin
/// the timestamp the consumer sent to the millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_record_at_or_after_each_timestamp() {
    let topic = unique_name("timed");
    let pool = single_with(&[(&topic, 2)]).await;
    let t = now_ms() - 60_000;
    produce_at(
        &pool,
        &topic,
        0,
        &[t + 1_000, t + 1_000, t + 2_000, t + 3_000],
    )
    .await;
    produce_at(&pool, &topic, 1, &[t + 500, t + 4_000]).await;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let c = builder_at_defaults(bootstrap()).build().unwrap();
    let found = c
        .offsets_for_times([(p0.clone(), t + 1_500), (p1.clone(), t + 5_000)])
        .await
        .unwrap();
    assert_eq!(
        found,
        [(p0.clone(), Some((2, t + 2_000))), (p1.clone(), None)].into()
    );
    let found = c
        .offsets_for_times([(p0.clone(), 0), (p1.clone(), t + 600)])
        .await
        .unwrap();
    assert_eq!(
        found,
        [
            (p0.clone(), Some((0, t + 1_000))),
            (p1.clone(), Some((1, t + 4_000)))
        ]
        .into()
    );
    let found = c
        .offsets_for_times([(p0.clone(), t + 2_000), (p1.clone(), t + 4_000)])
        .await
        .unwrap();
    assert_eq!(
        found,
        [
            (p0.clone(), Some((2, t + 2_000))),
            (p1.clone(), Some((1, t + 4_000)))
        ]
        .into()
    );
    let found = c
        .offsets_for_times([(p0.clone(), t + 2_001), (p1.clone(), t + 4_001)])
        .await
        .unwrap();
    assert_eq!(found, [(p0, Some((3, t + 3_000))), (p1, None)].into());
    drop(c);
}

/// How far apart the timestamps of [`reset_start`]'s records are (ms).
const SPACING: i64 = 10;

/// `auto.offset.reset` by duration (KIP-1106): a partition without a position starts at the
/// first record no older than the duration, so the consumer looks up the offset at now minus
/// the duration, to the millisecond (1.5 s here, not a whole number of seconds), whether the
/// policy is set by name or with the typed setter. The first record handed out and the one
/// before it bound the timestamp looked up to [`SPACING`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_by_duration_looks_up_now_minus_the_whole_duration() {
    let by_name: fn(ConsumerBuilder) -> ConsumerBuilder =
        |b| b.set("auto.offset.reset", "by_duration:PT1.5S");
    let typed: fn(ConsumerBuilder) -> ConsumerBuilder =
        |b| b.auto_offset_reset(ResetPolicy::ByDuration(Duration::from_millis(1_500)));
    for (how, reset) in [("by name", by_name), ("typed", typed)] {
        let (before, first, after) = reset_start(reset).await;
        // The lookup, made between `before` and `after`, asked for a timestamp after the
        // previous record's and at most the first one's.
        assert!(
            first.timestamp >= before - 1_500 && first.timestamp - SPACING < after - 1_500,
            "{how}: started at a record of now minus {} ms (the lookup came between {before} \
             and {after})",
            after - first.timestamp
        );
    }
}

/// Starts a new topic's partition with a consumer whose reset policy `reset` sets, and returns
/// the first record handed out with the wall-clock times (ms) just before the consumer
/// started the partition and just after the record came. The partition holds a record every
/// [`SPACING`] ms from 3 s before the call to 30 s after it (Kafka's defaults take timestamps
/// that far ahead), so the lookup's answer is a record's real offset.
async fn reset_start(reset: fn(ConsumerBuilder) -> ConsumerBuilder) -> (i64, Record, i64) {
    let topic = unique_name("timed");
    let pool = single_with(&[(&topic, 1)]).await;
    let start = now_ms() - 3_000;
    let timestamps: Vec<i64> = (0..=3_300).map(|i| start + i * SPACING).collect();
    produce_at(&pool, &topic, 0, &timestamps).await;
    let mut c = reset(builder_at_defaults(bootstrap())).build().unwrap();
    c.assign([TopicPartition::new(&topic, 0)]).unwrap();
    let before = now_ms();
    let first = tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .expect("a record within 10 s")
        .unwrap();
    let after = now_ms();
    assert!(first.offset > 0, "started at the log's start: {first:?}");
    assert_eq!(
        first.timestamp, timestamps[first.offset as usize],
        "the record at the offset looked up"
    );
    c.close().await.unwrap();
    (before, first, after)
}

/// A regex subscription reads the topics that match (and not the others); a matching topic
/// created later is picked up when the metadata refreshes (`metadata.max.age.ms` 1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_subscription_reads_matching_topics_and_picks_up_new_ones() {
    let prefix = unique_name("rx");
    let (a, b, other, later) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}_other"),
        format!("{prefix}-later"),
    );
    let pool = single_with(&[(&a, 2), (&b, 1), (&other, 1)]).await;
    for (t, p) in [(&a, 0), (&a, 1), (&b, 0), (&other, 0)] {
        produce(&pool, t, p, 5, now_ms()).await;
    }
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .set("metadata.max.age.ms", "1000")
        .build()
        .unwrap();
    c.subscribe([format!("^{prefix}-.*")]).unwrap();
    let records = recv_n(&mut c, 15, REBALANCE_WITHIN).await;
    let matching: BTreeSet<TopicPartition> = partitions(&a, 2)
        .into_iter()
        .chain(partitions(&b, 1))
        .collect();
    assert_exactly(&records, &BTreeMap::new(), &ends(&matching, 5), 10);
    assert_eq!(c.subscription(), [a.clone(), b.clone()].into());
    expect_no_record(&mut c, Duration::from_millis(500)).await;

    create_topics(&pool, &[(&later, 1)]).await;
    produce(&pool, &later, 0, 5, now_ms()).await;
    let records = recv_n(&mut c, 5, Duration::from_secs(15)).await;
    assert_exactly(
        &records,
        &BTreeMap::new(),
        &ends(&partitions(&later, 1), 5),
        10,
    );
    assert_eq!(c.subscription(), [a, b, later].into());
    c.close().await.unwrap();
}

/// `recv_batch` hands out at most `max.poll.records` records, of one partition, in order; the
/// `Stream` yields the records one by one, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_batch_respects_max_poll_records_and_the_stream_yields_in_order() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    let tp = TopicPartition::new(&topic, 0);
    // Batches of 10: a Fetch answer brings several of them, so the consumer holds more than
    // max.poll.records at once.
    produce_spread(&pool, &topic, 1, 50, 10).await;
    let mut c = builder_at_defaults(bootstrap())
        .max_poll_records(7)
        .build()
        .unwrap();
    c.assign([tp.clone()]).unwrap();
    let mut records = Vec::new();
    let mut sizes = Vec::new();
    while records.len() < 50 {
        let batch = tokio::time::timeout(Duration::from_secs(10), c.recv_batch())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} records", records.len()))
            .unwrap();
        sizes.push(batch.len());
        records.extend(batch);
    }
    assert!(sizes.iter().all(|&n| (1..=7).contains(&n)), "{sizes:?}");
    assert!(sizes.contains(&7), "{sizes:?}");
    assert_exactly(&records, &BTreeMap::new(), &[(tp.clone(), 50)].into(), 10);

    for _ in 0..2 {
        produce(&pool, &topic, 0, 10, now_ms()).await;
    }
    let mut stream = c.stream();
    let mut streamed: Vec<Record> = Vec::new();
    while streamed.len() < 20 {
        let next = tokio::time::timeout(
            Duration::from_secs(10),
            poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)),
        )
        .await
        .unwrap_or_else(|_| panic!("the stream stalled after {} records", streamed.len()));
        streamed.push(next.expect("the stream ended").unwrap());
    }
    drop(stream);
    assert_exactly(
        &streamed,
        &[(tp.clone(), 50)].into(),
        &[(tp, 70)].into(),
        10,
    );
    c.close().await.unwrap();
}

/// zstd batches of 100 records, cut by `max.poll.records`, on a prefetch budget smaller than a
/// batch decompressed: the parts hold and give back decompressed bytes, which the consumer tells
/// its fetch task together, with the answer's last part or before it waits for the task. Every
/// record comes once, in order, and the budget spent by what is held never stalls the fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_cut_by_max_poll_records_on_a_small_budget_arrive_whole() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let values: Vec<String> = (0..100).map(|i| format!("value-{i}")).collect();
    for partition in 0..2 {
        for base in (0..600).step_by(100) {
            let mut zstd = RecordBatchBuilder::new(0).compression(Compression::Zstd);
            for value in &values {
                zstd.push(NewRecord {
                    timestamp: now_ms(),
                    value: Some(value.as_bytes()),
                    ..NewRecord::default()
                });
            }
            let batch = zstd.build().unwrap();
            assert_eq!(produce_batch(&pool, &topic, partition, batch).await, base);
        }
    }
    let mut c = builder_at_defaults(bootstrap())
        .max_poll_records(30)
        .set("fetch.max.bytes", "512")
        .set("max.partition.fetch.bytes", "512")
        .set("fetch.buffer.max.bytes", "1024")
        .build()
        .unwrap();
    let ends: BTreeMap<TopicPartition, i64> = (0..2)
        .map(|p| (TopicPartition::new(&topic, p), 600))
        .collect();
    c.assign(ends.keys().cloned()).unwrap();
    let mut records = Vec::new();
    while records.len() < 1200 {
        let batch = tokio::time::timeout(Duration::from_secs(10), c.recv_batch())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} records", records.len()))
            .unwrap();
        assert!((1..=30).contains(&batch.len()), "{}", batch.len());
        records.extend(batch);
    }
    assert_exactly(&records, &BTreeMap::new(), &ends, 100);
    c.close().await.unwrap();
}

/// A backlog of about 19 MiB on 16 partitions, read at the defaults: answers of megabytes (up
/// to 1 MiB a partition), each read into a memory map, the maps of answers drained taking the
/// next ones. Every record comes once, in order, with its own value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_megabyte_answers_arrives_whole_at_the_defaults() {
    const PARTITIONS: i32 = 16;
    const BATCHES: i64 = 2;
    const PER_BATCH: i64 = 100;
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, PARTITIONS)]).await;
    let value = |p: i32, offset: i64| {
        let mut v = format!("{p}-{offset}-").into_bytes();
        v.resize(6_000, b'x');
        v
    };
    for partition in 0..PARTITIONS {
        for b in 0..BATCHES {
            let mut batch = RecordBatchBuilder::new(0);
            let values: Vec<Vec<u8>> = (0..PER_BATCH)
                .map(|i| value(partition, b * PER_BATCH + i))
                .collect();
            for v in &values {
                batch.push(NewRecord {
                    timestamp: now_ms(),
                    value: Some(v),
                    ..NewRecord::default()
                });
            }
            let base = produce_batch(&pool, &topic, partition, batch.build().unwrap()).await;
            assert_eq!(base, b * PER_BATCH);
        }
    }
    let mut c = builder_at_defaults(bootstrap()).build().unwrap();
    let ends: BTreeMap<TopicPartition, i64> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(&topic, p), BATCHES * PER_BATCH))
        .collect();
    c.assign(ends.keys().cloned()).unwrap();
    let total = (PARTITIONS as i64 * BATCHES * PER_BATCH) as usize;
    let records = recv_n(&mut c, total, Duration::from_secs(60)).await;
    for r in &records {
        assert!(
            r.value.as_deref() == Some(&value(r.partition, r.offset)[..]),
            "{}@{}: another value",
            r.partition,
            r.offset
        );
    }
    // Every partition read to its end, once, in order.
    assert_offsets_exactly(&records, &BTreeMap::new(), &ends);
    c.close().await.unwrap();
}

/// `recv_borrowed` lends the records `recv_batch` would return, read where they lie in the
/// answer (an LZ4 batch with keys and headers, split by `max.poll.records`, among them), at most
/// `max.poll.records` a call. Mixed with `recv` and `recv_batch` calls, every record is handed
/// out once; the position moves past what was lent and the close's auto-commit commits it, so
/// a successor lending records starts right after the last record handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_borrowed_lends_each_record_once_and_the_commit_follows_it() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 60, 10).await;
    // Offsets 30..40 of partition 0: `value-{i}`, key `key-{i}`, header `h` = `i`.
    let keys: Vec<String> = (0..10).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..10).map(|i| format!("value-{i}")).collect();
    let numbers: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    type Header<'a> = (&'a [u8], Option<&'a [u8]>);
    let headers: Vec<[Header<'_>; 1]> = numbers
        .iter()
        .map(|n| [(&b"h"[..], Some(n.as_bytes()))])
        .collect();
    let mut lz4 = RecordBatchBuilder::new(0).compression(Compression::Lz4);
    for i in 0..10 {
        lz4.push(NewRecord {
            timestamp: now_ms(),
            key: Some(keys[i].as_bytes()),
            value: Some(values[i].as_bytes()),
            headers: &headers[i],
            ..NewRecord::default()
        });
    }
    assert_eq!(
        produce_batch(&pool, &topic, 0, lz4.build().unwrap()).await,
        30
    );
    let ends: BTreeMap<TopicPartition, i64> = [
        (TopicPartition::new(&topic, 0), 40),
        (TopicPartition::new(&topic, 1), 30),
    ]
    .into();
    let group = unique_name("g");
    // Only the close commits: the timer would not fire during the test.
    let consumer = || {
        group_builder_at_defaults(bootstrap(), &group, "range")
            .set("auto.commit.interval.ms", "60000")
            .max_poll_records(7)
            .build()
            .unwrap()
    };
    // What a lent record says against what was produced at its offset.
    let check = |r: &kcon::BorrowedRecord<'_>| {
        assert_eq!(r.topic(), topic);
        let lz4 = r.partition() == 0 && r.offset() >= 30;
        let i = (r.offset() - 30).to_string();
        let key = format!("key-{i}");
        assert_eq!(r.key(), lz4.then_some(key.as_bytes()), "{r:?}");
        let header = r.header("h");
        assert_eq!(header, lz4.then_some(Some(i.as_bytes())), "{r:?}");
        assert_eq!(r.headers().count(), usize::from(lz4));
        assert!(r.timestamp() > 0);
    };

    let mut first = consumer();
    first.subscribe([topic.as_str()]).unwrap();
    let deadline = Instant::now() + REBALANCE_WITHIN;
    let mut handed: Vec<Record> = Vec::new();
    let mut calls = 0;
    while handed.len() < 25 {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = calls % 3;
        calls += 1;
        match call {
            0 => {
                let batch = tokio::time::timeout(left, first.recv_borrowed())
                    .await
                    .expect("records within the rebalance's time")
                    .unwrap();
                assert!((1..=7).contains(&batch.len()), "{batch:?}");
                for r in &batch {
                    check(&r);
                    assert_eq!(r.partition(), batch.partition().partition);
                }
                assert_eq!(batch.iter().count(), batch.len());
                handed.extend(batch.into_iter().map(|r| r.to_record()));
            }
            1 => handed.push(
                tokio::time::timeout(left, first.recv())
                    .await
                    .expect("a record within the rebalance's time")
                    .unwrap(),
            ),
            _ => handed.extend(
                tokio::time::timeout(left, first.recv_batch())
                    .await
                    .expect("records within the rebalance's time")
                    .unwrap(),
            ),
        }
    }
    let next: BTreeMap<TopicPartition, i64> = offsets_by_partition(&handed)
        .into_iter()
        .map(|(tp, offsets)| (tp, offsets.last().copied().unwrap_or(-1) + 1))
        .collect();
    for (tp, &offset) in &next {
        assert_eq!(first.position(tp), Some(offset), "{tp}");
    }
    first.close().await.unwrap();

    let mut second = consumer();
    second.subscribe([topic.as_str()]).unwrap();
    let deadline = Instant::now() + REBALANCE_WITHIN;
    let mut rest: Vec<Record> = Vec::new();
    while rest.len() < 70 - handed.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, second.recv_borrowed())
            .await
            .unwrap_or_else(|_| panic!("{} of {} records", rest.len(), 70 - handed.len()))
            .unwrap();
        assert!((1..=7).contains(&batch.len()), "{batch:?}");
        batch.iter().for_each(|r| check(&r));
        rest.extend(batch.iter().map(|r| r.to_record()));
    }
    assert_exactly(&rest, &next, &ends, 10);
    expect_no_record(&mut second, Duration::from_millis(500)).await;
    second.close().await.unwrap();
}

/// `metrics` counts the records consumed, the rebalances and the commits with their latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_rebalances_and_commits() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 20, 10).await;
    let all = partitions(&topic, 2);
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    let m = c.metrics();
    assert_eq!((m.records_consumed, m.rebalances, m.commits), (0, 0, 0));
    assert_eq!(m.last_commit_latency, None);
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 20, REBALANCE_WITHIN).await;
    expect_no_record(&mut c, Duration::from_millis(300)).await;
    let m = c.metrics();
    assert_eq!(m.records_consumed, 20, "{m:?}");
    assert!(m.bytes_consumed > 0, "{m:?}");
    assert!(m.rebalances >= 1, "{m:?}");
    assert!(m.last_rebalance.is_some(), "{m:?}");
    assert_eq!(m.partitions.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(m.fetch_latency.count >= 1, "{m:?}");
    assert!(m.fetch_latency.max > Duration::ZERO, "{m:?}");
    for (tp, lag) in &m.partitions {
        assert_eq!((lag.position, lag.records), (Some(10), Some(0)), "{tp}");
    }
    c.commit().await.unwrap();
    let m = c.metrics();
    assert_eq!((m.commits, m.commit_failures), (1, 0), "{m:?}");
    assert!(
        m.last_commit_latency.is_some() && m.max_commit_latency.is_some(),
        "{m:?}"
    );
    c.close().await.unwrap();
}

/// Configuration errors name the property (unknown names, bad values, conflicts), and calls
/// the consumer cannot honour in its state are refused as misuse. No broker is needed: the
/// consumer connects lazily.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_property_and_misuse_is_refused() {
    let bootstrap = "127.0.0.1:9";
    let config_error = |b: ConsumerBuilder, property: &str| {
        let e = b.build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{property}: {e}");
        assert_eq!(e.property(), Some(property), "{e}");
        assert!(e.to_string().contains(property), "{e}");
    };
    // Unknown.
    config_error(
        builder_at_defaults(bootstrap).set("fetch.wait.max.ms", "100"),
        "fetch.wait.max.ms",
    );
    // Bad values.
    config_error(
        builder_at_defaults(bootstrap).set("max.poll.records", "0"),
        "max.poll.records",
    );
    config_error(
        group_builder_at_defaults(bootstrap, "g", "range").set("session.timeout.ms", "soon"),
        "session.timeout.ms",
    );
    config_error(
        builder_at_defaults(bootstrap).set("partition.assignment.strategy", "fastest"),
        "partition.assignment.strategy",
    );
    config_error(
        builder_at_defaults(bootstrap).set("isolation.level", "dirty"),
        "isolation.level",
    );
    // Conflicts.
    config_error(
        // Not below the default 45 s session timeout.
        group_builder_at_defaults(bootstrap, "g", "range").set("heartbeat.interval.ms", "45000"),
        "heartbeat.interval.ms",
    );
    config_error(
        builder_at_defaults(bootstrap).enable_auto_commit(true),
        "enable.auto.commit",
    );
    config_error(
        builder_at_defaults(bootstrap).group_instance_id("i-0"),
        "group.instance.id",
    );
    config_error(Consumer::builder(), "bootstrap.servers");

    // Misuse without a group.
    let tp = TopicPartition::new("t", 0);
    let mut plain = builder_at_defaults(bootstrap).build().unwrap();
    assert_eq!(
        plain.subscribe(["t"]).unwrap_err().kind(),
        ErrorKind::Misuse
    );
    assert_eq!(plain.commit().await.unwrap_err().kind(), ErrorKind::Misuse);
    assert_eq!(plain.commit_handle().unwrap_err().kind(), ErrorKind::Misuse);
    plain.assign([tp.clone()]).unwrap();
    assert_eq!(
        plain.seek(tp.clone(), -1).unwrap_err().kind(),
        ErrorKind::Misuse
    );
    drop(plain);

    // Misuse in a group.
    let mut grouped = group_builder_at_defaults(bootstrap, "g", "range")
        .build()
        .unwrap();
    let record = Record::new("t", 0, 5, None, None);
    let e = grouped.store_offset(&record).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    assert_eq!(e.partitions(), std::slice::from_ref(&tp));
    // A commit handle refuses a partition the consumer does not own just the same.
    let e = grouped
        .commit_handle()
        .unwrap()
        .store_offset(&record)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    assert_eq!(e.partitions(), std::slice::from_ref(&tp));
    for e in [
        grouped.seek(tp.clone(), 0).unwrap_err(),
        grouped.pause([tp.clone()]).unwrap_err(),
        grouped.resume([tp.clone()]).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
        assert_eq!(e.partitions(), std::slice::from_ref(&tp), "{e}");
    }
    assert_eq!(
        grouped.subscribe([""]).unwrap_err().kind(),
        ErrorKind::Misuse
    );
    grouped.subscribe(["t"]).unwrap();
    assert_eq!(
        grouped.assign([tp.clone()]).unwrap_err().kind(),
        ErrorKind::Misuse
    );
    grouped.unsubscribe().await;
    grouped.assign([tp.clone()]).unwrap();
    assert_eq!(
        grouped.subscribe(["t"]).unwrap_err().kind(),
        ErrorKind::Misuse
    );
    drop(grouped);
}

/// `ConsumerBuilder::set`: "A later value of the same property replaces an earlier one." So a
/// bad value replaced before `build` is no error (as with Java's `Properties`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_value_of_a_property_replaces_an_earlier_one() {
    let c = builder_at_defaults("127.0.0.1:9")
        .set("max.poll.records", "0")
        .set("max.poll.records", "5")
        .build();
    assert!(c.is_ok(), "{:?}", c.err());
}

/// `close` keeps to `close.timeout.ms` when the broker is gone (its final commit cannot be
/// made, and says so). The consumer reaches the node only through a proxy that names itself as
/// the broker and the coordinator; stopping the proxy takes the broker away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_within_the_close_timeout_when_the_broker_is_gone() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let node = bootstrap().parse().expect("the single node's address");
    // It loses no answer: it only stands between the consumer and the node.
    let proxy = AnswerDropper::in_front_of(node, ApiKey::OffsetCommit, 0).await;
    let mut c = group_builder_at_defaults(&proxy.bootstrap(), &unique_name("g"), "range")
        .set("close.timeout.ms", "2000")
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    proxy.stop().await;
    let started = Instant::now();
    let closed = c.close().await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3000), "close took {took:?}");
    let e = closed.expect_err("the final commit cannot have been made");
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
}

/// `unsubscribe` leaves the group without another receiving call: the coordinator soon lists
/// no member, and a `close` right after has nothing left to wait for. (The member waited for
/// the application to acknowledge the unsubscription's own revocation, which only a receiving
/// call did: it stayed in the group, and the close took all of `close.timeout.ms`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_leaves_the_group_without_another_receiving_call() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 1)]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let group = unique_name("g");
    let mut c = group_builder_at_defaults(bootstrap(), &group, "range")
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    assert_eq!(group_members(&pool, &group).await.len(), 1);
    c.unsubscribe().await;
    let unsubscribed = Instant::now();
    loop {
        let members = group_members(&pool, &group).await;
        if members.is_empty() {
            break;
        }
        assert!(
            unsubscribed.elapsed() < Duration::from_millis(2500),
            "the unsubscribed consumer is still a member: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    c.close().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
}

/// A consumer closed while the group's revocation of its partitions waits unread (a rebalance
/// began while the application was not receiving) closes at once and leaves the group: the
/// other member gets every partition soon after, not once the session times out. (The member
/// waited for the application to acknowledge that revocation, which the close never did: the
/// close took all of `close.timeout.ms`, and the member left no LeaveGroup.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_with_a_revocation_unread_leaves_at_once() {
    let topic = unique_name("consumer");
    single_with(&[(&topic, 2)]).await;
    let all = partitions(&topic, 2);
    let group = unique_name("g");
    let start = |name: &str| {
        let mut c = group_builder_at_defaults(bootstrap(), &group, "range")
            .build()
            .unwrap();
        c.subscribe([topic.as_str()]).unwrap();
        Driven::start(name, c, STEP)
    };
    let a = start("a");
    wait_until(
        "a owns everything",
        REBALANCE_WITHIN,
        || a.assignment() == all,
        || a.state(),
    )
    .await;
    // a stops receiving; b's join makes the coordinator prepare a rebalance, which a's member
    // hears at its next heartbeat (heartbeat.interval.ms, 3 s) and answers by revoking (range
    // is eager), an event nobody reads.
    let (a, _) = a.stop().await;
    let b = start("b");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    a.close().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "close took {took:?}");
    wait_until(
        "b owns everything",
        Duration::from_secs(15),
        || b.assignment() == all,
        || b.state(),
    )
    .await;
    let (b, _) = b.stop().await;
    b.close().await.unwrap();
}

/// A consumer dropped without `close` leaves its group: the coordinator lists one member
/// soon after (long before the 45 s session timeout would remove it), and the other consumer
/// gets every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_leaves_its_group() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let all = partitions(&topic, 2);
    let group = unique_name("g");
    let start = |name: &str| {
        let mut c = group_builder_at_defaults(bootstrap(), &group, "range")
            .build()
            .unwrap();
        c.subscribe([topic.as_str()]).unwrap();
        Driven::start(name, c, STEP)
    };
    let a = start("a");
    let b = start("b");
    wait_for_split(&[&a, &b], &all, REBALANCE_WITHIN).await;
    assert_eq!(group_members(&pool, &group).await.len(), 2);

    let (a, _) = a.stop().await;
    drop(a);
    let dropped = Instant::now();
    loop {
        let members = group_members(&pool, &group).await;
        if members.len() == 1 {
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_millis(2500),
            "the dropped consumer is still a member: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        "b owns everything",
        REBALANCE_WITHIN,
        || b.assignment() == all,
        || b.state(),
    )
    .await;
    let (b, _) = b.stop().await;
    b.close().await.unwrap();
}

/// Per-partition streams: a partition whose stream nobody reads does not hold the others back
/// (its stream fills, the partition is paused), and once read it yields every record in order
/// (the kept batch is handed over and the partition resumed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_streams_hold_back_only_the_partition_not_read() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    produce_spread(&pool, &topic, 2, 200, 10).await;
    let mut c = builder_at_defaults(bootstrap())
        .max_poll_records(5)
        .build()
        .unwrap();
    c.assign([p0.clone(), p1.clone()]).unwrap();
    let mut streams = c.into_partition_streams(1);
    let mut by_partition = BTreeMap::new();
    while by_partition.len() < 2 {
        let s = tokio::time::timeout(Duration::from_secs(10), streams.next())
            .await
            .expect("a stream per partition")
            .expect("the consumer runs");
        by_partition.insert(s.partition().clone(), s);
    }
    let mut s0 = by_partition.remove(&p0).unwrap();
    let mut s1 = by_partition.remove(&p1).unwrap();

    // p0 is not read at all while every record of p1 comes.
    let mut read = Vec::new();
    while read.len() < 100 {
        let r = tokio::time::timeout(Duration::from_secs(10), s1.recv())
            .await
            .unwrap_or_else(|_| panic!("p1 stalled after {} records", read.len()))
            .expect("p1's stream ends only when p1 leaves")
            .unwrap();
        read.push(r);
    }
    let mut all = read.clone();
    read.clear();
    while read.len() < 100 {
        let r = tokio::time::timeout(Duration::from_secs(10), s0.recv())
            .await
            .unwrap_or_else(|_| panic!("p0 stalled after {} records", read.len()))
            .expect("p0's stream ends only when p0 leaves")
            .unwrap();
        read.push(r);
    }
    all.extend(read);
    assert_exactly(&all, &BTreeMap::new(), &[(p0, 100), (p1, 100)].into(), 10);
    streams.close().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), s0.recv())
            .await
            .expect("a closed consumer's streams end")
            .is_none()
    );
}

/// In a group, the partitions revoked from a consumer split into streams end their streams
/// (range is eager: both), after the offsets the streams stored were committed: the member
/// that gets a partition starts after what was processed, and nothing is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_partitions_end_their_streams_after_their_offsets_are_committed() {
    let topic = unique_name("consumer");
    let pool = single_with(&[(&topic, 2)]).await;
    let group = unique_name("g");
    produce_spread(&pool, &topic, 2, 40, 10).await;
    let mut a = group_builder_at_defaults(bootstrap(), &group, "range")
        .build()
        .unwrap();
    a.subscribe([topic.as_str()]).unwrap();
    let mut streams = a.into_partition_streams(4);
    let mut tasks = Vec::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..2 {
        let mut s = tokio::time::timeout(REBALANCE_WITHIN, streams.next())
            .await
            .expect("a stream per partition")
            .expect("the consumer runs");
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(r) = s.recv().await {
                // The test may have stopped counting (it has what it waited for).
                let _ = done.send(());
                got.push(r.unwrap());
            }
            got
        }));
    }
    for _ in 0..40 {
        tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .expect("records from both streams");
    }

    // b joins: the eager revocation ends both of a's streams.
    let mut b = group_builder_at_defaults(bootstrap(), &group, "range")
        .build()
        .unwrap();
    b.subscribe([topic.as_str()]).unwrap();
    let deadline = Instant::now() + REBALANCE_WITHIN;
    let mut read_by_b = Vec::new();
    while !tasks.iter().all(|t| t.is_finished()) || b.assignment().is_empty() {
        assert!(Instant::now() < deadline, "a's streams did not end");
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), b.recv()).await {
            read_by_b.push(r.unwrap());
        }
    }
    let mut read_by_a = Vec::new();
    for t in tasks {
        read_by_a.extend(t.await.unwrap());
    }
    assert_exactly(
        &read_by_a,
        &BTreeMap::new(),
        &ends(&partitions(&topic, 2), 20),
        10,
    );
    // b starts its partition after what a processed.
    let owned: Vec<TopicPartition> = b.assignment().into_iter().collect();
    assert_eq!(owned.len(), 1, "{owned:?}");
    let tp = owned[0].clone();
    produce(&pool, &topic, tp.partition, 5, now_ms()).await;
    let more = 5 - read_by_b.len().min(5);
    read_by_b.extend(recv_n(&mut b, more, Duration::from_secs(10)).await);
    assert_exactly(
        &read_by_b,
        &[(tp.clone(), 20)].into(),
        &[(tp, 25)].into(),
        5,
    );
    b.close().await.unwrap();
    streams.close().await.unwrap();
}
