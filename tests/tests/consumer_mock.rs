//! `kcon::Consumer` against librdkafka's mock cluster (3 brokers), at the versions it
//! advertises: a group shared with a librdkafka consumer, a default consumer reading on while
//! every broker is bounced, errors pushed on OffsetCommit (retried or returned as the
//! kcon-offsets docs say), `auto.offset.reset=none`, and the lag in seconds of a partition
//! whose next record is not fetched yet.
//!
//! A classic group of kcon and librdkafka with every broker bounced runs on Apache Kafka's
//! three-node cluster (`consumer_broker_kill_cluster.rs`): the mock ends a generation's sync
//! with the leader's SyncGroup and refuses a follower's that comes after it
//! (`mock_harness::the_mock_refuses_a_follower_that_syncs_after_the_leader`), so a group whose
//! coordinator moves there again and again converges only by luck.
//!
//! The mock's fetch path is slow (see DESIGN.md, "The brokers"): data volumes stay small.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon::{Consumer, ErrorKind, ResetPolicy, TopicPartition};
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::Pool;
use kcon_prometheus::RegisterMetrics;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    Driven, REBALANCE_WITHIN, STEP, assert_exactly, builder, expect_no_record, group_builder,
    partitions, recv_n, wait_until,
};
use kcon_tests::group_peers::{GroupPeer, PeerClient, split_exactly_once};
use kcon_tests::mock::MockCluster;
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;
use kcon_tests::prometheus::parse_with_prometheus_client;
use tokio::task::block_in_place;

const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;
const REBALANCE_IN_PROGRESS: i16 = 27;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;

/// A 3-broker mock with `topic` of `partitions` partitions, a short initial rebalance delay,
/// and a pool for producing.
fn mock_with_topic(partitions: i32) -> (MockCluster, String, Pool) {
    let mock = MockCluster::start(3);
    mock.set_group_initial_rebalance_delay(Duration::from_millis(200));
    let topic = unique_name("consumer-mock");
    mock.create_topic(&topic, partitions, 3);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    (mock, topic, pool)
}

/// The kcon consumer's and the peer's assignments as tests write them.
fn as_tps(set: &BTreeSet<TopicPartition>) -> BTreeSet<(String, i32)> {
    set.iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect()
}

/// A kcon consumer leads a cooperative-sticky group; a librdkafka consumer joins, and the
/// partitions split exactly once between them; the peer leaves and the kcon consumer owns
/// everything again and reads what is produced then, every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcon_consumer_and_a_librdkafka_peer_split_the_partitions_exactly_once() {
    let (mock, topic, pool) = mock_with_topic(4);
    let all = partitions(&topic, 4);
    let expected = as_tps(&all);
    let group = unique_name("g");
    let mut c = group_builder(mock.bootstrap(), &group, "cooperative-sticky")
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let kcon = Driven::start("kcon", c, STEP);
    wait_until(
        "kcon owns everything",
        REBALANCE_WITHIN,
        || kcon.assignment() == all,
        || kcon.state(),
    )
    .await;

    let peer = block_in_place(|| {
        GroupPeer::start(
            PeerClient::Librdkafka,
            mock.bootstrap(),
            &group,
            &[&topic],
            "cooperative-sticky",
            None,
        )
    });
    wait_until(
        "split exactly once",
        REBALANCE_WITHIN,
        || {
            let (k, p) = (as_tps(&kcon.assignment()), peer.assignment());
            !k.is_empty() && !p.is_empty() && split_exactly_once(&[k, p], &expected).is_ok()
        },
        || (kcon.state(), peer.events()),
    )
    .await;

    block_in_place(|| peer.close());
    wait_until(
        "kcon owns everything again",
        REBALANCE_WITHIN,
        || kcon.assignment() == all,
        || kcon.state(),
    )
    .await;
    for p in 0..4 {
        produce(&pool, &topic, p, 5, now_ms()).await;
    }
    wait_until(
        "20 records",
        Duration::from_secs(20),
        || kcon.received() >= 20,
        || kcon.state(),
    )
    .await;
    let (c, seen) = kcon.stop().await;
    assert_exactly(
        &seen.records,
        &BTreeMap::new(),
        &all.iter().map(|tp| (tp.clone(), 5)).collect(),
        10,
    );
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    c.close().await.unwrap();
}

/// OffsetCommit errors pushed on the mock, through `Consumer::commit`: REBALANCE_IN_PROGRESS is
/// returned (a retriable broker error naming OffsetCommit) and the stored offsets go with the
/// next commit; NOT_COORDINATOR (the coordinator is looked up again) and
/// COORDINATOR_LOAD_IN_PROGRESS are retried inside the commit; GROUP_AUTHORIZATION_FAILED is
/// returned, not retriable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_errors_pushed_on_the_coordinator_are_retried_or_returned() {
    let (mock, topic, pool) = mock_with_topic(1);
    let tp = TopicPartition::new(&topic, 0);
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let mut c = group_builder(mock.bootstrap(), &unique_name("g"), "range")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut c, 10, REBALANCE_WITHIN).await;
    c.commit().await.unwrap();
    assert_eq!(committed(&c, &tp).await, Some(10));

    // REBALANCE_IN_PROGRESS: returned; the next commit carries the stored offset.
    produce(&pool, &topic, 0, 5, now_ms()).await;
    recv_n(&mut c, 5, Duration::from_secs(10)).await;
    mock.push_request_errors(ApiKey::OffsetCommit, &[REBALANCE_IN_PROGRESS]);
    let e = c.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Broker, "{e}");
    assert_eq!(
        (e.code().map(|c| c.code()), e.api()),
        (Some(REBALANCE_IN_PROGRESS), Some(ApiKey::OffsetCommit))
    );
    assert!(e.is_retriable(), "{e}");
    assert_eq!(committed(&c, &tp).await, Some(10));
    c.commit().await.unwrap();
    assert_eq!(committed(&c, &tp).await, Some(15));

    // NOT_COORDINATOR: the coordinator is found again and the commit retried.
    produce(&pool, &topic, 0, 2, now_ms()).await;
    recv_n(&mut c, 2, Duration::from_secs(10)).await;
    mock.start_request_tracking();
    mock.push_request_errors(ApiKey::OffsetCommit, &[NOT_COORDINATOR]);
    c.commit().await.unwrap();
    let apis: Vec<ApiKey> = mock.requests().iter().filter_map(|r| r.api()).collect();
    assert!(apis.contains(&ApiKey::FindCoordinator), "{apis:?}");
    assert_eq!(
        apis.iter().filter(|a| **a == ApiKey::OffsetCommit).count(),
        2,
        "{apis:?}"
    );
    assert_eq!(committed(&c, &tp).await, Some(17));

    // COORDINATOR_LOAD_IN_PROGRESS, twice: retried.
    produce(&pool, &topic, 0, 1, now_ms()).await;
    recv_n(&mut c, 1, Duration::from_secs(10)).await;
    mock.push_request_errors(
        ApiKey::OffsetCommit,
        &[COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_LOAD_IN_PROGRESS],
    );
    c.commit().await.unwrap();
    assert_eq!(committed(&c, &tp).await, Some(18));

    // GROUP_AUTHORIZATION_FAILED: returned, not retriable; nothing committed.
    produce(&pool, &topic, 0, 1, now_ms()).await;
    recv_n(&mut c, 1, Duration::from_secs(10)).await;
    mock.push_request_errors(ApiKey::OffsetCommit, &[GROUP_AUTHORIZATION_FAILED]);
    let e = c.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Broker, "{e}");
    assert_eq!(
        e.code().map(|c| c.code()),
        Some(GROUP_AUTHORIZATION_FAILED),
        "{e}"
    );
    assert!(!e.is_retriable(), "{e}");
    assert_eq!(committed(&c, &tp).await, Some(18));
    let m = c.metrics();
    assert_eq!((m.commits, m.commit_failures), (6, 2), "{m:?}");
    c.close().await.unwrap();
}

/// The committed offset of `tp`.
async fn committed(c: &Consumer, tp: &TopicPartition) -> Option<i64> {
    c.committed([tp.clone()]).await.unwrap()[tp]
}

/// With `auto.offset.reset=none`, partitions without a committed offset fail the receiving
/// call with `NoOffset`, naming them; once sought they are read from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_offset_reset_none_names_the_partitions_without_an_offset_until_sought() {
    let (mock, topic, pool) = mock_with_topic(2);
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    produce(&pool, &topic, 0, 4, now_ms()).await;
    produce(&pool, &topic, 1, 4, now_ms()).await;
    let mut c = builder(mock.bootstrap())
        .group_id(&unique_name("g"))
        .auto_offset_reset(ResetPolicy::None)
        .build()
        .unwrap();
    c.assign([p0.clone(), p1.clone()]).unwrap();
    let mut named = BTreeSet::new();
    for _ in 0..2 {
        if named.len() == 2 {
            break;
        }
        let e = tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .expect("an answer")
            .expect_err("no partition has an offset");
        assert_eq!(e.kind(), ErrorKind::NoOffset, "{e}");
        assert!(!e.partitions().is_empty(), "{e}");
        for tp in e.partitions() {
            assert!(e.to_string().contains(&tp.to_string()), "{e}");
        }
        named.extend(e.partitions().iter().cloned());
    }
    assert_eq!(named, [p0.clone(), p1.clone()].into());
    expect_no_record(&mut c, Duration::from_millis(500)).await;

    c.seek(p0.clone(), 1).unwrap();
    c.seek(p1.clone(), 3).unwrap();
    let records = recv_n(&mut c, 4, Duration::from_secs(10)).await;
    assert_exactly(
        &records,
        &[(p0.clone(), 1), (p1.clone(), 3)].into(),
        &[(p0, 4), (p1, 4)].into(),
        4,
    );
    c.close().await.unwrap();
}

/// What a new user does first, on a 3-broker mock at the versions it advertises (Metadata v12,
/// whose answers carry a byte after the message, and Fetch v16, by topic id): a group consumer
/// with default settings, bar `auto.offset.reset=earliest` as `kcon consume` sets it, reads a
/// topic led by all three brokers while each broker in turn goes down and comes back. The
/// partitions of the up brokers go on being read meanwhile, the down broker's are read once it
/// is back, the coordinator's outage included; in the end every record is read, once and in
/// order, and no receiving call failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_consumer_reads_everything_while_each_broker_is_bounced() {
    const PARTITIONS: i32 = 6;
    const BATCH: usize = 10;
    let (mock, topic, pool) = mock_with_topic(PARTITIONS);
    let leader_of = |p: i32| p % 3 + 1;
    for p in 0..PARTITIONS {
        mock.set_leader(&topic, p, leader_of(p));
    }
    let mut produced: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    // One batch to each partition whose leader is not `down` (0: every partition).
    let produce_round = |produced: &mut BTreeMap<TopicPartition, i64>, down: i32| {
        let to: Vec<i32> = (0..PARTITIONS).filter(|&p| leader_of(p) != down).collect();
        for &p in &to {
            *produced.entry(TopicPartition::new(&topic, p)).or_default() += BATCH as i64;
        }
        let (pool, topic) = (&pool, &topic);
        async move {
            for p in to {
                produce(pool, topic, p, BATCH, now_ms()).await;
            }
        }
    };
    produce_round(&mut produced, 0).await;

    let mut c = Consumer::builder()
        .bootstrap_servers(mock.bootstrap())
        .group_id(&unique_name("g"))
        .auto_offset_reset(ResetPolicy::Earliest)
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
    let kcon = Driven::start("kcon", c, STEP);
    // Records read of the partitions `count` selects.
    let read = |count: &dyn Fn(i32) -> bool| {
        kcon.state()
            .records
            .iter()
            .filter(|r| count(r.partition))
            .count() as i64
    };
    let total = |produced: &BTreeMap<TopicPartition, i64>, count: &dyn Fn(i32) -> bool| {
        produced
            .iter()
            .filter(|(tp, _)| count(tp.partition))
            .map(|(_, n)| n)
            .sum::<i64>()
    };
    let want = total(&produced, &|_| true);
    wait_until(
        "every record before the first bounce",
        REBALANCE_WITHIN,
        || read(&|_| true) == want,
        || kcon.state(),
    )
    .await;

    for id in 1..=3 {
        mock.set_down(id);
        produce_round(&mut produced, id).await;
        let others = |p: i32| leader_of(p) != id;
        let want = total(&produced, &others);
        wait_until(
            &format!("the partitions of the brokers up while {id} is down read"),
            Duration::from_secs(30),
            || read(&others) == want,
            || kcon.state(),
        )
        .await;

        mock.set_up(id);
        produce_round(&mut produced, 0).await;
        let want = total(&produced, &|_| true);
        wait_until(
            &format!("every partition read once broker {id} is back"),
            Duration::from_secs(60),
            || read(&|_| true) == want,
            || kcon.state(),
        )
        .await;
    }

    let (c, seen) = kcon.stop().await;
    assert_exactly(&seen.records, &BTreeMap::new(), &produced, BATCH as i64);
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    c.close().await.unwrap();
}

/// A partition behind whose next record is not fetched yet (a Fetch answer handed out whole,
/// more records in the log: the mock keeps to `max.partition.fetch.bytes`, Tansu does not) has
/// a lag in seconds from the first scrape on: the age of the last record fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_in_seconds_is_published_while_the_next_record_is_not_fetched_yet() {
    let mock = MockCluster::start(1);
    let topic = unique_name("age");
    mock.create_topic(&topic, 1, 1);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    // Twenty batches of 100 records written a minute ago: more than one answer carries.
    let written = now_ms() - 60_000;
    for i in 0..20 {
        produce(&pool, &topic, 0, 100, written + i * 100).await;
    }
    let mut c = builder(mock.bootstrap())
        .set("max.partition.fetch.bytes", "4096")
        .set("max.poll.records", "100000")
        .set("client.id", "aged")
        .build()
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    c.metrics_handle().register_metrics(&mut registry);
    c.assign(partitions(&topic, 1)).unwrap();
    // The first answer, taken whole: nothing of the partition is held after it.
    let first = c.recv_batch().await.unwrap().len() as i64;
    assert!(first < 2_000, "one answer holds part of the log: {first}");
    let tp = kcon::TopicPartition::new(&topic, 0);
    let lag = c.metrics().partitions[&tp];
    assert_eq!(
        (lag.position, lag.records),
        (Some(first), Some(2_000 - first))
    );
    let age = lag.time.expect("a lag in seconds while behind");
    assert!(age >= Duration::from_secs(59), "{age:?}");

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    let labels = format!(r#"client_id="aged",partition="0",topic="{topic}""#);
    let seconds = samples
        .get(&format!("kcon_consumer_partition_lag_seconds{{{labels}}}"))
        .unwrap_or_else(|| panic!("no lag in seconds in\n{text}"));
    assert!(*seconds >= 59.0, "{seconds}");
    c.close().await.unwrap();
}
