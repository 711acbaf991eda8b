//! kcon-admin on Apache Kafka (the shared clusters of `scripts/kafka`): 4.4 at its defaults,
//! and 3.9.1 at its defaults (the consumer protocol off), with groups made by kcon's own
//! consumers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon::{IsolationLevel, TopicPartition};
use kcon_admin::ResetTo;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder, recv_n};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;

/// How long a consumer started by a test may take to read what it is given.
const READ_WITHIN: Duration = Duration::from_secs(30);

/// A pool on `kafka` and a new topic of `partitions` partitions on it.
async fn topic(kafka: &Kafka, prefix: &str, partitions: i32) -> (Pool, String) {
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name(prefix);
    create_topics(&pool, &[(&topic, partitions)]).await;
    (pool, topic)
}

/// Apache Kafka 3.9.1 at its defaults offers ConsumerGroupDescribe but answers each group with
/// UNSUPPORTED_VERSION (the consumer protocol is off): a classic group made by a kcon consumer
/// is described (with its member and lag) and reset all the same, by DescribeGroups.
#[tokio::test(flavor = "multi_thread")]
async fn a_classic_group_on_kafka_3_9_is_described_and_reset() {
    let kafka = Kafka::kafka39();
    let (pool, topic) = topic(kafka, "classic39", 1).await;
    let tp = TopicPartition::new(topic.as_str(), 0);
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let group = unique_name("classic39");
    let mut consumer = builder(kafka.bootstrap())
        .group_id(&group)
        .build()
        .expect("a consumer");
    consumer.subscribe([topic.as_str()]).unwrap();
    recv_n(&mut consumer, 10, READ_WITHIN).await;
    consumer.commit().await.expect("the commit");

    let d = kcon_admin::describe(&pool, &group)
        .await
        .expect("the group described");
    assert_eq!(
        (d.state.as_str(), d.protocol_type.as_str(), d.members.len()),
        ("Stable", "consumer", 1),
        "{d:?}"
    );
    assert!(d.consumer_protocol.is_none(), "a classic group: {d:?}");
    assert_eq!(d.members[0].assignment, Some(vec![tp.clone()]));
    let lag = kcon_admin::describe_group_lag(&pool, &group, IsolationLevel::ReadUncommitted)
        .await
        .expect("the group's lag");
    let p = &lag.lag.partitions[&tp];
    assert_eq!(
        (p.committed, p.log_end, p.lag.records),
        (Some(10), Some(10), Some(0))
    );

    // Active: the reset is refused, naming the members.
    let partitions = BTreeSet::from([tp.clone()]);
    let e = kcon_admin::plan_reset(&pool, &group, &partitions, ResetTo::Earliest)
        .await
        .expect_err("an active group is not reset");
    assert!(
        matches!(e, kcon_admin::Error::GroupActive { members: 1, .. }),
        "{e:?}"
    );
    consumer.close().await.expect("the consumer leaves");

    let plan = kcon_admin::plan_reset(&pool, &group, &partitions, ResetTo::Offset(4))
        .await
        .expect("the reset planned");
    assert_eq!(plan.offsets(), BTreeMap::from([(tp.clone(), 4)]));
    assert_eq!(plan.partitions[&tp].current, Some(10));
    kcon_admin::execute_reset(&pool, &plan)
        .await
        .expect("the reset committed");
    let lag = kcon_admin::describe_group_lag(&pool, &group, IsolationLevel::ReadUncommitted)
        .await
        .expect("the group's lag");
    assert_eq!(lag.description.state, "Empty");
    let p = &lag.lag.partitions[&tp];
    assert_eq!((p.committed, p.lag.records), (Some(4), Some(6)));
}

/// An offset committed 200 past the log end (from outside the group) is a lag of -200, as
/// Kafka's `kafka-consumer-groups.sh` shows it, judged PAST_END; it adds nothing to the total.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_past_the_log_end_is_a_negative_lag() {
    let kafka = Kafka::single();
    let (pool, topic) = topic(kafka, "past-end", 2).await;
    let past = TopicPartition::new(topic.as_str(), 0);
    let behind = TopicPartition::new(topic.as_str(), 1);
    produce(&pool, &topic, 0, 100, now_ms()).await;
    produce(&pool, &topic, 1, 50, now_ms()).await;
    let group = unique_name("past-end");
    let outcomes = kcon_admin::commit_offsets(
        &pool,
        &group,
        &BTreeMap::from([(past.clone(), 300), (behind.clone(), 20)]),
    )
    .await
    .expect("the commit");
    assert!(outcomes.values().all(Result::is_ok), "{outcomes:?}");

    let lag = kcon_admin::group_lag(&pool, &group, &kcon_admin::LagOptions::default())
        .await
        .expect("the group's lag");
    let p = &lag.partitions[&past];
    assert_eq!(
        (p.committed, p.log_end, p.lag.records, p.lag.time),
        (Some(300), Some(100), Some(-200), Some(Duration::ZERO)),
        "{p:?}"
    );
    assert!(p.past_end() && p.error.is_none(), "{p:?}");
    assert_eq!(lag.partitions[&behind].lag.records, Some(30));
    assert_eq!(lag.total_records(), 30);
    let judged = kcon_admin::GroupWatch::new(10).observe(&lag);
    assert_eq!(
        judged.partitions[&past],
        kcon_admin::status::Status::PastEnd
    );
    assert_eq!(judged.group, kcon_admin::status::Status::Err);
}

/// How many records the share-group test produces and acknowledges.
const SHARED_RECORDS: usize = 3000;

/// A share group whose every record a kcon share consumer accepted has no lag: the broker's
/// own count (DescribeShareGroupOffsets v1, KIP-1226), which Kafka's ShareGroupCommand shows
/// too, and not the records from the share-partition start offset to the log end.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_group_that_acknowledged_everything_has_no_lag() {
    use kcon::share::{AcknowledgeType, ShareConsumer};
    let kafka = Kafka::single();
    let (pool, topic) = topic(kafka, "share-lag", 1).await;
    let tp = TopicPartition::new(topic.as_str(), 0);
    let group = unique_name("share-lag");
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
    for _ in 0..3 {
        produce(&pool, &topic, 0, SHARED_RECORDS / 3, now_ms()).await;
    }
    let mut consumer = ShareConsumer::builder()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", &group)
        .set("share.acknowledgement.mode", "explicit")
        .build()
        .expect("a share consumer");
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut seen = BTreeSet::new();
    tokio::time::timeout(READ_WITHIN, async {
        while seen.len() < SHARED_RECORDS {
            let batch = consumer.recv_batch().await.expect("a batch");
            for r in &batch {
                consumer.acknowledge(r, AcknowledgeType::Accept).unwrap();
                seen.insert(r.offset);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {SHARED_RECORDS} records", seen.len()));
    let outcomes = consumer.commit().await.expect("the acknowledgements");
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");

    // The broker's count follows the acknowledgements; the start offset and the log end alone
    // would say 3000 wherever the share-partition's state lags behind.
    let deadline = tokio::time::Instant::now() + READ_WITHIN;
    let p = loop {
        let d = kcon_admin::describe_group_lag(&pool, &group, IsolationLevel::ReadUncommitted)
            .await
            .expect("the share group described");
        let share = d.share.expect("a share group");
        assert!(!share.lag_is_upper_bound(), "the broker's lag: {share:?}");
        let p = share.partitions[&tp].clone();
        if p.lag == Some(0) || tokio::time::Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (p.lag, p.lag_is_upper_bound, p.log_end),
        (Some(0), false, Some(SHARED_RECORDS as i64)),
        "{p:?}"
    );
    // Kafka's own tool says the same.
    let java = kafka.tool(
        "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
        &["--describe", "--group", &group],
    );
    let row: Vec<&str> = java
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(topic.as_str()))
        .unwrap_or_else(|| panic!("no row for {topic}: {java}"))
        .split_whitespace()
        .collect();
    let header: Vec<&str> = java
        .lines()
        .find(|l| l.starts_with("GROUP"))
        .unwrap_or_else(|| panic!("no header: {java}"))
        .split_whitespace()
        .collect();
    let lag = header
        .iter()
        .position(|c| *c == "LAG")
        .expect("a LAG column");
    assert_eq!(row[lag], "0", "{java}");
    consumer.close().await.expect("the consumer leaves");
}
