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

use std::collections::BTreeMap;
use std::time::Instant;

use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::records::{Batch, DecodeOptions, RecordBatches};
use kcon_core::{TopicId, TopicPartition};
use kcon_fetch::transactions::committed_records;
use kcon_fetch::{
    FetchParams, FetchSession, PartitionFetch, RequestKind, SessionOutcome, fetch_request,
};
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::group::create_topics;
use kcon_tests::offsets::produce_spread;
use kcon_tests::pool::config;

const PARTITIONS: i32 = 6;
const RECORDS: i64 = 100_000;
/// Records per produced batch: record `k` of a partition has value `value-{k % BATCH}`.
const BATCH: i64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_broker_gets_full_fetches_and_every_record_arrives_in_order() {
    let tansu = Tansu::start();
    let pool = Pool::new(config(&tansu.bootstrap())).unwrap();
    let topic = unique_name("fetch");
    create_topics(&pool, BrokerTarget::Any, &[(&topic, PARTITIONS)]).await;
    let per_partition = produce_spread(&pool, &topic, PARTITIONS, RECORDS, BATCH).await;

    let metadata = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .unwrap();
    let topic_id = metadata.topic(&topic).expect("the topic").id;
    let leader = metadata.leader(&topic, 0).expect("a leader").id;
    let conn = pool.connection(BrokerTarget::Broker(leader)).await.unwrap();
    let version = conn.version(ApiKey::Fetch).unwrap();
    assert!(
        version >= 13,
        "Tansu speaks Fetch v{version}: expected topic ids"
    );

    let mut wanted: BTreeMap<TopicPartition, PartitionFetch> = (0..PARTITIONS)
        .map(|p| {
            (
                TopicPartition::new(topic.as_str(), p),
                // 64 KiB per partition: many rounds of fetches, each resuming
                // where the last stopped.
                PartitionFetch::new(topic_id, 0, 64 << 10),
            )
        })
        .collect();
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
                let batches: Vec<Batch> = RecordBatches::new(bytes, DecodeOptions::default())
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{tp}: {e}"));
                let committed =
                    committed_records(&batches, entry.fetch_offset, None, p.high_watermark)
                        .unwrap_or_else(|e| panic!("{tp}: {e}"));
                let expected = &mut next[p.partition_index as usize];
                for r in &committed.records {
                    assert_eq!(r.offset(), *expected, "{tp}: out of order or missing");
                    let value = format!("value-{}", r.offset() % BATCH);
                    assert_eq!(r.value(), Some(value.as_bytes()), "{tp} at {}", r.offset());
                    *expected += 1;
                    received += 1;
                }
                assert_eq!(committed.position, *expected, "{tp}");
                entry.fetch_offset = committed.position;
            }
        }
    }
    assert_eq!(next, per_partition, "records per partition");
    assert!(
        requests > 1,
        "one fetch carried everything: the test proves too little"
    );
}
