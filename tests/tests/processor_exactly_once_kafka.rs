//! The `Processor` in its exactly-once mode (`ProcessorBuilder::exactly_once`) on Apache Kafka
//! 4.4 (`Kafka::single`), the clients at their defaults but for what the mode needs
//! (`transactional.id`, `enable.auto.commit=false`, `isolation.level=read_committed`): what the
//! handler sends to the processor's sink, the dead letters and the input offsets take effect
//! together. Each case reads the outputs as a read_committed reader does and, where an
//! aborted transaction must have written something, as a read_uncommitted reader does too.
//! - retries and dead letters inside transactions: a retried record's failed tries leave no
//!   output, a poison record is dead-lettered in its batch's transaction, every good input
//!   makes its output once, and the group's offsets end at the input's end;
//! - an output the transaction cannot take aborts it, dead letter included: the records come
//!   again, and a read_committed reader sees the dead letter once;
//! - a run dropped in the middle of a record leaves its transaction open; the next run aborts
//!   it and handles its records again, each output once;
//! - a second processor joining the group mid-stream, each with its own `transactional.id`:
//!   every input's output once, whichever member made it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kcon::deserialize::StringDeserializer;
use kcon::{Consumer, ErrorKind, Failure, Processor, Record, TopicPartition};
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::builder_at_defaults;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::policy::{committed, producer, read_exactly_at, until};
use kcon_tests::pool::config;

/// How long a test waits for its processor to get through its inputs.
const WITHIN: Duration = Duration::from_secs(60);

/// A consumer of `group` for an exactly-once processor of `topic`: its offsets committed only
/// in the processor's transactions, reading committed records from the start.
fn input_consumer(b: &str, group: &str, topic: &str) -> Consumer {
    let mut c = builder_at_defaults(b)
        .group_id(group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .build()
        .unwrap();
    c.subscribe([topic]).unwrap();
    c
}

/// An input topic of `partitions` partitions, an output topic and a dead-letter topic (one
/// partition each), named after `prefix`.
async fn topics(b: &str, prefix: &str, partitions: i32) -> (String, String, String) {
    let pool = Pool::new(config(b)).unwrap();
    let names = (
        unique_name(&format!("{prefix}-in")),
        unique_name(&format!("{prefix}-out")),
        unique_name(&format!("{prefix}-dlq")),
    );
    let (input, output, dlq) = (&names.0, &names.1, &names.2);
    create_topics(&pool, &[(input, partitions), (output, 1), (dlq, 1)]).await;
    names
}

/// A transactional producer at the client's defaults.
fn transactional(b: &str, id: &str) -> Producer {
    Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", id)
        .build()
        .unwrap()
}

/// Writes `values` to `topic`, the i-th to partition `i % partitions`, and waits for each.
async fn write(b: &str, topic: &str, partitions: i32, values: &[String]) {
    let p = producer(b);
    let mut deliveries = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let partition = i32::try_from(i).unwrap() % partitions;
        let record = ProducerRecord::new(topic, v.clone()).with_partition(partition);
        deliveries.push(p.send(record).await.expect("queued"));
    }
    for d in deliveries {
        d.await.expect("an input written");
    }
    p.close().await.expect("the producer closes");
}

/// The values of `topic`'s `n` partitions a reader at `isolation` reads: exactly `count`, then
/// nothing for a second.
async fn read(b: &str, topic: &str, n: i32, isolation: &str, count: usize) -> Vec<String> {
    let records = read_exactly_at(b, topic, n, count, isolation).await;
    records.iter().map(text).collect()
}

/// The values of `topic`-0 a reader at `isolation` reads from the start until nothing comes
/// for two seconds.
async fn read_all(b: &str, topic: &str, isolation: &str) -> Vec<String> {
    let mut c = builder_at_defaults(b)
        .set("isolation.level", isolation)
        .build()
        .unwrap();
    c.assign([TopicPartition::new(topic, 0)]).unwrap();
    let mut values = Vec::new();
    while let Ok(r) = tokio::time::timeout(Duration::from_secs(2), c.recv()).await {
        values.push(text(&r.expect("a record")));
    }
    c.close().await.unwrap();
    values
}

fn text(r: &Record) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

/// Each value once, as a sorted list (a duplicate shows twice).
fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

/// The offsets `group` committed for `topic`'s two partitions.
async fn committed_pair(b: &str, group: &str, topic: &str) -> [Option<i64>; 2] {
    let c = committed(b, group, topic, 2).await;
    [0, 1].map(|p| c[&TopicPartition::new(topic, p)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_dead_letters_work_inside_transactions_and_every_input_makes_its_output_once() {
    let b = Kafka::single().bootstrap();
    let (input, output, dlq) = topics(b, "eosp", 2).await;
    // Every tenth record, from the fourth, is poison; every seventh fails its first try.
    const N: usize = 60;
    let values: Vec<String> = (0..N)
        .map(|i| {
            if i % 10 == 3 {
                format!("poison{i}")
            } else {
                format!("v{i}")
            }
        })
        .collect();
    write(b, &input, 2, &values).await;

    let group = unique_name("eosp-group");
    let mut processor = Processor::builder(input_consumer(b, &group, &input))
        .value(StringDeserializer)
        .exactly_once(transactional(b, &unique_name("eosp-txn")))
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", &dlq)
        .set("errors.retry.backoff.ms", "50")
        .set("errors.retry.delay.max.ms", "50")
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let out = output.clone();
    let stop = until(processor.metrics_handle(), |m| {
        m.records_processed + m.records_dead_lettered == N as u64
    });
    let run = processor.run_until(stop, async move |r| {
        let value = r.value.clone();
        if value.starts_with("poison") {
            return Err(Failure::permanent("a poison record"));
        }
        let i: usize = value[1..].parse().expect("v<i>");
        if i.is_multiple_of(7) && r.attempt < 2 {
            // Sent, then the try fails: this output must never be written.
            sink.send(ProducerRecord::new(
                out.as_str(),
                format!("partial:{value}"),
            ));
            return Err(Failure::retriable("busy"));
        }
        sink.send(ProducerRecord::new(out.as_str(), format!("out:{value}")));
        Ok(())
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the processor got through its inputs")
        .expect("the run stopped by its stop future");
    let counts = processor.transactions().expect("the exactly-once mode");
    let m = processor.metrics();
    processor.close().await.unwrap();

    let good: Vec<String> = values
        .iter()
        .filter(|v| v.starts_with('v'))
        .map(|v| format!("out:{v}"))
        .collect();
    let poison: Vec<String> = values
        .iter()
        .filter(|v| v.starts_with("poison"))
        .cloned()
        .collect();
    assert_eq!(
        (m.records_dead_lettered, m.records_retried > 0),
        (poison.len() as u64, true),
        "{m:?}"
    );
    assert!(counts.committed >= 1, "{counts:?}");
    assert_eq!(counts.aborted, 0, "{counts:?}");
    // A failed try's outputs were dropped, never sent: not even a read_uncommitted reader sees
    // them.
    let written = read(b, &output, 1, "read_uncommitted", good.len()).await;
    assert_eq!(sorted(written), sorted(good.clone()));
    let committed_outputs = read(b, &output, 1, "read_committed", good.len()).await;
    assert_eq!(sorted(committed_outputs), sorted(good));
    let letters = read(b, &dlq, 1, "read_committed", poison.len()).await;
    assert_eq!(sorted(letters), sorted(poison));
    assert_eq!(
        committed_pair(b, &group, &input).await,
        [Some(N as i64 / 2), Some(N as i64 / 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_the_transaction_cannot_take_aborts_it_with_its_dead_letter() {
    let b = Kafka::single().bootstrap();
    let (input, output, dlq) = topics(b, "eosp-abort", 1).await;
    // One partition: the poison record and the next one come in one batch, one transaction.
    let values: Vec<String> = ["poison0", "v1", "v2"].map(String::from).to_vec();
    write(b, &input, 1, &values).await;

    let group = unique_name("eosp-abort-group");
    let mut processor = Processor::builder(input_consumer(b, &group, &input))
        .value(StringDeserializer)
        .exactly_once(transactional(b, &unique_name("eosp-abort-txn")))
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", &dlq)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let out = output.clone();
    let refused_once = Arc::new(AtomicBool::new(false));
    let refused = refused_once.clone();
    // v1 once before the abort, then v1 and v2 again.
    let stop = until(processor.metrics_handle(), |m| m.records_processed >= 3);
    let run = processor.run_until(stop, async move |r| {
        if r.value.starts_with("poison") {
            return Err(Failure::permanent("a poison record"));
        }
        if r.value == "v1" && !refused.swap(true, Ordering::SeqCst) {
            // Larger than max.request.size (1 MiB by default): the producer refuses it, and
            // the transaction holding the dead letter before it aborts.
            sink.send(ProducerRecord::new(out.as_str(), "x".repeat(2 << 20)));
            return Ok(());
        }
        sink.send(ProducerRecord::new(
            out.as_str(),
            format!("out:{}", r.value),
        ));
        Ok(())
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the processor got through its inputs")
        .expect("the run stopped by its stop future");
    // The records came again after the abort: processed once more each.
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.unwrap();
    assert!(refused_once.load(Ordering::SeqCst));
    assert_eq!(counts.aborted, 1, "{counts:?}");
    assert!(counts.committed >= 1, "{counts:?}");

    // The dead letter was written twice, once in the aborted transaction: a read_committed
    // reader sees it once.
    let raw = read(b, &dlq, 1, "read_uncommitted", 2).await;
    assert_eq!(raw, ["poison0", "poison0"]);
    let letters = read(b, &dlq, 1, "read_committed", 1).await;
    assert_eq!(letters, ["poison0"]);
    let outputs = read(b, &output, 1, "read_committed", 2).await;
    assert_eq!(outputs, ["out:v1", "out:v2"]);
    let c = committed(b, &group, &input, 1).await;
    assert_eq!(c[&TopicPartition::new(&input, 0)], Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_dropped_mid_record_is_settled_by_the_next_and_every_output_is_written_once() {
    let b = Kafka::single().bootstrap();
    let (input, output, _) = topics(b, "eosp-drop", 1).await;
    const N: usize = 40;
    let values: Vec<String> = (0..N).map(|i| format!("v{i}")).collect();
    write(b, &input, 1, &values).await;

    let group = unique_name("eosp-drop-group");
    let mut processor = Processor::builder(input_consumer(b, &group, &input))
        .value(StringDeserializer)
        .exactly_once(transactional(b, &unique_name("eosp-drop-txn")))
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    // The first run hangs at v20, its outputs of v0..v19 sent in the open transaction, and is
    // dropped there.
    let out = output.clone();
    let first = sink.clone();
    let hang = processor.run(async move |r| {
        if r.value == "v20" {
            std::future::pending::<()>().await;
        }
        first.send(ProducerRecord::new(
            out.as_str(),
            format!("out:{}", r.value),
        ));
        Ok(())
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(10), hang)
            .await
            .is_err(),
        "the first run hung at v20 until dropped"
    );
    let out = output.clone();
    let last = Arc::new(AtomicBool::new(false));
    let seen_last = last.clone();
    let stop = async move {
        while !last.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let run = processor.run_until(stop, async move |r| {
        sink.send(ProducerRecord::new(
            out.as_str(),
            format!("out:{}", r.value),
        ));
        if r.value == format!("v{}", N - 1) {
            seen_last.store(true, Ordering::SeqCst);
        }
        Ok(())
    });
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the second run got through the inputs")
        .expect("the run stopped by its stop future");
    let counts = processor.transactions().expect("the exactly-once mode");
    processor.close().await.unwrap();
    assert_eq!(
        counts.aborted, 1,
        "the dropped run's transaction: {counts:?}"
    );

    let expected: Vec<String> = values.iter().map(|v| format!("out:{v}")).collect();
    let outputs = read(b, &output, 1, "read_committed", N).await;
    assert_eq!(outputs, expected, "in order, each once");
    // The dropped run's outputs of its open transaction were written, then aborted.
    let raw = read_all(b, &output, "read_uncommitted").await;
    assert!(raw.len() > N, "{} written", raw.len());
    assert_eq!(
        raw.into_iter().collect::<BTreeSet<_>>(),
        expected.into_iter().collect::<BTreeSet<_>>()
    );
    let c = committed(b, &group, &input, 1).await;
    assert_eq!(c[&TopicPartition::new(&input, 0)], Some(N as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_joining_mid_stream_leaves_every_output_written_once() {
    let b = Kafka::single().bootstrap();
    let (input, output, _) = topics(b, "eosp-join", 2).await;
    let group = unique_name("eosp-join-group");
    const N: usize = 400;
    let values: Vec<String> = (0..N).map(|i| format!("v{i}")).collect();

    // A member of the group: a processor with its own transactional id, running until `stop`
    // is set, its handler a little slow so that a rebalance finds transactions open.
    let member = |id: &str, stop: Arc<AtomicBool>, handled: Arc<AtomicUsize>| {
        let mut processor = Processor::builder(input_consumer(b, &group, &input))
            .value(StringDeserializer)
            .exactly_once(transactional(b, &unique_name(id)))
            .build()
            .unwrap();
        let sink = processor.sink().unwrap();
        let out = output.clone();
        tokio::spawn(async move {
            let done = async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let outcome = processor
                .run_until(done, async move |r| {
                    handled.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    sink.send(ProducerRecord::new(
                        out.as_str(),
                        format!("out:{}", r.value),
                    ));
                    Ok(())
                })
                .await;
            let counts = processor.transactions();
            processor.close().await.and(outcome).map(|()| counts)
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let first = member("eosp-join-a", stop.clone(), Arc::default());
    write(b, &input, 2, &values[..N / 2]).await;
    // The first member is well into the input before the second joins.
    let half = [Some(N as i64 / 8), Some(N as i64 / 8)];
    wait_for(&format!("{group} past {half:?}"), || async {
        let c = committed_pair(b, &group, &input).await;
        c[0] >= half[0] && c[1] >= half[1]
    })
    .await;
    let by_second = Arc::new(AtomicUsize::new(0));
    let second = member("eosp-join-b", stop.clone(), by_second.clone());
    // The rest comes in parts, 300 ms apart, until the second member has handled records: then
    // the two share the partitions.
    for part in values[N / 2..].chunks(N / 20) {
        write(b, &input, 2, part).await;
        if by_second.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let end = [Some(N as i64 / 2), Some(N as i64 / 2)];
    wait_for(&format!("{group} at {end:?}"), || async {
        committed_pair(b, &group, &input).await == end
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut committed_by = BTreeMap::new();
    for (name, task) in [("a", first), ("b", second)] {
        let counts = task
            .await
            .expect("the member's task")
            .unwrap_or_else(|e| panic!("member {name}: {e} ({:?})", e.kind()));
        committed_by.insert(name, counts.expect("the exactly-once mode"));
    }
    assert!(
        committed_by.values().all(|c| c.committed > 0),
        "both members committed transactions: {committed_by:?}"
    );
    let expected: BTreeSet<String> = values.iter().map(|v| format!("out:{v}")).collect();
    let outputs = read(b, &output, 1, "read_committed", N).await;
    assert_eq!(outputs.len(), N, "no output twice");
    assert_eq!(outputs.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Waits (up to [`WITHIN`], every 200 ms) until `done` holds.
async fn wait_for<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_exactly_once_mode_refuses_what_it_cannot_keep() {
    let consumer = |props: &[(&str, &str)]| {
        let mut b = builder_at_defaults("127.0.0.1:9");
        for (n, v) in props {
            b = b.set(n, *v);
        }
        b.build().unwrap()
    };
    let producer = |txn: bool| {
        let mut b = Producer::builder().bootstrap_servers("127.0.0.1:9");
        if txn {
            b = b.set("transactional.id", "t");
        }
        b.build().unwrap()
    };
    let group = [("group.id", "g"), ("enable.auto.commit", "false")];
    // No group.
    let e = Processor::builder(consumer(&[]))
        .exactly_once(producer(true))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    // Commits of its own.
    let e = Processor::builder(consumer(&[("group.id", "g")]))
        .exactly_once(producer(true))
        .build()
        .unwrap_err();
    assert_eq!(e.property(), Some("enable.auto.commit"), "{e}");
    // No transactional.id.
    let e = Processor::builder(consumer(&group))
        .exactly_once(producer(false))
        .build()
        .unwrap_err();
    assert_eq!(e.property(), Some("transactional.id"), "{e}");
    // A dead-letter producer of its own beside the transactions.
    let e = Processor::builder(consumer(&group))
        .exactly_once(producer(true))
        .dead_letter_producer(producer(false))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misuse, "{e}");
    // A sink outside the mode.
    let p = Processor::builder(consumer(&group)).build().unwrap();
    assert_eq!(p.sink().unwrap_err().kind(), ErrorKind::Misuse);
    assert_eq!(p.transactions(), None);
    let p = Processor::builder(consumer(&group))
        .exactly_once(producer(true))
        .build()
        .unwrap();
    assert!(p.sink().is_ok());
}
