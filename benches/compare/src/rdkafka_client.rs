//! rust-rdkafka (librdkafka built from source): `BaseConsumer` and `StreamConsumer`.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::tally::Tally;
use crate::{BoxError, Client, Workload};

/// The configuration: defaults, plus `fetch.queue.backoff.ms=0` when `no_backoff`.
fn config(w: &Workload, no_backoff: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &w.bootstrap)
        .set("auto.offset.reset", "earliest");
    match &w.group {
        Some(group) => c.set("group.id", group),
        // librdkafka's assign() fails with "Unknown group" without a group.id, although it
        // joins no group then: a name of its own, never used by anyone else.
        None => c.set("group.id", format!("assign-{}", std::process::id())),
    };
    if no_backoff {
        c.set("fetch.queue.backoff.ms", "0");
    }
    c
}

/// Subscribes in the group, or assigns every partition from its beginning.
fn start(consumer: &impl Consumer, w: &Workload) -> Result<(), BoxError> {
    match &w.group {
        Some(_) => consumer.subscribe(&[w.topic.as_str()])?,
        None => {
            let mut list = TopicPartitionList::new();
            for p in w.partitions() {
                list.add_partition_offset(&w.topic, p, Offset::Beginning)?;
            }
            consumer.assign(&list)?;
        }
    }
    Ok(())
}

/// `BaseConsumer::poll` in a loop on this thread.
pub fn run_base(w: &Workload, client: Client, tally: &mut Tally) -> Result<(), BoxError> {
    let consumer: BaseConsumer = config(w, client == Client::RdkafkaBaseNoBackoff).create()?;
    start(&consumer, w)?;
    while !tally.done() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => tally.observe(m.partition(), m.offset(), m.payload_len()),
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    // Dropping the consumer closes it (leaving the group).
    drop(consumer);
    Ok(())
}

/// `StreamConsumer::recv` in a loop.
pub async fn run_stream(w: &Workload, tally: &mut Tally) -> Result<(), BoxError> {
    let consumer: StreamConsumer = config(w, false).create()?;
    start(&consumer, w)?;
    while !tally.done() {
        let m = consumer.recv().await?;
        tally.observe(m.partition(), m.offset(), m.payload_len());
    }
    drop(consumer);
    Ok(())
}
