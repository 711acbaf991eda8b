//! Confluent's Rust client (`confluent-kafka` 1.0, a translation of the Java client): default
//! settings, by assignment or in a group.
//!
//! It offers KIP-848 groups alone (`group.protocol=consumer`; `KafkaConsumer::new` refuses
//! `classic`), so it is built with that protocol, even for assignment, where no group is joined;
//! in a group it is the one client here that joins by the consumer protocol.
//! A run that receives nothing must not hang the benchmark: after [`IDLE_LIMIT`] without a
//! record it stops and fails with what it saw (records so far, the assignment, its position
//! per partition), so the report can say exactly what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use confluent_kafka::common::TopicPartition;
use confluent_kafka::common::serialization::BytesDeserializer;
use confluent_kafka::consumer::{Consumer, ConsumerConfig, KafkaConsumer};

use crate::tally::Tally;
use crate::{BoxError, Workload};

/// The longest a run waits without receiving a record before it gives up.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Reads the workload with `poll`, then closes the consumer.
pub async fn run(w: &Workload, tally: &mut Tally) -> Result<(), BoxError> {
    let mut props: HashMap<String, String> = [
        ("bootstrap.servers", w.bootstrap.as_str()),
        ("auto.offset.reset", "earliest"),
        ("group.protocol", "consumer"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(group) = &w.group {
        props.insert("group.id".to_owned(), group.clone());
    }
    let config = ConsumerConfig::new(&props)?;
    let mut consumer =
        KafkaConsumer::new(config, BytesDeserializer::new(), BytesDeserializer::new())?;
    let partitions: Vec<TopicPartition> = w
        .partitions()
        .map(|p| TopicPartition::new(w.topic.as_str(), p))
        .collect();
    match &w.group {
        Some(_) => {
            consumer
                .subscribe_with_topics(vec![w.topic.clone()])
                .await?
        }
        None => consumer.assign(partitions.clone()).await?,
    }
    let mut last_record = Instant::now();
    let mut polls = 0u64;
    while !tally.done() {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        polls += 1;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        for r in &records {
            tally.observe(r.partition(), r.offset(), r.value().map_or(0, |v| v.len()));
        }
        if last_record.elapsed() >= IDLE_LIMIT {
            let mut positions = Vec::new();
            for tp in &partitions {
                let at = tokio::time::timeout(Duration::from_secs(5), consumer.position(tp))
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                positions.push(format!("{}: {at:?}", tp.partition()));
            }
            let assigned = consumer.assignment().len();
            let _ = tokio::time::timeout(Duration::from_secs(10), consumer.close()).await;
            return Err(format!(
                "no record for {} s after {} records ({polls} polls without error); \
                 {assigned} partitions assigned; positions: {}",
                IDLE_LIMIT.as_secs(),
                tally.records(),
                positions.join(", ")
            )
            .into());
        }
    }
    consumer.close().await?;
    Ok(())
}
