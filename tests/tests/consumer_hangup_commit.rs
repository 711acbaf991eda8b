//! A broker that hangs up on every OffsetCommit, as a user meets it: the consumer has read
//! everything and waits in `recv` for more while its auto-commits keep failing. The offsets
//! task backs off and reports the failing commits; the report must reach the application's
//! hook and the metrics while it waits, not at its next call, even when nothing else (no fetch
//! answer, its partition paused) wakes the consumer meanwhile.
//!
//! The hang-up proxy stands in front of Apache Kafka's single node (`Kafka::single`); the
//! consumer is at its defaults but for `auto.commit.interval.ms` (500 ms, so that the failing
//! commits come often enough to be reported within the wait).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon::{ApiKey, ConsumerHooks, PersistentFailure};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{REBALANCE_WITHIN, group_builder_at_defaults, recv_n};
use kcon_tests::hangup::kafka_hanging_up;
use kcon_tests::kafka::create_topics;
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;
use tokio::time::timeout;

/// What the hook was told, and when.
#[derive(Debug, Clone, Default)]
struct Told(Arc<Mutex<Vec<(Instant, PersistentFailure)>>>);

impl ConsumerHooks for Told {
    fn on_persistent_failure(&self, failure: &PersistentFailure) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), failure.clone()));
    }
}

/// Every OffsetCommit is hung up on. A report comes after 3 failures over 5 s; the application,
/// its partition paused, sits in one `recv` call for 20 s meanwhile, and the hook hears of the
/// commits within that call, with the API and the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commits_are_told_while_the_application_waits_in_recv() {
    let (kafka, proxy) = kafka_hanging_up(ApiKey::OffsetCommit).await;
    let topic = unique_name("hangup-commit");
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create_topics(&pool, &[(&topic, 1)]).await;
    produce(&pool, &topic, 0, 5, now_ms()).await;
    let told = Told::default();
    let mut consumer = group_builder_at_defaults(&proxy.bootstrap(), &unique_name("g"), "range")
        .set("auto.commit.interval.ms", "500")
        .hooks(told.clone())
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    let records = recv_n(&mut consumer, 5, REBALANCE_WITHIN).await;
    assert_eq!(records.len(), 5);
    // Paused, the partition is not fetched: no answer wakes the consumer while it waits.
    let assigned = consumer.assignment();
    consumer.pause(assigned).unwrap();

    let waiting_from = Instant::now();
    let wait = Duration::from_secs(20);
    if let Ok(r) = timeout(wait, consumer.recv()).await {
        panic!("expected nothing while waiting, got {r:?}");
    }
    let waited_until = Instant::now();

    assert!(
        proxy.seen().iter().any(|s| s.hung_up),
        "no OffsetCommit reached the proxy"
    );
    let told = told.0.lock().unwrap().clone();
    let (at, report) = told
        .iter()
        .find(|(_, r)| r.api == ApiKey::OffsetCommit && !r.recovered)
        .unwrap_or_else(|| panic!("no OffsetCommit report: {told:#?}"));
    assert!(
        *at >= waiting_from && *at < waited_until,
        "told {:?} into a wait of {wait:?}: not while the application waited",
        at.checked_duration_since(waiting_from)
    );
    assert_eq!(
        report.cause, "the broker closed the connection",
        "{report:?}"
    );
    assert!(
        report.failures >= 3 && report.failing_for >= Duration::from_secs(5),
        "{report:?}"
    );
    assert!(consumer.metrics().persistent_failures >= 1);
    // The commits will not succeed: no close, which would wait for the last one.
    drop(consumer);
}
