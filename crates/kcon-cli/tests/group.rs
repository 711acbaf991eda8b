//! `kcon group list | describe | lag | reset-offsets` on Apache Kafka 4.4 (`Kafka::single()`,
//! at the tool's defaults): classic groups of `kcon consume` members, consumer-protocol
//! (KIP-848) groups, commits made from outside; and on Apache Kafka 3.9.1 at its defaults (the
//! consumer protocol off).

mod common;

use std::time::Duration;

use common::{Broker, Running, described_partitions, kcon, reset_offsets};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::Kafka;
use serde_json::{Value, json};

/// How long a member started by a test may take to be assigned its partitions.
const ASSIGNED_WITHIN: Duration = Duration::from_secs(30);

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The rows of the table whose header starts with `first` and has `column`, each split at
/// whitespace.
fn table(text: &str, first: &str, column: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !(l.starts_with(first) && l.contains(column)))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

async fn describe_json(bootstrap: &str, group: &str) -> Value {
    let run = kcon(&[
        "group", "describe", "-b", bootstrap, group, "--format", "json",
    ])
    .await
    .ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `kcon consume` in `group` on `topic` with `extra` arguments, waited for until it is
/// assigned its partitions.
async fn member(bootstrap: &str, group: &str, topic: &str, extra: &[&str]) -> Running {
    let mut args = vec!["consume", "-b", bootstrap, "-g", group, "--format", "json"];
    args.extend_from_slice(extra);
    args.push(topic);
    let mut running = Running::start(&args);
    running
        .stderr_until("\"event\":\"assigned\"", ASSIGNED_WITHIN)
        .await;
    running
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_describe_show_members_offsets_and_lag() {
    let broker = Broker::single();
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
    assert!(
        run.stderr.contains(&format!(
            "unknown group {group:?} (no members, no committed offsets)"
        )),
        "{}",
        run.stderr
    );

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

    let mut running = member(&b, &group, &topic, &[]).await;
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
    let listed: Vec<Value> = list
        .json_lines()
        .into_iter()
        .filter(|g| g["group"] == json!(group))
        .collect();
    assert_eq!(
        listed,
        [json!({"group": group, "protocol_type": "consumer", "state": "Stable"})],
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
    let member_id = members[0]["member_id"].as_str().unwrap();
    assert!(!member_id.is_empty(), "{d}");
    // Kafka's DescribeGroups names the member's client and host, and what it was assigned.
    assert_eq!(
        (&members[0]["client_id"], &members[0]["host"]),
        (&json!("kcon"), &json!("/127.0.0.1")),
        "{d}"
    );
    let mut assigned: Vec<(String, i64)> = members[0]["assignment"]
        .as_array()
        .unwrap_or_else(|| panic!("no assignment: {d}"))
        .iter()
        .map(|p| {
            (
                p["topic"].as_str().unwrap().to_owned(),
                p["partition"].as_i64().unwrap(),
            )
        })
        .collect();
    assigned.sort();
    assert_eq!(assigned, [(topic.clone(), 0), (topic.clone(), 1)], "{d}");
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["member_id"], json!(member_id), "{d}");
    }
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
    // Each partition's row names its owner, where it runs and its client id.
    let rows = table(&text.stdout, "GROUP", "CLIENT-ID");
    assert_eq!(rows.len(), 2, "{}", text.stdout);
    for (row, partition) in rows.iter().zip(["0", "1"]) {
        assert_eq!(
            row[..],
            [
                group.as_str(),
                &topic,
                partition,
                "5",
                "5",
                "0",
                "0.0",
                member_id,
                "/127.0.0.1",
                "kcon"
            ],
            "{}",
            text.stdout
        );
    }

    running.terminate();
    let (status, _, stderr) = running.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let d = describe_json(&b, &group).await;
    assert_eq!(d["members"], json!([]), "{d}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_offsets_is_a_dry_run_until_execute() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("reset");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    // Three batches of 10: the log ends at 30, not after the last batch's first record.
    for _ in 0..3 {
        kcon_tests::offsets::produce(&broker.pool, &topic, 0, 10, 1_000).await;
    }
    let consume = [
        "consume", "-b", &b, "-g", &group, "--format", "json", "-e", &topic,
    ];
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
    let mut running = member(&b, &group, &topic, &[]).await;
    let a = reset(&["--to-earliest", "--execute"]);
    let run = kcon(&strs(&a)).await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.contains("active member"), "{}", run.stderr);
    // The member reads the new record before it is stopped, so that its close commits past
    // it (stopped after joining but before its first fetch, it has nothing to commit).
    let read = running.stdout_lines(1, ASSIGNED_WITHIN).await;
    let record: Value = serde_json::from_str(&read[0]).unwrap();
    assert_eq!(record["offset"], 30, "{record}");
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
    let broker = Broker::single();
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
    let broker = Broker::single();
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
    let broker = Broker::single();
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

/// A member of a consumer-protocol group (KIP-848) subscribed by name: Apache Kafka describes
/// it with an empty regex, which is no regex: SUBSCRIBED shows the topic alone, no trailing
/// comma, and the JSON has no regex.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_subscribed_by_name_shows_its_topic_and_no_empty_regex() {
    let broker = Broker::single();
    let b = broker.kafka.bootstrap();
    let topic = unique_name("named");
    broker.create_topic(&topic, 1).await;
    let group = unique_name("named");
    let running = member(b, &group, &topic, &["-X", "group.protocol=consumer"]).await;

    let run = kcon(&["group", "describe", "-b", b, &group]).await.ok();
    let rows = table(&run.stdout, "CONSUMER-ID", "SUBSCRIBED");
    assert_eq!(rows.len(), 1, "{}", run.stdout);
    assert_eq!(rows[0][3], topic, "the SUBSCRIBED column: {}", run.stdout);
    let d = describe_json(b, &group).await;
    let m = &d["consumer_protocol"]["members"][0];
    assert_eq!(m["subscribed_topics"], json!([topic]), "{d}");
    assert_eq!(m["subscribed_regex"], Value::Null, "{d}");

    running.terminate();
    let (status, _, _) = running.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

/// Two `kcon consume -X group.protocol=consumer` members of one group with the coordinator's
/// range assignor on a topic of 4 partitions: the first is given all four, the second joins
/// and the first gives up half (Kafka 4.4's range gives the member with the lower id
/// partitions 0 and 1). `group describe` shows what ConsumerGroupDescribe says once the group
/// has settled: the state, the assignor, the group and assignment epochs, each member at the
/// assignment epoch with its target assignment, and what each owns, which is its target and
/// what the member itself was told; in JSON and in the text's tables.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_protocol_group_shows_its_epochs_and_each_members_assignment() {
    let broker = Broker::single();
    let b = broker.kafka.bootstrap();
    let topic = unique_name("kip848-describe");
    broker.create_topic(&topic, 4).await;
    let group = unique_name("kip848-describe");
    let kip848 = [
        "-X",
        "group.protocol=consumer",
        "-X",
        "group.remote.assignor=range",
    ];
    // The first member is given all four before the second joins. (A member's first
    // assignment may be empty: Kafka's coordinator may not have the new topic yet.)
    let mut args = vec!["consume", "-b", b, "-g", &group, "--format", "json"];
    args.extend_from_slice(&kip848);
    args.push(&topic);
    let mut first = Running::start(&args);
    loop {
        let told = first
            .stderr_until("\"event\":\"assigned\"", ASSIGNED_WITHIN)
            .await;
        let assigned: Value = serde_json::from_str(told.last().expect("a line"))
            .unwrap_or_else(|e| panic!("{e}: {told:?}"));
        match assigned["partitions"].as_array().map(Vec::len) {
            Some(0) => continue,
            Some(4) => break,
            _ => panic!("the first member was given {assigned}"),
        }
    }
    let second = member(b, &group, &topic, &kip848).await;
    // The first member is told to give up what moved.
    let told = first
        .stderr_until("\"event\":\"revoked\"", ASSIGNED_WITHIN)
        .await;
    let revoked: Value = serde_json::from_str(told.last().expect("a line"))
        .unwrap_or_else(|e| panic!("{e}: {told:?}"));
    let p = |n: i32| json!({"topic": topic, "partition": n});
    let (low, high) = (json!([p(0), p(1)]), json!([p(2), p(3)]));
    let first_owns = if revoked["partitions"] == low {
        &high
    } else {
        assert_eq!(revoked["partitions"], high, "{told:?}");
        &low
    };

    // Settled: every member at the assignment epoch, owning its target.
    let deadline = std::time::Instant::now() + ASSIGNED_WITHIN;
    let d = loop {
        let d = describe_json(b, &group).await;
        let cg = &d["consumer_protocol"];
        let epoch = &cg["assignment_epoch"];
        let settled = d["state"] == "Stable"
            && cg["group_epoch"] == *epoch
            && cg["members"]
                .as_array()
                .is_some_and(|ms| ms.len() == 2 && ms.iter().all(|m| m["member_epoch"] == *epoch));
        if settled {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "not settled: {d:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let cg = &d["consumer_protocol"];
    let epoch = cg["assignment_epoch"].as_i64().expect("an epoch");
    assert!(
        epoch >= 2,
        "two members joined, so two epochs at least: {d:#}"
    );
    assert_eq!(d["protocol_type"], "consumer", "{d:#}");
    assert_eq!(d["protocol"], "range", "the assignor: {d:#}");
    let mut targets: Vec<(Value, Value)> = cg["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let owned = d["members"]
                .as_array()
                .expect("members")
                .iter()
                .find(|o| o["member_id"] == m["member_id"])
                .unwrap_or_else(|| panic!("{} owns nothing: {d:#}", m["member_id"]));
            assert_eq!(owned["assignment"], m["target_assignment"], "{d:#}");
            assert_eq!(m["subscribed_topics"], json!([topic]), "{d:#}");
            (m["target_assignment"].clone(), m["member_id"].clone())
        })
        .collect();
    // In member id order (byte order, as Java compares strings).
    targets.sort_by_key(|(_, id)| id.as_str().expect("a member id").to_owned());
    assert_eq!(
        targets.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        [low.clone(), high.clone()],
        "{d:#}"
    );
    assert!(
        targets.iter().any(|(t, _)| t == first_owns),
        "the first member owns {first_owns}: {d:#}"
    );

    let text = kcon(&["group", "describe", "-b", b, &group]).await.ok();
    assert!(
        text.stdout.contains(&format!(
            "Consumer protocol (KIP-848): group epoch {epoch}, assignment epoch {epoch}"
        )),
        "{}",
        text.stdout
    );
    let rows = table(&text.stdout, "CONSUMER-ID", "MEMBER-EPOCH");
    assert_eq!(rows.len(), 2, "{}", text.stdout);
    for (target, id) in &targets {
        let id = id.as_str().expect("a member id");
        let row = rows
            .iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("no row for {id}: {}", text.stdout));
        let partitions: Vec<String> = target
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["partition"].to_string())
            .collect();
        assert_eq!(
            row[1..],
            [
                epoch.to_string(),
                "-".to_owned(),
                topic.clone(),
                format!("{topic}:{}", partitions.join(","))
            ],
            "{}",
            text.stdout
        );
    }

    for running in [first, second] {
        running.terminate();
        let (status, _, _) = running.wait(Duration::from_secs(30)).await;
        assert!(status.success(), "{status:?}");
    }
}

/// Apache Kafka 3.9.1 at its defaults answers ConsumerGroupDescribe with UNSUPPORTED_VERSION
/// for every group (the consumer protocol is off): a classic group of a `kcon consume` member
/// is described, and once the member is gone reset, all the same.
#[tokio::test(flavor = "multi_thread")]
async fn describe_and_reset_offsets_work_on_kafka_3_9() {
    let b = Kafka::kafka39().bootstrap();
    let pool = kcon_pool::Pool::new(kcon_tests::pool::config(b)).expect("a pool");
    let topic = unique_name("classic39");
    kcon_tests::kafka::create_topics(&pool, &[(&topic, 1)]).await;
    kcon_tests::offsets::produce(&pool, &topic, 0, 6, kcon_tests::offsets::now_ms()).await;
    let group = unique_name("classic39");
    let mut running = member(b, &group, &topic, &[]).await;
    running.stdout_lines(6, Duration::from_secs(30)).await;

    let d = describe_json(b, &group).await;
    assert_eq!(
        (&d["state"], &d["protocol_type"]),
        (&json!("Stable"), &json!("consumer")),
        "{d}"
    );
    assert_eq!(d["members"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d["consumer_protocol"], Value::Null, "a classic group: {d}");
    let text = kcon(&["group", "describe", "-b", b, &group]).await.ok();
    assert!(
        text.stdout.contains("state Stable, 1 member"),
        "{}",
        text.stdout
    );

    running.terminate();
    let (status, _, _) = running.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    let reset = kcon(&[
        "group",
        "reset-offsets",
        "-b",
        b,
        &group,
        "--topic",
        &topic,
        "--to-offset",
        "2",
        "--execute",
    ])
    .await
    .ok();
    let rows = table(&reset.stdout, "GROUP", "NEW-OFFSET");
    assert_eq!(rows.len(), 1, "{}", reset.stdout);
    assert_eq!(rows[0][4], "2", "{}", reset.stdout);
    let d = describe_json(b, &group).await;
    let p = &d["partitions"][0];
    assert_eq!(
        (&p["current_offset"], &p["log_end_offset"], &p["lag"]),
        (&json!(2), &json!(6), &json!(4)),
        "{d}"
    );
}

/// An offset committed 200 past the log end: `group describe` and `group lag` show a lag of
/// -200, as Kafka's `kafka-consumer-groups.sh` does, and `group lag` the status PAST_END.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_past_the_log_end_shows_a_negative_lag_and_past_end() {
    let broker = Broker::single();
    let b = broker.kafka.bootstrap();
    let topic = unique_name("past-end");
    broker.create_topic(&topic, 1).await;
    kcon_tests::offsets::produce(&broker.pool, &topic, 0, 100, kcon_tests::offsets::now_ms()).await;
    let group = unique_name("past-end");
    let outcomes = kcon_admin::commit_offsets(
        &broker.pool,
        &group,
        &std::collections::BTreeMap::from([(kcon::TopicPartition::new(topic.as_str(), 0), 300)]),
    )
    .await
    .expect("the commit");
    assert!(outcomes.values().all(Result::is_ok), "{outcomes:?}");

    let d = describe_json(b, &group).await;
    let p = &d["partitions"][0];
    assert_eq!(
        (
            &p["current_offset"],
            &p["log_end_offset"],
            &p["lag"],
            &p["past_end"]
        ),
        (&json!(300), &json!(100), &json!(-200), &json!(true)),
        "{d}"
    );
    let text = kcon(&["group", "describe", "-b", b, &group]).await.ok();
    let rows = table(&text.stdout, "GROUP", "LAG");
    assert_eq!(&rows[0][3..6], ["300", "100", "-200"], "{}", text.stdout);
    assert!(text.stderr.contains("PAST_END"), "{}", text.stderr);

    let lag = kcon(&["group", "lag", "-b", b, &group, "--format", "json"])
        .await
        .ok();
    let l = &lag.json_lines()[0];
    assert_eq!((&l["status"], &l["lag"]), (&json!("ERR"), &json!(0)), "{l}");
    let p = &l["partitions"][0];
    assert_eq!(
        (&p["lag"], &p["status"]),
        (&json!(-200), &json!("PAST_END")),
        "{l}"
    );
    let text = kcon(&["group", "lag", "-b", b, &group]).await.ok();
    let rows = table(&text.stdout, "TOPIC", "STATUS");
    assert_eq!(
        &rows[0][4..],
        ["-200", "0.0", "PAST_END"],
        "{}",
        text.stdout
    );
}
