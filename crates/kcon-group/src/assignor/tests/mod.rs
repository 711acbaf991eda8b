//! The Java client's standard assignor cases, transcribed as data (inputs and expected
//! assignments from `RangeAssignorTest`, `RoundRobinAssignorTest`, `AbstractStickyAssignorTest`,
//! `StickyAssignorTest`, `CooperativeStickyAssignorTest` in apache/kafka
//! `clients/src/test/java/org/apache/kafka/clients/consumer/`), and property tests over random
//! groups.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use kcon_core::TopicPartition;

use kcon_codec::consumer_protocol::Subscription;

mod properties;
mod range;
mod round_robin;
mod sticky;

// ---------------------------------------------------------------------------------------------
// Building inputs
// ---------------------------------------------------------------------------------------------

/// `"t1-0"` → topic `t1`, partition 0.
fn tp(s: &str) -> TopicPartition {
    let (topic, partition) = s.rsplit_once('-').expect("topic-partition");
    TopicPartition::new(topic, partition.parse().expect("partition index"))
}

/// `"t1-0, t1-3"` → partitions; `""` → none.
fn tps(list: &str) -> Vec<TopicPartition> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(tp)
        .collect()
}

/// Topics without racks.
fn topics(spec: &[(&str, usize)]) -> TopicPartitions {
    spec.iter()
        .map(|&(name, n)| {
            let partitions = (0..n as i32)
                .map(|p| PartitionInfo::new(p, vec![]))
                .collect();
            (name.to_owned(), partitions)
        })
        .collect()
}

fn sub(topics: &[&str]) -> Subscription {
    Subscription {
        topics: topics.iter().map(|t| t.to_string()).collect(),
        ..Subscription::default()
    }
}

fn member(id: &str, subscription: Subscription) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_owned(),
        group_instance_id: None,
        subscription,
    }
}

fn static_member(id: &str, instance: &str, subscription: Subscription) -> MemberSubscription {
    MemberSubscription {
        group_instance_id: Some(instance.to_owned()),
        ..member(id, subscription)
    }
}

type Sets = BTreeMap<String, BTreeSet<TopicPartition>>;

fn run(a: &dyn Assignor, members: &[MemberSubscription], topics: &TopicPartitions) -> Sets {
    let result = a.assign(members, topics).expect("assignment");
    assert_eq!(
        result.keys().collect::<Vec<_>>(),
        members
            .iter()
            .map(|m| &m.member_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "one entry per member"
    );
    result
        .into_iter()
        .map(|(m, a)| {
            let set: BTreeSet<TopicPartition> = a.partitions.iter().cloned().collect();
            assert_eq!(set.len(), a.partitions.len(), "{m} got a partition twice");
            (m, set)
        })
        .collect()
}

fn expected(spec: &[(&str, &str)]) -> Sets {
    spec.iter()
        .map(|&(m, list)| (m.to_owned(), tps(list).into_iter().collect()))
        .collect()
}

fn owned_list(sets: &Sets, m: &str) -> Vec<TopicPartition> {
    sets[m].iter().cloned().collect()
}

// The Java tests' rack set-ups (`AbstractPartitionAssignorTest`).

const ALL_RACKS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Java's `RackConfig`, with its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
enum RackConfig {
    NoBrokerRack,
    NoConsumerRack,
    BrokerAndConsumerRack,
}

const RACK_CONFIGS: [RackConfig; 3] = [
    RackConfig::NoBrokerRack,
    RackConfig::NoConsumerRack,
    RackConfig::BrokerAndConsumerRack,
];

/// Java's `initializeRacks(rackConfig, maxConsumers)`: `max_consumers`-way replication over
/// brokers on `max_consumers` racks (or no racks), consumers on those racks (or none).
#[derive(Debug, Clone, Copy)]
struct Racks {
    replication: usize,
    broker_racks: usize,
    consumer_racks: bool,
}

impl Racks {
    fn new(config: RackConfig, max_consumers: usize) -> Racks {
        Racks {
            replication: max_consumers,
            broker_racks: if config == RackConfig::NoBrokerRack {
                0
            } else {
                max_consumers
            },
            consumer_racks: config != RackConfig::NoConsumerRack,
        }
    }

    /// Java's `partitionInfos(topic, n, replicationFactor, numBrokerRacks, nextNodeIndex)`.
    fn partitions(&self, n: usize, next_node: usize) -> Vec<PartitionInfo> {
        let brokers = if self.broker_racks == 0 {
            self.replication
        } else {
            self.broker_racks * self.replication
        };
        let rack_of = |b: usize| (self.broker_racks > 0).then(|| ALL_RACKS[b % self.broker_racks]);
        java_partition_infos(
            n,
            self.replication,
            &(0..brokers).map(rack_of).collect::<Vec<_>>(),
            next_node,
        )
    }

    /// Java's `consumerRackId(consumerIndex)`.
    fn consumer_rack(&self, index: usize) -> Option<String> {
        let n = if self.broker_racks > 0 {
            self.broker_racks
        } else {
            ALL_RACKS.len()
        };
        self.consumer_racks.then(|| ALL_RACKS[index % n].to_owned())
    }
}

/// Partition `i`'s replicas are brokers `(i + j + next_node) % brokers`, `j < replication`.
fn java_partition_infos(
    n: usize,
    replication: usize,
    broker_racks: &[Option<&str>],
    next_node: usize,
) -> Vec<PartitionInfo> {
    (0..n)
        .map(|i| {
            let racks = (0..replication)
                .filter_map(|j| broker_racks[(i + j + next_node) % broker_racks.len()])
                .map(str::to_owned)
                .collect();
            PartitionInfo::new(i as i32, racks)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Registry and protocol plumbing
// ---------------------------------------------------------------------------------------------

#[test]
fn assignors_by_kafka_and_java_name() {
    for (short, java) in [
        ("range", "RangeAssignor"),
        ("roundrobin", "RoundRobinAssignor"),
        ("sticky", "StickyAssignor"),
        ("cooperative-sticky", "CooperativeStickyAssignor"),
    ] {
        assert_eq!(assignor(short).map(|a| a.name()), Some(short));
        let class = format!("org.apache.kafka.clients.consumer.{java}");
        assert_eq!(assignor(&class).map(|a| a.name()), Some(short));
        assert!(ASSIGNOR_NAMES.contains(&short));
    }
    assert!(assignor("uniform").is_none());
    assert!(assignor("org.apache.kafka.clients.consumer.Nope").is_none());
    assert!(assignor("RangeAssignor").is_none());
    assert_eq!(ASSIGNOR_NAMES.len(), 4);
}

#[test]
fn supported_protocols_match_java() {
    use RebalanceProtocol::*;
    for name in ["range", "roundrobin", "sticky"] {
        assert_eq!(assignor(name).unwrap().supported_protocols(), &[Eager]);
    }
    assert_eq!(
        assignor("cooperative-sticky")
            .unwrap()
            .supported_protocols(),
        &[Cooperative, Eager]
    );
}

#[test]
fn user_data_per_assignor() {
    let owned = tps("t-0, t-2");
    assert_eq!(RangeAssignor::new().user_data(&owned, 3), None);
    assert_eq!(RoundRobinAssignor::new().user_data(&owned, 3), None);
    // StickyAssignorUserData v1: [("t", [0, 2])], generation 3.
    assert_eq!(
        StickyAssignor::new().user_data(&owned, 3).as_deref(),
        Some(
            &[
                0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3
            ][..]
        )
    );
    assert_eq!(
        StickyAssignor::new().user_data(&[], -1),
        None,
        "never assigned"
    );
    // CooperativeStickyAssignorUserData v0: the generation, -1 before any assignment
    // (Java's CooperativeStickyAssignorTest.testEncodeAndDecodeGeneration).
    let coop = CooperativeStickyAssignor::new();
    assert_eq!(coop.user_data(&[], -1).as_deref(), Some(&[0xff; 4][..]));
    assert_eq!(
        coop.user_data(&owned, 10).as_deref(),
        Some(&[0, 0, 0, 10][..])
    );
}

#[test]
fn duplicate_member_ids_are_an_error() {
    let t = topics(&[("t", 2)]);
    let members = [member("a", sub(&["t"])), member("a", sub(&["t"]))];
    for name in ASSIGNOR_NAMES {
        let err = assignor(name).unwrap().assign(&members, &t).unwrap_err();
        assert_eq!(
            err,
            AssignError::DuplicateMember {
                member_id: "a".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "member id \"a\" appears twice in the group"
        );
    }
}

#[test]
fn an_empty_group_gets_an_empty_assignment() {
    for name in ASSIGNOR_NAMES {
        let a = assignor(name).unwrap();
        assert!(a.assign(&[], &topics(&[("t", 3)])).unwrap().is_empty());
    }
}

#[test]
fn member_order_is_javas_string_order() {
    // U+FF21 (fullwidth A) sorts after U+1F600 in bytes/code points but before it in UTF-16.
    assert_eq!(
        java_cmp("\u{FF21}", "\u{1F600}"),
        std::cmp::Ordering::Greater
    );
    assert_eq!("\u{FF21}".cmp("\u{1F600}"), std::cmp::Ordering::Less);
    assert_eq!(java_cmp("a", "b"), std::cmp::Ordering::Less);
    // So range gives the first range to the emoji member, as Java would.
    let t = topics(&[("t", 2)]);
    let members = [
        member("\u{FF21}", sub(&["t"])),
        member("\u{1F600}", sub(&["t"])),
    ];
    let got = run(&RangeAssignor::new(), &members, &t);
    assert_eq!(got["\u{1F600}"], tps("t-0").into_iter().collect());
}

/// Java's `AbstractPartitionAssignorTest.verifyRackAssignment`: topics laid out in order
/// (each topic's first replica on the broker after the previous topic's last partition),
/// consumers `consumer0..` with the given racks and topics and previously owned partitions
/// (generation -1, no user data); checks the assignment and the count of rack mismatches
/// (-1: not checked).
#[allow(clippy::too_many_arguments)]
fn verify_rack_assignment(
    a: &dyn Assignor,
    topic_spec: &[(&str, usize)],
    replication: usize,
    broker_racks: &[Option<&str>],
    consumer_racks: &[Option<&str>],
    consumer_topics: &[&[&str]],
    owned: &[&str],
    want: &[&str],
    mismatches: i32,
) {
    let mut next = 0;
    let mut t = TopicPartitions::new();
    for &(name, n) in topic_spec {
        t.insert(
            name.to_owned(),
            java_partition_infos(n, replication, broker_racks, next),
        );
        next += n;
    }
    let ms: Vec<MemberSubscription> = consumer_racks
        .iter()
        .enumerate()
        .map(|(i, rack)| {
            let subscription = Subscription {
                owned_partitions: owned.get(i).map(|o| tps(o)).unwrap_or_default(),
                rack_id: rack.map(str::to_owned),
                ..sub(consumer_topics[i])
            };
            member(&format!("consumer{i}"), subscription)
        })
        .collect();
    let got = run(a, &ms, &t);
    let want: Sets = want
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("consumer{i}"), tps(w).into_iter().collect()))
        .collect();
    assert_eq!(
        got, want,
        "racks {broker_racks:?} x{replication}, consumers {consumer_racks:?}"
    );
    if mismatches >= 0 {
        let mut count = 0;
        for (i, rack) in consumer_racks.iter().enumerate() {
            let Some(rack) = rack else { continue };
            for p in &got[&format!("consumer{i}")] {
                let info = &t[&p.topic][p.partition as usize];
                if !info.replica_racks.iter().any(|r| r == rack) {
                    count += 1;
                }
            }
        }
        assert_eq!(count, mismatches, "rack mismatches");
    }
}

fn racks(n: usize) -> Vec<Option<&'static str>> {
    (0..n)
        .map(|i| Some(ALL_RACKS[i % ALL_RACKS.len()]))
        .collect()
}

fn null_racks(n: usize) -> Vec<Option<&'static str>> {
    vec![None; n]
}
