//! kcon-admin's lag against Tansu: a group that committed part of a topic lags by the records
//! it did not read and by the age of the first of them; caught up is zero in both; several
//! groups in one call; an error on one partition leaves the others' answers intact; the log
//! end is the Fetch high watermark where Tansu's ListOffsets latest lags behind it; a reset is
//! planned within the log and committed from outside the group.
//!
//! Tansu answers ListOffsets latest with the last batch's base offset + 1, so these tests
//! produce batches of several records on purpose and check the end against the high watermark
//! of a Fetch of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_admin::{LagOptions, PartitionLag, group_lag, groups_lag, list_offsets, log_ranges};
use kcon_codec::kafka_protocol::ResponseError;
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_offsets::Offsets;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::create_topics;
use kcon_tests::offsets::{commit_map, fetch_high_watermark, now_ms, offsets_config, produce};
use kcon_tests::pool::config;

async fn tansu_with_topic(partitions: i32) -> (Tansu, Pool, String) {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let topic = unique_name("admin-topic");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, partitions)]).await;
    (tansu, pool, topic)
}

/// Commits `offsets` (partition, offset) of `topic` for `group` from outside any generation,
/// as a tool resetting offsets does.
async fn commit(pool: &Pool, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let o = Offsets::start(pool.clone(), offsets_config(group, &[])).unwrap();
    let map: Vec<_> = offsets
        .iter()
        .map(|&(p, offset)| (topic, p, offset, None, ""))
        .collect();
    o.commit_sync(Some(commit_map(&map))).await.unwrap();
    o.close(Duration::from_secs(5)).await;
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
    let (_tansu, pool, topic) = tansu_with_topic(3).await;
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
    let (_tansu, pool, topic) = tansu_with_topic(1).await;
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

/// Where Tansu's ListOffsets latest is behind (the last batch's base offset + 1), the log end
/// is the Fetch high watermark; the start is the log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_end_is_the_larger_of_list_offsets_and_the_fetch_high_watermark() {
    let (_tansu, pool, topic) = tansu_with_topic(2).await;
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
    assert_eq!(listed[&p0].error_code, 0);
    assert!(listed[&p0].offset <= hwm, "{listed:?}");

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

/// A reset planned and committed from outside the group: each target within the log (the end
/// is the Fetch high watermark where Tansu's ListOffsets latest lags behind it), the group's
/// committed offset beside it, the commit taken; a shift needs a committed offset; a group
/// that does not exist yet is planned for, and the commit makes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_planned_within_the_log_and_committed_from_outside_the_group() {
    use kcon_admin::{
        Error, ResetTo, commit_offsets, describe_group_lag, execute_reset, plan_reset,
    };

    let (_tansu, pool, topic) = tansu_with_topic(1).await;
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

    // Each partition has its own outcome. Tansu takes an offset even for a partition that
    // does not exist (Kafka answers UNKNOWN_TOPIC_OR_PARTITION for it).
    let missing = TopicPartition::new(&topic, 9);
    let outcomes = commit_offsets(
        &pool,
        &group,
        &BTreeMap::from([(tp.clone(), 20), (missing.clone(), 1)]),
    )
    .await
    .unwrap();
    assert!(outcomes[&tp].is_ok(), "{outcomes:?}");
    assert!(outcomes.contains_key(&missing), "{outcomes:?}");
    let lag = group_lag(&pool, &group, &LagOptions::default())
        .await
        .unwrap();
    assert_eq!(lag.partitions[&tp].committed, Some(20));
}
