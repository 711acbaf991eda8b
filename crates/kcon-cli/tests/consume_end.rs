//! `kcon consume -e` on Apache Kafka (`Kafka::single()`): the tool exits as soon as every
//! partition is read to the end the Fetch answers give, with every record, and without waiting
//! for a Fetch the broker holds. `fetch.max.wait.ms` is 20 s here, so that a run that waited on
//! one cannot pass: the bounds on the time, well above what the tool takes, are far below it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Run, described_partitions, kcon, kcon_with_input};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, NewTopic, create};

/// What a Fetch the broker holds would cost.
const LONG_POLL: &str = "fetch.max.wait.ms=20000";
/// Generous: the tool takes well under a second here; a long poll takes 20 s.
const PROMPT: Duration = Duration::from_secs(8);

/// A topic on `Kafka::single()` with `counts[p]` records in partition `p` (values `p-i`),
/// written by `kcon produce`.
async fn topic(counts: &[usize]) -> String {
    let kafka = Kafka::single();
    let pool = Pool::new(kcon_tests::pool::config(kafka.bootstrap())).unwrap();
    let name = unique_name("end");
    create(&pool, &[NewTopic::new(&name, counts.len() as i32)]).await;
    for (p, &n) in counts.iter().enumerate() {
        let lines: String = (0..n).map(|i| format!("{p}-{i}\n")).collect();
        let partition = p.to_string();
        kcon_with_input(
            &["produce", "-b", kafka.bootstrap(), &name, "-p", &partition],
            lines.as_bytes(),
        )
        .await
        .ok();
    }
    name
}

/// Runs `kcon consume -e ARGS --format json` with the long poll, timed.
async fn consume_to_end(args: &[&str]) -> (Run, Duration) {
    let mut all = vec![
        "consume",
        "-e",
        "-b",
        Kafka::single().bootstrap(),
        "--format",
        "json",
        "-X",
        LONG_POLL,
    ];
    all.extend_from_slice(args);
    let started = Instant::now();
    let run = kcon(&all).await.ok();
    (run, started.elapsed())
}

/// The values read, by partition, in order.
fn by_partition(run: &Run) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for l in run.json_lines() {
        out.entry(l["partition"].as_i64().unwrap())
            .or_default()
            .push(l["value"].as_str().unwrap().to_owned());
    }
    out
}

fn expected(counts: &[usize]) -> BTreeMap<i64, Vec<String>> {
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(p, &n)| (p as i64, (0..n).map(|i| format!("{p}-{i}")).collect()))
        .collect()
}

/// Records read over many Fetch answers (small ones, `max.partition.fetch.bytes`), batches
/// split by `max.poll.records`: every record once, in order, and the end found from the answer
/// that brought the last ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_at_end_ends_with_the_last_record_not_a_long_poll_later() {
    let counts = [3_000, 2_000, 1_000];
    let topic = topic(&counts).await;
    let (run, took) = consume_to_end(&[
        "-X",
        "max.partition.fetch.bytes=8192",
        "-X",
        "max.poll.records=70",
        &topic,
    ])
    .await;
    assert_eq!(by_partition(&run), expected(&counts));
    eprintln!("6000 records in {took:?}");
    assert!(took < PROMPT, "{took:?}: {}", run.stderr);
}

/// Empty partitions are at their end at once: with records in another partition, and alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_partitions_are_at_their_end_at_once() {
    let counts = [0, 500, 0];
    let mixed = topic(&counts).await;
    let (run, took) = consume_to_end(&[&mixed]).await;
    assert_eq!(by_partition(&run), expected(&counts));
    assert!(took < PROMPT, "{took:?}: {}", run.stderr);

    let empty = topic(&[0, 0, 0]).await;
    let (run, took) = consume_to_end(&[&empty]).await;
    assert_eq!(run.stdout, "");
    assert!(took < PROMPT, "{took:?}: {}", run.stderr);
}

/// A group member with -e: it reads every record of what it is assigned, ends once all of it
/// is read, and commits where it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_with_exit_at_end_reads_everything_commits_and_ends() {
    let counts = [1_200, 0, 700];
    let topic = topic(&counts).await;
    let group = unique_name("end");
    let (run, took) = consume_to_end(&["-g", &group, &topic]).await;
    assert_eq!(by_partition(&run), expected(&counts));
    assert!(took < PROMPT, "{took:?}: {}", run.stderr);

    let described = kcon(&[
        "group",
        "describe",
        "-b",
        Kafka::single().bootstrap(),
        &group,
        "--format",
        "json",
    ])
    .await
    .ok();
    let partitions = described_partitions(&serde_json::from_str(&described.stdout).expect("JSON"));
    for (p, n) in [(0, 1_200), (2, 700)] {
        let (committed, end, _) = partitions[&(topic.clone(), p)];
        assert_eq!((committed, end), (Some(n), Some(n)), "{}", described.stdout);
    }
}
