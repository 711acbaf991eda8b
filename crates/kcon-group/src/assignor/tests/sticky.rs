//! The sticky and cooperative-sticky assignors: the Java client's `AbstractStickyAssignorTest`,
//! `StickyAssignorTest` and `CooperativeStickyAssignorTest` cases.

use super::*;

// ---------------------------------------------------------------------------------------------
// Sticky and cooperative-sticky (AbstractStickyAssignorTest and subclasses)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Sticky,
    Cooperative,
}

const FLAVOURS: [Flavour; 2] = [Flavour::Sticky, Flavour::Cooperative];

/// One sticky test's set-up: the flavour and Java's `initializeRacks(rackConfig)` (3-way
/// replication, 3 racks, rack-aware logic forced).
#[derive(Debug, Clone, Copy)]
struct StickyTest {
    flavour: Flavour,
    racks: Racks,
    /// Java's `nextPartitionIndex`: each topic's replicas start one broker further.
    next_topic: usize,
}

impl StickyTest {
    fn all() -> Vec<StickyTest> {
        FLAVOURS
            .iter()
            .flat_map(|&flavour| {
                RACK_CONFIGS.iter().map(move |&config| StickyTest {
                    flavour,
                    racks: Racks::new(config, 3),
                    next_topic: 0,
                })
            })
            .collect()
    }

    fn assignor(&self) -> Box<dyn Assignor> {
        match self.flavour {
            Flavour::Sticky => Box::new(StickyAssignor {
                prefer_rack_aware: true,
            }),
            Flavour::Cooperative => Box::new(CooperativeStickyAssignor {
                prefer_rack_aware: true,
            }),
        }
    }

    fn topics(&mut self, spec: &[(&str, usize)]) -> TopicPartitions {
        spec.iter()
            .map(|&(name, n)| {
                let partitions = self.racks.partitions(n, self.next_topic);
                self.next_topic += 1;
                (name.to_owned(), partitions)
            })
            .collect()
    }

    /// Java's `subscription(topics, consumerIndex)`: nothing owned, no generation.
    fn fresh(&self, topics: &[&str], index: usize) -> Subscription {
        Subscription {
            rack_id: self.racks.consumer_rack(index),
            ..sub(topics)
        }
    }

    /// Java's `buildSubscriptionV2Above`: owned partitions and generation, in the user data
    /// as well for sticky (whose version has no rack).
    fn owning(
        &self,
        topics: &[&str],
        owned: &[TopicPartition],
        generation: i32,
        index: usize,
    ) -> Subscription {
        match self.flavour {
            Flavour::Sticky => Subscription {
                user_data: StickyAssignor::new().user_data(owned, generation),
                owned_partitions: owned.to_vec(),
                generation_id: generation,
                ..sub(topics)
            },
            Flavour::Cooperative => Subscription {
                user_data: CooperativeStickyAssignor::new().user_data(owned, generation),
                owned_partitions: owned.to_vec(),
                generation_id: generation,
                rack_id: self.racks.consumer_rack(index),
                ..sub(topics)
            },
        }
    }

    /// The assignment, settled as Java's `CooperativeStickyAssignorTest.verifyValidityAndBalance`
    /// settles it: for cooperative-sticky, rebalance again (members owning what they were
    /// given, generation 1) while anything is revoked, at most 4 times. Also checks Java's
    /// validity and balance rules.
    fn settle(
        &self,
        members: &mut [MemberSubscription],
        t: &TopicPartitions,
        mut got: Sets,
    ) -> Sets {
        let a = self.assignor();
        let mut rebalances = 0;
        while self.flavour == Flavour::Cooperative && revokes(members, &got) {
            for m in members.iter_mut() {
                let mut s = self.owning(&[], &owned_list(&got, &m.member_id), 1, 0);
                s.topics = m.subscription.topics.clone();
                s.rack_id = m.subscription.rack_id.clone();
                m.subscription = s;
            }
            got = run(a.as_ref(), members, t);
            rebalances += 1;
            assert!(rebalances <= 4, "cooperative rebalances do not settle");
        }
        verify_validity_and_balance(members, &got);
        got
    }

    /// Runs one round and settles it.
    fn round(&self, members: &mut [MemberSubscription], t: &TopicPartitions) -> Sets {
        let got = run(self.assignor().as_ref(), members, t);
        self.settle(members, t, got)
    }
}

/// Whether any member loses a partition it owns (Java's `verifyCooperativeValidity`, which
/// also asserts that no partition is revoked and assigned elsewhere in the same round).
fn revokes(members: &[MemberSubscription], got: &Sets) -> bool {
    let mut added = BTreeSet::new();
    let mut revoked = BTreeSet::new();
    for m in members {
        let owned: BTreeSet<TopicPartition> =
            m.subscription.owned_partitions.iter().cloned().collect();
        let assigned = &got[&m.member_id];
        added.extend(assigned.difference(&owned).cloned());
        revoked.extend(owned.difference(assigned).cloned());
    }
    assert!(
        added.is_disjoint(&revoked),
        "partitions revoked and reassigned in the same round: {:?}",
        added.intersection(&revoked).collect::<Vec<_>>()
    );
    !revoked.is_empty()
}

/// Java's `AbstractStickyAssignorTest.verifyValidityAndBalance`: members get only partitions
/// of topics they subscribe to, no partition twice, and two members whose counts differ by
/// more than one share no topic.
pub(super) fn verify_validity_and_balance(members: &[MemberSubscription], got: &Sets) {
    let mut seen = BTreeSet::new();
    for m in members {
        for p in &got[&m.member_id] {
            assert!(
                m.subscription.topics.contains(&p.topic),
                "{p} assigned to {} which does not subscribe to it",
                m.member_id
            );
            assert!(seen.insert(p.clone()), "{p} assigned twice");
        }
    }
    for a in members {
        for b in members {
            let (pa, pb) = (&got[&a.member_id], &got[&b.member_id]);
            if pa.len() > pb.len() + 1 {
                let ta: BTreeSet<&str> = pa.iter().map(|p| p.topic.as_str()).collect();
                assert!(
                    !pb.iter().any(|p| ta.contains(p.topic.as_str())),
                    "{} ({}) could give a partition to {} ({}): {got:?}",
                    a.member_id,
                    pa.len(),
                    b.member_id,
                    pb.len()
                );
            }
        }
    }
}

fn fully_balanced(got: &Sets) -> bool {
    let min = got.values().map(BTreeSet::len).min().unwrap_or(0);
    let max = got.values().map(BTreeSet::len).max().unwrap_or(0);
    max <= min + 1
}

#[test]
fn sticky_single_consumer_cases() {
    for mut s in StickyTest::all() {
        // testOneConsumerNoTopic, testOneConsumerNonexistentTopic.
        let t = s.topics(&[]);
        let got = s.round(&mut [member("consumer", s.fresh(&[], 0))], &t);
        assert_eq!(got, expected(&[("consumer", "")]));
        let got = s.round(&mut [member("consumer", s.fresh(&["topic"], 0))], &t);
        assert_eq!(got, expected(&[("consumer", "")]));
        // testOneConsumerOneTopic.
        let t = s.topics(&[("topic", 3)]);
        let got = s.round(&mut [member("consumer", s.fresh(&["topic"], 0))], &t);
        assert_eq!(got, expected(&[("consumer", "topic-0, topic-1, topic-2")]));
        // testOnlyAssignsPartitionsFromSubscribedTopics: owned partitions of other topics
        // are dropped.
        let t = s.topics(&[("topic", 2)]);
        let owned = tps("topic-0, topic-1, other-0, other-1");
        let got = s.round(
            &mut [member("consumer", s.owning(&["topic"], &owned, 1, 0))],
            &t,
        );
        assert_eq!(got, expected(&[("consumer", "topic-0, topic-1")]));
        // testOneConsumerMultipleTopics.
        let t = s.topics(&[("topic1", 1), ("topic2", 2)]);
        let got = s.round(
            &mut [member("consumer", s.fresh(&["topic1", "topic2"], 0))],
            &t,
        );
        assert_eq!(
            got,
            expected(&[("consumer", "topic1-0, topic2-0, topic2-1")])
        );
        // testAssignmentUpdatedForDeletedTopic.
        let t = s.topics(&[("topic1", 1), ("topic3", 100)]);
        let got = s.round(
            &mut [member(
                "consumer",
                s.fresh(&["topic1", "topic2", "topic3"], 0),
            )],
            &t,
        );
        assert_eq!(got["consumer"].len(), 101);
        // testNoExceptionThrownWhenOnlySubscribedTopicDeleted.
        let owned = tps("topic-0, topic-1, topic-2");
        let got = s.round(
            &mut [member("consumer", s.owning(&["topic"], &owned, 1, 0))],
            &TopicPartitions::new(),
        );
        assert_eq!(got, expected(&[("consumer", "")]));
    }
}

#[test]
fn sticky_two_consumers_fresh() {
    for mut s in StickyTest::all() {
        let a = s.assignor();
        // testTwoConsumersOneTopicOnePartition.
        let t = s.topics(&[("topic", 1)]);
        let mut ms = [
            member("consumer1", s.fresh(&["topic"], 0)),
            member("consumer2", s.fresh(&["topic"], 1)),
        ];
        let got = s.round(&mut ms, &t);
        assert!(fully_balanced(&got));
        // testTwoConsumersOneTopicTwoPartitions.
        let t = s.topics(&[("topic", 2)]);
        let got = run(a.as_ref(), &ms, &t);
        assert_eq!(
            got,
            expected(&[("consumer1", "topic-0"), ("consumer2", "topic-1")])
        );
        // testTwoConsumersTwoTopicsSixPartitions.
        let t = s.topics(&[("topic1", 3), ("topic2", 3)]);
        let both = &["topic1", "topic2"];
        let ms = [
            member("consumer1", s.fresh(both, 0)),
            member("consumer2", s.fresh(both, 1)),
        ];
        assert_eq!(
            run(a.as_ref(), &ms, &t),
            expected(&[
                ("consumer1", "topic1-0, topic1-2, topic2-1"),
                ("consumer2", "topic1-1, topic2-0, topic2-2")
            ])
        );
        // testMultipleConsumersMixedTopicSubscriptions (the general builder).
        let t = s.topics(&[("topic1", 3), ("topic2", 2)]);
        let ms = [
            member("consumer1", s.fresh(&["topic1"], 0)),
            member("consumer2", s.fresh(&["topic1", "topic2"], 1)),
            member("consumer3", s.fresh(&["topic1"], 2)),
        ];
        assert_eq!(
            run(a.as_ref(), &ms, &t),
            expected(&[
                ("consumer1", "topic1-0, topic1-2"),
                ("consumer2", "topic2-0, topic2-1"),
                ("consumer3", "topic1-1")
            ]),
            "{s:?}"
        );
    }
}

#[test]
fn sticky_quota_cases() {
    for mut s in StickyTest::all() {
        let a = s.assignor();
        let both = &["topic1", "topic2"];
        // testConsumerOwningMinQuotaExpectedMaxQuota.
        let t = s.topics(&[("topic1", 2), ("topic2", 3)]);
        let mut ms = [
            member(
                "consumer1",
                s.owning(both, &tps("topic1-0, topic2-1"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &tps("topic1-1, topic2-2"), 1, 1),
            ),
        ];
        let got = run(a.as_ref(), &ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0, topic2-1, topic2-0"),
                ("consumer2", "topic1-1, topic2-2")
            ])
        );
        s.settle(&mut ms, &t, got);

        // testMaxQuotaConsumerMoreThanNumExpectedMaxCapacityMembers: topic2-0 moves from
        // consumer1 to consumer3, so cooperative-sticky withholds it for a round.
        let t = s.topics(&[("topic1", 2), ("topic2", 2)]);
        let mut ms = [
            member(
                "consumer1",
                s.owning(both, &tps("topic1-0, topic2-0"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &tps("topic1-1, topic2-1"), 1, 1),
            ),
            member("consumer3", s.owning(both, &[], 1, 2)),
        ];
        let got = run(a.as_ref(), &ms, &t);
        let moved = if s.flavour == Flavour::Sticky {
            "topic2-0"
        } else {
            ""
        };
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0"),
                ("consumer2", "topic1-1, topic2-1"),
                ("consumer3", moved)
            ])
        );
        let got = s.settle(&mut ms, &t, got);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0"),
                ("consumer2", "topic1-1, topic2-1"),
                ("consumer3", "topic2-0")
            ])
        );

        // testAllConsumersAreUnderMinQuota.
        let t = s.topics(&[("topic1", 2), ("topic2", 3)]);
        let mut ms = [
            member("consumer1", s.owning(both, &tps("topic1-0"), 1, 0)),
            member("consumer2", s.owning(both, &tps("topic1-1"), 1, 1)),
            member("consumer3", s.owning(both, &[], 1, 2)),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0, topic2-1"),
                ("consumer2", "topic1-1, topic2-2"),
                ("consumer3", "topic2-0")
            ])
        );

        // testAllConsumersReachExpectedQuotaAndAreConsideredFilled.
        let t = s.topics(&[("topic", 4)]);
        let mut ms = [
            member(
                "consumer1",
                s.owning(&["topic"], &tps("topic-0, topic-1"), 1, 0),
            ),
            member("consumer2", s.owning(&["topic"], &tps("topic-2"), 1, 1)),
            member("consumer3", s.owning(&["topic"], &[], 1, 2)),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic-0, topic-1"),
                ("consumer2", "topic-2"),
                ("consumer3", "topic-3")
            ])
        );
    }
}

#[test]
fn sticky_add_and_remove_consumers() {
    for mut s in StickyTest::all() {
        let a = s.assignor();
        // testAddRemoveConsumerOneTopic.
        let t = s.topics(&[("topic", 3)]);
        let got = s.round(&mut [member("consumer1", s.fresh(&["topic"], 0))], &t);
        assert_eq!(got, expected(&[("consumer1", "topic-0, topic-1, topic-2")]));
        let mut ms = [
            member(
                "consumer1",
                s.owning(&["topic"], &owned_list(&got, "consumer1"), 1, 0),
            ),
            member("consumer2", s.owning(&["topic"], &[], 1, 1)),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[("consumer1", "topic-0, topic-1"), ("consumer2", "topic-2")])
        );
        let mut ms = [member(
            "consumer2",
            s.owning(&["topic"], &owned_list(&got, "consumer2"), 1, 1),
        )];
        let got = s.round(&mut ms, &t);
        assert_eq!(got, expected(&[("consumer2", "topic-0, topic-1, topic-2")]));

        // testAddRemoveTwoConsumersTwoTopics.
        let t = s.topics(&[("topic1", 3), ("topic2", 4)]);
        let both = &["topic1", "topic2"];
        let mut ms = vec![
            member("consumer1", s.fresh(both, 0)),
            member("consumer2", s.fresh(both, 1)),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0, topic1-2, topic2-1, topic2-3"),
                ("consumer2", "topic1-1, topic2-0, topic2-2")
            ])
        );
        let mut ms = vec![
            member(
                "consumer1",
                s.owning(both, &owned_list(&got, "consumer1"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &owned_list(&got, "consumer2"), 1, 1),
            ),
            member("consumer3", s.owning(both, &[], 1, 2)),
            member("consumer4", s.owning(both, &[], 1, 3)),
        ];
        let first = run(a.as_ref(), &ms, &t);
        if s.flavour == Flavour::Cooperative {
            // Java: partitionsTransferringOwnership = {topic1-2: c3, topic2-3: c3, topic2-2: c4}.
            assert_eq!(
                first,
                expected(&[
                    ("consumer1", "topic1-0, topic2-1"),
                    ("consumer2", "topic1-1, topic2-0"),
                    ("consumer3", ""),
                    ("consumer4", "")
                ])
            );
        }
        let got = s.settle(&mut ms, &t, first);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic1-0, topic2-1"),
                ("consumer2", "topic1-1, topic2-0"),
                ("consumer3", "topic1-2, topic2-3"),
                ("consumer4", "topic2-2")
            ])
        );
        let mut ms = vec![
            member(
                "consumer3",
                s.owning(both, &owned_list(&got, "consumer3"), 1, 2),
            ),
            member(
                "consumer4",
                s.owning(both, &owned_list(&got, "consumer4"), 1, 3),
            ),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer3", "topic1-2, topic2-3, topic1-0, topic2-1"),
                ("consumer4", "topic2-2, topic1-1, topic2-0")
            ])
        );
    }
}

#[test]
fn sticky_topic_balance_after_reassignment() {
    // testTopicBalanceAfterReassignment: each member keeps an even share of each topic.
    for mut s in StickyTest::all() {
        let t = s.topics(&[("topic1", 12), ("topic2", 12)]);
        let both = &["topic1", "topic2"];
        let per_topic = |got: &Sets, n: usize| {
            for ps in got.values() {
                for topic in both {
                    assert_eq!(
                        ps.iter().filter(|p| p.topic == *topic).count(),
                        n,
                        "{got:?}"
                    );
                }
            }
        };
        let got = s.round(&mut [member("consumer1", s.fresh(both, 0))], &t);
        per_topic(&got, 12);
        let mut ms = vec![
            member(
                "consumer1",
                s.owning(both, &owned_list(&got, "consumer1"), 1, 0),
            ),
            member("consumer2", s.owning(both, &[], 1, 1)),
        ];
        let got = s.round(&mut ms, &t);
        per_topic(&got, 6);
        let mut ms = vec![
            member(
                "consumer1",
                s.owning(both, &owned_list(&got, "consumer1"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &owned_list(&got, "consumer2"), 1, 1),
            ),
            member("consumer3", s.owning(both, &[], 1, 2)),
            member("consumer4", s.owning(both, &[], 1, 3)),
        ];
        let got = s.round(&mut ms, &t);
        per_topic(&got, 3);
        let mut ms = vec![
            member(
                "consumer3",
                s.owning(both, &owned_list(&got, "consumer3"), 1, 2),
            ),
            member(
                "consumer4",
                s.owning(both, &owned_list(&got, "consumer4"), 1, 3),
            ),
        ];
        let got = s.round(&mut ms, &t);
        per_topic(&got, 6);
    }
}

#[test]
fn sticky_add_remove_topic_two_consumers() {
    // testAddRemoveTopicTwoConsumers.
    for mut s in StickyTest::all() {
        let t1 = s.topics(&[("topic", 3)]);
        let mut ms = [
            member("consumer1", s.fresh(&["topic"], 0)),
            member("consumer2", s.fresh(&["topic"], 1)),
        ];
        let r1 = s.round(&mut ms, &t1);
        let mut t2 = t1.clone();
        t2.extend(s.topics(&[("topic2", 3)]));
        let both = &["topic", "topic2"];
        let mut ms = [
            member(
                "consumer1",
                s.owning(both, &owned_list(&r1, "consumer1"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &owned_list(&r1, "consumer2"), 1, 1),
            ),
        ];
        let r2 = s.round(&mut ms, &t2);
        for c in ["consumer1", "consumer2"] {
            assert_eq!(r2[c].len(), 3);
            assert!(r2[c].is_superset(&r1[c]), "stickiness");
        }
        t2.remove("topic");
        let mut ms = [
            member(
                "consumer1",
                s.owning(&["topic2"], &owned_list(&r2, "consumer1"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(&["topic2"], &owned_list(&r2, "consumer2"), 1, 1),
            ),
        ];
        let r3 = s.round(&mut ms, &t2);
        for c in ["consumer1", "consumer2"] {
            assert!(r2[c].is_superset(&r3[c]), "stickiness");
        }
        assert!(fully_balanced(&r3));
    }
}

#[test]
fn sticky_generations_settle_conflicts() {
    for mut s in StickyTest::all() {
        let a = s.assignor();
        let both = &["topic", "topic2"];
        // testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration and ...WithNoGeneration.
        for stale in [9, -1] {
            let t = s.topics(&[("topic", 3), ("topic2", 3)]);
            let claim = tps("topic-0, topic-2, topic2-1");
            let mut ms = [
                member("consumer1", s.owning(both, &claim, 10, 0)),
                member("consumer2", s.owning(both, &claim, stale, 1)),
            ];
            let got = s.round(&mut ms, &t);
            assert_eq!(
                got,
                expected(&[
                    ("consumer1", "topic-0, topic-2, topic2-1"),
                    ("consumer2", "topic-1, topic2-0, topic2-2")
                ])
            );
        }
        // testOwnedPartitionsAreInvalidatedForConsumerWithMultipleGeneration.
        let t = s.topics(&[("topic", 3), ("topic2", 3)]);
        let mut ms = [
            member(
                "consumer1",
                s.owning(both, &tps("topic-0, topic2-1, topic-1"), 10, 0),
            ),
            member(
                "consumer2",
                s.owning(both, &tps("topic-0, topic2-1, topic2-2"), 8, 1),
            ),
        ];
        let got = s.round(&mut ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic-0, topic2-1, topic-1"),
                ("consumer2", "topic-2, topic2-2, topic2-0")
            ])
        );
        // testEnsurePartitionsAssignedToHighestGeneration.
        let three = &["topic", "topic2", "topic3"];
        let t = s.topics(&[("topic", 3), ("topic2", 3), ("topic3", 3)]);
        let mut ms = [
            member(
                "consumer1",
                s.owning(three, &tps("topic-0, topic2-0, topic3-0"), 10, 0),
            ),
            member(
                "consumer2",
                s.owning(three, &tps("topic-1, topic2-1, topic3-1"), 9, 1),
            ),
            member(
                "consumer3",
                s.owning(three, &tps("topic2-1, topic3-0, topic3-2"), 8, 1),
            ),
        ];
        let got = run(a.as_ref(), &ms, &t);
        assert_eq!(
            got,
            expected(&[
                ("consumer1", "topic-0, topic2-0, topic3-0"),
                ("consumer2", "topic-1, topic2-1, topic3-1"),
                ("consumer3", "topic-2, topic2-2, topic3-2")
            ])
        );
        s.settle(&mut ms, &t, got);
        // testNoReassignmentOnCurrentMembers.
        let four = &["topic", "topic2", "topic3", "topic1"];
        let t = s.topics(&[("topic", 3), ("topic1", 3), ("topic2", 3), ("topic3", 3)]);
        let mut ms = [
            member("consumer1", s.owning(four, &[], -1, 0)),
            member(
                "consumer2",
                s.owning(four, &tps("topic-0, topic2-0, topic1-0"), 9, 1),
            ),
            member(
                "consumer3",
                s.owning(four, &tps("topic3-2, topic2-2, topic1-1"), 8, 2),
            ),
            member(
                "consumer4",
                s.owning(four, &tps("topic3-1, topic-1, topic-2"), 7, 3),
            ),
        ];
        let got = run(a.as_ref(), &ms, &t);
        assert_eq!(
            got["consumer1"],
            tps("topic1-2, topic2-1, topic3-0").into_iter().collect()
        );
        let got = s.settle(&mut ms, &t, got);
        assert!(fully_balanced(&got));
    }
}

#[test]
fn sticky_partition_claimed_twice_in_one_generation() {
    for mut s in StickyTest::all() {
        let a = s.assignor();
        // Java's ...ClaimedByMultipleConsumersInSameGeneration cases: topic-0 is claimed by
        // consumer1 and consumer2 in generation 1, so neither keeps it.
        for (n, c1) in [(3, "topic-1"), (4, "topic-1, topic-3")] {
            let t = s.topics(&[("topic", n)]);
            let mut ms = [
                member(
                    "consumer1",
                    s.owning(&["topic"], &tps("topic-0, topic-1"), 1, 0),
                ),
                member(
                    "consumer2",
                    s.owning(&["topic"], &tps("topic-0, topic-2"), 1, 1),
                ),
                member("consumer3", s.owning(&["topic"], &[], 1, 2)),
            ];
            let got = run(a.as_ref(), &ms, &t);
            // Cooperative-sticky must not hand it out while both may still hold it.
            let c3 = if s.flavour == Flavour::Sticky {
                "topic-0"
            } else {
                ""
            };
            assert_eq!(
                got,
                expected(&[
                    ("consumer1", c1),
                    ("consumer2", "topic-2"),
                    ("consumer3", c3)
                ])
            );
            s.settle(&mut ms, &t, got);
        }
    }
}

#[test]
fn sticky_multiple_generations() {
    // StickyAssignorTest.testAssignmentWithMultipleGenerations1, both subscription shapes.
    for mut s in StickyTest::all() {
        for all_equal in [true, false] {
            let all: &[&str] = &["topic", "topic2"];
            let c2_topics: &[&str] = if all_equal { all } else { &["topic"] };
            let t = s.topics(&[("topic", 6), ("topic2", 6)]);
            let mut ms = vec![
                member("consumer1", s.fresh(all, 0)),
                member("consumer2", s.fresh(c2_topics, 1)),
                member("consumer3", s.fresh(all, 2)),
            ];
            let r1 = s.round(&mut ms, &t);
            assert!(r1.values().all(|p| p.len() == 4), "{r1:?}");
            let mut ms = vec![
                member(
                    "consumer1",
                    s.owning(all, &owned_list(&r1, "consumer1"), 1, 0),
                ),
                member(
                    "consumer2",
                    s.owning(c2_topics, &owned_list(&r1, "consumer2"), 1, 1),
                ),
            ];
            let r2 = s.round(&mut ms, &t);
            assert!(r2.values().all(|p| p.len() == 6), "{r2:?}");
            if all_equal {
                assert!(r2["consumer1"].is_superset(&r1["consumer1"]));
            }
            assert!(r2["consumer2"].is_superset(&r1["consumer2"]));
            assert!(!r2["consumer2"].is_disjoint(&r1["consumer3"]));
            let mut ms = vec![
                member(
                    "consumer2",
                    s.owning(c2_topics, &owned_list(&r2, "consumer2"), 2, 1),
                ),
                member(
                    "consumer3",
                    s.owning(all, &owned_list(&r1, "consumer3"), 1, 2),
                ),
            ];
            let r3 = s.round(&mut ms, &t);
            assert!(r3.values().all(|p| p.len() == 6), "{r3:?}");
        }
    }
}

#[test]
fn sticky_conflicting_previous_generations() {
    // StickyAssignorTest.testAssignmentWithConflictingPreviousGenerations.
    for mut s in StickyTest::all() {
        for all_equal in [true, false] {
            let all: &[&str] = &["topic", "topic2", "topic3"];
            let c1_topics: &[&str] = if all_equal { all } else { &["topic"] };
            let c2_topics: &[&str] = if all_equal { all } else { &["topic", "topic2"] };
            let t = s.topics(&[("topic", 4), ("topic2", 4), ("topic3", 4)]);
            let c1 = if all_equal {
                tps("topic-0, topic-1, topic-2, topic2-2, topic2-3, topic3-0")
            } else {
                tps("topic-0, topic-1, topic-2, topic-3")
            };
            let c2 = tps("topic-0, topic-1, topic2-0, topic2-1, topic2-2, topic2-3");
            let c3 = tps("topic-2, topic-3, topic3-0, topic3-1, topic3-2, topic3-3");
            let mut ms = vec![
                member("consumer1", s.owning(c1_topics, &c1, 1, 0)),
                member("consumer2", s.owning(c2_topics, &c2, 2, 1)),
                member("consumer3", s.owning(all, &c3, 2, 2)),
            ];
            let got = s.round(&mut ms, &t);
            assert!(got.values().all(|p| p.len() == 4), "{got:?}");
            if s.flavour == Flavour::Sticky {
                // (The cooperative rounds re-own, so Java only checks this for sticky.)
                assert!(got["consumer2"].iter().all(|p| c2.contains(p)));
                assert!(got["consumer3"].iter().all(|p| c3.contains(p)));
            }
        }
    }
}

#[test]
fn sticky_reads_old_user_data_and_subscriptions() {
    let t = topics(&[("topic", 3)]);
    // StickyAssignorTest.testSchemaBackwardCompatibility: consumer2 sends the v0 user data
    // (no generation).
    let v1 = StickyAssignor::new().user_data(&tps("topic-1"), 1).unwrap();
    let v0 = v1.slice(..v1.len() - 4);
    let ms = [
        member(
            "consumer1",
            Subscription {
                user_data: StickyAssignor::new().user_data(&tps("topic-0, topic-2"), 1),
                ..sub(&["topic"])
            },
        ),
        member(
            "consumer2",
            Subscription {
                user_data: Some(v0),
                ..sub(&["topic"])
            },
        ),
        member("consumer3", sub(&["topic"])),
    ];
    let got = run(&StickyAssignor::new(), &ms, &t);
    assert!(got.values().all(|p| p.len() == 1));
    assert!(tps("topic-0, topic-2").contains(got["consumer1"].first().unwrap()));
    assert_eq!(got["consumer2"], tps("topic-1").into_iter().collect());

    // StickyAssignorTest.testAssignorWithOldVersionSubscriptions (v0 and v1 members) and
    // testMemberDataWillHonorUserData: sticky believes the user data over the subscription.
    let with = |owned: &str, in_subscription: &str, generation: i32| Subscription {
        user_data: StickyAssignor::new().user_data(&tps(owned), 1),
        owned_partitions: tps(in_subscription),
        generation_id: generation,
        ..sub(&["topic"])
    };
    let ms = [
        member("consumer1", with("topic-0", "", -1)),
        member("consumer2", with("topic-1", "topic-2", -1)),
        member("consumer3", with("", "", 1)),
    ];
    assert_eq!(
        run(&StickyAssignor::new(), &ms, &t),
        expected(&[
            ("consumer1", "topic-0"),
            ("consumer2", "topic-1"),
            ("consumer3", "topic-2")
        ])
    );

    // CooperativeStickyAssignorTest.testAssignorWithOldVersionSubscriptions: v1 members carry
    // their generation in the user data.
    let v1_member = |owned: &str| Subscription {
        user_data: CooperativeStickyAssignor::new().user_data(&[], 1),
        owned_partitions: tps(owned),
        generation_id: -1,
        ..sub(&["topic"])
    };
    let ms = [
        member("consumer1", v1_member("topic-0")),
        member("consumer2", v1_member("topic-1")),
        member(
            "consumer3",
            Subscription {
                generation_id: 1,
                ..sub(&["topic"])
            },
        ),
    ];
    assert_eq!(
        run(&CooperativeStickyAssignor::new(), &ms, &t),
        expected(&[
            ("consumer1", "topic-0"),
            ("consumer2", "topic-1"),
            ("consumer3", "topic-2")
        ])
    );
}

#[test]
fn sticky_member_data_sources() {
    use crate::assignor::sticky::tests_support::member_data;
    let owned_in_user_data = tps("topic-1");
    let owned_in_subscription = tps("topic-0");
    let s = Subscription {
        user_data: StickyAssignor::new().user_data(&owned_in_user_data, 1),
        owned_partitions: owned_in_subscription.clone(),
        generation_id: -1,
        ..sub(&["topic"])
    };
    // StickyAssignorTest.testMemberDataWithInconsistentData: user data wins.
    assert_eq!(
        member_data(false, &s),
        (owned_in_user_data.clone(), Some(1))
    );
    // CooperativeStickyAssignorTest.testMemberDataWithInconsistentData: the subscription's
    // partitions with the user data's generation.
    let s = Subscription {
        user_data: CooperativeStickyAssignor::new().user_data(&owned_in_user_data, 1),
        ..s
    };
    assert_eq!(
        member_data(true, &s),
        (owned_in_subscription.clone(), Some(1))
    );
    // ...WithEmptyPartitionsAndEqualGeneration / HigherGeneration: the v2 generation wins.
    let s = Subscription {
        owned_partitions: vec![],
        generation_id: 1,
        ..s
    };
    assert_eq!(member_data(true, &s), (vec![], Some(1)));
    // testDecodeGeneration: nothing at all.
    assert_eq!(member_data(true, &sub(&["topic"])), (vec![], None));
    // Undecodable cooperative user data counts as generation -1.
    let s = Subscription {
        user_data: Some(Bytes::from_static(&[1])),
        ..sub(&["topic"])
    };
    assert_eq!(member_data(true, &s), (vec![], Some(-1)));
    // A sticky member without user data owned nothing, whatever its subscription says.
    let s = Subscription {
        owned_partitions: owned_in_subscription.clone(),
        generation_id: 4,
        ..sub(&["topic"])
    };
    assert_eq!(member_data(false, &s), (vec![], None));
}

#[test]
fn sticky_stickiness_when_the_leader_leaves() {
    // testStickiness.
    for mut s in StickyTest::all() {
        let t = s.topics(&[("topic1", 3)]);
        let mut ms: Vec<MemberSubscription> = (1..=4)
            .map(|i| member(&format!("consumer{i}"), s.fresh(&["topic1"], i - 1)))
            .collect();
        let r1 = s.round(&mut ms, &t);
        assert!(r1.values().all(|p| p.len() <= 1));
        let mut ms: Vec<MemberSubscription> = (2..=4)
            .map(|i| {
                let c = format!("consumer{i}");
                let owned = owned_list(&r1, &c);
                member(&c, s.owning(&["topic1"], &owned, 1, i - 1))
            })
            .collect();
        let r2 = s.round(&mut ms, &t);
        for (c, ps) in &r2 {
            assert_eq!(ps.len(), 1);
            assert!(r1[c].is_empty() || ps == &r1[c], "{c} lost its partition");
        }
    }
}

#[test]
fn sticky_general_builder_cases() {
    for mut s in StickyTest::all() {
        // testPoorRoundRobinAssignmentScenario.
        let t = s.topics(&[
            ("topic1", 2),
            ("topic2", 1),
            ("topic3", 2),
            ("topic4", 1),
            ("topic5", 2),
        ]);
        let all: &[&str] = &["topic1", "topic2", "topic3", "topic4", "topic5"];
        let odd: &[&str] = &["topic1", "topic3", "topic5"];
        let mut ms = vec![
            member("consumer1", s.fresh(all, 0)),
            member("consumer2", s.fresh(odd, 1)),
            member("consumer3", s.fresh(odd, 2)),
            member("consumer4", s.fresh(all, 3)),
        ];
        s.round(&mut ms, &t);

        // testMoveExistingAssignments.
        let t = s.topics(&[
            ("topic1", 1),
            ("topic2", 1),
            ("topic3", 1),
            ("topic4", 1),
            ("topic5", 1),
            ("topic6", 1),
        ]);
        let mut ms = vec![
            member(
                "consumer1",
                s.owning(&["topic1", "topic2"], &tps("topic1-0"), 1, 0),
            ),
            member(
                "consumer2",
                s.owning(
                    &["topic1", "topic2", "topic3", "topic4"],
                    &tps("topic2-0, topic3-0"),
                    1,
                    1,
                ),
            ),
            member(
                "consumer3",
                s.owning(
                    &["topic2", "topic3", "topic4", "topic5", "topic6"],
                    &tps("topic4-0, topic5-0, topic6-0"),
                    1,
                    2,
                ),
            ),
        ];
        s.round(&mut ms, &t);

        // testReassignmentAfterOneConsumerLeaves: consumer i subscribes to topics 1..=i,
        // topic i has i partitions.
        let names: Vec<String> = (1..20).map(|i| format!("t{i:02}")).collect();
        let spec: Vec<(&str, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i + 1))
            .collect();
        let t = s.topics(&spec);
        let subs = |i: usize| names[..i].iter().map(String::as_str).collect::<Vec<_>>();
        let mut ms: Vec<MemberSubscription> = (1..20)
            .map(|i| member(&format!("c{i:02}"), s.fresh(&subs(i), i)))
            .collect();
        let r1 = s.round(&mut ms, &t);
        let mut ms: Vec<MemberSubscription> = (1..20)
            .filter(|&i| i != 10)
            .map(|i| {
                let c = format!("c{i:02}");
                member(&c, s.owning(&subs(i), &owned_list(&r1, &c), 1, i))
            })
            .collect();
        s.round(&mut ms, &t);

        // testSubscriptionNotEqualAndAssignSamePartitionWith3Generation.
        let t = s.topics(&[("topic", 6), ("topic1", 1)]);
        for gens in [
            [1, 2, 3],
            [1, 3, 2],
            [2, 1, 3],
            [2, 3, 1],
            [3, 1, 2],
            [3, 2, 1],
        ] {
            let ms = [
                member(
                    "consumer1",
                    s.owning(&["topic"], &tps("topic-0, topic-2"), gens[0], 0),
                ),
                member(
                    "consumer2",
                    s.owning(&["topic"], &tps("topic-1, topic-2, topic-3"), gens[1], 1),
                ),
                member(
                    "consumer3",
                    s.owning(&["topic"], &tps("topic-2, topic-4, topic-5"), gens[2], 2),
                ),
                member("consumer4", s.owning(&["topic1"], &tps("topic1-0"), 2, 3)),
            ];
            let got = run(s.assignor().as_ref(), &ms, &t);
            if s.flavour == Flavour::Sticky {
                assert!(
                    got.values().all(|p| (1..=2).contains(&p.len())),
                    "{gens:?} {got:?}"
                );
            }
        }
    }
}

/// AbstractStickyAssignorTest.testRackAwareAssignmentWithUniformSubscription.
#[test]
fn sticky_rack_aware_uniform_subscription() {
    for flavour in FLAVOURS {
        let make = |prefer: bool| -> Box<dyn Assignor> {
            match flavour {
                Flavour::Sticky => Box::new(StickyAssignor {
                    prefer_rack_aware: prefer,
                }),
                Flavour::Cooperative => Box::new(CooperativeStickyAssignor {
                    prefer_rack_aware: prefer,
                }),
            }
        };
        let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
        let all: &[&str] = &["t1", "t2", "t3"];
        let ct = [all, all, all];
        let expect = [
            "t1-0, t1-3, t2-0, t2-3, t2-6",
            "t1-1, t1-4, t2-1, t2-4, t3-0",
            "t1-2, t1-5, t2-2, t2-5, t3-1",
        ];
        // Java's verifyUniformSubscription: fresh, then again owning the result.
        let uniform =
            |a: &dyn Assignor, rf, brokers: &[Option<&str>], consumers: &[Option<&str>], mm| {
                verify_rack_assignment(a, &spec, rf, brokers, consumers, &ct, &[], &expect, mm);
                verify_rack_assignment(a, &spec, rf, brokers, consumers, &ct, &expect, &expect, mm);
            };
        let plain = make(false);
        let prefer = make(true);
        uniform(plain.as_ref(), 3, &null_racks(3), &racks(3), -1);
        uniform(plain.as_ref(), 3, &racks(3), &null_racks(3), -1);
        uniform(prefer.as_ref(), 3, &racks(3), &racks(3), 0);
        uniform(prefer.as_ref(), 4, &racks(4), &racks(3), 0);
        uniform(plain.as_ref(), 3, &racks(3), &racks(3), 0);
        uniform(
            plain.as_ref(),
            3,
            &racks(3),
            &[Some("d"), Some("e"), Some("f")],
            -1,
        );
        uniform(
            plain.as_ref(),
            3,
            &racks(3),
            &[None, Some("e"), Some("f")],
            -1,
        );
        // Rack-aligned with lower replication, where brokers hold a subset of partitions.
        uniform(plain.as_ref(), 1, &racks(3), &racks(3), 0);
        uniform(plain.as_ref(), 2, &racks(3), &racks(3), 0);
        // One consumer on a rack with no partitions: misaligned to keep balance.
        uniform(plain.as_ref(), 3, &racks(2), &racks(3), 5);

        // Owned partitions on the wrong racks move to improve rack alignment.
        let owned = [
            "t1-0, t1-1, t1-2, t1-3, t1-4",
            "t1-5, t2-0, t2-1, t2-2, t2-3",
            "t2-4, t2-5, t2-6, t3-0, t3-1",
        ];
        let want: &[&str] = match flavour {
            // Sticky reads previous partitions from user data only, and the set-up sends
            // none: the fresh result.
            Flavour::Sticky => &expect,
            // Cooperative-sticky keeps only what stays put, for now.
            Flavour::Cooperative => &["t1-0, t1-3", "t2-1", "t2-5, t3-1"],
        };
        verify_rack_assignment(
            plain.as_ref(),
            &spec,
            1,
            &racks(3),
            &racks(3),
            &ct,
            &owned,
            want,
            0,
        );
        // Stickiness is kept when racks match.
        verify_rack_assignment(
            prefer.as_ref(),
            &spec,
            3,
            &racks(3),
            &racks(3),
            &ct,
            &expect,
            &expect,
            0,
        );
    }
}

/// AbstractStickyAssignorTest.testRackAwareAssignmentWithNonEqualSubscription (the general
/// builder with racks).
#[test]
fn sticky_rack_aware_non_equal_subscription() {
    for flavour in FLAVOURS {
        let make = |prefer: bool| -> Box<dyn Assignor> {
            match flavour {
                Flavour::Sticky => Box::new(StickyAssignor {
                    prefer_rack_aware: prefer,
                }),
                Flavour::Cooperative => Box::new(CooperativeStickyAssignor {
                    prefer_rack_aware: prefer,
                }),
            }
        };
        let spec = [("t1", 6), ("t2", 7), ("t3", 2)];
        let all: &[&str] = &["t1", "t2", "t3"];
        let ct = [all, all, &["t1", "t3"]];
        let non_rack_aware = [
            "t1-5, t2-0, t2-2, t2-4, t2-6",
            "t1-3, t2-1, t2-3, t2-5, t3-0",
            "t1-0, t1-1, t1-2, t1-4, t3-1",
        ];
        // Java's verifyNonEqualSubscription: fresh, then again owning the result.
        let non_equal = |a: &dyn Assignor,
                         rf,
                         brokers: &[Option<&str>],
                         consumers: &[Option<&str>],
                         want: &[&str],
                         mm| {
            verify_rack_assignment(a, &spec, rf, brokers, consumers, &ct, &[], want, mm);
            verify_rack_assignment(a, &spec, rf, brokers, consumers, &ct, want, want, mm);
        };
        let plain = make(false);
        let prefer = make(true);
        non_equal(
            plain.as_ref(),
            3,
            &null_racks(3),
            &racks(3),
            &non_rack_aware,
            -1,
        );
        non_equal(
            plain.as_ref(),
            3,
            &racks(3),
            &null_racks(3),
            &non_rack_aware,
            -1,
        );
        non_equal(prefer.as_ref(), 3, &racks(3), &racks(3), &non_rack_aware, 0);
        non_equal(prefer.as_ref(), 4, &racks(4), &racks(3), &non_rack_aware, 0);
        non_equal(plain.as_ref(), 3, &racks(3), &racks(3), &non_rack_aware, 0);
        non_equal(
            plain.as_ref(),
            3,
            &racks(3),
            &[Some("d"), Some("e"), Some("f")],
            &non_rack_aware,
            -1,
        );
        non_equal(
            plain.as_ref(),
            3,
            &racks(3),
            &[None, Some("e"), Some("f")],
            &non_rack_aware,
            -1,
        );
        // Rack alignment is best effort with few rack choices.
        let aligned = [
            "t1-3, t2-0, t2-2, t2-3, t2-6",
            "t1-4, t2-1, t2-4, t2-5, t3-0",
            "t1-0, t1-1, t1-2, t1-5, t3-1",
        ];
        non_equal(plain.as_ref(), 1, &racks(3), &racks(3), &aligned, 4);
        non_equal(
            plain.as_ref(),
            2,
            &racks(3),
            &racks(3),
            &[
                "t1-3, t2-0, t2-2, t2-5, t2-6",
                "t1-0, t2-1, t2-3, t2-4, t3-0",
                "t1-1, t1-2, t1-4, t1-5, t3-1",
            ],
            0,
        );
        // One consumer on a rack with no partitions.
        non_equal(plain.as_ref(), 3, &racks(2), &racks(3), &non_rack_aware, 5);

        let owned = [
            "t1-0, t1-1, t1-2, t1-3, t1-4",
            "t1-5, t2-0, t2-1, t2-2, t2-3",
            "t2-4, t2-5, t2-6, t3-0, t3-1",
        ];
        let v = |a: &dyn Assignor, rf, owned: &[&str], want: &[&str], mm| {
            verify_rack_assignment(a, &spec, rf, &racks(3), &racks(3), &ct, owned, want, mm)
        };
        match flavour {
            Flavour::Sticky => {
                // Sticky reads previous partitions from user data only, and the set-up
                // sends none: the fresh results.
                v(plain.as_ref(), 1, &owned, &aligned, 4);
                v(plain.as_ref(), 3, &owned, &non_rack_aware, 0);
                v(prefer.as_ref(), 3, &owned, &non_rack_aware, 0);
            }
            Flavour::Cooperative => {
                // Misaligned owned partitions are revoked first, then reassigned in racks.
                let intermediate = ["t1-3", "t2-1", "t3-1"];
                v(plain.as_ref(), 1, &owned, &intermediate, 0);
                v(plain.as_ref(), 1, &intermediate, &aligned, 4);
                // With all racks matching, the result is the non-rack-aware one.
                let intermediate = ["t1-2, t1-3, t1-4", "t2-0, t2-1, t2-2, t2-3", "t3-0, t3-1"];
                let settled = [
                    "t1-2, t1-3, t1-4, t2-4, t2-5",
                    "t2-0, t2-1, t2-2, t2-3, t2-6",
                    "t1-0, t1-1, t1-5, t3-0, t3-1",
                ];
                for a in [&plain, &prefer] {
                    v(a.as_ref(), 3, &owned, &intermediate, 0);
                    v(a.as_ref(), 3, &intermediate, &settled, 0);
                }
            }
        }
    }
}
