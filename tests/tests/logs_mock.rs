//! What kcon logs while librdkafka's mock cluster answers with errors pushed for it, captured
//! (`kcon_tests::logs`): a retry that has not lasted is no WARN, one that lasts is reported
//! once, and every broker error is named (NOT_LEADER_OR_FOLLOWER), never a bare code.
//!
//! A broker answers ListOffsets with NOT_LEADER_OR_FOLLOWER while a new topic's leader is
//! being elected, or after it moved, but only by chance of timing: the mock answers it when
//! told.

use std::time::Duration;

use kcon::TopicPartition;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder, recv_n};
use kcon_tests::logs;
use kcon_tests::mock::MockCluster;
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A consumer's reset lookup (auto.offset.reset=earliest, no committed offset) answered
/// NOT_LEADER_OR_FOLLOWER twice is retried and the records are read, with nothing at WARN (it
/// was a WARN line with `error_code=6` per answer). Answered so for longer than the failure
/// tracker waits (3 failures over 5 s), it is reported once at WARN, naming ListOffsets, the
/// error, the leader and auto.offset.reset, and its recovery once at INFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_lookups_that_are_retried_are_no_warning_until_they_last() {
    let logs = logs::capture();
    let mock = MockCluster::start(3);
    let topic = unique_name("logs-reset");
    mock.create_topic(&topic, 2, 3);
    let pool = kcon_pool::Pool::new(config(mock.bootstrap())).unwrap();
    produce(&pool, &topic, 0, 4, now_ms()).await;
    produce(&pool, &topic, 1, 4, now_ms()).await;

    let mark = logs.mark();
    mock.push_request_errors(
        ApiKey::ListOffsets,
        &[NOT_LEADER_OR_FOLLOWER, NOT_LEADER_OR_FOLLOWER],
    );
    let mut c = builder(mock.bootstrap()).build().unwrap();
    c.assign([TopicPartition::new(&topic, 0)]).unwrap();
    recv_n(&mut c, 4, Duration::from_secs(20)).await;
    c.close().await.unwrap();
    let lines = logs.since(mark);
    let warns: Vec<&String> = lines.iter().filter(|l| l.contains(" WARN ")).collect();
    assert!(warns.is_empty(), "a retry that did not last: {warns:#?}");

    let mark = logs.mark();
    mock.push_request_errors(ApiKey::ListOffsets, &[NOT_LEADER_OR_FOLLOWER; 12]);
    let mut c = builder(mock.bootstrap()).build().unwrap();
    c.assign([TopicPartition::new(&topic, 1)]).unwrap();
    recv_n(&mut c, 4, Duration::from_secs(40)).await;
    c.close().await.unwrap();
    let lines = logs.since(mark);
    let warns: Vec<&String> = lines.iter().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warns.len(), 1, "reported once: {lines:#?}");
    for what in [
        "ListOffsets",
        "NOT_LEADER_OR_FOLLOWER (6) for 1 partition(s)",
        "led by broker",
        "auto.offset.reset",
    ] {
        assert!(warns[0].contains(what), "{what} in {}", warns[0]);
    }
    let recovered: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" INFO ") && l.contains("ListOffsets succeeded again"))
        .collect();
    assert_eq!(recovered.len(), 1, "{lines:#?}");

    let all = logs.lines();
    let bare: Vec<&String> = all.iter().filter(|l| l.contains("error_code=")).collect();
    assert!(bare.is_empty(), "errors by name, not code: {bare:#?}");
}
