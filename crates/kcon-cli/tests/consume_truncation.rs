//! `kcon consume` across a log truncated under it (an unclean leader election), on a scripted
//! broker that really truncates: the log ends at 15 in leader epoch 0, then a new leader at
//! epoch 1 holds only 0..10 and takes 3 new records (values `"{offset}@1"`).
//!
//! In every mode (a group, assigned partitions, the `--dlq-topic` processor) the tool reads on
//! from where the logs part, reads the new records and exits 0, with one WARN line on stderr
//! naming the partition, the old position and the new one; it used to exit 1 on the
//! truncation, and a group whose commit lay past the new log end exited 1 at every start.

mod common;

use std::time::Duration;

use common::{Running, kcon};
use kcon_tests::brokers::unique_name;
use kcon_tests::truncation::{TruncatingBroker, value};
use serde_json::Value;

/// How long lines may take to come.
const PATIENCE: Duration = Duration::from_secs(30);

/// Where the new leader's log parts from the old one.
const DIVERGES_AT: i64 = 10;
/// The old log's end.
const OLD_END: i64 = 15;
/// Records the new leader takes after the election.
const NEW: i64 = 3;

/// A broker whose log of `topic` holds 0..15 in epoch 0, in two batches (0..10, 10..15).
async fn old_log(topic: &str) -> TruncatingBroker {
    let broker = TruncatingBroker::start(topic).await;
    broker.append(DIVERGES_AT as usize);
    broker.append((OLD_END - DIVERGES_AT) as usize);
    broker
}

/// The unclean election: the log ends at 10 from epoch 1 on, and takes 3 new records.
fn elect_uncleanly(broker: &TruncatingBroker) {
    broker.truncate_and_bump_epoch(DIVERGES_AT);
    broker.append(NEW as usize);
}

/// `(offset, value)` of each `--format json` line.
fn read<S: AsRef<str>>(lines: &[S]) -> Vec<(i64, String)> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l.as_ref())
                .unwrap_or_else(|e| panic!("{:?}: {e}", l.as_ref()));
            (
                v["offset"].as_i64().expect("an offset"),
                v["value"].as_str().expect("a text value").to_owned(),
            )
        })
        .collect()
}

/// `(offset, value)` of the records `offsets` as written in `epoch`.
fn written(offsets: std::ops::Range<i64>, epoch: i32) -> Vec<(i64, String)> {
    offsets.map(|o| (o, value(o, epoch))).collect()
}

/// Asserts `stderr` holds one WARN line of the truncation of `topic`-0 from 15 back to 10.
fn assert_warned_once<S: AsRef<str>>(stderr: &[S], topic: &str) {
    let partition = format!("{topic}-0");
    let warns: Vec<&str> = stderr
        .iter()
        .map(AsRef::as_ref)
        .filter(|l| l.contains("WARN") && l.contains("truncated"))
        .collect();
    assert_eq!(
        warns.len(),
        1,
        "one WARN line: {stderr:#?}",
        stderr = stderr.iter().map(AsRef::as_ref).collect::<Vec<_>>()
    );
    for part in [
        format!("the log of {partition} was truncated under offset {OLD_END}"),
        format!("reading on from offset {DIVERGES_AT}"),
    ] {
        assert!(warns[0].contains(&part), "{part:?} not in {:?}", warns[0]);
    }
}

/// A group read the old log and committed 15; the log is truncated and ends at 13, behind the
/// commit. The next `kcon consume` of the group reads the 3 new records and exits 0 (it
/// exited 1, and so did every run after it, reading nothing).
#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_commit_lies_past_the_truncated_log_reads_the_new_records() {
    let topic = unique_name("truncated");
    let group = unique_name("g");
    let broker = old_log(&topic).await;
    let b = broker.bootstrap();
    let args = |count| {
        [
            "consume", "-b", &b, "-g", &group, "--format", "json", "-c", count, &topic,
        ]
    };
    let run = kcon(&args("15")).await.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(read(&lines), written(0..OLD_END, 0), "{run:?}");
    assert_eq!(broker.committed(&group), Some((OLD_END, 0)));

    elect_uncleanly(&broker);
    let run = kcon(&args("3")).await;
    assert_eq!(run.code(), 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        read(&lines),
        written(DIVERGES_AT..DIVERGES_AT + NEW, 1),
        "{run:?}"
    );
    let stderr: Vec<&str> = run.stderr.lines().collect();
    assert_warned_once(&stderr, &topic);
    assert_eq!(broker.committed(&group), Some((DIVERGES_AT + NEW, 1)));
    assert_eq!(broker.unexpected(), Vec::<String>::new());
}

/// `kcon consume` of `topic` with `extra` arguments runs while the log is truncated under it:
/// it reads the old log (15 lines), then the 3 new records, and exits 0 at `-c 18`.
async fn reads_on_while_running(extra: &[&str]) {
    let topic = unique_name("truncated");
    let broker = old_log(&topic).await;
    let b = broker.bootstrap();
    let mut args = vec!["consume", "-b", &b, "--format", "json", "-c", "18"];
    args.extend_from_slice(extra);
    args.push(&topic);
    let mut running = Running::start(&args);
    let old = running.stdout_lines(OLD_END as usize, PATIENCE).await;
    assert_eq!(read(&old), written(0..OLD_END, 0));

    elect_uncleanly(&broker);
    let new = running.stdout_lines(NEW as usize, PATIENCE).await;
    assert_eq!(read(&new), written(DIVERGES_AT..DIVERGES_AT + NEW, 1));
    let (status, rest, stderr) = running.wait(PATIENCE).await;
    assert!(status.success(), "{status}: {stderr:#?}");
    assert_eq!(rest, Vec::<String>::new());
    assert_warned_once(&stderr, &topic);
    assert_eq!(broker.unexpected(), Vec::<String>::new());
}

/// Assigned partitions (no group).
#[tokio::test(flavor = "multi_thread")]
async fn assigned_partitions_read_on_across_a_truncation() {
    reads_on_while_running(&[]).await;
}

/// A group member, live when the log is truncated.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_member_reads_on_across_a_truncation() {
    let group = unique_name("g");
    reads_on_while_running(&["-g", &group]).await;
}

/// `--dlq-topic`: the records go through kcon's processor, which runs on too.
#[tokio::test(flavor = "multi_thread")]
async fn the_dead_letter_processor_reads_on_across_a_truncation() {
    let group = unique_name("g");
    reads_on_while_running(&["-g", &group, "--dlq-topic", "truncated.dlq"]).await;
}
