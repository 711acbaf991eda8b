//! `kcon`: consume, produce and administer consumer groups from the command line, with the
//! kcon crates underneath.
//!
//! ```text
//! kcon consume -b HOST:PORT [-g GROUP] [-X prop=value]... [-c COUNT] [-e] [--format json|text]
//!              [--key-format F] [--value-format bytes|string|json] [--dlq-topic TOPIC] TOPIC...
//! kcon produce -b HOST:PORT TOPIC [-p PARTITION] [-K DELIM] [--format lines|json] [-z CODEC] [-H key=value]...
//! kcon group list|describe|lag|reset-offsets ...
//! kcon group config -b HOST:PORT GROUP [--set KEY=VALUE]... [--delete KEY]...
//! kcon topic create|list ...
//! kcon dlq replay -b HOST:PORT --from DLQ_TOPIC [--to TOPIC] [--where NAME=VALUE]... [-g GROUP] [--dry-run]
//! kcon share consume -b HOST:PORT -g GROUP [-X prop=value]... [-c COUNT] [--format json|text]
//!              [--ack accept|release|reject] TOPIC...
//! ```
//!
//! Exit status: 0 success; 1 runtime error (a broker unreachable, an unknown topic or group,
//! an authorization failure, bad input data); 2 usage or configuration error (bad arguments,
//! an unknown or bad `-X` property). Log lines go to stderr, filtered by `KCON_LOG`
//! (`warn` by default; e.g. `KCON_LOG=kcon=debug,info`).

mod bytes_json;
mod cluster;
mod consume;
mod decode;
mod dlq;
mod duration;
mod exporter;
mod failure;
mod group;
mod group_config;
mod produce;
mod record_format;
mod share;
mod shutdown;
mod table;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::failure::Failure;

pub(crate) const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  runtime error: a broker unreachable, an unknown topic or group, an authorization
     failure, bad input data
  2  usage or configuration error: bad arguments, an unknown or bad -X property

Log lines go to stderr, filtered by KCON_LOG (default warn; e.g. KCON_LOG=kcon=debug,info).";

/// Consume, produce and manage consumer groups on a Kafka cluster (pure Rust, no librdkafka).
#[derive(Debug, Parser)]
#[command(name = "kcon", version, after_help = EXIT_STATUS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(after_help = EXIT_STATUS_HELP)]
    Consume(consume::ConsumeArgs),
    #[command(after_help = EXIT_STATUS_HELP)]
    Produce(produce::ProduceArgs),
    /// Groups: list, describe, lag, reset offsets, configs.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Topics: create, list.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Dead-letter topics: replay.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Share groups (KIP-932, queues): consume.
    #[command(subcommand)]
    Share(share::ShareCommand),
    /// Serve every matching group's lag and Burrow-style status as Prometheus metrics at
    /// /metrics: per partition the committed offset, log end, lag in records and seconds and
    /// status; per group the status, total lag and largest lag in seconds; and the exporter's
    /// own polls, errors and poll duration. A failed measurement (a broker down) leaves the
    /// last one published and is counted. Runs until SIGINT (Ctrl-C) or SIGTERM: then stops
    /// accepting connections, answers the scrapes under way and exits 0.
    #[command(after_help = EXIT_STATUS_HELP)]
    Exporter(exporter::ExporterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&Failure::runtime(format!("cannot start the runtime: {e}"))),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Consume(args) => consume::run(args).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Group(command) => group::run(command).await,
            Command::Topic(command) => topic::run(command).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Share(command) => share::run(command).await,
            Command::Exporter(args) => exporter::run(args).await,
        }
    });
    // Tasks still running (a pool's housekeeping) are not waited for.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("kcon: error: {failure}");
    ExitCode::from(failure.exit_code())
}

/// Log lines on stderr: `KCON_LOG` in `tracing_subscriber`'s `Targets` syntax, `warn` when
/// unset; a value that does not parse is said so once and `warn` used.
fn init_logging() {
    let spec = std::env::var("KCON_LOG").unwrap_or_default();
    let filter = if spec.trim().is_empty() {
        // The Processor's own warnings of records skipped or dead-lettered repeat what consume
        // reports on stderr as JSON lines.
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("kcon::policy", LevelFilter::ERROR)
    } else {
        spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("kcon: KCON_LOG={spec:?} is not a log filter ({e}); using warn");
            Targets::new().with_default(LevelFilter::WARN)
        })
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    // A subscriber set twice is the only failure, and this is the only place that sets one.
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}
