//! The Fetch requests `kcon::Consumer` actually sends, as a recording proxy between it and
//! Tansu sees them. Tansu keeps no fetch sessions (it answers session id 0, see DESIGN.md, "The
//! brokers"), so after the first request asks for one, every Fetch must be a correct
//! sessionless one: full (0, 0), every fetchable partition at its current position, nothing
//! forgotten, never incremental, and no session close at the end (there is nothing to close).
//! The application, reading partitions it assigned, gets every record once, in order, at most
//! `max.poll.records` at a time, and nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kcon::{Consumer, TopicPartition};
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::kafka_protocol::messages::fetch_request::FetchRequest;
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use kcon_tests::brokers::unique_name;
use kcon_tests::group::create_topics;
use kcon_tests::offsets::produce;
use kcon_tests::pool::config;
use kcon_tests::proxy::{Direction, Frame, tansu_behind_proxy};

const PARTITIONS: i32 = 6;
/// Rounds of one batch per partition; the first `EARLY` before the consumer starts.
const ROUNDS: i64 = 10;
const EARLY: i64 = 3;
const BATCH: i64 = 100;
const RECORDS: i64 = ROUNDS * BATCH * PARTITIONS as i64;
/// Below what the first answer holds for a partition (`EARLY` batches; Tansu answers with all
/// it has, whatever `max.partition.fetch.bytes`): answers are split.
const MAX_POLL_RECORDS: usize = 150;

/// One Fetch request as sent, with what its answer said.
#[derive(Debug)]
struct SentFetch {
    seq: u64,
    session_id: i32,
    epoch: i32,
    /// Partition → fetch offset.
    offsets: BTreeMap<i32, i64>,
    forgotten: usize,
    /// The answer's session id and the partitions it returned records for, if it came.
    answer: Option<(i32, BTreeSet<i32>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionless_fetches_on_the_wire_are_full_and_carry_every_position() {
    let (tansu, proxy) = tansu_behind_proxy();
    let pool = Pool::new(config(&proxy.addr().to_string())).unwrap();
    let topic = unique_name("consumer-fetch-wire");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, PARTITIONS)]).await;

    produce_rounds(&pool, &topic, 0..EARLY).await;

    let mut consumer = Consumer::builder()
        .bootstrap_servers(&proxy.addr().to_string())
        .set("fetch.max.wait.ms", "100")
        // Small answers and a small budget: many rounds, partitions left out while they hold
        // records.
        .set("max.partition.fetch.bytes", "8192")
        .set("fetch.max.bytes", "32768")
        .set("fetch.buffer.max.bytes", "65536")
        .set("max.poll.records", MAX_POLL_RECORDS.to_string())
        .build()
        .unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    consumer.assign(partitions.iter().cloned()).unwrap();
    // Every partition starts from an offset sought before the first receiving call, without an
    // epoch (nothing to validate, no reset): the first Fetch can carry all of them.
    for tp in &partitions {
        consumer.seek(tp.clone(), 0).unwrap();
    }
    // The rest is produced while the consumer reads, so it fetches in many rounds.
    let producer = tokio::spawn({
        let (pool, topic) = (pool.clone(), topic.clone());
        async move { produce_rounds(&pool, &topic, EARLY..ROUNDS).await }
    });
    let mut next = vec![0i64; PARTITIONS as usize];
    // Per partition, the positions the application was handed out to (`next_offset`s).
    let mut positions: Vec<BTreeSet<i64>> = vec![BTreeSet::from([0]); PARTITIONS as usize];
    let mut received = 0;
    let mut full_parts = 0;
    while received < RECORDS {
        let records = tokio::time::timeout(Duration::from_secs(30), consumer.recv_batch())
            .await
            .unwrap_or_else(|_| panic!("stalled after {received} records"))
            .unwrap_or_else(|e| panic!("unexpected {e} ({:?})", e.kind()));
        let tp = TopicPartition::new(&*records[0].topic, records[0].partition);
        let p = tp.partition as usize;
        assert!(
            records.len() <= MAX_POLL_RECORDS,
            "{} records in one batch",
            records.len()
        );
        full_parts += usize::from(records.len() == MAX_POLL_RECORDS);
        for rec in &records {
            assert_eq!((&*rec.topic, rec.partition), (topic.as_str(), tp.partition));
            assert_eq!(rec.offset, next[p], "{tp}: out of order or missing");
            let value = format!("value-{}", rec.offset % BATCH);
            assert_eq!(rec.value.as_deref(), Some(value.as_bytes()));
            next[p] += 1;
            received += 1;
        }
        let position = consumer.position(&tp).expect("a position after records");
        assert_eq!(position, next[p], "{tp}");
        positions[p].insert(position);
    }
    producer.await.unwrap();
    assert_eq!(next, vec![ROUNDS * BATCH; PARTITIONS as usize]);
    assert!(full_parts > 0, "no answer was large enough to split");
    // Nothing more comes: no record twice, none past the end (fetch.max.wait.ms lets the
    // Fetches in flight answer meanwhile).
    if let Ok(more) = tokio::time::timeout(Duration::from_secs(1), consumer.recv_batch()).await {
        panic!("nothing more expected, got {more:?}");
    }
    consumer
        .close_within(Duration::from_secs(5))
        .await
        .expect("closed");
    // The topic's id, as the Fetches name it (Fetch v13+ names topics by id).
    let topic_id = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .expect("the topic's metadata")
        .topic(&topic)
        .and_then(|t| t.id)
        .map(|id| id.0);
    drop(pool);
    let frames = proxy.finish();
    drop(tansu);

    let fetches = sent_fetches(&frames, &topic, topic_id);
    assert!(fetches.len() > 2, "too few Fetches: {fetches:?}");
    eprintln!(
        "{} Fetches on the wire, {} answered, partitions per Fetch {:?}",
        fetches.len(),
        fetches.iter().filter(|f| f.answer.is_some()).count(),
        fetches.iter().map(|f| f.offsets.len()).collect::<Vec<_>>()
    );
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    // The first asks for a session, with every partition at its start.
    let first = &fetches[0];
    assert_eq!((first.session_id, first.epoch), (0, 0), "{first:?}");
    assert_eq!(
        first.offsets,
        all.iter().map(|&p| (p, 0)).collect::<BTreeMap<_, _>>()
    );
    for (i, f) in fetches.iter().enumerate() {
        // Tansu keeps no session...
        if let Some((session_id, _)) = &f.answer {
            assert_eq!(*session_id, 0, "Tansu opened a session: {f:?}");
        }
        // ...so every Fetch is full and sessionless: never incremental, nothing forgotten,
        // and no close (epoch -1): the client has no session to close.
        assert_eq!((f.session_id, f.epoch), (0, 0), "Fetch {i}: {f:?}");
        assert_eq!(f.forgotten, 0, "Fetch {i}: {f:?}");
        assert!(!f.offsets.is_empty(), "Fetch {i} carries no partition");
        for (&p, &offset) in &f.offsets {
            assert!(
                positions[p as usize].contains(&offset),
                "Fetch {i}: partition {p} at {offset}, not a position handed out"
            );
        }
    }
    // Offsets only move forward, and a partition whose answer held no records is still
    // fetchable: the next Fetch carries it again, at the same offset. (A partition that got
    // records is left out until the application took them; the budget's rule.)
    for pair in fetches.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let Some((_, with_records)) = &a.answer else {
            continue;
        };
        for (&p, &offset) in &a.offsets {
            match b.offsets.get(&p) {
                Some(&later) if with_records.contains(&p) => assert!(
                    later > offset,
                    "partition {p}: refetched at {later} after records from {offset}"
                ),
                Some(&later) => assert_eq!(later, offset, "partition {p}"),
                None => assert!(
                    with_records.contains(&p),
                    "partition {p} got nothing in Fetch {} and was left out of the next",
                    a.seq
                ),
            }
        }
    }
    for p in &all {
        let last = fetches.iter().rev().find_map(|f| f.offsets.get(p));
        assert!(last.is_some(), "partition {p} never fetched");
    }
}

/// Produces one batch of `BATCH` records to every partition per round.
async fn produce_rounds(pool: &Pool, topic: &str, rounds: std::ops::Range<i64>) {
    for round in rounds {
        for p in 0..PARTITIONS {
            let base = produce(pool, topic, p, BATCH as usize, 1_000).await;
            assert_eq!(base, round * BATCH, "{topic}-{p}");
        }
    }
}

/// The Fetch requests among `frames`, in the order sent (the consumer's fetch task has one
/// broker, so one in flight at a time), with their answers.
fn sent_fetches(frames: &[Frame], topic: &str, topic_id: Option<[u8; 16]>) -> Vec<SentFetch> {
    let by_seq: BTreeMap<u64, &Frame> = frames.iter().map(|f| (f.seq, f)).collect();
    let ours = |name: &str, id: &[u8; 16]| name == topic || Some(*id) == topic_id;
    frames
        .iter()
        .filter(|f| f.direction == Direction::Request && f.api_key == Some(ApiKey::Fetch as i16))
        .map(|f| {
            let (_, r) = f.request::<FetchRequest>();
            let mut offsets = BTreeMap::new();
            for t in &r.topics {
                assert!(
                    ours(&t.topic, t.topic_id.as_bytes()),
                    "another topic: {t:?}"
                );
                for p in &t.partitions {
                    assert!(
                        offsets.insert(p.partition, p.fetch_offset).is_none(),
                        "partition {} twice",
                        p.partition
                    );
                }
            }
            let answer = f.answered_by.and_then(|s| by_seq.get(&s)).map(|resp| {
                let r = resp.response::<FetchRequest>();
                let with_records = r
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.records.as_ref().is_some_and(|b| !b.is_empty()))
                    .map(|p| p.partition_index)
                    .collect();
                (r.session_id, with_records)
            });
            SentFetch {
                seq: f.seq,
                session_id: r.session_id,
                epoch: r.session_epoch,
                offsets,
                forgotten: r.forgotten_topics_data.len(),
                answer,
            }
        })
        .collect()
}
