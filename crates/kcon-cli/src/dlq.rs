//! `kcon dlq replay`: dead-lettered records back to where they came from (or another topic),
//! key, value and original headers unchanged, the `kcon.dlq.*` headers dropped.
//!
//! The dead-letter topic is read from its start to its end (by assignment; with `-g`, in that
//! group, committing what was replayed, so a replay can resume). A record's copy goes to
//! `--to`, or to its `kcon.dlq.source.topic` and `kcon.dlq.source.partition`; its offset is
//! stored only once the copy is acknowledged (acks=all, idempotent). The copy's timestamp is
//! the time of the replay: the original one is in the dead letter's `kcon.dlq.source.timestamp`,
//! and an old timestamp could put the copy past the topic's retention at once.

use std::collections::BTreeSet;
use std::io::{self, Write};

use clap::{Args, Subcommand};
use kcon::policy::{DeadLetterError, headers, replay_record};
use kcon::{Consumer, Record, TopicPartition};
use kcon_produce::{Delivery, Producer, ProducerRecord};
use serde::Serialize;

use crate::bytes_json::write_line;
use crate::cluster::ClusterArgs;
use crate::consume::{Ends, next_batch};
use crate::failure::Failure;

/// Dead-letter topics.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Produce dead-lettered records again: to their source topic and partition (from their
    /// kcon.dlq.source.* headers) or to --to, with their key, value and original headers.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Replay(ReplayArgs),
}

/// `kcon dlq replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// The dead-letter topic to read.
    #[arg(long = "from", value_name = "TOPIC")]
    from: String,

    /// Where to produce the records (partitioned by key); by default each goes back to its
    /// source topic and partition.
    #[arg(long = "to", value_name = "TOPIC")]
    to: Option<String>,

    /// Only records with this header value, e.g. --where topic=orders --where
    /// error.class=json. NAME is a header name, or one of topic, partition, offset, group,
    /// stage, error.class, attempts for the kcon.dlq.* header. Repeatable: all must match.
    #[arg(long = "where", value_name = "NAME=VALUE", value_parser = parse_filter)]
    filters: Vec<(String, String)>,

    /// Read in this consumer group and commit what was replayed (a replay stopped half-way
    /// resumes there); without it the whole topic is read and nothing committed.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,

    /// Write what would be replayed to stdout (one JSON object per record) and produce
    /// nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Reads `NAME=VALUE`, a short name turned into its `kcon.dlq.*` header.
fn parse_filter(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let header = match name.trim() {
        "" => return Err(format!("{text:?} names no header")),
        "topic" => headers::TOPIC,
        "partition" => headers::PARTITION,
        "offset" => headers::OFFSET,
        "group" => headers::GROUP,
        "stage" => headers::STAGE,
        "error.class" => headers::ERROR_CLASS,
        "attempts" => headers::ATTEMPTS,
        other => other,
    };
    Ok((header.to_owned(), value.to_owned()))
}

/// Runs `kcon dlq ...`.
pub(crate) async fn run(command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::Replay(args) => replay(args).await,
    }
}

async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(None).await?;
    let partitions = cluster
        .partitions(&BTreeSet::from([args.from.clone()]))
        .await?;
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", &args.cluster.brokers)
        .set("client.id", "kcon")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false");
    for (name, value) in &args.cluster.properties {
        builder = builder.set(name, value.as_str());
    }
    if let Some(g) = &args.group {
        builder = builder
            .set("group.id", g.as_str())
            .set("enable.auto.offset.store", "false");
    }
    let mut consumer = builder.build().map_err(Failure::from_consumer)?;
    match &args.group {
        Some(_) => consumer.subscribe([args.from.as_str()]),
        None => consumer.assign(
            partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| TopicPartition::new(t.as_str(), *p))),
        ),
    }
    .map_err(Failure::from_consumer)?;
    let producer = Producer::builder()
        .pool(cluster.pool.clone())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .build()
        .map_err(|e| Failure::runtime(format!("the producer: {e}")))?;

    let mut counts = Counts::default();
    let outcome = replay_all(&mut consumer, &producer, &args, &mut counts).await;
    // Each replayed record was awaited in the replay: none is left for the close to report.
    let _ = producer.close().await;
    let closed = consumer.close().await.map_err(Failure::from_consumer);
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    eprintln!(
        "kcon: {verb} {} of {} dead letters ({} left out by --where)",
        counts.replayed, counts.read, counts.filtered
    );
    outcome.and(closed)
}

#[derive(Debug, Default)]
struct Counts {
    read: u64,
    replayed: u64,
    filtered: u64,
}

/// Reads the dead-letter topic to its end, replaying each matching record; stores a batch's
/// offset once its copies are acknowledged.
async fn replay_all(
    consumer: &mut Consumer,
    producer: &Producer,
    args: &ReplayArgs,
    counts: &mut Counts,
) -> Result<(), Failure> {
    let mut stdout = Vec::new();
    let mut ends = Ends::default();
    loop {
        let batch = match next_batch(consumer, true).await {
            None if ends.all(consumer) => return Ok(()),
            None => continue,
            Some(Err(e)) if e.is_retriable() => continue,
            Some(Err(e)) => return Err(Failure::from_consumer(e)),
            Some(Ok(batch)) => batch,
        };
        let mut deliveries: Vec<(usize, Delivery)> = Vec::new();
        stdout.clear();
        for (i, record) in batch.iter().enumerate() {
            counts.read += 1;
            if !matches(record, &args.filters) {
                counts.filtered += 1;
                continue;
            }
            let copy = replayed(record, args.to.as_deref())?;
            counts.replayed += 1;
            if args.dry_run {
                dry_run_line(&mut stdout, record, &copy);
                continue;
            }
            let delivery = producer
                .send(copy)
                .await
                .map_err(|e| Failure::runtime(format!("replaying {}: {e}", at(record))))?;
            deliveries.push((i, delivery));
        }
        let _ = io::stdout().lock().write_all(&stdout);
        for (i, delivery) in deliveries {
            if let Err(e) = delivery.await {
                // What was acknowledged before it counts; nothing from it on is stored.
                if let Some(before) = i.checked_sub(1) {
                    store(consumer, args, &batch[before])?;
                }
                return Err(Failure::runtime(format!(
                    "replaying {} failed: {e}; nothing from it on was committed",
                    at(&batch[i])
                )));
            }
        }
        if let Some(last) = batch.last() {
            store(consumer, args, last)?;
            if ends.after_batch(consumer, &TopicPartition::new(&*last.topic, last.partition)) {
                return Ok(());
            }
        }
    }
}

fn store(consumer: &mut Consumer, args: &ReplayArgs, record: &Record) -> Result<(), Failure> {
    if args.group.is_none() || args.dry_run {
        return Ok(());
    }
    consumer
        .store_offset(record)
        .map_err(Failure::from_consumer)
}

/// Whether every filter's header has its value.
fn matches(record: &Record, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(name, value)| {
        record
            .header(name)
            .flatten()
            .is_some_and(|v| v.as_ref() == value.as_bytes())
    })
}

/// The copy of dead letter `record` to produce: to `to` (partitioned by key), or back to its
/// source topic and partition (kcon's inverse of its dead-letter record).
fn replayed(record: &Record, to: Option<&str>) -> Result<ProducerRecord, Failure> {
    replay_record(record, to).map_err(|e| {
        let at = at(record);
        Failure::runtime(match e {
            DeadLetterError::MissingHeader { header } => {
                format!("{at} has no {header} header: not a kcon dead letter? Give --to")
            }
            DeadLetterError::NotUtf8 { header } => {
                format!("{at}: the {header} header is not UTF-8")
            }
            DeadLetterError::BadNumber { header, value } if header == headers::PARTITION => {
                format!("{at} has a {header} header that is not a partition: {value:?}")
            }
            e => format!("{at}: {e}"),
        })
    })
}

fn at(record: &Record) -> String {
    format!("{}-{}@{}", record.topic, record.partition, record.offset)
}

/// `{"from":{"topic":..,"partition":..,"offset":..},"to":{"topic":..,"partition":..}}`.
fn dry_run_line(out: &mut Vec<u8>, record: &Record, copy: &ProducerRecord) {
    write_line(
        out,
        &DryRun {
            from: Letter {
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
            },
            to: Destination {
                topic: &copy.topic,
                partition: copy.partition,
            },
        },
    );
}

/// What `--dry-run` writes for a dead letter: where it is, where its copy would go.
#[derive(Serialize)]
struct DryRun<'a> {
    from: Letter<'a>,
    to: Destination<'a>,
}

/// The dead letter's place.
#[derive(Serialize)]
struct Letter<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// Where its copy goes.
#[derive(Serialize)]
struct Destination<'a> {
    topic: &'a str,
    /// `null`: partitioned by key.
    partition: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> Record {
        Record::new("orders.dlq", 0, 9, Some("k".into()), Some("v".into())).with_headers(vec![
            ("trace".into(), Some("t1".into())),
            (headers::TOPIC.into(), Some("orders".into())),
            (headers::PARTITION.into(), Some("2".into())),
            (headers::ERROR_CLASS.into(), Some("json".into())),
        ])
    }

    #[test]
    fn a_letter_that_is_not_one_says_to_give_to() {
        let not_a_letter = Record::new("x", 0, 1, None, None);
        let e = replayed(&not_a_letter, None).unwrap_err();
        assert!(e.to_string().contains("kcon.dlq.source.topic"), "{e}");
        assert!(e.to_string().contains("Give --to"), "{e}");
        assert!(replayed(&not_a_letter, Some("retry")).is_ok());
    }

    #[test]
    fn filters_take_short_names_and_all_must_match() {
        let f = |s: &str| parse_filter(s).unwrap();
        assert_eq!(f("topic=orders").0, headers::TOPIC);
        assert_eq!(f("error.class=json").0, headers::ERROR_CLASS);
        assert_eq!(f("trace=t1"), ("trace".into(), "t1".into()));
        assert!(parse_filter("topic").is_err());
        assert!(matches(&letter(), &[f("topic=orders"), f("trace=t1")]));
        assert!(!matches(
            &letter(),
            &[f("topic=orders"), f("error.class=utf8")]
        ));
        assert!(!matches(&letter(), &[f("stage=handler")]));
    }
}
