//! What the consumer offers beside its receiving calls, on Apache Kafka (`Kafka::single()`) at
//! the client's defaults: hooks told of fetches, records handed out (lent by `recv_borrowed`
//! too), rebalances, commits (auto-commits too) and partition errors; a metrics handle read
//! from another thread while the consumer runs; a commit handle storing and committing from
//! another task while a `stream()` holds the consumer, refused once partitions are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use kcon::consumer::Hook;
use kcon::{
    CommitDone, CommitSource, ConsumerHooks, ErrorKind, FetchedBatch, Record, TopicPartition,
};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{REBALANCE_WITHIN, group_builder_at_defaults, partitions, recv_n};
use kcon_tests::kafka::{Kafka, create_topics, single_with};
use kcon_tests::offsets::produce_spread;

/// The single node's bootstrap list.
fn bootstrap() -> &'static str {
    Kafka::single().bootstrap()
}

/// A commit as the hooks heard it: who asked, the offsets given, whether it was acknowledged.
type HeardCommit = (CommitSource, Option<BTreeMap<TopicPartition, i64>>, bool);

/// What a [`Recorder`] heard.
#[derive(Debug, Default)]
struct Heard {
    fetched_records: usize,
    fetched_bytes: usize,
    /// Offsets of the records about to be handed out, per partition, in order.
    handed: BTreeMap<TopicPartition, Vec<i64>>,
    rebalances: Vec<(Hook, Vec<TopicPartition>)>,
    commits: Vec<HeardCommit>,
    partition_errors: Vec<(TopicPartition, ErrorKind)>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Heard>>);

impl Recorder {
    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        self.0.lock().unwrap()
    }
}

impl ConsumerHooks for Recorder {
    fn on_fetched(&self, batch: &FetchedBatch<'_>) {
        let mut h = self.heard();
        h.fetched_records += batch.records;
        h.fetched_bytes += batch.bytes;
    }

    fn on_records(&self, partition: &TopicPartition, records: &[Record]) {
        let mut h = self.heard();
        let offsets = h.handed.entry(partition.clone()).or_default();
        offsets.extend(records.iter().map(|r| r.offset));
    }

    fn on_rebalance(&self, kind: Hook, partitions: &[TopicPartition]) {
        self.heard().rebalances.push((kind, partitions.to_vec()));
    }

    fn on_commit(&self, commit: &CommitDone<'_>) {
        self.heard().commits.push((
            commit.source,
            commit.offsets.cloned(),
            commit.error.is_none(),
        ));
    }

    fn on_partition_error(&self, partition: &TopicPartition, error: &kcon::Error) {
        self.heard()
            .partition_errors
            .push((partition.clone(), error.kind()));
    }
}

/// With hooks, `recv_borrowed` lends the records `on_records` heard of (decoded for it): each
/// fetched record heard of and lent once, in order, and fetches counted as records arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_hear_the_records_recv_borrowed_lends() {
    let topic = unique_name("hooks");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 40, 10).await;
    let recorder = Recorder::default();
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .max_poll_records(6)
        .hooks(recorder.clone())
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let deadline = tokio::time::Instant::now() + REBALANCE_WITHIN;
    let mut lent: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    while lent.values().map(Vec::len).sum::<usize>() < 40 {
        let batch = tokio::time::timeout_at(deadline, c.recv_borrowed())
            .await
            .unwrap_or_else(|_| panic!("40 records within {REBALANCE_WITHIN:?}: {lent:?}"))
            .unwrap();
        assert!((1..=6).contains(&batch.len()), "{batch:?}");
        let offsets = lent.entry(batch.partition().clone()).or_default();
        for r in &batch {
            let value = format!("value-{}", r.offset() % 10);
            assert_eq!(r.value(), Some(value.as_bytes()), "{r:?}");
            offsets.push(r.offset());
        }
    }
    let expected: BTreeMap<TopicPartition, Vec<i64>> = partitions(&topic, 2)
        .into_iter()
        .map(|tp| (tp, (0..20).collect()))
        .collect();
    assert_eq!(lent, expected);
    {
        let h = recorder.heard();
        assert_eq!(h.handed, expected, "every record heard of once, in order");
        assert_eq!(h.fetched_records, 40, "{h:?}");
    }
    c.close().await.unwrap();
}

/// Hooks hear every fetched and handed-out record once, in order, the assignment and the
/// revocation, each commit with who asked for it, and a partition's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_hear_fetches_records_rebalances_commits_and_partition_errors() {
    let topic = unique_name("hooks");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 40, 10).await;
    let all = partitions(&topic, 2);
    let recorder = Recorder::default();
    let second = Recorder::default();
    // No auto-commit comes between the commits this test counts.
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .set("auto.commit.interval.ms", "60000")
        .hooks(recorder.clone())
        .hooks(second.clone())
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut c, 40, REBALANCE_WITHIN).await;
    c.commit().await.unwrap();
    let tp0 = TopicPartition::new(&topic, 0);
    c.commit_offsets([(tp0.clone(), 20)]).await.unwrap();
    c.unsubscribe().await;
    {
        let h = recorder.heard();
        assert_eq!(h.fetched_records, 40, "{h:?}");
        assert!(h.fetched_bytes > 0, "{h:?}");
        let mut by_partition: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
        for r in &records {
            by_partition
                .entry(r.topic_partition())
                .or_default()
                .push(r.offset);
        }
        assert_eq!(
            h.handed, by_partition,
            "every record handed out, once, in order"
        );
        let all_sorted: Vec<TopicPartition> = all.iter().cloned().collect();
        assert_eq!(
            h.rebalances,
            vec![
                (Hook::Assigned, all_sorted.clone()),
                (Hook::Revoked, all_sorted)
            ],
            "{h:?}"
        );
        let sources: Vec<CommitSource> = h.commits.iter().map(|c| c.0).collect();
        // The two asked for, then the one made before the unsubscription gives partitions up.
        assert_eq!(
            sources,
            [
                CommitSource::Commit,
                CommitSource::Commit,
                CommitSource::Rebalance
            ],
            "{h:?}"
        );
        assert!(h.commits.iter().all(|c| c.2), "{h:?}");
        assert_eq!(h.commits[0].1, None);
        assert_eq!(h.commits[1].1, Some(BTreeMap::from([(tp0.clone(), 20)])));
        assert!(h.partition_errors.is_empty(), "{h:?}");
    }
    assert_eq!(second.heard().fetched_records, 40, "the second hook too");

    // A partition with no committed offset under auto.offset.reset=none: its error reaches
    // the hooks as recv returns it.
    let empty = unique_name("hooks-none");
    create_topics(&pool, &[(&empty, 1)]).await;
    let none = Recorder::default();
    let mut strict = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .auto_offset_reset(kcon::ResetPolicy::None)
        .hooks(none.clone())
        .build()
        .unwrap();
    let tp = TopicPartition::new(&empty, 0);
    strict.assign([tp.clone()]).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), strict.recv())
        .await
        .expect("an answer within 10 s")
        .expect_err("no position to start from");
    assert_eq!(e.kind(), ErrorKind::NoOffset, "{e}");
    assert_eq!(
        none.heard().partition_errors,
        vec![(tp, ErrorKind::NoOffset)]
    );
    strict.close().await.unwrap();
    c.close().await.unwrap();
}

/// Auto-commits are counted in the metrics and told to the hooks like every other commit: a
/// consumer that only auto-commits (a Processor's way) has a count of failing commits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commits_are_counted_and_told_to_the_hooks() {
    let topic = unique_name("auto");
    let pool = single_with(&[(&topic, 1)]).await;
    produce_spread(&pool, &topic, 1, 20, 10).await;
    let recorder = Recorder::default();
    let group = unique_name("g");
    let mut c = group_builder_at_defaults(bootstrap(), &group, "range")
        .set("auto.commit.interval.ms", "200")
        .hooks(recorder.clone())
        .build()
        .unwrap();
    let handle = c.metrics_handle();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 20, REBALANCE_WITHIN).await;
    // The next call stores what was handed out; the timer commits it.
    let tp = TopicPartition::new(&topic, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.committed([tp.clone()]).await.unwrap()[&tp] != Some(20) {
        assert!(Instant::now() < deadline, "auto-committed within 10 s");
        let _ = tokio::time::timeout(Duration::from_millis(100), c.recv()).await;
    }
    let heard: Vec<HeardCommit> = recorder.heard().commits.clone();
    assert!(!heard.is_empty(), "the hooks heard the auto-commit");
    assert!(
        heard
            .iter()
            .all(|(source, given, ok)| *source == CommitSource::Auto && given.is_none() && *ok),
        "{heard:?}"
    );
    let m = handle.snapshot();
    assert_eq!(
        (m.commits, m.commit_failures),
        (heard.len() as u64, 0),
        "every auto-commit counted, at once"
    );
    assert!(m.last_commit_latency.is_some());
    c.close().await.unwrap();
}

/// While a `stream()` holds the consumer, a metrics handle on another thread sees the records
/// counted, and a commit handle on another task stores and commits every record it is given;
/// the commits land, the metrics count them, and once the partitions are given up the handle
/// refuses to store for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_commit_handles_work_from_other_tasks_while_the_stream_runs() {
    let topic = unique_name("handles");
    let pool = single_with(&[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 60, 10).await;
    let all = partitions(&topic, 2);
    let mut c = group_builder_at_defaults(bootstrap(), &unique_name("g"), "range")
        .enable_auto_commit(false)
        .enable_auto_offset_store(false)
        .build()
        .unwrap();
    let metrics = c.metrics_handle();
    let commits = c.commit_handle().unwrap();
    assert_eq!(metrics.snapshot().records_consumed, 0);

    // Another thread watches the metrics until all 60 records are counted.
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + REBALANCE_WITHIN + Duration::from_secs(10);
        loop {
            let m = metrics.snapshot();
            if m.records_consumed == 60 && m.partitions.values().all(|l| l.records == Some(0)) {
                return m;
            }
            assert!(Instant::now() < deadline, "the handle never saw 60: {m:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });

    // A worker task stores and commits what it is given.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Record>();
    let worker_commits = commits.clone();
    let worker = tokio::spawn(async move {
        let mut n = 0;
        while let Some(record) = rx.recv().await {
            worker_commits.store_offset(&record).unwrap();
            n += 1;
            if n % 20 == 0 {
                worker_commits.commit().await.unwrap();
            }
        }
        n
    });

    c.subscribe([topic.as_str()]).unwrap();
    let mut last = None;
    {
        let mut stream = c.stream();
        for i in 0..60 {
            let next = tokio::time::timeout(
                REBALANCE_WITHIN,
                poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)),
            )
            .await
            .unwrap_or_else(|_| panic!("the stream stalled after {i} records"));
            let record = next.expect("the stream ended").unwrap();
            last = Some(record.clone());
            tx.send(record).unwrap();
        }
        drop(tx);
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    // The stream keeps the consumer alive (and publishing) meanwhile.
                    _ = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)) => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                if watcher.is_finished() {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "the metrics handle did not see every record");
    }
    let m = watcher.join().expect("the watching thread");
    assert_eq!(m.records_consumed, 60);
    assert_eq!(worker.await.unwrap(), 60);

    let committed = c.committed(all.clone()).await.unwrap();
    let expected: BTreeMap<TopicPartition, Option<i64>> =
        all.iter().map(|tp| (tp.clone(), Some(30))).collect();
    assert_eq!(
        committed, expected,
        "every record the worker stored is committed"
    );
    commits.commit().await.unwrap();
    let m = c.metrics_handle().snapshot();
    assert_eq!((m.commits, m.commit_failures), (4, 0), "{m:?}");

    c.unsubscribe().await;
    let e = commits
        .store_offset(&last.expect("a record"))
        .expect_err("the partition is gone");
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    let owned: BTreeSet<TopicPartition> = c.assignment();
    assert!(owned.is_empty());
    c.close().await.unwrap();
}
