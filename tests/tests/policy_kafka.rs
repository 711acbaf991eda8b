//! `kcon::Processor` (record policies) on Apache Kafka 4.4 (`Kafka::single()`, and
//! `Kafka::noauto()` for a dead-letter topic nothing creates): good records processed once in order
//! and poison ones dead-lettered once, byte for byte, with their context; a retriable failure
//! that passes on its third try while the other partitions keep flowing (measured); a
//! dead-letter write that fails stores nothing past its record, and after the cause is fixed
//! and the consumer restarted the record is dead-lettered and the partition goes on; the
//! circuit breaker opens on a burst of failures and not on scattered ones; a member joining
//! while the first one's retries wait stops neither and has no record processed twice; a
//! processor killed between a dead-letter write and the commit dead-letters again.
//!
//! Consumers and producers run at the client's defaults but for the policy a test is about
//! (`kcon_tests::policy`). Every topic and group is `unique_name`'s: the broker is shared by
//! the whole run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcon::deserialize::{JsonDeserializer, StringDeserializer};
use kcon::policy::headers;
use kcon::{
    ErrorKind, Failure, ListenerFuture, Processor, RebalanceContext, RebalanceListener, Record,
    TopicPartition,
};
use kcon_pool::Pool;
use kcon_produce::Producer;
use kcon_prometheus::RegisterMetrics;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::group_builder_at_defaults;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::policy::{
    Kind, Order, Seen, committed, consumer, header, produce_kinds, producer, read_exactly, until,
};
use kcon_tests::pool::config;
use kcon_tests::prometheus::parse_with_prometheus_client;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// How long a processor may take to get through a test's records, group join included.
const WITHIN: Duration = Duration::from_secs(60);

/// `session.timeout.ms` at the client's defaults.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// Creates `topics` on `kafka`; its bootstrap list.
async fn kafka_with(kafka: &'static Kafka, topics: &[(&str, i32)]) -> &'static str {
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create_topics(&pool, topics).await;
    kafka.bootstrap()
}

fn kinds_with(n: usize, poison: &[usize], garbled: &[usize]) -> Vec<Kind> {
    (0..n)
        .map(|i| {
            if poison.contains(&i) {
                Kind::Poison
            } else if garbled.contains(&i) {
                Kind::Garbled
            } else {
                Kind::Good
            }
        })
        .collect()
}

/// The handler of these tests: refuses poison orders for good, notes every call.
async fn handle(
    seen: &Seen,
    record: &kcon::deserialize::Decoded<String, Order>,
) -> Result<(), Failure> {
    seen.note(&record.record, record.attempt);
    if record.value.poison {
        return Err(Failure::permanent("a poison order").with_class("poison"));
    }
    Ok(())
}

/// A scrape of `registry`, read by Prometheus' own parser, says what `m` says.
fn assert_scrape_equals(
    registry: &prometheus_client::registry::Registry,
    m: &kcon::PolicyMetrics,
    group: &str,
) {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    for (tp, c) in &m.partitions {
        let labels = format!(
            r#"client_id="kcon",group="{group}",partition="{}",topic="{}""#,
            tp.partition, tp.topic
        );
        for (name, value) in [
            ("kcon_policy_records_processed_total", c.processed),
            ("kcon_policy_retries_total", c.retried),
            ("kcon_policy_records_skipped_total", c.skipped),
            ("kcon_policy_records_dead_lettered_total", c.dead_lettered),
        ] {
            assert_eq!(
                samples[&format!("{name}{{{labels}}}")],
                value as f64,
                "{name} {tp}"
            );
        }
    }
    let labels = format!(r#"{{client_id="kcon",group="{group}"}}"#);
    assert_eq!(
        samples[&format!("kcon_policy_dead_letter_rate{labels}")],
        m.dead_letter_rate
    );
    assert!(m.dead_letter_rate > 0.0);
    assert_eq!(
        samples[&format!("kcon_policy_breaker_trips_total{labels}")],
        0.0
    );
    assert_eq!(samples[&format!("kcon_policy_breaker_open{labels}")], 0.0);
    assert_eq!(
        samples[&format!("kcon_policy_records_waiting{labels}")],
        0.0
    );
}

/// The processor of these tests: string keys, JSON orders, the record policies `policy`,
/// `producer` for dead letters if given.
fn orders(
    consumer: kcon::Consumer,
    policy: &[(&str, &str)],
    producer: Option<Producer>,
) -> OrderProcessor {
    let mut b = Processor::builder(consumer)
        .key(StringDeserializer)
        .value(JsonDeserializer::<Order>::new());
    for (name, value) in policy {
        b = b.set(name, *value);
    }
    if let Some(p) = producer {
        b = b.dead_letter_producer(p);
    }
    b.build().unwrap()
}

type OrderProcessor = Processor<StringDeserializer, JsonDeserializer<Order>>;

/// Runs `processor` with [`handle`] until its counts satisfy `done` (within [`WITHIN`]); what
/// the handler saw.
async fn process_until(
    processor: &mut OrderProcessor,
    done: impl Fn(&kcon::PolicyMetrics) -> bool,
) -> Seen {
    let seen = Seen::default();
    let log = seen.clone();
    let stop = until(processor.metrics_handle(), done);
    timeout(
        WITHIN,
        processor.run_until(stop, async move |r| handle(&log, r).await),
    )
    .await
    .expect("done within the time")
    .unwrap();
    seen
}

/// Runs `processor` with [`handle`] until it stops with an error (within [`WITHIN`]); the error
/// and what the handler saw.
async fn process_until_error(processor: &mut OrderProcessor) -> (kcon::Error, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let err = timeout(WITHIN, processor.run(async move |r| handle(&log, r).await))
        .await
        .expect("stopped within the time")
        .unwrap_err();
    (err, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_records_are_processed_once_in_order_and_poison_ones_dead_lettered_once() {
    let topic = unique_name("orders");
    let dlq = format!("{topic}.dlq");
    let b = kafka_with(Kafka::single(), &[(&topic, 3), (&dlq, 1)]).await;
    let p = producer(b);
    let kinds = kinds_with(20, &[7, 15], &[3, 11]);
    let mut sent = BTreeMap::new();
    for partition in 0..3 {
        sent.insert(
            partition,
            produce_kinds(&p, &topic, partition, &kinds).await,
        );
    }
    let group = unique_name("g");
    let c = consumer(b, &group, &topic, &[]);
    let policy = [
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", &dlq),
    ];
    let mut processor = orders(c, &policy, None);
    let mut registry = prometheus_client::registry::Registry::default();
    processor.metrics_handle().register_metrics(&mut registry);
    let seen = process_until(&mut processor, |m| {
        m.records_processed == 48 && m.records_dead_lettered == 12
    })
    .await;
    processor.commit().await.unwrap();
    let m = processor.metrics();
    assert_scrape_equals(&registry, &processor.metrics_handle().snapshot(), &group);
    processor.close().await.unwrap();

    // Good ones once each, in partition order; poison ones once (the handler saw them),
    // garbled ones never (they did not deserialize).
    for partition in 0..3 {
        let tp = TopicPartition::new(&topic, partition);
        let expected: Vec<i64> = (0..20).filter(|i| ![3, 11].contains(i)).collect();
        assert_eq!(seen.offsets(&tp), expected, "{tp}");
        assert_eq!(m.partitions[&tp].processed, 16);
        assert_eq!(m.partitions[&tp].dead_lettered, 4);
    }
    let all_committed = committed(b, &group, &topic, 3).await;
    assert!(
        all_committed.values().all(|c| *c == Some(20)),
        "{all_committed:?}"
    );

    let letters = read_exactly(b, &dlq, 1, 12).await;
    let mut found = Vec::new();
    for letter in &letters {
        let partition: i32 = header(letter, headers::PARTITION).unwrap().parse().unwrap();
        let offset: i64 = header(letter, headers::OFFSET).unwrap().parse().unwrap();
        let original = &sent[&partition][&offset];
        assert_eq!(letter.key, original.key, "byte-identical key");
        assert_eq!(letter.value, original.value, "byte-identical value");
        assert_eq!(
            &letter.headers[..1],
            &original.headers[..],
            "original headers first"
        );
        assert_eq!(
            header(letter, headers::TOPIC).as_deref(),
            Some(topic.as_str())
        );
        assert_eq!(
            header(letter, headers::GROUP).as_deref(),
            Some(group.as_str())
        );
        assert_eq!(header(letter, headers::ATTEMPTS).as_deref(), Some("1"));
        let (stage, class) = if [3, 11].contains(&offset) {
            ("deserialize.value", "json")
        } else {
            ("handler", "poison")
        };
        assert_eq!(
            header(letter, headers::STAGE).as_deref(),
            Some(stage),
            "@{offset}"
        );
        assert_eq!(header(letter, headers::ERROR_CLASS).as_deref(), Some(class));
        let message = header(letter, headers::ERROR_MESSAGE).unwrap();
        assert!(!message.is_empty());
        assert!(
            !message.starts_with(&format!("{class}:")),
            "the class is its own header, not repeated: {message}"
        );
        let at: i64 = header(letter, headers::FAILED_AT).unwrap().parse().unwrap();
        assert!(
            at >= header(letter, headers::TIMESTAMP)
                .unwrap()
                .parse::<i64>()
                .unwrap()
        );
        found.push((partition, offset));
    }
    found.sort();
    let expected: Vec<(i32, i64)> = (0..3)
        .flat_map(|p| [3, 7, 11, 15].map(|o| (p, o)))
        .collect();
    assert_eq!(
        found, expected,
        "each poison record dead-lettered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retriable_failure_passes_on_its_third_try_while_other_partitions_flow() {
    let topic = unique_name("orders");
    let b = kafka_with(Kafka::single(), &[(&topic, 2)]).await;
    let p = producer(b);
    produce_kinds(&p, &topic, 0, &[Kind::Good; 5]).await;
    let group = unique_name("g");
    // A constant 1.5 s between tries: two waits of 1.5 s.
    let c = consumer(b, &group, &topic, &[]);
    let policy = [
        ("errors.retry.backoff.ms", "1500"),
        ("errors.retry.delay.max.ms", "1500"),
    ];
    let mut processor = orders(c, &policy, None);
    let (first_failure, mut failed) = mpsc::unbounded_channel();
    let seen = Seen::default();
    let log = seen.clone();
    let stop = until(processor.metrics_handle(), |m| m.records_processed == 15);
    let run = processor.run_until(stop, async move |r| {
        log.note(&r.record, r.attempt);
        if r.record.partition == 0 && r.record.offset == 2 && r.attempt < 3 {
            // Read once: later failures find the test no longer waiting, or the receiver gone.
            let _ = first_failure.send(());
            return Err(Failure::retriable("the service is busy"));
        }
        Ok(())
    });
    // Partition 1 gets its records only once partition 0 waits.
    let produce_meanwhile = async {
        failed.recv().await.unwrap();
        produce_kinds(&p, &topic, 1, &[Kind::Good; 10]).await;
    };
    let (ran, ()) = timeout(WITHIN, async { tokio::join!(run, produce_meanwhile) })
        .await
        .expect("done within the time");
    ran.unwrap();
    let m = processor.metrics();
    processor.close().await.unwrap();

    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    assert_eq!(
        seen.offsets(&p0),
        [0, 1, 2, 2, 2, 3, 4],
        "in order, offset 2 three times"
    );
    assert_eq!(seen.offsets(&p1), (0..10).collect::<Vec<_>>());
    let calls = seen.calls();
    let at = |tp: &TopicPartition, offset: i64, attempt: u32| {
        calls
            .iter()
            .find(|(t, o, a, _)| t == tp && *o == offset && *a == attempt)
            .map(|c| c.3)
            .unwrap()
    };
    let (failed_at, passed_at) = (at(&p0, 2, 1), at(&p0, 2, 3));
    let waited = passed_at - failed_at;
    assert!(
        waited >= Duration::from_millis(2400),
        "two pauses of 1.5 s ± 20 %: {waited:?}"
    );
    // Measured: every record of partition 1 was processed while partition 0 waited.
    for offset in 0..10 {
        let t = at(&p1, offset, 1);
        assert!(
            failed_at < t && t < passed_at,
            "p1@{offset} not processed during the wait"
        );
    }
    assert_eq!((m.records_retried, m.records_processed), (2, 15));
    assert_eq!(committed(b, &group, &topic, 2).await[&p0], Some(5));
}

/// How long the consumer's Fetch is held at the end of the log in
/// [`dead_letters_do_not_wait_behind_the_consumers_long_poll`].
const LONG_POLL: Duration = Duration::from_secs(20);

/// The processor's own dead-letter producer sends through the consumer's pool while the
/// consumer's Fetch waits at the end of the log for `fetch.max.wait.ms` (20 s here, the setting
/// this test is about): three dead letters are written, and the partition done, in far less
/// than one such wait. (The broker answers a connection's requests in order: a Produce sent on
/// the connection of a held Fetch waited for the Fetch, each dead letter up to
/// `fetch.max.wait.ms`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_do_not_wait_behind_the_consumers_long_poll() {
    let topic = unique_name("orders");
    let dlq = format!("{topic}.dlq");
    let b = kafka_with(Kafka::single(), &[(&topic, 1), (&dlq, 1)]).await;
    produce_kinds(&producer(b), &topic, 0, &kinds_with(10, &[2, 5, 8], &[])).await;
    let group = unique_name("g");
    let long_poll = LONG_POLL.as_millis().to_string();
    let c = consumer(b, &group, &topic, &[("fetch.max.wait.ms", &long_poll)]);
    let policy = [
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", &dlq),
    ];
    let mut processor = orders(c, &policy, None);
    let seen = process_until(&mut processor, |m| {
        m.records_processed == 7 && m.records_dead_lettered == 3
    })
    .await;
    let done = Instant::now();
    processor.close().await.unwrap();
    let tp = TopicPartition::new(&topic, 0);
    assert_eq!(seen.offsets(&tp), (0..10).collect::<Vec<_>>());
    let first = seen.calls()[0].3;
    let took = done - first;
    assert!(
        took < LONG_POLL / 2,
        "10 records, 3 of them dead-lettered, took {took:?} with a Fetch held up to {LONG_POLL:?}"
    );
    let letters = read_exactly(b, &dlq, 1, 3).await;
    let offsets: Vec<Option<String>> = letters.iter().map(|l| header(l, headers::OFFSET)).collect();
    assert_eq!(
        offsets,
        [
            Some("2".to_owned()),
            Some("5".to_owned()),
            Some("8".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_write_stores_nothing_past_its_record_until_it_succeeds() {
    let topic = unique_name("orders");
    let dlq = format!("{topic}.dlq");
    // The dead-letter topic does not exist yet, and the broker creates no topic on demand.
    let kafka = Kafka::noauto();
    let b = kafka_with(kafka, &[(&topic, 1)]).await;
    let p = producer(b);
    produce_kinds(&p, &topic, 0, &kinds_with(10, &[4], &[])).await;
    let group = unique_name("g");
    let policy = [
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", dlq.as_str()),
    ];
    // The write fails once its delivery times out: 3 s, not the default 2 minutes.
    let failing = Producer::builder()
        .bootstrap_servers(b)
        .set("request.timeout.ms", "1000")
        .set("delivery.timeout.ms", "3000")
        .build()
        .unwrap();
    let mut processor = orders(consumer(b, &group, &topic, &[]), &policy, Some(failing));
    let (err, seen) = process_until_error(&mut processor).await;
    assert_eq!(err.kind(), ErrorKind::DeadLetter, "{err}");
    assert!(err.to_string().contains(&format!("{topic}-0@4")), "{err}");
    let tp = TopicPartition::new(&topic, 0);
    assert_eq!(
        seen.offsets(&tp),
        [0, 1, 2, 3, 4],
        "nothing processed past it"
    );
    processor.close().await.unwrap();
    assert_eq!(committed(b, &group, &topic, 1).await[&tp], Some(4));

    // The cause fixed, a restarted consumer dead-letters the record and goes on.
    kafka_with(kafka, &[(&dlq, 1)]).await;
    let mut processor = orders(consumer(b, &group, &topic, &[]), &policy, None);
    let seen = process_until(&mut processor, |m| {
        m.records_dead_lettered == 1 && m.records_processed == 5
    })
    .await;
    processor.commit().await.unwrap();
    processor.close().await.unwrap();
    assert_eq!(seen.offsets(&tp), [4, 5, 6, 7, 8, 9]);
    assert_eq!(committed(b, &group, &topic, 1).await[&tp], Some(10));
    let letters = read_exactly(b, &dlq, 1, 1).await;
    assert_eq!(header(&letters[0], headers::OFFSET).as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_a_burst_of_failures_and_not_on_scattered_ones() {
    let burst = unique_name("burst");
    let scattered = unique_name("scattered");
    let letters = unique_name("letters");
    let b = kafka_with(
        Kafka::single(),
        &[(&burst, 1), (&scattered, 1), (&letters, 1)],
    )
    .await;
    let p = producer(b);
    produce_kinds(
        &p,
        &burst,
        0,
        &kinds_with(60, &[20, 21, 22, 23, 24, 25], &[]),
    )
    .await;
    let every_fifth: Vec<usize> = (0..60).step_by(5).collect();
    produce_kinds(&p, &scattered, 0, &kinds_with(60, &every_fifth, &[])).await;
    // More than 3 of the last 10 records failed for good, or 5 in a row.
    let policy = [
        ("errors.tolerance", "all"),
        ("errors.deadletterqueue.topic.name", letters.as_str()),
        ("errors.breaker.window.records", "10"),
        ("errors.breaker.failures", "3"),
        ("errors.breaker.consecutive.failures", "5"),
    ];

    let group = unique_name("g");
    let mut processor = orders(consumer(b, &group, &burst, &[]), &policy, None);
    let (err, _) = process_until_error(&mut processor).await;
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err}");
    let tp = TopicPartition::new(&burst, 0);
    assert_eq!(processor.consumer().paused(), [tp.clone()].into());
    let m = processor.metrics();
    assert_eq!(
        (m.breaker_trips, m.breaker_open, m.records_dead_lettered),
        (1, true, 3)
    );
    processor.close().await.unwrap();
    assert_eq!(
        committed(b, &group, &burst, 1).await[&tp],
        Some(23),
        "up to the 4th failure"
    );

    let group = unique_name("g");
    let mut processor = orders(consumer(b, &group, &scattered, &[]), &policy, None);
    process_until(&mut processor, |m| {
        m.records_processed + m.records_dead_lettered == 60
    })
    .await;
    let m = processor.metrics();
    assert_eq!((m.breaker_trips, m.records_dead_lettered), (0, 12));
    processor.commit().await.unwrap();
    processor.close().await.unwrap();
    let tp = TopicPartition::new(&scattered, 0);
    assert_eq!(committed(b, &group, &scattered, 1).await[&tp], Some(60));
    let letters: Vec<Record> = read_exactly(b, &letters, 1, 15).await;
    assert_eq!(letters.len(), 15, "3 of the burst and 12 scattered");
}

/// A rebalance listener that notes every revocation and takes a second over it, as one that
/// flushes state before giving partitions up would.
#[derive(Clone, Default)]
struct SlowRevoke(Arc<Mutex<Vec<Revocation>>>);

/// When a revocation began, and of what.
type Revocation = (Instant, Vec<TopicPartition>);

/// Which members processed each record (topic-partition, offset).
type ProcessedBy = Arc<Mutex<BTreeMap<(TopicPartition, i64), Vec<usize>>>>;

impl RebalanceListener for SlowRevoke {
    fn on_revoked<'a>(
        &'a mut self,
        _: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), partitions.to_vec()));
        Box::pin(tokio::time::sleep(Duration::from_secs(1)))
    }
}

/// A second member joins a cooperative group while every partition of the first has a record
/// waiting for its retry. The revocation reaches the first processor while it waits (its
/// listener holds the revocation for a second, and retries come due meanwhile): the retries of
/// the revoked partitions are dropped and their records are the new owner's. Neither run
/// stops, every record is processed, and none is processed by both members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_while_retries_wait_stops_nothing_and_processes_nothing_twice() {
    const PER_PARTITION: usize = 30;
    let topic = unique_name("orders");
    let dlq = unique_name("orders.dlq");
    let b = kafka_with(Kafka::single(), &[(&topic, 6), (&dlq, 1)]).await;
    let p = producer(b);
    for partition in 0..6 {
        produce_kinds(&p, &topic, partition, &[Kind::Good; PER_PARTITION]).await;
    }
    let group = unique_name("g");
    let member = |listener: SlowRevoke| {
        let mut c = group_builder_at_defaults(b, &group, "cooperative-sticky")
            .rebalance_listener(listener)
            .build()
            .unwrap();
        c.subscribe([&topic]).unwrap();
        let policy = [
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", &dlq),
            ("errors.retry.backoff.ms", "100"),
            ("errors.retry.delay.max.ms", "100"),
        ];
        orders(c, &policy, None)
    };
    // Every record fails retriably twice and passes on its third try.
    let done: ProcessedBy = Arc::default();
    let handler = |id: usize, seen: Seen| {
        let done = done.clone();
        async move |r: &kcon::deserialize::Decoded<String, Order>| {
            seen.note(&r.record, r.attempt);
            if r.attempt < 3 {
                return Err(Failure::retriable("the service is busy"));
            }
            let key = (r.record.topic_partition(), r.record.offset);
            done.lock().unwrap().entry(key).or_default().push(id);
            Ok(())
        }
    };
    let all_done = || {
        let done = done.clone();
        async move {
            while done.lock().unwrap().len() < 6 * PER_PARTITION {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    let revocations = SlowRevoke::default();
    let (seen1, seen2) = (Seen::default(), Seen::default());
    let mut first = member(revocations.clone());
    let mut second = None;
    let run_first = first.run_until(all_done(), handler(1, seen1.clone()));
    let run_second = async {
        // The second member starts once the first has records waiting for retries.
        while seen1.calls().len() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        second
            .insert(member(SlowRevoke::default()))
            .run_until(all_done(), handler(2, seen2.clone()))
            .await
    };
    // Either run ending with an error ends the test with it at once.
    timeout(WITHIN, async { tokio::try_join!(run_first, run_second) })
        .await
        .expect("done within the time")
        .expect("a rebalance stops neither member");
    first.close().await.unwrap();
    second.unwrap().close().await.unwrap();

    let done = done.lock().unwrap();
    assert_eq!(done.len(), 6 * PER_PARTITION, "every record processed");
    let twice: Vec<_> = done.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "processed by both members: {twice:?}");
    let revoked = revocations.0.lock().unwrap().clone();
    let (at, gone) = revoked
        .iter()
        .find(|(_, gone)| !gone.is_empty())
        .expect("the first member gave partitions up");
    let late: Vec<_> = seen1
        .calls()
        .into_iter()
        .filter(|(tp, _, _, t)| t > at && gone.contains(tp))
        .collect();
    assert!(
        late.is_empty(),
        "the first member handled records of partitions it had given up: {late:?}"
    );
    assert!(
        seen2.calls().iter().any(|(tp, ..)| gone.contains(tp)),
        "the second member processed the revoked partitions"
    );
}

/// A `processor_member` process (a `Processor` of its own) and its stdout lines, as JSON.
struct Member {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Member {
    fn start(bootstrap: &str, topic: &str, group: &str, dlq: &str) -> Member {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_processor_member"))
            .args([bootstrap, topic, group, dlq])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start processor_member");
        let stdout = child.stdout.take().expect("piped stdout");
        Member {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// Reads lines until one has `key`, each within `within`; every line read so far.
    async fn until(&mut self, key: &str, within: Duration) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        loop {
            let line = timeout(within, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {key} within {within:?}: {seen:?}"))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("the member ended before {key}: {seen:?}"));
            let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            let done = value.get(key).is_some();
            seen.push(value);
            if done {
                return seen;
            }
        }
    }
}

/// Killed (SIGKILL) between a dead-letter write and the commit, a processor dead-letters the
/// record again after its restart: twice, never zero times. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_between_the_dead_letter_and_the_commit_dead_letters_again() {
    let topic = unique_name("orders");
    let dlq = format!("{topic}.dlq");
    let b = kafka_with(Kafka::single(), &[(&topic, 1), (&dlq, 1)]).await;
    produce_kinds(&producer(b), &topic, 0, &kinds_with(10, &[5], &[])).await;
    let group = unique_name("g");
    let tp = TopicPartition::new(&topic, 0);

    let mut member = Member::start(b, &topic, &group, &dlq);
    member.until("dead_lettered", WITHIN).await;
    member.child.start_kill().expect("SIGKILL");
    member.child.wait().await.expect("the member ends");
    assert_eq!(
        committed(b, &group, &topic, 1).await[&tp],
        None,
        "killed before any commit"
    );
    assert_eq!(read_exactly(b, &dlq, 1, 1).await.len(), 1);

    let mut member = Member::start(b, &topic, &group, &dlq);
    // The killed member stays in the group until its session times out (`session.timeout.ms`,
    // 45 s at the defaults): only then does the rebalance that lets the new one in complete.
    let mut lines = member
        .until("dead_lettered", SESSION_TIMEOUT + WITHIN)
        .await;
    while !lines.iter().any(|l| l["processed"] == 9) {
        lines.extend(member.until("processed", WITHIN).await);
    }
    let processed: Vec<i64> = lines
        .iter()
        .filter_map(|l| l["processed"].as_i64())
        .collect();
    assert_eq!(
        processed,
        [0, 1, 2, 3, 4, 6, 7, 8, 9],
        "everything again, in order"
    );
    let pid = member.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(status.expect("kill -TERM").success());
    let exit = timeout(WITHIN, member.child.wait())
        .await
        .expect("closes")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(committed(b, &group, &topic, 1).await[&tp], Some(10));
    let letters = read_exactly(b, &dlq, 1, 2).await;
    let offsets: Vec<Option<String>> = letters.iter().map(|l| header(l, headers::OFFSET)).collect();
    assert_eq!(
        offsets,
        [Some("5".to_owned()), Some("5".to_owned())],
        "twice, never zero times"
    );
}
