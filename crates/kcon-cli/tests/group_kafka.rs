//! `kcon group describe | lag | reset-offsets` on Apache Kafka (the shared clusters of
//! `scripts/kafka`): 4.4 at its defaults, and 3.9.1 at its defaults (the consumer protocol
//! off).

mod common;

use std::time::Duration;

use common::{Running, kcon};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::config;
use serde_json::{Value, json};

/// How long a member started by a test may take to be assigned its partitions.
const ASSIGNED_WITHIN: Duration = Duration::from_secs(30);

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

/// A pool on `kafka` and a new topic of `partitions` partitions on it.
async fn topic(kafka: &Kafka, prefix: &str, partitions: i32) -> (Pool, String) {
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name(prefix);
    create_topics(&pool, &[(&topic, partitions)]).await;
    (pool, topic)
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

async fn describe_json(bootstrap: &str, group: &str) -> Value {
    let run = kcon(&[
        "group", "describe", "-b", bootstrap, group, "--format", "json",
    ])
    .await
    .ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// A member of a consumer-protocol group (KIP-848) subscribed by name: Apache Kafka describes
/// it with an empty regex, which is no regex: SUBSCRIBED shows the topic alone, no trailing
/// comma, and the JSON has no regex.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_subscribed_by_name_shows_its_topic_and_no_empty_regex() {
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let (_pool, topic) = topic(kafka, "named", 1).await;
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
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let (_pool, topic) = topic(kafka, "kip848-describe", 4).await;
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
    let kafka = Kafka::kafka39();
    let b = kafka.bootstrap();
    let (pool, topic) = topic(kafka, "classic39", 1).await;
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
    let kafka = Kafka::single();
    let b = kafka.bootstrap();
    let (pool, topic) = topic(kafka, "past-end", 1).await;
    kcon_tests::offsets::produce(&pool, &topic, 0, 100, kcon_tests::offsets::now_ms()).await;
    let group = unique_name("past-end");
    let outcomes = kcon_admin::commit_offsets(
        &pool,
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
