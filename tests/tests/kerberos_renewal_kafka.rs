//! Tickets that expire while records flow, on `Kafka::kerberos()`: principal `kcon-short`'s
//! tickets last 12 s, and the listener ends every session after 6 s (KIP-368), so each
//! connection re-authenticates about every 5 s and finds its tickets expired every other time.
//! With a keytab, kcon gets new tickets from the KDC as it needs them: no request fails, no
//! record is lost or written twice. One test to the file: it runs for about 40 s.

use std::time::{Duration, Instant};

use kcon::TopicPartition;
use kcon_produce::ProducerRecord;
use kcon_tests::consumer::recv_n;
use kcon_tests::kerberos::{keytab_login, listener, realm};
use kcon_tests::login::{assigned_consumer, producer, topic, values};

/// Three ticket lifetimes of producing and consuming at once: every delivery succeeds, the
/// consumer reads each record once and in order, and the KDC issued new tickets meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tickets_are_renewed_from_the_keytab_without_a_failed_request() {
    let realm = realm();
    let principal = format!("kcon-short@{}", realm.name);
    let bootstrap = listener();
    let props = keytab_login(&realm, "kcon-short");
    let topic = topic(&bootstrap, &props, 1).await;
    let issued_before = realm.tickets_issued(&principal);

    let mut consumer = assigned_consumer(&bootstrap, &props);
    consumer
        .assign([TopicPartition::new(topic.as_str(), 0)])
        .unwrap();

    // 100 records a second for 36 s, each delivery awaited as it goes: a failed request would
    // fail its record's delivery.
    let run_for = Duration::from_secs(36);
    let producing = {
        let producer = producer(&bootstrap, &props);
        let topic = topic.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0usize;
            let mut pending = Vec::new();
            while started.elapsed() < run_for {
                for _ in 0..10 {
                    let record = ProducerRecord::new(topic.clone(), format!("v{sent}"));
                    pending.push(producer.send(record).await.expect("send"));
                    sent += 1;
                }
                for delivery in pending.drain(..) {
                    delivery.await.expect("a delivery across ticket expiry");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            producer.close().await.expect("close");
            sent
        })
    };
    let sent = producing.await.unwrap();
    let records = recv_n(&mut consumer, sent, Duration::from_secs(60)).await;
    assert_eq!(
        values(&records),
        (0..sent).map(|i| format!("v{i}")).collect::<Vec<_>>(),
        "each record once, in order"
    );
    consumer.close().await.unwrap();

    // Two clients (the producer's and the consumer's), each renewing about every 12 s.
    let renewed = realm.tickets_issued(&principal) - issued_before;
    assert!(
        renewed >= 4,
        "the KDC issued {renewed} tickets to {principal} in {run_for:?}"
    );
}
