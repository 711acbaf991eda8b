//! `share --client kcon|kacrab|krafka --bootstrap B --topic T --group G --records N`: a share
//! group member (KIP-932) reads N distinct records of T, acknowledging implicitly (each poll's
//! records accepted with the next), then closes. Prints one JSON line: the records, the seconds
//! from the first record to the last, the rate, and the process's CPU seconds (startup and
//! close included). The group must start at the log's beginning (on librdkafka's mock cluster:
//! `sharegroup_set auto_offset_reset 1`), and be new for every run.
//!
//! Each client with its default settings: kcon's `ShareConsumer`, kacrab's `ShareConsumer`
//! (feature `share-consumer`), krafka's `share_consumer`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::BoxError;
use crate::args::Args;

/// Distinct (partition, offset) pairs seen, and when the first and last came.
struct Seen {
    want: usize,
    offsets: HashSet<(i32, i64)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Seen {
    fn observe(&mut self, partition: i32, offset: i64) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        if self.offsets.insert((partition, offset)) {
            self.last = Some(now);
        }
    }

    fn done(&self) -> bool {
        self.offsets.len() >= self.want
    }
}

pub fn main(args: &Args) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let group = args.required("group")?.to_owned();
    let want: usize = args.number("records")?;
    let mut seen = Seen {
        want,
        offsets: HashSet::with_capacity(want),
        first: None,
        last: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match client.as_str() {
            "kcon" => kcon(&bootstrap, &topic, &group, &mut seen).await,
            "kacrab" => kacrab(&bootstrap, &topic, &group, &mut seen).await,
            "krafka" => krafka(&bootstrap, &topic, &group, &mut seen).await,
            other => Err(format!("unknown client {other:?}: kcon, kacrab or krafka").into()),
        }
    })?;
    drop(runtime);
    let seconds = match (seen.first, seen.last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    println!(
        "{{\"client\":\"{client}\",\"records\":{},\"seconds\":{seconds:.3},\
         \"records_per_s\":{:.0},\"cpu_s\":{:.3}}}",
        seen.offsets.len(),
        seen.offsets.len() as f64 / seconds.max(1e-9),
        crate::txn::cpu_seconds()
    );
    Ok(())
}

async fn kcon(bootstrap: &str, topic: &str, group: &str, seen: &mut Seen) -> Result<(), BoxError> {
    let mut consumer = kcon::share::ShareConsumer::builder()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .build()?;
    consumer.subscribe([topic])?;
    while !seen.done() {
        for r in consumer.recv_batch().await? {
            seen.observe(r.partition, r.offset);
        }
    }
    consumer.close().await?;
    Ok(())
}

async fn kacrab(
    bootstrap: &str,
    topic: &str,
    group: &str,
    seen: &mut Seen,
) -> Result<(), BoxError> {
    let mut consumer = kacrab::consumer::ShareConsumer::from_map([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
    ])
    .await?;
    consumer.subscribe([topic])?;
    while !seen.done() {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        for r in records.iter() {
            seen.observe(r.record.partition, r.offset());
        }
    }
    consumer.close().await;
    Ok(())
}

async fn krafka(
    bootstrap: &str,
    topic: &str,
    group: &str,
    seen: &mut Seen,
) -> Result<(), BoxError> {
    let kafka = krafka::Kafka::builder(bootstrap).connect().await?;
    let consumer = kafka.share_consumer(group).build().await?;
    consumer.subscribe([topic]).await?;
    while !seen.done() {
        for r in consumer.poll(Duration::from_secs(1)).await? {
            seen.observe(r.partition, r.offset);
        }
    }
    consumer.close().await?;
    Ok(())
}
