//! `kcon::Consumer`'s fetching against librdkafka's mock cluster (3 brokers), partitions
//! assigned by the application: leaders moved while consuming, errors pushed on Fetch,
//! OFFSET_OUT_OF_RANGE under a reset policy and under `none`, follower fetching (KIP-392), and
//! pause/resume.
//!
//! What the mock's Fetch handler (librdkafka 2.16 `rdkafka_mock_handlers.c`) does, which these
//! tests are built around:
//! - It answers one message set (one produced batch) per partition per Fetch, so data is
//!   produced in small batches and kept small (the mock's fetch path is slow).
//! - An error pushed with `push_request_errors` is the answer's top-level error code (Fetch v7+)
//!   and every partition's. The Java client and kcon ignore the partitions of an answer with a
//!   top-level error, so pushed errors test the session-level path. Partition-level errors come
//!   from the mock's own checks (NOT_LEADER_OR_FOLLOWER with the KIP-951 current leader after
//!   `set_leader`, FENCED/UNKNOWN_LEADER_EPOCH, OFFSET_OUT_OF_RANGE for an offset past the log
//!   end) and from `push_partition_request_errors`, which fails one partition of each Fetch
//!   that names it, one error per Fetch, and leaves the others alone.
//! - KIP-392: the leader names `set_follower`'s broker as preferred read replica (Fetch v11+)
//!   in every answer, with no records, whatever the client's `client.rack` and the brokers'
//!   racks say: the mock reads the request's rack id and ignores it. It names the follower even
//!   while that broker is down.
//!
//! Besides records, the tests watch everything the application hears: the receiving calls'
//! errors, the hooks' truncations and requests that keep failing, and the position resets the
//! consumer logs (a position out of range moved by `auto.offset.reset`, at INFO).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kcon::{
    Consumer, ConsumerHooks, ErrorKind, Outcome, PersistentFailure, Record, TopicPartition,
    Truncation,
};
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::wait_until;
use kcon_tests::logs::{self, Logs};
use kcon_tests::mock::{MockCluster, TRANSPORT_ERROR};
use kcon_tests::offsets::{produce, produce_spread};
use kcon_tests::pool::config;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const KAFKA_STORAGE_ERROR: i16 = 56;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// How long one wait for records may take before the test fails.
const STALL: Duration = Duration::from_secs(15);

/// A 3-broker mock with `topic` of `partitions` partitions (replication 3), every partition
/// led by broker 1, and a pool for producing (separate from the consumer's, so that the
/// consumer learns of leader changes by itself).
fn mock_with_topic(partitions: i32) -> (MockCluster, String, Pool) {
    let mock = MockCluster::start(3);
    let topic = unique_name("consumer-fetch-mock");
    mock.create_topic(&topic, partitions, 3);
    for p in 0..partitions {
        mock.set_leader(&topic, p, 1);
    }
    let producer = Pool::new(config(mock.bootstrap())).unwrap();
    (mock, topic, producer)
}

/// A consumer of the mock that tells `reader` what it hears: short waits (the mock holds an
/// empty Fetch for the whole `fetch.max.wait.ms`), small answers, and `extra`.
fn start(mock: &MockCluster, reader: &Reader, extra: &[(&str, &str)]) -> Consumer {
    let mut b = Consumer::builder()
        .bootstrap_servers(mock.bootstrap())
        .hooks(reader.heard.clone());
    for (k, v) in [
        ("fetch.max.wait.ms", "100"),
        ("fetch.max.bytes", "4096"),
        ("fetch.buffer.max.bytes", "8192"),
        ("auto.offset.reset", "earliest"),
    ]
    .iter()
    .chain(extra)
    {
        b = b.set(k, *v);
    }
    b.build().unwrap_or_else(|e| panic!("{extra:?}: {e}"))
}

/// Assigns `partitions` of `topic` to `consumer`, each read from the offset given (sought
/// before the first receiving call: the position is taken as given, with no leader epoch to
/// validate and no reset).
fn assign(consumer: &mut Consumer, partitions: &[(TopicPartition, i64)]) {
    consumer
        .assign(partitions.iter().map(|(tp, _)| tp.clone()))
        .unwrap();
    for (tp, offset) in partitions {
        consumer.seek(tp.clone(), *offset).unwrap();
    }
}

fn from_zero(topic: &str, partitions: impl IntoIterator<Item = i32>) -> Vec<(TopicPartition, i64)> {
    partitions
        .into_iter()
        .map(|p| (TopicPartition::new(topic, p), 0))
        .collect()
}

/// Something the application heard besides records.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A receiving call's error: its kind, what the application does next, the partitions it
    /// is about and the offset it is at.
    Error {
        kind: ErrorKind,
        outcome: Outcome,
        partitions: Vec<TopicPartition>,
        offset: Option<i64>,
    },
    /// A truncated log the consumer read on from (`ConsumerHooks::on_truncation`).
    Truncation {
        partition: TopicPartition,
        position: i64,
        resumed_at: i64,
    },
    /// A request that keeps failing, or recovered (`ConsumerHooks::on_persistent_failure`).
    Failing { subject: String, recovered: bool },
    /// A position the log does not hold, moved by `auto.offset.reset`: the consumer's INFO line.
    Reset(String),
}

impl Event {
    fn error(e: &kcon::Error) -> Event {
        Event::Error {
            kind: e.kind(),
            outcome: e.outcome(),
            partitions: e.partitions().to_vec(),
            offset: e.offset(),
        }
    }

    /// The error for `tp`'s position `offset` out of range under `auto.offset.reset=none`.
    fn out_of_range(tp: &TopicPartition, offset: i64) -> Event {
        Event::Error {
            kind: ErrorKind::NoOffset,
            outcome: Outcome::Seek,
            partitions: vec![tp.clone()],
            offset: Some(offset),
        }
    }
}

/// The events a consumer's hooks and the test's receiving calls tell, in order.
#[derive(Debug, Clone, Default)]
struct Heard(Arc<Mutex<Vec<Event>>>);

impl Heard {
    fn events(&self) -> MutexGuard<'_, Vec<Event>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConsumerHooks for Heard {
    fn on_truncation(&self, t: &Truncation) {
        self.events().push(Event::Truncation {
            partition: t.partition.clone(),
            position: t.position,
            resumed_at: t.resumed_at,
        });
    }

    fn on_persistent_failure(&self, failure: &PersistentFailure) {
        self.events().push(Event::Failing {
            subject: failure.subject.clone(),
            recovered: failure.recovered,
        });
    }
}

/// What the application read: the next offset expected per partition. Every record must come
/// exactly once and in order, with the value `produce` gave it, and the consumer's position
/// must follow.
struct Reader {
    topic: String,
    /// The batch size records were produced with (values are `value-{offset % batch}`).
    batch: i64,
    next: BTreeMap<i32, i64>,
    heard: Heard,
    /// What kcon logs, from when the reader was made on.
    logs: Logs,
    mark: usize,
}

impl Reader {
    fn new(topic: &str, batch: i64) -> Self {
        let logs = logs::capture();
        let mark = logs.mark();
        Reader {
            topic: topic.to_owned(),
            batch,
            next: BTreeMap::new(),
            heard: Heard::default(),
            logs,
            mark,
        }
    }

    fn next(&self, partition: i32) -> i64 {
        self.next.get(&partition).copied().unwrap_or(0)
    }

    fn total(&self) -> i64 {
        self.next.values().sum()
    }

    /// Everything but records the application heard, in order (errors and hooks), then the
    /// position resets of the topic logged since the reader was made.
    fn others(&self) -> Vec<Event> {
        let resets = self.logs.since(self.mark).into_iter().filter_map(|line| {
            let at = line.find(": offset ")?;
            let message = &line[at + 2..];
            (message.contains(&format!(" of {}-", self.topic))
                && message.contains("is out of range; auto.offset.reset moved the position"))
            .then(|| Event::Reset(message.to_owned()))
        });
        self.heard.events().iter().cloned().chain(resets).collect()
    }

    /// Takes what the next receiving call brings (`recv_batch`, or `recv` when `one`): records
    /// are checked, anything else is heard. `on_records` sees the records' partition first (a
    /// test's assertion about which partitions may deliver now). Panics when the call takes
    /// longer than [`STALL`].
    async fn take(
        &mut self,
        consumer: &mut Consumer,
        one: bool,
        on_records: &mut impl FnMut(&TopicPartition),
    ) {
        let got = if one {
            tokio::time::timeout(STALL, consumer.recv())
                .await
                .map(|r| r.map(|r| vec![r]))
        } else {
            tokio::time::timeout(STALL, consumer.recv_batch()).await
        };
        let got = got.unwrap_or_else(|_| {
            panic!(
                "stalled at {:?}; other events: {:?}",
                self.next,
                self.others()
            )
        });
        match got {
            Ok(records) => self.check(consumer, &records, on_records),
            Err(e) => {
                assert_ne!(e.kind(), ErrorKind::Closed, "the consumer stopped: {e}");
                self.heard.events().push(Event::error(&e));
            }
        }
    }

    fn check(
        &mut self,
        consumer: &Consumer,
        records: &[Record],
        on_records: &mut impl FnMut(&TopicPartition),
    ) {
        let tp = TopicPartition::new(&*records[0].topic, records[0].partition);
        on_records(&tp);
        assert_eq!(tp.topic, self.topic);
        let expected = self.next.entry(tp.partition).or_insert(0);
        for rec in records {
            assert_eq!(
                (&*rec.topic, rec.partition),
                (tp.topic.as_str(), tp.partition)
            );
            assert_eq!(
                rec.offset, *expected,
                "{tp}: a record missing, repeated or out of order"
            );
            let value = format!("value-{}", rec.offset % self.batch);
            assert_eq!(rec.value.as_deref(), Some(value.as_bytes()));
            *expected += 1;
        }
        assert_eq!(consumer.position(&tp), Some(*expected), "{tp}");
    }

    /// Reads until `done` holds, checking every record; panics when one wait takes longer
    /// than [`STALL`]. `on_records` sees each partition's batch first.
    async fn read_until(
        &mut self,
        consumer: &mut Consumer,
        mut on_records: impl FnMut(&TopicPartition),
        done: impl Fn(&Reader) -> bool,
    ) {
        while !done(self) {
            self.take(consumer, false, &mut on_records).await;
        }
    }

    /// Reads until every partition reached `want` (partition → end offset).
    async fn read_all(&mut self, consumer: &mut Consumer, want: &BTreeMap<i32, i64>) {
        self.read_until(
            consumer,
            |_| {},
            |r| want.iter().all(|(p, end)| r.next(*p) >= *end),
        )
        .await;
        for (p, end) in want {
            assert_eq!(self.next(*p), *end, "partition {p} read past its end");
        }
    }
}

fn ends(per_partition: &[i64]) -> BTreeMap<i32, i64> {
    per_partition
        .iter()
        .enumerate()
        .map(|(p, n)| (p as i32, *n))
        .collect()
}

/// The Fetch requests each broker received since tracking started (or was cleared).
fn fetches_per_broker(mock: &MockCluster) -> BTreeMap<i32, usize> {
    let mut n = BTreeMap::new();
    for r in mock.requests() {
        if r.api_key == ApiKey::Fetch as i16 {
            *n.entry(r.broker_id).or_insert(0) += 1;
        }
    }
    n
}

/// Every partition's leader moves from broker 1 to broker 2 in the middle of consuming: the
/// old leader answers NOT_LEADER_OR_FOLLOWER (with the new leader, KIP-951), the consumer
/// refreshes metadata, validates its positions on the new leader (OffsetForLeaderEpoch) and
/// goes on there. Every record arrives once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_follows_leaders_moved_while_consuming() {
    const PARTITIONS: i32 = 6;
    const BATCH: i64 = 50;
    let (mock, topic, producer) = mock_with_topic(PARTITIONS);
    let per_partition = produce_spread(&producer, &topic, PARTITIONS, 3_000, BATCH).await;
    let started = Instant::now();
    mock.start_request_tracking();
    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[]);
    assign(&mut consumer, &from_zero(&topic, 0..PARTITIONS));
    reader
        .read_until(&mut consumer, |_| {}, |r| r.total() >= 600)
        .await;
    // The prefetch budget (8 KiB, about 8 batches) bounds what was fetched from broker 1.
    let left = 3_000 - reader.total();
    assert!(
        left > 2_000,
        "only {left} records left to read after the move"
    );
    assert_eq!(
        fetches_per_broker(&mock).get(&2),
        None,
        "broker 2 led nothing yet"
    );
    for p in 0..PARTITIONS {
        mock.set_leader(&topic, p, 2);
    }
    reader.read_all(&mut consumer, &ends(&per_partition)).await;
    assert!(
        reader.others().is_empty(),
        "no resets, no errors: {:?}",
        reader.others()
    );
    let fetches = fetches_per_broker(&mock);
    assert!(fetches.get(&2).is_some_and(|n| *n > 0), "{fetches:?}");
    let requests = mock.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.api_key == ApiKey::OffsetForLeaderEpoch as i16 && r.broker_id == 2),
        "positions are validated on the new leader (KIP-320)"
    );
    // From now on only the new leader is fetched from: the next idle fetches all go there.
    mock.clear_requests();
    wait_until(
        "four idle fetches",
        STALL,
        || fetches_per_broker(&mock).values().sum::<usize>() >= 4,
        || fetches_per_broker(&mock),
    )
    .await;
    let fetches = fetches_per_broker(&mock);
    assert!(
        fetches.keys().eq([&2]),
        "idle fetches go to the new leader only: {fetches:?}"
    );
    eprintln!("3000 records, leaders moved, in {:?}", started.elapsed());
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}

/// Errors pushed on the leader's Fetch answers (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
/// KAFKA_STORAGE_ERROR, OFFSET_OUT_OF_RANGE, then a closed connection) in the middle of
/// consuming: each is retried, OFFSET_OUT_OF_RANGE as a top-level error resets nothing (the
/// reset policy is `earliest`: a reset would repeat records), and every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_fetch_errors_lose_and_repeat_nothing() {
    const PARTITIONS: i32 = 3;
    const BATCH: i64 = 50;
    let (mock, topic, producer) = mock_with_topic(PARTITIONS);
    let per_partition = produce_spread(&producer, &topic, PARTITIONS, 1_200, BATCH).await;
    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[]);
    assign(&mut consumer, &from_zero(&topic, 0..PARTITIONS));
    reader
        .read_until(&mut consumer, |_| {}, |r| r.total() >= 100)
        .await;
    let errors = [
        NOT_LEADER_OR_FOLLOWER,
        UNKNOWN_TOPIC_OR_PARTITION,
        KAFKA_STORAGE_ERROR,
        OFFSET_OUT_OF_RANGE,
        TRANSPORT_ERROR,
        NOT_LEADER_OR_FOLLOWER,
    ];
    let with_rtt: Vec<(i16, Duration)> = errors.iter().map(|&e| (e, Duration::ZERO)).collect();
    mock.push_request_error_rtts(1, ApiKey::Fetch, &with_rtt);
    reader.read_all(&mut consumer, &ends(&per_partition)).await;
    assert_eq!(
        mock.error_stack_len(1, ApiKey::Fetch),
        0,
        "every pushed error was answered"
    );
    assert!(reader.others().is_empty(), "{:?}", reader.others());
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}

/// Errors pushed for single partitions: partition 0 answers NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION and KAFKA_STORAGE_ERROR (twice over) to the Fetches that name it,
/// and partition 1 OFFSET_OUT_OF_RANGE once, under `auto.offset.reset=none`. Partition 0 is
/// retried after each backoff (metadata refreshed, nothing reported); partitions 1 and 2 are
/// fetched meanwhile and read to their ends before partition 0 delivers anything. Partition 1's
/// error is reported for it alone, its position stays, and the next Fetch reads it from there.
/// Every record of every partition arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_errors_hold_up_only_their_partition() {
    const PARTITIONS: i32 = 3;
    const BATCH: i64 = 50;
    // Six errors, each followed by a backoff: partition 0's first records come 3 s after its
    // first Fetch at the earliest; partitions 1 and 2 need four batches each (and partition 1
    // one backoff), far less.
    const BACKOFF: &str = "500";
    let (mock, topic, producer) = mock_with_topic(PARTITIONS);
    let per_partition = produce_spread(&producer, &topic, PARTITIONS, 600, BATCH).await;
    let transient = [
        NOT_LEADER_OR_FOLLOWER,
        UNKNOWN_TOPIC_OR_PARTITION,
        KAFKA_STORAGE_ERROR,
    ];
    mock.push_partition_request_errors(&topic, 0, ApiKey::Fetch, &transient.repeat(2));
    mock.push_partition_request_errors(&topic, 1, ApiKey::Fetch, &[OFFSET_OUT_OF_RANGE]);
    mock.start_request_tracking();
    let started = Instant::now();
    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(
        &mock,
        &reader,
        &[("auto.offset.reset", "none"), ("retry.backoff.ms", BACKOFF)],
    );
    assign(&mut consumer, &from_zero(&topic, 0..PARTITIONS));
    reader
        .read_until(
            &mut consumer,
            |_| {},
            |r| r.next(0) > 0 || (1..PARTITIONS).all(|p| r.next(p) >= per_partition[p as usize]),
        )
        .await;
    assert_eq!(
        reader.next(0),
        0,
        "partition 0 delivered before the others were read: {:?}",
        reader.next
    );
    let others_done = started.elapsed();
    reader.read_all(&mut consumer, &ends(&per_partition)).await;
    let p0_done = started.elapsed();
    assert_eq!(
        reader.others(),
        [Event::out_of_range(&TopicPartition::new(&topic, 1), 0)],
        "one error, for partition 1 only"
    );
    // Partition 0 was asked again after each error: 7 Fetches naming it at least, all to the
    // leader, and Metadata was refreshed.
    let fetches = fetches_per_broker(&mock);
    assert!(fetches.keys().eq([&1]) && fetches[&1] >= 7, "{fetches:?}");
    assert!(
        mock.requests()
            .iter()
            .filter(|r| r.api_key == ApiKey::Metadata as i16)
            .count()
            >= 2,
        "metadata refreshed after the errors"
    );
    assert!(
        p0_done >= Duration::from_millis(2_500),
        "partition 0 backed off after each of its errors, done after {p0_done:?}"
    );
    eprintln!("partitions 1 and 2 read in {others_done:?}, partition 0 in {p0_done:?}");
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}

/// OFFSET_OUT_OF_RANGE from the mock's own check (a committed offset past the log end), at the
/// partition level: under `none` it is reported for that partition only (the others go on)
/// and a seek recovers it; under `earliest` the partition is reset to 0 and told so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_out_of_range_follows_the_reset_policy() {
    const BATCH: i64 = 50;
    let (mock, topic, producer) = mock_with_topic(2);
    let per_partition = produce_spread(&producer, &topic, 2, 200, BATCH).await;
    let (p0, p1) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );

    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[("auto.offset.reset", "none")]);
    assign(&mut consumer, &[(p0.clone(), 0), (p1.clone(), 1_000)]);
    reader
        .read_until(
            &mut consumer,
            |tp| assert_eq!(tp.partition, 0, "nothing of the out-of-range partition"),
            |r| r.next(0) >= 100 && !r.others().is_empty(),
        )
        .await;
    let others = reader.others();
    assert_eq!(others[0], Event::out_of_range(&p1, 1_000));
    assert!(
        others[1..].iter().all(|e| *e == others[0]),
        "only that error, for that partition: {others:?}"
    );
    consumer.seek(p1.clone(), 0).unwrap();
    reader.read_all(&mut consumer, &ends(&per_partition)).await;
    consumer.close_within(Duration::from_secs(5)).await.unwrap();

    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[("auto.offset.reset", "earliest")]);
    assign(&mut consumer, &[(p1.clone(), 1_000)]);
    reader
        .read_all(&mut consumer, &BTreeMap::from([(1, per_partition[1])]))
        .await;
    assert_eq!(
        reader.others(),
        [Event::Reset(format!(
            "offset 1000 of {p1} is out of range; auto.offset.reset moved the position to offset 0"
        ))]
    );
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}

/// Follower fetching (KIP-392): the leader (broker 1) names broker 2 as preferred read
/// replica, and the consumer reads from it. When broker 2 goes down the consumer goes back to
/// the leader, and once the leader names no follower it reads everything from there; a
/// replica that cannot even be connected to is given up (Java `selectReadReplica`), not waited
/// on for the whole `metadata.max.age.ms` lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_fetching_and_back_to_the_leader() {
    const BATCH: i64 = 50;
    let (mock, topic, producer) = mock_with_topic(1);
    for (id, rack) in [(1, "r1"), (2, "r2"), (3, "r3")] {
        mock.set_rack(id, rack);
    }
    mock.set_follower(&topic, 0, 2);
    produce_spread(&producer, &topic, 1, 300, BATCH).await;
    mock.start_request_tracking();
    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[("client.rack", "r2")]);
    assign(&mut consumer, &from_zero(&topic, [0]));
    reader
        .read_all(&mut consumer, &BTreeMap::from([(0, 300)]))
        .await;
    let fetches = fetches_per_broker(&mock);
    // The leader is asked once (it names the follower, with no records); every batch comes from
    // the follower.
    assert!(
        fetches.get(&2).is_some_and(|n| *n >= 6) && fetches.get(&1).is_some_and(|n| *n <= 2),
        "{fetches:?}"
    );

    mock.set_down(2);
    mock.set_follower(&topic, 0, -1);
    mock.clear_requests();
    for _ in 0..2 {
        produce(&producer, &topic, 0, BATCH as usize, 1_000).await;
    }
    reader
        .read_all(&mut consumer, &BTreeMap::from([(0, 400)]))
        .await;
    let fetches = fetches_per_broker(&mock);
    assert!(fetches.get(&1).is_some_and(|n| *n >= 2), "{fetches:?}");
    assert!(reader.others().is_empty(), "{:?}", reader.others());
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}

/// Pause and resume: records of a paused partition already fetched (the rest of the batch the
/// application is reading, waiting in the consumer, and what was fetched after it meanwhile)
/// are not handed out while it is paused, the other partition goes on, and after the resume the
/// paused partition's records come in order from where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_partition_hands_out_nothing_until_resumed() {
    const BATCH: i64 = 50;
    let (mock, topic, producer) = mock_with_topic(2);
    let per_partition = produce_spread(&producer, &topic, 2, 400, BATCH).await;
    let p0 = TopicPartition::new(&topic, 0);
    let mut reader = Reader::new(&topic, BATCH);
    let mut consumer = start(&mock, &reader, &[]);
    assign(&mut consumer, &from_zero(&topic, 0..2));
    // Take a batch of partition 1, then records one at a time up to partition 0's next: the
    // rest of its batch (one produced batch per answer) is fetched and waits in the consumer,
    // and its next batch is fetched meanwhile (the answer's bytes left the prefetch budget when
    // the consumer took it).
    reader
        .read_until(&mut consumer, |_| {}, |r| r.next(1) > 0)
        .await;
    let before = reader.next(0);
    while reader.next(0) == before {
        reader.take(&mut consumer, true, &mut |_| {}).await;
    }
    consumer.pause([p0.clone()]).unwrap();
    let paused_at = reader.next(0);
    assert_ne!(
        paused_at % BATCH,
        0,
        "paused in the middle of a batch: its rest is fetched"
    );
    reader
        .read_until(
            &mut consumer,
            |tp| assert_ne!(tp.partition, 0, "records of the paused partition"),
            |r| r.next(1) >= per_partition[1],
        )
        .await;
    // Nothing more of it either while the other partition is idle.
    let quiet = tokio::time::timeout(Duration::from_millis(700), consumer.recv_batch()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert_eq!(reader.next(0), paused_at);
    consumer.resume([p0]).unwrap();
    reader.read_all(&mut consumer, &ends(&per_partition)).await;
    assert!(reader.others().is_empty(), "{:?}", reader.others());
    consumer.close_within(Duration::from_secs(5)).await.unwrap();
}
