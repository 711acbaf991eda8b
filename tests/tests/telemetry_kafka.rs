//! KIP-714's client metrics on `Kafka::single()`, whose node takes what clients push
//! (`kcon_tests::telemetry`): the harness checked against the reference peer, Apache Kafka
//! 4.4.0's Java producer, which pushes by default (`enable.metrics.push=true`) once a
//! subscription selects it; then kcon's consumer, producer and share consumer at their
//! defaults, the same way;
//! `enable.metrics.push=false`; and a broker that offers no KIP-714 (`Kafka::noauto()`, which
//! has no metrics plugin).

use std::collections::BTreeSet;
use std::time::Duration;

use kcon_produce::{Producer, ProducerRecord};
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::recv_n;
use kcon_tests::kafka::{Kafka, NewTopic, create, single_with};
use kcon_tests::login::{consumer, producer};
use kcon_tests::telemetry::{
    TelemetryPush, describe, subscribe_client_metrics, terminated, unsubscribe_client_metrics,
    wait_for_client_pushes, wait_for_pushes,
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
/// only full batches go before the close). Then a kcon producer under the same subscription
/// pushes only names the Java producer pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_producer_pushes_its_metrics_while_it_runs_and_a_terminating_push_last() {
    let kafka = Kafka::single();
    let name = unique_name("telemetry-java-producer");
    let pool = single_with(&[(&name, 1)]).await;
    // The Java producer's client id, and kcon's beside it (`<name>-kcon`).
    subscribe_client_metrics(
        &pool,
        &name,
        &["*"],
        1000,
        &[&format!("client_id={name}(-kcon)?")],
    )
    .await;

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
    let pushes = wait_for_client_pushes(kafka, &name, terminated, Duration::from_secs(10)).await;
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
    assert_pushed_then_terminated(&pushes, "org.apache.kafka.");
    for p in &pushes {
        assert!(
            p.points_of("org.apache.kafka.producer.record.send.total")
                .count()
                == 1,
            "every push has the producer's record count:\n{all}"
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

    // kcon's producer under the same subscription pushes names the Java producer pushed.
    let java = metric_names(&pushes);
    let kcon_id = format!("{name}-kcon");
    let kcon = producer(kafka.bootstrap(), &[("client.id", kcon_id.clone())]);
    // Its subscription known, its close pushes once more.
    send_one_and_subscribe(&kcon, &name).await;
    kcon.close().await.unwrap();
    let pushed = wait_for_client_pushes(kafka, &kcon_id, terminated, Duration::from_secs(15)).await;
    let names = metric_names(&pushed);
    assert!(!names.is_empty(), "{}", describe(&pushed));
    let not_java: Vec<&&str> = names.difference(&java).collect();
    assert!(not_java.is_empty(), "not the Java producer's: {not_java:?}");
    unsubscribe_client_metrics(&pool, &name).await;
}

/// What kcon's consumer pushes (`crate::metrics::telemetry` in kcon): each a name the Java
/// consumer 4.4 pushes for the same thing, measured with this sink.
const CONSUMER_METRICS: &[&str] = &[
    "org.apache.kafka.consumer.coordinator.assigned.partitions",
    "org.apache.kafka.consumer.coordinator.commit.latency.max",
    "org.apache.kafka.consumer.coordinator.commit.total",
    "org.apache.kafka.consumer.coordinator.rebalance.total",
    "org.apache.kafka.consumer.fetch.manager.bytes.consumed.total",
    "org.apache.kafka.consumer.fetch.manager.fetch.latency.avg",
    "org.apache.kafka.consumer.fetch.manager.fetch.latency.max",
    "org.apache.kafka.consumer.fetch.manager.fetch.total",
    "org.apache.kafka.consumer.fetch.manager.records.consumed.total",
    "org.apache.kafka.consumer.fetch.manager.records.lag",
    "org.apache.kafka.consumer.fetch.manager.records.lag.max",
];

/// The sum of a counter's deltas over `pushes`.
fn total(pushes: &[TelemetryPush], metric: &str) -> f64 {
    pushes
        .iter()
        .flat_map(|p| p.points_of(metric))
        .map(|x| {
            assert_eq!(
                (x.kind.as_str(), x.monotonic, x.temporality.as_str()),
                ("sum", true, "delta"),
                "{x:?}"
            );
            x.value
        })
        .sum()
}

/// Every metric name `pushes` carry.
fn metric_names(pushes: &[TelemetryPush]) -> BTreeSet<&str> {
    pushes
        .iter()
        .flat_map(|p| p.points.iter().map(|x| x.metric.as_str()))
        .collect()
}

/// Sends one record to `topic` with `producer`, waits for its acknowledgement, then for the
/// instance id the broker gives the producer (a client asks for its subscription once it
/// reached the cluster): it must have one within 10 s.
async fn send_one_and_subscribe(producer: &Producer, topic: &str) {
    producer
        .send(ProducerRecord::new(topic, "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        producer
            .client_instance_id(Duration::from_secs(10))
            .await
            .is_some()
    );
}

/// One client instance's pushes, as a well-behaved client makes them: no error, the
/// subscription's interval, only metrics it asked for, and exactly one terminating push, last.
fn assert_pushed_then_terminated(pushes: &[TelemetryPush], prefix: &str) {
    let all = describe(pushes);
    let (last, before) = pushes.split_last().expect("pushes");
    assert!(last.terminating, "the terminating push last:\n{all}");
    assert!(
        !before.is_empty() && before.iter().all(|p| !p.terminating),
        "pushes while the client ran, then one terminating:\n{all}"
    );
    for p in pushes {
        assert_eq!(p.error, None, "every push decoded:\n{all}");
        assert_eq!(p.push_interval_ms, 1000, "{all}");
        assert!(
            p.points.iter().all(|x| x.metric.starts_with(prefix)),
            "only what the subscription names:\n{all}"
        );
    }
}

/// A kcon consumer and producer at their defaults push their metrics once a subscription
/// selects them (each by its client id), counts of delta temporality that add up to the
/// records sent and consumed, the consumer's lag per partition, its group as a resource
/// attribute, under the Java client's names; each a terminating push when it closes; and each
/// knows the instance id the broker gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcon_clients_push_the_metrics_a_subscription_names_and_a_terminating_push_on_close() {
    const RECORDS: usize = 30;
    let kafka = Kafka::single();
    let name = unique_name("telemetry-kcon");
    let pool = single_with(&[(&name, 3)]).await;
    // The consumer's metrics to the consumer, the producer's to the producer: a subscription
    // for each client id would do as well.
    subscribe_client_metrics(
        &pool,
        &name,
        &["org.apache.kafka.consumer.", "org.apache.kafka.producer."],
        1000,
        &[&format!("client_id={name}-.*")],
    )
    .await;

    let producer = producer(
        kafka.bootstrap(),
        &[("client.id", format!("{name}-producer"))],
    );
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(name.clone(), format!("v{i}")).with_key(format!("k{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let producer_id = producer
        .client_instance_id(Duration::from_secs(10))
        .await
        .expect("the producer's instance id");

    let mut consumer = consumer(
        kafka.bootstrap(),
        &[("client.id", format!("{name}-consumer"))],
        &name,
    );
    consumer.subscribe([name.clone()]).unwrap();
    let records = recv_n(&mut consumer, RECORDS, Duration::from_secs(60)).await;
    assert_eq!(records.len(), RECORDS);
    let consumer_id = consumer
        .client_instance_id(Duration::from_secs(10))
        .await
        .expect("the consumer's instance id");
    assert_ne!(consumer_id, producer_id, "an instance id per client");
    // The consumer goes on waiting for records, as an application's does: what it publishes
    // (its lag among it) follows its position while it is asked for records.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let polling = tokio::spawn(async move {
        tokio::select! {
            _ = stopped => consumer,
            r = consumer.recv() => panic!("no more records were sent: {r:?}"),
        }
    });

    // A push that shows every record consumed and no partition behind.
    let caught_up = |pushes: &[TelemetryPush]| {
        total(
            pushes,
            "org.apache.kafka.consumer.fetch.manager.records.consumed.total",
        ) == RECORDS as f64
            && pushes.last().is_some_and(|p| {
                let lags: Vec<f64> = p
                    .points_of("org.apache.kafka.consumer.fetch.manager.records.lag")
                    .map(|x| x.value)
                    .collect();
                lags == [0.0; 3]
            })
    };
    let caught = wait_for_pushes(
        kafka,
        &consumer_id.hyphenated(),
        caught_up,
        Duration::from_secs(30),
    )
    .await;
    stop.send(()).unwrap();
    polling.await.unwrap().close().await.unwrap();
    let pushes = wait_for_pushes(
        kafka,
        &consumer_id.hyphenated(),
        terminated,
        Duration::from_secs(10),
    )
    .await;
    let all = describe(&pushes);
    assert_pushed_then_terminated(&pushes, "org.apache.kafka.");
    for p in &pushes {
        assert_eq!(p.client_id, format!("{name}-consumer"));
        assert_eq!(p.resource.get("group_id"), Some(&name), "{all}");
        for x in &p.points {
            assert!(
                CONSUMER_METRICS.contains(&x.metric.as_str()),
                "a name of the Java consumer's: {}\n{all}",
                x.metric
            );
        }
    }
    assert_eq!(
        total(
            &pushes,
            "org.apache.kafka.consumer.fetch.manager.records.consumed.total"
        ),
        RECORDS as f64,
        "{all}"
    );
    assert!(
        total(
            &pushes,
            "org.apache.kafka.consumer.fetch.manager.bytes.consumed.total"
        ) > 0.0,
        "{all}"
    );
    assert!(
        total(
            &pushes,
            "org.apache.kafka.consumer.fetch.manager.fetch.total"
        ) > 0.0,
        "{all}"
    );
    assert_eq!(
        total(
            &pushes,
            "org.apache.kafka.consumer.coordinator.rebalance.total"
        ),
        1.0,
        "{all}"
    );
    let partitions: BTreeSet<String> = pushes
        .iter()
        .flat_map(|p| p.points_of("org.apache.kafka.consumer.fetch.manager.records.lag"))
        .map(|x| {
            assert_eq!(x.attributes.get("topic"), Some(&name), "{x:?}");
            x.attributes["partition"].clone()
        })
        .collect();
    assert_eq!(
        partitions,
        BTreeSet::from(["0".into(), "1".into(), "2".into()])
    );
    let assigned: Vec<_> = caught
        .last()
        .unwrap()
        .points_of("org.apache.kafka.consumer.coordinator.assigned.partitions")
        .map(|x| (x.kind.as_str(), x.value))
        .collect();
    assert_eq!(assigned, [("gauge", 3.0)], "{all}");

    producer.close().await.unwrap();
    let pushes = wait_for_pushes(
        kafka,
        &producer_id.hyphenated(),
        terminated,
        Duration::from_secs(10),
    )
    .await;
    let all = describe(&pushes);
    assert_pushed_then_terminated(&pushes, "org.apache.kafka.producer.");
    assert_eq!(
        total(&pushes, "org.apache.kafka.producer.record.send.total"),
        RECORDS as f64,
        "{all}"
    );
    assert_eq!(
        total(&pushes, "org.apache.kafka.producer.record.error.total"),
        0.0,
        "{all}"
    );
    unsubscribe_client_metrics(&pool, &name).await;
}

/// `enable.metrics.push=false`: the client asks the broker nothing and has no instance id,
/// where the same client at the defaults on the same broker has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_metrics_push_false_asks_for_no_subscription() {
    let kafka = Kafka::single();
    let name = unique_name("telemetry-off");
    let off = producer(
        kafka.bootstrap(),
        &[("enable.metrics.push", "false".to_string())],
    );
    assert_eq!(off.client_instance_id(Duration::from_secs(5)).await, None);
    let consumer = consumer(
        kafka.bootstrap(),
        &[("enable.metrics.push", "false".to_string())],
        &name,
    );
    assert_eq!(
        consumer.client_instance_id(Duration::from_secs(5)).await,
        None
    );
    // A client asks for its subscription once it reached the cluster.
    let on = producer(kafka.bootstrap(), &[]);
    drop(single_with(&[(&name, 1)]).await);
    send_one_and_subscribe(&on, &name).await;
    consumer.close().await.unwrap();
    off.close().await.unwrap();
    on.close().await.unwrap();
}

/// A broker without a metrics plugin offers no KIP-714: the client asks once, learns that
/// from the broker's ApiVersions, and stops; it has no instance id, and says so at once rather
/// than when the wait runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_kip_714_is_asked_once_and_the_client_goes_on() {
    let kafka = Kafka::noauto();
    let name = unique_name("telemetry-none");
    let pool =
        kcon_pool::Pool::new(kcon_tests::login::pool_config(kafka.bootstrap(), &[])).unwrap();
    create(&pool, &[NewTopic::new(&name, 1)]).await;
    let producer = producer(kafka.bootstrap(), &[]);
    producer
        .send(ProducerRecord::new(name.clone(), "v"))
        .await
        .unwrap()
        .await
        .unwrap();
    let asked = std::time::Instant::now();
    assert_eq!(
        producer.client_instance_id(Duration::from_secs(60)).await,
        None
    );
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "the telemetry ended rather than the wait: {:?}",
        asked.elapsed()
    );
    producer.close().await.unwrap();
}

/// A share consumer at its defaults pushes the Java share consumer's metrics under a
/// subscription: the records acquired and the acknowledgements the brokers took, as deltas
/// that add up to the records, and a terminating push on close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_consumer_pushes_its_records_and_acknowledgements() {
    use kcon_tests::share::{RECORDS_WITHIN, accept, configure, receive};
    const RECORDS: usize = 12;
    let kafka = Kafka::single();
    let name = unique_name("telemetry-share");
    let pool = single_with(&[(&name, 2)]).await;
    configure(&pool, &name, &[]).await;
    subscribe_client_metrics(
        &pool,
        &name,
        &["org.apache.kafka.consumer.share."],
        1000,
        &[&format!("client_id={name}")],
    )
    .await;
    let producer = producer(kafka.bootstrap(), &[]);
    for i in 0..RECORDS {
        producer
            .send(ProducerRecord::new(name.clone(), format!("v{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();

    let mut consumer = kcon_tests::share::consumer(
        kafka.bootstrap(),
        &name,
        &[
            ("client.id", name.as_str()),
            ("share.acknowledgement.mode", "explicit"),
        ],
    );
    consumer.subscribe([name.as_str()]).unwrap();
    let records = receive(&mut consumer, RECORDS, RECORDS_WITHIN, accept).await;
    assert_eq!(records.len(), RECORDS);
    consumer.commit().await.unwrap();
    let id = consumer
        .client_instance_id(Duration::from_secs(10))
        .await
        .expect("the share consumer's instance id");
    consumer.close().await.unwrap();
    let pushes =
        wait_for_pushes(kafka, &id.hyphenated(), terminated, Duration::from_secs(10)).await;
    let all = describe(&pushes);
    assert_pushed_then_terminated(&pushes, "org.apache.kafka.consumer.share.");
    assert_eq!(pushes[0].resource.get("group_id"), Some(&name), "{all}");
    for (metric, expected) in [
        ("records.consumed.total", RECORDS),
        ("acknowledgements.send.total", RECORDS),
        ("acknowledgements.error.total", 0),
    ] {
        assert_eq!(
            total(
                &pushes,
                &format!("org.apache.kafka.consumer.share.fetch.manager.{metric}")
            ),
            expected as f64,
            "{metric}:\n{all}"
        );
    }
    unsubscribe_client_metrics(&pool, &name).await;
}
