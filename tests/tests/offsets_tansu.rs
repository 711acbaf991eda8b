//! What only Tansu shows of kcon-admin's group calls (everything else of kcon-offsets runs on
//! Apache Kafka, `offsets_kafka.rs`): Tansu answers ConsumerGroupDescribe for a classic group
//! without error, with an empty description whose epochs are -1 (Kafka answers
//! GROUP_ID_NOT_FOUND), and it offers no OffsetDelete, which every Apache Kafka here offers.
//!
//! Tansu completes a group join after half the session timeout (3 s here).

use kcon_admin as admin;
use kcon_core::TopicPartition;
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::{
    Member, REBALANCE_WITHIN, create_topics, group_config, partitions, wait_for_exactly_once,
};
use kcon_tests::pool::config;

/// A classic group with a kcon member: ConsumerGroupDescribe's empty answer (epochs -1) is read
/// as "not a consumer-protocol group" and DescribeGroups describes it; OffsetDelete, which
/// Tansu 0.6.0 does not offer, fails naming the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_group_described_and_offsets_not_deletable_on_tansu() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let topic = unique_name("offsets-topic");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, 2)]).await;
    let group = unique_name("g");
    let member = Member::start(
        "a",
        &tansu.bootstrap(),
        group_config(&group, "range", &[]),
        &[&topic],
    );
    wait_for_exactly_once(&[&member], &partitions(&topic, 2), REBALANCE_WITHIN).await;
    let generation = member.snapshot().generation;

    let consumer_protocol = admin::describe_consumer_group(&pool, &group).await.unwrap();
    assert_eq!(consumer_protocol, None);
    let described = admin::describe_group(&pool, &group).await.unwrap();
    assert_eq!(described.error_code, 0, "{described:?}");
    assert_eq!(described.protocol_type, "consumer", "{described:?}");
    assert_eq!(described.state, "Stable", "{described:?}");
    let ids: Vec<_> = described
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(ids, [generation.member_id.as_str()]);
    let e = admin::delete_offsets(&pool, &group, &[TopicPartition::new(&topic, 0)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("OffsetDelete"), "{e}");

    let log = member.close().await;
    assert!(log.fatal.is_none(), "{log:?}");
}
