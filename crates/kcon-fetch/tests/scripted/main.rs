//! The `Fetcher` against a scripted broker that keeps fetch sessions (layer 3 of the test plan
//! in DESIGN.md): what neither real broker here can show. Every test asserts
//! what the wire carried, as the peer recorded it.

mod peer;
mod records;
mod sessions;

use std::collections::BTreeMap;
use std::time::Duration;

use kcon_core::TopicPartition;
use kcon_fetch::position::PartitionError;
use kcon_fetch::{FetchConfig, FetchEvent, Fetcher, StartPosition};
use kcon_pool::{Pool, PoolConfig};
use tokio::time::Instant;

use peer::{SessionBroker, TOPIC};

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, p)
}

pub(crate) fn from(offset: i64) -> StartPosition {
    StartPosition::Committed {
        offset,
        leader_epoch: None,
    }
}

/// A config for fast tests: short waits and backoffs, earliest reset.
pub(crate) fn config(extra: &[(&str, &str)]) -> FetchConfig {
    let mut c = FetchConfig::default();
    c.set("auto.offset.reset", "earliest").unwrap();
    c.set("fetch.max.wait.ms", "50").unwrap();
    c.set("retry.backoff.ms", "20").unwrap();
    for (k, v) in extra {
        c.set(k, v).unwrap();
    }
    c
}

/// A `Fetcher` on a pool bootstrapped from the peer, and what it handed out so far.
pub(crate) struct Consumer {
    pub(crate) fetcher: Option<Fetcher>,
    /// Per partition: (offset, value) in the order handed out.
    pub(crate) records: BTreeMap<i32, Vec<(i64, String)>>,
    pub(crate) errors: Vec<(i32, PartitionError)>,
    pub(crate) others: Vec<FetchEvent>,
}

impl Consumer {
    pub(crate) fn start(broker: &SessionBroker, config: FetchConfig) -> Consumer {
        let mut pc = PoolConfig::default();
        pc.bootstrap_servers = vec![broker.address()];
        let pool = Pool::new(pc).expect("a pool");
        Consumer {
            fetcher: Some(Fetcher::start(pool, config).expect("a fetcher")),
            records: BTreeMap::new(),
            errors: Vec::new(),
            others: Vec::new(),
        }
    }

    pub(crate) fn fetcher(&mut self) -> &mut Fetcher {
        self.fetcher.as_mut().expect("not closed")
    }

    pub(crate) fn offsets(&self, p: i32) -> Vec<i64> {
        self.records
            .get(&p)
            .map(|r| r.iter().map(|(o, _)| *o).collect())
            .unwrap_or_default()
    }

    fn take(&mut self, e: FetchEvent) {
        match e {
            FetchEvent::Records(r) => {
                let list = self.records.entry(r.partition.partition).or_default();
                for rec in r.records {
                    let v = rec
                        .value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default();
                    list.push((rec.offset, v));
                }
            }
            FetchEvent::PartitionError { partition, error } => {
                self.errors.push((partition.partition, error));
            }
            other => self.others.push(other),
        }
    }

    /// Reads events until `done` holds.
    pub(crate) async fn until(&mut self, what: &str, done: impl Fn(&Consumer) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let e = tokio::time::timeout_at(deadline, self.fetcher().next()).await;
            match e {
                Ok(Some(e)) => self.take(e),
                Ok(None) => panic!("the fetcher stopped while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; records {:?}, errors {:?}, others {:?}",
                    self.records, self.errors, self.others
                ),
            }
        }
    }

    /// Reads events for `d` (to show that something does not come).
    pub(crate) async fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.fetcher().next()).await {
            self.take(e);
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
