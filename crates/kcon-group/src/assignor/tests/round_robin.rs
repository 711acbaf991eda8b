//! The roundrobin assignor: the Java client's `RoundRobinAssignorTest` cases.

use super::*;

// ---------------------------------------------------------------------------------------------
// Roundrobin (RoundRobinAssignorTest)
// ---------------------------------------------------------------------------------------------

fn round_robin_case(
    topic_spec: &[(&str, usize)],
    members: &[MemberSubscription],
    want: &[(&str, &str)],
) {
    assert_eq!(
        run(&RoundRobinAssignor::new(), members, &topics(topic_spec)),
        expected(want)
    );
}

#[test]
fn round_robin_standard_cases() {
    round_robin_case(&[], &[member("consumer", sub(&[]))], &[("consumer", "")]);
    round_robin_case(
        &[],
        &[member("consumer", sub(&["topic"]))],
        &[("consumer", "")],
    );
    round_robin_case(
        &[("topic", 3)],
        &[member("consumer", sub(&["topic"]))],
        &[("consumer", "topic-0, topic-1, topic-2")],
    );
    round_robin_case(
        &[("topic", 3), ("other", 3)],
        &[member("consumer", sub(&["topic"]))],
        &[("consumer", "topic-0, topic-1, topic-2")],
    );
    round_robin_case(
        &[("topic1", 1), ("topic2", 2)],
        &[member("consumer", sub(&["topic1", "topic2"]))],
        &[("consumer", "topic1-0, topic2-0, topic2-1")],
    );
    round_robin_case(
        &[("topic", 1)],
        &[
            member("consumer1", sub(&["topic"])),
            member("consumer2", sub(&["topic"])),
        ],
        &[("consumer1", "topic-0"), ("consumer2", "")],
    );
    round_robin_case(
        &[("topic", 2)],
        &[
            member("consumer1", sub(&["topic"])),
            member("consumer2", sub(&["topic"])),
        ],
        &[("consumer1", "topic-0"), ("consumer2", "topic-1")],
    );
    // testMultipleConsumersMixedTopics: consumer2 is skipped for... nothing; consumers 1 and
    // 3 are skipped for topic2.
    round_robin_case(
        &[("topic1", 3), ("topic2", 2)],
        &[
            member("consumer1", sub(&["topic1"])),
            member("consumer2", sub(&["topic1", "topic2"])),
            member("consumer3", sub(&["topic1"])),
        ],
        &[
            ("consumer1", "topic1-0"),
            ("consumer2", "topic1-1, topic2-0, topic2-1"),
            ("consumer3", "topic1-2"),
        ],
    );
    round_robin_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            member("consumer1", sub(&["topic1", "topic2"])),
            member("consumer2", sub(&["topic1", "topic2"])),
        ],
        &[
            ("consumer1", "topic1-0, topic1-2, topic2-1"),
            ("consumer2", "topic1-1, topic2-0, topic2-2"),
        ],
    );
}

#[test]
fn round_robin_static_members() {
    let both = &["topic1", "topic2"];
    // testTwoStaticConsumersTwoTopicsSixPartitions.
    round_robin_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            static_member("consumer-b", "instance1", sub(both)),
            static_member("consumer-a", "instance2", sub(both)),
        ],
        &[
            ("consumer-b", "topic1-0, topic1-2, topic2-1"),
            ("consumer-a", "topic1-1, topic2-0, topic2-2"),
        ],
    );
    // testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions.
    round_robin_case(
        &[("topic1", 3), ("topic2", 3)],
        &[
            static_member("consumer-b", "instance1", sub(both)),
            member("consumer-a", sub(both)),
        ],
        &[
            ("consumer-b", "topic1-0, topic1-2, topic2-1"),
            ("consumer-a", "topic1-1, topic2-0, topic2-2"),
        ],
    );
    // testStaticMemberRoundRobinAssignmentPersistent.
    for dynamic in ["consumer4", "consumer5"] {
        round_robin_case(
            &[("topic1", 3), ("topic2", 3)],
            &[
                static_member("consumer1", "instance1", sub(both)),
                static_member("consumer2", "instance2", sub(both)),
                static_member("consumer3", "instance3", sub(both)),
                member(dynamic, sub(both)),
            ],
            &[
                ("consumer1", "topic1-0, topic2-1"),
                ("consumer2", "topic1-1, topic2-2"),
                ("consumer3", "topic1-2"),
                (dynamic, "topic2-0"),
            ],
        );
    }
    // testStaticMemberRoundRobinAssignmentPersistentAfterMemberIdChanges.
    for ids in [
        ["consumer1", "consumer2", "consumer3"],
        ["consumer1", "consumer5", "consumer4"],
    ] {
        round_robin_case(
            &[("topic1", 5), ("topic2", 5)],
            &[
                static_member(ids[0], "instance1", sub(both)),
                static_member(ids[1], "instance2", sub(both)),
                static_member(ids[2], "instance3", sub(both)),
            ],
            &[
                (ids[0], "topic1-0, topic1-3, topic2-1, topic2-4"),
                (ids[1], "topic1-1, topic1-4, topic2-2"),
                (ids[2], "topic1-2, topic2-0, topic2-3"),
            ],
        );
    }
}

#[test]
fn round_robin_ignores_racks() {
    // KIP-881 left roundrobin alone: racks change nothing.
    let mut t = topics(&[("t", 4)]);
    for (i, p) in t.get_mut("t").unwrap().iter_mut().enumerate() {
        p.replica_racks = vec![["a", "b"][i % 2].to_owned()];
    }
    let on = |rack: &str, id: &str| {
        member(
            id,
            Subscription {
                rack_id: Some(rack.to_owned()),
                ..sub(&["t"])
            },
        )
    };
    assert_eq!(
        run(
            &RoundRobinAssignor::new(),
            &[on("b", "c1"), on("a", "c2")],
            &t
        ),
        expected(&[("c1", "t-0, t-2"), ("c2", "t-1, t-3")])
    );
}
