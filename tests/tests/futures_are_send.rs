//! Every public future of the consumer, the share consumer, the processor, the producer, the admin calls, the
//! Schema Registry client and kcon-opentelemetry's `Telemetry` is `Send`, and the types are `Send` (and `Sync` where they are
//! shared by reference), so that each can run on a task of its own (`tokio::spawn`). These are
//! compile-time checks: a future that stops being `Send` fails this file's build, naming it.
//! The one test at the end spawns a processor, as the crate documentation says one can.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use kcon::deserialize::{BytesDeserializer, Decoded, JsonDeserializer, StringDeserializer};
use kcon::{
    CommitHandle, Consumer, ConsumerBuilder, Failure, IsolationLevel, MetricsHandle,
    PartitionStream, PartitionStreams, PolicyMetricsHandle, Processor, Record, TopicPartition,
};
use kcon_admin::{LagOptions, NewTopic};
use kcon_codec::schema_id::SchemaRef;
use kcon_core::OffsetSpec;
use kcon_pool::{BrokerTarget, Pool};
use kcon_produce::{Producer, ProducerRecord};
use kcon_schema_registry::{AvroDeserializer, ProtobufJsonDeserializer, SchemaRegistry};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}
fn send_only<T: Send>() {}

#[allow(dead_code)]
fn types_are_send_and_sync() {
    send_sync::<Consumer>();
    // Moved into the consumer it builds, never shared.
    send_only::<ConsumerBuilder>();
    send_sync::<Processor>();
    send_sync::<Processor<StringDeserializer, JsonDeserializer<serde_json::Value>>>();
    send_sync::<CommitHandle>();
    send_sync::<MetricsHandle>();
    send_sync::<PolicyMetricsHandle>();
    send_sync::<PartitionStreams>();
    send_sync::<PartitionStream>();
    send_sync::<Record>();
    send_sync::<kcon::BorrowedBatch<'static>>();
    send_sync::<kcon::Error>();
    send_sync::<Producer>();
    send_sync::<kcon::policy::Sink>();
    send_sync::<kcon::share::ShareConsumer>();
    send_only::<kcon::share::ShareConsumerBuilder>();
    send_sync::<Processor<BytesDeserializer, BytesDeserializer, kcon::share::ShareConsumer>>();
    send_sync::<Pool>();
    send_sync::<SchemaRegistry>();
    send_sync::<AvroDeserializer<serde_json::Value>>();
    send_sync::<ProtobufJsonDeserializer>();
}

#[allow(dead_code)]
async fn share_consumer_futures_are_send(mut consumer: kcon::share::ShareConsumer) {
    send(&consumer.recv_batch());
    send(&consumer.commit());
    send(&consumer.client_instance_id(Duration::ZERO));
    send(&consumer.close());
}

#[allow(dead_code)]
async fn share_processor_futures_are_send(
    mut processor: Processor<BytesDeserializer, BytesDeserializer, kcon::share::ShareConsumer>,
) {
    send(&processor.run(async |_| Ok(())));
    send(&processor.run_until(std::future::pending::<()>(), async |_| Ok(())));
    send(&processor.run_concurrently(async |_| Ok(())));
    send(&processor.commit());
    send(&processor.close());
}

#[allow(dead_code, clippy::diverging_sub_expression)]
async fn consumer_futures_are_send(mut consumer: Consumer, tp: TopicPartition) {
    let all = BTreeSet::from([tp.clone()]);
    send(&consumer.recv());
    send(&consumer.recv_batch());
    send(&consumer.recv_borrowed());
    send(&consumer.unsubscribe());
    send(&consumer.commit());
    send(&consumer.commit_offsets(Vec::new()));
    send(&consumer.commit_offsets_with_metadata(Vec::new()));
    send(&consumer.commit_async());
    send(&consumer.committed(all.clone()));
    send(&consumer.committed_with_metadata(all.clone()));
    send(&consumer.seek_to_beginning(all.clone()));
    send(&consumer.seek_to_end(all.clone()));
    send(&consumer.offsets_for_times(Vec::new()));
    send(&consumer.watermarks(&tp));
    send(&consumer.lag());
    send(&consumer.client_instance_id(Duration::ZERO));
    let handle = consumer.commit_handle().unwrap();
    send(&handle.commit());
    send(&handle.commit_offsets(Vec::new()));
    send(&handle.commit_offsets_with_metadata(Vec::new()));
    send(&consumer.close_within(Duration::ZERO));
    let consumer: Consumer = todo_value();
    send(&consumer.close());
    let mut streams: PartitionStreams = todo_value();
    send(&streams.next());
    let mut stream: PartitionStream = todo_value();
    send(&stream.recv());
    send(&streams.close());
}

#[allow(dead_code)]
async fn processor_futures_are_send(
    mut processor: Processor<StringDeserializer, JsonDeserializer<serde_json::Value>>,
) {
    let handler =
        async move |_: &Decoded<String, serde_json::Value>| -> Result<(), Failure> { Ok(()) };
    send(&processor.run(handler));
    send(&processor.run_until(async {}, handler));
    send(&processor.run_concurrently(handler));
    send(&processor.run_concurrently_until(async {}, handler));
    send(&processor.commit());
    send(&processor.close());
}

#[allow(dead_code)]
async fn exactly_once_processor_futures_are_send(consumer: Consumer, producer: Producer) {
    let mut processor = Processor::builder(consumer)
        .value(StringDeserializer)
        .exactly_once(producer)
        .build()
        .unwrap();
    let sink = processor.sink().unwrap();
    let handler = async move |r: &Decoded<Option<bytes::Bytes>, String>| -> Result<(), Failure> {
        sink.send(ProducerRecord::new("out", r.value.clone()));
        Ok(())
    };
    send(&processor.run_until(async {}, handler.clone()));
    send(&processor.run_concurrently_until(async {}, handler));
    send(&processor.commit());
    send(&processor.close());
}

#[allow(dead_code)]
async fn producer_admin_and_registry_futures_are_send(
    producer: Producer,
    pool: Pool,
    registry: SchemaRegistry,
) {
    send(&producer.send(ProducerRecord::new("t", "v")));
    send(&producer.send_all(vec![ProducerRecord::new("t", "v")]));
    if let Ok(delivery) = producer.send(ProducerRecord::new("t", "v")).await {
        send(&delivery);
    }
    if let Ok(deliveries) = producer.send_all([ProducerRecord::new("t", "v")]).await {
        send(&deliveries);
    }
    send(&producer.flush());
    send(&producer.client_instance_id(std::time::Duration::ZERO));
    send(&producer.clone().close());
    send(
        &producer
            .clone()
            .close_within(std::time::Duration::from_secs(1)),
    );
    let timeout = std::time::Duration::from_secs(1);
    send(&producer.init_transactions(timeout));
    send(&producer.begin_transaction(timeout));
    let group = kcon::ConsumerGroupMetadata::new("g");
    let offsets = [(TopicPartition::new("t", 0), 1)];
    send(&producer.send_offsets_to_transaction(offsets, &group, timeout));
    send(&producer.commit_transaction(timeout));
    send(&producer.abort_transaction(timeout));
    let tps = BTreeSet::from([TopicPartition::new("t", 0)]);
    send(&kcon_admin::watermarks(&pool, &tps));
    send(&kcon_admin::list_groups(&pool));
    send(&kcon_admin::describe_group(&pool, "g"));
    send(&kcon_admin::list_topics(&pool));
    let options = LagOptions::default();
    let groups = ["g".to_owned()];
    let at = BTreeMap::from([(TopicPartition::new("t", 0), 0)]);
    let specs = BTreeMap::from([(TopicPartition::new("t", 0), OffsetSpec::Latest)]);
    let topic = NewTopic {
        name: "t".into(),
        partitions: 1,
        replication_factor: 1,
        configs: Vec::new(),
    };
    let read_uncommitted = IsolationLevel::ReadUncommitted;
    send(&kcon_admin::group_lag(&pool, "g", &options));
    send(&kcon_admin::groups_lag(&pool, &groups, &options));
    send(&kcon_admin::log_ranges(&pool, &tps, read_uncommitted));
    send(&kcon_admin::find_coordinator(&pool, "g"));
    send(&kcon_admin::describe_consumer_group(&pool, "g"));
    send(&kcon_admin::delete_offsets(&pool, "g", &[]));
    send(&kcon_admin::committed_offsets_of_groups(
        &pool, &groups, None, false,
    ));
    send(&kcon_admin::list_offsets(&pool, &specs, read_uncommitted));
    send(&kcon_admin::create_topic(
        &pool,
        &topic,
        true,
        Duration::ZERO,
    ));
    send(&kcon_admin::probe(&pool, &at, read_uncommitted));
    send(&kcon_admin::describe(&pool, "g"));
    send(&kcon_admin::describe_group_lag(
        &pool,
        "g",
        read_uncommitted,
    ));
    let plan = kcon_admin::ResetPlan {
        group_id: "g".into(),
        partitions: BTreeMap::new(),
    };
    send(&kcon_admin::plan_reset(
        &pool,
        "g",
        &tps,
        kcon_admin::ResetTo::Earliest,
    ));
    send(&kcon_admin::execute_reset(&pool, &plan));
    send(&kcon_admin::commit_offsets(&pool, "g", &BTreeMap::new()));
    send(&kcon_admin::describe_group_configs(&pool, "g"));
    send(&kcon_admin::alter_group_configs(&pool, "g", &[]));
    send(&pool.refresh_metadata(kcon_pool::TopicScope::All));
    send(&pool.connection(BrokerTarget::Any));
    send(&registry.schema(SchemaRef::Id(1), None, None));
}

#[allow(dead_code)]
async fn telemetry_futures_are_send(
    telemetry: kcon_opentelemetry::Telemetry,
    producer: Producer,
    mut consumer: Consumer,
    mut share: kcon::share::ShareConsumer,
    record: Decoded<String, String>,
) {
    send_sync::<kcon_opentelemetry::Telemetry>();
    send_sync::<kcon_opentelemetry::LagObservation>();
    send_only::<kcon_opentelemetry::TracedDelivery>();
    send(&telemetry.send(&producer, ProducerRecord::new("t", "v")));
    send(&telemetry.recv_batch(&mut consumer));
    send(&telemetry.share_recv_batch(&mut share));
    send(&telemetry.process(&record, async { Ok::<(), Failure>(()) }));
}

/// A value of any type, for the checks above, which are compiled and never run.
fn todo_value<T>() -> T {
    unreachable!("compile-time checks only")
}

/// The crate documentation's promise: a processor whose handler is `async move |record| ...`
/// runs on a spawned task. With no broker at the address it runs until stopped.
#[tokio::test]
async fn a_processor_runs_on_a_spawned_task() {
    let mut consumer = Consumer::builder()
        .bootstrap_servers("127.0.0.1:9")
        .group_id("g")
        .build()
        .unwrap();
    consumer.subscribe(["orders"]).unwrap();
    let mut processor = Processor::builder(consumer)
        .value(JsonDeserializer::<serde_json::Value>::new())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let outcome = processor
            .run_until(
                async {
                    stopped.await.ok();
                },
                async move |_| Ok(()),
            )
            .await;
        (outcome, processor)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let (outcome, processor) = task.await.unwrap();
    outcome.unwrap();
    assert!(processor.consumer().assignment().is_empty());
    let _: Box<dyn Future<Output = Result<(), kcon::Error>> + Send> = Box::new(processor.close());
}
