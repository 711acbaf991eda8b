//! Share groups (KIP-932) on librdkafka's mock cluster (ShareGroupHeartbeat, ShareFetch and
//! ShareAcknowledge v1), for its own peer: librdkafka's share consumer sharing a partition with
//! kcon, each record processed by exactly one of them, once. Every other share-group case runs
//! on Apache Kafka 4.4 (`share_kafka.rs`).
//!
//! The test opens every connection it will use before a record is acquired: the mock closes
//! every share session on a broker, releasing their records, when any connection to that broker
//! closes (a pool's bootstrap connection is closed once the metadata names the brokers), so a
//! client started beside another's sessions would see records redelivered that the protocol
//! keeps locked. A new share group starts at the log's end (the mock's
//! `share.auto.offset.reset` is latest), so records are produced once the members hold the
//! partition.

use std::time::Duration;

use kcon::share::ShareConsumer;
use kcon_pool::{Pool, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::mock::MockCluster;
use kcon_tests::offsets::produce;
use kcon_tests::peers::SharePeer;
use kcon_tests::pool::config;
use kcon_tests::share::{JOIN_WITHIN, assert_shared_once, joined};
use tokio::time::{Instant, timeout};

/// A test's mock, a topic of `partitions` partitions and a group name, and a pool to produce
/// with whose connections are open already (see the module's documentation).
struct Setup {
    mock: MockCluster,
    pool: Pool,
    topic: String,
    group: String,
}

async fn setup(partitions: i32) -> Setup {
    let mock = MockCluster::start(1);
    let topic = unique_name("share");
    mock.create_topic(&topic, partitions, 1);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    pool.refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .expect("the mock's metadata");
    Setup {
        mock,
        pool,
        topic,
        group: unique_name("share-group"),
    }
}

/// A share consumer of the mock; it asks for records every 200 ms.
fn share_consumer(mock: &MockCluster, group: &str, extra: &[(&str, &str)]) -> ShareConsumer {
    let mut props = vec![("fetch.max.wait.ms", "200")];
    props.extend_from_slice(extra);
    kcon_tests::share::consumer(mock.bootstrap(), group, &props)
}

/// A kcon member and librdkafka's share consumer share one partition: every record is
/// processed by exactly one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcon_and_librdkafka_members_share_a_partition() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    // The mock moves every member's epoch each time it assigns anew and fences a member that
    // missed two moves between its heartbeats: heartbeats come often here, and the peer joins
    // first, so that the kcon member's join and the target assignment are one move each.
    mock.set_sharegroup("heartbeat_interval", 100);
    let peer = SharePeer::start(
        mock.bootstrap(),
        &group,
        &[topic.as_str()],
        0,
        Duration::from_secs(15),
        None,
    );
    let deadline = Instant::now() + JOIN_WITHIN;
    while mock.sharegroup_member_ids(&group).is_empty() {
        assert!(
            Instant::now() < deadline,
            "librdkafka's member did not join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = share_consumer(&mock, &group, &[("max.poll.records", "20")]);
    c.subscribe([topic.as_str()]).unwrap();
    share_the_partition(&mock, &group, &topic, 2).await;
    joined(&mut c, &topic, 1).await;
    // The peer's join has settled (its connections open) before anything is acquired.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // In chunks, while both members wait for records: each chunk goes to whichever asks first.
    let producing = async {
        for _ in 0..20 {
            produce(&pool, &topic, 0, 10, 1_000).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut mine = Vec::new();
    let consuming = timeout(Duration::from_secs(8), async {
        loop {
            mine.extend(c.recv_batch().await.expect("a batch"));
        }
    });
    let ((), _) = tokio::join!(producing, consuming);
    let theirs = tokio::task::spawn_blocking(move || peer.records())
        .await
        .unwrap();
    c.close().await.unwrap();
    assert_shared_once(&topic, &mine, &theirs, "librdkafka", 200);
}

/// Gives `topic`'s partition 0 to each of the group's `members` (once the mock knows them).
async fn share_the_partition(mock: &MockCluster, group: &str, topic: &str, members: usize) {
    let deadline = Instant::now() + JOIN_WITHIN;
    let ids = loop {
        let ids = mock.sharegroup_member_ids(group);
        if ids.len() >= members {
            break ids;
        }
        assert!(Instant::now() < deadline, "members in {group}: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let partition: &[(&str, i32)] = &[(topic, 0)];
    let assignment: Vec<(&str, &[(&str, i32)])> =
        ids.iter().map(|id| (id.as_str(), partition)).collect();
    mock.set_sharegroup_target_assignment(group, &assignment);
}
