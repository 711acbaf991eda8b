//! `kcon group config` on Apache Kafka 4.4 at its defaults (the shared `single` node of
//! `scripts/kafka`): a share group's `share.auto.offset.reset` set with the tool before its first
//! member joins, and the member reading what was written before; Kafka 3.9.1's refusal is
//! `kafka39.rs`'s.

mod common;

use std::time::Duration;

use common::{Running, kcon};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;
use serde_json::{Value, json};

/// Records written before the share group's first member joins.
const BACKLOG: usize = 12;

/// The `CONFIG VALUE SOURCE` row of `name` in `kcon group config GROUP`'s table.
async fn row(bootstrap: &str, group: &str, name: &str) -> Vec<String> {
    let run = kcon(&["group", "config", "-b", bootstrap, group])
        .await
        .ok();
    assert!(
        run.stdout.starts_with("CONFIG ") && run.stdout.contains(" SOURCE\n"),
        "{}",
        run.stdout
    );
    run.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {}", run.stdout))
}

/// Every config of `group`, as `kcon group config --format json` writes them.
async fn configs_json(bootstrap: &str, group: &str) -> Vec<Value> {
    kcon(&[
        "group", "config", "-b", bootstrap, group, "--format", "json",
    ])
    .await
    .ok()
    .json_lines()
}

/// The user's path: records are written, `kcon group config --set
/// share.auto.offset.reset=earliest` sets the new share group's config, and a `kcon share
/// consume` member joining afterwards writes every record written before, from offset 0 (at the
/// default, latest, it would wait at the log's end for records that never come). The config
/// shows as set on the group, in text and JSON; `--delete` brings the default back.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_group_set_to_earliest_with_the_tool_reads_its_backlog() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let pool = Pool::new(config(b)).expect("a pool");
    let topic = unique_name("cli-group-config");
    create_topics(&pool, &[(&topic, 1)]).await;
    produce(&pool, &topic, 0, BACKLOG, now_ms()).await;
    let group = unique_name("cli-group-config");

    assert_eq!(
        row(b, &group, "share.auto.offset.reset").await,
        ["share.auto.offset.reset", "latest", "default"]
    );
    let set = kcon(&[
        "group",
        "config",
        "-b",
        b,
        &group,
        "--set",
        "share.auto.offset.reset=earliest",
    ])
    .await
    .ok();
    assert!(
        set.stderr.contains("set share.auto.offset.reset=earliest"),
        "{}",
        set.stderr
    );
    assert_eq!(
        row(b, &group, "share.auto.offset.reset").await,
        ["share.auto.offset.reset", "earliest", "group"]
    );
    let reset = configs_json(b, &group)
        .await
        .into_iter()
        .find(|c| c["config"] == "share.auto.offset.reset")
        .expect("share.auto.offset.reset in the JSON");
    assert_eq!(
        (&reset["value"], &reset["set"], &reset["source"]),
        (
            &json!("earliest"),
            &json!(true),
            &json!("DYNAMIC_GROUP_CONFIG")
        ),
        "{reset}"
    );

    // The group's first member, joining after the records were written, gets them all.
    let mut member = Running::start(&[
        "share",
        "consume",
        "-b",
        b,
        "-g",
        &group,
        "-c",
        &BACKLOG.to_string(),
        "--format",
        "json",
        &topic,
    ]);
    let lines = member.stdout_lines(BACKLOG, Duration::from_secs(60)).await;
    let mut offsets: Vec<i64> = lines
        .iter()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            r["offset"].as_i64().unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..BACKLOG as i64).collect::<Vec<_>>());
    let (status, _, stderr) = member.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}: {stderr:?}");

    kcon(&[
        "group",
        "config",
        "-b",
        b,
        &group,
        "--delete",
        "share.auto.offset.reset",
    ])
    .await
    .ok();
    assert_eq!(
        row(b, &group, "share.auto.offset.reset").await,
        ["share.auto.offset.reset", "latest", "default"]
    );
}

/// A mistyped name is refused, naming the broker's answer by name and the config meant, and
/// nothing is changed (exit 2: the invocation's fault); so is deleting a name the broker has no
/// config of, which Kafka itself would take silently.
#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_group_config_is_refused_naming_the_one_meant() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let group = unique_name("cli-group-config-typo");

    let run = kcon(&[
        "group",
        "config",
        "-b",
        b,
        &group,
        "--set",
        "share.delivery.count.limit=3",
        "--set",
        "share.auto.offset.rest=earliest",
    ])
    .await;
    assert_eq!(run.code(), 2, "{run:?}");
    for what in [
        "INVALID_CONFIG (40)",
        "Unknown group config name: share.auto.offset.rest",
        "(did you mean share.auto.offset.reset?)",
        "nothing was changed",
    ] {
        assert!(run.stderr.contains(what), "{what}: {}", run.stderr);
    }
    let configs = configs_json(b, &group).await;
    assert!(
        configs.iter().all(|c| c["set"] == json!(false)),
        "nothing set: {configs:?}"
    );

    let run = kcon(&[
        "group",
        "config",
        "-b",
        b,
        &group,
        "--delete",
        "share.auto.offset.rest",
    ])
    .await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "cannot delete share.auto.offset.rest: the broker has no such group config (did \
             you mean share.auto.offset.reset?)"
        ),
        "{}",
        run.stderr
    );
}
