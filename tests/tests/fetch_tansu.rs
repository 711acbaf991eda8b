//! kcon-fetch's building blocks on a broker that keeps no fetch sessions: the fetch session
//! (KIP-227) and the record filter read 100,000 records over 6 partitions, in order per
//! partition, none missing. Tansu answers session id 0 to a request for a session (see
//! DESIGN.md, "The brokers"), so every request after the first must be a correct full,
//! sessionless fetch that still asks for one.
//!
//! Only Tansu shows this among the brokers here: Apache Kafka opens a session for every
//! request that asks while its session cache has room, and no cluster of the harness is
//! configured without one (`max.incremental.fetch.session.cache.slots=0`, a static broker
//! setting). The same reading in a session Kafka keeps is `fetch_kafka.rs`.

use std::time::Instant;

use kcon_core::{TopicId, TopicPartition};
use kcon_fetch::{FetchParams, FetchSession, RequestKind, SessionOutcome, fetch_request};
use kcon_pool::{BrokerTarget, Pool};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::fetch::{PARTITIONS, RECORDS, SpreadTopic, read_partition, spread_topic};
use kcon_tests::group::create_topics;
use kcon_tests::pool::config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_broker_gets_full_fetches_and_every_record_arrives_in_order() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let topic = unique_name("fetch");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, PARTITIONS)]).await;
    let SpreadTopic {
        topic,
        per_partition,
        conn,
        version,
        mut wanted,
    } = spread_topic(&pool, topic, "Tansu").await;

    let params = FetchParams {
        max_wait_ms: 100,
        ..FetchParams::default()
    };
    let mut session = FetchSession::new();
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut received = 0i64;
    let mut requests = 0;
    let started = Instant::now();
    while received < RECORDS {
        assert!(
            started.elapsed().as_secs() < 120,
            "only {received} records after {requests} fetches"
        );
        let request = session.build(&wanted, version).unwrap();
        // The first request asks for a session; after Tansu's "no session" every one is again
        // a full fetch of every partition asking for one (0, 0), never an incremental one.
        assert_eq!(request.kind, RequestKind::Full, "request {requests}");
        assert_eq!(
            (request.session_id, request.epoch),
            (0, 0),
            "request {requests}"
        );
        assert_eq!(request.partitions.len(), PARTITIONS as usize);
        assert!(request.forgotten.is_empty());
        for (tp, p) in &request.partitions {
            assert_eq!(p.fetch_offset, next[tp.partition as usize], "{tp}");
        }
        let fetch = fetch_request(&request, &params, version).unwrap();
        let answer = conn.send(&fetch).await.unwrap();
        requests += 1;
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assert_eq!(answer.session_id, 0, "Tansu kept a session");
        assert!(matches!(
            session.handle_response(&answer).unwrap(),
            SessionOutcome::Accepted { .. }
        ));
        assert!(session.is_sessionless());
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
                let Some(bytes) = p.records.clone() else {
                    continue;
                };
                let tp = TopicPartition::new(topic.as_str(), p.partition_index);
                let entry = wanted.get_mut(&tp).expect("a wanted partition");
                let expected = &mut next[p.partition_index as usize];
                received += read_partition(&tp, bytes, p.high_watermark, entry, expected);
            }
        }
    }
    assert_eq!(next, per_partition, "records per partition");
    assert!(
        requests > 1,
        "one fetch carried everything: the test proves too little"
    );
}
