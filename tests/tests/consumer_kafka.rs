//! The consumer on Apache Kafka (`Kafka::single()`): `current_lag`, the lag as the last Fetch
//! answer left it, with no request sent (the Java client's `currentLag`, KIP-695). A partition
//! that brings no records (empty, read to its end, or only a commit marker past its records)
//! gets its end from the answers all the same. `fetch.max.wait.ms` is 20 s: every answer
//! that comes sooner comes because it has something to say.

use std::time::Duration;

use kcon::{Consumer, TopicPartition};
use kcon_pool::Pool;
use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, NewTopic, create};

/// Far below a 20 s long poll, far above what an answer takes.
const PROMPT: Duration = Duration::from_secs(8);

async fn topic(partitions: i32) -> String {
    let pool = Pool::new(kcon_tests::pool::config(Kafka::single().bootstrap())).unwrap();
    let name = unique_name("lag");
    create(&pool, &[NewTopic::new(&name, partitions)]).await;
    name
}

fn consumer() -> Consumer {
    Consumer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.wait.ms", "20000")
        .build()
        .unwrap()
}

/// Receives until `done` holds, each wait for a batch at most 50 ms, all within [`PROMPT`];
/// returns the records received.
async fn receive_until(consumer: &mut Consumer, done: impl Fn(&Consumer) -> bool) -> usize {
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + PROMPT;
    while !done(consumer) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {PROMPT:?}"
        );
        if let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(50), consumer.recv_batch()).await
        {
            received += batch.unwrap().len();
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_lag_comes_from_the_fetch_answers_empty_partitions_included() {
    let topic = topic(2).await;
    let producer = Producer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .build()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..250 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(&topic, format!("v{i}")).with_partition(0))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;

    let (full, empty) = (
        TopicPartition::new(&topic, 0),
        TopicPartition::new(&topic, 1),
    );
    let mut consumer = consumer();
    consumer.assign([full.clone(), empty.clone()]).unwrap();
    assert_eq!(consumer.current_lag(&full), None, "nothing fetched yet");
    let first = consumer.recv_batch().await.unwrap();
    assert!(!first.is_empty());
    // The answer that brought them said where the log ends.
    assert_eq!(consumer.current_lag(&full), Some(250 - first.len() as i64));
    // The empty partition's end comes in answers without records for it: no record says so.
    let rest = receive_until(&mut consumer, |c| {
        c.current_lag(&full) == Some(0) && c.current_lag(&empty) == Some(0)
    })
    .await;
    assert_eq!(first.len() + rest, 250);
    assert_eq!(consumer.position(&full), Some(250));
    consumer.close().await.unwrap();
}

/// Records of a transaction read before its commit: the commit marker then comes alone, in an
/// answer with no records, and moves the position past it; the lag is 0, not 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_marker_alone_moves_the_position_past_it() {
    let topic = topic(1).await;
    let tp = TopicPartition::new(&topic, 0);
    let producer = Producer::builder()
        .bootstrap_servers(Kafka::single().bootstrap())
        .set("transactional.id", unique_name("lag"))
        .build()
        .unwrap();
    producer
        .init_transactions(Duration::from_secs(30))
        .await
        .unwrap();
    producer.begin_transaction().await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(&topic, format!("t{i}")).with_partition(0))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }

    // read_uncommitted (the default) reads them before the commit.
    let mut consumer = consumer();
    consumer.assign([tp.clone()]).unwrap();
    let read = receive_until(&mut consumer, |c| c.current_lag(&tp) == Some(0)).await;
    assert_eq!(read, 10);
    assert_eq!(consumer.position(&tp), Some(10));

    producer
        .commit_transaction(Duration::from_secs(30))
        .await
        .unwrap();
    producer.close().await;
    // The marker at offset 10: the high watermark is 11 and the position goes past it.
    let more = receive_until(&mut consumer, |c| c.position(&tp) == Some(11)).await;
    assert_eq!(more, 0);
    assert_eq!(consumer.current_lag(&tp), Some(0));
    consumer.close().await.unwrap();
}
