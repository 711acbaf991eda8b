//! `kcon group list | describe | lag | reset-offsets`: consumer groups as
//! `kafka-consumer-groups.sh` shows and changes them (`kcon group config` is
//! `group_config.rs`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::time::Duration;

use clap::{Args, Subcommand};
use kcon::{IsolationLevel, TopicPartition};
use kcon_admin::{
    self as admin, ConsumerGroupDescription, ConsumerGroupMember, DescribedGroup,
    DescribedGroupLag, Error as AdminError, GroupWatch, Judged, LagOptions, Pool, ResetTo,
    ResponseError, ShareGroupDescription, ShareGroupLag,
};
use serde::Serialize;

use crate::cluster::{Cluster, ClusterArgs};
use crate::failure::Failure;
use crate::record_format::Format;
use crate::shutdown::Shutdown;
use crate::table::{Table, cell, print_json_lines, print_table, print_text};

/// The group subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List the groups of the cluster, with their state and protocol type.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    List(ListArgs),
    /// Describe a group: state, members (client id, host, assignment), and per partition
    /// the committed offset (CURRENT-OFFSET), the end of the log (LOG-END-OFFSET), the lag in
    /// records (LAG; negative for a committed offset past the end of the log, PAST_END) and in
    /// time (LAG-SECONDS: the age of the record at the committed offset;
    /// 0 when caught up, - when unknown). A group of the consumer protocol (KIP-848) is
    /// described with ConsumerGroupDescribe where the broker offers it: also the group and
    /// assignment epochs, each member's epoch and its target assignment. A share group
    /// (KIP-932, Kafka 4.1+) is described with ShareGroupDescribe and
    /// DescribeShareGroupOffsets: its epochs, members and what each is assigned (a partition
    /// may be assigned to several), and per partition the share-partition start offset
    /// (START-OFFSET: every record before it is done with), the end of the log and the records
    /// not acknowledged yet (LAG, as the broker counts them; from a broker before Kafka 4.2,
    /// which gives none, <=N: the records from the start offset to the end, an upper bound).
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Describe(DescribeArgs),
    /// A group's lag per partition (committed offset, log end, lag in records and seconds)
    /// with a status by Burrow's rules over the last commits seen: OK, WARN (lag growing),
    /// STOP (commits stopped), STALL (the same offset committed), REWIND (an offset went back),
    /// ERR (committed below the log start), PAST_END (committed past the log end: the lag is
    /// negative), and the group's (its worst partition, STOP, STALL, REWIND and PAST_END
    /// counting as ERR). Once, or with --watch every --interval, redrawn in place;
    /// the status needs a few samples to say more than OK.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Lag(LagArgs),
    /// Reset the committed offsets of an inactive group (no members). Prints the partitions
    /// with their current and new offsets; commits them only with --execute. A group that
    /// does not exist yet gets the offsets (and so comes to exist), as with
    /// kafka-consumer-groups.sh.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    ResetOffsets(ResetArgs),
    /// Show a group's configs (KIP-848's group configs, Apache Kafka 4.0+), as
    /// kafka-configs.sh --entity-type groups does: each config's value and where it comes from
    /// (SOURCE: group when set on the group, default, or broker when the brokers set it); or
    /// change them with --set and --delete, all or none. A new share group starts at the end of
    /// each partition (share.auto.offset.reset=latest): `--set share.auto.offset.reset=earliest`
    /// before its first member joins makes it read what was written before. Other configs:
    /// share.record.lock.duration.ms, share.delivery.count.limit, share.isolation.level,
    /// consumer.session.timeout.ms, consumer.heartbeat.interval.ms, ... whatever the broker
    /// takes; it refuses a name it does not know, or a value out of range, saying why.
    #[command(after_help = crate::EXIT_STATUS_HELP)]
    Config(crate::group_config::ConfigArgs),
}

/// `kcon group list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Output format: a table, or one JSON object per group.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `kcon group describe`.
#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Output format: tables, or one JSON object.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `kcon group lag`.
#[derive(Debug, Args)]
pub(crate) struct LagArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Measure again every --interval, redrawing the table in place (with --format json: one
    /// object per measurement), until SIGINT (Ctrl-C) or SIGTERM: then exit 0, a refresh under
    /// way drawn whole first.
    #[arg(long = "watch")]
    watch: bool,
    /// Time between measurements with --watch: 500ms, 1s, 5m, 1h, 1m30s, or ISO-8601 such as
    /// PT5S.
    #[arg(long = "interval", value_name = "DURATION", value_parser = crate::duration::interval, default_value = "5s")]
    interval: Duration,
    /// How many commits of each partition the status is judged on (Burrow's default is 10).
    #[arg(long = "window", value_name = "N", default_value_t = 10)]
    window: usize,
    /// Output format: a table, or one JSON object per measurement.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `kcon group reset-offsets`.
#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// A topic whose offsets to reset: TOPIC (every partition) or TOPIC:0,1,2. Repeatable.
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]", required = true, value_parser = parse_topic)]
    topics: Vec<(String, Option<Vec<i32>>)>,
    #[command(flatten)]
    target: ResetTarget,
    /// Commit the new offsets; without it nothing changes (a dry run).
    #[arg(long = "execute")]
    execute: bool,
}

/// Where reset-offsets moves each partition: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// The start of the log.
    #[arg(long = "to-earliest")]
    to_earliest: bool,
    /// The end of the log.
    #[arg(long = "to-latest")]
    to_latest: bool,
    /// The first record at or after this time: YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM|-HH:MM]
    /// (UTC when no zone is given); the end of the log if no record is that recent.
    #[arg(long = "to-datetime", value_name = "ISO8601", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// The first record at most this long ago: ISO-8601 (PnDTnHnMnS, e.g. PT1H30M, as
    /// kafka-consumer-groups.sh takes it) or a short form (1h30m, 90s, 2d); the end of the log
    /// if no record is that recent.
    #[arg(long = "by-duration", value_name = "DURATION", value_parser = crate::duration::duration)]
    by_duration: Option<Duration>,
    /// This offset, kept within the log (start ≤ offset ≤ end).
    #[arg(long = "to-offset", value_name = "OFFSET")]
    to_offset: Option<i64>,
}

impl ResetTarget {
    /// The target chosen.
    fn to(&self) -> ResetTo {
        match (self.to_datetime, self.by_duration, self.to_offset) {
            _ if self.to_earliest => ResetTo::Earliest,
            _ if self.to_latest => ResetTo::Latest,
            (Some(ts), _, _) => ResetTo::Timestamp(ts),
            (None, Some(d), _) => ResetTo::ByDuration(d),
            (None, None, Some(o)) => ResetTo::Offset(o),
            // Invariant: clap requires exactly one target.
            (None, None, None) => ResetTo::Earliest,
        }
    }
}

/// Runs a group subcommand.
pub(crate) async fn run(command: GroupCommand) -> Result<(), Failure> {
    match command {
        GroupCommand::List(args) => list(args).await,
        GroupCommand::Describe(args) => describe(args).await,
        GroupCommand::Lag(args) => lag(args).await,
        GroupCommand::ResetOffsets(args) => reset_offsets(args).await,
        GroupCommand::Config(args) => crate::group_config::config(args).await,
    }
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(Some(&[])).await?;
    let groups = admin::list_groups(&cluster.pool)
        .await
        .map_err(|e| Failure::from_admin("listing groups", e))?;
    match args.format {
        Format::Json => {
            let lines: Vec<ListedJson<'_>> = groups
                .iter()
                .map(|g| ListedJson {
                    group: &g.group_id,
                    protocol_type: &g.protocol_type,
                    state: g.state.as_deref(),
                })
                .collect();
            print_json_lines(&lines)
        }
        Format::Text => {
            let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
            for g in &groups {
                t.row(vec![
                    g.group_id.clone(),
                    g.state.clone().unwrap_or_else(|| "-".to_owned()),
                    or_dash(&g.protocol_type),
                ]);
            }
            print_table(&t)
        }
    }
}

async fn describe(args: DescribeArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(Some(&[])).await?;
    let group = args.group.as_str();
    // Every partition with a committed offset, and those owned without one, each with its
    // owner: kcon-admin's description and lag, computed as for any other user of them.
    let described =
        admin::describe_group_lag(&cluster.pool, group, IsolationLevel::ReadUncommitted)
            .await
            .map_err(|e| match e.code() {
                Some(ResponseError::GroupIdNotFound) => {
                    Failure::runtime(format!("unknown group {group:?}"))
                }
                _ => Failure::from_admin(&format!("describing group {group:?}"), e),
            })?;
    if !described.exists() {
        return Err(Failure::runtime(format!(
            "unknown group {group:?} (no members, no committed offsets)"
        )));
    }
    if let (Some(sg), Some(lag)) = (&described.description.share, &described.share) {
        let d = &described.description;
        return match args.format {
            Format::Json => print_json_lines(&[share_json(d, sg, lag)]),
            Format::Text => {
                for (tp, p) in &lag.partitions {
                    if let Some(e) = &p.error {
                        eprintln!("kcon: {tp}: {e}");
                    }
                }
                print_text(&share_text(d, sg, lag))
            }
        };
    }
    match args.format {
        Format::Json => print_json_lines(&[describe_json(&described)]),
        Format::Text => {
            for (tp, p) in &described.lag.partitions {
                if let Some(e) = &p.error {
                    eprintln!("kcon: {tp}: {e}");
                }
                if let Some(note) = past_end_note(p) {
                    eprintln!("kcon: {tp}: {note}");
                }
            }
            print_text(&description_text(&described))
        }
    }
}

/// What a partition whose committed offset is past the end of the log (its lag negative) is
/// told with: the status `group lag` gives it, and what a consumer will do there.
fn past_end_note(p: &admin::PartitionLag) -> Option<String> {
    let (Some(committed), Some(end)) = (p.committed, p.log_end) else {
        return None;
    };
    p.past_end().then(|| {
        format!(
            "{}: the committed offset {committed} is past the end of the log ({end}); a \
             consumer of the group starting there resets by its auto.offset.reset",
            admin::status::Status::PastEnd
        )
    })
}

async fn lag(args: LagArgs) -> Result<(), Failure> {
    if args.watch {
        return watch(args).await;
    }
    let cluster = args.cluster.connect(Some(&[])).await?;
    let group = args.group.as_str();
    let lag = measure_lag(&cluster.pool, group).await?;
    if lag.partitions.values().all(|p| p.committed.is_none()) {
        return Err(Failure::runtime(format!(
            "group {group:?} has no committed offsets"
        )));
    }
    let judged = GroupWatch::new(args.window).observe(&lag);
    match args.format {
        Format::Json => print_json_lines(&[lag_json(&lag, &judged)]),
        Format::Text => print_text(&lag_text(&lag, &judged)),
    }
}

/// `group lag --watch`: measures and draws every --interval until SIGINT or SIGTERM. A signal
/// during a refresh lets it finish (the measurement drawn whole), a second one ends the run
/// at once; during the wait it ends the run at once. Exit 0 either way.
async fn watch(args: LagArgs) -> Result<(), Failure> {
    let mut shutdown = Shutdown::new()?;
    let cluster = tokio::select! {
        r = args.cluster.connect(Some(&[])) => r?,
        () = shutdown.wait() => return Ok(()),
    };
    let group = args.group.as_str();
    let mut watch = GroupWatch::new(args.window);
    loop {
        let mut stopping = false;
        let lag = {
            let mut measuring = pin!(measure_lag(&cluster.pool, group));
            loop {
                tokio::select! {
                    r = &mut measuring => break r?,
                    () = shutdown.wait() => {
                        if stopping {
                            eprintln!("kcon: interrupted again: the refresh under way is not drawn");
                            return Ok(());
                        }
                        stopping = true;
                    }
                }
            }
        };
        let judged = watch.observe(&lag);
        match args.format {
            Format::Json => print_json_lines(&[lag_json(&lag, &judged)])?,
            // Clear the screen and go home, then draw: the table refreshes in place.
            Format::Text => print_text(&format!("\x1b[2J\x1b[H{}", lag_text(&lag, &judged)))?,
        }
        if stopping {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            () = tokio::time::sleep(args.interval) => {}
        }
    }
}

async fn measure_lag(pool: &Pool, group: &str) -> Result<admin::GroupLag, Failure> {
    admin::group_lag(pool, group, &LagOptions::default())
        .await
        .map_err(|e| Failure::from_admin(&format!("measuring the lag of group {group:?}"), e))
}

fn lag_text(lag: &admin::GroupLag, judged: &Judged) -> String {
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-SECONDS",
        "STATUS",
    ]);
    for (tp, p) in &lag.partitions {
        t.row(vec![
            tp.topic.clone(),
            tp.partition.to_string(),
            cell(p.committed),
            cell(p.log_end),
            cell(p.lag.records),
            p.lag
                .time
                .map_or_else(|| "-".to_owned(), |t| format!("{:.1}", t.as_secs_f64())),
            judged
                .partitions
                .get(tp)
                .map_or_else(|| "-".to_owned(), |s| s.name().to_owned()),
        ]);
    }
    let seconds = lag
        .max_time()
        .map_or_else(|| "-".to_owned(), |t| format!("{:.1}", t.as_secs_f64()));
    format!(
        "Group {:?}: {}, lag {} records, {seconds} s at most\n\n{}",
        lag.group_id,
        judged.group,
        lag.total_records(),
        t.render()
    )
}

fn lag_json<'a>(lag: &'a admin::GroupLag, judged: &Judged) -> LagJson<'a> {
    LagJson {
        group: &lag.group_id,
        lag: lag.total_records(),
        measured_at_ms: lag.measured_at_ms,
        partitions: lag
            .partitions
            .iter()
            .map(|(tp, p)| LagPartitionJson {
                current_offset: p.committed,
                error: p.error.as_ref().map(ToString::to_string),
                lag: p.lag.records,
                lag_seconds: p.lag.time.map(|t| t.as_secs_f64()),
                log_end_offset: p.log_end,
                log_start_offset: p.log_start,
                partition: tp.partition,
                status: judged.partitions.get(tp).map(|s| s.name()),
                topic: &tp.topic,
            })
            .collect(),
        status: judged.group.name(),
    }
}

/// What only a consumer-protocol group has, as JSON: epochs, subscriptions, targets.
fn epochs_json(cg: &ConsumerGroupDescription) -> EpochsJson<'_> {
    EpochsJson {
        assignment_epoch: cg.assignment_epoch,
        group_epoch: cg.group_epoch,
        members: cg
            .members
            .iter()
            .map(|m| MemberEpochJson {
                member_epoch: m.member_epoch,
                member_id: &m.member_id,
                rack_id: m.rack_id.as_deref(),
                subscribed_regex: m.subscribed_regex.as_deref().filter(|r| !r.is_empty()),
                subscribed_topics: &m.subscribed_topics,
                target_assignment: partitions_json(&m.target_assignment),
            })
            .collect(),
    }
}

fn description_text(described: &DescribedGroupLag) -> String {
    let d = &described.description;
    let mut text = format!(
        "Group {:?}: state {}, {} member{}, protocol type {}, assignor {}\n",
        d.group_id,
        or_dash(&d.state),
        d.members.len(),
        if d.members.len() == 1 { "" } else { "s" },
        or_dash(&d.protocol_type),
        or_dash(&d.assignor),
    );
    if let Some(cg) = &d.consumer_protocol {
        text.push_str(&format!(
            "Consumer protocol (KIP-848): group epoch {}, assignment epoch {}\n",
            cg.group_epoch, cg.assignment_epoch
        ));
    }
    text.push('\n');
    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-SECONDS",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for (tp, p) in &described.lag.partitions {
        let owner = described.owner(tp);
        t.row(vec![
            d.group_id.clone(),
            tp.topic.clone(),
            tp.partition.to_string(),
            cell(p.committed),
            cell(p.log_end),
            cell(p.lag.records),
            p.lag
                .time
                .map_or_else(|| "-".to_owned(), |t| format!("{:.1}", t.as_secs_f64())),
            owner.map_or_else(|| "-".to_owned(), |m| m.member_id.clone()),
            owner.map_or_else(|| "-".to_owned(), |m| or_dash(&m.client_host)),
            owner.map_or_else(|| "-".to_owned(), |m| or_dash(&m.client_id)),
        ]);
    }
    text.push_str(&t.render());
    if d.members.is_empty() {
        text.push_str(&format!(
            "\nGroup {:?} has no active members.\n",
            d.group_id
        ));
    } else {
        let mut m = Table::new(&[
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
            "#PARTITIONS",
            "ASSIGNMENT",
        ]);
        for member in &d.members {
            m.row(vec![
                member.member_id.clone(),
                or_dash(&member.client_host),
                or_dash(&member.client_id),
                member
                    .assignment
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |a| a.len().to_string()),
                member
                    .assignment
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), compact),
            ]);
        }
        text.push('\n');
        text.push_str(&m.render());
    }
    if let Some(cg) = d
        .consumer_protocol
        .as_ref()
        .filter(|cg| !cg.members.is_empty())
    {
        let mut m = Table::new(&[
            "CONSUMER-ID",
            "MEMBER-EPOCH",
            "INSTANCE-ID",
            "SUBSCRIBED",
            "TARGET-ASSIGNMENT",
        ]);
        for member in &cg.members {
            m.row(vec![
                member.member_id.clone(),
                member.member_epoch.to_string(),
                member.instance_id.clone().unwrap_or_else(|| "-".to_owned()),
                or_dash(&subscribed(member)),
                compact(&member.target_assignment),
            ]);
        }
        text.push('\n');
        text.push_str(&m.render());
    }
    text
}

/// What a consumer-protocol member subscribed to: its topics and its regex, comma-separated;
/// an empty regex (Apache Kafka's for a member subscribed by name) is none.
fn subscribed(member: &ConsumerGroupMember) -> String {
    let regex = member.subscribed_regex.as_deref().filter(|r| !r.is_empty());
    let names = member.subscribed_topics.iter().map(String::as_str);
    names.chain(regex).collect::<Vec<&str>>().join(",")
}

/// A share group's description as text: the group, each partition's start offset and lag
/// with the members assigned it, and the members with what each is assigned.
fn share_text(d: &DescribedGroup, sg: &ShareGroupDescription, lag: &ShareGroupLag) -> String {
    let mut text = format!(
        "Group {:?}: state {}, {} member{}, protocol type {}, assignor {}\n\
         Share group (KIP-932): group epoch {}, assignment epoch {}, lag {}{} records\n\n",
        d.group_id,
        or_dash(&d.state),
        d.members.len(),
        if d.members.len() == 1 { "" } else { "s" },
        or_dash(&d.protocol_type),
        or_dash(&d.assignor),
        sg.group_epoch,
        sg.assignment_epoch,
        if lag.lag_is_upper_bound() {
            "at most "
        } else {
            ""
        },
        lag.total_records(),
    );
    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "START-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-IDS",
    ]);
    for (tp, p) in &lag.partitions {
        let owners: Vec<&str> = d.owners(tp).iter().map(|m| m.member_id.as_str()).collect();
        t.row(vec![
            d.group_id.clone(),
            tp.topic.clone(),
            tp.partition.to_string(),
            cell(p.start_offset),
            cell(p.log_end),
            share_lag_cell(p),
            or_dash(&owners.join(",")),
        ]);
    }
    text.push_str(&t.render());
    if lag.lag_is_upper_bound() {
        text.push_str(
            "\n<=: the broker gives no lag (DescribeShareGroupOffsets v1, Kafka 4.2 and later): \
             records from the start offset to the end of the log, some of them acknowledged \
             already maybe.\n",
        );
    }
    if sg.members.is_empty() {
        text.push_str(&format!(
            "\nGroup {:?} has no active members.\n",
            d.group_id
        ));
        return text;
    }
    let mut m = Table::new(&[
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
        "MEMBER-EPOCH",
        "RACK",
        "SUBSCRIBED",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for member in &sg.members {
        m.row(vec![
            member.member_id.clone(),
            or_dash(&member.client_host),
            or_dash(&member.client_id),
            member.member_epoch.to_string(),
            member.rack_id.clone().unwrap_or_else(|| "-".to_owned()),
            or_dash(&member.subscribed_topics.join(",")),
            member.assignment.len().to_string(),
            compact(&member.assignment),
        ]);
    }
    text.push('\n');
    text.push_str(&m.render());
    text
}

/// A share-partition's lag: the broker's count, or `<=N` for kcon's upper bound.
fn share_lag_cell(p: &admin::SharePartitionLag) -> String {
    match p.lag {
        Some(l) if p.lag_is_upper_bound => format!("<={l}"),
        other => cell(other),
    }
}

/// A share group's description as JSON.
fn share_json<'a>(
    d: &'a DescribedGroup,
    sg: &'a ShareGroupDescription,
    lag: &'a ShareGroupLag,
) -> ShareDescribedJson<'a> {
    ShareDescribedJson {
        group: &d.group_id,
        lag: lag.total_records(),
        lag_upper_bound: lag.lag_is_upper_bound(),
        members: sg
            .members
            .iter()
            .map(|m| ShareMemberJson {
                assignment: partitions_json(&m.assignment),
                client_id: &m.client_id,
                host: &m.client_host,
                member_epoch: m.member_epoch,
                member_id: &m.member_id,
                rack_id: m.rack_id.as_deref(),
                subscribed_topics: &m.subscribed_topics,
            })
            .collect(),
        partitions: lag
            .partitions
            .iter()
            .map(|(tp, p)| SharePartitionJson {
                error: p.error.as_ref().map(ToString::to_string),
                lag: p.lag,
                lag_upper_bound: p.lag.is_some() && p.lag_is_upper_bound,
                leader_epoch: p.leader_epoch,
                log_end_offset: p.log_end,
                log_start_offset: p.log_start,
                member_ids: d.owners(tp).iter().map(|m| m.member_id.as_str()).collect(),
                partition: tp.partition,
                start_offset: p.start_offset,
                topic: &tp.topic,
            })
            .collect(),
        protocol: &d.assignor,
        protocol_type: &d.protocol_type,
        share_group: ShareEpochsJson {
            assignment_epoch: sg.assignment_epoch,
            group_epoch: sg.group_epoch,
        },
        state: &d.state,
    }
}

fn describe_json(described: &DescribedGroupLag) -> DescribedJson<'_> {
    let d = &described.description;
    DescribedJson {
        consumer_protocol: d.consumer_protocol.as_ref().map(epochs_json),
        group: &d.group_id,
        members: d
            .members
            .iter()
            .map(|m| MemberJson {
                assignment: m.assignment.as_deref().map(partitions_json),
                client_id: &m.client_id,
                group_instance_id: m.instance_id.as_deref(),
                host: &m.client_host,
                member_id: &m.member_id,
            })
            .collect(),
        partitions: described
            .lag
            .partitions
            .iter()
            .map(|(tp, p)| DescribedPartitionJson {
                current_offset: p.committed,
                error: p.error.as_ref().map(ToString::to_string),
                lag: p.lag.records,
                lag_seconds: p.lag.time.map(|t| t.as_secs_f64()),
                log_end_offset: p.log_end,
                member_id: described.owner(tp).map(|m| m.member_id.as_str()),
                partition: tp.partition,
                past_end: p.past_end(),
                topic: &tp.topic,
            })
            .collect(),
        protocol: &d.assignor,
        protocol_type: &d.protocol_type,
        state: &d.state,
    }
}

fn partitions_json(tps: &[TopicPartition]) -> Vec<PartitionJson<'_>> {
    tps.iter()
        .map(|tp| PartitionJson {
            partition: tp.partition,
            topic: &tp.topic,
        })
        .collect()
}

// The JSON the group commands write. Members are in alphabetical order, as the output has
// always had them.

/// `group list`: one line per group.
#[derive(Serialize)]
struct ListedJson<'a> {
    group: &'a str,
    protocol_type: &'a str,
    state: Option<&'a str>,
}

/// `group describe`.
#[derive(Serialize)]
struct DescribedJson<'a> {
    consumer_protocol: Option<EpochsJson<'a>>,
    group: &'a str,
    members: Vec<MemberJson<'a>>,
    partitions: Vec<DescribedPartitionJson<'a>>,
    protocol: &'a str,
    protocol_type: &'a str,
    state: &'a str,
}

/// A member of a described group.
#[derive(Serialize)]
struct MemberJson<'a> {
    assignment: Option<Vec<PartitionJson<'a>>>,
    client_id: &'a str,
    group_instance_id: Option<&'a str>,
    host: &'a str,
    member_id: &'a str,
}

/// A partition of a described group.
#[derive(Serialize)]
struct DescribedPartitionJson<'a> {
    current_offset: Option<i64>,
    error: Option<String>,
    lag: Option<i64>,
    lag_seconds: Option<f64>,
    log_end_offset: Option<i64>,
    member_id: Option<&'a str>,
    partition: i32,
    /// The committed offset is past the end of the log (the lag is negative).
    past_end: bool,
    topic: &'a str,
}

/// A consumer-protocol group's epochs and targets.
#[derive(Serialize)]
struct EpochsJson<'a> {
    assignment_epoch: i32,
    group_epoch: i32,
    members: Vec<MemberEpochJson<'a>>,
}

#[derive(Serialize)]
struct MemberEpochJson<'a> {
    member_epoch: i32,
    member_id: &'a str,
    rack_id: Option<&'a str>,
    subscribed_regex: Option<&'a str>,
    subscribed_topics: &'a [String],
    target_assignment: Vec<PartitionJson<'a>>,
}

/// `group describe` of a share group (KIP-932).
#[derive(Serialize)]
struct ShareDescribedJson<'a> {
    group: &'a str,
    lag: i64,
    /// Some partition's lag is kcon's upper bound: the broker gave none.
    lag_upper_bound: bool,
    members: Vec<ShareMemberJson<'a>>,
    partitions: Vec<SharePartitionJson<'a>>,
    protocol: &'a str,
    protocol_type: &'a str,
    share_group: ShareEpochsJson,
    state: &'a str,
}

/// A member of a share group.
#[derive(Serialize)]
struct ShareMemberJson<'a> {
    assignment: Vec<PartitionJson<'a>>,
    client_id: &'a str,
    host: &'a str,
    member_epoch: i32,
    member_id: &'a str,
    rack_id: Option<&'a str>,
    subscribed_topics: &'a [String],
}

/// A share-partition of a share group: its start offset, its log and the members assigned it.
#[derive(Serialize)]
struct SharePartitionJson<'a> {
    error: Option<String>,
    lag: Option<i64>,
    /// The lag is kcon's count from the start offset to the log end, the most that can be
    /// left: the broker gave none (DescribeShareGroupOffsets v0).
    lag_upper_bound: bool,
    leader_epoch: Option<i32>,
    log_end_offset: Option<i64>,
    log_start_offset: Option<i64>,
    member_ids: Vec<&'a str>,
    partition: i32,
    start_offset: Option<i64>,
    topic: &'a str,
}

/// A share group's epochs.
#[derive(Serialize)]
struct ShareEpochsJson {
    assignment_epoch: i32,
    group_epoch: i32,
}

/// A partition in a member's assignment.
#[derive(Serialize)]
struct PartitionJson<'a> {
    partition: i32,
    topic: &'a str,
}

/// `group lag --format json`: one object per measurement.
#[derive(Serialize)]
struct LagJson<'a> {
    group: &'a str,
    lag: i64,
    measured_at_ms: i64,
    partitions: Vec<LagPartitionJson<'a>>,
    status: &'static str,
}

#[derive(Serialize)]
struct LagPartitionJson<'a> {
    current_offset: Option<i64>,
    error: Option<String>,
    lag: Option<i64>,
    lag_seconds: Option<f64>,
    log_end_offset: Option<i64>,
    log_start_offset: Option<i64>,
    partition: i32,
    status: Option<&'static str>,
    topic: &'a str,
}

/// `t:0,1,2 u:0`: partitions grouped by topic.
fn compact(partitions: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let parts: Vec<String> = by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let list: Vec<String> = ps.iter().map(ToString::to_string).collect();
            format!("{t}:{}", list.join(","))
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

async fn reset_offsets(args: ResetArgs) -> Result<(), Failure> {
    let cluster = args.cluster.connect(Some(&[])).await?;
    let pool = &cluster.pool;
    let group = args.group.as_str();
    let partitions = chosen_partitions(&cluster, &args.topics).await?;
    let plan = admin::plan_reset(pool, group, &partitions, args.target.to())
        .await
        .map_err(|e| match e {
            AdminError::GroupActive { members, state, .. } => Failure::runtime(format!(
                "group {group:?} has {members} active member{} (state {state}): offsets can \
                 only be reset while the group is inactive; stop its consumers first",
                if members == 1 { "" } else { "s" },
            )),
            e => Failure::from_admin(&format!("planning the reset of group {group:?}"), e),
        })?;

    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
    ]);
    for (tp, p) in &plan.partitions {
        t.row(vec![
            group.to_owned(),
            tp.topic.clone(),
            tp.partition.to_string(),
            cell(p.current),
            p.new.to_string(),
        ]);
    }
    print_table(&t)?;
    if !args.execute {
        eprintln!("kcon: dry run, nothing committed: add --execute to commit these offsets");
        return Ok(());
    }
    admin::execute_reset(pool, &plan).await.map_err(|e| {
        Failure::from_admin(&format!("committing the offsets of group {group:?}"), e)
    })?;
    let n = plan.partitions.len();
    eprintln!(
        "kcon: committed the new offsets of {n} partition{} for group {group:?}",
        if n == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The partitions `--topic` names, checked against the metadata.
async fn chosen_partitions(
    cluster: &Cluster,
    topics: &[(String, Option<Vec<i32>>)],
) -> Result<BTreeSet<TopicPartition>, Failure> {
    let names: BTreeSet<String> = topics.iter().map(|(t, _)| t.clone()).collect();
    let existing = cluster.partitions(&names).await?;
    let mut out = BTreeSet::new();
    for (topic, chosen) in topics {
        let all = &existing[topic];
        match chosen {
            None => out.extend(all.iter().map(|p| TopicPartition::new(topic.as_str(), *p))),
            Some(ps) => {
                for p in ps {
                    if !all.contains(p) {
                        return Err(Failure::runtime(format!(
                            "topic {topic:?} has no partition {p} (it has {})",
                            all.len()
                        )));
                    }
                    out.insert(TopicPartition::new(topic.as_str(), *p));
                }
            }
        }
    }
    Ok(out)
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// `TOPIC` or `TOPIC:0,1,2`.
fn parse_topic(s: &str) -> Result<(String, Option<Vec<i32>>), String> {
    let Some((topic, list)) = s.rsplit_once(':') else {
        return Ok((s.to_owned(), None));
    };
    let partitions = list
        .split(',')
        .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
        .collect::<Option<Vec<i32>>>()
        .ok_or_else(|| format!("expected TOPIC or TOPIC:0,1,2, got {s:?}"))?;
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:0,1,2, got {s:?}"));
    }
    Ok((topic.to_owned(), Some(partitions)))
}

/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` with an optional `Z` or `±HH:MM` / `±HHMM` zone (UTC without
/// one), as milliseconds since the epoch: RFC 3339 and ISO-8601's extended form, read by jiff.
pub(crate) fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "expected a time like 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.000+02:00, got {s:?}"
        )
    };
    let s = s.trim();
    // A date alone is no time.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return Err(bad());
    }
    let timestamp = match s.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        // Without a zone: UTC.
        Err(_) if !has_zone(&s[10..]) => {
            let civil: jiff::civil::DateTime = s.parse().map_err(|_| bad())?;
            jiff::tz::TimeZone::UTC
                .to_timestamp(civil)
                .map_err(|_| bad())?
        }
        Err(_) => return Err(bad()),
    };
    Ok(timestamp.as_millisecond())
}

/// Whether the time part of a datetime names a zone: `Z`, or a sign after the time (a `-` in
/// the time part cannot be a date's).
fn has_zone(time: &str) -> bool {
    time.contains(['Z', 'z', '+', '-', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer_group() -> ConsumerGroupDescription {
        let orders = |p: i32| TopicPartition::new("orders", p);
        let member =
            |id: &str, epoch: i32, owned: Vec<TopicPartition>, target| ConsumerGroupMember {
                member_id: id.to_owned(),
                instance_id: None,
                rack_id: None,
                member_epoch: epoch,
                client_id: "kcon".to_owned(),
                client_host: "/127.0.0.1".to_owned(),
                subscribed_topics: vec!["orders".to_owned()],
                subscribed_regex: None,
                assignment: owned,
                target_assignment: target,
            };
        ConsumerGroupDescription {
            group_id: "g".to_owned(),
            state: "Reconciling".to_owned(),
            group_epoch: 5,
            assignment_epoch: 5,
            assignor: "uniform".to_owned(),
            members: vec![
                member("m-1", 5, vec![orders(0), orders(1)], vec![orders(0)]),
                member("m-2", 4, vec![], vec![orders(1)]),
            ],
        }
    }

    #[test]
    fn a_consumer_protocol_group_shows_its_epochs_owned_and_target_partitions() {
        let cg = consumer_group();
        let d = admin::DescribedGroup::from(cg.clone());
        assert_eq!(d.protocol_type, "consumer");
        assert_eq!(d.assignor, "uniform");
        let assignments: Vec<Option<Vec<TopicPartition>>> =
            d.members.iter().map(|m| m.assignment.clone()).collect();
        assert_eq!(
            assignments,
            [
                Some(vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 1)
                ]),
                Some(vec![])
            ]
        );
        let described = DescribedGroupLag {
            description: d,
            lag: admin::GroupLag {
                group_id: "g".to_owned(),
                measured_at_ms: 0,
                partitions: BTreeMap::new(),
            },
            share: None,
        };
        let text = description_text(&described);
        assert!(
            text.contains("Consumer protocol (KIP-848): group epoch 5, assignment epoch 5"),
            "{text}"
        );
        assert!(text.contains("MEMBER-EPOCH"), "{text}");
        let m2 = text
            .lines()
            .rfind(|l| l.starts_with("m-2"))
            .expect("a row for m-2");
        assert!(m2.contains(" 4 ") && m2.ends_with("orders:1"), "{m2:?}");
        let json = serde_json::to_value(epochs_json(&cg)).unwrap();
        assert_eq!(json["group_epoch"], 5);
        assert_eq!(json["members"][1]["member_epoch"], 4);
        assert_eq!(
            json["members"][0]["target_assignment"],
            serde_json::json!([{"topic": "orders", "partition": 0}])
        );
    }

    /// A member subscribed by name has no regex, whatever the broker sent for it (Apache
    /// Kafka sends an empty one): no trailing comma; names and a regex are joined by one.
    #[test]
    fn subscriptions_show_names_and_a_regex_but_no_empty_regex() {
        let mut cg = consumer_group();
        cg.members[0].subscribed_topics = vec!["t2a".to_owned()];
        cg.members[0].subscribed_regex = Some(String::new());
        cg.members[1].subscribed_topics = vec!["t2a".to_owned(), "t2b".to_owned()];
        cg.members[1].subscribed_regex = Some("t3.*".to_owned());
        assert_eq!(subscribed(&cg.members[0]), "t2a");
        assert_eq!(subscribed(&cg.members[1]), "t2a,t2b,t3.*");
        let described = DescribedGroupLag {
            description: admin::DescribedGroup::from(cg.clone()),
            lag: admin::GroupLag {
                group_id: "g".to_owned(),
                measured_at_ms: 0,
                partitions: BTreeMap::new(),
            },
            share: None,
        };
        let text = description_text(&described);
        let m1 = text
            .lines()
            .rfind(|l| l.starts_with("m-1"))
            .expect("a row for m-1");
        let cols: Vec<&str> = m1.split_whitespace().collect();
        assert_eq!(cols, ["m-1", "5", "-", "t2a", "orders:0"], "{text}");
        let json = serde_json::to_value(epochs_json(&cg)).unwrap();
        assert_eq!(
            json["members"][0]["subscribed_regex"],
            serde_json::Value::Null
        );
        assert_eq!(json["members"][1]["subscribed_regex"], "t3.*");
    }

    fn share_group() -> (DescribedGroup, ShareGroupDescription, ShareGroupLag) {
        let orders = |p: i32| TopicPartition::new("orders", p);
        let member =
            |id: &str, epoch: i32, assignment: Vec<TopicPartition>| admin::ShareGroupMember {
                member_id: id.to_owned(),
                rack_id: (id == "m-1").then(|| "rack-a".to_owned()),
                member_epoch: epoch,
                client_id: "kcon-share".to_owned(),
                client_host: "/10.0.0.7".to_owned(),
                subscribed_topics: vec!["orders".to_owned()],
                assignment,
            };
        let sg = ShareGroupDescription {
            group_id: "s".to_owned(),
            state: "Stable".to_owned(),
            group_epoch: 6,
            assignment_epoch: 5,
            assignor: "simple".to_owned(),
            members: vec![
                member("m-1", 6, vec![orders(0), orders(1)]),
                member("m-2", 5, vec![orders(1), orders(2)]),
            ],
        };
        let partition =
            |start: Option<i64>, end: Option<i64>, lag: Option<i64>| admin::SharePartitionLag {
                start_offset: start,
                leader_epoch: start.map(|_| 4),
                log_start: Some(0),
                log_end: end,
                lag,
                lag_is_upper_bound: false,
                error: None,
            };
        let mut unknown = partition(None, None, None);
        // orders-1's lag kcon counted, the broker giving none.
        let mut counted = partition(Some(20), Some(50), Some(30));
        counted.lag_is_upper_bound = true;
        unknown.error = AdminError::broker(admin::ApiKey::DescribeShareGroupOffsets, 3);
        let lag = ShareGroupLag {
            group_id: "s".to_owned(),
            measured_at_ms: 0,
            partitions: BTreeMap::from([
                (orders(0), partition(Some(40), Some(100), Some(60))),
                (orders(1), counted),
                (orders(2), partition(None, Some(7), None)),
                (orders(3), unknown),
            ]),
        };
        (DescribedGroup::from(sg.clone()), sg, lag)
    }

    #[test]
    fn a_share_group_shows_start_offsets_lag_and_every_member_of_a_shared_partition() {
        let (d, sg, lag) = share_group();
        let text = share_text(&d, &sg, &lag);
        assert!(
            text.starts_with(
                "Group \"s\": state Stable, 2 members, protocol type share, assignor simple\n\
                 Share group (KIP-932): group epoch 6, assignment epoch 5, lag at most 90 \
                 records\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n<=: the broker gives no lag"), "{text}");
        let row = |p: &str| -> Vec<String> {
            text.lines()
                .find(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.get(1) == Some(&"orders") && cols.get(2) == Some(&p)
                })
                .unwrap_or_else(|| panic!("a row for orders-{p}: {text}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert!(text.contains("START-OFFSET"), "{text}");
        assert_eq!(row("0"), ["s", "orders", "0", "40", "100", "60", "m-1"]);
        assert_eq!(
            row("1"),
            ["s", "orders", "1", "20", "50", "<=30", "m-1,m-2"]
        );
        assert_eq!(row("2"), ["s", "orders", "2", "-", "7", "-", "m-2"]);
        assert_eq!(row("3"), ["s", "orders", "3", "-", "-", "-", "-"]);
        let m2 = text
            .lines()
            .rfind(|l| l.starts_with("m-2"))
            .expect("a row for m-2");
        let cols: Vec<&str> = m2.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "m-2",
                "/10.0.0.7",
                "kcon-share",
                "5",
                "-",
                "orders",
                "2",
                "orders:1,2"
            ]
        );

        let json = serde_json::to_value(share_json(&d, &sg, &lag)).unwrap();
        assert_eq!(json["protocol_type"], "share");
        assert_eq!(json["protocol"], "simple");
        assert_eq!(
            (&json["lag"], &json["lag_upper_bound"]),
            (&90.into(), &true.into())
        );
        assert_eq!(
            json["share_group"],
            serde_json::json!({"assignment_epoch": 5, "group_epoch": 6})
        );
        assert_eq!(json["members"][0]["rack_id"], "rack-a");
        assert_eq!(json["members"][1]["member_epoch"], 5);
        assert_eq!(
            json["members"][1]["assignment"],
            serde_json::json!([
                {"partition": 1, "topic": "orders"},
                {"partition": 2, "topic": "orders"}
            ])
        );
        let p = &json["partitions"];
        assert_eq!(
            p[1],
            serde_json::json!({
                "error": null, "lag": 30, "lag_upper_bound": true, "leader_epoch": 4,
                "log_end_offset": 50,
                "log_start_offset": 0, "member_ids": ["m-1", "m-2"], "partition": 1,
                "start_offset": 20, "topic": "orders"
            })
        );
        assert_eq!(p[0]["lag_upper_bound"], false, "the broker's count");
        assert_eq!(p[2]["start_offset"], serde_json::Value::Null);
        assert_eq!(p[2]["member_ids"], serde_json::json!(["m-2"]));
        assert_eq!(
            p[3]["error"],
            "DescribeShareGroupOffsets answered UNKNOWN_TOPIC_OR_PARTITION (3)"
        );
    }

    #[test]
    fn datetimes_parse_to_epoch_milliseconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(
            parse_datetime("2024-02-29T12:34:56.789Z"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T14:34:56.789+02:00"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T07:04:56.789-0530"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(parse_datetime("2024-02-29T12:34"), Ok(1_709_210_040_000));
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Ok(-1_000));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T24:00:00Z",
            "2024-1-01T00:00:00Z",
            "2024-01-01T00:00:00+2",
            "yesterday",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_with_and_without_partitions() {
        assert_eq!(parse_topic("orders"), Ok(("orders".to_owned(), None)));
        assert_eq!(
            parse_topic("orders:0,2"),
            Ok(("orders".to_owned(), Some(vec![0, 2])))
        );
        assert!(parse_topic("orders:x").is_err());
        assert!(parse_topic(":1").is_err());
    }

    #[test]
    fn assignments_are_shown_per_topic() {
        let tps = [
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 0),
        ];
        assert_eq!(compact(&tps), "a:2 b:0,1");
        assert_eq!(compact(&[]), "-");
    }
}
