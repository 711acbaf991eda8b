//! kcon-admin's description of share groups (KIP-932) against a scripted broker, whose every
//! answer the test chooses (Apache Kafka 4.4 serves these APIs too: a share group's lag is
//! described there in `admin_kafka`; librdkafka's mock cluster serves none). The broker answers a share group the way Kafka 4.1 does: GROUP_ID_NOT_FOUND to
//! ConsumerGroupDescribe, `Dead` without members to DescribeGroups below v6, and the group to
//! ShareGroupDescribe; DescribeShareGroupOffsets, ListOffsets and the probe's Fetch give each
//! share-partition's start offset and its log's range.

use kcon_admin::{ApiKey, Error, ResponseError, SharePartitionLag};
use kcon_codec::kafka_protocol::messages::DescribeShareGroupOffsetsRequest;
use kcon_core::IsolationLevel;
use kcon_tests::share_groups::{UNKNOWN_TOPIC_OR_PARTITION, orders, pool, start};

#[tokio::test]
async fn a_share_group_is_described_with_its_members_assignments_offsets_and_lag() {
    let broker = start(true).await;
    let pool = pool(&broker);
    let d = kcon_admin::describe_group_lag(&pool, "shared", IsolationLevel::ReadUncommitted)
        .await
        .expect("a share group described");
    assert!(d.exists());
    let g = &d.description;
    assert_eq!(
        (
            g.state.as_str(),
            g.protocol_type.as_str(),
            g.assignor.as_str()
        ),
        ("Stable", "share", "simple")
    );
    assert!(g.consumer_protocol.is_none());
    let share = g.share.as_ref().expect("ShareGroupDescribe's answer");
    assert_eq!((share.group_epoch, share.assignment_epoch), (6, 5));
    let m1 = &share.members[0];
    assert_eq!(
        (
            m1.member_id.as_str(),
            m1.member_epoch,
            m1.rack_id.as_deref()
        ),
        ("m-1", 6, Some("rack-a"))
    );
    assert_eq!(m1.subscribed_topics, ["orders"]);
    // Sorted, whatever order the answer gave.
    assert_eq!(m1.assignment, [orders(0), orders(1)]);
    // orders-1 is shared by both members.
    let owners: Vec<&str> = g
        .owners(&orders(1))
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    assert_eq!(owners, ["m-1", "m-2"]);
    assert_eq!(g.members[1].client_host, "/10.0.0.7");

    let lag = d.share.as_ref().expect("the share-partitions' lag");
    assert!(d.lag.partitions.is_empty(), "a share group commits nothing");
    let at = |p: i32| -> &SharePartitionLag { &lag.partitions[&orders(p)] };
    // Every partition with state (0, 1, 3) and every partition assigned (0, 1, 2).
    assert_eq!(
        lag.partitions.keys().cloned().collect::<Vec<_>>(),
        [orders(0), orders(1), orders(2), orders(3)]
    );
    assert_eq!(
        (
            at(0).start_offset,
            at(0).leader_epoch,
            at(0).log_end,
            at(0).lag
        ),
        (Some(40), Some(4), Some(100), Some(60))
    );
    // The log starts past the start offset: only what is still there counts.
    assert_eq!(
        (
            at(1).start_offset,
            at(1).log_start,
            at(1).log_end,
            at(1).lag
        ),
        (Some(10), Some(20), Some(50), Some(30))
    );
    // Assigned, no state yet: the log's range, no lag, no error.
    assert_eq!(
        (at(2).start_offset, at(2).log_end, at(2).lag),
        (None, Some(7), None)
    );
    assert!(at(2).error.is_none());
    // The partition's own error.
    assert_eq!((at(3).start_offset, at(3).lag), (None, None));
    let e = at(3).error.as_ref().expect("its error");
    assert_eq!(e.code(), Some(ResponseError::UnknownTopicOrPartition));
    assert_eq!(e.api(), Some(ApiKey::DescribeShareGroupOffsets));
    assert_eq!(lag.total_records(), 90);
    // DescribeShareGroupOffsets v0 gives no lag: kcon's count, an upper bound.
    assert!(at(0).lag_is_upper_bound && at(1).lag_is_upper_bound);
    assert!(lag.lag_is_upper_bound());

    // Asked for every share-partition of the group, and never for committed offsets.
    let stats = &broker.broker().stats;
    let asked =
        stats.requests::<DescribeShareGroupOffsetsRequest>(ApiKey::DescribeShareGroupOffsets);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].groups[0].group_id.0.as_str(), "shared");
    assert_eq!(asked[0].groups[0].topics, None);
    assert_eq!(stats.count(ApiKey::OffsetFetch), 0);
    assert_eq!(broker.script().asked_share, ["shared"]);
}

#[tokio::test]
async fn describe_share_group_and_its_start_offsets_directly() {
    let broker = start(true).await;
    let pool = pool(&broker);
    let g = kcon_admin::describe_share_group(&pool, "shared")
        .await
        .expect("a share group");
    assert_eq!(g.members.len(), 2);
    assert_eq!(g.members[1].assignment, [orders(1), orders(2)]);
    let starts = kcon_admin::share_group_start_offsets(&pool, "shared")
        .await
        .expect("its start offsets");
    assert_eq!(starts[&orders(0)].start_offset, 40);
    assert_eq!(starts[&orders(3)].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(!starts.contains_key(&orders(2)));
    // A group that is not a share group.
    let e = kcon_admin::describe_share_group(&pool, "classic")
        .await
        .expect_err("not a share group");
    assert_eq!(e.code(), Some(ResponseError::GroupIdNotFound));
    assert_eq!(e.api(), Some(ApiKey::ShareGroupDescribe));
}

#[tokio::test]
async fn share_group_errors_fail_the_call_naming_the_api() {
    let broker = start(true).await;
    let pool = pool(&broker);
    let e = kcon_admin::describe(&pool, "denied")
        .await
        .expect_err("not authorized");
    assert!(
        matches!(
            &e,
            Error::Broker {
                api: ApiKey::ShareGroupDescribe,
                error: ResponseError::GroupAuthorizationFailed,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "ShareGroupDescribe answered GROUP_AUTHORIZATION_FAILED (30): not allowed to describe it"
    );
    // Described, but its offsets refused: the whole description fails with that error.
    let e =
        kcon_admin::describe_group_lag(&pool, "hidden-offsets", IsolationLevel::ReadUncommitted)
            .await
            .expect_err("offsets not authorized");
    assert_eq!(e.api(), Some(ApiKey::DescribeShareGroupOffsets));
    assert_eq!(e.code(), Some(ResponseError::GroupAuthorizationFailed));
    assert!(e.to_string().contains("no offsets for you"), "{e}");
}

/// A group neither DescribeGroups nor ShareGroupDescribe knows is what DescribeGroups said
/// (`Dead`, no members: no group); a classic group never reaches ShareGroupDescribe.
#[tokio::test]
async fn unknown_and_classic_groups_are_described_as_before() {
    let broker = start(true).await;
    let pool = pool(&broker);
    let d = kcon_admin::describe(&pool, "nobody")
        .await
        .expect("an answer");
    assert_eq!((d.state.as_str(), d.members.len()), ("Dead", 0));
    assert!(d.share.is_none() && d.consumer_protocol.is_none());
    assert_eq!(broker.script().asked_share, ["nobody"]);

    let classic = kcon_admin::describe(&pool, "classic")
        .await
        .expect("a classic group");
    assert_eq!(
        (classic.state.as_str(), classic.protocol_type.as_str()),
        ("Empty", "consumer")
    );
    assert!(classic.share.is_none());
    assert_eq!(
        broker.script().asked_share,
        ["nobody"],
        "not asked for a classic group"
    );
}

/// A coordinator without ShareGroupDescribe: a group its ListGroups lists as a share group
/// fails with an error naming the API; an unknown group is described as before.
#[tokio::test]
async fn a_broker_without_share_group_describe_names_it() {
    let broker = start(false).await;
    let pool = pool(&broker);
    let e = kcon_admin::describe(&pool, "shared")
        .await
        .expect_err("no ShareGroupDescribe");
    assert!(
        matches!(
            &e,
            Error::Unsupported {
                api: Some(ApiKey::ShareGroupDescribe),
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("\"shared\"") && text.contains("does not offer ShareGroupDescribe"),
        "{text}"
    );
    assert!(!e.is_retriable());
    let e = kcon_admin::describe_share_group(&pool, "shared")
        .await
        .expect_err("no ShareGroupDescribe");
    assert_eq!(e.api(), Some(ApiKey::ShareGroupDescribe));
    let e = kcon_admin::share_group_start_offsets(&pool, "shared")
        .await
        .expect_err("no DescribeShareGroupOffsets");
    assert!(
        e.to_string()
            .contains("does not offer DescribeShareGroupOffsets"),
        "{e}"
    );

    let nobody = kcon_admin::describe(&pool, "nobody")
        .await
        .expect("an answer");
    assert_eq!((nobody.state.as_str(), nobody.members.len()), ("Dead", 0));
    let stats = &broker.broker().stats;
    assert_eq!(stats.count(ApiKey::ShareGroupDescribe), 0);
    assert!(broker.script().asked_share.is_empty());
    // ListGroups was asked for each of the two groups DescribeGroups did not know.
    assert_eq!(stats.count(ApiKey::ListGroups), 2);
}
