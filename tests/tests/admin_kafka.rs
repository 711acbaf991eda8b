//! kcon-admin on Apache Kafka (the shared clusters of `scripts/kafka`): 4.4 at its defaults,
//! and 3.9.1 at its defaults (the consumer protocol off), with groups made by kcon's own
//! consumers or by commits from outside any generation: a classic group described and reset, a
//! group's lag in records and in the age of its first unread record (several groups in one
//! call, each partition with its own outcome), a commit past the log end, the log's range, a
//! reset planned within the log and committed, and a share group's lag.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon::{IsolationLevel, TopicPartition};
use kcon_admin::{
    LagOptions, PartitionLag, ResetTo, ResponseError, group_lag, groups_lag, list_offsets,
    log_ranges,
};
use kcon_core::OffsetSpec;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder, recv_n};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{fetch_high_watermark, now_ms, produce};
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

/// Commits `offsets` (partition, offset) of `topic` for `group` from outside any generation,
/// as a tool resetting offsets does; each must be taken.
async fn commit(pool: &Pool, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let offsets: BTreeMap<TopicPartition, i64> = offsets
        .iter()
        .map(|&(p, offset)| (TopicPartition::new(topic, p), offset))
        .collect();
    let outcomes = kcon_admin::commit_offsets(pool, group, &offsets)
        .await
        .expect("the commit");
    assert!(outcomes.values().all(Result::is_ok), "{outcomes:?}");
}

/// The age of a record with timestamp `ts` at `at_ms`.
fn age(at_ms: i64, ts: i64) -> Duration {
    Duration::from_millis((at_ms - ts) as u64)
}

/// Partition 0 holds 10 records in two batches (6, then 4) and the group committed 4: it lags
/// by 6 records, and by the age of record 4 (produced a minute ago). Partition 1 is read to its
/// end: no lag. Partition 2 has no committed offset but was asked for: its end is known, its
/// lag is not. Committing the rest brings the lag to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_counts_the_records_not_read_and_the_age_of_the_first() {
    let (pool, topic) = topic(Kafka::single(), "lag", 3).await;
    let t0 = now_ms() - 60_000;
    assert_eq!(produce(&pool, &topic, 0, 6, t0).await, 0);
    assert_eq!(produce(&pool, &topic, 0, 4, t0 + 100).await, 6);
    assert_eq!(produce(&pool, &topic, 1, 5, t0 + 200).await, 0);
    assert_eq!(produce(&pool, &topic, 2, 3, t0 + 300).await, 0);
    assert_eq!(fetch_high_watermark(&pool, &topic, 0).await, 10);
    let (p0, p1, p2) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
        TopicPartition::new(&topic, 2),
    );
    let group = unique_name("g");
    commit(&pool, &group, &topic, &[(0, 4), (1, 5)]).await;

    let options = LagOptions {
        isolation: IsolationLevel::ReadUncommitted,
        include: BTreeSet::from([p2.clone()]),
    };
    let before = now_ms();
    let lag = group_lag(&pool, &group, &options).await.unwrap();
    let after = now_ms();
    assert_eq!(lag.group_id, group);
    assert_eq!(
        lag.partitions.keys().collect::<Vec<_>>(),
        [&p0, &p1, &p2],
        "{lag:?}"
    );
    // The ages are taken at one moment, within the call.
    assert!((before..=after).contains(&lag.measured_at_ms), "{lag:?}");

    let behind = &lag.partitions[&p0];
    assert!(behind.error.is_none(), "{behind:?}");
    assert_eq!(
        (behind.committed, behind.log_start, behind.log_end),
        (Some(4), Some(0), Some(10))
    );
    assert_eq!(behind.lag.records, Some(6), "records 4..10 are not read");
    // Record 4 has timestamp t0 + 4: its age at the measuring moment exactly, and, with the
    // tolerance of the call's own duration, its age as this test's clock sees it.
    let time = behind.lag.time.expect("the age of record 4");
    assert_eq!(time, age(lag.measured_at_ms, t0 + 4));
    assert!(
        age(before, t0 + 4) <= time && time <= age(after, t0 + 4),
        "{time:?} not within {:?}..={:?}",
        age(before, t0 + 4),
        age(after, t0 + 4)
    );
    assert!(time >= Duration::from_secs(60), "a minute old: {time:?}");

    let caught_up = &lag.partitions[&p1];
    assert!(caught_up.error.is_none(), "{caught_up:?}");
    assert_eq!((caught_up.committed, caught_up.log_end), (Some(5), Some(5)));
    assert_eq!(
        (caught_up.lag.records, caught_up.lag.time),
        (Some(0), Some(Duration::ZERO))
    );

    let unread = &lag.partitions[&p2];
    assert!(unread.error.is_none(), "{unread:?}");
    assert_eq!((unread.committed, unread.log_end), (None, Some(3)));
    assert_eq!((unread.lag.records, unread.lag.time), (None, None));

    assert_eq!(lag.total_records(), 6);
    assert_eq!(lag.max_time(), Some(time));

    // Read to the end everywhere: no lag, in records or in time.
    commit(&pool, &group, &topic, &[(0, 10), (2, 3)]).await;
    let lag = group_lag(&pool, &group, &options).await.unwrap();
    for (tp, p) in &lag.partitions {
        assert!(p.error.is_none(), "{tp}: {p:?}");
        assert_eq!(
            (p.lag.records, p.lag.time),
            (Some(0), Some(Duration::ZERO)),
            "{tp}: {p:?}"
        );
    }
    assert_eq!(
        (lag.total_records(), lag.max_time()),
        (0, Some(Duration::ZERO))
    );
}

/// Three groups in one call: two committed at different offsets of the same partition (the
/// probe reads the record at each), one committed nothing. A partition that does not exist,
/// asked for every group, has its own error and leaves the others' answers intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_groups_in_one_call_each_partition_with_its_own_outcome() {
    let (pool, topic) = topic(Kafka::single(), "lag", 1).await;
    let t0 = now_ms() - 30_000;
    assert_eq!(produce(&pool, &topic, 0, 10, t0).await, 0);
    let tp = TopicPartition::new(&topic, 0);
    let missing = TopicPartition::new(&topic, 5);
    let (g1, g2, g3) = (unique_name("g1"), unique_name("g2"), unique_name("g3"));
    commit(&pool, &g1, &topic, &[(0, 2)]).await;
    commit(&pool, &g2, &topic, &[(0, 7)]).await;

    let options = LagOptions {
        isolation: IsolationLevel::ReadUncommitted,
        include: BTreeSet::from([missing.clone()]),
    };
    let groups = [g1.clone(), g2.clone(), g3.clone()];
    let all = groups_lag(&pool, &groups, &options).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    let of = |g: &str| -> BTreeMap<TopicPartition, PartitionLag> {
        all[g].as_ref().expect("the group's lag").partitions.clone()
    };
    let at = all[&g1].as_ref().unwrap().measured_at_ms;
    for (group, committed, ts) in [(&g1, 2, t0 + 2), (&g2, 7, t0 + 7)] {
        let p = &of(group)[&tp];
        assert!(p.error.is_none(), "{group}: {p:?}");
        assert_eq!((p.committed, p.log_end), (Some(committed), Some(10)));
        assert_eq!(p.lag.records, Some(10 - committed), "{group}");
        assert_eq!(p.lag.time, Some(age(at, ts)), "{group}: record {committed}");
    }
    // The group that committed nothing has only the partition asked for every group.
    assert_eq!(of(&g3).keys().collect::<Vec<_>>(), [&missing]);
    for group in &groups {
        let p = &of(group)[&missing];
        let e = p
            .error
            .as_ref()
            .expect("an error for a partition that does not exist");
        assert_eq!(
            e.code(),
            Some(ResponseError::UnknownTopicOrPartition),
            "{e}"
        );
        assert_eq!(e.topic_partition(), Some(&missing), "{e}");
        assert!(e.is_retriable(), "{e}");
        assert_eq!((p.log_end, p.lag.records), (None, None));
    }
    // One group alone gives what the call for several gave it.
    let alone = group_lag(&pool, &g2, &LagOptions::default()).await.unwrap();
    assert_eq!(alone.partitions.keys().collect::<Vec<_>>(), [&tp]);
    assert_eq!(alone.partitions[&tp].lag.records, Some(3));
}

/// The log end is where ListOffsets latest and the Fetch high watermark agree, the end of the
/// last batch, not its start; the start is the log start; an empty partition is (0, 0). A
/// group that never committed has no partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_end_is_where_list_offsets_and_the_fetch_high_watermark_agree() {
    let (pool, topic) = topic(Kafka::single(), "lag", 2).await;
    let t0 = now_ms();
    assert_eq!(produce(&pool, &topic, 0, 8, t0).await, 0);
    assert_eq!(produce(&pool, &topic, 0, 4, t0).await, 8);
    let hwm = fetch_high_watermark(&pool, &topic, 0).await;
    assert_eq!(hwm, 12);
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let latest: BTreeMap<_, _> = [(p0.clone(), OffsetSpec::Latest)].into();
    let listed = list_offsets(&pool, &latest, IsolationLevel::ReadUncommitted)
        .await
        .unwrap();
    assert_eq!(
        (listed[&p0].error_code, listed[&p0].offset),
        (0, hwm),
        "{listed:?}"
    );

    let ranges = log_ranges(
        &pool,
        &BTreeSet::from([p0.clone(), p1.clone()]),
        IsolationLevel::ReadUncommitted,
    )
    .await
    .unwrap();
    let r0 = ranges[&p0].as_ref().unwrap();
    assert_eq!((r0.start, r0.end), (0, hwm));
    let r1 = ranges[&p1].as_ref().unwrap();
    assert_eq!((r1.start, r1.end), (0, 0), "an empty partition");
    // A group that never committed: FindCoordinator and OffsetFetch answer, with no partitions.
    let none = group_lag(&pool, &unique_name("nobody"), &LagOptions::default())
        .await
        .unwrap();
    assert!(none.partitions.is_empty(), "{none:?}");
}

/// A reset planned and committed from outside the group: each target within the log, the
/// group's committed offset beside it, the commit taken; a shift needs a committed offset; a
/// group that does not exist yet is planned for, and the commit makes it. A commit for a
/// partition the topic does not have is refused for that partition alone
/// (UNKNOWN_TOPIC_OR_PARTITION).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_planned_within_the_log_and_committed_from_outside_the_group() {
    use kcon_admin::{
        Error, ResetTo, commit_offsets, describe_group_lag, execute_reset, plan_reset,
    };

    let (pool, topic) = topic(Kafka::single(), "reset", 1).await;
    for _ in 0..3 {
        produce(&pool, &topic, 0, 10, 1_000).await;
    }
    let tp = TopicPartition::new(&topic, 0);
    let tps = BTreeSet::from([tp.clone()]);
    let group = unique_name("g");

    let fresh = describe_group_lag(&pool, &group, IsolationLevel::ReadUncommitted)
        .await
        .unwrap();
    assert!(!fresh.exists(), "no members, no offsets: {fresh:?}");
    let e = plan_reset(&pool, &group, &tps, ResetTo::ShiftBy(-1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::NoCommittedOffset(ref p) if *p == tp),
        "{e:?}"
    );

    let new = |to| {
        let (pool, group, tps, tp) = (pool.clone(), group.clone(), tps.clone(), tp.clone());
        async move {
            let plan = plan_reset(&pool, &group, &tps, to).await.unwrap();
            (plan.partitions[&tp].current, plan.partitions[&tp].new)
        }
    };
    assert_eq!(
        new(ResetTo::Latest).await,
        (None, 30),
        "the true end of the log"
    );
    assert_eq!(new(ResetTo::Earliest).await, (None, 0));
    assert_eq!(
        new(ResetTo::Offset(999)).await,
        (None, 30),
        "kept within the log"
    );

    let plan = plan_reset(&pool, &group, &tps, ResetTo::Offset(12))
        .await
        .unwrap();
    execute_reset(&pool, &plan).await.unwrap();
    let described = describe_group_lag(&pool, &group, IsolationLevel::ReadUncommitted)
        .await
        .unwrap();
    assert!(described.exists());
    assert!(described.description.members.is_empty());
    assert!(described.owner(&tp).is_none());
    assert_eq!(described.lag.partitions[&tp].committed, Some(12));
    assert_eq!(new(ResetTo::ShiftBy(-5)).await, (Some(12), 7));
    assert_eq!(new(ResetTo::ShiftBy(100)).await, (Some(12), 30));

    // Each partition has its own outcome.
    let missing = TopicPartition::new(&topic, 9);
    let outcomes = commit_offsets(
        &pool,
        &group,
        &BTreeMap::from([(tp.clone(), 20), (missing.clone(), 1)]),
    )
    .await
    .unwrap();
    assert!(outcomes[&tp].is_ok(), "{outcomes:?}");
    let refused = outcomes[&missing].as_ref().unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{refused}"
    );
    let lag = group_lag(&pool, &group, &LagOptions::default())
        .await
        .unwrap();
    assert_eq!(lag.partitions[&tp].committed, Some(20));
    assert!(!lag.partitions.contains_key(&missing), "{lag:?}");
}
