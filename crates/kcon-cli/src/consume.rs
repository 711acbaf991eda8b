//! `kcon consume`: records to stdout, rebalance events to stderr.
//!
//! Without a group the tool assigns itself every partition of the topics; with one it
//! subscribes. Offsets are committed at-least-once and never ahead of the output:
//!
//! 1. `enable.auto.offset.store=false`: the consumer stores nothing on its own;
//! 2. a batch is written to stdout and flushed;
//! 3. only then is the offset after the last record written stored (`store_offset`);
//! 4. auto-commit (every `auto.commit.interval.ms`, 1 s by default here) commits what is
//!    stored; so do the consumer itself before it gives up revoked partitions and `close`.
//!
//! Why not `commit()` after each batch, or auto-commit with automatic stores: those commit
//! everything handed out, and when a write fails (a closed pipe) or `-c` stops in the middle
//! of a batch, records that were never written would count as consumed. Storing explicitly
//! commits exactly what reached stdout, with no commit round trip per batch.
//!
//! With `--key-format`/`--value-format`, a record whose key or value does not read is
//! reported on stderr instead of written (it counts as consumed once reported). A failure that
//! may pass (kcon's deserializers call it retriable: a Schema Registry that is down) stops the
//! tool before the record.
//!
//! With `--dlq-topic` the records go through kcon's `Processor` instead, with
//! `errors.tolerance=all` and the dead-letter topic (kcon's dead-letter record: the original
//! bytes and headers plus `kcon.dlq.*` headers): its handler writes each record that reads to
//! stdout and flushes before the processor stores its offset; a record that does not read is
//! dead-lettered, acknowledged before its offset is stored, and reported on stderr; a retriable
//! failure is tried again with backoff, only its partition waiting (`errors.retry.*`, told on
//! stderr), as the library does. A dead-letter write that fails stops the tool with nothing
//! stored past the record.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use clap::Args;
use kcon::deserialize::{Decoded, decode};
use kcon::{
    BorrowedBatch, BorrowedRecord, Consumer, FailureInfo, ListenerFuture, PolicyConfig,
    PolicyHooks, Processor, RebalanceContext, RebalanceListener, Record, Stage, TopicPartition,
};
use kcon_admin::TopicScope;
use regex::Regex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cluster::ClusterArgs;
use crate::decode::{Field, FieldDeserializer, FieldFormat, is_registry_property, registry};
use crate::failure::Failure;
use crate::record_format::{Format, failure_line};
use crate::shutdown::Shutdown;

/// With `-e`, how long the loop waits for records before it looks at the partitions' ends
/// again. A batch is looked at as it comes; only what comes without records needs the wait:
/// an empty partition's end (a Fetch answer that brought it no records), a position first
/// known, a group's assignment. Looking costs no request.
pub(crate) const END_TICK: Duration = Duration::from_millis(50);

/// Consume records and write them to stdout.
///
/// Without -g, every partition of the topics is read by assignment, no offsets committed.
/// With -g, the tool joins the group and commits the offsets of what it has written
/// (at-least-once: after stdout is flushed). auto.offset.reset is earliest unless
/// -X auto.offset.reset=... says otherwise. Ctrl-C or SIGTERM: commit, leave the group,
/// exit 0.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// Consumer group to join (the same as -X group.id=GROUP).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,

    /// Exit after writing COUNT records.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,

    /// Exit once every assigned partition is read to its end: the end the broker gave when
    /// the last records were fetched (records written later are not waited for). With -g,
    /// once the group has assigned partitions to this member.
    #[arg(short = 'e', long = "exit-at-end")]
    exit_at_end: bool,

    /// Output format: text (one line per record: TOPIC/PARTITION@OFFSET key=KEY VALUE) or
    /// json (one object per record with topic, partition, offset, timestamp, key, value,
    /// headers; bytes that are not UTF-8 as {"base64":"..."}; rebalance events as JSON
    /// objects on stderr).
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,

    /// How keys are read: bytes (as they are), string (UTF-8) or json. A key that does not
    /// read is reported on stderr as a JSON line (topic, partition, offset, field, kind,
    /// message) instead of the record being written.
    #[arg(long = "key-format", value_enum, default_value_t = FieldFormat::Bytes)]
    key_format: FieldFormat,

    /// How values are read: bytes (as they are), string (UTF-8), json (written as the JSON
    /// value itself), or avro, protobuf, json-schema (written by Confluent's serializers,
    /// decoded with the schema from --schema-registry, written as JSON). A value that does not
    /// read is reported on stderr, as for keys.
    #[arg(long = "value-format", value_enum, default_value_t = FieldFormat::Bytes)]
    value_format: FieldFormat,

    /// The Schema Registry of --key-format/--value-format avro, protobuf and json-schema (the
    /// same as -X schema.registry.url=URL). Its other properties go with -X under Confluent's
    /// names: basic.auth.user.info, bearer.auth.token, schema.registry.ssl.ca.location,
    /// schema.registry.request.timeout.ms, ...
    #[arg(long = "schema-registry", value_name = "URL")]
    schema_registry: Option<String>,

    /// Also write each record that does not read to this topic (acks=all, idempotent): its
    /// key, value and headers unchanged, plus kcon.dlq.* headers saying where it came from
    /// and why. Its offset is committed only once the topic has it. Records go through kcon's
    /// Processor (errors.tolerance=all): a failure that may pass (a Schema Registry that is
    /// down) is retried with backoff as -X errors.retry.* say, only its partition waiting.
    #[arg(long = "dlq-topic", value_name = "TOPIC")]
    dlq_topic: Option<String>,

    /// Topics to read; a name starting with ^ is a regular expression.
    #[arg(value_name = "TOPIC", required = true)]
    topics: Vec<String>,
}

/// Why the consume loop ended.
#[derive(Debug)]
enum Stop {
    /// `-c` or `-e` reached.
    Done,
    /// SIGINT or SIGTERM.
    Signal,
    /// Whoever read stdout went away.
    PipeClosed,
    /// Something failed.
    Failed(Failure),
}

/// Runs `kcon consume`.
pub(crate) async fn run(args: ConsumeArgs) -> Result<(), Failure> {
    if let Some(topic) = &args.dlq_topic
        && args.topics.contains(topic)
    {
        return Err(Failure::usage(format!(
            "--dlq-topic {topic} is also a topic to read: its records that do not read would \
             be dead-lettered into it again and again"
        )));
    }
    let group = args
        .group
        .clone()
        .or_else(|| args.cluster.property("group.id").map(str::to_owned))
        .filter(|g| !g.is_empty());
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", &args.cluster.brokers)
        .set("client.id", "kcon")
        .set("auto.offset.reset", "earliest")
        // As for every command of the tool: reading a topic does not create it.
        .set("allow.auto.create.topics", "false");
    if group.is_some() {
        builder = builder
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000");
    }
    // The Schema Registry client's properties are its own, and the record policies' (errors.*)
    // the dead-letter processor's: neither is the consumer's.
    let is_policy_property = |name: &str| Processor::properties().any(|p| p.is_named(name));
    let mut policy = Vec::new();
    for (name, value) in args
        .cluster
        .properties
        .iter()
        .filter(|(n, _)| !is_registry_property(n))
    {
        if is_policy_property(name) {
            policy.push((name.clone(), value.clone()));
        } else {
            builder = builder.set(name, value.as_str());
        }
    }
    if let Some(topic) = &args.dlq_topic {
        policy.push(("errors.tolerance".to_owned(), "all".to_owned()));
        policy.push((
            "errors.deadletterqueue.topic.name".to_owned(),
            topic.clone(),
        ));
        // Checked now, with the consumer's properties, before any broker is asked anything.
        let mut checked = PolicyConfig::default();
        for (name, value) in &policy {
            checked
                .set(name, value)
                .map_err(|e| Failure::from_consumer(e.into()))?;
        }
        checked
            .validate()
            .map_err(|e| Failure::from_consumer(e.into()))?;
    } else if let Some((name, _)) = policy.first() {
        return Err(Failure::usage(format!(
            "bad configuration: property {name:?} configures the dead-letter processing, which \
             only --dlq-topic turns on"
        )));
    }
    let registry = if args.key_format.needs_registry() || args.value_format.needs_registry() {
        Some(registry(
            args.schema_registry.as_deref(),
            &args.cluster.properties,
        )?)
    } else {
        None
    };
    let fields = Fields {
        key: FieldDeserializer::new(args.key_format, registry.as_ref()),
        value: FieldDeserializer::new(args.value_format, registry.as_ref()),
    };
    if let Some(g) = &group {
        builder = builder.set("group.id", g.as_str());
    }
    let mut shutdown = Shutdown::new()?;
    // Every property is checked here, before any broker is asked anything: exit 2.
    let mut consumer = builder
        .rebalance_listener(RebalanceEvents {
            format: args.format,
        })
        .build()
        .map_err(Failure::from_consumer)?;

    // A signal while the cluster is being looked at ends the run at once: nothing was read.
    let started = tokio::select! {
        r = start(&mut consumer, &args, group.is_some()) => r,
        () = shutdown.wait() => return Ok(()),
    };
    let mut ends = started?;

    let progress = Progress::new();
    let mut written = 0u64;
    let (stop, closed) = if args.dlq_topic.is_some() {
        let mut builder = Processor::builder(consumer)
            .key(fields.key)
            .value(fields.value)
            .hooks(Reports {
                dead_letter_topic: args.dlq_topic.clone(),
                progress: progress.clone(),
            });
        for (name, value) in &policy {
            builder = builder.set(name, value.as_str());
        }
        let processor = builder.build().map_err(Failure::from_consumer)?;
        process(processor, &args, &progress, &mut shutdown, &mut ends).await
    } else {
        let stop = consume(
            &mut consumer,
            &args,
            &fields,
            group.is_some(),
            &mut shutdown,
            &mut written,
            &mut ends,
        )
        .await;
        let closed = tokio::select! {
            r = consumer.close() => r.map_err(Failure::from_consumer),
            () = shutdown.wait() => Err(Failure::runtime(
                "interrupted again while closing: nothing more was committed",
            )),
        };
        (stop, closed)
    };
    written += progress.written.load(Ordering::Relaxed);
    if args.format == Format::Text && !matches!(stop, Stop::PipeClosed) {
        eprintln!("kcon: consumed {written} records");
    }
    match stop {
        Stop::Failed(f) => Err(f),
        Stop::Done | Stop::Signal | Stop::PipeClosed => closed,
    }
}

/// What the processor's handler and hooks share with the loop around them: the records
/// written or reported, when the last was, and why processing must stop (a write to stdout
/// that failed, told through `abort`).
struct Progress {
    written: AtomicU64,
    last_activity: Mutex<Instant>,
    stopped: Mutex<Option<Stop>>,
    abort: Notify,
}

impl Progress {
    fn new() -> Arc<Progress> {
        Arc::new(Progress {
            written: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            stopped: Mutex::new(None),
            abort: Notify::new(),
        })
    }

    /// One more record written or reported.
    fn count(&self) {
        self.written.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_activity) = Instant::now();
    }

    /// Whether `-c` is reached.
    fn reached(&self, count: Option<u64>) -> bool {
        count.is_some_and(|c| self.written.load(Ordering::Relaxed) >= c)
    }

    /// Stops processing mid-record: the run is dropped, the record not stored.
    fn abort(&self, stop: Stop) {
        *lock(&self.stopped) = Some(stop);
        self.abort.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `--dlq-topic`: the records through kcon's `Processor` until `-c`, `-e`, a signal, a closed
/// stdout or an error; then the processor is closed (commit, leave the group, the dead-letter
/// producer flushed). Returns why it stopped and how closing went.
async fn process(
    mut processor: Processor<FieldDeserializer, FieldDeserializer>,
    args: &ConsumeArgs,
    progress: &Progress,
    shutdown: &mut Shutdown,
    ends: &mut Ends,
) -> (Stop, Result<(), Failure>) {
    let stop = loop {
        // Each run waits for records at least END_TICK before -e looks at the ends.
        *lock(&progress.last_activity) = Instant::now();
        let signalled = Mutex::new(false);
        // Checked by the processor between records and while it waits for them.
        let stop = async {
            tokio::select! {
                () = shutdown.wait() => *lock(&signalled) = true,
                () = std::future::poll_fn(|_| {
                    if progress.reached(args.count) { Poll::Ready(()) } else { Poll::Pending }
                }) => {}
                () = idle(progress, args.exit_at_end) => {}
            }
        };
        let handler = async |d: &Decoded<Field, Field>| -> Result<(), kcon::Failure> {
            let mut out = Vec::with_capacity(256);
            args.format
                .write_decoded(&mut out, &d.record, &d.key, &d.value);
            // Written and flushed before the processor stores the offset past it.
            let mut stdout = io::stdout().lock();
            let written = stdout.write_all(&out).and_then(|()| stdout.flush());
            drop(stdout);
            match written {
                Ok(()) => {
                    progress.count();
                    Ok(())
                }
                Err(e) => {
                    progress.abort(if e.kind() == io::ErrorKind::BrokenPipe {
                        Stop::PipeClosed
                    } else {
                        Stop::Failed(Failure::runtime(format!("cannot write to stdout: {e}")))
                    });
                    // The run is dropped here: the record is not stored.
                    std::future::pending().await
                }
            }
        };
        let ran = tokio::select! {
            r = processor.run_until(stop, handler) => r,
            () = progress.abort.notified() => Ok(()),
        };
        if let Some(stop) = lock(&progress.stopped).take() {
            break stop;
        }
        if let Err(e) = ran {
            break Stop::Failed(Failure::from_consumer(e));
        }
        if *lock(&signalled) {
            break Stop::Signal;
        }
        if progress.reached(args.count) {
            break Stop::Done;
        }
        // -e: no record for a moment; done once every partition is read to its end and
        // nothing waits in the processor (a retry, or records behind one).
        if processor.metrics().records_waiting == 0 && ends.all(processor.consumer()) {
            break Stop::Done;
        }
    };
    let closed = tokio::select! {
        r = processor.close() => r.map_err(Failure::from_consumer),
        () = shutdown.wait() => Err(Failure::runtime(
            "interrupted again while closing: nothing more was committed",
        )),
    };
    (stop, closed)
}

/// With `-e`: done once no record was written, reported or retried for [`END_TICK`] (nor
/// since the run began); without, never.
async fn idle(progress: &Progress, exit_at_end: bool) {
    if !exit_at_end {
        return std::future::pending().await;
    }
    loop {
        let due = *lock(&progress.last_activity) + END_TICK;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// The processor's hooks: a record dead-lettered is reported on stderr (and counts as
/// consumed), a retry is told.
struct Reports {
    dead_letter_topic: Option<String>,
    progress: Arc<Progress>,
}

impl PolicyHooks for Reports {
    fn on_retry(&self, record: &Record, failure: &FailureInfo, attempt: u32, delay: Duration) {
        let _ = writeln!(
            io::stderr().lock(),
            "kcon: {}-{}@{}: {failure}; try {} in {} ms",
            record.topic,
            record.partition,
            record.offset,
            attempt + 1,
            delay.as_millis()
        );
        *lock(&self.progress.last_activity) = Instant::now();
    }

    fn on_dead_letter(&self, record: &Record, failure: &FailureInfo) {
        self.report(record, failure, self.dead_letter_topic.as_deref());
    }

    fn on_skip(&self, record: &Record, failure: &FailureInfo) {
        self.report(record, failure, None);
    }
}

impl Reports {
    /// Reports `record` on stderr, as the plain path does, with the dead-letter topic it went
    /// to; it counts as consumed.
    fn report(&self, record: &Record, failure: &FailureInfo, dead_letter_topic: Option<&str>) {
        let field = match failure.stage {
            Stage::DeserializeKey => "key",
            _ => "value",
        };
        let message = format!("{}: {}", failure.class, failure.message);
        let line = failure_line(record, field, &failure.class, &message, dead_letter_topic);
        // Nothing to do when stderr is gone.
        let _ = io::stderr().lock().write_all(&line);
        self.progress.count();
    }
}

/// How keys and values are read, for the whole run.
struct Fields {
    key: FieldDeserializer,
    value: FieldDeserializer,
}

/// What became of a batch's records: the output for stdout, the reports for stderr, and the
/// index of a record that failed retriably (nothing from it on is handled).
#[derive(Default)]
struct Handled {
    out: Vec<u8>,
    reports: Vec<u8>,
    stopped_at: Option<(usize, Failure)>,
}

/// Writes the first `take` records of `batch` into `handled`, reading keys and values as
/// `args` says. Records written as they are (bytes) are read where they lie in the Fetch
/// answer; one whose key or value is read by a format is made a [`Record`] for it. Returns the
/// last record handled (written or reported), if any.
async fn handle_batch<'b>(
    batch: &BorrowedBatch<'b>,
    take: usize,
    args: &ConsumeArgs,
    fields: &Fields,
    handled: &mut Handled,
) -> Option<BorrowedRecord<'b>> {
    let mut last = None;
    if fields.key.format() == FieldFormat::Bytes && fields.value.format() == FieldFormat::Bytes {
        for record in batch.iter().take(take) {
            args.format.write_borrowed(&mut handled.out, record, None);
            last = Some(record);
        }
        return last;
    }
    let (key, value) = (&fields.key, &fields.value);
    for (i, lent) in batch.iter().take(take).enumerate() {
        let record = lent.to_record();
        match decode(record.clone(), key, value).await {
            Ok(d) => {
                args.format
                    .write_decoded(&mut handled.out, &record, &d.key, &d.value);
            }
            Err(failure) if failure.error.is_retriable() => {
                handled.stopped_at = Some((i, Failure::runtime(failure.to_string())));
                return last;
            }
            Err(failure) => handled.reports.extend(failure_line(
                &record,
                failure.field.name(),
                failure.error.kind(),
                &failure.error.to_string(),
                None,
            )),
        }
        last = Some(lent);
    }
    last
}

/// Checks the cluster and the topics, then subscribes (with a group) or assigns every
/// partition of the topics (without). With `-e` and no group, the ends of the partitions'
/// logs are listed first, before any Fetch: a partition that starts at its end (an empty
/// one) is done at once, with no Fetch answer to wait for.
async fn start(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    in_group: bool,
) -> Result<Ends, Failure> {
    let cluster = args.cluster.connect(None).await?;
    let (patterns, names): (Vec<String>, Vec<String>) = args
        .topics
        .iter()
        .cloned()
        .partition(|t| t.starts_with('^'));
    let mut names: BTreeSet<String> = names.into_iter().collect();
    if in_group {
        // A subscription to a topic that does not exist would wait for it silently.
        if !names.is_empty() {
            cluster.partitions(&names).await?;
        }
        consumer
            .subscribe(args.topics.iter().cloned())
            .map_err(Failure::from_consumer)?;
        return Ok(Ends::default());
    }
    names.extend(matching_topics(&cluster, &patterns).await?);
    let partitions = cluster.partitions(&names).await?;
    let all: Vec<TopicPartition> = partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.as_str(), *p)))
        .collect();
    let ends = if args.exit_at_end {
        Ends::listed(
            consumer
                .end_offsets(all.iter().cloned())
                .await
                .map_err(Failure::from_consumer)?,
        )
    } else {
        Ends::default()
    };
    consumer.assign(all).map_err(Failure::from_consumer)?;
    Ok(ends)
}

/// The loop: receive a batch, write it, store its offsets; until `-c`, `-e`, a signal, a
/// closed stdout or an error.
async fn consume(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    fields: &Fields,
    in_group: bool,
    shutdown: &mut Shutdown,
    written: &mut u64,
    ends: &mut Ends,
) -> Stop {
    let mut handled = Handled {
        out: Vec::with_capacity(64 * 1024),
        ..Handled::default()
    };
    loop {
        let take_max = match args.count {
            Some(count) if *written >= count => return Stop::Done,
            Some(count) => (count - *written) as usize,
            None => usize::MAX,
        };
        let received = tokio::select! {
            biased;
            () = shutdown.wait() => return Stop::Signal,
            r = next_borrowed(consumer, args.exit_at_end) => r,
        };
        let Some(received) = received else {
            if ends.all(consumer) {
                return Stop::Done;
            }
            continue;
        };
        let batch = match received {
            Ok(batch) => batch,
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, "retrying");
                continue;
            }
            Err(e) => return Stop::Failed(Failure::from_consumer(e)),
        };
        let tp = batch.partition().clone();
        let taken = batch.len().min(take_max);
        handled.out.clear();
        handled.reports.clear();
        let last = handle_batch(&batch, taken, args, fields, &mut handled).await;
        // Once written, flushed and reported (below), the records count as consumed, up to the
        // first that was not: the last of them is made a `Record` here to store its offset
        // then, since the batch borrows the consumer and is not used past this point.
        let last = last.filter(|_| in_group).map(|r| r.to_record());
        let stop = handled.stopped_at.take();
        let done = stop.as_ref().map_or(taken, |(i, _)| taken.min(*i));
        let whole = done == taken;
        let mut stdout = io::stdout().lock();
        match stdout.write_all(&handled.out).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Stop::PipeClosed,
            Err(e) => {
                return Stop::Failed(Failure::runtime(format!("cannot write to stdout: {e}")));
            }
        }
        drop(stdout);
        // Nothing to do when stderr is gone.
        let _ = io::stderr().lock().write_all(&handled.reports);
        if let Some(last) = &last
            && let Err(e) = consumer.store_offset(last)
        {
            return Stop::Failed(Failure::from_consumer(e));
        }
        *written += done as u64;
        if let Some((_, failure)) = stop {
            return Stop::Failed(failure);
        }
        if args.exit_at_end && whole && ends.after_batch(consumer, &tp) {
            return Stop::Done;
        }
    }
}

/// The next batch, lent in place; with `-e`, `None` when none came within [`END_TICK`]. The
/// consumer's receiving calls are cancel-safe, so giving up on one loses nothing.
async fn next_borrowed(
    consumer: &mut Consumer,
    exit_at_end: bool,
) -> Option<Result<BorrowedBatch<'_>, kcon::Error>> {
    if !exit_at_end {
        return Some(consumer.recv_borrowed().await);
    }
    tokio::time::timeout(END_TICK, consumer.recv_borrowed())
        .await
        .ok()
}

/// The next batch; with `-e`, `None` when none came within [`END_TICK`]. The consumer's
/// receiving calls are cancel-safe, so giving up on one loses nothing.
pub(crate) async fn next_batch(
    consumer: &mut Consumer,
    exit_at_end: bool,
) -> Option<Result<Vec<kcon::Record>, kcon::Error>> {
    if !exit_at_end {
        return Some(consumer.recv_batch().await);
    }
    tokio::time::timeout(END_TICK, consumer.recv_batch())
        .await
        .ok()
}

/// With `-e`: the owned partitions read to their end. A partition is there once its position
/// reached the end of its log as the Fetch answer that brought it there gave it (the high
/// watermark, or the last stable offset under read_committed: the consumer's `current_lag`,
/// no request sent); records written after that are not waited for. Before any Fetch answer,
/// the end listed when the partitions were assigned stands in: a partition that starts at its
/// end is there at once.
#[derive(Debug, Default)]
pub(crate) struct Ends {
    reached: BTreeSet<TopicPartition>,
    listed: BTreeMap<TopicPartition, i64>,
}

impl Ends {
    /// With the ends listed at the start.
    pub(crate) fn listed(listed: BTreeMap<TopicPartition, i64>) -> Ends {
        Ends {
            reached: BTreeSet::new(),
            listed,
        }
    }

    /// After a batch of `tp`, handed out whole: whether every owned partition is at its end
    /// now. Only `tp` moved, so the others are looked at only when `tp` reaches its end.
    pub(crate) fn after_batch(&mut self, consumer: &Consumer, tp: &TopicPartition) -> bool {
        if self.reached.contains(tp) || !self.at_end(consumer, tp) {
            return false;
        }
        self.reached.insert(tp.clone());
        self.all(consumer)
    }

    /// Whether every owned partition is at its end (none owned yet: no). Partitions no longer
    /// owned are forgotten.
    pub(crate) fn all(&mut self, consumer: &Consumer) -> bool {
        let owned = consumer.assignment();
        if owned.is_empty() {
            return false;
        }
        self.reached.retain(|tp| owned.contains(tp));
        for tp in owned {
            if !self.reached.contains(&tp) && self.at_end(consumer, &tp) {
                self.reached.insert(tp);
            }
        }
        self.reached.len() == consumer.assignment().len()
    }

    fn at_end(&self, consumer: &Consumer, tp: &TopicPartition) -> bool {
        match consumer.current_lag(tp) {
            Some(lag) => lag == 0,
            None => match (self.listed.get(tp), consumer.position(tp)) {
                (Some(end), Some(position)) => position >= *end,
                _ => false,
            },
        }
    }
}

/// The topics whose names match one of `patterns` (each starting with `^`).
async fn matching_topics(
    cluster: &crate::cluster::Cluster,
    patterns: &[String],
) -> Result<BTreeSet<String>, Failure> {
    if patterns.is_empty() {
        return Ok(BTreeSet::new());
    }
    let regexes = patterns
        .iter()
        .map(|p| {
            Regex::new(p)
                .map_err(|e| Failure::usage(format!("{p:?} is not a regular expression: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = cluster.metadata(TopicScope::All).await?;
    let found: BTreeSet<String> = metadata
        .topics
        .values()
        .filter(|t| !t.is_internal && regexes.iter().any(|r| r.is_match(&t.name)))
        .map(|t| t.name.clone())
        .collect();
    if found.is_empty() {
        return Err(Failure::runtime(format!(
            "no topic matches {}",
            patterns.join(" or ")
        )));
    }
    Ok(found)
}

/// Tells stderr of every rebalance event, in the output format.
struct RebalanceEvents {
    format: Format,
}

impl RebalanceEvents {
    fn tell(&self, event: &str, partitions: &[TopicPartition]) {
        let line = self.format.rebalance_event(event, partitions);
        // Nothing to do when stderr is gone.
        let _ = io::stderr().lock().write_all(&line);
    }
}

impl RebalanceListener for RebalanceEvents {
    fn on_assigned<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.tell("assigned", partitions);
        Box::pin(std::future::ready(()))
    }

    fn on_revoked<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.tell("revoked", partitions);
        Box::pin(std::future::ready(()))
    }

    fn on_lost<'a>(
        &'a mut self,
        _ctx: &'a RebalanceContext,
        partitions: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.tell("lost", partitions);
        Box::pin(std::future::ready(()))
    }
}
