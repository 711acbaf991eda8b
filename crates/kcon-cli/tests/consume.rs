//! `kcon consume` on Apache Kafka 4.4 (`Kafka::single()`, at the tool's defaults): output record
//! by record, `-c` and `-e`, group commits, signals, a closed stdout, configuration and
//! connection errors.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Broker, Running, TestRecord, by_position, described_partitions, kcon};
use kcon_tests::brokers::unique_name;
use serde_json::{Value, json};

/// Records with every shape the JSON output has to get right.
fn odd_records() -> Vec<TestRecord> {
    vec![
        TestRecord {
            timestamp: 1_700_000_000_001,
            key: None,
            value: Some(b"\xff\xfebinary".to_vec()),
            headers: vec![
                (b"trace".to_vec(), Some(b"abc".to_vec())),
                (b"trace".to_vec(), None),
                (b"bin".to_vec(), Some(b"\x80".to_vec())),
            ],
        },
        TestRecord {
            timestamp: 1_700_000_000_002,
            key: Some("clé".as_bytes().to_vec()),
            value: None,
            headers: vec![],
        },
        TestRecord {
            timestamp: 1_700_000_000_003,
            key: Some(b"".to_vec()),
            value: Some(b"line\nbreak \"quoted\"".to_vec()),
            headers: vec![],
        },
    ]
}

/// What `--format json` must print for `odd_records` at offsets 0, 1, 2 of `topic`-0.
fn odd_records_json(topic: &str) -> Vec<Value> {
    vec![
        json!({"topic": topic, "partition": 0, "offset": 0, "timestamp": 1_700_000_000_001i64,
               "key": null, "value": {"base64": "//5iaW5hcnk="},
               "headers": [["trace", "abc"], ["trace", null], ["bin", {"base64": "gA=="}]]}),
        json!({"topic": topic, "partition": 0, "offset": 1, "timestamp": 1_700_000_000_002i64,
               "key": "clé", "value": null, "headers": []}),
        json!({"topic": topic, "partition": 0, "offset": 2, "timestamp": 1_700_000_000_003i64,
               "key": "", "value": "line\nbreak \"quoted\"", "headers": []}),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn consume_by_assignment_writes_every_record_as_json() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("odd");
    broker.create_topic(&topic, 3).await;
    broker.produce_batch(&topic, 0, &odd_records()).await;
    kcon_tests::offsets::produce(&broker.pool, &topic, 1, 4, 1_000).await;
    // Partition 2 stays empty: -e must not wait for it.

    let run = kcon(&["consume", "-b", &b, "--format", "json", "-e", &topic])
        .await
        .ok();
    let got = by_position(&run.json_lines());
    let mut want = BTreeMap::new();
    for (i, r) in odd_records_json(&topic).into_iter().enumerate() {
        want.insert((0, i as i64), r);
    }
    for i in 0..4i64 {
        want.insert(
            (1, i),
            json!({"topic": topic, "partition": 1, "offset": i, "timestamp": 1_000 + i,
                   "key": null, "value": format!("value-{i}"), "headers": []}),
        );
    }
    assert_eq!(got, want);
    // Without a group nothing is rebalanced: no events on stderr.
    assert!(run.json_events().is_empty(), "{}", run.stderr);

    // -c stops after that many records, each partition in order.
    let run = kcon(&["consume", "-b", &b, "--format", "json", "-c", "5", &topic])
        .await
        .ok();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    for p in 0..2 {
        let offsets: Vec<i64> = lines
            .iter()
            .filter(|l| l["partition"] == p)
            .map(|l| l["offset"].as_i64().unwrap())
            .collect();
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
        assert!(offsets.first().is_none_or(|o| *o == 0), "{offsets:?}");
    }

    // The text format: one line per record, key shown when there is one.
    let run = kcon(&["consume", "-b", &b, "-e", &format!("^{topic}$")])
        .await
        .ok();
    let text: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(text.len(), 7, "{}", run.stdout);
    assert!(
        text.contains(&format!("{topic}/0@0 base64://5iaW5hcnk=").as_str()),
        "{text:?}"
    );
    assert!(
        text.contains(&format!("{topic}/0@1 key=clé (null)").as_str()),
        "{text:?}"
    );
    assert!(
        text.contains(&format!("{topic}/0@2 key= line\\nbreak \"quoted\"").as_str()),
        "{text:?}"
    );
    assert!(run.stderr.contains("consumed 7 records"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_commits_what_it_wrote_and_a_second_run_reads_nothing_new() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("grouped");
    let group = unique_name("g");
    broker.create_topic(&topic, 2).await;
    broker.fill(&topic, 2, 10).await;
    let consume = |extra: &[&str]| {
        let mut args = vec!["consume", "-b", &b, "-g", &group, "--format", "json"];
        args.extend(extra);
        args.push(&topic);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    let args = consume(&["-e"]);
    let run = kcon(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok();
    assert_eq!(by_position(&run.json_lines()).len(), 20, "{}", run.stdout);
    let events = run.json_events();
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some(json!("assigned")),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("revoked")),
        "{events:?}"
    );

    let describe = kcon(&["group", "describe", "-b", &b, &group, "--format", "json"])
        .await
        .ok();
    let d: Value = serde_json::from_str(&describe.stdout).unwrap();
    let parts = described_partitions(&d);
    assert_eq!(parts.len(), 2, "{d}");
    for (current, end, lag) in parts.values() {
        assert_eq!((*current, *end, *lag), (Some(10), Some(10), Some(0)), "{d}");
    }
    assert_eq!(
        (&d["state"], &d["members"]),
        (&json!("Empty"), &json!([])),
        "the member left: {d}"
    );

    let run = kcon(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok();
    assert_eq!(run.stdout, "", "the second run must read nothing new");

    // New records: the next run reads exactly those.
    kcon_tests::offsets::produce(&broker.pool, &topic, 1, 3, 5_000).await;
    let run = kcon(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok();
    let got: Vec<(i64, i64)> = by_position(&run.json_lines()).into_keys().collect();
    assert_eq!(got, [(1, 10), (1, 11), (1, 12)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn count_with_a_group_commits_exactly_the_records_written() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("counted");
    let group = unique_name("g");
    broker.create_topic(&topic, 1).await;
    // One batch of 10: `-c 4` stops inside it.
    broker.fill(&topic, 1, 10).await;
    let mut args = vec![
        "consume", "-b", &b, "-g", &group, "--format", "json", "-c", "4",
    ];
    args.push(&topic);
    let run = kcon(&args).await.ok();
    assert_eq!(run.json_lines().len(), 4);
    let describe = kcon(&["group", "describe", "-b", &b, &group, "--format", "json"])
        .await
        .ok();
    let d: Value = serde_json::from_str(&describe.stdout).unwrap();
    let parts = described_partitions(&d);
    assert_eq!(
        parts[&(topic.clone(), 0)],
        (Some(4), Some(10), Some(6)),
        "the commit is the offset after the last record written: {d}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_commits_leaves_the_group_and_exits_0() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("term");
    let group = unique_name("g");
    broker.create_topic(&topic, 2).await;
    broker.fill(&topic, 2, 5).await;
    // No periodic commit: only the one of the close can commit.
    let mut args = vec![
        "consume",
        "-b",
        &b,
        "-g",
        &group,
        "--format",
        "json",
        "-X",
        "auto.commit.interval.ms=600000",
    ];
    args.push(&topic);
    let mut running = Running::start(&args);
    let lines = running.stdout_lines(10, Duration::from_secs(30)).await;
    assert_eq!(lines.len(), 10);
    running.terminate();
    let (status, rest, stderr) = running.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("{\"event\":\"revoked\"")),
        "{stderr:?}"
    );

    let describe = kcon(&["group", "describe", "-b", &b, &group, "--format", "json"])
        .await
        .ok();
    let d: Value = serde_json::from_str(&describe.stdout).unwrap();
    assert_eq!(
        (&d["state"], &d["members"]),
        (&json!("Empty"), &json!([])),
        "the member left: {d}"
    );
    for (current, _, lag) in described_partitions(&d).values() {
        assert_eq!((*current, *lag), (Some(5), Some(0)), "{d}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_run_quietly() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("pipe");
    broker.create_topic(&topic, 1).await;
    broker.fill(&topic, 1, 50).await;
    let mut running = Running::start(&["consume", "-b", &b, &topic]);
    running.stdout_lines(1, Duration::from_secs(20)).await;
    // Whoever read stdout goes away; the next batch's write is the one that fails.
    running.close_stdout();
    kcon_tests::offsets::produce(&broker.pool, &topic, 0, 5, 1_000).await;
    let (status, _, stderr) = running.wait(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(
        stderr.is_empty(),
        "nothing to say about a closed pipe: {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_property_exits_2_naming_it() {
    // Nothing listens there: configuration is checked before any connection.
    let dead = kcon_tests::pool::dead_address().to_string();
    for (args, property) in [
        (
            vec!["consume", "-b", &dead, "-X", "fetch.wait.max=100", "t"],
            "fetch.wait.max",
        ),
        (
            vec![
                "consume",
                "-b",
                &dead,
                "-g",
                "g",
                "-X",
                "session.timeout.ms=soon",
                "t",
            ],
            "session.timeout.ms",
        ),
        (
            vec!["group", "list", "-b", &dead, "-X", "isolation.levels=x"],
            "isolation.levels",
        ),
        (
            vec![
                "produce",
                "-b",
                &dead,
                "-X",
                "security.protocol=carrier-pigeon",
                "t",
            ],
            "security.protocol",
        ),
    ] {
        let run = kcon(&args).await;
        assert_eq!(run.code(), 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(property), "{args:?}: {}", run.stderr);
    }
    let run = kcon(&["consume", "-b", &dead, "-X", "no-equals-sign", "t"]).await;
    assert_eq!(run.code(), 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_exits_1_within_seconds() {
    let dead = kcon_tests::pool::dead_address().to_string();
    for args in [
        vec!["consume", "-b", &dead, "t"],
        vec!["consume", "-b", &dead, "-g", "g", "-e", "t"],
        vec!["group", "describe", "-b", &dead, "g"],
        vec!["group", "list", "-b", &dead],
        vec!["topic", "list", "-b", &dead],
    ] {
        let started = Instant::now();
        let run = kcon(&args).await;
        assert_eq!(run.code(), 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("cannot reach the brokers: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(&dead), "{args:?}: {}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_topic_exits_1_and_is_not_created() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let missing = unique_name("missing");
    let group = unique_name("g");
    for args in [
        vec!["consume", "-b", &b, "-e", &missing],
        vec!["consume", "-b", &b, "-g", &group, "-e", &missing],
    ] {
        let run = kcon(&args).await;
        assert_eq!(run.code(), 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains("unknown topic"), "{}", run.stderr);
    }
    let run = kcon(&["topic", "list", "-b", &b]).await.ok();
    assert!(!run.stdout.contains(&missing), "{}", run.stdout);
}
