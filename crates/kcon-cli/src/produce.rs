//! `kcon produce`: records from stdin, one per line, sent through kcon-produce's `Producer`
//! with acks=all.
//!
//! A thread reads and parses stdin and hands records over in chunks; the async side sends each
//! through the producer, which partitions them (murmur2 for keys, in turn for null keys),
//! batches up to [`BATCH_RECORDS`] records or [`BATCH_BYTES`] bytes per partition, keeps each
//! partition's records in input order and retries what can be retried. The deliveries are
//! checked in input order as chunks are sent, and the first failure is reported with its input
//! line. Without `-X enable.idempotence=true` a retried batch may be written twice
//! (at-least-once).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kcon::property::registry;
use kcon_produce::{Deliveries, ProduceError, Producer, ProducerConfig, ProducerRecord, Topic};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::bytes_json::read_bytes;
use crate::cluster::ClusterArgs;
use crate::failure::Failure;

/// The most records in one batch.
const BATCH_RECORDS: usize = 1000;

/// The most bytes of records in one batch (1 MiB, the broker's default `message.max.bytes`,
/// less room for the batch's own overhead; a record larger than this goes in a batch of its
/// own).
const BATCH_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// The most records the reader hands over at once.
const CHUNK: usize = 1000;

/// How much of stdin the reader buffers.
const STDIN_BUFFER: usize = 64 * 1024;

/// The size of the buffers the reader copies lines' keys and values into, each record's a
/// slice of one: one allocation per 64 KiB of input rather than one per record, all freed
/// by whichever thread drops its last slice. A longer line gets a buffer of its length.
const ARENA: usize = 64 * 1024;

/// How often progress is shown on a terminal.
const PROGRESS_EVERY: u64 = 100_000;

/// Produce records read from stdin to TOPIC.
///
/// Each input line is a record (the newline is not part of it). With -K, the line is split
/// at the first DELIM into key and value (a line without DELIM has a null key). With
/// --format json, each line is an object {"key":..,"value":..,"headers":[[k,v],...],
/// "partition":..,"timestamp":..}, every field optional; keys, values and header values are
/// strings, null, or {"base64":"..."} (what `kcon consume --format json` writes). A keyed
/// record goes to the partition the Java producer would choose (murmur2), others round-robin,
/// unless -p or the record's "partition" says. Sent with acks=all, in batches of up to 1000
/// records or 1 MiB per partition; -X also takes the producer's properties (linger.ms,
/// enable.idempotence, delivery.timeout.ms, ...). A missing TOPIC is created where the
/// brokers create topics on demand (auto.create.topics.enable), as for the Java producer. A
/// summary goes to stderr.
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
    /// Its `compression.type`.
    fn property(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// One record read from stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Input {
    /// The input line it came from (1-based), for error messages.
    line: u64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    partition: Option<i32>,
    timestamp: Option<i64>,
}

/// How long each transaction call of `kcon produce -X transactional.id=...` may take.
const TRANSACTION_CALL: std::time::Duration = std::time::Duration::from_secs(60);

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
    // A bad producer property is a usage error, told before anything is dialled.
    let mut check = ProducerConfig::default();
    for (name, value) in producer_properties(&args) {
        check
            .set(name, value)
            .map_err(|e| Failure::usage(format!("bad configuration: {e}")))?;
    }
    let producer_names: Vec<&str> = kcon_produce::PROPERTIES.iter().map(|p| p.name).collect();
    let cluster = args.cluster.connect(Some(&producer_names)).await?;
    // Made once: every record carries it with no reference count and no copy.
    let topic = Topic::new(&args.topic);
    let count = cluster.partitions_to_produce(&topic).await?.len() as i32;
    if let Some(p) = args.partition
        && !(0..count).contains(&p)
    {
        return Err(Failure::usage(format!(
            "-p {p}: topic {topic:?} has partitions 0 to {}",
            count - 1
        )));
    }
    let producer = producer(&args, cluster.pool.clone())?;
    // With a transactional.id, the whole input is one transaction: committed once every
    // record is acknowledged, aborted if anything failed (the error says how many records).
    let transactional = producer.config().transactional_id.is_some();
    if transactional {
        producer
            .init_transactions(TRANSACTION_CALL)
            .await
            .map_err(|e| Failure::of(None, &e))?;
        producer
            .begin_transaction(TRANSACTION_CALL)
            .await
            .map_err(|e| Failure::of(None, &e))?;
    }

    let (tx, mut rx) = mpsc::channel::<Result<Vec<Input>, Failure>>(4);
    let format = args.format;
    let delimiter = args.key_delimiter.clone().map(String::into_bytes);
    // A thread of its own: reading stdin blocks, and a pipe may stay open for a long time.
    std::thread::spawn(move || read_stdin(format, delimiter.as_deref(), &tx));

    // Deliveries are checked in input order, without waiting, after each chunk read (so that
    // sending never waits for an acknowledgement), and awaited at the end; the first failure
    // ends the run.
    let mut unchecked = Unchecked::default();
    let mut failed = None;
    let buffer_memory = producer.config().buffer_memory;

    let started = Instant::now();
    let extra_headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone().into_bytes())))
        .collect();
    let progress = std::io::stderr().is_terminal();
    let mut produced = 0u64;
    let sent = async {
        while let Some(chunk) = rx.recv().await {
            if let Err(failure) = unchecked.check_done() {
                failed = Some(failure);
                break;
            }
            // The chunk's records go in groups that buffer.memory holds at once, each sent
            // in one call.
            let mut group = Group::default();
            for mut input in chunk? {
                input.headers.extend(extra_headers.iter().cloned());
                let partition = match input.partition.or(args.partition) {
                    Some(p) if (0..count).contains(&p) => Some(p),
                    Some(p) => {
                        // The records before it are sent; the run stops at it.
                        group.send(&producer, &mut unchecked).await?;
                        return Err(Failure::runtime(format!(
                            "input line {}: partition {p} does not exist (topic {topic:?} has \
                             {count})",
                            input.line
                        )));
                    }
                    None => None,
                };
                let line = input.line;
                let record = input.into_record(topic, partition);
                let size = producer.room(&record);
                if group.size.saturating_add(size) > buffer_memory {
                    group.send(&producer, &mut unchecked).await?;
                }
                group.add(line, record, size);
                produced += 1;
                if progress && produced.is_multiple_of(PROGRESS_EVERY) {
                    eprint!("\rkcon: {produced} records read");
                }
            }
            group.send(&producer, &mut unchecked).await?;
        }
        Ok(())
    }
    .await;
    if !transactional {
        // Whatever was sent is finished (acknowledged or failed) before the verdict. Each
        // record's failure is read from its own delivery below: the close's count of them adds
        // nothing.
        let _ = producer.clone().close().await;
    }
    if failed.is_none() {
        failed = unchecked.all_done().await.err();
    }
    let mut sent = sent;
    if transactional {
        if sent.is_ok() && failed.is_none() {
            if let Err(e) = producer.commit_transaction(TRANSACTION_CALL).await {
                failed = Some(Failure::runtime(format!("committing the transaction: {e}")));
            }
        } else {
            // Something failed with the transaction open: it is aborted, and the failure says
            // what became of the records sent in it.
            let aborted = match producer.abort_transaction(TRANSACTION_CALL).await {
                Ok(()) => format!("the open transaction's {produced} records were aborted"),
                Err(e) => format!(
                    "aborting the open transaction's {produced} records failed ({e}); none of \
                     them is committed"
                ),
            };
            match (&mut sent, &mut failed) {
                (Err(f), _) | (Ok(()), Some(f)) => *f = followed_by(f, &aborted),
                (Ok(()), None) => {}
            }
        }
        if let Err(e) = producer.clone().close().await
            && failed.is_none()
        {
            failed = Some(Failure::runtime(format!("closing the producer: {e}")));
        }
    }
    sent?;
    if let Some(f) = failed {
        return Err(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if progress && produced >= PROGRESS_EVERY {
        eprintln!();
    }
    eprintln!(
        "kcon: produced {produced} records to {topic} in {} batches, {elapsed:.2} s{}",
        producer.metrics().batches_delivered,
        if elapsed > 0.0 && produced > 0 {
            format!(", {:.0} records/s", produced as f64 / elapsed)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `f`, followed by `what` (what became of the open transaction), with the same exit status.
fn followed_by(f: &Failure, what: &str) -> Failure {
    let message = format!("{f}; {what}");
    if f.exit_code() == crate::failure::EXIT_USAGE {
        Failure::usage(message)
    } else {
        Failure::runtime(message)
    }
}

/// The producer: acks=all, the codec of -z, batches of [`BATCH_RECORDS`] records or
/// [`BATCH_BYTES`] bytes, then the producer properties among -X (a later one wins), sending
/// through the pool the command already connected with.
fn producer(args: &ProduceArgs, pool: kcon_admin::Pool) -> Result<Producer, Failure> {
    let mut builder = Producer::builder()
        .pool(pool)
        .set("acks", "all")
        .set("compression.type", args.compression.property())
        .set("batch.num.messages", BATCH_RECORDS.to_string())
        .set("batch.size", BATCH_BYTES.to_string());
    for (name, value) in producer_properties(args) {
        builder = builder.set(name, value);
    }
    builder.build().map_err(|e| Failure::of(None, &e))
}

/// The producer's own properties among -X, in the order given.
fn producer_properties(args: &ProduceArgs) -> impl Iterator<Item = (&str, &str)> {
    args.cluster
        .properties
        .iter()
        .filter(|(name, _)| registry::lookup(kcon_produce::PROPERTIES, name).is_some())
        .map(|(name, value)| (name.as_str(), value.as_str()))
}

/// Records read and not sent yet, with their input lines: sent together in one call.
#[derive(Default)]
struct Group {
    lines: Vec<u64>,
    records: Vec<ProducerRecord>,
    /// The room they take in `buffer.memory` (`Producer::room`).
    size: usize,
}

impl Group {
    fn add(&mut self, line: u64, record: ProducerRecord, size: usize) {
        self.lines.push(line);
        self.records.push(record);
        self.size = self.size.saturating_add(size);
    }

    /// Sends the records, if any, leaving the group empty; their deliveries go to `unchecked`.
    async fn send(
        &mut self,
        producer: &Producer,
        unchecked: &mut Unchecked,
    ) -> Result<(), Failure> {
        if self.records.is_empty() {
            return Ok(());
        }
        let first = self.lines[0];
        let deliveries = producer
            .send_all(self.records.drain(..))
            .await
            .map_err(|e| delivery_failed(first, &e))?;
        unchecked
            .pending
            .push_back((std::mem::take(&mut self.lines), deliveries));
        self.size = 0;
        Ok(())
    }
}

/// The deliveries of the records sent, with their input lines, in input order, until each is
/// known to have succeeded.
#[derive(Default)]
struct Unchecked {
    pending: VecDeque<(Vec<u64>, Deliveries)>,
}

impl Unchecked {
    /// Takes off the front the deliveries already done, without waiting for the others; the
    /// first that failed, with its input line.
    fn check_done(&mut self) -> Result<(), Failure> {
        while let Some((lines, deliveries)) = self.pending.pop_front() {
            match deliveries.try_outcomes() {
                Ok(outcomes) => first_failed(&lines, outcomes)?,
                Err(pending) => {
                    self.pending.push_front((lines, pending));
                    break;
                }
            }
        }
        Ok(())
    }

    /// Awaits each delivery left, in input order; the first that failed, with its input line.
    async fn all_done(&mut self) -> Result<(), Failure> {
        while let Some((lines, deliveries)) = self.pending.pop_front() {
            first_failed(&lines, deliveries.await)?;
        }
        Ok(())
    }
}

/// The first of `outcomes` that failed, as the run's failure for its input line.
fn first_failed(
    lines: &[u64],
    outcomes: Vec<Result<kcon_produce::Delivered, ProduceError>>,
) -> Result<(), Failure> {
    for (line, outcome) in lines.iter().zip(outcomes) {
        if let Err(e) = outcome {
            return Err(delivery_failed(*line, &e));
        }
    }
    Ok(())
}

/// The run's failure for the record of input line `line` (or for the records sent together
/// from it).
fn delivery_failed(line: u64, e: &ProduceError) -> Failure {
    Failure::runtime(format!("input line {line}: {e}"))
}

impl Input {
    /// The record to send to `topic` (and `partition`, if one was chosen).
    fn into_record(self, topic: Topic, partition: Option<i32>) -> ProducerRecord {
        let mut record = ProducerRecord::default();
        record.topic = topic;
        record.partition = partition;
        record.key = self.key;
        record.value = self.value;
        record.headers = self
            .headers
            .into_iter()
            .map(|(k, v)| (Bytes::from(k), v.map(Bytes::from)))
            .collect();
        record.timestamp = self.timestamp;
        record
    }
}

/// Reads stdin to its end, parsing each line, and hands the records over in chunks; stops at
/// the first bad line (the good lines before it are handed over, then the error) or when the
/// receiver is gone. A chunk goes when it is
/// full or when what stdin has written so far is read: lines typed, or written a few at a time
/// by a program, are sent at once rather than after a thousand more or the end of the input.
fn read_stdin(
    format: InputFormat,
    delimiter: Option<&[u8]>,
    tx: &mpsc::Sender<Result<Vec<Input>, Failure>>,
) {
    let mut reader = BufReader::with_capacity(STDIN_BUFFER, std::io::stdin().lock());
    let mut line = Vec::new();
    let mut arena = BytesMut::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut number = 0u64;
    loop {
        // About to wait for stdin (or a full chunk): what was read goes now.
        if !chunk.is_empty()
            && (chunk.len() >= CHUNK || reader.buffer().is_empty())
            && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err()
        {
            return;
        }
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
            InputFormat::Lines => Ok(split_line(&line, delimiter, &mut arena)),
            InputFormat::Json if line.iter().all(u8::is_ascii_whitespace) => continue,
            InputFormat::Json => parse_json(&line),
        };
        match parsed {
            Ok(mut input) => {
                input.line = number;
                chunk.push(input);
            }
            Err(e) => {
                // The good lines read with the bad one are produced before the failure.
                if !chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
                let _ =
                    tx.blocking_send(Err(Failure::runtime(format!("input line {number}: {e}"))));
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// A line as a record: the value, or key and value split at the first `delimiter`, each
/// copied into `arena` and cut off it.
fn split_line(line: &[u8], delimiter: Option<&[u8]>, arena: &mut BytesMut) -> Input {
    if arena.capacity() < line.len() {
        *arena = BytesMut::with_capacity(ARENA.max(line.len()));
    }
    let mut cut = |part: &[u8]| {
        arena.extend_from_slice(part);
        arena.split().freeze()
    };
    let split = delimiter.and_then(|d| {
        let at = line.windows(d.len()).position(|w| w == d)?;
        Some((&line[..at], &line[at + d.len()..]))
    });
    match split {
        Some((key, value)) => Input {
            key: Some(cut(key)),
            value: Some(cut(value)),
            ..Input::default()
        },
        None => Input {
            value: Some(cut(line)),
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
        input.key = read_bytes(k, "key")?.map(Bytes::from);
    }
    if let Some(v) = o.get("value") {
        input.value = read_bytes(v, "value")?.map(Bytes::from);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_delimiter() {
        let mut arena = BytesMut::new();
        let i = split_line(b"k::v::w", Some(b"::"), &mut arena);
        assert_eq!(
            (i.key.as_deref(), i.value.as_deref()),
            (Some(&b"k"[..]), Some(&b"v::w"[..]))
        );
        let i = split_line(b"no delimiter", Some(b":"), &mut arena);
        assert_eq!(
            (i.key, i.value.as_deref()),
            (None, Some(&b"no delimiter"[..]))
        );
        let i = split_line(b"", None, &mut arena);
        assert_eq!(i.value.as_deref(), Some(&b""[..]));
        // Lines past what a buffer holds, and one longer than a buffer, each read whole.
        let lines: Vec<Vec<u8>> = (0..2 * ARENA / 100)
            .map(|n| format!("{n:0>99}").into_bytes())
            .chain([vec![b'x'; 3 * ARENA]])
            .collect();
        let read: Vec<Input> = lines
            .iter()
            .map(|l| split_line(l, None, &mut arena))
            .collect();
        for (line, input) in lines.iter().zip(&read) {
            assert_eq!(input.value.as_deref(), Some(&line[..]));
        }
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
}
