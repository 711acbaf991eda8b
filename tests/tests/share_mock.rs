//! Share groups (KIP-932) against librdkafka's mock cluster (ShareGroupHeartbeat, ShareFetch and
//! ShareAcknowledge v1): implicit and explicit acknowledgement, releases redelivered with their
//! delivery count raised, rejects never seen again, a closing member's records going to the
//! next, and each asserting the exact records; librdkafka's share consumer sharing a partition
//! with kcon; the builder's refusals. The same cases run on Apache Kafka 4.4 in
//! `share_kafka.rs`; here they run on the broker librdkafka's own share consumer is tested
//! against, with locks and delivery limits shorter than Kafka allows.
//!
//! Each test has a mock of its own, and opens every connection it will use before a record is
//! acquired: the mock closes every share session on a broker, releasing their records, when
//! any connection to that broker closes (a pool's bootstrap connection is closed once the
//! metadata names the brokers), so a test starting a client beside another's sessions would
//! see records redelivered that the protocol keeps locked. A new share group starts at the
//! log's end (the mock's `share.auto.offset.reset` is latest), so records are produced once
//! the member holds its partitions.

use std::collections::BTreeMap;
use std::time::Duration;

use kcon::Record;
use kcon::share::{AcknowledgeType, ShareConsumer};
use kcon_pool::{Pool, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::mock::MockCluster;
use kcon_tests::offsets::produce;
use kcon_tests::peers::SharePeer;
use kcon_tests::pool::config;
use kcon_tests::share::{JOIN_WITHIN, RECORDS_WITHIN, accept, joined, keep, quiet, receive, seen};
use tokio::time::{Instant, timeout};

/// A test's mock, a topic of `partitions` partitions and a group name, and a pool to produce
/// with whose connections are open already (see the module's documentation).
struct Setup {
    mock: MockCluster,
    pool: Pool,
    topic: String,
    group: String,
}

async fn setup(partitions: i32) -> Setup {
    let mock = MockCluster::start(1);
    let topic = unique_name("share");
    mock.create_topic(&topic, partitions, 1);
    let pool = Pool::new(config(mock.bootstrap())).unwrap();
    pool.refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .expect("the mock's metadata");
    Setup {
        mock,
        pool,
        topic,
        group: unique_name("share-group"),
    }
}

/// A share consumer of the mock; it asks for records every 200 ms.
fn share_consumer(mock: &MockCluster, group: &str, extra: &[(&str, &str)]) -> ShareConsumer {
    let mut props = vec![("fetch.max.wait.ms", "200")];
    props.extend_from_slice(extra);
    kcon_tests::share::consumer(mock.bootstrap(), group, &props)
}

/// Implicit acknowledgement: every record of three partitions is handed out once, with
/// delivery count 1; each batch is accepted when the next is asked for, so nothing comes
/// again, to this member or to one joining later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mode_hands_out_every_record_once() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(3).await;
    let mock = &mock;
    let mut c = share_consumer(mock, &group, &[]);
    joined(&mut c, &topic, 3).await;
    for p in 0..3 {
        produce(&pool, &topic, p, 10, 1_000).await;
    }
    let got = receive(&mut c, 30, RECORDS_WITHIN, keep).await;
    let expected: BTreeMap<(i32, i64), u16> = (0..3)
        .flat_map(|p| (0..10).map(move |o| ((p, o), 1)))
        .collect();
    assert_eq!(seen(&got), expected);
    assert_eq!(quiet(&mut c, keep).await, []);
    c.close().await.unwrap();
    let mut later = share_consumer(mock, &group, &[]);
    joined(&mut later, &topic, 3).await;
    assert_eq!(quiet(&mut later, keep).await, []);
    later.close().await.unwrap();
}

/// Explicit acknowledgement: released records come again with delivery count 2, rejected ones
/// never; the commit answers each partition's outcome; accepted, nothing comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_redelivers_and_reject_archives() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    let mock = &mock;
    let told = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let hook = told.clone();
    let mut c = ShareConsumer::builder()
        .set("bootstrap.servers", mock.bootstrap())
        .set("group.id", &group)
        .set("fetch.max.wait.ms", "200")
        .set("share.acknowledgement.mode", "explicit")
        .on_acknowledged(move |o| *hook.lock().unwrap() += o.offsets())
        .build()
        .unwrap();
    joined(&mut c, &topic, 1).await;
    produce(&pool, &topic, 0, 10, 1_000).await;
    let first = receive(&mut c, 10, RECORDS_WITHIN, |c, r| {
        let kind = if r.offset % 2 == 0 {
            AcknowledgeType::Release
        } else {
            AcknowledgeType::Reject
        };
        c.acknowledge(r, kind).unwrap();
    })
    .await;
    assert_eq!(seen(&first), (0..10).map(|o| ((0, o), 1)).collect());
    let outcomes = c.commit().await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(outcomes.iter().map(|o| o.offsets()).sum::<u64>(), 10);
    let again = receive(&mut c, 5, RECORDS_WITHIN, accept).await;
    assert_eq!(
        seen(&again),
        (0..10).step_by(2).map(|o| ((0, o), 2)).collect()
    );
    assert_eq!(quiet(&mut c, accept).await, []);
    // The last acknowledgements go with the close; the metrics before it count the rest.
    let m = c.metrics();
    assert_eq!(m.records_acquired, 15);
    assert_eq!((m.records_released, m.records_rejected), (5, 5));
    assert_eq!(m.delivery_counts, [10, 5, 0, 0, 0]);
    assert_eq!((m.commits, m.acknowledgements_failed), (1, 0));
    // The same, scraped (kcon-prometheus) and read by the Prometheus project's own parser.
    let mut registry = prometheus_client::registry::Registry::default();
    kcon_prometheus::RegisterMetrics::register_metrics(&c, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = kcon_tests::prometheus::parse_with_prometheus_client(&text);
    let labels = format!(r#"client_id="kcon",group="{group}""#);
    let get = |name: &str, extra: &str| -> f64 {
        // The parser sorts the labels: client_id, group, then le.
        let key = format!("{name}{{{labels}{extra}}}");
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
    };
    assert_eq!(get("kcon_share_records_acquired_total", ""), 15.0);
    assert_eq!(get("kcon_share_records_released_total", ""), 5.0);
    assert_eq!(get("kcon_share_records_rejected_total", ""), 5.0);
    assert_eq!(get("kcon_share_commits_total", ""), 1.0);
    assert_eq!(
        get("kcon_share_record_delivery_count_bucket", r#",le="1.0""#),
        10.0
    );
    assert_eq!(
        get("kcon_share_record_delivery_count_bucket", r#",le="2.0""#),
        15.0
    );
    assert_eq!(get("kcon_share_record_delivery_count_count", ""), 15.0);
    c.close().await.unwrap();
    assert_eq!(
        *told.lock().unwrap(),
        15,
        "every acknowledgement told to the hook"
    );
}

/// Explicit acknowledgement refuses the next batch while a record of the last is open, names
/// it, and hands the batch out once it is acknowledged; a record acknowledged twice, or not
/// of the last batch, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_refuses_the_next_batch_while_a_record_is_open() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    let mock = &mock;
    let mut c = share_consumer(
        mock,
        &group,
        &[
            ("share.acknowledgement.mode", "explicit"),
            ("max.poll.records", "2"),
        ],
    );
    joined(&mut c, &topic, 1).await;
    produce(&pool, &topic, 0, 4, 1_000).await;
    let batch = timeout(RECORDS_WITHIN, c.recv_batch())
        .await
        .expect("a batch")
        .unwrap();
    assert_eq!(batch.len(), 2, "max.poll.records");
    c.acknowledge(&batch[0], AcknowledgeType::Accept).unwrap();
    let e = c
        .acknowledge(&batch[0], AcknowledgeType::Reject)
        .unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    let e = c.recv_batch().await.unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    assert!(
        e.to_string().contains(&format!("@{}", batch[1].offset)),
        "{e}"
    );
    c.acknowledge(&batch[1], AcknowledgeType::Accept).unwrap();
    let next = receive(&mut c, 2, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&next), [((0, 2), 1), ((0, 3), 1)].into());
    let e = c
        .acknowledge(&batch[1], AcknowledgeType::Accept)
        .unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    c.close().await.unwrap();
}

/// A member that closes with records unacknowledged releases them: the next member gets
/// exactly those, with delivery count 2, and none of those the first accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_what_was_not_acknowledged() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    let mock = &mock;
    let mut first = share_consumer(mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    joined(&mut first, &topic, 1).await;
    produce(&pool, &topic, 0, 10, 1_000).await;
    let got = receive(&mut first, 10, RECORDS_WITHIN, |c, r| {
        if r.offset < 5 {
            c.acknowledge(r, AcknowledgeType::Accept).unwrap();
        }
    })
    .await;
    assert_eq!(got.len(), 10);
    first.close().await.unwrap();
    let mut next = share_consumer(mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    // The released records are there to be acquired as soon as it joins.
    next.subscribe([topic.as_str()]).unwrap();
    let again = receive(&mut next, 5, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&again), (5..10).map(|o| ((0, o), 2)).collect());
    assert_eq!(quiet(&mut next, accept).await, []);
    next.close().await.unwrap();
}

/// What a share group decides is refused by the builder, naming the property and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_decided_properties_are_refused() {
    for (name, value) in [
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        ("session.timeout.ms", "10000"),
        ("group.instance.id", "i"),
        ("enable.auto.commit", "false"),
    ] {
        let e = ShareConsumer::builder()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "g")
            .set(name, value)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), kcon::ErrorKind::Config, "{name}: {e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let e = ShareConsumer::builder()
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("group.id", "g")
        .set("share.acknowledgement.mode", "sometimes")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("implicit or explicit"), "{e}");
    // Both acquire modes are taken (record_limit goes with ShareFetch v2); another is refused
    // naming the two.
    let build = |mode: &str| {
        ShareConsumer::builder()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "g")
            .set("share.acquire.mode", mode)
            .build()
    };
    build("batch_optimized").expect("a mode");
    build("record_limit").expect("a mode");
    let e = build("per_record").unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Config, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("share.acquire.mode") && text.contains("batch_optimized or record_limit"),
        "{text}"
    );
}

/// The group's delivery limit: a record released every time is handed out with delivery
/// counts 1, 2, 3 and then archived (the mock's `max_delivery_attempts` set to 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_archives_a_record_released_every_time() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    mock.set_sharegroup("max_delivery_attempts", 3);
    let mut c = share_consumer(&mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    joined(&mut c, &topic, 1).await;
    produce(&pool, &topic, 0, 2, 1_000).await;
    let release = |c: &mut ShareConsumer, r: &Record| {
        c.acknowledge(r, AcknowledgeType::Release).unwrap();
    };
    let mut counts: BTreeMap<i64, Vec<u16>> = BTreeMap::new();
    for r in receive(&mut c, 6, RECORDS_WITHIN, release).await {
        counts
            .entry(r.offset)
            .or_default()
            .push(r.delivery_count.unwrap());
    }
    assert_eq!(counts, [(0, vec![1, 2, 3]), (1, vec![1, 2, 3])].into());
    assert_eq!(quiet(&mut c, release).await, []);
    c.close().await.unwrap();
}

/// Two members share one partition (a target assignment gives it to both): records one of
/// them holds without acknowledging go to the other once their lock expires, with delivery
/// count 2; the first member's late acknowledgement of them is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_expires_hands_the_records_to_another_member() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    // Heartbeats come often: the mock moves every member's epoch each time it assigns anew
    // and fences one that missed two moves (see kcon_and_librdkafka_members_share_a_partition).
    mock.set_sharegroup("heartbeat_interval", 100);
    mock.set_sharegroup("record_lock_duration", 1500);
    let mut holder = share_consumer(&mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    let mut other = share_consumer(&mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    joined(&mut holder, &topic, 1).await;
    other.subscribe([topic.as_str()]).unwrap();
    share_the_partition(&mock, &group, &topic, 2).await;
    joined(&mut other, &topic, 1).await;
    // Both joins and the target assignment settled before anything is acquired.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(holder.assignment().len(), 1);
    // Timed from before the records exist: they are acquired after this, so their lock, and
    // the hand-over, end 1.5 s after it at the earliest, however long the holder's read takes.
    let produced = Instant::now();
    produce(&pool, &topic, 0, 10, 1_000).await;
    // Only the holder fetches (a member fetches only while asked for records).
    let held = receive(&mut holder, 10, RECORDS_WITHIN, keep).await;
    assert_eq!(seen(&held), (0..10).map(|o| ((0, o), 1)).collect());
    let again = receive(&mut other, 10, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&again), (0..10).map(|o| ((0, o), 2)).collect());
    assert!(
        produced.elapsed() >= Duration::from_millis(1000),
        "handed over before the lock could expire: {:?}",
        produced.elapsed()
    );
    for r in &held {
        holder.acknowledge(r, AcknowledgeType::Accept).unwrap();
    }
    let outcomes = holder.commit().await.unwrap();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| !o.is_ok()),
        "{outcomes:?}"
    );
    assert_eq!(quiet(&mut other, accept).await, []);
    holder.close().await.unwrap();
    other.close().await.unwrap();
}

/// A kcon member and librdkafka's share consumer share one partition: every record is
/// processed by exactly one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcon_and_librdkafka_members_share_a_partition() {
    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    // The mock moves every member's epoch each time it assigns anew and fences a member that
    // missed two moves between its heartbeats: heartbeats come often here, and the peer joins
    // first, so that the kcon member's join and the target assignment are one move each.
    mock.set_sharegroup("heartbeat_interval", 100);
    let peer = SharePeer::start(
        mock.bootstrap(),
        &group,
        &[topic.as_str()],
        0,
        Duration::from_secs(15),
        None,
    );
    let deadline = Instant::now() + JOIN_WITHIN;
    while mock.sharegroup_member_ids(&group).is_empty() {
        assert!(
            Instant::now() < deadline,
            "librdkafka's member did not join"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = share_consumer(&mock, &group, &[("max.poll.records", "20")]);
    c.subscribe([topic.as_str()]).unwrap();
    share_the_partition(&mock, &group, &topic, 2).await;
    joined(&mut c, &topic, 1).await;
    // The peer's join has settled (its connections open) before anything is acquired.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // In chunks, while both members wait for records: each chunk goes to whichever asks first.
    let producing = async {
        for _ in 0..20 {
            produce(&pool, &topic, 0, 10, 1_000).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut mine = Vec::new();
    let consuming = timeout(Duration::from_secs(8), async {
        loop {
            mine.extend(c.recv_batch().await.expect("a batch"));
        }
    });
    let ((), _) = tokio::join!(producing, consuming);
    let theirs = tokio::task::spawn_blocking(move || peer.records())
        .await
        .unwrap();
    c.close().await.unwrap();
    let mine = seen(&mine);
    let mut all = mine.clone();
    for (t, p, o, count) in &theirs {
        assert_eq!(t, &topic);
        assert_eq!(*count, 1, "redelivered to librdkafka: {p}/{o}");
        assert!(
            all.insert((*p, *o), 1).is_none(),
            "{p}/{o} processed by both members"
        );
    }
    assert!(
        mine.values().all(|c| *c == 1),
        "redelivered to kcon: {mine:?}"
    );
    assert_eq!(all, (0..200).map(|o| ((0, o), 1)).collect());
    // Which member asked first for each chunk is the mock's to decide (now and then one gets
    // them all): the split is told, not asserted.
    eprintln!("kcon processed {}, librdkafka {}", mine.len(), theirs.len());
}

/// Gives `topic`'s partition 0 to each of the group's `members` (once the mock knows them).
async fn share_the_partition(mock: &MockCluster, group: &str, topic: &str, members: usize) {
    let deadline = Instant::now() + JOIN_WITHIN;
    let ids = loop {
        let ids = mock.sharegroup_member_ids(group);
        if ids.len() >= members {
            break ids;
        }
        assert!(Instant::now() < deadline, "members in {group}: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let partition: &[(&str, i32)] = &[(topic, 0)];
    let assignment: Vec<(&str, &[(&str, i32)])> =
        ids.iter().map(|id| (id.as_str(), partition)).collect();
    mock.set_sharegroup_target_assignment(group, &assignment);
}

/// A member killed with SIGKILL mid-stream loses nothing: every record is processed, by it or
/// by the member that takes over, and a record the killed member processed without its
/// acceptance reaching the broker comes again only with a higher delivery count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_loses_nothing() {
    use std::io::BufRead;

    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    // The killed member leaves the group after 3 s (the mock releases its records at once: its
    // connections closed).
    mock.set_sharegroup("session_timeout", 3000);
    mock.set_sharegroup("heartbeat_interval", 200);
    let mut killed = std::process::Command::new(env!("CARGO_BIN_EXE_share_member"))
        .args([mock.bootstrap(), group.as_str(), topic.as_str()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start share_member");
    let deadline = Instant::now() + JOIN_WITHIN;
    while mock.sharegroup_member_ids(&group).is_empty() {
        assert!(Instant::now() < deadline, "share_member did not join");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its share session opened (its connections are all open) before anything is acquired.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    produce(&pool, &topic, 0, 50, 1_000).await;
    let stdout = killed.stdout.take().expect("piped");
    let parse = |line: String| {
        let f: Vec<i64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        (f[0] as i32, f[1], f[2] as u16)
    };
    let (mut printed, lines) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        while printed.len() < 12 {
            printed.push(parse(lines.next().expect("a line").expect("stdout")));
        }
        (printed, lines)
    })
    .await
    .unwrap();
    killed.kill().expect("SIGKILL share_member");
    let _ = killed.wait();
    // What it printed before it died, read to the end of its output.
    printed.extend(lines.map_while(Result::ok).map(parse));
    let mut taker = share_consumer(&mock, &group, &[]);
    taker.subscribe([topic.as_str()]).unwrap();
    let processed: BTreeMap<(i32, i64), u16> =
        printed.iter().map(|&(p, o, c)| ((p, o), c)).collect();
    let rest = receive(&mut taker, 50 - processed.len(), RECORDS_WITHIN, keep).await;
    let rest = seen(&rest);
    let mut all: BTreeMap<(i32, i64), u16> = processed.clone();
    for (at, count) in &rest {
        if let Some(before) = processed.get(at) {
            assert!(
                count > before,
                "{at:?} again at delivery count {count} (first {before})"
            );
        }
        all.insert(*at, *count);
    }
    assert_eq!(
        all.keys().copied().collect::<Vec<_>>(),
        (0..50).map(|o| (0, o)).collect::<Vec<_>>(),
        "printed {printed:?}, then {rest:?}"
    );
    assert_eq!(quiet(&mut taker, keep).await, []);
    taker.close().await.unwrap();
}

/// The ShareProcessor: a retriable failure releases the record (the group's redelivery is the
/// retry, its delivery count the attempt), a poison record is dead-lettered (with kcon's
/// `kcon.dlq.*` headers) and then accepted, everything else processed once; nothing comes
/// again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_processor_releases_to_retry_and_dead_letters_poison() {
    use kcon::Failure;
    use kcon::deserialize::{BytesDeserializer, StringDeserializer};
    use kcon::share::ShareProcessor;

    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    let dlq = format!("{topic}.dlq");
    mock.create_topic(&dlq, 1, 1);
    // Where the dead-letter topic's reader starts.
    mock.set_sharegroup("auto_offset_reset", 1);
    pool.refresh_metadata(TopicScope::topics([dlq.clone()]))
        .await
        .unwrap();
    let consumer = share_consumer(
        &mock,
        &group,
        &[
            ("share.acknowledgement.mode", "explicit"),
            ("errors.tolerance", "all"),
            ("errors.deadletterqueue.topic.name", dlq.as_str()),
            ("errors.retry.max.attempts", "4"),
        ],
    );
    let mut consumer = consumer;
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor =
        ShareProcessor::with_deserializers(consumer, BytesDeserializer, StringDeserializer)
            .unwrap();
    // Values: value-0 .. value-9; value-3 fails twice before it goes through, value-7 is poison.
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = handled.clone();
    let run = async {
        let ran = timeout(Duration::from_secs(5), async {
            processor
                .run(async |d| {
                    let v = d.value.clone();
                    log.lock().unwrap().push((d.record.offset, d.attempt));
                    match v.as_str() {
                        "value-3" if d.attempt < 3 => Err(Failure::retriable("busy")),
                        "value-7" => Err(Failure::permanent("poison")),
                        _ => Ok(()),
                    }
                })
                .await
        })
        .await;
        if let Ok(stopped) = ran {
            panic!("the processor stopped: {stopped:?}");
        }
    };
    let produce_later = async {
        // The processor's member holds the partition before anything is produced.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        produce(&pool, &topic, 0, 10, 1_000).await;
    };
    tokio::join!(run, produce_later);
    let counts = processor.counts();
    assert_eq!(
        (
            counts.processed,
            counts.released,
            counts.dead_lettered,
            counts.rejected
        ),
        (9, 2, 1, 0),
        "{:?}",
        handled.lock().unwrap()
    );
    let mut attempts: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (offset, attempt) in handled.lock().unwrap().iter() {
        attempts.entry(*offset).or_default().push(*attempt);
    }
    let expected: BTreeMap<i64, Vec<u32>> = (0..10)
        .map(|o| (o, if o == 3 { vec![1, 2, 3] } else { vec![1] }))
        .collect();
    assert_eq!(attempts, expected);
    processor.close().await.unwrap();
    // The dead letter: value-7, from the topic's offset 7.
    let mut reader = share_consumer(&mock, &unique_name("dlq-reader"), &[]);
    reader.subscribe([dlq.as_str()]).unwrap();
    let letters = receive(&mut reader, 1, RECORDS_WITHIN, keep).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.value.as_deref(), Some(&b"value-7"[..]));
    assert_eq!(
        letter.header("kcon.dlq.source.offset"),
        Some(Some(&"7".into()))
    );
    assert_eq!(
        letter.header("kcon.dlq.source.topic"),
        Some(Some(&topic.clone().into()))
    );
    assert_eq!(
        letter.header("kcon.dlq.group"),
        Some(Some(&group.clone().into()))
    );
    assert_eq!(letter.header("kcon.dlq.attempts"), Some(Some(&"1".into())));
    reader.close().await.unwrap();
}

/// Under `errors.tolerance=none` a record that fails for good stops the ShareProcessor with
/// `RecordFailed`, naming its partition: it and the batch's records not handled are released,
/// and the next run gets exactly those again, at delivery count 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_share_processor_stops_on_poison_under_tolerance_none() {
    use kcon::Failure;
    use kcon::share::ShareProcessor;

    let Setup {
        mock,
        pool,
        topic,
        group,
    } = setup(1).await;
    let mut consumer = share_consumer(&mock, &group, &[("share.acknowledgement.mode", "explicit")]);
    joined(&mut consumer, &topic, 1).await;
    produce(&pool, &topic, 0, 10, 1_000).await;
    let mut processor = ShareProcessor::new(consumer).unwrap();
    let mut first = Vec::new();
    let stopped = timeout(
        RECORDS_WITHIN,
        processor.run(async |d| {
            first.push(d.record.offset);
            if d.record.offset == 2 {
                Err(Failure::permanent("poison"))
            } else {
                Ok(())
            }
        }),
    )
    .await
    .expect("stopped by the poison record")
    .unwrap_err();
    assert_eq!(stopped.kind(), kcon::ErrorKind::RecordFailed, "{stopped}");
    assert_eq!(
        stopped.partitions(),
        [kcon::TopicPartition::new(topic.as_str(), 0)]
    );
    assert_eq!(first, [0, 1, 2]);
    let mut again: BTreeMap<i64, u32> = BTreeMap::new();
    let _ = timeout(Duration::from_secs(3), async {
        processor
            .run(async |d| {
                again.insert(d.record.offset, d.attempt);
                Ok(())
            })
            .await
    })
    .await;
    assert_eq!(again, (2..10).map(|o| (o, 2)).collect());
    assert_eq!(processor.counts().processed, 2 + 8);
    processor.close().await.unwrap();
}
