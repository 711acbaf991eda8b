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
//! reported on stderr instead of written (it counts as consumed once reported); with
//! `--dlq-topic` it is also written to that topic (kcon's dead-letter record: the original
//! bytes and headers plus `kcon.dlq.*` headers), and the batch's offset is stored only once
//! every dead letter of the batch is acknowledged. A dead-letter write that fails stops the
//! tool with nothing stored past the record before it. A failure that may pass (kcon's
//! deserializers call it retriable) stops the tool the same way, before the record.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use kcon::deserialize::decode;
use kcon::policy::{DeadLetterContext, dead_letter_record};
use kcon::{
    Consumer, FailureInfo, ListenerFuture, RebalanceContext, RebalanceListener, Record,
    TopicPartition,
};
use kcon_pool::TopicScope;
use kcon_produce::{Delivery, Producer};
use regex::Regex;

use crate::cluster::ClusterArgs;
use crate::decode::{FieldDeserializer, FieldFormat, is_registry_property, registry};
use crate::failure::Failure;
use crate::record_format::{Format, failure_line};
use crate::shutdown::Shutdown;

/// How long `-e` waits for records before asking whether every partition is at its end.
const END_CHECK_AFTER: Duration = Duration::from_millis(300);

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

    /// Exit once every assigned partition is read to its end (with -g, once the group has
    /// assigned partitions to this member).
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
    /// and why. Its offset is committed only once the topic has it.
    #[arg(long = "dlq-topic", value_name = "TOPIC")]
    dlq_topic: Option<String>,

    /// Topics to read; a name starting with ^ is a regular expression.
    #[arg(value_name = "TOPIC", required = true)]
    topics: Vec<String>,
}

/// Why the consume loop ended.
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
    // The Schema Registry client's properties are its own, not the consumer's.
    for (name, value) in args
        .cluster
        .properties
        .iter()
        .filter(|(n, _)| !is_registry_property(n))
    {
        builder = builder.set(name, value.as_str());
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
    started?;

    let dead_letters = match &args.dlq_topic {
        Some(topic) => Some(DeadLetters::new(&args, topic, group.clone())?),
        None => None,
    };
    let mut written = 0u64;
    let stop = consume(
        &mut consumer,
        &args,
        &fields,
        group.is_some(),
        dead_letters.as_ref(),
        &mut shutdown,
        &mut written,
    )
    .await;
    if args.format == Format::Text && !matches!(stop, Stop::PipeClosed) {
        eprintln!("kcon: consumed {written} records");
    }
    let closed = tokio::select! {
        r = consumer.close() => r.map_err(Failure::from_consumer),
        () = shutdown.wait() => Err(Failure::runtime(
            "interrupted again while closing: nothing more was committed",
        )),
    };
    if let Some(d) = &dead_letters {
        d.producer.close().await;
    }
    match stop {
        Stop::Failed(f) => Err(f),
        Stop::Done | Stop::Signal | Stop::PipeClosed => closed,
    }
}

/// How keys and values are read, for the whole run.
struct Fields {
    key: FieldDeserializer,
    value: FieldDeserializer,
}

/// Where records that do not read go with `--dlq-topic`.
struct DeadLetters {
    topic: String,
    group: Option<String>,
    producer: Producer,
}

impl DeadLetters {
    /// A producer over the tool's connection properties: acks=all, idempotent.
    fn new(args: &ConsumeArgs, topic: &str, group: Option<String>) -> Result<DeadLetters, Failure> {
        let pool =
            kcon_pool::Pool::new(args.cluster.pool_config(None)?).map_err(Failure::from_pool)?;
        let producer = Producer::builder()
            .pool(pool)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .build()
            .map_err(|e| Failure::runtime(format!("the dead-letter producer: {e}")))?;
        Ok(DeadLetters {
            topic: topic.to_owned(),
            group,
            producer,
        })
    }

    /// Queues `record`'s dead-letter copy; the delivery says when the topic has it.
    async fn send(&self, record: &Record, failure: &FailureInfo) -> Result<Delivery, Failure> {
        let cx = DeadLetterContext {
            failure,
            attempts: 1,
            group: self.group.as_deref(),
            failed_at_ms: now_ms(),
        };
        self.producer
            .send(dead_letter_record(&self.topic, record, cx))
            .await
            .map_err(|e| Failure::runtime(format!("dead-lettering to {}: {e}", self.topic)))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What became of a batch's records: the output for stdout, the reports for stderr, the
/// dead letters in flight (with the index of their record), and the index of a record that
/// failed retriably (nothing from it on is handled).
#[derive(Default)]
struct Handled {
    out: Vec<u8>,
    reports: Vec<u8>,
    dead: Vec<(usize, Delivery)>,
    stopped_at: Option<(usize, Failure)>,
}

/// Writes `batch` into `handled`, reading keys and values as `args` says.
async fn handle_batch(
    batch: &[Record],
    args: &ConsumeArgs,
    fields: &Fields,
    dead_letters: Option<&DeadLetters>,
    handled: &mut Handled,
) {
    if fields.key.format() == FieldFormat::Bytes && fields.value.format() == FieldFormat::Bytes {
        for record in batch {
            args.format.write_record(&mut handled.out, record);
        }
        return;
    }
    let (key, value) = (&fields.key, &fields.value);
    for (i, record) in batch.iter().enumerate() {
        let failure = match decode(record.clone(), key, value).await {
            Ok(d) => {
                args.format
                    .write_decoded(&mut handled.out, record, &d.key, &d.value);
                continue;
            }
            Err(f) => f,
        };
        if failure.error.is_retriable() {
            handled.stopped_at = Some((i, Failure::runtime(failure.to_string())));
            return;
        }
        if let Some(d) = dead_letters
            && *record.topic == *d.topic
        {
            // A pattern may match the dead-letter topic itself: its records would go round.
            let message = format!(
                "{}-{}@{} does not read and comes from the dead-letter topic itself: not \
                 written there again",
                record.topic, record.partition, record.offset
            );
            handled.stopped_at = Some((i, Failure::runtime(message)));
            return;
        }
        let topic = dead_letters.map(|d| d.topic.as_str());
        handled
            .reports
            .extend(failure_line(record, failure.field, &failure.error, topic));
        if let Some(d) = dead_letters {
            match d.send(record, &FailureInfo::from(&failure)).await {
                Ok(delivery) => handled.dead.push((i, delivery)),
                Err(f) => {
                    handled.stopped_at = Some((i, f));
                    return;
                }
            }
        }
    }
}

/// Checks the cluster and the topics, then subscribes (with a group) or assigns every
/// partition of the topics (without).
async fn start(consumer: &mut Consumer, args: &ConsumeArgs, in_group: bool) -> Result<(), Failure> {
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
        return consumer
            .subscribe(args.topics.iter().cloned())
            .map_err(Failure::from_consumer);
    }
    names.extend(matching_topics(&cluster, &patterns).await?);
    let partitions = cluster.partitions(&names).await?;
    let all = partitions
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.as_str(), *p)));
    consumer.assign(all).map_err(Failure::from_consumer)
}

/// The loop: receive a batch, write it, store its offsets; until `-c`, `-e`, a signal, a
/// closed stdout or an error.
async fn consume(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    fields: &Fields,
    in_group: bool,
    dead_letters: Option<&DeadLetters>,
    shutdown: &mut Shutdown,
    written: &mut u64,
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
            r = next_batch(consumer, args.exit_at_end) => r,
        };
        let batch = match received {
            None => match at_end(consumer).await {
                Ok(true) => return Stop::Done,
                Ok(false) => continue,
                Err(e) => return Stop::Failed(e),
            },
            Some(Ok(batch)) => batch,
            Some(Err(e)) if e.is_retriable() => {
                tracing::warn!(error = %e, "retrying");
                continue;
            }
            Some(Err(e)) => return Stop::Failed(Failure::from_consumer(e)),
        };
        let batch = &batch[..batch.len().min(take_max)];
        handled.out.clear();
        handled.reports.clear();
        handled.dead.clear();
        handle_batch(batch, args, fields, dead_letters, &mut handled).await;
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
        // Written and flushed, reported, dead-lettered: now the records count as consumed, up
        // to the first that was not.
        let mut done = batch.len();
        let mut stop = handled.stopped_at.take();
        for (i, delivery) in handled.dead.drain(..) {
            if i >= done {
                break;
            }
            if let Err(e) = delivery.await {
                let r = &batch[i];
                let topic = dead_letters.map_or("", |d| d.topic.as_str());
                stop = Some((
                    i,
                    Failure::runtime(format!(
                        "dead-lettering {}-{}@{} to {topic} failed: {e}; nothing from it on was committed",
                        r.topic, r.partition, r.offset
                    )),
                ));
                done = i;
            }
        }
        if let Some((i, _)) = &stop {
            done = done.min(*i);
        }
        if in_group
            && let Some(last) = batch[..done].last()
            && let Err(e) = consumer.store_offset(last)
        {
            return Stop::Failed(Failure::from_consumer(e));
        }
        *written += done as u64;
        if let Some((_, failure)) = stop {
            return Stop::Failed(failure);
        }
    }
}

/// The next batch; with `-e`, `None` when none came within [`END_CHECK_AFTER`]. The
/// consumer's receiving calls are cancel-safe, so giving up on one loses nothing.
pub(crate) async fn next_batch(
    consumer: &mut Consumer,
    exit_at_end: bool,
) -> Option<Result<Vec<kcon::Record>, kcon::Error>> {
    if !exit_at_end {
        return Some(consumer.recv_batch().await);
    }
    tokio::time::timeout(END_CHECK_AFTER, consumer.recv_batch())
        .await
        .ok()
}

/// Whether every owned partition is read to its end (none owned yet: no).
///
/// The end is the one `lag` reports: by kcon-admin's rule, the larger of what ListOffsets
/// says now and the high watermark of the last Fetch answer, since either alone can be behind
/// (a ListOffsets answer may predate records a Fetch has since brought, and Tansu answers
/// ListOffsets latest with the last batch's base offset + 1).
pub(crate) async fn at_end(consumer: &Consumer) -> Result<bool, Failure> {
    let owned = consumer.assignment();
    if owned.is_empty() {
        return Ok(false);
    }
    let listed = match consumer.lag().await {
        Ok(l) => l,
        Err(e) if e.is_retriable() => return Ok(false),
        Err(e) => return Err(Failure::from_consumer(e)),
    };
    for tp in &owned {
        let Some(position) = consumer.position(tp) else {
            return Ok(false);
        };
        match listed.get(tp).and_then(|l| l.end) {
            Some(end) if position >= end => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
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
