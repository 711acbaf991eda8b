//! `kcon produce`: records from stdin, one per line, batched per partition and sent with
//! acks=all.
//!
//! A thread reads and parses stdin and hands records over in chunks; the async side puts each
//! in its partition's batch and sends a batch once it holds [`BATCH_RECORDS`] records or
//! [`BATCH_BYTES`] bytes, and every batch left at the end of the input. One Produce request is
//! in flight at a time, so each partition's records are written in input order. Errors that
//! mean the metadata is stale (a moved leader) are retried after a refresh, a bounded number of
//! times; a retried request may write its batch twice (at-least-once, no idempotence).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use kcon_codec::compression::Compression;
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::messages::{ProduceRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{NewRecord, RecordBatchBuilder};
use kcon_core::error_codes::is_stale_metadata_error;
use kcon_pool::{BrokerTarget, TopicScope};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::bytes_json::read_bytes;
use crate::cluster::{Cluster, ClusterArgs};
use crate::failure::{Failure, error_name};
use crate::partitioner::Partitioner;

/// The most records in one batch.
const BATCH_RECORDS: usize = 1000;

/// The most bytes of keys, values and headers in one batch (1 MiB, the broker's default
/// `message.max.bytes` less room for the batch's own overhead is what matters; keys and values
/// larger than this go in a batch of their own).
const BATCH_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// How many records the reader hands over at once.
const CHUNK: usize = 1000;

/// How many times a batch is sent when the leader has moved.
const ATTEMPTS: u32 = 5;

/// How often progress is shown on a terminal.
const PROGRESS_EVERY: u64 = 100_000;

/// How long the broker may take to have every replica acknowledge a batch.
const ACK_TIMEOUT_MS: i32 = 30_000;

/// Produce records read from stdin to TOPIC.
///
/// Each input line is a record (the newline is not part of it). With -K, the line is split
/// at the first DELIM into key and value (a line without DELIM has a null key). With
/// --format json, each line is an object {"key":..,"value":..,"headers":[[k,v],...],
/// "partition":..,"timestamp":..}, every field optional; keys, values and header values are
/// strings, null, or {"base64":"..."} (what `kcon consume --format json` writes). A keyed
/// record goes to the partition the Java producer would choose (murmur2), others round-robin,
/// unless -p or the record's "partition" says. Sent with acks=all, in batches of up to 1000
/// records or 1 MiB per partition. A summary goes to stderr.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// The topic.
    #[arg(value_name = "TOPIC")]
    topic: String,

    /// Send every record to this partition.
    #[arg(short = 'p', long = "partition", value_name = "PARTITION")]
    partition: Option<i32>,

    /// Split each line into key and value at the first DELIM (lines format only).
    #[arg(short = 'K', long = "key-delimiter", value_name = "DELIM")]
    key_delimiter: Option<String>,

    /// Input format.
    #[arg(long = "format", value_enum, default_value_t = InputFormat::Lines)]
    format: InputFormat,

    /// Compression codec of the batches.
    #[arg(short = 'z', long = "compression", value_enum, default_value_t = Codec::None)]
    compression: Codec,

    /// A header added to every record: KEY=VALUE. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
}

/// How stdin is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    /// A line is a value (or KEY DELIM VALUE with -K).
    Lines,
    /// A line is a JSON object.
    Json,
}

/// `-z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// One record read from stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Input {
    /// The input line it came from (1-based), for error messages.
    line: u64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

/// Runs `kcon produce`.
pub(crate) async fn run(args: ProduceArgs) -> Result<(), Failure> {
    if args.key_delimiter.as_deref() == Some("") {
        return Err(Failure::usage("-K needs a non-empty delimiter"));
    }
    if args.key_delimiter.is_some() && args.format == InputFormat::Json {
        return Err(Failure::usage(
            "-K splits lines; with --format json give the key as a field",
        ));
    }
    let cluster = args.cluster.connect(Some(&[])).await?;
    let topic = args.topic.clone();
    let partitions = cluster.partitions(&BTreeSet::from([topic.clone()])).await?;
    let count = partitions[&topic].len() as i32;
    if let Some(p) = args.partition
        && !(0..count).contains(&p)
    {
        return Err(Failure::usage(format!(
            "-p {p}: topic {topic:?} has partitions 0 to {}",
            count - 1
        )));
    }

    let (tx, mut rx) = mpsc::channel::<Result<Vec<Input>, Failure>>(4);
    let format = args.format;
    let delimiter = args.key_delimiter.clone().map(String::into_bytes);
    // A thread of its own: reading stdin blocks, and a pipe may stay open for a long time.
    std::thread::spawn(move || read_stdin(format, delimiter.as_deref(), &tx));

    let started = Instant::now();
    let mut sender = Sender {
        cluster,
        topic: topic.clone(),
        batches_sent: 0,
    };
    let mut partitioner = Partitioner::new(count);
    let mut batches: BTreeMap<i32, Batch> = BTreeMap::new();
    let extra_headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone().into_bytes())))
        .collect();
    let progress = std::io::stderr().is_terminal();
    let mut produced = 0u64;
    while let Some(chunk) = rx.recv().await {
        for mut input in chunk? {
            input.headers.extend(extra_headers.iter().cloned());
            let partition = match input.partition.or(args.partition) {
                Some(p) if (0..count).contains(&p) => p,
                Some(p) => {
                    return Err(Failure::runtime(format!(
                        "input line {}: partition {p} does not exist (topic {topic:?} has {count})",
                        input.line
                    )));
                }
                None => partitioner.partition(input.key.as_deref()),
            };
            let batch = batches
                .entry(partition)
                .or_insert_with(|| Batch::new(args.compression.compression()));
            batch.push(&input);
            if batch.is_full() {
                // Invariant: the entry was just filled.
                if let Some(full) = batches.remove(&partition) {
                    sender.send(vec![(partition, full)]).await?;
                }
            }
            produced += 1;
            if progress && produced.is_multiple_of(PROGRESS_EVERY) {
                eprint!("\rkcon: {produced} records read");
            }
        }
    }
    let rest: Vec<(i32, Batch)> = std::mem::take(&mut batches).into_iter().collect();
    if !rest.is_empty() {
        sender.send(rest).await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if progress && produced >= PROGRESS_EVERY {
        eprintln!();
    }
    eprintln!(
        "kcon: produced {produced} records to {topic} in {} batches, {elapsed:.2} s{}",
        sender.batches_sent,
        if elapsed > 0.0 && produced > 0 {
            format!(", {:.0} records/s", produced as f64 / elapsed)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// One partition's batch being filled.
struct Batch {
    builder: RecordBatchBuilder,
    bytes: usize,
    /// The first input line in it, for error messages.
    first_line: u64,
}

impl Batch {
    fn new(compression: Compression) -> Batch {
        Batch {
            builder: RecordBatchBuilder::new(0).compression(compression),
            bytes: 0,
            first_line: 0,
        }
    }

    fn push(&mut self, input: &Input) {
        if self.builder.is_empty() {
            self.first_line = input.line;
        }
        let headers: Vec<(&[u8], Option<&[u8]>)> = input
            .headers
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        self.builder.push(NewRecord {
            timestamp: input.timestamp.unwrap_or_else(now_ms),
            key: input.key.as_deref(),
            value: input.value.as_deref(),
            headers: &headers,
            ..NewRecord::default()
        });
        // Each record's own framing (lengths, deltas, attributes) is a few bytes more.
        self.bytes += 16
            + input.key.as_ref().map_or(0, Vec::len)
            + input.value.as_ref().map_or(0, Vec::len)
            + input
                .headers
                .iter()
                .map(|(k, v)| 4 + k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
    }

    fn is_full(&self) -> bool {
        self.builder.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES
    }
}

/// Sends batches of one topic to their leaders.
struct Sender {
    cluster: Cluster,
    topic: String,
    batches_sent: u64,
}

impl Sender {
    /// Sends `batches` (partition, batch): one request per leader, retried after a metadata
    /// refresh while a partition's error says its leader moved.
    async fn send(&mut self, batches: Vec<(i32, Batch)>) -> Result<(), Failure> {
        let mut todo: BTreeMap<i32, (Bytes, u64)> = BTreeMap::new();
        for (partition, batch) in batches {
            let bytes = batch.builder.build().map_err(|e| {
                Failure::runtime(format!(
                    "cannot encode the batch starting at input line {}: {e}",
                    batch.first_line
                ))
            })?;
            todo.insert(partition, (bytes, batch.first_line));
        }
        let mut attempt = 0;
        while !todo.is_empty() {
            attempt += 1;
            let metadata = if attempt == 1 {
                self.cluster.pool.metadata()
            } else {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                self.cluster
                    .metadata(TopicScope::topics([self.topic.clone()]))
                    .await?
            };
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            for &p in todo.keys() {
                match metadata.partition(&self.topic, p).and_then(|m| m.leader) {
                    Some(leader) => by_leader.entry(leader).or_default().push(p),
                    None if attempt < ATTEMPTS => by_leader.entry(-1).or_default().push(p),
                    None => {
                        return Err(Failure::runtime(format!(
                            "{}-{p} has no leader",
                            self.topic
                        )));
                    }
                }
            }
            let mut retry = BTreeMap::new();
            for (leader, partitions) in by_leader {
                if leader < 0 {
                    for p in partitions {
                        retry.extend(todo.remove_entry(&p));
                    }
                    continue;
                }
                let answer = self.send_to(leader, &partitions, &todo).await;
                let codes = match answer {
                    Ok(codes) => codes,
                    Err(e) if e.is_retriable() && attempt < ATTEMPTS => {
                        tracing::warn!(error = %e, "producing failed; retrying");
                        partitions.iter().map(|p| (*p, -1)).collect()
                    }
                    Err(e) => return Err(Failure::from_pool(e)),
                };
                for p in partitions {
                    let code = codes.get(&p).copied().unwrap_or(3);
                    let Some((bytes, line)) = todo.remove(&p) else {
                        continue;
                    };
                    match code {
                        0 => self.batches_sent += 1,
                        -1 => {
                            retry.insert(p, (bytes, line));
                        }
                        c if is_stale_metadata_error(c) && attempt < ATTEMPTS => {
                            retry.insert(p, (bytes, line));
                        }
                        c => {
                            return Err(Failure::runtime(format!(
                                "producing to {}-{p} (the batch starting at input line {line}) \
                                 failed: the broker answered {}",
                                self.topic,
                                error_name(c)
                            )));
                        }
                    }
                }
            }
            todo = retry;
        }
        Ok(())
    }

    /// One Produce request to `leader`; each partition's error code.
    async fn send_to(
        &self,
        leader: i32,
        partitions: &[i32],
        batches: &BTreeMap<i32, (Bytes, u64)>,
    ) -> Result<BTreeMap<i32, i16>, kcon_pool::Error> {
        let data = partitions
            .iter()
            .filter_map(|p| {
                let (bytes, _) = batches.get(p)?;
                Some(
                    PartitionProduceData::default()
                        .with_index(*p)
                        .with_records(Some(bytes.clone())),
                )
            })
            .collect();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(ACK_TIMEOUT_MS)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                    .with_partition_data(data),
            ]);
        let answer = self
            .cluster
            .pool
            .send_with_timeout(
                BrokerTarget::Broker(leader),
                &request,
                Duration::from_millis(ACK_TIMEOUT_MS as u64 + 5_000),
            )
            .await?;
        Ok(answer
            .responses
            .iter()
            .filter(|t| t.name.as_str() == self.topic)
            .flat_map(|t| t.partition_responses.iter())
            .map(|p| (p.index, p.error_code))
            .collect())
    }
}

/// Reads stdin to its end, parsing each line, and hands the records over in chunks; stops at
/// the first bad line (sent as an error) or when the receiver is gone.
fn read_stdin(
    format: InputFormat,
    delimiter: Option<&[u8]>,
    tx: &mpsc::Sender<Result<Vec<Input>, Failure>>,
) {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut line = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut number = 0u64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(Failure::runtime(format!("cannot read stdin: {e}"))));
                return;
            }
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let parsed = match format {
            InputFormat::Lines => Ok(split_line(&line, delimiter)),
            InputFormat::Json if line.iter().all(u8::is_ascii_whitespace) => continue,
            InputFormat::Json => parse_json(&line),
        };
        match parsed {
            Ok(mut input) => {
                input.line = number;
                chunk.push(input);
            }
            Err(e) => {
                let _ =
                    tx.blocking_send(Err(Failure::runtime(format!("input line {number}: {e}"))));
                return;
            }
        }
        if chunk.len() == CHUNK && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
            return;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// A line as a record: the value, or key and value split at the first `delimiter`.
fn split_line(line: &[u8], delimiter: Option<&[u8]>) -> Input {
    let split = delimiter.and_then(|d| {
        let at = line.windows(d.len()).position(|w| w == d)?;
        Some((line[..at].to_vec(), line[at + d.len()..].to_vec()))
    });
    match split {
        Some((key, value)) => Input {
            key: Some(key),
            value: Some(value),
            ..Input::default()
        },
        None => Input {
            value: Some(line.to_vec()),
            ..Input::default()
        },
    }
}

/// A JSON line as a record.
fn parse_json(line: &[u8]) -> Result<Input, String> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(o) = value else {
        return Err("not a JSON object".to_owned());
    };
    let mut input = Input::default();
    if let Some(k) = o.get("key") {
        input.key = read_bytes(k, "key")?;
    }
    if let Some(v) = o.get("value") {
        input.value = read_bytes(v, "value")?;
    }
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(headers)) => {
            for (i, h) in headers.iter().enumerate() {
                let what = format!("headers[{i}]");
                let (k, v) = match h.as_array().map(Vec::as_slice) {
                    Some([k, v]) => (k, v),
                    _ => return Err(format!("{what}: expected [key, value]")),
                };
                let key = read_bytes(k, &what)?.ok_or_else(|| format!("{what}: a null key"))?;
                input.headers.push((key, read_bytes(v, &what)?));
            }
        }
        Some(_) => return Err("headers: expected [[key, value], ...]".to_owned()),
    }
    match o.get("partition") {
        None | Some(Value::Null) => {}
        Some(p) => {
            let p = p
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p >= 0)
                .ok_or("partition: expected a partition number")?;
            input.partition = Some(p);
        }
    }
    match o.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(t) => {
            input.timestamp = Some(t.as_i64().ok_or("timestamp: expected milliseconds")?);
        }
    }
    Ok(input)
}

/// `-H KEY=VALUE`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_delimiter() {
        let i = split_line(b"k::v::w", Some(b"::"));
        assert_eq!(
            (i.key.as_deref(), i.value.as_deref()),
            (Some(&b"k"[..]), Some(&b"v::w"[..]))
        );
        let i = split_line(b"no delimiter", Some(b":"));
        assert_eq!(
            (i.key, i.value.as_deref()),
            (None, Some(&b"no delimiter"[..]))
        );
        let i = split_line(b"", None);
        assert_eq!(i.value.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn json_lines_read_what_consume_writes() {
        let line = br#"{"topic":"t","partition":2,"offset":9,"timestamp":1700000000000,"key":null,"value":{"base64":"/w=="},"headers":[["h","x"],["n",null]]}"#;
        let i = parse_json(line).unwrap();
        assert_eq!(i.key, None);
        assert_eq!(i.value.as_deref(), Some(&b"\xff"[..]));
        assert_eq!(i.partition, Some(2));
        assert_eq!(i.timestamp, Some(1_700_000_000_000));
        assert_eq!(
            i.headers,
            vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)]
        );
        let i = parse_json(br#"{"value":"v"}"#).unwrap();
        assert_eq!(
            (i.key, i.value.as_deref(), i.partition),
            (None, Some(&b"v"[..]), None)
        );
    }

    #[test]
    fn bad_json_lines_say_what_is_wrong() {
        for (line, wanted) in [
            (&b"[1]"[..], "not a JSON object"),
            (b"{", "not a JSON object"),
            (br#"{"value":1}"#, "value:"),
            (br#"{"partition":-1}"#, "partition"),
            (br#"{"headers":[["k"]]}"#, "headers[0]"),
            (br#"{"headers":[[null,"v"]]}"#, "null key"),
        ] {
            let e = parse_json(line).unwrap_err();
            assert!(e.contains(wanted), "{e} should say {wanted}");
        }
    }

    #[test]
    fn a_batch_is_full_at_its_record_or_byte_limit() {
        let mut b = Batch::new(Compression::None);
        let small = Input {
            value: Some(b"v".to_vec()),
            ..Input::default()
        };
        for _ in 0..BATCH_RECORDS - 1 {
            b.push(&small);
        }
        assert!(!b.is_full());
        b.push(&small);
        assert!(b.is_full());
        let mut b = Batch::new(Compression::None);
        b.push(&Input {
            value: Some(vec![0; BATCH_BYTES]),
            ..Input::default()
        });
        assert!(b.is_full());
    }
}
