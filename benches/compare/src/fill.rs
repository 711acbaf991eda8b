//! Filling topics: record batches built with kcon-codec, sent as Produce requests through a
//! kcon-pool connection pool.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kcon_codec::compression::Compression;
use kcon_codec::kafka_protocol::messages::create_topics_request::CreatableTopic;
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::RecordBatchBuilder;
use kcon_pool::{BrokerTarget, Pool, PoolConfig, TopicScope};
use serde_json::json;

use crate::BoxError;
use crate::args::Args;

/// The `fill` subcommand.
pub fn main(args: &Args) -> Result<(), BoxError> {
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let partitions: i32 = args.number("partitions")?;
    let records: i64 = args.number("records")?;
    let size: usize = args.number("size")?;
    let batch: i64 = args.number("batch")?;
    let codec = codec(args.required("codec")?)?;
    let keys: Option<u64> = match args.optional("keys") {
        Some(_) => Some(args.number("keys")?).filter(|&k| k > 0),
        None => None,
    };
    runtime()?.block_on(async move {
        let pool = pool(&bootstrap)?;
        create_topic(&pool, &topic, partitions).await?;
        // With keys, each partition's record numbers, in order: record i has key i mod K and
        // goes to partition (i mod K) mod P, so that a key lives in one partition.
        let numbered: Option<Vec<Vec<u64>>> = keys.map(|k| {
            let mut plan = vec![Vec::new(); partitions as usize];
            for i in 0..records as u64 {
                plan[((i % k) % partitions as u64) as usize].push(i);
            }
            plan
        });
        let per_partition: Vec<i64> = match &numbered {
            Some(plan) => plan.iter().map(|n| n.len() as i64).collect(),
            None => (0..i64::from(partitions))
                .map(|p| {
                    records / i64::from(partitions) + i64::from(p < records % i64::from(partitions))
                })
                .collect(),
        };
        // Partitions are filled side by side, each one batch after the other.
        let mut tasks = Vec::new();
        for (p, &count) in per_partition.iter().enumerate() {
            let (pool, topic) = (pool.clone(), topic.clone());
            let numbers = numbered.as_ref().map(|plan| plan[p].clone());
            tasks.push(tokio::spawn(async move {
                let mut values = Values::new(p as u64);
                let mut produced = 0;
                let mut compressed = 0;
                while produced < count {
                    let n = batch.min(count - produced);
                    let records = match (&numbers, keys) {
                        (Some(numbers), Some(k)) => {
                            let at = produced as usize;
                            values.keyed_batch(&numbers[at..at + n as usize], k, size, codec)?
                        }
                        _ => values.batch(n as usize, size, codec)?,
                    };
                    compressed += records.len();
                    let base = produce(&pool, &topic, p as i32, records).await?;
                    if base != produced {
                        return Err(format!(
                            "{topic}-{p}: a batch landed at {base}, expected {produced}"
                        )
                        .into());
                    }
                    produced += n;
                }
                Ok::<usize, BoxError>(compressed)
            }));
        }
        let mut wire_bytes = 0;
        for t in tasks {
            wire_bytes += t.await??;
        }
        println!(
            "{}",
            json!({"topic": topic, "ends": per_partition, "batch_bytes": wire_bytes})
        );
        Ok(())
    })
}

/// The `produce` subcommand: `--rate` records per second to every partition, in batches ten
/// times a second, until stdin closes.
pub fn produce_main(args: &Args) -> Result<(), BoxError> {
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let partitions: i32 = args.number("partitions")?;
    let rate: usize = args.number("rate")?;
    let size: usize = args.number("size")?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        stopper.store(true, Ordering::Relaxed);
    });
    runtime()?.block_on(async move {
        let pool = pool(&bootstrap)?;
        let mut values = Values::new(7);
        let per_tick = (rate / 10).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let sends = (0..partitions).map(|p| {
                let records = values.batch(per_tick, size, Compression::None);
                let (pool, topic) = (&pool, &topic);
                async move { produce(pool, topic, p, records?).await }
            });
            for r in futures::future::join_all(sends).await {
                r?;
            }
        }
        Ok(())
    })
}

/// A small runtime for the filler and the producer.
fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn pool(bootstrap: &str) -> Result<Pool, BoxError> {
    let mut config = PoolConfig::default();
    config.set("bootstrap.servers", bootstrap)?;
    config.set("client.id", "kcon-compare-fill")?;
    Ok(Pool::new(config)?)
}

fn codec(name: &str) -> Result<Compression, BoxError> {
    Ok(match name {
        "none" => Compression::None,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        "snappy" => Compression::Snappy,
        "gzip" => Compression::Gzip,
        other => return Err(format!("unknown codec {other:?}").into()),
    })
}

/// Creates `topic` with `partitions` partitions, replicated as the broker's default says.
pub async fn create_topic(pool: &Pool, topic: &str, partitions: i32) -> Result<(), BoxError> {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_num_partitions(partitions)
                // The broker's `default.replication.factor` (KIP-464).
                .with_replication_factor(-1),
        ]);
    let answer = pool.send(BrokerTarget::Any, &request).await?;
    for t in &answer.topics {
        if t.error_code != 0 {
            return Err(format!(
                "creating {topic}: error {} {:?}",
                t.error_code, t.error_message
            )
            .into());
        }
    }
    Ok(())
}

/// Sends one batch to the partition's leader with acks=all; returns its base offset.
async fn produce(
    pool: &Pool,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> Result<i64, BoxError> {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    // A topic just created may have no leader ready yet: UNKNOWN_TOPIC_OR_PARTITION (3),
    // LEADER_NOT_AVAILABLE (5) and NOT_LEADER_OR_FOLLOWER (6) are asked again, with the
    // metadata refreshed, for up to 10 s.
    for _ in 0..100 {
        let leader = leader(pool, topic, partition).await?;
        let answer = pool.send(BrokerTarget::Broker(leader), &request).await?;
        let p = answer
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or("a produce answer without the partition")?;
        match p.error_code {
            0 => return Ok(p.base_offset),
            3 | 5 | 6 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                pool.refresh_metadata(TopicScope::topics([topic.to_owned()]))
                    .await?;
            }
            code => return Err(format!("produce to {topic}-{partition}: error {code}").into()),
        }
    }
    Err(format!("produce to {topic}-{partition}: no leader took the batch in 10 s").into())
}

/// The partition's leader, from the cached metadata or, until it has one, fresh metadata.
async fn leader(pool: &Pool, topic: &str, partition: i32) -> Result<i32, BoxError> {
    if let Some(id) = pool
        .metadata()
        .partition(topic, partition)
        .and_then(|p| p.leader)
    {
        return Ok(id);
    }
    for _ in 0..100 {
        let m = pool
            .refresh_metadata(TopicScope::topics([topic.to_owned()]))
            .await?;
        if let Some(id) = m.partition(topic, partition).and_then(|p| p.leader) {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{topic}-{partition} has no leader").into())
}

/// Record values that look like access-log lines: words and numbers from a small vocabulary
/// with random parts, so the codecs compress them about as much as real text (roughly 2-3×
/// with lz4), neither incompressible noise nor a run of one byte.
struct Values {
    state: u64,
    line: Vec<u8>,
}

impl Values {
    fn new(seed: u64) -> Values {
        Values {
            state: 0x2545_f491_4f6c_dd1d
                ^ (seed.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            line: Vec::new(),
        }
    }

    /// splitmix64: deterministic, so every fill produces the same bytes.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One `size`-byte value.
    fn value(&mut self, size: usize) -> &[u8] {
        const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
        const PATHS: [&str; 6] = [
            "/api/v2/orders",
            "/api/v2/customers",
            "/static/app.js",
            "/api/v2/cart/items",
            "/health",
            "/api/v2/search",
        ];
        const STATUS: [u16; 5] = [200, 200, 200, 304, 404];
        self.line.clear();
        while self.line.len() < size {
            let r = self.next();
            let field = format!(
                "ts={} host=web-{:02} {} {}/{} status={} ms={} ",
                1_700_000_000_000u64 + (r >> 40),
                r % 16,
                METHODS[(r >> 8) as usize % METHODS.len()],
                PATHS[(r >> 12) as usize % PATHS.len()],
                (r >> 20) % 100_000,
                STATUS[(r >> 16) as usize % STATUS.len()],
                (r >> 32) % 500,
            );
            self.line.extend_from_slice(field.as_bytes());
        }
        self.line.truncate(size);
        &self.line
    }

    /// A batch of the records numbered `numbers`, each keyed with the eight digits of its
    /// number mod `keys`, with `size`-byte values.
    fn keyed_batch(
        &mut self,
        numbers: &[u64],
        keys: u64,
        size: usize,
        codec: Compression,
    ) -> Result<Bytes, BoxError> {
        let mut b = RecordBatchBuilder::new(0).compression(codec);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (i, n) in numbers.iter().enumerate() {
            let key = format!("{:08}", n % keys);
            b.record(now + i as i64, Some(key.as_bytes()), Some(self.value(size)));
        }
        Ok(b.build()?)
    }

    /// A batch of `n` records with `size`-byte values and no keys.
    fn batch(&mut self, n: usize, size: usize, codec: Compression) -> Result<Bytes, BoxError> {
        let mut b = RecordBatchBuilder::new(0).compression(codec);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for i in 0..n {
            let ts = now + i as i64;
            b.record(ts, None, Some(self.value(size)));
        }
        Ok(b.build()?)
    }
}

/// The `ends` subcommand: prints the end offset of each of the topic's `--partitions`
/// partitions as one JSON line (`{"ends": [..]}`): what a run wrote, for the driver's check.
pub fn ends_main(args: &Args) -> Result<(), BoxError> {
    let bootstrap = args.required("bootstrap")?.to_owned();
    let topic = args.required("topic")?.to_owned();
    let partitions: i32 = args.number("partitions")?;
    runtime()?.block_on(async move {
        let consumer = kcon::Consumer::builder()
            .set("bootstrap.servers", bootstrap.as_str())
            .build()?;
        let found = consumer
            .end_offsets((0..partitions).map(|p| kcon::TopicPartition::new(topic.as_str(), p)))
            .await?;
        let ends: Vec<i64> = found.values().copied().collect();
        println!("{}", json!({ "ends": ends }));
        consumer.close().await?;
        Ok(())
    })
}
