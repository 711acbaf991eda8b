//! `kcon produce` on Apache Kafka 4.4 (`Kafka::single()`; `Kafka::noauto()` for a broker that
//! creates no topic on demand; 3.9.1 beside it for a topic created on demand): partitions by key
//! as the Java producer chooses them, JSON input that round-trips `kcon consume --format json`,
//! codecs, idempotence and transactions, bad input, missing topics.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Broker, TestRecord, kcon, kcon_with_input};
use kcon_tests::brokers::{installed, unique_name};
use kcon_tests::kafka::Kafka;
use serde_json::{Value, json};

/// The partition of each key among `partitions` by kafka-python's murmur2 partitioner (an
/// independent implementation of the Java client's).
fn partitions_by_peer(keys: &[String], partitions: usize) -> Vec<i64> {
    let script = "import json, sys\n\
                  from kafka.partitioner.default import murmur2\n\
                  keys = json.loads(sys.argv[1])\n\
                  n = int(sys.argv[2])\n\
                  print(json.dumps([(murmur2(k.encode()) & 0x7fffffff) % n for k in keys]))";
    let out = Command::new(&installed().python)
        .args([
            "-c",
            script,
            &serde_json::to_string(keys).unwrap(),
            &partitions.to_string(),
        ])
        .output()
        .expect("run kafka-python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

async fn consume_all(bootstrap: &str, topic: &str) -> Vec<Value> {
    kcon(&["consume", "-b", bootstrap, "--format", "json", "-e", topic])
        .await
        .ok()
        .json_lines()
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_lines_land_where_the_java_producer_puts_them() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("keyed");
    broker.create_topic(&topic, 4).await;
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut input = String::new();
    for (i, k) in keys.iter().enumerate() {
        input.push_str(&format!("{k}::v{i}::x\n"));
    }
    // Lines without the delimiter have a null key: one per partition in turn.
    for i in 0..8 {
        input.push_str(&format!("no key {i}\n"));
    }
    let run = kcon_with_input(&["produce", "-b", &b, &topic, "-K", "::"], input.as_bytes())
        .await
        .ok();
    assert!(
        run.stderr.contains("produced 308 records"),
        "{}",
        run.stderr
    );

    let records = consume_all(&b, &topic).await;
    assert_eq!(records.len(), 308);
    let expected = partitions_by_peer(&keys, 4);
    let mut null_keys = BTreeMap::new();
    for r in &records {
        match r["key"].as_str() {
            Some(k) => {
                let i: usize = k["user-".len()..].parse().unwrap();
                assert_eq!(r["partition"], json!(expected[i]), "{r}");
                assert_eq!(r["value"], json!(format!("v{i}::x")), "{r}");
            }
            None => {
                *null_keys
                    .entry(r["partition"].as_i64().unwrap())
                    .or_insert(0) += 1
            }
        }
    }
    assert_eq!(null_keys, BTreeMap::from([(0, 2), (1, 2), (2, 2), (3, 2)]));
    // Each partition keeps the input order.
    for p in 0..4 {
        let values: Vec<usize> = records
            .iter()
            .filter(|r| r["partition"] == p && r["key"].is_string())
            .map(|r| r["key"].as_str().unwrap()["user-".len()..].parse().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_input_reproduces_what_consume_wrote_with_every_codec() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let source = unique_name("source");
    broker.create_topic(&source, 2).await;
    broker
        .produce_batch(
            &source,
            1,
            &[
                TestRecord {
                    timestamp: 1_600_000_000_000,
                    key: None,
                    value: Some(b"\x00\xffraw".to_vec()),
                    headers: vec![
                        (b"h".to_vec(), None),
                        (b"h".to_vec(), Some(b"\xfe".to_vec())),
                    ],
                },
                TestRecord {
                    timestamp: 1_600_000_000_001,
                    key: Some(b"k".to_vec()),
                    value: None,
                    headers: vec![],
                },
            ],
        )
        .await;
    let written = kcon(&["consume", "-b", &b, "--format", "json", "-e", &source])
        .await
        .ok();
    assert_eq!(written.json_lines().len(), 2);

    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let copy = unique_name(&format!("copy-{codec}"));
        broker.create_topic(&copy, 2).await;
        kcon_with_input(
            &[
                "produce", "-b", &b, &copy, "--format", "json", "-z", codec, "-H", "via=kcon",
            ],
            written.stdout.as_bytes(),
        )
        .await
        .ok();
        let copied = consume_all(&b, &copy).await;
        assert_eq!(copied.len(), 2, "{codec}");
        for (orig, got) in written.json_lines().iter().zip(&copied) {
            let mut want = orig.clone();
            want["topic"] = json!(copy);
            want["headers"]
                .as_array_mut()
                .unwrap()
                .push(json!(["via", "kcon"]));
            assert_eq!(got, &want, "{codec}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_and_bad_partitions_are_refused() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("strict");
    broker.create_topic(&topic, 2).await;

    let run = kcon_with_input(
        &["produce", "-b", &b, &topic, "--format", "json"],
        b"{\"value\":\"fine\"}\n{\"value\":5}\n",
    )
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.contains("input line 2"), "{}", run.stderr);

    let run = kcon_with_input(
        &["produce", "-b", &b, &topic, "--format", "json"],
        b"{\"value\":\"v\",\"partition\":7}\n",
    )
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr.contains("partition 7 does not exist"),
        "{}",
        run.stderr
    );

    let run = kcon_with_input(&["produce", "-b", &b, &topic, "-p", "2"], b"v\n").await;
    assert_eq!(run.code(), 2, "{run:?}");

    // -p puts every record in one partition. (The topic also has the good line before the
    // bad one above.)
    kcon_with_input(&["produce", "-b", &b, &topic, "-p", "1"], b"a\nb\nc\n")
        .await
        .ok();
    let records = consume_all(&b, &topic).await;
    let fine: Vec<&Value> = records.iter().filter(|r| r["value"] == "fine").collect();
    assert_eq!(fine.len(), 1, "{records:?}");
    let partitions: Vec<&Value> = records
        .iter()
        .filter(|r| r["value"] != "fine")
        .map(|r| &r["partition"])
        .collect();
    assert_eq!(partitions, [&json!(1), &json!(1), &json!(1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn producer_properties_are_taken_with_x() {
    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("props");
    broker.create_topic(&topic, 2).await;

    // Refused before anything is sent, naming the property.
    let run = kcon_with_input(&["produce", "-b", &b, &topic, "-X", "acks=0"], b"v\n").await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(run.stderr.contains("acks"), "{}", run.stderr);
    let run = kcon_with_input(
        &["produce", "-b", &b, &topic, "-X", "linger.ms=soon"],
        b"v\n",
    )
    .await;
    assert_eq!(run.code(), 2, "{run:?}");
    assert!(run.stderr.contains("linger.ms"), "{}", run.stderr);

    // Idempotence on: every line once.
    let input: String = (0..50).map(|i| format!("k{i}::v{i}\n")).collect();
    let run = kcon_with_input(
        &[
            "produce",
            "-b",
            &b,
            &topic,
            "-K",
            "::",
            "-X",
            "enable.idempotence=true",
            "-X",
            "linger.ms=0",
        ],
        input.as_bytes(),
    )
    .await
    .ok();
    assert!(run.stderr.contains("produced 50 records"), "{}", run.stderr);
    let records = consume_all(&b, &topic).await;
    let mut values: Vec<String> = records
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    values.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    assert_eq!(values, (0..50).map(|i| format!("v{i}")).collect::<Vec<_>>());

    // A transactional.id: the whole input is one committed transaction, read back by a
    // read_committed consumer.
    let committed = unique_name("props-txn");
    broker.create_topic(&committed, 1).await;
    let input: String = (0..20).map(|i| format!("t{i}\n")).collect();
    let txn_id = unique_name("cli-tx");
    let run = kcon_with_input(
        &[
            "produce",
            "-b",
            &b,
            &committed,
            "-X",
            &format!("transactional.id={txn_id}"),
        ],
        input.as_bytes(),
    )
    .await
    .ok();
    assert!(run.stderr.contains("produced 20 records"), "{}", run.stderr);
    let read = kcon(&[
        "consume",
        "-b",
        &b,
        "--format",
        "json",
        "-e",
        "-X",
        "isolation.level=read_committed",
        &committed,
    ])
    .await
    .ok()
    .json_lines();
    let values: Vec<&str> = read.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, (0..20).map(|i| format!("t{i}")).collect::<Vec<_>>());
}

/// Lines written a few at a time go out as they come, not once a thousand have come or the
/// input ended: a record written to a `kcon produce` whose stdin stays open reaches the
/// topic while it is still open (a consumer started beside a slow writer used to read nothing
/// for as long as a thousand lines took).
#[tokio::test(flavor = "multi_thread")]
async fn lines_written_slowly_are_sent_as_they_come() {
    use tokio::io::AsyncWriteExt;

    let broker = Broker::single();
    let b = broker.bootstrap();
    let topic = unique_name("slow");
    broker.create_topic(&topic, 1).await;
    let mut c = common::command(&["produce", "-b", &b, &topic]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("run kcon");
    let mut stdin = child.stdin.take().expect("piped stdin");
    for (i, value) in ["first", "second"].into_iter().enumerate() {
        stdin
            .write_all(format!("{value}\n").as_bytes())
            .await
            .expect("a line written");
        stdin.flush().await.expect("flushed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let values: Vec<Value> = consume_all(&b, &topic)
                .await
                .into_iter()
                .map(|r| r["value"].clone())
                .collect();
            if values.len() == i + 1 {
                assert_eq!(values[i], json!(value), "{values:?}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{value:?} not produced while stdin stayed open: {values:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    drop(stdin);
    let run = common::finish(child, &["produce"]).await;
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(consume_all(&b, &topic).await.len(), 2);
}

/// `kcon produce` to a missing topic on Apache Kafka 4.4 and 3.9.1 at their defaults
/// (`auto.create.topics.enable=true`): it asks for the topic as the Java producer does
/// (allow_auto_topic_creation=true), so the broker creates it, and the records land in it (it
/// said `unknown topic`, having asked without creation).
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_created_as_for_the_java_producer() {
    for (version, kafka) in [("4.4", Kafka::single()), ("3.9.1", Kafka::kafka39())] {
        let topic = unique_name("created-on-produce");
        let run = kcon_with_input(&["produce", "-b", kafka.bootstrap(), &topic], b"a\nb\n").await;
        assert_eq!(run.code(), 0, "{version}: {run:?}");
        assert!(
            run.stderr
                .contains(&format!("produced 2 records to {topic}")),
            "{version}: {}",
            run.stderr
        );
        // Kafka's own tool sees the topic, with the broker's num.partitions (1).
        let described = kafka.tool(
            "org.apache.kafka.tools.TopicCommand",
            &["--describe", "--topic", &topic],
        );
        assert!(
            described.contains("PartitionCount: 1"),
            "{version}: {described}"
        );
        let values: Vec<String> = consume_all(kafka.bootstrap(), &topic)
            .await
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(values, ["a", "b"], "{version}");
    }
}

/// `kcon produce` to a missing topic on an Apache Kafka broker with
/// `auto.create.topics.enable=false`: the broker answers UNKNOWN_TOPIC_OR_PARTITION although
/// asked to create it (as Kafka answers the request that does create it, elsewhere), and after
/// 10 s of asking the error says so, naming the broker setting and `kcon topic create`;
/// nothing is created.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_creates_no_topic_on_demand_is_named_with_what_to_do() {
    let kafka = Kafka::noauto();
    let topic = unique_name("not-created");
    let run = kcon_with_input(&["produce", "-b", kafka.bootstrap(), &topic], b"a\n").await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "unknown topic {topic:?}: the brokers did not create it within 10 s of being asked \
             (they create a topic a producer asks for only with \
             auto.create.topics.enable=true); create it with `kcon topic create`"
        )),
        "{}",
        run.stderr
    );
    let listed = kafka.tool("org.apache.kafka.tools.TopicCommand", &["--list"]);
    assert!(!listed.contains(&topic), "{listed}");
}

/// A `kcon produce` that stops at a bad input line first produces every good line before it,
/// also those read together with the bad one (they were dropped, unsent): on Apache Kafka
/// exactly those records are in the topic, in order, and the exit names the line.
#[tokio::test(flavor = "multi_thread")]
async fn the_good_lines_before_a_bad_one_are_produced() {
    let broker = Broker::single();
    let kafka = broker.kafka;
    let topic = unique_name("bad-line");
    broker.create_topic(&topic, 1).await;
    let mut input: String = (0..10)
        .map(|i| format!("{{\"value\":\"v{i}\"}}\n"))
        .collect();
    input.push_str("{\"value\":5}\n{\"value\":\"after\"}\n");
    let run = kcon_with_input(
        &[
            "produce",
            "-b",
            kafka.bootstrap(),
            &topic,
            "--format",
            "json",
        ],
        input.as_bytes(),
    )
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr.contains("input line 11: value:"),
        "{}",
        run.stderr
    );
    let values: Vec<String> = consume_all(kafka.bootstrap(), &topic)
        .await
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    let wanted: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    assert_eq!(values, wanted);
}

/// A transactional `kcon produce` that stops at a bad input line aborts the open transaction
/// and says so, with how many records it held (it said only what was wrong with the line): on
/// Apache Kafka, a read_committed reader then reads none of them, a read_uncommitted one all of
/// them.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_line_in_a_transaction_says_how_many_records_were_aborted() {
    let broker = Broker::single();
    let kafka = broker.kafka;
    let topic = unique_name("txn-bad-line");
    broker.create_topic(&topic, 1).await;
    let mut input: String = (0..3000)
        .map(|i| format!("{{\"value\":\"v{i}\"}}\n"))
        .collect();
    input.push_str("[1]\n{\"value\":\"after\"}\n");
    let txn_id = unique_name("cli-txn-bad-line");
    let run = kcon_with_input(
        &[
            "produce",
            "-b",
            kafka.bootstrap(),
            &topic,
            "--format",
            "json",
            "-X",
            &format!("transactional.id={txn_id}"),
        ],
        input.as_bytes(),
    )
    .await;
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "input line 3001: not a JSON object; the open transaction's 3000 records were aborted"
        ),
        "{}",
        run.stderr
    );
    // A record committed after them: a reader that reaches it has read past the aborted ones.
    kcon_with_input(&["produce", "-b", kafka.bootstrap(), &topic], b"after\n")
        .await
        .ok();
    let read = |isolation: &'static str| {
        let topic = topic.clone();
        async move {
            kcon(&[
                "consume",
                "-b",
                kafka.bootstrap(),
                "--format",
                "json",
                "-e",
                "-X",
                &format!("isolation.level={isolation}"),
                &topic,
            ])
            .await
            .ok()
            .json_lines()
        }
    };
    // The coordinator writes the abort markers after it answers EndTxn: until they are
    // written, the partition's last stable offset stays at the aborted transaction's first
    // record, and a read_committed reader that exits at the end reads nothing. Its read is
    // made again until it reaches past them (what it then reads is checked below).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let committed = loop {
        let got = read("read_committed").await;
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let values: Vec<&str> = committed
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["after"]);
    assert_eq!(read("read_uncommitted").await.len(), 3001);
}
