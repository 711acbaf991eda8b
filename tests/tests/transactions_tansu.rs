//! kcon's transactional producer and read_committed reader on Tansu, where it differs from
//! Apache Kafka (`transactions_kafka.rs` has the rest): Tansu hangs up on an EndTxn of a fenced
//! epoch rather than answering PRODUCER_FENCED, and it lists no aborted transactions in its
//! Fetch answers, so a read_committed reader there sees the records of an aborted transaction
//! (DESIGN.md, "The brokers"). Both are what a user meets on Tansu.

use std::time::Duration;

use kcon::{Consumer, TopicPartition};
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{ErrorKind, Producer, ProducerBuilder};
use kcon_tests::brokers::{Tansu, unique_name};
use kcon_tests::consumer::{builder, recv_n};
use kcon_tests::group::create_topics;
use kcon_tests::peers::librdkafka_reads;
use kcon_tests::pool::config;
use kcon_tests::transactions::{CALL, commit_abort_commit, send_all, values};

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

/// A zombie that only commits after a second producer took its transactional id over: Tansu
/// hangs up on the EndTxn of the fenced epoch rather than answering PRODUCER_FENCED, so the
/// producer retries, says so at WARN, and its commit times out; its close gives the
/// transaction up after delivery.timeout.ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_commit_tansu_hangs_up_on_is_retried_told_at_warn_and_given_up_on_close() {
    let logs = kcon_tests::logs::capture();
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    let topic = unique_name("txn-fence");
    create(&b, &[(&topic, 1)]).await;
    let id = unique_name("tx");
    let zombie = transactional(&b, &id)
        .set("delivery.timeout.ms", "6000")
        .build()
        .unwrap();
    zombie.init_transactions(CALL).await.unwrap();
    zombie.begin_transaction(CALL).await.unwrap();
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
    // Fenced or refused: what its close reports is not what this test is about.
    let _ = zombie.close().await;
    assert!(
        closing.elapsed() < Duration::from_secs(20),
        "{:?}",
        closing.elapsed()
    );
    current.close().await.expect("the producer closes");
}

/// Committed `c-*`, aborted `a-*`, committed `d-*` on Tansu: with no aborted-transaction lists
/// in its Fetch answers, read_committed readers of either client see the aborted records too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tansu_read_committed_readers_of_both_clients_see_aborted_records() {
    let tansu = Tansu::start();
    let b = tansu.bootstrap();
    let topic = unique_name("txn-aborted");
    create(&b, &[(&topic, 1)]).await;
    let producer = transactional(&b, &unique_name("tx")).build().unwrap();
    let (all, _) = commit_abort_commit(producer, &topic).await;
    assert_eq!(kcon_reads(&b, &topic, "read_committed", 12).await, all);
    assert_eq!(librdkafka_reads(&b, &topic, "read_committed", 12), all);
}
