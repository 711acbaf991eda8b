//! Faults on the three-node Apache Kafka cluster ([`Kafka::cluster`]) for the tests in files
//! named `*_cluster.rs`, which nextest runs one at a time: nodes killed and started again,
//! partitions whose replicas and leaders a test waits on, records written to one replica.
//!
//! Every wait here polls what the cluster says (the metadata, a process) until it holds or a
//! deadline passes, then fails naming what it waited for and what it saw last.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kcon::{Consumer, ConsumerBuilder, Record};
use kcon_codec::kafka_protocol::messages::ProduceRequest;
use kcon_codec::kafka_protocol::messages::TopicName;
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_core::error_codes::{code, error_name};
use kcon_core::{IsolationLevel, OffsetSpec, TopicPartition};
use kcon_offsets::Offsets;
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use kcon_produce::{Producer, ProducerRecord};
use tokio::task::{JoinHandle, block_in_place};
use tokio::time::Instant;

use crate::consumer::{Driven, DrivenState, STEP, wait_until};
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

/// Waits until each of `topic`'s `partitions` is led and in sync on all three nodes, as its
/// leader says itself: after nodes restart, a leader takes `acks=all` records (refusing them
/// with NOT_ENOUGH_REPLICAS below `min.insync.replicas`) only once its followers are back in
/// its ISR.
pub async fn all_in_sync(pool: &Pool, topic: &str, partitions: i32) {
    for p in 0..partitions {
        let view = wait_for_partition(pool, None, topic, p, "led, in sync on all three", |v| {
            v.leader.is_some() && v.isr.len() == 3
        })
        .await;
        let leader = view.leader.expect("a leader");
        wait_for_partition(
            pool,
            Some(leader),
            topic,
            p,
            "in sync on all three, as its leader says",
            |v| v.leader == Some(leader) && v.isr.len() == 3,
        )
        .await;
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

/// Gives `topic`-`partition` the replicas `replicas` with Kafka's `kafka-reassign-partitions`
/// (the same replicas in another order moves no data and makes `replicas[0]` the preferred
/// leader; a set without the leader moves the leadership to one of the set), and waits until
/// the reassignment is complete: the replicas are those, all in sync, and one of them leads,
/// as it says itself. Returns the partition as that leader describes it.
pub async fn reassign(
    kafka: &Kafka,
    pool: &Pool,
    topic: &str,
    partition: i32,
    replicas: &[i32],
) -> PartitionView {
    let plan = serde_json::json!({
        "version": 1,
        "partitions": [{"topic": topic, "partition": partition, "replicas": replicas}],
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
    let _ = std::fs::remove_file(&file);
    let done = wait_for_partition(pool, None, topic, partition, "reassigned", |p| {
        p.replicas == replicas
            && p.isr.len() == replicas.len()
            && p.leader.is_some_and(|l| replicas.contains(&l))
    })
    .await;
    let leader = done.leader.expect("a leader");
    wait_for_partition(
        pool,
        Some(leader),
        topic,
        partition,
        "led, as its leader says",
        |p| p.leader == Some(leader) && p.replicas == replicas,
    )
    .await
}

/// Elects the preferred replica (the first) of `topic`-`partition` leader with Kafka's
/// `kafka-leader-election --election-type PREFERRED`, at a new leader epoch; returns the
/// partition as the new leader describes it once it leads.
pub async fn elect_preferred(
    kafka: &Kafka,
    pool: &Pool,
    topic: &str,
    partition: i32,
) -> PartitionView {
    let now = wait_for_partition(pool, None, topic, partition, "described", |_| true).await;
    let preferred = now.replicas[0];
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
    wait_for_partition(
        pool,
        Some(preferred),
        topic,
        partition,
        "led by the preferred replica",
        |p| p.leader == Some(preferred),
    )
    .await
}

/// Moves the leadership of `topic`-`partition` to `order[0]` as an operator does: the
/// replicas reordered to `order` ([`reassign`], no data moved), then the preferred one elected
/// ([`elect_preferred`]). Returns the partition as its new leader describes it.
pub async fn move_leader(
    kafka: &Kafka,
    pool: &Pool,
    topic: &str,
    partition: i32,
    order: &[i32],
) -> PartitionView {
    reassign(kafka, pool, topic, partition, order).await;
    elect_preferred(kafka, pool, topic, partition).await
}

/// The rack of node `id` in the cluster (`broker.rack`).
pub fn rack_of(id: i32) -> String {
    format!("rack-{id}")
}

/// Records written to a topic from a task of their own, as an application writes them while a
/// fault happens: values `v-0`, `v-1`, ... without keys (the partitions in turn), one every
/// `every`, by kcon's producer with `acks=all` and `enable.idempotence=true` (a batch sent again
/// across a leader change is written once), until [`stop`](Load::stop).
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: Option<JoinHandle<Vec<String>>>,
}

impl Load {
    /// Starts writing to `topic` of the cluster at `bootstrap`.
    pub fn start(bootstrap: &str, topic: &str, every: Duration) -> Load {
        let producer = Producer::builder()
            .bootstrap_servers(bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .build()
            .expect("a producer");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let topic = topic.to_owned();
        let task = tokio::spawn({
            let (stop, sent) = (stop.clone(), sent.clone());
            async move {
                let mut deliveries = Vec::new();
                let mut values = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("v-{}", values.len());
                    let record = ProducerRecord::new(topic.clone(), value.clone());
                    let delivery = producer
                        .send(record)
                        .await
                        .unwrap_or_else(|e| panic!("sending {value}: {e}"));
                    deliveries.push(delivery);
                    values.push(value);
                    sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(every).await;
                }
                for (d, v) in deliveries.into_iter().zip(&values) {
                    match tokio::time::timeout(FAULT_WITHIN, d).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => panic!("{v} was not written: {e} ({e:?})"),
                        Err(_) => panic!("{v} not written within {FAULT_WITHIN:?}"),
                    }
                }
                producer.close().await.expect("the load's producer closes");
                values
            }
        });
        Load {
            stop,
            sent,
            task: Some(task),
        }
    }

    /// How many records were sent so far (not all written yet).
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until `more` records were sent after the `from`th: the load goes on.
    pub async fn wait_for_more(&self, from: usize, more: usize, what: &str) {
        let deadline = Instant::now() + FAULT_WITHIN;
        while self.sent() < from + more {
            assert!(
                Instant::now() < deadline,
                "{more} records not sent within {FAULT_WITHIN:?} {what} ({} of them)",
                self.sent() - from
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops writing and waits until every record sent is written; returns their values, in
    /// the order sent.
    pub async fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        let task = self.task.take().expect("stopped once");
        task.await
            .unwrap_or_else(|e| panic!("the load's task failed: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Asserts that consumers of one group, one after another (each one's records in the order it
/// got them), together read every value of `written` exactly once, and each partition's
/// records at offsets `0..n` in order, none twice: no record lost, none duplicated.
pub fn assert_read_exactly_once(written: &[String], received: &[&[Record]]) {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut values: BTreeMap<String, usize> = BTreeMap::new();
    for list in received {
        for r in *list {
            by_partition.entry(r.partition).or_default().push(r.offset);
            let v = String::from_utf8_lossy(r.value.as_deref().expect("a value")).into_owned();
            *values.entry(v).or_default() += 1;
        }
    }
    let twice: Vec<&String> = values
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| v)
        .collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    let missing: Vec<&String> = written
        .iter()
        .filter(|v| !values.contains_key(*v))
        .collect();
    assert!(missing.is_empty(), "never read: {missing:?}");
    assert_eq!(values.len(), written.len(), "read what was not written");
    for (p, offsets) in by_partition {
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p}: every offset once, in order"
        );
    }
}

/// `{prefix}-0` to `{prefix}-{n-1}`: the values a test writes.
pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// `(offset, value)` of each record.
pub fn read(records: &[Record]) -> Vec<(i64, String)> {
    records
        .iter()
        .map(|r| {
            let v = r.value.as_deref().expect("a value");
            (r.offset, String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

/// `(offset, value)` of `values` written from `base` on.
pub fn written(base: i64, values: &[String]) -> Vec<(i64, String)> {
    (base..).zip(values.iter().cloned()).collect()
}

/// A consumer of `group` on the cluster at the client's defaults, reading from the earliest
/// offset: what a test adds (hooks, `group.protocol`) goes on top.
pub fn group_member(kafka: &Kafka, group: &str) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(kafka.bootstrap())
        .group_id(group)
        .set("auto.offset.reset", "earliest")
}

/// Subscribes `consumer` to `topic` and drives it on a task of its own; returns once it has
/// read a record.
pub async fn reading(mut consumer: Consumer, topic: &str) -> Driven {
    consumer.subscribe([topic]).expect("a subscription");
    let member = Driven::start("member", consumer, STEP);
    wait_until(
        "the member reading",
        FAULT_WITHIN,
        || member.received() > 0,
        || member.state().errors,
    )
    .await;
    member
}

/// Waits until `member` has read `more` records after the `read`th, while a fault lasts.
pub async fn reads_on(member: &Driven, read: usize, more: usize, what: &str) {
    wait_until(
        &format!("the member reading {what}"),
        FAULT_WITHIN,
        || member.received() >= read + more,
        || (member.received() - read, member.state().errors),
    )
    .await;
}

/// Stops `load`, waits until `member` has read every record written, stops it and closes its
/// consumer; asserts that no receiving call failed and that every record was read exactly
/// once, in order per partition, from each of `partitions` partitions. Returns what it saw.
pub async fn read_to_the_end(load: Load, member: Driven, partitions: i32) -> DrivenState {
    let written = load.stop().await;
    wait_until(
        "every record read",
        FAULT_WITHIN,
        || member.received() >= written.len(),
        || (member.received(), written.len()),
    )
    .await;
    let (consumer, state) = member.stop().await;
    consumer.close().await.expect("a clean close");
    assert_eq!(state.errors, Vec::<String>::new());
    assert_read_exactly_once(&written, &[&state.records]);
    let read_from: std::collections::BTreeSet<i32> =
        state.records.iter().map(|r| r.partition).collect();
    assert_eq!(read_from.len(), partitions as usize, "{read_from:?}");
    state
}

/// The log end of each of `topic`'s partitions `0..partitions`, as their leaders answer
/// ListOffsets now, asked again (at most [`FAULT_WITHIN`]) while a partition has no leader
/// that takes the request (a node just killed, not fenced yet).
pub async fn log_ends(pool: &Pool, topic: &str, partitions: i32) -> BTreeMap<TopicPartition, i64> {
    let asked: BTreeMap<TopicPartition, OffsetSpec> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), OffsetSpec::Latest))
        .collect();
    let deadline = Instant::now() + FAULT_WITHIN;
    loop {
        let listed = kcon_admin::list_offsets(pool, &asked, IsolationLevel::ReadUncommitted).await;
        if let Ok(listed) = &listed
            && listed.values().all(|l| l.error_code == 0)
        {
            return listed
                .iter()
                .map(|(tp, l)| (tp.clone(), l.offset))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: no log end of every partition within {FAULT_WITHIN:?} (last: {listed:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (at most [`FAULT_WITHIN`]) until the group of `offsets` has committed, on every
/// partition of `ends`, at least its offset there, as a tool reads a group's commits from
/// outside it; panics naming `what`, what was committed, and `why()`.
pub async fn wait_for_commits<D: std::fmt::Debug>(
    offsets: &Offsets,
    ends: &BTreeMap<TopicPartition, i64>,
    what: &str,
    why: impl Fn() -> D,
) {
    let deadline = Instant::now() + FAULT_WITHIN;
    loop {
        let asked = ends.keys().cloned().collect();
        let committed: BTreeMap<TopicPartition, i64> = offsets
            .committed(Some(asked))
            .await
            .map(|c| {
                c.into_iter()
                    .filter_map(|(tp, o)| Some((tp, o?.offset)))
                    .collect()
            })
            .unwrap_or_default();
        if ends
            .iter()
            .all(|(tp, end)| committed.get(tp).is_some_and(|c| c >= end))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: committed {committed:?} of {ends:?} within {FAULT_WITHIN:?}\n{:?}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
