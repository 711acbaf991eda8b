//! `kcon produce`: records from stdin, one per line, sent through kcon-produce's `Producer`
//! with acks=all.
//!
//! A thread of the runtime's blocking pool reads and parses stdin and sends the records through
//! the producer (with `send_all`, what each read of stdin brought), which partitions them
//! (murmur2 for keys, in turn for null keys), batches up to [`BATCH_RECORDS`] records or
//! [`BATCH_BYTES`] bytes per partition, keeps each partition's records in input order and
//! retries what can be retried. The deliveries are checked in input order as the reads are
//! sent, and the first failure is reported with its input line. Without
//! `-X enable.idempotence=true` a retried batch may be written twice (at-least-once).

use std::collections::VecDeque;
use std::io::{IsTerminal, Read};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use clap::{Args, ValueEnum};
use kcon::property::registry;
use kcon_produce::{Deliveries, ProduceError, Producer, ProducerConfig, ProducerRecord, Topic};
use serde_json::Value;

use crate::bytes_json::read_bytes;
use crate::cluster::ClusterArgs;
use crate::failure::Failure;

/// The most records in one batch.
const BATCH_RECORDS: usize = 1000;

/// The most bytes of records in one batch (1 MiB, the broker's default `message.max.bytes`,
/// less room for the batch's own overhead; a record larger than this goes in a batch of its
/// own).
const BATCH_BYTES: usize = 1024 * 1024 - 16 * 1024;

/// The most of stdin one read takes.
const STDIN_BUFFER: usize = 64 * 1024;

/// The size of the buffers stdin is copied into, each line's key and value a slice of one:
/// one allocation per 64 KiB of input rather than one per record, all freed by whichever
/// thread drops its last slice. A longer line gets a buffer of its own.
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

    let progress = std::io::stderr().is_terminal();
    // Reading stdin blocks, and a pipe may stay open for a long time: the input is read,
    // parsed and sent on a thread of the runtime's blocking pool, from line to `send_all` on
    // that one thread, so that no record crosses between threads before the producer's queue.
    let feed = Feed {
        producer: producer.clone(),
        topic,
        count,
        partition: args.partition,
        format: args.format,
        delimiter: args.key_delimiter.clone().map(String::into_bytes),
        headers: args
            .headers
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), Some(v.clone().into_bytes())))
            .collect(),
        progress,
    };
    let started = Instant::now();
    let runtime = tokio::runtime::Handle::current();
    let Fed {
        mut sent,
        mut failed,
        mut unchecked,
        produced,
    } = tokio::task::spawn_blocking(move || runtime.block_on(feed.run(std::io::stdin())))
        .await
        .map_err(|e| Failure::runtime(format!("reading stdin stopped: {e}")))?;
    if !transactional {
        // Whatever was sent is finished (acknowledged or failed) before the verdict. Each
        // record's failure is read from its own delivery below: the close's count of them adds
        // nothing.
        let _ = producer.clone().close().await;
    }
    if failed.is_none() {
        failed = unchecked.all_done().await.err();
    }
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

/// What `kcon produce` reads and how it sends it, moved onto the thread that reads stdin.
struct Feed {
    producer: Producer,
    topic: Topic,
    /// The topic's partitions.
    count: i32,
    /// `-p`.
    partition: Option<i32>,
    format: InputFormat,
    /// `-K`.
    delimiter: Option<Vec<u8>>,
    /// `-H`, added to every record.
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Whether progress is shown (stderr is a terminal).
    progress: bool,
}

/// What feeding the input left behind.
struct Fed {
    /// Whether the input was read and sent to its end (or up to a delivery that failed), or
    /// the failure that stopped it.
    sent: Result<(), Failure>,
    /// The first delivery found failed while sending, which ended the reading.
    failed: Option<Failure>,
    /// The deliveries not checked yet.
    unchecked: Unchecked,
    /// The records read and handed to the producer.
    produced: u64,
}

impl Feed {
    /// Reads `input` to its end, parsing each line, and sends the records. What was read goes
    /// to the producer before each wait for more input (lines typed, or written a few at a time
    /// by a program, are sent at once rather than after more arrive) and whenever it fills
    /// `buffer.memory`; the deliveries already done are checked at the same points, without
    /// waiting, so that sending never waits for an acknowledgement, and the first that failed
    /// ends the reading. A bad line stops the run after the good lines before it are sent.
    async fn run(self, input: impl Read) -> Fed {
        let mut fed = Fed {
            sent: Ok(()),
            failed: None,
            unchecked: Unchecked::default(),
            produced: 0,
        };
        fed.sent = self.send(Lines::new(input), &mut fed).await;
        fed
    }

    async fn send(&self, mut lines: Lines<impl Read>, fed: &mut Fed) -> Result<(), Failure> {
        let buffer_memory = self.producer.config().buffer_memory;
        let mut group = Group::default();
        loop {
            let Some(line) = lines.next_buffered() else {
                // About to wait for the input: what was read goes now.
                group.send(&self.producer, &mut fed.unchecked).await?;
                if let Err(failure) = fed.unchecked.check_done() {
                    fed.failed = Some(failure);
                    return Ok(());
                }
                match lines.read() {
                    Ok(true) => continue,
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(Failure::runtime(format!("cannot read stdin: {e}"))),
                }
            };
            let number = lines.number;
            let parsed = match self.format {
                InputFormat::Lines => Ok(split_line(line, self.delimiter.as_deref())),
                InputFormat::Json if line.iter().all(u8::is_ascii_whitespace) => continue,
                InputFormat::Json => parse_json(&line),
            };
            let mut input = match parsed {
                Ok(input) => input,
                Err(e) => {
                    // The good lines read with the bad one are produced before the failure.
                    group.send(&self.producer, &mut fed.unchecked).await?;
                    return Err(Failure::runtime(format!("input line {number}: {e}")));
                }
            };
            input.headers.extend(self.headers.iter().cloned());
            let partition = match input.partition.or(self.partition) {
                Some(p) if (0..self.count).contains(&p) => Some(p),
                Some(p) => {
                    // The records before it are sent; the run stops at it.
                    group.send(&self.producer, &mut fed.unchecked).await?;
                    return Err(Failure::runtime(format!(
                        "input line {number}: partition {p} does not exist (topic {:?} has {})",
                        self.topic, self.count
                    )));
                }
                None => None,
            };
            let record = input.into_record(self.topic, partition);
            let size = self.producer.room(&record);
            if group.size.saturating_add(size) > buffer_memory {
                group.send(&self.producer, &mut fed.unchecked).await?;
            }
            group.add(number, record, size);
            fed.produced += 1;
            if self.progress && fed.produced.is_multiple_of(PROGRESS_EVERY) {
                eprint!("\rkcon: {} records read", fed.produced);
            }
        }
    }
}

/// The input cut into lines. It is read a block at a time and appended to a buffer that each
/// line is then cut from, without its newline: the lines are slices of one allocation per
/// [`ARENA`] bytes of input (freed by whichever thread drops its last line), and each newline
/// is found by one vectorized search of the bytes not searched yet.
struct Lines<R> {
    input: R,
    /// What the last read wrote.
    block: Vec<u8>,
    /// Read and not cut yet: whole lines, then the start of the next.
    arena: BytesMut,
    /// How far `arena` is known to hold no newline.
    searched: usize,
    /// The last line's number (1-based).
    number: u64,
    /// The input ended.
    ended: bool,
}

impl<R: Read> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            block: vec![0; STDIN_BUFFER],
            arena: BytesMut::new(),
            searched: 0,
            number: 0,
            ended: false,
        }
    }

    /// The next line among those read, if a whole one is (or, once the input ended, what
    /// followed its last newline).
    fn next_buffered(&mut self) -> Option<BytesMut> {
        let line = match memchr::memchr(b'\n', &self.arena[self.searched..]) {
            Some(at) => {
                let at = self.searched + at;
                let mut line = self.arena.split_to(at + 1);
                line.truncate(at);
                line
            }
            None if self.ended && !self.arena.is_empty() => self.arena.split(),
            None => {
                self.searched = self.arena.len();
                return None;
            }
        };
        self.searched = 0;
        self.number += 1;
        Some(line)
    }

    /// Waits for the input to write more and takes it; false once it has ended and nothing
    /// read is left.
    fn read(&mut self) -> std::io::Result<bool> {
        if self.ended {
            return Ok(!self.arena.is_empty());
        }
        let n = loop {
            match self.input.read(&mut self.block) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.ended = true;
            return Ok(!self.arena.is_empty());
        }
        if self.arena.capacity() - self.arena.len() < n {
            // A new buffer, with the start of a line it holds moved into it; twice what it needs
            // once a line outgrows `ARENA`, so a long line is copied a few times, not once a
            // block.
            let needed = self.arena.len() + n;
            let mut fresh = BytesMut::with_capacity(if needed <= ARENA {
                ARENA
            } else {
                needed.saturating_mul(2)
            });
            fresh.extend_from_slice(&self.arena);
            self.arena = fresh;
        }
        self.arena.extend_from_slice(&self.block[..n]);
        Ok(true)
    }
}

/// A line as a record: the value, or key and value split at the first `delimiter`, each a
/// slice of the line's buffer.
fn split_line(mut line: BytesMut, delimiter: Option<&[u8]>) -> Input {
    let key = delimiter.and_then(|d| {
        let at = memchr::memmem::find(&line, d)?;
        let key = line.split_to(at).freeze();
        line.advance(d.len());
        Some(key)
    });
    Input {
        key,
        value: Some(line.freeze()),
        ..Input::default()
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
        let line = |s: &[u8]| BytesMut::from(s);
        let i = split_line(line(b"k::v::w"), Some(b"::"));
        assert_eq!(
            (i.key.as_deref(), i.value.as_deref()),
            (Some(&b"k"[..]), Some(&b"v::w"[..]))
        );
        let i = split_line(line(b"no delimiter"), Some(b":"));
        assert_eq!(
            (i.key, i.value.as_deref()),
            (None, Some(&b"no delimiter"[..]))
        );
        let i = split_line(line(b":starts with it"), Some(b":"));
        assert_eq!(
            (i.key.as_deref(), i.value.as_deref()),
            (Some(&b""[..]), Some(&b"starts with it"[..]))
        );
        let i = split_line(line(b""), None);
        assert_eq!(i.value.as_deref(), Some(&b""[..]));
    }

    /// An input that gives at most `step` bytes a read, and is interrupted before each.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
        interrupt: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(into.len()).min(self.bytes.len() - self.at);
            into[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// Every line of `bytes`, read `step` bytes at a time.
    fn cut(bytes: &[u8], step: usize) -> Vec<(u64, Vec<u8>)> {
        let mut lines = Lines::new(Trickle {
            bytes: bytes.to_vec(),
            at: 0,
            step,
            interrupt: false,
        });
        let mut cut = Vec::new();
        loop {
            while let Some(line) = lines.next_buffered() {
                cut.push((lines.number, line.to_vec()));
            }
            if !lines.read().expect("reads") {
                return cut;
            }
        }
    }

    #[test]
    fn lines_are_cut_whole_however_the_input_comes() {
        // Lines past what a buffer holds, an empty one, one longer than a buffer, and a last
        // one with no newline after it.
        let mut given: Vec<Vec<u8>> = (0..2 * ARENA / 100)
            .map(|n| format!("{n:0>99}").into_bytes())
            .collect();
        given.push(Vec::new());
        given.push(vec![b'x'; 3 * ARENA + 7]);
        given.push(b"last".to_vec());
        let input = given.join(&b'\n');
        let want: Vec<(u64, Vec<u8>)> = (1..).zip(given.iter().cloned()).collect();
        for step in [1, 7, 100, 4096, STDIN_BUFFER] {
            assert_eq!(cut(&input, step), want, "read {step} bytes at a time");
        }
        // A newline at the end ends the last line: no empty line after it.
        assert_eq!(
            cut(b"a\n\nb\n", 2),
            vec![(1, b"a".to_vec()), (2, Vec::new()), (3, b"b".to_vec())]
        );
        assert!(cut(b"", 1).is_empty());
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
