//! `kcon share consume`: a share group's member (KIP-932) writing the records it is handed to
//! stdout.
//!
//! Without `--ack` the member acknowledges implicitly: a batch is accepted when the next is
//! asked for, after it was written and flushed. With `--ack accept|release|reject` every
//! record written is acknowledged so, explicitly, once stdout has it (for scripting: `release`
//! hands the records out again with their delivery count raised, `reject` archives them).
//! Records of a batch past `-c` are released, not written; so are those acquired and not yet
//! written when a signal or a closed pipe ends the run. Ctrl-C or SIGTERM: the
//! acknowledgements go, the member leaves the group, exit 0.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use kcon::Record;
use kcon::share::{AcknowledgeType, ShareConsumer};

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::record_format::Format;
use crate::shutdown::Shutdown;

/// Share groups (KIP-932): consume.
#[derive(Debug, Subcommand)]
pub(crate) enum ShareCommand {
    /// Join a share group and write the records it hands this member to stdout.
    ///
    /// Text lines as kcon consume writes them (TOPIC/PARTITION@OFFSET key=KEY VALUE); JSON
    /// objects carry each record's delivery_count too. Where a new share group starts reading
    /// is the group's share.auto.offset.reset: latest (the end of each partition) unless set,
    /// with `kcon group config GROUP --set share.auto.offset.reset=earliest`.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Consume(ShareConsumeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ShareConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// The share group to join (the same as -X group.id=GROUP).
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    group: Option<String>,

    /// Exit after writing COUNT records.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    count: Option<u64>,

    /// Output format: text or json (with delivery_count).
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Acknowledge every record written as accept, release or reject (explicit
    /// acknowledgement); without it, batches are accepted implicitly.
    #[arg(long = "ack", value_name = "accept|release|reject", value_parser = parse_ack)]
    ack: Option<AcknowledgeType>,

    /// Topics to read.
    #[arg(value_name = "TOPIC", required = true)]
    topics: Vec<String>,
}

fn parse_ack(s: &str) -> Result<AcknowledgeType, String> {
    AcknowledgeType::from_name(s).ok_or_else(|| format!("{s:?} is not accept, release or reject"))
}

/// Runs a `kcon share` command.
pub(crate) async fn run(command: ShareCommand) -> Result<(), Failure> {
    match command {
        ShareCommand::Consume(args) => consume(args).await,
    }
}

async fn consume(args: ShareConsumeArgs) -> Result<(), Failure> {
    let group = args
        .group
        .clone()
        .or_else(|| args.cluster.property("group.id").map(str::to_owned))
        .filter(|g| !g.is_empty())
        .ok_or_else(|| Failure::usage("a share group is needed: -g GROUP"))?;
    let mut builder = ShareConsumer::builder()
        .set("bootstrap.servers", &args.cluster.brokers)
        .set("client.id", "kcon")
        .set("allow.auto.create.topics", "false");
    for (name, value) in &args.cluster.properties {
        builder = builder.set(name, value.as_str());
    }
    builder = builder.set("group.id", group.as_str()).set(
        "share.acknowledgement.mode",
        if args.ack.is_some() {
            "explicit"
        } else {
            "implicit"
        },
    );
    let mut shutdown = Shutdown::new()?;
    let mut consumer = builder.build().map_err(Failure::from_consumer)?;
    let cluster = args.cluster.connect(None).await?;
    // A subscription to a topic that does not exist would wait for it silently.
    cluster
        .partitions(&args.topics.iter().cloned().collect())
        .await?;
    consumer
        .subscribe(args.topics.iter().cloned())
        .map_err(Failure::from_consumer)?;
    let mut written = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let stop = loop {
        if args.count.is_some_and(|c| written >= c) {
            break Ok(());
        }
        let batch = tokio::select! {
            b = consumer.recv_batch() => b.map_err(Failure::from_consumer),
            () = shutdown.wait() => break Ok(()),
        };
        let batch = match batch {
            Ok(b) => b,
            Err(f) => break Err(f),
        };
        let room = args.count.map_or(usize::MAX, |c| (c - written) as usize);
        let (take, rest) = batch.split_at(room.min(batch.len()));
        out.clear();
        for r in take {
            args.format.write_record(&mut out, r);
        }
        let mut stdout = io::stdout().lock();
        if stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Whoever read stdout went away: nothing of this batch counts as written.
            release(&mut consumer, &batch)?;
            break Ok(());
        }
        written += take.len() as u64;
        if let Some(kind) = args.ack {
            for r in take {
                consumer
                    .acknowledge(r, kind)
                    .map_err(Failure::from_consumer)?;
            }
        }
        release(&mut consumer, rest)?;
    };
    let closed = consumer.close().await.map_err(Failure::from_consumer);
    if args.format == Format::Text {
        eprintln!("kcon: consumed {written} records");
    }
    stop.and(closed)
}

/// Hands `records` back to the group (they were not written).
fn release(consumer: &mut ShareConsumer, records: &[Record]) -> Result<(), Failure> {
    for r in records {
        consumer
            .acknowledge(r, AcknowledgeType::Release)
            .map_err(Failure::from_consumer)?;
    }
    Ok(())
}
