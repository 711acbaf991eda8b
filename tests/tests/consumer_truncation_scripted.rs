//! A log truncated under the consumer (an unclean leader election), on a scripted broker that
//! really truncates: the partition's log ends at 15 (leader epoch 0), then a new leader at
//! epoch 1 holds only 0..10 and takes 3 new records (10..13, their values `"{offset}@1"`).
//!
//! Whatever the consumer stood on, it never stops: it finds where the logs part
//! (OffsetForLeaderEpoch, KIP-320, or a Fetch answer's diverging epoch where the broker offers
//! no OffsetForLeaderEpoch), reads on from there, and every record written after the
//! truncation is read; the truncation is logged once at WARN, told to the hook and counted.
//! Only under `auto.offset.reset=none` does the application get an error, as it asked.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kcon::deserialize::Decoded;
use kcon::{Processor, Record, TopicPartition, Truncation};
use kcon_prometheus::RegisterMetrics;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder, expect_no_record, group_builder, recv_n};
use kcon_tests::logs::{self, Logs};
use kcon_tests::prometheus::parse_with_prometheus_client;
use kcon_tests::truncation::Told;
use kcon_tests::truncation::{TruncatingBroker, expect_truncation_error, value};
use prometheus_client::registry::Registry;

/// How long records may take to come.
const PATIENCE: Duration = Duration::from_secs(20);

/// Where the new leader's log parts from the old one.
const DIVERGES_AT: i64 = 10;
/// The old log's end: where a consumer that read it all stands.
const OLD_END: i64 = 15;
/// Records the new leader takes after the election.
const NEW: usize = 3;

/// A broker whose log of `topic` holds 0..15 in epoch 0, in two batches (0..10, 10..15).
async fn old_log(topic: &str) -> TruncatingBroker {
    let broker = TruncatingBroker::start(topic).await;
    broker.append(DIVERGES_AT as usize);
    broker.append((OLD_END - DIVERGES_AT) as usize);
    broker
}

/// The unclean election: the log ends at 10 from epoch 1 on, and takes 3 new records.
fn elect_uncleanly(broker: &TruncatingBroker) {
    broker.truncate_and_bump_epoch(DIVERGES_AT);
    broker.append(NEW);
    assert_eq!(broker.end(), DIVERGES_AT + NEW as i64);
}

/// `(offset, value)` of each record.
fn read(records: &[Record]) -> Vec<(i64, String)> {
    records
        .iter()
        .map(|r| {
            let v = r.value.as_deref().expect("a value");
            (r.offset, String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

/// `(offset, value)` of the records `offsets` as written in `epoch`.
fn written(offsets: std::ops::Range<i64>, epoch: i32) -> Vec<(i64, String)> {
    offsets.map(|o| (o, value(o, epoch))).collect()
}

/// Asserts `told` is the one truncation of `topic`-0 from 15 back to 10, where epoch 0 ends.
fn assert_told_once(told: &Told, topic: &str) {
    let t = told.truncations();
    assert_eq!(t.len(), 1, "told once: {t:?}");
    let t = &t[0];
    assert_eq!(t.partition, TopicPartition::new(topic, 0));
    assert_eq!(
        (t.position, t.resumed_at, t.diverged_in_epoch),
        (OLD_END, DIVERGES_AT, Some(0)),
        "{t:?}"
    );
}

/// Asserts one WARN line since `mark` names the partition, the old position and the new one.
fn assert_warned_once(logs: &Logs, mark: usize, topic: &str) {
    let partition = format!("{topic}-0");
    let warns: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains(" WARN ") && l.contains(&partition))
        .collect();
    assert_eq!(warns.len(), 1, "one WARN line: {warns:#?}");
    for part in [
        format!("the log of {partition} was truncated under offset {OLD_END}"),
        format!("reading on from offset {DIVERGES_AT}"),
    ] {
        assert!(warns[0].contains(&part), "{part:?} not in {:?}", warns[0]);
    }
}

/// An assigned consumer reads the old log to its end; the leader changes under it and the
/// log is truncated: it moves back to 10, reads the new leader's records, and goes on reading
/// what comes after. The receiving calls never return an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assigned_consumer_reads_on_across_a_truncation_and_reads_every_record_after_it() {
    let logs = logs::capture();
    let topic = unique_name("truncated");
    let broker = old_log(&topic).await;
    let told = Told::default();
    let mut consumer = builder(&broker.bootstrap())
        .set("client.id", "truncated")
        .hooks(told.clone())
        .build()
        .unwrap();
    let mut registry = Registry::default();
    consumer.metrics_handle().register_metrics(&mut registry);
    consumer.assign([TopicPartition::new(&topic, 0)]).unwrap();
    let old = recv_n(&mut consumer, OLD_END as usize, PATIENCE).await;
    assert_eq!(read(&old), written(0..OLD_END, 0));

    let mark = logs.mark();
    elect_uncleanly(&broker);
    let new = recv_n(&mut consumer, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1),
        "the new leader's records, from where the logs part"
    );
    // It goes on: what the leader takes next comes too.
    broker.append(2);
    let more = recv_n(&mut consumer, 2, PATIENCE).await;
    assert_eq!(read(&more), written(13..15, 1));

    assert_told_once(&told, &topic);
    assert_eq!(consumer.metrics().truncations, 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    assert_eq!(
        samples.get(r#"kcon_consumer_truncations_total{client_id="truncated"}"#),
        Some(&1.0),
        "{text}"
    );
    assert_warned_once(&logs, mark, &topic);
    assert!(
        broker.epoch_questions().contains(&(0, 1)),
        "asked the new leader (epoch 1) where epoch 0 ends: {:?}",
        broker.epoch_questions()
    );
    assert_eq!(broker.unexpected(), Vec::<String>::new());
    consumer.close().await.unwrap();
}

/// A group consumer read the old log and committed 15 (epoch 0); the log is truncated and
/// ends at 13. The next member starts from the commit: it validates it against the new leader
/// (Java does the same with a committed position that carries its epoch), finds where the logs
/// part, and reads the 3 new records instead of stopping; its commit moves to 13, in epoch 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_commit_lies_past_the_truncated_log_end_reads_the_new_records() {
    let logs = logs::capture();
    let topic = unique_name("truncated");
    let group = unique_name("g");
    let broker = old_log(&topic).await;

    let mut first = group_builder(&broker.bootstrap(), &group, "range")
        .set("client.id", "first")
        .build()
        .unwrap();
    first.subscribe([topic.as_str()]).unwrap();
    let old = recv_n(&mut first, OLD_END as usize, PATIENCE).await;
    assert_eq!(read(&old), written(0..OLD_END, 0));
    first.commit().await.unwrap();
    first.close().await.unwrap();
    assert_eq!(broker.committed(&group), Some((OLD_END, 0)));

    elect_uncleanly(&broker);
    let mark = logs.mark();
    let told = Told::default();
    let mut second = group_builder(&broker.bootstrap(), &group, "range")
        .set("client.id", "second")
        .hooks(told.clone())
        .build()
        .unwrap();
    second.subscribe([topic.as_str()]).unwrap();
    let new = recv_n(&mut second, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1)
    );
    expect_no_record(&mut second, Duration::from_millis(300)).await;
    assert_eq!(
        broker.fetched_from_by("second").first(),
        Some(&(DIVERGES_AT, 0)),
        "the commit validated before any Fetch: the first one starts where the logs part"
    );
    assert_told_once(&told, &topic);
    assert_eq!(second.metrics().truncations, 1);
    assert_warned_once(&logs, mark, &topic);
    second.commit().await.unwrap();
    second.close().await.unwrap();
    assert_eq!(
        broker.committed(&group),
        Some((DIVERGES_AT + NEW as i64, 1))
    );
    assert_eq!(broker.unexpected(), Vec::<String>::new());
}

/// A commit without a leader epoch (an old client's) past the truncated log's end cannot be
/// validated: the Fetch from it is OFFSET_OUT_OF_RANGE and `auto.offset.reset` (earliest
/// here) decides, as in the Java client. The consumer reads on: the new records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_its_epoch_past_the_log_end_is_reset_by_the_policy_and_read_on_from() {
    let topic = unique_name("truncated");
    let group = unique_name("g");
    let broker = old_log(&topic).await;
    broker.commit(&group, OLD_END, -1);
    elect_uncleanly(&broker);

    let told = Told::default();
    let mut consumer = group_builder(&broker.bootstrap(), &group, "range")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let all = recv_n(&mut consumer, DIVERGES_AT as usize + NEW, PATIENCE).await;
    let mut want = written(0..DIVERGES_AT, 0);
    want.extend(written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1));
    assert_eq!(read(&all), want);
    assert_eq!(
        told.truncations(),
        Vec::<Truncation>::new(),
        "no epoch, no truncation found: an offset out of range"
    );
    assert!(
        !broker
            .epoch_questions()
            .iter()
            .any(|&(asked, _)| asked == 0),
        "nothing to ask about the commit's epoch: {:?}",
        broker.epoch_questions()
    );
    consumer.close().await.unwrap();
}

/// Under `auto.offset.reset=none` the application asked to stop at a truncation (the Java
/// client raises LogTruncationException): the receiving call returns an error of kind
/// LogTruncation whose message says so, and nothing is read until the application seeks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_auto_offset_reset_none_a_truncation_is_the_applications_error() {
    let topic = unique_name("truncated");
    let group = unique_name("g");
    let broker = old_log(&topic).await;
    broker.commit(&group, OLD_END, 0);
    elect_uncleanly(&broker);

    let told = Told::default();
    let mut consumer = group_builder(&broker.bootstrap(), &group, "range")
        .set("auto.offset.reset", "none")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    expect_truncation_error(&mut consumer, &told, &tp, OLD_END, DIVERGES_AT, PATIENCE).await;

    // The application seeks where the logs part, and reads on.
    consumer.seek(tp, DIVERGES_AT).unwrap();
    let new = recv_n(&mut consumer, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1)
    );
    consumer.close().await.unwrap();
}

/// A record processor reads on too: its run is not stopped by the truncation, and its handler
/// gets the new leader's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_runs_on_across_a_truncation() {
    let topic = unique_name("truncated");
    let group = unique_name("g");
    let broker = old_log(&topic).await;
    let told = Told::default();
    let mut consumer = group_builder(&broker.bootstrap(), &group, "range")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reached = |n: usize| {
        let count = count.clone();
        poll_fn(move |cx| {
            if count.load(Ordering::SeqCst) >= n {
                Poll::Ready(())
            } else {
                // Checked again at the processor's next wake-up; a short timer makes sure
                // there is one.
                let waker = cx.waker().clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    waker.wake();
                });
                Poll::Pending
            }
        })
    };
    for until in [OLD_END as usize, OLD_END as usize + NEW] {
        if until > OLD_END as usize {
            elect_uncleanly(&broker);
        }
        let (seen, count) = (seen.clone(), count.clone());
        let handler = async move |d: &Decoded<Option<Bytes>, Option<Bytes>>| {
            seen.lock().unwrap().push(d.record.clone());
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        tokio::time::timeout(PATIENCE, processor.run_until(reached(until), handler))
            .await
            .unwrap_or_else(|_| panic!("{until} records within {PATIENCE:?}"))
            .expect("the run goes on across the truncation");
    }
    let seen = seen.lock().unwrap().clone();
    let mut want = written(0..OLD_END, 0);
    want.extend(written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1));
    assert_eq!(read(&seen), want);
    assert_told_once(&told, &topic);
    processor.close().await.unwrap();
}

/// A broker like [`old_log`]'s that does not offer OffsetForLeaderEpoch.
///
/// Why scripted: Apache Kafka answers a Fetch with a diverging epoch (KIP-320) when the log it
/// holds does not have the request's last fetched epoch up to its fetch offset, but kcon
/// validates its position with OffsetForLeaderEpoch after every leader change before it
/// fetches from the new leader, and every Apache Kafka broker offers that API: against one, a
/// truncation comes to kcon in the validation answer, not in a Fetch. Without the API kcon
/// skips validation (as the Java client does for such brokers) and the Fetch answer is where
/// it learns of the truncation.
async fn old_log_without_epoch_lookups(topic: &str) -> TruncatingBroker {
    let broker = TruncatingBroker::start_without_offset_for_leader_epoch(topic).await;
    broker.append(DIVERGES_AT as usize);
    broker.append((OLD_END - DIVERGES_AT) as usize);
    broker
}

/// The consumer's Fetches from the truncation on: `(fetch offset, last fetched epoch)`.
fn fetches_since(broker: &TruncatingBroker, before: usize) -> Vec<(i64, i32)> {
    broker.fetched_from().split_off(before)
}

/// An assigned consumer read the old log to its end; the log is truncated and it can only
/// learn so from the Fetch answer: the leader answers its Fetch from 15 (last fetched epoch 0)
/// with the diverging epoch (epoch 0 ends at 10) and no records. The consumer moves back to 10
/// as validation would have moved it, reads the new leader's records and what comes after,
/// and the truncation is told once (WARN, hook, metric). It used to fetch from 15 again at
/// once, get the same answer, and never read another record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncation_told_by_a_fetch_answers_diverging_epoch_is_read_on_from() {
    let logs = logs::capture();
    let topic = unique_name("diverging");
    let broker = old_log_without_epoch_lookups(&topic).await;
    let told = Told::default();
    let mut consumer = builder(&broker.bootstrap())
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.assign([TopicPartition::new(&topic, 0)]).unwrap();
    let old = recv_n(&mut consumer, OLD_END as usize, PATIENCE).await;
    assert_eq!(read(&old), written(0..OLD_END, 0));

    let mark = logs.mark();
    let before = broker.fetched_from().len();
    elect_uncleanly(&broker);
    let new = recv_n(&mut consumer, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1),
        "the new leader's records, from where the logs part"
    );
    broker.append(2);
    let more = recv_n(&mut consumer, 2, PATIENCE).await;
    assert_eq!(read(&more), written(13..15, 1));

    assert_told_once(&told, &topic);
    assert_eq!(consumer.metrics().truncations, 1);
    assert_warned_once(&logs, mark, &topic);
    let fetches = fetches_since(&broker, before);
    let from_old_end = fetches.iter().filter(|f| **f == (OLD_END, 0)).count();
    assert!(
        (1..=3).contains(&from_old_end),
        "fetched from the old end until a Fetch answer said where the logs part, not over and \
         over: {fetches:?}"
    );
    assert!(
        fetches.contains(&(DIVERGES_AT, 0)),
        "then from where they part, with the epoch ending there: {fetches:?}"
    );
    assert_eq!(
        broker.epoch_questions(),
        Vec::<(i32, i32)>::new(),
        "the broker offers no OffsetForLeaderEpoch"
    );
    assert_eq!(broker.unexpected(), Vec::<String>::new());
    consumer.close().await.unwrap();
}

/// A group's commit at 15 (epoch 0) lies past the truncated log's end, and the broker cannot
/// validate it: the first Fetch, from 15, is answered with the diverging epoch, and the member
/// reads on from 10, commits 13 in epoch 1, and the truncation is told once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_past_the_log_end_is_read_on_from_where_a_fetch_answers_diverging_epoch_says() {
    let topic = unique_name("diverging");
    let group = unique_name("g");
    let broker = old_log_without_epoch_lookups(&topic).await;
    broker.commit(&group, OLD_END, 0);
    elect_uncleanly(&broker);

    let told = Told::default();
    let mut consumer = group_builder(&broker.bootstrap(), &group, "range")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let new = recv_n(&mut consumer, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1)
    );
    expect_no_record(&mut consumer, Duration::from_millis(300)).await;
    assert_eq!(
        broker.fetched_from().first(),
        Some(&(OLD_END, 0)),
        "nothing validated the commit: the first Fetch starts from it"
    );
    assert_told_once(&told, &topic);
    assert_eq!(consumer.metrics().truncations, 1);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    assert_eq!(
        broker.committed(&group),
        Some((DIVERGES_AT + NEW as i64, 1))
    );
    assert_eq!(broker.unexpected(), Vec::<String>::new());
}

/// Under `auto.offset.reset=none` a truncation a Fetch answer tells is the application's
/// error, as one validation finds: the position stays until the application seeks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_auto_offset_reset_none_a_diverging_epoch_is_the_applications_error() {
    let topic = unique_name("diverging");
    let group = unique_name("g");
    let broker = old_log_without_epoch_lookups(&topic).await;
    broker.commit(&group, OLD_END, 0);
    elect_uncleanly(&broker);

    let told = Told::default();
    let mut consumer = group_builder(&broker.bootstrap(), &group, "range")
        .set("auto.offset.reset", "none")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    expect_truncation_error(&mut consumer, &told, &tp, OLD_END, DIVERGES_AT, PATIENCE).await;
    consumer.seek(tp, DIVERGES_AT).unwrap();
    let new = recv_n(&mut consumer, NEW, PATIENCE).await;
    assert_eq!(
        read(&new),
        written(DIVERGES_AT..DIVERGES_AT + NEW as i64, 1)
    );
    consumer.close().await.unwrap();
}
