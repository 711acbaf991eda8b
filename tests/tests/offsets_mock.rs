//! kcon-offsets against librdkafka's mock cluster (3 brokers): commits read back with metadata
//! and leader epoch, live and stale generations of a kcon group member, ListOffsets, and
//! errors pushed for OffsetCommit and OffsetFetch.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_admin::{self as admin, Error as AdminError, list_offsets};
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_offsets::{CommitError, CommittedError, Offsets};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    Member, REBALANCE_WITHIN, group_config, partitions, wait_for_exactly_once,
};
use kcon_tests::mock::{CoordinatorType, MockCluster};
use kcon_tests::offsets::{commit_map, keys, now_ms, offsets_config, produce};
use kcon_tests::pool::config;

const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const NOT_COORDINATOR: i16 = 16;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn mock_with_topic(partitions: i32) -> (MockCluster, Pool, String) {
    let mock = MockCluster::start(3);
    mock.set_group_initial_rebalance_delay(Duration::from_millis(200));
    let topic = unique_name("offsets-topic");
    mock.create_topic(&topic, partitions, 3);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    (mock, pool, topic)
}

/// Committed offsets read back with their metadata and leader epoch (OffsetFetch v5+).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reads_back_with_metadata_and_leader_epoch() {
    let (_mock, pool, topic) = mock_with_topic(2);
    // The mock checks a committed leader epoch against the partition's (UNKNOWN_LEADER_EPOCH
    // for one from the future), so commit the one the metadata names.
    let epoch = pool
        .refresh_metadata(kcon_pool::TopicScope::topics([topic.clone()]))
        .await
        .unwrap()
        .partition(&topic, 0)
        .and_then(|p| p.leader_epoch);
    assert!(epoch.is_some(), "Metadata v7+ names leader epochs");
    let offsets = Offsets::start(pool, offsets_config(&unique_name("g"), &[])).unwrap();
    let want = commit_map(&[
        (&topic, 0, 42, epoch, "processed"),
        (&topic, 1, 7, None, "second"),
    ]);
    assert_eq!(offsets.commit_sync(Some(want.clone())).await.unwrap(), want);
    let got = offsets.committed(Some(keys(&want))).await.unwrap();
    let p0 = TopicPartition::new(&topic, 0);
    assert_eq!(got[&p0].as_ref(), Some(&want[&p0]));
    // A commit without a leader epoch reads back with the partition's current one on the mock
    // (measured); offset and metadata are what was committed.
    let p1 = got[&TopicPartition::new(&topic, 1)]
        .as_ref()
        .expect("an offset");
    assert_eq!((p1.offset, p1.metadata.as_str()), (7, "second"));
}

/// OffsetCommit errors pushed on the mock: REBALANCE_IN_PROGRESS fails the commit and the
/// stored offsets go with the next one; NOT_COORDINATOR rediscovers and retries;
/// COORDINATOR_LOAD_IN_PROGRESS retries; UNKNOWN_MEMBER_ID, OFFSET_METADATA_TOO_LARGE and
/// GROUP_AUTHORIZATION_FAILED fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_commit_errors() {
    let (mock, pool, topic) = mock_with_topic(1);
    let offsets = Offsets::start(pool, offsets_config(&unique_name("g"), &[])).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    offsets.store_offset(tp.clone(), 4, None);
    // Warm up: find the coordinator.
    offsets.commit_sync(None).await.unwrap();

    offsets.store_offset(tp.clone(), 9, None);
    mock.push_request_errors(ApiKey::OffsetCommit, &[REBALANCE_IN_PROGRESS]);
    assert_eq!(
        offsets.commit_sync(None).await,
        Err(CommitError::RebalanceInProgress)
    );
    let acked = offsets.commit_sync(None).await.unwrap();
    assert_eq!(
        acked[&tp].offset, 10,
        "the stored offset went with the next commit"
    );

    mock.start_request_tracking();
    mock.push_request_errors(ApiKey::OffsetCommit, &[NOT_COORDINATOR]);
    offsets.store_offset(tp.clone(), 11, None);
    assert_eq!(offsets.commit_sync(None).await.unwrap()[&tp].offset, 12);
    let apis: Vec<_> = mock.requests().iter().filter_map(|r| r.api()).collect();
    let find = apis.iter().position(|a| *a == ApiKey::FindCoordinator);
    assert!(
        find.is_some(),
        "no FindCoordinator after NOT_COORDINATOR: {apis:?}"
    );
    assert_eq!(
        apis.iter().filter(|a| **a == ApiKey::OffsetCommit).count(),
        2,
        "{apis:?}"
    );

    mock.push_request_errors(
        ApiKey::OffsetCommit,
        &[COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_LOAD_IN_PROGRESS],
    );
    offsets.store_offset(tp.clone(), 12, None);
    assert_eq!(offsets.commit_sync(None).await.unwrap()[&tp].offset, 13);

    for code in [
        UNKNOWN_MEMBER_ID,
        OFFSET_METADATA_TOO_LARGE,
        GROUP_AUTHORIZATION_FAILED,
    ] {
        mock.push_request_errors(ApiKey::OffsetCommit, &[code]);
        let e = offsets.commit_sync(None).await.unwrap_err();
        assert!(
            matches!(&e, CommitError::Broker { error_code, .. } if *error_code == code),
            "{code}: {e:?}"
        );
    }
    let got = offsets.committed(Some([tp.clone()].into())).await.unwrap();
    assert_eq!(got[&tp].as_ref().map(|o| o.offset), Some(13));
}

/// OffsetFetch errors pushed on the mock: COORDINATOR_LOAD_IN_PROGRESS and NOT_COORDINATOR
/// are retried; UNSTABLE_OFFSET_COMMIT (KIP-447) is retried under read_committed;
/// GROUP_AUTHORIZATION_FAILED fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_fetch_errors() {
    let (mock, pool, topic) = mock_with_topic(1);
    let offsets = Offsets::start(
        pool,
        offsets_config(&unique_name("g"), &[("isolation.level", "read_committed")]),
    )
    .unwrap();
    let tp = TopicPartition::new(&topic, 0);
    offsets
        .commit_sync(Some(commit_map(&[(&topic, 0, 5, None, "")])))
        .await
        .unwrap();
    let asked = || Some([tp.clone()].into());
    for codes in [
        &[COORDINATOR_LOAD_IN_PROGRESS][..],
        &[NOT_COORDINATOR],
        &[UNSTABLE_OFFSET_COMMIT, UNSTABLE_OFFSET_COMMIT],
    ] {
        mock.push_request_errors(ApiKey::OffsetFetch, codes);
        let got = offsets
            .committed(asked())
            .await
            .unwrap_or_else(|e| panic!("{codes:?}: {e}"));
        assert_eq!(got[&tp].as_ref().map(|o| o.offset), Some(5), "{codes:?}");
    }
    mock.push_request_errors(ApiKey::OffsetFetch, &[GROUP_AUTHORIZATION_FAILED]);
    let e = offsets.committed(asked()).await.unwrap_err();
    assert!(
        matches!(
            e,
            CommittedError::Broker {
                error_code: GROUP_AUTHORIZATION_FAILED,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A kcon group member's live generation commits; a stale one is refused with
/// ILLEGAL_GENERATION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_generation_commits_and_stale_generation_is_refused() {
    let (mock, pool, topic) = mock_with_topic(2);
    let group = unique_name("g");
    let member = Member::start(
        "a",
        mock.bootstrap(),
        group_config(&group, "range", &[]),
        &[&topic],
    );
    wait_for_exactly_once(&[&member], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    let generation = member.snapshot().generation;
    let offsets = Offsets::start(pool, offsets_config(&group, &[])).unwrap();
    offsets.set_generation(generation.id, generation.member_id.clone());
    let map = commit_map(&[(&topic, 1, 3, None, "")]);
    offsets.commit_sync(Some(map.clone())).await.unwrap();
    offsets.set_generation(generation.id + 1, generation.member_id);
    let e = offsets.commit_sync(Some(map)).await.unwrap_err();
    assert!(
        matches!(
            &e,
            CommitError::Broker {
                error_code: ILLEGAL_GENERATION,
                ..
            }
        ),
        "{e:?}"
    );
    let log = member.close().await;
    assert!(log.fatal.is_none(), "{log:?}");
}

/// ListOffsets earliest and latest after producing; by timestamp is answered by the mock
/// with an offset we only check for being a valid one (the mock does not implement timestamp
/// lookup, see DESIGN.md, "The brokers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_and_latest() {
    let (_mock, pool, topic) = mock_with_topic(2);
    let t0 = now_ms() - 60_000;
    assert_eq!(produce(&pool, &topic, 0, 10, t0).await, 0);
    assert_eq!(produce(&pool, &topic, 0, 5, t0 + 100).await, 10);
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let query = |spec| -> BTreeMap<_, _> { [(p0.clone(), spec), (p1.clone(), spec)].into() };
    for isolation in [
        IsolationLevel::ReadUncommitted,
        IsolationLevel::ReadCommitted,
    ] {
        let got = list_offsets(&pool, &query(OffsetSpec::Earliest), isolation)
            .await
            .unwrap();
        assert_eq!((got[&p0].error_code, got[&p0].offset), (0, 0), "{got:?}");
        let got = list_offsets(&pool, &query(OffsetSpec::Latest), isolation)
            .await
            .unwrap();
        assert_eq!((got[&p0].error_code, got[&p0].offset), (0, 15), "{got:?}");
        assert_eq!((got[&p1].error_code, got[&p1].offset), (0, 0), "{got:?}");
    }
}

/// Offsets that follow a kcon group member commit with its generation as soon as it has one,
/// without being told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_follow_a_group_members_generation() {
    let (mock, pool, topic) = mock_with_topic(2);
    let group = unique_name("g");
    let member_pool = Pool::new(config(mock.bootstrap())).unwrap();
    let member =
        kcon_group::GroupMember::start(member_pool, group_config(&group, "range", &[])).unwrap();
    member.subscribe([topic.clone()]);
    let offsets = Offsets::start(pool, offsets_config(&group, &[])).unwrap();
    offsets.follow(member.membership());
    let deadline = std::time::Instant::now() + REBALANCE_WITHIN;
    while member.snapshot().state != kcon_group::MemberState::Stable {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            member.snapshot()
        );
        member.poll();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A commit with generation -1 is refused by a group that has members, so the commit
    // succeeding shows the generation was followed.
    let outsider = Offsets::start(
        Pool::new(config(mock.bootstrap())).unwrap(),
        offsets_config(&group, &[]),
    )
    .unwrap();
    let refused = outsider
        .commit_sync(Some(commit_map(&[(&topic, 0, 1, None, "")])))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let acked = offsets
        .commit_sync(Some(commit_map(&[(&topic, 0, 1, None, "")])))
        .await
        .unwrap();
    assert_eq!(acked.len(), 1);
    member.close(Duration::from_secs(5)).await;
}

/// The committed offsets of several groups in one call where the coordinators speak only
/// OffsetFetch v6 (the mock): one request per group, each to its own coordinator (two groups
/// share broker 1, the third is on broker 2), giving what each group's own fetch gives; an
/// error pushed for the first request fails that group only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_of_several_groups_fall_back_to_one_request_per_group() {
    let (mock, pool, topic) = mock_with_topic(2);
    let groups = [unique_name("g1"), unique_name("g2"), unique_name("g3")];
    for (group, coordinator) in groups.iter().zip([1, 1, 2]) {
        mock.set_coordinator(CoordinatorType::Group, group, coordinator);
    }
    let commits = [
        commit_map(&[(&topic, 0, 42, None, "first"), (&topic, 1, 7, None, "")]),
        commit_map(&[(&topic, 0, 3, None, "second")]),
        commit_map(&[(&topic, 1, 11, None, "third")]),
    ];
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let asked = BTreeSet::from([p0.clone(), p1.clone()]);
    let mut single = BTreeMap::new();
    for (group, offsets) in groups.iter().zip(&commits) {
        let o = Offsets::start(pool.clone(), offsets_config(group, &[])).unwrap();
        o.commit_sync(Some(offsets.clone())).await.unwrap();
        single.insert(
            group.clone(),
            o.committed(Some(asked.clone())).await.unwrap(),
        );
        o.close(Duration::from_secs(5)).await;
    }
    assert_eq!(single[&groups[0]][&p0].as_ref().map(|o| o.offset), Some(42));
    assert_eq!(single[&groups[1]][&p1], None);

    mock.start_request_tracking();
    let got = admin::committed_offsets_of_groups(&pool, &groups, Some(&asked), true)
        .await
        .unwrap();
    let fetches: Vec<_> = mock
        .requests()
        .iter()
        .filter(|r| r.api() == Some(ApiKey::OffsetFetch))
        .map(|r| r.broker_id)
        .collect();
    assert_eq!(
        fetches,
        [1, 1, 2],
        "one request per group, to its coordinator"
    );
    let as_single = |r: &admin::GroupOffsets| -> BTreeMap<_, _> {
        r.as_ref()
            .expect("the group's offsets")
            .iter()
            .map(|(tp, p)| {
                assert_eq!(p.error_code, 0, "{p:?}");
                (tp.clone(), p.committed.clone())
            })
            .collect()
    };
    for group in &groups {
        assert_eq!(as_single(&got[group]), single[group], "{group}");
    }

    // A group-level error for the first request (the first group's) fails that group only.
    mock.push_request_errors(ApiKey::OffsetFetch, &[GROUP_AUTHORIZATION_FAILED]);
    let got = admin::committed_offsets_of_groups(&pool, &groups, Some(&asked), false)
        .await
        .unwrap();
    assert!(
        matches!(
            got[&groups[0]],
            Err(AdminError::Broker {
                error: ResponseError::GroupAuthorizationFailed,
                ..
            })
        ),
        "{got:?}"
    );
    for group in &groups[1..] {
        assert_eq!(as_single(&got[group]), single[group], "{group}");
    }
}
