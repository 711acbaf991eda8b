//! Support for the tests of `kcon::Processor` (record policies) on Apache Kafka, every client
//! at its defaults (`tests/policy_kafka.rs`, `tests/schema_registry_kafka.rs`): orders
//! produced as JSON with keys and headers, some of them poison; a log of what the handler saw;
//! reading a topic back exactly; committed offsets; a stop that ends a run once it has handled
//! a batch (`tests/exactly_once_kafka.rs`, the `eos_member` binary).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kcon::{Consumer, Record, TopicPartition};
use kcon_produce::{Producer, ProducerRecord};
use tokio::time::Instant;

use crate::consumer::{builder_at_defaults, expect_no_record, partitions, recv_n};

/// A producer at the client's defaults.
pub fn producer(bootstrap: &str) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .build()
        .unwrap()
}

/// A group consumer of `topic` at the client's defaults with the properties `extra`, manual
/// commits only (auto-commit's interval is a minute: the offsets a test reads are those
/// its processor committed, or left at close).
pub fn consumer(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Consumer {
    let mut b = builder_at_defaults(bootstrap)
        .group_id(group)
        .set("auto.commit.interval.ms", "60000");
    for (n, v) in extra {
        b = b.set(n, *v);
    }
    let mut c = b.build().unwrap();
    c.subscribe([topic]).unwrap();
    c
}

/// Completes once `done` holds for the processor's counts (polled every 50 ms).
pub async fn until(handle: kcon::PolicyMetricsHandle, done: impl Fn(&kcon::PolicyMetrics) -> bool) {
    while !done(&handle.snapshot()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stop for [`kcon::Processor::run_until`] that ends the run once it has handled a batch:
/// ready once the handler was called (`handled` counts its calls) and not called again since
/// the stop was last polled. The processor polls its stop before each record it hands out and,
/// once nothing is ready (the batch done, its transaction committed or aborted), while it waits
/// for records; a poll that finds the handler called since the last wakes the task at once, so
/// that the wait polls the stop again and the run ends there. A run that handles nothing (it
/// waits for records that do not come) does not end.
pub fn after_a_batch(handled: Arc<AtomicUsize>) -> impl Future<Output = ()> + Send {
    let start = handled.load(Ordering::SeqCst);
    let mut seen = start;
    std::future::poll_fn(move |cx| {
        let now = handled.load(Ordering::SeqCst);
        if now != seen {
            seen = now;
            cx.waker().wake_by_ref();
            Poll::Pending
        } else if now > start {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// What a test record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An order the handler processes.
    Good,
    /// An order the handler refuses for good.
    Poison,
    /// Bytes that are not JSON: the value deserializer refuses them.
    Garbled,
}

/// The JSON value of a test record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Order {
    /// The record's number within its partition.
    pub id: u64,
    /// The handler refuses it for good.
    pub poison: bool,
}

/// The value bytes of record `id` of `kind`.
pub fn value(id: u64, kind: Kind) -> Bytes {
    match kind {
        Kind::Good | Kind::Poison => {
            let poison = kind == Kind::Poison;
            Bytes::from(format!(r#"{{"id":{id},"poison":{poison}}}"#))
        }
        Kind::Garbled => Bytes::from(format!("{{not json {id}")),
    }
}

/// Produces `kinds` to `topic`-`partition` in order (offsets from 0 on a new topic), each
/// with key `k<partition>-<i>` and a header `trace`; returns what was sent, by offset.
pub async fn produce_kinds(
    producer: &Producer,
    topic: &str,
    partition: i32,
    kinds: &[Kind],
) -> BTreeMap<i64, ProducerRecord> {
    let mut sent = BTreeMap::new();
    for (i, kind) in kinds.iter().enumerate() {
        let record = ProducerRecord::new(topic, value(i as u64, *kind))
            .with_key(format!("k{partition}-{i}"))
            .with_partition(partition)
            .with_header("trace", Some(format!("t{partition}-{i}")));
        let delivered = producer
            .send(record.clone())
            .await
            .expect("queued")
            .await
            .expect("delivered");
        sent.insert(delivered.offset.expect("an offset"), record);
    }
    sent
}

/// One call of a handler: the record's partition and offset, the attempt, and when.
pub type Call = (TopicPartition, i64, u32, Instant);

/// What the handler saw: each call, in order.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Call>>>);

impl Seen {
    /// Notes a call.
    pub fn note(&self, record: &Record, attempt: u32) {
        self.0.lock().unwrap().push((
            record.topic_partition(),
            record.offset,
            attempt,
            Instant::now(),
        ));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// The offsets of `tp` the handler was called with, in order (retries included).
    pub fn offsets(&self, tp: &TopicPartition) -> Vec<i64> {
        self.calls()
            .into_iter()
            .filter(|(t, ..)| t == tp)
            .map(|(_, o, ..)| o)
            .collect()
    }
}

/// Reads `topic`'s `n` partitions from the start: exactly `count` records, and then nothing
/// more for a second.
pub async fn read_exactly(bootstrap: &str, topic: &str, n: i32, count: usize) -> Vec<Record> {
    read_exactly_at(bootstrap, topic, n, count, "read_uncommitted").await
}

/// [`read_exactly`] by a reader at `isolation` (`read_committed` or `read_uncommitted`).
pub async fn read_exactly_at(
    bootstrap: &str,
    topic: &str,
    n: i32,
    count: usize,
    isolation: &str,
) -> Vec<Record> {
    let mut consumer: Consumer = builder_at_defaults(bootstrap)
        .set("isolation.level", isolation)
        .build()
        .unwrap();
    consumer.assign(partitions(topic, n)).unwrap();
    let records = if count == 0 {
        Vec::new()
    } else {
        recv_n(&mut consumer, count, Duration::from_secs(30)).await
    };
    expect_no_record(&mut consumer, Duration::from_secs(1)).await;
    consumer.close().await.unwrap();
    records
}

/// The offsets `group` has committed for `topic`'s `n` partitions (`None` where none).
pub async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    n: i32,
) -> BTreeMap<TopicPartition, Option<i64>> {
    let consumer: Consumer = builder_at_defaults(bootstrap)
        .group_id(group)
        .build()
        .unwrap();
    let all: BTreeSet<TopicPartition> = partitions(topic, n);
    let committed = consumer.committed(all).await.unwrap();
    consumer.close().await.unwrap();
    committed
}

/// The value of the last header named `name`, as text.
pub fn header(record: &Record, name: &str) -> Option<String> {
    record
        .header(name)
        .flatten()
        .map(|v| String::from_utf8(v.to_vec()).expect("a UTF-8 header"))
}

/// The offsets above `committed` that a kcon Processor's commit metadata `text` names as done
/// with, read from the encoding as README.md documents it (`kcon1`, `r` or `b`, base64url of
/// the committed offset and the span as LEB128 varints, then run lengths or a bitmap): a reader
/// written apart from the writer's code, so that a test checks the documented encoding and not
/// the writer against itself. `None` when the text is empty, names another offset, or is not
/// that encoding.
pub fn finished_named(text: &str, committed: i64) -> Option<BTreeSet<i64>> {
    use base64::Engine as _;

    let body = text.strip_prefix("kcon1")?;
    let (kind, encoded) = body.split_at_checked(1)?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    let mut bytes = payload.iter().copied();
    let mut varint = || -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes.next()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let at = i64::try_from(varint()?).ok()?;
    let span = i64::try_from(varint()?).ok()?;
    if at != committed {
        return None;
    }
    let mut named = BTreeSet::new();
    match kind {
        "r" => {
            let (mut next, mut finished) = (at + 1, true);
            while next <= at + span {
                let run = i64::try_from(varint()?).ok()?;
                if finished {
                    named.extend(next..next + run);
                }
                next += run;
                finished = !finished;
            }
        }
        "b" => {
            let header = payload
                .len()
                .checked_sub(usize::try_from(span).ok()?.div_ceil(8))?;
            for i in 0..span {
                let bit = usize::try_from(i).ok()?;
                if payload[header + bit / 8] & (1 << (bit % 8)) != 0 {
                    named.insert(at + 1 + i);
                }
            }
        }
        _ => return None,
    }
    Some(named)
}

/// A stop for a run of records side by side that is seen while `n` records are in the
/// handler: the stop is ready once `n` handlers have begun ([`begin`](Self::begin)), and each
/// handler is held there until the run has seen it. Every record's answer then comes after the
/// run's last turn for new work.
pub struct StopWithAllInHandler {
    n: usize,
    begun: AtomicUsize,
    all_begun: tokio::sync::Notify,
    seen: std::sync::atomic::AtomicBool,
}

impl StopWithAllInHandler {
    /// A stop seen with `n` records in the handler.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(StopWithAllInHandler {
            n,
            begun: AtomicUsize::new(0),
            all_begun: tokio::sync::Notify::new(),
            seen: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The run's stop: ready once `n` handlers began, noting that the run saw it.
    pub fn stop(self: &Arc<Self>) -> impl Future<Output = ()> + use<> {
        let this = self.clone();
        async move {
            this.all_begun.notified().await;
            this.seen.store(true, Ordering::SeqCst);
        }
    }

    /// A handler begins: returns once the run has seen its stop.
    pub async fn begin(&self) {
        if self.begun.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.all_begun.notify_one();
        }
        while !self.seen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How many handlers began.
    pub fn begun(&self) -> usize {
        self.begun.load(Ordering::SeqCst)
    }
}
