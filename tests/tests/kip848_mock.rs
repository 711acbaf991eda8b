//! The consumer group protocol (KIP-848, `group.protocol=consumer`) against librdkafka's mock
//! cluster, the one broker here that offers ConsumerGroupHeartbeat: kcon members joining and
//! leaving without stopping the others, groups mixed with librdkafka's KIP-848 consumer
//! (either side first) consuming every record, fencing pushed by the coordinator, a static
//! member restarting, a moved coordinator, a regex subscription the coordinator resolves, and
//! what the mock does differently from Kafka.
//!
//! The tests that push errors or move the coordinator get a mock of their own (a pushed error
//! goes to whichever request of the API comes next); the others share one, each with its own
//! topic and group. The mock's heartbeat interval and session timeout are lowered
//! ([`kcon_tests::kip848`]), so the suite takes seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kcon_codec::kafka_protocol::messages::{ApiKey, GroupId, TopicName};
use kcon_core::wire::str_bytes;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{Driven, builder};
use kcon_tests::group::{Member, MemberLog, Tp, partitions};
use kcon_tests::group_peers::{GroupPeer, GroupPeerConfig, PeerClient};
use kcon_tests::kip848::{
    RECONCILED_WITHIN, consumer_config, double_owned, mock, wait_for_mixed_split,
    wait_for_reconciled,
};
use kcon_tests::mock::{CoordinatorType, MockCluster};
use kcon_tests::offsets::produce;
use kcon_tests::pool::config;
use serde_json::json;
use tokio::task::block_in_place;

const PARTITIONS: i32 = 6;

/// The mock the tests without faults share.
fn shared() -> &'static MockCluster {
    static MOCK: OnceLock<MockCluster> = OnceLock::new();
    MOCK.get_or_init(mock)
}

/// A new topic of [`PARTITIONS`] partitions on `mock`, and a group name.
fn topic_and_group(mock: &MockCluster) -> (String, String) {
    let topic = unique_name("kip848");
    mock.create_topic(&topic, PARTITIONS, 3);
    (topic, unique_name("kip848-group"))
}

fn start(
    mock: &MockCluster,
    name: &str,
    group: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> Member {
    Member::start(
        name,
        mock.bootstrap(),
        consumer_config(group, extra),
        &[topic],
    )
}

/// Members present before and after a change kept consuming what they kept: nothing they
/// still own was revoked or lost in between (KIP-848: a member joining or leaving stops no one
/// else).
fn assert_not_stopped(members: &[&Member], before: &[MemberLog]) {
    for (m, before) in members.iter().zip(before) {
        let after = m.log();
        let kept: BTreeSet<&Tp> = before.owned.intersection(&after.owned).collect();
        let revoked: BTreeSet<&Tp> = after.revoked[before.revoked.len()..].iter().collect();
        assert!(
            revoked.is_disjoint(&kept),
            "{} kept {kept:?} but was revoked {revoked:?}: {after:?}",
            m.name
        );
        assert_eq!(
            after.lost, before.lost,
            "{} lost partitions: {after:?}",
            m.name
        );
        assert!(after.fatal.is_none(), "{after:?}");
    }
}

/// Three kcon members join one after another, then two leave; after each step every partition
/// is owned exactly once, and the members that stay are never revoked what they keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_without_stopping_the_others() {
    let mock = shared();
    let (topic, group) = topic_and_group(mock);
    let all = partitions(&topic, PARTITIONS);
    let a = start(mock, "a", &group, &topic, &[]);
    wait_for_reconciled(&[&a], &all, RECONCILED_WITHIN).await;

    let before = [a.log()];
    let b = start(mock, "b", &group, &topic, &[]);
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    assert_not_stopped(&[&a], &before);

    let before = [a.log(), b.log()];
    let c = start(mock, "c", &group, &topic, &[]);
    wait_for_reconciled(&[&a, &b, &c], &all, RECONCILED_WITHIN).await;
    assert_not_stopped(&[&a, &b], &before);
    for m in [&a, &b, &c] {
        assert_eq!(m.owned().len(), 2, "{}: {:?}", m.name, m.log());
    }

    let before = [b.log(), c.log()];
    let log = a.close().await;
    assert!(
        log.closed && log.owned.is_empty() && log.fatal.is_none(),
        "{log:?}"
    );
    assert!(log.lost.is_empty(), "a lost partitions leaving: {log:?}");
    wait_for_reconciled(&[&b, &c], &all, RECONCILED_WITHIN).await;
    assert_not_stopped(&[&b, &c], &before);

    let before = [c.log()];
    let log = b.close().await;
    assert!(log.closed && log.fatal.is_none(), "{log:?}");
    wait_for_reconciled(&[&c], &all, RECONCILED_WITHIN).await;
    assert_not_stopped(&[&c], &before);
    let log = c.close().await;
    assert!(log.closed, "{log:?}");
}

/// Which side joins first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Kcon,
    Librdkafka,
}

/// Two kcon consumers and two librdkafka consumers, all `group.protocol=consumer`, in one
/// group; `first` joins first, alone. Every partition is assigned exactly once, and every
/// record is consumed: the group's committed offsets reach the end of every partition, before
/// and after one member of each side leaves.
async fn mixed(first: First) {
    const RECORDS: usize = 20;
    let mock = shared();
    let (topic, group) = topic_and_group(mock);
    let all: BTreeSet<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    for p in 0..PARTITIONS {
        produce(&pool, &topic, p, RECORDS, 1).await;
    }
    let kcon = |name: &str| {
        let consumer = builder(mock.bootstrap())
            .group_id(&group)
            .set("group.protocol", "consumer")
            .set("auto.commit.interval.ms", "200")
            .set("default.api.timeout.ms", "10000")
            .build()
            .expect("a consumer");
        let mut consumer = consumer;
        consumer.subscribe([topic.as_str()]).expect("subscribed");
        Driven::start(name, consumer, Duration::from_millis(200))
    };
    let mut peer_config = GroupPeerConfig::new(
        PeerClient::Librdkafka,
        mock.bootstrap(),
        &group,
        &[&topic],
        "range",
    );
    peer_config.group_protocol = Some("consumer".into());
    peer_config
        .extra
        .insert("auto.commit.interval.ms".into(), json!(200));
    let peer = || block_in_place(|| GroupPeer::start_with(&peer_config));

    let (k1, p1) = match first {
        First::Kcon => {
            let k1 = kcon("kcon-1");
            wait_for_split(&[&k1], &[], &all).await;
            (k1, peer())
        }
        First::Librdkafka => {
            let p1 = peer();
            wait_for_split(&[], &[&p1], &all).await;
            (kcon("kcon-1"), p1)
        }
    };
    let k2 = kcon("kcon-2");
    let p2 = peer();
    wait_for_split(&[&k1, &k2], &[&p1, &p2], &all).await;
    wait_for_commits(&pool, &group, &all, RECORDS as i64).await;

    // One of each side leaves; more records come.
    let (consumer, state) = k2.stop().await;
    consumer.close().await.expect("kcon-2 closes");
    assert!(state.errors.is_empty(), "kcon-2: {:?}", state.errors);
    block_in_place(|| p2.close());
    wait_for_split(&[&k1], &[&p1], &all).await;
    for p in 0..PARTITIONS {
        produce(&pool, &topic, p, RECORDS, 1).await;
    }
    wait_for_commits(&pool, &group, &all, 2 * RECORDS as i64).await;

    let (consumer, state) = k1.stop().await;
    consumer.close().await.expect("kcon-1 closes");
    assert!(state.errors.is_empty(), "kcon-1: {:?}", state.errors);
    // Within one kcon consumer, no record came twice: its partitions moved only at leaves,
    // after commits covered what it had read.
    let mut seen = BTreeSet::new();
    for r in &state.records {
        assert!(
            seen.insert((r.partition, r.offset)),
            "kcon-1 got {}@{} twice",
            r.partition,
            r.offset
        );
    }
    block_in_place(|| p1.close());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_librdkafka_kcon_first() {
    mixed(First::Kcon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_with_librdkafka_librdkafka_first() {
    mixed(First::Librdkafka).await;
}

/// Waits until kcon consumers and librdkafka peers together own every partition exactly once,
/// each some, and that holds for half a second.
async fn wait_for_split(kcon: &[&Driven], peers: &[&GroupPeer], all: &BTreeSet<TopicPartition>) {
    let all: BTreeSet<Tp> = all.iter().map(|t| (t.topic.clone(), t.partition)).collect();
    let held = Duration::from_millis(500);
    wait_for_mixed_split(kcon, peers, &all, RECONCILED_WITHIN, held).await;
}

/// Waits until `group` has committed `end` for every partition of `all`.
async fn wait_for_commits(pool: &Pool, group: &str, all: &BTreeSet<TopicPartition>, end: i64) {
    let deadline = Instant::now() + RECONCILED_WITHIN;
    loop {
        let got =
            kcon_admin::committed_offsets_of_groups(pool, &[group.to_owned()], Some(all), false)
                .await
                .expect("OffsetFetch");
        let committed: BTreeMap<&TopicPartition, Option<i64>> = match &got[group] {
            Ok(offsets) => offsets
                .iter()
                .map(|(tp, o)| (tp, o.committed.as_ref().map(|c| c.offset)))
                .collect(),
            Err(e) => panic!("the committed offsets of {group}: {e}"),
        };
        if committed.len() == all.len() && committed.values().all(|o| *o == Some(end)) {
            return;
        }
        assert!(
            committed.values().all(|o| o.is_none_or(|o| o <= end)),
            "committed past the end {end}: {committed:?}"
        );
        if Instant::now() >= deadline {
            panic!("the group did not commit {end} everywhere: {committed:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The coordinator fences a member (a pushed FENCED_MEMBER_EPOCH, then UNKNOWN_MEMBER_ID, on
/// its heartbeat; the mock also drops the member): it loses its partitions, never revoking
/// them, rejoins with the same member id, and the group ends with every partition owned once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_member_loses_its_partitions_and_rejoins() {
    let mock = mock();
    let (topic, group) = topic_and_group(&mock);
    let all = partitions(&topic, PARTITIONS);
    let a = start(&mock, "a", &group, &topic, &[]);
    let b = start(&mock, "b", &group, &topic, &[]);
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    for (error, code) in [
        (ResponseError::FencedMemberEpoch, 110),
        (ResponseError::UnknownMemberId, 25),
    ] {
        assert_eq!(error.code(), code);
        let lost_before = a.log().lost.len() + b.log().lost.len();
        mock.push_request_errors(ApiKey::ConsumerGroupHeartbeat, &[code]);
        let deadline = Instant::now() + RECONCILED_WITHIN;
        while a.log().lost.len() + b.log().lost.len() == lost_before {
            assert!(
                Instant::now() < deadline,
                "nobody lost anything after {error:?}: {:?} {:?}",
                a.log(),
                b.log()
            );
            assert!(double_owned(&[&a, &b]).is_empty());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    }
    for m in [a, b] {
        let log = m.close().await;
        let ids: BTreeSet<&String> = log.member_ids.iter().collect();
        assert_eq!(ids.len(), 1, "the member id changed: {log:?}");
        assert!(log.fatal.is_none(), "{log:?}");
    }
}

/// Static members (`group.instance.id`): one closes (it leaves with epoch -2, so the
/// coordinator keeps its assignment) and a new process with the same instance id comes back
/// within the session: it gets the same partitions, and the other member sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_moving_partitions() {
    let mock = shared();
    let (topic, group) = topic_and_group(mock);
    let all = partitions(&topic, PARTITIONS);
    let a = start(
        mock,
        "a",
        &group,
        &topic,
        &[("group.instance.id", "static-a")],
    );
    let b = start(
        mock,
        "b",
        &group,
        &topic,
        &[("group.instance.id", "static-b")],
    );
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    let a_before = a.log();
    let b_owned = b.owned();
    let b_id = b.snapshot().generation.member_id;
    let log = b.close().await;
    assert!(log.closed, "{log:?}");
    let b = start(
        mock,
        "b-again",
        &group,
        &topic,
        &[("group.instance.id", "static-b")],
    );
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    assert_eq!(
        b.owned(),
        b_owned,
        "the restarted member got other partitions"
    );
    assert_ne!(
        b.snapshot().generation.member_id,
        b_id,
        "a new process, a new member id"
    );
    let a_after = a.log();
    assert_eq!(a_after.owned, a_before.owned);
    assert_eq!(
        a_after.events, a_before.events,
        "the other member saw a change"
    );
    a.close().await;
    b.close().await;
}

/// The group's coordinator moves to another broker: the members find it (the old one answers
/// NOT_COORDINATOR) and go on heartbeating there, keeping their partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_follow_a_moved_coordinator() {
    let mock = mock();
    let (topic, group) = topic_and_group(&mock);
    let all = partitions(&topic, PARTITIONS);
    let a = start(&mock, "a", &group, &topic, &[]);
    let b = start(&mock, "b", &group, &topic, &[]);
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    let before = [a.log(), b.log()];
    let old = a.snapshot().coordinator.expect("a coordinator").id;
    let new = if old == 3 { 1 } else { old + 1 };
    mock.set_coordinator(CoordinatorType::Group, &group, new);
    let deadline = Instant::now() + RECONCILED_WITHIN;
    while [&a, &b]
        .iter()
        .any(|m| m.snapshot().coordinator.map(|c| c.id) != Some(new))
    {
        assert!(
            Instant::now() < deadline,
            "members did not move to coordinator {new}: {:?} {:?}",
            a.snapshot(),
            b.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_reconciled(&[&a, &b], &all, RECONCILED_WITHIN).await;
    assert_not_stopped(&[&a, &b], &before);
    for (m, before) in [&a, &b].iter().zip(&before) {
        assert_eq!(m.owned(), before.owned, "{}", m.name);
    }
    a.close().await;
    b.close().await;
}

/// A mock quirk, pinned: a second member joining with a `group.instance.id` another live
/// member holds is answered UNKNOWN_MEMBER_ID (the mock finds no member to add), where Kafka
/// answers UNRELEASED_INSTANCE_ID (`GroupMetadataManager` refuses to replace a static member
/// that has not left). kcon treats UNRELEASED_INSTANCE_ID as fatal for the member and
/// UNKNOWN_MEMBER_ID as a fence to rejoin from, so on the mock such a duplicate keeps retrying
/// (after a backoff) instead of failing. If this test fails, the mock answers like Kafka now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_quirk_a_duplicate_static_member_is_unknown_not_unreleased() {
    let mock = shared();
    let (topic, group) = topic_and_group(mock);
    let all = partitions(&topic, PARTITIONS);
    let a = start(mock, "a", &group, &topic, &[("group.instance.id", "taken")]);
    wait_for_reconciled(&[&a], &all, RECONCILED_WITHIN).await;
    let coordinator = a.snapshot().coordinator.expect("a coordinator").id;
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes(&group)))
        .with_member_id(str_bytes("BBBBBBBBBBBBBBBBBBBBBB"))
        .with_member_epoch(0)
        .with_instance_id(Some(str_bytes("taken")))
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(Some(vec![TopicName(str_bytes(&topic))]))
        .with_subscribed_topic_regex(Some(str_bytes("")))
        .with_topic_partitions(Some(Vec::new()));
    let answer = block_in_place(|| {
        let mut conn = mock
            .connect(coordinator)
            .expect("a connection to the coordinator");
        conn.send(&join).expect("ConsumerGroupHeartbeat").1
    });
    assert_eq!(
        answer.error_code,
        ResponseError::UnknownMemberId.code(),
        "Kafka answers UNRELEASED_INSTANCE_ID ({}): {answer:?}",
        ResponseError::UnreleasedInstanceId.code()
    );
    // The first member is untouched.
    wait_for_reconciled(&[&a], &all, RECONCILED_WITHIN).await;
    assert!(a.log().lost.is_empty(), "{:?}", a.log());
    a.close().await;
}

/// The mock cluster offers ConsumerGroupHeartbeat but neither ConsumerGroupDescribe nor
/// DescribeGroups: kcon-admin finds no consumer-protocol description (the API is missing, so
/// `None`), and the classic fall back fails naming DescribeGroups. If this test fails, the mock
/// describes groups now: test `kcon group describe` against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_quirk_no_api_describes_a_group() {
    let mock = shared();
    let (topic, group) = topic_and_group(mock);
    let a = start(mock, "a", &group, &topic, &[]);
    wait_for_reconciled(&[&a], &partitions(&topic, PARTITIONS), RECONCILED_WITHIN).await;
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    let described = kcon_admin::describe_consumer_group(&pool, &group).await;
    assert!(matches!(described, Ok(None)), "{described:?}");
    let classic = kcon_admin::describe_group(&pool, &group).await;
    match classic {
        Err(kcon_admin::Error::Unsupported { api, .. }) => {
            assert_eq!(api, Some(ApiKey::DescribeGroups));
        }
        other => panic!("the mock described the group: {other:?}"),
    }
    a.close().await;
}

/// A regex subscription under the consumer protocol: the consumers send `^<prefix>-.*` as
/// SubscribedTopicRegex and the mock, which resolves regexes itself, assigns what it matches;
/// two consumers share that topic (not the one beside it that the regex does not match), take
/// up a matching topic created afterwards, and consume every record of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_subscription_takes_up_a_topic_created_later() {
    const RECORDS: usize = 10;
    let mock = shared();
    let prefix = unique_name("rx");
    let group = unique_name("rx-group");
    let (first, later, unmatched) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}_c"),
    );
    mock.create_topic(&first, 4, 3);
    mock.create_topic(&unmatched, 2, 3);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    for (topic, partitions) in [(&first, 4), (&unmatched, 2)] {
        for p in 0..partitions {
            produce(&pool, topic, p, RECORDS, 1).await;
        }
    }
    let regex = format!("^{prefix}-.*");
    let kcon = |name: &str| {
        let mut consumer = builder(mock.bootstrap())
            .group_id(&group)
            .set("group.protocol", "consumer")
            .set("auto.commit.interval.ms", "200")
            .build()
            .expect("a consumer");
        consumer.subscribe([regex.as_str()]).expect("subscribed");
        Driven::start(name, consumer, Duration::from_millis(200))
    };
    let (k1, k2) = (kcon("kcon-1"), kcon("kcon-2"));
    let mut expected: BTreeSet<TopicPartition> =
        (0..4).map(|p| TopicPartition::new(&first, p)).collect();
    kcon_tests::consumer::wait_for_split(&[&k1, &k2], &expected, RECONCILED_WITHIN).await;

    mock.create_topic(&later, 2, 3);
    for p in 0..2 {
        produce(&pool, &later, p, RECORDS, 1).await;
    }
    expected.extend((0..2).map(|p| TopicPartition::new(&later, p)));
    kcon_tests::consumer::wait_for_split(&[&k1, &k2], &expected, RECONCILED_WITHIN).await;
    wait_for_commits(&pool, &group, &expected, RECORDS as i64).await;

    let mut read = BTreeMap::new();
    for k in [k1, k2] {
        let (mut consumer, state) = k.stop().await;
        assert!(state.errors.is_empty(), "{:?}", state.errors);
        // The coordinator resolves the regex; the consumer's own list of matched topics follows
        // the pool's metadata, which may name the new topic a moment after its partitions came.
        let more = kcon_tests::consumer::poll_until(
            &mut consumer,
            "the new topic in the subscription",
            RECONCILED_WITHIN,
            |c| c.subscription().contains(&later),
        )
        .await;
        consumer.close().await.expect("closes");
        for r in state.records.into_iter().chain(more) {
            *read
                .entry(TopicPartition::new(&*r.topic, r.partition))
                .or_insert(0) += 1;
        }
    }
    let partitions: BTreeSet<&TopicPartition> = read.keys().collect();
    assert_eq!(partitions, expected.iter().collect(), "{read:?}");
    assert!(read.values().all(|n| *n >= RECORDS), "{read:?}");
}

/// A mock quirk, pinned: the mock matches SubscribedTopicRegex anywhere in a topic's name
/// (POSIX `regexec`), where Kafka matches whole names (RE2/J `matches()`): a regex naming only
/// the start of a topic's name gets it assigned here, and would get nothing from Kafka. kcon
/// sends the application's pattern as written either way. If this test fails, the mock
/// matches whole names now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_quirk_a_regex_matches_part_of_a_name() {
    let mock = shared();
    let prefix = unique_name("rx-part");
    let topic = format!("{prefix}-whole-name");
    mock.create_topic(&topic, 2, 3);
    let group = unique_name("rx-part-group");
    // The group's coordinator, as FindCoordinator names it.
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    let coordinator = kcon_admin::find_coordinator(&pool, &group)
        .await
        .expect("a coordinator")
        .id;
    let assigned = block_in_place(|| {
        let mut conn = mock
            .connect(coordinator)
            .expect("a connection to the coordinator");
        let mut epoch = 0;
        let deadline = Instant::now() + RECONCILED_WITHIN;
        loop {
            let mut heartbeat = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes(&group)))
                .with_member_id(str_bytes("CCCCCCCCCCCCCCCCCCCCCC"))
                .with_member_epoch(epoch);
            if epoch == 0 {
                heartbeat = heartbeat
                    .with_rebalance_timeout_ms(5000)
                    .with_subscribed_topic_names(Some(Vec::new()))
                    .with_subscribed_topic_regex(Some(str_bytes(&prefix)))
                    .with_topic_partitions(Some(Vec::new()));
            }
            let answer = conn.send(&heartbeat).expect("ConsumerGroupHeartbeat").1;
            assert_eq!(answer.error_code, 0, "{answer:?}");
            epoch = answer.member_epoch;
            let partitions: usize = answer
                .assignment
                .iter()
                .flat_map(|a| &a.topic_partitions)
                .map(|t| t.partitions.len())
                .sum();
            if partitions > 0 || Instant::now() >= deadline {
                let leave = ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_member_id(str_bytes("CCCCCCCCCCCCCCCCCCCCCC"))
                    .with_member_epoch(-1);
                // Best effort: the mock drops the member after its session anyway.
                let _ = conn.send(&leave);
                return partitions;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_eq!(
        assigned, 2,
        "Kafka assigns nothing for a regex that matches only part of a name"
    );
}

/// A mock quirk, pinned: the mock compiles SubscribedTopicRegex as a POSIX extended expression
/// and, when that fails, matches the topics with the failed compilation anyway: a regex it
/// cannot read (here `(?:x)`, which RE2/J reads) crashes the whole mock (SIGSEGV), where Kafka
/// answers INVALID_REGULAR_EXPRESSION, which kcon reports as fatal naming the regex. So no
/// other test sends the mock such a regex. If this test fails, the mock answers it now: test
/// kcon's report against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_quirk_a_regex_it_cannot_read_crashes_it() {
    // A mock of its own: this one goes down.
    let mock = mock();
    let prefix = unique_name("rx-bad");
    mock.create_topic(&format!("{prefix}-t"), 2, 3);
    let group = unique_name("rx-bad-group");
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    let coordinator = kcon_admin::find_coordinator(&pool, &group)
        .await
        .expect("a coordinator")
        .id;
    let answer = block_in_place(|| {
        let mut conn = mock
            .connect(coordinator)
            .expect("a connection to the coordinator");
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(&group)))
            .with_member_id(str_bytes("DDDDDDDDDDDDDDDDDDDDDD"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(5000)
            .with_subscribed_topic_names(Some(Vec::new()))
            .with_subscribed_topic_regex(Some(str_bytes("(?:x)")))
            .with_topic_partitions(Some(Vec::new()));
        conn.send(&join).map(|(_, a)| a)
    });
    assert!(
        answer.is_err(),
        "Kafka answers INVALID_REGULAR_EXPRESSION ({}): {answer:?}",
        ResponseError::InvalidRegularExpression.code()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.connect(coordinator).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the mock lives on after closing the connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
