//! kcon's transactional producer on librdkafka's mock cluster, with errors pushed for each
//! transaction API and the transaction coordinator moved: each fault ends where the Java client
//! would (retried and committed, refused for good, or fenced), and what commits is read back by
//! librdkafka with read_committed.
//!
//! The mock keeps no offsets committed inside a transaction and fences no earlier producer of a
//! transactional id (DESIGN.md, "The brokers"), so those are asserted on Tansu and in
//! simulation; here the offsets call must succeed and the records commit.

use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError as E;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_produce::{ConsumerGroupMetadata, Outcome, Producer, ProducerRecord, TopicPartition};
use kcon_tests::brokers::unique_name;
use kcon_tests::mock::{CoordinatorType, MockCluster};
use kcon_tests::peers;
use serde_json::json;

const CALL: Duration = Duration::from_secs(30);

fn producer(bootstrap: &str, id: &str) -> Producer {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", id)
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .build()
        .unwrap()
}

/// One transaction of `values` to partition 0 of `topic`, with offsets of group `g`.
async fn transaction(producer: &Producer, topic: &str, values: &[String]) -> Result<(), String> {
    producer
        .begin_transaction(CALL)
        .await
        .map_err(|e| e.to_string())?;
    let mut deliveries = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_partition(0);
        deliveries.push(producer.send(record).await.map_err(|e| e.to_string())?);
    }
    for d in deliveries {
        d.await.map_err(|e| e.to_string())?;
    }
    let group = ConsumerGroupMetadata::new("g");
    producer
        .send_offsets_to_transaction([(TopicPartition::new(topic, 0), 1)], &group, CALL)
        .await
        .map_err(|e| e.to_string())?;
    producer
        .commit_transaction(CALL)
        .await
        .map_err(|e| e.to_string())
}

fn values(prefix: &str) -> Vec<String> {
    (0..3).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_each_transaction_api_end_where_the_java_client_would() {
    let mock = MockCluster::start(3);
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("txn-mock");
    mock.create_topic(&topic, 1, 3);
    let id = unique_name("tx");
    let p = producer(&b, &id);
    mock.start_request_tracking();
    let sent = |api: ApiKey| {
        mock.requests()
            .iter()
            .filter(|r| r.api() == Some(api))
            .count()
    };
    // InitProducerId retried through a coordinator loading.
    mock.push_request_errors(
        ApiKey::InitProducerId,
        &[E::CoordinatorLoadInProgress.code()],
    );
    p.init_transactions(CALL).await.unwrap();
    assert_eq!(sent(ApiKey::InitProducerId), 2);

    // Retriable errors of each API, and the coordinator moving under EndTxn: retried, and
    // the transaction commits.
    let mut committed = Vec::new();
    for (round, (api, error)) in [
        (ApiKey::AddPartitionsToTxn, E::ConcurrentTransactions),
        (ApiKey::AddOffsetsToTxn, E::CoordinatorLoadInProgress),
        (ApiKey::TxnOffsetCommit, E::CoordinatorNotAvailable),
        (ApiKey::EndTxn, E::ConcurrentTransactions),
        (ApiKey::EndTxn, E::NotCoordinator),
    ]
    .into_iter()
    .enumerate()
    {
        if api == ApiKey::EndTxn && error == E::NotCoordinator {
            mock.set_coordinator(CoordinatorType::Transaction, &id, 3);
        }
        mock.push_request_errors(api, &[error.code(), error.code()]);
        let before = sent(api);
        let v = values(&format!("r{round}"));
        transaction(&p, &topic, &v)
            .await
            .unwrap_or_else(|e| panic!("{api:?} {error:?}: {e}"));
        // Both errors were met: the request went three times.
        assert_eq!(sent(api) - before, 3, "{api:?} {error:?}");
        committed.extend(v);
    }

    // A topic the producer may not write to: the transaction fails (abortable), the abort
    // goes through, and the next one commits.
    mock.push_request_errors(
        ApiKey::AddPartitionsToTxn,
        &[E::TopicAuthorizationFailed.code()],
    );
    p.begin_transaction(CALL).await.unwrap();
    let record = ProducerRecord::new(topic.as_str(), "refused").with_partition(0);
    let e = p.send(record).await.unwrap().await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    let e = p.commit_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Abort, "{e}");
    p.abort_transaction(CALL).await.unwrap();
    let v = values("after-abort");
    transaction(&p, &topic, &v).await.unwrap();
    committed.extend(v);

    // Fenced at the coordinator: fatal, and every later call fails alike.
    mock.push_request_errors(ApiKey::EndTxn, &[E::ProducerFenced.code()]);
    let e = transaction(&p, &topic, &values("fenced"))
        .await
        .unwrap_err();
    assert!(e.contains("PRODUCER_FENCED"), "{e}");
    let e = p.begin_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    p.close().await.expect("the producer closes");

    // A transactional id the producer may not use: init_transactions fails for good.
    let refused = producer(&b, &unique_name("tx-refused"));
    mock.push_request_errors(
        ApiKey::InitProducerId,
        &[E::TransactionalIdAuthorizationFailed.code()],
    );
    let e = refused.init_transactions(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    assert!(
        e.to_string()
            .contains("TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
        "{e}"
    );
    // Fenced or refused: what its close reports is not what this test is about.
    let _ = refused.close().await;

    // librdkafka reads every committed transaction; the mock writes the fenced transaction's
    // records without aborting them (it lists no aborted transactions), so only the committed
    // ones are checked, in order.
    let answer = peers::run(
        "txn.py",
        &json!({"op": "read", "bootstrap": b, "topic": topic,
                "isolation": "read_committed", "expect": committed.len(), "quiet_ms": 1500}),
    );
    let read: Vec<String> = answer["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .filter(|v| !v.starts_with("fenced") && v != "refused")
        .collect();
    assert_eq!(read, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kip848_members_group_metadata_carries_its_member_epoch_into_the_transaction() {
    let mock = kcon_tests::kip848::mock();
    let b = mock.bootstrap().to_owned();
    let topic = unique_name("txn-848");
    let group = unique_name("txn-848-group");
    mock.create_topic(&topic, 2, 1);
    let mut consumer = kcon_tests::consumer::builder(&b)
        .group_id(&group)
        .set("group.protocol", "consumer")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    consumer.subscribe([topic.as_str()]).unwrap();
    // Joined once the consumer owns the partitions (its listener runs in recv calls).
    let started = std::time::Instant::now();
    while consumer.assignment().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "not assigned");
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    let metadata = consumer.group_metadata().unwrap();
    assert_eq!(metadata.group_id, group);
    // Under KIP-848 the generation is the member epoch, from 1; the member id the client's.
    assert!(metadata.generation_id >= 1, "{metadata:?}");
    assert!(!metadata.member_id.is_empty(), "{metadata:?}");

    mock.start_request_tracking();
    let p = producer(&b, &unique_name("tx"));
    p.init_transactions(CALL).await.unwrap();
    p.begin_transaction(CALL).await.unwrap();
    let record = ProducerRecord::new(topic.as_str(), "v").with_partition(0);
    p.send(record).await.unwrap().await.unwrap();
    p.send_offsets_to_transaction([(TopicPartition::new(&topic, 0), 1)], &metadata, CALL)
        .await
        .unwrap();
    p.commit_transaction(CALL).await.unwrap();
    let txn_commits = mock
        .requests()
        .iter()
        .filter(|r| r.api() == Some(ApiKey::TxnOffsetCommit))
        .count();
    assert_eq!(txn_commits, 1);
    p.close().await.expect("the producer closes");
    consumer.close().await.unwrap();
}
