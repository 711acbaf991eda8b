//! kcon-admin against a scripted broker, for answers on cue: a consumer group of the consumer
//! protocol (KIP-848) described by ConsumerGroupDescribe with every field and error the test
//! chooses (such a group is described on Apache Kafka 4.4 in `kip848_kafka`; librdkafka's mock
//! cluster lacks the API and DescribeGroups, see `kip848_mock.rs`), the fall back to DescribeGroups for a classic group, and a coordinator
//! that is not ready yet, answering COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR and
//! COORDINATOR_LOAD_IN_PROGRESS on cue.

use kcon_codec::kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kcon_codec::kafka_protocol::messages::describe_groups_response::DescribedGroup as ClassicGroup;
use kcon_codec::kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, MetadataRequest, TopicName,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_core::TopicPartition;
use kcon_pool::Pool;
use kcon_scripted::{
    Answer, BROKER_ID, Received, Script, ScriptedBroker, coordinator_answer, kcon_versions_of,
    one_broker_metadata,
};
use kcon_tests::pool::config;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Answers FindCoordinator with itself, ConsumerGroupDescribe with the consumer-protocol group
/// `g848` (GROUP_ID_NOT_FOUND for any other, as Kafka answers for a classic group), and
/// DescribeGroups with the classic group `classic`; records the groups each describe asked for.
#[derive(Default)]
struct Groups {
    asked_consumer: Vec<String>,
    asked_classic: Vec<String>,
}

fn consumer_group() -> DescribedGroup {
    let topic = |name: &str, partitions: Vec<i32>| {
        TopicPartitions::default()
            // Every byte 0x11: the uuid crate's type is reachable only through parsing.
            .with_topic_id("11".repeat(16).parse().unwrap())
            .with_topic_name(TopicName(s(name)))
            .with_partitions(partitions)
    };
    let member = |id: &str, epoch: i32, owned: Vec<i32>, target: Vec<i32>| {
        Member::default()
            .with_member_id(s(id))
            .with_member_epoch(epoch)
            .with_client_id(s("kcon"))
            .with_client_host(s("/127.0.0.1"))
            .with_subscribed_topic_names(vec![TopicName(s("orders"))])
            .with_assignment(
                Assignment::default().with_topic_partitions(vec![topic("orders", owned)]),
            )
            .with_target_assignment(
                Assignment::default().with_topic_partitions(vec![topic("orders", target)]),
            )
    };
    DescribedGroup::default()
        .with_group_id(GroupId(s("g848")))
        .with_group_state(s("Reconciling"))
        .with_group_epoch(4)
        .with_assignment_epoch(4)
        .with_assignor_name(s("uniform"))
        .with_members(vec![
            member("m-1", 4, vec![0, 1], vec![0]),
            member("m-2", 3, vec![], vec![1]),
        ])
}

/// The APIs the broker offers, at kcon's versions.
const ANSWERED: [ApiKey; 5] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::DescribeGroups,
];

async fn start() -> ScriptedBroker<Groups> {
    ScriptedBroker::start(kcon_versions_of(&ANSWERED), Groups::default()).await
}

impl Script for Groups {
    fn answer(&mut self, req: &Received) -> Answer {
        let addr = req.broker;
        match req.api() {
            Some(ApiKey::Metadata) => {
                let _ = req.decode::<MetadataRequest>();
                req.answer::<MetadataRequest>(&one_broker_metadata(addr, &[]))
            }
            Some(ApiKey::FindCoordinator) => coordinator_answer(req, BROKER_ID, addr),
            Some(ApiKey::ConsumerGroupDescribe) => {
                let r = req.decode::<ConsumerGroupDescribeRequest>();
                let groups = r
                    .group_ids
                    .iter()
                    .map(|g| {
                        self.asked_consumer.push(g.0.to_string());
                        if g.0.as_str() == "g848" {
                            consumer_group()
                        } else {
                            DescribedGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(69) // GROUP_ID_NOT_FOUND
                                .with_error_message(Some(s("not a consumer group")))
                        }
                    })
                    .collect();
                let answer = ConsumerGroupDescribeResponse::default().with_groups(groups);
                req.answer::<ConsumerGroupDescribeRequest>(&answer)
            }
            Some(ApiKey::DescribeGroups) => {
                let r = req.decode::<DescribeGroupsRequest>();
                let groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        self.asked_classic.push(g.0.to_string());
                        ClassicGroup::default()
                            .with_group_id(g.clone())
                            .with_group_state(s("Empty"))
                            .with_protocol_type(s("consumer"))
                    })
                    .collect();
                let answer = DescribeGroupsResponse::default().with_groups(groups);
                req.answer::<DescribeGroupsRequest>(&answer)
            }
            _ => Answer::Silent,
        }
    }
}

#[tokio::test]
async fn a_consumer_protocol_group_is_described_with_its_epochs_and_targets() {
    let broker = start().await;
    let pool = Pool::new(config(&broker.bootstrap())).unwrap();
    let d = kcon_admin::describe_consumer_group(&pool, "g848")
        .await
        .expect("an answer")
        .expect("a consumer-protocol group");
    assert_eq!(d.group_id, "g848");
    assert_eq!(
        (d.state.as_str(), d.assignor.as_str()),
        ("Reconciling", "uniform")
    );
    assert_eq!((d.group_epoch, d.assignment_epoch), (4, 4));
    assert_eq!(d.members.len(), 2);
    let (m1, m2) = (&d.members[0], &d.members[1]);
    assert_eq!((m1.member_id.as_str(), m1.member_epoch), ("m-1", 4));
    let orders = |p: i32| TopicPartition::new("orders", p);
    assert_eq!(m1.assignment, [orders(0), orders(1)]);
    assert_eq!(m1.target_assignment, [orders(0)]);
    // m-2 has not reconciled yet: an older epoch, nothing owned, partition 1 its target.
    assert_eq!(m2.member_epoch, 3);
    assert!(m2.assignment.is_empty());
    assert_eq!(m2.target_assignment, [orders(1)]);
    assert_eq!(m1.subscribed_topics, ["orders"]);
    assert_eq!(broker.script().asked_consumer, ["g848"]);
    assert!(broker.script().asked_classic.is_empty());
}

/// The joined description: a consumer-protocol group's members own their current
/// assignments, and DescribeGroups is not asked.
#[tokio::test]
async fn describe_joins_a_consumer_protocol_group_with_each_members_partitions() {
    let broker = start().await;
    let pool = Pool::new(config(&broker.bootstrap())).unwrap();
    let d = kcon_admin::describe(&pool, "g848")
        .await
        .expect("an answer");
    assert_eq!(
        (d.protocol_type.as_str(), d.assignor.as_str()),
        ("consumer", "uniform")
    );
    let orders = |p: i32| TopicPartition::new("orders", p);
    assert_eq!(
        d.owner(&orders(1)).map(|m| m.member_id.as_str()),
        Some("m-1")
    );
    assert_eq!(d.members[1].assignment, Some(vec![]));
    assert_eq!(d.consumer_protocol.map(|c| c.group_epoch), Some(4));
    assert!(broker.script().asked_classic.is_empty());
    // A classic group falls back to DescribeGroups.
    let classic = kcon_admin::describe(&pool, "classic").await.unwrap();
    assert_eq!(
        (classic.state.as_str(), classic.consumer_protocol),
        ("Empty", None)
    );
    assert_eq!(broker.script().asked_classic, ["classic"]);
}

#[tokio::test]
async fn a_classic_group_is_not_a_consumer_protocol_group_and_describe_groups_describes_it() {
    let broker = start().await;
    let pool = Pool::new(config(&broker.bootstrap())).unwrap();
    let d = kcon_admin::describe_consumer_group(&pool, "classic")
        .await
        .expect("an answer");
    assert_eq!(
        d, None,
        "GROUP_ID_NOT_FOUND means: not a consumer-protocol group"
    );
    let classic = kcon_admin::describe_group(&pool, "classic").await.unwrap();
    assert_eq!((classic.state.as_str(), classic.error_code), ("Empty", 0));
    assert_eq!(broker.script().asked_consumer, ["classic"]);
    assert_eq!(broker.script().asked_classic, ["classic"]);
}

/// A coordinator just started: FindCoordinator answers COORDINATOR_NOT_AVAILABLE `unavailable`
/// times, then the group's describe requests answer NOT_COORDINATOR (ConsumerGroupDescribe)
/// and COORDINATOR_LOAD_IN_PROGRESS (DescribeGroups) `not_ready` times each, then the groups.
/// No real broker can be made to say these on cue: Apache Kafka says them only in the seconds
/// after it starts, which no test can time.
struct Starting {
    unavailable: usize,
    not_ready: usize,
    found: usize,
    consumer_answers: usize,
    classic_answers: usize,
}

impl Starting {
    fn new(unavailable: usize, not_ready: usize) -> Starting {
        Starting {
            unavailable,
            not_ready,
            found: 0,
            consumer_answers: 0,
            classic_answers: 0,
        }
    }
}

impl Script for Starting {
    fn answer(&mut self, req: &Received) -> Answer {
        use kcon_codec::kafka_protocol::messages::find_coordinator_response::Coordinator;
        use kcon_codec::kafka_protocol::messages::{
            BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
        };
        let addr = req.broker;
        match req.api() {
            Some(ApiKey::Metadata) => {
                let _ = req.decode::<MetadataRequest>();
                req.answer::<MetadataRequest>(&one_broker_metadata(addr, &[]))
            }
            Some(ApiKey::FindCoordinator) => {
                self.found += 1;
                if self.found > self.unavailable {
                    return coordinator_answer(req, BROKER_ID, addr);
                }
                let r = req.decode::<FindCoordinatorRequest>();
                let answer = FindCoordinatorResponse::default().with_coordinators(
                    r.coordinator_keys
                        .iter()
                        .map(|k| {
                            Coordinator::default()
                                .with_key(k.clone())
                                .with_node_id(BrokerId(-1))
                                .with_error_code(15) // COORDINATOR_NOT_AVAILABLE
                        })
                        .collect(),
                );
                req.answer::<FindCoordinatorRequest>(&answer)
            }
            Some(ApiKey::ConsumerGroupDescribe) => {
                let r = req.decode::<ConsumerGroupDescribeRequest>();
                self.consumer_answers += 1;
                let ready = self.consumer_answers > self.not_ready;
                let groups = r
                    .group_ids
                    .iter()
                    .map(|g| match (ready, g.0.as_str()) {
                        (false, _) => DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(16), // NOT_COORDINATOR
                        (true, "g848") => consumer_group(),
                        (true, _) => DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(69), // GROUP_ID_NOT_FOUND
                    })
                    .collect();
                let answer = ConsumerGroupDescribeResponse::default().with_groups(groups);
                req.answer::<ConsumerGroupDescribeRequest>(&answer)
            }
            Some(ApiKey::DescribeGroups) => {
                let r = req.decode::<DescribeGroupsRequest>();
                self.classic_answers += 1;
                let ready = self.classic_answers > self.not_ready;
                let groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        let group = ClassicGroup::default().with_group_id(g.clone());
                        if ready {
                            group
                                .with_group_state(s("Empty"))
                                .with_protocol_type(s("consumer"))
                        } else {
                            group.with_error_code(14) // COORDINATOR_LOAD_IN_PROGRESS
                        }
                    })
                    .collect();
                let answer = DescribeGroupsResponse::default().with_groups(groups);
                req.answer::<DescribeGroupsRequest>(&answer)
            }
            _ => Answer::Silent,
        }
    }
}

/// A coordinator that answers COORDINATOR_NOT_AVAILABLE, then NOT_COORDINATOR a few times,
/// then the group: describe retries through both, finding the coordinator again each time,
/// with a growing backoff (retry.backoff.ms 100 doubling: about 100+200+400+800+1000 ms before
/// the sixth FindCoordinator), and answers as the Java admin client does; so does a classic
/// group's DescribeGroups through COORDINATOR_LOAD_IN_PROGRESS.
#[tokio::test]
async fn describe_retries_a_starting_coordinator_until_it_answers() {
    let broker = ScriptedBroker::start(kcon_versions_of(&ANSWERED), Starting::new(2, 3)).await;
    let pool = Pool::new(config(&broker.bootstrap())).unwrap();
    let started = std::time::Instant::now();
    let d = kcon_admin::describe(&pool, "g848")
        .await
        .expect("described once the coordinator is ready");
    let took = started.elapsed();
    assert_eq!(d.consumer_protocol.map(|c| c.group_epoch), Some(4));
    {
        let script = broker.script();
        // Two refused, then one per ConsumerGroupDescribe: found again every time.
        assert_eq!((script.found, script.consumer_answers), (6, 4));
    }
    assert!(
        (std::time::Duration::from_millis(2_000)..std::time::Duration::from_secs(10))
            .contains(&took),
        "five backoffs, growing: {took:?}"
    );

    let broker = ScriptedBroker::start(kcon_versions_of(&ANSWERED), Starting::new(0, 2)).await;
    let pool = Pool::new(config(&broker.bootstrap())).unwrap();
    let classic = kcon_admin::describe(&pool, "classic")
        .await
        .expect("described once the coordinator has loaded");
    assert_eq!(classic.state, "Empty");
    let script = broker.script();
    // ConsumerGroupDescribe: twice NOT_COORDINATOR, then GROUP_ID_NOT_FOUND; DescribeGroups:
    // twice COORDINATOR_LOAD_IN_PROGRESS, then the group.
    assert_eq!((script.consumer_answers, script.classic_answers), (3, 3));
    assert_eq!(script.found, 6);
}

/// A coordinator that never gets ready: the call fails with its last error once
/// default.api.timeout.ms has passed, and not before.
#[tokio::test]
async fn a_coordinator_never_ready_fails_with_the_last_error_after_the_timeout() {
    let broker =
        ScriptedBroker::start(kcon_versions_of(&ANSWERED), Starting::new(0, usize::MAX)).await;
    let mut c = config(&broker.bootstrap());
    c.set("default.api.timeout.ms", "1500").unwrap();
    let pool = Pool::new(c).unwrap();
    let started = std::time::Instant::now();
    let e = kcon_admin::describe(&pool, "g848")
        .await
        .expect_err("never ready");
    let took = started.elapsed();
    assert_eq!(
        (e.api(), e.code()),
        (
            Some(ApiKey::ConsumerGroupDescribe),
            Some(kcon_admin::ResponseError::NotCoordinator)
        ),
        "{e}"
    );
    assert!(
        (std::time::Duration::from_millis(1_400)..std::time::Duration::from_secs(5))
            .contains(&took),
        "{took:?}"
    );
    assert!(
        broker.script().consumer_answers >= 4,
        "retried with backoff"
    );
}
