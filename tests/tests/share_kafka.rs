//! Share groups (KIP-932) on Apache Kafka 4.4 at the client's defaults: implicit and explicit
//! acknowledgement, releases redelivered with their delivery count raised, rejects never seen
//! again, a closing member's records going to the next, the group's delivery limit, a lock
//! that expires handing its records to another member, ShareFetch v2's
//! `share.acquire.mode=record_limit` (KIP-1206), lock renewal (KIP-1222), the Java client's
//! KafkaShareConsumer sharing a partition with kcon, a member killed mid-stream, and the
//! Processor's retries, dead letters and stop over a share consumer; each asserting the exact records. Also what
//! the builder refuses because the group decides it.
//!
//! What Kafka decides for the whole group is set on the group (IncrementalAlterConfigs) before
//! any member joins: every group here reads from the log's start
//! (`share.auto.offset.reset=earliest`), so no record is missed however long the first
//! assignment takes; the lock duration is shortened (to the broker's floor, 15 s) only where a
//! lock must expire. Members that share a partition join before anything is produced, and a
//! second passes (more than `fetch.max.wait.ms`) before records come, so that no fetch sent
//! while joining acquires them.

use std::time::Duration;

use kcon::Record;
use kcon::share::{AcknowledgeType, ShareConsumer};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::peers::SharePeer;
use kcon_tests::pool::config;
use kcon_tests::share::{
    JOIN_WITHIN, QUIET, RECORDS_WITHIN, accept, assert_shared_once, configure, consumer, joined,
    keep, quiet, receive, seen,
};
use tokio::time::{Instant, timeout};

/// The broker's floor for a group's `share.record.lock.duration.ms`
/// (`group.share.min.record.lock.duration.ms`).
const LOCK: Duration = Duration::from_secs(15);

/// A topic of `partitions` partitions, a group reading from the log's start with `configs` of
/// its own, and a pool to produce with.
struct Setup {
    kafka: &'static Kafka,
    pool: Pool,
    topic: String,
    group: String,
}

async fn setup(partitions: i32, configs: &[(&str, &str)]) -> Setup {
    let kafka = Kafka::single();
    let pool = Pool::new(config(kafka.bootstrap())).expect("a pool");
    let topic = unique_name("share");
    create_topics(&pool, &[(&topic, partitions)]).await;
    let group = unique_name("share-group");
    configure(&pool, &group, configs).await;
    Setup {
        kafka,
        pool,
        topic,
        group,
    }
}

fn explicit(kafka: &Kafka, group: &str, extra: &[(&str, &str)]) -> ShareConsumer {
    let mut props = vec![("share.acknowledgement.mode", "explicit")];
    props.extend_from_slice(extra);
    consumer(kafka.bootstrap(), group, &props)
}

/// Waits a second more than `fetch.max.wait.ms` (500 ms): a fetch sent while joining has been
/// answered, so whichever member asks next is the one that acquires what comes.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1000)).await;
}

/// Implicit acknowledgement: every record of three partitions is handed out once, with
/// delivery count 1; each batch is accepted when the next is asked for, so nothing comes
/// again, to this member or to one joining later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_mode_hands_out_every_record_once() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(3, &[]).await;
    for p in 0..3 {
        produce(&pool, &topic, p, 10, now_ms()).await;
    }
    let mut c = consumer(kafka.bootstrap(), &group, &[]);
    c.subscribe([topic.as_str()]).unwrap();
    let got = receive(&mut c, 30, RECORDS_WITHIN, keep).await;
    let expected = (0..3)
        .flat_map(|p| (0..10).map(move |o| ((p, o), 1)))
        .collect();
    assert_eq!(seen(&got), expected);
    assert_eq!(quiet(&mut c, keep).await, []);
    c.close().await.unwrap();
    let mut later = consumer(kafka.bootstrap(), &group, &[]);
    joined(&mut later, &topic, 3).await;
    assert_eq!(quiet(&mut later, keep).await, []);
    later.close().await.unwrap();
}

/// Explicit acknowledgement: released records come again with delivery count 2, rejected ones
/// never; the commit answers each partition's outcome; accepted, nothing comes again. The
/// metrics, and the same scraped, count each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_redelivers_and_reject_archives() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let told = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let hook = told.clone();
    let mut c = ShareConsumer::builder()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("group.id", &group)
        .set("share.acknowledgement.mode", "explicit")
        .hooks(Counting(hook))
        .build()
        .unwrap();
    c.subscribe([topic.as_str()]).unwrap();
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
    let mut registry = prometheus_client::registry::Registry::default();
    kcon_prometheus::RegisterMetrics::register_metrics(&c, &mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = kcon_tests::prometheus::parse_with_prometheus_client(&text);
    let labels = format!(r#"client_id="kcon",group="{group}""#);
    let get = |name: &str, extra: &str| -> f64 {
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
        get("kcon_share_record_delivery_count_bucket", r#",le="2.0""#),
        15.0
    );
    c.close().await.unwrap();
    assert_eq!(
        *told.lock().unwrap(),
        15,
        "every acknowledgement told to the hook"
    );
}

/// Explicit acknowledgement refuses the next batch while a record of the last is open, names
/// it, and hands the batch out once it is acknowledged; a record acknowledged twice, or not
/// of the last batch, is refused. Kafka acquires the whole produced batch at once
/// (`share.acquire.mode=batch_optimized`); the member hands it out two at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_mode_refuses_the_next_batch_while_a_record_is_open() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    produce(&pool, &topic, 0, 4, now_ms()).await;
    let mut c = explicit(kafka, &group, &[("max.poll.records", "2")]);
    c.subscribe([topic.as_str()]).unwrap();
    let batch = timeout(RECORDS_WITHIN, c.recv_batch())
        .await
        .expect("a batch")
        .unwrap();
    assert_eq!(seen(&batch), [((0, 0), 1), ((0, 1), 1)].into());
    c.acknowledge(&batch[0], AcknowledgeType::Accept).unwrap();
    let e = c
        .acknowledge(&batch[0], AcknowledgeType::Reject)
        .unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    let e = c.recv_batch().await.unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    assert!(e.to_string().contains("@1"), "{e}");
    c.acknowledge(&batch[1], AcknowledgeType::Accept).unwrap();
    let next = receive(&mut c, 2, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&next), [((0, 2), 1), ((0, 3), 1)].into());
    let e = c
        .acknowledge(&batch[1], AcknowledgeType::Accept)
        .unwrap_err();
    assert_eq!(e.kind(), kcon::ErrorKind::Misuse, "{e}");
    assert_eq!(quiet(&mut c, accept).await, []);
    c.close().await.unwrap();
}

/// A member that closes with records unacknowledged releases them: the next member gets
/// exactly those, with delivery count 2, and none of those the first accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_what_was_not_acknowledged() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let mut first = explicit(kafka, &group, &[]);
    first.subscribe([topic.as_str()]).unwrap();
    let got = receive(&mut first, 10, RECORDS_WITHIN, |c, r| {
        if r.offset < 5 {
            c.acknowledge(r, AcknowledgeType::Accept).unwrap();
        }
    })
    .await;
    assert_eq!(seen(&got), (0..10).map(|o| ((0, o), 1)).collect());
    first.close().await.unwrap();
    let mut next = explicit(kafka, &group, &[]);
    next.subscribe([topic.as_str()]).unwrap();
    let again = receive(&mut next, 5, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&again), (5..10).map(|o| ((0, o), 2)).collect());
    assert_eq!(quiet(&mut next, accept).await, []);
    next.close().await.unwrap();
}

/// The group's delivery limit (`share.delivery.count.limit`, 2 here, the broker's floor): a
/// record released every time is handed out with delivery counts 1 and 2, then archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_archives_a_record_released_every_time() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[("share.delivery.count.limit", "2")]).await;
    produce(&pool, &topic, 0, 2, now_ms()).await;
    let mut c = explicit(kafka, &group, &[]);
    c.subscribe([topic.as_str()]).unwrap();
    let release = |c: &mut ShareConsumer, r: &Record| {
        c.acknowledge(r, AcknowledgeType::Release).unwrap();
    };
    let mut counts: std::collections::BTreeMap<i64, Vec<u16>> = Default::default();
    for r in receive(&mut c, 4, RECORDS_WITHIN, release).await {
        counts
            .entry(r.offset)
            .or_default()
            .push(r.delivery_count.unwrap());
    }
    assert_eq!(counts, [(0, vec![1, 2]), (1, vec![1, 2])].into());
    assert_eq!(quiet(&mut c, release).await, []);
    c.close().await.unwrap();
}

/// Two members of a group whose lock lasts 15 s, both assigned the one partition: records
/// one of them holds without acknowledging go to the other once their lock expires (not
/// before), with delivery count 2; the first member's late acknowledgement of them is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_expires_hands_the_records_to_another_member() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[("share.record.lock.duration.ms", "15000")]).await;
    let mut holder = explicit(kafka, &group, &[]);
    let mut other = explicit(kafka, &group, &[]);
    joined(&mut holder, &topic, 1).await;
    joined(&mut other, &topic, 1).await;
    settle().await;
    // Timed from before the records exist: their lock ends 15 s after this at the earliest.
    let produced = Instant::now();
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let held = receive(&mut holder, 10, RECORDS_WITHIN, keep).await;
    assert_eq!(seen(&held), (0..10).map(|o| ((0, o), 1)).collect());
    let again = receive(&mut other, 10, LOCK + RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&again), (0..10).map(|o| ((0, o), 2)).collect());
    assert!(
        produced.elapsed() >= LOCK,
        "handed over before the lock could expire: {:?}",
        produced.elapsed()
    );
    // The other member holds them now (its acceptance goes with its next fetch): the
    // holder's is refused. (Once the group has settled records, Kafka answers a late
    // acknowledgement of them without an error.)
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

/// `share.acquire.mode=record_limit` (KIP-1206, ShareFetch v2): a fetch acquires at most
/// `max.poll.records` records, not the whole batch they are in, so another member of the group
/// gets the rest of the batch at once. At the default mode the first member acquires the whole
/// batch: the other gets nothing while the first holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_limit_acquires_at_most_max_poll_records() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    let mut limited = explicit(
        kafka,
        &group,
        &[
            ("share.acquire.mode", "record_limit"),
            ("max.poll.records", "3"),
        ],
    );
    let mut other = explicit(kafka, &group, &[]);
    joined(&mut limited, &topic, 1).await;
    joined(&mut other, &topic, 1).await;
    settle().await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let three = receive(&mut limited, 3, RECORDS_WITHIN, keep).await;
    assert_eq!(seen(&three), (0..3).map(|o| ((0, o), 1)).collect());
    let rest = receive(&mut other, 7, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&rest), (3..10).map(|o| ((0, o), 1)).collect());
    for r in &three {
        limited.acknowledge(r, AcknowledgeType::Accept).unwrap();
    }
    let outcomes = limited.commit().await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(quiet(&mut other, accept).await, []);
    limited.close().await.unwrap();
    other.close().await.unwrap();

    // The same at the default mode, on a topic and group of their own: the whole batch is
    // acquired by the first fetch, handed out three at a time to the member that fetched it.
    let topic = unique_name("share");
    create_topics(&pool, &[(&topic, 1)]).await;
    let group = unique_name("share-group");
    configure(&pool, &group, &[]).await;
    let mut whole = explicit(kafka, &group, &[("max.poll.records", "3")]);
    let mut other = explicit(kafka, &group, &[]);
    joined(&mut whole, &topic, 1).await;
    joined(&mut other, &topic, 1).await;
    settle().await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let three = receive(&mut whole, 3, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&three), (0..3).map(|o| ((0, o), 1)).collect());
    assert_eq!(quiet(&mut other, accept).await, []);
    let rest = receive(&mut whole, 7, RECORDS_WITHIN, accept).await;
    assert_eq!(seen(&rest), (3..10).map(|o| ((0, o), 1)).collect());
    whole.close().await.unwrap();
    other.close().await.unwrap();
}

/// Lock renewal (KIP-1222, ShareAcknowledge v2): of five records held past the group's 15 s
/// lock, the three renewed after 8 s keep their lock (the holder accepts them after 19 s),
/// and the two not renewed go to the other member with delivery count 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lock_outlasts_the_lock_duration() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[("share.record.lock.duration.ms", "15000")]).await;
    let mut holder = explicit(kafka, &group, &[]);
    let mut other = explicit(kafka, &group, &[]);
    joined(&mut holder, &topic, 1).await;
    joined(&mut other, &topic, 1).await;
    settle().await;
    let produced = Instant::now();
    produce(&pool, &topic, 0, 5, now_ms()).await;
    let held = receive(&mut holder, 5, RECORDS_WITHIN, keep).await;
    assert_eq!(seen(&held), (0..5).map(|o| ((0, o), 1)).collect());
    // Renewed well within the lock: the lock starts over, 23 s after `produced` at the earliest.
    let renew_at = produced + Duration::from_secs(8);
    assert!(
        Instant::now() < renew_at,
        "acquired late: {:?}",
        produced.elapsed()
    );
    tokio::time::sleep_until(renew_at).await;
    for r in &held[..3] {
        holder.acknowledge(r, AcknowledgeType::Renew).unwrap();
    }
    let outcomes = holder.commit().await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(holder.metrics().records_renewed, 3);
    // Past the first lock's end (15 s after the acquisition), before the renewed one's.
    let watch_until = produced + Duration::from_secs(19);
    let taken = receive(&mut other, usize::MAX, watch_until - Instant::now(), accept).await;
    assert_eq!(seen(&taken), [((0, 3), 2), ((0, 4), 2)].into());
    for r in &held[..3] {
        holder.acknowledge(r, AcknowledgeType::Accept).unwrap();
    }
    let outcomes = holder.commit().await.unwrap();
    assert!(
        produced.elapsed() < Duration::from_secs(23),
        "accepted after the renewed lock could have ended: {:?}",
        produced.elapsed()
    );
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o.is_ok()),
        "{outcomes:?}"
    );
    assert_eq!(quiet(&mut other, accept).await, []);
    // The two it lost are released with the close (Kafka ignores that: the group settled
    // them).
    holder.close().await.unwrap();
    other.close().await.unwrap();
}

/// A kcon member and the Java client's KafkaShareConsumer (`tests/java/ShareMember.java`)
/// share one partition: every record is processed by exactly one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcon_and_java_members_share_a_partition() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    let peer = SharePeer::start_java(
        kafka.bootstrap(),
        &group,
        &[topic.as_str()],
        0,
        Duration::from_secs(4),
        Duration::from_secs(60),
        None,
    );
    // The Java member holds the partition before kcon's joins (both hold it then).
    let deadline = Instant::now() + JOIN_WITHIN + Duration::from_secs(10);
    loop {
        let described = kcon_admin::describe_share_group(&pool, &group).await;
        if let Ok(g) = &described
            && g.members.iter().any(|m| !m.assignment.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Java member did not join: {described:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = consumer(kafka.bootstrap(), &group, &[("max.poll.records", "20")]);
    joined(&mut c, &topic, 1).await;
    settle().await;
    // In chunks, while both members ask for records: each chunk goes to whichever asks first.
    let producing = async {
        for _ in 0..20 {
            produce(&pool, &topic, 0, 10, now_ms()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let mut mine = Vec::new();
    let consuming = timeout(Duration::from_secs(10), async {
        loop {
            mine.extend(c.recv_batch().await.expect("a batch"));
        }
    });
    let ((), _) = tokio::join!(producing, consuming);
    // The last batch's acceptance goes with the close.
    c.close().await.unwrap();
    let theirs = tokio::task::spawn_blocking(move || peer.records())
        .await
        .unwrap();
    assert_shared_once(&topic, &mine, &theirs, "the Java client", 200);
}

/// A member killed with SIGKILL mid-stream (`share_member`, a process of its own) loses
/// nothing: every record is processed, by it or by the member that takes over, and a record
/// the killed member processed without its acceptance reaching the broker comes again only
/// with a higher delivery count. What it held comes to the next member when Kafka lets it go
/// (its connection closed, or its lock, 30 s at the group's default, expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_loses_nothing() {
    use std::io::BufRead;

    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    produce(&pool, &topic, 0, 50, now_ms()).await;
    let mut killed = std::process::Command::new(env!("CARGO_BIN_EXE_share_member"))
        .args([kafka.bootstrap(), group.as_str(), topic.as_str()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start share_member");
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
    let mut taker = consumer(kafka.bootstrap(), &group, &[]);
    taker.subscribe([topic.as_str()]).unwrap();
    let processed: std::collections::BTreeMap<(i32, i64), u16> =
        printed.iter().map(|&(p, o, c)| ((p, o), c)).collect();
    let within = Duration::from_secs(30) + RECORDS_WITHIN;
    let rest = receive(&mut taker, 50 - processed.len(), within, keep).await;
    let rest = seen(&rest);
    let mut all = processed.clone();
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

/// The Processor over a share consumer: a retriable failure releases the record (the group's
/// redelivery is the retry, its delivery count the attempt), a poison record is dead-lettered
/// (with kcon's `kcon.dlq.*` headers) and then accepted, everything else processed once;
/// nothing comes again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_over_a_share_consumer_releases_to_retry_and_dead_letters_poison() {
    use kcon::deserialize::{BytesDeserializer, StringDeserializer};
    use kcon::{Failure, Processor};

    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    let dlq = format!("{topic}.dlq");
    create_topics(&pool, &[(&dlq, 1)]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let mut member = explicit(kafka, &group, &[]);
    member.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(member)
        .key(BytesDeserializer)
        .value(StringDeserializer)
        .set("errors.tolerance", "all")
        .set("errors.deadletterqueue.topic.name", dlq.as_str())
        .set("errors.retry.max.attempts", "4")
        .build()
        .unwrap();
    // Values: value-0 .. value-9; value-3 fails twice before it goes through, value-7 is poison.
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = handled.clone();
    let done = {
        let handled = handled.clone();
        async move {
            // Every record handled (value-3 three times), then a moment for the last
            // acknowledgements to settle.
            while handled.lock().unwrap().len() < 12 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(QUIET).await;
        }
    };
    timeout(
        Duration::from_secs(60),
        processor.run_until(done, async |d| {
            let v = d.value.clone();
            log.lock().unwrap().push((d.record.offset, d.attempt));
            match v.as_str() {
                "value-3" if d.attempt < 3 => Err(Failure::retriable("busy")),
                "value-7" => Err(Failure::permanent("poison")),
                _ => Ok(()),
            }
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("handled only {:?}", handled.lock().unwrap()))
    .expect("the processor ran");
    // Released to retry counts as retried, rejected as skipped.
    let counts = processor.metrics();
    assert_eq!(
        (
            counts.records_processed,
            counts.records_retried,
            counts.records_dead_lettered,
            counts.records_skipped
        ),
        (9, 2, 1, 0),
        "{:?}",
        handled.lock().unwrap()
    );
    let mut attempts: std::collections::BTreeMap<i64, Vec<u32>> = Default::default();
    for (offset, attempt) in handled.lock().unwrap().iter() {
        attempts.entry(*offset).or_default().push(*attempt);
    }
    let expected: std::collections::BTreeMap<i64, Vec<u32>> = (0..10)
        .map(|o| (o, if o == 3 { vec![1, 2, 3] } else { vec![1] }))
        .collect();
    assert_eq!(attempts, expected);
    processor.close().await.unwrap();
    // Nothing comes again to the group.
    let mut after = consumer(kafka.bootstrap(), &group, &[]);
    joined(&mut after, &topic, 1).await;
    assert_eq!(quiet(&mut after, keep).await, []);
    after.close().await.unwrap();
    // The dead letter: value-7, from the topic's offset 7.
    let readers = unique_name("dlq-reader");
    configure(&pool, &readers, &[]).await;
    let mut reader = consumer(kafka.bootstrap(), &readers, &[]);
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
    assert_eq!(quiet(&mut reader, keep).await, []);
    reader.close().await.unwrap();
}

/// Under `errors.tolerance=none` a record that fails for good stops the Processor over a share
/// consumer with `RecordFailed`, naming its partition: it and the batch's records not handled
/// are released, and the next run gets exactly those again, at delivery count 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_over_a_share_consumer_stops_on_poison_under_tolerance_none() {
    use kcon::{Failure, Processor};

    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let mut consumer = explicit(kafka, &group, &[]);
    consumer.subscribe([topic.as_str()]).unwrap();
    let mut processor = Processor::builder(consumer).build().unwrap();
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
    let mut again: std::collections::BTreeMap<i64, u32> = Default::default();
    let _ = timeout(Duration::from_secs(5), async {
        processor
            .run(async |d| {
                again.insert(d.record.offset, d.attempt);
                Ok(())
            })
            .await
    })
    .await;
    assert_eq!(again, (2..10).map(|o| (o, 2)).collect());
    assert_eq!(processor.metrics().records_processed, 2 + 8);
    processor.close().await.unwrap();
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

/// Counts the offsets of every acknowledgement outcome a share consumer tells.
struct Counting(std::sync::Arc<std::sync::Mutex<u64>>);

impl kcon::share::ShareConsumerHooks for Counting {
    fn on_acknowledged(&self, outcome: &kcon::share::AcknowledgementOutcome) {
        *self.0.lock().unwrap() += outcome.offsets();
    }
}

/// A `recv_batch` that waits longer than `max.poll.interval.ms` for an idle queue keeps the
/// member in the group: waiting in the call is the application polling, as in the Java
/// client, so a record written later still reaches it. (`max.poll.interval.ms` is 3 s here so
/// that the wait passes it several times; the default, 5 minutes, is the same rule.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_consumer_waiting_past_max_poll_interval_stays_in_the_group() {
    let Setup {
        kafka,
        pool,
        topic,
        group,
    } = setup(1, &[]).await;
    let mut c = consumer(
        kafka.bootstrap(),
        &group,
        &[("max.poll.interval.ms", "3000")],
    );
    joined(&mut c, &topic, 1).await;
    let later = {
        let pool = pool.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            produce(&pool, &topic, 0, 1, now_ms()).await;
        })
    };
    let batch = timeout(Duration::from_secs(30), c.recv_batch())
        .await
        .expect("the record written after 10 s of waiting, within 30 s")
        .expect("a batch");
    later.await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].offset, 0);
    assert_eq!(batch[0].delivery_count, Some(1));
    assert!(!c.assignment().is_empty(), "the member left its partition");
    c.close().await.unwrap();
}
