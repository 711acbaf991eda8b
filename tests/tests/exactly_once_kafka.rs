//! The `Processor`'s exactly-once mode (`ProcessorBuilder::exactly_once`) and the transactional
//! producer cancelled part-way, on Apache Kafka 4.4 (`Kafka::single`) with the clients at their
//! defaults: a run dropped at any await (a `select!` with a shutdown signal, a
//! `tokio::time::timeout`) leaves nothing that stops the next run, and nothing of a batch is
//! lost or written twice for a read_committed reader (the Java client's, `tests/java/Txn.java`).
//! A transaction call that outlasts the processor's `transaction_call_timeout` is left the same
//! way, on librdkafka's mock cluster (its test says why). A transaction the coordinator timed
//! out (`transaction.timeout.ms`) is aborted and its records come again, the processor going
//! on. Outputs larger than the producer's `buffer.memory` are written once, in order.
//!
//! The processor also runs as a process of its own (`eos_member`), killed with SIGKILL at
//! random points and started again under the same transactional id, or joined by a second
//! member mid-stream: the output holds every input record exactly once, as judged from the
//! log's transaction markers and as the read_committed readers of the Java client, kcon and
//! librdkafka read it, and the group's committed offsets end at the input's end.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use kcon::ApiKey;
use kcon::deserialize::{Decoded, StringDeserializer};
use kcon::policy::Sink;
use kcon::{Processor, TopicPartition};
use kcon_pool::Pool;
use kcon_produce::{ConsumerGroupMetadata, ErrorKind, Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::logs;
use kcon_tests::mock::MockCluster;
use kcon_tests::peers::java_reads_committed;
use kcon_tests::policy::{StopWithAllInHandler, after_a_batch};
use kcon_tests::pool::config;
use tracing::Instrument;
use tracing_subscriber::filter::LevelFilter;

/// Input records written per round of inputs: more come while the cancellations have not yet
/// landed at every await point of a batch.
const CHUNK: usize = 60;
/// The most rounds (runs, each until it has handled a batch) the main test makes before it
/// fails.
const MAX_ROUNDS: usize = 4000;
/// Sweeps of cancellation points (k = 1, 2, ... until a run finishes) at the least.
const MIN_SWEEPS: usize = 30;

/// How long a run may stay pending without being woken before [`cancel_after`] gives it up
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

/// The processor's handling of one record: after yielding three times (await points of its
/// own), `out:<value>` sent to `sink` for `output`-0; when `fail`, also a record larger than
/// `max.request.size` (1 MiB by default), which the producer refuses, so that the transaction
/// aborts and its records come again.
async fn transform<K>(sink: &Sink, output: &str, fail: bool, r: &Decoded<K, String>) {
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    sink.send(ProducerRecord::new(output, format!("out:{}", r.value)).with_partition(0));
    if fail {
        sink.send(ProducerRecord::new(output, "x".repeat(2 << 20)).with_partition(0));
    }
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

/// Waits (up to `within`) until a transaction open on `topic`-0 holds records: its last stable
/// offset is short of its high watermark. Returns both.
async fn wait_until_open(pool: &Pool, topic: &str, within: Duration) -> (i64, Option<i64>) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (high, stable) = ends_of(pool, topic).await;
        if stable.is_some_and(|s| s < high) || tokio::time::Instant::now() >= deadline {
            return (high, stable);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// A consumer for an exactly-once processor of `group` at `b`: its offsets committed only in
/// the processor's transactions, reading committed records from the start.
fn processor_consumer(b: &str, group: &str) -> kcon::ConsumerBuilder {
    kcon::Consumer::builder()
        .bootstrap_servers(b)
        .group_id(group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
}

/// The input topic and what the processor must make of it.
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

/// Where the dropped runs of the main test were, as the processor tells when it settles the
/// transaction one left open (the log line's `during`).
const STEPS: [&str; 4] = [
    "the records' handling and outputs",
    "send_offsets_to_transaction",
    "commit_transaction",
    "abort_transaction",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_cancelled_at_every_await_of_a_batch_goes_on_and_writes_every_input_once() {
    let logs = logs::capture_at(LevelFilter::DEBUG);
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

    let mut consumer = processor_consumer(b, &group)
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
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .exactly_once(producer)
        .build()
        .unwrap();
    // The producer's transactions initialized (with nothing to commit) before the runs.
    processor.commit().await.expect("init_transactions");
    let sink = processor.sink().unwrap();
    // The handler's calls, for the stop that ends each run after a batch.
    let handled = Arc::new(AtomicUsize::new(0));
    // The processor's log lines name no topic: the runs' span names this test's input.
    let span = tracing::info_span!("eos_cancel", input = %input);
    let mark = logs.mark();

    // Each sweep drops runs after k polls, k = 1, 2, ... until one finishes (a run ends once
    // it has handled a batch and committed or aborted its transaction): a poll that leaves the
    // run pending is one of its awaits (the consumer's wait for records, the handler's own
    // yields, the begin, the sends, the acknowledgements, the offsets, the commit, an abort,
    // and the settling of the transaction the run before left open). Every third round is
    // dropped by a timeout of a few milliseconds instead, as a user's would be, and every
    // third sweep's handlers send an output the producer refuses, so that the transactions
    // abort and the cancellations land in aborts too.
    let (mut k, mut sweeps, mut rounds) = (1, 0, 0);
    let (mut finished, mut dropped) = (0, 0);
    let covered = |lines: &[String]| -> BTreeMap<&'static str, usize> {
        let mut seen = BTreeMap::new();
        for line in lines.iter().filter(|l| l.contains(&input)) {
            if line.contains("a run was dropped with a transaction open: settling it") {
                for step in STEPS.into_iter().filter(|s| line.contains(s)) {
                    *seen.entry(step).or_insert(0) += 1;
                }
            }
            if line.contains("the dropped run's transaction was committed") {
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
                    "{rounds} rounds, {sweeps} sweeps, {dropped} runs dropped, {finished} \
                     finished; transactions {:?}; the dropped runs' transactions settled: \
                     {seen:?}",
                    processor.transactions()
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
        let (sink, output, count) = (sink.clone(), output.clone(), handled.clone());
        let run = processor
            .run_until(after_a_batch(handled.clone()), async move |r| {
                count.fetch_add(1, Ordering::SeqCst);
                transform(&sink, &output, fail, r).await;
                Ok(())
            })
            .instrument(span.clone());
        let done = if rounds % 3 == 0 {
            let after = Duration::from_millis((rounds / 3 % 12) as u64);
            tokio::time::timeout(after, run).await.ok()
        } else {
            let (done, stalled) = cancel_after(run, k).await;
            if stalled {
                // The run settled the transaction a dropped run had left open, then waited for
                // records: a stall is a wait for records that are not there, as every input is
                // committed (the settled transaction held the last), never one with inputs
                // left.
                let now = committed(&pool, &group, &input).await;
                assert_eq!(
                    now,
                    inputs.ends.map(Some),
                    "round {rounds}: the processor waited {STALL:?} for records with inputs \
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
            Some(Ok(())) => finished += 1,
            Some(Err(e)) => panic!("round {rounds}: the run stopped: {e}"),
        }
    }
    let counts = processor.transactions().expect("the exactly-once mode");
    assert!(
        counts.committed > 0 && counts.aborted > 0,
        "transactions committed and aborted: {counts:?}"
    );

    // A run dropped with outputs written in its open transaction, then the close: the
    // transaction is aborted, not left to block read_committed readers. Two inputs in one
    // send to one partition come in one batch: the first one's output is sent in the
    // transaction, and the handler hangs at the second.
    let mut expected = inputs.expected.clone();
    let pair = ["open0", "open1"].map(|v| ProducerRecord::new(input.as_str(), v).with_partition(0));
    for outcome in inputs.writer.send_all(pair).await.unwrap().await {
        outcome.expect("an input written");
    }
    let started = Arc::new(AtomicBool::new(false));
    let (hang, out) = (started.clone(), output.clone());
    let hanging = processor.run(async move |r| {
        if r.value == "open0" {
            let value = format!("open:{}", r.record.offset);
            sink.send(ProducerRecord::new(out.as_str(), value).with_partition(0));
            return Ok(());
        }
        hang.store(true, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    });
    // Dropped as a `select!` with a shutdown signal drops it: the signal comes once the
    // handler hangs and the first output is in the log.
    let shutdown = async {
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wait_until_open(&pool, &output, Duration::from_secs(10)).await;
    };
    tokio::select! {
        outcome = hanging => panic!("the hanging run returned: {outcome:?}"),
        () = shutdown => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            panic!("no batch reached the handler in 30 s")
        }
    }
    let (high, stable) = ends_of(&pool, &output).await;
    assert!(
        stable.is_some_and(|s| s < high),
        "the dropped run's outputs are in an open transaction ({stable:?} < {high})"
    );
    processor.close().await.expect("the close");
    let (high, stable) = wait_until_stable(&pool, &output, Duration::from_secs(10)).await;
    assert_eq!(stable, Some(high), "the close aborted the open transaction");
    inputs.writer.close().await.expect("the producer closes");

    // What a read_committed reader sees: every input once, nothing of the aborted
    // transactions.
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
    producer
        .begin_transaction(Duration::from_secs(60))
        .await
        .unwrap();
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
    producer
        .begin_transaction(Duration::from_secs(60))
        .await
        .unwrap();
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .unwrap();
    producer.close().await.expect("the producer closes");
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
    // refusal for want of a transaction, which would make a processor settling a dropped run's
    // transaction abort a transaction that is no more).
    producer
        .commit_transaction(Duration::from_secs(60))
        .await
        .expect("the commit's outcome, kept through the second caller");
    let (values, _) = java_reads_committed(b, &topic, 1);
    assert_eq!(values, ["in the transaction"]);
    producer.close().await.expect("the producer closes");
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
    producer.close().await.expect("the producer closes");
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
    producer.close().await.expect("the producer closes");
    let (high, stable) = wait_until_stable(&pool, &topic, Duration::from_secs(10)).await;
    assert_eq!(stable, Some(high), "the transaction ended");
    let (values, _) = java_reads_committed(b, &topic, 0);
    assert!(values.is_empty(), "aborted: {values:?}");
    let offsets = committed(&pool, &group, &topic).await;
    assert_eq!(offsets[0], None, "the offsets went with the abort");
}

/// The one test here not on Apache Kafka: a transaction call that outlasts the processor's
/// `transaction_call_timeout` needs an EndTxn answer held back, which no broker can be made to
/// do; librdkafka's mock cluster holds one (a pushed answer with a round-trip time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_outlasting_the_call_timeout_is_waited_for_by_the_next_run() {
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
    writer.close().await.expect("the producer closes");
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
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .exactly_once(producer)
        .transaction_call_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // The producer's transactions initialized (with nothing to commit) before the slow EndTxn.
    processor.commit().await.expect("init_transactions");
    let sink = processor.sink().unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    // The first EndTxn is answered after 2 s: its commit passes the call timeout four times.
    mock.push_request_error_rtts(1, ApiKey::EndTxn, &[(0, Duration::from_secs(2))]);
    let (mut timed_out, mut committed) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{committed} inputs committed"
        );
        // Each run ends once it has handled a batch and committed its transaction.
        let before = handled.load(Ordering::SeqCst);
        let (sink, output, count) = (sink.clone(), output.clone(), handled.clone());
        let run = processor.run_until(after_a_batch(handled.clone()), async move |r| {
            count.fetch_add(1, Ordering::SeqCst);
            transform(&sink, &output, false, r).await;
            Ok(())
        });
        match tokio::time::timeout(Duration::from_secs(5), run).await {
            // Waiting for records that do not come: every input was taken.
            Err(_) if timed_out > 0 => break,
            Err(_) => {}
            Ok(Ok(())) => committed += handled.load(Ordering::SeqCst) - before,
            // The commit goes on: the next run waits for it again.
            Ok(Err(e)) if e.kind() == kcon::ErrorKind::Transaction && e.is_retriable() => {
                timed_out += 1
            }
            Ok(Err(e)) => panic!("the run stopped: {e} ({:?})", e.kind()),
        }
    }
    assert!(
        timed_out >= 2,
        "the slow commit timed out {timed_out} times"
    );
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.expect("the close");
    assert_eq!(counts.aborted, 0, "{counts:?}");
    // The slow batch was told by no run (the run that committed it timed out), and the
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

/// Input records of the killed processes.
const INPUTS: usize = 300;
/// Times the processor of [`a_processor_killed_at_random_points_writes_every_input_once`] is
/// killed before a last member runs it to the end.
const KILLS: usize = 3;

/// An `eos_member` process (`tests/src/bin/eos_member.rs`: each record's handling takes 30 ms,
/// so that a batch of ten holds its transaction open about 300 ms with outputs written), and
/// the number of batches it has told of on stdout.
struct Member {
    child: tokio::process::Child,
    batches: Arc<std::sync::atomic::AtomicUsize>,
}

impl Member {
    fn start(b: &str, input: &str, output: &str, group: &str, txn: &str) -> Member {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eos_member"))
            .args([b, input, output, group, txn, "300"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start eos_member");
        let stdout = child.stdout.take().expect("the member's stdout");
        let batches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = batches.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(_)) = lines.next_line().await {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        Member { child, batches }
    }

    /// Waits (up to `within`) until the member has settled a batch.
    async fn wait_for_a_batch(&mut self, within: Duration) {
        let started = tokio::time::Instant::now();
        while self.batches.load(Ordering::SeqCst) == 0 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the member ended ({status}) before it settled a batch");
            }
            assert!(
                started.elapsed() < within,
                "the member settled no batch in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits for the process to end.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("the member ends");
    }
}

/// A record's offset, key and value.
type Keyed = (i64, (String, String));

/// What a read_committed reader must see of `topic`-0, judged here from the log itself (read
/// raw: read_uncommitted, control batches included) by its markers: a transactional batch
/// counts once a COMMIT marker of its producer follows it; an ABORT marker, or a later epoch of
/// the same producer starting before any marker, drops it. The (key, value) of each record of
/// a committed transaction, in log order; how many transactional records were dropped; and the
/// producer ids whose transactions committed records.
async fn committed_records(
    pool: &Pool,
    topic: &str,
) -> (Vec<(String, String)>, usize, BTreeSet<i64>) {
    use kcon_codec::records::ControlRecordType;

    // Per producer id: the epoch of its open transaction and its records, each with its offset.
    // Committed records are kept in log order, not commit order: two members' transactions
    // interleave in the output while one joins mid-stream, and a read_committed reader delivers
    // the records of committed transactions in offset order, whichever committed first.
    let mut open: BTreeMap<i64, (i16, Vec<Keyed>)> = BTreeMap::new();
    let mut seen = Vec::new();
    let mut dropped = 0;
    let mut writers = BTreeSet::new();
    for batch in kcon_tests::transactions::log_batches(pool, topic).await {
        let pid = batch.producer_id();
        if batch.is_control() {
            let marker = batch.records().next().expect("a marker").expect("decodes");
            let control = marker
                .control()
                .expect("decodes")
                .expect("a control record");
            let (_, records) = open.remove(&pid).unwrap_or_default();
            match control.kind {
                ControlRecordType::Commit => {
                    if !records.is_empty() {
                        writers.insert(pid);
                    }
                    seen.extend(records);
                }
                ControlRecordType::Abort => dropped += records.len(),
                ControlRecordType::Other(_) => {}
            }
            continue;
        }
        let records: Vec<Keyed> = batch
            .records()
            .map(|r| {
                let r = r.expect("a record that decodes");
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                (r.offset(), (text(r.key()), text(r.value())))
            })
            .collect();
        if !batch.is_transactional() {
            seen.extend(records);
            continue;
        }
        let epoch = batch.producer_epoch();
        let entry = open.entry(pid).or_insert((epoch, Vec::new()));
        if entry.0 < epoch && !entry.1.is_empty() {
            // A new epoch began a transaction: the old one ended without a commit.
            dropped += entry.1.len();
            entry.1.clear();
        }
        entry.0 = entry.0.max(epoch);
        entry.1.extend(records);
    }
    dropped += open.values().map(|(_, r)| r.len()).sum::<usize>();
    seen.sort_by_key(|(offset, _)| *offset);
    let seen = seen.into_iter().map(|(_, record)| record).collect();
    (seen, dropped, writers)
}

/// The values of `topic`-0 a kcon read_committed consumer at its defaults reads: `n`, and
/// nothing after.
async fn read_committed_by_kcon(b: &str, topic: &str, n: usize) -> Vec<String> {
    let mut consumer = kcon_tests::consumer::builder_at_defaults(b)
        .set("isolation.level", "read_committed")
        .build()
        .unwrap();
    consumer.assign([TopicPartition::new(topic, 0)]).unwrap();
    let records = kcon_tests::consumer::recv_n(&mut consumer, n, Duration::from_secs(30)).await;
    kcon_tests::consumer::expect_no_record(&mut consumer, Duration::from_secs(1)).await;
    consumer.close().await.unwrap();
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// An exactly-once processor's inputs and outputs: one input and one output topic of one
/// partition, `n` inputs `0` to `n - 1` written to the input, a new group's consumer of it (up
/// to 50 records a poll) and a transactional producer with `settings` as well.
struct Numbered {
    pool: Pool,
    input: String,
    output: String,
    group: String,
    consumer: kcon::Consumer,
    producer: Producer,
}

/// [`Numbered`], its topics, group and transactional id named after `name`.
async fn numbered_in_and_out(b: &str, name: &str, n: usize, settings: &[(&str, &str)]) -> Numbered {
    let pool = Pool::new(config(b)).unwrap();
    let input = unique_name(&format!("eos-{name}-in"));
    let output = unique_name(&format!("eos-{name}-out"));
    let group = unique_name(&format!("eos-{name}-group"));
    create_topics(&pool, &[(&input, 1), (&output, 1)]).await;
    let writer = Producer::builder().bootstrap_servers(b).build().unwrap();
    let inputs: Vec<_> = (0..n)
        .map(|i| ProducerRecord::new(input.as_str(), format!("{i}")).with_partition(0))
        .collect();
    for outcome in writer.send_all(inputs).await.unwrap().await {
        outcome.unwrap();
    }
    writer.close().await.expect("the producer closes");

    let mut consumer = processor_consumer(b, &group)
        .set("max.poll.records", "50")
        .build()
        .unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let mut producer = Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", unique_name(&format!("eos-{name}-tx")));
    for (k, v) in settings {
        producer = producer.set(k, *v);
    }
    Numbered {
        pool,
        input,
        output,
        group,
        consumer,
        producer: producer.build().unwrap(),
    }
}

/// A transaction whose outputs are more than the producer's `buffer.memory` holds at once is
/// written all the same, in several calls of the processor's producer (each record's two
/// outputs do not fit in it together either), each output once and in order, and the inputs'
/// offsets committed with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_larger_than_buffer_memory_are_written_once_in_one_transaction() {
    let b = Kafka::single().bootstrap();
    // Two outputs of about 1 KB per input: a record's are more than buffer.memory, and a
    // batch's about seventy times it.
    let Numbered {
        pool,
        input,
        output,
        group,
        consumer,
        producer,
    } = numbered_in_and_out(b, "large", 50, &[("buffer.memory", "1500")]).await;
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .exactly_once(producer)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let out = output.clone();
    let written = Arc::new(AtomicUsize::new(0));
    let sent = written.clone();
    let (p, g, i) = (&pool, group.as_str(), input.as_str());
    let stop = async move {
        while committed(p, g, i).await[0] != Some(50) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        processor.run_until(stop, async move |r| {
            for half in ["a", "b"] {
                let value = format!("{}{half}:{}", r.value, "x".repeat(1000));
                sink.send(ProducerRecord::new(out.as_str(), value).with_partition(0));
                sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }),
    )
    .await
    .expect("the inputs committed within a minute")
    .expect("the run stopped by its stop future");
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.expect("the close");
    assert_eq!(written.load(Ordering::SeqCst), 100);
    assert_eq!(counts.aborted, 0, "{counts:?}");
    assert!(counts.committed >= 1, "{counts:?}");
    assert_eq!(committed(&pool, &group, &input).await[0], Some(50));
    let read: Vec<String> = read_committed_by_kcon(b, &output, 100)
        .await
        .into_iter()
        .map(|v| v.split(':').next().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..50)
        .flat_map(|i| [format!("{i}a"), format!("{i}b")])
        .collect();
    assert_eq!(read, expected);
}

/// A run side by side in the exactly-once mode, stopped while its 20 records are in the
/// handler, finishes them and commits their offsets in the transaction that commits their
/// outputs: once the run returns, before any close, the group's committed offset comes to name
/// all 20. Each handler ends only after the run has seen its stop, after its last turn for new
/// work (a run that then ended the transaction without carrying the answers out committed
/// the outputs without their offsets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_side_by_side_stopped_mid_records_commits_their_offsets_with_their_outputs() {
    let b = Kafka::single().bootstrap();
    let Numbered {
        pool,
        input,
        output,
        group,
        consumer,
        producer,
    } = numbered_in_and_out(b, "stop", 20, &[]).await;
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .set("processing.ordering", "unordered")
        .set("processing.max.concurrency", "20")
        .exactly_once(producer)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let out = output.clone();
    let held = StopWithAllInHandler::new(20);
    tokio::time::timeout(
        Duration::from_secs(60),
        processor.run_concurrently_until(held.stop(), async |r| {
            sink.send(
                ProducerRecord::new(out.as_str(), format!("out:{}", r.value)).with_partition(0),
            );
            held.begin().await;
            Ok(())
        }),
    )
    .await
    .expect("the run stopped within a minute")
    .expect("the run stopped by its stop future");
    assert_eq!(held.begun(), 20, "every record started");
    // The coordinator writes a commit's markers after it answers EndTxn: the offsets show once
    // they are written (without them in the transaction, never).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut at = committed(&pool, &group, &input).await[0];
    while at != Some(20) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        at = committed(&pool, &group, &input).await[0];
    }
    assert_eq!(at, Some(20));
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.expect("the close");
    assert_eq!(counts.aborted, 0, "{counts:?}");
    let mut read = read_committed_by_kcon(b, &output, 20).await;
    read.sort_by_key(|v| v[4..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("out:{i}")).collect();
    assert_eq!(read, expected);
}

/// A transaction that stays open longer than `transaction.timeout.ms` is aborted by the
/// coordinator, which bumps the producer's epoch (KIP-588): the processor's next output is
/// refused with INVALID_PRODUCER_EPOCH, which fails the transaction, not the producer. The
/// processor aborts it and puts the partition back (the run goes on, no error), and the records
/// come again and commit once. Here the first record's output is written in the transaction
/// (which starts the coordinator's clock), and the second record's handling takes until the
/// coordinator has aborted the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_the_coordinator_timed_out_is_aborted_and_its_records_come_again() {
    let logs = logs::capture_at(LevelFilter::DEBUG);
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).unwrap();
    let input = unique_name("eos-timeout-in");
    let output = unique_name("eos-timeout-out");
    let group = unique_name("eos-timeout-group");
    create_topics(&pool, &[(&input, 1), (&output, 1)]).await;
    let writer = Producer::builder().bootstrap_servers(b).build().unwrap();
    for i in 0..3 {
        let record = ProducerRecord::new(input.as_str(), format!("v{i}")).with_partition(0);
        writer.send(record).await.unwrap().await.unwrap();
    }
    writer.close().await.expect("the producer closes");
    let mut consumer = processor_consumer(b, &group).build().unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let producer = Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", unique_name("eos-timeout-tx"))
        .set("transaction.timeout.ms", "2000")
        .build()
        .unwrap();
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .exactly_once(producer)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    // The processor's log lines name no topic: the run's span names this test's input.
    let span = tracing::info_span!("eos_timeout", input = %input);
    let mark = logs.mark();

    let (out, p) = (output.clone(), &pool);
    let waited = Arc::new(AtomicBool::new(false));
    let handled = Arc::new(AtomicUsize::new(0));
    let count = handled.clone();
    let (g, i) = (group.as_str(), input.as_str());
    let stop = async move {
        while committed(p, g, i).await[0] != Some(3) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let run = processor.run_until(stop, async move |r| {
        count.fetch_add(1, Ordering::SeqCst);
        if r.value == "v1" && !waited.swap(true, Ordering::SeqCst) {
            // v0's output is in the log, in the open transaction ...
            let (high, _) = wait_until_open(p, &out, Duration::from_secs(30)).await;
            assert_eq!(high, 1, "v0's output written in the transaction");
            // ... then it and the coordinator's abort marker: nothing open after them.
            let ends = wait_until_stable(p, &out, Duration::from_secs(60)).await;
            assert_eq!(
                ends,
                (2, Some(2)),
                "the coordinator did not abort the transaction"
            );
        }
        sink.send(ProducerRecord::new(out.as_str(), format!("out:{}", r.value)).with_partition(0));
        Ok(())
    });
    tokio::time::timeout(Duration::from_secs(90), run.instrument(span))
        .await
        .expect("the inputs committed within 90 s")
        .expect("the run went on through the abort and stopped by its stop future");
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.expect("the close");
    // Aborted once for the timeout; the records came again and committed.
    assert_eq!(counts.aborted, 1, "{counts:?}");
    assert!(counts.committed >= 1, "{counts:?}");
    assert_eq!(
        handled.load(Ordering::SeqCst),
        6,
        "each input handled twice"
    );
    let lines: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains(&input))
        .collect();
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("the transaction fails"))
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert!(
        failed[0].contains("INVALID_PRODUCER_EPOCH")
            && failed[0].contains("transaction.timeout.ms"),
        "{}",
        failed[0]
    );
    let aborted = lines
        .iter()
        .filter(|l| l.contains("the transaction was aborted; its records come again"))
        .count();
    assert_eq!(aborted, 1, "{lines:#?}");
    assert_eq!(committed(&pool, &group, &input).await[0], Some(3));
    assert_eq!(
        read_committed_by_kcon(b, &output, 3).await,
        ["out:v0", "out:v1", "out:v2"]
    );
}

/// `input` (2 partitions) holding `n` records `v{i}` and an empty `output`, on the single node.
struct Setup {
    b: String,
    pool: Pool,
    input: String,
    output: String,
    group: String,
    /// Each input record's `partition:offset` and the output value it must become.
    inputs: BTreeMap<String, String>,
    /// The input partitions' ends.
    ends: [i64; 2],
}

impl Setup {
    async fn new(n: usize) -> Setup {
        let b = Kafka::single().bootstrap().to_owned();
        let input = unique_name("eos-in");
        let output = unique_name("eos-out");
        let group = unique_name("eos-group");
        let pool = Pool::new(config(&b)).unwrap();
        create_topics(&pool, &[(&input, 2), (&output, 1)]).await;
        let plain = Producer::builder().bootstrap_servers(&b).build().unwrap();
        let mut deliveries = Vec::new();
        for i in 0..n {
            let record =
                ProducerRecord::new(input.as_str(), format!("v{i}")).with_partition((i % 2) as i32);
            deliveries.push(plain.send(record).await.unwrap());
        }
        let mut inputs = BTreeMap::new();
        for (i, d) in deliveries.into_iter().enumerate() {
            let d = d.await.unwrap();
            inputs.insert(
                format!("{}:{}", d.partition, d.offset.unwrap()),
                format!("out:v{i}"),
            );
        }
        plain.close().await.expect("the producer closes");
        Setup {
            b,
            pool,
            input,
            output,
            group,
            inputs,
            ends: [n.div_ceil(2) as i64, (n / 2) as i64],
        }
    }

    fn member(&self, txn: &str) -> Member {
        Member::start(&self.b, &self.input, &self.output, &self.group, txn)
    }

    async fn committed(&self) -> [Option<i64>; 2] {
        committed(&self.pool, &self.group, &self.input).await
    }

    /// Waits until the group's offsets reach the input's end.
    async fn wait_for_the_end(&self, within: Duration) {
        let started = tokio::time::Instant::now();
        loop {
            let now = self.committed().await;
            if now == self.ends.map(Some) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "the group's offsets stayed at {now:?}, short of {:?}",
                self.ends
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks that the output holds every input record exactly once, as judged from the log's
    /// markers and as the read_committed readers of the Java client, kcon and librdkafka read
    /// it; returns the producer ids that committed records.
    async fn assert_every_input_once(&self) -> BTreeSet<i64> {
        let (high, stable) =
            wait_until_stable(&self.pool, &self.output, Duration::from_secs(10)).await;
        assert_eq!(stable, Some(high), "no transaction left open on the output");
        let (seen, dropped, writers) = committed_records(&self.pool, &self.output).await;
        eprintln!(
            "{} records committed, {dropped} of aborted transactions",
            seen.len()
        );
        let mut once = BTreeSet::new();
        for (key, value) in &seen {
            assert!(once.insert(key.clone()), "input {key} written twice");
            assert_eq!(self.inputs.get(key), Some(value), "input {key}");
        }
        assert_eq!(once.len(), self.inputs.len(), "every input once");
        let values: Vec<String> = seen.into_iter().map(|(_, v)| v).collect();
        let (by_java, end) =
            kcon_tests::peers::java_reads_committed(&self.b, &self.output, values.len());
        assert_eq!(by_java, values, "the Java client's read_committed reader");
        assert_eq!(end, high, "the Java reader reached the end of the log");
        let by_kcon = read_committed_by_kcon(&self.b, &self.output, values.len()).await;
        assert_eq!(by_kcon, values, "kcon's read_committed reader");
        let by_librdkafka = kcon_tests::peers::librdkafka_reads(
            &self.b,
            &self.output,
            "read_committed",
            values.len(),
        );
        assert_eq!(by_librdkafka, values, "librdkafka's read_committed reader");
        writers
    }
}

/// How long a member may take to settle its first batch: a killed member's session
/// (session.timeout.ms, 45 s at the default) runs out before the group rebalances without it.
const FIRST_BATCH_WITHIN: Duration = Duration::from_secs(90);

/// The exactly-once processor as a process of its own, killed with SIGKILL at random points
/// (often with a transaction open: a batch's transaction stays open about 300 ms with outputs
/// written)
/// and started again under the same transactional id, at the group's defaults: each new
/// member waits out the killed one's 45 s session before it is assigned the input. The output
/// holds every input exactly once, for the Java client's, kcon's and librdkafka's
/// read_committed readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_at_random_points_writes_every_input_once() {
    let setup = Setup::new(INPUTS).await;
    let txn = unique_name("eos-tx");
    // Killed at random points: a seed from the clock, printed so that a failure can be rerun.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill seed {seed}");
    let mut rng = seed;
    for round in 0..KILLS {
        let mut member = setup.member(&txn);
        // Killed from its first settled batch to 3 s (about 8 batches) after it.
        member.wait_for_a_batch(FIRST_BATCH_WITHIN).await;
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis((rng >> 33) % 3000);
        tokio::time::sleep(after).await;
        member.kill().await;
        eprintln!(
            "round {round}: killed {after:?} after its first batch, committed {:?}",
            setup.committed().await
        );
    }
    // The last member runs until the group's offsets reach the input's end.
    let mut member = setup.member(&txn);
    setup.wait_for_the_end(Duration::from_secs(120)).await;
    member.kill().await;
    setup.assert_every_input_once().await;
}

/// A second member (a transactional id of its own) joins an exactly-once processor
/// mid-stream: the group rebalances, both commit batches, and the output holds every input
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_loses_and_doubles_nothing() {
    // Twice the records, so that the first member is still busy when the second joins.
    let setup = Setup::new(2 * INPUTS).await;
    let mut first = setup.member(&unique_name("eos-tx-a"));
    first.wait_for_a_batch(Duration::from_secs(60)).await;
    let mut second = setup.member(&unique_name("eos-tx-b"));
    setup.wait_for_the_end(Duration::from_secs(120)).await;
    for member in [&mut first, &mut second] {
        member.kill().await;
    }
    let writers = setup.assert_every_input_once().await;
    assert_eq!(
        writers.len(),
        2,
        "both members committed batches: {writers:?}"
    );
}
