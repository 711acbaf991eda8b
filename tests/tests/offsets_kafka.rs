//! kcon-offsets on Apache Kafka 4.4 (`Kafka::single()`): commits read back with their metadata
//! and leader epoch, commits with a live and a stale generation of a kcon group member (the
//! group then described, listed, and its offsets refused deletion while the member is
//! subscribed), inactive-group commits, async and auto commits, ListOffsets (earliest, latest,
//! timestamps, max timestamp) against the Fetch high watermark, and the committed offsets of
//! several groups in one OffsetFetch.
//!
//! Every topic and group is `unique_name`'s: the broker is shared by the whole run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon_admin::{self as admin, ResponseError, list_offsets};
use kcon_codec::consumer_protocol::Assignment;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_core::offsets::{Watermarks, record_lag};
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_offsets::{CommitError, OffsetAndMetadata, Offsets, OffsetsConfig};
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    Member, REBALANCE_WITHIN, group_config_at_defaults, partitions, wait_for_exactly_once,
};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{commit_map, fetch_high_watermark, keys, now_ms, produce};
use kcon_tests::pool::config;

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;

async fn kafka_with_topic(partitions: i32) -> (Pool, String) {
    let pool = Pool::new(config(Kafka::single().bootstrap())).unwrap();
    let topic = unique_name("offsets-topic");
    create_topics(&pool, &[(&topic, partitions)]).await;
    (pool, topic)
}

/// `group`'s offsets at the client's defaults, but with auto-commit off: these tests commit
/// explicitly, unless `extra` says otherwise.
fn offsets_config(group: &str, extra: &[(&str, &str)]) -> OffsetsConfig {
    let mut c = OffsetsConfig::new(group);
    for (k, v) in [("enable.auto.commit", "false")].iter().chain(extra) {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// Offsets committed from outside the group (generation -1, empty member id: what a tool
/// resetting offsets sends) read back whole, metadata and leader epoch included; a partition
/// without a commit reads back as none; fetching all of the group's offsets finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_group_commit_reads_back() {
    let (pool, topic) = kafka_with_topic(3).await;
    let offsets = Offsets::start(pool, offsets_config(&unique_name("g"), &[])).unwrap();
    let want = commit_map(&[
        (&topic, 0, 42, Some(0), "processed by test"),
        (&topic, 1, 7, None, ""),
    ]);
    let acked = offsets.commit_sync(Some(want.clone())).await.unwrap();
    assert_eq!(acked, want);

    let mut asked = keys(&want);
    asked.insert(TopicPartition::new(&topic, 2));
    let got = offsets.committed(Some(asked)).await.unwrap();
    for (tp, o) in &want {
        assert_eq!(got[tp].as_ref(), Some(o), "{tp}: {got:?}");
    }
    assert_eq!(got[&TopicPartition::new(&topic, 2)], None);

    let all = offsets.committed(None).await.unwrap();
    let all: BTreeMap<_, _> = all
        .into_iter()
        .filter_map(|(tp, o)| Some((tp, o?)))
        .collect();
    assert_eq!(all, want, "the group has these offsets and no others");
    offsets.close(Duration::from_secs(5)).await;
}

/// A kcon group member's live generation commits; a stale generation is refused with
/// ILLEGAL_GENERATION and an unknown member id with UNKNOWN_MEMBER_ID, and neither changes
/// the committed offset. The group as a tool sees it: not a consumer-protocol group
/// (ConsumerGroupDescribe answers GROUP_ID_NOT_FOUND), described by DescribeGroups with its one
/// member, its client id and host, and its assignment, listed by ListGroups; and its offsets
/// are not deleted while the member is subscribed to the topic (GROUP_SUBSCRIBED_TO_TOPIC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_generation_commits_and_stale_generation_is_refused() {
    let (pool, topic) = kafka_with_topic(2).await;
    let group = unique_name("g");
    let member = Member::start(
        "a",
        Kafka::single().bootstrap(),
        group_config_at_defaults(&group, "range", &[]),
        &[&topic],
    );
    wait_for_exactly_once(&[&member], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    let snapshot = member.snapshot();
    let generation = snapshot.generation.clone();
    assert!(generation.is_valid(), "{snapshot:?}");

    let offsets = Offsets::start(pool.clone(), offsets_config(&group, &[])).unwrap();
    offsets.set_coordinator(snapshot.coordinator.clone());
    offsets.set_generation(generation.id, generation.member_id.clone());
    let tp = TopicPartition::new(&topic, 0);
    offsets.store_offset(tp.clone(), 9, Some(0));
    let acked = offsets.commit_sync(None).await.unwrap();
    let committed = OffsetAndMetadata {
        offset: 10,
        leader_epoch: Some(0),
        metadata: String::new(),
    };
    assert_eq!(acked[&tp], committed);

    offsets.set_generation(generation.id + 1, generation.member_id.clone());
    let e = offsets
        .commit_sync(Some(commit_map(&[(&topic, 0, 99, None, "")])))
        .await
        .unwrap_err();
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
    assert!(e.is_generation_lost());

    offsets.set_generation(generation.id, "not-a-member");
    let e = offsets
        .commit_sync(Some(commit_map(&[(&topic, 0, 99, None, "")])))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            CommitError::Broker {
                error_code: UNKNOWN_MEMBER_ID,
                ..
            }
        ),
        "{e:?}"
    );

    let got = offsets.committed(Some([tp.clone()].into())).await.unwrap();
    assert_eq!(got[&tp].as_ref(), Some(&committed));
    offsets.close(Duration::from_secs(5)).await;

    // Kafka answers ConsumerGroupDescribe for a classic group with GROUP_ID_NOT_FOUND.
    let consumer_protocol = admin::describe_consumer_group(&pool, &group).await.unwrap();
    assert_eq!(consumer_protocol, None);
    let described = admin::describe_group(&pool, &group).await.unwrap();
    assert_eq!(described.error_code, 0, "{described:?}");
    assert_eq!(
        (
            described.protocol_type.as_str(),
            described.protocol.as_str(),
            described.state.as_str()
        ),
        ("consumer", "range", "Stable"),
        "{described:?}"
    );
    let ids: Vec<_> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, [generation.member_id.as_str()]);
    let m = &described.members[0];
    assert_eq!(
        (
            m.client_id.as_str(),
            m.client_host.as_str(),
            &m.group_instance_id
        ),
        ("kcon", "/127.0.0.1", &None),
        "client.id at its default, from this host, not static: {m:?}"
    );
    let assigned = Assignment::decode(&described.members[0].assignment).unwrap();
    let mut assigned = assigned.partitions;
    assigned.sort();
    assert_eq!(
        assigned,
        [
            TopicPartition::new(&topic, 0),
            TopicPartition::new(&topic, 1)
        ]
    );
    let listed = admin::list_groups(&pool).await.unwrap();
    let listed = listed
        .iter()
        .find(|g| g.group_id == group)
        .unwrap_or_else(|| panic!("{group} not listed: {listed:?}"));
    assert_eq!(
        (listed.protocol_type.as_str(), listed.state.as_deref()),
        ("consumer", Some("Stable")),
        "{listed:?}"
    );
    // The member is subscribed to the topic: its offsets there stay.
    let deleted = admin::delete_offsets(&pool, &group, std::slice::from_ref(&tp))
        .await
        .unwrap();
    let e = deleted[&tp].as_ref().unwrap_err();
    assert!(
        matches!(
            e,
            admin::Error::Broker {
                error: ResponseError::GroupSubscribedToTopic,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("GROUP_SUBSCRIBED_TO_TOPIC"), "{e}");

    let log = member.close().await;
    assert!(log.fatal.is_none(), "{log:?}");
}

/// Async commits in a row complete in order, each acknowledged or superseded by a later one;
/// the last one's offsets are what the group has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commits_complete_in_order_and_the_last_wins() {
    let (pool, topic) = kafka_with_topic(1).await;
    let offsets = Offsets::start(pool, offsets_config(&unique_name("g"), &[])).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    let mut pending = Vec::new();
    for offset in 0..20 {
        offsets.store_offset(tp.clone(), offset, None);
        pending.push(offsets.commit_async(None));
    }
    let mut acked = Vec::new();
    for rx in pending {
        match rx.await.expect("an outcome") {
            Ok(m) => acked.push(m[&tp].offset),
            Err(CommitError::Superseded { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "{acked:?}");
    assert_eq!(acked.last(), Some(&20));
    let got = offsets.committed(Some([tp.clone()].into())).await.unwrap();
    assert_eq!(got[&tp].as_ref().map(|o| o.offset), Some(20));
    offsets.close(Duration::from_secs(5)).await;
}

/// enable.auto.commit commits stored offsets every interval, and close commits what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_and_the_final_commit_on_close() {
    let (pool, topic) = kafka_with_topic(1).await;
    let group = unique_name("g");
    let cfg = offsets_config(
        &group,
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "200"),
        ],
    );
    let offsets = Offsets::start(pool.clone(), cfg).unwrap();
    let tp = TopicPartition::new(&topic, 0);
    offsets.store_offset(tp.clone(), 4, None);
    let reader = Offsets::start(pool, offsets_config(&group, &[])).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = reader.committed(Some([tp.clone()].into())).await.unwrap();
        if got[&tp].as_ref().map(|o| o.offset) == Some(5) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "auto-commit did not commit: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    offsets.store_offset(tp.clone(), 8, None);
    offsets.close(Duration::from_secs(5)).await;
    let got = reader.committed(Some([tp.clone()].into())).await.unwrap();
    assert_eq!(got[&tp].as_ref().map(|o| o.offset), Some(9));
    reader.close(Duration::from_secs(5)).await;
}

/// ListOffsets under both isolation levels: earliest is the log start, latest the log end (the
/// Fetch high watermark; with no transaction the last stable offset is the same), a timestamp
/// the first record at or after it (none past the last), the max timestamp the record that
/// has it. Lag from a committed offset is the high watermark minus it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_against_the_fetch_high_watermark() {
    let (pool, topic) = kafka_with_topic(2).await;
    let t0 = now_ms() - 60_000;
    assert_eq!(produce(&pool, &topic, 0, 10, t0).await, 0);
    assert_eq!(produce(&pool, &topic, 0, 5, t0 + 100).await, 10);
    let hwm = fetch_high_watermark(&pool, &topic, 0).await;
    assert_eq!(hwm, 15);

    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    for isolation in [
        IsolationLevel::ReadUncommitted,
        IsolationLevel::ReadCommitted,
    ] {
        let earliest: BTreeMap<_, _> = [
            (p0.clone(), OffsetSpec::Earliest),
            (p1.clone(), OffsetSpec::Earliest),
        ]
        .into();
        let got = list_offsets(&pool, &earliest, isolation).await.unwrap();
        assert_eq!((got[&p0].error_code, got[&p0].offset), (0, 0), "{got:?}");
        assert_eq!((got[&p1].error_code, got[&p1].offset), (0, 0), "{got:?}");
        let latest: BTreeMap<_, _> = [
            (p0.clone(), OffsetSpec::Latest),
            (p1.clone(), OffsetSpec::Latest),
        ]
        .into();
        let got = list_offsets(&pool, &latest, isolation).await.unwrap();
        assert_eq!((got[&p0].error_code, got[&p0].offset), (0, hwm), "{got:?}");
        assert_eq!(
            (got[&p1].error_code, got[&p1].offset),
            (0, 0),
            "an empty partition ends at 0"
        );
        // Timestamps: records 0..10 have t0..t0+9, records 10..15 have t0+100..t0+104.
        for (spec, offset, timestamp) in [
            (OffsetSpec::Timestamp(t0), 0, t0),
            (OffsetSpec::Timestamp(t0 + 5), 5, t0 + 5),
            (OffsetSpec::Timestamp(t0 + 50), 10, t0 + 100),
            (OffsetSpec::Timestamp(t0 + 104), 14, t0 + 104),
            (OffsetSpec::Timestamp(t0 + 105), -1, -1),
            (OffsetSpec::MaxTimestamp, 14, t0 + 104),
        ] {
            let got = list_offsets(&pool, &[(p0.clone(), spec)].into(), isolation)
                .await
                .unwrap();
            assert_eq!(
                (got[&p0].error_code, got[&p0].offset, got[&p0].timestamp),
                (0, offset, timestamp),
                "{spec:?} {isolation:?}: {got:?}"
            );
        }
    }
    let w = Watermarks {
        log_start: 0,
        high_watermark: hwm,
        last_stable: None,
    };
    assert_eq!(record_lag(6, &w, IsolationLevel::ReadUncommitted), Some(9));
    let marks = admin::watermarks(&pool, &BTreeSet::from([p0.clone(), p1.clone()]))
        .await
        .unwrap();
    assert_eq!((marks[&p0].log_start, marks[&p0].high_watermark), (0, hwm));
    assert_eq!((marks[&p1].log_start, marks[&p1].high_watermark), (0, 0));
}

/// The committed offsets of two groups (inactive-group commits) read back in one call
/// (OffsetFetch v8+: both groups in one request to their coordinator), for asked partitions and
/// for all of each group's; a group with no commits reads back as none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_of_several_groups_in_one_call() {
    let (pool, topic) = kafka_with_topic(2).await;
    let v = pool.connection(BrokerTarget::Any).await.unwrap();
    let version = v.version(ApiKey::OffsetFetch).unwrap();
    assert!(
        version >= 8,
        "OffsetFetch v{version} has one group a request"
    );
    let (g1, g2, g3) = (unique_name("g1"), unique_name("g2"), unique_name("g3"));
    let want = [
        (
            &g1,
            commit_map(&[(&topic, 0, 42, None, ""), (&topic, 1, 7, None, "")]),
        ),
        (&g2, commit_map(&[(&topic, 0, 3, None, "")])),
    ];
    for (group, offsets) in &want {
        let o = Offsets::start(pool.clone(), offsets_config(group, &[])).unwrap();
        o.commit_sync(Some(offsets.clone())).await.unwrap();
        o.close(Duration::from_secs(5)).await;
    }
    let p0 = TopicPartition::new(&topic, 0);
    let p1 = TopicPartition::new(&topic, 1);
    let groups = [g1.clone(), g2.clone(), g3.clone()];
    let asked = BTreeSet::from([p0.clone(), p1.clone()]);
    let offset = |r: &admin::GroupOffsets, tp: &TopicPartition| {
        let p = &r.as_ref().expect("the group's offsets")[tp];
        assert_eq!(p.error_code, 0, "{p:?}");
        p.committed.as_ref().map(|o| o.offset)
    };
    for require_stable in [false, true] {
        let got = admin::committed_offsets_of_groups(&pool, &groups, Some(&asked), require_stable)
            .await
            .unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(offset(&got[&g1], &p0), Some(42), "{got:?}");
        assert_eq!(offset(&got[&g1], &p1), Some(7), "{got:?}");
        assert_eq!(offset(&got[&g2], &p0), Some(3), "{got:?}");
        assert_eq!(offset(&got[&g2], &p1), None, "{got:?}");
        assert_eq!(offset(&got[&g3], &p0), None, "{got:?}");
        assert_eq!(offset(&got[&g3], &p1), None, "{got:?}");
    }
    let all = admin::committed_offsets_of_groups(&pool, &groups, None, false)
        .await
        .unwrap();
    for (group, offsets) in &want {
        let got: BTreeMap<_, _> = all[*group]
            .as_ref()
            .expect("the group's offsets")
            .iter()
            .filter_map(|(tp, p)| Some((tp.clone(), p.committed.clone()?)))
            .collect();
        assert_eq!(&got, offsets, "{group}");
    }
    let none = all[&g3].as_ref().expect("the group's offsets");
    assert!(none.is_empty(), "{none:?}");
}
