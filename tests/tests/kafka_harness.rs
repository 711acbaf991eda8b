//! The single-node Apache Kafka brokers the real-broker suites share (`kcon_tests::kafka`),
//! pinned: the versions 4.4.0 and 3.9.1 offer for the APIs kcon's features rest on, and that
//! kcon negotiates every API it speaks as it should with each. (The three-node cluster's own
//! checks are in `kafka_cluster.rs`.)
//!
//! A change of broker build, or of what kcon speaks, shows here first.

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::{Pool, TopicScope};
use kcon_tests::kafka::{Kafka, first_address};
use kcon_tests::pool::{assert_versions_of, config};

/// The ranges Apache Kafka 4.4.0 offers for the APIs kcon's features rest on.
const KAFKA_4_4: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 11),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 10),
    (ApiKey::OffsetFetch, 1, 10),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareFetch, 1, 2),
    (ApiKey::ShareAcknowledge, 1, 2),
];

/// The same for 3.9.1: no share groups, the consumer protocol's APIs at v0.
const KAFKA_3_9: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 0, 17),
    (ApiKey::ListOffsets, 0, 9),
    (ApiKey::OffsetCommit, 0, 9),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::ConsumerGroupHeartbeat, 0, 0),
    (ApiKey::ConsumerGroupDescribe, 0, 0),
];

/// Checks each of `ranges` against what the broker at `kafka`'s first address offers, and
/// every API kcon speaks against what it negotiated there.
async fn assert_offers(kafka: &Kafka, ranges: &[(ApiKey, i16, i16)]) -> kcon_pool::Connection {
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let meta = pool.refresh_metadata(TopicScope::none()).await.unwrap();
    let addr = first_address(kafka.bootstrap());
    let id = meta
        .brokers
        .values()
        .find(|b| b.port == i32::from(addr.port()))
        .map(|b| b.id)
        .expect("the first bootstrap address is a broker of the metadata");
    let conn = assert_versions_of(&pool, id, addr, &[]).await;
    for &(api, min, max) in ranges {
        assert_eq!(
            conn.versions().offered(api),
            Some((min, max)),
            "{api:?} offered by {}",
            kafka.bootstrap()
        );
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_4_4_offers_the_versions_kcon_is_tested_at() {
    let conn = assert_offers(Kafka::single(), KAFKA_4_4).await;
    // Formatted at 4.4's defaults: transaction version 2 (KIP-890), which kcon's
    // transactional producer then speaks; share groups as the cluster asks for them.
    let versions = conn.versions();
    assert_eq!(versions.finalized("transaction.version"), Some(2));
    assert_eq!(versions.finalized("share.version"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_3_9_offers_no_share_groups_and_the_consumer_protocol_at_v0() {
    let conn = assert_offers(Kafka::kafka39(), KAFKA_3_9).await;
    for api in [
        ApiKey::ShareGroupHeartbeat,
        ApiKey::ShareFetch,
        ApiKey::ShareAcknowledge,
    ] {
        assert_eq!(conn.versions().offered(api), None, "{api:?}");
    }
    // No transaction version is finalized (3.9 lists no feature at level 0): kcon's
    // transactional producer speaks version 1.
    assert_eq!(conn.versions().finalized("transaction.version"), None);
}
