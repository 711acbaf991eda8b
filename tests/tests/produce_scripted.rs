//! `kcon_produce::Producer`'s idempotence against a scripted broker: which producer id, epoch
//! and sequence each batch carries when the broker answers a retriable error, loses the
//! producer's state (UNKNOWN_PRODUCER_ID) or sees a sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER).
//! A real broker shows the last two only after losing data, so the broker here is told to.

use std::time::Duration;

use kcon_codec::kafka_protocol::ResponseError;
use kcon_produce::{ErrorKind, Producer, ProducerRecord};
use kcon_tests::produce::scripted::{Sent, SequenceBroker};
use tokio::time::timeout;

const TOPIC: &str = "scripted";

fn idempotent(broker: &SequenceBroker) -> Producer {
    Producer::builder()
        .bootstrap_servers(&broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("retry.backoff.ms", "10")
        .set("request.timeout.ms", "5000")
        .set("delivery.timeout.ms", "20000")
        .build()
        .unwrap()
}

/// Sends `n` records to partition 0 and flushes, returning each delivery's result.
async fn send(
    producer: &Producer,
    n: usize,
) -> Vec<Result<kcon_produce::Delivered, kcon_produce::ProduceError>> {
    let mut deliveries = Vec::new();
    for i in 0..n {
        let record = ProducerRecord::new(TOPIC, format!("v{i}")).with_partition(0);
        deliveries.push(producer.send(record).await.unwrap());
    }
    timeout(Duration::from_secs(30), producer.flush())
        .await
        .expect("flush returns");
    let mut out = Vec::new();
    for d in deliveries {
        out.push(d.await);
    }
    out
}

fn sent(producer_id: i64, base_sequence: i32, records: i32, answered: i16) -> Sent {
    Sent {
        partition: 0,
        producer_id,
        producer_epoch: 0,
        base_sequence,
        records,
        answered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retriable_error_resends_the_batch_with_the_same_sequence() {
    let code = ResponseError::NotEnoughReplicas.code();
    let broker = SequenceBroker::start(TOPIC, 1, vec![code]).await;
    let producer = idempotent(&broker);
    for r in send(&producer, 5).await {
        r.unwrap();
    }
    for r in send(&producer, 3).await {
        r.unwrap();
    }
    assert_eq!(
        broker.sent(),
        [sent(1, 0, 5, code), sent(1, 0, 5, 0), sent(1, 5, 3, 0)]
    );
    assert_eq!(broker.producer_ids(), 1);
    assert_eq!(producer.metrics().retries, 1);
    producer.close().await.expect("the producer closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_producer_id_gets_a_new_id_and_the_batch_is_resent_under_it() {
    let code = ResponseError::UnknownProducerId.code();
    // The first batch is accepted; the broker then forgets the producer.
    let broker = SequenceBroker::start(TOPIC, 1, vec![0, code]).await;
    let producer = idempotent(&broker);
    send(&producer, 4).await.into_iter().for_each(|r| {
        r.unwrap();
    });
    let second = send(&producer, 2).await;
    let offsets: Vec<Option<i64>> = second.iter().map(|r| r.as_ref().unwrap().offset).collect();
    assert_eq!(offsets, [Some(4), Some(5)]);
    assert_eq!(
        broker.sent(),
        [sent(1, 0, 4, 0), sent(1, 4, 2, code), sent(2, 0, 2, 0)]
    );
    assert_eq!(broker.producer_ids(), 2);
    producer.close().await.expect("the producer closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_order_sequence_fails_the_batch_and_later_ones_start_over() {
    let code = ResponseError::OutOfOrderSequenceNumber.code();
    let broker = SequenceBroker::start(TOPIC, 1, vec![code]).await;
    let producer = idempotent(&broker);
    for r in send(&producer, 3).await {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Broker, "{e}");
        assert_eq!(
            e.code(),
            Some(ResponseError::OutOfOrderSequenceNumber),
            "{e}"
        );
        assert!(
            e.to_string().contains("OUT_OF_ORDER_SEQUENCE_NUMBER"),
            "{e}"
        );
        assert!(!e.is_retriable(), "{e}");
    }
    for r in send(&producer, 2).await {
        r.unwrap();
    }
    assert_eq!(broker.sent(), [sent(1, 0, 3, code), sent(2, 0, 2, 0)]);
    producer.close().await.expect("the producer closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_gives_its_sequence_back() {
    let code = ResponseError::InvalidRecord.code();
    let broker = SequenceBroker::start(TOPIC, 1, vec![code]).await;
    let producer = idempotent(&broker);
    for r in send(&producer, 3).await {
        assert_eq!(r.unwrap_err().code(), Some(ResponseError::InvalidRecord));
    }
    for r in send(&producer, 2).await {
        r.unwrap();
    }
    // Not written, so the broker still expects sequence 0 from this producer.
    assert_eq!(broker.sent(), [sent(1, 0, 3, code), sent(1, 0, 2, 0)]);
    producer.close().await.expect("the producer closes");
}
