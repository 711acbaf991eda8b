//! A group member for the rebalance benchmark: consumes until its stdin closes, then leaves
//! the group; every 100 ms it prints what it received meanwhile.
//!
//! Each line: `{"t": now_ns, "g": ms, "p": {"partition": [count, first_ns, last_ns], ...}}`,
//! where `g` is the longest gap between two consecutive records (of any partition) whose
//! second record arrived in this 100 ms window: how long the member received nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::Notify;

use crate::BoxError;
use crate::args::Args;

/// What was received since the last report.
#[derive(Default)]
struct Window {
    partitions: BTreeMap<i32, (u64, u64, u64)>,
    longest_gap_ns: u64,
    /// When the member last received a record (kept across windows).
    last_ns: Option<u64>,
}

/// Shared by the consuming loop, the reporter thread and the stdin watcher.
struct Shared {
    window: Mutex<Window>,
    stop: AtomicBool,
    stopped: Notify,
}

impl Shared {
    /// Counts the records of one delivery (all received at the same moment).
    fn received(&self, partitions: impl IntoIterator<Item = i32>) {
        let now = now_ns();
        let mut w = self
            .window
            .lock()
            .expect("no panics while holding the lock");
        if let Some(last) = w.last_ns {
            w.longest_gap_ns = w.longest_gap_ns.max(now.saturating_sub(last));
        }
        w.last_ns = Some(now);
        for p in partitions {
            let e = w.partitions.entry(p).or_insert((0, now, now));
            e.0 += 1;
            e.2 = now;
        }
    }

    /// Prints the window and starts a new one.
    fn report(&self) {
        let (parts, gap) = {
            let mut w = self
                .window
                .lock()
                .expect("no panics while holding the lock");
            let gap = std::mem::take(&mut w.longest_gap_ns);
            (std::mem::take(&mut w.partitions), gap)
        };
        let p: serde_json::Map<String, serde_json::Value> = parts
            .into_iter()
            .map(|(p, (n, first, last))| (p.to_string(), json!([n, first, last])))
            .collect();
        let line = json!({"t": now_ns(), "g": gap as f64 / 1e6, "p": p});
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The member's settings.
struct Member {
    bootstrap: String,
    topic: String,
    group: String,
    strategy: String,
    /// `fetch.max.wait.ms`, when not the client's default (the mock cluster holds a Fetch for
    /// all of it even when records come meanwhile).
    fetch_max_wait_ms: Option<String>,
    /// `session.timeout.ms` and `heartbeat.interval.ms` of a classic member, when not the
    /// client's defaults (on the mock cluster, the KIP-848 members' cadence).
    session: Option<(u64, u64)>,
}

/// The `member` subcommand.
pub fn main(args: &Args) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let m = Member {
        bootstrap: args.required("bootstrap")?.to_owned(),
        topic: args.required("topic")?.to_owned(),
        group: args.required("group")?.to_owned(),
        strategy: args.required("strategy")?.to_owned(),
        fetch_max_wait_ms: args.optional("fetch-max-wait-ms").map(str::to_owned),
        session: match args.optional("session-timeout-ms") {
            Some(_) => Some((
                args.number("session-timeout-ms")?,
                args.number("heartbeat-interval-ms")?,
            )),
            None => None,
        },
    };
    let shared = Arc::new(Shared {
        window: Mutex::new(Window::default()),
        stop: AtomicBool::new(false),
        stopped: Notify::new(),
    });
    let watcher = shared.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        watcher.stop.store(true, Ordering::SeqCst);
        watcher.stopped.notify_one();
    });
    let reporter = shared.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            reporter.report();
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match client.as_str() {
            "kcon" => kcon_member(&m, &shared).await,
            "rdkafka" => rdkafka_member(&m, &shared).await,
            "krafka" => krafka_member(&m, &shared).await,
            other => Err(format!("no group member for client {other:?}").into()),
        }
    })?;
    shared.report();
    Ok(())
}

/// The strategy that stands for the consumer group protocol (KIP-848): the coordinator assigns,
/// and runs the session and the heartbeats.
const CONSUMER_PROTOCOL: &str = "consumer";

async fn kcon_member(m: &Member, shared: &Shared) -> Result<(), BoxError> {
    let builder = kcon::Consumer::builder()
        .set("bootstrap.servers", m.bootstrap.as_str())
        .set("group.id", m.group.as_str())
        .set("auto.offset.reset", "earliest");
    let builder = match (m.strategy == CONSUMER_PROTOCOL, m.session) {
        (true, _) => builder.set("group.protocol", "consumer"),
        (false, session) => {
            let builder = builder.set("partition.assignment.strategy", m.strategy.as_str());
            match session {
                Some((session, heartbeat)) => builder
                    .set("session.timeout.ms", session.to_string())
                    .set("heartbeat.interval.ms", heartbeat.to_string()),
                None => builder,
            }
        }
    };
    let builder = match &m.fetch_max_wait_ms {
        Some(ms) => builder.set("fetch.max.wait.ms", ms.as_str()),
        None => builder,
    };
    let mut consumer = builder.build()?;
    consumer.subscribe([m.topic.as_str()])?;
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::select! {
            batch = consumer.recv_batch() => {
                shared.received(batch?.iter().map(|r| r.partition));
            }
            () = shared.stopped.notified() => break,
        }
    }
    consumer.close().await?;
    Ok(())
}

async fn rdkafka_member(m: &Member, shared: &Shared) -> Result<(), BoxError> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &m.bootstrap)
        .set("group.id", &m.group)
        .set("auto.offset.reset", "earliest");
    if m.strategy == CONSUMER_PROTOCOL {
        config.set("group.protocol", "consumer");
    } else {
        config.set("partition.assignment.strategy", &m.strategy);
        if let Some((session, heartbeat)) = m.session {
            config
                .set("session.timeout.ms", session.to_string())
                .set("heartbeat.interval.ms", heartbeat.to_string());
        }
    }
    if let Some(ms) = &m.fetch_max_wait_ms {
        config.set("fetch.wait.max.ms", ms);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[m.topic.as_str()])?;
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::select! {
            message = consumer.recv() => {
                shared.received([message?.partition()]);
            }
            () = shared.stopped.notified() => break,
        }
    }
    // Dropping the consumer closes it: it leaves the group.
    tokio::task::block_in_place(|| drop(consumer));
    Ok(())
}

async fn krafka_member(m: &Member, shared: &Shared) -> Result<(), BoxError> {
    use krafka::consumer::{AutoOffsetReset, PartitionAssignmentStrategy};

    let strategy = match m.strategy.as_str() {
        "range" => PartitionAssignmentStrategy::Range,
        "cooperative-sticky" => PartitionAssignmentStrategy::CooperativeSticky,
        other => return Err(format!("krafka has no strategy {other:?}").into()),
    };
    let kafka = krafka::Kafka::builder(m.bootstrap.as_str())
        .connect()
        .await?;
    let mut builder = kafka
        .consumer(m.group.as_str())
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .partition_assignment_strategy(strategy);
    if let Some((session, heartbeat)) = m.session {
        builder = builder
            .session_timeout(Duration::from_millis(session))
            .heartbeat_interval(Duration::from_millis(heartbeat));
    }
    let consumer = builder.build().await?;
    consumer.subscribe([m.topic.as_str()]).await?;
    while !shared.stop.load(Ordering::SeqCst) {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        if !records.is_empty() {
            shared.received(records.iter().map(|r| r.partition));
        }
    }
    consumer.close().await?;
    Ok(())
}
