//! `kcon group list | describe | lag | reset-offsets` against Tansu.

mod common;

use std::time::Duration;

use common::{Broker, FAST_GROUP, Running, described_partitions, kcon, reset_offsets};
use kcon_tests::brokers::unique_name;
use serde_json::{Value, json};

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn describe_json(bootstrap: &str, group: &str) -> Value {
    let run = kcon(&[
        "group", "describe", "-b", bootstrap, group, "--format", "json",
    ])
    .await
    .ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Starts a group member reading `topic` and waits until it has partitions.
async fn member(bootstrap: &str, group: &str, topic: &str) -> Running {
    let mut args = vec!["consume", "-b", bootstrap, "-g", group, "--format", "json"];
    args.extend(FAST_GROUP);
    args.push(topic);
    let mut running = Running::start(&args);
    running
        .stderr_until("\"event\":\"assigned\"", Duration::from_secs(30))
        .await;
    running
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_describe_show_members_offsets_and_lag() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let topic = unique_name("described");
    let group = unique_name("g");
    broker.create_topic(&topic, 2).await;
    // Records a minute old: LAG-SECONDS is their age while the group has not read them.
    let minute_ago = kcon_tests::offsets::now_ms() - 60_000;
    for p in 0..2 {
        kcon_tests::offsets::produce(&broker.pool, &topic, p, 5, minute_ago).await;
    }

    let run = kcon(&["group", "describe", "-b", &b, &group]).await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.contains("unknown group"), "{}", run.stderr);

    reset_offsets(&b, &group, &topic, &["--to-earliest"]).await;
    let d = describe_json(&b, &group).await;
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(
            (&p["current_offset"], &p["log_end_offset"], &p["lag"]),
            (&json!(0), &json!(5), &json!(5)),
            "{d}"
        );
        let age = p["lag_seconds"].as_f64().unwrap_or_else(|| panic!("{d}"));
        assert!(
            (59.0..600.0).contains(&age),
            "the record is a minute old: {d}"
        );
    }

    let mut running = member(&b, &group, &topic).await;
    running.stdout_lines(10, Duration::from_secs(20)).await;
    let list = kcon(&["group", "list", "-b", &b]).await.ok();
    assert!(list.stdout.starts_with("GROUP"), "{}", list.stdout);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{group} "))),
        "{}",
        list.stdout
    );
    let list = kcon(&["group", "list", "-b", &b, "--format", "json"])
        .await
        .ok();
    assert!(
        list.json_lines().iter().any(|g| g["group"] == json!(group)),
        "{}",
        list.stdout
    );

    // Commits follow the output within auto.commit.interval.ms (1 s for the tool).
    let mut d = describe_json(&b, &group).await;
    for _ in 0..50 {
        if described_partitions(&d)
            .values()
            .all(|(_, _, lag)| *lag == Some(0))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        d = describe_json(&b, &group).await;
    }
    let members = d["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{d}");
    assert!(!members[0]["member_id"].as_str().unwrap().is_empty(), "{d}");
    for (current, end, lag) in described_partitions(&d).values() {
        assert_eq!((*current, *end, *lag), (Some(5), Some(5), Some(0)), "{d}");
    }
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["lag_seconds"], json!(0.0), "caught up: {d}");
    }
    let text = kcon(&["group", "describe", "-b", &b, &group]).await.ok();
    assert!(
        text.stdout.contains("state Stable, 1 member"),
        "{}",
        text.stdout
    );
    let header = text
        .stdout
        .lines()
        .find(|l| l.starts_with("GROUP"))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "LAG-SECONDS",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );

    running.terminate();
    let (status, _, stderr) = running.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let d = describe_json(&b, &group).await;
    assert_eq!(d["members"], json!([]), "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_offsets_is_a_dry_run_until_execute() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let topic = unique_name("reset");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    // Three batches of 10: Tansu's ListOffsets latest would say 21, the log ends at 30.
    for _ in 0..3 {
        kcon_tests::offsets::produce(&broker.pool, &topic, 0, 10, 1_000).await;
    }
    let mut consume = vec!["consume", "-b", &b, "-g", &group, "--format", "json", "-e"];
    consume.extend(FAST_GROUP);
    consume.push(&topic);
    assert_eq!(kcon(&consume).await.ok().json_lines().len(), 30);
    let committed = |d: &Value| described_partitions(d)[&(topic.clone(), 0)].0;
    assert_eq!(committed(&describe_json(&b, &group).await), Some(30));

    let reset = |extra: &[&str]| {
        let mut args = vec![
            "group".to_owned(),
            "reset-offsets".to_owned(),
            "-b".to_owned(),
            b.clone(),
            group.clone(),
            "--topic".to_owned(),
            topic.clone(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let row = |run: &common::Run| -> Vec<String> {
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", run.stdout);
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "NEW-OFFSET"
            ]
        );
        lines[1].split_whitespace().map(str::to_owned).collect()
    };

    let a = reset(&["--to-offset", "12"]);
    let run = kcon(&strs(&a)).await.ok();
    assert_eq!(row(&run), [group.as_str(), &topic, "0", "30", "12"]);
    assert!(run.stderr.contains("dry run"), "{}", run.stderr);
    assert_eq!(
        committed(&describe_json(&b, &group).await),
        Some(30),
        "a dry run commits nothing"
    );

    let a = reset(&["--to-latest"]);
    assert_eq!(
        row(&kcon(&strs(&a)).await.ok())[4],
        "30",
        "the true end of the log"
    );
    let a = reset(&["--to-earliest"]);
    assert_eq!(row(&kcon(&strs(&a)).await.ok())[4], "0");
    let a = reset(&["--to-offset", "999"]);
    assert_eq!(
        row(&kcon(&strs(&a)).await.ok())[4],
        "30",
        "kept within the log"
    );

    let a = reset(&["--to-offset", "12", "--execute"]);
    let run = kcon(&strs(&a)).await.ok();
    assert!(run.stderr.contains("committed"), "{}", run.stderr);
    assert_eq!(committed(&describe_json(&b, &group).await), Some(12));
    let offsets: Vec<i64> = kcon(&consume)
        .await
        .ok()
        .json_lines()
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (12..30).collect::<Vec<i64>>(),
        "the group goes on from the new offset"
    );

    // Refused while the group has a member.
    kcon_tests::offsets::produce(&broker.pool, &topic, 0, 1, 1_000).await;
    let running = member(&b, &group, &topic).await;
    let a = reset(&["--to-earliest", "--execute"]);
    let run = kcon(&strs(&a)).await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.contains("active member"), "{}", run.stderr);
    running.terminate();
    let (status, _, stderr) = running.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert_eq!(
        committed(&describe_json(&b, &group).await),
        Some(31),
        "the refused reset changed nothing"
    );

    // Exactly one target, and a well-formed one: usage errors.
    let a = reset(&["--to-earliest", "--to-latest"]);
    assert_eq!(kcon(&strs(&a)).await.code(), 2);
    let a = reset(&["--to-datetime", "yesterday"]);
    assert_eq!(kcon(&strs(&a)).await.code(), 2);
}

/// `kcon group lag`: once, the lag of every partition with OK (one commit seen says nothing
/// more); with --watch, a status that follows the commits: after the committed offset moved
/// once and then stood still for longer than that took, with lag left, the partition is STOP
/// and the group ERR.
#[tokio::test(flavor = "multi_thread")]
async fn group_lag_measures_and_watch_calls_a_partition_that_stopped_committing_stop() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let topic = unique_name("lag");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    broker.fill(&topic, 1, 30).await;
    let reset = |to: &'static str| {
        let (b, group, topic) = (b.clone(), group.clone(), topic.clone());
        async move {
            reset_offsets(&b, &group, &topic, &["--to-offset", to]).await;
        }
    };
    reset("5").await;
    let once = kcon(&["group", "lag", "-b", &b, &group, "--format", "json"])
        .await
        .ok();
    let v: Value = serde_json::from_str(once.stdout.trim()).expect("one JSON object");
    assert_eq!(v["status"], "OK", "{v}");
    assert_eq!(v["lag"], 25, "{v}");
    assert_eq!(v["partitions"][0]["current_offset"], 5, "{v}");
    assert_eq!(v["partitions"][0]["log_end_offset"], 30, "{v}");
    assert_eq!(v["partitions"][0]["status"], "OK", "{v}");
    let text = kcon(&["group", "lag", "-b", &b, &group]).await.ok();
    assert!(text.stdout.contains("STATUS"), "{}", text.stdout);

    let mut watch = Running::start(&[
        "group",
        "lag",
        "-b",
        &b,
        &group,
        "--watch",
        "--interval",
        "PT0.2S",
        "--format",
        "json",
    ]);
    let first = watch.stdout_lines(1, Duration::from_secs(20)).await;
    let first: Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(first["partitions"][0]["status"], "OK", "{first}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    reset("10").await;
    // The offset moved (a second commit seen); standing still for longer than the window spans
    // then reads as STOP, with 20 records of lag.
    let mut seen = Vec::new();
    let stopped = loop {
        let line = watch.stdout_lines(1, Duration::from_secs(20)).await;
        let v: Value = serde_json::from_str(&line[0]).unwrap();
        let status = v["partitions"][0]["status"].clone();
        if status == "STOP" {
            break v;
        }
        assert!(seen.len() < 100, "never STOP: {seen:?}");
        seen.push(status);
    };
    assert_eq!(stopped["status"], "ERR", "{stopped}");
    assert_eq!(stopped["lag"], 20, "{stopped}");
    assert!(
        seen.iter().any(|s| s == "OK"),
        "OK while the commits were recent: {seen:?}"
    );
    watch.terminate();
    let _ = watch.wait(Duration::from_secs(10)).await;
}

/// The tool's durations take short forms and ISO-8601 (`--by-duration` as
/// kafka-consumer-groups.sh takes it, and a short form); a bad one is a usage error naming the
/// flag and what it takes, before any broker is asked.
#[tokio::test(flavor = "multi_thread")]
async fn durations_take_short_forms_and_iso_8601_and_a_bad_one_is_a_usage_error() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let topic = unique_name("durations");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    broker.fill(&topic, 1, 10).await;
    for by in ["1h", "PT1H", "1h30m"] {
        let run = reset_offsets(&b, &group, &topic, &["--by-duration", by]).await;
        assert!(run.stderr.contains("committed"), "{}", run.stderr);
    }
    let run = kcon(&["group", "lag", "-b", &b, &group, "--interval", "1s"]).await;
    assert_eq!(run.code(), 0, "{run:?}");

    for (args, flag) in [
        (
            vec![
                "group",
                "lag",
                "-b",
                &b,
                &group,
                "--watch",
                "--interval",
                "5x",
            ],
            "--interval",
        ),
        (
            vec!["group", "lag", "-b", &b, &group, "--interval", "0s"],
            "--interval",
        ),
        (vec!["exporter", "-b", &b, "--interval", "30"], "--interval"),
        (
            vec![
                "group",
                "reset-offsets",
                "-b",
                &b,
                &group,
                "--topic",
                &topic,
                "--by-duration",
                "1 hour",
            ],
            "--by-duration",
        ),
    ] {
        let run = kcon(&args).await;
        assert_eq!(run.code(), 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(flag), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("500ms") || run.stderr.contains("more than 0"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// `group lag --watch` ends on SIGTERM and on SIGINT with exit 0, its last refresh drawn whole
/// (a signal during a refresh lets it finish; refreshes 10 ms apart make that likely).
#[tokio::test(flavor = "multi_thread")]
async fn watch_ends_on_sigterm_and_sigint_with_0_its_last_refresh_whole() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    let topic = unique_name("watched");
    let group = unique_name("g");
    broker.create_topic(&topic, 2).await;
    broker.fill(&topic, 2, 10).await;
    reset_offsets(&b, &group, &topic, &["--to-offset", "3"]).await;

    for (signal, format) in [("TERM", "json"), ("INT", "text")] {
        let mut watch = Running::start(&[
            "group",
            "lag",
            "-b",
            &b,
            &group,
            "--watch",
            "--interval",
            "10ms",
            "--format",
            format,
        ]);
        let mut out = watch.stdout_lines(3, Duration::from_secs(20)).await;
        watch.signal(signal);
        let (status, rest, stderr) = watch.wait(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?} {stderr:?}");
        out.extend(rest);
        if format == "json" {
            for line in &out {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert_eq!(v["partitions"].as_array().map(Vec::len), Some(2), "{v}");
            }
        } else {
            let text = out.join("\n");
            let last = text.rsplit("\x1b[2J\x1b[H").next().unwrap();
            let lines: Vec<&str> = last.lines().collect();
            assert_eq!(lines.len(), 5, "the last table whole: {last:?}");
            assert!(lines[0].starts_with("Group "), "{last:?}");
            assert!(lines[2].starts_with("TOPIC"), "{last:?}");
            for (line, partition) in lines[3..].iter().zip(["0", "1"]) {
                let cells: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(cells.len(), 7, "{last:?}");
                assert_eq!(
                    (cells[0], cells[1]),
                    (topic.as_str(), partition),
                    "{last:?}"
                );
            }
        }
    }
}
