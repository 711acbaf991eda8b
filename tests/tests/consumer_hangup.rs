//! A broker that hangs up on one request, as a user meets it: a proxy in front of Apache
//! Kafka's single node (`Kafka::single`; the consumer at its defaults) closes the connection on
//! every JoinGroup (Kafka does that to a request it cannot parse; proxies and Kafka-compatible
//! services do it to versions they mis-advertise). The consumer must not
//! storm the broker (each hang-up makes the member find the coordinator again, which it does at
//! once), must say so once at WARN and tell the application, and must join as soon as the
//! broker lets it.
//!
//! One test only: it counts the process's WARN lines, which a second test running beside it
//! would add to.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcon::{ApiKey, ConsumerHooks, PersistentFailure};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{REBALANCE_WITHIN, expect_no_record, group_builder_at_defaults, recv_n};
use kcon_tests::hangup::{kafka_hanging_up, most_in_a_second};
use kcon_tests::kafka::create_topics;
use kcon_tests::logs;
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

/// How long the proxy hangs up on every JoinGroup.
const WINDOW: Duration = Duration::from_secs(10);

/// The tries the backoff takes to reach retry.backoff.max.ms (1 s at the defaults): 100, 200,
/// 400 and 800 ms after the first. From then on, each second holds at most two.
const FIRST_FEW: usize = 5;

/// What the hook was told, and when.
#[derive(Debug, Clone, Default)]
struct Told(Arc<Mutex<Vec<(Instant, PersistentFailure)>>>);

impl Told {
    fn reports(&self) -> Vec<PersistentFailure> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }
}

impl ConsumerHooks for Told {
    fn on_persistent_failure(&self, failure: &PersistentFailure) {
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), failure.clone()));
    }
}

/// The proxy hangs up on every JoinGroup for 10 s: the member tries at most twice a second
/// once its backoff has grown (not once per FindCoordinator, 16 a second before), logs one
/// WARN line naming the API, version, broker and cause, tells the hook and counts the metric.
/// Then the proxy lets JoinGroups through: the member joins within a second or so of it, reads
/// every record, and the recovery is logged at INFO and told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_groups_a_broker_hangs_up_on_are_tried_at_most_twice_a_second_and_told_once() {
    let logs = logs::capture();
    let (kafka, proxy) = kafka_hanging_up(ApiKey::JoinGroup).await;
    let topic = unique_name("hangup");
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    create_topics(&pool, &[(&topic, 2)]).await;
    for partition in 0..2 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
    }
    let group = unique_name("g");
    let told = Told::default();
    let mut consumer = group_builder_at_defaults(&proxy.bootstrap(), &group, "range")
        .hooks(told.clone())
        .build()
        .unwrap();
    let mark = logs.mark();
    consumer.subscribe([topic.as_str()]).unwrap();
    expect_no_record(&mut consumer, WINDOW).await;

    let seen = proxy.seen();
    assert!(seen.iter().all(|s| s.hung_up), "{seen:?}");
    let (most, from) = most_in_a_second(&seen, FIRST_FEW);
    eprintln!(
        "JoinGroups in {WINDOW:?}: {} ({:.1} a second); the most in one second after the first \
         {FIRST_FEW}: {most}",
        seen.len(),
        seen.len() as f64 / WINDOW.as_secs_f64()
    );
    assert!(seen.len() > FIRST_FEW, "{seen:?}");
    assert!(
        most <= 2,
        "{most} JoinGroups in the second from {:?} in: {seen:?}",
        from.map(|f| f - seen[0].at)
    );

    let warns: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .collect();
    assert_eq!(warns.len(), 1, "one WARN line: {warns:#?}");
    let version = seen.last().unwrap().version;
    let line = &warns[0];
    eprintln!("{line}");
    for part in [
        format!("JoinGroup v{version} to broker "),
        proxy.bootstrap(),
        "the broker closed the connection".to_owned(),
        format!("(group {group})"),
        "retrying in".to_owned(),
    ] {
        assert!(line.contains(&part), "{part:?} not in {line:?}");
    }
    let reports = told.reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let r = &reports[0];
    assert_eq!(
        (r.api, r.version, r.recovered),
        (ApiKey::JoinGroup, Some(version), false)
    );
    assert!(
        r.broker
            .as_deref()
            .is_some_and(|b| b.contains(&proxy.bootstrap())),
        "{r:?}"
    );
    assert_eq!(r.cause, "the broker closed the connection");
    assert!(
        r.failures >= 3 && r.failing_for >= Duration::from_secs(5),
        "{r:?}"
    );
    assert_eq!(consumer.metrics().persistent_failures, 1);
    assert!(consumer.assignment().is_empty());

    // The proxy lets JoinGroups through from now on: the member joins and reads everything.
    proxy.hang_up(false);
    let records = recv_n(&mut consumer, 20, REBALANCE_WITHIN).await;
    assert_eq!(records.len(), 20);
    let after = proxy.seen();
    assert!(after.last().is_some_and(|s| !s.hung_up), "{after:?}");
    let reports = told.reports();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert!(
        reports[1].recovered && reports[1].api == ApiKey::JoinGroup,
        "{reports:?}"
    );
    assert_eq!(
        consumer.metrics().persistent_failures,
        1,
        "a recovery is not counted"
    );
    let recovered: Vec<String> = logs
        .since(mark)
        .into_iter()
        .filter(|l| {
            l.contains(" INFO ") && l.contains("JoinGroup") && l.contains("succeeded again")
        })
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    let warns = logs
        .since(mark)
        .into_iter()
        .filter(|l| l.contains(" WARN "))
        .count();
    assert_eq!(warns, 1, "nothing more at WARN: {:#?}", logs.since(mark));
    consumer.close().await.unwrap();
}
