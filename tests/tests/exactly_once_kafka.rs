//! `kcon::exactly_once::ExactlyOnce` and the transactional producer cancelled part-way, on
//! Apache Kafka 4.4 (`Kafka::single`) with the clients at their defaults: a call dropped at
//! any await (a `select!` with a shutdown signal, a `tokio::time::timeout`) leaves nothing
//! that stops the next call, and nothing of a batch is lost or written twice for a
//! read_committed reader (the Java client's, `tests/java/Txn.java`). A transaction call that
//! outlasts the pipeline's call timeout is left the same way, on librdkafka's mock cluster (the
//! last test says why).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use kcon::ApiKey;
use kcon::exactly_once::{Batch, ExactlyOnce, PipelineError, TransformError};
use kcon::{Record, TopicPartition};
use kcon_pool::Pool;
use kcon_produce::{ConsumerGroupMetadata, ErrorKind, Producer, ProducerRecord};
use kcon_tests::brokers::{repo_root, unique_name};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::logs;
use kcon_tests::mock::MockCluster;
use kcon_tests::pool::config;
use serde_json::{Value, json};

/// Input records written per round of inputs: more come while the cancellations have not yet
/// landed at every await point of a batch.
const CHUNK: usize = 60;
/// The most rounds (calls of `process_batch`) the main test makes before it fails.
const MAX_ROUNDS: usize = 4000;
/// Sweeps of cancellation points (k = 1, 2, ... until a call finishes) at the least.
const MIN_SWEEPS: usize = 30;

/// How long a call may stay pending without being woken before [`cancel_after`] gives it up
/// as stalled: far longer than any await of a batch on a broker that answers (a transaction
/// call retried after CONCURRENT_TRANSACTIONS waits about 100 ms); only a wait for records
/// that are not there lasts this long.
const STALL: Duration = Duration::from_secs(5);

/// Polls `fut` until it finishes or has been polled `k` times without finishing, then drops
/// it right after that poll (k = 0: dropped unpolled). Its output if it finished, and whether
/// it was dropped as stalled instead: pending, and not woken for [`STALL`].
async fn cancel_after<F: Future>(fut: F, k: usize) -> (Option<F::Output>, bool) {
    let mut fut = pin!(fut);
    let mut stall = pin!(tokio::time::sleep(STALL));
    let (mut polls, mut stalled) = (0, false);
    let out = std::future::poll_fn(|cx| {
        if polls == k {
            return Poll::Ready(None);
        }
        if stall.as_mut().poll(cx).is_ready() {
            stalled = true;
            return Poll::Ready(None);
        }
        polls += 1;
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if polls == k => Poll::Ready(None),
            Poll::Pending => {
                stall.as_mut().reset(tokio::time::Instant::now() + STALL);
                // Registers the timer's wake-up.
                let _ = stall.as_mut().poll(cx);
                Poll::Pending
            }
        }
    })
    .await;
    (out, stalled)
}

/// The pipeline's transform: `out:<value>` for each input, to `output`-0, after yielding
/// three times (await points of its own); an error instead when `fail`.
async fn transform(
    output: String,
    fail: bool,
    records: Vec<Record>,
) -> Result<Vec<ProducerRecord>, TransformError> {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    if fail {
        return Err("the transform fails this batch".into());
    }
    Ok(records
        .into_iter()
        .map(|r| {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            ProducerRecord::new(output.clone(), format!("out:{value}")).with_partition(0)
        })
        .collect())
}

/// The Java client's read_committed reader of `topic`-0 (`scripts/kafka java Txn read`): the
/// values it reads (at least `expect`, then nothing more for 2 s) and its position at the
/// end (the last stable offset).
fn java_reads_committed(bootstrap: &str, topic: &str, expect: usize) -> (Vec<String>, i64) {
    let request = json!({
        "op": "read",
        "bootstrap": bootstrap,
        "topic": topic,
        "partitions": 1,
        "isolation": "read_committed",
        "expect": expect,
        "quiet_ms": 2000,
        "within_ms": 60000,
    });
    let out = Command::new(repo_root().join("scripts/kafka"))
        .args(["java", "Txn", &request.to_string()])
        .output()
        .expect("run scripts/kafka java Txn");
    assert!(
        out.status.success(),
        "the Java reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the Java reader printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let values = answer["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().expect("a UTF-8 value").to_owned())
        .collect();
    let end = answer["end"][0][1].as_i64().expect("the reader's position");
    (values, end)
}

/// `topic`-0's high watermark and last stable offset.
async fn ends_of(pool: &Pool, topic: &str) -> (i64, Option<i64>) {
    let tp = TopicPartition::new(topic, 0);
    let found = kcon_admin::watermarks(pool, &BTreeSet::from([tp.clone()]))
        .await
        .expect("watermarks");
    let w = &found[&tp];
    (w.high_watermark, w.last_stable)
}

/// Waits (up to `within`) until no transaction is open on `topic`-0: its last stable offset
/// is its high watermark. Returns both.
async fn wait_until_stable(pool: &Pool, topic: &str, within: Duration) -> (i64, Option<i64>) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (high, stable) = ends_of(pool, topic).await;
        if stable == Some(high) || tokio::time::Instant::now() >= deadline {
            return (high, stable);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The group's committed offsets of `input`'s partitions 0 and 1 (read without waiting for
/// transactions still open).
async fn committed(pool: &Pool, group: &str, input: &str) -> [Option<i64>; 2] {
    let groups = [group.to_owned()];
    let answer = kcon_admin::committed_offsets_of_groups(pool, &groups, None, false)
        .await
        .expect("offsets");
    let offsets = match answer.get(group) {
        Some(Ok(offsets)) => offsets.clone(),
        _ => return [None, None],
    };
    [0, 1].map(|p| {
        offsets
            .get(&TopicPartition::new(input, p))
            .and_then(|o| o.committed.as_ref())
            .map(|o| o.offset)
    })
}

/// The input topic and what the pipeline must make of it.
struct Inputs {
    topic: String,
    writer: Producer,
    /// Records written to each partition.
    ends: [i64; 2],
    /// The output value of each input written so far.
    expected: Vec<String>,
}

impl Inputs {
    /// Writes `n` more records `v<i>`, alternating between the partitions.
    async fn write(&mut self, n: usize) {
        let mut deliveries = Vec::new();
        for _ in 0..n {
            let i = self.expected.len();
            let record = ProducerRecord::new(self.topic.as_str(), format!("v{i}"))
                .with_partition((i % 2) as i32);
            deliveries.push(self.writer.send(record).await.expect("queued"));
            self.expected.push(format!("out:v{i}"));
            self.ends[i % 2] += 1;
        }
        for d in deliveries {
            d.await.expect("an input written");
        }
    }
}

/// Where the dropped calls of the main test were, as the pipeline tells when it settles the
/// batch one left open.
const STEPS: [&str; 4] = [
    "the transform or its records",
    "send_offsets_to_transaction",
    "commit_transaction",
    "abort_transaction",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_cancelled_at_every_await_of_a_batch_goes_on_and_writes_every_input_once() {
    let logs = logs::capture();
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let input = unique_name("eos-cancel-in");
    let output = unique_name("eos-cancel-out");
    let group = unique_name("eos-cancel-group");
    create_topics(&pool, &[(&input, 2), (&output, 1)]).await;
    let mut inputs = Inputs {
        topic: input.clone(),
        writer: Producer::builder().bootstrap_servers(b).build().unwrap(),
        ends: [0, 0],
        expected: Vec::new(),
    };
    inputs.write(CHUNK).await;

    let mut consumer = kcon::Consumer::builder()
        .bootstrap_servers(b)
        .group_id(&group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // Small batches: many transactions out of few inputs.
        .set("max.poll.records", "4")
        .build()
        .unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", unique_name("eos-cancel-tx"))
        .build()
        .unwrap();
    let writer = producer.clone();
    let mut pipeline = ExactlyOnce::new(consumer, producer).await.unwrap();
    let mark = logs.mark();

    // Each sweep drops calls after k polls, k = 1, 2, ... until one finishes: a poll that
    // leaves the call pending is one of its awaits (the consumer's wait for records, the
    // begin, the transform's own yields, the sends and acknowledgements, the offsets, the
    // commit, an abort, and the settling of the batch the call before left open). Every third
    // round is dropped by a timeout of a few milliseconds instead, as a user's would be, and
    // every third sweep's transforms fail, so that the cancellations land in aborts too.
    let (mut k, mut sweeps, mut rounds) = (1, 0, 0);
    let (mut committed_batches, mut aborted_batches, mut dropped) = (0, 0, 0);
    let covered = |lines: &[String]| -> BTreeMap<&'static str, usize> {
        let mut seen = BTreeMap::new();
        for line in lines.iter().filter(|l| l.contains(&input)) {
            if line.contains("settling its transaction") {
                for step in STEPS.into_iter().filter(|s| line.contains(s)) {
                    *seen.entry(step).or_insert(0) += 1;
                }
            }
            if line.contains("the dropped call's batch was committed") {
                *seen.entry("committed after the drop").or_insert(0) += 1;
            }
        }
        seen
    };
    loop {
        if committed(&pool, &group, &input).await == inputs.ends.map(Some) {
            let seen = covered(&logs.since(mark));
            if sweeps >= MIN_SWEEPS && seen.len() == STEPS.len() + 1 {
                eprintln!(
                    "{rounds} rounds, {sweeps} sweeps, {dropped} calls dropped, \
                     {committed_batches} batches committed and {aborted_batches} aborted by \
                     calls that finished; the dropped calls' batches settled: {seen:?}"
                );
                break;
            }
            inputs.write(CHUNK).await;
        }
        assert!(
            rounds < MAX_ROUNDS,
            "after {rounds} rounds the cancellations landed only in {:?}",
            covered(&logs.since(mark))
        );
        rounds += 1;
        let fail = sweeps % 3 == 2;
        let call = pipeline.process_batch(|records| transform(output.clone(), fail, records));
        let done = if rounds % 3 == 0 {
            let after = Duration::from_millis((rounds / 3 % 12) as u64);
            tokio::time::timeout(after, call).await.ok()
        } else {
            let (done, stalled) = cancel_after(call, k).await;
            if stalled {
                // The call settled the batch a dropped call had left open, then waited for
                // records: a stall is a wait for records that are not there, as every input
                // is committed (the settled batch was the last), never one with inputs left.
                let now = committed(&pool, &group, &input).await;
                assert_eq!(
                    now,
                    inputs.ends.map(Some),
                    "round {rounds}: the pipeline waited {STALL:?} for records with inputs \
                     not yet committed"
                );
            }
            if done.is_some() {
                (k, sweeps) = (1, sweeps + 1);
            } else {
                k += 1;
            }
            done
        };
        match done {
            None => dropped += 1,
            Some(Ok(Batch::Committed { .. })) => committed_batches += 1,
            Some(Ok(Batch::Aborted { .. })) => aborted_batches += 1,
            Some(Ok(other)) => panic!("round {rounds}: {other:?}"),
            Some(Err(e)) => panic!("round {rounds}: the pipeline stopped: {e}"),
        }
    }

    // A call dropped with the batch's outputs written in its open transaction, then the
    // close: the transaction is aborted, not left to block read_committed readers.
    let mut expected = inputs.expected.clone();
    inputs.write(2).await;
    let started = Arc::new(AtomicBool::new(false));
    let hanging = pipeline.process_batch(|records| {
        let (writer, output, started) = (writer.clone(), output.clone(), started.clone());
        async move {
            for r in records {
                let record = ProducerRecord::new(output.clone(), format!("open:{}", r.offset))
                    .with_partition(0);
                writer.send(record).await?.await?;
            }
            started.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, TransformError>(Vec::new())
        }
    });
    // Dropped as a `select!` with a shutdown signal drops it: the signal comes once the
    // outputs are written.
    let shutdown = async {
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        batch = hanging => panic!("the hanging transform returned: {batch:?}"),
        () = shutdown => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            panic!("no batch reached the transform in 30 s")
        }
    }
    let (high, stable) = ends_of(&pool, &output).await;
    assert!(
        stable.is_some_and(|s| s < high),
        "the dropped batch's outputs are in an open transaction ({stable:?} < {high})"
    );
    pipeline.close().await;
    let (high, stable) = wait_until_stable(&pool, &output, Duration::from_secs(10)).await;
    assert_eq!(stable, Some(high), "the close aborted the open transaction");
    inputs.writer.close().await;

    // What a read_committed reader sees: every input once, nothing of the aborted batches.
    let (mut values, end) = java_reads_committed(b, &output, expected.len());
    assert_eq!(end, high, "the reader reached the end of the log");
    values.sort();
    expected.sort();
    let doubled: Vec<&String> = values
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(doubled.is_empty(), "written twice: {doubled:?}");
    assert_eq!(values, expected, "every input once");
}

/// A waker that notes it was woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A transactional producer, initialized, in a transaction with one record written to
/// `topic`-0 (acknowledged).
async fn in_transaction(b: &str, topic: &str) -> Producer {
    let producer = Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", unique_name("eos-cancel-call"))
        .build()
        .unwrap();
    producer
        .init_transactions(Duration::from_secs(30))
        .await
        .unwrap();
    producer.begin_transaction().await.unwrap();
    producer
        .send(ProducerRecord::new(topic, "in the transaction").with_partition(0))
        .await
        .unwrap()
        .await
        .unwrap();
    producer
}

/// Sends a commit and gives up on it once its answer is in the caller's channel, without
/// reading it: a `select!` whose other branch won in the same wake. (The commit's first poll
/// sends it; the waker says when the answer came.)
async fn commit_answered_unread(producer: &Producer) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut commit = pin!(producer.commit_transaction(Duration::from_secs(60)));
    let polled = commit.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(
        polled.is_pending(),
        "the commit answered at once: {polled:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !flag.0.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer to the commit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_commit_whose_answer_came_but_was_not_read_is_told_to_the_commit_made_again() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let topic = unique_name("eos-cancel-unread");
    create_topics(&pool, &[(&topic, 1)]).await;
    let producer = in_transaction(b, &topic).await;
    commit_answered_unread(&producer).await;
    // The same call again gets that outcome: the transaction committed.
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .expect("the commit's outcome");
    let (high, stable) = wait_until_stable(&pool, &topic, Duration::from_secs(10)).await;
    assert_eq!(stable, Some(high));
    let (values, _) = java_reads_committed(b, &topic, 1);
    assert_eq!(values, ["in the transaction"]);
    // And the producer goes on.
    producer.begin_transaction().await.unwrap();
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .unwrap();
    producer.close().await;
}

#[tokio::test]
async fn a_kept_outcome_asked_for_by_a_call_dropped_at_once_is_kept_for_the_next() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let topic = unique_name("eos-cancel-kept");
    create_topics(&pool, &[(&topic, 1)]).await;
    let producer = in_transaction(b, &topic).await;
    commit_answered_unread(&producer).await;
    // The same call again, dropped before the producer's task has taken it (this runtime has
    // one thread): the task hands the kept outcome to a caller that is gone.
    let (done, _) = cancel_after(producer.commit_transaction(Duration::from_secs(60)), 1).await;
    assert!(done.is_none());
    // The outcome is still there for the caller after it: the transaction committed (not a
    // refusal for want of a transaction, which would make a pipeline settling its batch abort
    // a transaction that is no more).
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .expect("the commit's outcome, kept through the second caller");
    let (values, _) = java_reads_committed(b, &topic, 1);
    assert_eq!(values, ["in the transaction"]);
    producer.close().await;
}

#[tokio::test]
async fn a_commit_made_again_while_the_dropped_one_runs_joins_it_and_keeps_no_outcome_behind() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let topic = unique_name("eos-cancel-join");
    create_topics(&pool, &[(&topic, 1)]).await;
    let producer = in_transaction(b, &topic).await;
    // Sent, then dropped before the producer's task has even taken it (this runtime has one
    // thread); the same call made again joins it.
    let (done, _) = cancel_after(producer.commit_transaction(Duration::from_secs(60)), 1).await;
    assert!(done.is_none());
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .expect("the commit joined");
    // Both callers of that commit are answered once it is done: a third commit is a new call,
    // refused as there is no transaction, not handed the dropped caller's outcome.
    let again = producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .expect_err("a commit with no transaction");
    assert_eq!(again.kind(), ErrorKind::TransactionState, "{again}");
    let (values, _) = java_reads_committed(b, &topic, 1);
    assert_eq!(values, ["in the transaction"]);
    producer.close().await;
}

#[tokio::test]
async fn closing_while_dropped_offsets_are_sent_aborts_the_transaction() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let topic = unique_name("eos-cancel-close");
    let group = unique_name("eos-cancel-close-group");
    create_topics(&pool, &[(&topic, 1)]).await;
    let producer = in_transaction(b, &topic).await;
    let (high, stable) = ends_of(&pool, &topic).await;
    assert!(
        stable.is_some_and(|s| s < high),
        "the record is in an open transaction ({stable:?} < {high})"
    );
    // The offsets are sent (the call's first poll), the call dropped, and the producer closed
    // at once: the offsets still go, and then the transaction is aborted, rather than left
    // open until the coordinator's transaction.timeout.ms (60 s) passes.
    let offsets = [(TopicPartition::new(&topic, 0), 1)];
    let group_metadata = ConsumerGroupMetadata::new(&group);
    let sent =
        producer.send_offsets_to_transaction(offsets, &group_metadata, Duration::from_secs(60));
    let (done, _) = cancel_after(sent, 1).await;
    assert!(done.is_none());
    producer.close().await;
    let (high, stable) = wait_until_stable(&pool, &topic, Duration::from_secs(10)).await;
    assert_eq!(stable, Some(high), "the transaction ended");
    let (values, _) = java_reads_committed(b, &topic, 0);
    assert!(values.is_empty(), "aborted: {values:?}");
    let offsets = committed(&pool, &group, &topic).await;
    assert_eq!(offsets[0], None, "the offsets went with the abort");
}

/// The one test here not on Apache Kafka: a transaction call that outlasts the pipeline's call
/// timeout needs an EndTxn answer held back, which no broker can be made to do; librdkafka's
/// mock cluster holds one (a pushed answer with a round-trip time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_outlasting_the_call_timeout_is_waited_for_by_the_next_call() {
    let mock = MockCluster::start(1);
    let b = mock.bootstrap().to_owned();
    let input = unique_name("eos-slow-in");
    let output = unique_name("eos-slow-out");
    mock.create_topic(&input, 1, 1);
    mock.create_topic(&output, 1, 1);
    let writer = Producer::builder().bootstrap_servers(&b).build().unwrap();
    let mut expected = Vec::new();
    for i in 0..9 {
        let record = ProducerRecord::new(input.as_str(), format!("v{i}")).with_partition(0);
        writer.send(record).await.unwrap().await.unwrap();
        expected.push(format!("out:v{i}"));
    }
    writer.close().await;
    let mut consumer = kcon_tests::consumer::builder(&b)
        .group_id(&unique_name("eos-slow-group"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("max.poll.records", "3")
        .build()
        .unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(&b)
        .set("transactional.id", unique_name("eos-slow-tx"))
        .build()
        .unwrap();
    let mut pipeline = ExactlyOnce::new(consumer, producer)
        .await
        .unwrap()
        .with_call_timeout(Duration::from_millis(500));
    // The first EndTxn is answered after 2 s: its commit passes the call timeout four times.
    mock.push_request_error_rtts(1, ApiKey::EndTxn, &[(0, Duration::from_secs(2))]);
    let (mut timed_out, mut committed) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{committed} inputs committed"
        );
        let call = pipeline.process_batch(|records| transform(output.clone(), false, records));
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            // Waiting for records that do not come: every input was taken.
            Err(_) if timed_out > 0 => break,
            Err(_) => {}
            Ok(Ok(Batch::Committed { inputs, .. })) => committed += inputs,
            Ok(Ok(other)) => panic!("{other:?}"),
            // The commit goes on: the next call waits for it again.
            Ok(Err(PipelineError::Producer(e))) if e.is_retriable() => timed_out += 1,
            Ok(Err(e)) => panic!("the pipeline stopped: {e}"),
        }
    }
    assert!(
        timed_out >= 2,
        "the slow commit timed out {timed_out} times"
    );
    pipeline.close().await;
    // The slow batch was told by no call (the call that committed it timed out), and the
    // others by theirs; the output holds each input once: the slow batch was neither aborted
    // and taken again, nor lost.
    assert!(
        (1..9).contains(&committed),
        "{committed} inputs told committed"
    );
    let mut values = kcon_tests::peers::librdkafka_reads(&b, &output, "read_committed", 9);
    values.sort();
    expected.sort();
    assert_eq!(values, expected);
}
