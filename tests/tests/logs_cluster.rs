//! What kcon logs while a node of the three-node Apache Kafka cluster is down, captured
//! (`kcon_tests::logs`): what goes on as it should is not logged as a failure, and what is
//! reported names the broker it is about. Each test kills its group's coordinator and starts
//! it again before it ends (nextest runs `*_cluster` tests one at a time).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kcon_core::TopicPartition;
use kcon_offsets::{CommitError, Offsets};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    Member, REBALANCE_WITHIN, group_config_at_defaults, partitions, wait_for_exactly_once,
};
use kcon_tests::kafka::{self, Kafka};
use kcon_tests::logs;
use kcon_tests::offsets::offsets_config;
use kcon_tests::pool::config;

/// The committed offset of `tp`, if any.
async fn committed(offsets: &Offsets, tp: &TopicPartition) -> Option<i64> {
    offsets
        .committed(Some([tp.clone()].into()))
        .await
        .ok()?
        .get(tp)
        .cloned()
        .flatten()
        .map(|o| o.offset)
}

/// Waits (up to 90 s: a killed coordinator is replaced once the controller fences its node,
/// `broker.session.timeout.ms` after it died) until `tp`'s committed offset is `want`.
async fn wait_committed(offsets: &Offsets, tp: &TopicPartition, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed(offsets, tp).await != Some(want) {
        assert!(
            Instant::now() < deadline,
            "offset {want} of {tp} never committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// While the group's coordinator is down, each auto-commit (once a second here) waits behind
/// the one being retried and takes its offsets along: the earlier one is superseded, which is
/// no failure, and nothing at INFO or above says otherwise (a WARN "auto-commit failed" a
/// second did). Once a coordinator answers, the last one commits everything stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commits_superseded_while_the_coordinator_is_down_are_not_failures() {
    let logs = logs::capture();
    let kafka = Kafka::cluster();
    let admin = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("logs-superseded");
    kafka::create_topics(&admin, &[(&topic, 1)]).await;
    let group = unique_name("logs-superseded-g");
    let offsets = Offsets::start(
        Pool::new(config(kafka.bootstrap())).unwrap(),
        offsets_config(
            &group,
            &[
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                // The default: a commit waits a minute for a coordinator before it fails.
                ("default.api.timeout.ms", "60000"),
            ],
        ),
    )
    .unwrap();
    let superseded = Arc::new(AtomicUsize::new(0));
    let seen = superseded.clone();
    offsets.observe(Arc::new(move |f| {
        if matches!(f.result, Err(CommitError::Superseded { .. })) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    }));
    let tp = TopicPartition::new(&topic, 0);
    offsets.store_offset(tp.clone(), 0, None);
    wait_committed(&offsets, &tp, 1).await;

    let coordinator = kcon_admin::find_coordinator(&admin, &group).await.unwrap();
    let mark = logs.mark();
    kafka.kill_node(coordinator.id);
    // The application goes on processing records meanwhile.
    let mut offset = 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while superseded.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "no three superseded auto-commits within 60 s: {:#?}",
            logs.since(mark)
        );
        offsets.store_offset(tp.clone(), offset, None);
        offset += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    kafka.start_node(coordinator.id);
    wait_committed(&offsets, &tp, offset).await;

    let lines = logs.since(mark);
    let told: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("superseded by") || l.contains("auto-commit failed"))
        .collect();
    assert!(
        told.is_empty(),
        "{} superseded auto-commits, none of them a failure: {told:#?}",
        superseded.load(Ordering::SeqCst)
    );
    offsets.close(Duration::from_secs(10)).await;
}

/// A group member's heartbeats fail while its coordinator's node is down, which is reported
/// once it has lasted; when the coordinator has moved to another broker and answers, the
/// recovery names that broker, not the one that is down (it named the last failed try's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_names_the_broker_that_answered() {
    let logs = logs::capture();
    let kafka = Kafka::cluster();
    let admin = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("logs-recovery");
    kafka::create_topics(&admin, &[(&topic, 2)]).await;
    let group = unique_name("logs-recovery-g");
    // A failure is reported once it has lasted 5 s, and the group moves when the controller
    // fences the node, 7 to 9 s after the kill (`broker.session.timeout.ms` 9 s from its last
    // heartbeat, every 2 s). At the default 3 s heartbeat the member may first try its
    // coordinator 3 s after the kill, and the group then moved before the failure had lasted
    // 5 s: nothing was reported, so nothing recovered. A 500 ms heartbeat leaves it 6.5 s at
    // the least; what is logged does not depend on the interval.
    let member = Member::start(
        "a",
        kafka.bootstrap(),
        group_config_at_defaults(
            &group,
            "range,cooperative-sticky",
            &[("heartbeat.interval.ms", "500")],
        ),
        &[&topic],
    );
    wait_for_exactly_once(&[&member], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    let dead = kcon_admin::find_coordinator(&admin, &group).await.unwrap();
    let mark = logs.mark();
    kafka.kill_node(dead.id);
    // The controller fences the node after `broker.session.timeout.ms` (9 s) and the group
    // moves to another broker; the node stays down until the member recovered.
    let deadline = Instant::now() + Duration::from_secs(90);
    let recovery = loop {
        let found = logs.since(mark).into_iter().find(|l| {
            l.contains(" INFO ") && l.contains("Heartbeat") && l.contains("succeeded again")
        });
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 90 s: {:#?}",
            logs.since(mark)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let moved = kcon_admin::find_coordinator(&admin, &group).await;
    kafka.start_node(dead.id);
    let moved = moved.unwrap();
    assert_ne!(moved.id, dead.id);
    let lines = logs.since(mark);
    let reported = lines
        .iter()
        .find(|l| l.contains(" WARN ") && l.contains("Heartbeat") && l.contains("failed"));
    assert!(
        reported.is_some_and(|l| l.contains(&format!("to broker {} ", dead.id))),
        "the failure is reported naming broker {}: {lines:#?}",
        dead.id
    );
    assert!(
        recovery.contains(&format!(
            "to broker {} (127.0.0.1:{})",
            moved.id, moved.port
        )),
        "the recovery names broker {}, which answered, not broker {}: {recovery}",
        moved.id,
        dead.id
    );
    let log = member.close().await;
    assert!(log.fatal.is_none(), "{log:?}");
}
