//! kcon with its default settings.

use kcon::{Consumer, TopicPartition};

use crate::tally::Tally;
use crate::{BoxError, Workload};

/// Reads the workload with `recv_batch`, then closes the consumer (leaving the group).
pub async fn run(w: &Workload, tally: &mut Tally) -> Result<(), BoxError> {
    let mut builder = Consumer::builder()
        .set("bootstrap.servers", w.bootstrap.as_str())
        .set("auto.offset.reset", "earliest");
    if let Some(group) = &w.group {
        builder = builder.set("group.id", group.as_str());
    }
    let mut consumer = builder.build()?;
    match &w.group {
        Some(_) => consumer.subscribe([w.topic.as_str()])?,
        None => consumer.assign(
            w.partitions()
                .map(|p| TopicPartition::new(w.topic.as_str(), p)),
        )?,
    }
    while !tally.done() {
        for r in consumer.recv_batch().await? {
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
