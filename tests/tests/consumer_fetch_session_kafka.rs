//! A consumer's fetch session (KIP-227) on Apache Kafka: partitions assigned and unassigned
//! join and leave the session the broker keeps (Kafka's single node, `Kafka::single`), and a
//! session Kafka drops under a reading consumer, as a busy broker drops one: the `sessions` node (`Kafka::sessions`) caches one session per cache shard, and
//! lets a session of more partitions take the slot of one created more than 120 s before
//! (`KafkaBroker.MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`, not a setting). The consumer reads
//! in its session for that long; then the test opens larger sessions until the consumer's is
//! evicted. The consumer's next incremental fetch is answered FETCH_SESSION_ID_NOT_FOUND; it
//! asks for a new session from scratch and reads on, every record once.
//!
//! The consumer, at its defaults, bootstraps at the hang-up proxy (`kcon_tests::hangup`,
//! passing everything on), which keeps what it asked and was answered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kcon::{ApiKey, Consumer, TopicPartition};
use kcon_codec::kafka_protocol::messages::{FetchRequest, FetchResponse};
use kcon_codec::kafka_protocol::protocol::Request;
use kcon_fetch::{FetchParams, FetchSession, PartitionFetch, fetch_request};
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{builder_at_defaults, offsets_by_partition, recv_n};
use kcon_tests::hangup::{HangUpProxy, hanging_up_before, kafka_hanging_up};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{now_ms, produce};
use kcon_tests::pool::config;
use kcon_tests::proxy::{Direction, Frame};

/// FETCH_SESSION_ID_NOT_FOUND.
const SESSION_NOT_FOUND: i16 = 70;

/// How old a session must be before a larger one may take its slot, with a margin for the
/// broker's clock against the test's.
const EVICTABLE_AFTER: Duration = Duration::from_secs(125);

/// How long the test waits for a step: the consumer's session opened, then evicted.
const STEP_WITHIN: Duration = Duration::from_secs(60);

/// The consumer's Fetch requests and answers the proxy saw, in order.
fn fetches(frames: &[Frame]) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.api_key == Some(FetchRequest::KEY))
        .collect()
}

/// A Fetch answer's error and session id.
fn answer(f: &Frame) -> Option<(i16, i32)> {
    (f.direction == Direction::Response).then(|| {
        let r = f.response::<FetchRequest>();
        (r.error_code, r.session_id)
    })
}

/// Asks `consumer` for records, 100 ms at a time, until `done` holds of what the proxy saw,
/// doing `meanwhile` between the asks; panics after [`STEP_WITHIN`] naming `what`.
async fn fetch_until(
    consumer: &mut Consumer,
    proxy: &HangUpProxy,
    what: &str,
    done: impl Fn(&[&Frame]) -> bool,
    mut meanwhile: impl AsyncFnMut(),
) {
    let started = Instant::now();
    while !done(&fetches(&proxy.frames())) {
        assert!(
            started.elapsed() < STEP_WITHIN,
            "{what} within {STEP_WITHIN:?}"
        );
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
            panic!("a record while nothing was written: {r:?}");
        }
        meanwhile().await;
    }
}

/// A consumer assigned two partitions reads in a session Kafka keeps. Once the session is old
/// enough, the test opens sessions of three partitions straight to the broker until one takes
/// the consumer's slot. The consumer's next incremental fetch is answered
/// FETCH_SESSION_ID_NOT_FOUND; on that connection its next Fetch asks for a new session (id 0,
/// epoch 0) with both partitions, and it reads what is written next: every record of both
/// partitions once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_broker_dropped_is_opened_again_and_nothing_is_lost() {
    let kafka = Kafka::sessions();
    let proxy = hanging_up_before(kafka, ApiKey::ListGroups).await;
    proxy.hang_up(false);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let (topic, big) = (unique_name("session"), unique_name("evicting"));
    create_topics(&pool, &[(&topic, 2), (&big, 3)]).await;
    for partition in 0..2 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
    }
    for partition in 0..3 {
        produce(&pool, &big, partition, 1, now_ms()).await;
    }
    let mut consumer = builder_at_defaults(&proxy.bootstrap()).build().unwrap();
    consumer
        .assign((0..2).map(|p| TopicPartition::new(topic.as_str(), p)))
        .unwrap();
    let mut read = recv_n(&mut consumer, 20, Duration::from_secs(30)).await;

    // The consumer's session, once the broker gave it one (a slot of the cache may still hold
    // an earlier run's session), read in until it is old enough to be evicted.
    fetch_until(
        &mut consumer,
        &proxy,
        "a fetch session opened",
        |f| f.iter().any(|f| answer(f).is_some_and(|(_, id)| id != 0)),
        async || {},
    )
    .await;
    let opened = Instant::now();
    while opened.elapsed() < EVICTABLE_AFTER {
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            panic!("a record while nothing was written: {r:?}");
        }
    }

    // Sessions of three partitions, each asked for straight from the broker, one per cache
    // shard in turn, until one takes the consumer's slot.
    let metadata = pool
        .refresh_metadata(TopicScope::topics([big.clone()]))
        .await
        .unwrap();
    let big_id = metadata.topic(&big).expect("the topic").id;
    let conn = pool.connection(BrokerTarget::Any).await.unwrap();
    let version = conn.version(ApiKey::Fetch).expect("Fetch spoken");
    let wanted: BTreeMap<TopicPartition, PartitionFetch> = (0..3)
        .map(|p| {
            (
                TopicPartition::new(big.as_str(), p),
                PartitionFetch::new(big_id, 0, 1 << 10),
            )
        })
        .collect();
    fetch_until(
        &mut consumer,
        &proxy,
        "the consumer's session evicted",
        |f| {
            f.iter()
                .any(|f| answer(f).is_some_and(|(e, _)| e == SESSION_NOT_FOUND))
        },
        async || {
            let request = FetchSession::new().build(&wanted, version).unwrap();
            let fetch = fetch_request(&request, &FetchParams::default(), version).unwrap();
            let answer: FetchResponse = conn.send(&fetch).await.unwrap();
            assert_eq!(answer.error_code, 0, "{answer:?}");
        },
    )
    .await;

    for partition in 0..2 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
    }
    read.extend(recv_n(&mut consumer, 20, Duration::from_secs(30)).await);
    consumer.close().await.unwrap();
    let by_partition = offsets_by_partition(&read);
    for partition in 0..2 {
        let tp = TopicPartition::new(topic.as_str(), partition);
        assert_eq!(by_partition[&tp], (0..20).collect::<Vec<i64>>(), "{tp}");
    }

    // What went over the wire: incremental fetches in a session, the one refused, and then on
    // that connection a request for a new session with both partitions.
    let frames = proxy.frames();
    let fetches = fetches(&frames);
    let refused = fetches
        .iter()
        .position(|f| answer(f).is_some_and(|(e, _)| e == SESSION_NOT_FOUND))
        .expect("a refused fetch");
    let on_conn =
        |f: &&&Frame| f.direction == Direction::Request && f.conn == fetches[refused].conn;
    let requests: Vec<FetchRequest> = fetches
        .iter()
        .filter(on_conn)
        .map(|f| f.request::<FetchRequest>().1)
        .collect();
    let before = fetches[..refused].iter().filter(on_conn).count();
    let refused_request = &requests[before - 1];
    assert!(
        refused_request.session_id != 0 && refused_request.session_epoch > 0,
        "the refused fetch was not incremental: {refused_request:?}"
    );
    let next = &requests[before];
    assert_eq!((next.session_id, next.session_epoch), (0, 0), "{next:?}");
    let partitions: usize = next.topics.iter().map(|t| t.partitions.len()).sum();
    assert_eq!(partitions, 2, "{next:?}");
}

/// The partitions a Fetch request asks for, and those it forgets (one topic: by index).
fn asked_and_forgotten(r: &FetchRequest) -> (Vec<i32>, Vec<i32>) {
    let asked = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition))
        .collect();
    let forgotten = r
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect();
    (asked, forgotten)
}

/// An assigned consumer's session follows its assignment. Assigned two partitions, it reads
/// them in the session Kafka opened; a third partition assigned joins that session in an
/// incremental fetch (the same session id, the next epoch) and its records are read; two
/// unassigned leave it in an incremental fetch that forgets them, and are never asked for
/// again, while the one kept reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_assigned_and_unassigned_join_and_leave_the_session() {
    let (kafka, proxy) = kafka_hanging_up(ApiKey::ListGroups).await;
    proxy.hang_up(false);
    let pool = Pool::new(config(kafka.bootstrap())).unwrap();
    let topic = unique_name("session-parts");
    create_topics(&pool, &[(&topic, 3)]).await;
    for partition in 0..3 {
        produce(&pool, &topic, partition, 10, now_ms()).await;
    }
    let tp = |p: i32| TopicPartition::new(topic.as_str(), p);
    let within = Duration::from_secs(30);
    let mut consumer = builder_at_defaults(&proxy.bootstrap()).build().unwrap();
    consumer.assign([tp(0), tp(1)]).unwrap();
    let first = recv_n(&mut consumer, 20, within).await;
    let added = proxy.frames().len();
    consumer.assign([tp(0), tp(1), tp(2)]).unwrap();
    let second = recv_n(&mut consumer, 10, within).await;
    let removed = proxy.frames().len();
    consumer.assign([tp(0)]).unwrap();
    produce(&pool, &topic, 0, 10, now_ms()).await;
    let third = recv_n(&mut consumer, 10, within).await;
    consumer.close().await.unwrap();

    let read = |records: &[kcon::Record]| offsets_by_partition(records);
    let first = read(&first);
    assert_eq!(first[&tp(0)], (0..10).collect::<Vec<i64>>());
    assert_eq!(first[&tp(1)], (0..10).collect::<Vec<i64>>());
    assert_eq!(read(&second), BTreeMap::from([(tp(2), (0..10).collect())]));
    assert_eq!(read(&third), BTreeMap::from([(tp(0), (10..20).collect())]));

    // The session, as the wire shows it: one id from its opening to the close.
    let frames = proxy.frames();
    let fetches = fetches(&frames);
    let session = fetches
        .iter()
        .find_map(|f| answer(f).filter(|&(e, id)| e == 0 && id != 0))
        .expect("a session opened")
        .1;
    let requests: Vec<(u64, FetchRequest)> = fetches
        .iter()
        .filter(|f| f.direction == Direction::Request)
        .map(|f| (f.seq, f.request::<FetchRequest>().1))
        .collect();
    let in_session = |r: &FetchRequest| r.session_id == session && r.session_epoch > 0;
    let joined = requests
        .iter()
        .filter(|(seq, _)| *seq >= added as u64)
        .find(|(_, r)| asked_and_forgotten(r).0.contains(&2))
        .expect("partition 2 asked for");
    assert!(in_session(&joined.1), "{:?}", joined.1);
    let left = requests
        .iter()
        .filter(|(seq, _)| *seq >= removed as u64)
        .find(|(_, r)| !asked_and_forgotten(r).1.is_empty())
        .expect("partitions forgotten");
    assert!(in_session(&left.1), "{:?}", left.1);
    let mut forgotten = asked_and_forgotten(&left.1).1;
    forgotten.sort();
    assert_eq!(forgotten, [1, 2]);
    for (seq, r) in requests.iter().filter(|(seq, _)| *seq > left.0) {
        let asked = asked_and_forgotten(r).0;
        assert!(
            asked.iter().all(|&p| p == 0),
            "request {seq} asks for {asked:?} after they were forgotten"
        );
    }
}
