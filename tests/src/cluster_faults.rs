//! Faults on the three-node Apache Kafka cluster ([`Kafka::cluster`]) for the tests in files
//! named `*_cluster.rs`, which nextest runs one at a time: nodes killed and started again,
//! partitions whose replicas and leaders a test waits on, records written to one replica.
//!
//! Every wait here polls what the cluster says (the metadata, a process) until it holds or a
//! deadline passes, then fails naming what it waited for and what it saw last.

use std::time::Duration;

use bytes::Bytes;
use kcon_codec::kafka_protocol::messages::ProduceRequest;
use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::error_codes::{code, error_name};
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use tokio::task::block_in_place;
use tokio::time::Instant;

use crate::kafka::Kafka;
use crate::offsets::now_ms;

/// How long a fault takes to show: a killed node is fenced after the controller's
/// `broker.session.timeout.ms` (9 s), its replicas leave the ISRs then, and an election follows;
/// a started node registers and catches up. Measured at about 15 s each on two shared cores.
pub const FAULT_WITHIN: Duration = Duration::from_secs(90);

/// Starts every node of the cluster that is not running when dropped: a test that kills
/// nodes holds one, so that the tests after it find three live nodes even when it fails.
#[derive(Debug)]
pub struct Restore(pub &'static Kafka);

impl Drop for Restore {
    fn drop(&mut self) {
        for node in self.0.nodes() {
            if !node.alive {
                self.0.start_node(node.id);
            }
        }
    }
}

/// One partition as a node's Metadata answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader (`None`: -1, no leader).
    pub leader: Option<i32>,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// `topic`-`partition` as `node` describes it now (`None`: any node), or `None` when it
/// could not answer (killed, starting, or without the partition yet).
pub async fn partition_on(
    pool: &Pool,
    node: Option<i32>,
    topic: &str,
    partition: i32,
) -> Option<PartitionView> {
    let target = node.map_or(BrokerTarget::Any, BrokerTarget::Broker);
    let answer = pool
        .send(target, &crate::pool::metadata_request(&[topic]))
        .await
        .ok()?;
    let p = answer
        .topics
        .first()?
        .partitions
        .iter()
        .find(|p| p.partition_index == partition && p.error_code == 0)?;
    let ids = |v: &[kcon_codec::kafka_protocol::messages::BrokerId]| -> Vec<i32> {
        v.iter().map(|b| b.0).collect()
    };
    Some(PartitionView {
        leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
        leader_epoch: p.leader_epoch,
        replicas: ids(&p.replica_nodes),
        isr: ids(&p.isr_nodes),
    })
}

/// Polls `topic`-`partition` as `node` describes it (`None`: any node) until `cond` holds
/// (at most [`FAULT_WITHIN`]); returns it. Panics with the last state seen. Asking the node a
/// test is about to use tells when that node has applied the change: a node that just
/// restarted may still answer as before while the others name it leader.
pub async fn wait_for_partition(
    pool: &Pool,
    node: Option<i32>,
    topic: &str,
    partition: i32,
    what: &str,
    cond: impl Fn(&PartitionView) -> bool,
) -> PartitionView {
    let deadline = Instant::now() + FAULT_WITHIN;
    let mut last = None;
    loop {
        if let Some(p) = partition_on(pool, node, topic, partition).await {
            if cond(&p) {
                return p;
            }
            last = Some(p);
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{partition}: not {what} within {FAULT_WITHIN:?} (asking {}); last seen: \
             {last:?}",
            node.map_or("any node".to_owned(), |n| format!("node {n}"))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the cluster's metadata until it lists all three brokers (a node started again is
/// listed once it registered and the controller unfenced it): what a test leaves behind.
pub async fn wait_for_three_brokers(pool: &Pool) {
    let deadline = Instant::now() + FAULT_WITHIN;
    loop {
        let brokers = pool
            .refresh_metadata(TopicScope::none())
            .await
            .map(|m| m.brokers.len())
            .ok();
        if brokers == Some(3) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster does not list three brokers within {FAULT_WITHIN:?} (last: {brokers:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes `values` as one batch to `topic`-`partition` on node `node` with `acks` (1: the
/// leader alone; -1: every in-sync replica); returns the batch's base offset. The test chose
/// the node because it leads: until the node has applied that (a node names itself leader in
/// its metadata a moment before it takes records as one), NOT_LEADER_OR_FOLLOWER and
/// LEADER_NOT_AVAILABLE, which append nothing, are asked again (at most [`FAULT_WITHIN`]).
/// Panics on any other error.
pub async fn produce_to(
    pool: &Pool,
    node: i32,
    topic: &str,
    partition: i32,
    acks: i16,
    values: &[String],
) -> i64 {
    // Timestamps of now: Kafka deletes a segment whose records are all older than
    // `retention.ms` (7 days) at its next retention check, even the active one.
    let now = now_ms();
    let mut b = RecordBatchBuilder::new(0);
    for (i, v) in values.iter().enumerate() {
        b.record(now + i as i64, None, Some(v.as_bytes()));
    }
    let records: Bytes = b.build().expect("a batch");
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let deadline = Instant::now() + FAULT_WITHIN;
    loop {
        let answer = pool
            .send(BrokerTarget::Broker(node), &request)
            .await
            .unwrap_or_else(|e| panic!("produce to node {node}: {e}"));
        let p = &answer.responses[0].partition_responses[0];
        let not_yet = [code::NOT_LEADER_OR_FOLLOWER, code::LEADER_NOT_AVAILABLE];
        if p.error_code == 0 {
            return p.base_offset;
        }
        assert!(
            not_yet.contains(&p.error_code) && Instant::now() < deadline,
            "produce to {topic}-{partition} on node {node}: {} ({p:?})",
            error_name(p.error_code)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Moves the leadership of `topic`-`partition` to `order[0]` as an operator does, with Kafka's
/// own tools: `kafka-reassign-partitions` gives the partition the replicas `order` (the same
/// replicas in another order moves no data, and makes `order[0]` the preferred leader), then
/// `kafka-leader-election --election-type PREFERRED` elects it, at a new leader epoch. Returns
/// the partition as its new leader describes it once it leads.
pub async fn move_leader(
    kafka: &Kafka,
    pool: &Pool,
    topic: &str,
    partition: i32,
    order: &[i32],
) -> PartitionView {
    let plan = serde_json::json!({
        "version": 1,
        "partitions": [{"topic": topic, "partition": partition, "replicas": order}],
    });
    let file = std::env::temp_dir().join(format!("{topic}-{partition}-reassignment.json"));
    std::fs::write(&file, plan.to_string()).expect("the reassignment plan written");
    let path = file.to_string_lossy().into_owned();
    // The tools are JVMs of some seconds: off the runtime's workers, which keep serving the
    // consumers meanwhile.
    block_in_place(|| {
        kafka.tool(
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
            &["--reassignment-json-file", &path, "--execute"],
        )
    });
    wait_for_partition(pool, None, topic, partition, "reassigned", |p| {
        p.replicas == order
    })
    .await;
    let partition_arg = partition.to_string();
    block_in_place(|| {
        kafka.tool(
            "org.apache.kafka.tools.LeaderElectionCommand",
            &[
                "--election-type",
                "PREFERRED",
                "--topic",
                topic,
                "--partition",
                &partition_arg,
            ],
        )
    });
    let _ = std::fs::remove_file(&file);
    wait_for_partition(
        pool,
        Some(order[0]),
        topic,
        partition,
        "led by the preferred replica",
        |p| p.leader == Some(order[0]),
    )
    .await
}

/// The rack of node `id` in the cluster (`broker.rack`).
pub fn rack_of(id: i32) -> String {
    format!("rack-{id}")
}
