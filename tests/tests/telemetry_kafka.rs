//! KIP-714's client metrics on `Kafka::single()`, whose node takes what clients push
//! (`kcon_tests::telemetry`): the harness checked against the reference peer, Apache Kafka
//! 4.4.0's Java producer, which pushes by default (`enable.metrics.push=true`) once a
//! subscription selects it.

use std::collections::BTreeSet;
use std::time::Duration;

use kcon_tests::brokers::unique_name;
use kcon_tests::kafka::{Kafka, single_with};
use kcon_tests::telemetry::{
    describe, subscribe_client_metrics, unsubscribe_client_metrics, wait_for_client_pushes,
};

/// The records the producer sends, at `THROUGHPUT` a second: five seconds of pushes every
/// second, the first of them 0.5-1.5 s after the producer's subscription (the Java client
/// staggers the first push by a random 0.5-1.5 intervals).
const RECORDS: u32 = 500;
const THROUGHPUT: u32 = 100;

/// The Java producer, subscribed to every metric every second, pushes its metrics while it runs
/// and once more, terminating, as it closes: every push one client instance's, decoded, each
/// with the producer's metrics (`org.apache.kafka.producer.*`), whose record counts (a
/// monotonic sum of delta temporality) add up to the records sent. The terminating push is
/// one the Java client makes only when its I/O thread still has work as it closes (KAFKA-17731:
/// otherwise it skips it): its last batch is still lingering then (`linger.ms` of a minute, so
/// only full batches go before the close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_producer_pushes_its_metrics_while_it_runs_and_a_terminating_push_last() {
    let kafka = Kafka::single();
    let name = unique_name("telemetry-java-producer");
    let pool = single_with(&[(&name, 1)]).await;
    subscribe_client_metrics(&pool, &name, &["*"], 1000, &[&format!("client_id={name}")]).await;

    let args: Vec<String> = [
        "--topic",
        &name,
        "--num-records",
        &RECORDS.to_string(),
        "--throughput",
        &THROUGHPUT.to_string(),
        "--record-size",
        "100",
        "--command-property",
        &format!("client.id={name}"),
        "linger.ms=60000",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let report = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Kafka::single().tool("org.apache.kafka.tools.ProducerPerformance", &args)
    })
    .await
    .unwrap();
    assert!(
        report.contains(&format!("{RECORDS} records sent")),
        "ProducerPerformance: {report}"
    );

    // The tool's producer has closed: it waits for the answer to its terminating push.
    let pushes = wait_for_client_pushes(
        kafka,
        &name,
        |p| p.iter().any(|x| x.terminating),
        Duration::from_secs(10),
    )
    .await;
    unsubscribe_client_metrics(&pool, &name).await;
    let all = describe(&pushes);

    let instances: BTreeSet<&str> = pushes
        .iter()
        .map(|p| p.client_instance_id.as_str())
        .collect();
    assert_eq!(
        instances.len(),
        1,
        "one producer, one client instance:\n{all}"
    );
    let id = *instances.first().unwrap();
    assert!(
        id.len() == 36
            && id.chars().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
            }),
        "the instance id as java.util.UUID writes it: {id}"
    );
    let (last, before) = pushes.split_last().unwrap();
    assert!(last.terminating, "the terminating push last:\n{all}");
    assert!(
        !before.is_empty() && before.iter().all(|p| !p.terminating),
        "pushes while the producer ran, then one terminating:\n{all}"
    );
    for p in &pushes {
        assert_eq!(p.error, None, "every push decoded:\n{all}");
        assert_eq!(p.push_interval_ms, 1000, "{all}");
        assert!(
            p.points_of("org.apache.kafka.producer.record.send.total")
                .count()
                == 1,
            "every push has the producer's record count:\n{all}"
        );
        assert!(
            p.points
                .iter()
                .all(|x| x.metric.starts_with("org.apache.kafka.")),
            "{all}"
        );
    }

    // The records sent, one delta a push (sent with the batch that held them: the last batch,
    // lingering until the close, in the terminating push).
    let mut sent = 0.0;
    let mut sent_to_topic = 0.0;
    for p in &pushes {
        let point = p
            .points_of("org.apache.kafka.producer.record.send.total")
            .next()
            .unwrap();
        assert_eq!(
            (
                point.kind.as_str(),
                point.monotonic,
                point.temporality.as_str()
            ),
            ("sum", true, "delta"),
            "{point:?}"
        );
        sent += point.value;
        sent_to_topic += p
            .points_of("org.apache.kafka.producer.topic.record.send.total")
            .filter(|x| x.attributes.get("topic") == Some(&name))
            .map(|x| x.value)
            .sum::<f64>();
    }
    assert_eq!(sent, f64::from(RECORDS), "{all}");
    assert_eq!(sent_to_topic, f64::from(RECORDS), "{all}");
}
