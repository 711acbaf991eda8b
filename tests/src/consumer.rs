//! Support for the tests of `kcon::Consumer` against real brokers (`tests/consumer_kafka.rs`,
//! `tests/consumer_mock.rs`): builders with the test defaults, receiving with deadlines, a
//! rebalance listener that records what it was told, consumers driven by their own task (for
//! groups of several consumers, each of which must keep asking for records to take part in
//! rebalances), and the group's members as the coordinator lists them.
//!
//! Waiting for a rebalance means calling a receiving method with a timeout, i.e. cancelling it
//! when no record comes. The waits here cancel at most once per [`STEP`], so that a test whose
//! subject is not cancellation rarely cancels a call in the middle of handling a rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kcon::{
    Consumer, ConsumerBuilder, ListenerFuture, RebalanceContext, RebalanceListener, Record,
    TopicPartition,
};
use kcon_codec::kafka_protocol::messages::DescribeGroupsRequest;
use kcon_codec::kafka_protocol::messages::GroupId;
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, Pool};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

/// How long a wait for a rebalance lets one receiving call run before cancelling it to look at
/// the consumer again.
pub const STEP: Duration = Duration::from_millis(1000);

/// How long a rebalance may take: Tansu completes a join after half the session timeout (3 s
/// here), a cooperative rebalance takes two rounds, and the machine is shared.
pub const REBALANCE_WITHIN: Duration = Duration::from_secs(30);

/// A consumer configuration without a group: `bootstrap`, short fetch waits (Tansu and the
/// mock hold an empty Fetch for all of `fetch.max.wait.ms`), reading from the earliest offset,
/// and a 10 s `close.timeout.ms`, so that a stuck close fails the test quickly.
pub fn builder(bootstrap: &str) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(bootstrap)
        .set("fetch.max.wait.ms", "100")
        .set("auto.offset.reset", "earliest")
        .set("close.timeout.ms", "10000")
}

/// A consumer configuration without a group for Apache Kafka: `bootstrap`, reading from the
/// earliest offset, everything else at the client's defaults.
pub fn builder_at_defaults(bootstrap: &str) -> ConsumerBuilder {
    Consumer::builder()
        .bootstrap_servers(bootstrap)
        .set("auto.offset.reset", "earliest")
}

/// [`builder_at_defaults`] in `group` with `strategy`: Apache Kafka's joins need no shortened
/// session.
pub fn group_builder_at_defaults(bootstrap: &str, group: &str, strategy: &str) -> ConsumerBuilder {
    builder_at_defaults(bootstrap)
        .group_id(group)
        .partition_assignment_strategy(strategy)
}

/// [`builder`] in `group` with `strategy`, a 6 s session timeout and 1 s heartbeats (what
/// Tansu's join delay needs, see DESIGN.md, "The brokers"), and a 10 s `default.api.timeout.ms`.
pub fn group_builder(bootstrap: &str, group: &str, strategy: &str) -> ConsumerBuilder {
    builder(bootstrap)
        .group_id(group)
        .partition_assignment_strategy(strategy)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("default.api.timeout.ms", "10000")
}

/// `topic`'s partitions `0..n`.
pub fn partitions(topic: &str, n: i32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

/// The partition `record` belongs to.
pub fn partition_of(record: &Record) -> TopicPartition {
    TopicPartition::new(&*record.topic, record.partition)
}

/// The offsets of `records` per partition, in the order received.
pub fn offsets_by_partition(records: &[Record]) -> BTreeMap<TopicPartition, Vec<i64>> {
    let mut out: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    for r in records {
        out.entry(partition_of(r)).or_default().push(r.offset);
    }
    out
}

/// Checks that `records` hold each partition's offsets `from[tp]..to[tp]` exactly once and in
/// order (a partition missing from `from` starts at 0), no other partition, and the value
/// `kcon_tests::offsets::produce` gave each (`value-{offset % batch}` for batches of `batch`
/// records starting at multiples of `batch`).
pub fn assert_exactly(
    records: &[Record],
    from: &BTreeMap<TopicPartition, i64>,
    to: &BTreeMap<TopicPartition, i64>,
    batch: i64,
) {
    assert_offsets_exactly(records, from, to);
    assert_values(records, batch);
}

/// [`assert_exactly`]'s offsets alone, for records whose values a test checks itself.
pub fn assert_offsets_exactly(
    records: &[Record],
    from: &BTreeMap<TopicPartition, i64>,
    to: &BTreeMap<TopicPartition, i64>,
) {
    let got = offsets_by_partition(records);
    let want: BTreeMap<TopicPartition, Vec<i64>> = to
        .iter()
        .map(|(tp, &end)| {
            (
                tp.clone(),
                (from.get(tp).copied().unwrap_or(0)..end).collect(),
            )
        })
        .filter(|(_, offsets): &(_, Vec<i64>)| !offsets.is_empty())
        .collect();
    assert_eq!(got, want, "records received (offsets per partition)");
}

/// Checks each record's value is the one `kcon_tests::offsets::produce` gave it in batches of
/// `batch` records starting at multiples of `batch`: `value-{offset % batch}`.
fn assert_values(records: &[Record], batch: i64) {
    for r in records {
        let value = format!("value-{}", r.offset % batch);
        assert_eq!(
            r.value.as_deref(),
            Some(value.as_bytes()),
            "{}@{}",
            partition_of(r),
            r.offset
        );
    }
}

/// Checks records received by several consumers of one group: each consumer got each
/// partition's records in order, and together they got offsets `0..to[tp]` of every partition
/// exactly once (none twice, none missing, no other partition), with the values of batches of
/// `batch` records (see [`assert_exactly`]).
pub fn assert_once_in_group(lists: &[&[Record]], to: &BTreeMap<TopicPartition, i64>, batch: i64) {
    let mut union: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    for (i, list) in lists.iter().enumerate() {
        for (tp, offsets) in offsets_by_partition(list) {
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "consumer {i} got {tp} out of order: {offsets:?}"
            );
            union.entry(tp).or_default().extend(offsets);
        }
        assert_values(list, batch);
    }
    for offsets in union.values_mut() {
        offsets.sort_unstable();
    }
    let want: BTreeMap<TopicPartition, Vec<i64>> = to
        .iter()
        .map(|(tp, &end)| (tp.clone(), (0..end).collect()))
        .collect();
    assert_eq!(
        union, want,
        "records the group received (offsets per partition)"
    );
}

/// Receives exactly `n` records within `within` (one receiving call at a time, cancelled only
/// at the deadline); panics with what came if fewer did.
pub async fn recv_n(consumer: &mut Consumer, n: usize, within: Duration) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        match timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(r)) => records.push(r),
            Ok(Err(e)) => panic!(
                "recv failed after {} of {n} records: {e} ({e:?})\n{consumer:?}",
                records.len()
            ),
            Err(_) => panic!(
                "{} of {n} records within {within:?}: {:?}\n{consumer:?}",
                records.len(),
                offsets_by_partition(&records)
            ),
        }
    }
    records
}

/// Asks for records for `quiet`; panics if one comes (or an error).
pub async fn expect_no_record(consumer: &mut Consumer, quiet: Duration) {
    if let Ok(r) = timeout(quiet, consumer.recv()).await {
        panic!("expected nothing for {quiet:?}, got {r:?}");
    }
}

/// Keeps asking for records (each call cancelled after at most [`STEP`]) until `done` holds
/// for the consumer; returns the records received meanwhile. Panics after `within`, or on an
/// error.
pub async fn poll_until(
    consumer: &mut Consumer,
    what: &str,
    within: Duration,
    done: impl Fn(&Consumer) -> bool,
) -> Vec<Record> {
    let deadline = Instant::now() + within;
    let mut records = Vec::new();
    while !done(consumer) {
        let now = Instant::now();
        assert!(
            now < deadline,
            "not {what} within {within:?}: {consumer:?}, {} records meanwhile",
            records.len()
        );
        let step = STEP.min(deadline - now);
        match timeout(step, consumer.recv()).await {
            Ok(Ok(r)) => records.push(r),
            Ok(Err(e)) => panic!("recv failed while waiting until {what}: {e} ({e:?})"),
            Err(_) => {}
        }
    }
    records
}

/// Polls `cond` every 50 ms until it holds; panics after `within` with `why()`.
pub async fn wait_until<D: Debug>(
    what: &str,
    within: Duration,
    cond: impl Fn() -> bool,
    why: impl Fn() -> D,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not {what} within {within:?}: {:?}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One call of a [`RecordingListener`], in the order made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerCall {
    /// `on_assigned`, with the partitions (sorted).
    Assigned(Vec<TopicPartition>),
    /// `on_revoked`, with the partitions (sorted), the position the context gave for each,
    /// and, when the listener commits, the commit's outcome.
    Revoked {
        /// The partitions revoked.
        partitions: Vec<TopicPartition>,
        /// `RebalanceContext::position` of each, when the method started.
        positions: Vec<Option<i64>>,
        /// `Err(message)` if the listener's commit failed; `None` if it made none.
        commit: Option<Result<(), String>>,
    },
    /// `on_lost`, with the partitions (sorted).
    Lost(Vec<TopicPartition>),
}

/// What a [`RecordingListener`] does besides recording.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListenerBehaviour {
    /// Commit the stored offsets in `on_revoked` (with `enable.auto.commit=false`, the
    /// at-least-once pattern that commits before partitions go).
    pub commit_on_revoke: bool,
    /// Time `on_revoked` takes (sleeping) before it records the call: a slow application
    /// flushing its work.
    pub revoke_delay: Duration,
}

/// A rebalance listener that records its calls in a log shared with the test.
#[derive(Debug, Clone, Default)]
pub struct RecordingListener {
    calls: Arc<Mutex<Vec<ListenerCall>>>,
    behaviour: ListenerBehaviour,
}

impl RecordingListener {
    /// A listener that only records.
    pub fn new() -> RecordingListener {
        RecordingListener::default()
    }

    /// A listener that records and behaves as `behaviour` says.
    pub fn with(behaviour: ListenerBehaviour) -> RecordingListener {
        RecordingListener {
            behaviour,
            ..RecordingListener::default()
        }
    }

    /// The calls so far, oldest first (the log is shared by every clone).
    pub fn calls(&self) -> Vec<ListenerCall> {
        lock(&self.calls).clone()
    }

    /// The partitions the listener was told the consumer owns now: assigned, and not revoked
    /// or lost since.
    pub fn owned(&self) -> BTreeSet<TopicPartition> {
        let mut owned = BTreeSet::new();
        for call in self.calls() {
            match call {
                ListenerCall::Assigned(p) => owned.extend(p),
                ListenerCall::Revoked { partitions, .. } | ListenerCall::Lost(partitions) => {
                    for tp in partitions {
                        owned.remove(&tp);
                    }
                }
            }
        }
        owned
    }

    fn record(&self, call: ListenerCall) {
        lock(&self.calls).push(call);
    }
}

impl RebalanceListener for RecordingListener {
    fn on_assigned<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.record(ListenerCall::Assigned(sorted(partitions)));
        Box::pin(async {})
    }

    fn on_revoked<'a>(
        &'a mut self,
        ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            let partitions = sorted(partitions);
            let positions = partitions.iter().map(|tp| ctx.position(tp)).collect();
            if !self.behaviour.revoke_delay.is_zero() {
                tokio::time::sleep(self.behaviour.revoke_delay).await;
            }
            let commit = if self.behaviour.commit_on_revoke {
                Some(ctx.commit().await.map_err(|e| e.to_string()))
            } else {
                None
            };
            self.record(ListenerCall::Revoked {
                partitions,
                positions,
                commit,
            });
        })
    }

    fn on_lost<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.record(ListenerCall::Lost(sorted(partitions)));
        Box::pin(async {})
    }
}

fn sorted(partitions: &[TopicPartition]) -> Vec<TopicPartition> {
    let mut v = partitions.to_vec();
    v.sort();
    v
}

/// What a [`Driven`] consumer has seen.
#[derive(Debug, Clone, Default)]
pub struct DrivenState {
    /// Every record received, in order.
    pub records: Vec<Record>,
    /// The consumer's assignment after its last receiving call.
    pub assignment: BTreeSet<TopicPartition>,
    /// Errors the receiving calls returned, as text.
    pub errors: Vec<String>,
}

/// A consumer driven by its own task, as an application's poll loop would: it keeps calling
/// `recv_batch` (each call cancelled after `step` when nothing comes), keeps what it gets, and
/// hands the consumer back when stopped. Groups of several consumers need this: each takes
/// part in rebalances only inside its receiving calls.
#[derive(Debug)]
pub struct Driven {
    /// A name for messages.
    pub name: String,
    state: Arc<Mutex<DrivenState>>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Consumer>>,
}

impl Driven {
    /// Starts driving `consumer`, each receiving call running at most `step` when no record
    /// comes.
    pub fn start(name: &str, mut consumer: Consumer, step: Duration) -> Driven {
        let state = Arc::new(Mutex::new(DrivenState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    let got = timeout(step, consumer.recv_batch()).await;
                    let failed = {
                        let mut s = lock(&state);
                        s.assignment = consumer.assignment();
                        match got {
                            Ok(Ok(records)) => {
                                s.records.extend(records);
                                false
                            }
                            Ok(Err(e)) => {
                                s.errors.push(format!("{e} ({:?})", e.kind()));
                                true
                            }
                            Err(_) => false,
                        }
                    };
                    if failed {
                        // No busy loop on an error that repeats.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                consumer
            }
        });
        Driven {
            name: name.to_owned(),
            state,
            stop,
            task: Some(task),
        }
    }

    /// What it has seen so far.
    pub fn state(&self) -> DrivenState {
        lock(&self.state).clone()
    }

    /// Its assignment after its last receiving call.
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        lock(&self.state).assignment.clone()
    }

    /// How many records it received.
    pub fn received(&self) -> usize {
        lock(&self.state).records.len()
    }

    /// Stops the loop after its current call and returns the consumer, with what it saw.
    pub async fn stop(mut self) -> (Consumer, DrivenState) {
        self.stop.store(true, Ordering::SeqCst);
        let task = self.task.take().expect("stopped once");
        let consumer = timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("{}: the poll loop did not stop", self.name))
            .unwrap_or_else(|e| panic!("{}: the poll loop failed: {e}", self.name));
        (consumer, self.state())
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits until the `consumers` together own exactly `expected`, each partition once and each
/// consumer some; panics after `within`.
pub async fn wait_for_split(
    consumers: &[&Driven],
    expected: &BTreeSet<TopicPartition>,
    within: Duration,
) {
    wait_for_split_held(consumers, expected, within, Duration::ZERO).await;
}

/// As [`wait_for_split`], the split also holding for `held` (a rebalance under way can show a
/// split for a moment); panics after `within` with each consumer's assignment and errors.
pub async fn wait_for_split_held(
    consumers: &[&Driven],
    expected: &BTreeSet<TopicPartition>,
    within: Duration,
    held: Duration,
) {
    let deadline = Instant::now() + within;
    let mut held_since: Option<Instant> = None;
    loop {
        let assignments: Vec<BTreeSet<TopicPartition>> =
            consumers.iter().map(|c| c.assignment()).collect();
        let total: usize = assignments.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<&TopicPartition> = assignments.iter().flatten().collect();
        let split = total == expected.len()
            && union == expected.iter().collect()
            && assignments.iter().all(|a| !a.is_empty());
        if split {
            let since = *held_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= held {
                return;
            }
        } else {
            held_since = None;
            assert!(
                Instant::now() < deadline,
                "no exactly-once split of {expected:?} within {within:?}: {:#?}",
                consumers
                    .iter()
                    .map(|c| (c.name.clone(), c.state().assignment, c.state().errors))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The member ids of `group` as its coordinator lists them (DescribeGroups).
pub async fn group_members(pool: &Pool, group: &str) -> Vec<String> {
    let coordinator = kcon_admin::find_coordinator(pool, group)
        .await
        .unwrap_or_else(|e| panic!("the coordinator of {group}: {e:?}"));
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
    let answer = pool
        .send(BrokerTarget::Broker(coordinator.id), &request)
        .await
        .unwrap_or_else(|e| panic!("DescribeGroups {group}: {e}"));
    let described = answer
        .groups
        .first()
        .unwrap_or_else(|| panic!("DescribeGroups {group}: no group in {answer:?}"));
    assert_eq!(
        described.error_code, 0,
        "DescribeGroups {group}: {described:?}"
    );
    described
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect()
}

/// Locks, ignoring poisoning: each critical section here is a single update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
