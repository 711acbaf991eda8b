//! `kcon consume` against librdkafka's mock cluster at the versions it advertises: the first
//! command a user testing against the mock runs. (The mock answers every flexible Metadata
//! request with a byte after the message; `kcon` must read past it, as the Java client and
//! librdkafka do.)

mod common;

use std::collections::BTreeMap;

use common::kcon;
use kcon_admin::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::mock::{CoordinatorType, MockCluster};
use kcon_tests::offsets::{now_ms, produce};

/// Records per partition: a different count each, so that a partition read twice or not at
/// all shows.
const RECORDS: [usize; 3] = [4, 5, 6];

#[tokio::test(flavor = "multi_thread")]
async fn consume_to_the_end_reads_every_partition_of_a_three_broker_mock() {
    let mock = MockCluster::start(3);
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("T");
    mock.create_topic(&topic, 3, 3);
    // One partition led by each broker.
    for (p, id) in [(0, 1), (1, 2), (2, 3)] {
        mock.set_leader(&topic, p, id);
    }
    let pool = Pool::new(kcon_tests::pool::config(&b)).expect("a pool");
    for (p, &n) in RECORDS.iter().enumerate() {
        produce(&pool, &topic, p as i32, n, now_ms()).await;
    }
    let expected: BTreeMap<(i64, i64), String> = RECORDS
        .iter()
        .enumerate()
        .flat_map(|(p, &n)| (0..n as i64).map(move |o| ((p as i64, o), format!("value-{o}"))))
        .collect();

    // As a new user would, in the default text format: one line per record (no key here, so
    // none is written).
    let run = kcon(&["consume", "-b", &b, "-e", &topic]).await.ok();
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    let mut want: Vec<String> = expected
        .iter()
        .map(|((p, o), v)| format!("{topic}/{p}@{o} {v}"))
        .collect();
    want.sort();
    assert_eq!(lines, want, "{run:?}");

    // JSON: every record once, with its value.
    let run = kcon(&["consume", "-b", &b, "--format", "json", "-e", &topic])
        .await
        .ok();
    let mut got = BTreeMap::new();
    for l in run.json_lines() {
        assert_eq!(l["topic"], topic.as_str(), "{l}");
        let at = (
            l["partition"].as_i64().expect("partition"),
            l["offset"].as_i64().expect("offset"),
        );
        let value = l["value"].as_str().expect("a text value").to_owned();
        assert!(got.insert(at, value).is_none(), "{at:?} twice");
    }
    assert_eq!(got, expected);
}

/// `-X group.protocol=consumer` joins a KIP-848 group (the mock offers ConsumerGroupHeartbeat):
/// the first run reads every record and commits, a second run of the group reads nothing new.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_protocol_group_reads_everything_once() {
    let mock = kcon_tests::kip848::mock();
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("T");
    let group = unique_name("g");
    mock.create_topic(&topic, 3, 3);
    let pool = Pool::new(kcon_tests::pool::config(&b)).expect("a pool");
    for (p, &n) in RECORDS.iter().enumerate() {
        produce(&pool, &topic, p as i32, n, now_ms()).await;
    }
    let args = [
        "consume",
        "-b",
        &b,
        "-g",
        &group,
        "-X",
        "group.protocol=consumer",
        "--format",
        "json",
        "-e",
        &topic,
    ];
    let run = kcon(&args).await.ok();
    let mut got = BTreeMap::new();
    for l in run.json_lines() {
        let at = (
            l["partition"].as_i64().expect("partition"),
            l["offset"].as_i64().expect("offset"),
        );
        assert!(got.insert(at, ()).is_none(), "{at:?} twice");
    }
    assert_eq!(got.len(), RECORDS.iter().sum::<usize>(), "{run:?}");
    let run = kcon(&args).await.ok();
    assert_eq!(
        run.stdout, "",
        "the second run must read nothing new: {run:?}"
    );
}

/// `kcon group describe` of a consumer-protocol group on the mock cluster, which offers neither
/// ConsumerGroupDescribe nor DescribeGroups: a clear error naming the API, exit status 1 (the
/// output for a described consumer-protocol group is tested in the tool's unit tests, and
/// kcon-admin's ConsumerGroupDescribe against a scripted broker).
#[tokio::test(flavor = "multi_thread")]
async fn group_describe_on_the_mock_names_the_api_it_lacks() {
    use kcon_tests::group::{Member, partitions};
    use kcon_tests::kip848::{RECONCILED_WITHIN, consumer_config, wait_for_reconciled};

    let mock = kcon_tests::kip848::mock();
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("T");
    let group = unique_name("g");
    mock.create_topic(&topic, 2, 3);
    let member = Member::start("a", &b, consumer_config(&group, &[]), &[&topic]);
    wait_for_reconciled(&[&member], &partitions(&topic, 2), RECONCILED_WITHIN).await;
    let run = kcon(&["group", "describe", "-b", &b, &group]).await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(
        run.stderr.contains("does not offer DescribeGroups"),
        "{run:?}"
    );
    member.close().await;
}

/// `kcon share consume` joins a share group (KIP-932): with `--ack release -c 5` it writes five
/// records and hands every record of its batch back (those written released, the rest never
/// written); the next run reads all ten again with delivery count 2, accepting them
/// (implicitly), so a third run has nothing to read.
///
/// The mock ends every share session on a broker, releasing its records, when any connection
/// to that broker closes, and each run closes its pools' bootstrap connections once the
/// metadata names the brokers, about when its session opens: a run's acknowledgements would
/// then be refused (SHARE_SESSION_NOT_FOUND) as often as that close comes after the session's
/// first ShareFetch. So the runs bootstrap from broker 1, the group's coordinator, and the
/// partition is led by broker 2, where no connection closes while a run's session is open.
#[tokio::test(flavor = "multi_thread")]
async fn share_consume_releases_and_accepts() {
    let mock = MockCluster::start(2);
    // Where a new share group starts: earliest, so the records can be there first.
    mock.set_sharegroup("auto_offset_reset", 1);
    let b = mock.broker_addr(1).to_string();
    let topic = unique_name("T");
    let group = unique_name("g");
    mock.create_topic(&topic, 1, 1);
    mock.set_leader(&topic, 0, 2);
    mock.set_coordinator(CoordinatorType::Group, &group, 1);
    let pool = Pool::new(kcon_tests::pool::config(&b)).expect("a pool");
    produce(&pool, &topic, 0, 10, now_ms()).await;
    drop(pool);

    let run = kcon(&[
        "share", "consume", "-b", &b, "-g", &group, "--ack", "release", "-c", "5", "--format",
        "json", &topic,
    ])
    .await
    .ok();
    let first = run.json_lines();
    assert_eq!(first.len(), 5, "{run:?}");
    assert!(first.iter().all(|l| l["delivery_count"] == 1), "{run:?}");

    let run = kcon(&[
        "share", "consume", "-b", &b, "-g", &group, "-c", "10", "--format", "json", &topic,
    ])
    .await
    .ok();
    let mut offsets: Vec<i64> = run
        .json_lines()
        .iter()
        .map(|l| {
            assert_eq!(l["delivery_count"], 2, "{l}");
            l["offset"].as_i64().expect("offset")
        })
        .collect();
    offsets.sort();
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>(), "{run:?}");

    // Everything was accepted: a third run waits for nothing and is stopped.
    let third = common::Running::start(&[
        "share", "consume", "-b", &b, "-g", &group, "--format", "json", &topic,
    ]);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    third.interrupt();
    let (status, stdout, stderr) = third.wait(std::time::Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    // Records read again mean the second run's acceptance did not take: what it logged (an
    // acknowledgement that failed is told at warn) says where it went.
    assert!(
        stdout.is_empty(),
        "{stdout:?}\nthe second run: {run:?}\nthe third run's stderr: {stderr:?}"
    );
}
