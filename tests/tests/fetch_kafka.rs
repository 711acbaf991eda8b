//! kcon-fetch's building blocks on Apache Kafka 4.4 (`Kafka::single()`): the fetch session
//! (KIP-227) and the record filter read 100,000 records over 6 partitions, in order per
//! partition, none missing. Kafka keeps the session the first request asks for: every later
//! request is incremental in it, its epoch one more each time, carrying just the partitions
//! whose position moved; each answer carries just the partitions with records; and the close
//! at the end is answered.

use std::collections::BTreeSet;
use std::time::Instant;

use kcon_core::{TopicId, TopicPartition};
use kcon_fetch::{FetchParams, FetchSession, RequestKind, SessionOutcome, fetch_request};
use kcon_pool::Pool;
use kcon_tests::brokers::unique_name;
use kcon_tests::fetch::{PARTITIONS, RECORDS, SpreadTopic, read_partition, spread_topic};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::pool::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeping_broker_gets_incremental_fetches_and_every_record_arrives_in_order() {
    let pool = Pool::new(config(Kafka::single().bootstrap())).unwrap();
    let topic = unique_name("fetch");
    create_topics(&pool, &[(&topic, PARTITIONS)]).await;
    let SpreadTopic {
        topic,
        per_partition,
        conn,
        version,
        mut wanted,
    } = spread_topic(&pool, topic, "Kafka").await;

    let params = FetchParams::default();
    let mut session = FetchSession::new();
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut received = 0i64;
    let mut requests = 0;
    // The session Kafka opened, and the partitions whose position the last answer moved.
    let mut opened = None;
    let mut moved: BTreeSet<TopicPartition> = BTreeSet::new();
    let started = Instant::now();
    while received < RECORDS {
        assert!(
            started.elapsed().as_secs() < 120,
            "only {received} records after {requests} fetches"
        );
        let request = session.build(&wanted, version).unwrap();
        assert!(request.forgotten.is_empty(), "request {requests}");
        let sent: BTreeSet<TopicPartition> = request
            .partitions
            .iter()
            .map(|(tp, _)| tp.clone())
            .collect();
        match opened {
            // The first request asks for a session, with every partition.
            None => {
                assert_eq!(request.kind, RequestKind::Full, "request {requests}");
                assert_eq!((request.session_id, request.epoch), (0, 0));
                assert_eq!(sent.len(), PARTITIONS as usize);
            }
            // Every later one is the next step of that session, with what moved.
            Some(id) => {
                assert_eq!(request.kind, RequestKind::Incremental, "request {requests}");
                assert_eq!(
                    (request.session_id, request.epoch),
                    (id, requests),
                    "request {requests}"
                );
                assert_eq!(sent, moved, "request {requests}");
            }
        }
        for (tp, p) in &request.partitions {
            assert_eq!(p.fetch_offset, next[tp.partition as usize], "{tp}");
        }
        let fetch = fetch_request(&request, &params, version).unwrap();
        let answer = conn.send(&fetch).await.unwrap();
        requests += 1;
        assert_eq!(answer.error_code, 0, "{answer:?}");
        match opened {
            None => {
                assert_ne!(answer.session_id, 0, "Kafka kept no session");
                opened = Some(answer.session_id);
            }
            Some(id) => assert_eq!(answer.session_id, id, "request {requests}"),
        }
        assert_eq!(
            session.handle_response(&answer).unwrap(),
            SessionOutcome::Accepted {
                incremental: requests > 1
            }
        );
        assert!(!session.is_sessionless());
        assert_eq!(session.session_id(), opened);
        moved.clear();
        for t in &answer.responses {
            let name = session
                .topic_name(TopicId(*t.topic_id.as_bytes()))
                .map(str::to_owned);
            assert_eq!(
                name.as_deref(),
                Some(topic.as_str()),
                "topic id {:?}",
                t.topic_id
            );
            for p in &t.partitions {
                assert_eq!(p.error_code, 0, "{p:?}");
                let tp = TopicPartition::new(topic.as_str(), p.partition_index);
                let Some(bytes) = p.records.clone().filter(|b| !b.is_empty()) else {
                    // Only a full answer names a partition that has nothing new.
                    assert_eq!(requests, 1, "{tp} in an incremental answer without records");
                    continue;
                };
                let entry = wanted.get_mut(&tp).expect("a wanted partition");
                let before = entry.fetch_offset;
                let expected = &mut next[p.partition_index as usize];
                received += read_partition(&tp, bytes, p.high_watermark, entry, expected);
                if entry.fetch_offset != before {
                    moved.insert(tp.clone());
                }
            }
        }
    }
    assert_eq!(next, per_partition, "records per partition");
    assert!(
        requests > 2,
        "{requests} fetches carried everything: the test proves too little"
    );

    // The close: the session's id with epoch -1 and nothing to fetch, answered without error.
    let id = opened.expect("a session");
    let close = session.close().expect("a session to close");
    assert_eq!(
        (close.kind, close.session_id, close.epoch),
        (RequestKind::Close, id, -1)
    );
    assert!(close.partitions.is_empty());
    let answer = conn
        .send(&fetch_request(&close, &params, version).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.error_code, 0, "{answer:?}");
    assert!(session.close().is_none(), "closed once");
}
