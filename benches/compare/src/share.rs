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

/// Offsets below this are counted in a bitmap per partition (the benchmark's topic is new, its
/// offsets start at 0); any others in a set.
const BITMAP_OFFSETS: i64 = 1 << 26;

/// Distinct (partition, offset) pairs seen, and when the first and last came (the time a
/// poll's records reached the application, taken once per poll as the Java and Go peers do).
///
/// A bit per offset rather than a hash set: the set's inserts miss the cache (about 100 ns a
/// record at 200,000 records, a third of the fastest client's CPU), and that cost is the
/// harness's, not the client's.
struct Seen {
    want: usize,
    bits: Vec<Vec<u64>>,
    others: HashSet<(i32, i64)>,
    distinct: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Seen {
    fn new(want: usize) -> Seen {
        Seen {
            want,
            bits: Vec::new(),
            others: HashSet::new(),
            distinct: 0,
            first: None,
            last: None,
        }
    }

    /// One poll's records, as (partition, offset).
    fn observe(&mut self, records: impl IntoIterator<Item = (i32, i64)>) {
        let now = Instant::now();
        let before = self.distinct;
        for (partition, offset) in records {
            self.first.get_or_insert(now);
            if self.insert(partition, offset) {
                self.distinct += 1;
            }
        }
        if self.distinct > before {
            self.last = Some(now);
        }
    }

    fn insert(&mut self, partition: i32, offset: i64) -> bool {
        let (Ok(p), true) = (
            usize::try_from(partition),
            (0..BITMAP_OFFSETS).contains(&offset),
        ) else {
            return self.others.insert((partition, offset));
        };
        if self.bits.len() <= p {
            self.bits.resize_with(p + 1, Vec::new);
        }
        let words = &mut self.bits[p];
        let word = (offset / 64) as usize;
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        let bit = 1u64 << (offset % 64);
        let new = words[word] & bit == 0;
        words[word] |= bit;
        new
    }

    fn done(&self) -> bool {
        self.distinct >= self.want
    }
}

pub fn main(args: &Args) -> Result<(), BoxError> {
    let client = args.required("client")?.to_owned();
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let group = args.required("group")?.to_owned();
    let want: usize = args.number("records")?;
    let mut seen = Seen::new(want);
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
        seen.distinct,
        seen.distinct as f64 / seconds.max(1e-9),
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
        let batch = consumer.recv_batch().await?;
        seen.observe(batch.iter().map(|r| (r.partition, r.offset)));
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
        seen.observe(records.iter().map(|r| (r.record.partition, r.offset())));
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
        let records = consumer.poll(Duration::from_secs(1)).await?;
        seen.observe(records.iter().map(|r| (r.partition, r.offset)));
    }
    consumer.close().await?;
    Ok(())
}
