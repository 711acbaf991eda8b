//! kcon members in one classic group with the Java client 4.4, librdkafka (confluent-kafka 2.16)
//! and kafka-python 3.0.12 members: with range and with cooperative-sticky, kcon leading (it
//! joins first, alone) and a peer leading. Every partition is assigned exactly once after each
//! rebalance: a kcon leader must read the peers' subscriptions and give them assignments they
//! read, and a kcon follower must read the peer leader's assignment.
//!
//! On Apache Kafka 4.4 (the shared single node), every member at its client's defaults.
//!
//! Not on librdkafka's mock cluster: it ends a generation's sync with the leader's SyncGroup and
//! refuses a follower's that comes after it (INVALID_REQUEST; `mock_harness` shows it), where
//! Apache Kafka answers a late follower with its assignment. A follower that loses that race
//! joins again and the mock waits most of a session for the next generation, so a kcon follower
//! of a debug build beside librdkafka's (whose SyncGroup follows its JoinGroup answer within a
//! millisecond) made these groups converge only with shortened sessions. The same groups with
//! librdkafka run here on Kafka at the defaults instead; how soon a kcon follower syncs is
//! measured by `group_sync_scripted`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kcon_group::MemberState;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::group::{
    Member, MemberLog, REBALANCE_WITHIN, Tp, group_config_at_defaults, partitions,
};
use kcon_tests::group_peers::{GroupPeer, GroupPeerConfig, PeerClient, split_exactly_once};
use kcon_tests::kafka::{self, Kafka};
use kcon_tests::pool::config;
use tokio::task::block_in_place;

/// Which side joins first, alone, and so leads the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leader {
    Kcon,
    Peer,
}

async fn kafka() -> (&'static Kafka, String) {
    let kafka = Kafka::single();
    let topic = unique_name("mixed-topic");
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    kafka::create_topics(&pool, &[(&topic, 6)]).await;
    (kafka, topic)
}

/// Two kcon members and two `client` members in one group with `strategy`; `leader` joins
/// first. After all four have joined, every partition is owned exactly once; then one member
/// of the side that did not lead leaves, and again.
async fn mixed(kafka: &Kafka, topic: &str, client: PeerClient, strategy: &str, leader: Leader) {
    let bootstrap = kafka.bootstrap().to_owned();
    let group = unique_name("mixed");
    let all = partitions(topic, 6);
    let within = REBALANCE_WITHIN;
    let kcon = |name: &str| {
        Member::start(
            name,
            &bootstrap,
            group_config_at_defaults(&group, strategy, &[]),
            &[topic],
        )
    };
    let peer_config = GroupPeerConfig::new(client, &bootstrap, &group, &[topic], strategy);
    let peer = || block_in_place(|| GroupPeer::start_with(&peer_config));

    let (k1, p1) = match leader {
        Leader::Kcon => {
            let k1 = kcon("kcon-1");
            wait_for_split(&[&k1], &[], &all, within).await;
            (k1, peer())
        }
        Leader::Peer => {
            let p1 = peer();
            wait_for_split(&[], &[&p1], &all, within).await;
            (kcon("kcon-1"), p1)
        }
    };
    let k2 = kcon("kcon-2");
    let p2 = peer();
    wait_for_split(&[&k1, &k2], &[&p1, &p2], &all, within).await;
    assert_eq!(
        k1.log().leader,
        leader == Leader::Kcon,
        "kcon-1 should {}lead: {:?}",
        if leader == Leader::Kcon { "" } else { "not " },
        k1.log()
    );

    // A member of the side that follows leaves: the leader assigns again over the mixed
    // subscriptions.
    let k2_log = match leader {
        Leader::Kcon => {
            block_in_place(|| p2.close());
            wait_for_split(&[&k1, &k2], &[&p1], &all, within).await;
            k2.close().await
        }
        Leader::Peer => {
            let log = k2.close().await;
            assert!(log.closed && log.fatal.is_none(), "{log:?}");
            wait_for_split(&[&k1], &[&p1, &p2], &all, within).await;
            block_in_place(|| p2.close());
            log
        }
    };
    let log: MemberLog = k1.close().await;
    assert!(log.fatal.is_none(), "{log:?}");
    block_in_place(|| p1.close());
    for (name, log) in [("kcon-1", &log), ("kcon-2", &k2_log)] {
        eprintln!(
            "{name} joined generations {:?}, did not sync {:?}",
            log.generations,
            log.unsynced()
        );
    }
}

/// Waits until kcon members (all stable) and peers together own every partition exactly once,
/// each member some, and that holds for a second.
async fn wait_for_split(
    kcon: &[&Member],
    peers: &[&GroupPeer],
    all: &BTreeSet<Tp>,
    within: Duration,
) {
    let deadline = Instant::now() + within;
    let mut held_since: Option<Instant> = None;
    loop {
        let mut owned: Vec<BTreeSet<Tp>> = kcon.iter().map(|m| m.owned()).collect();
        owned.extend(peers.iter().map(|p| p.assignment()));
        let stable = kcon
            .iter()
            .all(|m| m.snapshot().state == MemberState::Stable);
        let split = split_exactly_once(&owned, all)
            .and_then(|()| match owned.iter().any(BTreeSet::is_empty) {
                true => Err("a member owns nothing".to_owned()),
                false => Ok(()),
            })
            .and_then(|()| {
                if stable {
                    Ok(())
                } else {
                    Err("a kcon member is not stable".into())
                }
            });
        match split {
            Ok(()) => {
                let since = *held_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(1) {
                    return;
                }
            }
            Err(why) => {
                held_since = None;
                if Instant::now() >= deadline {
                    let kcon_logs: Vec<String> = kcon
                        .iter()
                        .map(|m| format!("{}: {:?}", m.name, m.log()))
                        .collect();
                    let peer_events: Vec<String> = peers
                        .iter()
                        .map(|p| format!("{:?}\nstderr:\n{}", p.events(), p.stderr_tail(8000)))
                        .collect();
                    // The headline comes last too: CI shows the tail of a failing test's output.
                    panic!(
                        "no exactly-once split within {within:?}: {why}\nkcon: {kcon_logs:#?}\npeers: {peer_events:#?}\nno exactly-once split within {within:?}: {why}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

macro_rules! mixed_tests {
    ($($name:ident: $client:expr, $strategy:expr, $leader:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (kafka, topic) = kafka().await;
            mixed(kafka, &topic, $client, $strategy, $leader).await;
        }
    )*};
}

mixed_tests! {
    kafka_java_range_kcon_leads: PeerClient::Java, "range", Leader::Kcon;
    kafka_java_range_java_leads: PeerClient::Java, "range", Leader::Peer;
    kafka_java_cooperative_kcon_leads: PeerClient::Java, "cooperative-sticky", Leader::Kcon;
    kafka_java_cooperative_java_leads: PeerClient::Java, "cooperative-sticky", Leader::Peer;
    kafka_librdkafka_range_kcon_leads: PeerClient::Librdkafka, "range", Leader::Kcon;
    kafka_librdkafka_range_librdkafka_leads: PeerClient::Librdkafka, "range", Leader::Peer;
    kafka_librdkafka_cooperative_kcon_leads: PeerClient::Librdkafka, "cooperative-sticky", Leader::Kcon;
    kafka_librdkafka_cooperative_librdkafka_leads: PeerClient::Librdkafka, "cooperative-sticky", Leader::Peer;
    kafka_kafka_python_range_kcon_leads: PeerClient::KafkaPython, "range", Leader::Kcon;
    kafka_kafka_python_range_kafka_python_leads: PeerClient::KafkaPython, "range", Leader::Peer;
    kafka_kafka_python_cooperative_kcon_leads: PeerClient::KafkaPython, "cooperative-sticky", Leader::Kcon;
    kafka_kafka_python_cooperative_kafka_python_leads: PeerClient::KafkaPython, "cooperative-sticky", Leader::Peer;
}
