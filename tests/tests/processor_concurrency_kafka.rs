//! `kcon::Processor::run_concurrently` on Apache Kafka 4.4 (`Kafka::single()`), the consumer at
//! the client's defaults but for manual commits: under `processing.ordering=key` with 16 records
//! in the handler at once, every record is handled once, each key's records in their order
//! (every value carries its key's sequence number), several run at once, and the committed
//! offsets reach every partition's end; a key whose records fail retriably holds back only
//! itself; a key whose records always fail is dead-lettered alone, each of its records once; a
//! member taking a partition over passes over what the commit's metadata names as done; a
//! revocation waits for the records of its partitions in the handler; a cooperative rebalance
//! under load handles every record once; a share group's records run side by side; a member
//! process SIGKILLed with 256 records in its handler loses nothing, and its restart handles
//! exactly the records its last commit did not name as done.
//!
//! Every topic and group is `unique_name`'s: the broker is shared by the whole run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon::deserialize::{Decoded, StringDeserializer};
use kcon::policy::headers;
use kcon::{
    ErrorKind, Failure, ListenerFuture, Processor, RebalanceContext, RebalanceListener,
    TopicPartition,
};
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_prometheus::RegisterMetrics;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::policy::{
    StopWithAllInHandler, committed, consumer, header, producer, read_exactly, until,
};
use kcon_tests::pool::config;
use kcon_tests::prometheus::parse_with_prometheus_client;
use tokio::time::timeout;

/// How long a processor may take to get through a test's records, group join included.
const WITHIN: Duration = Duration::from_secs(60);

type Keyed = Processor<StringDeserializer, StringDeserializer>;

/// Creates `topics` on the shared broker; its bootstrap list.
async fn kafka_with(topics: &[(&str, i32)]) -> &'static str {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create_topics(&pool, topics).await;
    kafka.bootstrap()
}

/// Sends `per_key` records for each of `keys` keys (`k0`, `k1`, ...) to `topic`, interleaved,
/// each value `key:sequence`; the partitioner spreads the keys.
async fn produce_keyed(p: &Producer, topic: &str, keys: usize, per_key: usize) {
    let mut deliveries = Vec::new();
    for seq in 0..per_key {
        for k in 0..keys {
            let record =
                ProducerRecord::new(topic, format!("k{k}:{seq}")).with_key(format!("k{k}"));
            deliveries.push(p.send(record).await.unwrap());
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

/// A processor of string keys and values over a fresh group's consumer of `topic`, with the
/// record policies `policy`.
fn keyed(b: &str, topic: &str, policy: &[(&str, &str)]) -> Keyed {
    let c = consumer(b, &unique_name("g"), topic, &[]);
    let mut builder = Processor::builder(c)
        .key(StringDeserializer)
        .value(StringDeserializer);
    for (name, value) in policy {
        builder = builder.set(name, *value);
    }
    builder.build().unwrap()
}

/// What the handlers saw: per key the sequence numbers in the order they started, the most
/// records in the handler at once.
#[derive(Default)]
struct Log {
    by_key: Mutex<BTreeMap<String, Vec<usize>>>,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Log {
    fn start(&self, r: &Decoded<String, String>) {
        let seq: usize = r.value.split(':').nth(1).unwrap().parse().unwrap();
        self.by_key
            .lock()
            .unwrap()
            .entry(r.key.clone())
            .or_default()
            .push(seq);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn end(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_run_side_by_side_each_in_order_and_every_record_once() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 3)]).await;
    produce_keyed(&producer(b), &topic, 40, 25).await;
    let mut processor = keyed(
        b,
        &topic,
        &[
            ("processing.ordering", "key"),
            ("processing.max.concurrency", "16"),
        ],
    );
    let log = Arc::new(Log::default());
    let seen = log.clone();
    let stop = until(processor.metrics_handle(), |m| m.records_processed == 1000);
    timeout(
        WITHIN,
        processor.run_concurrently_until(stop, async move |r| {
            seen.start(r);
            // Long enough that records of other keys start meanwhile.
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.end();
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    processor.commit().await.unwrap();
    let m = processor.metrics();
    let group = processor.consumer().group_id().unwrap().to_owned();
    processor.close().await.unwrap();

    let by_key = log.by_key.lock().unwrap().clone();
    assert_eq!(by_key.len(), 40);
    for (key, seqs) in &by_key {
        assert_eq!(
            *seqs,
            (0..25).collect::<Vec<_>>(),
            "{key}: once each, in order"
        );
    }
    let most = log.most.load(Ordering::SeqCst);
    assert!(
        (2..=16).contains(&most),
        "{most} records in the handler at once"
    );
    assert_eq!((m.records_processed, m.records_running), (1000, 0));
    let ends = committed(b, &group, &topic, 3).await;
    let total: i64 = ends.values().map(|c| c.expect("committed")).sum();
    assert_eq!(
        total, 1000,
        "every partition committed to its end: {ends:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_failing_retriably_holds_back_only_itself() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 1)]).await;
    let p = producer(b);
    produce_keyed(&p, &topic, 4, 5).await;
    let mut processor = keyed(
        b,
        &topic,
        &[
            ("processing.ordering", "key"),
            ("errors.retry.backoff.ms", "500"),
            ("errors.retry.delay.max.ms", "500"),
        ],
    );
    // k0's first record fails twice; the order of completions is kept.
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let (order, tries) = (done.clone(), failed.clone());
    let stop = until(processor.metrics_handle(), |m| m.records_processed == 20);
    timeout(
        WITHIN,
        processor.run_concurrently_until(stop, async move |r| {
            if r.value == "k0:0" && tries.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(Failure::retriable("k0 is busy"));
            }
            order.lock().unwrap().push(r.value.clone());
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    let m = processor.metrics();
    processor.close().await.unwrap();
    assert_eq!(m.records_retried, 2);
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), 20);
    let at = |v: &str| done.iter().position(|d| d == v).unwrap();
    // Every other key's records were done with while k0's first waited a second for its
    // retries; k0's records followed in their order.
    for k in 1..4 {
        assert!(at(&format!("k{k}:4")) < at("k0:0"), "{done:?}");
    }
    let k0: Vec<&String> = done.iter().filter(|d| d.starts_with("k0:")).collect();
    assert_eq!(k0, ["k0:0", "k0:1", "k0:2", "k0:3", "k0:4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_always_fails_is_dead_lettered_alone_each_record_once() {
    let topic = unique_name("keyed");
    let dlq = format!("{topic}.dlq");
    let b = kafka_with(&[(&topic, 2), (&dlq, 1)]).await;
    produce_keyed(&producer(b), &topic, 8, 10).await;
    let mut processor = keyed(
        b,
        &topic,
        &[
            ("processing.ordering", "key"),
            ("processing.max.concurrency", "8"),
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", &dlq),
            ("errors.retry.max.attempts", "2"),
            ("errors.retry.backoff.ms", "10"),
        ],
    );
    let stop = until(processor.metrics_handle(), |m| {
        m.records_processed == 70 && m.records_dead_lettered == 10
    });
    timeout(
        WITHIN,
        processor.run_concurrently_until(stop, async move |r| {
            if r.key == "k3" {
                return Err(Failure::retriable("k3's service is down"));
            }
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    processor.commit().await.unwrap();
    let group = processor.consumer().group_id().unwrap().to_owned();
    processor.close().await.unwrap();

    let letters = read_exactly(b, &dlq, 1, 10).await;
    let mut values: Vec<String> = letters
        .iter()
        .map(|l| String::from_utf8(l.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    let expected: Vec<String> = (0..10).map(|s| format!("k3:{s}")).collect();
    assert_eq!(values, expected, "k3's records, each once");
    assert!(
        letters
            .iter()
            .all(|l| header(l, headers::ATTEMPTS).as_deref() == Some("2"))
    );
    let ends = committed(b, &group, &topic, 2).await;
    let total: i64 = ends.values().map(|c| c.expect("committed")).sum();
    assert_eq!(total, 80, "{ends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_one_record_at_a_time() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 1)]).await;
    let mut processor = keyed(b, &topic, &[("processing.max.concurrency", "4")]);
    let e = processor.run(async |_| Ok(())).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(e.property(), Some("processing.max.concurrency"));
    processor.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exactly_once_mode_runs_a_batchs_keys_side_by_side_and_writes_each_output_once() {
    // 600 records of 30 keys over three partitions, eight in the handler at once, each
    // handling sending one output to one partition in the processor's transactions; k0's
    // fourth record sends an output and then fails once (retriably): that try's output is
    // dropped, and the records of other keys done with meanwhile wait with their transaction
    // for the retry (committing them without k0:3's offset would write their outputs again
    // after a restart).
    let (input, output) = (unique_name("keyed"), unique_name("out"));
    let b = kafka_with(&[(&input, 3), (&output, 1)]).await;
    produce_keyed(&producer(b), &input, 30, 20).await;
    let group = unique_name("g");
    let c = consumer(
        b,
        &group,
        &input,
        &[
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
        ],
    );
    let p = Producer::builder()
        .bootstrap_servers(b)
        .set("transactional.id", unique_name("tx"))
        .build()
        .unwrap();
    let mut processor = Processor::builder(c)
        .key(StringDeserializer)
        .value(StringDeserializer)
        .set("processing.ordering", "key")
        .set("processing.max.concurrency", "8")
        .set("errors.retry.backoff.ms", "200")
        .set("errors.retry.delay.max.ms", "200")
        .exactly_once(p)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let log = Arc::new(Log::default());
    let seen = log.clone();
    let stop = until(processor.metrics_handle(), |m| m.records_processed == 600);
    timeout(
        WITHIN,
        processor.run_concurrently_until(stop, async |r| {
            seen.start(r);
            let out = ProducerRecord::new(output.clone(), format!("out:{}", r.value))
                .with_key(r.key.clone())
                .with_partition(0);
            sink.send(out);
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.end();
            if r.value == "k0:3" && r.attempt == 1 {
                return Err(Failure::retriable("k0:3 fails once"));
            }
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    let counts = processor.transactions().expect("the exactly-once mode");
    let m = processor.metrics();
    processor.close().await.unwrap();
    assert_eq!(counts.aborted, 0, "{counts:?}");
    assert_eq!(m.records_retried, 1);
    assert!(
        log.most.load(Ordering::SeqCst) > 1,
        "records ran side by side"
    );
    for (key, seqs) in log.by_key.lock().unwrap().iter() {
        let mut want: Vec<usize> = (0..20).collect();
        if key == "k0" {
            want.insert(4, 3);
        }
        assert_eq!(*seqs, want, "{key}'s records started in order, k0:3 twice");
    }

    // Each output once, each key's in its order; the input committed to its end.
    let outputs = kcon_tests::policy::read_exactly_at(b, &output, 1, 600, "read_committed").await;
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in &outputs {
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        let (key, seq) = value.trim_start_matches("out:").split_once(':').unwrap();
        by_key
            .entry(key.to_owned())
            .or_default()
            .push(seq.parse().unwrap());
    }
    assert_eq!(by_key.len(), 30);
    for (key, seqs) in &by_key {
        assert_eq!(*seqs, (0..20).collect::<Vec<usize>>(), "{key}'s outputs");
    }
    let ends = committed(b, &group, &input, 3).await;
    let total: i64 = ends.values().map(|c| c.expect("committed")).sum();
    assert_eq!(total, 600, "{ends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_taking_over_passes_over_what_the_commits_metadata_names_as_done() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 1)]).await;
    produce_keyed(&producer(b), &topic, 10, 10).await;
    let group = unique_name("g");
    let policy = [
        ("processing.ordering", "key"),
        ("processing.max.concurrency", "8"),
    ];
    let processor = |group: &str| {
        let c = consumer(b, group, &topic, &[]);
        let mut builder = Processor::builder(c)
            .key(StringDeserializer)
            .value(StringDeserializer);
        for (name, value) in policy {
            builder = builder.set(name, value);
        }
        builder.build().unwrap()
    };

    // The first member: k0's first record (offset 0) never finishes; every other key's
    // records do. Its run is dropped with k0:0 in the handler, and it commits and closes.
    let mut first = processor(&group);
    let done = until(first.metrics_handle(), |m| m.records_processed == 90);
    let run = first.run_concurrently(async |r| {
        if r.value == "k0:0" {
            std::future::pending::<()>().await;
        }
        Ok(())
    });
    tokio::select! {
        () = done => {}
        outcome = run => panic!("the run ended: {outcome:?}"),
        () = tokio::time::sleep(WITHIN) => panic!("90 records not processed within {WITHIN:?}"),
    }
    first.commit().await.unwrap();
    // The series say what the counts say: the metadata written, the gap behind k0:0.
    let mut registry = prometheus_client::registry::Registry::default();
    first.metrics_handle().register_metrics(&mut registry);
    let m = first.metrics_handle().snapshot();
    let counts = m.partitions.values().next().unwrap();
    assert!(counts.metadata_bytes > 0 && counts.gap == 100, "{counts:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    let labels = format!(r#"client_id="kcon",group="{group}",partition="0",topic="{topic}""#);
    for (name, value) in [
        ("kcon_policy_metadata_bytes", counts.metadata_bytes as f64),
        ("kcon_policy_gap_records", counts.gap as f64),
        ("kcon_policy_metadata_cut_total", 0.0),
        ("kcon_policy_records_done_before_total", 0.0),
    ] {
        assert_eq!(samples[&format!("{name}{{{labels}}}")], value, "{name}");
    }
    let labels = format!(r#"{{client_id="kcon",group="{group}"}}"#);
    assert_eq!(
        samples[&format!("kcon_policy_records_running{labels}")],
        1.0
    );
    assert_eq!(
        samples[&format!("kcon_policy_records_buffered{labels}")],
        9.0
    );
    assert_eq!(
        samples[&format!("kcon_policy_records_waiting_for_key{labels}")],
        9.0,
        "k0's nine behind k0:0"
    );
    assert_eq!(m.records_waiting_for_key, 9);
    first.close().await.unwrap();
    let at = committed(b, &group, &topic, 1).await;
    assert_eq!(
        at.values().next().copied().flatten(),
        Some(0),
        "k0:0 not done with"
    );

    // The next member of the group handles k0's records only; the other 90 are passed over.
    let mut next = processor(&group);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let stop = until(next.metrics_handle(), |m| m.records_processed == 10);
    timeout(
        WITHIN,
        next.run_concurrently_until(stop, async move |r| {
            log.lock().unwrap().push(r.value.clone());
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    next.commit().await.unwrap();
    let m = next.metrics();
    next.close().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let k0: Vec<String> = (0..10).map(|s| format!("k0:{s}")).collect();
    assert_eq!(seen, k0, "k0's records, in order, and nothing else");
    let counts = m.partitions.values().next().unwrap();
    assert_eq!((counts.processed, counts.done_before), (10, 90));
    let at = committed(b, &group, &topic, 1).await;
    assert_eq!(at.values().next().copied().flatten(), Some(100));
}

/// A run stopped while records are in the handler finishes them and stores their offsets
/// before it returns: the commit made right after names every one of them. Each handler here
/// ends only once the run has seen its stop, so every answer comes after the run's last turn
/// for new work (a run that returned without carrying the answers out left their offsets
/// unstored, and the commit named none of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_right_after_a_run_stopped_mid_records_names_every_record_it_finished() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 1)]).await;
    produce_keyed(&producer(b), &topic, 20, 1).await;
    let mut processor = keyed(
        b,
        &topic,
        &[
            ("processing.ordering", "key"),
            ("processing.max.concurrency", "20"),
        ],
    );
    let group = processor.consumer().group_id().unwrap().to_owned();
    let held = StopWithAllInHandler::new(20);
    timeout(
        WITHIN,
        processor.run_concurrently_until(held.stop(), async |_| {
            held.begin().await;
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    assert_eq!(held.begun(), 20, "every record started");
    assert_eq!(processor.metrics().records_processed, 20);
    processor.commit().await.unwrap();
    processor.close().await.unwrap();
    let at = committed(b, &group, &topic, 1).await;
    assert_eq!(at.values().next().copied().flatten(), Some(20), "{at:?}");
}

/// What two members' handlers did: the records in a handler now, every record's handlings in
/// the order they started (with the member), and any record found in two handlers at once.
#[derive(Default)]
struct Shared {
    in_handler: Mutex<std::collections::BTreeSet<(i32, i64)>>,
    started: Mutex<Vec<(usize, i32, i64, String)>>,
    overlaps: AtomicUsize,
    /// The second member has handled a record.
    second: std::sync::atomic::AtomicBool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_rebalance_under_load_moves_partitions_with_every_record_handled_once() {
    // The first member's records in its handler when partitions move are finished and stored
    // before they go (the revocation waits for them), and the records done with above the
    // committed offset are named in the metadata the second member reads: no record is
    // handled by both, none twice.
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 6)]).await;
    produce_keyed(&producer(b), &topic, 60, 100).await;
    let group = unique_name("g");
    let shared = Arc::new(Shared::default());
    let member = |n: usize, shared: Arc<Shared>| {
        let c = consumer(
            b,
            &group,
            &topic,
            &[
                ("partition.assignment.strategy", "cooperative-sticky"),
                // Small fetches and batches and a small buffer: every partition has records
                // in the handler when partitions move.
                ("max.poll.records", "10"),
                ("max.partition.fetch.bytes", "256"),
            ],
        );
        let mut processor = Processor::builder(c)
            .key(StringDeserializer)
            .value(StringDeserializer)
            .set("processing.ordering", "key")
            .set("processing.max.concurrency", "16")
            .set("processing.max.buffered.records", "60")
            .build()
            .unwrap();
        tokio::spawn(async move {
            let done = shared.clone();
            let stop = async move {
                while done.started.lock().unwrap().len() < 6000 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let outcome = processor
                .run_concurrently_until(stop, async move |r| {
                    let at = (r.record.partition, r.record.offset);
                    if !shared.in_handler.lock().unwrap().insert(at) {
                        shared.overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    shared
                        .started
                        .lock()
                        .unwrap()
                        .push((n, at.0, at.1, r.value.clone()));
                    // Slow until the second member handles records, so that the first is still
                    // under way when partitions move.
                    let second = shared.second.load(Ordering::SeqCst);
                    if n == 2 && !second {
                        shared.second.store(true, Ordering::SeqCst);
                    }
                    let ms = if second || n == 2 { 2 } else { 300 };
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    shared.in_handler.lock().unwrap().remove(&at);
                    Ok(())
                })
                .await;
            processor.commit().await.unwrap();
            processor.close().await.unwrap();
            outcome
        })
    };
    let first = member(1, shared.clone());
    // The second member joins while the first is under way: a cooperative rebalance moves
    // some of its partitions, their records in its handler finished first.
    let joined = shared.clone();
    timeout(WITHIN, async {
        while joined.started.lock().unwrap().len() < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("100 records within the time");
    let second = member(2, shared.clone());
    timeout(WITHIN * 2, first).await.unwrap().unwrap().unwrap();
    timeout(WITHIN, second).await.unwrap().unwrap().unwrap();

    assert_eq!(
        shared.overlaps.load(Ordering::SeqCst),
        0,
        "a record in two handlers at once"
    );
    let started = shared.started.lock().unwrap().clone();
    let by = |n| started.iter().filter(|s| s.0 == n).count();
    assert!(by(2) > 0, "the second member took partitions over");
    let mut handled: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (_, p, o, value) in &started {
        *handled.entry((*p, *o)).or_default() += 1;
        let (key, seq) = value.split_once(':').unwrap();
        by_key
            .entry(key.to_owned())
            .or_default()
            .push(seq.parse().unwrap());
    }
    assert_eq!(handled.len(), 6000, "every record handled");
    assert!(
        handled.values().all(|n| *n == 1),
        "records handled twice: {:?}",
        handled.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    for (key, seqs) in &by_key {
        assert_eq!(
            *seqs,
            (0..100).collect::<Vec<_>>(),
            "{key}: in order across the members"
        );
    }
    let ends = committed(b, &group, &topic, 6).await;
    let total: i64 = ends.values().map(|c| c.expect("committed")).sum();
    assert_eq!(total, 6000, "{ends:?}");
}

/// Runs `processor` until `stop`, noting each record's value in `log` as member `n`'s.
async fn log_as<K: kcon::deserialize::Deserializer>(
    processor: &mut Processor<K, StringDeserializer>,
    n: usize,
    log: &Arc<Mutex<Vec<(usize, String)>>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), kcon::Error> {
    let log = log.clone();
    processor
        .run_concurrently_until(stop, async move |r| {
            log.lock().unwrap().push((n, r.value.clone()));
            Ok(())
        })
        .await
}

/// When `on_revoked` was called, and for which partitions.
type Revocations = Arc<Mutex<Vec<(tokio::time::Instant, Vec<TopicPartition>)>>>;

/// Notes when `on_revoked` is called, and for which partitions.
struct NoteRevoked(Revocations);

impl RebalanceListener for NoteRevoked {
    fn on_revoked<'a>(
        &'a mut self,
        _: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.0
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), partitions.to_vec()));
        Box::pin(async {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_the_records_of_its_partitions_in_the_handler() {
    let topic = unique_name("keyed");
    let b = kafka_with(&[(&topic, 2)]).await;
    let p = producer(b);
    for partition in 0..2 {
        for i in 0..5 {
            let record = ProducerRecord::new(&topic, format!("{partition}:{i}"))
                .with_key(format!("k{i}"))
                .with_partition(partition);
            p.send(record).await.unwrap().await.unwrap();
        }
    }
    let group = unique_name("g");
    let revoked: Revocations = Arc::default();
    let mut c = kcon_tests::consumer::group_builder_at_defaults(b, &group, "cooperative-sticky")
        .set("auto.commit.interval.ms", "60000")
        .rebalance_listener(NoteRevoked(revoked.clone()))
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let mut first = Processor::builder(c)
        .value(StringDeserializer)
        .set("processing.ordering", "key")
        .set("processing.max.concurrency", "4")
        .build()
        .unwrap();
    // The first record of each partition takes 5 s: whichever partition moves has one in
    // the first member's handler when its revocation begins.
    let finished: Arc<Mutex<BTreeMap<String, tokio::time::Instant>>> = Arc::default();
    let handled: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let (done, log) = (finished.clone(), handled.clone());
    let slow_started = Arc::new(AtomicUsize::new(0));
    let slow = slow_started.clone();
    let first_run = tokio::spawn(async move {
        let stop = tokio::time::sleep(WITHIN);
        let outcome = first
            .run_concurrently_until(stop, async move |r| {
                log.lock().unwrap().push((1, r.value.clone()));
                if r.value.ends_with(":0") {
                    slow.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                done.lock()
                    .unwrap()
                    .insert(r.value.clone(), tokio::time::Instant::now());
                Ok(())
            })
            .await;
        (first, outcome)
    });
    timeout(WITHIN, async {
        while slow_started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both slow records in the handler");
    let mut c = kcon_tests::consumer::group_builder_at_defaults(b, &group, "cooperative-sticky")
        .set("auto.commit.interval.ms", "60000")
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let mut second = Processor::builder(c)
        .value(StringDeserializer)
        .set("processing.ordering", "key")
        .build()
        .unwrap();
    // Records written once a partition moved: the moved partition's go to the second member.
    let moving = revoked.clone();
    let stop = async move {
        while moving.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(WITHIN, log_as(&mut second, 2, &handled, stop))
        .await
        .expect("a partition moves")
        .unwrap();
    for partition in 0..2 {
        for i in 5..10 {
            let record = ProducerRecord::new(&topic, format!("{partition}:{i}"))
                .with_key(format!("k{i}"))
                .with_partition(partition);
            p.send(record).await.unwrap().await.unwrap();
        }
    }
    let stop = until(second.metrics_handle(), |m| m.records_processed >= 5);
    timeout(WITHIN, log_as(&mut second, 2, &handled, stop))
        .await
        .expect("the second member handles the records written after the move")
        .unwrap();
    second.close().await.unwrap();
    first_run.abort();
    let _ = first_run.await;

    let revoked = revoked.lock().unwrap().clone();
    let (at, partitions) = revoked.first().cloned().expect("a revocation");
    let moved = partitions[0].partition;
    let slow_done = finished.lock().unwrap()[&format!("{moved}:0")];
    assert!(
        at >= slow_done,
        "on_revoked before {moved}:0 in the handler was done with"
    );
    let handled = handled.lock().unwrap().clone();
    let by_second: Vec<&String> = handled
        .iter()
        .filter(|(m, _)| *m == 2)
        .map(|(_, v)| v)
        .collect();
    let expected: Vec<String> = (5..10).map(|i| format!("{moved}:{i}")).collect();
    assert_eq!(
        by_second,
        expected.iter().collect::<Vec<_>>(),
        "the second member handles only what was written after the move: {handled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_groups_records_run_side_by_side_each_accepted_once() {
    let kafka = Kafka::single();
    let topic = unique_name("keyed-share");
    let b = kafka_with(&[(&topic, 1)]).await;
    let group = unique_name("share");
    // A new share group starts at the log end (share.auto.offset.reset=latest) unless told.
    kafka.tool(
        "org.apache.kafka.tools.ConfigCommand",
        &[
            "--alter",
            "--entity-type",
            "groups",
            "--entity-name",
            &group,
            "--add-config",
            "share.auto.offset.reset=earliest",
        ],
    );
    produce_keyed(&producer(b), &topic, 10, 10).await;
    let mut consumer = kcon::share::ShareConsumer::builder()
        .set("bootstrap.servers", b)
        .set("group.id", &group)
        .set("share.acknowledgement.mode", "explicit")
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer)
        .key(StringDeserializer)
        .value(StringDeserializer)
        .set("processing.ordering", "key")
        .set("processing.max.concurrency", "8")
        .build()
        .unwrap();
    let log = Arc::new(Log::default());
    let seen = log.clone();
    let stop = until(processor.metrics_handle(), |m| m.records_processed == 100);
    timeout(
        WITHIN,
        processor.run_concurrently_until(stop, async move |r| {
            seen.start(r);
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.end();
            Ok(())
        }),
    )
    .await
    .expect("done within the time")
    .unwrap();
    processor.commit().await.unwrap();
    let accepted = processor.consumer().metrics().records_accepted;
    processor.close().await.unwrap();
    let by_key = log.by_key.lock().unwrap().clone();
    assert_eq!(by_key.len(), 10);
    for (key, seqs) in &by_key {
        assert_eq!(
            *seqs,
            (0..10).collect::<Vec<_>>(),
            "{key}: once each, in order"
        );
    }
    let most = log.most.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&most),
        "{most} records in the handler at once"
    );
    assert_eq!(accepted, 100, "every record accepted");
}

/// A `concurrent_member` process (`tests/src/bin/concurrent_member.rs`: key order, 256 records
/// in the handler at once, each taking 20 to 80 ms) and the lines it printed.
struct Member {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What a member's lines say: every handling started (partition, offset, key, sequence) in
/// the order they started, and the records whose handling ended.
#[derive(Default)]
struct Handled {
    started: Vec<(i32, i64, String, usize)>,
    done: std::collections::BTreeSet<(i32, i64)>,
}

impl Member {
    fn start(b: &str, topic: &str, group: &str) -> Member {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concurrent_member"))
            .args([b, topic, group, "the-member"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start concurrent_member");
        let stdout = child.stdout.take().expect("the member's stdout");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = lines.clone();
        tokio::spawn(async move {
            let mut out = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Member { child, lines }
    }

    /// What the lines so far say, checking as it reads that a key's records start in their
    /// order and never while another of the key's is in the handler.
    fn handled(&self) -> Handled {
        let mut handled = Handled::default();
        let mut key_of = BTreeMap::new();
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        let mut running = std::collections::BTreeSet::new();
        for line in self.lines.lock().unwrap().iter() {
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["s", p, o, key, seq] => {
                    let (p, o, seq) =
                        (p.parse().unwrap(), o.parse().unwrap(), seq.parse().unwrap());
                    assert!(
                        running.insert(key.to_owned()),
                        "{key}:{seq} started while another of {key}'s records was in the handler"
                    );
                    if let Some(before) = last.insert(key.to_owned(), seq) {
                        assert!(before < seq, "{key}:{seq} started after {key}:{before}");
                    }
                    key_of.insert((p, o), key.to_owned());
                    handled.started.push((p, o, key.to_owned(), seq));
                }
                ["d", p, o] => {
                    let at = (p.parse().unwrap(), o.parse().unwrap());
                    running.remove(&key_of[&at]);
                    handled.done.insert(at);
                }
                _ => panic!("a line the member does not print: {line:?}"),
            }
        }
        handled
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_with_256_in_flight_loses_nothing_and_redoes_only_what_its_commit_did_not_name()
 {
    // 30,000 records of 3,000 keys (ten each) over three partitions. The first member is
    // SIGKILLed once it has finished 3,000 with more than 200 in the handler and committed
    // metadata naming records done above a committed offset; what its group
    // committed last (the lowest record not done with per partition, the records done above it
    // in the metadata) is read back; a restarted member (the same static member) takes over.
    // The bound: the records the restarted member handles are exactly those the last commit
    // did not name as done, that is the records in the handler at the kill and those finished
    // after the last commit (auto-commit every second, the metadata at most every 200 ms).
    let topic = unique_name("killed");
    let b = kafka_with(&[(&topic, 3)]).await;
    produce_keyed(&producer(b), &topic, 3_000, 10).await;
    let group = unique_name("g");
    let reader = kcon_tests::consumer::builder_at_defaults(b)
        .group_id(&group)
        .build()
        .unwrap();
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(&topic, p)).collect();
    let ends = reader.end_offsets(tps.clone()).await.unwrap();
    let all: std::collections::BTreeSet<(i32, i64)> = ends
        .iter()
        .flat_map(|(tp, end)| (0..*end).map(|o| (tp.partition, o)))
        .collect();
    assert_eq!(all.len(), 30_000);

    let mut first = Member::start(b, &topic, &group);
    let started = tokio::time::Instant::now();
    let in_flight = loop {
        let h = first.handled();
        let in_flight = h.started.len() - h.done.len();
        if h.done.len() >= 3_000 && in_flight > 200 && metadata_committed(&reader, &tps).await {
            break in_flight;
        }
        if let Ok(Some(status)) = first.child.try_wait() {
            panic!("the member ended ({status}) before it was killed");
        }
        assert!(
            started.elapsed() < WITHIN,
            "the member finished {} records, {in_flight} in the handler, in {WITHIN:?}",
            h.done.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.expect("the member ends");
    let before = first.handled();
    assert!(
        before.done.len() < 25_000,
        "the rest is little: {}",
        before.done.len()
    );

    // What the last commit names as done with: every offset below the committed one, and
    // those the metadata names above it. It never names a record not finished.
    let last = reader.committed_with_metadata(tps.clone()).await.unwrap();
    reader.close().await.unwrap();
    let mut named = std::collections::BTreeSet::new();
    let mut above = 0;
    for (tp, at) in &last {
        let Some(at) = at else { continue };
        named.extend((0..at.offset).map(|o| (tp.partition, o)));
        let done = kcon_tests::policy::finished_named(&at.metadata, at.offset).unwrap_or_default();
        above += done.len();
        named.extend(done.into_iter().map(|o| (tp.partition, o)));
    }
    let unfinished: Vec<_> = named.difference(&before.done).take(5).collect();
    assert!(
        unfinished.is_empty(),
        "committed as done, never finished: {unfinished:?}"
    );
    assert!(
        above > 0,
        "with {in_flight} records in the handler, the metadata named none done above the committed offsets: {last:?}"
    );

    // The restarted member handles what the commit did not name, each record once, and
    // nothing it named.
    let mut second = Member::start(b, &topic, &group);
    let started = tokio::time::Instant::now();
    loop {
        let h = second.handled();
        if before.done.union(&h.done).count() == all.len() {
            break;
        }
        if let Ok(Some(status)) = second.child.try_wait() {
            panic!("the restarted member ended ({status})");
        }
        assert!(
            started.elapsed() < WITHIN,
            "{} records finished by neither member within {WITHIN:?}",
            all.len() - before.done.union(&h.done).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = second.child.id().expect("running").to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.expect("kill -TERM").success());
    let status = timeout(WITHIN, second.child.wait())
        .await
        .expect("the restarted member closes")
        .unwrap();
    assert!(status.success(), "the restarted member ended with {status}");
    let after = second.handled();
    let mut once = std::collections::BTreeSet::new();
    for (p, o, key, seq) in &after.started {
        assert!(
            once.insert((*p, *o)),
            "{key}:{seq} handled twice by the restarted member"
        );
    }
    let expected: std::collections::BTreeSet<_> = all.difference(&named).copied().collect();
    assert_eq!(
        once.len(),
        expected.len(),
        "the restarted member handled {} records, the commit left {} not named",
        once.len(),
        expected.len()
    );
    assert_eq!(once, expected);
    // What is handled again: the records in the handler at the kill, and those finished that
    // the last commit did not name (finished after it).
    let redone = before.done.intersection(&once).count();
    let was_running = before.started.len() - before.done.len();
    eprintln!(
        "killed with {was_running} in the handler; {} finished, {above} of them named above the committed offsets; {redone} finished records handled again",
        before.done.len()
    );
}

/// Whether the group has committed an offset of `tps` with metadata.
async fn metadata_committed(reader: &kcon::Consumer, tps: &[TopicPartition]) -> bool {
    let last = reader.committed_with_metadata(tps.to_vec()).await.unwrap();
    last.values().flatten().any(|at| !at.metadata.is_empty())
}
