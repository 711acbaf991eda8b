//! `kcon topic create | list`: enough topic administration to set up a demo or a test on a
//! broker that creates no topic on its own (`auto.create.topics.enable=false`).

use std::time::Duration;

use clap::{Args, Subcommand};
use kcon_admin::{self as admin, Created, NewTopic};
use serde::Serialize;

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::record_format::Format;
use crate::table::{Table, print_json_lines, print_table};

/// How long `create` waits for the new topic's partitions to have leaders.
const LEADERS_WITHIN: Duration = Duration::from_secs(15);

/// The topic subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic (CreateTopics), and wait until each partition has a leader.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Create(CreateArgs),
    /// List the topics with their partition counts.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    List(ListArgs),
}

/// `kcon topic create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    #[arg(value_name = "TOPIC")]
    topic: String,
    /// Partitions.
    #[arg(short = 'P', long = "partitions", default_value_t = 1)]
    partitions: i32,
    /// Replication factor.
    #[arg(short = 'r', long = "replication-factor", default_value_t = 1)]
    replication_factor: i16,
    /// A topic configuration entry, KEY=VALUE (e.g. retention.ms=3600000). Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// Succeed when the topic exists already.
    #[arg(long = "if-not-exists")]
    if_not_exists: bool,
}

/// `kcon topic list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format: a table, or one JSON object per topic.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Runs a topic subcommand.
pub(crate) async fn run(command: TopicCommand) -> Result<(), Failure> {
    match command {
        TopicCommand::Create(args) => create(args).await,
        TopicCommand::List(args) => list(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<(), Failure> {
    if args.partitions < 1 || args.replication_factor < 1 {
        return Err(Failure::usage(
            "a topic needs at least one partition and one replica",
        ));
    }
    let mut configs = Vec::new();
    for c in &args.configs {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--config expects KEY=VALUE, got {c:?}")))?;
        configs.push((k.to_owned(), v.to_owned()));
    }
    let cluster = args.cluster.connect(Some(&[])).await?;
    let topic = NewTopic {
        name: args.topic.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        configs,
    };
    let created = admin::create_topic(&cluster.pool, &topic, args.if_not_exists, LEADERS_WITHIN)
        .await
        .map_err(|e| Failure::from_admin(&format!("creating topic {:?}", args.topic), e))?;
    match created {
        Created::AlreadyExists => eprintln!("kcon: topic {:?} exists already", args.topic),
        Created::Created => eprintln!(
            "kcon: created topic {:?} with {} partition{}",
            args.topic,
            args.partitions,
            if args.partitions == 1 { "" } else { "s" }
        ),
    }
    Ok(())
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(Some(&[])).await?;
    let topics = admin::list_topics(&cluster.pool)
        .await
        .map_err(|e| Failure::from_admin("listing topics", e))?;
    match args.format {
        Format::Json => {
            let lines: Vec<TopicJson<'_>> = topics
                .iter()
                .map(|t| TopicJson {
                    id: t.id.map(|id| id.to_string()),
                    internal: t.internal,
                    partitions: t.partitions,
                    topic: &t.name,
                })
                .collect();
            print_json_lines(&lines)
        }
        Format::Text => {
            let mut t = Table::new(&["TOPIC", "PARTITIONS"]);
            for topic in &topics {
                t.row(vec![topic.name.clone(), topic.partitions.to_string()]);
            }
            print_table(&t)
        }
    }
}

/// `topic list --format json`: one line per topic (members in alphabetical order, as the output
/// has always had them).
#[derive(Serialize)]
struct TopicJson<'a> {
    id: Option<String>,
    internal: bool,
    partitions: usize,
    topic: &'a str,
}
