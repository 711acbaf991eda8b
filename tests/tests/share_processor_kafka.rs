//! The Processor over a share consumer on Apache Kafka 4.4: what a newcomer sees when every
//! record of a queue fails the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kcon::deserialize::StringDeserializer;
use kcon::share::ShareConsumer;
use kcon::{FailureInfo, PolicyHooks, Processor, Record};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

const RECORDS: usize = 30;

/// Counts the dead letters the processor wrote.
struct Counted(Arc<AtomicUsize>);

impl PolicyHooks for Counted {
    fn on_dead_letter(&self, _: &Record, _: &FailureInfo) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Keyless records read with a key deserializer that refuses null keys all fail for good and
/// go to the dead-letter topic; stderr says so (rate-limited: the first at once, then one line
/// every ten seconds at most), naming the wrapper that would have read them.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_dead_lettered_whole_is_logged_with_the_fix() {
    let logs = kcon_tests::logs::capture();
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name("share-dlq");
    let dlq = format!("{topic}.dlq");
    create_topics(&pool, &[(&topic, 1), (&dlq, 1)]).await;
    let group = unique_name("share-dlq");
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
    produce(&pool, &topic, 0, RECORDS, now_ms()).await;
    let mut consumer = ShareConsumer::builder()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", &group)
        .set("share.acknowledgement.mode", "explicit")
        .build()
        .expect("a share consumer");
    consumer.subscribe([topic.as_str()]).unwrap();
    let dead = Arc::new(AtomicUsize::new(0));
    let mut processor = Processor::builder(consumer)
        .key(StringDeserializer)
        .value(StringDeserializer)
        .hooks(Counted(Arc::clone(&dead)))
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", &dlq)
        .build()
        .unwrap();
    let mark = logs.mark();
    let started = Instant::now();
    let all_dead = {
        let dead = Arc::clone(&dead);
        async move {
            while dead.load(Ordering::SeqCst) < RECORDS {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        processor.run_until(all_dead, async move |_| Ok(())),
    )
    .await
    .unwrap_or_else(|_| panic!("{} of {RECORDS} dead-lettered", dead.load(Ordering::SeqCst)))
    .expect("the processor ran");
    let took = started.elapsed();
    assert_eq!(processor.metrics().records_dead_lettered, RECORDS as u64);
    processor.close().await.expect("closed");

    let warned: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("dead-lettered") && l.contains(&topic))
        .collect();
    assert!(
        !warned.is_empty(),
        "no WARN line for {RECORDS} dead letters"
    );
    assert!(
        warned[0].contains("the key is null") && warned[0].contains("Nullable(...)"),
        "{warned:?}"
    );
    // The first at once, then one every ten seconds at most.
    let most = 1 + took.as_secs() as usize / 10;
    assert!(
        warned.len() <= most,
        "{} lines in {took:?}: {warned:?}",
        warned.len()
    );
}
