//! kcon-admin's OffsetDelete (KIP-496, `delete_offsets`) on Apache Kafka 4.4 (the shared single
//! node), read back with Kafka's own `kafka-consumer-groups` tool: a group's committed offset
//! deleted, and the broker's refusal while the group's active member is subscribed to the topic.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon::TopicPartition;
use kcon_admin::{ResponseError, commit_offsets, committed_offsets_of_groups, delete_offsets};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{REBALANCE_WITHIN, group_builder, poll_until};
use kcon_tests::kafka::{self, Kafka};
use kcon_tests::pool::config;

/// The committed offsets Kafka's `kafka-consumer-groups --describe` lists for `group` on
/// `topic`, by partition.
fn described_offsets(kafka: &Kafka, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let out = kafka.tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &["--describe", "--group", group],
    );
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 4 && cols[1] == topic).then(|| {
                (
                    cols[2].parse().expect("a partition"),
                    cols[3].parse().expect("a committed offset"),
                )
            })
        })
        .collect()
}

/// A group's committed offset for one partition deleted with `delete_offsets`: Kafka's tool
/// no longer lists it, the other partition's stays; OffsetFetch finds none. A group that never
/// existed fails the call with GROUP_ID_NOT_FOUND.
#[tokio::test(flavor = "multi_thread")]
async fn delete_offsets_removes_a_committed_offset() {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("offset-delete");
    kafka::create_topics(&pool, &[(&topic, 2)]).await;
    let group = unique_name("offset-delete-g");
    let (tp0, tp1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let committed = commit_offsets(
        &pool,
        &group,
        &BTreeMap::from([(tp0.clone(), 0), (tp1.clone(), 0)]),
    )
    .await
    .unwrap();
    assert!(committed.values().all(Result::is_ok), "{committed:?}");
    assert_eq!(
        described_offsets(kafka, &group, &topic),
        BTreeMap::from([(0, 0), (1, 0)])
    );

    let deleted = delete_offsets(&pool, &group, std::slice::from_ref(&tp0))
        .await
        .unwrap();
    assert_eq!(deleted.len(), 1);
    assert!(deleted[&tp0].is_ok(), "{deleted:?}");
    assert_eq!(
        described_offsets(kafka, &group, &topic),
        BTreeMap::from([(1, 0)])
    );
    let fetched = committed_offsets_of_groups(&pool, std::slice::from_ref(&group), None, false)
        .await
        .unwrap();
    let offsets = fetched[&group].as_ref().unwrap();
    assert!(
        offsets.get(&tp0).is_none_or(|p| p.committed.is_none()),
        "{offsets:?}"
    );
    assert_eq!(offsets[&tp1].committed.as_ref().map(|o| o.offset), Some(0));

    let e = delete_offsets(&pool, &unique_name("no-such-group"), &[tp1])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ResponseError::GroupIdNotFound), "{e}");
}

/// While the group has an active member subscribed to the topic, Kafka refuses to delete its
/// offsets there: the partition's outcome is GROUP_SUBSCRIBED_TO_TOPIC, in words that say what
/// to do, and the offset stays; once the member has left, the same call deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn delete_offsets_is_refused_while_a_member_is_subscribed() {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("offset-delete-active");
    kafka::create_topics(&pool, &[(&topic, 1)]).await;
    let group = unique_name("offset-delete-active-g");
    let tp = TopicPartition::new(&topic, 0);
    let mut consumer = group_builder(kafka.bootstrap(), &group, "range")
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    poll_until(&mut consumer, "assigned", REBALANCE_WITHIN, |c| {
        c.assignment().contains(&tp)
    })
    .await;
    // An active group's offsets are committed by its member.
    consumer.commit_offsets([(tp.clone(), 0)]).await.unwrap();

    let refused = delete_offsets(&pool, &group, std::slice::from_ref(&tp))
        .await
        .unwrap();
    let e = refused[&tp].as_ref().unwrap_err();
    assert_eq!(e.code(), Some(ResponseError::GroupSubscribedToTopic), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "OffsetDelete answered GROUP_SUBSCRIBED_TO_TOPIC (86) for {tp}: the group has \
             active members subscribed to {topic:?}; its offsets there can be deleted once they \
             stop or no longer subscribe to it"
        )
    );
    assert_eq!(
        described_offsets(kafka, &group, &topic),
        BTreeMap::from([(0, 0)])
    );

    tokio::time::timeout(Duration::from_secs(30), consumer.close())
        .await
        .expect("the consumer closes")
        .unwrap();
    let deleted = delete_offsets(&pool, &group, std::slice::from_ref(&tp))
        .await
        .unwrap();
    assert!(deleted[&tp].is_ok(), "{deleted:?}");
}
