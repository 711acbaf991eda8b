//! The consumer's and the producer's metrics in a prometheus-client registry (kcon-prometheus),
//! on Apache Kafka (`Kafka::single()`) at the client's defaults: the text a scrape returns is read
//! by the Prometheus project's own parser (the Python `prometheus_client` in the test
//! virtualenv), and every value equals what `Consumer::metrics` (`Producer::metrics`) says.
//! Bytes are counted with the records handed out.

use std::time::Duration;

use kcon_codec::records::RecordBatchBuilder;
use kcon_pool::Pool;
use kcon_prometheus::RegisterMetrics;
use kcon_tests::brokers::unique_name;
use kcon_tests::consumer::{
    REBALANCE_WITHIN, builder_at_defaults, expect_no_record, group_builder_at_defaults, partitions,
    recv_n,
};
use kcon_tests::kafka::{Kafka, create_topics};
use kcon_tests::offsets::{produce_batch, produce_spread};
use kcon_tests::pool::config;
use kcon_tests::prometheus::parse_with_prometheus_client;
use prometheus_client::registry::Registry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_parsed_by_prometheus_client_equals_the_consumer_metrics() {
    let bootstrap = Kafka::single().bootstrap();
    let pool = Pool::new(config(bootstrap)).unwrap();
    let topic = unique_name("prom");
    create_topics(&pool, &[(&topic, 2)]).await;
    produce_spread(&pool, &topic, 2, 30, 10).await;
    let group = unique_name("g");
    let mut c = group_builder_at_defaults(bootstrap, &group, "range")
        .set("client.id", "scraped")
        .enable_auto_commit(false)
        .build()
        .unwrap();
    let mut registry = Registry::default();
    c.metrics_handle().register_metrics(&mut registry);
    c.subscribe([topic.as_str()]).unwrap();
    // Half of the records: the lag is not zero yet.
    let first = recv_n(&mut c, 15, REBALANCE_WITHIN).await;
    c.commit().await.unwrap();
    let rest = recv_n(&mut c, 15, Duration::from_secs(10)).await;
    expect_no_record(&mut c, Duration::from_millis(300)).await;
    assert_eq!(first.len() + rest.len(), 30);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    let m = c.metrics();
    let base = format!(r#"client_id="scraped",group="{group}""#);
    let get = |name: &str, labels: &str| -> f64 {
        *samples
            .get(&format!("{name}{{{labels}}}"))
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    assert_eq!(get("kcon_consumer_records_consumed_total", &base), 30.0);
    assert_eq!(
        get("kcon_consumer_records_consumed_total", &base),
        m.records_consumed as f64
    );
    assert_eq!(
        get("kcon_consumer_consumed_bytes_total", &base),
        m.bytes_consumed as f64
    );
    assert_eq!(
        get("kcon_consumer_rebalances_total", &base),
        m.rebalances as f64
    );
    assert_eq!(get("kcon_consumer_commits_total", &base), 1.0);
    assert_eq!(get("kcon_consumer_commit_failures_total", &base), 0.0);
    assert_eq!(
        get("kcon_consumer_persistent_failures_total", &base),
        m.persistent_failures as f64
    );
    assert_eq!(get("kcon_consumer_truncations_total", &base), 0.0);
    assert_eq!(
        get("kcon_consumer_last_commit_seconds", &base),
        m.last_commit_latency.unwrap().as_secs_f64()
    );
    assert_eq!(
        get("kcon_consumer_last_rebalance_seconds", &base),
        m.last_rebalance.unwrap().as_secs_f64()
    );
    assert_eq!(m.partitions.len(), 2, "{m:?}");
    for (tp, lag) in &m.partitions {
        // Labels in sorted order: client_id, group, partition, topic.
        let labels = format!(
            r#"client_id="scraped",group="{group}",partition="{}",topic="{}""#,
            tp.partition, tp.topic
        );
        assert_eq!(
            get("kcon_consumer_partition_position", &labels),
            lag.position.unwrap() as f64
        );
        assert_eq!(get("kcon_consumer_partition_position", &labels), 15.0);
        assert_eq!(get("kcon_consumer_partition_lag_records", &labels), 0.0);
        assert_eq!(get("kcon_consumer_partition_lag_seconds", &labels), 0.0);
    }
    // Fetch latency, read live: the scrape's count is at most the later snapshot's, every
    // request falls in some bucket, and the buckets add up to the count.
    let later = c.metrics().fetch_latency;
    let count = get("kcon_consumer_fetch_latency_seconds_count", &base);
    assert!(
        count >= 1.0 && count <= later.count as f64,
        "{count} {later:?}"
    );
    assert_eq!(
        get(
            "kcon_consumer_fetch_latency_seconds_bucket",
            &format!(r#"{base},le="+Inf""#)
        ),
        count
    );
    assert!(get("kcon_consumer_fetch_latency_seconds_sum", &base) > 0.0);
    assert_eq!(later.buckets.iter().sum::<u64>(), later.count);
    // Counters carry the unit-less `_total` samples only, each with a TYPE line.
    assert!(
        text.contains("# TYPE kcon_consumer_records_consumed counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kcon_consumer_partition_lag_seconds gauge"),
        "{text}"
    );
    c.close().await.unwrap();
}

/// One batch of 1,500 records handed out 100 at a time: its bytes are counted with each part's
/// records, not all with the last part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_counted_with_the_records_handed_out() {
    let bootstrap = Kafka::single().bootstrap();
    let pool = Pool::new(config(bootstrap)).unwrap();
    let topic = unique_name("bytes");
    create_topics(&pool, &[(&topic, 1)]).await;
    let mut b = RecordBatchBuilder::new(0);
    for i in 0..1_500 {
        b.record(1_000 + i, None, Some(format!("value-{i:06}").as_bytes()));
    }
    let batch = b.build().unwrap();
    produce_batch(&pool, &topic, 0, batch.clone()).await;
    let mut c = builder_at_defaults(bootstrap)
        .set("max.poll.records", "100")
        .build()
        .unwrap();
    c.assign(partitions(&topic, 1)).unwrap();
    let first = c.recv_batch().await.unwrap();
    assert_eq!(first.len(), 100);
    let m = c.metrics();
    assert_eq!(m.records_consumed, 100);
    assert_eq!(
        m.bytes_consumed,
        batch.len() as u64 * 100 / 1_500,
        "a part counts its share of the answer's bytes"
    );
    let rest = recv_n(&mut c, 1_400, Duration::from_secs(10)).await;
    assert_eq!(rest.len(), 1_400);
    let m = c.metrics();
    assert_eq!(
        (m.records_consumed, m.bytes_consumed),
        (1_500, batch.len() as u64)
    );
    c.close().await.unwrap();
}

/// One call registers a processor's own series and its consumer's, into a registry of the
/// prometheus-client version kcon-prometheus re-exports.
#[tokio::test]
async fn a_processor_registers_its_own_and_its_consumers_series_in_one_call() {
    let mut consumer = kcon::Consumer::builder()
        .bootstrap_servers("127.0.0.1:9")
        .group_id("g")
        .set("client.id", "both")
        .build()
        .unwrap();
    consumer.subscribe(["orders"]).unwrap();
    let processor = kcon::Processor::builder(consumer).build().unwrap();
    let mut registry = kcon_prometheus::prometheus_client::registry::Registry::default();
    processor.register_metrics(&mut registry);
    let mut text = String::new();
    kcon_prometheus::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    let labels = r#"{client_id="both",group="g"}"#;
    for series in [
        "kcon_consumer_records_consumed_total",
        "kcon_consumer_commits_total",
        "kcon_policy_breaker_trips_total",
        "kcon_policy_records_waiting",
    ] {
        assert_eq!(
            samples.get(&format!("{series}{labels}")),
            Some(&0.0),
            "{text}"
        );
    }
}

/// The producer registers its series the way the consumer does, and a scrape says what
/// `Producer::metrics` says: the records and batches the broker acknowledged, and the record
/// that failed (a partition the topic does not have).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_parsed_by_prometheus_client_equals_the_producer_metrics() {
    let bootstrap = Kafka::single().bootstrap();
    let pool = Pool::new(config(bootstrap)).unwrap();
    let topic = unique_name("prom-produce");
    create_topics(&pool, &[(&topic, 2)]).await;
    let producer = kcon_produce::Producer::builder()
        .bootstrap_servers(bootstrap)
        .set("client.id", "producing")
        .build()
        .unwrap();
    let mut registry = Registry::default();
    producer.register_metrics(&mut registry);
    let records = (0..20).map(|i| {
        kcon_produce::ProducerRecord::new(topic.as_str(), format!("v{i}")).with_partition(i % 2)
    });
    let deliveries = producer.send_all(records).await.unwrap();
    assert_eq!(deliveries.await.iter().filter(|d| d.is_ok()).count(), 20);
    let bad = kcon_produce::ProducerRecord::new(topic.as_str(), "x").with_partition(2);
    let failed = producer.send(bad).await.unwrap();
    assert!(failed.await.is_err());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let samples = parse_with_prometheus_client(&text);
    let m = producer.metrics();
    let get = |name: &str| -> f64 {
        *samples
            .get(&format!(r#"{name}{{client_id="producing"}}"#))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(get("kcon_producer_records_delivered_total"), 20.0);
    assert_eq!(m.records_delivered, 20);
    assert_eq!(get("kcon_producer_records_failed_total"), 1.0);
    assert_eq!(m.records_failed, 1);
    assert!(m.batches_delivered >= 2, "{m:?}");
    assert_eq!(
        get("kcon_producer_batches_delivered_total"),
        m.batches_delivered as f64
    );
    assert_eq!(get("kcon_producer_retries_total"), m.retries as f64);
    assert_eq!(
        get("kcon_producer_marker_checks_total"),
        m.marker_checks as f64
    );
    assert_eq!(
        get("kcon_producer_marker_waits_total"),
        m.marker_waits as f64
    );
    producer.close().await.expect("the producer closes");
}
