//! The range assignor: the Java client's `RangeAssignorTest` cases, with and without racks.

use super::*;

// ---------------------------------------------------------------------------------------------
// Range (RangeAssignorTest)
// ---------------------------------------------------------------------------------------------

/// Runs a RangeAssignorTest case under each `RackConfig` as Java parametrises it (3-way
/// replication over 3 racks, so every partition is on every rack, with rack-aware logic
/// forced as Java's `initializeRacks` does): the result must not change.
fn range_case(
    topic_spec: &[(&str, usize)],
    members: &[(&str, Option<&str>, &[&str])],
    max_consumers: usize,
    want: &[(&str, &str)],
) {
    for config in RACK_CONFIGS {
        let racks = Racks::new(config, max_consumers);
        let t: TopicPartitions = topic_spec
            .iter()
            .map(|&(name, n)| (name.to_owned(), racks.partitions(n, 0)))
            .collect();
        let ms: Vec<MemberSubscription> = members
            .iter()
            .enumerate()
            .map(|(i, &(id, instance, topics))| {
                let subscription = Subscription {
                    rack_id: racks.consumer_rack(i),
                    ..sub(topics)
                };
                MemberSubscription {
                    member_id: id.to_owned(),
                    group_instance_id: instance.map(str::to_owned),
                    subscription,
                }
            })
            .collect();
        let a = RangeAssignor {
            prefer_rack_aware: true,
        };
        assert_eq!(run(&a, &ms, &t), expected(want), "{config:?}");
    }
}

#[test]
fn range_one_consumer_no_topic() {
    range_case(&[], &[("consumer1", None, &[])], 3, &[("consumer1", "")]);
}

#[test]
fn range_one_consumer_nonexistent_topic() {
    range_case(
        &[],
        &[("consumer1", None, &["topic1"])],
        3,
        &[("consumer1", "")],
    );
}

#[test]
fn range_one_consumer_one_topic() {
    range_case(
        &[("topic1", 3)],
        &[("consumer1", None, &["topic1"])],
        3,
        &[("consumer1", "topic1-0, topic1-1, topic1-2")],
    );
}

#[test]
fn range_only_assigns_partitions_from_subscribed_topics() {
    range_case(
        &[("topic1", 3), ("other", 3)],
        &[("consumer1", None, &["topic1"])],
        3,
        &[("consumer1", "topic1-0, topic1-1, topic1-2")],
    );
}

#[test]
fn range_one_consumer_multiple_topics() {
    range_case(
        &[("topic1", 1), ("topic2", 2)],
        &[("consumer1", None, &["topic1", "topic2"])],
        3,
        &[("consumer1", "topic1-0, topic2-0, topic2-1")],
    );
}

#[test]
fn range_two_consumers_one_topic_one_partition() {
    range_case(
        &[("topic1", 1)],
        &[
            ("consumer1", None, &["topic1"]),
            ("consumer2", None, &["topic1"]),
        ],
        3,
        &[("consumer1", "topic1-0"), ("consumer2", "")],
    );
}

#[test]
fn range_two_consumers_one_topic_two_partitions() {
    range_case(
        &[("topic1", 2)],
        &[
            ("consumer1", None, &["topic1"]),
            ("consumer2", None, &["topic1"]),
        ],
        3,
        &[("consumer1", "topic1-0"), ("consumer2", "topic1-1")],
    );
}

#[test]
fn range_multiple_consumers_mixed_topics() {
    range_case(
        &[("topic1", 3), ("topic2", 2)],
        &[
            ("consumer1", None, &["topic1"]),
            ("consumer2", None, &["topic1", "topic2"]),
            ("consumer3", None, &["topic1"]),
        ],
        3,
        &[
            ("consumer1", "topic1-0"),
            ("consumer2", "topic1-1, topic2-0, topic2-1"),
            ("consumer3", "topic1-2"),
        ],
    );
}

#[test]
fn range_two_consumers_two_topics_six_partitions() {
    range_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            ("consumer1", None, &["topic1", "topic2"]),
            ("consumer2", None, &["topic1", "topic2"]),
        ],
        3,
        &[
            ("consumer1", "topic1-0, topic1-1, topic2-0, topic2-1"),
            ("consumer2", "topic1-2, topic2-2"),
        ],
    );
}

#[test]
fn range_two_static_consumers_are_ordered_by_instance_id() {
    range_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            ("consumer-b", Some("instance1"), &["topic1", "topic2"]),
            ("consumer-a", Some("instance2"), &["topic1", "topic2"]),
        ],
        3,
        &[
            ("consumer-b", "topic1-0, topic1-1, topic2-0, topic2-1"),
            ("consumer-a", "topic1-2, topic2-2"),
        ],
    );
}

#[test]
fn range_static_consumers_come_before_dynamic_ones() {
    range_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            ("consumer-b", Some("instance1"), &["topic1", "topic2"]),
            ("consumer-a", None, &["topic1", "topic2"]),
        ],
        3,
        &[
            ("consumer-b", "topic1-0, topic1-1, topic2-0, topic2-1"),
            ("consumer-a", "topic1-2, topic2-2"),
        ],
    );
}

#[test]
fn range_static_member_assignment_persistent() {
    let both: &[&str] = &["topic1", "topic2"];
    let statics = [
        ("consumer1", Some("instance1"), both),
        ("consumer2", Some("instance2"), both),
        ("consumer3", Some("instance3"), both),
    ];
    let mut members = statics.to_vec();
    members.push(("consumer4", None, both));
    range_case(
        &[("topic1", 5), ("topic2", 4)],
        &members,
        5,
        &[
            ("consumer1", "topic1-0, topic1-1, topic2-0"),
            ("consumer2", "topic1-2, topic2-1"),
            ("consumer3", "topic1-3, topic2-2"),
            ("consumer4", "topic1-4, topic2-3"),
        ],
    );
    // The dynamic member is replaced; the static ones keep their ranges.
    let mut members = statics.to_vec();
    members.push(("consumer5", None, both));
    range_case(
        &[("topic1", 5), ("topic2", 4)],
        &members,
        5,
        &[
            ("consumer1", "topic1-0, topic1-1, topic2-0"),
            ("consumer2", "topic1-2, topic2-1"),
            ("consumer3", "topic1-3, topic2-2"),
            ("consumer5", "topic1-4, topic2-3"),
        ],
    );
}

#[test]
fn range_static_member_assignment_persistent_after_member_id_changes() {
    let both: &[&str] = &["topic1", "topic2"];
    let want = [
        ("instance1", "topic1-0, topic1-1, topic2-0, topic2-1"),
        ("instance2", "topic1-2, topic1-3, topic2-2, topic2-3"),
        ("instance3", "topic1-4, topic2-4"),
    ];
    for ids in [
        ["consumer1", "consumer2", "consumer3"],
        ["consumer1", "consumer5", "consumer4"],
    ] {
        let members: Vec<(&str, Option<&str>, &[&str])> = ids
            .iter()
            .zip(["instance1", "instance2", "instance3"])
            .map(|(&id, inst)| (id, Some(inst), both))
            .collect();
        let want: Vec<(&str, &str)> = ids.iter().zip(want).map(|(&id, (_, w))| (id, w)).collect();
        range_case(&[("topic1", 5), ("topic2", 5)], &members, 3, &want);
    }
}

/// Java's `RangeAssignorTest.verifyNonRackAwareAssignment`.
fn range_non_rack_aware(topic_spec: &[(&str, usize)], consumer_topics: &[&[&str]], want: &[&str]) {
    let plain = RangeAssignor::new();
    let prefer = RangeAssignor {
        prefer_rack_aware: true,
    };
    let v = |a: &RangeAssignor, rf, brokers: &[Option<&str>], consumers: &[Option<&str>], mm| {
        verify_rack_assignment(
            a,
            topic_spec,
            rf,
            brokers,
            consumers,
            consumer_topics,
            &[],
            want,
            mm,
        )
    };
    v(&plain, 3, &null_racks(3), &racks(3), -1);
    v(&plain, 3, &racks(3), &null_racks(3), -1);
    v(&plain, 3, &racks(3), &racks(3), 0);
    v(&plain, 4, &racks(4), &racks(3), 0);
    v(&plain, 3, &racks(3), &[Some("d"), Some("e"), Some("f")], -1);
    v(&plain, 3, &racks(3), &[None, Some("e"), Some("f")], -1);
    v(&prefer, 3, &racks(3), &racks(3), 0);
}

#[test]
fn range_rack_aware_uniform_subscription() {
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let all: &[&str] = &["t1", "t2", "t3"];
    let ct = [all, all, all];
    range_non_rack_aware(
        &spec,
        &ct,
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0",
            "t1-2, t1-3, t2-3, t2-4, t3-1",
            "t1-4, t1-5, t2-5, t2-6",
        ],
    );
    let a = RangeAssignor::new();
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-3, t2-0, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t3-0",
            "t1-2, t1-5, t2-2, t2-5, t3-1",
        ],
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-2, t2-0, t2-2, t2-3, t3-1",
            "t1-1, t1-3, t2-1, t2-4, t3-0",
            "t1-4, t1-5, t2-5, t2-6",
        ],
        1,
    );
    // One consumer on a rack with no partitions.
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0",
            "t1-2, t1-3, t2-3, t2-4, t3-1",
            "t1-4, t1-5, t2-5, t2-6",
        ],
        4,
    );
}

#[test]
fn range_rack_aware_non_equal_subscription() {
    let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
    let all: &[&str] = &["t1", "t2", "t3"];
    let ct = [all, all, &["t1", "t3"]];
    range_non_rack_aware(
        &spec,
        &ct,
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t2-3, t3-0",
            "t1-2, t1-3, t2-4, t2-5, t2-6, t3-1",
            "t1-4, t1-5",
        ],
    );
    let a = RangeAssignor::new();
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-3, t2-0, t2-2, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t2-5, t3-0",
            "t1-2, t1-5, t3-1",
        ],
        2,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-2, t2-0, t2-2, t2-3, t2-5, t3-1",
            "t1-1, t1-3, t2-1, t2-4, t2-6, t3-0",
            "t1-4, t1-5",
        ],
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t2-3, t3-0",
            "t1-2, t1-3, t2-4, t2-5, t2-6, t3-1",
            "t1-4, t1-5",
        ],
        2,
    );
}

#[test]
fn range_rack_aware_uniform_partitions_keep_co_partitioning() {
    let spec = [("t1", 5), ("t2", 5), ("t3", 5)];
    let all: &[&str] = &["t1", "t2", "t3"];
    let ct = [all, all, all];
    let non_rack_aware = [
        "t1-0, t1-1, t2-0, t2-1, t3-0, t3-1",
        "t1-2, t1-3, t2-2, t2-3, t3-2, t3-3",
        "t1-4, t2-4, t3-4",
    ];
    range_non_rack_aware(&spec, &ct, &non_rack_aware);
    let a = RangeAssignor::new();
    // Co-partitioning wins over rack alignment.
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &non_rack_aware,
        10,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &non_rack_aware,
        5,
    );
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &racks(3),
        &ct,
        &[],
        &non_rack_aware,
        3,
    );
}

#[test]
fn range_rack_aware_uniform_partitions_non_equal_subscription() {
    let spec = [("t1", 5), ("t2", 5), ("t3", 5)];
    let all: &[&str] = &["t1", "t2", "t3"];
    let ct = [all, all, &["t1", "t3"]];
    range_non_rack_aware(
        &spec,
        &ct,
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0, t3-1",
            "t1-2, t1-3, t2-3, t2-4, t3-2, t3-3",
            "t1-4, t3-4",
        ],
    );
    let a = RangeAssignor::new();
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-4, t3-0, t3-1",
            "t1-2, t1-3, t2-2, t2-3, t3-2, t3-3",
            "t1-4, t3-4",
        ],
        9,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(3),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-2, t2-0, t2-1, t2-3, t3-2",
            "t1-0, t1-3, t2-2, t2-4, t3-0, t3-3",
            "t1-1, t1-4, t3-1, t3-4",
        ],
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &racks(3),
        &ct,
        &[],
        &[
            "t1-0, t1-1, t2-0, t2-1, t2-2, t3-0, t3-1",
            "t1-2, t1-3, t2-3, t2-4, t3-2, t3-3",
            "t1-4, t3-4",
        ],
        2,
    );
}

#[test]
fn range_rack_aware_co_partitioning() {
    let spec = [("t1", 6), ("t2", 6), ("t3", 2), ("t4", 2)];
    let consumer_racks = [Some("a"), Some("b"), Some("b"), Some("a")];
    let a = RangeAssignor::new();
    let ct: [&[&str]; 4] = [&["t1", "t2"], &["t1", "t2"], &["t3", "t4"], &["t3", "t4"]];
    let non_rack_aware = [
        "t1-0, t1-1, t1-2, t2-0, t2-1, t2-2",
        "t1-3, t1-4, t1-5, t2-3, t2-4, t2-5",
        "t3-0, t4-0",
        "t3-1, t4-1",
    ];
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        -1,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &[
            "t1-0, t1-2, t1-4, t2-0, t2-2, t2-4",
            "t1-1, t1-3, t1-5, t2-1, t2-3, t2-5",
            "t3-1, t4-1",
            "t3-0, t4-0",
        ],
        0,
    );

    let all: &[&str] = &["t1", "t2", "t3", "t4"];
    let ct = [all, all, all, all];
    let non_rack_aware = [
        "t1-0, t1-1, t2-0, t2-1, t3-0, t4-0",
        "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1",
        "t1-4, t2-4",
        "t1-5, t2-5",
    ];
    verify_rack_assignment(
        &a,
        &spec,
        3,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        -1,
    );
    verify_rack_assignment(
        &a,
        &spec,
        2,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(2),
        &consumer_racks,
        &ct,
        &[],
        &[
            "t1-0, t1-2, t2-0, t2-2, t3-0, t4-0",
            "t1-1, t1-3, t2-1, t2-3, t3-1, t4-1",
            "t1-5, t2-5",
            "t1-4, t2-4",
        ],
        0,
    );
    verify_rack_assignment(
        &a,
        &spec,
        1,
        &racks(3),
        &consumer_racks,
        &ct,
        &[],
        &[
            "t1-0, t1-3, t2-0, t2-3, t3-0, t4-0",
            "t1-1, t1-4, t2-1, t2-4, t3-1, t4-1",
            "t1-2, t2-2",
            "t1-5, t2-5",
        ],
        6,
    );
}

#[test]
fn range_co_partitioned_assignment_with_same_subscription() {
    let spec = [
        ("t1", 6),
        ("t2", 6),
        ("t3", 2),
        ("t4", 2),
        ("t5", 4),
        ("t6", 4),
    ];
    let list: &[&str] = &["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
    let ct = [list, list, list];
    let consumer_racks = racks(3);
    let non_rack_aware = [
        "t1-0, t1-1, t2-0, t2-1, t3-0, t4-0, t5-0, t5-1, t6-0, t6-1",
        "t1-2, t1-3, t2-2, t2-3, t3-1, t4-1, t5-2, t6-2",
        "t1-4, t1-5, t2-4, t2-5, t5-3, t6-3",
    ];
    let plain = RangeAssignor::new();
    verify_rack_assignment(
        &plain,
        &spec,
        3,
        &null_racks(3),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        -1,
    );
    let prefer = RangeAssignor {
        prefer_rack_aware: true,
    };
    verify_rack_assignment(
        &prefer,
        &spec,
        3,
        &racks(3),
        &consumer_racks,
        &ct,
        &[],
        &non_rack_aware,
        0,
    );
    verify_rack_assignment(
        &prefer,
        &spec,
        2,
        &racks(3),
        &consumer_racks,
        &ct,
        &[],
        &[
            "t1-0, t1-2, t2-0, t2-2, t3-0, t4-0, t5-1, t6-1",
            "t1-1, t1-3, t2-1, t2-3, t3-1, t4-1, t5-2, t6-2",
            "t1-4, t1-5, t2-4, t2-5, t5-0, t5-3, t6-0, t6-3",
        ],
        0,
    );
}
