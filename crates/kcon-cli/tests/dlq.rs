//! `kcon consume --value-format/--key-format/--dlq-topic` and `kcon dlq replay` on Apache
//! Kafka 4.4 (`Kafka::single()`): records that do not read are reported on stderr with their
//! coordinates and dead-lettered byte for byte, the group commits past them only once the
//! dead-letter topic has them; a replay puts the records back where they came from, equal to
//! the originals, filtered by `--where`, or into another topic with `--to`.

mod common;

use std::collections::BTreeMap;

use common::{Broker, TestRecord, by_position, described_partitions, kcon};
use kcon_tests::brokers::unique_name;
use serde_json::{Value, json};

/// Offsets 0..6 of partition 0: JSON, not JSON, JSON, a tombstone, not UTF-8, JSON.
fn mixed() -> Vec<TestRecord> {
    let record = |i: i64, value: Option<&[u8]>| TestRecord {
        timestamp: 1_700_000_000_000 + i,
        key: Some(format!("k{i}").into_bytes()),
        value: value.map(<[u8]>::to_vec),
        headers: vec![(b"trace".to_vec(), Some(format!("t{i}").into_bytes()))],
    };
    vec![
        record(0, Some(br#"{"id":0}"#)),
        record(1, Some(b"{not json")),
        record(2, Some(br#"[1,"two"]"#)),
        record(3, None),
        record(4, Some(b"\xff\xfe")),
        record(5, Some(br#"{"id":5}"#)),
    ]
}

/// The records of a `--format json` output of one partition, by offset.
fn by_offset(lines: &[Value]) -> BTreeMap<i64, Value> {
    by_position(lines)
        .into_iter()
        .map(|((_, offset), record)| (offset, record))
        .collect()
}

/// The JSON header value of `name` in a `--format json` record.
fn header(record: &Value, name: &str) -> Option<Value> {
    record["headers"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h[0] == name)
        .map(|h| h[1].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn records_that_do_not_read_are_reported_dead_lettered_and_replayed_as_they_were() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("mixed");
    let dlq = format!("{topic}.dlq");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&dlq, 1).await;
    broker.produce_batch(&topic, 0, &mixed()).await;
    let group = unique_name("g");

    let mut args = vec![
        "consume",
        "-b",
        &b,
        "-g",
        &group,
        "-e",
        "--format",
        "json",
        "--key-format",
        "string",
        "--value-format",
        "json",
        "--dlq-topic",
        &dlq,
    ];
    args.push(&topic);
    let run = kcon(&args).await.ok();

    // The records that read, their values as JSON values; the tombstone's as null.
    let written = by_offset(&run.json_lines());
    assert_eq!(written.keys().copied().collect::<Vec<_>>(), [0, 2, 3, 5]);
    assert_eq!(written[&0]["value"], json!({"id": 0}));
    assert_eq!(written[&2]["value"], json!([1, "two"]));
    assert_eq!(written[&3]["value"], Value::Null);
    assert_eq!(written[&5]["key"], "k5");
    // The others reported on stderr with their coordinates.
    let reports: Vec<Value> = run
        .json_events()
        .into_iter()
        .filter(|e| e["error"] == "deserialize")
        .collect();
    let reported: Vec<(i64, String)> = reports
        .iter()
        .map(|r| {
            (
                r["offset"].as_i64().unwrap(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reported, [(1, "json".to_owned()), (4, "json".to_owned())]);
    assert!(
        reports
            .iter()
            .all(|r| r["topic"] == topic.as_str() && r["partition"] == 0)
    );
    assert!(
        reports
            .iter()
            .all(|r| r["dead_letter_topic"] == dlq.as_str())
    );
    // The group committed past them: the dead-letter topic had them first.
    let describe = kcon(&["group", "describe", "-b", &b, "--format", "json", &group])
        .await
        .ok();
    let parts = described_partitions(&serde_json::from_str(&describe.stdout).unwrap());
    assert_eq!(parts[&(topic.clone(), 0)].0, Some(6), "{}", describe.stdout);

    // The dead letters: the original key, value and headers, then where and why.
    let letters = kcon(&["consume", "-b", &b, "-e", "--format", "json", &dlq])
        .await
        .ok()
        .json_lines();
    assert_eq!(letters.len(), 2, "exactly once each: {letters:?}");
    for (letter, offset) in letters.iter().zip([1, 4]) {
        let original = &mixed()[offset];
        let original_value = original.value.clone().unwrap();
        let value_json = match std::str::from_utf8(&original_value) {
            Ok(text) => json!(text),
            Err(_) => json!({"base64": "//4="}),
        };
        assert_eq!(letter["value"], value_json, "@{offset}");
        assert_eq!(letter["key"], format!("k{offset}"));
        assert_eq!(letter["headers"][0], json!(["trace", format!("t{offset}")]));
        assert_eq!(header(letter, "kcon.dlq.source.topic"), Some(json!(topic)));
        assert_eq!(
            header(letter, "kcon.dlq.source.offset"),
            Some(json!(offset.to_string()))
        );
        assert_eq!(
            header(letter, "kcon.dlq.stage"),
            Some(json!("deserialize.value"))
        );
        assert_eq!(header(letter, "kcon.dlq.group"), Some(json!(group)));
    }

    // Replayed where they came from: the originals again, at the end of the partition.
    let dry = kcon(&["dlq", "replay", "-b", &b, "--from", &dlq, "--dry-run"])
        .await
        .ok();
    assert_eq!(dry.json_lines().len(), 2, "{}", dry.stdout);
    assert!(dry.stderr.contains("would replay 2 of 2"), "{}", dry.stderr);
    let replay = kcon(&["dlq", "replay", "-b", &b, "--from", &dlq])
        .await
        .ok();
    assert!(
        replay.stderr.contains("replayed 2 of 2"),
        "{}",
        replay.stderr
    );
    let all = by_offset(
        &kcon(&["consume", "-b", &b, "-e", "--format", "json", &topic])
            .await
            .ok()
            .json_lines(),
    );
    assert_eq!(all.len(), 8, "six originals and two copies");
    for (copy, original) in [(6, 1), (7, 4)] {
        for field in ["key", "value", "headers"] {
            assert_eq!(
                all[&copy][field], all[&original][field],
                "{field} of @{original}"
            );
        }
    }

    // --where picks letters by their headers; --to sends them elsewhere.
    let other = unique_name("other");
    broker.create_topic(&other, 2).await;
    let replay = kcon(&[
        "dlq", "replay", "-b", &b, "--from", &dlq, "--to", &other, "--where", "offset=4",
    ])
    .await
    .ok();
    assert!(
        replay
            .stderr
            .contains("replayed 1 of 2 dead letters (1 left out"),
        "{}",
        replay.stderr
    );
    let moved = kcon(&["consume", "-b", &b, "-e", "--format", "json", &other])
        .await
        .ok()
        .json_lines();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["value"], all[&4]["value"]);
    assert_eq!(moved[0]["headers"], all[&4]["headers"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_dead_letter_topic_a_record_that_does_not_read_is_reported_and_passed() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("mixed");
    broker.create_topic(&topic, 1).await;
    broker.produce_batch(&topic, 0, &mixed()).await;
    let run = kcon(&[
        "consume",
        "-b",
        &b,
        "-e",
        "--value-format",
        "string",
        &topic,
    ])
    .await
    .ok();
    // Text output: every record that is UTF-8 (JSON or not), the tombstone as (null).
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(lines.contains(&format!("{topic}/0@1 key=k1 {{not json").as_str()));
    assert!(lines.contains(&format!("{topic}/0@3 key=k3 (null)").as_str()));
    let reports = run.json_events();
    assert_eq!(reports.len(), 1, "{}", run.stderr);
    assert_eq!(
        (reports[0]["offset"].as_i64(), reports[0]["kind"].as_str()),
        (Some(4), Some("utf8"))
    );
    assert!(reports[0].get("dead_letter_topic").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_topic_that_is_also_read_is_a_usage_error() {
    let run = kcon(&["consume", "-b", "127.0.0.1:9", "--dlq-topic", "t", "t"]).await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(
        run.stderr.contains("--dlq-topic t is also a topic to read"),
        "{}",
        run.stderr
    );
}
