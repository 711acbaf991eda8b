//! The `latency` subcommand: a producer and a consumer of one client in one process. The
//! producer sends `--rate` records a second, paced evenly, each value starting with the
//! wall-clock nanoseconds just before its send call; the consumer, reading every partition from
//! offset 0 of an empty topic, takes the time from that stamp to the record in its hands.
//! Records sent in the first `--warmup-seconds` are read but not counted.
//!
//! Clients: `kcon` (`Producer::send` and `Consumer::recv_batch`), `rdkafka` (rust-rdkafka's
//! `FutureProducer` and `StreamConsumer`); both at default settings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;

use crate::BoxError;
use crate::args::Args;

/// How long the consumer has, once built, before the producer starts (its first Fetch is then
/// on its way; the warm-up covers a slower start all the same).
const SETTLE: Duration = Duration::from_secs(1);
/// How long to wait for records still on their way after the last send.
const DRAIN: Duration = Duration::from_secs(30);

struct Job {
    bootstrap: String,
    topic: String,
    partitions: i32,
    rate: u64,
    seconds: u64,
    warmup: u64,
    size: usize,
}

impl Job {
    fn total(&self) -> u64 {
        self.rate * (self.seconds + self.warmup)
    }

    /// Records numbered below this were sent in the warm-up.
    fn first_counted(&self) -> u64 {
        self.rate * self.warmup
    }

    /// Record `i`'s value: its number and send time, then 'x' up to `size` bytes.
    fn value(&self, i: u64) -> Bytes {
        let mut v = BytesMut::with_capacity(self.size.max(16));
        v.put_u64(now_ns());
        v.put_u64(i);
        v.resize(self.size.max(16), b'x');
        v.freeze()
    }
}

/// What the consumer saw: per record number, whether it came, and the latencies counted.
struct Seen {
    came: Vec<bool>,
    received: u64,
    counted: Vec<u64>,
    first_counted: u64,
}

impl Seen {
    fn observe(&mut self, value: &[u8]) {
        let now = now_ns();
        let (Some(stamp), Some(number)) = (value.get(..8), value.get(8..16)) else {
            return;
        };
        let stamp = u64::from_be_bytes(stamp.try_into().unwrap_or_default());
        let number = u64::from_be_bytes(number.try_into().unwrap_or_default());
        let Some(came) = self.came.get_mut(number as usize) else {
            return;
        };
        if std::mem::replace(came, true) {
            return;
        }
        self.received += 1;
        if number >= self.first_counted {
            self.counted.push(now.saturating_sub(stamp));
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn main(args: &Args) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let job = Job {
        bootstrap: args.required("bootstrap")?.to_owned(),
        topic: args.required("topic")?.to_owned(),
        partitions: args.number("partitions")?,
        rate: args.number("rate")?,
        seconds: args.number("seconds")?,
        warmup: args.number("warmup-seconds")?,
        size: args.number("size")?,
    };
    let seen = Arc::new(Mutex::new(Seen {
        came: vec![false; job.total() as usize],
        received: 0,
        counted: Vec::with_capacity((job.rate * job.seconds) as usize),
        first_counted: job.first_counted(),
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sent = runtime.block_on(async {
        match client.as_str() {
            "kcon" => kcon(&job, seen.clone()).await,
            "rdkafka" => rdkafka(&job, seen.clone()).await,
            other => Err(format!("unknown client {other:?}: kcon or rdkafka").into()),
        }
    })?;
    drop(runtime);
    let mut seen = seen.lock().map_err(|_| "a consumer task panicked")?;
    let received = seen.received;
    let counted = &mut seen.counted;
    counted.sort_unstable();
    let pct = |q: f64| {
        let n = counted.len();
        if n == 0 {
            return serde_json::Value::Null;
        }
        let at = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        json!((counted[at] as f64 / 100.0).round() / 10.0)
    };
    println!(
        "{}",
        json!({
            "client": client,
            "sent": sent,
            "received": received,
            "counted": counted.len(),
            "lost": sent - received,
            "p50_us": pct(0.5),
            "p99_us": pct(0.99),
            "p999_us": pct(0.999),
            "max_us": pct(1.0),
            "cpu_s": crate::txn::cpu_seconds(),
        })
    );
    Ok(())
}

/// Hands out record numbers as they fall due: record `i` at `i / rate` seconds after the first
/// call, waking at least every millisecond.
struct Pacer {
    started: Option<Instant>,
    rate: f64,
    total: u64,
    next: u64,
}

impl Pacer {
    fn new(job: &Job) -> Pacer {
        Pacer {
            started: None,
            rate: job.rate as f64,
            total: job.total(),
            next: 0,
        }
    }

    /// The next record to send, once it is due; `None` after the last.
    async fn due(&mut self) -> Option<u64> {
        if self.next >= self.total {
            return None;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        while (started.elapsed().as_secs_f64() * self.rate) < self.next as f64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// Waits until the consumer has every record sent, or `DRAIN` has passed.
async fn drained(seen: &Mutex<Seen>, sent: u64) {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        if seen.lock().is_ok_and(|s| s.received >= sent) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn kcon(job: &Job, seen: Arc<Mutex<Seen>>) -> Result<u64, BoxError> {
    use kcon::{Consumer, TopicPartition};
    use kcon_produce::{Producer, ProducerRecord};
    let mut consumer = Consumer::builder()
        .set("bootstrap.servers", job.bootstrap.as_str())
        .set("auto.offset.reset", "earliest")
        .build()?;
    consumer.assign((0..job.partitions).map(|p| TopicPartition::new(job.topic.as_str(), p)))?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader_seen = seen.clone();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                batch = consumer.recv_batch() => {
                    let batch = batch?;
                    let mut seen = reader_seen.lock().map_err(|_| "poisoned")?;
                    for r in batch {
                        if let Some(v) = &r.value {
                            seen.observe(v);
                        }
                    }
                }
            }
        }
        consumer.close().await?;
        Ok::<(), BoxError>(())
    });
    tokio::time::sleep(SETTLE).await;
    let producer = Producer::builder()
        .bootstrap_servers(&job.bootstrap)
        .build()?;
    let mut pending = VecDeque::new();
    let mut pacer = Pacer::new(job);
    let topic = kcon_produce::Topic::new(&job.topic);
    while let Some(i) = pacer.due().await {
        let record = ProducerRecord::new(topic, job.value(i));
        pending.push_back(producer.send(record).await?);
        while let Some(front) = pending.pop_front() {
            match front.try_outcome() {
                Ok(outcome) => {
                    outcome?;
                }
                Err(waiting) => {
                    pending.push_front(waiting);
                    break;
                }
            }
        }
    }
    let sent = job.total();
    for d in pending {
        d.await?;
    }
    drained(&seen, sent).await;
    producer.close().await?;
    let _ = stop.send(());
    reader.await??;
    Ok(sent)
}

async fn rdkafka(job: &Job, seen: Arc<Mutex<Seen>>) -> Result<u64, BoxError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &job.bootstrap)
        .set("auto.offset.reset", "earliest")
        // assign() needs a group.id, though it joins no group.
        .set("group.id", format!("latency-{}", std::process::id()))
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..job.partitions {
        list.add_partition_offset(&job.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader_seen = seen.clone();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                m = consumer.recv() => {
                    let m = m?;
                    if let Some(v) = m.payload() {
                        reader_seen.lock().map_err(|_| "poisoned")?.observe(v);
                    }
                }
            }
        }
        Ok::<(), BoxError>(())
    });
    tokio::time::sleep(SETTLE).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &job.bootstrap)
        .create()?;
    let mut pending = VecDeque::new();
    let mut pacer = Pacer::new(job);
    while let Some(i) = pacer.due().await {
        let value = job.value(i);
        let record = FutureRecord::<(), [u8]>::to(&job.topic).payload(&value[..]);
        pending.push_back(
            producer
                .send_result(record)
                .map_err(|(e, _)| format!("send: {e}"))?,
        );
        while let Some(front) = pending.front_mut() {
            match futures::FutureExt::now_or_never(&mut *front) {
                Some(done) => {
                    done?.map_err(|(e, _)| format!("delivery: {e}"))?;
                    pending.pop_front();
                }
                None => break,
            }
        }
    }
    let sent = job.total();
    for d in pending {
        d.await?.map_err(|(e, _)| format!("delivery: {e}"))?;
    }
    drained(&seen, sent).await;
    let _ = stop.send(());
    reader.await??;
    Ok(sent)
}
