//! `kcon::Consumer`'s fetching against a scripted broker that keeps fetch sessions (layer 3 of
//! the test plan in DESIGN.md): what neither real broker here can show. The consumer reads
//! partitions it assigned itself, each from an offset it sought; every test asserts what the
//! wire carried, as the peer recorded it, and what the application was handed.

mod peer;
mod records;
mod sessions;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kcon::{
    Consumer, ConsumerBuilder, ConsumerHooks, ErrorKind, Outcome, PersistentFailure,
    TopicPartition, Truncation,
};
use kcon_tests::logs::{self, Logs};
use tokio::time::Instant;

use peer::{SessionBroker, TOPIC};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

/// A configuration for fast tests: short waits and backoffs, earliest reset; `extra` on top.
pub(crate) fn config(extra: &[(&str, &str)]) -> ConsumerBuilder {
    let mut b = Consumer::builder()
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.wait.ms", "50")
        .set("retry.backoff.ms", "20");
    for (k, v) in extra {
        b = b.set(k, *v);
    }
    b
}

/// What the application heard of one partition besides its records: a receiving call's error
/// for it, or a truncated log the consumer read on from (no error: its hook is told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Told {
    /// The error's kind, what the application does next, and the offset it is at.
    Error {
        partition: i32,
        kind: ErrorKind,
        outcome: Outcome,
        offset: Option<i64>,
    },
    /// The log was truncated under `position`; the consumer reads on from `resumed_at`, where
    /// the leader's epoch `diverged_in_epoch` ends.
    Truncated {
        partition: i32,
        position: i64,
        resumed_at: i64,
        diverged_in_epoch: Option<i32>,
    },
}

/// The error for corrupt records of partition `p` at `offset`: nothing at or after it handed
/// out, the application may seek past it.
pub(crate) fn corrupt(p: i32, offset: i64) -> Told {
    Told::Error {
        partition: p,
        kind: ErrorKind::Corrupt,
        outcome: Outcome::Seek,
        offset: Some(offset),
    }
}

/// What the application heard besides records, in order: of partitions (receiving calls'
/// errors, the hook's truncations) and not (errors of no single partition, requests that kept
/// failing).
#[derive(Debug, Clone, Default)]
struct Heard(Arc<Mutex<HeardLog>>);

#[derive(Debug, Default)]
struct HeardLog {
    partitions: Vec<Told>,
    others: Vec<String>,
}

impl Heard {
    fn log(&self) -> MutexGuard<'_, HeardLog> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ConsumerHooks for Heard {
    fn on_truncation(&self, t: &Truncation) {
        assert_eq!(&*t.partition.topic, TOPIC);
        self.log().partitions.push(Told::Truncated {
            partition: t.partition.partition,
            position: t.position,
            resumed_at: t.resumed_at,
            diverged_in_epoch: t.diverged_in_epoch,
        });
    }

    fn on_persistent_failure(&self, failure: &PersistentFailure) {
        self.log().others.push(format!("{failure:?}"));
    }
}

/// A consumer bootstrapped from the peer, and what it handed out so far.
pub(crate) struct Reader {
    pub(crate) consumer: Option<Consumer>,
    /// Per partition: (offset, value) in the order handed out.
    pub(crate) records: BTreeMap<i32, Vec<(i64, String)>>,
    heard: Heard,
    /// What kcon logs, from when the reader was made on.
    logs: Logs,
    mark: usize,
}

impl Reader {
    pub(crate) fn start(broker: &SessionBroker, config: ConsumerBuilder) -> Reader {
        let logs = logs::capture();
        let mark = logs.mark();
        let heard = Heard::default();
        let consumer = config
            .bootstrap_servers(&broker.address())
            .hooks(heard.clone())
            .build()
            .expect("a consumer");
        Reader {
            consumer: Some(consumer),
            records: BTreeMap::new(),
            heard,
            logs,
            mark,
        }
    }

    pub(crate) fn consumer(&mut self) -> &mut Consumer {
        self.consumer.as_mut().expect("not closed")
    }

    /// Assigns `partitions`, each read from the offset given (sought before the first
    /// receiving call: the position is taken as given, without validation or a reset).
    pub(crate) fn assign(&mut self, partitions: impl IntoIterator<Item = (TopicPartition, i64)>) {
        let partitions: Vec<(TopicPartition, i64)> = partitions.into_iter().collect();
        let consumer = self.consumer();
        consumer
            .assign(partitions.iter().map(|(tp, _)| tp.clone()))
            .expect("assigned");
        for (tp, offset) in partitions {
            consumer.seek(tp, offset).expect("sought");
        }
    }

    pub(crate) fn offsets(&self, p: i32) -> Vec<i64> {
        self.records
            .get(&p)
            .map(|r| r.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    /// What the application heard of partitions besides their records, in order.
    pub(crate) fn errors(&self) -> Vec<Told> {
        self.heard.log().partitions.clone()
    }

    /// What else it heard: errors of no single partition, requests that kept failing, and the
    /// positions `auto.offset.reset` moved that kcon logged (at INFO) since the reader was
    /// made.
    pub(crate) fn others(&self) -> Vec<String> {
        let resets = self.logs.since(self.mark).into_iter().filter(|line| {
            line.contains(&format!(" of {TOPIC}-"))
                && line.contains("is out of range; auto.offset.reset moved the position")
        });
        self.heard
            .log()
            .others
            .iter()
            .cloned()
            .chain(resets)
            .collect()
    }

    fn take(&mut self, got: Result<Vec<kcon::Record>, kcon::Error>) {
        match got {
            Ok(records) => {
                for rec in records {
                    assert_eq!(&*rec.topic, TOPIC);
                    let v = rec
                        .value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default();
                    let list = self.records.entry(rec.partition).or_default();
                    list.push((rec.offset, v));
                }
            }
            Err(e) => match e.partitions() {
                [tp] if &*tp.topic == TOPIC => self.heard.log().partitions.push(Told::Error {
                    partition: tp.partition,
                    kind: e.kind(),
                    outcome: e.outcome(),
                    offset: e.offset(),
                }),
                _ => {
                    assert_ne!(e.kind(), ErrorKind::Closed, "the consumer stopped: {e}");
                    self.heard
                        .log()
                        .others
                        .push(format!("{e} ({:?})", e.kind()));
                }
            },
        }
    }

    /// Reads until `done` holds.
    pub(crate) async fn until(&mut self, what: &str, done: impl Fn(&Reader) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            match tokio::time::timeout_at(deadline, self.consumer().recv_batch()).await {
                Ok(got) => self.take(got),
                Err(_) => panic!(
                    "timed out waiting for {what}; records {:?}, errors {:?}, others {:?}",
                    self.records,
                    self.errors(),
                    self.others()
                ),
            }
        }
    }

    /// Reads for `d` (to show that something does not come).
    pub(crate) async fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(got) = tokio::time::timeout_at(deadline, self.consumer().recv_batch()).await {
            self.take(got);
        }
    }

    /// Reads until partition `p` has `n` records.
    pub(crate) async fn until_count(&mut self, p: i32, n: usize) {
        self.until(&format!("{n} records of partition {p}"), |c| {
            c.offsets(p).len() >= n
        })
        .await;
    }
}

/// The records `append` wrote to partition `p` at `offsets`.
pub(crate) fn expected(p: i32, offsets: impl IntoIterator<Item = i64>) -> Vec<(i64, String)> {
    offsets
        .into_iter()
        .map(|o| (o, peer::value(p, o)))
        .collect()
}
