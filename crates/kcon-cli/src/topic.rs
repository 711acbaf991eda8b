//! `kcon topic create | list`: enough topic administration to set up a demo or a test on a
//! broker that creates no topic on its own (Tansu).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kcon_codec::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use kcon_codec::kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_pool::{BrokerTarget, TopicScope};
use serde_json::json;

use crate::cluster::ClusterArgs;
use crate::failure::{Failure, error_name};
use crate::record_format::Format;
use crate::table::{Table, print_json_lines, print_table};

/// TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

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
        configs.push(
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_owned()))
                .with_value(Some(StrBytes::from_string(v.to_owned()))),
        );
    }
    let cluster = args.cluster.connect(Some(&[])).await?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                .with_num_partitions(args.partitions)
                .with_replication_factor(args.replication_factor)
                .with_configs(configs),
        ]);
    // Topics are created by the controller; a broker that names none takes it itself.
    let target = cluster
        .pool
        .metadata()
        .controller_id
        .filter(|id| *id >= 0)
        .map_or(BrokerTarget::Any, BrokerTarget::Broker);
    let answer = cluster
        .pool
        .send(target, &request)
        .await
        .map_err(Failure::from_pool)?;
    let result = answer
        .topics
        .iter()
        .find(|t| t.name.as_str() == args.topic)
        .ok_or_else(|| Failure::runtime("CreateTopics answered without the topic"))?;
    match result.error_code {
        0 => {}
        TOPIC_ALREADY_EXISTS if args.if_not_exists => {
            eprintln!("kcon: topic {:?} exists already", args.topic);
            return Ok(());
        }
        code => {
            let detail = result
                .error_message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(Failure::runtime(format!(
                "creating topic {:?}: the broker answered {}{detail}",
                args.topic,
                error_name(code)
            )));
        }
    }
    // Producing at once would meet LEADER_NOT_AVAILABLE while the leaders are elected.
    let deadline = Instant::now() + LEADERS_WITHIN;
    loop {
        let m = cluster
            .metadata(TopicScope::topics([args.topic.clone()]))
            .await?;
        let ready = m.topic(&args.topic).is_some_and(|t| {
            t.error_code == 0
                && t.partitions.len() == args.partitions as usize
                && t.partitions.values().all(|p| p.leader.is_some())
        });
        if ready {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::runtime(format!(
                "topic {:?} was created, but its partitions have no leaders after {} s",
                args.topic,
                LEADERS_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "kcon: created topic {:?} with {} partition{}",
        args.topic,
        args.partitions,
        if args.partitions == 1 { "" } else { "s" }
    );
    Ok(())
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(Some(&[])).await?;
    let m = cluster.metadata(TopicScope::All).await?;
    match args.format {
        Format::Json => {
            let lines: Vec<serde_json::Value> = m
                .topics
                .values()
                .map(|t| {
                    json!({
                        "topic": t.name,
                        "partitions": t.partitions.len(),
                        "internal": t.is_internal,
                        "id": t.id.map(|id| id.to_string()),
                    })
                })
                .collect();
            print_json_lines(&lines)
        }
        Format::Text => {
            let mut t = Table::new(&["TOPIC", "PARTITIONS"]);
            for topic in m.topics.values() {
                t.row(vec![topic.name.clone(), topic.partitions.len().to_string()]);
            }
            print_table(&t)
        }
    }
}
