//! A broker that hangs up on every OffsetCommit, as a user meets it: the consumer has read
//! everything and waits in `recv` for more while its auto-commits keep failing. The offsets
//! task backs off and reports the failing commits; the report must reach the application's
//! hook and the metrics while it waits, not at its next call, even when nothing else (no fetch
//! answer, its partition paused) wakes the consumer meanwhile.
//!
//! A suite of its own: the hang-up proxy fronts a Tansu of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon::{ApiKey, ConsumerHooks, PersistentFailure};
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{REBALANCE_WITHIN, group_builder, recv_n};
use kcon_tests::group::create_topics;
use kcon_tests::hangup::tansu_hanging_up;
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
    let (tansu, proxy) = tansu_hanging_up(ApiKey::OffsetCommit).await;
    let topic = unique_name("hangup-commit");
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 1)]).await;
    produce(&pool, &topic, 0, 5, now_ms()).await;
    let told = Told::default();
    let mut consumer = group_builder(&proxy.bootstrap(), &unique_name("g"), "range")
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
