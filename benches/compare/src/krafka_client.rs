//! krafka: default settings, or tuned for throughput.

use std::time::Duration;

use krafka::Kafka;
use krafka::consumer::AutoOffsetReset;

use crate::tally::Tally;
use crate::{BoxError, Client, Workload};

/// Reads the workload with `poll`, then closes the consumer (leaving the group).
pub async fn run(w: &Workload, client: Client, tally: &mut Tally) -> Result<(), BoxError> {
    let kafka = Kafka::builder(w.bootstrap.as_str()).connect().await?;
    let mut builder = match &w.group {
        Some(group) => kafka.consumer(group.as_str()),
        None => kafka.consumer_without_group(),
    }
    .auto_offset_reset(AutoOffsetReset::Earliest);
    if client == Client::KrafkaTuned {
        builder = builder
            .max_poll_records(10_000)
            .max_buffered_records(20_000);
    }
    let consumer = builder.build().await?;
    match &w.group {
        Some(_) => consumer.subscribe([w.topic.as_str()]).await?,
        None => consumer.assign(&w.topic, w.partitions().collect()).await?,
    }
    while !tally.done() {
        let records = consumer.poll(Duration::from_secs(1)).await?;
        for r in &records {
            tally.observe(
                r.partition,
                r.offset,
                r.value.as_ref().map_or(0, |v| v.len()),
            );
        }
    }
    consumer.close().await?;
    Ok(())
}
