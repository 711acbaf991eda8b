//! kcon's transactional producer against Tansu, with a kcon consumer in a group handing it
//! its group metadata and librdkafka (confluent-kafka) on the other side: a consume-transform-
//! produce step commits its outputs and its input offsets in one transaction; an aborted one
//! moves no offset; a second producer with the same `transactional.id` fences the first;
//! librdkafka reads what kcon commits and kcon what librdkafka commits, and both skip an aborted
//! transaction under read_committed.
//!
//! Tansu lists no aborted transactions in its Fetch answers, so a read_committed reader there
//! still sees the records of an aborted transaction (DESIGN.md, "The brokers"). The test of
//! aborted-record filtering therefore reads through a proxy that adds the aborted-transaction
//! lists (`kcon_tests::txn_index`), and then once more from Tansu as a user meets it, where
//! both clients' read_committed readers see the aborted records.

use std::time::Duration;

use kcon::{Consumer, TopicPartition};
use kcon_codec::kafka_protocol::ResponseError;
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{ErrorKind, Outcome, Producer, ProducerBuilder, ProducerRecord};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::consumer::{builder, group_builder, recv_n};
use kcon_tests::group::create_topics;
use kcon_tests::peers::{self, librdkafka_reads};
use kcon_tests::pool::config;
use kcon_tests::txn_index::tansu_with_aborted_index;
use serde_json::{Value, json};

/// How long a transaction call may take.
const CALL: Duration = Duration::from_secs(30);

fn transactional(bootstrap: &str, id: &str) -> ProducerBuilder {
    Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("transactional.id", id)
        .set("request.timeout.ms", "5000")
        .set("delivery.timeout.ms", "20000")
        .set("retry.backoff.ms", "20")
}

async fn create(bootstrap: &str, topics: &[(&str, i32)]) {
    let pool = Pool::new(config(bootstrap)).unwrap();
    create_topics(&pool, BrokerTarget::Any, topics).await;
}

/// Values of `topic`'s partition 0 read from the start by a kcon consumer with `isolation`:
/// `count` of them.
async fn kcon_reads(bootstrap: &str, topic: &str, isolation: &str, count: usize) -> Vec<String> {
    let mut consumer: Consumer = builder(bootstrap)
        .set("isolation.level", isolation)
        .build()
        .unwrap();
    consumer.assign([TopicPartition::new(topic, 0)]).unwrap();
    let records = recv_n(&mut consumer, count, Duration::from_secs(30)).await;
    consumer.close().await.unwrap();
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

async fn send_all(producer: &Producer, topic: &str, values: &[String]) {
    let mut deliveries = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).with_partition(0);
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_transform_produce_step_commits_outputs_and_offsets_together() {
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    let input = unique_name("txn-in");
    let output = unique_name("txn-out");
    let group = unique_name("txn-group");
    create(&b, &[(&input, 1), (&output, 1)]).await;
    let plain = Producer::builder().bootstrap_servers(&b).build().unwrap();
    send_all(&plain, &input, &values("in", 0..20)).await;
    plain.close().await;

    let mut consumer: Consumer = group_builder(&b, &group, "range")
        .set("enable.auto.commit", "false")
        .build()
        .unwrap();
    consumer.subscribe([input.as_str()]).unwrap();
    let producer = transactional(&b, &unique_name("tx")).build().unwrap();
    producer.init_transactions(CALL).await.unwrap();
    let in0 = TopicPartition::new(&input, 0);

    // One transaction per ten input records: the first commits, the second aborts.
    for (round, commit) in [(0, true), (1, false)] {
        let records = recv_n(&mut consumer, 10, Duration::from_secs(60)).await;
        let metadata = consumer.group_metadata().unwrap();
        assert_eq!(metadata.group_id, group);
        assert!(metadata.generation_id >= 0, "{metadata:?}");
        assert!(!metadata.member_id.is_empty(), "{metadata:?}");
        producer.begin_transaction().await.unwrap();
        let outputs: Vec<String> = records
            .iter()
            .map(|r| {
                format!(
                    "out-{}",
                    String::from_utf8_lossy(r.value.as_deref().unwrap())
                )
            })
            .collect();
        send_all(&producer, &output, &outputs).await;
        let next = records.last().unwrap().offset + 1;
        assert_eq!(next, 10 * (round + 1));
        producer
            .send_offsets_to_transaction([(in0.clone(), next)], &metadata, CALL)
            .await
            .unwrap();
        if commit {
            producer.commit_transaction(CALL).await.unwrap();
        } else {
            producer.abort_transaction(CALL).await.unwrap();
        }
        // The group's offset is what the last committed transaction said.
        let committed = consumer.committed([in0.clone()]).await.unwrap();
        assert_eq!(committed[&in0], Some(10), "after round {round}");
    }
    producer.close().await;
    consumer.close().await.unwrap();

    // The committed transaction's outputs, in order, for a read_committed reader of either
    // client.
    let wanted: Vec<String> = values("in", 0..10)
        .into_iter()
        .map(|v| format!("out-{v}"))
        .collect();
    let by_kcon = kcon_reads(&b, &output, "read_committed", 10).await;
    assert_eq!(by_kcon[..10], wanted[..]);
    let by_librdkafka = librdkafka_reads(&b, &output, "read_committed", 10);
    assert_eq!(by_librdkafka[..10], wanted[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let logs = kcon_tests::logs::capture();
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    let topic = unique_name("txn-fence");
    create(&b, &[(&topic, 1)]).await;

    // A zombie that writes again after the takeover: the broker refuses the batch with
    // PRODUCER_FENCED, and the producer can only be closed.
    let id = unique_name("tx");
    let zombie = transactional(&b, &id).build().unwrap();
    zombie.init_transactions(CALL).await.unwrap();
    zombie.begin_transaction().await.unwrap();
    send_all(&zombie, &topic, &values("zombie", 0..3)).await;
    let current = transactional(&b, &id).build().unwrap();
    current.init_transactions(CALL).await.unwrap();
    let late = ProducerRecord::new(topic.as_str(), "zombie-late").with_partition(0);
    let e = zombie.send(late).await.unwrap().await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    assert_eq!(e.code(), Some(ResponseError::ProducerFenced.code()), "{e}");
    let e = zombie.commit_transaction(CALL).await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    let e = zombie.begin_transaction().await.unwrap_err();
    assert_eq!(e.outcome(), Outcome::Close, "{e}");
    zombie.close().await;

    current.begin_transaction().await.unwrap();
    send_all(&current, &topic, &values("current", 0..3)).await;
    current.commit_transaction(CALL).await.unwrap();
    current.close().await;
    let read = librdkafka_reads(&b, &topic, "read_committed", 3);
    assert!(
        read.ends_with(&values("current", 0..3)),
        "the current producer's records are committed: {read:?}"
    );

    // A zombie that only commits: Tansu hangs up on an EndTxn of a fenced epoch rather than
    // answering PRODUCER_FENCED, so the producer retries, says so at WARN, and its commit
    // times out; its close gives the transaction up after delivery.timeout.ms.
    let id = unique_name("tx");
    let zombie = transactional(&b, &id)
        .set("delivery.timeout.ms", "6000")
        .build()
        .unwrap();
    zombie.init_transactions(CALL).await.unwrap();
    zombie.begin_transaction().await.unwrap();
    send_all(&zombie, &topic, &values("zombie2", 0..2)).await;
    let current = transactional(&b, &id).build().unwrap();
    current.init_transactions(CALL).await.unwrap();
    let e = zombie
        .commit_transaction(Duration::from_secs(8))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    let warned = logs
        .lines()
        .into_iter()
        .any(|l| l.contains("WARN") && l.contains(&id) && l.contains("EndTxn"));
    assert!(warned, "a WARN line names the transactional id and EndTxn");
    let closing = std::time::Instant::now();
    zombie.close().await;
    assert!(
        closing.elapsed() < Duration::from_secs(20),
        "{:?}",
        closing.elapsed()
    );
    current.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_what_kcon_commits_and_kcon_what_librdkafka_commits() {
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    let by_kcon = unique_name("txn-by-kcon");
    let by_librdkafka = unique_name("txn-by-librdkafka");
    create(&b, &[(&by_kcon, 1), (&by_librdkafka, 1)]).await;

    let producer = transactional(&b, &unique_name("tx")).build().unwrap();
    producer.init_transactions(CALL).await.unwrap();
    for round in 0..3 {
        producer.begin_transaction().await.unwrap();
        send_all(&producer, &by_kcon, &values(&format!("k{round}"), 0..4)).await;
        producer.commit_transaction(CALL).await.unwrap();
    }
    producer.close().await;
    let read = librdkafka_reads(&b, &by_kcon, "read_committed", 12);
    let wanted: Vec<String> = (0..3)
        .flat_map(|round| values(&format!("k{round}"), 0..4))
        .collect();
    assert_eq!(read, wanted);

    let answer: Value = peers::run(
        "txn.py",
        &json!({"op": "produce", "bootstrap": b, "topic": by_librdkafka,
                "transactional_id": unique_name("tx-peer"),
                "transactions": [
                    {"values": values("r0", 0..5), "commit": true},
                    {"values": values("r1", 0..5), "commit": true}]}),
    );
    assert_eq!(answer["done"], 2);
    let read = kcon_reads(&b, &by_librdkafka, "read_committed", 10).await;
    let wanted: Vec<String> = values("r0", 0..5)
        .into_iter()
        .chain(values("r1", 0..5))
        .collect();
    assert_eq!(read, wanted);
}

/// Three transactions to `topic`-0 through `bootstrap`: committed `c-*`, aborted `a-*`,
/// committed `d-*`.
async fn commit_abort_commit(bootstrap: &str, topic: &str) {
    let producer = transactional(bootstrap, &unique_name("tx"))
        .build()
        .unwrap();
    producer.init_transactions(CALL).await.unwrap();
    for (prefix, commit) in [("c", true), ("a", false), ("d", true)] {
        producer.begin_transaction().await.unwrap();
        send_all(&producer, topic, &values(prefix, 0..4)).await;
        if commit {
            producer.commit_transaction(CALL).await.unwrap();
        } else {
            producer.abort_transaction(CALL).await.unwrap();
        }
    }
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_transactions_are_skipped_by_read_committed_readers_of_both_clients() {
    let all: Vec<String> = ["c", "a", "d"]
        .iter()
        .flat_map(|p| values(p, 0..4))
        .collect();
    let committed: Vec<String> = ["c", "d"].iter().flat_map(|p| values(p, 0..4)).collect();

    // Tansu with the aborted-transaction index it lacks, added by a proxy: both clients skip
    // the aborted transaction under read_committed and read it under read_uncommitted.
    let (_tansu, index) = tansu_with_aborted_index().await;
    let b = index.bootstrap();
    let topic = unique_name("txn-aborted");
    create(&b, &[(&topic, 1)]).await;
    commit_abort_commit(&b, &topic).await;
    assert_eq!(kcon_reads(&b, &topic, "read_committed", 8).await, committed);
    assert_eq!(kcon_reads(&b, &topic, "read_uncommitted", 12).await, all);
    assert_eq!(librdkafka_reads(&b, &topic, "read_committed", 8), committed);
    assert_eq!(librdkafka_reads(&b, &topic, "read_uncommitted", 12), all);

    // Tansu as a user meets it: no index, so read_committed readers of either client see the
    // aborted records too.
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    create(&b, &[(&topic, 1)]).await;
    commit_abort_commit(&b, &topic).await;
    assert_eq!(kcon_reads(&b, &topic, "read_committed", 12).await, all);
    assert_eq!(librdkafka_reads(&b, &topic, "read_committed", 12), all);
}
