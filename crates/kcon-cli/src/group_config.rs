//! `kcon group config GROUP [--set KEY=VALUE]... [--delete KEY]...`: a group's configs, as
//! `kafka-configs.sh --entity-type groups` shows and changes them (KIP-848's GROUP config
//! resource, Apache Kafka 4.0 and later).

use std::collections::BTreeSet;

use clap::Args;
use kcon::property::suggest;
use kcon_admin::{
    self as admin, ConfigSource, Error as AdminError, GroupConfigChange, GroupConfigEntry,
    ResponseError,
};
use serde::Serialize;

use crate::cluster::ClusterArgs;
use crate::failure::Failure;
use crate::record_format::Format;
use crate::table::{Table, print_json_lines, print_table};

/// `kcon group config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(value_name = "GROUP")]
    group: String,
    /// Set a config on the group, KEY=VALUE (share.auto.offset.reset=earliest: a share group
    /// that has not started yet reads its partitions from their start). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Delete the group's own value of a config: its default applies again. Repeatable.
    #[arg(long = "delete", value_name = "KEY")]
    delete: Vec<String>,
    /// Output format of the configs shown without --set or --delete: a table, or one JSON
    /// object per config.
    #[arg(long = "format", value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `KEY=VALUE`, the key not empty.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Shows the group's configs, or changes them.
pub(crate) async fn config(args: ConfigArgs) -> Result<(), Failure> {
    let changes = changes(&args)?;
    let cluster = args.cluster.connect(Some(&[])).await?;
    let group = args.group.as_str();
    if changes.is_empty() {
        let configs = admin::describe_group_configs(&cluster.pool, group)
            .await
            .map_err(|e| {
                Failure::from_admin(&format!("reading the configs of group {group:?}"), e)
            })?;
        return match args.format {
            Format::Json => print_json_lines(&configs.iter().map(config_json).collect::<Vec<_>>()),
            Format::Text => print_table(&configs_table(&configs)),
        };
    }
    let what = format!("changing the configs of group {group:?}");
    if !args.delete.is_empty() {
        // Kafka deletes a name it does not know as nothing: a typo would leave the value
        // meant in place without a word.
        let known = admin::describe_group_configs(&cluster.pool, group)
            .await
            .map_err(|e| Failure::from_admin(&what, e))?;
        for name in &args.delete {
            if !known.iter().any(|c| &c.name == name) {
                let meant = suggest::closest(name, known.iter().map(|c| c.name.as_str()))
                    .map(|m| format!(" (did you mean {m}?)"))
                    .unwrap_or_default();
                return Err(Failure::usage(format!(
                    "{what}: cannot delete {name}: the broker has no such group config{meant}; \
                     nothing was changed"
                )));
            }
        }
    }
    admin::alter_group_configs(&cluster.pool, group, &changes)
        .await
        .map_err(|e| match e {
            // The broker refused a name or a value given: the invocation's fault.
            AdminError::Broker {
                error: ResponseError::InvalidConfig,
                ..
            } => Failure::usage(format!(
                "{}; nothing was changed",
                Failure::from_admin(&what, e)
            )),
            e => Failure::from_admin(&what, e),
        })?;
    let done: Vec<String> = changes
        .iter()
        .map(|c| match c {
            GroupConfigChange::Set { name, value } => format!("set {name}={value}"),
            GroupConfigChange::Delete { name } => format!("deleted {name}"),
        })
        .collect();
    eprintln!("kcon: group {group:?}: {}", done.join(", "));
    Ok(())
}

/// The changes asked for, each config once.
fn changes(args: &ConfigArgs) -> Result<Vec<GroupConfigChange>, Failure> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let sets = args.set.iter().map(|(name, value)| GroupConfigChange::Set {
        name: name.clone(),
        value: value.clone(),
    });
    let deletes = args
        .delete
        .iter()
        .map(|name| GroupConfigChange::Delete { name: name.clone() });
    for change in sets.chain(deletes) {
        if !seen.insert(change.name().to_owned()) {
            return Err(Failure::usage(format!(
                "{} is given more than once (--set and --delete take each config once)",
                change.name()
            )));
        }
        out.push(change);
    }
    Ok(out)
}

/// Where a value comes from, in the SOURCE column: `group` (set on the group), `default`, or
/// `broker` (the brokers' setting of it, in their config file or set while they run).
fn source_word(source: ConfigSource) -> &'static str {
    match source {
        ConfigSource::Group => "group",
        ConfigSource::Default => "default",
        ConfigSource::StaticBroker
        | ConfigSource::DynamicBroker
        | ConfigSource::DynamicDefaultBroker => "broker",
        other => other.name(),
    }
}

/// A config's value as a cell.
fn value_cell(c: &GroupConfigEntry) -> String {
    match (&c.value, c.sensitive) {
        (Some(v), _) if !v.is_empty() => v.clone(),
        (_, true) => "(sensitive)".to_owned(),
        (Some(_), false) => "\"\"".to_owned(),
        (None, false) => "-".to_owned(),
    }
}

fn configs_table(configs: &[GroupConfigEntry]) -> Table {
    let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for c in configs {
        t.row(vec![
            c.name.clone(),
            value_cell(c),
            source_word(c.source).to_owned(),
        ]);
    }
    t
}

fn config_json(c: &GroupConfigEntry) -> ConfigJson<'_> {
    ConfigJson {
        config: &c.name,
        read_only: c.read_only,
        sensitive: c.sensitive,
        set: c.is_set(),
        source: c.source.name(),
        synonyms: c
            .synonyms
            .iter()
            .map(|s| SynonymJson {
                config: &s.name,
                source: s.source.name(),
                value: s.value.as_deref(),
            })
            .collect(),
        value: c.value.as_deref(),
    }
}

/// `group config --format json`: one line per config. `set`: whether the group has its own
/// value; `source`: Kafka's name for where the value comes from; `synonyms`: where it may come
/// from, most decisive first (the brokers' `group.*` setting of a default).
#[derive(Serialize)]
struct ConfigJson<'a> {
    config: &'a str,
    read_only: bool,
    sensitive: bool,
    set: bool,
    source: &'static str,
    synonyms: Vec<SynonymJson<'a>>,
    value: Option<&'a str>,
}

#[derive(Serialize)]
struct SynonymJson<'a> {
    config: &'a str,
    source: &'static str,
    value: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: Option<&str>, source: ConfigSource) -> GroupConfigEntry {
        GroupConfigEntry {
            name: name.into(),
            value: value.map(str::to_owned),
            source,
            read_only: false,
            sensitive: false,
            synonyms: Vec::new(),
        }
    }

    #[test]
    fn the_table_says_which_values_are_set_on_the_group() {
        let t = configs_table(&[
            entry(
                "share.auto.offset.reset",
                Some("earliest"),
                ConfigSource::Group,
            ),
            entry(
                "share.delivery.count.limit",
                Some("5"),
                ConfigSource::Default,
            ),
            entry(
                "consumer.session.timeout.ms",
                Some("30000"),
                ConfigSource::StaticBroker,
            ),
            entry(
                "errors.deadletterqueue.topic.name",
                Some(""),
                ConfigSource::Default,
            ),
        ]);
        assert_eq!(
            t.render(),
            "CONFIG                             VALUE     SOURCE\n\
             share.auto.offset.reset            earliest  group\n\
             share.delivery.count.limit         5         default\n\
             consumer.session.timeout.ms        30000     broker\n\
             errors.deadletterqueue.topic.name  \"\"        default\n"
        );
    }

    #[test]
    fn key_values_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_key_value("share.auto.offset.reset=earliest"),
            Ok(("share.auto.offset.reset".into(), "earliest".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("share.auto.offset.reset").is_err());
        assert!(parse_key_value("=earliest").is_err());
    }
}
